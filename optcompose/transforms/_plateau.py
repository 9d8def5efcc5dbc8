"""Reduce the step size when a metric stops improving, with ``torch.optim.lr_scheduler.ReduceLROnPlateau``'s rules.

Optax's ``contrib.reduce_on_plateau`` (``optcompose.contrib``) keeps Optax's rules; this one follows
torch call for call (docs/methods/reduce_lr_on_plateau.md lists where the two differ).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from optcompose import _tree as tree_lib
from optcompose import _validate as validate
from optcompose._base import GradientTransformationExtraArgs
from optcompose._hyperparams import Hyperparams, HyperparamSpec, hyperparam_dtype
from optcompose._numerics import widen

_MODES = ("min", "max")
_THRESHOLD_MODES = ("rel", "abs")


class PlateauState(NamedTuple):
    """State of ``reduce_lr_on_plateau`` (torch's scheduler attributes, with ``lr / initial_lr`` as ``scale``).

    Attributes:
      scale: the factor the *next* update is multiplied by (torch: ``lr / initial_lr``).
      best: the best metric so far (torch: ``best``; starts at the largest finite float, or its
        negative for ``mode="max"``, where torch starts at ``inf`` / ``-inf``).
      num_bad_epochs: calls since the last improvement, reset by a reduction and in the cool-down.
      cooldown_counter: calls left in the cool-down after a reduction.
      count: metrics seen (torch: ``last_epoch``), saturating.
      hyperparams: ``factor``, ``patience``, ``threshold``, ``cooldown``, ``min_scale``, ``eps``.
    """

    scale: jax.Array
    best: jax.Array
    num_bad_epochs: jax.Array
    cooldown_counter: jax.Array
    count: jax.Array
    hyperparams: Hyperparams


def _scaled(u: jax.Array, scale: jax.Array) -> jax.Array:
    wide = widen(u)
    return (wide * scale.astype(jnp.finfo(wide.dtype).dtype)).astype(jnp.result_type(u))


def _number(name: str, value: Any) -> None:
    if callable(value):
        raise TypeError(f"{name} must be a number (reduce_lr_on_plateau takes no schedules), got {value!r}")


def _integer(name: str, value: Any) -> int:
    _number(name, value)
    validate.integer_at_least(name, int(value) if hasattr(value, "__index__") else value, 0)
    return int(value)


def reduce_lr_on_plateau(
    factor: float = 0.1,
    patience: int = 10,
    threshold: float = 1e-4,
    threshold_mode: str = "rel",
    cooldown: int = 0,
    min_scale: float = 0.0,
    mode: str = "min",
    eps: float = 1e-8,
) -> GradientTransformationExtraArgs:
    """Multiplies the updates by a scale that ``factor`` cuts when the metric plateaus (torch's rules).

    Every call takes the metric (``update(updates, state, params, value=metric)``), multiplies the
    updates by the current ``scale`` and then, with ``a`` the metric, does what one
    ``ReduceLROnPlateau.step(a)`` of torch does to ``lr / initial_lr``::

        better = a < best * (1 - threshold)    (min, rel)      a < best - threshold    (min, abs)
                 a > best * (1 + threshold)    (max, rel)      a > best + threshold    (max, abs)
        best, num_bad_epochs = (a, 0) if better else (best, num_bad_epochs + 1)
        if cooldown_counter > 0:  cooldown_counter -= 1;  num_bad_epochs = 0
        if num_bad_epochs > patience:
            new = max(scale * factor, min_scale)
            if scale - new > eps:  scale = new          (a reduction smaller than eps is skipped)
            cooldown_counter = cooldown;  num_bad_epochs = 0

    So one ``update`` is torch's ``optimizer.step(); scheduler.step(metric)``: the updates of a call
    use the scale in effect *before* its metric (the first call's scale is 1), and the state after a
    call holds the scale the next one uses. ``scale`` is torch's lr for ``lr=1``; for torch's
    ``min_lr`` and ``eps`` at another initial lr ``lr0`` pass ``min_lr / lr0`` and ``eps / lr0``.

    Args:
      factor: the multiplier of a reduction, in ``[0, 1)``.
      patience: bad calls tolerated; the ``patience + 1``-th in a row reduces.
      threshold: the improvement that counts (relative or absolute), ``>= 0``.
      threshold_mode: ``"rel"`` or ``"abs"``.
      cooldown: calls after a reduction during which bad calls are not counted.
      min_scale: the floor of the scale (torch's ``min_lr`` for ``lr=1``), ``>= 0``.
      mode: ``"min"`` (a loss) or ``"max"`` (an accuracy).
      eps: reductions of the scale by at most ``eps`` are skipped, ``>= 0``.

    Returns:
      A ``GradientTransformationExtraArgs`` whose state is ``PlateauState``. The numbers are data
      (``get_hyperparams`` / ``set_hyperparams``: ``factor``, ``patience``, ``threshold``,
      ``cooldown``, ``min_scale``, ``eps``); the comparisons run in float32 (float64 for float64
      parameters), torch's in Python floats.
    """
    _number("factor", factor)
    validate.unit_interval("factor", factor)
    patience = _integer("patience", patience)
    _number("threshold", threshold)
    validate.non_negative("threshold", threshold)
    validate.one_of("threshold_mode", threshold_mode, _THRESHOLD_MODES)
    cooldown = _integer("cooldown", cooldown)
    _number("min_scale", min_scale)
    validate.non_negative("min_scale", min_scale)
    validate.one_of("mode", mode, _MODES)
    _number("eps", eps)
    validate.non_negative("eps", eps)
    spec = HyperparamSpec(
        factor=factor, patience=patience, threshold=threshold, cooldown=cooldown, min_scale=min_scale, eps=eps
    )
    sign = 1.0 if mode == "min" else -1.0

    def init(params):
        dtype = hyperparam_dtype(params)
        return PlateauState(
            scale=jnp.ones((), dtype), best=jnp.asarray(sign * jnp.finfo(dtype).max, dtype),
            num_bad_epochs=jnp.zeros((), jnp.int32), cooldown_counter=jnp.zeros((), jnp.int32),
            count=jnp.zeros((), jnp.int32), hyperparams=spec.init(dtype),
        )  # fmt: skip

    def is_better(a, best, threshold):
        if threshold_mode == "rel":
            bound = best * (1.0 - threshold) if mode == "min" else best * (1.0 + threshold)
        else:
            bound = best - threshold if mode == "min" else best + threshold
        return a < bound if mode == "min" else a > bound

    def update(updates, state, params=None, *, value=None, **extra_args):
        del params, extra_args
        if value is None:
            raise ValueError("reduce_lr_on_plateau needs the metric: call update(updates, state, params, value=metric)")
        value = jnp.asarray(value)
        if value.shape != ():
            raise ValueError(f"value (the metric) must be a scalar, got an array of shape {value.shape}")
        dtype = state.best.dtype
        hp = {k: jnp.asarray(v).astype(dtype) for k, v in state.hyperparams.items()}
        new_updates = tree_lib.map(lambda u: _scaled(u, state.scale), updates, names=("updates",))

        a = value.astype(dtype)
        better = is_better(a, state.best, hp["threshold"])
        best = jnp.where(better, a, state.best)
        bad = jnp.where(better, 0, tree_lib.safe_increment(state.num_bad_epochs))
        cooling = state.cooldown_counter > 0
        cooldown_counter = jnp.where(cooling, state.cooldown_counter - 1, state.cooldown_counter)
        bad = jnp.where(cooling, 0, bad)
        reduce = bad.astype(dtype) > hp["patience"]
        candidate = jnp.maximum(state.scale * hp["factor"], hp["min_scale"])
        scale = jnp.where(reduce & (state.scale - candidate > hp["eps"]), candidate, state.scale)
        cooldown_counter = jnp.where(reduce, jnp.round(hp["cooldown"]).astype(jnp.int32), cooldown_counter)
        bad = jnp.where(reduce, 0, bad)
        return new_updates, PlateauState(
            scale=scale.astype(state.scale.dtype), best=best, num_bad_epochs=bad.astype(jnp.int32),
            cooldown_counter=cooldown_counter.astype(jnp.int32), count=tree_lib.safe_increment(state.count),
            hyperparams=state.hyperparams,
        )  # fmt: skip

    return GradientTransformationExtraArgs(init, update)
