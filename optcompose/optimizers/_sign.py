"""Sign-based optimizers of Optax: signSGD, Signum, Lion and Rprop, each a ``chain`` of its pieces.

torch.optim equivalent (verified in ``tests/optimizers/test_sign.py``)::

    torch.optim.Rprop(lr, etas=(eta_minus, eta_plus), step_sizes=(min_step_size, max_step_size))
        rprop(lr, eta_minus, eta_plus, min_step_size, max_step_size)
"""

from __future__ import annotations

from typing import Any

from optcompose import _validate as validate
from optcompose._base import GradientTransformation, ScalarOrSchedule, chain
from optcompose._hyperparams import rename_hyperparams
from optcompose.transforms._decay import add_decayed_weights
from optcompose.transforms._momentum import ema
from optcompose.transforms._scaling import scale, scale_by_learning_rate
from optcompose.transforms._sign import scale_by_lion, scale_by_rprop, scale_by_sign


def sign_sgd(learning_rate: ScalarOrSchedule) -> GradientTransformation:
    """signSGD (Bernstein et al. 2018, "signSGD: Compressed Optimisation for Non-Convex Problems")::

        w -> w - lr * sign(g)

    Args:
      learning_rate: the step size, a number or a schedule.

    Returns:
      ``chain(scale_by_sign(), scale_by_learning_rate(learning_rate))``.
    """
    validate.non_negative("learning_rate", learning_rate)
    return chain(scale_by_sign(), scale_by_learning_rate(learning_rate))


def signum(
    learning_rate: ScalarOrSchedule, beta: float = 0.9, accumulator_dtype: Any | None = None
) -> GradientTransformation:
    """Signum, signSGD with momentum (Bernstein et al. 2018, Algorithm 3)::

        m_t = beta m_{t-1} + (1 - beta) g_t;   w -> w - lr * sign(m_t)

    The momentum is not debiased (the sign does not change).

    Args:
      learning_rate: the step size, a number or a schedule.
      beta: the momentum's decay, in [0, 1) (stored as ``beta``).
      accumulator_dtype: storage dtype of the momentum.

    Returns:
      ``chain(ema(beta, debias=False), scale_by_sign(), scale_by_learning_rate(learning_rate))``.
    """
    validate.non_negative("learning_rate", learning_rate)
    validate.unit_interval("beta", beta)
    momentum = rename_hyperparams(ema(beta, debias=False, accumulator_dtype=accumulator_dtype), {"decay": "beta"})
    return chain(momentum, scale_by_sign(), scale_by_learning_rate(learning_rate))


def lion(
    learning_rate: ScalarOrSchedule,
    b1: float = 0.9,
    b2: float = 0.99,
    mu_dtype: Any | None = None,
    weight_decay: ScalarOrSchedule = 1e-3,
    mask: Any | None = None,
) -> GradientTransformation:
    """Lion (Chen et al. 2023, "Symbolic Discovery of Optimization Algorithms", Algorithm 2)::

        w -> w - lr * (sign(b1 m_{t-1} + (1 - b1) g_t) + weight_decay * w)
        m_t = b2 m_{t-1} + (1 - b2) g_t

    Args:
      learning_rate: the step size, a number or a schedule (typically 3-10x below AdamW's).
      b1: the interpolation for the update, in [0, 1).
      b2: decay of the momentum, in [0, 1).
      mu_dtype: storage dtype of the momentum.
      weight_decay: the decoupled decay (a number or a schedule).
      mask: the leaves to decay.

    Returns:
      ``chain(scale_by_lion(b1, b2, mu_dtype), add_decayed_weights(weight_decay, mask),
      scale_by_learning_rate(learning_rate))``.
    """
    validate.non_negative("learning_rate", learning_rate)
    return chain(
        scale_by_lion(b1=b1, b2=b2, mu_dtype=mu_dtype),
        add_decayed_weights(weight_decay, mask),
        scale_by_learning_rate(learning_rate),
    )


def rprop(
    learning_rate: float,
    eta_minus: float = 0.5,
    eta_plus: float = 1.2,
    min_step_size: float = 1e-6,
    max_step_size: float = 50.0,
) -> GradientTransformation:
    """Rprop, resilient backpropagation, iRprop- (Riedmiller & Braun 1993; Igel & Hüsken 2003)::

        w -> w - delta_t * sign(g_t)     (0 for a coordinate whose gradient just changed sign)

    with per-coordinate step sizes ``delta`` grown by ``eta_plus`` while the sign is kept and
    shrunk by ``eta_minus`` when it flips (``scale_by_rprop``). Equal to ``torch.optim.Rprop(lr,
    etas=(eta_minus, eta_plus), step_sizes=(min_step_size, max_step_size))`` for ``lr`` within
    the step-size bounds. Optax 0.2.8 applies each step one update late (its first update is 0);
    see ``scale_by_rprop``.

    Args:
      learning_rate: the initial step size (a number).
      eta_minus: the step-size factor after a sign change.
      eta_plus: the step-size factor while the sign is kept.
      min_step_size: the smallest step size.
      max_step_size: the largest step size.

    Returns:
      ``chain(scale_by_rprop(...), scale(-1))``.
    """
    return chain(
        scale_by_rprop(
            learning_rate=learning_rate,
            eta_minus=eta_minus,
            eta_plus=eta_plus,
            min_step_size=min_step_size,
            max_step_size=max_step_size,
        ),  # fmt: skip
        scale(-1.0),
    )
