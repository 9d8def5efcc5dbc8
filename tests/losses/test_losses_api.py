"""``optcompose.losses`` has every public name of ``optax.losses`` (Optax 0.2.8), with the same signatures.

Also: ``TOP_LEVEL_NAMES`` lists exactly the losses Optax exports at its top level, every function is
documented (summary, Args, Returns), and the library modules import nothing but JAX, NumPy, chex,
the standard library and their own package.
"""

from __future__ import annotations

import ast
import inspect
import pathlib

import optax
import pytest
from jax.scipy.special import logsumexp

from optcompose import losses

OPTAX_NAMES = sorted(
    name for name in dir(optax.losses) if not name.startswith("_") and not inspect.ismodule(getattr(optax.losses, name))
)
ALLOWED_IMPORTS = ("jax", "numpy", "chex", "optcompose.losses", "optcompose.projections", "__future__")
STDLIB = ("collections", "functools", "math", "operator", "typing", "warnings")


def _parameters(function):
    return [(p.name, p.kind, p.default) for p in inspect.signature(function).parameters.values()]


def test_every_optax_loss_is_here():
    missing = [name for name in OPTAX_NAMES if not hasattr(losses, name)]
    assert not missing, f"missing from optcompose.losses: {missing}"
    ours = {name for name in dir(losses) if not name.startswith("_") and callable(getattr(losses, name))}
    assert ours == set(OPTAX_NAMES), f"not in optax.losses: {sorted(ours - set(OPTAX_NAMES))}"


@pytest.mark.parametrize("name", OPTAX_NAMES)
def test_signature_matches_optax(name):
    assert _parameters(getattr(losses, name)) == _parameters(getattr(optax.losses, name))


def test_fenchel_young_loss_signature_matches_optax():
    ours = losses.make_fenchel_young_loss(logsumexp)
    theirs = optax.losses.make_fenchel_young_loss(logsumexp)
    assert _parameters(ours) == _parameters(theirs)


def test_top_level_names():
    expected = sorted(name for name in OPTAX_NAMES if getattr(optax, name, None) is getattr(optax.losses, name))
    assert sorted(losses.TOP_LEVEL_NAMES) == expected
    assert len(set(losses.TOP_LEVEL_NAMES)) == len(losses.TOP_LEVEL_NAMES)


@pytest.mark.parametrize("name", OPTAX_NAMES)
def test_documented(name):
    doc = inspect.getdoc(getattr(losses, name))
    assert doc and doc.splitlines()[0].strip(), name
    assert "Args:" in doc and "Returns:" in doc, name


def test_library_imports_only_jax_numpy_chex():
    for path in pathlib.Path(losses.__file__).parent.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                modules = [node.module]
            else:
                continue
            for module in modules:
                top = module.split(".")[0]
                assert module.startswith(ALLOWED_IMPORTS) or top in STDLIB, f"{path.name} imports {module}"
