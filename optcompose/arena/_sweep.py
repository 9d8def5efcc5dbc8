"""Running trials: a sweep compiles once, its trials run together through ``jax.vmap``.

Every numeric hyperparameter of an optcompose optimizer lives in its state (``oc.get_hyperparams``),
so trials that differ only in hyperparameter *values* run the same program on different data. The
sweep builds each trial's transform and state (``make_opt(**config).init(params)``), stacks the
states (and the seeds' parameters and per-step draws) along a leading trial axis, and runs one
compiled, vmapped program for all of them:

    chunk(params, state, draws, data) = scan over E steps of
        loss, g = value_and_grad(loss)(params, data, draw)
        u, state = opt.update(g, state, params)
        params = apply_updates(params, u)
    followed by the validation metric,

called ``steps / E`` times (``E`` the workload's evaluation interval).

*Same program?* Two trials may share a program only if their updates are the same function of
(gradient, state, params). The sweep checks that instead of trusting it: it traces each
configuration's ``update`` to a jaxpr (``jax.make_jaxpr``, no compilation) and groups trials whose
jaxprs, constants and state structures are identical. A factory that bakes a value into the
program (a Python float closed over, a schedule's peak, a branch on a value) gives a different
jaxpr, so its trials get programs of their own: correct, and counted as recompiles.

Modes (for :func:`run_trials`):

``"vmap"``
    one program per group, all its trials at once (the arena's sweeps);
``"loop"``
    one *single-trial* program per group, trials one after another (hyperparameters are still data,
    so nothing recompiles); with timing per chunk, so a trial's wall time to target is measured;
``"recompile"``
    the Optax way, emulated: a fresh ``jax.jit`` per trial whose hyperparameters are Python
    constants closed over (``oc.set_hyperparams`` with floats inside the traced function), so every
    trial compiles its own program.

Compilations are counted with a ``jax.monitoring`` listener on XLA's backend-compile event.
Failures never propagate: a group that fails to build, compile or run is retried trial by trial,
and a trial that still fails (or whose loss or metric turns non-finite) is recorded with its error
and as not reaching the target.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import math
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

import optcompose as oc
from optcompose.arena import _workloads as wl

COMPILE_EVENT = "/jax/core/compile/backend_compile_duration"


class _CompileCounter:
    """Counts XLA backend compilations (and their seconds) through a ``jax.monitoring`` listener."""

    def __init__(self) -> None:
        self.count = 0
        self.seconds = 0.0
        self._registered = False

    def ensure(self) -> None:
        if not self._registered:
            jax.monitoring.register_event_duration_secs_listener(self._listen)
            self._registered = True

    def _listen(self, event: str, duration: float, **_: Any) -> None:
        if event == COMPILE_EVENT:
            self.count += 1
            self.seconds += duration

    def snapshot(self) -> int:
        self.ensure()
        return self.count


COMPILES = _CompileCounter()


def compile_count() -> int:
    """XLA compilations seen in this process since the arena first counted."""
    return COMPILES.snapshot()


@dataclasses.dataclass
class TrialResult:
    """One trial: its configuration and seed, its curve and what it reached.

    ``steps`` are the evaluation points (after each chunk), ``valid`` the validation metric there
    (``inf`` once non-finite), ``train_loss`` the mean minibatch loss of each chunk.
    ``chunk_s`` are the wall seconds of each chunk (``"loop"`` mode only; compilation excluded).
    """

    config: dict[str, Any]
    seed: int
    steps: list[int] = dataclasses.field(default_factory=list)
    valid: list[float] = dataclasses.field(default_factory=list)
    train_loss: list[float] = dataclasses.field(default_factory=list)
    chunk_s: list[float] = dataclasses.field(default_factory=list)
    steps_to_target: int | None = None
    time_to_target_s: float | None = None
    diverged: bool = False
    error: str | None = None
    final: dict[str, float] = dataclasses.field(default_factory=dict)
    params: Any = None

    @property
    def reached(self) -> bool:
        return self.steps_to_target is not None

    @property
    def final_valid(self) -> float:
        return self.valid[-1] if self.valid else float("inf")

    @property
    def best_valid(self) -> float:
        return min(self.valid) if self.valid else float("inf")

    @property
    def run_s(self) -> float:
        return float(sum(self.chunk_s))


@dataclasses.dataclass
class SweepResult:
    """The trials of one sweep and what running them cost.

    ``compile_s`` is the time XLA took to compile the sweep's training programs (``compile_spent_s``
    the part spent in this call: zero for programs compiled earlier and cached), ``run_s`` the wall
    time of the run loop,
    ``programs`` the compiled programs used, ``recompiles`` the compilations beyond the first
    program (extra groups, and any compilation while trials ran), ``state_bytes_per_param`` the
    optimizer state's bytes over the parameter count.
    """

    trials: list[TrialResult]
    mode: str
    compile_s: float = 0.0
    compile_spent_s: float = 0.0
    run_s: float = 0.0
    setup_s: float = 0.0
    programs: int = 0
    recompiles: int = 0
    state_bytes_per_param: float | None = None

    @property
    def total_s(self) -> float:
        return self.setup_s + self.compile_spent_s + self.run_s


# ----------------------------------------------------------------------------------------------
# Programs
# ----------------------------------------------------------------------------------------------


def _chunk_fn(workload: wl.Workload, opt: Any) -> Callable:
    """``(params, state, draws, data) -> (params, state, mean loss)``: ``len(draws)`` updates of one trial."""

    def chunk(params, state, draws, data):
        def body(carry, draw):
            p, s = carry
            loss, grads = jax.value_and_grad(workload.loss)(p, data, draw)
            updates, s = opt.update(grads, s, p)
            return (oc.apply_updates(p, updates), s), loss

        (params, state), losses = jax.lax.scan(body, (params, state), draws)
        return params, state, jnp.mean(losses)

    return chunk


_EVALS: dict[tuple, Any] = {}


def _eval_program(
    workload: wl.Workload,
    params: Any,
    state: Any,
    data: Any,
    batched: bool,
    options: Mapping | None,
    eval_params: Callable[[Any, Any], Any] | None = None,
) -> Callable[[Any, Any, Any], Any]:
    """The validation metric as its own program ``(params, state, data) -> valid``, compiled once
    per workload and trial count (and per state layout where ``eval_params`` reads the state).

    Kept out of the training program so that every optimizer's program is smaller (compiles faster)
    and so that timed chunks exclude evaluation, as AlgoPerf's untimed evaluations.
    ``eval_params(state, params)`` is the point to evaluate at, for optimizers whose training
    parameters are not it (Schedule-Free evaluates at its average ``x``, trains at ``y``).
    """
    leaves = jax.tree.leaves(params)
    key = (workload, batched, str(jax.tree.structure(params)), tuple(np.shape(x) for x in leaves), _freeze(options))
    if eval_params is not None:  # the program then reads the state: one per state layout
        key += (eval_params, _structure_digest(state))
    if key not in _EVALS:
        if eval_params is None:
            fn = lambda p, d: workload.evaluate(p, d)["valid"]
            args, axes = (params, data), (0, None)
        else:
            fn = lambda p, s, d: workload.evaluate(eval_params(s, p), d)["valid"]
            args, axes = (params, state, data), (0, 0, None)
        if batched:
            fn = jax.vmap(fn, in_axes=axes)
        if len(_EVALS) >= _PROGRAM_CACHE_SIZE:
            _EVALS.pop(next(iter(_EVALS)))
        _EVALS[key] = _compile(fn, args, options).compiled
    compiled = _EVALS[key]
    if eval_params is None:
        return lambda p, s, d: compiled(p, d)
    return compiled


def _freeze(options: Mapping | None) -> tuple:
    return tuple(sorted((options or {}).items()))


def _digest(closed: Any, state: Any) -> str:
    """A key for "same update program": the jaxpr's text, its constants' bytes and the state's structure."""
    h = hashlib.sha256(str(closed.jaxpr).encode())
    for const in closed.consts:
        array = np.asarray(const)
        h.update(str((array.dtype, array.shape)).encode())
        h.update(array.tobytes())
    h.update(str(jax.tree.structure(state)).encode())
    for leaf in jax.tree.leaves(state):
        h.update(str((jnp.shape(leaf), jnp.result_type(leaf))).encode())
    return h.hexdigest()


