"""NumPy reference implementations, written from the papers, and the shared trajectory harness.

The references work on a flat ``{path: ndarray}`` view of the parameters (``path`` as
``jax.tree_util.keystr`` writes it). Every formula is evaluated in float64; results and states are
then stored in each leaf's own dtype, which is what the library promises (compute wide, store in
the parameter's dtype), so bfloat16/float16 leaves round at the same places. Numeric
hyperparameters are rounded to float32 first, because the library keeps them as float32 data.

Nothing here calls optcompose: the references are independent of the code under test. The harness
at the bottom runs an optcompose transform (jitted ``lax.scan``, eager loop, or ``pmap``) on the
same pytree and the same gradient sequence, so the two trajectories can be compared step by step.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from flax.core import FrozenDict

Leaves = dict[str, np.ndarray]
Rule = Callable[[str, np.ndarray], Any]
"""A function of (path, leaf): a mask rule returns a bool, a label rule returns a label."""

STEPS = 20
GRAD_PARAM_COUPLING = 0.125
"""Gradients are ``noise_t + 0.125 * w``: a power of two, so the product is exact in any dtype."""


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
    if nesterov:
        m_hat = b1 * m / (1 - b1 ** (t + 1)) + (1 - b1) * g / (1 - b1**t)
    else:
        m_hat = m / (1 - b1**t)
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

    return RefTransform(lambda w: (0, {k: np.zeros_like(x) for k, x in w.items()}, {k: np.zeros_like(x) for k, x in w.items()}), update)


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
    return RefTransform(lambda w: None, lambda g, st, w: ({k: _store(np.clip(_f64(v), -bound, bound), v) for k, v in g.items()}, st))


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
    return RefTransform(lambda w: None, lambda g, st, w: ({k: _store(fn(_f64(v), _f64(w[k])), v) for k, v in g.items()}, st))


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


def ref_sgd(learning_rate: float, momentum: float | None = None, nesterov: bool = False) -> RefTransform:
    """Robbins & Monro; Polyak momentum v = m v + g, w -= lr v; Nesterov w -= lr (g + m v)."""
    lr = hp(learning_rate)
    m = None if momentum is None else hp(momentum)

    def step(g, w, v, t, key, raw):
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


def ref_lars(learning_rate, weight_decay=0.0, weight_decay_mask: Rule | None = None, trust_coefficient=0.001,
             eps=0.0, trust_ratio_mask: Rule | None = None, momentum=0.9, nesterov=False) -> RefTransform:
    """You, Gitman & Ginsburg 2017, Algorithm 1: local lr = eta ||w|| / ||g + beta w||, v = m v + lr local_lr d."""
    lr, wd, coefficient, eps, m = hp(learning_rate), hp(weight_decay), hp(trust_coefficient), hp(eps), hp(momentum)

    def step(g, w, v, t, key, raw):
        d = g + wd * w if weight_decay_mask is None or weight_decay_mask(key, raw) else g
        if trust_ratio_mask is None or trust_ratio_mask(key, raw):
            d = _trust_ratio(w, d, 0.0, coefficient, eps) * d
        v = m * _f64(v) + lr * d
        return -(lr * d + m * v) if nesterov else -v, _store(v, raw)

    return _per_leaf(np.zeros_like, step)


def ref_lamb(learning_rate, b1=0.9, b2=0.999, eps=1e-6, eps_root=0.0, weight_decay=0.0, mask: Rule | None = None):
    """You et al. 2019, Algorithm 2: r = adam direction + lambda w; w -= lr ||w|| / ||r|| r."""
    lr, b1, b2, eps, eps_root, wd = hp(learning_rate), hp(b1), hp(b2), hp(eps), hp(eps_root), hp(weight_decay)

    def step(g, w, leaf_state, t, key, raw):
        m, v, r = _adam_direction(g, _f64(leaf_state[0]), _f64(leaf_state[1]), t, b1, b2, eps, eps_root, False)
        if mask is None or mask(key, raw):
            r = r + wd * w
        return -lr * _trust_ratio(w, r, 0.0, 1.0, 0.0) * r, (_store(m, raw), _store(v, raw))

    return _per_leaf(lambda x: (np.zeros_like(x), np.zeros_like(x)), step)


# ----------------------------------------------------------------------------------------------
# The shared test problem: a nested pytree, a gradient sequence, and the reference trajectory.


def make_params(low_precision: bool = False) -> dict[str, Any]:
    """Scalar, vector, matrix and 3-D leaves in a dict, a FrozenDict and an nnx.State, plus a None.

    ``low_precision`` stores the kernel in bfloat16 and the conv weight in float16. The bias starts
    at zero, which exercises the zero-norm branch of the trust ratio on the first step.
    """
    rng = np.random.default_rng(0)
    kernel_dtype = jnp.bfloat16 if low_precision else jnp.float32
    conv_dtype = jnp.float16 if low_precision else jnp.float32
    return {
        "dense": {
            "kernel": jnp.asarray(rng.uniform(-1, 1, (3, 4)), kernel_dtype),
            "bias": jnp.zeros((4,), jnp.float32),
        },
        "scale": jnp.asarray(0.7, jnp.float32),
        "conv": FrozenDict({"w": jnp.asarray(rng.uniform(-1, 1, (2, 3, 2)), conv_dtype)}),
        "norm": nnx.State({"gamma": jnp.asarray(rng.uniform(0.5, 1.5, (3,)), jnp.float32)}),
        "buffers": None,
    }


def make_noise(params: Any, steps: int = STEPS, seed: int = 1) -> Any:
    """A float32 array of shape ``(steps, *leaf.shape)`` per leaf, magnitudes in [0.5, 1.5]."""
    rng = np.random.default_rng(seed)

    def draw(leaf):
        shape = (steps, *np.shape(leaf))
        return jnp.asarray(rng.choice([-1.0, 1.0], shape) * rng.uniform(0.5, 1.5, shape), jnp.float32)

    return jax.tree.map(draw, params)


def is_matrix(path: str, leaf: Any) -> bool:
    return len(np.shape(leaf)) >= 2


def group_of(path: str, leaf: Any) -> str:
    return "dense" if "dense" in path else "rest"


def tree_rule(rule: Rule) -> Callable[[Any], Any]:
    """The same rule as a function of a parameter pytree (as masks and labels are given)."""
    return lambda params: jax.tree_util.tree_map_with_path(lambda p, x: rule(jax.tree_util.keystr(p), x), params)


def explicit_mask(params: Any) -> Any:
    """An explicit pytree of Python bools, same containers as params (FrozenDict, nnx.State, None)."""
    return jax.tree_util.tree_map_with_path(lambda p, x: bool(is_matrix(jax.tree_util.keystr(p), x)), params)


def flatten(tree: Any) -> Leaves:
    """``{keystr(path): ndarray}`` for every (non-None) leaf, dtypes kept."""
    return {jax.tree_util.keystr(path): np.asarray(leaf) for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]}


def ref_gradient(w: np.ndarray, noise: np.ndarray) -> np.ndarray:
    """noise + 0.125 w in float32, stored in w's dtype (bitwise what the harness computes)."""
    w = np.asarray(w)
    return (noise.astype(np.float32) + np.float32(GRAD_PARAM_COUPLING) * w.astype(np.float32)).astype(w.dtype)


