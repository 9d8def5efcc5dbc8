"""reduce_lr_on_plateau: torch's ReduceLROnPlateau call for call, a NumPy reference, jit / scan, bad arguments.

torch's scheduler runs on a dummy SGD optimizer with ``lr=1``, so its ``lr`` is our ``scale``; the
metric sequences are built so every rule fires: patience, cool-down, rel / abs thresholds, min / max
modes, the ``min_scale`` floor and the eps rule (a reduction smaller than eps is skipped).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import optcompose as oc
from optcompose.transforms._plateau import PlateauState, reduce_lr_on_plateau

W = {"w": jnp.asarray([1.0, -2.0], jnp.float32), "b": jnp.asarray(0.5, jnp.float32)}


def _decreasing_then_flat(n=48):
    # improves, plateaus (patience), tiny improvements below a 1e-2 threshold, a new drop, plateaus again
    head = [1.0 / (1 + k) for k in range(8)]
    flat = [0.125] * 14
    tiny = [0.125 * (1 - 2e-3 * k) for k in range(1, 9)]  # each better by ~2e-3 relative to the start
    drop = [0.05, 0.049, 0.0495] + [0.06] * (n - 33)
    return head + flat + tiny + drop


def _accuracies(n=48):
    rng = np.random.default_rng(3)
    rising = list(np.linspace(0.2, 0.8, 12))
    noisy = list(0.8 + 0.004 * rng.standard_normal(n - 12 - 6))
    return rising + noisy + [0.9] * 6


def _negative_losses(n=44):
    # negative metrics: torch's rel rule compares with best * (1 - threshold), a looser bound below 0
    return [-1.0 - 0.1 * k for k in range(10)] + [-1.9] * 12 + [-1.9001] * 6 + [-3.0] + [-2.5] * (n - 29)


CONFIGS = {
    "defaults": ({}, _decreasing_then_flat),
    "patience_cooldown": ({"factor": 0.5, "patience": 2, "cooldown": 3}, _decreasing_then_flat),
    "abs_threshold_floor": (
        {"factor": 0.5, "patience": 0, "threshold": 1e-2, "threshold_mode": "abs", "min_scale": 0.1},
        _decreasing_then_flat,
    ),
    "rel_threshold_big": ({"factor": 0.3, "patience": 1, "threshold": 1e-2, "cooldown": 1}, _decreasing_then_flat),
    "eps_rule": ({"factor": 0.5, "patience": 1, "eps": 0.05}, _decreasing_then_flat),
    "floor_between": ({"factor": 0.1, "patience": 1, "min_scale": 0.03}, _decreasing_then_flat),
    "max_rel": ({"mode": "max", "factor": 0.5, "patience": 3, "cooldown": 2}, _accuracies),
    "max_abs": ({"mode": "max", "factor": 0.5, "patience": 2, "threshold": 5e-3, "threshold_mode": "abs"}, _accuracies),
    "negative_rel": ({"factor": 0.5, "patience": 2, "threshold": 1e-3}, _negative_losses),
    "zero_factor": ({"factor": 0.0, "patience": 4}, _decreasing_then_flat),
}


def torch_trace(metrics, factor=0.1, patience=10, threshold=1e-4, threshold_mode="rel", cooldown=0, min_scale=0.0,
                mode="min", eps=1e-8):  # fmt: skip
    torch = pytest.importorskip("torch")
    param = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([param], lr=1.0)
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
        optimizer, mode=mode, factor=factor, patience=patience, threshold=threshold,
        threshold_mode=threshold_mode, cooldown=cooldown, min_lr=min_scale, eps=eps,
    )  # fmt: skip
    trace = []
    for metric in metrics:
        scheduler.step(float(np.float32(metric)))
        trace.append((optimizer.param_groups[0]["lr"], scheduler.best, scheduler.num_bad_epochs,
                      scheduler.cooldown_counter))  # fmt: skip
    return trace


def numpy_trace(metrics, factor=0.1, patience=10, threshold=1e-4, threshold_mode="rel", cooldown=0, min_scale=0.0,
                mode="min", eps=1e-8):  # fmt: skip
    """The scheduler's rules (torch docs, ReduceLROnPlateau), in float64 NumPy."""
    scale, best, bad, cooling = 1.0, (np.inf if mode == "min" else -np.inf), 0, 0
    trace = []
    for a in np.asarray(metrics, np.float32).astype(np.float64):
        if mode == "min":
            better = a < (best * (1 - threshold) if threshold_mode == "rel" else best - threshold)
        else:
            better = a > (best * (1 + threshold) if threshold_mode == "rel" else best + threshold)
        best, bad = (a, 0) if better else (best, bad + 1)
        if cooling > 0:
            cooling, bad = cooling - 1, 0
        if bad > patience:
            new = max(scale * factor, min_scale)
            if scale - new > eps:
                scale = new
            cooling, bad = cooldown, 0
        trace.append((scale, best, bad, cooling))
    return trace


