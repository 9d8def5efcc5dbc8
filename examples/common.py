"""Shared pieces of the examples: the digits data, a small CNN, a training loop, results and plots.

The data is scikit-learn's bundled handwritten digits (1,797 8x8 greyscale images, 10 classes), so
every example runs offline on a laptop CPU in under a minute.
"""

from __future__ import annotations

import argparse
import functools
import importlib.util
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from tqdm.auto import tqdm  # noqa: F401  (re-exported for the examples)

if importlib.util.find_spec("optcompose") is None:  # run from a checkout without `pip install -e .`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import optcompose as oc  # noqa: E402


class Digits(NamedTuple):
    x_train: np.ndarray  # (N, 8, 8, 1) float32 in [0, 1]
    y_train: np.ndarray  # (N,) int32
    x_test: np.ndarray
    y_test: np.ndarray


def load_digits(test_fraction: float = 0.25, seed: int = 0) -> Digits:
    """scikit-learn's digits as NHWC float32 images in [0, 1], split stratified by class."""
    from sklearn.datasets import load_digits as sklearn_digits
    from sklearn.model_selection import train_test_split

    data = sklearn_digits()
    images = (data.images / 16.0).astype(np.float32)[..., None]
    labels = data.target.astype(np.int32)
    x_train, x_test, y_train, y_test = train_test_split(
        images, labels, test_size=test_fraction, stratify=labels, random_state=seed
    )
    return Digits(x_train, y_train, x_test, y_test)


class CNN(nn.Module):
    """Two 3x3 convolutions (optionally batch-normalized), average pooling and a two-layer head."""

    features: tuple[int, ...] = (16, 32)
    hidden: int = 64
    num_classes: int = 10
    batch_norm: bool = False

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        for width in self.features:
            x = nn.Conv(width, (3, 3), use_bias=not self.batch_norm)(x)
            if self.batch_norm:
                x = nn.BatchNorm(use_running_average=not train, momentum=0.9)(x)
            x = nn.relu(x)
        x = nn.avg_pool(x, (2, 2), strides=(2, 2))
        x = x.reshape((x.shape[0], -1))
        x = nn.relu(nn.Dense(self.hidden)(x))
        return nn.Dense(self.num_classes)(x)


def cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """Mean softmax cross-entropy of integer labels."""
    log_probs = jax.nn.log_softmax(logits)
    return -jnp.mean(jnp.take_along_axis(log_probs, labels[:, None], axis=1))


def epoch_batches(x: np.ndarray, y: np.ndarray, batch_size: int, rng: np.random.Generator) -> Iterator[tuple]:
    """One shuffled pass; the ragged last batch is dropped so every step has one shape (one compile)."""
    order = rng.permutation(len(x))
    for start in range(0, len(x) - batch_size + 1, batch_size):
        index = order[start : start + batch_size]
        yield x[index], y[index]


def steps_per_epoch(data: Digits, batch_size: int) -> int:
    return len(data.x_train) // batch_size


def learning_rate_of(opt_state: Any) -> jax.Array:
    """The learning rate the next update will use, read from the optimizer state (it is data)."""
    values = oc.get_hyperparams(opt_state)
    if "learning_rate" in values:
        return values["learning_rate"]
    matches = [v for k, v in values.items() if k.endswith("['learning_rate']")]
    return matches[0] if matches else jnp.float32(jnp.nan)


def init_key(seed: int) -> jax.Array:
    """A PRNG key for initialisation. The "rbg" generator compiles several times faster on CPU
    than the default threefry, which matters for scripts that compile once and run seconds."""
    return jax.random.key(seed, impl="rbg")


class Trainer(NamedTuple):
    """Jitted functions for one (model, optimizer) pair; variables are Flax's ``{'params', ...}``."""

    init: Callable[[int], tuple[dict, Any]]
    step: Callable[..., tuple]
    evaluate: Callable[[dict, np.ndarray, np.ndarray], tuple[jax.Array, jax.Array]]


@functools.cache
def _model_programs(model: nn.Module) -> tuple[Callable[..., dict], Callable[..., tuple]]:
    """``(init_variables(key, sample), evaluate(variables, x, y))`` of one model, jitted once and
    shared by every trainer of that model (Flax modules are hashable): an example that compares
    several optimizers on one model compiles these once, not once per optimizer."""

    @jax.jit  # one compiled program instead of hundreds of small eager ones
    def init_variables(key, sample):
        return dict(model.init(key, sample, train=False))

    @jax.jit
    def evaluate(variables, x, y):
        logits = model.apply(variables, x, train=False)
        return jnp.mean(jnp.argmax(logits, -1) == y), cross_entropy(logits, y)

    return init_variables, evaluate


