"""The one table of every optimizer and transform; every cross-cutting test iterates ``CASES``.

A row is a ``Case``. Rows live in ``tests/rows/<family>.py`` (each defines ``ROWS``), one file per
family of the package, so adding an optimizer to the test suite is adding one row: the
cross-cutting tests (NumPy reference, jit / eager / pmap, Optax parity, Flax linen and nnx,
checkpoint round trip, edge values, ``step`` against ``update``, dtypes) pick it up.
"""

from __future__ import annotations

import importlib
import pathlib
from collections.abc import Callable
from typing import Any, NamedTuple


class Case(NamedTuple):
    """One optimizer or transform under test.

    Attributes:
      name: unique id (``adamw_mask``); used in test ids.
      make: builds the optcompose transform.
      reference: builds its NumPy reference (``reference.RefTransform``, written from the paper),
        or ``None`` when the row is checked against ``optax`` only.
      low_precision: run on the bfloat16/float16 version of the test pytree.
      optax: builds Optax's transform with the same numbers (trajectory parity), or ``None``.
      complex_ok: the transform is defined for complex parameters (checked on a complex problem).
      extra_args: ``f(step) -> dict`` of extra keyword arguments for ``update`` (e.g. ``value=``).
    """

    name: str
    make: Callable[[], Any]
    reference: Callable[[], Any] | None = None
    low_precision: bool = False
    optax: Callable[[], Any] | None = None
    complex_ok: bool = True
    extra_args: Callable[[int], dict] | None = None


def _load_rows() -> list[Case]:
    rows: list[Case] = []
    for path in sorted(pathlib.Path(__file__).with_name("rows").glob("*.py")):
        rows.extend(importlib.import_module(f"rows.{path.stem}").ROWS)
    names = [row.name for row in rows]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ValueError(f"duplicate case names in tests/rows: {duplicates}")
    return rows


CASES: list[Case] = _load_rows()
CASES_BY_NAME: dict[str, Case] = {case.name: case for case in CASES}
