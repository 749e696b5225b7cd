"""Elementwise math and ``sd.special`` (issue 10, part 2) against NumPy, SciPy and mpmath.

The registry tests (tests/test_ops.py, tests/test_codegen.py) check every new primitive's
rules against finite differences and its kernel against the reference.  Here:

* every public function against NumPy's or SciPy's own on random inputs, with
  broadcasting, float32, ints, empty arrays and sizes known only at run time;
* the extreme-value table: values and first derivatives at |x| = 1e3, 1e8, 1e15, 1e300,
  subnormals, -0.0 (and inf, nan) against mpmath at 50 digits, in float32 and float64,
  for the reference and for ONE compiled kernel per dtype holding every op;
* the promised properties: logaddexp without overflow (also at infinities), log_ndtr
  at -40, xlogy(0, 0) = 0, log2/log10 exact at powers, gammaln's derivatives to third
  order, logaddexp's Hessian at ties, the accuracy of the special functions;
* bad input: clear errors.
"""

from __future__ import annotations

import functools
import math

import mpmath
import numpy as np
import pytest
from numpy.testing import assert_array_equal

import symdiff as sd
from symdiff.ops import special_scalar
from symdiff.testing import check_grads, check_hvp, check_jvp
from test_extreme_inputs import _erf_derivative, _log_ndtr_derivative, _ndtr_derivative

mpmath.mp.dps = 50
pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")


def _scipy():
    return pytest.importorskip("scipy.special")


# ------------------------------------------------------------------ the mpmath table

M = mpmath.mpf


def _log_ndtr_ref(x):
    if x < -1e4:  # mpmath's erfc cannot take the huge arguments; the asymptotic series is exact here
        s = 1 - 1 / x ** 2 + 3 / x ** 4 - 15 / x ** 6
        return -x * x / 2 - mpmath.log(-x) - mpmath.log(2 * mpmath.pi) / 2 + mpmath.log(s)
    return mpmath.log(mpmath.ncdf(x)) if x < 0 else mpmath.log1p(-_erfc(x / mpmath.sqrt(2)) / 2)


def _log_ndtr_prime_ref(x):
    if x < -1e4:
        return -x / (1 - 1 / x ** 2 + 3 / x ** 4 - 15 / x ** 6)
    return mpmath.npdf(x) / (mpmath.ncdf(x) if x < 1e4 else 1)


def _log_ndtr_derivative_at(x, n):
    with mpmath.workprec(256):  # the Riccati recurrence cancels; mpmath's default 53 bits is not enough
        return +_log_ndtr_derivative(x, n)

def _erfc(x):  # mpmath's erfc cannot take |x| > ~1e9; there it is 0 or 2 to any precision a float has
    return mpmath.erfc(x) if abs(x) < 1e4 else (M(0) if x > 0 else M(2))


def _erf(x):
    return mpmath.erf(x) if abs(x) < 1e4 else mpmath.sign(x)


def _cbrt(x):
    return mpmath.sign(x) * mpmath.cbrt(abs(x))


def _sigmoid(x):
    return 1 / (1 + mpmath.exp(-x))


# name: (symdiff function, mpmath value, mpmath derivative, domain of the value, of the derivative)
TABLE = {
    "arcsin": (sd.arcsin, mpmath.asin, lambda x: 1 / mpmath.sqrt(1 - x * x), lambda x: abs(x) <= 1,
               lambda x: abs(x) < 1),
    "arccos": (sd.arccos, mpmath.acos, lambda x: -1 / mpmath.sqrt(1 - x * x), lambda x: abs(x) <= 1,
               lambda x: abs(x) < 1),
    "arctan": (sd.arctan, mpmath.atan, lambda x: 1 / (1 + x * x), None, None),
    "sinh": (sd.sinh, mpmath.sinh, mpmath.cosh, None, None),
    "cosh": (sd.cosh, mpmath.cosh, mpmath.sinh, None, None),
    "arcsinh": (sd.arcsinh, mpmath.asinh, lambda x: 1 / mpmath.sqrt(1 + x * x), None, None),
    "arccosh": (sd.arccosh, mpmath.acosh, lambda x: 1 / mpmath.sqrt(x * x - 1), lambda x: x >= 1, lambda x: x > 1),
    "arctanh": (sd.arctanh, mpmath.atanh, lambda x: 1 / (1 - x * x), lambda x: abs(x) < 1, lambda x: abs(x) < 1),
    "log2": (sd.log2, lambda x: mpmath.log(x, 2), lambda x: 1 / (x * mpmath.log(2)), lambda x: x > 0,
             lambda x: x > 0),
    "log10": (sd.log10, mpmath.log10, lambda x: 1 / (x * mpmath.log(10)), lambda x: x > 0, lambda x: x > 0),
    "exp2": (sd.exp2, lambda x: mpmath.power(2, x), lambda x: mpmath.power(2, x) * mpmath.log(2), None, None),
    "cbrt": (sd.cbrt, _cbrt, lambda x: 1 / (3 * _cbrt(x) ** 2), None, lambda x: x != 0),
    "reciprocal": (sd.reciprocal, lambda x: 1 / x, lambda x: -1 / (x * x), lambda x: x != 0, lambda x: x != 0),
    "erf": (sd.special.erf, _erf, lambda x: 2 / mpmath.sqrt(mpmath.pi) * mpmath.exp(-x * x), None, None),
    "erfc": (sd.special.erfc, _erfc, lambda x: -2 / mpmath.sqrt(mpmath.pi) * mpmath.exp(-x * x), None, None),
    "erfinv": (sd.special.erfinv, mpmath.erfinv,
               lambda x: mpmath.sqrt(mpmath.pi) / 2 * mpmath.exp(mpmath.erfinv(x) ** 2),
               lambda x: abs(x) < 1, lambda x: abs(x) < 1),
    "gammaln": (sd.special.gammaln, lambda x: mpmath.re(mpmath.loggamma(x)), mpmath.digamma,
                lambda x: x > 0 or x != int(x), lambda x: x > 0 or x != int(x)),
    "digamma": (sd.special.digamma, mpmath.digamma, lambda x: mpmath.polygamma(1, x),
                lambda x: x > 0 or x != int(x), lambda x: x > 0 or x != int(x)),
    "ndtr": (sd.special.ndtr, lambda x: mpmath.exp(_log_ndtr_ref(x)) if x < -1e4 else _erfc(-x / mpmath.sqrt(2)) / 2,
             mpmath.npdf, None, None),
    "log_ndtr": (sd.special.log_ndtr, _log_ndtr_ref, _log_ndtr_prime_ref, None, None),
    "expit": (sd.special.expit, _sigmoid, lambda x: _sigmoid(x) * _sigmoid(-x), None, None),
    "logit": (sd.special.logit, lambda x: mpmath.log(x / (1 - x)), lambda x: 1 / (x * (1 - x)),
              lambda x: 0 < x < 1, lambda x: 0 < x < 1),
}

# Where the first derivative is not within a few ulp, and why (the value always is):
# erf, erfc, ndtr: exp(-x*x) rounds x*x first, costing up to x^2 eps relative.
DERIVATIVE_ULPS = {"erf": 80, "erfc": 80, "ndtr": 80}
VALUE_ULPS = 4
DEFAULT_DERIVATIVE_ULPS = 8

POINTS = {
    "float64": [0.3, -0.7, 2.5, -2.5, 0.999, -0.999, 1.5e-8, 5.0, -5.0, 20.0, -20.0, -40.0, 1e3, -1e3, 1e8, -1e8,
                1e15, -1e15, 1e300, -1e300, 5e-324, -5e-324, 1e-310, -1e-310, 0.0, -0.0],
    "float32": [0.3, -0.7, 2.5, -2.5, 0.999, -0.999, 1.5e-4, 5.0, -5.0, 9.0, -9.0, -20.0, 1e3, -1e3, 1e8, -1e8,
                1e15, -1e15, 1e30, -1e30, 1e-45, -1e-45, 1e-40, -1e-40, 0.0, -0.0],
}
SPECIALS = [np.inf, -np.inf, np.nan]


def _ulps(got, want, dtype):
    """|got - want| in units of the last place of ``want`` rounded to ``dtype``; overflow
    must give inf of the right sign, underflow at most the smallest subnormal."""
    info = np.finfo(dtype)
    if mpmath.isinf(want) or abs(want) > M(float(info.max)) * (1 + M(2) ** -info.nmant):
        return 0.0 if got == (np.inf if want > 0 else -np.inf) else np.inf
    rounded = dtype(float(want))
    if rounded == 0:
        return 0.0 if abs(got) <= info.smallest_subnormal else np.inf
    if not np.isfinite(got):
        return np.inf
    return float(abs(M(float(got)) - want) / M(float(np.spacing(abs(rounded)))))


def _table_functions(dtype):
    x = sd.vector("x", dtype=dtype)
    outputs = []
    for fn, *_ in TABLE.values():
        y = fn(x)
        outputs += [y, sd.grad(sd.sum(y), x)]
    return x, outputs


_KERNELS = {}


def _both_backends(dtype):
    """The reference's and ONE compiled kernel's values and derivatives of every table op."""
    if dtype not in _KERNELS:
        x, outputs = _table_functions(dtype)
        points = np.array(POINTS[dtype] + SPECIALS, dtype=dtype)
        f = sd.function([x], outputs)
        _KERNELS[dtype] = (points, sd.evaluate(outputs, {x: points}), f(points))
    return _KERNELS[dtype]


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_extreme_values_and_derivatives_against_mpmath(dtype):
    np_dtype = np.dtype(dtype).type
    points, reference, compiled = _both_backends(dtype)
    failures = []
    for k, (name, (_, value, slope, value_domain, slope_domain)) in enumerate(TABLE.items()):
        for backend, results in (("reference", reference), ("compiled", compiled)):
            got_values, got_slopes = results[2 * k], results[2 * k + 1]
            for i, point in enumerate(points[:len(POINTS[dtype])]):
                x = M(float(point))
                for kind, fn, domain, got, limit in (
                        ("value", value, value_domain, got_values[i], VALUE_ULPS),
                        ("derivative", slope, slope_domain, got_slopes[i],
                         DERIVATIVE_ULPS.get(name, DEFAULT_DERIVATIVE_ULPS))):
                    if domain is not None and not domain(x):
                        continue
                    error = _ulps(got, fn(x), np_dtype)
                    if error > limit:
                        failures.append(f"{backend} {name} {kind} at {point!r}: {got!r}, "
                                        f"mpmath {mpmath.nstr(fn(x), 17)}"
                                        f" ({error:.3g} ulp > {limit})")
    assert not failures, "\n".join(failures)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_both_backends_agree_on_every_table_point(dtype):
    """Including inf, -inf and nan; to a few ulp (libm, libmvec and NumPy's SIMD loops may differ in the last bits)."""
    points, reference, compiled = _both_backends(dtype)
    names = [f"{name} {kind}" for name in TABLE for kind in ("value", "derivative")]
    for name, want, got in zip(names, reference, compiled):
        assert got.dtype == want.dtype == np.dtype(dtype), name
        np.testing.assert_array_equal(np.isnan(got), np.isnan(want), err_msg=f"{name}: NaN at {points}")
        finite = np.isfinite(want)
        np.testing.assert_array_equal(got[~finite], want[~finite], err_msg=f"{name} at {points[~finite]}")
        np.testing.assert_allclose(got[finite], want[finite], rtol=8 * np.finfo(dtype).eps, atol=0,
                                   err_msg=f"{name} at {points[finite]}")


def test_nan_and_infinities_follow_numpy_and_scipy():
    special = _scipy()
    points, reference, _ = _both_backends("float64")
    at = {float(v) if not np.isnan(v) else "nan": i for i, v in enumerate(points) if not np.isfinite(v)}
    expected = {
        "arcsin": np.arcsin, "arccos": np.arccos, "arctan": np.arctan, "sinh": np.sinh, "cosh": np.cosh,
        "arcsinh": np.arcsinh, "arccosh": np.arccosh, "arctanh": np.arctanh, "log2": np.log2, "log10": np.log10,
        "exp2": np.exp2, "cbrt": np.cbrt, "reciprocal": np.reciprocal, "erf": special.erf, "erfc": special.erfc,
        "erfinv": special.erfinv, "ndtr": special.ndtr, "log_ndtr": special.log_ndtr, "expit": special.expit,
        "logit": special.logit, "digamma": special.digamma,
    }
    names = list(TABLE)
    for name, fn in expected.items():
        got = reference[2 * names.index(name)]
        for key, i in at.items():
            want = fn(np.float64(np.nan if key == "nan" else key))
            assert (np.isnan(got[i]) and np.isnan(want)) or got[i] == want, f"{name}({key}) = {got[i]}, expected {want}"


# ------------------------------------------------- against NumPy and SciPy, random inputs


def _unary_cases(special):
    """(name, symdiff function, NumPy or SciPy function, low, high) for random inputs."""
    return [
        ("arcsin", sd.arcsin, np.arcsin, -1, 1), ("arccos", sd.arccos, np.arccos, -1, 1),
        ("arctan", sd.arctan, np.arctan, -5, 5), ("sinh", sd.sinh, np.sinh, -5, 5), ("cosh", sd.cosh, np.cosh, -5, 5),
        ("arcsinh", sd.arcsinh, np.arcsinh, -50, 50), ("arccosh", sd.arccosh, np.arccosh, 1, 50),
        ("arctanh", sd.arctanh, np.arctanh, -1, 1), ("log2", sd.log2, np.log2, 0.01, 100),
        ("log10", sd.log10, np.log10, 0.01, 100), ("exp2", sd.exp2, np.exp2, -50, 50),
        ("cbrt", sd.cbrt, np.cbrt, -100, 100), ("reciprocal", sd.reciprocal, np.reciprocal, -3, 3),
        ("floor", sd.floor, np.floor, -5, 5), ("ceil", sd.ceil, np.ceil, -5, 5), ("trunc", sd.trunc, np.trunc, -5, 5),
        ("fix", sd.fix, np.fix, -5, 5), ("rint", sd.rint, np.rint, -5, 5), ("round", sd.round, np.round, -5, 5),
        ("round2", lambda x: sd.round(x, 2), lambda x: np.round(x, 2), -5, 5),
        ("round-1", lambda x: sd.around(x, -1), lambda x: np.around(x, -1), -500, 500),
        ("erf", sd.special.erf, special.erf, -4, 4), ("erfc", sd.special.erfc, special.erfc, -4, 10),
        ("erfinv", sd.special.erfinv, special.erfinv, -1, 1), ("gammaln", sd.special.gammaln, special.gammaln, -5, 30),
        ("digamma", sd.special.digamma, special.digamma, 0.01, 30), ("psi", sd.special.psi, special.psi, 0.5, 3),
        ("ndtr", sd.special.ndtr, special.ndtr, -8, 8), ("log_ndtr", sd.special.log_ndtr, special.log_ndtr, -30, 5),
        ("expit", sd.special.expit, special.expit, -30, 30), ("logit", sd.special.logit, special.logit, 0, 1),
        ("isnan", sd.isnan, np.isnan, -1, 1), ("isinf", sd.isinf, np.isinf, -1, 1),
        ("isfinite", sd.isfinite, np.isfinite, -1, 1), ("nan_to_num", sd.nan_to_num, np.nan_to_num, -1, 1),
    ]


