"""``jax.ffi.ffi_call`` wrappers for the one-pass steps: lists of leaves in, lists of leaves out.

Every wrapper takes the ``scalars`` vector (float32, computed by the caller exactly as the Python
transforms compute their scalars), the gradient and parameter leaves, and the state: per state
group (Adam's m and v, SGD's trace) either a list with one buffer per leaf or, for a flat state
(``optcompose.flat_state``), one 1-D buffer holding every leaf end to end. The new state always
aliases the old state's buffers; with ``step=True`` the new parameters alias the old ones as well
(XLA copies an input first only where it is not donated). Under ``jax.vmap`` the call runs once
per batch element (``vmap_method="sequential"``), so batched hyperparameters stay right.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import jax
import numpy as np

from optcompose.kernels.build import ensure_registered

# Leaves per custom call. XLA's compile time grows faster than linearly with the number of aliased
# operands of one instruction (400 leaves in one call: 8.6 s; in batches of 32: 0.5 s), while each
# call costs microseconds to run, so big pytrees are cut into batches.
LEAVES_PER_CALL = 32

State = list[jax.Array] | jax.Array  # one buffer per leaf, or one flat buffer


def _shape_dtype(x: jax.Array) -> jax.ShapeDtypeStruct:
    return jax.ShapeDtypeStruct(x.shape, x.dtype)


def _mask(mask: Sequence[bool]) -> np.ndarray:
    return np.asarray([1 if m else 0 for m in mask], np.int32)


def _call(
    target: str,
    scalars: jax.Array,
    grads: Sequence[jax.Array],
    params: Sequence[jax.Array],
    states: Sequence[State],
    step: bool,
    attributes: dict[str, object],
    per_leaf: dict[str, Sequence[bool]] | None = None,
) -> tuple[list[jax.Array], list[State]]:
    """Runs ``target`` over all leaves in batches; returns (new params or updates, new states)."""
    ensure_registered()
    flat = not isinstance(states[0], list | tuple)
    n = len(grads)
    out: list[jax.Array] = []
    new_states: list = list(states) if flat else [[] for _ in states]
    offset = 0
    for start in range(0, n, LEAVES_PER_CALL):
        stop = min(n, start + LEAVES_PER_CALL)
        size = stop - start
        batch_states = list(new_states) if flat else [list(s[start:stop]) for s in states]
        state_operands = batch_states if flat else [leaf for s in batch_states for leaf in s]
        operands = [scalars, *grads[start:stop], *params[start:stop], *state_operands]
        results = [_shape_dtype(p) for p in params[start:stop]] + [_shape_dtype(x) for x in state_operands]
        # Operand 1 + size + k is parameter k (result k); the state operands follow, result for result.
        aliased = {1 + size + k: k for k in range(size)} if step else {}
        aliased.update({1 + 2 * size + i: size + i for i in range(len(state_operands))})
        call = jax.ffi.ffi_call(target, results, input_output_aliases=aliased, vmap_method="sequential")
        masks = {name: _mask(flags[start:stop]) for name, flags in (per_leaf or {}).items()}
        flat_results = call(*operands, step=bool(step), flat=flat, offset=np.int64(offset), **attributes, **masks)
        out.extend(flat_results[:size])
        state_results = list(flat_results[size:])
        if flat:
            new_states = state_results
        else:
            for j, group in enumerate(new_states):
                group.extend(state_results[j * size : (j + 1) * size])
        offset += sum(math.prod(p.shape) for p in params[start:stop])
    return out, new_states


def adam(
    scalars: jax.Array,
    grads: Sequence[jax.Array],
    params: Sequence[jax.Array],
    mu: State,
    nu: State,
    *,
    nesterov: bool,
    step: bool,
    decay_mask: Sequence[bool],
) -> tuple[list[jax.Array], State, State]:
    """(new params or updates, new mu, new nu). ``scalars``: b1, 1-b1, b2, 1-b2, c1, c2, c1(t+1),
    eps_root, eps, weight_decay, -lr."""
    out, (new_mu, new_nu) = _call(
        "optcompose_adam", scalars, grads, params, (mu, nu), step, {"nesterov": bool(nesterov)},
        {"decay_mask": decay_mask},
    )
    return out, new_mu, new_nu


def lamb(
    scalars: jax.Array,
    grads: Sequence[jax.Array],
    params: Sequence[jax.Array],
    mu: State,
    nu: State,
    *,
    step: bool,
    decay_mask: Sequence[bool],
    trust_mask: Sequence[bool],
) -> tuple[list[jax.Array], State, State]:
    """(new params or updates, new mu, new nu). ``scalars``: adam's 11, then min_norm,
    trust_coefficient, trust-ratio eps. Each leaf's norms are its own, so batching is exact."""
    out, (new_mu, new_nu) = _call(
        "optcompose_lamb", scalars, grads, params, (mu, nu), step, {},
        {"decay_mask": decay_mask, "trust_mask": trust_mask},
    )
    return out, new_mu, new_nu


def sgd(
    scalars: jax.Array,
    grads: Sequence[jax.Array],
    params: Sequence[jax.Array],
    trace: State,
    *,
    nesterov: bool,
    step: bool,
) -> tuple[list[jax.Array], State]:
    """(new params or updates, new trace). ``scalars``: momentum, -lr."""
    out, (new_trace,) = _call("optcompose_sgd", scalars, grads, params, (trace,), step, {"nesterov": bool(nesterov)})
    return out, new_trace
