"""``jax.ffi.ffi_call`` wrappers for the one-pass steps: lists of leaves in, lists of leaves out.

Every wrapper takes the step's scalars (one of the NamedTuples below, computed by the caller
exactly as the Python transforms compute them), the gradient and parameter leaves, and the state:
per state group (Adam's m and v, SGD's trace) either a list with one buffer per leaf or, for a flat
state (``optcompose.flat_state``), one 1-D buffer holding every leaf end to end. The new parameters
and the new state alias the old buffers (XLA copies an input first only where it is not donated).
Under ``jax.vmap`` the call runs once per batch element (``vmap_method="sequential"``), so batched
hyperparameters stay right.

The scalar NamedTuples are the one definition of the kernels' scalar vectors: their fields, in
order, are the fields of the C++ structs of the same names in ``optimizer_steps.cc`` (a test
parses the C++ and compares).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from optcompose.speed.kernels._build import ensure_registered

# Leaves per custom call. XLA's compile time grows faster than linearly with the number of aliased
# operands of one instruction (400 leaves in one call: 8.6 s; in batches of 32: 0.5 s), while each
# call costs microseconds to run, so big pytrees are cut into batches.
LEAVES_PER_CALL = 32

State = list[jax.Array] | jax.Array  # one buffer per leaf, or one flat buffer


class AdamScalars(NamedTuple):
    """One step of ``scale_by_adam -> [add_decayed_weights] -> scale_by_learning_rate``."""

    b1: Any
    one_minus_b1: Any
    b2: Any
    one_minus_b2: Any
    correction_1: Any
    correction_2: Any
    next_correction_1: Any
    eps_root: Any
    eps: Any
    weight_decay: Any
    neg_lr: Any


class LambScalars(NamedTuple):
    """Adam's scalars, then the trust ratio's."""

    b1: Any
    one_minus_b1: Any
    b2: Any
    one_minus_b2: Any
    correction_1: Any
    correction_2: Any
    next_correction_1: Any
    eps_root: Any
    eps: Any
    weight_decay: Any
    neg_lr: Any
    min_norm: Any
    trust_coefficient: Any
    trust_eps: Any


class SgdScalars(NamedTuple):
    """One step of ``trace -> scale_by_learning_rate``."""

    momentum: Any
    neg_lr: Any


def pack(scalars: NamedTuple) -> jax.Array:
    """The scalar vector the kernel reads as its struct: float32, in field order."""
    return jnp.stack([jnp.asarray(v).astype(jnp.float32).reshape(()) for v in scalars])


def _shape_dtype(x: jax.Array) -> jax.ShapeDtypeStruct:
    return jax.ShapeDtypeStruct(x.shape, x.dtype)


def _mask(mask: Sequence[bool]) -> np.ndarray:
    return np.asarray([1 if m else 0 for m in mask], np.int32)


def _call(
    target: str,
    scalars: NamedTuple,
    grads: Sequence[jax.Array],
    params: Sequence[jax.Array],
    states: Sequence[State],
    attributes: dict[str, object],
    per_leaf: dict[str, Sequence[bool]] | None = None,
) -> tuple[list[jax.Array], list[State]]:
    """Runs ``target`` over all leaves in batches; returns (new params, new states)."""
    ensure_registered()
    vector = pack(scalars)
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
        operands = [vector, *grads[start:stop], *params[start:stop], *state_operands]
        results = [_shape_dtype(p) for p in params[start:stop]] + [_shape_dtype(x) for x in state_operands]
        # Operand 1 + size + k is parameter k (result k); the state operands follow, result for result.
        aliased = {1 + size + k: k for k in range(size)}
        aliased.update({1 + 2 * size + i: size + i for i in range(len(state_operands))})
        call = jax.ffi.ffi_call(target, results, input_output_aliases=aliased, vmap_method="sequential")
        masks = {name: _mask(flags[start:stop]) for name, flags in (per_leaf or {}).items()}
        flat_results = call(*operands, flat=flat, offset=np.int64(offset), **attributes, **masks)
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
    scalars: AdamScalars,
    grads: Sequence[jax.Array],
    params: Sequence[jax.Array],
    mu: State,
    nu: State,
    *,
    nesterov: bool,
    decay_mask: Sequence[bool],
) -> tuple[list[jax.Array], State, State]:
    """(new params, new mu, new nu)."""
    out, (new_mu, new_nu) = _call(
        "optcompose_adam", scalars, grads, params, (mu, nu), {"nesterov": bool(nesterov)}, {"decay_mask": decay_mask}
    )
    return out, new_mu, new_nu


def lamb(
    scalars: LambScalars,
    grads: Sequence[jax.Array],
    params: Sequence[jax.Array],
    mu: State,
    nu: State,
    *,
    decay_mask: Sequence[bool],
    trust_mask: Sequence[bool],
) -> tuple[list[jax.Array], State, State]:
    """(new params, new mu, new nu). Each leaf's norms are its own, so batching is exact."""
    out, (new_mu, new_nu) = _call(
        "optcompose_lamb", scalars, grads, params, (mu, nu), {}, {"decay_mask": decay_mask, "trust_mask": trust_mask}
    )
    return out, new_mu, new_nu


def sgd(
    scalars: SgdScalars,
    grads: Sequence[jax.Array],
    params: Sequence[jax.Array],
    trace: State,
    *,
    nesterov: bool,
) -> tuple[list[jax.Array], State]:
    """(new params, new trace)."""
    out, (new_trace,) = _call("optcompose_sgd", scalars, grads, params, (trace,), {"nesterov": bool(nesterov)})
    return out, new_trace
