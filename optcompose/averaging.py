"""Weight averaging: SWA and EMA of the parameters, SWALR annealing, BatchNorm re-estimation.

Stochastic Weight Averaging (Izmailov et al. 2018, "Averaging Weights Leads to Wider Optima and
Better Generalization") trains as usual, then keeps a running mean of the weights visited late in
training, usually under a constant or annealed-to-constant learning rate, and evaluates the mean.
Three pieces make that up, each usable on its own:

* :func:`swa` keeps the average: ``init(params) -> SWAState``, ``update(params, state) -> state``.
  Equal weights (``torch.optim.swa_utils.AveragedModel``) or an exponential moving average.
* :func:`swa_learning_rate_schedule` is a base schedule until ``swa_start``, then anneals to a
  constant ``swa_lr`` (``torch.optim.swa_utils.SWALR``).
* :func:`update_bn` recomputes a Flax model's BatchNorm statistics for the averaged weights with one
  pass over the data (``torch.optim.swa_utils.update_bn``): the running statistics gathered while
  training belong to other weights.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Iterable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from optcompose import _validate as validate
from optcompose._base import Params, Schedule
from optcompose._hyperparams import Hyperparams, HyperparamSpec
from optcompose._numerics import widen
from optcompose._tree import map as tree_map
from optcompose._tree import path_str, safe_increment, zeros_like
from optcompose.schedules import _count

__all__ = [
    "ParamAveraging",
    "SWAState",
    "swa",
    "swa_learning_rate_schedule",
    "update_bn",
]


class SWAState(NamedTuple):
    """The state of :func:`swa`.

    ``params`` is the averaged model (zeros until the first average is taken), ``n_averaged`` how
    many snapshots it holds, ``count`` how many times ``update`` was called. ``hyperparams``
    holds ``decay`` for an EMA and is empty for equal weights.
    """

    count: jax.Array
    n_averaged: jax.Array
    params: Any
    hyperparams: Hyperparams


class ParamAveraging(NamedTuple):
    """A pure parameter averager: ``init(params) -> state`` and ``update(params, state) -> state``."""

    init: Callable[[Params], SWAState]
    update: Callable[[Params, SWAState], SWAState]


def swa(
    swa_start: int = 0,
    swa_freq: int = 1,
    decay: float | None = None,
    accumulator_dtype: Any | None = None,
) -> ParamAveraging:
    """An average of the parameters seen from call ``swa_start`` on, every ``swa_freq`` calls.

    ``update`` is meant to be called once per step (or once per epoch, as in PyTorch's examples);
    call number ``k`` (counting from 0) takes a snapshot when ``k >= swa_start`` and
    ``(k - swa_start) % swa_freq == 0``. With ``n`` snapshots taken before, a snapshot ``w`` moves
    the average ``a`` to::

        a <- w                                  (first snapshot, n = 0)
        a <- a + (w - a) / (n + 1)              (decay=None: equal weights, the SWA mean)
        a <- decay * a + (1 - decay) * w        (decay given: exponential moving average)

    which is ``AveragedModel(model)`` and ``AveragedModel(model,
    multi_avg_fn=get_ema_multi_avg_fn(decay))`` of ``torch.optim.swa_utils``, calling
    ``update_parameters`` at the same steps. The arithmetic is float32 (or wider); the average is
    stored in ``accumulator_dtype`` or each parameter's dtype. ``update`` is jit-able: the
    schedule of snapshots is data, not Python control flow. ``decay`` is kept in the state, so
    ``set_hyperparams(state, decay=...)`` changes it without recompiling.
    """
    validate.integer_at_least("swa_start", swa_start, 0)
    validate.integer_at_least("swa_freq", swa_freq, 1)
    if decay is not None:
        if callable(decay):
            raise TypeError("decay must be a number in [0, 1], not a schedule")
        validate.unit_interval("decay", decay, closed_right=True)
    spec = HyperparamSpec() if decay is None else HyperparamSpec(decay=decay)

    def init(params: Params) -> SWAState:
        averaged = zeros_like(params, accumulator_dtype)
        zero = jnp.zeros((), jnp.int32)
        return SWAState(zero, zero, averaged, spec.init())

    def update(params: Params, state: SWAState) -> SWAState:
        since_start = state.count - swa_start
        take = (since_start >= 0) & (jnp.remainder(jnp.maximum(since_start, 0), swa_freq) == 0)
        if decay is None:
            weight = 1.0 / (state.n_averaged.astype(jnp.float32) + 1.0)
        else:
            weight = jnp.where(state.n_averaged == 0, 1.0, 1.0 - state.hyperparams["decay"])
        weight = jnp.where(take, weight, 0.0)

        def leaf(average, param):
            wide = widen(average)
            return (wide + weight * (widen(param) - wide)).astype(average.dtype)

        averaged = tree_map(leaf, state.params, params, names=("state.params", "params"))
        n_averaged = jnp.where(take, safe_increment(state.n_averaged), state.n_averaged)
        return SWAState(safe_increment(state.count), n_averaged, averaged, state.hyperparams)

    return ParamAveraging(init, update)


def swa_learning_rate_schedule(
    base_schedule: float | Schedule,
    swa_start: int,
    swa_lr: float,
    anneal_steps: int = 10,
    anneal_strategy: str = "cos",
) -> Schedule:
    """``base_schedule`` until ``swa_start``, then an annealing to the constant ``swa_lr``.

    With ``lr0 = base_schedule(swa_start)`` and ``k = count - swa_start >= 0``::

        lr(k) = lr0 + (swa_lr - lr0) * f(min(1, k / max(1, anneal_steps)))
        f(t) = (1 - cos(pi t)) / 2      (anneal_strategy="cos")
        f(t) = t                        (anneal_strategy="linear")

    so ``anneal_steps=0`` jumps to ``swa_lr`` one step after ``swa_start``. This is
    ``torch.optim.swa_utils.SWALR(optimizer, swa_lr, anneal_epochs=anneal_steps,
    anneal_strategy=...)`` stepped in place of the base scheduler from ``swa_start`` on, with a
    count in whatever unit the scheduler is stepped (steps or epochs).
    """
    validate.integer_at_least("swa_start", swa_start, 0)
    validate.integer_at_least("anneal_steps", anneal_steps, 0)
    validate.non_negative("swa_lr", swa_lr)
    validate.one_of("anneal_strategy", anneal_strategy, ("cos", "linear"))
    if not callable(base_schedule):
        validate.non_negative("base_schedule", base_schedule)
        constant = float(base_schedule)
        base_schedule = lambda count: jnp.full(jnp.shape(count), constant, jnp.float32)  # noqa: E731

    def schedule(count):
        count = _count.as_count(count)
        start_lr = jnp.asarray(base_schedule(jnp.full_like(count, swa_start)), jnp.float32)
        # k clipped to [0, max(1, anneal_steps)], computed without integer overflow.
        steps_in = _count.elapsed(count, swa_start, max(anneal_steps, 1))
        t = steps_in / max(anneal_steps, 1)
        fraction = (1.0 - jnp.cos(math.pi * t)) / 2.0 if anneal_strategy == "cos" else t
        annealed = start_lr + (swa_lr - start_lr) * fraction
        before = jnp.asarray(base_schedule(count), jnp.float32)
        return jnp.where(_count.reached(count, swa_start), annealed, before)

    return schedule


# --------------------------------------------------------------------------- BatchNorm statistics


def _batchnorm_momenta(record: dict[tuple[str, ...], float]) -> Callable[..., Any]:
    """A Flax method interceptor that records each BatchNorm's momentum by its scope path."""
    import flax.linen as nn

    def interceptor(next_fun, args, kwargs, context):
        module = context.module
        if isinstance(module, nn.BatchNorm) and context.method_name == "__call__" and module.scope is not None:
            path = tuple(module.scope.path)
            frozen = kwargs.get("use_running_average", args[1] if len(args) > 1 else None)
            frozen = module.use_running_average if frozen is None else frozen
            if frozen:
                raise ValueError(
                    f"the BatchNorm at {'/'.join(path)} ran with use_running_average=True, so it computed no "
                    "batch statistics; pass update_bn the keyword that puts the model in training mode, "
                    "such as update_bn(model.apply, variables, batches, train=True)"
                )
            record[path] = float(module.momentum)
        return next_fun(*args, **kwargs)

    return interceptor


def _first_input(batch: Any) -> Any:
    return batch[0] if isinstance(batch, (tuple, list)) else batch


def _accumulator(apply_fn: Callable[..., Any], collection: str, apply_kwargs: tuple) -> Callable[..., Any]:
    """The jitted step ``(s_{k-1}, variables, x_k, k) -> s_k`` of :func:`update_bn`."""
    import flax.linen as nn

    momenta: dict[tuple[str, ...], float] = {}  # filled while tracing, by the interceptor

    def batch_statistics(variables, x):
        zeros = jax.tree.map(jnp.zeros_like, variables[collection])
        with nn.intercept_methods(_batchnorm_momenta(momenta)):
            _, mutated = apply_fn({**variables, collection: zeros}, x, mutable=[collection], **dict(apply_kwargs))

        def recover(path, value):
            keys = tuple(getattr(k, "key", getattr(k, "name", k)) for k in path)
            module_path = tuple(str(k) for k in keys[:-1])
            if module_path not in momenta:
                raise ValueError(
                    f"{collection}{path_str(path)} does not belong to a flax.linen.BatchNorm called by "
                    "apply_fn; update_bn can only recompute BatchNorm statistics"
                )
            momentum = momenta[module_path]
            if momentum >= 1.0:
                raise ValueError(f"the BatchNorm at {module_path} has momentum {momentum}: its statistics never change")
            return (widen(value) / (1.0 - momentum)).astype(jnp.asarray(value).dtype)

        return jax.tree_util.tree_map_with_path(recover, mutated[collection])

    @jax.jit
    def accumulate(average, variables, x, seen):
        weight = 1.0 / seen.astype(jnp.float32)
        stats = batch_statistics(variables, x)
        return jax.tree.map(lambda a, b: (widen(a) + weight * (widen(b) - widen(a))).astype(b.dtype), average, stats)

    return accumulate


# Calling update_bn once per epoch with the same model must not recompile every time.
_cached_accumulator = functools.lru_cache(maxsize=16)(_accumulator)


def update_bn(
    apply_fn: Callable[..., Any],
    variables: Any,
    batches: Iterable[Any],
    *,
    collection: str = "batch_stats",
    **apply_kwargs: Any,
) -> Any:
    """``variables`` with every Flax ``BatchNorm``'s statistics recomputed in one pass over ``batches``.

    For each batch ``x_k`` (a tuple or list batch contributes its first element) the model runs
    in training mode, ``apply_fn(variables, x_k, mutable=[collection], **apply_kwargs)`` (pass the
    flag your model needs, such as ``train=True``), and each BatchNorm's batch mean and variance
    ``b_k`` enter a cumulative average with equal weights::

        s_k = s_{k-1} + (b_k - s_{k-1}) / k,    s_0 = 0

    so that ``s_K`` is the plain mean of the per-batch statistics, whatever the modules'
    ``momentum``. This is ``torch.optim.swa_utils.update_bn``, which resets the running statistics
    and sets ``momentum=None``; one difference remains: Flax's variance is the biased batch
    variance, PyTorch's running variance the unbiased one.

    Flax exposes only the momentum-weighted new statistics ``m * old + (1 - m) * b``; running with
    ``old = 0`` and each module's ``momentum`` (read with ``flax.linen.intercept_methods``) gives
    ``b``. The pass is jitted once for all batches of one shape, and the compiled function is
    reused by later calls with the same ``apply_fn`` and keyword arguments.
    """
    import flax

    variables = flax.core.unfreeze(variables)
    if collection not in variables:
        raise ValueError(f"variables has no {collection!r} collection to update; its collections are {list(variables)}")
    try:
        accumulate = _cached_accumulator(apply_fn, collection, tuple(sorted(apply_kwargs.items())))
    except TypeError:  # an unhashable apply_fn or keyword value: build (and compile) afresh
        accumulate = _accumulator(apply_fn, collection, tuple(sorted(apply_kwargs.items())))

    # s_0 = 0 makes the first step s_1 = b_1 exactly, so one compiled function serves every batch.
    average = jax.tree.map(jnp.zeros_like, variables[collection])
    seen = 0
    for batch in batches:
        seen += 1
        average = accumulate(average, variables, _first_input(batch), jnp.asarray(seen, jnp.int32))
    if seen == 0:
        raise ValueError("batches is empty: update_bn needs at least one batch")
    return {**variables, collection: average}
