"""The command line end to end: --quick, a custom optimizer file written here, a broken one."""

import json

import pytest

from optcompose.arena import __main__ as cli
from optcompose.arena import _run as driver

OPTIMIZER_FILE = '''
import optcompose as oc

SEARCH_SPACE = {"learning_rate": ("log", 1e-4, 1e-2)}


def make_opt(learning_rate=1e-3, momentum=0.9, total_steps=None):
    """Heavy ball with a constant learning rate."""
    assert total_steps is not None
    return oc.sgd(learning_rate, momentum=momentum)


def broken(learning_rate=1e-3):
    raise RuntimeError("this optimizer is broken")


def with_attribute(learning_rate=1e-3):
    return oc.sgd(learning_rate)


with_attribute.search_space = {"learning_rate": ("log", 1e-3, 1e-1)}
with_attribute.arena_name = "mine"
'''


@pytest.fixture
def optimizer_file(tmp_path):
    path = tmp_path / "my_opt.py"
    path.write_text(OPTIMIZER_FILE)
    return path


def test_cli_quick_with_a_custom_optimizer(tmp_path, optimizer_file, capsys):
    out = tmp_path / "arena"
    code = cli.main(["--optimizer", f"{optimizer_file}:make_opt", "--optimizer", f"{optimizer_file}:broken,NAdamW",
                     "--no-baselines", "--workloads", "ravine", "--ruleset", "tuned", "--trials", "2", "--seeds", "2",
                     "--quick", "--out", str(out), "--no-progress", "--no-plots"])
    assert code == 0
    board = json.loads((out / "leaderboard.json").read_text())
    assert set(board["optimizers"]) == {"my_opt:make_opt", "my_opt:broken", "NAdamW"}
    for name, row in board["optimizers"].items():
        assert {"score", "score_steps", "geomean_speedup", "workloads"} <= set(row), name
        entry = row["workloads"]["ravine"]
        for key in ("steps_to_target", "time_to_target_s", "compile_s", "final_metric", "reached", "sharpness",
                    "recompiles", "state_bytes_per_param"):
            assert key in entry, (name, key)
    mine = board["optimizers"]["my_opt:make_opt"]["workloads"]["ravine"]
    assert mine["trials"] == 4 and mine["recompiles"] == 0 and mine["sharpness"] is not None
    assert all(h["learning_rate"] <= 1e-2 for h in mine["hyperparams"])  # tuned in the file's SEARCH_SPACE
    broken = board["optimizers"]["my_opt:broken"]
    assert broken["workloads"]["ravine"]["reached"] is False and broken["score"] == 0.0
    assert "this optimizer is broken" in json.dumps(broken["workloads"]["ravine"])
    md = (out / "leaderboard.md").read_text()
    assert "my_opt:make_opt" in md and "Failures" in md
    assert not list(out.glob("*.png"))  # --no-plots (test_report covers the plots)
    assert "ranking" in capsys.readouterr().out


def test_loading_submissions(optimizer_file):
    sub = driver.load_submission(f"{optimizer_file}:with_attribute")
    assert sub.name == "mine" and set(sub.search_space) == {"learning_rate"}
    sub = driver.load_submission(f"{optimizer_file}:make_opt")
    assert sub.search_space == {"learning_rate": ("log", 1e-4, 1e-2)} and sub.description.startswith("Heavy ball")
    assert driver.load_submission("optcompose.arena._rulesets:adamw_baseline").name == "_rulesets:adamw_baseline"
    with pytest.raises(ValueError, match="file.py:function"):
        driver.load_submission("no_colon_here")
    with pytest.raises(AttributeError):
        driver.load_submission(f"{optimizer_file}:missing")
    chosen = driver.resolve_submissions("adamw,oc.sgd", baselines=True)
    assert list(chosen)[:4] == ["AdamW", "NAdamW", "Nesterov", "HeavyBall"] and {"oc.adamw", "oc.sgd"} <= set(chosen)
    with pytest.raises(KeyError, match="known"):
        driver.resolve_submissions(["nonexistent_optimizer"])


def test_list(capsys):
    assert cli.main(["--list"]) == 0
    out = capsys.readouterr().out
    assert "mlp_digits" in out and "NAdamW" in out and "oc.adamw" in out


@pytest.mark.slow
def test_worker_processes_give_the_same_leaderboard(tmp_path, optimizer_file):
    from optcompose import arena

    common = dict(workloads="ravine,saddle", ruleset="defaults", seeds=1, quick=True, baselines=False,
                  progress=False, plots=False)
    optimizers = ["NAdamW", f"{optimizer_file}:make_opt"]
    one = arena.run(optimizers, out=tmp_path / "one", workers=1, **common)
    two = arena.run(optimizers, out=tmp_path / "two", workers=2, **common)
    for name in one["optimizers"]:
        for w, entry in one["optimizers"][name]["workloads"].items():
            other = two["optimizers"][name]["workloads"][w]
            assert entry["final_metric"] == pytest.approx(other["final_metric"], rel=1e-5)
            assert entry["steps_to_target"] == other["steps_to_target"]
