"""Data-parallel training three ways, with the same optimizer and the same batches.

1. one device, the whole batch;
2. ``jax.pmap`` over n devices: parameters and optimizer state replicated, each device takes
   1/n of the batch, ``lax.pmean`` averages the gradients;
3. ``jax.jit`` over a ``Mesh``: the batch split along the ``data`` axis and AdamW's moments
   split along it too (ZeRO-1, ``optcompose.sharding.state_shardings``), so each device stores
   1/n of them.

The three runs compute the same steps up to float32 summation order (the gradient mean is
summed in another order on n devices). Training amplifies such round-off, and Adam more than
most: a coordinate whose gradient is ~0 in one run and 1e-12 in another moves by ~lr in the
second. So the runs agree to ~1e-6 for the first steps and drift apart slowly after, to the same
loss and accuracy. The plot shows the losses, the parameter distances, and the optimizer-state
memory per device. On a CPU the n devices are simulated (``--xla_force_host_platform_device_count``).

    python examples/data_parallel.py                 # about a minute on a laptop CPU
    python examples/data_parallel.py --steps 3       # smoke run
"""

from __future__ import annotations

import argparse
import json
import os
import sys


def _devices_flag(argv: list[str]) -> int:
    probe = argparse.ArgumentParser(add_help=False)
    probe.add_argument("--devices", type=int, default=8)
    return probe.parse_known_args(argv)[0].devices


# The simulated CPU devices must be requested before JAX starts its backend.
if "--xla_force_host_platform_device_count" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (
        os.environ.get("XLA_FLAGS", "") + f" --xla_force_host_platform_device_count={_devices_flag(sys.argv[1:])}"
    ).strip()

import common  # noqa: E402
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from jax.sharding import NamedSharding  # noqa: E402
from jax.sharding import PartitionSpec as P  # noqa: E402

from optcompose import optimizers  # noqa: E402
from optcompose._base import apply_updates  # noqa: E402
from optcompose.sharding import bytes_per_device, replicated, state_shardings  # noqa: E402


class MLP(common.nn.Module):
    """A one-hidden-layer perceptron on the flattened 8x8 images (fast to compile)."""

    @common.nn.compact
    def __call__(self, x):
        x = common.nn.relu(common.nn.Dense(64)(x.reshape((x.shape[0], -1))))
        return common.nn.Dense(10)(x)


def batches(data: common.Digits, batch_size: int, steps: int, seed: int):
    """``steps`` shuffled batches, epoch after epoch, every one of the same shape."""
    rng = np.random.default_rng(seed)
    produced = 0
    while True:
        for x, y in common.epoch_batches(data.x_train, data.y_train, batch_size, rng):
            if produced == steps:
                return
            produced += 1
            yield x, y


def max_abs_difference(a, b) -> float:
    pairs = zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True)
    return max(float(np.max(np.abs(np.asarray(x) - np.asarray(y)))) for x, y in pairs)


