"""NumPy references of the Adam family, the sign family and the other classic optimizers, from the papers.

Same conventions as reference.py (whose helpers are used): flat ``{path: ndarray}`` leaves,
float64 arithmetic, results and states stored in each leaf's dtype, numeric hyperparameters
rounded to float32 by ``hp()`` (so ``1 - b2`` is the exact complement of the stored ``b2``). Each
optimizer is written from its paper's algorithm directly, with the options Optax exposes, not as
a chain of pieces. Nothing here imports optcompose; ``ref_noisy_sgd`` uses ``jax.random`` for the
noise, drawn with Optax's key discipline (one split per step, one key per leaf in pytree order).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from reference import RefTransform, _f64, _per_leaf, _store, hp

_F64_EPS = float(np.finfo(np.float64).eps)


def _value(value: float | Callable[[int], float], t: int) -> float:
    return hp(value(t)) if callable(value) else hp(value)


def _zeros(x: np.ndarray) -> np.ndarray:
    return np.zeros_like(x)


def _divide(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """numerator / denominator, 0 where the denominator is 0 (the library's convention)."""
    safe = np.where(denominator == 0, 1.0, denominator)
    return np.where(denominator == 0, 0.0, numerator / safe)


def _m_hat(m: np.ndarray, g: np.ndarray, b1: float, t: int, nesterov: bool) -> np.ndarray:
    """Kingma & Ba's bias-corrected first moment, or Dozat's (2016) Nesterov look-ahead."""
    if nesterov:
        return b1 * m / (1 - b1 ** (t + 1)) + (1 - b1) * g / (1 - b1**t)
    return m / (1 - b1**t)


# ----------------------------------------------------------------------------------------------
# Adam family


def ref_nadam(learning_rate, b1=0.9, b2=0.999, eps=1e-8, eps_root=0.0, weight_decay=0.0, mask=None):
    """Dozat 2016 (Nadam, with Adam's bias corrections); AdamW-style decay when weight_decay != 0."""
    b1, b2, eps, eps_root, wd = hp(b1), hp(b2), hp(eps), hp(eps_root), hp(weight_decay)

    def step(g, w, state, t, key, raw):
        lr = _value(learning_rate, t - 1)
        m = b1 * _f64(state[0]) + (1 - b1) * g
        v = b2 * _f64(state[1]) + (1 - b2) * g * g
        direction = _m_hat(m, g, b1, t, True) / (np.sqrt(v / (1 - b2**t) + eps_root) + eps)
        if mask is None or mask(key, raw):
            direction = direction + wd * w
        return -lr * direction, (_store(m, raw), _store(v, raw))

    return _per_leaf(lambda x: (_zeros(x), _zeros(x)), step)


def _sma_length(b2: float, t: int) -> float:
    rho_inf = 2 / (1 - b2) - 1
    return rho_inf - 2 * t * b2**t / (1 - b2**t)


def ref_radam(learning_rate, b1=0.9, b2=0.999, eps=1e-8, eps_root=0.0, threshold=5.0, nesterov=False):
    """Liu et al. 2020, Algorithm 2: the rectified adaptive step once rho_t >= threshold."""
    b1, b2, eps, eps_root, threshold = hp(b1), hp(b2), hp(eps), hp(eps_root), hp(threshold)
    rho_inf = 2 / (1 - b2) - 1

    def step(g, w, state, t, key, raw):
        lr = _value(learning_rate, t - 1)
        m = b1 * _f64(state[0]) + (1 - b1) * g
        v = b2 * _f64(state[1]) + (1 - b2) * g * g
        m_hat = _m_hat(m, g, b1, t, nesterov)
        rho = _sma_length(b2, t)
        if rho >= threshold:
            r = np.sqrt((rho - 4) * (rho - 2) * rho_inf / ((rho_inf - 4) * (rho_inf - 2) * rho))
            direction = r * _divide(m_hat, np.sqrt(v / (1 - b2**t) + eps_root) + eps)
        else:
            direction = m_hat
        return -lr * direction, (_store(m, raw), _store(v, raw))

    return _per_leaf(lambda x: (_zeros(x), _zeros(x)), step)


def ref_amsgrad(learning_rate, b1=0.9, b2=0.999, eps=1e-8, eps_root=0.0, bias_correction_mu=True,
                bias_correction_nu=True, mu_dtype=None):  # fmt: skip
    """Reddi et al. 2018, Algorithm 2 (with Adam's optional bias corrections); ``mu_dtype``: m's storage."""
    b1, b2, eps, eps_root = hp(b1), hp(b2), hp(eps), hp(eps_root)

    def step(g, w, state, t, key, raw):
        lr = _value(learning_rate, t - 1)
        m = b1 * _f64(state[0]) + (1 - b1) * g
        v = b2 * _f64(state[1]) + (1 - b2) * g * g
        m_hat = m / (1 - b1**t) if bias_correction_mu else m
        v_used = v / (1 - b2**t) if bias_correction_nu else v
        v_max = np.maximum(_f64(state[2]), v_used)
        direction = _divide(m_hat, np.sqrt(v_max + eps_root) + eps)
        stored_m = m.astype(mu_dtype) if mu_dtype is not None else _store(m, raw)
        return -lr * direction, (stored_m, _store(v, raw), _store(v_max, raw))

    return _per_leaf(lambda x: (_zeros(x), _zeros(x), _zeros(x)), step)


def ref_adamax(learning_rate, b1=0.9, b2=0.999, eps=1e-8, weight_decay=0.0, decoupled=True):
    """Kingma & Ba 2014, Algorithm 2: u_t = max(b2 u_{t-1}, |g_t| + eps), step m_hat / u_t."""
    b1, b2, eps, wd = hp(b1), hp(b2), hp(eps), hp(weight_decay)

    def step(g, w, state, t, key, raw):
        lr = _value(learning_rate, t - 1)
        if not decoupled:
            g = g + wd * w
        m = b1 * _f64(state[0]) + (1 - b1) * g
        u = np.maximum(b2 * _f64(state[1]), np.abs(g) + eps)
        direction = _divide(m / (1 - b1**t), u)
        if decoupled:
            direction = direction + wd * w
        return -lr * direction, (_store(m, raw), _store(u, raw))

    return _per_leaf(lambda x: (_zeros(x), _zeros(x)), step)


def ref_sparse_adam(learning_rate=1e-3, b1=0.9, b2=0.999, eps=1e-8):
    """Lazy Adam (torch.optim.SparseAdam): coordinates with g = 0 keep m, v and w; the others take
    Adam's step with eps added to sqrt(v) before the bias correction and t the global step count."""
    b1, b2, eps = hp(b1), hp(b2), hp(eps)

    def step(g, w, state, t, key, raw):
        lr = _value(learning_rate, t - 1)
        present = g != 0
        m = np.where(present, b1 * _f64(state[0]) + (1 - b1) * g, _f64(state[0]))
        v = np.where(present, b2 * _f64(state[1]) + (1 - b2) * g * g, _f64(state[1]))
        direction = np.sqrt(1 - b2**t) / (1 - b1**t) * _divide(m, np.sqrt(v) + eps)
        return np.where(present, -lr * direction, 0.0), (_store(m, raw), _store(v, raw))

    return _per_leaf(lambda x: (_zeros(x), _zeros(x)), step)


def ref_adabelief(learning_rate, b1=0.9, b2=0.999, eps=1e-16, eps_root=1e-16, nesterov=False):
    """Zhuang et al. 2020, Algorithm 2: s_t = b2 s + (1 - b2)(g - m_t)^2 + eps."""
    b1, b2, eps, eps_root = hp(b1), hp(b2), hp(eps), hp(eps_root)

    def step(g, w, state, t, key, raw):
        lr = _value(learning_rate, t - 1)
        m = b1 * _f64(state[0]) + (1 - b1) * g
        s = b2 * _f64(state[1]) + (1 - b2) * (g - m) ** 2 + eps_root
        direction = _divide(_m_hat(m, g, b1, t, nesterov), np.sqrt(s / (1 - b2**t)) + eps)
        return -lr * direction, (_store(m, raw), _store(s, raw))

    return _per_leaf(lambda x: (_zeros(x), _zeros(x)), step)


def ref_adan(learning_rate, b1=0.98, b2=0.92, b3=0.99, eps=1e-8, eps_root=1e-8, weight_decay=0.0, mask=None):
    """Xie et al. 2022, Algorithm 1 (Optax's parametrisation: b = 1 - the paper's beta)."""
    b1, b2, b3, eps, eps_root, wd = hp(b1), hp(b2), hp(b3), hp(eps), hp(eps_root), hp(weight_decay)

    def step(g, w, state, t, key, raw):
        lr = _value(learning_rate, t - 1)
        m, v, n, previous = (_f64(x) for x in state)
        d = np.zeros_like(g) if t == 1 else g - previous
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * d
        n = b3 * n + (1 - b3) * (g + (1 - b2) * d) ** 2
        m_hat, v_hat, n_hat = m / (1 - b1**t), v / (1 - b2**t), n / (1 - b3**t)
        direction = _divide(m_hat + (1 - b2) * v_hat, np.sqrt(n_hat + eps_root) + eps)
        if mask is None or mask(key, raw):
            direction = direction + wd * w
        return -lr * direction, tuple(_store(x, raw) for x in (m, v, n, g))

    return _per_leaf(lambda x: (_zeros(x),) * 4, step)


def ref_yogi(learning_rate, b1=0.9, b2=0.999, eps=1e-3, eps_root=0.0, initial_accumulator_value=1e-6):
    """Zaheer et al. 2018, Algorithm 2: v_t = v - (1 - b2) sign(v - g^2) g^2."""
    b1, b2, eps, eps_root = hp(b1), hp(b2), hp(eps), hp(eps_root)

    def step(g, w, state, t, key, raw):
        lr = _value(learning_rate, t - 1)
        m = b1 * _f64(state[0]) + (1 - b1) * g
        v = _f64(state[1])
        v = v - (1 - b2) * np.sign(v - g * g) * g * g
        direction = _divide(m / (1 - b1**t), np.sqrt(v / (1 - b2**t) + eps_root) + eps)
        return -lr * direction, (_store(m, raw), _store(v, raw))

    init = lambda x: (np.full_like(x, initial_accumulator_value), np.full_like(x, initial_accumulator_value))
    return _per_leaf(init, step)


def ref_novograd(learning_rate, b1=0.9, b2=0.25, eps=1e-6, eps_root=0.0, weight_decay=0.0):
    """Ginsburg et al. 2019, Algorithm 1: per-layer n_t, m_t = b1 m + g / sqrt(n_t) + d w."""
    b1, b2, eps, eps_root, wd = hp(b1), hp(b2), hp(eps), hp(eps_root), hp(weight_decay)

    def step(g, w, state, t, key, raw):
        lr = _value(learning_rate, t - 1)
        square = float(np.sum(g * g))
        n = square if t == 1 else b2 * float(state[1]) + (1 - b2) * square
        d = _divide(g, np.sqrt(n + eps_root) + eps) + wd * w
        m = d if t == 1 else b1 * _f64(state[0]) + d
        return -lr * m, (_store(m, raw), _store(np.asarray(n), raw))

    return _per_leaf(lambda x: (_zeros(x), np.zeros((), x.dtype)), step)


def ref_adadelta(learning_rate=None, rho=0.9, eps=1e-6, weight_decay=0.0):
    """Zeiler 2012, Algorithm 1, with L2 decay added to the gradient (None: learning rate 1)."""
    rho, eps, wd = hp(rho), hp(eps), hp(weight_decay)

    def step(g, w, state, t, key, raw):
        lr = 1.0 if learning_rate is None else _value(learning_rate, t - 1)
        g = g + wd * w
        e_g = rho * _f64(state[0]) + (1 - rho) * g * g
        dx = np.sqrt(_f64(state[1]) + eps) / np.sqrt(e_g + eps) * g
        e_x = rho * _f64(state[1]) + (1 - rho) * dx * dx
        return -lr * dx, (_store(e_g, raw), _store(e_x, raw))

    return _per_leaf(lambda x: (_zeros(x), _zeros(x)), step)


def _factored_axes(shape: tuple[int, ...], factored: bool, min_dim: int) -> tuple[int, int] | None:
    """(second largest axis, largest axis) when both have >= min_dim entries (ties: earlier axis first)."""
    if not factored or len(shape) < 2:
        return None
    ranked = sorted(range(len(shape)), key=lambda axis: (shape[axis], axis))
    second, largest = ranked[-2], ranked[-1]
    return (second, largest) if shape[second] >= min_dim else None


def ref_adafactor(learning_rate=None, min_dim_size_to_factor=128, decay_rate=0.8, decay_offset=0,
                  multiply_by_parameter_scale=True, clipping_threshold=1.0, momentum=None, weight_decay_rate=None,
                  eps=1e-30, factored=True):  # fmt: skip
    """Shazeer & Stern 2018, Algorithm 4 (factored) / 5, with update clipping (§6), relative step sizes
    (§8, the parameter rms floored at 1e-3), optional momentum (an EMA of the update) and decay."""
    decay_rate, eps = hp(decay_rate), hp(eps)
    threshold = None if clipping_threshold is None else hp(clipping_threshold)
    beta = None if momentum is None else hp(momentum)

    def init_leaf(x):
        axes = _factored_axes(np.shape(x), factored, min_dim_size_to_factor)
        one = np.zeros((1,), x.dtype)
        if axes is None:
            return one, one, _zeros(x), _zeros(x)
        second, largest = axes
        row = np.zeros(np.delete(np.shape(x), largest), x.dtype)
        return row, np.zeros(np.delete(np.shape(x), second), x.dtype), one, _zeros(x)

    def step(g, w, state, t, key, raw):
        row, col, full, m = (_f64(x) for x in state)
        i = t - 1 - int(decay_offset)
        b = 1 - float(np.float32(i + 1)) ** (-decay_rate)
        square = g * g + eps
        axes = _factored_axes(np.shape(g), factored, min_dim_size_to_factor)
        if axes is None:
            full = b * full + (1 - b) * square
            u = g / np.sqrt(full)
        else:
            second, largest = axes
            row = b * row + (1 - b) * np.mean(square, axis=largest)
            col = b * col + (1 - b) * np.mean(square, axis=second)
            row_axis = second - 1 if second > largest else second
            estimate = np.expand_dims(row, largest) * np.expand_dims(col, second)
            estimate = estimate / np.expand_dims(np.mean(row, axis=row_axis, keepdims=True), largest)
            u = g / np.sqrt(estimate)
        if threshold is not None:
            u = u / max(1.0, float(np.sqrt(np.mean(u * u))) / threshold)
        if learning_rate is not None:
            u = _value(learning_rate, t - 1) * u
        if multiply_by_parameter_scale:
            u = max(float(np.sqrt(np.mean(w * w))), hp(1e-3)) * u
        if beta is not None:
            m = beta * m + (1 - beta) * u
            u = m
        if weight_decay_rate is not None:
            u = u + _value(weight_decay_rate, t - 1) * w
        return -u, (_store(row, state[0]), _store(col, state[1]), _store(full, state[2]), _store(m, raw))

    return _per_leaf(init_leaf, step)


def ref_sm3(learning_rate, momentum=0.9, b2=1.0, eps=1e-8):
    """Anil et al. 2019, SM3-II with one cover per axis, an EMA of the scaled gradient as the update."""
    lr, b1, b2, eps = hp(learning_rate), hp(momentum), hp(b2), hp(eps)
    own = 1.0 if b2 == 1.0 else 1 - b2

    def step(g, w, state, t, key, raw):
        covers, m = [_f64(c) for c in state[0]], _f64(state[1])
        shape = np.shape(g)
        if len(shape) <= 1:
            cover = covers[0].reshape(shape)
        else:
            cover = np.min(np.stack(np.broadcast_arrays(*[
                c.reshape([n if a == i else 1 for a, n in enumerate(shape)]) for i, c in enumerate(covers)
            ])), axis=0)  # fmt: skip
        acc = own * g * g + b2 * cover
        scaled = np.where(acc > 0, g / np.sqrt(np.where(acc > 0, acc + eps, 1.0)), 0.0)
        m = b1 * m + (1 - b1) * scaled
        if len(shape) <= 1:
            new_covers = [acc.reshape(np.shape(covers[0]))]
        else:
            new_covers = [np.max(acc, axis=tuple(a for a in range(len(shape)) if a != i)) for i in range(len(shape))]
        return -lr * m, ([_store(c, raw) for c in new_covers], _store(m, raw))

    def init_leaf(x):
        if np.ndim(x) == 0:
            return [np.zeros((), x.dtype)], _zeros(x)
        return [np.zeros((n,), x.dtype) for n in np.shape(x)], _zeros(x)

    return _per_leaf(init_leaf, step)


def ref_optimistic_adam(learning_rate, alpha=1.0, beta=1.0, b1=0.9, b2=0.999, eps=1e-8, eps_root=0.0,
                        nesterov=True, v1_optimism=None):  # fmt: skip
    """Daskalakis et al. 2018 with Adam's direction d_t: w -= lr ((alpha + beta) d_t - beta d_{t-1}).

    ``v1_optimism`` (Optax's deprecated ``optimistic_adam``): w -= (lr + o) d_t - o d_{t-1}.
    """
    b1, b2, eps, eps_root = hp(b1), hp(b2), hp(eps), hp(eps_root)
    if v1_optimism is not None:
        lr0, alpha, beta = 1.0, hp(learning_rate), hp(v1_optimism)
    else:
        lr0, alpha, beta = None, hp(alpha), hp(beta)

    def step(g, w, state, t, key, raw):
        lr = lr0 if lr0 is not None else _value(learning_rate, t - 1)
        m = b1 * _f64(state[0]) + (1 - b1) * g
        v = b2 * _f64(state[1]) + (1 - b2) * g * g
        d = _divide(_m_hat(m, g, b1, t, nesterov), np.sqrt(v / (1 - b2**t) + eps_root) + eps)
        previous = d if t == 1 else _f64(state[2])
        u = -lr * ((alpha + beta) * d - beta * previous)
        return u, (_store(m, raw), _store(v, raw), _store(d, raw))

    return _per_leaf(lambda x: (_zeros(x), _zeros(x), _zeros(x)), step)


# ----------------------------------------------------------------------------------------------
# Sign family and SGD variants


def ref_sign_sgd(learning_rate) -> RefTransform:
    """Bernstein et al. 2018: w -= lr sign(g)."""

    def step(g, w, state, t, key, raw):
        return -_value(learning_rate, t - 1) * np.sign(g), state

    return _per_leaf(lambda x: None, step)


def ref_signum(learning_rate, beta=0.9) -> RefTransform:
    """Bernstein et al. 2018, Algorithm 3: m = beta m + (1 - beta) g, w -= lr sign(m)."""
    beta = hp(beta)

    def step(g, w, m, t, key, raw):
        m = beta * _f64(m) + (1 - beta) * g
        return -_value(learning_rate, t - 1) * np.sign(m), _store(m, raw)

    return _per_leaf(_zeros, step)


def ref_lion(learning_rate, b1=0.9, b2=0.99, weight_decay=1e-3, mode="hard", smooth_beta=1.0) -> RefTransform:
    """Chen et al. 2023, Algorithm 2: u = sign(b1 m + (1 - b1) g) + wd w; m = b2 m + (1 - b2) g."""
    b1, b2, wd, smooth_beta = hp(b1), hp(b2), hp(weight_decay), hp(smooth_beta)

    def step(g, w, m, t, key, raw):
        c = b1 * _f64(m) + (1 - b1) * g
        if mode == "hard":
            direction = np.sign(c)
        elif mode == "smooth":
            direction = np.tanh(smooth_beta * c)
        else:
            direction = np.where(np.abs(c) < 1, c, np.sign(c))
        m = b2 * _f64(m) + (1 - b2) * g
        return -_value(learning_rate, t - 1) * (direction + wd * w), _store(m, raw)

    return _per_leaf(_zeros, step)


def ref_rprop(learning_rate, eta_minus=0.5, eta_plus=1.2, min_step_size=1e-6, max_step_size=50.0) -> RefTransform:
    """Igel & Hüsken 2003, iRprop-: grow the step while the sign holds, shrink and skip on a flip."""
    eta_minus, eta_plus, low, high = hp(eta_minus), hp(eta_plus), hp(min_step_size), hp(max_step_size)

    def step(g, w, state, t, key, raw):
        delta, previous = _f64(state[0]), _f64(state[1])
        s = g * previous
        delta = np.where(s > 0, np.minimum(delta * eta_plus, high), delta)
        delta = np.where(s < 0, np.maximum(delta * eta_minus, low), delta)
        change = np.where(s < 0, 0.0, delta * np.sign(g))
        return -change, (_store(delta, raw), _store(change, raw))

    return _per_leaf(lambda x: (np.full_like(x, hp(learning_rate)), _zeros(x)), step)


def _norm(x: np.ndarray) -> float:
    return float(np.sqrt(np.sum(np.square(_f64(x)))))


def ref_fromage(learning_rate, min_norm=1e-6) -> RefTransform:
    """Bernstein et al. 2020, Algorithm 1: w <- (w - lr ||w|| / ||g|| g) / sqrt(1 + lr^2)."""
    min_norm = hp(min_norm)

    def step(g, w, state, t, key, raw):
        lr = _value(learning_rate, t - 1)
        w_norm, g_norm = max(_norm(w), min_norm), max(_norm(g), min_norm)
        ratio = 1.0 if w_norm == 0 or g_norm == 0 else w_norm / g_norm
        return (w - lr * ratio * g) / np.sqrt(1 + lr * lr) - w, state

    return _per_leaf(lambda x: None, step)


def ref_optimistic_gradient_descent(learning_rate, alpha=1.0, beta=1.0) -> RefTransform:
    """Mokhtari et al. 2020: w -= lr ((alpha + beta) g_t - beta g_{t-1}), g_0 = g_1."""
    alpha, beta = hp(alpha), hp(beta)

    def step(g, w, previous, t, key, raw):
        previous = g if t == 1 else _f64(previous)
        return -_value(learning_rate, t - 1) * ((alpha + beta) * g - beta * previous), _store(g, raw)

    return _per_leaf(_zeros, step)


def ref_asgd(learning_rate=0.01, lambd=1e-4, alpha=0.75, t0=1e6, weight_decay=0.0):
    """Polyak & Juditsky 1992 as torch.optim.ASGD: with s = t - 1 earlier steps, eta = lr / (1 + lambd
    lr s)^alpha, w -> w (1 - lambd eta) - eta (g + wd w); ax, the running average of the new w with
    weight mu = 1 / max(1, s - t0) (ax = w while mu = 1), is the leaf state."""
    lambd, alpha, t0, wd = hp(lambd), hp(alpha), hp(t0), hp(weight_decay)

    def step(g, w, ax, t, key, raw):
        lr = _value(learning_rate, t - 1)
        eta = lr / (1 + lambd * lr * (t - 1)) ** alpha
        mu = 1 / max(1.0, (t - 1) - t0)
        new_w = w * (1 - lambd * eta) - eta * (g + wd * w)
        ax = new_w if mu == 1 else _f64(ax) + mu * (new_w - _f64(ax))
        return new_w - w, _store(ax, raw)

    return _per_leaf(_zeros, step)


def _global(update_tree: Callable[[dict, dict, Any, int], tuple[dict, Any]], init: Callable[[dict], Any]):
    """A reference whose update looks at all leaves at once: ``update_tree(g, w, state, t)``."""

    def update(g, state, w):
        t, inner = state[0] + 1, state[1]
        out, inner = update_tree({k: _f64(v) for k, v in g.items()}, {k: _f64(v) for k, v in w.items()}, inner, t)
        return {k: _store(out[k], g[k]) for k in g}, (t, inner)

    return RefTransform(lambda w: (0, init(w)), update)


def ref_polyak_sgd(max_learning_rate=1.0, scaling=1.0, f_min=0.0, eps=0.0, variant="sps", values=None):
    """Loizou et al. 2021 (SPS_max), Garrigos et al. 2023 (sps+): d = -s g, w += min(gap / ||d||^2, max) d.

    ``values(step)`` is the loss given at each step (0-based), as the test passes it.
    """
    max_lr, f_min, eps = hp(max_learning_rate), hp(f_min), hp(eps)

    def update_tree(g, w, state, t):
        d = {k: -_value(scaling, t - 1) * v for k, v in g.items()}
        squared = sum(float(np.sum(v * v)) for v in d.values())
        gap = float(np.float32(values(t - 1))) - f_min
        if variant == "sps+":
            gap = max(gap, 0.0)
        step = 0.0 if squared + eps <= _F64_EPS else min(gap / (squared + eps), max_lr)
        return {k: step * v for k, v in d.items()}, state

    return _global(update_tree, lambda w: None)


def ref_normalize_by_update_norm(scale_factor=1.0, eps=1e-6, learning_rate=0.05):
    """u -> -lr * s g / (||g|| + eps), the norm over all leaves."""
    s, eps = hp(scale_factor), hp(eps)

    def update_tree(g, w, state, t):
        norm = np.sqrt(sum(float(np.sum(v * v)) for v in g.values()))
        return {k: -hp(learning_rate) * s * v / (norm + eps) for k, v in g.items()}, state

    return _global(update_tree, lambda w: None)


def ref_param_block_scale(kind: str, min_scale=1e-3, learning_rate=0.05):
    """u -> -lr * max(||w|| or rms(w), min_scale) * g per leaf."""
    min_scale = hp(min_scale)

    def step(g, w, state, t, key, raw):
        size = max(np.size(w), 1)
        measure = _norm(w) if kind == "norm" else _norm(w) / np.sqrt(size)
        return -hp(learning_rate) * max(measure, min_scale) * g, state

    return _per_leaf(lambda x: None, step)


def ref_clip_by_block_rms(threshold, learning_rate=0.05):
    """u -> -lr * g / max(1, rms(g) / threshold) per leaf (Shazeer & Stern 2018, §6)."""
    threshold = hp(threshold)

    def step(g, w, state, t, key, raw):
        rms = _norm(g) / np.sqrt(max(np.size(g), 1))
        return -hp(learning_rate) * g / max(1.0, rms / threshold), state

    return _per_leaf(lambda x: None, step)


def ref_noisy_sgd(learning_rate, eta=0.01, gamma=0.55, key=0):
    """Neelakantan et al. 2015: w -= lr (g + N(0, eta / t^gamma)); the noise from jax.random."""
    import jax

    eta, gamma = hp(eta), hp(gamma)

    def update(g, state, w):
        t, rng = state[0] + 1, state[1]
        rng, sample = jax.random.split(rng)
        keys = jax.random.split(sample, len(g))
        sigma = float(np.sqrt(np.float32(eta) / np.float32(t) ** np.float32(gamma)))
        out = {}
        for i, (k, gk) in enumerate(g.items()):
            noise = np.asarray(jax.random.normal(keys[i], np.shape(gk), np.asarray(gk).dtype))
            out[k] = _store(-_value(learning_rate, t - 1) * (_f64(gk) + sigma * _f64(noise)), gk)
        return out, (t, rng)

    return RefTransform(lambda w: (0, jax.random.key(key)), update)
