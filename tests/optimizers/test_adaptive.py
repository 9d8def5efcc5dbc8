"""The Adam family and the other adaptive optimizers (optcompose/optimizers/_adaptive.py).

Each row of tests/rows/adaptive.py is checked against its NumPy reference (written from the
paper) and against Optax 0.2.8 step by step over 20 steps (float32, rtol 1e-6), then a subset in
float64 under ``enable_x64`` (rtol 1e-12), on complex64 parameters, and against ``torch.optim``.

torch.optim mapping (checked below; the measured differences are in the docstrings)::

    NAdam(lr, betas=(b1, b2), eps, momentum_decay=float('inf'))   nadam(lr, b1, b2, eps)
    NAdam(..., weight_decay=wd, decoupled_weight_decay=True, momentum_decay=float('inf'))
                                                                  nadamw(lr, b1, b2, eps, weight_decay=wd)
    RAdam(lr, betas=(b1, b2), eps)                                radam(lr, b1, b2, eps)
    Adamax(lr, betas=(b1, b2), eps)                               adamax(lr, b1, b2, eps)
    Adamax(lr, ..., weight_decay=wd)                              chain(add_decayed_weights(wd), adamax(lr, ...))
    Adadelta(lr, rho, eps, weight_decay)                          adadelta(lr, rho, eps, weight_decay)
    Adadelta()                                                    adadelta()          (lr 1: the paper's step)
    Adafactor(lr, weight_decay=wd)                                adafactor(lambda c: min(lr, 1 / sqrt(c + 1)),
                                                                            min_dim_size_to_factor=1,
                                                                            weight_decay_rate=lr * wd)
    SparseAdam(lr, betas=(b1, b2), eps) on grad.to_sparse()       sparse_adam(lr, b1, b2, eps)   (not in Optax)
"""

from __future__ import annotations

import warnings

import adaptive_checks as ac
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import reference_adaptive as ra
import trajectory as tr

from optcompose._base import chain
from optcompose._hyperparams import get_hyperparams, set_hyperparams
from optcompose.optimizers import _adaptive as opt
from optcompose.optimizers._classic import adam
from optcompose.transforms._decay import add_decayed_weights

torch = pytest.importorskip("torch")

TABLE = ac.rows(*(row.name for row in ac.adaptive.OPTIMIZER_ROWS))


test_matches_reference, test_matches_optax = ac.module_tests(TABLE)


X64 = ac.rows("nadam", "radam", "adan_defaults")
X64_MORE = ac.rows(
    "nadamw_mask", "adamax", "amsgrad_paper", "adabelief", "yogi", "novograd", "adadelta", "optimistic_adam_v2"
)


@pytest.mark.parametrize("case", X64, ids=[row.name for row in X64])
def test_float64_matches_optax(case):
    ac.check_x64(X64, case)


@pytest.mark.slow
@pytest.mark.parametrize("case", X64_MORE, ids=[row.name for row in X64_MORE])
def test_float64_matches_optax_more(case):
    ac.check_x64(X64_MORE, case)


def test_adafactor_float64_matches_optax_to_its_float32_decay():
    """Optax evaluates Adafactor's decay ``1 - t**-0.8`` in float32 even for float64 parameters
    (``jnp.array(step + 1, jnp.float32)``); ours follows the hyperparameters' dtype (float64).
    The trajectories then agree to the float32 rounding of the decay: ~1e-6 relative (measured 8e-7)."""
    table = ac.rows("adafactor")
    ac.check_x64(table, table[0], float64=(2e-6, 1e-12))


COMPLEX = ac.rows("nadam", "adafactor")
COMPLEX_MORE = ac.rows(
    "nadamw_mask", "radam", "adamax", "amsgrad", "adabelief", "yogi", "novograd", "optimistic_adam_v2"
)


@pytest.mark.parametrize("case", COMPLEX, ids=[row.name for row in COMPLEX])
def test_complex_matches_optax(case):
    """Second moments of complex parameters are of |g|^2, as Optax's (which lists these as complex-capable)."""
    ac.check_complex_optax(COMPLEX, case)


