"""``optcompose.step``: the one-pass kernels give the transforms' numbers and state, or step aside.

* Every optimizer case of test_optimizers.py, stepped by ``step`` (jitted, eager and under pmap on
  8 devices), against the same NumPy references written from the papers.
* The kernel against ``update`` + ``apply_updates``: bit for bit where neither side contracts
  multiply-adds (eager), to an ulp under jit (where XLA fuses into FMAs), over leaves big enough
  to be split between threads, with bfloat16 moments, schedules and masks.
* The jitted program really calls the kernel where it should, and does not where it cannot
  (bfloat16 parameters, wrapped optimizers, ``use_kernel=False``, kernels disabled).
* The state stays the chain's: hyperparameters, schedules, ``tx.update`` after ``step``, donation.
"""

from __future__ import annotations

import os
import sys
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import test_optimizers
import trajectory as tr
from flax.training import train_state

import optcompose as oc
from optcompose.speed import kernels
from optcompose.speed._step import kernel_applies, step
from optcompose.speed.kernels import _build as build

STEP_CASES = [
    test_optimizers.CASES_BY_NAME[name]
    for name in (
        "sgd_momentum",
        "sgd_nesterov",
        "sgd_momentum_schedule",
        "sgd_momentum_low_precision",
        "adam",
        "adam_low_precision",
        "adam_l2",
        "adamw",
        "adamw_mask",
        "adamw_mask_tree_low_precision",
        "lamb",
        "lamb_low_precision",
        "rmsprop",
    )
]


STEP_CASES += [
    tr.Case(f"{case.name}_flat", lambda case=case: oc.flat_state(case.make()), case.reference, case.low_precision)
    for case in STEP_CASES
    if case.name in ("sgd_momentum", "adamw_mask", "adam_l2", "lamb", "adam_low_precision")
]


@pytest.mark.parametrize("mode", ["jit", "eager", "pmap"])
@pytest.mark.parametrize("case", STEP_CASES, ids=[c.name for c in STEP_CASES])
def test_step_matches_reference(case, mode):
    tr.check_case(case, mode, STEP_CASES, one_pass=True)


# ----------------------------------------------------------------------------------------------
# Kernel against update + apply_updates.


def _params(seed=0, big=False):
    rng = np.random.default_rng(seed)
    shapes = {"w": (300, 700), "b": (100_003,), "s": (), "e": (0,)} if big else {"w": (7, 5), "b": (5,), "s": ()}
    return {k: jnp.asarray(rng.normal(size=s), jnp.float32) for k, s in shapes.items()}


def _grads(params, seed):
    rng = np.random.default_rng(seed)
    return jax.tree.map(lambda p: jnp.asarray(rng.normal(size=p.shape), p.dtype), params)


def _schedule(count):
    return 0.02 * (1.0 + jnp.cos(jnp.pi * jnp.minimum(count, 10) / 10)) / 2


def _mask(params):
    return jax.tree.map(lambda p: p.ndim > 1, params)


OPTIMIZERS = {
    "adamw": lambda: oc.adamw(0.01, weight_decay=0.1),
    "adamw_mask_schedule": lambda: oc.adamw(_schedule, b1=0.8, weight_decay=0.1, mask=_mask),
    "adam_nesterov_eps_root": lambda: oc.adam(0.01, eps_root=1e-6, nesterov=True),
    "adam_bf16_moments": lambda: oc.adam(0.01, mu_dtype=jnp.bfloat16, nu_dtype=jnp.bfloat16),
    "adamw_bf16_nu": lambda: oc.adamw(0.01, nu_dtype=jnp.bfloat16),
    "lamb": lambda: oc.lamb(0.01, weight_decay=0.01),
    "lamb_masks": lambda: oc.lamb(
        _schedule, weight_decay=0.01, mask=_mask, trust_ratio_mask=lambda p: {k: k != "b" for k in p}
    ),
    "sgd_momentum": lambda: oc.sgd(0.01, momentum=0.9),
    "sgd_nesterov_schedule": lambda: oc.sgd(_schedule, momentum=0.9, nesterov=True),
    "sgd_bf16_trace": lambda: oc.sgd(0.01, momentum=0.9, accumulator_dtype=jnp.bfloat16),
    "clip_then_adamw": lambda: oc.chain(oc.clip_by_global_norm(1.0), oc.adamw(0.01, weight_decay=0.1)),
    "l2_then_sgd": lambda: oc.chain(oc.add_decayed_weights(1e-3), oc.sgd(0.01, momentum=0.9)),
}
TARGETS = {"adam": "optcompose_adam", "lamb": "optcompose_lamb", "sgd": "optcompose_sgd", "l2_": "optcompose_sgd"}


