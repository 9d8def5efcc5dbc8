"""DoG and DoWG: step sizes from the distance travelled (Ivgi et al. 2023; Khaled et al. 2023)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from optcompose import _tree as tree_lib
from optcompose import _validate as validate
from optcompose._base import GradientTransformationExtraArgs, Params, ScalarOrSchedule, chain, identity
from optcompose._hyperparams import Hyperparams, HyperparamSpec
from optcompose._numerics import widen
from optcompose.contrib._common import NO_PARAMS, copy_tree, scalar_dtype, tree_norm, tree_squared_norm
from optcompose.transforms._decay import add_decayed_weights
from optcompose.transforms._scaling import scale_by_learning_rate

_INIT_STEPS = ("distance", "learning_rate", "heuristic")


def _scaled(updates: Any, factor: jax.Array) -> Any:
    def leaf(u):
        return (widen(u) * factor.astype(jnp.finfo(widen(u).dtype).dtype)).astype(jnp.result_type(u))

    return tree_lib.map(leaf, updates, names=("updates",))


def _difference(params: Any, start: Any) -> Any:
    return tree_lib.map(lambda a, b: widen(a) - widen(b), start, params, names=("init_params", "params"))


def _distance(params: Any, start: Any, dtype: Any) -> jax.Array:
    return tree_squared_norm(_difference(params, start), dtype)


class DoGState(NamedTuple):
    """State of ``scale_by_dog``.

    Attributes:
      is_init_step: whether the next step is the first one.
      init_params: the initial parameters ``x_0``.
      max_dist: ``r_t = max(r_eps, max_i ||x_i - x_0||)``.
      sum_sq_norm_grads: ``sum_i ||g_i||^2``.
      hyperparams: ``eps``.
    """

    is_init_step: jax.Array
    init_params: Params
    max_dist: jax.Array
    sum_sq_norm_grads: jax.Array
    hyperparams: Hyperparams


def scale_by_dog(init_step: tuple[str, jax.typing.ArrayLike], eps: jax.typing.ArrayLike = 1e-8):
    """DoG's step size (Ivgi, Hinder & Carmon 2023, "DoG is SGD's best friend", Algorithm 1)::

        r_t  = max(r_{t-1}, ||x_t - x_0||)
        eta_t = r_t / sqrt(sum_{i <= t} ||g_i||^2 + eps);      u = eta_t * g

    ``init_step`` sets ``r_eps`` (the first step's scale): ``('distance', r)``: ``r_eps = r``;
    ``('heuristic', a)``: ``r_eps = a (1 + ||x_0||)``; ``('learning_rate', lr)``: ``r_eps = 0`` and
    the first step uses ``eta = lr``.
    """
    kind, value = _init_step(init_step)
    validate.non_negative("eps", eps)
    spec = HyperparamSpec(eps=eps)

    def init(params):
        dtype = scalar_dtype(params)
        if kind == "distance":
            r_eps = jnp.asarray(value, dtype)
        elif kind == "heuristic":
            r_eps = value * (1.0 + tree_norm(params, dtype))
        else:
            r_eps = jnp.zeros((), dtype)
        return DoGState(
            is_init_step=jnp.asarray(True), init_params=copy_tree(params), max_dist=jnp.asarray(r_eps, dtype),
            sum_sq_norm_grads=jnp.zeros((), dtype), hyperparams=spec.init(dtype),
        )  # fmt: skip

    def update(updates, state, params=None, **extra_args):
        del extra_args
        if params is None:
            raise ValueError(NO_PARAMS.format(name="dog"))
        dtype = jnp.result_type(state.max_dist)
        max_dist = jnp.maximum(state.max_dist, tree_norm(params, dtype, minus=state.init_params))
        total = state.sum_sq_norm_grads + tree_squared_norm(updates, dtype)
        eta = max_dist / jnp.sqrt(total + state.hyperparams["eps"].astype(dtype))
        if kind == "learning_rate":
            eta = jnp.where(state.is_init_step, jnp.asarray(value, dtype), eta)
        return _scaled(updates, eta), state._replace(
            is_init_step=jnp.asarray(False), max_dist=max_dist, sum_sq_norm_grads=total
        )

    return GradientTransformationExtraArgs(init, update)


def _init_step(init_step):
    try:
        kind, value = init_step
    except (TypeError, ValueError) as err:
        raise TypeError(
            f"init_step must be a pair (kind, value) with kind in {_INIT_STEPS}, got {init_step!r}"
        ) from err
    validate.one_of("init_step[0]", kind, _INIT_STEPS)
    validate.non_negative("init_step[1]", value)
    return kind, float(value)


def dog(
    learning_rate: ScalarOrSchedule = 1.0,
    init_step: tuple[str, jax.typing.ArrayLike] = ("heuristic", 1e-6),
    eps: jax.typing.ArrayLike = 1e-8,
    weight_decay: jax.typing.ArrayLike | None = None,
    mask: Any | Callable[[Any], Any] | None = None,
) -> GradientTransformationExtraArgs:
    """DoG (Ivgi et al. 2023): ``w -> w - learning_rate * eta_t * (g + weight_decay * w)``.

    Args:
      learning_rate: a multiplier of DoG's step (1: nothing to tune; a number or a schedule).
      init_step: how the first step is sized (see ``scale_by_dog``).
      eps: added under the root.
      weight_decay: L2 decay added to the gradients first (None: none).
      mask: which leaves decay.

    Returns:
      ``chain(add_decayed_weights or identity, scale_by_dog, scale_by_learning_rate)``; ``update``
      needs params.
    """
    validate.non_negative("learning_rate", learning_rate)
    return chain(
        identity() if weight_decay is None else add_decayed_weights(weight_decay, mask),
        scale_by_dog(init_step, eps),
        scale_by_learning_rate(learning_rate),
    )


class DoWGState(NamedTuple):
    """State of ``scale_by_dowg``.

    Attributes:
      init_params: the initial parameters ``x_0``.
      weighted_sq_norm_grads: ``v_t = sum_i r_i^2 ||g_i||^2``.
      estim_sq_dist: ``r_t^2 = max(r_{t-1}^2, ||x_t - x_0||^2)``.
      hyperparams: ``eps``.
    """

    init_params: Params
    weighted_sq_norm_grads: jax.Array
    estim_sq_dist: jax.Array
    hyperparams: Hyperparams


def scale_by_dowg(init_estim_sq_dist: jax.typing.ArrayLike | None = None, eps: jax.typing.ArrayLike = 1e-4):
    """DoWG's step size (Khaled, Mishchenko & Jin 2023, Algorithm 1)::

        r_t^2 = max(r_{t-1}^2, ||x_t - x_0||^2);   v_t = v_{t-1} + r_t^2 ||g_t||^2
        eta_t = r_t^2 / (sqrt(v_t) + eps);          u = eta_t * g

    ``init_estim_sq_dist`` is ``r_0^2`` (default ``eps``).
    """
    validate.non_negative("eps", eps)
    if init_estim_sq_dist is not None:
        validate.non_negative("init_estim_sq_dist", init_estim_sq_dist)
    start = eps if init_estim_sq_dist is None else init_estim_sq_dist
    spec = HyperparamSpec(eps=eps)

    def init(params):
        dtype = scalar_dtype(params)
        return DoWGState(
            init_params=copy_tree(params), weighted_sq_norm_grads=jnp.zeros((), dtype),
            estim_sq_dist=jnp.asarray(start, dtype), hyperparams=spec.init(dtype),
        )  # fmt: skip

    def update(updates, state, params=None, **extra_args):
        del extra_args
        if params is None:
            raise ValueError(NO_PARAMS.format(name="dowg"))
        dtype = jnp.result_type(state.estim_sq_dist)
        sq_dist = jnp.maximum(state.estim_sq_dist, _distance(params, state.init_params, dtype))
        weighted = sq_dist * tree_squared_norm(updates, dtype) + state.weighted_sq_norm_grads
        eta = sq_dist / (jnp.sqrt(weighted) + state.hyperparams["eps"].astype(dtype))
        return _scaled(updates, eta), state._replace(estim_sq_dist=sq_dist, weighted_sq_norm_grads=weighted)

    return GradientTransformationExtraArgs(init, update)


def dowg(
    learning_rate: ScalarOrSchedule = 1.0,
    init_estim_sq_dist: jax.typing.ArrayLike | None = None,
    eps: jax.typing.ArrayLike = 1e-4,
    weight_decay: jax.typing.ArrayLike | None = None,
    mask: Any | Callable[[Any], Any] | None = None,
) -> GradientTransformationExtraArgs:
    """DoWG (Khaled et al. 2023): ``w -> w - learning_rate * eta_t * (g + weight_decay * w)``.

    Args:
      learning_rate: a multiplier of DoWG's step (a number or a schedule).
      init_estim_sq_dist: ``r_0^2`` (default ``eps``).
      eps: added to the denominator.
      weight_decay: L2 decay added to the gradients first (None: none).
      mask: which leaves decay.

    Returns:
      ``chain(add_decayed_weights or identity, scale_by_dowg, scale_by_learning_rate)``; ``update``
      needs params.
    """
    validate.non_negative("learning_rate", learning_rate)
    return chain(
        identity() if weight_decay is None else add_decayed_weights(weight_decay, mask),
        scale_by_dowg(init_estim_sq_dist, eps),
        scale_by_learning_rate(learning_rate),
    )
