"""Muon with ``torch.optim.Muon``'s rules (torch 2.9+), built from the Newton–Schulz piece of ``contrib.muon``.

``optcompose.contrib.muon`` follows Optax; ``muon_torch`` follows torch: an EMA momentum without
bias correction, torch's Nesterov blend, ``X / max(||X||_F, eps)``, the Newton–Schulz iterate rounded
to bfloat16 after every product (as torch stores it), the lr adjustment ``adjust_lr_fn`` and the
decay ``w <- w * (1 - lr * weight_decay)``. Where the two differ: docs/methods/muon.md.

It lives in ``contrib`` because the Newton–Schulz iteration does (``optimizers`` and ``transforms``
may not import ``contrib``); it is exported at the top level: ``optcompose.muon_torch``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from optcompose import _tree as tree_lib
from optcompose import _validate as validate
from optcompose._base import GradientTransformation, GradientTransformationExtraArgs, ScalarOrSchedule, Updates, chain
from optcompose._hyperparams import Hyperparams, HyperparamSpec, hyperparam_dtype
from optcompose._numerics import widen
from optcompose.contrib._common import Option, per_leaf_options
from optcompose.contrib._muon import _is_dims, _map_with_options, _options, _view, scale_by_shape
from optcompose.contrib._newton_schulz import (
    DEFAULT_NS_COEFFS,
    check_ns_coeffs,
    newton_schulz_iteration,
)
from optcompose.transforms._decay import add_decayed_weights
from optcompose.transforms._partition import partition
from optcompose.transforms._scaling import scale_by_learning_rate

__all__ = ["OrthogonalizedMomentumState", "muon_torch", "scale_by_orthogonalized_momentum"]

ADJUST_LR_FNS = (None, "original", "match_rms_adamw")
TORCH_EPS = 1e-7
"""torch.optim.Muon's default eps (Optax's muon: 1e-8, added to the norm instead of a floor)."""


class OrthogonalizedMomentumState(NamedTuple):
    """State of ``scale_by_orthogonalized_momentum``.

    Attributes:
      count: updates done (saturating).
      momentum_buffer: torch's ``momentum_buffer``, per leaf (an EMA of the gradients).
      hyperparams: ``momentum`` and ``eps``.
    """

    count: jax.Array
    momentum_buffer: Updates
    hyperparams: Hyperparams


def _rounding(ns_dtype: Any) -> Callable[[jax.Array], jax.Array] | None:
    """Round-to-nearest to ``ns_dtype``'s precision, kept in float32 (None: no rounding)."""
    allowed = (jnp.bfloat16, jnp.float16, jnp.float32, jnp.float64)
    if ns_dtype is not None and (
        not isinstance(ns_dtype, (type, np.dtype, str)) or jnp.dtype(ns_dtype) not in [jnp.dtype(d) for d in allowed]
    ):
        raise ValueError(f"ns_dtype must be bfloat16, float16, float32, float64 or None, got {ns_dtype!r}")
    if ns_dtype is None or jnp.dtype(ns_dtype).itemsize >= 4:
        return None
    info = jnp.finfo(ns_dtype)

    def rnd(x):
        # reduce_precision is the rounding itself; a float32 -> bfloat16 -> float32 round trip may be
        # folded away by XLA (excess precision), this is not. Complex: both parts, each rounded.
        one = lambda y: jax.lax.reduce_precision(y, exponent_bits=info.nexp, mantissa_bits=info.nmant)  # noqa: E731
        return jax.lax.complex(one(x.real), one(x.imag)) if jnp.iscomplexobj(x) else one(x)

    return rnd


def _orthogonalize(m: jax.Array, coeffs: jax.Array, steps: int, eps: jax.Array, rnd) -> jax.Array:
    """torch's ``_zeropower_via_newtonschulz`` on one ``(fan_in, fan_out)`` matrix ``m``.

    torch holds the weight as ``(fan_out, fan_in) = m.T`` and iterates on it, transposed when it has
    more rows than columns; we iterate on the same matrix, so even square ones round as torch's.
    """
    x = m.T if m.shape[1] <= m.shape[0] else m
    r = (lambda y: y) if rnd is None else rnd
    x = r(x)
    x = r(x / jnp.maximum(r(jnp.linalg.norm(x)), eps))
    table = coeffs.ndim == 2
    for step in range(coeffs.shape[0] if table else steps):
        row = coeffs[step] if table else coeffs
        if rnd is None:
            x = newton_schulz_iteration(x, row)
        else:  # torch's two addmm calls, each rounded once: A = X X^H, B = b A + c A A, X = a X + B X
            gram = r(x @ jnp.conj(x).T)
            poly = r(row[1] * gram + row[2] * (gram @ gram))
            x = r(row[0] * x + poly @ x)
    return x.T if m.shape[1] <= m.shape[0] else x


