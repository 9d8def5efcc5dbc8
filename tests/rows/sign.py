"""Rows: the sign family and the SGD variants (optcompose/optimizers/_sign.py, _sgd_variants.py) and
their pieces (optcompose/transforms/_sign.py, _step_rules.py).

References from the papers (reference_adaptive.py); decays ``1 - 2**-k`` so that the ``optax``
twins hold the same float32 numbers. ASGD (torch's, not in Optax) has no twin, nor has Rprop:
Optax 0.2.8's ``scale_by_rprop`` returns the previous step's update (tests/optimizers/test_sign.py
checks that exact relation instead).
"""

from __future__ import annotations

import jax.numpy as jnp
import reference_adaptive as ra
from cases import Case

from optcompose._base import chain
from optcompose.optimizers import _sgd_variants as sv
from optcompose.optimizers import _sign as so
from optcompose.transforms import _sign as st
from optcompose.transforms import _step_rules as sr
from optcompose.transforms._scaling import scale

LR = 0.05
B1, B2 = 0.875, 0.9921875


def _optax():
    import optax

    return optax


def descend(tx):
    return chain(tx, scale(-LR))


def optax_descend(make):
    return lambda: _optax().chain(make(_optax()), _optax().scale(-LR))


def lr_schedule(count):
    return 0.05 * 0.9**count


def strict_lr_schedule(count):
    """``lr_schedule`` with the count cast to float32 itself, so the row traces under strict promotion."""
    return 0.05 * 0.9 ** jnp.asarray(count, jnp.float32)


def loss_value(step):
    """The loss handed to Polyak's step at each step (a stand-in: any positive sequence will do)."""
    return {"value": jnp.asarray(0.5 + 0.25 * 0.9**step, jnp.float32)}


def ref_loss_value(step):
    return 0.5 + 0.25 * 0.9**step


OPTIMIZER_ROWS = [
    Case(
        "sign_sgd",
        lambda: so.sign_sgd(LR),
        lambda: ra.ref_sign_sgd(LR),
        optax=lambda: _optax().sign_sgd(LR),
    ),
    Case(
        "signum_schedule",
        lambda: so.signum(lr_schedule, beta=B1),
        lambda: ra.ref_signum(lr_schedule, B1),
        optax=lambda: _optax().signum(lr_schedule, beta=B1),
    ),
    Case(
        "signum_low_precision",
        lambda: so.signum(LR, beta=B1),
        lambda: ra.ref_signum(LR, B1),
        low_precision=True,  # no twin: Optax's bfloat16 momentum rounds differently, and sign() amplifies it
    ),
    Case(
        "lion",
        lambda: so.lion(LR, B1, B2, weight_decay=0.1),
        lambda: ra.ref_lion(LR, B1, B2, 0.1),
        optax=lambda: _optax().lion(LR, B1, B2, weight_decay=0.1),
    ),
    Case(
        "lion_bf16_mu_low_precision",
        lambda: so.lion(lr_schedule, B1, B2, mu_dtype=jnp.bfloat16, weight_decay=0.1),
        lambda: ra.ref_lion(lr_schedule, B1, B2, 0.1),
        low_precision=True,
    ),
    Case(
        "rprop",
        lambda: so.rprop(0.01, eta_minus=0.5, eta_plus=1.25, min_step_size=1e-4, max_step_size=0.05),
        lambda: ra.ref_rprop(0.01, 0.5, 1.25, 1e-4, 0.05),
        complex_ok=False,
    ),
    Case(
        "noisy_sgd",
        lambda: sv.noisy_sgd(LR, eta=0.01, gamma=0.5, key=7),
        lambda: ra.ref_noisy_sgd(LR, 0.01, 0.5, 7),
        optax=lambda: _optax().noisy_sgd(LR, eta=0.01, gamma=0.5, key=7),
        complex_ok=False,
    ),
    Case(
        "fromage",
        lambda: sv.fromage(0.1, min_norm=1e-6),
        lambda: ra.ref_fromage(0.1, 1e-6),
        optax=lambda: _optax().fromage(0.1, min_norm=1e-6),
    ),
    Case(
        "fromage_schedule",
        lambda: sv.fromage(lr_schedule, min_norm=0.5),
        lambda: ra.ref_fromage(lr_schedule, 0.5),
        optax=lambda: _optax().fromage(lr_schedule, min_norm=0.5),
    ),
    Case(
        "polyak_sgd",
        lambda: sv.polyak_sgd(max_learning_rate=0.5, scaling=0.25, f_min=0.125, eps=1e-3),
        lambda: ra.ref_polyak_sgd(0.5, 0.25, 0.125, 1e-3, values=ref_loss_value),
        optax=lambda: _optax().polyak_sgd(max_learning_rate=0.5, scaling=0.25, f_min=0.125, eps=1e-3),
        extra_args=loss_value,
    ),
    Case(
        "polyak_sgd_plus_schedule",
        lambda: sv.polyak_sgd(max_learning_rate=0.5, scaling=lr_schedule, f_min=0.7, variant="sps+"),
        lambda: ra.ref_polyak_sgd(0.5, lr_schedule, 0.7, variant="sps+", values=ref_loss_value),
        optax=lambda: _optax().polyak_sgd(max_learning_rate=0.5, scaling=lr_schedule, f_min=0.7, variant="sps+"),
        extra_args=loss_value,
    ),
    Case(
        "optimistic_gradient_descent",
        lambda: sv.optimistic_gradient_descent(LR, alpha=0.75, beta=0.5),
        lambda: ra.ref_optimistic_gradient_descent(LR, 0.75, 0.5),
        optax=lambda: _optax().optimistic_gradient_descent(LR, alpha=0.75, beta=0.5),
    ),
    # torch.optim.ASGD (not in Optax). lambd = 0.5 makes both the shrinkage and the decay of eta
    # visible in 20 steps; the averaged parameters (state only) are checked in test_sgd_variants.py.
    Case(
        "asgd_schedule_weight_decay",
        lambda: sv.asgd(strict_lr_schedule, lambd=0.5, alpha=0.75, t0=5, weight_decay=0.25),
        lambda: ra.ref_asgd(strict_lr_schedule, 0.5, 0.75, 5, 0.25),
    ),
]

