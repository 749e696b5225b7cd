"""Cumulative and ordering functions against NumPy's own, their derivatives, and one compiled kernel.

Every public function is compared with NumPy on random inputs: static shapes and sizes
known only at run time (None), negative axes, axis=None (flattened), empty arrays, the
integer, bool and float32 dtypes NumPy accepts, and NaN where NumPy defines the result.
Derivatives are checked against finite differences (``check_grads``, ``check_hvp``), and
cumprod's against exact polynomial derivatives at zeros.  The registry-generated tests
(tests/test_ops.py, tests/test_codegen.py) cover the primitives themselves.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

import symdiff as sd
from symdiff.testing import check_grads, check_hvp
from symdiff.types import dtype_of_array

RNG = np.random.default_rng(20261203)


def _symbol(value, static: bool, name="a", run_time=None):
    """A symbol for ``value``: its static shape, or None for the dims ``run_time`` (default all)."""
    value = np.asarray(value)
    run_time = range(value.ndim) if run_time is None else run_time
    shape = value.shape if static else tuple(None if k in run_time else d for k, d in enumerate(value.shape))
    return sd.tensor(name, shape, dtype_of_array(value))


def _same(got, want, label):
    got, want = np.asarray(got), np.asarray(want)
    assert got.shape == want.shape, f"{label}: shape {got.shape}, NumPy {want.shape}"
    assert got.dtype == want.dtype, f"{label}: dtype {got.dtype}, NumPy {want.dtype}"
    np.testing.assert_array_equal(got, want, err_msg=label)
    if got.dtype.kind == "f":  # signed zeros too
        np.testing.assert_array_equal(np.signbit(got), np.signbit(want), err_msg=f"{label} (signs)")


def _compare(ours, theirs, value, label, signed=True, tolerance=None, run_time=None):
    """ours(symbol) against theirs(value), with static and run-time shapes."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # NumPy's "Mean of empty slice" and friends
        want = theirs(np.asarray(value))
    for static in (True, False):
        a = _symbol(value, static, run_time=run_time)
        got = sd.evaluate(ours(a), {a: value})
        text = f"{label} ({'static' if static else 'None'} shape {np.shape(value)})"
        if tolerance is not None:
            assert np.asarray(got).dtype == np.asarray(want).dtype, text
            np.testing.assert_allclose(got, want, rtol=tolerance, err_msg=text)
        elif signed:
            _same(got, want, text)
        else:
            np.testing.assert_array_equal(got, want, err_msg=text)


VALUES = {
    "vector": RNG.normal(size=7),
    "matrix": RNG.normal(size=(4, 5)),
    "cube": RNG.normal(size=(2, 3, 4)),
    "empty": np.zeros((0,)),
    "empty rows": np.zeros((0, 3)),
    "empty columns": np.zeros((3, 0)),
    "float32": RNG.normal(size=(3, 4)).astype(np.float32),
    "int64": RNG.integers(-5, 6, size=(3, 4)),
    "bool": RNG.random((3, 4)) > 0.5,
    "ties and zeros": np.array([[0.0, -0.0, 1.0, 1.0, -2.0], [3.0, 0.0, 0.0, -0.0, 3.0]]),
}


def _axes(value):
    """Every axis, negative ones, and None."""
    return [None] + list(range(-np.ndim(value), np.ndim(value)))


# ----------------------------------------------------------------- cumulative


@pytest.mark.parametrize("name", sorted(VALUES))
@pytest.mark.parametrize("fn", ["cumsum", "cumprod"])
def test_cumulative_matches_numpy(fn, name):
    value = VALUES[name]
    for axis in _axes(value):
        _compare(lambda a: getattr(sd, fn)(a, axis=axis), lambda v: getattr(np, fn)(v, axis=axis), value,
                 f"{fn} axis={axis} of {name}")
    _compare(lambda a: getattr(sd, fn)(a, dtype="float32"), lambda v: getattr(np, fn)(v, dtype=np.float32), value,
             f"{fn} dtype=float32 of {name}")


