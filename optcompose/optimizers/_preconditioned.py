"""Shampoo and SOAP: Kronecker-factored preconditioners, both built on ``transforms/_kronecker.py``.

* ``scale_by_shampoo`` / ``shampoo``: Gupta, Koren & Singer 2018, "Shampoo: Preconditioned
  Stochastic Tensor Optimization", as scaled up in Anil et al. 2020, "Scalable Second Order
  Optimization for Deep Learning" (distributed Shampoo: blocking, grafting, stale roots, a delayed
  start); argument names follow ``distributed_shampoo`` of google-research/scalable_shampoo.
* ``scale_by_soap`` / ``soap``: Vyas et al. 2024, "SOAP: Improving and Stabilizing Shampoo using
  Adam": Adam run in the eigenbasis of Shampoo's factors; defaults of the authors' ``SOAP``
  (nikhilvyas/SOAP).

Per leaf the factor matrices live in the state as a tuple (one ``(blocks, b, b)`` array per
preconditioned dimension; ``()`` for leaves without one), one tuple per leaf in
``jax.tree.leaves(params)`` order, in float32 (float64 for float64
parameters, complex for complex ones) whatever the parameter dtype; the per-element slots
(moments, the grafting accumulator) have the parameter's dtype. See docs/methods/shampoo.md and
docs/methods/soap.md for the math, the defaults and every difference from the published code.
"""

from __future__ import annotations

import functools
import types
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from optcompose import _tree as tree_lib
from optcompose import _validate as validate
from optcompose._base import GradientTransformation, GradientTransformationExtraArgs, ScalarOrSchedule, Updates, chain
from optcompose._hyperparams import Hyperparams, HyperparamSpec, hyperparam_dtype
from optcompose._leafwise import Leafwise, abs_sq, leafwise
from optcompose._numerics import power, widen
from optcompose._tree import compute_dtype
from optcompose.transforms._adaptive import safe_divide
from optcompose.transforms._decay import add_decayed_weights
from optcompose.transforms._kronecker import (
    KroneckerLayout,
    eigenbasis,
    factor_grams,
    from_blocks,
    inverse_root,
    kronecker_layout,
    precondition,
    refresh_eigenbasis,
    to_blocks,
)
from optcompose.transforms._scaling import scale_by_learning_rate

GRAFT_TYPES = ("adam", "rmsprop", "adagrad", "sgd", "none")
_DIAGONAL_GRAFTS = ("adam", "rmsprop", "adagrad")

# ----------------------------------------------------------------------------------------------
# Shared plumbing: per-leaf state of factor matrices, widened dtypes, hyperparameters per leaf.


def _dtype_of(x: Any) -> Any:
    return jnp.dtype(x.dtype if hasattr(x, "dtype") else jnp.result_type(x))


def _wide_dtype(x: Any) -> Any:
    """The dtype factor matrices of a leaf are kept in: float32, float64 or complex (never narrower)."""
    return compute_dtype(_dtype_of(x))


def _identities(layout: KroneckerLayout, dtype: Any) -> tuple[jax.Array, ...]:
    return tuple(jnp.broadcast_to(jnp.eye(shape[1], dtype=dtype), shape) for shape in layout.factor_shapes)


def _zeros(layout: KroneckerLayout, dtype: Any) -> tuple[jax.Array, ...]:
    return tuple(jnp.zeros(shape, dtype) for shape in layout.factor_shapes)


def _leaf_hyperparams(values: dict[str, jax.Array], g: jax.Array) -> Any:
    real = jnp.finfo(g.dtype).dtype
    return types.SimpleNamespace(**{k: jnp.asarray(v).astype(real) for k, v in values.items()})


def _all_finite(x: jax.Array, axes: tuple[int, ...]) -> jax.Array:
    return jnp.all(jnp.isfinite(x), axis=axes)


def _keep_where_finite(new: jax.Array, old: jax.Array) -> jax.Array:
    """``new`` per block (leading axis) where all its entries are finite, else ``old``: a failed
    decomposition keeps the previous matrix (distributed Shampoo's ``inverse_failure_threshold``)."""
    ok = _all_finite(new, (-2, -1))
    return jnp.where(ok[:, None, None], new, old)


def _real_part(x: jax.Array) -> jax.Array:
    return jnp.real(x) if jnp.iscomplexobj(x) else x


