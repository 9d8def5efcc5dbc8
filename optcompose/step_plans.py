"""The plans ``optcompose.step`` follows for sgd (momentum), adam, adamw and lamb.

A plan knows where its optimizer's chain keeps each piece of state, reads this step's scalars
from the state exactly as the transforms do (bias corrections, ``-lr``), calls the kernel for the
per-leaf work, and advances everything else (counts, scheduled hyperparameters) by running each
piece's own ``update`` on an empty pytree, so the new state is the chain's, bit for bit.

A plan returns ``None`` (the general road) unless every gradient and parameter leaf is a float32
array of matching shape, the state has the chain's layout (moments float32 or bfloat16), and
the masks are concrete booleans; the general road then gives the result, or the usual located
error.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp

from optcompose.base import GradientTransformation
from optcompose.flat import FlatTree
from optcompose.kernels import calls
from optcompose.numerics import bias_correction_factor
from optcompose.transforms.adaptive import ScaleByAdamState
from optcompose.transforms.momentum import TraceState
from optcompose.transforms.partition import MaskedState, resolve_mask
from optcompose.tree import safe_increment

_F32 = jnp.dtype(jnp.float32)
_MOMENT_DTYPES = (jnp.dtype(jnp.float32), jnp.dtype(jnp.bfloat16))


def _leaves_like(tree: Any, structure: Any, shapes: Sequence[tuple[int, ...]] | None, dtypes: Sequence[Any]):
    """``tree``'s leaves if it has ``structure`` and each leaf is an array of an allowed dtype and shape."""
    if jax.tree.structure(tree) != structure:
        return None
    leaves = structure.flatten_up_to(tree)
    for k, leaf in enumerate(leaves):
        if not isinstance(leaf, jax.Array) or leaf.dtype not in dtypes:
            return None
        if shapes is not None and leaf.shape != shapes[k]:
            return None
    return leaves


def _state_operand(field: Any, inputs: _Inputs, dtypes: Sequence[Any]) -> Any:
    """The kernel's view of a per-leaf state field: its leaves, or a ``FlatTree``'s buffer."""
    if not isinstance(field, FlatTree):
        return _leaves_like(field, inputs.structure, inputs.shapes, dtypes)
    buffer = field.buffer
    if field.treedef != inputs.structure or list(field.shapes) != [tuple(s) for s in inputs.shapes]:
        return None
    if not isinstance(buffer, jax.Array) or buffer.dtype not in dtypes or buffer.shape != (sum(field.sizes),):
        return None
    return buffer


def _same_kind(*operands: Any) -> bool:
    """All present and all per-leaf lists, or all flat buffers (one kernel call handles one kind)."""
    return all(x is not None for x in operands) and len({isinstance(x, list) for x in operands}) == 1


def _state_result(old_field: Any, new: Any, structure: Any) -> Any:
    if isinstance(old_field, FlatTree):
        return FlatTree(new, old_field.treedef, old_field.shapes)
    return structure.unflatten(new)


def _leaf_flags(mask: Any, params: Any, structure: Any) -> list[bool] | None:
    """One bool per parameter leaf from a mask (pytree prefix of bools, or a function of params)."""
    if mask is None:
        return [True] * structure.num_leaves
    try:
        tree = resolve_mask(mask, params)
        flags = jax.tree.map(lambda m, sub: jax.tree.map(lambda _: bool(m), sub), tree, params)
        return [bool(f) for f in structure.flatten_up_to(flags)]
    except (TypeError, ValueError, jax.errors.ConcretizationTypeError):
        return None


def _unmask(state: Any, mask: Any) -> Any:
    if mask is None:
        return state
    return state.inner_state if isinstance(state, MaskedState) else None


def _remask(state: Any, mask: Any) -> Any:
    return state if mask is None else MaskedState(state)


def _advance(transform: GradientTransformation, state: Any, with_params: bool = False) -> Any:
    """``state`` after ``transform.update`` on an empty pytree: counts and schedules moved on."""
    return transform.update({}, state, {} if with_params else None)[1]


def _scalar_vector(*values: Any) -> jax.Array:
    return jnp.stack([jnp.asarray(v, jnp.float32).reshape(()) for v in values])


@dataclasses.dataclass(frozen=True, eq=False)
class _Inputs:
    structure: Any
    grads: list
    params: list
    shapes: list


def _float32_inputs(grads: Any, params: Any) -> _Inputs | None:
    structure = jax.tree.structure(params)
    if structure.num_leaves == 0:
        return None
    param_leaves = _leaves_like(params, structure, None, (_F32,))
    if param_leaves is None:
        return None
    shapes = [p.shape for p in param_leaves]
    grad_leaves = _leaves_like(grads, structure, shapes, (_F32,))
    if grad_leaves is None:
        return None
    return _Inputs(structure, grad_leaves, param_leaves, shapes)


