"""Label smoothing."""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp

from optcompose.losses import _checks

ArrayLike = Any


def smooth_labels(
    labels: ArrayLike,
    alpha: ArrayLike,
    *,
    axis: int | tuple[int, ...] | None = -1,
    where: ArrayLike | None = None,
) -> jax.Array:
    r"""Label smoothing: mixes the labels with the uniform distribution over the classes.

    .. math:: \tilde y = (1 - \alpha)\, y + \alpha / K

    with :math:`K` the number of classes along ``axis`` (the product of their sizes for a tuple), or
    the number of ``where``-valid classes of each row (Szegedy et al., *Rethinking the Inception
    Architecture*, CVPR 2016; Mueller et al., *When does label smoothing help?*, NeurIPS 2019).
    ``softmax_cross_entropy(x, smooth_labels(one_hot(y), a))`` equals
    ``torch.nn.functional.cross_entropy(x, y, label_smoothing=a)``. Masked entries are not zeroed.

    Args:
      labels: one-hot (or probability) labels, floating.
      alpha: smoothing factor in ``[0, 1]``.
      axis: the class axis or axes (``None``: all).
      where: boolean mask of the valid classes.

    Returns:
      Smoothed labels, with the shape of ``labels``.
    """
    _checks.floating("labels", labels)
    labels = jnp.asarray(labels)
    if where is None:
        if axis is None:
            num_classes = labels.size
        else:
            axes = _checks.normalize_axes("axis", axis, labels.ndim)
            num_classes = math.prod(labels.shape[a] for a in axes)
    else:
        num_classes = jnp.sum(jnp.asarray(where), axis=axis, keepdims=True)
    return (1.0 - alpha) * labels + alpha / num_classes
