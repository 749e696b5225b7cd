"""var, std, average, cov and corrcoef against NumPy: axis (negative, tuples, None),
ddof, keepdims, weights, empty arrays, sizes known only at run time, dtypes; gradients
against finite differences; the two-pass variance's accuracy; and bad input."""

from __future__ import annotations

import numpy as np
import pytest

import symdiff as sd
from symdiff.testing import check_grads, check_hvp

SHAPE = (3, 4, 5)
MOMENTS = [
    dict(), dict(axis=0), dict(axis=-1), dict(axis=(0, 2)), dict(axis=1, ddof=1), dict(axis=-2, keepdims=True),
    dict(axis=None, ddof=2, keepdims=True), dict(axis=(-1, 0), ddof=1, keepdims=True),
]


@pytest.mark.parametrize("name", ["var", "std"])
@pytest.mark.parametrize("kwargs", MOMENTS, ids=[str(k) for k in MOMENTS])
def test_moments_match_numpy(name, kwargs):
    rng = np.random.default_rng(0)
    x = rng.normal(size=SHAPE) * 3 + 1
    want = getattr(np, name)(x, **kwargs)
    for declared in (SHAPE, (None, 4, None), (None, None, None)):
        X = sd.tensor("X", declared)
        got = sd.evaluate(getattr(sd, name)(X, **kwargs), {X: x})
        assert np.shape(got) == np.shape(want)
        np.testing.assert_allclose(got, want, rtol=1e-13)
    check_grads(lambda X: getattr(sd, name)(X, **kwargs), values=[x], order=2)


def test_variance_is_two_pass():
    """A mean far from zero against a unit spread: E[x^2] - E[x]^2 would lose every digit."""
    rng = np.random.default_rng(1)
    x = 1e8 + rng.normal(size=1000)
    X = sd.vector("X")
    got = sd.evaluate(sd.var(X), {X: x})
    np.testing.assert_allclose(got, np.var(x), rtol=1e-9)
    exact = np.var(x - 1e8)
    np.testing.assert_allclose(got, exact, rtol=1e-7)
    # ... and its gradient keeps relative accuracy: 2 (x - mean) / N
    grad = sd.evaluate(sd.grad(sd.var(X), X), {X: x})
    np.testing.assert_allclose(grad, 2 * (x - x.mean()) / x.size, rtol=1e-7, atol=1e-10)  # mean's ulp / N


def test_moments_dtypes_and_edge_cases():
    ints = np.arange(6).reshape(2, 3)
    for name in ("var", "std"):
        fn, np_fn = getattr(sd, name), getattr(np, name)
        got = sd.evaluate(fn(sd.constant(ints), axis=0), {})
        assert got.dtype == np_fn(ints, axis=0).dtype == np.float64
        np.testing.assert_allclose(got, np_fn(ints, axis=0))
        f32 = np.linspace(0, 1, 6, dtype=np.float32)
        assert sd.evaluate(fn(sd.constant(f32)), {}).dtype == np.float32
        assert sd.evaluate(fn(sd.constant(ints), dtype="float32"), {}).dtype == np.float32
        # std is norm(x - mean) / sqrt(N - ddof), NumPy's sqrt(var): within an ulp of each other
        np.testing.assert_allclose(sd.evaluate(fn(sd.constant([True, False, True])), {}),
                                   np_fn([True, False, True]), rtol=2 ** -52)
        with np.errstate(all="ignore"), pytest.warns(RuntimeWarning):
            for array, kwargs in [(np.zeros(0), {}), (np.ones(3), {"ddof": 3}), (np.ones(3), {"ddof": 5}),
                                  (np.zeros((0, 2)), {"axis": 0})]:
                want = np_fn(array, **kwargs)
                for declared in (array.shape, (None,) * array.ndim):
                    X = sd.tensor("X", declared)
                    np.testing.assert_array_equal(sd.evaluate(fn(X, **kwargs), {X: array}), want)


