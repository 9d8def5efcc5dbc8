"""Listwise ranking losses over the last axis (a list of items); leading axes are batch axes."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from optcompose.losses import _checks

ArrayLike = Any


def _reduce(loss: jax.Array, where: jax.Array | None, reduce_fn: Callable[..., ArrayLike] | None) -> jax.Array:
    """Reduces per-list losses, counting only lists with a valid item.

    With no ``reduce_fn`` the per-list losses come back, invalid lists set to 0 (so summing them
    equals ``reduce_fn=jnp.sum``). With ``jnp.mean`` and no valid list at all the mean is 0, not
    NaN, unless a per-list loss itself is NaN (that NaN is kept visible).
    """
    if reduce_fn is None:
        return loss if where is None else jnp.where(where, loss, 0.0)
    reduced = reduce_fn(loss, where=where)
    if reduce_fn is jnp.mean:
        reduced = jnp.where(jnp.isnan(reduced) & ~jnp.any(jnp.isnan(loss)), 0.0, reduced)
    return reduced


def ranking_softmax_loss(
    logits: ArrayLike,
    labels: ArrayLike,
    *,
    where: ArrayLike | None = None,
    weights: ArrayLike | None = None,
    reduce_fn: Callable[..., ArrayLike] | None = jnp.mean,
) -> jax.Array:
    r"""Listwise softmax loss (ListNet with top-1 probabilities; Cao et al., ICML 2007).

    For item scores :math:`s` and relevance labels :math:`y` (times the optional weights),

    .. math:: \ell(s, y) = -\sum_i y_i \log \frac{e^{s_i}}{\sum_j e^{s_j}},

    the softmax cross entropy of the unnormalized labels. Items with ``where == False`` are removed
    from the list (their score is set to ``-inf`` and label to 0); their terms and gradients are 0.
    Lists with no valid item are ignored by the reduction.

    Args:
      logits: ``[..., list_size]`` item scores, floating.
      labels: ``[..., list_size]`` relevance labels (cast to the dtype of ``logits``).
      where: optional ``[..., list_size]`` boolean mask of valid items.
      weights: optional per-item weights multiplying the labels.
      reduce_fn: reduction over lists, called as ``reduce_fn(losses, where=list_mask)``
        (``jnp.mean``, ``jnp.sum``), or ``None`` for the per-list losses.

    Returns:
      A scalar, or ``[...]`` when ``reduce_fn`` is ``None``.
    """
    _checks.floating("logits", logits)
    logits = jnp.asarray(logits)
    _checks.broadcastable("logits", logits, "labels", labels)
    labels = jnp.asarray(labels).astype(logits.dtype)
    if where is not None:
        where = jnp.asarray(where)
        _checks.broadcastable("logits", logits, "where", where)
        labels = jnp.where(where, labels, 0.0)
        logits = jnp.where(where, logits, -jnp.inf)
    if weights is not None:
        labels = labels * weights
    log_probs = jax.nn.log_softmax(logits, axis=-1)
    if where is not None:
        log_probs = jnp.where(where, log_probs, 0.0)
    loss = -jnp.sum(labels * log_probs, axis=-1, where=where)
    list_valid = None if where is None else jnp.any(where, axis=-1)
    return _reduce(loss, list_valid, reduce_fn)
