"""The classic optimizers, each a ``chain`` of transforms with Optax's names and defaults.

Every optimizer here reproduces its ``torch.optim`` namesake with the settings given in the
README's PyTorch table (for example ``adagrad(lr, initial_accumulator_value=0.0, eps=1e-10,
eps_in_sqrt=False)`` is ``torch.optim.Adagrad(lr)``).
"""

from __future__ import annotations

from typing import Any

from optcompose import _validate as validate
from optcompose._base import GradientTransformation, ScalarOrSchedule, chain, identity
from optcompose._hyperparams import rename_hyperparams
from optcompose.transforms._adaptive import scale_by_adam, scale_by_rms, scale_by_rss, scale_by_stddev
from optcompose.transforms._decay import add_decayed_weights
from optcompose.transforms._momentum import trace
from optcompose.transforms._partition import masked
from optcompose.transforms._scaling import scale_by_learning_rate
from optcompose.transforms._trust_ratio import scale_by_trust_ratio


def _momentum(
    momentum: ScalarOrSchedule, nesterov: bool, accumulator_dtype: Any | None = None
) -> GradientTransformation:
    """``trace`` whose hyperparameter is named ``momentum`` in the state, as the optimizers call it."""
    heavy_ball = trace(decay=momentum, nesterov=nesterov, accumulator_dtype=accumulator_dtype)
    return rename_hyperparams(heavy_ball, {"decay": "momentum"})


def sgd(
    learning_rate: ScalarOrSchedule,
    momentum: ScalarOrSchedule | None = None,
    nesterov: bool = False,
    accumulator_dtype: Any | None = None,
) -> GradientTransformation:
    """Stochastic gradient descent, optionally with heavy-ball or Nesterov momentum.

    ``w -> w - lr * v_t`` with ``v_t = momentum * v_{t-1} + g_t`` (``torch.optim.SGD`` with
    ``dampening=0``); ``nesterov=True`` steps along ``g_t + momentum * v_t``.
    """
    validate.non_negative("learning_rate", learning_rate)
    if momentum is None and nesterov:
        raise ValueError("nesterov=True needs a momentum value")
    validate.unit_interval("momentum", momentum)
    if momentum is None:
        return chain(identity(), scale_by_learning_rate(learning_rate))
    return chain(_momentum(momentum, nesterov, accumulator_dtype), scale_by_learning_rate(learning_rate))


def adagrad(
    learning_rate: ScalarOrSchedule,
    initial_accumulator_value: float = 0.1,
    eps: float = 1e-7,
    *,
    eps_in_sqrt: bool = True,
) -> GradientTransformation:
    """Adagrad (Duchi et al. 2011): ``w -> w - lr * g / sqrt(sum of g^2 + eps)``.

    ``torch.optim.Adagrad(lr)`` is ``adagrad(lr, initial_accumulator_value=0.0, eps=1e-10,
    eps_in_sqrt=False)``.
    """
    validate.non_negative("learning_rate", learning_rate)
    return chain(
        scale_by_rss(initial_accumulator_value=initial_accumulator_value, eps=eps, eps_in_sqrt=eps_in_sqrt),
        scale_by_learning_rate(learning_rate),
    )


def rmsprop(
    learning_rate: ScalarOrSchedule,
    decay: ScalarOrSchedule = 0.9,
    eps: float = 1e-8,
    initial_scale: float = 0.0,
    eps_in_sqrt: bool = True,
    centered: bool = False,
    momentum: ScalarOrSchedule | None = None,
    nesterov: bool = False,
    bias_correction: bool = False,
) -> GradientTransformation:
    """RMSprop (Tieleman & Hinton 2012), optionally centered (Graves 2013) and with momentum.

    ``w -> w - lr * g / (sqrt(nu) + eps)``, the momentum buffer (if any) accumulating the scaled
    step. ``torch.optim.RMSprop(lr, alpha, eps, momentum, centered)`` is
    ``rmsprop(lr, decay=alpha, eps=eps, eps_in_sqrt=False, momentum=momentum or None,
    centered=centered)``.
    """
    validate.non_negative("learning_rate", learning_rate)
    if momentum is None and nesterov:
        raise ValueError("nesterov=True needs a momentum value")
    validate.unit_interval("momentum", momentum)
    scaling = scale_by_stddev if centered else scale_by_rms
    return chain(
        scaling(
            decay=decay,
            eps=eps,
            initial_scale=initial_scale,
            eps_in_sqrt=eps_in_sqrt,
            bias_correction=bias_correction,
        ),
        scale_by_learning_rate(learning_rate),
        _momentum(momentum, nesterov) if momentum is not None else identity(),
    )