def test_std_at_zero_variance():
    """The value is 0, as NumPy; the derivative is 0, the norm's subgradient (std is not
    differentiable there; JAX gives nan)."""
    X = sd.vector("X")
    x = np.full(4, 2.5)
    assert sd.evaluate(sd.std(X), {X: x}) == 0.0
    np.testing.assert_array_equal(sd.evaluate(sd.grad(sd.std(X), X), {X: x}), 0.0)


AVERAGES = [  # (keywords, shape of a, shape of the weights, run-time declarations of a and the weights)
    (dict(), (3, 4), None, [(None, None)]), (dict(axis=1), (3, 4), None, [(None, None)]),
    (dict(axis=-1), (3, 4), (3, 4), [(None, None), (None, None)]),
    (dict(axis=0), (3, 4), (3,), [(None, None), (None,)]), (dict(axis=1), (3, 4), (4,), [(None, None), (None,)]),
    (dict(axis=None), (3, 4), (3, 4), [(None, None), (None, None)]),
    (dict(axis=(0, 2), keepdims=True), (2, 3, 4), (2, 4), [(None, None, None), (None, None)]),
    # Weights with a's number of axes but permuted must differ from a's shape statically (sizes
    # known only at run time would read as weights shaped like a, NumPy's other case).
    (dict(axis=(1, 0)), (3, 4), (4, 3), [(3, None), (4, None)]),
]


@pytest.mark.parametrize("kwargs, shape, weights, runtime", AVERAGES, ids=[f"{k}-{w}" for k, _, w, _ in AVERAGES])
def test_average_matches_numpy(kwargs, shape, weights, runtime):
    rng = np.random.default_rng(2)
    x = rng.normal(size=shape)
    w = None if weights is None else rng.uniform(0.5, 2.0, size=weights)
    want, want_scale = np.average(x, weights=w, returned=True, **kwargs)
    for declared in ([shape, weights], runtime):
        X = sd.tensor("X", declared[0])
        W = None if w is None else sd.tensor("W", declared[1])
        values = {X: x} if w is None else {X: x, W: w}
        got, scale = sd.evaluate(list(sd.average(X, weights=W, returned=True, **kwargs)), values)
        assert np.shape(got) == np.shape(want) and np.shape(scale) == np.shape(want_scale)
        np.testing.assert_allclose(got, want, rtol=1e-13)
        np.testing.assert_allclose(scale, want_scale, rtol=1e-13)
    if w is None:
        check_grads(lambda X: sd.average(X, **kwargs), values=[x], order=2)
    else:
        check_grads(lambda X, W: sd.average(X, weights=W, **kwargs), values=[x, w], order=2)


def test_average_dtypes_and_errors():
    ints = np.arange(6).reshape(2, 3)
    got = sd.evaluate(sd.average(sd.constant(ints), axis=1, weights=[1, 2, 3]), {})
    want = np.average(ints, axis=1, weights=[1, 2, 3])
    assert got.dtype == want.dtype
    np.testing.assert_allclose(got, want)
    f32 = ints.astype(np.float32)
    for w in (f32[0], ints[0], ints[0].astype(np.float64)):
        want = np.average(f32, axis=1, weights=w)
        assert sd.evaluate(sd.average(sd.constant(f32), axis=1, weights=sd.constant(w)), {}).dtype == want.dtype
    with pytest.raises(TypeError, match="average: Axis must be specified"):
        sd.average(sd.matrix("X", (2, 3)), weights=sd.vector("w", 3))
    with pytest.raises(sd.ShapeError, match=r"average: Shape of weights .*test_statistics.py"):
        sd.average(sd.matrix("X", (2, 3)), axis=1, weights=sd.vector("w", 2))


