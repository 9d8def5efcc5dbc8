"""Line searches: pick the step size along an update direction by evaluating the objective.

Both transforms here sit at the end of a chain (``chain(sgd(1.0), scale_by_backtracking_linesearch(15))``,
or inside ``lbfgs``) and need, as extra keyword arguments of ``update``: ``value`` (the objective at
the current params), ``grad`` (its gradient there) and ``value_fn`` (the objective). Any further
keyword argument is passed to ``value_fn`` when its signature names it (data batches, say).

With ``w`` the params, ``u`` the incoming update direction and ``f`` the objective, the line is
``phi(eta) = f(w + eta u)`` with slope ``phi'(eta) = Re <grad f(w + eta u), u>``; both searches return
``eta u`` for the accepted ``eta`` and store ``eta``, ``phi(eta)`` and (for the zoom search, or
``store_grad=True``) the gradient there, which ``value_and_grad_from_state`` hands to the next step so
that a deterministic objective is evaluated once per accepted point.

Scalars of the search (step sizes, values, slopes, errors) are kept in float32, or float64 when a
parameter is float64, so a bfloat16 model still searches in float32; the trial points ``w + eta u``
are cast back to the parameters' dtypes before ``value_fn`` sees them.
"""

from __future__ import annotations

import functools
import inspect
import operator
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from optcompose import _tree as tree_lib
from optcompose import _validate as validate
from optcompose._base import GradientTransformationExtraArgs, Params, Updates
from optcompose._hyperparams import Hyperparams, HyperparamSpec, hyperparam_dtype
from optcompose._numerics import widen

# ----------------------------------------------------------------------------------------------
# Small pytree arithmetic shared with scale_by_lbfgs.


def tree_inner(x: Any, y: Any) -> jax.Array:
    """``Re sum_leaves <x, y>`` with ``<a, b> = sum conj(a) * b`` (a full-precision tensordot per leaf).

    Leaves are widened to float32 first (float64 and complex kept), so bfloat16 trees accumulate
    in float32. The leaves' products are added left to right in pytree order.
    """
    total = 0
    for a, b in zip(jax.tree.leaves(x), jax.tree.leaves(y), strict=True):
        a, b = widen(a), widen(b)
        if jnp.iscomplexobj(a):
            a = jnp.conj(a)
        total = total + jnp.tensordot(a, b, a.ndim, precision=jax.lax.Precision.HIGHEST)
    return jnp.real(jnp.asarray(total))


def tree_squared_norm(x: Any) -> jax.Array:
    """``sum_leaves sum |x|^2`` (``re^2 + im^2`` for complex leaves), accumulated in float32 or wider."""
    total = 0
    for leaf in jax.tree.leaves(x):
        leaf = widen(leaf)
        total = total + jnp.sum(jnp.square(jnp.real(leaf)) + jnp.square(jnp.imag(leaf)))
    return jnp.asarray(total)


def tree_axpy(x: Any, scalar: jax.Array, y: Any) -> Any:
    """``x + scalar * y`` per leaf, computed wide and stored in each ``x`` leaf's dtype (None kept)."""

    def one(a, b):
        if a is None:
            return None
        return (widen(a) + scalar * widen(b)).astype(jnp.result_type(a))

    return jax.tree.map(one, x, y, is_leaf=lambda leaf: leaf is None)


def tree_scale(scalar: jax.Array, x: Any) -> Any:
    """``scalar * x`` per leaf, computed wide and stored in each leaf's dtype."""
    return jax.tree.map(lambda a: (scalar * widen(a)).astype(jnp.result_type(a)), x)


def _cast_like(tree: Any, like: Any) -> Any:
    return jax.tree.map(lambda t, o: jnp.asarray(t).astype(jnp.result_type(o)), tree, like)


def _select(pred: jax.Array, if_true: Any, if_false: Any) -> Any:
    return jax.tree.map(lambda a, b: jnp.where(pred, a, b), if_true, if_false)


def _scalar_dtype(params: Params) -> Any:
    leaves = [leaf for leaf in jax.tree.leaves(params)]
    if not leaves:
        raise ValueError("a line search needs at least one parameter leaf")
    return hyperparam_dtype(params)


def _check_count(name: str, value: Any, minimum: int) -> int:
    """An integer argument given as a Python int or an integer-valued 0-d array."""
    if isinstance(value, bool):
        raise TypeError(f"{name} must be an integer, got {value!r}")
    try:
        number = operator.index(value)
    except TypeError:
        array = np.asarray(value)
        if array.shape != () or not np.issubdtype(array.dtype, np.number) or array != np.round(array):
            raise TypeError(f"{name} must be an integer, got {value!r} of type {type(value).__name__}") from None
        number = int(array)
    validate.integer_at_least(name, number, minimum)
    return number


