"""NumPy reference implementations of every transform and optimizer, written from the papers.

The references work on a flat ``{path: ndarray}`` view of the parameters (``path`` as
``jax.tree_util.keystr`` writes it). Every formula is evaluated in float64; results and states are
then stored in each leaf's own dtype, which is what the library promises (compute wide, store in
the parameter's dtype), so bfloat16/float16 leaves round at the same places. Numeric
hyperparameters are rounded to float32 first, because the library keeps them as float32 data.

Nothing here imports optcompose: the references are independent of the code under test.
trajectory.py runs both sides on the same problem and compares them step by step.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import numpy as np

Leaves = dict[str, np.ndarray]
Rule = Callable[[str, np.ndarray], Any]
"""A function of (path, leaf): a mask rule returns a bool, a label rule returns a label."""


def hp(value: float) -> float:
    """A hyperparameter as the library stores it: a float32 scalar."""
    return float(np.float32(value))


def _f64(x: Any) -> np.ndarray:
    return np.asarray(x, dtype=np.float64)


def _store(value: np.ndarray, like: np.ndarray) -> np.ndarray:
    return np.asarray(value).astype(np.asarray(like).dtype)


def _norm(x: np.ndarray) -> float:
    return float(np.sqrt(np.sum(np.square(_f64(x)))))


class RefTransform(NamedTuple):
    """A reference transform: ``init(leaves) -> state``, ``update(g, state, w) -> (u, state)``."""

    init: Callable[[Leaves], Any]
    update: Callable[[Leaves, Any, Leaves], tuple[Leaves, Any]]


def _value(value: float | Callable[[int], float], t: int) -> float:
    return hp(value(t)) if callable(value) else hp(value)


# ----------------------------------------------------------------------------------------------
# Elementary transforms.


def ref_scale(step_size: float) -> RefTransform:
    """u -> s * u."""
    s = hp(step_size)
    return RefTransform(lambda w: None, lambda g, st, w: ({k: _store(s * _f64(v), v) for k, v in g.items()}, st))


def ref_scale_by_learning_rate(learning_rate: float | Callable[[int], float], flip_sign: bool = True) -> RefTransform:
    """u_t -> -lr(t) * u_t, t = number of earlier updates."""
    sign = -1.0 if flip_sign else 1.0

    def update(g, t, w):
        lr = _value(learning_rate, t)
        return {k: _store(sign * lr * _f64(v), v) for k, v in g.items()}, t + 1

    return RefTransform(lambda w: 0, update)


def ref_scale_by_schedule(fn: Callable[[int], float]) -> RefTransform:
    def update(g, t, w):
        factor = hp(fn(t))
        return {k: _store(factor * _f64(v), v) for k, v in g.items()}, t + 1

    return RefTransform(lambda w: 0, update)


def ref_trace(decay: float, nesterov: bool = False) -> RefTransform:
    """Polyak heavy ball v_t = beta v_{t-1} + g_t, u = v_t; Sutskever's Nesterov u = g_t + beta v_t."""
    beta = hp(decay)

    def update(g, v, w):
        out, new_v = {}, {}
        for k, gk in g.items():
            vk = beta * _f64(v[k]) + _f64(gk)
            new_v[k] = _store(vk, v[k])
            out[k] = _store(_f64(gk) + beta * vk if nesterov else vk, gk)
        return out, new_v

    return RefTransform(lambda w: {k: np.zeros_like(x) for k, x in w.items()}, update)


def ref_ema(decay: float, debias: bool = True) -> RefTransform:
    """m_t = beta m_{t-1} + (1 - beta) g_t, divided by 1 - beta^t when debiased."""
    beta = hp(decay)

    def update(g, state, w):
        t, m = state[0] + 1, state[1]
        out, new_m = {}, {}
        for k, gk in g.items():
            mk = beta * _f64(m[k]) + (1 - beta) * _f64(gk)
            new_m[k] = _store(mk, m[k])
            out[k] = _store(mk / (1 - beta**t) if debias else mk, gk)
        return out, (t, new_m)

    return RefTransform(lambda w: (0, {k: np.zeros_like(x) for k, x in w.items()}), update)