def make_trainer(model: nn.Module, optimizer: oc.GradientTransformation, sample: np.ndarray) -> Trainer:
    """Builds ``init(seed)``, ``step(variables, opt_state, x, y)`` and ``evaluate(variables, x, y)``.

    ``step`` returns ``(variables, opt_state, loss, learning_rate_used)``; it compiles once and is
    reused for every step. ``evaluate`` returns ``(accuracy, mean loss)``.
    """
    init_variables, evaluate = _model_programs(model)
    init_state = jax.jit(optimizer.init)

    def init(seed: int):
        variables = init_variables(init_key(seed), np.zeros_like(sample[:1]))
        return variables, init_state(variables["params"])

    def loss(params, state, x, y):
        if state:
            logits, new_state = model.apply({"params": params, **state}, x, train=True, mutable=list(state))
        else:
            logits, new_state = model.apply({"params": params}, x, train=True), state
        return cross_entropy(logits, y), dict(new_state)

    @jax.jit
    def step(variables, opt_state, x, y):
        params = variables["params"]
        state = {k: v for k, v in variables.items() if k != "params"}
        lr = learning_rate_of(opt_state)
        (value, state), grads = jax.value_and_grad(loss, has_aux=True)(params, state, x, y)
        # One pass over memory for the optimizers with a kernel (sgd, adam, adamw, lamb); any other
        # transform is tx.update + apply_updates, with the same numbers.
        params, opt_state = oc.step(optimizer, grads, opt_state, params)
        return {"params": params, **state}, opt_state, value, lr

    return Trainer(init, step, evaluate)


class History(NamedTuple):
    losses: np.ndarray  # training loss per step
    learning_rates: np.ndarray  # learning rate used at each step
    test_accuracy: np.ndarray  # after each epoch
    test_loss: np.ndarray  # after each epoch
    variables: dict  # the final variables
    opt_state: Any


def train(
    model: nn.Module,
    optimizer: oc.GradientTransformation,
    data: Digits,
    *,
    epochs: int,
    batch_size: int = 64,
    seed: int = 0,
    desc: str = "train",
    on_epoch_end: Callable[[int, dict], None] | None = None,
    trainer: Trainer | None = None,
) -> History:
    """Trains ``model`` with ``optimizer`` for ``epochs`` passes, with a tqdm bar over the steps."""
    trainer = trainer or make_trainer(model, optimizer, data.x_train)
    variables, opt_state = trainer.init(seed)
    rng = np.random.default_rng(seed)
    losses, rates, accuracies, test_losses = [], [], [], []
    total = epochs * steps_per_epoch(data, batch_size)
    with tqdm(total=total, desc=desc, unit="step", dynamic_ncols=True) as bar:
        for epoch in range(epochs):
            for x, y in epoch_batches(data.x_train, data.y_train, batch_size, rng):
                variables, opt_state, loss, lr = trainer.step(variables, opt_state, x, y)
                losses.append(loss)
                rates.append(lr)
                bar.update()
            accuracy, test_loss = trainer.evaluate(variables, data.x_test, data.y_test)
            accuracies.append(float(accuracy))
            test_losses.append(float(test_loss))
            bar.set_postfix(loss=f"{float(losses[-1]):.3f}", test_acc=f"{accuracies[-1]:.3f}")
            if on_epoch_end is not None:
                on_epoch_end(epoch, variables)
    return History(
        np.asarray(jax.device_get(losses), np.float64),
        np.asarray(jax.device_get(rates), np.float64),
        np.asarray(accuracies),
        np.asarray(test_losses),
        variables,
        opt_state,
    )


def smooth(values: np.ndarray, window: int = 10) -> np.ndarray:
    """A trailing moving average, for readable loss curves."""
    values = np.asarray(values, np.float64)
    if len(values) < 2 or window <= 1:
        return values
    cumulative = np.cumsum(np.insert(values, 0, 0.0))
    out = np.empty_like(values)
    for i in range(len(values)):
        lo = max(0, i + 1 - window)
        out[i] = (cumulative[i + 1] - cumulative[lo]) / (i + 1 - lo)
    return out


# ------------------------------------------------------------------------------ command line, output


def parser(description: str, *, epochs: int | None = None, steps: int | None = None) -> argparse.ArgumentParser:
    """The common flags: ``--out`` (results folder), ``--seed``, and ``--epochs`` / ``--steps``."""
    result = argparse.ArgumentParser(description=description)
    result.add_argument("--out", type=Path, default=None, help="results folder (default: results/<example>)")
    result.add_argument("--seed", type=int, default=0, help="random seed")
    if epochs is not None:
        result.add_argument("--epochs", type=int, default=epochs, help=f"training epochs (default {epochs})")
    if steps is not None:
        result.add_argument("--steps", type=int, default=steps, help=f"optimizer steps (default {steps})")
    return result


def results_dir(name: str, out: Path | None = None) -> Path:
    """``out``, or ``results/<name>`` under the current directory; created if missing."""
    path = Path(out) if out is not None else Path("results") / name
    path.mkdir(parents=True, exist_ok=True)
    return path


def figure(rows: int = 1, cols: int = 1, size: tuple[float, float] | None = None):
    """A matplotlib ``Figure`` and its axes, without pyplot (no GUI backend, no global state)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=size or (5.2 * cols, 4.0 * rows), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False)
    return fig, axes


def save(fig: Any, path: Path) -> None:
    fig.savefig(path, dpi=110)
    print(f"wrote {os.fspath(path)}")
