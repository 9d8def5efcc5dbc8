"""Writing results: ``leaderboard.json``, ``leaderboard.md``, ``runs.json`` and PNG plots.

Plots (matplotlib, optional: the ``examples`` extra) are

* ``performance_profile.png``: ``rho_s(tau)`` for ``tau`` in [1, 4], on wall time and on steps;
* ``curves.png``: every workload's validation metric against steps, one line per optimizer (its
  median study's selected trial), the target dashed; ``curves_<workload>.png`` adds the training
  loss;
* ``sharpness_vs_test.png``: per workload, each selected trial's top Hessian eigenvalue against its
  test metric.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from optcompose.arena import _scoring as sc
from optcompose.arena import _workloads as wl


def _fmt(x: Any, digits: int = 3) -> str:
    if x is None:
        return "—"
    if isinstance(x, bool):
        return "yes" if x else "no"
    if isinstance(x, int):
        return str(x)
    x = float(x)
    if not math.isfinite(x):
        return "—"
    if x != 0 and (abs(x) < 1e-3 or abs(x) >= 1e5):
        return f"{x:.{digits - 1}e}"
    return f"{x:.{digits}g}"


def _spread(median: Any, spread: Sequence[Any] | None, digits: int = 3) -> str:
    if median is None:
        lo = spread[0] if spread else None
        return "not reached" if lo is None else f"— [{_fmt(lo, digits)}, —]"
    if not spread or spread[0] is None or spread[0] == spread[1]:
        return _fmt(median, digits)
    return f"{_fmt(median, digits)} [{_fmt(spread[0], digits)}, {_fmt(spread[1], digits)}]"


def leaderboard_markdown(board: Mapping[str, Any], images: Mapping[str, str] | None = None) -> str:
    """The leaderboard as Markdown: the ranking, then a table per workload."""
    env = board.get("environment", {})
    versions = env.get("versions", {})
    lines = [f"# optcompose arena: `{board['ruleset']}` ruleset", ""]
    lines.append(
        f"Seeds (studies) {board.get('seeds')}, {board.get('trials_per_study')} trials per study"
        f"{' (tuned only)' if board['ruleset'] == 'tuned' else ''}{', quick budget' if board.get('quick') else ''}; "
        f"{env.get('devices', '?')} ({env.get('processor', '?')}, {env.get('cpu_count', '?')} cores, load "
        f"{env.get('load_average_at_start')}); jax {versions.get('jax', '?')}, "
        f"optcompose {versions.get('optcompose', '?')}"
        f"; {env.get('date', '')}."
    )
    lines += [
        "",
        "Score: AlgoPerf's performance-profile score (area under rho(tau) for tau in [1, 4], normalised) on "
        "wall time to target, and on steps; speedup: geometric mean over workloads of "
        f"t_{board.get('reference') or 'ref'} / t (unreached: the run's budget).",
        "",
    ]
    lines += [
        "## Ranking",
        "",
        "| # | optimizer | score | score (steps) | speedup vs "
        + str(board.get("reference"))
        + " | speedup (steps) | workloads reached |",
        "|---|---|---|---|---|---|---|",
    ]
    n_workloads = len(board["workloads"])
    for rank, name in enumerate(board["ranking"], 1):
        row = board["optimizers"][name]
        lines.append(
            f"| {rank} | `{name}` | {_fmt(row['score'])} | {_fmt(row['score_steps'])} | "
            f"{_fmt(row.get('geomean_speedup'))} | {_fmt(row.get('geomean_speedup_steps'))} | "
            f"{row['reached']}/{n_workloads} |"
        )
    lines += [
        "",
        "## Workloads",
        "",
        "Medians over studies, [min, max] in brackets. Time to target: one trial's wall seconds, compilation "
        "excluded (`compile`: seconds to compile that trial's program). Final: validation metric at the end of "
        "the budget. Sharpness: top Hessian eigenvalue of the training objective at the end; box: largest loss "
        "increase found in the box |z_i| <= 1e-3 (|theta_i| + 1).",
        "",
    ]
    for w, meta in board["workloads"].items():
        lines += [
            f"### `{w}`",
            "",
            f"{meta['description']}. Metric: {meta['metric']} (lower is better); target "
            f"{_fmt(meta['target'], 4)}; budget {meta['budget_steps']} steps, evaluated every "
            f"{meta['eval_every']}.",
            "",
        ]
        lines += [
            "| optimizer | steps to target | time to target (s) | compile (s) | final | test | sharpness | box | "
            "recompiles | state B/param | reached |",
            "|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for name in board["ranking"]:
            e = board["optimizers"][name]["workloads"].get(w)
            if e is None:
                continue
            lines.append(
                f"| `{name}` | {_spread(e['steps_to_target'], e['steps_to_target_spread'])} | "
                f"{_spread(e['time_to_target_s'], e['time_to_target_spread'])} | {_fmt(e['compile_s'], 2)} | "
                f"{_spread(e['final_metric'], e['final_metric_spread'])} | {_fmt(e['test_metric'])} | "
                f"{_fmt(e['sharpness'])} | {_fmt(e['box_sharpness'])} | {e['recompiles']} | "
                f"{_fmt(e['state_bytes_per_param'])} | {e['reached_studies']} |"
            )
        lines.append("")
    errors = [
        (n, w, e.get("error") or e.get("errors"))
        for n, row in board["optimizers"].items()
        for w, e in row["workloads"].items()
        if e.get("error") or e.get("errors")
    ]
    if errors:
        lines += ["## Failures (recorded as not reaching the target)", ""]
        lines += [f"- `{n}` on `{w}`: {err}" for n, w, err in errors]
        lines.append("")
    if board.get("sweep_speedup"):
        s = board["sweep_speedup"]
        lines += ["## Sweeps compile once", "", sweep_speedup_markdown(s), ""]
    if images:
        lines += ["## Plots", ""]
        lines += [f"![{title}]({path})" for title, path in images.items()]
        lines.append("")
    return "\n".join(lines)


def sweep_speedup_markdown(s: Mapping[str, Any]) -> str:
    rows = ["| way | compiles | compile (s) | end to end (s) | vmapped speedup |", "|---|---|---|---|---|"]
    for key, label in (
        ("vmap", "one vmapped program"),
        ("loop", "one by one, one program"),
        ("recompile", "one by one, a fresh jit per trial (Optax way)"),
    ):
        m = s.get(key)
        if m:
            rows.append(
                f"| {label} | {m['compiles']} | {_fmt(m['compile_s'])} | {_fmt(m['total_s'])} | "
                f"{_fmt(s['vmap']['speedup_vs'].get(key, 1.0))}x |"
            )
    head = (
        f"{s['trials']}-trial learning-rate sweep of `{s['optimizer']}` on `{s['workload']}`, {s['steps']} steps "
        f"each; largest difference between the vmapped and one-by-one validation curves: "
        f"{_fmt(s.get('max_abs_diff'))}."
    )
    return head + "\n\n" + "\n".join(rows)


def write_json(path: Path, obj: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=1, allow_nan=False, default=_jsonable))


def _jsonable(x: Any) -> Any:
    if isinstance(x, np.generic):
        return x.item()
    if isinstance(x, np.ndarray):
        return x.tolist()
    return str(x)


# ----------------------------------------------------------------------------------------------
# Plots
# ----------------------------------------------------------------------------------------------


def _pyplot() -> Any:
    matplotlib = wl.require("matplotlib")
    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def _colors(names: Sequence[str]) -> dict[str, Any]:
    plt = _pyplot()
    cmap = plt.get_cmap("tab20" if len(names) > 10 else "tab10")
    return {n: cmap(i % cmap.N) for i, n in enumerate(names)}


def _style(name: str) -> str:
    return "-" if not name.startswith("oc.") else "--"


def plot_profiles(board: Mapping[str, Any], path: Path) -> None:
    """``rho_s(tau)`` on wall time and on steps, tau in [1, 4]."""
    plt = _pyplot()
    names = board["ranking"]
    colors = _colors(names)
    taus = np.linspace(1.0, sc.TAU_MAX, 301)
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8), sharey=True)
    for ax, key, title in ((axes[0], "ratio", "wall time to target"), (axes[1], "ratio_steps", "steps to target")):
        for name in names:
            ratios = {w: e.get(key) for w, e in board["optimizers"][name]["workloads"].items()}
            rho = sc.performance_profile(ratios, taus)
            ax.step(taus, rho, where="post", color=colors[name], ls=_style(name), lw=1.6, label=name)
        ax.set_xlabel("tau (ratio to the fastest)")
        ax.set_title(f"performance profile, {title}")
        ax.set_xlim(1, sc.TAU_MAX)
        ax.set_ylim(-0.02, 1.02)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("fraction of workloads within tau")
    axes[1].legend(fontsize=7, loc="lower right", ncol=2)
    fig.suptitle(f"arena, {board['ruleset']} ruleset", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def _median_trial(trials: Sequence[Mapping[str, Any]]) -> Mapping[str, Any] | None:
    if not trials:
        return None
    order = sorted(
        trials,
        key=lambda t: (
            t["steps_to_target"] is None,
            t["steps_to_target"] or 0,
            t["valid"][-1] if t["valid"] and t["valid"][-1] is not None else math.inf,
        ),
    )
    return order[(len(order) - 1) // 2]


def _positive(values: Sequence[Any]) -> bool:
    finite = [v for v in values if v is not None and math.isfinite(v)]
    return bool(finite) and min(finite) > 0


def _curve(ax: Any, trial: Mapping[str, Any], key: str, name: str, color: Any, **kwargs: Any) -> None:
    """One trial's ``key`` series against its steps (missing evaluations as gaps)."""
    values = [np.nan if v is None else v for v in trial[key]]
    ax.plot(trial["steps"], values, color=color, ls=_style(name), lw=1.2, **kwargs)


