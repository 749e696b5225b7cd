"""Behavioural tests of the core: gradients against SymPy and a hand-written
backward pass, Hessian-vector products, the grad table's bookkeeping (wrt
intermediates, fan-out, unrelated wrt), higher orders, float32, numerical
stability at |x| = 1000, run-time (None) dimensions and the evaluator's promise
never to mutate or alias user arrays.

The per-op finite-difference tests generated from the registry live in
tests/test_ops.py; these tests check whole programs.
"""

import numpy as np
import pytest
import sympy

import symdiff as sd

# ------------------------------------------------ NumPy reference formulas
# Stable at |x| = 1000 (the textbook max-shift), written here so the tests need
# only NumPy and SymPy.


def expit(t):
    return np.exp(-np.logaddexp(0, -t))


def logsumexp(t, axis=None, keepdims=False):
    shift = np.max(t, axis=axis, keepdims=True)
    out = np.log(np.sum(np.exp(t - shift), axis=axis, keepdims=True)) + shift
    return out if keepdims else np.squeeze(out, axis=axis)


def log_softmax(t, axis=-1):
    return t - logsumexp(t, axis=axis, keepdims=True)


def softmax(t, axis=-1):
    return np.exp(log_softmax(t, axis))


# ------------------------------------------------------------------ the seed


def test_seed_expression_value_and_partials():
    a, b = sd.scalars("a b")
    e = (a + b) * (b + 1)
    de_da, de_db = sd.grad(e, [a, b])
    values = sd.evaluate([e, de_da, de_db], {a: 2.0, b: 1.0})
    assert values == [6.0, 2.0, 5.0]
    assert all(isinstance(v, np.float64) for v in values)


def test_grad_of_one_expr_gives_one_expr_and_list_gives_list():
    a, b = sd.scalars("a b")
    e = a * b
    assert isinstance(sd.grad(e, a), sd.Expr)
    assert isinstance(sd.grad(e, [a]), list) and len(sd.grad(e, [a])) == 1
    assert sd.evaluate(sd.grad(e, (a, b)), {a: 3.0, b: 4.0}) == [4.0, 3.0]


# ------------------------------------------------------- against sympy.diff


class _SympyNamespace:
    """The functions of the table below, spelled in SymPy."""

    exp, log, sin, cos, tan, tanh, sqrt = sympy.exp, sympy.log, sympy.sin, sympy.cos, sympy.tan, sympy.tanh, sympy.sqrt
    log1p = staticmethod(lambda x: sympy.log(1 + x))
    expm1 = staticmethod(lambda x: sympy.exp(x) - 1)
    abs = sympy.Abs
    sigmoid = staticmethod(lambda x: 1 / (1 + sympy.exp(-x)))
    softplus = staticmethod(lambda x: sympy.log(1 + sympy.exp(x)))
    square = staticmethod(lambda x: x**2)


# Each entry: a function of (namespace, a, b) written once and built both ways.
# The points below keep a in (0.4, 1.3) and b in (0.5, 1.7): inside every domain
# (log, sqrt, tan, b ** a) and away from abs's kink.
SCALAR_EXPRESSIONS = {
    "exp_of_product": lambda m, a, b: m.exp(a * b),
    "log_of_sum": lambda m, a, b: m.log(a + b * b),
    "sin_cos": lambda m, a, b: m.sin(a) * m.cos(b),
    "tan_of_ratio": lambda m, a, b: m.tan(a / (b + 1)),
    "tanh_composed": lambda m, a, b: m.tanh(a * m.exp(-b)),
    "sqrt_of_quadratic": lambda m, a, b: m.sqrt(a * a + b),
    "constant_power": lambda m, a, b: a**3 * b ** (-0.5),
    "variable_power": lambda m, a, b: b**a,
    "sigmoid_of_product": lambda m, a, b: m.sigmoid(a * b - 1),
    "softplus_difference": lambda m, a, b: m.softplus(a - 2 * b),
    "abs_off_the_kink": lambda m, a, b: m.abs(a - 2) * b,
    "quotient": lambda m, a, b: (a - b) / (a * a + 1),
    "log1p_expm1": lambda m, a, b: m.log1p(a * b) + m.expm1(b - a),
    "nested": lambda m, a, b: m.sin(m.exp(m.cos(a * b))) / m.sqrt(b),
    "square_and_reuse": lambda m, a, b: m.square(a + b) * (a + b) - a / b,
    "exp_tower": lambda m, a, b: m.exp(m.exp(a) * b) * m.log(b + a),
}
POINTS = [(0.4, 0.5), (0.7, 1.3), (1.3, 1.7)]


