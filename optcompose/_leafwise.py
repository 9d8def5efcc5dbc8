"""The transform toolkit: a new transform is its per-leaf math and the names of its hyperparameters.

``leafwise(rule, State, hyperparams=...)`` turns a function of *one* leaf into a full
``GradientTransformation``. The author writes the state record (Optax style, right above the
factory) and the math; the toolkit supplies everything else, the same way for every transform:

* **hyperparameters as data** — each entry of ``hyperparams`` is stored in the state's
  ``hyperparams`` field (a ``Hyperparams`` node), so ``get_hyperparams`` reads it and
  ``set_hyperparams`` changes it without recompiling;
* **a schedule for any hyperparameter** — pass a function of the step count instead of a number;
  the update at count ``t - 1`` uses ``schedule(t - 1)``, always recomputed from the count;
* **float32 arithmetic with storage dtypes** — the rule sees every leaf (update, state slots,
  parameter) widened to float32 (float64 and complex stay as they are) and hyperparameters in the
  matching real dtype; results are cast back to the update's dtype and to each slot's storage
  dtype (``dtypes={'mu': jnp.bfloat16}`` halves a moment's memory);
* **errors naming the pytree path** — structure, shape and integer-dtype errors say which leaf;
* **jit / pmap / vmap safety** — the update is pure JAX, with a saturating int32 ``count``;
* **a kernel-free default** — nothing else is needed to run anywhere; the speed layer may
  recognise a rule (by identity) and run a fused kernel with the same numbers.

The rule's signature says what it needs::

    def rule(g, *slots, hp, t=..., w=..., **static) -> u | (u, *new_slots)

``g`` is the incoming update, ``slots`` the per-leaf state fields in the order the state record
declares them, ``hp`` the hyperparameters (attribute access: ``hp.b1``), ``t`` the number of this
update (1 for the first; only if the rule names it), ``w`` the parameter (only if the rule names
it: ``update`` then requires params), ``static`` the factory's non-numeric options. Example, the
whole of ``trace``::

    class TraceState(NamedTuple):
        count: jax.Array
        trace: Updates
        hyperparams: Hyperparams

    def _trace(g, v, *, hp, nesterov):
        v = hp.decay * v + g
        return (g + hp.decay * v if nesterov else v), v

    def trace(decay, nesterov=False, accumulator_dtype=None):
        return leafwise(_trace, TraceState, hyperparams={"decay": decay},
                        dtypes={"trace": accumulator_dtype}, static={"nesterov": nesterov})

The state record's fields other than ``count`` and ``hyperparams`` are the slots; each starts at
``fill.get(name, 0)`` in ``dtypes.get(name)`` (default: the parameter's dtype).
"""

from __future__ import annotations

import inspect
import types
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp

from optcompose import _tree as tree_lib
from optcompose._base import GradientTransformationExtraArgs
from optcompose._hyperparams import Hyperparams, HyperparamSpec, hyperparam_dtype
from optcompose._numerics import widen

_RESERVED = ("count", "hyperparams")


def _real_dtype(dtype: Any) -> Any:
    return jnp.finfo(dtype).dtype


