"""Weight decay added to the updates (coupled or decoupled, depending on where it sits)."""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from optcompose import validate
from optcompose.base import GradientTransformation, ScalarOrSchedule
from optcompose.hyperparams import Hyperparams, HyperparamSpec
from optcompose.numerics import widen
from optcompose.transforms.partition import masked
from optcompose.tree import map as tree_map
from optcompose.tree import safe_increment


class AddDecayedWeightsState(NamedTuple):
    count: jax.Array
    hyperparams: Hyperparams


def add_decayed_weights(weight_decay: ScalarOrSchedule = 0.0, mask: Any | None = None) -> GradientTransformation:
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
    spec = HyperparamSpec(weight_decay=weight_decay)

    def init(params):
        del params
        return AddDecayedWeightsState(jnp.zeros((), jnp.int32), spec.init())

    def update(updates, state, params=None, **extra_args):
        del extra_args
        if params is None:
            raise ValueError("add_decayed_weights needs params: call update(updates, state, params)")
        wd = spec.current(state.hyperparams, state.count)["weight_decay"]
        updates = tree_map(
            lambda g, w: (widen(g) + wd * widen(w)).astype(jnp.asarray(g).dtype),
            updates,
            params,
            names=("updates", "params"),
        )
        count = safe_increment(state.count)
        return updates, AddDecayedWeightsState(count, spec.advance(state.hyperparams, count))

    transform = GradientTransformation(init, update)
    return transform if mask is None else masked(transform, mask)
