"""Adam's relatives: RAdam, AMSGrad, Adamax, AdaBelief, Adan, Yogi, NovoGrad, Adadelta and sparse Adam.

Each is Optax's transform of the same name, with Optax's state record (plus ``hyperparams``) and
Optax's numbers (sparse Adam, which Optax lacks, is ``torch.optim.SparseAdam``'s); the arithmetic
runs in float32 (or wider) whatever the storage dtype, and a
coordinate whose denominator is exactly 0 gets update 0 instead of NaN (``divide_by_root``).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from optcompose import _validate as validate
from optcompose._base import Updates
from optcompose._hyperparams import Hyperparams
from optcompose._leafwise import Leafwise, abs_sq, ema_step, leafwise
from optcompose._numerics import bias_correction_factor, power
from optcompose.transforms._adaptive import ScaleByAdamState, divide_by_root
from optcompose.transforms._shaped import Shaped, StateView, shaped


def _first_moment_hat(mu: jax.Array, g: jax.Array, b1: jax.Array, t: jax.Array, nesterov: bool) -> jax.Array:
    """``m_t / (1 - b1**t)``, or Dozat's look-ahead ``b1 m_t / (1 - b1**(t+1)) + (1 - b1) g_t / (1 - b1**t)``."""
    correction = bias_correction_factor(b1, t)
    if not nesterov:
        return mu * correction
    return b1 * mu * bias_correction_factor(b1, t + 1) + (1.0 - b1) * g * correction


def _real(x: jax.Array) -> jax.Array:
    """The real part (a no-op for real arrays): second moments of complex leaves are real-valued."""
    return jnp.real(x)


def _check_betas(**betas: Any) -> None:
    for name, value in betas.items():
        validate.unit_interval(name, value)


def _check_eps(**values: Any) -> None:
    for name, value in values.items():
        validate.non_negative(name, value)


# ----------------------------------------------------------------------------------------------
# RAdam


def _sma_length(b2: jax.Array, t: jax.Array) -> jax.Array:
    """RAdam's ``rho_t = rho_inf - 2 t b2**t / (1 - b2**t)``, ``rho_inf = 2 / (1 - b2) - 1``.

    The two terms are large and nearly equal (about 2 / (1 - b2)) while their difference is about
    ``t``, so ``1 - b2**t`` is computed as ``-expm1(t log1p(-(1 - b2)))`` (no cancellation; ``1 - b2``
    is exact in floating point for ``b2 >= 0.5``) instead of from a rounded ``b2**t``.
    """
    steps = jnp.asarray(t).astype(b2.dtype)
    complement = -jnp.expm1(steps * jnp.log1p(-(1.0 - b2)))
    decayed = 1.0 - complement
    rho_inf = 2.0 / (1.0 - b2) - 1.0
    return rho_inf - 2.0 * steps * decayed / jnp.where(complement > 0, complement, 1.0)


def _radam(g, mu, nu, *, hp, t, nesterov):
    mu = ema_step(mu, g, hp.b1)
    nu = ema_step(nu, abs_sq(g), hp.b2)
    mu_hat = _first_moment_hat(mu, g, hp.b1, t, nesterov)
    nu_hat = nu * bias_correction_factor(hp.b2, t)
    rho = _sma_length(hp.b2, t)
    rho_inf = 2.0 / (1.0 - hp.b2) - 1.0
    rectify = rho >= hp.threshold
    ratio = (rho - 4.0) * (rho - 2.0) * rho_inf / ((rho_inf - 4.0) * (rho_inf - 2.0) * rho)
    r = jnp.sqrt(jnp.where(rectify, ratio, 1.0))
    adaptive = r * divide_by_root(mu_hat, nu_hat + hp.eps_root, hp.eps, False)
    return jnp.where(rectify, adaptive, mu_hat), mu, nu


