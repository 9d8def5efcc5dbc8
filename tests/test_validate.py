"""Argument checks (optcompose/_validate.py): raised at construction, naming the argument and the rule.

One table of bad arguments (the optimizers, the transforms, the wrappers), each checked for its
exception, its message and the module that raised it; then the boundaries that are accepted,
values set into a state (``set_hyperparams`` checks them the same way) and out-of-range values.
Errors at trace time that name a pytree path are tests/test_tree.py's.
"""

import functools
from pathlib import Path

import jax.numpy as jnp
import pytest

import optcompose as oc
from optcompose import optimizers as opt
from optcompose._hyperparams import set_hyperparams
from optcompose.optimizers._classic import adagrad, adam, adamw, lamb, lars, rmsprop, sgd
from optcompose.transforms._accumulation import MultiSteps
from optcompose.transforms._adaptive import scale_by_adam, scale_by_rms, scale_by_rss, scale_by_stddev
from optcompose.transforms._clipping import clip, clip_by_global_norm
from optcompose.transforms._decay import add_decayed_weights
from optcompose.transforms._guards import apply_if_finite
from optcompose.transforms._momentum import ema, trace
from optcompose.transforms._partition import partition
from optcompose.transforms._scaling import scale, scale_by_learning_rate
from optcompose.transforms._trust_ratio import scale_by_trust_ratio

NAN, INF = float("nan"), float("inf")


def _raised_in(info) -> str:
    """The file name of the frame that raised."""
    return Path(info.traceback[-1].path).name


# (call, exception, message pattern): every argument check, each naming the argument and the rule.
ARGUMENT_ERRORS = [
    (lambda: opt.sgd(-0.1), ValueError, r"learning_rate must be a finite number >= 0, got -0\.1"),
    (lambda: opt.sgd(0.1, momentum=1.0), ValueError, r"momentum must lie in \[0, 1\), got 1\.0"),
    (lambda: opt.adam(NAN), ValueError, r"learning_rate must be a finite number >= 0, got nan"),
    (lambda: opt.adam("fast"), TypeError, r"learning_rate must be a real number or a schedule .* 'fast' of type str"),
    (lambda: opt.adam(jnp.ones(3)), TypeError, r"learning_rate must be a real number or a schedule"),
    (lambda: opt.adam(0.1, b1=1.0), ValueError, r"b1 must lie in \[0, 1\), got 1\.0"),
    (lambda: opt.adam(0.1, b2=-0.5), ValueError, r"b2 must lie in \[0, 1\), got -0\.5"),
    (lambda: opt.adam(0.1, eps=-1e-8), ValueError, r"eps must be a finite number >= 0"),
    (lambda: opt.adam(0.1, eps_root=INF), ValueError, r"eps_root must be a finite number >= 0, got inf"),
    (lambda: opt.adamw(0.1, weight_decay=-1.0), ValueError, r"weight_decay must be a finite number >= 0"),
    (lambda: opt.rmsprop(0.1, decay=1.5), ValueError, r"decay must lie in \[0, 1\), got 1\.5"),
    (lambda: opt.adagrad(0.1, initial_accumulator_value=-1.0), ValueError, r"initial_accumulator_value must be"),
    (lambda: opt.lars(0.1, trust_coefficient=-1.0), ValueError, r"trust_coefficient must be a finite number >= 0"),
    (lambda: opt.lamb(0.1, b1=2.0), ValueError, r"b1 must lie in \[0, 1\)"),
    (lambda: scale(INF), ValueError, r"step_size must be a finite number, got inf"),
    (lambda: scale_by_learning_rate(-1.0), ValueError, r"learning_rate must be a finite number >= 0"),
    (lambda: trace(decay=-0.1), ValueError, r"decay must lie in \[0, 1\], got -0\.1"),
    (lambda: ema(decay=1.0), ValueError, r"decay must lie in \[0, 1\)"),
    (lambda: scale_by_rss(eps=-1.0), ValueError, r"eps must be a finite number >= 0"),
    (lambda: scale_by_rms(initial_scale=-1.0), ValueError, r"initial_scale must be a finite number >= 0"),
    (lambda: scale_by_stddev(decay=NAN), ValueError, r"decay must lie in \[0, 1\), got nan"),
    (lambda: scale_by_adam(b2=1.0), ValueError, r"b2 must lie in \[0, 1\)"),
    (lambda: clip(0.0), ValueError, r"max_delta must be a finite number > 0, got 0\.0"),
    (lambda: clip_by_global_norm(-1.0), ValueError, r"max_norm must be a finite number > 0, got -1\.0"),
    (lambda: add_decayed_weights(-0.1), ValueError, r"weight_decay must be a finite number >= 0"),
    (lambda: scale_by_trust_ratio(min_norm=-1.0), ValueError, r"min_norm must be a finite number >= 0"),
    (lambda: apply_if_finite(opt.sgd(0.1), -1), ValueError, r"max_consecutive_errors must be an integer >= 0, got -1"),
    (lambda: apply_if_finite(opt.sgd(0.1), 1.5), TypeError, r"max_consecutive_errors must be an integer, got 1\.5"),
    (lambda: MultiSteps(opt.sgd(0.1), 0), ValueError, r"every_k_schedule must be an integer >= 1, got 0"),
    (lambda: MultiSteps(opt.sgd(0.1), True), TypeError, r"every_k_schedule must be an integer, got True"),
    (lambda: MultiSteps(opt.sgd(0.1), 2, should_skip_update_fn="nan"), TypeError, r"should_skip_update_fn must be"),
]


