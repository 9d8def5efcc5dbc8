"""Finding and replacing values by name in pytrees (Optax's ``optax.tree.get`` / ``set``).

A *name* here is a dict key, a NamedTuple field, or the class name of a NamedTuple. The paths
these functions report are JAX key paths, except that a NamedTuple field appears as a
:class:`NamedTupleKey` (which records the tuple's class name too), so that two ``count`` fields in
different states of a chain can be told apart.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax


@dataclasses.dataclass(frozen=True)
class NamedTupleKey:
    """Path entry for a NamedTuple field: the tuple's class name and the field name.

    It takes the place of JAX's ``GetAttrKey`` in the paths of :func:`tree_get_all_with_path`,
    :func:`tree_get` and :func:`tree_set`, so a ``filtering(path, value)`` callable can check,
    say, ``path[-1].tuple_name == 'ScaleByAdamState'``. ``str()`` gives ``'TupleName.field'``, so
    :func:`jax.tree_util.keystr` prints readable paths. Two keys are equal when both names are.

    Attributes:
      tuple_name: class name of the NamedTuple holding the field.
      name: the field's name.
    """

    tuple_name: str
    name: str

    def __str__(self) -> str:
        return f"{self.tuple_name}.{self.name}"


_KeyEntry = (
    jax.tree_util.DictKey
    | jax.tree_util.FlattenedIndexKey
    | jax.tree_util.GetAttrKey
    | jax.tree_util.SequenceKey
    | NamedTupleKey
)
_KeyPath = tuple[_KeyEntry, ...]


def _is_named_tuple(x: Any) -> bool:
    return isinstance(x, tuple) and hasattr(x, "_fields")


def _holds_any(node: Any, names: tuple[Any, ...]) -> bool:
    """Whether ``node`` (a NamedTuple or dict) has one of ``names`` as field, key or class name."""
    if _is_named_tuple(node):
        return type(node).__name__ in names or any(name in node._fields for name in names)
    if isinstance(node, dict):
        return any(name in node for name in names)
    return False


def _named_leaves(tree: Any, stop: Callable[[Any], bool]) -> list[tuple[_KeyPath, Any]]:
    """``tree_leaves_with_path(tree, is_leaf=stop)`` with NamedTuple fields keyed by :class:`NamedTupleKey`.

    NamedTuples for which ``stop`` is false are opened here field by field (in field order, the
    order JAX flattens them in) instead of by JAX, which would key their fields by attribute.
    """
    found: list[tuple[_KeyPath, Any]] = []
    flat = jax.tree_util.tree_leaves_with_path(tree, is_leaf=lambda x: stop(x) or _is_named_tuple(x))
    for path, node in flat:
        if stop(node) or not _is_named_tuple(node):
            found.append((path, node))
            continue
        for field in node._fields:
            entry = NamedTupleKey(type(node).__name__, field)
            for sub_path, sub in _named_leaves(getattr(node, field), stop):
                found.append(((*path, entry, *sub_path), sub))
    return found


def _children(path: _KeyPath, node: Any) -> list[tuple[_KeyPath, Any]]:
    """The direct children of a NamedTuple (field order) or dict (insertion order), with paths."""
    if _is_named_tuple(node):
        name = type(node).__name__
        return [((*path, NamedTupleKey(name, field)), getattr(node, field)) for field in node._fields]
    if isinstance(node, dict):
        return [((*path, jax.tree_util.DictKey(key)), value) for key, value in node.items()]
    raise ValueError(f"Subtree must be a dict or a NamedTuple. Got {type(node)}")


def _select(path: _KeyPath, node: Any, name: Any) -> tuple[_KeyPath, Any]:
    """The entry called ``name`` of a node that holds it (the node itself for a class-name match)."""
    if _is_named_tuple(node):
        if type(node).__name__ == name:
            return path, node
        return (*path, NamedTupleKey(type(node).__name__, name)), getattr(node, name)
    return (*path, jax.tree_util.DictKey(name)), node[name]


def _find_all(tree: Any, name: Any) -> list[tuple[_KeyPath, Any]]:
    """Every entry called ``name``: first those in the outermost nodes holding it, then, node by
    node, those found anywhere below these nodes (including inside the matched entries)."""

    def holds(node: Any) -> bool:
        return _holds_any(node, (name,))

    holders = [(path, node) for path, node in _named_leaves(tree, holds) if holds(node)]
    found = [_select(path, node, name) for path, node in holders]
    for path, node in holders:
        for child_path, child in _children(path, node):
            found.extend(((*child_path, *sub_path), value) for sub_path, value in _find_all(child, name))
    return found


def tree_get_all_with_path(
    tree: Any,
    key: Any,
    filtering: Callable[[_KeyPath, Any], bool] | None = None,
) -> list[tuple[_KeyPath, Any]]:
    """Every value in ``tree`` whose dict key, NamedTuple field or NamedTuple class name is ``key``.

    The search opens dicts, NamedTuples, lists, tuples and registered pytree nodes. A value found
    is searched further, so ``{'a': {'a': 1.0}}`` gives both ``{'a': 1.0}`` and ``1.0``. Order:
    first the matches directly in the outermost nodes that hold ``key`` (in flattening order), then
    for each of those nodes, the matches below it.

    Args:
      tree: the pytree to search (an optimizer state, say).
      key: the name to look for: a dict key, a field name, or a NamedTuple class name (which
        matches the whole NamedTuple).
      filtering: optional ``filtering(path, value) -> bool``; only matches for which it is true are
        kept.

    Returns:
      A list of ``(path, value)``; ``path`` is a tuple of JAX key entries with
      :class:`NamedTupleKey` for NamedTuple fields (print it with :func:`jax.tree_util.keystr`).
      Empty when nothing matches (a leaf or an empty tree gives ``[]``). ``None`` values are
      reported like any other.
    """
    found = _find_all(tree, key)
    if filtering is not None:
        found = [(path, value) for path, value in found if filtering(path, value)]
    return found


def tree_get(
    tree: Any,
    key: Any,
    default: Any | None = None,
    filtering: Callable[[_KeyPath, Any], bool] | None = None,
) -> Any:
    """The one value in ``tree`` named ``key`` (see :func:`tree_get_all_with_path`), or ``default``.

    For example ``tree_get(adam_state, 'count')`` or ``tree_get(state, 'learning_rate')`` for an
    injected hyperparameter; ``tree_get(state, 'ScaleByAdamState')`` returns that whole state.

    Args:
      tree: the pytree to search.
      key: dict key, NamedTuple field or NamedTuple class name.
      default: returned when nothing matches.
      filtering: optional ``filtering(path, value) -> bool`` to pick among several matches, e.g.
        ``lambda path, _: path[-1].tuple_name == 'ScaleByAdamState'``.

    Returns:
      The value, or ``default`` when there is none.

    Raises:
      KeyError: if more than one value matches (after ``filtering``).
    """
    found = tree_get_all_with_path(tree, key, filtering=filtering)
    if len(found) > 1:
        raise KeyError(f"Found multiple values for {key!r} in {tree}; pass filtering= to choose one.")
    return found[0][1] if found else default


def _plain_key(entry: _KeyEntry) -> Any:
    """The dict key, attribute/field name or index a path entry stands for."""
    if isinstance(entry, jax.tree_util.DictKey):
        if isinstance(entry.key, (str, int)):
            return entry.key
        raise KeyError(f"Hashable keys not supported: dict key {entry.key!r} is neither str nor int")
    if isinstance(entry, jax.tree_util.FlattenedIndexKey):
        return entry.key
    if isinstance(entry, jax.tree_util.SequenceKey):
        return entry.idx
    if isinstance(entry, (jax.tree_util.GetAttrKey, NamedTupleKey)):
        return entry.name
    raise KeyError(f"Tree key '{entry}' of type '{type(entry)}' not valid.")


def tree_set(
    tree: Any,
    filtering: Callable[[_KeyPath, Any], bool] | None = None,
    /,
    **kwargs: Any,
) -> Any:
    """A copy of ``tree`` with the entries named in ``kwargs`` replaced by the given values.

    ``tree_set(state, learning_rate=0.1)`` sets every dict entry or NamedTuple field called
    ``learning_rate``; a NamedTuple class name as keyword replaces that whole NamedTuple.

    Replacement starts at the outermost dicts/NamedTuples holding one of the names. In such a
    node, each matching child (accepted by ``filtering``) is replaced; other children that are
    dicts, lists or tuples are searched again, but only through nodes that themselves hold a name
    (Optax's rule: a name nested below a node without one, under a holder, is left as it is).
    Rebuilt dicts are plain ``dict`` in their insertion order; NamedTuples keep their class.

    Args:
      tree: the pytree to copy.
      filtering: optional ``filtering(path, value) -> bool`` (positional only); an entry is
        replaced only if it is true for the entry's path (see :func:`tree_get_all_with_path`).
      **kwargs: ``name=new_value`` pairs.

    Returns:
      The new pytree. Values can change type and shape: under :func:`jax.jit` this changes the
      state's structure, which is the caller's business.

    Raises:
      KeyError: if some name in ``kwargs`` matches nothing (or nothing ``filtering`` accepts),
        checked before anything is replaced; also for dict keys that are neither str nor int
        met while rebuilding.
    """
    for name in kwargs:
        if not tree_get_all_with_path(tree, name, filtering):
            condition = " given the filtering operation" if filtering is not None else ""
            raise KeyError(f"Found no values matching {name!r}{condition} in {tree}")

    names = tuple(kwargs)

    def holds(node: Any) -> bool:
        return _holds_any(node, names)

    def accepted(path: _KeyPath, value: Any) -> bool:
        return filtering is None or filtering(path, value)

    def rebuild(path: _KeyPath, node: Any) -> Any:
        if not holds(node):
            return node
        if _is_named_tuple(node) and type(node).__name__ in kwargs and accepted(path, node):
            return kwargs[type(node).__name__]
        children: dict[Any, Any] = {}
        for child_path, child in _children(path, node):
            name = _plain_key(child_path[-1])
            if name in kwargs and accepted(child_path, child):
                children[name] = kwargs[name]
            elif isinstance(child, (dict, list, tuple)):
                children[name] = rebuild(child_path, child)
            else:
                children[name] = child
        return node._replace(**children) if _is_named_tuple(node) else children

    structure = jax.tree.structure(tree, is_leaf=holds)
    return structure.unflatten([rebuild(path, node) for path, node in _named_leaves(tree, holds)])
