"""The front-end against NumPy: every function and operator is built symbolically,
evaluated with ``sd.evaluate`` and compared with the same call on NumPy arrays;
plus dtype promotion (NEP 50), hash-consing and static shapes."""

import operator

import numpy as np
import pytest

import symdiff as sd

RNG = np.random.default_rng(0)
A_VALUE = RNG.normal(size=(3, 4, 5))
M_VALUE = RNG.normal(size=(3, 4))
V_VALUE = RNG.normal(size=4)


def _check(build, *values, exact=True):
    """build(*inputs) on symbols and on the NumPy values gives the same array, dtype and shape."""
    symbols = [sd.tensor(f"in{i}", np.shape(v), dtype=np.asarray(v).dtype.name) for i, v in enumerate(values)]
    expr = build(*symbols)
    got = sd.evaluate(expr, dict(zip(symbols, values)))
    want = np.asarray(build(*values))
    assert expr.type.shape == want.shape, (expr.type, want.shape)
    assert expr.dtype == want.dtype.name, (expr.dtype, want.dtype)
    assert np.shape(got) == want.shape and np.asarray(got).dtype == want.dtype
    if exact:
        np.testing.assert_array_equal(got, want)
    else:
        np.testing.assert_allclose(got, want, rtol=1e-13, atol=1e-15)


# ----------------------------------------------------------- indexing


INDICES = [
    0, -1, 2, (1, 2), (-1, -2, -3), (0, slice(None), 3),
    slice(1, None), slice(None, -1), slice(None, None, -1), slice(None, None, 2), slice(2, 0, -1),
    slice(-2, None, -2), slice(5, 10), slice(-10, 2), (slice(None), slice(1, 3)), (slice(None), slice(None, None, -2)),
    (Ellipsis, 0), (Ellipsis, slice(1, 4, 2)), (0, Ellipsis), (1, Ellipsis, -1), Ellipsis,
    None, (None, 0), (slice(None), None, 1), (Ellipsis, None), (None, Ellipsis, None),
    (0, None, slice(None, None, -1), 2), (slice(None), 1, slice(4, 0, -3)), (slice(3, 1), 0),
]


@pytest.mark.parametrize("index", INDICES, ids=repr)
def test_indexing_matches_numpy(index):
    _check(lambda a: a[index], A_VALUE)


def test_indexing_with_numpy_integers_and_on_vectors():
    _check(lambda v: v[np.int64(2)], V_VALUE)
    _check(lambda v: v[np.int32(-1):], V_VALUE)
    _check(lambda v: v[::-1][1:3], V_VALUE)
    _check(lambda v: v[None, :, None], V_VALUE)


def test_indexing_gradient_scatters_into_place():
    x = sd.matrix("x", (3, 4))
    cost = sd.sum(x[1:, ::-2] * 3) + x[0, -1] * 5
    want = np.zeros((3, 4))
    want[1:, ::-2] = 3
    want[0, -1] += 5
    np.testing.assert_array_equal(sd.evaluate(sd.grad(cost, x), {x: M_VALUE}), want)


def test_iteration_and_len_over_a_static_first_axis():
    x = sd.matrix("x", (3, 4))
    assert len(x) == 3
    rows = list(x)
    assert len(rows) == 3 and all(r.type.shape == (4,) for r in rows)
    np.testing.assert_array_equal(sd.evaluate(rows[2], {x: M_VALUE}), M_VALUE[2])
    with pytest.raises(TypeError, match="not known statically"):
        len(sd.vector("free"))


# --------------------------------------------------------- shapes and .T


def test_T_and_shape():
    W = sd.matrix("W", (3, 4))
    assert W.T.type.shape == (4, 3)
    assert W.shape == (3, 4) and all(type(d) is int for d in W.shape)
    _check(lambda w: w.T, M_VALUE)
    _check(lambda a: a.T, A_VALUE)
    _check(lambda v: v.T, V_VALUE)  # a 1-d transpose is the identity


def test_shape_with_none_gives_dim_nodes():
    X = sd.matrix("X", (None, 4))
    rows, cols = X.shape
    assert cols == 4
    assert isinstance(rows, sd.Expr) and rows.dtype == "int64" and rows.type.shape == ()
    assert X.shape[0] is rows  # hash-consed: asking twice gives the same node
    assert sd.evaluate(rows, {X: np.zeros((7, 4))}) == 7
    # A dim node is usable in arithmetic, e.g. a mean by hand.
    manual_mean = sd.sum(X) / (rows * cols)
    np.testing.assert_allclose(sd.evaluate(manual_mean, {X: M_VALUE}), M_VALUE.mean())


