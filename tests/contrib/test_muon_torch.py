"""muon_torch: torch.optim.Muon step by step (its bfloat16 iteration and a float32 one), a NumPy reference.

Both frameworks start from the same float32 matrices in torch's ``(out, in)`` layout (ours with
``MuonDimensionNumbers(1, 0)``), get ``g_t = noise_t + 0.125 * w_t`` from their own parameters and
take 20 steps; every parameter is compared after every step.

Tolerances, from measured rounding (6 seeds x 20 steps x 3 matrices, lr = 0.02):

* ``ns_dtype=bfloat16`` (default) against unmodified torch: both round the iterate to bfloat16 at
  the same points from float32 products, so most coordinates agree to float32 round-off (~5e-7);
  where the two float32 accumulations straddle a bfloat16 rounding boundary one entry flips by a
  bfloat16 ulp and the flip spreads through the remaining Newton–Schulz steps. Measured: 3 % of the
  coordinates differ by more than 1e-5, the largest difference 5.0e-4 = 0.025 lr. Asserted: at
  least 90 % within 2e-6 at every step, all within 0.05 lr.
* ``ns_dtype=None`` against torch with its bfloat16 cast disabled (its own code in float32):
  float32 round-off only; asserted ``rtol = 1e-5, atol = 2e-6``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import optcompose as oc
from optcompose.contrib import MuonDimensionNumbers
from optcompose.contrib._muon_torch import OrthogonalizedMomentumState, muon_torch, scale_by_orthogonalized_momentum

torch = pytest.importorskip("torch")

SHAPES = {"wide": (4, 6), "tall": (6, 3), "square": (5, 5)}
STEPS = 20
TORCH_LAYOUT = MuonDimensionNumbers(reduction_axis=1, output_axis=0)

CONFIGS = {
    "defaults": {"lr": 0.02},
    "plain_match_rms_wd": {"lr": 0.02, "nesterov": False, "adjust_lr_fn": "match_rms_adamw", "weight_decay": 0.05},
    "coefficients_steps_eps": {
        "lr": 0.03,
        "momentum": 0.9,
        "ns_coefficients": (2.0, -1.5, 0.5),
        "ns_steps": 3,
        "eps": 1e-5,
        "adjust_lr_fn": "original",
        "weight_decay": 0.0,
    },  # fmt: skip
}


def problem(seed=0):
    rng = np.random.default_rng(seed)
    w0 = {k: rng.uniform(-1, 1, s).astype(np.float32) for k, s in SHAPES.items()}
    noise = {k: rng.standard_normal((STEPS, *s)).astype(np.float32) for k, s in SHAPES.items()}
    return w0, noise


class _Float32Iteration(torch.Tensor):
    """A tensor whose ``.bfloat16()`` is a float32 copy: torch's own Newton–Schulz code, unrounded."""

    def bfloat16(self):
        return self.as_subclass(torch.Tensor).clone()


def torch_trajectory(w0, noise, float32_iteration=False, **options):
    import torch.optim._muon as torch_muon

    original = torch_muon._zeropower_via_newtonschulz
    if float32_iteration:
        torch_muon._zeropower_via_newtonschulz = lambda g, *rest: original(
            g.as_subclass(_Float32Iteration), *rest
        ).as_subclass(torch.Tensor)
    try:
        params = {k: torch.nn.Parameter(torch.tensor(v)) for k, v in w0.items()}
        optimizer = torch.optim.Muon(list(params.values()), **options)
        out = []
        for t in range(STEPS):
            for k, p in params.items():
                p.grad = torch.tensor(noise[k][t]) + 0.125 * p.detach()
            optimizer.step()
            out.append({k: p.detach().numpy().copy() for k, p in params.items()})
        return out
    finally:
        torch_muon._zeropower_via_newtonschulz = original


def ours_trajectory(w0, noise, **options):
    tx = muon_torch(**options)
    w = {k: jnp.asarray(v) for k, v in w0.items()}

    def step(carry, noise_t):
        w, state = carry
        grads = jax.tree.map(lambda n, x: n + 0.125 * x, noise_t, w)
        updates, state = tx.update(grads, state, w)
        w = oc.apply_updates(w, updates)
        return (w, state), w

    _, trajectory = jax.jit(lambda w, n: jax.lax.scan(step, (w, tx.init(w)), n))(w, noise)
    return [{k: np.asarray(v[t]) for k, v in trajectory.items()} for t in range(STEPS)]


def _ours_options(torch_options, **extra):
    options = {("learning_rate" if k == "lr" else k): v for k, v in torch_options.items()}
    return {**options, "weight_dimension_numbers": TORCH_LAYOUT, **extra}


