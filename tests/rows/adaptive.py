"""Rows: the Adam family and the other adaptive optimizers (optcompose/optimizers/_adaptive.py) and
their pieces (optcompose/transforms/_adam_variants.py, _factored.py).

References are written from the papers (reference_adaptive.py). Decays are ``1 - 2**-k`` (0.875,
0.9921875 ...), whose complements are exact in float32, so the float32 hyperparameters hold
Optax's numbers exactly and the ``optax`` twins agree to float32 round-off. Pieces that do not
scale by a learning rate are followed by ``scale(-0.05)``, as in rows/transforms.py.
"""

from __future__ import annotations

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import reference as ref
import reference_adaptive as ra
import trajectory as tr
from cases import Case

from optcompose._base import chain, stateless
from optcompose.optimizers import _adaptive as opt
from optcompose.transforms import _adam_variants as av
from optcompose.transforms import _factored as fa
from optcompose.transforms._scaling import scale

LR = 0.05
B1, B2 = 0.875, 0.9921875
WD = 0.2


def _optax():
    import optax

    return optax


def descend(tx):
    return chain(tx, scale(-LR))


def optax_descend(make):
    return lambda: _optax().chain(make(_optax()), _optax().scale(-LR))


def lr_schedule(count):
    return 0.05 * 0.9**count


