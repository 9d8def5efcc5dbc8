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
      problem_only: ``make`` holds a pytree shaped like ``trajectory.problem()`` (an explicit mask),
        so the row runs on that tree only, not on the parameters of a Flax ``nnx`` model.
    """

    name: str
    make: Callable[[], Any]
    reference: Callable[[], Any] | None = None
    low_precision: bool = False
    optax: Callable[[], Any] | None = None
    complex_ok: bool = True
    extra_args: Callable[[int], dict] | None = None
    problem_only: bool = False


FAMILIES: dict[str, str] = {}
"""Row name -> its family (the rows/ file that defines it)."""


def _load_rows() -> list[Case]:
    rows: list[Case] = []
    for path in sorted(pathlib.Path(__file__).with_name("rows").glob("*.py")):
        family = importlib.import_module(f"rows.{path.stem}").ROWS
        rows.extend(family)
        FAMILIES.update({row.name: path.stem for row in family})
    names = [row.name for row in rows]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ValueError(f"duplicate case names in tests/rows: {duplicates}")
    return rows


CASES: list[Case] = _load_rows()
CASES_BY_NAME: dict[str, Case] = {case.name: case for case in CASES}

# ----------------------------------------------------------------------------------------------
# Three tiers. Every row runs the core cross-cutting tests (NumPy reference under jit, Optax
# parity, dtype and promotion tracing, step against update): CI runs them on the whole table.
# The costly modes (eager, pmap, complex, Flax, checkpoints, edge values...) run every row only with
# ``--exhaustive`` (rows marked ``exhaustive``; about 40 compiled programs of the whole table, too
# many for CI's two cores) and a sample of the table (one row per family) otherwise, so every mode
# still runs in CI. ``-m "not slow"`` keeps only the sample everywhere: the fast part.
# ``python -m pytest tests/table -k adamw --exhaustive`` runs one row everywhere.

_SAMPLE_CHOICE = {"classic": ("adamw_mask", "lamb_low_precision"), "transforms": ("masked_tree",)}
"""Families whose sample is chosen (masks, low precision, an explicit mask tree); others: their first row."""
SAMPLE: frozenset[str] = frozenset(
    name
    for family in sorted(set(FAMILIES.values()))
    for name in _SAMPLE_CHOICE.get(family, [next(n for n in CASES_BY_NAME if FAMILIES[n] == family)])
)
"""The rows every cross-cutting test runs in the fast part of the suite (``-m "not slow"``)."""

SELECTED: set[str] | None = None
"""Names of the rows the session's selected tests use (set by conftest after -m / -k deselection)."""
SELECTED_BY_TEST: dict[str, set[str]] = {}
"""Test function (``path::name``) -> the rows it runs, after deselection (set by conftest)."""


def selected_in(test_file: str) -> set[str] | None:
    """The rows the selected tests of ``test_file`` (a module's ``__file__``) use; None outside pytest."""
    if not SELECTED_BY_TEST:
        return None
    stem = pathlib.Path(test_file).as_posix()
    return set().union(*(rows for test, rows in SELECTED_BY_TEST.items() if stem.endswith(test.split("::")[0])))


def marks(row: Case, core: bool = False) -> list[Any]:
    """Marks of a row's test: none for a row of :data:`SAMPLE`; otherwise ``slow``, and for a costly
    (not ``core``) test also ``exhaustive`` (run only with ``--exhaustive``)."""
    import pytest

    if row.name in SAMPLE:
        return []
    return [pytest.mark.slow] if core else [pytest.mark.slow, pytest.mark.exhaustive]


def params(rows: list[Case], known: dict[str, str] | None = None, core: bool = False) -> list[Any]:
    """``pytest.param`` per row, id'd by name, marked by :func:`marks`; rows in ``known``
    (name -> reason) ``xfail(strict=True)``."""
    import pytest

    known = known or {}
    return [
        pytest.param(
            row,
            id=row.name,
            marks=[
                *marks(row, core),
                *([pytest.mark.xfail(strict=True, reason=known[row.name])] if row.name in known else []),
            ],
        )
        for row in rows
    ]
