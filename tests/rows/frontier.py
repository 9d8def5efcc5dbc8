"""Rows: the frontier optimizers (optcompose/optimizers/_frontier.py) and their pieces
(optcompose/transforms/_mars.py, _laprop.py, _cautious.py, _low_precision.py).

None of them is in Optax; the ``optax`` twins are built from Optax's own pieces (``adamw``,
``lion``, ``scale_by_rms``, ``ema``) plus, where Optax has no piece, a few lines of jnp written
here from the papers (the MARS correction, the cautious mask). Decays are ``1 - 2**-k`` as in
rows/adaptive.py, so the float32 hyperparameters hold the same numbers on both sides.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import reference_frontier as rf
import trajectory as tr
from cases import Case

from optcompose._base import chain
from optcompose.optimizers._classic import adamw
from optcompose.optimizers._frontier import laprop, mars
from optcompose.optimizers._sign import lion
from optcompose.transforms._adaptive import scale_by_adam
from optcompose.transforms._cautious import cautious
from optcompose.transforms._decay import add_decayed_weights
from optcompose.transforms._low_precision import low_precision_updates
from optcompose.transforms._mars import scale_by_mars_correction
from optcompose.transforms._scaling import scale, scale_by_learning_rate

LR = 0.05
B1, B2 = 0.9375, 0.9921875
WD = 0.2
ADAM = {"b1": 0.875, "b2": B2, "eps": 1e-3}


def _optax():
    import optax

    return optax


def lr_schedule(count):
    return 0.05 * 0.9**count


def optax_mars_correction(b1, gamma, max_norm=1.0):
    """The MARS correction (Yuan et al. 2024) as an Optax ``GradientTransformation``, in jnp."""
    optax = _optax()

    def update(updates, last, params=None):
        def leaf(g, prev):
            c = g + gamma * (b1 / (1 - b1)) * (g - prev)
            if max_norm is None:
                return c
            norm = jnp.sqrt(jnp.sum(jnp.abs(c.astype(jnp.promote_types(c.dtype, jnp.float32))) ** 2))
            return jnp.where(norm > max_norm, c / norm * max_norm, c).astype(g.dtype)

        return jax.tree.map(leaf, updates, last), updates

    return optax.GradientTransformation(lambda params: jax.tree.map(jnp.zeros_like, params), update)


def optax_cautious(inner):
    """Liang et al. 2024's mask around an Optax optimizer, in jnp."""
    optax = _optax()

    def update(grads, state, params=None):
        updates, state = inner.update(grads, state, params)

        def leaf(u, g):
            keep = jnp.real(u * jnp.conj(g)) < 0
            return jnp.where(keep, u * (keep.size / (jnp.sum(keep) + 1.0)), 0.0).astype(u.dtype)

        return jax.tree.map(leaf, updates, grads), state

    return optax.GradientTransformation(inner.init, update)


def optax_laprop(lr, b1, b2, eps, weight_decay=0.0, mask=None):
    optax = _optax()
    return optax.chain(
        optax.scale_by_rms(decay=b2, eps=eps, eps_in_sqrt=False, bias_correction=True),
        optax.ema(b1, debias=True),
        optax.add_decayed_weights(weight_decay, mask),
        optax.scale_by_learning_rate(lr),
    )


MARS = {"b1": B1, "b2": B2, "eps": 1e-3, "gamma": 0.025}
LAPROP = {"b1": 0.875, "b2": B2, "eps": 1e-3}
LION = {"b1": 0.875, "b2": B2, "weight_decay": WD}

