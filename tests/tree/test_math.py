"""optcompose.tree maths (optcompose/tree/_math.py) against optax.tree, leaf for leaf and bit for bit."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import optcompose
import optcompose.tree as ours

theirs = optax.tree

ALL = (jnp.float32, jnp.bfloat16, jnp.complex64)


def make_trees(dtype):
    """Two trees of one structure: nested dict/tuple with a None entry. Every leaf has shape (3,), so
    eager mode compiles each kernel once (scalar leaves are covered by the Python-number tests)."""
    x = {"a": np.array([1.5, -2.0, 3.25]), "b": (np.array([0.5, -1.0, 4.0]), None), "c": {"d": np.array([-0.75, 0, 8])}}
    y = {
        "a": np.array([0.25, 1.0, -0.5]),
        "b": (np.array([3.0, 0.125, -1.5]), None),
        "c": {"d": np.array([2, -3, 0.5])},
    }
    if jnp.issubdtype(dtype, jnp.complexfloating):
        x = jax.tree.map(lambda v: v + 1j * v[::-1], x)
        y = jax.tree.map(lambda v: v - 0.5j * v, y)
    return jax.tree.map(lambda v: jnp.asarray(v, dtype), x), jax.tree.map(lambda v: jnp.asarray(v, dtype), y)


def assert_same(got, want, where="result"):
    """Same structure, same kind (array or Python value), same dtype, same values (NaNs equal)."""
    assert jax.tree.structure(got) == jax.tree.structure(want), where
    for (path, g), w in zip(jax.tree_util.tree_leaves_with_path(got), jax.tree.leaves(want), strict=True):
        label = f"{where}{jax.tree_util.keystr(path)}"
        assert isinstance(g, jax.Array) == isinstance(w, jax.Array), label
        assert type(g) is type(w) or isinstance(g, jax.Array), label
        assert jnp.result_type(g) == jnp.result_type(w), f"{label}: {jnp.result_type(g)} vs {jnp.result_type(w)}"
        np.testing.assert_array_equal(np.asarray(g), np.asarray(w), err_msg=label)


def core_ops(tu, x, y, real):
    """The functions whose arithmetic depends on the dtype, for every dtype."""
    out = {
        "add": tu.add(x, y),
        "add3": tu.add(x, y, x, y),
        "sub": tu.sub(x, y),
        "mul": tu.mul(x, y),
        "div": tu.div(x, y),
        "scale": tu.scale(0.5, x),
        "add_scale": tu.add_scale(x, 0.3, y),
        "vdot": tu.vdot(x, y),
        "sum": tu.sum(x),
        "conj": tu.conj(x),
        "real": tu.real(x),
        "norm": tu.norm(x),
        "norm1": tu.norm(x, 1),
        "norm_inf": tu.norm(x, "inf"),
        "moment2": tu.update_moment(x, y, 0.999, 2),
        "per_elem2": tu.update_moment_per_elem_norm(x, tu.real(y), 0.99, 2),
        "bias": tu.bias_correction(x, 0.9, 3),
        "where": tu.where(False, x, y),
        "zeros": tu.zeros_like(x),
    }
    if real:
        out.update(max=tu.max(x), min=tu.min(y), inf_moment=tu.update_infinity_moment(x, y, 0.9, 1e-3))
    return out


def all_ops(tu, x, y):
    """Every tree-maths function and argument variant of namespace ``tu`` (real trees)."""
    out = core_ops(tu, x, y, True)
    out.update(
        scale_array=tu.scale(jnp.asarray(3.0), x),
        sum_assoc=tu.sum(x, associative_reduction=True),
        norm2_sq=tu.norm(x, 2, True),
        norm1_sq=tu.norm(x, ord=1, squared=True),
        norm_infinity_sq=tu.norm(x, "infinity", squared=True),
        norm_jnp_inf=tu.norm(x, jnp.inf),
        norm_float2=tu.norm(x, 2.0),
        zeros_int=tu.zeros_like(x, jnp.int32),
        ones=tu.ones_like(x),
        ones_bf16=tu.ones_like(x, dtype=jnp.bfloat16),
        full=tu.full_like(x, 0.25),
        full_int=tu.full_like(x, 1.7, jnp.int32),
        batch=tu.batch_shape(x, (2, 1)),
        batch_none=tu.batch_shape(x),
        where_true=tu.where(jnp.asarray(True), x, y),
        allclose=tu.allclose(x, y),
        allclose_self=tu.allclose(x, x),
        allclose_tol=tu.allclose(x, tu.add_scale(x, 1e-3, y), 1e-2, 1e-2),
        moment1=tu.update_moment(x, y, 0.9, 1),
        per_elem1=tu.update_moment_per_elem_norm(x, y, 0.9, 1),
        per_elem3=tu.update_moment_per_elem_norm(x, y, 0.5, 3),
        bias_array_count=tu.bias_correction(y, 0.999, jnp.asarray(7, jnp.int32)),
        clip=tu.clip(x, -1.0, 2.0),
        clip_low=tu.clip(x, min_value=0.0),
        clip_high=tu.clip(x, max_value=0.0),
        clip_none=tu.clip(x),
    )
    return out


def test_every_function_matches_optax_float32_eager():
    x, y = make_trees(jnp.float32)
    got, want = all_ops(ours, x, y), all_ops(theirs, x, y)
    assert got.keys() == want.keys()
    for name in want:
        assert_same(got[name], want[name], name)


@pytest.mark.parametrize("dtype", [jnp.bfloat16, jnp.complex64], ids=lambda d: jnp.dtype(d).name)
def test_dtype_sensitive_functions_match_optax_eager(dtype):
    x, y = make_trees(dtype)
    real = not jnp.issubdtype(dtype, jnp.complexfloating)
    got, want = core_ops(ours, x, y, real), core_ops(theirs, x, y, real)
    for name in want:
        assert_same(got[name], want[name], name)
    if real:
        assert got["moment2"]["a"].dtype == jnp.bfloat16 and got["bias"]["a"].dtype == jnp.bfloat16
    else:
        assert got["real"]["a"].dtype == jnp.float32 and got["per_elem2"]["a"].dtype == jnp.float32


@pytest.mark.parametrize("dtype", ALL, ids=lambda d: jnp.dtype(d).name)
def test_functions_match_optax_under_jit(dtype):
    """Ours and Optax's, each jitted (one program per dtype), agree exactly."""
    x, y = make_trees(dtype)
    real = not jnp.issubdtype(dtype, jnp.complexfloating)
    ops = all_ops if dtype == jnp.float32 else lambda tu, a, b: core_ops(tu, a, b, real)
    got, want = jax.jit(lambda a, b: (ops(ours, a, b), ops(theirs, a, b)))(x, y)
    for name in want:
        assert_same(got[name], want[name], name)


