"""Contributed optimizers, as Optax's ``optax.contrib`` (same names, signatures and numbers).

Every public name of Optax 0.2.8's ``optax.contrib`` is here with Optax's signature; states are
Optax's records (same names and fields) plus a ``hyperparams`` field holding the numeric
hyperparameters as data (``get_hyperparams`` / ``set_hyperparams``). Differences from Optax, all
in the direction of more exact or more robust numbers, are listed in each docstring:

* hyperparameters are float32 data (float64 with float64 parameters): ``1 - b`` is computed from
  the stored ``b`` where Optax rounds ``1 - b`` computed in double, which moves float32 runs of the
  Adam-like methods by up to ~1e-5 relative over 20 steps; under x64 both agree to ~1e-15;
* arithmetic runs in float32 for bfloat16 / float16 parameters (Optax: in their dtype), and scalar
  states (step-size estimates) are float32, not the lowest parameter dtype;
* complex parameters use ``|g|^2`` and real inner products (phase-equivariant) where Optax squares
  them or keeps complex inner products;
* 0 / 0 and overflowing estimates (zero gradients in Prodigy, D-Adaptation, ``normalize``; 1e30
  entries in MoMo, Mechanic) keep the previous value instead of turning into NaN.
"""

from optcompose.contrib._acprop import acprop as acprop
from optcompose.contrib._acprop import scale_by_acprop as scale_by_acprop
from optcompose.contrib._ademamix import ScaleByAdemamixState as ScaleByAdemamixState
from optcompose.contrib._ademamix import ScaleBySimplifiedAdEMAMixState as ScaleBySimplifiedAdEMAMixState
from optcompose.contrib._ademamix import ademamix as ademamix
from optcompose.contrib._ademamix import scale_by_ademamix as scale_by_ademamix
from optcompose.contrib._ademamix import scale_by_simplified_ademamix as scale_by_simplified_ademamix
from optcompose.contrib._ademamix import simplified_ademamix as simplified_ademamix
from optcompose.contrib._adopt import adopt as adopt
from optcompose.contrib._adopt import scale_by_adopt as scale_by_adopt
from optcompose.contrib._cocob import COCOBState as COCOBState
from optcompose.contrib._cocob import cocob as cocob
from optcompose.contrib._cocob import scale_by_cocob as scale_by_cocob
from optcompose.contrib._complex_valued import SplitRealAndImaginaryState as SplitRealAndImaginaryState
from optcompose.contrib._complex_valued import split_real_and_imaginary as split_real_and_imaginary
from optcompose.contrib._dadapt_adamw import DAdaptAdamWState as DAdaptAdamWState
from optcompose.contrib._dadapt_adamw import dadapt_adamw as dadapt_adamw
from optcompose.contrib._dog import DoGState as DoGState
from optcompose.contrib._dog import DoWGState as DoWGState
from optcompose.contrib._dog import dog as dog
from optcompose.contrib._dog import dowg as dowg
from optcompose.contrib._galore import GaLoreDimensionNumbers as GaLoreDimensionNumbers
from optcompose.contrib._galore import GaLoreState as GaLoreState
from optcompose.contrib._galore import galore as galore
from optcompose.contrib._galore import scale_by_galore as scale_by_galore
from optcompose.contrib._madgrad import MadgradState as MadgradState
from optcompose.contrib._madgrad import madgrad as madgrad
from optcompose.contrib._madgrad import scale_by_madgrad as scale_by_madgrad
from optcompose.contrib._mechanic import MechanicState as MechanicState
from optcompose.contrib._mechanic import mechanize as mechanize
from optcompose.contrib._momo import MomoAdamState as MomoAdamState
from optcompose.contrib._momo import MomoState as MomoState
from optcompose.contrib._momo import momo as momo
from optcompose.contrib._momo import momo_adam as momo_adam
from optcompose.contrib._muon import MuonDimensionNumbers as MuonDimensionNumbers
from optcompose.contrib._muon import MuonState as MuonState
from optcompose.contrib._muon import muon as muon
from optcompose.contrib._muon import scale_by_muon as scale_by_muon
from optcompose.contrib._privacy import DifferentiallyPrivateAggregateState as DifferentiallyPrivateAggregateState
from optcompose.contrib._privacy import differentially_private_aggregate as differentially_private_aggregate
from optcompose.contrib._privacy import dpsgd as dpsgd
from optcompose.contrib._prodigy import ProdigyState as ProdigyState
from optcompose.contrib._prodigy import prodigy as prodigy
from optcompose.contrib._reduce_on_plateau import ReduceLROnPlateauState as ReduceLROnPlateauState
from optcompose.contrib._reduce_on_plateau import reduce_on_plateau as reduce_on_plateau
from optcompose.contrib._sam import NormalizeState as NormalizeState
from optcompose.contrib._sam import SAMState as SAMState
from optcompose.contrib._sam import normalize as normalize
from optcompose.contrib._sam import sam as sam
from optcompose.contrib._schedule_free import ScheduleFreeState as ScheduleFreeState
from optcompose.contrib._schedule_free import schedule_free as schedule_free
from optcompose.contrib._schedule_free import schedule_free_adamw as schedule_free_adamw
from optcompose.contrib._schedule_free import schedule_free_eval_params as schedule_free_eval_params
from optcompose.contrib._schedule_free import schedule_free_sgd as schedule_free_sgd
from optcompose.contrib._sophia import HutchinsonState as HutchinsonState
from optcompose.contrib._sophia import SophiaState as SophiaState
from optcompose.contrib._sophia import hutchinson_estimator_diag_hessian as hutchinson_estimator_diag_hessian
from optcompose.contrib._sophia import sophia as sophia