@pytest.mark.parametrize("name", sorted(SCALAR_EXPRESSIONS))
def test_scalar_gradient_and_hessian_match_sympy(name):
    build = SCALAR_EXPRESSIONS[name]
    a, b = sd.scalars("a b")
    f = build(sd, a, b)
    first = sd.grad(f, [a, b])
    second = [sd.grad(g, [a, b]) for g in first]

    sa, sb = sympy.symbols("a b", real=True)
    sf = build(_SympyNamespace, sa, sb)
    want_first = [sympy.diff(sf, v) for v in (sa, sb)]
    want_second = [[sympy.diff(sf, u, v) for v in (sa, sb)] for u in (sa, sb)]

    outputs = [f] + first + second[0] + second[1]
    wants = [sf] + want_first + want_second[0] + want_second[1]
    for pa, pb in POINTS:
        got = sd.evaluate(outputs, {a: pa, b: pb})
        want = [float(w.subs({sa: pa, sb: pb}).evalf(30)) for w in wants]
        np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12, err_msg=f"{name} at a={pa}, b={pb}")


# ---------------------------------------------------------------------- MLP


def _mlp_reference(X, Y, W1, b1, W2, b2):
    """Loss and hand-derived gradients of mean cross-entropy(softmax(tanh(X W1 + b1) W2 + b2), Y)."""
    n = X.shape[0]
    hidden = np.tanh(X @ W1 + b1)
    logits = hidden @ W2 + b2
    probs = softmax(logits, axis=1)
    loss = -np.sum(Y * log_softmax(logits, axis=1)) / n
    d_logits = (probs - Y) / n  # rows of Y sum to 1
    d_W2 = hidden.T @ d_logits
    d_b2 = d_logits.sum(axis=0)
    d_pre = (d_logits @ W2.T) * (1 - hidden**2)
    d_W1 = X.T @ d_pre
    d_b1 = d_pre.sum(axis=0)
    return loss, [d_W1, d_b1, d_W2, d_b2]


def _mlp_graph(n=None, d=5, h=7, k=3):
    X, Y = sd.matrix("X", (n, d)), sd.matrix("Y", (n, k))
    W1, b1 = sd.matrix("W1", (d, h)), sd.vector("b1", h)
    W2, b2 = sd.matrix("W2", (h, k)), sd.vector("b2", k)
    hidden = sd.tanh(X @ W1 + b1)
    logits = hidden @ W2 + b2
    loss = -sd.mean(sd.sum(Y * sd.log_softmax(logits, axis=1), axis=1))
    return loss, (X, Y), (W1, b1, W2, b2)


def _mlp_values(rng, n, d=5, h=7, k=3):
    X = rng.normal(size=(n, d))
    Y = np.eye(k)[rng.integers(k, size=n)]
    params = [rng.normal(size=(d, h)) * 0.5, rng.normal(size=h) * 0.1, rng.normal(size=(h, k)) * 0.5,
              rng.normal(size=k) * 0.1]
    return X, Y, params


@pytest.mark.parametrize("n", [1, 8, 33])
def test_mlp_gradients_match_hand_written_backward_pass(n):
    rng = np.random.default_rng(n)
    loss, (X, Y), params = _mlp_graph()  # batch size None: one graph for every n
    grads = sd.grad(loss, list(params))
    for p, g in zip(params, grads):
        assert g.type == p.type
    Xv, Yv, pv = _mlp_values(rng, n)
    got = sd.evaluate([loss] + grads, {X: Xv, Y: Yv, **dict(zip(params, pv))})
    want_loss, want_grads = _mlp_reference(Xv, Yv, *pv)
    np.testing.assert_allclose(got[0], want_loss, rtol=1e-12)
    for name, g, w in zip(["W1", "b1", "W2", "b2"], got[1:], want_grads):
        assert g.shape == w.shape, name
        np.testing.assert_allclose(g, w, rtol=1e-10, atol=1e-13, err_msg=name)


