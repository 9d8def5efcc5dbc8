"""The Adam family and the other adaptive optimizers of Optax, each a ``chain`` of its pieces.

Names, arguments, defaults and the order of the chain are Optax 0.2.8's (``optax/_src/alias.py``);
each piece's hyperparameters are data in the state, named as the optimizer's arguments (for
example Adafactor's ``eps`` and ``decay_offset``), so ``get_hyperparams`` / ``set_hyperparams``
read and change them without recompiling.

torch.optim equivalents (verified in ``tests/optimizers/test_adaptive.py``)::

    torch.optim.NAdam(lr, betas, eps, momentum_decay=float('inf'))   nadam(lr, b1, b2, eps)
    torch.optim.RAdam(lr, betas, eps)                               radam(lr, b1, b2, eps)
    torch.optim.Adamax(lr, betas, eps)                              adamax(lr, b1, b2, eps)
    torch.optim.Adadelta(lr, rho, eps, weight_decay)                adadelta(lr, rho, eps, weight_decay)
    torch.optim.SparseAdam(lr, betas, eps)                          sparse_adam(lr, b1, b2, eps)   (not in Optax)
    torch.optim.Adafactor(lr, beta2_decay=-0.8, eps=(None, 1e-3), d, weight_decay)
        adafactor(lambda c: min(lr, 1 / sqrt(c + 1)), min_dim_size_to_factor=1, decay_rate=0.8,
                  clipping_threshold=d, weight_decay_rate=lr * weight_decay)

Numbers stored as float32 data (the library's rule) round ``b2 = 0.999`` to 0.99900001, so
``1 - b2`` differs from Optax's (computed from the float64 number) by 1.3e-5 relative; with
``b = 1 - 2**-k`` (0.875, 0.9921875, ...) the two are identical.
"""

from __future__ import annotations

import warnings
from typing import Any

import jax.numpy as jnp

from optcompose import _validate as validate
from optcompose._base import GradientTransformation, ScalarOrSchedule, chain
from optcompose._hyperparams import rename_hyperparams
from optcompose.optimizers._classic import adam, adamw
from optcompose.transforms._adam_variants import (
    scale_by_adadelta,
    scale_by_adamax,
    scale_by_adan,
    scale_by_amsgrad,
    scale_by_belief,
    scale_by_novograd,
    scale_by_radam,
    scale_by_sparse_adam,
    scale_by_yogi,
)
from optcompose.transforms._adaptive import scale_by_adam
from optcompose.transforms._decay import add_decayed_weights
from optcompose.transforms._factored import (
    clip_by_block_rms,
    scale_by_factored_rms,
    scale_by_param_block_rms,
    scale_by_sm3,
)
from optcompose.transforms._momentum import ema
from optcompose.transforms._scaling import scale, scale_by_learning_rate
from optcompose.transforms._step_rules import scale_by_optimistic_gradient


def nadam(
    learning_rate: ScalarOrSchedule,
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-8,
    eps_root: float = 0.0,
    mu_dtype: Any | None = None,
    *,
    nesterov: bool = True,
) -> GradientTransformation:
    """NAdam, Adam with Nesterov momentum (Dozat 2016, "Incorporating Nesterov Momentum into Adam")::

        m_hat = b1 m_t / (1 - b1**(t+1)) + (1 - b1) g_t / (1 - b1**t)
        w -> w - lr * m_hat / (sqrt(v_t / (1 - b2**t) + eps_root) + eps)

    ``adam(..., nesterov=True)``, as Optax's ``nadam`` (a ``functools.partial`` of ``adam``).
    ``torch.optim.NAdam`` multiplies ``b1`` by a warm-up ``1 - 0.5 * 0.96**(t * momentum_decay)``;
    with ``momentum_decay=float('inf')`` that factor is 1 and torch's NAdam is this one (same
    trajectory to float32 round-off). With torch's default ``momentum_decay=4e-3`` the two
    differ (torch's momentum is about ``b1 / 2`` for the first hundreds of steps): over 20 steps
    of the test problem with lr 1e-2, by up to 0.05 in parameters of order 1.

    Args:
      learning_rate: the step size, a number or a schedule.
      b1: decay of the first moment, in [0, 1).
      b2: decay of the second moment, in [0, 1).
      eps: added to the root of the second moment.
      eps_root: added to the second moment inside the root.
      mu_dtype: storage dtype of the first moment.
      nesterov: keep True (False is plain Adam).

    Returns:
      ``chain(scale_by_adam(..., nesterov=True), scale_by_learning_rate(learning_rate))``.
    """
    return adam(learning_rate, b1, b2, eps, eps_root, mu_dtype, nesterov=nesterov)