def _factors_init(params: Any, build) -> tuple[Any, ...]:
    """``build(leaf)`` for every leaf of ``params``, as a tuple in ``jax.tree.leaves`` order.

    Factor matrices have their own shapes, so they are kept per leaf *position* rather than in a
    tree shaped like the parameters (whose containers, such as Flax ``nnx`` variables, expect one
    array per leaf)."""
    return tuple(build(leaf) for leaf in jax.tree.leaves(params))


def _map_leaves(fn, updates, like: tuple[Any, ...], factors: tuple[Any, ...], names: tuple[str, ...]):
    """``fn(g, *like_leaves, *factor_entries)`` per leaf of ``updates``.

    ``like`` are trees shaped like ``updates`` (per-element slots), ``factors`` tuples with one
    entry per leaf. Returns ``(tree of first outputs, [trees of the next len(like) outputs],
    [tuples of the remaining outputs])``. Structure and dtype errors name the pytree path.
    """
    tree_lib.check_floating(updates, names[0])
    tree_lib.check_same_structure((updates, *like), names[: 1 + len(like)])
    structure = jax.tree.structure(updates)
    columns = [structure.flatten_up_to(updates)] + [structure.flatten_up_to(tree) for tree in like]
    for name, column in zip(names[1 + len(like) :], factors, strict=True):
        if len(column) != structure.num_leaves:
            raise ValueError(
                f"the state's {name} hold factors for {len(column)} leaves but the updates have "
                f"{structure.num_leaves}: the state was built for other parameters"
            )
    rows = [fn(*args) for args in zip(*columns, *factors, strict=True)]
    width = 1 + len(like) + len(factors)
    outputs = list(zip(*rows, strict=True)) if rows else [()] * width
    trees = [structure.unflatten(list(column)) for column in outputs[: 1 + len(like)]]
    return trees[0], trees[1:], [tuple(column) for column in outputs[1 + len(like) :]]


# ----------------------------------------------------------------------------------------------
# Shampoo.


@functools.cache
def _fresh_roots(exponent: int, relative: bool):
    """The "recompute" branch of Shampoo's ``lax.cond``: one function object per (exponent, relative), so
    outside ``jit`` the cond is traced and compiled once per shape, not at every update."""

    def fresh(statistics, old, eps):
        roots = (inverse_root(s, exponent, eps, relative=relative) for s in statistics)
        return tuple(_keep_where_finite(r, o) for r, o in zip(roots, old, strict=True))

    return fresh


def _kept_roots(statistics, old, eps):
    del statistics, eps
    return tuple(old)


class ScaleByShampooState(NamedTuple):
    """State of ``scale_by_shampoo``.

    ``statistics`` and ``preconditioners`` are tuples with one entry per leaf (in
    ``jax.tree.leaves(params)`` order), each a tuple with one ``(blocks, b, b)`` array per
    preconditioned dimension (the accumulated factors ``L``, ``R``, ... and their inverse roots), in
    float32 / float64 / complex; ``graft`` is the grafting optimizer's diagonal accumulator, shaped
    like the parameters (parameter dtype; ``None`` for ``'sgd'`` and ``'none'``).
    """

    count: jax.Array
    statistics: Any
    preconditioners: Any
    graft: Any
    hyperparams: Hyperparams


def _graft_direction(g, v, hp, t, graft_type):
    """(the grafting optimizer's direction, its new accumulator) for one leaf, float32."""
    square = _real_part(abs_sq(g))
    old = _real_part(v)
    if graft_type == "adagrad":
        new = old + square
        scaled = new
    else:
        weight = jnp.where(hp.beta2 == 1.0, 1.0, 1.0 - hp.beta2)
        new = hp.beta2 * old + weight * square
        scaled = new
        if graft_type == "adam":
            steps = t.astype(new.dtype)
            normalizer = jnp.where(hp.beta2 < 1.0, 1.0 - power(hp.beta2, t).astype(new.dtype), steps)
            scaled = new / jnp.where(normalizer > 0, normalizer, 1.0)
    direction = g / (jnp.sqrt(scaled) + hp.diagonal_epsilon).astype(g.dtype)
    return direction, new