def test_float64_under_x64():
    with jax.enable_x64(True):
        x, y = make_trees(jnp.float64)

        def ops(tu):
            return {
                "add_scale": tu.add_scale(x, 0.3, y),
                "vdot": tu.vdot(x, y),
                "sum": tu.sum(x),
                "norm": tu.norm(x),
                "norm_inf": tu.norm(x, "inf", squared=True),
                "moment2": tu.update_moment(x, y, 0.999, 2),
                "per_elem2": tu.update_moment_per_elem_norm(x, y, 0.99, 2),
                "bias": tu.bias_correction(x, 0.9, 3),
            }

        got, want = ops(ours), ops(theirs)
        for name in want:
            assert_same(got[name], want[name], name)
        assert got["norm"].dtype == jnp.float64
        assert got["moment2"]["a"].dtype == jnp.float64
        assert got["bias"]["a"].dtype == jnp.float64


@pytest.mark.parametrize("tree", [{}, (), [], None, {"key": [None, [None]]}], ids=repr)
def test_empty_trees_give_identities(tree):
    for name, call in {
        "sum": lambda tu: tu.sum(tree),
        "sum_assoc": lambda tu: tu.sum(tree, associative_reduction=True),
        "vdot": lambda tu: tu.vdot(tree, tree),
        "size": lambda tu: tu.size(tree),
        "max": lambda tu: tu.max(tree),
        "min": lambda tu: tu.min(tree),
        "allclose": lambda tu: tu.allclose(tree, tree),
        "norm": lambda tu: tu.norm(tree),
        "norm1": lambda tu: tu.norm(tree, 1),
        "norm_inf": lambda tu: tu.norm(tree, "inf"),
        "norm_inf_sq": lambda tu: tu.norm(tree, "inf", squared=True),
        "add": lambda tu: tu.add(tree, tree),
        "zeros": lambda tu: tu.zeros_like(tree),
    }.items():
        assert_same(call(ours), call(theirs), name)
    assert ours.sum(tree) == 0 and ours.vdot(tree, tree) == 0 and ours.size(tree) == 0
    assert ours.max(tree) == -float("inf") and ours.min(tree) == float("inf")


