"""The Adam-family pieces (optcompose/transforms/_adam_variants.py).

Rows of tests/rows/adaptive.py (each piece followed by ``scale(-0.05)``) against their NumPy
references and Optax's pieces (20 steps; float32 rtol 1e-6; float64 rtol 1e-12), the states
against Optax's records (same names and fields, ``hyperparams`` last; an Optax state converts to
ours and the run continues identically), complex parameters, storage dtypes and edge values.
"""

from __future__ import annotations

import adaptive_checks as ac
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import trajectory as tr

from optcompose.transforms import _adam_variants as av
from optcompose.transforms._adaptive import ScaleByAdamState

TABLE = ac.rows(
    "scale_by_radam", "scale_by_amsgrad_bf16_mu", "scale_by_adamax", "scale_by_belief", "scale_by_adan",
    "scale_by_yogi", "scale_by_novograd_low_precision", "scale_by_adadelta",
)  # fmt: skip
TWINS = ac.with_optax(TABLE)


# The pieces that the optimizer rows already run alone (radam = scale_by_radam + learning rate ...)
# are checked again on their own in the slow runs only.
FAST = ["scale_by_amsgrad_bf16_mu", "scale_by_yogi", "scale_by_novograd_low_precision"]


def _table(case):
    """The rows compiled together with ``case``: the fast ones, or (in slow runs) the others."""
    return [row for row in TABLE if (row.name in FAST) == (case.name in FAST)]


@pytest.mark.parametrize("case", ac.mark_slow(TABLE, FAST))
def test_matches_reference(case):
    ac.check_reference(_table(case), case)


@pytest.mark.parametrize("case", ac.mark_slow(TWINS, FAST))
def test_matches_optax(case):
    ac.check_optax(_table(case), case)


X64 = ac.rows("scale_by_adadelta")
X64_MORE = ac.rows("scale_by_radam", "scale_by_adan", "scale_by_adamax", "scale_by_belief", "scale_by_yogi")


@pytest.mark.parametrize("case", X64, ids=[row.name for row in X64])
def test_float64_matches_optax(case):
    ac.check_x64(X64, case)


@pytest.mark.slow
@pytest.mark.parametrize("case", X64_MORE, ids=[row.name for row in X64_MORE])
def test_float64_matches_optax_more(case):
    ac.check_x64(X64_MORE, case)


@pytest.mark.slow
def test_complex_matches_optax():
    table = ac.rows("scale_by_radam", "scale_by_belief", "scale_by_adamax", "scale_by_yogi")
    for case in table:
        ac.check_complex_optax(table, case)


def test_complex_adan_and_adadelta_are_phase_equivariant():
    """Optax lists Adan and Adadelta as real-only (Adadelta squares g itself). Ours use |g|^2, so
    multiplying every parameter and gradient by a phase multiplies every update by it."""
    table = ac.rows("scale_by_adadelta", "scale_by_adan")
    plain = ac.run_table(table, kind="complex")
    rotated = ac.run_table(table, kind="complex_rotated")
    for case in table:
        expected = jax.tree.map(lambda x: tr.PHASE * np.asarray(x), plain[case.name][0])
        tr.assert_trajectories_close(rotated[case.name][0], expected, label=case.name, float32=(2e-5, 2e-6))


# ----------------------------------------------------------------------------------------------
# Optax's surface

PIECES = ["scale_by_radam", "scale_by_amsgrad", "scale_by_adamax", "scale_by_belief", "scale_by_adan",
          "scale_by_yogi", "scale_by_novograd", "scale_by_adadelta"]  # fmt: skip


@pytest.mark.parametrize("name", PIECES)
def test_signature_is_optax(name):
    ac.assert_same_signature(getattr(av, name), getattr(optax, name))


@pytest.mark.parametrize(
    "ours, theirs",
    [
        (av.ScaleByAmsgradState, optax.ScaleByAmsgradState),
        (av.ScaleByBeliefState, optax.ScaleByBeliefState),
        (av.ScaleByAdanState, optax.ScaleByAdanState),
        (av.ScaleByNovogradState, optax.ScaleByNovogradState),
        (av.ScaleByAdaDeltaState, optax.ScaleByAdaDeltaState),
        (ScaleByAdamState, optax.ScaleByAdamState),
    ],
    ids=lambda x: x.__name__,
)
def test_state_records_are_optax(ours, theirs):
    ac.assert_same_fields(ours, theirs)


