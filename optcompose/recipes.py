"""The seed's practical recipes, one call each: an optimizer and its schedule, ready to train.

Each recipe returns a ``GradientTransformation`` built from the library's own pieces, so its
hyperparameters can be read and changed with ``get_hyperparams`` / ``set_hyperparams``, and every
number can be overridden by keyword. ``total_steps`` is the number of optimizer updates in the run
(batches times epochs), since every schedule here counts updates.

Weight decay and the default mask. Decaying a bias or a normalization scale pulls it toward 0,
which is not a useful prior for either (a LayerNorm scale belongs near 1), so every recipe with
weight decay decays only leaves with two or more dimensions (kernels, convolution filters,
embeddings) and skips vectors and scalars (biases, norm scales and offsets): see
:func:`default_decay_mask`. Pass ``decay_mask=None`` to decay every leaf (PyTorch's behaviour when
all parameters sit in one group), or a pytree of bools / a function of the params of your own.

=================== ============================================================================
recipe              the seed's numbers
=================== ============================================================================
vision_from_scratch SGD, momentum 0.9, Nesterov, lr 0.1, cosine to 0, weight decay 1e-4
vision_finetune     AdamW, head lr 1e-4, backbone lr 5e-5, linear decay to 0, weight decay 0.01
nlp_transformer     AdamW, lr 1e-4, linear warmup over 10 % of the steps, cosine to 0, wd 0.01
llm_pretraining     AdamW, lr 3e-4, b2 0.95, wd 0.1, 2000 warmup steps, cosine to 10 % of peak
prototyping         Adam, lr 1e-3, no schedule, no weight decay
default             AdamW, lr 1e-3, wd 0.01, linear warmup over 5 % of the steps, cosine to 1e-6
=================== ============================================================================
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import jax
import numpy as np

from optcompose import _validate as validate
from optcompose._base import GradientTransformation, Params, Schedule, chain
from optcompose.optimizers._classic import adam, adamw, sgd
from optcompose.schedules import (
    cosine_decay_schedule,
    linear_schedule,
    warmup_cosine_decay_schedule,
)
from optcompose.transforms._decay import add_decayed_weights
from optcompose.transforms._partition import partition

HEAD_NAMES = ("head", "classifier")
"""Top-level parameter names that :func:`default_head_labels` treats as the new head."""


def default_decay_mask(params: Params) -> Any:
    """``True`` for leaves with ``ndim >= 2`` (kernels, embeddings), ``False`` for the rest.

    Biases, normalization scales and offsets are vectors, so they are not decayed.
    """
    return jax.tree.map(lambda leaf: np.ndim(leaf) >= 2, params)


def default_head_labels(params: Params) -> Any:
    """Labels each leaf ``'head'`` or ``'backbone'``, in the params' own containers.

    The head is every leaf under a top-level entry named ``'head'`` or ``'classifier'``
    (:data:`HEAD_NAMES`); Flax's ``{'params': ...}`` wrapper is looked through. Raises if there is
    none, since fine-tuning everything at the backbone's rate by accident would go unnoticed.
    """
    depth = 1 if isinstance(params, Mapping) and list(params) == ["params"] else 0

    def label(path: tuple[Any, ...], _: Any) -> str:
        key = path[depth] if len(path) > depth else None
        name = getattr(key, "key", getattr(key, "name", None))
        return "head" if name in HEAD_NAMES else "backbone"

    labels = jax.tree_util.tree_map_with_path(label, params)
    if "head" not in jax.tree.leaves(labels):
        top = params["params"] if depth else params
        keys = list(top) if isinstance(top, Mapping) else type(top).__name__
        raise ValueError(
            f"vision_finetune's default label_fn looks for a top-level entry named one of {HEAD_NAMES} "
            f"for the new head and found {keys}; pass label_fn=lambda params: <tree of 'head' / "
            f"'backbone' labels>"
        )
    return labels


def _warmup_cosine(peak: float, total_steps: int, warmup_steps: int, end_value: float) -> Schedule:
    return warmup_cosine_decay_schedule(
        init_value=0.0, peak_value=peak, warmup_steps=warmup_steps, decay_steps=total_steps, end_value=end_value
    )


def _fraction_steps(name: str, fraction: float, total_steps: int) -> int:
    validate.unit_interval(name, fraction)
    # The seed computes int(0.05 * total_steps): truncation, as here.
    return int(fraction * total_steps)


def vision_from_scratch(
    total_steps: int,
    *,
    learning_rate: float = 0.1,
    momentum: float = 0.9,
    nesterov: bool = True,
    weight_decay: float = 1e-4,
    end_value: float = 0.0,
    decay_mask: Any = default_decay_mask,
) -> GradientTransformation:
    """ResNets and ConvNets from scratch: SGD + Nesterov momentum 0.9, lr 0.1, cosine, wd 1e-4.

    The seed's reasoning: vision has decades of tuned SGD recipes, and momentum SGD tends to settle
    in flatter minima than the Adam family, which generalizes better on these architectures; the
    price is that the schedule matters, and cosine annealing is the smooth, tuning-light one.

    The weight decay is PyTorch's SGD kind (L2 added to the gradient before the momentum), so with
    ``decay_mask=None`` this is exactly ``torch.optim.SGD(lr=0.1, momentum=0.9, nesterov=True,
    weight_decay=1e-4)`` with ``CosineAnnealingLR(T_max=total_steps)`` stepped once per update::

        lr_t = end + (lr - end) * (1 + cos(pi * min(t, T) / T)) / 2,   T = total_steps
    """
    validate.integer_at_least("total_steps", total_steps, 1)
    validate.positive("learning_rate", learning_rate)
    schedule = cosine_decay_schedule(learning_rate, total_steps, alpha=end_value / learning_rate)
    return chain(
        add_decayed_weights(weight_decay, decay_mask),
        sgd(schedule, momentum=momentum, nesterov=nesterov),
    )


def vision_finetune(
    total_steps: int,
    *,
    learning_rate: float = 1e-4,
    backbone_learning_rate: float = 5e-5,
    weight_decay: float = 0.01,
    decay: str = "linear",
    label_fn: Callable[[Params], Any] | Any = default_head_labels,
    decay_mask: Any = default_decay_mask,
) -> GradientTransformation:
    """A pretrained backbone with a new head: AdamW with a lower learning rate for the backbone.

    The seed's reasoning: the pretrained weights are already in a good region and want gentle
    updates (its range for fine-tuning is 1e-4 down to 5e-5, decayed linearly or by a short
    cosine); the new head starts from random weights and can move faster. So the head trains at
    ``learning_rate`` (1e-4, the top of the range) and the backbone at ``backbone_learning_rate``
    (5e-5, the bottom), both decayed to 0 over ``total_steps`` (``decay='linear'`` or
    ``'cosine'``). Weight decay 0.01 is AdamW's usual value in the seed.

    ``label_fn(params)`` (or a ready pytree) gives each leaf the label ``'head'`` or
    ``'backbone'``; the default, :func:`default_head_labels`, takes a top-level entry named
    ``'head'`` or ``'classifier'`` as the head. The two learning rates are reported by
    ``get_hyperparams`` under their paths (``...['head']...['learning_rate']``).
    """
    validate.integer_at_least("total_steps", total_steps, 1)
    validate.one_of("decay", decay, ("linear", "cosine"))

    def schedule(peak: float) -> Schedule:
        if decay == "linear":
            return linear_schedule(peak, 0.0, total_steps)
        return cosine_decay_schedule(peak, total_steps)

    return partition(
        {
            "backbone": adamw(schedule(backbone_learning_rate), weight_decay=weight_decay, mask=decay_mask),
            "head": adamw(schedule(learning_rate), weight_decay=weight_decay, mask=decay_mask),
        },
        label_fn,
    )


def nlp_transformer(
    total_steps: int,
    *,
    learning_rate: float = 1e-4,
    warmup_fraction: float = 0.1,
    weight_decay: float = 0.01,
    b1: float = 0.9,
    b2: float = 0.999,
    end_value: float = 0.0,
    decay_mask: Any = default_decay_mask,
) -> GradientTransformation:
    """Transformers (BERT-style): AdamW, lr 1e-4, linear warmup over 10 % of the steps, cosine.

    The seed's reasoning: attention is sensitive to its initialization and large early steps can
    collapse the attention weights, so transformers need a warmup (5–10 % of the run, here 10 %
    by default); then cosine decay. Its learning-rate range is 1e-4 to 5e-4; 1e-4 is BERT's.
    ``warmup_steps = int(warmup_fraction * total_steps)``::

        lr_t = lr * t / W                                              t < W
        lr_t = end + (lr - end) * (1 + cos(pi * (t - W) / (T - W))) / 2   W <= t <= T
    """
    validate.integer_at_least("total_steps", total_steps, 2)
    warmup_steps = _fraction_steps("warmup_fraction", warmup_fraction, total_steps)
    schedule = _warmup_cosine(learning_rate, total_steps, warmup_steps, end_value)
    return adamw(schedule, b1=b1, b2=b2, weight_decay=weight_decay, mask=decay_mask)


def llm_pretraining(
    total_steps: int,
    *,
    learning_rate: float = 3e-4,
    warmup_steps: int = 2000,
    end_fraction: float = 0.1,
    b1: float = 0.9,
    b2: float = 0.95,
    weight_decay: float = 0.1,
    decay_mask: Any = default_decay_mask,
) -> GradientTransformation:
    """LLM pre-training: AdamW, lr 3e-4, b2 0.95, weight decay 0.1, 2000 warmup steps, cosine to 10 %.

    The seed's reasoning: the standard large-model recipe; b2 lowered from 0.999 to 0.95 makes the
    second moment forget faster, which keeps steps stable when gradient scales shift over very
    long sequences; weight decay is strong (0.1); the cosine ends at ``end_fraction`` (10 %) of the
    peak rather than at 0, so the last steps still learn. Warmup is fixed in steps (2000), not a
    fraction. Needs ``total_steps > warmup_steps``.
    """
    validate.integer_at_least("warmup_steps", warmup_steps, 0)
    validate.integer_at_least("total_steps", total_steps, warmup_steps + 1)
    validate.unit_interval("end_fraction", end_fraction, closed_right=True)
    schedule = _warmup_cosine(learning_rate, total_steps, warmup_steps, end_fraction * learning_rate)
    return adamw(schedule, b1=b1, b2=b2, weight_decay=weight_decay, mask=decay_mask)


def prototyping(learning_rate: float = 1e-3) -> GradientTransformation:
    """Quick prototyping: plain Adam at 1e-3, constant, no weight decay.

    The seed's reasoning: get something running and validate the data pipeline and architecture
    first; tune the recipe afterwards. Adam's defaults (b1 0.9, b2 0.999, eps 1e-8) need no care.
    Equal to ``torch.optim.Adam(lr=1e-3)``.
    """
    return adam(learning_rate)


def default(
    total_steps: int,
    *,
    learning_rate: float = 1e-3,
    weight_decay: float = 0.01,
    warmup_fraction: float = 0.05,
    end_value: float = 1e-6,
    b1: float = 0.9,
    b2: float = 0.999,
    decay_mask: Any = default_decay_mask,
) -> GradientTransformation:
    """The seed's everyday recipe, "90 % of what you'll face": AdamW + 5 % linear warmup + cosine.

    AdamW at lr 1e-3 and weight decay 0.01, ``warmup_steps = int(0.05 * total_steps)`` of linear
    warmup from 0, then cosine annealing over the remaining steps down to ``eta_min = 1e-6``.

    The seed's PyTorch loop differs in two details, both accidents of how it is written (its exact
    sequence is reproduced in ``docs/from_pytorch.md``): it builds ``CosineAnnealingLR`` with
    ``T_max=num_epochs`` while stepping it every batch (the cosine would wrap around many times),
    and its cosine starts from the last warmup value ``lr * (W - 1) / W`` rather than ``lr``. Here
    the cosine spans the steps after warmup and starts at the peak.
    """
    validate.integer_at_least("total_steps", total_steps, 2)
    warmup_steps = _fraction_steps("warmup_fraction", warmup_fraction, total_steps)
    schedule = _warmup_cosine(learning_rate, total_steps, warmup_steps, end_value)
    return adamw(schedule, b1=b1, b2=b2, weight_decay=weight_decay, mask=decay_mask)


__all__ = [
    "HEAD_NAMES",
    "default",
    "default_decay_mask",
    "default_head_labels",
    "llm_pretraining",
    "nlp_transformer",
    "prototyping",
    "vision_finetune",
    "vision_from_scratch",
]