@pytest.mark.slow
@pytest.mark.parametrize("case", COMPLEX_MORE, ids=[row.name for row in COMPLEX_MORE])
def test_complex_matches_optax_more(case):
    ac.check_complex_optax(COMPLEX_MORE, case)


def test_eager_matches_reference():
    ac.check_eager(ac.ALL_ROWS["adamax"])


# ----------------------------------------------------------------------------------------------
# RAdam's rho_t in float32


def test_radam_float32_is_closer_to_float64_math_than_optax():
    """With ``b2 = 0.999`` Optax's float32 ``rho_t`` is off by up to 0.03 (see scale_by_radam); ours
    by < 6e-4. Against the float64 NumPy reference ours stays within 2e-4 relative over 20 steps,
    Optax's does not (measured 3.5e-3 at the first rectified steps)."""
    params, noise = ac.small_problem()
    expected = tr.reference_trajectory(ra.ref_radam(0.01), params, noise)
    (ours, _), (theirs, _) = tr.run_many([opt.radam(0.01), optax.radam(0.01)], [(params, noise)] * 2, "jit")

    def worst(trajectory):
        got = tr.flatten(trajectory)
        return max(
            float(np.max(np.abs(got[k][t] - want[k]) / np.maximum(np.abs(want[k]), 1e-3)))
            for t, want in enumerate(expected)
            for k in want
        )

    ours_error, optax_error = worst(ours), worst(theirs)
    assert ours_error < 2e-4, ours_error
    assert optax_error > 5 * ours_error, (ours_error, optax_error)


# ----------------------------------------------------------------------------------------------
# torch.optim

INF = float("inf")
TORCH = {
    "NAdam": (
        lambda p: torch.optim.NAdam(p, lr=0.01, betas=(0.875, 0.9921875), eps=1e-3, momentum_decay=INF),
        lambda: opt.nadam(0.01, 0.875, 0.9921875, eps=1e-3),
    ),
    "NAdam decoupled": (
        lambda p: torch.optim.NAdam(p, lr=0.01, weight_decay=0.1, decoupled_weight_decay=True, momentum_decay=INF),
        lambda: opt.nadamw(0.01, weight_decay=0.1),
    ),
    "RAdam": (lambda p: torch.optim.RAdam(p, lr=0.01), lambda: opt.radam(0.01)),
    "Adamax": (
        lambda p: torch.optim.Adamax(p, lr=0.02, betas=(0.875, 0.9921875), eps=1e-3),
        lambda: opt.adamax(0.02, 0.875, 0.9921875, eps=1e-3),
    ),
    "Adadelta": (
        lambda p: torch.optim.Adadelta(p, lr=0.5, rho=0.875, eps=1e-3, weight_decay=0.1),
        lambda: opt.adadelta(0.5, rho=0.875, eps=1e-3, weight_decay=0.1),
    ),
    "Adafactor": (
        lambda p: torch.optim.Adafactor(p, lr=0.01),
        lambda: opt.adafactor(lambda c: jnp.minimum(0.01, 1.0 / jnp.sqrt(c + 1.0)), min_dim_size_to_factor=1),
    ),
}
TORCH_MORE = {
    "RAdam betas eps": (
        lambda p: torch.optim.RAdam(p, lr=0.02, betas=(0.875, 0.75), eps=1e-3),
        lambda: opt.radam(0.02, 0.875, 0.75, eps=1e-3),
    ),
    "Adamax weight_decay": (
        lambda p: torch.optim.Adamax(p, lr=0.02, betas=(0.875, 0.9921875), weight_decay=0.1),
        lambda: chain(add_decayed_weights(0.1), opt.adamax(0.02, 0.875, 0.9921875)),
    ),
    "Adadelta defaults": (lambda p: torch.optim.Adadelta(p), lambda: opt.adadelta()),
    "Adafactor weight_decay": (
        lambda p: torch.optim.Adafactor(p, lr=0.01, weight_decay=0.1),
        lambda: opt.adafactor(0.01, min_dim_size_to_factor=1, weight_decay_rate=0.01 * 0.1),
    ),
    "NAdam default": (lambda p: torch.optim.NAdam(p, lr=0.01), lambda: opt.nadam(0.01)),
}
TORCH_TOL: dict[str, float] = {}
"""rtol allowed per pair (default 2e-6, with atol 2e-6). Measured max |ours - torch| over the 20
steps: NAdam 3.6e-7, NAdam decoupled 6.0e-7, RAdam 8.9e-8 (torch's rho_t is float64, ours float32),
Adamax 6.0e-8, Adadelta 3.6e-7, Adafactor 6.0e-8 (5.4e-7 with weight decay)."""