def _binary_cases(special):
    return [
        ("arctan2", sd.arctan2, np.arctan2, -3, 3), ("hypot", sd.hypot, np.hypot, -3, 3),
        ("logaddexp", sd.logaddexp, np.logaddexp, -800, 800), ("logaddexp2", sd.logaddexp2, np.logaddexp2, -800, 800),
        ("copysign", sd.copysign, np.copysign, -3, 3), ("mod", sd.mod, np.mod, -7, 7),
        ("remainder", sd.remainder, np.remainder, -7, 7), ("fmod", sd.fmod, np.fmod, -7, 7),
        ("floor_divide", sd.floor_divide, np.floor_divide, -7, 7),
        ("heaviside", sd.heaviside, np.heaviside, -1, 1), ("xlogy", sd.special.xlogy, special.xlogy, -2, 3),
        ("xlog1py", sd.special.xlog1py, special.xlog1py, -0.9, 3),
        ("polygamma1", lambda x, y: sd.special.polygamma(1, x) * y, lambda x, y: special.polygamma(1, x) * y, 0.1, 5),
        ("polygamma3", lambda x, y: sd.special.polygamma(3, x + y), lambda x, y: special.polygamma(3, x + y), -3, 5),
    ]


def _random_problem(special, rng, shapes):
    """Symbols with sizes known only at run time, outputs, and the NumPy/SciPy expectations."""
    symbols, outputs, expected, values, labels = [], [], [], {}, []
    for name, fn, ref, low, high in _unary_cases(special):
        x = sd.tensor(f"{name.replace('-', 'm')}_x", (None, 1))
        values[x] = rng.uniform(low, high, size=shapes[0])
        if name in ("isnan", "isinf", "isfinite", "nan_to_num"):
            values[x].flat[:3] = [np.nan, np.inf, -np.inf][:values[x].size]
        symbols.append(x)
        outputs.append(fn(x))
        expected.append(ref(values[x]))
        labels.append(name)
    for name, fn, ref, low, high in _binary_cases(special):
        x, y = sd.tensor(f"{name}_x", (None, 1)), sd.vector(f"{name}_y")
        values[x], values[y] = rng.uniform(low, high, size=shapes[0]), rng.uniform(low, high, size=shapes[1])
        if name == "heaviside":
            values[x][::2] = 0.0
        if name.startswith("xlog"):
            values[x][::2] = 0.0
        symbols += [x, y]
        outputs.append(fn(x, y))
        expected.append(ref(values[x], values[y]))
        labels.append(name)
    return symbols, outputs, expected, values, labels


@pytest.mark.parametrize("sizes", [(5, 4), (0, 3)], ids=["5x4", "empty"])
def test_every_function_matches_numpy_and_scipy_with_broadcasting(sizes):
    special = _scipy()
    rng = np.random.default_rng(11)
    shapes = ((sizes[0], 1), (sizes[1],))
    symbols, outputs, expected, values, labels = _random_problem(special, rng, shapes)
    got_reference = sd.evaluate(outputs, values)
    compiled = sd.function(symbols, outputs)
    got_compiled = compiled(*[values[s] for s in symbols])
    for label, want, ref, comp in zip(labels, expected, got_reference, got_compiled):
        want = np.asarray(want)
        assert ref.shape == comp.shape == want.shape, (label, ref.shape, comp.shape, want.shape)
        assert ref.dtype == comp.dtype == want.dtype, (label, ref.dtype, comp.dtype, want.dtype)
        # SciPy's own errors: ndtr loses ~x^2 eps in the lower tail, digamma/gammaln a few ulp (measured in the notes)
        special_function = label in ("digamma", "psi", "gammaln", "erfinv", "polygamma1", "polygamma3", "ndtr",
                                     "log_ndtr")
        rtol = 1e-12 if special_function else 2e-15
        np.testing.assert_allclose(ref, want, rtol=rtol, atol=1e-300, err_msg=f"{label}: reference vs NumPy/SciPy")
        np.testing.assert_allclose(comp, ref, rtol=4e-15, atol=1e-300, err_msg=f"{label}: compiled vs reference")


def test_float32_and_int_inputs_keep_numpys_dtypes():
    special = _scipy()
    rng = np.random.default_rng(12)
    x32 = rng.uniform(0.1, 0.9, size=7).astype(np.float32)
    ints = np.array([-3, 0, 2, 7])
    for name, fn, ref, *_ in _unary_cases(special):
        if name == "reciprocal":
            continue
        got = sd.evaluate(fn(sd.constant(x32)), {})
        want = ref(x32)
        assert got.dtype == want.dtype == (bool if name.startswith("is") else np.float32), (name, got.dtype, want.dtype)
        np.testing.assert_allclose(got, want, rtol=2e-6, atol=1e-30, err_msg=name)
    for name, fn, ref in [("floor", sd.floor, np.floor), ("ceil", sd.ceil, np.ceil), ("trunc", sd.trunc, np.trunc),
                          ("rint", sd.rint, np.rint), ("round", sd.round, np.round),
                          ("round-1", lambda x: sd.round(x, -1), lambda x: np.round(x, -1)),
                          ("log2", sd.log2, np.log2), ("arctan", sd.arctan, np.arctan), ("isnan", sd.isnan, np.isnan),
                          ("isinf", sd.isinf, np.isinf), ("isfinite", sd.isfinite, np.isfinite),
                          ("nan_to_num", sd.nan_to_num, np.nan_to_num), ("erf", sd.special.erf, special.erf),
                          ("mod", lambda x: sd.mod(x, 3), lambda x: np.mod(x, 3)),
                          ("fmod", lambda x: sd.fmod(x, -3), lambda x: np.fmod(x, -3)),
                          ("fmod0", lambda x: sd.fmod(x, 0), lambda x: np.fmod(x, 0)),
                          ("floor_divide", lambda x: sd.floor_divide(x, -2), lambda x: np.floor_divide(x, -2))]:
        got = sd.evaluate(fn(sd.constant(ints)), {})
        want = ref(ints)
        assert got.dtype == want.dtype, (name, got.dtype, want.dtype)
        np.testing.assert_array_equal(got, want, err_msg=name)
    for name, fn in [("floor", sd.floor), ("isnan", sd.isnan), ("isfinite", sd.isfinite)]:
        flags = np.array([True, False])
        assert sd.evaluate(fn(sd.constant(flags)), {}).dtype == getattr(np, name)(flags).dtype, name


# ------------------------------------------------------ binary ops at special values

GRID = np.array([0.0, -0.0, 1.0, -1.0, 2.5, -2.5, 3.0, 1e308, -1e308, 5e-324, np.inf, -np.inf, np.nan, 7.0, 0.1])


def _same(got, want):
    """Equal including NaN and the sign of zero."""
    return (got == want) & (np.signbit(got) == np.signbit(want)) | (np.isnan(got) & np.isnan(want))


def test_binary_ops_follow_numpy_bit_for_bit_at_special_values():
    """mod, fmod, floor_divide, copysign, logaddexp(2), hypot, arctan2, heaviside on every pair of
    special values, in Python statements and inside an LLVM IR region (a long scalar chain)."""
    pairs = [(a, b) for a in GRID for b in GRID]
    x, y = sd.vector("x"), sd.vector("y")
    functions = {"mod": (sd.mod, np.mod), "fmod": (sd.fmod, np.fmod),
                 "floor_divide": (sd.floor_divide, np.floor_divide),
                 "copysign": (sd.copysign, np.copysign), "logaddexp": (sd.logaddexp, np.logaddexp),
                 "logaddexp2": (sd.logaddexp2, np.logaddexp2), "hypot": (sd.hypot, np.hypot),
                 "arctan2": (sd.arctan2, np.arctan2), "heaviside": (sd.heaviside, np.heaviside)}
    xs, ys = np.array([p[0] for p in pairs]), np.array([p[1] for p in pairs])
    outputs = [fn(x, y) for fn, _ in functions.values()]
    compiled = sd.function([x, y], outputs)(xs, ys)
    reference = sd.evaluate(outputs, {x: xs, y: ys})
    for (name, (_, ref)), got_c, got_r in zip(functions.items(), compiled, reference):
        want = ref(xs, ys)
        for backend, got in (("reference", got_r), ("compiled", got_c)):
            bad = ~_same(got, want)
            if name in ("hypot", "arctan2", "logaddexp", "logaddexp2"):  # libm vs NumPy's loops: 1 ulp
                bad &= ~(np.abs(got - want) <= 2.3e-16 * np.abs(want))
            assert not bad.any(), f"{backend} {name}: {list(zip(xs[bad], ys[bad], got[bad], want[bad]))[:5]}"


def test_binary_ops_in_an_ir_region_match_the_reference():
    a, b = sd.scalars("a b")
    chain = []
    for k in range(6):  # long enough for an LLVM IR region; every op of the family inside it
        a2, b2 = a * (k + 1), b - k
        chain += [sd.mod(a2, b2), sd.fmod(a2, b2), sd.floor_divide(a2, b2), sd.copysign(a2, b2),
                  sd.logaddexp(a2, b2), sd.logaddexp2(a2, b2), sd.hypot(a2, b2), sd.arctan2(a2, b2),
                  sd.floor(a2), sd.ceil(b2), sd.trunc(a2), sd.rint(b2), sd.arcsinh(a2), sd.cbrt(b2),
                  sd.special.erf(a2), sd.special.erfc(b2), sd.special.gammaln(b2)]
    f = sd.function([a, b], chain)
    assert f.program.regions >= 1 and "make_region" in f.source
    for va in (2.5, -0.0, -7.25, np.inf, 1e300):
        for vb in (3.0, -0.5, 0.0, -np.inf, np.nan):
            got, want = f(va, vb), sd.evaluate(chain, {a: va, b: vb})
            for k, (g, w) in enumerate(zip(got, want)):
                assert _same(g, w) or abs(g - w) <= 2.3e-16 * abs(w), (k, va, vb, g, w)


def test_helper_backed_ops_end_ir_regions_and_stay_exact():
    from symdiff.backends import scalar_ir

    assert scalar_ir.PYTHON_STATEMENT_OPS == {"erfinv", "polygamma", "ndtr", "log_ndtr", "log_ndtr_prime",
                                             "log_ndtr_derivative", "over_squared_norm", "erfinv_slope",
                                             "over_hypot", "ndtr_derivative", "erf_derivative",
                                             "mul_log_slope"}
    a = sd.scalar("a")
    y = a
    for _ in range(30):
        y = sd.sin(y) * 0.5 + sd.special.log_ndtr(y) * 0.01 + sd.special.digamma(sd.abs(y) + 1) * 0.01
    f = sd.function([a], [y, sd.grad(y, a)])
    for point in (0.3, -1.2):
        for g, w in zip(f(point), sd.evaluate([y, sd.grad(y, a)], {a: point})):
            np.testing.assert_allclose(g, w, rtol=1e-13)


# --------------------------------------------------------------- promised properties


def test_logaddexp_never_overflows_and_handles_infinities_as_numpy():
    x, y = sd.vector("x"), sd.vector("y")
    xs = np.array([-np.inf, np.inf, 1e308, -1e308, 1000.0, -np.inf, np.inf, 0.0])
    ys = np.array([-np.inf, np.inf, 1e308, 1e308, 1000.0, 3.0, -np.inf, -1e-300])
    for fn, ref in ((sd.logaddexp, np.logaddexp), (sd.logaddexp2, np.logaddexp2)):
        out = fn(x, y)
        for got in (sd.evaluate(out, {x: xs, y: ys}), sd.function([x, y], out)(xs, ys)):
            np.testing.assert_array_equal(got, ref(xs, ys))
    assert sd.evaluate(sd.logaddexp(-np.inf, -np.inf), {}) == -np.inf


def test_logaddexp_is_smooth_at_ties():
    """The Hessian at x == y is [[1/4, -1/4], [-1/4, 1/4]]; the composite max + log1p(exp(-|x - y|))
    has the right gradient there but a zero Hessian (max and abs are kinked)."""
    z = sd.vector("z", 2)
    tie = {z: np.array([0.7, 0.7])}
    for fn, scale in ((sd.logaddexp, 1.0), (sd.logaddexp2, math.log(2))):
        out = fn(z[0], z[1])
        np.testing.assert_allclose(sd.evaluate(sd.hessian(out, z), tie),
                                   np.array([[0.25, -0.25], [-0.25, 0.25]]) * scale, rtol=1e-15)
        np.testing.assert_allclose(sd.evaluate(sd.grad(out, z), tie), [0.5, 0.5], rtol=1e-15)
    composite = sd.maximum(z[0], z[1]) + sd.log1p(sd.exp(-sd.abs(z[0] - z[1])))
    assert np.all(sd.evaluate(sd.hessian(composite, z), tie) == 0)


def test_log_ndtr_and_its_derivatives_in_the_far_tail():
    """Value and the first three derivatives keep relative accuracy down to -1e300 (the
    second and third cancelled as composites of phi/Phi: 384 and 3e7 ulps at -20)."""
    x = sd.vector("x")
    points = np.array([-3.5, -20.0, -40.0, -1e3, -1e8, -1e15, -1e100, -1e300])
    value = sd.special.log_ndtr(x)
    outputs = [value]
    for _ in range(3):
        outputs.append(sd.grad(sd.sum(outputs[-1]), x))
    for results in (sd.evaluate(outputs, {x: points}), sd.function([x], outputs)(points)):
        for p, *got in zip(points, *results):
            with mpmath.workprec(256):
                want = [_log_ndtr_ref(M(float(p))), _log_ndtr_prime_ref(M(float(p)))]
                want += [_log_ndtr_derivative(M(float(p)), n) for n in (2, 3)]
            for order, (g, w) in enumerate(zip(got, want)):
                assert _ulps(g, w, np.float64) <= 4, (p, order, g, w)
    assert sd.evaluate(sd.special.log_ndtr(-40.0), {}) == pytest.approx(-804.6084420137538, rel=1e-15)


def test_xlogy_and_xlog1py_at_zero_and_their_derivatives():
    special = _scipy()
    x, y = sd.vector("x"), sd.vector("y")
    xs = np.array([0.0, 0.0, 0.0, 0.0, 0.0, 2.0, -1.0, 0.0])
    ys = np.array([0.0, 0.5, -1.0, np.inf, np.nan, 3.0, 0.0, -2.0])
    for fn, ref in ((sd.special.xlogy, special.xlogy), (sd.special.xlog1py, special.xlog1py)):
        out = fn(x, y)
        for got in (sd.evaluate(out, {x: xs, y: ys}), sd.function([x, y], out)(xs, ys)):
            np.testing.assert_allclose(got, ref(xs, ys), rtol=3e-16, atol=0)  # inf and nan where SciPy has them
    assert sd.evaluate(sd.special.xlogy(0.0, 0.0), {}) == 0.0
    zeros = sd.function([x, y], [sd.special.xlogy(x, y), sd.special.xlog1py(x, y)])(np.zeros(2), np.array([0.5, -0.5]))
    assert not np.signbit(zeros).any()  # SciPy's +0.0, not 0 * log(0.5) = -0.0
    # derivatives: log(y) and x/y where defined (x = 0, y > 0 included: x log y is linear in x there)
    gx, gy = sd.evaluate(sd.grad(sd.sum(sd.special.xlogy(x, y)), [x, y]),
                         {x: np.array([0.0, 2.0, 0.0]), y: np.array([0.5, 3.0, 0.0])})
    np.testing.assert_allclose(gx, [math.log(0.5), math.log(3.0), 0.0])
    np.testing.assert_allclose(gy, [0.0, 2.0 / 3.0, 0.0])
    check_grads(lambda a, b: sd.special.xlogy(a, b) + sd.special.xlog1py(a, b),
                values=([0.0, 1.5, -0.5], [0.4, 2.0, 0.7]))


