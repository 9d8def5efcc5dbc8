"""Optax's older ``optax.tree_utils`` namespace: the ``optcompose.tree`` functions under ``tree_`` names.

``optcompose.tree_utils.tree_add`` is ``optcompose.tree.add``, and so on for every name of
``optax.tree_utils`` in Optax 0.2.8, plus :class:`NamedTupleKey`. Optax's deprecated aliases
(``tree_scalar_mul``, ``tree_add_scalar_mul``, ``tree_l1_norm``, ``tree_l2_norm``,
``tree_linf_norm``) still resolve, with a ``DeprecationWarning``, as they do in Optax.
"""

from optcompose.tree._casting import tree_cast as tree_cast
from optcompose.tree._casting import tree_cast_like as tree_cast_like
from optcompose.tree._casting import tree_dtype as tree_dtype
from optcompose.tree._deprecated import tree_utils_getattr as __getattr__  # noqa: F401
from optcompose.tree._lookup import NamedTupleKey as NamedTupleKey
from optcompose.tree._lookup import tree_get as tree_get
from optcompose.tree._lookup import tree_get_all_with_path as tree_get_all_with_path
from optcompose.tree._lookup import tree_set as tree_set
from optcompose.tree._math import tree_add as tree_add
from optcompose.tree._math import tree_add_scale as tree_add_scale
from optcompose.tree._math import tree_allclose as tree_allclose
from optcompose.tree._math import tree_batch_shape as tree_batch_shape
from optcompose.tree._math import tree_bias_correction as tree_bias_correction
from optcompose.tree._math import tree_clip as tree_clip
from optcompose.tree._math import tree_conj as tree_conj
from optcompose.tree._math import tree_div as tree_div
from optcompose.tree._math import tree_full_like as tree_full_like
from optcompose.tree._math import tree_max as tree_max
from optcompose.tree._math import tree_min as tree_min
from optcompose.tree._math import tree_mul as tree_mul
from optcompose.tree._math import tree_norm as tree_norm
from optcompose.tree._math import tree_ones_like as tree_ones_like
from optcompose.tree._math import tree_real as tree_real
from optcompose.tree._math import tree_scale as tree_scale
from optcompose.tree._math import tree_size as tree_size
from optcompose.tree._math import tree_sub as tree_sub
from optcompose.tree._math import tree_sum as tree_sum
from optcompose.tree._math import tree_update_infinity_moment as tree_update_infinity_moment
from optcompose.tree._math import tree_update_moment as tree_update_moment
from optcompose.tree._math import tree_update_moment_per_elem_norm as tree_update_moment_per_elem_norm
from optcompose.tree._math import tree_vdot as tree_vdot
from optcompose.tree._math import tree_where as tree_where
from optcompose.tree._math import tree_zeros_like as tree_zeros_like
from optcompose.tree._random import tree_random_like as tree_random_like
from optcompose.tree._random import tree_split_key_like as tree_split_key_like
from optcompose.tree._random import tree_unwrap_random_key_data as tree_unwrap_random_key_data
from optcompose.tree._state import tree_map_params as tree_map_params
