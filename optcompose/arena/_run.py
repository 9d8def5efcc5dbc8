"""The arena's driver: every submission on every workload under a ruleset, scored and reported.

For one (workload, submission) pair under a ruleset:

1. the ruleset gives each study (one per seed) its configurations (``Submission.configs``);
2. one trial per study (``defaults``, ``self-tuning``) runs through the single-trial program, one
   after another, timed chunk by chunk; several (``tuned``) run together as one vmapped sweep;
3. each study selects its trial (:func:`~optcompose.arena._scoring.select_trial`); in a vmapped
   sweep the selected trials that reached the target are *replayed* alone through the single-trial
   program, timed, stopping at the target (AlgoPerf reruns the selected trials on the scoring
   hardware), so every time to target is one trial's own wall time, compilation excluded;
4. the selected trials' final parameters are measured (test metric, sharpness, box sharpness);
5. medians over studies, with min/max spreads, go to the leaderboard.

Compiled programs are kept per (workload, submission, program), so a process that runs several
rulesets compiles each single-trial program once.
"""

from __future__ import annotations

import dataclasses
import datetime
import importlib
import importlib.util
import inspect
import math
import os
import platform
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import jax
import numpy as np

from optcompose.arena import _rulesets as rs
from optcompose.arena import _scoring as sc
from optcompose.arena import _sweep as sw
from optcompose.arena import _workloads as wl

FAST_COMPILE = {"xla_backend_optimization_level": 1}
"""Compiler options of the arena's default ``fast_compile=True``: XLA's CPU backend at optimisation level 1.

On these small CPU workloads compilation dominates an arena run. Measured here (2 cores, jax 0.10):
level 1 compiles 1.5-2x faster than XLA's default (level 3) and runs the steps as fast; level 0
compiles slightly faster still but runs convolutions 4x slower."""


# ----------------------------------------------------------------------------------------------
# Submissions from names, callables and files
# ----------------------------------------------------------------------------------------------


def _from_callable(fn: Callable, name: str | None = None, module: Any = None) -> rs.Submission:
    """A submission from ``make_opt``: its ``search_space`` attribute, else its module's ``SEARCH_SPACE``."""
    space = getattr(fn, "search_space", None)
    if space is None and module is not None:
        space = getattr(module, "SEARCH_SPACE", None)
    defaults = getattr(fn, "defaults", None)
    if not isinstance(defaults, Mapping):
        defaults = {}
    name = getattr(fn, "arena_name", None) or name or getattr(fn, "__name__", "custom")
    doc = inspect.getdoc(fn) or ""
    eval_params = getattr(fn, "eval_params", None)
    return rs.Submission(
        str(name),
        fn,
        dict(space or {}),
        dict(defaults),
        description=doc.split("\n")[0],
        eval_params=eval_params if callable(eval_params) else None,
    )


def load_submission(spec: str) -> rs.Submission:
    """A submission from ``"path/to/file.py:function"`` or ``"package.module:function"``.

    The function maps hyperparameters (keywords) to a ``GradientTransformation``. Its search space
    for the tuned ruleset is ``function.search_space`` if set, else the file's module-level
    ``SEARCH_SPACE`` dict; without either, ``tuned`` runs it at its defaults. ``function.defaults``
    (a dict) overrides its signature defaults; ``function.arena_name`` names it on the leaderboard;
    ``function.eval_params`` (``(state, params) -> params``) is the point evaluated, where that is
    not the training parameters (as Schedule-Free's average).
    """
    if ":" not in spec:
        raise ValueError(f"a custom optimizer is given as 'file.py:function' or 'module:function', got {spec!r}")
    where, attribute = spec.rsplit(":", 1)
    if where.endswith(".py") or os.path.sep in where or Path(where).is_file():
        path = Path(where).expanduser().resolve()
        if not path.is_file():
            raise FileNotFoundError(f"no optimizer file {str(path)!r}")
        module_name = f"optcompose_arena_user_{path.stem}_{abs(hash(str(path))) % 10**8}"
        module_spec = importlib.util.spec_from_file_location(module_name, path)
        if module_spec is None or module_spec.loader is None:  # pragma: no cover
            raise ImportError(f"cannot import {str(path)!r}")
        module = importlib.util.module_from_spec(module_spec)
        sys.modules[module_name] = module
        module_spec.loader.exec_module(module)
        label = f"{path.stem}:{attribute}"
    else:
        module = importlib.import_module(where)
        label = f"{where.rsplit('.', 1)[-1]}:{attribute}"
    fn = getattr(module, attribute, None)
    if fn is None:
        raise AttributeError(f"{where!r} has no attribute {attribute!r}")
    if isinstance(fn, rs.Submission):
        return fn
    if not callable(fn):
        raise TypeError(f"{spec!r} is not callable")
    return _from_callable(fn, label, module)