def plot_curves(board: Mapping[str, Any], runs: Mapping[str, Any], path: Path, per_workload_dir: Path | None) -> None:
    """Validation curves on a grid of workloads (and per-workload files with the training loss)."""
    plt = _pyplot()
    names = board["ranking"]
    colors = _colors(names)
    workloads = list(board["workloads"])
    cols = min(4, len(workloads))
    rows = math.ceil(len(workloads) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.4 * cols, 2.8 * rows), squeeze=False)
    for ax, w in zip(axes.flat, workloads, strict=False):
        meta = board["workloads"][w]
        values = []
        for name in names:
            t = _median_trial(runs.get(w, {}).get(name, []))
            if t is None:
                continue
            _curve(ax, t, "valid", name, colors[name], label=name)
            values += t["valid"]
        if meta.get("target") is not None:
            ax.axhline(meta["target"], color="k", ls=":", lw=1)
        if _positive(values):
            ax.set_yscale("log")
        ax.set_title(w, fontsize=9)
        ax.set_xlabel("step", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(workloads) :]:
        ax.axis("off")
    handles, labels = axes.flat[0].get_legend_handles_labels()
    _legend_below(
        fig, handles, labels, f"validation metric (median study's selected trial), {board['ruleset']}; target dotted"
    )
    fig.savefig(path, dpi=80)
    plt.close(fig)
    if per_workload_dir is None:
        return
    for w in workloads:
        fig, (a1, a2) = plt.subplots(1, 2, figsize=(9, 3.4))
        for name in names:
            t = _median_trial(runs.get(w, {}).get(name, []))
            if t is None:
                continue
            _curve(a1, t, "train_loss", name, colors[name], label=name)
            _curve(a2, t, "valid", name, colors[name])
        target = board["workloads"][w].get("target")
        if target is not None:
            a2.axhline(target, color="k", ls=":", lw=1)
        a1.set_title(f"{w}: training loss (chunk mean)", fontsize=9)
        a2.set_title(f"{w}: {board['workloads'][w]['metric']}", fontsize=9)
        for a in (a1, a2):
            a.set_xlabel("step")
            a.grid(alpha=0.3)
        a1.legend(fontsize=6, ncol=2)
        fig.tight_layout()
        fig.savefig(per_workload_dir / f"curves_{w}.png", dpi=72)
        plt.close(fig)


