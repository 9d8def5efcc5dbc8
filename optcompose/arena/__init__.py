"""The arena: any optimizer scored against tuned baselines on real small workloads, in one command.

A laptop-scale version of the MLCommons AlgoPerf training-algorithms benchmark (Dahl et al. 2023):

* **workloads** (:data:`WORKLOADS`): eight small problems, each with a validation metric (lower
  is better) and a target, made in code or from scikit-learn's bundled digits;
* **targets**: as AlgoPerf, the median over seeds of the best validation metric of the best
  *tuned* baseline (AdamW, NAdamW, Nesterov, heavy ball), computed by
  ``python -m optcompose.arena.calibrate`` and stored in ``_targets.json`` with how it was made;
* **rulesets** (:data:`RULESETS`): ``defaults``, ``tuned`` (quasi-random search, a fixed trial
  budget per study), ``self-tuning`` (no hyperparameters, 1.5x the steps);
* **scores**: steps and wall time to target per workload, the AlgoPerf performance-profile score
  and the geometric-mean speedup over NAdamW, with sharpness measures next to the test metric;
* **sweeps compile once**: the trials of a sweep run through ``jax.vmap`` over the hyperparameters
  that live in the optimizer state, one compiled program per workload and optimizer.

From Python::

    import optcompose.arena as arena
    board = arena.run(["adamw", "my_opt.py:make_opt"], workloads="mlp_digits,ravine", ruleset="tuned", seeds=3)

From the shell: ``python -m optcompose.arena --optimizer my_opt.py:make_opt --ruleset tuned``
(``--help`` lists the options). See ``docs/arena.md`` for the method and measured results.

Bring your own optimizer: a function mapping hyperparameters (keywords) to a
``GradientTransformation``. Give it a ``search_space`` attribute (or put a module-level
``SEARCH_SPACE`` dict in its file) to be tuned like the baselines::

    def make_opt(learning_rate=1e-3, b1=0.9, weight_decay=1e-4, total_steps=1000):
        ...
    make_opt.search_space = {"learning_rate": ("log", 1e-4, 1e-1), "b1": ("one_minus_log", 1e-2, 0.3),
                             "weight_decay": ("log", 1e-6, 1e-1)}

A ``total_steps`` keyword, if the function has one, receives the run's step budget.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from optcompose.arena._rulesets import (
    BASELINES,
    LIBRARY_CANDIDATES,
    REFERENCE,
    RULESETS,
    Choice,
    Fixed,
    LogUniform,
    OneMinusLogUniform,
    Submission,
    Uniform,
    all_submissions,
    halton,
    library_submissions,
    sample_configs,
    study_configs,
)
from optcompose.arena._run import load_submission, resolve_submissions, resolve_workloads
from optcompose.arena._scoring import (
    geomean_speedup,
    median_spread,
    performance_profile,
    performance_ratios,
    profile_score,
    select_trial,
)
from optcompose.arena._sweep import SweepResult, TrialResult, run_trials, sweep_speedup
from optcompose.arena._workloads import WORKLOADS, Workload, get_workload, load_targets

__all__ = [
    "run",
    "run_trials",
    "sweep_speedup",
    "Submission",
    "Workload",
    "WORKLOADS",
    "get_workload",
    "BASELINES",
    "REFERENCE",
    "RULESETS",
    "LIBRARY_CANDIDATES",
    "all_submissions",
    "library_submissions",
    "load_submission",
    "resolve_submissions",
    "resolve_workloads",
    "load_targets",
    "LogUniform",
    "Uniform",
    "OneMinusLogUniform",
    "Choice",
    "Fixed",
    "halton",
    "sample_configs",
    "study_configs",
    "performance_ratios",
    "performance_profile",
    "profile_score",
    "geomean_speedup",
    "median_spread",
    "select_trial",
    "TrialResult",
    "SweepResult",
]


def run(
    optimizers: Any = None,
    workloads: Any = None,
    ruleset: str | Sequence[str] = "tuned",
    seeds: int | Sequence[int] = 3,
    *,
    trials: int = 5,
    quick: bool = False,
    out: str | Path | None = "results/arena",
    baselines: bool = True,
    progress: bool = True,
    plots: bool = True,
    fast_compile: bool = True,
    measure_sweep_speedup: bool = False,
    workers: int = 1,
    log: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Runs the arena and writes its report; returns the leaderboard (a dict, as ``leaderboard.json``).

    Args:
        optimizers: ``None`` for the baselines and every optimizer optcompose has; else names
            (``"NAdamW"``, ``"adamw"``), ``"file.py:fn"`` / ``"module:fn"`` specs, callables
            ``make_opt(**hyperparameters)``, ``Submission``s, or a mapping name -> callable.
        workloads: ``None`` for all, else names (a list or a comma-separated string).
        ruleset: ``"defaults"``, ``"tuned"`` or ``"self-tuning"``, or several (each gets a
            subdirectory of ``out``; the result is then ``{"rulesets": {name: leaderboard}}``).
        seeds: the number of studies (seeds ``0 .. N-1``) or the seeds themselves.
        trials: trials per study in the tuned ruleset (AlgoPerf: 5).
        quick: a tiny budget (smoke runs; targets are rarely reached).
        out: the output directory (``None``: write nothing).
        baselines: add the four baselines to the given optimizers (they are the speedup
            reference and the other entries' yardstick).
        progress: a progress bar per workload (tqdm if installed, else plain lines).
        plots: write PNG plots (needs matplotlib).
        fast_compile: compile at XLA's backend optimisation level 1 (the default: on these small
            CPU workloads compilation dominates, and level 1 compiles 1.5-2x faster than XLA's
            default at the same step speed). ``False`` uses XLA's default pipeline.
        measure_sweep_speedup: also time a 16-trial learning-rate sweep on ``mlp_digits`` three
            ways (vmapped, one by one, a recompile per trial) and report it.
        workers: worker processes, each running whole workloads (all rulesets and optimizers of a
            workload stay in one process); needs optimizers given by name or file spec.
        log: where to print one line per finished workload (``None``: nowhere).
    """
    from optcompose.arena import _report
    from optcompose.arena import _run as driver

    rulesets = [ruleset] if isinstance(ruleset, str) else list(ruleset)
    rulesets = [r.strip() for item in rulesets for r in item.split(",") if r.strip()]
    for r in rulesets:
        if r not in RULESETS:
            raise ValueError(f"unknown ruleset {r!r}; use one of {RULESETS}")
    seed_list = list(range(int(seeds))) if isinstance(seeds, int) else [int(s) for s in seeds]
    if not seed_list:
        raise ValueError("at least one seed is needed")
    submissions = resolve_submissions(optimizers, baselines=baselines)
    workload_list = resolve_workloads(workloads)
    options = driver.FAST_COMPILE if fast_compile else None
    speedup = None
    if measure_sweep_speedup:
        speedup = sweep_speedup(
            "mlp_digits", steps=get_workload("mlp_digits").quick_steps if quick else None, compiler_options=options
        )
    boards: dict[str, Any] = {}
    out_dir = None if out is None else Path(out)
    environment = driver.environment()
    start = time.perf_counter()
    all_outcomes = driver.run_all(submissions, workload_list, rulesets, seed_list, trials=trials, quick=quick,
                                  progress=progress, compiler_options=options, log=log, workers=workers)
    elapsed = time.perf_counter() - start
    for r in rulesets:
        outcomes = all_outcomes[r]
        meta = {
            "seeds": seed_list,
            "trials_per_study": trials if r == "tuned" else 1,
            "quick": quick,
            "fast_compile": fast_compile,
            "workers": workers,
            "arena_s": round(elapsed, 1),
            "environment": environment,
        }
        board = driver.leaderboard(outcomes, r, meta)
        if speedup is not None:
            board["sweep_speedup"] = speedup
        boards[r] = board
        if out_dir is not None:
            target = out_dir if len(rulesets) == 1 else out_dir / r
            _report.write_report(board, driver.curves(outcomes), target, plots=plots)
    if len(rulesets) == 1:
        return boards[rulesets[0]]
    combined = {"rulesets": boards}
    if out_dir is not None:
        _report.write_json(out_dir / "leaderboard.json", combined)
        index = ["# optcompose arena", ""] + [f"- [`{r}`]({r}/leaderboard.md)" for r in rulesets]
        (out_dir / "leaderboard.md").write_text("\n".join(index) + "\n")
    return combined


def __dir__() -> list[str]:
    return sorted(__all__)
