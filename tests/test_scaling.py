"""Linear size and deep graphs.

Differentiation appends a bounded number of nodes per forward node, so for a
chain of n scalar ops the gradient and the Hessian-vector product grow O(n) while
the naive tree expansion grows like 3**n; and every traversal (build, grad,
evaluate, node_count, garbage collection) is iterative, so a 100k-node graph
works with Python's recursion limit at its default or lowered to 500.

No timing asserts here (speed lives in benchmarks/); the deep test prints its
timings, see docs/architecture.md ("Graph size and deep graphs") for measured figures.
"""

import gc
import itertools
import sys
import time
import weakref

import numpy as np
import pytest

import symdiff as sd

SIZES = [10, 100, 1000]


def sin_chain(x, n):
    """x <- sin(x) * x + cos(x), n times: 4 ops a layer, each layer uses x three times."""
    for _ in range(n):
        x = sd.sin(x) * x + sd.cos(x)
    return x


UNARY_OPS = [sd.sin, sd.tanh, sd.sigmoid, sd.cos, sd.softplus, sd.exp, sd.log1p, sd.sqrt]


def unary_chain(x, n):
    """n distinct unary ops in a row, cycling through UNARY_OPS."""
    for op in itertools.islice(itertools.cycle(UNARY_OPS), n):
        x = op(x)
    return x


def path_count(output):
    """The number of paths from ``output`` down to its symbols, counted with
    multiplicity: the number of terms the chain rule has when it is expanded as
    a sum over paths (a tree), by one iterative pass in topological order."""
    paths = {}
    for node in sd.toposort(output):
        paths[node.id] = 1 if node.is_symbol else sum(paths[x.id] for x in node.inputs)
    return paths[output.id]


def _counts(chain, n):
    x, v = sd.scalars("x v")
    f = chain(x, n)
    forward = sd.node_count(f)
    with_grad = sd.node_count([f, sd.grad(f, x)])
    with_hvp = {mode: sd.node_count([f, sd.hvp(f, x, v, mode=mode)]) for mode in ("rev-rev", "fwd-rev")}
    return forward, with_grad, with_hvp


# Nodes appended per forward node, with head room: the measured figures are about
# 1.5 (gradient) and 6.3-6.7 (HVP) for the sin chain, 3.4 and 13-13.6 for the unary chain
# (whose sigmoid and softplus have derivatives written to keep relative accuracy,
# sigmoid(x) * sigmoid(-x), at a few more nodes than out * (1 - out)).
GRAD_NODES_PER_FORWARD_NODE = 4
HVP_NODES_PER_FORWARD_NODE = 16


@pytest.mark.parametrize("chain", [sin_chain, unary_chain], ids=["sin_chain", "unary_chain"])
def test_gradient_and_hvp_of_a_chain_grow_linearly(chain):
    ops_per_layer = 4 if chain is sin_chain else 1
    totals = {}  # n -> node counts of (forward + gradient, forward + HVP rev-rev, forward + HVP fwd-rev)
    for n in SIZES:
        forward, with_grad, with_hvp = _counts(chain, n)
        assert forward == ops_per_layer * n
        assert with_grad - forward <= GRAD_NODES_PER_FORWARD_NODE * forward + 10, (n, forward, with_grad)
        for mode, count in with_hvp.items():
            assert count - forward <= HVP_NODES_PER_FORWARD_NODE * forward + 20, (n, mode, forward, count)
        totals[n] = [with_grad, with_hvp["rev-rev"], with_hvp["fwd-rev"]]
    # What one more layer costs is the same at depth 1000 as at depth 100.
    small, middle, large = SIZES
    cost_early = [(b - a) / (middle - small) for a, b in zip(totals[small], totals[middle])]
    cost_late = [(b - a) / (large - middle) for a, b in zip(totals[middle], totals[large])]
    assert all(late <= early + 0.5 for early, late in zip(cost_early, cost_late)), (cost_early, cost_late)


def test_naive_expansion_of_the_sin_chain_is_exponential_and_the_graph_is_not():
    x = sd.scalar("x")
    for n in SIZES:
        f = sin_chain(x, n)
        assert path_count(f) == 3**n
        assert sd.node_count(sd.grad(f, x)) <= 10 * n


def test_second_and_third_derivatives_of_a_chain_stay_linear():
    x = sd.scalar("x")
    per_layer = []
    for n in (100, 1000):
        derivative = sin_chain(x, n)
        for _ in range(3):
            derivative = sd.grad(derivative, x)
        per_layer.append(sd.node_count(derivative) / n)
    # Each order multiplies the size by a constant (about 3), never by the depth.
    assert per_layer[0] <= 100 and per_layer[1] <= per_layer[0] * 1.01, per_layer


