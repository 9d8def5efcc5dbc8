"""Flat or sharp minima: the top Hessian eigenvalue and the worst loss increase in a small box.

Both measure the training objective ``f`` (a workload's ``objective``) at a run's final parameters
``theta``; both use only gradients and Hessian-vector products, never the Hessian itself.

Top Hessian eigenvalue (power iteration)
    With ``Hv = d/de grad f(theta + e v) |_{e=0}`` (forward-over-reverse, ``jax.jvp`` of
    ``jax.grad``) and a random unit start ``v_0``::

        w_k = H v_{k-1},   lambda_k = v_{k-1} . w_k,   v_k = w_k / ||w_k||

    ``lambda_k`` converges to the eigenvalue of largest magnitude (the top one at a minimum, where
    ``H`` is positive semi-definite) at the rate ``|lambda_2 / lambda_1|^k``. Large values mean a
    sharp minimum; gradient descent with step ``eta`` is only stable where ``lambda_1 < 2 / eta``.

Box sharpness (Keskar et al. 2017's epsilon-sharpness)
    ::

        S_rho(theta) = max_{|z_i| <= rho (|theta_i| + 1)}  f(theta + z) - f(theta)

    The box scales with each weight, so the measure does not depend on a layer's scale. The max is
    bounded from below by a few candidates: ``R = 4`` random corners ``z = c * sign(u)`` (``c`` the
    box half-widths, ``u`` Gaussian) and the adversarial corner along the gradient,
    ``z = c * sign(grad f(theta))``, which maximises the first-order model
    ``f(theta) + grad f . z`` over the box (one step of sign ascent, as FGSM). The largest increase
    among them is reported, with ``rho = 1e-3`` (Keskar et al. used 1e-3 and 5e-4).

Compile cost matters more than run time here (each program runs once per trial), so the
measuring program is compiled without XLA's optimisation passes.

All randomness (the power iteration's start, the random corners) is drawn on the host from a fixed
NumPy generator and passed in, so the compiled program holds no random-number generator.
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

POWER_ITERATIONS = 10
RANDOM_CORNERS = 4
RHO = 1e-3


def _dot(a: Any, b: Any) -> jax.Array:
    return sum(jnp.vdot(x, y) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True))


def _scale(tree: Any, factor: jax.Array) -> Any:
    return jax.tree.map(lambda x: x * factor, tree)


def hvp(f: Any, params: Any, v: Any) -> Any:
    """The Hessian-vector product ``H(params) v`` of a scalar function ``f``, forward over reverse."""
    return jax.jvp(jax.grad(f), (params,), (v,))[1]


def top_hessian_eigenvalue(f: Any, params: Any, v0: Any, iterations: int = POWER_ITERATIONS) -> jax.Array:
    """The eigenvalue of largest magnitude of the Hessian of ``f`` at ``params``, by power iteration from ``v0``."""
    v = _scale(v0, jax.lax.rsqrt(_dot(v0, v0)))

    def step(_, carry):
        v, _ = carry
        w = hvp(f, params, v)
        eigenvalue = _dot(v, w)
        norm = jnp.sqrt(_dot(w, w))
        v_next = jax.tree.map(lambda wi, vi: jnp.where(norm > 0, wi / jnp.where(norm > 0, norm, 1.0), vi), w, v)
        return v_next, eigenvalue

    _, eigenvalue = jax.lax.fori_loop(0, iterations, step, (v, jnp.zeros((), jnp.float32)))
    return eigenvalue


def box_sharpness(f: Any, params: Any, corners: Any, rho: float = RHO) -> jax.Array:
    """A lower bound on ``max_{|z| <= rho (|theta| + 1)} f(theta + z) - f(theta)`` (see the module docstring).

    ``corners`` has the structure of ``params`` with a leading axis of random directions (their
    signs pick the random corners); the gradient's sign picks the adversarial one.
    """
    base = f(params)
    half_width = jax.tree.map(lambda p: rho * (jnp.abs(p) + 1.0), params)
    adversarial = jax.tree.map(lambda g: g[None], jax.grad(f)(params))
    directions = jax.tree.map(lambda u, g: jnp.concatenate([u, g]), corners, adversarial)

    def increase(u):
        return f(jax.tree.map(lambda p, c, ui: p + c * jnp.sign(ui), params, half_width, u)) - base

    return jnp.max(jax.vmap(increase)(directions))


def probe_vectors(params: Any, seed: int = 0, corners: int = RANDOM_CORNERS) -> tuple[Any, Any]:
    """Host-drawn (NumPy, fixed seed) start vector and random corner directions shaped like ``params``."""
    rng = np.random.default_rng(seed)
    leaves, treedef = jax.tree.flatten(params)
    v0 = [rng.standard_normal(np.shape(x)).astype(np.float32) for x in leaves]
    dirs = [rng.standard_normal((corners, *np.shape(x))).astype(np.float32) for x in leaves]
    return jax.tree.unflatten(treedef, v0), jax.tree.unflatten(treedef, dirs)


def final_measures(workload: Any, params: Any, data: Any, v0: Any, corners: Any) -> dict[str, jax.Array]:
    """Everything measured once at the end of a run: test metric, objective, sharpness and box sharpness."""
    f = lambda p: workload.objective(p, data)
    metrics = workload.evaluate(params, data)
    return {
        "valid": metrics["valid"],
        "test": metrics["test"],
        "objective": f(params),
        "sharpness": top_hessian_eigenvalue(f, params, v0),
        "box_sharpness": box_sharpness(f, params, corners),
    }


@functools.lru_cache(maxsize=32)
def _measure_program(workload: Any) -> Any:
    """One jitted, trial-vmapped measuring program per workload (jit's own cache handles the trial count)."""
    fn = lambda params, data, v0, corners: final_measures(workload, params, data, v0, corners)
    return jax.vmap(fn, in_axes=(0, None, None, None))


_COMPILED: dict[tuple, Any] = {}
MEASURE_COMPILER_OPTIONS = {"xla_backend_optimization_level": 0}


def measure(workload: Any, stacked_params: Any, data: Any) -> dict[str, np.ndarray]:
    """``final_measures`` for a stack of trials' final parameters (leading trial axis), as NumPy arrays.

    Non-finite parameters give non-finite measures rather than an error.
    """
    one = jax.tree.map(lambda x: x[0], stacked_params)
    v0, corners = probe_vectors(one)
    args = (stacked_params, data, v0, corners)
    leaves = jax.tree.leaves(stacked_params)
    key = (workload, str(jax.tree.structure(stacked_params)), tuple(np.shape(x) for x in leaves))
    if key not in _COMPILED:
        if len(_COMPILED) >= 32:
            _COMPILED.pop(next(iter(_COMPILED)))
        lowered = jax.jit(_measure_program(workload)).lower(*args)
        _COMPILED[key] = lowered.compile(compiler_options=MEASURE_COMPILER_OPTIONS)
    out = _COMPILED[key](*args)
    return {k: np.asarray(v, dtype=np.float64) for k, v in out.items()}