def _target(name):
    return next(target for prefix, target in TARGETS.items() if prefix in name.split("_then_")[-1][:4] + "_")


def _general(tx):
    def run(grads, state, params):
        updates, state = tx.update(grads, state, params)
        return oc.apply_updates(params, updates), state

    return run


def _trajectories(tx, params, steps, jit):
    kernel = lambda g, s, p: step(tx, g, s, p)  # noqa: E731
    general = _general(tx)
    if jit:
        kernel, general = jax.jit(kernel), jax.jit(general)
    results = []
    for fn in (kernel, general):
        p, s = params, tx.init(params)
        for t in range(steps):
            p, s = fn(_grads(params, 100 + t), s, p)
        results.append((p, s))
    return results


def _assert_trees(a, b, exact, atol=1e-6):
    assert jax.tree.structure(a) == jax.tree.structure(b)
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        assert x.dtype == y.dtype and x.shape == y.shape
        x64, y64 = np.asarray(x, np.float64), np.asarray(y, np.float64)
        if exact:
            np.testing.assert_array_equal(x64, y64)
        elif x.dtype == jnp.bfloat16:
            # An ulp of float32 (from an FMA) can round a bfloat16 moment to its neighbour.
            np.testing.assert_allclose(x64, y64, rtol=2**-7, atol=atol)
        else:
            np.testing.assert_allclose(x64, y64, rtol=2e-6, atol=atol)


def _make(name, flat):
    tx = OPTIMIZERS[name]()
    return oc.flat_state(tx) if flat else tx


@pytest.mark.parametrize("flat", [False, True], ids=["tree_state", "flat_state"])
@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_kernel_matches_general_road_eager_bit_for_bit(name, flat):
    tx = _make(name, flat)
    params = _params()
    (kp, ks), (gp, gs) = _trajectories(tx, params, 3, jit=False)
    # LAMB's norms are summed in float64 by the kernel, in float32 by XLA: an ulp apart.
    _assert_trees((kp, ks), (gp, gs), exact="lamb" not in name)


@pytest.mark.parametrize("flat", [False, True], ids=["tree_state", "flat_state"])
@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_kernel_matches_general_road_jit_on_threaded_leaves(name, flat):
    tx = _make(name, flat)
    params = _params(big=True)
    (kp, ks), (gp, gs) = _trajectories(tx, params, 3, jit=True)
    # A bfloat16 moment an ulp apart (see _assert_trees) moves the next step by ~lr * 2**-8.
    _assert_trees((kp, ks), (gp, gs), exact=False, atol=1e-4 if "bf16" in name else 1e-6)
    text = jax.jit(lambda g, s, p: step(tx, g, s, p)).lower(params, tx.init(params), params).as_text()
    assert _target(name) in text


def test_threaded_kernel_equals_eager_kernel():
    """Big leaves (split between threads) give the same bits jitted and eager: no race, no reordering."""
    tx = oc.adamw(0.01, weight_decay=0.1)
    params = _params(big=True)
    jitted = _trajectories(tx, params, 2, jit=True)[0]
    eager = _trajectories(tx, params, 2, jit=False)[0]
    _assert_trees(jitted, eager, exact=True)