def _root(s: np.ndarray, eps: float, eps_in_sqrt: bool) -> np.ndarray:
    return np.sqrt(s + eps) if eps_in_sqrt else np.sqrt(s) + eps


def ref_scale_by_rss(initial_accumulator_value: float = 0.1, eps: float = 1e-7, eps_in_sqrt: bool = True):
    """Adagrad (Duchi et al. 2011): G_t = G_{t-1} + g_t^2, u = g / sqrt(G + eps) or g / (sqrt(G) + eps)."""
    eps = hp(eps)

    def update(g, acc, w):
        out, new = {}, {}
        for k, gk in g.items():
            s = _f64(acc[k]) + np.square(_f64(gk))
            new[k] = _store(s, acc[k])
            out[k] = _store(_f64(gk) / _root(s, eps, eps_in_sqrt), gk)
        return out, new

    init = lambda w: {k: np.full_like(x, initial_accumulator_value) for k, x in w.items()}
    return RefTransform(init, update)


def ref_scale_by_rms(decay=0.9, eps=1e-8, initial_scale=0.0, eps_in_sqrt=True, bias_correction=False):
    """RMSprop (Hinton, lecture 6e): nu_t = d nu + (1 - d) g^2, u = g / root(nu or nu / (1 - d^t))."""
    d, eps = hp(decay), hp(eps)

    def update(g, state, w):
        t, nu = state[0] + 1, state[1]
        out, new = {}, {}
        for k, gk in g.items():
            n = d * _f64(nu[k]) + (1 - d) * np.square(_f64(gk))
            new[k] = _store(n, nu[k])
            n_hat = n / (1 - d**t) if bias_correction else n
            out[k] = _store(_f64(gk) / _root(n_hat, eps, eps_in_sqrt), gk)
        return out, (t, new)

    return RefTransform(lambda w: (0, {k: np.full_like(x, initial_scale) for k, x in w.items()}), update)


def ref_scale_by_stddev(decay=0.9, eps=1e-8, initial_scale=0.0, eps_in_sqrt=True, bias_correction=False):
    """Centered RMSprop (Graves 2013, eqs. 38-40): u = g / root(E[g^2] - E[g]^2)."""
    d, eps = hp(decay), hp(eps)

    def update(g, state, w):
        t, mu, nu = state[0] + 1, state[1], state[2]
        out, new_mu, new_nu = {}, {}, {}
        for k, gk in g.items():
            m = d * _f64(mu[k]) + (1 - d) * _f64(gk)
            n = d * _f64(nu[k]) + (1 - d) * np.square(_f64(gk))
            new_mu[k], new_nu[k] = _store(m, mu[k]), _store(n, nu[k])
            c = 1 / (1 - d**t) if bias_correction else 1.0
            variance = np.maximum(n * c - np.square(m * c), 0.0)
            out[k] = _store(_f64(gk) / _root(variance, eps, eps_in_sqrt), gk)
        return out, (t, new_mu, new_nu)

    def init(w):
        return 0, {k: np.zeros_like(x) for k, x in w.items()}, {k: np.full_like(x, initial_scale) for k, x in w.items()}

    return RefTransform(init, update)


def _adam_direction(g, m, v, t, b1, b2, eps, eps_root, nesterov):
    """Kingma & Ba 2014, Algorithm 1 (and Dozat 2016's Nadam): returns (m_t, v_t, direction)."""
    m = b1 * m + (1 - b1) * g
    v = b2 * v + (1 - b2) * np.square(g)
    m_hat = m / (1 - b1**t)
    if nesterov:  # Dozat: look one step ahead with the next step's correction
        m_hat = b1 * m / (1 - b1 ** (t + 1)) + (1 - b1) * g / (1 - b1**t)
    v_hat = v / (1 - b2**t)
    return m, v, m_hat / (np.sqrt(v_hat + eps_root) + eps)