@pytest.mark.parametrize(
    "build",
    [
        lambda m, a: m.reshape(a, (5, 12)),
        lambda m, a: m.reshape(a, (-1,)),
        lambda m, a: m.reshape(a, (2, -1, 5)),
        lambda m, a: a.reshape(12, 5),
        lambda m, a: a.reshape((3, 20)),
        lambda m, a: m.transpose(a),
        lambda m, a: m.transpose(a, (1, 0, 2)),
        lambda m, a: m.transpose(a, (2, 0, 1)),
        lambda m, a: a.transpose(1, 2, 0),
        lambda m, a: a.transpose(),
        lambda m, a: m.transpose(a, (-1, 0, 1)),
        lambda m, a: m.expand_dims(a, 0),
        lambda m, a: m.expand_dims(a, -1),
        lambda m, a: m.expand_dims(a, (0, 2)),
        lambda m, a: m.squeeze(m.expand_dims(a, (0, 4))),
        lambda m, a: m.squeeze(m.expand_dims(a, (0, 4)), axis=0),
        lambda m, a: m.squeeze(m.expand_dims(a, (0, 4)), axis=-1),
        lambda m, a: m.broadcast_to(a[:, :, :1], (2, 3, 4, 5)),
        lambda m, a: m.concatenate([a, a[:1] * 2], axis=0),
        lambda m, a: m.concatenate([a, a[:, :2]], axis=1),
        lambda m, a: m.concatenate([a, a[..., ::2]], axis=-1),
        lambda m, a: m.stack([a, a + 1]),
        lambda m, a: m.stack([a, a + 1, a * 2], axis=2),
        lambda m, a: m.stack([a[0], a[1]], axis=-1),
    ],
)
def test_structure_functions_match_numpy(build):
    symbol = sd.tensor("a", A_VALUE.shape)
    expr = build(sd, symbol)
    want = build(np, A_VALUE)
    assert expr.type.shape == want.shape
    np.testing.assert_array_equal(sd.evaluate(expr, {symbol: A_VALUE}), want)


# ------------------------------------------------------------- reductions

AXES = [None, 0, 1, -1, (0, 2), (2, 0), (0, 1, 2), ()]


@pytest.mark.parametrize("name", ["sum", "mean", "max", "min", "prod"])
@pytest.mark.parametrize("axis", AXES, ids=repr)
@pytest.mark.parametrize("keepdims", [False, True])
def test_reductions_match_numpy(name, axis, keepdims):
    symbol = sd.tensor("a", A_VALUE.shape)
    got_fn = sd.evaluate(getattr(sd, name)(symbol, axis=axis, keepdims=keepdims), {symbol: A_VALUE})
    got_method = sd.evaluate(getattr(symbol, name)(axis=axis, keepdims=keepdims), {symbol: A_VALUE})
    want = getattr(np, name)(A_VALUE, axis=axis, keepdims=keepdims)
    assert np.shape(got_fn) == want.shape
    np.testing.assert_allclose(got_fn, want, rtol=1e-13)
    np.testing.assert_allclose(got_method, want, rtol=1e-13)


@pytest.mark.parametrize("name", ["sum", "mean", "max", "min", "prod"])
def test_reductions_of_int_and_bool_follow_numpy_dtypes(name):
    ints = np.arange(12, dtype=np.int64).reshape(3, 4)
    _check(lambda a: getattr(sd if isinstance(a, sd.Expr) else np, name)(a, axis=1), ints, exact=False)
    if name in ("sum", "max", "min"):
        _check(lambda a: getattr(sd if isinstance(a, sd.Expr) else np, name)(a, axis=0), ints > 4)


def test_mean_over_a_none_dimension():
    X = sd.matrix("X", (None, 4))
    for n in (1, 3):
        value = M_VALUE[:n]
        np.testing.assert_allclose(sd.evaluate(sd.mean(X, axis=0), {X: value}), value.mean(axis=0))
        np.testing.assert_allclose(sd.evaluate(X.mean(), {X: value}), value.mean())


# ------------------------------------------------------------ elementwise


def _either(x, sd_fn, np_fn):
    return sd_fn if isinstance(x, sd.Expr) else np_fn


