"""Gradients of slices at constant offsets: scatter buffers written once (``Lowering.plan_carries``).

The gradient of ``x[1:]``, ``x[:-1]``, ``x[2:]``... is a buffer that every iteration
of one loop adds into at a few constant offsets.  The Numba backend stores each
element once and carries the pending sums in locals instead of zero-filling the
buffer and updating it with ``+=``.  Here: compiled results against the reference
evaluator at many sizes (empty loops included), the summation order bitwise, the
cases that must keep the general code, and the generated source (so the rule cannot
stop applying unnoticed).  Two Numba compiles in all: one float64 kernel holding
every case, one float32 kernel.
"""

from __future__ import annotations

import re

import numpy as np
import pytest

import symdiff as sd
from symdiff.backends import lowering
from symdiff.rewrite import optimize

pytest.importorskip("numba")

SIZES = (0, 1, 2, 3, 4, 5, 8, 1000)  # one compiled function, None-sized inputs: every size


def rosenbrock(x):
    return sd.sum(100 * (x[1:] - x[:-1] ** 2) ** 2 + (1 - x[:-1]) ** 2)


def _buffers(source: str) -> list:
    """The names the kernel returns, in output order."""
    returned = re.search(r"^    return \((.*)\)$", source, re.M).group(1)
    return [name.strip() for name in returned.split(",") if name.strip()]


def _stored_once(source: str, buffer: str) -> bool:
    """Carries, and no zero-fill or ``+=`` of the buffer left in the source."""
    return (f"{buffer}_carry0" in source and not re.search(rf"\b{buffer}\[[^\]]*\] \+=", source)
            and not re.search(rf"for i0 in range\(n0\):\n +{buffer}\[i0\] = 0\.0", source))


def _general(source: str, buffer: str) -> bool:
    """The general code: a zero-filled buffer updated with ``+=``."""
    return f"{buffer}_carry" not in source and re.search(rf"\b{buffer}\[[^\]]*\] \+=", source) is not None


# --------------------------------------------------------------- float64 kernel

# label -> whether the rule applies to that gradient's buffer
CASES = {
    "rosenbrock value": None,
    "rosenbrock x[1:], x[:-1]": True,
    "second difference x[2:] - 2 x[1:-1] + x[:-2]": True,
    "gap x[2:], x[:-2]": True,
    "one slice x[1:]": True,
    "offsets 0, 1, 3": True,
    "static size 7, x[3:5], x[1:3]: zero head and tail": True,
    "static size 2, x[2:], x[:-2]: empty loop": True,
    "bitwise order a x[2:] + b x[1:-1] + c x[:-2]": True,
    "with x[::2] (step 2): general": False,
    "with sum(x**3) (a plain add): general": False,
    "with x[:2] (another loop): general": False,
}


@pytest.fixture(scope="module")
def stencils():
    x = sd.vector("x")
    xs, xe = sd.vector("xs", 7), sd.vector("xe", 2)
    a, b, c = sd.vector("a"), sd.vector("b"), sd.vector("c")
    r = rosenbrock(x)
    objectives = [
        sd.sum((x[2:] - 2 * x[1:-1] + x[:-2]) ** 2),
        sd.sum(sd.sin(x[2:]) * x[:-2]),
        sd.sum(sd.cos(x[1:])),
        sd.sum(x[3:] * x[:-3] * sd.exp(x[1:-2])),
    ]
    outputs = [r, sd.grad(r, x)] + [sd.grad(e, x) for e in objectives]
    outputs.append(sd.grad(sd.sum(xs[3:5] * sd.tanh(xs[1:3])), xs))
    outputs.append(sd.grad(sd.sum(xe[2:] * xe[:-2]), xe))
    outputs.append(sd.grad(sd.sum(a * x[2:] + b * x[1:-1] + c * x[:-2]), x))
    for e in (sd.sum(x[1:] * x[:-1]) + sd.sum(x[::2] ** 2), sd.sum(x[1:] * sd.sin(x[:-1])) + sd.sum(x ** 3),
              sd.sum(x[1:] ** 2 * x[:-1]) + sd.sum(x[:2] ** 3)):
        outputs.append(sd.grad(e, x))
    assert len(outputs) == len(CASES)
    symbols = [x, xs, xe, a, b, c]
    return symbols, outputs, sd.function(symbols, outputs)


def _arguments(n: int, rng):
    m = max(n - 2, 0)
    return (rng.normal(size=n), rng.normal(size=7), rng.normal(size=2), rng.normal(size=m), rng.normal(size=m),
            rng.normal(size=m))


def test_stencil_gradients_match_the_reference_at_every_size(stencils):
    symbols, outputs, f = stencils
    rng = np.random.default_rng(3)
    for n in SIZES:
        args = _arguments(n, rng)
        got = f(*args)
        want = sd.evaluate(outputs, dict(zip(symbols, args)))
        for label, g, w in zip(CASES, got, want):
            assert np.shape(g) == np.shape(w), f"{label}, n={n}"
            np.testing.assert_allclose(g, w, rtol=1e-11, atol=1e-12, err_msg=f"{label}, n={n}")


