"""The one comparator of the suite, and the parameter / gradient builders the tests share.

``assert_trees_close(actual, expected)`` checks structure (naming the first path where the trees
differ), then every leaf's dtype, shape and values, with a tolerance chosen per leaf dtype:

==========  ==========  ==========
dtype       rtol        atol
==========  ==========  ==========
float64     1e-12       1e-12
float32     2e-6        1e-6
float16     1e-3        1e-3
bfloat16    1e-2        1e-2
==========  ==========  ==========

Complex leaves use the tolerance of their real dtype; integer, boolean and PRNG-key leaves are
compared exactly. When the two dtypes differ (``check_dtype=False``: a float32 result against a
float64 reference) the looser tolerance of the two applies. Overrides, by keyword:

* ``rtol=`` / ``atol=``: for every floating dtype;
* ``float32=(rtol, atol)`` (any dtype name): for that dtype only;
* ``exact=True``: bit for bit (NaNs equal NaNs);
* ``check_dtype=False``, ``equal_nan=False``, ``label="..."`` (a prefix for the message).

Nothing here imports optcompose: the comparator is independent of the code under test.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

TOLERANCES: dict[str, tuple[float, float]] = {
    "float64": (1e-12, 1e-12),
    "float32": (2e-6, 1e-6),
    "float16": (1e-3, 1e-3),
    "bfloat16": (1e-2, 1e-2),
}
"""(rtol, atol) per real floating dtype; other float types (float8 ...) use bfloat16's."""

_OPTIONS = ("rtol", "atol", "exact", "check_dtype", "equal_nan", "label")


# ----------------------------------------------------------------------------------------------
# Tolerances.


def _real_name(dtype: Any) -> str:
    dtype = jnp.dtype(dtype)
    if jnp.issubdtype(dtype, jnp.complexfloating):
        return jnp.finfo(dtype).dtype.name
    return dtype.name


def tolerance(dtype: Any, **overrides: Any) -> tuple[float, float]:
    """(rtol, atol) for a leaf of ``dtype`` (see the module docstring for ``overrides``)."""
    name = _real_name(dtype)
    rtol, atol = TOLERANCES.get(name, TOLERANCES["bfloat16"])
    if name in overrides:
        rtol, atol = overrides[name]
    if overrides.get("rtol") is not None:
        rtol = overrides["rtol"]
    if overrides.get("atol") is not None:
        atol = overrides["atol"]
    return rtol, atol


def _check_overrides(overrides: Mapping[str, Any]) -> None:
    for key in overrides:
        if key not in _OPTIONS and key not in TOLERANCES:
            raise TypeError(f"unknown comparator option {key!r}; expected one of {_OPTIONS} or a dtype name")


# ----------------------------------------------------------------------------------------------
# Structure.


def _path(path: Sequence[Any]) -> str:
    return jax.tree_util.keystr(tuple(path)) or "<root>"


def _children(tree: Any) -> list[tuple[Any, Any]] | None:
    """One level of ``tree``: [(key, child)], or None when ``tree`` is a leaf."""
    flat, level = jax.tree_util.tree_flatten_with_path(tree, is_leaf=lambda node: node is not tree)
    if level.num_nodes == 1 and level.num_leaves == 1 and flat and flat[0][0] == ():
        return None
    return [(path[0], child) for path, child in flat]


def _describe(tree: Any) -> str:
    return "a leaf" if _children(tree) is None else f"a {type(tree).__name__} node"


