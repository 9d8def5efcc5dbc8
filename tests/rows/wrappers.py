"""Rows: the wrappers, clipping pieces, constraints and L-BFGS direction of the drop-in issue.

Pieces that do not scale by a learning rate are followed by ``scale(-0.05)``; wrappers wrap Adam.
``reduce_lr_on_plateau`` (torch's ReduceLROnPlateau rules) follows SGD and reads the metric
``PLATEAU_METRIC[step]`` through ``extra_args``: within the 20 steps it improves, stalls below the
threshold, reduces twice (each followed by a cool-down), hits the ``min_scale`` floor and then skips
a reduction that would not lower the scale by more than eps.
Not here (they do not fit a 20-step run on the shared tree's gradients): the line searches and
``lbfgs`` (they need ``value_fn``: tests/optimizers/test_lbfgs.py, tests/transforms/test_linesearch.py)
and ``lookahead`` (its params are ``LookaheadParams``: tests/transforms/test_lookahead.py).
"""

from __future__ import annotations

import reference as ref
import reference_wrappers as refw
import trajectory as tr
from cases import Case

from optcompose._base import chain
from optcompose._tree import global_norm
from optcompose.optimizers._classic import adam, sgd
from optcompose.transforms._clipping_more import adaptive_grad_clip
from optcompose.transforms._conditionality import apply_every, conditionally_mask, conditionally_transform
from optcompose.transforms._constraining import centralize, keep_params_nonnegative, zero_nans
from optcompose.transforms._freezing import selective_transform
from optcompose.transforms._layouts import flatten
from optcompose.transforms._lbfgs import scale_by_lbfgs
from optcompose.transforms._monitoring import measure_with_ema, monitor, snapshot
from optcompose.transforms._plateau import reduce_lr_on_plateau
from optcompose.transforms._scaling import scale

LR = 0.05
ADAM = {"b1": 0.9, "b2": 0.99, "eps": 1e-3}


def _optax():
    import optax

    return optax


def descend(tx):
    return chain(tx, scale(-LR))


def ref_descend(r):
    return ref.ref_chain(r, ref.ref_scale(-LR))


def optax_descend(make):
    return lambda: _optax().chain(make(_optax()), _optax().scale(-LR))


def ref_adam():
    return ref.ref_adam(LR, **ADAM)


def optax_adam(o):
    return o.adam(LR, **ADAM)


def even_step(step):
    return step % 2 == 0


def early(step):
    return step < 12


def _optax_norm(tree):
    return _optax().tree.norm(tree)


PLATEAU = {"factor": 0.5, "patience": 2, "threshold": 0.05, "cooldown": 1, "min_scale": 0.2}
PLATEAU_METRIC = (1.0, 0.8, 0.78, 0.77, 0.79, 0.75, *[0.74] * 7, 0.5, *[0.6] * 6)
"""Per step, with PLATEAU: better at 0, 1, 5 (0.77 is not 5 % below 0.8), reductions after steps 4
(scale 0.5) and 8 (0.25), a cool-down step after each, the floor after step 12 (0.2), better at 13,
and after step 16 a reduction skipped (0.2 - max(0.1, 0.2) is not above eps)."""


def plateau_metric(step):
    return {"value": float(PLATEAU_METRIC[min(step, len(PLATEAU_METRIC) - 1)])}


