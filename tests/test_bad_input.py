"""Bad input fails early and says where: argument names, pytree paths, missing params."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import pytest
from flax.core import FrozenDict

from optcompose._base import apply_updates, chain
from optcompose.optimizers._classic import adagrad, adam, adamw, lamb, lars, rmsprop, sgd
from optcompose.transforms._adaptive import scale_by_adam, scale_by_rms, scale_by_rss, scale_by_stddev
from optcompose.transforms._clipping import clip, clip_by_global_norm
from optcompose.transforms._decay import add_decayed_weights
from optcompose.transforms._momentum import ema, trace
from optcompose.transforms._partition import masked
from optcompose.transforms._scaling import scale_by_learning_rate
from optcompose.transforms._trust_ratio import scale_by_trust_ratio

NAN = float("nan")

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


@pytest.mark.parametrize("argument, build", BAD_ARGUMENTS, ids=[f"{i}-{a}" for i, (a, _) in enumerate(BAD_ARGUMENTS)])
def test_invalid_hyperparameter_raises_at_construction_naming_it(argument, build):
    with pytest.raises(ValueError, match=rf"\b{argument}\b"):
        build()


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


# ----------------------------------------------------------------------------------------------
# Structure mismatches name the first differing pytree path.

PARAMS = {"dense": {"kernel": jnp.ones((2, 3)), "bias": jnp.zeros(3)}, "head": jnp.ones(3)}
WITHOUT_KERNEL = {"dense": {"bias": jnp.zeros(3)}, "head": jnp.ones(3)}
KERNEL = r"\['dense'\]\['kernel'\]"

STATEFUL = {
    "sgd_momentum": lambda: sgd(0.1, momentum=0.9),
    "adagrad": lambda: adagrad(0.1),
    "rmsprop": lambda: rmsprop(0.1),
    "rmsprop_centered": lambda: rmsprop(0.1, centered=True, momentum=0.5),
    "adam": lambda: adam(0.1),
    "adamw": lambda: adamw(0.1),
    "lars": lambda: lars(0.1),
    "lamb": lambda: lamb(0.1),
}
NEED_PARAMS = {
    "add_decayed_weights": lambda: add_decayed_weights(1e-4),
    "add_decayed_weights_masked": lambda: add_decayed_weights(
        1e-4, mask=lambda p: jax.tree.map(lambda x: x.ndim > 1, p)
    ),
    "scale_by_trust_ratio": lambda: scale_by_trust_ratio(),
    "adamw": lambda: adamw(0.1),
    "adamw_masked": lambda: adamw(0.1, mask=lambda p: jax.tree.map(lambda x: x.ndim > 1, p)),
    "lars": lambda: lars(0.1),
    "lamb": lambda: lamb(0.1),
}


@pytest.mark.parametrize("jit", [False, True], ids=["eager", "jit"])
@pytest.mark.parametrize("name", list(STATEFUL))
def test_updates_and_state_structure_mismatch_names_the_path(name, jit):
    tx = STATEFUL[name]()
    state = tx.init(PARAMS)
    update = jax.jit(tx.update) if jit else tx.update
    with pytest.raises(ValueError, match=KERNEL):
        update(WITHOUT_KERNEL, state, WITHOUT_KERNEL)


@pytest.mark.parametrize("name", list(NEED_PARAMS))
def test_updates_and_params_structure_mismatch_names_the_path(name):
    tx = NEED_PARAMS[name]()
    state = tx.init(PARAMS)
    with pytest.raises(ValueError, match=KERNEL):
        tx.update(PARAMS, state, WITHOUT_KERNEL)


def test_state_from_other_params_names_the_path():
    tx = adam(0.1)
    state = tx.init(WITHOUT_KERNEL)
    with pytest.raises(ValueError, match=KERNEL + r".*not in"):
        tx.update(PARAMS, state, PARAMS)


def test_apply_updates_structure_mismatch_names_the_path():
    with pytest.raises(ValueError, match=r"params and updates.*" + KERNEL):
        apply_updates(PARAMS, WITHOUT_KERNEL)
    with pytest.raises(ValueError, match=KERNEL):
        jax.jit(apply_updates)(WITHOUT_KERNEL, PARAMS)


def test_container_type_mismatch_names_the_path():
    params = {"conv": FrozenDict({"w": jnp.ones(2)})}
    updates = {"conv": {"w": jnp.ones(2)}}
    with pytest.raises(ValueError, match=r"\['conv'\].*FrozenDict"):
        apply_updates(params, updates)


def test_leaf_versus_subtree_names_the_path():
    params = {"a": {"b": jnp.ones(2)}, "c": jnp.ones(1)}
    updates = {"a": jnp.ones(2), "c": jnp.ones(1)}
    with pytest.raises(ValueError, match=r"\['a'\]"):
        apply_updates(params, updates)


@pytest.mark.parametrize("name", list(NEED_PARAMS))
def test_missing_params_is_a_clear_error(name):
    tx = NEED_PARAMS[name]()
    state = tx.init(PARAMS)
    with pytest.raises(ValueError, match="needs params"):
        tx.update(PARAMS, state)
    with pytest.raises(ValueError, match="needs params"):
        jax.jit(tx.update)(PARAMS, state, None)


def test_bad_mask_structure_is_reported():
    tx = masked(scale_by_learning_rate(0.1), {"dense": True})
    with pytest.raises(ValueError, match="mask"):
        tx.init(PARAMS)


def test_chain_rejects_a_foreign_state():
    tx = chain(sgd(0.1), adam(0.1))
    with pytest.raises(ValueError, match="2 states"):
        tx.update(PARAMS, (tx.init(PARAMS)[0],), PARAMS)
