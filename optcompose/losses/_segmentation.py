"""Overlap losses for segmentation: soft Dice / Tversky, generalized Dice, binary Dice."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from optcompose.losses import _checks

ArrayLike = Any

_REDUCTIONS = ("mean", "sum", "none")


def _check_probabilities(predictions: jax.Array) -> None:
    """With probabilities given directly, each pixel's class probabilities must sum to 1.

    Only checked on concrete values (eagerly): under ``jax.jit`` the values are not known and the
    check is skipped (Optax raises a tracer error there instead).
    """
    if isinstance(predictions, jax.core.Tracer):
        return
    sums = np.asarray(jnp.sum(predictions, axis=-1), dtype=np.float64)
    if sums.size and not np.allclose(sums, 1.0, rtol=1e-5):
        raise ValueError(
            "predictions must be probability distributions over the last axis (summing to 1) when "
            f"apply_softmax=False; their sums range over [{sums.min():.6f}, {sums.max():.6f}]"
        )


def dice_loss(
    predictions: ArrayLike,
    targets: ArrayLike,
    *,
    class_weights: ArrayLike | None = None,
    smooth: ArrayLike = 1.0,
    alpha: ArrayLike = 0.5,
    beta: ArrayLike = 0.5,
    apply_softmax: bool = True,
    reduction: str = "mean",
    ignore_background: bool = False,
    axis: ArrayLike | None = None,
) -> jax.Array:
    r"""Soft Dice loss per class (Tversky loss for ``alpha != beta``), reduced over classes.

    For class :math:`c`, with :math:`I_c = \sum_i p_{ic} t_{ic}`, :math:`P_c = \sum_i p_{ic}`,
    :math:`T_c = \sum_i t_{ic}` summed over ``axis``,

    .. math::
        \ell_c = 1 - \frac{I_c + s}{I_c + \alpha (P_c - I_c) + \beta (T_c - I_c) + s}

    (Milletari et al., *V-Net*, 2016; Salehi et al., *Tversky loss*, 2017). ``alpha = beta = 1/2``
    is the Dice coefficient :math:`2I/(P + T)`; ``alpha`` weighs false positives, ``beta`` false
    negatives. ``smooth`` keeps empty classes finite (loss 0 when both are empty).

    Args:
      predictions: logits ``[batch, ..., num_classes]`` (softmax over classes, or a sigmoid when
        there is one class), or probabilities with ``apply_softmax=False``. ``[batch, ...]`` with
        targets ``[batch, ..., 1]`` gains the class axis.
      targets: one-hot targets with the shape of ``predictions`` (or without the trailing 1).
      class_weights: optional ``[num_classes]`` weights multiplying the per-class losses.
      smooth: additive smoothing in numerator and denominator.
      alpha: false-positive weight.
      beta: false-negative weight.
      apply_softmax: whether ``predictions`` are logits.
      reduction: ``"mean"`` or ``"sum"`` over classes, or ``"none"``.
      ignore_background: drop class 0 (when there is more than one class).
      axis: axes summed over; default all but the first (batch) and last (class).

    Returns:
      ``[batch]`` (with ``"mean"``/``"sum"``) or ``[batch, num_classes]`` (``"none"``).

    Raises:
      ValueError: mismatching shapes, an unknown ``reduction``, ``class_weights`` not of rank 1, or
        (eagerly, with ``apply_softmax=False`` and more than one class) probabilities that do not
        sum to 1. Optax also raises that last error for a single class, where the sum is the
        probability itself; this does not.
    """
    if reduction not in _REDUCTIONS:
        raise ValueError(f"reduction must be one of {_REDUCTIONS}, got {reduction!r}")
    predictions = jnp.asarray(predictions)
    targets = jnp.asarray(targets)
    if predictions.ndim == targets.ndim - 1:
        predictions = predictions[..., None]
    if targets.ndim == predictions.ndim - 1:
        targets = targets[..., None]
    _checks.same_shape("predictions", predictions, "targets", targets)
    if class_weights is not None:
        _checks.rank("class_weights", class_weights, 1)
    num_classes = predictions.shape[-1] if predictions.ndim else 1

    if apply_softmax:
        probs = jax.nn.sigmoid(predictions) if num_classes == 1 else jax.nn.softmax(predictions, axis=-1)
    else:
        if num_classes > 1:
            _check_probabilities(predictions)
        probs = predictions
    if axis is None:
        axis = tuple(range(1, probs.ndim - 1))

    intersection = jnp.sum(probs * targets, axis=axis)
    predicted = jnp.sum(probs, axis=axis)
    actual = jnp.sum(targets, axis=axis)
    numerator = intersection + smooth
    denominator = intersection + alpha * (predicted - intersection) + beta * (actual - intersection) + smooth
    losses = 1.0 - numerator / denominator
    if class_weights is not None:
        losses = losses * jnp.asarray(class_weights)
    if ignore_background and num_classes > 1:
        losses = losses[..., 1:]
    if reduction == "mean":
        return jnp.mean(losses, axis=-1)
    if reduction == "sum":
        return jnp.sum(losses, axis=-1)
    return losses


def multiclass_generalized_dice_loss(
    predictions: ArrayLike,
    targets: ArrayLike,
    *,
    smooth: ArrayLike = 1.0,
    apply_softmax: bool = True,
    ignore_background: bool = False,
) -> jax.Array:
    r"""Generalized Dice loss: Dice with class weights from inverse squared class volumes.

    .. math::
        w_c \propto \frac{1}{T_c^2 + 10^{-7}}, \quad \sum_c w_c = C, \qquad
        L = \operatorname{mean}_{b, c}\, w_c \ell_{bc}

    with :math:`T_c` the number of target pixels of class :math:`c` over the whole batch and
    :math:`\ell_{bc}` the per-class Dice loss of :func:`dice_loss` (Sudre et al., *Generalised Dice
    overlap as a deep learning loss function for highly unbalanced segmentations*, 2017).

    Args:
      predictions: logits (or probabilities) ``[batch, ..., num_classes]``.
      targets: one-hot targets, same shape.
      smooth: additive smoothing.
      apply_softmax: whether ``predictions`` are logits.
      ignore_background: drop class 0 from the mean (the weights still count it).

    Returns:
      A scalar.
    """
    _checks.same_shape("predictions", predictions, "targets", targets)
    targets = jnp.asarray(targets)
    volumes = jnp.sum(targets, axis=tuple(range(targets.ndim - 1)))
    weights = 1.0 / (jnp.square(volumes) + 1e-7)
    weights = weights / jnp.sum(weights) * weights.shape[0]
    per_class = dice_loss(
        predictions,
        targets,
        class_weights=weights,
        smooth=smooth,
        apply_softmax=apply_softmax,
        reduction="none",
        ignore_background=ignore_background,
    )
    return jnp.mean(per_class)


def binary_dice_loss(
    predictions: ArrayLike,
    targets: ArrayLike,
    *,
    smooth: ArrayLike = 1.0,
    apply_sigmoid: bool = True,
) -> jax.Array:
    r"""Dice loss of a single foreground class: :func:`dice_loss` with one sigmoid channel.

    .. math:: \ell = 1 - \frac{\sum_i p_i t_i + s}{\tfrac12 (\sum_i p_i + \sum_i t_i) + s}

    Args:
      predictions: logits ``[batch, ...]`` or ``[batch, ..., 1]`` (probabilities with
        ``apply_sigmoid=False``; Optax raises ValueError for those unless all equal 1, this computes
        the loss).
      targets: binary targets, same shape.
      smooth: additive smoothing.
      apply_sigmoid: whether ``predictions`` are logits.

    Returns:
      ``[batch]`` losses.
    """
    predictions = jnp.asarray(predictions)
    targets = jnp.asarray(targets)
    if predictions.ndim == targets.ndim and predictions.ndim and predictions.shape[-1] != 1:
        predictions = predictions[..., None]
        targets = targets[..., None]
    return dice_loss(predictions, targets, smooth=smooth, apply_softmax=apply_sigmoid, reduction="mean")