def numpy_trajectory(w0, noise, lr, weight_decay=0.1, momentum=0.95, nesterov=True,
                     ns_coefficients=(3.4445, -4.7750, 2.0315), eps=1e-7, ns_steps=5, adjust_lr_fn=None):  # fmt: skip
    """torch.optim.Muon's algorithm (its docs and Jordan 2024), float64, no bfloat16 rounding."""
    a, b, c = ns_coefficients
    w = {k: v.astype(np.float64) for k, v in w0.items()}
    buf = {k: np.zeros_like(v) for k, v in w.items()}
    out = []
    for t in range(STEPS):
        for k in w:
            g = noise[k][t].astype(np.float64) + 0.125 * w[k]
            buf[k] = momentum * buf[k] + (1 - momentum) * g
            x = (1 - momentum) * g + momentum * buf[k] if nesterov else buf[k]
            flip = x.shape[0] > x.shape[1]
            x = x.T if flip else x
            x = x / max(np.linalg.norm(x), eps)
            for _ in range(ns_steps):
                gram = x @ x.T
                x = a * x + (b * gram + c * gram @ gram) @ x
            o = x.T if flip else x
            rows, cols = w[k].shape  # torch's (out, in)
            if adjust_lr_fn == "match_rms_adamw":
                adjust = 0.2 * np.sqrt(max(rows, cols))
            else:
                adjust = np.sqrt(max(1, rows / cols))
            w[k] = w[k] * (1 - lr * weight_decay) - lr * adjust * o
        out.append({k: v.copy() for k, v in w.items()})
    return out


SLOW = {"coefficients_steps_eps"}
PARAMS = [pytest.param(name, marks=[pytest.mark.slow] if name in SLOW else []) for name in CONFIGS]


@pytest.mark.parametrize("name", PARAMS)
def test_matches_torch_muon_step_by_step_with_its_bfloat16_iteration(name):
    options = CONFIGS[name]
    w0, noise = problem()
    expected = torch_trajectory(w0, noise, **options)
    got = ours_trajectory(w0, noise, **_ours_options(options))
    for t in range(STEPS):
        for k in SHAPES:
            diff = np.abs(got[t][k] - expected[t][k])
            assert np.mean(diff <= 2e-6) >= 0.9, f"{name} step {t + 1} {k}: {np.mean(diff <= 2e-6):.0%} agree"
            assert diff.max() <= 0.05 * options["lr"], f"{name} step {t + 1} {k}: {diff.max():.2e}"
    assert max(np.max(np.abs(got[-1][k] - w0[k])) for k in SHAPES) > 20 * 0.05 * options["lr"] / 4  # it moved


@pytest.mark.parametrize("name", PARAMS)
def test_matches_torch_muon_float32_iteration_and_numpy(name):
    options = CONFIGS[name]
    w0, noise = problem(1)
    expected = torch_trajectory(w0, noise, float32_iteration=True, **options)
    got = ours_trajectory(w0, noise, **_ours_options(options, ns_dtype=None))
    reference = numpy_trajectory(w0, noise, **options)
    for t in range(STEPS):
        for k in SHAPES:
            np.testing.assert_allclose(got[t][k], expected[t][k], rtol=1e-5, atol=2e-6, err_msg=f"torch {t + 1} {k}")
            np.testing.assert_allclose(got[t][k], reference[t][k], rtol=1e-5, atol=2e-6, err_msg=f"numpy {t + 1} {k}")


def test_float64_matches_numpy_to_float64_round_off():
    options = CONFIGS["plain_match_rms_wd"]
    w0, noise = problem(2)
    reference = numpy_trajectory(w0, noise, **options)
    with jax.enable_x64(True):
        w64 = {k: v.astype(np.float64) for k, v in w0.items()}
        got = ours_trajectory(w64, {k: v.astype(np.float64) for k, v in noise.items()}, **_ours_options(options,
                              ns_dtype=None))  # fmt: skip
    for k in SHAPES:
        assert got[-1][k].dtype == np.float64
        np.testing.assert_allclose(got[-1][k], reference[-1][k], rtol=1e-10, atol=1e-12)


def test_flax_layout_is_the_transpose():
    w0, noise = problem(3)
    options = _ours_options(CONFIGS["plain_match_rms_wd"], ns_dtype=None)
    torch_layout = ours_trajectory(w0, noise, **options)
    options.pop("weight_dimension_numbers")
    flax_layout = ours_trajectory(
        {k: v.T.copy() for k, v in w0.items()}, {k: np.swapaxes(v, 1, 2).copy() for k, v in noise.items()}, **options
    )
    for k in SHAPES:
        np.testing.assert_allclose(flax_layout[-1][k].T, torch_layout[-1][k], rtol=1e-5, atol=2e-6)


