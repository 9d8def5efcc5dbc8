"""The public namespaces optcompose.tree and optcompose.tree_utils against optax.tree / optax.tree_utils."""

import inspect
import types

import optax
import pytest

import optcompose.tree as ours
import optcompose.tree_utils as ours_utils

OURS_ONLY = {"param_shaped_map", "param_shaped_paths", "param_shaped_subtree_map", "NamedTupleKey"}


def public_names(module):
    """Public names of a module, less the modules it happens to import (optax.tree_utils has functools)."""
    return sorted(
        name
        for name in dir(module)
        if not name.startswith("_") and not isinstance(getattr(module, name), types.ModuleType)
    )


PAIRS = [(optax.tree, ours), (optax.tree_utils, ours_utils)]
CASES = [(theirs, ours_ns, name) for theirs, ours_ns in PAIRS for name in public_names(theirs)]


@pytest.mark.parametrize("theirs, ours_ns", PAIRS, ids=["tree", "tree_utils"])
def test_every_optax_name_exists(theirs, ours_ns):
    missing = [name for name in public_names(theirs) if not hasattr(ours_ns, name)]
    assert not missing, f"{ours_ns.__name__} lacks {missing}"
    assert len(public_names(theirs)) >= 35


def test_no_unexpected_extra_names():
    assert set(public_names(ours)) - set(public_names(optax.tree)) == OURS_ONLY
    assert set(public_names(ours_utils)) == set(public_names(optax.tree_utils))
    assert sorted(ours.__all__) == public_names(ours)


def _parameters(fn):
    return [(p.name, p.kind, p.default) for p in inspect.signature(fn).parameters.values()]


@pytest.mark.parametrize("theirs, ours_ns, name", CASES, ids=[f"{t.__name__}.{n}" for t, _, n in CASES])
def test_signature_matches_optax(theirs, ours_ns, name):
    """Names, order, kinds (positional-only, keyword-only, *args) and defaults."""
    assert _parameters(getattr(ours_ns, name)) == _parameters(getattr(theirs, name))


def test_tree_utils_are_the_tree_functions():
    for name in public_names(optax.tree):
        assert getattr(ours_utils, f"tree_{name}") is getattr(ours, name)
    assert ours_utils.tree_map_params is ours.map_params
    assert ours.map_params.__name__ == "tree_map_params"


def test_our_own_helpers_have_the_documented_signatures():
    assert str(inspect.signature(ours.param_shaped_map)).startswith("(f: 'Callable[..., Any]', state: 'Any', params")
    assert [p.name for p in inspect.signature(ours.param_shaped_map).parameters.values()] == [
        "f",
        "state",
        "params",
        "rest",
        "transform_non_params",
    ]
    assert [p.name for p in inspect.signature(ours.param_shaped_paths).parameters.values()] == ["state", "params"]
    for fn in (ours.param_shaped_map, ours.param_shaped_paths):
        assert "optcompose's, not Optax's" in fn.__doc__
