"""L-BFGS: a quasi-Newton direction followed by a line search."""

from __future__ import annotations

from optcompose import _validate as validate
from optcompose._base import GradientTransformation, GradientTransformationExtraArgs, ScalarOrSchedule, chain, identity
from optcompose.transforms._lbfgs import scale_by_lbfgs
from optcompose.transforms._linesearch import scale_by_zoom_linesearch
from optcompose.transforms._scaling import scale, scale_by_learning_rate


def lbfgs(
    learning_rate: ScalarOrSchedule | None = None,
    memory_size: int = 10,
    scale_init_precond: bool = True,
    linesearch: GradientTransformation | None = scale_by_zoom_linesearch(  # noqa: B008 (Optax's default)
        max_linesearch_steps=20, initial_guess_strategy="one"
    ),
) -> GradientTransformationExtraArgs:
    """L-BFGS (Liu & Nocedal 1989; Nocedal & Wright 2006, Algorithm 7.5)::

        d_k = -H_k g_k              (scale_by_lbfgs: the two-loop recursion over m pairs)
        d_k = -lr_k H_k g_k         (with a learning_rate instead of -1)
        w_{k+1} = w_k + eta_k d_k   (eta_k from the line search; eta_k = 1 without one)

    ``chain(scale_by_lbfgs(memory_size, scale_init_precond), scale(-1.0) or
    scale_by_learning_rate(learning_rate), linesearch)``, so ``update`` takes the line search's
    keyword arguments ``value``, ``grad`` and ``value_fn`` (see ``scale_by_zoom_linesearch``); use
    ``value_and_grad_from_state(f)`` to reuse the line search's last evaluation.

    Args:
      learning_rate: ``None`` (the default: a unit step along ``-H g``, the line search scaling
        it) or a step size / schedule stored as the ``learning_rate`` hyperparameter.
      memory_size: pairs kept (>= 1).
      scale_init_precond: scale the initial inverse-Hessian estimate (see ``scale_by_lbfgs``).
      linesearch: a line search (Optax's default: a zoom search, 20 steps, first guess 1) or
        ``None`` for none.

    Returns:
      A ``chain`` (a ``GradientTransformationExtraArgs``).

    Edge behaviour: memory-intensive (``2 * memory_size`` copies of the params); meant for
    deterministic, small to medium problems. Complex params work with ``grad = conj(jax.grad(f))``
    (Optax's convention). ``torch.optim.LBFGS`` differs: it runs several iterations per ``step``
    (``max_iter``), scales the first step by ``min(1, 1/|g|_1) * lr`` and rejects pairs with
    ``<y, s> <= 1e-10``; see ``tests/optimizers/test_lbfgs.py`` for what matches.
    """
    validate.integer_at_least("memory_size", memory_size, 1)
    if learning_rate is None:
        base_scaling = scale(-1.0)
    else:
        validate.non_negative("learning_rate", learning_rate)
        base_scaling = scale_by_learning_rate(learning_rate)
    if linesearch is None:
        linesearch = identity()
    elif not (hasattr(linesearch, "init") and hasattr(linesearch, "update")):
        raise TypeError(f"linesearch must be a GradientTransformation or None, got {type(linesearch).__name__}")
    direction = scale_by_lbfgs(memory_size=memory_size, scale_init_precond=scale_init_precond)
    return chain(direction, base_scaling, linesearch)
