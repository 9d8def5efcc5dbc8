"""Interpolation between two values, accurate in float32 at both ends.

A schedule that anneals ``start -> end`` mixes them with weights ``w`` and ``1 - w``. Computing
``1 - w`` by subtraction loses all relative accuracy where ``w`` is close to 1, and a decay to a
small final value (one-cycle ends at ``max_lr / 2.5e5``) is then off by percents near the start of
a phase, or near its end for ``w``. So both weights are formed directly from the steps done and the
steps left, each with a single rounding, and the end points are reproduced exactly.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def linear(start: jax.Array, end: jax.Array, done: jax.Array, left: jax.Array) -> jax.Array:
    """``start + (end - start) * done / (done + left)``: exact at both ends."""
    length = done + left
    return start * (left / length) + end * (done / length)


def cosine(
    start: jax.Array,
    end: jax.Array,
    done: jax.Array,
    left: jax.Array,
    exponent: jax.Array | None = None,
) -> jax.Array:
    """Half-cosine annealing from ``start`` to ``end``, optionally with an exponent on the weight.

    With ``x = done / (done + left)`` the weight of ``start`` is ``w = ((1 + cos(pi x)) / 2)**p``,
    written as ``sin(pi (1 - x) / 2)**2`` (and ``1 - w`` as ``sin(pi x / 2)**2`` when ``p = 1``,
    signalled by ``exponent=None``) so that neither weight cancels.
    """
    length = done + left
    weight = jnp.square(jnp.sin((0.5 * jnp.pi) * (left / length)))
    if exponent is None:
        complement = jnp.square(jnp.sin((0.5 * jnp.pi) * (done / length)))
    else:
        weight = jnp.power(weight, exponent)
        complement = 1.0 - weight
    return start * weight + end * complement