def reference_trajectory(ref: RefTransform, params: Any, noise: Any) -> list[Leaves]:
    """The parameters after each step, from the reference: w_{t+1} = w_t + u_t in w's dtype."""
    w, noise = flatten(params), flatten(noise)
    steps = next(iter(noise.values())).shape[0]
    state = ref.init(w)
    trajectory = []
    for t in range(steps):
        g = {k: ref_gradient(w[k], noise[k][t]) for k in w}
        u, state = ref.update(g, state, w)
        w = {k: _store(_f64(w[k]) + _f64(u[k]), w[k]) for k in w}
        trajectory.append(w)
    return trajectory


# ----------------------------------------------------------------------------------------------
# The optcompose side: one compiled lax.scan per transform (or a plain Python loop, or pmap).


def _gradient(w: jax.Array, noise: jax.Array) -> jax.Array:
    return (noise.astype(jnp.float32) + GRAD_PARAM_COUPLING * w.astype(jnp.float32)).astype(w.dtype)


def _step(tx: Any, apply_updates: Callable[[Any, Any], Any]):
    def step(carry, noise_t):
        params, state = carry
        grads = jax.tree.map(_gradient, params, noise_t)
        updates, state = tx.update(grads, state, params)
        params = apply_updates(params, updates)
        return (params, state), params

    return step


def _replicate(tree: Any, devices: int) -> Any:
    return jax.tree.map(lambda x: jnp.broadcast_to(x, (devices, *jnp.shape(x))), tree)


def run_many(txs: list[Any], problems: list[tuple[Any, Any]], mode: str = "jit", devices: int = 8) -> list[tuple[Any, Any]]:
    """Runs each transform on its (params, noise); returns [(parameters after each step, final state)].

    ``mode``: ``"jit"`` (all the ``lax.scan`` loops in one jitted program, so one compilation
    serves every case), ``"eager"`` (a Python loop per transform, nothing jitted by us) or
    ``"pmap"`` (the same program under ``jax.pmap`` on ``devices`` devices, with replicated
    params, state and gradients; every output then has a leading replica axis).
    """
    from optcompose.base import apply_updates

    steps = [_step(tx, apply_updates) for tx in txs]
    states = [tx.init(params) for tx, (params, _) in zip(txs, problems, strict=True)]
    if mode == "eager":
        results = []
        for step, state, (params, noise) in zip(steps, states, problems, strict=True):
            carry, outputs = (params, state), []
            for t in range(jax.tree.leaves(noise)[0].shape[0]):
                carry, out = step(carry, jax.tree.map(lambda n, t=t: n[t], noise))
                outputs.append(out)
            results.append((jax.tree.map(lambda *xs: jnp.stack(xs), *outputs), carry[1]))
        return results

    def scans(all_params, all_states, all_noise):
        results = []
        for step, params, state, noise in zip(steps, all_params, all_states, all_noise, strict=True):
            (_, final_state), trajectory = jax.lax.scan(step, (params, state), noise)
            results.append((trajectory, final_state))
        return results

    args = ([params for params, _ in problems], states, [noise for _, noise in problems])
    if mode == "jit":
        return jax.jit(scans)(*args)
    if mode == "pmap":
        return jax.pmap(scans)(*_replicate(args, devices))
    raise ValueError(f"mode must be 'jit', 'eager' or 'pmap', got {mode!r}")


