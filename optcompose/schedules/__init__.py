"""Learning-rate (and any hyperparameter) schedules: pure, jit-able functions of the step count.

Each schedule maps a step count (Python int, NumPy integer, or JAX int32/int64 array) to a float32
scalar, never NaN or inf, however large the count. Names and signatures follow Optax; others follow
PyTorch's step semantics exactly (``cosine_warm_restarts_schedule``, ``one_cycle_schedule``,
``cyclic_schedule``, and the ``*_lr_schedule`` twins of its factor schedulers with
``sequential_schedule`` and ``chained_schedule``), and two are the warm-up schedules of
language-model training (``warmup_stable_decay_schedule``, ``inverse_sqrt_schedule``).
"""

from optcompose._base import Schedule
from optcompose.schedules._basic import (
    constant_schedule,
    exponential_decay,
    linear_schedule,
    piecewise_constant_schedule,
    polynomial_schedule,
)
from optcompose.schedules._cosine import (
    cosine_decay_schedule,
    cosine_warm_restarts_schedule,
    sgdr_schedule,
    warmup_cosine_decay_schedule,
)
from optcompose.schedules._cycles import (
    OneCycleSchedules,
    cosine_onecycle_schedule,
    linear_onecycle_schedule,
    one_cycle_schedule,
)
from optcompose.schedules._cyclic import CyclicSchedules, cyclic_schedule
from optcompose.schedules._inject import InjectHyperparamsState, inject_hyperparams
from optcompose.schedules._inject_stateful import (
    InjectStatefulHyperparamsState,
    StatefulSchedule,
    WrappedSchedule,
    WrappedScheduleState,
    inject_stateful_hyperparams,
)
from optcompose.schedules._interpolate import piecewise_interpolate_schedule
from optcompose.schedules._join import (
    join_schedules,
    warmup_constant_schedule,
    warmup_exponential_decay_schedule,
)
from optcompose.schedules._torch_lr import (
    chained_schedule,
    constant_lr_schedule,
    linear_lr_schedule,
    polynomial_lr_schedule,
    sequential_schedule,
)
from optcompose.schedules._warmup import inverse_sqrt_schedule, warmup_stable_decay_schedule

__all__ = [
    # basic
    "constant_schedule",
    "linear_schedule",
    "polynomial_schedule",
    "exponential_decay",
    "piecewise_constant_schedule",
    # cosine
    "cosine_decay_schedule",
    "warmup_cosine_decay_schedule",
    "sgdr_schedule",
    "cosine_warm_restarts_schedule",
    # one cycle
    "cosine_onecycle_schedule",
    "linear_onecycle_schedule",
    "one_cycle_schedule",
    "OneCycleSchedules",
    # composition
    "join_schedules",
    "warmup_constant_schedule",
    "warmup_exponential_decay_schedule",
    "piecewise_interpolate_schedule",
    # language-model warm-ups
    "warmup_stable_decay_schedule",
    "inverse_sqrt_schedule",
    # PyTorch twins
    "cyclic_schedule",
    "CyclicSchedules",
    "polynomial_lr_schedule",
    "linear_lr_schedule",
    "constant_lr_schedule",
    "sequential_schedule",
    "chained_schedule",
    # hyperparameters as state (Optax's wrappers)
    "Schedule",
    "inject_hyperparams",
    "InjectHyperparamsState",
    "inject_stateful_hyperparams",
    "InjectStatefulHyperparamsState",
    "StatefulSchedule",
    "WrappedSchedule",
    "WrappedScheduleState",
]