def ref_scale_by_adam(b1=0.9, b2=0.999, eps=1e-8, eps_root=0.0, nesterov=False) -> RefTransform:
    b1, b2, eps, eps_root = hp(b1), hp(b2), hp(eps), hp(eps_root)

    def update(g, state, w):
        t, mu, nu = state[0] + 1, state[1], state[2]
        out, new_mu, new_nu = {}, {}, {}
        for k, gk in g.items():
            m, v, direction = _adam_direction(_f64(gk), _f64(mu[k]), _f64(nu[k]), t, b1, b2, eps, eps_root, nesterov)
            new_mu[k], new_nu[k], out[k] = _store(m, mu[k]), _store(v, nu[k]), _store(direction, gk)
        return out, (t, new_mu, new_nu)

    return RefTransform(
        lambda w: (0, {k: np.zeros_like(x) for k, x in w.items()}, {k: np.zeros_like(x) for k, x in w.items()}), update
    )


def ref_add_decayed_weights(weight_decay: float, mask: Rule | None = None) -> RefTransform:
    """u -> u + lambda * w where the mask holds."""
    wd = hp(weight_decay)

    def update(g, st, w):
        return {
            k: _store(_f64(gk) + wd * _f64(w[k]), gk) if mask is None or mask(k, w[k]) else gk for k, gk in g.items()
        }, st

    return RefTransform(lambda w: None, update)


def _trust_ratio(w: np.ndarray, u: np.ndarray, min_norm: float, coefficient: float, eps: float) -> float:
    """You et al. 2017/2019: coefficient * ||w|| / (||u|| + eps), 1 when either norm is 0."""
    w_norm, u_norm = max(_norm(w), min_norm), max(_norm(u), min_norm)
    if w_norm == 0.0 or u_norm == 0.0:
        return 1.0
    return coefficient * w_norm / (u_norm + eps)


def ref_scale_by_trust_ratio(min_norm=0.0, trust_coefficient=1.0, eps=0.0, mask: Rule | None = None):
    min_norm, coefficient, eps = hp(min_norm), hp(trust_coefficient), hp(eps)

    def update(g, st, w):
        out = {}
        for k, gk in g.items():
            if mask is not None and not mask(k, w[k]):
                out[k] = gk
                continue
            out[k] = _store(_trust_ratio(w[k], gk, min_norm, coefficient, eps) * _f64(gk), gk)
        return out, st

    return RefTransform(lambda w: None, update)


def ref_clip(max_delta: float) -> RefTransform:
    bound = hp(max_delta)
    return RefTransform(
        lambda w: None, lambda g, st, w: ({k: _store(np.clip(_f64(v), -bound, bound), v) for k, v in g.items()}, st)
    )


def ref_clip_by_global_norm(max_norm: float) -> RefTransform:
    """Pascanu et al. 2013: u -> u * max_norm / ||u|| when ||u|| > max_norm (norm over all leaves)."""
    bound = hp(max_norm)

    def update(g, st, w):
        norm = float(np.sqrt(sum(np.sum(np.square(_f64(v))) for v in g.values())))
        factor = bound / norm if norm > bound else 1.0
        return {k: _store(factor * _f64(v), v) for k, v in g.items()}, st

    return RefTransform(lambda w: None, update)


def ref_identity() -> RefTransform:
    return RefTransform(lambda w: None, lambda g, st, w: (dict(g), st))


def ref_set_to_zero() -> RefTransform:
    return RefTransform(lambda w: None, lambda g, st, w: ({k: np.zeros_like(v) for k, v in g.items()}, st))


def ref_stateless(fn: Callable[[np.ndarray, np.ndarray], np.ndarray]) -> RefTransform:
    return RefTransform(
        lambda w: None, lambda g, st, w: ({k: _store(fn(_f64(v), _f64(w[k])), v) for k, v in g.items()}, st)
    )


def ref_chain(*transforms: RefTransform) -> RefTransform:
    def update(g, states, w):
        new = []
        for transform, state in zip(transforms, states, strict=True):
            g, state = transform.update(g, state, w)
            new.append(state)
        return g, new

    return RefTransform(lambda w: [t.init(w) for t in transforms], update)


def ref_masked(inner: RefTransform, mask: Rule) -> RefTransform:
    """``inner`` on the leaves where ``mask`` holds; other updates pass through unchanged."""

    def pick(tree, w):
        return {k: v for k, v in tree.items() if mask(k, w[k])}

    def update(g, state, w):
        new, state = inner.update(pick(g, w), state, pick(w, w))
        return {k: new.get(k, v) for k, v in g.items()}, state

    return RefTransform(lambda w: inner.init(pick(w, w)), update)