def adam(
    learning_rate: ScalarOrSchedule,
    b1: ScalarOrSchedule = 0.9,
    b2: ScalarOrSchedule = 0.999,
    eps: float = 1e-8,
    eps_root: float = 0.0,
    mu_dtype: Any | None = None,
    *,
    nesterov: bool = False,
    nu_dtype: Any | None = None,
) -> GradientTransformation:
    """Adam (Kingma & Ba 2014): ``w -> w - lr * m_hat / (sqrt(v_hat + eps_root) + eps)``.

    Equal to ``torch.optim.Adam(lr, betas=(b1, b2), eps)``; add L2 regularisation as torch's
    ``weight_decay`` does with ``chain(add_decayed_weights(wd), adam(lr))``.
    """
    validate.non_negative("learning_rate", learning_rate)
    moments = scale_by_adam(
        b1=b1, b2=b2, eps=eps, eps_root=eps_root, mu_dtype=mu_dtype, nesterov=nesterov, nu_dtype=nu_dtype
    )
    return chain(moments, scale_by_learning_rate(learning_rate))


def adamw(
    learning_rate: ScalarOrSchedule,
    b1: ScalarOrSchedule = 0.9,
    b2: ScalarOrSchedule = 0.999,
    eps: float = 1e-8,
    eps_root: float = 0.0,
    mu_dtype: Any | None = None,
    weight_decay: ScalarOrSchedule = 1e-4,
    mask: Any | None = None,
    *,
    nesterov: bool = False,
    nu_dtype: Any | None = None,
) -> GradientTransformation:
    """AdamW, Adam with decoupled weight decay (Loshchilov & Hutter 2019)::

        w -> w - lr * (m_hat / (sqrt(v_hat + eps_root) + eps) + weight_decay * w)

    The decay never enters the moments. Equal to ``torch.optim.AdamW(lr, betas, eps,
    weight_decay)`` (note torch's default weight_decay is 0.01, ours 1e-4 as Optax's).
    ``mask`` limits the decay to some leaves.
    """
    validate.non_negative("learning_rate", learning_rate)
    moments = scale_by_adam(
        b1=b1, b2=b2, eps=eps, eps_root=eps_root, mu_dtype=mu_dtype, nesterov=nesterov, nu_dtype=nu_dtype
    )
    return chain(moments, add_decayed_weights(weight_decay, mask), scale_by_learning_rate(learning_rate))


def lars(
    learning_rate: ScalarOrSchedule,
    weight_decay: ScalarOrSchedule = 0.0,
    weight_decay_mask: Any = True,
    trust_coefficient: float = 0.001,
    eps: float = 0.0,
    trust_ratio_mask: Any = True,
    momentum: ScalarOrSchedule = 0.9,
    nesterov: bool = False,
) -> GradientTransformation:
    """LARS, layer-wise adaptive rate scaling (You, Gitman & Ginsburg 2017, Algorithm 1)::

        d = g + weight_decay * w                                  (masked by weight_decay_mask)
        d -> trust_coefficient * ||w|| / (||d|| + eps) * d        (per layer; trust_ratio_mask)
        v_t = momentum * v_{t-1} + lr * d;   w -> w - v_t

    Pass masks that are False for biases and normalization scales to exclude them from decay
    and from the trust ratio, as the paper does.
    """
    validate.non_negative("learning_rate", learning_rate)
    validate.unit_interval("momentum", momentum)
    return chain(
        add_decayed_weights(weight_decay, mask=weight_decay_mask),
        masked(scale_by_trust_ratio(trust_coefficient=trust_coefficient, eps=eps), trust_ratio_mask),
        scale_by_learning_rate(learning_rate),
        _momentum(momentum, nesterov),
    )


def lamb(
    learning_rate: ScalarOrSchedule,
    b1: ScalarOrSchedule = 0.9,
    b2: ScalarOrSchedule = 0.999,
    eps: float = 1e-6,
    eps_root: float = 0.0,
    weight_decay: ScalarOrSchedule = 0.0,
    mask: Any | None = None,
    *,
    trust_ratio_mask: Any | None = None,
) -> GradientTransformation:
    """LAMB, layer-wise adaptive moments for batch training (You et al. 2019, Algorithm 2)::

        r = m_hat / (sqrt(v_hat + eps_root) + eps) + weight_decay * w     (decay masked by mask)
        w -> w - lr * ||w|| / ||r|| * r                                  (per layer)

    ``trust_ratio_mask`` (our addition) keeps biases and normalization scales at ratio 1.
    """
    validate.non_negative("learning_rate", learning_rate)
    # Named apart from Adam's eps, so get/set_hyperparams(eps=...) means lamb's own eps.
    trust_ratio = rename_hyperparams(scale_by_trust_ratio(), {"eps": "trust_ratio_eps"})
    return chain(
        scale_by_adam(b1=b1, b2=b2, eps=eps, eps_root=eps_root),
        add_decayed_weights(weight_decay, mask),
        trust_ratio if trust_ratio_mask is None else masked(trust_ratio, trust_ratio_mask),
        scale_by_learning_rate(learning_rate),
    )
