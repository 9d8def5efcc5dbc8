"""Reports: Markdown and JSON from a hand-made leaderboard, and the plots."""

import json

import pytest

from optcompose.arena import _report as rp


def _entry(steps, time, reached=True):
    return {
        "reached": reached, "reached_studies": "2/3" if reached else "0/3", "steps_to_target": steps,
        "steps_to_target_spread": [steps, steps], "time_to_target_s": time, "time_to_target_spread": [time, None],
        "compile_s": 1.5, "final_metric": 0.02, "final_metric_spread": [0.01, 0.03], "test_metric": 0.025,
        "sharpness": 12.0, "box_sharpness": 1e-4, "recompiles": 0, "state_bytes_per_param": 8.0, "budget_steps": 100,
        "budget_s": 1.0, "ratio": 1.0 if reached else None, "ratio_steps": 1.0 if reached else None,
        "error": None if reached else "RuntimeError: boom",
    }


def _board():
    workloads = {"w1": {"metric": "error", "target": 0.03, "budget_steps": 100, "eval_every": 10, "description": "d1"},
                 "w2": {"metric": "loss", "target": None, "budget_steps": 50, "eval_every": 10, "description": "d2"}}
    optimizers = {
        "NAdamW": {"score": 0.5, "score_steps": 0.5, "reached": 1, "geomean_speedup": 1.0, "geomean_speedup_steps": 1.0,
                   "workloads": {"w1": _entry(40, 0.4), "w2": _entry(None, None, reached=False)}},
        "oc.sgd": {"score": 0.0, "score_steps": 0.1, "reached": 0, "geomean_speedup": 0.5, "geomean_speedup_steps": 0.4,
                   "workloads": {"w1": _entry(None, None, reached=False), "w2": _entry(None, None, reached=False)}},
    }
    return {"ruleset": "tuned", "seeds": [0, 1, 2], "trials_per_study": 5, "quick": False, "reference": "NAdamW",
            "environment": {"devices": "1 x cpu", "versions": {"jax": "x"}}, "workloads": workloads,
            "ranking": ["NAdamW", "oc.sgd"], "optimizers": optimizers}


def _runs():
    trial = {"seed": 0, "config": {"learning_rate": 0.1}, "steps": [10, 20], "valid": [0.5, 0.02],
             "train_loss": [1.0, 0.1], "final": {"test": 0.03, "sharpness": 5.0}, "steps_to_target": 20}
    return {"w1": {"NAdamW": [trial], "oc.sgd": [dict(trial, steps_to_target=None)]}, "w2": {"NAdamW": [trial]}}


def test_markdown_lists_ranking_workloads_and_failures():
    md = rp.leaderboard_markdown(_board(), {"profiles": "performance_profile.png"})
    assert "| 1 | `NAdamW` | 0.5 |" in md
    assert "### `w1`" in md and "### `w2`" in md
    assert "not reached" in md and "RuntimeError: boom" in md
    assert "![profiles](performance_profile.png)" in md


def test_write_report_writes_json_markdown_and_plots(tmp_path):
    pytest.importorskip("matplotlib")
    paths = rp.write_report(_board(), _runs(), tmp_path, plots=True)
    for name in ("leaderboard.json", "leaderboard.md", "runs.json", "performance_profile.png", "curves.png",
                 "sharpness_vs_test.png", "curves_w1.png"):
        assert (tmp_path / name).is_file(), name
    board = json.loads(paths["leaderboard.json"].read_text())
    assert board["optimizers"]["NAdamW"]["workloads"]["w1"]["steps_to_target"] == 40


def test_number_formatting():
    assert rp._fmt(None) == "—" and rp._fmt(float("inf")) == "—"
    assert rp._fmt(0.000123) == "1.23e-04" and rp._fmt(12.3456) == "12.3" and rp._fmt(3) == "3"
    assert rp._spread(None, [None, None]) == "not reached"
    assert rp._spread(2.0, [1.0, 3.0]) == "2 [1, 3]"
