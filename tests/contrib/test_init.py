"""``optcompose.contrib`` is ``optax.contrib``: the same public names, signatures and state records."""

from __future__ import annotations

import inspect

import contrib_harness as h
import optax
import pytest

from optcompose import contrib

OPTAX_NAMES = sorted(name for name in dir(optax.contrib) if not name.startswith("_"))
FUNCTIONS = [name for name in OPTAX_NAMES if inspect.isfunction(getattr(optax.contrib, name))]
RECORDS = [name for name in OPTAX_NAMES if inspect.isclass(getattr(optax.contrib, name))]


def test_every_optax_contrib_name_exists_and_nothing_else_is_public():
    ours = sorted(name for name in dir(contrib) if not name.startswith("_"))
    assert ours == OPTAX_NAMES


@pytest.mark.parametrize("name", FUNCTIONS)
def test_signature_matches_optax(name):
    h.signature_matches(getattr(contrib, name), getattr(optax.contrib, name))


@pytest.mark.parametrize("name", RECORDS)
def test_record_fields_are_optax_fields_plus_hyperparams(name):
    ours, theirs = getattr(contrib, name), getattr(optax.contrib, name)
    fields = list(theirs._fields)
    assert list(ours._fields) in (fields, [*fields, "hyperparams"]), (ours._fields, fields)
    if name.endswith("DimensionNumbers"):
        assert ours() == tuple(theirs())  # same defaults


def test_no_optax_import():
    import subprocess
    import sys

    code = "import optcompose.contrib, sys; print('optax' in sys.modules, 'torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]