BINARY_CASES = [
    (operator.add, V_VALUE, M_VALUE),
    (operator.sub, M_VALUE, V_VALUE),
    (operator.mul, M_VALUE[:, :1], V_VALUE),
    (operator.truediv, V_VALUE, M_VALUE + 3),
    (operator.pow, np.abs(M_VALUE) + 0.1, V_VALUE),
    (operator.neg, M_VALUE, None),
    (operator.matmul, M_VALUE, V_VALUE),
]


@pytest.mark.parametrize("op, x, y", BINARY_CASES, ids=[case[0].__name__ for case in BINARY_CASES])
def test_operators_match_numpy(op, x, y):
    if y is None:
        _check(op, x, exact=False)
    else:
        _check(op, x, y, exact=False)


def test_operators_with_python_numbers_and_arrays_on_either_side():
    _check(lambda m: 2 - m, M_VALUE)
    _check(lambda m: m - 2, M_VALUE)
    _check(lambda m: 1.5 / (m + 3), M_VALUE, exact=False)
    _check(lambda m: 2.0 ** m, M_VALUE, exact=False)
    _check(lambda m: m ** 2, M_VALUE)
    _check(lambda m: V_VALUE * m, M_VALUE)  # an ndarray on the left defers to Expr
    _check(lambda m: m + V_VALUE, M_VALUE)
    _check(lambda m: M_VALUE.T @ m, M_VALUE, exact=False)


def test_where_matches_numpy():
    _check(lambda m, v: _either(m, sd.where, np.where)(m > v, m, v * 2), M_VALUE, V_VALUE)
    _check(lambda m: _either(m, sd.where, np.where)(m < 0, 0.0, m), M_VALUE)
    _check(lambda m, v: _either(m, sd.where, np.where)(v > 0, m, -1.0), M_VALUE, V_VALUE)


@pytest.mark.parametrize("sd_fn, np_fn", [(sd.maximum, np.maximum), (sd.minimum, np.minimum)], ids=["max", "min"])
def test_maximum_and_minimum_match_numpy(sd_fn, np_fn):
    _check(lambda m, v: _either(m, sd_fn, np_fn)(m, v), M_VALUE, V_VALUE)
    _check(lambda m: _either(m, sd_fn, np_fn)(m, 0.25), M_VALUE)
    _check(lambda m: _either(m, sd_fn, np_fn)(0.25, m), M_VALUE)


def test_clip_matches_numpy():
    _check(lambda m: _either(m, sd.clip, np.clip)(m, -0.5, 0.5), M_VALUE)
    _check(lambda m: _either(m, sd.clip, np.clip)(m, None, 0.1), M_VALUE)
    _check(lambda m: _either(m, sd.clip, np.clip)(m, -0.1, None), M_VALUE)
    _check(lambda m, v: _either(m, sd.clip, np.clip)(m, v - 0.5, v + 0.5), M_VALUE, V_VALUE)


@pytest.mark.parametrize(
    "name", ["exp", "expm1", "log", "log1p", "sqrt", "square", "abs", "sign", "sin", "cos", "tan", "tanh"]
)
def test_unary_functions_match_numpy(name):
    positive = np.abs(M_VALUE) + 0.1
    _check(lambda m: getattr(sd if isinstance(m, sd.Expr) else np, name)(m), positive, exact=False)


def test_composites_match_reference_formulas():
    # Plain NumPy formulas: M_VALUE is small, so they need no stabilising shift.
    def numpy_softmax(m, axis):
        e = np.exp(m)
        return e / e.sum(axis=axis, keepdims=True)

    _check(lambda m: sd.sigmoid(m) if isinstance(m, sd.Expr) else 1 / (1 + np.exp(-m)), M_VALUE, exact=False)
    _check(lambda m: sd.softplus(m) if isinstance(m, sd.Expr) else np.log1p(np.exp(m)), M_VALUE, exact=False)
    _check(lambda m: sd.relu(m) if isinstance(m, sd.Expr) else np.maximum(m, 0), M_VALUE)
    for axis in (0, 1, -1):
        _check(lambda m: sd.softmax(m, axis) if isinstance(m, sd.Expr) else numpy_softmax(m, axis), M_VALUE,
               exact=False)
        _check(lambda m: sd.log_softmax(m, axis) if isinstance(m, sd.Expr) else np.log(numpy_softmax(m, axis)),
               M_VALUE, exact=False)
    for axis, keepdims in [(None, False), (1, False), (0, True), ((0, 1), True)]:
        _check(lambda m: sd.logsumexp(m, axis, keepdims) if isinstance(m, sd.Expr)
               else np.log(np.sum(np.exp(m), axis=axis, keepdims=keepdims)), M_VALUE, exact=False)