@pytest.mark.parametrize("name", list(TORCH))
def test_matches_torch(name):
    ours, theirs = ac.torch_runs(TORCH)[name]
    ac.assert_torch_close(ours, theirs, rtol=TORCH_TOL.get(name, 2e-6), label=name)


@pytest.mark.slow
@pytest.mark.parametrize("name", list(TORCH_MORE))
def test_matches_torch_more(name):
    if name == "NAdam default":
        pytest.skip("a different method: test_torch_nadam_default_momentum_decay_differs")
    ours, theirs = ac.torch_runs(TORCH_MORE)[name]
    ac.assert_torch_close(ours, theirs, label=name)


@pytest.mark.slow
def test_torch_nadam_default_momentum_decay_differs():
    """torch's NAdam with its default ``momentum_decay=4e-3`` warms the momentum up over ~1000
    steps (mu_t = b1 (1 - 0.5 * 0.96**(t * 4e-3)), about b1 / 2 early on): a different method
    from Optax's NAdam (and ours). Over the 20 test steps with lr 1e-2 the parameters differ by
    up to 0.05 (measured 0.0499); with ``momentum_decay=float('inf')`` by float32 round-off only."""
    ours, theirs = ac.torch_runs(TORCH_MORE)["NAdam default"]
    assert 0.01 < ac.max_abs_difference(ours, theirs) < 0.1


def _present(keep: float, seed: int = 6) -> dict[str, np.ndarray]:
    """Which gradient coordinates are present (a fraction ``keep`` of them) at each step; the
    matrix's first entry is never present."""
    rng = np.random.default_rng(seed)
    params = ac.torch_problem()[0]
    present = {k: rng.uniform(size=(tr.STEPS, *np.shape(v))) < keep for k, v in params.items()}
    present["matrix"][:, 0, 0] = False
    return present


TORCH_SPARSE = {
    "SparseAdam": (lambda p: torch.optim.SparseAdam(p, lr=0.01), lambda: opt.sparse_adam(0.01), 0.3),
    "SparseAdam betas eps": (
        lambda p: torch.optim.SparseAdam(p, lr=0.02, betas=(0.875, 0.9921875), eps=1e-3),
        lambda: opt.sparse_adam(0.02, 0.875, 0.9921875, eps=1e-3),
        0.3,
    ),
    "SparseAdam dense gradients": (lambda p: torch.optim.SparseAdam(p, lr=0.01), lambda: opt.sparse_adam(0.01), 1.0),
}
"""torch's SparseAdam on ``g.to_sparse()`` (70% exact zeros; or only the matrix's first entry), ours on
the dense ``g`` (the fraction present is the third entry). Measured
max |ours - torch| over the 20 steps: 6.0e-8 (SparseAdam), 3.0e-8 (betas eps), 1.2e-7 (dense)."""


@pytest.mark.parametrize("name", list(TORCH_SPARSE))
def test_sparse_adam_matches_torch(name):
    make_torch, make_ours, keep = TORCH_SPARSE[name]
    ours, theirs, _, _ = ac.torch_stepwise(make_torch, make_ours, present=_present(keep))
    ac.assert_torch_close(ours, theirs, label=name)
    start = ac.torch_problem()[0]
    assert max(float(np.max(np.abs(theirs[k][-1] - np.asarray(start[k])))) for k in theirs) > 5e-3
    # A coordinate never present never moves; Adam on the same gradients moves it (lazy, not Adam).
    assert np.all(ours["matrix"][:, 0, 0] == np.asarray(start["matrix"])[0, 0])
    if name == "SparseAdam":
        adam_run, _, _, _ = ac.torch_stepwise(make_torch, lambda: adam(0.01), present=_present(keep))
        assert ac.max_abs_difference(adam_run, ours) > 1e-3


