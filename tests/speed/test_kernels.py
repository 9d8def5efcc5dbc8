"""The kernels' scalar vectors are named once: the Python NamedTuples equal the C++ structs."""

from __future__ import annotations

import re
import shutil
import subprocess

import jax
import pytest

from optcompose.speed.kernels import _build as build
from optcompose.speed.kernels import _calls as calls


def _structs(source: str) -> dict[str, list[str]]:
    """``{name: [field, ...]}`` for every ``struct XScalars [: Base] { float a, b; ... };`` in the C++."""
    found: dict[str, list[str]] = {}
    for name, base, body in re.findall(r"struct (\w+Scalars)\s*(?::\s*(\w+))?\s*\{([^}]*)\}", source):
        fields = found.get(base, []) if base else []
        for declaration in body.split(";"):
            declaration = declaration.strip()
            if declaration:
                assert declaration.startswith("float "), declaration
                fields = fields + [f.strip() for f in declaration[len("float ") :].split(",")]
        found[name] = fields
    return found


@pytest.mark.parametrize("scalars", [calls.AdamScalars, calls.LambScalars, calls.SgdScalars], ids=lambda c: c.__name__)
def test_python_scalars_match_the_cpp_struct(scalars):
    structs = _structs(build.SOURCE.read_text())
    assert structs[scalars.__name__] == list(scalars._fields)


def test_the_parser_sees_every_struct():
    assert set(_structs(build.SOURCE.read_text())) == {"AdamScalars", "LambScalars", "SgdScalars"}


def _gcc(command: list[str]) -> bool:
    try:
        version = subprocess.run([*command, "--version"], capture_output=True, text=True, check=False).stdout
    except OSError:
        return False
    return "Free Software Foundation" in version or version.startswith(("g++", "c++ (GCC"))


@pytest.mark.slow
def test_every_element_loop_is_vectorized(tmp_path):
    """The per-element loops compile to SIMD code with the package's own flags.

    A loop that stops vectorizing runs at scalar speed, 2-3x slower than XLA's fusions: this is what
    happened when the eps=0 guard ``denominator == 0 ? 0 : mu_hat / denominator`` went in, on CPUs
    without AVX-512 masked division (GCC kept the branch under -ftrapping-math). The loops are the
    ``for`` lines marked ``// element loop`` in the source; GCC reports each vectorized loop.
    """
    command = build._compiler_command()
    if shutil.which(command[0]) is None or not _gcc(command):
        pytest.skip("the vectorization report is read from GCC's -fopt-info")
    source = build.SOURCE.read_text().splitlines()
    marked = {
        number: line.split("// element loop:")[1].strip()
        for number, line in enumerate(source, 1)
        if "// element loop:" in line
    }
    assert set(marked.values()) == {"adam", "lamb pass 1", "lamb pass 2", "sgd"}
    full = [
        *command,
        *build.FLAGS,
        "-isystem",
        jax.ffi.include_dir(),
        str(build.SOURCE),
        "-o",
        str(tmp_path / "k.so"),
        "-fopt-info-vec-optimized",
    ]
    report = subprocess.run(full, capture_output=True, text=True, check=True).stderr
    vectorized = {int(n) for n in re.findall(rf"{build.SOURCE.name}:(\d+):\d+: optimized: loop vectorized", report)}
    missing = {name: number for number, name in marked.items() if number not in vectorized}
    assert not missing, f"element loops not vectorized (name: line): {missing}"
