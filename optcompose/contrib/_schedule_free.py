"""Schedule-Free learning (Defazio et al. 2024): interpolation and averaging in place of momentum."""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from optcompose import _tree as tree_lib
from optcompose import _validate as validate
from optcompose._base import (
    GradientTransformation,
    GradientTransformationExtraArgs,
    OptState,
    Params,
    ScalarOrSchedule,
    _check_transform,
    call_update,
    chain,
)
from optcompose._hyperparams import Hyperparams, HyperparamSpec, rename_hyperparams
from optcompose._numerics import widen
from optcompose.contrib._common import NO_PARAMS, scalar_dtype
from optcompose.optimizers._classic import sgd
from optcompose.schedules._join import warmup_constant_schedule
from optcompose.transforms._adaptive import scale_by_rms
from optcompose.transforms._decay import add_decayed_weights
from optcompose.transforms._scaling import scale_by_learning_rate


class ScheduleFreeState(NamedTuple):
    """State of ``schedule_free``.

    Attributes:
      b1: the interpolation weight (data: ``state._replace(b1=...)`` changes it).
      weight_sum: the sum of the averaging weights so far.
      step_count: the number of the next step, starting at 1.
      max_lr: the largest learning rate seen so far.
      base_optimizer_state: the state of the wrapped optimizer.
      z: the base optimizer's iterate (the SGD sequence).
      hyperparams: ``learning_rate`` (the value for the next step) and ``weight_lr_power``.
    """

    b1: jax.Array
    weight_sum: jax.Array
    step_count: jax.Array
    max_lr: jax.Array
    base_optimizer_state: OptState
    z: Params
    hyperparams: Hyperparams


def schedule_free_eval_params(state: OptState, params: Params) -> Params:
    """The parameters to evaluate a Schedule-Free model at: ``x = (y - (1 - b1) z) / b1``.

    Args:
      state: the ``ScheduleFreeState`` of the optimizer (Optax's or ours), not a chain holding it.
      params: the training parameters ``y`` (where the gradients are taken).

    Returns:
      ``x``, each leaf in its parameter's dtype (computed in float32 or wider).
    """
    b1, z = getattr(state, "b1", None), getattr(state, "z", None)
    if b1 is None or z is None:
        raise ValueError(
            "schedule_free_eval_params needs the ScheduleFreeState of a schedule_free optimizer, got "
            f"{type(state).__name__}; if it sits in a chain, pass that part of the state"
        )

    def leaf(y, zi):
        b = jnp.asarray(b1).astype(jnp.finfo(widen(y).dtype).dtype)
        return ((widen(y) - (1.0 - b) * widen(zi)) / b).astype(jnp.result_type(y))

    return tree_lib.map(leaf, params, z, names=("params", "z"))


def _averaging_weight(weight: jax.Array, total: jax.Array) -> jax.Array:
    # weight / total, with Optax's conventions: NaN if either is NaN, 0 for 0 / 0, inf kept.
    nan = jnp.isnan(weight) | jnp.isnan(total)
    return jnp.where(nan, jnp.nan, jnp.nan_to_num(weight / total, nan=0.0, posinf=jnp.inf))