PARAMS = {"w": jnp.linspace(-1.0, 1.0, 12).reshape(3, 4), "b": jnp.array([0.5, -0.25, 1.0, 0.0]), "s": jnp.asarray(0.3)}


def _grads(t):
    return jax.tree.map(lambda p: jnp.sin(3.0 * p + t) + 0.1 * t, PARAMS)


B = (0.875, 0.9921875)
OWN_RECORDS = ("scale_by_amsgrad", "scale_by_adan", "scale_by_novograd", "scale_by_adadelta")
CONVERTIBLE = {
    "scale_by_radam": (0.875, 0.75),
    "scale_by_amsgrad": B,
    "scale_by_adamax": B,
    "scale_by_belief": B,
    "scale_by_adan": (0.96875, 0.875, 0.9921875),
    "scale_by_yogi": B,
    "scale_by_novograd": (0.875, 0.5),
    "scale_by_adadelta": (0.875,),
}


@pytest.mark.parametrize(
    "name", [n if n in OWN_RECORDS else pytest.param(n, marks=pytest.mark.slow) for n in CONVERTIBLE]
)
def test_optax_state_converts_and_continues(name):
    """Three Optax steps, the state converted to ours (``OurState(*optax_state, hyperparams)``), three
    more steps of ours: the same updates and states as Optax's own six steps."""
    ours, theirs = getattr(av, name)(*CONVERTIBLE[name]), getattr(optax, name)(*CONVERTIBLE[name])
    state = theirs.init(PARAMS)
    for t in range(3):
        _, state = theirs.update(_grads(t), state, PARAMS)
    template = ours.init(PARAMS)
    mine = type(template)(*state, hyperparams=template.hyperparams)
    for t in range(3, 6):
        expected, state = theirs.update(_grads(t), state, PARAMS)
        got, mine = ours.update(_grads(t), mine, PARAMS)
        ac.assert_close(got, expected, float32=(2e-6, 1e-7))
    ac.assert_close(tuple(mine)[:-1], tuple(state), float32=(2e-6, 1e-7))


def test_sma_length_accuracy():
    """The claims of scale_by_radam's docstring: float32 rho_t within 6e-4 (b2 = 0.999) and 9e-3
    (b2 = 0.9999) of the float64 value over 2000 steps, while b2**t's direct form errs by 0.006
    and 0.96 (Optax's mixed-precision form, measured in the module docstring, by 0.03 and 3.6)."""
    t = np.arange(1, 2001)
    for b2, bound in ((0.999, 6.1e-4), (0.9999, 9e-3)):
        b = float(np.float32(b2))
        exact = (2 / (1 - b) - 1) - 2 * t * b**t / (1 - b**t)
        ours = np.asarray(jax.jit(jax.vmap(av._sma_length, in_axes=(None, 0)))(jnp.float32(b2), jnp.asarray(t)))
        rectified = exact >= 5
        assert np.max(np.abs(ours - exact)[rectified]) < bound, b2
        optax_like = (2 / (1 - b2) - 1) - 2 * t * np.float32(b2) ** t.astype(np.float32) / (
            1 - np.float32(b2) ** t.astype(np.float32)
        )
        assert np.max(np.abs(optax_like - exact)[rectified]) > 10 * bound / 2


# ----------------------------------------------------------------------------------------------
# Storage dtypes, edge values, bad arguments


def test_moment_dtypes():
    params = {"w": jnp.ones((2, 3), jnp.bfloat16), "b": jnp.ones(3, jnp.float32)}
    state = av.scale_by_amsgrad(mu_dtype=jnp.bfloat16).init(params)
    assert state.mu["b"].dtype == jnp.bfloat16 and state.nu["b"].dtype == jnp.float32
    assert state.nu_max["w"].dtype == jnp.bfloat16
    tx = av.scale_by_novograd(mu_dtype=jnp.float16)
    state = tx.init(params)
    assert state.mu["w"].dtype == jnp.float16 and state.nu["w"].shape == () and state.nu["w"].dtype == jnp.bfloat16
    updates, state = jax.jit(tx.update)(params, state, params)
    assert updates["w"].dtype == jnp.bfloat16 and state.mu["w"].dtype == jnp.float16