def test_sparse_adam_explicit_zero_differs_from_torch():
    """The documented difference: a torch sparse gradient that stores a 0 at an index updates that
    coordinate (its moments decay and it moves); a dense zero here is absent."""
    start = np.array([0.5, -0.5], np.float32)
    p = torch.nn.Parameter(torch.from_numpy(start.copy()))
    optimizer = torch.optim.SparseAdam([p], lr=0.1)
    steps = [torch.tensor([1.0, 1.0]), torch.tensor([0.0, 1.0])]
    for g in steps:
        p.grad = torch.sparse_coo_tensor(torch.tensor([[0, 1]]), g, (2,), check_invariants=True)  # both stored
        optimizer.step()
    tx, w = opt.sparse_adam(0.1), jnp.asarray(start)
    state = tx.init(w)
    for g in steps:
        u, state = tx.update(jnp.asarray(g.numpy()), state, w)
        w = w + u
    ours, theirs = np.asarray(w), p.detach().numpy()
    np.testing.assert_allclose(ours[1], theirs[1], rtol=1e-6)  # present in both steps: the same
    after_first = start[0] - 0.1  # Adam's first step is lr * sign(g)
    assert ours[0] == pytest.approx(after_first, abs=1e-6)  # absent at step 2: stays
    assert abs(theirs[0] - after_first) > 1e-2  # torch's stored 0 moves it on momentum


# ----------------------------------------------------------------------------------------------
# Optax's surface: names, signatures, states

NAMES = [
    "nadam", "nadamw", "radam", "adamax", "adamaxw", "amsgrad", "adabelief", "adan", "yogi", "novograd",
    "adadelta", "adafactor", "sm3", "optimistic_adam", "optimistic_adam_v2",
]  # fmt: skip


@pytest.mark.parametrize("name", NAMES)
def test_signature_is_optax(name):
    ac.assert_same_signature(getattr(opt, name), getattr(optax, name))


def test_nadam_is_adam_with_nesterov():
    params = {"w": jnp.arange(6.0).reshape(2, 3) / 7}
    grads = jax.tree.map(lambda x: jnp.cos(x) - 0.3, params)
    mine, plain = opt.nadam(0.1, eps=1e-3), adam(0.1, eps=1e-3, nesterov=True)
    ac.assert_close(mine.update(grads, mine.init(params))[0], plain.update(grads, plain.init(params))[0], exact=True)


PARAMS = {"w": jnp.linspace(-1.0, 1.0, 6).reshape(2, 3), "b": jnp.array([0.5, -0.25, 1.0]), "s": jnp.asarray(0.3)}


