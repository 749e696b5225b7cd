"""Dense Jacobians and Hessians, Hessian-vector products, and the accumulation order.

Every check evaluates with the NumPy reference evaluator and compares against
central finite differences or SymPy.
"""

import itertools

import numpy as np
import pytest
import sympy

import symdiff as sd
from symdiff.errors import GradientError, ShapeError

RNG = np.random.default_rng(20261122)


def numeric_jacobian(output, x, point, step=1e-6):
    """Central differences of ``output`` wrt ``x`` at ``point``: shape y.shape + x.shape."""
    x0 = np.asarray(point[x], dtype=np.float64)
    columns = []
    for j in range(x0.size):
        bump = np.zeros_like(x0)
        bump.flat[j] = step
        up = sd.evaluate(output, {**point, x: x0 + bump})
        down = sd.evaluate(output, {**point, x: x0 - bump})
        columns.append((np.asarray(up) - np.asarray(down)) / (2 * step))
    y_shape = np.shape(columns[0])
    return np.stack(columns, axis=-1).reshape(y_shape + x0.shape)


def vector_problems():
    """(name, y, x, point): vector functions covering the op kinds."""
    x = sd.vector("x", 5)
    W = RNG.normal(size=(3, 5))
    X = sd.matrix("X", (2, 3))
    problems = [
        ("elementwise", sd.sin(x) * sd.exp(x / 3), x, {x: RNG.normal(size=5)}),
        ("slices", x[1:] * x[:-1] ** 2 - sd.tanh(x[::2]).sum(), x, {x: RNG.normal(size=5)}),
        ("matmul", sd.tanh(sd.constant(W) @ x) + sd.sum(x ** 2), x, {x: RNG.normal(size=5)}),
        ("softmax", sd.softmax(x), x, {x: RNG.normal(size=5)}),
        ("reductions", sd.stack([sd.max(x), sd.prod(x), sd.logsumexp(x)]), x, {x: RNG.normal(size=5)}),
        ("concat", sd.concatenate([x[:2] * 3, sd.cos(x), x.sum(keepdims=True)]), x, {x: RNG.normal(size=5)}),
        ("matrix in, matrix out", (X.T @ sd.sin(X)) * 0.5, X, {X: RNG.normal(size=(2, 3))}),
        ("matrix in, scalar out", sd.sum(sd.softplus(X) * X), X, {X: RNG.normal(size=(2, 3))}),
        ("scalar in", sd.stack([sd.sum(x * x[0]), x[0] ** 3]), x, {x: RNG.normal(size=5)}),
    ]
    return problems


@pytest.mark.parametrize("mode", ["auto", "fwd", "rev"])
def test_jacobian_matches_finite_differences(mode):
    for name, y, x, point in vector_problems():
        J = sd.jacobian(y, x, mode=mode)
        assert J.type.shape == y.type.shape + x.type.shape, name
        got = sd.evaluate(J, point)
        want = numeric_jacobian(y, x, point)
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7, err_msg=name)


def test_auto_mode_picks_the_smaller_number_of_sweeps():
    x = sd.vector("x", 50)
    wide = sd.sum(sd.sin(x))  # 1 output, 50 inputs: one reverse sweep
    tall = sd.sin(x[0]) * sd.constant(np.arange(50.0))  # 50 outputs of one input element
    assert sd.node_count(sd.jacobian(wide, x)) == sd.node_count(sd.jacobian(wide, x, mode="rev"))
    assert sd.node_count(sd.jacobian(wide, x)) < sd.node_count(sd.jacobian(wide, x, mode="fwd"))
    # forward and reverse give equal values on both
    point = {x: RNG.normal(size=50)}
    for y in (wide, tall):
        np.testing.assert_allclose(sd.evaluate(sd.jacobian(y, x, mode="fwd"), point),
                                   sd.evaluate(sd.jacobian(y, x, mode="rev"), point), rtol=1e-12, atol=1e-14)


def test_jacobian_wrt_a_list_and_an_intermediate_node():
    a, b = sd.vector("a", 3), sd.vector("b", 2)
    h = sd.tanh(a)  # an intermediate node: differentiate with h held as an input
    y = sd.concatenate([h * b[0], b * sd.sum(h)])
    point = {a: RNG.normal(size=3), b: RNG.normal(size=2)}
    for mode in ("fwd", "rev"):
        Ja, Jb = sd.jacobian(y, [a, b], mode=mode)
        np.testing.assert_allclose(sd.evaluate(Ja, point), numeric_jacobian(y, a, point), rtol=1e-6, atol=1e-8)
        np.testing.assert_allclose(sd.evaluate(Jb, point), numeric_jacobian(y, b, point), rtol=1e-6, atol=1e-8)
        Jh = sd.evaluate(sd.jacobian(y, h, mode=mode), point)
        bv = point[b]
        want = np.concatenate([np.eye(3) * bv[0], np.outer(bv, np.ones(3))])
        np.testing.assert_allclose(Jh, want, rtol=1e-12, err_msg=mode)


