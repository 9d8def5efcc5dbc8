"""NumPy references for the wrappers, clipping pieces, constraints and L-BFGS, written from the papers.

Same conventions as reference.py (imported, not edited): flat ``{path: ndarray}`` leaves, float64
math, results stored in each leaf's dtype, numeric hyperparameters rounded to float32 by ``hp``.
Nothing here imports optcompose.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from reference import Leaves, RefTransform, _f64, _store, hp

# ----------------------------------------------------------------------------------------------
# Per-leaf pieces.


def ref_centralize() -> RefTransform:
    """Yong et al. 2020: g -> g - mean of g over all axes but the first (leaves of rank >= 2)."""

    def update(g, st, w):
        out = {}
        for k, v in g.items():
            x = _f64(v)
            out[k] = _store(x - x.mean(axis=tuple(range(1, x.ndim)), keepdims=True) if x.ndim > 1 else x, v)
        return out, st

    return RefTransform(lambda w: None, update)


def ref_zero_nans() -> RefTransform:
    def update(g, st, w):
        return {k: _store(np.where(np.isnan(_f64(v)), 0.0, _f64(v)), v) for k, v in g.items()}, st

    return RefTransform(lambda w: None, update)


def ref_keep_params_nonnegative() -> RefTransform:
    """u -> -w where w + u < 0 (the parameter lands exactly on 0), else u."""

    def update(g, st, w):
        out = {}
        for k, v in g.items():
            p, u = _f64(w[k]), _f64(v)
            out[k] = _store(np.where(p + u < 0.0, -p, u), v)
        return out, st

    return RefTransform(lambda w: None, update)


def unit_axes(ndim: int) -> tuple[int, ...] | None:
    """Brock et al. 2021's units: the whole array for rank <= 1, axis 0 for rank 2-3, all but the
    last axis for rank 4-5 (fan-in of dense / conv kernels)."""
    if ndim <= 1:
        return None
    if ndim in (2, 3):
        return (0,)
    return tuple(range(ndim - 1))


def ref_unitwise_norm(x: np.ndarray, axis: Any = None) -> np.ndarray:
    x = _f64(x)
    if axis is None:
        axis = None if np.squeeze(x).ndim <= 1 else unit_axes(x.ndim)
    norm = np.sqrt(np.sum(np.abs(x) ** 2, axis=axis, keepdims=True))
    return np.broadcast_to(norm, x.shape)


def ref_adaptive_grad_clip(clipping: float, eps: float = 1e-3, axis: Any = None) -> RefTransform:
    """AGC (Brock et al. 2021, eq. 2): per unit, g -> g * lambda max(|w|, eps) / |g| when
    |g| > lambda max(|w|, eps) (the division guarded by 1e-6)."""
    lam, e = hp(clipping), hp(eps)

    def update(g, st, w):
        out = {}
        for k, v in g.items():
            gn, wn = ref_unitwise_norm(v, axis), ref_unitwise_norm(w[k], axis)
            bound = lam * np.maximum(wn, e)
            clipped = _f64(v) * (bound / np.maximum(gn, 1e-6))
            out[k] = _store(np.where(gn < bound, _f64(v), clipped), v)
        return out, st

    return RefTransform(lambda w: None, update)


def ref_apply_every(k: int) -> RefTransform:
    """Sum the last k gradients; emit the sum every k-th step, zeros in between."""

    def init(w):
        return 0, {key: np.zeros_like(x) for key, x in w.items()}

    def update(g, state, w):
        count, acc = state
        phase = count % k
        new_acc = {key: _store((_f64(acc[key]) if phase else 0.0) + _f64(v), acc[key]) for key, v in g.items()}
        emit = phase == k - 1
        out = {key: _store(_f64(new_acc[key]) if emit else np.zeros_like(_f64(v)), v) for key, v in g.items()}
        return out, ((count + 1) % k, new_acc)

    return RefTransform(init, update)


def ref_conditionally(inner: RefTransform, should: Callable[[int], bool], mask: bool) -> RefTransform:
    """inner at the steps where should(step) holds; elsewhere zeros (mask) or the updates (transform)."""

    def init(w):
        return 0, inner.init(w)

    def update(g, state, w):
        step, inner_state = state
        if should(step):
            u, inner_state = inner.update(g, inner_state, w)
        else:
            u = {k: np.zeros_like(v) for k, v in g.items()} if mask else g
        return u, (step + 1, inner_state)

    return RefTransform(init, update)


def ref_flatten(inner: RefTransform, dtype: Any = np.float32) -> RefTransform:
    """inner on all leaves concatenated into one vector (cast to ``dtype``), split back afterwards."""

    def join(tree: Leaves) -> Leaves:
        return {"flat": np.concatenate([np.reshape(_f64(v), -1) for v in tree.values()]).astype(dtype)}

    def split(flat: np.ndarray, like: Leaves) -> Leaves:
        out, start = {}, 0
        for k, v in like.items():
            out[k] = _store(flat[start : start + v.size].reshape(v.shape), v)
            start += v.size
        return out

    def update(g, state, w):
        u, state = inner.update(join(g), state, join(w))
        return split(_f64(u["flat"]), g), state

    return RefTransform(lambda w: inner.init(join(w)), update)


def ref_lookahead_fast(fast: RefTransform, sync_period: int, slow_step_size: float) -> RefTransform:
    """Zhang et al. 2019, Algorithm 1, seen from the fast weights only (the harness applies updates
    to one set of params): k fast steps, then fast = slow = slow + alpha (fast - slow)."""
    alpha = hp(slow_step_size)

    def init(w):
        return fast.init(w), 0, {k: _f64(v) for k, v in w.items()}

    def update(g, state, w):
        inner_state, since, slow = state
        u, inner_state = fast.update(g, inner_state, w)
        since += 1
        if since < sync_period:
            return u, (inner_state, since, slow)
        new_fast = {k: _f64(_store(_f64(w[k]) + _f64(u[k]), w[k])) for k in w}
        new_slow = {k: slow[k] + alpha * (new_fast[k] - slow[k]) for k in w}
        out = {k: _store(new_slow[k] - _f64(w[k]), u[k]) for k in w}
        return out, (inner_state, 0, new_slow)

    return RefTransform(init, update)


# ----------------------------------------------------------------------------------------------
# L-BFGS (Nocedal & Wright 2006, Algorithms 7.4 and 7.5), on flat float64 vectors.


class LBFGSMemory:
    """The last ``m`` pairs (s, y) and the two-loop recursion; the first step is scaled by
    ``min(1, 1 / |g|)`` (Optax's heuristic) when ``scale_init``."""

    def __init__(self, m: int, scale_init: bool = True):
        self.m, self.scale_init = m, scale_init
        self.pairs: list[tuple[np.ndarray, np.ndarray, float]] = []
        self.w_prev: np.ndarray | None = None
        self.g_prev: np.ndarray | None = None

    def direction(self, g: np.ndarray, w: np.ndarray) -> np.ndarray:
        g, w = _f64(g), _f64(w)
        gamma = 1.0
        if self.w_prev is not None:
            s, y = w - self.w_prev, g - self.g_prev
            ys = float(np.real(np.vdot(y, s)))
            self.pairs.append((s, y, 0.0 if ys == 0 else 1.0 / ys))
            self.pairs = self.pairs[-self.m :]
            if self.scale_init:
                yy = float(np.real(np.vdot(y, y)))
                gamma = ys / yy if yy > 0 else 1.0
        elif self.scale_init:
            norm = float(np.sqrt(np.real(np.vdot(g, g))))
            gamma = min(1.0, 1.0 / norm) if norm > 0 else 1.0
        self.w_prev, self.g_prev = w, g
        q, alphas = g.copy(), []
        for s, y, rho in reversed(self.pairs):
            alpha = rho * float(np.real(np.vdot(s, q)))
            q = q - alpha * y
            alphas.append(alpha)
        r = gamma * q
        for (s, y, rho), alpha in zip(self.pairs, reversed(alphas), strict=True):
            beta = rho * float(np.real(np.vdot(y, r)))
            r = r + (alpha - beta) * s
        return r


def ref_scale_by_lbfgs(memory_size: int = 10, scale_init_precond: bool = True) -> RefTransform:
    """The L-BFGS direction H g on the concatenated leaves."""

    def update(g, memory, w):
        keys = list(g)
        flat_g = np.concatenate([np.reshape(_f64(g[k]), -1) for k in keys])
        flat_w = np.concatenate([np.reshape(_f64(w[k]), -1) for k in keys])
        d = memory.direction(flat_g, flat_w)
        out, start = {}, 0
        for k in keys:
            n = g[k].size
            out[k] = _store(d[start : start + n].reshape(g[k].shape), g[k])
            start += n
        return out, memory

    return RefTransform(lambda w: LBFGSMemory(memory_size, scale_init_precond), update)


def ref_lbfgs_no_linesearch(
    fun_grad: Callable[[np.ndarray], np.ndarray], x0: np.ndarray, steps: int, memory_size: int, lr: float = 1.0
) -> list[np.ndarray]:
    """x_{k+1} = x_k - lr H_k g_k for ``steps`` steps (no line search), in float64."""
    memory, x, out = LBFGSMemory(memory_size), _f64(x0), []
    for _ in range(steps):
        x = x - lr * memory.direction(fun_grad(x), x)
        out.append(x)
    return out


def ref_backtracking_run(
    fun: Callable[[np.ndarray], float],
    grad: Callable[[np.ndarray], np.ndarray],
    x0: np.ndarray,
    steps: int,
    lr: float,
    max_steps: int,
    slope_rtol: float = 1e-4,
    decrease: float = 0.8,
    increase: float = 1.5,
    max_lr: float = 1.0,
) -> tuple[list[np.ndarray], list[float]]:
    """Gradient descent ``x <- x - eta lr g`` with Armijo backtracking (Nocedal & Wright, Alg. 3.1):
    ``eta`` starts at ``min(increase * eta_prev, max_lr)`` and shrinks by ``decrease`` until
    ``f(x + eta u) <= f(x) + slope_rtol * eta * <u, g>``, at most ``max_steps`` times. float64."""
    x, eta, xs, etas = _f64(x0), 1.0, [], []
    for _ in range(steps):
        g = grad(x)
        u = -lr * g
        value, slope = fun(x), float(u @ g)
        eta = min(increase * eta, max_lr)
        for _ in range(max_steps):
            if fun(x + eta * u) <= value + slope_rtol * eta * slope:
                break
            eta *= decrease
        x = x + eta * u
        xs.append(x)
        etas.append(eta)
    return xs, etas


# ----------------------------------------------------------------------------------------------
# Step size on a plateau, with torch.optim.lr_scheduler.ReduceLROnPlateau's rules.


def ref_reduce_lr_on_plateau(
    value_fn: Callable[[int], float],
    factor: float = 0.1,
    patience: int = 10,
    threshold: float = 1e-4,
    threshold_mode: str = "rel",
    cooldown: int = 0,
    min_scale: float = 0.0,
    mode: str = "min",
    eps: float = 1e-8,
) -> RefTransform:
    """u_t -> s_t u_t, then one ``ReduceLROnPlateau.step(a_t)`` on s (torch's lr for lr=1), a_t = value_fn(t).

    ``better``: a < best (1 - threshold) / a < best - threshold (min; rel / abs), a > best (1 +
    threshold) / a > best + threshold (max). A bad call adds 1 to the count, a better one resets it
    and sets best; in the cool-down the counter drops by 1 and bad calls do not count; more than
    ``patience`` bad calls: s -> max(s factor, min_scale) unless that lowers s by at most eps, the
    cool-down restarts and the count resets. best starts at +inf (min) or -inf (max).
    """
    factor, threshold, min_scale, eps = hp(factor), hp(threshold), hp(min_scale), hp(eps)

    def better(a: float, best: float) -> bool:
        if mode == "min":
            return a < (best * (1.0 - threshold) if threshold_mode == "rel" else best - threshold)
        return a > (best * (1.0 + threshold) if threshold_mode == "rel" else best + threshold)

    def init(w):
        return {"step": 0, "scale": 1.0, "best": np.inf if mode == "min" else -np.inf, "bad": 0, "cooldown": 0}

    def update(g, st, w):
        st = dict(st)
        out = {k: _store(st["scale"] * _f64(x), x) for k, x in g.items()}  # the scale before this metric
        a = float(np.float32(value_fn(st["step"])))
        st["step"] += 1
        if better(a, st["best"]):
            st["best"], st["bad"] = a, 0
        else:
            st["bad"] += 1
        if st["cooldown"] > 0:
            st["cooldown"] -= 1
            st["bad"] = 0
        if st["bad"] > patience:
            new = max(st["scale"] * factor, min_scale)
            if st["scale"] - new > eps:
                st["scale"] = new
            st["cooldown"], st["bad"] = cooldown, 0
        return out, st

    return RefTransform(init, update)