def test_others_take_the_non_matrix_leaves_and_without_them_the_error_names_the_leaf():
    params = {"kernel": jnp.ones((3, 4)), "bias": jnp.ones((4,))}
    grads = {"kernel": jnp.arange(12.0).reshape(3, 4) / 12, "bias": jnp.ones((4,))}
    tx = muon_torch(0.02, others=oc.sgd(0.5))
    updates, state = tx.update(grads, tx.init(params), params)
    np.testing.assert_allclose(updates["bias"], -0.5 * np.ones(4))
    alone = muon_torch(0.02)
    kernel_only, _ = alone.update({"kernel": grads["kernel"]}, alone.init({"kernel": params["kernel"]}),
                                  {"kernel": params["kernel"]})  # fmt: skip
    np.testing.assert_allclose(updates["kernel"], kernel_only["kernel"], rtol=1e-6)
    with pytest.raises(ValueError, match=r"\['bias'\]"):
        alone.update(grads, alone.init(params), params)


def test_hyperparameters_are_data_and_state_is_readable():
    params = {"kernel": jnp.ones((3, 4))}
    tx = muon_torch(0.02, weight_decay=0.1, momentum=0.9)
    state = tx.init(params)
    values = oc.get_hyperparams(state)
    assert {"learning_rate", "weight_decay", "momentum", "eps"} <= set(values)
    assert float(values["momentum"]) == pytest.approx(0.9)
    assert isinstance(state[0], OrthogonalizedMomentumState)
    state = oc.set_hyperparams(state, learning_rate=0.0, weight_decay=0.0)
    updates, state = tx.update(params, state, params)
    np.testing.assert_array_equal(updates["kernel"], np.zeros((3, 4)))
    assert int(state[0].count) == 1 and state[0].momentum_buffer["kernel"].shape == (3, 4)


def test_batched_tensor_with_dimension_numbers_is_a_batch_of_matrices():
    x = jax.random.normal(jax.random.key(0), (2, 3, 5))
    tx = scale_by_orthogonalized_momentum(weight_dimension_numbers=MuonDimensionNumbers(1, 2), ns_dtype=None)
    u, _ = tx.update({"x": x}, tx.init({"x": x}))
    alone = scale_by_orthogonalized_momentum(ns_dtype=None)
    for i in range(2):
        v, _ = alone.update({"x": x[i]}, alone.init({"x": x[i]}))
        np.testing.assert_allclose(u["x"][i], v["x"], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("ns_dtype", [None, jnp.bfloat16])
def test_complex_matrices_rotate_with_a_global_phase(ns_dtype):
    """torch rejects complex parameters; ours take them (Gram matrices ``X X^H``; in bfloat16 both
    parts of the iterate rounded), and a global phase of the gradients rotates the update alike."""
    rng = np.random.default_rng(4)
    g = jnp.asarray(rng.normal(size=(4, 6)) + 1j * rng.normal(size=(4, 6)), jnp.complex64)
    tx = scale_by_orthogonalized_momentum(ns_dtype=ns_dtype)
    u, _ = tx.update({"w": g}, tx.init({"w": g}))
    rotated, _ = tx.update({"w": g * np.exp(0.7j)}, tx.init({"w": g}))
    assert u["w"].dtype == jnp.complex64
    # bfloat16: the rotated iterate rounds at other points; measured (seeds 0-4) at most 0.031, about
    # 8 bfloat16 ulps of the largest entries (~0.7), against 1e-6 for the float32 iteration.
    atol = 2e-6 if ns_dtype is None else 5e-2
    np.testing.assert_allclose(rotated["w"], np.exp(0.7j) * np.asarray(u["w"]), atol=atol)
    singular_values = np.linalg.svd(np.asarray(u["w"], np.complex128), compute_uv=False)
    assert np.all((singular_values > 0.5) & (singular_values < 1.5))  # orthogonalized, roughly


def test_bad_arguments_name_the_argument():
    for kwargs, match in [
        ({"adjust_lr_fn": "rms"}, "adjust_lr_fn"), ({"ns_steps": 100}, "ns_steps"), ({"momentum": 1.0}, "momentum"),
        ({"eps": -1.0}, "eps"), ({"ns_dtype": jnp.int8}, "ns_dtype"), ({"ns_coefficients": (1.0, 2.0)}, "ns_coeff"),
        ({"learning_rate": -1.0}, "learning_rate"), ({"weight_decay": -0.1}, "weight_decay"),
    ]:  # fmt: skip
        with pytest.raises((ValueError, TypeError), match=match):
            muon_torch(**kwargs)


def test_exported():
    assert oc.muon_torch is muon_torch
    assert oc.scale_by_orthogonalized_momentum is scale_by_orthogonalized_momentum
