"""Rows for ``optcompose.contrib`` (Optax's ``optax.contrib``): one ``Case`` per optimizer / transform.

Loss-reading optimizers get ``value=loss(step)`` through ``extra_args``; Sophia and the Hutchinson
estimator get ``obj_fn=separable_loss`` (a diagonal Hessian, which Hutchinson's estimator returns
exactly, so the NumPy reference needs no random numbers). ``differentially_private_aggregate``
and ``dpsgd`` take per-example gradients (a leading batch axis) and have no row on the shared
problem; tests/contrib/test_privacy.py covers them. Optax's GaLore fails on a ``None`` leaf (its
``init`` reads ``None.dtype``), so the GaLore rows have no Optax twin here; tests/contrib/test_galore.py
compares them with Optax on a tree without one.

``complex_ok=False`` on a row whose transform *is* defined for complex parameters means that its
Optax twin is not (``g * g`` for ``|g|^2``, complex inner products, ``clip`` or ``cbrt`` of complex
numbers): the table's complex-vs-Optax check cannot hold there. Those transforms are checked for
phase equivariance on complex parameters in their module tests (``check_phase_equivariance``).
``split_real_and_imaginary`` is by design not phase-equivariant (it treats Re and Im as two reals).

``muon_torch`` (torch.optim.Muon's rules) has no Optax twin (Optax's Muon bias-corrects its momentum
and adds eps to the norm). Its float32 rows iterate Newton–Schulz in float32 (``ns_dtype=None``):
torch's bfloat16 iterate flips by a bfloat16 ulp wherever two float32 accumulations straddle a
rounding boundary, which a float64 reference cannot follow to float32 tolerance (that rounding is
checked against torch itself in tests/contrib/test_muon_torch.py). The low-precision row keeps the
bfloat16 iteration (the reference rounds at the same points) on a bfloat16 kernel, whose storage
tolerance is a bfloat16 ulp.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax
import reference as ref
import reference_contrib as rc
from cases import Case

from optcompose import contrib
from optcompose._base import chain
from optcompose.contrib import MuonDimensionNumbers
from optcompose.contrib._muon_torch import muon_torch
from optcompose.optimizers._classic import adam, adamw, sgd
from optcompose.transforms._scaling import scale


def separable_loss(params):
    """``sum(w - arctan(w))``: its Hessian is ``diag(2 w / (1 + w^2)^2)`` (0 at w = 0, finite for any w),
    which Hutchinson's ``z * (H z)`` returns exactly (``z = +-1``)."""
    total = jnp.zeros((), jnp.float32)
    for x in jax.tree.leaves(params):
        x = jnp.asarray(x).astype(jnp.float32)
        total = total + jnp.sum(x - jnp.arctan(x))
    return total


def separable_hessian(w):
    """The Hessian diagonal of ``separable_loss`` (NumPy, for the references)."""
    return 2.0 * w / (1.0 + w * w) ** 2


def loss(step):
    """A decreasing loss value for MoMo, as a function of the step (a Python int or a traced int)."""
    return 2.0 / (1.0 + step)


def plateau_loss(step):
    """A loss that stops improving after step 3 (reduce_on_plateau)."""
    return 1.0 / (1.0 + jnp.minimum(step, 3))


def _plateau_loss_ref(step):
    return 1.0 / (1.0 + min(step, 3))


def slow_decay(count):
    """A schedule for AdEMAMix's b3: 0.9 rising by 0.004 a step."""
    return 0.9 + 0.004 * jnp.asarray(count, jnp.float32)


def growing_alpha(count):
    """A schedule for AdEMAMix's alpha: 0.25 per step (the paper warms alpha up)."""
    return 0.25 * jnp.asarray(count, jnp.float32)


with_loss = lambda step: {"value": loss(step)}
with_plateau_loss = lambda step: {"value": plateau_loss(step)}
with_objective = lambda step: {"obj_fn": separable_loss}