def test_cumulative_of_a_scalar_and_bad_arguments():
    a = sd.scalar("a")
    _same(sd.evaluate(sd.cumsum(a), {a: 2.5}), np.cumsum(2.5), "cumsum of a scalar")
    _same(sd.evaluate(sd.cumprod(a * 2), {a: 2.5}), np.cumprod(5.0), "cumprod of a scalar")
    x = sd.vector("x", 3)
    with pytest.raises(sd.ShapeError, match="cumsum: axis 1 is out of bounds"):
        sd.cumsum(x, axis=1)
    with pytest.raises(TypeError, match="cumprod: axis must be an int or None"):
        sd.cumprod(x, axis=(0,))
    with pytest.raises(sd.DTypeError, match="cumsum: a bool accumulation"):
        sd.cumsum(x, dtype="bool")


def test_cumsum_gradient_is_a_reverse_running_sum():
    x = sd.vector("x")
    w = RNG.normal(size=6)
    g = sd.evaluate(sd.grad(sd.sum(sd.cumsum(x) * w), x), {x: RNG.normal(size=6)})
    np.testing.assert_allclose(g, np.cumsum(w[::-1])[::-1], rtol=1e-14)


@pytest.mark.parametrize("axis", [0, -1, None])
def test_cumulative_derivatives(axis):
    X = RNG.normal(size=(3, 4))
    check_grads(lambda a: sd.cumsum(sd.sin(a), axis=axis) ** 2, values=[X], order=2)
    check_grads(lambda a: sd.cumprod(a, axis=axis), values=[X], order=3)
    check_hvp(lambda a: sd.sum(sd.cumprod(a, axis=axis) * sd.cumsum(a, axis=axis)), values=[X])


def _polynomial_derivatives(x, u, w, order):
    """d^k/dt^k of sum_j w[j] * prod_{m<=j} (x[m] + t u[m]) at t = 0, exactly (a polynomial in t)."""
    total = np.zeros(len(x) + 1)
    running = np.array([1.0])
    for xm, um, wj in zip(x, u, w):
        running = np.convolve(running, [xm, um])  # coefficients in increasing powers of t
        total[:running.size] += wj * running
    return [math.factorial(k) * total[k] for k in range(1, order + 1)]


@pytest.mark.parametrize("zeros", [(), (2,), (1, 4), (0, 2, 3), (1, 2, 3, 5)])
def test_cumprod_derivatives_are_exact_at_zeros_to_every_order(zeros):
    """The reverse and forward rules multiply and add, never divide: no NaN at zeros, and
    every derivative order equals the exact derivatives of the polynomial."""
    n = 6
    x0 = RNG.uniform(0.5, 2.0, size=n) * RNG.choice([-1, 1], size=n)
    x0[list(zeros)] = 0.0
    u, w = RNG.normal(size=n), RNG.normal(size=n)
    exact = _polynomial_derivatives(x0, u, w, 4)
    x, t = sd.vector("x", n), sd.scalar("t")
    line = sd.sum(sd.cumprod(x + t * u) * w)
    forward = [sd.derivative(line, t, k) for k in range(1, 5)]  # nested forward mode
    reverse, g = [], line
    for _ in range(4):  # repeated reverse mode of the scalar t
        g = sd.grad(g, t, mode="rev")
        reverse.append(g)
    for label, exprs in (("forward", forward), ("reverse", reverse)):
        got = sd.evaluate(exprs, {x: x0, t: 0.0})
        for k, (value, want) in enumerate(zip(got, exact), start=1):
            assert np.isfinite(value), f"{label} derivative {k} at zeros {zeros} is {value}"
            assert abs(value - want) <= 1e-12 * (1 + abs(want)), f"{label} order {k}: {value} vs {want}"
    hessian = sd.evaluate(sd.hessian(sd.sum(sd.cumprod(x) * w), x), {x: x0})
    assert np.all(np.isfinite(hessian))


# ---------------------------------------------------------------- differences


@pytest.mark.parametrize("name", sorted(VALUES))
def test_diff_matches_numpy(name):
    value = VALUES[name]
    if np.ndim(value) == 0:
        return
    for axis in range(-np.ndim(value), np.ndim(value)):
        for n in (0, 1, 2, 7):
            _compare(lambda a: sd.diff(a, n=n, axis=axis), lambda v: np.diff(v, n=n, axis=axis), value,
                     f"diff n={n} axis={axis} of {name}")
        if value.dtype != bool:
            _compare(lambda a: sd.diff(a, axis=axis, prepend=1.5, append=-2), lambda v: np.diff(
                v, axis=axis, prepend=1.5, append=-2), value, f"diff with prepend/append axis={axis} of {name}")