def test_the_rule_applies_exactly_where_it_should(stencils):
    _, _, f = stencils
    buffers = _buffers(f.source)
    assert len(buffers) == len(CASES)
    for (label, applies), buffer in zip(CASES.items(), buffers):
        if applies is True:
            assert _stored_once(f.source, buffer), label
        elif applies is False:
            assert _general(f.source, buffer), label


def test_summation_order_and_signed_zeros(stencils):
    """Element e adds a[e-2], b[e-1], c[e] in that order (the iterations' order).  Zeros
    as in the reference (each scatter is zeros with its slice assigned, then they are
    added): an element all three slices reach is the sum of its terms alone, so three
    -0.0 give -0.0; an element some slice misses has a +0.0 among its terms.  Bitwise."""
    symbols, outputs, f = stencils
    rng = np.random.default_rng(5)
    n = 1000
    L = n - 2  # the loop's length
    x, xs, xe = rng.normal(size=n), rng.normal(size=7), rng.normal(size=2)
    a, b, c = (rng.choice([-1.0, 1.0], L) * 10.0 ** rng.uniform(-8, 8, L) for _ in range(3))
    a[10 - 2], b[10 - 1], c[10] = -0.0, -0.0, -0.0  # element 10: only negative zeros
    c[0] = -0.0  # element 0: only c reaches it
    a[L - 1] = -0.0  # element n - 1: only a reaches it
    index = list(CASES).index("bitwise order a x[2:] + b x[1:-1] + c x[:-2]")
    got = f(x, xs, xe, a, b, c)[index]
    want = np.empty(n)
    want[0] = 0.0 + c[0]
    want[1] = (0.0 + b[0]) + c[1]
    want[2:L] = (a[:L - 2] + b[1:L - 1]) + c[2:L]
    want[L] = 0.0 + (a[L - 2] + b[L - 1])
    want[L + 1] = 0.0 + a[L - 1]
    assert np.array_equal(got.view(np.int64), want.view(np.int64))
    reference = sd.evaluate(outputs[index], dict(zip(symbols, (x, xs, xe, a, b, c))))
    for e, negative in ((10, True), (0, False), (n - 1, False)):
        assert got[e] == 0.0 and np.signbit(got[e]) == negative == np.signbit(reference[e]), e
    other_order = np.zeros(n)
    other_order[:-2] += c
    other_order[1:-1] += b
    other_order[2:] += a
    assert not np.array_equal(other_order, want)  # the data can tell the orders apart


def test_rosenbrock_gradient_source_has_no_fill_and_no_read_modify_write():
    x = sd.vector("x")
    r = rosenbrock(x)
    outputs = [r, sd.grad(r, x)]
    for graph in (outputs, list(optimize(outputs))):  # as built, and as sd.function lowers it
        source = lowering.lower([x], graph, single=False).source
        value, gradient = _buffers(source)
        assert _stored_once(source, gradient)
        assert source.count("# loop") == 1  # still one fused loop
        assert len(re.findall(rf"\b{gradient}\[", source)) == 2  # stored in the loop, and its last element after it


def test_general_code_for_run_time_starts_negative_steps_and_2d_buffers():
    x, x6, X = sd.vector("x"), sd.vector("x6", 6), sd.matrix("X", (None, 3))
    cases = [
        (x, sd.sum(x[-3:] * x[:3])),  # the start of x[-3:] is known only at run time
        (x6, sd.sum(x6[:0:-1] * x6[1:])),  # step -1 (with a static start)
        (X, sd.sum(X[1:] * X[:-1])),  # a 2-d buffer
    ]
    for symbol, objective in cases:
        source = lowering.lower([symbol], [sd.grad(objective, symbol)], single=True).source
        assert "_carry" not in source and "+=" in source, source


# --------------------------------------------------------------- float32 kernel


def test_float32_stencil_gradients():
    x = sd.vector("x", dtype="float32")
    r = rosenbrock(x)
    outputs = [r, sd.grad(r, x), sd.grad(sd.sum((x[2:] - 2 * x[1:-1] + x[:-2]) ** 2), x)]
    f = sd.function([x], outputs)
    for buffer in _buffers(f.source)[1:]:
        assert _stored_once(f.source, buffer)
        assert f"{buffer}_carry0 = np.float32(0.0)" in f.source
    rng = np.random.default_rng(11)
    for n in (1, 2, 3, 257):
        v = rng.normal(size=n).astype(np.float32)
        got, want = f(v), sd.evaluate(outputs, {x: v})
        for k, (g, w) in enumerate(zip(got, want)):
            if k:  # the gradients (the value may be a Python float)
                assert g.dtype == np.float32, f"output {k}, n={n}"
            np.testing.assert_allclose(g, w, rtol=2e-5, atol=1e-4, err_msg=f"output {k}, n={n}")
