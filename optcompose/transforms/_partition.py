"""Apply a transform to part of the parameters: ``masked``, ``partition``, ``freeze``."""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping
from typing import Any, NamedTuple

import jax

from optcompose._base import (
    GradientTransformation,
    GradientTransformationExtraArgs,
    OptState,
    _check_transform,
    call_update,
    set_to_zero,
)
from optcompose._tree import check_same_structure, path_str


class MaskedNode(NamedTuple):
    """Stands in for a leaf (or subtree) that a mask excludes: a pytree node with no leaves."""


class MaskedState(NamedTuple):
    inner_state: OptState


class PartitionState(NamedTuple):
    inner_states: dict[Hashable, MaskedState]


def resolve_mask(spec: Any, params: Any) -> Any:
    """A mask or label tree given as is, or as a function of the params."""
    return spec(params) if callable(spec) else spec


def _check_bool_mask(mask: Any) -> None:
    for path, leaf in jax.tree_util.tree_flatten_with_path(mask)[0]:
        if not isinstance(leaf, bool) and not (hasattr(leaf, "dtype") and leaf.dtype == bool and leaf.shape == ()):
            raise TypeError(f"mask leaves must be Python bools (a mask is static), got {leaf!r} at {path_str(path)}")


def _select(mask: Any, tree: Any) -> Any:
    """The subtrees of ``tree`` where ``mask`` (a prefix of it) is True; MaskedNode elsewhere."""
    return jax.tree.map(lambda m, sub: sub if bool(m) else MaskedNode(), mask, tree)


def _merge(mask: Any, selected: Any, original: Any) -> Any:
    return jax.tree.map(lambda m, new, old: new if bool(m) else old, mask, selected, original)


def _prefix_error(mask: Any, tree: Any, what: str) -> ValueError:
    mask_paths = [path_str(p) for p, _ in jax.tree_util.tree_flatten_with_path(mask)[0]]
    return ValueError(
        f"{what} must be a pytree prefix of the parameters (same containers, bools at the leaves); "
        f"its leaves are at {mask_paths[:8]}{'...' if len(mask_paths) > 8 else ''}, "
        f"the parameters' structure is {jax.tree.structure(tree)}"
    )


class Masked(GradientTransformationExtraArgs):
    """``masked(inner, mask)``: ``self.inner`` applied where ``self.mask`` is True."""

    def __new__(cls, inner: GradientTransformation, mask: Any | Callable[[Any], Any]) -> Masked:
        inner = _check_transform("inner", inner)

        def resolved_mask(tree):
            mask_tree = resolve_mask(mask, tree)
            _check_bool_mask(mask_tree)
            return mask_tree

        def init(params):
            mask_tree = resolved_mask(params)
            try:
                selected = _select(mask_tree, params)
            except ValueError as err:
                raise _prefix_error(mask_tree, params, "mask") from err
            return MaskedState(inner.init(selected))

        def update(updates, state, params=None, **extra_args):
            if params is not None:
                check_same_structure((updates, params), ("updates", "params"))
            mask_tree = resolved_mask(updates if params is None else params)
            try:
                selected_updates = _select(mask_tree, updates)
                selected_params = None if params is None else _select(mask_tree, params)
            except ValueError as err:
                raise _prefix_error(mask_tree, updates, "mask") from err
            new_updates, inner_state = call_update(
                inner, selected_updates, state.inner_state, selected_params, extra_args
            )
            return _merge(mask_tree, new_updates, updates), MaskedState(inner_state)

        self = super().__new__(cls, init, update)
        self.inner, self.mask = inner, mask
        return self

    def __repr__(self) -> str:
        return f"masked({self.inner!r}, ...)"


def masked(inner: GradientTransformation, mask: Any | Callable[[Any], Any]) -> Masked:
    """Applies ``inner`` only where ``mask`` is True; other updates pass through unchanged.

    ``mask`` is a pytree of bools with the parameters' structure (or a prefix of it), or a
    function of the parameters returning one. ``inner`` sees (and keeps state for) only the
    selected leaves; the others are replaced by ``MaskedNode()`` for it.
    """
    return Masked(inner, mask)


class Partition(GradientTransformationExtraArgs):
    """``partition(transforms, param_labels)``: ``self.transforms[label]`` on the leaves labelled so."""

    def __new__(
        cls, transforms: Mapping[Hashable, GradientTransformation], param_labels: Any | Callable[[Any], Any]
    ) -> Partition:
        if not isinstance(transforms, Mapping) or not transforms:
            raise TypeError("transforms must be a non-empty dict mapping labels to GradientTransformations")
        transforms = dict(transforms)

        def labels_of(tree):
            labels = resolve_mask(param_labels, tree)
            for path, label in jax.tree_util.tree_flatten_with_path(labels)[0]:
                if label not in transforms:
                    raise ValueError(
                        f"param_labels gives label {label!r} at {path_str(path)}, which has no transform; "
                        f"known labels: {list(transforms)}"
                    )
            return labels

        def parts(labels):
            return {
                label: Masked(tx, jax.tree.map(lambda leaf, label=label: leaf == label, labels))
                for label, tx in transforms.items()
            }

        def init(params):
            return PartitionState({label: tx.init(params) for label, tx in parts(labels_of(params)).items()})

        def update(updates, state, params=None, **extra_args):
            labels = labels_of(updates if params is None else params)
            inner_states = {}
            for label, tx in parts(labels).items():
                updates, inner_states[label] = tx.update(updates, state.inner_states[label], params, **extra_args)
            return updates, PartitionState(inner_states)

        self = super().__new__(cls, init, update)
        self.transforms, self.param_labels = transforms, param_labels
        return self


def partition(
    transforms: Mapping[Hashable, GradientTransformation], param_labels: Any | Callable[[Any], Any]
) -> Partition:
    """Applies a different transform to each group of parameters, chosen by a label per leaf.

    ``param_labels`` is a pytree with the parameters' structure (or a prefix) whose leaves are
    keys of ``transforms``, or a function of the parameters returning one. Typical use: a
    lower learning rate for a pretrained backbone than for a new head.
    """
    return Partition(transforms, param_labels)


def freeze(mask: Any | Callable[[Any], Any]) -> Masked:
    """Zeroes the updates where ``mask`` is True, holding those parameters constant."""
    return masked(set_to_zero(), mask)
