"""Record measurements of the updates in the state, mid-chain: ``snapshot``, ``monitor``, ``measure_with_ema``.

None of these change the updates. Read a measurement with ``state[i].measurement[name]`` (or by
name anywhere in the state, as ``optax.tree.get(state, name)`` does).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from optcompose._base import (
    GradientTransformation,
    GradientTransformationExtraArgs,
    OptState,
    Stateless,
    Updates,
    call_update,
    chain,
)
from optcompose._leafwise import Leafwise
from optcompose._tree import zeros_like
from optcompose.transforms._momentum import ema


class SnapshotState(NamedTuple):
    """The state of ``snapshot``: ``{measure_name: the measurement of the last updates}``."""

    measurement: dict[str, Any]


class Snapshot(GradientTransformationExtraArgs):
    """``snapshot(measure_name, measure)``; ``self.measure_name``, ``self.measure``."""

    def __new__(cls, measure_name: str, measure: Callable[[Updates], Any]) -> Snapshot:
        def init(params):
            return SnapshotState({measure_name: measure(params)})

        def update(updates, state, params=None, **extra_args):
            del state, params, extra_args
            return updates, SnapshotState({measure_name: measure(updates)})

        self = super().__new__(cls, init, update)
        self.measure_name, self.measure = measure_name, measure
        return self

    def __repr__(self) -> str:
        return f"snapshot({self.measure_name!r}, ...)"


def snapshot(measure_name: str, measure: Callable[[Updates], Any]) -> Snapshot:
    """Stores ``measure(updates)`` in the state under ``measure_name``; the updates pass unchanged.

    In a chain the updates are those the earlier parts produced, for example the norm before
    clipping: ``chain(sgd(0.1), snapshot('norm', global_norm), clip_by_global_norm(1.0))``.

    Args:
      measure_name: the key of the measurement in ``state.measurement``.
      measure: ``fn(updates) -> pytree`` (jit-able).

    Returns:
      A transform with a ``SnapshotState``. After ``init`` the state holds ``measure(params)``
      (a value of the right structure, so the state's structure never changes).
    """
    if not isinstance(measure_name, str):
        raise TypeError(f"measure_name must be a string, got {measure_name!r}")
    if not callable(measure):
        raise TypeError(f"measure must be callable, got {measure!r}")
    return Snapshot(measure_name, measure)


class MonitorState(NamedTuple):
    """The state of ``monitor``.

    Attributes:
      measurements: ``{name: measurement}`` of the last updates.
      measure_states: the state of each stateful measure, in the order of ``measures``.
    """

    measurements: dict[str, Any]
    measure_states: tuple[OptState, ...]


def _as_transform(name: str, measure: Any) -> GradientTransformation:
    if hasattr(measure, "init") and hasattr(measure, "update"):
        return measure
    if callable(measure):
        return Stateless(lambda updates, params, m=measure: m(updates), name=f"measure {name}")
    raise TypeError(f"monitor's measure {name!r} must be a callable or a GradientTransformation, got {measure!r}")


class Monitor(GradientTransformationExtraArgs):
    """``monitor(measures)``; ``self.measures`` maps names to transforms."""

    def __new__(cls, measures: Mapping[str, Any]) -> Monitor:
        if not isinstance(measures, Mapping):
            raise TypeError(f"measures must be a dict of name -> measure, got {type(measures).__name__}")
        transforms = {name: _as_transform(name, m) for name, m in measures.items()}
        names = tuple(transforms)

        def init(params):
            states = tuple(transforms[name].init(params) for name in names)
            measurements = {}
            for name, state in zip(names, states, strict=True):
                try:
                    shape = jax.eval_shape(lambda t=transforms[name], s=state: call_update(t, params, s, params, {})[0])
                except (TypeError, ValueError):
                    continue  # the measure needs the update's extra arguments: no placeholder
                measurements[name] = zeros_like(shape)
            return MonitorState(measurements, states)

        def update(updates, state, params=None, **extra_args):
            measurements, new_states = {}, []
            for name, measure_state in zip(names, state.measure_states, strict=True):
                measured, measure_state = call_update(transforms[name], updates, measure_state, params, extra_args)
                measurements[name] = measured
                new_states.append(measure_state)
            return updates, MonitorState(measurements, tuple(new_states))

        self = super().__new__(cls, init, update)
        self.measures = transforms
        return self

    def __repr__(self) -> str:
        return f"monitor({list(self.measures)})"


def monitor(measures: Mapping[str, Any]) -> Monitor:
    """Stores several (possibly stateful) measurements of the updates in the state, by name.

    Args:
      measures: ``{name: measure}``, each a function ``fn(updates) -> pytree`` or a transform
        whose *output* is the measurement (``measure_with_ema(fn, decay)``, say); transforms receive
        the update's params and extra arguments.

    Returns:
      A transform with a ``MonitorState``; the updates pass unchanged.

    Differs from Optax in the state after ``init``: there ``measurements`` is ``{}`` until the
    first update (so the state's structure changes, which ``lax.scan`` and a jitted step that
    donates its state refuse); here it holds zeros of each measurement's shape from the start.
    """
    return Monitor(measures)


def _as_float(tree: Any, dtype: Any) -> Any:
    def one(x):
        x = jnp.asarray(x)
        if dtype is not None:
            return x.astype(dtype)
        return x if jnp.issubdtype(x.dtype, jnp.inexact) else x.astype(jnp.float32)

    return jax.tree.map(one, tree)


class _MeasuredEma(GradientTransformationExtraArgs):
    """``self.inner`` (an ``ema``) whose state is shaped like the measurement, not the params."""

    def __new__(cls, inner: Leafwise, measure: Callable[[Any], Any], dtype: Any) -> _MeasuredEma:
        def init(params):
            return inner.init(_as_float(measure(params), dtype))

        def update(updates, state, params=None, **extra_args):
            del params
            return inner.update(updates, state, None, **extra_args)

        self = super().__new__(cls, init, update)
        self.inner = inner
        return self


def measure_with_ema(
    measure: Callable[[Updates], Any], decay: float, debias: bool = True, accumulator_dtype: Any | None = None
) -> GradientTransformationExtraArgs:
    """An exponential moving average of ``measure(updates)``, output as the measurement (for ``monitor``)::

        m_t = measure(u_t)
        e_t = decay * e_{t-1} + (1 - decay) * m_t,   output e_t / (1 - decay**t)  (debias)

    ``chain(stateless(measure), ema(decay, debias, accumulator_dtype))`` with the average shaped
    like the measurement; boolean and integer measurements (``norm > 1``: how often clipping
    triggers) are averaged as float32.

    Args:
      measure: ``fn(updates) -> pytree``.
      decay: the EMA's decay, in ``[0, 1)`` (a hyperparameter in the state).
      debias: divide by ``1 - decay**t``.
      accumulator_dtype: storage dtype of the average (default: the measurement's, float32 for
        bool / int).

    Returns:
      A two-part ``chain`` whose output is the averaged measurement (not the updates: use it
      inside ``monitor``).
    """
    if not callable(measure):
        raise TypeError(f"measure must be callable, got {measure!r}")
    average = ema(decay, debias=debias, accumulator_dtype=accumulator_dtype)
    measured = Stateless(lambda updates, params: _as_float(measure(updates), accumulator_dtype), name="measure")
    return chain(measured, _MeasuredEma(average, measure, accumulator_dtype))