ROWS = [
    # ------------------------------------------------------------------------------------ mars
    Case("mars", lambda: mars(LR, **MARS), lambda: rf.ref_mars(LR, **MARS),
         optax=lambda: _optax().chain(optax_mars_correction(B1, 0.025), _optax().adamw(LR, B1, B2, 1e-3,
                                                                                        weight_decay=0.0))),
    Case("mars_wd_mask_gamma",
         lambda: mars(LR, **{**MARS, "gamma": 0.5}, weight_decay=WD, mask=tr.tree_rule(tr.is_matrix)),
         lambda: rf.ref_mars(LR, **{**MARS, "gamma": 0.5}, weight_decay=WD, mask=tr.is_matrix),
         optax=lambda: _optax().chain(
             optax_mars_correction(B1, 0.5),
             _optax().adamw(LR, B1, B2, 1e-3, weight_decay=WD, mask=tr.tree_rule(tr.is_matrix)))),
    Case("mars_schedule_low_precision", lambda: mars(lr_schedule, **MARS), lambda: rf.ref_mars(lr_schedule, **MARS),
         low_precision=True,
         optax=lambda: _optax().chain(optax_mars_correction(B1, 0.025), _optax().adamw(lr_schedule, B1, B2, 1e-3,
                                                                                        weight_decay=0.0))),
    Case("mars_correction_unclipped", lambda: chain(scale_by_mars_correction(B1, 0.125, max_norm=None), scale(-LR)),
         lambda: rf.ref_mars_correction(B1, 0.125, None, -LR),
         optax=lambda: _optax().chain(optax_mars_correction(B1, 0.125, None), _optax().scale(-LR))),
    Case("mars_correction_clip_half", lambda: chain(scale_by_mars_correction(B1, 0.125, max_norm=0.5), scale(-LR)),
         lambda: rf.ref_mars_correction(B1, 0.125, 0.5, -LR),
         optax=lambda: _optax().chain(optax_mars_correction(B1, 0.125, 0.5), _optax().scale(-LR))),
    # ---------------------------------------------------------------------------------- laprop
    Case("laprop", lambda: laprop(LR, **LAPROP), lambda: rf.ref_laprop(LR, **LAPROP),
         optax=lambda: optax_laprop(LR, **LAPROP)),
    Case("laprop_default_eps_wd_mask", lambda: laprop(LR, 0.875, B2, weight_decay=WD, mask=tr.tree_rule(tr.is_matrix)),
         lambda: rf.ref_laprop(LR, 0.875, B2, weight_decay=WD, mask=tr.is_matrix),
         optax=lambda: optax_laprop(LR, 0.875, B2, 1e-15, WD, tr.tree_rule(tr.is_matrix))),
    Case("laprop_schedule_low_precision", lambda: laprop(lr_schedule, **LAPROP),
         lambda: rf.ref_laprop(lr_schedule, **LAPROP),
         low_precision=True, optax=lambda: optax_laprop(lr_schedule, **LAPROP)),
    # -------------------------------------------------------------------------------- cautious
    Case("cautious_adamw", lambda: cautious(adamw(LR, **ADAM, weight_decay=WD)),
         lambda: rf.ref_cautious_adamw(LR, **ADAM, weight_decay=WD),
         optax=lambda: optax_cautious(_optax().adamw(LR, **ADAM, weight_decay=WD))),
    Case("cautious_adamw_authors_decay",
         lambda: chain(cautious(scale_by_adam(**ADAM), updates="direction"), add_decayed_weights(WD),
                       scale_by_learning_rate(LR)),
         lambda: rf.ref_cautious_adamw(LR, **ADAM, weight_decay=WD, decay_masked=False)),
    Case("cautious_adamw_low_precision", lambda: cautious(adamw(LR, **ADAM, weight_decay=WD)),
         lambda: rf.ref_cautious_adamw(LR, **ADAM, weight_decay=WD), low_precision=True,
         optax=lambda: optax_cautious(_optax().adamw(LR, **ADAM, weight_decay=WD))),
    Case("cautious_lion", lambda: cautious(lion(LR, **LION)), lambda: rf.ref_cautious_lion(LR, **LION),
         optax=lambda: optax_cautious(_optax().lion(LR, **LION))),
    # ---------------------------------------------------------------------- low-precision updates
    Case("kahan_adamw_low_precision", lambda: low_precision_updates(adamw(LR, **ADAM, weight_decay=WD), "kahan"),
         lambda: rf.ref_kahan(_ref_adamw()),
         low_precision=True, complex_ok=False),
]


def _ref_adamw():
    import reference

    return reference.ref_adam(LR, **ADAM, weight_decay=WD, decoupled=True)