def scale_by_radam(
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-8,
    eps_root: float = 0.0,
    threshold: float = 5.0,
    *,
    nesterov: bool = False,
) -> Leafwise:
    """Rectified Adam's scaling (Liu et al. 2020, "On the Variance of the Adaptive Learning Rate", Alg. 2)::

        m_t, v_t, m_hat, v_hat        as in scale_by_adam (m_hat with Nesterov's look-ahead if nesterov)
        rho_inf = 2 / (1 - b2) - 1
        rho_t   = rho_inf - 2 t b2**t / (1 - b2**t)       (the length of the approximated SMA)
        r_t     = sqrt((rho_t - 4)(rho_t - 2) rho_inf / ((rho_inf - 4)(rho_inf - 2) rho_t))
        u_t     = r_t m_hat / (sqrt(v_hat + eps_root) + eps)   if rho_t >= threshold
        u_t     = m_hat                                          otherwise (SGD with momentum)

    With the default ``b2 = 0.999`` the first 5 steps (``rho_t < 5``) are momentum steps.

    ``rho_t`` is a small difference of two numbers near ``2 / (1 - b2)``; it is computed with
    ``expm1`` / ``log1p`` (see ``_sma_length``). In float32 its error over the first 2000 steps is
    at most 6e-4 for ``b2 = 0.999`` and 9e-3 for ``b2 = 0.9999``; Optax 0.2.8 forms ``b2**t``
    directly and takes ``rho_inf`` from the float64 ``b2`` and the rest from the float32 one, with
    errors up to 0.03 (``b2 = 0.999``) and 3.6 (``b2 = 0.9999``). Near the threshold that is up to
    1% (resp. more than 100%) of the rectification ``r_t``, so float32 trajectories differ from
    Optax's by up to ~1e-2 relative in the first steps after the threshold (measured 3.5e-3 for
    ``b2 = 1 - 2**-10``); in float64 both are exact to ~1e-13. ``torch.optim.RAdam`` computes
    ``rho_t`` in float64 (over 20 steps at lr 1e-2 our float32 trajectory is within 1e-7 of it), uses
    ``rho_t > 5``, and
    adds ``eps`` to ``sqrt(v_t)`` before the bias correction (``eps`` scaled by
    ``1 / sqrt(1 - b2**t)``): the same to ~1e-7 for ``eps = 1e-8`` and gradients of order 1.

    Args:
      b1: decay of the first moment, in [0, 1).
      b2: decay of the second moment, in [0, 1).
      eps: added to the root of the second moment.
      eps_root: added to the second moment inside the root.
      threshold: the SMA length from which the rectified adaptive step is used (>= 4; Optax
        accepts less and returns NaN once ``rho_t`` lies between the threshold and 4).
      nesterov: use Nesterov's look-ahead first moment (Dozat 2016).

    Returns:
      A ``Leafwise`` transform with state ``ScaleByAdamState``.
    """
    _check_betas(b1=b1, b2=b2)
    _check_eps(eps=eps, eps_root=eps_root)
    validate.finite("threshold", threshold)
    if not callable(threshold) and float(threshold) < 4.0:
        raise ValueError(
            f"threshold must be >= 4 (the rectification sqrt((rho_t - 4)(rho_t - 2) ...) is NaN for rho_t in "
            f"(2, 4)), got {threshold!r}"
        )
    return leafwise(
        _radam, ScaleByAdamState,
        hyperparams={"b1": b1, "b2": b2, "eps": eps, "eps_root": eps_root, "threshold": threshold},
        static={"nesterov": nesterov}, name="scale_by_radam",
    )  # fmt: skip


# ----------------------------------------------------------------------------------------------
# AMSGrad


class ScaleByAmsgradState(NamedTuple):
    count: jax.Array
    mu: Updates
    nu: Updates
    nu_max: Updates
    hyperparams: Hyperparams


