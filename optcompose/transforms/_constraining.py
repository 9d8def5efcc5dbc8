"""Constraints on updates: ``zero_nans``, ``keep_params_nonnegative``, ``centralize``."""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from optcompose._base import EmptyState, GradientTransformationExtraArgs, Stateless
from optcompose._numerics import widen
from optcompose._tree import map as tree_map

NonNegativeParamsState = EmptyState
"""The state of ``keep_params_nonnegative`` (empty, as Optax's)."""


def _nonnegative(updates: Any, params: Any) -> Any:
    if params is None:
        raise ValueError("keep_params_nonnegative needs params: call update(updates, state, params)")

    def leaf(u, w):
        if u is None:
            return None
        if jnp.iscomplexobj(u) or jnp.iscomplexobj(w):
            raise TypeError("keep_params_nonnegative needs real leaves (complex numbers have no sign)")
        u_wide, w_wide = widen(u), widen(w)
        return jnp.where(w_wide + u_wide < 0.0, -w_wide, u_wide).astype(jnp.result_type(u))

    return tree_map(leaf, updates, params, names=("updates", "params"))


def keep_params_nonnegative() -> Stateless:
    """Keeps the parameters >= 0 after ``apply_updates``: a step that would cross 0 lands on 0::

        u -> -w    where w + u < 0
        u -> u     elsewhere

    (the projection onto the non-negative orthant of a projected-gradient method). Put it last in
    a chain, after the learning rate.

    Returns:
      A stateless transform whose ``update`` requires params.

    Edge behaviour: a negative parameter is moved to 0 (``u = -w``) by the next update; the test
    ``w + u < 0`` is made in float32 (or wider), the result stored in the update's dtype; complex
    leaves raise ``TypeError``.
    """
    return Stateless(_nonnegative, name="keep_params_nonnegative")


class ZeroNansState(NamedTuple):
    """The state of ``zero_nans``.

    Attributes:
      found_nan: a pytree like the params, a bool per leaf: whether the last update's leaf held a NaN.
    """

    found_nan: Any


class ZeroNans(GradientTransformationExtraArgs):
    """``zero_nans()``."""

    def __new__(cls) -> ZeroNans:
        def init(params):
            return ZeroNansState(jax.tree.map(lambda _: jnp.zeros((), bool), params))

        def update(updates, state, params=None, **extra_args):
            del state, params, extra_args
            found = jax.tree.map(lambda u: jnp.any(jnp.isnan(u)), updates)
            cleaned = jax.tree.map(lambda u: jnp.where(jnp.isnan(u), jnp.zeros_like(u), u), updates)
            return cleaned, ZeroNansState(found)

        return super().__new__(cls, init, update)

    def __repr__(self) -> str:
        return "zero_nans()"


def zero_nans() -> ZeroNans:
    """Replaces NaN entries of the updates by 0 and records, per leaf, whether it held one.

    ``u -> where(isnan(u), 0, u)``; ``state.found_nan`` (a bool per leaf) tells which leaves had
    a NaN at the last update; the transform itself never reads it. Infinities pass unchanged (use
    ``apply_if_finite`` to skip such steps).

    Returns:
      A transform with a ``ZeroNansState``.

    Edge behaviour: complex entries with a NaN real or imaginary part become 0; integer leaves
    pass unchanged (they hold no NaN).
    """
    return ZeroNans()


def _centralize(updates: Any, params: Any) -> Any:
    del params

    def leaf(g):
        if jnp.ndim(g) <= 1:
            return g
        wide = widen(g)
        return (wide - jnp.mean(wide, axis=tuple(range(1, wide.ndim)), keepdims=True)).astype(jnp.result_type(g))

    return tree_map(leaf, updates, names=("updates",))


class Centralize(Stateless):
    """``centralize()``."""

    def __new__(cls) -> Centralize:
        return super().__new__(cls, _centralize, name="centralize")


def centralize() -> Centralize:
    """Gradient centralisation (Yong et al. 2020, eq. 4): subtract each row's mean from matrix-like leaves::

        g[i, ...] -> g[i, ...] - mean(g[i, ...])     for leaves of rank >= 2 (mean over all axes but the first)
        g -> g                                        for scalars and vectors

    Returns:
      A stateless transform (state ``EmptyState()``).

    Edge behaviour: the mean is taken in float32 (or wider) and the result stored in the leaf's
    dtype; Optax averages in the leaf's own dtype, so bfloat16 results can differ by one bfloat16
    rounding.
    """
    return Centralize()
