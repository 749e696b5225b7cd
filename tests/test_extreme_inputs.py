"""Every op at extreme inputs: values and first and second derivatives against mpmath,
in float32 and float64, compiled and reference.

HOW TO ADD AN OP (the only table most ops need)
-----------------------------------------------
Elementwise ops: one line in ``MPMATH`` mapping the op's name to its value written as
a function of mpmath numbers: floats arrive as ``mpmath.mpf`` (inf and nan included),
bools as Python bools, ints as ``mpmath.mpf`` holding the integer, and the op's static
attributes (from its samples) as keywords.  Write the mathematical formula with
mpmath's functions (``mpmath.erf``, ``mpmath.loggamma``...); where the op is undefined
mpmath gives a complex number, NaN or a ValueError, which means NaN is expected; return
None (or let mpmath raise ZeroDivisionError) where there is no reference: a pole whose sign is a
convention, the sign of a zero (mpmath has no -0.0).  There only the two backends are
compared.
Nothing else: derivatives come from that formula by central differences at high
precision.  ``test_every_elementwise_op_has_a_reference`` fails until the line exists.

If an op is knowingly inaccurate somewhere, add ``(op, order): "why"`` (or
``(op, order, dtype)``) to ``KNOWN_INACCURATE``: that test becomes a strict xfail, so fixing the op makes the
entry fail and get removed.

Non-elementwise ops need no entry: ``test_backends_agree_at_extreme_magnitudes`` runs
every computing op's first sample with its float inputs times 1e150 (products
overflow) and compares the two backends' values (and reductions' gradients).  An op whose samples
cannot be scaled (a domain that scaling leaves) goes in ``NOT_SCALABLE`` with the reason.

WHAT IS CHECKED
---------------
For each elementwise op with float inputs and output, in float32 and float64, at
|x| = 0.5 ... 1e300 (3e38 in float32), subnormals, -0.0, inf and nan (every point for
one float input, a grid of pairs for two, a sample of triples for three):

* the value, every first partial derivative and every second partial derivative,
  from ``sd.grad`` of the elementwise sum (so each is the op's own derivative rule,
  to second order), are within ``ULPS[order]`` units in the last place of mpmath's
  value rounded to the dtype wherever mpmath has one: inf where the true value
  overflows, 0 (to within ULPS subnormal steps) where it underflows, NaN where the
  op is undefined; derivatives are checked where the function is smooth around the
  point (a kink, a pole or a domain edge is detected from the differences);
* the compiled result (``sd.function``, rewrites on) equals the reference evaluator's
  (``sd.evaluate``, no rewrites) to within the same tolerance, NaN for NaN, always.

The compiled side uses the two layouts the Numba backend spells elementwise code in:
in float64 each op has its own run-time length (short loops: the scalar spellings of
``scalar_code`` and the vector math calls), in float32 the ops of a kernel share one
static length (long fused loops, which become LLVM IR regions of ``scalar_ir`` once
long enough).  Kernels hold about CHUNK outputs each.
"""

from __future__ import annotations

import functools
import itertools
import operator

import mpmath
import numpy as np
import pytest

import symdiff as sd
from symdiff.ir import builtin_ops, make_node

pytestmark = pytest.mark.filterwarnings("ignore:Code running in object mode")


def _power(x, y):
    """x ** y with IEEE 754's limits where mpmath has none (pow(-2, inf) is inf, pow(0, -1) inf)."""
    if y == 0 or x == 1:
        return mpmath.mpf(1)
    if mpmath.isnan(x) or mpmath.isnan(y):
        return mpmath.nan
    if mpmath.isinf(y):
        if abs(x) == 1:
            return mpmath.mpf(1)
        return mpmath.inf if (abs(x) > 1) == (y > 0) else mpmath.mpf(0)
    if x == 0 and y < 0:
        return mpmath.inf
    if mpmath.isinf(x) and x < 0:  # (-inf) ** y: the sign of an odd integer power, else +
        odd = y == int(y) and int(y) % 2 == 1
        return (-1 if odd else 1) * (mpmath.inf if y > 0 else mpmath.mpf(0))
    return mpmath.power(x, y)


def _softplus(x):
    return x + mpmath.log1p(mpmath.exp(-x)) if x > 0 else mpmath.log1p(mpmath.exp(x))


def _maximum(x, y):
    return mpmath.nan if mpmath.isnan(x) or mpmath.isnan(y) else max(x, y)


def _minimum(x, y):
    return mpmath.nan if mpmath.isnan(x) or mpmath.isnan(y) else min(x, y)


def _over_squared_norm(a, b):
    """a / (a^2 + b^2), arctan2's slope: 0 at an infinite coordinate; none at the origin
    (a pole whose limit depends on the path)."""
    if mpmath.isnan(a) or mpmath.isnan(b):
        return mpmath.nan
    if mpmath.isinf(a) or mpmath.isinf(b):
        return mpmath.mpf(0)
    if a == 0 and b == 0:
        return None
    return a / (a * a + b * b)


def _mul_log(a, b):
    """a log b (pow's y-slope): NaN for b < 0 even where a = 0 (IEEE's 0 * log(-2)); none where
    a and b are both infinite, where the b-slope a / b has no limit (the value's inf is
    still compared between the backends)."""
    if mpmath.isinf(a) and mpmath.isinf(b):
        return None
    return a * mpmath.log(b) if b >= 0 else mpmath.nan


