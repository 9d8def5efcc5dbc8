"""Matrix-preconditioner benchmark: Muon (ours, Optax's, torch's), Shampoo and SOAP, with AdamW as the unit.

On a stack of square weight matrices (the shapes Muon, Shampoo and SOAP are for; torch's Muon takes
2-D parameters only) it prints, from one process:

* **step time** (update + apply under ``jax.jit``, params and state donated; torch: ``opt.step()``),
  median and minimum over interleaved rounds: every optimizer runs a few steps, then the next one,
  round after round, so machine noise hits them alike; the ratio to AdamW;
* **refresh cost**, separately: Shampoo's steady step is timed with the inverse roots never
  recomputed (``preconditioning_compute_steps`` huge) and with them recomputed every step (``= 1``);
  SOAP's with the eigenbasis never refreshed and refreshed every step (``precondition_frequency``);
  the difference is the cost of one refresh. Amortized over ``f`` steps it adds ``refresh / f`` to
  the steady step, and the script prints the frequency ``f`` at which that equals one AdamW step;
* **optimizer-state bytes** (all arrays of the state; torch: its ``state_dict`` tensors).

    python benchmarks/bench_preconditioners.py            # 6 matrices of 512 x 512
    python benchmarks/bench_preconditioners.py --quick    # 3 matrices of 64 x 64, seconds
    python benchmarks/bench_preconditioners.py --size 1024 --layers 4 --rounds 7

Every library runs on JAX's default device (torch on CUDA when JAX does and torch can). The numbers
of a shared machine are noisy; the ratios from interleaved rounds are the meaningful part.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from optcompose._base import apply_updates  # noqa: E402
from optcompose.contrib import muon as optcompose_muon  # noqa: E402
from optcompose.optimizers import adamw  # noqa: E402
from optcompose.optimizers._preconditioned import shampoo, soap  # noqa: E402

NEVER = 2**30
"""A refresh period no run reaches: the roots / bases of the first update stay."""


def _params(layers: int, size: int, seed: int = 0) -> dict[str, jax.Array]:
    rng = np.random.default_rng(seed)
    return {f"w{i}": jnp.asarray(rng.normal(size=(size, size)) / np.sqrt(size), jnp.float32) for i in range(layers)}


def _state_bytes(state: Any) -> int:
    return int(sum(np.asarray(x).nbytes for x in jax.tree.leaves(state) if hasattr(x, "dtype")))


class JaxRunner:
    """A jitted ``(params, state) -> (params, state)`` step with fixed gradients, params and state donated."""

    def __init__(self, name: str, tx: Any, params: Any, grads: Any, warmup: int = 2):
        self.name = name
        self.params = jax.tree.map(jnp.copy, params)
        self.state = tx.init(self.params)
        self.grads = grads
        self.bytes = _state_bytes(self.state)

        def step(params, state, grads):
            updates, state = tx.update(grads, state, params)
            return apply_updates(params, updates), state

        self.step = jax.jit(step, donate_argnums=(0, 1))
        for _ in range(warmup):  # compile, and get past the first update (SOAP's eigh, the roots at count 0)
            self.run(1)

    def run(self, steps: int) -> float:
        start = time.perf_counter()
        for _ in range(steps):
            self.params, self.state = self.step(self.params, self.state, self.grads)
        jax.block_until_ready((self.params, self.state))
        return (time.perf_counter() - start) / steps


class TorchRunner:
    """``torch.optim.Muon`` on the same matrices (torch's ``(out, in)`` layout is irrelevant for squares)."""

    def __init__(self, name: str, params: Any, grads: Any, lr: float):
        import torch

        self.torch = torch
        device = "cuda" if jax.default_backend() == "gpu" and torch.cuda.is_available() else "cpu"
        self.tensors = [torch.tensor(np.asarray(p), device=device, requires_grad=True) for p in params.values()]
        for tensor, g in zip(self.tensors, grads.values(), strict=True):
            tensor.grad = torch.tensor(np.asarray(g), device=device)
        self.opt = torch.optim.Muon(self.tensors, lr=lr, weight_decay=0.0)
        self.run(2)
        self.bytes = int(
            sum(t.numel() * t.element_size() for s in self.opt.state.values() for t in s.values() if torch.is_tensor(t))
        )
        self.name = name

    def run(self, steps: int) -> float:
        sync = self.torch.cuda.synchronize if self.tensors[0].is_cuda else (lambda: None)
        start = time.perf_counter()
        with self.torch.no_grad():
            for _ in range(steps):
                self.opt.step()
        sync()
        return (time.perf_counter() - start) / steps


def _optax_muon(lr: float):
    import optax

    return optax.contrib.muon(lr)


def build(layers: int, size: int) -> tuple[list[Any], dict[str, Callable[[], Any]]]:
    params = _params(layers, size)
    grads = _params(layers, size, seed=1)
    lr = 1e-3
    configs: dict[str, Callable[[], Any]] = {
        "adamw (optcompose)": lambda: JaxRunner("adamw (optcompose)", adamw(lr, weight_decay=0.0), params, grads),
        "muon (optcompose)": lambda: JaxRunner("muon (optcompose)", optcompose_muon(lr), params, grads),
        "muon (optax.contrib)": lambda: JaxRunner("muon (optax.contrib)", _optax_muon(lr), params, grads),
        "muon (torch.optim)": lambda: TorchRunner("muon (torch.optim)", params, grads, lr),
        "shampoo, roots kept": lambda: JaxRunner(
            "shampoo, roots kept",
            shampoo(lr, start_preconditioning_step=0, preconditioning_compute_steps=NEVER),
            params,
            grads,
        ),  # fmt: skip
        "shampoo, roots every step": lambda: JaxRunner(
            "shampoo, roots every step", shampoo(lr, start_preconditioning_step=0), params, grads
        ),
        "soap, basis kept": lambda: JaxRunner(
            "soap, basis kept", soap(lr, precondition_frequency=NEVER), params, grads
        ),
        "soap, refresh every step": lambda: JaxRunner(
            "soap, refresh every step", soap(lr, precondition_frequency=1), params, grads
        ),
    }
    return [params, grads], configs


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="3 matrices of 64 x 64, 3 rounds")
    parser.add_argument("--layers", type=int, default=6)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=3, help="steps per optimizer per round")
    args = parser.parse_args(argv)
    if args.quick:
        args.layers, args.size, args.rounds, args.steps = 3, 64, 3, 3
    _, configs = build(args.layers, args.size)
    runners = []
    for name, make in configs.items():
        try:
            runners.append(make())
        except Exception as error:  # an optional library missing: say so, time the others
            print(f"skipped {name}: {type(error).__name__}: {error}")
    times: dict[str, list[float]] = {r.name: [] for r in runners}
    for _ in range(args.rounds):
        for runner in runners:
            times[runner.name].append(runner.run(args.steps))
    median = {name: statistics.median(ts) for name, ts in times.items()}
    best = {name: min(ts) for name, ts in times.items()}
    unit = median["adamw (optcompose)"]
    print(
        f"\n{args.layers} matrices of {args.size} x {args.size} (float32), {jax.default_backend()}, "
        f"{args.rounds} rounds x {args.steps} steps, interleaved; ms per step"
    )
    print("| optimizer | median ms | min ms | x AdamW | state MiB |\n| --- | ---: | ---: | ---: | ---: |")
    for runner in runners:
        name = runner.name
        print(
            f"| {name} | {1e3 * median[name]:.2f} | {1e3 * best[name]:.2f} | {median[name] / unit:.2f} | "
            f"{runner.bytes / 2**20:.2f} |"
        )
    results: dict[str, Any] = {"median_s": median, "min_s": best, "adamw_s": unit}
    print("\n| refresh | cost ms (every step - kept) | x AdamW step | amortized = 1 AdamW step at every |")
    print("| --- | ---: | ---: | ---: |")
    for label, kept, every in [
        ("Shampoo inverse roots (eigh)", "shampoo, roots kept", "shampoo, roots every step"),
        ("SOAP eigenbasis (power step + QR)", "soap, basis kept", "soap, refresh every step"),
    ]:
        if kept not in median or every not in median:
            continue
        cost = max(median[every] - median[kept], 0.0)
        period = cost / unit
        results[label] = {"refresh_s": cost, "break_even_frequency": period}
        print(f"| {label} | {1e3 * cost:.2f} | {cost / unit:.2f} | {period:.1f} steps |")
    return results


if __name__ == "__main__":
    main()
