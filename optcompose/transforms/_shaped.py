"""Two small extensions of the ``leafwise`` toolkit for states that are not shaped like the parameters.

* ``shaped(rule, State, init_leaf, ...)``: a per-leaf rule whose state slots have any shape (a
  scalar norm per leaf for NovoGrad, row and column statistics for Adafactor, one accumulator per
  axis for SM3). ``init_leaf(param)`` builds one leaf's slots; the rule receives and returns them
  widened to float32 (or wider), and the results are stored back in the slots' own dtypes. The
  ``count`` and ``hyperparams`` fields are managed as in ``leafwise``.
* ``StateView(inner, State, to_inner, to_outer)``: a transform whose public state record differs
  from the one its implementation uses (Optax's ``ScaleByAdanState`` names its count ``t`` and
  puts it last; ``ScaleByOptimisticGradientState`` keeps a flag instead of a count). The inner
  transform is usually a ``Leafwise``; the view only renames fields.
"""

from __future__ import annotations

import inspect
import types
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp

from optcompose import _tree as tree_lib
from optcompose._base import GradientTransformation, GradientTransformationExtraArgs, call_update
from optcompose._hyperparams import HyperparamSpec, hyperparam_dtype
from optcompose._numerics import widen

_RESERVED = ("count", "hyperparams")


def _store_like(new: Any, old: Any) -> Any:
    """``new`` (a pytree of arrays) cast leaf by leaf to the dtypes of ``old`` (same structure)."""
    return jax.tree.map(lambda n, o: jnp.asarray(n).astype(jnp.result_type(o)), new, old)


def _strong(x: Any) -> jax.Array:
    return jnp.asarray(x, dtype=jnp.result_type(x))


class Shaped(GradientTransformationExtraArgs):
    """A per-leaf transform whose slots have their own shapes (see the module docstring).

    Attributes: ``rule``, ``state_type``, ``spec`` (the hyperparameters), ``static``, ``slots``,
    ``needs_params``, ``name``.
    """

    def __new__(
        cls,
        rule: Callable[..., Any],
        state_type: type,
        init_leaf: Callable[[jax.Array], tuple[Any, ...]],
        *,
        hyperparams: Mapping[str, Any] | None = None,
        static: Mapping[str, Any] | None = None,
        name: str | None = None,
    ) -> Shaped:
        fields = tuple(state_type._fields)
        slots = tuple(f for f in fields if f not in _RESERVED)
        spec = HyperparamSpec(**dict(hyperparams or {}))
        has_count, stores = "count" in fields, "hyperparams" in fields
        if spec.schedules and not has_count:
            raise TypeError(f"{state_type.__name__} needs a 'count' field to follow schedules")
        accepted = inspect.signature(rule).parameters
        wants_t, wants_count, needs_params = "t" in accepted, "count" in accepted, "w" in accepted
        static = dict(static or {})
        label = name or rule.__name__.lstrip("_")
        names = ("updates", *slots) + (("params",) if needs_params else ())

        def init(params):
            values = {}
            if has_count:
                values["count"] = jnp.zeros((), jnp.int32)
            # Explicit dtypes: a weakly typed parameter (jnp.asarray(0.3)) must not give a weakly typed
            # slot, or the state after one update (strongly typed) would retrace a jitted step.
            per_leaf = jax.tree.map(lambda p: tuple(jax.tree.map(_strong, init_leaf(jnp.asarray(p)))), params)
            for slot, column in zip(slots, tree_lib.unzip(per_leaf, params, len(slots)), strict=True):
                values[slot] = column
            if stores:
                values["hyperparams"] = spec.init(hyperparam_dtype(params))
            return state_type(**values)

        def update(updates, state, params=None, **extra_args):
            del extra_args
            if needs_params and params is None:
                raise ValueError(f"{label} needs params: call update(updates, state, params)")
            stored = state.hyperparams if stores else spec.init()
            count = state.count if has_count else None
            values = spec.current(stored, count) if has_count else dict(stored)

            def leaf(g, *rest):
                real = jnp.finfo(jnp.result_type(widen(g))).dtype
                hp = types.SimpleNamespace(**{k: jnp.asarray(v).astype(real) for k, v in values.items()})
                keywords = dict(static, hp=hp)
                if wants_t:
                    keywords["t"] = tree_lib.safe_increment(count)
                if wants_count:
                    keywords["count"] = count
                old_slots = list(rest)
                if needs_params:
                    keywords["w"] = widen(old_slots.pop())
                wide = [jax.tree.map(widen, s) for s in old_slots]
                u, *new_slots = rule(widen(g), *wide, **keywords)
                stored_slots = [_store_like(new, old) for new, old in zip(new_slots, old_slots, strict=True)]
                return (jnp.asarray(u).astype(jnp.result_type(g)), *stored_slots)

            trees = [getattr(state, slot) for slot in slots] + ([params] if needs_params else [])
            results = tree_lib.map(leaf, updates, *trees, names=names)
            new_updates, *new_slot_trees = tree_lib.unzip(results, updates, 1 + len(slots))
            new = dict(zip(slots, new_slot_trees, strict=True))
            if has_count:
                new["count"] = tree_lib.safe_increment(state.count)
                if stores and spec.schedules:
                    new["hyperparams"] = spec.advance(state.hyperparams, new["count"])
            return new_updates, state._replace(**new)

        self = super().__new__(cls, init, update)
        self.rule, self.state_type, self.spec, self.static = rule, state_type, spec, static
        self.slots, self.needs_params, self.name = slots, needs_params, label
        return self

    def __repr__(self) -> str:
        options = [f"{k}={v!r}" for k, v in {**self.spec.constants, **self.spec.schedules}.items()]
        options += [f"{k}={v!r}" for k, v in self.static.items()]
        return f"{self.name}({', '.join(options)})"