# ------------------------------------------------------------ matmul/dot


MATMUL_SHAPES = [((3, 4), (4, 2)), ((4,), (4, 2)), ((3, 4), (4,)), ((4,), (4,)), ((2, 3, 4), (4, 5)),
                 ((2, 3, 4), (2, 4, 5)), ((2, 1, 3, 4), (3, 4, 2)), ((4,), (2, 4, 3)), ((2, 3, 4), (4,))]


@pytest.mark.parametrize("shape_a, shape_b", MATMUL_SHAPES, ids=str)
def test_matmul_matches_numpy(shape_a, shape_b):
    a, b = RNG.normal(size=shape_a), RNG.normal(size=shape_b)
    _check(lambda x, y: x @ y, a, b, exact=False)
    _check(lambda x, y: _either(x, sd.matmul, np.matmul)(x, y), a, b, exact=False)


@pytest.mark.parametrize("shape_a, shape_b", [((3, 4), (4, 2)), ((4,), (4, 2)), ((3, 4), (4,)), ((4,), (4,)),
                                              ((), (3, 4)), ((4,), ())], ids=str)
def test_dot_matches_numpy(shape_a, shape_b):
    a, b = RNG.normal(size=shape_a), RNG.normal(size=shape_b)
    _check(lambda x, y: _either(x, sd.dot, np.dot)(x, y), a, b, exact=False)
    if shape_a and shape_b:
        _check(lambda x, y: x.dot(y), a, b, exact=False)


# ------------------------------------------------------------ comparisons


@pytest.mark.parametrize("op", [operator.lt, operator.le, operator.gt, operator.ge])
def test_comparisons_give_bool_nodes(op):
    x = sd.vector("x", 4)
    node = op(x, 0.0)
    assert node.dtype == "bool" and node.type.shape == (4,)
    values = np.array([-1.0, 0.0, 0.5, 2.0])
    np.testing.assert_array_equal(sd.evaluate(node, {x: values}), op(values, 0.0))


def test_equal_not_equal_and_logic_match_numpy():
    a = np.array([1.0, 2.0, 2.0, -1.0])
    b = np.array([1.0, 0.0, 2.0, 3.0])
    _check(lambda x, y: _either(x, sd.equal, np.equal)(x, y), a, b)
    _check(lambda x, y: _either(x, sd.not_equal, np.not_equal)(x, y), a, b)
    _check(lambda x, y: (x > 0) & (y > 0), a, b)
    _check(lambda x, y: (x > 0) | (y > 0), a, b)
    _check(lambda x: ~(x > 1), a)
    _check(lambda x, y: _either(x, sd.logical_and, np.logical_and)(x, y), a, b)
    _check(lambda x, y: _either(x, sd.logical_or, np.logical_or)(x - 1, y), a, b)
    _check(lambda x: _either(x, sd.logical_not, np.logical_not)(x - 1), a)


# -------------------------------------------------------- dtype promotion


PROMOTION_CASES = [
    # (left dtype or Python number, right dtype or Python number)
    ("float32", 2), ("float32", 2.5), (2, "float32"), ("float32", True),
    ("int64", 2), ("int64", 2.5), ("int64", True), ("bool", 2), ("bool", 2.5), ("bool", True),
    ("int64", "float32"), ("float32", "int64"), ("float32", "float64"), ("int64", "float64"),
    ("bool", "float32"), ("bool", "int64"), ("int64", "int64"), ("float64", 1),
    ("float32", np.float64(2.0)), ("float32", np.float32(2.0)), ("int64", np.float32(2.0)),
]


def _operand(spec, symbol_name):
    if isinstance(spec, str):
        value = np.array([1, 2, 3], dtype=spec)
        return sd.vector(symbol_name, 3, dtype=spec), value
    return spec, spec


