"""Clipping updates element-wise or by their global norm."""

from __future__ import annotations

from typing import NamedTuple

import jax.numpy as jnp

from optcompose import validate
from optcompose.base import GradientTransformation
from optcompose.hyperparams import Hyperparams, HyperparamSpec
from optcompose.numerics import scale_tree, widen
from optcompose.tree import global_norm
from optcompose.tree import map as tree_map


class ClipState(NamedTuple):
    hyperparams: Hyperparams


class ClipByGlobalNormState(NamedTuple):
    hyperparams: Hyperparams


def clip(max_delta: float) -> GradientTransformation:
    """Clips every coordinate to ``[-max_delta, max_delta]``."""
    validate.positive("max_delta", max_delta)
    spec = HyperparamSpec(max_delta=max_delta)

    def init(params):
        del params
        return ClipState(spec.init())

    def update(updates, state, params=None, **extra_args):
        del params, extra_args
        bound = state.hyperparams["max_delta"]
        clipped = tree_map(
            lambda u: jnp.clip(widen(u), -bound, bound).astype(jnp.asarray(u).dtype), updates, names=("updates",)
        )
        return clipped, state

    return GradientTransformation(init, update)


def clip_by_global_norm(max_norm: float) -> GradientTransformation:
    """Rescales all updates together when their joint l2 norm exceeds ``max_norm`` (Pascanu et al. 2013)::

        n = sqrt(sum over all leaves of sum u^2)
        u -> u * max_norm / n    if n > max_norm, else u

    Matches ``torch.nn.utils.clip_grad_norm_`` (without its 1e-6 in the denominator). A zero norm
    leaves the updates unchanged (no division by zero).
    """
    validate.positive("max_norm", max_norm)
    spec = HyperparamSpec(max_norm=max_norm)

    def init(params):
        del params
        return ClipByGlobalNormState(spec.init())

    def update(updates, state, params=None, **extra_args):
        del params, extra_args
        bound = state.hyperparams["max_norm"]
        norm = global_norm(updates)
        factor = jnp.where(norm > bound, bound / jnp.where(norm > 0, norm, 1.0), 1.0)
        return scale_tree(updates, factor), state

    return GradientTransformation(init, update)