COVS = [
    (dict(), [(3, 5)]), (dict(rowvar=False), [(5, 3)]), (dict(bias=True), [(3, 5)]), (dict(ddof=2), [(2, 6)]),
    (dict(), [(5,)]), (dict(), [(5,), (5,)]), (dict(rowvar=False), [(6, 2), (6,)]), (dict(), [(2, 4), (3, 4)]),
    (dict(fweights=[1, 2, 0, 3, 1]), [(3, 5)]), (dict(aweights=[0.5, 1.0, 2.0, 0.1, 1.0]), [(3, 5)]),
    (dict(fweights=[1, 2, 1, 3, 1], aweights=[0.5, 1.0, 2.0, 0.1, 1.0], ddof=2), [(2, 5)]),
    (dict(aweights=[0.5, 1.0, 2.0, 0.1, 1.0], bias=True), [(2, 5)]),
    (dict(ddof=5), [(2, 5)]), (dict(), [(1, 4)]),
]


@pytest.mark.parametrize("kwargs, shapes", COVS, ids=[f"{k}-{s}" for k, s in COVS])
def test_cov_and_corrcoef_match_numpy(kwargs, shapes):
    rng = np.random.default_rng(3)
    values = [rng.normal(size=s) for s in shapes]
    with np.errstate(all="ignore"):
        import warnings
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            want = np.cov(*values, **kwargs)
            want_r = np.corrcoef(*values, rowvar=kwargs.get("rowvar", True))
    runtime = [tuple(None if d not in (1,) else 1 for d in s) for s in shapes]
    for declared in (shapes, runtime):
        symbols = [sd.tensor(f"x{k}", d) for k, d in enumerate(declared)]
        got = sd.evaluate(sd.cov(*symbols, **kwargs), dict(zip(symbols, values)))
        if want.ndim == np.ndim(got):  # run-time sizes keep the axes NumPy squeezes when a size is 1
            np.testing.assert_allclose(got, want, rtol=1e-12)
        if declared is shapes:
            assert np.shape(got) == want.shape
            got_r = sd.evaluate(sd.corrcoef(*symbols, rowvar=kwargs.get("rowvar", True)), dict(zip(symbols, values)))
            np.testing.assert_allclose(got_r, want_r, rtol=1e-12)
    if np.isfinite(want).all() and kwargs.get("ddof") != 5:
        check_grads(lambda *xs: sd.cov(*xs, **kwargs), values=values, order=2)
        if np.ndim(want):
            check_grads(lambda *xs: sd.corrcoef(*xs, rowvar=kwargs.get("rowvar", True)) * 1.0, values=values,
                        order=1)


def test_cov_weights_as_expressions_get_derivatives():
    rng = np.random.default_rng(4)
    x, a = rng.normal(size=(2, 5)), rng.uniform(0.5, 2, size=5)
    X, A = sd.matrix("X", (2, None)), sd.vector("A")
    np.testing.assert_allclose(sd.evaluate(sd.cov(X, aweights=A), {X: x, A: a}), np.cov(x, aweights=a), rtol=1e-12)
    check_grads(sd.cov(X, aweights=A), [X, A], {X: x, A: a}, order=2)
    check_hvp(sd.sum(sd.corrcoef(X) ** 2), [X], {X: x})


def test_cov_dtypes_and_errors():
    assert sd.cov(sd.matrix("X", (2, 3), dtype="float32")).dtype == np.cov(np.ones((2, 3), np.float32)).dtype.name
    assert sd.cov(sd.matrix("X", (2, 3), dtype="float32"), dtype="float32").dtype == "float32"
    assert sd.evaluate(sd.cov(sd.constant(np.zeros((0, 3)))), {}).shape == np.cov(np.zeros((0, 3))).shape
    with pytest.raises(sd.ShapeError, match="cov: m has more than 2 dimensions"):
        sd.cov(sd.tensor("t", (2, 2, 2)))
    with pytest.raises(ValueError, match="cov: ddof must be integer"):
        sd.cov(sd.matrix("X"), ddof=1.5)
    with pytest.raises(TypeError, match="cov: fweights must be integer"):
        sd.cov(sd.matrix("X", (2, 3)), fweights=[1, 1.5, 2])
    with pytest.raises(ValueError, match="cov: aweights cannot be negative"):
        sd.cov(sd.matrix("X", (2, 3)), aweights=[1, -1, 2])
    with pytest.raises(sd.ShapeError, match=r"cov: incompatible numbers of samples \(3\) and fweights \(2\)"):
        sd.cov(sd.matrix("X", (2, 3)), fweights=[1, 2])