def update_signature(opt: Any, state: Any, params: Any) -> str:
    """The identity of ``opt.update``'s program for this state: equal signatures run the same compiled code."""
    closed = jax.make_jaxpr(lambda g, s, p: opt.update(g, s, p))(params, state, params)
    return _digest(closed, state)


CANONICAL_PARAMS = {"bias": np.zeros((2,), np.float32), "kernel": np.zeros((3, 2), np.float32)}
"""The small tree (a matrix and a vector) on which configurations are compared: whether a factory
bakes a value into its program does not depend on the parameters' sizes, and tracing a small tree
is cheaper."""

_SIGNATURES: dict[tuple, str] = {}


def program_signature(build: Callable, config: Mapping[str, Any], total_steps: int, cache_key: Any = None) -> str:
    """``update_signature`` of ``build(config, total_steps)`` on :data:`CANONICAL_PARAMS` (cached by ``cache_key``)."""
    key = None
    if cache_key is not None:
        key = (cache_key, tuple(sorted((k, repr(v)) for k, v in config.items())), int(total_steps))
        if key in _SIGNATURES:
            return _SIGNATURES[key]
    params = jax.tree.map(jnp.asarray, CANONICAL_PARAMS)
    opt = build(config, total_steps)
    signature = update_signature(opt, opt.init(params), params)
    if key is not None:
        _SIGNATURES[key] = signature
    return signature


