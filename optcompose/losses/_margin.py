"""Margin-based classification losses: hinge, perceptron and sparsemax, binary and multiclass.

Binary losses take a real score and a target in ``{-1, +1}`` (hinge, perceptron) or ``{0, 1}``
(sparsemax). Multiclass losses take scores ``[..., num_classes]`` and integer labels ``[...]``.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from optcompose.losses import _checks
from optcompose.projections._projections import simplex_last_axis

ArrayLike = Any


def hinge_loss(predictor_outputs: ArrayLike, targets: ArrayLike) -> jax.Array:
    r"""Binary hinge loss, :math:`\ell(f, t) = \max(0, 1 - t f)` for targets :math:`t \in \{-1, 1\}`.

    The loss of support vector machines (Cortes & Vapnik 1995). At the kink ``t f = 1`` the gradient
    is half the slope (``jnp.maximum`` splits ties).

    Args:
      predictor_outputs: real scores ``f``.
      targets: ``-1`` or ``+1``, broadcastable against ``predictor_outputs``.

    Returns:
      The loss of every element (broadcast shape).
    """
    _checks.broadcastable("predictor_outputs", predictor_outputs, "targets", targets)
    return jnp.maximum(0, 1 - jnp.asarray(predictor_outputs) * jnp.asarray(targets))


def perceptron_loss(predictor_outputs: ArrayLike, targets: ArrayLike) -> jax.Array:
    r"""Binary perceptron loss, :math:`\ell(f, t) = \max(0, -t f)` for :math:`t \in \{-1, 1\}`.

    Zero once the sign is right, whatever the margin (Rosenblatt 1958).

    Args:
      predictor_outputs: real scores ``f``.
      targets: ``-1`` or ``+1``, with exactly the shape of ``predictor_outputs``.

    Returns:
      The loss of every element.

    Raises:
      ValueError: the two shapes differ.
    """
    _checks.same_shape("predictor_outputs", predictor_outputs, "targets", targets)
    return jnp.maximum(0, -jnp.asarray(predictor_outputs) * jnp.asarray(targets))


def sparsemax_loss(logits: ArrayLike, labels: ArrayLike) -> jax.Array:
    r"""Binary sparsemax loss: the Fenchel-Young loss of the sparse sigmoid.

    With :math:`z = x` for label 0 and :math:`z = -x` for label 1,

    .. math::
        \ell(x, y) = \mathrm{sparseplus}(z) =
        \begin{cases} 0 & z \le -1 \\ (z + 1)^2 / 4 & -1 < z < 1 \\ z & z \ge 1 \end{cases}

    which is zero exactly when ``jax.nn.sparse_sigmoid(x) == y`` (Blondel, Martins & Niculae,
    *Learning with Fenchel-Young Losses*, JMLR 2020, section 4.4).

    Args:
      logits: real scores.
      labels: ``0`` or ``1`` (any nonzero value counts as 1), broadcastable against ``logits``.

    Returns:
      The loss of every element (broadcast shape).
    """
    _checks.broadcastable("logits", logits, "labels", labels)
    logits = jnp.asarray(logits)
    return jax.nn.sparse_plus(jnp.where(jnp.asarray(labels), -logits, logits))


def _one_hot_like(scores: jax.Array, labels: ArrayLike, name: str) -> jax.Array:
    _checks.at_least_rank("scores", scores, 1)
    labels = jnp.asarray(labels)
    _checks.broadcast_shapes(name, labels.shape, "scores without the class axis", scores.shape[:-1])
    # An index outside [0, num_classes) selects no class (an all-zero row), like jax.nn.one_hot.
    return jax.nn.one_hot(labels, scores.shape[-1])


def multiclass_hinge_loss(scores: ArrayLike, labels: ArrayLike) -> jax.Array:
    r"""Multiclass hinge loss of Crammer & Singer (JMLR 2001).

    .. math::
        \ell(s, y) = \max_k \big(s_k + 1 - [k = y]\big) - s_y
                   = \max\big(0, \max_{k \ne y} (1 + s_k - s_y)\big)

    Zero when the true class beats every other by a margin of at least 1.

    Args:
      scores: ``[..., num_classes]`` real scores.
      labels: integer class indices, shape ``[...]``.

    Returns:
      The loss of every example, shape ``[...]``.
    """
    scores = jnp.asarray(scores)
    one_hot = _one_hot_like(scores, labels, "labels")
    return jnp.max(scores + 1.0 - one_hot, axis=-1) - jnp.sum(scores * one_hot, axis=-1)


def multiclass_perceptron_loss(scores: ArrayLike, labels: ArrayLike) -> jax.Array:
    r"""Multiclass perceptron loss, :math:`\ell(s, y) = \max_k s_k - s_y` (Collins, EMNLP 2002).

    Zero exactly when the true class has the (possibly tied) highest score.

    Args:
      scores: ``[..., num_classes]`` real scores.
      labels: integer class indices, shape ``[...]``.

    Returns:
      The loss of every example, shape ``[...]``.
    """
    scores = jnp.asarray(scores)
    one_hot = _one_hot_like(scores, labels, "labels")
    return jnp.max(scores, axis=-1) - jnp.sum(scores * one_hot, axis=-1)


def multiclass_sparsemax_loss(scores: ArrayLike, labels: ArrayLike) -> jax.Array:
    r"""Multiclass sparsemax loss (Martins & Astudillo, *From Softmax to Sparsemax*, ICML 2016).

    The Fenchel-Young loss of the Gini negentropy :math:`\Omega(p) = \tfrac12(\|p\|^2 - 1)`: with
    :math:`p^\star = \mathrm{sparsemax}(s)` (the projection of ``s`` onto the simplex),

    .. math::
        \ell(s, y) = \langle p^\star, s - s_y \rangle + \tfrac12 \big(1 - \|p^\star\|^2\big),

    which is non-negative, zero iff :math:`p^\star = e_y`, and has gradient :math:`p^\star - e_y`.
    Classes outside the support do not enter the inner product, so ``-inf`` scores are allowed.

    Args:
      scores: ``[..., num_classes]`` real scores (Optax requires exactly ``[batch, num_classes]``;
        any number of leading dimensions works here).
      labels: integer class indices with shape ``scores.shape[:-1]``.

    Returns:
      The loss of every example, shape ``[...]``.

    Raises:
      ValueError: ``labels`` does not have the shape ``scores.shape[:-1]``.
    """
    scores = jnp.asarray(scores)
    labels = jnp.asarray(labels)
    _checks.at_least_rank("scores", scores, 1)
    if labels.shape != scores.shape[:-1]:
        raise ValueError(
            f"labels must have the shape of scores without the class axis, {scores.shape[:-1]}, got {labels.shape}"
        )
    return _sparsemax_fenchel_young(scores, labels)


def _class_index(labels: jax.Array, num_classes: int) -> jax.Array:
    """Integer indices, negative ones counted from the end and out-of-range ones clamped (as ``x[i]``)."""
    index = labels.astype(jnp.int32)
    return jnp.clip(jnp.where(index < 0, index + num_classes, index), 0, num_classes - 1)


@jax.custom_jvp
def _sparsemax_fenchel_young(scores: jax.Array, labels: jax.Array) -> jax.Array:
    probs = simplex_last_axis(scores)
    true_score = jnp.take_along_axis(scores, _class_index(labels, scores.shape[-1])[..., None], axis=-1)
    gaps = jnp.where(probs > 0, scores - true_score, 0.0)
    return jnp.sum(probs * gaps, axis=-1) + 0.5 * (1.0 - jnp.sum(probs * probs, axis=-1))


@_sparsemax_fenchel_young.defjvp
def _sparsemax_fenchel_young_jvp(primals, tangents):
    # Danskin: the derivative is sparsemax(s) - e_y. Written out, it avoids the cancellation
    # w + J^T(g) - J^T(g) that plain autodiff accumulates for scores of size 1e4.
    scores, labels = primals
    scores_dot = tangents[0]
    one_hot = jax.nn.one_hot(_class_index(labels, scores.shape[-1]), scores.shape[-1], dtype=scores.dtype)
    residual = simplex_last_axis(scores) - one_hot
    return _sparsemax_fenchel_young(scores, labels), jnp.sum(residual * scores_dot, axis=-1)
