"""Submissions, search spaces, quasi-random search and the three rulesets.

A *submission* is a function ``make_opt(**hyperparameters) -> GradientTransformation`` with a
name, a search space (for the ``tuned`` ruleset) and defaults (for ``defaults`` and
``self-tuning``). If ``make_opt`` accepts a ``total_steps`` keyword the arena passes the run's
step budget (as AlgoPerf gives a submission its workload's budget), so schedules can be
fractions of the run.

Rulesets (AlgoPerf's, at laptop scale)
--------------------------------------

``defaults``
    One trial per seed, the submission's defaults, budget ``max_steps``.
``tuned`` (AlgoPerf's *external tuning*)
    ``S`` studies (one per seed) of ``K`` trials each (``K = 5``, AlgoPerf's ``O = 5``). The
    ``S * K`` points come from a scrambled Halton sequence over the submission's search space
    (below); study ``s`` gets points ``s, s + S, s + 2S, ...``. In each study the trial that
    reaches the target in the fewest steps is selected (ties: the better final validation metric;
    none reaching: the best validation metric), so the submission's result on a workload is the
    median over studies of the selected trials. The search space is the same on every workload.
``self-tuning``
    No hyperparameters: the defaults, one trial per seed, with ``1.5 * max_steps`` (AlgoPerf gives
    self-tuning submissions 1.5 times the runtime).

Search spaces
-------------

A search space maps a keyword of ``make_opt`` to a distribution over it:

=============================== ==================================================================
written as                      samples
=============================== ==================================================================
``LogUniform(lo, hi)``          ``exp(U(log lo, log hi))``; also ``("log", lo, hi)``
``Uniform(lo, hi)``             ``U(lo, hi)``; also ``("linear", lo, hi)``
``OneMinusLogUniform(lo, hi)``  ``1 - exp(U(log lo, log hi))``, for betas and momenta, where ``lo``
                                and ``hi`` bound ``1 - value``; also ``("one_minus_log", lo, hi)``
``Choice([a, b, ...])``         one of the values (uniform); also a plain list ``[a, b, ...]``
a number                        that value, fixed
=============================== ==================================================================

Quasi-random search (Bousquet et al. 2017, the method AlgoPerf prescribes) places the ``N`` points
of a ``d``-dimensional space at a low-discrepancy sequence instead of i.i.d. draws. Point ``i``
of the scrambled Halton sequence has coordinate ``j``

    u_ij = sum_k  sigma_jk(a_k(i)) * b_j^-(k+1)

where ``b_j`` is the ``j``-th prime, ``a_k(i)`` the ``k``-th base-``b_j`` digit of ``i + 1``, and
``sigma_jk`` a random permutation of ``{0, ..., b_j - 1}`` drawn once per dimension and digit
(generalised Halton with random digit scrambling, which breaks the correlations between the
higher dimensions of the plain sequence). The permutations come from a fixed seed, so a ruleset's
trial points are reproducible.

Baselines (the target-setting algorithms)
-----------------------------------------

AlgoPerf's four target-setting algorithms, each with a linear warm-up over 5 % of the run and a
cosine decay to 0 (``lr_t = lr * warmup_cosine(t)``, applied as a multiplier after the optimizer
so that ``learning_rate`` stays a hyperparameter in the state):

============ ================================================ ======================== =====================
name         update                                           defaults                 search space
============ ================================================ ======================== =====================
``AdamW``    ``oc.adamw`` (decoupled weight decay)            lr 1e-3, b1 .9, b2 .999, lr log[1e-4, 1e-1],
                                                              wd 1e-2 (the seed's      1-b1 log[1e-2, .3],
                                                              ``default`` recipe)      1-b2 log[1e-3, .1],
                                                                                       wd log[1e-5, 1]
``NAdamW``   ``oc.nadamw`` if the library has it, else        as AdamW                 as AdamW
             ``scale_by_adam(nesterov=True)`` + decoupled
             decay + ``scale_by_learning_rate``
``Nesterov`` L2 decay + ``oc.sgd(momentum, nesterov=True)``   lr 0.1, momentum .9,     lr log[1e-3, 1],
                                                              wd 1e-4 (the seed's      1-momentum
                                                              ``vision_from_scratch``) log[1e-2, .3],
                                                                                       wd log[1e-6, 1e-2]
``HeavyBall`` L2 decay + ``oc.sgd(momentum)``                 as Nesterov              as Nesterov
============ ================================================ ======================== =====================

Library optimizers
------------------

Every name of :data:`LIBRARY_CANDIDATES` that ``optcompose`` has (at the top level, in
``optcompose.contrib``, or composed of library pieces: ``cautious_adamw`` is
``oc.cautious(oc.adamw(...))``) joins as ``oc.<name>``, run as shipped: a constant learning rate,
its own defaults; Schedule-Free ones are evaluated at their average ``x``
(``schedule_free_eval_params``), not at the point their gradients are taken. Its search
space is derived from its signature: ``learning_rate`` (log-uniform; the range of its family in
:data:`LEARNING_RATE_RANGES`, else ``[1e-4, 1]``) and, where the signature has them with a
numeric default, ``b1``, ``b2``, ``decay``, ``momentum`` (one-minus-log-uniform) and
``weight_decay`` (log-uniform). Its defaults are its signature's; a required learning rate gets
PyTorch's documented default where there is one (:data:`LEARNING_RATE_DEFAULTS`), else 1e-3.
"""