def _over_hypot(a, b):
    """a / hypot(a, b), hypot's slope: +-1 or 0 at one infinite coordinate; none at two
    (a convention) or at the origin (a kink)."""
    if mpmath.isnan(a) or mpmath.isnan(b):
        return mpmath.nan
    if mpmath.isinf(a) or mpmath.isinf(b):
        if mpmath.isinf(a) and mpmath.isinf(b):
            return None
        return mpmath.sign(a) if mpmath.isinf(a) else mpmath.mpf(0)
    if a == 0 and b == 0:
        return None
    return a / mpmath.hypot(a, b)


def _atan2(y, x):
    """IEEE 754's atan2 where mpmath has no answer: infinities, and zeros (whose sign
    picks the result, which mpmath cannot see: no reference there)."""
    if mpmath.isnan(y) or mpmath.isnan(x):
        return mpmath.nan
    if y == 0 or (x == 0 and mpmath.isinf(y)):
        return None if y == 0 else mpmath.sign(y) * mpmath.pi / 2
    if mpmath.isinf(y) and mpmath.isinf(x):
        return mpmath.sign(y) * (mpmath.pi / 4 if x > 0 else 3 * mpmath.pi / 4)
    if mpmath.isinf(x):
        return mpmath.mpf(0) * mpmath.sign(y) if x > 0 else mpmath.sign(y) * mpmath.pi
    if mpmath.isinf(y):
        return mpmath.sign(y) * mpmath.pi / 2
    return mpmath.atan2(y, x)


def _log_ndtr_prime(x):
    """pdf(x) / cdf(x); below -1e8 its asymptotic series, since mpmath's ncdf there came
    out 0.04% off at -3e38 (the series' next term is below 1e-16 relative)."""
    if mpmath.isfinite(x) and x < -1e8:
        return -x - 1 / x + 2 / x**3
    return mpmath.npdf(x) / mpmath.ncdf(x)


def _log_ndtr_derivative(x, n):
    """The n-th derivative of log(Phi): the (n-1)-th of r = phi/Phi from its Riccati equation
    r' = -(x r + r^2) at the working precision; below -1e4, where mpmath's ncdf cannot go,
    from r's asymptotic series in 1/x (its next term is below 1e-50 relative there)."""
    if mpmath.isinf(x):
        return mpmath.mpf(-1 if (x < 0 and n == 2) else 0)
    m = n - 1
    if x < -1e4:
        t = -x
        series = [mpmath.mpf(1)]  # Phi(-t) t / phi(t) ~ sum (-1)^k (2k-1)!! t^(-2k); r = t / that
        inverse = [mpmath.mpf(1)]
        for k in range(1, 8):
            series.append(-series[-1] * (2 * k - 1))
            inverse.append(-mpmath.fsum(series[j] * inverse[k - j] for j in range(1, k + 1)))
        total = mpmath.fsum(a * mpmath.ff(1 - 2 * k, m) * t ** (1 - 2 * k - m) for k, a in enumerate(inverse))
        return (-1) ** m * total
    r = [mpmath.npdf(x) / mpmath.ncdf(x)]
    for k in range(m):
        r.append(-(x * r[k] + (k * r[k - 1] if k else 0)
                   + mpmath.fsum(mpmath.binomial(k, j) * r[j] * r[k - j] for j in range(k + 1))))
    return r[m]


def _ndtr_derivative(x, n):
    """The n-th derivative of Phi: (-1)^(n-1) He_(n-1)(x) phi(x), He by its recurrence."""
    if mpmath.isinf(x):
        return mpmath.mpf(0)
    previous, hermite = mpmath.mpf(0), mpmath.mpf(1)
    for k in range(n - 1):
        previous, hermite = hermite, x * hermite - k * previous
    return (-1) ** (n - 1) * hermite * mpmath.npdf(x)


def _erf_derivative(x, n):
    """The n-th derivative of erf: (-1)^(n-1) H_(n-1)(x) 2/sqrt(pi) exp(-x^2), H by its recurrence."""
    if mpmath.isinf(x):
        return mpmath.mpf(0)
    previous, hermite = mpmath.mpf(0), mpmath.mpf(1)
    for k in range(n - 1):
        previous, hermite = hermite, 2 * x * hermite - 2 * k * previous
    return (-1) ** (n - 1) * hermite * 2 / mpmath.sqrt(mpmath.pi) * mpmath.exp(-x * x)


def _log_add(x, y, base):
    """log(base**x + base**y) in that base, as the larger plus log1p of the smaller
    ratio: without the log1p, 1 + 1e-300 rounds to 1 at any working precision the
    differences use.  IEEE 754's limits at infinities."""
    if mpmath.isnan(x) or mpmath.isnan(y):
        return mpmath.nan
    high, low = (x, y) if x >= y else (y, x)
    if mpmath.isinf(high):
        # both infinite and equal: the value is that infinity, but the derivatives'
        # limits depend on the path (x - y is NaN): no reference there
        return None if low == high and mpmath.isinf(low) else high
    return high + mpmath.log1p(mpmath.power(base, low - high)) / mpmath.log(base)


def _exactly(fn, x, y):
    """``fn`` over exact rationals (floor division and remainders of floats are exact
    numbers however large the quotient); no reference for infinities, NaN or y = 0,
    where the result is a convention, nor for quotients of 2**53 and more, where the
    function jumps between neighbouring floats and differences see only the jumps."""
    from fractions import Fraction

    if not (mpmath.isfinite(x) and mpmath.isfinite(y)) or y == 0 or abs(x / y) >= 2**53:
        return None  # beyond 2**53 the sawtooth's period is below the spacing of x
    exact = []
    for v in (x, y):  # exactly: the differences' points are not doubles
        sign, mantissa, exponent, _ = v._mpf_
        exact.append((-1) ** sign * Fraction(int(mantissa)) * Fraction(2) ** int(exponent))
    result = fn(*exact)
    with mpmath.workprec(4096):
        return mpmath.mpf(result.numerator) / result.denominator


