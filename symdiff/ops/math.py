"""Elementwise math beyond the basic set: inverse trigonometric and hyperbolic functions,
other logarithm bases, rounding, remainders, logaddexp.

Each op here is a primitive because no composite of the basic ops is as good; the
reasons, one per group:

- ``arcsin arccos arctan arctan2 sinh cosh arcsinh arccosh arctanh hypot cbrt``: one
  libm call each.  Composites through exp/log/sqrt cancel or overflow where libm does
  not (``(exp(x) - exp(-x))/2`` is 0 for |x| < 1e-17 and inf from 710; ``log(x +
  sqrt(x*x + 1))`` is inf from 1.3e154; ``x ** (1/3)`` is nan below 0).
- ``over_squared_norm over_hypot`` (private): arctan2's and hypot's slopes, a / (a^2 + b^2)
  and a / hypot(a, b).  As composites their derivatives cancelled (arctan2's mixed second
  derivative near |x| = |y|) or underflowed (hypot's for small pairs); as primitives their
  rules are products of their own values.
- ``log2 log10``: exact at powers of 2 (resp. 10) as NumPy; ``log(x) / log(2)`` is not
  (log(2**k)/log(2) differs from k for some k; log10 misses 332 of 10**-300..10**299).
- ``floor ceil rint trunc floor_divide``: nothing else computes them.  Their derivative
  is zero wherever it exists, so they have none (``vjp=None``): no derivative flows.
- ``mod fmod``: NumPy's remainders (Python's and C's sign conventions), exact, where
  ``x - y * floor(x / y)`` is not.  d/dx = 1, d/dy = -(the integer quotient).
- ``copysign``: the sign bit (of -0.0 and of NaN) is invisible to comparisons.
- ``logaddexp logaddexp2``: NumPy's overflow-free form, and derivatives that are
  sigmoids of the difference (for logaddexp2, in base 2: 1 / (1 + 2**(y - x))), smooth
  at x == y.  A composite ``max + log1p(exp(-|x - y|))`` has the right first derivative
  but a zero second derivative at ties (0.25 is right), since max and abs are kinked
  there.  logaddexp2 via ``logaddexp(x ln2, y ln2)
  / ln2`` rounds its arguments: 256 ulp worst (54 at the 99th percentile) against
  NumPy's own 83 (2.4) on 1200 random pairs.

Composites, in ``symdiff.frontend.math``: exp2 (``2.0 ** x``: pow is exact at
integers), reciprocal, round (NumPy's own multiply, rint, divide), isnan, isinf,
isfinite (comparisons), nan_to_num, heaviside (``where``).
"""

from __future__ import annotations

import math

import numpy as np

from .. import frontend as F
from .elementwise import ANYWHERE, POSITIVE, elementwise, no_bool, rounded_difference
from .leaves import const

LN2 = math.log(2.0)
LN10 = math.log(10.0)
INSIDE_ONE = ((-0.85, 0.85),)  # arcsin, arccos, arctanh: away from the singular ends


def _one(x):
    return const(1, x.dtype)


# ------------------------------------------------------- inverse trigonometric


def _one_minus_square(x):
    # (1 - x)(1 + x) does not cancel near |x| = 1, unlike 1 - x * x; but its derivative,
    # -(1 + x) + (1 - x), cancels near 0 (0 instead of -2x at subnormal x: arcsin'' was 0
    # there).  Both forms are the same polynomial, so every derivative agrees across
    # the switch.
    return F.where(F.abs(x) < 0.5, 1 - x * x, (1 - x) * (1 + x))


ARCSIN = elementwise("arcsin", np.arcsin, (lambda d, out, x: d / F.sqrt(_one_minus_square(x)),),
                     "math.asin({0})", (INSIDE_ONE,))
ARCCOS = elementwise("arccos", np.arccos, (lambda d, out, x: -(d / F.sqrt(_one_minus_square(x))),),
                     "math.acos({0})", (INSIDE_ONE,))
