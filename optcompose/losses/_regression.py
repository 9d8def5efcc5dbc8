"""Regression losses (element-wise) and cosine similarity/distance (along an axis)."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from optcompose.losses import _checks

ArrayLike = Any


def _errors(predictions: ArrayLike, targets: ArrayLike | None, *, exact_shape: bool) -> jax.Array:
    _checks.floating("predictions", predictions)
    predictions = jnp.asarray(predictions)
    if targets is None:
        return predictions
    if exact_shape:
        _checks.same_shape("predictions", predictions, "targets", targets)
    else:
        _checks.broadcastable("predictions", predictions, "targets", targets)
    return predictions - jnp.asarray(targets)


def squared_error(
    predictions: ArrayLike,
    targets: ArrayLike | None = None,
) -> jax.Array:
    r"""Element-wise squared error, :math:`(\hat y - y)^2`; ``.mean()`` of it is the MSE.

    Same as ``torch.nn.functional.mse_loss(predictions, targets, reduction="none")``.

    Args:
      predictions: floating array of any shape.
      targets: array with exactly the shape of ``predictions`` (no broadcasting, as in Optax), or
        ``None`` for zeros.

    Returns:
      The squared errors, with the shape of ``predictions``.

    Raises:
      TypeError: ``predictions`` is not floating.
      ValueError: ``targets`` has another shape.
    """
    return jnp.square(_errors(predictions, targets, exact_shape=True))


def l2_loss(
    predictions: ArrayLike,
    targets: ArrayLike | None = None,
) -> jax.Array:
    r"""Half the squared error, :math:`\tfrac12 (\hat y - y)^2` (Bishop's convention).

    Its gradient is the plain error :math:`\hat y - y`.

    Args:
      predictions: floating array of any shape.
      targets: array with exactly the shape of ``predictions``, or ``None`` for zeros.

    Returns:
      The element-wise losses, with the shape of ``predictions``.
    """
    return 0.5 * squared_error(predictions, targets)


def huber_loss(
    predictions: ArrayLike,
    targets: ArrayLike | None = None,
    *,
    delta: ArrayLike = 1.0,
) -> jax.Array:
    r"""Huber loss: quadratic for small errors, linear for large ones (Huber 1964).

    .. math::
        \ell(e) = \begin{cases} \tfrac12 e^2 & |e| \le \delta \\
                                \delta (|e| - \tfrac12 \delta) & |e| > \delta \end{cases}

    Its gradient is the error clipped to ``[-delta, delta]``. Same as
    ``torch.nn.functional.huber_loss(predictions, targets, reduction="none", delta=delta)``;
    ``torch.nn.functional.smooth_l1_loss(..., beta=b)`` is ``huber_loss(..., delta=b) / b``.

    Args:
      predictions: floating array of any shape.
      targets: array broadcastable against ``predictions``, or ``None`` for zeros.
      delta: the error size where the loss turns linear (> 0).

    Returns:
      The element-wise losses (broadcast shape).
    """
    errors = _errors(predictions, targets, exact_shape=False)
    abs_errors = jnp.abs(errors)
    return jnp.where(abs_errors <= delta, 0.5 * jnp.square(errors), delta * (abs_errors - 0.5 * delta))


def log_cosh(
    predictions: ArrayLike,
    targets: ArrayLike | None = None,
) -> jax.Array:
    r"""Log-cosh loss, :math:`\log\cosh(\hat y - y)`: about :math:`e^2/2` near 0, :math:`|e| - \log 2` far.

    A smooth (twice differentiable) Huber-like loss with gradient :math:`\tanh(e)` (Chen et al.,
    *Log Hyperbolic Cosine Loss Improves Variational Auto-Encoder*, 2019). Evaluated as
    :math:`\log(1 + 2\sinh^2(e/2))` for :math:`|e| < 1` (accurate to relative precision even for
    tiny errors, where ``|e| - log 2 + ...`` cancels) and as
    :math:`|e| + \log(1 + e^{-2|e|}) - \log 2` beyond (no overflow for huge errors).

    Args:
      predictions: floating array of any shape.
      targets: array broadcastable against ``predictions``, or ``None`` for zeros.

    Returns:
      The element-wise losses (broadcast shape).
    """
    errors = _errors(predictions, targets, exact_shape=False)
    abs_errors = jnp.abs(errors)
    small = abs_errors < 1
    half = 0.5 * jnp.where(small, errors, 0.0)
    near_zero = jnp.log1p(2.0 * jnp.square(jnp.sinh(half)))
    far = abs_errors + jnp.log1p(jnp.exp(-2.0 * abs_errors)) - jnp.log(2.0).astype(errors.dtype)
    return jnp.where(small, near_zero, far)


def cosine_similarity(
    predictions: ArrayLike,
    targets: ArrayLike,
    *,
    epsilon: ArrayLike = 0.0,
    axis: int | tuple[int, ...] | None = -1,
    where: ArrayLike | None = None,
) -> jax.Array:
    r"""Cosine of the angle between ``predictions`` and ``targets`` along ``axis``.

    .. math::
        \cos(a, b) = \frac{\langle a, b\rangle}
                         {\sqrt{\max(\|a\|^2, \epsilon)}\,\sqrt{\max(\|b\|^2, \epsilon)}}

    ``epsilon`` bounds the *squared* norms from below (as in Optax); with the default 0 a zero
    vector gives NaN (0/0), with ``epsilon > 0`` it gives 0 and finite gradients. ``where`` masks
    elements out of the three sums. ``torch.nn.functional.cosine_similarity(a, b, dim=axis)`` gives
    the same for nonzero vectors.

    Args:
      predictions: floating vectors ``[..., dim]``.
      targets: floating vectors broadcastable against ``predictions``.
      epsilon: lower bound on each squared norm.
      axis: axis or axes of the vectors.
      where: boolean mask of the elements to include.

    Returns:
      The similarities in ``[-1, 1]``: the broadcast shape minus ``axis``.
    """
    _checks.floating("predictions", predictions)
    _checks.floating("targets", targets)
    _checks.broadcastable("predictions", predictions, "targets", targets)
    a = jnp.asarray(predictions)
    b = jnp.asarray(targets)
    dot = jnp.sum(a * b, axis=axis, where=where)
    a_norm = jnp.sqrt(jnp.maximum(jnp.sum(jnp.square(a), axis=axis, where=where), epsilon))
    b_norm = jnp.sqrt(jnp.maximum(jnp.sum(jnp.square(b), axis=axis, where=where), epsilon))
    return dot / (a_norm * b_norm)


def cosine_distance(
    predictions: ArrayLike,
    targets: ArrayLike,
    *,
    epsilon: ArrayLike = 0.0,
    axis: int | tuple[int, ...] | None = -1,
    where: ArrayLike | None = None,
) -> jax.Array:
    r"""Cosine distance, :math:`1 - \cos(a, b)`, in ``[0, 2]``; see :func:`cosine_similarity`.

    Same as ``torch.nn.functional.cosine_embedding_loss(a, b, ones, reduction="none")``.

    Args:
      predictions: floating vectors ``[..., dim]``.
      targets: floating vectors broadcastable against ``predictions``.
      epsilon: lower bound on each squared norm.
      axis: axis or axes of the vectors.
      where: boolean mask of the elements to include.

    Returns:
      The distances: the broadcast shape minus ``axis``.
    """
    return 1.0 - cosine_similarity(predictions, targets, epsilon=epsilon, axis=axis, where=where)
