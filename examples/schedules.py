"""Every learning-rate schedule of optcompose, and one-cycle's momentum, drawn over one run.

Each panel evaluates a schedule at every step of a ``--steps``-step run with one jitted,
vmapped call (schedules are pure functions of the step count), so the curves are exactly what
an optimizer built with them would use, update by update.

    python examples/schedules.py              # 1000 steps, writes results/schedules/schedules.png
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from common import figure, parser, results_dir, save

import optcompose as oc


def all_schedules(steps: int, peak: float = 0.1) -> dict[str, oc.Schedule]:
    """The schedules of the library, each set up for a run of ``steps`` updates."""
    quarter, tenth = steps // 4, max(1, steps // 10)
    cycle = oc.one_cycle_schedule(total_steps=steps, max_lr=peak)
    return {
        "constant_schedule": oc.constant_schedule(peak),
        "linear_schedule": oc.linear_schedule(peak, 0.0, steps),
        "polynomial_schedule (power 2)": oc.polynomial_schedule(peak, 0.0, 2.0, steps),
        "exponential_decay (staircase)": oc.exponential_decay(peak, quarter, 0.5, staircase=True),
        "piecewise_constant_schedule (MultiStepLR)": oc.piecewise_constant_schedule(
            peak, {int(0.5 * steps): 0.1, int(0.75 * steps): 0.1}
        ),
        "cosine_decay_schedule (CosineAnnealingLR)": oc.cosine_decay_schedule(peak, steps, alpha=0.01),
        "warmup_cosine_decay_schedule (the default)": oc.warmup_cosine_decay_schedule(
            0.0, peak, int(0.05 * steps), steps, end_value=1e-4
        ),
        "warmup_constant_schedule": oc.warmup_constant_schedule(0.0, peak, tenth),
        "warmup_exponential_decay_schedule": oc.warmup_exponential_decay_schedule(
            0.0, peak, tenth, quarter, 0.5
        ),
        "join_schedules (warmup, then linear)": oc.join_schedules(
            [oc.linear_schedule(0.0, peak, tenth), oc.linear_schedule(peak, 0.0, steps - tenth)], [tenth]
        ),
        "sgdr_schedule": oc.sgdr_schedule(
            [dict(init_value=0.0, peak_value=peak, warmup_steps=tenth // 2, decay_steps=quarter)] * 4
        ),
        "cosine_warm_restarts_schedule (T_0, T_mult=2)": oc.cosine_warm_restarts_schedule(
            peak, first_period=max(1, steps // 15), period_mult=2
        ),
        "cosine_onecycle_schedule": oc.cosine_onecycle_schedule(steps, peak),
        "linear_onecycle_schedule": oc.linear_onecycle_schedule(steps, peak),
        "one_cycle_schedule (OneCycleLR) lr": cycle.learning_rate,
        "one_cycle_schedule momentum": cycle.momentum,
    }


def evaluate(schedule: oc.Schedule, steps: int) -> np.ndarray:
    """The schedule at steps 0 .. steps - 1, in one compiled call."""
    return np.asarray(jax.jit(jax.vmap(schedule))(jnp.arange(steps, dtype=jnp.int32)))


def main() -> None:
    args = parser(__doc__.splitlines()[0], steps=1000).parse_args()
    out = results_dir("schedules", args.out)
    schedules = all_schedules(args.steps)
    cols = 4
    rows = -(-len(schedules) // cols)
    fig, axes = figure(rows, cols, size=(4.2 * cols, 2.6 * rows))
    for ax, (name, schedule) in zip(axes.flat, schedules.items(), strict=False):
        values = evaluate(schedule, args.steps)
        colour = "tab:purple" if "momentum" in name else "tab:blue"
        ax.plot(np.arange(args.steps), values, color=colour)
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("step")
        ax.set_ylabel("momentum" if "momentum" in name else "learning rate")
        ax.grid(alpha=0.3)
        print(f"{name:48s} step 0: {values[0]:.5f}   max: {values.max():.5f}   last: {values[-1]:.6f}")
    for ax in list(axes.flat)[len(schedules):]:
        ax.set_visible(False)
    fig.suptitle(f"optcompose schedules over a {args.steps}-step run (peak learning rate 0.1)")
    save(fig, out / "schedules.png")
    peak_step = int(np.argmax(evaluate(schedules["one_cycle_schedule (OneCycleLR) lr"], args.steps)))
    print(f"plotted {len(schedules)} schedules; one-cycle peaks at step {peak_step} "
          f"({100 * peak_step / args.steps:.1f}% of the run, pct_start=0.3)")


if __name__ == "__main__":
    main()
