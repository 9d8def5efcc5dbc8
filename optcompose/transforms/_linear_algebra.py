"""Linear algebra used by second-order methods: power iteration, inverse p-th roots, NNLS, a diagonal Gaussian."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import jax.scipy.stats.norm as _normal

from optcompose.transforms._linesearch import tree_inner, tree_scale, tree_squared_norm


def _unit(tree: Any) -> Any:
    return tree_scale(1.0 / jnp.sqrt(tree_squared_norm(tree)), tree)


def power_iteration(
    matrix: jax.Array | Callable[[Any], Any],
    *,
    v0: Any | None = None,
    num_iters: int = 100,
    error_tolerance: float = 1e-6,
    precision: jax.lax.Precision = jax.lax.Precision.HIGHEST,
    key: jax.Array | None = None,
) -> tuple[jax.Array, Any]:
    """The dominant eigenvalue of a matrix and its eigenvector, by power iteration (von Mises 1929)::

        v <- A v / |A v|,   lambda = <v, A v>     until |A v - lambda v| / |lambda| < error_tolerance

    Args:
      matrix: a square array, or a function ``v -> A v`` on pytrees.
      v0: the starting vector (required for a function; default for an array: uniform in
        ``[-1, 1]`` drawn with ``key``).
      num_iters: the most iterations.
      error_tolerance: the relative residual that stops the iteration.
      precision: of the matrix products.
      key: PRNG key for ``v0`` (default ``PRNGKey(0)``).

    Returns:
      ``(eigenvalue, unit eigenvector)``.

    Edge behaviour: the iteration may not converge when the dominant eigenvalue is not unique in
    magnitude (it then stops after ``num_iters``).
    """
    if callable(matrix):
        product = matrix
        if v0 is None:
            raise ValueError("power_iteration needs v0 when `matrix` is a callable")
    else:
        matrix = jnp.asarray(matrix)
        if matrix.ndim != 2 or matrix.shape[0] != matrix.shape[1]:
            raise ValueError(f"matrix must be square, got shape {matrix.shape}")
        product = lambda v: jnp.matmul(matrix, v, precision=precision)
        if v0 is None:
            key = jax.random.PRNGKey(0) if key is None else key
            v0 = jax.random.uniform(key, matrix.shape[-1:], matrix.dtype, -1.0, 1.0)
    v0 = _unit(v0)

    def keep_going(carry):
        v, av, eigenvalue, i = carry
        residual = jax.tree.map(lambda a, b: a - eigenvalue * b, av, v)
        converged = jnp.abs(jnp.sqrt(tree_squared_norm(residual)) / eigenvalue) < error_tolerance
        return ~converged & (i < num_iters)

    def step(carry):
        _, av, _, i = carry
        v = _unit(av)
        av = product(v)
        return v, av, tree_inner(v, av).astype(jnp.asarray(carry[2]).dtype), i + 1

    start = (v0, product(v0), jnp.asarray(0.0), jnp.asarray(0))
    _, av, eigenvalue, _ = jax.lax.while_loop(keep_going, step, start)
    return eigenvalue, _unit(av)


def matrix_inverse_pth_root(
    matrix: jax.Array,
    p: int,
    num_iters: int = 100,
    ridge_epsilon: float = 1e-6,
    error_tolerance: float = 1e-6,
    precision: jax.lax.Precision = jax.lax.Precision.HIGHEST,
) -> tuple[jax.Array, jax.Array]:
    """``(M + eps I)^(-1/p)`` for a symmetric PSD ``M`` by the coupled Newton iteration (Higham 2008, eq. 7.18)::

        X_0 = c^(1/p) I,  M_0 = c (M + eps I),  c = (1 + p) / (2 |M + eps I|_F)
        T_k = ((1 + 1/p) I - M_k / p)
        X_{k+1} = X_k T_k,   M_{k+1} = T_k^p M_k                 until max |M_k - I| < error_tolerance

    with ``eps = ridge_epsilon * max(lambda_max(M), 1e-16)`` (Shampoo's damping, Gupta et al. 2018).

    Args:
      matrix: a square symmetric PSD matrix.
      p: the root, 1, 2, 4 or 8.
      num_iters: the most Newton iterations.
      ridge_epsilon: relative damping.
      error_tolerance: stopping threshold on ``max |M_k - I|``.
      precision: of the matrix products.

    Returns:
      ``(root, error)``; when the error stops shrinking (by 20%) the previous iterate is returned.
    """
    matrix = jnp.asarray(matrix)
    if matrix.ndim != 2 or matrix.shape[0] != matrix.shape[1]:
        raise ValueError(f"matrix must be square, got shape {matrix.shape}")
    if not isinstance(p, jax.core.Tracer) and int(p) not in (1, 2, 4, 8):
        raise ValueError(f"p must be 1, 2, 4 or 8, got {p!r}")
    size = matrix.shape[0]
    alpha = jnp.asarray(-1.0 / p, jnp.float32)
    identity = jnp.eye(size, dtype=jnp.float32)
    largest, _ = power_iteration(matrix=matrix, num_iters=100, error_tolerance=1e-6, precision=precision)
    ridge = ridge_epsilon * jnp.maximum(largest, 1e-16)

    def power(m):
        squarings = jnp.asarray(jnp.round(jnp.log2(p)), jnp.int32)

        def square_times(count):
            def run(x):
                for _ in range(count):
                    x = jnp.matmul(x, x, precision=precision)
                return x

            return run

        return jax.lax.switch(squarings, [square_times(n) for n in range(4)], m)

    def keep_going(state):
        i, _, _, _, error, improving = state
        return (i < num_iters) & (error > error_tolerance) & improving

    def step(state):
        i, m, h, _, error, _ = state
        t = (1 - alpha) * identity + alpha * m
        new_m = jnp.matmul(power(t), m, precision=precision)
        new_h = jnp.matmul(h, t, precision=precision)
        new_error = jnp.max(jnp.abs(new_m - identity))
        return i + 1, new_m, new_h, h, new_error, new_error < error * 1.2

    if size == 1:
        return (matrix + ridge) ** alpha, jnp.zeros(())
    damped = matrix + ridge * identity
    c = (1 + p) / (2 * jnp.linalg.norm(damped))
    m0 = damped * c
    h0 = identity * jnp.power(c, 1.0 / p)
    start = (0, m0, h0, h0, jnp.max(jnp.abs(m0 - identity)), True)
    _, m, h, previous, _, improving = jax.lax.while_loop(keep_going, step, start)
    error = jnp.max(jnp.abs(m - identity))
    root = jnp.where(improving, h, previous)
    return jnp.asarray(root, matrix.dtype), error


def _spectral_bound(q: jax.Array) -> jax.Array:
    frobenius = jnp.linalg.matrix_norm(q, ord="fro")
    one = jnp.linalg.matrix_norm(q, ord=1) if q.size else 0
    return jnp.minimum(frobenius, one)


def nnls(A: jax.Array, b: jax.Array, iters: int, unroll: int | bool = 1, L: Any = None) -> jax.Array:
    """Non-negative least squares ``argmin_{x >= 0} |A x - b|`` by accelerated projected gradient (Polyak 2015)::

        x_{k+1} = max(0, p_k - (A^T A p_k - A^T b) / L)
        p_{k+1} = x_{k+1} + (c_k - 1) / c_{k+1} (x_{k+1} - x_k),  c_{k+1} = (1 + sqrt(1 + 4 c_k^2)) / 2

    Args:
      A: ``(M, N)``.
      b: ``(M,)`` or ``(M, K)``.
      iters: iterations (a Python int; a ``lax.scan``).
      unroll: passed to ``lax.scan``.
      L: an upper bound on the largest eigenvalue of ``A^T A`` (default: min of its Frobenius and
        1-norms); 0 is treated as 1.

    Returns:
      ``x``, shape ``(N,)`` or ``(N, K)``.
    """
    A, b = jnp.asarray(A), jnp.asarray(b)
    if A.ndim != 2 or b.ndim not in (1, 2) or b.shape[0] != A.shape[0]:
        raise ValueError(f"nnls needs A of shape (M, N) and b of shape (M,) or (M, K), got {A.shape} and {b.shape}")
    q_matrix, q_vector = A.mT @ A, A.mT @ b
    bound = _spectral_bound(q_matrix) if L is None else L
    bound = jnp.where(bound == 0, 1, bound)

    def step(carry, _):
        x, p, c = carry
        c_next = (1 + jnp.sqrt(1 + 4 * c**2)) / 2
        x_next = (p - (q_matrix @ p - q_vector) / bound).clip(0)
        return (x_next, x_next + (c - 1) / c_next * (x_next - x), c_next), None

    x0 = jnp.zeros_like(b, shape=A.shape[-1:] + b.shape[1:])
    (x, _, _), _ = jax.lax.scan(step, (x0, x0, 0.0), length=iters, unroll=unroll)
    return x


class MultiNormalDiagFromLogScale:
    """A Gaussian with diagonal covariance parameterised by ``loc`` and ``log_scale`` (``scale = exp``)."""

    def __init__(self, loc: jax.Array, log_scale: jax.Array):
        self._log_scale = jnp.asarray(log_scale)
        self._scale = jnp.exp(log_scale)
        self._mean = jnp.asarray(loc)
        self._param_shape = jax.lax.broadcast_shapes(self._mean.shape, self._scale.shape)

    def sample(self, shape: Sequence[int], key: jax.Array) -> jax.Array:
        """Draws of shape ``(*shape, *param_shape)``: ``loc + scale * N(0, 1)``."""
        return jax.random.normal(key, shape=tuple(shape) + self._param_shape) * self._scale + self._mean

    def log_prob(self, x: jax.Array) -> jax.Array:
        """The log density, summed over the parameter axes."""
        per_entry = _normal.logpdf(x, loc=self._mean, scale=self._scale)
        return jnp.sum(per_entry, axis=[-(i + 1) for i in range(len(self._param_shape))])

    @property
    def log_scale(self) -> jax.Array:
        return self._log_scale

    @property
    def params(self) -> Sequence[jax.Array]:
        return [self._mean, self._log_scale]


def multi_normal(loc: jax.Array, log_scale: jax.Array) -> MultiNormalDiagFromLogScale:
    """A diagonal Gaussian ``N(loc, diag(exp(log_scale))^2)`` with ``sample``, ``log_prob`` and ``params``.

    Used by evolution strategies and perturbation-based gradient estimators.
    """
    return MultiNormalDiagFromLogScale(loc=loc, log_scale=log_scale)
