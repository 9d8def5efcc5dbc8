"""Checks shared by the module tests of the Adam family, the sign family and the SGD variants.

Each test module selects its rows (tests/rows/adaptive.py, tests/rows/sign.py) by name. The rows
run on a small problem here (a 3 x 4 matrix and a scalar, 20 steps of the harness's gradients
``noise_t + 0.125 w``), all of a module's rows in one jitted program per side (ours, Optax's),
once per session, and are compared at every step with their NumPy reference and with Optax;
then in float64 under ``jax.enable_x64(True)`` (Optax's float64 arithmetic is exact to ~1e-15 per
operation, so the trajectories agree to 1e-12) and on complex64 parameters; torch.optim runs on
a matrix / vector / scalar / cube problem. The shared nested problem of trajectory.py (FrozenDict,
nnx.State, a None leaf, bfloat16 / float16 leaves) is the table's (tests/table/test_reference.py).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable
from typing import Any

import cases  # noqa: F401 - loads every row table before the row modules are imported
import jax
import jax.numpy as jnp
import numpy as np
import trajectory as tr
from helpers import tree_difference
from rows import adaptive, sign

ALL_ROWS = {row.name: row for row in adaptive.ROWS + sign.ROWS}

OPTAX_F32 = {"float32": (1e-6, 1e-7)}
"""Ours against Optax on float32 leaves: float32 round-off only (the hyperparameters are exact)."""

X64_TOL = {"float64": (1e-12, 1e-14)}


def rows(*names: str) -> list[Any]:
    return [ALL_ROWS[name] for name in names]


def with_optax(table: Iterable[Any]) -> list[Any]:
    return [row for row in table if row.optax is not None]


# ----------------------------------------------------------------------------------------------
# The small problem


_SMALL: dict[str, tuple[Any, Any]] = {}


def small_problem(kind: str = "float32") -> tuple[Any, Any]:
    """(params, noise) for ``kind``: float32, low_precision (a bfloat16 matrix), float64, complex, or
    complex_rotated (the complex problem times ``trajectory.PHASE``)."""
    if kind not in _SMALL:
        rng = np.random.default_rng(0)
        w, s = rng.uniform(-1, 1, (3, 4)), np.asarray(0.7)
        if kind in ("complex", "complex_rotated"):
            phase = tr.PHASE if kind == "complex_rotated" else 1.0
            params = {
                "w": jnp.asarray(phase * (w + 1j * rng.uniform(-1, 1, (3, 4))), jnp.complex64),
                "s": jnp.asarray(phase * (s - 0.4j), jnp.complex64),
            }
            real, imag = tr.make_noise(params, seed=1), tr.make_noise(params, seed=3)
            noise = jax.tree.map(lambda a, b: jnp.asarray(phase * (a + 1j * np.asarray(b)), jnp.complex64), real, imag)
        elif kind == "float64":
            with jax.enable_x64(True):
                params = {"w": jnp.asarray(w, jnp.float64), "s": jnp.asarray(s, jnp.float64)}
                noise = jax.tree.map(lambda x: jnp.asarray(x, jnp.float64), tr.make_noise(params, seed=1))
        else:
            dtype = jnp.bfloat16 if kind == "low_precision" else jnp.float32
            params = {"w": jnp.asarray(w, dtype), "s": jnp.asarray(s, jnp.float32)}
            noise = tr.make_noise(params, seed=1)
        _SMALL[kind] = (params, noise)
    return _SMALL[kind]


def _kind(case: Any) -> str:
    return "low_precision" if case.low_precision else "float32"


_RUNS: dict[tuple[Any, ...], dict[str, Any]] = {}


def run_table(table: list[Any], side: str = "make", kind: str | None = None) -> dict[str, tuple[Any, Any]]:
    """{name: (trajectory, final state)} of every case of ``table`` on the small problem (each
    case's precision, or ``kind``), all in one jitted program, as NumPy; computed once per session."""
    key = (tuple(case.name for case in table), side, kind)
    if key not in _RUNS:

        def run():
            txs = [getattr(case, side)() for case in table]
            problems = [small_problem(kind or _kind(case)) for case in table]
            results = tr.run_many(txs, problems, "jit", extra_args=[case.extra_args for case in table])
            return [(jax.tree.map(np.asarray, trajectory), state) for trajectory, state in results]

        if kind == "float64":
            with jax.enable_x64(True):
                results = run()
        else:
            results = run()
        _RUNS[key] = dict(zip((case.name for case in table), results, strict=True))
    return _RUNS[key]


def module_tests(table: list[Any]) -> tuple[Callable, Callable]:
    """A module's two small-problem tests of ``table``: ``test_matches_reference`` (every row) and
    ``test_matches_optax`` (the rows with an Optax twin). Assign them to those names in the module."""
    import pytest

    twins = with_optax(table)

    @pytest.mark.parametrize("case", table, ids=[row.name for row in table])
    def test_matches_reference(case):
        check_reference(table, case)

    @pytest.mark.parametrize("case", twins, ids=[row.name for row in twins])
    def test_matches_optax(case):
        check_optax(table, case)

    return test_matches_reference, test_matches_optax


def check_reference(table: list[Any], case: Any) -> None:
    """``case`` against its NumPy reference at every step (jitted with the rest of ``table``)."""
    params, noise = small_problem(_kind(case))
    trajectory, state = run_table(table)[case.name]
    expected = tr.reference_trajectory(case.reference(), params, noise)
    tr.assert_trajectory_close(trajectory, expected, label=f"{case.name} ")
    for path, leaf in jax.tree_util.tree_flatten_with_path(state)[0]:
        if jnp.issubdtype(jnp.result_type(leaf), jnp.inexact):
            finite = np.all(np.isfinite(np.asarray(leaf, np.float64)))
            assert finite, f"{case.name}: non-finite state at {jax.tree_util.keystr(path)}"


def check_optax(table: list[Any], case: Any, **tolerances: Any) -> None:
    """``case`` against its Optax twin at every step (each side one program for the table)."""
    ours, _ = run_table(table)[case.name]
    theirs, _ = run_table(with_optax(table), side="optax")[case.name]
    tr.assert_trajectories_close(ours, theirs, label=f"{case.name} vs optax ", **{**OPTAX_F32, **tolerances})


def check_complex_optax(table: list[Any], case: Any, **tolerances: Any) -> None:
    """``case`` against its Optax twin on complex64 parameters."""
    ours, _ = run_table(table, kind="complex")[case.name]
    theirs, _ = run_table(table, side="optax", kind="complex")[case.name]
    assert all(np.iscomplexobj(leaf) for leaf in jax.tree.leaves(ours))
    tr.assert_trajectories_close(ours, theirs, label=f"{case.name} complex vs optax ", **{**OPTAX_F32, **tolerances})


def check_x64(table: list[Any], case: Any, **tolerances: Any) -> None:
    """``case`` against its Optax twin on float64 parameters, under ``enable_x64``: 1e-12."""
    ours, _ = run_table(table, kind="float64")[case.name]
    theirs, _ = run_table(table, side="optax", kind="float64")[case.name]
    assert all(leaf.dtype == np.float64 for leaf in jax.tree.leaves(ours))
    tr.assert_trajectories_close(ours, theirs, label=f"{case.name} float64 vs optax ", **{**X64_TOL, **tolerances})


def check_eager(case: Any) -> None:
    """``case`` stepped in a Python loop (nothing jitted by us) against its NumPy reference."""
    params, noise = small_problem(_kind(case))
    [(trajectory, _)] = tr.run_many([case.make()], [(params, noise)], "eager", extra_args=[case.extra_args])
    tr.assert_trajectory_close(trajectory, tr.reference_trajectory(case.reference(), params, noise), label=case.name)


# ----------------------------------------------------------------------------------------------
# torch.optim


def torch_problem() -> tuple[dict[str, jax.Array], dict[str, jax.Array]]:
    """A matrix, a vector, a scalar and a 3-D leaf (float32), and their noise sequence."""
    rng = np.random.default_rng(3)
    params = {
        "matrix": jnp.asarray(rng.uniform(-1, 1, (3, 4)), jnp.float32),
        "vector": jnp.asarray(rng.uniform(-1, 1, (4,)), jnp.float32),
        "scalar": jnp.asarray(0.7, jnp.float32),
        "cube": jnp.asarray(rng.uniform(-1, 1, (2, 3, 2)), jnp.float32),
    }
    return params, tr.make_noise(params, seed=4)


def torch_trajectory(make_optimizer: Callable[[list[Any]], Any], params: Any, noise: Any) -> dict[str, np.ndarray]:
    """torch's parameters after each step, with the harness's gradients ``noise_t + 0.125 w``."""
    import torch

    tensors = {k: torch.nn.Parameter(torch.from_numpy(np.array(v, np.float32))) for k, v in params.items()}
    noise = {k: torch.from_numpy(np.array(v, np.float32)) for k, v in noise.items()}
    optimizer = make_optimizer(list(tensors.values()))
    steps = next(iter(noise.values())).shape[0]
    out: dict[str, list[np.ndarray]] = {k: [] for k in tensors}
    for t in range(steps):
        for k, p in tensors.items():
            p.grad = noise[k][t] + tr.GRAD_PARAM_COUPLING * p.detach()
        optimizer.step()
        for k, p in tensors.items():
            out[k].append(p.detach().numpy().copy())
    return {k: np.stack(v) for k, v in out.items()}


_TORCH_RUNS: dict[tuple[str, ...], dict[str, tuple[Any, Any]]] = {}


def torch_runs(pairs: dict[str, tuple[Callable[[list[Any]], Any], Callable[[], Any]]]) -> dict[str, tuple[Any, Any]]:
    """{name: (ours, torch's)} trajectories: ours in one jitted program for every pair."""
    key = tuple(pairs)
    if key not in _TORCH_RUNS:
        params, noise = torch_problem()
        ours = tr.run_many([make() for _, make in pairs.values()], [(params, noise)] * len(pairs), "jit")
        _TORCH_RUNS[key] = {
            name: ({k: np.asarray(v) for k, v in trajectory.items()}, torch_trajectory(make_torch, params, noise))
            for (name, (make_torch, _)), (trajectory, _) in zip(pairs.items(), ours, strict=True)
        }
    return _TORCH_RUNS[key]


def torch_stepwise(
    make_torch: Callable[[list[Any]], Any],
    make_ours: Callable[[], Any],
    present: dict[str, np.ndarray] | None = None,
    torch_state: str | None = None,
    ours_state: Callable[[Any], Any] | None = None,
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], dict[str, np.ndarray], dict[str, np.ndarray]]:
    """(ours, torch's, our state extra, torch's state extra) after each step on ``torch_problem``,
    stepped one update at a time with the harness's gradients ``noise_t + 0.125 w_t``.

    ``present[k][t]`` (bools shaped like the leaf) keeps those coordinates of the gradient and sets
    the others to exactly 0; torch then gets ``grad.to_sparse()``, whose entries are the nonzero
    ones. ``torch_state`` names a per-parameter entry of ``optimizer.state[p]`` and
    ``ours_state(state)`` its twin (a dict like the params), recorded after every step.
    """
    import torch

    params, noise = torch_problem()
    steps = tr.STEPS
    keep = present or {k: np.ones((steps, *np.shape(v)), bool) for k, v in params.items()}

    tx = make_ours()
    update = jax.jit(tx.update)
    w, state = params, tx.init(params)
    ours: dict[str, list[np.ndarray]] = {k: [] for k in params}
    ours_extra: dict[str, list[np.ndarray]] = {k: [] for k in params}
    for t in range(steps):
        grads = {k: jnp.where(keep[k][t], noise[k][t] + tr.GRAD_PARAM_COUPLING * w[k], 0.0) for k in w}
        updates, state = update(grads, state, w)
        w = jax.tree.map(lambda p, u: p + u, w, updates)
        for k in w:
            ours[k].append(np.asarray(w[k]))
            if ours_state is not None:
                ours_extra[k].append(np.asarray(ours_state(state)[k]))

    tensors = {k: torch.nn.Parameter(torch.from_numpy(np.array(v, np.float32))) for k, v in params.items()}
    optimizer = make_torch(list(tensors.values()))
    theirs: dict[str, list[np.ndarray]] = {k: [] for k in tensors}
    theirs_extra: dict[str, list[np.ndarray]] = {k: [] for k in tensors}
    for t in range(steps):
        for k, p in tensors.items():
            g = torch.from_numpy(np.array(noise[k][t], np.float32)) + tr.GRAD_PARAM_COUPLING * p.detach()
            g = torch.where(torch.from_numpy(np.asarray(keep[k][t])), g, torch.zeros_like(g))
            p.grad = g.to_sparse() if present is not None else g
        optimizer.step()
        for k, p in tensors.items():
            theirs[k].append(p.detach().numpy().copy())
            if torch_state is not None:
                theirs_extra[k].append(optimizer.state[p][torch_state].numpy().copy())

    def stack(d):
        return {k: np.stack(v) for k, v in d.items() if v}

    return stack(ours), stack(theirs), stack(ours_extra), stack(theirs_extra)