def run_trajectory(tx: Any, params: Any, noise: Any, mode: str = "jit", devices: int = 8) -> tuple[Any, Any]:
    """``run_many`` for one transform: (parameters after each step, final state)."""
    return run_many([tx], [(params, noise)], mode, devices)[0]


def assert_trajectory_close(trajectory: Any, reference: list[Leaves], rtol: float, atol: float, label: str = "") -> None:
    """Compares every leaf at every step; the message names the leaf and the first bad step."""
    got = flatten(trajectory)
    assert set(got) == set(reference[0]), f"{label}: leaves {sorted(got)} vs {sorted(reference[0])}"
    for key, values in got.items():
        want = np.stack([step[key] for step in reference])
        assert values.dtype == want.dtype, f"{label}{key}: dtype {values.dtype}, expected {want.dtype}"
        assert values.shape == want.shape, f"{label}{key}: shape {values.shape}, expected {want.shape}"
        got64, want64 = _f64(values), _f64(want)
        bad = ~np.isclose(got64, want64, rtol=rtol, atol=atol)
        if bad.any():
            first = int(np.argwhere(bad)[0][0])
            np.testing.assert_allclose(
                got64[first], want64[first], rtol=rtol, atol=atol, err_msg=f"{label}{key} at step {first + 1}"
            )


class Case(NamedTuple):
    """One trajectory test: an optcompose transform, its reference, and the pytree's precision."""

    name: str
    make: Callable[[], Any]
    reference: Callable[[], RefTransform]
    low_precision: bool = False


F32_TOL = {"rtol": 2e-5, "atol": 2e-6}
LOW_PRECISION_TOL = {"rtol": 2e-2, "atol": 2e-2}
_PROBLEMS: dict[bool, tuple[Any, Any]] = {}
_REFERENCES: dict[str, list[Leaves]] = {}


def problem(low_precision: bool) -> tuple[Any, Any]:
    """The shared (params, noise) pair, built once per precision."""
    if low_precision not in _PROBLEMS:
        params = make_params(low_precision)
        _PROBLEMS[low_precision] = (params, make_noise(params))
    return _PROBLEMS[low_precision]


_RUNS: dict[tuple[tuple[str, ...], str], dict[str, tuple[Any, Any]]] = {}


def run_cases(cases: list[Case], mode: str) -> dict[str, tuple[Any, Any]]:
    """``run_many`` over a table of cases, once per (table, mode) per session."""
    key = (tuple(case.name for case in cases), mode)
    if key not in _RUNS:
        results = run_many([case.make() for case in cases], [problem(case.low_precision) for case in cases], mode)
        _RUNS[key] = {case.name: result for case, result in zip(cases, results, strict=True)}
    return _RUNS[key]


def check_case(case: Case, mode: str, table: list[Case] | None = None) -> None:
    """Compares ``case`` run in ``mode`` with its reference at every step (every replica under pmap).

    ``table`` is the list of cases compiled together with ``case`` (one program for all of them).
    """
    params, noise = problem(case.low_precision)
    trajectory, state = run_cases(table or [case], mode)[case.name]
    if case.name not in _REFERENCES:
        _REFERENCES[case.name] = reference_trajectory(case.reference(), params, noise)
    expected = _REFERENCES[case.name]
    tol = LOW_PRECISION_TOL if case.low_precision else F32_TOL
    if mode == "pmap":
        replicas = jax.tree.leaves(trajectory)[0].shape[0]
        for replica in range(replicas):
            one = jax.tree.map(lambda x, replica=replica: x[replica], trajectory)
            assert_trajectory_close(one, expected, **tol, label=f"{case.name} replica {replica} ")
        trajectory = jax.tree.map(lambda x: x[0], trajectory)
    else:
        assert_trajectory_close(trajectory, expected, **tol, label=f"{case.name} ")
    # The trajectory keeps the parameters' containers, including the None leaf.
    assert jax.tree.structure(jax.tree.map(lambda x: x[0], trajectory)) == jax.tree.structure(params)
    for leaf in jax.tree.leaves(state):
        assert np.all(np.isfinite(np.asarray(leaf, np.float64))), f"{case.name}: non-finite state"