def _legend_below(fig: Any, handles: list, labels: list, title: str) -> None:
    """A title, and one legend for all panels under them: the figure grows by the legend's height
    (about a sixth of an inch per row of six entries), so 44 optimizers do not cover the panels."""
    ncol = min(6, max(1, len(labels)))
    legend_inches = 0.17 * math.ceil(len(labels) / ncol) + 0.15
    height = fig.get_figheight()
    fig.set_figheight(height + legend_inches)
    fig.legend(handles, labels, loc="lower center", ncol=ncol, fontsize=7, frameon=False)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout(rect=(0, legend_inches / (height + legend_inches), 1, 1 - 0.35 / (height + legend_inches)))


def plot_sharpness(board: Mapping[str, Any], runs: Mapping[str, Any], path: Path) -> None:
    """Top Hessian eigenvalue against test metric, every selected trial, a panel per workload."""
    plt = _pyplot()
    names = board["ranking"]
    colors = _colors(names)
    workloads = list(board["workloads"])
    cols = min(4, len(workloads))
    rows = math.ceil(len(workloads) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.4 * cols, 2.8 * rows), squeeze=False)
    for ax, w in zip(axes.flat, workloads, strict=False):
        xs = []
        for name in names:
            pts = [(t["final"].get("sharpness"), t["final"].get("test")) for t in runs.get(w, {}).get(name, [])]
            pts = [(x, y) for x, y in pts if x is not None and y is not None and x > 0]
            if pts:
                ax.scatter(
                    [p[0] for p in pts],
                    [p[1] for p in pts],
                    s=14,
                    color=colors[name],
                    marker="o" if not name.startswith("oc.") else "^",
                    label=name,
                    alpha=0.8,
                )
                xs += [p[0] for p in pts]
        if xs:
            ax.set_xscale("log")
        ax.set_title(w, fontsize=9)
        ax.set_xlabel("top Hessian eigenvalue", fontsize=8)
        ax.set_ylabel("test metric", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(workloads) :]:
        ax.axis("off")
    handles, labels = [], []
    for ax in axes.flat:
        for h, label in zip(*ax.get_legend_handles_labels(), strict=True):
            if label not in labels:
                handles.append(h)
                labels.append(label)
    _legend_below(
        fig, handles, labels, f"sharpness vs test metric at the end of each selected trial, {board['ruleset']}"
    )
    fig.savefig(path, dpi=80)
    plt.close(fig)


def write_report(board: dict[str, Any], runs: Mapping[str, Any], out: Path, plots: bool = True) -> dict[str, Path]:
    """Writes ``leaderboard.json``, ``runs.json``, the plots and ``leaderboard.md`` into ``out``; returns the paths."""
    out.mkdir(parents=True, exist_ok=True)
    paths = {"leaderboard.json": out / "leaderboard.json", "runs.json": out / "runs.json"}
    images: dict[str, str] = {}
    if plots:
        try:
            plot_profiles(board, out / "performance_profile.png")
            plot_curves(board, runs, out / "curves.png", out)
            plot_sharpness(board, runs, out / "sharpness_vs_test.png")
            images = {
                "performance profiles": "performance_profile.png",
                "validation curves": "curves.png",
                "sharpness vs test metric": "sharpness_vs_test.png",
            }
            paths.update({name: out / name for name in images.values()})
        except ImportError as error:
            board.setdefault("notes", []).append(f"plots skipped: {error}")
    write_json(paths["leaderboard.json"], board)
    write_json(paths["runs.json"], runs)
    paths["leaderboard.md"] = out / "leaderboard.md"
    paths["leaderboard.md"].write_text(leaderboard_markdown(board, images))
    return paths
