"""Fenchel-Young losses, built from a regularized "max" function (Blondel, Martins & Niculae 2020)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax.numpy as jnp

ArrayLike = Any


def make_fenchel_young_loss(max_fun: Callable[..., ArrayLike]):
    r"""Builds the Fenchel-Young loss of a regularized max function.

    For a convex regularizer :math:`\Omega` with conjugate
    :math:`\Omega^*(\theta) = \max_{p} \langle \theta, p\rangle - \Omega(p)` (the ``max_fun``), the
    Fenchel-Young loss is

    .. math:: L(\theta; y) = \Omega^*(\theta) - \langle \theta, y \rangle \;(+\, \Omega(y)),

    returned here without the constant :math:`\Omega(y)` (as in Optax), so the returned loss is the
    true one up to a term that does not depend on the scores. ``max_fun = logsumexp`` gives the
    softmax cross entropy; its gradient in :math:`\theta` is :math:`\nabla\Omega^*(\theta) - y`
    (Blondel, Martins & Niculae, *Learning with Fenchel-Young Losses*, JMLR 2020).

    Args:
      max_fun: ``max_fun(scores_1d, *args, **kwargs) -> scalar``, applied to the last axis.

    Returns:
      ``fenchel_young_loss(scores, targets, *args, **kwargs)``: scores and targets ``[..., n]``
      (broadcastable), result ``[...]``. Extra arguments go to ``max_fun`` unchanged for every row.
      Unlike jaxopt, leading dimensions are batch dimensions (not flattened into one vector).

    Raises:
      TypeError: ``max_fun`` is not callable.
    """
    if not callable(max_fun):
        raise TypeError(f"max_fun must be callable, got {max_fun!r}")

    def fenchel_young_loss(scores, targets, *args, **kwargs):
        scores = jnp.asarray(scores)
        targets = jnp.asarray(targets)
        row_max = jnp.vectorize(lambda row: max_fun(row, *args, **kwargs), signature="(n)->()")
        return row_max(scores) - jnp.sum(targets * scores, axis=-1)

    return fenchel_young_loss
