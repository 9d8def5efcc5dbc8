"""Optimizers beyond Optax, each a ``chain`` of shared pieces: MARS (variance-reduced AdamW),
LaProp, and the cautious wrapper's optimizers (``cautious(adamw(...))``, ``cautious(lion(...))``)."""

from __future__ import annotations

from typing import Any

from optcompose import _validate as validate
from optcompose._base import GradientTransformation, ScalarOrSchedule, chain
from optcompose.transforms._adaptive import scale_by_adam
from optcompose.transforms._decay import add_decayed_weights
from optcompose.transforms._laprop import scale_by_laprop
from optcompose.transforms._mars import scale_by_mars_correction
from optcompose.transforms._scaling import scale_by_learning_rate


def mars(
    learning_rate: ScalarOrSchedule,
    b1: ScalarOrSchedule = 0.95,
    b2: ScalarOrSchedule = 0.99,
    eps: float = 1e-8,
    weight_decay: ScalarOrSchedule = 0.0,
    gamma: ScalarOrSchedule = 0.025,
    *,
    max_norm: float | None = 1.0,
    mask: Any | None = None,
) -> GradientTransformation:
    """MARS-AdamW (Yuan et al. 2024, "MARS: Unleashing the Power of Variance Reduction for Training
    Large Models", Algorithm 2 with the approximation of Section 3.2)::

        c_t = g_t + gamma * b1 / (1 - b1) * (g_t - g_{t-1})          (g_0 = 0)
        c_t -> c_t / ||c_t||_2  where ||c_t||_2 > 1                   (per leaf; max_norm)
        m_t = b1 m_{t-1} + (1 - b1) c_t;   v_t = b2 v_{t-1} + (1 - b2) |c_t|^2
        w -> w - lr * (m_t / (1 - b1**t) / (sqrt(v_t / (1 - b2**t)) + eps) + weight_decay * w)

    The chain ``scale_by_mars_correction(b1, gamma, max_norm) -> scale_by_adam(b1, b2, eps) ->
    add_decayed_weights(weight_decay, mask) -> scale_by_learning_rate(learning_rate)``. The
    defaults are the authors' (``MARS(lr=3e-3, betas=(0.95, 0.99), eps=1e-8, weight_decay=0.,
    gamma=0.025)`` in AGI-Arena/MARS, ``optimizers/mars.py``, the values of the paper's GPT-2
    experiments). Differences from that code, by choice: every leaf gets MARS (the authors' code
    gives 1-D parameters plain AdamW with betas (0.9, 0.95) unless ``optimize_1d=True``; use
    ``partition`` to do that), and ``b1`` appears twice in the state (in the correction and in the
    moments): ``get_hyperparams`` reports both under their paths and ``set_hyperparams(b1=...)``
    refuses to guess, naming them.

    Args:
      learning_rate: the step size (a schedule is allowed).
      b1, b2, eps: Adam's moments, on the corrected gradients.
      weight_decay: decoupled weight decay (AdamW's), masked by ``mask``.
      gamma: strength of the variance-reduction correction (0: AdamW on clipped gradients).
      max_norm: the per-leaf clipping bound of the corrected gradient (``None``: no clipping).
      mask: which leaves are decayed (a pytree of bools or a function of the params).

    Returns:
      A ``chain`` of the four pieces.
    """
    validate.non_negative("learning_rate", learning_rate)
    return chain(
        scale_by_mars_correction(b1=b1, gamma=gamma, max_norm=max_norm),
        scale_by_adam(b1=b1, b2=b2, eps=eps),
        add_decayed_weights(weight_decay, mask),
        scale_by_learning_rate(learning_rate),
    )


def laprop(
    learning_rate: ScalarOrSchedule,
    b1: ScalarOrSchedule = 0.9,
    b2: ScalarOrSchedule = 0.999,
    eps: float = 1e-15,
    weight_decay: ScalarOrSchedule = 0.0,
    mask: Any | None = None,
    *,
    mu_dtype: Any | None = None,
) -> GradientTransformation:
    """LaProp (Ziyin, Wang & Ueda 2020, "LaProp: Separating Momentum and Adaptivity in Adam")::

        n_t = b2 n_{t-1} + (1 - b2) |g_t|^2
        m_t = b1 m_{t-1} + (1 - b1) g_t / (sqrt(n_t / (1 - b2**t)) + eps)
        w -> w - lr * (m_t / (1 - b1**t) + weight_decay * w)

    The chain ``scale_by_laprop(b1, b2, eps) -> add_decayed_weights(weight_decay, mask) ->
    scale_by_learning_rate(learning_rate)``. Defaults: lr is required (the authors' code defaults to
    4e-4), b1 = 0.9, b2 = 0.999, eps = 1e-15 (the signature of ``LaProp`` in
    Z-T-WANG/LaProp-Optimizer). With a constant learning rate this is the authors' update; their
    code folds the learning rate into the momentum (a changed lr reaches the step through the
    momentum) and subtracts ``weight_decay * w`` without the learning rate, whereas here the decay
    is AdamW's ``lr * weight_decay * w``, so that a learning-rate schedule scales both.

    Args:
      learning_rate: the step size (a schedule is allowed).
      b1, b2, eps: see ``scale_by_laprop``.
      weight_decay: decoupled weight decay, masked by ``mask``.
      mask: which leaves are decayed.
      mu_dtype: storage dtype of the momentum.

    Returns:
      A ``chain`` of the three pieces.
    """
    validate.non_negative("learning_rate", learning_rate)
    return chain(
        scale_by_laprop(b1=b1, b2=b2, eps=eps, mu_dtype=mu_dtype),
        add_decayed_weights(weight_decay, mask),
        scale_by_learning_rate(learning_rate),
    )
