"""The LR range test on the digits CNN, then a short run at the suggested learning rate.

``lr_find`` sweeps the learning rate exponentially from 1e-7 to 10 over 100 steps of AdamW,
stopping once the smoothed loss exceeds 4x its best, and suggests the rate where the loss falls
fastest (the seed's choice). The optimizer is compiled once: each step writes the next rate into
the optimizer state. We then train with the seed's recipe peaking at the suggested rate.

    python examples/lr_finder.py                   # under a minute on a laptop CPU
"""

from __future__ import annotations

import common
import jax
import numpy as np

import optcompose as oc
from optcompose import recipes
from optcompose.lr_finder import lr_find, plot_lr_find


def main() -> None:
    parser = common.parser(__doc__.splitlines()[0], epochs=8, steps=100)
    args = parser.parse_args()
    out = common.results_dir("lr_finder", args.out)
    data = common.load_digits(seed=args.seed)
    model = common.CNN()
    batch_size = 64

    variables = jax.jit(model.init)(common.init_key(args.seed), data.x_train[:1])
    rng = np.random.default_rng(args.seed)
    bar = common.tqdm(total=args.steps, desc="LR sweep", unit="step")

    def batches():
        while True:
            for batch in common.epoch_batches(data.x_train, data.y_train, batch_size, rng):
                bar.update()
                yield batch

    def loss_fn(params, batch):
        x, y = batch
        return common.cross_entropy(model.apply({"params": params}, x, train=True), y)

    # A constant learning rate: lr_find overwrites it in the optimizer state at every step.
    result = lr_find(loss_fn, variables["params"], oc.adamw(1e-3), batches(), num_steps=args.steps)
    bar.close()
    print(f"swept {len(result.losses)} learning rates from {result.learning_rates[0]:.1e} "
          f"to {result.learning_rates[-1]:.1e}; stopped early: {result.diverged}")
    for name, value in result.suggestions.items():
        print(f"  suggestion {name:12s} {value:.2e}")
    plot_lr_find(result, out / "lr_find.png", title="LR range test: AdamW on the digits CNN")
    print(f"wrote {out / 'lr_find.png'}")

    # Train with the recipe peaking at the steepest-descent suggestion, clipped to a sane range.
    peak = float(np.clip(result.suggestions["steepest"], 1e-4, 3e-2))
    total = args.epochs * common.steps_per_epoch(data, batch_size)
    history = common.train(
        model, recipes.default(total, learning_rate=peak), data, epochs=args.epochs, seed=args.seed, desc="train"
    )
    fig, axes = common.figure(1, 2, size=(11, 4))
    plot_lr_find(result, ax=axes[0][0], title="LR range test")
    axes[0][0].axvline(peak, color="k", linestyle="--", linewidth=1, label=f"peak used: {peak:.1e}")
    axes[0][0].legend(fontsize="small")
    axes[0][1].plot(np.arange(1, args.epochs + 1), 100 * history.test_accuracy, marker="o")
    axes[0][1].set(xlabel="epoch", ylabel="test accuracy (%)", title=f"AdamW + warmup + cosine, peak lr {peak:.1e}")
    axes[0][1].grid(alpha=0.3)
    common.save(fig, out / "lr_find_and_training.png")
    print(f"test accuracy with peak lr {peak:.2e}: {100 * history.test_accuracy[-1]:.2f}%")


if __name__ == "__main__":
    main()
