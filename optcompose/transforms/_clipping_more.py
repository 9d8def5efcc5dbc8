"""More clipping: per unit relative to the weights (``adaptive_grad_clip``, ``unitwise_*``), and per
example for differential privacy (``per_example_*_clip``). ``clip_by_block_rms`` is in ``_factored``.

Norms here are computed in float32 (or wider) from ``|x|^2`` (``x conj(x)`` for complex leaves);
where that sum overflows or underflows float32 (entries near 1e20 or 1e-20) the norm is recomputed
rescaled by the largest entry, so clipping a 1e30 gradient clips it instead of zeroing it. Below
those magnitudes the numbers are exactly the plain formula's (Optax's).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from optcompose import _validate as validate
from optcompose._base import Updates
from optcompose._hyperparams import Hyperparams
from optcompose._leafwise import Leafwise, abs_sq, leafwise
from optcompose._numerics import widen

_TINY = 1e-30  # below this a float32 sum of squares has lost its significant digits


def _sum_sq(x: jax.Array, axis: Any) -> jax.Array:
    return jnp.sum(abs_sq(x), axis=axis, keepdims=True)


def _robust_norm(x: jax.Array, axis: Any) -> jax.Array:
    """``sqrt(sum |x|^2)`` over ``axis`` (keepdims), rescaled by the largest entry where the plain
    sum over- or underflows."""
    squared = jnp.real(_sum_sq(x, axis))
    plain = jnp.sqrt(squared)
    magnitude = jnp.abs(x)
    largest = jnp.max(magnitude, axis=axis, keepdims=True, initial=0.0)
    divisor = jnp.where((largest > 0) & jnp.isfinite(largest), largest, 1.0)
    rescaled = largest * jnp.sqrt(jnp.sum(jnp.square(magnitude / divisor), axis=axis, keepdims=True))
    ok = jnp.isfinite(squared) & ((squared > _TINY) | (largest == 0))
    return jnp.where(ok, plain, jnp.where(jnp.isfinite(largest), rescaled, largest)).astype(plain.dtype)


def _unit_axes(x: jax.Array, axis: int | tuple[int, ...] | None) -> Any:
    if axis is not None:
        return axis
    ndim = jnp.ndim(x)
    if jnp.squeeze(x).ndim <= 1:
        return None  # scalars and vectors: the whole array is one unit
    if ndim in (2, 3):
        return 0  # dense (in, out) or multi-head (in, heads, out) kernels: fan-in per output
    if ndim == 4:
        return (0, 1, 2)  # conv kernels HWIO
    if ndim == 5:
        return (0, 1, 2, 3)  # 3-D conv kernels DHWIO
    raise ValueError(
        f"unitwise_norm infers units for arrays of rank 1 to 5, got shape {jnp.shape(x)}; pass axis= to say "
        "which axes a unit spans"
    )


def unitwise_norm(x: jax.Array, axis: int | tuple[int, ...] | None = None) -> jax.Array:
    """The l2 norm of each unit of ``x``, broadcast back to ``x``'s shape (Brock et al. 2021, §4.1).

    A unit is a slice over ``axis``; by default the whole array for scalars and vectors (also
    after squeezing size-1 axes), axis 0 for rank 2-3 (the fan-in of a dense or multi-head
    kernel), axes (0, 1, 2) for rank 4 (HWIO conv kernels) and (0, 1, 2, 3) for rank 5.

    Args:
      x: an array (complex allowed: ``|x|^2 = x conj(x)``).
      axis: axes a unit spans, or None for the defaults above.

    Returns:
      The norms, shape ``x.shape``, in ``x``'s real dtype widened to float32 or more.

    Raises ``ValueError`` for rank above 5 without ``axis``.
    """
    x = widen(jnp.asarray(x))
    return jnp.broadcast_to(_robust_norm(x, _unit_axes(x, axis)), jnp.shape(x))


def unitwise_clip(g_norm: jax.Array, max_norm: jax.Array, grad: jax.Array, div_eps: float = 1e-6) -> jax.Array:
    """``grad`` where ``g_norm < max_norm``, else ``grad * max_norm / max(g_norm, div_eps)`` (per entry).

    ``div_eps`` only guards the division. All three arrays must have the same shape.
    """
    shapes = {"g_norm": jnp.shape(g_norm), "max_norm": jnp.shape(max_norm), "grad": jnp.shape(grad)}
    if len(set(shapes.values())) != 1:
        raise ValueError(f"unitwise_clip needs arrays of one shape, got {shapes}")
    clipped = grad * (max_norm / jnp.maximum(g_norm, div_eps))
    return jnp.where(g_norm < max_norm, grad, clipped)


class AdaptiveGradClipState(NamedTuple):
    """The state of ``adaptive_grad_clip`` (Optax's is empty): ``clipping`` and ``eps``."""

    hyperparams: Hyperparams


def _adaptive_grad_clip(g, *, hp, w, axis):
    g_norm = unitwise_norm(g, axis)
    bound = hp.clipping * jnp.maximum(unitwise_norm(w, axis), hp.eps)
    return unitwise_clip(g_norm, bound, g)


def adaptive_grad_clip(clipping: float, eps: float = 1e-3, axis: int | tuple[int, ...] | None = None) -> Leafwise:
    """Adaptive gradient clipping, unit by unit relative to the weights (Brock et al. 2021, eq. 3)::

        G_i -> lambda * max(|W_i|, eps) / |G_i| * G_i    if |G_i| > lambda * max(|W_i|, eps)
               G_i                                      otherwise

    with ``|.|`` the unit-wise l2 norm (``unitwise_norm``) and ``lambda = clipping``.

    Args:
      clipping: lambda, the largest ratio of update norm to weight norm (> 0).
      eps: floor of the weight norm, so zero-initialised weights can still move (>= 0).
      axis: the axes a unit spans (None: ``unitwise_norm``'s defaults).

    Returns:
      A transform whose ``update`` requires params.

    Edge behaviour: a zero gradient stays zero; norms over- and underflowing float32 are
    rescaled (Optax: a 1e30 gradient has norm inf and becomes 0); bfloat16 leaves are clipped in
    float32 and stored back.
    """
    validate.positive("clipping", clipping)
    validate.non_negative("eps", eps)
    return leafwise(_adaptive_grad_clip, AdaptiveGradClipState, hyperparams={"clipping": clipping, "eps": eps},
                    static={"axis": axis}, name="adaptive_grad_clip")  # fmt: skip


# ----------------------------------------------------------------------------------------------
# Per-example clipping (gradients with a leading batch axis), as in DP-SGD.


def _check_batched(grads: Any, who: str) -> list[jax.Array]:
    leaves = [jnp.asarray(g) for g in jax.tree.leaves(grads)]
    if not leaves:
        raise ValueError(f"{who} needs at least one gradient array")
    sizes = {g.shape[0] if g.ndim >= 1 else None for g in leaves}
    if None in sizes or len(sizes) != 1:
        raise ValueError(
            f"Unlike other transforms, `{who}` expects `grads` to have a batch dimension in the 0th axis, the same "
            f"for every array; got shapes {jax.tree.map(jnp.shape, grads)}"
        )
    return leaves


def _floating(x: jax.Array) -> jax.Array:
    x = jnp.asarray(x)
    return x if jnp.issubdtype(x.dtype, jnp.inexact) else x.astype(jnp.float32)


def per_example_global_norm_clip(grads: Updates, l2_norm_clip: float) -> tuple[Updates, jax.Array]:
    """Clips each example's gradient to global norm ``l2_norm_clip`` and sums them (Abadi et al. 2016, Alg. 1)::

        g_i -> g_i * min(1, C / |g_i|)       |g_i| the norm over every leaf's slice i
        returns (sum_i clipped g_i, number of examples with |g_i| > C)

    Args:
      grads: a pytree of arrays, each with the batch on axis 0 (the same batch size).
      l2_norm_clip: ``C`` (0 zeroes every nonzero example; ``inf`` clips nothing).

    Returns:
      ``(clipped_sum, num_clipped)``: leaves shaped like one example; an int32 count.

    Edge behaviour: ``0 / 0`` (a zero example with ``C = 0``) and ``inf / inf`` count as not
    clipped (factor 1), as in Optax; integer gradients are promoted to float32.
    """
    leaves = [_floating(g) for g in _check_batched(grads, "per_example_global_norm_clip")]
    wide = [widen(g) for g in leaves]
    squared = sum(jnp.sum(jnp.real(abs_sq(g)).reshape(g.shape[0], -1), axis=1) for g in wide)
    norms = jnp.sqrt(squared)
    factors = jnp.nan_to_num(jnp.minimum(l2_norm_clip / norms, 1.0), nan=1.0)
    num_clipped = jnp.sum(factors < 1.0).astype(jnp.int32)
    sums = [jnp.tensordot(factors.astype(jnp.real(g).dtype), g, axes=1).astype(leaf.dtype)
            for g, leaf in zip(wide, leaves, strict=True)]  # fmt: skip
    return jax.tree.unflatten(jax.tree.structure(grads), sums), num_clipped


def per_example_layer_norm_clip(
    grads: Updates, global_l2_norm_clip: float, uniform: bool = True
) -> tuple[Updates, Updates]:
    """Clips each example's gradient layer by layer, then sums (McMahan et al. 2018, §3)::

        layer k: per_example_global_norm_clip(grads_k, C_k)
        C_k = C / sqrt(K)              (uniform; K layers)
        C_k = C * sqrt(D_k / D)        (not uniform; D_k parameters per example in layer k)

    so the clipped example's overall norm is at most ``C``.

    Args:
      grads: a pytree of arrays with the batch on axis 0.
      global_l2_norm_clip: ``C``.
      uniform: split ``C`` evenly over the layers (else in proportion to their sizes).

    Returns:
      ``(clipped_sums, num_clipped)``: two pytrees shaped like ``grads`` (sums per layer, and the
      int32 count of clipped examples per layer).
    """
    leaves = _check_batched(grads, "per_example_layer_norm_clip")
    if uniform:
        bounds = [global_l2_norm_clip * (1.0 / len(leaves)) ** 0.5 for _ in leaves]
    else:
        total = sum(int(g[0].size) for g in leaves)
        bounds = [global_l2_norm_clip * (int(g[0].size) / total) ** 0.5 for g in leaves]
    pairs = [per_example_global_norm_clip(g, c) for g, c in zip(leaves, bounds, strict=True)]
    structure = jax.tree.structure(grads)
    return structure.unflatten([s for s, _ in pairs]), structure.unflatten([n for _, n in pairs])
