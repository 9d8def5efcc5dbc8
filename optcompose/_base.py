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

from optcompose import _tree as tree_lib

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


class TransformUpdateExtraArgsFn(Protocol):
    def __call__(
        self, updates: Updates, state: OptState, params: Params | None = None, **extra_args: Any
    ) -> tuple[Updates, OptState]: ...


MaskOrFn: TypeAlias = Any | Callable[[Params], Any]
"""A mask: a pytree of bools (a prefix of the parameters), or a function of the parameters returning one."""


class GradientTransformation(NamedTuple):
    """A pure optimizer piece: ``init(params) -> state`` and ``update(...) -> (updates, state)``.

    Being a NamedTuple of functions it is hashable and comparable, so it can be a static field of
    ``flax.training.train_state.TrainState``. A plain ``GradientTransformation`` is called without
    extra keyword arguments inside a ``chain`` (Optax's rule); every transform optcompose builds is a
    ``GradientTransformationExtraArgs`` and receives them.
    """

    init: TransformInitFn
    update: TransformUpdateFn


class GradientTransformationExtraArgs(GradientTransformation):
    """A ``GradientTransformation`` whose ``update`` accepts (and forwards) ``**extra_args``.

    Subclasses carry their structure as data (``Chain.transforms``, ``Leafwise.rule`` ...), so other
    code (the speed layer, ``repr``) can tell what a transform is from its type. A transform built
    by hand from functions, or a ``functools.wraps`` wrapper, is never mistaken for one of them.
    """

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"

    # Transforms are immutable values: a copy is the transform itself (equal and equally hashed,
    # as a copied plain NamedTuple of the same functions would be).
    def __copy__(self) -> GradientTransformationExtraArgs:
        return self

    def __deepcopy__(self, memo: Any) -> GradientTransformationExtraArgs:
        return self


def call_update(
    transform: GradientTransformation, updates: Updates, state: OptState, params: Params | None, extra_args: Mapping
) -> tuple[Updates, OptState]:
    """``transform.update``, passing ``extra_args`` only to transforms that accept them (Optax's rule)."""
    if isinstance(transform, GradientTransformationExtraArgs):
        return transform.update(updates, state, params, **extra_args)
    return transform.update(updates, state, params)


def with_extra_args_support(transform: GradientTransformation) -> GradientTransformationExtraArgs:
    """``transform`` as a ``GradientTransformationExtraArgs``: extra keyword arguments are dropped."""
    if isinstance(transform, GradientTransformationExtraArgs):
        return transform
    transform = _check_transform("transform", transform)

    def update(updates, state, params=None, **extra_args):
        del extra_args
        return transform.update(updates, state, params)

    return GradientTransformationExtraArgs(transform.init, update)


class EmptyState(NamedTuple):
    """The state of a stateless transform."""


def init_empty_state(params: Params) -> EmptyState:
    """The ``init`` of every stateless transform: ``EmptyState()``."""
    del params
    return EmptyState()


def _check_empty(state: Any, what: str) -> None:
    # Optax's stateless transforms use ``EmptyState()`` or ``()``; both are accepted.
    if state != () and not isinstance(state, EmptyState):
        raise ValueError(f"{what} is stateless; its state must be EmptyState() or (), got {state!r:.200}")


class Identity(GradientTransformationExtraArgs):
    """``identity()``: returns the updates unchanged."""

    def __new__(cls) -> Identity:
        def update(updates, state, params=None, **extra_args):
            del params, extra_args
            return updates, state

        return super().__new__(cls, init_empty_state, update)


def identity() -> GradientTransformationExtraArgs:
    """Returns the updates unchanged: ``u -> u``."""
    return Identity()


def set_to_zero() -> GradientTransformationExtraArgs:
    """Replaces every update by zeros of the same shape and dtype: ``u -> 0``."""
    return Stateless(lambda updates, params: tree_lib.zeros_like(updates), name="set_to_zero")


class Stateless(GradientTransformationExtraArgs):
    """A transform with an empty state made from ``f(updates, params) -> updates``."""

    def __new__(cls, f: Callable[[Updates, Params | None], Updates], name: str = "stateless") -> Stateless:
        if not callable(f):
            raise TypeError(f"stateless takes a function f(updates, params) -> updates, got {f!r}")

        def update(updates, state, params=None, **extra_args):
            del extra_args
            _check_empty(state, name)
            return f(updates, params), state

        self = super().__new__(cls, init_empty_state, update)
        self.f, self.name = f, name
        return self

    def __repr__(self) -> str:
        return f"{self.name}()"


