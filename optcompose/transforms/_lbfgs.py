"""L-BFGS's direction: the gradient multiplied by a limited-memory inverse-Hessian estimate."""

from __future__ import annotations

import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from optcompose import _tree as tree_lib
from optcompose import _validate as validate
from optcompose._base import GradientTransformationExtraArgs, Params, Updates
from optcompose._hyperparams import hyperparam_dtype
from optcompose._numerics import widen
from optcompose.transforms._linesearch import tree_axpy, tree_inner, tree_scale, tree_squared_norm


class ScaleByLBFGSState(NamedTuple):
    """The state of ``scale_by_lbfgs`` (Optax's fields; no numeric hyperparameters).

    Attributes:
      count: updates done (saturating int32).
      params: the params of the last update (zeros before the first).
      updates: the incoming updates (gradients) of the last update.
      diff_params_memory: ``memory_size`` stacked param differences ``s_k = w_{k+1} - w_k``, per
        leaf of shape ``(memory_size, *leaf.shape)``, used as a ring buffer.
      diff_updates_memory: the matching gradient differences ``y_k = g_{k+1} - g_k``.
      weights_memory: ``rho_k = 1 / Re<y_k, s_k>`` (0 where that product is 0), shape ``(memory_size,)``.
    """

    count: jax.Array
    params: Params
    updates: Updates
    diff_params_memory: Any
    diff_updates_memory: Any
    weights_memory: jax.Array


def _take(memory: Any, index: jax.Array) -> Any:
    return jax.tree.map(lambda stack: stack[index], memory)


def _two_loop(updates, diff_params, diff_updates, rhos, gamma, newest):
    """``H_k g`` by the two-loop recursion (Nocedal & Wright 2006, Algorithm 7.4).

    The memory is a ring buffer whose oldest entry is at ``newest`` (the slot the next pair goes
    into); the first loop runs newest to oldest, the second oldest to newest. Empty and dropped
    slots hold ``rho = 0`` and zero vectors, so they change nothing.
    """
    size = rhos.shape[0]
    order = (newest + jnp.arange(size)) % size

    def backward(q, i):
        s, y = _take(diff_params, i), _take(diff_updates, i)
        alpha = rhos[i] * tree_inner(s, q)
        return tree_axpy(q, -alpha, y), alpha

    q, alphas = jax.lax.scan(backward, updates, order, reverse=True)
    r = tree_scale(gamma, q)

    def forward(r, pair):
        i, alpha = pair
        s, y = _take(diff_params, i), _take(diff_updates, i)
        beta = rhos[i] * tree_inner(y, r)
        return tree_axpy(r, alpha - beta, s), None

    r, _ = jax.lax.scan(forward, r, (order, alphas))
    return r


def _largest(tree: Any) -> jax.Array:
    return functools.reduce(jnp.maximum, [jnp.max(jnp.abs(widen(x)), initial=0.0) for x in jax.tree.leaves(tree)],
                            jnp.zeros((), jnp.float32))  # fmt: skip


def _rescaled_gamma(s: Any, y: Any) -> jax.Array:
    """``<s, y> / <y, y>`` from ``s / max|s|`` and ``y / max|y|``, for when the plain products over- or
    underflow (entries near 1e20 or 1e-20); 1 when ``y = 0``."""
    s_max, y_max = _largest(s), _largest(y)
    s_unit = jax.tree.map(lambda x: widen(x) / jnp.where(s_max > 0, s_max, 1.0), s)
    y_unit = jax.tree.map(lambda x: widen(x) / jnp.where(y_max > 0, y_max, 1.0), y)
    ratio = tree_inner(y_unit, s_unit) / jnp.where(y_max > 0, tree_squared_norm(y_unit), 1.0)
    return jnp.where(y_max > 0, ratio * (s_max / jnp.where(y_max > 0, y_max, 1.0)), 1.0)