def nadamw(
    learning_rate: ScalarOrSchedule,
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-8,
    eps_root: float = 0.0,
    mu_dtype: Any | None = None,
    weight_decay: ScalarOrSchedule = 1e-4,
    mask: Any | None = None,
    *,
    nesterov: bool = True,
) -> GradientTransformation:
    """NAdamW, NAdam with decoupled weight decay (Dozat 2016; Loshchilov & Hutter 2019)::

        w -> w - lr * (m_hat / (sqrt(v_hat + eps_root) + eps) + weight_decay * w)     (m_hat: NAdam's)

    ``adamw(..., nesterov=True)``. ``torch.optim.NAdam(decoupled_weight_decay=True,
    momentum_decay=float('inf'))`` is the same algorithm.

    Args:
      learning_rate: the step size, a number or a schedule.
      b1: decay of the first moment, in [0, 1).
      b2: decay of the second moment, in [0, 1).
      eps: added to the root of the second moment.
      eps_root: added to the second moment inside the root.
      mu_dtype: storage dtype of the first moment.
      weight_decay: the decoupled decay (a number or a schedule).
      mask: the leaves to decay (a pytree of bools or a function of the params).
      nesterov: keep True (False is plain AdamW).

    Returns:
      ``chain(scale_by_adam(..., nesterov=True), add_decayed_weights(weight_decay, mask),
      scale_by_learning_rate(learning_rate))``.
    """
    return adamw(learning_rate, b1, b2, eps, eps_root, mu_dtype, weight_decay, mask, nesterov=nesterov)


def radam(
    learning_rate: ScalarOrSchedule,
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-8,
    eps_root: float = 0.0,
    threshold: float = 5.0,
    *,
    nesterov: bool = False,
) -> GradientTransformation:
    """Rectified Adam (Liu et al. 2020): Adam whose adaptive step is switched on and rectified
    once the variance of its second moment is tractable (``rho_t >= threshold``)::

        w -> w - lr * r_t m_hat / (sqrt(v_hat + eps_root) + eps)     (rho_t >= threshold)
        w -> w - lr * m_hat                                           (before)

    See ``scale_by_radam`` for ``rho_t``, ``r_t`` and how they are computed (more exactly than
    Optax's float32 formula). ``torch.optim.RAdam(lr, betas=(b1, b2), eps)`` is the same algorithm.

    Args:
      learning_rate: the step size, a number or a schedule.
      b1: decay of the first moment, in [0, 1).
      b2: decay of the second moment, in [0, 1).
      eps: added to the root of the second moment.
      eps_root: added to the second moment inside the root.
      threshold: the SMA length from which the rectified step is used.
      nesterov: use Nesterov's look-ahead first moment.

    Returns:
      ``chain(scale_by_radam(...), scale_by_learning_rate(learning_rate))``.
    """
    validate.non_negative("learning_rate", learning_rate)
    return chain(
        scale_by_radam(b1=b1, b2=b2, eps=eps, eps_root=eps_root, threshold=threshold, nesterov=nesterov),
        scale_by_learning_rate(learning_rate),
    )


def adamax(
    learning_rate: ScalarOrSchedule, b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8
) -> GradientTransformation:
    """Adamax, Adam with the infinity norm (Kingma & Ba 2014, Algorithm 2)::

        u_t = max(|g_t| + eps, b2 u_{t-1});   w -> w - lr * (m_t / (1 - b1**t)) / u_t

    Equal to ``torch.optim.Adamax(lr, betas=(b1, b2), eps)``; torch's ``weight_decay`` (L2) is
    ``chain(add_decayed_weights(wd), adamax(lr))``.

    Args:
      learning_rate: the step size, a number or a schedule.
      b1: decay of the first moment, in [0, 1).
      b2: decay of the running maximum, in [0, 1).
      eps: added to ``|g|``.

    Returns:
      ``chain(scale_by_adamax(b1, b2, eps), scale_by_learning_rate(learning_rate))``.
    """
    validate.non_negative("learning_rate", learning_rate)
    return chain(scale_by_adamax(b1=b1, b2=b2, eps=eps), scale_by_learning_rate(learning_rate))