def split_fn_kwargs(value_fn: Callable[..., Any], extra_args: dict[str, Any], who: str) -> dict[str, Any]:
    """The extra arguments ``value_fn`` takes by name; any other raises ``TypeError`` naming them.

    A ``value_fn`` with a ``**kwargs`` parameter takes them all.
    """
    try:
        parameters = inspect.signature(value_fn).parameters
    except (TypeError, ValueError):
        return dict(extra_args)
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
        return dict(extra_args)
    taken = {k: v for k, v in extra_args.items() if k in parameters}
    unused = sorted(set(extra_args) - set(taken))
    if unused:
        raise TypeError(
            f"Unexpected keyword arguments passed to `{who}.update`: {unused} are not arguments of value_fn "
            f"(its arguments: {list(parameters)}); pass only what value_fn accepts"
        )
    return taken


def _require(who: str, value: Any, grad: Any, value_fn: Any) -> None:
    if value is None or grad is None or value_fn is None:
        missing = [n for n, v in (("value", value), ("grad", grad), ("value_fn", value_fn)) if v is None]
        raise TypeError(
            f"{who}.update needs the keyword arguments value=, grad= and value_fn= (missing {missing}); call "
            "update(updates, state, params, value=f(params), grad=grad_f(params), value_fn=f)"
        )
    if not callable(value_fn):
        raise TypeError(f"value_fn must be callable, got {value_fn!r}")


# ----------------------------------------------------------------------------------------------
# Backtracking (Armijo) line search.


class BacktrackingLinesearchInfo(NamedTuple):
    """Diagnostics of the last backtracking search.

    Attributes:
      num_linesearch_steps: objective evaluations it made.
      decrease_error: how far the accepted step misses the sufficient-decrease test (0: it passes).
    """

    num_linesearch_steps: jax.Array
    decrease_error: jax.Array


class ScaleByBacktrackingLinesearchState(NamedTuple):
    """The state of ``scale_by_backtracking_linesearch``.

    Attributes:
      learning_rate: the step size accepted last (the next search starts from it).
      value: the objective at the accepted point (``inf`` before the first update).
      grad: the gradient there when ``store_grad`` (else ``None``).
      info: ``BacktrackingLinesearchInfo``.
      hyperparams: ``max_backtracking_steps``, ``slope_rtol``, ``decrease_factor``,
        ``increase_factor``, ``max_learning_rate``, ``atol``, ``rtol``.
    """

    learning_rate: jax.Array
    value: jax.Array
    grad: Updates | None
    info: BacktrackingLinesearchInfo
    hyperparams: Hyperparams


class _Backtrack(NamedTuple):
    learning_rate: jax.Array
    value: jax.Array
    grad: Any
    decrease_error: jax.Array
    iter_num: jax.Array


