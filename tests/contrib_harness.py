"""Shared checks of the contrib tests: run rows (with their extra arguments) against NumPy and Optax.

``run`` is ``trajectory.run_many`` plus ``extra_args(step)`` for each update (the loss value, the
objective function). All transforms of one call run in one jitted program, so each module test
compiles once for its float32 rows and once for its float64 rows. Distances are measured on the
displacement ``w_t - w_0``: ``max |a_t - b_t| / max |b_t - w_0|`` per leaf, so methods whose steps
are small next to the weights (Prodigy's first steps) are still compared at the precision of a step.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import trajectory as tr
from cases import Case

F32_OPTAX_RTOL = 1e-5
"""Optax parity in float32: per-update differences are ~1e-7 relative; hyperparameters stored as
float32 data (``1 - b`` from the rounded ``b``, where Optax rounds ``1 - b`` computed in double) move
some rows by up to ~1e-5 over 20 steps. Rows with documented larger gaps pass their own tolerance."""
F64_OPTAX_RTOL = 1e-12


def run(
    txs: Sequence[Any],
    problems: Sequence[tuple[Any, Any]],
    extra_args: Sequence[Callable[[int], dict] | None] | None = None,
    mode: str = "jit",
) -> list[tuple[Any, Any]]:
    """``trajectory.run_many``: [(parameters after every step, final state)] per transform, with
    ``extra_args(t)`` passed to the update of step ``t`` (``mode``: ``'jit'`` or ``'eager'``)."""
    return tr.run_many(list(txs), list(problems), mode, extra_args=list(extra_args) if extra_args else None)


def as_float64(tree: Any) -> Any:
    """Every floating leaf in float64 (call inside ``jax.enable_x64(True)``)."""
    return jax.tree.map(lambda x: jnp.asarray(x, jnp.float64), tree)


def displacement_error(got: Any, want: Any, start: Any) -> float:
    """``max over leaves of max_t |got_t - want_t| / max_t |want_t - w_0|`` (0 for leaves that never move)."""
    worst = 0.0
    flat = isinstance(want, dict) and all(isinstance(k, str) and k.startswith("[") for k in want)
    got, want, start = tr.flatten(got), want if flat else tr.flatten(want), tr.flatten(start)
    for key, values in want.items():
        as_wide = lambda x: np.asarray(x, np.complex128 if np.iscomplexobj(x) else np.float64)
        a, b = as_wide(got[key]), as_wide(values)
        moved = np.max(np.abs(b - as_wide(start[key])))
        scale = moved if moved > 0 else 1.0
        worst = max(worst, float(np.max(np.abs(a - b)) / scale))
    return worst


def stack(reference: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    return {key: np.stack([step[key] for step in reference]) for key in reference[0]}


def check_reference(cases: Sequence[Case], mode: str = "jit", overrides: dict | None = None) -> dict[str, float]:
    """Each row against its NumPy reference (trajectory.assert_trajectory_close); returns the
    displacement errors by row name."""
    runs = run([c.make() for c in cases], [tr.problem(c.low_precision) for c in cases], [c.extra_args for c in cases],
               mode)  # fmt: skip
    errors = {}
    for case, (trajectory, state) in zip(cases, runs, strict=True):
        params, noise = tr.problem(case.low_precision)
        expected = tr.reference_trajectory(case.reference(), params, noise)
        tr.assert_trajectory_close(trajectory, expected, label=f"{case.name} ", **(overrides or {}))
        assert jax.tree.structure(jax.tree.map(lambda x: x[0], trajectory)) == jax.tree.structure(params)
        for leaf in jax.tree.leaves(state):
            if jnp.issubdtype(jnp.result_type(leaf), jnp.inexact):
                assert np.all(np.isfinite(np.asarray(leaf))), f"{case.name}: non-finite state"
        errors[case.name] = displacement_error(trajectory, stack(expected), params)
    return errors


def optax_errors(cases: Sequence[Case], x64: bool = False) -> dict[str, float]:
    """Displacement errors of each row against its Optax twin on the shared problem (float32, or
    float64 under ``jax.enable_x64``), both sides in one jitted program."""
    if x64:
        with jax.enable_x64(True):
            return _optax_errors(cases, as_float64)
    return _optax_errors(cases, lambda tree: tree)


def _optax_errors(cases, convert):
    problems = []
    for case in cases:
        params, noise = tr.problem(case.low_precision)
        problems.append((convert(params), convert(noise)))
    txs = [c.make() for c in cases] + [c.optax() for c in cases]
    extra = [c.extra_args for c in cases] * 2
    runs = run(txs, problems * 2, extra)
    ours, theirs = runs[: len(cases)], runs[len(cases) :]
    return {
        case.name: displacement_error(a[0], b[0], problem[0])
        for case, a, b, problem in zip(cases, ours, theirs, problems, strict=True)
    }


def assert_below(errors: dict[str, float], tolerance: float | dict[str, float], what: str) -> None:
    for name, error in errors.items():
        bound = tolerance.get(name, tolerance.get("default")) if isinstance(tolerance, dict) else tolerance
        assert np.isfinite(error) and error <= bound, f"{name}: {what} displacement error {error:.3g} > {bound:.3g}"


def rows(names: Sequence[str]) -> list[Case]:
    from cases import CASES_BY_NAME

    return [CASES_BY_NAME[name] for name in names]


def signature_matches(ours: Callable, theirs: Callable) -> None:
    """Same parameter names, order, kinds and defaults (callables and transforms: same kind of value)."""
    import inspect

    a, b = inspect.signature(ours).parameters, inspect.signature(theirs).parameters
    assert list(a) == list(b), f"{ours.__name__}: parameters {list(a)} vs Optax {list(b)}"
    for name in a:
        pa, pb = a[name], b[name]
        assert pa.kind == pb.kind, f"{ours.__name__}({name}): kind {pa.kind} vs {pb.kind}"
        da, db = pa.default, pb.default
        if callable(db) or hasattr(db, "init"):
            assert callable(da) or hasattr(da, "init"), f"{ours.__name__}({name}): default {da!r} vs {db!r}"
        else:
            assert type(da) is type(db) and da == db, f"{ours.__name__}({name}): default {da!r} vs Optax {db!r}"


def leaf_dtypes(tree: Any) -> list[Any]:
    return [jnp.result_type(x) for x in jax.tree.leaves(tree)]


_PARITY: dict[tuple[Any, ...], dict[str, dict[str, float]]] = {}


def parity(cases: Sequence[Case], x64: bool = False) -> dict[str, dict[str, float]]:
    """Runs ``cases`` and their Optax twins in one jitted program, in float32 or (``x64``) float64.

    Returns ``{name: {"reference": e, "optax": e}}`` (displacement errors; a missing key: the row has
    no reference / no twin). In float32 every row is also asserted against its NumPy reference at the
    trajectory tolerance. Cached per (table, precision), so a module's tests share one run.
    """
    key = (tuple(case.name for case in cases), x64)
    if key in _PARITY:
        return _PARITY[key]
    twins = [case for case in cases if case.optax is not None]
    errors: dict[str, dict[str, float]] = {case.name: {} for case in cases}
    with jax.enable_x64(x64):
        convert = as_float64 if x64 else (lambda tree: tree)
        problems = [tuple(convert(x) for x in tr.problem(case.low_precision)) for case in cases]
        twin_problems = [problems[list(cases).index(case)] for case in twins]
        txs = [case.make() for case in cases] + [case.optax() for case in twins]
        extra = [case.extra_args for case in cases] + [case.extra_args for case in twins]
        runs = run(txs, problems + twin_problems, extra)
        ours = dict(zip(key[0], runs[: len(cases)], strict=True))
        theirs = dict(zip((case.name for case in twins), runs[len(cases) :], strict=True))
        for case, (params, _) in zip(cases, problems, strict=True):
            trajectory, state = ours[case.name]
            if case.name in theirs:
                errors[case.name]["optax"] = displacement_error(trajectory, theirs[case.name][0], params)
            if not x64 and case.reference is not None:
                expected = tr.reference_of(case)
                tr.assert_trajectory_close(trajectory, expected, label=f"{case.name} vs NumPy ")
                errors[case.name]["reference"] = displacement_error(trajectory, stack(expected), params)
            for leaf in jax.tree.leaves(state):
                if jnp.issubdtype(jnp.result_type(leaf), jnp.inexact):
                    assert np.all(np.isfinite(np.asarray(leaf))), f"{case.name}: non-finite state"
    _PARITY[key] = errors
    return errors


def check_parity(cases: Sequence[Case], tolerance: float | dict | None = None, x64: bool = False):
    """``parity(cases, x64)`` with every Optax displacement error below ``tolerance`` (a number, or a
    dict by row name with a ``"default"``; default F32_OPTAX_RTOL, or F64_OPTAX_RTOL under x64)."""
    errors = parity(cases, x64)
    bound = tolerance if tolerance is not None else (F64_OPTAX_RTOL if x64 else F32_OPTAX_RTOL)
    found = {name: e["optax"] for name, e in errors.items() if "optax" in e}
    assert_below(found, bound if isinstance(bound, dict) else {"default": bound}, "optax float64" if x64 else "optax")
    return errors


def eager_matches_jit(case: Case, steps: int = 3) -> None:
    """The first ``steps`` steps of ``case`` without jit equal the jitted ones (float32 round-off)."""
    params, noise = tr.problem(case.low_precision)
    short = (params, jax.tree.map(lambda n: n[:steps], noise))
    eager, _ = run([case.make()], [short], [case.extra_args], mode="eager")[0]
    jitted, _ = run([case.make()], [short], [case.extra_args])[0]
    tr.assert_trajectories_close(eager, jitted, label=f"{case.name} eager vs jit ")


def check_phase_equivariance(cases: Sequence[Case]) -> None:
    """On complex parameters, a global phase ``e^{i theta}`` on parameters and gradients rotates every
    step by it (the transforms use ``|g|^2`` and real inner products), and the run stays finite and
    complex64. One jitted program for both problems of every case. For rows whose Optax twin is not
    defined for complex numbers (``g * g``, complex inner products, ``clip``/``cbrt`` of complex)."""
    plain, rotated = tr.problem("complex"), tr.problem("complex_rotated")
    txs = [case.make() for case in cases for _ in range(2)]
    extra = [case.extra_args for case in cases for _ in range(2)]
    runs = run(txs, [plain, rotated] * len(cases), extra)
    for i, case in enumerate(cases):
        (trajectory, state), (turned, _) = runs[2 * i], runs[2 * i + 1]
        for leaf in jax.tree.leaves((trajectory, state)):
            if jnp.issubdtype(jnp.result_type(leaf), jnp.inexact):
                assert np.all(np.isfinite(np.asarray(leaf))), f"{case.name}: not finite"
        assert {jnp.dtype(x.dtype) for x in jax.tree.leaves(trajectory)} == {jnp.dtype(jnp.complex64)}
        expected = jax.tree.map(lambda x: jnp.asarray(tr.PHASE * np.asarray(x), jnp.complex64), trajectory)
        tr.assert_trajectories_close(turned, expected, label=f"{case.name} rotated by the phase ")
