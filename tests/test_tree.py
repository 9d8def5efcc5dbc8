"""Errors that name a pytree path (optcompose/_tree.py): structure, shape and dtype mismatches.

Raised at trace time by the tree helpers, under jit as eagerly, each naming the first path where
the trees differ (``['dense']['kernel']``), the trees involved and what was expected.
"""

from pathlib import Path

import jax
import jax.numpy as jnp
import pytest
from flax.core import FrozenDict

from optcompose import optimizers as opt
from optcompose._base import apply_updates
from optcompose._tree import NotFloatingError
from optcompose.optimizers._classic import adagrad, adam, adamw, lamb, lars, rmsprop, sgd
from optcompose.transforms._decay import add_decayed_weights
from optcompose.transforms._trust_ratio import scale_by_trust_ratio


def _raised_in(info) -> str:
    """The file name of the frame that raised."""
    return Path(info.traceback[-1].path).name


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


def test_transforms_that_need_params_say_so():
    needing = [(scale_by_trust_ratio(), "scale_by_trust_ratio"), (add_decayed_weights(0.1), "add_decayed_weights")]
    for tx, name in needing:
        with pytest.raises(ValueError, match=rf"{name} needs params: call update\(updates, state, params\)"):
            tx.update(PARAMS, tx.init(PARAMS))



def test_integer_error_raised_at_trace_time_under_jit():
    tx = opt.sgd(0.1)
    grads = {"w": jnp.ones(2), "nested": {"step": jnp.asarray(1, jnp.int32)}}
    with pytest.raises(NotFloatingError, match=r"updates\['nested'\]\['step'\] has dtype int32"):
        jax.jit(tx.update)(grads, tx.init(grads))


# ----------------------------------------------------------------------------------------------
# Structure mismatches name the first differing pytree path.

HEAD_PARAMS = {"dense": {"kernel": jnp.ones((2, 3)), "bias": jnp.zeros(3)}, "head": jnp.ones(3)}
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
    state = tx.init(HEAD_PARAMS)
    update = jax.jit(tx.update) if jit else tx.update
    with pytest.raises(ValueError, match=KERNEL):
        update(WITHOUT_KERNEL, state, WITHOUT_KERNEL)


@pytest.mark.parametrize("name", list(NEED_PARAMS))
def test_updates_and_params_structure_mismatch_names_the_path(name):
    tx = NEED_PARAMS[name]()
    state = tx.init(HEAD_PARAMS)
    with pytest.raises(ValueError, match=KERNEL):
        tx.update(HEAD_PARAMS, state, WITHOUT_KERNEL)


def test_state_from_other_params_names_the_path():
    tx = adam(0.1)
    state = tx.init(WITHOUT_KERNEL)
    with pytest.raises(ValueError, match=KERNEL + r".*not in"):
        tx.update(HEAD_PARAMS, state, HEAD_PARAMS)


def test_apply_updates_structure_mismatch_names_the_path():
    with pytest.raises(ValueError, match=r"params and updates.*" + KERNEL):
        apply_updates(HEAD_PARAMS, WITHOUT_KERNEL)
    with pytest.raises(ValueError, match=KERNEL):
        jax.jit(apply_updates)(WITHOUT_KERNEL, HEAD_PARAMS)


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
    state = tx.init(HEAD_PARAMS)
    with pytest.raises(ValueError, match="needs params"):
        tx.update(HEAD_PARAMS, state)
    with pytest.raises(ValueError, match="needs params"):
        jax.jit(tx.update)(HEAD_PARAMS, state, None)


