"""Cautious optimizers (Liang et al. 2024): drop the update coordinates that step against the gradient."""

from __future__ import annotations

from typing import NamedTuple

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
from optcompose._numerics import widen


class CautiousState(NamedTuple):
    """The state of ``cautious``: the wrapped optimizer's state, unchanged."""

    inner_state: OptState


def _unit(x):
    modulus = jnp.abs(x)
    return jnp.where(modulus > 0, x / jnp.where(modulus > 0, modulus, 1.0), 0.0)


def _agreement(u, g, sign):
    """The sign of ``Re(u * conj(g))`` times ``sign``: positive where ``u`` moves the way ``sign * g`` does.

    Computed from signs (real) or unit phases (complex), so that a product too small for float32
    (1e-20 * 1e-20, flushed to 0) still counts by its sign.
    """
    if jnp.iscomplexobj(u) or jnp.iscomplexobj(g):
        return sign * jnp.real(_unit(u) * jnp.conj(_unit(g)))
    return sign * jnp.sign(u) * jnp.sign(g)


class Cautious(GradientTransformationExtraArgs):
    """A transform made by ``cautious``: ``self.inner`` with its disagreeing coordinates masked."""

    def __new__(cls, inner: GradientTransformation, updates: str = "descent") -> Cautious:
        inner = _check_transform("inner", inner)
        validate.one_of("updates", updates, ("descent", "direction"))
        sign = -1.0 if updates == "descent" else 1.0

        def init(params):
            return CautiousState(inner.init(params))

        def update(grads, state, params=None, **extra_args):
            new_updates, inner_state = call_update(inner, grads, state.inner_state, params, extra_args)

            def leaf(u, g):
                wide_u, wide_g = widen(u), widen(g)
                keep = _agreement(wide_u, wide_g, sign) > 0
                kept = jnp.sum(keep, dtype=jnp.int32).astype(jnp.real(wide_u).dtype)
                factor = jnp.asarray(keep.size, kept.dtype) / (kept + 1.0)
                return jnp.where(keep, wide_u * factor, 0.0).astype(jnp.result_type(u))

            masked = tree_lib.map(leaf, new_updates, grads, names=("updates", "grads"))
            return masked, CautiousState(inner_state)

        self = super().__new__(cls, init, update)
        self.inner, self.updates = inner, updates
        return self

    def __repr__(self) -> str:
        return f"cautious({self.inner!r}, updates={self.updates!r})"


def cautious(inner: GradientTransformation, *, updates: str = "descent") -> Cautious:
    """Cautious version of any optimizer (Liang, Chen, Liu & Liu 2024, "Cautious Optimizers:
    Improving Training with One Line of Code", Algorithm 1 with the authors' rescaling)::

        u_t = inner.update(g_t)                               (the inner optimizer's updates)
        phi = [u_t * g_t < 0]                                 ("descent": u is added to w)
        phi = [u_t * g_t > 0]                                 ("direction": w -> w - lr * u)
        u_t -> u_t * phi * n / (sum(phi) + 1)                 (per leaf; n = its size)

    A coordinate is kept only where the step goes downhill along the current gradient; the
    per-leaf factor ``n / (nnz + 1)`` (the authors' code, ``mask.numel() / (mask.sum() + 1)``)
    keeps the average step size. For complex leaves the test is ``Re(u * conj(g))``. Where the
    gradient is exactly 0 the coordinate is masked (no step); all-zero gradients give zero
    updates. The inner state advances exactly as without the wrapper.

    ``cautious(adamw(lr, ...))`` is C-AdamW except for one detail: here the mask sees AdamW's
    whole update, the weight-decay term included, whereas the authors decay the weights outside
    the mask. Their exact C-AdamW is ``chain(cautious(scale_by_adam(...), updates="direction"),
    add_decayed_weights(wd), scale_by_learning_rate(lr))`` (identical when weight_decay = 0).
    ``cautious(lion(...))`` is C-Lion (same remark for Lion's weight decay).

    Args:
      inner: the optimizer (or piece) to wrap; it receives the gradients unchanged.
      updates: ``"descent"`` when ``inner``'s output is added to the parameters (a full
        optimizer), ``"direction"`` when it is a direction that a later ``scale_by_learning_rate``
        negates (``scale_by_adam``, ``scale_by_lion``).

    Returns:
      A ``Cautious`` transform whose state is ``CautiousState(inner_state)``.
    """
    return Cautious(inner, updates)
