"""Two processes on 127.0.0.1 (2 CPU devices each, gloo collectives) train as one process does.

The test launches tests/multiprocess_worker.py twice, with ``jax.distributed.initialize`` on a
free loopback port, and compares each process's final parameters with a one-process run of the
same optimizer on the full batch.
"""

import importlib.util
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import jax
import numpy as np
import pytest

WORKER = Path(__file__).with_name("multiprocess_worker.py")
ROOT = Path(__file__).resolve().parents[1]
TIMEOUT_S = 240


def _gloo_available():
    try:
        from jax._src.lib import _jax
    except ImportError:
        return False
    return hasattr(_jax, "make_gloo_tcp_collectives")


def _load_worker():
    spec = importlib.util.spec_from_file_location("multiprocess_worker", WORKER)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _single_process_reference(worker):
    tx = worker.make_tx()
    params = jax.tree.map(np.asarray, worker.init_params())
    state = tx.init(params)
    step = jax.jit(worker.make_step(tx))
    x, y = worker.make_data()
    for t in range(worker.STEPS):
        params, state = step(params, state, x[t], y[t])
    return params, state


@pytest.mark.slow
@pytest.mark.skipif(not _gloo_available(), reason="this jaxlib has no gloo CPU collectives")
def test_two_processes_train_like_one(tmp_path):
    worker = _load_worker()
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}  # conftest's 8 devices are not for workers
    env["JAX_PLATFORMS"] = "cpu"
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    port = _free_port()
    outs = [tmp_path / f"process{i}.npz" for i in range(2)]
    procs = [
        subprocess.Popen(
            [sys.executable, str(WORKER), str(i), "2", str(port), str(outs[i])],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for i in range(2)
    ]
    logs = []
    deadline = time.monotonic() + TIMEOUT_S  # one budget for both processes together
    try:
        for proc in procs:
            logs.append(proc.communicate(timeout=max(1.0, deadline - time.monotonic()))[0])
    except subprocess.TimeoutExpired:
        for proc in procs:
            proc.kill()
        pytest.fail(f"the 2-process run did not finish within {TIMEOUT_S} s")
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    for i, (proc, log) in enumerate(zip(procs, logs, strict=True)):
        assert proc.returncode == 0, f"process {i} failed:\n{log[-4000:]}"

    expected, expected_state = _single_process_reference(worker)
    results = [dict(np.load(out)) for out in outs]
    for name in ("hidden/kernel", "hidden/bias", "out/kernel", "out/bias"):
        first, second = (r[name] for r in results)
        np.testing.assert_array_equal(first, second)  # both processes hold the same replicated params
        group, leaf = name.split("/")
        np.testing.assert_allclose(first, np.asarray(expected[group][leaf]), rtol=1e-6, atol=1e-6)
    for r in results:
        assert int(r["count"]) == int(expected_state[0].count) == worker.STEPS
        # ZeRO-1 across processes: each process holds 2 of the 4 rows of Adam's first moment.
        assert int(r["mu_local_rows"]) == 2