def scale_by_shampoo(
    block_size: int | None = 1024,
    beta2: ScalarOrSchedule = 0.999,
    diagonal_epsilon: ScalarOrSchedule = 1e-10,
    matrix_epsilon: ScalarOrSchedule = 1e-6,
    start_preconditioning_step: int = 5,
    preconditioning_compute_steps: int = 1,
    graft_type: str = "adam",
    *,
    max_preconditioner_dim: int = 4096,
    exponent_override: int = 0,
    relative_matrix_epsilon: bool = True,
    merge_small_dims: bool = False,
    precondition_1d: bool = False,
) -> GradientTransformationExtraArgs:
    """Shampoo's grafted direction (Gupta et al. 2018; Anil et al. 2020), without momentum::

        per block of each leaf, for each preconditioned dimension i:
            S_i <- beta2 S_i + (1 - beta2) G_(i) G_(i)^H          (beta2 = 1: S_i <- S_i + G_(i) G_(i)^H)
            P_i  = (S_i + matrix_epsilon * lambda_max(S_i) I)^(-1/p),  p = 2 * (number of factors)
                   recomputed (by eigh) when count % preconditioning_compute_steps == 0, stale between
        D = G x_1 P_1 x_2 P_2 ...                                  (L^(-1/4) G R^(-1/4) for a matrix)
        graft: d = graft_type's direction of G (below);  u = D * ||d|| / ||D||      (per leaf)
        u = d for the first start_preconditioning_step updates, and for leaves without factors

    Grafting directions (``diagonal_epsilon`` is their eps): ``'adam'`` ``g / (sqrt(v / (1 -
    beta2^t)) + eps)`` with ``v`` the EMA of ``|g|^2`` (bias-corrected RMSprop: with
    ``shampoo(beta1=...)``'s momentum it is Adam's step); ``'rmsprop'`` the same without bias
    correction; ``'adagrad'`` ``g / (sqrt(sum |g|^2) + eps)``; ``'sgd'`` ``g``; ``'none'`` no
    grafting (the raw ``D``; ``g`` before the start).

    Args:
      block_size: preconditioned dimensions larger than this are cut into blocks of this size,
        each block with its own factors (``None``: no blocking).
      beta2: decay of the factor statistics and of the grafting accumulator (1: plain sums, as the
        original Shampoo).
      diagonal_epsilon: eps of the grafting optimizer.
      matrix_epsilon: damping of the factors before the inverse root, relative to each factor's
        largest eigenvalue (``relative_matrix_epsilon``) or absolute.
      start_preconditioning_step: the number of first updates that use the grafting direction only.
      preconditioning_compute_steps: inverse roots are recomputed every this many updates
        (``lax.cond``: the other steps do no eigendecomposition).
      graft_type: one of ``'adam'``, ``'rmsprop'``, ``'adagrad'``, ``'sgd'``, ``'none'``.
      max_preconditioner_dim: dimensions larger than this get no factor (identity on that side).
      exponent_override: use ``P_i = (...)^(-1/exponent_override)`` instead of ``p`` (0: ``p``).
      relative_matrix_epsilon: damping relative to the largest eigenvalue (default) or absolute.
      merge_small_dims: merge adjacent dimensions while their product is at most
        ``max_preconditioner_dim`` (``(3, 3, 64, 128)`` -> ``(576, 128)``).
      precondition_1d: give 1-D leaves a factor too (default: they take the grafting direction).

    Returns:
      A ``GradientTransformationExtraArgs`` whose state is ``ScaleByShampooState``.

    A decomposition that fails (a non-finite root, from non-finite statistics) keeps the previous
    root, and a non-finite grafted direction falls back to the grafting direction, so the update
    stays finite wherever the grafting optimizer's does.
    """
    if block_size is not None:
        validate.integer_at_least("block_size", block_size, 1)
    validate.unit_interval("beta2", beta2, closed_right=True)
    validate.non_negative("diagonal_epsilon", diagonal_epsilon)
    validate.non_negative("matrix_epsilon", matrix_epsilon)
    validate.integer_at_least("start_preconditioning_step", start_preconditioning_step, 0)
    validate.integer_at_least("preconditioning_compute_steps", preconditioning_compute_steps, 1)
    validate.one_of("graft_type", graft_type, GRAFT_TYPES)
    validate.integer_at_least("max_preconditioner_dim", max_preconditioner_dim, 1)
    validate.integer_at_least("exponent_override", exponent_override, 0)
    spec = HyperparamSpec(beta2=beta2, diagonal_epsilon=diagonal_epsilon, matrix_epsilon=matrix_epsilon)
    every = int(preconditioning_compute_steps)
    start = int(start_preconditioning_step)

    def layout_of(x):
        return kronecker_layout(
            jnp.shape(x), max_dim=max_preconditioner_dim, block_size=block_size, merge=merge_small_dims,
            precondition_1d=precondition_1d,
        )  # fmt: skip

    def init(params):
        def leaf(p):
            layout, dtype = layout_of(p), _wide_dtype(p)
            return _zeros(layout, dtype), _identities(layout, dtype)

        pairs = _factors_init(params, leaf)
        statistics, roots = tuple(p[0] for p in pairs), tuple(p[1] for p in pairs)
        graft = tree_lib.zeros_like(params) if graft_type in _DIAGONAL_GRAFTS else None
        return ScaleByShampooState(
            count=jnp.zeros((), jnp.int32), statistics=statistics, preconditioners=roots, graft=graft,
            hyperparams=spec.init(hyperparam_dtype(params)),
        )  # fmt: skip

    def update(updates, state, params=None, **extra_args):
        del params, extra_args
        count = state.count
        t = tree_lib.safe_increment(count)
        values = spec.current(state.hyperparams, count)
        recompute = count % every == 0 if every > 1 else None

        def leaf(g, statistics, roots, v):
            gw = widen(g)
            hp = _leaf_hyperparams(values, gw)
            layout = layout_of(gw)
            if graft_type in _DIAGONAL_GRAFTS:
                graft, new_v = _graft_direction(gw, widen(v), hp, t, graft_type)
                new_v = new_v.astype(jnp.result_type(v))
            else:
                graft, new_v = gw, v
            if not layout.factor_axes:
                return graft.astype(jnp.result_type(g)), statistics, roots, new_v
            blocks = to_blocks(gw, layout)
            weight = jnp.where(hp.beta2 == 1.0, 1.0, 1.0 - hp.beta2)
            statistics = tuple(
                hp.beta2.astype(s.dtype) * s + weight.astype(s.dtype) * gm
                for s, gm in zip(statistics, factor_grams(blocks, layout), strict=True)
            )
            exponent = exponent_override or 2 * len(layout.factor_axes)

            fresh = _fresh_roots(exponent, relative_matrix_epsilon)
            if recompute is None:
                roots = fresh(statistics, roots, hp.matrix_epsilon)
            else:
                roots = jax.lax.cond(recompute, fresh, _kept_roots, statistics, roots, hp.matrix_epsilon)
            shampoo = from_blocks(precondition(blocks, roots, layout), layout)
            if graft_type == "none":
                direction = shampoo
            else:
                norm = tree_lib.l2_norm(shampoo)
                ratio = tree_lib.l2_norm(graft) / jnp.where(norm > 0, norm, 1.0)
                direction = shampoo * ratio.astype(shampoo.dtype)
            direction = jnp.where(jnp.all(jnp.isfinite(direction)), direction, graft)
            if start > 0:
                direction = jnp.where(count >= start, direction, graft)
            return direction.astype(jnp.result_type(g)), statistics, roots, new_v

        diagonal = graft_type in _DIAGONAL_GRAFTS

        def entry(g, *rest):
            v, statistics, roots = rest if diagonal else (None, *rest)
            u, statistics, roots, v = leaf(g, statistics, roots, v)
            return (u, v, statistics, roots) if diagonal else (u, statistics, roots)

        new_updates, slots, (statistics, roots) = _map_leaves(
            entry, updates, (state.graft,) if diagonal else (), (state.statistics, state.preconditioners),
            names=("updates", *(("graft",) if diagonal else ()), "statistics", "preconditioners"),
        )  # fmt: skip
        graft = slots[0] if diagonal else None
        return new_updates, ScaleByShampooState(
            count=t, statistics=statistics, preconditioners=roots, graft=graft,
            hyperparams=spec.advance(state.hyperparams, t),
        )  # fmt: skip

    return GradientTransformationExtraArgs(init, update)