def adamaxw(
    learning_rate: ScalarOrSchedule,
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-8,
    weight_decay: ScalarOrSchedule = 1e-4,
    mask: Any | None = None,
) -> GradientTransformation:
    """AdamaxW, Adamax with decoupled weight decay (Loshchilov & Hutter 2019)::

        w -> w - lr * ((m_t / (1 - b1**t)) / u_t + weight_decay * w)

    Args:
      learning_rate: the step size, a number or a schedule.
      b1: decay of the first moment, in [0, 1).
      b2: decay of the running maximum, in [0, 1).
      eps: added to ``|g|``.
      weight_decay: the decoupled decay (a number or a schedule).
      mask: the leaves to decay.

    Returns:
      ``chain(scale_by_adamax(...), add_decayed_weights(weight_decay, mask), scale_by_learning_rate(lr))``.
    """
    validate.non_negative("learning_rate", learning_rate)
    return chain(
        scale_by_adamax(b1=b1, b2=b2, eps=eps),
        add_decayed_weights(weight_decay, mask),
        scale_by_learning_rate(learning_rate),
    )


def sparse_adam(
    learning_rate: ScalarOrSchedule = 1e-3, b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8
) -> GradientTransformation:
    """Lazy Adam, ``torch.optim.SparseAdam``: only the coordinates with a nonzero gradient update
    their moments and move::

        for g_t[i] != 0:  m[i], v[i] as in Adam
                          w[i] -> w[i] - lr * sqrt(1 - b2**t) / (1 - b1**t) * m[i] / (sqrt(v[i]) + eps)
        for g_t[i] == 0:  m[i], v[i], w[i] unchanged

    ``t`` counts every update (torch's per-parameter ``step``). Not in Optax; the arguments and
    defaults are torch's (``betas=(b1, b2)``). Equal to ``torch.optim.SparseAdam(lr, betas, eps)``
    fed ``dense_grad.to_sparse()``, whose stored entries are exactly the nonzero ones; torch
    differs only for a sparse gradient that stores an explicit 0, which updates that coordinate
    there and is absent here. See ``scale_by_sparse_adam`` (``eps`` sits where torch's SparseAdam
    puts it, before the bias correction).

    Args:
      learning_rate: the step size, a number or a schedule.
      b1: decay of the first moment, in [0, 1).
      b2: decay of the second moment, in [0, 1).
      eps: added to the root of the (uncorrected) second moment.

    Returns:
      ``chain(scale_by_sparse_adam(b1, b2, eps), scale_by_learning_rate(learning_rate))``.
    """
    validate.non_negative("learning_rate", learning_rate)
    return chain(scale_by_sparse_adam(b1=b1, b2=b2, eps=eps), scale_by_learning_rate(learning_rate))


def amsgrad(
    learning_rate: ScalarOrSchedule,
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-8,
    eps_root: float = 0.0,
    mu_dtype: Any | None = None,
    bias_correction_mu: bool = True,
    bias_correction_nu: bool = True,
) -> GradientTransformation:
    """AMSGrad (Reddi et al. 2018): Adam with a non-decreasing second moment::

        v_max_t = max(v_max_{t-1}, v_t / (1 - b2**t));   w -> w - lr * m_hat / (sqrt(v_max_t + eps_root) + eps)

    ``torch.optim.Adam(amsgrad=True)`` takes the maximum of the uncorrected ``v_t`` and corrects
    it afterwards: a different (and not equivalent) rule.

    Args:
      learning_rate: the step size, a number or a schedule.
      b1: decay of the first moment, in [0, 1).
      b2: decay of the second moment, in [0, 1).
      eps: added to the root of the second moment.
      eps_root: added to the second moment inside the root.
      mu_dtype: storage dtype of the first moment.
      bias_correction_mu: correct the first moment (False: the paper's form).
      bias_correction_nu: correct the second moment before the maximum (False: the paper's form).

    Returns:
      ``chain(scale_by_amsgrad(...), scale_by_learning_rate(learning_rate))``.
    """
    validate.non_negative("learning_rate", learning_rate)
    return chain(
        scale_by_amsgrad(
            b1=b1,
            b2=b2,
            eps=eps,
            eps_root=eps_root,
            mu_dtype=mu_dtype,
            bias_correction_mu=bias_correction_mu,
            bias_correction_nu=bias_correction_nu,
        ),  # fmt: skip
        scale_by_learning_rate(learning_rate),
    )


