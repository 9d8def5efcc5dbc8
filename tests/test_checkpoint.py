"""optcompose.integrations.checkpoint: params + optimizer state + step survive a save/restore exactly."""

import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from optcompose import checkpoint, optimizers
from optcompose._base import apply_updates, chain
from optcompose._hyperparams import Hyperparams, get_hyperparams
from optcompose.sharding import replicated, state_shardings
from optcompose.transforms._partition import MaskedNode, partition
from optcompose.transforms._scaling import scale_by_learning_rate

pytest.importorskip("orbax.checkpoint")

N = 4


def decaying(count):
    return 0.05 * 0.8 ** jnp.asarray(count, jnp.float32)


def init_params():
    rng = np.random.default_rng(0)
    return {
        "dense": {"kernel": jnp.asarray(rng.normal(size=(4, 8)), jnp.float32), "bias": jnp.zeros(8)},
        "head": {"kernel": jnp.asarray(rng.normal(size=(8, 2)), jnp.float32), "bias": jnp.zeros(2)},
    }


def batches():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(2 * N, 16, 4)).astype(np.float32)
    return x, np.sin(x[..., :2]).astype(np.float32)


def loss_fn(params, x, y):
    h = jnp.tanh(x @ params["dense"]["kernel"] + params["dense"]["bias"])
    return jnp.mean(jnp.square(h @ params["head"]["kernel"] + params["head"]["bias"] - y))


# AdamW on a schedule: resetting its moments, its count or its schedule all change the result.
TX = optimizers.adamw(decaying, weight_decay=0.01)


@jax.jit
def train_step(ckpt):
    x, y = ckpt["batch"]
    grads = jax.grad(loss_fn)(ckpt["params"], x, y)
    updates, opt_state = TX.update(grads, ckpt["opt_state"], ckpt["params"])
    return apply_updates(ckpt["params"], updates), opt_state


def train(params, opt_state, step, start, stop):
    x, y = batches()
    for t in range(start, stop):
        params, opt_state = train_step({"params": params, "opt_state": opt_state, "batch": (x[t], y[t])})
        step = step + 1
    return params, opt_state, step


def assert_bitwise_equal(a, b):
    assert jax.tree.structure(a) == jax.tree.structure(b)
    for left, right in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        assert np.asarray(left).dtype == np.asarray(right).dtype
        np.testing.assert_array_equal(np.asarray(left), np.asarray(right))


def test_resume_is_bitwise_equal_to_straight_run(tmp_path):
    params = init_params()
    straight = train(params, TX.init(params), jnp.int32(0), 0, 2 * N)

    half = train(params, TX.init(params), jnp.int32(0), 0, N)
    checkpoint.save(tmp_path / "ckpt", {"params": half[0], "opt_state": half[1], "step": half[2]})
    # The target: a fresh state of the same optimizer, its shapes only.
    target = jax.eval_shape(lambda: {"params": params, "opt_state": TX.init(params), "step": jnp.int32(0)})
    restored = checkpoint.restore(tmp_path / "ckpt", target)
    assert_bitwise_equal((restored["params"], restored["opt_state"], restored["step"]), half)
    assert int(restored["step"]) == N
    assert float(get_hyperparams(restored["opt_state"])["learning_rate"]) == pytest.approx(float(decaying(N)))
    resumed = train(restored["params"], restored["opt_state"], restored["step"], N, 2 * N)
    assert_bitwise_equal(resumed, straight)

    # The seed's warning: restoring the parameters alone silently restarts Adam and the schedule.
    reset = train(restored["params"], TX.init(params), restored["step"], N, 2 * N)
    assert not np.array_equal(np.asarray(reset[0]["dense"]["kernel"]), np.asarray(straight[0]["dense"]["kernel"]))


def test_types_dtypes_and_static_structure_round_trip(tmp_path):
    params = init_params()
    labels = {"dense": "body", "head": "head"}
    tx = chain(
        partition(
            {"body": optimizers.sgd(0.1, momentum=0.9), "head": optimizers.adam(decaying, mu_dtype=jnp.bfloat16)},
            labels,
        ),
        scale_by_learning_rate(0.5, flip_sign=False),
    )
    state = tx.init(params)
    _, state = tx.update(jax.tree.map(jnp.ones_like, params), state, params)
    checkpoint.save(tmp_path / "s", state)
    restored = checkpoint.restore(tmp_path / "s", tx.init(params))

    # NamedTuple types, Hyperparams (with its scheduled set) and MaskedNode placeholders.
    assert jax.tree.structure(restored) == jax.tree.structure(state)
    head = restored[0].inner_states["head"].inner_state[0]
    assert type(head).__name__ == "ScaleByAdamState"
    assert head.mu["dense"] == MaskedNode()
    lr_node = restored[0].inner_states["head"].inner_state[1].hyperparams
    assert isinstance(lr_node, Hyperparams) and lr_node.scheduled == frozenset({"learning_rate"})
    assert head.count.dtype == jnp.int32 and int(head.count) == 1
    assert head.mu["head"]["kernel"].dtype == jnp.bfloat16
    assert_bitwise_equal(restored, state)


