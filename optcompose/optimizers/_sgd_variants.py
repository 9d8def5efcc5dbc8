"""SGD variants: Optax's noisy SGD, Fromage, SGD with Polyak's step size and optimistic gradient
descent, and torch's averaged SGD (``torch.optim.ASGD``, not in Optax)."""

from __future__ import annotations

from typing import Any

from optcompose import _validate as validate
from optcompose._base import GradientTransformation, ScalarOrSchedule, chain
from optcompose._hyperparams import rename_hyperparams
from optcompose.optimizers._classic import sgd
from optcompose.transforms._asgd import scale_by_asgd
from optcompose.transforms._decay import add_decayed_weights
from optcompose.transforms._scaling import scale_by_learning_rate
from optcompose.transforms._step_rules import add_noise, fromage_step, scale_by_optimistic_gradient, scale_by_polyak
from optcompose.transforms._trust_ratio import scale_by_trust_ratio


def noisy_sgd(
    learning_rate: ScalarOrSchedule,
    eta: float = 0.01,
    gamma: float = 0.55,
    key: Any = None,
    *,
    seed: int | None = None,
) -> GradientTransformation:
    """SGD with annealed Gaussian gradient noise (Neelakantan et al. 2015)::

        w -> w - lr * (g_t + N(0, eta / t**gamma))

    Args:
      learning_rate: the step size, a number or a schedule.
      eta: the initial variance of the noise.
      gamma: the decay exponent of the variance.
      key: a ``jax.random.key``, a raw ``PRNGKey`` or an integer seed (None: warns, uses 0).
      seed: deprecated name of an integer ``key``.

    Returns:
      ``chain(add_noise(eta, gamma, key), scale_by_learning_rate(learning_rate))``.
    """
    validate.non_negative("learning_rate", learning_rate)
    return chain(add_noise(eta, gamma, key, seed=seed), scale_by_learning_rate(learning_rate))


def asgd(
    learning_rate: ScalarOrSchedule = 0.01,
    lambd: float = 1e-4,
    alpha: float = 0.75,
    t0: float = 1e6,
    weight_decay: ScalarOrSchedule = 0.0,
) -> GradientTransformation:
    """Averaged SGD (Polyak & Juditsky 1992, "Acceleration of stochastic approximation by averaging"),
    ``torch.optim.ASGD``::

        g'    = g + weight_decay * w                            (L2, as torch)
        eta_t = lr / (1 + lambd * lr * (t - 1))**alpha
        mu_t  = 1 / max(1, t - 1 - t0)
        w    -> w * (1 - lambd * eta_t) - eta_t * g'
        ax   -> w  if mu_t == 1,  else  ax + mu_t (w - ax)          (the new w: a running average)

    Train with the parameters; evaluate with ``asgd_averaged_params(state)``, torch's
    ``optimizer.state[p]['ax']``. Not in Optax; the arguments and defaults are torch's, and the
    numbers are ``torch.optim.ASGD(lr, lambd, alpha, t0, weight_decay)``'s step for step (torch
    computes ``eta`` and ``mu`` after each step for the next one, from the new step count: the
    ``t - 1`` above). With torch's default ``t0 = 1e6`` averaging starts after a million steps,
    so ``ax`` is the current iterate before that. See ``scale_by_asgd`` for a learning-rate schedule
    (``schedule(t - 1)`` here; torch's ``eta`` lags its LR scheduler by one step).

    Args:
      learning_rate: the base step size, a number or a schedule.
      lambd: the decay term (>= 0): shrinks the parameters and decays ``eta``.
      alpha: the power of the ``eta`` decay (>= 0).
      t0: the number of updates after which averaging starts.
      weight_decay: L2 decay added to the gradient (a number or a schedule).

    Returns:
      ``chain(add_decayed_weights(weight_decay), scale_by_asgd(learning_rate, lambd, alpha, t0))``;
      ``update`` requires params.

    Example::

        tx = optcompose.asgd(0.01, t0=1000)
        state = tx.init(params)
        updates, state = tx.update(grads, state, params)
        params = optcompose.apply_updates(params, updates)
        eval_params = optcompose.asgd_averaged_params(state)
    """
    return chain(add_decayed_weights(weight_decay), scale_by_asgd(learning_rate, lambd, alpha, t0))