class BacktrackingLinesearch(GradientTransformationExtraArgs):
    """``scale_by_backtracking_linesearch(...)``; its options are ``self.spec`` and ``self.store_grad``."""

    def __new__(cls, spec: HyperparamSpec, store_grad: bool, verbose: bool) -> BacktrackingLinesearch:
        who = "scale_by_backtracking_linesearch"

        def init(params):
            dtype = _scalar_dtype(params)
            return ScaleByBacktrackingLinesearchState(
                learning_rate=jnp.ones((), dtype),
                value=jnp.full((), jnp.inf, dtype),
                grad=tree_lib.zeros_like(params) if store_grad else None,
                info=BacktrackingLinesearchInfo(jnp.zeros((), jnp.int32), jnp.full((), jnp.inf, dtype)),
                hyperparams=spec.init(dtype),
            )

        def update(updates, state, params=None, *, value=None, grad=None, value_fn=None, **extra_args):
            _require(who, value, grad, value_fn)
            if params is None:
                raise ValueError(f"{who} needs params: call update(updates, state, params, ...)")
            fn_kwargs = split_fn_kwargs(value_fn, extra_args, who)
            hp = {k: jnp.asarray(v) for k, v in state.hyperparams.items()}
            dtype = state.learning_rate.dtype
            value = jnp.asarray(value).astype(dtype)
            objective = functools.partial(value_fn, **fn_kwargs)
            # phi'(0) along the direction (Optax's convention for complex leaves: Re sum u * g).
            slope = tree_inner(jax.tree.map(jnp.conj, updates), grad).astype(dtype)

            def decrease_error(step, new_value):
                error = new_value - (1.0 + hp["rtol"]) * value - step * hp["slope_rtol"] * slope
                error = jnp.where(jnp.isnan(error), jnp.inf, error)
                return jnp.maximum(error, 0.0).astype(dtype)

            def keep_going(s):
                return ~(s.decrease_error <= hp["atol"]) & (s.iter_num <= hp["max_backtracking_steps"])

            def body(s):
                step = jnp.where(s.iter_num > 0, hp["decrease_factor"] * s.learning_rate, s.learning_rate)
                trial = tree_axpy(params, step, updates)
                if store_grad:
                    new_value, linear = jax.linearize(objective, trial)
                    error = decrease_error(step, new_value)
                    last = (error <= hp["atol"]) | (s.iter_num == hp["max_backtracking_steps"])
                    new_grad = jax.lax.cond(
                        last, lambda p: jax.linear_transpose(linear, p)(jnp.ones_like(new_value))[0],
                        lambda p: s.grad, trial,
                    )  # fmt: skip
                else:
                    new_value = objective(trial)
                    error = decrease_error(step, new_value)
                    new_grad = s.grad
                out = _Backtrack(step, jnp.asarray(new_value), new_grad, error, s.iter_num + 1)
                return _cast_like(out, s)

            # An infinite increase_factor means "start from max_learning_rate" (also after a 0 step).
            grown = jnp.where(
                jnp.isinf(hp["increase_factor"]), hp["max_learning_rate"],
                jnp.minimum(hp["increase_factor"] * state.learning_rate, hp["max_learning_rate"]),
            ).astype(dtype)  # fmt: skip
            start = _Backtrack(
                grown, value, tree_lib.zeros_like(params) if store_grad else (),
                jnp.full((), jnp.inf, dtype), jnp.zeros((), jnp.int32),
            )  # fmt: skip
            found = jax.lax.while_loop(keep_going, body, start)
            # No finite point was found: take no step rather than a NaN or inf one.
            learning_rate = jnp.where(jnp.isinf(found.decrease_error), 0.0, found.learning_rate).astype(dtype)
            if verbose:
                _report(
                    found.decrease_error > hp["atol"],
                    "optcompose scale_by_backtracking_linesearch: no step size with sufficient decrease found; "
                    "value {value}, slope {slope}, step {step}, decrease error {error}",
                    value=value, slope=slope, step=found.learning_rate, error=found.decrease_error,
                )  # fmt: skip
            new_state = ScaleByBacktrackingLinesearchState(
                learning_rate=learning_rate,
                value=found.value.astype(dtype),
                grad=_cast_like(found.grad, state.grad) if store_grad else None,
                info=BacktrackingLinesearchInfo(
                    found.iter_num.astype(jnp.int32), found.decrease_error.astype(state.info.decrease_error.dtype)
                ),
                hyperparams=state.hyperparams,
            )
            return tree_scale(learning_rate, updates), new_state

        self = super().__new__(cls, init, update)
        self.spec, self.store_grad, self.verbose = spec, store_grad, verbose
        return self

    def __repr__(self) -> str:
        options = ", ".join(f"{k}={v!r}" for k, v in self.spec.constants.items())
        return f"scale_by_backtracking_linesearch({options}, store_grad={self.store_grad})"