# d / (1 + x*x) up to |x| = 2**27 (2**12 in float32), d / x / x beyond: the square would
# overflow (a slope of 0 where the true one is subnormal: 1e-310 at 1e155), and the
# second derivative of d / (1 + x*x) is inf / inf at +-inf (NaN; true 0), where d / x / x's is
# 0.  Each branch gets x only where it is taken (the other sees a harmless stand-in), as erf's
# Gaussian does, so no inf or NaN leaks through the unused branch's derivative.  (d / h / h
# with h = hypot(x, 1) is right everywhere too, but hypot has no vector pass: value+grad of
# sum(arctan(x)) on 1e6 elements took 20 ms against 3.2.)
def _arctan_derivative(d, out, x):
    # from where 1 + x*x rounds to x*x (2**27, 2**12 in float32): the same value, and the
    # second derivative's quotients stay in range (1e150 underflowed it to 0 from x = 1e85)
    large = F.abs(x) > (2.0 ** 27 if x.dtype == "float64" else 2.0 ** 12)
    small_x = F.where(large, 0, x)
    large_x = F.where(large, x, 1)
    return F.where(large, d / large_x / large_x, d / (small_x * small_x + 1))


ARCTAN = elementwise("arctan", np.arctan, (_arctan_derivative,), "math.atan({0})", (ANYWHERE,))


def _safe_scale(m):
    """(m is infinite, m with 1 for 0 and inf): a divisor that neither makes 0/0 nor inf/inf."""
    infinite = F.equal(m, np.inf)
    return infinite, F.where(F.logical_or(F.equal(m, 0), infinite), 1, m)


def _unit_scaled(x, y):
    """(x / m, y / m, m) with m = max(|x|, |y|) as a constant (stop_gradient): ratios
    such as x / hypot(x, y) do not depend on m, and on the scaled pair they neither
    divide two subnormals (1.0 at x = y = 5e-324, true 0.7071) nor overflow (float32
    hypot(3e38, 3e38)).  An infinite coordinate scales to +-1 and a finite one beside it
    to 0, the limits; m = 0 (the origin) leaves the pair as it is."""
    m = F.stop_gradient(F.maximum(F.abs(x), F.abs(y)))
    infinite, safe = _safe_scale(m)

    def scaled(v):
        at_infinity = F.where(F.equal(F.abs(v), np.inf), F.stop_gradient(F.sign(v)), v * 0)
        return F.where(infinite, at_infinity, v / safe)

    return scaled(x), scaled(y), m


def _scaled_pair_numpy(a, b):
    """(a, b, m, a / m, b / m, result dtype) in float64 with m = max(|a|, |b|): the first
    steps of the planar scalar algorithms (``special_scalar.over_squared_norm``,
    ``over_hypot``), whose NumPy spellings below take the same operations in the same
    order, so both backends agree to the bit (float32 is computed in float64 and rounded)."""
    a, b = np.asarray(a), np.asarray(b)
    dtype = np.result_type(a, b)
    a, b = a.astype(np.float64), b.astype(np.float64)
    with np.errstate(all="ignore"):
        m = np.maximum(np.abs(a), np.abs(b))
        return a, b, m, a / m, b / m, dtype


def _over_squared_norm_numpy(a, b):
    a, b, m, a_scaled, b_scaled, dtype = _scaled_pair_numpy(a, b)
    with np.errstate(all="ignore"):
        out = (a_scaled / (a_scaled * a_scaled + b_scaled * b_scaled)) / m
    at_infinity = (np.isinf(a) | np.isinf(b)) & ~np.isnan(a) & ~np.isnan(b)
    return np.where(at_infinity, np.copysign(0.0, a), out).astype(dtype, copy=False)


def _scaled_difference_and_sum(a, b):
    """((b - a) / m, (b + a) / m, m) with m = max(|a|, |b|) a constant: the difference is
    taken before scaling, so it is exact where a and b are close (b/m - a/m is not: a/m
    is rounded, and at 700 and 700 + 1 ulp its error is the whole difference).  An
    infinite m takes the unit-scaled pair's difference and sum, as _unit_scaled does."""
    a_scaled, b_scaled, m = _unit_scaled(a, b)
    infinite, safe = _safe_scale(m)
    difference = F.where(infinite, b_scaled - a_scaled, (b - a) / safe)
    total = F.where(infinite, b_scaled + a_scaled, (b + a) / safe)
    return difference, total, m