def ref_partition(transforms: Mapping[str, RefTransform], labels: Rule) -> RefTransform:
    parts = {name: ref_masked(tx, lambda k, x, name=name: labels(k, x) == name) for name, tx in transforms.items()}

    def update(g, states, w):
        new_states = {}
        for name, part in parts.items():
            g, new_states[name] = part.update(g, states[name], w)
        return g, new_states

    return RefTransform(lambda w: {name: part.init(w) for name, part in parts.items()}, update)


def ref_freeze(mask: Rule) -> RefTransform:
    return ref_masked(ref_set_to_zero(), mask)


# ----------------------------------------------------------------------------------------------
# Optimizers, each written directly from its paper (not as a chain of the pieces above).


def _per_leaf(init_leaf: Callable[[np.ndarray], Any], step_leaf: Callable[..., tuple[np.ndarray, Any]]):
    """A reference optimizer from ``step_leaf(g, w, leaf_state, t, key) -> (update, leaf_state)``."""

    def update(g, state, w):
        t, leaf_states = state[0] + 1, state[1]
        out, new = {}, {}
        for k, gk in g.items():
            u, new[k] = step_leaf(_f64(gk), _f64(w[k]), leaf_states[k], t, k, w[k])
            out[k] = _store(u, gk)
        return out, (t, new)

    return RefTransform(lambda w: (0, {k: init_leaf(x) for k, x in w.items()}), update)


def ref_sgd(
    learning_rate: float | Callable[[int], float], momentum: float | None = None, nesterov: bool = False
) -> RefTransform:
    """Robbins & Monro; Polyak momentum v = m v + g, w -= lr_t v; Nesterov w -= lr_t (g + m v)."""
    m = None if momentum is None else hp(momentum)

    def step(g, w, v, t, key, raw):
        lr = _value(learning_rate, t - 1)
        if m is None:
            return -lr * g, v
        v = m * _f64(v) + g
        direction = g + m * v if nesterov else v
        return -lr * direction, _store(v, raw)

    return _per_leaf(np.zeros_like, step)


def ref_adagrad(learning_rate: float, initial_accumulator_value=0.1, eps=1e-7, eps_in_sqrt=True) -> RefTransform:
    """Duchi et al. 2011: G += g^2, w -= lr g / sqrt(G)."""
    lr, eps = hp(learning_rate), hp(eps)

    def step(g, w, acc, t, key, raw):
        acc = _f64(acc) + g * g
        return -lr * g / _root(acc, eps, eps_in_sqrt), _store(acc, raw)

    return _per_leaf(lambda x: np.full_like(x, initial_accumulator_value), step)


def ref_rmsprop(learning_rate, decay=0.9, eps=1e-8, eps_in_sqrt=True, centered=False, momentum=None) -> RefTransform:
    """Hinton's RMSprop (centered: Graves 2013); momentum buffer b = m b + g / rms, w -= lr b."""
    lr, d, eps = hp(learning_rate), hp(decay), hp(eps)
    m = None if momentum is None else hp(momentum)

    def step(g, w, leaf_state, t, key, raw):
        mean, square, buffer = (_f64(x) for x in leaf_state)
        square = d * square + (1 - d) * g * g
        mean = d * mean + (1 - d) * g if centered else mean
        variance = np.maximum(square - mean * mean, 0.0) if centered else square
        direction = g / _root(variance, eps, eps_in_sqrt)
        if m is None:
            return -lr * direction, (_store(mean, raw), _store(square, raw), buffer)
        buffer = m * buffer + lr * direction
        return -buffer, (_store(mean, raw), _store(square, raw), _store(buffer, raw))

    return _per_leaf(lambda x: (np.zeros_like(x), np.zeros_like(x), np.zeros_like(x)), step)