def test_diff_with_array_blocks_and_errors():
    X = sd.matrix("X", (None, 3))
    value = RNG.normal(size=(4, 3))
    block = RNG.normal(size=(2, 3))
    _same(sd.evaluate(sd.diff(X, axis=0, prepend=block), {X: value}), np.diff(value, axis=0, prepend=block),
          "diff with an array prepend")
    check_grads(lambda a: sd.diff(a, n=2, axis=0, append=a[:1] * 3), values=[value], order=2)
    with pytest.raises(ValueError, match="order must be non-negative"):
        sd.diff(X, n=-1)
    with pytest.raises(ValueError, match="at least one dimensional"):
        sd.diff(sd.scalar("s"))
    with pytest.raises(sd.ShapeError, match="diff: prepend"):
        sd.diff(X, prepend=np.zeros(3))


# -------------------------------------------------------------- flip and roll


@pytest.mark.parametrize("name", sorted(VALUES))
def test_flip_and_roll_match_numpy(name):
    value = VALUES[name]
    for axis in _axes(value) + ([(0, -1)] if np.ndim(value) > 1 else []):
        _compare(lambda a: sd.flip(a, axis), lambda v: np.flip(v, axis), value, f"flip axis={axis} of {name}")
    for shift in (0, 1, -3, 11):
        for axis in _axes(value):
            _compare(lambda a: sd.roll(a, shift, axis), lambda v: np.roll(v, shift, axis), value,
                     f"roll {shift} axis={axis} of {name}")
    if np.ndim(value) > 1:
        _compare(lambda a: sd.roll(a, (2, -1, 1), (0, 1, 0)), lambda v: np.roll(v, (2, -1, 1), (0, 1, 0)), value,
                 f"roll by tuples of {name}")


def test_roll_run_time_shift_modulo_and_errors():
    x = sd.vector("x")
    for n in (1, 2, 5):
        value = np.arange(float(n))
        for shift in (7, -7, 2**40 + 3, -(2**40) - 3):
            _same(sd.evaluate(sd.roll(x, shift), {x: value}), np.roll(value, shift), f"roll {shift} of {n}")
    check_grads(lambda a: sd.roll(a, 3, axis=1) * sd.flip(a, 0), values=[RNG.normal(size=(3, 4))], order=2)
    check_grads(sd.roll(sd.matrix("X"), 5), None, {"X": RNG.normal(size=(3, 4))}, order=1)
    with pytest.raises(ValueError, match="should be scalars or 1D sequences of the same length"):
        sd.roll(sd.matrix("X"), (1, 2, 3), (0, 1))
    with pytest.raises(TypeError, match="roll: shift and axis must be static ints"):
        sd.roll(x, 1.5)


# --------------------------------------------------------- argmax and argmin


NAN_VALUES = np.array([[1.0, np.nan, 3.0, np.nan], [2.0, 2.0, -1.0, -1.0], [-np.inf, 0.0, -0.0, np.inf]])


@pytest.mark.parametrize("name", sorted(VALUES) + ["nan"])
def test_argmax_argmin_match_numpy(name):
    value = NAN_VALUES if name == "nan" else VALUES[name]
    for fn in ("argmax", "argmin"):
        for axis in _axes(value):
            for keepdims in (False, True):
                if np.size(value) == 0 and (axis is None or np.shape(value)[axis] == 0):
                    continue  # NumPy raises; see test_argmax_of_an_empty_axis
                _compare(lambda a: getattr(sd, fn)(a, axis, keepdims=keepdims),
                         lambda v: getattr(np, fn)(v, axis, keepdims=keepdims), value,
                         f"{fn} axis={axis} keepdims={keepdims} of {name}")


def test_argmax_of_an_empty_axis():
    with pytest.raises(sd.ShapeError, match="argmax of an empty axis"):
        sd.argmax(sd.matrix("E", (3, 0)), axis=1)
    e = sd.vector("e")
    with pytest.raises(sd.ShapeError):
        sd.evaluate(sd.argmin(e), {e: np.zeros(0)})
    assert sd.argmax(e).dtype == "int64"
    assert sd.grad(sd.sum(sd.astype(sd.argmax(e), "float64") * e), e) is not None


# ---------------------------------------------------------------- sorting