def scale_by_backtracking_linesearch(
    max_backtracking_steps: int,
    slope_rtol: float = 1e-4,
    decrease_factor: float = 0.8,
    increase_factor: float = 1.5,
    max_learning_rate: float = 1.0,
    atol: float = 0.0,
    rtol: float = 0.0,
    store_grad: bool = False,
    verbose: bool = False,
) -> BacktrackingLinesearch:
    """Backtracking line search for sufficient decrease (Armijo 1966; Nocedal & Wright 2006, Alg. 3.1).

    Starting from ``eta_0 = min(increase_factor * eta_prev, max_learning_rate)`` it tries
    ``eta_j = decrease_factor**j * eta_0`` until the Armijo criterion (with tolerances)::

        f(w + eta u) <= (1 + rtol) f(w) + eta * slope_rtol * Re<u, grad f(w)> + atol

    holds, for at most ``max_backtracking_steps + 1`` evaluations of ``f``, and returns ``eta u``.
    Vaswani et al. (2019, "Painless stochastic gradient") use it with SGD on mini-batches.

    Args:
      max_backtracking_steps: how many times the step may be shrunk (0: only ``eta_0`` is tried).
      slope_rtol: ``c`` of the Armijo criterion, in ``[0, 1)``.
      decrease_factor: shrink factor, in ``(0, 1)``.
      increase_factor: growth of the first guess over the last accepted step (>= 1 normally;
        ``math.inf`` starts every search at ``max_learning_rate``).
      max_learning_rate: the largest step tried.
      atol, rtol: absolute and relative slack of the criterion (>= 0).
      store_grad: also compute the gradient at the accepted point (by transposing the
        linearisation made for the value), for ``value_and_grad_from_state``.
      verbose: print a diagnostic (``jax.debug.print``) when the search fails.

    Returns:
      A ``GradientTransformationExtraArgs`` whose ``update(updates, state, params, *, value, grad,
      value_fn, **fn_kwargs)`` returns ``eta u``. The numbers are hyperparameters in the state.

    Edge behaviour: when no trial point gives a finite value (every ``f`` is inf or NaN) the step
    is 0 and the params stay put. A direction that is not a descent direction (slope >= 0) cannot
    satisfy the test; the search then runs all its steps and returns the smallest step tried.
    Differs from Optax only after a 0 step with ``increase_factor=inf`` (Optax computes
    ``inf * 0 = nan`` and stays at 0 for good; here the search restarts at ``max_learning_rate``).
    """
    max_backtracking_steps = _check_count("max_backtracking_steps", max_backtracking_steps, 0)
    validate.unit_interval("slope_rtol", slope_rtol)
    validate.open_unit_interval("decrease_factor", decrease_factor)
    validate.positive("max_learning_rate", max_learning_rate)
    _positive_or_inf("increase_factor", increase_factor)
    validate.non_negative("atol", atol)
    validate.non_negative("rtol", rtol)
    spec = HyperparamSpec(
        max_backtracking_steps=max_backtracking_steps, slope_rtol=slope_rtol, decrease_factor=decrease_factor,
        increase_factor=increase_factor, max_learning_rate=max_learning_rate, atol=atol, rtol=rtol,
    )  # fmt: skip
    return BacktrackingLinesearch(spec, bool(store_grad), bool(verbose))


def _positive_or_inf(name: str, value: Any) -> None:
    if callable(value):
        raise TypeError(f"{name} must be a number, got a function")
    try:
        number = float(np.asarray(value))
    except (TypeError, ValueError) as err:
        raise TypeError(f"{name} must be a number, got {value!r}") from err
    if not number > 0:  # inf allowed, NaN refused
        raise ValueError(f"{name} must be > 0 (inf allowed), got {value!r}")


def _report(condition: jax.Array, message: str, **values: Any) -> None:
    jax.lax.cond(condition, lambda: jax.debug.print(message, **values, ordered=True), lambda: None)


# ----------------------------------------------------------------------------------------------
# Zoom line search (strong Wolfe conditions).


class ZoomLinesearchInfo(NamedTuple):
    """Diagnostics of the last zoom search.

    Attributes:
      num_linesearch_steps: objective evaluations it made.
      decrease_error: how far the accepted step misses sufficient decrease (0: it passes; a
        positive value means values may not decrease monotonically).
      curvature_error: how far it misses the curvature condition (0: it passes; often positive
        only because ``max_learning_rate`` is too small, which is harmless).
    """

    num_linesearch_steps: jax.Array
    decrease_error: jax.Array
    curvature_error: jax.Array


class ScaleByZoomLinesearchState(NamedTuple):
    """The state of ``scale_by_zoom_linesearch``.

    Attributes:
      learning_rate: the step size accepted last.
      value: the objective at the accepted point (``inf`` before the first update).
      grad: the gradient there (reused by ``value_and_grad_from_state``).
      info: ``ZoomLinesearchInfo``.
      hyperparams: the search's numbers (``max_linesearch_steps``, ``tol``, ``increase_factor``,
        ``slope_rtol``, ``curv_rtol``, ``stepsize_precision`` and, when given, ``max_learning_rate``
        and ``approx_dec_rtol``).
    """

    learning_rate: jax.Array
    value: jax.Array
    grad: Updates
    info: ZoomLinesearchInfo
    hyperparams: Hyperparams


class _Zoom(NamedTuple):
    """One point of the zoom search and what it knows about the bracket (Nocedal & Wright, §3.5)."""

    count: jax.Array
    stepsize: jax.Array
    value: jax.Array
    grad: Any
    slope: jax.Array
    decrease_error: jax.Array
    curvature_error: jax.Array
    error: jax.Array
    interval_found: jax.Array
    done: jax.Array
    failed: jax.Array
    # The bracket: value(high) >= value(low); high may be left or right of low.
    low: jax.Array
    value_low: jax.Array
    slope_low: jax.Array
    high: jax.Array
    value_high: jax.Array
    slope_high: jax.Array
    cubic_ref: jax.Array
    value_cubic_ref: jax.Array
    # The best point seen that has sufficient decrease (a fallback when curvature fails).
    safe_stepsize: jax.Array
    safe_value: jax.Array
    safe_grad: Any


