"""Complex parameters as pairs of real ones, for transforms written for real numbers."""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from optcompose._base import (
    GradientTransformation,
    GradientTransformationExtraArgs,
    OptState,
    _check_transform,
    call_update,
)


class SplitRealAndImaginaryArrays(NamedTuple):
    """A complex array as its real and imaginary parts (two real leaves)."""

    real: jax.Array
    imaginary: jax.Array


class SplitRealAndImaginaryState(NamedTuple):
    """State of ``split_real_and_imaginary``: the inner transform's state (on the split leaves)."""

    inner_state: OptState


def _split(x: Any) -> Any:
    if x is not None and jnp.iscomplexobj(x):
        return SplitRealAndImaginaryArrays(jnp.real(x), jnp.imag(x))
    return x


def _merge(x: Any) -> Any:
    if isinstance(x, SplitRealAndImaginaryArrays):
        return jax.lax.complex(x.real, x.imaginary)
    return x


def split_real_and_imaginary(inner: GradientTransformation) -> GradientTransformationExtraArgs:
    """Runs ``inner`` on ``(Re z, Im z)`` for every complex leaf ``z``, as if they were two parameters::

        u = inner(Re g, Im g)  ->  u_re + i u_im

    so a transform whose statistics are per real coordinate (Adam's ``g^2``) treats the real and
    imaginary parts separately, instead of using ``|g|^2`` as optcompose's transforms do for complex
    leaves. Real leaves pass to ``inner`` unchanged.

    Args:
      inner: the transform to run on the real pairs; it receives the extra arguments of ``update``.

    Returns:
      A ``GradientTransformationExtraArgs`` with state ``SplitRealAndImaginaryState``. The result is
      not phase-equivariant (by design: a global phase mixes the real and imaginary parts).
    """
    inner = _check_transform("inner", inner)

    def init(params):
        return SplitRealAndImaginaryState(inner.init(jax.tree.map(_split, params)))

    def update(updates, state, params=None, **extra_args):
        split_updates = jax.tree.map(_split, updates)
        split_params = None if params is None else jax.tree.map(_split, params)
        new, inner_state = call_update(inner, split_updates, state.inner_state, split_params, extra_args)
        merged = jax.tree.map(_merge, new, is_leaf=lambda x: isinstance(x, SplitRealAndImaginaryArrays))
        return merged, SplitRealAndImaginaryState(inner_state)

    return GradientTransformationExtraArgs(init, update)