# P(a, b) = a / (a^2 + b^2).  dP/da = (b^2 - a^2) / r^4, formed as 4 P(b - a, b + a) P(b + a, b - a)
# (r^2 = ((b - a)^2 + (b + a)^2) / 2), a product: the composite's 1/r^2 - 2 a^2/r^4 cancels
# where |a| = |b| (2.2e-22 at (700, 700), true 0).  dP/db = -2 a b / r^4 = -2 P(a, b) P(b, a).
# Both on the scaled pair, divided by m twice at the end: no overflow, and no 0 * inf at a
# subnormal pair (P(0, 1e-323) P(1e-323, 0) is 0 * inf; the true value is 0).
def _over_squared_norm_da(d, out, a, b):
    difference, total, m = _scaled_difference_and_sum(a, b)
    slope = 4 * OVER_SQUARED_NORM(difference, total) * OVER_SQUARED_NORM(total, difference)
    return d * ((slope / m) / m)


def _over_squared_norm_db(d, out, a, b):
    a_scaled, b_scaled, m = _unit_scaled(a, b)
    slope = -2 * OVER_SQUARED_NORM(a_scaled, b_scaled) * OVER_SQUARED_NORM(b_scaled, a_scaled)
    return d * ((slope / m) / m)


OVER_SQUARED_NORM = elementwise(
    "over_squared_norm", _over_squared_norm_numpy, (_over_squared_norm_da, _over_squared_norm_db),
    "_over_squared_norm({0}, {1})", (((0.3, 2.0),), ANYWHERE),
    doc="a / (a*a + b*b) (private: arctan2's slope) with no overflow, and derivatives that are products.",
)

ARCTAN2 = elementwise(
    "arctan2", np.arctan2,
    (lambda d, out, y, x: d * OVER_SQUARED_NORM(x, y), lambda d, out, y, x: -(d * OVER_SQUARED_NORM(y, x))),
    "math.atan2({0}, {1})", (ANYWHERE, ANYWHERE),
    doc="arctan2(y, x): the angle of the point (x, y); derivatives x/r^2 and -y/r^2 (nan at the origin).",
)

# ------------------------------------------------------------------- hyperbolic

SINH = elementwise("sinh", np.sinh, (lambda d, out, x: d * COSH(x),), "math.sinh({0})", (ANYWHERE,))
COSH = elementwise("cosh", np.cosh, (lambda d, out, x: d * SINH(x),), "math.cosh({0})", (ANYWHERE,))
# 1/sqrt(x*x + 1) would be 0 from |x| = 1.3e154; 1/hypot(x, 1) is 1/|x| there, as it should
ARCSINH = elementwise("arcsinh", np.arcsinh, (lambda d, out, x: d / HYPOT(x, _one(x)),), "math.asinh({0})",
                      (ANYWHERE,))
# two quotients, not d / (sqrt(x - 1) sqrt(x + 1)): the product's derivative is inf / inf at
# x = inf, where each quotient's derivative is 0 (the true second derivative)
ARCCOSH = elementwise("arccosh", np.arccosh, (lambda d, out, x: d / F.sqrt(x - 1) / F.sqrt(x + 1),),
                      "math.acosh({0})", (((1.2, 3.0),),))
ARCTANH = elementwise("arctanh", np.arctanh, (lambda d, out, x: d / _one_minus_square(x),), "math.atanh({0})",
                      (INSIDE_ONE,))


def _over_hypot_numpy(a, b):
    a, b, m, a_scaled, b_scaled, dtype = _scaled_pair_numpy(a, b)
    with np.errstate(all="ignore"):
        out = a_scaled / np.sqrt(a_scaled * a_scaled + b_scaled * b_scaled)
    a_infinite, b_infinite = np.isinf(a), np.isinf(b)
    at_infinity = np.where(a_infinite & b_infinite, np.sqrt(0.5), np.where(a_infinite, 1.0, 0.0))
    out = np.where(a_infinite | b_infinite, np.copysign(at_infinity, a), out)
    out = np.where(m == 0, 0.0, out)
    return np.where(np.isnan(a) | np.isnan(b), np.nan, out).astype(dtype, copy=False)


