"""Rulesets: quasi-random search, search-space forms, submissions, discovery of library optimizers."""

import math

import jax.numpy as jnp
import numpy as np
import pytest

import optcompose as oc
from optcompose.arena import _rulesets as rs


def test_plain_halton_is_the_radical_inverse():
    pts = rs.halton(4, 2, scramble=False)
    np.testing.assert_allclose(pts[:, 0], [1 / 2, 1 / 4, 3 / 4, 1 / 8])
    np.testing.assert_allclose(pts[:, 1], [1 / 3, 2 / 3, 1 / 9, 4 / 9])


def test_scrambled_halton_stays_stratified():
    pts = rs.halton(27, 3, seed=5)
    assert pts.min() >= 0 and pts.max() < 1
    # Digit permutations keep the net property: 8 points fill the 8 base-2 cells, 27 the 27 base-3 cells.
    assert sorted(np.floor(pts[:8, 0] * 8).astype(int)) == list(range(8))
    assert sorted(np.floor(pts[:, 1] * 27).astype(int)) == list(range(27))
    assert not np.allclose(pts, rs.halton(27, 3, seed=6))
    np.testing.assert_array_equal(pts, rs.halton(27, 3, seed=5))


def test_distributions_and_written_forms():
    assert rs.LogUniform(1e-4, 1e-2).from_unit(0.5) == pytest.approx(1e-3)
    assert rs.OneMinusLogUniform(1e-3, 1e-1).from_unit(0.5) == pytest.approx(0.99)
    assert rs.Uniform(2, 4).from_unit(0.25) == 2.5
    assert rs.Choice((1, 2, 3)).from_unit(0.99) == 3
    assert rs.as_distribution("x", ("log", 1e-3, 1.0)) == rs.LogUniform(1e-3, 1.0)
    assert rs.as_distribution("x", ("one_minus_log", 0.01, 0.1)) == rs.OneMinusLogUniform(0.01, 0.1)
    assert rs.as_distribution("x", [True, False]) == rs.Choice((True, False))
    assert rs.as_distribution("x", 0.5) == rs.Fixed(0.5)
    with pytest.raises(ValueError, match="unknown kind"):
        rs.as_distribution("x", ("cubic", 1, 2))
    with pytest.raises(ValueError, match="0 < lo"):
        rs.as_distribution("x", ("log", 0.0, 1.0))


def test_sample_configs_cover_the_space_reproducibly():
    space = {"learning_rate": ("log", 1e-4, 1e-1), "b1": ("one_minus_log", 1e-2, 0.3), "nesterov": True}
    configs = rs.sample_configs(space, 16)
    assert configs == rs.sample_configs(space, 16)
    lrs = np.log10([c["learning_rate"] for c in configs])
    assert lrs.min() >= -4 and lrs.max() <= -1 and lrs.max() - lrs.min() > 2.5
    assert all(0.7 <= c["b1"] <= 0.99 and c["nesterov"] is True for c in configs)
    studies = rs.study_configs(space, 3, 4)
    assert [len(s) for s in studies] == [4, 4, 4]
    flat = rs.sample_configs(space, 12)
    assert studies[1] == flat[1::3]  # study s gets points s, s + S, ...


def test_default_config_sources():
    def make(learning_rate, momentum=0.5, total_steps=10):
        return oc.sgd(learning_rate, momentum=momentum)

    sub = rs.Submission("s", make, {"learning_rate": rs.LogUniform(1e-4, 1e-2)})
    assert sub.default_config() == {"learning_rate": pytest.approx(1e-3), "momentum": 0.5}
    assert rs.Submission("s", make, defaults={"learning_rate": 0.1}).default_config() == {"learning_rate": 0.1,
                                                                                          "momentum": 0.5}
    with pytest.raises(ValueError, match="learning_rate"):
        rs.Submission("s", make).default_config()


def test_build_passes_total_steps_only_when_accepted():
    seen = {}

    def with_steps(learning_rate=0.1, total_steps=None):
        seen["total_steps"] = total_steps
        return oc.sgd(learning_rate)

    rs.Submission("a", with_steps).build({"learning_rate": 0.2}, 123)
    assert seen["total_steps"] == 123
    rs.Submission("b", lambda learning_rate=0.1: oc.sgd(learning_rate)).build({}, 123)  # no error