def resolve_submissions(optimizers: Any = None, baselines: bool = True) -> dict[str, rs.Submission]:
    """Submissions by name from ``optimizers``.

    ``None``: the baselines and every library optimizer. Otherwise an iterable (or a
    comma-separated string) whose items are ``Submission``s, callables, ``"file.py:fn"`` /
    ``"module:fn"`` specs, baseline names (``"NAdamW"``) or library names (``"adamw"`` or
    ``"oc.adamw"``; an exact name wins, so ``"AdamW"`` is the baseline and ``"adamw"`` the library's
    optimizer); or a mapping name -> callable. ``baselines=True`` adds the four baselines
    (they set the targets and the speedup reference).
    """
    known = {name: dataclasses.replace(s, source=name) for name, s in rs.all_submissions().items()}
    if optimizers is None:
        return dict(known)
    chosen: dict[str, rs.Submission] = {}
    items: Iterable[Any]
    if isinstance(optimizers, Mapping):
        items = [fn if isinstance(fn, rs.Submission) else _from_callable(fn, name) for name, fn in optimizers.items()]
    elif isinstance(optimizers, str):
        items = [x.strip() for x in optimizers.split(",") if x.strip()]
    else:
        items = list(optimizers)
    lowered = {k.lower(): v for k, v in known.items()}
    for item in items:
        if isinstance(item, rs.Submission):
            sub = item
        elif callable(item):
            sub = _from_callable(item)
        elif isinstance(item, str) and ":" in item:
            sub = dataclasses.replace(load_submission(item), source=item)
        elif isinstance(item, str):
            # Exact names first ("AdamW" the baseline, "adamw" the library's), then any case.
            key = item.lower()
            sub = known.get(item) or known.get(f"oc.{item}") or lowered.get(key) or lowered.get(f"oc.{key}")
            if sub is None:
                raise KeyError(f"no optimizer named {item!r}; known: {', '.join(known)}")
        else:
            raise TypeError(f"cannot read {item!r} as an optimizer")
        chosen[sub.name] = sub
    if baselines:
        chosen = {**{k: known[k] for k in rs.BASELINES if k not in chosen}, **chosen}
    return chosen


def resolve_workloads(workloads: Any = None) -> list[wl.Workload]:
    if workloads is None:
        return list(wl.WORKLOADS.values())
    if isinstance(workloads, str):
        workloads = [x.strip() for x in workloads.split(",") if x.strip()]
    return [wl.get_workload(w) for w in workloads]


# ----------------------------------------------------------------------------------------------
# Progress
# ----------------------------------------------------------------------------------------------


class _PlainBar:
    """A tqdm stand-in: one line per 10 % of progress."""

    def __init__(self, total: int, desc: str, stream: Any = None) -> None:
        self.total, self.desc, self.n, self._shown = max(1, total), desc, 0, -1
        self.stream = stream or sys.stderr
        self.postfix = ""

    def update(self, k: int) -> None:
        self.n += k
        tenth = min(10, int(10 * self.n / self.total))
        if tenth != self._shown:
            self._shown = tenth
            print(f"{self.desc}: {10 * tenth:3d}% {self.postfix}", file=self.stream, flush=True)

    def set_postfix_str(self, text: str) -> None:
        self.postfix = text

    def close(self) -> None:
        pass


def _bar(total: int, desc: str, enabled: bool) -> Any:
    if not enabled:
        return None
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return _PlainBar(total, desc)
    return tqdm(total=total, desc=desc, unit="step", leave=True, dynamic_ncols=True)


# ----------------------------------------------------------------------------------------------
# One (workload, submission) pair
# ----------------------------------------------------------------------------------------------