def _cubic_minimizer(a, fa, fpa, b, fb, c, fc):
    """The critical point of the cubic through (a, fa), (b, fb), (c, fc) with slope fpa at a.

    The cubic ``A x^3 + B x^2 + fpa x + fa`` in ``x = t - a``; its minimiser is
    ``a + (-B + sqrt(B^2 - 3 A fpa)) / (3 A)`` (NaN when there is none: the caller then falls back).
    The same interpolation as SciPy's ``scalar_search_wolfe2`` (Nocedal & Wright, eq. 3.59).
    """
    db, dc = b - a, c - a
    rhs = jnp.stack([fb - fa - fpa * db, fc - fa - fpa * dc])
    matrix = jnp.stack([jnp.stack([dc**2, -(db**2)]), jnp.stack([-(dc**3), db**3])])
    denominator = (db * dc) ** 2 * (db - dc)
    coef_a, coef_b = jnp.dot(matrix, rhs, precision=jax.lax.Precision.HIGHEST) / denominator
    radical = coef_b * coef_b - 3.0 * coef_a * fpa
    return a + (-coef_b + jnp.sqrt(radical)) / (3.0 * coef_a)


def _quadratic_minimizer(a, fa, fpa, b, fb):
    """The critical point of the parabola through (a, fa), (b, fb) with slope fpa at a (eq. 3.57)."""
    db = b - a
    curvature = (fb - fa - fpa * db) / (db**2)
    return a - fpa / (2.0 * curvature)