# The argument named by each bad value (a ValueError whose message names it), for every factory.
BAD_ARGUMENTS = [
    # learning rates
    ("learning_rate", lambda: sgd(-0.1)),
    ("learning_rate", lambda: sgd(NAN)),
    ("learning_rate", lambda: adagrad(-1.0)),
    ("learning_rate", lambda: rmsprop(-1e-3)),
    ("learning_rate", lambda: adam(-1e-3)),
    ("learning_rate", lambda: adamw(-1e-3)),
    ("learning_rate", lambda: lars(-1.0)),
    ("learning_rate", lambda: lamb(-1.0)),
    ("learning_rate", lambda: scale_by_learning_rate(-0.5)),
    # eps
    ("eps", lambda: adagrad(0.1, eps=-1e-10)),
    ("eps", lambda: rmsprop(0.1, eps=-1e-8)),
    ("eps", lambda: adam(0.1, eps=-1e-8)),
    ("eps", lambda: adamw(0.1, eps=float("inf"))),
    ("eps", lambda: lars(0.1, eps=-1.0)),
    ("eps", lambda: lamb(0.1, eps=-1e-6)),
    ("eps", lambda: scale_by_rss(eps=-1.0)),
    ("eps", lambda: scale_by_stddev(eps=-1.0)),
    ("eps", lambda: scale_by_trust_ratio(eps=-1.0)),
    ("eps_root", lambda: adam(0.1, eps_root=-1e-8)),
    # betas and decays: [0, 1)
    ("b1", lambda: adam(0.1, b1=1.0)),
    ("b1", lambda: adam(0.1, b1=-0.1)),
    ("b2", lambda: adam(0.1, b2=1.5)),
    ("b2", lambda: adamw(0.1, b2=1.0)),
    ("b1", lambda: lamb(0.1, b1=2.0)),
    ("b2", lambda: scale_by_adam(b2=-0.5)),
    ("decay", lambda: rmsprop(0.1, decay=1.0)),
    ("decay", lambda: scale_by_rms(decay=-0.1)),
    ("decay", lambda: ema(1.5)),
    ("decay", lambda: trace(1.5)),  # decay = 1 (no forgetting) is accepted, as in Optax
    # momentum: [0, 1)
    ("momentum", lambda: sgd(0.1, momentum=1.0)),
    ("momentum", lambda: sgd(0.1, momentum=-0.5)),
    ("momentum", lambda: rmsprop(0.1, momentum=1.2)),
    ("momentum", lambda: lars(0.1, momentum=1.0)),
    # decay and trust ratio settings
    ("weight_decay", lambda: adamw(0.1, weight_decay=-1e-4)),
    ("weight_decay", lambda: lars(0.1, weight_decay=-1.0)),
    ("weight_decay", lambda: lamb(0.1, weight_decay=-1.0)),
    ("weight_decay", lambda: add_decayed_weights(-0.1)),
    ("trust_coefficient", lambda: lars(0.1, trust_coefficient=-0.001)),
    ("min_norm", lambda: scale_by_trust_ratio(min_norm=-1.0)),
    ("initial_accumulator_value", lambda: adagrad(0.1, initial_accumulator_value=-0.1)),
    ("initial_scale", lambda: rmsprop(0.1, initial_scale=-1.0)),
    # clipping thresholds: > 0
    ("max_delta", lambda: clip(0.0)),
    ("max_delta", lambda: clip(-1.0)),
    ("max_norm", lambda: clip_by_global_norm(0.0)),
    ("max_norm", lambda: clip_by_global_norm(-2.0)),
]


