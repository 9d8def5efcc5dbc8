"""Evaluate a function on a batch in sequential slices (micro-batches) and combine the results.

``microbatch(fun, argnums, microbatch_size)`` runs ``fun`` on ``batch_size / microbatch_size``
slices of its batch arguments in a ``lax.fori_loop`` and combines the outputs with an
``Accumulator`` (sum, mean, running mean or concatenation): the same result as one call on the
whole batch, with the memory of one slice. ``micro_vmap`` is ``vmap`` done that way, and
``micro_grad`` computes per-example gradients that way (transformed, e.g. clipped, then reduced).

Slices are strided: with ``n`` micro-batches, slice ``i`` holds examples ``i, i + n, i + 2n, ...``
(a column-major reshape of the batch axis), so a batch axis sharded over devices stays sharded
inside each slice.
"""

from __future__ import annotations

import collections
import dataclasses
import enum
import functools
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp

Function = Callable[..., Any]
IndividualOutputs = collections.namedtuple("Aux", ["values", "metrics", "aux"])
"""The per-example outputs of ``micro_grad``: ``values`` (of ``fun``), ``metrics``, ``aux``."""


@dataclasses.dataclass(frozen=True)
class Accumulator:
    """How the outputs ``x_0 .. x_{n-1}`` of the micro-batches are combined::

        carry = init(shape of x_0);  carry = update(carry, x_i, i) for each i;  result = finalize(carry)

    ``aggregate(stacked)`` does the same reduction on outputs stacked along a new axis 0 (used by
    ``micro_vmap`` inside one micro-batch).
    """

    init: Callable[[Any], Any]
    update: Callable[[Any, Any, Any], Any]
    finalize: Callable[[Any], Any]
    aggregate: Callable[[Any], Any]


class AccumulationType(enum.Enum):
    """The built-in ways of combining micro-batch outputs."""

    MEAN = enum.auto()
    """The mean of the outputs (floating point)."""
    SUM = enum.auto()
    """Their sum."""
    RUNNING_MEAN = enum.auto()
    """Their mean over the micro-batches actually run (``num_real_microbatches``), kept as a running mean."""
    CONCAT = enum.auto()
    """Their concatenation along axis 0, in the original batch order."""


def _require_floating(fn: Callable[..., Any]) -> Callable[..., Any]:
    def checked(*args, **kwargs):
        for leaf in jax.tree.leaves((args, kwargs)):
            if not jnp.issubdtype(leaf.dtype, jnp.floating):
                raise ValueError(f"MEAN and RUNNING_MEAN Accumulators require floating-point values, got {leaf.dtype}")
        return fn(*args, **kwargs)

    return checked


def _per_leaf(acc: Accumulator) -> Accumulator:
    """``acc`` (on arrays) applied to every leaf of a pytree."""
    return Accumulator(
        init=lambda value: jax.tree.map(acc.init, value),
        update=lambda carry, value, i: jax.tree.map(lambda c, v: acc.update(c, v, i), carry, value),
        finalize=lambda carry: jax.tree.map(acc.finalize, carry),
        aggregate=lambda values: jax.tree.map(acc.aggregate, values),
    )


def _sum() -> Accumulator:
    add = lambda carry, value, _: carry + value
    return _per_leaf(Accumulator(jnp.zeros_like, add, lambda carry: carry, functools.partial(jnp.sum, axis=0)))


def _mean(count: int) -> Accumulator:
    if count <= 0:
        raise ValueError(f"num_microbatches={count} must be positive.")
    return _per_leaf(Accumulator(_require_floating(jnp.zeros_like), lambda c, v, _: c + v, lambda c: c / count,
                                 functools.partial(jnp.mean, axis=0)))  # fmt: skip


def _running_mean() -> Accumulator:
    def update(carry, value, index):
        weight = index / (index + 1)  # mean_i = mean_{i-1} * i / (i + 1) + x_i / (i + 1)
        return carry * weight + value * (1 - weight)

    return _per_leaf(Accumulator(_require_floating(jnp.zeros_like), update, lambda c: c,
                                 functools.partial(jnp.mean, axis=0)))  # fmt: skip


