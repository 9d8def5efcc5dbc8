"""optcompose.tree.get / set / get_all_with_path and NamedTupleKey (optcompose/tree/_lookup.py)."""

import collections

import jax
import jax.numpy as jnp
import jax.tree_util as jtu
import numpy as np
import optax
import pytest

import optcompose
import optcompose.tree as ours
import optcompose.tree_utils as ours_utils

theirs = optax.tree
theirs_utils = optax.tree_utils

Pair = collections.namedtuple("Pair", "a b")
Other = collections.namedtuple("Other", "count inner")

PARAMS = jnp.array([1.0, 2.0, 3.0])


def optax_states():
    """Optimizer states from Optax itself, plus hand-made trees covering the lookup rules."""
    schedule_opt = optax.inject_hyperparams(optax.sgd)(learning_rate=lambda count: 1 / (count + 1))
    return {
        "adam": optax.adam(1.0).init(PARAMS),
        "inject_sgd": optax.inject_hyperparams(optax.sgd)(learning_rate=42.0).init(PARAMS),
        "inject_schedule": schedule_opt.init(PARAMS),
        "chain": optax.chain(
            optax.inject_hyperparams(optax.sgd)(learning_rate=1.0),
            optax.chain(optax.adam(1.0), optax.inject_hyperparams(optax.adam)(learning_rate=1e-4)),
        ).init(PARAMS),
        "noise_adam": optax.chain(optax.add_noise(1.0, 0.9, 0), optax.scale_by_adam()).init(PARAMS),
        "nested_dict": {"a": {"a": 1.0}, "b": {"a": 1}},
        "mixed": {"hparams": {"learning_rate": 1.0}, "learning_rate": "foo"},
        "tuples": (Pair(a={"count": 1, "x": [2, {"count": 3}]}, b=None), [Other(count=4, inner=Pair(5, 6))]),
        "deep_quirk": {"count": 0, "y": {"z": {"count": 2}}, "l": [{"count": 7}]},
        "leaf": PARAMS,
        "empty": (),
    }


NAMES = ("count", "learning_rate", "a", "b", "mu", "inner", "ScaleByAdamState", "AddNoiseState", "Pair", "nope")


def plain(path):
    """A path with either library's NamedTupleKey turned into a comparable tuple."""
    return tuple(("NT", e.tuple_name, e.name) if type(e).__name__ == "NamedTupleKey" else e for e in path)


def same_values(got, want):
    got, want = ours.unwrap_random_key_data(got), theirs.unwrap_random_key_data(want)
    if jax.tree.structure(got) != jax.tree.structure(want):
        return False
    return all(
        type(g) is type(w) and np.array_equal(np.asarray(g), np.asarray(w))
        for g, w in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True)
    )


def filters(module):
    return {
        None: None,
        "arrays": lambda _, v: isinstance(v, jnp.ndarray),
        "tuples": lambda _, v: isinstance(v, tuple),
        "floats": lambda _, v: isinstance(v, float),
        "adam_only": lambda p, _: isinstance(p[-1], module.NamedTupleKey) and p[-1].tuple_name == "ScaleByAdamState",
    }


@pytest.mark.parametrize("state_name", list(optax_states()))
def test_get_all_with_path_matches_optax(state_name):
    tree = optax_states()[state_name]
    ours_filters, theirs_filters = filters(ours_utils), filters(theirs_utils)
    for name in NAMES:
        for label in ours_filters:
            got = ours.get_all_with_path(tree, name, ours_filters[label])
            want = theirs.get_all_with_path(tree, name, theirs_filters[label])
            assert [plain(p) for p, _ in got] == [plain(p) for p, _ in want], (name, label)
            assert all(same_values(g, w) for (_, g), (_, w) in zip(got, want, strict=True)), (name, label)
            for (path, _), (their_path, _) in zip(got, want, strict=True):
                assert jtu.keystr(path) == jtu.keystr(their_path)


@pytest.mark.parametrize("state_name", list(optax_states()))
def test_get_matches_optax(state_name):
    tree = optax_states()[state_name]
    ours_filters, theirs_filters = filters(ours_utils), filters(theirs_utils)
    for name in NAMES:
        for label in ours_filters:
            try:
                want = ("value", theirs.get(tree, name, "DEFAULT", theirs_filters[label]))
            except KeyError:
                want = ("KeyError", None)
            try:
                got = ("value", ours.get(tree, name, "DEFAULT", ours_filters[label]))
            except KeyError:
                got = ("KeyError", None)
            assert got[0] == want[0], (name, label)
            assert same_values(got[1], want[1]), (name, label)


