"""Guards against bad gradients: ``apply_if_finite`` skips steps whose gradients hold NaN or inf.

Edge values, for every transform in optcompose (tested in ``tests/test_edge_values.py``):

* **Zero gradients and zero parameters** give finite updates. Adaptive scalings return 0 for a
  coordinate whose second moment is exactly 0; the trust ratio of LARS / LAMB is 1 when either
  norm is 0.
* **Magnitudes of 1e30 and 1e-30** give finite updates. Norms (``global_norm``, the trust ratio)
  are rescaled by the largest entry so they neither overflow nor underflow. Squared gradients in
  float32 do overflow above ~1.8e19, as in PyTorch and Optax: Adam's second moment becomes inf
  and the update for that coordinate becomes 0 (finite, but no step); clip the gradients first.
* **Empty pytrees, ``None`` leaves and scalar leaves** are accepted; ``None`` leaves come back as
  ``None`` and hold no state.
* **Integer, bool and float0 leaves raise** ``optcompose._tree.NotFloatingError`` (a ``TypeError``)
  at trace time, naming the pytree path, such as ``updates['step'] has dtype int32``. Casting a
  floating-point update back to an integer dtype would silently truncate it (an SGD step of
  ``-0.1 * 3`` becomes 0), so the transforms that do arithmetic refuse such leaves instead of
  passing them through. Keep integer leaves out of the optimizer with ``partition``, labelling
  them with ``set_to_zero()``. Transforms that do no arithmetic (``identity``, ``set_to_zero``,
  ``freeze``, leaves a ``masked`` leaves out) pass them through unchanged.
* **Counts saturate** at the int32 maximum instead of wrapping to negative
  (``tree.safe_increment``), so a state that has run 2**31 - 1 steps keeps working, bias
  corrections at that count are 1, and schedules evaluated there are finite.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from optcompose import _validate as validate
from optcompose._base import (
    GradientTransformation,
    GradientTransformationExtraArgs,
    OptState,
    _check_transform,
    call_update,
)
from optcompose._tree import safe_increment, zeros_like


class ApplyIfFiniteState(NamedTuple):
    """The state of ``apply_if_finite``.

    Attributes:
      notfinite_count: non-finite steps in a row (reset to 0 by a finite step).
      last_finite: whether the last step's gradients were all finite.
      total_notfinite: non-finite steps since ``init`` (saturates at the int32 maximum).
      inner_state: the state of the wrapped transform.
    """

    notfinite_count: jax.Array
    last_finite: jax.Array
    total_notfinite: jax.Array
    inner_state: OptState


def all_finite(tree: Any) -> jax.Array:
    """A scalar bool: True when no leaf of ``tree`` holds a NaN or an inf (True for no leaves)."""
    finite = jnp.ones((), bool)
    for leaf in jax.tree.leaves(tree):
        finite = finite & jnp.all(jnp.isfinite(leaf))
    return finite


def update_if(
    pred: jax.Array,
    inner: GradientTransformation,
    updates: Any,
    inner_state: Any,
    params: Any,
    extra_args: Any,
    inner_updates: Any = None,
) -> tuple[Any, Any]:
    """``inner``'s update where ``pred`` holds; zero updates and ``inner_state`` unchanged elsewhere.

    The one conditional update of the library (``apply_if_finite``, ``MultiSteps``): it runs under
    ``lax.cond``, so the skipped branch costs nothing but zeros. ``inner_updates`` (default
    ``updates``) is what the inner transform receives when it runs. Each new state leaf is cast to
    the dtype of the old one, so the two branches agree even when ``inner`` (an Optax transform, say)
    lets a dtype drift, and the state's dtypes stay fixed.
    """
    given = updates if inner_updates is None else inner_updates

    def run():
        new_updates, new_state = call_update(inner, given, inner_state, params, extra_args)
        new_state = jax.tree.map(
            lambda new, old: jax.lax.convert_element_type(new, jnp.result_type(old)), new_state, inner_state
        )
        return new_updates, new_state

    def skip():
        return zeros_like(jax.eval_shape(lambda: run()[0])), inner_state

    return jax.lax.cond(pred, run, skip)


def apply_if_finite(inner: GradientTransformation, max_consecutive_errors: int) -> GradientTransformationExtraArgs:
    """Wraps ``inner`` so that a step whose updates hold a NaN or an inf is skipped.

    With ``n`` the number of non-finite steps in a row, including this one::

        all updates finite        -> inner.update runs;             n = 0
        not finite, n <= max      -> zero updates, inner state kept  (the step is skipped)
        not finite, n >  max      -> inner.update runs on the bad updates (it gives up)

    This is Optax's ``apply_if_finite``: after ``max_consecutive_errors`` skipped steps in a row
    the next non-finite step is let through, on the view that a run which keeps producing NaN is
    broken and hiding it helps no one. A skipped step returns zeros, so ``apply_updates`` leaves
    the parameters exactly as they were, and the inner state (moments, counts, schedules) does not
    advance. ``total_notfinite`` counts every non-finite step.

    The inner transform runs under ``lax.cond``, so a skipped step costs only the finiteness check.
    """
    inner = _check_transform("inner", inner)
    validate.integer_at_least("max_consecutive_errors", max_consecutive_errors, 0)

    def init(params):
        return ApplyIfFiniteState(
            notfinite_count=jnp.zeros((), jnp.int32),
            last_finite=jnp.ones((), bool),
            total_notfinite=jnp.zeros((), jnp.int32),
            inner_state=inner.init(params),
        )

    def update(updates, state, params=None, **extra_args):
        finite = all_finite(updates)
        notfinite_count = jnp.where(finite, jnp.zeros((), jnp.int32), safe_increment(state.notfinite_count))
        total_notfinite = jnp.where(finite, state.total_notfinite, safe_increment(state.total_notfinite))

        proceed = finite | (notfinite_count > max_consecutive_errors)
        new_updates, inner_state = update_if(proceed, inner, updates, state.inner_state, params, extra_args)
        return new_updates, ApplyIfFiniteState(notfinite_count, finite, total_notfinite, inner_state)

    return GradientTransformationExtraArgs(init, update)
