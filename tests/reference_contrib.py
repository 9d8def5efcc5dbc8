"""NumPy references of the contributed optimizers (``optcompose.contrib``), written from the papers.

Same conventions as reference.py: flat ``{path: ndarray}`` leaves, float64 arithmetic, results and
states stored in each leaf's dtype, hyperparameters rounded to float32 (``hp``) as the library
stores them. Optimizers that read the loss take it as ``value_fn(step)`` (step = 0, 1, ...), the
same function the rows pass to ``update(..., value=...)``. Nothing here imports optcompose.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from reference import (
    RefTransform,
    _adam_direction,
    _f64,
    _store,
    hp,
    ref_add_decayed_weights,
    ref_chain,
    ref_identity,
    ref_scale_by_learning_rate,
    ref_scale_by_rms,
    ref_sgd,
)

Leaves = dict[str, np.ndarray]
MUON_COEFFS = (3.4445, -4.7750, 2.0315)


def _zeros(w: Leaves) -> Leaves:
    return {k: np.zeros_like(x) for k, x in w.items()}


def _copy(w: Leaves) -> Leaves:
    return {k: np.array(x, copy=True) for k, x in w.items()}


def _vdot(a: Leaves, b: Leaves) -> float:
    return float(sum(np.sum(_f64(a[k]) * _f64(b[k])) for k in a))


def _sq_norm(a: Leaves) -> float:
    return _vdot(a, a)


def _value(value: float | Callable[[int], float], t: int) -> float:
    return hp(value(t)) if callable(value) else hp(value)


# ----------------------------------------------------------------------------------------------
# Muon (Jordan 2024): Newton-Schulz orthogonalization of the momentum.


def newton_schulz(x: np.ndarray, coeffs=MUON_COEFFS, steps: int = 5, eps: float = 1e-8) -> np.ndarray:
    """Quintic Newton-Schulz: X / (||X||_F + eps), then X <- a X + (b A + c A^2) X with A = X X^T."""
    a, b, c = (hp(v) for v in coeffs)
    x = _f64(x)
    transposed = x.shape[0] > x.shape[1]
    if transposed:
        x = x.T
    x = x / (np.linalg.norm(x) + hp(eps))
    for _ in range(steps):
        gram = x @ x.T
        x = a * x + (b * gram + c * gram @ gram) @ x
    return x.T if transposed else x


def ref_muon(learning_rate, beta=0.95, eps=1e-8, weight_decay=0.0, nesterov=True, adam_b1=0.9, adam_b2=0.999,
             adam_weight_decay=0.0, consistent_rms=None) -> RefTransform:  # fmt: skip
    """Matrices: w -= lr (scale * NS(m_hat) + wd w); other leaves: AdamW(lr, adam_b1, adam_b2, eps)."""
    lr, beta, eps_, wd, wd_adam = hp(learning_rate), hp(beta), hp(eps), hp(weight_decay), hp(adam_weight_decay)
    b1, b2 = hp(adam_b1), hp(adam_b2)

    def update(g, state, w):
        t, moments = state[0] + 1, state[1]
        out, new = {}, {}
        for k, gk in g.items():
            g64, w64 = _f64(gk), _f64(w[k])
            if g64.ndim == 2:
                m = beta * _f64(moments[k][0]) + (1 - beta) * g64
                if nesterov:
                    m_hat = beta * m / (1 - beta ** (t + 1)) + (1 - beta) * g64 / (1 - beta**t)
                else:
                    m_hat = m / (1 - beta**t)
                fan_in, fan_out = g64.shape
                scale = np.sqrt(max(1.0, fan_out / fan_in)) if consistent_rms is None else (
                    np.sqrt(max(fan_in, fan_out)) * consistent_rms
                )  # fmt: skip
                u = -lr * (scale * newton_schulz(m_hat, eps=eps_) + wd * w64)
                new[k] = (_store(m, moments[k][0]), moments[k][1])
            else:
                m, v, direction = _adam_direction(
                    g64, _f64(moments[k][0]), _f64(moments[k][1]), t, b1, b2, eps_, 0.0, nesterov
                )
                u = -lr * (direction + wd_adam * w64)
                new[k] = (_store(m, moments[k][0]), _store(v, moments[k][1]))
            out[k] = _store(u, gk)
        return out, (t, new)

    return RefTransform(lambda w: (0, {k: (np.zeros_like(x), np.zeros_like(x)) for k, x in w.items()}), update)


# ----------------------------------------------------------------------------------------------
# torch.optim.Muon (torch 2.9+): an EMA momentum without bias correction, X / max(||X||, eps).


def _bfloat16(x: np.ndarray) -> np.ndarray:
    """Round to bfloat16 (nearest, ties to even), kept in float64: torch stores its iterate so."""
    import ml_dtypes

    return np.asarray(x, np.float32).astype(ml_dtypes.bfloat16).astype(np.float64)


def newton_schulz_torch(x: np.ndarray, coeffs=MUON_COEFFS, steps: int = 5, eps: float = 1e-7,
                        bfloat16: bool = False) -> np.ndarray:  # fmt: skip
    """torch's ``_zeropower_via_newtonschulz`` on a torch ``(fan_out, fan_in)`` matrix ``x``.

    Transposed when it has more rows than columns; ``X / max(||X||_F, eps)``, then ``steps`` times
    ``X <- a X + (b A + c A A) X`` with ``A = X X^T`` (an ``(n, 3)`` table: one row per step, n steps).
    ``bfloat16``: round the iterate where torch's bfloat16 tensors hold it (the cast, the norm, the
    division, ``A``, ``b A + c A A`` and each new ``X``).
    """
    r = _bfloat16 if bfloat16 else (lambda y: y)
    table = np.asarray(coeffs, np.float64)
    rows = [tuple(hp(v) for v in row) for row in table] if table.ndim == 2 else [tuple(hp(v) for v in table)] * steps
    x = r(_f64(x))
    transposed = x.shape[0] > x.shape[1]
    if transposed:
        x = x.T
    x = r(x / max(float(r(np.linalg.norm(x))), hp(eps)))
    for a, b, c in rows:
        gram = r(x @ x.T)
        poly = r(b * gram + c * (gram @ gram))
        x = r(a * x + poly @ x)
    return x.T if transposed else x


def ref_muon_torch(learning_rate, weight_decay=0.1, momentum=0.95, nesterov=True, ns_coefficients=MUON_COEFFS,
                   eps=1e-7, ns_steps=5, adjust_lr_fn=None, axes: Callable[[str, np.ndarray], Any] | None = None,
                   bfloat16: bool = False) -> RefTransform:  # fmt: skip
    """torch.optim.Muon on every leaf it is given (torch's ``muon`` step, per matrix)::

        B <- B + (1 - mu) (g - B);  X = g + mu (B - g) (nesterov) or B;  O = NS(X)
        w <- w (1 - lr wd) - lr adjust O,  adjust = sqrt(max(1, fan_out / fan_in)) (None / 'original')
                                                    or 0.2 sqrt(max(fan_in, fan_out)) ('match_rms_adamw')

    ``axes(path, leaf)``: ``(reduction axes, output axes)`` of a leaf (default ``((0,), (1,))``: a
    Flax ``(fan_in, fan_out)`` kernel); any other axes are a batch of matrices. torch's matrix is
    the ``(fan_out, fan_in)`` transpose. ``learning_rate`` may be a function of the step count.
    """
    mu, wd = hp(momentum), hp(weight_decay)

    def matrices(x: np.ndarray, reduction, output):
        batch = tuple(a for a in range(x.ndim) if a not in (*reduction, *output))
        order = (*batch, *reduction, *output)
        fan_in, fan_out = int(np.prod([x.shape[a] for a in reduction])), int(np.prod([x.shape[a] for a in output]))
        stacked = np.transpose(x, order).reshape(-1, fan_in, fan_out)
        back = lambda m: np.transpose(m.reshape([x.shape[a] for a in order]), np.argsort(order))
        return stacked, back, fan_in, fan_out

    def update(g, state, w):
        t, buffers = state
        lr = _value(learning_rate, t)
        out, new = {}, {}
        for k, gk in g.items():
            g64 = _f64(gk)
            buf = _f64(buffers[k]) + (1.0 - mu) * (g64 - _f64(buffers[k]))
            new[k] = _store(buf, buffers[k])
            x = g64 + mu * (buf - g64) if nesterov else buf
            reduction, output = ((0,), (1,)) if axes is None else axes(k, w[k])
            stacked, back, fan_in, fan_out = matrices(x, tuple(np.atleast_1d(reduction)), tuple(np.atleast_1d(output)))
            ortho = np.stack([newton_schulz_torch(m.T, ns_coefficients, ns_steps, eps, bfloat16).T for m in stacked])
            if adjust_lr_fn == "match_rms_adamw":
                adjust = 0.2 * np.sqrt(max(fan_in, fan_out))
            else:
                adjust = np.sqrt(max(1.0, fan_out / fan_in))
            out[k] = _store(-lr * (adjust * back(ortho) + wd * _f64(w[k])), gk)
        return out, (t + 1, new)

    return RefTransform(lambda w: (0, _zeros(w)), update)


# ----------------------------------------------------------------------------------------------
# Schedule-Free (Defazio et al. 2024).


def ref_schedule_free(base: RefTransform, learning_rate, b1=0.9, weight_lr_power=2.0) -> RefTransform:
    """z += base step;  c = lr_max^p / sum lr_max^p;  x = (1 - c) x + c z;  y = b1 x + (1 - b1) z."""
    b1, power = hp(b1), hp(weight_lr_power)

    def init(w):
        return {"z": _copy(w), "total": 0.0, "max_lr": 0.0, "step": 1, "base": base.init(w)}

    def update(g, st, y):
        lr = _value(learning_rate, st["step"])
        max_lr = max(st["max_lr"], lr)
        weight = max_lr**power
        total = st["total"] + weight
        ck = weight / total if total > 0 else 0.0
        base_u, base_state = base.update(g, st["base"], y)
        out, z = {}, {}
        for k, yk in y.items():
            z[k] = _store(_f64(st["z"][k]) + _f64(base_u[k]), st["z"][k])
            x = (_f64(yk) - (1 - b1) * _f64(st["z"][k])) / b1
            x = (1 - ck) * x + ck * _f64(z[k])
            out[k] = _store(b1 * x + (1 - b1) * _f64(z[k]) - _f64(yk), yk)
        return out, {"z": z, "total": total, "max_lr": max_lr, "step": st["step"] + 1, "base": base_state}

    return RefTransform(init, update)


def ref_schedule_free_sgd(learning_rate=1.0, b1=0.9, weight_decay=None, weight_lr_power=2.0) -> RefTransform:
    base = ref_sgd(learning_rate)
    if weight_decay is not None:
        base = ref_chain(ref_add_decayed_weights(weight_decay), base)
    return ref_schedule_free(base, learning_rate, b1, weight_lr_power)


def ref_schedule_free_adamw(learning_rate=0.0025, b1=0.9, b2=0.999, eps=1e-8, weight_decay=0.0, weight_lr_power=2.0):
    """AdamW without momentum (Adam's bias-corrected v, eps outside the root), made schedule-free."""
    base = ref_chain(
        ref_scale_by_rms(decay=b2, eps=eps, eps_in_sqrt=False, bias_correction=True),
        ref_add_decayed_weights(weight_decay),
        ref_scale_by_learning_rate(learning_rate),
    )
    return ref_schedule_free(base, learning_rate, b1, weight_lr_power)


# ----------------------------------------------------------------------------------------------
# Per-coordinate methods.


def _per_leaf(init_leaf: Callable[[np.ndarray], Any], step_leaf: Callable[..., tuple[np.ndarray, Any]]):
    """``step_leaf(g, w, leaf_state, t) -> (update, leaf_state)`` with t = 1, 2, ... (floats: float64)."""

    def update(g, state, w):
        t, leaf_states = state[0] + 1, state[1]
        out, new = {}, {}
        for k, gk in g.items():
            u, new_state = step_leaf(_f64(gk), _f64(w[k]), leaf_states[k], t)
            out[k] = _store(u, gk)
            new[k] = tuple(_store(s, leaf_states[k][i]) for i, s in enumerate(new_state))
        return out, (t, new)

    return RefTransform(lambda w: (0, {k: init_leaf(x) for k, x in w.items()}), update)


def ref_adopt(learning_rate, b1=0.9, b2=0.9999, eps=1e-6, nesterov=False, use_clipping=True) -> RefTransform:
    """Taniguchi et al. 2024: v_0 = g_0^2; then d = clip(g / max(sqrt(v_{t-1}), eps), t^0.25), m = EMA(d)."""
    lr, b1, b2, eps = _value(learning_rate, 0), hp(b1), hp(b2), hp(eps)

    def step(g, w, s, t):
        m, v = _f64(s[0]), _f64(s[1])
        count = t - 1
        if count == 0:
            return np.zeros_like(g), (m, g * g)
        d = g / np.maximum(np.sqrt(v), eps)
        if use_clipping:
            d = np.clip(d, -(count**0.25), count**0.25)
        m = b1 * m + (1 - b1) * d
        direction = b1 * m + (1 - b1) * d if nesterov else m
        return -lr * direction, (m, b2 * v + (1 - b2) * g * g)

    return _per_leaf(lambda x: (np.zeros_like(x), np.zeros_like(x)), step)


def ref_ademamix(learning_rate, b1=0.9, b2=0.999, b3=0.9999, alpha=5.0, eps=1e-8, eps_root=0.0, weight_decay=0.0):
    """Pagliardini et al. 2024: (m1_hat + alpha m2) / (sqrt(v_hat + eps_root) + eps) + wd w."""
    lr, b1, b2, eps, eps_root, wd = hp(learning_rate), hp(b1), hp(b2), hp(eps), hp(eps_root), hp(weight_decay)

    def step(g, w, s, t):
        b3_t, alpha_t = _value(b3, t - 1), _value(alpha, t - 1)
        m1 = b1 * _f64(s[0]) + (1 - b1) * g
        m2 = b3_t * _f64(s[1]) + (1 - b3_t) * g
        v = b2 * _f64(s[2]) + (1 - b2) * g * g
        direction = (m1 / (1 - b1**t) + alpha_t * m2) / (np.sqrt(v / (1 - b2**t) + eps_root) + eps)
        return -lr * (direction + wd * w), (m1, m2, v)

    return _per_leaf(lambda x: (np.zeros_like(x),) * 3, step)


def ref_simplified_ademamix(learning_rate, b1=0.99, b2=0.95, alpha=0.0, eps=1e-8, eps_root=0.0, weight_decay=0.0):
    """Morwani et al. 2025: m = b1 m + g;  u = (m + alpha g) / (sqrt(v_hat + eps_root) + eps)."""
    lr, b1, b2, eps, eps_root, wd = hp(learning_rate), hp(b1), hp(b2), hp(eps), hp(eps_root), hp(weight_decay)

    def step(g, w, s, t):
        alpha_t = _value(alpha, t - 1)
        m = b1 * _f64(s[0]) + g
        v = b2 * _f64(s[1]) + (1 - b2) * g * g
        direction = (m + alpha_t * g) / (np.sqrt(v / (1 - b2**t) + eps_root) + eps)
        return -lr * (direction + wd * w), (m, v)

    return _per_leaf(lambda x: (np.zeros_like(x),) * 2, step)


def ref_acprop(learning_rate, b1=0.9, b2=0.999, eps=1e-16, eps_root=1e-16, weight_decay=0.0) -> RefTransform:
    """Zhuang et al. 2021 (as Optax): s = EMA((g - m_old)^2) + eps_root; u = g / (sqrt(s_old_hat) + eps)."""
    lr, b1, b2, eps, eps_root, wd = hp(learning_rate), hp(b1), hp(b2), hp(eps), hp(eps_root), hp(weight_decay)

    def step(g, w, s, t):
        m_old, v_old = _f64(s[0]), _f64(s[1])
        m = b1 * m_old + (1 - b1) * g
        v = b2 * v_old + (1 - b2) * (g - m_old) ** 2 + eps_root
        v_hat = np.ones_like(g) if t == 1 else v_old / (1 - b2 ** (t - 1))
        return -lr * (g / (np.sqrt(v_hat) + eps) + wd * w), (m, v)

    return _per_leaf(lambda x: (np.zeros_like(x),) * 2, step)


def ref_madgrad(learning_rate, momentum=0.9, weight_decay=0.0, eps=1e-6) -> RefTransform:
    """Defazio & Jelassi 2021: lambda = (lr + eps) sqrt(k+1); z = x0 - s / (nu^(1/3) + eps); x <- (1-c) z + c x."""
    c, wd, eps = hp(momentum), hp(weight_decay), hp(eps)

    def update(g, state, w):
        t, leaves = state[0] + 1, state[1]
        weight = (_value(learning_rate, t - 1) + eps) * np.sqrt(t)
        out, new = {}, {}
        for k, gk in g.items():
            nu, s, x0 = leaves[k]
            d = _f64(gk) + wd * _f64(w[k])
            nu_new, s_new = _f64(nu) + weight * d * d, _f64(s) + weight * d
            z = _f64(x0) - s_new / (np.cbrt(nu_new) + eps)
            out[k] = _store((1 - c) * z + c * _f64(w[k]) - _f64(w[k]), gk)
            new[k] = (_store(nu_new, nu), _store(s_new, s), x0)
        return out, (t, new)

    init = lambda w: (0, {k: (np.zeros_like(x), np.zeros_like(x), x.copy()) for k, x in w.items()})
    return RefTransform(init, update)


def ref_cocob(learning_rate=1.0, alpha=100.0, eps=1e-8, weight_decay=0.0) -> RefTransform:
    """Orabona & Tommasi 2017, Algorithm 2 (COCOB-Backprop), fed lr * (g + wd w)."""
    lr, alpha, wd = hp(learning_rate), hp(alpha), hp(weight_decay)

    def update(g, state, w):
        out, new = {}, {}
        for k, gk in g.items():
            w0, theta, scale, total, reward = (_f64(x) for x in state[k])
            c = lr * (_f64(gk) + wd * _f64(w[k]))
            scale = np.maximum(scale, np.abs(c))
            total = total + np.abs(c)
            reward = np.maximum(reward - c * (_f64(w[k]) - w0), 0.0)
            theta = theta - c
            target = w0 + theta / (scale * np.maximum(total + scale, alpha * scale)) * (scale + reward)
            out[k] = _store(target - _f64(w[k]), gk)
            new[k] = tuple(_store(x, state[k][1]) for x in (w0, theta, scale, total, reward))
        return out, new

    def init(w):
        return {k: (x.copy(), np.zeros_like(x), np.full_like(x, eps), np.zeros_like(x), np.zeros_like(x))
                for k, x in w.items()}  # fmt: skip

    return RefTransform(init, update)


# ----------------------------------------------------------------------------------------------
# Step sizes from global quantities.


def ref_prodigy(learning_rate=1.0, betas=(0.9, 0.999), eps=1e-8, estim_lr0=1e-6, estim_lr_coef=1.0, weight_decay=0.0,
                safeguard_warmup=False) -> RefTransform:  # fmt: skip
    """Mishchenko & Defazio 2023, Algorithm 4 (Adam form), d = max(d, coef * r / ||s||_1)."""
    b1, b2 = hp(betas[0]), hp(betas[1])
    b3, eps, d0, coef, wd = hp(float(betas[1]) ** 0.5), hp(eps), hp(estim_lr0), hp(estim_lr_coef), hp(weight_decay)

    def init(w):
        return {"m": _zeros(w), "v": _zeros(w), "s": _zeros(w), "x0": _copy(w), "d": d0, "r": 0.0, "t": 0}

    def update(g, st, w):
        t, d = st["t"] + 1, st["d"]
        dlr = d * _value(learning_rate, t - 1) * np.sqrt(1 - b2**t) / (1 - b1**t)
        acc = _vdot(g, {k: _f64(st["x0"][k]) - _f64(w[k]) for k in w})
        m, v, s = {}, {}, {}
        for k, gk in g.items():
            dg = d * _f64(gk)
            m[k] = _store(b1 * _f64(st["m"][k]) + (1 - b1) * dg, st["m"][k])
            v[k] = _store(b2 * _f64(st["v"][k]) + (1 - b2) * dg * dg, st["v"][k])
            s[k] = _store(b3 * _f64(st["s"][k]) + (d if safeguard_warmup else dlr) * dg / d0, st["s"][k])
        r = b3 * st["r"] + (d / d0) * dlr * acc
        l1 = sum(np.sum(np.abs(_f64(x))) for x in s.values())
        new_d = max(d, coef * r / l1) if l1 > 0 else d
        out = {
            k: _store(-wd * dlr * _f64(w[k]) - dlr * _f64(m[k]) / (np.sqrt(_f64(v[k])) + new_d * eps), gk)
            for k, gk in g.items()
        }
        return out, {"m": m, "v": v, "s": s, "x0": st["x0"], "d": new_d, "r": r, "t": t}

    return RefTransform(init, update)


def ref_dadapt_adamw(learning_rate=1.0, betas=(0.9, 0.999), eps=1e-8, estim_lr0=1e-6, weight_decay=0.0):
    """Defazio & Mishchenko 2023, Algorithm 3 (AdamW form), with sb2 = sqrt(b2)."""
    b1, b2, eps, wd = hp(betas[0]), hp(betas[1]), hp(eps), hp(weight_decay)
    sb2 = np.sqrt(b2)

    def init(w):
        return {"m": _zeros(w), "v": _zeros(w), "s": _zeros(w), "d": hp(estim_lr0), "r": 0.0, "t": 0}

    def update(g, st, w):
        t, d = st["t"] + 1, st["d"]
        dlr = d * _value(learning_rate, t - 1) * np.sqrt(1 - b2**t) / (1 - b1**t)
        acc = _vdot(g, {k: _f64(st["s"][k]) / (np.sqrt(_f64(st["v"][k])) + eps) for k in g})
        m, v, s = {}, {}, {}
        for k, gk in g.items():
            g64 = _f64(gk)
            m[k] = _store(b1 * _f64(st["m"][k]) + (1 - b1) * dlr * g64, st["m"][k])
            v[k] = _store(b2 * _f64(st["v"][k]) + (1 - b2) * g64 * g64, st["v"][k])
            s[k] = _store(sb2 * _f64(st["s"][k]) + (1 - sb2) * dlr * g64, st["s"][k])
        r = sb2 * st["r"] + (1 - sb2) * dlr * acc
        l1 = sum(np.sum(np.abs(_f64(x))) for x in s.values())
        new_d = max(d, r / ((1 - sb2) * l1)) if l1 > 0 else d
        out = {
            k: _store(-wd * dlr * _f64(w[k]) - _f64(m[k]) / (np.sqrt(_f64(v[k])) + eps), gk) for k, gk in g.items()
        }
        return out, {"m": m, "v": v, "s": s, "d": new_d, "r": r, "t": t}

    return RefTransform(init, update)


def ref_dog(learning_rate=1.0, init_step=("heuristic", 1e-6), eps=1e-8, weight_decay=None) -> RefTransform:
    """Ivgi et al. 2023: eta = max_i ||x_i - x_0|| / sqrt(sum ||g_i||^2 + eps), r_eps from init_step."""
    kind, value = init_step
    lr, eps = hp(learning_rate), hp(eps)

    def init(w):
        r = {"distance": value, "learning_rate": 0.0, "heuristic": value * (1 + np.sqrt(_sq_norm(w)))}[kind]
        return {"x0": _copy(w), "r": float(np.float32(r)), "sum": 0.0, "first": True}

    def update(g, st, w):
        if weight_decay is not None:
            g = {k: _f64(gk) + hp(weight_decay) * _f64(w[k]) for k, gk in g.items()}
        r = max(st["r"], np.sqrt(_sq_norm({k: _f64(st["x0"][k]) - _f64(w[k]) for k in w})))
        total = st["sum"] + _sq_norm(g)
        eta = value if kind == "learning_rate" and st["first"] else r / np.sqrt(total + eps)
        out = {k: _store(-lr * eta * _f64(gk), w[k]) for k, gk in g.items()}
        return out, {"x0": st["x0"], "r": r, "sum": total, "first": False}

    return RefTransform(init, update)


def ref_dowg(learning_rate=1.0, init_estim_sq_dist=None, eps=1e-4, weight_decay=None) -> RefTransform:
    """Khaled et al. 2023: r^2 = max(r^2, ||x - x_0||^2); v += r^2 ||g||^2; eta = r^2 / (sqrt(v) + eps)."""
    lr, eps = hp(learning_rate), hp(eps)
    start = hp(eps if init_estim_sq_dist is None else init_estim_sq_dist)

    def update(g, st, w):
        if weight_decay is not None:
            g = {k: _f64(gk) + hp(weight_decay) * _f64(w[k]) for k, gk in g.items()}
        r2 = max(st["r2"], _sq_norm({k: _f64(st["x0"][k]) - _f64(w[k]) for k in w}))
        v = st["v"] + r2 * _sq_norm(g)
        eta = r2 / (np.sqrt(v) + eps)
        return {k: _store(-lr * eta * _f64(gk), w[k]) for k, gk in g.items()}, {"x0": st["x0"], "r2": r2, "v": v}

    return RefTransform(lambda w: {"x0": _copy(w), "r2": start, "v": 0.0}, update)


def ref_momo(value_fn, learning_rate=1.0, beta=0.9, lower_bound=0.0, weight_decay=0.0) -> RefTransform:
    """Schaipp et al. 2023, Algorithm 1: tau = min(lr, max(h, 0) / ||d||^2), x <- x/(1+lr wd) - tau d."""
    beta, lb, wd = hp(beta), hp(lower_bound), hp(weight_decay)

    def update(g, st, w):
        k_step = st["t"]
        b = 0.0 if k_step == 0 else beta
        f = b * st["f"] + (1 - b) * hp(value_fn(k_step))
        d = {k: _store(b * _f64(st["d"][k]) + (1 - b) * _f64(gk), st["d"][k]) for k, gk in g.items()}
        gamma = b * st["gamma"] + (1 - b) * _vdot(g, w)
        norm, iprod = _sq_norm(d), _vdot(d, w)
        alpha = _value(learning_rate, k_step)
        h = (1 + alpha * wd) * (f - lb - gamma) + iprod
        tau = 0.0 if norm <= np.finfo(float).eps else min(alpha, max(h, 0.0) / norm)
        out = {k: _store(-(alpha * wd) / (1 + alpha * wd) * _f64(w[k]) - tau * _f64(d[k]), gk) for k, gk in g.items()}
        return out, {"t": k_step + 1, "f": f, "d": d, "gamma": gamma}

    return RefTransform(lambda w: {"t": 0, "f": 0.0, "d": _zeros(w), "gamma": 0.0}, update)


def ref_momo_adam(value_fn, learning_rate=1e-2, b1=0.9, b2=0.999, eps=1e-8, lower_bound=0.0, weight_decay=0.0):
    """Schaipp et al. 2023, Algorithm 3: MoMo with Adam's preconditioner D = eps + sqrt(v_hat)."""
    b1, b2, eps, lb, wd = hp(b1), hp(b2), hp(eps), hp(lower_bound), hp(weight_decay)

    def update(g, st, w):
        t = st["t"] + 1
        f = b1 * st["f"] + (1 - b1) * hp(value_fn(t - 1))
        d = {k: _store(b1 * _f64(st["d"][k]) + (1 - b1) * _f64(gk), st["d"][k]) for k, gk in g.items()}
        v = {k: _store(b2 * _f64(st["v"][k]) + (1 - b2) * _f64(gk) ** 2, st["v"][k]) for k, gk in g.items()}
        precond = {k: eps + np.sqrt(_f64(v[k]) / (1 - b2**t)) for k in g}
        norm = _vdot(d, {k: _f64(d[k]) / precond[k] for k in g})
        gamma = b1 * st["gamma"] + (1 - b1) * _vdot(g, w)
        iprod = _vdot(d, w)
        alpha, bc1 = _value(learning_rate, t - 1), 1 - b1**t
        h = (1 + alpha * wd) * (f - bc1 * lb - gamma) + iprod
        tau = 0.0 if norm <= np.finfo(float).eps else min(alpha / bc1, max(h, 0.0) / norm)
        out = {
            k: _store(-(alpha * wd) / (1 + alpha * wd) * _f64(w[k]) - tau * _f64(d[k]) / precond[k], gk)
            for k, gk in g.items()
        }
        return out, {"t": t, "f": f, "d": d, "v": v, "gamma": gamma}

    return RefTransform(lambda w: {"t": 0, "f": 0.0, "d": _zeros(w), "v": _zeros(w), "gamma": 0.0}, update)


def ref_mechanize(base: RefTransform, weight_decay=1e-2, eps=1e-8, s_init=1e-6, num_betas=6) -> RefTransform:
    """Cutkosky, Defazio & Mehta 2023, Algorithm 1, in Optax's sign conventions."""
    wd, eps, s_init = hp(weight_decay), hp(eps), hp(s_init)
    betas = np.array([1 - 0.1**i for i in range(1, num_betas + 1)])

    def init(w):
        zeros = np.zeros(num_betas)
        s = np.full(num_betas, s_init)
        return {"base": base.init(w), "r": zeros, "m": zeros, "v": zeros, "s": s, "x0": _copy(w)}

    def update(g, st, w):
        base_u, base_state = base.update(g, st["base"], w)
        s_sum = float(np.sum(st["s"]))
        grad_norm, param_norm = np.sqrt(_sq_norm(g)), np.sqrt(_sq_norm(w))
        decayed = {k: _f64(gk) + wd * s_sum * grad_norm / (param_norm + eps) * _f64(w[k]) for k, gk in g.items()}
        delta = {k: (_f64(st["x0"][k]) - _f64(w[k])) / (s_sum + eps) for k in w}
        h = _vdot(decayed, delta)
        clipped = np.clip(h, -st["m"], st["m"])
        m = np.maximum(betas * st["m"], abs(h) + eps)
        v = betas**2 * st["v"] + h * h
        r = betas * st["r"] + clipped * st["s"]
        s = (s_init / num_betas * m + np.maximum(r, 0.0)) / (np.sqrt(v) + eps)
        total = float(np.sum(s))
        out = {
            k: _store(_f64(st["x0"][k]) - total * (delta[k] - _f64(base_u[k])) - _f64(w[k]), gk) for k, gk in g.items()
        }
        return out, {"base": base_state, "r": r, "m": m, "v": v, "s": s, "x0": st["x0"]}

    return RefTransform(init, update)


def ref_sophia(learning_rate, b1=0.965, b2=0.99, eps=1e-8, weight_decay=1e-4, gamma=0.01, clip_threshold=1.0,
               update_interval=10, hessian_diagonal=lambda w: w * w) -> RefTransform:  # fmt: skip
    """Liu et al. 2023, Algorithm 3; ``hessian_diagonal(w)`` is the exact diagonal (the rows use a
    separable loss, whose diagonal Hessian Hutchinson's estimator returns exactly)."""
    lr, b1, b2, eps, wd, gamma = hp(learning_rate), hp(b1), hp(b2), hp(eps), hp(weight_decay), hp(gamma)

    def update(g, st, w):
        t = st["t"] + 1
        m = {k: _store(b1 * _f64(st["m"][k]) + (1 - b1) * _f64(gk), st["m"][k]) for k, gk in g.items()}
        out, h = {}, {}
        for k, gk in g.items():
            u = _f64(m[k]) / (1 - b1**t) / np.maximum(gamma * _f64(st["h"][k]), eps)
            if clip_threshold is not None:
                u = np.clip(u, -hp(clip_threshold), hp(clip_threshold))
            out[k] = _store(-lr * (u + wd * _f64(w[k])), gk)
            fresh = (t - 1) % update_interval == 0
            diagonal = hessian_diagonal(_f64(w[k]))
            h[k] = _store(b2 * _f64(st["h"][k]) + (1 - b2) * diagonal, st["h"][k]) if fresh else st["h"][k]
        return out, {"t": t, "m": m, "h": h}

    return RefTransform(lambda w: {"t": 0, "m": _zeros(w), "h": _zeros(w)}, update)


def ref_normalize() -> RefTransform:
    """u -> u / ||u|| (global l2 norm over all leaves)."""

    def update(g, st, w):
        norm = np.sqrt(_sq_norm(g))
        return {k: _store(_f64(x) / norm if norm > 0 else _f64(x), x) for k, x in g.items()}, st

    return RefTransform(lambda w: None, update)


def ref_sam(optimizer: RefTransform, adv_optimizer: RefTransform, sync_period=2, reset_state=True) -> RefTransform:
    """Foret et al. 2021 in Optax's transparent form: sync_period - 1 ascent steps, then the outer step
    taken from the cached point."""

    def init(w):
        return {"k": 0, "opt": optimizer.init(w), "adv": adv_optimizer.init(w), "cache": _copy(w)}

    def update(g, st, y):
        first, last = st["k"] == 0, st["k"] == sync_period - 1
        adv_u, adv_state = adv_optimizer.update(g, st["adv"], y)
        opt_u, opt_state = optimizer.update(g, st["opt"], st["cache"])
        if last:
            out = {k: _store(_f64(st["cache"][k]) - _f64(y[k]) + _f64(opt_u[k]), gk) for k, gk in g.items()}
            adv_state = adv_optimizer.init(y) if reset_state else st["adv"]
        else:
            out = {k: _store(-_f64(adv_u[k]), gk) for k, gk in g.items()}
            opt_state = st["opt"]
        cache = _copy(y) if first else st["cache"]
        return out, {"k": (st["k"] + 1) % sync_period, "opt": opt_state, "adv": adv_state, "cache": cache}

    return RefTransform(init, update)


def ref_reduce_on_plateau(value_fn, factor=0.1, patience=10, rtol=1e-4, atol=0.0, cooldown=0, accumulation_size=1,
                          min_scale=0.0) -> RefTransform:  # fmt: skip
    """Scale the updates by a factor that drops when the windowed mean loss stops improving."""
    factor, rtol, atol, min_scale = hp(factor), hp(rtol), hp(atol), hp(min_scale)

    def init(w):
        return {"step": 0, "scale": 1.0, "best": np.inf, "plateau": 0, "cooldown": 0, "count": 0, "avg": 0.0}

    def update(g, st, w):
        st = dict(st)
        value = float(np.float32(value_fn(st["step"])))
        st["step"] += 1
        st["avg"] = (st["count"] * st["avg"] + value) / (st["count"] + 1)
        st["count"] += 1
        if st["count"] == accumulation_size:
            improved = st["avg"] < (1 - rtol) * st["best"] - atol
            if improved:
                st["best"] = st["avg"]
            plateau = 0 if improved else st["plateau"] + 1
            if st["cooldown"] > 0:
                st["plateau"], st["cooldown"] = 0, st["cooldown"] - 1
            elif plateau == patience:
                st["scale"], st["plateau"], st["cooldown"] = max(st["scale"] * factor, min_scale), 0, cooldown
            else:
                st["plateau"], st["cooldown"] = plateau, 0
            st["count"], st["avg"] = 0, 0.0
        return {k: _store(st["scale"] * _f64(x), x) for k, x in g.items()}, st

    return RefTransform(init, update)


# ----------------------------------------------------------------------------------------------
# GaLore (Zhao et al. 2024) with an Adam base.


def ref_galore(learning_rate, rank=128, update_proj_gap=200, scale=1.0, weight_decay=0.0, b1=0.9, b2=0.999, eps=1e-8):
    """P = top-r singular vectors (U for m >= n, V otherwise) every gap steps; Adam on P^T G or G P."""
    lr, scale, wd = hp(learning_rate), hp(scale), hp(weight_decay)
    b1, b2, eps = hp(b1), hp(b2), hp(eps)

    def init(w):
        return {"t": 0, "m": {}, "v": {}, "p": {}}

    def update(g, st, w):
        t = st["t"] + 1
        out, m_new, v_new, p_new = {}, {}, {}, {}
        for k, gk in g.items():
            g64 = _f64(gk)
            if g64.ndim == 2:
                rows, cols = g64.shape
                left, r = rows >= cols, min(rank, rows, cols)
                p = st["p"].get(k)
                if (t - 1) % update_proj_gap == 0:
                    u_, _, vh = np.linalg.svd(g64, full_matrices=False)
                    p = u_[:, :r] if left else vh[:r, :].T
                low = p.T @ g64 if left else g64 @ p
            else:
                p, low = None, g64
            m0 = st["m"].get(k, np.zeros_like(low))
            v0 = st["v"].get(k, np.zeros_like(low))
            m_new[k], v_new[k], direction = _adam_direction(low, m0, v0, t, b1, b2, eps, 0.0, False)
            if p is not None:
                direction = scale * (p @ direction if left else direction @ p.T)
                p_new[k] = p
            out[k] = _store(-lr * (direction + wd * _f64(w[k])), gk)
        return out, {"t": t, "m": m_new, "v": v_new, "p": p_new}

    return RefTransform(init, update)


def ref_hutchinson(hessian_diagonal: Callable[[np.ndarray], np.ndarray], factor: float) -> RefTransform:
    """Hutchinson's estimate for a separable loss (exact: diag(H)), scaled: u = factor * diag(H)(w)."""

    def update(g, st, w):
        return {k: _store(hp(factor) * hessian_diagonal(_f64(w[k])), x) for k, x in g.items()}, st

    return RefTransform(lambda w: None, update)


def ref_scaled(inner: RefTransform, factor: float) -> RefTransform:
    """``inner`` followed by u -> factor * u."""

    def update(g, st, w):
        u, st = inner.update(g, st, w)
        return {k: _store(hp(factor) * _f64(x), x) for k, x in u.items()}, st

    return RefTransform(inner.init, update)


__all__: Sequence[str] = [name for name in dir() if name.startswith("ref_")] + ["newton_schulz", "ref_identity"]