def test_flax_train_state_round_trip(tmp_path):
    from flax.training import train_state

    params = init_params()
    state = train_state.TrainState.create(apply_fn=None, params=params, tx=TX)
    grads = jax.tree.map(jnp.ones_like, params)
    state = state.apply_gradients(grads=grads).apply_gradients(grads=grads)
    checkpoint.save(tmp_path / "ts", state)
    fresh = train_state.TrainState.create(apply_fn=None, params=params, tx=TX)
    restored = checkpoint.restore(tmp_path / "ts", fresh)
    assert restored.tx is TX and int(restored.step) == 2
    assert_bitwise_equal(restored.opt_state, state.opt_state)
    assert_bitwise_equal(restored.apply_gradients(grads=grads).params, state.apply_gradients(grads=grads).params)


def test_nnx_model_and_optimizer_round_trip(tmp_path):
    from flax import nnx

    def build(seed):
        model = nnx.Linear(3, 4, rngs=nnx.Rngs(seed))
        return model, nnx.Optimizer(model, optimizers.adam(decaying), wrt=nnx.Param)

    model, optimizer = build(0)
    grads = nnx.grad(lambda m: jnp.sum(jnp.square(m(jnp.ones((2, 3))))))(model)
    optimizer.update(model, grads)
    checkpoint.save(tmp_path / "nnx", nnx.state((model, optimizer)))
    model2, optimizer2 = build(1)
    nnx.update((model2, optimizer2), checkpoint.restore(tmp_path / "nnx", nnx.state((model2, optimizer2))))
    assert_bitwise_equal(nnx.state((model2, optimizer2)), nnx.state((model, optimizer)))
    assert optimizer2.step[...].dtype == jnp.uint32 and optimizer2.opt_state[0].count[...].dtype == jnp.int32
    assert int(optimizer2.opt_state[0].count[...]) == 1


def test_shardings_are_restored():
    mesh = jax.make_mesh((8,), ("data",))
    params = jax.tree.map(lambda a: jnp.tile(a, (2, 1)) if a.ndim == 2 else a, init_params())
    param_sh = replicated(params, mesh)
    zero1 = state_shardings(jax.eval_shape(TX.init, params), param_sh)
    state = jax.jit(TX.init, out_shardings=zero1)(jax.device_put(params, param_sh))
    _, state = jax.jit(TX.update, out_shardings=(param_sh, zero1))(params, state, params)
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        checkpoint.save(f"{tmp}/z", state)
        # Restore into the ZeRO-1 layout...
        target = jax.tree.map(
            lambda s, sh: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=sh), jax.eval_shape(TX.init, params), zero1
        )
        restored = checkpoint.restore(f"{tmp}/z", target)
        for got, want in zip(jax.tree.leaves(restored), jax.tree.leaves(zero1, is_leaf=_is_sharding), strict=True):
            assert got.sharding == want
        assert restored[0].mu["dense"]["kernel"].sharding.spec == P("data", None)
        assert_bitwise_equal(restored, state)
        # ...or into a replicated one: the same values, another layout.
        everywhere = NamedSharding(mesh, P())
        target = jax.tree.map(
            lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=everywhere), jax.eval_shape(TX.init, params)
        )
        replicated_state = checkpoint.restore(f"{tmp}/z", target)
        assert all(leaf.sharding == everywhere for leaf in jax.tree.leaves(replicated_state))
        assert_bitwise_equal(replicated_state, state)


def _is_sharding(x):
    return isinstance(x, jax.sharding.Sharding)


def test_mismatched_target_is_refused(tmp_path):
    params = init_params()
    checkpoint.save(tmp_path / "adam", optimizers.adam(0.1).init(params))
    with pytest.raises(ValueError, match=r"has no array for \[0\]\.trace\['dense'\]\['bias'\]"):
        checkpoint.restore(tmp_path / "adam", optimizers.sgd(0.1, momentum=0.9).init(params))
    with pytest.raises(ValueError, match=r"\[0\]\.mu\['dense'\]\['bias'\] was saved with shape \(8,\) and dtype "
                                         r"float32, but the target has shape \(8,\) and dtype bfloat16"):
        checkpoint.restore(tmp_path / "adam", optimizers.adam(0.1, mu_dtype=jnp.bfloat16).init(params))
    with pytest.raises(ValueError, match="holds arrays the target lacks"):
        checkpoint.restore(tmp_path / "adam", optimizers.adam(0.1).init({"dense": params["dense"]}))
    checkpoint.save(tmp_path / "adam", optimizers.adam(0.2).init(params), force=True)
    # The saved configuration never silently overrides the code's: the caller chooses.
    with pytest.raises(checkpoint.HyperparamsMismatchError, match=r"learning_rate'\]: saved 0\.2.*code 0\.1"):
        checkpoint.restore(tmp_path / "adam", optimizers.adam(0.1).init(params))
    restored = checkpoint.restore(tmp_path / "adam", optimizers.adam(0.1).init(params), hyperparams="saved")
    assert float(get_hyperparams(restored)["learning_rate"]) == pytest.approx(0.2)
    restored = checkpoint.restore(tmp_path / "adam", optimizers.adam(0.1).init(params), hyperparams="code")
    assert float(get_hyperparams(restored)["learning_rate"]) == pytest.approx(0.1)


def test_missing_orbax_gives_clear_error(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "orbax.checkpoint", None)
    with pytest.raises(ImportError, match="needs orbax-checkpoint"):
        checkpoint.save(tmp_path / "x", {"a": jnp.zeros(2)})
