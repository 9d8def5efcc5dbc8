"""Side-by-side optimizer-step benchmark: optcompose vs Optax vs torch.optim (foreach and fused).

For each parameter pytree (GPT-2 small, ResNet-50, 2000 leaves x 2048 floats; see pytrees.py)
and each optimizer (adamw, sgd with momentum, lamb) it prints, in one run:

* step time (median over interleaved rounds: every library runs a few steps, then the next one,
  round after round, so machine noise hits all of them alike) and the ratio to Optax;
* compile time of the JAX step (trace + lower + XLA compile);
* the optimizer state's memory;
* the memory-bandwidth limit measured on the spot: the time an in-place ``x += y`` takes over the
  same number of floats gives bytes per second, and AdamW moves 28 bytes per fp32 parameter
  (reads params, grads, m, v; writes params, m, v), SGD with momentum 20, LAMB at least 28.

The JAX step is ``params, state = step(params, state, grads)`` under ``jax.jit`` with params and
state donated, as in a training loop. It runs on JAX's default device (CPU here, a GPU where one
is present); torch runs on CUDA when JAX does and torch can, else on the CPU.

    python benchmarks/bench_optimizers.py              # all three pytrees, adamw
    python benchmarks/bench_optimizers.py --optimizers adamw,sgd,lamb --cases resnet50
    python benchmarks/bench_optimizers.py --quick      # tiny shapes, seconds (used by the tests)
"""

from __future__ import annotations

import argparse
import functools
import gc
import json
import math
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import pytrees  # noqa: E402

from optcompose import optimizers as oc  # noqa: E402
from optcompose._base import apply_updates  # noqa: E402
from optcompose.speed._flat import flat_state  # noqa: E402
from optcompose.speed._step import step as optcompose_step  # noqa: E402

HYPER = {"learning_rate": 1e-3, "weight_decay": 1e-2, "momentum": 0.9}
BYTES_PER_PARAM = {"adamw": 28, "sgd": 20, "lamb": 28}


def _is_shape(x: Any) -> bool:
    return isinstance(x, tuple)


def _leaf_arrays(shapes: Any, seed: int, scale: float) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    leaves = jax.tree.leaves(shapes, is_leaf=_is_shape)
    return [(rng.standard_normal(s, dtype=np.float32) * scale) for s in leaves]


# --------------------------------------------------------------------------------------------
# The optimizers under test, built with the same hyperparameters in each library.


def optcompose_tx(name: str, moment_dtype: Any = None):
    h = HYPER
    if name == "adamw":
        lr, wd = h["learning_rate"], h["weight_decay"]
        return oc.adamw(lr, weight_decay=wd, mu_dtype=moment_dtype, nu_dtype=moment_dtype)
    if name == "sgd":
        return oc.sgd(h["learning_rate"], momentum=h["momentum"], accumulator_dtype=moment_dtype)
    if name == "lamb":
        return oc.lamb(h["learning_rate"], weight_decay=h["weight_decay"])
    raise ValueError(name)


def optax_tx(name: str):
    import optax

    h = HYPER
    if name == "adamw":
        return optax.adamw(h["learning_rate"], weight_decay=h["weight_decay"])
    if name == "sgd":
        return optax.sgd(h["learning_rate"], momentum=h["momentum"])
    if name == "lamb":
        return optax.lamb(h["learning_rate"], weight_decay=h["weight_decay"])
    raise ValueError(name)


def torch_optimizer(name: str, params: list, impl: str):
    import torch

    h = HYPER
    flag = {"foreach": True} if impl == "foreach" else {"fused": True}
    if name == "adamw":
        return torch.optim.AdamW(params, lr=h["learning_rate"], weight_decay=h["weight_decay"], **flag)
    if name == "sgd":
        return torch.optim.SGD(params, lr=h["learning_rate"], momentum=h["momentum"], **flag)
    return None  # torch.optim has no LAMB


# --------------------------------------------------------------------------------------------
# Runners: each owns its arrays; ``step()`` does one optimizer step and waits for it.


class JaxRunner:
    def __init__(
        self, label: str, tx, apply: Callable | None, params: list[np.ndarray], grads_tree: Any, treedef,
        compiler_options: dict | None = None,
    ):
        """``apply=None`` steps with ``optcompose.step``; otherwise ``tx.update`` then ``apply``."""
        self.label = label
        device_params = treedef.unflatten([jnp.asarray(p) for p in params])
        self.grads = grads_tree

        def step(p, s, g):
            if apply is None:
                return optcompose_step(tx, g, s, p)
            updates, s = tx.update(g, s, p)
            return apply(p, updates), s

        self.state = tx.init(device_params)
        jax.block_until_ready(self.state)
        start = time.perf_counter()
        lowered = jax.jit(step, donate_argnums=(0, 1)).lower(device_params, self.state, self.grads)
        self.compiled = lowered.compile(compiler_options=compiler_options or None)
        self.compile_s = time.perf_counter() - start
        self.params = device_params
        self.state_bytes = sum(leaf.nbytes for leaf in jax.tree.leaves(self.state) if np.ndim(leaf) > 0)
        self.step()  # warm-up

    def step(self) -> None:
        self.params, self.state = self.compiled(self.params, self.state, self.grads)
        jax.block_until_ready((self.params, self.state))

    def close(self) -> None:
        del self.params, self.state, self.compiled


