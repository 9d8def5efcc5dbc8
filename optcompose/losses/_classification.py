"""Probabilistic classification losses: sigmoid and softmax cross entropies and their variants.

Every loss here works from logits in log space (``log_sigmoid``/``log_softmax``/``logsumexp``), never
from ``log(sigmoid(x))`` or ``log(softmax(x))``, so logits of size 1e4 give finite values and
finite gradients.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import jax.scipy.special

from optcompose.losses import _checks

ArrayLike = Any


def _expand_where(where: ArrayLike, ndim: int, axis: Any) -> jax.Array:
    """Gives a per-example mask (one dimension per batch axis) a size-1 dimension at each class axis."""
    where = jnp.asarray(where)
    if where.ndim == ndim:
        return where
    if axis is None:
        raise ValueError(f"where must have the same rank as logits ({ndim}) when axis=None, got shape {where.shape}")
    try:
        return jnp.expand_dims(where, axis)
    except ValueError as err:
        raise ValueError(
            f"where must have the shape of logits or of logits without the class axis/axes {axis!r}, "
            f"got shape {where.shape} for logits of rank {ndim}"
        ) from err


def sigmoid_binary_cross_entropy(
    logits,
    labels,
):
    r"""Element-wise binary cross entropy between ``sigmoid(logits)`` and ``labels``.

    .. math::
        \ell(x, y) = -y \log \sigma(x) - (1 - y) \log(1 - \sigma(x))
                   = y\, \mathrm{softplus}(-x) + (1 - y)\, \mathrm{softplus}(x),

    the second form being the one evaluated: ``softplus`` never overflows and each term keeps its
    relative precision (no ``softplus(x) - x`` cancellation), so ``|x| = 1e4`` gives ``0`` or ``|x|``
    exactly. The gradient is ``sigmoid(x) - y``, also at ``x = 0``. Each element is an independent
    binary problem (multi-label classification works element-wise too).
    Goodfellow et al., *Deep Learning* (2016), section 3.13.

    Args:
      logits: unnormalized log-odds, any floating dtype and shape.
      labels: targets in ``[0, 1]`` (hard ``{0, 1}`` or soft), broadcastable against ``logits``; cast
        to the dtype of ``logits``.

    Returns:
      The loss of every element, with the broadcast shape of ``logits`` and ``labels``.

    Raises:
      TypeError: ``logits`` is not floating.
      ValueError: the shapes do not broadcast.
    """
    _checks.floating("logits", logits)
    logits = jnp.asarray(logits)
    _checks.broadcastable("logits", logits, "labels", labels)
    labels = jnp.asarray(labels).astype(logits.dtype)
    return labels * jax.nn.softplus(-logits) + (1.0 - labels) * jax.nn.softplus(logits)


def sigmoid_focal_loss(
    logits: ArrayLike,
    labels: ArrayLike,
    *,
    alpha: ArrayLike | None = None,
    gamma: ArrayLike = 2.0,
) -> jax.Array:
    r"""Focal loss: the sigmoid cross entropy scaled down on examples that are already right.

    With :math:`p = \sigma(x)` and :math:`1 - p_t = (1 - y) p + y (1 - p)` the probability given to
    the wrong outcome,

    .. math::
        FL(x, y) = \alpha_t (1 - p_t)^\gamma \, \mathrm{BCE}(x, y), \qquad
        \alpha_t = \alpha y + (1 - \alpha)(1 - y)

    (Lin et al., *Focal Loss for Dense Object Detection*, 2017). The modulating factor is formed as
    ``exp(gamma * log(1 - p_t))``, with ``log(1 - p_t)`` a weighted log-sum-exp of
    ``log_sigmoid(±x)``, so it stays accurate (no ``1 - p`` cancellation) for large logits and any
    ``gamma > 0``; soft labels in ``[0, 1]`` are allowed.

    Args:
      logits: unnormalized log-odds, floating.
      labels: targets in ``[0, 1]``, broadcastable against ``logits``.
      alpha: weight of the positive class in ``[0, 1]``; ``None`` (default) weighs both classes 1.
      gamma: focusing exponent; ``0`` gives the plain binary cross entropy.

    Returns:
      The loss of every element, with the broadcast shape of ``logits`` and ``labels``.
    """
    _checks.floating("logits", logits)
    logits = jnp.asarray(logits)
    shape = _checks.broadcastable("logits", logits, "labels", labels)
    labels = jnp.asarray(labels).astype(logits.dtype)
    cross_entropy = sigmoid_binary_cross_entropy(logits, labels)
    logits_b = jnp.broadcast_to(logits, shape)
    labels_b = jnp.broadcast_to(labels, shape)
    log_wrong = jax.scipy.special.logsumexp(
        jnp.stack([jax.nn.log_sigmoid(logits_b), jax.nn.log_sigmoid(-logits_b)]),
        axis=0,
        b=jnp.stack([1.0 - labels_b, labels_b]),
    )
    loss = jnp.exp(gamma * log_wrong) * cross_entropy
    if alpha is None:
        return loss
    return (alpha * labels + (1.0 - alpha) * (1.0 - labels)) * loss


def softmax_cross_entropy(
    logits: ArrayLike,
    labels: ArrayLike,
    axis: int | tuple[int, ...] | None = -1,
    where: ArrayLike | None = None,
) -> jax.Array:
    r"""Cross entropy between target distributions ``labels`` and ``softmax(logits)``.

    .. math::
        \ell(x, y) = -\sum_k y_k \log \mathrm{softmax}(x)_k
                   = \sum_k y_k \Big(\log \sum_j e^{x_j} - x_k\Big)

    evaluated with ``log_softmax`` (max-shifted), over ``axis`` (an int, a tuple of axes or ``None``
    for all). With one-hot labels this is the multinomial logistic loss. ``where`` drops entries:
    they take no part in the normalizer nor in the sum, and an all-masked row gives ``0``. A zero
    label against a ``-inf`` logit gives NaN (``0 * -inf``), as in Optax; use
    :func:`safe_softmax_cross_entropy` for that case.

    Args:
      logits: unnormalized log probabilities, ``[..., num_classes]``, floating.
      labels: target probabilities broadcastable against ``logits`` (e.g. one-hot).
      axis: the class axis or axes.
      where: boolean mask with the shape of ``logits``, or of the batch shape only (it then gains a
        size-1 dimension at ``axis``).

    Returns:
      The loss of every example: the broadcast shape with ``axis`` removed.
    """
    _checks.floating("logits", logits)
    logits = jnp.asarray(logits)
    labels = jnp.asarray(labels)
    _checks.broadcastable("logits", logits, "labels", labels)
    if where is not None:
        where = _expand_where(where, logits.ndim, axis)
        _checks.broadcastable("logits", logits, "where", where)
    log_probs = jax.nn.log_softmax(logits, axis=axis, where=where)
    if where is not None:
        log_probs = jnp.where(where, log_probs, 0.0)
    return -jnp.sum(labels * log_probs, axis=axis, where=where)


def softmax_cross_entropy_with_integer_labels(
    logits: ArrayLike,
    labels: ArrayLike,
    axis: int | tuple[int, ...] = -1,
    where: ArrayLike | None = None,
) -> jax.Array:
    r"""Softmax cross entropy against integer class indices.

    .. math::
        \ell(x, y) = \log \sum_j e^{x_j} - x_y

    computed as ``logsumexp`` minus the gathered logit (the normalizer is never subtracted from the
    other classes), the same value as :func:`softmax_cross_entropy` with ``one_hot(labels)``. With a
    tuple ``axis`` the class axes are flattened in order and ``labels`` index the flattened slice
    (``jnp.ravel_multi_index``). ``where`` excludes classes from the normalizer; a fully masked
    row gives ``0``. An index outside ``[0, num_classes)`` gives NaN (JAX's gather fill value).

    Args:
      logits: unnormalized log probabilities, ``[..., num_classes]``, floating.
      labels: integer class indices with the shape of ``logits`` minus ``axis``.
      axis: the class axis (int) or axes (tuple of ints).
      where: boolean mask with the shape of ``logits`` or of ``labels``.

    Returns:
      The loss of every example, with the shape of ``labels``.

    Raises:
      TypeError: ``logits`` is not floating or ``labels`` is not integer.
      ValueError: ``axis`` is not an int or a tuple of ints, or is out of range; the shapes of
        ``labels`` or ``where`` do not fit ``logits``.
    """
    _checks.floating("logits", logits)
    _checks.integer("labels", labels)
    logits = jnp.asarray(logits)
    labels = jnp.asarray(labels)
    if where is not None:
        where = _expand_where(where, logits.ndim, axis)
        _checks.broadcastable("logits", logits, "where", where)
    if isinstance(axis, tuple):
        class_axes = _checks.normalize_axes("axis", axis, logits.ndim)
        batch_axes = tuple(a for a in range(logits.ndim) if a not in class_axes)
        batch_shape = tuple(logits.shape[a] for a in batch_axes)
        order = batch_axes + class_axes
        if where is not None:
            where = jnp.transpose(jnp.broadcast_to(where, logits.shape), order).reshape(batch_shape + (-1,))
        logits = jnp.transpose(logits, order).reshape(batch_shape + (-1,))
        axis = len(batch_axes)
    elif isinstance(axis, int) and not isinstance(axis, bool):
        axis = _checks.normalize_axis("axis", axis, logits.ndim)
    else:
        raise ValueError(f"axis must be an int or a tuple of ints, got {axis!r} of type {type(axis).__name__}")
    expected = logits.shape[:axis] + logits.shape[axis + 1 :]
    if labels.ndim != len(expected):
        raise ValueError(f"labels must have the shape of logits without the class axis, {expected}, got {labels.shape}")
    _checks.broadcast_shapes("labels", labels.shape, "logits without the class axis", expected)
    picked = jnp.take_along_axis(logits, jnp.expand_dims(labels, axis), axis=axis)
    log_normalizer = jax.nn.logsumexp(logits, axis=axis, where=where)
    loss = log_normalizer - jnp.squeeze(picked, axis)
    if where is not None:
        loss = jnp.where(jnp.any(where, axis=axis), loss, 0.0)
    return loss


def safe_softmax_cross_entropy(
    logits: ArrayLike,
    labels: ArrayLike,
) -> jax.Array:
    r"""Softmax cross entropy over the last axis with the convention ``0 * log 0 = 0``.

    .. math::
        \ell(x, y) = -\sum_{k : y_k \neq 0} y_k \log \mathrm{softmax}(x)_k

    The same number as :func:`softmax_cross_entropy` (``axis=-1``) except where a class has a zero
    label and a ``-inf`` logit: that term is 0 here (NaN there), and so is its gradient. This lets
    ``-inf`` logits mark impossible classes.

    Args:
      logits: unnormalized log probabilities, ``[..., num_classes]``, floating; ``-inf`` allowed.
      labels: target probabilities broadcastable against ``logits``.

    Returns:
      The loss of every example, with shape ``[...]``.
    """
    _checks.floating("logits", logits)
    logits = jnp.asarray(logits)
    labels = jnp.asarray(labels)
    _checks.broadcastable("logits", logits, "labels", labels)
    nonzero = labels != 0
    log_probs = jnp.where(nonzero, jax.nn.log_softmax(logits, axis=-1), 0.0)
    return -jnp.sum(jnp.where(nonzero, labels * log_probs, 0.0), axis=-1)


def poly_loss_cross_entropy(
    logits: ArrayLike,
    labels: ArrayLike,
    *,
    epsilon: ArrayLike = 2.0,
    axis: int | tuple[int, ...] | None = -1,
    where: ArrayLike | None = None,
) -> jax.Array:
    r"""Poly-1 loss: softmax cross entropy plus ``epsilon`` times the first polynomial term.

    Expanding :math:`-\log p_t = \sum_{j \ge 1} (1 - p_t)^j / j`, Poly-1 perturbs the first
    coefficient (Leng et al., *PolyLoss*, ICLR 2022):

    .. math::
        L = \mathrm{CE}(x, y) + \epsilon \sum_k y_k (1 - \mathrm{softmax}(x)_k),

    which for one-hot labels is ``CE + epsilon * (1 - p_t)``. ``epsilon = 0`` is the cross entropy;
    the paper suggests 2 for ImageNet classification and -1 for detection.

    Args:
      logits: unnormalized log probabilities, ``[..., num_classes]``, floating.
      labels: target probabilities, floating, broadcastable against ``logits``.
      epsilon: coefficient of the ``(1 - p_t)`` term.
      axis: class axis or axes.
      where: boolean mask with the shape of ``logits`` or of the batch shape; masked classes are
        left out of the softmax and of both sums.

    Returns:
      The loss of every example: the broadcast shape with ``axis`` removed.
    """
    _checks.floating("logits", logits)
    _checks.floating("labels", labels)
    logits = jnp.asarray(logits)
    labels = jnp.asarray(labels)
    _checks.broadcastable("logits", logits, "labels", labels)
    if where is not None:
        where = _expand_where(where, logits.ndim, axis)
        _checks.broadcastable("logits", logits, "where", where)
    probs = jax.nn.softmax(logits, axis=axis, where=where)
    first_term = jnp.sum(labels * (1.0 - probs), axis=axis, where=where)
    return softmax_cross_entropy(logits, labels, axis=axis, where=where) + epsilon * first_term