def _amsgrad(g, mu, nu, nu_max, *, hp, t, bias_correction_mu, bias_correction_nu):
    mu = ema_step(mu, g, hp.b1)
    nu = ema_step(nu, abs_sq(g), hp.b2)
    mu_hat = mu * bias_correction_factor(hp.b1, t) if bias_correction_mu else mu
    nu_used = nu * bias_correction_factor(hp.b2, t) if bias_correction_nu else nu
    nu_max = jnp.maximum(_real(nu_max), _real(nu_used))
    return divide_by_root(mu_hat, nu_max + hp.eps_root, hp.eps, False), mu, nu, nu_max


def scale_by_amsgrad(
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-8,
    eps_root: float = 0.0,
    mu_dtype: Any | None = None,
    bias_correction_mu: bool = True,
    bias_correction_nu: bool = True,
) -> Leafwise:
    """AMSGrad's scaling (Reddi et al. 2018, "On the Convergence of Adam and Beyond", Alg. 2)::

        m_t, v_t as in Adam;   v_max_t = max(v_max_{t-1}, v_t / (1 - b2**t))
        u_t = (m_t / (1 - b1**t)) / (sqrt(v_max_t + eps_root) + eps)

    ``bias_correction_mu`` / ``bias_correction_nu`` False drop the respective correction (the
    paper's form has neither). ``torch.optim.Adam(amsgrad=True)`` keeps the maximum of the
    *uncorrected* ``v_t`` and corrects afterwards, a different rule from Optax's (and this).

    Args:
      b1: decay of the first moment, in [0, 1).
      b2: decay of the second moment, in [0, 1).
      eps: added to the root of the second moment.
      eps_root: added to the second moment inside the root.
      mu_dtype: storage dtype of the first moment (default: the parameter's).
      bias_correction_mu: correct the first moment.
      bias_correction_nu: correct the second moment before taking the maximum.

    Returns:
      A ``Leafwise`` transform with state ``ScaleByAmsgradState``.
    """
    _check_betas(b1=b1, b2=b2)
    _check_eps(eps=eps, eps_root=eps_root)
    return leafwise(
        _amsgrad, ScaleByAmsgradState, hyperparams={"b1": b1, "b2": b2, "eps": eps, "eps_root": eps_root},
        dtypes={"mu": mu_dtype},
        static={"bias_correction_mu": bool(bias_correction_mu), "bias_correction_nu": bool(bias_correction_nu)},
        name="scale_by_amsgrad",
    )  # fmt: skip


# ----------------------------------------------------------------------------------------------
# Adamax


def _adamax(g, mu, nu, *, hp, t):
    mu = ema_step(mu, g, hp.b1)
    nu = jnp.maximum(jnp.abs(g) + hp.eps, hp.b2 * _real(nu))
    mu_hat = mu * bias_correction_factor(hp.b1, t)
    return jnp.where(nu > 0, mu_hat / jnp.where(nu > 0, nu, 1.0), 0.0), mu, nu


def scale_by_adamax(b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8) -> Leafwise:
    """Adamax's scaling, Adam with the infinity norm (Kingma & Ba 2014, Algorithm 2)::

        m_t = b1 m_{t-1} + (1 - b1) g_t
        u_t = max(|g_t| + eps, b2 u_{t-1})           (no bias correction needed)
        update = (m_t / (1 - b1**t)) / u_t

    Equal to ``torch.optim.Adamax(lr, betas=(b1, b2), eps)`` before the learning rate. With
    ``eps = 0`` a coordinate whose gradients were all 0 gets update 0 (Optax: 0 / 0 = NaN).

    Args:
      b1: decay of the first moment, in [0, 1).
      b2: decay of the running maximum, in [0, 1).
      eps: added to ``|g|``.

    Returns:
      A ``Leafwise`` transform with state ``ScaleByAdamState`` (``nu`` holds ``u_t``).
    """
    _check_betas(b1=b1, b2=b2)
    _check_eps(eps=eps)
    return leafwise(_adamax, ScaleByAdamState, hyperparams={"b1": b1, "b2": b2, "eps": eps}, name="scale_by_adamax")


