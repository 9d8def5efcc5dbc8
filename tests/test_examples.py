"""Smoke tests of the runnable examples (slow): each runs as a script with a tiny budget and writes PNGs.

The scripts start together (three at a time) in a module-scoped fixture, so the suite pays for
their imports and compilations once, in parallel; each test then checks one script's outcome.
"""

import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"

# script -> (tiny-budget flags, PNG files it must write)
RUNS = {
    "train_classifier.py": (["--epochs", "1"], ["training.png"]),
    "loss_landscape.py": (["--steps", "5"], ["trajectories.png", "losses.png"]),
    "lr_finder.py": (["--steps", "12", "--epochs", "1"], ["lr_find.png", "lr_find_and_training.png"]),
    "one_cycle_vs_cosine.py": (["--epochs", "1"], ["one_cycle_vs_cosine.png"]),
    "swa.py": (["--epochs", "2"], ["swa.png"]),
    "custom_optimizer.py": (["--epochs", "1"], ["lion_vs_adamw.png"]),
    "schedules.py": (["--steps", "40"], ["schedules.png"]),
}


def _environment():
    env = dict(os.environ)
    # The examples are single-device programs; conftest's 8 fake devices only slow their start.
    env["XLA_FLAGS"] = env.get("XLA_FLAGS", "").replace("--xla_force_host_platform_device_count=8", "").strip()
    env["JAX_PLATFORMS"] = "cpu"
    env["PYTHONPATH"] = os.pathsep.join([str(EXAMPLES.parent), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return env


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    root = tmp_path_factory.mktemp("examples")
    env = _environment()

    def run(script):
        flags, _ = RUNS[script]
        out = root / Path(script).stem
        completed = subprocess.run(
            [sys.executable, str(EXAMPLES / script), *flags, "--out", str(out)],
            capture_output=True,
            text=True,
            env=env,
            cwd=root,
            timeout=600,
        )
        return script, (completed, out)

    with ThreadPoolExecutor(max_workers=3) as pool:
        return dict(pool.map(run, RUNS))


@pytest.mark.slow
@pytest.mark.parametrize("script", list(RUNS))
def test_example_runs_and_writes_its_plots(finished, script):
    completed, out = finished[script]
    assert completed.returncode == 0, f"{script} failed:\n{completed.stdout[-3000:]}\n{completed.stderr[-3000:]}"
    for name in RUNS[script][1]:
        png = out / name
        assert png.is_file(), f"{script} did not write {png}"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "%" in completed.stdout or "final loss" in completed.stdout  # printed its summary


def test_lion_from_pieces_matches_optax_lion():
    optax = pytest.importorskip("optax")
    import jax
    import jax.numpy as jnp

    sys.path.insert(0, str(EXAMPLES))
    try:
        from custom_optimizer import lion
    finally:
        sys.path.remove(str(EXAMPLES))
    import optcompose as oc

    rng = np.random.RandomState(0)
    params = {"w": jnp.asarray(rng.randn(3, 2), jnp.float32), "b": jnp.asarray(rng.randn(2), jnp.float32)}
    ours, reference = lion(0.01, b1=0.8, b2=0.95, weight_decay=0.1), optax.lion(0.01, b1=0.8, b2=0.95, weight_decay=0.1)
    ours_params, ref_params = params, params
    ours_state, ref_state = ours.init(params), reference.init(params)
    for _ in range(5):
        grads = jax.tree.map(lambda p: jnp.asarray(rng.randn(*p.shape), jnp.float32), params)
        updates, ours_state = ours.update(grads, ours_state, ours_params)
        ours_params = oc.apply_updates(ours_params, updates)
        ref_updates, ref_state = reference.update(grads, ref_state, ref_params)
        ref_params = optax.apply_updates(ref_params, ref_updates)
    for name in params:
        np.testing.assert_allclose(np.asarray(ours_params[name]), np.asarray(ref_params[name]), rtol=1e-6, atol=1e-7)


@pytest.mark.slow
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


@pytest.mark.slow
def test_frontier_example_quick(tmp_path):
    # Six optimizers on two tasks with a tiny budget: both plots, and a finite table row per optimizer.
    # It is compilation, mostly (12 training steps of their own): about 2.5 minutes on 2 cores, 7.5
    # with two more busy processes. LLVM's optimization level 0 compiles about 40 % faster (3 minutes
    # at the default level), and a smoke test runs only a few steps.
    # It used to hang under load: Shampoo's batched eigh deadlocked XLA's CPU thread pool (jaxlib's
    # LAPACK kernels block a pool thread on their batch); tests/transforms/test_kronecker.py checks
    # that every decomposition now takes one matrix per call.
    env = _environment()
    env["XLA_FLAGS"] = f"{env['XLA_FLAGS']} --xla_backend_optimization_level=0".strip()
    command = [sys.executable, str(EXAMPLES / "frontier.py"), "--quick", "--out", str(tmp_path)]
    result = subprocess.run(command, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    for name in ("digits_cnn.png", "transformer.png"):
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    rows = {line.split()[0]: line.split()[1:] for line in result.stdout.splitlines() if line.split()}
    for name in ("AdamW", "Muon", "SOAP", "Shampoo", "C-AdamW", "MARS"):
        assert name in rows, f"no table row for {name}:\n{result.stdout[-3000:]}"
        cnn_loss, cnn_accuracy, seq_loss, seq_accuracy, seconds = rows[name]
        assert np.isfinite(float(cnn_loss)) and np.isfinite(float(seq_loss)) and float(seconds) > 0
        assert 0 <= float(cnn_accuracy.rstrip("%")) <= 100 and 0 <= float(seq_accuracy.rstrip("%")) <= 100
