"""``flatten``: run a transform on one long vector instead of many small leaves."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from optcompose._base import GradientTransformation, GradientTransformationExtraArgs, _check_transform, call_update
from optcompose._tree import check_floating


def _join(tree: Any, name: str) -> jax.Array:
    check_floating(tree, name)  # concatenating would cast an integer leaf to float (and back, truncated)
    leaves = [jnp.asarray(leaf) for leaf in jax.tree.leaves(tree)]
    if not leaves:
        return jnp.zeros((0,), jnp.float32)
    return jnp.concatenate([jnp.reshape(leaf, (-1,)) for leaf in leaves])


def _split(flat: jax.Array, like: Any) -> Any:
    leaves, structure = jax.tree.flatten(like)
    offsets = np.cumsum([int(np.size(leaf)) for leaf in leaves])[:-1]
    parts = jnp.split(flat, offsets) if leaves else []
    return structure.unflatten(
        [
            jnp.reshape(part, jnp.shape(leaf)).astype(jnp.result_type(leaf))
            for part, leaf in zip(parts, leaves, strict=True)
        ]
    )


class Flatten(GradientTransformationExtraArgs):
    """``flatten(inner)``: ``self.inner`` sees every leaf concatenated into one vector."""

    def __new__(cls, inner: GradientTransformation) -> Flatten:
        inner = _check_transform("inner", inner)

        def init(params):
            return inner.init(_join(params, "params"))

        def update(updates, state, params=None, **extra_args):
            flat_params = None if params is None else _join(params, "params")
            flat_updates, state = call_update(inner, _join(updates, "updates"), state, flat_params, extra_args)
            return _split(flat_updates, updates), state

        self = super().__new__(cls, init, update)
        self.inner = inner
        return self

    def __repr__(self) -> str:
        return f"flatten({self.inner!r})"


def flatten(inner: GradientTransformation) -> Flatten:
    """Runs ``inner`` on all leaves concatenated into one vector, then splits its output back.

    One large array instead of many small ones cuts per-leaf overhead (kernel launches, loop
    unrolling in the compiled step) for models with many tiny parameters, at the cost of a copy.
    Only per-element transforms give the same numbers flattened; norms and shapes (``centralize``,
    ``scale_by_trust_ratio``) then see the whole model as one leaf.

    Args:
      inner: the wrapped transform; its state is that of one vector.

    Returns:
      A ``GradientTransformationExtraArgs``; extra arguments reach ``inner`` when it accepts them.

    Edge behaviour: leaves of different dtypes are concatenated in their common dtype (bfloat16 and
    float16 -> float32, as ``jnp.concatenate``) and each output leaf is cast back to its update's
    dtype (Optax returns the common dtype); ``None`` leaves are skipped; an empty tree gives a
    length-0 float32 vector; an integer leaf raises ``NotFloatingError`` naming its path.
    """
    return Flatten(inner)