SETTINGS = [
    ({"count": 2.0}, None),
    ({"learning_rate": 0.5}, None),
    ({"learning_rate": 0.5}, "floats"),
    ({"learning_rate": jnp.asarray(0.1)}, "arrays"),
    ({"learning_rate": 2.0, "b1": 3.0}, None),
    ({"a": 2.0}, "floats"),
    ({"a": {"c": 0.0}}, None),
    ({"count": jnp.array(42)}, "adam_only"),
    ({"AddNoiseState": optax.AddNoiseState(count=jnp.array(42), rng_key=jnp.array([4, 8], jnp.uint32))}, None),
    ({"Pair": "replaced"}, None),
    ({"inner": 0}, None),
    ({"mu": 1.0, "nope": 2}, None),
]


@pytest.mark.parametrize("state_name", list(optax_states()))
def test_set_matches_optax(state_name):
    tree = optax_states()[state_name]
    ours_filters, theirs_filters = filters(ours_utils), filters(theirs_utils)
    for kwargs, label in SETTINGS:
        try:
            want = ("value", theirs.set(tree, theirs_filters[label], **kwargs))
        except KeyError:
            want = ("KeyError", None)
        try:
            got = ("value", ours.set(tree, ours_filters[label], **kwargs))
        except KeyError:
            got = ("KeyError", None)
        assert got[0] == want[0], (kwargs, label)
        assert same_values(got[1], want[1]), (kwargs, label)


def test_set_keeps_optax_rule_for_names_below_nodes_without_them():
    tree = {"count": 0, "y": {"z": {"count": 2}}, "l": [{"count": 7}]}
    assert ours.set(tree, count=9) == {"count": 9, "y": {"z": {"count": 2}}, "l": [{"count": 7}]}
    assert ours.set({"y": {"z": {"count": 2}}}, count=9) == {"y": {"z": {"count": 9}}}


def test_get_and_set_on_optcompose_states():
    opt = optcompose.adam(0.1)
    params = {"w": jnp.ones(3)}
    state = opt.init(params)
    np.testing.assert_array_equal(ours.get(state, "mu")["w"], jnp.zeros(3))
    with pytest.raises(KeyError, match="multiple"):
        ours.get(state, "count")

    def adam_only(path, _):
        return isinstance(path[-1], ours.NamedTupleKey) and path[-1].tuple_name == "ScaleByAdamState"

    assert int(ours.get(state, "count", filtering=adam_only)) == 0
    new = ours.set(state, adam_only, count=jnp.asarray(3, jnp.int32))
    assert int(ours.get(new, "count", filtering=adam_only)) == 3
    assert int(new[1].count) == 0
    assert jax.tree.structure(new) == jax.tree.structure(state)
    paths = [jtu.keystr(p) for p, _ in ours.get_all_with_path(state, "learning_rate")]
    assert paths == ["[1]ScaleByLearningRateState.hyperparams['learning_rate']"]
    assert paths == [jtu.keystr(p) for p, _ in theirs.get_all_with_path(state, "learning_rate")]


def test_get_and_set_under_jit():
    opt = optax.inject_hyperparams(optax.sgd)(learning_rate=lambda x: 1 / (x + 1))
    state = opt.init(PARAMS)
    read = jax.jit(lambda s: ours.get(s, "learning_rate", filtering=lambda _, v: isinstance(v, jnp.ndarray)))
    write = jax.jit(lambda s, lr: ours.set(s, lambda _, v: isinstance(v, jnp.ndarray), learning_rate=lr))
    for i in range(3):
        state = write(state, 1.0 / (i + 1))
        assert float(read(state)) == pytest.approx(1.0 / (i + 1))
        _, state = opt.update(PARAMS, state)


def test_missing_names_raise_key_error():
    with pytest.raises(KeyError, match="no values matching 'foo'"):
        ours.set((), foo=1.0)
    with pytest.raises(KeyError, match="given the filtering"):
        ours.set({"foo": 1}, lambda _, v: False, foo=2)
    assert ours.get_all_with_path(PARAMS, "foo") == []
    assert ours.get({"a": 1}, "b") is None and ours.get({"a": 1}, "b", default=7.0) == 7.0


def test_named_tuple_key():
    key = ours.NamedTupleKey("ScaleByAdamState", "count")
    assert str(key) == "ScaleByAdamState.count"
    twin = ours.NamedTupleKey("ScaleByAdamState", "count")
    assert key == twin and hash(key) == hash(twin) and key != ours.NamedTupleKey("ScaleByAdamState", "mu")
    assert repr(key) == repr(theirs_utils.NamedTupleKey("ScaleByAdamState", "count"))
    with pytest.raises(AttributeError):
        key.name = "other"
    assert ours.NamedTupleKey is ours_utils.NamedTupleKey
