"""Weight decay added to the updates (coupled or decoupled, depending on where it sits)."""

from __future__ import annotations

from typing import Any, NamedTuple

import jax

from optcompose import _validate as validate
from optcompose._base import GradientTransformationExtraArgs, ScalarOrSchedule
from optcompose._hyperparams import Hyperparams
from optcompose._leafwise import leafwise
from optcompose.transforms._partition import masked


class AddDecayedWeightsState(NamedTuple):
    count: jax.Array
    hyperparams: Hyperparams


def _add_decayed_weights(g, *, hp, w):
    return g + hp.weight_decay * w


def add_decayed_weights(
    weight_decay: ScalarOrSchedule = 0.0, mask: Any | None = None
) -> GradientTransformationExtraArgs:
    """Adds ``weight_decay * params`` to the updates: ``u -> u + lambda * w``.

    Its position in a chain decides what it means (Loshchilov & Hutter 2019):

    * before the adaptive scaling, ``chain(add_decayed_weights(wd), adam(lr))``, the decay flows
      through Adam's moments: L2 regularisation, ``torch.optim.Adam(weight_decay=wd)``;
    * after it and before the learning rate, as in ``adamw``, it is decoupled weight decay:
      ``w -> w - lr * (adam_step + wd * w)``, ``torch.optim.AdamW``.

    ``mask`` (a pytree of bools or a function of the params) limits the decay to some leaves,
    typically excluding biases and normalization scales.
    """
    validate.non_negative("weight_decay", weight_decay)
    transform = leafwise(
        _add_decayed_weights, AddDecayedWeightsState, hyperparams={"weight_decay": weight_decay},
        name="add_decayed_weights",
    )  # fmt: skip
    return transform if mask is None else masked(transform, mask)