class ZoomLinesearch(GradientTransformationExtraArgs):
    """``scale_by_zoom_linesearch(...)``; its options are ``self.spec`` and the static flags."""

    def __new__(
        cls, spec: HyperparamSpec, has_max: bool, has_approx: bool, initial_guess_strategy: str, verbose: bool
    ) -> ZoomLinesearch:
        who = "scale_by_zoom_linesearch"

        def init(params):
            dtype = _scalar_dtype(params)
            return ScaleByZoomLinesearchState(
                learning_rate=jnp.ones((), dtype),
                value=jnp.full((), jnp.inf, dtype),
                grad=tree_lib.zeros_like(params),
                info=ZoomLinesearchInfo(jnp.zeros((), jnp.int32), jnp.full((), jnp.inf, dtype),
                                        jnp.full((), jnp.inf, dtype)),
                hyperparams=spec.init(dtype),
            )  # fmt: skip

        def update(updates, state, params=None, *, value=None, grad=None, value_fn=None, **extra_args):
            _require(who, value, grad, value_fn)
            if params is None:
                raise ValueError(f"{who} needs params: call update(updates, state, params, ...)")
            fn_kwargs = split_fn_kwargs(value_fn, extra_args, who)
            hp = {k: jnp.asarray(v) for k, v in state.hyperparams.items()}
            dtype = state.learning_rate.dtype
            value_and_grad = jax.value_and_grad(functools.partial(value_fn, **fn_kwargs))
            value0 = jnp.asarray(value).astype(dtype)
            slope0 = tree_inner(updates, grad).astype(dtype)
            grad = _cast_like(grad, state.grad)
            guess = jnp.ones((), dtype) if initial_guess_strategy == "one" else state.learning_rate

            def on_line(step):
                """phi(step), its gradient and phi'(step) = Re sum grad * u."""
                new_value, new_grad = value_and_grad(tree_axpy(params, step, updates))
                slope = tree_inner(jax.tree.map(jnp.conj, new_grad), updates)
                return jnp.asarray(new_value).astype(dtype), _cast_like(new_grad, grad), slope.astype(dtype)

            def decrease_error(step, new_value, new_slope):
                # Armijo (Nocedal & Wright, eq. 3.7a) ...
                error = new_value - value0 - hp["slope_rtol"] * step * slope0
                if has_approx:
                    # ... or Hager & Zhang's approximate Wolfe test (2006, eq. 23), taken only once
                    # the value is within approx_dec_rtol * |f(w)| of f(w) (their eq. 26-27).
                    approximate = new_slope - (2 * hp["slope_rtol"] - 1.0) * slope0
                    near = new_value - value0 - hp["approx_dec_rtol"] * jnp.abs(value0)
                    error = jnp.minimum(jnp.maximum(approximate, near), error)
                error = jnp.maximum(error, 0.0)
                return jnp.where(jnp.isnan(error), jnp.inf, error)

            def curvature_error(new_slope):
                # Strong Wolfe curvature (eq. 3.7b).
                error = jnp.maximum(jnp.abs(new_slope) - hp["curv_rtol"] * jnp.abs(slope0), 0.0)
                return jnp.where(jnp.isnan(error), jnp.inf, error)

            def errors(step, new_value, new_slope):
                dec, curv = decrease_error(step, new_value, new_slope), curvature_error(new_slope)
                return dec, curv, jnp.maximum(dec, curv)

            def bracket(s):
                """Algorithm 3.5: grow the step until an interval holding an acceptable one is found."""
                prev = (s.stepsize, s.value, s.slope)
                step = jnp.where(s.count == 0, guess, hp["increase_factor"] * s.stepsize)
                if has_max:
                    reached_max = step >= hp["max_learning_rate"]
                    step = jnp.minimum(step, hp["max_learning_rate"])
                else:
                    reached_max = jnp.zeros((), bool)
                new_value, new_grad, new_slope = on_line(step)
                dec, curv, err = errors(step, new_value, new_slope)
                safe = _select(dec <= hp["tol"], (step, new_value, new_grad),
                               (s.safe_stepsize, s.safe_value, s.safe_grad))  # fmt: skip
                high_is_new = (dec > 0.0) | ((new_value >= s.value) & (s.count > 0))
                low_is_new = (new_slope >= 0.0) & ~high_is_new
                current = (step, new_value, new_slope)
                low, high = _select(low_is_new, (current, prev), (prev, current))
                found = high_is_new | low_is_new | (err <= hp["tol"])
                done = (err <= hp["tol"]) | (reached_max & ~found)
                failed = (s.count + 1 >= hp["max_linesearch_steps"]) & ~done
                return _Zoom(
                    tree_lib.safe_increment(s.count), step, new_value, new_grad, new_slope, dec, curv, err,
                    found, done, failed, *low, *high, low[0], low[1], *safe,
                )  # fmt: skip

            def zoom(s):
                """Algorithm 3.6: shrink the bracket by interpolation until the step is acceptable."""
                width = jnp.abs(s.high - s.low)
                left, right = jnp.minimum(s.high, s.low), jnp.maximum(s.high, s.low)
                cubic = _cubic_minimizer(s.low, s.value_low, s.slope_low, s.high, s.value_high, s.cubic_ref,
                                         s.value_cubic_ref)  # fmt: skip
                quadratic = _quadratic_minimizer(s.low, s.value_low, s.slope_low, s.high, s.value_high)
                # Trust an interpolant only well inside the bracket; bisect otherwise.
                use_cubic = (cubic > left + 0.2 * width) & (cubic < right - 0.2 * width)
                use_quadratic = ~use_cubic & (quadratic > left + 0.1 * width) & (quadratic < right - 0.1 * width)
                step = jnp.where(use_cubic, cubic, jnp.where(use_quadratic, quadratic, (s.low + s.high) / 2.0))
                new_value, new_grad, new_slope = on_line(step)
                dec, curv, err = errors(step, new_value, new_slope)
                better = (dec <= hp["tol"]) & (new_value < s.safe_value)
                safe = _select(better, (step, new_value, new_grad), (s.safe_stepsize, s.safe_value, s.safe_grad))
                done = err <= hp["tol"]
                high_is_new = (dec > 0.0) | (new_value >= s.value_low)
                high_is_low = (new_slope * (s.high - s.low) >= 0.0) & ~high_is_new
                current, low, high = (step, new_value, new_slope), (s.low, s.value_low, s.slope_low), (
                    s.high, s.value_high, s.slope_high)  # fmt: skip
                new_high = _select(high_is_new, current, _select(high_is_low, low, high))
                new_low = _select(high_is_new, low, current)
                cubic_ref = _select(high_is_new | high_is_low, high[:2], low[:2])
                too_narrow = width <= hp["stepsize_precision"]
                stop = (s.count + 1 >= hp["max_linesearch_steps"]) | (too_narrow & (safe[0] > 0.0))
                return _Zoom(
                    tree_lib.safe_increment(s.count), step, new_value, new_grad, new_slope, dec, curv, err,
                    s.interval_found, done, stop & ~done, *new_low, *new_high, *cubic_ref, *safe,
                )  # fmt: skip

            def fall_back(s):
                """Out of steps: the best point with sufficient decrease if any (or stay put when
                the current point is not even finite), else the last point tried."""
                use_safe = (s.safe_stepsize > 0.0) | jnp.isinf(s.decrease_error)
                step, new_value, new_grad = _select(use_safe, (s.safe_stepsize, s.safe_value, s.safe_grad),
                                                    (s.stepsize, s.value, s.grad))  # fmt: skip
                return s._replace(stepsize=step, value=new_value, grad=new_grad)

            def body(s):
                s = jax.lax.cond(s.interval_found, zoom, bracket, s)
                s = jax.lax.cond(s.failed, fall_back, lambda x: x, s)
                return _cast_like(s, start)

            zero, inf = jnp.zeros((), dtype), jnp.full((), jnp.inf, dtype)
            false = jnp.zeros((), bool)
            start = _Zoom(
                jnp.zeros((), jnp.int32), zero, value0, grad, slope0, inf, inf, inf, false, false, false,
                zero, value0, slope0, zero, value0, slope0, zero, value0, zero, value0, grad,
            )  # fmt: skip
            final = jax.lax.while_loop(lambda s: ~(s.done | s.failed), body, start)
            if verbose:
                _report(
                    final.failed,
                    "optcompose scale_by_zoom_linesearch: no step satisfying both Wolfe conditions found; value "
                    "{value}, slope {slope} (must be < 0), step {step}, decrease error {dec}, curvature error {curv}",
                    value=value0, slope=slope0, step=final.stepsize, dec=final.decrease_error,
                    curv=final.curvature_error,
                )  # fmt: skip
            new_state = ScaleByZoomLinesearchState(
                learning_rate=final.stepsize,
                value=final.value,
                grad=_cast_like(final.grad, state.grad),
                info=ZoomLinesearchInfo(final.count, final.decrease_error, final.curvature_error),
                hyperparams=state.hyperparams,
            )
            return tree_scale(final.stepsize, updates), new_state

        self = super().__new__(cls, init, update)
        self.spec, self.initial_guess_strategy, self.verbose = spec, initial_guess_strategy, verbose
        return self

    def __repr__(self) -> str:
        options = ", ".join(f"{k}={v!r}" for k, v in self.spec.constants.items())
        return f"scale_by_zoom_linesearch({options}, initial_guess_strategy={self.initial_guess_strategy!r})"


