"""Pytree utilities with Optax's ``optax.tree`` names and behaviour (Optax 0.2.8).

``optcompose.tree.add(x, y)``, ``norm(tree, ord=1)``, ``update_moment(g, m, decay, order)``,
``map_params(opt, f, state, ...)`` and the rest take the same arguments as in ``optax.tree`` and
return the same numbers, so code written for ``optax.tree`` runs against this module unchanged.

Beyond Optax, optcompose adds :func:`param_shaped_map` and :func:`param_shaped_paths`, which find
the parameter-shaped subtrees (moments) of an optimizer state from the parameters' structure and
shapes rather than from the optimizer, and :class:`NamedTupleKey`, which Optax keeps in
``optax.tree_utils`` only. The older ``tree_``-prefixed spellings live in
:mod:`optcompose.tree_utils`.
"""

from ._casting import tree_cast as cast
from ._casting import tree_cast_like as cast_like
from ._casting import tree_dtype as dtype
from ._lookup import NamedTupleKey as NamedTupleKey
from ._lookup import tree_get as get
from ._lookup import tree_get_all_with_path as get_all_with_path
from ._lookup import tree_set as set
from ._math import tree_add as add
from ._math import tree_add_scale as add_scale
from ._math import tree_allclose as allclose
from ._math import tree_batch_shape as batch_shape
from ._math import tree_bias_correction as bias_correction
from ._math import tree_clip as clip
from ._math import tree_conj as conj
from ._math import tree_div as div
from ._math import tree_full_like as full_like
from ._math import tree_max as max
from ._math import tree_min as min
from ._math import tree_mul as mul
from ._math import tree_norm as norm
from ._math import tree_ones_like as ones_like
from ._math import tree_real as real
from ._math import tree_scale as scale
from ._math import tree_size as size
from ._math import tree_sub as sub
from ._math import tree_sum as sum
from ._math import tree_update_infinity_moment as update_infinity_moment
from ._math import tree_update_moment as update_moment
from ._math import tree_update_moment_per_elem_norm as update_moment_per_elem_norm
from ._math import tree_vdot as vdot
from ._math import tree_where as where
from ._math import tree_zeros_like as zeros_like
from ._random import tree_random_like as random_like
from ._random import tree_split_key_like as split_key_like
from ._random import tree_unwrap_random_key_data as unwrap_random_key_data
from ._state import param_shaped_map as param_shaped_map
from ._state import param_shaped_paths as param_shaped_paths
from ._state import param_shaped_subtree_map as param_shaped_subtree_map
from ._state import tree_map_params as map_params

__all__ = [
    "NamedTupleKey",
    "add",
    "add_scale",
    "allclose",
    "batch_shape",
    "bias_correction",
    "cast",
    "cast_like",
    "clip",
    "conj",
    "div",
    "dtype",
    "full_like",
    "get",
    "get_all_with_path",
    "map_params",
    "max",
    "min",
    "mul",
    "norm",
    "ones_like",
    "param_shaped_map",
    "param_shaped_paths",
    "param_shaped_subtree_map",
    "random_like",
    "real",
    "scale",
    "set",
    "size",
    "split_key_like",
    "sub",
    "sum",
    "unwrap_random_key_data",
    "update_infinity_moment",
    "update_moment",
    "update_moment_per_elem_norm",
    "vdot",
    "where",
    "zeros_like",
]