def test_corrcoef_single_variable_and_constant_rows():
    x = np.array([1.0, 2.0, 4.0])
    assert sd.evaluate(sd.corrcoef(sd.constant(x)), {}) == np.corrcoef(x)
    with np.errstate(all="ignore"):
        rows = np.array([[1.0, 1.0, 1.0], [1.0, 2.0, 4.0]])
        import warnings
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            want = np.corrcoef(rows)
    np.testing.assert_array_equal(sd.evaluate(sd.corrcoef(sd.constant(rows)), {}), want)


def test_compiled_matches_reference():
    pytest.importorskip("numba")
    X, w = sd.matrix("X"), sd.vector("w")
    outs = [sd.var(X, axis=0, ddof=1), sd.std(X, axis=-1, keepdims=True), sd.average(X, axis=1, weights=w),
            sd.cov(X), sd.corrcoef(X)]
    cost = sd.sum(outs[0]) + sd.sum(outs[2] ** 2) + sd.sum(outs[4] * outs[3])
    outs += sd.grad(cost, [X, w])
    f = sd.function([X, w], outs)
    rng = np.random.default_rng(5)
    for n, m in [(3, 5), (4, 2)]:
        values = [rng.normal(size=(n, m)), rng.uniform(0.5, 2, size=m)]
        for got, want in zip(f(*values), sd.evaluate(outs, dict(zip([X, w], values)))):
            np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("dtype, power", [("float64", 600), ("float64", -600), ("float32", 70), ("float32", -70)])
def test_norms_std_and_corrcoef_scale_exactly_where_squares_leave_the_range(dtype, power):
    # sqrt(sum(x * x)) was inf at 1e154 with a zero gradient and 0 at 1e-200 with a NaN one;
    # std = sqrt(var) and corrcoef's covariances likewise.  With the power-of-two scaling the
    # results at x * 2**power are exactly 2**power, 1 or 2**-power times those at x (by the
    # degree of homogeneity), in both backends.
    pytest.importorskip("numba")
    X = sd.matrix("X", (2, 4), dtype)
    v = X[0]
    by_degree = {
        1: [sd.linalg.norm(v), sd.linalg.norm(X), sd.linalg.norm(X, "fro", keepdims=True), sd.linalg.norm(v, 3),
            sd.linalg.norm(v, 0.5), sd.linalg.norm(v, -1), sd.std(X), sd.std(X, axis=1, ddof=1)],
        0: [sd.corrcoef(X), *sd.grad(sd.linalg.norm(X) + sd.linalg.norm(v, 3) + sd.std(X), [X])],
        -1: sd.grad(sd.corrcoef(X)[0, 1], [X]),
    }
    outputs = [out for outs in by_degree.values() for out in outs]
    degrees = [degree for degree, outs in by_degree.items() for _ in outs]
    base = np.array([[1.0, 2.0, 4.0, -3.0], [2.0, 1.0, 5.0, 3.0]], dtype=dtype)
    compiled = sd.function([X], outputs)
    for backend, run in (("reference", lambda value: sd.evaluate(outputs, {X: value})), ("compiled", compiled)):
        at_one, at_scale = run(base), run(base * np.asarray(2.0 ** power, dtype=dtype))
        for k, (one, scaled, degree) in enumerate(zip(at_one, at_scale, degrees)):
            want = np.asarray(one, dtype=np.float64) * 2.0 ** (power * degree)
            assert np.all(np.isfinite(scaled)), (backend, k, scaled)
            np.testing.assert_allclose(np.asarray(scaled, dtype=np.float64), want, rtol=4 * np.finfo(dtype).eps,
                                       err_msg=f"{backend} output {k}")