def scale_by_zoom_linesearch(
    max_linesearch_steps: int,
    max_learning_rate: float | None = None,
    tol: float = 0.0,
    increase_factor: float = 2.0,
    slope_rtol: float = 1e-4,
    curv_rtol: float = 0.9,
    approx_dec_rtol: float | None = 1e-6,
    stepsize_precision: float = 1e-5,
    initial_guess_strategy: str = "keep",
    verbose: bool = False,
) -> ZoomLinesearch:
    """Line search for the strong Wolfe conditions (Nocedal & Wright 2006, Algorithms 3.5 and 3.6).

    Finds ``eta`` with sufficient decrease and small curvature along ``u``::

        f(w + eta u) <= f(w) + slope_rtol * eta * Re<u, grad f(w)> + tol            (Armijo)
        |Re<grad f(w + eta u), u>| <= curv_rtol * |Re<u, grad f(w)>| + tol           (curvature)

    First it grows ``eta`` by ``increase_factor`` from the initial guess (1, or the last accepted
    step with ``initial_guess_strategy='keep'``) until an interval holding such a step is
    bracketed; then it shrinks the interval with cubic, quadratic or bisection steps (the
    interpolant is trusted only inside the central 60% / 80% of the interval). Near a minimum,
    where the Armijo test drowns in round-off, Hager & Zhang's approximate test
    ``phi'(eta) <= (2 slope_rtol - 1) phi'(0)`` (CG_DESCENT, 2006, eq. 23) is accepted instead once
    ``f(w + eta u) <= f(w) + approx_dec_rtol |f(w)|`` (``approx_dec_rtol=None`` turns this off).

    Args:
      max_linesearch_steps: the most evaluations of ``f`` per search.
      max_learning_rate: the largest step tried (``None``: unbounded).
      tol: slack of both conditions.
      increase_factor: growth of the step while bracketing (> 1).
      slope_rtol: ``c1`` of the Armijo condition, in ``[0, 1)``.
      curv_rtol: ``c2`` of the curvature condition (``inf`` switches it off).
      approx_dec_rtol: relative value tolerance for the approximate test, or ``None``.
      stepsize_precision: stop zooming once the interval is narrower than this and a step with
        sufficient decrease is known (that step is returned).
      initial_guess_strategy: ``'one'`` (Newton-like methods such as L-BFGS) or ``'keep'`` (SGD).
      verbose: print a diagnostic (``jax.debug.print``) when the search fails.

    Returns:
      A ``GradientTransformationExtraArgs`` whose ``update(updates, state, params, *, value, grad,
      value_fn, **fn_kwargs)`` returns ``eta u`` and stores ``eta``, ``f`` and ``grad f`` at the
      accepted point.

    Edge behaviour: when the search runs out of steps it returns the best step with sufficient
    decrease seen, or, when even that is missing, the last step tried; when the last point tried
    is not finite (``inf``/NaN values) and no safe step exists it returns step 0 and the value and
    gradient at ``w``. The numbers are Optax's step for step (same bracket updates, same
    interpolants, same stopping tests).
    """
    max_linesearch_steps = _check_count("max_linesearch_steps", max_linesearch_steps, 0)
    if max_learning_rate is not None:
        validate.positive("max_learning_rate", max_learning_rate)
    validate.non_negative("tol", tol)
    _positive_or_inf("increase_factor", increase_factor)
    validate.unit_interval("slope_rtol", slope_rtol)
    _positive_or_inf("curv_rtol", curv_rtol)
    if approx_dec_rtol is not None:
        validate.non_negative("approx_dec_rtol", approx_dec_rtol)
    validate.non_negative("stepsize_precision", stepsize_precision)
    validate.one_of("initial_guess_strategy", initial_guess_strategy, ("one", "keep"))
    numbers = {
        "max_linesearch_steps": max_linesearch_steps, "tol": tol, "increase_factor": increase_factor,
        "slope_rtol": slope_rtol, "curv_rtol": curv_rtol, "stepsize_precision": stepsize_precision,
    }  # fmt: skip
    if max_learning_rate is not None:
        numbers["max_learning_rate"] = max_learning_rate
    if approx_dec_rtol is not None:
        numbers["approx_dec_rtol"] = approx_dec_rtol
    return ZoomLinesearch(
        HyperparamSpec(**numbers), max_learning_rate is not None, approx_dec_rtol is not None,
        initial_guess_strategy, bool(verbose),
    )  # fmt: skip


