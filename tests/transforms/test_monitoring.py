"""snapshot, monitor and measure_with_ema against Optax and a NumPy EMA.

No torch counterpart. Rows: ``snapshot_adam`` (Optax twin) and ``monitor_adam`` (no Optax twin in
a ``lax.scan``: Optax's ``monitor`` state is ``{}`` after ``init`` and changes structure).
"""

from __future__ import annotations

import inspect
import types

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from optcompose._base import chain
from optcompose._tree import global_norm
from optcompose.optimizers._classic import sgd
from optcompose.transforms._clipping import clip_by_global_norm
from optcompose.transforms._monitoring import MonitorState, SnapshotState, measure_with_ema, monitor, snapshot


def test_signatures_and_states_match_optax():
    for ours, theirs in ((snapshot, optax.snapshot), (monitor, optax.monitor),
                         (measure_with_ema, optax.measure_with_ema)):  # fmt: skip
        a, b = inspect.signature(ours).parameters, inspect.signature(theirs).parameters
        assert [(n, p.kind, p.default) for n, p in a.items()] == [(n, p.kind, p.default) for n, p in b.items()]
    assert SnapshotState._fields == optax.SnapshotState._fields
    assert MonitorState._fields == optax.MonitorState._fields


def _steps(tx, params, n, jit):
    f = lambda x: jnp.sum(x**2)
    state, out = tx.init(params), []
    update = jax.jit(tx.update) if jit else tx.update
    for _ in range(n):
        u, state = update(jax.grad(f)(params), state)
        params = params + u
        out.append(state)
    return out


def test_snapshot_and_monitor_match_optax_docstring_numbers():
    """Optax's examples: norm before clipping, and an EMA of "was it clipped"."""
    p = jnp.array([1.0, 2.0, 3.0])
    ours = chain(sgd(0.1, momentum=0.9), snapshot("norm_before_clip", global_norm), clip_by_global_norm(0.05))
    theirs = optax.chain(optax.sgd(0.1, momentum=0.9), optax.snapshot("norm_before_clip", optax.tree.norm),
                         optax.clip_by_global_norm(0.05))  # fmt: skip
    a, b = _steps(ours, p, 2, jit=True), _steps(theirs, p, 2, jit=False)
    np.testing.assert_allclose([float(s[1].measurement["norm_before_clip"]) for s in a],
                               [float(s[1].measurement["norm_before_clip"]) for s in b], rtol=1e-6)  # fmt: skip
    np.testing.assert_allclose(float(a[0][1].measurement["norm_before_clip"]), 0.748, atol=5e-4)

    def make(lib, norm):
        return lib.chain(lib.sgd(0.1, momentum=0.9), lib.monitor({
            "norm_before_clip": norm,
            "is_clipped_ema": lib.measure_with_ema(lambda x: norm(x) > 1.0, decay=0.9),
        }), lib.clip_by_global_norm(1.0))  # fmt: skip

    import optcompose.transforms as ot

    mine = types.SimpleNamespace(chain=ot.chain, monitor=ot.monitor, measure_with_ema=ot.measure_with_ema,
                                 clip_by_global_norm=ot.clip_by_global_norm, sgd=sgd)  # fmt: skip

    for jit in (True, False):
        a = _steps(make(mine, global_norm), p, 4, jit)
        b = _steps(make(optax, optax.tree.norm), p, 4, jit=False)
        for x, y in zip(a, b, strict=True):
            for name in ("norm_before_clip", "is_clipped_ema"):
                np.testing.assert_allclose(float(x[1].measurements[name]), float(y[1].measurements[name]), rtol=1e-6)
    assert float(a[1][1].measurements["is_clipped_ema"]) == pytest.approx(0.526, abs=1e-3)  # Optax's docstring


def test_monitor_state_structure_is_stable_and_ema_matches_numpy():
    tx = monitor({"n": global_norm, "ema": measure_with_ema(global_norm, 0.8, debias=False)})
    w = {"a": jnp.ones(3), "b": jnp.zeros((2, 2))}
    state = tx.init(w)
    assert set(state.measurements) == {"n", "ema"}  # present from init on (Optax: {} until the first update)
    grads = jnp.asarray(np.random.default_rng(0).normal(size=(20, 7)), jnp.float32)

    def step(s, g):
        u = {"a": g[:3], "b": g[3:].reshape(2, 2)}
        out, s = tx.update(u, s, w)
        return s, (out, s.measurements["ema"])

    final, (outs, emas) = jax.jit(lambda: jax.lax.scan(step, state, grads))()
    np.testing.assert_array_equal(outs["a"], grads[:, :3])  # updates pass unchanged
    ema, want = 0.0, []
    for g in np.asarray(grads, np.float64):
        ema = 0.8 * ema + 0.2 * np.linalg.norm(g)
        want.append(ema)
    np.testing.assert_allclose(np.asarray(emas), want, rtol=1e-5)
    assert jax.tree.structure(final) == jax.tree.structure(state)
    # bfloat16 updates and bool measurements.
    tx = monitor({"big": measure_with_ema(lambda u: jnp.max(jnp.abs(u)) > 1.0, 0.5)})
    h = jnp.array([2.0, 0.5], jnp.bfloat16)
    out, s = tx.update(h, tx.init(h))
    assert out.dtype == jnp.bfloat16 and s.measurements["big"].dtype == jnp.float32
    assert float(s.measurements["big"]) == 1.0


def test_bad_arguments():
    with pytest.raises(TypeError, match="measure_name"):
        snapshot(3, global_norm)
    with pytest.raises(TypeError, match="measure"):
        snapshot("x", 3)
    with pytest.raises(TypeError, match="measures"):
        monitor([global_norm])
    with pytest.raises(TypeError, match="'x'"):
        monitor({"x": 3})
    with pytest.raises(ValueError, match="decay"):
        measure_with_ema(global_norm, 1.5)