@pytest.mark.parametrize("name", sorted(VALUES) + ["nan"])
def test_sort_and_argsort_match_numpy(name):
    value = NAN_VALUES if name == "nan" else VALUES[name]
    for axis in _axes(value):
        _compare(lambda a: sd.argsort(a, axis), lambda v: np.argsort(v, axis, kind="stable"), value,
                 f"argsort axis={axis} of {name}")
        # np.sort may order 0.0 and -0.0 either way: values compared, not signs
        _compare(lambda a: sd.sort(a, axis), lambda v: np.sort(v, axis), value, f"sort axis={axis} of {name}",
                 signed=False)


def test_sort_gradient_is_a_gather_through_the_permutation():
    x = sd.vector("x")
    value = np.array([0.3, -1.2, 2.5, 0.1])
    weights = RNG.normal(size=4)
    g = sd.evaluate(sd.grad(sd.sum(sd.sort(x) * weights), x), {x: value})
    expected = np.empty(4)
    expected[np.argsort(value)] = weights
    np.testing.assert_array_equal(g, expected)
    check_grads(lambda a: sd.sort(a, axis=0) ** 3, values=[RNG.normal(size=(5, 3))], order=2)
    check_hvp(lambda a: sd.sum(sd.sort(a * a, axis=-1) * np.arange(4.0)), values=[RNG.normal(size=(2, 4))])


def test_sort_errors():
    with pytest.raises(sd.ShapeError, match="sort: axis -1 is out of bounds for 0-d input"):
        sd.sort(sd.scalar("s"))
    s = sd.scalar("s")
    _same(sd.evaluate(sd.sort(s, axis=None), {s: 2.0}), np.sort(2.0, axis=None), "sort of a scalar, flattened")
    with pytest.raises(ValueError, match="kind must be one of"):
        sd.argsort(sd.vector("x"), kind="bogo")
    with pytest.raises(ValueError, match="structured arrays"):
        sd.sort(sd.vector("x"), order="f")


# ------------------------------------------------------- order statistics


ORDER_VALUES = dict(VALUES, nan=NAN_VALUES, odd=RNG.normal(size=(5, 3)), big=RNG.normal(size=(3, 2, 5)))


@pytest.mark.parametrize("name", sorted(ORDER_VALUES))
def test_median_matches_numpy(name):
    value = ORDER_VALUES[name]
    axes = _axes(value) + ([(0, -1)] if np.ndim(value) > 2 else [])
    for axis in axes:
        for keepdims in (False, True):
            _compare(lambda a: sd.median(a, axis, keepdims=keepdims),
                     lambda v: np.median(v, axis, keepdims=keepdims), value,
                     f"median axis={axis} keepdims={keepdims} of {name}", signed=False,
                     run_time=_merge_limit(axis))


def _merge_limit(axis):
    """Several reduced axes are merged by a reshape, which infers one run-time size: run-time dims on axis 0 only."""
    return (0,) if isinstance(axis, tuple) else None


QUANTILES = [0.5, 0.0, 1.0, 0.3, [0.1, 0.5, 0.99], [[0.25, 0.75], [1.0, 0.6]], np.float32(0.7), [0, 1], 1]


@pytest.mark.parametrize("name", sorted(ORDER_VALUES))
def test_quantile_and_percentile_match_numpy(name):
    value = ORDER_VALUES[name]
    if value.dtype == bool:
        with pytest.raises(TypeError, match="quantile: bool input"):
            sd.quantile(_symbol(value, True), 0.5)
        return
    for axis in _axes(value) + ([(0, -1)] if np.ndim(value) > 2 else []):
        if np.size(value) == 0 and (axis is None or any(np.shape(value)[a] == 0 for a in np.atleast_1d(axis))):
            continue  # NumPy raises IndexError: test_quantile_of_an_empty_slice
        for q in QUANTILES:
            for keepdims in (False, True):
                _compare(lambda a: sd.quantile(a, q, axis, keepdims=keepdims),
                         lambda v: np.quantile(v, q, axis, keepdims=keepdims), value,
                         f"quantile q={q} axis={axis} keepdims={keepdims} of {name}", signed=False,
                         run_time=_merge_limit(axis))
        for q in (50, 12.5, [0, 37, 100]):
            _compare(lambda a: sd.percentile(a, q, axis), lambda v: np.percentile(v, q, axis), value,
                     f"percentile q={q} axis={axis} of {name}", signed=False, run_time=_merge_limit(axis))


