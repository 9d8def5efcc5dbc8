"""SWA / EMA of the parameters, the SWALR schedule and BatchNorm re-estimation."""

import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from optcompose._hyperparams import get_hyperparams, set_hyperparams
from optcompose.averaging import SWAState, swa, swa_learning_rate_schedule, update_bn

STEPS = 12


def _snapshots(seed=0):
    rng = np.random.RandomState(seed)
    return [{"w": rng.randn(3, 2).astype(np.float32), "b": rng.randn(2).astype(np.float32)} for _ in range(STEPS)]


def _run(averager, snapshots):
    """The averager's state after every snapshot, with one jitted update."""
    update = jax.jit(averager.update)
    state = averager.init(snapshots[0])
    states = []
    for params in snapshots:
        state = update(params, state)
        states.append(state)
    return states


def _numpy_average(snapshots, start, freq, decay=None):
    """The paper's averages, written out: equal weights (SWA) or an EMA started by a copy."""
    average, n, out = None, 0, []
    for k, params in enumerate(snapshots):
        if k >= start and (k - start) % freq == 0:
            if n == 0:
                average = {name: value.astype(np.float64) for name, value in params.items()}
            elif decay is None:
                average = {name: (average[name] * n + params[name]) / (n + 1) for name in params}
            else:
                average = {name: decay * average[name] + (1 - decay) * params[name] for name in params}
            n += 1
        out.append((n, average))
    return out


@pytest.mark.parametrize("start,freq", [(0, 1), (3, 1), (2, 3)])
def test_swa_is_the_running_mean_of_the_snapshots(start, freq):
    snapshots = _snapshots()
    states = _run(swa(swa_start=start, swa_freq=freq), snapshots)
    for k, (state, (n, expected)) in enumerate(zip(states, _numpy_average(snapshots, start, freq), strict=True)):
        assert int(state.count) == k + 1
        assert int(state.n_averaged) == n
        if n == 0:
            assert all(np.all(np.asarray(v) == 0) for v in jax.tree.leaves(state.params))
            continue
        for name in expected:
            np.testing.assert_allclose(np.asarray(state.params[name]), expected[name], rtol=1e-6, atol=1e-6)


def test_ema_matches_the_numpy_formula_and_decay_is_settable_data():
    snapshots = _snapshots(1)
    averager = swa(swa_start=2, decay=0.8)
    states = _run(averager, snapshots)
    for state, (n, expected) in zip(states, _numpy_average(snapshots, 2, 1, decay=0.8), strict=True):
        assert int(state.n_averaged) == n
        if n:
            for name in expected:
                np.testing.assert_allclose(np.asarray(state.params[name]), expected[name], rtol=1e-5, atol=1e-6)
    assert float(get_hyperparams(states[-1])["decay"]) == pytest.approx(0.8)
    # A new decay is new data for the same compiled update.
    update = jax.jit(averager.update)
    state = update(snapshots[0], states[-1])
    state = set_hyperparams(state, decay=0.5)
    state2 = update(snapshots[1], state)
    assert update._cache_size() == 1
    expected = 0.5 * np.asarray(state.params["b"]) + 0.5 * snapshots[1]["b"]
    np.testing.assert_allclose(np.asarray(state2.params["b"]), expected, rtol=1e-6)


def test_average_is_kept_in_the_accumulator_dtype_and_computed_in_float32():
    params = {"w": jnp.asarray([1.0, 2.0], jnp.bfloat16)}
    averager = swa()
    state = averager.init(params)
    assert state.params["w"].dtype == jnp.bfloat16
    wide = swa(accumulator_dtype=jnp.float32)
    state = wide.init(params)
    for value in (1.0, 2.0, 4.0):
        state = wide.update({"w": jnp.full((2,), value, jnp.bfloat16)}, state)
    assert state.params["w"].dtype == jnp.float32
    np.testing.assert_allclose(np.asarray(state.params["w"]), 7.0 / 3.0, rtol=1e-6)


