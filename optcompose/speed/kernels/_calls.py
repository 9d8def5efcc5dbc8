"""``jax.ffi.ffi_call`` wrappers for the one-pass steps: lists of leaves in, lists of leaves out.

Every wrapper takes the step's scalars (one of the NamedTuples below, computed by the caller
exactly as the Python transforms compute them), the gradient and parameter leaves, and the state:
per state group (Adam's m and v, SGD's trace) either a list with one buffer per leaf or, for a flat
state (``optcompose.flat_state``), one 1-D buffer holding every leaf end to end. The new parameters
and the new state alias the old buffers (XLA copies an input first only where it is not donated).
Under ``jax.vmap`` the call runs once per batch element (``vmap_method="sequential"``), so batched
hyperparameters stay right.

Sharding. Each call is a ``custom_partitioning`` op, so XLA's SPMD partitioner (GSPMD or Shardy)
can split it when its operands are sharded though ``step`` could not see it at trace time
(``jax.jit(..., in_shardings=...)`` without ``jax.set_mesh``): the elementwise kernels (Adam, SGD,
per-leaf state) then run on every device over its own shard of each leaf, with each leaf's
operands laid out as its most-sharded one (ZeRO-1: the sharded state's layout), so sharded state
stays sharded. LAMB (a norm over the whole leaf) and flat state (one buffer across leaves) cannot
run per shard: with sharded operands they raise ``ShardedKernelError`` at compile time, naming the
way out, instead of replicating silently. Where ``step`` does see the sharding (concrete arrays,
explicit-axes meshes), it takes XLA's road before any kernel is traced.

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
from jax.custom_batching import custom_vmap
from jax.experimental.custom_partitioning import ArrayMapping, SdyShardingRule, custom_partitioning

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
        masks = {name: _mask(flags[start:stop]) for name, flags in (per_leaf or {}).items()}
        keywords = dict(flat=flat, offset=np.int64(offset), **attributes, **masks)
        layout = _Layout(target, size, len(states), flat)
        flat_results = _partitioned(_bound(target, size, keywords), layout)(*operands)
        out.extend(flat_results[:size])
        state_results = list(flat_results[size:])
        if flat:
            new_states = state_results
        else:
            for j, group in enumerate(new_states):
                group.extend(state_results[j * size : (j + 1) * size])
        offset += sum(math.prod(p.shape) for p in params[start:stop])
    return out, new_states


class ShardedKernelError(ValueError):
    """A kernel that needs whole buffers met sharded operands under ``jit`` (see the module docstring)."""


class _Layout(NamedTuple):
    """Where one call's operands are: ``[scalars, g[size], p[size], state...]`` -> ``[p'[size], state'...]``."""

    target: str
    size: int
    groups: int
    flat: bool

    @property
    def elementwise(self) -> bool:
        """Every element's result depends only on that element's operands (no norms, no flat offsets)."""
        return not self.flat and self.target != "optcompose_lamb"

    def leaf_operands(self, k: int) -> list[int]:
        """Operand indices of leaf ``k``: its state first (the layout ZeRO-1 shards), then parameter, gradient."""
        state = [1 + 2 * self.size + j * self.size + k for j in range(self.groups)] if not self.flat else []
        return [*state, 1 + self.size + k, 1 + k]

    def leaf_results(self, k: int) -> list[int]:
        state = [self.size + j * self.size + k for j in range(self.groups)] if not self.flat else []
        return [k, *state]


def _shards(shape: Any) -> int:
    """How many pieces ``shape.sharding`` cuts the array into (1 when replicated)."""
    sharding = shape.sharding
    if sharding is None or sharding.is_fully_replicated:
        return 1
    return math.prod(shape.shape) // max(1, math.prod(sharding.shard_shape(shape.shape)))