def ours_trace(metrics, **kwargs):
    tx = reduce_lr_on_plateau(**kwargs)
    step = jax.jit(lambda state, value: tx.update(W, state, W, value=value))
    state, trace, applied = tx.init(W), [], []
    for metric in metrics:
        scale_before = float(state.scale)
        updates, state = step(state, jnp.float32(metric))
        applied.append((scale_before, updates))
        trace.append((float(state.scale), float(state.best), int(state.num_bad_epochs), int(state.cooldown_counter)))
    return trace, applied, state


def _compare(ours, theirs, label):
    worst = 0.0
    for t, (a, b) in enumerate(zip(ours, theirs, strict=True)):
        assert a[2:] == tuple(b[2:]), f"{label} call {t + 1}: (num_bad_epochs, cooldown_counter) {a[2:]} != {b[2:]}"
        assert a[0] == pytest.approx(b[0], rel=1e-6, abs=0), f"{label} call {t + 1}: scale {a[0]} != {b[0]}"
        if math.isfinite(b[1]):
            assert a[1] == pytest.approx(b[1], rel=1e-6), f"{label} call {t + 1}: best {a[1]} != {b[1]}"
        worst = max(worst, abs(a[0] - b[0]) / max(b[0], 1e-300))
    return worst


@pytest.mark.parametrize("name", list(CONFIGS))
def test_scale_and_counters_match_torch_and_numpy_call_for_call(name):
    kwargs, sequence = CONFIGS[name]
    metrics = sequence()
    assert len(metrics) >= 40
    ours, applied, state = ours_trace(metrics, **kwargs)
    torch_side = torch_trace(metrics, **kwargs)
    _compare(ours, torch_side, f"{name} vs torch")
    _compare(ours, numpy_trace(metrics, **kwargs), f"{name} vs numpy")
    # each call's updates carry the scale in effect before its metric (torch: step, then scheduler.step)
    for scale_before, updates in applied:
        np.testing.assert_allclose(np.asarray(updates["w"]), scale_before * np.asarray(W["w"]), rtol=1e-7)
    assert int(state.count) == len(metrics)
    assert len({round(s, 12) for s, *_ in torch_side}) > 1 or name == "max_abs", f"{name}: no reduction exercised"


def test_the_sequences_exercise_every_rule():
    # The table above is only worth as much as the rules it reaches; check each one fires in torch.
    def scales(name):
        kwargs, sequence = CONFIGS[name]
        return [s for s, *_ in torch_trace(sequence(), **kwargs)]

    eps_scales = scales("eps_rule")
    assert min(eps_scales) == 0.0625  # 0.0625 -> 0.03125 would be a cut of 0.03125 <= eps = 0.05: skipped
    assert min(scales("abs_threshold_floor")) == pytest.approx(0.1)  # stuck at the floor
    assert sorted(set(scales("floor_between"))) == pytest.approx([0.03, 0.1, 1.0])  # 0.1 -> max(0.01, 0.03)
    cooldown = torch_trace(CONFIGS["patience_cooldown"][1](), **CONFIGS["patience_cooldown"][0])
    assert any(c == 3 for *_, c in cooldown) and any(0 < c < 3 for *_, c in cooldown)
    assert len(set(scales("max_rel"))) > 1 and len(set(scales("negative_rel"))) > 1