def test_log2_and_log10_are_exact_at_powers_like_numpy():
    x = sd.vector("x")
    twos, tens = 2.0 ** np.arange(-1074, 1024), 10.0 ** np.arange(-300, 309)
    out = [sd.log2(x), sd.log10(x)]
    compiled = sd.function([x], out)
    for values, want, which in ((twos, np.arange(-1074, 1024), 0), (tens, np.log10(tens), 1)):
        np.testing.assert_array_equal(sd.evaluate(out[which], {x: values}), want)
        np.testing.assert_array_equal(compiled(values)[which], want)
    np.testing.assert_array_equal(np.log10(tens), np.arange(-300, 309))


def test_gammaln_differentiates_to_polygamma_at_every_order():
    special = _scipy()
    x = sd.scalar("x")
    f = sd.special.gammaln(x)
    derivatives = [sd.derivative(f, x, order=k) for k in range(1, 5)]
    for point in (0.3, 2.5, 17.0, -2.5):
        got = sd.evaluate(derivatives, {x: point})
        want = [special.polygamma(k, point) for k in range(4)]
        np.testing.assert_allclose(got, want, rtol=1e-13, err_msg=f"at {point}")
    # reverse mode builds the same polygamma chain
    assert sd.evaluate(sd.grad(sd.grad(f, x), x), {x: 2.5}) == pytest.approx(special.polygamma(1, 2.5), rel=1e-15)


def test_special_functions_are_accurate_against_mpmath():
    """Random points over each function's domain, in ulp of the exact value (worst cases in the notes)."""
    rng = np.random.default_rng(5)
    polygamma = special_scalar.polygamma
    tail = -10.0 ** rng.uniform(2, 300, 20)
    cases = {
        "erfinv": (special_scalar.erfinv, mpmath.erfinv,
                   np.concatenate([rng.uniform(-1, 1, 60), 1 - 10.0 ** -rng.uniform(1, 16, 20)]), 2),
        "digamma": (special_scalar.digamma, mpmath.digamma,
                    np.concatenate([rng.uniform(0, 12, 60), rng.uniform(1.3, 1.6, 20),
                                    10.0 ** rng.uniform(-300, 300, 20)]), 3),
        "trigamma": (lambda v: polygamma(1, v), lambda v: mpmath.polygamma(1, v), rng.uniform(0, 20, 40), 6),
        "polygamma3": (lambda v: polygamma(3, v), lambda v: mpmath.polygamma(3, v), 10.0 ** rng.uniform(-5, 5, 40), 6),
        "ndtr": (special_scalar.ndtr, lambda v: mpmath.ncdf(v), rng.uniform(-38, 9, 60), 4),
        "log_ndtr": (special_scalar.log_ndtr, _log_ndtr_ref, np.concatenate([rng.uniform(-60, 30, 60), tail]), 6),
        "log_ndtr_prime": (special_scalar.log_ndtr_prime, _log_ndtr_prime_ref,
                           np.concatenate([rng.uniform(-60, 30, 60), tail]), 4),
        # orders 4 and 5 below -3: up to 16 ulps of rounding in the Taylor recurrence
        **{f"log_ndtr_derivative{n}": (functools.partial(special_scalar.log_ndtr_derivative, n),
                                        functools.partial(_log_ndtr_derivative_at, n=n),
                                        np.concatenate([rng.uniform(-60, 30, 60), rng.uniform(-3.2, 3.2, 60), tail]),
                                        limit) for n, limit in ((2, 4), (3, 6), (4, 10), (5, 20))},
    }
    for name, (ours, exact, points, limit) in cases.items():
        errors = [_ulps(ours(p), exact(M(float(p))), np.float64) for p in points]
        worst = int(np.argmax(errors))
        assert errors[worst] <= limit, f"{name} at {points[worst]!r}: {errors[worst]:.3g} ulp > {limit}"


# ---------------------------------------------------------------- derivatives


def test_gradients_jvps_and_hvps_of_a_loss_using_the_new_vocabulary():
    def loss(x, y):
        z = sd.arcsinh(x) * sd.cosh(y * 0.3) + sd.logaddexp(x, y) + sd.hypot(x, y) + sd.arctan2(y, x + 3.0)
        z = z + sd.special.log_ndtr(x - y) + sd.special.gammaln(y * y + 0.5) + sd.special.logit(sd.sigmoid(x) * 0.9)
        z = z + sd.special.erf(x) * sd.special.erfinv(sd.tanh(y) * 0.5) + sd.log2(x * x + 1) * sd.cbrt(y + 3.0)
        z = z + sd.special.xlogy(x * x, y * y + 0.1) + sd.exp2(-y * y) + sd.fmod(x * 5.0, 1.7) + sd.mod(y, 0.9)
        return sd.sum(z + sd.copysign(x, y) * sd.nan_to_num(y))

    values = ([0.31, -0.57, 1.13], [0.47, 1.21, -0.23])
    check_grads(loss, values=values, order=2)
    check_jvp(loss, values=values, order=2)
    x, y = sd.vector("x", 3), sd.vector("y", 3)
    check_hvp(loss(x, y), [x, y], {x: values[0], y: values[1]})


def test_zero_derivative_functions_pass_no_derivative():
    x = sd.vector("x")
    for fn in (sd.floor, sd.ceil, sd.trunc, sd.rint, sd.round, lambda v: sd.round(v, 2), sd.fix,
               lambda v: sd.floor_divide(v, 0.7), lambda v: sd.heaviside(v, 0.5)):
        g = sd.evaluate(sd.grad(sd.sum(fn(x) * x), x), {x: np.array([0.3, -1.7, 2.5])})
        np.testing.assert_array_equal(g, sd.evaluate(fn(x), {x: np.array([0.3, -1.7, 2.5])}))
    h0 = sd.scalar("h0")
    assert sd.evaluate(sd.grad(sd.sum(sd.heaviside(x, h0)), h0), {x: np.array([0.0, 1.0, 0.0]), h0: 0.5}) == 2.0


def test_copysign_and_nan_to_num_derivatives():
    x, y = sd.vector("x"), sd.vector("y")
    xs, ys = np.array([2.0, -2.0, 2.0, 0.0, 1.0]), np.array([1.0, 1.0, -0.0, -1.0, np.nan])
    gx = sd.evaluate(sd.grad(sd.sum(sd.copysign(x, y)), x), {x: xs, y: ys})
    np.testing.assert_array_equal(gx, [1.0, -1.0, -1.0, 0.0, 1.0])
    vs = np.array([np.nan, np.inf, -np.inf, 2.0])
    g = sd.evaluate(sd.grad(sd.sum(sd.nan_to_num(x) * 3.0), x), {x: vs})
    np.testing.assert_array_equal(g, [0.0, 0.0, 0.0, 3.0])
    np.testing.assert_array_equal(sd.evaluate(sd.nan_to_num(x, nan=-1.0, posinf=5.0, neginf=-5.0), {x: vs}),
                                  np.nan_to_num(vs, nan=-1.0, posinf=5.0, neginf=-5.0))
    v32 = vs.astype(np.float32)
    np.testing.assert_array_equal(sd.evaluate(sd.nan_to_num(sd.constant(v32)), {}), np.nan_to_num(v32))


# -------------------------------------------------------------------- bad input


def test_bad_input_gives_clear_errors():
    x = sd.vector("x")
    with pytest.raises(TypeError, match="polygamma: the order n must be a static int"):
        sd.special.polygamma(1.5, x)
    with pytest.raises(TypeError, match="polygamma: the order n must be a static int"):
        sd.special.polygamma(sd.scalar("n", "int64"), x)
    with pytest.raises(ValueError, match="polygamma: the order n must be >= 0"):
        sd.special.polygamma(-1, x)
    with pytest.raises(sd.DTypeError, match="reciprocal of int64"):
        sd.reciprocal(sd.vector("k", dtype="int64"))
    with pytest.raises(sd.DTypeError, match="rint of bool"):
        sd.rint(x > 0)
    with pytest.raises(sd.DTypeError, match="round of bool"):
        sd.round(x > 0)
    with pytest.raises(TypeError, match="round: decimals must be a static int"):
        sd.round(x, 1.5)
    with pytest.raises(TypeError, match="nan_to_num: posinf must be a number"):
        sd.nan_to_num(x, posinf="big")
    with pytest.raises(TypeError, match="arcsin: expected a symdiff expression"):
        sd.arcsin("0.5")
    with pytest.raises(TypeError, match="erf: expected a symdiff expression"):
        sd.special.erf([1, "a"])
    with pytest.raises(sd.ShapeError, match=r"hypot.*\(3,\).*\(4,\)|shapes"):
        sd.hypot(sd.vector("a", 3), sd.vector("b", 4))
    with pytest.raises(sd.DTypeError, match="polygamma needs a static int order"):
        sd.OPS["polygamma"](x, n=-1)
    a, b = sd.vector("a"), sd.vector("b")  # sizes known at run time: checked when values arrive
    for run in (lambda f: sd.evaluate(f, {a: np.ones(3), b: np.ones(4)}),
                lambda f: sd.function([a, b], f)(np.ones(3), np.ones(4))):
        with pytest.raises(sd.ShapeError):
            run(sd.logaddexp(a, b))


BINARY_DERIVATIVES = {  # name: (function, d/dx, d/dy, domain) in mpmath
    "hypot": (sd.hypot, lambda x, y: x / mpmath.hypot(x, y), lambda x, y: y / mpmath.hypot(x, y), None),
    "arctan2": (sd.arctan2, lambda a, b: b / (a * a + b * b), lambda a, b: -a / (a * a + b * b),
                lambda a, b: a != 0 or b != 0),
    "logaddexp": (sd.logaddexp, lambda x, y: _sigmoid(x - y), lambda x, y: _sigmoid(y - x), None),
    "logaddexp2": (sd.logaddexp2, lambda x, y: _sigmoid((x - y) * mpmath.log(2)),
                   lambda x, y: _sigmoid((y - x) * mpmath.log(2)), None),
    "copysign": (sd.copysign, None, lambda x, y: M(0), None),  # d/dx from the sign bits, below
    "mod": (sd.mod, lambda x, y: M(1), lambda x, y: -mpmath.floor(x / y), lambda x, y: y != 0),
    "fmod": (sd.fmod, lambda x, y: M(1), lambda x, y: -(mpmath.floor(x / y) if x / y > 0 else mpmath.ceil(x / y)),
             lambda x, y: y != 0),
    "xlogy": (sd.special.xlogy, lambda x, y: mpmath.log(y), lambda x, y: x / y, lambda x, y: y > 0),
}
PAIRS = [(1e300, 1e300), (1e300, -1e-300), (-1e15, 3.0), (1e8, 1e8), (1e-300, 1e-300), (-0.0, 2.0), (2.0, -0.0),
         (1e3, -1e3), (0.3, -0.7), (-2.5, 7.0), (700.0, -700.0), (1e15, 1e-15)]


def test_binary_derivatives_at_extreme_pairs_against_mpmath():
    x, y = sd.vector("x"), sd.vector("y")
    outputs = [g for fn, *_ in BINARY_DERIVATIVES.values() for g in sd.grad(sd.sum(fn(x, y)), [x, y])]
    failures = []
    in_float32 = [(a, b) for a, b in PAIRS if all(v == 0 or 1e-30 < abs(v) < 1e30 for v in (a, b))]
    for dtype, points in (("float64", PAIRS), ("float32", in_float32)):
        xs = np.array([p[0] for p in points], dtype=dtype)
        ys = np.array([p[1] for p in points], dtype=dtype)
        xd, yd = sd.vector("xd", dtype=dtype), sd.vector("yd", dtype=dtype)
        outs = [g for fn, *_ in BINARY_DERIVATIVES.values() for g in sd.grad(sd.sum(fn(xd, yd)), [xd, yd])]
        results = [("reference", sd.evaluate(outs, {xd: xs, yd: ys}))]
        if dtype == "float64":
            results.append(("compiled", sd.function([x, y], outputs)(xs, ys)))
        for backend, values in results:
            for k, (name, (_, dx, dy, domain)) in enumerate(BINARY_DERIVATIVES.items()):
                for i, (a, b) in enumerate(zip(xs, ys)):
                    ma, mb = M(float(a)), M(float(b))
                    if domain is not None and not domain(ma, mb):
                        continue
                    if name in ("mod", "fmod") and (float(a) / float(b)) % 1 == 0:
                        continue  # x/y on an integer: the remainder jumps there
                    slope_x = dx
                    if dx is None:  # copysign: sign(x) times the sign BIT of y (mpmath has no -0.0)
                        signs = math.copysign(1.0, float(b)) * np.sign(float(a))
                        slope_x = lambda _x, _y, signs=signs: M(signs)  # noqa: E731
                    for which, fn, got in (("x", slope_x, values[2 * k][i]), ("y", dy, values[2 * k + 1][i])):
                        error = _ulps(got, fn(ma, mb), np.dtype(dtype).type)
                        if error > DEFAULT_DERIVATIVE_ULPS:
                            failures.append(f"{backend} {dtype} d{name}/d{which} at ({a!r}, {b!r}): {got!r}, mpmath "
                                            f"{mpmath.nstr(fn(ma, mb), 17)} ({error:.3g} ulp)")
    assert not failures, "\n".join(failures)


def _far_from_mpmath(outputs, feeds, wants, dtype="float64", limits=8, precision=400, label=""):
    """Failure lines for every output of the reference evaluator and of one compiled kernel
    more than ``limits`` ulps (one number, or one per output) from mpmath, at every point
    of ``feeds`` ({symbol: array}); ``wants(*point)`` gives the outputs' mpmath values."""
    arrays = list(feeds.values())
    number = np.dtype(dtype).type
    with mpmath.workprec(precision):
        expected = [wants(*(M(float(a[i])) for a in arrays)) for i in range(len(arrays[0]))]
    limits = limits if isinstance(limits, tuple) else (limits,) * len(outputs)
    failures = []
    for backend, values in (("reference", sd.evaluate(outputs, feeds)),
                            ("compiled", sd.function(list(feeds), outputs)(*arrays))):
        for i, row in enumerate(expected):
            for k, (want, limit) in enumerate(zip(row, limits)):
                error = _ulps(values[k][i], want, number)
                if error > limit:
                    point = ", ".join(repr(a[i]) for a in arrays)
                    failures.append(f"{backend} {label}output {k} at ({point}): {values[k][i]!r}, mpmath "
                                    f"{mpmath.nstr(want, 17)} ({error:.3g} ulp)")
    return failures


