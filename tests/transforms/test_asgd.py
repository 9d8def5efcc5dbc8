"""Averaged SGD's piece (optcompose/transforms/_asgd.py): the step size, the running average and
``asgd_averaged_params``. The optimizer ``asgd`` is checked against its reference and against
``torch.optim.ASGD`` in tests/optimizers/test_sgd_variants.py."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from optcompose.transforms._asgd import ScaleByAsgdState, asgd_averaged_params, scale_by_asgd

STEPS = 12


def _run(tx, steps=STEPS):
    rng = np.random.default_rng(0)
    w = {"w": jnp.asarray(rng.uniform(-1, 1, (2, 3)), jnp.float32)}
    state, iterates, averages, updates = tx.init(w), [], [], []
    update = jax.jit(tx.update)
    for _ in range(steps):
        g = {"w": jnp.asarray(rng.uniform(-1, 1, (2, 3)), jnp.float32)}
        u, state = update(g, state, w)
        w = {"w": w["w"] + u["w"]}
        updates.append((np.asarray(g["w"]), np.asarray(u["w"])))
        iterates.append(np.asarray(w["w"], np.float64))
        averages.append(np.asarray(asgd_averaged_params(state)["w"], np.float64))
    return iterates, averages, updates, state


def test_the_average_is_the_mean_of_the_iterates_from_t0_plus_2():
    """mu_t = 1 / max(1, t - 1 - t0): with t0 = 3, ax_t = w_t up to t = 5, then the mean of w_5 .. w_t."""
    iterates, averages, _, _ = _run(scale_by_asgd(0.1, lambd=0.0, t0=3))
    for t in range(1, STEPS + 1):
        expected = iterates[t - 1] if t <= 5 else np.mean(iterates[4:t], axis=0)
        np.testing.assert_allclose(averages[t - 1], expected, rtol=1e-6, atol=1e-7, err_msg=f"t = {t}")


def test_the_step_size_follows_the_schedule_at_the_number_of_earlier_updates():
    """eta_t = lr(t - 1) / (1 + lambd lr(t - 1) (t - 1))**alpha and w -> w (1 - lambd eta) - eta g."""

    def schedule(count):
        return 0.2 * 0.5 ** jnp.asarray(count, jnp.float32)

    lambd, alpha = 0.5, 0.75
    iterates, _, updates, state = _run(scale_by_asgd(schedule, lambd=lambd, alpha=alpha), steps=4)
    assert isinstance(state, ScaleByAsgdState) and int(state.count) == 4
    previous = None
    for t, ((g, u), w) in enumerate(zip(updates, iterates, strict=True), start=1):
        lr = 0.2 * 0.5 ** (t - 1)
        eta = lr / (1 + lambd * lr * (t - 1)) ** alpha
        before = w - u if previous is None else previous
        np.testing.assert_allclose(u, -lambd * eta * before - eta * g, rtol=1e-5, atol=1e-7, err_msg=f"t = {t}")
        previous = w


def test_needs_params_and_names_bad_arguments():
    tx = scale_by_asgd()
    w = {"w": jnp.ones(3)}
    with pytest.raises(ValueError, match="needs params"):
        tx.update(w, tx.init(w))
    for build, argument in [
        (lambda: scale_by_asgd(-1.0), "learning_rate"),
        (lambda: scale_by_asgd(lambd=-1.0), "lambd"),
        (lambda: scale_by_asgd(alpha=-0.5), "alpha"),
        (lambda: scale_by_asgd(t0=float("nan")), "t0"),
    ]:
        with pytest.raises(ValueError, match=argument):
            build()