def test_scale_multiplies_updates_inside_a_chain_with_a_traced_metric_in_lax_scan():
    tx = oc.chain(oc.sgd(0.1), reduce_lr_on_plateau(factor=0.5, patience=1))
    metrics = jnp.asarray([1.0, 0.9, 0.9, 0.9, 0.9, 0.9, 0.8, 0.8, 0.8], jnp.float32)

    def body(carry, metric):
        params, state = carry
        updates, state = tx.update(jax.tree.map(jnp.ones_like, params), state, params, value=metric)
        return (oc.apply_updates(params, updates), state), (state[1].scale, updates["w"][0])

    (_, state), (scales, first) = jax.jit(lambda p: jax.lax.scan(body, (p, tx.init(p)), metrics))(W)
    expected = [s for s, *_ in numpy_trace(np.asarray(metrics), factor=0.5, patience=1)]
    np.testing.assert_allclose(np.asarray(scales), expected, rtol=1e-7)
    np.testing.assert_allclose(np.asarray(first), -0.1 * np.asarray([1.0, *expected[:-1]]), rtol=1e-6)
    assert isinstance(state[1], PlateauState)


def test_hyperparameters_are_data():
    tx = reduce_lr_on_plateau(factor=0.5, patience=1)
    state = tx.init(W)
    values = oc.get_hyperparams(state)
    assert set(values) == {"factor", "patience", "threshold", "cooldown", "min_scale", "eps"}
    assert float(values["factor"]) == 0.5
    step = jax.jit(lambda s, v: tx.update(W, s, W, value=v)[1])
    state = oc.set_hyperparams(state, factor=0.25, patience=0.0)
    state = step(step(state, jnp.float32(1.0)), jnp.float32(1.0))  # the second call is bad: 0 > patience
    assert float(state.scale) == 0.25
    assert step._cache_size() == 1  # new values are new data, not a new program


def test_float64_parameters_keep_float64_state():
    with jax.enable_x64(True):
        w = {"w": jnp.ones(3, jnp.float64)}
        tx = reduce_lr_on_plateau(patience=0, factor=0.5)
        state = tx.init(w)
        assert state.best.dtype == jnp.float64 and state.scale.dtype == jnp.float64
        u, state = tx.update(w, state, w, value=jnp.float64(1.0))
        u, state = tx.update(w, state, w, value=jnp.float64(1.0))
        assert u["w"].dtype == jnp.float64 and float(state.scale) == 0.5


def test_bad_arguments_name_the_argument():
    for kwargs, match in [
        ({"factor": 1.0}, "factor"), ({"factor": -0.1}, "factor"), ({"patience": -1}, "patience"),
        ({"patience": 1.5}, "patience"), ({"threshold": -1e-4}, "threshold"),
        ({"threshold_mode": "pct"}, "threshold_mode"),
        ({"cooldown": -2}, "cooldown"), ({"min_scale": -1.0}, "min_scale"), ({"mode": "minimize"}, "mode"),
        ({"eps": -1.0}, "eps"), ({"eps": float("nan")}, "eps"),
    ]:  # fmt: skip
        with pytest.raises((ValueError, TypeError), match=match):
            reduce_lr_on_plateau(**kwargs)
    with pytest.raises(TypeError, match="factor"):
        reduce_lr_on_plateau(factor=lambda count: 0.1)
    tx = reduce_lr_on_plateau()
    with pytest.raises(ValueError, match="value"):
        tx.update(W, tx.init(W), W)
    with pytest.raises(ValueError, match="value"):
        tx.update(W, tx.init(W), W, value=jnp.ones(2))


def test_exported():
    assert oc.reduce_lr_on_plateau is reduce_lr_on_plateau
    assert oc.transforms.reduce_lr_on_plateau is reduce_lr_on_plateau
    assert oc.transforms.PlateauState is PlateauState
