"""The shared trajectory harness: one test problem, both sides run on it, compared step by step.

The problem is a nested pytree (dict, Flax ``FrozenDict``, ``nnx.State``, a ``None`` leaf; scalar,
vector, matrix and 3-D leaves) and a gradient sequence ``g_t = noise_t + 0.125 * w_t``. The
optcompose side runs every case of a table in one jitted program (one ``lax.scan`` per case), in
an eager Python loop, or under ``jax.pmap``; the reference side is reference.py in NumPy. Leaves
are compared with the suite's one comparator (helpers.py), at each dtype's trajectory tolerance.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from flax.core import FrozenDict
from helpers import tree_difference
from reference import Leaves, RefTransform, Rule, _f64, _store

STEPS = 20
GRAD_PARAM_COUPLING = 0.125
"""Gradients are ``noise_t + 0.125 * w``: a power of two, so the product is exact in any dtype."""


# ----------------------------------------------------------------------------------------------
# The shared test problem: a nested pytree, a gradient sequence, and the reference trajectory.


def make_params(low_precision: bool = False) -> dict[str, Any]:
    """Scalar, vector, matrix and 3-D leaves in a dict, a FrozenDict and an nnx.State, plus a None.

    ``low_precision`` stores the kernel in bfloat16 and the conv weight in float16. The bias starts
    at zero, which exercises the zero-norm branch of the trust ratio on the first step.
    """
    rng = np.random.default_rng(0)
    kernel_dtype = jnp.bfloat16 if low_precision else jnp.float32
    conv_dtype = jnp.float16 if low_precision else jnp.float32
    return {
        "dense": {
            "kernel": jnp.asarray(rng.uniform(-1, 1, (3, 4)), kernel_dtype),
            "bias": jnp.zeros((4,), jnp.float32),
        },
        "scale": jnp.asarray(0.7, jnp.float32),
        "conv": FrozenDict({"w": jnp.asarray(rng.uniform(-1, 1, (2, 3, 2)), conv_dtype)}),
        "norm": nnx.State({"gamma": jnp.asarray(rng.uniform(0.5, 1.5, (3,)), jnp.float32)}),
        "buffers": None,
    }


def make_noise(params: Any, steps: int = STEPS, seed: int = 1) -> Any:
    """A float32 array of shape ``(steps, *leaf.shape)`` per leaf, magnitudes in [0.5, 1.5]."""
    rng = np.random.default_rng(seed)

    def draw(leaf):
        shape = (steps, *np.shape(leaf))
        return jnp.asarray(rng.choice([-1.0, 1.0], shape) * rng.uniform(0.5, 1.5, shape), jnp.float32)

    return jax.tree.map(draw, params)


def is_matrix(path: str, leaf: Any) -> bool:
    return len(np.shape(leaf)) >= 2


def group_of(path: str, leaf: Any) -> str:
    return "dense" if "dense" in path else "rest"


def tree_rule(rule: Rule) -> Callable[[Any], Any]:
    """The same rule as a function of a parameter pytree (as masks and labels are given)."""
    return lambda params: jax.tree_util.tree_map_with_path(lambda p, x: rule(jax.tree_util.keystr(p), x), params)


def explicit_mask(params: Any) -> Any:
    """An explicit pytree of Python bools, same containers as params (FrozenDict, nnx.State, None)."""
    return jax.tree_util.tree_map_with_path(lambda p, x: bool(is_matrix(jax.tree_util.keystr(p), x)), params)


def flatten(tree: Any) -> Leaves:
    """``{keystr(path): ndarray}`` for every (non-None) leaf, dtypes kept."""
    return {
        jax.tree_util.keystr(path): np.asarray(leaf) for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]
    }


def ref_gradient(w: np.ndarray, noise: np.ndarray) -> np.ndarray:
    """noise + 0.125 w in float32, stored in w's dtype (bitwise what the harness computes)."""
    w = np.asarray(w)
    return (noise.astype(np.float32) + np.float32(GRAD_PARAM_COUPLING) * w.astype(np.float32)).astype(w.dtype)