def main() -> None:
    parser = common.parser(__doc__.splitlines()[0], steps=300)
    parser.add_argument("--devices", type=int, default=8, help="devices to split the batch over (default 8)")
    parser.add_argument("--batch-size", type=int, default=128, help="global batch size (default 128)")
    parser.add_argument("--model", choices=("cnn", "mlp"), default="cnn", help="the small CNN (default) or an MLP")
    args = parser.parse_args()
    n = args.devices
    if len(jax.devices()) < n:
        raise SystemExit(f"asked for {n} devices, JAX sees {len(jax.devices())}")
    if args.batch_size % n:
        raise SystemExit(f"--batch-size {args.batch_size} must be divisible by --devices {n}")
    out = common.results_dir("data_parallel", args.out)
    data = common.load_digits(seed=args.seed)
    model = common.CNN() if args.model == "cnn" else MLP()
    tx = optimizers.adamw(3e-3, weight_decay=1e-2)
    params0 = model.init(jax.random.PRNGKey(args.seed), data.x_train[:1])["params"]

    def loss_fn(params, x, y):
        return common.cross_entropy(model.apply({"params": params}, x), y)

    def step(params, opt_state, x, y):
        loss, grads = jax.value_and_grad(loss_fn)(params, x, y)
        updates, opt_state = tx.update(grads, opt_state, params)
        return apply_updates(params, updates), opt_state, loss

    def pmap_step(params, opt_state, x, y):
        loss, grads = jax.value_and_grad(loss_fn)(params, x, y)
        grads, loss = jax.lax.pmean((grads, loss), axis_name="batch")
        updates, opt_state = tx.update(grads, opt_state, params)
        return apply_updates(params, updates), opt_state, loss

    # 1. One device.
    single = jax.jit(step)
    # 2. pmap: everything replicated, the batch split in n.
    devices = jax.devices()[:n]
    pmapped = jax.pmap(pmap_step, axis_name="batch", devices=devices)
    replicate = lambda tree: jax.tree.map(lambda a: jnp.broadcast_to(a, (n, *jnp.shape(a))), tree)
    split = lambda a: a.reshape(n, a.shape[0] // n, *a.shape[1:])
    # 3. jit over a mesh: the batch and the optimizer state split along 'data'.
    mesh = jax.make_mesh((n,), ("data",), devices=devices)
    param_sh = replicated(params0, mesh)
    zero1_sh = state_shardings(jax.eval_shape(tx.init, params0), param_sh)
    data_sh = NamedSharding(mesh, P("data"))
    meshed = jax.jit(
        step, in_shardings=(param_sh, zero1_sh, data_sh, data_sh), out_shardings=(param_sh, zero1_sh, None)
    )

    runs = {
        "single": [params0, tx.init(params0)],
        "pmap": [replicate(params0), replicate(tx.init(params0))],
        "mesh": [jax.device_put(params0, param_sh), jax.jit(tx.init, out_shardings=zero1_sh)(params0)],
    }
    losses = {name: [] for name in runs}
    distance = {"pmap": [], "mesh": [], "pmap_vs_mesh": []}
    with common.tqdm(total=args.steps, desc=f"data parallel on {n} devices", unit="step", dynamic_ncols=True) as bar:
        for x, y in batches(data, args.batch_size, args.steps, args.seed):
            for name, fn, inputs in (
                ("single", single, (x, y)),
                ("pmap", pmapped, (split(x), split(y))),
                ("mesh", meshed, (jax.device_put(x, data_sh), jax.device_put(y, data_sh))),
            ):
                params, opt_state, loss = fn(*runs[name], *inputs)
                runs[name] = [params, opt_state]
                losses[name].append(float(np.asarray(loss).reshape(-1)[0]))
            reference = runs["single"][0]
            distance["pmap"].append(max_abs_difference(jax.tree.map(lambda a: a[0], runs["pmap"][0]), reference))
            distance["mesh"].append(max_abs_difference(runs["mesh"][0], reference))
            distance["pmap_vs_mesh"].append(
                max_abs_difference(jax.tree.map(lambda a: a[0], runs["pmap"][0]), runs["mesh"][0])
            )
            bar.update()
            bar.set_postfix(loss=f"{losses['single'][-1]:.3f}", pmap_diff=f"{distance['pmap'][-1]:.1e}")

    replicas = jax.tree.leaves(runs["pmap"][0])
    identical = all(bool(np.all(np.asarray(leaf) == np.asarray(leaf)[:1])) for leaf in replicas)
    first_device = devices[0]
    memory = {
        "replicated (pmap)": bytes_per_device(runs["pmap"][1])[first_device],
        "ZeRO-1 (mesh)": bytes_per_device(runs["mesh"][1])[first_device],
    }
    accuracy = {}
    for name, (params, _) in runs.items():
        if name == "pmap":
            params = jax.tree.map(lambda a: a[0], params)
        logits = model.apply({"params": jax.device_get(params)}, data.x_test)
        accuracy[name] = float(jnp.mean(jnp.argmax(logits, -1) == data.y_test))

    fig, axes = common.figure(1, 3, size=(16, 4.2))
    loss_ax, diff_ax, mem_ax = axes[0]
    steps = np.arange(1, args.steps + 1)
    for name, style in (("single", "-"), ("pmap", "--"), ("mesh", ":")):
        loss_ax.plot(steps, losses[name], style, label=f"{name} (test acc {100 * accuracy[name]:.1f}%)")
    loss_ax.set(xlabel="step", ylabel="training loss", yscale="log", title=f"AdamW, global batch {args.batch_size}")
    loss_ax.legend()
    for name, label, style in (
        ("pmap", "pmap vs single device", "-"),
        ("mesh", "mesh vs single device", "--"),
        ("pmap_vs_mesh", "pmap vs mesh", ":"),
    ):
        diff_ax.plot(steps, np.maximum(distance[name], 1e-12), style, label=label)
    diff_ax.set(
        xlabel="step",
        ylabel="max |param difference| (floor 1e-12)",
        yscale="log",
        title="Float32 summation order, amplified by training",
    )
    diff_ax.legend()
    bars = mem_ax.bar(list(memory), [v / 1024 for v in memory.values()], color=["C1", "C2"])
    mem_ax.bar_label(bars, [f"{v / 1024:.1f} KiB" for v in memory.values()])
    mem_ax.set(ylabel="optimizer state per device (KiB)", title=f"AdamW state on each of {n} devices")
    for ax in (loss_ax, diff_ax):
        ax.grid(alpha=0.3)
    common.save(fig, out / "data_parallel.png")

    summary = {
        "devices": n,
        "steps": args.steps,
        "final_loss": {k: v[-1] for k, v in losses.items()},
        "max_param_difference_vs_single": {k: v[-1] for k, v in distance.items()},
        "pmap_replicas_bitwise_identical": identical,
        "optimizer_state_bytes_per_device": memory,
        "test_accuracy": accuracy,
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
