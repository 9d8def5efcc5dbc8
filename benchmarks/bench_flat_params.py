"""Flat parameters (``optcompose.flat_params``) against tree parameters, Optax and torch, interleaved.

Optimizer step (AdamW, the setting of ``bench_optimizers.py``) on three pytrees:

* ``2000x2048``: 2000 leaves of 2048 floats (``pytrees.many_leaves``);
* ``lora24``: rank-8 LoRA adapters (A: d_in x 8, B: 8 x d_out) on every attention (q, k, v, o) and
  MLP (gate, up, down) projection of a 24-layer, d_model 1024, d_ff 2816 model: 336 small leaves;
* ``gpt2_small``: 148 leaves, 124M parameters (memory-bound: no regression against ``flat_state``).

Rows: ``step, flat params`` (``step(flat_state(adamw), grads, state, flat)``: g, p, m, v are one
buffer each), ``step, flat state`` (tree parameters, flat moments), ``step`` (tree parameters and
moments), ``optax`` (``update`` + ``apply_updates``), ``torch foreach`` and ``torch fused``
(``torch.optim.AdamW(fused=True)``, supported on CPU by torch >= 2.4). Each library runs a few steps,
then the next, round after round (as ``bench_optimizers.py``), and the memory floor is measured on
the spot (28 bytes per parameter at the in-place-add bandwidth).

Then a whole training step (forward, backward, AdamW) of a small MLP with many layers, with tree
and with flat parameters, interleaved likewise.

    python benchmarks/bench_flat_params.py                 # everything (minutes)
    python benchmarks/bench_flat_params.py --cases lora24  # one pytree
    python benchmarks/bench_flat_params.py --quick         # tiny shapes, seconds
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import bench_optimizers as bench  # noqa: E402
import pytrees  # noqa: E402

from optcompose.speed import flat_params, flat_state, step  # noqa: E402


def lora(n_layer: int = 24, d_model: int = 1024, d_ff: int = 2816, rank: int = 8) -> pytrees.Shapes:
    projections = {
        "q": (d_model, d_model), "k": (d_model, d_model), "v": (d_model, d_model), "o": (d_model, d_model),
        "gate": (d_model, d_ff), "up": (d_model, d_ff), "down": (d_ff, d_model),
    }  # fmt: skip
    adapter = {name: {"lora_a": (d_in, rank), "lora_b": (rank, d_out)} for name, (d_in, d_out) in projections.items()}
    return {f"layer{i:02d}": adapter for i in range(n_layer)}


CASES = {"2000x2048": pytrees.many_leaves, "lora24": lora, "gpt2_small": pytrees.gpt2_small}
QUICK = {
    "50x64": lambda: pytrees.many_leaves(50, 64),
    "lora2": lambda: lora(2, 64, 128),
    "gpt2_tiny": pytrees.QUICK["gpt2_tiny"],
}


class FlatParamsRunner(bench.JaxRunner):
    """``step`` on ``FlatParams`` gradients and parameters with ``flat_state`` moments."""

    def __init__(self, label: str, tx, params: list[np.ndarray], grads_tree: Any, treedef):
        self.label = label
        flat = flat_params(treedef.unflatten([jnp.asarray(p) for p in params]))
        self.grads = flat_params(grads_tree)
        self.state = jax.jit(lambda f: tx.init(f.tree))(flat)  # eagerly, flat.tree has one output per leaf
        jax.block_until_ready(self.state)
        start = time.perf_counter()
        lowered = jax.jit(lambda p, s, g: step(tx, g, s, p), donate_argnums=(0, 1)).lower(flat, self.state, self.grads)
        self.compiled = lowered.compile()
        self.compile_s = time.perf_counter() - start
        self.params = flat
        self.state_bytes = sum(leaf.nbytes for leaf in jax.tree.leaves(self.state) if np.ndim(leaf) > 0)
        self.step()


def run_case(case: str, shapes: Any, args) -> dict:
    import optax
    import torch

    leaves, n_params = pytrees.describe(shapes)
    treedef = jax.tree.structure(shapes, is_leaf=bench._is_shape)
    params = bench._leaf_arrays(shapes, seed=0, scale=0.02)
    grads_np = bench._leaf_arrays(shapes, seed=1, scale=1e-3)
    grads = treedef.unflatten([jnp.asarray(g) for g in grads_np])
    torch.set_num_threads(os.cpu_count() or 1)
    bandwidth = max(bench.measure_bandwidth(n_params), bench.measure_torch_bandwidth(n_params, "cpu"))
    tx = bench.optcompose_tx("adamw")
    runners = [
        FlatParamsRunner("step, flat params", flat_state(tx), params, grads, treedef),
        bench.JaxRunner("step, flat state", flat_state(tx), None, params, grads, treedef),
        bench.JaxRunner("step", tx, None, params, grads, treedef),
        bench.JaxRunner("optax", bench.optax_tx("adamw"), optax.apply_updates, params, grads, treedef),
    ]
    torch_grads = [torch.from_numpy(g) for g in grads_np]
    for impl in ("foreach", "fused"):
        runners.append(bench.TorchRunner(f"torch {impl}", "adamw", impl, params, torch_grads, "cpu"))
    times = _interleave(runners, args)
    result = {
        "case": case, "leaves": leaves, "params": n_params, "bandwidth_GBps": bandwidth / 1e9,
        "memory_floor_ms": 28 * n_params / bandwidth * 1e3,
        "rows": {r.label: {"step_ms": statistics.median(times[r.label]) * 1e3, "compile_s": r.compile_s}
                 for r in runners},
    }  # fmt: skip
    for runner in runners:
        runner.close()
    return result


def _interleave(runners, args) -> dict[str, list[float]]:
    times: dict[str, list[float]] = {r.label: [] for r in runners}
    for _ in range(args.rounds):
        for runner in runners:
            for _ in range(args.steps):
                start = time.perf_counter()
                runner.step()
                times[runner.label].append(time.perf_counter() - start)
    return times


# --------------------------------------------------------------------------------------------
# A whole training step: forward + backward + AdamW, tree against flat parameters.


class TrainRunner:
    def __init__(self, label: str, flat: bool, layers: int, width: int, batch: int):
        self.label = label
        rng = np.random.default_rng(0)
        tree = {f"l{i:03d}": {"w": jnp.asarray(rng.normal(size=(width, width)) / math.sqrt(width), jnp.float32),
                              "b": jnp.zeros((width,), jnp.float32)} for i in range(layers)}  # fmt: skip
        self.x = jnp.asarray(rng.normal(size=(batch, width)), jnp.float32)
        self.y = jnp.asarray(rng.normal(size=(batch, width)), jnp.float32)
        tx = flat_state(bench.optcompose_tx("adamw")) if flat else bench.optcompose_tx("adamw")
        self.params = flat_params(tree) if flat else tree
        self.state = tx.init(tree)

        def loss(p, x, y):
            p = p.tree if flat else p
            for i in range(layers):
                x = jnp.tanh(x @ p[f"l{i:03d}"]["w"] + p[f"l{i:03d}"]["b"])
            return jnp.mean((x - y) ** 2)

        def train_step(p, s, x, y):
            return step(tx, jax.grad(loss)(p, x, y), s, p)

        start = time.perf_counter()
        self.compiled = (
            jax.jit(train_step, donate_argnums=(0, 1)).lower(self.params, self.state, self.x, self.y).compile()
        )
        self.compile_s = time.perf_counter() - start
        self.step()

    def step(self) -> None:
        self.params, self.state = self.compiled(self.params, self.state, self.x, self.y)
        jax.block_until_ready((self.params, self.state))

    def close(self) -> None:
        del self.params, self.state, self.compiled


def run_training(args) -> dict:
    layers, width, batch = (4, 16, 8) if args.quick else (args.layers, args.width, 64)
    runners = [TrainRunner("train step, tree params", False, layers, width, batch),
               TrainRunner("train step, flat params", True, layers, width, batch)]  # fmt: skip
    times = _interleave(runners, args)
    result = {"case": f"MLP {layers} x {width}x{width} (+bias), batch {batch}", "leaves": 2 * layers,
              "rows": {r.label: {"step_ms": statistics.median(times[r.label]) * 1e3, "compile_s": r.compile_s}
                       for r in runners}}  # fmt: skip
    for runner in runners:
        runner.close()
    return result


def format_result(result: dict) -> str:
    rows = result["rows"]
    lines = [f"\n{result['case']}: {result['leaves']} leaves" + (
        f", {result['params'] / 1e6:.2f}M params; bandwidth {result['bandwidth_GBps']:.1f} GB/s -> memory floor "
        f"{result['memory_floor_ms']:.2f} ms" if "params" in result else "")]  # fmt: skip
    base = {k: rows[k]["step_ms"] for k in ("torch fused", "optax", "step, flat state") if k in rows}
    header = f"  {'row':<26}{'ms (median)':>12}{'compile s':>11}" + "".join(f"{'vs ' + k:>20}" for k in base)
    if "memory_floor_ms" in result:
        header += f"{'vs floor':>10}"
    lines.append(header)
    for label, r in rows.items():
        compile_s = "-" if math.isnan(r["compile_s"]) else f"{r['compile_s']:.2f}"
        line = f"  {label:<26}{r['step_ms']:>12.2f}{compile_s:>11}"
        line += "".join(f"{r['step_ms'] / v:>19.2f}x" for v in base.values())
        if "memory_floor_ms" in result:
            line += f"{r['step_ms'] / result['memory_floor_ms']:>9.2f}x"
        lines.append(line)
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--cases", default=None, help="comma-separated subset of " + ",".join(CASES))
    parser.add_argument("--rounds", type=int, default=None, help="interleaved rounds (default 5; 2 with --quick)")
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--layers", type=int, default=48, help="training step: MLP depth")
    parser.add_argument("--width", type=int, default=128, help="training step: MLP width")
    parser.add_argument("--no-training", dest="training", action="store_false")
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    args.rounds = args.rounds or (2 if args.quick else 5)
    available = QUICK if args.quick else CASES
    cases = args.cases.split(",") if args.cases else list(available)
    print(bench.describe_machine(), f"; load average {os.getloadavg()[0]:.1f}", flush=True)
    results = []
    for case in cases:
        results.append(run_case(case, available[case](), args))
        print(format_result(results[-1]), flush=True)
    if args.training:
        results.append(run_training(args))
        print(format_result(results[-1]), flush=True)
    print(f"load average at the end {os.getloadavg()[0]:.1f}", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"machine": bench.describe_machine(), "results": results}, f, indent=1)
    return results


if __name__ == "__main__":
    main()
