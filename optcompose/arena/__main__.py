"""``python -m optcompose.arena``: run the arena from the shell.

Examples::

    python -m optcompose.arena --quick                              # every optimizer, tiny budget
    python -m optcompose.arena --optimizer my_opt.py:make_opt       # yours against the baselines, tuned
    python -m optcompose.arena --ruleset defaults,tuned --seeds 3 --out results/arena
    python -m optcompose.arena --workloads mlp_digits,ravine --optimizer adamw --ruleset defaults
    python -m optcompose.arena --list                               # workloads, optimizers, targets
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m optcompose.arena",
        description="Score optimizers against tuned baselines on small workloads (AlgoPerf's method at laptop scale).",
    )
    p.add_argument(
        "--optimizer",
        action="append",
        default=None,
        metavar="SPEC",
        help="an optimizer: 'file.py:make_opt', 'module:make_opt', a baseline name (NAdamW) or a library "
        "name (adamw, oc.adamw); repeat or comma-separate for several. Default: the baselines and "
        "every optimizer optcompose has",
    )
    p.add_argument("--no-baselines", action="store_true", help="do not add the four baselines to the --optimizer list")
    p.add_argument("--workloads", default=None, help="comma-separated workload names (default: all)")
    p.add_argument("--ruleset", default="tuned", help="defaults, tuned or self-tuning; comma-separate for several")
    p.add_argument("--seeds", type=int, default=3, help="studies (seeds 0..N-1), default 3")
    p.add_argument("--trials", type=int, default=5, help="trials per study in the tuned ruleset, default 5")
    p.add_argument("--quick", action="store_true", help="a tiny budget, for smoke tests")
    p.add_argument("--out", default="results/arena", help="output directory, default results/arena")
    p.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument(
        "--optimized-compile",
        action="store_true",
        help="compile at XLA's default optimisation level (default: level 1, faster to compile)",
    )
    p.add_argument(
        "--sweep-speedup",
        action="store_true",
        help="also time a 16-trial learning-rate sweep vmapped vs one by one vs a recompile per trial",
    )
    p.add_argument("--workers", type=int, default=1,
                   help="worker processes, one workload at a time each (default 1)")
    p.add_argument("--list", action="store_true", help="list workloads (with targets) and optimizers, then exit")
    return p


def _list() -> None:
    from optcompose.arena import WORKLOADS, all_submissions

    print("workloads:")
    for w in WORKLOADS.values():
        print(f"  {w.name:20s} target {w.target!s:>10s}  {w.max_steps:5d} steps  {w.metric}")
    print("optimizers:")
    for name, sub in all_submissions().items():
        print(f"  {name:12s} {'baseline ' if sub.baseline else ''}{sub.description}")


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.list:
        _list()
        return 0
    from optcompose import arena

    optimizers = None
    if args.optimizer:
        optimizers = [x.strip() for item in args.optimizer for x in item.split(",") if x.strip()]
    board = arena.run(
        optimizers,
        workloads=args.workloads,
        ruleset=args.ruleset,
        seeds=args.seeds,
        trials=args.trials,
        quick=args.quick,
        out=args.out,
        baselines=not args.no_baselines,
        progress=not args.no_progress,
        plots=not args.no_plots,
        fast_compile=not args.optimized_compile,
        measure_sweep_speedup=args.sweep_speedup,
        workers=args.workers,
        log=lambda line: print(line, file=sys.stderr, flush=True),
    )
    boards = board["rulesets"] if "rulesets" in board else {board["ruleset"]: board}
    for name, b in boards.items():
        print(f"\n{name}: ranking (score on wall time / on steps, geomean speedup vs {b.get('reference')})")
        for rank, opt in enumerate(b["ranking"], 1):
            row = b["optimizers"][opt]
            print(
                f"  {rank:2d}. {opt:14s} score {row['score']:.3f} / {row['score_steps']:.3f}  "
                f"speedup {row.get('geomean_speedup')}  reached {row['reached']}/{len(b['workloads'])}"
            )
    print(f"\nwrote {args.out}/leaderboard.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
