"""Smoke tests of the runnable examples: each runs as a script with a tiny budget and writes PNGs.

The scripts start together (three at a time) in a module-scoped fixture, so the suite pays for
their imports and compilations once, in parallel; each test then checks one script's outcome.
"""

import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"

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