from __future__ import annotations

import dataclasses
import inspect
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

import optcompose as oc

RULESETS = ("defaults", "tuned", "self-tuning")
TRIALS_PER_STUDY = 5
SELF_TUNING_FACTOR = 1.5
WARMUP_FRACTION = 0.05
SEARCH_SEED = 0


# ----------------------------------------------------------------------------------------------
# Search-space distributions
# ----------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class LogUniform:
    """``exp(U(log lo, log hi))``."""

    lo: float
    hi: float

    def from_unit(self, u: float) -> float:
        return float(math.exp(math.log(self.lo) + u * (math.log(self.hi) - math.log(self.lo))))

    def midpoint(self) -> float:
        return self.from_unit(0.5)


@dataclasses.dataclass(frozen=True)
class Uniform:
    """``U(lo, hi)``."""

    lo: float
    hi: float

    def from_unit(self, u: float) -> float:
        return float(self.lo + u * (self.hi - self.lo))

    def midpoint(self) -> float:
        return self.from_unit(0.5)


@dataclasses.dataclass(frozen=True)
class OneMinusLogUniform:
    """``1 - exp(U(log lo, log hi))``: ``lo`` and ``hi`` bound ``1 - value`` (a beta of 0.9 is ``1 - 0.1``)."""

    lo: float
    hi: float

    def from_unit(self, u: float) -> float:
        return 1.0 - LogUniform(self.lo, self.hi).from_unit(u)

    def midpoint(self) -> float:
        return self.from_unit(0.5)


