"""Hyperparameters as data: read them from an optimizer state, change them without recompiling.

Every transform with numeric hyperparameters keeps them in its state, in a ``Hyperparams`` node:
constants as float32 scalars that the update reads (so a new value is new *data* for the compiled
step, not a new program), schedules evaluated at the step count. After ``init`` and after every
update the node holds the values the *next* update will use, so ``get_hyperparams`` always answers
"what learning rate will the next step use?".
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterable, Iterator, Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from optcompose import _validate as validate
from optcompose._base import GradientTransformation, GradientTransformationExtraArgs, call_update
from optcompose._tree import path_str

HYPERPARAM_DTYPE = jnp.float32

_NEXT_VALUES: contextvars.ContextVar[dict[int, Any] | None] = contextvars.ContextVar("next_values", default=None)
"""While ``get_hyperparams(state, tx, params)`` asks ``tx.update`` what it will use: id of a stored
scheduled value -> the value the update computes in its place (``schedule(count)``)."""


@contextlib.contextmanager
def _recording_next_values() -> Iterator[dict[int, Any]]:
    table: dict[int, Any] = {}
    token = _NEXT_VALUES.set(table)
    try:
        yield table
    finally:
        _NEXT_VALUES.reset(token)


def record_next_value(stored: Any, value: Any) -> None:
    """Tells a running ``get_hyperparams(state, tx, params)`` that the update uses ``value`` where the
    state stores ``stored`` (a scheduled entry). A no-op otherwise (one dictionary lookup)."""
    table = _NEXT_VALUES.get()
    if table is not None:
        table[id(stored)] = value


@jax.tree_util.register_pytree_with_keys_class
class Hyperparams(dict):
    """The one hyperparameter mapping: ``name -> scalar array``, living in a transform's state.

    A plain ``dict`` (``state.hyperparams['learning_rate'] = 1e-4`` works, as Optax's
    ``inject_hyperparams`` idiom) with two extras. ``scheduled`` (static: part of the pytree's
    structure) names the entries that follow a schedule, so ``set_hyperparams`` can refuse to
    overwrite them. ``upcoming`` is used by ``inject_hyperparams`` only, whose dict holds the values
    the *last* update used (Optax's timing): it keeps the scheduled entries' values for the *next*
    update, which is what ``get_hyperparams`` reports.
    """

    def __init__(
        self,
        values: Mapping[str, Any] = (),
        scheduled: Iterable[str] = frozenset(),
        upcoming: Mapping[str, Any] | None = None,
    ):
        super().__init__(values)
        self.scheduled = frozenset(scheduled)
        self.upcoming = dict(upcoming or {})

    def __repr__(self) -> str:
        items = ", ".join(f"{k}={v!r}" + (" (scheduled)" if k in self.scheduled else "") for k, v in self.items())
        return f"Hyperparams({items})"

    def replace(self, **values: Any) -> Hyperparams:
        """A copy with some entries replaced (``scheduled`` and ``upcoming`` kept)."""
        return Hyperparams({**self, **values}, self.scheduled, self.upcoming)

    def next_value(self, name: str) -> Any:
        """The value the next update uses."""
        return self.upcoming.get(name, self[name])

    def tree_flatten_with_keys(self):
        keys, upcoming = tuple(self), tuple(self.upcoming)
        children = [(jax.tree_util.DictKey(k), self[k]) for k in keys]
        children += [(jax.tree_util.GetAttrKey(f"upcoming[{k!r}]"), self.upcoming[k]) for k in upcoming]
        return children, (keys, self.scheduled, upcoming)

    def tree_flatten(self):
        children, aux = self.tree_flatten_with_keys()
        return [child for _, child in children], aux

    @classmethod
    def tree_unflatten(cls, aux, children):
        keys, scheduled, upcoming = aux
        children = list(children)
        values = dict(zip(keys, children[: len(keys)], strict=True))
        return cls(values, scheduled, dict(zip(upcoming, children[len(keys) :], strict=True)))


class InjectHyperparamsState(NamedTuple):
    """State of ``inject_hyperparams``: the wrapper's step count, the values, the inner state."""

    count: jax.Array
    hyperparams: Hyperparams
    inner_state: Any


def hyperparam_dtype(params: Any) -> Any:
    """The dtype hyperparameters are stored in: float32, or float64 when a parameter is float64.

    Hyperparameter arithmetic (bias corrections, ``1 - b2``) then follows the widest parameter,
    so float64 training is float64-accurate (``b2 = 0.9999`` is not rounded to float32).
    """
    dtype = jnp.dtype(HYPERPARAM_DTYPE)
    for leaf in jax.tree.leaves(params):
        leaf_dtype = jnp.dtype(leaf.dtype if hasattr(leaf, "dtype") else jnp.result_type(leaf))
        if jnp.issubdtype(leaf_dtype, jnp.inexact):
            real = jnp.finfo(leaf_dtype).dtype
            if real.itemsize > dtype.itemsize:
                dtype = real
    return dtype


def _as_scalar(name: str, value: Any, dtype: Any = HYPERPARAM_DTYPE) -> jax.Array:
    array = jnp.asarray(value)
    if array.shape != ():
        raise ValueError(f"{name} must be a scalar, got an array of shape {array.shape}")
    return array.astype(dtype)


class HyperparamSpec:
    """The numeric hyperparameters of one transform, split into constants and schedules.

    A factory builds one from its arguments (validated already) and uses it in three places:
    ``init(dtype)`` for the state, ``current(hp, count)`` inside ``update`` for the values of this
    step (constants read from the state, schedules evaluated at ``count``: the one source of truth
    for a scheduled value), and ``advance(hp, count + 1)`` for the values the next step will use.
    """

    def __init__(self, **values: Any):
        self.constants = {k: v for k, v in values.items() if not callable(v)}
        self.schedules = {k: v for k, v in values.items() if callable(v)}
        for name, value in self.constants.items():
            validate.fits_float32(name, value)

    def _scheduled_at(self, count: Any, dtype: Any) -> dict[str, jax.Array]:
        return {k: _as_scalar(k, schedule(count), dtype) for k, schedule in self.schedules.items()}

    def init(self, dtype: Any = HYPERPARAM_DTYPE) -> Hyperparams:
        values = {k: _as_scalar(k, v, dtype) for k, v in self.constants.items()}
        values.update(self._scheduled_at(jnp.zeros((), jnp.int32), dtype))
        return Hyperparams(values, frozenset(self.schedules))

    def _dtype(self, hyperparams: Mapping[str, Any]) -> Any:
        return next((jnp.result_type(v) for v in hyperparams.values()), HYPERPARAM_DTYPE)

    def current(self, hyperparams: Mapping[str, Any], count: Any) -> dict[str, jax.Array]:
        """Values for the update at ``count``: constants from the state, schedules evaluated."""
        values = {k: hyperparams[k] for k in self.constants}
        scheduled = self._scheduled_at(count, self._dtype(hyperparams))
        for k, value in scheduled.items():
            record_next_value(hyperparams.get(k), value)
        values.update(scheduled)
        return values

    def advance(self, hyperparams: Hyperparams, next_count: Any) -> Hyperparams:
        """The node after an update: schedules re-evaluated at ``next_count``."""
        if not self.schedules:
            return hyperparams
        return hyperparams.replace(**self._scheduled_at(next_count, self._dtype(hyperparams)))


_INJECTED_FIELDS = (
    InjectHyperparamsState._fields,
    ("count", "hyperparams", "hyperparams_states", "inner_state"),  # inject_stateful_hyperparams
)


def _is_injected(x: Any) -> bool:
    # The states of inject_hyperparams / inject_stateful_hyperparams, ours or Optax's (same fields).
    return isinstance(x, tuple) and getattr(x, "_fields", None) in _INJECTED_FIELDS


def _is_node(x: Any) -> bool:
    return isinstance(x, Hyperparams) or _is_injected(x)


def _entries(opt_state: Any) -> list[tuple[str, str, Any, bool]]:
    """Every hyperparameter in the state: (qualified name, short name, value, scheduled)."""
    found = []
    flat, _ = jax.tree_util.tree_flatten_with_path(opt_state, is_leaf=_is_node)
    for path, node in flat:
        if isinstance(node, Hyperparams):
            for name, value in node.items():
                key = path_str((*path, jax.tree_util.DictKey(name)))
                found.append((key, name, value, name in node.scheduled))
        elif _is_injected(node):
            # The wrapper's dict is the only source of truth: the inner state's own nodes are
            # rebuilt from it at every update, so they are not reported (they would be stale
            # duplicates). Scheduled entries report their value for the next update.
            scheduled = getattr(node.hyperparams, "scheduled", frozenset())
            upcoming = getattr(node.hyperparams, "upcoming", {})
            for name, value in node.hyperparams.items():
                key = path_str((*path, jax.tree_util.GetAttrKey("hyperparams"), jax.tree_util.DictKey(name)))
                found.append((key, name, upcoming.get(name, value), name in scheduled))
    return found


def get_hyperparams(
    opt_state: Any, tx: GradientTransformation | None = None, params: Any = None
) -> dict[str, jax.Array]:
    """The hyperparameters the next update will use, by name.

    A name that occurs once (``learning_rate`` in ``adamw``) is reported plainly; a name shared by
    several parts (two learning rates in a ``partition``) is reported under each part's full pytree
    path, such as ``".inner_states['head'].inner_state[2].hyperparams['learning_rate']"``.

    For a state made by ``inject_hyperparams`` the names are the factory's arguments
    (``state.hyperparams``); its inner transform's own entries, rebuilt from those at every
    update, are not reported a second time.

    A scheduled entry is stored by each update as ``schedule(count)`` of the next step. The update
    itself never reads it (it evaluates ``schedule(count)``), so the stored value is stale only
    when the state was changed behind the update's back: restored into code with another schedule,
    or its ``count`` edited. Pass the transform (and, for transforms that need them, the params) to
    report what the next update computes instead: ``get_hyperparams(state, tx, params)`` runs one
    eager ``tx.update`` on zero updates and reads each scheduled value it uses (constants are read
    from the state as always).
    """
    entries = _entries(opt_state)
    if tx is not None:
        entries = _with_next_values(entries, opt_state, tx, params)
    counts: dict[str, int] = {}
    for _, name, _, _ in entries:
        counts[name] = counts.get(name, 0) + 1
    return {(name if counts[name] == 1 else key): value for key, name, value, _ in entries}


def _with_next_values(entries: list, opt_state: Any, tx: GradientTransformation, params: Any) -> list:
    """``entries`` with each scheduled value replaced by the one ``tx.update`` computes for it."""
    if not isinstance(tx, GradientTransformation):
        raise TypeError(f"tx must be the GradientTransformation that made opt_state, got {type(tx).__name__}")
    if not any(scheduled for *_, scheduled in entries):
        return entries
    if params is None:
        raise ValueError(
            "get_hyperparams(state, tx) needs params=... (the parameters, or a tree of their shapes and "
            "dtypes) to run the update that computes the scheduled values"
        )
    zeros = jax.tree.map(lambda p: jnp.zeros(jnp.shape(p), getattr(p, "dtype", None) or jnp.result_type(p)), params)
    if any(isinstance(leaf, jax.ShapeDtypeStruct) for leaf in jax.tree.leaves(params)):
        params = zeros  # shapes only: transforms that read params see zeros of those shapes
    with _recording_next_values() as table, jax.disable_jit():
        call_update(tx, zeros, opt_state, params, {})
    return [
        (key, name, table.get(id(value), value) if scheduled else value, scheduled)
        for key, name, value, scheduled in entries
    ]


def set_hyperparams(opt_state: Any, values: Mapping[str, Any] | None = None, /, **kwargs: Any) -> Any:
    """Returns ``opt_state`` with the given hyperparameters replaced, from the next update on.

    Names are those ``get_hyperparams`` reports (plain, or path-qualified when shared). The new
    state has the same structure, shapes and dtypes, so a jitted step does not recompile. A
    hyperparameter that follows a schedule cannot be set: the schedule would overwrite it.
    """
    requested = {**(values or {}), **kwargs}
    entries = _entries(opt_state)
    targets: dict[str, Any] = {}
    for name, value in requested.items():
        matches = [(key, scheduled) for key, short, _, scheduled in entries if name in (key, short)]
        if not matches:
            known = sorted({short for _, short, _, _ in entries} | {key for key, _, _, _ in entries})
            raise KeyError(f"no hyperparameter named {name!r} in this optimizer state; known: {known}")
        if len(matches) > 1:
            raise ValueError(
                f"hyperparameter {name!r} is shared by several parts of the optimizer; name one of "
                f"{[key for key, _ in matches]}"
            )
        key, scheduled = matches[0]
        if scheduled:
            raise ValueError(
                f"hyperparameter {key} follows a schedule; build the optimizer with a constant "
                f"{name} to set it, or change the schedule"
            )
        validate.hyperparameter(name.rsplit("'", 2)[-2] if "'" in name else name, value)
        targets[key] = value

    def replace(path, node):
        if isinstance(node, Hyperparams):
            new = {}
            for name in node:
                key = path_str((*path, jax.tree_util.DictKey(name)))
                if key in targets:
                    new[name] = jnp.asarray(targets[key], jnp.asarray(node[name]).dtype).reshape(())
            return node.replace(**new) if new else node
        if _is_injected(node):
            new = {}
            for name, old in node.hyperparams.items():
                key = path_str((*path, jax.tree_util.GetAttrKey("hyperparams"), jax.tree_util.DictKey(name)))
                if key in targets:
                    new[name] = jnp.asarray(targets[key], jnp.asarray(old).dtype).reshape(jnp.shape(old))
            if not new:
                return node
            # Keep the dict's own type (optcompose's carries static data), so the pytree
            # structure and hence the compiled step stay the same.
            hyper = node.hyperparams
            hyper = hyper.replace(**new) if hasattr(hyper, "replace") else {**hyper, **new}
            return node._replace(hyperparams=hyper)
        return node

    return jax.tree_util.tree_map_with_path(replace, opt_state, is_leaf=_is_node)


def rename_nodes(state: Any, names: Mapping[str, str]) -> Any:
    """``state`` with the entries of every ``Hyperparams`` node renamed by ``names`` (others kept)."""

    def rename(node: Any) -> Any:
        if not isinstance(node, Hyperparams):
            return node
        values = {names.get(k, k): v for k, v in node.items()}
        return Hyperparams(values, frozenset(names.get(k, k) for k in node.scheduled))

    return jax.tree.map(rename, state, is_leaf=lambda x: isinstance(x, Hyperparams))


class Renamed(GradientTransformationExtraArgs):
    """``rename_hyperparams(inner, names)``: ``self.inner`` with ``self.names`` (old -> new) applied."""

    def __new__(cls, inner: GradientTransformation, names: Mapping[str, str]) -> Renamed:
        names = dict(names)
        inverse = {new: old for old, new in names.items()}
        if len(inverse) != len(names):
            raise ValueError(f"rename_hyperparams names must map to distinct names, got {names}")

        def init(params):
            return rename_nodes(inner.init(params), names)

        def update(updates, state, params=None, **extra_args):
            updates, state = call_update(inner, updates, rename_nodes(state, inverse), params, extra_args)
            return updates, rename_nodes(state, names)

        self = super().__new__(cls, init, update)
        self.inner, self.names = inner, names
        return self

    def __repr__(self) -> str:
        return f"rename_hyperparams({self.inner!r}, {self.names!r})"


def rename_hyperparams(inner: GradientTransformation, names: Mapping[str, str]) -> Renamed:
    """``inner`` with some hyperparameters stored (and so read and set) under other names.

    Optimizers use it so that the names in the state are their own arguments' names: ``sgd``'s
    momentum is ``trace``'s ``decay`` inside, but ``get_hyperparams(sgd(...).init(p))`` reports
    ``momentum`` and ``set_hyperparams(state, momentum=0.5)`` works. The wrapper adds no state.
    """
    return Renamed(inner, names)
