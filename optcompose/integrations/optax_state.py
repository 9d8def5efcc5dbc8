"""Resume an Optax run: convert an Optax optimizer state into the state of the same optcompose optimizer.

``from_optax(optax_state, like)`` walks Optax's state and ``like`` (``tx.init(params)`` of the
optcompose optimizer the code now builds) together and returns ``like``'s structure filled with
Optax's arrays:

* records (NamedTuples) correspond by type name and field name: ``ScaleByAdamState(count, mu, nu)``
  fills ours; fields only ours has are ``hyperparams`` (kept from ``like``: the code's
  configuration) and ``count`` (pieces Optax keeps no count for get the run's step: ``step``, or
  the largest count found in Optax's state);
* Optax's ``EmptyState()`` (or a record holding only a ``count``, as ``ScaleByScheduleState``)
  stands for any of our records that hold only a count and hyperparameters
  (``add_decayed_weights``, ``scale_by_learning_rate``);
* chains correspond element by element; stateless parts (``EmptyState``) that only one side has
  (``rmsprop``'s ``identity()`` here) are skipped;
* arrays must have the same shapes and are cast to ``like``'s dtypes.

Anything else raises ``ValueError`` naming the first path where the structures do not correspond.
Optax is never imported: its states are plain NamedTuples.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from optcompose._hyperparams import Hyperparams
from optcompose._tree import is_record

__all__ = ["from_optax"]

_OURS_ONLY = ("count", "hyperparams")
# Optax's record names that stand for ours (Optax 0.2.8 keeps a count in these variants).
_SAME_RECORD = {
    "ScaleByRmsWithCountState": "ScaleByRmsState",
    "ScaleByRStdDevWithCountState": "ScaleByRStdDevState",
}


def _is_array(x: Any) -> bool:
    return isinstance(x, (jax.Array, np.ndarray, np.generic)) or hasattr(x, "shape") and hasattr(x, "dtype")


def _is_empty(x: Any) -> bool:
    return (isinstance(x, tuple) and len(x) == 0) or x is None


def _counts(tree: Any) -> list[int]:
    found = []

    def visit(node: Any) -> None:
        if is_record(node):
            for name, value in zip(node._fields, node, strict=True):
                if name == "count" and _is_array(value):
                    found.append(int(np.asarray(value)))
                else:
                    visit(value)
        elif isinstance(node, (tuple, list)):
            for value in node:
                visit(value)
        elif isinstance(node, Mapping):
            for value in node.values():
                visit(value)

    visit(tree)
    return found


def from_optax(optax_state: Any, like: Any, *, step: int | None = None) -> Any:
    """``like`` (an optcompose state) filled with ``optax_state``'s arrays; see the module docstring.

    Args:
      optax_state: the state of an Optax optimizer (e.g. restored from an Optax checkpoint).
      like: ``tx.init(params)`` of the optcompose optimizer that continues the run.
      step: the number of updates done so far, for the pieces whose count Optax does not keep
        (default: the largest count in ``optax_state``, or 0 if it has none).

    Raises:
      ValueError: naming the first path where the two states do not correspond.
    """
    counts = _counts(optax_state)
    run_step = step if step is not None else (max(counts) if counts else 0)

    def convert(theirs: Any, ours: Any, path: str) -> Any:
        where = path or "<root>"
        if isinstance(ours, Hyperparams):
            return ours
        if _is_array(ours):
            if not _is_array(theirs):
                raise ValueError(f"at {where} our state has an array but Optax's has {type(theirs).__name__}")
            if tuple(np.shape(theirs)) != tuple(np.shape(ours)):
                raise ValueError(f"at {where} Optax's array has shape {np.shape(theirs)}, ours {np.shape(ours)}")
            return jnp.asarray(theirs).astype(ours.dtype)
        if is_record(ours):
            if _is_empty(ours):
                return ours  # EmptyState, MaskedNode
            only_counts = all(f in _OURS_ONLY for f in ours._fields)
            if only_counts and (_is_empty(theirs) or (is_record(theirs) and set(theirs._fields) <= {"count"})):
                # Optax's EmptyState / ScaleByScheduleState(count) for our count-and-hyperparams records.
                theirs_fields = dict(zip(theirs._fields, theirs, strict=True)) if is_record(theirs) else {}
            elif (
                is_record(theirs)
                and _SAME_RECORD.get(type(theirs).__name__, type(theirs).__name__) == type(ours).__name__
            ):
                theirs_fields = dict(zip(theirs._fields, theirs, strict=True))
            else:
                raise ValueError(
                    f"at {where} Optax's state has {type(theirs).__name__} but ours has {type(ours).__name__}: "
                    "the optimizers do not correspond"
                )
            extra = [f for f in theirs_fields if f not in ours._fields]
            if extra:
                raise ValueError(f"at {where} Optax's {type(theirs).__name__} has fields {extra} that ours lacks")
            values = {}
            for name, value in zip(ours._fields, ours, strict=True):
                if name in theirs_fields:
                    values[name] = convert(theirs_fields[name], value, f"{path}.{name}")
                elif name == "count":
                    values[name] = jnp.asarray(run_step, jnp.result_type(value))
                elif name == "hyperparams":
                    values[name] = value
                else:
                    raise ValueError(f"at {where} our {type(ours).__name__}.{name} has no counterpart in Optax's state")
            return type(ours)(**values)
        if isinstance(ours, tuple):
            if not isinstance(theirs, tuple) or is_record(theirs):
                raise ValueError(f"at {where} our state is a chain (tuple) but Optax's is {type(theirs).__name__}")
            pairs = list(range(len(ours)))
            if len(theirs) != len(ours):
                ours_kept = [i for i, x in enumerate(ours) if not _is_empty(x)]
                theirs_kept = [x for x in theirs if not _is_empty(x)]
                if len(ours_kept) != len(theirs_kept):
                    raise ValueError(
                        f"at {where} Optax's chain has {len(theirs)} parts, ours {len(ours)}: they do not correspond"
                    )
                converted = list(ours)
                for i, x in zip(ours_kept, theirs_kept, strict=True):
                    converted[i] = convert(x, ours[i], f"{path}[{i}]")
                return tuple(converted)
            return tuple(convert(theirs[i], ours[i], f"{path}[{i}]") for i in pairs)
        if isinstance(ours, Mapping):
            if not isinstance(theirs, Mapping) or set(theirs) != set(ours):
                raise ValueError(f"at {where} the dict keys differ: Optax {sorted(theirs)}, ours {sorted(ours)}")
            return type(ours)({k: convert(theirs[k], ours[k], f"{path}[{k!r}]") for k in ours})
        if _is_empty(ours):
            return ours
        raise ValueError(f"at {where} cannot convert {type(theirs).__name__} into {type(ours).__name__}")

    return convert(optax_state, like, "")