@dataclasses.dataclass(frozen=True)
class Choice:
    """One of ``values``, uniformly."""

    values: tuple[Any, ...]

    def from_unit(self, u: float) -> Any:
        return self.values[min(int(u * len(self.values)), len(self.values) - 1)]

    def midpoint(self) -> Any:
        return self.values[len(self.values) // 2]


@dataclasses.dataclass(frozen=True)
class Fixed:
    """A constant."""

    value: Any

    def from_unit(self, u: float) -> Any:
        return self.value

    def midpoint(self) -> Any:
        return self.value


Distribution = LogUniform | Uniform | OneMinusLogUniform | Choice | Fixed
_KINDS = {"log": LogUniform, "linear": Uniform, "uniform": Uniform, "one_minus_log": OneMinusLogUniform}


def as_distribution(name: str, spec: Any) -> Distribution:
    """A search-space entry in any of its written forms (see the module docstring) as a distribution."""
    if isinstance(spec, LogUniform | Uniform | OneMinusLogUniform | Choice | Fixed):
        dist = spec
    elif isinstance(spec, tuple) and len(spec) == 3 and isinstance(spec[0], str):
        kind, lo, hi = spec
        if kind not in _KINDS:
            raise ValueError(f"search space {name!r}: unknown kind {kind!r}; use one of {sorted(_KINDS)}")
        dist = _KINDS[kind](float(lo), float(hi))
    elif isinstance(spec, list | tuple):
        if not spec:
            raise ValueError(f"search space {name!r}: an empty list of choices")
        dist = Choice(tuple(spec))
    elif isinstance(spec, int | float | bool | str) or spec is None:
        dist = Fixed(spec)
    else:
        raise TypeError(f"search space {name!r}: cannot read {spec!r} as a distribution")
    if isinstance(dist, LogUniform | OneMinusLogUniform) and not 0 < dist.lo <= dist.hi:
        raise ValueError(f"search space {name!r}: a log range needs 0 < lo <= hi, got {dist.lo}, {dist.hi}")
    if isinstance(dist, Uniform) and not dist.lo <= dist.hi:
        raise ValueError(f"search space {name!r}: needs lo <= hi, got {dist.lo}, {dist.hi}")
    return dist


def as_search_space(space: Mapping[str, Any] | None) -> dict[str, Distribution]:
    return {name: as_distribution(name, spec) for name, spec in (space or {}).items()}


# ----------------------------------------------------------------------------------------------
# Scrambled Halton sequence
# ----------------------------------------------------------------------------------------------


def _primes(n: int) -> list[int]:
    primes: list[int] = []
    candidate = 2
    while len(primes) < n:
        if all(candidate % p for p in primes if p * p <= candidate):
            primes.append(candidate)
        candidate += 1
    return primes


def halton(n: int, dims: int, seed: int = SEARCH_SEED, scramble: bool = True) -> np.ndarray:
    """The first ``n`` points of a ``dims``-dimensional (scrambled) Halton sequence in ``[0, 1)^dims``.

    Coordinate ``j`` of point ``i`` is the radical inverse of ``i + 1`` in the ``j``-th prime base,
    each digit passed through a permutation drawn once per (dimension, digit position) from
    ``seed`` (identity permutations when ``scramble=False``: the plain sequence, 1/2, 1/4, 3/4, ...).
    """
    points = np.zeros((n, dims))
    rng = np.random.default_rng(seed)
    for j, base in enumerate(_primes(dims)):
        n_digits = max(1, math.ceil(53 * math.log(2) / math.log(base)))
        perms = [rng.permutation(base) if scramble else np.arange(base) for _ in range(n_digits)]
        for i in range(n):
            index, value, scale = i + 1, 0.0, 1.0 / base
            for k in range(n_digits):
                index, digit = divmod(index, base)
                value += perms[k][digit] * scale
                scale /= base
            points[i, j] = value
    return np.minimum(points, np.nextafter(1.0, 0.0))


def sample_configs(space: Mapping[str, Any], n: int, seed: int = SEARCH_SEED) -> list[dict[str, Any]]:
    """``n`` configurations from a search space by scrambled Halton points (keys in the space's order)."""
    dists = as_search_space(space)
    free = [k for k, d in dists.items() if not isinstance(d, Fixed)]
    units = halton(n, max(1, len(free)), seed=seed)
    configs = []
    for i in range(n):
        config = {}
        for name, dist in dists.items():
            config[name] = dist.value if isinstance(dist, Fixed) else dist.from_unit(float(units[i, free.index(name)]))
        configs.append(config)
    return configs


def study_configs(space: Mapping[str, Any], studies: int, trials: int, seed: int = SEARCH_SEED) -> list[list[dict]]:
    """``studies`` lists of ``trials`` configurations: study ``s`` gets Halton points ``s, s + S, s + 2S, ...``."""
    points = sample_configs(space, studies * trials, seed)
    return [points[s::studies] for s in range(studies)]


# ----------------------------------------------------------------------------------------------
# Submissions
# ----------------------------------------------------------------------------------------------


def _accepts(fn: Callable, name: str) -> bool:
    try:
        parameters = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False
    return name in parameters or any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values())


