"""Every optimizer against a NumPy reference written from its paper, 20 steps, jitted and eager.

The references in reference.py implement each optimizer's formula directly (not as a chain of
transforms), so these tests also check that each optimizer is the right chain. The pmap runs of
the same cases live in test_pmap.py.
"""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import reference as ref
import trajectory as tr

from optcompose._base import chain
from optcompose._hyperparams import get_hyperparams
from optcompose._numerics import bias_correction_factor
from optcompose.optimizers._classic import adagrad, adam, adamw, lamb, lars, rmsprop, sgd
from optcompose.transforms._decay import add_decayed_weights


def not_scalar(path, leaf):
    return np.ndim(leaf) >= 1


def lr_schedule(count):
    return 0.1 * 0.85**count


ADAM = {"b1": 0.9, "b2": 0.99, "eps": 1e-3}
WD = 0.2

CASES = [
    tr.Case("sgd", lambda: sgd(0.1), lambda: ref.ref_sgd(0.1)),
    tr.Case("sgd_momentum", lambda: sgd(0.05, momentum=0.9), lambda: ref.ref_sgd(0.05, 0.9)),
    tr.Case("sgd_nesterov", lambda: sgd(0.05, momentum=0.9, nesterov=True), lambda: ref.ref_sgd(0.05, 0.9, True)),
    tr.Case(
        "sgd_momentum_schedule",
        lambda: sgd(lr_schedule, momentum=0.9),
        lambda: ref.ref_sgd(lr_schedule, 0.9),
    ),
    tr.Case("sgd_momentum_low_precision", lambda: sgd(0.05, momentum=0.9), lambda: ref.ref_sgd(0.05, 0.9), True),
    tr.Case("adagrad", lambda: adagrad(0.2), lambda: ref.ref_adagrad(0.2)),
    tr.Case(
        "adagrad_torch_form",
        lambda: adagrad(0.2, initial_accumulator_value=0.0, eps=1e-10, eps_in_sqrt=False),
        lambda: ref.ref_adagrad(0.2, 0.0, 1e-10, eps_in_sqrt=False),
    ),
    tr.Case("rmsprop", lambda: rmsprop(0.02, decay=0.9, eps=0.01), lambda: ref.ref_rmsprop(0.02, 0.9, 0.01)),
    tr.Case(
        "rmsprop_centered_momentum",
        lambda: rmsprop(0.02, decay=0.9, eps=0.1, eps_in_sqrt=False, centered=True, momentum=0.8),
        lambda: ref.ref_rmsprop(0.02, 0.9, 0.1, eps_in_sqrt=False, centered=True, momentum=0.8),
    ),
    tr.Case("adam", lambda: adam(0.05, **ADAM), lambda: ref.ref_adam(0.05, **ADAM)),
    tr.Case("adam_low_precision", lambda: adam(0.05, **ADAM), lambda: ref.ref_adam(0.05, **ADAM), True),
    tr.Case(
        "adam_l2",
        lambda: chain(add_decayed_weights(WD), adam(0.05, **ADAM)),
        lambda: ref.ref_adam(0.05, **ADAM, weight_decay=WD, decoupled=False),
    ),
    tr.Case(
        "adamw",
        lambda: adamw(0.05, **ADAM, weight_decay=WD),
        lambda: ref.ref_adam(0.05, **ADAM, weight_decay=WD, decoupled=True),
    ),
    tr.Case(
        "adamw_mask",
        lambda: adamw(0.05, **ADAM, weight_decay=WD, mask=tr.tree_rule(tr.is_matrix)),
        lambda: ref.ref_adam(0.05, **ADAM, weight_decay=WD, mask=tr.is_matrix),
    ),
    tr.Case(
        "adamw_mask_tree_low_precision",
        lambda: adamw(0.05, **ADAM, weight_decay=WD, mask=tr.explicit_mask(tr.make_params(True))),
        lambda: ref.ref_adam(0.05, **ADAM, weight_decay=WD, mask=tr.is_matrix),
        True,
    ),
    tr.Case(
        "lars_masks",
        lambda: lars(
            1.0,
            weight_decay=WD,
            weight_decay_mask=tr.tree_rule(tr.is_matrix),
            trust_coefficient=0.02,
            eps=0.01,
            trust_ratio_mask=tr.tree_rule(not_scalar),
            momentum=0.9,
        ),
        lambda: ref.ref_lars(1.0, WD, tr.is_matrix, 0.02, 0.01, not_scalar, 0.9),
    ),
    tr.Case(
        "lars_schedule",
        lambda: lars(lambda count: 10 * lr_schedule(count), weight_decay=WD, trust_coefficient=0.02),
        lambda: ref.ref_lars(lambda count: 10 * lr_schedule(count), WD, None, 0.02, 0.0, None, 0.9),
    ),
    tr.Case(
        "lars_nesterov",
        lambda: lars(1.0, weight_decay=WD, trust_coefficient=0.02, momentum=0.8, nesterov=True),
        lambda: ref.ref_lars(1.0, WD, None, 0.02, 0.0, None, 0.8, nesterov=True),
    ),
    tr.Case(
        "lamb",
        lambda: lamb(0.02, 0.9, 0.99, eps=1e-6, weight_decay=WD, mask=tr.tree_rule(tr.is_matrix)),
        lambda: ref.ref_lamb(0.02, 0.9, 0.99, 1e-6, 0.0, WD, tr.is_matrix),
    ),
    tr.Case(
        "lamb_low_precision",
        lambda: lamb(0.02, 0.9, 0.99, eps=1e-6, weight_decay=WD),
        lambda: ref.ref_lamb(0.02, 0.9, 0.99, 1e-6, 0.0, WD),
        True,
    ),
]
CASES_BY_NAME = {case.name: case for case in CASES}


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_optimizer_matches_reference_jit(case):
    tr.check_case(case, "jit", CASES)


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_optimizer_matches_reference_eager(case):
    tr.check_case(case, "eager")