def adabelief(
    learning_rate: ScalarOrSchedule,
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-16,
    eps_root: float = 1e-16,
    *,
    nesterov: bool = False,
) -> GradientTransformation:
    """AdaBelief (Zhuang et al. 2020): Adam whose second moment is that of ``g - m``::

        s_t = b2 s_{t-1} + (1 - b2) |g_t - m_t|^2 + eps_root;   w -> w - lr * m_hat / (sqrt(s_hat) + eps)

    Args:
      learning_rate: the step size, a number or a schedule.
      b1: decay of the first moment, in [0, 1).
      b2: decay of the belief moment, in [0, 1).
      eps: added to the root (the paper uses 1e-8).
      eps_root: added to ``s`` at every step (the paper uses 0).
      nesterov: use Nesterov's look-ahead first moment.

    Returns:
      ``chain(scale_by_belief(...), scale_by_learning_rate(learning_rate))``.
    """
    validate.non_negative("learning_rate", learning_rate)
    return chain(
        scale_by_belief(b1=b1, b2=b2, eps=eps, eps_root=eps_root, nesterov=nesterov),
        scale_by_learning_rate(learning_rate),
    )


def adan(
    learning_rate: ScalarOrSchedule,
    b1: float = 0.98,
    b2: float = 0.92,
    b3: float = 0.99,
    eps: float = 1e-8,
    eps_root: float = 1e-8,
    weight_decay: ScalarOrSchedule = 0.0,
    mask: Any | None = None,
) -> GradientTransformation:
    """Adan, adaptive Nesterov momentum (Xie et al. 2022, Algorithm 1)::

        w -> w - lr * ((m_hat + (1 - b2) v_hat) / (sqrt(n_hat + eps_root) + eps) + weight_decay * w)

    (``scale_by_adan`` gives the moments.) The decay is decoupled and added after the scaling,
    as in Optax; the paper divides the parameters by ``1 + lr * weight_decay`` instead, which
    agrees to first order in ``lr * weight_decay``. Note ``eps_root = 1e-8`` here (the
    transform's default is 0), as in Optax.

    Args:
      learning_rate: the step size, a number or a schedule.
      b1: decay of the gradients' average, in [0, 1).
      b2: decay of the gradient differences' average, in [0, 1).
      b3: decay of the second moment, in [0, 1).
      eps: added to the root of the second moment.
      eps_root: added to the second moment inside the root.
      weight_decay: the decoupled decay (a number or a schedule).
      mask: the leaves to decay.

    Returns:
      ``chain(scale_by_adan(...), add_decayed_weights(weight_decay, mask), scale_by_learning_rate(lr))``.
    """
    validate.non_negative("learning_rate", learning_rate)
    return chain(
        scale_by_adan(b1=b1, b2=b2, b3=b3, eps=eps, eps_root=eps_root),
        add_decayed_weights(weight_decay, mask),
        scale_by_learning_rate(learning_rate),
    )


def yogi(
    learning_rate: ScalarOrSchedule, b1: float = 0.9, b2: float = 0.999, eps: float = 1e-3
) -> GradientTransformation:
    """Yogi (Zaheer et al. 2018): Adam whose second moment changes additively::

        v_t = v_{t-1} - (1 - b2) sign(v_{t-1} - |g_t|^2) |g_t|^2;   w -> w - lr * m_hat / (sqrt(v_hat) + eps)

    Both moments start at 1e-6 (``scale_by_yogi``'s ``initial_accumulator_value``).

    Args:
      learning_rate: the step size, a number or a schedule.
      b1: decay of the first moment, in [0, 1).
      b2: the rate of the second moment's change, in [0, 1).
      eps: added to the root of the second moment.

    Returns:
      ``chain(scale_by_yogi(b1, b2, eps), scale_by_learning_rate(learning_rate))``.
    """
    validate.non_negative("learning_rate", learning_rate)
    return chain(scale_by_yogi(b1=b1, b2=b2, eps=eps), scale_by_learning_rate(learning_rate))