class ShampooMomentumState(NamedTuple):
    """State of Shampoo's momentum: the step count, the momentum per leaf, ``beta1``."""

    count: jax.Array
    momentum: Updates
    hyperparams: Hyperparams


def _shampoo_momentum(d, m, *, hp, nesterov, moving_average):
    weight = 1.0 - hp.beta1 if moving_average else 1.0
    m = hp.beta1 * m + weight * d
    return (weight * d + hp.beta1 * m if nesterov else m), m


def shampoo_momentum(
    beta1: ScalarOrSchedule = 0.9, *, nesterov: bool = True, moving_average: bool = False, momentum_dtype=None
) -> Leafwise:
    """Distributed Shampoo's momentum on the grafted direction ``d``::

        m <- beta1 m + w d,   w = 1 (heavy ball, default) or 1 - beta1 (moving_average)
        u  = w d + beta1 m    (nesterov, default)  or  m

    One buffer per leaf (``momentum_dtype``, default the parameter's); ``beta1`` is state data.
    """
    validate.unit_interval("beta1", beta1)
    return leafwise(
        _shampoo_momentum, ShampooMomentumState, hyperparams={"beta1": beta1},
        static={"nesterov": nesterov, "moving_average": moving_average}, dtypes={"momentum": momentum_dtype},
        name="shampoo_momentum",
    )  # fmt: skip