def test_min_max_skip_empty_leaves():
    tree = [jnp.ones([2, 3]), jnp.zeros([4, 0, 5])]
    assert_same(ours.min(tree), theirs.min(tree))
    assert ours.min(tree) == 1.0
    for value in (10000, -float("inf")):
        for dtype in ("uint8", "float32"):
            mixed = [value, jnp.zeros(0, dtype)]
            assert ours.max(mixed) == value == ours.min(mixed)
            assert_same(ours.max(mixed), theirs.max(mixed))
    ints = {"a": jnp.array([3, -7, 0], jnp.int32), "b": jnp.array([1, 2, 3], jnp.int8)}
    assert_same(ours.max(ints), theirs.max(ints))
    assert_same(ours.min(ints), theirs.min(ints))


def test_integer_and_bool_promotion_match_optax():
    ints = {"a": jnp.array([1, 2, 0]), "b": jnp.array([1, 2, 0])}
    other = {"a": jnp.array([-1, -1, 5]), "b": jnp.array([1, 1, 7])}
    assert_same(ours.vdot(ints, other), theirs.vdot(ints, other))
    assert ours.vdot(ints, other) == 0 and ours.vdot(ints, other).dtype == jnp.int32
    bools = {"a": jnp.array([True, False])}
    assert_same(ours.add(bools, bools), theirs.add(bools, bools))  # 0 + x + y: bool -> int32
    assert_same(ours.div(ints, other), theirs.div(ints, other))
    assert_same(ours.norm(ints), theirs.norm(ints))
    assert_same(ours.sum(ints), theirs.sum(ints))
    python = {"a": 1.5, "b": (2, -3.0)}
    for fn in ("norm", "sum", "size"):
        assert_same(getattr(ours, fn)(python), getattr(theirs, fn)(python), fn)
    assert_same(ours.add(python, python), theirs.add(python, python))
    assert_same(ours.vdot(python, python), theirs.vdot(python, python))


def test_add_scale_keeps_bfloat16_and_none():
    x = {"a": jnp.ones(3, jnp.bfloat16), "b": None}
    y = {"a": jnp.full(3, 2.0, jnp.bfloat16), "b": jnp.ones(2)}
    got = ours.add_scale(x, 0.5, y)
    assert got["a"].dtype == jnp.bfloat16 and got["b"] is None
    assert_same(got, theirs.add_scale(x, 0.5, y))


@pytest.mark.parametrize(
    "call",
    [
        lambda tu, m: tu.add_scale(None, 1, m),
        lambda tu, m: tu.update_moment(None, m, 1, 1),
        lambda tu, m: tu.update_infinity_moment(None, m, 1, 1),
        lambda tu, m: tu.update_moment_per_elem_norm(None, m, 1, 1),
        lambda tu, m: tu.update_moment({"a": None, "b": m}, {"a": m, "b": m}, 0.9, 2),
        lambda tu, m: tu.update_moment({"a": None, "b": m}, {"a": {"deep": m}, "b": m}, 0.9, 2),
        lambda tu, m: tu.update_infinity_moment({"a": None, "b": m}, {"a": None, "b": m}, 0.9, 0.1),
        lambda tu, m: tu.add_scale({"a": None, "b": m}, 2.0, {"a": m, "b": m}),
    ],
    ids=["add_scale", "moment", "inf_moment", "per_elem", "moment_part", "moment_subtree", "inf_part", "axpy_part"],
)
def test_none_updates_give_none(call):
    m = jnp.array([1.0, 2.0, 3.0])
    assert_same(call(ours, m), call(theirs, m))


def test_norm_rejects_unknown_ord_like_optax():
    tree = {"a": jnp.ones(2)}
    for ord_ in (3, "fro", -1, "2"):
        with pytest.raises(ValueError):
            theirs.norm(tree, ord_)
        with pytest.raises(ValueError, match="Unsupported ord"):
            ours.norm(tree, ord_)