@dataclasses.dataclass(frozen=True)
class Submission:
    """An optimizer entered in the arena: ``make_opt(**config) -> GradientTransformation`` and how to tune it.

    ``search_space`` (keyword -> distribution, see the module docstring) is used by ``tuned``;
    ``defaults`` (keyword -> value, merged over ``make_opt``'s own signature defaults) by
    ``defaults`` and ``self-tuning``. ``baseline`` marks the target-setting algorithms.
    """

    name: str
    make_opt: Callable[..., Any]
    search_space: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    defaults: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    description: str = ""
    baseline: bool = False
    source: str | None = None
    """How to find it again by name (``resolve_submissions``), for worker processes; ``None`` if it cannot be."""
    eval_params: Callable[[Any, Any], Any] | None = None
    """``(state, params) -> params`` to evaluate at, where that is not the training point (Schedule-Free)."""

    def build(self, config: Mapping[str, Any], total_steps: int) -> Any:
        """The transform for one trial: ``make_opt(**config)``, plus ``total_steps`` if it takes it."""
        kwargs = dict(config)
        if _accepts(self.make_opt, "total_steps") and "total_steps" not in kwargs:
            kwargs["total_steps"] = int(total_steps)
        return self.make_opt(**kwargs)

    def default_config(self) -> dict[str, Any]:
        """The defaults: the declared ones, else ``make_opt``'s signature defaults, else the search space's midpoints.

        Numeric signature defaults are listed explicitly (so a leaderboard shows them); other
        keywords with defaults are left to ``make_opt``. Raises ``ValueError`` when a required
        keyword has none of the three.
        """
        config: dict[str, Any] = {}
        space = as_search_space(self.search_space)
        try:
            parameters = inspect.signature(self.make_opt).parameters.values()
        except (TypeError, ValueError):
            parameters = []
        for p in parameters:
            if p.name == "total_steps" or p.kind in (inspect.Parameter.VAR_KEYWORD, inspect.Parameter.VAR_POSITIONAL):
                continue
            if p.name in self.defaults:
                config[p.name] = self.defaults[p.name]
            elif isinstance(p.default, int | float) and not isinstance(p.default, bool):
                config[p.name] = p.default
            elif p.default is inspect.Parameter.empty:
                if p.name not in space:
                    raise ValueError(
                        f"submission {self.name!r}: {p.name!r} has no default; give make_opt a default for it, "
                        f"or a search space entry (its midpoint is used)"
                    )
                config[p.name] = space[p.name].midpoint()
        config.update({k: v for k, v in self.defaults.items() if k not in config})
        return config

    def configs(self, ruleset: str, seeds: Sequence[int], trials: int = TRIALS_PER_STUDY) -> list[list[dict]]:
        """The configurations of each study (one study per seed) under ``ruleset``."""
        if ruleset not in RULESETS:
            raise ValueError(f"unknown ruleset {ruleset!r}; use one of {RULESETS}")
        if ruleset != "tuned" or not self.search_space:
            return [[self.default_config()] for _ in seeds]
        try:
            fixed = self.default_config()
        except ValueError:
            fixed = {}
        studies = study_configs(self.search_space, len(seeds), trials)
        return [[{**fixed, **config} for config in study] for study in studies]


def budget(ruleset: str, max_steps: int, eval_every: int) -> int:
    """The step budget of a ruleset: ``max_steps``, or 1.5 times it (rounded up to an evaluation) for self-tuning."""
    if ruleset == "self-tuning":
        return eval_every * math.ceil(SELF_TUNING_FACTOR * max_steps / eval_every)
    return max_steps