def shampoo(
    learning_rate: ScalarOrSchedule,
    block_size: int | None = 1024,
    beta1: ScalarOrSchedule = 0.9,
    beta2: ScalarOrSchedule = 0.999,
    diagonal_epsilon: ScalarOrSchedule = 1e-10,
    matrix_epsilon: ScalarOrSchedule = 1e-6,
    weight_decay: ScalarOrSchedule = 0.0,
    start_preconditioning_step: int = 5,
    preconditioning_compute_steps: int = 1,
    graft_type: str = "adam",
    nesterov: bool = True,
    *,
    moving_average_for_momentum: bool = False,
    max_preconditioner_dim: int = 4096,
    exponent_override: int = 0,
    relative_matrix_epsilon: bool = True,
    merge_small_dims: bool = False,
    precondition_1d: bool = False,
    weight_decay_mask: Any | None = None,
    momentum_dtype: Any | None = None,
) -> GradientTransformation:
    """Distributed Shampoo (Anil et al. 2020, after Gupta et al. 2018) with decoupled weight decay::

        d = scale_by_shampoo(...)(g)                 (grafted L^(-1/4) G R^(-1/4), per block)
        m = beta1 m + d;  u = d + beta1 m            (nesterov; heavy ball as distributed_shampoo)
        w -> w - learning_rate * (u + weight_decay * w)

    The chain ``scale_by_shampoo -> shampoo_momentum -> add_decayed_weights(weight_decay,
    weight_decay_mask) -> scale_by_learning_rate(learning_rate)``. Argument names and defaults are
    ``distributed_shampoo``'s (google-research/scalable_shampoo, optax version) except:
    ``block_size`` defaults to 1024 (there it is required; 1024 is the ``max_preconditioner_dim``
    block of the PyTorch Distributed Shampoo that won AlgoPerf's external-tuning track),
    ``graft_type='adam'`` (there ``SGD``), decoupled weight decay ``lr * weight_decay * w`` (there
    coupled by default, and ``lr**2``-scaled when decoupled), one momentum buffer on the selected
    direction (there one for the grafted Shampoo direction and one for the grafting direction),
    statistics starting at 0 (there ``matrix_epsilon * I``), and dimensions above
    ``max_preconditioner_dim`` (there ``skip_preconditioning_dim_size_gt``) losing only their own
    factor (there the whole leaf falls back to grafting). Dimensions are not merged by default
    (there ``best_effort_shape_interpretation`` merges up to 4096). Every difference is listed in
    docs/methods/shampoo.md.

    Hyperparameters in the state: ``learning_rate``, ``beta1``, ``beta2``, ``diagonal_epsilon``,
    ``matrix_epsilon``, ``weight_decay`` (each may be a schedule).
    """
    validate.non_negative("learning_rate", learning_rate)
    validate.non_negative("weight_decay", weight_decay)
    return chain(
        scale_by_shampoo(
            block_size, beta2, diagonal_epsilon, matrix_epsilon, start_preconditioning_step,
            preconditioning_compute_steps, graft_type, max_preconditioner_dim=max_preconditioner_dim,
            exponent_override=exponent_override, relative_matrix_epsilon=relative_matrix_epsilon,
            merge_small_dims=merge_small_dims, precondition_1d=precondition_1d,
        ),
        shampoo_momentum(
            beta1, nesterov=nesterov, moving_average=moving_average_for_momentum, momentum_dtype=momentum_dtype
        ),
        add_decayed_weights(weight_decay, weight_decay_mask),
        scale_by_learning_rate(learning_rate),
    )  # fmt: skip


