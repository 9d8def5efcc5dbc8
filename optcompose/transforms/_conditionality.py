"""Run a transform only at some steps: ``conditionally_transform``, ``conditionally_mask``, ``apply_every``.

The wrappers skip their inner transform with ``update_if`` (``transforms._guards``), the library's one
conditional update: on a skipped step the inner state is kept as it is and the inner transform's
work is not done (``lax.cond``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple, Protocol

import jax
import jax.numpy as jnp

from optcompose import _validate as validate
from optcompose._base import GradientTransformation, GradientTransformationExtraArgs, OptState, _check_transform
from optcompose._hyperparams import Hyperparams, HyperparamSpec, hyperparam_dtype
from optcompose._numerics import widen
from optcompose._tree import map as tree_map
from optcompose._tree import safe_increment, unzip, zeros_like
from optcompose.transforms._guards import update_if


class ConditionFn(Protocol):
    """``should_transform_fn(step, **extra_args) -> bool``: whether the inner transform runs.

    ``step`` is the number of earlier updates (an int32 scalar); ``extra_args`` are the update's
    extra keyword arguments when the wrapper forwards them.
    """

    def __call__(self, step: jax.Array, **extra_args: Any) -> jax.Array: ...


class ConditionallyTransformState(NamedTuple):
    """The state of ``conditionally_transform``: the inner state and the number of updates so far."""

    inner_state: OptState
    step: jax.Array


class ConditionallyMaskState(NamedTuple):
    """The state of ``conditionally_mask``: the number of updates so far and the inner state."""

    step: jax.Array
    inner_state: OptState


def _condition(fn: Callable[..., Any], step: jax.Array, extra_args: dict[str, Any]) -> jax.Array:
    pred = jnp.asarray(fn(step, **extra_args))
    if pred.shape != ():
        raise ValueError(f"should_transform_fn must return a scalar, got an array of shape {pred.shape}")
    if pred.dtype != jnp.bool_:
        if not jnp.issubdtype(pred.dtype, jnp.integer):
            raise TypeError(f"should_transform_fn must return a bool, got dtype {pred.dtype}")
        pred = pred != 0
    return pred


class Conditional(GradientTransformationExtraArgs):
    """``conditionally_transform`` / ``conditionally_mask``: ``self.inner`` when ``self.should_transform_fn``
    holds; otherwise the updates pass unchanged (``self.mask`` False) or become zeros (True)."""

    def __new__(
        cls, inner: GradientTransformation, should_transform_fn: ConditionFn, forward_extra_args: bool, mask: bool
    ) -> Conditional:
        inner = _check_transform("inner", inner)
        if not callable(should_transform_fn):
            raise TypeError(f"should_transform_fn must be callable, got {should_transform_fn!r}")

        def init(params):
            step, inner_state = jnp.zeros((), jnp.int32), inner.init(params)
            return ConditionallyMaskState(step, inner_state) if mask else ConditionallyTransformState(inner_state, step)

        def update(updates, state, params=None, **extra_args):
            pred = _condition(should_transform_fn, state.step, extra_args if forward_extra_args else {})
            new_updates, inner_state = update_if(pred, inner, updates, state.inner_state, params, extra_args)
            if not mask:
                new_updates = jax.tree.map(
                    lambda new, old: jnp.where(pred, new, jnp.asarray(old).astype(jnp.result_type(new))),
                    new_updates, updates,
                )  # fmt: skip
            step = safe_increment(state.step)
            if mask:
                return new_updates, ConditionallyMaskState(step, inner_state)
            return new_updates, ConditionallyTransformState(inner_state, step)

        self = super().__new__(cls, init, update)
        self.inner, self.should_transform_fn, self.mask = inner, should_transform_fn, mask
        self.forward_extra_args = forward_extra_args
        return self

    def __repr__(self) -> str:
        name = "conditionally_mask" if self.mask else "conditionally_transform"
        return f"{name}({self.inner!r}, {getattr(self.should_transform_fn, '__name__', '...')})"


def conditionally_transform(
    inner: GradientTransformation, should_transform_fn: ConditionFn, forward_extra_args: bool = False
) -> Conditional:
    """Runs ``inner`` at the steps where ``should_transform_fn(step)`` holds; elsewhere passes the updates on.

    ``step`` counts earlier updates (0 for the first). On a skipped step the updates come out
    unchanged and ``inner``'s state is kept (its counts and schedules do not advance).

    Args:
      inner: the wrapped transform.
      should_transform_fn: ``fn(step, **extra_args) -> bool`` (a scalar; int 0/1 accepted).
      forward_extra_args: also pass the update's extra keyword arguments to ``should_transform_fn``.

    Returns:
      A ``GradientTransformationExtraArgs`` (extra arguments reach ``inner`` when it accepts them).

    Edge behaviour: the step count saturates at the int32 maximum; ``inner``'s state leaves keep
    their dtypes on both branches.
    """
    return Conditional(inner, should_transform_fn, bool(forward_extra_args), mask=False)


def conditionally_mask(
    inner: GradientTransformation, should_transform_fn: ConditionFn, forward_extra_args: bool = False
) -> Conditional:
    """Runs ``inner`` at the steps where ``should_transform_fn(step)`` holds; elsewhere the updates are 0.

    Like ``conditionally_transform`` but a skipped step returns zero updates (the parameters stay
    put), for example a warm-up that freezes the model for its first steps.

    Args:
      inner: the wrapped transform.
      should_transform_fn: ``fn(step, **extra_args) -> bool``.
      forward_extra_args: also pass the update's extra keyword arguments to ``should_transform_fn``.

    Returns:
      A ``GradientTransformationExtraArgs``.
    """
    return Conditional(inner, should_transform_fn, bool(forward_extra_args), mask=True)


class ApplyEvery(NamedTuple):
    """The state of ``apply_every`` (Optax's name).

    Attributes:
      count: the position in the window, ``0 .. k - 1`` (updates since the last emission).
      grad_acc: the sum of this window's updates so far (the parameters' dtype).
      hyperparams: ``k``.
    """

    count: jax.Array
    grad_acc: Any
    hyperparams: Hyperparams


class ApplyEveryTransform(GradientTransformationExtraArgs):
    """``apply_every(k)``; ``self.spec`` holds ``k``."""

    def __new__(cls, spec: HyperparamSpec) -> ApplyEveryTransform:
        def init(params):
            return ApplyEvery(jnp.zeros((), jnp.int32), zeros_like(params), spec.init(hyperparam_dtype(params)))

        def update(updates, state, params=None, **extra_args):
            del params, extra_args
            k = jnp.maximum(jnp.round(state.hyperparams["k"]).astype(jnp.int32), 1)
            phase = state.count % k
            emit = phase == k - 1

            def leaf(g, acc):
                total = jnp.where(phase != 0, widen(acc) + widen(g), widen(g))
                out = jnp.where(emit, total, jnp.zeros_like(total))
                return out.astype(jnp.result_type(g)), total.astype(jnp.result_type(acc))

            pairs = tree_map(leaf, updates, state.grad_acc, names=("updates", "grad_acc"))
            new_updates, grad_acc = unzip(pairs, updates, 2)
            return new_updates, ApplyEvery(safe_increment(state.count) % k, grad_acc, state.hyperparams)

        self = super().__new__(cls, init, update)
        self.spec = spec
        return self

    def __repr__(self) -> str:
        return f"apply_every(k={self.spec.constants['k']!r})"


def apply_every(k: int = 1) -> ApplyEveryTransform:
    """Accumulates updates and emits their sum every ``k``-th step (zeros in between)::

        a_t = g_t + (a_{t-1} if t mod k != 0 else 0)      (t = 0, 1, ... counts updates)
        u_t = a_t if t mod k == k - 1 else 0

    Transforms chained before it still update their state at every step, so this is not the
    large-batch equivalence ``MultiSteps`` gives; use ``MultiSteps`` for that.

    Args:
      k: the window length (an integer >= 1; 1 passes the updates through). Stored as a
        hyperparameter, so ``set_hyperparams(state, k=...)`` changes it without recompiling.

    Returns:
      A transform with an ``ApplyEvery`` state.

    Edge behaviour: the sum is taken in float32 (or wider) and stored in the parameters' dtype;
    an inf or NaN left in the buffer from a past window does not leak into the next one (Optax
    multiplies it by 0, which gives NaN).
    """
    validate.integer_at_least("k", k, 1)
    return ApplyEveryTransform(HyperparamSpec(k=int(k)))