# ----------------------------------------------------------------------------------------------
# Baselines and library optimizers
# ----------------------------------------------------------------------------------------------

ADAM_SPACE = {
    "learning_rate": LogUniform(1e-4, 1e-1),
    "b1": OneMinusLogUniform(1e-2, 0.3),
    "b2": OneMinusLogUniform(1e-3, 0.1),
    "weight_decay": LogUniform(1e-5, 1.0),
}
MOMENTUM_SPACE = {
    "learning_rate": LogUniform(1e-3, 1.0),
    "momentum": OneMinusLogUniform(1e-2, 0.3),
    "weight_decay": LogUniform(1e-6, 1e-2),
}


def warmup_cosine(total_steps: int, warmup_fraction: float = WARMUP_FRACTION) -> Any:
    """The baselines' learning-rate multiplier: ``t / W`` for ``t < W``, then ``(1 + cos(pi (t - W) / (T - W))) / 2``.

    ``W = max(1, round(warmup_fraction * T))``; a constant 1 for runs too short to have both parts.
    """
    total_steps = int(total_steps)
    warmup = max(1, round(warmup_fraction * total_steps))
    if total_steps <= warmup + 1:
        return oc.constant_schedule(1.0)
    return oc.warmup_cosine_decay_schedule(0.0, 1.0, warmup, total_steps, 0.0)


def adamw_baseline(learning_rate=1e-3, b1=0.9, b2=0.999, weight_decay=1e-2, total_steps=1000):
    """AdamW with warm-up and cosine decay (AlgoPerf's AdamW baseline)."""
    return oc.chain(
        oc.adamw(learning_rate, b1=b1, b2=b2, weight_decay=weight_decay),
        oc.scale_by_schedule(warmup_cosine(total_steps)),
    )


def nadamw_baseline(learning_rate=1e-3, b1=0.9, b2=0.999, weight_decay=1e-2, total_steps=1000):
    """NAdamW with warm-up and cosine decay (AlgoPerf's NAdamW baseline, the speedup reference).

    ``oc.nadamw`` when the library has it; until then the same update from public pieces:
    Nesterov-corrected Adam moments, decoupled weight decay, then the learning rate.
    """
    nadamw = getattr(oc, "nadamw", None)
    if nadamw is not None:
        core = nadamw(learning_rate, b1=b1, b2=b2, weight_decay=weight_decay)
    else:
        core = oc.chain(
            oc.scale_by_adam(b1=b1, b2=b2, nesterov=True),
            oc.add_decayed_weights(weight_decay),
            oc.scale_by_learning_rate(learning_rate),
        )
    return oc.chain(core, oc.scale_by_schedule(warmup_cosine(total_steps)))


def nesterov_baseline(learning_rate=0.1, momentum=0.9, weight_decay=1e-4, total_steps=1000):
    """SGD with Nesterov momentum, L2 weight decay, warm-up and cosine decay (AlgoPerf's Nesterov baseline)."""
    return oc.chain(
        oc.add_decayed_weights(weight_decay),
        oc.sgd(learning_rate, momentum=momentum, nesterov=True),
        oc.scale_by_schedule(warmup_cosine(total_steps)),
    )


def heavy_ball_baseline(learning_rate=0.1, momentum=0.9, weight_decay=1e-4, total_steps=1000):
    """SGD with heavy-ball momentum, L2 weight decay, warm-up and cosine decay (AlgoPerf's heavy-ball baseline)."""
    return oc.chain(
        oc.add_decayed_weights(weight_decay),
        oc.sgd(learning_rate, momentum=momentum),
        oc.scale_by_schedule(warmup_cosine(total_steps)),
    )


REFERENCE = "NAdamW"
"""The submission speedups are measured against (AlgoPerf's target-setting reference)."""