def schedule_free(
    base_optimizer: GradientTransformation,
    learning_rate: ScalarOrSchedule,
    b1: jax.typing.ArrayLike = 0.9,
    weight_lr_power: jax.typing.ArrayLike = 2.0,
    state_dtype: Any | None = None,
) -> GradientTransformationExtraArgs:
    """Makes ``base_optimizer`` schedule-free (Defazio et al. 2024, "The Road Less Scheduled", Alg. 1)::

        z_{t+1} = z_t + base_update(g(y_t))                       (for SGD: z_t - lr * g)
        c_{t+1} = lr_max**p / sum_{i <= t} lr_max,i**p            (p = weight_lr_power)
        x_{t+1} = (1 - c_{t+1}) x_t + c_{t+1} z_{t+1}
        y_{t+1} = b1 x_{t+1} + (1 - b1) z_{t+1}

    The parameters are ``y`` (where gradients are evaluated); ``x`` is recomputed from ``y`` and
    ``z`` as ``(y - (1 - b1) z) / b1`` and evaluated with ``schedule_free_eval_params``. Use a base
    optimizer without momentum (``b1=0`` for Adam).

    Args:
      base_optimizer: computes the step of ``z``; receives the extra arguments of ``update``.
      learning_rate: the base optimizer's learning rate (a number or a schedule), used for the
        averaging weights. As in Optax, a schedule is evaluated at ``step_count``, which starts at 1.
      b1: the interpolation weight, in ``(0, 1]``.
      weight_lr_power: the exponent ``p`` of the averaging weights.
      state_dtype: storage dtype of ``z`` (default: the parameters').

    Returns:
      A ``GradientTransformationExtraArgs`` whose state is ``ScheduleFreeState``; ``update``
      requires params.

    The scalar state is float32 (float64 with float64 parameters); Optax stores it in the lowest
    parameter dtype, so for bfloat16 models the two differ by bfloat16 rounding of ``b1``.
    """
    base_optimizer = _check_transform("base_optimizer", base_optimizer)
    validate.non_negative("learning_rate", learning_rate)
    if callable(b1):
        raise TypeError("b1 must be a number (it is stored in the state as ScheduleFreeState.b1), got a function")
    validate.finite("b1", b1)
    if not 0 < float(b1) <= 1:
        raise ValueError(f"b1 must lie in (0, 1] (x is recovered by dividing by b1), got {b1!r}")
    validate.finite("weight_lr_power", weight_lr_power)
    scheduled = callable(learning_rate)
    spec = HyperparamSpec(weight_lr_power=weight_lr_power, **({} if scheduled else {"learning_rate": learning_rate}))

    def lr_at(step_count, dtype):
        return jnp.asarray(learning_rate(step_count)).astype(dtype)

    def stored(hyper: Hyperparams, step_count) -> Hyperparams:
        if not scheduled:
            return hyper
        values = {**hyper, "learning_rate": lr_at(step_count, hyper["weight_lr_power"].dtype)}
        return Hyperparams(values, frozenset({"learning_rate"}))

    def init(params):
        dtype = scalar_dtype(params)
        z = tree_lib.map(lambda p: jnp.array(p, dtype=state_dtype or jnp.result_type(p), copy=True), params)
        step_count = jnp.ones((), jnp.int32)
        return ScheduleFreeState(
            b1=jnp.asarray(b1, dtype),
            weight_sum=jnp.zeros((), dtype),
            step_count=step_count,
            max_lr=jnp.zeros((), dtype),
            base_optimizer_state=base_optimizer.init(params),
            z=z,
            hyperparams=stored(spec.init(dtype), step_count),
        )

    def update(updates, state, params=None, **extra_args):
        if params is None:
            raise ValueError(NO_PARAMS.format(name="schedule_free"))
        dtype = jnp.result_type(state.max_lr)
        lr = lr_at(state.step_count, dtype) if scheduled else state.hyperparams["learning_rate"].astype(dtype)
        max_lr = jnp.maximum(state.max_lr, lr)
        weight = max_lr ** state.hyperparams["weight_lr_power"].astype(dtype)
        total = state.weight_sum + weight
        ck = _averaging_weight(weight, total)
        base_updates, base_state = call_update(base_optimizer, updates, state.base_optimizer_state, params, extra_args)

        def leaf(y, z, u):
            real = jnp.finfo(jnp.promote_types(widen(y).dtype, dtype)).dtype
            b, c = state.b1.astype(real), ck.astype(real)
            yw, zw = widen(y), widen(z)
            z_new = (zw + widen(u)).astype(jnp.result_type(z))
            x = (yw - (1.0 - b) * zw) / b
            x = (1.0 - c) * x + c * widen(z_new)
            y_new = b * x + (1.0 - b) * widen(z_new)
            return (y_new - yw).astype(jnp.result_type(y)), z_new

        results = tree_lib.map(leaf, params, state.z, base_updates, names=("params", "z", "base updates"))
        new_updates, z = tree_lib.unzip(results, params, 2)
        step_count = tree_lib.safe_increment(state.step_count)
        return new_updates, ScheduleFreeState(
            b1=state.b1, weight_sum=total, step_count=step_count, max_lr=max_lr,
            base_optimizer_state=base_state, z=z, hyperparams=stored(state.hyperparams, step_count),
        )  # fmt: skip

    self = GradientTransformationExtraArgs(init, update)
    return self