def reference_trajectory(ref: RefTransform, params: Any, noise: Any) -> list[Leaves]:
    """The parameters after each step, from the reference: w_{t+1} = w_t + u_t in w's dtype."""
    w, noise = flatten(params), flatten(noise)
    steps = next(iter(noise.values())).shape[0]
    state = ref.init(w)
    trajectory = []
    for t in range(steps):
        g = {k: ref_gradient(w[k], noise[k][t]) for k in w}
        u, state = ref.update(g, state, w)
        w = {k: _store(_f64(w[k]) + _f64(u[k]), w[k]) for k in w}
        trajectory.append(w)
    return trajectory


# ----------------------------------------------------------------------------------------------
# Problems derived from the shared one: complex parameters, a global phase.

PHASE = complex(np.cos(0.7), np.sin(0.7))
"""A global phase e^{0.7i}: complex-aware transforms are equivariant under it."""


def make_complex_params(rotated: bool = False) -> dict[str, Any]:
    """The float32 problem as complex64 leaves ``w + i w'`` (``rotated``: times :data:`PHASE`)."""
    real, imag = make_params(False), make_params(False)
    rng = np.random.default_rng(2)
    imag = jax.tree.map(lambda x: jnp.asarray(rng.uniform(-1, 1, np.shape(x)), jnp.float32), imag)
    factor = PHASE if rotated else 1.0
    return jax.tree.map(
        lambda a, b: jnp.asarray(factor * (np.asarray(a) + 1j * np.asarray(b)), jnp.complex64), real, imag
    )


def make_complex_noise(params: Any, rotated: bool = False) -> Any:
    real, imag = make_noise(params, seed=1), make_noise(params, seed=3)
    factor = PHASE if rotated else 1.0
    return jax.tree.map(
        lambda a, b: jnp.asarray(factor * (np.asarray(a) + 1j * np.asarray(b)), jnp.complex64), real, imag
    )


# ----------------------------------------------------------------------------------------------
# The optcompose side: one compiled lax.scan per transform (or a plain Python loop, or pmap).


def _gradient(w: jax.Array, noise: jax.Array) -> jax.Array:
    """noise + 0.125 w, computed in float32 (complex64 for complex leaves), stored in w's dtype."""
    dtype = jnp.dtype(jnp.result_type(w))
    # Explicit, so that the harness itself traces under strict dtype promotion.
    wide = {"complex64": dtype, "complex128": dtype, "float64": jnp.float64}.get(dtype.name, jnp.float32)
    return (noise.astype(wide) + GRAD_PARAM_COUPLING * w.astype(wide)).astype(jnp.result_type(w))


def gradients(params: Any, noise_t: Any) -> Any:
    """The gradient of one step for every leaf (None leaves stay None)."""
    return jax.tree.map(_gradient, params, noise_t)


def _extras_per_step(extra_args: Callable[[int], dict] | None, steps: int) -> tuple[Any, Any]:
    """(array leaves stacked over the steps, the rest) of ``extra_args(t)`` for t < steps."""
    if extra_args is None:
        return None, None
    per_step = [jax.tree.flatten(extra_args(t)) for t in range(steps)]
    treedef = per_step[0][1]
    dynamic, static = [], []
    for position in range(treedef.num_leaves):
        values = [leaves[position] for leaves, _ in per_step]
        if all(isinstance(v, (int, float, complex, np.ndarray, np.generic, jax.Array)) for v in values):
            dynamic.append(jnp.stack([jnp.asarray(v) for v in values]))
            static.append(None)
        else:
            if any(v is not values[0] for v in values[1:]):
                raise ValueError("extra_args: non-array arguments (functions...) must be the same object every step")
            dynamic.append(None)
            static.append(values[0])
    return dynamic, (treedef, static)


def _merge_extras(dynamic_t: Any, static: Any) -> dict:
    if static is None:
        return {}
    treedef, fixed = static
    leaves = [f if d is None else d for d, f in zip(dynamic_t, fixed, strict=True)]
    return jax.tree.unflatten(treedef, leaves)


def _step(tx: Any, apply_updates: Callable[[Any, Any], Any], one_pass: bool = False, static_extras: Any = None):
    from optcompose.speed._step import step as one_pass_step

    def step(carry, inputs):
        params, state = carry
        noise_t, extras_t = inputs
        grads = gradients(params, noise_t)
        extra = _merge_extras(extras_t, static_extras)
        if one_pass:
            params, state = one_pass_step(tx, grads, state, params, **extra)
        else:
            updates, state = tx.update(grads, state, params, **extra)
            params = apply_updates(params, updates)
        return (params, state), params

    return step


