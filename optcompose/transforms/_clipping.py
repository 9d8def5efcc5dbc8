"""Clipping updates element-wise or by their global norm."""

from __future__ import annotations

from typing import NamedTuple

import jax.numpy as jnp

from optcompose import _validate as validate
from optcompose._base import GradientTransformationExtraArgs
from optcompose._hyperparams import Hyperparams, HyperparamSpec, hyperparam_dtype
from optcompose._leafwise import Leafwise, leafwise
from optcompose._numerics import scale_tree
from optcompose._tree import global_norm


class ClipState(NamedTuple):
    hyperparams: Hyperparams


class ClipByGlobalNormState(NamedTuple):
    hyperparams: Hyperparams


def _clip(u, *, hp):
    return jnp.clip(u, -hp.max_delta, hp.max_delta)


def clip(max_delta: float) -> Leafwise:
    """Clips every coordinate to ``[-max_delta, max_delta]``."""
    validate.positive("max_delta", max_delta)
    return leafwise(_clip, ClipState, hyperparams={"max_delta": max_delta}, name="clip")


def clip_by_global_norm(max_norm: float) -> GradientTransformationExtraArgs:
    """Rescales all updates together when their joint l2 norm exceeds ``max_norm`` (Pascanu et al. 2013)::

        n = sqrt(sum over all leaves of sum u^2)
        u -> u * max_norm / n    if n > max_norm, else u

    Matches ``torch.nn.utils.clip_grad_norm_`` (without its 1e-6 in the denominator). A zero norm
    leaves the updates unchanged (no division by zero).
    """
    validate.positive("max_norm", max_norm)
    spec = HyperparamSpec(max_norm=max_norm)

    def init(params):
        return ClipByGlobalNormState(spec.init(hyperparam_dtype(params)))

    def update(updates, state, params=None, **extra_args):
        del params, extra_args
        bound = state.hyperparams["max_norm"]
        norm = global_norm(updates)
        factor = jnp.where(norm > bound, bound / jnp.where(norm > 0, norm, 1.0), 1.0)
        return scale_tree(updates, factor), state

    return GradientTransformationExtraArgs(init, update)