# ----------------------------------------------------------------------------------------------
# Sparse (lazy) Adam


def _sparse_adam(g, mu, nu, *, hp, t):
    present = g != 0
    new_mu = ema_step(mu, g, hp.b1)
    new_nu = ema_step(_real(nu), _real(abs_sq(g)), hp.b2)
    step_size = jnp.sqrt(1.0 - power(hp.b2, t)) * bias_correction_factor(hp.b1, t)
    u = step_size * divide_by_root(new_mu, new_nu, hp.eps, False)
    return (
        jnp.where(present, u, jnp.zeros_like(u)),
        jnp.where(present, new_mu, mu),
        jnp.where(present, new_nu, _real(nu)),
    )


def scale_by_sparse_adam(b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8) -> Leafwise:
    """Lazy Adam, ``torch.optim.SparseAdam``'s scaling: only the coordinates present in the gradient
    (here: nonzero) update their moments, and only they move::

        for g_t[i] != 0:  m_t[i] = b1 m_{t-1}[i] + (1 - b1) g_t[i]
                          v_t[i] = b2 v_{t-1}[i] + (1 - b2) |g_t[i]|^2
                          u_t[i] = sqrt(1 - b2**t) / (1 - b1**t) * m_t[i] / (sqrt(v_t[i]) + eps)
        for g_t[i] == 0:  m, v unchanged, u_t[i] = 0

    ``t`` is the global step count (every update counts, whatever its coordinates), as torch's
    per-parameter ``step``. ``eps`` is added to ``sqrt(v_t)`` before the bias correction, as in
    torch's SparseAdam (Adam adds it after: here it acts as ``eps / sqrt(1 - b2**t)`` would in
    ``scale_by_adam``).

    Dense gradients stand for torch's sparse ones: a coordinate is present when its gradient is
    nonzero, which is what ``dense.to_sparse()`` keeps. The one difference: an explicitly stored
    zero in a torch sparse gradient (an index with value 0) updates that coordinate's moments
    (they decay) and moves it, while here a zero is always absent. A NaN is present (it propagates).

    Args:
      b1: decay of the first moment, in [0, 1).
      b2: decay of the second moment, in [0, 1).
      eps: added to the root of the (uncorrected) second moment.

    Returns:
      A ``Leafwise`` transform with state ``ScaleByAdamState``.
    """
    _check_betas(b1=b1, b2=b2)
    _check_eps(eps=eps)
    return leafwise(
        _sparse_adam, ScaleByAdamState, hyperparams={"b1": b1, "b2": b2, "eps": eps}, name="scale_by_sparse_adam"
    )


# ----------------------------------------------------------------------------------------------
# AdaBelief


class ScaleByBeliefState(NamedTuple):
    count: jax.Array
    mu: Updates
    nu: Updates
    hyperparams: Hyperparams


def _belief(g, mu, nu, *, hp, t, nesterov):
    mu = ema_step(mu, g, hp.b1)
    nu = ema_step(_real(nu), _real(abs_sq(g - mu)), hp.b2) + hp.eps_root
    mu_hat = _first_moment_hat(mu, g, hp.b1, t, nesterov)
    nu_hat = nu * bias_correction_factor(hp.b2, t)
    return divide_by_root(mu_hat, nu_hat, hp.eps, False), mu, nu


