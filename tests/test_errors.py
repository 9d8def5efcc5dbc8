"""Error messages: each comes from one place and names the argument or pytree path and what was expected.

Argument errors are raised at construction by ``optcompose/validate.py``; structure, shape and
dtype errors at trace time by ``optcompose/tree.py``. The tests check both the message and the
module that raised it.
"""

import functools
from pathlib import Path

import jax
import jax.numpy as jnp
import pytest

from optcompose import optimizers as opt
from optcompose._base import chain, identity, named_chain
from optcompose._hyperparams import set_hyperparams
from optcompose._tree import NotFloatingError
from optcompose.transforms._accumulation import MultiSteps
from optcompose.transforms._adaptive import scale_by_adam, scale_by_rms, scale_by_rss, scale_by_stddev
from optcompose.transforms._clipping import clip, clip_by_global_norm
from optcompose.transforms._decay import add_decayed_weights
from optcompose.transforms._guards import apply_if_finite
from optcompose.transforms._momentum import ema, trace
from optcompose.transforms._partition import masked, partition
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


@pytest.mark.parametrize("call, exception, pattern", ARGUMENT_ERRORS, ids=[p for _, _, p in ARGUMENT_ERRORS])
def test_argument_errors_come_from_validate(call, exception, pattern):
    with pytest.raises(exception, match=pattern) as info:
        call()
    assert _raised_in(info) == "_validate.py"


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


PARAMS = {"dense": {"kernel": jnp.ones((2, 3)), "bias": jnp.zeros(3)}, "scale": jnp.ones(())}


def _update(tx, grads, params=PARAMS):
    return tx.update(grads, tx.init(params), params)


def test_missing_leaf_names_the_path():
    grads = {"dense": {"kernel": jnp.ones((2, 3))}, "scale": jnp.ones(())}
    with pytest.raises(ValueError, match=r"updates and mu must have the same pytree structure, but "
                                         r"\['dense'\]\['bias'\] is in mu but not in updates") as info:
        _update(opt.adam(0.1), grads)
    assert _raised_in(info) == "_tree.py"


def test_extra_leaf_names_the_path_and_the_trees():
    grads = {**PARAMS, "extra": jnp.ones(2)}
    with pytest.raises(ValueError, match=r"\['extra'\] is in updates but not in params") as info:
        _update(add_decayed_weights(0.1), grads)
    assert _raised_in(info) == "_tree.py"


def test_shape_mismatch_names_the_path_and_both_shapes():
    grads = {"dense": {"kernel": jnp.ones((3, 2)), "bias": jnp.zeros(3)}, "scale": jnp.ones(())}
    with pytest.raises(ValueError, match=r"updates\['dense'\]\['kernel'\] has shape \(3, 2\), "
                                         r"mu\['dense'\]\['kernel'\] has shape \(2, 3\)") as info:
        _update(opt.adam(0.1), grads)
    assert _raised_in(info) == "_tree.py"


@pytest.mark.parametrize("dtype", [jnp.int32, jnp.bool_])
def test_non_float_leaf_names_the_path_under_jit(dtype):
    grads = {**PARAMS, "scale": jnp.ones((), dtype)}
    tx = opt.adam(0.1)
    pattern = rf"updates\['scale'\] has dtype {jnp.dtype(dtype).name}; .*floating-point"
    with pytest.raises(NotFloatingError, match=pattern) as info:
        jax.jit(tx.update)(grads, tx.init(PARAMS), PARAMS)
    assert _raised_in(info) == "_tree.py"


def test_float0_gradients_are_refused():
    grads = jax.grad(lambda p: jnp.sum(p["w"]), allow_int=True)({"w": jnp.ones(2), "i": jnp.asarray(1)})
    tx = opt.sgd(0.1)
    with pytest.raises(NotFloatingError, match=r"updates\['i'\] has dtype float0"):
        tx.update(grads, tx.init(grads))


def test_chain_errors():
    with pytest.raises(TypeError, match=r"chain argument 1 must be a GradientTransformation .* got int"):
        chain(identity(), 3)
    tx = chain(identity(), identity())
    with pytest.raises(ValueError, match=r"chain of 2 transforms must be a tuple of 2 states, got tuple of length 1"):
        tx.update(PARAMS, (tx.init(PARAMS)[0],))
    with pytest.raises(ValueError, match=r"named_chain names must be unique, got \['a', 'a'\]"):
        named_chain(("a", identity()), ("a", identity()))


def test_transforms_that_need_params_say_so():
    needing = [(scale_by_trust_ratio(), "scale_by_trust_ratio"), (add_decayed_weights(0.1), "add_decayed_weights")]
    for tx, name in needing:
        with pytest.raises(ValueError, match=rf"{name} needs params: call update\(updates, state, params\)"):
            tx.update(PARAMS, tx.init(PARAMS))


def test_partition_and_mask_errors_name_the_path():
    with pytest.raises(ValueError, match=r"label 'head' at \['scale'\], which has no transform; known labels"):
        partition({"body": opt.sgd(0.1)}, {"dense": "body", "scale": "head"}).init(PARAMS)
    with pytest.raises(TypeError, match=r"mask leaves must be Python bools .* got 1 at \['scale'\]"):
        masked(opt.sgd(0.1), {"dense": True, "scale": 1}).init(PARAMS)
    with pytest.raises(ValueError, match=r"mask must be a pytree prefix of the parameters"):
        masked(opt.sgd(0.1), {"dense": True}).init(PARAMS)


def test_multisteps_checks_the_skip_function_output():
    bad = MultiSteps(opt.sgd(0.1), 2, should_skip_update_fn=lambda u, s, p: (jnp.asarray(1.0), ()))
    with pytest.raises(ValueError, match=r"should_skip_update_fn must return a scalar bool array .* float32"):
        bad.update(PARAMS, bad.init(PARAMS), PARAMS)
    with pytest.raises(ValueError, match=r"every_k_schedule must return a scalar, got an array of shape \(2,\)"):
        MultiSteps(opt.sgd(0.1), lambda step: jnp.ones(2, jnp.int32))  # caught at construction


def test_non_transform_arguments_to_wrappers():
    for wrap, name in [(functools.partial(apply_if_finite, max_consecutive_errors=1), "inner"),
                       (functools.partial(MultiSteps, every_k_schedule=2), "opt")]:
        with pytest.raises(TypeError, match=rf"{name} must be a GradientTransformation \(an \(init, update\) pair\)"):
            wrap(object())
