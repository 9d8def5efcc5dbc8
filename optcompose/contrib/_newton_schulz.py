"""Newton–Schulz orthogonalization: the matrix-sign iteration Muon and its variants are built on.

For a matrix ``G = U S V^T`` the iteration drives every singular value towards 1, so its limit is
(approximately) ``U V^T``, the orthogonal factor of ``G``. One step with coefficients ``(a, b, c)``::

    A = X X^H
    X <- a X + (b A + c A A) X          (= a X + b (X X^H) X + c (X X^H)^2 X)

an odd quintic polynomial in ``X`` acting on the singular values only (Bernstein & Newhouse 2024,
"Old Optimizer, New Norm"; Jordan 2024, modded-nanogpt). ``X`` is first scaled so its spectral norm
is at most 1 (the "preconditioning"). The default coefficients ``(3.4445, -4.7750, 2.0315)`` make the
slope at 0 large, trading exact convergence for speed: after 5 steps the singular values lie in
about [0.7, 1.2] rather than at 1, which does not hurt training.

Everything here is pure ``jax.numpy``: complex matrices use ``X^H`` (the conjugate transpose),
and a tensor of any rank is orthogonalized as a batch of matrices (``MuonDimensionNumbers``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from optcompose.contrib._common import MatrixView

PRECONDITIONINGS = ("frobenius", "spectral", "aol", "schatten")
DEFAULT_NS_COEFFS = (3.4445, -4.7750, 2.0315)
DION_NS_COEFFS = (
    (4.0848, -6.8946, 2.9270),
    (3.9505, -6.3029, 2.6377),
    (3.7418, -5.5913, 2.3037),
    (2.8769, -3.1427, 1.2046),
    (2.8366, -3.0525, 1.2012),
)
NS_COEFFS_PRESETS = {"standard": DEFAULT_NS_COEFFS, "dion": DION_NS_COEFFS}


class MuonDimensionNumbers(NamedTuple):
    """Which axes of a weight form the matrix that is orthogonalized.

    For a layer computing ``y = x W``, the reduction axis (``fan_in``) is contracted with the input
    and the output axis (``fan_out``) indexes the outputs: a 2-D ``W`` has ``reduction_axis=0`` and
    ``output_axis=1`` (the default). Several axes may be given as a sequence; all other axes are
    batch axes, each slice along them orthogonalized independently.
    """

    reduction_axis: Sequence[int] | int = 0
    output_axis: Sequence[int] | int = 1


def check_ns_coeffs(ns_coeffs: Any, ns_steps: Any) -> np.ndarray:
    """``ns_coeffs`` as a float64 NumPy array of shape ``(3,)`` or ``(n, 3)``, checked.

    A ``(n, 3)`` table gives one row per step (``n`` steps; Optax requires ``n <= ns_steps`` and then
    runs all ``n`` rows).
    """
    try:
        coeffs = np.asarray(ns_coeffs, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise TypeError(f"ns_coeffs must be 3 numbers or a table of rows of 3 numbers, got {ns_coeffs!r}") from err
    if coeffs.ndim not in (1, 2) or coeffs.shape[-1] != 3:
        raise ValueError(f"ns_coeffs must have shape (3,) or (n, 3), got shape {coeffs.shape}")
    if not np.all(np.isfinite(coeffs)):
        raise ValueError(f"ns_coeffs must be finite, got {ns_coeffs!r}")
    if coeffs.ndim == 2 and coeffs.shape[0] > int(ns_steps):
        raise ValueError(
            f"ns_coeffs has {coeffs.shape[0]} rows (one per Newton-Schulz step) but ns_steps={ns_steps}; "
            "a table needs at most ns_steps rows"
        )
    return coeffs


def _gram(x: jax.Array) -> jax.Array:
    return x @ jnp.conj(x).T


def newton_schulz_iteration(x: jax.Array, coeffs: jax.Array, gram: jax.Array | None = None) -> jax.Array:
    """One step ``a X + (b A + c A A) X`` with ``A = X X^H`` (``gram``, when already computed)."""
    a = _gram(x) if gram is None else gram
    b = coeffs[1] * a + coeffs[2] * a @ a
    return coeffs[0] * x + b @ x


def _aol_first_iteration(x: jax.Array, coeffs: jax.Array, eps: jax.Array) -> jax.Array:
    # "Almost orthogonal layer" scaling (Boissin et al. 2025): rows scaled by 1 / sqrt(sum_j |A_ij|),
    # which bounds the spectral norm by 1 and reuses the Gram matrix of the first step.
    a = _gram(x)
    s = jax.lax.rsqrt(jnp.maximum(jnp.sum(jnp.abs(a), axis=-1), eps))[:, None]
    return newton_schulz_iteration(x * s, coeffs, a * s * s.T)


def _schatten_first_iteration(x: jax.Array, coeffs: jax.Array, eps: jax.Array) -> jax.Array:
    # Scaling by the Schatten-4 norm ||X||_S4 = ||X X^H||_F ** 0.5 (Grishina et al. 2025), >= ||X||_2.
    a = _gram(x)
    s = jax.lax.rsqrt(jnp.maximum(jnp.linalg.norm(a), eps))
    return newton_schulz_iteration(x * s, coeffs, a * s * s)


def _orthogonalize_matrix(x: jax.Array, coeffs: jax.Array, steps: int, preconditioning: str, eps: jax.Array):
    transposed = x.shape[0] > x.shape[1]
    if transposed:  # f(X^T) = f(X)^T: iterate on the wide orientation, whose Gram matrix is smaller
        x = x.T
    if preconditioning == "frobenius":
        x = x / (jnp.linalg.norm(x) + eps)
    elif preconditioning == "spectral":
        x = x / (jnp.linalg.norm(x, ord=2) + eps)
    table = coeffs.ndim == 2
    for step in range(coeffs.shape[0] if table else steps):
        row = coeffs[step] if table else coeffs
        if step == 0 and preconditioning == "aol":
            x = _aol_first_iteration(x, row, eps)
        elif step == 0 and preconditioning == "schatten":
            x = _schatten_first_iteration(x, row, eps)
        else:
            x = newton_schulz_iteration(x, row)
    return x.T if transposed else x


def orthogonalize_via_newton_schulz(
    x: jax.Array,
    ns_coeffs: jax.Array,
    ns_steps: jax.typing.ArrayLike = 5,
    preconditioning: str = "frobenius",
    eps: jax.typing.ArrayLike = 1e-8,
    dimension_numbers: MuonDimensionNumbers | None = None,
) -> jax.Array:
    """Approximately orthogonalizes ``x`` (``U S V^T -> U V^T``) with ``ns_steps`` Newton–Schulz steps.

    Args:
      x: a matrix, or a tensor together with ``dimension_numbers``.
      ns_coeffs: ``(a, b, c)`` for every step, or an ``(n, 3)`` table (one row per step; then
        ``ns_steps`` is ignored).
      ns_steps: the number of steps (a Python int: the loop is unrolled).
      preconditioning: how ``x`` is scaled first so that its spectral norm is at most 1:
        ``'frobenius'`` ``x / (||x||_F + eps)``; ``'spectral'`` ``x / (||x||_2 + eps)`` (an SVD);
        ``'aol'`` and ``'schatten'`` fold the scaling into the first step (rows by
        ``1 / sqrt(sum_j |(x x^H)_ij|)``, or all by ``1 / ||x x^H||_F^(1/2)``; denominators clamped at ``eps``).
      eps: keeps the scalings finite for a zero matrix (whose result is then 0).
      dimension_numbers: reduction and output axes of a tensor; other axes are batch axes.

    Returns:
      An array of ``x``'s shape and dtype. The arithmetic runs in ``x``'s dtype: pass float32 (or
      float64) for accurate results; Optax's transforms run it in the parameter's dtype, ours in float32.
    """
    if preconditioning not in PRECONDITIONINGS:
        raise ValueError(f"preconditioning must be one of {PRECONDITIONINGS}, got {preconditioning!r}")
    x = jnp.asarray(x)
    if dimension_numbers is None:
        if x.ndim != 2:
            raise ValueError(
                f"orthogonalize_via_newton_schulz takes a matrix, or a tensor with dimension_numbers; got shape "
                f"{x.shape} and dimension_numbers=None"
            )
        dimension_numbers = MuonDimensionNumbers()
    coeffs = jnp.asarray(ns_coeffs)
    if coeffs.ndim not in (1, 2) or coeffs.shape[-1] != 3:
        raise ValueError(f"ns_coeffs must have shape (3,) or (n, 3), got shape {coeffs.shape}")
    real = jnp.finfo(x.dtype).dtype
    coeffs, eps = coeffs.astype(x.dtype), jnp.asarray(eps).astype(real)
    view = MatrixView(x.shape, dimension_numbers.reduction_axis, dimension_numbers.output_axis)
    one = lambda m: _orthogonalize_matrix(m, coeffs, int(ns_steps), preconditioning, eps)
    return view.from_matrices(jax.vmap(one)(view.to_matrices(x)))
