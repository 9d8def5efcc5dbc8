"""The contrib helpers: per-leaf options, matrix views, norms in any dtype, state adapters."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from optcompose.contrib._common import (
    MatrixView,
    Option,
    per_leaf_options,
    tree_l1,
    tree_norm,
    tree_squared_norm,
    tree_vdot,
)
from optcompose.contrib._newton_schulz import MuonDimensionNumbers
from optcompose.transforms._partition import MaskedNode

is_dims = lambda x: isinstance(x, MuonDimensionNumbers)


def test_per_leaf_options_broadcast_prefixes_and_keep_masked_nodes():
    tree = {"a": jnp.zeros((2, 3)), "b": {"c": jnp.zeros(2), "d": jnp.zeros((2, 2))}, "e": MaskedNode()}
    dims = MuonDimensionNumbers(1, 0)
    options = per_leaf_options({"a": dims, "b": None, "e": None}, tree, is_dims)
    leaves = jax.tree.leaves(options, is_leaf=lambda x: isinstance(x, Option))
    assert [o.value for o in leaves] == [dims, None, None]
    assert isinstance(options["e"], MaskedNode)
    assert per_leaf_options(lambda t: dims, tree, is_dims)["b"]["c"].value == dims
    with pytest.raises(ValueError, match="prefix"):
        per_leaf_options({"zzz": dims}, tree, is_dims)


def test_matrix_view_round_trip_and_fans():
    x = jnp.arange(2 * 3 * 4 * 5.0).reshape(2, 3, 4, 5)
    view = MatrixView(x.shape, reduction_axis=(1, 3), output_axis=2)
    assert view.flat == (2, 15, 4) and (view.fan_in, view.fan_out) == (15, 4)
    np.testing.assert_array_equal(np.asarray(view.from_matrices(view.to_matrices(x))), np.asarray(x))
    with pytest.raises(ValueError, match="disjoint"):
        MatrixView((2, 3), 0, -2)
    with pytest.raises(ValueError, match="out of range"):
        MatrixView((2, 3), 0, 2)
    with pytest.raises(ValueError, match="neither"):
        MatrixView((2, 3, 4), 0, 1, allow_batch=False)


def test_reductions_in_float32_and_float64_and_complex():
    tree = {"a": jnp.asarray([3.0, -4.0]), "b": jnp.asarray(12.0, jnp.bfloat16)}
    assert float(tree_norm(tree)) == pytest.approx(13.0)
    assert float(tree_squared_norm(tree)) == pytest.approx(169.0)
    assert float(tree_l1(tree)) == pytest.approx(19.0)
    big = jax.tree.map(lambda x: x.astype(jnp.float32) * 1e30, tree)
    assert float(tree_norm(big)) == pytest.approx(1.3e31, rel=1e-6)
    tiny = jax.tree.map(lambda x: x.astype(jnp.float32) * 1e-30, tree)
    assert float(tree_norm(tiny)) == pytest.approx(1.3e-29, rel=1e-6)
    z = {"z": jnp.asarray([1 + 2j, 3 - 1j], jnp.complex64)}
    assert float(tree_vdot(z, z)) == pytest.approx(15.0)  # Re <z, z> = |z|^2
    with jax.enable_x64(True):
        x = {"a": jnp.asarray([1.0 + 1e-12, 1.0], jnp.float64)}
        assert tree_vdot(x, x, jnp.float64).dtype == jnp.float64
        assert float(tree_vdot(x, x, jnp.float64)) == 2.0 + 2e-12 + 1e-24
    with pytest.raises(TypeError, match="int32"):
        tree_l1({"i": jnp.ones(2, jnp.int32)})