# ---------------------------------------------------------------------- HVP


@pytest.mark.parametrize("mode", ["rev-rev", "fwd-rev"])
def test_hvp_matches_finite_differences_of_the_gradient(mode):
    rng = np.random.default_rng(0)
    loss, (X, Y), params = _mlp_graph()
    directions = [sd.tensor("v_" + p.name, p.type.shape) for p in params]
    products = sd.hvp(loss, list(params), directions, mode=mode)
    grads = sd.grad(loss, list(params))
    for p, hv in zip(params, products):
        assert hv.type == p.type

    Xv, Yv, pv = _mlp_values(rng, 6)
    vv = [rng.normal(size=p.shape) for p in pv]
    feed = {X: Xv, Y: Yv, **dict(zip(params, pv)), **dict(zip(directions, vv))}
    got = sd.evaluate(products, feed)

    def grads_at(step):  # the gradient at params + step * directions
        return sd.evaluate(grads, {X: Xv, Y: Yv, **{p: x + step * d for p, x, d in zip(params, pv, vv)}})

    eps = 1e-5  # central differences: error O(eps^2) ~ 1e-10, rounding ~ 1e-16 / eps ~ 1e-11
    want = [(plus - minus) / (2 * eps) for plus, minus in zip(grads_at(eps), grads_at(-eps))]
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("mode", ["rev-rev", "fwd-rev"])
def test_hvp_of_rosenbrock_matches_analytic_hessian(mode):
    x, v = sd.vector("x", 6), sd.vector("v", 6)
    f = sd.sum(100 * (x[1:] - x[:-1] ** 2) ** 2 + (1 - x[:-1]) ** 2)
    hv = sd.hvp(f, x, v, mode=mode)
    rng = np.random.default_rng(1)
    xv, vv = rng.normal(size=6), rng.normal(size=6)
    hessian = np.zeros((6, 6))
    for i in range(5):  # the Hessian of 100 (x[i+1] - x[i]^2)^2 + (1 - x[i])^2
        hessian[i, i] += 1200 * xv[i] ** 2 - 400 * xv[i + 1] + 2
        hessian[i, i + 1] += -400 * xv[i]
        hessian[i + 1, i] += -400 * xv[i]
        hessian[i + 1, i + 1] += 200
    np.testing.assert_allclose(sd.evaluate(hv, {x: xv, v: vv}), hessian @ vv, rtol=1e-12, atol=1e-9)


def test_hvp_modes_agree_with_sympy_on_a_scalar_chain():
    # Four layers: the chain converges to pi/2 so fast that deeper ones underflow.
    x, v = sd.scalars("x v")
    sx = sympy.Symbol("x", real=True)
    y, sy = x, sx
    for _ in range(4):
        y = sd.sin(y) * y + sd.cos(y)
        sy = sympy.sin(sy) * sy + sympy.cos(sy)
    rev, fwd = sd.hvp(y, x, v, mode="rev-rev"), sd.hvp(y, x, v, mode="fwd-rev")
    d2 = sd.grad(sd.grad(y, x), x)
    want = float(sympy.diff(sy, sx, 2).subs(sx, 0.3)) * -1.7
    np.testing.assert_allclose(sd.evaluate([rev, fwd, d2 * v], {x: 0.3, v: -1.7}), [want] * 3, rtol=1e-11)


# --------------------------------------------------------- grad bookkeeping


def test_wrt_an_intermediate_node():
    a, b = sd.scalars("a b")
    s = a + b
    t = b + 1
    e = s * t
    de_ds, de_dt, de_da, de_db = sd.grad(e, [s, t, a, b])
    # The intermediate's derivative holds its own value fixed; the leaves' are total.
    assert sd.evaluate([de_ds, de_dt, de_da, de_db], {a: 2.0, b: 1.0}) == [2.0, 3.0, 2.0, 5.0]


