"""Parameter pytrees for the optimizer benchmarks, built from real layer shapes.

Each builder returns a nested dict ``name -> shape`` (no arrays): the benchmark turns it into JAX
arrays, NumPy arrays or torch tensors as each library needs.

* ``gpt2_small``: GPT-2 small (Radford et al. 2019), 148 leaves, 124,439,808 parameters, with the
  Hugging Face layout (``wte``, ``wpe``, 12 blocks of ``ln_1, attn.c_attn, attn.c_proj, ln_2,
  mlp.c_fc, mlp.c_proj``, ``ln_f``; the LM head is tied to ``wte``).
* ``resnet50``: ResNet-50 (He et al. 2016), 161 leaves, 25,557,032 parameters, torchvision's
  layout (conv kernels without bias, BatchNorm scale and bias as parameters; running statistics
  are buffers, not parameters).
* ``many_leaves``: 2000 leaves of 2048 floats: many small tensors, where per-leaf overhead (and
  compile time) dominate instead of memory bandwidth.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

Shapes = dict[str, Any]


def gpt2_small(n_layer: int = 12, d_model: int = 768, vocab: int = 50257, n_ctx: int = 1024) -> Shapes:
    blocks = {}
    for i in range(n_layer):
        blocks[f"h{i:02d}"] = {
            "ln_1": {"scale": (d_model,), "bias": (d_model,)},
            "attn": {
                "c_attn": {"kernel": (d_model, 3 * d_model), "bias": (3 * d_model,)},
                "c_proj": {"kernel": (d_model, d_model), "bias": (d_model,)},
            },
            "ln_2": {"scale": (d_model,), "bias": (d_model,)},
            "mlp": {
                "c_fc": {"kernel": (d_model, 4 * d_model), "bias": (4 * d_model,)},
                "c_proj": {"kernel": (4 * d_model, d_model), "bias": (d_model,)},
            },
        }
    return {
        "wte": (vocab, d_model),
        "wpe": (n_ctx, d_model),
        "blocks": blocks,
        "ln_f": {"scale": (d_model,), "bias": (d_model,)},
    }


def _batch_norm(channels: int) -> Shapes:
    return {"scale": (channels,), "bias": (channels,)}


def resnet50(stages: tuple[int, ...] = (3, 4, 6, 3), width: int = 64, classes: int = 1000) -> Shapes:
    tree: Shapes = {"conv1": (7, 7, 3, width), "bn1": _batch_norm(width)}
    in_channels = width
    for stage, blocks in enumerate(stages):
        mid = width * 2**stage
        out = 4 * mid
        for block in range(blocks):
            layer = {
                "conv1": (1, 1, in_channels, mid),
                "bn1": _batch_norm(mid),
                "conv2": (3, 3, mid, mid),
                "bn2": _batch_norm(mid),
                "conv3": (1, 1, mid, out),
                "bn3": _batch_norm(out),
            }
            if block == 0:
                layer["downsample"] = {"conv": (1, 1, in_channels, out), "bn": _batch_norm(out)}
            tree[f"layer{stage + 1}_{block}"] = layer
            in_channels = out
    tree["fc"] = {"kernel": (in_channels, classes), "bias": (classes,)}
    return tree


def many_leaves(count: int = 2000, size: int = 2048) -> Shapes:
    return {f"p{i:04d}": (size,) for i in range(count)}


def _leaf_shapes(tree: Shapes) -> list[tuple[int, ...]]:
    if isinstance(tree, dict):
        return [shape for value in tree.values() for shape in _leaf_shapes(value)]
    return [tuple(tree)]


def describe(tree: Shapes) -> tuple[int, int]:
    """``(number of leaves, number of parameters)``."""
    shapes = _leaf_shapes(tree)
    return len(shapes), sum(math.prod(s) for s in shapes)


FULL: dict[str, Callable[[], Shapes]] = {
    "gpt2_small": gpt2_small,
    "resnet50": resnet50,
    "2000x2048": many_leaves,
}

QUICK: dict[str, Callable[[], Shapes]] = {
    "gpt2_tiny": lambda: gpt2_small(n_layer=2, d_model=32, vocab=97, n_ctx=16),
    "resnet_tiny": lambda: resnet50(stages=(1, 1), width=4, classes=10),
    "50x64": lambda: many_leaves(count=50, size=64),
}
