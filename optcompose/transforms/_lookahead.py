"""Lookahead (Zhang et al. 2019): k fast steps forward, then the slow weights move part of the way."""

from __future__ import annotations

import warnings
from typing import NamedTuple

import jax
import jax.numpy as jnp

from optcompose import _validate as validate
from optcompose._base import GradientTransformation, GradientTransformationExtraArgs, OptState, Params, _check_transform
from optcompose._base import call_update as _call_update
from optcompose._hyperparams import Hyperparams, HyperparamSpec, hyperparam_dtype
from optcompose._numerics import widen
from optcompose._tree import map as tree_map
from optcompose._tree import safe_increment, unzip
from optcompose.transforms._linesearch import _check_count


class LookaheadState(NamedTuple):
    """The state of ``lookahead``.

    Attributes:
      fast_state: the fast optimizer's state.
      steps_since_sync: fast steps since the last synchronisation (``0 .. sync_period - 1``).
      hyperparams: ``sync_period`` and ``slow_step_size``.
    """

    fast_state: OptState
    steps_since_sync: jax.Array
    hyperparams: Hyperparams


class LookaheadParams(NamedTuple):
    """The two copies of the weights lookahead keeps (a pytree node with two children).

    Attributes:
      fast: the weights the fast optimizer moves; compute gradients here.
      slow: the slowly moving weights; evaluate and deploy these.
    """

    fast: Params
    slow: Params

    @classmethod
    def init_synced(cls, params: Params) -> LookaheadParams:
        """Both copies equal to ``params``."""
        return cls(fast=params, slow=params)


class Lookahead(GradientTransformationExtraArgs):
    """``lookahead(fast_optimizer, sync_period, slow_step_size, reset_state)``; ``self.inner`` is the
    fast optimizer."""

    def __new__(cls, inner: GradientTransformation, spec: HyperparamSpec, reset_state: bool) -> Lookahead:
        def fast_of(params):
            fast = getattr(params, "fast", None)
            if fast is None:
                warnings.warn(
                    "lookahead.init got params without a `fast` attribute; treating them as the fast params "
                    "(pass LookaheadParams.init_synced(params) to keep a slow copy)",
                    stacklevel=3,
                )
                return params
            return fast

        def init(params):
            fast = fast_of(params)
            return LookaheadState(inner.init(fast), jnp.zeros((), jnp.int32), spec.init(hyperparam_dtype(fast)))

        def update(updates, state, params=None, **extra_args):
            if not isinstance(params, LookaheadParams) and not (
                hasattr(params, "fast") and hasattr(params, "slow")):  # fmt: skip
                raise ValueError(
                    "lookahead.update needs params=LookaheadParams(fast=..., slow=...); the updates it returns "
                    "are LookaheadParams too"
                )
            fast_updates, fast_state = _call_update(inner, updates, state.fast_state, params.fast, extra_args)
            period = jnp.maximum(jnp.round(state.hyperparams["sync_period"]).astype(jnp.int32), 1)
            sync = state.steps_since_sync == period - 1

            def leaf(u, fast, slow):
                alpha = jnp.asarray(state.hyperparams["slow_step_size"]).astype(jnp.promote_types(
                    jnp.real(widen(u)).dtype, jnp.float32))  # fmt: skip
                gap = widen(fast) + widen(u) - widen(slow)  # last fast weights minus slow weights
                new_slow = jnp.where(sync, alpha * gap, jnp.zeros_like(gap))
                new_fast = jnp.where(sync, widen(u) - (1 - alpha) * gap, widen(u))
                return new_fast.astype(jnp.result_type(u)), new_slow.astype(jnp.result_type(slow))

            pairs = tree_map(leaf, fast_updates, params.fast, params.slow, names=("updates", "params.fast",
                                                                                  "params.slow"))  # fmt: skip
            new_fast, new_slow = unzip(pairs, fast_updates, 2)
            if reset_state:
                fresh = inner.init(params.fast)
                fast_state = jax.tree.map(
                    lambda current, initial: jnp.where(sync, initial, current).astype(jnp.result_type(current)),
                    fast_state, fresh,
                )  # fmt: skip
            steps = safe_increment(state.steps_since_sync) % period
            return LookaheadParams(fast=new_fast, slow=new_slow), LookaheadState(fast_state, steps, state.hyperparams)

        self = super().__new__(cls, init, update)
        self.inner, self.spec, self.reset_state = inner, spec, reset_state
        return self

    def __repr__(self) -> str:
        return f"lookahead({self.inner!r}, sync_period={self.spec.constants['sync_period']!r}, ...)"


def lookahead(
    fast_optimizer: GradientTransformation, sync_period: int, slow_step_size: float, reset_state: bool = False
) -> Lookahead:
    """Lookahead (Zhang et al. 2019, Algorithm 1) around a fast optimizer::

        fast weights: k = sync_period steps of fast_optimizer
        then          slow <- slow + alpha (fast - slow),   fast <- slow       (alpha = slow_step_size)

    written as one update per step on ``LookaheadParams(fast, slow)``: at an ordinary step the
    fast weights take the fast optimizer's update ``u`` and the slow ones stay; at the k-th step,
    with ``d = fast + u - slow``, the slow weights get ``alpha d`` and the fast ones ``u - (1 - alpha) d``
    (landing on the new slow weights). Apply the returned updates unchanged with ``apply_updates``.

    Args:
      fast_optimizer: the inner optimizer (its updates are computed at ``params.fast``).
      sync_period: k, fast steps per synchronisation (an integer >= 1).
      slow_step_size: alpha, in ``[0, 1]``.
      reset_state: re-initialise the fast optimizer's state at every synchronisation.

    Returns:
      A ``GradientTransformationExtraArgs``; ``update(grads, state, params: LookaheadParams)``.
      ``sync_period`` and ``slow_step_size`` are hyperparameters in the state.

    Edge behaviour: ``init`` accepts plain params (a warning; they are taken as the fast ones);
    ``update`` requires ``LookaheadParams``. The synchronisation is a select, so an inf in the
    slow-fast gap at an ordinary step does not turn the update into NaN (Optax multiplies it by 0).
    """
    fast_optimizer = _check_transform("fast_optimizer", fast_optimizer)
    sync_period = _check_count("sync_period", sync_period, 1)
    validate.unit_interval("slow_step_size", slow_step_size, closed_right=True)
    spec = HyperparamSpec(sync_period=sync_period, slow_step_size=slow_step_size)
    return Lookahead(fast_optimizer, spec, bool(reset_state))