def novograd(
    learning_rate: ScalarOrSchedule,
    b1: float = 0.9,
    b2: float = 0.25,
    eps: float = 1e-6,
    eps_root: float = 0.0,
    weight_decay: float = 0.0,
) -> GradientTransformation:
    """NovoGrad (Ginsburg et al. 2019): momentum on gradients normalised by a per-layer second moment::

        n_t = b2 n_{t-1} + (1 - b2) ||g_t||^2            (one scalar per leaf; n_1 = ||g_1||^2)
        m_t = b1 m_{t-1} + g_t / (sqrt(n_t + eps_root) + eps) + weight_decay * w_t
        w -> w - lr * m_t

    Needs the parameters (``update(updates, state, params)``).

    Args:
      learning_rate: the step size, a number or a schedule.
      b1: the momentum, in [0, 1).
      b2: decay of the second moment, in [0, 1).
      eps: added to the root of the second moment.
      eps_root: added to the second moment inside the root.
      weight_decay: added to the normalised gradient (>= 0).

    Returns:
      ``chain(scale_by_novograd(...), scale_by_learning_rate(learning_rate))``.
    """
    validate.non_negative("learning_rate", learning_rate)
    return chain(
        scale_by_novograd(b1=b1, b2=b2, eps=eps, eps_root=eps_root, weight_decay=weight_decay),
        scale_by_learning_rate(learning_rate),
    )


def adadelta(
    learning_rate: ScalarOrSchedule | None = None,
    rho: float = 0.9,
    eps: float = 1e-6,
    weight_decay: ScalarOrSchedule = 0.0,
    weight_decay_mask: Any | None = None,
) -> GradientTransformation:
    """Adadelta (Zeiler 2012), with optional L2 weight decay::

        g' = g + weight_decay * w                                  (masked by weight_decay_mask)
        dx = sqrt(E[dx^2] + eps) / sqrt(E[g'^2] + eps) * g'
        w -> w - lr * dx

    ``learning_rate=None`` is the paper's method, a step of ``dx`` itself (``lr = 1``, also
    torch's default); it is stored as ``learning_rate = 1`` so it can be changed. Optax 0.2.8
    skips the scaling for ``None`` and so returns ``+dx``: a step *up* the gradient. Equal to
    ``torch.optim.Adadelta(lr, rho, eps, weight_decay)``.

    Args:
      learning_rate: the step size (a number or a schedule); None means 1.
      rho: decay of both running averages, in [0, 1).
      eps: added inside both roots.
      weight_decay: L2 decay added to the gradient before the scaling.
      weight_decay_mask: the leaves to decay.

    Returns:
      ``chain(add_decayed_weights(weight_decay, weight_decay_mask), scale_by_adadelta(rho, eps),
      scale_by_learning_rate(learning_rate))``.
    """
    validate.non_negative("learning_rate", learning_rate)
    return chain(
        add_decayed_weights(weight_decay, mask=weight_decay_mask),
        scale_by_adadelta(rho=rho, eps=eps),
        scale_by_learning_rate(1.0 if learning_rate is None else learning_rate),
    )


