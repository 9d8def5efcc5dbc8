"""The shared trajectory harness: one test problem, both sides run on it, compared step by step.

The problem is a nested pytree (dict, Flax ``FrozenDict``, ``nnx.State``, a ``None`` leaf; scalar,
vector, matrix and 3-D leaves) and a gradient sequence ``g_t = noise_t + 0.125 * w_t``. The
optcompose side runs every case of a table in one jitted program (one ``lax.scan`` per case), in
an eager Python loop, or under ``jax.pmap``; the reference side is reference.py in NumPy.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from flax.core import FrozenDict
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
# The optcompose side: one compiled lax.scan per transform (or a plain Python loop, or pmap).


def _gradient(w: jax.Array, noise: jax.Array) -> jax.Array:
    return (noise.astype(jnp.float32) + GRAD_PARAM_COUPLING * w.astype(jnp.float32)).astype(w.dtype)


def _step(tx: Any, apply_updates: Callable[[Any, Any], Any], one_pass: bool = False):
    from optcompose.speed._step import step as one_pass_step

    def step(carry, noise_t):
        params, state = carry
        grads = jax.tree.map(_gradient, params, noise_t)
        if one_pass:
            params, state = one_pass_step(tx, grads, state, params)
        else:
            updates, state = tx.update(grads, state, params)
            params = apply_updates(params, updates)
        return (params, state), params

    return step


def _replicate(tree: Any, devices: int) -> Any:
    return jax.tree.map(lambda x: jnp.broadcast_to(x, (devices, *jnp.shape(x))), tree)


def run_many(
    txs: list[Any], problems: list[tuple[Any, Any]], mode: str = "jit", devices: int = 8, one_pass: bool = False
) -> list[tuple[Any, Any]]:
    """Runs each transform on its (params, noise); returns [(parameters after each step, final state)].

    ``mode``: ``"jit"`` (all the ``lax.scan`` loops in one jitted program, so one compilation
    serves every case), ``"eager"`` (a Python loop per transform, nothing jitted by us) or
    ``"pmap"`` (the same program under ``jax.pmap`` on ``devices`` devices, with replicated
    params, state and gradients; every output then has a leading replica axis). ``one_pass``
    steps with ``optcompose.step`` instead of ``update`` + ``apply_updates``.
    """
    from optcompose._base import apply_updates

    steps = [_step(tx, apply_updates, one_pass) for tx in txs]
    states = [tx.init(params) for tx, (params, _) in zip(txs, problems, strict=True)]
    if mode == "eager":
        results = []
        for step, state, (params, noise) in zip(steps, states, problems, strict=True):
            carry, outputs = (params, state), []
            for t in range(jax.tree.leaves(noise)[0].shape[0]):
                carry, out = step(carry, jax.tree.map(lambda n, t=t: n[t], noise))
                outputs.append(out)
            results.append((jax.tree.map(lambda *xs: jnp.stack(xs), *outputs), carry[1]))
        return results

    def scans(all_params, all_states, all_noise):
        results = []
        for step, params, state, noise in zip(steps, all_params, all_states, all_noise, strict=True):
            (_, final_state), trajectory = jax.lax.scan(step, (params, state), noise)
            results.append((trajectory, final_state))
        return results

    args = ([params for params, _ in problems], states, [noise for _, noise in problems])
    if mode == "jit":
        return jax.jit(scans)(*args)
    if mode == "pmap":
        return jax.pmap(scans)(*_replicate(args, devices))
    raise ValueError(f"mode must be 'jit', 'eager' or 'pmap', got {mode!r}")


def run_trajectory(tx: Any, params: Any, noise: Any, mode: str = "jit", devices: int = 8) -> tuple[Any, Any]:
    """``run_many`` for one transform: (parameters after each step, final state)."""
    return run_many([tx], [(params, noise)], mode, devices)[0]


def assert_trajectory_close(
    trajectory: Any, reference: list[Leaves], rtol: float, atol: float, label: str = ""
) -> None:
    """Compares every leaf at every step; the message names the leaf and the first bad step."""
    got = flatten(trajectory)
    assert set(got) == set(reference[0]), f"{label}: leaves {sorted(got)} vs {sorted(reference[0])}"
    for key, values in got.items():
        want = np.stack([step[key] for step in reference])
        assert values.dtype == want.dtype, f"{label}{key}: dtype {values.dtype}, expected {want.dtype}"
        assert values.shape == want.shape, f"{label}{key}: shape {values.shape}, expected {want.shape}"
        got64, want64 = _f64(values), _f64(want)
        bad = ~np.isclose(got64, want64, rtol=rtol, atol=atol)
        if bad.any():
            first = int(np.argwhere(bad)[0][0])
            np.testing.assert_allclose(
                got64[first], want64[first], rtol=rtol, atol=atol, err_msg=f"{label}{key} at step {first + 1}"
            )


class Case(NamedTuple):
    """One trajectory test: an optcompose transform, its reference, and the pytree's precision."""

    name: str
    make: Callable[[], Any]
    reference: Callable[[], RefTransform]
    low_precision: bool = False


