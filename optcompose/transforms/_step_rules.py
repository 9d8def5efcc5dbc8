"""Step-size and direction rules that look at the whole update: Polyak's step, normalisation by the
update's norm, optimistic (extra-)gradients and annealed gradient noise."""

from __future__ import annotations

import warnings
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from optcompose import _tree as tree_lib
from optcompose import _validate as validate
from optcompose._base import GradientTransformationExtraArgs, Updates
from optcompose._hyperparams import Hyperparams, HyperparamSpec, hyperparam_dtype
from optcompose._leafwise import Leafwise, leafwise
from optcompose._numerics import widen
from optcompose.transforms._shaped import StateView

_FLOAT64_EPS = float(jnp.finfo(jnp.float64).eps)


def _widest(updates: Any) -> Any:
    """The compute dtype of the widest real part among the leaves (float32 at least)."""
    tree_lib.check_floating(updates, "updates")
    dtype = jnp.dtype(jnp.float32)
    for leaf in jax.tree.leaves(updates):
        real = jnp.finfo(jnp.result_type(widen(leaf))).dtype
        dtype = real if real.itemsize > dtype.itemsize else dtype
    return dtype


def _scale_leaves(updates: Any, factor: jax.Array) -> Any:
    """``factor * u`` per leaf, computed in the leaf's compute dtype and stored in its own dtype."""

    def one(u):
        wide = widen(u)
        return (wide * factor.astype(jnp.real(wide).dtype)).astype(jnp.result_type(u))

    return tree_lib.map(one, updates, names=("updates",))


def _norm(updates: Any) -> jax.Array:
    """The l2 norm of all leaves together, overflow-safe (each leaf's norm rescaled by the largest)."""
    dtype = _widest(updates)
    norms = [tree_lib.l2_norm(leaf).astype(dtype) for leaf in jax.tree.leaves(updates)]
    if not norms:
        return jnp.zeros((), dtype)
    largest = jnp.max(jnp.stack(norms))
    usable = jnp.isfinite(largest) & (largest > 0)
    divisor = jnp.where(usable, largest, 1.0)
    total = sum(jnp.square(n / divisor) for n in norms)
    return jnp.where(usable, largest * jnp.sqrt(total), largest)


def _squared_norm(updates: Any) -> jax.Array:
    """``sum |u|^2`` over all leaves, in the widest compute dtype (inf when it overflows)."""
    dtype = _widest(updates)
    total = jnp.zeros((), dtype)
    for leaf in jax.tree.leaves(updates):
        total = total + jnp.sum(jnp.real(widen(leaf) * jnp.conj(widen(leaf)))).astype(dtype)
    return total


# ----------------------------------------------------------------------------------------------
# Polyak's step size


class ScaleByPolyakState(NamedTuple):
    hyperparams: Hyperparams


_POLYAK_VARIANTS = ("sps", "sps+")


def scale_by_polyak(
    f_min: float = 0.0,
    max_learning_rate: float = 1.0,
    eps: float = 0.0,
    variant: str = "sps",
) -> GradientTransformationExtraArgs:
    """Scales the update by Polyak's step size (Loizou et al. 2021, "Stochastic Polyak Step-size", SPS_max)::

        gap   = f(w) - f_min              (variant "sps"; "sps+" uses max(gap, 0), Garrigos et al. 2023)
        step  = min(gap / (||u||^2 + eps), max_learning_rate)
        u -> step * u                      (0 when ||u||^2 + eps <= float64 machine epsilon)

    ``update`` needs the objective's value: ``update(updates, state, params, value=loss)``.
    ``||u||^2`` is over all leaves together (``|u|^2`` for complex leaves). The gap is formed
    after widening ``value`` to the norm's dtype; Optax subtracts ``f_min`` in the value's own
    dtype first (with a float32 loss and float64 parameters that rounds the gap: 3e-8 relative
    for ``f_min = 0.7``).

    Args:
      f_min: a lower bound of the objective (0 for models that interpolate the data).
      max_learning_rate: the largest step (>= 0).
      eps: added to the squared norm (>= 0).
      variant: ``"sps"`` or ``"sps+"``.

    Returns:
      A ``GradientTransformationExtraArgs`` whose update takes ``value``.
    """
    validate.finite("f_min", f_min)
    validate.non_negative("max_learning_rate", max_learning_rate)
    validate.non_negative("eps", eps)
    validate.one_of("variant", variant, _POLYAK_VARIANTS)
    spec = HyperparamSpec(f_min=f_min, max_learning_rate=max_learning_rate, eps=eps)
    if spec.schedules:
        raise TypeError(f"scale_by_polyak takes numbers, not schedules, for {sorted(spec.schedules)}")

    def init(params):
        return ScaleByPolyakState(spec.init(hyperparam_dtype(params)))

    def update(updates, state, params=None, *, value=None, **extra_args):
        del params, extra_args
        if value is None:
            raise TypeError("scale_by_polyak needs the objective's value: update(updates, state, params, value=loss)")
        squared = _squared_norm(updates)
        hp = {k: jnp.asarray(v).astype(squared.dtype) for k, v in state.hyperparams.items()}
        gap = jnp.asarray(value).astype(squared.dtype) - hp["f_min"]
        if variant == "sps+":
            gap = jnp.maximum(gap, 0.0)
        denominator = squared + hp["eps"]
        tiny = denominator <= _FLOAT64_EPS
        step = jnp.where(tiny, 0.0, jnp.minimum(gap / jnp.where(tiny, 1.0, denominator), hp["max_learning_rate"]))
        return _scale_leaves(updates, step), state

    return GradientTransformationExtraArgs(init, update)