def scale_by_orthogonalized_momentum(
    momentum: float = 0.95,
    nesterov: bool = True,
    ns_coefficients: Any = DEFAULT_NS_COEFFS,
    ns_steps: int = 5,
    eps: float = TORCH_EPS,
    *,
    ns_dtype: Any = jnp.bfloat16,
    mu_dtype: Any | None = None,
    weight_dimension_numbers: Any = None,
) -> GradientTransformationExtraArgs:
    """torch.optim.Muon's direction: the orthogonalized momentum, per matrix::

        B_t = B_{t-1} + (1 - momentum) (g_t - B_{t-1})          (torch: buf.lerp_(g, 1 - momentum))
        X_t = B_t + (1 - momentum) (g_t - B_t)  if nesterov      (torch: g.lerp(buf, momentum))
              B_t                               otherwise
        u_t = NS(X_t / max(||X_t||_F, eps))                      (ns_steps steps, (a, b, c) = ns_coefficients)

    No bias correction (Optax's ``scale_by_muon`` has one). ``NS`` is the quintic Newton–Schulz
    iteration of ``contrib.orthogonalize_via_newton_schulz``, with the iterate rounded to ``ns_dtype``
    after the normalization and after each of torch's two matrix products per step (torch runs it in
    bfloat16 whatever the parameter dtype); ``ns_dtype=None`` (or float32) keeps float32 throughout.

    Args:
      momentum: the EMA factor of the buffer, in ``[0, 1)``.
      nesterov: use the look-ahead blend above.
      ns_coefficients: ``(a, b, c)``, or an ``(n, 3)`` table (one row per step, ``n <= ns_steps``).
      ns_steps: Newton–Schulz steps (torch: < 100).
      eps: the floor of the Frobenius norm.
      ns_dtype: the precision of the iterate: ``jnp.bfloat16`` (torch's), ``jnp.float16`` or ``None``.
      mu_dtype: storage dtype of the momentum buffer (default: the parameter's, as torch).
      weight_dimension_numbers: ``MuonDimensionNumbers`` for every leaf, a pytree prefix of them, or a
        function of the updates; ``None``: every leaf must be a matrix ``(fan_in, fan_out)`` (Flax's
        layout; a torch ``(out, in)`` weight is ``MuonDimensionNumbers(1, 0)``).

    Returns:
      A ``GradientTransformationExtraArgs`` whose state is ``OrthogonalizedMomentumState``.
    """
    coeffs = check_ns_coeffs(ns_coefficients, ns_steps)
    validate.integer_at_least("ns_steps", ns_steps, 0)
    if ns_steps >= 100:
        raise ValueError(f"ns_steps must be < 100 (as torch), got {ns_steps}")
    for name, value in (("momentum", momentum), ("eps", eps)):
        if callable(value):
            raise TypeError(f"{name} must be a number, got {value!r}")
    validate.unit_interval("momentum", momentum)
    validate.non_negative("eps", eps)
    rnd = _rounding(ns_dtype)
    spec = HyperparamSpec(momentum=momentum, eps=eps)
    steps = int(ns_steps)

    def init(params):
        return OrthogonalizedMomentumState(
            count=jnp.zeros((), jnp.int32),
            momentum_buffer=tree_lib.zeros_like(params, mu_dtype),
            hyperparams=spec.init(hyperparam_dtype(params)),
        )

    def update(updates, state, params=None, **extra_args):
        del params, extra_args
        options = _options(weight_dimension_numbers, updates)

        def leaf(g, buf, option):
            view = _view(option, g)  # checks the leaf is a matrix (or has dimension numbers), naming its path
            gw, bw = widen(g), widen(buf)
            real = jnp.finfo(gw.dtype).dtype
            m, e = (jnp.asarray(state.hyperparams[k]).astype(real) for k in ("momentum", "eps"))
            new_buf = bw + (1.0 - m) * (gw - bw)
            x = new_buf + (1.0 - m) * (gw - new_buf) if nesterov else new_buf
            one = lambda mat: _orthogonalize(mat, jnp.asarray(coeffs, real), steps, e, rnd)
            u = view.from_matrices(jax.vmap(one)(view.to_matrices(x)))
            return u.astype(jnp.result_type(g)), new_buf.astype(jnp.result_type(buf))

        results = _map_with_options(leaf, options, updates, state.momentum_buffer, names=("updates", "momentum_buffer"))
        new_updates, buffers = tree_lib.unzip(results, updates, 2)
        return new_updates, state._replace(count=tree_lib.safe_increment(state.count), momentum_buffer=buffers)

    return GradientTransformationExtraArgs(init, update)


