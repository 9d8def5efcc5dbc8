"""Reduce the learning rate on a plateau of the loss (Optax's ``reduce_on_plateau``)."""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from optcompose import _tree as tree_lib
from optcompose import _validate as validate
from optcompose._base import GradientTransformationExtraArgs
from optcompose._hyperparams import Hyperparams, HyperparamSpec
from optcompose._numerics import widen
from optcompose.contrib._common import scalar_dtype


class ReduceLROnPlateauState(NamedTuple):
    """State of ``reduce_on_plateau``.

    Attributes:
      scale: the factor applied to the updates.
      best_value: the best accumulated loss so far.
      plateau_count: accumulation windows without improvement.
      cooldown_count: windows left in the cool-down.
      count: losses accumulated in the current window.
      avg_value: their running mean.
      hyperparams: ``factor``, ``rtol``, ``atol``, ``min_scale``.
    """

    scale: jax.Array
    best_value: jax.Array
    plateau_count: jax.Array
    cooldown_count: jax.Array
    count: jax.Array
    avg_value: jax.Array
    hyperparams: Hyperparams


def _check_count(name, value):
    validate.integer_at_least(name, int(value) if hasattr(value, "__index__") else value, 0)


def reduce_on_plateau(
    factor: float = 0.1,
    patience: jax.typing.ArrayLike = 10,
    rtol: float = 1e-4,
    atol: float = 0.0,
    cooldown: jax.typing.ArrayLike = 0,
    accumulation_size: jax.typing.ArrayLike = 1,
    min_scale: jax.typing.ArrayLike = 0.0,
) -> GradientTransformationExtraArgs:
    """Multiplies the updates by a scale that drops by ``factor`` when the loss stops improving.

    The loss (``update(..., value=loss)``) is averaged over windows of ``accumulation_size`` calls.
    At the end of each window, with ``v`` its mean::

        improved  = v < (1 - rtol) * best - atol          (best <- v if improved)
        plateau   = 0 if improved else plateau + 1
        in cool-down (cooldown_count > 0):   cooldown_count -= 1, plateau = 0
        otherwise, once plateau == patience: scale <- max(scale * factor, min_scale), plateau = 0,
                                             cooldown_count = cooldown

    and every call returns ``scale * updates`` (the scale as of this call's window end). This is
    Optax's schedule (itself ``torch.optim.lr_scheduler.ReduceLROnPlateau(mode='min',
    threshold_mode='rel')`` with windows of losses instead of epochs).

    Args:
      factor: the multiplier, in ``(0, 1)``.
      patience: windows without improvement before a reduction.
      rtol, atol: relative / absolute improvement thresholds (``>= 0``, not both 0, ``rtol <= 1``).
      cooldown: windows to wait after a reduction.
      accumulation_size: losses per window.
      min_scale: lower bound of the scale.

    Returns:
      A ``GradientTransformationExtraArgs`` with state ``ReduceLROnPlateauState``. ``best_value``
      starts at the largest finite float (Optax: inf), so the state is finite from the start; every
      finite loss still improves on it, so the decisions are Optax's.
    """
    validate.open_unit_interval("factor", factor)
    validate.non_negative("rtol", rtol)
    validate.non_negative("atol", atol)
    if float(rtol) == 0.0 and float(atol) == 0.0:
        raise ValueError("at least one of rtol and atol must be positive, got rtol = 0 and atol = 0")
    if float(rtol) > 1.0:
        raise ValueError(f"rtol must be <= 1, got {rtol!r}")
    _check_count("patience", patience)
    _check_count("cooldown", cooldown)
    validate.integer_at_least(
        "accumulation_size", int(accumulation_size) if hasattr(accumulation_size, "__index__") else accumulation_size,
        1,
    )  # fmt: skip
    validate.non_negative("min_scale", min_scale)
    spec = HyperparamSpec(factor=factor, rtol=rtol, atol=atol, min_scale=min_scale)
    patience, cooldown, accumulation_size = int(patience), int(cooldown), int(accumulation_size)

    def init(params):
        dtype = scalar_dtype(params)
        return ReduceLROnPlateauState(
            scale=jnp.ones((), dtype), best_value=jnp.asarray(jnp.finfo(dtype).max, dtype),
            plateau_count=jnp.zeros((), jnp.int32),
            cooldown_count=jnp.zeros((), jnp.int32), count=jnp.zeros((), jnp.int32), avg_value=jnp.zeros((), dtype),
            hyperparams=spec.init(dtype),
        )  # fmt: skip

    def window_end(state):
        hp = {k: v.astype(state.best_value.dtype) for k, v in state.hyperparams.items()}
        improved = state.avg_value < (1.0 - hp["rtol"]) * state.best_value - hp["atol"]
        best = jnp.where(improved, state.avg_value, state.best_value)
        plateau = jnp.where(improved, 0, tree_lib.safe_increment(state.plateau_count))
        cooling = state.cooldown_count > 0
        reduce = ~cooling & (plateau == patience)
        reduced = jnp.maximum(jnp.where(reduce, state.scale * hp["factor"], state.scale), hp["min_scale"])
        scale = jnp.where(cooling, state.scale, reduced)
        plateau = jnp.where(cooling | reduce, 0, plateau).astype(jnp.int32)
        cooldown_count = jnp.where(cooling, state.cooldown_count - 1, jnp.where(reduce, cooldown, 0)).astype(jnp.int32)
        return state._replace(
            scale=scale.astype(state.scale.dtype), best_value=best, plateau_count=plateau,
            cooldown_count=cooldown_count, count=jnp.zeros((), jnp.int32), avg_value=jnp.zeros_like(state.avg_value),
        )  # fmt: skip

    def update(updates, state, params=None, *, value=None, **extra_args):
        del params, extra_args
        if value is None:
            raise ValueError("reduce_on_plateau needs the loss: call update(updates, state, params, value=loss)")
        count = tree_lib.safe_increment(state.count)
        dtype = state.avg_value.dtype
        mean = (state.count.astype(dtype) * state.avg_value + jnp.asarray(value).astype(dtype)) / count.astype(dtype)
        state = state._replace(avg_value=mean.astype(state.avg_value.dtype), count=count)
        state = jax.lax.cond(count == accumulation_size, window_end, lambda s: s, state)

        def leaf(u):
            return (widen(u) * state.scale.astype(jnp.finfo(widen(u).dtype).dtype)).astype(jnp.result_type(u))

        return tree_lib.map(leaf, updates, names=("updates",)), state

    return GradientTransformationExtraArgs(init, update)