def test_wrt_an_intermediate_tensor_node():
    x = sd.vector("x", 4)
    hidden = sd.exp(x)
    cost = sd.sum(sd.sin(hidden))
    g = sd.grad(cost, hidden)
    assert g.type == hidden.type
    xv = np.array([-1.0, 0.0, 0.5, 1.0])
    np.testing.assert_allclose(sd.evaluate(g, {x: xv}), np.cos(np.exp(xv)))


def test_parameter_used_in_many_places_gets_the_sum():
    a = sd.scalar("a")
    e = a * a * a + sd.sin(a) + a + 2 * a - a / 4
    np.testing.assert_allclose(sd.evaluate(sd.grad(e, a), {a: 0.7}), 3 * 0.49 + np.cos(0.7) + 1 + 2 - 0.25)

    W, x = sd.matrix("W", (2, 3)), sd.vector("x", 3)
    cost = sd.sum(W @ x) + sd.sum(W * W) + sd.sum(W.T[0])
    rng = np.random.default_rng(2)
    Wv, xv = rng.normal(size=(2, 3)), rng.normal(size=3)
    want = np.outer(np.ones(2), xv) + 2 * Wv + np.array([[1.0, 0, 0], [1.0, 0, 0]])
    np.testing.assert_allclose(sd.evaluate(sd.grad(cost, W), {W: Wv, x: xv}), want, rtol=1e-13)


def test_wrt_unrelated_to_the_cost_gives_zeros_of_its_shape_and_dtype():
    x = sd.vector("x", 3)
    y32 = sd.matrix("y32", (2, 3), dtype="float32")
    runtime = sd.matrix("runtime", (None, 2))
    gx, gy, gr, ga = sd.grad(sd.sum(x * x), [x, y32, runtime, sd.scalar("alpha")])
    assert gy.type == y32.type and gr.type == runtime.type and ga.type.shape == ()
    values = sd.evaluate([gx, gy, gr, ga], {x: [1.0, 2.0, 3.0], y32: np.ones((2, 3), np.float32),
                                            runtime: np.ones((4, 2)), "alpha": 1.0})
    np.testing.assert_array_equal(values[0], [2.0, 4.0, 6.0])
    assert values[1].dtype == np.float32 and values[1].shape == (2, 3) and not values[1].any()
    assert values[2].shape == (4, 2) and not values[2].any()
    assert values[3] == 0.0


def test_gradient_through_stop_gradient_and_comparisons_is_zero_where_it_should_be():
    x = sd.vector("x", 3)
    cost = sd.sum(sd.stop_gradient(x) * x + sd.where(x > 0, x, -x))
    xv = np.array([-2.0, 0.5, 3.0])
    np.testing.assert_allclose(sd.evaluate(sd.grad(cost, x), {x: xv}), xv + np.sign(xv))


# ------------------------------------------------------------ higher order


@pytest.mark.parametrize(
    "build, derivatives",
    [
        (lambda a: sd.sin(a), [np.cos, lambda t: -np.sin(t), lambda t: -np.cos(t), np.sin]),
        (lambda a: a**5, [lambda t: 5 * t**4, lambda t: 20 * t**3, lambda t: 60 * t**2, lambda t: 120 * t]),
        (lambda a: sd.exp(2 * a), [lambda t: 2 * np.exp(2 * t), lambda t: 4 * np.exp(2 * t),
                                   lambda t: 8 * np.exp(2 * t), lambda t: 16 * np.exp(2 * t)]),
        (lambda a: sd.log(a), [lambda t: 1 / t, lambda t: -1 / t**2, lambda t: 2 / t**3, lambda t: -6 / t**4]),
    ],
    ids=["sin", "pow5", "exp2a", "log"],
)
def test_grad_of_grad_to_fourth_order(build, derivatives):
    a = sd.scalar("a")
    f = build(a)
    outputs = []
    for _ in derivatives:
        f = sd.grad(f, a)
        outputs.append(f)
    for t in (0.3, 1.1, 2.5):
        np.testing.assert_allclose(sd.evaluate(outputs, {a: t}), [d(t) for d in derivatives], rtol=1e-12)


