"""Loss functions with Optax's names, signatures and numbers (``optax.losses``).

Every function maps arrays to per-example losses (reduce them yourself, e.g. ``.mean()``), is
pure JAX (jit, vmap and grad work), and checks dtypes and shapes before computing, raising
``TypeError``/``ValueError`` that name the offending argument.

``TOP_LEVEL_NAMES`` lists the losses Optax also exports at its top level (``optax.l2_loss`` ...).
"""

from optcompose.losses._classification import poly_loss_cross_entropy as poly_loss_cross_entropy
from optcompose.losses._classification import safe_softmax_cross_entropy as safe_softmax_cross_entropy
from optcompose.losses._classification import sigmoid_binary_cross_entropy as sigmoid_binary_cross_entropy
from optcompose.losses._classification import sigmoid_focal_loss as sigmoid_focal_loss
from optcompose.losses._classification import softmax_cross_entropy as softmax_cross_entropy
from optcompose.losses._classification import (
    softmax_cross_entropy_with_integer_labels as softmax_cross_entropy_with_integer_labels,
)
from optcompose.losses._ctc import ctc_loss as ctc_loss
from optcompose.losses._ctc import ctc_loss_with_forward_probs as ctc_loss_with_forward_probs
from optcompose.losses._divergences import convex_kl_divergence as convex_kl_divergence
from optcompose.losses._divergences import generalized_kl_divergence as generalized_kl_divergence
from optcompose.losses._divergences import kl_divergence as kl_divergence
from optcompose.losses._divergences import kl_divergence_with_log_targets as kl_divergence_with_log_targets
from optcompose.losses._fenchel_young import make_fenchel_young_loss as make_fenchel_young_loss
from optcompose.losses._margin import hinge_loss as hinge_loss
from optcompose.losses._margin import multiclass_hinge_loss as multiclass_hinge_loss
from optcompose.losses._margin import multiclass_perceptron_loss as multiclass_perceptron_loss
from optcompose.losses._margin import multiclass_sparsemax_loss as multiclass_sparsemax_loss
from optcompose.losses._margin import perceptron_loss as perceptron_loss
from optcompose.losses._margin import sparsemax_loss as sparsemax_loss
from optcompose.losses._ranking import ranking_softmax_loss as ranking_softmax_loss
from optcompose.losses._regression import cosine_distance as cosine_distance
from optcompose.losses._regression import cosine_similarity as cosine_similarity
from optcompose.losses._regression import huber_loss as huber_loss
from optcompose.losses._regression import l2_loss as l2_loss
from optcompose.losses._regression import log_cosh as log_cosh
from optcompose.losses._regression import squared_error as squared_error
from optcompose.losses._segmentation import binary_dice_loss as binary_dice_loss
from optcompose.losses._segmentation import dice_loss as dice_loss
from optcompose.losses._segmentation import multiclass_generalized_dice_loss as multiclass_generalized_dice_loss
from optcompose.losses._self_supervised import ntxent as ntxent
from optcompose.losses._self_supervised import triplet_margin_loss as triplet_margin_loss
from optcompose.losses._smoothing import smooth_labels as smooth_labels

# The losses Optax also exposes as ``optax.<name>`` (the same functions as ``optax.losses.<name>``).
TOP_LEVEL_NAMES = (
    "convex_kl_divergence",
    "cosine_distance",
    "cosine_similarity",
    "ctc_loss",
    "ctc_loss_with_forward_probs",
    "generalized_kl_divergence",
    "hinge_loss",
    "huber_loss",
    "kl_divergence",
    "l2_loss",
    "log_cosh",
    "ntxent",
    "safe_softmax_cross_entropy",
    "sigmoid_binary_cross_entropy",
    "sigmoid_focal_loss",
    "smooth_labels",
    "softmax_cross_entropy",
    "softmax_cross_entropy_with_integer_labels",
    "squared_error",
)
