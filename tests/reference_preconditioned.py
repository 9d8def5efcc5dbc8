"""NumPy references of Shampoo and SOAP, written from the papers, one step at a time.

Same conventions as reference.py: flat ``{path: ndarray}`` leaves, float64 arithmetic, per-element
slots stored in each leaf's dtype, hyperparameters rounded to float32 by ``hp()``. The factor
matrices are kept in float64. Blocks are cut as the papers describe (consecutive slices of
``block_size``, the last one shorter, no padding), so the library's zero-padded, stacked blocks are
checked against the plain definition. Nothing here imports optcompose.

* Shampoo: Gupta, Koren & Singer 2018 (Algorithm 2, the order-k tensor case) with the distributed
  version of Anil et al. 2020: exponential averages of the factors, inverse roots recomputed every
  ``preconditioning_compute_steps`` from the damped eigendecomposition, layer-wise grafting, a
  delayed start and distributed_shampoo's (heavy-ball, Nesterov) momentum.
* SOAP: Vyas et al. 2024, Algorithm 3 (Adam in the eigenbasis, first moment in the original space)
  with Algorithm 4's refresh (sort by estimated eigenvalues, one power step, QR).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable

import numpy as np
from reference import _f64, _per_leaf, _store, hp


def _value(value: float | Callable[[int], float], t: int) -> float:
    return hp(value(t)) if callable(value) else hp(value)


def _merged_shape(shape: tuple[int, ...], limit: int) -> tuple[int, ...]:
    """Adjacent dimensions multiplied together while the product stays <= limit (size-1 ones vanish)."""
    groups: list[int] = []
    for d in shape:
        if groups and groups[-1] * d <= limit:
            groups[-1] *= d
        elif d == 1 and not groups:
            groups.append(1)
        else:
            groups.append(d)
    kept = [d for d in groups if d > 1]
    return tuple(kept) or (1,)


def _factored_dims(shape, merged, max_dim, precondition_1d):
    eligible = len(shape) >= 2 or (precondition_1d and len(shape) == 1)
    return [i for i, d in enumerate(merged) if eligible and 1 < d <= max_dim]


def _blocks(merged, dims, block_size):
    """The list of blocks, each a tuple of slices of the merged tensor."""
    ranges = []
    for i, d in enumerate(merged):
        if i in dims and block_size is not None and d > block_size:
            ranges.append([slice(s, min(s + block_size, d)) for s in range(0, d, block_size)])
        else:
            ranges.append([slice(0, d)])
    return list(itertools.product(*ranges))


def _unfold(x: np.ndarray, axis: int) -> np.ndarray:
    return np.moveaxis(x, axis, 0).reshape(x.shape[axis], -1)


def _mode(x: np.ndarray, matrix: np.ndarray, axis: int) -> np.ndarray:
    """x times matrix on dimension axis: (matrix @ X_(axis)) folded back."""
    return np.moveaxis(np.tensordot(matrix, x, axes=([1], [axis])), 0, axis)


def _inverse_root(s: np.ndarray, p: int, eps: float, relative: bool) -> np.ndarray:
    """(S + eps * lambda_max * I)^(-1/p) from the eigendecomposition (eigenvalues clipped at 0)."""
    lam, v = np.linalg.eigh(s)
    lam = np.maximum(lam, 0.0)
    damping = eps * lam.max() if relative else eps
    return (v * np.maximum(lam + damping, np.finfo(np.float32).tiny) ** (-1.0 / p)) @ v.T


def ref_shampoo(
    learning_rate, block_size=1024, beta1=0.9, beta2=0.999, diagonal_epsilon=1e-10, matrix_epsilon=1e-6,
    weight_decay=0.0, start_preconditioning_step=5, preconditioning_compute_steps=1, graft_type="adam",
    nesterov=True, moving_average_for_momentum=False, max_preconditioner_dim=4096, exponent_override=0,
    relative_matrix_epsilon=True, merge_small_dims=False, precondition_1d=False,
):  # fmt: skip
    """Distributed Shampoo, per leaf (see the module docstring); decoupled weight decay."""
    b1, b2, deps, meps, wd = hp(beta1), hp(beta2), hp(diagonal_epsilon), hp(matrix_epsilon), hp(weight_decay)
    w2 = 1.0 if b2 == 1.0 else 1.0 - b2

    def layout(shape):
        merged = _merged_shape(shape, max_preconditioner_dim) if merge_small_dims and shape else shape
        dims = _factored_dims(shape, merged, max_preconditioner_dim, precondition_1d)
        return merged, dims, _blocks(merged, dims, block_size)

    def init(w):
        merged, dims, blocks = layout(w.shape)
        sizes = [[len(range(*block[i].indices(merged[i]))) for i in dims] for block in blocks]
        stats = [[np.zeros((n, n)) for n in block] for block in sizes]
        roots = [[np.eye(n) for n in block] for block in sizes]
        return {"stats": stats, "roots": roots, "v": np.zeros_like(w), "m": np.zeros_like(w)}

    def step(g, w, state, t, key, raw):
        count = t - 1
        merged, dims, blocks = layout(g.shape)
        # 1. The grafting optimizer's direction (diagonal), from the raw gradient.
        v = _f64(state["v"])
        if graft_type == "adagrad":
            v = v + g * g
            graft = g / (np.sqrt(v) + deps)
        elif graft_type in ("rmsprop", "adam"):
            v = b2 * v + w2 * g * g
            corrected = v / ((1.0 - b2**t) if b2 < 1.0 else t) if graft_type == "adam" else v
            graft = g / (np.sqrt(corrected) + deps)
        else:
            graft = g
        # 2. Factor statistics per block, inverse roots every preconditioning_compute_steps.
        x = g.reshape(merged)
        stats, roots = state["stats"], state["roots"]
        p = exponent_override or 2 * len(dims)
        new_stats, new_roots, pieces = [], [], []
        for block, block_stats, block_roots in zip(blocks, stats, roots, strict=True):
            gb = x[block]
            s_new = [b2 * s + w2 * _unfold(gb, i) @ _unfold(gb, i).T for s, i in zip(block_stats, dims, strict=True)]
            if count % preconditioning_compute_steps == 0:
                fresh = [_inverse_root(s, p, meps, relative_matrix_epsilon) for s in s_new]
                r_new = [f if np.all(np.isfinite(f)) else r for f, r in zip(fresh, block_roots, strict=True)]
            else:
                r_new = block_roots
            pb = gb
            for r, i in zip(r_new, dims, strict=True):
                pb = _mode(pb, r, i)
            new_stats.append(s_new)
            new_roots.append(r_new)
            pieces.append(pb)
        shampoo = np.zeros(merged)
        for block, pb in zip(blocks, pieces, strict=True):
            shampoo[block] = pb
        shampoo = shampoo.reshape(g.shape)
        # 3. Layer-wise grafting: Shampoo's direction with the grafting optimizer's norm.
        if not dims:
            direction = graft
        elif graft_type == "none":
            direction = shampoo
        else:
            norm = np.linalg.norm(shampoo)
            direction = shampoo * (np.linalg.norm(graft) / norm if norm > 0 else 0.0)
        if not np.all(np.isfinite(direction)):
            direction = graft
        if count < start_preconditioning_step:
            direction = graft
        # 4. Momentum (heavy ball, distributed_shampoo's Nesterov), decoupled decay, learning rate.
        weight = 1.0 - b1 if moving_average_for_momentum else 1.0
        m = b1 * _f64(state["m"]) + weight * direction
        u = weight * direction + b1 * m if nesterov else m
        u = -_value(learning_rate, count) * (u + wd * w)
        new = {"stats": new_stats, "roots": new_roots, "v": _store(v, raw), "m": _store(m, raw)}
        return u, new

    return _per_leaf(init, step)


def ref_soap(
    learning_rate=3e-3, b1=0.95, b2=0.95, eps=1e-8, weight_decay=0.01, shampoo_beta=-1.0, precondition_frequency=10,
    max_precond_dim=10000, merge_dims=False, precondition_1d=False, normalize_grads=False, correct_bias=True,
):  # fmt: skip
    """SOAP, per leaf (see the module docstring); AdamW-style decoupled decay on the pre-step weights."""
    b1, b2, eps, wd, sb = hp(b1), hp(b2), hp(eps), hp(weight_decay), hp(shampoo_beta)
    sb = sb if sb >= 0 else b2

    def layout(shape):
        merged = _merged_shape(shape, max_precond_dim) if merge_dims and shape else shape
        return merged, _factored_dims(shape, merged, max_precond_dim, precondition_1d)

    def init(w):
        merged, dims = layout(w.shape)
        return {
            "L": [np.zeros((merged[i], merged[i])) for i in dims],
            "Q": [np.eye(merged[i]) for i in dims],
            "M": np.zeros_like(w),
            "V": np.zeros_like(w),
        }

    def project(x, qs, dims, back=False):
        for q, i in zip(qs, dims, strict=True):
            x = _mode(x, q if back else q.T, i)
        return x

    def step(g, w, state, t, key, raw):
        count = t - 1
        merged, dims = layout(g.shape)
        x = g.reshape(merged)
        qs, ls = state["Q"], state["L"]
        m, v = _f64(state["M"]).reshape(merged), _f64(state["V"]).reshape(merged)
        if count == 0:
            n = np.zeros(merged)
        else:
            adam_t = count
            g_rot = project(x, qs, dims)
            m = b1 * m + (1 - b1) * x
            v = b2 * v + (1 - b2) * g_rot**2
            n = project(project(m, qs, dims) / (np.sqrt(v) + eps), qs, dims, back=True)
            if normalize_grads:
                n = n / (1e-30 + np.sqrt(np.mean(n**2)))
            if correct_bias:
                n = n * math.sqrt(1 - b2**adam_t) / (1 - b1**adam_t)
        # The factors, then the bases (after the step: the projection never uses this gradient).
        ls = [sb * s + (1 - sb) * _unfold(x, i) @ _unfold(x, i).T for s, i in zip(ls, dims, strict=True)]
        if count == 0:
            qs = [np.linalg.eigh(s)[1][:, ::-1] for s in ls]
        elif count % precondition_frequency == 0:
            new_qs = []
            for position, (s, q) in enumerate(zip(ls, qs, strict=True)):
                estimate = np.diag(q.T @ s @ q)
                order = np.argsort(-estimate, kind="stable")
                v = np.take(v, order, axis=dims[position])
                new_qs.append(np.linalg.qr(s @ q[:, order])[0])
            qs = new_qs
        u = -_value(learning_rate, count) * (n.reshape(g.shape) + wd * w)
        new = {"L": ls, "Q": qs, "M": _store(m.reshape(g.shape), raw), "V": _store(v.reshape(g.shape), raw)}
        return u, new

    return _per_leaf(init, step)