def _bound(target: str, size: int, keywords: dict[str, Any]):
    """One kernel call as a function of its operands only (what custom_partitioning wants).

    The results are shaped like the operands from the parameters on (parameters, then state), and
    alias them: operand ``1 + size + i`` is result ``i``. Built from the operands it is given, so
    the same function runs on whole arrays and on one device's shards.
    """

    def run(*operands):
        results = [_shape_dtype(x) for x in operands[1 + size :]]
        aliased = {1 + size + i: i for i in range(len(results))}
        call = jax.ffi.ffi_call(target, results, input_output_aliases=aliased, vmap_method="sequential")
        return tuple(call(*operands, **keywords))

    return run


def _partitioned(run, layout: _Layout):
    """``run`` (one kernel call) as an op the SPMD partitioner splits per shard, and ``vmap`` maps."""

    def shardings(mesh, arg_shapes):
        replicated = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
        if not layout.elementwise:
            sharded = [i for i, a in enumerate(arg_shapes) if _shards(a) > 1]
            if sharded:
                what = "flat state (one buffer across leaves)" if layout.flat else "LAMB (a norm over each whole leaf)"
                raise ShardedKernelError(
                    f"optcompose.step: the {layout.target} kernel on {what} cannot run per shard, and an "
                    f"operand is sharded ({arg_shapes[sharded[0]].sharding}). Pass "
                    "use_kernel=False, or trace the step under `with jax.set_mesh(mesh):` so that step sees the "
                    "sharding and takes XLA's road (which keeps it sharded)"
                )
            return [replicated] * len(arg_shapes), [replicated] * (len(arg_shapes) - 1 - layout.size)
        args = [replicated] * len(arg_shapes)
        results: list[Any] = [None] * (layout.size * (1 + layout.groups))
        for k in range(layout.size):
            operands = layout.leaf_operands(k)
            chosen = max(operands, key=lambda i: _shards(arg_shapes[i]))  # first of the most sharded
            sharding = arg_shapes[chosen].sharding if _shards(arg_shapes[chosen]) > 1 else replicated
            for i in operands:
                args[i] = sharding
            for r in layout.leaf_results(k):
                results[r] = sharding
        return args, results

    def infer(mesh, arg_shapes, result_shape):
        return tuple(shardings(mesh, arg_shapes)[1])

    def partition(mesh, arg_shapes, result_shape):
        args, results = shardings(mesh, arg_shapes)
        return mesh, run, tuple(results), tuple(args)

    def rule(*operands):
        # Shardy: each leaf's operands and results share one factor per dimension (elementwise), the
        # scalar vector is replicated; for the other kernels every dimension is its own factor, so
        # the partition callback sees the operands' shardings and refuses them.
        shapes = [np.shape(x) for x in operands]
        results = shapes[1 + layout.size :]  # p'[size] then the state, as the operands from p on
        operand_names = [f"o{i}" for i in range(len(shapes))]
        result_names = [f"r{r}" for r in range(len(results))]
        if layout.elementwise:
            for k in range(layout.size):
                for i in layout.leaf_operands(k):
                    operand_names[i] = f"l{k}"
                for r in layout.leaf_results(k):
                    result_names[r] = f"l{k}"

        def mapping(name, shape):
            return ArrayMapping(*(f"{name}d{d}" for d in range(len(shape))))

        return SdyShardingRule(
            tuple(mapping(n, sh) for n, sh in zip(operand_names, shapes, strict=True)),
            tuple(mapping(n, sh) for n, sh in zip(result_names, results, strict=True)),
            need_replication_factors=("o0d0",),
        )

    def call(*operands):
        spmd = custom_partitioning(run)
        spmd.def_partition(partition, infer_sharding_from_operands=infer, sharding_rule=rule(*operands))
        return spmd(*operands)

    mapped = custom_vmap(call)

    @mapped.def_vmap
    def _batched(axis_size, in_batched, *operands):  # one call per batch element, as ffi_call's sequential
        results = jax.vmap(run, in_axes=[0 if b else None for b in in_batched], axis_size=axis_size)(*operands)
        return results, tuple(True for _ in results)

    return mapped


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