def scale_by_belief(
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-16,
    eps_root: float = 1e-16,
    *,
    nesterov: bool = False,
) -> Leafwise:
    """AdaBelief's scaling (Zhuang et al. 2020, Algorithm 2): the second moment of the surprise ``g - m``::

        m_t = b1 m_{t-1} + (1 - b1) g_t
        s_t = b2 s_{t-1} + (1 - b2) |g_t - m_t|^2 + eps_root
        u_t = m_hat / (sqrt(s_t / (1 - b2**t)) + eps)

    ``eps_root`` is added to the stored ``s_t`` at every step, as in the paper. The paper's
    defaults are ``eps = 1e-8, eps_root = 0``; these are Optax's.

    Args:
      b1: decay of the first moment, in [0, 1).
      b2: decay of the belief (second central) moment, in [0, 1).
      eps: added to the root of ``s``.
      eps_root: added to ``s`` at every step.
      nesterov: use Nesterov's look-ahead first moment.

    Returns:
      A ``Leafwise`` transform with state ``ScaleByBeliefState``.
    """
    _check_betas(b1=b1, b2=b2)
    _check_eps(eps=eps, eps_root=eps_root)
    return leafwise(
        _belief, ScaleByBeliefState, hyperparams={"b1": b1, "b2": b2, "eps": eps, "eps_root": eps_root},
        static={"nesterov": nesterov}, name="scale_by_belief",
    )  # fmt: skip


# ----------------------------------------------------------------------------------------------
# Adan


class ScaleByAdanState(NamedTuple):
    m: Updates
    v: Updates
    n: Updates
    g: Updates
    t: jax.Array
    hyperparams: Hyperparams


class _AdanLeafState(NamedTuple):
    # The same record with the count first under the toolkit's name.
    count: jax.Array
    m: Updates
    v: Updates
    n: Updates
    g: Updates
    hyperparams: Hyperparams


def _adan(grad, m, v, n, previous, *, hp, t):
    difference = jnp.where(t == 1, jnp.zeros_like(grad), grad - previous)
    m = ema_step(m, grad, hp.b1)
    v = ema_step(v, difference, hp.b2)
    n = ema_step(_real(n), _real(abs_sq(grad + (1.0 - hp.b2) * difference)), hp.b3)
    m_hat = m * bias_correction_factor(hp.b1, t)
    v_hat = v * bias_correction_factor(hp.b2, t)
    n_hat = n * bias_correction_factor(hp.b3, t)
    return divide_by_root(m_hat + (1.0 - hp.b2) * v_hat, n_hat + hp.eps_root, hp.eps, False), m, v, n, grad


def _adan_to_inner(state: ScaleByAdanState) -> _AdanLeafState:
    return _AdanLeafState(state.t, state.m, state.v, state.n, state.g, state.hyperparams)


def _adan_to_outer(state: _AdanLeafState) -> ScaleByAdanState:
    return ScaleByAdanState(state.m, state.v, state.n, state.g, state.count, state.hyperparams)


def scale_by_adan(
    b1: float = 0.98,
    b2: float = 0.92,
    b3: float = 0.99,
    eps: float = 1e-8,
    eps_root: float = 0.0,
) -> StateView:
    """Adan's scaling, Nesterov momentum from gradient differences (Xie et al. 2022, Algorithm 1)::

        d_t = g_t - g_{t-1}    (0 at the first step)
        m_t = b1 m_{t-1} + (1 - b1) g_t
        v_t = b2 v_{t-1} + (1 - b2) d_t
        n_t = b3 n_{t-1} + (1 - b3) |g_t + (1 - b2) d_t|^2
        u_t = (m_hat + (1 - b2) v_hat) / (sqrt(n_hat + eps_root) + eps)     (hats: divided by 1 - b**t)

    The ``b`` here are Optax's (the decay of each average; the paper's are ``1 - b``).

    Args:
      b1: decay of the gradients' average, in [0, 1).
      b2: decay of the gradient differences' average, in [0, 1).
      b3: decay of the second moment, in [0, 1).
      eps: added to the root of the second moment.
      eps_root: added to the second moment inside the root.

    Returns:
      A transform with state ``ScaleByAdanState(m, v, n, g, t, hyperparams)`` (Optax's fields:
      the previous gradient ``g`` and the count ``t``).
    """
    _check_betas(b1=b1, b2=b2, b3=b3)
    _check_eps(eps=eps, eps_root=eps_root)
    inner = leafwise(
        _adan, _AdanLeafState, hyperparams={"b1": b1, "b2": b2, "b3": b3, "eps": eps, "eps_root": eps_root},
        name="scale_by_adan",
    )  # fmt: skip
    return StateView(inner, ScaleByAdanState, _adan_to_inner, _adan_to_outer)