def test_adamw_decoupled_decay_differs_from_adam_l2():
    """The seed's central claim: the same gradients, the same wd, different trajectories.

    Each run matches its own reference (AdamW: decay outside the moments; Adam + L2: decay inside
    them, as torch.optim.Adam(weight_decay=...)), and the two end up clearly apart.
    """
    runs = tr.run_cases(CASES, "jit")
    params, noise = tr.problem(False)
    finals = {}
    for name, decoupled in [("adamw", True), ("adam_l2", False)]:
        trajectory, _ = runs[name]
        expected = tr.reference_trajectory(
            ref.ref_adam(0.05, **ADAM, weight_decay=WD, decoupled=decoupled), params, noise
        )
        final = jax.tree.map(lambda x: x[-1], trajectory)
        chex.assert_trees_all_close(tr.flatten(final), expected[-1], rtol=2e-5, atol=2e-6)
        finals[name] = tr.flatten(final)
    with pytest.raises(AssertionError):
        chex.assert_trees_all_close(finals["adamw"], finals["adam_l2"], rtol=1e-3, atol=1e-3)
    gap = max(np.max(np.abs(finals["adamw"][k] - finals["adam_l2"][k])) for k in finals["adamw"])
    assert gap > 1e-2, gap


def test_decoupled_decay_with_zero_gradient_only_shrinks_weights():
    """With g = 0 Adam's direction is 0, so AdamW gives w -> (1 - lr wd) w and Adam + L2 gives
    w -> w - lr * (wd w) / (|wd w| + eps) (the decay normalised by the adaptive denominator)."""
    lr, wd, eps = 0.1, 0.5, 1e-3
    w = {"w": jnp.array([2.0, -0.5, 0.0])}
    g = jax.tree.map(jnp.zeros_like, w)
    decoupled = adamw(lr, eps=eps, weight_decay=wd)
    coupled = chain(add_decayed_weights(wd), adam(lr, eps=eps))
    u_w, _ = decoupled.update(g, decoupled.init(w), w)
    u_l2, _ = coupled.update(g, coupled.init(w), w)
    chex.assert_trees_all_close(u_w, {"w": -lr * wd * w["w"]}, rtol=1e-6)
    decay = wd * w["w"]
    chex.assert_trees_all_close(u_l2, {"w": -lr * decay / (jnp.abs(decay) + eps)}, rtol=1e-5)