def _concat(count: int) -> Accumulator:
    if count <= 0:
        raise ValueError(f"num_microbatches={count} must be positive.")

    def init(value):
        return jnp.zeros((count, *jnp.shape(value)), jnp.result_type(value))

    def finalize(carry):
        # carry[i, j] is example i + count * j (the strided slices): undo the column-major split.
        return carry.reshape(-1, *carry.shape[2:], order="F")

    return _per_leaf(Accumulator(init, lambda c, v, i: c.at[i].set(v), finalize, lambda x: x))


def _resolve(spec: Any, count: int | None) -> Accumulator:
    """One Accumulator from an Accumulator, an AccumulationType, or a pytree (prefix) of them."""

    def one(item):
        if isinstance(item, Accumulator):
            return item
        if item is AccumulationType.MEAN:
            return _mean(count)
        if item is AccumulationType.SUM:
            return _sum()
        if item is AccumulationType.RUNNING_MEAN:
            return _running_mean()
        if item is AccumulationType.CONCAT:
            return _concat(count)
        raise ValueError(f"Unknown accumulator: {item!r} (an Accumulator or an AccumulationType)")

    is_item = lambda x: isinstance(x, (Accumulator, AccumulationType))
    parts = jax.tree.map(one, spec, is_leaf=is_item)
    is_acc = lambda x: isinstance(x, Accumulator)

    def over(fn_name, *trees):
        return jax.tree.map(lambda acc, *xs: getattr(acc, fn_name)(*xs), parts, *trees, is_leaf=is_acc)

    return Accumulator(
        init=lambda value: over("init", value),
        update=lambda carry, value, i: jax.tree.map(lambda acc, c, v: acc.update(c, v, i), parts, carry, value,
                                                    is_leaf=is_acc),  # fmt: skip
        finalize=lambda carry: over("finalize", carry),
        aggregate=lambda values: over("aggregate", values),
    )


def reshape_batch_axis(tree: Any, microbatch_size: int, axis: int = 0) -> Any:
    """Splits each leaf's batch axis ``B`` into ``(B // microbatch_size, microbatch_size)`` at ``axis``.

    The split is column-major: entry ``(i, j)`` is example ``i + j * (B // microbatch_size)``, so
    micro-batch ``i`` takes every ``n``-th example starting at ``i`` (and a batch sharded over
    devices stays sharded along the new ``microbatch_size`` axis).

    Args:
      tree: a pytree of arrays with a batch axis at ``axis``.
      microbatch_size: the size of each micro-batch (must divide ``B``).
      axis: the batch axis.

    Returns:
      The reshaped pytree.
    """

    def leaf(x):
        x = jnp.asarray(x)
        return x.reshape((*x.shape[:axis], -1, microbatch_size, *x.shape[axis + 1 :]), order="F")

    return jax.tree.map(leaf, tree)


def _as_tuple(value: Any) -> tuple[Any, ...]:
    return (value,) if isinstance(value, (int, str)) else tuple(value)


