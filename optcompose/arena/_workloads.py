"""The arena's workloads: small, real training problems, each with a validation metric and a target.

A workload (AlgoPerf's word) is a dataset, a model, a training loss and a validation metric with a
target value. Every metric here is *lower is better* (an error rate, a loss, a suboptimality), and a
run *reaches the target* at the first evaluation where ``valid <= target``.

Everything is made in code or comes from scikit-learn's bundled ``digits`` (nothing is
downloaded). The dataset is fixed (a fixed split, a fixed spectrum, a fixed matrix); a trial's
*seed* chooses only the initial parameters and the per-step randomness (minibatch indices or
noise draws). Both are drawn on the host with NumPy, ``default_rng([seed, 0])`` for the
parameters and ``default_rng([seed, 1])`` for the steps, so they are identical on every backend
and two trials with the same seed and different hyperparameters see the same data in the same
order (common random numbers).

============================ ======================================================= ======================
workload                     problem                                                 validation metric
============================ ======================================================= ======================
``ravine``                   noisy Rosenbrock valley in 2-D                          f(x) - f*
``saddle``                   noisy 2-D strict saddle, start next to it               f(x) - f*
``noisy_quadratic``          DeepOBS-style 100-D quadratic, fixed spectrum           expected excess loss
``logreg_digits``            softmax regression on sklearn digits (convex control)   validation log-loss
``mlp_digits``               ReLU MLP 64-64-64-10 on digits                          validation error rate
``cnn_digits``               two 3x3 conv layers + linear head on 8x8 digits         validation error rate
``deep_linear``              depth-3 linear net, low-rank matrix completion          held-out relative RMSE
``transformer_modadd``       one-block transformer on (a + b) mod 23, 80 % of pairs  validation error rate
============================ ======================================================= ======================

Budgets follow AlgoPerf's rule: a workload's target is set with ``target_setting_steps`` updates;
submissions get ``max_steps = 4/3 * target_setting_steps`` (AlgoPerf's ``max_runtime`` is a third
longer than the target-setting runs), and 1.5 times that in the self-tuning ruleset.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
from collections.abc import Callable, Mapping
from importlib import resources
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

Data = Mapping[str, Any]

TARGETS_FILE = "_targets.json"


def require(module: str, extra: str = "examples") -> Any:
    """Imports an optional dependency, or raises an ImportError naming the extra that provides it."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as error:  # pragma: no cover - depends on the environment
        package = {"sklearn": "scikit-learn"}.get(module.split(".")[0], module.split(".")[0])
        raise ImportError(
            f"optcompose.arena needs {package!r} for this; install the extra: pip install 'optcompose[{extra}]' "
            f"(or pip install {package})"
        ) from error


