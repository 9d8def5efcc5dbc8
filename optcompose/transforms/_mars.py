"""MARS's variance-reduced gradient (Yuan et al. 2024), a pre-transform usable before any optimizer."""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from optcompose import _tree as tree_lib
from optcompose import _validate as validate
from optcompose._base import ScalarOrSchedule, Updates
from optcompose._hyperparams import Hyperparams
from optcompose._leafwise import Leafwise, leafwise


class ScaleByMarsCorrectionState(NamedTuple):
    """State of ``scale_by_mars_correction``: the step count and the previous gradient per leaf."""

    count: jax.Array
    last_grad: Updates
    hyperparams: Hyperparams


def _mars_correction(g, last_grad, *, hp, clip):
    c = g + hp.gamma * (hp.b1 / (1.0 - hp.b1)) * (g - last_grad)
    if clip:
        norm = tree_lib.l2_norm(c)
        too_long = norm > hp.max_norm
        c = jnp.where(too_long, c / jnp.where(too_long, norm, 1.0) * hp.max_norm, c)
    return c, g


def scale_by_mars_correction(
    b1: ScalarOrSchedule = 0.95,
    gamma: ScalarOrSchedule = 0.025,
    max_norm: float | None = 1.0,
    *,
    last_grad_dtype: Any | None = None,
) -> Leafwise:
    """MARS's variance-reduced gradient (Yuan et al. 2024, "MARS: Unleashing the Power of Variance
    Reduction for Training Large Models", Algorithm 1 with the approximation of Section 3.2)::

        c_t = g_t + gamma * b1 / (1 - b1) * (g_t - g_{t-1}),      g_0 = 0
        c_t -> c_t * max_norm / ||c_t||_2    where ||c_t||_2 > max_norm   (per leaf; Clip(c_t, 1))

    ``g_{t-1}`` is the previous *incoming* update (the stochastic gradient at the previous
    iterate, MARS-approx: one gradient evaluation per step). As in the authors' code
    (AGI-Arena/MARS, ``optimizers/mars.py``) the previous gradient starts at zero, so the first
    output is ``(1 + gamma * b1 / (1 - b1)) * g_1`` (then clipped). Follow it with any optimizer:
    ``chain(scale_by_mars_correction(), adamw(...))`` is MARS-AdamW (``mars``), with ``lion`` it is
    MARS-Lion. The norm is over each leaf (each parameter tensor), as the authors clip; for complex
    leaves it is the norm of ``|c|``.

    Args:
      b1: the momentum of the optimizer that follows (the correction is scaled by b1 / (1 - b1)).
      gamma: the strength of the correction (0: no correction, only the clipping). A schedule is
        allowed (the paper's gamma_t).
      max_norm: the per-leaf l2 bound (the paper's 1); ``None`` disables the clipping.
      last_grad_dtype: storage dtype of the previous gradient (default: the parameter's).

    Returns:
      A ``Leafwise`` transform whose state is ``ScaleByMarsCorrectionState``.
    """
    validate.unit_interval("b1", b1)
    validate.non_negative("gamma", gamma)
    hyperparams = {"b1": b1, "gamma": gamma}
    if max_norm is not None:
        validate.positive("max_norm", max_norm)
        hyperparams["max_norm"] = max_norm
    return leafwise(
        _mars_correction, ScaleByMarsCorrectionState, hyperparams=hyperparams,
        static={"clip": max_norm is not None}, dtypes={"last_grad": last_grad_dtype},
        name="scale_by_mars_correction",
    )  # fmt: skip
