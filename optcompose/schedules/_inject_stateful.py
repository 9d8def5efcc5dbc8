"""``inject_stateful_hyperparams``: ``inject_hyperparams`` for schedules that keep a state.

A plain schedule is a function of the step count. A *stateful* schedule (Optax's
``StatefulSchedule`` protocol) keeps its own state, which it may update from the extra keyword
arguments of the optimizer's ``update`` (a loss, say)::

    state = schedule.init()
    value = schedule(state, **extra_args)            # the value this update uses
    state = schedule.update(state, **extra_args)     # the state the next update starts from

``inject_stateful_hyperparams(factory)(learning_rate=schedule, ...)`` works as
:func:`inject_hyperparams` (see :mod:`optcompose.schedules._inject`: numeric arguments become
float32 state data, the inner transform is rebuilt from the current values at every update, its
``Hyperparams`` nodes refreshed) and in addition keeps one state per scheduled argument in
``state.hyperparams_states``. A plain callable is wrapped in :class:`WrappedSchedule`, whose state
is the step count, so it gives exactly the values it gives under ``inject_hyperparams``.

Timing, as in Optax: after an update ``state.hyperparams`` holds the values *that update used*;
``state.hyperparams.upcoming`` holds each schedule's value at its new state, evaluated with the
extra arguments of the update just made (exact for schedules whose value depends on their state
only, such as every :class:`WrappedSchedule`).

Unlike Optax 0.2.8, where ``inject_stateful_hyperparams`` is a deprecated alias of its
``inject_hyperparams``, here the two are separate: ``inject_hyperparams`` keeps the
three-field ``InjectHyperparamsState`` and takes plain schedules only.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Iterable, Mapping
from typing import Any, NamedTuple, Protocol, runtime_checkable

import jax
import jax.numpy as jnp

from optcompose._base import GradientTransformation, GradientTransformationExtraArgs, OptState, Schedule, call_update
from optcompose._hyperparams import HYPERPARAM_DTYPE, Hyperparams
from optcompose._tree import safe_increment
from optcompose.schedules._inject import _as_data, _call, _is_numeric, _refresh

ScheduleState = Any
"""The state of a stateful schedule: any pytree (a NamedTuple for those built here)."""


@runtime_checkable
class StatefulSchedule(Protocol):
    """A schedule with a state of its own (Optax's protocol): ``init``, ``update`` and a call.

    Any object with these three methods is one (checked structurally, ``isinstance`` works).
    """

    def init(self) -> ScheduleState:
        """The state before the first update."""

    def update(self, state: ScheduleState, **extra_args: Any) -> ScheduleState:
        """The state after an update, from the state before it and the update's extra arguments."""

    def __call__(self, state: ScheduleState, **extra_args: Any) -> jax.typing.ArrayLike:
        """The value an update made from ``state`` uses."""


class WrappedScheduleState(NamedTuple):
    """State of :class:`WrappedSchedule`: the number of updates made (int32, saturating)."""

    count: jax.Array


class WrappedSchedule:
    """A plain schedule ``t -> value`` as a :class:`StatefulSchedule` whose state is the count ``t``.

    ``init()`` is count 0, ``update`` adds 1 (saturating at the int32 maximum), and the value is
    ``schedule_fn(count)``; extra arguments are ignored. As ``optax.WrappedSchedule``.
    """

    def __init__(self, schedule_fn: Schedule):
        if not callable(schedule_fn):
            raise TypeError(f"schedule_fn must be a schedule (a function of the step count), got {schedule_fn!r}")
        self.schedule_fn = schedule_fn

    def init(self) -> WrappedScheduleState:
        return WrappedScheduleState(count=jnp.zeros((), jnp.int32))

    def update(self, state: WrappedScheduleState, **extra_args: Any) -> WrappedScheduleState:
        del extra_args
        return WrappedScheduleState(count=safe_increment(jnp.asarray(state.count)))

    def __call__(self, state: WrappedScheduleState, **extra_args: Any) -> jax.typing.ArrayLike:
        del extra_args
        return self.schedule_fn(state.count)

    def __repr__(self) -> str:
        return f"WrappedSchedule({self.schedule_fn!r})"


class InjectStatefulHyperparamsState(NamedTuple):
    """State of ``inject_stateful_hyperparams``: count, values, the schedules' states, inner state."""

    count: jax.Array
    """Number of updates made (int32, saturating)."""
    hyperparams: Hyperparams
    """The numeric arguments as data: after ``init`` the values the first update uses, after an
    update the values that update used (``.upcoming``: the scheduled ones for the next update)."""
    hyperparams_states: dict[str, ScheduleState]
    """One state per scheduled argument, by argument name."""
    inner_state: OptState
    """The inner transform's state."""


def inject_stateful_hyperparams(
    inner_factory: Callable[..., GradientTransformation],
    static_args: str | Iterable[str] = (),
    hyperparam_dtype: Any | None = None,
) -> Callable[..., GradientTransformationExtraArgs]:
    """Wraps ``inner_factory`` so its numeric arguments live in the state, stateful schedules too.

    ``inject_stateful_hyperparams(adam)(learning_rate=schedule, b1=0.9)`` returns a transform with
    state ``InjectStatefulHyperparamsState(count, hyperparams, hyperparams_states, inner_state)``.
    An argument may be a number (stored as data; ``state.hyperparams['b1'] = 0.95`` or
    ``set_hyperparams``-style replacement changes it from the next update on), a plain schedule of
    the step count (wrapped in :class:`WrappedSchedule`), or a :class:`StatefulSchedule`: the
    update made from schedule state ``s`` uses ``schedule(s, **extra_args)`` and leaves
    ``schedule.update(s, **extra_args)``, where ``extra_args`` are the keyword arguments given to
    ``update`` (passed on to the inner transform too, when it accepts them).

    Args:
      inner_factory: a function returning a ``GradientTransformation``, such as ``adamw``.
      static_args: names of arguments to pass through unchanged even if callable or numeric.
      hyperparam_dtype: the dtype floats are stored in (default float32).

    Returns:
      A factory taking ``inner_factory``'s arguments, returning a
      ``GradientTransformationExtraArgs``.

    Raises:
      ValueError: if ``static_args`` names something that is not a parameter of ``inner_factory``.
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
    def wrapped(*args: Any, **kwargs: Any) -> GradientTransformationExtraArgs:
        bound = signature.bind(*args, **kwargs)
        bound.apply_defaults()
        numeric: dict[str, Any] = {}
        schedules: dict[str, StatefulSchedule] = {}
        fixed: dict[str, Any] = {}
        for name, value in bound.arguments.items():
            kind = signature.parameters[name].kind
            variadic = kind in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
            if name in static or variadic:
                fixed[name] = value
            elif isinstance(value, StatefulSchedule) and not isinstance(value, type):
                schedules[name] = value
            elif callable(value):
                schedules[name] = WrappedSchedule(value)
            elif _is_numeric(value):
                numeric[name] = value
            else:
                fixed[name] = value
        scheduled = frozenset(schedules)

        def evaluate(states: Mapping[str, Any], extra_args: Mapping[str, Any]) -> dict[str, jax.Array]:
            return {
                name: _as_data(schedule(states[name], **extra_args), float_dtype)
                for name, schedule in schedules.items()
            }

        def build(values: Mapping[str, Any]) -> GradientTransformation:
            return _call(inner_factory, signature, {**fixed, **values})

        def init(params):
            states = {name: schedule.init() for name, schedule in schedules.items()}
            values = {name: _as_data(value, float_dtype) for name, value in numeric.items()}
            values.update(evaluate(states, {}))
            inner_state = build(values).init(params)
            # ``upcoming`` filled from the start, so the state keeps one structure (lax.scan carries it).
            hyperparams = Hyperparams(values, scheduled, {name: values[name] for name in schedules})
            return InjectStatefulHyperparamsState(jnp.zeros((), jnp.int32), hyperparams, states, inner_state)

        def update(updates, state, params=None, **extra_args):
            stored, states = state.hyperparams, state.hyperparams_states
            missing = [name for name in numeric if name not in stored]
            if missing:
                raise KeyError(f"state.hyperparams lacks {missing}; it must keep every numeric argument")
            missing = [name for name in schedules if name not in states]
            if missing:
                raise KeyError(f"state.hyperparams_states lacks {missing}; it must keep every schedule's state")
            values = {name: _as_data(stored[name], float_dtype) for name in numeric}
            values.update(evaluate(states, extra_args))
            new_states = {name: schedule.update(states[name], **extra_args) for name, schedule in schedules.items()}
            inner = build(values)
            # Fresh Hyperparams nodes carry the new values; under jit the rest of init is dead code.
            fresh = inner.init(params if params is not None else updates)
            inner_state = _refresh(state.inner_state, fresh)
            updates, inner_state = call_update(inner, updates, inner_state, params, extra_args)
            hyperparams = Hyperparams(values, scheduled, evaluate(new_states, extra_args))
            count = safe_increment(state.count)
            return updates, InjectStatefulHyperparamsState(count, hyperparams, new_states, inner_state)

        return GradientTransformationExtraArgs(init, update)

    return wrapped
