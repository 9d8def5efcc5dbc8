"""Stochastic Weight Averaging against the last iterate, on the digits CNN with BatchNorm.

The seed's SWA recipe (Izmailov et al. 2018), PyTorch's ``AveragedModel`` / ``SWALR`` /
``update_bn`` in three functional pieces:

1. SGD with momentum under a cosine schedule until ``--swa-start``; from there the learning rate
   anneals to a constant ``--swa-lr`` (``swa_learning_rate_schedule``);
2. at the end of every epoch from ``--swa-start`` on, the weights enter an equal-weight running
   average (``swa``);
3. the averaged weights get fresh BatchNorm statistics from one pass over the training data
   (``update_bn``), since the running statistics gathered during training belong to other weights.

The plot compares test accuracy and test loss of the last iterate and of the average, epoch by
epoch, and shows the learning rate. Expect no miracle on a dataset this small: the last iterate
already sits in a wide, flat minimum, and the average matches it (measured: 98.44 % for both, test
loss 0.0321 for the average against 0.0325). The seed's 0.5-1.5 % gains are for larger vision
models; what this example shows is the mechanics, each piece checked against PyTorch in the tests.

    python examples/swa.py                         # under a minute on a laptop CPU
"""

from __future__ import annotations

import common
import jax
import numpy as np

import optcompose as oc
from optcompose.averaging import swa, swa_learning_rate_schedule, update_bn
from optcompose.schedules import cosine_decay_schedule


def main() -> None:
    parser = common.parser(__doc__.splitlines()[0], epochs=16)
    parser.add_argument("--swa-start", type=int, default=None, help="first averaged epoch (default: 60%% of epochs)")
    parser.add_argument("--swa-lr", type=float, default=0.05, help="constant learning rate of the SWA phase")
    args = parser.parse_args()
    out = common.results_dir("swa", args.out)
    swa_start = args.swa_start if args.swa_start is not None else max(1, int(0.6 * args.epochs))
    swa_start = min(swa_start, args.epochs - 1)
    data = common.load_digits(seed=args.seed)
    batch_size = 64
    per_epoch = common.steps_per_epoch(data, batch_size)
    total = args.epochs * per_epoch

    # Learning rate per step: cosine from 0.1 over the whole run, replaced from the first SWA epoch
    # by a one-epoch cosine annealing to the constant swa_lr.
    schedule = swa_learning_rate_schedule(
        cosine_decay_schedule(0.1, total), swa_start=swa_start * per_epoch, swa_lr=args.swa_lr, anneal_steps=per_epoch
    )
    optimizer = oc.chain(oc.add_decayed_weights(5e-4), oc.sgd(schedule, momentum=0.9, nesterov=True))
    model = common.CNN(batch_norm=True)
    averager = swa(swa_start=swa_start)  # update is called once per epoch, so it counts epochs
    evaluate = common.make_trainer(model, optimizer, data.x_train).evaluate
    update = jax.jit(averager.update)
    swa_state = None
    swa_curve = {}  # epoch -> (test accuracy, test loss) of the averaged model
    rng = np.random.default_rng(args.seed + 1)

    def on_epoch_end(epoch, variables):
        nonlocal swa_state
        if swa_state is None:
            swa_state = averager.init(variables["params"])
        swa_state = update(variables["params"], swa_state)
        if int(swa_state.n_averaged) == 0:
            return
        averaged = {"params": swa_state.params, "batch_stats": variables["batch_stats"]}
        batches = common.epoch_batches(data.x_train, data.y_train, batch_size, rng)
        averaged = update_bn(model.apply, averaged, batches, train=True)
        accuracy, loss = evaluate(averaged, data.x_test, data.y_test)
        swa_curve[epoch + 1] = (float(accuracy), float(loss))

    history = common.train(
        model, optimizer, data, epochs=args.epochs, batch_size=batch_size, seed=args.seed, desc="SGD + SWA",
        on_epoch_end=on_epoch_end,
    )

    fig, axes = common.figure(1, 3, size=(16, 4.2))
    acc_ax, loss_ax, lr_ax = axes[0]
    epochs = np.arange(1, args.epochs + 1)
    swa_epochs = np.array(sorted(swa_curve))
    swa_values = np.array([swa_curve[e] for e in swa_epochs])
    acc_ax.plot(epochs, 100 * history.test_accuracy, marker="o", label="last iterate")
    acc_ax.plot(swa_epochs, 100 * swa_values[:, 0], marker="s", label="SWA average (BatchNorm re-estimated)")
    loss_ax.plot(epochs, history.test_loss, marker="o", label="last iterate")
    loss_ax.plot(swa_epochs, swa_values[:, 1], marker="s", label="SWA average")
    for ax in (acc_ax, loss_ax):
        ax.axvline(swa_start, color="0.5", linestyle="--", linewidth=1)
        ax.legend(fontsize="small")
        ax.grid(alpha=0.3)
    acc_ax.set(xlabel="epoch", ylabel="test accuracy (%)", title="Test accuracy (SWA from the dashed line)")
    acc_ax.set_ylim(max(80.0, 100 * history.test_accuracy.min() - 1), 100)
    loss_ax.set(xlabel="epoch", ylabel="test loss (cross-entropy)", yscale="log", title="Test loss")
    lr_ax.plot(np.arange(total) / per_epoch, history.learning_rates, color="C2")
    lr_ax.axvline(swa_start, color="0.5", linestyle="--", linewidth=1)
    lr_ax.set(xlabel="epoch", ylabel="learning rate", title=f"Cosine, then SWALR to {args.swa_lr:g}")
    lr_ax.grid(alpha=0.3)
    common.save(fig, out / "swa.png")

    last_acc, last_loss = history.test_accuracy[-1], history.test_loss[-1]
    swa_acc, swa_loss = swa_values[-1]
    print(f"averaged {int(swa_state.n_averaged)} epochs (from epoch {swa_start + 1})")
    print(f"last iterate: test accuracy {100 * last_acc:.2f}%, test loss {last_loss:.4f}")
    print(f"SWA average:  test accuracy {100 * swa_acc:.2f}%, test loss {swa_loss:.4f}")


if __name__ == "__main__":
    main()