def max_abs_difference(ours: dict[str, np.ndarray], theirs: dict[str, np.ndarray]) -> float:
    """max over leaves and steps of |ours - theirs| (the parameters are of order 1)."""
    return max(
        float(np.max(np.abs(np.asarray(ours[k], np.float64) - np.asarray(theirs[k], np.float64)))) for k in theirs
    )


def assert_torch_close(ours: dict[str, np.ndarray], theirs: dict[str, np.ndarray], rtol: float = 2e-6,
                       atol: float = 2e-6, label: str = "") -> None:  # fmt: skip
    """Every leaf at every step within ``atol + rtol * |theirs|`` (float32 round-off over 20 steps)."""
    for k in theirs:
        np.testing.assert_allclose(ours[k], theirs[k], rtol=rtol, atol=atol, err_msg=f"{label} {k}")


def mark_slow(table: list[Any], fast: Iterable[str]) -> list[Any]:
    """``table`` as pytest params, all but the ``fast`` names marked ``slow``."""
    import pytest

    fast = set(fast)
    return [pytest.param(row, id=row.name, marks=() if row.name in fast else pytest.mark.slow) for row in table]


# ----------------------------------------------------------------------------------------------
# Optax's surface


def assert_same_signature(ours: Callable[..., Any], theirs: Callable[..., Any]) -> None:
    """Same parameter names, order, kinds and defaults (annotations aside; functions by name)."""
    got, want = inspect.signature(ours).parameters, inspect.signature(theirs).parameters
    assert list(got) == list(want), f"{getattr(ours, '__name__', ours)}: {list(got)} vs Optax's {list(want)}"
    for name, parameter in want.items():
        mine = got[name]
        assert mine.kind == parameter.kind, f"{name}: kind {mine.kind} vs Optax's {parameter.kind}"
        if callable(parameter.default) and not isinstance(parameter.default, type):
            assert getattr(mine.default, "__name__", None) == parameter.default.__name__, name
        else:
            assert _same_default(mine.default, parameter.default), f"{name}: {mine.default!r} vs {parameter.default!r}"


