"""The optimizer pieces (Optax's ``optax.transforms``): each a factory returning a transform.

Writing a new piece: ``leafwise(rule, State, hyperparams=...)`` (see ``optcompose._leafwise`` and
``docs/architecture.md``).
"""

from optcompose._base import chain as chain
from optcompose._base import named_chain as named_chain
from optcompose._leafwise import Leafwise as Leafwise
from optcompose._leafwise import abs_sq as abs_sq
from optcompose._leafwise import ema_step as ema_step
from optcompose._leafwise import leafwise as leafwise
from optcompose.transforms._accumulation import MultiSteps as MultiSteps
from optcompose.transforms._accumulation import MultiStepsState as MultiStepsState
from optcompose.transforms._accumulation import ShouldSkipUpdateFunction as ShouldSkipUpdateFunction
from optcompose.transforms._accumulation import skip_large_updates as skip_large_updates
from optcompose.transforms._accumulation import skip_not_finite as skip_not_finite
from optcompose.transforms._adaptive import ScaleByAdamState as ScaleByAdamState
from optcompose.transforms._adaptive import ScaleByRmsState as ScaleByRmsState
from optcompose.transforms._adaptive import ScaleByRssState as ScaleByRssState
from optcompose.transforms._adaptive import ScaleByRStdDevState as ScaleByRStdDevState
from optcompose.transforms._adaptive import scale_by_adam as scale_by_adam
from optcompose.transforms._adaptive import scale_by_rms as scale_by_rms
from optcompose.transforms._adaptive import scale_by_rss as scale_by_rss
from optcompose.transforms._adaptive import scale_by_stddev as scale_by_stddev
from optcompose.transforms._clipping import ClipByGlobalNormState as ClipByGlobalNormState
from optcompose.transforms._clipping import ClipState as ClipState
from optcompose.transforms._clipping import clip as clip
from optcompose.transforms._clipping import clip_by_global_norm as clip_by_global_norm
from optcompose.transforms._decay import AddDecayedWeightsState as AddDecayedWeightsState
from optcompose.transforms._decay import add_decayed_weights as add_decayed_weights
from optcompose.transforms._guards import ApplyIfFiniteState as ApplyIfFiniteState
from optcompose.transforms._guards import apply_if_finite as apply_if_finite
from optcompose.transforms._guards import update_if as update_if
from optcompose.transforms._momentum import EmaState as EmaState
from optcompose.transforms._momentum import TraceState as TraceState
from optcompose.transforms._momentum import ema as ema
from optcompose.transforms._momentum import trace as trace
from optcompose.transforms._partition import MaskedNode as MaskedNode
from optcompose.transforms._partition import MaskedState as MaskedState
from optcompose.transforms._partition import PartitionState as PartitionState
from optcompose.transforms._partition import freeze as freeze
from optcompose.transforms._partition import masked as masked
from optcompose.transforms._partition import partition as partition
from optcompose.transforms._scaling import ScaleByLearningRateState as ScaleByLearningRateState
from optcompose.transforms._scaling import ScaleByScheduleState as ScaleByScheduleState
from optcompose.transforms._scaling import ScaleState as ScaleState
from optcompose.transforms._scaling import scale as scale
from optcompose.transforms._scaling import scale_by_learning_rate as scale_by_learning_rate
from optcompose.transforms._scaling import scale_by_schedule as scale_by_schedule
from optcompose.transforms._trust_ratio import ScaleByTrustRatioState as ScaleByTrustRatioState
from optcompose.transforms._trust_ratio import scale_by_trust_ratio as scale_by_trust_ratio
