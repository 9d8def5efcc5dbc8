"""``optcompose.projections`` has every public name of ``optax.projections`` (Optax 0.2.8), same signatures.

Also: ``TOP_LEVEL_NAMES`` lists the projections Optax exports at its top level (none), every function
is documented, and the library module imports nothing but JAX, NumPy, chex and the standard library.
"""

from __future__ import annotations

import ast
import inspect
import pathlib

import optax
import pytest

from optcompose import projections

OPTAX_NAMES = sorted(
    name
    for name in dir(optax.projections)
    if not name.startswith("_") and not inspect.ismodule(getattr(optax.projections, name))
)


def _parameters(function):
    return [(p.name, p.kind, p.default) for p in inspect.signature(function).parameters.values()]


def test_every_optax_projection_is_here():
    missing = [name for name in OPTAX_NAMES if not hasattr(projections, name)]
    assert not missing, f"missing from optcompose.projections: {missing}"
    ours = {name for name in dir(projections) if not name.startswith("_") and callable(getattr(projections, name))}
    assert ours == set(OPTAX_NAMES), f"not in optax.projections: {sorted(ours - set(OPTAX_NAMES))}"


@pytest.mark.parametrize("name", OPTAX_NAMES)
def test_signature_matches_optax(name):
    assert _parameters(getattr(projections, name)) == _parameters(getattr(optax.projections, name))


def test_top_level_names():
    expected = sorted(n for n in OPTAX_NAMES if getattr(optax, n, None) is getattr(optax.projections, n))
    assert sorted(projections.TOP_LEVEL_NAMES) == expected


@pytest.mark.parametrize("name", OPTAX_NAMES)
def test_documented(name):
    doc = inspect.getdoc(getattr(projections, name))
    assert doc and doc.splitlines()[0].strip(), name
    assert "Args:" in doc and "Returns:" in doc, name


def test_library_imports_only_jax_numpy_chex():
    allowed = ("jax", "numpy", "chex", "optcompose.projections", "__future__", "functools", "operator", "typing")
    for path in pathlib.Path(projections.__file__).parent.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                modules = [node.module]
            else:
                continue
            for module in modules:
                assert module.startswith(allowed), f"{path.name} imports {module}"
