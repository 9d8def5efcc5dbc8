"""The layering: ``import optcompose`` loads neither Flax nor Optax, and integrations load lazily."""

from __future__ import annotations

import subprocess
import sys


def _run(code: str) -> str:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()


def test_import_optcompose_loads_neither_flax_nor_optax():
    out = _run("import optcompose, sys; print('flax' in sys.modules, 'optax' in sys.modules, 'torch' in sys.modules)")
    assert out == "False False False"


def test_integrations_load_on_first_use():
    out = _run(
        "import sys, optcompose as oc; oc.TrainState; print('flax' in sys.modules); "
        "from optcompose import checkpoint; print(checkpoint.__name__)"
    )
    assert out.splitlines() == ["True", "optcompose.integrations.checkpoint"]
