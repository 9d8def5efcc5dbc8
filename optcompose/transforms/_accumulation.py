"""Gradient accumulation: ``MultiSteps`` turns k micro-batches into one optimizer step.

With ``g_1 .. g_k`` the gradients of k micro-batches of equal size (each the mean over its
micro-batch), the large-batch gradient is their mean::

    G = (g_1 + ... + g_k) / k          (use_grad_mean=True; their sum without the / k otherwise)

``MultiSteps`` adds each ``g_j`` into one buffer (``acc_grads``, the only memory it adds), returns
zero updates for the first ``k - 1`` micro-steps, and on the k-th hands ``G`` to the wrapped
optimizer and returns its update. The wrapped optimizer therefore sees exactly the gradient of the
k-times-larger batch, once per k micro-steps: its counts, bias corrections and schedules advance
once per real step. The buffer holds the running *sum* (divided by k only when the step is
taken), so the mean is as exact as one division can make it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from optcompose import _validate as validate
from optcompose._base import (
    GradientTransformation,
    GradientTransformationExtraArgs,
    OptState,
    Params,
    Updates,
    _check_transform,
)
from optcompose._numerics import compute_dtype
from optcompose._tree import global_norm, safe_increment, zeros_like
from optcompose._tree import map as tree_map
from optcompose.transforms._guards import all_finite, update_if

ShouldSkipUpdateFunction = Callable[[Updates, jax.Array, Params | None], tuple[jax.Array, Any]]
"""``fn(updates, gradient_step, params) -> (skip, skip_state)``: ``skip`` a scalar bool array."""


_INT32_MAX = int(np.iinfo(np.int32).max)


def _check_k(k: Any) -> Any:
    """``k`` (an every_k_schedule value) if it is a scalar in ``[1, 2**31 - 1]`` wherever that can be
    known: at construction, and at each update when the value is concrete (not traced)."""
    shape = np.shape(k)
    if shape != ():
        raise ValueError(f"every_k_schedule must return a scalar, got an array of shape {shape}")
    if isinstance(k, jax.core.Tracer):
        return k
    value = float(np.asarray(k))
    if not (1 <= round(value) <= _INT32_MAX):
        raise ValueError(f"every_k_schedule must give a number of micro-steps in [1, {_INT32_MAX}], got {k!r}")
    return k


class MultiStepsState(NamedTuple):
    """The state of ``MultiSteps``.

    Attributes:
      mini_step: micro-batches accumulated since the last real step (0 .. k - 1).
      gradient_step: real (inner) steps taken so far; saturates at the int32 maximum.
      inner_opt_state: the wrapped optimizer's state.
      acc_grads: the running sum of this window's gradients (in the accumulator dtype).
      skip_state: what ``should_skip_update_fn`` last returned besides its decision.
    """

    mini_step: jax.Array
    gradient_step: jax.Array
    inner_opt_state: OptState
    acc_grads: Any
    skip_state: Any = ()


def skip_not_finite(updates: Updates, gradient_step: jax.Array, params: Params | None) -> tuple[jax.Array, Any]:
    """A ``should_skip_update_fn`` that skips micro-batches whose gradients hold a NaN or an inf.

    Its ``skip_state`` is ``{'should_skip': bool, 'num_not_finite': int32}``.
    """
    del gradient_step, params
    num_not_finite = jnp.zeros((), jnp.int32)
    for leaf in jax.tree.leaves(updates):
        num_not_finite = num_not_finite + jnp.sum(~jnp.isfinite(leaf)).astype(jnp.int32)
    should_skip = ~all_finite(updates)
    return should_skip, {"should_skip": should_skip, "num_not_finite": num_not_finite}


def skip_large_updates(
    updates: Updates, gradient_step: jax.Array, params: Params | None, max_squared_norm: float
) -> tuple[jax.Array, Any]:
    """A ``should_skip_update_fn`` (bind ``max_squared_norm`` with ``functools.partial``).

    Skips when ``||updates||^2 >= max_squared_norm`` or the norm is not finite. Its ``skip_state``
    is ``{'should_skip': bool, 'norm_squared': float32}``.
    """
    del gradient_step, params
    norm_squared = jnp.square(global_norm(updates))
    should_skip = ~(norm_squared < max_squared_norm)
    return should_skip, {"should_skip": should_skip, "norm_squared": norm_squared}


def _never_skip(updates: Updates, gradient_step: jax.Array, params: Params | None) -> tuple[jax.Array, Any]:
    del updates, gradient_step, params
    return jnp.zeros((), bool), ()


class MultiSteps:
    """Accumulates gradients over ``every_k_schedule`` micro-steps, then steps the wrapped optimizer.

    Optax's API: ``MultiSteps(opt, every_k_schedule, use_grad_mean=True,
    should_skip_update_fn=None, accumulator_dtype=None)``, with ``init``, ``update``,
    ``gradient_transformation()`` and ``has_updated(state)``.

    Args:
      opt: the wrapped optimizer.
      every_k_schedule: k, the micro-steps per real step: an int >= 1, or a function of the real
        step count (``gradient_step``) returning one, to grow the batch during training. The real
        step count does not change within a window, so neither does k.
      use_grad_mean: average the window's gradients (True) or sum them (False).
      should_skip_update_fn: ``fn(updates, gradient_step, params) -> (skip, skip_state)``; a
        micro-batch with ``skip`` True is dropped as if it never happened (see
        ``skip_not_finite`` and ``skip_large_updates``).
      accumulator_dtype: dtype of ``acc_grads``. Default: float32 for float16 / bfloat16 /
        float32 gradients, the gradient's own dtype when wider (Optax's default is float32).
    """

    def __init__(
        self,
        opt: GradientTransformation,
        every_k_schedule: int | Callable[[jax.Array], Any],
        use_grad_mean: bool = True,
        should_skip_update_fn: ShouldSkipUpdateFunction | None = None,
        accumulator_dtype: Any | None = None,
    ):
        self._opt = _check_transform("opt", opt)
        if callable(every_k_schedule):
            self._every_k_schedule = every_k_schedule
            _check_k(every_k_schedule(jnp.zeros((), jnp.int32)))  # schedules are pure: check the first value
        else:
            validate.integer_at_least("every_k_schedule", every_k_schedule, 1)
            _check_k(every_k_schedule)
            k = int(every_k_schedule)
            self._every_k_schedule = lambda step: k
        validate.callable_or_none("should_skip_update_fn", should_skip_update_fn)
        self._use_grad_mean = bool(use_grad_mean)
        self._should_skip_update_fn = should_skip_update_fn or _never_skip
        self._accumulator_dtype = None if accumulator_dtype is None else jnp.dtype(accumulator_dtype)

    @property
    def inner_opt(self) -> GradientTransformation:
        return self._opt

    def _acc_dtype(self, leaf: Any) -> Any:
        return self._accumulator_dtype or compute_dtype(jnp.result_type(leaf))

    def _k(self, gradient_step: jax.Array) -> jax.Array:
        k = _check_k(self._every_k_schedule(gradient_step))
        return jnp.round(jnp.asarray(k)).astype(jnp.int32)

    def init(self, params: Params) -> MultiStepsState:
        gradient_step = jnp.zeros((), jnp.int32)
        acc_grads = jax.tree.map(lambda p: zeros_like(p, self._acc_dtype(p)), params)
        _, skip_state = self._should_skip_update_fn(jax.tree.map(jnp.zeros_like, params), gradient_step, params)
        return MultiStepsState(
            mini_step=jnp.zeros((), jnp.int32),
            gradient_step=gradient_step,
            inner_opt_state=self._opt.init(params),
            acc_grads=acc_grads,
            skip_state=skip_state,
        )

    def update(
        self, updates: Updates, state: MultiStepsState, params: Params | None = None, **extra_args: Any
    ) -> tuple[Updates, MultiStepsState]:
        skip, skip_state = self._should_skip_update_fn(updates, state.gradient_step, params)
        skip = jnp.asarray(skip)
        if skip.shape != () or skip.dtype != jnp.bool_:
            raise ValueError(
                "should_skip_update_fn must return a scalar bool array as its first output, got "
                f"dtype {skip.dtype} and shape {skip.shape}"
            )
        k = self._k(state.gradient_step)
        summed = tree_map(
            lambda g, acc: (acc + jnp.asarray(g).astype(acc.dtype)).astype(acc.dtype),
            updates,
            state.acc_grads,
            names=("updates", "acc_grads"),
        )
        taken = safe_increment(state.mini_step)  # micro-batches in the window, this one included
        emit = (taken >= k) & ~skip

        grads = jax.tree.map(
            lambda total, g: (total / taken.astype(total.dtype) if self._use_grad_mean else total).astype(
                jnp.result_type(g)
            ),
            summed,
            updates,
        )
        new_updates, inner_state = update_if(
            emit, self._opt, updates, state.inner_opt_state, params, extra_args, inner_updates=grads
        )
        mini_step = jnp.where(skip, state.mini_step, jnp.where(emit, 0, taken)).astype(jnp.int32)
        gradient_step = jnp.where(emit, safe_increment(state.gradient_step), state.gradient_step)
        acc_grads = jax.tree.map(
            lambda new, old: jnp.where(skip, old, jnp.where(emit, jnp.zeros_like(new), new)), summed, state.acc_grads
        )
        return new_updates, MultiStepsState(mini_step, gradient_step, inner_state, acc_grads, skip_state)

    def has_updated(self, state: MultiStepsState) -> jax.Array:
        """True right after a micro-step that stepped the wrapped optimizer."""
        return (state.mini_step == 0) & (state.gradient_step > 0)

    def gradient_transformation(self) -> GradientTransformation:
        """``MultiSteps`` as a plain ``GradientTransformation(init, update)``."""
        return GradientTransformationExtraArgs(self.init, self.update)