def structure_difference(actual: Any, expected: Any, path: tuple[Any, ...] = ()) -> str:
    """The first path (depth first, in flattening order) where the two structures differ, or ''."""
    here = _path(path)
    got, want = _children(actual), _children(expected)
    if got is None and want is None:
        return ""
    if got is None or want is None or type(actual) is not type(expected):
        return f"at {here} actual has {_describe(actual)} but expected has {_describe(expected)}"
    got_keys, want_keys = [k for k, _ in got], [k for k, _ in want]
    if got_keys != want_keys:
        for key in want_keys:
            if key not in got_keys:
                return f"{_path((*path, key))} is expected but missing from actual"
        for key in got_keys:
            if key not in want_keys:
                return f"{_path((*path, key))} is in actual but not expected"
        return f"at {here} the keys come in another order ({got_keys} vs {want_keys})"
    if jax.tree.structure(actual, is_leaf=lambda n: n is not actual) != jax.tree.structure(
        expected, is_leaf=lambda n: n is not expected
    ):
        return f"at {here} the {type(actual).__name__} nodes differ in their static data"
    for (key, a), (_, e) in zip(got, want, strict=True):
        found = structure_difference(a, e, (*path, key))
        if found:
            return found
    return ""


# ----------------------------------------------------------------------------------------------
# Leaves.


def _is_key(x: Any) -> bool:
    return hasattr(x, "dtype") and jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key)


def _as_numpy(x: Any) -> np.ndarray:
    if _is_key(x):
        return np.asarray(jax.random.key_data(x))
    return np.asarray(x)


def _wide(x: np.ndarray) -> np.ndarray:
    if np.issubdtype(x.dtype, np.complexfloating):
        return x.astype(np.complex128)
    if x.dtype.kind in "biu":
        return x
    return x.astype(np.float64)


def leaf_difference(actual: Any, expected: Any, where: str = "<root>", **overrides: Any) -> str:
    """Describes how one leaf differs from the other beyond tolerance ('' when close)."""
    if _is_key(actual) != _is_key(expected):
        return f"{where}: one leaf is a PRNG key and the other is not"
    got, want = _as_numpy(actual), _as_numpy(expected)
    # A PRNG key's dtype (key<fry>) is no NumPy dtype: compare the keys' data and their key dtypes.
    got_dtype = actual.dtype if _is_key(actual) else jnp.dtype(getattr(actual, "dtype", got.dtype))
    want_dtype = expected.dtype if _is_key(expected) else jnp.dtype(getattr(expected, "dtype", want.dtype))
    if overrides.get("check_dtype", True) and got_dtype != want_dtype:
        return f"{where}: dtype {got_dtype}, expected {want_dtype}"
    if got.shape != want.shape:
        return f"{where}: shape {got.shape}, expected {want.shape}"
    if got.size == 0:
        return ""
    equal_nan = overrides.get("equal_nan", True)
    got64, want64 = _wide(got), _wide(want)
    inexact = [d for d in (got_dtype, want_dtype) if jnp.issubdtype(d, jnp.inexact)]
    if overrides.get("exact", False) or not inexact or _is_key(actual):
        bad = ~((got64 == want64) | (equal_nan & _both_nan(got64, want64)))
        rtol = atol = 0.0
    else:
        rtol, atol = max(tolerance(d, **overrides) for d in inexact)
        with np.errstate(invalid="ignore", over="ignore"):
            bad = ~np.isclose(got64, want64, rtol=rtol, atol=atol, equal_nan=equal_nan)
            # Infinities of the same sign are equal; isclose says so already.
    if not bad.any():
        return ""
    index = tuple(int(i) for i in np.argwhere(bad)[0]) if got64.ndim else ()
    with np.errstate(invalid="ignore", over="ignore"):
        error = np.abs(got64.astype(np.complex128) - want64.astype(np.complex128))
        error = np.where(np.isfinite(error), error, np.inf)
        scale = np.abs(want64.astype(np.complex128))
        relative = np.where(bad, error / np.where(scale > 0, scale, np.inf), 0.0)
    return (
        f"{where}: {int(bad.sum())} of {bad.size} values differ beyond rtol={rtol:g}, atol={atol:g} "
        f"(dtype {got_dtype}); first at index {index}: {got64[index]!r} vs expected {want64[index]!r}; "
        f"max abs error {float(np.max(np.where(bad, error, 0.0))):.3g}, max rel error {float(np.max(relative)):.3g}"
    )


