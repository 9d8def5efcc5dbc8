"""Optax's deprecated ``optax.tree_utils`` aliases, served lazily with a ``DeprecationWarning``.

``optax.tree_utils.tree_l2_norm`` and friends still resolve in Optax 0.2.8 (with a warning) but are
not listed by ``dir()``; :func:`tree_utils_getattr` does the same for ``optcompose.tree_utils``.
"""

from __future__ import annotations

import functools
import warnings
from typing import Any

from optcompose.tree._math import tree_add_scale, tree_norm, tree_scale

_ALIASES: dict[str, tuple[str, Any]] = {
    "tree_scalar_mul": ("tree_scale", tree_scale),
    "tree_add_scalar_mul": ("tree_add_scale", tree_add_scale),
    "tree_l1_norm": ("tree_norm(..., ord=1)", functools.partial(tree_norm, ord=1)),
    "tree_l2_norm": ("tree_norm", functools.partial(tree_norm, ord=2)),
    "tree_linf_norm": ("tree_norm(..., ord='inf')", functools.partial(tree_norm, ord="inf")),
}


def tree_utils_getattr(name: str) -> Any:
    """Module ``__getattr__`` for ``optcompose.tree_utils``: the deprecated aliases, else AttributeError.

    Args:
      name: the attribute looked up.

    Returns:
      The replacement function (the ``*_norm`` aliases are :func:`functools.partial` objects of
      :func:`optcompose.tree.norm` with the ``ord`` fixed), after a ``DeprecationWarning``.

    Raises:
      AttributeError: for any other name.
    """
    if name in _ALIASES:
        replacement, value = _ALIASES[name]
        warnings.warn(
            f"optcompose.tree_utils.{name} is deprecated (as in Optax); use optcompose.tree_utils.{replacement}",
            DeprecationWarning,
            stacklevel=2,
        )
        return value
    raise AttributeError(f"module 'optcompose.tree_utils' has no attribute {name!r}")
