"""GaLore (Zhao et al. 2024): the base optimizer runs on low-rank projections of the gradients."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from optcompose import _tree as tree_lib
from optcompose import _validate as validate
from optcompose._base import (
    GradientTransformation,
    GradientTransformationExtraArgs,
    OptState,
    ScalarOrSchedule,
    Updates,
    _check_transform,
    call_update,
    chain,
)
from optcompose._hyperparams import Hyperparams, HyperparamSpec, hyperparam_dtype
from optcompose._numerics import widen
from optcompose.contrib._common import MatrixView, Option, per_leaf_options
from optcompose.transforms._adaptive import scale_by_adam
from optcompose.transforms._decay import add_decayed_weights
from optcompose.transforms._scaling import scale_by_learning_rate


class GaLoreDimensionNumbers(NamedTuple):
    """Which axes of a weight form the matrix GaLore projects: ``reduction_axis`` (rows) and
    ``output_axis`` (columns). Every axis must be one or the other (no batch axes)."""

    reduction_axis: Sequence[int] | int = 0
    output_axis: Sequence[int] | int = 1


class GaLoreState(NamedTuple):
    """State of ``scale_by_galore``.

    Attributes:
      count: the step count.
      base_optimizer_state: the base optimizer's state, for the projected (low-rank) gradients.
      projector: per leaf the orthonormal ``P`` (``(m, r)`` or ``(n, r)``), or an empty ``(0, 0)``
        array for leaves GaLore leaves alone.
      hyperparams: ``scale``.
    """

    count: jax.Array
    base_optimizer_state: OptState
    projector: Updates
    hyperparams: Hyperparams


_is_dims = lambda x: isinstance(x, GaLoreDimensionNumbers)


def _dims_tree(spec: Any, tree: Any) -> Any:
    """One ``Option`` per leaf: its dimension numbers, or None (not projected)."""
    if spec is None:
        return jax.tree.map(lambda p: Option(GaLoreDimensionNumbers() if jnp.ndim(p) == 2 else None), tree)
    if _is_dims(spec):
        return jax.tree.map(lambda p: Option(spec if jnp.ndim(p) >= 2 else None), tree)
    if callable(spec):
        spec = spec(tree)
    return per_leaf_options(spec, tree, _is_dims)


class _Plan:
    """How one leaf is projected: its matrix view, side (left for m >= n) and effective rank."""

    def __init__(self, shape, dims: GaLoreDimensionNumbers, rank: int):
        try:
            self.view = MatrixView(shape, dims.reduction_axis, dims.output_axis, allow_batch=False)
        except ValueError as err:
            raise ValueError(f"GaLore: {err} ({dims})") from None
        _, self.m, self.n = self.view.flat
        self.left = self.m >= self.n
        self.rank = min(rank, self.m, self.n)

    def matrix(self, x):
        return self.view.to_matrices(x)[0]

    def shapes(self):
        if self.left:
            return (self.m, self.rank), (self.rank, self.n)
        return (self.n, self.rank), (self.m, self.rank)


def scale_by_galore(
    rank: int = 128,
    update_proj_gap: int = 200,
    scale: float = 1.0,
    base_optimizer: GradientTransformation | None = None,
    weight_dimension_numbers: Any = None,
) -> GradientTransformationExtraArgs:
    """GaLore's projection (Zhao et al. 2024, "Gradient Low-Rank Projection", Algorithm 2)::

        every update_proj_gap steps:  P <- first r singular vectors of G     (U if m >= n, else V)
        R = P^H G (m >= n)  or  G P (m < n)                   (r x n or m x r)
        N = base_optimizer(R)
        u = scale * (P N  or  N P^H)

    Args:
      rank: the projection rank ``r`` (clipped to the matrix's dimensions).
      update_proj_gap: steps between SVDs (the first step computes one).
      scale: multiplies the projected-back update.
      base_optimizer: runs on the projected gradients (default ``scale_by_adam()``); leaves that
        are not projected reach it unchanged.
      weight_dimension_numbers: ``None``: 2-D leaves projected with axes (0, 1), others not;
        one ``GaLoreDimensionNumbers``: every leaf of rank >= 2 with those axes; a pytree (prefix)
        of them with ``None`` for leaves left alone; or a function of the params returning one.

    Returns:
      A ``GradientTransformationExtraArgs`` with state ``GaLoreState``. The SVD and the projections
      run in float32 (float64 for float64 parameters). Optax always takes the SVD in float32 (under
      x64 the two differ by ~1e-7, measured) and projects in the parameter's dtype (bfloat16 weights
      then differ by bfloat16 rounding). Complex matrices use ``P^H``.
    """
    if isinstance(rank, bool) or not isinstance(rank, int):
        raise TypeError(f"rank must be an int, got {rank!r} of type {type(rank).__name__}")
    validate.integer_at_least("rank", rank, 1)
    validate.integer_at_least("update_proj_gap", update_proj_gap, 1)
    validate.finite("scale", scale)
    base = scale_by_adam() if base_optimizer is None else _check_transform("base_optimizer", base_optimizer)
    spec = HyperparamSpec(scale=scale)

    def plans(tree):
        # One Option per leaf holding its _Plan (or None: not projected); None leaves stay None.
        options = _dims_tree(weight_dimension_numbers, tree)
        return jax.tree.map(
            lambda x, o: Option(None if o.value is None else _Plan(jnp.shape(x), o.value, rank)), tree, options
        )

    def init(params):
        leaf_plans = plans(params)

        def shapes(p, option):
            plan = option.value
            if plan is None:
                return jnp.zeros((0, 0), jnp.result_type(p)), tree_lib.zeros_like(p)
            projector, proxy = plan.shapes()
            return jnp.zeros(projector, jnp.result_type(p)), jnp.zeros(proxy, jnp.result_type(p))

        pairs = jax.tree.map(shapes, params, leaf_plans)
        projectors, proxies = tree_lib.unzip(pairs, params, 2)
        return GaLoreState(
            count=jnp.zeros((), jnp.int32), base_optimizer_state=base.init(proxies), projector=projectors,
            hyperparams=spec.init(hyperparam_dtype(params)),
        )  # fmt: skip

    def update(updates, state, params=None, **extra_args):
        del params
        tree_lib.check_floating(updates, "updates")
        refresh = state.count % update_proj_gap == 0
        leaf_plans = plans(updates)

        def project(g, projector, option):
            plan = option.value
            if plan is None:
                return g, projector
            matrix = widen(plan.matrix(g))

            def fresh():
                u, _, vh = jnp.linalg.svd(matrix, full_matrices=False)
                p = u[:, : plan.rank] if plan.left else jnp.conj(vh[: plan.rank, :]).T
                return p.astype(jnp.result_type(projector))

            projector = jax.lax.cond(refresh, fresh, lambda: projector)
            p = widen(projector)
            low = jnp.conj(p).T @ matrix if plan.left else matrix @ p
            return low.astype(jnp.result_type(g)), projector

        pairs = jax.tree.map(project, updates, state.projector, leaf_plans)
        low_rank, projectors = tree_lib.unzip(pairs, updates, 2)
        low_updates, base_state = call_update(base, low_rank, state.base_optimizer_state, None, extra_args)
        factor = state.hyperparams["scale"]

        def back(u, projector, g, option):
            plan = option.value
            if plan is None:
                return u
            p, n = widen(projector), widen(u)
            full = p @ n if plan.left else n @ jnp.conj(p).T
            full = plan.view.from_matrices(full[None])
            return (factor.astype(jnp.finfo(full.dtype).dtype) * full).astype(jnp.result_type(g))

        new_updates = jax.tree.map(back, low_updates, projectors, updates, leaf_plans)
        return new_updates, GaLoreState(tree_lib.safe_increment(state.count), base_state, projectors, state.hyperparams)

    return GradientTransformationExtraArgs(init, update)


def galore(
    learning_rate: ScalarOrSchedule,
    rank: int = 128,
    update_proj_gap: int = 200,
    scale: float = 1.0,
    base_optimizer: GradientTransformation | None = None,
    weight_decay: jax.typing.ArrayLike = 0.0,
    mask: Any | Callable[[Any], Any] | None = None,
    weight_dimension_numbers: Any = None,
) -> GradientTransformationExtraArgs:
    """GaLore (Zhao et al. 2024): ``w -> w - lr * (u + weight_decay * w)``, ``u`` from ``scale_by_galore``.

    With the default base optimizer this is GaLore-Adam(W).

    Args:
      learning_rate: the step size (a number or a schedule).
      rank, update_proj_gap, scale, base_optimizer, weight_dimension_numbers: as ``scale_by_galore``.
      weight_decay: decoupled decay (multiplied by the learning rate).
      mask: which leaves decay.

    Returns:
      ``chain(scale_by_galore, add_decayed_weights, scale_by_learning_rate)``.
    """
    validate.non_negative("learning_rate", learning_rate)
    return chain(
        scale_by_galore(
            rank=rank, update_proj_gap=update_proj_gap, scale=scale, base_optimizer=base_optimizer,
            weight_dimension_numbers=weight_dimension_numbers,
        ),
        add_decayed_weights(weight_decay, mask),
        scale_by_learning_rate(learning_rate),
    )  # fmt: skip
