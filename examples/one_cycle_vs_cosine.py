"""Super-convergence: the one-cycle policy against cosine annealing on a short budget.

Same CNN, same data, same number of steps, SGD with Nesterov momentum both times:

* cosine: the seed's vision recipe, lr 0.1 annealed to 0, momentum fixed at 0.9;
* one-cycle (Smith & Topin 2018, PyTorch's ``OneCycleLR``): the learning rate climbs from
  peak / 25 to twice the cosine's peak over the first 30 % of the steps, then anneals far below its
  start, while the momentum cycles the other way (0.95 -> 0.85 -> 0.95).

The model has BatchNorm, which is what lets it survive the high-learning-rate middle. The seed's
claim is that this middle acts as a regulariser, so one-cycle ends at least as good on the same
budget; on a dataset this small the two end level (measured: 98.0 % test accuracy for both after
6 epochs, within a test image or two from run to run), and cosine, starting at its peak, gets
there first.

    python examples/one_cycle_vs_cosine.py         # under a minute on a laptop CPU
"""

from __future__ import annotations

import common
import numpy as np

import optcompose as oc
from optcompose import recipes
from optcompose.schedules import one_cycle_schedule


def main() -> None:
    parser = common.parser(__doc__.splitlines()[0], epochs=6)
    parser.add_argument("--max-lr", type=float, default=0.2, help="one-cycle peak learning rate")
    args = parser.parse_args()
    out = common.results_dir("one_cycle_vs_cosine", args.out)
    data = common.load_digits(seed=args.seed)
    batch_size = 64
    total = args.epochs * common.steps_per_epoch(data, batch_size)

    cycle = one_cycle_schedule(total, max_lr=args.max_lr)
    runs = {
        "cosine (lr 0.1, momentum 0.9)": recipes.vision_from_scratch(total, learning_rate=0.1),
        f"one-cycle (peak lr {args.max_lr:g})": oc.chain(
            oc.add_decayed_weights(1e-4, recipes.default_decay_mask),
            oc.sgd(cycle.learning_rate, momentum=cycle.momentum, nesterov=True),
        ),
    }
    histories = {}
    for name, optimizer in runs.items():
        histories[name] = common.train(
            common.CNN(batch_norm=True), optimizer, data, epochs=args.epochs, batch_size=batch_size, seed=args.seed,
            desc=name,
        )

    fig, axes = common.figure(1, 3, size=(16, 4.8))
    acc_ax, loss_ax, lr_ax = axes[0]
    momentum_ax = lr_ax.twinx()
    steps = np.arange(total)
    for index, (name, history) in enumerate(histories.items()):
        color = f"C{index}"
        epochs = np.arange(1, len(history.test_accuracy) + 1)
        acc_ax.plot(epochs, 100 * history.test_accuracy, marker="o", color=color, label=name)
        loss_ax.plot(steps, common.smooth(history.losses), color=color, label=name)
        lr_ax.plot(steps, history.learning_rates, color=color, label=f"lr, {name.split(' (')[0]}")
    one_cycle_momentum = np.asarray(cycle.momentum(steps))
    momentum_ax.plot(steps, one_cycle_momentum, color="C1", linestyle=":", label="momentum, one-cycle")
    momentum_ax.axhline(0.9, color="C0", linestyle=":", label="momentum, cosine")
    momentum_ax.set_ylabel("momentum (dotted)")
    acc_ax.set(xlabel="epoch", ylabel="test accuracy (%)", title=f"Test accuracy, {args.epochs} epochs each")
    loss_ax.set(xlabel="step", ylabel="training loss (10-step average)", yscale="log", title="Training loss")
    lr_ax.set(xlabel="step", ylabel="learning rate (solid)", title="Schedules")
    acc_ax.legend(fontsize="small")
    loss_ax.legend(fontsize="small")
    lines = lr_ax.get_legend_handles_labels()
    extra = momentum_ax.get_legend_handles_labels()
    lr_ax.legend(
        lines[0] + extra[0],
        lines[1] + extra[1],
        fontsize="small",
        loc="upper center",
        bbox_to_anchor=(0.5, -0.16),
        ncol=2,
    )
    for ax in (acc_ax, loss_ax, lr_ax):
        ax.grid(alpha=0.3)
    common.save(fig, out / "one_cycle_vs_cosine.png")

    for name, history in histories.items():
        reached = np.flatnonzero(history.test_accuracy >= 0.95)
        first = f"epoch {reached[0] + 1}" if reached.size else "never"
        print(f"{name:32s} final test accuracy {100 * history.test_accuracy[-1]:.2f}%, >= 95% from {first}")


if __name__ == "__main__":
    main()