def _warmed_up(learning_rate: Any, warmup_steps: int | None) -> Any:
    if warmup_steps is None:
        return learning_rate
    validate.integer_at_least("warmup_steps", warmup_steps, 0)
    return warmup_constant_schedule(init_value=0.0, peak_value=learning_rate, warmup_steps=warmup_steps)


def schedule_free_sgd(
    learning_rate: jax.typing.ArrayLike = 1.0,
    warmup_steps: int | None = None,
    b1: jax.typing.ArrayLike = 0.9,
    weight_decay: jax.typing.ArrayLike | None = None,
    weight_lr_power: jax.typing.ArrayLike = 2.0,
    state_dtype: Any | None = None,
) -> GradientTransformationExtraArgs:
    """Schedule-Free SGD (Defazio et al. 2024): ``schedule_free(sgd(lr), lr, b1, weight_lr_power)``.

    Args:
      learning_rate: SGD's learning rate (the peak, after the warm-up).
      warmup_steps: a linear warm-up from 0 over this many steps (None: no warm-up).
      b1: the interpolation weight.
      weight_decay: L2 decay added to the gradients before SGD (None: none).
      weight_lr_power: the exponent of the averaging weights.
      state_dtype: storage dtype of ``z``.

    Returns:
      The ``schedule_free`` transform. ``learning_rate`` is stored twice (SGD's and the averaging's),
      so ``get_hyperparams`` reports it per part.
    """
    validate.non_negative("learning_rate", learning_rate)
    learning_rate = _warmed_up(learning_rate, warmup_steps)
    optimizer = sgd(learning_rate)
    if weight_decay is not None:
        optimizer = chain(add_decayed_weights(weight_decay), optimizer)
    return schedule_free(optimizer, learning_rate, b1=b1, weight_lr_power=weight_lr_power, state_dtype=state_dtype)


def schedule_free_adamw(
    learning_rate: jax.typing.ArrayLike = 0.0025,
    warmup_steps: int | None = None,
    b1: jax.typing.ArrayLike = 0.9,
    b2: jax.typing.ArrayLike = 0.999,
    eps: jax.typing.ArrayLike = 1e-8,
    weight_decay: jax.typing.ArrayLike = 0.0,
    weight_lr_power: jax.typing.ArrayLike = 2.0,
    state_dtype: Any | None = None,
) -> GradientTransformationExtraArgs:
    """Schedule-Free AdamW (Defazio et al. 2024, Algorithm 1 with Adam's scaling)::

        base_update = -lr * (g / (sqrt(v_t / (1 - b2**t)) + eps) + weight_decay * y)

    (AdamW without momentum: ``scale_by_rms(b2, eps, eps_in_sqrt=False, bias_correction=True)``),
    wrapped by ``schedule_free(.., b1, weight_lr_power)``.

    Args:
      learning_rate: Adam's learning rate (the peak, after the warm-up).
      warmup_steps: a linear warm-up from 0 over this many steps (None: no warm-up).
      b1: the interpolation weight.
      b2: decay of the second moment (stored under the name ``b2``).
      eps: added to the root.
      weight_decay: decoupled decay (multiplied by the learning rate).
      weight_lr_power: the exponent of the averaging weights.
      state_dtype: storage dtype of ``z``.

    Returns:
      The ``schedule_free`` transform.
    """
    validate.non_negative("learning_rate", learning_rate)
    learning_rate = _warmed_up(learning_rate, warmup_steps)
    optimizer = chain(
        rename_hyperparams(scale_by_rms(decay=b2, eps=eps, eps_in_sqrt=False, bias_correction=True), {"decay": "b2"}),
        add_decayed_weights(weight_decay),
        scale_by_learning_rate(learning_rate),
    )
    return schedule_free(optimizer, learning_rate, b1=b1, weight_lr_power=weight_lr_power, state_dtype=state_dtype)