# ----------------------------------------------------------------------------------------------
# Yogi


def _yogi(g, mu, nu, *, hp, t):
    mu = ema_step(mu, g, hp.b1)
    square = _real(abs_sq(g))
    nu = _real(nu)
    nu = nu - (1.0 - hp.b2) * jnp.sign(nu - square) * square
    mu_hat = mu * bias_correction_factor(hp.b1, t)
    nu_hat = nu * bias_correction_factor(hp.b2, t)
    return divide_by_root(mu_hat, nu_hat + hp.eps_root, hp.eps, False), mu, nu


def scale_by_yogi(
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-3,
    eps_root: float = 0.0,
    initial_accumulator_value: float = 1e-6,
) -> Leafwise:
    """Yogi's scaling (Zaheer et al. 2018, "Adaptive Methods for Nonconvex Optimization", Algorithm 2)::

        m_t = b1 m_{t-1} + (1 - b1) g_t
        v_t = v_{t-1} - (1 - b2) sign(v_{t-1} - |g_t|^2) |g_t|^2      (an additive, not multiplicative, change)
        u_t = m_hat / (sqrt(v_hat + eps_root) + eps)                    (hats: Adam's bias corrections)

    Both moments start at ``initial_accumulator_value`` (Optax's choice; the paper starts ``m``
    at 0). ``v`` stays positive when it starts positive.

    Args:
      b1: decay of the first moment, in [0, 1).
      b2: the rate of the second moment's additive change, in [0, 1).
      eps: added to the root of the second moment.
      eps_root: added to the second moment inside the root.
      initial_accumulator_value: the starting value of both moments (>= 0).

    Returns:
      A ``Leafwise`` transform with state ``ScaleByAdamState``.
    """
    _check_betas(b1=b1, b2=b2)
    _check_eps(eps=eps, eps_root=eps_root)
    validate.non_negative("initial_accumulator_value", initial_accumulator_value)
    return leafwise(
        _yogi, ScaleByAdamState, hyperparams={"b1": b1, "b2": b2, "eps": eps, "eps_root": eps_root},
        fill={"mu": initial_accumulator_value, "nu": initial_accumulator_value}, name="scale_by_yogi",
    )  # fmt: skip


# ----------------------------------------------------------------------------------------------
# NovoGrad


class ScaleByNovogradState(NamedTuple):
    count: jax.Array
    mu: Updates
    nu: Updates
    hyperparams: Hyperparams


def _novograd(g, mu, nu, *, hp, t, w):
    square_norm = jnp.sum(_real(abs_sq(g)))
    first = t == 1
    nu = jnp.where(first, square_norm, ema_step(_real(nu), square_norm, hp.b2))
    step = divide_by_root(g, nu + hp.eps_root, hp.eps, False) + hp.weight_decay * w
    mu = jnp.where(first, step, hp.b1 * mu + step)
    return mu, mu, nu