def ref_adam(learning_rate, b1=0.9, b2=0.999, eps=1e-8, eps_root=0.0, weight_decay=0.0, decoupled=True, mask=None):
    """Adam (Kingma & Ba 2014) and AdamW (Loshchilov & Hutter 2019, Algorithm 2).

    ``decoupled=True``: w -= lr (m_hat / (sqrt(v_hat) + eps) + lambda w)   (AdamW)
    ``decoupled=False``: g += lambda w before the moments                  (Adam + L2, torch's Adam)
    """
    lr, b1, b2, eps, eps_root, wd = hp(learning_rate), hp(b1), hp(b2), hp(eps), hp(eps_root), hp(weight_decay)

    def step(g, w, leaf_state, t, key, raw):
        decays = mask is None or mask(key, raw)
        if not decoupled and decays:
            g = g + wd * w
        m, v, direction = _adam_direction(g, _f64(leaf_state[0]), _f64(leaf_state[1]), t, b1, b2, eps, eps_root, False)
        if decoupled and decays:
            direction = direction + wd * w
        return -lr * direction, (_store(m, raw), _store(v, raw))

    return _per_leaf(lambda x: (np.zeros_like(x), np.zeros_like(x)), step)


def ref_lars(
    learning_rate,
    weight_decay=0.0,
    weight_decay_mask: Rule | None = None,
    trust_coefficient=0.001,
    eps=0.0,
    trust_ratio_mask: Rule | None = None,
    momentum=0.9,
    nesterov=False,
) -> RefTransform:
    """You, Gitman & Ginsburg 2017, Algorithm 1: local lr = eta ||w|| / ||g + beta w||, v = m v + lr local_lr d."""
    wd, coefficient, eps, m = hp(weight_decay), hp(trust_coefficient), hp(eps), hp(momentum)

    def step(g, w, v, t, key, raw):
        lr = _value(learning_rate, t - 1)  # the rate sits inside the momentum buffer
        d = g + wd * w if weight_decay_mask is None or weight_decay_mask(key, raw) else g
        if trust_ratio_mask is None or trust_ratio_mask(key, raw):
            d = _trust_ratio(w, d, 0.0, coefficient, eps) * d
        v = m * _f64(v) + lr * d
        return -(lr * d + m * v) if nesterov else -v, _store(v, raw)

    return _per_leaf(np.zeros_like, step)


def ref_lamb(
    learning_rate,
    b1=0.9,
    b2=0.999,
    eps=1e-6,
    eps_root=0.0,
    weight_decay=0.0,
    mask: Rule | None = None,
    trust_ratio_mask: Rule | None = None,
):
    """You et al. 2019, Algorithm 2: r = adam direction + lambda w; w -= lr_t ||w|| / ||r|| r.

    ``trust_ratio_mask``: leaves where it is False keep ratio 1 (plain Adam with decay).
    """
    b1, b2, eps, eps_root, wd = hp(b1), hp(b2), hp(eps), hp(eps_root), hp(weight_decay)

    def step(g, w, leaf_state, t, key, raw):
        lr = _value(learning_rate, t - 1)
        m, v, r = _adam_direction(g, _f64(leaf_state[0]), _f64(leaf_state[1]), t, b1, b2, eps, eps_root, False)
        if mask is None or mask(key, raw):
            r = r + wd * w
        ratio = _trust_ratio(w, r, 0.0, 1.0, 0.0) if trust_ratio_mask is None or trust_ratio_mask(key, raw) else 1.0
        return -lr * ratio * r, (_store(m, raw), _store(v, raw))

    return _per_leaf(lambda x: (np.zeros_like(x), np.zeros_like(x)), step)


def ref_multi_steps(inner: RefTransform, every_k: int) -> RefTransform:
    """Gradient accumulation: the running sum of ``every_k`` gradients (a float32 buffer) divided by
    ``every_k`` goes to ``inner`` on every ``every_k``-th call; the calls in between give zero updates."""

    def update(g, state, w):
        mini, acc, inner_state = state
        acc = {k: (_f64(acc[k]) + _f64(v)).astype(np.float32) for k, v in g.items()}
        if mini + 1 < every_k:
            return {k: np.zeros_like(v) for k, v in g.items()}, (mini + 1, acc, inner_state)
        mean = {k: _store(_f64(acc[k]) / every_k, g[k]) for k in g}
        out, inner_state = inner.update(mean, inner_state, w)
        return out, (0, {k: np.zeros_like(v) for k, v in acc.items()}, inner_state)

    def init(w):
        return 0, {k: np.zeros(np.shape(x), np.float32) for k, x in w.items()}, inner.init(w)

    return RefTransform(init, update)