MUON = {"beta": 0.9, "weight_decay": 0.1, "adam_b2": 0.99}
ADEMAMIX = {"b3": 0.99, "alpha": 2.0, "weight_decay": 0.1}
PRODIGY = {"estim_lr0": 1e-2, "weight_decay": 0.1}
ROP = {"factor": 0.5, "patience": 2, "cooldown": 1, "accumulation_size": 2}
SOPHIA = {"update_interval": 3, "gamma": 0.5}
MUON_TORCH = {"weight_decay": 0.1, "momentum": 0.9}
MUON_TORCH_TABLE = {"momentum": 0.8, "nesterov": False, "ns_coefficients": ((3.4445, -4.775, 2.0315), (2.0, -1.5, 0.5)),
                    "ns_steps": 2, "eps": 1e-3, "adjust_lr_fn": "match_rms_adamw", "weight_decay": 0.05}  # fmt: skip
OTHERS_ADAMW = {"b2": 0.99, "weight_decay": 0.1}


def torch_layout_axes(path, leaf):
    """(reduction, output) axes: the kernel as torch's ``(out, in)`` weight, the conv weight
    ``(2, 3, 2)`` as a batch of two ``(3, 2)`` matrices; ``None`` (the other optimizer) elsewhere."""
    if "kernel" in path:
        return (1,), (0,)
    if "conv" in path:
        return (1,), (2,)
    return None


def torch_layout_dims(params):
    def dims(path, leaf):
        axes = torch_layout_axes(jax.tree_util.keystr(path), leaf)
        return None if axes is None else MuonDimensionNumbers(*axes)

    return jax.tree_util.tree_map_with_path(dims, params)


def muon_or_others(names):
    return lambda path, leaf: "muon" if names(path, leaf) else "others"


def decaying_lr(count):
    return 0.05 * 0.9 ** jnp.asarray(count, jnp.float32)


def _decaying_lr_ref(count):
    return 0.05 * 0.9**count


oc = optax.contrib