def _quiet_optimistic_adam(module, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return module.optimistic_adam(*args, **kwargs)


def _drop_small(updates, params):
    """Exact zeros where |g| < 1 (about half the coordinates): sparse gradients for sparse_adam."""
    return jax.tree.map(lambda g: jnp.where(jnp.abs(g) < 1.0, jnp.zeros_like(g), g), updates)


def _ref_drop_small(g, w):
    return np.where(np.abs(g) < 1.0, 0.0, g)


ADAM = {"b1": B1, "b2": B2, "eps": 1e-3}
RADAM = {"b1": B1, "b2": 0.75, "eps": 1e-3, "eps_root": 1e-4, "threshold": 4.5, "nesterov": True}
ADAN = {"b1": 0.96875, "b2": B1, "b3": B2, "eps": 1e-3, "eps_root": 1e-4, "weight_decay": WD}

OPTIMIZER_ROWS = [
    # ----------------------------------------------------------------------------- nadam(w)
    Case(
        "nadam",
        lambda: opt.nadam(LR, **ADAM),
        lambda: ra.ref_nadam(LR, **ADAM),
        optax=lambda: _optax().nadam(LR, **ADAM),
    ),
    Case(
        "nadam_schedule_low_precision",
        lambda: opt.nadam(lr_schedule, **ADAM),
        lambda: ra.ref_nadam(lr_schedule, **ADAM),
        low_precision=True,
        optax=lambda: _optax().nadam(lr_schedule, **ADAM),
    ),
    Case(
        "nadamw_mask",
        lambda: opt.nadamw(LR, **ADAM, weight_decay=WD, mask=tr.tree_rule(tr.is_matrix)),
        lambda: ra.ref_nadam(LR, **ADAM, weight_decay=WD, mask=tr.is_matrix),
        optax=lambda: _optax().nadamw(LR, **ADAM, weight_decay=WD, mask=tr.tree_rule(tr.is_matrix)),
    ),
    # ---------------------------------------------------------------------------------- radam
    # b2 = 0.75 keeps rho_t of order 1 (rho_inf = 7): Optax's float32 rho_t is then exact too.
    Case(
        "radam",
        lambda: opt.radam(LR, b1=B1, b2=0.75, eps=1e-3),
        lambda: ra.ref_radam(LR, B1, 0.75, 1e-3),
        optax=lambda: _optax().radam(LR, b1=B1, b2=0.75, eps=1e-3),
    ),
    Case(
        "radam_nesterov_threshold_schedule",
        lambda: opt.radam(lr_schedule, **RADAM),
        lambda: ra.ref_radam(lr_schedule, B1, 0.75, 1e-3, 1e-4, 4.5, nesterov=True),
        optax=lambda: _optax().radam(lr_schedule, **RADAM),
    ),
    # --------------------------------------------------------------------------------- adamax
    Case(
        "adamax",
        lambda: opt.adamax(LR, **ADAM),
        lambda: ra.ref_adamax(LR, **ADAM),
        optax=lambda: _optax().adamax(LR, **ADAM),
    ),
    Case(
        "adamaxw_low_precision",
        lambda: opt.adamaxw(LR, **ADAM, weight_decay=WD),
        lambda: ra.ref_adamax(LR, **ADAM, weight_decay=WD),
        low_precision=True,
        optax=lambda: _optax().adamaxw(LR, **ADAM, weight_decay=WD),
    ),
    # ---------------------------------------------------------------------------- sparse_adam
    # torch.optim.SparseAdam (not in Optax), on gradients with exact zeros (absent coordinates).
    Case(
        "sparse_adam_sparse_gradients",
        lambda: chain(stateless(_drop_small), opt.sparse_adam(LR, **ADAM)),
        lambda: ref.ref_chain(ref.ref_stateless(_ref_drop_small), ra.ref_sparse_adam(LR, **ADAM)),
    ),
    # -------------------------------------------------------------------------------- amsgrad
    Case(
        "amsgrad",
        lambda: opt.amsgrad(LR, **ADAM),
        lambda: ra.ref_amsgrad(LR, **ADAM),
        optax=lambda: _optax().amsgrad(LR, **ADAM),
    ),
    Case(
        "amsgrad_paper",
        lambda: opt.amsgrad(LR, **ADAM, eps_root=1e-4, bias_correction_mu=False, bias_correction_nu=False),
        lambda: ra.ref_amsgrad(LR, **ADAM, eps_root=1e-4, bias_correction_mu=False, bias_correction_nu=False),
        optax=lambda: _optax().amsgrad(LR, **ADAM, eps_root=1e-4, bias_correction_mu=False, bias_correction_nu=False),
    ),
    # ------------------------------------------------------------------------------ adabelief
    Case(
        "adabelief",
        lambda: opt.adabelief(LR, **ADAM, eps_root=1e-4),
        lambda: ra.ref_adabelief(LR, **ADAM, eps_root=1e-4),
        optax=lambda: _optax().adabelief(LR, **ADAM, eps_root=1e-4),
    ),
    Case(
        "adabelief_nesterov_low_precision",
        lambda: opt.adabelief(LR, **ADAM, eps_root=1e-4, nesterov=True),
        lambda: ra.ref_adabelief(LR, **ADAM, eps_root=1e-4, nesterov=True),
        low_precision=True,
        optax=lambda: _optax().adabelief(LR, **ADAM, eps_root=1e-4, nesterov=True),
    ),
    # ----------------------------------------------------------------------------------- adan
    Case(
        "adan_mask",
        lambda: opt.adan(LR, **ADAN, mask=tr.tree_rule(tr.is_matrix)),
        lambda: ra.ref_adan(LR, 0.96875, B1, B2, 1e-3, 1e-4, weight_decay=WD, mask=tr.is_matrix),
        optax=lambda: _optax().adan(LR, **ADAN, mask=tr.tree_rule(tr.is_matrix)),
    ),
    Case(
        "adan_defaults",
        lambda: opt.adan(0.01),
        lambda: ra.ref_adan(0.01),
        optax=lambda: _optax().adan(0.01),
    ),
    # ----------------------------------------------------------------------------------- yogi
    Case(
        "yogi",
        lambda: opt.yogi(LR, **ADAM),
        lambda: ra.ref_yogi(LR, **ADAM),
        optax=lambda: _optax().yogi(LR, **ADAM),
    ),
    # ------------------------------------------------------------------------------- novograd
    Case(
        "novograd",
        lambda: opt.novograd(LR, B1, 0.25, eps=1e-3, weight_decay=WD),
        lambda: ra.ref_novograd(LR, B1, 0.25, 1e-3, 0.0, WD),
        optax=lambda: _optax().novograd(LR, B1, 0.25, eps=1e-3, weight_decay=WD),
    ),
    # ------------------------------------------------------------------------------- adadelta
    Case(
        "adadelta",
        lambda: opt.adadelta(0.5, rho=B1, eps=1e-3, weight_decay=WD),
        lambda: ra.ref_adadelta(0.5, B1, 1e-3, WD),
        optax=lambda: _optax().adadelta(0.5, rho=B1, eps=1e-3, weight_decay=WD),
    ),
    # learning_rate=None is the paper's step (lr 1); Optax 0.2.8 steps up the gradient there.
    Case("adadelta_no_learning_rate", lambda: opt.adadelta(rho=B1, eps=1e-4), lambda: ra.ref_adadelta(None, B1, 1e-4)),
    # ------------------------------------------------------------------------------ adafactor
    Case(
        "adafactor",
        lambda: opt.adafactor(LR, min_dim_size_to_factor=2),
        lambda: ra.ref_adafactor(LR, min_dim_size_to_factor=2),
        optax=lambda: _optax().adafactor(LR, min_dim_size_to_factor=2),
    ),
    Case(
        "adafactor_momentum_decay_low_precision",
        lambda: opt.adafactor(
            LR,
            min_dim_size_to_factor=3,
            decay_rate=0.75,
            clipping_threshold=None,
            momentum=B1,
            dtype_momentum=jnp.float32,
            weight_decay_rate=0.01,
            multiply_by_parameter_scale=False,
            eps=1e-20,
        ),  # fmt: skip
        lambda: ra.ref_adafactor(
            LR,
            min_dim_size_to_factor=3,
            decay_rate=0.75,
            clipping_threshold=None,
            momentum=B1,
            weight_decay_rate=0.01,
            multiply_by_parameter_scale=False,
            eps=1e-20,
        ),  # fmt: skip
        low_precision=True,
    ),
    Case(
        "adafactor_unfactored_schedule",
        lambda: opt.adafactor(lr_schedule, factored=False, clipping_threshold=0.5, decay_offset=0),
        lambda: ra.ref_adafactor(lr_schedule, factored=False, clipping_threshold=0.5),
        optax=lambda: _optax().adafactor(lr_schedule, factored=False, clipping_threshold=0.5),
    ),
    # ------------------------------------------------------------------------------------ sm3
    # Optax's SM3 fails on scalar leaves (an empty list of accumulators): no twin on this problem.
    Case("sm3", lambda: opt.sm3(LR, momentum=B1), lambda: ra.ref_sm3(LR, B1), complex_ok=False),
    # ------------------------------------------------------------------------------ optimistic
    Case(
        "optimistic_adam_v2",
        lambda: opt.optimistic_adam_v2(LR, alpha=0.75, beta=0.5, **ADAM),
        lambda: ra.ref_optimistic_adam(LR, 0.75, 0.5, **ADAM),
        optax=lambda: _optax().optimistic_adam_v2(LR, alpha=0.75, beta=0.5, **ADAM),
    ),
    Case(
        "optimistic_adam",
        lambda: _quiet_optimistic_adam(opt, LR, 0.03, **ADAM, nesterov=False),
        lambda: ra.ref_optimistic_adam(LR, **ADAM, nesterov=False, v1_optimism=0.03),
        optax=lambda: _quiet_optimistic_adam(_optax(), LR, 0.03, **ADAM, nesterov=False),
    ),
]


TRANSFORM_ROWS = [
    Case(
        "scale_by_radam",
        lambda: descend(av.scale_by_radam(B1, 0.75, 1e-3)),
        lambda: ra.ref_radam(LR, B1, 0.75, 1e-3),
        optax=optax_descend(lambda o: o.scale_by_radam(B1, 0.75, 1e-3)),
    ),
    Case(
        "scale_by_amsgrad_bf16_mu",
        lambda: descend(av.scale_by_amsgrad(**ADAM, mu_dtype=jnp.bfloat16)),
        lambda: ra.ref_amsgrad(LR, **ADAM, mu_dtype=jnp.bfloat16),
        low_precision=True,
    ),
    Case(
        "scale_by_adamax",
        lambda: descend(av.scale_by_adamax(**ADAM)),
        lambda: ra.ref_adamax(LR, **ADAM),
        optax=optax_descend(lambda o: o.scale_by_adamax(**ADAM)),
    ),
    Case(
        "scale_by_belief",
        lambda: descend(av.scale_by_belief(**ADAM, eps_root=1e-4)),
        lambda: ra.ref_adabelief(LR, **ADAM, eps_root=1e-4),
        optax=optax_descend(lambda o: o.scale_by_belief(**ADAM, eps_root=1e-4)),
    ),
    Case(
        "scale_by_adan",
        lambda: descend(av.scale_by_adan(0.96875, B1, B2, 1e-3, 1e-4)),
        lambda: ra.ref_adan(LR, 0.96875, B1, B2, 1e-3, 1e-4),
        optax=optax_descend(lambda o: o.scale_by_adan(0.96875, B1, B2, 1e-3, 1e-4)),
    ),
    Case(
        "scale_by_yogi",
        lambda: descend(av.scale_by_yogi(**ADAM, eps_root=1e-4, initial_accumulator_value=0.01)),
        lambda: ra.ref_yogi(LR, **ADAM, eps_root=1e-4, initial_accumulator_value=0.01),
        optax=optax_descend(lambda o: o.scale_by_yogi(**ADAM, eps_root=1e-4, initial_accumulator_value=0.01)),
    ),
    Case(
        "scale_by_novograd_low_precision",
        lambda: descend(av.scale_by_novograd(B1, 0.5, 1e-3, 1e-4, weight_decay=WD)),
        lambda: ra.ref_novograd(LR, B1, 0.5, 1e-3, 1e-4, WD),
        low_precision=True,
        optax=optax_descend(lambda o: o.scale_by_novograd(B1, 0.5, 1e-3, 1e-4, weight_decay=WD)),
    ),
    Case(
        "scale_by_adadelta",
        lambda: descend(av.scale_by_adadelta(B1, 1e-3)),
        lambda: ra.ref_adadelta(LR, B1, 1e-3),
        optax=optax_descend(lambda o: o.scale_by_adadelta(B1, 1e-3)),
    ),
    Case(
        "scale_by_factored_rms",
        lambda: descend(fa.scale_by_factored_rms(min_dim_size_to_factor=2, decay_rate=0.75)),
        lambda: ra.ref_adafactor(
            LR, min_dim_size_to_factor=2, decay_rate=0.75, multiply_by_parameter_scale=False, clipping_threshold=None
        ),
        optax=optax_descend(lambda o: o.scale_by_factored_rms(min_dim_size_to_factor=2, decay_rate=0.75)),
    ),
    Case(
        "scale_by_sm3",
        lambda: descend(fa.scale_by_sm3(B1, B2, 1e-3)),
        lambda: ra.ref_sm3(LR, B1, B2, 1e-3),
        complex_ok=False,
    ),
    Case(
        "scale_by_param_block_norm",
        lambda: descend(fa.scale_by_param_block_norm(0.25)),
        lambda: ra.ref_param_block_scale("norm", 0.25),
        optax=optax_descend(lambda o: o.scale_by_param_block_norm(0.25)),
    ),
    Case(
        "scale_by_param_block_rms",
        lambda: descend(fa.scale_by_param_block_rms(0.25)),
        lambda: ra.ref_param_block_scale("rms", 0.25),
        optax=optax_descend(lambda o: o.scale_by_param_block_rms(0.25)),
    ),
    Case(
        "clip_by_block_rms",
        lambda: descend(fa.clip_by_block_rms(0.5)),
        lambda: ra.ref_clip_by_block_rms(0.5),
        optax=optax_descend(lambda o: o.clip_by_block_rms(0.5)),
    ),
]

ROWS = OPTIMIZER_ROWS + TRANSFORM_ROWS