# ----------------------------------------------------------------------------------------------
# SOAP.


class ScaleBySoapState(NamedTuple):
    """State of ``scale_by_soap``.

    ``mu`` is Adam's first moment in the original space and ``nu`` its second moment in the
    eigenbasis (both shaped like the parameters, parameter dtype unless ``mu_dtype``);
    ``statistics`` and ``bases`` are tuples with one entry per leaf (``jax.tree.leaves`` order),
    each a tuple with one ``(1, n, n)`` array per preconditioned dimension (Shampoo's factors ``L``,
    ``R``, ... and their eigenbases ``Q_L``, ``Q_R``, ...).
    """

    count: jax.Array
    mu: Updates
    nu: Updates
    statistics: Any
    bases: Any
    hyperparams: Hyperparams


def _permute(nu_blocks: jax.Array, orders: tuple[jax.Array, ...], layout: KroneckerLayout) -> jax.Array:
    """The second moment (in the eigenbasis) reordered with the refreshed basis columns."""
    for axis, order in zip(layout.factor_axes, orders, strict=True):
        nu_blocks = jnp.take(nu_blocks, order[0], axis=axis + 1)
    return nu_blocks


def _identity_orders(bases):
    return tuple(jnp.broadcast_to(jnp.arange(q.shape[-1]), q.shape[:-1]) for q in bases)


def _keep_bases(statistics, bases):
    """SOAP's switch, branch 0: the bases stay (identity orders)."""
    del statistics
    return tuple(bases), _identity_orders(bases), jnp.asarray(False)


def _decompose_bases(statistics, bases):
    """Branch 1 (the first update): ``eigh`` of every factor; a non-finite result keeps the old basis."""
    new = tuple(_keep_where_finite(eigenbasis(s), q) for s, q in zip(statistics, bases, strict=True))
    return new, _identity_orders(bases), jnp.asarray(False)


def _refresh_bases(statistics, bases):
    """Branch 2: the power step + QR refresh of every factor, all or none (non-finite: none)."""
    fresh = [refresh_eigenbasis(s, q) for s, q in zip(statistics, bases, strict=True)]
    ok = jnp.all(jnp.stack([jnp.all(jnp.isfinite(q)) for q, _ in fresh]))
    new = tuple(jnp.where(ok, q, old) for (q, _), old in zip(fresh, bases, strict=True))
    return new, tuple(order for _, order in fresh), ok


_BASIS_BRANCHES = (_keep_bases, _decompose_bases, _refresh_bases)
"""Module-level functions, so that outside ``jit`` the switch is compiled once per shape."""


