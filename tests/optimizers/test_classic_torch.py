"""With the documented settings, our optimizers reproduce torch.optim's trajectories.

Both frameworks get the same gradient sequence, ``g_t = noise_t + 0.125 * w_t`` computed in
float32 from each framework's own current parameters, for 20 steps on a matrix, a vector, a scalar
and a 3-D leaf. The mapping verified here is written up in docs/pytorch_mapping.md.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import trajectory as tr

from optcompose._base import chain
from optcompose.optimizers._classic import adagrad, adam, adamw, rmsprop, sgd
from optcompose.transforms._decay import add_decayed_weights

torch = pytest.importorskip("torch")

RTOL, ATOL = 2e-6, 2e-6
"""float32 round-off over 20 steps (measured differences are listed in docs/pytorch_mapping.md)."""

PAIRS: dict[str, tuple[Callable[[list[Any]], Any], Callable[[], Any]]] = {
    "SGD": (lambda p: torch.optim.SGD(p, lr=0.1), lambda: sgd(0.1)),
    "SGD momentum": (lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.9), lambda: sgd(0.05, momentum=0.9)),
    "SGD nesterov": (
        lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.9, nesterov=True),
        lambda: sgd(0.05, momentum=0.9, nesterov=True),
    ),
    "SGD weight_decay": (
        lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.9, weight_decay=0.1),
        lambda: chain(add_decayed_weights(0.1), sgd(0.05, momentum=0.9)),
    ),
    "Adagrad": (
        lambda p: torch.optim.Adagrad(p, lr=0.1),
        lambda: adagrad(0.1, initial_accumulator_value=0.0, eps=1e-10, eps_in_sqrt=False),
    ),
    "Adagrad lr_decay weight_decay": (
        lambda p: torch.optim.Adagrad(p, lr=0.1, lr_decay=0.05, weight_decay=0.1),
        lambda: chain(
            add_decayed_weights(0.1),
            adagrad(
                lambda count: 0.1 / (1.0 + 0.05 * count), initial_accumulator_value=0.0, eps=1e-10, eps_in_sqrt=False
            ),
        ),
    ),
    "RMSprop": (
        lambda p: torch.optim.RMSprop(p, lr=0.01),
        lambda: rmsprop(0.01, decay=0.99, eps=1e-8, eps_in_sqrt=False),
    ),
    "RMSprop centered momentum": (
        lambda p: torch.optim.RMSprop(p, lr=0.01, alpha=0.9, eps=1e-3, centered=True, momentum=0.8),
        lambda: rmsprop(0.01, decay=0.9, eps=1e-3, eps_in_sqrt=False, centered=True, momentum=0.8),
    ),
    "RMSprop weight_decay": (
        lambda p: torch.optim.RMSprop(p, lr=0.01, weight_decay=0.1),
        lambda: chain(add_decayed_weights(0.1), rmsprop(0.01, decay=0.99, eps=1e-8, eps_in_sqrt=False)),
    ),
    "Adam": (lambda p: torch.optim.Adam(p, lr=0.01), lambda: adam(0.01)),
    "Adam betas eps": (
        lambda p: torch.optim.Adam(p, lr=0.02, betas=(0.8, 0.95), eps=1e-3),
        lambda: adam(0.02, b1=0.8, b2=0.95, eps=1e-3),
    ),
    "Adam weight_decay": (
        lambda p: torch.optim.Adam(p, lr=0.01, weight_decay=0.1),
        lambda: chain(add_decayed_weights(0.1), adam(0.01)),
    ),
    "AdamW": (lambda p: torch.optim.AdamW(p, lr=0.01, weight_decay=0.1), lambda: adamw(0.01, weight_decay=0.1)),
    "Adam decoupled_weight_decay": (
        lambda p: torch.optim.Adam(p, lr=0.01, weight_decay=0.1, decoupled_weight_decay=True),
        lambda: adamw(0.01, weight_decay=0.1),
    ),
    "AdamW defaults": (lambda p: torch.optim.AdamW(p, lr=1e-3), lambda: adamw(1e-3, weight_decay=0.01)),
}


def make_problem() -> tuple[dict[str, jax.Array], dict[str, jax.Array]]:
    rng = np.random.default_rng(3)
    params = {
        "matrix": jnp.asarray(rng.uniform(-1, 1, (3, 4)), jnp.float32),
        "vector": jnp.asarray(rng.uniform(-1, 1, (4,)), jnp.float32),
        "scalar": jnp.asarray(0.7, jnp.float32),
        "cube": jnp.asarray(rng.uniform(-1, 1, (2, 3, 2)), jnp.float32),
    }
    return params, tr.make_noise(params, seed=4)


def torch_trajectory(make_optimizer, params, noise) -> dict[str, np.ndarray]:
    tensors = {k: torch.nn.Parameter(torch.from_numpy(np.array(v, np.float32))) for k, v in params.items()}
    noise = {k: torch.from_numpy(np.array(v, np.float32)) for k, v in noise.items()}
    optimizer = make_optimizer(list(tensors.values()))
    steps = next(iter(noise.values())).shape[0]
    trajectory: dict[str, list[np.ndarray]] = {k: [] for k in tensors}
    for t in range(steps):
        for k, p in tensors.items():
            p.grad = noise[k][t] + tr.GRAD_PARAM_COUPLING * p.detach()
        optimizer.step()
        for k, p in tensors.items():
            trajectory[k].append(p.detach().numpy().copy())
    return {k: np.stack(v) for k, v in trajectory.items()}


_RESULTS: dict[str, tuple[dict[str, np.ndarray], dict[str, np.ndarray]]] = {}


def trajectories() -> dict[str, tuple[dict[str, np.ndarray], dict[str, np.ndarray]]]:
    """{name: (ours, torch's)}, ours from one jitted program for every pair."""
    if not _RESULTS:
        params, noise = make_problem()
        ours = tr.run_many([make() for _, make in PAIRS.values()], [(params, noise)] * len(PAIRS), "jit")
        for (name, (make_torch, _)), (trajectory, _) in zip(PAIRS.items(), ours, strict=True):
            mine = {k: np.asarray(v) for k, v in trajectory.items()}
            _RESULTS[name] = (mine, torch_trajectory(make_torch, params, noise))
    return _RESULTS


def differences(name: str) -> tuple[float, float]:
    """Max absolute and max relative difference over every step and coordinate."""
    ours, theirs = trajectories()[name]
    abs_diff = max(float(np.max(np.abs(ours[k] - theirs[k]))) for k in ours)
    # Relative to the parameter's magnitude, over coordinates with |w| >= 0.01 (a coordinate that
    # passes through zero makes any relative measure meaningless there).
    rel_diff = max(
        float(np.max(np.where(np.abs(theirs[k]) >= 1e-2, np.abs(ours[k] - theirs[k]) / np.abs(theirs[k]), 0.0)))
        for k in ours
    )
    return abs_diff, rel_diff


@pytest.mark.parametrize("name", list(PAIRS))
def test_matches_torch(name):
    ours, theirs = trajectories()[name]
    for key in theirs:
        assert ours[key].shape == theirs[key].shape == (tr.STEPS, *np.shape(make_problem()[0][key]))
        np.testing.assert_allclose(ours[key], theirs[key], rtol=RTOL, atol=ATOL, err_msg=f"{name} {key}")
    # The parameters really moved, so agreement is not trivial.
    params = make_problem()[0]
    assert max(float(np.max(np.abs(theirs[k][-1] - np.asarray(params[k])))) for k in theirs) > 1e-2


def test_adam_weight_decay_is_not_adamw():
    ours_l2, _ = trajectories()["Adam weight_decay"]
    ours_w, _ = trajectories()["AdamW"]
    assert max(float(np.max(np.abs(ours_l2[k][-1] - ours_w[k][-1]))) for k in ours_l2) > 1e-3


if __name__ == "__main__":  # prints the table of measured differences for docs/pytorch_mapping.md
    for pair in PAIRS:
        print(f"| {pair} | {differences(pair)[0]:.1e} | {differences(pair)[1]:.1e} |")



FUSED = {  # torch's own one-pass kernels, against the same optcompose optimizers stepped by optcompose.step
    "SGD momentum": lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.9, fused=True),
    "SGD nesterov": lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.9, nesterov=True, fused=True),
    "SGD weight_decay": lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.9, weight_decay=0.1, fused=True),
    "Adam": lambda p: torch.optim.Adam(p, lr=0.01, fused=True),
    "AdamW": lambda p: torch.optim.AdamW(p, lr=0.01, weight_decay=0.1, fused=True),
}


def test_one_pass_step_matches_torch_fused():
    params, noise = make_problem()
    names = list(FUSED)
    ours = tr.run_many([PAIRS[name][1]() for name in names], [(params, noise)] * len(names), "jit", one_pass=True)
    for name, (trajectory, _) in zip(names, ours, strict=True):
        theirs = torch_trajectory(FUSED[name], params, noise)
        for key in theirs:
            np.testing.assert_allclose(
                np.asarray(trajectory[key]), theirs[key], rtol=RTOL, atol=ATOL, err_msg=f"{name} fused {key}"
            )