def test_norm_is_optax_plain_formula_not_overflow_safe():
    """At 1e30 float32 the plain sum of squares overflows: ours (like Optax) gives inf, global_norm does not."""
    huge = {"a": jnp.array([1e30, -1e30], jnp.float32), "b": jnp.array([1e30], jnp.float32)}
    assert_same(ours.norm(huge), theirs.norm(huge))
    assert np.isinf(np.asarray(ours.norm(huge)))
    np.testing.assert_allclose(np.asarray(optcompose.global_norm(huge)), np.sqrt(3.0) * 1e30, rtol=1e-6)
    # The 1- and inf-norms do not square, so they stay finite at 1e30.
    assert ours.norm(huge, 1) == pytest.approx(3e30, rel=1e-6)
    assert ours.norm(huge, "inf") == pytest.approx(1e30, rel=1e-6)
    tiny = {"a": jnp.array([1e-30, 1e-30], jnp.float32)}
    assert_same(ours.norm(tiny), theirs.norm(tiny))
    assert float(ours.norm(tiny)) == 0.0  # underflows, as in Optax
    assert float(optcompose.global_norm(tiny)) == pytest.approx(np.sqrt(2.0) * 1e-30, rel=1e-5)


def test_size_counts_elements():
    tree = {"a": jnp.ones((2, 3)), "b": [jnp.zeros(0), 1.0, None], "c": np.ones(4)}
    assert ours.size(tree) == theirs.size(tree) == 11
    assert isinstance(ours.size(tree), int)
    assert ours.size({"s": jax.ShapeDtypeStruct((5, 2), jnp.float32)}) == 10


def test_vdot_conjugates_first_and_checks_shapes():
    a, b = jnp.array([1 + 2j, 3 - 1j], jnp.complex64), jnp.array([2 - 1j, 1j], jnp.complex64)
    np.testing.assert_allclose(np.asarray(ours.vdot(a, b)), np.vdot(np.asarray(a), np.asarray(b)), rtol=1e-6)
    with pytest.raises(ValueError, match="one shape"):
        ours.vdot({"a": jnp.ones(2)}, {"a": jnp.ones(3)})
    # Known difference: on JAX >= 0.10 Optax 0.2.8 takes its jnp.vdot branch (a string comparison
    # of versions), which ravels, so it accepts equal sizes in different shapes; ours refuses them.
    with pytest.raises(ValueError, match="one shape"):
        ours.vdot(jnp.ones((2, 3)), jnp.ones((3, 2)))
    assert float(theirs.vdot(jnp.ones((2, 3)), jnp.ones((3, 2)))) == 6.0
    with pytest.raises(TypeError):
        theirs.vdot({"a": jnp.ones(2)}, {"a": jnp.ones(3)})
    # A larger leaf: the full contraction gives Optax's numbers.
    rng = np.random.default_rng(3)
    big_x = {"m": jnp.asarray(rng.normal(size=(16, 9)), jnp.float32), "c": jnp.asarray(rng.normal(size=7) * 1j)}
    big_y = {"m": jnp.asarray(rng.normal(size=(16, 9)), jnp.float32), "c": jnp.asarray(rng.normal(size=7) + 0j)}
    assert_same(ours.vdot(big_x, big_y), theirs.vdot(big_x, big_y))


def test_sum_associative_matches_plain_sum():
    tree = [jnp.arange(4.0) + i for i in range(7)]
    np.testing.assert_allclose(ours.sum(tree, associative_reduction=True), ours.sum(tree))
    assert_same(ours.sum(tree, associative_reduction=True), theirs.sum(tree, associative_reduction=True))


def test_shape_dtype_struct_leaves_for_constructors():
    spec = {"w": jax.ShapeDtypeStruct((2, 3), jnp.bfloat16), "b": None}
    got = ours.zeros_like(spec)
    assert got["w"].shape == (2, 3) and got["w"].dtype == jnp.bfloat16 and got["b"] is None
    assert_same(ours.full_like(spec, 2.0, jnp.float32), theirs.full_like(spec, 2.0, jnp.float32))


def test_bias_correction_bfloat16_stays_finite():
    m = jnp.logspace(-10, 10, num=21, dtype=jnp.bfloat16)
    for decay in (0.9, 0.99, 0.999, 0.9995):
        for count in (1, 10, 100, 1000):
            got = ours.bias_correction(m, decay, count)
            assert got.dtype == jnp.bfloat16
            assert np.isfinite(np.asarray(got, np.float32)).all(), (decay, count)
            assert_same(got, theirs.bias_correction(m, decay, count))