@dataclasses.dataclass
class PairOutcome:
    """Everything measured for one submission on one workload under one ruleset."""

    workload: str
    submission: str
    ruleset: str
    steps: int
    eval_every: int
    target: float | None
    studies: list[list[sw.TrialResult]]
    selected: list[sw.TrialResult | None]
    sweep: sw.SweepResult | None
    replay: sw.SweepResult | None
    error: str | None = None
    replay_mismatches: int = 0

    def entry(self) -> dict[str, Any]:
        """The leaderboard entry (JSON-ready: ``None`` for not reached / unknown)."""
        picked = [t for t in self.selected if t is not None]
        n = len(self.studies)
        steps = sc.median_spread([t.steps_to_target for t in picked] + [None] * (n - len(picked)))
        times = sc.median_spread([t.time_to_target_s for t in picked] + [None] * (n - len(picked)))
        finals = sc.median_spread([t.final_valid for t in picked] + [None] * (n - len(picked)))
        finals_pick = [t.final for t in picked if t.final and "error" not in t.final]
        med = lambda key: _nan_median([f.get(key) for f in finals_pick])
        single = self.replay if self.replay is not None else self.sweep
        sweep = self.sweep
        entry = {
            "reached": math.isfinite(steps[0]),
            "reached_studies": f"{sum(t.reached for t in picked)}/{n}",
            "steps_to_target": _json_num(steps[0]),
            "steps_to_target_spread": [_json_num(steps[1]), _json_num(steps[2])],
            "time_to_target_s": _json_num(times[0]),
            "time_to_target_spread": [_json_num(times[1]), _json_num(times[2])],
            "compile_s": _json_num(single.compile_s if single is not None else None),
            "final_metric": _json_num(finals[0]),
            "final_metric_spread": [_json_num(finals[1]), _json_num(finals[2])],
            "test_metric": _json_num(med("test")),
            "sharpness": _json_num(med("sharpness")),
            "box_sharpness": _json_num(med("box_sharpness")),
            "recompiles": (sweep.recompiles if sweep else 0) + (self.replay.recompiles if self.replay else 0),
            "state_bytes_per_param": _json_num(sweep.state_bytes_per_param if sweep else None),
            "budget_steps": self.steps,
            "budget_s": _json_num(self.budget_seconds()),
            "trials": sum(len(s) for s in self.studies),
            "sweep_s": _json_num(sweep.total_s if sweep else None),
            "sweep_compile_s": _json_num(sweep.compile_s if sweep else None),
            "failed_trials": sum(t.error is not None for s in self.studies for t in s),
            "diverged_trials": sum(t.diverged for s in self.studies for t in s),
            "hyperparams": [_round_config(t.config) if t is not None else None for t in self.selected],
        }
        if self.replay_mismatches:
            entry["replay_mismatches"] = self.replay_mismatches
        if self.error:
            entry["error"] = self.error
        errors = sorted({t.error for s in self.studies for t in s if t.error})
        if errors:
            entry["errors"] = errors[:3]
        return entry

    def budget_seconds(self) -> float | None:
        """One trial's wall time for the whole budget (the time an unreached run spent).

        Measured where a single-trial run went the whole way (defaults, self-tuning); else the
        replays' seconds per step times the budget; else the per-trial share of the vmapped sweep.
        """
        full = [t.run_s for s in self.studies for t in s if t.chunk_s and len(t.steps) * self.eval_every == self.steps]
        if full:
            return float(np.median(full))
        if self.replay is not None:
            per_step = [t.run_s / (len(t.steps) * self.eval_every) for t in self.replay.trials if t.chunk_s]
            if per_step:
                return float(np.median(per_step)) * self.steps
        if self.sweep is not None and self.sweep.run_s > 0:
            n = sum(len(s) for s in self.studies)
            return self.sweep.run_s / max(1, n)
        return None


def _nan_median(values: Sequence[Any]) -> float | None:
    x = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    return float(np.median(x)) if x else None


def _json_num(x: Any) -> float | None:
    if x is None:
        return None
    x = float(x)
    if not math.isfinite(x):
        return None
    return float(f"{x:.6g}")


def _round_config(config: Mapping[str, Any]) -> dict[str, Any]:
    return {k: (float(f"{v:.4g}") if isinstance(v, float) else v) for k, v in config.items()}