# ----------------------------------------------------------------------------------------------
# Reusing the line search's last evaluation.


def _find_field(tree: Any, name: str) -> list[Any]:
    """Every value stored under the NamedTuple field or dict key ``name`` anywhere in ``tree``."""
    found = []
    if isinstance(tree, Hyperparams):
        return found
    if tree_lib.is_record(tree):
        for field, child in zip(tree._fields, tree, strict=True):
            if field == name:
                found.append(child)
            else:
                found.extend(_find_field(child, name))
    elif isinstance(tree, dict):
        for key, child in tree.items():
            if key == name:
                found.append(child)
            else:
                found.extend(_find_field(child, name))
    elif isinstance(tree, (tuple, list)):
        for child in tree:
            found.extend(_find_field(child, name))
    return found


def value_and_grad_from_state(
    value_fn: Callable[..., jax.Array],
) -> Callable[..., tuple[jax.Array, Updates]]:
    """``jax.value_and_grad(value_fn)`` that reuses the value and gradient a line search stored.

    The returned ``fn(params, *args, state, **kwargs)`` looks in ``state`` (an optimizer state
    holding one ``scale_by_zoom_linesearch`` or ``scale_by_backtracking_linesearch(store_grad=True)``)
    for its ``value`` and ``grad`` fields: the objective and gradient at the point the search
    accepted, which are the current params after ``apply_updates``. When the stored value is
    finite they are returned as they are; before the first update (value ``inf``) or after a NaN
    they are computed with ``jax.value_and_grad``. Only valid for a deterministic objective (the
    stored numbers belong to the last batch).

    Args:
      value_fn: the objective, returning a scalar.

    Returns:
      ``fn(params, *args, state, **kwargs) -> (value, grad)``.

    Raises ``ValueError`` (at call time) when ``state`` holds no, or more than one, ``value`` or
    ``grad`` field, or when the gradient was not stored (``store_grad=False``).
    """
    if not callable(value_fn):
        raise TypeError(f"value_fn must be callable, got {value_fn!r}")

    def value_and_grad(params, *fn_args, state, **fn_kwargs):
        values, grads = _find_field(state, "value"), _find_field(state, "grad")
        if len(values) != 1 or len(grads) != 1 or grads[0] is None:
            raise ValueError(
                f"value_and_grad_from_state needs exactly one stored value and gradient in the state, found "
                f"{len(values)} 'value' and {len(grads)} 'grad' fields"
                + (" (the gradient is None: build the line search with store_grad=True)" if grads == [None] else "")
                + "; the state must hold one scale_by_zoom_linesearch or scale_by_backtracking_linesearch"
            )
        value, grad = jnp.asarray(values[0]), grads[0]

        def evaluate(p, a, k):
            new_value, new_grad = jax.value_and_grad(value_fn)(p, *a, **k)
            return jnp.asarray(new_value).astype(value.dtype), _cast_like(new_grad, grad)

        return jax.lax.cond(jnp.isfinite(value), lambda p, a, k: (value, grad), evaluate, params, fn_args, fn_kwargs)

    return value_and_grad