@pytest.mark.parametrize(
    "make, expected",
    [
        (lambda: opt.nadam(1e-3, b1=0.8), {"learning_rate": 1e-3, "b1": 0.8, "b2": 0.999, "eps": 1e-8}),
        (lambda: opt.nadamw(1e-3, weight_decay=0.05), {"learning_rate": 1e-3, "weight_decay": 0.05}),
        (lambda: opt.radam(2e-3, threshold=4.0), {"learning_rate": 2e-3, "threshold": 4.0, "b2": 0.999}),
        (lambda: opt.adamax(1e-3, eps=1e-6), {"learning_rate": 1e-3, "eps": 1e-6}),
        (lambda: opt.adamaxw(1e-3, weight_decay=0.5), {"weight_decay": 0.5}),
        (lambda: opt.amsgrad(1e-3, eps_root=1e-9), {"eps_root": 1e-9}),
        (lambda: opt.adabelief(1e-3), {"eps": 1e-16, "eps_root": 1e-16}),
        (lambda: opt.adan(1e-3, weight_decay=0.01), {"b3": 0.99, "weight_decay": 0.01, "eps_root": 1e-8}),
        (lambda: opt.yogi(1e-2), {"learning_rate": 1e-2, "eps": 1e-3}),
        (lambda: opt.novograd(1e-2, weight_decay=0.1), {"b2": 0.25, "weight_decay": 0.1, "eps": 1e-6}),
        (lambda: opt.adadelta(rho=0.95), {"learning_rate": 1.0, "rho": 0.95, "eps": 1e-6}),
        (
            lambda: opt.adafactor(0.01, momentum=0.9, weight_decay_rate=1e-3, decay_offset=5),
            {
                "learning_rate": 0.01,
                "eps": 1e-30,
                "decay_rate": 0.8,
                "decay_offset": 5,
                "clipping_threshold": 1.0,
                "momentum": 0.9,
                "weight_decay_rate": 1e-3,
            },
        ),  # fmt: skip
        (lambda: opt.sm3(0.5, momentum=0.8), {"learning_rate": 0.5, "momentum": 0.8}),
        (lambda: opt.optimistic_adam_v2(0.1, alpha=0.5, beta=0.25), {"alpha": 0.5, "beta": 0.25}),
        (lambda: opt.sparse_adam(), {"learning_rate": 1e-3, "b1": 0.9, "b2": 0.999, "eps": 1e-8}),
    ],
    ids=[
        "nadam",
        "nadamw",
        "radam",
        "adamax",
        "adamaxw",
        "amsgrad",
        "adabelief",
        "adan",
        "yogi",
        "novograd",
        "adadelta",
        "adafactor",
        "sm3",
        "optimistic_adam_v2",
        "sparse_adam",
    ],  # fmt: skip
)
def test_hyperparams_are_named_as_the_arguments(make, expected):
    tx = make()
    state = tx.init(PARAMS)
    for current in (state, tx.update(PARAMS, state, PARAMS)[1]):
        found = get_hyperparams(current)
        for name, value in expected.items():
            assert name in found, (name, sorted(found))
            assert float(found[name]) == pytest.approx(value, rel=1e-6), name


def test_optimistic_adam_names_and_deprecation():
    with pytest.warns(DeprecationWarning, match="optimistic_adam_v2"):
        tx = opt.optimistic_adam(0.1, optimism=0.05)
    found = get_hyperparams(tx.init(PARAMS))
    assert float(found["learning_rate"]) == pytest.approx(0.1) and float(found["optimism"]) == pytest.approx(0.05)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        with pytest.raises(ValueError, match="schedule"):
            opt.optimistic_adam(lambda count: 0.1)


def test_set_hyperparams_does_not_recompile():
    traces = []
    tx = opt.adafactor(0.01, momentum=0.875)

    @jax.jit
    def step(grads, state, params):
        traces.append(1)
        return tx.update(grads, state, params)

    state = tx.init(PARAMS)
    first, state = step(PARAMS, state, PARAMS)
    slower = set_hyperparams(state, learning_rate=0.001, momentum=0.5, clipping_threshold=2.0, eps=1e-20)
    second, _ = step(PARAMS, slower, PARAMS)
    assert len(traces) == 1
    assert float(get_hyperparams(slower)["learning_rate"]) == pytest.approx(0.001)
    assert not np.allclose(np.asarray(first["w"]), np.asarray(second["w"]))


def test_adadelta_without_learning_rate_descends_where_optax_ascends():
    """Optax 0.2.8's ``adadelta(learning_rate=None)`` skips the scaling and returns +dx (a step up the
    gradient, hidden in Optax's tests by skipping the convergence check for None). Ours steps by -dx."""
    grads = jax.tree.map(lambda x: 0.5 * x + 0.1, PARAMS)
    ours, theirs = opt.adadelta(), optax.adadelta()
    mine, _ = ours.update(grads, ours.init(PARAMS), PARAMS)
    optax_updates, _ = theirs.update(grads, theirs.init(PARAMS), PARAMS)
    ac.assert_close(mine, jax.tree.map(jnp.negative, optax_updates), float32=(1e-6, 1e-9))
    assert all(np.all(np.sign(np.asarray(u)) == -np.sign(np.asarray(g))) for u, g in zip(
        jax.tree.leaves(mine), jax.tree.leaves(grads), strict=True))  # fmt: skip


