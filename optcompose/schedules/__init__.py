"""Learning-rate (and any hyperparameter) schedules: pure, jit-able functions of the step count.

Each schedule maps a step count (Python int, NumPy integer, or JAX int32/int64 array) to a float32
scalar, never NaN or inf, however large the count. Names and signatures follow Optax; two extra
schedules follow PyTorch's step semantics exactly (``cosine_warm_restarts_schedule`` and
``one_cycle_schedule``).
"""

from optcompose.schedules.basic import (
    constant_schedule,
    exponential_decay,
    linear_schedule,
    piecewise_constant_schedule,
    polynomial_schedule,
)
from optcompose.schedules.cosine import (
    cosine_decay_schedule,
    cosine_warm_restarts_schedule,
    sgdr_schedule,
    warmup_cosine_decay_schedule,
)
from optcompose.schedules.cycles import (
    OneCycleSchedules,
    cosine_onecycle_schedule,
    linear_onecycle_schedule,
    one_cycle_schedule,
)
from optcompose.schedules.join import (
    join_schedules,
    warmup_constant_schedule,
    warmup_exponential_decay_schedule,
)

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
]
