"""Smoke test: examples/data_parallel.py runs a few steps end to end and writes its plot."""

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_data_parallel_example_smoke(tmp_path):
    path = os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env = {**os.environ, "PYTHONPATH": path}
    command = [
        sys.executable, str(ROOT / "examples" / "data_parallel.py"),
        "--steps", "2", "--devices", "4", "--batch-size", "16", "--model", "mlp", "--out", str(tmp_path),
    ]
    result = subprocess.run(command, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-4000:]
    assert (tmp_path / "data_parallel.png").stat().st_size > 10_000
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["steps"] == 2 and summary["pmap_replicas_bitwise_identical"]
    assert max(summary["max_param_difference_vs_single"].values()) < 1e-5
    memory = summary["optimizer_state_bytes_per_device"]
    assert memory["ZeRO-1 (mesh)"] < memory["replicated (pmap)"] / 2