def test_adam_moments_match_numpy_over_25_steps():
    """update_moment (orders 1, 2) and bias_correction against a float64 NumPy EMA, and Optax exactly."""
    rng = np.random.default_rng(0)
    b1, b2 = 0.9, 0.999
    shapes = {"w": (3,), "b": (3,)}
    mu = {k: jnp.zeros(s) for k, s in shapes.items()}
    nu = {k: jnp.zeros(s) for k, s in shapes.items()}
    mu_ref = {k: np.zeros(s) for k, s in shapes.items()}
    nu_ref = {k: np.zeros(s) for k, s in shapes.items()}
    omu, onu = mu, nu
    step = jax.jit(
        lambda g, m, v, t: (
            ours.update_moment(g, m, b1, 1),
            ours.update_moment(g, v, b2, 2),
            ours.bias_correction(ours.update_moment(g, m, b1, 1), b1, t),
            ours.bias_correction(ours.update_moment(g, v, b2, 2), b2, t),
        )
    )
    for t in range(1, 26):
        grads_np = {k: rng.normal(size=s) * 10.0 ** rng.integers(-3, 3) for k, s in shapes.items()}
        grads = jax.tree.map(lambda g: jnp.asarray(g, jnp.float32), grads_np)
        new_mu, new_nu, mu_hat, nu_hat = step(grads, mu, nu, t)
        eager_mu = ours.update_moment(grads, mu, b1, 1)
        assert_same(eager_mu, theirs.update_moment(grads, omu, b1, 1), f"mu step {t}")
        assert_same(ours.update_moment(grads, nu, b2, 2), theirs.update_moment(grads, onu, b2, 2), f"nu step {t}")
        assert_same(ours.bias_correction(eager_mu, b1, t), theirs.bias_correction(eager_mu, b1, t), f"hat {t}")
        g32 = jax.tree.map(np.asarray, grads)
        mu_ref = {k: (1 - b1) * g32[k].astype(np.float64) + b1 * mu_ref[k] for k in shapes}
        nu_ref = {k: (1 - b2) * g32[k].astype(np.float64) ** 2 + b2 * nu_ref[k] for k in shapes}
        for k in shapes:
            scale = np.abs(mu_ref[k]).max() + 1e-30
            np.testing.assert_allclose(new_mu[k], mu_ref[k], rtol=1e-5, atol=1e-6 * scale)
            np.testing.assert_allclose(new_nu[k], nu_ref[k], rtol=1e-5, atol=1e-6 * nu_ref[k].max())
            np.testing.assert_allclose(mu_hat[k], mu_ref[k] / (1 - b1**t), rtol=1e-4, atol=1e-5 * scale / (1 - b1**t))
            np.testing.assert_allclose(nu_hat[k], nu_ref[k] / (1 - b2**t), rtol=1e-4)
        omu, onu = new_mu, new_nu
        mu, nu = new_mu, new_nu


def test_per_elem_norm_and_infinity_moment_match_numpy_over_20_steps():
    rng = np.random.default_rng(1)
    m2 = m3 = jnp.zeros(3)
    u = jnp.zeros(3)
    m2_ref, m3_ref, u_ref = np.zeros(3), np.zeros(3), np.zeros(3)
    for _ in range(20):
        g_np = (rng.normal(size=3) + 1j * rng.normal(size=3)).astype(np.complex64)
        g = jnp.asarray(g_np)
        m2 = ours.update_moment_per_elem_norm(g, m2, 0.9, 2)
        m3 = ours.update_moment_per_elem_norm(g, m3, 0.8, 3)
        assert m2.dtype == jnp.float32
        m2_ref = 0.1 * np.abs(g_np.astype(np.complex128)) ** 2 + 0.9 * m2_ref
        m3_ref = 0.2 * np.abs(g_np.astype(np.complex128)) ** 3 + 0.8 * m3_ref
        real = jnp.real(g)
        u = ours.update_infinity_moment(real, u, 0.95, 1e-4)
        u_ref = np.maximum(np.abs(np.real(g_np).astype(np.float64)) + 1e-4, 0.95 * u_ref)
        np.testing.assert_allclose(m2, m2_ref, rtol=1e-5)
        np.testing.assert_allclose(m3, m3_ref, rtol=1e-5)
        np.testing.assert_allclose(u, u_ref, rtol=1e-6)


def test_allclose_python_values():
    assert ours.allclose(1, 1)
    assert ours.allclose(1, 1 + 1e-7)
    assert not ours.allclose(1, 2)
    assert ours.allclose({}, {}) is True
    nan = {"a": jnp.array([jnp.nan, 1.0])}
    assert not ours.allclose(nan, nan)
    assert ours.allclose(nan, nan, equal_nan=True)
