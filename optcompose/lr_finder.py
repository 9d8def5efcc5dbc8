"""The learning-rate range test (Smith 2017, "Cyclical Learning Rates for Training Neural Networks").

Train for a short while with a learning rate that grows exponentially every step, record the
loss, and read a good learning rate off the curve: where the loss falls fastest, not where it is
lowest (the minimum already sits at a rate too high for stable training).

The optimizer is built once with a constant learning rate; every step writes the next rate into
its state with :func:`optcompose._hyperparams.set_hyperparams`. The rate is data for the compiled
step, so the whole sweep compiles once.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterable, Iterator
from typing import Any, NamedTuple

import jax
import numpy as np

from optcompose import _validate as validate
from optcompose._base import GradientTransformation, Params, apply_updates
from optcompose._hyperparams import get_hyperparams, set_hyperparams

__all__ = ["LRFinderResult", "lr_find", "lr_suggestions", "plot_lr_find"]


class LRFinderResult(NamedTuple):
    """What :func:`lr_find` recorded, one entry per step taken (NumPy float64 arrays).

    ``losses[i]`` is the loss at the parameters before step ``i``, the step then taken with
    ``learning_rates[i]``; ``smoothed_losses`` their debiased exponential moving average;
    ``suggestions`` maps ``'steepest'``, ``'valley'`` and ``'min_over_10'`` to a learning rate
    (see :func:`lr_suggestions`); ``diverged`` tells whether the stop rule ended the sweep early.
    """

    learning_rates: np.ndarray
    losses: np.ndarray
    smoothed_losses: np.ndarray
    suggestions: dict[str, float]
    diverged: bool


def _longest_decrease(values: np.ndarray) -> tuple[int, int]:
    """(end, length) of the longest strictly decreasing subsequence of ``values``.

    ``length[i]`` is the length of the longest decreasing subsequence ending at ``i``; O(n^2) is
    nothing for a few hundred points.
    """
    n = len(values)
    length = np.ones(n, dtype=int)
    for i in range(n):
        for j in range(i):
            if values[j] > values[i] and length[j] + 1 > length[i]:
                length[i] = length[j] + 1
    end = int(np.argmax(length))
    return end, int(length[end])


def lr_suggestions(learning_rates: Any, smoothed_losses: Any) -> dict[str, float]:
    """Three readings of a loss-versus-learning-rate curve, each a learning rate.

    * ``steepest``: where ``d loss / d log(lr)`` is most negative (central differences,
      ``np.gradient``), the seed's choice: the rate at which the loss falls fastest.
    * ``valley``: the middle of the valley the loss descends into, after fastai's ``valley``:
      the longest strictly decreasing subsequence of the curve has ``L`` points and ends at index
      ``e``; the suggestion is the rate at the middle of the window of ``L`` points ending at
      ``e``, index ``(2e - L + 1) // 2``. Counting decreasing points (rather than taking where the
      subsequence starts) lets the noise of the flat start drop out; robust to a single steep
      outlier.
    * ``min_over_10``: the rate at the lowest loss, divided by 10.

    Non-finite losses are ignored. With fewer than two finite points ``steepest`` and ``valley``
    fall back to the rate at the minimum.
    """
    rates = np.asarray(learning_rates, np.float64)
    losses = np.asarray(smoothed_losses, np.float64)
    finite = np.isfinite(losses)
    rates, losses = rates[finite], losses[finite]
    if rates.size == 0:
        nan = float("nan")
        return {"steepest": nan, "valley": nan, "min_over_10": nan}
    best = int(np.argmin(losses))
    if rates.size < 2:
        return {"steepest": float(rates[best]), "valley": float(rates[best]), "min_over_10": float(rates[best] / 10)}
    slope = np.gradient(losses, np.log(rates))
    end, length = _longest_decrease(losses)
    return {
        "steepest": float(rates[int(np.argmin(slope))]),
        "valley": float(rates[(2 * end - length + 1) // 2]),
        "min_over_10": float(rates[best] / 10),
    }


def _batch_source(batches: Iterable[Any] | Callable[[int], Any]) -> Iterator[Any]:
    """Batches forever: ``batches(i)`` for a function, else the iterable, restarted when exhausted."""
    if callable(batches) and not hasattr(batches, "__iter__"):
        return (batches(i) for i in itertools.count())

    def cycle():
        while True:
            empty = True
            for batch in batches:
                empty = False
                yield batch
            if empty:
                raise ValueError("batches is empty: lr_find needs at least one batch")

    return cycle()


def lr_find(
    loss_fn: Callable[[Params, Any], Any],
    params: Params,
    optimizer: GradientTransformation,
    batches: Iterable[Any] | Callable[[int], Any],
    *,
    lr_start: float = 1e-7,
    lr_end: float = 10.0,
    num_steps: int = 100,
    smoothing: float = 0.98,
    diverge_threshold: float = 4.0,
    hyperparam: str = "learning_rate",
) -> LRFinderResult:
    """Runs the learning-rate range test and returns the curve and the suggested rates.

    ``loss_fn(params, batch) -> scalar loss``; ``optimizer`` must keep a constant ``hyperparam``
    (build it as ``adamw(1e-3)``, not with a schedule: the sweep overwrites the value every
    step). ``batches`` is an iterable of batches (restarted when it runs out, as the seed's loop
    restarts its loader) or a function ``step -> batch``. For a model with BatchNorm, let
    ``loss_fn`` close over the statistics and run in training mode, dropping the updated ones.

    Step ``i = 0 .. num_steps - 1`` records the loss at the current parameters, then steps with
    ``lr_i = lr_start * (lr_end / lr_start) ** (i / (num_steps - 1))``: the sweep covers both ends
    exactly (the seed's loop multiplies by ``(lr_end / lr_start) ** (1 / num_steps)`` and stops one
    factor short of ``lr_end``). The loss is smoothed with a
    debiased exponential moving average (Adam's bias correction)::

        m_i = smoothing * m_{i-1} + (1 - smoothing) * loss_i,   s_i = m_i / (1 - smoothing**(i + 1))

    and the sweep stops after step ``i > 0`` when ``s_i > diverge_threshold * min(s_0 .. s_i)``
    (the seed's 4x rule, on the smoothed curve) or the loss is not finite. ``params`` is not
    changed. The train step (``value_and_grad``, update, ``apply_updates``) is jitted once; the
    learning rate enters it as data, so the sweep never recompiles.
    """
    validate.positive("lr_start", lr_start)
    validate.positive("lr_end", lr_end)
    if not lr_end > lr_start:
        raise ValueError(f"lr_end must exceed lr_start, got lr_start={lr_start!r}, lr_end={lr_end!r}")
    validate.integer_at_least("num_steps", num_steps, 2)
    validate.unit_interval("smoothing", smoothing)
    validate.positive("diverge_threshold", diverge_threshold)

    opt_state = jax.jit(optimizer.init)(params)
    if hyperparam not in get_hyperparams(opt_state):
        raise ValueError(
            f"the optimizer state has no settable hyperparameter {hyperparam!r}; "
            f"its hyperparameters are {sorted(get_hyperparams(opt_state))}"
        )

    @jax.jit
    def step(params, opt_state, batch):
        loss, grads = jax.value_and_grad(loss_fn)(params, batch)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return apply_updates(params, updates), opt_state, loss

    schedule = lr_start * (lr_end / lr_start) ** (np.arange(num_steps) / (num_steps - 1))
    source = _batch_source(batches)
    losses: list[float] = []
    smoothed: list[float] = []
    average = 0.0
    best = math.inf
    diverged = False
    for i, lr in enumerate(schedule):
        opt_state = set_hyperparams(opt_state, {hyperparam: float(lr)})
        params, opt_state, loss = step(params, opt_state, next(source))
        loss = float(loss)
        average = smoothing * average + (1.0 - smoothing) * loss
        value = average / (1.0 - smoothing ** (i + 1))
        losses.append(loss)
        smoothed.append(value)
        best = min(best, value)
        if not math.isfinite(loss) or (i > 0 and value > diverge_threshold * best):
            diverged = True
            break

    rates = schedule[: len(losses)]
    smoothed_array = np.asarray(smoothed)
    # The point that triggered the stop is already past the useful range; read the curve without it.
    usable = slice(0, len(losses) - 1) if diverged and len(losses) > 2 else slice(None)
    return LRFinderResult(
        learning_rates=rates,
        losses=np.asarray(losses),
        smoothed_losses=smoothed_array,
        suggestions=lr_suggestions(rates[usable], smoothed_array[usable]),
        diverged=diverged,
    )


def plot_lr_find(result: LRFinderResult, path: str | None = None, *, ax: Any = None, title: str | None = None) -> Any:
    """Plots the loss against the learning rate (log axis) with the suggestions marked.

    Draws into ``ax`` if given, else into a new figure; writes a PNG to ``path`` if given.
    Returns the axes. Needs matplotlib, imported only here.
    """
    figure = None
    if ax is None:
        from matplotlib.figure import Figure  # no pyplot: no global state, no GUI backend needed

        figure = Figure(figsize=(6.4, 4.2))
        ax = figure.subplots()
    ax.plot(result.learning_rates, result.losses, color="0.75", linewidth=1, label="loss")
    ax.plot(result.learning_rates, result.smoothed_losses, color="C0", linewidth=2, label="smoothed loss")
    markers = {"steepest": ("C3", "o"), "valley": ("C2", "s"), "min_over_10": ("C1", "^")}
    for name, lr in result.suggestions.items():
        if not math.isfinite(lr):
            continue
        color, marker = markers.get(name, ("k", "x"))
        at = np.interp(np.log(lr), np.log(result.learning_rates), result.smoothed_losses)
        ax.plot([lr], [at], marker=marker, color=color, markersize=8, linestyle="none", label=f"{name}: {lr:.2e}")
    ax.set_xscale("log")
    ax.set_xlabel("learning rate (log scale)")
    ax.set_ylabel("training loss")
    # Frame the useful part: from the lowest loss to a little above the starting loss, so the final
    # blow-up does not squash the curve.
    curves = np.concatenate([result.losses, result.smoothed_losses])
    finite = curves[np.isfinite(curves)]
    if finite.size:
        low, start = float(finite.min()), float(result.smoothed_losses[0])
        span = max(start - low, 1e-6 * max(abs(start), 1.0))
        ax.set_ylim(low - 0.05 * span, start + 0.3 * span)
    ax.set_title(title or "Learning-rate range test")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(loc="best", fontsize="small")
    if path is not None:
        ax.figure.tight_layout()
        ax.figure.savefig(path, dpi=120)
    return ax