@pytest.mark.parametrize(
    "make",
    [
        lambda: oc.inject_hyperparams(oc.adamw)(learning_rate=0.01),
        lambda: oc.apply_if_finite(oc.adamw(0.01), 3),
        lambda: oc.rmsprop(0.01),
        lambda: oc.sgd(0.01),
    ],
    ids=["inject_hyperparams", "apply_if_finite", "rmsprop", "sgd_without_momentum"],
)
def test_transforms_without_a_plan_take_the_general_road(make):
    tx = make()
    params = _params()
    text = jax.jit(lambda g, s, p: step(tx, g, s, p)).lower(params, tx.init(params), params).as_text()
    assert "optcompose_" not in text
    (kp, ks), (gp, gs) = _trajectories(tx, params, 2, jit=False)
    _assert_trees((kp, ks), (gp, gs), exact=True)


def test_low_precision_params_and_opt_out_take_the_general_road():
    tx = oc.adamw(0.01)
    params = _params()
    bf16 = jax.tree.map(lambda p: p.astype(jnp.bfloat16), params)
    lower = lambda p, **kw: jax.jit(lambda g, s, q: step(tx, g, s, q, **kw)).lower(p, tx.init(p), p).as_text()  # noqa: E731
    assert "optcompose_adam" in lower(params)
    assert "optcompose_adam" not in lower(bf16)
    assert "optcompose_adam" not in lower(params, use_kernel=False)
    new_params, _ = step(tx, _grads(bf16, 1), tx.init(bf16), bf16)
    assert all(leaf.dtype == jnp.bfloat16 for leaf in jax.tree.leaves(new_params))


def test_traced_mask_takes_the_general_road():
    params = _params()
    tx = oc.adamw(0.01, weight_decay=0.1, mask=lambda p: jax.tree.map(lambda x: jnp.sum(x) > 0, p))
    # masked() needs concrete booleans too: the general road raises its own, located error.
    with pytest.raises(jax.errors.ConcretizationTypeError):
        jax.jit(lambda g, s, p: step(tx, g, s, p))(params, tx.init(params), params)


def test_kernels_disabled_or_missing_compiler_fall_back(monkeypatch):
    tx = oc.adamw(0.01, weight_decay=0.1)
    params = _params()
    expected = _general(tx)(_grads(params, 1), tx.init(params), params)

    monkeypatch.setattr(build, "_state", {})
    monkeypatch.setenv("OPTCOMPOSE_KERNELS", "0")
    assert not kernel_applies(tx)
    assert "OPTCOMPOSE_KERNELS=0" in kernels.unavailable_reason()
    _assert_trees(step(tx, _grads(params, 1), tx.init(params), params), expected, exact=True)

    monkeypatch.setattr(build, "_state", {})
    monkeypatch.setenv("OPTCOMPOSE_KERNELS", "1")
    monkeypatch.setenv("CXX", "/nonexistent/c++")
    monkeypatch.setenv("OPTCOMPOSE_CACHE_DIR", "/nonexistent-cache")
    with pytest.warns(RuntimeWarning, match="no C\\+\\+ compiler"):
        assert not kernels.available()
    _assert_trees(step(tx, _grads(params, 1), tx.init(params), params), expected, exact=True)


def test_build_caches_the_library_by_content(monkeypatch, tmp_path):
    monkeypatch.setenv("OPTCOMPOSE_CACHE_DIR", str(tmp_path))
    command = build._compiler_command()
    path = build._library_path(command)
    assert path.parent == tmp_path and path.name.startswith("optimizer_steps-")
    monkeypatch.setenv("CXX", command[0] + " ")  # same compiler, same key
    assert build._library_path(build._compiler_command()) == path


# ----------------------------------------------------------------------------------------------
# The state stays the chain's.


