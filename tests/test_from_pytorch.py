"""The twins of docs/from_pytorch.md give PyTorch's numbers.

Each twin is checked against a NumPy sequence written from PyTorch's documented formulas (always)
and against torch itself (when it is installed). Learning rates are compared as the value used by
update ``t`` = the value PyTorch's optimizer holds after ``t`` calls of ``scheduler.step()``.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from optcompose.averaging import swa, swa_learning_rate_schedule
from optcompose.optimizers._classic import adam, adamw, sgd
from optcompose.schedules import (
    cosine_decay_schedule,
    cosine_warm_restarts_schedule,
    join_schedules,
    linear_schedule,
    one_cycle_schedule,
    warmup_cosine_decay_schedule,
)

STEPS = 12
CURVATURE = np.array([[1.0, 2.0], [0.5, 3.0]])
W0 = np.array([[1.0, -1.0], [2.0, 0.5]])


def values(schedule, steps):
    return np.asarray(jax.jit(jax.vmap(schedule))(jnp.arange(steps)), np.float64)


def run_ours(tx, steps=STEPS):
    """Params after ``steps`` updates on ``0.5 * sum(CURVATURE * w**2)`` (gradient ``CURVATURE * w``)."""
    curvature = jnp.asarray(CURVATURE, jnp.float32)

    def body(carry, _):
        params, state = carry
        updates, state = tx.update(curvature * params, state, params)
        return (params + updates, state), None

    params = jnp.asarray(W0, jnp.float32)
    (params, _), _ = jax.jit(lambda c: jax.lax.scan(body, c, None, length=steps))((params, tx.init(params)))
    return np.asarray(params, np.float64)


def run_torch(make_optimizer, make_scheduler=None, steps=STEPS):
    torch = pytest.importorskip("torch")
    weight = torch.nn.Parameter(torch.tensor(W0, dtype=torch.float32))
    optimizer = make_optimizer([weight])
    scheduler = make_scheduler(optimizer) if make_scheduler else None
    used = []
    for _ in range(steps):
        used.append(optimizer.param_groups[0]["lr"])
        optimizer.zero_grad()
        (0.5 * (torch.tensor(CURVATURE, dtype=torch.float32) * weight**2).sum()).backward()
        optimizer.step()
        if scheduler is not None:
            scheduler.step()
    return weight.detach().numpy().astype(np.float64), np.array(used)


# ------------------------------------------------------------------ optimizers


def numpy_sgd(lr, momentum, nesterov, steps=STEPS):
    """torch.optim.SGD's documented algorithm (dampening 0, buffer starts at the first gradient)."""
    w, buf = W0.copy(), None
    for _ in range(steps):
        g = CURVATURE * w
        buf = g.copy() if buf is None else momentum * buf + g
        w = w - lr * (g + momentum * buf if nesterov else buf)
    return w


def numpy_adam(lr, weight_decay=0.0, b1=0.9, b2=0.999, eps=1e-8, steps=STEPS):
    """torch.optim.Adam / AdamW's documented algorithm (AdamW: decay the weights first)."""
    w, m, v = W0.copy(), np.zeros_like(W0), np.zeros_like(W0)
    for t in range(1, steps + 1):
        g = CURVATURE * w
        w = w * (1 - lr * weight_decay)
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g**2
        w = w - lr * (m / (1 - b1**t)) / (np.sqrt(v / (1 - b2**t)) + eps)
    return w


def test_sgd_nesterov():
    ours = run_ours(sgd(0.1, momentum=0.9, nesterov=True))
    np.testing.assert_allclose(ours, numpy_sgd(0.1, 0.9, True), rtol=2e-5, atol=1e-6)
    torch = pytest.importorskip("torch")
    theirs, _ = run_torch(lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9, nesterov=True))
    np.testing.assert_allclose(ours, theirs, rtol=2e-5, atol=1e-6)


def test_adam():
    ours = run_ours(adam(1e-3))
    np.testing.assert_allclose(ours, numpy_adam(1e-3), rtol=1e-5)
    torch = pytest.importorskip("torch")
    theirs, _ = run_torch(lambda p: torch.optim.Adam(p, lr=1e-3))
    np.testing.assert_allclose(ours, theirs, rtol=1e-5)


