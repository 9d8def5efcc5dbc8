"""Micro-batching (Optax's ``optax.microbatching``): evaluate a function on slices of a batch in sequence."""

from optcompose.microbatching._microbatching import AccumulationType as AccumulationType
from optcompose.microbatching._microbatching import Accumulator as Accumulator
from optcompose.microbatching._microbatching import micro_grad as micro_grad
from optcompose.microbatching._microbatching import micro_vmap as micro_vmap
from optcompose.microbatching._microbatching import microbatch as microbatch
from optcompose.microbatching._microbatching import reshape_batch_axis as reshape_batch_axis
