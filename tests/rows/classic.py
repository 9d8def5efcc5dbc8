"""Rows: the classic optimizers (optcompose/optimizers/_classic.py), their flat-state and chained forms.

Each row's reference is written from the paper (reference.py), not as a chain of the library's
pieces, so the rows also check that each optimizer is the right chain. ``optax`` builds Optax's
optimizer with the same numbers, for the trajectory parity test.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import reference as ref
import trajectory as tr
from cases import Case

import optcompose as oc


def not_scalar(path, leaf):
    return np.ndim(leaf) >= 1


def not_bias(path, leaf):
    return "bias" not in path


# Schedules cast the int32 count to float32 themselves, so they trace under strict dtype promotion.


def lr_schedule(count):
    return 0.1 * 0.85 ** jnp.asarray(count, jnp.float32)


def cosine_schedule(count):
    """A cosine over 10 steps from 0.02, then 0: jnp arithmetic on the count."""
    return 0.02 * (1.0 + jnp.cos(jnp.pi * jnp.minimum(jnp.asarray(count, jnp.float32), 10.0) / 10)) / 2


ADAM = {"b1": 0.9, "b2": 0.99, "eps": 1e-3}
WD = 0.2


def _optax():
    import optax

    return optax


ROWS = [
    # ------------------------------------------------------------------------------------- sgd
    Case("sgd", lambda: oc.sgd(0.1), lambda: ref.ref_sgd(0.1), optax=lambda: _optax().sgd(0.1)),
    Case(
        "sgd_momentum",
        lambda: oc.sgd(0.05, momentum=0.9),
        lambda: ref.ref_sgd(0.05, 0.9),
        optax=lambda: _optax().sgd(0.05, momentum=0.9),
    ),
    Case(
        "sgd_nesterov",
        lambda: oc.sgd(0.05, momentum=0.9, nesterov=True),
        lambda: ref.ref_sgd(0.05, 0.9, True),
        optax=lambda: _optax().sgd(0.05, momentum=0.9, nesterov=True),
    ),
    Case(
        "sgd_momentum_schedule",
        lambda: oc.sgd(lr_schedule, momentum=0.9),
        lambda: ref.ref_sgd(lr_schedule, 0.9),
        optax=lambda: _optax().sgd(lr_schedule, momentum=0.9),
    ),
    Case(
        "sgd_nesterov_cosine",
        lambda: oc.sgd(cosine_schedule, momentum=0.9, nesterov=True),
        lambda: ref.ref_sgd(cosine_schedule, 0.9, True),
        optax=lambda: _optax().sgd(cosine_schedule, momentum=0.9, nesterov=True),
    ),
    Case(
        "sgd_momentum_low_precision",
        lambda: oc.sgd(0.05, momentum=0.9),
        lambda: ref.ref_sgd(0.05, 0.9),
        low_precision=True,
    ),
    # No Optax twin: Optax multiplies the bfloat16 trace by the momentum in bfloat16; we widen first.
    # Not for complex parameters: a bfloat16 buffer cannot hold a complex momentum.
    Case("sgd_bf16_trace", lambda: oc.sgd(0.05, momentum=0.9, accumulator_dtype=jnp.bfloat16), complex_ok=False),
    Case(
        "l2_then_sgd",
        lambda: oc.chain(oc.add_decayed_weights(1e-3), oc.sgd(0.05, momentum=0.9)),
        lambda: ref.ref_chain(ref.ref_add_decayed_weights(1e-3), ref.ref_sgd(0.05, 0.9)),
        optax=lambda: _optax().chain(_optax().add_decayed_weights(1e-3), _optax().sgd(0.05, momentum=0.9)),
    ),
    # --------------------------------------------------------------------------------- adagrad
    Case("adagrad", lambda: oc.adagrad(0.2), lambda: ref.ref_adagrad(0.2), optax=lambda: _optax().adagrad(0.2)),
    Case(
        "adagrad_torch_form",
        lambda: oc.adagrad(0.2, initial_accumulator_value=0.0, eps=1e-10, eps_in_sqrt=False),
        lambda: ref.ref_adagrad(0.2, 0.0, 1e-10, eps_in_sqrt=False),
    ),
    # --------------------------------------------------------------------------------- rmsprop
    Case(
        "rmsprop",
        lambda: oc.rmsprop(0.02, decay=0.9, eps=0.01),
        lambda: ref.ref_rmsprop(0.02, 0.9, 0.01),
        optax=lambda: _optax().rmsprop(0.02, decay=0.9, eps=0.01),
    ),
    Case(
        "rmsprop_defaults",
        lambda: oc.rmsprop(0.01),
        lambda: ref.ref_rmsprop(0.01),
        optax=lambda: _optax().rmsprop(0.01),
    ),
    Case(
        "rmsprop_centered_momentum",
        lambda: oc.rmsprop(0.02, decay=0.9, eps=0.1, eps_in_sqrt=False, centered=True, momentum=0.8),
        lambda: ref.ref_rmsprop(0.02, 0.9, 0.1, eps_in_sqrt=False, centered=True, momentum=0.8),
        optax=lambda: _optax().rmsprop(0.02, decay=0.9, eps=0.1, eps_in_sqrt=False, centered=True, momentum=0.8),
    ),
    Case(
        "rmsprop_centered_bias_correction",
        lambda: oc.rmsprop(0.01, centered=True, eps=0.05, momentum=0.9, bias_correction=True),
        lambda: ref.ref_chain(
            ref.ref_scale_by_stddev(0.9, 0.05, bias_correction=True),
            ref.ref_scale_by_learning_rate(0.01),
            ref.ref_trace(0.9),
        ),
        optax=lambda: _optax().rmsprop(0.01, centered=True, eps=0.05, momentum=0.9, bias_correction=True),
    ),
    # ------------------------------------------------------------------------------------ adam
    Case(
        "adam",
        lambda: oc.adam(0.05, **ADAM),
        lambda: ref.ref_adam(0.05, **ADAM),
        optax=lambda: _optax().adam(0.05, **ADAM),
    ),
    Case("adam_defaults", lambda: oc.adam(0.01), lambda: ref.ref_adam(0.01), optax=lambda: _optax().adam(0.01)),
    Case(
        "adam_low_precision",
        lambda: oc.adam(0.05, **ADAM),
        lambda: ref.ref_adam(0.05, **ADAM),
        low_precision=True,
    ),
    Case(
        "nadam_eps_root",
        lambda: oc.adam(0.01, eps_root=1e-6, nesterov=True),
        lambda: ref.ref_chain(
            ref.ref_scale_by_adam(eps_root=1e-6, nesterov=True), ref.ref_scale_by_learning_rate(0.01)
        ),
        optax=lambda: _optax().adam(0.01, eps_root=1e-6, nesterov=True),
    ),
    Case("adam_bf16_moments", lambda: oc.adam(0.01, mu_dtype=jnp.bfloat16, nu_dtype=jnp.bfloat16), complex_ok=False),
    Case(
        "adam_l2",
        lambda: oc.chain(oc.add_decayed_weights(WD), oc.adam(0.05, **ADAM)),
        lambda: ref.ref_adam(0.05, **ADAM, weight_decay=WD, decoupled=False),
        optax=lambda: _optax().chain(_optax().add_decayed_weights(WD), _optax().adam(0.05, **ADAM)),
    ),
    # ----------------------------------------------------------------------------------- adamw
    Case(
        "adamw",
        lambda: oc.adamw(0.05, **ADAM, weight_decay=WD),
        lambda: ref.ref_adam(0.05, **ADAM, weight_decay=WD, decoupled=True),
        optax=lambda: _optax().adamw(0.05, **ADAM, weight_decay=WD),
    ),
    Case(
        "adamw_defaults",
        lambda: oc.adamw(0.01, weight_decay=0.1),
        lambda: ref.ref_adam(0.01, weight_decay=0.1),
        optax=lambda: _optax().adamw(0.01, weight_decay=0.1),
    ),
    Case(
        "adamw_mask",
        lambda: oc.adamw(0.05, **ADAM, weight_decay=WD, mask=tr.tree_rule(tr.is_matrix)),
        lambda: ref.ref_adam(0.05, **ADAM, weight_decay=WD, mask=tr.is_matrix),
        optax=lambda: _optax().adamw(0.05, **ADAM, weight_decay=WD, mask=tr.tree_rule(tr.is_matrix)),
    ),
    Case(
        "adamw_mask_tree_low_precision",
        lambda: oc.adamw(0.05, **ADAM, weight_decay=WD, mask=tr.explicit_mask(tr.make_params(True))),
        lambda: ref.ref_adam(0.05, **ADAM, weight_decay=WD, mask=tr.is_matrix),
        low_precision=True,
        problem_only=True,
    ),
    Case(
        "adamw_mask_cosine",
        lambda: oc.adamw(cosine_schedule, b1=0.8, weight_decay=0.1, mask=tr.tree_rule(tr.is_matrix)),
        lambda: ref.ref_chain(
            ref.ref_scale_by_adam(b1=0.8),
            ref.ref_add_decayed_weights(0.1, tr.is_matrix),
            ref.ref_scale_by_learning_rate(cosine_schedule),
        ),
        optax=lambda: _optax().adamw(cosine_schedule, b1=0.8, weight_decay=0.1, mask=tr.tree_rule(tr.is_matrix)),
    ),
    Case("adamw_bf16_nu", lambda: oc.adamw(0.01, nu_dtype=jnp.bfloat16)),
    Case(
        "clip_then_adamw",
        lambda: oc.chain(oc.clip_by_global_norm(1.0), oc.adamw(0.01, weight_decay=0.1)),
        lambda: ref.ref_chain(ref.ref_clip_by_global_norm(1.0), ref.ref_adam(0.01, weight_decay=0.1)),
        optax=lambda: _optax().chain(_optax().clip_by_global_norm(1.0), _optax().adamw(0.01, weight_decay=0.1)),
    ),
    # ------------------------------------------------------------------------------------ lars
    Case(
        "lars_masks",
        lambda: oc.lars(
            1.0,
            weight_decay=WD,
            weight_decay_mask=tr.tree_rule(tr.is_matrix),
            trust_coefficient=0.02,
            eps=0.01,
            trust_ratio_mask=tr.tree_rule(not_scalar),
            momentum=0.9,
        ),
        lambda: ref.ref_lars(1.0, WD, tr.is_matrix, 0.02, 0.01, not_scalar, 0.9),
        optax=lambda: _optax().lars(
            1.0,
            weight_decay=WD,
            weight_decay_mask=tr.tree_rule(tr.is_matrix),
            trust_coefficient=0.02,
            eps=0.01,
            trust_ratio_mask=tr.tree_rule(not_scalar),
            momentum=0.9,
        ),
    ),
    Case(
        "lars_schedule",
        lambda: oc.lars(lambda count: 10 * lr_schedule(count), weight_decay=WD, trust_coefficient=0.02),
        lambda: ref.ref_lars(lambda count: 10 * lr_schedule(count), WD, None, 0.02, 0.0, None, 0.9),
        optax=lambda: _optax().lars(lambda count: 10 * lr_schedule(count), weight_decay=WD, trust_coefficient=0.02),
    ),
    Case(
        "lars_nesterov",
        lambda: oc.lars(1.0, weight_decay=WD, trust_coefficient=0.02, momentum=0.8, nesterov=True),
        lambda: ref.ref_lars(1.0, WD, None, 0.02, 0.0, None, 0.8, nesterov=True),
        optax=lambda: _optax().lars(1.0, weight_decay=WD, trust_coefficient=0.02, momentum=0.8, nesterov=True),
    ),
    Case(
        "lars_defaults",
        lambda: oc.lars(0.5, weight_decay=1e-3),
        lambda: ref.ref_lars(0.5, 1e-3),
        optax=lambda: _optax().lars(0.5, weight_decay=1e-3),
    ),
    # ------------------------------------------------------------------------------------ lamb
    Case(
        "lamb",
        lambda: oc.lamb(0.02, 0.9, 0.99, eps=1e-6, weight_decay=WD, mask=tr.tree_rule(tr.is_matrix)),
        lambda: ref.ref_lamb(0.02, 0.9, 0.99, 1e-6, 0.0, WD, tr.is_matrix),
        optax=lambda: _optax().lamb(0.02, 0.9, 0.99, eps=1e-6, weight_decay=WD, mask=tr.tree_rule(tr.is_matrix)),
    ),
    Case(
        "lamb_low_precision",
        lambda: oc.lamb(0.02, 0.9, 0.99, eps=1e-6, weight_decay=WD),
        lambda: ref.ref_lamb(0.02, 0.9, 0.99, 1e-6, 0.0, WD),
        low_precision=True,
    ),
    Case(
        "lamb_masks_cosine",
        lambda: oc.lamb(
            cosine_schedule, weight_decay=0.01, mask=tr.tree_rule(tr.is_matrix), trust_ratio_mask=tr.tree_rule(not_bias)
        ),
        lambda: ref.ref_lamb(cosine_schedule, weight_decay=0.01, mask=tr.is_matrix, trust_ratio_mask=not_bias),
    ),
    # --------------------------------------------------------- flat state (optcompose.flat_state)
    Case(
        "sgd_momentum_flat",
        lambda: oc.flat_state(oc.sgd(0.05, momentum=0.9)),
        lambda: ref.ref_sgd(0.05, 0.9),
    ),
    Case(
        "adam_l2_flat",
        lambda: oc.flat_state(oc.chain(oc.add_decayed_weights(WD), oc.adam(0.05, **ADAM))),
        lambda: ref.ref_adam(0.05, **ADAM, weight_decay=WD, decoupled=False),
    ),
    Case(
        "adamw_mask_flat",
        lambda: oc.flat_state(oc.adamw(0.05, **ADAM, weight_decay=WD, mask=tr.tree_rule(tr.is_matrix))),
        lambda: ref.ref_adam(0.05, **ADAM, weight_decay=WD, mask=tr.is_matrix),
    ),
    Case(
        "adam_low_precision_flat",
        lambda: oc.flat_state(oc.adam(0.05, **ADAM)),
        lambda: ref.ref_adam(0.05, **ADAM),
        low_precision=True,
    ),
    Case(
        "lamb_flat",
        lambda: oc.flat_state(oc.lamb(0.02, 0.9, 0.99, eps=1e-6, weight_decay=WD, mask=tr.tree_rule(tr.is_matrix))),
        lambda: ref.ref_lamb(0.02, 0.9, 0.99, 1e-6, 0.0, WD, tr.is_matrix),
    ),
]
