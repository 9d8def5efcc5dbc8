"""NumPy references of the frontier optimizers (MARS, LaProp, cautious, low-precision updates), from the papers.

Same conventions as reference.py (whose helpers are used): flat ``{path: ndarray}`` leaves, float64
arithmetic, results and states stored in each leaf's dtype, numeric hyperparameters rounded to
float32 by ``hp()``. Each optimizer is written from its paper's algorithm in one piece, not as a
chain. Nothing here imports optcompose.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from reference import RefTransform, _f64, _per_leaf, _store, hp


def _value(value: float | Callable[[int], float], t: int) -> float:
    return hp(value(t)) if callable(value) else hp(value)


def _zeros2(x: np.ndarray):
    return np.zeros_like(x), np.zeros_like(x)


def _clip(c: np.ndarray, max_norm: float | None) -> np.ndarray:
    """Clip(c, max_norm) of Yuan et al. 2024: c * max_norm / ||c|| where ||c|| > max_norm."""
    if max_norm is None:
        return c
    norm = float(np.sqrt(np.sum(np.abs(c) ** 2)))
    return c / norm * max_norm if norm > max_norm else c


def ref_mars(learning_rate, b1=0.95, b2=0.99, eps=1e-8, weight_decay=0.0, gamma=0.025, max_norm=1.0, mask=None):
    """Yuan et al. 2024, Algorithm 2 (MARS-AdamW, approximate: g_{t-1} is the previous stochastic
    gradient, zero before the first step), as in the authors' ``update_fn``."""
    b1, b2, eps, wd, gamma = hp(b1), hp(b2), hp(eps), hp(weight_decay), hp(gamma)
    max_norm = None if max_norm is None else hp(max_norm)

    def step(g, w, state, t, key, raw):
        m, v, last = (_f64(x) for x in state)
        c = _clip(g + gamma * b1 / (1 - b1) * (g - last), max_norm)
        m = b1 * m + (1 - b1) * c
        v = b2 * v + (1 - b2) * np.abs(c) ** 2
        direction = m / (1 - b1**t) / (np.sqrt(v / (1 - b2**t)) + eps)
        if mask is None or mask(key, raw):
            direction = direction + wd * w
        return -_value(learning_rate, t - 1) * direction, (_store(m, raw), _store(v, raw), _store(g, raw))

    return _per_leaf(lambda x: (np.zeros_like(x), np.zeros_like(x), np.zeros_like(x)), step)


def ref_mars_correction(b1=0.95, gamma=0.025, max_norm=1.0, step_size=-0.05):
    """The correction alone, followed by ``scale(step_size)``."""
    b1, gamma, step_size = hp(b1), hp(gamma), hp(step_size)
    max_norm = None if max_norm is None else hp(max_norm)

    def step(g, w, last, t, key, raw):
        c = _clip(g + gamma * b1 / (1 - b1) * (g - _f64(last)), max_norm)
        return step_size * _store(c, raw).astype(np.float64), _store(g, raw)

    return _per_leaf(np.zeros_like, step)


def ref_laprop(learning_rate, b1=0.9, b2=0.999, eps=1e-15, weight_decay=0.0, mask=None):
    """Ziyin, Wang & Ueda 2020, Algorithm 1 (LaProp), with AdamW-style decoupled weight decay."""
    b1, b2, eps, wd = hp(b1), hp(b2), hp(eps), hp(weight_decay)

    def step(g, w, state, t, key, raw):
        m, n = _f64(state[0]), _f64(state[1])
        n = b2 * n + (1 - b2) * g * g
        m = b1 * m + (1 - b1) * g / (np.sqrt(n / (1 - b2**t)) + eps)
        direction = m / (1 - b1**t)
        if mask is None or mask(key, raw):
            direction = direction + wd * w
        return -_value(learning_rate, t - 1) * direction, (_store(m, raw), _store(n, raw))

    return _per_leaf(_zeros2, step)


def _cautious_mask(u: np.ndarray, g: np.ndarray) -> np.ndarray:
    """Liang et al. 2024: keep u where it descends along g, rescale by n / (nnz + 1)."""
    keep = (u * g) < 0
    return np.where(keep, u * (keep.size / (np.sum(keep) + 1)), 0.0)


def ref_cautious_adamw(learning_rate, b1=0.9, b2=0.999, eps=1e-8, weight_decay=0.0, decay_masked=True):
    """C-AdamW (Liang et al. 2024, Algorithm 2). ``decay_masked``: the decay term is inside the
    mask (``cautious(adamw)``); otherwise it is applied outside, as in the authors' code."""
    lr, b1, b2, eps, wd = hp(learning_rate), hp(b1), hp(b2), hp(eps), hp(weight_decay)

    def step(g, w, state, t, key, raw):
        m, v = _f64(state[0]), _f64(state[1])
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        direction = m / (1 - b1**t) / (np.sqrt(v / (1 - b2**t)) + eps)
        if decay_masked:
            u = _cautious_mask(-lr * (direction + wd * w), g)
        else:
            u = _cautious_mask(-direction, g) * lr - lr * wd * w
        return u, (_store(m, raw), _store(v, raw))

    return _per_leaf(_zeros2, step)


def ref_cautious_lion(learning_rate, b1=0.9, b2=0.99, weight_decay=1e-3):
    """C-Lion (Liang et al. 2024): Lion (Chen et al. 2023) with the cautious mask on its update."""
    b1, b2, wd = hp(b1), hp(b2), hp(weight_decay)

    def step(g, w, m, t, key, raw):
        c = b1 * _f64(m) + (1 - b1) * g
        u = -_value(learning_rate, t - 1) * (np.sign(c) + wd * w)
        return _cautious_mask(u, g), _store(b2 * _f64(m) + (1 - b2) * g, raw)

    return _per_leaf(np.zeros_like, step)


def _low_precision(x: np.ndarray) -> bool:
    return np.issubdtype(x.dtype, np.floating) and x.dtype.itemsize < 4 or x.dtype.name == "bfloat16"


def ref_kahan(inner: RefTransform) -> RefTransform:
    """Kahan (1965) compensated summation of ``inner``'s steps into low-precision parameters::

    s = u + c;  w' = round_nearest(w + s);  c = s - (w' - w)   (c stored in w's dtype)

    The update returned is ``w' - w`` in float64 (exact), so the harness lands on ``w'``."""

    def init(w):
        return inner.init(w), {k: np.zeros_like(x) for k, x in w.items()}

    def update(g, state, w):
        u, inner_state = inner.update(g, state[0], w)
        out, comp = {}, {}
        for k, raw in w.items():
            if not _low_precision(raw):
                out[k], comp[k] = u[k], state[1][k]
                continue
            s = _f64(u[k]) + _f64(state[1][k])
            landed = _f64((_f64(raw) + s).astype(raw.dtype))
            out[k] = landed - _f64(raw)
            comp[k] = _store(s - out[k], raw)
        return out, (inner_state, comp)

    return RefTransform(init, update)