def _same_default(a: Any, b: Any) -> bool:
    if a is b:
        return True
    try:
        return bool(a == b) and type(a) is type(b)
    except Exception:  # arrays and dtypes compare elementwise or not at all
        return repr(a) == repr(b)


def assert_same_fields(ours: type, theirs: type) -> None:
    """Our state record has Optax's fields in Optax's order, plus ``hyperparams`` last (if any)."""
    fields = tuple(ours._fields)
    if fields and fields[-1] == "hyperparams":
        fields = fields[:-1]
    assert ours.__name__ == theirs.__name__, (ours.__name__, theirs.__name__)
    assert fields == tuple(theirs._fields), f"{ours.__name__}: {ours._fields} vs Optax's {theirs._fields}"


EDGE_SCALES = (0.0, 1e30, 1e-30)
_EDGE_RUNS: dict[tuple[str, ...], dict[float, dict[str, Any]]] = {}


def edge_updates(makers: dict[str, Callable[[], Any]], steps: int = 3, **extra: Any) -> dict[float, dict[str, Any]]:
    """{scale: {name: last update}} after ``steps`` steps on constant gradients of +-scale (alternating
    signs), from zero parameters (a matrix, a vector, a scalar); every transform in one jitted program,
    vectorised over the scales."""
    key = tuple(makers)
    if key not in _EDGE_RUNS:
        params = {"w": jnp.zeros((3, 4)), "b": jnp.zeros(4), "s": jnp.zeros(())}
        signs = jax.tree.map(lambda x: jnp.where(jnp.arange(x.size) % 2 == 0, 1.0, -1.0).reshape(x.shape), params)
        scales = jnp.asarray(EDGE_SCALES, jnp.float32)

        def last_update(tx, scale):
            grads = jax.tree.map(lambda s: scale * s, signs)

            def step(state, _):
                updates, state = tx.update(grads, state, params, **extra)
                return state, updates

            _, updates = jax.lax.scan(step, tx.init(params), None, length=steps)
            return jax.tree.map(lambda u: u[-1], updates)

        def run():
            return {
                name: jax.vmap(lambda s, make=make: last_update(make(), s))(scales) for name, make in makers.items()
            }

        out = jax.jit(run)()
        _EDGE_RUNS[key] = {
            float(scale): {name: jax.tree.map(lambda u, i=i: np.asarray(u[i]), tree) for name, tree in out.items()}
            for i, scale in enumerate(EDGE_SCALES)
        }
    return _EDGE_RUNS[key]


def assert_finite(tree: Any, label: str = "") -> None:
    for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
        value = np.asarray(leaf)
        finite = np.isfinite(value.astype(np.complex128 if np.iscomplexobj(value) else np.float64))
        assert finite.all(), f"{label}{jax.tree_util.keystr(path)}: {int((~finite).sum())} non-finite values"


def assert_close(actual: Any, expected: Any, **tolerances: Any) -> None:
    found = tree_difference(actual, expected, **tolerances)
    assert not found, found
