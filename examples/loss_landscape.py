"""The seed's two-parameter terrain: seven optimizers on a ravine and on a saddle.

* Ravine: ``f(x, y) = 0.05 x^2 + 5 y^2``, a valley 100 times steeper across than along. Plain SGD
  must keep its step small enough for the steep walls, so it crawls along the floor; momentum
  builds speed along the floor while the side-to-side bounces cancel.
* Saddle: ``f(x, y) = x^2 / 2 + y^4 / 4 - y^2 / 2``, flat and curving down near the origin, with
  minima at ``(0, +-1)``. Started almost on the ridge, gradient methods stall where the gradient
  is tiny; the adaptive ones rescale the tiny ``y`` gradient and escape at once.

Each trajectory is one ``jax.lax.scan`` over the optimizer's ``update``.

    python examples/loss_landscape.py              # about 20 s on a laptop CPU
"""

from __future__ import annotations

import common
import jax
import jax.numpy as jnp
import numpy as np

import optcompose as oc


def ravine(w):
    return 0.05 * w[0] ** 2 + 5.0 * w[1] ** 2


def saddle(w):
    return 0.5 * w[0] ** 2 + 0.25 * w[1] ** 4 - 0.5 * w[1] ** 2


# name -> (optimizer on the ravine, optimizer on the saddle), learning rates tuned per terrain.
OPTIMIZERS = {
    "SGD": (oc.sgd(0.09), oc.sgd(0.1)),
    "Momentum": (oc.sgd(0.02, momentum=0.9), oc.sgd(0.02, momentum=0.9)),
    "Nesterov": (oc.sgd(0.02, momentum=0.9, nesterov=True), oc.sgd(0.02, momentum=0.9, nesterov=True)),
    "Adagrad": (oc.adagrad(1.0), oc.adagrad(0.5)),
    "RMSprop": (oc.rmsprop(0.05), oc.rmsprop(0.02)),
    "Adam": (oc.adam(0.3), oc.adam(0.05)),
    "AdamW": (oc.adamw(0.3, weight_decay=0.1), oc.adamw(0.05, weight_decay=0.1)),
}
TERRAINS = {
    "ravine": (ravine, np.array([-9.0, 1.5]), ((-10, 2), (-2, 2))),
    "saddle": (saddle, np.array([1.8, 1e-3]), ((-2, 2), (-1.6, 1.6))),
}


def trajectory(loss, optimizer, start, steps):
    """The parameters before each step and after the last: an array of shape (steps + 1, 2)."""

    @jax.jit
    def run(w0):
        def step(carry, _):
            w, state = carry
            updates, state = optimizer.update(jax.grad(loss)(w), state, w)
            return (oc.apply_updates(w, updates), state), w

        (last, _), path = jax.lax.scan(step, (w0, optimizer.init(w0)), length=steps)
        return jnp.concatenate([path, last[None]])

    return np.asarray(run(jnp.asarray(start, jnp.float32)))


def main() -> None:
    args = common.parser(__doc__.splitlines()[0], steps=150).parse_args()
    out = common.results_dir("loss_landscape", args.out)
    fig, axes = common.figure(1, 2, size=(13, 5.2))
    loss_fig, loss_axes = common.figure(1, 2, size=(13, 4.2))
    names = list(OPTIMIZERS)
    summary = []
    for column, (terrain, (loss, start, (xlim, ylim))) in enumerate(TERRAINS.items()):
        ax, loss_ax = axes[0][column], loss_axes[0][column]
        xs, ys = np.meshgrid(np.linspace(*xlim, 300), np.linspace(*ylim, 300))
        heights = np.asarray(jax.vmap(jax.vmap(loss))(jnp.stack([xs, ys], -1)))
        filled = ax.contourf(xs, ys, heights, levels=30, cmap="Greys_r", alpha=0.85)
        fig.colorbar(filled, ax=ax, label="loss")
        for index, name in enumerate(common.tqdm(names, desc=terrain, unit="optimizer")):
            path = trajectory(loss, OPTIMIZERS[name][column], start, args.steps)
            color = f"C{index}"
            ax.plot(path[:, 0], path[:, 1], color=color, linewidth=1.6, marker=".", markersize=2.5, label=name)
            values = np.asarray(jax.vmap(loss)(jnp.asarray(path)))
            loss_ax.plot(values - (0 if terrain == "ravine" else -0.25), color=color, label=name)
            summary.append((terrain, name, float(values[-1])))
        ax.plot(*start, marker="*", color="gold", markersize=14, markeredgecolor="k", linestyle="none", label="start")
        ax.set(xlim=xlim, ylim=ylim, xlabel="w1", ylabel="w2", title=f"{terrain}: {args.steps} steps from the star")
        ax.legend(loc="lower right" if terrain == "ravine" else "upper left", fontsize="small", ncol=2)
        shift = "" if terrain == "ravine" else " + 0.25 (minimum at 0)"
        loss_ax.set(xlabel="step", ylabel=f"loss{shift}", yscale="log", title=f"{terrain}: loss along the way")
        loss_ax.grid(alpha=0.3)
        loss_ax.legend(fontsize="small", ncol=2)
    common.save(fig, out / "trajectories.png")
    common.save(loss_fig, out / "losses.png")
    print(f"{'terrain':8s} {'optimizer':10s} final loss")
    for terrain, name, value in summary:
        print(f"{terrain:8s} {name:10s} {value: .3e}")


if __name__ == "__main__":
    main()