def _structure_digest(state: Any) -> str:
    h = hashlib.sha256(str(jax.tree.structure(state)).encode())
    for leaf in jax.tree.leaves(state):
        h.update(str((jnp.shape(leaf), jnp.result_type(leaf))).encode())
    return h.hexdigest()


@dataclasses.dataclass
class _Program:
    compiled: Any
    compile_s: float


_PROGRAMS: dict[tuple, _Program] = {}


def clear_program_cache() -> None:
    """Forgets the compiled sweep programs (the arena keeps them across rulesets)."""
    _PROGRAMS.clear()
    _EVALS.clear()


def _compile(fn: Callable, args: Sequence[Any], compiler_options: Mapping[str, Any] | None) -> _Program:
    start = time.perf_counter()
    lowered = jax.jit(fn).lower(*args)
    compiled = lowered.compile(compiler_options=dict(compiler_options)) if compiler_options else lowered.compile()
    return _Program(compiled, time.perf_counter() - start)


def _program(key: tuple | None, fn: Callable, args: Sequence[Any], options: Mapping | None) -> tuple[_Program, bool]:
    """A compiled program, from the cache when ``key`` is given and known; returns (program, was_cached)."""
    if key is not None and key in _PROGRAMS:
        return _PROGRAMS[key], True
    program = _compile(fn, args, options)
    if key is not None:
        if len(_PROGRAMS) >= _PROGRAM_CACHE_SIZE:
            _PROGRAMS.pop(next(iter(_PROGRAMS)))
        _PROGRAMS[key] = program
    return program, False


_PROGRAM_CACHE_SIZE = 64


def _closed_over(opt: Any, state: Any, workload: wl.Workload) -> Callable:
    """The Optax way: a chunk whose hyperparameters are Python constants baked into the program."""
    values = {k: float(v) for k, v in oc.get_hyperparams(state).items()}
    inner = _chunk_fn(workload, opt)

    def chunk(params, state, draws, data):
        # Scheduled or injected entries cannot be set: the fresh jit alone already recompiles.
        with contextlib.suppress(KeyError, ValueError):
            state = oc.set_hyperparams(state, values)
        return inner(params, state, draws, data)

    return chunk


# ----------------------------------------------------------------------------------------------
# Trials
# ----------------------------------------------------------------------------------------------


@dataclasses.dataclass
class _Prepared:
    index: int
    opt: Any
    state: Any
    params: Any
    signature: str


def _tree_bytes(tree: Any) -> int:
    return int(sum(np.asarray(x).nbytes for x in jax.tree.leaves(tree)))


def _tree_size(tree: Any) -> int:
    return int(sum(np.size(x) for x in jax.tree.leaves(tree)))


def _error_text(error: BaseException) -> str:
    last = traceback.extract_tb(error.__traceback__)[-1:] if error.__traceback__ else []
    where = f" ({last[0].filename.rsplit('/', 1)[-1]}:{last[0].lineno})" if last else ""
    return f"{type(error).__name__}: {error}"[:500] + where


def _stack(trees: Sequence[Any]) -> Any:
    """Stacks trees along a new leading axis on the host (NumPy), so no eager device operation compiles."""
    return jax.tree.map(lambda *xs: np.stack([np.asarray(x) for x in xs]), *trees)


def _unstack(tree: Any, n: int) -> list[Any]:
    host = jax.tree.map(np.asarray, tree)
    return [jax.tree.map(lambda x, i=i: x[i], host) for i in range(n)]