def shaped(
    rule: Callable[..., Any],
    state_type: type,
    init_leaf: Callable[[jax.Array], tuple[Any, ...]],
    *,
    hyperparams: Mapping[str, Any] | None = None,
    static: Mapping[str, Any] | None = None,
    name: str | None = None,
) -> Shaped:
    """A transform applying ``rule`` to every leaf, with slots of any shape.

    Args:
      rule: ``rule(g, *slots, hp, [t], [count], [w], **static) -> (u, *new_slots)``; each slot is
        the leaf's own pytree of arrays (as ``init_leaf`` built it), widened to float32 or wider.
        ``t`` is the number of this update (1 for the first), ``count`` the number before it.
      state_type: the state's NamedTuple class (``count`` and ``hyperparams`` fields managed).
      init_leaf: ``init_leaf(param) -> tuple`` of the leaf's initial slots, in field order.
      hyperparams: numeric hyperparameters (numbers or schedules), validated by the caller.
      static: options passed to ``rule`` as keyword arguments.
      name: used in errors and ``repr``.

    Returns:
      A ``Shaped`` transform (a ``GradientTransformationExtraArgs``).
    """
    return Shaped(rule, state_type, init_leaf, hyperparams=hyperparams, static=static, name=name)


class StateView(GradientTransformationExtraArgs):
    """``inner`` with its state shown as ``state_type``: ``self.inner``, ``self.state_type``.

    ``to_outer(inner_state) -> state`` and ``to_inner(state) -> inner_state`` convert between
    the records; they must be inverse to each other on the states the transform produces.
    """

    def __new__(
        cls,
        inner: GradientTransformation,
        state_type: type,
        to_inner: Callable[[Any], Any],
        to_outer: Callable[[Any], Any],
    ) -> StateView:
        def init(params):
            return to_outer(inner.init(params))

        def update(updates, state, params=None, **extra_args):
            if not isinstance(state, tuple) or getattr(state, "_fields", None) != state_type._fields:
                raise ValueError(
                    f"{inner!r} expects a {state_type.__name__} with fields {state_type._fields}, got {state!r:.200}"
                )
            updates, inner_state = call_update(inner, updates, to_inner(state), params, extra_args)
            return updates, to_outer(inner_state)

        self = super().__new__(cls, init, update)
        self.inner, self.state_type = inner, state_type
        return self

    def __repr__(self) -> str:
        return repr(self.inner)