class Leafwise(GradientTransformationExtraArgs):
    """A transform made by ``leafwise``: ``self.rule`` applied to each leaf.

    Attributes (data, read by ``repr`` and the speed layer): ``rule``, ``state_type``, ``spec``
    (the hyperparameters), ``static`` (options passed to the rule), ``slots`` (the per-leaf state
    fields), ``dtypes`` and ``fill`` (their storage dtype and initial value), ``needs_params``.
    """

    def __new__(
        cls,
        rule: Callable[..., Any],
        state_type: type,
        *,
        hyperparams: Mapping[str, Any] | None = None,
        static: Mapping[str, Any] | None = None,
        dtypes: Mapping[str, Any] | None = None,
        fill: Mapping[str, float] | None = None,
        name: str | None = None,
    ) -> Leafwise:
        fields = tuple(getattr(state_type, "_fields", ()))
        if not fields and state_type is not None and not hasattr(state_type, "_fields"):
            raise TypeError(f"state_type must be a NamedTuple class, got {state_type!r}")
        slots = tuple(f for f in fields if f not in _RESERVED)
        spec = HyperparamSpec(**dict(hyperparams or {}))
        has_count, stores = "count" in fields, "hyperparams" in fields
        if spec.schedules and not has_count:
            raise TypeError(
                f"{state_type.__name__} needs a 'count' field to follow schedules for {sorted(spec.schedules)}"
            )
        accepted = inspect.signature(rule).parameters
        wants_t, needs_params = "t" in accepted, "w" in accepted
        if wants_t and not has_count:
            raise TypeError(f"rule {rule.__name__} takes t, so {state_type.__name__} needs a 'count' field")
        static = dict(static or {})
        dtypes = {k: v for k, v in (dtypes or {}).items() if v is not None}
        fill = dict(fill or {})
        for option in (*dtypes, *fill):
            if option not in slots:
                raise ValueError(f"{option!r} is not a per-leaf field of {state_type.__name__} (fields {fields})")
        label = name or rule.__name__.lstrip("_")
        names = ("updates", *slots) + (("params",) if needs_params else ())

        def init(params):
            values = {}
            if has_count:
                values["count"] = jnp.zeros((), jnp.int32)
            for slot in slots:
                values[slot] = tree_lib.full_like(params, fill.get(slot, 0.0), dtypes.get(slot))
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
            t = tree_lib.safe_increment(count) if has_count else None

            def leaf(g, *rest):
                if any(jnp.shape(x) != jnp.shape(g) for x in rest):
                    raise ValueError("the leaves' shapes differ")  # tree_lib.map names the path and shapes
                wide = [widen(x) for x in rest]
                real = _real_dtype(jnp.result_type(widen(g)))
                hp = types.SimpleNamespace(**{k: jnp.asarray(v).astype(real) for k, v in values.items()})
                keywords = dict(static, hp=hp)
                if wants_t:
                    keywords["t"] = t
                if needs_params:
                    keywords["w"] = wide[-1]
                    wide = wide[:-1]
                out = rule(widen(g), *wide, **keywords)
                if not slots:
                    return jnp.asarray(out).astype(jnp.result_type(g))
                u, *new_slots = out
                stored_slots = [
                    jnp.asarray(s).astype(jnp.result_type(old)) for s, old in zip(new_slots, rest, strict=False)
                ]
                return (jnp.asarray(u).astype(jnp.result_type(g)), *stored_slots)

            trees = [getattr(state, slot) for slot in slots] + ([params] if needs_params else [])
            results = tree_lib.map(leaf, updates, *trees, names=names)
            if slots:
                new_updates, *new_slot_trees = tree_lib.unzip(results, updates, 1 + len(slots))
            else:
                new_updates, new_slot_trees = results, []
            return new_updates, self.advanced(state, **dict(zip(slots, new_slot_trees, strict=True)))

        self = super().__new__(cls, init, update)
        self.rule, self.state_type, self.spec, self.static = rule, state_type, spec, static
        self.slots, self.dtypes, self.fill, self.needs_params, self.name = slots, dtypes, fill, needs_params, label
        return self

    def current(self, state: Any, names: Mapping[str, str] | None = None) -> dict[str, jax.Array]:
        """The hyperparameters the next update of ``state`` uses, by this transform's own names.

        ``names`` maps own names to the names they are stored under (``rename_hyperparams``).
        """
        names = names or {}
        stored = state.hyperparams if "hyperparams" in self.state_type._fields else self.spec.init()
        own = {k: stored[names.get(k, k)] for k in self.spec.constants}
        count = getattr(state, "count", None)
        return self.spec.current(own, count) if count is not None else own

    def advanced(self, state: Any, names: Mapping[str, str] | None = None, **slots: Any) -> Any:
        """``state`` after one update whose per-leaf results are ``slots``: the count incremented and
        the scheduled hyperparameters re-evaluated at it (stored under ``names``, as ``current``)."""
        new = dict(slots)
        if "count" in self.state_type._fields:
            new["count"] = tree_lib.safe_increment(state.count)
            if "hyperparams" in self.state_type._fields and self.spec.schedules:
                names = names or {}
                own = {k: state.hyperparams[names.get(k, k)] for k in self.spec.schedules}
                upcoming = self.spec.advance(Hyperparams(own, frozenset(own)), new["count"])
                new["hyperparams"] = state.hyperparams.replace(**{names.get(k, k): v for k, v in upcoming.items()})
        return state._replace(**new)

    def __repr__(self) -> str:
        options = [f"{k}={v!r}" for k, v in {**self.spec.constants, **self.spec.schedules}.items()]
        options += [f"{k}={v!r}" for k, v in self.static.items()]
        return f"{self.name}({', '.join(options)})"


def leafwise(
    rule: Callable[..., Any],
    state_type: type,
    *,
    hyperparams: Mapping[str, Any] | None = None,
    static: Mapping[str, Any] | None = None,
    dtypes: Mapping[str, Any] | None = None,
    fill: Mapping[str, float] | None = None,
    name: str | None = None,
) -> Leafwise:
    """A ``GradientTransformation`` applying ``rule`` to every leaf (see the module docstring).

    Args:
      rule: ``rule(g, *slots, hp, [t], [w], **static) -> u`` (no slots) or ``(u, *new_slots)``.
      state_type: the state's NamedTuple class. Fields named ``count`` (an int32 step count) and
        ``hyperparams`` (the stored hyperparameters) are managed by the toolkit; the others are
        per-leaf slots shaped like the parameters.
      hyperparams: numeric hyperparameters (numbers or schedules), validated by the caller.
      static: options passed to ``rule`` as keyword arguments (Python values, not data).
      dtypes: storage dtype per slot (``None``: the parameter's dtype).
      fill: initial value per slot (default 0).
      name: used in errors and ``repr`` (default: the rule's name).

    Returns:
      A ``Leafwise`` transform (a ``GradientTransformationExtraArgs``).
    """
    return Leafwise(rule, state_type, hyperparams=hyperparams, static=static, dtypes=dtypes, fill=fill, name=name)


def abs_sq(x: jax.Array) -> jax.Array:
    """``|x|^2``: ``x * x`` for real ``x``, ``x * conj(x)`` (real-valued, same dtype) for complex.

    Second moments use it, so complex parameters get ``E|g|^2`` (as Optax) instead of ``E g^2``.
    """
    if jnp.iscomplexobj(x):
        return (x * jnp.conj(x)).real.astype(x.dtype)
    return x * x


def ema_step(moment: jax.Array, value: jax.Array, decay: jax.Array) -> jax.Array:
    """``decay * moment + (1 - decay) * value``: one exponential-moving-average step."""
    return decay * moment + (1.0 - decay) * value
