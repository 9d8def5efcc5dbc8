"""``TrainState``: Flax linen's ``TrainState`` whose ``apply_gradients`` is one ``optcompose.step``.

A drop-in replacement for ``flax.training.train_state.TrainState`` (same fields, same
``create``, same handling of an ``overwrite_with_gradient`` collection); only the update differs:
``tx.update`` + ``apply_updates`` become ``optcompose.step``, which runs the optimizers that have a
one-pass kernel (sgd with momentum, adam, adamw, lamb, and chains ending in one) in a single pass
over memory on CPU. The numbers are those of Flax's ``TrainState``.
"""

from __future__ import annotations

from typing import Any

from flax.training import train_state
from flax.training.train_state import OVERWRITE_WITH_GRADIENT

from optcompose.speed._step import step


class TrainState(train_state.TrainState):
    """``flax.training.train_state.TrainState`` stepped by ``optcompose.step``."""

    def apply_gradients(self, *, grads: Any, **kwargs: Any) -> TrainState:
        """``step`` + 1, params and opt_state after one optimizer step on ``grads``; ``kwargs`` replaced."""
        overwrite = OVERWRITE_WITH_GRADIENT in grads
        grads_for_tx = grads["params"] if overwrite else grads
        params_for_tx = self.params["params"] if overwrite else self.params
        new_params, new_opt_state = step(self.tx, grads_for_tx, self.opt_state, params_for_tx)
        if overwrite:
            # That collection (fp8 scales) takes its "gradients" as its new values, as in Flax.
            new_params = {"params": new_params, OVERWRITE_WITH_GRADIENT: grads[OVERWRITE_WITH_GRADIENT]}
        return self.replace(step=self.step + 1, params=new_params, opt_state=new_opt_state, **kwargs)
