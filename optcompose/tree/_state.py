"""Finding the parameter-shaped parts of an optimizer state, and mapping over them.

Two layers:

* :func:`param_shaped_map` / :func:`param_shaped_paths` (optcompose's own, beyond Optax) find the
  subtrees of a state that have the structure and leaf shapes of a given ``params`` tree: the
  moments (``mu``, ``nu``, ``trace``...). They need ``params`` (arrays or
  :class:`jax.ShapeDtypeStruct`), not the optimizer.
* :func:`tree_map_params` is Optax's ``optax.tree.map_params``: given the optimizer instead of the
  parameters, it finds the parameter copies the way Optax does, by running ``init`` on a
  placeholder, with Optax's results; where that cannot work it falls back on the first layer.
"""

from __future__ import annotations

import sys
import typing
from collections.abc import Callable
from typing import Any, Protocol

import jax
import jax.numpy as jnp

_PYTHON_NUMBERS = (bool, int, float, complex)


# --------------------------------------------------------------------------------------------
# Layer 1: structure-and-shape matching against a params tree.


def _is_array_like(x: Any) -> bool:
    """Arrays (JAX, NumPy, tracers), NumPy scalars and ShapeDtypeStructs: leaves with shape and dtype."""
    return hasattr(x, "shape") and hasattr(x, "dtype")


def _is_hole(x: Any) -> bool:
    """A subtree with no leaves (``None``, ``MaskedNode()``, ``()``, ``{}``, an empty state)."""
    return not _is_array_like(x) and not jax.tree.leaves(x)


def _one_level(node: Any) -> tuple[list[Any], Any]:
    """``node``'s direct children and a treedef of ``node`` with each child as a leaf."""
    return jax.tree_util.tree_flatten(node, is_leaf=lambda x: x is not node)


def _is_leaf_def(treedef: Any) -> bool:
    return treedef.num_nodes == 1 and treedef.num_leaves == 1


class _Template:
    """What "shaped like params" means, precomputed once from a params tree.

    ``skeleton`` mirrors params node by node: ``None`` at a params leaf, else ``(level, kids)``
    with ``level`` the one-level treedef of the node (its type, keys and aux data, children as
    leaves) and ``kids`` the children's skeletons.
    """

    def __init__(self, params: Any):
        self.treedef = jax.tree.structure(params)
        self.shapes = tuple(self._leaf_shape(path, leaf) for path, leaf in jax.tree_util.tree_leaves_with_path(params))
        self.single_leaf = _is_leaf_def(self.treedef)
        self.skeleton = self._skeleton(params)

    @staticmethod
    def _leaf_shape(path: Any, leaf: Any) -> tuple[int, ...]:
        if _is_array_like(leaf):
            return tuple(leaf.shape)
        if isinstance(leaf, _PYTHON_NUMBERS):
            return ()
        where = jax.tree_util.keystr(tuple(path)) or "<root>"
        raise TypeError(
            f"params{'' if where == '<root>' else where} is a {type(leaf).__name__}, which has no shape; params "
            "leaves must be arrays, jax.ShapeDtypeStruct or numbers"
        )

    def _skeleton(self, node: Any) -> Any:
        children, level = _one_level(node)
        if _is_leaf_def(level):
            return None
        return level, [self._skeleton(child) for child in children]

    def _collect(self, skeleton: Any, node: Any, items: list[Any]) -> bool:
        if skeleton is None:
            items.append(node)
            return True
        level, kids = skeleton
        children, node_level = _one_level(node)
        if node_level != level:
            return False
        return all(self._collect(kid, child, items) for kid, child in zip(kids, children, strict=True))

    def match(self, node: Any) -> list[Any] | None:
        """The entries of ``node`` at the params' leaf positions if ``node`` is parameter-shaped, else None."""
        if not self.shapes:
            return None
        items: list[Any] = []
        if not self._collect(self.skeleton, node, items):
            return None
        real = 0
        for item, shape in zip(items, self.shapes, strict=True):
            if _is_hole(item):
                continue
            if not _is_array_like(item) or tuple(item.shape) != shape:
                return None
            if self.single_leaf and not jnp.issubdtype(item.dtype, jnp.inexact):
                return None
            real += 1
        return items if real else None

    def flatten_rest(self, rest: tuple[Any, ...]) -> list[list[Any]]:
        flat = []
        for index, tree in enumerate(rest):
            try:
                flat.append(self.treedef.flatten_up_to(tree))
            except (ValueError, TypeError) as err:
                raise ValueError(
                    f"rest[{index}] must have the pytree structure of params ({self.treedef}), got "
                    f"{jax.tree.structure(tree)}"
                ) from err
        return flat


