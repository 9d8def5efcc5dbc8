"""Train a small CNN on scikit-learn's handwritten digits with the seed's default recipe.

AdamW + linear warmup over the first 5 % of the steps + cosine decay: the recipe the seed says
"handles 90% of what you'll face", here one call, ``optcompose.recipes.default``. The learning
rate is read back from the optimizer state at every step (hyperparameters are data) and plotted
with the training loss.

    python examples/train_classifier.py            # under a minute on a laptop CPU
"""

from __future__ import annotations

import common
import numpy as np
from matplotlib.ticker import MaxNLocator

from optcompose import recipes


def main() -> None:
    args = common.parser(__doc__.splitlines()[0], epochs=20).parse_args()
    out = common.results_dir("train_classifier", args.out)
    data = common.load_digits(seed=args.seed)
    batch_size = 64
    total_steps = args.epochs * common.steps_per_epoch(data, batch_size)
    optimizer = recipes.default(total_steps, learning_rate=3e-3, weight_decay=0.01)

    history = common.train(
        common.CNN(), optimizer, data, epochs=args.epochs, batch_size=batch_size, seed=args.seed, desc="AdamW+cosine"
    )

    fig, axes = common.figure(1, 3, size=(15, 4))
    loss_ax, lr_ax, acc_ax = axes[0]
    steps = np.arange(len(history.losses))
    loss_ax.plot(steps, history.losses, color="0.8", label="per step")
    loss_ax.plot(steps, common.smooth(history.losses), color="C0", label="moving average (10 steps)")
    loss_ax.set(xlabel="step", ylabel="training loss (cross-entropy)", yscale="log", title="Training loss")
    loss_ax.legend()
    lr_ax.plot(steps, history.learning_rates, color="C1")
    lr_ax.set(xlabel="step", ylabel="learning rate", title="AdamW: 5% linear warmup, then cosine decay")
    epochs = np.arange(1, len(history.test_accuracy) + 1)
    acc_ax.plot(epochs, 100 * history.test_accuracy, marker="o", color="C2")
    acc_ax.set(xlabel="epoch", ylabel="test accuracy (%)", title="Test accuracy")
    acc_ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    for ax in axes[0]:
        ax.grid(alpha=0.3)
    common.save(fig, out / "training.png")

    print(f"final training loss {history.losses[-10:].mean():.4f}")
    print(f"test accuracy {100 * history.test_accuracy[-1]:.2f}% ({len(data.y_test)} test images)")


if __name__ == "__main__":
    main()