def _replicate(tree: Any, devices: int) -> Any:
    return jax.tree.map(lambda x: jnp.broadcast_to(x, (devices, *jnp.shape(x))), tree)


def run_many(
    txs: list[Any],
    problems: list[tuple[Any, Any]],
    mode: str = "jit",
    devices: int = 8,
    one_pass: bool = False,
    extra_args: list[Callable[[int], dict] | None] | None = None,
    more_problems: list[list[tuple[Any, Any]]] = (),
) -> list[tuple[Any, Any]]:
    """Runs each transform on its (params, noise); returns [(parameters after each step, final state)].

    ``mode``: ``"jit"`` (all the ``lax.scan`` loops in one jitted program, so one compilation
    serves every case), ``"eager"`` (a Python loop per transform, nothing jitted by us) or
    ``"pmap"`` (the same program under ``jax.pmap`` on ``devices`` devices, with replicated
    params, state and gradients; every output then has a leading replica axis). ``one_pass``
    steps with ``optcompose.step`` instead of ``update`` + ``apply_updates``. ``extra_args``: per
    transform, ``f(t) -> dict`` of keyword arguments for its ``update`` at step ``t``.
    """
    from optcompose._base import apply_updates

    extra_args = extra_args or [None] * len(txs)
    steps_of = [jax.tree.leaves(noise)[0].shape[0] for _, noise in problems]
    extras = [_extras_per_step(f, n) for f, n in zip(extra_args, steps_of, strict=True)]
    steps = [_step(tx, apply_updates, one_pass, static) for tx, (_, static) in zip(txs, extras, strict=True)]
    states = [tx.init(params) for tx, (params, _) in zip(txs, problems, strict=True)]
    if mode == "eager":
        results = []
        for step, state, (params, noise), (dynamic, _), n in zip(
            steps, states, problems, extras, steps_of, strict=True
        ):
            carry, outputs = (params, state), []
            for t in range(n):
                at_t = None if dynamic is None else [None if d is None else d[t] for d in dynamic]
                carry, out = step(carry, (jax.tree.map(lambda x, t=t: x[t], noise), at_t))
                outputs.append(out)
            results.append((jax.tree.map(lambda *xs: jnp.stack(xs), *outputs), carry[1]))
        return results

    def scans(all_params, all_states, all_noise, all_dynamic):
        results = []
        for step, params, state, noise, dynamic in zip(
            steps, all_params, all_states, all_noise, all_dynamic, strict=True
        ):
            (_, final_state), trajectory = jax.lax.scan(step, (params, state), (noise, dynamic))
            results.append((trajectory, final_state))
        return results

    args = ([params for params, _ in problems], states, [noise for _, noise in problems], [d for d, _ in extras])
    if mode == "jit":
        compiled = jax.jit(scans)
        results = compiled(*args)
        for other in more_problems:
            other_states = [tx.init(params) for tx, (params, _) in zip(txs, other, strict=True)]
            other_args = ([p for p, _ in other], other_states, [n for _, n in other], args[3])
            results = [*results, *compiled(*other_args)]
        return results
    if mode == "pmap":
        return jax.pmap(scans)(*_replicate(args, devices))
    raise ValueError(f"mode must be 'jit', 'eager' or 'pmap', got {mode!r}")


def run_trajectory(tx: Any, params: Any, noise: Any, mode: str = "jit", devices: int = 8) -> tuple[Any, Any]:
    """``run_many`` for one transform: (parameters after each step, final state)."""
    return run_many([tx], [(params, noise)], mode, devices)[0]


# ----------------------------------------------------------------------------------------------
# Comparing trajectories.

TRAJECTORY_TOLERANCES: dict[str, tuple[float, float]] = {"float32": (2e-5, 2e-6)}
"""(rtol, atol) per leaf dtype after 20 steps of float32 round-off (complex64 leaves use float32's);
other dtypes keep helpers.TOLERANCES (bfloat16 1e-2, float16 1e-3: about an ulp of the stored value).

float32 leaves are held to float32 accuracy in every problem, the low-precision one included.
"""