def run_pair(
    workload: wl.Workload,
    submission: rs.Submission,
    ruleset: str,
    seeds: Sequence[int],
    *,
    trials: int = rs.TRIALS_PER_STUDY,
    quick: bool = False,
    progress: Callable[[int], None] | None = None,
    compiler_options: Mapping[str, Any] | None = None,
) -> PairOutcome:
    """One submission on one workload under ``ruleset`` (see the module docstring). Never raises."""
    eval_every = workload.quick_eval_every if quick else workload.eval_every
    base = workload.quick_steps if quick else workload.max_steps
    steps = rs.budget(ruleset, base, eval_every)
    target = workload.target
    outcome = PairOutcome(workload.name, submission.name, ruleset, steps, eval_every, target, [], [], None, None)
    try:
        configs = submission.configs(ruleset, seeds, trials)
    except Exception as error:  # noqa: BLE001
        outcome.error = sw._error_text(error)
        outcome.studies = [[sw.TrialResult({}, s, error=outcome.error)] for s in seeds]
        outcome.selected = [None for _ in seeds]
        return outcome
    flat = [(config, seed) for seed, study in zip(seeds, configs, strict=True) for config in study]
    owner = [i for i, study in enumerate(configs) for _ in study]
    one_each = all(len(study) == 1 for study in configs)
    common = dict(
        eval_every=eval_every,
        target=target,
        compiler_options=compiler_options,
        cache_key=submission.name,
        eval_params=submission.eval_params,
    )
    try:
        if one_each:
            sweep = sw.run_trials(workload, submission.build, flat, steps, mode="loop", progress=progress, **common)
        else:
            per_chunk = (lambda k: progress(k * len(flat))) if progress else None
            sweep = sw.run_trials(workload, submission.build, flat, steps, mode="vmap", progress=per_chunk, **common)
    except Exception as error:  # noqa: BLE001 - a broken submission is a result
        outcome.error = sw._error_text(error)
        outcome.studies = [
            [sw.TrialResult(c, s, error=outcome.error) for c in study] for s, study in zip(seeds, configs, strict=True)
        ]
        outcome.selected = [None for _ in seeds]
        return outcome
    outcome.sweep = sweep
    studies: list[list[sw.TrialResult]] = [[] for _ in configs]
    for i, trial in zip(owner, sweep.trials, strict=True):
        studies[i].append(trial)
    outcome.studies = studies
    selected = []
    for study in studies:
        index = sc.select_trial(study)
        selected.append(None if index is None else study[index])
    outcome.selected = selected

    if not one_each:
        to_replay = [t for t in selected if t is not None and t.reached]
        if to_replay:
            try:
                replay = sw.run_trials(
                    workload,
                    submission.build,
                    [(t.config, t.seed) for t in to_replay],
                    steps,
                    mode="loop",
                    stop_at_target=True,
                    keep_params=False,
                    **common,
                )
                outcome.replay = replay
                for original, timed in zip(to_replay, replay.trials, strict=True):
                    # The timed rerun is the scored run (AlgoPerf reruns the selected trials); vmapped
                    # and single-trial programs round differently, so a metric at the target's edge
                    # can move by an evaluation, and the mismatches are counted.
                    if timed.steps_to_target != original.steps_to_target:
                        outcome.replay_mismatches += 1
                    original.steps_to_target = timed.steps_to_target
                    original.time_to_target_s = timed.time_to_target_s
            except Exception as error:  # noqa: BLE001
                outcome.error = f"replay failed: {sw._error_text(error)}"
    sw.measure_final(workload, [t for t in selected if t is not None])
    for study in studies:
        for t in study:
            t.params = None  # measured; the arena keeps numbers, not parameters
    return outcome


# ----------------------------------------------------------------------------------------------
# A whole ruleset
# ----------------------------------------------------------------------------------------------


def environment() -> dict[str, Any]:
    """The machine and versions a leaderboard was measured with."""
    import optcompose

    versions = {"python": platform.python_version(), "jax": jax.__version__, "optcompose": optcompose.__version__}
    try:
        import jaxlib

        versions["jaxlib"] = jaxlib.__version__
    except (ImportError, AttributeError):  # pragma: no cover
        pass
    for name in ("numpy", "sklearn", "matplotlib"):
        module = sys.modules.get(name)
        if module is not None:
            versions[name] = getattr(module, "__version__", "?")
    try:
        load = os.getloadavg()
    except OSError:  # pragma: no cover
        load = None
    devices = jax.devices()
    return {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "load_average_at_start": [round(x, 2) for x in load] if load else None,
        "backend": jax.default_backend(),
        "devices": f"{len(devices)} x {devices[0].device_kind}" if devices else "none",
        "versions": versions,
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
    }