def test_quantile_of_an_empty_slice_and_bad_arguments():
    with pytest.raises(IndexError):
        sd.quantile(sd.vector("e", 0), 0.5)
    e = sd.vector("e")
    with pytest.raises(IndexError):
        sd.evaluate(sd.quantile(e, 0.5), {e: np.zeros(0)})
    x = sd.vector("x")
    with pytest.raises(ValueError, match="Quantiles must be in the range"):
        sd.quantile(x, 1.5)
    with pytest.raises(ValueError, match="Percentiles must be in the range"):
        sd.percentile(x, [10, -1])
    with pytest.raises(ValueError, match="only method='linear'"):
        sd.quantile(x, 0.5, method="nearest")
    with pytest.raises(ValueError, match="scalar or 1d"):
        sd.quantile(x, np.full((2, 2, 2), 0.5))
    with pytest.raises(TypeError, match="q must be a static number"):
        sd.quantile(x, sd.scalar("q"))
    with pytest.raises(TypeError, match="out= is not supported"):
        sd.median(x, out=np.zeros(()))
    with pytest.raises(sd.ShapeError, match="only one size known at run time"):
        sd.median(sd.tensor("T", (None, None, None)), axis=(0, 2))


def test_order_statistics_derivatives():
    value = RNG.normal(size=(4, 5))
    check_grads(lambda a: sd.median(a, axis=1), values=[value], order=2)
    check_grads(lambda a: sd.median(a, axis=0), values=[value], order=2)
    check_grads(lambda a: sd.quantile(a, [0.1, 0.35, 1.0], axis=-1), values=[value], order=2)
    check_grads(lambda a: sd.percentile(a * a, 62.5), values=[value], order=2)
    check_hvp(lambda a: sd.sum(sd.quantile(a * a, [0.3, 0.8], axis=0) ** 2), values=[value])
    X = sd.matrix("X")  # run-time sizes: the positions are computed when the values arrive
    check_grads(sd.quantile(X, [0.2, 0.9], axis=1), X, {X: value}, order=2)
    check_grads(sd.median(X, axis=1), X, {X: value}, order=1)
    x = sd.vector("x")  # the derivative of the median goes to the middle elements
    g = sd.evaluate(sd.grad(sd.median(x), x), {x: [4.0, 1.0, 3.0, 2.0]})
    np.testing.assert_array_equal(g, [0.0, 0.0, 0.5, 0.5])


# --------------------------------------------------------- max/min initial


@pytest.mark.parametrize("name", sorted(VALUES) + ["nan"])
@pytest.mark.parametrize("fn", ["max", "min"])
def test_max_min_with_initial_match_numpy(fn, name):
    value = NAN_VALUES if name == "nan" else VALUES[name]
    initial = {"int64": 2.7, "bool": True}.get(name, 0.25)
    for axis in _axes(value) + ([(0, -1)] if np.ndim(value) > 1 else []):
        for keepdims in (False, True):
            _compare(lambda a: getattr(sd, fn)(a, axis, keepdims=keepdims, initial=initial),
                     lambda v: getattr(np, fn)(v, axis, keepdims=keepdims, initial=initial), value,
                     f"{fn} initial={initial} axis={axis} keepdims={keepdims} of {name}")


def test_max_with_initial_derivatives_and_errors():
    value = RNG.normal(size=(3, 4))
    check_grads(lambda a: sd.max(a * a, axis=0, initial=0.7), values=[value], order=2)
    check_grads(lambda a: sd.min(a, axis=1, keepdims=True, initial=-0.2), values=[value], order=2)
    X = sd.matrix("X")
    check_grads(sd.max(X, axis=1, initial=0.5), X, {X: value}, order=2)
    with pytest.raises(TypeError, match="initial must be a static number"):
        sd.max(X, initial=sd.scalar("s"))


# ------------------------------------------------------------------ compiled