# ----------------------------------------------------------------------------------------------
# Edge values and bad arguments

EDGE = {
    "adadelta": lambda: opt.adadelta(),
    "adafactor": lambda: opt.adafactor(0.1, min_dim_size_to_factor=2, momentum=0.9),
    "adafactor_eps0": lambda: opt.adafactor(eps=0.0, min_dim_size_to_factor=2),
    "sm3": lambda: opt.sm3(0.1),
}
"""The optimizers whose chains add pieces to the transforms' own edge tests (tests/transforms/)."""


@pytest.mark.parametrize("scale", ac.EDGE_SCALES, ids=["zero", "huge", "tiny"])
def test_edge_gradients_give_finite_updates(scale):
    """Zero gradients (with ``eps = 0`` where the method allows it), 1e30 and 1e-30: finite updates
    over 3 steps. Zero gradients on zero-initialised moments and zero weights give zero steps."""
    for name, updates in ac.edge_updates(EDGE)[scale].items():
        ac.assert_finite(updates, label=f"{name} ")
        if scale == 0.0 and not name.startswith("yogi"):  # Yogi's moments start at 1e-6, not 0
            assert all(np.all(np.asarray(leaf) == 0) for leaf in jax.tree.leaves(updates)), name


@pytest.mark.parametrize(
    "build, argument",
    [
        (lambda: opt.nadam(-1.0), "learning_rate"),
        (lambda: opt.nadam(0.1, b1=1.0), "b1"),
        (lambda: opt.nadamw(0.1, weight_decay=-1.0), "weight_decay"),
        (lambda: opt.radam(0.1, b2=1.5), "b2"),
        (lambda: opt.radam(0.1, threshold=float("nan")), "threshold"),
        (lambda: opt.radam(0.1, threshold=3.0), "threshold"),
        (lambda: opt.adamax(0.1, eps=-1.0), "eps"),
        (lambda: opt.amsgrad(0.1, eps_root=-1.0), "eps_root"),
        (lambda: opt.adabelief(0.1, b2=-0.1), "b2"),
        (lambda: opt.adan(0.1, b3=1.0), "b3"),
        (lambda: opt.yogi(float("inf")), "learning_rate"),
        (lambda: opt.novograd(0.1, weight_decay=-0.1), "weight_decay"),
        (lambda: opt.adadelta(0.1, rho=1.0), "rho"),
        (lambda: opt.adafactor(0.1, decay_rate=-0.8), "decay_rate"),
        (lambda: opt.adafactor(0.1, clipping_threshold=0.0), "clipping_threshold"),
        (lambda: opt.adafactor(0.1, eps=-1.0), "eps"),
        (lambda: opt.adafactor(0.1, momentum=1.5), "momentum"),
        (lambda: opt.adafactor(0.1, min_dim_size_to_factor=-1), "min_dim_size_to_factor"),
        (lambda: opt.adafactor(0.1, weight_decay_rate=-1.0), "weight_decay_rate"),
        (lambda: opt.sm3(0.1, momentum=1.0), "momentum"),
        (lambda: opt.optimistic_adam_v2(0.1, alpha=float("nan")), "alpha"),
        (lambda: opt.nadam("fast"), "learning_rate"),
        (lambda: opt.sparse_adam(-1e-3), "learning_rate"),
        (lambda: opt.sparse_adam(b2=1.0), "b2"),
        (lambda: opt.sparse_adam(eps=-1.0), "eps"),
    ],
)
def test_bad_arguments_are_named(build, argument):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        with pytest.raises((ValueError, TypeError), match=argument):
            build()


def test_sm3_refuses_complex_parameters():
    with pytest.raises(TypeError, match="real parameters"):
        opt.sm3(0.1).init({"w": jnp.ones((2, 2), jnp.complex64)})


def test_novograd_needs_params():
    tx = opt.novograd(0.1)
    with pytest.raises(ValueError, match="needs params"):
        tx.update(PARAMS, tx.init(PARAMS))