def adafactor(
    learning_rate: ScalarOrSchedule | None = None,
    min_dim_size_to_factor: int = 128,
    decay_rate: float = 0.8,
    decay_offset: int = 0,
    multiply_by_parameter_scale: bool = True,
    clipping_threshold: float | None = 1.0,
    momentum: float | None = None,
    dtype_momentum: Any = jnp.float32,
    weight_decay_rate: ScalarOrSchedule | None = None,
    eps: float = 1e-30,
    factored: bool = True,
    weight_decay_mask: Any | None = None,
) -> GradientTransformation:
    """Adafactor (Shazeer & Stern 2018): factored second moments, update clipping, relative steps::

        u = g / sqrt(V_hat)                 (scale_by_factored_rms: V_hat = R C / mean(R) for matrices)
        u -> u / max(1, rms(u) / clipping_threshold)                   (if clipping_threshold)
        u -> lr * u                                                    (if learning_rate)
        u -> max(rms(w), 1e-3) * u                                     (if multiply_by_parameter_scale)
        u -> m_t = momentum m_{t-1} + (1 - momentum) u                 (if momentum)
        u -> u + weight_decay_rate * w                                 (if weight_decay_rate)
        w -> w - u

    Optax's chain and defaults; the hyperparameters are stored under these arguments' names
    (``eps``, ``decay_offset``, ``clipping_threshold``, ``momentum``, ``weight_decay_rate``).
    ``torch.optim.Adafactor(lr, beta2_decay=-0.8, eps=(None, 1e-3), d, weight_decay)`` is, to
    float32 round-off (measured 6e-8 over 20 steps; its ``eps1`` clamps where ``eps`` here is
    added, which matters only for gradients below ~1e-7), ``adafactor(lambda c: min(lr, 1 /
    sqrt(c + 1)), min_dim_size_to_factor=1, clipping_threshold=d, weight_decay_rate=lr *
    weight_decay)``: torch factors the last two axes of every leaf with 2 or more axes, this
    factors the two largest, which are the same for matrices.

    Args:
      learning_rate: the step size (a number or a schedule); None: no scaling.
      min_dim_size_to_factor: factor only when the two largest axes have at least this size.
      decay_rate: the exponent of the second-moment decay ``1 - t**(-decay_rate)``.
      decay_offset: subtracted from the step in that decay (for fine-tuning).
      multiply_by_parameter_scale: scale by the parameter's rms (relative steps).
      clipping_threshold: the update clipping threshold ``d`` (>= 1 in the paper), or None.
      momentum: the EMA decay of the update, or None (no momentum, no memory).
      dtype_momentum: storage dtype of the momentum.
      weight_decay_rate: the decoupled decay (a number or a schedule), or None.
      eps: added to the squared gradients.
      factored: factor the statistics of matrices.
      weight_decay_mask: the leaves to decay.

    Returns:
      A ``chain`` of the pieces above, ending with ``scale(-1)``.
    """
    validate.non_negative("learning_rate", learning_rate)
    validate.integer_at_least("min_dim_size_to_factor", min_dim_size_to_factor, 0)
    validate.non_negative("decay_rate", decay_rate)
    validate.finite("decay_offset", decay_offset)
    validate.non_negative("eps", eps)
    if clipping_threshold is not None:
        validate.positive("clipping_threshold", clipping_threshold)
    if momentum is not None:
        validate.unit_interval("momentum", momentum)
    if weight_decay_rate is not None:
        validate.non_negative("weight_decay_rate", weight_decay_rate)
    pieces: list[GradientTransformation] = [
        rename_hyperparams(
            scale_by_factored_rms(factored, decay_rate, decay_offset, min_dim_size_to_factor, eps),
            {"epsilon": "eps", "step_offset": "decay_offset"},
        )
    ]
    if clipping_threshold is not None:
        pieces.append(rename_hyperparams(clip_by_block_rms(clipping_threshold), {"threshold": "clipping_threshold"}))
    if learning_rate is not None:
        pieces.append(scale_by_learning_rate(learning_rate, flip_sign=False))
    if multiply_by_parameter_scale:
        pieces.append(scale_by_param_block_rms())
    if momentum is not None:
        pieces.append(
            rename_hyperparams(ema(momentum, debias=False, accumulator_dtype=dtype_momentum), {"decay": "momentum"})
        )
    if weight_decay_rate is not None:
        pieces.append(
            rename_hyperparams(
                add_decayed_weights(weight_decay_rate, mask=weight_decay_mask), {"weight_decay": "weight_decay_rate"}
            )
        )
    pieces.append(scale(-1.0))
    return chain(*pieces)