def _first_reach(steps: Sequence[int], values: Sequence[float], target: float | None) -> int | None:
    if target is None:
        return None
    for step, value in zip(steps, values, strict=True):
        if np.isfinite(value) and value <= target:
            return int(step)
    return None


def run_trials(
    workload: wl.Workload | str,
    build: Callable[[Mapping[str, Any], int], Any],
    trials: Sequence[tuple[Mapping[str, Any], int]],
    steps: int,
    *,
    eval_every: int | None = None,
    target: float | None = None,
    mode: str = "vmap",
    stop_at_target: bool = False,
    keep_params: bool = True,
    progress: Callable[[int], None] | None = None,
    compiler_options: Mapping[str, Any] | None = None,
    cache_key: Any = None,
    eval_params: Callable[[Any, Any], Any] | None = None,
) -> SweepResult:
    """Runs ``trials`` (pairs of hyperparameter configuration and seed) of one optimizer on a workload.

    ``build(config, total_steps)`` makes a trial's transform. ``steps`` must be a multiple of
    ``eval_every`` (default: the workload's). ``target`` (default: the workload's) decides
    ``steps_to_target``; ``stop_at_target`` ends a ``"loop"`` trial at its first evaluation at
    the target (a timed replay). ``progress`` is called with the number of steps each chunk ran.
    ``cache_key`` (any hashable naming the optimizer) lets later calls reuse compiled programs.
    ``eval_params(state, params)``: the point evaluated (and kept in ``params``) instead of the
    training parameters (Schedule-Free's ``schedule_free_eval_params``).
    """
    if mode not in ("vmap", "loop", "recompile"):
        raise ValueError(f"mode must be 'vmap', 'loop' or 'recompile', got {mode!r}")
    workload = wl.get_workload(workload)
    eval_every = int(eval_every or workload.eval_every)
    if steps % eval_every:
        raise ValueError(f"steps ({steps}) must be a multiple of eval_every ({eval_every})")
    target = workload.target if target is None else target
    results = [TrialResult(dict(config), int(seed)) for config, seed in trials]
    sweep = SweepResult(results, mode)
    if not results:
        return sweep
    setup_start = time.perf_counter()
    data = wl.device_data(workload)
    seeds = sorted({r.seed for r in results})
    params0 = {s: wl.initial_params(workload, s) for s in seeds}
    draws = {s: wl.step_draws(workload, s, steps) for s in seeds}

    prepared: list[_Prepared] = []
    for i, r in enumerate(results):
        try:
            opt = build(r.config, steps)
            state = opt.init(params0[r.seed])
            if mode == "recompile":
                signature = f"trial-{i}"
            else:
                try:
                    canonical = program_signature(build, r.config, steps, cache_key)
                except Exception:  # noqa: BLE001 - a factory that needs the real tree: compare on it
                    canonical = update_signature(opt, state, params0[r.seed])
                signature = canonical + _structure_digest(state)
            prepared.append(_Prepared(i, opt, state, params0[r.seed], signature))
        except Exception as error:  # noqa: BLE001 - a trial's failure is a result, not a crash
            r.error = _error_text(error)
    if prepared:
        first = prepared[0]
        sweep.state_bytes_per_param = _tree_bytes(first.state) / max(1, _tree_size(first.params))
    sweep.setup_s = time.perf_counter() - setup_start

    groups: dict[str, list[_Prepared]] = {}
    for p in prepared:
        groups.setdefault(p.signature, []).append(p)

    n_chunks = steps // eval_every
    chunk_draws = lambda seed, c: jax.tree.map(lambda x: x[c * eval_every : (c + 1) * eval_every], draws[seed])
    compiles_in_runs = 0

    def run_group(members: list[_Prepared], batched: bool) -> None:
        nonlocal compiles_in_runs
        head = members[0]
        fn = _closed_over(head.opt, head.state, workload) if mode == "recompile" else _chunk_fn(workload, head.opt)
        seed_of = [results[m.index].seed for m in members]
        if batched:
            params, state = _stack([m.params for m in members]), _stack([m.state for m in members])
            args = (params, state, _stack([chunk_draws(s, 0) for s in seed_of]), data)
            key = None
            if cache_key is not None:
                key = ("vmap", workload, cache_key, head.signature, len(members), eval_every, _freeze(compiler_options))
            program, cached = _program(key, jax.vmap(fn, in_axes=(0, 0, 0, None)), args, compiler_options)
            sweep.compile_s += program.compile_s
            sweep.compile_spent_s += 0.0 if cached else program.compile_s
            sweep.programs += 1
            evaluate = _eval_program(workload, params, state, data, True, compiler_options, eval_params)
            _run_batched(program, evaluate, members, params, state, seed_of)
        else:
            args = (head.params, head.state, chunk_draws(seed_of[0], 0), data)
            key = None
            if cache_key is not None and mode == "loop":
                key = ("loop", workload, cache_key, head.signature, eval_every, _freeze(compiler_options))
            program, cached = _program(key, fn, args, compiler_options)
            sweep.compile_s += program.compile_s
            sweep.compile_spent_s += 0.0 if cached else program.compile_s
            sweep.programs += 1
            evaluate = _eval_program(workload, head.params, head.state, data, False, compiler_options, eval_params)
            for m in members:
                _run_single(program, evaluate, m)

    def _run_batched(program, evaluate, members, params, state, seed_of) -> None:
        nonlocal compiles_in_runs
        before = compile_count()
        alive = np.ones(len(members), bool)
        start = time.perf_counter()
        for c in range(n_chunks):
            batch = _stack([chunk_draws(s, c) for s in seed_of])
            params, state, loss = program.compiled(params, state, batch, data)
            loss, valid = np.asarray(loss, np.float64), np.asarray(evaluate(params, state, data), np.float64)
            for j, m in enumerate(members):
                r = results[m.index]
                finite = bool(np.isfinite(loss[j]) and np.isfinite(valid[j]))
                if not finite:
                    r.diverged, alive[j] = True, False
                r.steps.append((c + 1) * eval_every)
                r.valid.append(float(valid[j]) if finite and alive[j] else float("inf"))
                r.train_loss.append(float(loss[j]))
            if progress is not None:
                progress(eval_every)
            if not alive.any():
                if progress is not None:
                    progress(eval_every * (n_chunks - c - 1))
                break
        sweep.run_s += time.perf_counter() - start
        compiles_in_runs += compile_count() - before
        if keep_params:
            kept = params if eval_params is None else jax.vmap(eval_params)(state, params)
            for j, p in enumerate(_unstack(kept, len(members))):
                results[members[j].index].params = p

    def _run_single(program, evaluate, m: _Prepared) -> None:
        nonlocal compiles_in_runs
        r = results[m.index]
        before = compile_count()
        params, state = m.params, m.state
        try:
            for c in range(n_chunks):
                draw = chunk_draws(r.seed, c)
                start = time.perf_counter()
                params, state, loss = program.compiled(params, state, draw, data)
                loss = float(loss)
                r.chunk_s.append(time.perf_counter() - start)
                valid = float(evaluate(params, state, data))
                finite = bool(np.isfinite(loss) and np.isfinite(valid))
                r.diverged = r.diverged or not finite
                r.steps.append((c + 1) * eval_every)
                r.valid.append(valid if finite and not r.diverged else float("inf"))
                r.train_loss.append(loss)
                if progress is not None:
                    progress(eval_every)
                reached = target is not None and r.valid[-1] <= target
                if r.diverged or (stop_at_target and reached):
                    if progress is not None:
                        progress(eval_every * (n_chunks - c - 1))
                    break
        except Exception as error:  # noqa: BLE001
            r.error = _error_text(error)
        finally:
            sweep.run_s += r.run_s
            compiles_in_runs += compile_count() - before
        if keep_params and r.error is None:
            r.params = params if eval_params is None else eval_params(state, params)

    for members in groups.values():
        batched = mode == "vmap"
        try:
            run_group(members, batched)
        except Exception as error:  # noqa: BLE001 - retry the group's trials one by one
            if batched and len(members) > 1:
                for m in members:
                    results[m.index].steps, results[m.index].valid, results[m.index].train_loss = [], [], []
                    try:
                        run_group([m], batched=False)
                    except Exception as inner:  # noqa: BLE001
                        results[m.index].error = _error_text(inner)
            else:
                for m in members:
                    results[m.index].error = results[m.index].error or _error_text(error)

    for r in results:
        r.steps_to_target = _first_reach(r.steps, r.valid, target)
        if r.steps_to_target is not None and r.chunk_s:
            reached_chunk = r.steps.index(r.steps_to_target)
            r.time_to_target_s = float(sum(r.chunk_s[: reached_chunk + 1]))
    sweep.recompiles = max(0, sweep.programs - 1) + compiles_in_runs
    return sweep


