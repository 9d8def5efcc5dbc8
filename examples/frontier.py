"""The 2024-2026 optimizers side by side: AdamW, Muon, SOAP, Shampoo, C-AdamW and MARS on two small tasks.

* **digits CNN** — the CNN of ``train_classifier.py`` (``common.CNN``, ``common.load_digits``,
  ``common.train``: the same data, model and loop) for a few epochs per optimizer;
* **transformer** — a 2-block, 4-head bidirectional transformer learning to reverse sequences of 12
  random tokens (vocabulary 16), fresh batches every step, scored on 512 held-out sequences.

Every optimizer gets the same warmup + cosine schedule shape, seed and batches; peak learning rates
are the usual ones for each method (not tuned here): AdamW / C-AdamW / MARS / SOAP / Shampoo 3e-3,
Muon 0.02 on the hidden matrices (``muon_torch``, torch.optim.Muon's rules) with AdamW 3e-3 for
embeddings, biases, norms and the output layer. Plots go to ``results/frontier/``; a table of final
losses and accuracies is printed.

    python examples/frontier.py              # a few minutes on 2 CPU cores
    python examples/frontier.py --quick      # seconds of training (the test suite's run)

The quick run is mostly compilation (each optimizer's two training steps are their own programs,
about 3 minutes on 2 CPU cores); the model initialization and evaluation are compiled once for all.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import common
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

import optcompose as oc
from optcompose.contrib import MuonDimensionNumbers

VOCAB, LENGTH = 16, 12
NAMES = ("AdamW", "Muon", "SOAP", "Shampoo", "C-AdamW", "MARS")


# ---- the optimizers ---------------------------------------------------------------------------
def muon_dimensions(head: str) -> Callable:
    """``MuonDimensionNumbers`` for the hidden weight matrices, ``None`` (AdamW) for everything else.

    The output layer ``head`` and the embeddings stay with AdamW, as the Muon authors recommend. A
    Dense or conv kernel reduces over all axes but the last (a conv kernel is ``(3, 3, in, out)``).
    """

    def dims(path, x):
        path = jax.tree_util.keystr(path)
        if jnp.ndim(x) < 2 or "kernel" not in path or f"'{head}'" in path:
            return None
        return MuonDimensionNumbers(tuple(range(jnp.ndim(x) - 1)), jnp.ndim(x) - 1)

    return lambda params: jax.tree_util.tree_map_with_path(dims, params)


def optimizers(total_steps: int, head: str) -> dict[str, oc.GradientTransformation]:
    warmup = max(1, total_steps // 20)

    def schedule(peak):
        return oc.warmup_cosine_decay_schedule(0.0, peak, warmup, total_steps, end_value=peak / 20)

    adamw = lambda: oc.adamw(schedule(3e-3), weight_decay=0.01)
    return {
        "AdamW": adamw(),
        "Muon": oc.muon_torch(
            schedule(0.02), weight_decay=0.01, weight_dimension_numbers=muon_dimensions(head), others=adamw()
        ),  # fmt: skip
        "SOAP": oc.soap(schedule(3e-3), weight_decay=0.01, precondition_frequency=10),
        "Shampoo": oc.shampoo(
            schedule(3e-3),
            block_size=128,
            weight_decay=0.01,
            start_preconditioning_step=5,
            preconditioning_compute_steps=10,
        ),  # fmt: skip
        "C-AdamW": oc.cautious(adamw()),
        "MARS": oc.mars(schedule(3e-3), weight_decay=0.01),
    }


# ---- the transformer task ---------------------------------------------------------------------
class Transformer(nn.Module):
    """Pre-norm transformer encoder: token + learned position embeddings, ``depth`` blocks, a linear head.

    Attention is written with one ``(width, 3 width)`` query-key-value matrix and one output matrix,
    so every hidden weight is a plain matrix (for Muon, Shampoo and SOAP alike).
    """

    width: int = 64
    depth: int = 2
    heads: int = 4

    @nn.compact
    def __call__(self, tokens: jax.Array) -> jax.Array:
        x = nn.Embed(VOCAB, self.width)(tokens)
        x = x + self.param("position", nn.initializers.normal(0.02), (LENGTH, self.width))
        batch, length, head_dim = x.shape[0], x.shape[1], self.width // self.heads
        for _ in range(self.depth):
            q, k, v = jnp.split(nn.Dense(3 * self.width)(nn.LayerNorm()(x)), 3, axis=-1)
            q, k, v = (a.reshape(batch, length, self.heads, head_dim) for a in (q, k, v))
            weights = jax.nn.softmax(jnp.einsum("bqhd,bkhd->bhqk", q, k) / np.sqrt(head_dim), axis=-1)
            mixed = jnp.einsum("bhqk,bkhd->bqhd", weights, v).reshape(batch, length, self.width)
            x = x + nn.Dense(self.width)(mixed)
            x = x + nn.Dense(self.width)(nn.gelu(nn.Dense(4 * self.width)(nn.LayerNorm()(x))))
        return nn.Dense(VOCAB, name="head")(nn.LayerNorm()(x))


def sequences(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    x = rng.integers(0, VOCAB, (n, LENGTH), dtype=np.int32)
    return x, x[:, ::-1].copy()


MODEL = Transformer()


def transformer_loss(params, x, y):
    """(mean token cross-entropy, token accuracy) of ``MODEL``."""
    logits = MODEL.apply({"params": params}, x)
    loss = common.cross_entropy(logits.reshape(-1, VOCAB), y.reshape(-1))
    return loss, jnp.mean(jnp.argmax(logits, -1) == y)


# Compiled once for all the optimizers (only each one's step is its own program).
init_transformer = jax.jit(lambda key: MODEL.init(key, jnp.zeros((1, LENGTH), jnp.int32))["params"])
evaluate_transformer = jax.jit(transformer_loss)


def train_transformer(optimizer: oc.GradientTransformation, steps: int, seed: int, batch_size: int = 64):
    """Returns (training loss per step, final held-out loss, final held-out token accuracy)."""

    @jax.jit
    def step(params, state, x, y):
        (loss, _), grads = jax.value_and_grad(transformer_loss, has_aux=True)(params, x, y)
        params, state = oc.step(optimizer, grads, state, params)
        return params, state, loss

    params = init_transformer(common.init_key(seed))
    state = jax.jit(optimizer.init)(params)
    rng = np.random.default_rng(seed)
    x_test, y_test = sequences(np.random.default_rng(10_000 + seed), 512)
    losses = []
    for _ in range(steps):
        params, state, loss = step(params, state, *sequences(rng, batch_size))
        losses.append(loss)
    test_loss, accuracy = evaluate_transformer(params, x_test, y_test)
    return np.asarray(jax.device_get(losses), np.float64), float(test_loss), float(accuracy)


# ---- running and reporting --------------------------------------------------------------------
def timed(fn: Callable[[], object]) -> tuple[object, float]:
    start = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - start


def main() -> None:
    parser = common.parser(__doc__.splitlines()[0], epochs=8, steps=500)
    parser.add_argument("--quick", action="store_true", help="a tiny budget (1 epoch, 15 transformer steps)")
    args = parser.parse_args()
    epochs, steps = (1, 15) if args.quick else (args.epochs, args.steps)
    out = common.results_dir("frontier", args.out)
    data = common.load_digits(seed=args.seed)
    cnn_steps = epochs * common.steps_per_epoch(data, 64)

    rows = {}
    for name in NAMES:
        cnn_tx, seq_tx = optimizers(cnn_steps, "Dense_1")[name], optimizers(steps, "head")[name]
        history, cnn_time = timed(
            lambda tx=cnn_tx, name=name: common.train(
                common.CNN(), tx, data, epochs=epochs, seed=args.seed, desc=f"{name} CNN"
            )  # fmt: skip
        )
        transformer, seq_time = timed(lambda tx=seq_tx: train_transformer(tx, steps, args.seed))
        seq_losses, seq_loss, seq_accuracy = transformer
        rows[name] = {
            "cnn_losses": history.losses, "cnn_accuracy": history.test_accuracy, "cnn_time": cnn_time,
            "seq_losses": seq_losses, "seq_loss": seq_loss, "seq_accuracy": seq_accuracy, "seq_time": seq_time,
        }  # fmt: skip

    fig, axes = common.figure(1, 2, size=(12, 4.2))
    for i, (name, row) in enumerate(rows.items()):
        axes[0][0].plot(common.smooth(row["cnn_losses"]), color=f"C{i}", label=name)
        epochs_axis = np.arange(1, len(row["cnn_accuracy"]) + 1)
        axes[0][1].plot(epochs_axis, 100 * row["cnn_accuracy"], marker="o", color=f"C{i}", label=name)
    axes[0][0].set(xlabel="step", ylabel="training loss (10-step average)", yscale="log", title="Digits CNN")
    axes[0][1].set(xlabel="epoch", ylabel="test accuracy (%)", title="Digits CNN: test accuracy")
    for ax in axes[0]:
        ax.grid(alpha=0.3)
        ax.legend()
    common.save(fig, out / "digits_cnn.png")

    fig, axes = common.figure(1, 1, size=(7, 4.2))
    for i, (name, row) in enumerate(rows.items()):
        axes[0][0].plot(common.smooth(row["seq_losses"]), color=f"C{i}", label=name)
    axes[0][0].set(xlabel="step", ylabel="training loss (10-step average)", yscale="log",
                   title=f"Transformer: reverse {LENGTH} tokens")  # fmt: skip
    axes[0][0].grid(alpha=0.3)
    axes[0][0].legend()
    common.save(fig, out / "transformer.png")

    print(f"\n{epochs} CNN epochs ({cnn_steps} steps), {steps} transformer steps; final losses are 10-step means")
    columns = ("CNN loss", 9), ("CNN test acc", 13), ("seq loss", 9), ("seq token acc", 14), ("time (s)", 9)
    header = f"{'optimizer':<9} " + " ".join(f"{title:>{width}}" for title, width in columns)
    print(header)
    print("-" * len(header))
    for name, row in rows.items():
        print(
            f"{name:<9} {row['cnn_losses'][-10:].mean():>9.4f} {100 * row['cnn_accuracy'][-1]:>12.2f}% "
            f"{row['seq_losses'][-10:].mean():>9.4f} {100 * row['seq_accuracy']:>13.2f}% "
            f"{row['cnn_time'] + row['seq_time']:>9.1f}"
        )


if __name__ == "__main__":
    main()