# ----------------------------------------------------------------------------------------------
# Normalisation by the update's norm


class NormalizeByUpdateNormState(NamedTuple):
    hyperparams: Hyperparams


def normalize_by_update_norm(scale_factor: float = 1.0, eps: float = 1e-6) -> GradientTransformationExtraArgs:
    """Divides the update by its global l2 norm::

        u -> scale_factor * u / (||u|| + eps)

    ``||u||`` is over all leaves together, computed overflow-safe (1e30 entries do not make it
    inf). With ``eps = 0`` a zero update stays 0 (Optax: 0 / 0 = NaN). Pass a negative
    ``scale_factor`` to step down the gradient (``normalize_by_update_norm(-lr)``).

    Args:
      scale_factor: the length of the normalised update (any finite number).
      eps: added to the norm (>= 0).

    Returns:
      A ``GradientTransformationExtraArgs``.
    """
    validate.finite("scale_factor", scale_factor)
    validate.non_negative("eps", eps)
    spec = HyperparamSpec(scale_factor=scale_factor, eps=eps)
    if spec.schedules:
        raise TypeError(f"normalize_by_update_norm takes numbers, not schedules, for {sorted(spec.schedules)}")

    def init(params):
        return NormalizeByUpdateNormState(spec.init(hyperparam_dtype(params)))

    def update(updates, state, params=None, **extra_args):
        del params, extra_args
        norm = _norm(updates)
        scale_factor_, eps_ = (jnp.asarray(state.hyperparams[k]).astype(norm.dtype) for k in ("scale_factor", "eps"))
        denominator = norm + eps_
        factor = jnp.where(denominator > 0, scale_factor_ / jnp.where(denominator > 0, denominator, 1.0), 0.0)
        return _scale_leaves(updates, factor), state

    return GradientTransformationExtraArgs(init, update)


# ----------------------------------------------------------------------------------------------
# Optimistic gradients


class ScaleByOptimisticGradientState(NamedTuple):
    is_initial_step: jax.Array
    previous_gradient: Updates
    hyperparams: Hyperparams


class _OptimisticLeafState(NamedTuple):
    count: jax.Array
    previous_gradient: Updates
    hyperparams: Hyperparams


def _optimistic(g, previous, *, hp, t):
    previous = jnp.where(t == 1, g, previous)
    return (hp.alpha + hp.beta) * g - hp.beta * previous, g


def _optimistic_to_inner(state: ScaleByOptimisticGradientState) -> _OptimisticLeafState:
    count = jnp.where(state.is_initial_step, 0, 1).astype(jnp.int32)
    return _OptimisticLeafState(count, state.previous_gradient, state.hyperparams)


def _optimistic_to_outer(state: _OptimisticLeafState) -> ScaleByOptimisticGradientState:
    return ScaleByOptimisticGradientState(state.count == 0, state.previous_gradient, state.hyperparams)


def scale_by_optimistic_gradient(alpha: float = 1.0, beta: float = 1.0) -> StateView:
    """Generalised optimistic gradients (Mokhtari et al. 2020; Daskalakis et al. 2018, "Training GANs with Optimism")::

        u_t = (alpha + beta) g_t - beta g_{t-1}        (g_0 = g_1: the first step is alpha g_1)

    ``alpha = beta = 1`` is optimistic gradient descent ``2 g_t - g_{t-1}``; ``beta`` is the
    weight of the negative momentum.

    Args:
      alpha: the weight of the current gradient (a number).
      beta: the weight of the gradient's change (a number).

    Returns:
      A transform with state ``ScaleByOptimisticGradientState(is_initial_step, previous_gradient,
      hyperparams)``.
    """
    for name, value in (("alpha", alpha), ("beta", beta)):
        if callable(value):
            raise TypeError(f"scale_by_optimistic_gradient's {name} must be a number, not a schedule")
        validate.finite(name, value)
    inner = leafwise(
        _optimistic, _OptimisticLeafState, hyperparams={"alpha": alpha, "beta": beta},
        name="scale_by_optimistic_gradient",
    )  # fmt: skip
    return StateView(inner, ScaleByOptimisticGradientState, _optimistic_to_inner, _optimistic_to_outer)


# ----------------------------------------------------------------------------------------------
# Annealed gradient noise


class AddNoiseState(NamedTuple):
    count: jax.Array
    rng_key: jax.Array
    hyperparams: Hyperparams