def test_swa_and_ema_match_torch_averaged_model():
    torch = pytest.importorskip("torch")
    from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

    snapshots = _snapshots(2)
    for decay in (None, 0.9):
        model = torch.nn.Linear(3, 2)
        kwargs = {} if decay is None else {"multi_avg_fn": get_ema_multi_avg_fn(decay)}
        averaged = AveragedModel(model, **kwargs)
        ours = swa(swa_start=4, swa_freq=2, decay=decay)
        state = ours.init(snapshots[0])
        for k, params in enumerate(snapshots):
            with torch.no_grad():
                model.weight.copy_(torch.from_numpy(params["w"].T.copy()))
                model.bias.copy_(torch.from_numpy(params["b"]))
            if k >= 4 and (k - 4) % 2 == 0:
                averaged.update_parameters(model)
            state = ours.update(params, state)
        assert int(state.n_averaged) == int(averaged.n_averaged)
        np.testing.assert_allclose(np.asarray(state.params["w"]), averaged.module.weight.detach().numpy().T, rtol=1e-5)
        np.testing.assert_allclose(np.asarray(state.params["b"]), averaged.module.bias.detach().numpy(), rtol=1e-5)


def test_swa_argument_errors_name_the_argument():
    with pytest.raises(ValueError, match="swa_freq"):
        swa(swa_freq=0)
    with pytest.raises(ValueError, match="swa_start"):
        swa(swa_start=-1)
    with pytest.raises(ValueError, match="decay"):
        swa(decay=1.5)
    averager = swa()
    state = averager.init({"w": jnp.zeros(2)})
    assert isinstance(state, SWAState)
    with pytest.raises(ValueError, match="params"):
        averager.update({"v": jnp.zeros(2)}, state)


# ----------------------------------------------------------------------------------------- SWALR


def _swalr_formula(base, swa_start, swa_lr, anneal, strategy, count):
    """SWALR from torch's docstring: anneal from the LR at swa_start to swa_lr over anneal steps."""
    if count < swa_start:
        return base(count)
    lr0 = base(swa_start)
    t = min(1.0, (count - swa_start) / max(1, anneal))
    f = (1 - math.cos(math.pi * t)) / 2 if strategy == "cos" else t
    return lr0 + (swa_lr - lr0) * f


@pytest.mark.parametrize("strategy", ["cos", "linear"])
@pytest.mark.parametrize("anneal", [0, 1, 5])
def test_swa_schedule_matches_formula_and_torch_swalr(strategy, anneal):
    torch = pytest.importorskip("torch")
    from torch.optim.swa_utils import SWALR

    total, swa_start, lr, swa_lr = 20, 8, 0.5, 0.05
    factor = lambda e: 0.5 * (1 + math.cos(math.pi * e / total))  # noqa: E731  a cosine base schedule
    base_np = lambda e: lr * factor(e)  # noqa: E731
    base_jnp = lambda c: lr * 0.5 * (1 + jnp.cos(jnp.pi * jnp.asarray(c, jnp.float32) / total))  # noqa: E731
    schedule = jax.jit(swa_learning_rate_schedule(base_jnp, swa_start, swa_lr, anneal, strategy))

    param = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([param], lr=lr)
    base = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
    make_swalr = lambda: SWALR(optimizer, swa_lr=swa_lr, anneal_epochs=anneal, anneal_strategy=strategy)  # noqa: E731
    # With anneal_epochs=0 torch's constructor already jumps to swa_lr, so build SWALR only when the
    # SWA phase begins; with annealing it is built up front, as in torch's documentation.
    swa_scheduler = make_swalr() if anneal else None
    for epoch in range(total):
        torch_lr = optimizer.param_groups[0]["lr"]
        ours = float(schedule(epoch))
        assert ours == pytest.approx(_swalr_formula(base_np, swa_start, swa_lr, anneal, strategy, epoch), rel=1e-5)
        assert ours == pytest.approx(torch_lr, rel=1e-5, abs=1e-8), epoch
        optimizer.step()
        if epoch < swa_start:
            base.step()
        elif swa_scheduler is None:
            swa_scheduler = make_swalr()
        else:
            swa_scheduler.step()