EDGE = {
    "amsgrad": lambda: av.scale_by_amsgrad(eps=0.0),
    "adamax": lambda: av.scale_by_adamax(eps=0.0),
    "yogi": lambda: av.scale_by_yogi(eps=0.0, initial_accumulator_value=0.0),
    "novograd": lambda: av.scale_by_novograd(eps=0.0),
    "adan": lambda: av.scale_by_adan(eps=0.0),
    "sparse_adam": lambda: av.scale_by_sparse_adam(eps=0.0),
}


@pytest.mark.parametrize("scale", ac.EDGE_SCALES, ids=["zero", "huge", "tiny"])
def test_edge_gradients_give_finite_updates(scale):
    """With eps = 0, zero gradients give 0 (Optax: 0 / 0 = NaN for Adamax, AMSGrad, Yogi, NovoGrad).
    Gradients of 1e30 overflow the squared moments (inf), and the update is then 0, not NaN."""
    for name, updates in ac.edge_updates(EDGE)[scale].items():
        ac.assert_finite(updates, label=f"{name} ")
        if scale == 0.0:
            assert all(np.all(np.asarray(u) == 0) for u in jax.tree.leaves(updates)), name


@pytest.mark.parametrize(
    "build, argument",
    [
        (lambda: av.scale_by_radam(b1=1.0), "b1"),
        (lambda: av.scale_by_radam(threshold=2.0), "threshold"),
        (lambda: av.scale_by_amsgrad(eps=-1e-8), "eps"),
        (lambda: av.scale_by_adamax(b2=-0.5), "b2"),
        (lambda: av.scale_by_belief(eps_root=-1.0), "eps_root"),
        (lambda: av.scale_by_adan(b2=1.5), "b2"),
        (lambda: av.scale_by_yogi(initial_accumulator_value=-1.0), "initial_accumulator_value"),
        (lambda: av.scale_by_novograd(weight_decay=float("inf")), "weight_decay"),
        (lambda: av.scale_by_adadelta(rho=-0.1), "rho"),
        (lambda: av.scale_by_adadelta(eps="small"), "eps"),
        (lambda: av.scale_by_sparse_adam(b1=1.0), "b1"),
        (lambda: av.scale_by_sparse_adam(eps=-1e-8), "eps"),
    ],
)
def test_bad_arguments_are_named(build, argument):
    with pytest.raises((ValueError, TypeError), match=argument):
        build()


def test_sparse_adam_is_lazy():
    """A zero gradient leaves that coordinate's moments alone and gives update 0; a nonzero one takes
    Adam's step with eps added to sqrt(v) before the correction and t the global step count."""
    tx = av.scale_by_sparse_adam(b1=0.5, b2=0.75, eps=1e-3)
    first, second = jnp.array([1.0, 2.0, -1.0]), jnp.array([0.0, 1.0, 0.0])
    _, state = tx.update(first, tx.init(first))
    updates, after = tx.update(second, state)
    assert int(after.count) == 2
    for moment in ("mu", "nu"):
        before, now = np.asarray(getattr(state, moment)), np.asarray(getattr(after, moment))
        np.testing.assert_array_equal(now[[0, 2]], before[[0, 2]])
    assert float(updates[0]) == 0.0 and float(updates[2]) == 0.0
    # Coordinate 1: m = 0.25 * 2 + 0.5 * 1 = 1, v = 0.75 * 0.25 * 4 + 0.25 * 1 = 1 at t = 2.
    assert float(after.mu[1]) == 1.0 and float(after.nu[1]) == 1.0
    expected = np.sqrt(1 - 0.75**2) / (1 - 0.5**2) / (1 + 1e-3)
    assert float(updates[1]) == pytest.approx(expected, rel=1e-6)


def test_errors_name_the_leaf():
    tx = av.scale_by_yogi()
    params = {"w": jnp.ones(3), "step": jnp.asarray(1, jnp.int32)}
    with pytest.raises(TypeError, match=r"\['step'\]"):
        tx.update(params, tx.init(params))
    with pytest.raises(ValueError, match=r"\['w'\]"):
        tx.update({"w": jnp.ones(4), "step": jnp.ones(())}, tx.init({"w": jnp.ones(3), "step": jnp.ones(())}))