def test_adam_bias_correction_at_first_step():
    """t = 1: m_1 = (1 - b1) g and m_hat = m_1 / (1 - b1) = 10 m_1 = g for b1 = 0.9; likewise
    v_hat = g^2, so the first update is exactly -lr * g / (|g| + eps)."""
    assert float(bias_correction_factor(jnp.float32(0.9), jnp.int32(1))) == pytest.approx(10.0, rel=1e-6)
    lr, eps = 0.3, 1e-3
    g = {"a": jnp.array([2.0, -0.5, 1e-4, 0.0]), "b": jnp.array([[3.0]])}
    tx = adam(lr, b1=0.9, b2=0.999, eps=eps)
    updates, state = jax.jit(tx.update)(g, tx.init(g))
    expected = jax.tree.map(lambda x: -lr * x / (jnp.abs(x) + eps), g)
    chex.assert_trees_all_close(updates, expected, rtol=1e-6, atol=1e-9)
    chex.assert_trees_all_close(jax.tree.map(lambda m: 10.0 * m, state[0].mu), g, rtol=1e-6)
    chex.assert_trees_all_close(jax.tree.map(lambda v: 1000.0 * v, state[0].nu), jax.tree.map(jnp.square, g), rtol=1e-4)


def test_nadam_first_step():
    """Nesterov Adam at t = 1: m_hat = b1 m_1 / (1 - b1^2) + (1 - b1) g / (1 - b1)
    = (1 + b1 / (1 + b1)) g, so the update is -lr (1 + b1 / (1 + b1)) g / (|g| + eps)."""
    lr, eps, b1 = 0.3, 1e-3, 0.9
    g = {"a": jnp.array([2.0, -0.5])}
    tx = adam(lr, b1=b1, eps=eps, nesterov=True)
    updates, _ = tx.update(g, tx.init(g))
    factor = 1 + b1 / (1 + b1)
    chex.assert_trees_all_close(updates, {"a": -lr * factor * g["a"] / (jnp.abs(g["a"]) + eps)}, rtol=1e-6)


@pytest.mark.parametrize(
    "make, expected",
    [
        (lambda: sgd(0.1, momentum=0.9), {"learning_rate": 0.1, "momentum": 0.9}),
        (lambda: adagrad(0.2, eps=1e-10), {"learning_rate": 0.2, "eps": 1e-10}),
        (
            lambda: rmsprop(0.01, decay=0.99, eps=1e-8, centered=True, momentum=0.5),
            {"learning_rate": 0.01, "eps": 1e-8},
        ),
        (lambda: adam(1e-3, b1=0.8, b2=0.95), {"learning_rate": 1e-3, "b1": 0.8, "b2": 0.95, "eps": 1e-8}),
        (lambda: adamw(3e-4, weight_decay=0.05), {"learning_rate": 3e-4, "weight_decay": 0.05, "b2": 0.999}),
        (
            lambda: lars(0.5, weight_decay=1e-4, trust_coefficient=0.002),
            {"learning_rate": 0.5, "trust_coefficient": 0.002},
        ),
        (lambda: lamb(2e-3, weight_decay=0.01), {"learning_rate": 2e-3, "weight_decay": 0.01}),
    ],
    ids=["sgd", "adagrad", "rmsprop", "adam", "adamw", "lars", "lamb"],
)
def test_get_hyperparams_reports_the_settings(make, expected):
    params = {"w": jnp.ones((2, 2)), "b": jnp.zeros(2)}
    tx = make()
    state = tx.init(params)
    for current in (state, tx.update(params, state, params)[1]):
        found = get_hyperparams(current)
        for name, value in expected.items():
            assert name in found, (name, sorted(found))
            assert float(found[name]) == pytest.approx(value, rel=1e-6), name


def test_get_hyperparams_follows_a_schedule():
    schedule = lambda count: 0.1 / (1.0 + count)
    tx = sgd(schedule, momentum=0.9)
    params = {"w": jnp.ones(2)}
    state = tx.init(params)
    assert float(get_hyperparams(state)["learning_rate"]) == pytest.approx(0.1)
    _, state = tx.update(params, state, params)
    assert float(get_hyperparams(state)["learning_rate"]) == pytest.approx(0.05)