BASELINES: dict[str, Submission] = {
    s.name: s
    for s in [
        Submission("AdamW", adamw_baseline, ADAM_SPACE, description="AdamW + 5% warm-up + cosine", baseline=True),
        Submission("NAdamW", nadamw_baseline, ADAM_SPACE, description="NAdamW + 5% warm-up + cosine", baseline=True),
        Submission(
            "Nesterov",
            nesterov_baseline,
            MOMENTUM_SPACE,
            description="SGD + Nesterov momentum + L2 + 5% warm-up + cosine",
            baseline=True,
        ),
        Submission(
            "HeavyBall",
            heavy_ball_baseline,
            MOMENTUM_SPACE,
            description="SGD + heavy-ball momentum + L2 + 5% warm-up + cosine",
            baseline=True,
        ),
    ]
}

LIBRARY_CANDIDATES = (
    "sgd",
    "adam",
    "adamw",
    "nadam",
    "nadamw",
    "radam",
    "adamax",
    "amsgrad",
    "adabelief",
    "yogi",
    "lion",
    "rmsprop",
    "adagrad",
    "adadelta",
    "adafactor",
    "lamb",
    "lars",
    "novograd",
    "sm3",
    "fromage",
    "signum",
    # Beyond the classics: optcompose's frontier optimizers, then optcompose.contrib's.
    "mars",
    "laprop",
    "cautious_adamw",
    "cautious_lion",
    "shampoo",
    "soap",
    "muon",
    "adopt",
    "ademamix",
    "simplified_ademamix",
    "madgrad",
    "acprop",
    "schedule_free_adamw",
    "schedule_free_sgd",
    # Learning-rate free (their learning_rate is a multiplier of 1): the self-tuning ruleset's field.
    "prodigy",
    "dadapt_adamw",
    "dog",
    "dowg",
    "cocob",
)
"""Optimizer names the arena looks for in ``optcompose``, then ``optcompose.contrib`` (and in
:data:`COMPOSED`); the ones that exist join the arena. Left out, as they need more than
gradients to step: ``sophia`` (a Hessian estimate from the loss), ``polyak_sgd``, ``momo``,
``momo_adam`` (the loss value), ``lbfgs`` (a line search on the loss), ``dpsgd`` (per-example
gradients)."""


def _cautious(base: Callable) -> Callable:
    """``cautious(base(...))`` with ``base``'s signature (so its search space is derived the same way)."""

    def make(*args, **kwargs):
        return oc.cautious(base(*args, **kwargs))

    make.__signature__ = inspect.signature(base)  # type: ignore[attr-defined]
    make.__doc__ = f"cautious({base.__name__}(...)): Liang et al. 2024's masked update on {base.__name__}"
    return make


COMPOSED: dict[str, Callable[[], Callable]] = {
    "cautious_adamw": lambda: _cautious(oc.adamw),
    "cautious_lion": lambda: _cautious(oc.lion),
}
"""Candidates made from library pieces (built lazily: the library may lack a piece)."""

def _schedule_free_eval_params() -> Callable:
    from optcompose.contrib import schedule_free_eval_params

    return schedule_free_eval_params


EVAL_PARAMS: dict[str, Callable[[], Callable]] = {
    "schedule_free_adamw": _schedule_free_eval_params,
    "schedule_free_sgd": _schedule_free_eval_params,
}
"""Candidates evaluated somewhere other than at their training parameters (Schedule-Free: at ``x``)."""


def _find_candidate(name: str) -> Callable | None:
    if name in COMPOSED:
        try:
            return COMPOSED[name]()
        except AttributeError:  # pragma: no cover - a library without the piece
            return None
    import optcompose.contrib

    for where in (oc, optcompose.contrib):
        fn = getattr(where, name, None)
        if callable(fn):
            return fn
    return None


