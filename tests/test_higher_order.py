"""Derivatives of any order: repeated sd.grad, nested forward mode, and mixed nestings.

Scalar derivatives are compared with SymPy; vector ones with finite differences
of the next lower order.
"""

import numpy as np
import pytest
import sympy

import symdiff as sd

X = sympy.Symbol("x")
POINTS = [-1.3, -0.4, 0.0, 0.25, 0.9, 1.7]

# (name, symdiff builder, sympy expression); each derivative of order 0..6 is checked.
FUNCTIONS = [
    ("tanh", lambda x: sd.tanh(x), sympy.tanh(X)),
    ("sin*exp", lambda x: sd.sin(x) * sd.exp(x), sympy.sin(X) * sympy.exp(X)),
    ("1/(1+x^2)", lambda x: 1 / (1 + x * x), 1 / (1 + X ** 2)),
    ("softplus", lambda x: sd.softplus(x), sympy.log(1 + sympy.exp(X))),
    ("sqrt(1+x^2)*cos", lambda x: sd.sqrt(1 + x * x) * sd.cos(x), sympy.sqrt(1 + X ** 2) * sympy.cos(X)),
]


def sympy_values(expr, order):
    derivative = sympy.lambdify(X, sympy.diff(expr, X, order), "math")
    return np.array([derivative(p) for p in POINTS])


def values_at_points(node, x):
    return np.array([float(sd.evaluate(node, {x: p})) for p in POINTS])


@pytest.mark.parametrize("name,build,expr", FUNCTIONS, ids=[f[0] for f in FUNCTIONS])
def test_repeated_grad_matches_sympy(name, build, expr):
    x = sd.scalar("x")
    derivative = build(x)
    for order in range(1, 6):
        derivative = sd.grad(derivative, x)
        np.testing.assert_allclose(values_at_points(derivative, x), sympy_values(expr, order), rtol=1e-10, atol=1e-10,
                                   err_msg=f"{name}, order {order}")


@pytest.mark.parametrize("name,build,expr", FUNCTIONS, ids=[f[0] for f in FUNCTIONS])
def test_nested_forward_mode_matches_sympy(name, build, expr):
    x = sd.scalar("x")
    for order in range(0, 7):
        got = values_at_points(sd.derivative(build(x), x, order), x)
        np.testing.assert_allclose(got, sympy_values(expr, order), rtol=1e-10, atol=1e-10,
                                   err_msg=f"{name}, order {order}")


def test_fifth_derivatives_after_optimize_keep_their_values():
    x = sd.scalar("x")
    for name, build, expr in FUNCTIONS[:2]:
        d5 = build(x)
        for _ in range(5):
            d5 = sd.grad(d5, x)
        optimized = sd.optimize(d5)
        assert sd.node_count(optimized) <= sd.node_count(d5)
        np.testing.assert_allclose(values_at_points(optimized, x), sympy_values(expr, 5), rtol=1e-10, atol=1e-10,
                                   err_msg=name)


def repeated_grad(f, x, order, mode="auto"):
    for _ in range(order):
        f = sd.grad(f, x, mode=mode)
    return f


def test_repeated_grad_grows_polynomially():
    """The k-th derivative by repeated sd.grad (forward sweeps for one scalar input) and by
    sd.derivative (nested jvp) is the same graph; doubling the order multiplies its size by
    about 2**3 at most (cubic growth; 16 leaves room for lower-order terms), where growth by
    2x per order would give 2**6.  Repeated backprop (mode="rev") does double per order:
    see docs/architecture.md ("Any order")."""
    x = sd.scalar("x")
    for name, build, _ in FUNCTIONS:
        counts = {k: sd.node_count(repeated_grad(build(x), x, k)) for k in (6, 12)}
        assert counts[12] <= 16 * counts[6], (name, counts)
        assert repeated_grad(build(x), x, 6) is sd.derivative(build(x), x, 6), name
    reverse = {k: sd.node_count(repeated_grad(sd.tanh(x), x, k, mode="rev")) for k in (4, 8)}
    assert reverse[8] > 8 * reverse[4]  # the growth the default avoids; if this fails, update the docs


