"""Sharpness-aware minimization (Foret et al. 2021) as an optimizer wrapper, and ``normalize``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from optcompose import _tree as tree_lib
from optcompose import _validate as validate
from optcompose._base import (
    EmptyState,
    GradientTransformation,
    GradientTransformationExtraArgs,
    OptState,
    Params,
    _check_transform,
    apply_updates,
    call_update,
    init_empty_state,
)
from optcompose._numerics import widen
from optcompose.contrib._common import scalar_dtype, tree_norm

NormalizeState = EmptyState


def normalize() -> GradientTransformationExtraArgs:
    """Divides the updates by their global l2 norm: ``u -> u / ||u||`` (SAM's ascent direction).

    Returns:
      A stateless transform (state ``NormalizeState``, Optax's ``EmptyState``). Zero updates stay
      zero (Optax divides 0 by 0 and returns NaN); the norm is rescaled, so it is finite for entries
      of 1e30 or 1e-30.
    """

    def update(updates, state, params=None, **extra_args):
        del params, extra_args
        norm = tree_norm(updates, scalar_dtype(updates))
        safe = jnp.where(norm > 0, norm, 1.0)

        def leaf(u):
            return (widen(u) / safe.astype(jnp.finfo(widen(u).dtype).dtype)).astype(jnp.result_type(u))

        return tree_lib.map(leaf, updates, names=("updates",)), state

    return GradientTransformationExtraArgs(init_empty_state, update)


class SAMState(NamedTuple):
    """State of ``sam``.

    Attributes:
      steps_since_sync: steps since the last outer step (0 .. sync_period - 1).
      opt_state: the outer optimizer's state.
      adv_state: the adversarial (ascent) optimizer's state.
      cache: the parameters at the last outer step (None in opaque mode).
    """

    steps_since_sync: jax.Array
    opt_state: OptState
    adv_state: OptState
    cache: Params | None


def _pick(condition: jax.Array, if_true: Any, if_false: Any) -> Any:
    return jax.tree.map(lambda a, b: jnp.where(condition, a, b), if_true, if_false)


def sam(
    optimizer: GradientTransformation,
    adv_optimizer: GradientTransformation,
    sync_period: int = 2,
    reset_state: bool = True,
    opaque_mode: bool = False,
    batch_axis_name: str | None = None,
) -> GradientTransformationExtraArgs:
    """Sharpness-aware minimization (Foret et al. 2021, Algorithm 1), generalised as in Optax::

        every sync_period steps, starting from y = x:
          sync_period - 1 ascent steps   y <- y - adv_optimizer(g(y))     (adv_optimizer: e.g.
                                                                           chain(normalize(), sgd(rho)) ascends)
          one outer step                  x <- x + optimizer(g(y_last))    (taken from the cached x)

    Transparent mode (default): each call of ``update`` is one of those steps, so the training loop
    is unchanged; the parameters visit the adversarial points and return to ``x`` plus the outer
    step on the last one. Opaque mode: one ``update`` call runs the whole period, asking for the
    gradients at the adversarial points through ``update(..., grad_fn=grad_fn)`` with
    ``grad_fn(params, i) -> grads`` (averaged with ``lax.pmean`` over ``batch_axis_name`` if given).

    Args:
      optimizer: the outer optimizer.
      adv_optimizer: the ascent step (its updates are negated: ``-adv_update`` is applied).
      sync_period: steps per period (``>= 1``).
      reset_state: re-initialize ``adv_optimizer``'s state at every outer step.
      opaque_mode: run the period inside one update (needs ``grad_fn``).
      batch_axis_name: a ``pmap``/``shard_map`` axis to average the adversarial gradients over.

    Returns:
      A ``GradientTransformationExtraArgs`` with state ``SAMState``. Branches are selected with
      ``jnp.where`` (Optax multiplies by 0 and 1, which turns an inf or NaN in the unused branch
      into NaN); the values are otherwise identical.
    """
    optimizer = _check_transform("optimizer", optimizer)
    adv_optimizer = _check_transform("adv_optimizer", adv_optimizer)
    validate.integer_at_least("sync_period", sync_period, 1)

    def init(params):
        return SAMState(
            steps_since_sync=jnp.zeros((), jnp.int32), opt_state=optimizer.init(params),
            adv_state=adv_optimizer.init(params), cache=None if opaque_mode else params,
        )  # fmt: skip

    def negate(tree):
        return jax.tree.map(lambda x: -x, tree)

    def transparent(updates, state, params=None, *, grad_fn: Callable | None = None, **extra_args):
        del grad_fn, extra_args
        if params is None:
            raise ValueError("sam needs params: call update(updates, state, params)")
        first = state.steps_since_sync == 0
        last = state.steps_since_sync == sync_period - 1
        adv_updates, adv_state = call_update(adv_optimizer, updates, state.adv_state, params, {})
        adv_updates = negate(adv_updates)
        opt_updates, opt_state = call_update(optimizer, updates, state.opt_state, state.cache, {})
        opt_updates = jax.tree.map(lambda c, p, u: c - p + u, state.cache, params, opt_updates)
        cache = _pick(first, params, state.cache)
        new_updates = _pick(last, opt_updates, adv_updates)
        adv_state = _pick(last, adv_optimizer.init(params) if reset_state else state.adv_state, adv_state)
        opt_state = _pick(last, opt_state, state.opt_state)
        steps = (state.steps_since_sync + 1) % sync_period
        return new_updates, SAMState(steps, opt_state, adv_state, cache)

    def opaque(updates, state, params=None, *, grad_fn: Callable | None = None, **extra_args):
        del extra_args
        if grad_fn is None:
            raise ValueError("sam(opaque_mode=True) needs grad_fn=f(params, i) -> grads in update")
        if params is None:
            raise ValueError("sam needs params: call update(updates, state, params)")
        adv_params, adv_updates, adv_state = params, updates, state.adv_state
        for i in range(sync_period - 1):
            adv_updates, adv_state = call_update(adv_optimizer, adv_updates, adv_state, adv_params, {})
            adv_params = apply_updates(adv_params, negate(adv_updates))
            adv_updates = grad_fn(adv_params, i)
            if batch_axis_name is not None:
                adv_updates = jax.lax.pmean(adv_updates, axis_name=batch_axis_name)
        if reset_state:
            adv_state = adv_optimizer.init(params)
        new_updates, opt_state = call_update(optimizer, adv_updates, state.opt_state, params, {})
        return new_updates, SAMState(jnp.zeros((), jnp.int32), opt_state, adv_state, None)

    return GradientTransformationExtraArgs(init, opaque if opaque_mode else transparent)
