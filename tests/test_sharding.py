"""optcompose/sharding.py and data-parallel training on 8 host devices: pmap, jit over a Mesh, ZeRO-1.

Every run is compared with the same optimizer taking the same steps on one device with the full
batch: averaging per-device gradients of equal shards is the full-batch gradient, so the runs
agree up to float32 summation order.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import assert_trees_close, assert_trees_equal
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from optcompose import optimizers
from optcompose._base import apply_updates
from optcompose.sharding import bytes_per_device, replicated, shard_leaf_spec, state_shardings

N_DEVICES = 8
STEPS = 5
BATCH = 32

OPTIMIZERS = {
    "sgd": lambda: optimizers.sgd(0.05, momentum=0.9),
    "adam": lambda: optimizers.adam(0.01),
    "lamb": lambda: optimizers.lamb(0.01, weight_decay=0.01),
}


def init_params(seed=0):
    rng = np.random.default_rng(seed)
    return {
        "hidden": {"kernel": jnp.asarray(rng.normal(size=(8, 16)) / 3, jnp.float32), "bias": jnp.zeros(16)},
        "out": {"kernel": jnp.asarray(rng.normal(size=(16, 4)) / 4, jnp.float32), "bias": jnp.zeros(4)},
    }


def make_data(seed=1):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(STEPS, BATCH, 8)).astype(np.float32)
    y = np.tanh(x @ rng.normal(size=(8, 4))).astype(np.float32)
    return x, y


def loss_fn(params, x, y):
    h = jnp.tanh(x @ params["hidden"]["kernel"] + params["hidden"]["bias"])
    return jnp.mean(jnp.square(h @ params["out"]["kernel"] + params["out"]["bias"] - y))


def make_step(tx):
    def step(params, state, x, y):
        grads = jax.grad(loss_fn)(params, x, y)
        updates, state = tx.update(grads, state, params)
        return apply_updates(params, updates), state

    return step


def single_device_run(tx):
    x, y = make_data()
    params = init_params()
    state = tx.init(params)
    step = jax.jit(make_step(tx))
    for t in range(STEPS):
        params, state = step(params, state, x[t], y[t])
    return params, state


@pytest.fixture(scope="module")
def mesh():
    assert len(jax.devices()) >= N_DEVICES, "conftest should give 8 host devices"
    return jax.make_mesh((N_DEVICES,), ("data",))


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_pmap_replicas_identical_and_equal_to_single_device(name):
    tx = OPTIMIZERS[name]()
    expected, _ = single_device_run(tx)

    def step(params, state, x, y):
        grads = jax.lax.pmean(jax.grad(loss_fn)(params, x, y), axis_name="batch")
        updates, state = tx.update(grads, state, params)
        return apply_updates(params, updates), state

    pstep = jax.pmap(step, axis_name="batch", devices=jax.devices()[:N_DEVICES])
    replicate = lambda tree: jax.tree.map(lambda a: jnp.broadcast_to(a, (N_DEVICES, *jnp.shape(a))), tree)
    params = replicate(init_params())
    state = replicate(tx.init(init_params()))
    x, y = make_data()
    for t in range(STEPS):
        shard = lambda a: a.reshape(N_DEVICES, BATCH // N_DEVICES, *a.shape[1:])
        params, state = pstep(params, state, shard(x[t]), shard(y[t]))

    for leaf in jax.tree.leaves((params, state)):
        host = np.asarray(leaf)
        for replica in range(1, N_DEVICES):
            assert_trees_equal(host[replica], host[0])  # bitwise: the same program, the same inputs
    assert_trees_close(jax.tree.map(lambda a: a[0], params), expected, rtol=1e-6, atol=1e-6)
    assert np.asarray(state[0].count).dtype == np.int32 and set(np.asarray(state[0].count)) == {STEPS}


def test_state_shardings_zero1_specs(mesh):
    params = init_params()
    shapes = jax.eval_shape(optimizers.adam(0.01).init, params)
    shardings = state_shardings(shapes, replicated(params, mesh))
    adam_state = shardings[0]
    # Moments: split on the first dimension that 8 divides; 4-long biases stay replicated.
    assert adam_state.mu["hidden"]["kernel"].spec == P("data", None)
    assert adam_state.mu["out"]["kernel"].spec == P("data", None)
    assert adam_state.nu["hidden"]["bias"].spec == P("data")
    assert adam_state.nu["out"]["bias"].spec == P(None)
    # Counts and hyperparameters replicated.
    assert adam_state.count.spec == P()
    assert all(s.spec == P() for s in adam_state.hyperparams.values())
    assert shardings[1].count.spec == P()
    # The Hyperparams node keeps its keys, so the shardings tree matches the state's.
    assert jax.tree.structure(shardings, is_leaf=lambda s: isinstance(s, NamedSharding)) == jax.tree.structure(shapes)
    # Replicated parameters may also be given as a mesh plus the parameters themselves.
    assert state_shardings(shapes, mesh=mesh, params=params) == shardings


def test_state_shardings_follow_model_parallel_params():
    mesh = jax.make_mesh((4, 2), ("data", "model"))
    params = {"w": jnp.zeros((6, 8)), "v": jnp.zeros((8, 6))}
    param_shardings = {"w": NamedSharding(mesh, P(None, "model")), "v": NamedSharding(mesh, P("model", None))}
    shardings = state_shardings(jax.eval_shape(optimizers.adam(0.1).init, params), param_shardings)
    # w: dim 0 (6) is not divisible by 4, dim 1 is taken by 'model': the data axis cannot be added.
    assert shardings[0].mu["w"].spec == P(None, "model")
    # v: dim 0 is taken by 'model', dim 1 (6) is not divisible by 4 either.
    assert shardings[0].mu["v"].spec == P("model", None)
    params = {"w": jnp.zeros((8, 8))}
    shardings = state_shardings(
        jax.eval_shape(optimizers.adam(0.1).init, params), {"w": NamedSharding(mesh, P(None, "model"))}
    )
    assert shardings[0].nu["w"].spec == P("data", "model")
    # PartitionSpecs with a mesh give the same answer.
    from_specs = state_shardings(jax.eval_shape(optimizers.adam(0.1).init, params), {"w": P(None, "model")}, mesh)
    assert from_specs == shardings
    # A parameter already split over the data axis (fully sharded training) keeps its spec.
    assert shard_leaf_spec((8, 8), P("data", None), mesh) == P("data", None)
    with pytest.raises(ValueError, match="axis 'batch' is not an axis of the mesh"):
        state_shardings(jax.eval_shape(optimizers.adam(0.1).init, params), mesh=mesh, axis="batch")


def test_bytes_per_device_exact(mesh):
    tree = {"a": jnp.zeros((16, 4), jnp.float32), "b": jnp.zeros((), jnp.int32)}
    shardings = {"a": NamedSharding(mesh, P("data", None)), "b": NamedSharding(mesh, P())}
    sizes = bytes_per_device(jax.device_put(tree, shardings))
    assert set(sizes) == set(mesh.devices.flat)
    assert all(v == 16 * 4 * 4 // 8 + 4 for v in sizes.values())
    # The same answer from shapes alone.
    assert bytes_per_device(jax.eval_shape(lambda: tree), shardings) == sizes
    with pytest.raises(ValueError, match="one Sharding per leaf"):
        bytes_per_device(tree, {"a": shardings["a"]})


@pytest.mark.parametrize("zero1", [False, True], ids=["replicated_state", "zero1_state"])
def test_jit_mesh_equals_single_device(mesh, zero1):
    tx = optimizers.adam(0.01)
    expected_params, expected_state = single_device_run(tx)

    params0 = init_params()
    param_sh = replicated(params0, mesh)
    shapes = jax.eval_shape(tx.init, params0)
    state_sh = state_shardings(shapes, param_sh) if zero1 else replicated(shapes, mesh)
    data_sh = NamedSharding(mesh, P("data"))
    params = jax.device_put(params0, param_sh)
    state = jax.jit(tx.init, out_shardings=state_sh)(params)
    step = jax.jit(
        make_step(tx), in_shardings=(param_sh, state_sh, data_sh, data_sh), out_shardings=(param_sh, state_sh)
    )
    x, y = make_data()
    for t in range(STEPS):
        params, state = step(params, state, jax.device_put(x[t], data_sh), jax.device_put(y[t], data_sh))

    assert_trees_close(params, expected_params, rtol=1e-6, atol=1e-6)
    assert_trees_close(state, expected_state, rtol=1e-6, atol=1e-6)
    assert state[0].count.dtype == jnp.int32 and int(state[0].count) == STEPS
    mu_kernel = state[0].mu["hidden"]["kernel"]
    assert mu_kernel.sharding.spec == (P("data", None) if zero1 else P())
    shard_shapes = {shard.data.shape for shard in mu_kernel.addressable_shards}
    assert shard_shapes == ({(1, 16)} if zero1 else {(8, 16)})

    # Memory: each device holds 1/8 of every moment whose first dimension 8 divides.
    per_device = bytes_per_device(state)
    moments = sum(leaf.size * 4 for leaf in jax.tree.leaves((expected_state[0].mu, expected_state[0].nu)))
    scalars = 4 * (len(jax.tree.leaves(expected_state)) - len(jax.tree.leaves((expected_state[0].mu,) * 2)))
    unsplittable = 2 * 4 * 4  # the two out/bias moments (length 4) stay replicated
    expected = (moments - unsplittable) // N_DEVICES + unsplittable + scalars if zero1 else moments + scalars
    assert set(per_device.values()) == {expected}
