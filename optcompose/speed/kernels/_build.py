"""Compiles ``optimizer_steps.cc`` once per machine and registers its handlers as XLA:CPU FFI targets.

The shared library is cached in ``$OPTCOMPOSE_CACHE_DIR`` (default ``~/.cache/optcompose``), under a
name keyed by the source, the compiler command, jaxlib's version and the CPU's instruction-set
flags, so an upgrade or another machine rebuilds it. The compiler is ``$CXX`` or ``c++`` (g++ or
clang++ with C++17); the FFI headers ship with jaxlib (``jax.ffi.include_dir()``).

Set ``OPTCOMPOSE_KERNELS=0`` to never build or use the kernels: ``optcompose.step`` then runs the
same numbers through XLA's own fusions (slower on CPU; see ``benchmarks/README.md``). Without a
compiler the same fallback happens, with one ``RuntimeWarning`` that says why.

The cache is self-healing: each library is written with its SHA-256 digest beside it and loaded
only when the digest matches (a truncated, empty or foreign file is rebuilt, never loaded); a
valid cached library loads without a compiler on PATH; concurrent processes build it once, under
a file lock; files are readable by everyone (0644, directories 0755), so a cache can be shared.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import hashlib
import os
import platform
import shlex
import shutil
import subprocess
import tempfile
import threading
import warnings
from pathlib import Path

import jax
import jaxlib

SOURCE = Path(__file__).with_name("optimizer_steps.cc")
TARGETS = {"optcompose_adam": "OptcomposeAdam", "optcompose_lamb": "OptcomposeLamb", "optcompose_sgd": "OptcomposeSgd"}
# -ffp-contract=off keeps the transforms' float32 op order (no FMAs). -fno-trapping-math only drops the
# promise to keep floating-point exception flags exact (nothing reads them), and lets GCC turn the eps=0
# select into SIMD code on CPUs without masked division (AVX2, NEON); without it the element loops stay
# scalar and run 2-3x slower (tests/speed/test_kernels.py checks GCC's vectorization report).
FLAGS = (
    "-O3",
    "-march=native",
    "-std=c++17",
    "-ffp-contract=off",
    "-fno-math-errno",
    "-fno-trapping-math",
    "-shared",
    "-fPIC",
    "-w",
)

_lock = threading.Lock()
_state: dict[str, object] = {}


class KernelsUnavailableError(RuntimeError):
    """The kernels could not be built or loaded here (no compiler, disabled, ...)."""


def _cache_dir() -> Path:
    configured = os.environ.get("OPTCOMPOSE_CACHE_DIR")
    if configured:
        return Path(configured)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "optcompose"


def _cpu_flags() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            for line in cpuinfo:
                if line.startswith(("flags", "Features")):
                    return line
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _compiler_command() -> list[str]:
    return shlex.split(os.environ.get("CXX", "")) or ["c++"]


def _library_path(command: list[str]) -> Path:
    key = hashlib.sha256()
    for part in (
        SOURCE.read_bytes(),
        " ".join(command + list(FLAGS)).encode(),
        jaxlib.__version__.encode(),
        _cpu_flags().encode(),
    ):
        key.update(part)
        key.update(b"\0")
    return _cache_dir() / f"optimizer_steps-{key.hexdigest()[:16]}.so"


def _digest_path(library: Path) -> Path:
    return library.with_suffix(".sha256")


def _file_digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _valid(library: Path) -> bool:
    """The cached library is whole: it exists and matches the digest written when it was built.

    A truncated or zero-byte file, or another file put under the cached name, fails this check and
    is rebuilt instead of being loaded (loading a truncated library kills the process with SIGBUS).
    """
    digest = _digest_path(library)
    try:
        return library.stat().st_size > 0 and digest.read_text().strip() == _file_digest(library)
    except OSError:
        return False


def _make_dir(path: Path) -> None:
    path.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(OSError):  # a shared cache owned by someone else
        path.chmod(0o755)


def _build(command: list[str], target: Path) -> None:
    _make_dir(target.parent)
    # Built beside the target and renamed into place, so concurrent processes never load half a file.
    handle, partial = tempfile.mkstemp(suffix=".so", dir=target.parent)
    os.close(handle)
    try:
        full = [*command, *FLAGS, "-isystem", jax.ffi.include_dir(), str(SOURCE), "-o", partial]
        result = subprocess.run(full, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            output = (result.stderr or result.stdout or "(no output)")[-2000:]
            raise KernelsUnavailableError(
                f"compiling {SOURCE.name} failed: `{shlex.join(full)}` exited with status {result.returncode}:\n"
                f"{output}"
            )
        os.chmod(partial, 0o644)
        digest = _file_digest(Path(partial))
        os.replace(partial, target)
        digest_file = _digest_path(target)
        digest_file.write_text(digest + "\n")
        digest_file.chmod(0o644)
    finally:
        if os.path.exists(partial):
            os.unlink(partial)


def _load() -> None:
    if os.environ.get("OPTCOMPOSE_KERNELS", "1").strip().lower() in {"0", "false", "no", "off"}:
        raise KernelsUnavailableError("disabled by OPTCOMPOSE_KERNELS=0")
    command = _compiler_command()
    path = _library_path(command)
    if not _valid(path):
        if shutil.which(command[0]) is None:
            raise KernelsUnavailableError(f"no C++ compiler: {command[0]!r} is not on PATH (set CXX)")
        _make_dir(path.parent)
        # One process builds; the others wait for it and then find a valid library.
        with open(path.with_suffix(".lock"), "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                if not _valid(path):
                    _build(command, path)
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)
    library = ctypes.cdll.LoadLibrary(str(path))
    try:
        handlers = {name: getattr(library, symbol) for name, symbol in TARGETS.items()}
    except AttributeError as err:
        raise KernelsUnavailableError(f"{path} is not optcompose's kernel library ({err}); delete it") from None
    for name, handler in handlers.items():
        jax.ffi.register_ffi_target(name, jax.ffi.pycapsule(handler), platform="cpu")
    _state["library"] = library  # keeps the handlers' code mapped for the life of the process


def ensure_registered() -> None:
    """Builds (first time on this machine) and registers the kernels; raises ``KernelsUnavailableError``."""
    with _lock:
        if "library" in _state:
            return
        if "error" in _state:
            raise KernelsUnavailableError(_state["error"])
        try:
            _load()
        except (KernelsUnavailableError, OSError) as err:
            _state["error"] = str(err)
            if not str(err).startswith("disabled"):
                warnings.warn(
                    f"optcompose: the CPU step kernels are unavailable ({err}); optcompose.step falls back "
                    "to XLA's fusions, with the same numbers but more passes over memory",
                    RuntimeWarning,
                    stacklevel=3,
                )
            raise KernelsUnavailableError(str(err)) from None


def available() -> bool:
    """Whether the kernels are (or can be) built and registered in this process."""
    try:
        ensure_registered()
    except KernelsUnavailableError:
        return False
    return True


def unavailable_reason() -> str | None:
    """Why ``available()`` is False (``None`` when it is True)."""
    return None if available() else str(_state.get("error"))