def _shape_map(
    f: Callable[..., Any],
    state: Any,
    template: _Template,
    rest: tuple[Any, ...],
    transform_non_params: Callable[..., Any] | None,
    is_leaf: Callable[[Any], bool] | None,
) -> Any:
    rest_items = template.flatten_rest(rest)

    def visit(node: Any) -> Any:
        items = template.match(node)
        if items is None:  # an ordinary leaf outside every parameter-shaped subtree
            return node if transform_non_params is None else transform_non_params(node)
        mapped = []
        for index, item in enumerate(items):
            if _is_hole(item) and not (is_leaf is not None and is_leaf(item)):
                mapped.append(item)
            else:
                mapped.append(f(item, *(entries[index] for entries in rest_items)))
        return template.treedef.unflatten(mapped)

    return jax.tree.map(visit, state, is_leaf=lambda node: template.match(node) is not None)


def param_shaped_map(
    f: Callable[..., Any],
    state: Any,
    params: Any,
    *rest: Any,
    transform_non_params: Callable[..., Any] | None = None,
) -> Any:
    r"""Applies ``f`` leaf-wise to every parameter-shaped subtree of ``state`` (optcompose's, not Optax's).

    **Parameter-shaped.** A subtree ``s`` of ``state`` (``state`` itself included) is
    parameter-shaped with respect to ``params`` when all of the following hold:

    1. ``params`` has at least one leaf (with empty params -- ``{}``, ``()``, ``None``, a tree of
       ``None`` -- nothing is parameter-shaped).
    2. ``s`` has the same pytree nodes as ``params`` down to the params' leaf positions: the same
       node types, dict keys, NamedTuple classes and custom-node aux data, and ``None`` exactly
       where ``params`` has ``None``.
    3. At each params leaf position ``s`` holds either an array-like leaf (a JAX or NumPy array, a
       tracer, a NumPy scalar or a :class:`jax.ShapeDtypeStruct`; not a Python number) whose shape
       equals that params leaf's shape (params leaves may be arrays, ShapeDtypeStructs or Python
       numbers, of shape ``()``), or a *hole*: a subtree without leaves (``None``,
       ``MaskedNode()``, ``()``, an empty NamedTuple), as masked transforms leave for excluded
       parameters.
    4. At least one of those positions holds an array, not a hole.
    5. When ``params`` is a single leaf, that array must also have an inexact (floating or complex)
       dtype, so an int32 step count of shape ``()`` is not taken for the moment of a scalar
       parameter. (With a tree of params, the structure already tells the two apart; dtypes are
       not checked.)

    The search goes top down and stops at the first parameter-shaped node on each branch, so a
    match is never searched inside. Dtypes (other than rule 5) and values are ignored: a bfloat16
    ``mu`` of float32 params matches.

    Args:
      f: called as ``f(leaf, *rest_leaves)`` for each array in each parameter-shaped subtree
        (``rest_leaves`` being the entries of ``rest`` at the same params leaf position); its
        result replaces the leaf. Holes are kept as they are and ``f`` is not called on them.
      state: the pytree to map over (an optimizer state: NamedTuples, tuples, dicts, custom
        nodes, ``None``...). It may hold arrays or :class:`jax.ShapeDtypeStruct` (e.g. the output
        of :func:`jax.eval_shape`), and works under :func:`jax.jit`.
      params: the parameters, or a tree of :class:`jax.ShapeDtypeStruct`, or anything with their
        structure and shapes. Only used to recognise the moments; ``f`` does not receive it
        (pass it again in ``rest`` for that).
      *rest: pytrees with the structure of ``params`` (for example partition specs), passed to
        ``f`` entry by entry.
      transform_non_params: optional one-argument callable applied to every other leaf of
        ``state`` (counts, hyperparameters, PRNG keys...); by default they are kept. ``None``
        entries of ``state`` are empty subtrees and are kept either way.

    Returns:
      A pytree with the structure of ``state`` (where ``f`` and ``transform_non_params`` return
      leaves).

    Raises:
      TypeError: if a params leaf has no shape (a string, a PartitionSpec).
      ValueError: if a tree in ``rest`` does not have the structure of ``params``.

    .. seealso:: :func:`param_shaped_paths` for where the matches are; :func:`tree_map_params`
      for Optax's optimizer-driven search.
    """
    return _shape_map(f, state, _Template(params), rest, transform_non_params, None)


