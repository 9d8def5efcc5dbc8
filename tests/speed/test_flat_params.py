"""optcompose/speed/_flat_params.py: ``flat_params`` / ``FlatParams``, parameters as one buffer per dtype.

Every row of the table stepped with flat parameters (``optcompose.step`` on ``FlatParams``) follows the
row's own trajectory with tree parameters (``update`` + ``apply_updates``, jitted), to float32
round-off: under ``jit``, eagerly per row under ``pmap``, and with the buffer sharded on a mesh.
Here too: gradients through the views are exact, the step over flat parameters and flat moments
takes four arrays whatever the leaf count, checkpoints interchange with tree runs, bad layouts
raise naming the first differing leaf.
"""

from __future__ import annotations

import json
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import trajectory as tr
from cases import CASES, CASES_BY_NAME, SAMPLE
from flax import nnx
from flax.core import FrozenDict
from helpers import assert_trees_close, assert_trees_equal, random_like, random_params
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

import optcompose as oc
from optcompose.speed._flat_params import FlatParams, Layout

STEPS = 3
TOLERANCE = {"float32": (2e-6, 2e-6)}
"""A few steps of two jitted programs (flat against tree): float32 round-off only."""
FAST = SAMPLE | {"sgd_momentum_flat", "adam_l2_flat", "adamw_mask_flat", "adam_low_precision_flat", "lamb_flat"}
"""Rows run in the fast suite: the table's sample and the flat-state rows (the kernel over flat buffers)."""


def _rows(rows):
    # Every row with --exhaustive (one compiled step per row: minutes for the table), FAST in CI.
    return [
        pytest.param(row, id=row.name, marks=[] if row.name in FAST else [pytest.mark.slow, pytest.mark.exhaustive])
        for row in rows
    ]


def _tree():
    rng = np.random.default_rng(0)
    return {
        "dense": {"kernel": jnp.asarray(rng.normal(size=(3, 4)), jnp.float32), "bias": jnp.zeros((4,))},
        "emb": jnp.asarray(rng.normal(size=(5, 2)), jnp.bfloat16),
        "frozen": FrozenDict({"w": jnp.asarray(rng.normal(size=(2,)), jnp.float32)}),
        "norm": nnx.State({"gamma": jnp.ones((3,))}),
        "scale": jnp.asarray(0.5, jnp.float32),
        "none": None,
    }


# ----------------------------------------------------------------------------------------------
# The buffers and the views.


def test_flat_params_hold_one_buffer_per_dtype_and_read_as_the_tree():
    tree = _tree()
    flat = oc.flat_params(tree)
    assert [b.dtype for b in flat.buffers] == [jnp.float32, jnp.bfloat16]
    assert [b.shape for b in flat.buffers] == [(12 + 4 + 2 + 3 + 1,), (10,)]
    assert jax.tree.leaves(flat) == list(flat.buffers)
    assert_trees_equal(flat.tree, tree)
    assert_trees_equal(flat["dense"]["kernel"], tree["dense"]["kernel"])
    assert "dense" in flat and "nothing" not in flat
    assert jax.tree.structure(flat.tree) == jax.tree.structure(tree)
    padded = oc.flat_params(tree, pad_to=8)
    assert [b.shape for b in padded.buffers] == [(24,), (16,)] and padded.layout.padded
    assert float(jnp.sum(jnp.abs(padded.buffers[0][22:]))) == 0.0
    assert_trees_equal(padded.tree, tree)
    assert repr(flat) == "FlatParams(6 leaves in float32[22], bfloat16[10])"


def test_flat_params_go_through_jit_unchanged_and_views_cost_no_copy():
    tree = _tree()
    flat = oc.flat_params(tree)
    out = jax.jit(lambda f: f)(flat)
    assert isinstance(out, FlatParams) and out.layout == flat.layout
    # The forward pass reads the leaves as slices of the buffer: no concatenation, no copy.
    text = jax.jit(lambda f: jax.tree.map(lambda x: jnp.sum(x), f.tree)).lower(flat).as_text()
    assert "concatenate" not in text


def test_gradients_through_the_views_are_the_tree_gradients_exactly():
    tree = _tree()
    flat = oc.flat_params(tree, pad_to=4)

    def loss(t):
        d = t["dense"]
        x = jnp.tanh(jnp.ones((2, 3)) @ d["kernel"] + d["bias"]) * t["scale"]
        return jnp.sum(x**2) + jnp.sum(t["emb"].astype(jnp.float32) ** 3) + jnp.sum(t["norm"]["gamma"] * 2.0)

    grads = jax.jit(jax.grad(lambda f: loss(f.tree)))(flat)
    expected = jax.jit(jax.grad(loss))(tree)
    assert isinstance(grads, FlatParams) and grads.layout == flat.layout
    assert_trees_equal(grads.tree, expected)  # bit for bit; the unused leaf ['frozen'] gets zeros
    assert float(jnp.sum(jnp.abs(grads.buffers[0][22:]))) == 0.0  # padding: zero gradient


