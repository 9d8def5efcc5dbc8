"""Every optimizer Optax also has, side by side with Optax's: one step's time, interleaved, in one run.

For each name in both libraries (the optimizer aliases of ``optax`` and ``optax.contrib`` that take a
learning rate first, plus ``nadam``/``nadamw``), both are built with ``learning_rate=1e-3`` and
otherwise their defaults, which are the same. Each library's step is ``tx.update`` then
``apply_updates`` under ``jax.jit`` with parameters and state donated, as in a training loop; for
optcompose also ``optcompose.step`` where a one-pass kernel applies (``kernel_applies``). The
steps run interleaved (every runner a few steps, then the next, round after round, who goes
first alternating), so machine noise hits both libraries alike; the table gives the median step
time, the ratio to Optax, the compile time of each, and XLA's count of the bytes each step reads
and writes per parameter.

    python benchmarks/bench_all_optimizers.py                 # mini GPT (2 blocks, d=256): 28 leaves, 2.7M params
    python benchmarks/bench_all_optimizers.py --case resnet   # ResNet-50 layout at width 16: 161 leaves, 2.0M
    python benchmarks/bench_all_optimizers.py --only adam,lion,muon --rounds 9
    python benchmarks/bench_all_optimizers.py --quick         # tiny tree, one round (used by the tests)

Names that need more than gradients to step get what they need from a stand-in loss
``f(w) = 1/2 sum w^2 / n`` (``n`` parameters), computed inside the timed step as a training loop
would: ``lbfgs`` its value, gradient and ``value_fn`` (its zoom line search evaluates ``f``),
``polyak_sgd``, ``momo`` and ``momo_adam`` the value, ``sophia`` ``obj_fn`` (a Hutchinson
Hessian-vector product per step), ``dpsgd`` per-example gradients (4 examples, so 4x the
gradient bytes). Both libraries get the same inputs.
"""

from __future__ import annotations

import argparse
import gc
import inspect
import json
import os
import statistics
import sys
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import pytrees  # noqa: E402

import optcompose  # noqa: E402
import optcompose.contrib  # noqa: E402
from optcompose.speed._step import kernel_applies  # noqa: E402
from optcompose.speed._step import step as optcompose_step  # noqa: E402

LEARNING_RATE = 1e-3


def stand_in_loss(params: Any) -> jax.Array:
    """``1/2 sum w^2 / n``: the loss whose value, gradient or Hessian some optimizers take."""
    leaves = jax.tree.leaves(params)
    n = sum(int(np.size(x)) for x in leaves)
    return 0.5 * sum(jnp.sum(jnp.square(x)) for x in leaves) / n


PER_EXAMPLE = 4
EXTRA_INPUTS = {
    "lbfgs": lambda p, g: {"value": stand_in_loss(p), "grad": g, "value_fn": stand_in_loss},
    "polyak_sgd": lambda p, g: {"value": stand_in_loss(p)},
    "momo": lambda p, g: {"value": stand_in_loss(p)},
    "momo_adam": lambda p, g: {"value": stand_in_loss(p)},
    "sophia": lambda p, g: {"obj_fn": stand_in_loss},
}
"""Keyword arguments of ``update`` (from the parameters and gradients) for the optimizers that need them."""
BUILD_ARGS = {"dpsgd": {"l2_norm_clip": 1.0, "noise_multiplier": 1.0, "seed": 0}}
EXPLICIT_NAMES = (("", "polyak_sgd"),)  # takes the value, and its first argument is max_learning_rate

NOT_OPTIMIZERS = {"scale_by_learning_rate", "scale_by_rprop", "scale_by_madgrad"}  # transforms, not aliases
EXTRA_NAMES = ("nadam", "nadamw")  # learning_rate first too, but Optax defines them with functools.partial

CASES = {
    "gpt": lambda: pytrees.gpt2_small(n_layer=2, d_model=256, vocab=4096, n_ctx=256),
    "resnet": lambda: pytrees.resnet50(width=16),
}
QUICK_CASE = lambda: pytrees.gpt2_small(n_layer=1, d_model=16, vocab=64, n_ctx=8)  # noqa: E731


