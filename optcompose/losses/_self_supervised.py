"""Contrastive and metric-learning losses on embeddings."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from optcompose.losses import _checks

ArrayLike = Any


def ntxent(
    embeddings: ArrayLike,
    labels: ArrayLike,
    temperature: ArrayLike = 0.07,
) -> jax.Array:
    r"""Normalized temperature-scaled cross entropy (NT-Xent, the SimCLR loss).

    With :math:`s_{ij} = \cos(z_i, z_j) / \tau`, positives :math:`P` the pairs ``i != j`` with equal
    labels and :math:`N(i)` the items with a label different from ``i``'s,

    .. math::
        L = -\frac{1}{|P|} \sum_{(i, j) \in P}
            \log \frac{e^{s_{ij}}}{e^{s_{ij}} + \sum_{k \in N(i)} e^{s_{ik}}}

    (Chen et al., *A Simple Framework for Contrastive Learning of Visual Representations*, 2020;
    the pytorch-metric-learning ``NTXentLoss`` form, where each positive competes with the
    negatives only). Rows are shifted by their largest similarity before exponentiating, so small
    temperatures do not overflow. Norms use ``epsilon = finfo(dtype).eps`` on the squared norm. No
    positive pair at all gives NaN (0/0), as in Optax.

    Args:
      embeddings: ``[batch, dim]`` floating embeddings.
      labels: ``[batch]`` group ids; equal ids mark positive pairs.
      temperature: the softmax temperature :math:`\tau`.

    Returns:
      A scalar: the mean over positive pairs.

    Raises:
      TypeError: ``embeddings`` is not floating.
      ValueError: ``embeddings`` is not 2-D, ``labels`` not 1-D, or their leading sizes differ.
    """
    _checks.floating("embeddings", embeddings)
    embeddings = jnp.asarray(embeddings)
    labels = jnp.asarray(labels)
    _checks.rank("embeddings", embeddings, 2)
    _checks.rank("labels", labels, 1)
    if labels.shape[0] != embeddings.shape[0]:
        raise ValueError(
            "labels and embeddings must have the same leading dimension, got "
            f"{labels.shape[0]} for labels and {embeddings.shape[0]} for embeddings"
        )
    eps = jnp.finfo(embeddings.dtype).eps
    units = embeddings / jnp.sqrt(jnp.maximum(jnp.sum(jnp.square(embeddings), axis=-1, keepdims=True), eps))
    similarity = jnp.einsum("id,jd->ij", units, units, precision=jax.lax.Precision.HIGHEST) / temperature

    same = labels[:, None] == labels[None, :]
    positive = same & ~jnp.eye(labels.shape[0], dtype=bool)
    negative = ~same
    row_max = jnp.max(jnp.where(positive | negative, similarity, -jnp.inf), axis=1, keepdims=True)
    row_max = jax.lax.stop_gradient(jnp.where(jnp.isfinite(row_max), row_max, 0.0))
    shifted = similarity - row_max
    negatives_sum = jnp.sum(jnp.exp(jnp.where(negative, shifted, -jnp.inf)), axis=1, keepdims=True)
    positive_shifted = jnp.where(positive, shifted, 0.0)
    log_probs = positive_shifted - jnp.log(negatives_sum + jnp.exp(positive_shifted))
    return -jnp.sum(jnp.where(positive, log_probs, 0.0)) / jnp.sum(positive)


def triplet_margin_loss(
    anchors: ArrayLike,
    positives: ArrayLike,
    negatives: ArrayLike,
    axis: int = -1,
    norm_degree: ArrayLike = 2,
    margin: ArrayLike = 1.0,
    eps: ArrayLike = 1e-6,
) -> jax.Array:
    r"""Triplet margin loss (Balntas et al., BMVC 2016; Schroff et al., *FaceNet*, 2015).

    .. math::
        L = \max\big(d(a, p) - d(a, n) + m, 0\big), \qquad
        d(x, y) = \Big(\sum_k |x_k - y_k|^q + \epsilon\Big)^{1/q}

    with :math:`q` = ``norm_degree``. For even ``q`` (the default 2) this is Optax's number; Optax
    raises the signed differences to the power ``q`` (no absolute value), which for odd ``q`` is not
    a distance, while this uses the ``q``-norm. ``torch.nn.functional.triplet_margin_loss`` puts its
    ``eps`` inside the difference instead (``||x - y + eps||_q``): agreement to about ``eps``.

    Args:
      anchors: ``[batch, dim]`` anchor embeddings, floating.
      positives: embeddings meant to be close to the anchors, same shape.
      negatives: embeddings meant to be far from the anchors, same shape.
      axis: the embedding axis.
      norm_degree: the ``q`` of the ``q``-norm.
      margin: the required gap between the two distances.
      eps: added inside the root (keeps the gradient finite when two embeddings coincide).

    Returns:
      The loss of every triplet, ``[batch]``.
    """
    _checks.floating("anchors", anchors)
    _checks.floating("positives", positives)
    _checks.floating("negatives", negatives)
    _checks.broadcastable("anchors", anchors, "positives", positives)
    _checks.broadcastable("anchors", anchors, "negatives", negatives)
    anchors = jnp.asarray(anchors)

    def distance(others):
        powered = jnp.power(jnp.abs(anchors - jnp.asarray(others)), norm_degree)
        return jnp.power(jnp.sum(powered, axis=axis) + eps, 1.0 / norm_degree)

    return jnp.maximum(distance(positives) - distance(negatives) + margin, 0.0)