# ----------------------------------------------------------------------------------------------
# Every row: flat parameters against tree parameters.

_RUNS: dict[tuple, dict] = {}


def _flat_run(rows, mode="jit"):
    """Each row's first STEPS parameters (as trees) stepped by ``step`` on ``FlatParams``."""

    def one(case):
        tx = case.make()
        params, noise = tr.problem(case.low_precision)
        flat = oc.flat_params(params)
        noise = jax.tree.map(lambda n: n[:STEPS], noise)
        dynamic, static = tr._extras_per_step(case.extra_args, STEPS)

        def body(carry, inputs):
            flat, state = carry
            noise_t, dynamic_t = inputs
            grads = FlatParams.from_tree(tr.gradients(flat.tree, noise_t), layout=flat.layout)
            flat, state = oc.step(tx, grads, state, flat, **tr._merge_extras(dynamic_t, static))
            return (flat, state), flat.tree

        def run(flat, state, noise, dynamic):
            return jax.lax.scan(body, (flat, state), (noise, dynamic))[1]

        return run, (flat, tx.init(flat.tree), noise, dynamic)

    built = [one(case) for case in rows]
    programs = [run for run, _ in built]
    args = [a for _, a in built]
    if mode == "pmap":
        replicated = jax.tree.map(lambda x: jnp.broadcast_to(x, (2, *jnp.shape(x))), args)
        return jax.pmap(lambda a: [p(*x) for p, x in zip(programs, a, strict=True)])(replicated)
    return jax.jit(lambda a: [p(*x) for p, x in zip(programs, a, strict=True)])(args)


def _flat_result(case):
    rows = tr.batch(CASES, case)
    key = tuple(c.name for c in rows)
    if key not in _RUNS:
        try:
            _RUNS[key] = dict(zip(key, _flat_run(rows), strict=True))
        except Exception:  # one bad row must not fail the others
            _RUNS[key] = {}
            for row in rows:
                try:
                    _RUNS[key][row.name] = _flat_run([row])[0]
                except Exception as error:  # noqa: BLE001 - re-raised by the row's own test
                    _RUNS[key][row.name] = error
    found = _RUNS[key][case.name]
    if isinstance(found, Exception):
        raise found
    return found


def _tree_result(case):
    trajectory, _ = tr.result(CASES, case, "jit")
    return jax.tree.map(lambda x: x[:STEPS], trajectory)


@pytest.mark.parametrize("case", _rows(CASES))
def test_flat_params_step_as_tree_params(case):
    tr.assert_trajectories_close(_flat_result(case), _tree_result(case), label=f"{case.name} flat ", **TOLERANCE)


@pytest.mark.parametrize("name", ["adamw_mask", "sgd_momentum_flat", "lamb_flat", "adam_low_precision_flat"])
def test_flat_params_under_pmap(name):
    case = CASES_BY_NAME[name]
    (trajectory,) = _flat_run([case], mode="pmap")
    want = _tree_result(case)
    for replica in range(2):
        got = jax.tree.map(lambda x, r=replica: x[r], trajectory)
        tr.assert_trajectories_close(got, want, label=f"{name} pmap replica {replica} ", **TOLERANCE)


# ----------------------------------------------------------------------------------------------
# The kernel over flat buffers: four arrays whatever the leaf count.


def _leaves(n, size=8, seed=0):
    rng = np.random.default_rng(seed)
    return {f"leaf{i:03d}": jnp.asarray(rng.normal(size=(size,)), jnp.float32) for i in range(n)}


def test_flat_params_and_flat_moments_take_four_arrays_in_place():
    params = _leaves(100)
    flat = oc.flat_params(params)
    grads = oc.flat_params(_leaves(100, seed=1))
    tx = oc.flat_state(oc.adamw(0.01, weight_decay=0.1))
    state = tx.init(flat.tree)
    jitted = jax.jit(lambda p, s, g: oc.step(tx, g, s, p), donate_argnums=(0, 1))
    text = jitted.lower(flat, state, grads).compile().as_text()
    entry = text[text.index("ENTRY") :]
    signature = entry.splitlines()[0]
    assert "optcompose_adam" in text
    # Four arrays (g, p, m, v; the rest are scalars: count, hyperparameters), no copies (in place).
    assert len(re.findall(r": f32\[\d+\]", signature)) == 4 and " copy(" not in entry
    new, new_state = jitted(flat, state, grads)
    tree_new, tree_state = jax.jit(lambda p, s, g: oc.step(tx, g, s, p))(params, tx.init(params), grads.tree)
    assert_trees_close(new.tree, tree_new, float32=(2e-7, 2e-7))
    assert_trees_close(new_state, tree_state, float32=(2e-7, 2e-7))