class TorchRunner:
    compile_s = float("nan")

    def __init__(self, label: str, optimizer_name: str, impl: str, params, grads, device: str):
        import torch

        self.label = label
        self.torch = torch
        self.device = device
        self.params = [torch.nn.Parameter(torch.from_numpy(p.copy()).to(device)) for p in params]
        for p, g in zip(self.params, grads, strict=True):
            p.grad = g
        self.optimizer = torch_optimizer(optimizer_name, self.params, impl)
        self.step()  # warm-up, creates the state
        self.state_bytes = sum(
            t.nbytes for s in self.optimizer.state.values() for t in s.values() if torch.is_tensor(t) and t.ndim > 0
        )

    def step(self) -> None:
        with self.torch.no_grad():
            self.optimizer.step()
        if self.device == "cuda":
            self.torch.cuda.synchronize()

    def close(self) -> None:
        del self.optimizer, self.params


# --------------------------------------------------------------------------------------------


def measure_bandwidth(n: int, repeats: int = 5) -> float:
    """Bytes per second of an in-place ``x += y`` over ``n`` float32s on JAX's default device."""
    add = jax.jit(lambda x, y: x + y, donate_argnums=0)
    x = jnp.zeros((n,), jnp.float32)
    y = jnp.ones((n,), jnp.float32)
    x = add(x, y).block_until_ready()
    best = math.inf
    for _ in range(repeats):
        start = time.perf_counter()
        x = add(x, y).block_until_ready()
        best = min(best, time.perf_counter() - start)
    del x, y
    return 12 * n / best


def measure_torch_bandwidth(n: int, device: str, repeats: int = 5) -> float:
    import torch

    x = torch.zeros(n, device=device)
    y = torch.ones(n, device=device)
    best = math.inf
    for _ in range(repeats + 1):
        start = time.perf_counter()
        x.add_(y)
        if device == "cuda":
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - start)
    del x, y
    return 12 * n / best


def run_case(case: str, shapes: Any, optimizer: str, args) -> dict:
    leaves, n_params = pytrees.describe(shapes)
    treedef = jax.tree.structure(shapes, is_leaf=_is_shape)
    params = _leaf_arrays(shapes, seed=0, scale=0.02)
    grads_np = _leaf_arrays(shapes, seed=1, scale=1e-3)
    grads = treedef.unflatten([jnp.asarray(g) for g in grads_np])

    bandwidth = measure_bandwidth(n_params)
    torch_device = None
    torch_bandwidth = float("nan")
    if "torch" in args.libraries:
        try:
            import torch

            torch.set_num_threads(os.cpu_count() or 1)
            torch_device = "cuda" if jax.default_backend() == "gpu" and torch.cuda.is_available() else "cpu"
            torch_bandwidth = measure_torch_bandwidth(n_params, torch_device)
        except ImportError:
            torch_device = None

    runners = []
    options = json.loads(args.compiler_options) if args.compiler_options else None
    jax_runner = functools.partial(JaxRunner, compiler_options=options)

    if "optcompose" in args.libraries:
        runners.append(jax_runner("optcompose step", optcompose_tx(optimizer), None, params, grads, treedef))
        flat = flat_state(optcompose_tx(optimizer))
        runners.append(jax_runner("optcompose step, flat state", flat, None, params, grads, treedef))
        runners.append(
            jax_runner("optcompose update+apply", optcompose_tx(optimizer), apply_updates, params, grads, treedef)
        )
        if args.bf16_moments and optimizer in ("adamw", "sgd"):
            tx = optcompose_tx(optimizer, moment_dtype=jnp.bfloat16)
            runners.append(jax_runner("optcompose step, bf16 state", tx, None, params, grads, treedef))
    if "optax" in args.libraries:
        import optax

        runners.append(jax_runner("optax", optax_tx(optimizer), optax.apply_updates, params, grads, treedef))
    if torch_device is not None:
        import torch

        torch_grads = [torch.from_numpy(g).to(torch_device) for g in grads_np]
        for impl in ("foreach", "fused"):
            if torch_optimizer(optimizer, [torch.nn.Parameter(torch.zeros(1))], impl) is None:
                continue
            runners.append(TorchRunner(f"torch {impl}", optimizer, impl, params, torch_grads, torch_device))
    del params

    times: dict[str, list[float]] = {r.label: [] for r in runners}
    for _ in range(args.rounds):
        for runner in runners:
            for _ in range(args.steps):
                start = time.perf_counter()
                runner.step()
                times[runner.label].append(time.perf_counter() - start)

    best_bandwidth = max(bandwidth, 0.0 if math.isnan(torch_bandwidth) else torch_bandwidth)
    limit = BYTES_PER_PARAM[optimizer] * n_params / best_bandwidth
    result = {
        "case": case,
        "optimizer": optimizer,
        "leaves": leaves,
        "params": n_params,
        "bandwidth_GBps": bandwidth / 1e9,
        "torch_bandwidth_GBps": torch_bandwidth / 1e9,
        "memory_limit_ms": limit * 1e3,
        "libraries": {
            r.label: {
                "step_ms": statistics.median(times[r.label]) * 1e3,
                "min_ms": min(times[r.label]) * 1e3,
                "compile_s": r.compile_s,
                "state_MB": r.state_bytes / 1e6,
            }
            for r in runners
        },
    }
    for runner in runners:
        runner.close()
    del runners, grads, grads_np
    gc.collect()
    return result


