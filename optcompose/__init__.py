"""optcompose: composable gradient transformations for JAX, with Optax's vocabulary."""

from optcompose import averaging, checkpoint, lr_finder, recipes, sharding
from optcompose.averaging import swa, swa_learning_rate_schedule, update_bn
from optcompose.base import (
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
    named_chain,
    set_to_zero,
    stateless,
)
from optcompose.flat import FlatTree, flat_state
from optcompose.fused import fuse
from optcompose.hyperparams import Hyperparams, get_hyperparams, rename_hyperparams, set_hyperparams
from optcompose.inject import InjectHyperparamsState, inject_hyperparams
from optcompose.lr_finder import lr_find
from optcompose.optimizers import adagrad, adam, adamw, lamb, lars, rmsprop, sgd
from optcompose.schedules import (
    OneCycleSchedules,
    constant_schedule,
    cosine_decay_schedule,
    cosine_onecycle_schedule,
    cosine_warm_restarts_schedule,
    exponential_decay,
    join_schedules,
    linear_onecycle_schedule,
    linear_schedule,
    one_cycle_schedule,
    piecewise_constant_schedule,
    polynomial_schedule,
    sgdr_schedule,
    warmup_constant_schedule,
    warmup_cosine_decay_schedule,
    warmup_exponential_decay_schedule,
)
from optcompose.stepping import step
from optcompose.train_state import TrainState
from optcompose.transforms.accumulation import MultiSteps, MultiStepsState, skip_large_updates, skip_not_finite
from optcompose.transforms.adaptive import (
    ScaleByAdamState,
    ScaleByRmsState,
    ScaleByRssState,
    ScaleByRStdDevState,
    scale_by_adam,
    scale_by_rms,
    scale_by_rss,
    scale_by_stddev,
)
from optcompose.transforms.clipping import ClipByGlobalNormState, ClipState, clip, clip_by_global_norm
from optcompose.transforms.decay import AddDecayedWeightsState, add_decayed_weights
from optcompose.transforms.guards import ApplyIfFiniteState, apply_if_finite
from optcompose.transforms.momentum import EmaState, TraceState, ema, trace
from optcompose.transforms.partition import MaskedNode, MaskedState, PartitionState, freeze, masked, partition
from optcompose.transforms.scaling import (
    ScaleByLearningRateState,
    ScaleByScheduleState,
    ScaleState,
    scale,
    scale_by_learning_rate,
    scale_by_schedule,
)
from optcompose.transforms.trust_ratio import ScaleByTrustRatioState, scale_by_trust_ratio
from optcompose.tree import NotFloatingError, global_norm, safe_increment

# Optax's older names for partition and its state; the same objects.
multi_transform = partition
MultiTransformState = PartitionState

__version__ = "0.1.0"

__all__ = [
    # core
    "GradientTransformation", "GradientTransformationExtraArgs", "EmptyState", "chain", "named_chain", "fuse",
    "identity", "set_to_zero", "stateless", "apply_updates", "step", "TrainState", "flat_state", "FlatTree",
    "Params", "Updates", "OptState", "Schedule", "ScalarOrSchedule",
    # transforms
    "scale", "scale_by_learning_rate", "scale_by_schedule", "trace", "ema",
    "scale_by_rss", "scale_by_rms", "scale_by_stddev", "scale_by_adam", "add_decayed_weights",
    "scale_by_trust_ratio", "clip", "clip_by_global_norm", "masked", "partition", "multi_transform", "freeze",
    "rename_hyperparams",
    # transform states
    "ScaleState", "ScaleByLearningRateState", "ScaleByScheduleState", "TraceState", "EmaState",
    "ScaleByRssState", "ScaleByRmsState", "ScaleByRStdDevState", "ScaleByAdamState", "AddDecayedWeightsState",
    "ScaleByTrustRatioState", "ClipState", "ClipByGlobalNormState", "MaskedState", "MaskedNode", "PartitionState",
    "MultiTransformState",
    # wrappers: guards and accumulation
    "apply_if_finite", "ApplyIfFiniteState", "MultiSteps", "MultiStepsState", "skip_not_finite", "skip_large_updates",
    # optimizers
    "sgd", "adagrad", "rmsprop", "adam", "adamw", "lars", "lamb",
    # schedules
    "constant_schedule", "linear_schedule", "polynomial_schedule", "exponential_decay",
    "piecewise_constant_schedule", "cosine_decay_schedule", "warmup_cosine_decay_schedule",
    "warmup_constant_schedule", "warmup_exponential_decay_schedule", "join_schedules", "sgdr_schedule",
    "cosine_warm_restarts_schedule", "cosine_onecycle_schedule", "linear_onecycle_schedule",
    "one_cycle_schedule", "OneCycleSchedules",
    # hyperparameters as data
    "Hyperparams", "get_hyperparams", "set_hyperparams", "inject_hyperparams", "InjectHyperparamsState",
    # training utilities
    "swa", "swa_learning_rate_schedule", "update_bn", "lr_find", "global_norm", "safe_increment",
    "NotFloatingError",
    # submodules
    "recipes", "averaging", "lr_finder", "checkpoint", "sharding",
]