@pytest.mark.parametrize("left, right", PROMOTION_CASES, ids=str)
@pytest.mark.parametrize("op", [operator.add, operator.mul, operator.truediv, operator.sub], ids=lambda o: o.__name__)
def test_dtype_promotion_follows_numpy_2(left, right, op):
    (x, xv), (y, yv) = _operand(left, "left"), _operand(right, "right")
    try:
        want = op(xv, yv)
    except TypeError:  # NumPy refuses bool - bool; so may we
        with pytest.raises(TypeError):
            op(x, y)
        return
    expr = op(x, y)
    feed = {s: v for s, v in ((x, xv), (y, yv)) if isinstance(s, sd.Expr)}
    got = sd.evaluate(expr, feed)
    assert expr.dtype == np.asarray(want).dtype.name, (left, right, expr.type)
    np.testing.assert_array_equal(got, want)


def test_float32_times_python_scalar_stays_float32():
    x = sd.vector("x", 3, dtype="float32")
    for expr in (x * 2, 2 * x, x * 2.5, x / 3, x**2, x - 1e10, sd.maximum(x, 0.0), sd.where(x > 0, x, 0.5)):
        assert expr.dtype == "float32", expr


def test_int64_plus_float32_is_float64():
    i, f = sd.vector("i", 3, dtype="int64"), sd.vector("f", 3, dtype="float32")
    assert (i + f).dtype == "float64"
    assert (f * i).dtype == "float64"
    assert sd.evaluate(i + f, {i: np.arange(3), f: np.ones(3, np.float32)}).dtype == np.float64


def test_a_run_time_size_promotes_like_a_python_int():
    # NumPy's x.shape[0] is a Python int (weak), so a None dim's node must be too:
    # the dtype of a result must not depend on whether a size is known statically.
    X = sd.matrix("X", (None, 3), dtype="float32")
    static = sd.matrix("S", (4, 3), dtype="float32")
    assert (sd.sum(X) / X.shape[0]).dtype == (sd.sum(static) / static.shape[0]).dtype == "float32"
    assert (X * X.shape[0]).dtype == "float32"
    assert (X.shape[0] * 0.5).dtype == "float64" and (X.shape[0] * X.shape[1]).dtype == "int64"
    value = sd.evaluate(sd.sum(X) / X.shape[0], {X: np.ones((4, 3), np.float32)})
    assert value.dtype == np.float32 and value == 3.0


# ------------------------------------------------------------ hash-consing


def test_same_expression_built_twice_is_the_same_node():
    a, b = sd.scalars("a b")
    first = sd.sin(a * b + 1) / sd.exp(b)
    second = sd.sin(a * b + 1) / sd.exp(b)
    assert first is second
    assert sd.scalar("a") is a  # a symbol is its name and type
    assert sd.scalar("a", dtype="float32") is not a
    assert (a * b) is not (b * a)  # structural, not algebraic
    x = sd.matrix("x", (3, 4))
    assert x[1:, ::2] is x[1:, ::2]
    assert sd.sum(x, axis=0) is sd.sum(x, axis=(0,)) is sd.sum(x, axis=-2)


def test_gradients_reuse_forward_nodes_instead_of_copying_them():
    a = sd.scalar("a")
    e = sd.exp(a)
    g = sd.grad(e, a)
    assert e in sd.toposort(g)  # d exp(a) / da is built on the node exp(a) itself
    assert sd.grad(e, a) is g


def test_constants_are_equal_by_value_dtype_and_shape():
    assert sd.constant(2.0) is sd.constant(2.0)
    assert sd.constant(np.array([1.0, 2.0])) is sd.constant([1.0, 2.0])
    assert sd.constant(2.0) is not sd.constant(2.0, dtype="float32")
    assert sd.constant(2) is not sd.constant(2.0)
    assert sd.constant([2.0]) is not sd.constant(2.0)
    assert sd.constant(-0.0) is not sd.constant(0.0)
    assert np.signbit(sd.evaluate(sd.constant(-0.0), {}))
    nan = sd.constant(np.nan)
    assert sd.constant(np.nan) is nan  # equal by bytes, although nan != nan
    a = sd.scalar("a")
    assert (a + 1) is (a + 1.0)  # a weak Python int takes a's dtype, so it is the same constant


def test_truth_value_of_an_expression_raises():
    a, b = sd.scalars("a b")
    with pytest.raises(TypeError, match="no truth value"):
        bool(a)
    with pytest.raises(TypeError, match="sd.where"):
        if a > b:
            pass
    with pytest.raises(TypeError):
        sd.scalar("c") and a
    assert (a == a) is True and (a == b) is False  # == on Expr is identity, never a node