def fromage(learning_rate: ScalarOrSchedule, min_norm: float = 1e-6) -> GradientTransformation:
    """Fromage, Frobenius-matched gradient descent (Bernstein et al. 2020, Algorithm 1)::

        w -> (w - lr * ||w|| / ||g|| * g) / sqrt(1 + lr^2)        (per leaf; norms floored at min_norm)

    Optax builds the same numbers as ``scale_by_learning_rate(lr / sqrt(1 + lr^2))`` followed by
    ``add_decayed_weights(1 / sqrt(1 + lr^2) - 1)``, so its state holds derived values (and a
    negative weight decay). Here the state holds ``learning_rate`` itself (settable) and the
    shrink factor is computed without cancellation; for a schedule Optax evaluates
    ``1 / sqrt(1 + lr^2) - 1`` in float32, which is 0 for ``lr < 3e-4`` (no shrinking at all).

    Args:
      learning_rate: the step size, a number or a schedule.
      min_norm: the floor of both norms in the trust ratio.

    Returns:
      ``chain(scale_by_trust_ratio(min_norm), fromage_step(learning_rate))``.
    """
    return chain(scale_by_trust_ratio(min_norm), fromage_step(learning_rate))


def polyak_sgd(
    max_learning_rate: float = 1.0,
    scaling: ScalarOrSchedule = 1.0,
    f_min: float = 0.0,
    eps: float = 0.0,
    variant: str = "sps",
) -> GradientTransformation:
    """SGD with Polyak's step size (Loizou et al. 2021; ``variant="sps+"``: Garrigos et al. 2023)::

        d = -scaling * g
        w -> w + min((f(w) - f_min) / (||d||^2 + eps), max_learning_rate) * d

    ``update`` needs the loss: ``update(grads, state, params, value=loss)``. As in Optax the
    squared norm is that of the already scaled ``d``.

    Args:
      max_learning_rate: the largest step.
      scaling: a global scaling of the gradient, a number or a schedule (stored as ``scaling``).
      f_min: a lower bound of the objective.
      eps: added to the squared norm.
      variant: ``"sps"`` or ``"sps+"`` (the gap clipped at 0).

    Returns:
      ``chain(sgd(learning_rate=scaling), scale_by_polyak(f_min, max_learning_rate, eps, variant))``.
    """
    validate.non_negative("scaling", scaling)
    return chain(
        rename_hyperparams(sgd(learning_rate=scaling), {"learning_rate": "scaling"}),
        scale_by_polyak(f_min=f_min, max_learning_rate=max_learning_rate, eps=eps, variant=variant),
    )


def optimistic_gradient_descent(
    learning_rate: ScalarOrSchedule, alpha: float = 1.0, beta: float = 1.0
) -> GradientTransformation:
    """Optimistic gradient descent (Mokhtari et al. 2020; Daskalakis et al. 2018)::

        w -> w - lr * ((alpha + beta) g_t - beta g_{t-1})

    ``alpha`` and ``beta`` are numbers (Optax's signature allows schedules but its transform
    cannot use them; here a schedule raises ``TypeError``).

    Args:
      learning_rate: the step size, a number or a schedule.
      alpha: the weight of the current gradient.
      beta: the weight of the gradient's change (negative momentum).

    Returns:
      ``chain(scale_by_optimistic_gradient(alpha, beta), scale_by_learning_rate(learning_rate))``.
    """
    validate.non_negative("learning_rate", learning_rate)
    return chain(scale_by_optimistic_gradient(alpha=alpha, beta=beta), scale_by_learning_rate(learning_rate))