def test_grad_modes_agree_and_check_their_arguments():
    x, y = sd.scalars("x y")
    v = sd.vector("v", 3)
    cost = sd.sin(x * y) * sd.exp(y) + sd.sum(v * x) ** 2
    point = {x: 0.3, y: -0.7, v: np.array([0.5, -1.0, 2.0])}
    by_mode = {mode: sd.evaluate(sd.grad(cost, [x, y], mode=mode), point) for mode in ("rev", "fwd")}
    np.testing.assert_allclose(by_mode["fwd"], by_mode["rev"], rtol=1e-14)
    second = {mode: float(sd.evaluate(repeated_grad(cost, y, 3, mode), point)) for mode in ("auto", "rev")}
    assert second["auto"] == pytest.approx(second["rev"], rel=1e-12)
    assert "forward sweep" in sd.grad(cost, x).note and "forward sweep" not in sd.grad(cost, x, mode="rev").note
    with pytest.raises(sd.GradientError, match="0-d inputs"):
        sd.grad(cost, v, mode="fwd")
    with pytest.raises(ValueError, match="mode"):
        sd.grad(cost, x, mode="forward")


def test_derivative_works_elementwise_and_checks_its_arguments():
    x = sd.scalar("x")
    c = sd.constant(np.array([1.0, 2.0, 3.0]))
    third = sd.derivative(sd.exp(c * x), x, 3)  # c**3 exp(c x)
    scale = np.array([1.0, 2.0, 3.0])
    np.testing.assert_allclose(sd.evaluate(third, {x: 0.5}), scale ** 3 * np.exp(0.5 * scale))
    assert sd.derivative(sd.sin(x), x, 0) is sd.sin(x)
    with pytest.raises(sd.GradientError, match="scalar"):
        sd.derivative(sd.sin(c), c, 1)
    with pytest.raises(ValueError, match="order"):
        sd.derivative(sd.sin(x), x, -1)


def _fd(fn, point, direction, step=1e-5):
    return (np.asarray(fn(point + step * direction)) - np.asarray(fn(point - step * direction))) / (2 * step)


def test_third_order_directional_derivatives_agree_across_nestings():
    """D^3 f[u, v, w] by fwd-over-fwd-over-rev, rev-over-fwd-over-rev and rev^3, vs finite differences."""
    rng = np.random.default_rng(4)
    x = sd.vector("x", 4)
    cost = sd.sum(sd.tanh(x[1:] * x[:-1])) + sd.logsumexp(sd.sin(x) * 2) + sd.prod(x[:2]) ** 2
    u, v, w = (sd.constant(rng.normal(size=4)) for _ in range(3))
    hvp_u = sd.hvp(cost, x, u, mode="fwd-rev")
    third_fwd = sd.jvp(sd.sum(hvp_u * v), x, w)  # scalar: d/dw <H u, v>
    third_rev = sd.sum(sd.grad(sd.sum(sd.hvp(cost, x, u, mode="rev-rev") * v), x) * w)
    grad3 = sd.grad(sd.sum(sd.grad(sd.sum(sd.grad(cost, x) * u), x) * v), x)
    point = rng.normal(size=4)
    values = [float(sd.evaluate(t, {x: point})) for t in (third_fwd, third_rev, sd.sum(grad3 * w))]
    np.testing.assert_allclose(values, values[0], rtol=1e-10)
    inner = sd.sum(hvp_u * v)
    numeric = _fd(lambda p: sd.evaluate(inner, {x: p}), point, sd.evaluate(w, {}))
    np.testing.assert_allclose(values[0], numeric, rtol=1e-6)


def test_hessian_of_a_hessian_entry_and_jacobian_of_a_jacobian():
    rng = np.random.default_rng(9)
    x = sd.vector("x", 3)
    cost = sd.sum(sd.sin(x) * x[0] ** 2) + x[1] * x[2] ** 3
    H = sd.hessian(cost, x)
    T = sd.jacobian(H, x)  # the third-derivative tensor, (3, 3, 3)
    assert T.type.shape == (3, 3, 3)
    point = rng.normal(size=3)
    t = sd.evaluate(T, {x: point})
    for perm in [(1, 0, 2), (2, 1, 0), (0, 2, 1)]:  # symmetric in all three indices
        np.testing.assert_allclose(t, t.transpose(perm), rtol=1e-10, atol=1e-12)
    for j in range(3):
        e = np.eye(3)[j]
        numeric = _fd(lambda p: sd.evaluate(H, {x: p}), point, e)
        np.testing.assert_allclose(t[:, :, j], numeric, rtol=1e-6, atol=1e-7)


def test_forward_sweep_gradients_have_their_inputs_dtype():
    f = sd.scalar("f", dtype="float32")
    x = sd.scalar("x")
    for mode in ("auto", "fwd", "rev"):
        assert sd.grad(sd.astype(f, "float64") ** 2, f, mode=mode).dtype == "float32"
        assert sd.grad(sd.astype(x, "float32") ** 2, x, mode=mode).dtype == "float64"