class ScaleByLBFGS(GradientTransformationExtraArgs):
    """``scale_by_lbfgs(memory_size, scale_init_precond)``; the options are attributes."""

    def __new__(cls, memory_size: int, scale_init_precond: bool) -> ScaleByLBFGS:
        def init(params):
            tree_lib.check_floating(params, "params")
            stacked = jax.tree.map(lambda p: jnp.zeros((memory_size, *jnp.shape(p)), jnp.result_type(p)), params)
            return ScaleByLBFGSState(
                count=jnp.zeros((), jnp.int32),
                params=tree_lib.zeros_like(params),
                updates=tree_lib.zeros_like(params),
                diff_params_memory=stacked,
                diff_updates_memory=stacked,
                weights_memory=jnp.zeros((memory_size,), hyperparam_dtype(params)),
            )

        def update(updates, state, params=None, **extra_args):
            del extra_args
            if params is None:
                raise ValueError("scale_by_lbfgs needs params: call update(updates, state, params)")
            tree_lib.check_same_structure((updates, params), ("updates", "params"))
            newest = state.count % memory_size
            previous = (state.count - 1) % memory_size
            started = state.count > 0
            # The pair (s, y) from the last update to this one; nothing before the first update.
            s = tree_lib.map(lambda w, w_old: (widen(w) - widen(w_old)).astype(jnp.result_type(w)),
                             params, state.params, names=("params", "state.params"))  # fmt: skip
            y = tree_lib.map(lambda g, g_old: (widen(g) - widen(g_old)).astype(jnp.result_type(g)),
                             updates, state.updates, names=("updates", "state.updates"))  # fmt: skip
            curvature = tree_inner(y, s)
            rho = jnp.where(curvature == 0.0, 0.0, 1.0 / jnp.where(curvature == 0.0, 1.0, curvature))
            s, y = (jax.tree.map(lambda x: jnp.where(started, x, jnp.zeros_like(x)), tree) for tree in (s, y))
            rho = jnp.where(started, rho, 0.0)
            weights = state.weights_memory.dtype
            # A dropped pair (rho = 0: <y, s> zero or overflowed) is stored as zeros, so its products
            # with later vectors cannot overflow into 0 * inf = NaN (Optax stores it as it is).
            kept = rho != 0

            def store(memory, x):
                return memory.at[previous].set(jnp.where(kept, x, jnp.zeros_like(x)).astype(memory.dtype))

            diff_params = jax.tree.map(store, state.diff_params_memory, s)
            diff_updates = jax.tree.map(store, state.diff_updates_memory, y)
            rhos = state.weights_memory.at[previous].set(rho.astype(weights))
            if scale_init_precond:
                # gamma_k = <s, y> / <y, y> (Nocedal & Wright, eq. 7.20); at the first step a capped
                # 1 / ||g||, so the first step is at most 1 long (Optax's heuristic).
                numerator, denominator = tree_inner(y, s), tree_squared_norm(y)
                gamma = jnp.where(denominator > 0.0, numerator / jnp.where(denominator > 0.0, denominator, 1.0), 1.0)
                underflowed = (denominator > 0) & (denominator < 1e-30)
                plain_ok = jnp.isfinite(numerator) & jnp.isfinite(denominator) & ~underflowed
                gamma = jnp.where(plain_ok, gamma, _rescaled_gamma(s, y))
                squared = tree_squared_norm(jax.lax.stop_gradient(updates))
                # The rescaled norm where |g|^2 over- or underflows (Optax's direction is then 0).
                rescaled = tree_lib.global_norm(jax.lax.stop_gradient(updates)).astype(squared.dtype)
                first = jnp.where(
                    jnp.isfinite(squared) & (squared > 1e-30),
                    jnp.minimum(1.0, 1.0 / jnp.sqrt(squared)),
                    jnp.minimum(1.0, 1.0 / rescaled),
                )
                gamma = jnp.where(started, gamma, first)
            else:
                gamma = jnp.ones((), weights)
            direction = _two_loop(updates, diff_params, diff_updates, rhos, gamma, newest)
            return direction, ScaleByLBFGSState(
                count=tree_lib.safe_increment(state.count),
                params=params,
                updates=updates,
                diff_params_memory=diff_params,
                diff_updates_memory=diff_updates,
                weights_memory=rhos,
            )

        self = super().__new__(cls, init, update)
        self.memory_size, self.scale_init_precond = memory_size, scale_init_precond
        return self

    def __repr__(self) -> str:
        return f"scale_by_lbfgs(memory_size={self.memory_size}, scale_init_precond={self.scale_init_precond})"


def scale_by_lbfgs(memory_size: int = 10, scale_init_precond: bool = True) -> ScaleByLBFGS:
    """The L-BFGS direction ``H_k g_k`` (Liu & Nocedal 1989; Nocedal & Wright 2006, Algorithms 7.4–7.5).

    With ``s_j = w_{j+1} - w_j`` and ``y_j = g_{j+1} - g_j`` for the last ``m = memory_size`` steps,
    ``rho_j = 1 / Re<y_j, s_j>``, the inverse-Hessian estimate is the BFGS recursion::

        H_k^(j+1) = V_j^T H_k^(j) V_j + rho_j s_j s_j^T,   V_j = I - rho_j y_j s_j^T,
        H_k^(k-m) = gamma_k I,   gamma_k = Re<s_{k-1}, y_{k-1}> / |y_{k-1}|^2   (scale_init_precond)

    applied to ``g_k`` by the two-loop recursion, in O(m * params) time and memory. Each update
    first records the pair from the previous call, then returns the direction, so a line search
    chained after it (``lbfgs``) decides the step. Chain with a negative scaling to descend.

    Args:
      memory_size: m, the pairs kept (>= 1).
      scale_init_precond: scale the initial estimate by ``gamma_k`` (else ``H^(k-m) = I``). At the
        first step ``gamma_0 = min(1, 1 / ||g_0||)``.

    Returns:
      A ``GradientTransformationExtraArgs``; ``update`` requires params.

    Edge behaviour: a pair with ``<y, s> = 0`` (no movement, or a flat direction) gets
    ``rho = 0`` and is ignored; ``|y| = 0`` gives ``gamma = 1``; a zero first gradient gives a zero
    direction, and a first gradient whose squared norm overflows float32 still gives a unit step
    (Optax's ``1 / sqrt(inf) = 0`` gives none); likewise ``gamma`` is computed rescaled when
    ``<s, y>`` or ``|y|^2`` over- or underflows (Optax: ``inf / inf = NaN``), and a pair whose
    ``<y, s>`` overflows gets ``rho = 0``. Inner products are accumulated in float32 for
    bfloat16 leaves (Optax: in bfloat16); the memory is stored in the parameters' dtype. Complex
    leaves use Optax's conventions (``<a, b> = sum conj(a) b``), so pass ``conj(grad)`` as Optax's own L-BFGS tests do.
    """
    validate.integer_at_least("memory_size", memory_size, 1)
    return ScaleByLBFGS(int(memory_size), bool(scale_init_precond))