def param_shaped_paths(state: Any, params: Any) -> list[tuple[Any, ...]]:
    """Key paths of the parameter-shaped subtrees of ``state`` (optcompose's, not Optax's).

    "Parameter-shaped" is defined in :func:`param_shaped_map`, which visits exactly these subtrees.

    Args:
      state: the pytree to search.
      params: parameters (arrays, ShapeDtypeStructs or numbers) giving the structure and shapes.

    Returns:
      The JAX key paths (tuples of ``GetAttrKey``/``SequenceKey``/``DictKey``... as from
      :func:`jax.tree_util.tree_flatten_with_path`; NamedTuple fields appear as ``GetAttrKey``), in
      flattening order; ``[()]`` when ``state`` itself matches, ``[]`` when nothing does.
    """
    template = _Template(params)
    flat, _ = jax.tree_util.tree_flatten_with_path(state, is_leaf=lambda node: template.match(node) is not None)
    return [tuple(path) for path, node in flat if template.match(node) is not None]


# --------------------------------------------------------------------------------------------
# Layer 2: Optax's map_params.


@jax.tree_util.register_pytree_node_class
class _ParamsPlaceholder:
    """Stands in for the parameters in ``init``: a pytree node with no children.

    ``jax.tree.map`` over it returns a new placeholder, so an ``init`` that builds its state by
    mapping over the parameters leaves a placeholder wherever a copy of the parameters goes.
    """

    def tree_flatten(self) -> tuple[tuple[()], None]:
        return (), None

    @classmethod
    def tree_unflatten(cls, aux: Any, children: Any) -> _ParamsPlaceholder:
        del aux, children
        return cls()


def _placeholder_types() -> list[type]:
    """Ours, then Optax's own placeholder class when Optax is already loaded (never imported here).

    Optax's ``masked`` recognises only Optax's placeholder (it skips its mask check for it), so for
    an Optax optimizer that class gives Optax's exact results where ours makes ``init`` fail.
    """
    kinds: list[type] = [_ParamsPlaceholder]
    optax_state_utils = sys.modules.get("optax.tree_utils._state_utils")
    foreign = getattr(optax_state_utils, "_ParamsPlaceholder", None)
    if isinstance(foreign, type):
        kinds.append(foreign)
    return kinds


@typing.runtime_checkable
class Initable(Protocol):
    """An object with an ``init(params) -> state`` method (a gradient transformation)."""

    def init(self, params: Any) -> Any:
        """Returns a fresh optimizer state for ``params``."""


def _shape_template_from(rest: tuple[Any, ...]) -> Any:
    """The first tree of ``rest`` whose leaves all have shape and dtype (and that has leaves), or None."""
    for tree in rest:
        leaves = jax.tree.leaves(tree)
        if leaves and all(_is_array_like(leaf) for leaf in leaves):
            return tree
    return None