def muon_torch(
    learning_rate: ScalarOrSchedule = 1e-3,
    weight_decay: float = 0.1,
    momentum: float = 0.95,
    nesterov: bool = True,
    ns_coefficients: Any = DEFAULT_NS_COEFFS,
    eps: float = TORCH_EPS,
    ns_steps: int = 5,
    adjust_lr_fn: str | None = None,
    *,
    ns_dtype: Any = jnp.bfloat16,
    mu_dtype: Any | None = None,
    weight_dimension_numbers: Any = None,
    weight_decay_mask: Any | Callable[[Any], Any] | None = None,
    others: GradientTransformation | None = None,
) -> GradientTransformationExtraArgs:
    """``torch.optim.Muon`` (same arguments, order and defaults), as a chain of pieces::

        w <- w * (1 - lr * weight_decay) - lr * adjust(shape) * NS(X_t)

    with ``NS(X_t)`` from ``scale_by_orthogonalized_momentum`` and ``adjust(shape)`` torch's
    ``adjust_lr_fn``: ``None`` / ``'original'`` ``sqrt(max(1, fan_out / fan_in))`` (Jordan 2024),
    ``'match_rms_adamw'`` ``0.2 * sqrt(max(fan_in, fan_out))`` (Liu et al. 2025) — ``scale_by_shape``.
    The chain: ``scale_by_orthogonalized_momentum -> scale_by_shape -> add_decayed_weights(weight_decay,
    weight_decay_mask) -> scale_by_learning_rate(learning_rate)``.

    Args:
      learning_rate: torch's ``lr`` (a number or a schedule).
      weight_decay: decoupled decay, multiplied by the unadjusted learning rate (as torch).
      momentum, nesterov, ns_coefficients, eps, ns_steps, ns_dtype, mu_dtype, weight_dimension_numbers:
        see ``scale_by_orthogonalized_momentum``.
      adjust_lr_fn: ``None``, ``'original'`` or ``'match_rms_adamw'``.
      weight_decay_mask: which Muon leaves decay (a pytree of bools or a function of the params).
      others: the optimizer of the leaves that are not matrices (torch's docs pair Muon with AdamW
        for biases and embeddings). ``None``: every leaf must be a matrix, as torch requires.

    Returns:
      The chain; with ``others``, a ``partition`` with parts ``'muon'`` and ``'others'`` (leaves of
      rank 2, or those ``weight_dimension_numbers`` names, go to Muon). Hyperparameters as data:
      ``learning_rate``, ``weight_decay``, ``momentum``, ``eps``.
    """
    validate.non_negative("learning_rate", learning_rate)
    validate.non_negative("weight_decay", weight_decay)
    validate.one_of("adjust_lr_fn", adjust_lr_fn, ADJUST_LR_FNS)
    dims = weight_dimension_numbers
    muon_part = chain(
        scale_by_orthogonalized_momentum(
            momentum, nesterov, ns_coefficients, ns_steps, eps,
            ns_dtype=ns_dtype, mu_dtype=mu_dtype, weight_dimension_numbers=dims,
        ),
        scale_by_shape(dims, consistent_rms=0.2 if adjust_lr_fn == "match_rms_adamw" else None),
        add_decayed_weights(weight_decay, weight_decay_mask),
        scale_by_learning_rate(learning_rate),
    )  # fmt: skip
    if others is None:
        return muon_part

    def labels(params):
        if dims is None:
            return jax.tree.map(lambda x: "muon" if jnp.ndim(x) == 2 else "others", params)
        options = per_leaf_options(dims, params, _is_dims)
        return jax.tree.map(
            lambda o: "others" if o.value is None else "muon", options, is_leaf=lambda x: isinstance(x, Option)
        )

    return partition({"muon": muon_part, "others": others}, labels)