def measure_final(workload: wl.Workload | str, results: Sequence[TrialResult]) -> None:
    """Fills each finished trial's ``final`` (test metric, objective, sharpness, box sharpness) in one vmapped call."""
    from optcompose.arena import _sharpness

    workload = wl.get_workload(workload)
    done = [r for r in results if r.params is not None]
    if not done:
        return
    try:
        measures = _sharpness.measure(workload, _stack([r.params for r in done]), wl.device_data(workload))
    except Exception as error:  # noqa: BLE001
        for r in done:
            r.final = {"error": _error_text(error)}  # type: ignore[dict-item]
        return
    for j, r in enumerate(done):
        r.final = {k: float(v[j]) for k, v in measures.items()}


def sweep_speedup(
    workload: wl.Workload | str = "mlp_digits",
    build: Callable[[Mapping[str, Any], int], Any] | None = None,
    n_trials: int = 16,
    steps: int | None = None,
    *,
    optimizer_name: str = "NAdamW",
    learning_rates: Sequence[float] | None = None,
    seed: int = 0,
    compiler_options: Mapping[str, Any] | None = None,
    modes: Sequence[str] = ("vmap", "loop", "recompile"),
) -> dict[str, Any]:
    """Times an ``n_trials`` learning-rate sweep end to end three ways and checks they agree.

    ``vmap``: one compiled program for all trials; ``loop``: one single-trial program, trials one
    after another; ``recompile``: a fresh jit per trial with the values baked in (the Optax way).
    End to end = building the transforms and states, compiling, and running (data loading and
    XLA's first-use compilations of small eager operations are warmed up before, for all three).
    Returns the seconds and compilation counts of each way, the vmapped sweep's speedup over the
    others, and the largest absolute difference between the ways' validation curves.
    """
    from optcompose.arena import _rulesets as rs

    workload = wl.get_workload(workload)
    if build is None:
        build = rs.BASELINES[optimizer_name].build
    steps = int(steps or workload.max_steps)
    rates = list(learning_rates) if learning_rates is not None else list(np.geomspace(1e-4, 1e-1, n_trials))
    trials = [({"learning_rate": float(lr)}, seed) for lr in rates]
    # Warm-up shared by every way: data, parameters, draws, and one transform's eager init.
    wl.device_data(workload)
    build(trials[0][0], steps).init(wl.initial_params(workload, seed))
    wl.step_draws(workload, seed, steps)
    out: dict[str, Any] = {
        "workload": workload.name,
        "optimizer": optimizer_name,
        "trials": len(trials),
        "steps": steps,
        "learning_rates": [float(f"{lr:.4g}") for lr in rates],
    }
    curves = {}
    for mode in modes:
        before_n, before_s = compile_count(), COMPILES.seconds
        start = time.perf_counter()
        result = run_trials(
            workload,
            build,
            trials,
            steps,
            mode=mode,
            target=-math.inf,
            keep_params=False,
            compiler_options=compiler_options,
        )
        total = time.perf_counter() - start
        out[mode] = {
            "total_s": total,
            "compile_s": result.compile_s,
            "run_s": result.run_s,
            "setup_s": result.setup_s,
            "compiles": compile_count() - before_n,
            "backend_compile_s": COMPILES.seconds - before_s,
            "programs": result.programs,
            "recompiles": result.recompiles,
            "errors": sum(t.error is not None for t in result.trials),
        }
        n_evals = steps // int(workload.eval_every)
        curves[mode] = np.array([t.valid + [np.nan] * (n_evals - len(t.valid)) for t in result.trials], np.float64)
    if "vmap" in out:
        out["vmap"]["speedup_vs"] = {m: out[m]["total_s"] / out["vmap"]["total_s"] for m in modes if m in out}
        diffs, per_trial = [], {}
        for m in modes:
            if m != "vmap" and curves[m].shape == curves["vmap"].shape:
                both = np.isfinite(curves[m]) & np.isfinite(curves["vmap"])
                gap = np.where(both, np.abs(curves[m] - curves["vmap"]), 0.0)
                per_trial[m] = [float(f"{g:.3g}") for g in gap.max(axis=1)]
                if both.any():
                    diffs.append(float(gap.max()))
        out["per_trial_max_abs_diff"] = per_trial
        out["max_abs_diff"] = max(diffs) if diffs else None
    return out
