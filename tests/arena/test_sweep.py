"""Sweeps: the vmapped sweep gives the numbers of the same trials run one by one, and compiles once."""

import dataclasses

import jax
import numpy as np
import pytest

import optcompose as oc
import optcompose.contrib
from optcompose.arena import _rulesets as rs
from optcompose.arena import _sweep as sw
from optcompose.arena import _workloads as wl

FAST = {"xla_backend_optimization_level": 1}
RAVINE = dataclasses.replace(wl.WORKLOADS["ravine"], eval_every=10, target_setting_steps=30)


def _trials(sub, n, seeds=(0, 1)):
    configs = rs.sample_configs(sub.search_space, n)
    return [(c, s) for s in seeds for c in configs]


@pytest.mark.parametrize(
    ("workload", "baseline"),
    [
        (RAVINE, "NAdamW"),
        pytest.param(dataclasses.replace(wl.WORKLOADS["logreg_digits"], eval_every=10), "HeavyBall",
                     marks=pytest.mark.slow),
    ],
)
def test_vmapped_sweep_matches_one_by_one(workload, baseline):
    sub = rs.BASELINES[baseline]
    trials = _trials(sub, 3)
    target = 1.0
    vmapped = sw.run_trials(workload, sub.build, trials, 40, mode="vmap", target=target, compiler_options=FAST)
    looped = sw.run_trials(workload, sub.build, trials, 40, mode="loop", target=target, compiler_options=FAST)
    assert vmapped.programs == 1 and vmapped.recompiles == 0 and looped.recompiles == 0
    for a, b in zip(vmapped.trials, looped.trials, strict=True):
        assert a.error is None and b.error is None
        assert a.steps == b.steps == [10, 20, 30, 40]
        np.testing.assert_allclose(a.valid, b.valid, rtol=2e-4, atol=1e-6)
        np.testing.assert_allclose(a.train_loss, b.train_loss, rtol=2e-4, atol=1e-6)
        assert a.steps_to_target == b.steps_to_target
        for x, y in zip(jax.tree.leaves(a.params), jax.tree.leaves(b.params), strict=True):
            np.testing.assert_allclose(x, y, rtol=2e-4, atol=1e-6)
    assert all(len(t.chunk_s) == 4 for t in looped.trials) and not vmapped.trials[0].chunk_s
    assert vmapped.state_bytes_per_param > (8 if baseline == "NAdamW" else 4)  # float32 moments (or momentum)


def test_recompile_mode_agrees_and_compiles_per_trial():
    sub = rs.BASELINES["HeavyBall"]
    trials = _trials(sub, 3, seeds=(0,))
    before = sw.compile_count()
    baked = sw.run_trials(RAVINE, sub.build, trials, 20, mode="recompile", compiler_options=FAST)
    assert sw.compile_count() - before >= 3
    assert baked.programs == 3 and baked.recompiles == 2
    vmapped = sw.run_trials(RAVINE, sub.build, trials, 20, mode="vmap", compiler_options=FAST)
    for a, b in zip(vmapped.trials, baked.trials, strict=True):
        np.testing.assert_allclose(a.valid, b.valid, rtol=2e-4, atol=1e-6)


def test_values_baked_into_the_program_get_their_own_programs():
    def make_opt(learning_rate=0.01):
        # A hand-written transform that closes over a Python float: not data, so not one program.
        return oc.GradientTransformation(lambda p: (), lambda g, s, p=None: (jax.tree.map(lambda x: -learning_rate * x,
                                                                                        g), s))

    trials = [({"learning_rate": lr}, 0) for lr in (1e-4, 1e-3, 1e-3)]
    result = sw.run_trials(RAVINE, lambda c, n: make_opt(**c), trials, 20, mode="vmap", compiler_options=FAST)
    assert result.programs == 2 and result.recompiles == 1  # two distinct values, two programs
    reference = sw.run_trials(RAVINE, lambda c, n: oc.sgd(**c), trials, 20, mode="vmap", compiler_options=FAST)
    assert reference.programs == 1
    for a, b in zip(result.trials, reference.trials, strict=True):
        np.testing.assert_allclose(a.valid, b.valid, rtol=1e-4)