TRANSFORM_ROWS = [
    Case(
        "scale_by_sign",
        lambda: descend(st.scale_by_sign()),
        lambda: ra.ref_sign_sgd(LR),
        optax=optax_descend(lambda o: o.scale_by_sign()),
    ),
    Case(
        "scale_by_lion_smooth",
        lambda: descend(st.scale_by_lion(B1, B2, mode="smooth", smooth_beta=2.0)),
        lambda: ra.ref_lion(LR, B1, B2, 0.0, mode="smooth", smooth_beta=2.0),
        optax=optax_descend(lambda o: o.scale_by_lion(B1, B2, mode="smooth", smooth_beta=2.0)),
        complex_ok=False,
    ),
    Case(
        "scale_by_lion_refined",
        lambda: descend(st.scale_by_lion(B1, B2, mode="refined")),
        lambda: ra.ref_lion(LR, B1, B2, 0.0, mode="refined"),
        optax=optax_descend(lambda o: o.scale_by_lion(B1, B2, mode="refined")),
    ),
    Case(
        "scale_by_rprop",
        lambda: chain(st.scale_by_rprop(0.02, 0.25, 1.5, 1e-3, 0.1), scale(-1.0)),
        lambda: ra.ref_rprop(0.02, 0.25, 1.5, 1e-3, 0.1),
        complex_ok=False,
    ),
    Case(
        "add_noise_low_precision",
        lambda: descend(sr.add_noise(0.02, 0.55, key=3)),
        lambda: ra.ref_noisy_sgd(LR, 0.02, 0.55, 3),
        low_precision=True,
        complex_ok=False,
    ),
    Case(
        "normalize_by_update_norm",
        lambda: descend(sr.normalize_by_update_norm(0.5, 1e-3)),
        lambda: ra.ref_normalize_by_update_norm(0.5, 1e-3, LR),
        optax=optax_descend(lambda o: o.normalize_by_update_norm(0.5, 1e-3)),
    ),
    Case(
        "scale_by_polyak",
        lambda: chain(scale(-0.25), sr.scale_by_polyak(0.125, 0.5, 1e-3)),
        lambda: ra.ref_polyak_sgd(0.5, 0.25, 0.125, 1e-3, values=ref_loss_value),
        optax=lambda: _optax().chain(_optax().scale(-0.25), _optax().scale_by_polyak(0.125, 0.5, 1e-3)),
        extra_args=loss_value,
    ),
    Case(
        "scale_by_optimistic_gradient",
        lambda: descend(sr.scale_by_optimistic_gradient(0.75, 0.5)),
        lambda: ra.ref_optimistic_gradient_descent(LR, 0.75, 0.5),
        optax=optax_descend(lambda o: o.scale_by_optimistic_gradient(0.75, 0.5)),
    ),
]

ROWS = OPTIMIZER_ROWS + TRANSFORM_ROWS