def test_jacobian_and_hessian_match_sympy():
    s = sympy.symbols("s0:3")
    x = sd.vector("x", 3)
    exprs = [
        (sympy.sin(s[0]) * sympy.exp(s[1]) + s[0] ** 2 * s[2], sd.sin(x[0]) * sd.exp(x[1]) + x[0] ** 2 * x[2]),
        (sympy.tanh(s[0] * s[1]) / (1 + s[2] ** 2), sd.tanh(x[0] * x[1]) / (1 + x[2] ** 2)),
        (sympy.log(1 + s[0] ** 2 + s[1] ** 4) * sympy.cos(s[2]), sd.log(1 + x[0] ** 2 + x[1] ** 4) * sd.cos(x[2])),
    ]
    at = RNG.normal(size=3)
    subs = dict(zip(s, at))
    for sym_expr, sd_expr in exprs:
        want_grad = np.array([float(sympy.diff(sym_expr, v).subs(subs)) for v in s])
        want_hess = np.array(sympy.hessian(sym_expr, s).subs(subs), dtype=float)
        np.testing.assert_allclose(sd.evaluate(sd.jacobian(sd_expr, x), {x: at}), want_grad, rtol=1e-12)
        for mode in ("fwd-rev", "rev-rev"):
            np.testing.assert_allclose(sd.evaluate(sd.hessian(sd_expr, x, mode=mode), {x: at}), want_hess,
                                       rtol=1e-11, atol=1e-13)
    # a vector of scalar expressions: the Jacobian matrix
    sym_vec = sympy.Matrix([e for e, _ in exprs])
    sd_vec = sd.stack([e for _, e in exprs])
    want = np.array(sym_vec.jacobian(s).subs(subs), dtype=float)
    for mode in ("fwd", "rev"):
        np.testing.assert_allclose(sd.evaluate(sd.jacobian(sd_vec, x, mode=mode), {x: at}), want, rtol=1e-11)


def test_hessian_matches_finite_differences_of_the_gradient():
    X = sd.matrix("X", (2, 3))
    W = RNG.normal(size=(3, 4))
    cost = sd.sum(sd.log_softmax(sd.tanh(X @ sd.constant(W)), axis=-1) * 0.3) + sd.sum(X ** 4) / 10
    point = {X: RNG.normal(size=(2, 3))}
    want = numeric_jacobian(sd.grad(cost, X), X, point)
    for mode in ("fwd-rev", "rev-rev"):
        H = sd.hessian(cost, X, mode=mode)
        assert H.type.shape == (2, 3, 2, 3)
        np.testing.assert_allclose(sd.evaluate(H, point), want, rtol=1e-6, atol=1e-7)


def test_fwd_rev_hvp_equals_rev_rev_hvp():
    """On several costs over several inputs: the two modes agree to rounding, and match the dense Hessian."""
    W1, b1, W2 = sd.matrix("W1", (4, 6)), sd.vector("b1", 6), sd.matrix("W2", (6, 3))
    X = sd.constant(RNG.normal(size=(5, 4)))
    Y = sd.constant(np.eye(3)[RNG.integers(3, size=5)])
    hidden = sd.tanh(X @ W1 + b1)
    mlp = -sd.mean(sd.sum(Y * sd.log_softmax(hidden @ W2), axis=1))
    x = sd.vector("x", 7)
    rosen = sd.sum(100 * (x[1:] - x[:-1] ** 2) ** 2 + (1 - x[:-1]) ** 2)
    maxes = sd.sum(sd.maximum(x, 0.3) ** 3) + sd.max(sd.sin(x)) * sd.prod(x[:3])
    cases = [(mlp, [W1, b1, W2]), (rosen, [x]), (maxes, [x])]
    for cost, wrt in cases:
        point = {w: RNG.normal(size=w.type.shape) for w in wrt}
        vs = [sd.constant(RNG.normal(size=w.type.shape)) for w in wrt]
        rr = sd.evaluate(sd.hvp(cost, wrt, vs, mode="rev-rev"), point)
        fr = sd.evaluate(sd.hvp(cost, wrt, vs, mode="fwd-rev"), point)
        for a, b in zip(rr, fr):
            np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)
        if len(wrt) == 1:  # against the dense Hessian too
            H = sd.evaluate(sd.hessian(cost, wrt[0]), point)
            np.testing.assert_allclose(H @ sd.evaluate(vs[0], {}), rr[0], rtol=1e-10, atol=1e-12)


