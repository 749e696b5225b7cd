"""Convolution: sd.convolve and sd.correlate against np.convolve and np.correlate,
sd.signal against scipy.signal, sd.conv2d against a sliding-window reference; values
and gradients, static sizes and sizes known only at run time, compiled and not.

The reference evaluator carries most checks (cheap); a few kernels hold many outputs
each, covering every helper the Numba lowering can choose.
"""

from __future__ import annotations

import re

import numpy as np
import pytest
from numpy.lib.stride_tricks import sliding_window_view

import symdiff as sd
from symdiff.ops.convolution import CONV
from symdiff.testing import check_grads, check_hvp

pytestmark = pytest.mark.filterwarnings("ignore:Code running in object mode")

MODES = ("valid", "same", "full")
LENGTHS = [(7, 3), (3, 7), (5, 5), (1, 4), (6, 1), (4, 2), (2, 5)]


def _rng(seed=0):
    return np.random.default_rng(seed)


# ------------------------------------------------------------------ np.convolve / np.correlate


@pytest.mark.parametrize("name", ["convolve", "correlate"])
@pytest.mark.parametrize("mode", MODES)
def test_numpy_1d_static_lengths_match_numpy(name, mode):
    rng = _rng(1)
    for n, m in LENGTHS:
        a, v = rng.normal(size=n), rng.normal(size=m)
        x, w = sd.vector("x", n), sd.vector("w", m)
        got = sd.evaluate(getattr(sd, name)(x, w, mode), {x: a, w: v})
        np.testing.assert_allclose(got, getattr(np, name)(a, v, mode), rtol=1e-12, atol=1e-14, err_msg=f"{n}, {m}")


@pytest.mark.parametrize("name", ["convolve", "correlate"])
@pytest.mark.parametrize("mode", MODES)
def test_numpy_1d_run_time_lengths_match_numpy(name, mode):
    """A length known only at run time is taken to be the longer; either argument may be it."""
    rng = _rng(2)
    fn, reference = getattr(sd, name), getattr(np, name)
    for n, m in [(9, 3), (5, 5), (6, 1), (4, 2)]:
        a, v = rng.normal(size=n), rng.normal(size=m)
        cases = [(sd.vector("x"), sd.vector("w", m), a, v), (sd.vector("x", m), sd.vector("w"), v, a)]
        if mode == "valid":
            cases.append((sd.vector("x"), sd.vector("w"), a, v))
        for x, w, first, second in cases:
            got = sd.evaluate(fn(x, w, mode), {x: first, w: second})
            np.testing.assert_allclose(got, reference(first, second, mode), rtol=1e-12, atol=1e-14,
                                       err_msg=f"{x.type} {w.type}")


def test_numpy_1d_dtypes_scalars_and_numeric_modes():
    ints = sd.evaluate(sd.convolve(sd.constant([1, 2, 3]), sd.constant([0, 1, 5])), {})
    np.testing.assert_array_equal(ints, np.convolve([1, 2, 3], [0, 1, 5]))
    assert ints.dtype == np.int64
    x32 = sd.vector("x32", 4, dtype="float32")
    value = sd.evaluate(sd.correlate(x32, np.float32([1, 2]), "full"), {x32: np.arange(4, dtype=np.float32)})
    assert value.dtype == np.float32
    mixed = sd.correlate(sd.vector("xi", 3, dtype="int64"), [0.5, 1.0])
    assert mixed.dtype == "float64"
    flags = sd.evaluate(sd.convolve(np.array([True, False, True]), np.array([True, True])), {})
    np.testing.assert_array_equal(flags, np.convolve(np.array([True, False, True]), np.array([True, True])))
    np.testing.assert_array_equal(sd.evaluate(sd.convolve(2.0, 3.0), {}), np.convolve(2.0, 3.0))
    for number, mode in enumerate(MODES):
        np.testing.assert_allclose(sd.evaluate(sd.convolve([1.0, 2, 3], [1.0, 1], number), {}),
                                   np.convolve([1.0, 2, 3], [1.0, 1], mode))


