"""Every public name of Optax 0.2.8 exists here at the same dotted path, or is a documented gap.

``NOT_CARRIED`` (``optcompose.NOT_CARRIED``) names what optcompose does not provide on purpose;
``KNOWN_GAPS`` what is not written yet. The test fails when a name goes missing and when a gap is
filled without being removed from the list, so the lists stay true.
"""

from __future__ import annotations

import importlib
import types

import pytest

import optcompose

optax = pytest.importorskip("optax")

NAMESPACES = ["", "transforms", "schedules", "tree", "tree_utils", "losses", "projections", "contrib"]
KNOWN_GAPS = {
    "": {"scale_by_distance_over_gradients"},
}


@pytest.mark.parametrize("namespace", NAMESPACES, ids=lambda n: n or "top")
def test_every_optax_name_is_here_or_documented(namespace):
    theirs = importlib.import_module("optax" + (f".{namespace}" if namespace else ""))
    ours = importlib.import_module("optcompose" + (f".{namespace}" if namespace else ""))
    missing = set()
    for name in dir(theirs):
        if name.startswith("_") or (not namespace and name in optcompose.NOT_CARRIED):
            continue
        value = getattr(theirs, name)
        if isinstance(value, types.ModuleType) and value.__name__.split(".")[0] != "optax":
            continue  # a module Optax happens to import (functools, typing), not a namespace of its own
        if not hasattr(ours, name):
            missing.add(name)
    assert missing == KNOWN_GAPS.get(namespace, set())


@pytest.mark.parametrize("name", sorted(optcompose.NOT_CARRIED))
def test_not_carried_names_say_where_to_get_them(name):
    with pytest.raises(optcompose.NotCarriedError, match=f"optcompose does not provide '{name}'.*optax"):
        getattr(optcompose, name)
    with pytest.raises(ImportError, match="does not provide"):
        exec(f"from optcompose import {name}")