def test_arctan2_second_derivatives_keep_relative_accuracy_beside_the_diagonals():
    # (y^2 - x^2)/r^4 and -+2xy/r^4: the mixed one cancelled where |x| = |y| when formed as
    # 1/r^2 - 2x^2/r^4 (2.2e-22 at (700, 700), true 0) and was NaN at subnormal pairs
    y, x = sd.vector("y"), sd.vector("x")
    angle = sd.sum(sd.arctan2(y, x))
    dy, dx = sd.grad(angle, [y, x])
    outputs = [*sd.grad(sd.sum(dy), [y, x]), sd.grad(sd.sum(dx), x)]
    points = []
    for scale in (5e-324, 1e-310, 1e-300, 1e-150, 0.3, 700.0, 1e15, 1e150, 1e300):
        for k in (0, 1, -1, 3, 1000):
            near = scale if k == 0 else float(np.nextafter(scale, np.inf)) if k == 1 else scale * (1 + k * 2.0 ** -52)
            points += [(scale, near), (near, scale), (scale, -near), (-near, scale)]
    ys, xs = np.array(points).T

    def wants(b, a):  # d2/dy2, d2/dydx, d2/dx2
        r4 = (a * a + b * b) ** 2
        return -2 * a * b / r4, (b * b - a * a) / r4, 2 * a * b / r4

    failures = _far_from_mpmath(outputs, {y: ys, x: xs}, wants, limits=16, precision=3000)
    assert not failures, "\n".join(failures[:20])


def test_pow_derivatives_keep_relative_accuracy_at_tiny_and_huge_bases():
    # y x**(y - 1) overflowed at (1e-310, 1e-15) (true 1e295) and was 175 ulps off at
    # (1e-300, 0.3), where y - 1 is rounded and log x scales the error; a constant 0.3 too
    x, y = sd.vector("x"), sd.vector("y")
    dx = sd.grad(sd.sum(x ** y), x)
    dxx, dxy = sd.grad(sd.sum(dx), [x, y])
    forward_dxy = sd.jvp(dx, [y], [sd.ones_like(y)])
    constant = sd.grad(sd.sum(x ** 0.3), x)
    outputs = [dx, dxx, dxy, forward_dxy, constant, sd.grad(sd.sum(constant), x)]
    points = [(1e-310, 1e-15), (2.2e-308, 1e-15), (1e-300, 1e-15), (1e-300, 0.3), (1e-300, -0.3), (1e-200, 0.1),
              (1e-100, 1e-15), (1e-300, 1e-10), (1e300, 2.3), (1e100, 2.3), (1e100, 0.3), (0.5, 3.0), (3.0, -0.3),
              (7.0, 0.45), (1e-5, 0.7), (1e15, -1.3)]
    xs, ys = np.array(points).T

    def wants(a, b):
        mixed, c = a ** (b - 1) * (1 + b * mpmath.log(a)), M(0.3)
        return (b * a ** (b - 1), b * (b - 1) * a ** (b - 2), mixed, mixed, c * a ** (c - 1), c * (c - 1) * a ** (c - 2))

    failures = _far_from_mpmath(outputs, {x: xs, y: ys}, wants, limits=8)
    assert not failures, "\n".join(failures)


def test_y_slopes_of_log_products_are_finite_in_forward_mode_at_subnormal_bases():
    # x**y log x (pow's y-slope) and xlogy(a, b): the tangent of log x alone is t / x = inf at a
    # subnormal x, where the product brings it back.  Forward over reverse gave pow's
    # d2/dxdy = +inf at (5e-324, 1), true -743.4, and forward mode xlogy(x, x)' = +inf, true log x + 1.
    x, y = sd.vector("x"), sd.vector("y")
    dy = sd.grad(sd.sum(x ** y), y)
    logs = sd.special.xlogy(x, x)
    outputs = [sd.jvp(dy, [x], [sd.ones_like(x)]), sd.jvp(logs, [x], [sd.ones_like(x)]),
               sd.hvp(sd.sum(x ** y), [x, y], [sd.ones_like(x), sd.zeros_like(y)], mode="fwd-rev")[1]]
    points = [(5e-324, 1.0), (1e-310, 1.0), (1e-310, 1.001), (2.2e-308, 0.5), (0.5, 2.0), (3.0, 1e-15)]
    xs, ys = np.array(points).T

    def wants(a, b):
        mixed = a ** (b - 1) * (1 + b * mpmath.log(a))
        return mixed, mpmath.log(a) + 1, mixed

    failures = _far_from_mpmath(outputs, {x: xs, y: ys}, wants, limits=8)
    assert not failures, "\n".join(failures)


def test_pow_mixed_derivative_keeps_relative_accuracy_where_one_plus_y_log_x_cancels():
    # d2(x**y)/dxdy = x**(y-1) (1 + y log x): the product rule's two terms cancel near
    # x = exp(-1/y) (257,633 ulps at (0.5, 1.4427); 0 at (exp(-1/3), 3), true 4.4e-17), in
    # both orders of differentiation and both modes; and the third derivatives there
    x, y = sd.vector("x"), sd.vector("y")
    f = sd.sum(x ** y)
    dx, dy = sd.grad(f, [x, y])
    dxy, dyx = sd.grad(sd.sum(dx), y), sd.grad(sd.sum(dy), x)
    ones = sd.ones_like(x)
    outputs = [dxy, dyx, sd.jvp(dx, [y], [sd.ones_like(y)]), sd.jvp(dy, [x], [ones]),
               sd.hvp(f, [x, y], [ones, sd.zeros_like(y)], mode="fwd-rev")[1]]
    points = [(0.5, 1.4427), (0.5, 1 / math.log(2)), (math.exp(-1 / 3), 3.0), (math.exp(-1 / 3), 3.0000000000000004),
              (0.1, 1 / math.log(10)), (2.0, -1 / math.log(2)), (1e-300, 1 / 690.7755278982137),
              (1e300, -1 / 690.7755278982137), (1 - 2.0 ** -20, 1048575.5), (1e-310, 1 / 713.8), (0.3, 0.7)]
    xs, ys = np.array(points).T

    def wants(a, b):
        mixed = a ** (b - 1) * (1 + b * mpmath.log(a))
        return mixed, mixed, mixed, mixed, mixed

    failures = _far_from_mpmath(outputs, {x: xs, y: ys}, wants, limits=4, precision=400)
    third = sd.grad(sd.sum(dxy), [x, y])  # where they are finite (not at the tiny x above, where they overflow)

    def third_wants(a, b):
        log = mpmath.log(a)
        return a ** (b - 2) * ((b - 1) * (1 + b * log) + b), a ** (b - 1) * log * (2 + b * log)

    finite = slice(0, 6)
    failures += _far_from_mpmath(third, {x: xs[finite], y: ys[finite]}, third_wants, limits=8, precision=400)
    assert not failures, "\n".join(failures)


def test_one_plus_mul_log_is_the_same_in_both_backends_and_relatively_accurate():
    # the private op behind pow's mixed second derivative: 1 + a log b with log b in
    # double-double; over 3,000 elements the kernel runs it as a vector pass (8 lanes, the
    # second tier where any lane's sum is below 2**-11), in float32 as float64 rounded
    from symdiff.ops.elementwise import ONE_PLUS_MUL_LOG

    rng = np.random.default_rng(5)
    bases = np.concatenate([rng.uniform(0.1, 3, 1000), np.exp(rng.uniform(-740, 709, 1000)), 1 + rng.uniform(-1, 1, 200) * 2.0 ** -20,
                            [0.0, -0.0, -1.0, np.inf, np.nan, 5e-324, 1e-310, 1.0, 2.0, 0.5, 1e300]])
    near = -1 / np.log(bases[:1000])  # y log x within a few ulps of -1: the sum cancels
    exponents = np.concatenate([rng.uniform(-2, 2, 1000), near[:1000] * (1 + rng.integers(-4, 5, 1000) * 2.0 ** -52),
                                rng.uniform(-2e6, 2e6, 200), [1.0, 2.0, 1.0, 2.0, 1.0, 1e-3, 3.0, np.inf, 1e300, -np.inf, 0.0]])
    exponents[1000:2000] = -1 / np.log(bases[1000:2000])
    for dtype in ("float64", "float32"):
        a, b = sd.vector("a", dtype=dtype), sd.vector("b", dtype=dtype)
        with np.errstate(all="ignore"):
            feeds = (exponents.astype(dtype), bases.astype(dtype))
        out = ONE_PLUS_MUL_LOG(a, b)
        compiled, reference = sd.function([a, b], out)(*feeds), sd.evaluate(out, dict(zip((a, b), feeds)))
        assert_array_equal(compiled, reference)
        assert compiled.dtype == np.dtype(dtype)
    a, b = sd.vector("a"), sd.vector("b")
    compiled = sd.function([a, b], ONE_PLUS_MUL_LOG(a, b))(exponents, bases)
    worst = 0.0
    for i in range(0, len(bases), 7):
        want = 1 + M(float(exponents[i])) * mpmath.log(M(float(bases[i]))) if bases[i] > 0 and np.isfinite(bases[i]) else None
        if want is not None and mpmath.isfinite(want) and abs(want) > 2.0 ** -50:
            worst = max(worst, _ulps(compiled[i], want, np.float64))
    assert worst <= 1.0, worst


def test_pow_mixed_derivative_keeps_its_subnormal_steps_where_x_to_the_y_minus_one_is_subnormal():
    # x**(y - 1) (1 + y log x) with x**(y - 1) subnormal and x**y normal: the composite
    # rounded x**(y - 1) to the subnormal grid before the product (120 ulps at (1.68e293,
    # -0.0667), where 1 + y log x = -44); in every mode, both backends
    x, y = sd.vector("x"), sd.vector("y")
    f = sd.sum(x ** y)
    dx, dy = sd.grad(f, [x, y])
    ones = sd.ones_like(x)
    outputs = [sd.grad(sd.sum(dx), y), sd.grad(sd.sum(dy), x), sd.jvp(dx, [y], [sd.ones_like(y)]),
               sd.jvp(dy, [x], [ones]), sd.hvp(f, [x, y], [ones, sd.zeros_like(y)], mode="fwd-rev")[1]]
    xs, ys = np.array([(1.68e293, -0.0667), (1e300, -0.03), (1e308, -0.0001), (3e307, -0.001)]).T

    def wants(a, b):
        return (a ** (b - 1) * (1 + b * mpmath.log(a)),) * 5

    failures = _far_from_mpmath(outputs, {x: xs, y: ys}, wants, limits=2, precision=400)
    assert not failures, "\n".join(failures)


_SUBNORMAL_POWER_POINTS = [(1e-310, 1.001), (5e-324, 0.5), (5e-324, 0.75), (5e-324, 1.0), (5e-324, 1.5), (5e-324, 2.0),
                           (1e-320, 1.01), (1e-310, 0.999), (2.2e-308, 1.0001), (3e-320, 1.3), (1e-300, 1.03),
                           (1e-100, 3.1), (0.5, 1040.0), (1e300, -1.03), (1e300, -1.0300000000000002)]


def test_pow_y_slope_keeps_relative_accuracy_where_x_to_the_y_is_subnormal():
    # x**y log x was formed from a subnormal x**y: 337 ulps at (1e-310, 1.001), 7 at (1e300,
    # -1.03), 0 instead of a subnormal where x**y underflowed; both backends
    x, y = sd.vector("x"), sd.vector("y")
    dy = sd.grad(sd.sum(x ** y), y)
    xs, ys = np.array(_SUBNORMAL_POWER_POINTS + [(0.5, 1076.0), (1e-200, 5.37)]).T
    failures = _far_from_mpmath([dy], {x: xs, y: ys}, lambda a, b: (a ** b * mpmath.log(a),), limits=2, precision=400)
    assert not failures, "\n".join(failures)


@pytest.mark.xfail(strict=True, reason="open: the second partials' subnormal forms cost the HVP of sum(a ** b) "
                   "59 -> 98 ms on 1e6 elements (docs: /work/notes/h_c11.md)")
def test_pow_second_y_derivatives_keep_relative_accuracy_where_x_to_the_y_is_subnormal():
    # d2/dy2 235 ulps at (1e-310, 1.001), d2/dydx 4.9e15 ulps at (5e-324, 1.5) (x**y underflowed
    # to 0, the derivative is -2.5e-159), 2.5e12 at (1e-320, 1.01); both modes, both backends
    x, y = sd.vector("x"), sd.vector("y")
    f = sd.sum(x ** y)
    dx, dy = sd.grad(f, [x, y])
    dyx, dyy = sd.grad(sd.sum(dy), [x, y])
    ones = sd.ones_like(x)
    outputs = [dyy, dyx, sd.grad(sd.sum(dx), y), sd.jvp(dy, [y], [sd.ones_like(y)]), sd.jvp(dy, [x], [ones]),
               sd.jvp(dx, [y], [sd.ones_like(y)]), sd.hvp(f, [x, y], [sd.zeros_like(x), sd.ones_like(y)], mode="fwd-rev")[1]]
    xs, ys = np.array(_SUBNORMAL_POWER_POINTS).T

    def wants(a, b):
        log = mpmath.log(a)
        power, mixed = a ** b, a ** (b - 1) * (1 + b * log)
        return power * log * log, mixed, mixed, power * log * log, mixed, mixed, power * log * log

    failures = _far_from_mpmath(outputs, {x: xs, y: ys}, wants, limits=4, precision=400)
    assert not failures, "\n".join(failures)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_constant_exponent_powers_keep_relative_accuracy(dtype):
    # c x**(c - 1) overflowed where the slope is finite (x**0.001 at 1e-310: inf, true 4.9e306;
    # float32 x**0.01 at 1e-40), and float32's rounded c - 1 cost 59 ulps (x**0.999 at 1e-30, d2)
    x = sd.vector("x", dtype=dtype)
    tiny, huge = (1e-310, 1e300) if dtype == "float64" else (1e-40, 1e30)
    cases = [(0.001, [tiny, 1e-30, 0.5, 3.0, huge]), (0.01, [tiny, 1e-30, 0.5]), (0.999, [tiny, 1e-30, 2.0, huge]),
             (0.3, [tiny, 2.0]), (2.5, [1e-30, 3.0]), (-1.5, [1e-20, 1e20]), (3.0, [-2.0, 1e-30]), (-3.0, [-2.0])]
    failures = []
    for c, points in cases:
        d1 = sd.grad(sd.sum(x ** c), x)
        d2 = sd.grad(sd.sum(d1), x)
        exponent = M(float(np.dtype(dtype).type(c)))  # the graph holds c in its dtype

        def wants(base, c=exponent):
            return c * base ** (c - 1), c * (c - 1) * base ** (c - 2)

        failures += _far_from_mpmath([d1, d2], {x: np.array(points, dtype=dtype)}, wants, dtype, limits=4,
                                     precision=300, label=f"x**{c} ")
    assert not failures, "\n".join(failures)