ARGUMENT_ERRORS += [(build, ValueError, rf"\b{argument}\b") for argument, build in BAD_ARGUMENTS]


@pytest.mark.parametrize(
    "call, exception, pattern", ARGUMENT_ERRORS, ids=[f"{i}-{p[:60]}" for i, (_, _, p) in enumerate(ARGUMENT_ERRORS)]
)
def test_argument_errors_come_from_validate(call, exception, pattern):
    with pytest.raises(exception, match=pattern) as info:
        call()
    assert _raised_in(info) == "_validate.py"


def test_boundary_values_are_accepted():
    sgd(0.0, momentum=0.0)
    adam(0.0, b1=0.0, b2=0.0, eps=0.0)
    rmsprop(0.1, decay=0.0, eps=0.0, momentum=0.0)
    lars(0.1, momentum=0.0, weight_decay=0.0, trust_coefficient=0.0)
    clip(1e-12)
    clip_by_global_norm(1e-12)


def test_non_numeric_hyperparameter_is_a_type_error():
    with pytest.raises(TypeError, match="learning_rate"):
        adam([0.1, 0.2])


def test_set_hyperparams_checks_values_in_validate():
    state = opt.adam(0.1).init({"w": jnp.ones(2)})
    with pytest.raises(ValueError, match=r"learning_rate must be a finite number >= 0, got -1\.0") as info:
        set_hyperparams(state, learning_rate=-1.0)
    assert _raised_in(info) == "_validate.py"
    with pytest.raises(ValueError, match=r"b2 must lie in \[0, 1\), got 1\.0"):
        set_hyperparams(state, b2=1.0)


def test_set_hyperparams_unknown_scheduled_and_ambiguous_names():
    params = {"a": jnp.ones(2), "b": jnp.ones(2)}
    with pytest.raises(KeyError) as info:
        set_hyperparams(opt.adam(0.1).init(params), lr=0.1)
    assert "no hyperparameter named 'lr'" in info.value.args[0] and "'learning_rate'" in info.value.args[0]
    with pytest.raises(ValueError, match=r"\[1\]\.hyperparams\['learning_rate'\] follows a schedule"):
        set_hyperparams(opt.adam(lambda count: 0.1).init(params), learning_rate=0.2)
    two = partition({"x": opt.adam(0.1), "y": opt.sgd(0.2)}, {"a": "x", "b": "y"})
    with pytest.raises(ValueError, match=r"'learning_rate' is shared .* name one of .*inner_states\['x'\]"):
        set_hyperparams(two.init(params), learning_rate=0.1)


def test_non_transform_arguments_to_wrappers():
    for wrap, name in [
        (functools.partial(apply_if_finite, max_consecutive_errors=1), "inner"),
        (functools.partial(MultiSteps, every_k_schedule=2), "opt"),
    ]:
        with pytest.raises(TypeError, match=rf"{name} must be a GradientTransformation \(an \(init, update\) pair\)"):
            wrap(object())


@pytest.mark.parametrize(
    "build, argument",
    [
        (lambda: oc.adam(1e40), "learning_rate"),
        (lambda: oc.clip_by_global_norm(1e39), "max_norm"),
        (lambda: oc.MultiSteps(oc.sgd(0.1), every_k_schedule=2**31), "every_k_schedule"),
        (lambda: oc.MultiSteps(oc.sgd(0.1), every_k_schedule=lambda step: 0), "every_k_schedule"),
        (lambda: oc.MultiSteps(oc.sgd(0.1), every_k_schedule=lambda step: -2), "every_k_schedule"),
    ],
    ids=["adam_1e40", "clip_1e39", "every_k_2**31", "every_k_zero", "every_k_negative"],
)
def test_out_of_range_values_raise_naming_the_argument(build, argument):
    with pytest.raises(ValueError, match=argument):
        build()
