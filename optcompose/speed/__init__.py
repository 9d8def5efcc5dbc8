"""The speed layer: one-pass optimizer steps (``step``), flat state (``flat_state``) and flat
parameters (``flat_params``) buffers, and the CPU kernels.

Nothing in the core imports this package; it recognises what it can accelerate from the types the
core builds (``Chain``, ``NamedChain``, ``Leafwise`` transforms ...), see ``docs/architecture.md``.
"""

from optcompose.speed._flat import FlatTree as FlatTree
from optcompose.speed._flat import flat_state as flat_state
from optcompose.speed._flat_params import FlatParams as FlatParams
from optcompose.speed._flat_params import flat_params as flat_params
from optcompose.speed._step import kernel_applies as kernel_applies
from optcompose.speed._step import step as step
