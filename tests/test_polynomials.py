"""The fast-math pass that collects like terms of scalar polynomials (symdiff/polynomials.py).

Random scalar programs over a few atoms must keep their values (up to reassociation)
and never grow; high-order derivatives must shrink to the size of the polynomial they
are; the pass must leave alone what it cannot shrink and stay within its bounds.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import symdiff as sd
from symdiff.polynomials import MAX_TERMS, collect_polynomials

A, B = sd.scalars("a b")
ATOMS = [A, B, sd.sin(A), sd.exp(B)]
STEPS = {
    "add": lambda p, q: p + q,
    "sub": lambda p, q: p - q,
    "mul": lambda p, q: p * q,
    "neg_left": lambda p, q: -p,
    "square": lambda p, q: p ** 2,
    "cube": lambda p, q: p ** 3,
    "half": lambda p, q: p / 2,
    "scaled": lambda p, q: p * 3 + q * 3,
    "tanh": lambda p, q: sd.tanh(p),  # not polynomial: its argument becomes a root
}


@st.composite
def programs(draw):
    steps = []
    for k in range(draw(st.integers(1, 12))):
        available = len(ATOMS) + k
        steps.append((draw(st.sampled_from(sorted(STEPS))), draw(st.integers(0, available - 1)),
                      draw(st.integers(0, available - 1))))
    return steps


def build(program):
    nodes = list(ATOMS)
    for name, i, j in program:
        nodes.append(STEPS[name](nodes[i], nodes[j]))
    return nodes


@settings(max_examples=150, deadline=None)
@given(programs(), st.floats(-1.2, 1.2), st.floats(-1.2, 1.2))
def test_collecting_keeps_values_and_never_grows(program, a, b):
    nodes = build(program)
    outputs = [nodes[-1], nodes[len(nodes) // 2]]
    collected = collect_polynomials(outputs)
    sd.verify(collected)
    assert sd.node_count(collected) <= sd.node_count(outputs)
    point = {A: a, B: b}
    want = np.array(sd.evaluate(outputs, point), dtype=float)
    got = np.array(sd.evaluate(collected, point), dtype=float)
    # Reassociation changes rounding: compare on the scale of the largest intermediate value.
    scale = max(abs(float(v)) for v in sd.evaluate(nodes, point))
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12 * (1 + scale))


def test_like_terms_collect_and_outputs_keep_their_identity():
    e = A * B + B * A * 2 - A * B
    (collected,) = collect_polynomials([e])
    assert [n.op.name for n in sd.ir.toposort([collected]) if n.inputs] == ["mul", "mul"]  # 2 * (a*b)
    assert float(sd.evaluate(collected, {A: 1.5, B: -2.0})) == -6.0
    untouched = [sd.sin(A) * B, A + B]  # nothing to collect: the same nodes come back
    assert all(x is y for x, y in zip(collect_polynomials(untouched), untouched))
    assert float(sd.evaluate(collect_polynomials([A - A])[0], {A: 3.0})) == 0.0


def test_high_order_derivatives_shrink_to_their_polynomial():
    """tanh^(k) is a polynomial of degree k+1 in tanh(x): linear size with fast_math,
    against quadratic growth of the per-order increments without it."""
    x = sd.scalar("x")
    for name, f in [("tanh", sd.tanh(x)), ("sin*exp", sd.sin(x) * sd.exp(x))]:
        g, sizes = f, {}
        for order in range(1, 13):
            g = sd.grad(g, x)
            if order in (6, 12):
                exact, fast = sd.optimize(g), sd.optimize(g, fast_math=True)
                sizes[order] = sd.node_count(fast)
                for point in (-0.7, 0.2, 1.1):
                    want = float(sd.evaluate(exact, {x: point}))
                    got = float(sd.evaluate(fast, {x: point}))
                    assert got == pytest.approx(want, rel=1e-9, abs=1e-9), (name, order)
        assert sizes[12] <= 2.5 * sizes[6], (name, sizes)
    tanh12 = sd.optimize(sd.derivative(sd.tanh(x), x, 12), fast_math=True)  # = repeated sd.grad
    # tanh' is the primitive sech2(x) (relative accuracy where 1 - t**2 cancels), so the
    # 12th derivative is a polynomial over two atoms, t = tanh(x) and s = sech2(x): 28
    # nodes by Horner (20 over t alone, when tanh' was 1 - t**2).
    assert sd.node_count(tanh12) <= 30



def test_expansions_over_the_bounds_keep_their_graph():
    xs = sd.scalars(" ".join(f"x{i}" for i in range(8)))
    ys = sd.scalars(" ".join(f"y{i}" for i in range(8)))
    product = xs[0] + ys[0]
    for x, y in zip(xs[1:], ys[1:]):
        product = product * (x + y)  # 2**8 terms once expanded
    assert 2 ** 8 > MAX_TERMS
    assert collect_polynomials([product])[0] is product
    deep = A
    for _ in range(200):  # degree 201: over MAX_DEGREE, and nothing to gain anyway
        deep = deep * A
    assert collect_polynomials([deep])[0] is deep


def test_vectors_and_notes():
    v = sd.vector("v", 3)
    e = v * A + v * A  # arrays are left to the exact rules
    assert collect_polynomials([e])[0] is e
    x = sd.scalar("x")
    d3 = sd.derivative(sd.sin(x) * sd.exp(x), x, 3)
    fast = sd.optimize(d3, fast_math=True)
    assert sd.node_count(fast) < sd.node_count(sd.optimize(d3))
    assert all(n.note for n in sd.ir.toposort([fast]) if n.inputs and n.op.name not in ("sin", "cos", "exp"))


def test_constants_the_pass_cannot_fold_stay_out():
    """Review findings: exponents that are not small integers, divisors whose reciprocal
    overflows, and coefficients that overflow the node's dtype keep their graph."""
    x, y = sd.scalars("x y")
    for exponent in (float("nan"), float("inf"), -1.0, 2.5, 17.0):
        e = x ** exponent + x * y + x * y
        got = sd.evaluate(sd.optimize(e, fast_math=True), {x: 1.5, y: 2.0})
        np.testing.assert_allclose(got, sd.evaluate(e, {x: 1.5, y: 2.0}), rtol=1e-12)
    subnormal = (x / 1e-310) * y + (x / 1e-310) * y  # 1 / 1e-310 overflows
    assert float(sd.evaluate(sd.optimize(subnormal, fast_math=True), {x: 1e-300, y: 1.0})) == pytest.approx(2e10)
    f, g = sd.scalars("f g", dtype="float32")
    big = sd.constant(np.float32(1e30))
    e = (f * big) * big * g  # the folded coefficient 1e60 is not a float32
    value = sd.evaluate(sd.optimize(e, fast_math=True), {f: np.float32(1e-30), g: np.float32(1e-30)})
    assert value == pytest.approx(1.0, rel=1e-5)
