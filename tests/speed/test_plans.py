"""``step`` recognises a steppable transform from its typed parts, never from attributes.

Every equivalent spelling of sgd-momentum / adam / adamw / lamb gets the kernel (the lowered step
holds the custom call) with the numbers of ``update`` + ``apply_updates``; wrappers of any other kind
(``functools.wraps``, a hand-made ``GradientTransformation``, ``inject_hyperparams``) never inherit it.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import optcompose as oc
from optcompose.speed import kernels
from optcompose.speed._plans import parts, plan_for

pytestmark = pytest.mark.skipif(not kernels.available(), reason="the CPU kernels cannot be built here")

PARAMS = {"w": jnp.linspace(-1.0, 1.0, 12, dtype=jnp.float32).reshape(3, 4), "b": jnp.full((4,), 0.25)}
GRADS = jax.tree.map(lambda p: jnp.cos(3.0 * p) + 0.1, PARAMS)
LR = 0.1


def _pieces_adamw():
    return oc.scale_by_adam(), oc.add_decayed_weights(1e-2), oc.scale_by_learning_rate(LR)


SPELLINGS = {
    "adamw": ("optcompose_adam", lambda: oc.adamw(LR, weight_decay=1e-2)),
    "adamw_by_hand": ("optcompose_adam", lambda: oc.chain(*_pieces_adamw())),
    "adamw_named": ("optcompose_adam", lambda: oc.named_chain(*zip(("adam", "wd", "lr"), _pieces_adamw(), strict=True))),  # noqa: E501
    "adamw_identity": ("optcompose_adam", lambda: oc.chain(oc.adamw(LR, weight_decay=1e-2), oc.identity())),
    "adamw_nested": ("optcompose_adam", lambda: oc.chain(oc.identity(), oc.chain(*_pieces_adamw()[:2]), oc.scale_by_learning_rate(LR))),  # noqa: E501
    "clip_then_adamw": ("optcompose_adam", lambda: oc.chain(oc.clip_by_global_norm(1.0), oc.adamw(LR))),
    "adam_masked_decay": ("optcompose_adam", lambda: oc.chain(oc.scale_by_adam(), oc.masked(oc.add_decayed_weights(0.1), {"w": True, "b": False}), oc.scale_by_learning_rate(LR))),  # noqa: E501
    "sgd_by_hand": ("optcompose_sgd", lambda: oc.chain(oc.trace(0.9, nesterov=True), oc.scale_by_learning_rate(LR))),
    "sgd_named": ("optcompose_sgd", lambda: oc.named_chain(("m", oc.trace(0.9)), ("lr", oc.scale_by_learning_rate(LR)))),  # noqa: E501
    "l2_then_sgd": ("optcompose_sgd", lambda: oc.chain(oc.add_decayed_weights(1e-3), oc.sgd(LR, 0.9))),
    "lamb": ("optcompose_lamb", lambda: oc.lamb(LR, weight_decay=0.01)),
    "lamb_by_hand": ("optcompose_lamb", lambda: oc.chain(oc.scale_by_adam(eps=1e-6), oc.scale_by_trust_ratio(), oc.scale_by_learning_rate(LR))),  # noqa: E501
    "flat_adamw_by_hand": ("optcompose_adam", lambda: oc.flat_state(oc.chain(*_pieces_adamw()))),
}  # fmt: skip


def _lowered(tx) -> str:
    return jax.jit(lambda g, s, p: oc.step(tx, g, s, p)).lower(GRADS, tx.init(PARAMS), PARAMS).as_text()


def _both_roads(tx, steps=4):
    step = jax.jit(lambda g, s, p: oc.step(tx, g, s, p))
    plain = jax.jit(lambda g, s, p: (lambda u, s2: (oc.apply_updates(p, u), s2))(*tx.update(g, s, p)))
    a = b = (PARAMS, tx.init(PARAMS))
    for _ in range(steps):
        a = step(GRADS, a[1], a[0])
        b = plain(GRADS, b[1], b[0])
    return a, b


@pytest.mark.parametrize("name", SPELLINGS)
def test_every_equivalent_spelling_gets_the_kernel_with_equal_numbers(name):
    target, build = SPELLINGS[name]
    tx = build()
    assert target in _lowered(tx)
    (p1, s1), (p2, s2) = _both_roads(tx)
    for x, y in zip(jax.tree.leaves((p1, s1)), jax.tree.leaves((p2, s2)), strict=True):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=4e-6, atol=1e-7)
    assert jax.tree.structure(s1) == jax.tree.structure(s2)


def _doubled(tx):
    def update(updates, state, params=None):
        updates, state = tx.update(updates, state, params)
        return jax.tree.map(lambda u: 2.0 * u, updates), state

    return oc.GradientTransformation(tx.init, functools.wraps(tx.update)(update))


@pytest.mark.parametrize(
    "wrap",
    [
        _doubled,
        lambda tx: oc.GradientTransformation(tx.init, tx.update),
        lambda tx: oc.chain(_doubled(tx)),
        lambda tx: oc.apply_if_finite(tx, 3),
    ],
    ids=["functools_wraps", "plain_pair", "chain_of_wrapper", "apply_if_finite"],
)
def test_a_wrapper_never_inherits_a_kernel(wrap):
    tx = wrap(oc.adamw(0.1))
    assert plan_for(tx) is None
    assert "optcompose_" not in _lowered(tx)
    state = tx.init(PARAMS)
    new_params, _ = oc.step(tx, GRADS, state, PARAMS)
    expected = oc.apply_updates(PARAMS, tx.update(GRADS, state, PARAMS)[0])
    for x, y in zip(jax.tree.leaves(new_params), jax.tree.leaves(expected), strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def test_the_issue_example_wraps_case():
    # adamw(0.1) doubled by a functools.wraps wrapper: update + apply gives 0.79998, and so must step.
    params, grads = {"w": jnp.ones((3,))}, {"w": jnp.full((3,), 0.5)}
    tx = _doubled(oc.adamw(0.1))
    state = tx.init(params)
    new_params, _ = oc.step(tx, grads, state, params)
    np.testing.assert_allclose(np.asarray(new_params["w"]), 0.79998, rtol=1e-6)


def test_parts_see_through_renames_and_masks_but_not_wrappers():
    found = parts(oc.lamb(0.1, trust_ratio_mask={"w": True, "b": False}))
    assert [p.kind for p in found] == ["adam", "decay", "trust", "lr"]
    assert found[2].names == {"eps": "trust_ratio_eps"} and found[2].inner == ("inner_state",)
    assert [p.path for p in found] == [(0,), (1,), (2,), (3,)]
    opaque = parts(oc.chain(oc.apply_if_finite(oc.sgd(0.1, 0.9), 1)))
    assert len(opaque) == 1 and opaque[0].leaf is None


def test_a_schedule_is_read_from_the_count_not_the_stored_value():
    schedule = oc.linear_schedule(1.0, 0.0, 10)
    tx = oc.sgd(schedule, momentum=0.9)
    state = tx.init(PARAMS)
    # A stale stored value (as after restoring into a changed schedule) must not be used.
    state = (state[0], state[1]._replace(hyperparams=state[1].hyperparams.replace(learning_rate=jnp.float32(95.0))))
    kernel, _ = oc.step(tx, GRADS, state, PARAMS)
    plain = oc.apply_updates(PARAMS, tx.update(GRADS, state, PARAMS)[0])
    for x, y in zip(jax.tree.leaves(kernel), jax.tree.leaves(plain), strict=True):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=1e-6)
