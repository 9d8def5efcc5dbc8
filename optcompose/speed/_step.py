"""``step``: one whole optimizer step, ``(grads, state, params) -> (new params, new state)``.

``tx.update`` followed by ``apply_updates`` makes XLA write the updates to memory and read them
back; on CPU, XLA also splits each leaf's AdamW into one loop per output buffer, recomputing the
moments. ``step`` gives the same numbers in one pass: for transforms whose parts end in a kernel
pattern (``sgd`` with momentum, ``adam``, ``adamw``, ``lamb``, spelled in any equivalent way; see
``optcompose.speed._plans``), on the CPU backend, with float32 parameters
and gradients, it calls a C++ kernel (``optcompose.speed.kernels``) that reads gradient, parameter and
state once and writes parameter and state in place, all leaves in one call, on XLA's thread
pool. That is 28 bytes per parameter for AdamW (the memory-traffic floor, as torch's
``fused=True``) against 40 for ``update`` + ``apply_updates``, and one custom call to compile
instead of several fusions per leaf.

Everything else takes the general road, ``tx.update`` then ``apply_updates``, with identical
results: other optimizers and chains, wrapped optimizers (``inject_hyperparams``,
``apply_if_finite``, ``MultiSteps``), other dtypes, traced masks, GPU and TPU (where XLA fuses
the update and the apply into one pass by itself), and ``OPTCOMPOSE_KERNELS=0``. Pass
``use_kernel=False`` to force that road. Sharded inputs that ``step`` can see (concrete arrays, a
``jax.set_mesh`` mesh) take it too, and stay sharded. Under ``jax.jit(..., in_shardings=...)`` without
a mesh, step cannot see the sharding while it traces; the SPMD partitioner then runs the Adam and
SGD kernels on each device's shard (sharded state stays sharded, ZeRO-1 included), and refuses the
LAMB and flat-state kernels, which need whole buffers, with an error naming ``use_kernel=False``
(``optcompose.speed.kernels._calls``): never a silent replication. ``jax.grad`` / ``jax.jvp``
through ``step`` work: the kernel's derivative rule is the general road's derivative (the same
function), so meta-learning through the optimizer step needs no flag.

Flat parameters (``flat_params``): with ``FlatParams`` gradients and parameters, the general road
runs ``update`` + ``apply_updates`` on the trees they hold and stores the result flat again (the
same numbers as with tree parameters); the kernel runs over the buffers themselves when the moments
are flat too (``flat_state``), so a step takes 3-4 arrays however many leaves the model has.

The kernel's numbers are the transforms' numbers: the same float32 operations in the same order
(eagerly bit for bit; under ``jit`` XLA contracts some multiply-adds of the general road into
FMAs, so the two differ by at most 2 ulp there; tests check both and the NumPy references). The state
it returns is the chain's state, so ``get_hyperparams``, ``set_hyperparams``, checkpoints and
``tx.update`` keep working on it.
"""

from __future__ import annotations

from typing import Any

import jax

from optcompose._base import GradientTransformation, OptState, Params, Updates, apply_updates, call_update
from optcompose.speed import kernels
from optcompose.speed._flat_params import FlatParams, contains_flat_params, resharded_like
from optcompose.speed._plans import plan_for


def kernel_applies(transform: GradientTransformation) -> bool:
    """Whether ``step(transform, ...)`` can use a kernel here (a plan, the CPU backend, kernels built).

    The inputs decide the rest (float32 leaves, concrete masks); see the module docstring.
    """
    return plan_for(transform) is not None and jax.default_backend() == "cpu" and kernels.available()


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
      transform: any ``GradientTransformation``; chains ending in sgd-with-momentum, adam, adamw or
        lamb pieces get the kernel (see ``optcompose.speed._plans``).
      grads: the gradients, a pytree shaped like ``params`` (a ``FlatParams`` of their layout when
        ``params`` is one, as ``jax.grad`` with respect to it returns).
      state: ``transform``'s state (from ``init`` or a previous step).
      params: the current parameters (a pytree, or a ``FlatParams``).
      use_kernel: ``False`` always takes ``update`` + ``apply_updates``.
      **extra_args: forwarded to ``transform.update`` (and to the parts run before a kernel).

    Returns:
      ``(new_params, new_state)``. Donate ``params`` and ``state`` to the jitted step
      (``jax.jit(..., donate_argnums=...)``) so the kernel writes them in place.

    Raises:
      ValueError: flat gradients and parameters of different layouts (naming the first differing
        leaf), or a state built from ``FlatParams`` instead of the tree they hold.
    """
    if isinstance(params, FlatParams) or isinstance(grads, FlatParams):
        _check_flat(grads, state, params)
    if use_kernel:
        plan = plan_for(transform)
        # The kernel is built only when it will run (eligible inputs on CPU).
        if (
            plan is not None
            and jax.default_backend() == "cpu"
            and plan.eligible(grads, state, params)
            and kernels.available()
        ):
            return _kernel_step(plan, transform, extra_args)(grads, state, params)
    return _general_step(transform, grads, state, params, extra_args)


def _check_flat(grads: Any, state: Any, params: Any) -> None:
    if not (isinstance(grads, FlatParams) and isinstance(params, FlatParams)):
        flat, other = ("parameters", "gradients") if isinstance(params, FlatParams) else ("gradients", "parameters")
        raise ValueError(
            f"the {flat} are FlatParams but the {other} are not: take jax.grad with respect to the FlatParams "
            "(or flat_params(tree) both with the same layout)"
        )
    params.layout.check(grads.layout, "the gradients and the parameters")
    if contains_flat_params(state):
        raise ValueError(
            "the optimizer state holds FlatParams: it was built from the flat buffers (tx.init(flat)), which "
            "treats each buffer as one leaf; build it from the tree they hold: tx.init(flat.tree)"
        )


def _general_step(transform, grads, state, params, extra_args):
    if isinstance(params, FlatParams):  # the tree's numbers, stored flat again
        new_params, state = _general_step(transform, grads.tree, state, params.tree, extra_args)
        return resharded_like(FlatParams.from_tree(new_params, layout=params.layout), params), state
    updates, state = call_update(transform, grads, state, params, extra_args)
    return apply_updates(params, updates), state


def _kernel_step(plan, transform, extra_args):
    """The kernel's step, differentiable: its derivative is the general road's (the same function)."""

    def general(grads, state, params):
        return _general_step(transform, grads, state, params, extra_args)

    @jax.custom_jvp
    def kernel(grads, state, params):
        result = plan.run(grads, state, params, extra_args)
        return general(grads, state, params) if result is None else result

    @kernel.defjvp
    def derivative(primals, tangents):
        return jax.jvp(general, primals, tangents)

    return kernel
