"""One process of a 2-process data-parallel run, launched by tests/test_multiprocess.py.

Usage: ``python multiprocess_worker.py PROCESS_ID NUM_PROCESSES PORT OUT.npz``

Each process has 2 CPU devices; together they form a 4-device ``('data',)`` mesh over which the
batch is split (each process feeds its own half) and Adam's moments are split ZeRO-1 style. The
gradient mean crosses processes through gloo collectives on 127.0.0.1. The final parameters are
written to ``OUT.npz``. The model and data also serve the test's single-process reference.
"""

from __future__ import annotations

import sys

import numpy as np

LOCAL_DEVICES = 2
STEPS = 4
BATCH = 16


def init_params():
    rng = np.random.default_rng(0)
    return {
        "hidden": {"kernel": (rng.normal(size=(4, 8)) / 2).astype(np.float32), "bias": np.zeros(8, np.float32)},
        "out": {"kernel": (rng.normal(size=(8, 2)) / 3).astype(np.float32), "bias": np.zeros(2, np.float32)},
    }


def make_data():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(STEPS, BATCH, 4)).astype(np.float32)
    return x, np.cos(x[..., :2]).astype(np.float32)


def make_tx():
    from optcompose import optimizers

    return optimizers.adam(0.02)


def make_step(tx):
    import jax
    import jax.numpy as jnp

    from optcompose._base import apply_updates

    def loss_fn(params, x, y):
        h = jnp.tanh(x @ params["hidden"]["kernel"] + params["hidden"]["bias"])
        return jnp.mean(jnp.square(h @ params["out"]["kernel"] + params["out"]["bias"] - y))

    def step(params, state, x, y):
        grads = jax.grad(loss_fn)(params, x, y)
        updates, state = tx.update(grads, state, params)
        return apply_updates(params, updates), state

    return step


def main(process_id: int, num_processes: int, port: int, out: str) -> None:
    import jax

    jax.config.update("jax_platforms", "cpu")
    jax.config.update("jax_num_cpu_devices", LOCAL_DEVICES)
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(
        coordinator_address=f"127.0.0.1:{port}",
        num_processes=num_processes,
        process_id=process_id,
        initialization_timeout=60,
    )
    from jax.sharding import NamedSharding
    from jax.sharding import PartitionSpec as P

    from optcompose.sharding import replicated, state_shardings

    assert jax.process_count() == num_processes and jax.local_device_count() == LOCAL_DEVICES
    mesh = jax.make_mesh((jax.device_count(),), ("data",))
    tx = make_tx()
    host_params = init_params()
    param_sh = replicated(host_params, mesh)
    params = jax.tree.map(
        lambda a, s: jax.make_array_from_callback(a.shape, s, lambda index, a=a: a[index]), host_params, param_sh
    )
    state_sh = state_shardings(jax.eval_shape(tx.init, host_params), param_sh)
    state = jax.jit(tx.init, out_shardings=state_sh)(params)
    data_sh = NamedSharding(mesh, P("data"))
    step = jax.jit(
        make_step(tx), in_shardings=(param_sh, state_sh, data_sh, data_sh), out_shardings=(param_sh, state_sh)
    )

    x, y = make_data()
    per_process = BATCH // num_processes
    mine = slice(process_id * per_process, (process_id + 1) * per_process)
    for t in range(STEPS):
        local_x, local_y = x[t, mine], y[t, mine]
        global_x = jax.make_array_from_process_local_data(data_sh, local_x, (BATCH, *local_x.shape[1:]))
        global_y = jax.make_array_from_process_local_data(data_sh, local_y, (BATCH, *local_y.shape[1:]))
        params, state = step(params, state, global_x, global_y)

    mu = state[0].mu["hidden"]["kernel"]
    flat = {
        "/".join(str(getattr(k, "key", k)) for k in path): np.asarray(leaf.addressable_data(0))
        for path, leaf in jax.tree_util.tree_flatten_with_path(params)[0]
    }
    flat["count"] = np.asarray(state[0].count.addressable_data(0))
    flat["mu_local_rows"] = np.asarray(sum(s.data.shape[0] for s in mu.addressable_shards))
    np.savez(out, **flat)
    jax.distributed.shutdown()


if __name__ == "__main__":
    main(int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4])