# Q(a, b) = a / hypot(a, b), hypot's slope.  dQ/da = b^2/h^3 = Q(b, a) P(b, a) and dQ/db =
# -a b/h^3 = -Q(a, b) P(b, a) = -P(a, b) Q(b, a), with P = over_squared_norm: products of O(1)
# and O(1/h) values.  For dQ/db the P whose numerator is the smaller coordinate: P(b, a) alone
# overflows at (5e-324, 1e-310), where the product is -4.9e296.
# The composite's derivative formed u*u (u = b/a on the pair scaled by max(|a|, |b|)) before
# the chain rule's 1/m brought it back: 0 at (1e-100, 1e-300), true 1e-300; 1e-5 relative
# at (1e-20, 1e-180); NaN and inf at subnormal pairs in forward mode.
def _away_from_origin(a, b, slope):
    # 0 at the origin, as Q itself (hypot's subgradient convention): P is NaN there
    return F.where(F.logical_and(F.equal(a, 0), F.equal(b, 0)), 0, slope)


OVER_HYPOT = elementwise(
    "over_hypot", _over_hypot_numpy,
    (lambda d, out, a, b: d * _away_from_origin(a, b, OVER_HYPOT(b, a) * OVER_SQUARED_NORM(b, a)),
     lambda d, out, a, b: -(d * _away_from_origin(a, b, F.where(
         F.abs(a) <= F.abs(b), OVER_SQUARED_NORM(a, b) * OVER_HYPOT(b, a), out * OVER_SQUARED_NORM(b, a))))),
    "_over_hypot({0}, {1})", (ANYWHERE, ANYWHERE),
    doc="a / hypot(a, b) (private: hypot's slope), with derivatives that are products.",
)
HYPOT = elementwise("hypot", np.hypot,
                    (lambda d, out, x, y: d * OVER_HYPOT(x, y), lambda d, out, x, y: d * OVER_HYPOT(y, x)),
                    "math.hypot({0}, {1})", (ANYWHERE, ANYWHERE), doc="sqrt(x*x + y*y) without overflow or underflow.")

# ------------------------------------------------------------- logs and roots

# d / x first: x * LN10 overflows at the largest floats, where 1 / (x ln 10) is a subnormal
LOG2 = elementwise("log2", np.log2, (lambda d, out, x: (d / x) * (1 / LN2),), "math.log2({0})", (POSITIVE,),
                   doc="Base-2 logarithm, exact at powers of 2.")
LOG10 = elementwise("log10", np.log10, (lambda d, out, x: (d / x) * (1 / LN10),), "math.log10({0})", (POSITIVE,),
                    doc="Base-10 logarithm, exact at powers of 10.")
CBRT = elementwise("cbrt", np.cbrt, (lambda d, out, x: d / out / out / 3,), "np.cbrt({0})", (ANYWHERE,),
                   doc="The real cube root (negative for negative x).")


def _logaddexp_dx(d, out, x, y):
    # sigmoid(x - y) at the exact difference: s(z + r) = s(z) (1 + s(-z) r) to first order
    z, rounding = rounded_difference(x, y)
    return d * (F.sigmoid(z) * (F.sigmoid(-z) * rounding + 1))


def _logaddexp2_dx(d, out, x, y):
    # 2**x / (2**x + 2**y) = 1 / (1 + 2**(y - x)), one branch per sign of z = x - y so
    # that the power is at most 1 (no overflow, no inf / inf), each branch's argument
    # clamped by a where so the unselected one stays finite too.  Not
    # sigmoid((x - y) ln 2): rounding the product costs |z| ln 2 ulps (308 at z = -1000).
    # At the exact difference, as logaddexp's: f(z + r) = f(z) (1 + f(-z) r ln 2).
    # A NaN difference (a NaN input; inf - inf) fails both z >= 0 and z < 0: the clamps
    # let it through (not z < 0, not z >= 0), so the share and its derivatives are NaN
    # there, not the 1/2 of two clamped arguments.
    z, rounding = rounded_difference(x, y)
    above = F.power(2.0, F.where(F.logical_not(F.less(z, 0)), -z, 0))
    below = F.power(2.0, F.where(F.logical_not(F.greater_equal(z, 0)), z, 0))
    share = F.where(z >= 0, 1 / (above + 1), below / (below + 1))
    other = F.where(z >= 0, above / (above + 1), 1 / (below + 1))
    return d * (share * (other * (rounding * LN2) + 1))


