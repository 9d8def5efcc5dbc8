"""How ``step`` recognises a steppable transform from its parts, and runs its kernel.

The core builds transforms as typed values (``Chain``, ``NamedChain``, ``Renamed``, ``Masked``,
``Leafwise``); nothing is attached to them for this layer. ``parts`` walks that structure into a
flat list of parts, each with the path of its state inside the whole state. A transform is
steppable when its parts end in one of the kernels' patterns, identified by the *rule* of each
``Leafwise`` part (function identity, so only the library's own pieces match):

* ``trace -> scale_by_learning_rate``                                  (SGD with momentum)
* ``scale_by_adam -> [add_decayed_weights] -> scale_by_learning_rate``  (Adam, AdamW)
* ``scale_by_adam -> [add_decayed_weights] -> scale_by_trust_ratio -> scale_by_learning_rate`` (LAMB)

``add_decayed_weights`` and the trust ratio may be ``masked`` by concrete boolean masks. Every
equivalent spelling matches: ``adamw(...)``, a hand-written ``chain`` of the pieces, a
``named_chain``, chains nested in chains, ``identity()`` parts anywhere. Parts before the
pattern (clipping, L2 decay, ...) run their own ``update`` first, as the chain would. A wrapper of
any other kind (``inject_hyperparams``, ``apply_if_finite``, a hand-made
``GradientTransformation``) is opaque: if the pattern is not at the end, ``step`` takes the general
road, ``update`` + ``apply_updates``, with the same numbers.

A plan reads this step's scalars from the state exactly as the transforms do (scheduled values
are always ``schedule(count)``), calls the kernel for the per-leaf work, and advances each part's
state with the part's own ``Leafwise.advanced``, so the new state is the chain's, bit for bit.
It returns ``None`` (the general road) unless every gradient and parameter leaf is a float32 array
of matching shape, the state has the expected layout (moments float32 or bfloat16) and the masks
are concrete booleans.

Flat parameters (``optcompose.speed._flat_params``): when gradients and parameters are
``FlatParams`` (one unpadded float32 buffer) and the moments are ``FlatTree`` buffers of the same
layout (``flat_state``), the kernel runs over the buffers as one leaf, so the step touches 3-4
arrays. The per-leaf parts of a kernel must then agree over the leaves: a decay mask that is all
on or all off, and no trust ratio unless the tree has one leaf; otherwise the general road runs.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp

from optcompose._base import Chain, GradientTransformation, Identity, NamedChain, call_update
from optcompose._hyperparams import Renamed
from optcompose._leafwise import Leafwise
from optcompose._numerics import bias_correction_factor
from optcompose._tree import safe_increment
from optcompose.speed._flat import FlatState, FlatTree, expand_state, reflatten_like
from optcompose.speed._flat_params import FlatParams, Layout
from optcompose.speed.kernels import _calls as calls
from optcompose.transforms._adaptive import _adam
from optcompose.transforms._decay import _add_decayed_weights
from optcompose.transforms._momentum import _trace
from optcompose.transforms._partition import Masked, MaskedState, resolve_mask
from optcompose.transforms._scaling import _scale_by_learning_rate
from optcompose.transforms._trust_ratio import _trust_ratio

_F32 = jnp.dtype(jnp.float32)
_MOMENT_DTYPES = (jnp.dtype(jnp.float32), jnp.dtype(jnp.bfloat16))
_KINDS = {_adam: "adam", _trace: "trace", _scale_by_learning_rate: "lr", _add_decayed_weights: "decay",
          _trust_ratio: "trust"}  # fmt: skip


# ----------------------------------------------------------------------------------------------
# Structure: a transform as a list of parts with state paths.


@dataclasses.dataclass(frozen=True, eq=False)
class Part:
    """One piece of a transform: ``runner.update`` owns the state at ``path``.

    For a ``Leafwise`` piece (possibly inside ``rename_hyperparams`` / ``masked``), ``leaf`` is it,
    its own state sits at ``path + inner`` and its hyperparameters are stored under ``names``.
    """

    runner: GradientTransformation
    path: tuple[Any, ...]
    leaf: Leafwise | None = None
    inner: tuple[str, ...] = ()
    names: Mapping[str, str] = dataclasses.field(default_factory=dict)
    mask: Any = None

    @property
    def kind(self) -> str | None:
        return None if self.leaf is None else _KINDS.get(self.leaf.rule)


def _compose(outer: Mapping[str, str], inner: Mapping[str, str]) -> dict[str, str]:
    """Names seen through ``Renamed(Renamed(x, inner), outer)``: own name -> stored name."""
    composed = {own: outer.get(mid, mid) for own, mid in inner.items()}
    composed.update({k: v for k, v in outer.items() if k not in inner.values() and k not in composed})
    return composed


def parts(transform: GradientTransformation, path: tuple[Any, ...] = ()) -> list[Part]:
    """``transform`` as a list of parts in update order (``identity()`` parts dropped)."""
    if isinstance(transform, Identity):
        return []
    if isinstance(transform, Chain):
        return [p for i, t in enumerate(transform.transforms) for p in parts(t, (*path, i))]
    if isinstance(transform, NamedChain):
        return [p for name, t in transform.named for p in parts(t, (*path, name))]
    # A leaf piece, possibly renamed and/or masked; anything else is one opaque part.
    node, names, inner, mask = transform, {}, (), None
    while True:
        if isinstance(node, Renamed):
            node, names = node.inner, _compose(names, node.names)
        elif isinstance(node, Masked) and mask is None:
            node, inner, mask = node.inner, (*inner, "inner_state"), node.mask
        else:
            break
    if isinstance(node, Leafwise):
        return [Part(transform, path, node, inner, names, mask)]
    return [Part(transform, path)]


def get_at(state: Any, path: Sequence[Any]) -> Any:
    for key in path:
        state = getattr(state, key) if isinstance(key, str) and hasattr(state, "_fields") else state[key]
    return state


def set_at(state: Any, path: Sequence[Any], value: Any) -> Any:
    if not path:
        return value
    key, rest = path[0], path[1:]
    if isinstance(key, str) and hasattr(state, "_fields"):
        return state._replace(**{key: set_at(getattr(state, key), rest, value)})
    if isinstance(state, tuple):
        items = list(state)
        items[key] = set_at(items[key], rest, value)
        return type(state)(items) if not hasattr(state, "_fields") else type(state)(*items)
    return {**state, key: set_at(state[key], rest, value)}


def _path_ok(state: Any, path: Sequence[Any]) -> bool:
    try:
        get_at(state, path)
    except (KeyError, IndexError, TypeError, AttributeError):
        return False
    return True


# ----------------------------------------------------------------------------------------------
# Inputs and state operands.


@dataclasses.dataclass(frozen=True, eq=False)
class _Inputs:
    structure: Any
    grads: list
    params: list
    shapes: list
    flat: Any = None  # the FlatParams layout when grads/params are its one buffer each (kernel leaf = buffer)


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


def _sharded(leaf: Any) -> bool:
    """Whether ``leaf`` is split over several devices (then XLA's road, which every kernel pattern has)."""
    sharding = getattr(leaf, "sharding", None)  # a concrete array
    if isinstance(sharding, jax.sharding.Sharding) and len(sharding.device_set) > 1:
        return not sharding.is_fully_replicated
    try:
        spec = getattr(jax.typeof(leaf).sharding, "spec", None)  # a tracer under an explicit-axes mesh
    except (TypeError, AttributeError):
        return False
    return spec is not None and any(entry is not None for entry in spec)


def _float32_flat_inputs(grads: Any, params: Any) -> _Inputs | None:
    layout = params.layout
    if not isinstance(grads, FlatParams) or grads.layout != layout or layout.dtypes != (_F32,) or layout.padded:
        return None
    g, p = grads.buffers[0], params.buffers[0]
    if not all(isinstance(x, jax.Array) and x.dtype == _F32 and x.shape == (layout.lengths[0],) for x in (g, p)):
        return None
    return _Inputs(layout.treedef, [g], [p], list(layout.shapes), flat=layout)


def _float32_inputs(grads: Any, params: Any) -> _Inputs | None:
    if isinstance(params, FlatParams):
        return _float32_flat_inputs(grads, params)
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


def _state_operand(field: Any, inputs: _Inputs, dtypes: Sequence[Any]) -> Any:
    """The kernel's view of a per-leaf state field: its leaves, or a ``FlatTree``'s buffer."""
    if not isinstance(field, FlatTree):
        # Flat parameters go with flat moments only (one kernel leaf per buffer).
        return None if inputs.flat is not None else _leaves_like(field, inputs.structure, inputs.shapes, dtypes)
    buffer = field.buffer
    if field.treedef != inputs.structure or list(field.shapes) != [tuple(s) for s in inputs.shapes]:
        return None
    if not isinstance(buffer, jax.Array) or buffer.dtype not in dtypes or buffer.shape != (sum(field.sizes),):
        return None
    return buffer


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


def _leaf_state(part: Part, state: Any) -> Any:
    """The state of ``part.leaf`` inside the whole state, or None if the layout is not the expected one."""
    if not _path_ok(state, part.path):
        return None
    here = get_at(state, part.path)
    if part.inner and not isinstance(here, MaskedState):
        return None
    inner = get_at(here, part.inner)
    return inner if isinstance(inner, part.leaf.state_type) else None


# ----------------------------------------------------------------------------------------------
# Plans.


@dataclasses.dataclass(frozen=True, eq=False)
class Plan:
    """Run ``prefix`` with their own updates, then one kernel over ``kernel_parts``."""

    prefix: tuple[Part, ...]
    kernel: str  # "adam", "lamb" or "sgd"
    kernel_parts: tuple[Part, ...]  # (adam, decay?, trust?, lr) or (trace, lr)

    def by_kind(self) -> dict[str, Part]:
        return {p.kind: p for p in self.kernel_parts}

    def eligible(self, grads: Any, state: Any, params: Any) -> bool:
        """Whether the kernel can take these inputs (float32 leaves, the expected state, concrete masks)."""
        inputs = _float32_inputs(grads, params)
        if inputs is None or any(_sharded(leaf) for leaf in (*inputs.grads, *inputs.params, *jax.tree.leaves(state))):
            return False  # XLA's road partitions everything, LAMB and flat state included
        leaf_states = {p.kind: _leaf_state(p, state) for p in self.kernel_parts}
        if any(s is None for s in leaf_states.values()) or not all(_path_ok(state, p.path) for p in self.prefix):
            return False
        flags = self._flags(params, inputs)
        if any(flags.get(k, ()) is None for k in ("decay", "trust")):
            return False
        if inputs.flat is not None and inputs.structure.num_leaves > 1 and self.kernel == "lamb":
            return False  # one kernel leaf for the whole buffer: no per-leaf norms
        return self._operands(leaf_states, inputs) is not None

    def _flags(self, params: Any, inputs: _Inputs) -> dict[str, list[bool] | None]:
        parts_ = self.by_kind()
        masked = [k for k in ("decay", "trust") if k in parts_]
        if inputs.flat is not None and any(parts_[k].mask is not None for k in masked):
            params = params.tree  # masks are given for the tree
        flags = {k: _leaf_flags(parts_[k].mask, params, inputs.structure) for k in masked}
        if inputs.flat is not None:  # one kernel leaf: the leaves' flag, if they agree
            flags = {k: None if f is None or len(set(f)) > 1 else f[:1] for k, f in flags.items()}
        return flags

    def run(self, grads: Any, state: Any, params: Any, extra_args: Mapping[str, Any]) -> tuple[Any, Any] | None:
        """The new params and state (call ``eligible`` first); None if the prefix left non-float32 updates."""
        updates, new_state = grads, state
        flat = isinstance(params, FlatParams)
        if flat and self.prefix:  # the parts before the kernel see the tree
            updates, tree_params = grads.tree, params.tree
        else:
            tree_params = params
        for part in self.prefix:
            inner = get_at(state, part.path)
            # Under flat_state, the other transforms see (and return) their state as pytrees.
            updates, new_inner = call_update(part.runner, updates, expand_state(inner), tree_params, extra_args)
            new_state = set_at(new_state, part.path, reflatten_like(new_inner, inner))
        if flat and self.prefix:
            if dataclasses.replace(Layout.of(updates), lengths=params.layout.lengths) != params.layout:
                return None
            updates = FlatParams.from_tree(updates, layout=params.layout)
        inputs = _float32_inputs(updates, params)
        if inputs is None:
            return None
        parts_ = self.by_kind()
        leaf_states = {p.kind: _leaf_state(p, state) for p in self.kernel_parts}
        operands = self._operands(leaf_states, inputs)
        values = {k: parts_[k].leaf.current(leaf_states[k], parts_[k].names) for k in parts_}
        new_params, new_slots = self._run(values, leaf_states, operands, inputs, self._flags(params, inputs))
        for kind, part in parts_.items():
            slots = {
                name: _state_result(getattr(leaf_states[kind], name), new_slots[(kind, name)], inputs.structure)
                for name in part.leaf.slots
                if (kind, name) in new_slots
            }
            advanced = part.leaf.advanced(leaf_states[kind], part.names, **slots)
            new_state = set_at(new_state, (*part.path, *part.inner), advanced)
        if inputs.flat is not None:
            return params.with_buffers(tuple(new_params)), new_state
        return inputs.structure.unflatten(new_params), new_state

    def _operands(self, leaf_states: dict[str, Any], inputs: _Inputs) -> dict[str, Any] | None:
        if self.kernel == "sgd":
            trace = _state_operand(leaf_states["trace"].trace, inputs, _MOMENT_DTYPES)
            return None if trace is None else {"trace": trace}
        dtypes = (_F32,) if self.kernel == "lamb" else _MOMENT_DTYPES
        mu = _state_operand(leaf_states["adam"].mu, inputs, dtypes)
        nu = _state_operand(leaf_states["adam"].nu, inputs, dtypes)
        if mu is None or nu is None or isinstance(mu, list) != isinstance(nu, list):
            return None
        return {"mu": mu, "nu": nu}

    def _run(self, values, leaf_states, operands, inputs, flags):
        lr = self.by_kind()["lr"]
        sign = -1.0 if lr.leaf.static["flip_sign"] else 1.0
        signed_lr = sign * values["lr"]["learning_rate"]
        if self.kernel == "sgd":
            trace = self.by_kind()["trace"]
            scalars = calls.SgdScalars(momentum=values["trace"]["decay"], neg_lr=signed_lr)
            new_params, new_trace = calls.sgd(
                scalars, inputs.grads, inputs.params, operands["trace"], nesterov=trace.leaf.static["nesterov"]
            )
            return new_params, {("trace", "trace"): new_trace}
        hp = values["adam"]
        b1, b2 = hp["b1"], hp["b2"]
        count = safe_increment(leaf_states["adam"].count)
        adam_scalars = dict(
            b1=b1, one_minus_b1=1.0 - b1, b2=b2, one_minus_b2=1.0 - b2,
            correction_1=bias_correction_factor(b1, count), correction_2=bias_correction_factor(b2, count),
            next_correction_1=bias_correction_factor(b1, safe_increment(count)),
            eps_root=hp["eps_root"], eps=hp["eps"],
            weight_decay=values["decay"]["weight_decay"] if "decay" in values else 0.0, neg_lr=signed_lr,
        )  # fmt: skip
        leaves = len(inputs.params)  # kernel leaves: the tree's, or one flat buffer
        decay_flags = flags.get("decay") or [False] * leaves
        if "decay" not in values:
            decay_flags = [False] * leaves
        if self.kernel == "adam":
            nesterov = self.by_kind()["adam"].leaf.static["nesterov"]
            new_params, mu, nu = calls.adam(
                calls.AdamScalars(**adam_scalars), inputs.grads, inputs.params, operands["mu"], operands["nu"],
                nesterov=nesterov, decay_mask=decay_flags,
            )  # fmt: skip
        else:
            trust = values["trust"]
            scalars = calls.LambScalars(
                **adam_scalars, min_norm=trust["min_norm"], trust_coefficient=trust["trust_coefficient"],
                trust_eps=trust["eps"],
            )  # fmt: skip
            new_params, mu, nu = calls.lamb(
                scalars, inputs.grads, inputs.params, operands["mu"], operands["nu"],
                decay_mask=decay_flags, trust_mask=flags["trust"],
            )  # fmt: skip
        return new_params, {("adam", "mu"): mu, ("adam", "nu"): nu}


def _match(found: list[Part]) -> Plan | None:
    kinds = [p.kind for p in found]
    if len(found) < 2 or kinds[-1] != "lr" or found[-1].mask is not None:
        return None
    if kinds[-2] == "trace" and found[-2].mask is None:
        return Plan(tuple(found[:-2]), "sgd", tuple(found[-2:]))
    for pattern, kernel in (
        (("adam", "lr"), "adam"),
        (("adam", "decay", "lr"), "adam"),
        (("adam", "trust", "lr"), "lamb"),
        (("adam", "decay", "trust", "lr"), "lamb"),
    ):
        tail = found[-len(pattern) :]
        if len(found) >= len(pattern) and tuple(kinds[-len(pattern) :]) == pattern and tail[0].mask is None:
            if kernel == "lamb" and tail[0].leaf.static["nesterov"]:
                return None
            return Plan(tuple(found[: -len(pattern)]), kernel, tuple(tail))
    return None


def plan_for(transform: GradientTransformation) -> Plan | None:
    """The kernel plan of ``transform``, or None when it has none (see the module docstring)."""
    if isinstance(transform, FlatState):
        transform = transform.inner
    return _match(parts(transform))