def test_rulesets_give_configs_per_study():
    sub = rs.BASELINES["AdamW"]
    assert [len(s) for s in sub.configs("tuned", [0, 1, 2], 5)] == [5, 5, 5]
    assert sub.configs("defaults", [0, 1], 5) == [[sub.default_config()]] * 2
    assert sub.configs("self-tuning", [0], 5) == [[sub.default_config()]]
    with pytest.raises(ValueError, match="ruleset"):
        sub.configs("online", [0])
    assert rs.budget("self-tuning", 400, 25) == 600
    assert rs.budget("self-tuning", 100, 30) == 150
    assert rs.budget("tuned", 400, 25) == 400


def test_baselines_keep_learning_rate_in_the_state():
    params = {"w": jnp.ones((3, 2)), "b": jnp.zeros(2)}
    for sub in rs.BASELINES.values():
        opt = sub.build(sub.default_config(), 100)
        state = opt.init(params)
        hp = oc.get_hyperparams(state)
        assert hp["learning_rate"] == pytest.approx(sub.default_config()["learning_rate"])
        state = oc.set_hyperparams(state, learning_rate=0.5)
        assert float(oc.get_hyperparams(state)["learning_rate"]) == 0.5


def test_warmup_cosine_multiplier():
    f = rs.warmup_cosine(100)
    assert float(f(0)) == 0.0
    assert float(f(5)) == pytest.approx(1.0)
    assert float(f(100)) == pytest.approx(0.0, abs=1e-7)
    assert float(f(52)) == pytest.approx(0.5 * (1 + math.cos(math.pi * 47 / 95)), rel=1e-5)
    assert float(rs.warmup_cosine(2)(1)) == 1.0


def test_library_discovery_picks_up_new_optimizers(monkeypatch):
    found = rs.library_submissions()
    assert {"oc.sgd", "oc.adam", "oc.adamw"} <= set(found)
    assert set(found["oc.adamw"].search_space) == {"learning_rate", "b1", "b2", "weight_decay"}
    assert set(found["oc.sgd"].search_space) == {"learning_rate"}  # momentum defaults to None: not tuned
    assert found["oc.sgd"].default_config()["learning_rate"] == 1e-3

    def lion(learning_rate, b1=0.9, b2=0.99, weight_decay=1e-3):
        return oc.adamw(learning_rate, b1=b1, b2=b2, weight_decay=weight_decay)

    monkeypatch.setattr(oc, "lion", lion, raising=False)
    lion_entry = rs.library_submissions()["oc.lion"]
    assert lion_entry.search_space["learning_rate"] == rs.LogUniform(1e-5, 1e-2)
    assert lion_entry.default_config() == {"learning_rate": 1e-4, "b1": 0.9, "b2": 0.99, "weight_decay": 1e-3}
    assert "oc.lion" in rs.all_submissions()


def test_frontier_contrib_and_composed_optimizers_join():
    found = rs.library_submissions()
    # Frontier (top level), contrib, composed and learning-rate-free ones are all found.
    assert {"oc.mars", "oc.laprop", "oc.shampoo", "oc.soap", "oc.muon", "oc.schedule_free_adamw", "oc.prodigy"} <= set(
        found
    )
    assert not {"oc.sophia", "oc.polyak_sgd", "oc.momo", "oc.lbfgs", "oc.dpsgd"} & set(found)  # need the loss
    cautious = found["oc.cautious_adamw"]
    assert set(cautious.search_space) == {"learning_rate", "b1", "b2", "weight_decay"}
    tx = cautious.build({"learning_rate": 0.1}, 10)
    assert isinstance(tx.init({"w": jnp.zeros(2)}), oc.transforms.CautiousState)
    # The cautious mask zeroes the components whose update disagrees with the gradient's sign.
    params = {"w": jnp.zeros(2)}
    state = tx.init(params)
    updates, _ = tx.update({"w": jnp.array([1.0, -2.0])}, state, params)
    assert np.all(np.sign(np.asarray(updates["w"])) == [-1.0, 1.0])
    assert found["oc.prodigy"].default_config()["learning_rate"] == 1.0
    assert found["oc.schedule_free_adamw"].eval_params is not None and found["oc.adamw"].eval_params is None
