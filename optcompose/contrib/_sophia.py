"""Sophia (Liu et al. 2023): clipped steps preconditioned by an estimate of the Hessian's diagonal."""

from __future__ import annotations

from collections.abc import Callable
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
from optcompose._leafwise import ema_step
from optcompose._numerics import bias_correction_factor, widen
from optcompose.transforms._decay import add_decayed_weights
from optcompose.transforms._scaling import scale_by_learning_rate


class HutchinsonState(NamedTuple):
    """State of ``hutchinson_estimator_diag_hessian``: the PRNG key of the next probe."""

    key: jax.Array


def hutchinson_estimator_diag_hessian(random_seed: jax.Array | None = None) -> GradientTransformationExtraArgs:
    """Hutchinson's estimate of the Hessian's diagonal (Hutchinson 1989; Bekas et al. 2007)::

        diag(H) ~ z * (H z),      z_i = +-1 with probability 1/2 (Rademacher), E[z z^T] = I

    ``H z`` is one Hessian-vector product (``jax.jvp`` of ``jax.grad(obj_fn)``). The update ignores
    its incoming updates and returns the estimate; it needs ``params`` and ``obj_fn`` (a function
    of the params returning the loss) as keyword arguments of ``update``.

    Args:
      random_seed: a PRNG key (default ``jax.random.PRNGKey(0)``); each update splits it.

    Returns:
      A ``GradientTransformationExtraArgs`` with state ``HutchinsonState``. The probe is drawn
      exactly as Optax draws it (one key per leaf, in leaf order), so the estimates are equal.
    """

    def init(params):
        del params
        return HutchinsonState(key=random_seed if random_seed is not None else jax.random.PRNGKey(0))

    def update(updates, state, params=None, obj_fn=None, **extra_args):
        del updates, extra_args
        if params is None:
            raise ValueError("hutchinson_estimator_diag_hessian needs params: call update(updates, state, params)")
        if obj_fn is None:
            raise ValueError("hutchinson_estimator_diag_hessian needs obj_fn=f (params -> loss) in update")
        tree_lib.check_floating(params, "params")
        key, subkey = jax.random.split(state.key)
        structure = jax.tree.structure(params)
        keys = jax.random.split(subkey, structure.num_leaves)
        signs = [  # +-1 in each leaf's dtype (Optax: in the lowest dtype, which breaks jvp on mixed trees)
            jax.random.rademacher(k, jnp.shape(leaf), jnp.float32).astype(jnp.result_type(leaf))
            for k, leaf in zip(keys, structure.flatten_up_to(params), strict=True)
        ]
        signs = structure.unflatten(signs)
        hvp = jax.jvp(jax.grad(obj_fn), (params,), (signs,))[1]
        return jax.tree.map(lambda h, r: h * r, hvp, signs), HutchinsonState(key=key)

    return GradientTransformationExtraArgs(init, update)


_DEFAULT_ESTIMATOR = hutchinson_estimator_diag_hessian()


class SophiaState(NamedTuple):
    """State of ``scale_by_sophia``.

    Attributes:
      count: the step count.
      mu: the EMA of the gradients.
      nu: the EMA of the Hessian diagonal estimates.
      hessian_fn_state: the state of the estimator.
      hyperparams: ``b1``, ``b2``, ``eps``, ``gamma`` (and ``clip_threshold`` when clipping).
    """

    count: jax.Array
    mu: Updates
    nu: Updates
    hessian_fn_state: OptState
    hyperparams: Hyperparams