ROWS = [
    Case(
        "centralize",
        lambda: descend(centralize()),
        lambda: ref_descend(refw.ref_centralize()),
        optax=optax_descend(lambda o: o.centralize()),
    ),
    Case("centralize_bf16", lambda: descend(centralize()), lambda: ref_descend(refw.ref_centralize()),
         low_precision=True),  # fmt: skip
    Case(
        "zero_nans_adam",
        lambda: chain(zero_nans(), adam(LR, **ADAM)),
        lambda: ref.ref_chain(refw.ref_zero_nans(), ref_adam()),
        optax=lambda: _optax().chain(_optax().zero_nans(), optax_adam(_optax())),
    ),
    Case(
        "keep_params_nonnegative",
        lambda: chain(sgd(0.3), keep_params_nonnegative()),
        lambda: ref.ref_chain(ref.ref_sgd(0.3), refw.ref_keep_params_nonnegative()),
        optax=lambda: _optax().chain(_optax().sgd(0.3), _optax().keep_params_nonnegative()),
        complex_ok=False,
    ),
    Case(
        "adaptive_grad_clip",
        lambda: descend(adaptive_grad_clip(0.3)),
        lambda: ref_descend(refw.ref_adaptive_grad_clip(0.3)),
        optax=optax_descend(lambda o: o.adaptive_grad_clip(0.3)),
    ),
    Case(
        "adaptive_grad_clip_bf16",
        lambda: descend(adaptive_grad_clip(0.3, eps=0.01)),
        lambda: ref_descend(refw.ref_adaptive_grad_clip(0.3, eps=0.01)),
        low_precision=True,
    ),
    Case(
        "apply_every",
        lambda: descend(apply_every(3)),
        lambda: ref_descend(refw.ref_apply_every(3)),
        optax=optax_descend(lambda o: o.apply_every(3)),
    ),
    Case(
        "conditionally_mask_adam",
        lambda: conditionally_mask(adam(LR, **ADAM), even_step),
        lambda: refw.ref_conditionally(ref_adam(), even_step, mask=True),
        optax=lambda: _optax().conditionally_mask(optax_adam(_optax()), even_step),
    ),
    Case(
        "conditionally_transform_adam",
        lambda: descend(conditionally_transform(adam(1.0, **ADAM), early)),
        lambda: ref_descend(refw.ref_conditionally(ref.ref_adam(1.0, **ADAM), early, mask=False)),
        optax=optax_descend(lambda o: o.conditionally_transform(o.adam(1.0, **ADAM), early)),
    ),
    Case(
        "flatten_adam",
        lambda: flatten(adam(LR, **ADAM)),
        lambda: refw.ref_flatten(ref_adam()),
        optax=lambda: _optax().flatten(optax_adam(_optax())),
    ),
    Case(
        "selective_transform_adam",
        lambda: selective_transform(adam(LR, **ADAM), freeze_mask=tr.explicit_mask(tr.make_params())),
        lambda: ref.ref_partition({"train": ref_adam(), "freeze": ref.ref_set_to_zero()},
                                  lambda path, leaf: "freeze" if tr.is_matrix(path, leaf) else "train"),
        optax=lambda: _optax().selective_transform(optax_adam(_optax()),
                                                   freeze_mask=tr.explicit_mask(tr.make_params())),
        problem_only=True,
    ),  # fmt: skip
    Case(
        "snapshot_adam",
        lambda: chain(snapshot("norm", global_norm), adam(LR, **ADAM)),
        lambda: ref_adam(),
        optax=lambda: _optax().chain(_optax().snapshot("norm", _optax_norm), optax_adam(_optax())),
    ),
    Case(
        "monitor_adam",
        lambda: chain(monitor({"norm": global_norm, "clipped": measure_with_ema(lambda u: global_norm(u) > 4.0, 0.9)}),
                      adam(LR, **ADAM)),
        lambda: ref_adam(),
    ),  # fmt: skip
    Case(
        "scale_by_lbfgs",
        lambda: descend(scale_by_lbfgs(memory_size=3)),
        lambda: ref_descend(refw.ref_scale_by_lbfgs(memory_size=3)),
        optax=optax_descend(lambda o: o.scale_by_lbfgs(memory_size=3)),
        complex_ok=False,
    ),
    Case(
        "scale_by_lbfgs_identity_init",
        lambda: descend(scale_by_lbfgs(memory_size=5, scale_init_precond=False)),
        lambda: ref_descend(refw.ref_scale_by_lbfgs(memory_size=5, scale_init_precond=False)),
        optax=optax_descend(lambda o: o.scale_by_lbfgs(memory_size=5, scale_init_precond=False)),
        complex_ok=False,
    ),
    Case(
        "reduce_lr_on_plateau",
        lambda: chain(sgd(0.1, momentum=0.5), reduce_lr_on_plateau(**PLATEAU)),
        lambda: ref.ref_chain(
            ref.ref_sgd(0.1, momentum=0.5),
            refw.ref_reduce_lr_on_plateau(lambda t: plateau_metric(t)["value"], **PLATEAU),
        ),
        extra_args=plateau_metric,
    ),
]
