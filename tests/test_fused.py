"""The fused optimizers give the chain's numbers bit for bit and the chain's state; the benchmark runs.

Each case runs a few steps of the plain chain and of the fused transform side by side, under one
jitted ``lax.scan`` each (compiled once per case), and compares updates, parameters and every
state leaf exactly. The plain chain is itself checked against NumPy references in the
transform/optimizer tests; here the fused path must not move a single bit from it.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from optcompose.base import apply_updates, chain, identity
from optcompose.fused import fuse
from optcompose.hyperparams import get_hyperparams, set_hyperparams
from optcompose.transforms.adaptive import scale_by_adam
from optcompose.transforms.decay import add_decayed_weights
from optcompose.transforms.momentum import trace
from optcompose.transforms.scaling import scale_by_learning_rate
from optcompose.transforms.trust_ratio import scale_by_trust_ratio

STEPS = 4


def _params(dtype=jnp.float32):
    rng = np.random.default_rng(0)
    tree = {
        "dense": {"kernel": rng.standard_normal((5, 3)), "bias": np.zeros(3)},
        "scale": rng.standard_normal((7,)),
        "scalar": np.float32(0.5),
        "empty": None,
    }
    return jax.tree.map(lambda x: jnp.asarray(x, dtype), tree)


def _grads(params, step):
    return jax.tree.map(lambda p: (jnp.sin(p.astype(jnp.float32) * (step + 1.7)) * 0.3).astype(p.dtype), params)


def _run(tx, params):
    def body(carry, step):
        p, s = carry
        u, s = tx.update(_grads(p, step), s, p)
        return (apply_updates(p, u), s), u

    @jax.jit
    def run(p):
        return jax.lax.scan(body, (p, tx.init(p)), jnp.arange(STEPS))

    return run(params)


def _assert_same(plain, fused, rtol=0.0):
    assert jax.tree.structure(plain) == jax.tree.structure(fused)
    for a, b in zip(jax.tree.leaves(plain), jax.tree.leaves(fused), strict=True):
        assert a.dtype == b.dtype
        if rtol:
            np.testing.assert_allclose(np.asarray(a, np.float64), np.asarray(b, np.float64), rtol=rtol, atol=1e-9)
        else:
            np.testing.assert_array_equal(np.asarray(a, np.float64), np.asarray(b, np.float64))


def _warmup_cosine(count):
    return 0.1 * jnp.minimum(1.0, (count + 1) / 3.0) * jnp.cos(count / 10.0)


ADAM_CASES = {
    "adamw": (dict(learning_rate=0.1, weight_decay=0.05), jnp.float32),
    "nadam_eps_root_bf16_moments": (
        dict(learning_rate=0.1, nesterov=True, eps_root=1e-6, mu_dtype=jnp.bfloat16, nu_dtype=jnp.bfloat16),
        jnp.float32,
    ),
    "adamw_bf16_params": (dict(learning_rate=0.1, weight_decay=0.05), jnp.bfloat16),
    "adamw_schedules": (dict(learning_rate=_warmup_cosine, b1=lambda c: 0.9 - 0.1 / (c + 1.0), weight_decay=0.05),
                        jnp.float32),
}


def _adam_parts(learning_rate, b1=0.9, b2=0.999, eps=1e-8, eps_root=0.0, mu_dtype=None, weight_decay=None,
                nesterov=False, nu_dtype=None):
    parts = [scale_by_adam(b1, b2, eps, eps_root, mu_dtype, nesterov=nesterov, nu_dtype=nu_dtype)]
    if weight_decay is not None:
        parts.append(add_decayed_weights(weight_decay))
    return (*parts, scale_by_learning_rate(learning_rate))


@pytest.mark.parametrize("name", list(ADAM_CASES))
def test_fused_adam_matches_chain_bitwise(name):
    kwargs, dtype = ADAM_CASES[name]
    params = _params(dtype)
    parts = _adam_parts(**kwargs)
    _assert_same(_run(chain(*parts), params), _run(fuse(*parts), params))


@pytest.mark.parametrize("momentum,nesterov", [(None, False), (0.9, False), (0.8, True)])
def test_fused_sgd_matches_chain_bitwise(momentum, nesterov):
    params = _params()
    parts = (trace(momentum, nesterov) if momentum is not None else identity(), scale_by_learning_rate(0.1))
    _assert_same(_run(chain(*parts), params), _run(fuse(*parts), params))


def test_fused_lamb_matches_chain_to_rounding():
    # The per-leaf norms are sums whose order XLA picks per fusion, so the trust ratio may differ
    # from the chain's in its last bit; over four steps that stays within a few ulps.
    params = _params()
    parts = (scale_by_adam(eps=1e-6), add_decayed_weights(0.01), scale_by_trust_ratio(), scale_by_learning_rate(0.1))
    _assert_same(_run(chain(*parts), params), _run(fuse(*parts), params), rtol=4e-6)


def test_fused_eager_update_matches_chain_and_hyperparams_stay_settable():
    params = _params()
    parts = _adam_parts(0.1, weight_decay=0.05)
    plain, fused = chain(*parts), fuse(*parts)
    state_p, state_f = plain.init(params), fused.init(params)
    _assert_same(state_p, state_f)
    state_p = set_hyperparams(state_p, learning_rate=0.02, b1=0.5)
    state_f = set_hyperparams(state_f, learning_rate=0.02, b1=0.5)
    grads = _grads(params, 0)
    _assert_same(plain.update(grads, state_p, params), fused.update(grads, state_f, params))
    assert float(get_hyperparams(state_f)["learning_rate"]) == pytest.approx(0.02)


def test_fused_bare_array_and_empty_tree():
    parts = _adam_parts(0.1, weight_decay=0.01)
    plain, fused = chain(*parts), fuse(*parts)
    for params in (jnp.arange(3.0), {}):
        _assert_same(plain.update(params, plain.init(params), params), fused.update(params, fused.init(params), params))


def test_fused_errors_match_the_chain():
    params = _params()
    fused = fuse(*_adam_parts(0.1, weight_decay=0.01))
    state = fused.init(params)
    with pytest.raises(ValueError, match="needs params"):
        fused.update(params, state)
    with pytest.raises(ValueError, match="tuple of 3 states"):
        fused.update(params, state[:2], params)
    smaller = {k: v for k, v in params.items() if k != "scale"}
    with pytest.raises(ValueError, match=r"\['scale'\]"):
        fused.update(smaller, state, smaller)
    bad = {**params, "scale": jnp.ones(7, jnp.int32)}
    with pytest.raises(TypeError, match=r"updates\['scale'\] has dtype int32"):
        fused.update(bad, state, params)
    with pytest.raises(TypeError, match=r"params\['scale'\] has dtype int32"):
        fused.update(params, state, bad)
    with pytest.raises(ValueError, match=r"\['scale'\] has shape"):
        fused.update({**params, "scale": jnp.ones(6)}, state, params)


def test_same_shaped_leaves_share_one_traced_leaf_function():
    params = {f"w{i}": jnp.full((4,), float(i)) for i in range(6)} | {"b": jnp.ones((2, 3))}
    fused = fuse(*_adam_parts(0.1, weight_decay=0.01))
    jaxpr = jax.make_jaxpr(lambda p, s: fused.update(p, s, p))(params, fused.init(params))
    calls = [eqn for eqn in jaxpr.jaxpr.eqns if eqn.params.get("name") == "leaf_chain"]
    assert len(calls) == 7
    assert len({id(eqn.params["jaxpr"]) for eqn in calls}) == 2  # one per leaf signature


@pytest.mark.parametrize(
    "make",
    [
        lambda: __import__("optcompose").clip_by_global_norm(1.0),
        lambda: __import__("optcompose").adamw(0.1),
        lambda: __import__("optcompose").add_decayed_weights(0.1, mask={"a": True}),
        lambda: __import__("optcompose").stateless(lambda u, p: u),
    ],
    ids=["global_norm", "nested_chain", "masked", "stateless"],
)
def test_fuse_refuses_transforms_that_are_not_leafwise(make):
    # Fusing clip_by_global_norm would clip each leaf by its own norm: silently wrong numbers.
    with pytest.raises(TypeError, match="leaf by leaf"):
        fuse(make(), scale_by_learning_rate(0.1))
