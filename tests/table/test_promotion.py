"""Strict dtype promotion for every row: ``jax.numpy_dtype_promotion("strict")`` traces cleanly.

Under strict promotion JAX refuses every implicit promotion (bfloat16 + float32, float32 + float64
...), so a row that traces here mixes dtypes only where it says so. Each row's ``init``, two
``update`` + ``apply_updates`` and (float32) an ``optcompose.step`` are traced (``jax.eval_shape``,
nothing compiled) on the shared tree in bfloat16, float16, float32, float64 (x64) and on the mixed
tree. Rows that fail in the library are marked ``xfail(strict=True)`` in ``KNOWN`` with the reason,
so a fix shows; a row whose own code (a schedule written in the row) is not strict-clean is an
expected failure named at run time, since the library is not at fault there.
"""

from __future__ import annotations

import pathlib
import traceback

import jax
import pytest
import trajectory as tr
from cases import CASES, marks
from helpers import cast

from optcompose._base import apply_updates
from optcompose.speed._step import step

DTYPES = ["bfloat16", "float16", "float32", "float64", "mixed"]
CORE_DTYPES = ("bfloat16", "float64")
"""Every row is traced in these in CI (where strict promotion used to fail); the others on the sample."""
TESTS = pathlib.Path(__file__).resolve().parents[1]
_SLOT = (
    "optcompose/_leafwise.py widens a low-precision state slot (bfloat16 moments) to float32 while float64 "
    "updates stay float64, so the rule adds float32 to float64"
)
_APPLY = "optcompose/_base.py apply_updates adds a float32 update to a bfloat16 / float16 parameter implicitly"
_LAYOUTS = "optcompose/transforms/_layouts.py concatenates bfloat16, float16 and float32 leaves implicitly"
_LBFGS = "optcompose/transforms/_lbfgs.py mixes float32 with float64 (and int32 with int64) under x64"
KNOWN: dict[tuple[str, str], str] = {
    ("sgd_bf16_trace", "float64"): _SLOT,
    ("adam_bf16_moments", "float64"): _SLOT,
    ("adamw_bf16_nu", "float64"): _SLOT,
    ("scale_by_amsgrad_bf16_mu", "float64"): _SLOT,
    ("adafactor_momentum_decay_low_precision", "float64"): _SLOT,
    ("kahan_adamw_low_precision", "bfloat16"): _APPLY,
    ("kahan_adamw_low_precision", "float16"): _APPLY,
    ("kahan_adamw_low_precision", "mixed"): _APPLY,
    ("flatten_adam", "mixed"): _LAYOUTS,
    ("scale_by_lbfgs", "float64"): _LBFGS,
    ("scale_by_lbfgs_identity_init", "float64"): _LBFGS,
}
"""(row, dtype) -> why it fails under strict promotion: a library bug, for the lead to fix."""


def _params(dtype):
    if dtype == "mixed":
        return tr.problem(True)
    params, noise = tr.problem(False)
    return cast(params, dtype), noise


def _trace(case, dtype):
    with jax.enable_x64(dtype == "float64"):
        params, noise = _params(dtype)
        tx = case.make()

        def run(params):
            state = tx.init(params)
            for t in range(2):
                grads = tr.gradients(params, jax.tree.map(lambda n, t=t: n[t], noise))
                extra = case.extra_args(t) if case.extra_args else {}
                updates, state = tx.update(grads, state, params, **extra)
                params = apply_updates(params, updates)
            if dtype == "float32":
                params, state = step(tx, grads, state, params, **extra)
            return params, state

        with jax.numpy_dtype_promotion("strict"):
            return jax.eval_shape(run, params)


def _param(case, dtype):
    reason = KNOWN.get((case.name, dtype))
    xfail = [pytest.mark.xfail(strict=True, reason=reason)] if reason else []
    return pytest.param(case, dtype, marks=[*marks(case, core=dtype in CORE_DTYPES), *xfail], id=f"{case.name}-{dtype}")


def _raised_in_test_code(error: BaseException) -> str:
    """'file:line' of the innermost frame of ours (tests/ or optcompose/) if it lies in tests/rows/, else ''."""
    frames = [
        f for f in traceback.extract_tb(error.__traceback__) if "optcompose" in f.filename or str(TESTS) in f.filename
    ]
    last = frames[-1] if frames else None
    if last is not None and pathlib.Path(last.filename).resolve().is_relative_to(TESTS / "rows"):
        return f"{pathlib.Path(last.filename).relative_to(TESTS)}:{last.lineno}"
    return ""


@pytest.mark.parametrize("case, dtype", [_param(case, dtype) for case in CASES for dtype in DTYPES])
def test_traces_under_strict_dtype_promotion(case, dtype):
    try:
        new_params, _ = _trace(case, dtype)
    except jax.dtypes.TypePromotionError as error:
        where = _raised_in_test_code(error)
        if not where or (case.name, dtype) in KNOWN:
            raise
        pytest.xfail(f"the row's own code is not strict-clean at tests/{where}: {str(error).splitlines()[0][:120]}")
    params, _ = _params(dtype)
    with jax.enable_x64(dtype == "float64"):
        expected = [leaf.dtype for leaf in jax.tree.leaves(cast(params, dtype) if dtype != "mixed" else params)]
    assert [leaf.dtype for leaf in jax.tree.leaves(new_params)] == expected