def assert_trajectory_close(trajectory: Any, reference: list[Leaves], label: str = "", **overrides: Any) -> None:
    """Compares every leaf at every step; the message names the first bad step and leaf."""
    got = flatten(trajectory)
    assert set(got) == set(reference[0]), f"{label}: leaves {sorted(got)} vs {sorted(reference[0])}"
    tolerances = {**TRAJECTORY_TOLERANCES, **overrides}
    for t, want in enumerate(reference):
        found = tree_difference({k: v[t] for k, v in got.items()}, want, **tolerances)
        assert not found, f"{label}at step {t + 1}: {found}"


def assert_trajectories_close(got: Any, want: Any, label: str = "", **overrides: Any) -> None:
    """Two runs of the harness (stacked parameters) against each other, step by step."""
    steps = jax.tree.leaves(want)[0].shape[0]
    assert_trajectory_close(
        got, [flatten(jax.tree.map(lambda x, t=t: x[t], want)) for t in range(steps)], label, **overrides
    )


# ----------------------------------------------------------------------------------------------
# Tables of cases (tests/cases.py): each run once per session, all cases in one program.

_PROBLEMS: dict[str, tuple[Any, Any]] = {}
_REFERENCES: dict[str, list[Leaves]] = {}
_RUNS: dict[tuple[Any, ...], dict[str, Any]] = {}


def problem(low_precision: bool | str) -> tuple[Any, Any]:
    """The shared (params, noise) pair, built once: ``False`` (float32), ``True`` (bfloat16 and
    float16 leaves beside float32 ones), ``"complex"`` or ``"complex_rotated"`` (complex64)."""
    key = {False: "float32", True: "low_precision"}.get(low_precision, low_precision)
    if key not in _PROBLEMS:
        if key in ("complex", "complex_rotated"):
            params = make_complex_params(key == "complex_rotated")
            _PROBLEMS[key] = (params, make_complex_noise(params, key == "complex_rotated"))
        else:
            params = make_params(key == "low_precision")
            _PROBLEMS[key] = (params, make_noise(params))
    return _PROBLEMS[key]


class RowError(Exception):
    """A case of a table could not be built or traced; raised again by that case's own test."""


def run_cases(
    cases: list[Any], mode: str, one_pass: bool = False, side: str = "make", kind: str | None = None
) -> dict[str, Any]:
    """``run_many`` over a table of cases, once per (table, mode, one_pass, side, kind) per session.

    ``side``: the case attribute that builds the transform (``"make"``, or ``"optax"``); ``kind``:
    the problem (default: each case's precision; ``"complex"``, ``"complex_rotated"``), or a tuple
    of problems with the same shapes, run by one compiled program (a tuple of results each). Returns
    ``{name: (trajectory, final_state)}``; if the table cannot run as one program, each case runs
    alone and a case that fails maps to its ``RowError``.
    """
    key = (tuple(case.name for case in cases), mode, one_pass, side, kind)
    if key not in _RUNS:
        kinds = kind if isinstance(kind, tuple) else (kind,)

        def run(group):
            txs = [getattr(case, side)() for case in group]
            sets = [[problem(case.low_precision if k is None else k) for case in group] for k in kinds]
            flat = run_many(
                txs, sets[0], mode, one_pass=one_pass, extra_args=[c.extra_args for c in group], more_problems=sets[1:]
            )
            n = len(group)
            return [tuple(flat[i * n + j] for i in range(len(kinds))) if len(kinds) > 1 else flat[j] for j in range(n)]

        try:
            results = dict(zip((c.name for c in cases), run(cases), strict=True))
        except Exception:  # one bad row must not fail the others: run them one by one
            results = {}
            for case in cases:
                try:
                    results[case.name] = run([case])[0]
                except Exception as error:
                    results[case.name] = RowError(f"{case.name} ({side}, {mode}): {type(error).__name__}: {error}")
                    results[case.name].__cause__ = error
        _RUNS[key] = results
    return _RUNS[key]


def _current_test() -> str:
    """``path::function`` of the running test (from pytest's PYTEST_CURRENT_TEST)."""
    current = os.environ.get("PYTEST_CURRENT_TEST", "").split(" ")[0]
    return current.split("[")[0].split("@")[0]


SMALL_SELECTION = 40
"""A test selecting at most this many rows compiles its own program instead of the shared one."""


