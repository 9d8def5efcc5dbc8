"""Momentum (``trace``) and exponential moving averages (``ema``)."""

from __future__ import annotations

from typing import Any, NamedTuple

import jax

from optcompose import _validate as validate
from optcompose._base import ScalarOrSchedule, Updates
from optcompose._hyperparams import Hyperparams
from optcompose._leafwise import Leafwise, ema_step, leafwise
from optcompose._numerics import bias_correction_factor


class TraceState(NamedTuple):
    count: jax.Array
    trace: Updates
    hyperparams: Hyperparams


def _trace(g, v, *, hp, nesterov):
    v = hp.decay * v + g
    return (g + hp.decay * v if nesterov else v), v


def trace(decay: ScalarOrSchedule, nesterov: bool = False, accumulator_dtype: Any | None = None) -> Leafwise:
    """Heavy-ball momentum (Polyak 1964) and its Nesterov form (Sutskever et al. 2013).

    With ``g`` the incoming update and ``beta`` the decay (``momentum``)::

        v_t = beta * v_{t-1} + g_t
        u_t = v_t                       (heavy ball)
        u_t = g_t + beta * v_t          (nesterov=True)

    This is exactly ``torch.optim.SGD``'s momentum buffer with ``dampening=0`` (PyTorch starts
    the buffer at ``g_1``, the same as ``beta * 0 + g_1``). ``decay`` may be a schedule, as in the
    one-cycle policy's inverse momentum cycling; ``decay=1`` (no forgetting) is allowed, as in Optax.
    """
    validate.unit_interval("decay", decay, closed_right=True)
    return leafwise(
        _trace, TraceState, hyperparams={"decay": decay}, dtypes={"trace": accumulator_dtype},
        static={"nesterov": nesterov}, name="trace",
    )  # fmt: skip


class EmaState(NamedTuple):
    count: jax.Array
    ema: Updates
    hyperparams: Hyperparams


def _ema(g, m, *, hp, t, debias):
    m = ema_step(m, g, hp.decay)
    return (m * bias_correction_factor(hp.decay, t) if debias else m), m


def ema(decay: ScalarOrSchedule, debias: bool = True, accumulator_dtype: Any | None = None) -> Leafwise:
    """Exponential moving average of the updates, optionally debiased (Kingma & Ba 2014, §3)::

        m_t = decay * m_{t-1} + (1 - decay) * g_t
        u_t = m_t / (1 - decay**t)      (debias=True)
        u_t = m_t                       (debias=False)
    """
    validate.unit_interval("decay", decay)
    return leafwise(
        _ema, EmaState, hyperparams={"decay": decay}, dtypes={"ema": accumulator_dtype},
        static={"debias": debias}, name="ema",
    )  # fmt: skip