def test_state_after_step_works_with_update_and_hyperparams():
    tx = oc.adamw(0.01, weight_decay=0.1)
    params = _params()
    jitted = jax.jit(lambda g, s, p: step(tx, g, s, p))
    p, s = jitted(_grads(params, 1), tx.init(params), params)
    assert oc.get_hyperparams(s)["learning_rate"] == pytest.approx(0.01)
    s = oc.set_hyperparams(s, learning_rate=0.5, weight_decay=0.0)
    g = _grads(params, 2)
    via_kernel, state_kernel = jitted(g, s, p)
    updates, state_general = tx.update(g, s, p)
    _assert_trees((via_kernel, state_kernel), (oc.apply_updates(p, updates), state_general), exact=False)
    assert int(state_kernel[0].count) == 2 and int(state_kernel[-1].count) == 2
    # The new learning rate and zero decay were used: the step is 0.5 * Adam's direction.
    direction = jax.tree.map(lambda a, b: (a - b) / -0.5, via_kernel, p)
    assert float(jnp.max(jnp.abs(direction["w"]))) == pytest.approx(1.0, rel=0.5)


def test_donated_buffers_are_updated_in_place():
    tx = oc.adamw(0.01)
    params = _params(big=True)
    state = tx.init(params)
    jitted = jax.jit(lambda g, s, p: step(tx, g, s, p), donate_argnums=(1, 2))
    expected = jax.jit(_general(tx))(_grads(params, 1), state, params)
    params_copy, state_copy = jax.tree.map(jnp.copy, (params, state))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # "Some donated buffers were not usable" would fail here
        out = jitted(_grads(params, 1), state_copy, params_copy)
    _assert_trees(out, expected, exact=False)
    assert params_copy["w"].is_deleted() and state_copy[0].mu["w"].is_deleted()


def test_vmap_over_hyperparameters():
    tx = oc.adamw(0.01, weight_decay=0.1)
    params = _params()
    lrs = jnp.asarray([0.01, 0.1, 0.3], jnp.float32)
    states = jax.vmap(lambda lr: oc.set_hyperparams(tx.init(params), learning_rate=lr))(lrs)
    g = _grads(params, 3)
    batched = jax.jit(jax.vmap(lambda s: step(tx, g, s, params)))(states)
    for i, lr in enumerate(lrs):
        one = _general(tx)(g, oc.set_hyperparams(tx.init(params), learning_rate=lr), params)
        _assert_trees(jax.tree.map(lambda x, i=i: x[i], batched), one, exact=False)


def test_nan_gradients_poison_exactly_as_the_general_road():
    tx = oc.adam(0.01, mu_dtype=jnp.bfloat16)
    params = _params()
    g = _grads(params, 4)
    g["w"] = g["w"].at[0, 0].set(jnp.nan).at[1, 1].set(jnp.inf)
    kernel = step(tx, g, tx.init(params), params)
    general = _general(tx)(g, tx.init(params), params)
    _assert_trees(kernel, general, exact=True)
    assert np.isnan(np.asarray(kernel[0]["w"][0, 0]))


def test_lamb_extreme_and_zero_leaves():
    params = {"huge": jnp.full((4, 3), 1e30, jnp.float32), "tiny": jnp.full((5,), 1e-30, jnp.float32),
              "zero": jnp.zeros((3,), jnp.float32)}
    tx = oc.lamb(0.01, weight_decay=0.01)
    g = _grads(params, 5)
    kernel = step(tx, g, tx.init(params), params)
    general = _general(tx)(g, tx.init(params), params)
    _assert_trees(kernel, general, exact=False)
    assert all(np.all(np.isfinite(np.asarray(x))) for x in jax.tree.leaves(kernel))


