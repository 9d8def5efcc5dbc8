"""``step``: one whole optimizer step, ``(grads, state, params) -> (new params, new state)``.

``tx.update`` followed by ``apply_updates`` makes XLA write the updates to memory and read them
back; on CPU, XLA also splits each leaf's AdamW into one loop per output buffer, recomputing the
moments. ``step`` gives the same numbers in one pass: for the optimizers that carry a *plan*
(``sgd`` with momentum, ``adam``, ``adamw``, ``lamb``), on the CPU backend, with float32 parameters
and gradients, it calls a C++ kernel (``optcompose.kernels``) that reads gradient, parameter and
state once and writes parameter and state in place, all leaves in one call, on XLA's thread
pool. That is 28 bytes per parameter for AdamW (the memory-traffic floor, as torch's
``fused=True``) against 40 for ``update`` + ``apply_updates``, and one custom call to compile
instead of several fusions per leaf.

Everything else takes the general road, ``tx.update`` then ``apply_updates``, with identical
results: other optimizers and chains, wrapped optimizers (``inject_hyperparams``,
``apply_if_finite``, ``MultiSteps``), other dtypes, traced masks, GPU and TPU (where XLA fuses
the update and the apply into one pass by itself), and ``OPTCOMPOSE_KERNELS=0``. Pass
``use_kernel=False`` to force that road, for example to differentiate through the step (the
kernel has no derivative rule) or to keep a ``NamedSharding``-sharded state sharded on a CPU mesh
(a custom call is computed replicated there).

The kernel's numbers are the transforms' numbers: the same float32 operations in the same order
(tests compare them with the general road to 1 ulp and against the NumPy references). The state
it returns is the chain's state, so ``get_hyperparams``, ``set_hyperparams``, checkpoints and
``tx.update`` keep working on it.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Protocol

import jax

from optcompose import kernels
from optcompose.base import GradientTransformation, OptState, Params, Updates, apply_updates
from optcompose.flat import expand_state, reflatten_like

_PLAN_ATTRIBUTE = "_optcompose_step_plan"


class StepPlan(Protocol):
    """How to run one optimizer's whole step in a kernel (see ``optcompose.step_plans``)."""

    def step(
        self, grads: Updates, state: OptState, params: Params, **extra_args: Any
    ) -> tuple[Params, OptState] | None:
        """The new params and state, or ``None`` when these inputs need the general road."""


@dataclasses.dataclass(frozen=True, eq=False)
class PrefixPlan:
    """``chain(a, b, ..., optimizer)``: ``a, b, ...`` update the gradients as usual (clipping,
    L2 decay, ...), then ``optimizer``'s plan takes the whole step. ``chain`` attaches it."""

    prefix: tuple[GradientTransformation, ...]
    last: StepPlan

    def step(self, grads, state, params, **extra_args):
        if not isinstance(state, tuple) or len(state) != len(self.prefix) + 1:
            return None
        updates, new_state = grads, []
        for transform, inner in zip(self.prefix, state, strict=False):
            # Under flat_state, the other transforms see (and return) their state as pytrees.
            updates, new_inner = transform.update(updates, expand_state(inner), params, **extra_args)
            new_state.append(reflatten_like(new_inner, inner))
        result = self.last.step(updates, state[-1], params, **extra_args)
        if result is None:
            return None
        new_params, last_state = result
        return new_params, (*new_state, last_state)


def attach_plan(transform: GradientTransformation, plan: StepPlan) -> GradientTransformation:
    """Marks ``transform`` (a freshly built chain) as steppable by ``plan``; returns it."""
    setattr(transform.update, _PLAN_ATTRIBUTE, plan)
    return transform


def plan_of(transform: GradientTransformation) -> StepPlan | None:
    """The plan attached to ``transform``, if any."""
    return getattr(transform.update, _PLAN_ATTRIBUTE, None)


def kernel_applies(transform: GradientTransformation) -> bool:
    """Whether ``step(transform, ...)`` can use a kernel here (a plan, the CPU backend, kernels built).

    The inputs decide the rest (float32 leaves, concrete masks); see the module docstring.
    """
    return plan_of(transform) is not None and jax.default_backend() == "cpu" and kernels.available()


def step(
    transform: GradientTransformation,
    grads: Updates,
    state: OptState,
    params: Params,
    *,
    use_kernel: bool = True,
    **extra_args: Any,
) -> tuple[Params, OptState]:
    """``params + transform.update(grads, state, params)[0]`` and the new state, in one pass where possible.

    Args:
      transform: any ``GradientTransformation``; ``sgd``/``adam``/``adamw``/``lamb`` get the kernel.
      grads: the gradients, a pytree shaped like ``params``.
      state: ``transform``'s state (from ``init`` or a previous step).
      params: the current parameters.
      use_kernel: ``False`` always takes ``update`` + ``apply_updates``.
      **extra_args: forwarded to ``transform.update`` (the kernels' optimizers take none).

    Returns:
      ``(new_params, new_state)``. Donate ``params`` and ``state`` to the jitted step
      (``jax.jit(..., donate_argnums=...)``) so the kernel writes them in place.
    """
    if use_kernel and kernel_applies(transform):
        result = plan_of(transform).step(grads, state, params, **extra_args)
        if result is not None:
            return result
    updates, state = transform.update(grads, state, params, **extra_args)
    return apply_updates(params, updates), state
