"""Momentum (``trace``) and exponential moving averages (``ema``)."""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from optcompose import validate
from optcompose.base import GradientTransformation, ScalarOrSchedule
from optcompose.hyperparams import Hyperparams, HyperparamSpec
from optcompose.numerics import bias_correction_factor, widen
from optcompose.tree import map as tree_map
from optcompose.tree import safe_increment, unzip, zeros_like


class TraceState(NamedTuple):
    count: jax.Array
    trace: Any
    hyperparams: Hyperparams


class EmaState(NamedTuple):
    count: jax.Array
    ema: Any
    hyperparams: Hyperparams


def trace(
    decay: ScalarOrSchedule, nesterov: bool = False, accumulator_dtype: Any | None = None
) -> GradientTransformation:
    """Heavy-ball momentum (Polyak 1964) and its Nesterov form (Sutskever et al. 2013).

    With ``g`` the incoming update and ``beta`` the decay (``momentum``)::

        v_t = beta * v_{t-1} + g_t
        u_t = v_t                       (heavy ball)
        u_t = g_t + beta * v_t          (nesterov=True)

    This is exactly ``torch.optim.SGD``'s momentum buffer with ``dampening=0`` (PyTorch starts
    the buffer at ``g_1``, the same as ``beta * 0 + g_1``). ``decay`` may be a schedule, as in the
    one-cycle policy's inverse momentum cycling.
    """
    validate.unit_interval("decay", decay)
    spec = HyperparamSpec(decay=decay)

    def init(params):
        return TraceState(jnp.zeros((), jnp.int32), zeros_like(params, accumulator_dtype), spec.init())

    def update(updates, state, params=None, **extra_args):
        del params, extra_args
        beta = spec.current(state.hyperparams, state.count)["decay"]

        def leaf(g, v):
            new_v = beta * widen(v) + widen(g)
            out = widen(g) + beta * new_v if nesterov else new_v
            return out.astype(jnp.asarray(g).dtype), new_v.astype(v.dtype)

        pairs = tree_map(leaf, updates, state.trace, names=("updates", "trace"))
        updates, new_trace = unzip(pairs, updates, 2)
        count = safe_increment(state.count)
        return updates, TraceState(count, new_trace, spec.advance(state.hyperparams, count))

    return GradientTransformation(init, update)


def ema(decay: ScalarOrSchedule, debias: bool = True, accumulator_dtype: Any | None = None) -> GradientTransformation:
    """Exponential moving average of the updates, optionally debiased (Kingma & Ba 2014, §3)::

        m_t = decay * m_{t-1} + (1 - decay) * g_t
        u_t = m_t / (1 - decay**t)      (debias=True)
        u_t = m_t                       (debias=False)
    """
    validate.unit_interval("decay", decay)
    spec = HyperparamSpec(decay=decay)

    def init(params):
        return EmaState(jnp.zeros((), jnp.int32), zeros_like(params, accumulator_dtype), spec.init())

    def update(updates, state, params=None, **extra_args):
        del params, extra_args
        beta = spec.current(state.hyperparams, state.count)["decay"]
        count = safe_increment(state.count)
        correction = bias_correction_factor(beta, count) if debias else jnp.ones((), jnp.float32)

        def leaf(g, m):
            new_m = beta * widen(m) + (1.0 - beta) * widen(g)
            return (new_m * correction).astype(jnp.asarray(g).dtype), new_m.astype(m.dtype)

        pairs = tree_map(leaf, updates, state.ema, names=("updates", "ema"))
        updates, new_ema = unzip(pairs, updates, 2)
        return updates, EmaState(count, new_ema, spec.advance(state.hyperparams, count))

    return GradientTransformation(init, update)