F32_TOL = {"rtol": 2e-5, "atol": 2e-6}
LOW_PRECISION_TOL = {"rtol": 2e-2, "atol": 2e-2}
_PROBLEMS: dict[bool, tuple[Any, Any]] = {}
_REFERENCES: dict[str, list[Leaves]] = {}


def problem(low_precision: bool) -> tuple[Any, Any]:
    """The shared (params, noise) pair, built once per precision."""
    if low_precision not in _PROBLEMS:
        params = make_params(low_precision)
        _PROBLEMS[low_precision] = (params, make_noise(params))
    return _PROBLEMS[low_precision]


_RUNS: dict[tuple[tuple[str, ...], str, bool], dict[str, tuple[Any, Any]]] = {}


def run_cases(cases: list[Case], mode: str, one_pass: bool = False) -> dict[str, tuple[Any, Any]]:
    """``run_many`` over a table of cases, once per (table, mode, one_pass) per session."""
    key = (tuple(case.name for case in cases), mode, one_pass)
    if key not in _RUNS:
        txs = [case.make() for case in cases]
        results = run_many(txs, [problem(case.low_precision) for case in cases], mode, one_pass=one_pass)
        _RUNS[key] = {case.name: result for case, result in zip(cases, results, strict=True)}
    return _RUNS[key]


def check_case(case: Case, mode: str, table: list[Case] | None = None, one_pass: bool = False) -> None:
    """Compares ``case`` run in ``mode`` with its reference at every step (every replica under pmap).

    ``table`` is the list of cases compiled together with ``case`` (one program for all of them);
    ``one_pass`` steps with ``optcompose.step``.
    """
    params, noise = problem(case.low_precision)
    trajectory, state = run_cases(table or [case], mode, one_pass)[case.name]
    if case.name not in _REFERENCES:
        _REFERENCES[case.name] = reference_trajectory(case.reference(), params, noise)
    expected = _REFERENCES[case.name]
    tol = LOW_PRECISION_TOL if case.low_precision else F32_TOL
    if mode == "pmap":
        replicas = jax.tree.leaves(trajectory)[0].shape[0]
        for replica in range(replicas):
            one = jax.tree.map(lambda x, replica=replica: x[replica], trajectory)
            assert_trajectory_close(one, expected, **tol, label=f"{case.name} replica {replica} ")
        trajectory = jax.tree.map(lambda x: x[0], trajectory)
    else:
        assert_trajectory_close(trajectory, expected, **tol, label=f"{case.name} ")
    # The trajectory keeps the parameters' containers, including the None leaf.
    assert jax.tree.structure(jax.tree.map(lambda x: x[0], trajectory)) == jax.tree.structure(params)
    for leaf in jax.tree.leaves(state):
        assert np.all(np.isfinite(np.asarray(leaf, np.float64))), f"{case.name}: non-finite state"
