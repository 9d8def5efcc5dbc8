"""``inject_hyperparams``: Optax's wrapper that turns a factory's arguments into optimizer state.

Every optcompose transform already keeps its numeric hyperparameters in its state, so
``get_hyperparams`` / ``set_hyperparams`` work on any optimizer without a wrapper. This module
exists for code written against Optax: ``inject_hyperparams(adam)(learning_rate=...)`` behaves as
``optax.inject_hyperparams`` does, with the values in ``state.hyperparams``.

How it works. The factory's arguments are split three ways:

* numeric values (Python or NumPy numbers, arrays) become state data, ``state.hyperparams[name]``;
  floats are stored as ``hyperparam_dtype`` (default float32), integers keep an integer type;
* callables are schedules of the wrapper's step count ``t``: the update at ``t`` uses
  ``schedule(t)`` (unless the argument is named in ``static_args``);
* everything else (``None``, booleans, dtypes, masks, strings, ``static_args``) stays static.

At every update the inner transform is rebuilt from the current values. Because optcompose
transforms read their constants from the ``Hyperparams`` nodes of their own state (not from the
closure), the wrapper also copies the freshly built transform's nodes into the inner state before
calling its ``update``; otherwise a changed value would never reach the arithmetic. Under ``jit``
the rebuild is tracing work only: the new values are traced data, so changing them does not
recompile, and the zero-filled rest of the fresh state is dead code that XLA removes (run eagerly,
the wrapper does allocate it once per update: jit the step).

Changing a value: ``set_hyperparams(state, b1=0.95)`` keeps the stored dtype, so the jitted step
is reused. Assigning ``state.hyperparams['b1'] = 0.95`` (Optax's idiom) also works; a Python
float is a weakly typed value to ``jit``, which traces the step once more (assign
``jnp.float32(0.95)`` to avoid that), as with Optax.

Timing, as in Optax: after an update, ``state.hyperparams`` holds the values *that update used*
(a schedule evaluated at the count before the increment). ``optcompose.get_hyperparams`` answers a
different question, the values the *next* update will use; for scheduled entries the state keeps
those too (``state.hyperparams.upcoming``), so both questions have exact answers.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from optcompose._base import GradientTransformation, GradientTransformationExtraArgs, call_update
from optcompose._hyperparams import HYPERPARAM_DTYPE, Hyperparams, InjectHyperparamsState, record_next_value
from optcompose._tree import safe_increment


def _is_numeric(value: Any) -> bool:
    if isinstance(value, (bool, np.bool_)):
        return False
    if isinstance(value, (int, float, np.number)):
        return True
    if isinstance(value, (jax.Array, np.ndarray)):
        return bool(jnp.issubdtype(value.dtype, jnp.number))
    return False


def _as_data(value: Any, float_dtype: Any) -> jax.Array:
    """A numeric value as an array: floats in ``float_dtype``, integers keep an integer type."""
    array = jnp.asarray(value)
    if jnp.issubdtype(array.dtype, jnp.floating):
        return array.astype(float_dtype)
    return array


def _call(factory: Callable[..., Any], signature: inspect.Signature, arguments: Mapping[str, Any]) -> Any:
    """Calls ``factory`` with bound ``arguments``, spreading ``*args`` / ``**kwargs`` entries."""
    positional: list[Any] = []
    keywords: dict[str, Any] = {}
    for name, parameter in signature.parameters.items():
        if name not in arguments:
            continue
        value = arguments[name]
        if parameter.kind is inspect.Parameter.POSITIONAL_ONLY:
            positional.append(value)
        elif parameter.kind is inspect.Parameter.VAR_POSITIONAL:
            positional.extend(value)
        elif parameter.kind is inspect.Parameter.VAR_KEYWORD:
            keywords.update(value)
        else:
            keywords[name] = value
    return factory(*positional, **keywords)


def _refresh(inner_state: Any, fresh_state: Any) -> Any:
    """``inner_state`` with every ``Hyperparams`` node taken from ``fresh_state``."""
    is_node = lambda x: isinstance(x, Hyperparams)  # noqa: E731
    try:
        return jax.tree.map(lambda old, new: new if is_node(old) else old, inner_state, fresh_state, is_leaf=is_node)
    except ValueError as err:
        raise ValueError(
            "the inner state of inject_hyperparams does not have the structure of the inner "
            "transform's state (was it built by another optimizer?)"
        ) from err


def inject_hyperparams(
    inner_factory: Callable[..., GradientTransformation],
    static_args: str | Iterable[str] = (),
    hyperparam_dtype: Any | None = None,
) -> Callable[..., GradientTransformation]:
    """Wraps ``inner_factory`` so that its numeric arguments live in the state (Optax's API).

    ``inject_hyperparams(adam)(learning_rate=schedule, b1=0.9)`` returns a transform whose state is
    ``InjectHyperparamsState(count, hyperparams, inner_state)``. ``state.hyperparams`` is a dict:
    after ``init`` it holds the values the first update uses, after each update the values that
    update used; assigning ``state.hyperparams['b1'] = 0.95`` (or calling ``set_hyperparams``)
    changes a constant from the next update on. Scheduled entries follow their schedule; setting
    one has no effect in Optax and raises in ``set_hyperparams``.

    Args:
      inner_factory: a function returning a ``GradientTransformation``, such as ``adamw``.
      static_args: names of arguments to pass through unchanged even if callable or numeric
        (a callable argument is otherwise treated as a schedule).
      hyperparam_dtype: the dtype floats are stored in (default float32; the transforms compute in
        float32 whatever the parameters' dtype). Beware bfloat16: it rounds ``b2 = 0.999`` to 1.

    Returns:
      A factory taking ``inner_factory``'s arguments, where any numeric argument may also be a
      schedule ``t -> value``.
    """
    static = {static_args} if isinstance(static_args, str) else set(static_args)
    signature = inspect.signature(inner_factory)
    unknown = static - set(signature.parameters)
    if unknown:
        raise ValueError(
            f"static_args names {sorted(unknown)}, which are not parameters of "
            f"{getattr(inner_factory, '__name__', inner_factory)!r}; its parameters are "
            f"{list(signature.parameters)}"
        )
    float_dtype = HYPERPARAM_DTYPE if hyperparam_dtype is None else hyperparam_dtype

    @functools.wraps(inner_factory)
    def wrapped(*args: Any, **kwargs: Any) -> GradientTransformation:
        bound = signature.bind(*args, **kwargs)
        bound.apply_defaults()
        numeric, schedules, fixed = {}, {}, {}
        for name, value in bound.arguments.items():
            kind = signature.parameters[name].kind
            variadic = kind in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
            if name in static or variadic:
                fixed[name] = value
            elif callable(value):
                schedules[name] = value
            elif _is_numeric(value):
                numeric[name] = value
            else:
                fixed[name] = value

        def evaluate(count: jax.Array) -> dict[str, jax.Array]:
            return {name: _as_data(schedule(count), float_dtype) for name, schedule in schedules.items()}

        def build(values: Mapping[str, Any]) -> GradientTransformation:
            return _call(inner_factory, signature, {**fixed, **values})

        def init(params):
            count = jnp.zeros((), jnp.int32)
            values = {name: _as_data(value, float_dtype) for name, value in numeric.items()}
            values.update(evaluate(count))
            inner_state = build(values).init(params)
            hyperparams = Hyperparams(values, frozenset(schedules), {name: values[name] for name in schedules})
            return InjectHyperparamsState(count, hyperparams, inner_state)

        def update(updates, state, params=None, **extra_args):
            stored = state.hyperparams
            missing = [name for name in numeric if name not in stored]
            if missing:
                raise KeyError(f"state.hyperparams lacks {missing}; it must keep every numeric argument")
            # Values set by the user keep their dtype family (a Python float becomes float_dtype).
            values = {name: _as_data(stored[name], float_dtype) for name in numeric}
            values.update(evaluate(state.count))
            upcoming = getattr(stored, "upcoming", stored)
            for name in schedules:
                record_next_value(upcoming.get(name), values[name])
            inner = build(values)
            # Fresh Hyperparams nodes carry the new values; under jit the rest of init is dead code.
            fresh = inner.init(params if params is not None else updates)
            inner_state = _refresh(state.inner_state, fresh)
            updates, inner_state = call_update(inner, updates, inner_state, params, extra_args)
            count = safe_increment(state.count)
            hyperparams = Hyperparams(values, frozenset(schedules), evaluate(count))
            return updates, InjectHyperparamsState(count, hyperparams, inner_state)

        return GradientTransformationExtraArgs(init, update)

    return wrapped
