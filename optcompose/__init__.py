"""optcompose: composable gradient transformations for JAX, with Optax's vocabulary.

This file is the whole public surface. Namespaces as Optax's: ``optcompose.transforms``,
``optcompose.schedules``, ``optcompose.optimizers``; ours: ``optcompose.speed`` (one-pass steps,
flat state), ``optcompose.recipes``, ``optcompose.averaging``, ``optcompose.sharding``;
integrations, loaded on first use: ``optcompose.checkpoint`` (orbax), ``optcompose.TrainState`` and
``optcompose.Optimizer`` (Flax linen and nnx, stepped by ``optcompose.step``).
Names kept only for Optax compatibility are marked ``# Optax name``.
"""

from optcompose import (
    averaging,
    contrib,
    losses,
    lr_finder,
    microbatching,
    optimizers,
    projections,
    recipes,
    schedules,
    sharding,
    speed,
    transforms,
    tree,
    tree_utils,
)
from optcompose._base import (
    EmptyState,
    GradientTransformation,
    GradientTransformationExtraArgs,
    MaskOrFn,
    OptState,
    Params,
    ScalarOrSchedule,
    Schedule,
    TransformInitFn,
    TransformUpdateExtraArgsFn,
    TransformUpdateFn,
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
from optcompose._numerics_optax import (
    bias_correction,
    safe_int32_increment,
    safe_norm,
    safe_root_mean_squares,
    scale_gradient,
    update_infinity_moment,
    update_moment,
    update_moment_per_elem_norm,
)
from optcompose._tree import NotFloatingError, global_norm, safe_increment
from optcompose.averaging import swa, swa_learning_rate_schedule, update_bn
from optcompose.contrib._muon_torch import muon_torch, scale_by_orthogonalized_momentum
from optcompose.losses import (
    convex_kl_divergence,
    cosine_distance,
    cosine_similarity,
    ctc_loss,
    ctc_loss_with_forward_probs,
    generalized_kl_divergence,
    hinge_loss,
    huber_loss,
    kl_divergence,
    l2_loss,
    log_cosh,
    ntxent,
    safe_softmax_cross_entropy,
    sigmoid_binary_cross_entropy,
    sigmoid_focal_loss,
    smooth_labels,
    softmax_cross_entropy,
    softmax_cross_entropy_with_integer_labels,
    squared_error,
)
from optcompose.lr_finder import lr_find
from optcompose.microbatching import microbatch

# Beyond Optax: methods of 2024-2026 research (docs/methods/).
from optcompose.optimizers import (
    adabelief,
    adadelta,
    adafactor,
    adagrad,
    adam,
    adamax,
    adamaxw,
    adamw,
    adan,
    amsgrad,
    asgd,
    fromage,
    lamb,
    laprop,
    lars,
    lbfgs,
    lion,
    mars,
    nadam,
    nadamw,
    noisy_sgd,
    novograd,
    optimistic_adam,
    optimistic_adam_v2,
    optimistic_gradient_descent,
    polyak_sgd,
    radam,
    rmsprop,
    rprop,
    sgd,
    shampoo,
    sign_sgd,
    signum,
    sm3,
    soap,
    sparse_adam,
    yogi,
)
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
from optcompose.speed import FlatParams, FlatTree, flat_params, flat_state, step

# Optax's top-level names, each from its namespace.
from optcompose.transforms import (
    AdaptiveGradClipState,
    AddDecayedWeightsState,
    AddNoiseState,
    ApplyEvery,
    ApplyIfFiniteState,
    ClipByGlobalNormState,
    ClipState,
    ConditionallyMaskState,
    ConditionallyTransformState,
    EmaState,
    FactoredState,
    LookaheadParams,
    LookaheadState,
    MaskedNode,
    MaskedState,
    MonitorState,
    MultiSteps,
    MultiStepsState,
    NonNegativeParamsState,
    PartitionState,
    ScaleByAdaDeltaState,
    ScaleByAdamState,
    ScaleByAdanState,
    ScaleByAmsgradState,
    ScaleByAsgdState,
    ScaleByBacktrackingLinesearchState,
    ScaleByBeliefState,
    ScaleByLBFGSState,
    ScaleByLearningRateState,
    ScaleByLionState,
    ScaleByNovogradState,
    ScaleByRmsState,
    ScaleByRpropState,
    ScaleByRssState,
    ScaleByRStdDevState,
    ScaleByScheduleState,
    ScaleBySM3State,
    ScaleByTrustRatioState,
    ScaleByZoomLinesearchState,
    ScaleState,
    ShouldSkipUpdateFunction,
    SnapshotState,
    TraceState,
    ZeroNansState,
    ZoomLinesearchInfo,
    adaptive_grad_clip,
    add_decayed_weights,
    add_noise,
    apply_every,
    apply_if_finite,
    asgd_averaged_params,
    cautious,
    centralize,
    clip,
    clip_by_block_rms,
    clip_by_global_norm,
    conditionally_mask,
    conditionally_transform,
    ema,
    flatten,
    freeze,
    incremental_update,
    keep_params_nonnegative,
    lookahead,
    low_precision_updates,
    masked,
    matrix_inverse_pth_root,
    measure_with_ema,
    monitor,
    multi_normal,
    nnls,
    normalize_by_update_norm,
    partition,
    per_example_global_norm_clip,
    per_example_layer_norm_clip,
    periodic_update,
    power_iteration,
    reduce_lr_on_plateau,
    scale,
    scale_by_adadelta,
    scale_by_adam,
    scale_by_adamax,
    scale_by_adan,
    scale_by_amsgrad,
    scale_by_asgd,
    scale_by_backtracking_linesearch,
    scale_by_belief,
    scale_by_factored_rms,
    scale_by_laprop,
    scale_by_lbfgs,
    scale_by_learning_rate,
    scale_by_lion,
    scale_by_mars_correction,
    scale_by_novograd,
    scale_by_optimistic_gradient,
    scale_by_param_block_norm,
    scale_by_param_block_rms,
    scale_by_polyak,
    scale_by_radam,
    scale_by_rms,
    scale_by_rprop,
    scale_by_rss,
    scale_by_schedule,
    scale_by_sign,
    scale_by_sm3,
    scale_by_sparse_adam,
    scale_by_stddev,
    scale_by_trust_ratio,
    scale_by_yogi,
    scale_by_zoom_linesearch,
    selective_transform,
    skip_large_updates,
    skip_not_finite,
    snapshot,
    trace,
    value_and_grad_from_state,
    zero_nans,
)
from optcompose.tree_utils import tree_map_params

multi_transform = partition  # Optax name
MultiTransformState = PartitionState  # Optax name

__version__ = "0.1.0"

_LAZY = {
    "TrainState": ("optcompose.integrations.flax", "TrainState"),
    "Optimizer": ("optcompose.integrations.flax", "Optimizer"),
    "checkpoint": ("optcompose.integrations.checkpoint", None),
    "from_optax": ("optcompose.integrations.optax_state", "from_optax"),
}

# Optax namespaces optcompose does not carry: importing them says so, and where to get them.
NOT_CARRIED = {
    "assignment": "optax.assignment (Hungarian matching) is not an optimizer; use optax.assignment",
    "perturbations": "optax.perturbations (perturbed optimizers, non-differentiable losses): use optax.perturbations",
    "second_order": "optax.second_order (Hessian/Fisher diagonals) was deprecated in Optax; use optax.second_order",
    "experimental": "optax.experimental is Optax's unstable namespace; use optax.experimental",
}


class NotCarriedError(ImportError):
    """A name of Optax that optcompose deliberately does not provide (see ``NOT_CARRIED``)."""


def __getattr__(name: str):
    # Integrations import their libraries (Flax, orbax) only when first used.
    if name in _LAZY:
        import importlib

        module_name, attribute = _LAZY[name]
        module = importlib.import_module(module_name)
        return module if attribute is None else getattr(module, attribute)
    if name in NOT_CARRIED:
        raise NotCarriedError(f"optcompose does not provide {name!r}: {NOT_CARRIED[name]} (pip install optax)")
    raise AttributeError(f"module 'optcompose' has no attribute {name!r}")