def test_numpy_1d_bad_input_names_the_function_and_the_line():
    x = sd.vector("x", 4)
    with pytest.raises(ValueError, match=r"convolve: mode must be one of .*'bad'.*test_convolution\.py:\d+"):
        sd.convolve(x, [1.0], mode="bad")
    with pytest.raises(ValueError, match=r"correlate: object too deep.*f64\[2,2\].*test_convolution\.py"):
        sd.correlate(sd.matrix("m", (2, 2)), [1.0])
    with pytest.raises(ValueError, match="convolve: v cannot be empty"):
        sd.convolve(x, sd.vector("e", 0))
    with pytest.raises(ValueError, match="correlate: first array argument cannot be empty"):
        sd.correlate(sd.vector("e", 0), x)
    with pytest.raises(sd.ShapeError, match=r"convolve: mode 'same' .* must be static.*test_convolution\.py"):
        sd.convolve(sd.vector("a"), sd.vector("b"), mode="same")


def test_numpy_1d_run_time_input_shorter_than_the_other_is_an_error():
    x, w = sd.vector("x"), sd.vector("w", 4)
    y = sd.convolve(x, w, "same")
    with pytest.raises(sd.ShapeError, match=r"conv at .*test_convolution\.py:\d+: the input's spatial size 3 is "
                                            r"smaller than the filter's span 4"):
        sd.evaluate(y, {x: np.ones(3), w: np.ones(4)})


def test_filter_gradient_is_the_sum_over_every_place_it_was_applied():
    """d/dv of sum(g * correlate(a, v, 'valid')) is sum over k of g[k] a[k:k+m]: weight tying."""
    rng = _rng(3)
    a, v, g = rng.normal(size=12), rng.normal(size=4), rng.normal(size=9)
    x, w = sd.vector("x"), sd.vector("w", 4)
    cost = sd.sum(sd.correlate(x, w) * g)
    grad_w, grad_x = sd.evaluate(sd.grad(cost, [w, x]), {x: a, w: v})
    np.testing.assert_allclose(grad_w, sum(g[k] * a[k:k + 4] for k in range(9)), rtol=1e-12)
    np.testing.assert_allclose(grad_w, np.correlate(a, g, "valid"), rtol=1e-12)
    np.testing.assert_allclose(grad_x, np.convolve(g, v, "full"), rtol=1e-12)


@pytest.mark.parametrize("mode", MODES)
def test_numpy_1d_gradients(mode):
    rng = _rng(4)
    for name in ("convolve", "correlate"):
        for x, w, n, m in [(sd.vector("x", 6), sd.vector("w", 3), 6, 3), (sd.vector("x", 2), sd.vector("w", 5), 2, 5),
                           (sd.vector("x"), sd.vector("w", 3), 7, 3)]:
            y = getattr(sd, name)(x, w, mode)
            check_grads(y, [x, w], {x: rng.normal(size=n), w: rng.normal(size=m)}, order=2, label=f"{name} {mode}")


# ------------------------------------------------------------------------------ scipy.signal


def _scipy_signal():
    return pytest.importorskip("scipy.signal")


def _one_contains_the_other(s1, s2) -> bool:
    """SciPy's 'valid' mode needs one shape at least the other's along every axis."""
    return all(p >= q for p, q in zip(s1, s2)) or all(q >= p for p, q in zip(s1, s2))