def test_gaussian_derivatives_are_zero_not_nan_where_they_underflow_in_forward_mode():
    # erf's slope exp(-x**2): its forward-mode derivative 2x t overflowed from 9e307 and met exp's 0
    x = sd.vector("x")
    points = np.array([1.7e308, -1.7e308, 1e200, -1e200, np.inf, -np.inf, 41.0, -41.0])
    for fn in (sd.special.erf, sd.special.erfc, sd.special.ndtr):
        once = sd.jvp(fn(x), [x], [sd.ones_like(x)])
        twice = sd.jvp(once, [x], [sd.ones_like(x)])
        for values in (sd.evaluate([once, twice], {x: points}), sd.function([x], [once, twice])(points)):
            assert np.array_equal(values[0], np.zeros_like(points)), (fn, values[0])
            assert np.array_equal(values[1], np.zeros_like(points)), (fn, values[1])


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_logaddexp_derivatives_see_the_exact_difference(dtype):
    # sigmoid of the rounded x - y lost about |x - y| ulps: 89 at (-100, 100.00000000000007)
    points = {"float64": [(-100.0, 1e-8), (-100.0, 100.00000000000007), (-0.7, -0.7), (700.0, -1.0),
                          (-1000.0, -1000.0000000000001), (40.0, -40.0000001), (0.5, 0.3)],
              "float32": [(0.7, 100.0), (-100.0, 1e-3), (-50.0, 30.1), (3.0, -2.5), (0.5, 0.3)]}[dtype]
    x, y = sd.vector("x", dtype=dtype), sd.vector("y", dtype=dtype)
    xs, ys = (np.array(column, dtype=dtype) for column in zip(*points))
    failures = []
    for fn, base in ((sd.logaddexp, mpmath.e), (sd.logaddexp2, 2)):
        dx, dy = sd.grad(sd.sum(fn(x, y)), [x, y])
        dxx, dxy = sd.grad(sd.sum(dx), [x, y])

        def wants(a, b, base=base):
            share, other = 1 / (1 + mpmath.power(base, b - a)), 1 / (1 + mpmath.power(base, a - b))
            slope = mpmath.log(base) * share * other
            return share, other, slope, -slope

        failures += _far_from_mpmath([dx, dy, dxx, dxy], {x: xs, y: ys}, wants, dtype, limits=4,
                                     label=f"{fn.__name__} ")
    assert not failures, "\n".join(failures)


@pytest.mark.parametrize("mode", ["fwd-rev", "rev-rev"])
def test_division_hvp_at_a_subnormal_denominator_is_zero_and_inf_not_nan(mode):
    # the HVP of x / y along (1, 0) is (0, -1/y**2): its x part was NaN (a zero tangent times 1/y = inf)
    for dtype, tiny in (("float64", 5e-324), ("float32", 1e-45)):
        x, y, vx, vy = (sd.vector(name, dtype=dtype) for name in ("x", "y", "vx", "vy"))
        hvp = sd.hvp(sd.sum(x / y), [x, y], [vx, vy], mode=mode)
        inputs = [np.array([-3.0, -1e8, 2.0], dtype=dtype), np.array([tiny, tiny, 3.0], dtype=dtype),
                  np.ones(3, dtype=dtype), np.zeros(3, dtype=dtype)]
        for along_x, along_y in (sd.evaluate(hvp, dict(zip((x, y, vx, vy), inputs))),
                                 sd.function([x, y, vx, vy], hvp)(*inputs)):
            assert np.array_equal(along_x, np.zeros(3)), along_x
            np.testing.assert_allclose(along_y, [-np.inf, -np.inf, -1 / 9], rtol=1e-6)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_hypot_second_derivatives_keep_relative_accuracy_for_small_pairs(dtype):
    # the composite slope formed (y/x)**2 before the chain rule's 1/m: d2/dx2 was 0 at
    # (1e-100, 1e-300) (true 1e-300), 1e-5 relative at (1e-20, 1e-180), 57 ulps in float32 at
    # (1e-10, 1e-30); forward mode gave inf and NaN at subnormal pairs
    points = {"float64": [(1e-100, 1e-300), (1e-20, 1e-180), (40.0, 0.5), (1e-310, 5e-324), (5e-324, 1e-310),
                          (1e300, 1e300), (-7.0, 1e15), (1.0, 1.0 + 2.0 ** -52), (-5.0, 1e-8)],
              "float32": [(1e-10, 1e-30), (1e-40, 1e-45), (3.0, 4.0), (1e30, -1e-30), (0.5, 0.5)]}[dtype]
    x, y = sd.vector("x", dtype=dtype), sd.vector("y", dtype=dtype)
    dx, dy = sd.grad(sd.sum(sd.hypot(x, y)), [x, y])
    dxx, dxy = sd.grad(sd.sum(dx), [x, y])
    forward = sd.jvp(sd.jvp(sd.hypot(x, y), [x], [sd.ones_like(x)]), [y], [sd.ones_like(y)])
    outputs = [dx, dy, dxx, dxy, sd.grad(sd.sum(dy), y), forward]
    xs, ys = (np.array(column, dtype=dtype) for column in zip(*points))

    def wants(p, q):
        h = mpmath.hypot(p, q)
        return p / h, q / h, q * q / h ** 3, -p * q / h ** 3, p * p / h ** 3, -p * q / h ** 3

    failures = _far_from_mpmath(outputs, {x: xs, y: ys}, wants, dtype, limits=4)
    assert not failures, "\n".join(failures)


def test_logaddexp_derivatives_are_nan_at_nan_differences():
    # logaddexp2's clamped branches read a NaN difference as 0: its derivatives were 1/2
    x, y = sd.vector("x"), sd.vector("y")
    xs = np.array([np.nan, 1.0, np.nan, -np.inf, np.inf, -np.inf])
    ys = np.array([1.0, np.nan, np.inf, np.nan, np.inf, -np.inf])
    for fn in (sd.logaddexp, sd.logaddexp2):
        dx, dy = sd.grad(sd.sum(fn(x, y)), [x, y])
        outputs = [dx, dy, *sd.grad(sd.sum(dx), [x, y])]
        for values in (sd.evaluate(outputs, {x: xs, y: ys}), sd.function([x, y], outputs)(xs, ys)):
            assert all(np.isnan(v).all() for v in values), (fn.__name__, values)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_erfinv_derivatives_keep_relative_accuracy_next_to_one(dtype):
    # exp(out**2) scaled erfinv's rounding by 2 out**2: 31 ulps (d1) and 62 (d2) at
    # 1 - 2**-53, 19 ulps (d2) in float32 at 0.99999994
    y = sd.vector("y", dtype=dtype)
    d1 = sd.grad(sd.sum(sd.special.erfinv(y)), y)
    d2 = sd.grad(sd.sum(d1), y)
    tiny = float(np.finfo(dtype).epsneg)
    points = np.array([1e-10, 0.3, 0.5, 0.6, 0.9, 0.99, 0.999999, 1 - 64 * tiny, 1 - 2 * tiny, 1 - tiny, -(1 - tiny)],
                      dtype=dtype)

    def wants(p):
        x = mpmath.erfinv(p)
        slope = mpmath.sqrt(mpmath.pi) / 2 * mpmath.exp(x * x)
        return slope, 2 * x * slope * slope

    failures = _far_from_mpmath([d1, d2], {y: points}, wants, dtype, limits=(4, 6), precision=200)
    assert not failures, "\n".join(failures)


# Points where the Gaussian exp(-s x*x) is normal (float64: erf's below |x| = 26.6, ndtr's
# below 37.6; float32: 9.3 and 13.1), both signs.
_GAUSSIAN_POINTS = {
    "float64": {"erf": [0.3, 1.1, 3.3, 5.9, -5.9, 8.1, 13.7, 20.1, -20.1, -23.95405052608771, 26.3, -26.3,
                        26.43559041065931],
                "ndtr": [0.3, 3.3, 5.9, 8.1, 13.7, -20.1, 26.3, -26.3, 27.2, 34.72, -35.43, 37.5]},
    "float32": {"erf": [0.3, 3.3, 5.9, 8.1, -8.1, 8.66, 9.25],
                "ndtr": [0.3, 3.3, 8.1, -8.1, 11.73, 12.72, -13.0]},
}


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_gaussian_slopes_keep_relative_accuracy_where_the_square_rounds(dtype):
    # exp(-s x*x) with x*x rounded took the square's rounding times s x**2 (found by a
    # review): erf' 94 ulps at 26.3 (d2 155), 475 at 26.4356 (d2 490 at -23.954), ndtr' 64
    # at 26.3, 255 at -35.43 (d2 283); float32 ndtr' 11 and erf' 25 at 8.1; both backends,
    # both modes
    x = sd.vector("x", dtype=dtype)
    two_over_sqrt_pi, inv_sqrt_2pi = 2 / mpmath.sqrt(mpmath.pi), 1 / mpmath.sqrt(2 * mpmath.pi)
    cases = [("erf", sd.special.erf, lambda a: two_over_sqrt_pi * mpmath.exp(-a * a), 2),
             ("erfc", sd.special.erfc, lambda a: -two_over_sqrt_pi * mpmath.exp(-a * a), 2),
             ("ndtr", sd.special.ndtr, lambda a: inv_sqrt_2pi * mpmath.exp(-a * a / 2), 1)]
    failures = []
    for name, fn, slope, twice_scale in cases:
        d1 = sd.grad(sd.sum(fn(x)), x)
        outputs = [d1, sd.grad(sd.sum(d1), x), sd.jvp(d1, [x], [sd.ones_like(x)])]
        points = np.array(_GAUSSIAN_POINTS[dtype]["ndtr" if name == "ndtr" else "erf"], dtype=dtype)

        def wants(a, slope=slope, twice_scale=twice_scale):
            return slope(a), -twice_scale * a * slope(a), -twice_scale * a * slope(a)

        failures += _far_from_mpmath(outputs, {x: points}, wants, dtype, limits=(4, 8, 8), label=f"{name} ")
    assert not failures, "\n".join(failures)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_ndtr_higher_derivatives_keep_relative_accuracy_where_the_gaussian_is_subnormal(dtype):
    # ndtr'' = -x phi(x) is normal at 37.7 where phi is subnormal (9e-310): the composite
    # multiplied exp's subnormal output by x, 29 ulps at 37.7 (and at -37.7), subnormal steps
    # off beyond; now the primitive ndtr_derivative (phi scaled by 2**600 there); both
    # backends, reverse and forward mode, and the third derivative
    x = sd.vector("x", dtype=dtype)
    d1 = sd.grad(sd.sum(sd.special.ndtr(x)), x)
    d2 = sd.grad(sd.sum(d1), x)
    outputs = [d1, d2, sd.jvp(d1, [x], [sd.ones_like(x)]), sd.grad(sd.sum(d2), x)]
    points = {"float64": [37.5, 37.6, 37.7, -37.7, 37.75, -37.8, 38.0, 38.5, -38.5, 38.6, 0.3, 2.0, -5.9, 26.3],
              "float32": [0.3, 2.0, -5.9, 8.1, 12.72, -13.0, 13.5, 14.0]}[dtype]

    def wants(a):
        phi = mpmath.npdf(a)
        return phi, -a * phi, -a * phi, (a * a - 1) * phi

    failures = _far_from_mpmath(outputs, {x: np.array(points, dtype=dtype)}, wants, dtype, limits=(4, 4, 4, 4))
    assert not failures, "\n".join(failures)


def test_round_follows_numpys_steps_for_every_decimals():
    rng = np.random.default_rng(8)
    for dtype in (np.float64, np.float32):
        values = (rng.normal(size=50) * 10.0 ** rng.integers(-5, 6, size=50)).astype(dtype)
        values[:4] = [0.5, 1.5, 2.5, -0.5]
        for decimals in (-400, -3, -1, 0, 1, 2, 5, 400):
            got = sd.evaluate(sd.round(sd.constant(values), decimals), {})
            np.testing.assert_array_equal(got, np.round(values, decimals), err_msg=f"{dtype.__name__} {decimals}")


def test_kernel_cache_key_follows_the_scalar_algorithms():
    """Kernels compiled with the helpers of ops/special_scalar.py must not outlive a change to it."""
    import os

    from symdiff.backends import cache

    fingerprinted = [os.path.realpath(path) for path in cache.fingerprinted_files()]
    assert os.path.realpath(special_scalar.__file__) in fingerprinted


def test_even_order_polygamma_at_negative_half_integers_is_the_reflection_without_cotangent_noise():
    """psi^(n)(x) = psi^(n)(1 - x) at half-integers for even n (cot(pi x) = 0 there); a
    cotangent of 6e-17 scaled by pi^(n+1) used to dominate (review finding)."""
    x = sd.vector("x")
    points = np.array([-1e10 + 0.5, -1e4 + 0.5, -100.5, -2.5])
    for n in (2, 4):
        got = sd.evaluate(sd.special.polygamma(n, x), {x: points})
        want = sd.evaluate(sd.special.polygamma(n, x), {x: 1 - points})
        np.testing.assert_allclose(got, want, rtol=1e-13)


def test_log_ndtr_series_are_the_ones_mpmath_gives():
    """The Chebyshev series of log Phi's orders 2-5 on [-3, 3] in special_scalar, recomputed:
    the stored numbers are what this derivation gives (to 1e-15 of the largest coefficient)."""
    series, starts = special_scalar._LOG_NDTR_SERIES, special_scalar._LOG_NDTR_STARTS
    roots, root_starts = special_scalar._LOG_NDTR_ROOTS, special_scalar._LOG_NDTR_ROOT_STARTS
    with mpmath.workdps(40):
        for k, (n, low, high) in enumerate(special_scalar.LOG_NDTR_SERIES_LAYOUT):
            zeros = [M(roots[2 * j]) + M(roots[2 * j + 1]) for j in range(root_starts[k], root_starts[k + 1])]
            for z in zeros:  # each a zero of the function, to 1e-30
                assert abs(_log_ndtr_derivative(z, n)) < 1e-30, (n, z)
            stored = series[starts[k]:starts[k + 1]]
            size = len(stored)
            nodes = [mpmath.cos(mpmath.pi * (i + M(0.5)) / size) for i in range(size)]
            def reduced(u):
                x = (high - low) / 2 * u + M(high + low) / 2
                return _log_ndtr_derivative(x, n) / mpmath.fprod([x - z for z in zeros])
            values = [reduced(u) for u in nodes]
            for j, c in enumerate(stored):
                want = 2 * mpmath.fsum(v * mpmath.cos(mpmath.pi * j * (i + M(0.5)) / size)
                                       for i, v in enumerate(values)) / size
                assert abs(c - want) <= 1e-15 * abs(stored[0]), (n, low, j, c, want)