def test_bad_input_gets_the_general_roads_located_error():
    tx = oc.adamw(0.01)
    params = _params()
    wrong = {"w": params["w"], "b": params["b"]}
    with pytest.raises(ValueError, match="updates"):
        step(tx, wrong, tx.init(params), params)
    bad_shape = dict(params, w=jnp.zeros((5, 7), jnp.float32))
    with pytest.raises(ValueError, match=r"\['w'\]"):
        step(tx, bad_shape, tx.init(params), params)
    integer = dict(params, b=jnp.zeros((5,), jnp.int32))
    with pytest.raises(oc.NotFloatingError, match=r"\['b'\]"):
        step(tx, integer, tx.init(params), params)


def test_sharded_state_on_a_cpu_mesh_gives_the_same_numbers():
    mesh = jax.make_mesh((8,), ("data",))
    sharding = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("data"))
    params = {"w": jnp.asarray(np.random.default_rng(0).normal(size=(16, 3)), jnp.float32)}
    tx = oc.adamw(0.01, weight_decay=0.1)
    state = tx.init(params)
    sharded = jax.device_put((params, state[0].mu, state[0].nu), sharding)
    state = (state[0]._replace(mu=sharded[1], nu=sharded[2]), *state[1:])
    g = jax.device_put(_grads(params, 6), sharding)
    out = jax.jit(lambda g, s, p: step(tx, g, s, p))(g, state, sharded[0])
    _assert_trees(out, _general(tx)(_grads(params, 6), tx.init(params), params), exact=False)


# ----------------------------------------------------------------------------------------------
# Flax.


def test_train_state_steps_like_flax_train_state():
    tx = oc.adamw(0.01, weight_decay=0.1)
    params = _params()
    ours = oc.TrainState.create(apply_fn=None, params=params, tx=tx)
    theirs = train_state.TrainState.create(apply_fn=None, params=params, tx=tx)
    apply = jax.jit(lambda state, g: state.apply_gradients(grads=g))
    for t in range(3):
        ours, theirs = apply(ours, _grads(params, t)), apply(theirs, _grads(params, t))
    assert int(ours.step) == 3
    _assert_trees((ours.params, ours.opt_state), (theirs.params, theirs.opt_state), exact=False)
    text = jax.jit(lambda state, g: state.apply_gradients(grads=g)).lower(ours, params).as_text()
    assert "optcompose_adam" in text


def test_train_state_overwrite_with_gradient_collection():
    tx = oc.sgd(0.1, momentum=0.9)
    inner = _params()
    params = {"params": inner, train_state.OVERWRITE_WITH_GRADIENT: {"scale": jnp.ones(())}}
    state = oc.TrainState.create(apply_fn=None, params=params, tx=tx)
    grads = {"params": _grads(inner, 1), train_state.OVERWRITE_WITH_GRADIENT: {"scale": jnp.full((), 3.0)}}
    new = state.apply_gradients(grads=grads)
    assert float(new.params[train_state.OVERWRITE_WITH_GRADIENT]["scale"]) == 3.0
    expected = _general(tx)(grads["params"], tx.init(inner), inner)[0]
    _assert_trees(new.params["params"], expected, exact=True)


# ----------------------------------------------------------------------------------------------
# Flat state.


def test_flat_tree_reads_like_the_pytree():
    tree = {"a": jnp.arange(6.0).reshape(2, 3), "b": {"c": jnp.ones(()), "d": jnp.zeros((0,))}}
    flat = oc.FlatTree.from_tree(tree)
    assert flat.buffer.shape == (7,) and jax.tree.leaves(flat) == [flat.buffer]
    _assert_trees(flat.tree, tree, exact=True)
    np.testing.assert_array_equal(flat["a"], tree["a"])
    assert float(flat["b"]["c"]) == 1.0
    with pytest.raises(ValueError, match="one dtype"):
        oc.FlatTree.from_tree({"a": jnp.ones(2), "b": jnp.ones(2, jnp.bfloat16)})