@pytest.mark.parametrize("name", ["convolve", "correlate"])
def test_signal_nd_matches_scipy(name):
    signal = _scipy_signal()
    rng = _rng(5)
    shapes = [((7,), (3,)), ((3,), (6,)), ((5, 6), (2, 3)), ((3, 4), (4, 2)), ((2, 3), (4, 5)), ((4, 3, 5), (2, 2, 3))]
    for s1, s2 in shapes:
        a, b = rng.normal(size=s1), rng.normal(size=s2)
        x, w = sd.tensor("x", s1), sd.tensor("w", s2)
        for mode in MODES:
            if mode == "valid" and not _one_contains_the_other(s1, s2):
                continue
            got = sd.evaluate(getattr(sd.signal, name)(x, w, mode), {x: a, w: b})
            np.testing.assert_allclose(got, getattr(signal, name)(a, b, mode, method="direct"), rtol=1e-12,
                                       atol=1e-13, err_msg=f"{s1} {s2} {mode}")
    np.testing.assert_allclose(sd.evaluate(sd.signal.correlate(2.0, 3.0), {}), signal.correlate(2.0, 3.0))


@pytest.mark.parametrize("name", ["convolve2d", "correlate2d"])
def test_signal_2d_matches_scipy(name):
    signal = _scipy_signal()
    rng = _rng(6)
    shapes = [((5, 6), (3, 3)), ((4, 5), (2, 4)), ((3, 3), (5, 4)), ((2, 3), (4, 5)), ((6, 4), (1, 2))]
    boundaries = [("fill", 0), ("fill", 1.5), ("wrap", 0), ("symm", 0)]
    for s1, s2 in shapes:
        a, b = rng.normal(size=s1), rng.normal(size=s2)
        x, w = sd.matrix("x", s1), sd.matrix("w", s2)
        for mode in MODES:
            if mode == "valid" and not _one_contains_the_other(s1, s2):
                continue
            for boundary, fill in boundaries:
                got = sd.evaluate(getattr(sd.signal, name)(x, w, mode, boundary, fill), {x: a, w: b})
                want = getattr(signal, name)(a, b, mode, boundary, fill)
                np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-13,
                                           err_msg=f"{s1} {s2} {mode} {boundary} {fill}")
    ints = np.arange(6).reshape(2, 3)
    got = sd.evaluate(getattr(sd.signal, name)(ints, np.ones((2, 2), int), "full", "fill", 1.5), {})
    np.testing.assert_array_equal(got, getattr(signal, name)(ints, np.ones((2, 2), int), "full", "fill", 1.5))


@pytest.mark.parametrize("name", ["convolve2d", "correlate2d"])
def test_signal_2d_run_time_sizes(name):
    signal = _scipy_signal()
    rng = _rng(7)
    x, w = sd.matrix("x"), sd.matrix("w", (2, 3))
    a, b = rng.normal(size=(5, 7)), rng.normal(size=(2, 3))
    for mode in MODES:
        got = sd.evaluate(getattr(sd.signal, name)(x, w, mode), {x: a, w: b})
        np.testing.assert_allclose(got, getattr(signal, name)(a, b, mode), rtol=1e-12, atol=1e-13)
    both = sd.matrix("u")
    got = sd.evaluate(getattr(sd.signal, name)(x, both, "valid"), {x: a, both: b})
    np.testing.assert_allclose(got, getattr(signal, name)(a, b, "valid"), rtol=1e-12, atol=1e-13)


def test_signal_bad_input():
    x = sd.matrix("x", (4, 4))
    with pytest.raises(ValueError, match=r"correlate2d: inputs must both be 2-D arrays.*test_convolution\.py"):
        sd.signal.correlate2d(x, [1.0, 2.0])
    with pytest.raises(ValueError, match=r"convolve2d: for 'valid' mode, one must be at least as large"):
        sd.signal.convolve2d(sd.matrix("a", (2, 5)), sd.matrix("b", (3, 2)), "valid")
    with pytest.raises(ValueError, match=r"correlate2d: acceptable boundary flags"):
        sd.signal.correlate2d(x, x, boundary="reflect")
    with pytest.raises(sd.ShapeError, match=r"convolve2d: boundary='wrap' .* needs in1's sizes statically"):
        sd.signal.convolve2d(sd.matrix("a"), x, "same", "wrap")
    with pytest.raises(sd.DTypeError, match="correlate2d: not available for bool"):
        sd.signal.correlate2d(np.ones((2, 2), bool), np.ones((2, 2), bool))
    with pytest.raises(ValueError, match="convolve: in1 and in2 should have the same dimensionality"):
        sd.signal.convolve(x, sd.vector("v", 2))
    with pytest.raises(ValueError, match="correlate: acceptable method flags"):
        sd.signal.correlate(x, x, method="winograd")


