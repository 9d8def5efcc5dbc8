"""optcompose.tree.cast / cast_like / dtype (optcompose/tree/_casting.py) against optax.tree."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import optcompose.tree as ours

theirs = optax.tree


def build(b, c, dtype=None):
    tree = {"a": {"b": jnp.array(b)}, "c": jnp.array(c), "n": None}
    return tree if dtype is None else jax.tree.map(lambda x: x.astype(dtype), tree)


def assert_same(got, want):
    assert jax.tree.structure(got) == jax.tree.structure(want)
    for g, w in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True):
        assert g.dtype == w.dtype
        np.testing.assert_array_equal(np.asarray(g), np.asarray(w))


@pytest.mark.parametrize("dtype", [jnp.float16, jnp.bfloat16, jnp.float32, jnp.int32, jnp.complex64, None], ids=str)
@pytest.mark.parametrize("jit", [False, True], ids=["eager", "jit"])
def test_cast_matches_optax(dtype, jit):
    tree = build([1.3, 2.001, 3.6], [-3.3, 0.5, 7.0])
    cast = (lambda f: jax.jit(f, static_argnums=1)) if jit else (lambda f: f)
    got, want = cast(ours.cast)(tree, dtype), cast(theirs.cast)(tree, dtype)
    assert_same(got, want)
    if dtype is None and not jit:
        assert got is tree


@pytest.mark.parametrize("dtype", [jnp.float16, jnp.bfloat16, jnp.float32, jnp.int32], ids=str)
@pytest.mark.parametrize("jit", [False, True], ids=["eager", "jit"])
def test_cast_like_matches_optax(dtype, jit):
    tree = build([1.3, 2.001, 3.6], [-3.3, 0.5, 7.0])
    target = build([0.0, 0.0, 0.0], [0.0, 0.0, 0.0], dtype)
    maybe_jit = jax.jit if jit else (lambda f: f)
    assert_same(maybe_jit(ours.cast_like)(tree, target), maybe_jit(theirs.cast_like)(tree, target))


def test_cast_like_skips_reference_leaves_without_dtype():
    tree = {"a": jnp.ones(3), "b": jnp.ones(3)}
    other = {"a": 1.0, "b": jnp.zeros(3, jnp.bfloat16)}
    got = ours.cast_like(tree, other)
    assert got["a"].dtype == jnp.float32 and got["b"].dtype == jnp.bfloat16
    assert_same(got, theirs.cast_like(tree, other))


def test_cast_beyond_optax_numbers_and_structs():
    """Python numbers and ShapeDtypeStruct leaves: Optax needs ``astype``; ours converts them."""
    got = ours.cast({"x": 1.5, "s": jax.ShapeDtypeStruct((2, 3), jnp.float32)}, jnp.bfloat16)
    assert got["x"].dtype == jnp.bfloat16 and float(got["x"]) == 1.5
    assert got["s"] == jax.ShapeDtypeStruct((2, 3), jnp.bfloat16)
    with pytest.raises(AttributeError):
        theirs.cast({"x": 1.5}, jnp.bfloat16)


TREES = {
    "same": {"a": {"b": jnp.array(1.0, jnp.float32)}, "c": jnp.array(2.0, jnp.float32)},
    "f16_f32": {"a": {"b": jnp.array(1.0, jnp.float16)}, "c": jnp.array(2.0, jnp.float32)},
    "bf16_f16": {"a": jnp.array(1.0, jnp.bfloat16), "c": jnp.array(2.0, jnp.float16)},
    "i32_u32": {"a": {"b": jnp.array(1, jnp.int32)}, "c": jnp.array(2, jnp.uint32)},
    "int_float_complex": [jnp.array(1, jnp.int8), jnp.ones(2, jnp.float16), jnp.ones(1, jnp.complex64)],
    "python": {"a": 1.0, "b": 2, "c": None},
    "numpy64": {"a": np.ones(2), "b": np.ones(2, np.float32)},
}


def outcome(fn):
    try:
        return "value", fn()
    except ValueError:
        return "ValueError", None


@pytest.mark.parametrize("name", TREES)
@pytest.mark.parametrize("handler", [None, "promote", "highest", "lowest", "bogus"])
def test_dtype_matches_optax(name, handler):
    tree = TREES[name]
    assert outcome(lambda: ours.dtype(tree, handler)) == outcome(lambda: theirs.dtype(tree, handler))


def test_dtype_errors_name_the_path():
    tree = {"a": {"b": jnp.ones(1, jnp.float16)}, "c": jnp.ones(1), "d": [jnp.ones(2, jnp.int32)]}
    with pytest.raises(ValueError, match=r"(?s)for \['c'\] but got float32.*for \['d'\]\[0\] but got int32"):
        ours.dtype(tree)
    with pytest.raises(ValueError, match="Cannot compare"):
        ours.dtype(TREES["bf16_f16"], "highest")
    with pytest.raises(ValueError, match="mixed_dtype_handler"):
        ours.dtype(TREES["same"], "bogus")


@pytest.mark.parametrize("tree", [(), {}, None, {"a": [None, ()]}], ids=repr)
def test_dtype_of_empty_tree_is_jax_default(tree):
    for handler in (None, "promote", "highest", "lowest", "bogus"):
        assert ours.dtype(tree, handler) == theirs.dtype(tree, handler) == jnp.asarray(1.0).dtype
    with jax.enable_x64(True):
        assert ours.dtype(tree) == theirs.dtype(tree) == jnp.float64


def test_dtype_under_x64_and_for_structs():
    with jax.enable_x64(True):
        tree = {"a": np.ones(2), "b": jnp.ones(2, jnp.float64)}
        assert ours.dtype(tree) == theirs.dtype(tree) == jnp.float64
        mixed = {"a": jnp.ones(2, jnp.float32), "b": jnp.ones(2, jnp.float64)}
        assert ours.dtype(mixed, "highest") == theirs.dtype(mixed, "highest") == jnp.float64
        assert ours.dtype(mixed, "lowest") == jnp.float32
    structs = {"w": jax.ShapeDtypeStruct((3,), jnp.bfloat16), "b": jax.ShapeDtypeStruct((), jnp.float32)}
    assert ours.dtype(structs, "promote") == jnp.float32
    assert ours.dtype(structs, "lowest") == jnp.bfloat16