def optimizer_names() -> list[tuple[str, str]]:
    """``(namespace, name)`` for every optimizer both libraries have: ``""`` top level, ``"contrib"``."""
    import optax
    import optax.contrib

    found = []
    for namespace, theirs, ours in (("", optax, optcompose), ("contrib", optax.contrib, optcompose.contrib)):
        for name in sorted(dir(theirs)):
            function = getattr(theirs, name)
            if name.startswith("_") or name in NOT_OPTIMIZERS or name not in dir(ours):
                continue
            if namespace == "" and name in EXTRA_NAMES:
                found.append((namespace, name))
                continue
            if not inspect.isfunction(function):
                continue
            try:
                first = next(iter(inspect.signature(function).parameters), None)
            except (TypeError, ValueError):
                continue
            if first == "learning_rate":
                found.append((namespace, name))
    have = set(found)
    found += [(ns, n) for ns, n in EXPLICIT_NAMES if (ns, n) not in have and hasattr(optcompose, n)]
    return found


def bytes_per_param(compiled: Any, params: Any) -> float:
    """XLA's estimate of the memory one call reads and writes (``cost_analysis()["bytes accessed"]``),
    per parameter: deterministic, unlike a time, so tests can hold it (a stored-and-reread
    intermediate costs 8 bytes per parameter)."""
    analysis = compiled.cost_analysis()
    analysis = analysis[0] if isinstance(analysis, list | tuple) else analysis
    n = sum(int(np.size(x)) for x in jax.tree.leaves(params))
    return float(analysis.get("bytes accessed", float("nan"))) / max(1, n)


class Runner:
    """One compiled, donated step of one optimizer; ``run()`` does ``steps`` steps and records each."""

    def __init__(
        self,
        label: str,
        tx: Any,
        apply: Any,
        params: Any,
        grads: Any,
        use_step: bool = False,
        extra: Any = None,
        per_example: bool = False,
    ):
        self.label = label
        if per_example:  # dpsgd: a leading axis of examples, each its own gradient
            grads = jax.tree.map(lambda g: jnp.stack([g * (1.0 + 0.25 * i) for i in range(PER_EXAMPLE)]), grads)
        self.grads = grads
        self.params = jax.tree.map(jnp.copy, params)
        # Some states hold the parameters themselves (cocob, dog, prodigy, ...): copy, so each donated
        # buffer is donated once.
        self.state = jax.tree.map(jnp.copy, tx.init(self.params))

        def one(p, s, g):
            kwargs = {} if extra is None else extra(p, g)
            if use_step:
                return optcompose_step(tx, g, s, p, **kwargs)
            updates, s = tx.update(g, s, p, **kwargs)
            return apply(p, updates), s

        start = time.perf_counter()
        self.compiled = jax.jit(one, donate_argnums=(0, 1)).lower(self.params, self.state, grads).compile()
        self.compile_s = time.perf_counter() - start
        self.bytes_per_param = bytes_per_param(self.compiled, params)
        self.times: list[float] = []
        self.run(1, record=False)  # warm-up

    def run(self, steps: int, record: bool = True) -> None:
        for _ in range(steps):
            start = time.perf_counter()
            self.params, self.state = self.compiled(self.params, self.state, self.grads)
            jax.block_until_ready((self.params, self.state))
            if record:
                self.times.append(time.perf_counter() - start)

    @property
    def median_ms(self) -> float:
        return statistics.median(self.times) * 1e3


def build(namespace: str, name: str):
    import optax
    import optax.contrib

    kwargs = BUILD_ARGS.get(name, {})
    ours = getattr(optcompose.contrib if namespace else optcompose, name)(LEARNING_RATE, **kwargs)
    theirs = getattr(optax.contrib if namespace else optax, name)(LEARNING_RATE, **kwargs)
    return ours, theirs


