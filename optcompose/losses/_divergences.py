"""Kullback-Leibler divergences between a target distribution and a predicted one (in log space)."""

from __future__ import annotations

import warnings
from typing import Any

import jax
import jax.numpy as jnp

from optcompose.losses import _checks

ArrayLike = Any


def kl_divergence(
    log_predictions: ArrayLike,
    targets: ArrayLike,
    axis: int | tuple[int, ...] | None = -1,
    where: ArrayLike | None = None,
) -> jax.Array:
    r"""Kullback-Leibler divergence :math:`KL(t \,\|\, p)` from log-predictions and probabilities.

    .. math::
        KL(t \,\|\, p) = \sum_k t_k (\log t_k - \log p_k), \qquad 0 \log 0 = 0

    (Kullback & Leibler, *On Information and Sufficiency*, 1951). A zero target contributes 0 and,
    unlike Optax, a finite gradient with respect to ``targets`` (no ``log 0`` is differentiated).
    Same as ``torch.nn.functional.kl_div(log_predictions, targets, reduction="none").sum(axis)``.

    Args:
      log_predictions: log-probabilities of the prediction, floating.
      targets: probabilities of the target (>= 0), floating, broadcastable against
        ``log_predictions``.
      axis: axis or axes summed over (``None``: all).
      where: boolean mask of the elements to include.

    Returns:
      The divergence, with the broadcast shape minus ``axis``.
    """
    _checks.floating("log_predictions", log_predictions)
    _checks.floating("targets", targets)
    _checks.broadcastable("log_predictions", log_predictions, "targets", targets)
    log_predictions = jnp.asarray(log_predictions)
    targets = jnp.asarray(targets)
    is_zero = targets == 0
    log_targets = jnp.where(is_zero, 0.0, jnp.log(jnp.where(is_zero, 1.0, targets)))
    return jnp.sum(targets * (log_targets - log_predictions), axis=axis, where=where)


def kl_divergence_with_log_targets(
    log_predictions: ArrayLike,
    log_targets: ArrayLike,
    axis: int | tuple[int, ...] | None = -1,
    where: ArrayLike | None = None,
) -> jax.Array:
    r"""Kullback-Leibler divergence with both distributions given as log-probabilities.

    .. math:: KL(t \,\|\, p) = \sum_k e^{\log t_k} (\log t_k - \log p_k)

    Same as ``torch.nn.functional.kl_div(log_predictions, log_targets, reduction="none",
    log_target=True).sum(axis)``. A ``-inf`` log-target gives NaN (``0 * inf``), as in Optax.

    Args:
      log_predictions: log-probabilities of the prediction, floating.
      log_targets: log-probabilities of the target, floating.
      axis: axis or axes summed over.
      where: boolean mask of the elements to include.

    Returns:
      The divergence, with the broadcast shape minus ``axis``.
    """
    _checks.floating("log_predictions", log_predictions)
    _checks.floating("log_targets", log_targets)
    _checks.broadcastable("log_predictions", log_predictions, "log_targets", log_targets)
    log_predictions = jnp.asarray(log_predictions)
    log_targets = jnp.asarray(log_targets)
    return jnp.sum(jnp.exp(log_targets) * (log_targets - log_predictions), axis=axis, where=where)


def generalized_kl_divergence(
    log_predictions: ArrayLike,
    targets: ArrayLike,
    axis: int | tuple[int, ...] | None = -1,
    where: ArrayLike | None = None,
) -> jax.Array:
    r"""Generalized KL divergence, for unnormalized non-negative measures.

    .. math:: D(t \,\|\, p) = \sum_k t_k (\log t_k - \log p_k) - t_k + p_k

    the Bregman divergence of :math:`f(x) = x \log x - x` (Boyd & Vandenberghe, *Convex
    Optimization*, p. 90). Equals :func:`kl_divergence` when both sum to 1; always >= 0.

    Args:
      log_predictions: log of the predicted measure, floating.
      targets: target measure (>= 0), floating.
      axis: axis or axes summed over.
      where: boolean mask of the elements to include.

    Returns:
      The divergence, with the broadcast shape minus ``axis``.
    """
    divergence = kl_divergence(log_predictions, targets, axis=axis, where=where)
    mass_gap = jnp.sum(jnp.exp(jnp.asarray(log_predictions)) - jnp.asarray(targets), axis=axis, where=where)
    return divergence + mass_gap


def convex_kl_divergence(
    log_predictions: ArrayLike,
    targets: ArrayLike,
    axis: int | tuple[int, ...] | None = -1,
    where: ArrayLike | None = None,
) -> jax.Array:
    r"""Deprecated name of :func:`generalized_kl_divergence` (warns with ``DeprecationWarning``).

    .. math:: D(t \,\|\, p) = \sum_k t_k (\log t_k - \log p_k) - t_k + p_k

    Optax deprecates it the same way; the numbers are those of the new name.

    Args:
      log_predictions: log of the predicted measure, floating.
      targets: target measure (>= 0), floating.
      axis: axis or axes summed over.
      where: boolean mask of the elements to include.

    Returns:
      ``generalized_kl_divergence(log_predictions, targets, axis=axis, where=where)``.
    """
    warnings.warn(
        "The function convex_kl_divergence is deprecated. Please use generalized_kl_divergence instead.",
        DeprecationWarning,
        stacklevel=2,
    )
    return generalized_kl_divergence(log_predictions, targets, axis=axis, where=where)