def scale_by_soap(
    b1: ScalarOrSchedule = 0.95,
    b2: ScalarOrSchedule = 0.95,
    eps: ScalarOrSchedule = 1e-8,
    shampoo_beta: ScalarOrSchedule = -1.0,
    precondition_frequency: int = 10,
    max_precond_dim: int = 10000,
    *,
    merge_dims: bool = False,
    precondition_1d: bool = False,
    normalize_grads: bool = False,
    correct_bias: bool = True,
    mu_dtype: Any | None = None,
) -> GradientTransformationExtraArgs:
    """SOAP's direction: Adam in the eigenbasis of Shampoo's factors (Vyas et al. 2024, Algorithm 3)::

        update 1:  L, R <- (1 - sb) G G^H, (1 - sb) G^H G;  Q_L, Q_R <- eigh (eigenvalues descending);
                   direction 0
        update t+1 (t >= 1, Adam's step t):
            G' = Q_L^H G Q_R                          (project; identity on dimensions without a factor)
            M <- b1 M + (1 - b1) G                   (first moment in the original space)
            V <- b2 V + (1 - b2) |G'|^2              (second moment in the eigenbasis)
            N  = Q_L (Q_L^H M Q_R / (sqrt(V) + eps)) Q_R^H * sqrt(1 - b2^t) / (1 - b1^t)
            L <- sb L + (1 - sb) G G^H;  R <- sb R + (1 - sb) G^H G      (after the step)
            every precondition_frequency Adam steps (t % f == 0): for each factor, sort Q's columns
            by diag(Q^H L Q) (descending), permute V alike, Q <- qr(L Q)
        sb = shampoo_beta if shampoo_beta >= 0 else b2

    For higher-order tensors every dimension ``i`` with ``1 < n_i <= max_precond_dim`` has a factor
    ``G_(i) G_(i)^H`` and a basis; others (and 1-D leaves unless ``precondition_1d``, and 0-D
    leaves) keep the identity, so they get plain Adam. ``merge_dims`` first merges adjacent
    dimensions while their product is at most ``max_precond_dim``.

    Args:
      b1, b2, eps: Adam's (eps is added to ``sqrt(V)``, not bias-corrected, as the authors' code).
      shampoo_beta: decay of the factors; negative (default -1) means ``b2``.
      precondition_frequency: Adam steps between eigenbasis refreshes (``lax.switch``: the other
        steps do no decomposition).
      max_precond_dim: dimensions larger than this get no factor.
      merge_dims, precondition_1d: see above.
      normalize_grads: divide ``N`` by its root mean square (the authors' option).
      correct_bias: Adam's bias correction ``sqrt(1 - b2^t) / (1 - b1^t)``.
      mu_dtype: storage dtype of the first moment (default: the parameter's).

    Returns:
      A ``GradientTransformationExtraArgs`` whose state is ``ScaleBySoapState``.

    A decomposition that fails (non-finite statistics) keeps the previous basis and order.
    """
    validate.unit_interval("b1", b1)
    validate.unit_interval("b2", b2)
    validate.non_negative("eps", eps)
    validate.finite("shampoo_beta", shampoo_beta)
    if not callable(shampoo_beta) and float(shampoo_beta) >= 1.0:
        raise ValueError(f"shampoo_beta must be < 1 (negative: use b2), got {shampoo_beta!r}")
    validate.integer_at_least("precondition_frequency", precondition_frequency, 1)
    validate.integer_at_least("max_precond_dim", max_precond_dim, 1)
    spec = HyperparamSpec(b1=b1, b2=b2, eps=eps, shampoo_beta=shampoo_beta)
    every = int(precondition_frequency)

    def layout_of(x):
        shape = jnp.shape(x)
        return kronecker_layout(shape, max_dim=max_precond_dim, merge=merge_dims, precondition_1d=precondition_1d)

    def init(params):
        def leaf(p):
            layout, dtype = layout_of(p), _wide_dtype(p)
            return _zeros(layout, dtype), _identities(layout, dtype)

        pairs = _factors_init(params, leaf)
        statistics, bases = tuple(p[0] for p in pairs), tuple(p[1] for p in pairs)
        return ScaleBySoapState(
            count=jnp.zeros((), jnp.int32), mu=tree_lib.zeros_like(params, mu_dtype), nu=tree_lib.zeros_like(params),
            statistics=statistics, bases=bases, hyperparams=spec.init(hyperparam_dtype(params)),
        )  # fmt: skip

    def update(updates, state, params=None, **extra_args):
        del params, extra_args
        count = state.count
        values = spec.current(state.hyperparams, count)
        first = count == 0
        # 0: keep the bases, 1: first decomposition (eigh), 2: refresh (power step + QR).
        branch = jnp.where(first, 1, jnp.where(count % every == 0, 2, 0))

        def leaf(g, mu, nu, statistics, bases):
            gw, muw, nuw = widen(g), widen(mu), _real_part(widen(nu))
            hp = _leaf_hyperparams(values, gw)
            layout = layout_of(gw)
            project = lambda x: precondition(to_blocks(x, layout), bases, layout, adjoint=True)  # noqa: E731
            g_proj = project(gw)
            mu_new = hp.b1 * muw + (1.0 - hp.b1) * gw
            nu_blocks = to_blocks(nuw, layout)
            nu_new = hp.b2 * nu_blocks + (1.0 - hp.b2) * _real_part(abs_sq(g_proj))
            adam = safe_divide(project(mu_new), (jnp.sqrt(nu_new) + hp.eps).astype(g_proj.dtype))  # eps=0: 0/0 -> 0
            direction = from_blocks(precondition(adam, bases, layout), layout)
            if normalize_grads:
                rms = jnp.sqrt(jnp.mean(_real_part(abs_sq(direction))))
                direction = direction / (1e-30 + rms).astype(direction.dtype)
            if correct_bias:
                steps = jnp.maximum(count, 1)
                factor = jnp.sqrt(1.0 - power(hp.b2, steps)) / jnp.maximum(1.0 - power(hp.b1, steps), 1e-30)
                direction = direction * factor.astype(direction.dtype)
            direction = jnp.where(first, jnp.zeros_like(direction), direction)
            mu_new = jnp.where(first, muw, mu_new)
            nu_new = jnp.where(first, nu_blocks, nu_new)
            if layout.factor_axes:
                decay = jnp.where(hp.shampoo_beta >= 0, hp.shampoo_beta, hp.b2)
                grams = factor_grams(to_blocks(gw, layout), layout)
                statistics = tuple(
                    decay.astype(s.dtype) * s + (1.0 - decay).astype(s.dtype) * gm
                    for s, gm in zip(statistics, grams, strict=True)
                )

                bases, orders, ok = jax.lax.switch(branch, _BASIS_BRANCHES, statistics, bases)
                nu_new = jnp.where(ok, _permute(nu_new, orders, layout), nu_new)
            new_nu = from_blocks(nu_new, layout)
            return (
                direction.astype(jnp.result_type(g)), mu_new.astype(jnp.result_type(mu)),
                new_nu.astype(jnp.result_type(nu)), statistics, bases,
            )  # fmt: skip

        new_updates, (mu, nu), (statistics, bases) = _map_leaves(
            leaf, updates, (state.mu, state.nu), (state.statistics, state.bases),
            names=("updates", "mu", "nu", "statistics", "bases"),
        )  # fmt: skip
        t = tree_lib.safe_increment(count)
        return new_updates, ScaleBySoapState(
            count=t, mu=mu, nu=nu, statistics=statistics, bases=bases, hyperparams=spec.advance(state.hyperparams, t)
        )

    return GradientTransformationExtraArgs(init, update)


