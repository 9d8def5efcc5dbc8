"""The recipes' learning-rate sequences, weight-decay masks and differential learning rates.

Each learning-rate sequence is read from the optimizer state with ``get_hyperparams`` (the value
the next update will use) over a whole run, and compared with the seed's numbers written as NumPy
formulas.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax.core import FrozenDict

from optcompose import recipes
from optcompose._hyperparams import get_hyperparams

PARAMS = {
    "dense": {"kernel": jnp.full((2, 2), 0.5), "bias": jnp.full((2,), 0.5)},
    "norm": {"scale": jnp.ones((2,))},
    "head": {"kernel": jnp.full((2, 1), 0.5), "bias": jnp.full((1,), 0.5)},
}
ZEROS = jax.tree.map(jnp.zeros_like, PARAMS)


def lr_sequence(tx, steps, pick=lambda found: found["learning_rate"]):
    """``lr_t`` for ``t = 0 .. steps``: what update ``t`` uses, read from the state."""

    def body(state, _):
        lr = pick(get_hyperparams(state))
        return tx.update(ZEROS, state, PARAMS)[1], lr

    @jax.jit
    def run(state):
        state, lrs = jax.lax.scan(body, state, None, length=steps)
        return jnp.concatenate([lrs, pick(get_hyperparams(state))[None]])

    return np.asarray(run(tx.init(PARAMS)))


def cosine(peak, end, t, length):
    return end + (peak - end) * 0.5 * (1 + np.cos(np.pi * np.minimum(t, length) / length))


def warmup_cosine(peak, end, warmup, total, t):
    t = np.asarray(t, np.float64)
    ramp = peak * t / max(warmup, 1)
    return np.where(t < warmup, ramp, cosine(peak, end, t - warmup, total - warmup))


def test_vision_from_scratch_lr_is_cosine_from_0_1():
    t = np.arange(51)
    np.testing.assert_allclose(lr_sequence(recipes.vision_from_scratch(50), 50), cosine(0.1, 0.0, t, 50), atol=1e-7)


def test_vision_finetune_lrs_decay_linearly_head_above_backbone():
    tx = recipes.vision_finetune(40)

    def pick(found):
        head = [v for k, v in found.items() if "['head']" in k and k.endswith("['learning_rate']")]
        backbone = [v for k, v in found.items() if "['backbone']" in k and k.endswith("['learning_rate']")]
        return jnp.stack([head[0], backbone[0]])

    lrs = lr_sequence(tx, 40, pick)
    t = np.arange(41)
    np.testing.assert_allclose(lrs[:, 0], 1e-4 * (1 - t / 40), atol=1e-10)
    np.testing.assert_allclose(lrs[:, 1], 5e-5 * (1 - t / 40), atol=1e-10)
    cosine_lrs = lr_sequence(recipes.vision_finetune(40, decay="cosine"), 40, pick)
    np.testing.assert_allclose(cosine_lrs[:, 1], cosine(5e-5, 0.0, t, 40), atol=1e-10)


def test_nlp_transformer_warms_up_10_percent_then_cosine():
    lrs = lr_sequence(recipes.nlp_transformer(100), 100)
    np.testing.assert_allclose(lrs, warmup_cosine(1e-4, 0.0, 10, 100, np.arange(101)), rtol=1e-5, atol=1e-11)
    assert lrs[5] == pytest.approx(0.5e-4) and lrs[10] == pytest.approx(1e-4)
    shorter = lr_sequence(recipes.nlp_transformer(100, learning_rate=5e-4, warmup_fraction=0.05), 100)
    np.testing.assert_allclose(shorter, warmup_cosine(5e-4, 0.0, 5, 100, np.arange(101)), rtol=1e-5, atol=1e-11)


def test_llm_pretraining_schedule_and_betas():
    tx = recipes.llm_pretraining(3000)
    lrs = lr_sequence(tx, 3000)
    t = np.arange(3001)
    np.testing.assert_allclose(lrs, warmup_cosine(3e-4, 3e-5, 2000, 3000, t), rtol=1e-5, atol=1e-11)
    assert lrs[1000] == pytest.approx(1.5e-4)
    assert lrs[2000] == pytest.approx(3e-4)
    assert lrs[3000] == pytest.approx(3e-5)  # 10 % of the peak
    found = get_hyperparams(tx.init(PARAMS))
    assert float(found["b2"]) == pytest.approx(0.95)
    assert float(found["weight_decay"]) == pytest.approx(0.1)
    with pytest.raises(ValueError, match="total_steps"):
        recipes.llm_pretraining(2000)


def test_prototyping_is_constant_adam():
    lrs = lr_sequence(recipes.prototyping(), 5)
    np.testing.assert_allclose(lrs, np.full(6, 1e-3), rtol=1e-7)
    assert "weight_decay" not in get_hyperparams(recipes.prototyping().init(PARAMS))


def test_default_recipe_is_5_percent_warmup_then_cosine_to_1e_6():
    lrs = lr_sequence(recipes.default(200), 200)
    warmup = int(0.05 * 200)
    np.testing.assert_allclose(lrs, warmup_cosine(1e-3, 1e-6, warmup, 200, np.arange(201)), rtol=1e-5)
    assert float(get_hyperparams(recipes.default(200).init(PARAMS))["weight_decay"]) == pytest.approx(0.01)


@pytest.mark.parametrize(
    "make",
    [
        lambda **kw: recipes.default(100, warmup_fraction=0.0, **kw),
        lambda **kw: recipes.nlp_transformer(100, warmup_fraction=0.0, **kw),
        lambda **kw: recipes.llm_pretraining(100, warmup_steps=0, **kw),
        lambda **kw: recipes.vision_from_scratch(100, **kw),
        lambda **kw: recipes.vision_finetune(100, **kw),
    ],
    ids=["default", "nlp_transformer", "llm_pretraining", "vision_from_scratch", "vision_finetune"],
)
def test_weight_decay_skips_biases_and_norm_scales(make):
    tx = make()
    updates, _ = jax.jit(tx.update)(ZEROS, tx.init(PARAMS), PARAMS)
    # With zero gradients the only update is the weight decay.
    assert float(jnp.abs(updates["dense"]["kernel"]).min()) > 0
    assert float(jnp.abs(updates["head"]["kernel"]).min()) > 0
    for leaf in (updates["dense"]["bias"], updates["norm"]["scale"], updates["head"]["bias"]):
        np.testing.assert_array_equal(leaf, np.zeros(leaf.shape))
    tx = make(decay_mask=None)
    everything, _ = jax.jit(tx.update)(ZEROS, tx.init(PARAMS), PARAMS)
    assert float(jnp.abs(everything["norm"]["scale"]).min()) > 0


def test_adamw_recipe_decay_is_decoupled_and_exact():
    tx = recipes.llm_pretraining(100, warmup_steps=0)
    updates, _ = tx.update(ZEROS, tx.init(PARAMS), PARAMS)
    np.testing.assert_allclose(updates["dense"]["kernel"], np.full((2, 2), -3e-4 * 0.1 * 0.5), rtol=1e-6)


def test_vision_finetune_backbone_moves_slower_than_head():
    params = jax.tree.map(jnp.zeros_like, PARAMS)  # no weight decay contribution
    grads = jax.tree.map(jnp.ones_like, PARAMS)
    tx = recipes.vision_finetune(100)
    updates, _ = tx.update(grads, tx.init(params), params)
    # Adam's first step is g / (|g| + eps): the learning rate times ~1.
    np.testing.assert_allclose(updates["head"]["kernel"], np.full((2, 1), -1e-4), rtol=1e-6)
    np.testing.assert_allclose(updates["dense"]["kernel"], np.full((2, 2), -5e-5), rtol=1e-6)
    np.testing.assert_allclose(updates["norm"]["scale"], np.full((2,), -5e-5), rtol=1e-6)


def test_vision_finetune_labels():
    with pytest.raises(ValueError, match="label_fn"):
        recipes.vision_finetune(10).init({"encoder": jnp.ones((2, 2)), "decoder": jnp.ones((2, 2))})
    wrapped = {"params": {"backbone": jnp.ones((2, 2)), "classifier": jnp.ones((2, 3))}}
    assert recipes.default_head_labels(wrapped) == {"params": {"backbone": "backbone", "classifier": "head"}}
    frozen = FrozenDict({"body": {"kernel": jnp.ones((2, 2))}, "head": {"kernel": jnp.ones((2, 1))}})
    labels = recipes.default_head_labels(frozen)
    assert isinstance(labels, FrozenDict) and labels == {"body": {"kernel": "backbone"}, "head": {"kernel": "head"}}
    tx = recipes.vision_finetune(10)
    tx.update(jax.tree.map(jnp.ones_like, frozen), tx.init(frozen), frozen)  # containers match
    params = {"encoder": jnp.zeros((2, 2)), "decoder": jnp.zeros((2, 2))}
    tx = recipes.vision_finetune(10, label_fn=lambda p: {"encoder": "backbone", "decoder": "head"})
    grads = jax.tree.map(jnp.ones_like, params)
    updates, _ = tx.update(grads, tx.init(params), params)
    np.testing.assert_allclose(updates["decoder"], np.full((2, 2), -1e-4), rtol=1e-6)
    np.testing.assert_allclose(updates["encoder"], np.full((2, 2), -5e-5), rtol=1e-6)


def test_vision_from_scratch_equals_torch_sgd_with_cosine_annealing():
    torch = pytest.importorskip("torch")
    steps, curvature = 12, np.array([[1.0, 2.0], [0.5, 3.0]], np.float32)
    w0 = np.array([[1.0, -1.0], [2.0, 0.5]], np.float32)

    weight = torch.nn.Parameter(torch.tensor(w0))
    opt = torch.optim.SGD([weight], lr=0.1, momentum=0.9, nesterov=True, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps)
    for _ in range(steps):
        opt.zero_grad()
        (0.5 * (torch.tensor(curvature) * weight**2).sum()).backward()
        opt.step()
        sched.step()

    tx = recipes.vision_from_scratch(steps, decay_mask=None)

    def body(carry, _):
        params, state = carry
        updates, state = tx.update(params * curvature, state, params)
        return (params + updates, state), None

    params = jnp.asarray(w0)
    (params, _), _ = jax.jit(lambda c: jax.lax.scan(body, c, None, length=steps))((params, tx.init(params)))
    np.testing.assert_allclose(np.asarray(params), weight.detach().numpy(), rtol=2e-5, atol=1e-6)
    assert math.isclose(sched.get_last_lr()[0], 0.0, abs_tol=1e-12)
