"""optcompose/integrations/checkpoint.py: params + optimizer state + step survive a save/restore exactly.

The round trip of every row of the table is tests/table/test_checkpoint.py's. Here: resuming is
bitwise a straight run, types / dtypes / shardings come back, and restoring never silently overrides
the code's configuration, nor loads damaged or foreign data.
"""

import os
import pathlib
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import assert_trees_close, assert_trees_equal
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

import optcompose as oc
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


def test_resume_is_bitwise_equal_to_straight_run(tmp_path):
    params = init_params()
    straight = train(params, TX.init(params), jnp.int32(0), 0, 2 * N)

    half = train(params, TX.init(params), jnp.int32(0), 0, N)
    checkpoint.save(tmp_path / "ckpt", {"params": half[0], "opt_state": half[1], "step": half[2]})
    # The target: a fresh state of the same optimizer, its shapes only.
    target = jax.eval_shape(lambda: {"params": params, "opt_state": TX.init(params), "step": jnp.int32(0)})
    restored = checkpoint.restore(tmp_path / "ckpt", target)
    assert_trees_equal((restored["params"], restored["opt_state"], restored["step"]), half)
    assert int(restored["step"]) == N
    assert float(get_hyperparams(restored["opt_state"])["learning_rate"]) == pytest.approx(float(decaying(N)))
    resumed = train(restored["params"], restored["opt_state"], restored["step"], N, 2 * N)
    assert_trees_equal(resumed, straight)

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
    assert_trees_equal(restored, state)


@pytest.mark.slow
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
    assert_trees_equal(restored.opt_state, state.opt_state)
    assert_trees_equal(restored.apply_gradients(grads=grads).params, state.apply_gradients(grads=grads).params)


@pytest.mark.slow
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
    assert_trees_equal(nnx.state((model2, optimizer2)), nnx.state((model, optimizer)))
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
        assert_trees_equal(restored, state)
        # ...or into a replicated one: the same values, another layout.
        everywhere = NamedSharding(mesh, P())
        target = jax.tree.map(
            lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=everywhere), jax.eval_shape(TX.init, params)
        )
        replicated_state = checkpoint.restore(f"{tmp}/z", target)
        assert all(leaf.sharding == everywhere for leaf in jax.tree.leaves(replicated_state))
        assert_trees_equal(replicated_state, state)


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


# ----------------------------------------------------------------------------------------------
# Restoring never silently overrides the code's configuration, nor loads damaged or foreign data.

PARAMS = {"a": jnp.arange(6.0).reshape(2, 3), "b": jnp.ones((4,))}
GRADS = jax.tree.map(jnp.ones_like, PARAMS)


def _run(tx, state, params, steps=2):
    for _ in range(steps):
        updates, state = tx.update(GRADS, state, params)
        params = oc.apply_updates(params, updates)
    return params, state


def test_a_changed_learning_rate_is_an_error_until_the_caller_chooses(tmp_path):
    saved_tx, code_tx = oc.sgd(1.0, momentum=0.5), oc.sgd(0.01, momentum=0.5)
    _, state = _run(saved_tx, saved_tx.init(PARAMS), PARAMS)
    checkpoint.save(tmp_path / "ck", state)
    with pytest.raises(checkpoint.HyperparamsMismatchError) as info:
        checkpoint.restore(tmp_path / "ck", code_tx.init(PARAMS))
    message = str(info.value)
    assert "[1].hyperparams['learning_rate']" in message and "saved 1.0" in message and "code 0.01" in message
    restored = checkpoint.restore(tmp_path / "ck", code_tx.init(PARAMS), hyperparams="code")
    new_params, _ = _run(code_tx, restored, PARAMS, steps=1)
    # momentum buffer after two steps of g=1: 1 + 0.5 = 1.5, then 1 + 0.5 * 1.5 = 1.75; lr 0.01
    assert_trees_close(new_params["b"], jnp.full((4,), 1.0 - 0.01 * 1.75), rtol=1e-6, atol=0)
    kept = checkpoint.restore(tmp_path / "ck", code_tx.init(PARAMS), hyperparams="saved")
    assert float(oc.get_hyperparams(kept)["learning_rate"]) == 1.0


def test_equal_hyperparameters_restore_without_a_word(tmp_path):
    tx = oc.adamw(1e-3, weight_decay=0.1)
    _, state = _run(tx, tx.init(PARAMS), PARAMS)
    checkpoint.save(tmp_path / "ck", state)
    restored = checkpoint.restore(tmp_path / "ck", tx.init(PARAMS))
    assert int(restored[0].count) == 2
    with pytest.raises(ValueError, match="hyperparams must be"):
        checkpoint.restore(tmp_path / "ck", tx.init(PARAMS), hyperparams="mine")


def _largest_file(root: pathlib.Path) -> pathlib.Path:
    files = [p for p in root.rglob("*") if p.is_file() and p.name != "optcompose.json"]
    return max(files, key=lambda p: p.stat().st_size)


def test_flipped_bytes_are_detected_naming_the_array(tmp_path):
    big = {"w": jnp.asarray(np.random.default_rng(0).standard_normal(4096), jnp.float32)}
    checkpoint.save(tmp_path / "ck", big)
    target = _largest_file(tmp_path / "ck")
    data = bytearray(target.read_bytes())
    middle = len(data) // 2
    data[middle : middle + 8] = bytes(b ^ 0xFF for b in data[middle : middle + 8])
    target.write_bytes(bytes(data))
    with pytest.raises(checkpoint.CheckpointCorruptedError, match=r"\['w'\]"):
        checkpoint.restore(tmp_path / "ck", big)


def test_verification_can_be_skipped_and_is_required_by_default(tmp_path):
    checkpoint.save(tmp_path / "ck", PARAMS)
    os.remove(tmp_path / "ck" / "optcompose.json")
    with pytest.raises(checkpoint.CheckpointCorruptedError, match="verify=False"):
        checkpoint.restore(tmp_path / "ck", PARAMS)
    restored = checkpoint.restore(tmp_path / "ck", PARAMS, verify=False)
    assert_trees_equal(restored["a"], PARAMS["a"])


def test_a_flat_state_of_another_layout_is_refused_naming_the_leaf(tmp_path):
    tx = oc.flat_state(oc.adam(0.1))
    other = {"a": jnp.ones((4,)), "b": jnp.ones((2, 3))}  # same total size, leaves swapped
    checkpoint.save(tmp_path / "ck", tx.init(other))
    with pytest.raises(ValueError, match=r"another layout.*\['a'\] of shape \(2, 3\)"):
        checkpoint.restore(tmp_path / "ck", tx.init(PARAMS))
    restored = checkpoint.restore(tmp_path / "ck", tx.init(other))
    assert restored[0].mu.shapes == ((4,), (2, 3))


@pytest.mark.parametrize("kind", ["missing", "empty", "killed"])
def test_no_checkpoint_is_a_file_not_found_error_naming_the_path(tmp_path, kind):
    where = tmp_path / "ck"
    if kind == "empty":
        where.mkdir()
    if kind == "killed":  # what an interrupted save leaves: a directory without orbax's metadata
        where.mkdir()
        (where / "optcompose.json").write_text('{"digests": {}, "layouts": {}}')
    with pytest.raises(FileNotFoundError, match=str(where)):
        checkpoint.restore(where, PARAMS)
