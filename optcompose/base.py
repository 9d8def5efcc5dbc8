"""Core types: a transform is a pair of pure functions, and ``chain`` composes them.

A ``GradientTransformation`` is ``(init, update)``:

* ``init(params) -> state``
* ``update(updates, state, params=None, **extra_args) -> (updates, state)``

Every transform in optcompose accepts (and forwards) ``**extra_args``, so any of them can sit
inside a ``chain`` next to a transform that needs extra arguments (such as a loss value).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, NamedTuple, Protocol, TypeAlias

import jax
import jax.numpy as jnp

from optcompose import tree as tree_lib

Params: TypeAlias = Any
"""A pytree of arrays (nested dicts, tuples, Flax ``FrozenDict`` or ``nnx.State``; ``None`` leaves allowed)."""
Updates: TypeAlias = Any
"""A pytree with the structure of ``Params``: gradients on the way in, updates on the way out."""
OptState: TypeAlias = Any
"""The state of a transform: a NamedTuple, a tuple of them for ``chain``, or a dict for ``named_chain``."""
Schedule: TypeAlias = Callable[[jax.typing.ArrayLike], jax.typing.ArrayLike]
"""A pure, jit-able function of the step count returning a scalar."""
ScalarOrSchedule: TypeAlias = float | jax.typing.ArrayLike | Schedule


class TransformInitFn(Protocol):
    def __call__(self, params: Params) -> OptState: ...


class TransformUpdateFn(Protocol):
    def __call__(
        self, updates: Updates, state: OptState, params: Params | None = None, **extra_args: Any
    ) -> tuple[Updates, OptState]: ...


class GradientTransformation(NamedTuple):
    """A pure optimizer piece: ``init(params) -> state`` and ``update(...) -> (updates, state)``.

    Being a NamedTuple of functions it is hashable and comparable, so it can be a static field of
    ``flax.training.train_state.TrainState``.
    """

    init: TransformInitFn
    update: TransformUpdateFn


# Optax spells the variant that accepts extra arguments separately; every optcompose transform
# accepts them, so the two names denote the same type.
GradientTransformationExtraArgs = GradientTransformation


class EmptyState(NamedTuple):
    """The state of a stateless transform."""


def identity() -> GradientTransformation:
    """Returns the updates unchanged: ``u -> u``."""

    def init(params: Params) -> EmptyState:
        del params
        return EmptyState()

    def update(updates, state, params=None, **extra_args):
        del params, extra_args
        return updates, state

    return GradientTransformation(init, update)


def set_to_zero() -> GradientTransformation:
    """Replaces every update by zeros of the same shape and dtype: ``u -> 0``."""

    def init(params: Params) -> EmptyState:
        del params
        return EmptyState()

    def update(updates, state, params=None, **extra_args):
        del params, extra_args
        return jax.tree.map(jnp.zeros_like, updates), state

    return GradientTransformation(init, update)


def stateless(
    f: Callable[[Updates, Params | None], Updates],
) -> GradientTransformation:
    """Lifts ``f(updates, params) -> updates`` to a transform with an empty state."""

    def init(params: Params) -> EmptyState:
        del params
        return EmptyState()

    def update(updates, state, params=None, **extra_args):
        del extra_args
        return f(updates, params), state

    return GradientTransformation(init, update)


def _check_transform(name: str, transform: Any) -> GradientTransformation:
    if not (hasattr(transform, "init") and hasattr(transform, "update")):
        raise TypeError(
            f"{name} must be a GradientTransformation (an (init, update) pair), got "
            f"{type(transform).__name__}"
        )
    return transform


def _check_state_length(state: Any, expected: int, what: str) -> None:
    if not isinstance(state, (tuple, list)) or len(state) != expected:
        got = type(state).__name__
        if isinstance(state, (tuple, list)):
            got += f" of length {len(state)}"
        raise ValueError(f"state of {what} must be a tuple of {expected} states, got {got}")


def chain(*transforms: GradientTransformation) -> GradientTransformation:
    """Applies ``transforms`` in order; the state is a tuple with one state per transform.

    ``chain(a, chain(b, c))`` computes the same updates as ``chain(a, b, c)``.
    """
    transforms = tuple(_check_transform(f"chain argument {i}", t) for i, t in enumerate(transforms))

    def init(params: Params) -> tuple[OptState, ...]:
        return tuple(t.init(params) for t in transforms)

    def update(updates, state, params=None, **extra_args):
        _check_state_length(state, len(transforms), f"a chain of {len(transforms)} transforms")
        new_state = []
        for transform, inner_state in zip(transforms, state, strict=True):
            updates, inner_state = transform.update(updates, inner_state, params, **extra_args)
            new_state.append(inner_state)
        return updates, tuple(new_state)

    composed = GradientTransformation(init, update)
    if transforms:
        # optcompose.step can still take the last optimizer's one-pass step after the others.
        from optcompose.stepping import PrefixPlan, attach_plan, plan_of  # stepping imports this module

        last = plan_of(transforms[-1])
        if last is not None:
            attach_plan(composed, PrefixPlan(transforms[:-1], last))
    return composed


def named_chain(*named_transforms: tuple[str, GradientTransformation]) -> GradientTransformation:
    """Like ``chain``, but the state is a dict keyed by the given names: ``state['adam'].mu``."""
    names = [name for name, _ in named_transforms]
    if len(set(names)) != len(names):
        raise ValueError(f"named_chain names must be unique, got {names}")
    for name, transform in named_transforms:
        if not isinstance(name, str):
            raise TypeError(f"named_chain names must be strings, got {name!r}")
        _check_transform(f"named_chain[{name!r}]", transform)

    def init(params: Params) -> dict[str, OptState]:
        return {name: t.init(params) for name, t in named_transforms}

    def update(updates, state, params=None, **extra_args):
        if not isinstance(state, Mapping) or set(state) != set(names):
            raise ValueError(f"state of named_chain must be a dict with keys {names}, got {state!r:.200}")
        new_state = {}
        for name, transform in named_transforms:
            updates, new_state[name] = transform.update(updates, state[name], params, **extra_args)
        return updates, new_state

    return GradientTransformation(init, update)


def apply_updates(params: Params, updates: Updates) -> Params:
    """Returns ``params + updates``, each result in its parameter's dtype; ``None`` leaves pass.

    The sum is computed in the wider of the two dtypes and then cast back, so a bfloat16
    parameter stays bfloat16 and is never silently promoted.
    """

    def add(param, update):
        if param is None:
            return None
        param = jnp.asarray(param)
        return (param + update).astype(param.dtype)

    return tree_lib.map(add, params, updates, names=("params", "updates"))