def microbatch(
    fun: Function,
    argnums: int | Sequence[int],
    microbatch_size: int | None,
    accumulator: Accumulator | AccumulationType | Any = AccumulationType.SUM,
    *,
    argnames: str | Sequence[str] = (),
    in_axes: int | Sequence[int] = 0,
    num_real_microbatches: int | jax.Array | None = None,
) -> Function:
    """``fun`` evaluated on micro-batches of its batch arguments in sequence, the outputs combined::

        out = finalize(fold(update, [fun(slice_i) for i in range(B // microbatch_size)], init))

    With ``SUM`` for a sum over examples, ``MEAN`` for a mean, ``CONCAT`` for per-example outputs,
    the result equals ``fun`` on the whole batch; peak memory is that of one micro-batch.

    Args:
      fun: any function.
      argnums: positions of the arguments with a batch axis.
      microbatch_size: examples per micro-batch (must divide the batch size); ``None`` returns
        ``fun`` itself.
      accumulator: an ``Accumulator``, an ``AccumulationType``, or a pytree (prefix of ``fun``'s
        output) of them.
      argnames: keyword arguments with a batch axis.
      in_axes: the batch axis of each of ``argnums + argnames`` (one int for all).
      num_real_microbatches: stop after this many micro-batches (a traced value is fine: variable
        batch sizes without recompiling).

    Returns:
      The microbatched function, with ``fun``'s arguments.

    Raises ``ValueError`` when the batch arguments' batch sizes differ or are not divisible.
    """
    if microbatch_size is None:
        return fun
    argnums, argnames = _as_tuple(argnums), _as_tuple(argnames)
    axes = (in_axes,) * (len(argnums) + len(argnames)) if isinstance(in_axes, int) else tuple(in_axes)
    if len(axes) != len(argnums) + len(argnames):
        raise ValueError(f"in_axes has {len(axes)} entries for {len(argnums) + len(argnames)} batch arguments")
    positional_axes, keyword_axes = axes[: len(argnums)], axes[len(argnums) :]

    def microbatched(*args, **kwargs):
        batched = [(args[i], ax) for i, ax in zip(argnums, positional_axes, strict=True)]
        batched += [(kwargs[n], ax) for n, ax in zip(argnames, keyword_axes, strict=True)]
        sizes = [jnp.shape(x)[ax] for tree, ax in batched for x in jax.tree.leaves(tree)]
        if len(set(sizes)) > 1:
            raise ValueError(f"Batch Arguments must have equal-size batch axes, found {tuple(sizes)}.")
        if not sizes:
            raise ValueError("microbatch found no arrays in the batch arguments")
        batch_size = sizes[0]
        if batch_size % microbatch_size != 0:
            raise ValueError(f"batch_size={batch_size} must be divisible by microbatch_size={microbatch_size}.")
        count = batch_size // microbatch_size
        args, kwargs = list(args), dict(kwargs)
        for i, ax in zip(argnums, positional_axes, strict=True):
            args[i] = reshape_batch_axis(args[i], microbatch_size, ax)
        for n, ax in zip(argnames, keyword_axes, strict=True):
            kwargs[n] = reshape_batch_axis(kwargs[n], microbatch_size, ax)
        acc = _resolve(accumulator, count)

        def on_slice(index):
            sliced_args, sliced_kwargs = list(args), dict(kwargs)
            for i, ax in zip(argnums, positional_axes, strict=True):
                sliced_args[i] = jax.tree.map(lambda x, ax=ax: jnp.take(x, index, axis=ax), args[i])
            for n, ax in zip(argnames, keyword_axes, strict=True):
                sliced_kwargs[n] = jax.tree.map(lambda x, ax=ax: jnp.take(x, index, axis=ax), kwargs[n])
            return fun(*sliced_args, **sliced_kwargs)

        stop = count if num_real_microbatches is None else num_real_microbatches
        carry = jax.lax.fori_loop(0, stop, lambda i, c: acc.update(c, on_slice(i), i),
                                  acc.init(jax.eval_shape(on_slice, 0)))  # fmt: skip
        return acc.finalize(carry)

    return microbatched


def micro_vmap(
    fun: Function,
    in_axes: int | Sequence[int | None] = 0,
    out_axes: Any = 0,
    *,
    microbatch_size: int | None = None,
    vmap_fn: Callable[..., Function] = jax.vmap,
    accumulator: Accumulator | AccumulationType | Any = AccumulationType.CONCAT,
    num_real_microbatches: int | jax.Array | None = None,
) -> Function:
    """``jax.vmap`` over micro-batches: ``vmap(fun)`` on one slice at a time, outputs combined.

    With the default ``CONCAT`` this is ``vmap(fun, in_axes)``; ``SUM`` / ``MEAN`` reduce over the
    mapped axis without ever holding every example's output.

    Args:
      fun: the function to map.
      in_axes: the mapped axis of each positional argument (``None``: not mapped); keyword
        arguments are mapped along axis 0.
      out_axes: must be 0.
      microbatch_size: examples per micro-batch (``None``: one ``vmap`` over everything).
      vmap_fn: a ``jax.vmap``-like function ``vmap_fn(fun, in_axes, out_axes)``.
      accumulator: how per-example outputs are combined (a pytree prefix of the output allowed).
      num_real_microbatches: stop after this many micro-batches.

    Returns:
      The mapped function.
    """
    if out_axes != 0:
        raise NotImplementedError("out_axis != 0 is not currently supported")
    in_axes = (in_axes,) if isinstance(in_axes, int) else tuple(in_axes)

    def mapped_then_reduced(*args, kwargs):
        output = vmap_fn(fun, in_axes, out_axes)(*args, **kwargs)
        per_slice = jax.tree.leaves(output)[0].shape[0]
        return _resolve(accumulator, per_slice).aggregate(output)

    mapped = microbatch(
        mapped_then_reduced,
        argnums=tuple(i for i, ax in enumerate(in_axes) if ax is not None),
        argnames="kwargs",
        microbatch_size=microbatch_size,
        accumulator=accumulator,
        in_axes=tuple(ax for ax in in_axes if ax is not None) + (0,),
        num_real_microbatches=num_real_microbatches,
    )

    def wrapped(*args, **kwargs):
        return mapped(*args, kwargs=kwargs)

    return wrapped