def batch(cases: list[Any], case: Any) -> list[Any]:
    """The rows to compile together with ``case``. A test that runs only sampled rows compiles only
    those (its own selection); a test over the whole table shares one program with every other such
    test: the rows any selected test uses (``cases.SELECTED``). Outside pytest: all of ``cases``."""
    import cases as table

    own = table.SELECTED_BY_TEST.get(_current_test())
    # A test of a few rows (the sample, a module's rows) compiles only those: sharing the whole
    # table's program would compile all of it in that test's worker.
    small = own is not None and (own <= table.SAMPLE or len(own) <= SMALL_SELECTION)
    pool = own if small else table.SELECTED
    if pool and case.name in pool:
        return [c for c in cases if c.name in pool]
    return cases


def result(cases: list[Any], case: Any, mode: str, **kwargs: Any) -> tuple[Any, Any]:
    """``case``'s (trajectory, final state) from ``run_cases(cases, mode, ...)``; raises its error."""
    found = run_cases(batch(cases, case), mode, **kwargs)[case.name]
    if isinstance(found, RowError):
        raise found
    return found


def reference_of(case: Any) -> list[Leaves]:
    """The NumPy reference trajectory of ``case`` on its problem, computed once."""
    if case.name not in _REFERENCES:
        params, noise = problem(case.low_precision)
        _REFERENCES[case.name] = reference_trajectory(case.reference(), params, noise)
    return _REFERENCES[case.name]


def first_replica(tree: Any) -> Any:
    return jax.tree.map(lambda x: x[0], tree)


def check_case(case: Any, mode: str, table: list[Any] | None = None, one_pass: bool = False) -> None:
    """Compares ``case`` run in ``mode`` with its reference at every step (every replica under pmap).

    ``table`` is the list of cases compiled together with ``case`` (one program for all of them);
    ``one_pass`` steps with ``optcompose.step``.
    """
    params, _ = problem(case.low_precision)
    trajectory, state = result(table or [case], case, mode, one_pass=one_pass)
    expected = reference_of(case)
    if mode == "pmap":
        replicas = jax.tree.leaves(trajectory)[0].shape[0]
        for replica in range(replicas):
            one = jax.tree.map(lambda x, replica=replica: x[replica], trajectory)
            assert_trajectory_close(one, expected, label=f"{case.name} replica {replica} ")
        trajectory = first_replica(trajectory)
    else:
        assert_trajectory_close(trajectory, expected, label=f"{case.name} ")
    # The trajectory keeps the parameters' containers, including the None leaf.
    assert jax.tree.structure(jax.tree.map(lambda x: x[0], trajectory)) == jax.tree.structure(params)
    for path, leaf in jax.tree_util.tree_flatten_with_path(state)[0]:
        if jnp.issubdtype(jnp.result_type(leaf), jnp.inexact):
            assert np.all(np.isfinite(np.asarray(leaf, np.float64))), f"{case.name}: non-finite state at {path}"


_TABLES: dict[tuple[Any, ...], dict[str, Any]] = {}


def run_table(key: str, cases: list[Any], build: Callable[[Any], tuple[Callable[..., Any], tuple[Any, ...]]]):
    """``{name: fn(*args)}`` for ``fn, args = build(case)``, every case in one jitted program.

    Computed once per (key, table) per session. A case whose ``build`` or trace fails maps to its
    ``RowError`` (the table then runs case by case, so one bad row fails only its own tests).
    """
    cache_key = (key, tuple(case.name for case in cases))
    if cache_key not in _TABLES:

        def run(group):
            built = [build(case) for case in group]
            fns = [fn for fn, _ in built]
            return jax.jit(lambda all_args: [fn(*args) for fn, args in zip(fns, all_args, strict=True)])(
                [args for _, args in built]
            )

        try:
            results = dict(zip((case.name for case in cases), run(cases), strict=True))
        except Exception:
            results = {}
            for case in cases:
                try:
                    results[case.name] = run([case])[0]
                except Exception as error:
                    results[case.name] = RowError(f"{case.name} ({key}): {type(error).__name__}: {error}")
                    results[case.name].__cause__ = error
        _TABLES[cache_key] = results
    found = _TABLES[cache_key]
    return found


def table_result(key: str, cases: list[Any], case: Any, build: Callable[[Any], Any]) -> Any:
    """``case``'s entry of ``run_table(key, cases, build)``; raises the case's own error."""
    found = run_table(key, batch(cases, case), build)[case.name]
    if isinstance(found, RowError):
        raise found
    return found