def main(argv: list[str] | None = None) -> dict:
    import optax

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--case", default="gpt", choices=sorted(CASES))
    parser.add_argument("--only", default=None, help="comma-separated optimizer names")
    parser.add_argument("--rounds", type=int, default=None, help="interleaved rounds (default 7; 1 with --quick)")
    parser.add_argument("--steps", type=int, default=2, help="timed steps per runner per round")
    parser.add_argument("--quick", action="store_true", help="a tiny pytree and one round (seconds per optimizer)")
    parser.add_argument("--json", default=None, help="also write the results to this file")
    args = parser.parse_args(argv)
    rounds = args.rounds or (1 if args.quick else 7)

    shapes = QUICK_CASE() if args.quick else CASES[args.case]()
    leaves, n_params = pytrees.describe(shapes)
    treedef = jax.tree.structure(shapes, is_leaf=lambda x: isinstance(x, tuple))
    shape_list = jax.tree.leaves(shapes, is_leaf=lambda x: isinstance(x, tuple))
    rng = np.random.default_rng(0)
    params = treedef.unflatten([jnp.asarray(rng.standard_normal(s, dtype=np.float32) * 0.02) for s in shape_list])
    grads = treedef.unflatten([jnp.asarray(rng.standard_normal(s, dtype=np.float32) * 1e-3) for s in shape_list])

    names = optimizer_names()
    if args.only:
        wanted = set(args.only.split(","))
        names = [(ns, n) for ns, n in names if n in wanted]

    runners: dict[str, list[Runner]] = {}
    failed: dict[str, str] = {}
    for namespace, name in names:
        label = f"contrib.{name}" if namespace else name
        try:
            ours, theirs = build(namespace, name)
            inputs = {"extra": EXTRA_INPUTS.get(name), "per_example": name == "dpsgd"}
            group = [
                Runner("optcompose", ours, optcompose.apply_updates, params, grads, **inputs),
                Runner("optax", theirs, optax.apply_updates, params, grads, **inputs),
            ]
            if kernel_applies(ours):
                group.append(Runner("optcompose step", ours, None, params, grads, use_step=True, **inputs))
            runners[label] = group
        except Exception as err:  # recorded and printed, never hidden
            failed[label] = f"{type(err).__name__}: {str(err).splitlines()[0][:160]}"
        print(f"compiled {label}", file=sys.stderr, flush=True)

    for round_ in range(rounds):
        for group in runners.values():
            # Who goes first alternates from round to round: the first runner after another
            # optimizer's group meets colder caches, and that must not favour either library.
            shift = round_ % len(group)
            for runner in group[shift:] + group[:shift]:
                runner.run(args.steps)

    results = {
        "case": "quick" if args.quick else args.case,
        "leaves": leaves,
        "params": n_params,
        "rounds": rounds,
        "optimizers": {
            label: {
                r.label: {"step_ms": r.median_ms, "compile_s": r.compile_s, "bytes_per_param": r.bytes_per_param}
                for r in group
            }
            for label, group in runners.items()
        },
        "failed": failed,
    }
    print(format_results(results))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)
    for group in runners.values():
        for runner in group:
            del runner.compiled, runner.params, runner.state
    gc.collect()
    return results


def format_results(results: dict) -> str:
    lines = [
        f"{results['case']}: {results['leaves']} leaves, {results['params'] / 1e6:.2f}M params, "
        f"{results['rounds']} interleaved rounds; {jax.default_backend()}, jax {jax.__version__}",
        f"{'optimizer':<28}{'optcompose ms':>15}{'optax ms':>10}{'ratio':>8}{'step ms':>9}{'step ratio':>11}"
        f"{'compile s (ours/optax)':>24}{'bytes/param (ours/optax)':>26}",
    ]
    ratios = []
    for label, libs in results["optimizers"].items():
        ours, theirs = libs["optcompose"], libs["optax"]
        ratio = ours["step_ms"] / theirs["step_ms"]
        ratios.append(ratio)
        kernel = libs.get("optcompose step")
        step_cols = f"{kernel['step_ms']:>9.2f}{kernel['step_ms'] / theirs['step_ms']:>10.2f}x" if kernel else " " * 20
        lines.append(
            f"{label:<28}{ours['step_ms']:>15.2f}{theirs['step_ms']:>10.2f}{ratio:>7.2f}x{step_cols}"
            f"{ours['compile_s']:>13.2f} / {theirs['compile_s']:<8.2f}"
            f"{ours['bytes_per_param']:>13.1f} / {theirs['bytes_per_param']:.1f}"
        )
    if ratios:
        geo = float(np.exp(np.mean(np.log(ratios))))
        lines.append(f"geometric mean ratio (update + apply) {geo:.3f}x; worst {max(ratios):.2f}x; "
                     f"{sum(r > 1.05 for r in ratios)} of {len(ratios)} above 1.05x")  # fmt: skip
    for label, why in results["failed"].items():
        lines.append(f"FAILED {label}: {why}")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