def scale_by_sophia(
    b1: jax.typing.ArrayLike = 0.965,
    b2: jax.typing.ArrayLike = 0.99,
    eps: jax.typing.ArrayLike = 1e-8,
    gamma: jax.typing.ArrayLike = 0.01,
    clip_threshold: jax.typing.ArrayLike | None = 1.0,
    update_interval: jax.typing.ArrayLike = 10,
    hessian_diagonal_fn: GradientTransformation | None = _DEFAULT_ESTIMATOR,
    mu_dtype: Any | None = None,
    verbose: bool = False,
    print_win_rate_every_n_steps: jax.typing.ArrayLike = 0,
) -> GradientTransformationExtraArgs:
    """Sophia's scaling (Liu et al. 2023, Algorithm 3)::

        m_t = b1 m_{t-1} + (1 - b1) g_t
        u_t = clip(m_t / (1 - b1**t) / max(gamma * h_t, eps), clip_threshold)    (h: the old estimate)
        every update_interval steps (at t - 1 = 0, k, 2k ...):  h <- b2 h + (1 - b2) hessian_diagonal_fn(...)

    Args:
      b1: the momentum's decay.
      b2: the decay of the Hessian estimates.
      eps: lower bound of the denominator.
      gamma: scales the Hessian estimate.
      clip_threshold: bound of the update's entries (None: no clipping).
      update_interval: steps between Hessian estimates.
      hessian_diagonal_fn: the estimator (default ``hutchinson_estimator_diag_hessian()``, None too); it
        receives the gradients, ``params`` and the extra arguments of ``update`` (``obj_fn``).
      mu_dtype: storage dtype of ``mu``.
      verbose: print the fraction of unclipped entries every ``print_win_rate_every_n_steps``.
      print_win_rate_every_n_steps: see ``verbose``.

    Returns:
      A ``GradientTransformationExtraArgs`` with state ``SophiaState``; ``update`` needs params.
    """
    validate.unit_interval("b1", b1)
    validate.unit_interval("b2", b2)
    validate.non_negative("eps", eps)
    validate.non_negative("gamma", gamma)
    if clip_threshold is not None:
        validate.positive("clip_threshold", clip_threshold)
    validate.integer_at_least("update_interval", update_interval, 1)
    if verbose:
        validate.integer_at_least("print_win_rate_every_n_steps", print_win_rate_every_n_steps, 1)
    estimator = hutchinson_estimator_diag_hessian() if hessian_diagonal_fn is None else hessian_diagonal_fn
    estimator = _check_transform("hessian_diagonal_fn", estimator)
    numbers = {"b1": b1, "b2": b2, "eps": eps, "gamma": gamma}
    if clip_threshold is not None:
        numbers["clip_threshold"] = clip_threshold
    for name, value in numbers.items():
        if callable(value):
            raise TypeError(f"{name} must be a number (Optax's scale_by_sophia takes no schedules)")
    spec = HyperparamSpec(**numbers)

    def init(params):
        return SophiaState(
            count=jnp.zeros((), jnp.int32), mu=tree_lib.zeros_like(params, mu_dtype), nu=tree_lib.zeros_like(params),
            hessian_fn_state=estimator.init(params), hyperparams=spec.init(hyperparam_dtype(params)),
        )  # fmt: skip

    def update(updates, state, params=None, **extra_args):
        if params is None:
            raise ValueError("scale_by_sophia needs params: call update(updates, state, params)")
        hp = state.hyperparams
        t = tree_lib.safe_increment(state.count)

        def leaf(g, mu, nu):
            gw = widen(g)
            real = jnp.finfo(gw.dtype).dtype
            b1_, eps_, gamma_ = (hp[k].astype(real) for k in ("b1", "eps", "gamma"))
            mu_new = ema_step(widen(mu), gw, b1_)
            u = mu_new * bias_correction_factor(b1_, t) / jnp.maximum(gamma_ * widen(nu), eps_)
            return u, mu_new.astype(jnp.result_type(mu))

        results = tree_lib.map(leaf, updates, state.mu, state.nu, names=("updates", "mu", "nu"))
        directions, mu = tree_lib.unzip(results, updates, 2)
        if clip_threshold is not None:
            bound = hp["clip_threshold"]
            if verbose:
                unclipped = sum(jnp.sum(jnp.abs(u) < bound.astype(u.dtype)) for u in jax.tree.leaves(directions))
                rate = unclipped / max(1, sum(jnp.size(u) for u in jax.tree.leaves(directions)))
                jax.lax.cond(
                    t % print_win_rate_every_n_steps == 0,
                    lambda: jax.debug.print("Sophia optimizer win rate: {}", rate),
                    lambda: None,
                )
            directions = jax.tree.map(lambda u: jnp.clip(u, -bound.astype(u.dtype), bound.astype(u.dtype)), directions)
        new_updates = jax.tree.map(lambda u, g: u.astype(jnp.result_type(g)), directions, updates)

        def estimate(hessian_state, nu):
            diagonal, hessian_state = call_update(estimator, updates, hessian_state, params, extra_args)

            def ema(n, h):
                real = jnp.finfo(widen(n).dtype).dtype
                return ema_step(widen(n), widen(h), hp["b2"].astype(real)).astype(jnp.result_type(n))

            return hessian_state, tree_lib.map(ema, nu, diagonal, names=("nu", "hessian diagonal"))

        hessian_state, nu = jax.lax.cond(
            state.count % update_interval == 0, estimate, lambda h, n: (h, n), state.hessian_fn_state, state.nu
        )
        return new_updates, SophiaState(t, mu, nu, hessian_state, hp)

    return GradientTransformationExtraArgs(init, update)


def sophia(
    learning_rate: ScalarOrSchedule,
    b1: jax.typing.ArrayLike = 0.965,
    b2: jax.typing.ArrayLike = 0.99,
    eps: jax.typing.ArrayLike = 1e-8,
    weight_decay: jax.typing.ArrayLike = 1e-4,
    weight_decay_mask: Any | Callable[[Any], Any] | None = None,
    gamma: jax.typing.ArrayLike = 0.01,
    clip_threshold: jax.typing.ArrayLike | None = 1.0,
    update_interval: jax.typing.ArrayLike = 10,
    hessian_diagonal_fn: GradientTransformation | None = _DEFAULT_ESTIMATOR,
    mu_dtype: Any | None = None,
    verbose: bool = False,
    print_win_rate_every_n_steps: jax.typing.ArrayLike = 0,
) -> GradientTransformationExtraArgs:
    """Sophia (Liu et al. 2023): ``w -> w - lr * (u_t + weight_decay * w)``, ``u_t`` from ``scale_by_sophia``.

    Pass the loss function to every update: ``update(grads, state, params, obj_fn=loss_fn)`` (the
    Hutchinson estimator differentiates it twice).

    Args:
      learning_rate: the step size (a number or a schedule).
      b1, b2, eps, gamma, clip_threshold, update_interval, hessian_diagonal_fn, mu_dtype, verbose,
        print_win_rate_every_n_steps: as ``scale_by_sophia``.
      weight_decay: decoupled decay (multiplied by the learning rate).
      weight_decay_mask: which leaves decay.

    Returns:
      ``chain(scale_by_sophia, add_decayed_weights, scale_by_learning_rate)``.
    """
    validate.non_negative("learning_rate", learning_rate)
    return chain(
        scale_by_sophia(
            b1=b1, b2=b2, eps=eps, gamma=gamma, clip_threshold=clip_threshold, update_interval=update_interval,
            hessian_diagonal_fn=hessian_diagonal_fn, mu_dtype=mu_dtype, verbose=verbose,
            print_win_rate_every_n_steps=print_win_rate_every_n_steps,
        ),
        add_decayed_weights(weight_decay, weight_decay_mask),
        scale_by_learning_rate(learning_rate),
    )  # fmt: skip