def micro_grad(
    fun: Function,
    has_aux: bool = False,
    argnums: int | Sequence[int] = 0,
    *,
    batch_argnums: int | Sequence[int] = 1,
    keep_batch_dim: bool = True,
    microbatch_size: int | None = None,
    accumulator: Accumulator | AccumulationType | Any = AccumulationType.SUM,
    transform_fn: Callable[[Any], Any] = lambda x: x,
    metrics_fn: Callable[[Any], Any] = lambda x: None,
    num_real_microbatches: int | jax.Array | None = None,
) -> Callable[..., tuple[Any, Any]]:
    """Per-example gradients, each transformed (``transform_fn``: clip, square ...) and then combined.

    ``g_i = grad fun(params, example_i)``; returns ``(accumulate_i transform_fn(g_i), aux)`` with
    ``aux = Aux(values=[fun_i], metrics=[metrics_fn(g_i)], aux=[fun's aux_i])`` per example. With the
    default SUM and identity transform the gradient equals ``grad`` of the summed per-example
    losses; DP-SGD clips each ``g_i`` in ``transform_fn`` (Abadi et al. 2016).

    Args:
      fun: ``fun(params, batch, ...) -> loss`` (or ``(loss, aux)`` with ``has_aux``).
      has_aux: whether ``fun`` returns an auxiliary output.
      argnums: the argument(s) to differentiate.
      batch_argnums: the argument(s) with a batch axis (axis 0).
      keep_batch_dim: give ``fun`` each example with a batch axis of size 1.
      microbatch_size: examples per micro-batch (``None``: all at once).
      accumulator: how the transformed gradients are combined.
      transform_fn: applied to each example's gradient.
      metrics_fn: applied to each example's gradient; returned per example.
      num_real_microbatches: stop after this many micro-batches.

    Returns:
      ``fn(*args, **kwargs) -> (combined_gradients, Aux(values, metrics, aux))``.
    """
    batch_argnums = _as_tuple(batch_argnums)
    with_aux = fun if has_aux else (lambda *a, **k: (fun(*a, **k), None))
    value_and_grad = jax.value_and_grad(with_aux, argnums, has_aux=True)

    def per_example(*args, **kwargs):
        (value, aux), grad = value_and_grad(*args, **kwargs)
        return transform_fn(grad), IndividualOutputs(values=value, metrics=metrics_fn(grad), aux=aux)

    in_axes = [None] * (max(batch_argnums) + 1)
    for i in batch_argnums:
        in_axes[i] = 0
    mapped = micro_vmap(per_example, in_axes=in_axes, accumulator=(accumulator, AccumulationType.CONCAT),
                        microbatch_size=microbatch_size, num_real_microbatches=num_real_microbatches)  # fmt: skip
    if not keep_batch_dim:
        return mapped

    def with_batch_axis(*args, **kwargs):
        args = list(args)
        for i in batch_argnums:
            args[i] = jax.tree.map(lambda x: jnp.expand_dims(x, axis=1), args[i])
        return mapped(*args, **kwargs)

    return with_batch_axis