def test_adamw():
    ours = run_ours(adamw(1e-3, weight_decay=0.01))
    np.testing.assert_allclose(ours, numpy_adam(1e-3, weight_decay=0.01), rtol=1e-5)
    torch = pytest.importorskip("torch")
    theirs, _ = run_torch(lambda p: torch.optim.AdamW(p, lr=1e-3, weight_decay=0.01))
    np.testing.assert_allclose(ours, theirs, rtol=1e-5)


# ------------------------------------------------------------------ schedules


def test_cosine_annealing_lr_per_epoch():
    lr, eta_min, total_epochs, steps_per_epoch = 0.1, 1e-6, 8, 3
    per_epoch = cosine_decay_schedule(lr, decay_steps=total_epochs, alpha=eta_min / lr)
    twin = lambda step: per_epoch(step // steps_per_epoch)  # noqa: E731
    steps = total_epochs * steps_per_epoch
    epoch = np.arange(steps) // steps_per_epoch
    formula = eta_min + (lr - eta_min) * (1 + np.cos(np.pi * epoch / total_epochs)) / 2
    np.testing.assert_allclose(values(twin, steps), formula, rtol=1e-6)
    torch = pytest.importorskip("torch")
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=lr)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total_epochs, eta_min=eta_min)
    used = []
    for _ in range(total_epochs):
        used += [optimizer.param_groups[0]["lr"]] * steps_per_epoch
        optimizer.step()
        scheduler.step()
    np.testing.assert_allclose(values(twin, steps), used, rtol=1e-6)


def test_cosine_annealing_warm_restarts():
    lr, steps = 0.1, 75  # periods 10, 20, 40, 80 start at 0, 10, 30, 70
    twin = cosine_warm_restarts_schedule(lr, first_period=10, period_mult=2)
    t = np.arange(steps)
    start = np.select([t >= 70, t >= 30, t >= 10], [70, 30, 10], 0)
    period = np.select([t >= 70, t >= 30, t >= 10], [80, 40, 20], 10)
    formula = lr * (1 + np.cos(np.pi * (t - start) / period)) / 2
    np.testing.assert_allclose(values(twin, steps), formula, rtol=1e-5, atol=1e-8)
    torch = pytest.importorskip("torch")
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=lr)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingWarmRestarts(optimizer, T_0=10, T_mult=2)
    used = []
    for _ in range(steps):
        used.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    np.testing.assert_allclose(values(twin, steps), used, rtol=1e-5, atol=1e-8)


def numpy_one_cycle(total, max_lr, pct_start, div=25.0, final_div=1e4, m_lo=0.85, m_hi=0.95):
    """OneCycleLR's documented two-phase cosine policy: (lr, momentum) at each step."""
    initial, final = max_lr / div, max_lr / div / final_div
    end_1, end_2 = pct_start * total - 1, total - 1

    def anneal(start, end, pct):
        return end + (start - end) / 2 * (1 + np.cos(np.pi * pct))

    t = np.arange(total, dtype=np.float64)
    first, second = t / end_1, (t - end_1) / (end_2 - end_1)
    lr = np.where(t <= end_1, anneal(initial, max_lr, first), anneal(max_lr, final, second))
    momentum = np.where(t <= end_1, anneal(m_hi, m_lo, first), anneal(m_lo, m_hi, second))
    return lr, momentum


def test_one_cycle_lr_stepped_per_batch():
    total = 40
    cycle = one_cycle_schedule(total, max_lr=0.01, pct_start=0.3, anneal="cos")
    lr, momentum = numpy_one_cycle(total, 0.01, 0.3)
    np.testing.assert_allclose(values(cycle.learning_rate, total), lr, rtol=1e-5)
    np.testing.assert_allclose(values(cycle.momentum, total), momentum, rtol=1e-6)
    ours = run_ours(sgd(cycle.learning_rate, momentum=cycle.momentum), steps=total)
    torch = pytest.importorskip("torch")
    theirs, used = run_torch(
        lambda p: torch.optim.SGD(p, lr=0.01, momentum=0.9),
        lambda o: torch.optim.lr_scheduler.OneCycleLR(o, max_lr=0.01, total_steps=total, pct_start=0.3),
        steps=total,
    )
    np.testing.assert_allclose(used, lr, rtol=1e-6)
    np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-7)


