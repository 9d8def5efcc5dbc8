"""Muon against Optax (float32 and float64), NumPy, and torch.optim.Muon; its Adam part, errors.

torch mapping (a torch weight is ``(out, in)``, used as ``x W^T``; Optax's ``x W`` layout has the
reduction axis first)::

    torch.optim.Muon([W], lr, weight_decay=wd, momentum=beta, nesterov=False, eps=eps, adjust_lr_fn=None)
      == muon(lr, beta=beta, eps=eps, weight_decay=wd, nesterov=False,
              muon_weight_dimension_numbers=MuonDimensionNumbers(reduction_axis=1, output_axis=0))
    adjust_lr_fn="match_rms_adamw"  ==  consistent_rms=0.2

torch iterates in bfloat16 and normalizes by ``max(||X||, eps)`` (ours: ``||X|| + eps``, Optax's);
with its bfloat16 cast disabled and ``eps=0`` the two agree to 1e-13 in float64. torch's Nesterov
momentum ``(1 - beta) g + beta m`` has no bias correction and is not Optax's: no mapping.
"""

from __future__ import annotations

import contrib_harness as h
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import torch
import trajectory as tr
from cases import Case
from helpers import assert_trees_close

from optcompose import contrib
from optcompose._hyperparams import get_hyperparams, set_hyperparams
from optcompose._tree import NotFloatingError

ROWS = h.rows(["muon", "muon_plain_rms", "muon_low_precision"])
KW = {"beta": 0.9, "adam_b2": 0.99}
VARIANTS = {
    "adaptive": {"adaptive": True},
    "aol_dion": {"preconditioning": "aol", "ns_coeffs": "dion"},
    "schatten_wd_mask": {"preconditioning": "schatten", "weight_decay": 0.2, "weight_decay_mask": tr.explicit_mask},
    "adam_lr_mu_dtype": {"adam_learning_rate": 0.01, "adam_weight_decay": 0.1, "mu_dtype": jnp.bfloat16},
}
EXTRA = [
    Case(f"muon_{name}", lambda o=o: contrib.muon(0.05, **KW, **_resolved(o)),
         optax=lambda o=o: optax.contrib.muon(0.05, **KW, **_resolved(o)))
    for name, o in VARIANTS.items()
]  # fmt: skip


def _resolved(options):
    mask = options.get("weight_decay_mask")
    return {**options, "weight_decay_mask": mask(tr.problem(False)[0])} if mask else options


def test_rows_match_numpy_and_optax():
    h.check_parity(ROWS)


@pytest.mark.slow
def test_rows_match_optax_in_float64():
    h.check_parity(ROWS, x64=True)


@pytest.mark.slow
@pytest.mark.parametrize("x64", [False, True], ids=["float32", "float64"])
def test_variants_match_optax(x64):
    # bfloat16 moments (mu_dtype) round differently by an ulp (0.4%) along the way.
    h.check_parity(EXTRA, {"default": 1e-12 if x64 else 2e-5, "muon_adam_lr_mu_dtype": 3e-2}, x64=x64)


@pytest.mark.slow
def test_eager_equals_jit():
    h.eager_matches_jit(ROWS[0])


# ----------------------------------------------------------------------------------------------
# torch.optim.Muon


class _NoBfloat16(torch.Tensor):
    """A tensor whose ``.bfloat16()`` keeps its precision: torch's own iteration, in float64."""

    def bfloat16(self):
        return self.as_subclass(torch.Tensor).clone()


def _torch_trajectory(w0, grads, full_precision, **options):
    import torch.optim._muon as torch_muon

    original = torch_muon._zeropower_via_newtonschulz
    if full_precision:
        torch_muon._zeropower_via_newtonschulz = lambda g, *a: original(g.as_subclass(_NoBfloat16), *a).as_subclass(
            torch.Tensor
        )
    try:
        w = torch.tensor(w0, requires_grad=True)
        opt = torch.optim.Muon([w], **options)
        out = []
        for g in grads(lambda: w.detach().numpy()):
            w.grad = torch.tensor(g, dtype=w.dtype)
            opt.step()
            out.append(w.detach().numpy().copy())
        return np.stack(out)
    finally:
        torch_muon._zeropower_via_newtonschulz = original


def _ours(w0, noise, **options):
    tx = contrib.muon(**options, muon_weight_dimension_numbers=contrib.MuonDimensionNumbers(1, 0))
    params, _ = tr.problem(False)
    problem = ({"w": jnp.asarray(w0)}, {"w": jnp.asarray(noise)})
    return np.asarray(h.run([tx], [problem])[0][0]["w"])


def _gradients(noise):
    def grads(current):
        for n in noise:
            w = current()
            yield n.astype(w.dtype) + np.asarray(0.125, w.dtype) * w  # as the harness: in the weight's dtype

    return grads


