"""``python -m optcompose.arena.calibrate``: set the workloads' targets (AlgoPerf's target-setting protocol).

For each workload and each of the four baselines (AdamW, NAdamW, Nesterov, heavy ball):

1. **tune**: ``--trials`` (default 16) configurations from the baseline's search space, scrambled
   Halton points with search seed 1 (the arena's own tuned ruleset uses seed 0, so the targets are
   not set on the points the arena will try), all on tuning seed 1000, with the workload's
   ``target_setting_steps`` (3/4 of the arena's budget, as AlgoPerf gives submissions a third more
   runtime than the target-setting runs); keep the configuration with the lowest best validation
   metric;
2. **confirm**: rerun that configuration on ``--seeds`` (default 16) fresh seeds, 1001 onwards,
   and take the median over seeds of the best validation metric each run reached.

The target is the lowest of the four medians (the best baseline's), stored in
``optcompose/arena/_targets.json`` with the winning baseline, its hyperparameters, every
baseline's median and the versions used. AlgoPerf tunes with 200 trials and confirms with 20
seeds; the defaults here are sized for a CPU. Both steps of one baseline share one compiled
vmapped program (the same trial count), so a workload costs four compilations.

Usage::

    python -m optcompose.arena.calibrate                    # every workload, rewrite _targets.json
    python -m optcompose.arena.calibrate --workloads ravine --trials 16 --seeds 16
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from optcompose.arena import _rulesets as rs
from optcompose.arena import _run as driver
from optcompose.arena import _sweep as sw
from optcompose.arena import _workloads as wl

CALIBRATION_SEARCH_SEED = 1
TUNING_SEED = 1000
DEFAULT_TRIALS = 16
DEFAULT_SEEDS = 16


def calibrate_workload(
    workload: wl.Workload,
    trials: int = DEFAULT_TRIALS,
    seeds: int = DEFAULT_SEEDS,
    compiler_options: Any = None,
    log: Any = None,
) -> dict[str, Any]:
    """The target of one workload and how it was found (see the module docstring)."""
    steps = workload.target_setting_steps
    per_baseline: dict[str, Any] = {}
    for name, sub in rs.BASELINES.items():
        start = time.perf_counter()
        configs = rs.sample_configs(sub.search_space, trials, seed=CALIBRATION_SEARCH_SEED)
        common = dict(
            target=-np.inf, keep_params=False, compiler_options=compiler_options, cache_key=f"calibrate:{name}"
        )
        try:
            tuning = sw.run_trials(workload, sub.build, [(c, TUNING_SEED) for c in configs], steps, **common)
            ranked = sorted(tuning.trials, key=lambda t: (t.error is not None, t.best_valid, t.final_valid))
            best = ranked[0].config
            confirm_seeds = list(range(TUNING_SEED + 1, TUNING_SEED + 1 + seeds))
            confirm = sw.run_trials(workload, sub.build, [(best, s) for s in confirm_seeds], steps, **common)
        except Exception as error:  # noqa: BLE001 - one baseline failing leaves the others
            per_baseline[name] = {"error": sw._error_text(error)}
            continue
        bests = [t.best_valid for t in confirm.trials]
        per_baseline[name] = {
            "median_best_valid": float(np.median(bests)),
            "hyperparams": dict(best),
            "best_valid_per_seed": [float(f"{b:.6g}") for b in bests],
            "tuning_best_valid": float(f"{ranked[0].best_valid:.6g}"),
            "seconds": round(time.perf_counter() - start, 1),
        }
        if log:
            log(
                f"  {workload.name} {name}: median best {per_baseline[name]['median_best_valid']:.5g} "
                f"({per_baseline[name]['seconds']} s)"
            )
    finite = {k: v for k, v in per_baseline.items() if "median_best_valid" in v and np.isfinite(v["median_best_valid"])}
    if not finite:
        raise RuntimeError(f"no baseline produced a finite validation metric on {workload.name}")
    winner = min(finite, key=lambda k: finite[k]["median_best_valid"])
    return {
        # Unrounded: an error rate target is exactly k / n, and rounding it down would make a run
        # that matches it exactly miss it.
        "target": float(finite[winner]["median_best_valid"]),
        "metric": workload.metric,
        "baseline": winner,
        "hyperparams": finite[winner]["hyperparams"],
        "target_setting_steps": steps,
        "arena_max_steps": workload.max_steps,
        "eval_every": workload.eval_every,
        "tuning_seed": TUNING_SEED,
        "confirm_seeds": [TUNING_SEED + 1, TUNING_SEED + seeds],
        "trials": trials,
        "baselines": per_baseline,
    }


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m optcompose.arena.calibrate", description=__doc__.split("\n")[0])
    p.add_argument("--workloads", default=None, help="comma-separated names (default: all)")
    p.add_argument("--trials", type=int, default=DEFAULT_TRIALS, help="tuning trials per baseline")
    p.add_argument("--seeds", type=int, default=DEFAULT_SEEDS, help="confirmation seeds")
    p.add_argument("--out", default=str(Path(wl.__file__).with_name(wl.TARGETS_FILE)), help="the targets file")
    p.add_argument("--optimized-compile", action="store_true", help="compile at XLA's default optimisation level")
    args = p.parse_args(argv)
    workloads = driver.resolve_workloads(args.workloads)
    path = Path(args.out)
    document: dict[str, Any] = {}
    if path.is_file():
        import json

        document = json.loads(path.read_text())
    entries = dict(document.get("workloads", {}))
    options = None if args.optimized_compile else driver.FAST_COMPILE
    log = lambda line: print(line, file=sys.stderr, flush=True)
    from optcompose.arena._report import write_json

    env = driver.environment()
    command = "python -m optcompose.arena.calibrate " + " ".join(argv if argv is not None else sys.argv[1:])
    for workload in workloads:
        start = time.perf_counter()
        entry = calibrate_workload(workload, args.trials, args.seeds, options, log)
        entry["calibrated_by"] = command.strip()
        entry["date"] = env["date"]
        entries[workload.name] = entry
        log(f"{workload.name}: target {entry['target']} by {entry['baseline']} ({time.perf_counter() - start:.0f} s)")
        document = {
            "generated_by": "python -m optcompose.arena.calibrate (optcompose/arena/calibrate.py)",
            "method": "per baseline: best of N scrambled-Halton trials (search seed 1) on seed 1000 by best "
                      "validation metric, rerun on M seeds; target = lowest median over seeds of the best "
                      "validation metric (AlgoPerf's target-setting protocol at small scale)",
            "environment": {k: env[k] for k in ("platform", "processor", "cpu_count", "backend", "versions")},
            "compile": "optimized" if args.optimized_compile else f"fast ({driver.FAST_COMPILE})",
            "workloads": {w: entries[w] for w in wl.WORKLOADS if w in entries},
        }
        write_json(path, document)  # after every workload, so an interrupted run keeps what it finished
    wl.targets_document.cache_clear()
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