def _log_abs_gamma(x):
    """log|Gamma(x)| (scipy's gammaln); no reference at the poles (x = 0, -1, ...: inf,
    with a sign convention for -0.0)."""
    if mpmath.isnan(x):
        return mpmath.nan
    if mpmath.isinf(x):
        return mpmath.inf
    if x <= 0 and x == int(x):
        return None
    return mpmath.loggamma(x).real if x > 0 else mpmath.log(abs(mpmath.gamma(x)))


# op name -> its value over mpmath numbers (see the module docstring).
MPMATH = {
    "neg": operator.neg,
    "exp": mpmath.exp,
    "expm1": mpmath.expm1,
    "log": mpmath.log,
    "log1p": mpmath.log1p,
    "sqrt": mpmath.sqrt,
    "sin": mpmath.sin,
    "cos": mpmath.cos,
    "tan": mpmath.tan,
    "tanh": mpmath.tanh,
    "sech2": lambda x: mpmath.sech(x) ** 2,
    "abs": abs,
    "sign": mpmath.sign,
    "sigmoid": lambda x: 1 / (1 + mpmath.exp(-x)),
    "softplus": _softplus,
    "add": operator.add,
    "sub": operator.sub,
    "mul": operator.mul,
    "div": operator.truediv,
    "pow": _power,
    "maximum": _maximum,
    "minimum": _minimum,
    "where": lambda condition, x, y: x if condition else y,
    "cast": lambda x, dtype: x,
    "stop_gradient": lambda x: x,
    # issue 10: elementwise math and special functions (add yours below this line)
    "arcsin": mpmath.asin,
    "arccos": mpmath.acos,
    "arctan": mpmath.atan,
    "arctan2": lambda y, x: _atan2(y, x),
    "sinh": mpmath.sinh,
    "cosh": mpmath.cosh,
    "arcsinh": mpmath.asinh,
    "arccosh": mpmath.acosh,
    "arctanh": mpmath.atanh,
    "hypot": lambda x, y: mpmath.inf if mpmath.isinf(x) or mpmath.isinf(y) else mpmath.hypot(x, y),
    "log2": lambda x: mpmath.log(x, 2),
    "log10": mpmath.log10,
    "cbrt": lambda x: None if x == 0 else mpmath.sign(x) * mpmath.cbrt(abs(x)),  # cbrt'(0): a pole
    "logaddexp": lambda x, y: _log_add(x, y, mpmath.e),
    "logaddexp2": lambda x, y: _log_add(x, y, 2),
    "floor": mpmath.floor,
    "ceil": mpmath.ceil,
    "trunc": lambda x: mpmath.floor(x) if x >= 0 else mpmath.ceil(x),
    "rint": lambda x: x if mpmath.isinf(x) or mpmath.isnan(x) else mpmath.nint(x),
    "floor_divide": lambda x, y: _exactly(lambda a, b: a // b, x, y),
    "mod": lambda x, y: _exactly(lambda a, b: a - b * (a // b), x, y),
    "fmod": lambda x, y: _exactly(lambda a, b: a - b * int(a / b), x, y),
    "copysign": lambda x, y: None if y == 0 or mpmath.isnan(y) else abs(x) * mpmath.sign(y),
    "erf": mpmath.erf,
    "erfc": mpmath.erfc,
    "erfinv": lambda x: mpmath.erfinv(x) if abs(x) <= 1 else mpmath.nan,
    "gammaln": lambda x: _log_abs_gamma(x),
    "polygamma": lambda x, n: None if x <= 0 and x == int(x) else mpmath.polygamma(int(n), x),
    "ndtr": mpmath.ncdf,
    "log_ndtr": lambda x: mpmath.log1p(-mpmath.ncdf(-x)) if x > 0 else mpmath.log(mpmath.ncdf(x)),
    "log_ndtr_prime": lambda x: _log_ndtr_prime(x),
    "log_ndtr_derivative": lambda x, n: _log_ndtr_derivative(x, int(n)),
    "ndtr_derivative": lambda x, n: _ndtr_derivative(x, int(n)),
    "erf_derivative": lambda x, n: _erf_derivative(x, int(n)),
    "over_squared_norm": lambda a, b: _over_squared_norm(a, b),
    "over_hypot": lambda a, b: _over_hypot(a, b),
    "mul_log": lambda a, b: _mul_log(a, b),
    "one_plus_mul_log": lambda a, b: None if _mul_log(a, b) is None else 1 + _mul_log(a, b),
    "mul_log_slope": lambda d, a, b, part: _mul_log(d, b) if int(part) == 0 else d * a / b ** int(part),
    "pow_slope": lambda d, x, y, wrt: None,  # pow's own partials: pow's rows of this table
    "pow_curvature": lambda c, d, x, y, wrt: None,
    "erfinv_slope": lambda y: mpmath.sqrt(mpmath.pi) / 2 * mpmath.exp(mpmath.erfinv(y) ** 2) if abs(y) < 1
    else mpmath.inf if abs(y) == 1 else mpmath.nan,
}

# (op, order) -> why the op is knowingly inaccurate there: a strict xfail, in both dtypes
# ((op, order, dtype) for one dtype only).
# Issue 15 fixed sigmoid, softplus, tanh and expm1, then hypot, log_ndtr's derivatives, pow,
# div and arctan2 (the last three: 0 * inf between an infinite cotangent or partial and an
# exact zero); a reason says what goes wrong and where.
KNOWN_INACCURATE: dict = {
    # over_squared_norm is arctan2's slope: its value and d1 are arctan2's d1 and d2 (tested
    # there too); its d2 is arctan2's THIRD derivative, beyond this table's orders.  d2/da2 =
    # 2a(a^2 - 3b^2)/r^6 comes out of the product rule as two terms that cancel where |a| <<
    # |b| (53M ulps at (-1e-8, 0.7); 0 at (-1, 1e20), true 6e-80), and NaN beside the origin,
    # where they are inf - inf (a = 0 with |b| < 1e-103, true 0; (5e-324, 0), true inf).
    ("over_squared_norm", "d2"): "arctan2's third derivative: cancels where |a| << |b|, NaN beside the origin",
    # over_hypot is hypot's slope: its d2 is hypot's THIRD derivative, formed by the product
    # rule from over_hypot and over_squared_norm: NaN or inf at subnormal pairs beside an axis
    # ((0, 5e-324): NaN, true 0; float32 (1e-30, 1e-45): wrong by 2e8 ulps, true -5.9e30).
    ("over_hypot", "d2"): "hypot's third derivative: NaN or wrong at subnormal pairs beside an axis",
    # pow_curvature is c d times pow's second partials: its d2 is pow's FOURTH derivative,
    # beyond this table's orders, checked only for the backends' agreement.  d4/dx2dy2 at y = 0
    # is (2 - 2 log x) / x**2, which cancels near x = e (at 3, by 11x): the kernel's vector-math
    # log and NumPy's differ by an ulp, and the results by 24 ulps at (0.5, -1000, 3, 0).
    ("pow_curvature", "d2", "float64"): "pow's fourth derivative: cancels near x = e, the backends' logs differ",
    # pow_slope's d2 is pow's THIRD derivative: d3/dx dy2 = x**(y-1) log x (2 + y log x) cancels
    # near y log x = -2 (by 11x at (x, y) = (3, -2)): compiled and reference 44 ulps apart at
    # (1e300, 3, -2).
    ("pow_slope", "d2", "float64"): "pow's third derivative: cancels near y log x = -2, the backends' logs differ",
}

# Non-elementwise ops whose samples leave their domain when scaled: op -> why.
NOT_SCALABLE: dict = {}

ULPS = {"value": 4, "d1": 8, "d2": 16}

POINTS = {
    "float64": [0.0, -0.0, 5e-324, -5e-324, 1e-310, -1e-310, 2.2250738585072014e-308, 1e-300, -1e-300, 1e-15,
                0.5, -0.5, 2.0, -3.0, 20.0, -20.0, 40.0, -40.0, 700.0, -700.0, 1e3, -1e3, 1e8, -1e8, 1e15, -1e15,
                1e300, -1e300, 1.7976931348623157e308, np.inf, -np.inf, np.nan],
    "float32": [0.0, -0.0, 1e-45, -1e-45, 1e-40, -1e-40, 1.1754944e-38, 1e-30, -1e-30, 1e-7,
                0.5, -0.5, 2.0, -3.0, 9.0, -9.0, 17.0, -17.0, 20.0, -20.0, 90.0, -90.0, 1e3, -1e3, 1e8, -1e8,
                1e15, -1e15, 3e38, -3e38, np.inf, -np.inf, np.nan],
}
GRID = {  # coordinates of the pairs for ops with two float inputs
    "float64": [0.0, -0.0, 5e-324, 1e-300, 0.5, -2.0, 3.0, 40.0, -1e3, 1e15, 1e300, -1e300, np.inf, -np.inf, np.nan],
    "float32": [0.0, -0.0, 1e-45, 1e-30, 0.5, -2.0, 3.0, 17.0, -1e3, 1e15, 3e38, -3e38, np.inf, -np.inf, np.nan],
}
INTS = [-3, -1, 0, 1, 2, 7]
ORDERS = ("value", "d1", "d2")
DTYPES = ("float64", "float32")

# ----------------------------------------------------------------- the cases


def _elementwise_ops() -> dict:
    """The elementwise ops with a float input and a float output, by name (their first
    sample says; comparisons are left out)."""
    found = {}
    for name, op in builtin_ops().items():
        if op.kind != "elementwise" or op.samples is None:
            continue
        try:
            inputs, attrs = op.samples(np.random.default_rng(0))[0]
        except Exception:  # noqa: BLE001  (test_ops reports broken samples; here the op is still listed)
            found[name] = op
            continue
        try:
            out = make_node(op, [sd.tensor(f"probe{i}", np.shape(a), _dtype_of(a)) for i, a in enumerate(inputs)],
                            dict(attrs))
        except Exception:  # noqa: BLE001
            found[name] = op
            continue
        if any(np.asarray(a).dtype.kind == "f" for a in inputs) and out.dtype in ("float32", "float64"):
            found[name] = op
    return found


def _dtype_of(array) -> str:
    kind = np.asarray(array).dtype.kind
    return {"f": "float64", "b": "bool"}.get(kind, "int64")


def _attr_variants(op) -> list:
    """The distinct static attributes among the op's samples (cast: each target dtype)."""
    variants = {}
    for _, attrs in op.samples(np.random.default_rng(0)):
        variants.setdefault(repr(sorted(attrs.items())), dict(attrs))
    return list(variants.values())


def _points(kinds: str, dtype: str) -> list:
    """The input tuples for an op whose inputs have ``kinds`` (f, b, i per input)."""
    floats = kinds.count("f")
    exact = lambda values: [float(np.asarray(v, dtype=dtype)) for v in values]  # noqa: E731  (as the dtype holds them)
    if floats == 1:
        coordinates = [(x,) for x in exact(POINTS[dtype])]
    elif floats == 2:
        coordinates = list(itertools.product(exact(GRID[dtype]), repeat=2))
    else:
        everything = list(itertools.product(exact(GRID[dtype]), repeat=floats))
        picks = np.random.default_rng(floats).choice(len(everything), size=min(200, len(everything)), replace=False)
        coordinates = [everything[k] for k in sorted(picks)]
    rows = []
    for k, coordinate in enumerate(coordinates):
        values, position = [], iter(coordinate)
        for j, kind in enumerate(kinds):
            if kind == "f":
                values.append(next(position))
            elif kind == "b":
                values.append((k + j) % 2 == 0)
            else:
                values.append(INTS[(k + j) % len(INTS)])
        rows.append(tuple(values))
    return rows


class Case:
    """One op with one set of attrs in one dtype: its points and its graph outputs."""

    def __init__(self, name, op, attrs, dtype):
        self.name, self.op, self.attrs, self.dtype = name, op, attrs, dtype
        sample_inputs, _ = op.samples(np.random.default_rng(0))[0]
        self.kinds = "".join("f" if np.asarray(a).dtype.kind == "f" else "b" if np.asarray(a).dtype.kind == "b"
                             else "i" for a in sample_inputs)
        self.rows = _points(self.kinds, dtype)
        self.label = name + (f"[{', '.join(f'{k}={v}' for k, v in attrs.items())}]" if attrs else "")

    def arrays(self, length=None) -> list:
        """One array per input; with ``length``, the rows repeat to fill it."""
        numpy_dtype = {"f": self.dtype, "b": "bool", "i": "int64"}
        rows = [self.rows[k % len(self.rows)] for k in range(length or len(self.rows))]
        return [np.array([row[j] for row in rows], dtype=numpy_dtype[kind]) for j, kind in enumerate(self.kinds)]

    def build(self, symbols) -> list:
        """[(order, (i, j) or (i,) or (), node)]: the value and its partial derivatives."""
        out = make_node(self.op, symbols, dict(self.attrs))
        if out.dtype not in ("float32", "float64"):
            return []
        results = [("value", (), out)]
        if not self.op.differentiable:
            return results
        wrt = [i for i, kind in enumerate(self.kinds) if kind == "f" and self.op.vjp_rule(i) is not None]
        if not wrt:
            return results
        firsts = sd.grad(sd.sum(out), [symbols[i] for i in wrt])
        for i, first in zip(wrt, firsts):
            results.append(("d1", (i,), first))
            later = [j for j in wrt if j >= i]
            for j, second in zip(later, sd.grad(sd.sum(first), [symbols[j] for j in later])):
                results.append(("d2", (i, j), second))
        return results


def _cases(dtype: str) -> list:
    cases = []
    for name, op in sorted(_elementwise_ops().items()):
        if name not in MPMATH:
            continue  # its own test fails, saying so
        for attrs in _attr_variants(op):
            case = Case(name, op, attrs, dtype)
            try:
                make_node(op, [sd.tensor("probe", (1,), {"f": dtype, "b": "bool", "i": "int64"}[k])
                               for k in case.kinds], dict(attrs))
            except sd.DTypeError:
                continue
            cases.append(case)
    return cases


# ------------------------------------------------------------ the references

K_STEP = 64  # central-difference step: 2**-K_STEP times min(|x|, 1)
KINK_STEP = 30  # the second, smaller step (by 2**-KINK_STEP): derivatives that differ mean a kink
# Stand in for an infinite coordinate in derivatives: two sizes beyond both dtypes; a
# derivative whose values there round to the same double is the limit (exp' gives inf
# at both, log' 0 at both; sqrt' gives two different tiny numbers: no reference).  Not integers: mpmath's exp of a
# huge integer takes a power, which takes minutes.
with mpmath.workprec(2500):
    PROXIES = (mpmath.mpf(2) ** 1100 + mpmath.mpf(1) / 3, mpmath.mpf(2) ** 1150 + mpmath.mpf(1) / 3)

class NoReference(Exception):
    """mpmath has no real value here (a pole, a domain edge, a kink)."""


def _real(value):
    if isinstance(value, mpmath.mpc):
        if value.imag != 0:
            return mpmath.nan
        value = value.real
    if isinstance(value, bool):
        return mpmath.mpf(int(value))
    return mpmath.mpf(value)


def _call(fn, args, attrs):
    try:
        value = fn(*args, **attrs)
    except ValueError:  # mpmath's domain errors (erfinv(2)): NaN, as IEEE
        return mpmath.nan
    except (ZeroDivisionError, OverflowError):  # a pole; or mpmath's own limits (erfc(1e300))
        raise NoReference from None
    if value is None:
        raise NoReference
    return _real(value)


@functools.lru_cache(maxsize=None)
def reference(name: str, attrs_key: tuple, row: tuple) -> dict:
    """{(order, index): mpf or None (no reference)} for the op at the input tuple ``row``."""
    fn, attrs = MPMATH[name], dict(attrs_key)
    floats = [j for j, v in enumerate(row) if isinstance(v, float)]
    convert = [mpmath.mpf(v) if isinstance(v, (float, int)) and not isinstance(v, bool) else v for v in row]
    result = {}
    with mpmath.workprec(256):
        try:
            value = _call(fn, convert, attrs)
        except NoReference:
            value = None
    result[("value", ())] = value
    if value is None or mpmath.isnan(value) or any(np.isnan(row[j]) for j in floats):
        return result  # derivatives of undefined values: the backends are compared, nothing more
    infinite = [j for j in floats if np.isinf(row[j])]
    estimates = []
    for proxy in PROXIES[:2 if infinite else 1]:
        centre = list(convert)
        for j in infinite:
            centre[j] = proxy if row[j] > 0 else -proxy
        try:
            coarse = _stencil(fn, centre, floats, attrs, K_STEP)
            fine = _stencil(fn, centre, floats, attrs, K_STEP + KINK_STEP)
        except NoReference:
            return result
        estimates.append({key: value if value == fine[key] or abs(value - fine[key]) <= abs(fine[key]) * 2.0 ** -50
                          else None for key, value in coarse.items()})  # None: a kink (the steps disagree)
    for key, value in estimates[0].items():
        if value is not None and all(other[key] is not None and float(other[key]) == float(value)
                                     for other in estimates[1:]):
            result[key] = value
    return result


def _scales(centre: list, floats: list) -> dict:
    """Per float coordinate, the size of the neighbourhood to difference in: at most 1,
    its own magnitude, and the distance to the other coordinates (so a step never
    crosses a kink at a tie, maximum(0, 5e-324) included)."""
    sizes = [abs(centre[j]) for j in floats]
    scales = {}
    for j, size in zip(floats, sizes):
        candidates = [mpmath.mpf(1)] + ([size] if size else [s for s in sizes if s])
        candidates += [abs(centre[j] - centre[i]) for i in floats if i != j and centre[i] != centre[j]]
        scales[j] = min(candidates)
    return scales


def _stencil(fn, centre: list, floats: list, attrs: dict, k: int) -> dict:
    """First and second partial derivatives by central differences with steps
    h_j = 2**-k * scale_j (``_scales``).  The precision starts where x +- h is exact and
    grows until every difference quotient is 60 bits above its rounding noise, or so
    small that no dtype could tell it from 0 (below 2**-1140)."""
    scales = _scales(centre, floats)
    large = max(max(int(mpmath.mag(centre[j])), 0) if centre[j] != 0 else 0 for j in floats)
    small = max(max(-int(mpmath.mag(scales[j])), 0) for j in floats)
    with mpmath.workprec(256):
        scale = _call(fn, centre, attrs)
    if mpmath.isfinite(scale) and scale != 0 and abs(mpmath.mag(scale)) > 4400:
        # exp(1e300), 3 ** -inf: so far beyond both dtypes that the derivatives are too (or
        # are not worth the minutes that differencing such numbers takes); only the
        # backends are compared there
        raise NoReference
    precision = 3 * k + 2 * small + large + 64
    for _ in range(8):
        estimates, noise = _differences(fn, centre, floats, attrs, scales, k, precision)
        lacking = 0
        for key, estimate in estimates.items():
            if noise[key] < mpmath.mpf(2) ** -1140 or abs(estimate) > noise[key] * 2 ** 60:
                continue
            lacking = max(lacking, 1200 if estimate == 0 else 64 + int(mpmath.log(noise[key] / abs(estimate), 2)))
        if lacking == 0:
            return estimates
        precision += lacking
    raise NoReference


def _differences(fn, centre, floats, attrs, scales, k, precision) -> tuple:
    """({key: difference quotient}, {key: its rounding noise}) at ``precision`` bits."""
    with mpmath.workprec(precision):
        steps = {j: mpmath.ldexp(scales[j], -k) for j in floats}
        cache = {}

        def at(offsets):
            key = tuple(sorted(offsets.items()))
            if key not in cache:
                point = list(centre)
                for j, o in offsets.items():
                    point[j] = centre[j] + o * steps[j]
                value = _call(fn, point, attrs)
                if not mpmath.isfinite(value):  # a pole or an edge in the neighbourhood
                    raise NoReference
                cache[key] = value
            return cache[key]

        out, divisors = {}, {}
        middle = at({})
        for a, i in enumerate(floats):
            plus, minus = at({i: 1}), at({i: -1})
            out[("d1", (i,))], divisors[("d1", (i,))] = (plus - minus) / (2 * steps[i]), 2 * steps[i]
            out[("d2", (i, i))] = (plus - 2 * middle + minus) / steps[i] ** 2
            divisors[("d2", (i, i))] = steps[i] ** 2
            for j in floats[a + 1:]:
                corners = at({i: 1, j: 1}) - at({i: 1, j: -1}) - at({i: -1, j: 1}) + at({i: -1, j: -1})
                out[("d2", (i, j))] = corners / (4 * steps[i] * steps[j])
                divisors[("d2", (i, j))] = 4 * steps[i] * steps[j]
        largest = max(abs(v) for v in cache.values())
        noise = {key: largest * mpmath.ldexp(1, 4 - precision) / divisor for key, divisor in divisors.items()}
        return {key: +value for key, value in out.items()}, noise


# ---------------------------------------------------------------- comparing

_INT_VIEW = {"float64": np.int64, "float32": np.int32}


def ordinal(values, dtype: str) -> np.ndarray:
    """Floats as integers in order: adjacent floats differ by 1, -0.0 and 0.0 are both 0,
    inf is one past the largest finite float (so overflow is one step, not infinitely many)."""
    bits = np.asarray(values, dtype=dtype).view(_INT_VIEW[dtype]).astype(np.int64)
    magnitude = bits & np.int64(np.iinfo(_INT_VIEW[dtype]).max)
    return np.where(bits < 0, -magnitude, magnitude)


def rounded(value, dtype: str) -> float:
    """mpmath's value correctly rounded to ``dtype`` (inf on overflow, 0 on underflow)."""
    as_double = float(value) if mpmath.isfinite(value) or mpmath.isinf(value) else float("nan")
    with np.errstate(over="ignore"):
        return float(np.asarray(as_double, dtype=dtype)) if dtype == "float32" else as_double


def ulp_distance(got, want, dtype: str) -> np.ndarray:
    """Elementwise distance in ulps; 0 for NaN against NaN, huge for NaN against a number."""
    got, want = np.asarray(got, dtype=dtype), np.asarray(want, dtype=dtype)
    distance = np.array(np.abs(ordinal(got, dtype) - ordinal(want, dtype)), dtype=np.float64, ndmin=1)
    got, want = got.reshape(distance.shape), want.reshape(distance.shape)
    nan_got, nan_want = np.isnan(got), np.isnan(want)
    distance[nan_got & nan_want] = 0
    distance[nan_got ^ nan_want] = np.inf
    return distance


# ---------------------------------------------------------------- the kernels


# Which kernel layout each dtype gets (see the module docstring), and how many outputs go
# in one kernel: Numba's compile time grows faster than linearly in a kernel's size, and
# compiling is most of this test's time.
FUSED = {"float64": False, "float32": True}
CHUNK = 32


def _kernels(dtype: str) -> list:
    """The cases of ``dtype`` in groups of about CHUNK outputs, one kernel each."""
    groups, size = [[]], 0
    for case in _cases(dtype):
        outputs = 1 + len(case.kinds) * (len(case.kinds) + 3) // 2  # value, firsts, seconds (at most)
        if size + outputs > CHUNK and groups[-1]:
            groups.append([])
            size = 0
        groups[-1].append(case)
        size += outputs
    return groups


@functools.lru_cache(maxsize=None)
def results() -> dict:
    """{(label, dtype, order): [problem strings]} for every case."""
    problems: dict = {}
    for dtype in DTYPES:
        fused = FUSED[dtype]
        for group in _kernels(dtype):
            length = max(len(case.rows) for case in group)
            inputs, outputs, feeds, keys = [], [], {}, []
            for number, case in enumerate(group):
                arrays = case.arrays(length if fused else None)
                kinds = {"f": dtype, "b": "bool", "i": "int64"}
                symbols = [sd.vector(f"c{number}_{j}", length if fused else None, kinds[k])
                           for j, k in enumerate(case.kinds)]
                for order, index, node in case.build(symbols):
                    outputs.append(node)
                    keys.append((case, order, index))
                for symbol, array in zip(symbols, arrays):
                    inputs.append(symbol)
                    feeds[symbol] = array
            compiled = sd.function(inputs, outputs)(*[feeds[s] for s in inputs])
            computed = sd.evaluate(outputs, feeds)
            for (case, order, index), node, got, want in zip(keys, outputs, compiled, computed):
                found = problems.setdefault((case.label, dtype, order), [])
                _compare(case, order, index, node.dtype, np.asarray(got), np.asarray(want), found)
    return problems


def _compare(case, order, index, dtype, got, want, problems):
    where = f"{case.label} {order}{list(index) if index else ''} ({dtype})"
    got, want = got[:len(case.rows)], want[:len(case.rows)]  # the rest repeats rows (a common length)
    apart = ulp_distance(got, want, dtype)
    for k in np.flatnonzero(apart > ULPS[order]):
        problems.append(f"{where} at {case.rows[k]}: compiled {got[k]!r} != reference {want[k]!r} "
                        f"({apart[k]:.0f} ulps apart)")
    for k, row in enumerate(case.rows):
        expected = reference(case.name, tuple(sorted(case.attrs.items())), row).get((order, index))
        if expected is None:
            continue
        target = rounded(expected, dtype)
        for side, value in (("compiled", got[k]), ("reference", want[k])):
            distance = ulp_distance(value, target, dtype)[0]
            if distance > ULPS[order]:
                problems.append(f"{where} at {row}: {side} {value!r}, mpmath {mpmath.nstr(expected, 17)} "
                                f"({distance:.0f} ulps)")


# ------------------------------------------------------------------- tests


def test_every_elementwise_op_has_a_reference():
    """Guard: an elementwise op with float inputs fails here until MPMATH has its line
    (issue 10's math and special ops included: values and first and second derivatives)."""
    missing = sorted(set(_elementwise_ops()) - set(MPMATH))
    assert not missing, f"add these ops to MPMATH in {__file__}: {missing}"
    stale = sorted(set(MPMATH) - set(_elementwise_ops()))
    assert not stale, f"MPMATH lists ops that are not (float) elementwise ops: {stale}"
    unknown = sorted({key[0] for key in KNOWN_INACCURATE} - set(MPMATH))
    assert not unknown, f"KNOWN_INACCURATE names unknown ops: {unknown}"


def _orders(op) -> tuple:
    """The orders to check: derivatives only where some float input has a reverse rule."""
    try:
        inputs, _ = op.samples(np.random.default_rng(0))[0]
    except Exception:  # noqa: BLE001  (broken samples: the value test reports it)
        return ("value",)
    differentiable = op.differentiable and any(
        np.asarray(a).dtype.kind == "f" and op.vjp_rule(i) is not None for i, a in enumerate(inputs))
    return ORDERS if differentiable else ("value",)


def _params():
    params = []
    for name, op in sorted(_elementwise_ops().items()):
        if name not in MPMATH:
            continue  # missing: the guard above names it
        for order in _orders(op):
            for dtype in DTYPES:
                reason = KNOWN_INACCURATE.get((name, order, dtype), KNOWN_INACCURATE.get((name, order)))
                marks = [pytest.mark.xfail(strict=True, reason=reason)] if reason else []
                params.append(pytest.param(name, order, dtype, marks=marks, id=f"{name}-{order}-{dtype}"))
    return params


@pytest.mark.parametrize("name, order, dtype", _params())
def test_extreme_inputs(name, order, dtype):
    found = []
    for (label, key_dtype, key_order), problems in results().items():
        if (key_dtype, key_order) == (dtype, order) and (label == name or label.startswith(name + "[")):
            found += problems
    assert not found, f"{len(found)} problems:\n" + "\n".join(found[:12])


# ------------------------------------------------- ops that are not elementwise

SCALE = 1e150  # products overflow to inf (and inf - inf to NaN) while sums stay finite
GRADIENT_KINDS = ("reduction",)  # whose gradients are compiled here too
OTHER_CHUNK = 8  # outputs per kernel: these ops' lowerings are long, and compile time is superlinear


def _other_ops() -> dict:
    """Ops that compute (reductions, linear algebra, ordering, ...), not leaves, not
    elementwise (above) and not pure data movement ("shape": exact copies)."""
    return {name: op for name, op in sorted(builtin_ops().items())
            if op.kind not in ("leaf", "elementwise", "shape") and op.samples is not None}


def _scaled_problems():
    """(label, inputs, outputs, values): each op's first float sample with its float
    inputs times SCALE: the value, and for reductions the gradient of sum(out * W).
    Compiling is nearly all of this test's time: the other ops' gradients (and second
    derivatives) are compiled by test_codegen at ordinary magnitudes, and here they
    would take 30 s more."""
    rng = np.random.default_rng(15)
    problems = []
    for name, op in _other_ops().items():
        if name in NOT_SCALABLE:
            continue
        for arrays, attrs in op.samples(np.random.default_rng(0)):
            arrays = [np.asarray(a) for a in arrays]
            if any(a.dtype.kind == "f" for a in arrays):
                break
        else:
            continue
        symbols = [sd.tensor(f"{name}_{j}", a.shape, _dtype_of(a)) for j, a in enumerate(arrays)]
        values = {sym: a * SCALE if a.dtype.kind == "f" else a for sym, a in zip(symbols, arrays)}
        out = make_node(op, symbols, dict(attrs))
        outputs = [out]
        wrt = [sym for j, sym in enumerate(symbols) if sym.type.is_float and op.vjp_rule(j) is not None]
        if out.type.is_float and wrt and op.differentiable:
            weights = sd.constant(rng.normal(size=np.shape(sd.evaluate(out, values))))
            if op.kind in GRADIENT_KINDS:
                outputs += sd.grad(sd.sum(out * weights), wrt)
        problems.append((f"{name} (inputs x {SCALE:g})", symbols, outputs, values))
    return problems


def test_backends_agree_at_extreme_magnitudes():
    """Every computing op, on its own sample scaled by 1e150: the compiled value (and a
    reduction's gradient) equal the reference's (the same infinities and NaNs,
    finite entries to 1e-9 of the largest)."""
    problems, found, size = _scaled_problems(), [], 0
    assert problems, "no ops to check"
    while problems:
        chunk = []
        while problems and (not chunk or size < OTHER_CHUNK):
            chunk.append(problems.pop(0))
            size += len(chunk[-1][2])
        size = 0
        inputs = [s for _, symbols, _, _ in chunk for s in symbols]
        outputs = [o for _, _, outs, _ in chunk for o in outs]
        values = {s: v for _, _, _, vals in chunk for s, v in vals.items()}
        labels = [f"{label} output {j}" for label, _, outs, _ in chunk for j in range(len(outs))]
        try:
            compiled = sd.function(inputs, outputs)(*[values[s] for s in inputs])
        except sd.SymdiffError as exc:  # report it and go on: the other chunks still say something
            found.append(f"the kernel for {sorted({label for label, _, _, _ in chunk})} failed: {exc}")
            continue
        reference = sd.evaluate(outputs, values)
        for got, want, label in zip(compiled, reference, labels):
            got, want = np.asarray(got, dtype=np.float64), np.asarray(want, dtype=np.float64)
            if got.shape != want.shape:
                found.append(f"{label}: shape {got.shape}, reference {want.shape}")
                continue
            special = ~np.isfinite(want) | ~np.isfinite(got)
            if not np.array_equal(got[special], want[special], equal_nan=True):
                found.append(f"{label}: non-finite entries differ: {got[special]} vs {want[special]}")
            finite = ~special
            scale = np.max(np.abs(want[finite]), initial=0.0)
            if np.any(np.abs(got[finite] - want[finite]) > 1e-9 * scale):
                found.append(f"{label}: {got[finite]} vs {want[finite]}")
    assert not found, "\n".join(found[:12])


def test_other_ops_are_sampled():
    """Guard: every computing op has samples with a float input (or a NOT_SCALABLE reason)."""
    missing = []
    for name, op in _other_ops().items():
        if name in NOT_SCALABLE:
            continue
        samples = op.samples(np.random.default_rng(0))
        if not any(any(np.asarray(a).dtype.kind == "f" for a in arrays) for arrays, _ in samples):
            missing.append(name)
    stale = sorted(set(NOT_SCALABLE) - set(_other_ops()))
    assert not stale, f"NOT_SCALABLE names unknown ops: {stale}"
    # ops with integer inputs only (argsort of ints...) have nothing to scale; listing them keeps this honest
    assert all(_other_ops()[name].vjp is None for name in missing), f"ops without float samples: {missing}"