def stateless(f: Callable[[Updates, Params | None], Updates]) -> GradientTransformationExtraArgs:
    """Lifts ``f(updates, params) -> updates`` to a transform with an empty state."""
    return Stateless(f)


def stateless_with_tree_map(f: Callable[[Any, Any], Any]) -> GradientTransformationExtraArgs:
    """Lifts a per-leaf ``f(update, param) -> update`` to a stateless transform (``param`` is None
    when ``update`` is called without params)."""
    if not callable(f):
        raise TypeError(f"stateless_with_tree_map takes a function f(update, param), got {f!r}")

    def per_tree(updates, params):
        if params is None:
            return jax.tree.map(lambda u: f(u, None), updates)
        return tree_lib.map(f, updates, params, names=("updates", "params"))

    return Stateless(per_tree, name="stateless_with_tree_map")


def _check_transform(name: str, transform: Any) -> GradientTransformation:
    if not (hasattr(transform, "init") and hasattr(transform, "update")):
        raise TypeError(
            f"{name} must be a GradientTransformation (an (init, update) pair), got {type(transform).__name__}"
        )
    return transform


def _check_state_length(state: Any, expected: int, what: str) -> None:
    if not isinstance(state, (tuple, list)) or len(state) != expected:
        got = type(state).__name__
        if isinstance(state, (tuple, list)):
            got += f" of length {len(state)}"
        raise ValueError(f"state of {what} must be a tuple of {expected} states, got {got}")


class Chain(GradientTransformationExtraArgs):
    """``chain(*transforms)``: its parts are ``self.transforms``; the state is one state per part."""

    def __new__(cls, *transforms: GradientTransformation) -> Chain:
        transforms = tuple(_check_transform(f"chain argument {i}", t) for i, t in enumerate(transforms))

        def init(params: Params) -> tuple[OptState, ...]:
            return tuple(t.init(params) for t in transforms)

        def update(updates, state, params=None, **extra_args):
            _check_state_length(state, len(transforms), f"a chain of {len(transforms)} transforms")
            new_state = []
            for transform, inner_state in zip(transforms, state, strict=True):
                updates, inner_state = call_update(transform, updates, inner_state, params, extra_args)
                new_state.append(inner_state)
            return updates, tuple(new_state)

        self = super().__new__(cls, init, update)
        self.transforms = transforms
        return self

    def __repr__(self) -> str:
        return f"chain({', '.join(map(repr, self.transforms))})"


def chain(*transforms: GradientTransformation) -> Chain:
    """Applies ``transforms`` in order; the state is a tuple with one state per transform.

    ``chain(a, chain(b, c))`` computes the same updates as ``chain(a, b, c)``. Extra keyword
    arguments of ``update`` reach only the parts that accept them (``GradientTransformationExtraArgs``).
    """
    return Chain(*transforms)


class NamedChain(GradientTransformationExtraArgs):
    """``named_chain((name, transform), ...)``: ``self.named`` holds the pairs; the state is a dict."""

    def __new__(cls, *named_transforms: tuple[str, GradientTransformation]) -> NamedChain:
        names = [name for name, _ in named_transforms]
        if len(set(names)) != len(names):
            raise ValueError(f"named_chain names must be unique, got {names}")
        for name, transform in named_transforms:
            if not isinstance(name, str):
                raise TypeError(f"named_chain names must be strings, got {name!r}")
            _check_transform(f"named_chain[{name!r}]", transform)
        named = tuple((name, transform) for name, transform in named_transforms)

        def init(params: Params) -> dict[str, OptState]:
            return {name: t.init(params) for name, t in named}

        def update(updates, state, params=None, **extra_args):
            if not isinstance(state, Mapping) or set(state) != set(names):
                raise ValueError(f"state of named_chain must be a dict with keys {names}, got {state!r:.200}")
            new_state = {}
            for name, transform in named:
                updates, new_state[name] = call_update(transform, updates, state[name], params, extra_args)
            return updates, new_state

        self = super().__new__(cls, init, update)
        self.named = named
        return self

    def __repr__(self) -> str:
        return f"named_chain({', '.join(f'({n!r}, {t!r})' for n, t in self.named)})"


def named_chain(*named_transforms: tuple[str, GradientTransformation]) -> NamedChain:
    """Like ``chain``, but the state is a dict keyed by the given names: ``state['adam'].mu``."""
    return NamedChain(*named_transforms)


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