@dataclasses.dataclass(frozen=True, eq=False)
class AdamPlan:
    """``chain(scale_by_adam, [add_decayed_weights (masked)], [trust ratio (masked)], scale_by_learning_rate)``.

    ``trust_ratio`` set makes it LAMB (the LAMB kernel, float32 moments, no Nesterov).
    """

    adam: GradientTransformation
    learning_rate: GradientTransformation
    nesterov: bool = False
    decay: GradientTransformation | None = None
    decay_mask: Any | Callable[[Any], Any] | None = None
    trust_ratio: GradientTransformation | None = None
    trust_ratio_mask: Any | Callable[[Any], Any] | None = None

    def _layout(self, state: Any) -> tuple[Any, Any, Any, Any] | None:
        pieces = 2 + (self.decay is not None) + (self.trust_ratio is not None)
        if not isinstance(state, tuple) or len(state) != pieces or not isinstance(state[0], ScaleByAdamState):
            return None
        rest = list(state[1:])
        decay = _unmask(rest.pop(0), self.decay_mask) if self.decay is not None else None
        trust = _unmask(rest.pop(0), self.trust_ratio_mask) if self.trust_ratio is not None else None
        if (self.decay is not None and decay is None) or (self.trust_ratio is not None and trust is None):
            return None
        return state[0], decay, trust, rest[0]

    def step(self, grads: Any, state: Any, params: Any, **extra_args: Any) -> tuple[Any, Any] | None:
        del extra_args  # the optimizers with plans take none
        inputs = _float32_inputs(grads, params)
        layout = self._layout(state)
        if inputs is None or layout is None:
            return None
        adam_state, decay_state, trust_state, lr_state = layout
        moment_dtypes = (_F32,) if self.trust_ratio is not None else _MOMENT_DTYPES
        mu = _state_operand(adam_state.mu, inputs, moment_dtypes)
        nu = _state_operand(adam_state.nu, inputs, moment_dtypes)
        decay_flags = _leaf_flags(self.decay_mask, params, inputs.structure)
        trust_flags = _leaf_flags(self.trust_ratio_mask, params, inputs.structure)
        if not _same_kind(mu, nu) or decay_flags is None or trust_flags is None:
            return None
        if self.decay is None:
            decay_flags = [False] * len(decay_flags)

        # This step's scalars, computed as scale_by_adam / add_decayed_weights / scale_by_learning_rate do.
        hp = adam_state.hyperparams
        b1, b2 = hp["b1"], hp["b2"]
        count = safe_increment(adam_state.count)
        weight_decay = decay_state.hyperparams["weight_decay"] if decay_state is not None else 0.0
        scalars = [
            b1, 1.0 - b1, b2, 1.0 - b2,
            bias_correction_factor(b1, count),
            bias_correction_factor(b2, count),
            bias_correction_factor(b1, safe_increment(count)),
            hp["eps_root"], hp["eps"], weight_decay,
            -1.0 * lr_state.hyperparams["learning_rate"],
        ]  # fmt: skip
        if self.trust_ratio is None:
            new_params, new_mu, new_nu = calls.adam(
                _scalar_vector(*scalars), inputs.grads, inputs.params, mu, nu,
                nesterov=self.nesterov, step=True, decay_mask=decay_flags,
            )  # fmt: skip
        else:
            thp = trust_state.hyperparams
            scalars += [thp["min_norm"], thp["trust_coefficient"], thp["trust_ratio_eps"]]
            new_params, new_mu, new_nu = calls.lamb(
                _scalar_vector(*scalars), inputs.grads, inputs.params, mu, nu,
                step=True, decay_mask=decay_flags, trust_mask=trust_flags,
            )  # fmt: skip

        unflatten = inputs.structure.unflatten
        advanced = _advance(self.adam, adam_state._replace(mu={}, nu={}))
        new_state = [
            advanced._replace(
                mu=_state_result(adam_state.mu, new_mu, inputs.structure),
                nu=_state_result(adam_state.nu, new_nu, inputs.structure),
            )
        ]
        if self.decay is not None:
            new_state.append(_remask(_advance(self.decay, decay_state, with_params=True), self.decay_mask))
        if self.trust_ratio is not None:
            new_state.append(_remask(trust_state, self.trust_ratio_mask))  # constants only: unchanged
        new_state.append(_advance(self.learning_rate, lr_state))
        return unflatten(new_params), tuple(new_state)


@dataclasses.dataclass(frozen=True, eq=False)
class SgdPlan:
    """``chain(trace(momentum) named 'momentum', scale_by_learning_rate)``."""

    momentum: GradientTransformation
    learning_rate: GradientTransformation
    nesterov: bool = False

    def step(self, grads: Any, state: Any, params: Any, **extra_args: Any) -> tuple[Any, Any] | None:
        del extra_args  # the optimizers with plans take none
        inputs = _float32_inputs(grads, params)
        if inputs is None or not isinstance(state, tuple) or len(state) != 2:
            return None
        trace_state, lr_state = state
        if not isinstance(trace_state, TraceState) or "momentum" not in trace_state.hyperparams:
            return None
        trace = _state_operand(trace_state.trace, inputs, _MOMENT_DTYPES)
        if trace is None:
            return None
        scalars = _scalar_vector(trace_state.hyperparams["momentum"], -1.0 * lr_state.hyperparams["learning_rate"])
        new_params, new_trace = calls.sgd(
            scalars, inputs.grads, inputs.params, trace, nesterov=self.nesterov, step=True
        )
        advanced = _advance(self.momentum, trace_state._replace(trace={}))
        new_trace_state = advanced._replace(trace=_state_result(trace_state.trace, new_trace, inputs.structure))
        new_state = (new_trace_state, _advance(self.learning_rate, lr_state))
        return inputs.structure.unflatten(new_params), new_state