def test_third_and_fourth_order_mixed_partials_match_sympy():
    a, b = sd.scalars("a b")
    f = sd.exp(a * b) * sd.sin(a + b * b)
    sa, sb = sympy.symbols("a b")
    sf = sympy.exp(sa * sb) * sympy.sin(sa + sb * sb)
    f_ab = sd.grad(sd.grad(f, a), b)
    f_abb = sd.grad(f_ab, b)
    f_aabb = sd.grad(f_abb, a)
    got = sd.evaluate([f_ab, f_abb, f_aabb], {a: 0.3, b: 0.8})
    want = [float(sympy.diff(sf, *vs).subs({sa: 0.3, sb: 0.8})) for vs in ((sa, sb), (sa, sb, sb), (sa, sa, sb, sb))]
    np.testing.assert_allclose(got, want, rtol=1e-11)


# ------------------------------------------------------------------ float32


def test_float32_end_to_end():
    x = sd.vector("x", 4, dtype="float32")
    W = sd.matrix("W", (3, 4), dtype="float32")
    hidden = sd.tanh(W @ x * 2 + 0.5)  # Python scalars are weak: the graph stays float32
    cost = sd.mean(sd.softplus(hidden)) + sd.logsumexp(x) / 3 - sd.sum(sd.sqrt(x * x + 1.0))
    gx, gW = sd.grad(cost, [x, W])
    hv = sd.hvp(cost, x, x)
    for node in sd.toposort([cost, gx, gW, hv]):
        if node.type.is_float:
            assert node.dtype == "float32", node
    rng = np.random.default_rng(3)
    xv, Wv = rng.normal(size=4).astype(np.float32), rng.normal(size=(3, 4)).astype(np.float32)
    got = sd.evaluate([cost, gx, gW, hv], {x: xv, W: Wv})
    assert [v.dtype for v in got] == [np.float32] * 4

    # The same program in float64 agrees to float32 precision.
    x64, W64 = sd.vector("x64", 4), sd.matrix("W64", (3, 4))
    hidden64 = sd.tanh(W64 @ x64 * 2 + 0.5)
    cost64 = sd.mean(sd.softplus(hidden64)) + sd.logsumexp(x64) / 3 - sd.sum(sd.sqrt(x64 * x64 + 1.0))
    want = sd.evaluate([cost64, *sd.grad(cost64, [x64, W64]), sd.hvp(cost64, x64, x64)],
                       {x64: xv.astype(np.float64), W64: Wv.astype(np.float64)})
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=2e-5, atol=2e-6)


# --------------------------------------------------- numerical stability


def _first_and_second(f_of_x, xv, mode):
    """Value, gradient and Hessian (by HVPs along the basis) of a scalar f of a vector."""
    n = len(xv)
    x, v = sd.vector("x", n), sd.vector("v", n)
    f = f_of_x(x)
    g, hv = sd.grad(f, x), sd.hvp(f, x, v, mode=mode)
    value, gradient = sd.evaluate([f, g], {x: xv})
    hessian = np.array([sd.evaluate(hv, {x: xv, v: e}) for e in np.eye(n)])
    return value, gradient, hessian


def _assert_finite_close(got, want, **tolerance):
    assert np.all(np.isfinite(got)), got
    np.testing.assert_allclose(got, want, **tolerance)


BIG = np.array([1000.0, -1000.0, 999.0, 0.5])


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_elementwise_sigmoid_and_softplus_are_stable_at_1000(dtype):
    x = sd.vector("x", 4, dtype=dtype)
    xv = BIG.astype(dtype)
    for f, d1, d2 in [
        (sd.softplus, expit, lambda t: expit(t) * expit(-t)),
        (sd.sigmoid, lambda t: expit(t) * expit(-t),
         lambda t: expit(t) * expit(-t) * (1 - 2 * expit(t))),
    ]:
        y = f(x)
        first = sd.grad(sd.sum(y), x)
        second = sd.grad(sd.sum(first), x)  # elementwise: the Hessian's diagonal
        got = sd.evaluate([y, first, second], {x: xv})
        want_value = np.logaddexp(0, BIG) if f is sd.softplus else expit(BIG)
        tol = dict(rtol=1e-12, atol=1e-300) if dtype == "float64" else dict(rtol=1e-6, atol=1e-30)
        for g, w in zip(got, [want_value, d1(BIG), d2(BIG)]):
            _assert_finite_close(g, w, **tol)