def sm3(learning_rate: float, momentum: float = 0.9) -> GradientTransformation:
    """SM3 (Anil et al. 2019): Adagrad-like steps from one accumulator per axis, with momentum::

        w -> w - lr * m_t,   m_t = momentum m_{t-1} + (1 - momentum) g_t / sqrt(nu'_t + 1e-8)

    See ``scale_by_sm3`` for ``nu'_t``. Real parameters only.

    Args:
      learning_rate: the step size.
      momentum: the momentum of the output, in [0, 1).

    Returns:
      ``chain(scale_by_sm3(momentum), scale_by_learning_rate(learning_rate))`` (Optax ends with
      ``scale(-learning_rate)``: the same numbers, but here the rate is stored as
      ``learning_rate``).
    """
    validate.non_negative("learning_rate", learning_rate)
    validate.unit_interval("momentum", momentum)
    return chain(rename_hyperparams(scale_by_sm3(momentum), {"b1": "momentum"}), scale_by_learning_rate(learning_rate))


def optimistic_adam(
    learning_rate: float,
    optimism: float | None = None,
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-8,
    eps_root: float = 0.0,
    mu_dtype: Any | None = None,
    *,
    nesterov: bool = True,
) -> GradientTransformation:
    """Optimistic Adam (Daskalakis et al. 2018, "Training GANs with Optimism"), deprecated for ``optimistic_adam_v2``::

        d_t = Adam's (NAdam's, if nesterov) direction
        w -> w - ((learning_rate + optimism) d_t - optimism d_{t-1})

    Warns with a ``DeprecationWarning``, as Optax. ``learning_rate`` must be a number.

    Args:
      learning_rate: the weight of the current direction.
      optimism: the weight of the direction's change (default: ``learning_rate``).
      b1: decay of the first moment, in [0, 1).
      b2: decay of the second moment, in [0, 1).
      eps: added to the root of the second moment.
      eps_root: added to the second moment inside the root.
      mu_dtype: storage dtype of the first moment.
      nesterov: use Nesterov's look-ahead first moment.

    Returns:
      ``chain(scale_by_adam(...), scale_by_optimistic_gradient(learning_rate, optimism), scale(-1))``.
    """
    warnings.warn("optimistic_adam is deprecated, use optimistic_adam_v2 instead", DeprecationWarning, stacklevel=2)
    if callable(learning_rate):
        raise ValueError("optimistic_adam does not take a learning-rate schedule; optimistic_adam_v2 does")
    validate.non_negative("learning_rate", learning_rate)
    if optimism is None:
        optimism = learning_rate
    validate.finite("optimism", optimism)
    return chain(
        scale_by_adam(b1=b1, b2=b2, eps=eps, eps_root=eps_root, mu_dtype=mu_dtype, nesterov=nesterov),
        rename_hyperparams(
            scale_by_optimistic_gradient(alpha=learning_rate, beta=optimism),
            {"alpha": "learning_rate", "beta": "optimism"},
        ),
        scale(-1.0),
    )


def optimistic_adam_v2(
    learning_rate: ScalarOrSchedule,
    *,
    alpha: float = 1.0,
    beta: float = 1.0,
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-8,
    eps_root: float = 0.0,
    mu_dtype: Any | None = None,
    nesterov: bool = True,
) -> GradientTransformation:
    """Optimistic Adam with a learning rate apart from the optimism (Daskalakis et al. 2018)::

        d_t = Adam's (NAdam's, if nesterov) direction
        w -> w - lr * ((alpha + beta) d_t - beta d_{t-1})

    Args:
      learning_rate: the step size, a number or a schedule.
      alpha: the weight of the current direction.
      beta: the weight of the direction's change.
      b1: decay of the first moment, in [0, 1).
      b2: decay of the second moment, in [0, 1).
      eps: added to the root of the second moment.
      eps_root: added to the second moment inside the root.
      mu_dtype: storage dtype of the first moment.
      nesterov: use Nesterov's look-ahead first moment.

    Returns:
      ``chain(scale_by_adam(...), scale_by_optimistic_gradient(alpha, beta), scale_by_learning_rate(lr))``.
    """
    validate.non_negative("learning_rate", learning_rate)
    return chain(
        scale_by_adam(b1=b1, b2=b2, eps=eps, eps_root=eps_root, mu_dtype=mu_dtype, nesterov=nesterov),
        scale_by_optimistic_gradient(alpha=alpha, beta=beta),
        scale_by_learning_rate(learning_rate),
    )
