"""Pure low-precision training: parameters stored in bfloat16 (or float16) that still learn.

Adding a step smaller than half a unit in the last place (2**-9 relative for bfloat16) to a
parameter and rounding to nearest gives back the same parameter: training stalls once the steps
get small. ``low_precision_updates`` wraps an optimizer so that its steps land on the parameters
with Kahan-compensated summation or with stochastic rounding (as the optimi library does for
PyTorch), and the updates it returns are the *exact* differences to the new parameters.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from optcompose import _tree as tree_lib
from optcompose import _validate as validate
from optcompose._base import (
    GradientTransformation,
    GradientTransformationExtraArgs,
    OptState,
    _check_transform,
    call_update,
)

_METHODS = ("kahan", "stochastic")


class LowPrecisionUpdatesState(NamedTuple):
    """The state of ``low_precision_updates``.

    Attributes:
      inner_state: the wrapped optimizer's state.
      compensation: ``"kahan"``: per leaf, the part of the past steps not yet in the parameter
        (low-precision leaves; a scalar 0 for the others); ``"stochastic"``: ``None``.
      key: ``"stochastic"``: the PRNG key of the next step's rounding; ``"kahan"``: ``None``.
    """

    inner_state: OptState
    compensation: Any
    key: Any


def _is_low_precision(x: Any) -> bool:
    dtype = jnp.result_type(x)
    return bool(jnp.issubdtype(dtype, jnp.floating)) and jnp.dtype(dtype).itemsize < 4


def round_stochastically(x: jax.Array, dtype: Any, key: jax.Array) -> jax.Array:
    """``x`` rounded to ``dtype`` up or down at random, unbiased: ``E[result] = x``.

    With ``lo <= x <= hi`` the two neighbours of ``x`` in ``dtype``, the result is ``hi`` with
    probability ``(x - lo) / (hi - lo)``, else ``lo``; values already in ``dtype``, infinities,
    NaN and values beyond the dtype's range round to nearest.
    """
    x = jnp.asarray(x, jnp.float32)
    nearest = x.astype(dtype)
    wide = nearest.astype(jnp.float32)
    toward = jnp.where(wide > x, -jnp.inf, jnp.inf).astype(dtype)
    other = jnp.nextafter(nearest, toward)
    gap = other.astype(jnp.float32) - wide
    usable = jnp.isfinite(wide) & jnp.isfinite(other.astype(jnp.float32)) & (gap != 0)
    probability = jnp.where(usable, (x - wide) / jnp.where(usable, gap, 1.0), 0.0)
    draw = jax.random.uniform(key, jnp.shape(x), jnp.float32)
    return jnp.where(draw < probability, other, nearest)


class LowPrecisionUpdates(GradientTransformationExtraArgs):
    """A transform made by ``low_precision_updates``: ``self.inner`` with compensated steps."""

    def __new__(
        cls, inner: GradientTransformation, method: str, key: Any, compensation_dtype: Any
    ) -> LowPrecisionUpdates:
        inner = _check_transform("inner", inner)
        validate.one_of("method", method, _METHODS)
        if method == "stochastic":
            if key is None:
                raise ValueError("method='stochastic' needs key= (an int seed or a jax.random key)")
            key = jax.random.key(key) if isinstance(key, int) and not isinstance(key, bool) else key
            if not (
                hasattr(key, "dtype")
                and (jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key) or key.dtype == jnp.uint32)
            ):
                raise TypeError(f"key must be an int seed or a jax.random key, got {key!r}")
        elif key is not None:
            raise ValueError("key= is only used by method='stochastic'")

        def init(params):
            if method == "kahan":
                compensation = jax.tree.map(
                    lambda p: (
                        jnp.zeros(jnp.shape(p), compensation_dtype or jnp.result_type(p))
                        if _is_low_precision(p)
                        else jnp.zeros((), jnp.float32)
                    ),
                    params,
                )
                return LowPrecisionUpdatesState(inner.init(params), compensation, None)
            return LowPrecisionUpdatesState(inner.init(params), None, key)

        def update(updates, state, params=None, **extra_args):
            if params is None:
                raise ValueError("low_precision_updates needs params: call update(updates, state, params)")
            new_updates, inner_state = call_update(inner, updates, state.inner_state, params, extra_args)

            if method == "kahan":

                def leaf(u, p, c):
                    if not _is_low_precision(p):
                        return u, c
                    wide_p = jnp.asarray(p).astype(jnp.float32)
                    step = jnp.asarray(u).astype(jnp.float32) + c.astype(jnp.float32)
                    landed = (wide_p + step).astype(jnp.result_type(p)).astype(jnp.float32)
                    delta = landed - wide_p
                    return delta, (step - delta).astype(c.dtype)

                pairs = tree_lib.map(
                    leaf, new_updates, params, state.compensation, names=("updates", "params", "compensation")
                )
                deltas, compensation = tree_lib.unzip(pairs, new_updates, 2)
                return deltas, LowPrecisionUpdatesState(inner_state, compensation, None)

            next_key, this_key = jax.random.split(state.key)
            leaves, treedef = jax.tree.flatten(params)
            keys = treedef.unflatten([jax.random.fold_in(this_key, i) for i in range(len(leaves))])

            def leaf_sr(u, p, k):
                if not _is_low_precision(p):
                    return u
                wide_p = jnp.asarray(p).astype(jnp.float32)
                target = wide_p + jnp.asarray(u).astype(jnp.float32)
                landed = round_stochastically(target, jnp.result_type(p), k).astype(jnp.float32)
                return landed - wide_p

            deltas = tree_lib.map(leaf_sr, new_updates, params, keys, names=("updates", "params", "keys"))
            return deltas, LowPrecisionUpdatesState(inner_state, None, next_key)

        self = super().__new__(cls, init, update)
        self.inner, self.method, self.compensation_dtype = inner, method, compensation_dtype
        return self

    def __repr__(self) -> str:
        return f"low_precision_updates({self.inner!r}, method={self.method!r})"


def low_precision_updates(
    inner: GradientTransformation,
    method: str = "kahan",
    *,
    key: Any = None,
    compensation_dtype: Any | None = None,
) -> LowPrecisionUpdates:
    """Makes ``inner``'s steps count on bfloat16 / float16 parameters (pure low-precision training).

    For every low-precision leaf ``w`` with inner update ``u`` (computed as usual, its state stored
    in the parameters' dtype or as the inner optimizer says), in float32::

        "kahan"       s = u + c;   w' = round_nearest(w + s);   c <- s - (w' - w)    (Kahan 1965)
        "stochastic"  w' = round_stochastic(w + u)   (up or down, E[w'] = w + u; Gupta et al. 2015)

    and the update returned is ``w' - w`` **in float32**. The apply side is then any
    ``apply_updates`` (optcompose's or Optax's, which add in the wider dtype and cast back): it
    lands exactly on ``w'``, because the difference of two bfloat16 (float16) numbers is exact in
    float32 whenever the parameter's magnitude changes by less than a factor 2**16 in one step.
    So use it as any optimizer::

        tx = low_precision_updates(adamw(1e-3), "kahan")          # or ("stochastic", key=0)
        updates, state = tx.update(grads, state, params)          # params: required
        params = apply_updates(params, updates)                   # params stay bfloat16

    The Kahan compensation ``c`` (the step that did not fit in ``w`` yet, below half an ulp of
    ``w``) is stored per low-precision leaf in ``compensation_dtype`` (default: the parameter's
    dtype, as optimi stores it; 2 more bytes per parameter); stochastic rounding needs no memory
    beyond a key, split once per step and folded in per leaf (leaf order of ``params``).
    float32 and float64 leaves get ``inner``'s updates unchanged (and no compensation memory).

    Args:
      inner: the optimizer.
      method: ``"kahan"`` (deterministic) or ``"stochastic"``.
      key: for ``"stochastic"``: an int seed or a ``jax.random`` key (required).
      compensation_dtype: storage dtype of the Kahan compensation.

    Returns:
      A ``LowPrecisionUpdates`` transform whose state is ``LowPrecisionUpdatesState``.
    """
    return LowPrecisionUpdates(inner, method, key, compensation_dtype)
