"""Five typical Optax/Flax user programs, run unchanged with Optax and with ``optcompose`` as ``optax``.

Each program is written as an Optax user writes it (the text inside uses only the name ``optax``);
it takes the optax-like module as its argument, so the same source runs once with the real
``optax`` and once with ``optcompose`` substituted for it (README, "From Optax":
``import optcompose as optax`` runs Optax code unchanged). The tests assert that the program runs
on both and that the final losses and parameters agree to float32 round-off.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax as real_optax
from flax import nnx
from flax.training import train_state

import optcompose

RTOL = 1e-5
ATOL = 1e-6


def _assert_agree(ours, theirs, rtol=RTOL, atol=ATOL):
    # atol: entries near zero after adam-style steps differ by float32 round-off in absolute terms
    for x, y in zip(jax.tree.leaves(ours), jax.tree.leaves(theirs), strict=True):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=rtol, atol=atol)


def _run_both(program):
    theirs = program(real_optax)
    ours = program(optcompose)
    assert jax.tree.structure(ours) == jax.tree.structure(theirs)
    return ours, theirs


def _classification_data(seed, n=64, features=8, classes=4):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, features)).astype(np.float32)
    w = rng.normal(size=(features, classes)).astype(np.float32)
    y = np.argmax(x @ w, axis=-1).astype(np.int32)
    return jnp.asarray(x), jnp.asarray(y)


# --- 1. Flax linen MLP classifier: TrainState + adamw + warmup cosine schedule ---------------------


def linen_mlp_program(optax):
    class MLP(nn.Module):
        @nn.compact
        def __call__(self, x):
            x = nn.relu(nn.Dense(16)(x))
            return nn.Dense(4)(x)

    x, y = _classification_data(0)
    model = MLP()
    params = model.init(jax.random.key(0), x[:1])["params"]
    schedule = optax.warmup_cosine_decay_schedule(
        init_value=0.0, peak_value=1e-2, warmup_steps=5, decay_steps=25, end_value=1e-4
    )
    state = train_state.TrainState.create(
        apply_fn=model.apply, params=params, tx=optax.adamw(learning_rate=schedule, weight_decay=1e-4)
    )

    @jax.jit
    def train_step(state, x, y):
        def loss_fn(params):
            logits = state.apply_fn({"params": params}, x)
            return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

        loss, grads = jax.value_and_grad(loss_fn)(state.params)
        return state.apply_gradients(grads=grads), loss

    losses = []
    for _ in range(25):
        state, loss = train_step(state, x, y)
        losses.append(loss)
    return jnp.stack(losses), state.params


def test_linen_mlp_trainstate_adamw_warmup_cosine():
    (losses, params), (ref_losses, ref_params) = _run_both(linen_mlp_program)
    assert ref_losses[-1] < ref_losses[0]
    _assert_agree(losses, ref_losses)
    _assert_agree(params, ref_params)


# --- 2. Flax nnx classifier: nnx.Optimizer + sgd momentum + softmax_cross_entropy + l2_loss ---------


def nnx_classifier_program(optax):
    class Model(nnx.Module):
        def __init__(self, rngs):
            self.hidden = nnx.Linear(8, 16, rngs=rngs)
            self.out = nnx.Linear(16, 4, rngs=rngs)

        def __call__(self, x):
            return self.out(nnx.relu(self.hidden(x)))

    x, y = _classification_data(1)
    one_hot = jax.nn.one_hot(y, 4)
    model = Model(nnx.Rngs(0))
    optimizer = nnx.Optimizer(model, optax.sgd(0.1, momentum=0.9), wrt=nnx.Param)

    @nnx.jit
    def train_step(model, optimizer, x, one_hot):
        def loss_fn(model):
            logits = model(x)
            ce = optax.softmax_cross_entropy(logits, one_hot).mean()
            reg = sum(optax.l2_loss(w).sum() for w in jax.tree.leaves(nnx.state(model, nnx.Param)))
            return ce + 1e-4 * reg

        loss, grads = nnx.value_and_grad(loss_fn)(model)
        optimizer.update(model, grads)
        return loss

    losses = [train_step(model, optimizer, x, one_hot) for _ in range(25)]
    return jnp.stack(losses), nnx.to_pure_dict(nnx.state(model, nnx.Param))


def test_nnx_optimizer_sgd_momentum():
    (losses, params), (ref_losses, ref_params) = _run_both(nnx_classifier_program)
    assert ref_losses[-1] < ref_losses[0]
    _assert_agree(losses, ref_losses)
    _assert_agree(params, ref_params)


# --- 3. Gradient accumulation: MultiSteps over chain(clip_by_global_norm, adam) ----------------------


def multisteps_program(optax):
    rng = np.random.default_rng(2)
    x = jnp.asarray(rng.normal(size=(24, 8, 5)).astype(np.float32))  # 24 micro-batches of 8
    y = jnp.asarray((np.asarray(x) @ rng.normal(size=(5, 1)).astype(np.float32)) + 0.5)
    params = {"w": jnp.zeros((5, 1)), "b": jnp.zeros((1,))}

    def loss_fn(params, x, y):
        return jnp.mean((x @ params["w"] + params["b"] - y) ** 2)

    tx = optax.MultiSteps(optax.chain(optax.clip_by_global_norm(1.0), optax.adam(1e-2)), every_k_schedule=4)
    opt_state = tx.init(params)

    @jax.jit
    def train_step(params, opt_state, x, y):
        loss, grads = jax.value_and_grad(loss_fn)(params, x, y)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    losses, applied = [], []
    for i in range(x.shape[0]):
        before = params
        params, opt_state, loss = train_step(params, opt_state, x[i], y[i])
        losses.append(loss)
        pairs = zip(jax.tree.leaves(params), jax.tree.leaves(before), strict=True)
        changed = any(bool(jnp.any(a != b)) for a, b in pairs)
        applied.append(changed)
        assert bool(tx.has_updated(opt_state)) == changed
    assert applied == [i % 4 == 3 for i in range(x.shape[0])]  # an update every 4th micro-batch
    return jnp.stack(losses), params, opt_state.gradient_step


def test_multisteps_gradient_accumulation():
    (losses, params, count), (ref_losses, ref_params, ref_count) = _run_both(multisteps_program)
    assert int(count) == int(ref_count) == 6
    assert ref_losses[-1] < ref_losses[0]
    _assert_agree(losses, ref_losses)
    _assert_agree(params, ref_params)


# --- 4. Meta-learning the learning rate through inject_hyperparams ------------------------------------


def meta_lr_program(optax):
    rng = np.random.default_rng(3)
    x = jnp.asarray(rng.normal(size=(32, 6)).astype(np.float32))
    y = jnp.asarray(x @ rng.normal(size=(6,)).astype(np.float32))
    params = {"w": jnp.zeros((6,))}

    def loss_fn(params):
        return jnp.mean((x @ params["w"] - y) ** 2)

    opt = optax.inject_hyperparams(optax.sgd)(learning_rate=0.1)
    opt_state = opt.init(params)

    @jax.jit
    def outer_loss(lr, params, opt_state):
        opt_state.hyperparams["learning_rate"] = lr
        grads = jax.grad(loss_fn)(params)
        updates, opt_state = opt.update(grads, opt_state, params)
        new_params = optax.apply_updates(params, updates)
        return loss_fn(new_params), (new_params, opt_state)

    meta_grad = jax.jit(jax.grad(outer_loss, has_aux=True))
    lrs, losses, meta_grads = [], [], []
    for _ in range(20):
        lr = opt_state.hyperparams["learning_rate"]
        g, _ = meta_grad(lr, params, opt_state)
        loss, (params, opt_state) = outer_loss(lr, params, opt_state)
        # meta step: adjust the learning rate between steps, writing it into the state
        opt_state.hyperparams["learning_rate"] = jnp.clip(lr - 0.01 * g, 1e-3, 0.5)
        lrs.append(lr)
        losses.append(loss)
        meta_grads.append(g)
    return jnp.stack(losses), jnp.stack(lrs), jnp.stack(meta_grads), params


def test_inject_hyperparams_meta_learning_rate():
    (losses, lrs, grads, params), (ref_losses, ref_lrs, ref_grads, ref_params) = _run_both(meta_lr_program)
    assert ref_losses[-1] < ref_losses[0]
    assert not np.allclose(ref_lrs, ref_lrs[0])  # the learning rate did move
    _assert_agree(losses, ref_losses)
    _assert_agree(lrs, ref_lrs)
    _assert_agree(grads, ref_grads, atol=1e-5)
    _assert_agree(params, ref_params)


# --- 5. Freezing with labels, and a small LM trained with contrib.muon ---------------------------------


def freeze_program(optax):
    x, y = _classification_data(4)
    params = {
        "encoder": {"w": 0.1 * jnp.ones((8, 16)), "b": jnp.zeros((16,))},
        "head": {"w": 0.1 * jnp.ones((16, 4)), "b": jnp.zeros((4,))},
    }

    def loss_fn(params):
        h = jnp.tanh(x @ params["encoder"]["w"] + params["encoder"]["b"])
        logits = h @ params["head"]["w"] + params["head"]["b"]
        return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

    labels = {"encoder": {"w": "frozen", "b": "frozen"}, "head": {"w": "trainable", "b": "trainable"}}
    tx_labels = optax.multi_transform({"trainable": optax.adam(1e-2), "frozen": optax.set_to_zero()}, labels)
    frozen_mask = jax.tree.map(lambda label: label == "frozen", labels)
    tx_freeze = optax.chain(optax.transforms.freeze(frozen_mask), optax.adam(1e-2))

    results = []
    for tx in (tx_labels, tx_freeze):
        p, opt_state = params, tx.init(params)

        @jax.jit
        def train_step(p, opt_state, tx=tx):
            loss, grads = jax.value_and_grad(loss_fn)(p)
            updates, opt_state = tx.update(grads, opt_state, p)
            return optax.apply_updates(p, updates), opt_state, loss

        losses = []
        for _ in range(20):
            p, opt_state, loss = train_step(p, opt_state)
            losses.append(loss)
        frozen_now, frozen_init = jax.tree.leaves(p["encoder"]), jax.tree.leaves(params["encoder"])
        assert all(bool(jnp.all(a == b)) for a, b in zip(frozen_now, frozen_init, strict=True))
        results.append((jnp.stack(losses), p))
    return results


def test_freeze_and_multi_transform_labels():
    ours, theirs = _run_both(freeze_program)
    for (losses, params), (ref_losses, ref_params) in zip(ours, theirs, strict=True):
        assert ref_losses[-1] < ref_losses[0]
        _assert_agree(losses, ref_losses)
        _assert_agree(params, ref_params)
    # the two spellings of "freeze the encoder" train the head alike
    _assert_agree(ours[0], ours[1])


def lm_muon_program(optax):
    vocab, width, seq = 16, 8, 6

    class TinyLM(nn.Module):
        @nn.compact
        def __call__(self, tokens):
            h = nn.Embed(vocab, width)(tokens)
            h = h + nn.Dense(width)(nn.gelu(h))
            return nn.Dense(vocab)(h)

    rng = np.random.default_rng(5)
    tokens = jnp.asarray(rng.integers(0, vocab, size=(8, seq + 1)).astype(np.int32))
    inputs, targets = tokens[:, :-1], tokens[:, 1:]
    model = TinyLM()
    params = model.init(jax.random.key(1), inputs)["params"]
    n_params = optax.tree.size(params)
    assert n_params == sum(p.size for p in jax.tree.leaves(params))

    tx = optax.contrib.muon(learning_rate=1e-2)
    opt_state = tx.init(params)

    @jax.jit
    def train_step(params, opt_state):
        def loss_fn(params):
            logits = model.apply({"params": params}, inputs)
            return optax.softmax_cross_entropy_with_integer_labels(logits, targets).mean()

        loss, grads = jax.value_and_grad(loss_fn)(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    losses = []
    for _ in range(25):
        params, opt_state, loss = train_step(params, opt_state)
        losses.append(loss)
    return n_params, jnp.stack(losses), params


def test_lm_tree_size_and_contrib_muon():
    (n, losses, params), (ref_n, ref_losses, ref_params) = _run_both(lm_muon_program)
    assert n == ref_n
    assert ref_losses[-1] < ref_losses[0]
    _assert_agree(losses, ref_losses)
    _assert_agree(params, ref_params)