def soap(
    learning_rate: ScalarOrSchedule = 3e-3,
    b1: ScalarOrSchedule = 0.95,
    b2: ScalarOrSchedule = 0.95,
    eps: ScalarOrSchedule = 1e-8,
    weight_decay: ScalarOrSchedule = 0.01,
    shampoo_beta: ScalarOrSchedule = -1.0,
    precondition_frequency: int = 10,
    max_precond_dim: int = 10000,
    *,
    merge_dims: bool = False,
    precondition_1d: bool = False,
    normalize_grads: bool = False,
    correct_bias: bool = True,
    mask: Any | None = None,
    mu_dtype: Any | None = None,
) -> GradientTransformation:
    """SOAP (Vyas et al. 2024): Adam in Shampoo's eigenbasis, with decoupled weight decay::

        w -> w - learning_rate * (scale_by_soap(...)(g) + weight_decay * w)

    The chain ``scale_by_soap -> add_decayed_weights(weight_decay, mask) ->
    scale_by_learning_rate(learning_rate)``. Defaults are the authors' ``SOAP`` (nikhilvyas/SOAP,
    the version of the paper: ``lr=3e-3, betas=(0.95, 0.95), shampoo_beta=-1, eps=1e-8,
    weight_decay=0.01, precondition_frequency=10, max_precond_dim=10000``). Differences from that
    code, by choice: the decay multiplies the parameter before the step (AdamW's
    ``w - lr * (N + wd * w)``; the authors decay the already-stepped parameter, a difference of
    ``lr^2 * wd * N``), and the first update applies the decay (the authors' first call only builds
    the factors and returns without touching the parameter). Listed in docs/methods/soap.md.

    Hyperparameters in the state: ``learning_rate``, ``b1``, ``b2``, ``eps``, ``shampoo_beta``,
    ``weight_decay``.
    """
    validate.non_negative("learning_rate", learning_rate)
    validate.non_negative("weight_decay", weight_decay)
    return chain(
        scale_by_soap(
            b1, b2, eps, shampoo_beta, precondition_frequency, max_precond_dim, merge_dims=merge_dims,
            precondition_1d=precondition_1d, normalize_grads=normalize_grads, correct_bias=correct_bias,
            mu_dtype=mu_dtype,
        ),
        add_decayed_weights(weight_decay, mask),
        scale_by_learning_rate(learning_rate),
    )  # fmt: skip