def test_gradients_through_private_slopes_convert_to_sympy():
    # arctan2's, hypot's and erfinv's slopes and pow's y-slope are private primitives; a
    # gradient holding them had no SymPy spelling (to_sympy raised for the gradient of atan2)
    import sympy

    x, y = sd.scalars("x y")
    X, Y = sympy.symbols("x y")
    cases = [(sd.arctan2(y, x), sympy.atan2(Y, X)), (sd.hypot(x, y), sympy.sqrt(X**2 + Y**2)),
             (sd.special.erfinv(x), sympy.erfinv(X)), (x ** y, X**Y)]
    values = {"x": sympy.Rational(3, 10), "y": sympy.Rational(7, 10)}
    for expr, want in cases:
        for got, variable in zip(sd.to_sympy(sd.grad(expr, [x, y]), optimize=False), (X, Y)):
            at = float(got.subs({s: values[s.name] for s in got.free_symbols}))
            assert abs(at - float(sympy.diff(want, variable).subs({X: values["x"], Y: values["y"]}))) < 1e-12, got
    # mul_log's slopes (mul_log_slope, told apart by an attribute) in second derivatives of
    # xlogy (pow's are pow_curvature nodes: test_pow_derivatives_convert_to_plain_sympy_formulas)
    dy = sd.grad(sd.special.xlogy(y, x), y, mode="rev")
    for second, variable in zip(sd.grad(dy, [x, y], mode="rev"), (X, Y)):
        got = sd.to_sympy(second, optimize=False)
        at = float(got.subs({s: values[s.name] for s in got.free_symbols}))
        want = sympy.diff(Y * sympy.log(X), Y, variable).subs({X: values["x"], Y: values["y"]})
        assert abs(at - float(want)) < 1e-12, got
    assert "mul_log_slope" in sd.printers.to_text(sd.grad(dy, x, mode="rev"), optimize=False)


def test_pow_derivatives_convert_to_plain_sympy_formulas():
    # pow's slopes and second partials are the private pow_slope / pow_curvature nodes, spelled
    # plainly: as the composites' regimes (wheres whose conditions held wheres) SymPy folded
    # Piecewise conditions for minutes (d2/dx2 of x ** y), and d/dx printed 2,800 characters
    import time

    import sympy

    x, y = sd.scalars("x y")
    X, Y = sympy.symbols("x y", real=True)
    for expr, want, variables in [(x ** y, X**Y, (x, y)), (x ** 0.3, X ** sympy.Float(0.3), (x,)),
                                  (x ** 3, X**3, (x,))]:
        symbols = {x: X, y: Y}
        for first in variables:
            for second in (None,) + variables:
                derivative = sd.grad(expr, first) if second is None else sd.grad(sd.grad(expr, first), second)
                start = time.perf_counter()
                got = sd.to_sympy(derivative)
                assert time.perf_counter() - start < 2.0, (expr, first, second)
                wanted = sympy.diff(want, *[symbols[v] for v in (first, second) if v is not None])
                at = {X: sympy.Rational(3, 10), Y: sympy.Rational(7, 10)}
                assert abs(float(got.subs(at)) - float(wanted.subs(at))) < 1e-12, (got, wanted)
                if expr is not x ** 0.3:  # x ** 0.3 carries its exponent's rounding correction (stop_gradient)
                    assert sympy.simplify(got - wanted) == 0, (got, wanted)


def _reduction_far_from_mpmath(x, outputs, points, wants, dtype="float64", limit=4, label=""):
    """Failure lines for every entry of every output (each of x's shape or a scalar) more
    than ``limit`` ulps from mpmath at each point (an array for the vector ``x``), in the
    reference evaluator and in one compiled kernel; ``wants(values)`` gives, per output, its
    mpmath values (a number or a list) at ``values`` (mpf)."""
    number = np.dtype(dtype).type
    compiled = sd.function([x], outputs)
    failures = []
    for point in points:
        point = np.asarray(point, dtype=dtype)
        with mpmath.workprec(400):
            expected = wants([M(float(v)) for v in point])
        for backend, values in (("reference", sd.evaluate(outputs, {x: point})), ("compiled", compiled(point))):
            for k, (got, want) in enumerate(zip(values, expected)):
                for j, (g, w) in enumerate(zip(np.ravel(got), want if isinstance(want, list) else [want])):
                    error = _ulps(g, w, number)
                    if error > limit:
                        failures.append(f"{backend} {label}output {k}[{j}] at {point.tolist()}: {g!r}, mpmath "
                                        f"{mpmath.nstr(w, 17)} ({error:.3g} ulp)")
    return failures


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_norm_derivatives_where_the_norm_is_subnormal_or_overflows(dtype):
    # two_norm's slope was x / norm with the norm rounded: [1, 1] at [5e-324, 5e-324] (true
    # 0.7071: the norm rounds to 5e-324), [0, 0] at [1.7e308, 1.7e308] (the norm is inf);
    # the Hessian (I - u u^T) / norm, by reverse over reverse and forward over reverse, likewise
    # ([0, 0] at [1.7e308, 1.7e308]).  The Hessian's points keep 1 / norm finite: below, its
    # diagonal is the sum of an overflowing 1 / norm and -u_i**2 / norm (NaN or inf).
    x = sd.vector("x", dtype=dtype)
    norm = sd.linalg.norm(x)
    slope = sd.grad(norm, x)
    hessian = [sd.grad(slope[0], x), sd.hvp(norm, x, sd.constant(np.array([1, 0], dtype=dtype)), mode="fwd-rev")]
    tiny = {"float64": [[5e-324, 5e-324], [3e-309, -4e-309], [1e-320, 0.0]],
            "float32": [[1e-45, 1e-45], [2e-42, -3e-42], [1e-44, 0.0]]}[dtype]
    points = {"float64": [[6e-309, -8e-309], [1e-310, 2.5e-308], [1.7e308, 1.7e308], [-1e308, 1.5e308], [3.0, 4.0]],
              "float32": [[6e-39, -8e-39], [1e-40, 1.2e-38], [3e38, 3e38], [-2e38, 3e38], [3.0, 4.0]]}[dtype]

    def wants(v):
        r = mpmath.sqrt(v[0] ** 2 + v[1] ** 2)
        u = [a / r for a in v]
        column = [((1 if i == 0 else 0) - u[i] * u[0]) / r for i in range(2)]
        return [r, u, column, column]

    failures = _reduction_far_from_mpmath(x, [norm, slope], tiny, wants, dtype, limit=4)
    failures += _reduction_far_from_mpmath(x, [norm, slope, *hessian], points, wants, dtype, limit=4)
    assert not failures, "\n".join(failures)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_norm_hessian_where_one_over_the_norm_overflows(dtype):
    # below a norm of 5.6e-309 (1.2e-38 in float32) 1 / norm overflows while (1 - u_i**2) / norm
    # need not: reverse over reverse divided by the norm before projecting (diagonal inf at
    # [3e-309, -4e-309], true 1.28e308; NaN at [5e-324, 0], true 0); now the private
    # two_norm_slope's rules project first.  Both columns, three ways, both backends.
    x = sd.vector("x", dtype=dtype)
    norm = sd.linalg.norm(x)
    slope = sd.grad(norm, x)
    one_hot = [sd.constant(np.eye(2, dtype=dtype)[k]) for k in range(2)]
    hessian = [sd.grad(slope[0], x), sd.grad(slope[1], x),
               sd.hvp(norm, x, one_hot[0], mode="rev-rev"), sd.hvp(norm, x, one_hot[1], mode="rev-rev"),
               sd.hvp(norm, x, one_hot[0], mode="fwd-rev"), sd.hvp(norm, x, one_hot[1], mode="fwd-rev")]
    points = {"float64": [[3e-309, -4e-309], [5e-324, 0.0], [0.0, -1e-310], [2e-309, 2.5e-309], [5e-324, 5e-324]],
              "float32": [[3e-39, -4e-39], [1e-45, 0.0], [0.0, -1e-40], [2e-39, 2.5e-39], [1e-45, 1e-45]]}[dtype]

    def wants(v):
        r = mpmath.sqrt(v[0] ** 2 + v[1] ** 2)
        u = [a / r for a in v]
        columns = [[((1 if i == j else 0) - u[i] * u[j]) / r for i in range(2)] for j in range(2)]
        return columns * 3

    failures = _reduction_far_from_mpmath(x, hessian, points, wants, dtype, limit=4)
    assert not failures, "\n".join(failures)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_norm_gradient_at_infinite_entries_is_the_limit_of_x_over_the_norm(dtype):
    # x / norm was inf / inf = NaN at an infinite entry ([inf, 1]: [nan, 0]; its limit is
    # [1, 0]); now +-1 / sqrt(m) at the m infinite entries of the slice, 0 elsewhere, NaN only
    # in a slice that holds a NaN.  Reverse and forward mode, both backends, a vector, a
    # matrix's rows and columns (norms over an axis) and a batch of rows.
    inf, nan, half = np.inf, np.nan, 1 / np.sqrt(np.array(2.0, dtype=dtype))
    x, v = sd.vector("x", 2, dtype=dtype), sd.vector("v", 2, dtype=dtype)
    norm = sd.linalg.norm(x)
    outputs = [sd.grad(norm, x), sd.jvp(norm, x, v), sd.hvp(norm, x, v, mode="rev-rev"),
               sd.hvp(norm, x, v, mode="fwd-rev")]
    compiled = sd.function([x, v], outputs)
    along = np.array([1.0, -0.5], dtype=dtype)
    cases = [([inf, 1], [1, 0]), ([inf, inf], [half, half]), ([-inf, 1], [-1, 0]), ([-inf, inf], [-half, half]),
             ([1, -inf], [0, -1]), ([nan, 1], [nan, nan]), ([nan, inf], [nan, nan])]
    for at, slope in cases:
        point, slope = np.array(at, dtype=dtype), np.array(slope, dtype=dtype)
        for values in (compiled(point, along), sd.evaluate(outputs, {x: point, v: along})):
            np.testing.assert_array_equal(values[0], slope)
            np.testing.assert_array_equal(values[1], np.dot(slope, along))
            for product in values[2:]:  # the Hessian's limit is 0 (NaN with a NaN entry)
                np.testing.assert_array_equal(product, np.zeros(2) if not np.isnan(at).any() else [nan, nan])
    m = sd.matrix("m", (3, 2), dtype=dtype)
    batch = sd.tensor("b", (2, 3, 2), dtype=dtype)
    rows = np.array([[inf, 1], [-inf, inf], [3, 4]], dtype=dtype)
    by_axis = {0: np.array([[half, 0], [-half, 1], [0, 0]], dtype=dtype),
               1: np.array([[1, 0], [-half, half], [0.6, 0.8]], dtype=dtype)}
    for axis, want in by_axis.items():
        total = sd.sum(sd.linalg.norm(m, axis=axis))
        for got in (sd.function([m], sd.grad(total, m))(rows), sd.evaluate(sd.grad(total, m), {m: rows})):
            np.testing.assert_allclose(got, want, rtol=2 * np.finfo(dtype).eps, atol=0)
    stacked = np.stack([rows, rows[::-1]])
    total = sd.sum(sd.linalg.norm(batch, axis=-1))
    for got in (sd.function([batch], sd.grad(total, batch))(stacked), sd.evaluate(sd.grad(total, batch), {batch: stacked})):
        np.testing.assert_allclose(got, np.stack([by_axis[1], by_axis[1][::-1]]), rtol=2 * np.finfo(dtype).eps, atol=0)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_norm_hessian_where_one_entry_dominates(dtype):
    # The Hessian (I - u u^T) / norm: its diagonal 1 - u_i**2 cancelled where |u_i| is near 1
    # (455 ulps at [1e-310, 2.5e-309]; 8e15 at [1, 1e-8] by forward over reverse).  The
    # dominant entry now takes the sum of the other squares.  The whole matrix, by sd.hessian
    # in both modes and by HVPs along each axis in both modes, both backends.
    x = sd.vector("x", 3, dtype=dtype)
    norm = sd.linalg.norm(x)
    one_hot = [sd.constant(np.eye(3, dtype=dtype)[k]) for k in range(3)]
    outputs = [sd.hessian(norm, x), sd.hessian(norm, x, mode="rev-rev")]
    outputs += [sd.stack([sd.hvp(norm, x, e, mode=mode) for e in one_hot]) for mode in ("rev-rev", "fwd-rev")]
    points = {"float64": [[4e-309, 1e-307, 0.0], [1.0, 1e-8, -3e-9], [-1e300, 2e292, 1e291], [3.0, -4.0, 1e-7],
                          [2e-9, 1e-20, -1.0], [1e-160, 3e-168, 5e-310]],
              "float32": [[1e-39, 3e-38, 0.0], [1.0, 1e-4, -3e-5], [-1e30, 2e26, 1e25], [3.0, -4.0, 1e-4]]}[dtype]

    def wants(v):
        r = mpmath.sqrt(sum(a ** 2 for a in v))
        u = [a / r for a in v]
        matrix = [((1 if i == j else 0) - u[i] * u[j]) / r for i in range(3) for j in range(3)]
        return [matrix] * 4

    failures = _reduction_far_from_mpmath(x, outputs, points, wants, dtype, limit=4)
    assert not failures, "\n".join(failures)


def test_norm_hessian_at_zero_is_finite_and_composites_stay_finite():
    # norm has no derivative at 0; its gradient there is the subgradient 0 and its Hessian 0
    # (it was diag(2**600), then diag(inf), which made the ridge penalty norm(w)**2 NaN at
    # w = 0 by forward over reverse: 0 * inf; found by review).  Both modes agree.
    x = sd.vector("x", 3)
    v = sd.vector("v", 3)
    norm = sd.linalg.norm(x)
    outputs = [sd.grad(norm, x), sd.hessian(norm, x), sd.hessian(norm, x, mode="rev-rev"),
               sd.hvp(norm, x, v, mode="rev-rev"), sd.hvp(norm, x, v, mode="fwd-rev")]
    X = np.random.default_rng(0).normal(size=(5, 3))
    ridge = sd.sum((sd.constant(X) @ x - 1.0) ** 2) + 0.1 * norm ** 2
    outputs += [sd.hvp(ridge, x, v, mode="rev-rev"), sd.hvp(ridge, x, v, mode="fwd-rev"), sd.hessian(norm ** 2, x),
                sd.hessian(sd.std(x) ** 2, x)]
    compiled = sd.function([x, v], outputs)
    along = np.array([2.0, 0.0, -1e-300])
    data_part = 2 * X.T @ (X @ along)
    for at, values in ((np.zeros(3), sd.evaluate(outputs, {x: np.zeros(3), v: along})),
                       (np.zeros(3), compiled(np.zeros(3), along)), (np.ones(3), compiled(np.ones(3), along))):
        if not at.any():
            assert np.array_equal(values[0], np.zeros(3))
            for hessian in values[1:3]:
                assert np.array_equal(hessian, np.zeros((3, 3)))
            for product in values[3:5]:
                assert np.array_equal(product, np.zeros(3))
            for product in values[5:7]:  # the penalty's curvature is lost at 0 (documented), not NaN
                np.testing.assert_allclose(product, data_part, rtol=1e-14)
            assert np.array_equal(values[7], np.zeros((3, 3)))
        assert np.all(np.isfinite(values[8]))  # std**2 at a constant vector


