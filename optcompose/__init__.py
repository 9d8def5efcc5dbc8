"""optcompose: composable gradient transformations for JAX, with Optax's vocabulary.

This file is the whole public surface. Namespaces as Optax's: ``optcompose.transforms``,
``optcompose.schedules``, ``optcompose.optimizers``; ours: ``optcompose.speed`` (one-pass steps,
flat state), ``optcompose.recipes``, ``optcompose.averaging``, ``optcompose.sharding``;
integrations, loaded on first use: ``optcompose.checkpoint`` (orbax), ``optcompose.TrainState`` (Flax).
Names kept only for Optax compatibility are marked ``# Optax name``.
"""

from optcompose import averaging, lr_finder, optimizers, recipes, schedules, sharding, speed, transforms
from optcompose._base import (
    EmptyState,
    GradientTransformation,
    GradientTransformationExtraArgs,
    OptState,
    Params,
    ScalarOrSchedule,
    Schedule,
    Updates,
    apply_updates,
    chain,
    identity,
    init_empty_state,
    named_chain,
    set_to_zero,
    stateless,
    stateless_with_tree_map,
    with_extra_args_support,
)
from optcompose._hyperparams import (
    Hyperparams,
    InjectHyperparamsState,
    get_hyperparams,
    rename_hyperparams,
    set_hyperparams,
)
from optcompose._leafwise import Leafwise, leafwise
from optcompose._tree import NotFloatingError, global_norm, safe_increment
from optcompose.averaging import swa, swa_learning_rate_schedule, update_bn
from optcompose.lr_finder import lr_find
from optcompose.optimizers import adagrad, adam, adamw, lamb, lars, rmsprop, sgd
from optcompose.schedules import (
    CyclicSchedules,
    InjectStatefulHyperparamsState,
    OneCycleSchedules,
    WrappedSchedule,
    chained_schedule,
    constant_lr_schedule,
    constant_schedule,
    cosine_decay_schedule,
    cosine_onecycle_schedule,
    cosine_warm_restarts_schedule,
    cyclic_schedule,
    exponential_decay,
    inject_hyperparams,
    inject_stateful_hyperparams,
    inverse_sqrt_schedule,
    join_schedules,
    linear_lr_schedule,
    linear_onecycle_schedule,
    linear_schedule,
    one_cycle_schedule,
    piecewise_constant_schedule,
    piecewise_interpolate_schedule,
    polynomial_lr_schedule,
    polynomial_schedule,
    sequential_schedule,
    sgdr_schedule,
    warmup_constant_schedule,
    warmup_cosine_decay_schedule,
    warmup_exponential_decay_schedule,
    warmup_stable_decay_schedule,
)
from optcompose.speed import FlatTree, flat_state, step
from optcompose.transforms import (
    AddDecayedWeightsState,
    ApplyIfFiniteState,
    ClipByGlobalNormState,
    ClipState,
    EmaState,
    MaskedNode,
    MaskedState,
    MultiSteps,
    MultiStepsState,
    PartitionState,
    ScaleByAdamState,
    ScaleByLearningRateState,
    ScaleByRmsState,
    ScaleByRssState,
    ScaleByRStdDevState,
    ScaleByScheduleState,
    ScaleByTrustRatioState,
    ScaleState,
    TraceState,
    add_decayed_weights,
    apply_if_finite,
    clip,
    clip_by_global_norm,
    ema,
    freeze,
    masked,
    partition,
    scale,
    scale_by_adam,
    scale_by_learning_rate,
    scale_by_rms,
    scale_by_rss,
    scale_by_schedule,
    scale_by_stddev,
    scale_by_trust_ratio,
    skip_large_updates,
    skip_not_finite,
    trace,
)

multi_transform = partition  # Optax name
MultiTransformState = PartitionState  # Optax name

__version__ = "0.1.0"

_LAZY = {
    "TrainState": ("optcompose.integrations.flax", "TrainState"),
    "checkpoint": ("optcompose.integrations.checkpoint", None),
}


def __getattr__(name: str):
    # Integrations import their libraries (Flax, orbax) only when first used.
    if name in _LAZY:
        import importlib

        module_name, attribute = _LAZY[name]
        module = importlib.import_module(module_name)
        return module if attribute is None else getattr(module, attribute)
    raise AttributeError(f"module 'optcompose' has no attribute {name!r}")