def _as_key(key: Any) -> jax.Array:
    """A typed PRNG key from a typed key, a raw ``uint32`` key (``jax.random.PRNGKey``) or an int seed."""
    if isinstance(key, jax.Array) and jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
        return key
    array = np.asarray(key)
    if array.dtype == np.uint32 and array.shape == (2,):
        return jax.random.wrap_key_data(jnp.asarray(array))
    if array.shape == () and np.issubdtype(array.dtype, np.integer):
        return jax.random.key(int(array))
    raise TypeError(f"key must be a jax.random.key, a raw jax.random.PRNGKey or an integer seed, got {key!r}")


def add_noise(eta: float, gamma: float, key: Any = None, *, seed: int | None = None) -> GradientTransformationExtraArgs:
    """Adds annealed Gaussian noise to the updates (Neelakantan et al. 2015, "Adding Gradient Noise")::

        sigma_t^2 = eta / t**gamma                      (t = 1 for the first update)
        u_t -> u_t + sigma_t * N(0, 1)                  (independent noise per coordinate)

    The noise of each leaf is drawn in the leaf's dtype from its own key (one split of the step's
    key per leaf, in pytree order), so the numbers are Optax's for the same key; the sum is
    computed in float32 (or wider) and stored in the update's dtype.

    Args:
      eta: the initial variance (>= 0).
      gamma: the decay exponent of the variance.
      key: a ``jax.random.key``, a raw ``jax.random.PRNGKey`` or an integer seed. ``None`` warns
        and uses 0, as Optax 0.2.8 does.
      seed: deprecated name of an integer ``key`` (warns).

    Returns:
      A ``GradientTransformationExtraArgs`` with state ``AddNoiseState``.
    """
    if seed is not None:
        warnings.warn('"seed" is deprecated, use "key"', DeprecationWarning, stacklevel=2)
        if key is not None:
            raise ValueError("pass only one of key and seed")
        key = seed
    if key is None:
        warnings.warn("add_noise without a key uses key 0; pass key=", UserWarning, stacklevel=2)
        key = 0
    rng_key = _as_key(key)
    validate.non_negative("eta", eta)
    validate.finite("gamma", gamma)
    spec = HyperparamSpec(eta=eta, gamma=gamma)

    def init(params):
        return AddNoiseState(jnp.zeros((), jnp.int32), rng_key, spec.init(hyperparam_dtype(params)))

    def update(updates, state, params=None, **extra_args):
        del params, extra_args
        values = spec.current(state.hyperparams, state.count)
        t = tree_lib.safe_increment(state.count)
        eta_, gamma_ = values["eta"], values["gamma"]
        sigma = jnp.sqrt(eta_ / t.astype(eta_.dtype) ** gamma_)
        next_key, sample_key = jax.random.split(state.rng_key)
        leaves, structure = jax.tree.flatten(updates)
        keys = jax.random.split(sample_key, len(leaves))

        def noisy(u, k):
            noise = jax.random.normal(k, jnp.shape(u), jnp.result_type(u))
            wide = widen(u)
            return (wide + sigma.astype(jnp.real(wide).dtype) * widen(noise)).astype(jnp.result_type(u))

        new = [noisy(u, keys[i]) for i, u in enumerate(leaves)]
        new_state = AddNoiseState(t, next_key, spec.advance(state.hyperparams, t))
        return structure.unflatten(new), new_state

    return GradientTransformationExtraArgs(init, update)


# ----------------------------------------------------------------------------------------------
# Fromage's step (used by optimizers.fromage; not an Optax transform)


class FromageStepState(NamedTuple):
    count: jax.Array
    hyperparams: Hyperparams


def _fromage_step(u, *, hp, w):
    root = jnp.sqrt(1.0 + hp.learning_rate * hp.learning_rate)
    # 1 / root - 1 without cancellation: it is about -lr^2 / 2, far below float32's resolution of 1.
    shrink = -hp.learning_rate * hp.learning_rate / (root * (1.0 + root))
    return -(hp.learning_rate / root) * u + shrink * w


def fromage_step(learning_rate: Any) -> Leafwise:
    """Fromage's step after the trust ratio (Bernstein et al. 2020, Algorithm 1)::

        u -> -lr / sqrt(1 + lr^2) * u + (1 / sqrt(1 + lr^2) - 1) * w

    so that ``w + u = (w - lr * u_in) / sqrt(1 + lr^2)``. ``1 / sqrt(1 + lr^2) - 1`` is computed
    as ``-lr^2 / (r (1 + r))``, ``r = sqrt(1 + lr^2)``: no cancellation in float32 (the direct
    form loses all digits below lr ~ 3e-4).

    Args:
      learning_rate: Fromage's step size, a number or a schedule.

    Returns:
      A ``Leafwise`` transform (needs the parameters).
    """
    validate.non_negative("learning_rate", learning_rate)
    return leafwise(_fromage_step, FromageStepState, hyperparams={"learning_rate": learning_rate}, name="fromage_step")