def test_prod_derivatives_where_the_product_overflows_or_underflows():
    # prod / x_i and the product of the rest overflowed where the partials are finite (inf at
    # [1e80] * 4, true 1e240; inf at [1e300, 1e-300, 1e300, 1e-300], true 1e300) and underflowed
    # where they are normal (0 at [1e-200] * 3 + [1e200], true 1e-200); the partials are now
    # scaled products (binary exponents apart).  First derivatives in both modes, a Hessian row
    # by reverse over reverse, forward over reverse and forward over forward.  Forward mode over
    # a partial forms the directional derivative sum_k t_k P / x_k as a float before y w / z
    # multiplies it: at the last two points (subnormal entries) it underflows (H[2, 0] by
    # forward over reverse: 0, true 3.5e-223) or meets a zero tangent as inf (NaN forward over
    # forward), so those are checked in reverse over reverse only (still open).
    x = sd.vector("x")
    points = [([1e80] * 4, 0), ([1e300, 1e-300, 1e300, 1e-300], 0), ([1e300, 1e300, 1e-300, 1e-300], 0),
              ([1e-200, 1e-200, 1e-200, 1e200], 3), ([0.0, 1e300, 1e300, 1e-300], 0), ([0.0, 0.0, 1e300, 1e300], 2),
              ([1.5, -2.0, 0.25, 3.0], 1), ([-3e-200, 5e-324, 2e250, 7e100], 2), ([1e-310, 1e-300, 1e300, 1e305], 3)]
    product = sd.prod(x)
    slope = sd.grad(product, x)
    failures = []
    for number, (point, row) in enumerate(points):
        one_hot = [sd.constant(np.eye(4)[k]) for k in range(4)]
        along = sd.jvp(product, [x], [one_hot[row]])
        outputs = [slope, sd.stack([sd.jvp(product, [x], [v]) for v in one_hot]), sd.grad(slope[row], x)]
        if number < len(points) - 2:
            outputs += [sd.hvp(product, x, one_hot[row], mode="fwd-rev"),
                        sd.stack([sd.jvp(along, [x], [v]) for v in one_hot])]

        def wants(v, row=row):
            others = [mpmath.fprod(v[:i] + v[i + 1:]) for i in range(4)]
            hessian_row = [0 if k == row else mpmath.fprod(a for j, a in enumerate(v) if j not in (row, k))
                           for k in range(4)]
            return [others, others] + [hessian_row] * 3

        failures += _reduction_far_from_mpmath(x, outputs, [point], wants, limit=4)
    assert not failures, "\n".join(failures)  # (the test collected failures without asserting them)


def _prod_hessian_wants(v):
    """prod's Hessian at v (mpf) as rows: the product of the entries other than j and k, 0 on the diagonal."""
    n = len(v)
    return [[0 if k == j else mpmath.fprod(a for i, a in enumerate(v) if i not in (j, k)) for k in range(n)]
            for j in range(n)]


def test_prod_hessian_diagonal_is_zero_where_another_entry_of_its_row_overflows():
    # the other least element of a pair was sum(least) - x_i: by reverse over reverse its
    # cotangent (an entry of the row that overflows: 1 / 1e-400) reached x_i through the sum
    # and through -x_i, inf - inf = NaN on the diagonal, true 0 (prod is multilinear).  Now
    # the private others_sum, whose rules never send an entry's cotangent back to itself.
    x = sd.vector("x", 4)
    product = sd.prod(x)
    one_hot = [sd.constant(np.eye(4)[k]) for k in range(4)]
    outputs = [sd.hessian(product, x, mode="rev-rev")[j] for j in range(4)]
    outputs += [sd.hvp(product, x, v, mode="rev-rev") for v in one_hot]
    outputs += [sd.hessian(product, x, mode="fwd-rev")[j] for j in range(4)]
    points = [[1e200, 1e200, 1e-200, 1e-200], [-1e200, 3e150, 1e-200, -1e-200], [0.0, 0.0, 1e300, 1e300],
              [1e300, -1e300, 1e-300, 1e-300], [2.0, 3.0, 1e-170, -1e-170]]

    def wants(v):
        rows = _prod_hessian_wants(v)
        return rows * 3

    failures = _reduction_far_from_mpmath(x, outputs, points, wants, limit=4)
    assert not failures, "\n".join(failures)


def test_prod_gradient_at_infinite_entries_is_the_product_of_the_others():
    # prod / x_i at an infinite x_i was inf / inf = NaN: the gradient at [inf, 2, 3] was
    # [nan, inf, inf] (true [6, inf, inf]).  scaled_prod counts an infinity as a power of two
    # beyond every float, so x_i's own infinity cancels; 0 times an infinity stays NaN (IEEE:
    # at [inf, 0, 2] the product of the others of 2 is inf * 0).  Both backends; the forward
    # rule along a direction with no zero component (a zero one meets an infinite partial as
    # 0 * inf: IEEE, kept on purpose, see "Numerics").
    points = [[np.inf, 2.0, 3.0], [-np.inf, 2.0, 3.0], [np.inf, np.inf, 2.0], [np.inf, 0.0, 2.0],
              [np.inf, -np.inf, 2.0], [-np.inf, 1e-300, 1e300], [np.inf, 2.0, -0.5], [2.0, -np.inf], [np.inf, np.inf],
              [np.inf], [np.inf, -np.inf, np.inf, 5.0]]
    for point in points:
        x = sd.vector("x", len(point))
        product = sd.prod(x)
        outputs = [sd.grad(product, x), sd.jvp(product, [x], [sd.constant(np.ones(len(point)))])]
        with mpmath.workprec(200):
            others = [mpmath.fprod(M(a) for j, a in enumerate(point) if j != i) for i in range(len(point))]
            want = [float(a) for a in others]
            along = float(mpmath.fsum(others)) if not any(mpmath.isnan(a) for a in others) else np.nan
        with np.errstate(invalid="ignore"):
            for values in (sd.evaluate(outputs, {x: np.array(point)}), sd.function([x], outputs)(np.array(point))):
                np.testing.assert_array_equal(values[0], want, err_msg=str(point))
                np.testing.assert_array_equal(values[1], along, err_msg=str(point))


def test_prod_second_derivatives_where_a_partial_or_its_row_overflows_in_every_mode():
    # prod / x_i's own derivative p_i / x_i - prod / x_i**2 is 0, formed as two terms that both
    # overflowed where another entry of the row does: the diagonal was NaN by reverse over
    # reverse ([1e-310, 1e-300, 1e300, 1e305]: H[1, 1]) and by forward mode ([1e200, 1e200,
    # 0.5, 2.0]: H[3, 3]).  The forward rule formed sum_k t_k prod / x_k as a float: the
    # fwd-rev Hessian was inf at [1e200, 1e200, 0.5, 0.5] (true 5e199) and inf / NaN at
    # [5e-324, 1e300, 1e10, 1] (true 1e10, 1e300), 0 at [-3e-200, 5e-324, 2e250, 7e100]
    # (true 3.5e-223).  Whole Hessians by reverse over reverse, forward over reverse and forward
    # over forward, and each row's gradient, in both backends.
    x = sd.vector("x", 4)
    product = sd.prod(x)
    slope = sd.grad(product, x)
    one_hot = [sd.constant(np.eye(4)[k]) for k in range(4)]
    outputs = [sd.hessian(product, x, mode="rev-rev")[j] for j in range(4)]
    outputs += [sd.hessian(product, x, mode="fwd-rev")[j] for j in range(4)]
    outputs += [sd.jvp(sd.jvp(product, [x], [one_hot[j]]), [x], [v]) for j in range(4) for v in one_hot]
    outputs += [sd.grad(slope[j], x) for j in range(4)] + [sd.hvp(product, x, v, mode="fwd-rev") for v in one_hot]
    points = [[1e-310, 1e-300, 1e300, 1e305], [1e200, 1e200, 0.5, 2.0], [1e200, 1e200, 0.5, 0.5],
              [5e-324, 1e300, 1e10, 1.0], [-3e-200, 5e-324, 2e250, 7e100], [1e300, 1e300, 1e-300, 1e-300],
              [0.0, 1e300, 1e300, 1e-300], [0.0, 0.0, 1e300, 1e300], [1.5, -2.0, 0.25, 3.0], [1e200, 1e200, 3.0, 1.0],
              [1e-200, 1e-200, 1e-200, 1e200]]

    def wants(v):
        rows = _prod_hessian_wants(v)
        return rows * 2 + [rows[j][k] for j in range(4) for k in range(4)] + rows * 2

    failures = _reduction_far_from_mpmath(x, outputs, points, wants, limit=4)
    assert not failures, "\n".join(failures)


def test_prod_gradient_over_an_empty_axis_is_empty():
    # prod of an empty slice is 1 and its gradient is empty; the rule's min over the slice
    # raised (min over an empty axis has no value), in both backends and with either size known
    x, X = sd.vector("x"), sd.matrix("X", (None, None))
    s = sd.vector("s", 0)
    cases = [(sd.grad(sd.prod(x), x), {x: np.zeros(0)}, np.zeros(0)),
             (sd.grad(sd.sum(sd.prod(X, axis=1)), X), {X: np.zeros((3, 0))}, np.zeros((3, 0))),
             (sd.grad(sd.sum(sd.prod(X, axis=0) * 2.0), X), {X: np.zeros((0, 2))}, np.zeros((0, 2))),
             (sd.grad(sd.prod(s), s), {s: np.zeros(0)}, np.zeros(0)),
             (sd.jvp(sd.prod(x), [x], [x]), {x: np.zeros(0)}, 0.0),
             (sd.hvp(sd.prod(x), x, x), {x: np.zeros(0)}, np.zeros(0)),
             (sd.hvp(sd.prod(x), x, x, mode="fwd-rev"), {x: np.zeros(0)}, np.zeros(0))]
    for expr, feed, want in cases:
        for got in (sd.evaluate(expr, feed), sd.function(list(feed), expr)(*feed.values())):
            assert np.shape(got) == np.shape(want) and np.array_equal(got, want), (expr, got)
    assert sd.evaluate(sd.prod(x), {x: np.zeros(0)}) == 1.0


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_logit_derivatives_keep_relative_accuracy_at_subnormals_and_next_to_one(dtype):
    # log(p / (1 - p)) overflowed 1/q at a subnormal p and its derivatives met inf - inf:
    # logit'' by sd.hvp (either mode, along a direction that is an input) was NaN at 5e-324
    # (float32: 1e-45, 1e-40), true -inf
    x, v = sd.vector("x", dtype=dtype), sd.vector("v", dtype=dtype)
    f = sd.sum(sd.special.logit(x))
    d1 = sd.grad(f, x)
    outputs = [d1, sd.grad(sd.sum(d1), x), sd.hvp(f, x, v, mode="rev-rev"), sd.hvp(f, x, v, mode="fwd-rev")]
    info = np.finfo(dtype)
    points = np.array([float(info.smallest_subnormal), 1e-310 if dtype == "float64" else 1e-40, 1e-300 if dtype ==
                       "float64" else 1e-30, 1e-8, 0.1, 0.25 - float(info.epsneg) / 4, 0.25, 0.3, 0.5, 0.75, 0.9,
                       1 - 64 * float(info.epsneg), 1 - float(info.epsneg)], dtype=dtype)

    def wants(p, direction):
        second = 1 / (1 - p) ** 2 - 1 / p ** 2
        return 1 / (p * (1 - p)), second, second, second

    failures = _far_from_mpmath(outputs, {x: points, v: np.ones_like(points)}, wants, dtype, limits=4)
    assert not failures, "\n".join(failures)


def test_log_ndtr_derivatives_keep_relative_accuracy_where_the_density_is_subnormal():
    # above x = 37.5 phi/Phi is subnormal and the derivatives built on it kept only its
    # precision: 9 ulps (order 2) at 37.7, 224 (order 3) at 37.9, 8,500 (order 4), and 0 from
    # 38.5 on where orders 2-4 are still subnormals (38.6: order 2 -4.4e-323); both backends
    x = sd.vector("x")
    outputs = [sd.grad(sd.sum(sd.special.log_ndtr(x)), x)]
    for _ in range(3):
        outputs.append(sd.grad(sd.sum(outputs[-1]), x))
    points = np.array([30.5, 34.06115177255373, 37.5, 37.7, 37.75, 37.9, 38.2, 38.5, 38.6, 39.5])

    def wants(a):
        return tuple(_log_ndtr_derivative(a, n) for n in (1, 2, 3, 4))

    failures = _far_from_mpmath(outputs, {x: points}, wants, limits=4)
    assert not failures, "\n".join(failures)


@pytest.mark.parametrize("mode", ["rev-rev", "fwd-rev"])
def test_xlogy_hvp_at_subnormal_y_is_the_true_infinity_in_both_modes(mode):
    # reverse over reverse sent b two messages over b, from log b (in the x-slope) and from
    # x / b (the y-slope), each +-inf at a subnormal y: their sum was NaN where the true
    # value is +-inf or 0 (fwd-rev combined them first).  xlogy(x, x)'' = 1/x at 5e-324 was
    # NaN (true +inf); xlogy(x, y) at (1, 5e-324) along (1, 1) NaN in y (true -inf).  A zero
    # direction component keeps its IEEE 0 * inf policy (unchanged here: those points are
    # finite or +-inf before and after).
    x, y, vx, vy = (sd.vector(name) for name in ("x", "y", "vx", "vy"))
    points = [(5e-324, 5e-324, 1.0, 1.0), (1.0, 5e-324, 1.0, 1.0), (2.0, 1e-310, 1.0, 1.0), (1e-310, 5e-324, 1.0, 1.0),
              (-1.0, 5e-324, 1.0, -1.0), (7e-309, 7e-309, 1.0, 1.0), (1.0, 5e-324, 1.0, 0.0), (5e-324, 2.0, 1.0, 1.0),
              (3.0, 0.5, -1.0, 2.0)]
    xs, ys, vxs, vys = (np.array(column) for column in zip(*points))
    along = sd.hvp(sd.sum(sd.special.xlogy(x, y)), [x, y], [vx, vy], mode=mode)
    same = sd.hvp(sd.sum(sd.special.xlogy(x, x)), x, vx, mode=mode)
    feeds = {x: xs, y: ys, vx: vxs, vy: vys}
    with mpmath.workprec(200):
        want_x = [float(M(b) / M(a)) if b else 0.0 for a, b in zip(ys, vys)]
        want_y = [float(M(c) / M(b) - M(d) * M(a) / M(b) ** 2) for a, b, c, d in zip(xs, ys, vxs, vys)]
        want_same = [float(M(c) / M(a)) for a, c in zip(xs, vxs)]
    for values in (sd.evaluate([*along, same], feeds), sd.function([x, y, vx, vy], [*along, same])(xs, ys, vxs, vys)):
        np.testing.assert_allclose(values[0], want_x, rtol=1e-15)
        np.testing.assert_allclose(values[1], want_y, rtol=1e-15)
        np.testing.assert_allclose(values[2], want_same, rtol=1e-15)