def _softmax_hessian_of_logsumexp(t):
    p = softmax(t)
    return np.diag(p) - np.outer(p, p)


@pytest.mark.parametrize("mode", ["rev-rev", "fwd-rev"])
def test_logsumexp_and_its_derivatives_are_stable_at_1000(mode):
    value, gradient, hessian = _first_and_second(sd.logsumexp, BIG, mode)
    _assert_finite_close(value, logsumexp(BIG), rtol=1e-15)
    _assert_finite_close(gradient, softmax(BIG), rtol=1e-12, atol=1e-300)
    _assert_finite_close(hessian, _softmax_hessian_of_logsumexp(BIG), rtol=1e-12, atol=1e-300)


@pytest.mark.parametrize("mode", ["rev-rev", "fwd-rev"])
def test_log_softmax_and_softmax_and_their_derivatives_are_stable_at_1000(mode):
    weights = np.array([0.3, -1.2, 2.0, 0.7])
    value, gradient, hessian = _first_and_second(lambda x: sd.sum(sd.log_softmax(x) * weights), BIG, mode)
    p = softmax(BIG)
    _assert_finite_close(value, np.sum(log_softmax(BIG) * weights), rtol=1e-12)
    _assert_finite_close(gradient, weights - p * weights.sum(), rtol=1e-12, atol=1e-300)
    _assert_finite_close(hessian, -weights.sum() * _softmax_hessian_of_logsumexp(BIG), rtol=1e-12, atol=1e-300)

    value, gradient, hessian = _first_and_second(lambda x: sd.sum(sd.softmax(x) * weights), BIG, mode)
    jacobian = np.diag(p) - np.outer(p, p)  # d softmax / dx
    _assert_finite_close(value, p @ weights, rtol=1e-12)
    _assert_finite_close(gradient, jacobian @ weights, rtol=1e-12, atol=1e-300)
    # d2/dx_i dx_j of sum_k w_k p_k = p_i (w_i - pw) (delta_ij - p_j) - p_i p_j (w_j - pw)
    pw = p @ weights
    want = (p * (weights - pw))[:, None] * (np.eye(4) - p[None, :]) - np.outer(p, p * (weights - pw))
    _assert_finite_close(hessian, want, rtol=1e-10, atol=1e-300)


def test_softmax_over_rows_of_a_matrix_at_1000():
    X = sd.matrix("X", (2, 3))
    Xv = np.array([[1000.0, -1000.0, 0.0], [-1000.0, -999.0, -1001.0]])
    probs, logs, lse = sd.evaluate([sd.softmax(X, axis=1), sd.log_softmax(X, axis=1), sd.logsumexp(X, axis=1)],
                                   {X: Xv})
    np.testing.assert_allclose(probs, softmax(Xv, axis=1), rtol=1e-12, atol=1e-300)
    np.testing.assert_allclose(logs, log_softmax(Xv, axis=1), rtol=1e-12)
    np.testing.assert_allclose(lse, logsumexp(Xv, axis=1), rtol=1e-12)


# ------------------------------------------------------- None dimensions


def test_one_graph_with_none_dimensions_evaluates_at_two_sizes():
    X = sd.matrix("X", (None, 3))
    w = sd.vector("w", 3)
    cost = sd.mean((X @ w - 1) ** 2) + sd.sum(X[:, 0]) / X.shape[0]
    gX, gw = sd.grad(cost, [X, w])
    assert gX.type.shape == (None, 3)
    rng = np.random.default_rng(4)
    wv = rng.normal(size=3)
    for n in (2, 9):
        Xv = rng.normal(size=(n, 3))
        value, gXv, gwv = sd.evaluate([cost, gX, gw], {X: Xv, w: wv})
        residual = Xv @ wv - 1
        np.testing.assert_allclose(value, np.mean(residual**2) + Xv[:, 0].sum() / n, rtol=1e-13)
        np.testing.assert_allclose(gwv, 2 * Xv.T @ residual / n, rtol=1e-12)
        want_gX = 2 * np.outer(residual, wv) / n
        want_gX[:, 0] += 1 / n
        np.testing.assert_allclose(gXv, want_gX, rtol=1e-12)