def test_flat_state_stores_moments_flat_and_keeps_the_rest():
    params = _params(big=True)
    tree_state = oc.adamw(0.01, mu_dtype=jnp.bfloat16).init(params)
    flat_state = oc.flat_state(oc.adamw(0.01, mu_dtype=jnp.bfloat16)).init(params)
    mu, nu = flat_state[0].mu, flat_state[0].nu
    assert isinstance(mu, oc.FlatTree) and mu.buffer.dtype == jnp.bfloat16 and mu.buffer.shape == (310_004,)
    assert isinstance(nu, oc.FlatTree) and nu.buffer.dtype == jnp.float32
    assert len(jax.tree.leaves(flat_state)) == len(jax.tree.leaves(tree_state)) - 2 * (len(params) - 1)
    assert oc.get_hyperparams(flat_state) == oc.get_hyperparams(tree_state)
    # Mixed-dtype parameters keep a pytree where one buffer cannot hold them.
    mixed = dict(_params(), b=jnp.ones((5,), jnp.bfloat16))
    state = oc.flat_state(oc.adam(0.01)).init(mixed)
    assert not isinstance(state[0].mu, oc.FlatTree)


def test_flat_state_shrinks_the_jitted_step():
    params = {f"leaf{i:03d}": jnp.ones((8,), jnp.float32) for i in range(100)}
    counts = {}
    for label, tx in (("tree", oc.adamw(0.01)), ("flat", oc.flat_state(oc.adamw(0.01)))):
        jitted = jax.jit(lambda p, s, g, tx=tx: step(tx, g, s, p), donate_argnums=(0, 1))
        text = jitted.lower(params, tx.init(params), params).compile().as_text()
        counts[label] = (text.count("parameter("), text.count(" copy("))
    # 100 gradients, 100 parameters and 2 flat moments in, against 400 buffers; no copies (in place).
    assert counts["tree"][0] >= 400 and counts["flat"][0] <= 0.6 * counts["tree"][0]
    assert counts["flat"][1] == 0 and counts["tree"][1] == 0


def test_flat_state_checkpoint_round_trip(tmp_path):
    tx = oc.flat_state(oc.adamw(0.01))
    params = _params()
    params, state = step(tx, _grads(params, 1), tx.init(params), params)
    oc.checkpoint.save(tmp_path / "ckpt", {"params": params, "opt_state": state})
    restored = oc.checkpoint.restore(tmp_path / "ckpt", {"params": params, "opt_state": tx.init(params)})
    _assert_trees(restored["opt_state"], state, exact=True)
    assert isinstance(restored["opt_state"][0].mu, oc.FlatTree)


def test_benchmark_quick_run():
    sys.path.insert(0, os.path.join(os.path.dirname(__file__), os.pardir, "benchmarks"))
    import bench_optimizers

    results = bench_optimizers.main(
        ["--quick", "--cases", "50x64", "--optimizers", "adamw", "--libraries", "optcompose,optax",
         "--rounds", "1", "--steps", "1"]
    )
    (result,) = results
    libs = result["libraries"]
    assert set(libs) == {
        "optcompose step", "optcompose step, flat state", "optcompose update+apply", "optcompose step, bf16 state",
        "optax",
    }
    # 50 leaves x 64 float32 moments x 2 moments = 25.6 kB, bfloat16 moments half of it.
    assert libs["optcompose step"]["state_MB"] == pytest.approx(50 * 64 * 4 * 2 / 1e6, rel=0.01)
    assert libs["optcompose step, flat state"]["state_MB"] == pytest.approx(50 * 64 * 4 * 2 / 1e6, rel=0.01)
    assert libs["optcompose step, bf16 state"]["state_MB"] == pytest.approx(50 * 64 * 2 * 2 / 1e6, rel=0.01)
    assert libs["optax"]["state_MB"] == pytest.approx(libs["optcompose step"]["state_MB"], rel=0.01)
    assert all(r["step_ms"] > 0 and r["compile_s"] > 0 for r in libs.values())
