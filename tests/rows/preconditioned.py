"""Rows: Shampoo and SOAP (optcompose/optimizers/_preconditioned.py, on transforms/_kronecker.py).

References from the papers in tests/reference_preconditioned.py; no Optax twin (Optax has neither:
``optax.contrib`` has no Shampoo or SOAP). On the shared tree the 3x4 kernel and the 2x3x2 conv
weight get factors; the rows between them cover blocking with padding (block_size=2 on a
dimension of 3), stale roots and the delayed start, every grafting type, a dimension above
``max_preconditioner_dim`` / ``max_precond_dim``, preconditioned 1-D leaves (Shampoo), eigenbasis
refreshes every 2 and 3 steps, schedules and low precision. SOAP's eigenbasis is arbitrary inside
a repeated eigenvalue, and Adam is not invariant to that choice, so SOAP rows keep every first
factor's null space at most 1-D (merging this tree, or factoring its vectors, would not); 4-D
leaves, real merging and SOAP's 1-D factors are in tests/optimizers/test_preconditioned.py on
shapes where they are well posed. Decays are ``1 - 2**-k`` (exact in float32).
"""

from __future__ import annotations

import jax.numpy as jnp
import reference_preconditioned as rp
from cases import Case

from optcompose.optimizers._preconditioned import shampoo, soap

LR = 0.05
WD = 0.125


def lr_schedule(count):
    """0.05 * 0.9**count, strict-promotion clean (float32 throughout)."""
    return jnp.float32(0.05) * jnp.float32(0.9) ** jnp.asarray(count).astype(jnp.float32)


SHAMPOO = {"block_size": 2, "beta1": 0.875, "beta2": 0.9921875, "matrix_epsilon": 1e-2, "weight_decay": WD,
           "start_preconditioning_step": 2, "preconditioning_compute_steps": 3}  # fmt: skip
SHAMPOO_ONE_SIDED = {"block_size": None, "beta1": 0.75, "beta2": 0.9375, "matrix_epsilon": 1e-2,
                     "start_preconditioning_step": 0, "graft_type": "rmsprop", "max_preconditioner_dim": 3,
                     "precondition_1d": True, "nesterov": False, "diagonal_epsilon": 1e-3}  # fmt: skip
SHAMPOO_SGD = {"block_size": 2, "beta1": 0.5, "beta2": 1.0, "matrix_epsilon": 1e-2, "graft_type": "sgd",
               "start_preconditioning_step": 1, "moving_average_for_momentum": True}  # fmt: skip
SOAP = {"b1": 0.875, "b2": 0.9375, "eps": 1e-3, "weight_decay": WD, "precondition_frequency": 3}
SOAP_MERGED = {"b1": 0.75, "b2": 0.96875, "eps": 1e-3, "weight_decay": 0.0, "precondition_frequency": 2,
               "max_precond_dim": 3, "merge_dims": True, "shampoo_beta": 0.5}  # fmt: skip

ROWS = [
    # --------------------------------------------------------------------------------- shampoo
    Case("shampoo_blocked_stale_adam_graft", lambda: shampoo(LR, **SHAMPOO), lambda: rp.ref_shampoo(LR, **SHAMPOO)),
    Case(
        "shampoo_one_sided_rmsprop_graft_1d",
        lambda: shampoo(LR, **SHAMPOO_ONE_SIDED),
        lambda: rp.ref_shampoo(LR, **SHAMPOO_ONE_SIDED),
    ),
    Case(
        "shampoo_sgd_graft_sums_schedule_low_precision",
        lambda: shampoo(lr_schedule, **SHAMPOO_SGD),
        lambda: rp.ref_shampoo(lr_schedule, **SHAMPOO_SGD),
        low_precision=True,
    ),
    # ------------------------------------------------------------------------------------ soap
    Case("soap_refresh_every_3", lambda: soap(LR, **SOAP), lambda: rp.ref_soap(LR, **SOAP)),
    Case("soap_max_dim_merge_shampoo_beta", lambda: soap(LR, **SOAP_MERGED), lambda: rp.ref_soap(LR, **SOAP_MERGED)),
    Case(
        "soap_normalized_schedule_low_precision",
        lambda: soap(lr_schedule, **{**SOAP, "normalize_grads": True}),
        lambda: rp.ref_soap(lr_schedule, **{**SOAP, "normalize_grads": True}),
        low_precision=True,
    ),
]