def test_crashes_and_nans_are_results_not_errors():
    def make_opt(learning_rate=0.01):
        if learning_rate == 2.0:
            raise RuntimeError("no such learning rate")
        return oc.sgd(learning_rate, momentum=0.9)

    trials = [({"learning_rate": lr}, 0) for lr in (1e-3, 5e1, 2.0)]  # fine, NaN after a few steps, crash
    result = sw.run_trials(RAVINE, lambda c, n: make_opt(**c), trials, 30, target=1e9, compiler_options=FAST)
    ok, diverged, crashed = result.trials
    assert ok.error is None and not ok.diverged and ok.reached
    assert diverged.diverged and not diverged.reached and all(v == float("inf") for v in diverged.valid[-1:])
    assert crashed.error is not None and "no such learning rate" in crashed.error and not crashed.reached
    assert result.state_bytes_per_param >= 4.0  # one float32 momentum per parameter, plus scalars


def test_loop_mode_stops_at_the_target_and_times_it():
    sub = rs.BASELINES["Nesterov"]
    trials = [(sub.default_config() | {"learning_rate": 1e-3}, 0)]
    full = sw.run_trials(RAVINE, sub.build, trials, 40, mode="loop", target=1e9, compiler_options=FAST, cache_key="t")
    (t,) = full.trials
    assert t.steps_to_target == 10 and len(t.steps) == 4  # reached at the first evaluation, ran on
    stopped = sw.run_trials(RAVINE, sub.build, trials, 40, mode="loop", target=1e9, stop_at_target=True,
                            compiler_options=FAST, cache_key="t")
    (s,) = stopped.trials
    assert len(s.steps) == 1 and s.time_to_target_s == pytest.approx(s.chunk_s[0])
    assert stopped.compile_spent_s == 0.0 and stopped.compile_s > 0  # the cached program was reused


def test_sweep_speedup_reports_all_three_ways():
    out = sw.sweep_speedup(RAVINE, n_trials=3, steps=20, optimizer_name="HeavyBall", compiler_options=FAST)
    assert out["trials"] == 3 and out["vmap"]["programs"] == 1 and out["recompile"]["programs"] == 3
    assert out["recompile"]["compiles"] >= 3 > out["vmap"]["compiles"] - 1
    assert set(out["vmap"]["speedup_vs"]) == {"vmap", "loop", "recompile"}
    assert out["max_abs_diff"] is not None and out["max_abs_diff"] < 1e-3


@pytest.mark.parametrize("mode", ["vmap", "loop"])
def test_eval_params_choose_the_point_evaluated_and_kept(mode):
    sub = rs.BASELINES["NAdamW"]
    trials = _trials(sub, 2, seeds=(0,))
    at_origin = lambda state, params: jax.tree.map(lambda x: 0.0 * x, params)  # noqa: E731
    swept = sw.run_trials(RAVINE, sub.build, trials, 20, mode=mode, compiler_options=FAST, eval_params=at_origin)
    data = wl.device_data(RAVINE)
    origin = float(RAVINE.evaluate(jax.numpy.zeros(2), data)["valid"])
    for trial in swept.trials:
        assert trial.error is None
        np.testing.assert_allclose(trial.valid, [origin, origin], rtol=1e-6)
        np.testing.assert_array_equal(np.asarray(trial.params), 0.0)
    plain = sw.run_trials(RAVINE, sub.build, trials, 20, mode=mode, compiler_options=FAST)
    assert all(abs(t.valid[-1] - origin) > 1e-3 for t in plain.trials)


def test_schedule_free_is_scored_at_its_average():
    sub = rs.library_submissions()["oc.schedule_free_sgd"]
    trial = [({"learning_rate": 3e-4}, 0)]
    scored = sw.run_trials(
        RAVINE, sub.build, trial, 20, mode="loop", compiler_options=FAST, eval_params=sub.eval_params
    )
    train_point = sw.run_trials(RAVINE, sub.build, trial, 20, mode="loop", compiler_options=FAST)
    # Rerun by hand: x = (y - (1 - b1) z) / b1 from the final state is what was kept and scored.
    opt = sub.build({"learning_rate": 3e-4}, 20)
    params, draws = wl.initial_params(RAVINE, 0), wl.step_draws(RAVINE, 0, 20)
    state, data = opt.init(params), wl.device_data(RAVINE)
    for t in range(20):
        grads = jax.grad(RAVINE.loss)(params, data, jax.tree.map(lambda x, t=t: x[t], draws))
        updates, state = opt.update(grads, state, params)
        params = oc.apply_updates(params, updates)
    x = oc.contrib.schedule_free_eval_params(state, params)
    assert np.all(np.isfinite(np.asarray(x))) and np.isfinite(scored.trials[0].valid).all()
    np.testing.assert_allclose(np.asarray(scored.trials[0].params), np.asarray(x), rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(np.asarray(train_point.trials[0].params), np.asarray(params), rtol=1e-4, atol=1e-6)
    assert np.abs(np.asarray(x) - np.asarray(params)).max() > 1e-4  # the two points differ
