"""Averaged SGD (Polyak & Juditsky 1992), as ``torch.optim.ASGD``: a decaying step and the running
average of the iterates, kept in the state for evaluation."""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from optcompose import _validate as validate
from optcompose._base import OptState, Params, ScalarOrSchedule, Updates
from optcompose._hyperparams import Hyperparams
from optcompose._leafwise import Leafwise, leafwise


class ScaleByAsgdState(NamedTuple):
    """State of ``scale_by_asgd``.

    Attributes:
      count: the number of updates so far.
      ax: the averaged parameters (``torch.optim.ASGD``'s ``state[p]['ax']``), in the parameters'
        dtypes; read them with ``asgd_averaged_params``.
      hyperparams: ``learning_rate``, ``lambd``, ``alpha`` and ``t0`` (the values for the next update).
    """

    count: jax.Array
    ax: Updates
    hyperparams: Hyperparams


def _asgd(g, ax, *, hp, t, w):
    steps = jnp.asarray(t - 1).astype(hp.learning_rate.dtype)  # updates before this one
    eta = hp.learning_rate / (1.0 + hp.lambd * hp.learning_rate * steps) ** hp.alpha
    mu = 1.0 / jnp.maximum(1.0, steps - hp.t0)
    new_w = w * (1.0 - hp.lambd * eta) - eta * g
    ax = jnp.where(mu == 1.0, new_w, ax + mu * (new_w - ax))
    return new_w - w, ax


def scale_by_asgd(
    learning_rate: ScalarOrSchedule = 0.01,
    lambd: float = 1e-4,
    alpha: float = 0.75,
    t0: float = 1e6,
) -> Leafwise:
    """Averaged SGD's step and average (Polyak & Juditsky 1992; ``torch.optim.ASGD``)::

        s      = t - 1                                    (updates before this one)
        eta_t  = lr / (1 + lambd * lr * s)**alpha
        mu_t   = 1 / max(1, s - t0)
        w_t    = w_{t-1} * (1 - lambd * eta_t) - eta_t * g_t
        ax_t   = w_t                        if mu_t == 1      (before averaging starts)
        ax_t   = ax_{t-1} + mu_t (w_t - ax_{t-1})           otherwise

    The update is ``w_t - w_{t-1}`` (the step, learning rate included: put this transform last in
    a chain), and ``ax`` in the state is the running average (``asgd_averaged_params``): for an
    integer ``t0``, ``ax_t = w_t`` up to ``t = t0 + 2`` and then the mean of ``w_{t0+2}, ..., w_t``.
    ``torch.optim.ASGD`` computes ``eta`` and ``mu`` after each step from the new step count and
    uses them in the next one: the same numbers as above. With a learning-rate schedule,
    ``lr = schedule(t - 1)`` (the library's rule); torch forms ``eta`` from the learning rate of the
    previous step, so under a torch LR scheduler it lags one step.

    torch's ``weight_decay`` (L2, added to the gradient) is ``add_decayed_weights`` placed before
    this transform, as in ``asgd``.

    Needs the parameters (``update(updates, state, params)``). ``ax`` assumes the parameters move
    by exactly this transform's update (nothing after it in the chain).

    Args:
      learning_rate: the base step size ``lr``, a number or a schedule (>= 0).
      lambd: the decay term (>= 0): both the parameter shrinkage and the decay of ``eta``.
      alpha: the power of the ``eta`` decay (>= 0).
      t0: the number of updates after which averaging starts (finite).

    Returns:
      A ``Leafwise`` transform with state ``ScaleByAsgdState``.
    """
    validate.non_negative("learning_rate", learning_rate)
    validate.non_negative("lambd", lambd)
    validate.non_negative("alpha", alpha)
    validate.finite("t0", t0)
    return leafwise(
        _asgd, ScaleByAsgdState,
        hyperparams={"learning_rate": learning_rate, "lambd": lambd, "alpha": alpha, "t0": t0},
        name="scale_by_asgd",
    )  # fmt: skip


def asgd_averaged_params(state: OptState) -> Params:
    """The averaged parameters ``ax`` of an ASGD optimizer (``torch.optim.ASGD``'s ``state[p]['ax']``).

    Evaluate the model at them; keep training the parameters themselves. Until averaging starts
    (the first ``t0 + 2`` updates) ``ax`` equals the current parameters, then it is the mean of the
    iterates since; before the first update it is 0.

    Args:
      state: the ``ScaleByAsgdState``, or any optimizer state holding exactly one (the state of
        ``asgd(...)``, or of a chain containing it).

    Returns:
      ``ax``, shaped and typed like the parameters.

    Raises:
      ValueError: if ``state`` holds no ``ScaleByAsgdState`` or more than one.
    """
    found = [
        node
        for node in jax.tree.leaves(state, is_leaf=lambda x: isinstance(x, ScaleByAsgdState))
        if isinstance(node, ScaleByAsgdState)
    ]
    if len(found) != 1:
        raise ValueError(
            "asgd_averaged_params needs a state holding exactly one ScaleByAsgdState (the state of asgd(...)), "
            f"found {len(found)} in {type(state).__name__}; if there are several, pass the part of the state you want"
        )
    return found[0].ax