@pytest.mark.parametrize(
    "make, kernel",
    [
        (lambda: oc.flat_state(oc.adamw(0.01, weight_decay=0.1)), True),
        (lambda: oc.flat_state(oc.sgd(0.1, momentum=0.9, nesterov=True)), True),
        (lambda: oc.flat_state(oc.chain(oc.clip_by_global_norm(1.0), oc.adam(0.01))), True),  # prefix on the tree
        (lambda: oc.flat_state(oc.adamw(0.01, mask=lambda p: {k: k != "leaf000" for k in p})), False),  # mixed mask
        (lambda: oc.flat_state(oc.lamb(0.01)), False),  # per-leaf trust ratios
        (lambda: oc.adamw(0.01), False),  # per-leaf moments
    ],
    ids=["adamw", "sgd_nesterov", "clip_adam", "mixed_mask", "lamb", "tree_moments"],
)
def test_which_flat_steps_take_the_kernel_and_that_all_equal_the_tree(make, kernel):
    tx = make()
    params, grads = _leaves(5, 40_000), _leaves(5, 40_000, seed=1)  # big enough for the threads
    flat, flat_grads = oc.flat_params(params), oc.flat_params(grads)
    jitted = jax.jit(lambda p, s, g: oc.step(tx, g, s, p))
    assert ("optcompose_" in jitted.lower(flat, tx.init(flat.tree), flat_grads).as_text()) == kernel
    p_flat, s_flat, p_tree, s_tree = flat, tx.init(flat.tree), params, tx.init(params)
    for _ in range(2):
        p_flat, s_flat = jitted(p_flat, s_flat, flat_grads)
        p_tree, s_tree = jax.jit(lambda p, s, g: oc.step(tx, g, s, p, use_kernel=False))(p_tree, s_tree, grads)
    assert_trees_close(p_flat.tree, p_tree, float32=(2e-6, 2e-7))
    assert_trees_close(s_flat, s_tree, float32=(2e-6, 2e-7))
    # Eagerly, the kernel gives the general road's numbers bit for bit.
    eager, _ = oc.step(tx, flat_grads, tx.init(flat.tree), flat)
    general, _ = oc.step(tx, grads, tx.init(params), params, use_kernel=False)
    assert_trees_equal(eager.tree, general)


def test_jax_grad_through_a_flat_step_is_the_general_roads():
    tx = oc.flat_state(oc.adamw(0.01, weight_decay=0.1))
    flat, grads = oc.flat_params(_leaves(3)), oc.flat_params(_leaves(3, seed=1))
    state = tx.init(flat.tree)

    def after(p, use_kernel):
        new, _ = oc.step(tx, grads, state, p, use_kernel=use_kernel)
        return sum(jnp.sum(x**2) for x in jax.tree.leaves(new.tree))

    got = jax.grad(lambda p: after(p, True))(flat)
    want = jax.grad(lambda p: after(p, False))(flat)
    assert_trees_close(got.tree, want.tree, float32=(1e-6, 1e-7))


# ----------------------------------------------------------------------------------------------
# Sharding: the buffer replicated, or sharded along its one axis (padded to divide evenly).


@pytest.mark.parametrize(
    "name, spec",
    [
        ("sgd_momentum_flat", P()),
        ("adamw_mask_flat", P("data")),
        pytest.param("adamw_mask", P(), marks=pytest.mark.slow),
        pytest.param("adamw_mask", P("data"), marks=pytest.mark.slow),
        pytest.param("sgd_momentum_flat", P("data"), marks=pytest.mark.slow),
    ],
    ids=["sgd_flat-replicated", "adamw_mask_flat-sharded", "adamw_mask-replicated", "adamw_mask-sharded",
         "sgd_flat-sharded"],
)  # fmt: skip
def test_flat_params_on_a_mesh(name, spec):
    mesh = jax.make_mesh((8,), ("data",), devices=jax.devices()[:8])  # an explicit axis (JAX's default)
    with jax.set_mesh(mesh):
        _run_on_mesh(name, spec, mesh)


