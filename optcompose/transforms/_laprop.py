"""LaProp's scaling: momentum of the normalized gradient (Ziyin, Wang & Ueda 2020)."""

from __future__ import annotations

from typing import Any, NamedTuple

import jax

from optcompose import _validate as validate
from optcompose._base import ScalarOrSchedule, Updates
from optcompose._hyperparams import Hyperparams
from optcompose._leafwise import Leafwise, abs_sq, ema_step, leafwise
from optcompose._numerics import bias_correction_factor
from optcompose.transforms._adaptive import divide_by_root


class ScaleByLapropState(NamedTuple):
    """State of ``scale_by_laprop``: the count, the momentum of normalized gradients, the second moment."""

    count: jax.Array
    mu: Updates
    nu: Updates
    hyperparams: Hyperparams


def _laprop(g, mu, nu, *, hp, t):
    nu = ema_step(nu, abs_sq(g), hp.b2)
    normalized = divide_by_root(g, nu * bias_correction_factor(hp.b2, t), hp.eps, False)
    mu = ema_step(mu, normalized, hp.b1)
    return mu * bias_correction_factor(hp.b1, t), mu, nu


def scale_by_laprop(
    b1: ScalarOrSchedule = 0.9,
    b2: ScalarOrSchedule = 0.999,
    eps: float = 1e-15,
    *,
    mu_dtype: Any | None = None,
    nu_dtype: Any | None = None,
) -> Leafwise:
    """LaProp's scaling (Ziyin, Wang & Ueda 2020, "LaProp: Separating Momentum and Adaptivity in
    Adam", Algorithm 1): the momentum averages gradients *already divided* by their RMS::

        n_t = b2 * n_{t-1} + (1 - b2) * |g_t|^2
        m_t = b1 * m_{t-1} + (1 - b1) * g_t / (sqrt(n_t / (1 - b2**t)) + eps)
        u_t = m_t / (1 - b1**t)

    Unlike Adam (which divides the momentum by the RMS), b1 and b2 are independent: any
    ``b1 < 1`` is stable whatever ``b2``. A coordinate with ``n_t = 0`` and ``eps = 0`` contributes
    0 (not NaN). The defaults b1 = 0.9, b2 = 0.999, eps = 1e-15 are the authors' (the signature of
    ``LaProp`` in Z-T-WANG/LaProp-Optimizer); eps = 1e-15 is representable in float32 and bf16.

    Args:
      b1: the momentum of the normalized gradient (the paper's mu).
      b2: the decay of the squared-gradient average (the paper's nu).
      eps: added to the root of the (bias-corrected) second moment.
      mu_dtype, nu_dtype: storage dtypes of the two moments (default: the parameter's).

    Returns:
      A ``Leafwise`` transform whose state is ``ScaleByLapropState``.
    """
    validate.unit_interval("b1", b1)
    validate.unit_interval("b2", b2)
    validate.non_negative("eps", eps)
    return leafwise(
        _laprop, ScaleByLapropState, hyperparams={"b1": b1, "b2": b2, "eps": eps},
        dtypes={"mu": mu_dtype, "nu": nu_dtype}, name="scale_by_laprop",
    )  # fmt: skip