def test_chain_gradient_values_are_right():
    # The chain rule by hand: the derivative is the product of the layers' derivatives.
    local_derivatives = {
        sd.sin: np.cos, sd.cos: lambda t: -np.sin(t), sd.tanh: lambda t: 1 - np.tanh(t) ** 2,
        sd.sigmoid: lambda t: np.exp(-t) / (1 + np.exp(-t)) ** 2, sd.softplus: lambda t: 1 / (1 + np.exp(-t)),
        sd.exp: np.exp, sd.log1p: lambda t: 1 / (1 + t), sd.sqrt: lambda t: 0.5 / np.sqrt(t),
    }
    numpy_ops = {sd.sin: np.sin, sd.cos: np.cos, sd.tanh: np.tanh, sd.sigmoid: lambda t: 1 / (1 + np.exp(-t)),
                 sd.softplus: lambda t: np.log1p(np.exp(t)), sd.exp: np.exp, sd.log1p: np.log1p, sd.sqrt: np.sqrt}
    x = sd.scalar("x")
    f = unary_chain(x, 16)
    value, derivative = 0.3, 1.0
    for op in itertools.islice(itertools.cycle(UNARY_OPS), 16):
        value, derivative = numpy_ops[op](value), derivative * local_derivatives[op](value)
    np.testing.assert_allclose(sd.evaluate([f, sd.grad(f, x)], {x: 0.3}), [value, derivative], rtol=1e-13)

    f = sin_chain(x, 3)
    value, derivative = 0.3, 1.0
    for _ in range(3):  # d/dx (sin(x) x + cos(x)) = cos(x) x
        value, derivative = np.sin(value) * value + np.cos(value), derivative * np.cos(value) * value
    np.testing.assert_allclose(sd.evaluate([f, sd.grad(f, x)], {x: 0.3}), [value, derivative], rtol=1e-13)


# ------------------------------------------------------------ deep graphs

DEEP_LAYERS = 25_000  # 4 ops a layer: 100k operation nodes


def _deep_graph_round_trip(layers):
    """Build, differentiate, evaluate and count the sin chain; returns timings."""
    timings = {}
    start = time.perf_counter()
    x = sd.scalar("x_deep")
    f = sin_chain(x, layers)
    timings["build"] = time.perf_counter() - start

    start = time.perf_counter()
    g = sd.grad(f, x)
    timings["grad"] = time.perf_counter() - start

    start = time.perf_counter()
    value, derivative = sd.evaluate([f, g], {x: 0.3})
    timings["evaluate"] = time.perf_counter() - start

    start = time.perf_counter()
    forward, total = sd.node_count(f), sd.node_count([f, g])
    timings["node_count"] = time.perf_counter() - start

    assert forward == 4 * layers
    assert total - forward <= GRAD_NODES_PER_FORWARD_NODE * forward
    # The chain converges to pi / 2 (where sin(x) x + cos(x) = x), and its derivative to 0.
    assert value == pytest.approx(np.pi / 2) and abs(derivative) < 1e-12
    return f, g, timings


@pytest.mark.parametrize("recursion_limit", [None, 500], ids=["default_limit", "limit_500"])
def test_100k_node_graph_builds_differentiates_evaluates_and_counts(recursion_limit):
    saved = sys.getrecursionlimit()
    if recursion_limit is not None:
        sys.setrecursionlimit(recursion_limit)
    try:
        f, g, timings = _deep_graph_round_trip(DEEP_LAYERS)
        # Dropping the graph frees 100k+ nodes chained through their inputs; that
        # must neither recurse in the deallocator nor leave the nodes alive.
        alive = weakref.ref(f)
        start = time.perf_counter()
        del f, g
        gc.collect()
        timings["free"] = time.perf_counter() - start
        assert alive() is None
    finally:
        sys.setrecursionlimit(saved)
    print(f"\n{4 * DEEP_LAYERS} forward nodes, recursion limit {recursion_limit or saved}: "
          + ", ".join(f"{k} {v:.2f} s" for k, v in timings.items()))


def test_a_deep_chain_of_distinct_unary_ops_under_a_low_recursion_limit():
    saved = sys.getrecursionlimit()
    sys.setrecursionlimit(500)
    try:
        x, v = sd.scalars("x_unary v_unary")
        f = unary_chain(x, 10_000)
        g = sd.grad(f, x)
        hv = sd.hvp(f, x, v, mode="fwd-rev")
        value, derivative, curvature = sd.evaluate([f, g, hv], {x: 0.5, v: 1.0})
        assert np.isfinite([value, derivative, curvature]).all()
        assert sd.node_count([f, g, hv]) <= (1 + GRAD_NODES_PER_FORWARD_NODE + HVP_NODES_PER_FORWARD_NODE) * 10_000
        alive = weakref.ref(f)
        del f, g, hv
        gc.collect()
        assert alive() is None
    finally:
        sys.setrecursionlimit(saved)


def test_rewriting_a_deep_chain_on_a_vector_of_run_time_size_does_not_recurse_per_layer():
    """The gradient of a chain on ``sd.vector("x")`` reads the forward sizes through
    broadcast_like/dim nodes; their rewrite to the size's source followed one layer per
    recursion (a 100-layer chain hit the recursion limit in sd.optimize)."""
    from symdiff.rewrite import optimize

    saved = sys.getrecursionlimit()
    sys.setrecursionlimit(500)
    try:
        x = sd.vector("x_deep_none")
        y = x
        for _ in range(2_000):
            y = sd.sin(y) * y + sd.cos(y)
        outputs = [sd.sum(y), sd.grad(sd.sum(y), x)]
        optimized = optimize(outputs)
        point = {x: np.linspace(-1.0, 1.0, 5)}
        for got, want in zip(sd.evaluate(list(optimized), point), sd.evaluate(outputs, point)):
            np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-15)
    finally:
        sys.setrecursionlimit(saved)