def leaderboard(outcomes: Sequence[PairOutcome], ruleset: str, meta: Mapping[str, Any]) -> dict[str, Any]:
    """Scores and the per-workload entries of one ruleset, as a JSON-ready dict."""
    submissions = list(dict.fromkeys(o.submission for o in outcomes))
    workloads = list(dict.fromkeys(o.workload for o in outcomes))
    entries = {s: {} for s in submissions}
    for o in outcomes:
        entries[o.submission][o.workload] = o.entry()
    get = lambda key: {s: {w: entries[s][w].get(key) for w in entries[s]} for s in submissions}
    times, steps = get("time_to_target_s"), get("steps_to_target")
    budget_s, budget_steps = get("budget_s"), get("budget_steps")
    ratios_t, ratios_n = sc.performance_ratios(times), sc.performance_ratios(steps)
    reference = rs.REFERENCE if rs.REFERENCE in entries else None
    table = {}
    for s in submissions:
        row: dict[str, Any] = {
            "score": round(sc.profile_score(ratios_t[s]), 4),
            "score_steps": round(sc.profile_score(ratios_n[s]), 4),
            "reached": sum(bool(e.get("reached")) for e in entries[s].values()),
        }
        if reference is not None:
            g_t, both_t = sc.geomean_speedup(times[s], times[reference], budget_s[s], budget_s[reference])
            g_n, both_n = sc.geomean_speedup(steps[s], steps[reference], budget_steps[s], budget_steps[reference])
            row.update(
                {
                    "geomean_speedup": _json_num(g_t),
                    "geomean_speedup_steps": _json_num(g_n),
                    "speedup_workloads_both_reached": both_t,
                }
            )
        row["workloads"] = {
            w: {**entries[s][w], "ratio": _json_num(ratios_t[s].get(w)), "ratio_steps": _json_num(ratios_n[s].get(w))}
            for w in entries[s]
        }
        table[s] = row
    order = sorted(submissions, key=lambda s: (-table[s]["score"], -table[s]["score_steps"], s))
    return {
        "ruleset": ruleset,
        **meta,
        "workloads": {w: _workload_meta(wl.get_workload(w), outcomes) for w in workloads},
        "reference": reference,
        "ranking": order,
        "optimizers": {s: table[s] for s in order},
    }


def _workload_meta(workload: wl.Workload, outcomes: Sequence[PairOutcome]) -> dict[str, Any]:
    some = next(o for o in outcomes if o.workload == workload.name)
    return {
        "metric": workload.metric,
        "target": workload.target,
        "budget_steps": some.steps,
        "eval_every": some.eval_every,
        "description": workload.description,
    }


def curves(outcomes: Sequence[PairOutcome]) -> dict[str, Any]:
    """The selected trials' curves and final measures, for plots: ``{workload: {submission: [trial, ...]}}``."""
    out: dict[str, dict[str, list]] = {}
    for o in outcomes:
        rows = []
        for t in o.selected:
            if t is None:
                continue
            rows.append(
                {
                    "seed": t.seed,
                    "config": _round_config(t.config),
                    "steps": t.steps,
                    "valid": [_json_num(v) for v in t.valid],
                    "train_loss": [_json_num(v) for v in t.train_loss],
                    "final": {k: _json_num(v) for k, v in t.final.items() if not isinstance(v, str)},
                    "steps_to_target": t.steps_to_target,
                }
            )
        out.setdefault(o.workload, {})[o.submission] = rows
    return out


WORKLOAD_COST = {"cnn_digits": 5.0, "transformer_modadd": 4.0, "mlp_digits": 3.0, "logreg_digits": 2.0,
                 "noisy_quadratic": 1.5, "deep_linear": 1.5, "ravine": 1.0, "saddle": 1.0}
"""Relative cost of a workload's arena run (measured), to hand the heavy ones to worker processes first."""