def _run_on_mesh(name, spec, mesh):
    case = CASES_BY_NAME[name]
    tx = case.make()
    params, noise = tr.problem(case.low_precision)
    flat = oc.flat_params(params, pad_to=8 if spec == P("data") else 1)  # a sharded buffer divides evenly
    sharding = NamedSharding(mesh, spec)
    flat = jax.device_put(flat, sharding)
    state = tx.init(flat.tree)

    @jax.jit
    def one(flat, state, noise_t):
        grads = FlatParams.from_tree(tr.gradients(flat.tree, noise_t), layout=flat.layout)
        grads = jax.sharding.reshard(grads, sharding)
        return oc.step(tx, grads, state, flat)

    noise_0 = jax.tree.map(lambda n: n[0], noise)
    # Replicated flat buffers with flat moments take the kernel; a sharded buffer XLA's partitioned road.
    kernel = spec == P() and name == "sgd_momentum_flat"
    assert ("optcompose_sgd" in one.lower(flat, state, noise_0).compile().as_text()) == kernel
    got = []
    for t in range(STEPS):
        flat, state = one(flat, state, jax.tree.map(lambda n, t=t: n[t], noise))
        got.append(flat.tree)
    assert flat.buffers[0].sharding.is_equivalent_to(sharding, 1)
    stacked = jax.tree.map(lambda *xs: jnp.stack(xs), *got)
    tr.assert_trajectories_close(stacked, _tree_result(case), label=f"{name} mesh {spec} ", **TOLERANCE)


# ----------------------------------------------------------------------------------------------
# Checkpoints: saved as the tree, restored into either form.


@pytest.mark.parametrize("make", [lambda: oc.adamw(0.01), lambda: oc.flat_state(oc.adamw(0.01))], ids=["tree", "flat"])
def test_checkpoints_interchange_flat_and_tree_parameters(tmp_path, make):
    tx = make()
    params = random_params(None, 0)
    grads = [random_like(params, seed) for seed in (1, 2, 3)]
    jitted = jax.jit(lambda p, s, g: oc.step(tx, g, s, p))
    # A tree run and a flat run, one step each, saved.
    tree_p, tree_s = jitted(params, tx.init(params), grads[0])
    flat = oc.flat_params(params)
    flat_p, flat_s = jitted(flat, tx.init(flat.tree), oc.flat_params(grads[0]))
    oc.checkpoint.save(tmp_path / "tree", {"params": tree_p, "opt_state": tree_s})
    oc.checkpoint.save(tmp_path / "flat", {"params": flat_p, "opt_state": flat_s})
    # The flat run saved the tree's layout: the two checkpoints hold the same arrays under the same names.
    names = [set(json.loads((tmp_path / run / "optcompose.json").read_text())["digests"]) for run in ("flat", "tree")]
    assert names[0] == names[1] and "['params']['w']" in names[0]
    # Each resumes into the other form.
    as_flat = oc.checkpoint.restore(tmp_path / "tree", {"params": flat, "opt_state": tx.init(flat.tree)})
    as_tree = oc.checkpoint.restore(tmp_path / "flat", {"params": params, "opt_state": tx.init(params)})
    assert isinstance(as_flat["params"], FlatParams) and as_flat["params"].layout == flat.layout
    assert_trees_equal(as_flat["params"].tree, tree_p)
    assert_trees_equal(as_tree["params"], flat_p.tree)
    a = jitted(as_flat["params"], as_flat["opt_state"], oc.flat_params(grads[1]))
    b = jitted(as_tree["params"], as_tree["opt_state"], grads[1])
    assert_trees_close(a[0].tree, b[0], float32=(2e-7, 2e-7))
    # A target of another model is refused naming the leaf.
    other = oc.flat_params(dict(params, w=jnp.zeros((5, 7))))
    with pytest.raises(ValueError, match=r"\['w'\]"):
        oc.checkpoint.restore(tmp_path / "flat", {"params": other, "opt_state": tx.init(other.tree)})


# ----------------------------------------------------------------------------------------------
# Bad layouts.


def test_bad_layouts_raise_naming_the_first_differing_leaf():
    tree = _tree()
    flat = oc.flat_params(tree)
    tx = oc.adam(0.1)
    state = tx.init(flat.tree)
    other = dict(tree, dense={"kernel": jnp.zeros((4, 3)), "bias": tree["dense"]["bias"]})
    with pytest.raises(ValueError, match=r"\['dense'\]\['kernel'\] has shape \(3, 4\)"):
        oc.step(tx, oc.flat_params(other), state, flat)
    with pytest.raises(ValueError, match=r"\['dense'\]\['kernel'\]"):
        FlatParams.from_tree(other, layout=flat.layout)
    renamed = dict(tree, extra=jnp.zeros(2))
    with pytest.raises(ValueError, match="extra"):
        oc.step(tx, oc.flat_params(renamed), state, flat)
    with pytest.raises(ValueError, match="the gradients are not"):
        oc.step(tx, tree, state, flat)
    with pytest.raises(ValueError, match=r"tx.init\(flat.tree\)"):
        oc.step(tx, flat, tx.init(flat), flat)
    assert Layout.of(tree).difference(Layout.of(tree)) is None
    with pytest.raises(ValueError, match="pad_to"):
        oc.flat_params(tree, pad_to=0)