def test_swa_schedule_with_constant_base_and_errors():
    schedule = swa_learning_rate_schedule(0.1, swa_start=2, swa_lr=0.01, anneal_steps=2, anneal_strategy="linear")
    values = [float(schedule(c)) for c in range(6)]
    np.testing.assert_allclose(values, [0.1, 0.1, 0.1, 0.055, 0.01, 0.01], rtol=1e-6)
    assert float(schedule(2**40)) == pytest.approx(0.01)  # huge counts saturate, no overflow
    with pytest.raises(ValueError, match="anneal_strategy"):
        swa_learning_rate_schedule(0.1, 2, 0.01, anneal_strategy="step")
    with pytest.raises(ValueError, match="swa_lr"):
        swa_learning_rate_schedule(0.1, 2, -1.0)


# ------------------------------------------------------------------------------------ update_bn


class _TwoNorms(nn.Module):
    @nn.compact
    def __call__(self, x, train: bool):
        h = nn.Dense(4, name="dense")(x)
        h = nn.BatchNorm(use_running_average=not train, momentum=0.9, name="bn1")(h)
        g = nn.relu(h)
        g = nn.BatchNorm(use_running_average=not train, momentum=0.3, name="bn2")(g)
        return g


def test_update_bn_is_the_cumulative_average_of_batch_statistics():
    rng = np.random.RandomState(3)
    x = (rng.randn(24, 3) * 2 + 1).astype(np.float32)
    labels = rng.randint(0, 2, size=24)
    model = _TwoNorms()
    variables = model.init(jax.random.PRNGKey(0), x[:2], train=False)
    batches = [(x[i : i + 6], labels[i : i + 6]) for i in range(0, 24, 6)]
    new = update_bn(model.apply, variables, batches, train=True)

    kernel = np.asarray(variables["params"]["dense"]["kernel"], np.float64)
    bias = np.asarray(variables["params"]["dense"]["bias"], np.float64)
    h_batches = [xb.astype(np.float64) @ kernel + bias for xb, _ in batches]
    stats1 = [(h.mean(0), h.var(0)) for h in h_batches]
    g_batches = [np.maximum((h - h.mean(0)) / np.sqrt(h.var(0) + 1e-5), 0) for h in h_batches]
    stats2 = [(g.mean(0), g.var(0)) for g in g_batches]
    for name, stats in (("bn1", stats1), ("bn2", stats2)):
        got = new["batch_stats"][name]
        np.testing.assert_allclose(np.asarray(got["mean"]), np.mean([m for m, _ in stats], 0), rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(np.asarray(got["var"]), np.mean([v for _, v in stats], 0), rtol=1e-4, atol=1e-5)
    # Equal-size batches: the mean of batch means is the dataset mean.
    dataset_mean = np.concatenate(h_batches).mean(0)
    np.testing.assert_allclose(np.asarray(new["batch_stats"]["bn1"]["mean"]), dataset_mean, rtol=1e-4)
    # The parameters pass through untouched.
    assert new["params"] is not None
    np.testing.assert_array_equal(np.asarray(new["params"]["dense"]["kernel"]), kernel.astype(np.float32))


def test_update_bn_errors():
    model = _TwoNorms()
    x = np.ones((4, 3), np.float32)
    variables = model.init(jax.random.PRNGKey(0), x, train=False)
    with pytest.raises(ValueError, match="empty"):
        update_bn(model.apply, variables, [], train=True)
    with pytest.raises(ValueError, match="batch_stats"):
        update_bn(model.apply, {"params": variables["params"]}, [x], train=True)
    with pytest.raises(ValueError, match="training mode"):  # in inference mode BatchNorm gathers nothing
        update_bn(model.apply, variables, [x], train=False)


def test_update_bn_compiles_once_across_calls():
    model = _TwoNorms()
    x = np.random.RandomState(4).randn(8, 3).astype(np.float32)
    variables = model.init(jax.random.PRNGKey(0), x, train=False)
    traces = []

    def apply_fn(variables, inputs, **kwargs):
        traces.append(1)  # runs only while tracing
        return model.apply(variables, inputs, **kwargs)

    first = update_bn(apply_fn, variables, [x[:4], x[4:]], train=True)
    second = update_bn(apply_fn, first, [x[4:], x[:4]], train=True)
    assert len(traces) == 1
    for name in ("bn1", "bn2"):
        for stat in ("mean", "var"):  # the order of equal-weight batches does not matter
            np.testing.assert_allclose(first["batch_stats"][name][stat], second["batch_stats"][name][stat], rtol=1e-6)
