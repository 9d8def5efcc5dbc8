"""Rows: the pieces (optcompose/transforms/, optcompose/_base.py) and the wrappers of today's tables.

Pieces that do not scale by a learning rate are followed by ``scale(-0.05)`` (``descend``) so the
parameters move by a sensible amount; ``optax`` builds the same chain from Optax's pieces.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import reference as ref
import trajectory as tr
from cases import Case

import optcompose as oc

LR = 0.05


def descend(tx):
    return oc.chain(tx, oc.scale(-LR))


def ref_descend(r):
    return ref.ref_chain(r, ref.ref_scale(-LR))


def _optax():
    import optax

    return optax


def optax_descend(make):
    """``lambda: optax.chain(make(optax), optax.scale(-LR))``."""
    return lambda: _optax().chain(make(_optax()), _optax().scale(-LR))


# Schedules cast the int32 count to float32 themselves, so they trace under strict dtype promotion.


def lr_schedule(count):
    return 0.1 * 0.8 ** jnp.asarray(count, jnp.float32)


def step_schedule(count):
    return -0.1 / (1.0 + jnp.asarray(count, jnp.float32))


def decaying(count):
    return 0.1 / (1.0 + jnp.asarray(count, jnp.float32))


def _stateless_fn(updates, params):
    return jax.tree.map(lambda g, w: g - 0.5 * w, updates, params)


ROWS = [
    # ------------------------------------------------------------------------------- scaling
    Case("scale", lambda: oc.scale(-LR), lambda: ref.ref_scale(-LR), optax=lambda: _optax().scale(-LR)),
    Case(
        "lr_constant",
        lambda: oc.scale_by_learning_rate(LR),
        lambda: ref.ref_scale_by_learning_rate(LR),
        optax=lambda: _optax().scale_by_learning_rate(LR),
    ),
    Case(
        "lr_schedule",
        lambda: oc.scale_by_learning_rate(lr_schedule),
        lambda: ref.ref_scale_by_learning_rate(lr_schedule),
        optax=lambda: _optax().scale_by_learning_rate(lr_schedule),
    ),
    Case(
        "lr_no_flip",
        lambda: oc.chain(oc.scale_by_learning_rate(LR, flip_sign=False), oc.scale(-1.0)),
        lambda: ref.ref_chain(ref.ref_scale_by_learning_rate(LR, flip_sign=False), ref.ref_scale(-1.0)),
        optax=lambda: _optax().chain(_optax().scale_by_learning_rate(LR, flip_sign=False), _optax().scale(-1.0)),
    ),
    Case(
        "schedule",
        lambda: oc.scale_by_schedule(step_schedule),
        lambda: ref.ref_scale_by_schedule(step_schedule),
        optax=lambda: _optax().scale_by_schedule(step_schedule),
    ),
    # ------------------------------------------------------------------------------ momentum
    Case(
        "trace",
        lambda: descend(oc.trace(0.8)),
        lambda: ref_descend(ref.ref_trace(0.8)),
        optax=optax_descend(lambda o: o.trace(0.8)),
    ),
    Case(
        "trace_nesterov",
        lambda: descend(oc.trace(0.8, nesterov=True)),
        lambda: ref_descend(ref.ref_trace(0.8, True)),
        optax=optax_descend(lambda o: o.trace(0.8, nesterov=True)),
    ),
    Case("trace_bf16", lambda: descend(oc.trace(0.8)), lambda: ref_descend(ref.ref_trace(0.8)), low_precision=True),
    Case(
        "ema_debias",
        lambda: descend(oc.ema(0.7)),
        lambda: ref_descend(ref.ref_ema(0.7)),
        optax=optax_descend(lambda o: o.ema(0.7)),
    ),
    Case(
        "ema_biased",
        lambda: descend(oc.ema(0.7, debias=False)),
        lambda: ref_descend(ref.ref_ema(0.7, False)),
        optax=optax_descend(lambda o: o.ema(0.7, debias=False)),
    ),
    # ------------------------------------------------------------------------------ adaptive
    Case(
        "rss_eps_in_sqrt",
        lambda: descend(oc.scale_by_rss(0.1, eps=0.05)),
        lambda: ref_descend(ref.ref_scale_by_rss(0.1, 0.05, True)),
        optax=optax_descend(lambda o: o.scale_by_rss(0.1, eps=0.05)),
    ),
    Case(
        "rss_eps_outside",
        lambda: descend(oc.scale_by_rss(0.0, eps=0.1, eps_in_sqrt=False)),
        lambda: ref_descend(ref.ref_scale_by_rss(0.0, 0.1, False)),
    ),
    Case(
        "rms_eps_in_sqrt",
        lambda: descend(oc.scale_by_rms(0.8, eps=0.05, initial_scale=0.5)),
        lambda: ref_descend(ref.ref_scale_by_rms(0.8, 0.05, 0.5)),
        optax=optax_descend(lambda o: o.scale_by_rms(0.8, eps=0.05, initial_scale=0.5)),
    ),
    Case(
        "rms_eps_outside",
        lambda: descend(oc.scale_by_rms(0.8, eps=0.1, eps_in_sqrt=False)),
        lambda: ref_descend(ref.ref_scale_by_rms(0.8, 0.1, eps_in_sqrt=False)),
        optax=optax_descend(lambda o: o.scale_by_rms(0.8, eps=0.1, eps_in_sqrt=False)),
    ),
    Case(
        "rms_bias_correction",
        lambda: descend(oc.scale_by_rms(0.8, eps=0.05, bias_correction=True)),
        lambda: ref_descend(ref.ref_scale_by_rms(0.8, 0.05, bias_correction=True)),
        optax=optax_descend(lambda o: o.scale_by_rms(0.8, eps=0.05, bias_correction=True)),
    ),
    Case(
        "rms_bias_correction_eps_outside",
        lambda: descend(oc.scale_by_rms(0.8, eps=0.1, eps_in_sqrt=False, bias_correction=True)),
        lambda: ref_descend(ref.ref_scale_by_rms(0.8, 0.1, eps_in_sqrt=False, bias_correction=True)),
        optax=optax_descend(lambda o: o.scale_by_rms(0.8, eps=0.1, eps_in_sqrt=False, bias_correction=True)),
    ),
    Case(
        "rms_low_precision",
        lambda: descend(oc.scale_by_rms(0.8, eps=0.05)),
        lambda: ref_descend(ref.ref_scale_by_rms(0.8, 0.05)),
        low_precision=True,
    ),
    Case(
        "stddev",
        lambda: descend(oc.scale_by_stddev(0.8, eps=0.05)),
        lambda: ref_descend(ref.ref_scale_by_stddev(0.8, 0.05)),
        optax=optax_descend(lambda o: o.scale_by_stddev(0.8, eps=0.05)),
    ),
    # With bias correction the first variance is g^2 - g^2 = 0 up to round-off, and sqrt(round-off)
    # next to eps would swamp the comparison; so eps sits inside the root in that case.
    Case(
        "stddev_eps_outside",
        lambda: descend(oc.scale_by_stddev(0.8, eps=0.1, eps_in_sqrt=False)),
        lambda: ref_descend(ref.ref_scale_by_stddev(0.8, 0.1, eps_in_sqrt=False)),
        optax=optax_descend(lambda o: o.scale_by_stddev(0.8, eps=0.1, eps_in_sqrt=False)),
    ),
    Case(
        "stddev_bias_correction",
        lambda: descend(oc.scale_by_stddev(0.8, eps=0.05, bias_correction=True)),
        lambda: ref_descend(ref.ref_scale_by_stddev(0.8, 0.05, bias_correction=True)),
        optax=optax_descend(lambda o: o.scale_by_stddev(0.8, eps=0.05, bias_correction=True)),
    ),
    Case(
        "scale_by_adam",
        lambda: descend(oc.scale_by_adam(0.8, 0.95, eps=0.01)),
        lambda: ref_descend(ref.ref_scale_by_adam(0.8, 0.95, 0.01)),
        optax=optax_descend(lambda o: o.scale_by_adam(0.8, 0.95, eps=0.01)),
    ),
    Case(
        "scale_by_adam_nesterov",
        lambda: descend(oc.scale_by_adam(0.8, 0.95, eps=0.01, nesterov=True)),
        lambda: ref_descend(ref.ref_scale_by_adam(0.8, 0.95, 0.01, nesterov=True)),
        optax=optax_descend(lambda o: o.scale_by_adam(0.8, 0.95, eps=0.01, nesterov=True)),
    ),
    Case(
        "scale_by_adam_eps_root",
        lambda: descend(oc.scale_by_adam(0.8, 0.95, eps=0.0, eps_root=0.05)),
        lambda: ref_descend(ref.ref_scale_by_adam(0.8, 0.95, 0.0, eps_root=0.05)),
        optax=optax_descend(lambda o: o.scale_by_adam(0.8, 0.95, eps=0.0, eps_root=0.05)),
    ),
    Case(
        "scale_by_adam_low_precision",
        lambda: descend(oc.scale_by_adam(0.8, 0.95, eps=0.01)),
        lambda: ref_descend(ref.ref_scale_by_adam(0.8, 0.95, 0.01)),
        low_precision=True,
    ),
    # --------------------------------------------------------------------------------- decay
    Case(
        "decay",
        lambda: descend(oc.add_decayed_weights(0.3)),
        lambda: ref_descend(ref.ref_add_decayed_weights(0.3)),
        optax=optax_descend(lambda o: o.add_decayed_weights(0.3)),
    ),
    Case(
        "decay_mask_fn",
        lambda: descend(oc.add_decayed_weights(0.3, mask=tr.tree_rule(tr.is_matrix))),
        lambda: ref_descend(ref.ref_add_decayed_weights(0.3, tr.is_matrix)),
        optax=optax_descend(lambda o: o.add_decayed_weights(0.3, mask=tr.tree_rule(tr.is_matrix))),
    ),
    Case(
        "decay_mask_tree_low_precision",
        lambda: descend(oc.add_decayed_weights(0.3, mask=tr.explicit_mask(tr.make_params(True)))),
        lambda: ref_descend(ref.ref_add_decayed_weights(0.3, tr.is_matrix)),
        low_precision=True,
        problem_only=True,
    ),
    # --------------------------------------------------------------------------- trust ratio
    Case(
        "trust_ratio",
        lambda: descend(oc.scale_by_trust_ratio()),
        lambda: ref_descend(ref.ref_scale_by_trust_ratio()),
        optax=optax_descend(lambda o: o.scale_by_trust_ratio()),
    ),
    Case(
        "trust_ratio_options",
        lambda: descend(oc.scale_by_trust_ratio(min_norm=0.5, trust_coefficient=0.3, eps=0.1)),
        lambda: ref_descend(ref.ref_scale_by_trust_ratio(0.5, 0.3, 0.1)),
        optax=optax_descend(lambda o: o.scale_by_trust_ratio(min_norm=0.5, trust_coefficient=0.3, eps=0.1)),
    ),
    # ------------------------------------------------------------------------------ clipping
    Case(
        "clip",
        lambda: descend(oc.clip(0.8)),
        lambda: ref_descend(ref.ref_clip(0.8)),
        optax=optax_descend(lambda o: o.clip(0.8)),
        complex_ok=False,
    ),
    Case(
        "clip_by_global_norm",
        lambda: descend(oc.clip_by_global_norm(1.5)),
        lambda: ref_descend(ref.ref_clip_by_global_norm(1.5)),
        optax=optax_descend(lambda o: o.clip_by_global_norm(1.5)),
    ),
    Case(
        "clip_by_global_norm_low_precision",
        lambda: descend(oc.clip_by_global_norm(1.5)),
        lambda: ref_descend(ref.ref_clip_by_global_norm(1.5)),
        low_precision=True,
    ),
    # ----------------------------------------------------------------------------- partition
    Case(
        "masked",
        lambda: descend(oc.masked(oc.trace(0.8), tr.tree_rule(tr.is_matrix))),
        lambda: ref_descend(ref.ref_masked(ref.ref_trace(0.8), tr.is_matrix)),
        optax=optax_descend(lambda o: o.masked(o.trace(0.8), tr.tree_rule(tr.is_matrix))),
    ),
    Case(
        "masked_tree",
        lambda: descend(oc.masked(oc.scale_by_adam(0.8, 0.95, 0.01), tr.explicit_mask(tr.make_params()))),
        lambda: ref_descend(ref.ref_masked(ref.ref_scale_by_adam(0.8, 0.95, 0.01), tr.is_matrix)),
        optax=optax_descend(lambda o: o.masked(o.scale_by_adam(0.8, 0.95, 0.01), tr.explicit_mask(tr.make_params()))),
        problem_only=True,
    ),
    Case(
        "partition",
        lambda: oc.partition({"dense": oc.trace(0.8), "rest": oc.scale(3.0)}, tr.tree_rule(tr.group_of)),
        lambda: ref.ref_partition({"dense": ref.ref_trace(0.8), "rest": ref.ref_scale(3.0)}, tr.group_of),
        optax=lambda: _optax().partition(
            {"dense": _optax().trace(0.8), "rest": _optax().scale(3.0)}, tr.tree_rule(tr.group_of)
        ),
    ),
    Case(
        "partition_optimizers",
        lambda: oc.partition({"dense": oc.adam(0.01), "rest": oc.sgd(0.1)}, tr.tree_rule(tr.group_of)),
        lambda: ref.ref_partition({"dense": ref.ref_adam(0.01), "rest": ref.ref_sgd(0.1)}, tr.group_of),
        optax=lambda: _optax().partition(
            {"dense": _optax().adam(0.01), "rest": _optax().sgd(0.1)}, tr.tree_rule(tr.group_of)
        ),
    ),
    Case(
        "multi_transform",
        lambda: descend(
            oc.multi_transform({"dense": oc.scale_by_adam(), "rest": oc.ema(0.5)}, tr.tree_rule(tr.group_of))
        ),
        lambda: ref_descend(
            ref.ref_partition({"dense": ref.ref_scale_by_adam(), "rest": ref.ref_ema(0.5)}, tr.group_of)
        ),
        optax=optax_descend(
            lambda o: o.multi_transform({"dense": o.scale_by_adam(), "rest": o.ema(0.5)}, tr.tree_rule(tr.group_of))
        ),
    ),
    Case(
        "freeze",
        lambda: descend(oc.freeze(tr.tree_rule(tr.is_matrix))),
        lambda: ref_descend(ref.ref_freeze(tr.is_matrix)),
        optax=optax_descend(lambda o: o.transforms.freeze(tr.tree_rule(tr.is_matrix))),
    ),
    # ---------------------------------------------------------------------------------- base
    Case(
        "identity",
        lambda: descend(oc.identity()),
        lambda: ref_descend(ref.ref_identity()),
        optax=optax_descend(lambda o: o.identity()),
    ),
    Case(
        "set_to_zero",
        lambda: descend(oc.set_to_zero()),
        lambda: ref_descend(ref.ref_set_to_zero()),
        optax=optax_descend(lambda o: o.set_to_zero()),
    ),
    Case(
        "stateless",
        lambda: descend(oc.stateless(_stateless_fn)),
        lambda: ref_descend(ref.ref_stateless(lambda g, w: g - 0.5 * w)),
        optax=optax_descend(lambda o: o.stateless(_stateless_fn)),
    ),
    Case(
        "chain_nested",
        lambda: oc.chain(oc.clip(1.0), oc.chain(oc.trace(0.5), oc.scale_by_learning_rate(LR))),
        lambda: ref.ref_chain(ref.ref_clip(1.0), ref.ref_trace(0.5), ref.ref_scale_by_learning_rate(LR)),
        optax=lambda: _optax().chain(
            _optax().clip(1.0), _optax().chain(_optax().trace(0.5), _optax().scale_by_learning_rate(LR))
        ),
        complex_ok=False,
    ),
    Case(
        "named_chain",
        lambda: oc.named_chain(
            ("clip", oc.clip(1.0)), ("adam", oc.scale_by_adam(0.8, 0.95, 0.01)), ("lr", oc.scale_by_learning_rate(LR))
        ),
        lambda: ref.ref_chain(
            ref.ref_clip(1.0), ref.ref_scale_by_adam(0.8, 0.95, 0.01), ref.ref_scale_by_learning_rate(LR)
        ),
        optax=lambda: _optax().named_chain(
            ("clip", _optax().clip(1.0)),
            ("adam", _optax().scale_by_adam(0.8, 0.95, 0.01)),
            ("lr", _optax().scale_by_learning_rate(LR)),
        ),
        complex_ok=False,
    ),
    # ------------------------------------------------------------------------------ wrappers
    # (Adam at lr 0.01: at 0.1 with eps = 1e-8 its steps amplify Optax's float32 round-off of the
    # bias corrections past float32 accuracy after ~10 steps; ours stays on the float64 reference.)
    Case(
        "apply_if_finite_adam",
        lambda: oc.apply_if_finite(oc.adam(0.01), 2),
        lambda: ref.ref_adam(0.01),
        optax=lambda: _optax().apply_if_finite(_optax().adam(0.01), 2),
    ),
    Case(
        "multi_steps_adam",
        lambda: oc.MultiSteps(oc.adam(0.01), 2).gradient_transformation(),
        lambda: ref.ref_multi_steps(ref.ref_adam(0.01), 2),
        optax=lambda: _optax().MultiSteps(_optax().adam(0.01), 2).gradient_transformation(),
    ),
    Case(
        "inject_adamw_schedule",
        lambda: oc.inject_hyperparams(oc.adamw)(learning_rate=decaying, b1=0.8),
        lambda: ref.ref_chain(
            ref.ref_scale_by_adam(b1=0.8),
            ref.ref_add_decayed_weights(1e-4),
            ref.ref_scale_by_learning_rate(decaying),
        ),
        optax=lambda: _optax().inject_hyperparams(_optax().adamw)(learning_rate=decaying, b1=0.8),
    ),
]