def test_jacobian_errors_name_the_problem():
    x = sd.vector("x")  # size unknown until run time
    with pytest.raises(ShapeError, match="static shapes"):
        sd.jacobian(sd.sin(x), x)
    y = sd.vector("y", 3)
    with pytest.raises(ValueError, match="mode"):
        sd.jacobian(sd.sin(y), y, mode="sideways")
    with pytest.raises(ValueError, match="mode"):
        sd.hessian(sd.sum(y), y, mode="fwd-fwd")
    k = sd.vector("k", 3, dtype="int64")
    with pytest.raises(GradientError, match="k"):
        sd.jacobian(sd.sin(y) * 2, k)
    with pytest.raises(GradientError, match="scalar"):
        sd.hessian(sd.sin(y), y)


def test_jacobian_prints_differentiates_and_compiles():
    x = sd.vector("x", 3)
    J = sd.jacobian(sd.sin(x) * x[0], x)
    assert "jacobian of" in " ".join(n.note or "" for n in sd.toposort(J))
    listing = sd.to_text(J)
    assert "concatenate" in listing and "jacobian of" in listing
    # the Jacobian is graph, so it can be differentiated again: d/dx trace(J) = grad of sum(diag)
    trace = J[0, 0] + J[1, 1] + J[2, 2]
    point = {x: RNG.normal(size=3)}
    np.testing.assert_allclose(sd.evaluate(sd.grad(trace, x), point),
                               numeric_jacobian(trace, x, point), rtol=1e-6, atol=1e-8)
    f = sd.function([x], J, backend="numpy")
    np.testing.assert_allclose(f(point[x]), sd.evaluate(J, point))


# ---------------------------------------------------------- accumulation order


def test_chain_order_on_the_1000_1_1000_1_1000_chain():
    plan = sd.chain_order([1000, 1, 1000, 1, 1000])
    assert plan.forward_cost == 3_000_000
    assert plan.reverse_cost == 3_000_000
    assert plan.cost == 1_002_000
    assert plan.order == "(J4 (J3 J2)) J1"


def _brute_force_cost(sizes, i, j):
    """Cheapest cost of J_j ... J_i by trying every bracketing (exponential; tiny chains only)."""
    if i == j:
        return 0
    return min(_brute_force_cost(sizes, s + 1, j) + _brute_force_cost(sizes, i, s) + sizes[j] * sizes[s] * sizes[i - 1]
               for s in range(i, j))


def test_chain_order_is_optimal_on_random_chains():
    rng = np.random.default_rng(3)
    for _ in range(40):
        sizes = rng.integers(1, 30, size=rng.integers(2, 8)).tolist()
        plan = sd.chain_order(sizes)
        assert plan.cost == _brute_force_cost(sizes, 1, len(sizes) - 1)
        assert plan.cost <= min(plan.forward_cost, plan.reverse_cost)
    with pytest.raises(ValueError):
        sd.chain_order([3])


def test_jacobian_chain_orders_agree():
    x0 = sd.vector("x0", 6)
    x1 = sd.sum(sd.sin(x0) * x0)  # 6 -> 1
    x2 = sd.tanh(x1 * sd.constant(np.linspace(-1, 1, 6)))  # 1 -> 6
    x3 = sd.sum(x2 ** 2, keepdims=True)  # 6 -> 1 (shape (1,))
    x4 = sd.exp(x3 * sd.constant(np.arange(6.0)) / 10)  # 1 -> 6
    nodes = [x0, x1, x2, x3, x4]
    point = {x0: RNG.normal(size=6)}
    want = numeric_jacobian(x4, x0, point)
    for order in ("optimal", "forward", "reverse"):
        got = sd.evaluate(sd.jacobian_chain(nodes, order=order), point)
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-8, err_msg=order)
    assert sd.chain_order([6, 1, 6, 1, 6]).order == "(J4 (J3 J2)) J1"
    bypass = x4 + x0  # depends on x0 directly, not only through x3
    with pytest.raises(GradientError, match="other than through"):
        sd.jacobian_chain([x0, x1, x2, x3, bypass])
    with pytest.raises(ValueError, match="order"):
        sd.jacobian_chain(nodes, order="sideways")


def test_chain_costs_match_a_direct_count():
    """forward_cost/reverse_cost equal the cost of the all-left and all-right bracketings."""
    for sizes in itertools.product([1, 3, 7], repeat=4):
        plan = sd.chain_order(sizes)
        n = sizes
        forward = sum(n[k] * n[k - 1] * n[0] for k in range(2, len(n)))
        reverse = sum(n[-1] * n[k] * n[k - 1] for k in range(1, len(n) - 1))
        assert (plan.forward_cost, plan.reverse_cost) == (forward, reverse)
