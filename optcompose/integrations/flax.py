"""Flax's training states stepped by ``optcompose.step``: linen ``TrainState`` and nnx ``Optimizer``.

Flax's ``TrainState.apply_gradients`` and ``nnx.Optimizer.update`` call ``tx.update`` then
``apply_updates``, so optcompose's one-pass step never runs for them. These two are drop-in
replacements (same fields, same constructors, same arguments); only the update differs:
``tx.update`` + ``apply_updates`` become ``optcompose.step``, which runs the optimizers that have a
one-pass kernel (sgd with momentum, adam, adamw, lamb, and chains ending in one) in a single pass
over memory on CPU, and everything else as Flax does. The numbers are Flax's (to float32 round-off:
under ``jit`` XLA may contract the general road's multiply-adds, the kernel does not). A Flax user
changes one name:

* linen: ``flax.training.train_state.TrainState`` -> ``optcompose.TrainState``. Its ``params`` may
  also be flat (``optcompose.flat_params``; apply with ``state.apply_fn({'params':
  state.params.tree}, x)`` and take ``jax.grad`` with respect to the ``FlatParams``): ``create``
  builds the optimizer state from the tree they hold;
* nnx: ``nnx.Optimizer(model, tx, wrt=nnx.Param)`` -> ``optcompose.Optimizer(model, tx,
  wrt=nnx.Param)``; ``optimizer.update(model, grads)`` as in Flax.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx
from flax.training import train_state
from flax.training.train_state import OVERWRITE_WITH_GRADIENT

from optcompose.speed._flat_params import contains_flat_params, expand_params
from optcompose.speed._step import step

__all__ = ["Optimizer", "TrainState"]


def _has_overwrite(tree: Any) -> bool:
    return not isinstance(tree, jax.Array) and OVERWRITE_WITH_GRADIENT in tree


class TrainState(train_state.TrainState):
    """``flax.training.train_state.TrainState`` stepped by ``optcompose.step``."""

    def apply_gradients(self, *, grads: Any, **kwargs: Any) -> TrainState:
        """``step`` + 1, params and opt_state after one optimizer step on ``grads``; ``kwargs`` replaced."""
        overwrite = _has_overwrite(grads)
        grads_for_tx = grads["params"] if overwrite else grads
        params_for_tx = self.params["params"] if overwrite else self.params
        new_params, new_opt_state = step(self.tx, grads_for_tx, self.opt_state, params_for_tx)
        if overwrite:
            # That collection (fp8 scales) takes its "gradients" as its new values, as in Flax.
            new_params = {"params": new_params, OVERWRITE_WITH_GRADIENT: grads[OVERWRITE_WITH_GRADIENT]}
        return self.replace(step=self.step + 1, params=new_params, opt_state=new_opt_state, **kwargs)

    @classmethod
    def create(cls, *, apply_fn: Any, params: Any, tx: Any, **kwargs: Any) -> TrainState:
        """Step 0 and ``tx``'s state for ``params`` (for ``FlatParams``: for the tree they hold)."""
        params_for_tx = params["params"] if _has_overwrite(params) else params
        if contains_flat_params(params_for_tx):  # jitted: eagerly, reading the tree is one program per leaf count
            opt_state = jax.jit(lambda p: tx.init(expand_params(p)))(params_for_tx)
        else:
            opt_state = tx.init(params_for_tx)
        return cls(step=0, apply_fn=apply_fn, params=params, tx=tx, opt_state=opt_state, **kwargs)


class Optimizer(nnx.Optimizer):
    """``flax.nnx.Optimizer`` whose ``update`` is one ``optcompose.step``.

    ``Optimizer(model, tx, wrt=nnx.Param)`` builds the same state as ``nnx.Optimizer``;
    ``update(model, grads, **kwargs)`` updates the model's ``wrt`` variables and the optimizer state in
    place and counts the step, as Flax's does.
    """

    def update(self, model: Any, grads: Any, /, **kwargs: Any) -> Any:
        """One optimizer step on ``grads`` (from ``nnx.grad``); ``kwargs`` go to ``tx.update``.

        Returns the change applied to the parameters, ``new - old`` (Flax returns ``tx``'s updates,
        which the one-pass step never materialises; under ``jit`` an unused result costs nothing).
        """
        graph = getattr(self, "graph", None)
        param_arrays = nnx.as_pure(nnx.state(model, self.wrt, graph=graph))
        grad_arrays = nnx.as_pure(nnx.state(grads, self.wrt, graph=graph))
        opt_state_arrays = nnx.as_pure(self.opt_state)
        new_params, new_opt_state = step(self.tx, grad_arrays, opt_state_arrays, param_arrays, **nnx.as_pure(kwargs))
        nnx.update(model, new_params)
        nnx.update(self.opt_state, nnx.state(new_opt_state, graph=graph))
        self.step[...] += 1
        return jax.tree.map(jnp.subtract, new_params, param_arrays)