def run_workload(
    workload: wl.Workload,
    submissions: Mapping[str, rs.Submission],
    rulesets: Sequence[str],
    seeds: Sequence[int],
    *,
    trials: int = rs.TRIALS_PER_STUDY,
    quick: bool = False,
    progress: bool = True,
    compiler_options: Mapping[str, Any] | None = None,
    log: Callable[[str], None] | None = None,
) -> dict[str, list[PairOutcome]]:
    """Every submission on one workload under each ruleset in turn, a progress bar per (ruleset, workload).

    The rulesets of a workload run in one process, so their shared single-trial programs compile once.
    """
    outcomes: dict[str, list[PairOutcome]] = {}
    for ruleset in rulesets:
        eval_every = workload.quick_eval_every if quick else workload.eval_every
        steps = rs.budget(ruleset, workload.quick_steps if quick else workload.max_steps, eval_every)
        sizes = {}
        for name, sub in submissions.items():
            try:
                sizes[name] = sum(len(s) for s in sub.configs(ruleset, seeds, trials))
            except Exception:  # noqa: BLE001
                sizes[name] = len(seeds)
        bar = _bar(sum(sizes.values()) * steps, f"{ruleset} {workload.name}", progress)
        start = time.perf_counter()
        outcomes[ruleset] = []
        for name, sub in submissions.items():
            if bar is not None:
                bar.set_postfix_str(name)
            outcomes[ruleset].append(
                run_pair(workload, sub, ruleset, seeds, trials=trials, quick=quick,
                         progress=bar.update if bar is not None else None, compiler_options=compiler_options)
            )
        if bar is not None:
            bar.close()
        if log is not None:
            log(f"{ruleset} {workload.name}: {time.perf_counter() - start:.1f} s")
    return outcomes


def _stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def _worker(workload: str, sources: Sequence[str], rulesets: Sequence[str], seeds: Sequence[int], trials: int,
            quick: bool, compiler_options: Mapping[str, Any] | None, log: bool) -> dict[str, list[PairOutcome]]:
    """One workload in a worker process: the submissions are found again from their sources."""
    submissions = resolve_submissions(list(sources), baselines=False)
    return run_workload(wl.get_workload(workload), submissions, rulesets, seeds, trials=trials, quick=quick,
                        progress=False, compiler_options=compiler_options, log=_stderr if log else None)


def run_all(
    submissions: Mapping[str, rs.Submission],
    workloads: Sequence[wl.Workload],
    rulesets: Sequence[str],
    seeds: Sequence[int],
    *,
    trials: int = rs.TRIALS_PER_STUDY,
    quick: bool = False,
    progress: bool = True,
    compiler_options: Mapping[str, Any] | None = None,
    log: Callable[[str], None] | None = None,
    workers: int = 1,
) -> dict[str, list[PairOutcome]]:
    """Every (ruleset, workload, submission), in this process or spread over ``workers`` processes by workload.

    Worker processes need every submission findable by name (``Submission.source``: built-ins and
    ``file.py:fn`` specs); otherwise, or with ``workers=1``, everything runs here. Workloads go to
    the workers heaviest first. With several workers the timed runs share the CPU with the other
    workers' compilations, which the wall times include.
    """
    registered = all(wl.WORKLOADS.get(w.name) is w for w in workloads)
    sources = [s.source for s in submissions.values()]
    parallel = workers > 1 and len(workloads) > 1 and registered and all(sources)
    if workers > 1 and not parallel and log is not None:
        log("running in one process: worker processes need registered workloads and optimizers given by name or spec")
    per_workload: dict[str, dict[str, list[PairOutcome]]] = {}
    if not parallel:
        for workload in workloads:
            per_workload[workload.name] = run_workload(workload, submissions, rulesets, seeds, trials=trials,
                                                       quick=quick, progress=progress,
                                                       compiler_options=compiler_options, log=log)
    else:
        import concurrent.futures
        import multiprocessing

        order = sorted(workloads, key=lambda w: -WORKLOAD_COST.get(w.name, 2.0))
        context = multiprocessing.get_context("spawn")
        with concurrent.futures.ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
            futures = {w.name: pool.submit(_worker, w.name, sources, list(rulesets), list(seeds), trials, quick,
                                           dict(compiler_options) if compiler_options else None, log is not None)
                       for w in order}
            for name, future in futures.items():
                per_workload[name] = future.result()
    return {r: [o for w in workloads for o in per_workload[w.name][r]] for r in rulesets}