# np.logaddexp is x + log1p(exp(y - x)) for the larger x, x + log(2) at ties (inf included)
LOGADDEXP = elementwise(
    "logaddexp", np.logaddexp, (_logaddexp_dx, lambda d, out, x, y: _logaddexp_dx(d, out, y, x)),
    "np.logaddexp({0}, {1})", (ANYWHERE, ANYWHERE),
    doc="log(exp(x) + exp(y)) without overflow; derivatives sigmoid(x - y) and sigmoid(y - x).",
)
LOGADDEXP2 = elementwise(
    "logaddexp2", np.logaddexp2, (_logaddexp2_dx, lambda d, out, x, y: _logaddexp2_dx(d, out, y, x)),
    "np.logaddexp2({0}, {1})", (ANYWHERE, ANYWHERE),
    doc="log2(2**x + 2**y) without overflow; derivatives 1 / (1 + 2**(y - x)) and 1 / (1 + 2**(x - y)).",
)

# --------------------------------------------------------------------- rounding

_NO_DERIVATIVE = "Its derivative is zero wherever it exists, so no derivative flows through it."
FLOOR = elementwise("floor", np.floor, None, "np.floor({0})", (ANYWHERE,), doc="Round down. " + _NO_DERIVATIVE)
CEIL = elementwise("ceil", np.ceil, None, "np.ceil({0})", (ANYWHERE,), doc="Round up. " + _NO_DERIVATIVE)
TRUNC = elementwise("trunc", np.trunc, None, "np.trunc({0})", (ANYWHERE,), doc="Round toward 0. " + _NO_DERIVATIVE)
RINT = elementwise("rint", np.rint, None, "np.rint({0})", (ANYWHERE,),
                   doc="Round to the nearest integer, ties to even. " + _NO_DERIVATIVE)

# ------------------------------------------------------------------- remainders


def _away_from_jumps(samples, gap=0.1):
    """Per sample, redraw until every x / y is ``gap`` away from an integer: the remainders
    jump there, and finite differences must not step across."""

    def fine(inputs):
        q = np.divide(*inputs)
        return np.min(np.abs(q - np.round(q))) > gap

    def draw(rng):
        chosen = [None] * len(samples(rng))
        while None in chosen:
            for k, case in enumerate(samples(rng)):
                if chosen[k] is None and fine(case[0]):
                    chosen[k] = case
        return chosen

    return draw


def _integer_quotient(x, y, out):
    # (x - remainder) / y is within rounding of an integer; rint makes it one
    return RINT((x - out) / y)


FLOOR_DIVIDE = elementwise("floor_divide", np.floor_divide, None, "({0} // {1})", (ANYWHERE, ANYWHERE),
                           dtype_rule=no_bool, doc="floor(x / y) as NumPy computes it. " + _NO_DERIVATIVE)
MOD = elementwise(
    "mod", np.remainder,
    (lambda d, out, x, y: d, lambda d, out, x, y: -(d * _integer_quotient(x, y, out))),
    "({0} % {1})", (ANYWHERE, ANYWHERE), dtype_rule=no_bool,
    doc="x - floor(x / y) * y with the sign of y (Python's %, np.mod); d/dy = -floor(x / y).",
)
FMOD = elementwise(
    "fmod", np.fmod,
    (lambda d, out, x, y: d, lambda d, out, x, y: -(d * _integer_quotient(x, y, out))),
    "np.fmod({0}, {1})", (ANYWHERE, ANYWHERE),
    doc="x - trunc(x / y) * y with the sign of x (C's fmod); d/dy = -trunc(x / y).",
)
MOD.samples = _away_from_jumps(MOD.samples)
FMOD.samples = _away_from_jumps(FMOD.samples)

# ------------------------------------------------------------------------ signs

COPYSIGN = elementwise(
    "copysign", np.copysign, (lambda d, out, x, y: d * (F.sign(x) * COPYSIGN(_one(x), y)), None),
    "math.copysign({0}, {1})", (ANYWHERE, ANYWHERE),
    doc="|x| with the sign bit of y; d/dx = sign(x) * (the sign of y), 0 at x = 0 as |x|'s; none in y.",
)