def scale_by_novograd(
    b1: float = 0.9,
    b2: float = 0.25,
    eps: float = 1e-8,
    eps_root: float = 0.0,
    weight_decay: float = 0.0,
    mu_dtype: Any | None = None,
) -> Shaped:
    """NovoGrad's scaling by layer-wise second moments (Ginsburg et al. 2019, Algorithm 1)::

        n_1 = ||g_1||^2,   n_t = b2 n_{t-1} + (1 - b2) ||g_t||^2        (one scalar per leaf)
        d_t = g_t / (sqrt(n_t + eps_root) + eps) + weight_decay * w_t
        m_1 = d_1,         m_t = b1 m_{t-1} + d_t                       (no (1 - b1) factor)
        u_t = m_t

    Needs the parameters (``update(updates, state, params)``). ``nu`` holds one scalar per leaf
    in the parameter's dtype, as in Optax's state.

    Args:
      b1: the momentum, in [0, 1).
      b2: decay of the per-leaf squared norm, in [0, 1).
      eps: added to the root of the second moment.
      eps_root: added to the second moment inside the root.
      weight_decay: the decay added to the normalised gradient (>= 0).
      mu_dtype: storage dtype of the momentum (default: the parameter's).

    Returns:
      A transform with state ``ScaleByNovogradState``.
    """
    _check_betas(b1=b1, b2=b2)
    _check_eps(eps=eps, eps_root=eps_root, weight_decay=weight_decay)

    def init_leaf(p):
        return jnp.zeros(jnp.shape(p), mu_dtype or p.dtype), jnp.zeros((), p.dtype)

    return shaped(
        _novograd, ScaleByNovogradState, init_leaf,
        hyperparams={"b1": b1, "b2": b2, "eps": eps, "eps_root": eps_root, "weight_decay": weight_decay},
        name="scale_by_novograd",
    )  # fmt: skip


# ----------------------------------------------------------------------------------------------
# Adadelta


class ScaleByAdaDeltaState(NamedTuple):
    e_g: Updates
    e_x: Updates
    hyperparams: Hyperparams


def _adadelta(g, e_g, e_x, *, hp):
    e_g = ema_step(_real(e_g), _real(abs_sq(g)), hp.rho)
    held = _real(e_x) + hp.eps
    denominator = e_g + hp.eps
    usable = denominator > 0
    safe = jnp.where(usable, denominator, 1.0)
    u = jnp.where(usable, jnp.sqrt(held) / jnp.sqrt(safe) * g, 0.0)
    # |dx|^2 = |g|^2 (E[dx^2] + eps) / (E[g^2] + eps), written without u: the three outputs then
    # share no expensive intermediate (a root or a quotient with several users), so XLA computes
    # each in its own pass over the inputs instead of storing and rereading intermediates
    # (84 -> 68 bytes per parameter for adadelta's update + apply; Optax's is 68). Where E[g^2]
    # overflowed to inf, u is 0 (a finite root over an infinite one), and so is |dx|^2, rather
    # than |g|^2 / E[g^2] = inf / inf.
    bounded = usable & (denominator < jnp.inf)
    e_x = ema_step(_real(e_x), jnp.where(bounded, _real(abs_sq(g)) * held / safe, 0.0), hp.rho)
    return u, e_g, e_x


def scale_by_adadelta(rho: float = 0.9, eps: float = 1e-6) -> Leafwise:
    """Adadelta's scaling (Zeiler 2012, Algorithm 1)::

        E[g^2]_t  = rho E[g^2]_{t-1} + (1 - rho) |g_t|^2
        dx_t      = sqrt(E[dx^2]_{t-1} + eps) / sqrt(E[g^2]_t + eps) * g_t
        E[dx^2]_t = rho E[dx^2]_{t-1} + (1 - rho) |dx_t|^2

    ``dx_t`` is the returned update, before any learning rate: ``torch.optim.Adadelta(lr, rho,
    eps)`` is ``chain(scale_by_adadelta(rho, eps), scale_by_learning_rate(lr))``. For complex
    leaves the averages are of ``|g|^2`` and ``|dx|^2`` (Optax squares ``g`` itself, which is
    not a magnitude; it lists Adadelta as real-only).

    Args:
      rho: decay of both running averages, in [0, 1).
      eps: added inside both roots (> 0 in practice: with 0 the first step is 0 and it stays so).

    Returns:
      A ``Leafwise`` transform with state ``ScaleByAdaDeltaState``.
    """
    validate.unit_interval("rho", rho)
    _check_eps(eps=eps)
    return leafwise(_adadelta, ScaleByAdaDeltaState, hyperparams={"rho": rho, "eps": eps}, name="scale_by_adadelta")