ROWS: list[Case] = [
    # Muon
    Case("muon", lambda: contrib.muon(0.05, **MUON), lambda: rc.ref_muon(0.05, **MUON),
         optax=lambda: oc.muon(0.05, **MUON)),
    Case("muon_plain_rms", lambda: contrib.muon(0.05, nesterov=False, adam_b2=0.99, consistent_rms=0.2),
         lambda: rc.ref_muon(0.05, nesterov=False, adam_b2=0.99, consistent_rms=0.2),
         optax=lambda: oc.muon(0.05, nesterov=False, adam_b2=0.99, consistent_rms=0.2)),
    # No Optax twin: Optax iterates Newton-Schulz in bfloat16, we in float32 (3 bfloat16 ulps apart).
    Case("muon_low_precision", lambda: contrib.muon(0.05, **MUON), lambda: rc.ref_muon(0.05, **MUON), True),
    # torch.optim.Muon's rules: the kernel with Muon, the other leaves with AdamW / SGD.
    Case("muon_torch", lambda: muon_torch(0.05, **MUON_TORCH, ns_dtype=None, others=adamw(0.05, **OTHERS_ADAMW)),
         lambda: ref.ref_partition({"muon": rc.ref_muon_torch(0.05, **MUON_TORCH),
                                    "others": ref.ref_adam(0.05, **OTHERS_ADAMW)},
                                   muon_or_others(lambda path, leaf: leaf.ndim == 2))),
    Case("muon_torch_batched_table_schedule",
         lambda: muon_torch(decaying_lr, **MUON_TORCH_TABLE, ns_dtype=None, weight_dimension_numbers=torch_layout_dims,
                            others=sgd(0.05)),
         lambda: ref.ref_partition({"muon": rc.ref_muon_torch(_decaying_lr_ref, **MUON_TORCH_TABLE,
                                                              axes=torch_layout_axes),
                                    "others": ref.ref_sgd(0.05)}, muon_or_others(torch_layout_axes))),
    Case("muon_torch_low_precision", lambda: muon_torch(0.05, **MUON_TORCH, others=adamw(0.05, **OTHERS_ADAMW)),
         lambda: ref.ref_partition({"muon": rc.ref_muon_torch(0.05, **MUON_TORCH, bfloat16=True),
                                    "others": ref.ref_adam(0.05, **OTHERS_ADAMW)},
                                   muon_or_others(lambda path, leaf: leaf.ndim == 2)), True, complex_ok=False),
    # Schedule-Free
    Case("schedule_free_sgd", lambda: contrib.schedule_free_sgd(0.1, weight_decay=0.05),
         lambda: rc.ref_schedule_free_sgd(0.1, weight_decay=0.05),
         optax=lambda: oc.schedule_free_sgd(0.1, weight_decay=0.05)),
    Case("schedule_free_sgd_warmup", lambda: contrib.schedule_free_sgd(0.1, warmup_steps=4),
         lambda: rc.ref_schedule_free_sgd(lambda count: 0.1 * min(count / 4, 1.0)),
         optax=lambda: oc.schedule_free_sgd(0.1, warmup_steps=4)),
    Case("schedule_free_adamw", lambda: contrib.schedule_free_adamw(0.05, b2=0.99, weight_decay=0.1),
         lambda: rc.ref_schedule_free_adamw(0.05, b2=0.99, weight_decay=0.1),
         optax=lambda: oc.schedule_free_adamw(0.05, b2=0.99, weight_decay=0.1)),
    Case("schedule_free", lambda: contrib.schedule_free(sgd(0.1), 0.1, b1=0.8, weight_lr_power=1.0),
         lambda: rc.ref_schedule_free(ref.ref_sgd(0.1), 0.1, b1=0.8, weight_lr_power=1.0),
         optax=lambda: oc.schedule_free(optax.sgd(0.1), 0.1, b1=0.8, weight_lr_power=1.0)),
    # ADOPT
    Case("adopt", lambda: contrib.adopt(0.05, b2=0.99), lambda: rc.ref_adopt(0.05, b2=0.99),
         optax=lambda: oc.adopt(0.05, b2=0.99), complex_ok=False),
    Case("adopt_nesterov_unclipped", lambda: contrib.adopt(0.05, b2=0.99, nesterov=True, use_clipping=False),
         lambda: rc.ref_adopt(0.05, b2=0.99, nesterov=True, use_clipping=False),
         optax=lambda: oc.adopt(0.05, b2=0.99, nesterov=True, use_clipping=False)),
    Case("adopt_low_precision", lambda: contrib.adopt(0.05, b2=0.99), lambda: rc.ref_adopt(0.05, b2=0.99), True,
         optax=lambda: oc.adopt(0.05, b2=0.99)),
    Case("scale_by_adopt", lambda: chain(contrib.scale_by_adopt(b2=0.99), scale(-0.05)),
         lambda: rc.ref_adopt(0.05, b2=0.99),
         optax=lambda: optax.chain(oc.scale_by_adopt(b2=0.99), optax.scale(-0.05)), complex_ok=False),
    # AdEMAMix
    Case("ademamix", lambda: contrib.ademamix(0.02, **ADEMAMIX), lambda: rc.ref_ademamix(0.02, **ADEMAMIX),
         optax=lambda: oc.ademamix(0.02, **ADEMAMIX)),
    Case("ademamix_schedules", lambda: contrib.ademamix(0.02, b3=slow_decay, alpha=growing_alpha),
         lambda: rc.ref_ademamix(0.02, b3=slow_decay, alpha=growing_alpha),
         optax=lambda: oc.ademamix(0.02, b3=slow_decay, alpha=growing_alpha)),
    Case("scale_by_ademamix", lambda: chain(contrib.scale_by_ademamix(b3=0.99), scale(-0.02)),
         lambda: rc.ref_ademamix(0.02, b3=0.99, alpha=6.0),
         optax=lambda: optax.chain(oc.scale_by_ademamix(b3=0.99), optax.scale(-0.02))),
    Case("simplified_ademamix", lambda: contrib.simplified_ademamix(0.01, b1=0.9, alpha=1.0, weight_decay=0.1),
         lambda: rc.ref_simplified_ademamix(0.01, b1=0.9, alpha=1.0, weight_decay=0.1),
         optax=lambda: oc.simplified_ademamix(0.01, b1=0.9, alpha=1.0, weight_decay=0.1), complex_ok=False),
    Case("scale_by_simplified_ademamix", lambda: chain(contrib.scale_by_simplified_ademamix(b1=0.9), scale(-0.01)),
         lambda: rc.ref_simplified_ademamix(0.01, b1=0.9),
         optax=lambda: optax.chain(oc.scale_by_simplified_ademamix(b1=0.9), optax.scale(-0.01)), complex_ok=False),
    # Adaptive per-coordinate methods
    Case("acprop", lambda: contrib.acprop(0.02, b2=0.99, eps=1e-8, weight_decay=0.1),
         lambda: rc.ref_acprop(0.02, b2=0.99, eps=1e-8, weight_decay=0.1),
         optax=lambda: oc.acprop(0.02, b2=0.99, eps=1e-8, weight_decay=0.1)),
    Case("scale_by_acprop", lambda: chain(contrib.scale_by_acprop(b2=0.99, eps=1e-8), scale(-0.02)),
         lambda: rc.ref_acprop(0.02, b2=0.99, eps=1e-8),
         optax=lambda: optax.chain(oc.scale_by_acprop(b2=0.99, eps=1e-8), optax.scale(-0.02))),
    Case("madgrad", lambda: contrib.madgrad(0.01, momentum=0.8, weight_decay=0.1),
         lambda: rc.ref_madgrad(0.01, momentum=0.8, weight_decay=0.1),
         optax=lambda: oc.madgrad(0.01, momentum=0.8, weight_decay=0.1), complex_ok=False),
    Case("scale_by_madgrad", lambda: contrib.scale_by_madgrad(0.01, momentum=0.8), lambda: rc.ref_madgrad(0.01, 0.8),
         optax=lambda: oc.scale_by_madgrad(0.01, momentum=0.8), complex_ok=False),
    Case("cocob", lambda: contrib.cocob(0.5, alpha=10.0, weight_decay=0.05),
         lambda: rc.ref_cocob(0.5, alpha=10.0, weight_decay=0.05),
         optax=lambda: oc.cocob(0.5, alpha=10.0, weight_decay=0.05), complex_ok=False),
    Case("scale_by_cocob", lambda: contrib.scale_by_cocob(alpha=10.0), lambda: rc.ref_cocob(1.0, alpha=10.0),
         optax=lambda: oc.scale_by_cocob(alpha=10.0), complex_ok=False),
    # Learned step sizes
    Case("prodigy", lambda: contrib.prodigy(0.5, **PRODIGY), lambda: rc.ref_prodigy(0.5, **PRODIGY),
         optax=lambda: oc.prodigy(0.5, **PRODIGY), complex_ok=False),
    Case("prodigy_safeguard", lambda: contrib.prodigy(estim_lr0=1e-2, safeguard_warmup=True),
         lambda: rc.ref_prodigy(estim_lr0=1e-2, safeguard_warmup=True),
         optax=lambda: oc.prodigy(estim_lr0=1e-2, safeguard_warmup=True), complex_ok=False),
    Case("dadapt_adamw", lambda: contrib.dadapt_adamw(1.0, **PRODIGY), lambda: rc.ref_dadapt_adamw(1.0, **PRODIGY),
         optax=lambda: oc.dadapt_adamw(1.0, **PRODIGY), complex_ok=False),
    Case("dog", lambda: contrib.dog(1.0, init_step=("distance", 0.1), weight_decay=0.01),
         lambda: rc.ref_dog(1.0, init_step=("distance", 0.1), weight_decay=0.01),
         optax=lambda: oc.dog(1.0, init_step=("distance", 0.1), weight_decay=0.01)),
    Case("dog_heuristic", lambda: contrib.dog(), lambda: rc.ref_dog(), optax=lambda: oc.dog()),
    Case("dog_learning_rate", lambda: contrib.dog(init_step=("learning_rate", 0.05)),
         lambda: rc.ref_dog(init_step=("learning_rate", 0.05)),
         optax=lambda: oc.dog(init_step=("learning_rate", 0.05))),
    Case("dowg", lambda: contrib.dowg(1.0, init_estim_sq_dist=0.01), lambda: rc.ref_dowg(1.0, init_estim_sq_dist=0.01),
         optax=lambda: oc.dowg(1.0, init_estim_sq_dist=0.01)),
    Case("momo", lambda: contrib.momo(0.5, weight_decay=0.1), lambda: rc.ref_momo(loss, 0.5, weight_decay=0.1),
         optax=lambda: oc.momo(0.5, weight_decay=0.1), extra_args=with_loss, complex_ok=False),
    Case("momo_adam", lambda: contrib.momo_adam(0.05, weight_decay=0.1),
         lambda: rc.ref_momo_adam(loss, 0.05, weight_decay=0.1),
         optax=lambda: oc.momo_adam(0.05, weight_decay=0.1), extra_args=with_loss, complex_ok=False),
    Case("mechanize", lambda: contrib.mechanize(sgd(0.1), s_init=0.1),
         lambda: rc.ref_mechanize(ref.ref_sgd(0.1), s_init=0.1),
         optax=lambda: oc.mechanize(optax.sgd(0.1), s_init=0.1), complex_ok=False),
    # Curvature and sharpness
    Case("sophia", lambda: contrib.sophia(0.05, **SOPHIA),
         lambda: rc.ref_sophia(0.05, **SOPHIA, hessian_diagonal=separable_hessian),
         optax=lambda: oc.sophia(0.05, **SOPHIA), complex_ok=False, extra_args=with_objective),
    Case("hutchinson_estimator_diag_hessian", lambda: chain(contrib.hutchinson_estimator_diag_hessian(), scale(-0.1)),
         lambda: rc.ref_hutchinson(separable_hessian, -0.1),
         optax=lambda: optax.chain(oc.hutchinson_estimator_diag_hessian(), optax.scale(-0.1)), complex_ok=False,
         extra_args=with_objective),
    Case("sam", lambda: contrib.sam(sgd(0.05), chain(contrib.normalize(), sgd(0.02))),
         lambda: rc.ref_sam(ref.ref_sgd(0.05), ref.ref_chain(rc.ref_normalize(), ref.ref_sgd(0.02))),
         optax=lambda: oc.sam(optax.sgd(0.05), optax.chain(oc.normalize(), optax.sgd(0.02)))),
    Case("sam_adam_period_3", lambda: contrib.sam(adam(0.05), chain(contrib.normalize(), sgd(0.02)), sync_period=3),
         lambda: rc.ref_sam(ref.ref_adam(0.05), ref.ref_chain(rc.ref_normalize(), ref.ref_sgd(0.02)), 3),
         optax=lambda: oc.sam(optax.adam(0.05), optax.chain(oc.normalize(), optax.sgd(0.02)), sync_period=3)),
    Case("normalize", lambda: chain(contrib.normalize(), sgd(0.05)),
         lambda: ref.ref_chain(rc.ref_normalize(), ref.ref_sgd(0.05)),
         optax=lambda: optax.chain(oc.normalize(), optax.sgd(0.05))),
    Case("reduce_on_plateau", lambda: chain(sgd(0.1), contrib.reduce_on_plateau(**ROP)),
         lambda: ref.ref_chain(ref.ref_sgd(0.1), rc.ref_reduce_on_plateau(_plateau_loss_ref, **ROP)),
         optax=lambda: optax.chain(optax.sgd(0.1), oc.reduce_on_plateau(**ROP)), extra_args=with_plateau_loss),
    # Low rank and complex numbers
    Case("galore", lambda: contrib.galore(0.02, rank=2, update_proj_gap=5, weight_decay=0.1),
         lambda: rc.ref_galore(0.02, rank=2, update_proj_gap=5, weight_decay=0.1)),
    Case("scale_by_galore", lambda: chain(contrib.scale_by_galore(rank=1, update_proj_gap=3), scale(-0.02)),
         lambda: rc.ref_galore(0.02, rank=1, update_proj_gap=3)),
    Case("split_real_and_imaginary", lambda: contrib.split_real_and_imaginary(adam(0.05, b2=0.99)),
         lambda: ref.ref_adam(0.05, b2=0.99), optax=lambda: oc.split_real_and_imaginary(optax.adam(0.05, b2=0.99)),
         complex_ok=False),
]  # fmt: skip
