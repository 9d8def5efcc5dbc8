"""optcompose/speed/kernels/_build.py: the library is cached by content and the cache heals itself.

A damaged or foreign library is rebuilt, never loaded.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
import textwrap

import pytest

from optcompose.speed import kernels
from optcompose.speed.kernels import _build as build

pytestmark = pytest.mark.skipif(not kernels.available(), reason="kernels unavailable")


def _built():
    """The library this process loaded (valid), and its cached path."""
    path = build._library_path(build._compiler_command())
    assert build._valid(path)
    return path


def _copy_cache(tmp_path):
    source = _built()
    target = tmp_path / source.name
    shutil.copy(source, target)
    shutil.copy(build._digest_path(source), build._digest_path(target))
    return target


def test_truncated_empty_and_foreign_libraries_are_not_valid(tmp_path):
    library = _copy_cache(tmp_path)
    assert build._valid(library)
    library.write_bytes(library.read_bytes()[: len(library.read_bytes()) // 2])  # truncated
    assert not build._valid(library)
    library.write_bytes(b"")  # zero bytes
    assert not build._valid(library)
    shutil.copy(sys.executable, library)  # another file under the cached name
    assert not build._valid(library)
    build._digest_path(library).unlink()
    assert not build._valid(library)


def test_cached_files_are_readable_by_everyone():
    path = _built()
    for file in (path, build._digest_path(path)):
        assert stat.S_IMODE(file.stat().st_mode) == 0o644, file
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o755


def test_a_failing_compiler_is_named_with_its_exit_status(tmp_path):
    with pytest.raises(kernels.KernelsUnavailableError, match=r"`false .*` exited with status 1"):
        build._build(["false"], tmp_path / "x.so")


def _run(code: str, **env: str) -> subprocess.CompletedProcess:
    environment = {**os.environ, **env}
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                          env=environment, timeout=600)  # fmt: skip


_PROBE = """
    import warnings
    warnings.simplefilter("error")
    from optcompose.speed import kernels
    print(kernels.available(), kernels.unavailable_reason())
"""


def test_a_valid_cached_library_loads_without_a_compiler(tmp_path):
    _copy_cache(tmp_path)
    result = _run(_PROBE, OPTCOMPOSE_CACHE_DIR=str(tmp_path), PATH="/nonexistent", CXX="")
    assert result.stdout.split()[0] == "True", result.stderr


@pytest.mark.slow
def test_a_damaged_library_is_rebuilt_by_one_process_under_a_lock(tmp_path):
    library = _copy_cache(tmp_path)
    library.write_bytes(b"\x7fELF truncated")  # would SIGBUS if loaded
    log = tmp_path / "compiles.log"
    wrapper = tmp_path / "cxx"
    wrapper.write_text(f"#!/bin/sh\necho run >> {log}\nexec c++ \"$@\"\n")
    wrapper.chmod(0o755)
    env = {"OPTCOMPOSE_CACHE_DIR": str(tmp_path), "CXX": str(wrapper)}
    # The wrapper is another compiler command, so another cache key: damage that file instead.
    key_path = _run("from optcompose.speed.kernels import _build as b; print(b._library_path(b._compiler_command()))", **env)  # noqa: E501
    damaged = key_path.stdout.strip()
    shutil.copy(library, damaged)
    shutil.copy(build._digest_path(library), build._digest_path(type(library)(damaged)))
    processes = [
        subprocess.Popen([sys.executable, "-c", textwrap.dedent(_PROBE)], env={**os.environ, **env},
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]  # fmt: skip
    outputs = [p.communicate(timeout=600) for p in processes]
    assert all(out.split()[0] == "True" for out, _ in outputs), outputs
    assert log.read_text().count("run") == 1


def test_build_caches_the_library_by_content(monkeypatch, tmp_path):
    monkeypatch.setenv("OPTCOMPOSE_CACHE_DIR", str(tmp_path))
    command = build._compiler_command()
    path = build._library_path(command)
    assert path.parent == tmp_path and path.name.startswith("optimizer_steps-")
    monkeypatch.setenv("CXX", command[0] + " ")  # same compiler, same key
    assert build._library_path(build._compiler_command()) == path