@dataclasses.dataclass(frozen=True)
class Workload:
    """One arena workload.

    Host side (NumPy, no compilation):

    * ``load() -> data``: the fixed dataset, a dict of arrays (the arena puts it on the device once
      and passes it to compiled programs as an argument, never as a baked-in constant).
    * ``init(rng) -> params``: the initial parameters, from a ``numpy.random.Generator``.
    * ``draws(rng, steps, data) -> pytree``: the randomness of ``steps`` updates, each leaf with a
      leading axis of length ``steps`` (minibatch indices, or the noise of a stochastic objective).

    Device side (pure, jit- and vmap-able):

    * ``loss(params, data, draw) -> scalar``: the training loss of one update, ``draw`` being one
      step's slice of ``draws``.
    * ``objective(params, data) -> scalar``: a deterministic training objective, the function whose
      sharpness is measured: the noiseless function, or the training loss on a fixed subset of the
      training set (its first ``OBJECTIVE_ROWS`` rows, to keep Hessian-vector products cheap).
    * ``evaluate(params, data) -> {"valid": scalar, "test": scalar}``: the metrics, lower is
      better; the target is on ``valid``.
    """

    name: str
    description: str
    metric: str
    load: Callable[[], Data]
    init: Callable[[np.random.Generator], Any]
    draws: Callable[[np.random.Generator, int, Data], Any]
    loss: Callable[[Any, Data, Any], jax.Array]
    objective: Callable[[Any, Data], jax.Array]
    evaluate: Callable[[Any, Data], dict[str, jax.Array]]
    target_setting_steps: int
    eval_every: int
    tags: tuple[str, ...] = ()

    @property
    def max_steps(self) -> int:
        """The step budget of the tuned and defaults rulesets: 4/3 of the target-setting budget.

        Rounded up to a whole number of evaluation intervals.
        """
        return self.eval_every * math.ceil(4 * self.target_setting_steps / (3 * self.eval_every))

    @property
    def quick_steps(self) -> int:
        """The tiny budget of ``--quick`` smoke runs: four evaluation intervals of a fifth of the usual length."""
        return 4 * self.quick_eval_every

    @property
    def quick_eval_every(self) -> int:
        return max(1, self.eval_every // 5)

    @property
    def target(self) -> float | None:
        """The validation target stored in ``_targets.json`` (``None`` for a workload not calibrated yet)."""
        entry = load_targets().get(self.name)
        return None if entry is None else float(entry["target"])


@functools.cache
def targets_document() -> dict[str, Any]:
    """The whole ``_targets.json`` (targets, how they were made, versions); ``{}`` when absent."""
    try:
        text = resources.files("optcompose.arena").joinpath(TARGETS_FILE).read_text()
    except FileNotFoundError:
        return {}
    return json.loads(text)


def load_targets() -> dict[str, Any]:
    """The calibrated target of every workload (written by ``python -m optcompose.arena.calibrate``)."""
    return targets_document().get("workloads", {})


# ----------------------------------------------------------------------------------------------
# Shared pieces
# ----------------------------------------------------------------------------------------------


def param_rng(seed: int) -> np.random.Generator:
    """The generator of a seed's initial parameters."""
    return np.random.default_rng([int(seed), 0])


def step_rng(seed: int) -> np.random.Generator:
    """The generator of a seed's per-step randomness (minibatches, noise)."""
    return np.random.default_rng([int(seed), 1])


def _normal(rng: np.random.Generator, shape: tuple[int, ...], std: float) -> np.ndarray:
    return (std * rng.standard_normal(shape)).astype(np.float32)


def _dense(rng: np.random.Generator, fan_in: int, fan_out: int, gain: float = 2.0) -> dict[str, np.ndarray]:
    """He-normal kernel (gain 2 before a ReLU, 1 before a linear output), zero bias."""
    return {"w": _normal(rng, (fan_in, fan_out), math.sqrt(gain / fan_in)), "b": np.zeros((fan_out,), np.float32)}


def cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """Mean softmax cross-entropy, ``-1/n sum_i log softmax(logits_i)[y_i]``.

    The label's entry is picked with a one-hot product rather than a gather: the gradient of a
    gather is a scatter, slow on CPUs, the gradient of a product is a product.
    """
    log_p = jax.nn.log_softmax(logits, axis=-1)
    return -jnp.mean(jnp.sum(jax.nn.one_hot(labels, logits.shape[-1], dtype=log_p.dtype) * log_p, axis=-1))


def error_rate(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """Fraction of rows whose arg-max logit is not the label (a tie goes to the lowest index)."""
    return jnp.mean((jnp.argmax(logits, axis=-1) != labels).astype(jnp.float32))


def _indices(size: int, key: str = "y_train") -> Callable[[np.random.Generator, int, Data], np.ndarray]:
    """Minibatches of ``size`` training rows drawn uniformly with replacement, ``(steps, size)`` int32."""

    def draws(rng: np.random.Generator, steps: int, data: Data) -> np.ndarray:
        return rng.integers(0, len(data[key]), (steps, size)).astype(np.int32)

    return draws


# ----------------------------------------------------------------------------------------------
# 2-D test functions: a ravine and a saddle, with gradient noise
# ----------------------------------------------------------------------------------------------

RAVINE_NOISE = 0.1
SADDLE_NOISE = 0.01
SADDLE_KAPPA = 10.0
SADDLE_EPS = 0.2


def rosenbrock(p: jax.Array) -> jax.Array:
    """``f(x, y) = (1 - x)^2 + 100 (y - x^2)^2``: a curved, narrow valley with f* = 0 at (1, 1)."""
    return (1.0 - p[0]) ** 2 + 100.0 * (p[1] - p[0] ** 2) ** 2


def saddle(p: jax.Array) -> jax.Array:
    """``f(x, y) = kappa/2 x^2 + y^4/4 - eps/2 y^2`` with kappa = 10, eps = 0.2.

    A strict saddle at 0 (curvatures 10 and -0.2) and minima at ``(0, +-sqrt(eps))`` with
    ``f* = -eps^2 / 4``. The unstable direction is 50 times flatter than the stable one, so a method
    must escape a nearly flat saddle while staying stable along x.
    """
    return 0.5 * SADDLE_KAPPA * p[0] ** 2 + 0.25 * p[1] ** 4 - 0.5 * SADDLE_EPS * p[1] ** 2


SADDLE_MIN = -(SADDLE_EPS**2) / 4


def _ravine_init(rng: np.random.Generator) -> np.ndarray:
    return np.array([-1.2, 1.0], np.float32) + _normal(rng, (2,), 0.1)


def _saddle_init(rng: np.random.Generator) -> np.ndarray:
    return np.array([1.0, 0.0], np.float32) + _normal(rng, (2,), 1.0) * np.array([0.1, 1e-3], np.float32)


def _two_d(name: str, description: str, f: Callable, f_star: float, init: Callable, noise: float, **kw) -> Workload:
    """A 2-D function with unbiased noisy gradients: ``loss = f(p) + noise * xi . p``, ``xi ~ N(0, I)``."""

    def evaluate(p, data):
        gap = f(p) - f_star
        return {"valid": gap, "test": gap}

    return Workload(
        name=name,
        description=description,
        metric="f(x) - f*",
        load=lambda: {},
        init=init,
        draws=lambda rng, steps, data: rng.standard_normal((steps, 2)).astype(np.float32),
        loss=lambda p, data, xi: f(p) + noise * jnp.dot(xi, p),
        objective=lambda p, data: f(p) - f_star,
        evaluate=evaluate,
        tags=("synthetic",),
        **kw,
    )


# ----------------------------------------------------------------------------------------------
# DeepOBS-style noisy quadratic
# ----------------------------------------------------------------------------------------------

QUADRATIC_DIM = 100
QUADRATIC_BATCH = 16


@functools.cache
def quadratic_hessian() -> np.ndarray:
    """The fixed Hessian ``H = Q diag(lambda) Q^T`` of the noisy quadratic.

    As DeepOBS's ``quadratic_deep``: 90 eigenvalues uniform in [0, 1], 10 uniform in [30, 60], and a
    random rotation ``Q``, all drawn once from a fixed generator (seed 42), never from a trial seed.
    """
    rng = np.random.default_rng(42)
    eigenvalues = np.concatenate([rng.uniform(0.0, 1.0, 90), rng.uniform(30.0, 60.0, 10)])
    q, _ = np.linalg.qr(rng.normal(size=(QUADRATIC_DIM, QUADRATIC_DIM)))
    return ((q * eigenvalues) @ q.T).astype(np.float32)


@functools.cache
def quadratic_minimum() -> np.ndarray:
    """The fixed minimiser ``theta*`` of the noisy quadratic: entries uniform in [-2, 2] (seed 43).

    Off the origin on purpose: with the minimum at zero (DeepOBS's choice) a method that merely
    shrinks the weights (weight decay, Fromage's ``1/sqrt(1 + lr^2)`` factor) looks like a good
    optimizer. Here shrinking towards zero moves away from ``theta*``.
    """
    return np.random.default_rng(43).uniform(-2.0, 2.0, QUADRATIC_DIM).astype(np.float32)


def quadratic_loss(theta: jax.Array, data: Data, x: jax.Array) -> jax.Array:
    """``1/B sum_i 1/2 (theta - theta* - x_i)^T H (theta - theta* - x_i)``, noise draws ``x_i ~ N(0, I)``."""
    d = (theta - data["minimum"])[None, :] - x
    return 0.5 * jnp.mean(jnp.einsum("bi,ij,bj->b", d, data["hessian"], d))


def quadratic_excess(theta: jax.Array, data: Data) -> jax.Array:
    """``E_x L(theta) - min E_x L = 1/2 (theta - theta*)^T H (theta - theta*)`` (the expected loss is
    that plus ``1/2 tr H``)."""
    d = theta - data["minimum"]
    return 0.5 * d @ data["hessian"] @ d


# ----------------------------------------------------------------------------------------------
# sklearn digits: logistic regression, MLP, CNN
# ----------------------------------------------------------------------------------------------

DIGITS_BATCH = 32
OBJECTIVE_ROWS = 128
"""Rows of the training set in a classifier's ``objective`` (the function whose sharpness is measured)."""
LOGREG_L2 = 1e-3


@functools.cache
def digits_arrays() -> dict[str, np.ndarray]:
    """sklearn's 8x8 digits (1797 images, bundled with sklearn), split 60/20/20 by a fixed permutation.

    Pixels are scaled to [0, 1] and centred by the training mean.
    """
    datasets = require("sklearn.datasets")
    digits = datasets.load_digits()
    x = digits.data.astype(np.float32) / 16.0
    y = digits.target.astype(np.int32)
    order = np.random.default_rng(0).permutation(len(y))
    n_train, n_valid = int(0.6 * len(y)), int(0.2 * len(y))
    parts = {"train": order[:n_train], "valid": order[n_train : n_train + n_valid], "test": order[n_train + n_valid :]}
    mean = x[parts["train"]].mean(axis=0)
    out = {}
    for split, index in parts.items():
        out[f"x_{split}"] = x[index] - mean
        out[f"y_{split}"] = y[index]
    return out


def _classifier(name: str, description: str, apply: Callable, init: Callable, metric: str, **kw) -> Workload:
    """A digits classifier; ``metric`` is ``"error"`` (error rate) or ``"log-loss"`` (cross-entropy, plus L2)."""
    l2 = LOGREG_L2 if metric == "log-loss" else 0.0

    def penalised(params, x, y):
        penalty = 0.5 * l2 * jnp.sum(params["w"] ** 2) if l2 else 0.0
        return cross_entropy(apply(params, x), y) + penalty

    def evaluate(params, data):
        score = cross_entropy if metric == "log-loss" else error_rate
        return {
            "valid": score(apply(params, data["x_valid"]), data["y_valid"]),
            "test": score(apply(params, data["x_test"]), data["y_test"]),
        }

    return Workload(
        name=name,
        description=description,
        metric="validation log-loss" if metric == "log-loss" else "validation error rate",
        load=digits_arrays,
        init=init,
        draws=_indices(DIGITS_BATCH),
        loss=lambda params, data, index: penalised(params, data["x_train"][index], data["y_train"][index]),
        objective=lambda params, data: penalised(
            params, data["x_train"][:OBJECTIVE_ROWS], data["y_train"][:OBJECTIVE_ROWS]
        ),
        evaluate=evaluate,
        tags=("digits", "vision"),
        **kw,
    )


def _logreg_apply(params, x):
    return x @ params["w"] + params["b"]


def _logreg_init(rng):
    return {"w": _normal(rng, (64, 10), 0.01), "b": np.zeros((10,), np.float32)}


MLP_WIDTH = 64


def _mlp_init(rng):
    return {
        "hidden1": _dense(rng, 64, MLP_WIDTH),
        "hidden2": _dense(rng, MLP_WIDTH, MLP_WIDTH),
        "head": _dense(rng, MLP_WIDTH, 10, gain=1.0),
    }


def _mlp_apply(params, x):
    h = jax.nn.relu(x @ params["hidden1"]["w"] + params["hidden1"]["b"])
    h = jax.nn.relu(h @ params["hidden2"]["w"] + params["hidden2"]["b"])
    return h @ params["head"]["w"] + params["head"]["b"]


CNN_CHANNELS = (8, 16)


def conv3x3(x: jax.Array, kernel: jax.Array, bias: jax.Array) -> jax.Array:
    """A 'same' 3x3 convolution (NHWC input, HWIO kernel) as nine shifted views and one contraction.

    ``out[b, i, j, o] = bias[o] + sum_{di, dj, c} x_pad[b, i + di, j + dj, c] kernel[di, dj, c, o]``.
    Written with slices and ``einsum`` rather than ``lax.conv``: under ``vmap`` over the kernel it
    stays a batched matrix product, fast on CPUs (a vmapped ``lax.conv`` is a grouped convolution).
    """
    h, w = x.shape[-3], x.shape[-2]
    padded = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
    views = jnp.stack([padded[:, i : i + h, j : j + w, :] for i in range(3) for j in range(3)], axis=3)
    return jnp.einsum("bhwkc,kco->bhwo", views, kernel.reshape(9, kernel.shape[2], kernel.shape[3])) + bias


def max_pool2(x: jax.Array) -> jax.Array:
    """2x2 max pooling with stride 2 (NHWC, even height and width)."""
    b, h, w, c = x.shape
    return x.reshape(b, h // 2, 2, w // 2, 2, c).max(axis=(2, 4))


def _cnn_init(rng):
    c1, c2 = CNN_CHANNELS
    return {
        "conv1": {"w": _normal(rng, (3, 3, 1, c1), math.sqrt(2 / 9)), "b": np.zeros((c1,), np.float32)},
        "conv2": {"w": _normal(rng, (3, 3, c1, c2), math.sqrt(2 / (9 * c1))), "b": np.zeros((c2,), np.float32)},
        "head": _dense(rng, 4 * c2, 10, gain=1.0),
    }


def _cnn_apply(params, x):
    h = x.reshape(x.shape[0], 8, 8, 1)
    h = max_pool2(jax.nn.relu(conv3x3(h, params["conv1"]["w"], params["conv1"]["b"])))  # 4x4
    h = max_pool2(jax.nn.relu(conv3x3(h, params["conv2"]["w"], params["conv2"]["b"])))  # 2x2
    return h.reshape(h.shape[0], -1) @ params["head"]["w"] + params["head"]["b"]


# ----------------------------------------------------------------------------------------------
# Deep linear network: low-rank matrix completion
# ----------------------------------------------------------------------------------------------

MATRIX_SIZE = 24
MATRIX_RANK = 3
MATRIX_DEPTH = 3
MATRIX_OBSERVED = 0.5
MATRIX_NOISE = 0.01
MATRIX_BATCH = 64
MATRIX_INIT = 0.3


@functools.cache
def matrix_problem() -> dict[str, np.ndarray]:
    """A fixed rank-3 24x24 matrix scaled to unit RMS, and a fixed split of its entries.

    Half the entries are observed, with noise of std 0.01, for training; the other half is split
    in two for validation and test.
    """
    rng = np.random.default_rng(7)
    u, v = rng.normal(size=(MATRIX_SIZE, MATRIX_RANK)), rng.normal(size=(MATRIX_SIZE, MATRIX_RANK))
    m = u @ v.T
    m /= np.sqrt(np.mean(m**2))
    order = rng.permutation(MATRIX_SIZE * MATRIX_SIZE)
    n_train = int(MATRIX_OBSERVED * order.size)
    n_valid = (order.size - n_train) // 2
    rows, cols = np.divmod(order, MATRIX_SIZE)
    splits = {
        "train": slice(0, n_train),
        "valid": slice(n_train, n_train + n_valid),
        "test": slice(n_train + n_valid, None),
    }
    out = {}
    for split, part in splits.items():
        out[f"idx_{split}"] = np.stack([rows[part], cols[part]], axis=1).astype(np.int32)
        values = m[rows[part], cols[part]]
        if split == "train":
            values = values + MATRIX_NOISE * rng.normal(size=values.shape)
        out[f"val_{split}"] = values.astype(np.float32)
    return out


def _matrix_init(rng):
    std = MATRIX_INIT / math.sqrt(MATRIX_SIZE)
    return [_normal(rng, (MATRIX_SIZE, MATRIX_SIZE), std) for _ in range(MATRIX_DEPTH)]


def end_to_end(factors) -> jax.Array:
    """The product ``W_L ... W_2 W_1`` of a deep linear network."""
    out = factors[0]
    for f in factors[1:]:
        out = f @ out
    return out


def _matrix_sq_error(factors, idx, values) -> jax.Array:
    """Mean squared error of the product's entries ``W[i, j]`` at ``idx`` (picked by one-hot products, not a gather)."""
    w = end_to_end(factors)
    rows = jax.nn.one_hot(idx[:, 0], MATRIX_SIZE, dtype=w.dtype)
    cols = jax.nn.one_hot(idx[:, 1], MATRIX_SIZE, dtype=w.dtype)
    entries = jnp.sum((rows @ w) * cols, axis=-1)
    return jnp.mean((entries - values) ** 2)


def _matrix_evaluate(factors, data):
    # The matrix has unit RMS, so the RMSE on held-out entries is a relative error.
    return {
        "valid": jnp.sqrt(_matrix_sq_error(factors, data["idx_valid"], data["val_valid"])),
        "test": jnp.sqrt(_matrix_sq_error(factors, data["idx_test"], data["val_test"])),
    }


# ----------------------------------------------------------------------------------------------
# Tiny transformer on modular addition
# ----------------------------------------------------------------------------------------------

MOD_P = 23
MOD_TRAIN_FRACTION = 0.8
MOD_DIM = 32
MOD_MLP = 4 * MOD_DIM
MOD_BATCH = 64
MOD_EMBED_STD = 0.5


@functools.cache
def modadd_arrays() -> dict[str, np.ndarray]:
    """All p^2 sequences ``(a, b, '=')`` labelled ``(a + b) mod p``, p = 23.

    A fixed 80 % of the pairs train; the rest is split in halves for validation and test.
    """
    a, b = np.meshgrid(np.arange(MOD_P), np.arange(MOD_P), indexing="ij")
    a, b = a.ravel(), b.ravel()
    tokens = np.stack([a, b, np.full_like(a, MOD_P)], axis=1).astype(np.int32)
    labels = ((a + b) % MOD_P).astype(np.int32)
    order = np.random.default_rng(3).permutation(labels.size)
    n_train = int(MOD_TRAIN_FRACTION * labels.size)
    n_valid = (labels.size - n_train) // 2
    parts = {"train": order[:n_train], "valid": order[n_train : n_train + n_valid], "test": order[n_train + n_valid :]}
    out = {}
    for split, index in parts.items():
        out[f"x_{split}"] = tokens[index]
        out[f"y_{split}"] = labels[index]
    return out


def _modadd_init(rng):
    d = MOD_DIM
    std = 1.0 / math.sqrt(d)
    return {
        "embed": _normal(rng, (MOD_P + 1, d), MOD_EMBED_STD),
        "pos": _normal(rng, (3, d), MOD_EMBED_STD),
        "query": _normal(rng, (d, d), std),
        "key": _normal(rng, (d, d), std),
        "value": _normal(rng, (d, d), std),
        "out": _normal(rng, (d, d), std),
        "mlp_in": _normal(rng, (d, MOD_MLP), math.sqrt(2.0 / d)),
        "mlp_out": _normal(rng, (MOD_MLP, d), 1.0 / math.sqrt(MOD_MLP)),
        "unembed": _normal(rng, (d, MOD_P), std),
    }


def modadd_apply(params, tokens):
    """One transformer block read at the '=' position (as the grokking models of Power et al. and Nanda et al.).

    Residual stream ``x_t = E[token_t] + P_t``; the '=' position attends to all three positions
    (the causal mask allows it), ``h = x_3 + W_O softmax(q k^T / sqrt(d)) v``; then a ReLU MLP,
    ``h + W_out relu(W_in h)``; the logits are ``h W_U``. No LayerNorm, as in those models. Only the
    last position is computed: with one layer, the other positions' outputs are never read.
    """
    d = MOD_DIM
    x = jax.nn.one_hot(tokens, MOD_P + 1, dtype=params["embed"].dtype) @ params["embed"] + params["pos"][None]
    q = x[:, -1] @ params["query"]  # (n, d)
    k, v = x @ params["key"], x @ params["value"]  # (n, 3, d)
    attention = jax.nn.softmax(jnp.einsum("nd,ntd->nt", q, k) / math.sqrt(d), axis=-1)
    h = x[:, -1] + jnp.einsum("nt,ntd->nd", attention, v) @ params["out"]
    h = h + jax.nn.relu(h @ params["mlp_in"]) @ params["mlp_out"]
    return h @ params["unembed"]


# ----------------------------------------------------------------------------------------------
# Registry
# ----------------------------------------------------------------------------------------------


def _build() -> dict[str, Workload]:
    workloads = [
        _two_d(
            "ravine",
            "Rosenbrock valley (1-x)^2 + 100 (y-x^2)^2 from (-1.2, 1), gradient noise 0.1",
            rosenbrock,
            0.0,
            _ravine_init,
            RAVINE_NOISE,
            target_setting_steps=600,
            eval_every=25,
        ),
        _two_d(
            "saddle",
            "strict saddle 5x^2 + y^4/4 - 0.1 y^2, start 1e-3 from it, gradient noise 0.01",
            saddle,
            SADDLE_MIN,
            _saddle_init,
            SADDLE_NOISE,
            target_setting_steps=300,
            eval_every=25,
        ),
        Workload(
            name="noisy_quadratic",
            description=(
                "DeepOBS-style 100-D quadratic, eigenvalues 90 in [0,1] and 10 in [30,60], "
                "minimum off the origin, batch 16"
            ),
            metric="expected excess loss",
            load=lambda: {"hessian": quadratic_hessian(), "minimum": quadratic_minimum()},
            init=lambda rng: np.ones((QUADRATIC_DIM,), np.float32) + _normal(rng, (QUADRATIC_DIM,), 0.1),
            draws=lambda rng, steps, data: rng.standard_normal((steps, QUADRATIC_BATCH, QUADRATIC_DIM)).astype(
                np.float32
            ),
            loss=quadratic_loss,
            objective=quadratic_excess,
            evaluate=lambda theta, data: dict.fromkeys(("valid", "test"), quadratic_excess(theta, data)),
            target_setting_steps=300,
            eval_every=25,
            tags=("synthetic",),
        ),
        _classifier(
            "logreg_digits",
            "softmax regression on sklearn digits, L2 1e-3 (convex), batch 32",
            _logreg_apply,
            _logreg_init,
            "log-loss",
            target_setting_steps=300,
            eval_every=25,
        ),
        _classifier(
            "mlp_digits",
            "ReLU MLP 64-64-64-10 on sklearn digits, batch 32",
            _mlp_apply,
            _mlp_init,
            "error",
            target_setting_steps=450,
            eval_every=25,
        ),
        _classifier(
            "cnn_digits",
            "conv3x3(8)-pool-conv3x3(16)-pool-linear on 8x8 digits, batch 32",
            _cnn_apply,
            _cnn_init,
            "error",
            target_setting_steps=450,
            eval_every=25,
        ),
        Workload(
            name="deep_linear",
            description="depth-3 linear net W3 W2 W1 completing a rank-3 24x24 matrix from half its entries",
            metric="held-out relative RMSE",
            load=matrix_problem,
            init=_matrix_init,
            draws=_indices(MATRIX_BATCH, "val_train"),
            loss=lambda f, data, index: 0.5 * _matrix_sq_error(f, data["idx_train"][index], data["val_train"][index]),
            objective=lambda f, data: 0.5 * _matrix_sq_error(f, data["idx_train"], data["val_train"]),
            evaluate=_matrix_evaluate,
            target_setting_steps=600,
            eval_every=25,
            tags=("synthetic",),
        ),
        Workload(
            name="transformer_modadd",
            description="1-block transformer (d=32, 1 head, MLP 128) on (a+b) mod 23, trained on 80 % of the pairs",
            metric="validation error rate",
            load=modadd_arrays,
            init=_modadd_init,
            draws=_indices(MOD_BATCH),
            loss=lambda p, data, index: cross_entropy(modadd_apply(p, data["x_train"][index]), data["y_train"][index]),
            objective=lambda p, data: cross_entropy(
                modadd_apply(p, data["x_train"][:OBJECTIVE_ROWS]), data["y_train"][:OBJECTIVE_ROWS]
            ),
            evaluate=lambda p, data: {
                "valid": error_rate(modadd_apply(p, data["x_valid"]), data["y_valid"]),
                "test": error_rate(modadd_apply(p, data["x_test"]), data["y_test"]),
            },
            target_setting_steps=450,
            eval_every=25,
            tags=("sequence",),
        ),
    ]
    return {w.name: w for w in workloads}


WORKLOADS: dict[str, Workload] = _build()
"""Every workload by name, in the arena's order."""


def get_workload(name: str | Workload) -> Workload:
    """A workload by name (or the workload itself)."""
    if isinstance(name, Workload):
        return name
    try:
        return WORKLOADS[name]
    except KeyError:
        raise KeyError(f"no workload named {name!r}; known: {', '.join(WORKLOADS)}") from None


_DEVICE_DATA: dict[str, Any] = {}


def device_data(workload: Workload) -> Data:
    """The workload's dataset on the default device, loaded once per process and workload."""
    if workload.name not in _DEVICE_DATA or _DEVICE_DATA[workload.name][0] is not workload:
        _DEVICE_DATA[workload.name] = (workload, {k: jnp.asarray(v) for k, v in workload.load().items()})
    return _DEVICE_DATA[workload.name][1]


def host_data(workload: Workload) -> Data:
    """The workload's dataset as NumPy arrays (for drawing minibatch indices)."""
    return workload.load()


def initial_params(workload: Workload, seed: int) -> Any:
    """The seed's initial parameters, as device arrays."""
    return jax.tree.map(jnp.asarray, workload.init(param_rng(seed)))


def step_draws(workload: Workload, seed: int, steps: int) -> Any:
    """The seed's per-step randomness for ``steps`` updates (NumPy, leading axis ``steps``)."""
    return workload.draws(step_rng(seed), steps, host_data(workload))