def format_result(result: dict) -> str:
    libs = result["libraries"]
    reference = libs.get("optax", {}).get("step_ms")
    lines = [
        f"\n{result['case']}: {result['leaves']} leaves, {result['params'] / 1e6:.1f}M params, "
        f"{result['optimizer']}; in-place bandwidth {result['bandwidth_GBps']:.1f} GB/s (jax), "
        f"{result['torch_bandwidth_GBps']:.1f} GB/s (torch) -> memory limit "
        f"{result['memory_limit_ms']:.2f} ms/step",
        f"  {'library':<30}{'step ms (median)':>18}{'min ms':>10}{'vs optax':>10}{'vs limit':>10}"
        f"{'compile s':>11}{'state MB':>10}",
    ]
    for label, r in libs.items():
        ratio = f"{r['step_ms'] / reference:.2f}x" if reference else "-"
        compile_s = "-" if math.isnan(r["compile_s"]) else f"{r['compile_s']:.2f}"
        lines.append(
            f"  {label:<30}{r['step_ms']:>18.2f}{r['min_ms']:>10.2f}{ratio:>10}"
            f"{r['step_ms'] / result['memory_limit_ms']:>9.2f}x{compile_s:>11}{r['state_MB']:>10.1f}"
        )
    return "\n".join(lines)


def describe_machine() -> str:
    device = jax.devices()[0]
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return (
        f"jax {jax.__version__} on {jax.default_backend()} ({device.device_kind}); {os.cpu_count()} CPU cores "
        f"({cpu}); python {platform.python_version()}"
    )


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny pytrees and few steps (seconds)")
    parser.add_argument("--cases", default=None, help="comma-separated subset of the pytrees")
    parser.add_argument("--optimizers", default="adamw", help="comma-separated: adamw,sgd,lamb")
    parser.add_argument("--libraries", default="optcompose,optax,torch")
    parser.add_argument("--rounds", type=int, default=None, help="interleaved rounds (default 5; 2 with --quick)")
    parser.add_argument("--steps", type=int, default=2, help="timed steps per library per round")
    parser.add_argument("--no-bf16-moments", dest="bf16_moments", action="store_false",
                        help="skip the optcompose run with bfloat16 moments")
    parser.add_argument("--compiler-options", default=None,
                        help='XLA options for every JAX step, as JSON: \'{"xla_cpu_parallel_codegen_split_count": 1}\'')
    parser.add_argument("--json", default=None, help="also write the results to this file")
    args = parser.parse_args(argv)
    args.libraries = args.libraries.split(",")
    if args.rounds is None:
        args.rounds = 2 if args.quick else 5
    available = pytrees.QUICK if args.quick else pytrees.FULL
    cases = args.cases.split(",") if args.cases else list(available)
    unknown = [c for c in cases if c not in available]
    if unknown:
        parser.error(f"unknown cases {unknown}; choose from {list(available)}")

    print(describe_machine(), flush=True)
    results = []
    for optimizer in args.optimizers.split(","):
        if optimizer not in BYTES_PER_PARAM:
            parser.error(f"unknown optimizer {optimizer!r}; choose from {list(BYTES_PER_PARAM)}")
        for case in cases:
            result = run_case(case, available[case](), optimizer, args)
            results.append(result)
            print(format_result(result), flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"machine": describe_machine(), "results": results}, f, indent=1)
    return results


if __name__ == "__main__":
    main()
