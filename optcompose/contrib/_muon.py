"""Muon: momentum orthogonalized by Newton–Schulz (Jordan 2024), with AdamW for the other leaves."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from optcompose import _tree as tree_lib
from optcompose import _validate as validate
from optcompose._base import GradientTransformationExtraArgs, ScalarOrSchedule, Updates, chain, init_empty_state
from optcompose._hyperparams import Hyperparams, HyperparamSpec, hyperparam_dtype, rename_hyperparams
from optcompose._leafwise import ema_step
from optcompose._numerics import bias_correction_factor, widen
from optcompose.contrib._common import MatrixView, Option, per_leaf_options
from optcompose.contrib._newton_schulz import (
    DEFAULT_NS_COEFFS,
    NS_COEFFS_PRESETS,
    PRECONDITIONINGS,
    MuonDimensionNumbers,
    check_ns_coeffs,
    orthogonalize_via_newton_schulz,
)
from optcompose.optimizers._classic import adamw
from optcompose.transforms._decay import add_decayed_weights
from optcompose.transforms._partition import partition
from optcompose.transforms._scaling import scale_by_learning_rate

__all__ = ["MuonDimensionNumbers", "MuonState", "muon", "orthogonalize_via_newton_schulz", "scale_by_muon"]

_is_dims = lambda x: isinstance(x, MuonDimensionNumbers)


def _options(weight_dimension_numbers: Any, tree: Any) -> Any:
    options = per_leaf_options(weight_dimension_numbers, tree, _is_dims)

    def locate(path, option):
        option.path = tree_lib.path_str(path)
        return option

    return jax.tree_util.tree_map_with_path(locate, options, is_leaf=lambda x: isinstance(x, Option))


def _map_with_options(fn, options, tree, *rest, names):
    """``fn(*leaves, option)`` per leaf; structure and dtype errors name the pytree path."""
    tree_lib.check_same_structure((tree, *rest), names)
    tree_lib.check_floating(tree, names[0])
    structure = jax.tree.structure(tree)
    columns = [structure.flatten_up_to(t) for t in (tree, *rest)]
    out = [fn(*leaves, option) for *leaves, option in zip(*columns, structure.flatten_up_to(options), strict=True)]
    return structure.unflatten(out)


def _dims_for(option: Option, x: jax.Array) -> MuonDimensionNumbers:
    if option.value is not None:
        return option.value
    if jnp.ndim(x) != 2:
        raise ValueError(
            f"Muon orthogonalizes matrices: the leaf at {option.path} has shape {jnp.shape(x)}; give it "
            "MuonDimensionNumbers in weight_dimension_numbers (or leave it to Adam in muon())"
        )
    return MuonDimensionNumbers()


def _view(option: Option, x: jax.Array) -> MatrixView:
    dims = _dims_for(option, x)
    try:
        return MatrixView(jnp.shape(x), dims.reduction_axis, dims.output_axis)
    except ValueError as err:
        raise ValueError(f"{err} (leaf at {option.path}, {dims})") from None


class MuonState(NamedTuple):
    """State of ``scale_by_muon``: step count, momentum, the Newton–Schulz coefficients, hyperparameters."""

    count: jax.Array
    mu: Updates
    ns_coeffs: jax.Array
    hyperparams: Hyperparams


def scale_by_muon(
    ns_coeffs: Any = DEFAULT_NS_COEFFS,
    ns_steps: jax.typing.ArrayLike = 5,
    beta: jax.typing.ArrayLike = 0.95,
    eps: jax.typing.ArrayLike = 1e-8,
    mu_dtype: Any | None = None,
    *,
    nesterov: bool = True,
    adaptive: bool = False,
    preconditioning: str = "frobenius",
    weight_dimension_numbers: Any = None,
) -> GradientTransformationExtraArgs:
    """Muon's direction: the bias-corrected momentum, orthogonalized (Jordan 2024; Bernstein 2024)::

        m_t = beta * m_{t-1} + (1 - beta) * g_t
        m_hat = m_t / (1 - beta**t)
        m_hat = beta * m_t / (1 - beta**(t+1)) + (1 - beta) * g_t / (1 - beta**t)      (nesterov)
        u_t = NS(m_hat)                          (orthogonalize_via_newton_schulz, per matrix)
        u_t = <m_hat, NS(m_hat)> * NS(m_hat)     (adaptive: scaled by the dual norm, Bernstein 2024)

    Args:
      ns_coeffs: ``(a, b, c)`` for every Newton–Schulz step, or a table of rows (one per step).
      ns_steps: the number of Newton–Schulz steps (ignored for a table).
      beta: the momentum's decay.
      eps: keeps the preconditioning finite for a zero momentum.
      mu_dtype: storage dtype of the momentum (default: the parameter's).
      nesterov: use the look-ahead momentum above.
      adaptive: scale by ``<m_hat, NS(m_hat)>``.
      preconditioning: ``'frobenius'``, ``'spectral'``, ``'aol'`` or ``'schatten'``
        (see ``orthogonalize_via_newton_schulz``).
      weight_dimension_numbers: ``MuonDimensionNumbers`` for every leaf, a pytree (prefix) of them,
        or a function of the updates returning one; ``None`` (default) requires 2-D leaves.

    Returns:
      A ``GradientTransformationExtraArgs`` whose state is ``MuonState``.

    The arithmetic runs in float32 (float64 for float64 parameters) whatever the storage dtype;
    Optax runs the iteration in the parameter's dtype, so bfloat16 weights differ from Optax by
    bfloat16 rounding (~1e-2 relative), float32 weights agree to ~1e-6. A zero momentum gives a
    zero update. Leaves that are not matrices need dimension numbers (or ``muon()``'s Adam).
    """
    coeffs = check_ns_coeffs(ns_coeffs, ns_steps)
    validate.integer_at_least("ns_steps", ns_steps, 0)
    validate.unit_interval("beta", beta)
    validate.non_negative("eps", eps)
    validate.one_of("preconditioning", preconditioning, PRECONDITIONINGS)
    if callable(beta) or callable(eps):
        raise TypeError("beta and eps must be numbers (Optax's scale_by_muon takes no schedules for them)")
    spec = HyperparamSpec(beta=beta, eps=eps)
    steps = int(ns_steps)

    def init(params):
        dtype = hyperparam_dtype(params)
        return MuonState(
            count=jnp.zeros((), jnp.int32),
            mu=tree_lib.zeros_like(params, mu_dtype),
            ns_coeffs=jnp.asarray(coeffs, dtype),
            hyperparams=spec.init(dtype),
        )

    def update(updates, state, params=None, **extra_args):
        del params, extra_args
        t = tree_lib.safe_increment(state.count)
        options = _options(weight_dimension_numbers, updates)

        def leaf(g, mu, option):
            _view(option, g)  # checks the leaf's axes, naming its path
            gw, muw = widen(g), widen(mu)
            real = jnp.finfo(gw.dtype).dtype
            b, e = (jnp.asarray(state.hyperparams[k]).astype(real) for k in ("beta", "eps"))
            mu_new = ema_step(muw, gw, b)
            if nesterov:
                mu_hat = b * mu_new * bias_correction_factor(b, t + 1) + (1.0 - b) * gw * bias_correction_factor(b, t)
            else:
                mu_hat = mu_new * bias_correction_factor(b, t)
            u = orthogonalize_via_newton_schulz(
                mu_hat, state.ns_coeffs.astype(real), steps, preconditioning, e, _dims_for(option, g)
            )
            if adaptive:
                u = jnp.sum(jnp.conj(mu_hat) * u) * u
            return u.astype(jnp.result_type(g)), mu_new.astype(jnp.result_type(mu))

        results = _map_with_options(leaf, options, updates, state.mu, names=("updates", "mu"))
        new_updates, mu = tree_lib.unzip(results, updates, 2)
        return new_updates, state._replace(count=t, mu=mu)

    return GradientTransformationExtraArgs(init, update)


def scale_by_shape(
    weight_dimension_numbers: Any = None, consistent_rms: jax.typing.ArrayLike | None = None
) -> GradientTransformationExtraArgs:
    """Scales each matrix update by a factor of its shape (stateless; Optax's ``scale_by_shape``)::

        u -> sqrt(max(1, fan_out / fan_in)) * u            (consistent_rms=None: Jordan's width scaling)
        u -> sqrt(max(fan_in, fan_out)) * consistent_rms * u   (Liu et al. 2025, "Muon is scalable")

    ``fan_in`` / ``fan_out`` are the products of the reduction / output axes' sizes.
    """
    if consistent_rms is not None:
        validate.finite("consistent_rms", consistent_rms)

    def update(updates, state, params=None, **extra_args):
        del params, extra_args
        options = _options(weight_dimension_numbers, updates)

        def leaf(u, option):
            view = _view(option, u)
            if consistent_rms is None:
                factor = math.sqrt(max(1.0, view.fan_out / view.fan_in))
            else:
                factor = math.sqrt(max(view.fan_in, view.fan_out)) * consistent_rms
            return (widen(u) * factor).astype(jnp.result_type(u))

        return _map_with_options(leaf, options, updates, names=("updates",)), state

    return GradientTransformationExtraArgs(init_empty_state, update)


def muon(
    learning_rate: ScalarOrSchedule,
    ns_coeffs: Any = DEFAULT_NS_COEFFS,
    ns_steps: jax.typing.ArrayLike = 5,
    beta: jax.typing.ArrayLike = 0.95,
    eps: jax.typing.ArrayLike = 1e-8,
    weight_decay: jax.typing.ArrayLike = 0.0,
    weight_decay_mask: Any | Callable[[Any], Any] | None = None,
    mu_dtype: Any | None = None,
    *,
    nesterov: bool = True,
    adaptive: bool = False,
    preconditioning: str = "frobenius",
    adam_b1: jax.typing.ArrayLike = 0.9,
    adam_b2: jax.typing.ArrayLike = 0.999,
    adam_eps_root: jax.typing.ArrayLike = 0.0,
    adam_weight_decay: jax.typing.ArrayLike = 0.0,
    adam_learning_rate: ScalarOrSchedule | None = None,
    muon_weight_dimension_numbers: Any = None,
    consistent_rms: jax.typing.ArrayLike | None = None,
) -> GradientTransformationExtraArgs:
    """Muon for the matrices, AdamW for every other leaf (Jordan 2024; Liu et al. 2025)::

        matrices:  w -> w - lr * (scale(shape) * NS(m_hat) + weight_decay * w)
        others:    adamw(adam_learning_rate or lr, adam_b1, adam_b2, eps, adam_eps_root, adam_weight_decay)

    with ``NS(m_hat)`` from ``scale_by_muon`` and ``scale(shape)`` from ``scale_by_shape``
    (``sqrt(max(1, fan_out / fan_in))``, or ``sqrt(max(fan_in, fan_out)) * consistent_rms``).

    Args:
      learning_rate: the step size (a number or a schedule).
      ns_coeffs: Newton–Schulz coefficients, a table of rows, or a preset name (``'standard'``,
        ``'dion'``).
      ns_steps, beta, eps, mu_dtype, nesterov, adaptive, preconditioning: as ``scale_by_muon``
        (``eps`` and ``nesterov`` are also Adam's).
      weight_decay: decoupled decay of the Muon leaves (multiplied by the learning rate, as torch).
      weight_decay_mask: which Muon leaves decay (a pytree of bools or a function of the params).
      adam_b1, adam_b2, adam_eps_root, adam_weight_decay, adam_learning_rate: the AdamW of the other
        leaves (``adam_learning_rate=None``: ``learning_rate``).
      muon_weight_dimension_numbers: ``MuonDimensionNumbers`` per leaf (a pytree prefix, or a
        function of the params); ``None`` in it sends a leaf to Adam. Default: every 2-D leaf to
        Muon with axes (0, 1), all others to Adam.
      consistent_rms: see ``scale_by_shape``.

    Returns:
      A ``partition`` with parts ``'muon'`` and ``'adam'`` (Optax's state layout). Hyperparameters
      are named as the arguments: ``learning_rate``, ``beta``, ``weight_decay`` for Muon,
      ``adam_learning_rate``, ``adam_b1`` ... for Adam; ``eps`` (shared) is reported per part.

    ``torch.optim.Muon(lr, weight_decay=wd, momentum=beta, nesterov=False, adjust_lr_fn=None)`` on a
    torch weight of shape ``(out, in)`` is ``muon(lr, beta=beta, weight_decay=wd, nesterov=False,
    muon_weight_dimension_numbers=MuonDimensionNumbers(1, 0))`` (torch's ``x W^T`` layout) up to
    torch's bfloat16 iteration and its ``max(||X||, eps)`` instead of ``||X|| + eps``;
    ``adjust_lr_fn='match_rms_adamw'`` is ``consistent_rms=0.2``. torch's Nesterov form
    ``(1 - beta) g + beta m`` has no bias correction and differs from Optax's.
    """
    validate.non_negative("learning_rate", learning_rate)
    if isinstance(ns_coeffs, str):
        if ns_coeffs not in NS_COEFFS_PRESETS:
            raise ValueError(f"ns_coeffs preset must be one of {sorted(NS_COEFFS_PRESETS)}, got {ns_coeffs!r}")
        ns_coeffs = NS_COEFFS_PRESETS[ns_coeffs]
    if adam_learning_rate is None:
        adam_learning_rate = learning_rate
    dims_spec = muon_weight_dimension_numbers

    def param_labels(params):
        if dims_spec is None:
            return jax.tree.map(lambda x: "muon" if jnp.ndim(x) == 2 else "adam", params)
        options = per_leaf_options(dims_spec, params, _is_dims)
        return jax.tree.map(
            lambda o: "adam" if o.value is None else "muon", options, is_leaf=lambda x: isinstance(x, Option)
        )

    dims = MuonDimensionNumbers() if dims_spec is None else dims_spec
    muon_part = chain(
        scale_by_muon(
            ns_coeffs=ns_coeffs, ns_steps=ns_steps, beta=beta, eps=eps, mu_dtype=mu_dtype, nesterov=nesterov,
            adaptive=adaptive, preconditioning=preconditioning, weight_dimension_numbers=dims,
        ),
        scale_by_shape(weight_dimension_numbers=dims, consistent_rms=consistent_rms),
        add_decayed_weights(weight_decay, weight_decay_mask),
        scale_by_learning_rate(learning_rate),
    )  # fmt: skip
    adam_part = rename_hyperparams(
        adamw(
            learning_rate=adam_learning_rate, b1=adam_b1, b2=adam_b2, eps=eps, eps_root=adam_eps_root,
            weight_decay=adam_weight_decay, mu_dtype=mu_dtype, nesterov=nesterov,
        ),
        {"learning_rate": "adam_learning_rate", "b1": "adam_b1", "b2": "adam_b2", "eps_root": "adam_eps_root",
         "weight_decay": "adam_weight_decay"},
    )  # fmt: skip
    return partition({"muon": muon_part, "adam": adam_part}, param_labels)