@pytest.mark.parametrize("adjust", [None, pytest.param("match_rms_adamw", marks=pytest.mark.slow)])
def test_matches_torch_muon_in_float64_without_its_bfloat16_cast(adjust):
    rng = np.random.default_rng(3)
    w0, noise = rng.normal(size=(5, 3)), rng.normal(size=(20, 5, 3))
    expected = _torch_trajectory(
        w0, _gradients(noise), True, lr=0.05, weight_decay=0.1, momentum=0.9, nesterov=False, eps=0.0,
        adjust_lr_fn=adjust,
    )  # fmt: skip
    with jax.enable_x64(True):
        got = _ours(w0, noise, learning_rate=0.05, beta=0.9, eps=0.0, weight_decay=0.1, nesterov=False,
                    consistent_rms=None if adjust is None else 0.2)  # fmt: skip
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-12)


def test_matches_torch_muon_float32_up_to_its_bfloat16_iteration():
    rng = np.random.default_rng(4)
    w0, noise = rng.normal(size=(4, 6)).astype(np.float32), rng.normal(size=(20, 4, 6)).astype(np.float32)
    expected = _torch_trajectory(w0, _gradients(noise), False, lr=0.02, weight_decay=0.1, momentum=0.95,
                                 nesterov=False)  # fmt: skip
    got = _ours(w0, noise, learning_rate=0.02, beta=0.95, eps=1e-7, weight_decay=0.1, nesterov=False)
    displacement = np.max(np.abs(expected - w0))
    assert np.max(np.abs(got - expected)) / displacement < 2e-2


# ----------------------------------------------------------------------------------------------
# scale_by_muon on tensors, hyperparameters, complex, errors.


def test_scale_by_muon_on_a_batched_tensor_matches_optax():
    rng = np.random.default_rng(5)
    params = {"attn": jnp.asarray(rng.normal(size=(2, 3, 4)), jnp.float32), "w": jnp.asarray(rng.normal(size=(3, 5)))}
    dims = {"attn": contrib.MuonDimensionNumbers(1, 2), "w": contrib.MuonDimensionNumbers()}
    theirs_dims = {"attn": optax.contrib.MuonDimensionNumbers(1, 2), "w": optax.contrib.MuonDimensionNumbers()}
    ours = contrib.scale_by_muon(weight_dimension_numbers=dims, nesterov=False)
    theirs = optax.contrib.scale_by_muon(weight_dimension_numbers=theirs_dims, nesterov=False)

    def steps(tx):
        state, out = tx.init(params), []
        for t in range(3):
            grads = jax.tree.map(lambda p, t=t: jnp.sin(p + t), params)
            u, state = tx.update(grads, state, params)
            out.append(u)
        return out

    assert_trees_close(jax.jit(lambda: steps(ours))(), jax.jit(lambda: steps(theirs))(), float32=(2e-5, 2e-6))


def test_hyperparameters_are_named_as_the_arguments_and_settable():
    params, _ = tr.problem(False)
    tx = contrib.muon(0.05, beta=0.9, weight_decay=0.1, adam_learning_rate=0.01)
    state = tx.init(params)
    found = get_hyperparams(state)
    for name, value in {"learning_rate": 0.05, "beta": 0.9, "weight_decay": 0.1, "adam_learning_rate": 0.01,
                        "adam_b1": 0.9, "adam_b2": 0.999}.items():  # fmt: skip
        assert float(found[name]) == pytest.approx(value), name
    state = set_hyperparams(state, beta=0.5, adam_learning_rate=0.02)
    assert float(get_hyperparams(state)["beta"]) == 0.5
    assert float(get_hyperparams(state)["adam_learning_rate"]) == pytest.approx(0.02)


def test_complex_matrices_stay_complex_and_finite():
    params, noise = tr.problem("complex")
    trajectory, _ = h.run([contrib.muon(0.05)], [(params, noise)])[0]
    for leaf, start in zip(jax.tree.leaves(trajectory), jax.tree.leaves(params), strict=True):
        assert leaf.dtype == start.dtype and np.all(np.isfinite(np.asarray(leaf)))


def test_bad_arguments_name_themselves():
    with pytest.raises(ValueError, match="ns_coeffs"):
        contrib.muon(0.1, ns_coeffs="nope")
    with pytest.raises(ValueError, match="ns_coeffs"):
        contrib.scale_by_muon(ns_coeffs=(1.0, 2.0))
    with pytest.raises(ValueError, match="beta"):
        contrib.scale_by_muon(beta=1.5)
    with pytest.raises(ValueError, match="preconditioning"):
        contrib.scale_by_muon(preconditioning="qr")
    with pytest.raises(ValueError, match="learning_rate"):
        contrib.muon(-1.0)
    with pytest.raises(TypeError, match="ns_steps"):
        contrib.scale_by_muon(ns_steps=2.5)
    tx = contrib.scale_by_muon()
    params = {"layer": {"bias": jnp.ones(3)}}
    with pytest.raises(ValueError, match=r"\['layer'\]\['bias'\].*shape \(3,\)"):
        tx.update(params, tx.init(params))
    bad = {"w": jnp.ones((2, 2), jnp.int32)}
    with pytest.raises(NotFloatingError, match=r"\['w'\] has dtype int32"):
        tx.update(bad, tx.init(bad))