LEARNING_RATE_RANGES = {
    **dict.fromkeys(("sgd", "lars", "adagrad", "signum", "schedule_free_sgd", "fromage", "madgrad"), (1e-3, 1.0)),
    # Learning-rate free: the learning rate multiplies an estimated step size (1 is the method).
    **dict.fromkeys(("prodigy", "dadapt_adamw", "dog", "dowg", "cocob"), (0.1, 10.0)),
    **dict.fromkeys(
        (
            "adam",
            "adamw",
            "nadam",
            "nadamw",
            "radam",
            "adamax",
            "amsgrad",
            "adabelief",
            "yogi",
            "rmsprop",
            "lamb",
            "novograd",
            "schedule_free_adamw",
            "adafactor",
            "soap",
            "shampoo",
            "mars",
            "laprop",
            "cautious_adamw",
            "adopt",
            "ademamix",
            "simplified_ademamix",
            "acprop",
        ),
        (1e-4, 1e-1),
    ),
    "lion": (1e-5, 1e-2),
    "cautious_lion": (1e-5, 1e-2),
    "muon": (1e-3, 1e-1),
}
LEARNING_RATE_DEFAULTS = {
    "sgd": 1e-3,
    "adam": 1e-3,
    "adamw": 1e-3,
    "rmsprop": 1e-2,
    "adagrad": 1e-2,
    "lars": 1.0,
    "adamax": 2e-3,
    "nadam": 2e-3,
    "radam": 1e-3,
    "adadelta": 1.0,
    "lion": 1e-4,
}
_SGD_LIKE = ("sgd", "lars", "adagrad", "signum", "schedule_free_sgd", "fromage", "madgrad")


def _library_space(name: str, fn: Callable) -> dict[str, Distribution]:
    """``learning_rate`` plus the betas, momenta and weight decay the signature has with numeric defaults."""
    lo, hi = LEARNING_RATE_RANGES.get(name, (1e-4, 1.0))
    space: dict[str, Distribution] = {"learning_rate": LogUniform(lo, hi)}
    tunable = {
        "b1": OneMinusLogUniform(1e-2, 0.3),
        "b2": OneMinusLogUniform(1e-3, 0.1),
        "decay": OneMinusLogUniform(1e-2, 0.3),
        "momentum": OneMinusLogUniform(1e-2, 0.3),
        "weight_decay": LogUniform(1e-6, 1e-2) if name in _SGD_LIKE else LogUniform(1e-5, 1.0),
    }
    parameters = inspect.signature(fn).parameters
    for key, dist in tunable.items():
        p = parameters.get(key)
        if p is not None and isinstance(p.default, int | float) and not isinstance(p.default, bool):
            space[key] = dist
    return space


def _library_submission(name: str, fn: Callable) -> Submission:
    parameters = inspect.signature(fn).parameters
    defaults = {}
    lr = parameters.get("learning_rate")
    if lr is not None and lr.default is inspect.Parameter.empty:
        defaults["learning_rate"] = LEARNING_RATE_DEFAULTS.get(name, 1e-3)

    def make_opt(**config):
        return fn(**config)

    make_opt.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
        [
            p.replace(kind=inspect.Parameter.KEYWORD_ONLY)
            for p in parameters.values()
            if p.kind not in (inspect.Parameter.VAR_KEYWORD, inspect.Parameter.VAR_POSITIONAL)
        ]
    )
    eval_params = EVAL_PARAMS.get(name)
    return Submission(
        f"oc.{name}",
        make_opt,
        _library_space(name, fn),
        defaults,
        description=f"optcompose.{name} as shipped (constant learning rate)",
        eval_params=None if eval_params is None else eval_params(),
    )


def library_submissions() -> dict[str, Submission]:
    """``oc.<name>`` for every name of :data:`LIBRARY_CANDIDATES` that optcompose has."""
    found = {}
    for name in LIBRARY_CANDIDATES:
        fn = _find_candidate(name)
        if fn is not None:
            try:
                found[f"oc.{name}"] = _library_submission(name, fn)
            except (TypeError, ValueError):  # pragma: no cover - a signature we cannot read
                continue
    return found


def all_submissions() -> dict[str, Submission]:
    """The baselines, then every library optimizer found."""
    return {**BASELINES, **library_submissions()}