def tree_map_params(
    initable: Callable[[Any], Any] | Initable,
    f: Callable[..., Any],
    state: Any,
    /,
    *rest: Any,
    transform_non_params: Callable[..., Any] | None = None,
    is_leaf: Callable[[Any], bool] | None = None,
) -> Any:
    """Applies ``f`` to every copy of the parameter tree inside an optimizer state (Optax's semantics).

    The typical use derives the sharding of an optimizer state from the parameters' sharding:
    ``tree_map_params(opt, lambda _, spec: spec, state, param_specs,
    transform_non_params=lambda _: replicated)``.

    **How the copies are found (Optax's rule).** ``init`` (``initable.init`` if it has one, else
    ``initable`` itself) is run on a placeholder: a pytree node without leaves. Every transform
    that builds state by mapping over the parameters (``zeros_like``, ``jax.tree.map``) then puts
    a placeholder where its parameter copy goes, while counts and hyperparameters come out as
    ordinary leaves. That placeholder state must be a pytree prefix of ``state``; the subtree of
    ``state`` at each placeholder is a parameter copy and becomes
    ``jax.tree.map(f, subtree, *rest, is_leaf=is_leaf)``, and every other entry ``x`` becomes
    ``transform_non_params(x)`` (or stays). This follows the optimizer's code, not shapes: a
    factored moment (a parameter mapped to a smaller array) counts as a copy, and a float
    hyperparameter of shape ``()`` never does, even for a scalar parameter. If ``init`` fails on
    our placeholder and Optax is loaded, Optax's own placeholder class is tried next (looked up in
    ``sys.modules``, never imported), since Optax's ``masked`` only lets that one through.

    **Fallback (beyond Optax).** When ``init`` cannot run on a placeholder (it inspects leaf
    shapes or checks a mask against the parameters, as optcompose's ``masked`` and ``partition``
    do; Optax would raise), and one of ``rest`` has only array-like leaves (arrays or
    :class:`jax.ShapeDtypeStruct`), the first such tree is taken as the parameters and the result
    is ``param_shaped_map(f, state, that_tree, *rest, ...)``: the copies are then the
    parameter-shaped subtrees as :func:`param_shaped_map` defines them, holes such as
    ``MaskedNode()`` are kept unless ``is_leaf`` accepts them (then ``f`` is called on them), and
    ``is_leaf`` is consulted only at the parameters' leaf positions. Without such a tree the
    original error is re-raised as a ``TypeError`` naming :func:`param_shaped_map`.

    Args:
      initable: an optimizer (anything with ``init``) or an ``init``-like callable.
      f: called on the leaves of each parameter copy together with the matching leaves of
        ``rest``: ``f(state_leaf, *rest_leaves)``.
      state: the optimizer state, as returned by ``initable``'s ``init`` (or its update).
      *rest: trees with the parameters' structure (e.g. shardings), passed to ``f``.
      transform_non_params: optional one-argument callable for all other entries of ``state``.
      is_leaf: passed to the :func:`jax.tree.map` over each copy, e.g. ``lambda x:
        isinstance(x, MaskedNode)`` to let ``f`` see the entries a masked transform left out
        (without it, such a copy cannot be zipped with full-size ``rest`` trees).

    Returns:
      A tree with the structure of ``state`` (where ``f`` and ``transform_non_params`` return
      leaves); ``None`` entries of ``state`` are kept.

    Raises:
      ValueError: if the placeholder state is not a prefix of ``state`` (a state from another
        optimizer), or if ``rest`` does not fit a copy.
      TypeError: if ``init`` fails on the placeholder and no tree of ``rest`` can stand in for
        the parameters.
    """
    init = initable.init if isinstance(initable, Initable) else initable
    shadow, placeholder_type, failure = None, None, None
    for candidate in _placeholder_types():
        try:
            shadow = init(candidate())
        except Exception as err:  # any failure of a foreign init means: cannot trace this way
            failure = failure or err
            continue
        placeholder_type = candidate
        break
    if placeholder_type is None:
        template = _shape_template_from(rest)
        if template is None:
            raise TypeError(
                f"map_params could not run init on placeholder parameters ({type(failure).__name__}: {failure}); "
                "give a tree of arrays or jax.ShapeDtypeStruct shaped like the parameters in `rest`, or call "
                "param_shaped_map(f, state, params, ...) with the parameters"
            ) from failure
        return _shape_map(f, state, _Template(template), rest, transform_non_params, is_leaf)

    def is_placeholder(x: Any) -> bool:
        return isinstance(x, placeholder_type)

    shadow_def = jax.tree.structure(shadow, is_leaf=is_placeholder)
    try:
        entries = shadow_def.flatten_up_to(state)
    except (ValueError, TypeError) as err:
        raise ValueError(
            "map_params: state does not have the structure this optimizer's init gives "
            f"(expected a tree with prefix {shadow_def}, got {jax.tree.structure(state)})"
        ) from err

    mapped = []
    for mark, value in zip(jax.tree.leaves(shadow, is_leaf=is_placeholder), entries, strict=True):
        if is_placeholder(mark):
            mapped.append(jax.tree.map(f, value, *rest, is_leaf=is_leaf))
        elif transform_non_params is not None:
            mapped.append(transform_non_params(value))
        else:
            mapped.append(value)
    return shadow_def.unflatten(mapped)


def param_shaped_subtree_map(f: Callable[[Any], Any], state: Any, params: Any) -> Any:
    """``state`` with every parameter-shaped subtree ``s`` (see :func:`param_shaped_map`) replaced by ``f(s)``.

    Where :func:`param_shaped_map` maps leaf by leaf, this hands ``f`` each whole subtree (a moment
    such as Adam's ``mu``), for example to store it in another layout (``optcompose.flat_state``).
    """
    template = _Template(params)
    matches = lambda node: template.match(node) is not None  # noqa: E731
    return jax.tree.map(lambda node: f(node) if matches(node) else node, state, is_leaf=matches)
