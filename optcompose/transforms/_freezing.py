"""``selective_transform``: optimise only the leaves a mask leaves unfrozen."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from optcompose._base import GradientTransformation, _check_transform, set_to_zero
from optcompose.transforms._partition import Partition, partition


def selective_transform(optimizer: GradientTransformation, *, freeze_mask: Any) -> Partition:
    """``optimizer`` on the leaves where ``freeze_mask`` is False; zero updates (frozen) where True.

    ``partition({'train': optimizer, 'freeze': set_to_zero()}, labels)``, so ``optimizer`` keeps
    state only for the trainable leaves (unlike ``chain(optimizer, freeze(mask))``, which keeps
    moments for every leaf).

    Args:
      optimizer: the transform for the trainable leaves.
      freeze_mask: keyword only, static: a bool (freeze all or nothing) or a pytree of bools, a
        prefix of the params' structure.

    Returns:
      A ``partition`` with labels ``'train'`` and ``'freeze'``.

    Raises ``TypeError`` at construction when a mask leaf is not a bool, and ``ValueError`` at
    ``init`` when the mask is not a prefix of the params.
    """
    optimizer = _check_transform("optimizer", optimizer)
    for leaf in jax.tree.leaves(freeze_mask):
        is_bool_array = getattr(leaf, "dtype", None) == jnp.bool_ and getattr(leaf, "shape", None) == ()
        if not isinstance(leaf, bool) and not is_bool_array:
            raise TypeError(f"freeze_mask leaves must be bools, got {leaf!r}")
    labels = jax.tree.map(lambda frozen: "freeze" if bool(frozen) else "train", freeze_mask)

    def label_fn(params):
        del params
        return labels

    return partition({"train": optimizer, "freeze": set_to_zero()}, param_labels=label_fn)
