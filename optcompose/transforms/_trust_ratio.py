"""The layerwise trust ratio of LARS and LAMB."""

from __future__ import annotations

from typing import NamedTuple

import jax.numpy as jnp

from optcompose import _validate as validate
from optcompose._hyperparams import Hyperparams
from optcompose._leafwise import Leafwise, leafwise
from optcompose._tree import l2_norm


class ScaleByTrustRatioState(NamedTuple):
    hyperparams: Hyperparams


def _trust_ratio(u, *, hp, w):
    # l2_norm rescales by the largest entry, so 1e30 or 1e-30 weights do not overflow to inf / inf.
    param_norm = jnp.maximum(l2_norm(w), hp.min_norm)
    update_norm = jnp.maximum(l2_norm(u), hp.min_norm)
    either_zero = (param_norm == 0.0) | (update_norm == 0.0)
    denominator = jnp.where(either_zero, 1.0, update_norm + hp.eps)
    ratio = jnp.where(either_zero, 1.0, hp.trust_coefficient * param_norm / denominator)
    return u * ratio


def scale_by_trust_ratio(min_norm: float = 0.0, trust_coefficient: float = 1.0, eps: float = 0.0) -> Leafwise:
    """Scales each leaf's update by its trust ratio (You et al. 2017, LARS; 2019, LAMB)::

        ratio = trust_coefficient * ||w|| / (||u|| + eps)     per leaf (per layer)
        u -> ratio * u

    Norms are l2 norms over the whole leaf, floored at ``min_norm``. When either norm is 0 (a
    zero-initialised bias, a zero update) the ratio is 1, never NaN or inf.
    """
    validate.non_negative("min_norm", min_norm)
    validate.non_negative("trust_coefficient", trust_coefficient)
    validate.non_negative("eps", eps)
    return leafwise(
        _trust_ratio, ScaleByTrustRatioState,
        hyperparams={"min_norm": min_norm, "trust_coefficient": trust_coefficient, "eps": eps},
        name="scale_by_trust_ratio",
    )  # fmt: skip
