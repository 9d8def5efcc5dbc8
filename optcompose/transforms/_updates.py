"""Moving copies of the parameters: ``incremental_update`` (Polyak averaging) and ``periodic_update``."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from optcompose import _validate as validate
from optcompose._base import Params


def incremental_update(new_tensors: Params, old_tensors: Params, step_size: Any) -> Params:
    """One step of an exponential moving average of the parameters (Polyak & Juditsky 1992)::

        avg -> step_size * new + (1 - step_size) * avg

    Args:
      new_tensors: the latest parameters.
      old_tensors: the running average (same structure).
      step_size: the weight of the new parameters, in ``[0, 1]`` (a number or a traced scalar).

    Returns:
      The new average, each leaf computed in float32 (or wider) and stored in the average's dtype
      (so a bfloat16 average stays bfloat16); ``None`` leaves stay ``None``.
    """
    if not isinstance(step_size, jax.core.Tracer):
        validate.unit_interval("step_size", step_size, closed_right=True)
    keep = 1.0 - step_size  # in Python when step_size is a Python number, as Optax

    def leaf(new, old):
        if new is None:
            return None
        wide = jnp.promote_types(jnp.result_type(old), jnp.float32)
        out = step_size * jnp.asarray(new).astype(wide) + keep * jnp.asarray(old).astype(wide)
        return out.astype(jnp.result_type(old))

    return jax.tree.map(leaf, new_tensors, old_tensors, is_leaf=lambda x: x is None)


def periodic_update(new_tensors: Params, old_tensors: Params, steps: Any, update_period: Any) -> Params:
    """A slow copy of the parameters, replaced every ``update_period`` steps (Mnih et al. 2015; Grill et al. 2020)::

        target -> new     if steps % update_period == 0
        target -> target  otherwise

    Args:
      new_tensors: the online parameters.
      old_tensors: the target copy.
      steps: the online network's update count (an integer, traced or not).
      update_period: the period (an integer >= 1).

    Returns:
      ``new_tensors`` or ``old_tensors`` (selected with ``lax.cond``: both must have one structure).
    """
    if not isinstance(update_period, jax.core.Tracer):
        period = np.asarray(update_period)
        if period.shape != () or not np.issubdtype(period.dtype, np.integer) or int(period) < 1:
            raise ValueError(f"update_period must be an integer >= 1, got {update_period!r}")
    return jax.lax.cond(jnp.mod(steps, update_period) == 0, lambda: new_tensors, lambda: old_tensors)