def test_signal_gradients():
    rng = _rng(8)
    x, w = sd.matrix("x", (4, 5)), sd.matrix("w", (2, 3))
    values = {x: rng.normal(size=(4, 5)), w: rng.normal(size=(2, 3))}
    for mode in MODES:
        check_grads(sd.signal.correlate2d(x, w, mode), [x, w], values, order=2, label=f"correlate2d {mode}")
        check_grads(sd.signal.convolve2d(x, w, mode, "symm"), [x, w], values, order=1, label=f"convolve2d {mode}")


# ------------------------------------------------------------------------------------ conv2d


def _pads(padding, kernel, stride, dilation):
    if padding == "valid":
        return [(0, 0), (0, 0)]
    if padding == "same":
        totals = [d * (k - 1) for k, d in zip(kernel, dilation)]
        return [(t // 2, t - t // 2) for t in totals]
    if isinstance(padding, int):
        return [(padding, padding)] * 2
    return [(p, p) if isinstance(p, int) else tuple(p) for p in padding]


def reference_conv2d(x, w, stride=1, padding="valid", dilation=1):
    """A direct definition, independent of the op's: windows of the padded input, strided."""
    stride = (stride, stride) if isinstance(stride, int) else stride
    dilation = (dilation, dilation) if isinstance(dilation, int) else dilation
    pads = _pads(padding, w.shape[2:], stride, dilation)
    xp = np.pad(x, [(0, 0), (0, 0)] + pads)
    kh, kw = [d * (k - 1) + 1 for k, d in zip(w.shape[2:], dilation)]
    windows = sliding_window_view(xp, (kh, kw), axis=(2, 3))[:, :, ::stride[0], ::stride[1], ::dilation[0],
                                                               ::dilation[1]]
    return np.einsum("ncijab,ocab->noij", windows, w)


CONV2D_CASES = [  # x shape, w shape, keyword arguments
    ((2, 3, 7, 6), (4, 3, 3, 3), {}),
    ((2, 3, 7, 6), (4, 3, 3, 3), {"padding": "same"}),
    ((1, 2, 8, 8), (3, 2, 2, 4), {"padding": "same", "dilation": (2, 1)}),
    ((2, 1, 9, 7), (5, 1, 3, 2), {"stride": 2, "padding": 1}),
    ((2, 2, 6, 9), (3, 2, 3, 3), {"stride": (1, 3), "padding": ((2, 0), (1, 2)), "dilation": 2}),
    ((3, 2, 5, 5), (2, 2, 5, 5), {"padding": (1, 2)}),
    ((2, 2, 2, 2), (4, 2, 3, 3), {"padding": 1}),
]


def test_conv2d_matches_a_sliding_window_reference():
    rng = _rng(9)
    for shape_x, shape_w, kwargs in CONV2D_CASES:
        a, b = rng.normal(size=shape_x), rng.normal(size=shape_w)
        want = reference_conv2d(a, b, **kwargs)
        for x in (sd.tensor("x", shape_x), sd.tensor("x", (None, shape_x[1], None, None))):
            w = sd.tensor("w", shape_w)
            y = sd.conv2d(x, w, **kwargs)
            assert y.type.shape[1] == shape_w[0]
            got = sd.evaluate(y, {x: a, w: b})
            np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-13, err_msg=f"{x.type} {kwargs}")


def test_conv2d_gradients_and_hvp():
    rng = _rng(10)
    for shape_x, shape_w, kwargs in CONV2D_CASES[2:5]:
        for x in (sd.tensor("x", shape_x), sd.tensor("x", (None,) + shape_x[1:])):
            w = sd.tensor("w", shape_w)
            values = {x: rng.normal(size=shape_x), w: rng.normal(size=shape_w)}
            y = sd.tanh(sd.conv2d(x, w, **kwargs))
            check_grads(y, [x, w], values, order=2, label=f"conv2d {kwargs}")
            check_hvp(sd.sum(y * y), [x, w], values, label=f"conv2d {kwargs}")


def test_conv2d_bad_input():
    x, w = sd.tensor("x", (None, 3, 8, 8)), sd.tensor("w", (4, 2, 3, 3))
    with pytest.raises(sd.ShapeError, match=r"conv2d: x \(\?, 3, 8, 8\) has 3 channels but w .*expects 2.*"
                                            r"test_convolution\.py:\d+"):
        sd.conv2d(x, w)
    with pytest.raises(sd.ShapeError, match=r"conv2d: x must be \(batch, in_channels, height, width\)"):
        sd.conv2d(sd.matrix("m", (8, 8)), w)
    good = sd.tensor("good", (4, 3, 3, 3))
    with pytest.raises(ValueError, match="conv2d: padding='same' is not supported for strided convolutions"):
        sd.conv2d(x, good, stride=2, padding="same")
    with pytest.raises(ValueError, match="conv2d: padding must be"):
        sd.conv2d(x, good, padding="full")
    with pytest.raises(ValueError, match="conv2d: stride must be an int >= 1"):
        sd.conv2d(x, good, stride=0)
    with pytest.raises(sd.ShapeError, match=r"conv2d: the kernel \(9, 9\) .* is larger than the padded input"):
        sd.conv2d(x, sd.tensor("big", (4, 3, 9, 9)))
    with pytest.raises(sd.DTypeError, match="conv2d: bool inputs"):
        sd.conv2d(np.ones((1, 1, 3, 3), bool), np.ones((1, 1, 2, 2), bool))
    unknown = sd.tensor("u", (None, None, 8, 8))
    y = sd.conv2d(unknown, good)
    with pytest.raises(sd.ShapeError, match=r"conv at .*test_convolution\.py:\d+: x has 2 channels but the filter"):
        sd.evaluate(y, {unknown: np.ones((1, 2, 8, 8)), good: np.ones((4, 3, 3, 3))})


def test_conv_op_shape_rule_errors():
    x, w = sd.tensor("x", (1, 2, 5)), sd.tensor("w", (3, 2, 2))
    with pytest.raises(sd.ShapeError, match="conv: a transposed conv needs a third input"):
        CONV(x, w, strides=(1,), dilation=(1,), padding=((0, 0),), transpose=True, cover=False)
    with pytest.raises(sd.ShapeError, match="strides .* must be >= 1"):
        CONV(x, w, strides=(0,), dilation=(1,), padding=((0, 0),), transpose=False, cover=False)
    with pytest.raises(sd.DTypeError, match="conv: needs x and w of one dtype"):
        CONV(sd.tensor("b", (1, 2, 5), "bool"), sd.tensor("c", (3, 2, 2), "bool"), strides=(1,), dilation=(1,),
             padding=((0, 0),), transpose=False, cover=False)


# ---------------------------------------------------------------------------- compiled kernels


def _compiled_problem():
    """(symbols, outputs, values at two run-time sizes) for one kernel that calls every helper
    of the Numba lowering: conv2d with strides, dilation, explicit and 'same' padding, a
    batch of one and of three, values and gradients, in
    float64 and float32 (with channels known only at run time); 1-d convolutions of a
    signal of run-time length; an integer conv.  (The registry tests compile every sample
    of the op and its gradients too; a kernel's compile time grows faster than its size,
    so this one stays small.)"""
    rng = _rng(11)
    symbols, outputs, values = [], [], [{}, {}]

    def add(syms, outs, shapes, draw=rng.normal):
        symbols.extend(syms)
        outputs.extend(outs)
        for k, batch in enumerate((1, 3)):
            for s, shape in zip(syms, shapes):
                values[k][s] = draw(size=tuple(batch if d is None else d for d in shape))

    for i in (1, 4):
        shape_x, shape_w, kwargs = CONV2D_CASES[i]
        x, w = sd.tensor(f"x{i}", (None,) + shape_x[1:]), sd.tensor(f"w{i}", shape_w)
        y = sd.conv2d(x, w, **kwargs)
        g = sd.tensor(f"g{i}", (None,) + y.type.shape[1:])
        add([x, w, g], [y, *sd.grad(sd.sum(y * g), [x, w])], [x.type.shape, shape_w, g.type.shape])
    x, w = sd.tensor("x32", (None, None, 6, 6), "float32"), sd.tensor("w32", (8, 3, 3, 3), "float32")
    y = sd.conv2d(x, w, padding="same")
    add([x, w], [y, *sd.grad(sd.sum(y * y), [x, w])], [(None, 3, 6, 6), (8, 3, 3, 3)],
        lambda size: rng.normal(size=size).astype(np.float32))
    signal, taps = sd.vector("signal"), sd.vector("taps", 5)
    y = sd.convolve(signal, taps, "same") + sd.correlate(signal, taps, "same")[::-1]
    add([signal, taps], [y, *sd.grad(sd.sum(y * y), [signal, taps])], [(None,), (5,)])
    counts = sd.tensor("counts", (None, 2, 6, 6), "int64")
    kernel = sd.constant(np.arange(24).reshape(3, 2, 2, 2))
    add([counts], [sd.conv2d(counts, kernel, padding=1)], [(None, 2, 6, 6)], lambda size: rng.integers(-5, 5, size))
    for k, n in enumerate((9, 6)):  # run-time signal lengths, longer than the taps
        values[k][signal] = rng.normal(size=n)
    return symbols, outputs, values


@pytest.fixture(scope="module")
def compiled():
    pytest.importorskip("numba")
    symbols, outputs, values = _compiled_problem()
    return sd.function(symbols, outputs), symbols, outputs, values


def test_compiled_matches_the_reference(compiled):
    f, symbols, outputs, values = compiled
    for helper in ("_conv_gemm", "_conv_transposed_gemm", "_conv_filter_gemm", "_conv_taps", "_conv_positions",
                   "_conv_scatter"):
        assert re.search(rf"\b{helper}\(", f.source), f"no {helper} call in the kernel"
    for k, point in enumerate(values):
        got = f(*[point[s] for s in symbols])
        want = sd.evaluate(outputs, point)
        for j, (g, w) in enumerate(zip(got, want)):
            assert np.shape(g) == np.shape(w) and np.asarray(g).dtype == np.asarray(w).dtype, f"output {j}"
            # float32: sums of hundreds of terms, compared relative to the output's scale
            scale = 2e-5 * max(float(np.max(np.abs(w), initial=0)), 1) if np.asarray(w).dtype == np.float32 else 1e-11
            np.testing.assert_allclose(g, w, rtol=1e-10, atol=scale, err_msg=f"output {j} at batch {k}")


def test_compiled_run_time_size_errors(compiled):
    f, symbols, _, values = compiled
    point = dict(values[0])
    point[symbols[symbols.index(next(s for s in symbols if s.name == "signal"))]] = np.ones(3)
    with pytest.raises(sd.ShapeError, match=r"size too small: signal.shape\[0\] is 3, but the filter's span 5"):
        f(*[point[s] for s in symbols])
    point = dict(values[0])
    x32 = next(s for s in symbols if s.name == "x32")
    point[x32] = point[x32][:, :2]
    with pytest.raises(sd.ShapeError, match=r"sizes do not agree: x32.shape\[1\] is 2 but .* is 3 .*conv at "
                                            r".*test_convolution\.py"):
        f(*[point[s] for s in symbols])