def test_hand_written_warmup_loop():
    target_lr, warmup_steps, total = 1e-3, 10, 50
    decay_schedule = lambda step: target_lr * 0.95 ** (step - warmup_steps)  # noqa: E731
    loop = [target_lr * (s / warmup_steps) if s < warmup_steps else decay_schedule(s) for s in range(total)]
    warmup = linear_schedule(0.0, target_lr, transition_steps=warmup_steps)
    twin = join_schedules([warmup, lambda k: decay_schedule(k + warmup_steps)], boundaries=[warmup_steps])
    np.testing.assert_allclose(values(twin, total), loop, rtol=1e-5)
    cosine_loop = [
        target_lr * s / warmup_steps
        if s < warmup_steps
        else target_lr * (1 + np.cos(np.pi * (s - warmup_steps) / (total - warmup_steps))) / 2
        for s in range(total)
    ]
    one_call = warmup_cosine_decay_schedule(0.0, target_lr, warmup_steps, decay_steps=total, end_value=0.0)
    np.testing.assert_allclose(values(one_call, total), cosine_loop, rtol=1e-5, atol=1e-10)


@pytest.mark.parametrize("total_steps", [40, 400])
def test_practical_recipe_loop_exact_twin(total_steps):
    peak, eta_min = 1e-3, 1e-6
    w = int(0.05 * total_steps)
    last = peak * (w - 1) / w
    twin = join_schedules(
        [linear_schedule(0.0, peak, w), cosine_decay_schedule(last, total_steps - w, alpha=eta_min / last)],
        boundaries=[w],
    )
    t = np.arange(total_steps)
    cosine = eta_min + (last - eta_min) * (1 + np.cos(np.pi * (t - w) / (total_steps - w))) / 2
    formula = np.where(t < w, peak * t / w, cosine)
    np.testing.assert_allclose(values(twin, total_steps), formula, rtol=1e-5)
    torch = pytest.importorskip("torch")
    # The seed's loop, verbatim, with T_max sized in steps.
    weight = torch.nn.Parameter(torch.zeros(2))
    optimizer = torch.optim.AdamW([weight], lr=peak, weight_decay=0.01)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total_steps - w, eta_min=eta_min)
    used = []
    for step in range(total_steps):
        if step < w:
            for group in optimizer.param_groups:
                group["lr"] = peak * step / w
        used.append(optimizer.param_groups[0]["lr"])  # what train_step would use
        optimizer.step()
        if step >= w:
            scheduler.step()
    np.testing.assert_allclose(values(twin, total_steps), used, rtol=1e-5)


def test_swa_twin():
    lr = swa_learning_rate_schedule(0.1, swa_start=0, swa_lr=0.05, anneal_steps=10)
    epochs = np.arange(14)
    formula = 0.1 + (0.05 - 0.1) * (1 - np.cos(np.pi * np.minimum(epochs / 10, 1))) / 2
    np.testing.assert_allclose(values(lr, 14), formula, rtol=1e-6)
    torch = pytest.importorskip("torch")
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    scheduler = torch.optim.swa_utils.SWALR(optimizer, swa_lr=0.05)
    used = []
    for _ in epochs:
        used.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    np.testing.assert_allclose(values(lr, 14), used, rtol=1e-6)
    # The equal-weight mean of the snapshots from swa_start on (AveragedModel).
    snapshots = [jnp.full((2,), float(k)) for k in range(6)]
    averager = swa(swa_start=2)
    average = averager.init(snapshots[0])
    for params in snapshots:
        average = averager.update(params, average)
    np.testing.assert_allclose(average.params, np.full(2, np.mean([2, 3, 4, 5])))


def test_docs_code_blocks_are_valid_python():
    from pathlib import Path

    text = (Path(__file__).parent.parent / "docs" / "from_pytorch.md").read_text()
    blocks = text.split("```python\n")[1:]
    assert len(blocks) >= 18
    for block in blocks:
        compile(block.split("```")[0], "from_pytorch.md", "exec")
    exec(blocks[0].split("```")[0], {})  # the imports the page relies on exist