def _both_nan(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    if a.dtype.kind in "biu":
        return np.zeros(a.shape, bool)
    return np.isnan(a) & np.isnan(b)


# ----------------------------------------------------------------------------------------------
# Trees.


def tree_difference(actual: Any, expected: Any, **overrides: Any) -> str:
    """The first difference between two pytrees ('' when they are close): structure, then leaves."""
    _check_overrides(overrides)
    label = overrides.get("label", "")
    label = f"{label}: " if label and not label.endswith(" ") else label
    found = structure_difference(actual, expected)
    if found:
        return f"{label}structures differ: {found}"
    paths = jax.tree_util.tree_flatten_with_path(expected)[0]
    for (path, want), got in zip(paths, jax.tree.leaves(actual), strict=True):
        found = leaf_difference(got, want, _path(path), **overrides)
        if found:
            return label + found
    return ""


def tree_allclose(actual: Any, expected: Any, **overrides: Any) -> bool:
    """Whether two pytrees have the same structure and leaves within each dtype's tolerance."""
    return not tree_difference(actual, expected, **overrides)


def assert_trees_close(actual: Any, expected: Any, **overrides: Any) -> None:
    """Asserts ``tree_allclose``; the message names the first differing path and by how much."""
    found = tree_difference(actual, expected, **overrides)
    assert not found, found


def assert_trees_equal(actual: Any, expected: Any, **overrides: Any) -> None:
    """Asserts equal structure, dtypes, shapes and bits (NaN equals NaN)."""
    assert_trees_close(actual, expected, exact=True, **overrides)


def assert_finite(tree: Any, label: str = "") -> None:
    """Every floating (or complex) leaf is finite everywhere; the message names the first bad path."""
    for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
        if _is_key(leaf):
            continue
        value = np.asarray(leaf)
        if np.issubdtype(value.dtype, np.inexact) or value.dtype.name in TOLERANCES:
            finite = np.isfinite(value.astype(np.complex128 if np.iscomplexobj(value) else np.float64))
            assert finite.all(), f"{label}{_path(path)}: {int((~finite).sum())} non-finite values"


def float_dtypes(tree: Any) -> set[Any]:
    """The set of floating dtypes among the leaves of ``tree``."""
    return {jnp.dtype(leaf.dtype) for leaf in jax.tree.leaves(tree) if jnp.issubdtype(leaf.dtype, jnp.floating)}


# ----------------------------------------------------------------------------------------------
# Builders shared by the module tests.

SMALL_SHAPES = {"w": (7, 5), "b": (5,), "s": ()}
"""A matrix, a vector and a scalar: the default parameter tree of the module tests."""
BIG_SHAPES = {"w": (300, 700), "b": (100_003,), "s": (), "e": (0,)}
"""Leaves big enough for the kernels to split them between threads, and an empty one."""


def random_params(shapes: Mapping[str, tuple[int, ...]] | None = None, seed: int = 0, dtype: Any = jnp.float32):
    """``{name: normal(shape)}`` in ``dtype``, reproducible from ``seed``."""
    rng = np.random.default_rng(seed)
    return {k: jnp.asarray(rng.normal(size=s), dtype) for k, s in (shapes or SMALL_SHAPES).items()}


def random_like(tree: Any, seed: int, scale: float = 1.0) -> Any:
    """Normal values shaped and typed like every leaf of ``tree`` (gradients for ``params``)."""
    rng = np.random.default_rng(seed)
    return jax.tree.map(lambda p: jnp.asarray(scale * rng.normal(size=np.shape(p)), jnp.result_type(p)), tree)


def full_like(tree: Any, value: float) -> Any:
    """Every leaf of ``tree`` filled with ``value`` (same shapes and dtypes; None stays None)."""
    return jax.tree.map(lambda p: jnp.full(np.shape(p), value, jnp.result_type(p)), tree)


def cast(tree: Any, dtype: Any) -> Any:
    """Every floating leaf of ``tree`` in ``dtype`` (the containers and None leaves kept)."""
    return jax.tree.map(lambda p: jnp.asarray(p, dtype) if jnp.issubdtype(jnp.result_type(p), jnp.inexact) else p, tree)