def test_compiled_kernel_matches_reference():
    """One kernel: every function on run-time sizes, values and gradients, at three sizes."""
    pytest.importorskip("numba")
    X = sd.matrix("X", (None, 4))
    x = sd.vector("x")
    outputs = [  # each lowering path once: recurrences along a carried local and along whole rows, both
        # directions (in the gradient), with and without init; argsort's helpers for floats and ints;
        # gathers with one and with several index arrays; blocks over run-time sizes
        sd.cumsum(X, axis=0), sd.cumprod(X, axis=0), sd.cumprod(x), sd.diff(x, n=2, prepend=0.0), sd.flip(X),
        sd.roll(X, 1, axis=1), sd.roll(x, 3), sd.argmax(X, axis=0), sd.argmin(x), sd.argsort(X, axis=0),
        sd.sort(X, axis=1), sd.median(X, axis=0), sd.median(x), sd.quantile(X, [0.2, 0.9], axis=1),
        sd.quantile(x, 0.3), sd.max(X, axis=0, initial=0.5), sd.sort(X > 0, axis=0), sd.argmax(X > 0.5, axis=1),
        sd.argsort(sd.astype(X * 3, "int64"), axis=0), sd.cumsum(X > 0, axis=1), sd.median(sd.astype(x, "float32")),
        sd.cumprod(sd.astype(X, "float32"), axis=0),
    ]
    cost = (sd.sum(sd.cumsum(x) ** 2) + sd.sum(sd.cumprod(X, axis=1) * X) + sd.sum(sd.sort(X, axis=0) * X)
            + sd.sum(sd.quantile(X, [0.25, 0.6], axis=1) ** 2) + sd.median(x * x) + sd.sum(sd.roll(x, 2) * x))
    outputs += sd.grad(cost, [X, x])
    outputs.append(sd.hvp(sd.sum(sd.cumprod(X, axis=0) ** 2), X, sd.constant(np.ones(4)) * X))
    f = sd.function([X, x], outputs)
    for n in (1, 4, 7, 300):  # 300: argsort's radix path
        values = {X: RNG.normal(size=(n, 4)), x: RNG.normal(size=n)}
        values[X][0, 1] = 0.0  # cumprod through a zero
        got = f(values[X], values[x])
        want = sd.evaluate(outputs, values)
        for k, (g, w) in enumerate(zip(got, want)):
            g, w = np.asarray(g), np.asarray(w)
            assert g.shape == w.shape, f"output {k} at n={n}: shape {g.shape}, reference {w.shape}"
            assert g.dtype == w.dtype, f"output {k} at n={n}: dtype {g.dtype}, reference {w.dtype}"
            np.testing.assert_allclose(g, w, rtol=1e-12, atol=1e-13, err_msg=f"output {k} at n={n}")


@pytest.mark.parametrize("n", [0, 1, 5, 127, 128, 3000, 70000])
def test_compiled_stable_argsort_matches_numpy(n):
    """The kernels' argsort helper (insertion sort below 128 keys, radix sort with 8-bit
    digits, then 11-bit from 65536) is np.argsort(kind="stable"): NaN last (either sign),
    -0.0 tied with 0.0, subnormals, infinities, int64 extremes, bools."""
    pytest.importorskip("numba")
    from symdiff.backends.ordering_runtime import _argsort_floats, _argsort_integers

    rng = np.random.default_rng(n)
    cases = {
        "normal": rng.normal(size=n),
        "ties": rng.integers(-3, 4, size=n).astype(float),
        "zeros and subnormals": rng.choice([0.0, -0.0, 1.0, -1.0, 5e-324, -5e-324], size=n),
        "infinities": rng.choice([np.inf, -np.inf, 1e308, -1e308, 0.0], size=n),
        "float32 with NaN": np.where(rng.random(n) < 0.2, np.float32(np.nan), rng.normal(size=n).astype(np.float32)),
        "int64 extremes": rng.integers(np.iinfo(np.int64).min, np.iinfo(np.int64).max, size=n, dtype=np.int64),
        "int64 small": rng.integers(-5, 5, size=n),
        "bool": rng.random(n) > 0.5,
    }
    nan = rng.normal(size=n)
    nan[rng.random(n) < 0.3] = np.nan
    nan[rng.random(n) < 0.1] = -np.nan
    cases["NaN of both signs"] = nan
    for label, values in cases.items():
        want = np.argsort(values, kind="stable")
        if values.dtype.kind == "f":  # kernels widen float32 to float64 and bool to int64 first
            got = _argsort_floats(values.astype(np.float64))
        else:
            got = _argsort_integers(values.astype(np.int64))
        np.testing.assert_array_equal(got, want, err_msg=f"{label}, n={n}")