def test_a_none_dimension_is_never_silently_broadcast():
    x, y = sd.vector("x"), sd.vector("y")
    total = x + y
    assert total.type.shape == (None,)
    np.testing.assert_array_equal(sd.evaluate(total, {x: [1.0, 2.0], y: [3.0, 4.0]}), [4.0, 6.0])
    with pytest.raises(sd.ShapeError, match="add"):
        sd.evaluate(total, {x: np.ones(1), y: np.ones(5)})
    with pytest.raises(sd.ShapeError):
        sd.evaluate(total, {x: np.ones(5), y: np.ones(1)})
    # Against a static 5, a run-time size of 1 is an error, not a broadcast.
    z = sd.vector("z", 5)
    with pytest.raises(sd.ShapeError):
        sd.evaluate(x * z, {x: np.ones(1), z: np.ones(5)})
    # A static 1, by contrast, does broadcast.
    one = sd.vector("one", 1)
    np.testing.assert_array_equal(sd.evaluate(one * z, {one: [2.0], z: np.ones(5)}), np.full(5, 2.0))


def test_none_dimension_mismatch_in_matmul_is_reported():
    A, B = sd.matrix("A", (2, None)), sd.matrix("B", (None, 3))
    with pytest.raises(sd.ShapeError, match="matmul"):
        sd.evaluate(A @ B, {A: np.ones((2, 4)), B: np.ones((5, 3))})


# ------------------------------------------------ user arrays are sacred


def test_evaluate_never_mutates_user_arrays():
    rng = np.random.default_rng(5)
    loss, (X, Y), params = _mlp_graph()
    grads = sd.grad(loss, list(params))
    Xv, Yv, pv = _mlp_values(rng, 4)
    feed = {X: Xv, Y: Yv, **dict(zip(params, pv))}
    copies = {k: np.array(v, copy=True) for k, v in feed.items()}
    sd.evaluate([loss] + grads + list(params), feed)
    for k, v in feed.items():
        np.testing.assert_array_equal(v, copies[k])

    # Read-only inputs are accepted as they are.
    for v in feed.values():
        v.flags.writeable = False
    readonly_results = sd.evaluate([loss] + grads, feed)
    np.testing.assert_allclose(readonly_results[0], _mlp_reference(Xv, Yv, *pv)[0], rtol=1e-12)


def test_inputs_that_need_a_cast_are_not_mutated():
    x = sd.vector("x", 3)
    ints = np.array([1, 2, 3], dtype=np.int32)
    floats32 = np.array([1.5, 2.5, 3.5], dtype=np.float32)
    for value in (ints, floats32):
        before = value.copy()
        out = sd.evaluate(x * 2, {x: value})
        assert out.dtype == np.float64
        np.testing.assert_array_equal(out, before * 2)
        np.testing.assert_array_equal(value, before)
        assert value.dtype == before.dtype


def test_outputs_never_alias_inputs_or_constants():
    x = sd.vector("x", 4)
    W = sd.matrix("W", (2, 2))
    table = sd.constant(np.arange(4.0))
    xv, Wv = np.arange(4.0) + 1, np.eye(2)
    outputs = [x, +x, x[1:], x[::-1], W.T, sd.reshape(x, (2, 2)), sd.broadcast_to(x, (3, 4)),
               sd.stop_gradient(x), table, sd.squeeze(sd.expand_dims(x, 0)), sd.astype(x, "float64")]
    results = sd.evaluate(outputs, {x: xv, W: Wv})
    for node, result in zip(outputs, results):
        assert not np.shares_memory(result, xv), node
        assert not np.shares_memory(result, Wv), node
        assert result.flags.writeable, node
    # Writing into a result leaves inputs and the constant alone.
    for result in results:
        result[...] = -7.0
    np.testing.assert_array_equal(xv, np.arange(4.0) + 1)
    np.testing.assert_array_equal(Wv, np.eye(2))
    np.testing.assert_array_equal(sd.evaluate(table, {}), np.arange(4.0))


def test_constant_copies_the_users_array():
    data = np.array([1.0, 2.0])
    c = sd.constant(data)
    data[0] = 100.0
    np.testing.assert_array_equal(sd.evaluate(c, {}), [1.0, 2.0])
