"""``jax.ffi.ffi_call`` wrappers for the one-pass steps: lists of leaves in, lists of leaves out.

Every wrapper takes the ``scalars`` vector (float32, computed by the caller exactly as the Python
transforms compute their scalars) and, per leaf, the gradient, parameter and state buffers. The new
state always aliases the old state's buffers; with ``step=True`` the new parameters alias the old
ones as well (XLA copies an input first only where it is not donated). Under ``jax.vmap`` the call
runs once per batch element (``vmap_method="sequential"``), so batched hyperparameters stay right.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import numpy as np

from optcompose.kernels.build import ensure_registered


def _shape_dtype(x: jax.Array) -> jax.ShapeDtypeStruct:
    return jax.ShapeDtypeStruct(x.shape, x.dtype)


# Leaves per custom call. XLA's compile time grows faster than linearly with the number of aliased
# operands of one instruction (400 leaves in one call: 8.6 s; in batches of 32: well under 1 s),
# while each call costs a few microseconds to run, so big pytrees are cut into batches.
LEAVES_PER_CALL = 32


def _call(
    target: str,
    scalars: jax.Array,
    groups: Sequence[Sequence[jax.Array]],
    step: bool,
    attributes: dict[str, object],
    per_leaf: dict[str, Sequence[bool]] | None = None,
) -> list[list[jax.Array]]:
    """Calls ``target`` on ``scalars`` and the ``groups`` (grads, params, state...), in batches of leaves.

    Results: one list per group after the gradients (new params or updates, then new state), each
    aliasing its group's buffers except the updates (``step=False``).
    """
    ensure_registered()
    n = len(groups[0])
    outputs: list[list[jax.Array]] = [[] for _ in groups[1:]]
    for start in range(0, n, LEAVES_PER_CALL):
        batch = [list(group[start : start + LEAVES_PER_CALL]) for group in groups]
        size = len(batch[0])
        operands = [scalars, *(leaf for group in batch for leaf in group)]
        results = [_shape_dtype(leaf) for group in batch[1:] for leaf in group]
        # Operand 1 + j * size + k is leaf k of group j; result (j - 1) * size + k is its new value.
        first = 1 if step else 2
        aliased = {1 + j * size + k: (j - 1) * size + k for j in range(first, len(batch)) for k in range(size)}
        call = jax.ffi.ffi_call(target, results, input_output_aliases=aliased, vmap_method="sequential")
        masks = {name: _mask(flags[start : start + size]) for name, flags in (per_leaf or {}).items()}
        flat = call(*operands, step=bool(step), **attributes, **masks)
        for j, out in enumerate(outputs):
            out.extend(flat[j * size : (j + 1) * size])
    return outputs


def _mask(mask: Sequence[bool]) -> np.ndarray:
    return np.asarray([1 if m else 0 for m in mask], np.int32)


def adam(
    scalars: jax.Array,
    grads: list[jax.Array],
    params: list[jax.Array],
    mu: list[jax.Array],
    nu: list[jax.Array],
    *,
    nesterov: bool,
    step: bool,
    decay_mask: Sequence[bool],
) -> tuple[list[jax.Array], list[jax.Array], list[jax.Array]]:
    """(new params or updates, new mu, new nu). ``scalars``: b1, 1-b1, b2, 1-b2, c1, c2, c1(t+1),
    eps_root, eps, weight_decay, -lr."""
    out, new_mu, new_nu = _call(
        "optcompose_adam", scalars, (grads, params, mu, nu), step, {"nesterov": bool(nesterov)},
        {"decay_mask": decay_mask},
    )
    return out, new_mu, new_nu


def lamb(
    scalars: jax.Array,
    grads: list[jax.Array],
    params: list[jax.Array],
    mu: list[jax.Array],
    nu: list[jax.Array],
    *,
    step: bool,
    decay_mask: Sequence[bool],
    trust_mask: Sequence[bool],
) -> tuple[list[jax.Array], list[jax.Array], list[jax.Array]]:
    """(new params or updates, new mu, new nu). ``scalars``: adam's 11, then min_norm,
    trust_coefficient, trust-ratio eps. Each leaf's norms are its own, so batching is exact."""
    out, new_mu, new_nu = _call(
        "optcompose_lamb", scalars, (grads, params, mu, nu), step, {},
        {"decay_mask": decay_mask, "trust_mask": trust_mask},
    )
    return out, new_mu, new_nu


def sgd(
    scalars: jax.Array,
    grads: list[jax.Array],
    params: list[jax.Array],
    trace: list[jax.Array],
    *,
    nesterov: bool,
    step: bool,
) -> tuple[list[jax.Array], list[jax.Array]]:
    """(new params or updates, new trace). ``scalars``: momentum, -lr."""
    out, new_trace = _call("optcompose_sgd", scalars, (grads, params, trace), step, {"nesterov": bool(nesterov)})
    return out, new_trace