def test_polygamma_reflection_keeps_relative_accuracy_with_an_accurate_cotangent():
    # psi^(n)(x) = (-1)^n psi^(n)(1 - x) - pi^(n+1) P_n(cot(pi x)) for x < 0: cot(PI r)
    # carried PI r's rounding (1.8 ulps at -0.1, 568 next to +-1/2 where cot is small), so
    # polygamma 2 and 3 were 4.9 and 5.1 ulps off at -0.1, polygamma 2 1,717 at -4.49987
    x = sd.vector("x")
    second = sd.special.polygamma(2, x)
    outputs = [second, sd.special.polygamma(3, x), sd.grad(sd.sum(second), x)]

    def wants(a):
        third = mpmath.polygamma(3, a)
        return mpmath.polygamma(2, a), third, third

    failures = _far_from_mpmath(outputs, {x: np.array([-0.1, -0.05, -0.3, -1.1, -2.7])}, wants, limits=4,
                                precision=200)
    failures += _far_from_mpmath(outputs[:1], {x: np.array([-4.499867103764597, -0.49983530508634477])},
                                 lambda a: (mpmath.polygamma(2, a),), limits=6, precision=200)
    assert not failures, "\n".join(failures)


def test_private_slopes_with_attributes_convert_to_sympy_and_latex():
    """Found by review: ndtr's derivatives (the private ndtr_derivative, order n an attribute)
    had no SymPy spelling, and mul_log_slope's LaTeX path left its value unset."""
    import sympy

    s, x, y = sd.scalar("s"), sd.scalar("x"), sd.scalar("y")
    derivative = sd.special.ndtr(s)
    for order in range(1, 4):
        derivative = sd.grad(derivative, s)
        got = sd.to_sympy(derivative)
        want = sympy.diff((1 + sympy.erf(sympy.Symbol("s") / sympy.sqrt(2))) / 2, sympy.Symbol("s"), order)
        at = {sym: sympy.Rational(3, 10) for sym in got.free_symbols}
        assert abs(float(got.subs(at)) - float(want.subs(sympy.Symbol("s"), sympy.Rational(3, 10)))) < 1e-14
    second = sd.grad(sd.grad(sd.special.xlogy(y, x), x, mode="rev"), x, mode="rev")
    assert "mul_log_slope" in sd.printers.to_text(second, optimize=False)
    latex = sd.to_latex(second, optimize=False)
    assert r"\frac{1}{x^{2}}" in latex, latex  # -y / x**2, guarded at y = 0 with x <= 0


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_logit_derivatives_at_zero_and_one_are_the_true_infinities(dtype):
    # above p = 1/4 logit was 2 arctanh(2p - 1), whose derivative divides by (1 - u)(1 + u):
    # at p = 1 that product's derivative met the infinite quotient as 0 * inf, so logit''(1)
    # was NaN (true +inf) by reverse over reverse; both backends, every mode
    x, v = sd.vector("x", dtype=dtype), sd.vector("v", dtype=dtype)
    f = sd.sum(sd.special.logit(x))
    d1 = sd.grad(f, x)
    first = sd.jvp(sd.special.logit(x), [x], [v])
    outputs = [sd.special.logit(x), d1, first, sd.grad(sd.sum(d1), x), sd.hvp(f, x, v, mode="rev-rev"),
               sd.hvp(f, x, v, mode="fwd-rev"), sd.jvp(d1, [x], [v]), sd.jvp(first, [x], [v])]
    points, ones = np.array([0.0, 1.0], dtype=dtype), np.ones(2, dtype=dtype)
    want = [[-np.inf, np.inf], [np.inf, np.inf], [np.inf, np.inf]] + [[-np.inf, np.inf]] * 5
    for backend, values in (("reference", sd.evaluate(outputs, {x: points, v: ones})),
                            ("compiled", sd.function([x, v], outputs)(points, ones))):
        for k, (got, expected) in enumerate(zip(values, want)):
            np.testing.assert_array_equal(got, np.array(expected, dtype=dtype), err_msg=f"{backend} output {k}")


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_logit_derivatives_at_negative_zero_are_those_at_zero(dtype):
    # -0.0 == 0.0 is the same point of logit's domain [0, 1], but log(p)'s derivatives 1/p and
    # 2/p**3 took its sign: the first and third derivatives were -inf at -0.0 (+inf at +0.0)
    # in both backends and every mode (the last output is the fourth derivative)
    x, v = sd.vector("x", dtype=dtype), sd.vector("v", dtype=dtype)
    f = sd.sum(sd.special.logit(x))
    d1 = sd.grad(f, x)
    d2 = sd.grad(sd.sum(d1), x)
    first = sd.jvp(sd.special.logit(x), [x], [v])
    second = sd.jvp(first, [x], [v])
    outputs = [sd.special.logit(x), d1, first, d2, second, sd.hvp(f, x, v, mode="rev-rev"),
               sd.hvp(f, x, v, mode="fwd-rev"), sd.grad(sd.sum(d2), x), sd.jvp(second, [x], [v]),
               sd.jvp(sd.grad(sd.sum(sd.hvp(f, x, v, mode="fwd-rev")), x), [x], [v])]
    points, ones = np.array([0.0, -0.0], dtype=dtype), np.ones(2, dtype=dtype)
    want = [-np.inf] + [np.inf] * 2 + [-np.inf] * 4 + [np.inf] * 2 + [-np.inf]
    for backend, values in (("reference", sd.evaluate(outputs, {x: points, v: ones})),
                            ("compiled", sd.function([x, v], outputs)(points, ones))):
        for k, (got, expected) in enumerate(zip(values, want)):
            np.testing.assert_array_equal(got, np.array([expected] * 2, dtype=dtype), err_msg=f"{backend} output {k}")


# erf's Gaussian exp(-x*x) is subnormal from |x| = 26.55 (9.3 in float32), its derivatives
# are not (or are many subnormal steps large); ndtr's and erf's Hermite factors vanish at
# +-1, +-sqrt(3) (He_2, He_3) and +-1/sqrt(2), +-sqrt(3/2) (H_2, H_3)
_GAUSSIAN_DERIVATIVE_POINTS = {
    "float64": {"erf": [26.3, 26.55, 26.6, 26.7, 26.8, -26.9, 27.0, 27.1, 27.2, 27.3, 21.5, 0.3, 3.0,
                        0.7071067811865476, -0.7071067811865475, 0.70710678118654, 1.224744871391589],
                "ndtr": [1.0, -1.0, 1.0000000000000002, 0.9999999999999999, 1 + 1e-9, -1 + 3e-8, 1.7320508075688772,
                         -1.7320508075688774, 0.3, 2.5, 37.7]},
    "float32": {"erf": [8.1, 9.0, 9.3, 9.5, -9.8, 10.0, 0.3, 3.0, 0.70710677, -0.7071068, 1.2247449],
                "ndtr": [1.0, -1.0, 1.0000001, 0.99999994, 1.00001, -0.99999, 1.7320508, -1.7320509, 0.3, 2.5, 13.5]},
}


def test_gaussian_derivatives_at_subnormal_x_round_once_on_the_subnormal_grid():
    """Found by review: an odd Hermite factor multiplied the subnormal x first, so every later
    product rounded on the subnormal grid again (erf's fourth derivative at 5e-324: 9 steps
    off, true 13.5 steps).  Orders 2-5 of erf and ndtr at subnormal and tiny x, both backends,
    within 1.5 subnormal steps (or ulps where normal)."""
    mpmath.mp.dps = 60
    x = sd.vector("x")
    points = np.array([5e-324, -5e-324, 1e-320, 3e-315, 1e-310, 2.2e-308, 1e-300])
    tiny = float(np.finfo(np.float64).tiny)
    for fn, exact in ((sd.special.erf, _erf_derivative), (sd.special.ndtr, _ndtr_derivative)):
        expression, outputs = fn(x), []
        for _ in range(5):
            expression = sd.grad(sd.sum(expression), x)
            outputs.append(expression)
        for values in (sd.evaluate(outputs, {x: points}), sd.function([x], outputs)(points)):
            for order in range(2, 6):
                for point, got in zip(points, values[order - 1]):
                    want = float(exact(mpmath.mpf(float(point)), order))
                    error = abs(got - want) / (5e-324 if abs(want) < tiny else abs(want) * 2.0 ** -52)
                    assert error <= 1.5, (fn.__name__, order, point, got, want)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_gaussian_derivatives_keep_relative_accuracy_where_the_gaussian_is_subnormal_and_next_to_hermite_zeros(dtype):
    # erf'' and erfc'' multiplied exp's subnormal output by 2x: 26-30 ulps (or subnormal steps)
    # between 26.6 and 27.3 (13 in float32 at 9.8), now the private erf_derivative (the
    # Gaussian scaled by 2**1100 there); the Hermite factors were formed by their recurrence
    # (He_2 = x*x - 1, H_2 = 4x*x - 2), which cancels next to their zeros: ndtr''' 2.3e6 ulps
    # at 1 + 1e-9 (53 in float32 at 0.99999), erf''' 1.4e15 ulps at 1/sqrt(2), now products
    # over their zeros.  Orders 1-3, both backends, reverse and forward mode.
    x = sd.vector("x", dtype=dtype)
    ones = sd.ones_like(x)
    cases = [("erf", sd.special.erf, lambda a, n: _erf_derivative(a, n)),
             ("erfc", sd.special.erfc, lambda a, n: -_erf_derivative(a, n)),
             ("ndtr", sd.special.ndtr, lambda a, n: _ndtr_derivative(a, n))]
    failures = []
    for name, fn, reference in cases:
        d1 = sd.grad(sd.sum(fn(x)), x)
        d2 = sd.grad(sd.sum(d1), x)
        tangent = sd.jvp(fn(x), [x], [ones])
        outputs = [d1, d2, sd.jvp(d1, [x], [ones]), sd.jvp(tangent, [x], [ones]), sd.grad(sd.sum(d2), x),
                   sd.jvp(sd.jvp(tangent, [x], [ones]), [x], [ones])]
        points = np.array(_GAUSSIAN_DERIVATIVE_POINTS[dtype]["ndtr" if name == "ndtr" else "erf"], dtype=dtype)

        def wants(a, reference=reference):
            return tuple(reference(a, n) for n in (1, 2, 2, 2, 3, 3))

        failures += _far_from_mpmath(outputs, {x: points}, wants, dtype, limits=4, label=f"{name} ")
    assert not failures, "\n".join(failures)


def test_hermite_zeros_are_the_ones_mpmath_gives():
    """special_scalar.HERMITE_ZEROS: each (high, low) pair is a zero of He_k or H_k to 1e-31,
    and every positive zero is there."""
    with mpmath.workdps(50):
        for physicists in (False, True):
            for k in range(2, special_scalar.HERMITE_FACTORED + 1):
                start = special_scalar.hermite_zeros_start(k, physicists)
                zeros = [M(special_scalar.HERMITE_ZEROS[2 * j]) + M(special_scalar.HERMITE_ZEROS[2 * j + 1])
                         for j in range(start, start + k // 2)]
                scale = mpmath.sqrt(2) if physicists else 1
                for z in zeros:  # He_k(t) = 2^(-k/2) H_k(t / sqrt(2))
                    root = mpmath.findroot(lambda t: mpmath.hermite(k, t * scale / mpmath.sqrt(2)), z)
                    assert abs(root - z) < 1e-31 * z, (physicists, k, z, root)
                assert len(set(mpmath.nstr(z, 20) for z in zeros)) == k // 2, (physicists, k)


_TIMES_RATIO_POINTS = {  # (w, x, y, vx, vy): x / y over- or underflows where w x / y does not
    "float64": [(0.0, 1e15, 1e-300, 1.0, 1.0), (1e300, 5e-324, 40.0, 1.0, 1.0), (1e-300, -2.0, 5e-324, 1.0, 1.0),
                (1e-300, 1e15, 1e-300, 1.0, 1.0), (-2.0, 3.0, 0.5, 1.0, -1.0), (1.0, 5e-324, 5e-324, 1.0, 1.0)],
    "float32": [(1e-30, 3e38, 0.5, 1.0, 1.0), (3e38, 1e-45, 17.0, 1.0, 1.0), (0.0, 1e15, 1e-30, 1.0, 1.0),
                (-2.0, 3.0, 0.5, 1.0, -1.0)],
}


@pytest.mark.xfail(strict=True, reason="open: mul_log_slope's rules form c d as a float (see docs, issue 15)")
@pytest.mark.parametrize("mode", ["rev-rev", "fwd-rev"])
def test_weighted_xlogy_hvp_where_the_cotangent_times_the_weight_underflows(mode):
    # The HVP of w xlogy(x, y) over [w, x, y] at (1e-300, 1e15, 1e-300) along (0, 1, 1e-300):
    # its y entry is w / y vx - w x / y**2 vy = 1 - 1e15, but the rules form vy w = 1e-600 = 0
    # first (and the tangent d tb in forward mode): 1.0.  A fix that keeps the exponents apart
    # where c d leaves the range (q d / b with q = c0 - c1 a / b) was right but made this
    # HVP on 1e6 elements 1.5-3x slower (notes of the twelfth session); both backends.
    w, x, y, vw, vx, vy = (sd.vector(name, 1) for name in ("w", "x", "y", "vw", "vx", "vy"))
    f = sd.sum(w * sd.special.xlogy(x, y))
    along = sd.hvp(f, [w, x, y], [vw, vx, vy], mode=mode)[2]
    values = [np.array([v]) for v in (1e-300, 1e15, 1e-300, 0.0, 1.0, 1e-300)]
    with mpmath.workprec(200):
        W, X, Y, VX, VY = (M(v) for v in (1e-300, 1e15, 1e-300, 1.0, 1e-300))
        want = float(W / Y * VX - W * X / Y ** 2 * VY)
    for got in (sd.function([w, x, y, vw, vx, vy], along)(*values), sd.evaluate(along, dict(zip((w, x, y, vw, vx, vy), values)))):
        np.testing.assert_allclose(got, [want], rtol=1e-14)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_xlogy_slopes_keep_the_exponents_of_their_factors_apart(dtype):
    # mul_log_slope's part 1 (xlogy's and pow's slope in the base, with its cotangent d) was
    # d * (a / b): NaN at (0, 1e15, 1e-300) (true 0), 0 at (1e300, 5e-324, 40) (true
    # 1.2e-25), float32 inf at (1e-30, 3e38, 0.5) (true 6e8); so were the gradient of
    # w xlogy(x, y) in y, its HVPs in both modes and its third derivative (0 at (1e300,
    # 5e-324, 40), true 1.5e-28).  Both backends.
    from symdiff.ops.elementwise import MUL_LOG_SLOPE

    w, x, y, vx, vy = (sd.vector(name, dtype=dtype) for name in ("w", "x", "y", "vx", "vy"))
    f = sd.sum(w * sd.special.xlogy(x, y))
    slope = sd.grad(f, y)
    outputs = [MUL_LOG_SLOPE(w, x, y, part=1), slope, sd.hvp(f, [x, y], [vx, vy], mode="rev-rev")[1],
               sd.hvp(f, [x, y], [vx, vy], mode="fwd-rev")[1], sd.grad(sd.sum(sd.grad(sd.sum(slope), y)), y)]
    columns = [np.array(column, dtype=dtype) for column in zip(*_TIMES_RATIO_POINTS[dtype])]

    def wants(w, x, y, vx, vy):
        along = w / y * vx - w * x / y ** 2 * vy
        return w * x / y, w * x / y, along, along, 2 * w * x / y ** 3

    failures = _far_from_mpmath(outputs, dict(zip((w, x, y, vx, vy), columns)), wants, dtype, limits=4)
    assert not failures, "\n".join(failures)
