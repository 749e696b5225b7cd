"""Elementwise ops, which broadcast like NumPy.

An elementwise op's Jacobian is diagonal, so one function per input,
``derivative(d, out, *inputs)`` = d * (partial derivative of out wrt that input),
serves both directions: the reverse rule is ``unbroadcast(derivative(cotangent))``
and the forward rule is ``derivative(tangent)``.  That keeps each op's calculus
on one line, next to its NumPy implementation and its scalar code spelling.
"""

from __future__ import annotations

import fractions
import functools
import math
import threading

import numpy as np

from .. import frontend as F
from ..errors import DTypeError
from ..ir import Expr, Op
from ..types import FLOAT_DTYPES, TensorType, broadcast_shapes
from . import precise_log, reductions, structure
from .leaves import const


def zeros_like(x: Expr) -> Expr:
    """Zeros with the (run-time) shape and dtype of ``x``.

    >>> import symdiff as sd
    >>> x = sd.vector("x")
    >>> sd.evaluate(zeros_like(x), {x: [5.0, 6.0]})
    array([0., 0.])
    """
    return structure.BROADCAST_LIKE(const(0, x.dtype), x) if x.ndim else const(0, x.dtype)


# ------------------------------------------------------------------ dtype rules


def same_dtype(types, **attrs):
    dtype = types[0].dtype
    for t in types:
        if t.dtype != dtype:
            raise DTypeError(f"inputs must share one dtype, got {[t.dtype for t in types]}")
    return dtype


def float_only(types, **attrs):
    dtype = same_dtype(types)
    if dtype not in FLOAT_DTYPES:
        raise DTypeError(f"needs float inputs, got {dtype}")
    return dtype


def bool_result(types, **attrs):
    same_dtype(types)
    return "bool"


def bool_only(types, **attrs):
    if same_dtype(types) != "bool":
        raise DTypeError(f"needs bool inputs, got {types[0].dtype}")
    return "bool"


def no_bool(types, **attrs):
    # NumPy refuses bool - bool (and -bool) at run time; refuse it when the graph is built.
    dtype = same_dtype(types)
    if dtype == "bool":
        raise DTypeError("bool inputs are not supported (NumPy refuses them too); cast to int64 first "
                         "(for the xor of two bools use sd.not_equal)")
    return dtype


# ------------------------------------------------------------------- the factory

# Default test domain per input: away from zero so that 1/x, log, kinks are safe.
ANYWHERE = ((-2.0, -0.3), (0.3, 2.0))
POSITIVE = ((0.3, 3.0),)


def _sampler(domains):
    """Samples for an elementwise op: all scalars, vectors, and broadcasting."""

    def draw(rng, domain, shape):
        if domain == "bool":
            return rng.random(size=shape) < 0.5
        low, high = domain[rng.integers(len(domain))] if len(domain) > 1 else domain[0]
        values = rng.uniform(low, high, size=shape)
        if len(domain) > 1:  # a union of intervals: pick one per element
            pick = rng.integers(len(domain), size=shape)
            for k, (lo, hi) in enumerate(domain):
                values = np.where(pick == k, rng.uniform(lo, hi, size=shape), values)
        return values

    def samples(rng):
        n = len(domains)
        shape_sets = [[()] * n, [(4,)] * n, [(3, 4)] * n]
        if n >= 2:
            shape_sets.append([(3, 1)] + [(4,)] * (n - 1))
            shape_sets.append([()] + [(2, 3)] * (n - 1))
        return [(tuple(draw(rng, d, s) for d, s in zip(domains, shapes)), {}) for shapes in shape_sets]

    return samples


def elementwise(name, numpy_fn, derivatives, code, domain=None, dtype_rule=float_only, doc=""):
    """Define and register an elementwise op.

    derivatives: one entry per input, ``fn(d, out, *inputs, **attrs)`` returning
    d times the partial derivative, or None where no derivative flows; ``None``
    instead of a tuple means the output carries no derivative.
    code: the scalar spelling for code generators, over ``{0}``, ``{1}``...
    domain: per input, the intervals its tests sample (or "bool").
    """
    arity = len(domain)

    def infer(types, **attrs):
        if len(types) != arity:
            raise DTypeError(f"takes {arity} inputs, got {len(types)}")
        return TensorType(dtype_rule(types, **attrs), broadcast_shapes(*(t.shape for t in types)))

    vjp = jvp = None
    if derivatives is not None:

        def reverse_rule(fn, index):
            def rule(g, out, *inputs, **attrs):
                return reductions.unbroadcast(fn(g, out, *inputs, **attrs), inputs[index].type)

            return rule

        vjp = tuple(None if fn is None else reverse_rule(fn, i) for i, fn in enumerate(derivatives))

        def jvp(tangents, out, *inputs, **attrs):
            total = None
            for fn, t in zip(derivatives, tangents):
                if fn is not None and t is not None:
                    term = fn(t, out, *inputs, **attrs)
                    total = term if total is None else total + term
            if total is None:
                return None
            if total.dtype != out.dtype:
                total = F.astype(total, out.dtype)
            if total.type.shape != out.type.shape:
                total = structure.BROADCAST_LIKE(total, out)
            return total

    return Op(
        name,
        infer=infer,
        impl=numpy_fn,
        vjp=vjp,
        jvp=jvp,
        kind="elementwise",
        scalar_code=code,
        samples=_sampler(domain),
        doc=doc,
    )


# ------------------------------------------------------------------ unary float

NEG = elementwise("neg", np.negative, (lambda d, out, x: -d,), "(-{0})", (ANYWHERE,), dtype_rule=no_bool)
EXP = elementwise("exp", np.exp, (lambda d, out, x: d * out,), "math.exp({0})", (ANYWHERE,))
# expm1' is exp(x), not out + 1, which cancels for x < 0 (0 at x = -40, true 4e-18).
EXPM1 = elementwise("expm1", np.expm1, (lambda d, out, x: d * F.exp(x),), "math.expm1({0})", (ANYWHERE,))
LOG = elementwise("log", np.log, (lambda d, out, x: d / x,), "math.log({0})", (POSITIVE,))
LOG1P = elementwise("log1p", np.log1p, (lambda d, out, x: d / (x + 1),), "math.log1p({0})", (((-0.7, 2.0),),))
SQRT = elementwise("sqrt", np.sqrt, (lambda d, out, x: d / (out * 2),), "math.sqrt({0})", (POSITIVE,))
SIN = elementwise("sin", np.sin, (lambda d, out, x: d * F.cos(x),), "math.sin({0})", (ANYWHERE,))
COS = elementwise("cos", np.cos, (lambda d, out, x: -(d * F.sin(x)),), "math.cos({0})", (ANYWHERE,))
TAN = elementwise("tan", np.tan, (lambda d, out, x: d * (out * out + 1),), "math.tan({0})", (((-1.2, 1.2),),))


def _sech2(x):
    # 4e / (1 + e)**2 with e = exp(-2|x|) <= 1: no overflow, nothing cancels, a few ulps.
    e = np.exp(np.abs(x) * -2)
    return e * 4 / ((e + 1) * (e + 1))


# sech2 (1 / cosh(x)**2) is a primitive so that tanh's derivatives keep relative accuracy
# at every order while staying polynomials in tanh(x) and sech2(x):
# - tanh' = 1 - out**2 is exactly 0 once out rounds to +-1 (|x| > 19 in float64, 9 in
#   float32) while the true value, about 4 exp(-2|x|), is representable up to |x| = 372,
#   and it loses a dozen ulps at |x| ~ 3;
# - written as a composite (a where between 1 - out**2 and an exp formula), each order's
#   graph carries both branches and grows quadratically; sech2' = -2 tanh(x) sech2(x)
#   keeps the k-th derivative of tanh a polynomial of degree k + 1, which the fast-math
#   pass collects.
SECH2 = elementwise("sech2", _sech2, (lambda d, out, x: d * (F.tanh(x) * out * -2),), "_sech2({0})", (ANYWHERE,),
                    doc="1 / cosh(x)**2, tanh's derivative, evaluated without overflow.")
TANH = elementwise("tanh", np.tanh, (lambda d, out, x: d * SECH2(x),), "math.tanh({0})", (ANYWHERE,))
ABS = elementwise("abs", np.abs, (lambda d, out, x: d * F.sign(x),), "abs({0})", (ANYWHERE,), dtype_rule=same_dtype)
SIGN = elementwise("sign", np.sign, None, "_sign({0})", (ANYWHERE,), dtype_rule=no_bool,
                   doc="Derivative zero almost everywhere, so no derivative flows.")


def _sigmoid(x):
    # exp(-|x|) never overflows; both branches are exact in their half-line.
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1 / (1 + e), e / (1 + e))


# sigmoid and softplus are primitives rather than composites: one stable libm-level
# formula each, and derivatives that cannot overflow.
def _sigmoid_dx(d, out, x):
    # sigmoid' with relative accuracy everywhere, and a derivative (sigmoid'') that keeps it:
    # - |x| >= 1: sigmoid(x) * sigmoid(-x).  Not out * (1 - out), where 1 - out is exactly 0
    #   once out rounds to 1 (x >= 37 in float64, 17 in float32) while the true value, about
    #   exp(-|x|), is representable up to |x| = 745.  Its derivative
    #   sigmoid'(x) * (sigmoid(-x) - sigmoid(x)) loses at most a bit here (|difference| >= 0.46);
    # - |x| < 1: 0.25 * (1 - tanh(x/2)**2), equal in exact arithmetic, whose derivative
    #   -0.25 * tanh(x/2) * (1 - tanh(x/2)**2) keeps relative accuracy near 0, where the
    #   difference above cancels (sigmoid''(1e-15) came out 11% off, and 0 at subnormals).
    half_tanh = F.tanh(x * 0.5)
    near_zero = (1 - half_tanh * half_tanh) * 0.25
    return d * F.where(F.abs(x) < 1, near_zero, out * F.sigmoid(-x))


SIGMOID = elementwise("sigmoid", _sigmoid, (_sigmoid_dx,), "_sigmoid({0})", (ANYWHERE,),
                      doc="1 / (1 + exp(-x)), evaluated without overflow.")
SOFTPLUS = elementwise("softplus", lambda x: np.logaddexp(0, x), (lambda d, out, x: d * F.sigmoid(x),),
                       "_softplus({0})", (ANYWHERE,), doc="log(1 + exp(x)), evaluated without overflow.")

# ----------------------------------------------------------------- binary float

ADD = elementwise("add", np.add, (lambda d, out, x, y: d, lambda d, out, x, y: d), "({0} + {1})",
                  (ANYWHERE, ANYWHERE), dtype_rule=same_dtype)
SUB = elementwise("sub", np.subtract, (lambda d, out, x, y: d, lambda d, out, x, y: -d), "({0} - {1})",
                  (ANYWHERE, ANYWHERE), dtype_rule=no_bool)
MUL = elementwise("mul", np.multiply, (lambda d, out, x, y: d * y, lambda d, out, x, y: d * x), "({0} * {1})",
                  (ANYWHERE, ANYWHERE), dtype_rule=same_dtype)


def _times_quotient(d, out):
    """d * out, but 0 where out is 0 and the product is NaN (d infinite, or NaN).  The
    y-slope -out / y is then exactly 0, while a second derivative's cotangent can be a true
    inf (1/y at a subnormal y): d2(x/y)/dy2 at x = 0 came out 0 * inf = NaN.  Likewise 0
    where d is an exact 0 (a zero tangent) and out is inf: the HVP of x / y along (1, 0) at
    y = 5e-324 was NaN in its x part, true 0.  Not a mask
    wherever out is 0: that also zeroed the product's derivative in out, which higher
    derivatives need (the 4th derivative of 1/(1 + x^2) at 0 came out 16, not 24).  The
    test is on the product, not on d, so that it sits in the loop that computes the product
    (testing d there stored a bool array per division).  A finite constant d (the seed of a
    gradient) needs no mask, and a printed first gradient shows none."""
    constant = F.constant_value(d)
    if constant is not None and np.all(np.isfinite(constant)):
        return d * out
    product = d * out
    exact_zero = F.logical_or(F.equal(out, 0), F.equal(d, 0))
    return F.where(F.logical_and(F.not_equal(product, product), exact_zero), 0, product)


DIV = elementwise("div", np.divide,
                  (lambda d, out, x, y: d / y, lambda d, out, x, y: -_times_quotient(d, out) / y),
                  "({0} / {1})", (ANYWHERE, ANYWHERE))


def _jvp_div(tangents, out, x, y):
    # (tx - out * ty) / y: one division per tangent.  The factory's tx / y - (ty * out) / y
    # has two, and nested forward sweeps (higher derivatives) would double them at every
    # order; with one, the graph of the k-th derivative grows polynomially in k.
    tx, ty = tangents
    if ty is None:
        total = DIV(tx, y)
    else:
        slope = _times_quotient(ty, out)
        total = DIV(NEG(slope) if tx is None else SUB(tx, slope), y)
    return total if total.type.shape == out.type.shape else structure.BROADCAST_LIKE(total, out)


DIV.jvp = _jvp_div


def _pow_dx(d, out, x, y):
    # x ** c for a constant c: c * x ** (c - 1) with c - 1 folded.
    c = F.constant_value(y)
    if c is not None and c.ndim == 0:
        c = float(c)
        if c == 0.0:  # x ** 0 is 1 everywhere, 0 ** 0 included
            return zeros_like(d)
        if c == 1.0:
            return d
        if c == 2.0:
            return d * (x * 2)
        return d * _constant_power_slope(out, x, c)
    return POW_SLOPE(d, x, y, wrt="x")


def _constant_power_slope(out, x, c):
    """c x**(c - 1) for a constant c, with c - 1 rounded in the graph's dtype.  An integer c
    keeps x**(c - 1) (negative x included; the ratio (out / x) / x**(c - 1) corrects it
    where c - 1 rounds); any other c (x >= 0 only) takes the split form of
    _split_power_slope, (c a)(a k) with a = x**(e/2): x**(c - 1) itself overflows where the
    slope is finite (x**0.001 at 1e-310: inf, true 4.9e306).  k corrects e's rounding where
    there is one (in float32 too: 59 ulps at x**0.999, x = 1e-30)."""
    number = np.dtype(out.dtype).type
    exponent = number(number(c) - number(1))
    finite = math.isfinite(c)
    rounded = finite and fractions.Fraction(float(exponent)) != fractions.Fraction(float(number(c))) - 1
    if not finite or c == math.floor(c):
        power = F.power(x, float(exponent))  # c - 1 rounds only from 2**53 (2**24) on
        return (power * _exponent_correction((out / x) / power) if rounded else power) * c
    half = F.power(x, float(exponent) * 0.5)
    slope = half * c
    if rounded:
        slope = slope * _exponent_correction(out / ((half * x) * half))
    return slope * half


def _pow_slope(out, x, y):
    """y x**(y - 1), in four regimes that share one pow, each fed its own points only (a
    stand-in elsewhere, through a ``where`` on every input, the shared power included) so
    that no regime's 0 * inf reaches a value or a derivative:

    - (y / x) x**y for y < 1/2 at a positive x where x**y is finite and normal and
      (y / x)**2 is finite.  y x**(y - 1) overflows for tiny x and y (5e-324 * inf at
      x = y = 5e-324, where the slope is 1), and its derivative y (y - 1) x**(y - 2) is
      0 * inf at (1e-300, 0), where it is 0; at (1e15, -2) in float32 it passes through a
      subnormal x**(y - 1).  The quotient form's derivative has a second term,
      (y / x)**2 x**y, which cancels the first by at most 3x below 1/2;
    - x = y = 0: 0 (x**0 is 1);
    - at the other positive finite x, (y a)(a c) with a = x**(e/2), e = y - 1 rounded:
      half the exponent keeps a in range where y brings the product back (a = 1e155 at
      (1e-310, 1e-15), true slope 1e295, where y x**(y - 1) overflowed), and the two
      factors' derivatives have one sign, where the quotient form's two terms would both
      overflow (inf - inf).  log x scales e's rounding error in x**e (175 ulps at (1e-300,
      0.3)); where y - 1 is inexact (TwoSum says), c = out / ((a x) a) is
      x**(y - 1) / a**2 formed from pow's x**y, whose exponent is exact (a x = x**((y+1)/2)
      stays in range); elsewhere c = 1 (_exponent_correction);
    - elsewhere (x <= 0, inf, NaN) y x**(y - 1): NumPy's semantics at negative x and the
      signed zeros; its derivatives keep pow's exact polynomial zeros (the 4th
      x-derivative of x**3) and do not form x**y log x (inf at (1e154, 2)).

    The shared x**y is recomputed, not taken from ``out``: a regime's stand-in cotangent is
    0, and 0 reaching out's own rules (out log x = inf at (1e300, 2)) would be 0 * inf.
    Three pows (the quotient's, the split's and the fallback's, two at stand-ins) cost
    value+grad of sum(a ** b) on 1e6 elements 68-75 ms; one shared pow, 32 ms (29 before
    the split form)."""
    quotient, split, zeros, fallback, x_any, y_any, rounding, power = _pow_regimes(out, x, y)

    def own(regime, value):
        return F.where(regime, value, 1)

    quotient_form = (own(quotient, y_any) / own(quotient, x_any)) * own(quotient, power)
    half = own(split, power)
    correction = F.where(F.logical_and(split, F.not_equal(rounding, 0)), _exponent_correction(out / ((half * own(split, x_any)) * half)),
                         1)
    split_form = (own(split, y_any) * half) * (half * correction)
    fallback_form = own(fallback, y_any) * own(fallback, power)
    return F.where(quotient, quotient_form, F.where(split, split_form, F.where(zeros, 0, fallback_form)))


def _pow_regimes(out, x, y):
    """_pow_slope's regimes: (quotient, split, zeros, fallback) masks, x and y with the
    stand-in 1 at x = y = 0, e = y - 1's rounding error and the regimes' shared pow."""
    limits = np.finfo(out.dtype)
    positive = F.logical_and(F.greater(x, 0), F.less(x, np.inf))
    normal_power = F.logical_and(F.greater_equal(out, float(limits.tiny)), F.less(out, np.inf))
    quotient_of = y / x
    square_fits = F.less(quotient_of * quotient_of, np.inf)  # no sqrt(max) constant: it sets printed tables' scale
    quotient = F.logical_and(F.logical_and(positive, normal_power), F.logical_and(square_fits, F.less(y, 0.5)))
    zeros = F.logical_and(F.equal(x, 0), F.equal(y, 0))
    split = F.logical_and(positive, F.logical_not(quotient))
    fallback = F.logical_not(F.logical_or(F.logical_or(quotient, split), zeros))
    x_any, y_any = F.where(zeros, 1, x), F.where(zeros, 1, y)
    exponent, rounding = rounded_difference(y_any, 1)  # y - 1 and its rounding error (TwoSum)
    power = F.power(x_any, F.where(quotient, y_any, F.where(split, exponent * 0.5, exponent)))
    return quotient, split, zeros, fallback, x_any, y_any, rounding, power


def rounded_difference(x, y):
    """(z, r): z = x - y rounded and r its rounding error (TwoSum: z + r = x - y exactly),
    r a constant to differentiation and 0 where it is not finite (an infinite input).
    A share of the sum such as sigmoid(x - y) sees z's error times |z| in relative
    terms (89 ulps at (-100, 100.00000000000007)); its first-order correction by r
    restores it, and so does the correction's derivative for the share's derivative."""
    z = x - y
    back = z - x
    rounding = (x - (z - back)) + (-y - back)
    return z, F.stop_gradient(F.where(F.less(F.abs(rounding), np.inf), rounding, 0))


def _exponent_correction(ratio):
    """x**(y - 1) / x**e, e = y - 1 rounded, as computed from pow's x**y: a constant to
    differentiation (its derivative is below an ulp of the slope's), and 1 wherever it is
    not within 2**-10 of 1 (x**y not normal, x <= 0, NaN), where it corrects nothing.  A
    true correction is at most |r log x|: about 1e-13 in float64, 4e-6 in float32 (a bound
    of 2**-20 turned float32's away: x**0.999 at 1e-30, d2 59 ulps)."""
    return F.stop_gradient(F.where(F.less(F.abs(ratio - 1), 2.0 ** -10), ratio, 1))


def _pow_dy(d, out, x, y):
    return POW_SLOPE(d, x, y, wrt="y")


def _x_slope_composite(d, x, y):
    """d y x**(y - 1) (_pow_slope's regimes)."""
    return d * _pow_slope(POW(x, y), x, y)


def _y_slope_composite(d, x, y):
    """d x**y log x, taken as 0 where x**y is 0 (x = 0 < y, as JAX does; x = inf with y < 0),
    not 0 * -inf or 0 * inf.  d * out first: in a second derivative out log x can overflow
    where d brings the product back (-inf at (2.2e-308, 1e-15), true 4.5e307)."""
    out = POW(x, y)
    return MUL_LOG(d * out, _log_argument(out, x))


def _positive(x):
    return F.logical_and(F.greater(x, 0), F.less(x, np.inf))


def _log_argument(out, x):
    """x, or 1 where x**y is 0 beside a non-positive or infinite x (log x is -inf or inf
    there).  Where x**y underflowed at a positive finite x the log is x's: _y_slope_value's
    subnormal form uses it."""
    return F.where(F.logical_and(F.equal(out, 0), F.logical_not(_positive(x))), 1, x)


# Where x**y is below the normal range, its products with log x are formed from
# a = x**(e/2), e = y - 1 rounded (_pow_slope's split pow), scaled by an exact power of two:
# x**y s = ((a (x s)) a) below x = 1, ((a s)(x a)) above (x s overflows there; a x =
# x**((y+1)/2) is moderate), each factor normal wherever the product is representable.
_SUBNORMAL_SCALE = {"float64": (2.0 ** 600, 2.0 ** -600), "float32": (2.0 ** 80, 2.0 ** -80)}


def _subnormal_power(out, x, y):
    """Where x**y is subnormal or 0 at a positive finite x and a finite y: x**y has lost bits
    there (a relative error up to 2**-1075 / x**y: the y-slope was 337 ulps off at (1e-310,
    1.001)), or all (d2/dxdy at (5e-324, 1.5), true -2.5e-159, came from x**y = 0)."""
    finite_y = F.less(F.abs(y), np.inf)
    return F.logical_and(F.logical_and(_positive(x), finite_y), F.less(out, float(np.finfo(out.dtype).tiny)))


def _scaled_power(d, a, x):
    """d x**y s (d a**2 x s) from a = x**(e/2)."""
    up, _ = _SUBNORMAL_SCALE[a.dtype]
    return F.where(F.less(x, 1), ((d * a) * (x * up)) * a, ((d * a) * up) * (x * a))


def _after_log(log_x, value):
    """value, read where log_x is not NaN (1 elsewhere): a kernel then forms what depends on it
    in the loop after the log's vector-math pass, not before it with every intermediate stored
    between the loops."""
    return F.where(F.equal(log_x, log_x), value, 1)


def _rounding_factor(y, log_x):
    """x**r = 1 + r log x to first order (|r log x| < 2**-40), r e's rounding error (nonzero
    for y < 1/2 and |y| >= 2**53), recomputed from y after the log (no array of r between the
    kernel's loops)."""
    _, rounding = rounded_difference(_after_log(log_x, y), 1)
    return F.stop_gradient(rounding * log_x + 1)


def _y_slope_value(d, x, y):
    """The y-slope's value: _y_slope_composite, and where x**y is below the normal range
    (_subnormal_power) d x**y s log x (1 + r log x) / s.  The scaled product is selected
    before the log, so that both share one mul_log (the log's vector-math pass) and the
    kernel stores one float array between its loops for both."""
    out = POW(x, y)
    below = _subnormal_power(out, x, y)
    a = _pow_regimes(out, x, y)[-1]  # _pow_slope's shared pow a = x**(e/2): the same nodes
    argument = _log_argument(out, x)
    product = MUL_LOG(F.where(below, _scaled_power(d, a, x), d * out), argument)
    _, down = _SUBNORMAL_SCALE[out.dtype]
    return F.where(below, (product * _rounding_factor(y, F.log(argument))) * down, product)


def _mul_log_numpy(a, b):
    return np.multiply(a, np.log(b))


# A primitive, not a * log(b), for its forward rule: the tangent of log(b) alone is tb / b,
# inf at a subnormal b, where a = x**y brings a * tb / b back (pow's d2/dxdy at (5e-324, 1) is
# -743.4; forward over reverse gave +inf).  Its rules divide a by b before the tangent.  It
# compiles as a * log(b), the same IEEE operations (log keeps the vector-math path).
MUL_LOG = elementwise(
    "mul_log", _mul_log_numpy,
    (lambda d, out, a, b: MUL_LOG_SLOPE(d, a, b, part=0), lambda d, out, a, b: MUL_LOG_SLOPE(d, a, b, part=1)),
    "({0} * math.log({1}))", (ANYWHERE, POSITIVE),
    doc="a * log(b) (private: pow's y-slope and xlogy), whose derivative in b is d * (a / b).")
MUL_LOG.compiled_as = lambda a, b: a * F.log(b)


# mul_log's two slopes, d log b (part 0, for a) and d (a / b) (part 1, for b), are the two
# parts of one private op so that reverse mode differentiates them together (``vjp_joint``,
# as a loop's parts): each sends b a message over b, (c0 d) / b and -(c1 d (a / b)) / b,
# which are +-inf at a subnormal b where their sum is not NaN but the true +-inf or 0
# (xlogy's rev-rev HVP at (1, 5e-324) along (1, 1) was NaN, true -inf; d2/dx2 xlogy(x, x)
# at 5e-324 NaN, true +inf: there a = b and the quotient's two messages cancel to 0).
# Together the message is (c0 d - c1 d a / b) / b, as forward mode's (ta - q tb) / b
# always was.  A part alone sends what the composite's rules sent.
#
# Part k >= 1 is d a / b**k (k >= 2 only in derivatives of part 1), with each factor's binary
# exponent apart: d (a / b) alone was +-inf, 0 or NaN where the quotient over/underflows
# and d brings the product back ((0, 1e15, 1e-300): NaN, true 0; (1e300, 5e-324, 40): 0,
# true 1.2e-25; float32 (1e-30, 3e38, 0.5): inf, true 6e8), and its derivatives, formed
# from the same quotient, inherited it.  Part 1 is ``_times_ratio``, call-free (it stays in
# the vectorised loops); k >= 2 splits mantissas and exponents (frexp/ldexp: NumPy in the
# reference, ``runtime._times_ratio_power`` in kernels).
class NumpySteps:
    """The few frontend functions the composites whose reference runs the same steps call
    (``_times_ratio``, ``special._gaussian``), on NumPy arrays."""
    abs, logical_and, greater, greater_equal, less, equal, where, exp = (
        np.abs, np.logical_and, np.greater, np.greater_equal, np.less, np.equal, np.where, np.exp)
    stop_gradient = staticmethod(lambda value: value)


# The power of two that brings an under- or overflowed d * a back into the normal range
# wherever d * a / b is representable (float64: d * a >= 2**-1125 there; float32: 2**-171).
_RATIO_SCALES = {np.dtype(np.float64): 2.0 ** 600, np.dtype(np.float32): 2.0 ** 64}


def _is_unit_constant(d) -> bool:
    """Whether d is a constant (seen through broadcasts) whose every element is +-1."""
    if isinstance(d, np.ndarray):
        return False  # the reference runs the full form; with |d| = 1 it gives the same bits
    while d.op.name in ("broadcast_like", "broadcast_to", "expand_dims", "reshape", "squeeze"):
        d = d.inputs[0]
    value = F.constant_value(d)
    return value is not None and value.size > 0 and bool(np.all(np.abs(value) == 1))


def _times_ratio(d, a, b, ops=F):
    """d * a / b within an ulp wherever it is representable.  Where a / b is a normal float
    (nearly everywhere) it is d * (a / b), bit for bit as before.  Elsewhere ((d s) a) / (b s)
    with s = 1 where d * a is normal (or d or a is 0, inf or NaN), a power of two 2**600
    (2**64 in float32) where it underflows and 2**-600 where it overflows: the product is then normal wherever the result
    is representable (where a / b and d * a both leave the range, d and b are both tiny or
    both huge), b s is exact wherever the result is not beyond the range anyway, and the
    division rounds once.  Zeros, infinities and NaN give IEEE's (and mpmath's) limits:
    (0, 1e15, 1e-300) is 0 (d (a / b) was NaN), an infinite b gives 0 or NaN.

    Tried first: the first of d (a / b), (d a) / b and (d / b) a with a normal inner
    result (three divisions): as exact, but the HVP of sum(a ** b) on 1e6 elements went from
    54 to 85 ms (five more stored temporaries in its kernel); this form, one division more than
    d (a / b), leaves it at 53 ms.  A constant d of +-1 (a gradient's seed: xlogy's value+grad)
    takes d (a / b), which is then exact: value+grad of sum(xlogy(x, y)) on 1e6 elements 4.4 ms
    with the full form, 3.0 before and with this."""
    if _is_unit_constant(d):  # a gradient's seed: d (a / b) is a / b rounded once, exact as it is
        return d * (a / b)
    dtype = np.dtype(d.dtype if not isinstance(d, np.ndarray) else np.result_type(d, a, b))
    tiny, up = float(np.finfo(dtype).tiny), _RATIO_SCALES.get(dtype, 1.0)
    typed = dtype.type if ops is not F else (lambda value: const(value, dtype.name))

    def normal(v):
        size = ops.abs(v)
        return ops.logical_and(ops.greater_equal(size, tiny), ops.less(size, np.inf))

    def finite_nonzero(v):
        size = ops.abs(v)
        return ops.logical_and(ops.greater(size, 0), ops.less(size, np.inf))

    quotient, product = a / b, d * a
    size = ops.abs(product)
    factors = ops.logical_and(finite_nonzero(d), finite_nonzero(a))  # else IEEE's (d a) / b: 0, inf, NaN
    underflowed = ops.logical_and(factors, ops.less(size, tiny))
    overflowed = ops.logical_and(factors, ops.equal(size, np.inf))
    scale = ops.where(underflowed, typed(up), ops.where(overflowed, typed(1.0 / up), typed(1.0)))
    return ops.where(normal(quotient), d * quotient, ((d * scale) * a) / (b * scale))


def _times_ratio_power_numpy(d, a, b, k):
    """d * a / b**k for k >= 1, the binary exponents apart: (md * ma / mb**k) * 2**(ed + ea -
    k eb), computed in float64 and rounded to the inputs' dtype (as runtime._times_ratio_power)."""
    dtype = np.result_type(d, a, b)
    md, ed = np.frexp(np.asarray(d, dtype=np.float64))
    ma, ea = np.frexp(np.asarray(a, dtype=np.float64))
    mb, eb = np.frexp(np.asarray(b, dtype=np.float64))
    power = mb
    for _ in range(k - 1):
        power = power * mb
    exponent = np.clip(ed.astype(np.int64) + ea - k * eb.astype(np.int64), -(1 << 20), 1 << 20)
    return np.ldexp(md * ma / power, exponent.astype(np.int32)).astype(dtype, copy=False)


def _mul_log_slope_numpy(d, a, b, part):
    if part == 0:  # a is not read, but its shape takes part in the broadcast
        value = np.multiply(d, np.log(b))
        shape = np.broadcast_shapes(np.shape(value), np.shape(a))
        return value if np.shape(value) == shape else np.broadcast_to(value, shape).copy()
    d, a, b = (np.asarray(v) for v in (d, a, b))
    with np.errstate(all="ignore"):
        if part == 1:
            return _times_ratio(d, a, b, NumpySteps)
        return _times_ratio_power_numpy(d, a, b, part)


def _mul_log_slope_compiled(d, a, b, part):
    """Parts 0 and 1 compile as composites (the vector-math log; ``_times_ratio``); higher
    parts as themselves (the scalar helper of their ``scalar_code``)."""
    if part == 0:
        return _widened(d * F.log(b), a)
    if part == 1:
        return _times_ratio(d, a, b)
    return MUL_LOG_SLOPE(d, a, b, part=part)


def _ratio(c, a, b, k):
    """c a / b**k as the op's part k (exponents apart)."""
    return MUL_LOG_SLOPE(c, a, b, part=k)


def _mul_log_slope_shares(cotangents: dict, inputs, wanted=(True, True, True)) -> list:
    """The messages to (d, a, b) for the cotangents {part: c} of the slopes' parts (parts 0
    and 1 together, or one part alone)."""
    d, a, b = inputs
    to_d = to_a = to_b = None
    if set(cotangents) - {0, 1}:  # a part k >= 2 (d a / b**k): each part's messages alone, summed
        if len(cotangents) > 1:
            shares = [_mul_log_slope_shares({k: c}, inputs, wanted) for k, c in cotangents.items()]
            return [functools.reduce(lambda x, y: y if x is None else x if y is None else x + y, messages)
                    for messages in zip(*shares)]
        (k, c), = cotangents.items()
        to_d = _ratio(c, a, b, k) if wanted[0] else None
        to_a = _ratio(c, d, b, k) if wanted[1] else None
        to_b = -(_ratio(c * d, a, b, k + 1) * k) if wanted[2] else None
    else:
        c0, c1 = cotangents.get(0), cotangents.get(1)
        if wanted[0]:
            terms = ([c0 * F.log(b)] if c0 is not None else []) + ([_ratio(c1, a, b, 1)] if c1 is not None else [])
            to_d = terms[0] if len(terms) == 1 else terms[0] + terms[1]
        if wanted[1] and c1 is not None:
            to_a = _ratio(c1, d, b, 1)
        if wanted[2]:
            if c0 is None:
                to_b = -_ratio(c1 * d, a, b, 2)
            elif c1 is None:
                to_b = _ratio(c0, d, b, 1)
            else:
                to_b = (c0 * d - _ratio(c1 * d, a, b, 1)) / b
    return [None if m is None else reductions.unbroadcast(m, x.type) for m, x in zip((to_d, to_a, to_b), inputs)]


def _mul_log_slope_vjp(index, c, out, d, a, b, part):
    """One part's message to one input, for passes that ask per node (backprop asks once per
    group); part 0 does not depend on a: zeros."""
    message = _mul_log_slope_shares({part: c}, (d, a, b), tuple(i == index for i in range(3)))[index]
    return zeros_like(a) if message is None else message


def _mul_log_slope_joint(parts: dict, inputs, attrs, wanted=None):
    cotangents = {part: cotangent for part, (_, cotangent) in parts.items()}
    return _mul_log_slope_shares(cotangents, inputs, wanted or (True, True, True))


def _mul_log_slope_jvp(tangents, out, d, a, b, part):
    """d log b gives td log b + tb d / b; d a / b**k gives td a / b**k + (d ta - k d tb a /
    b) / b**k (division's rule for k = 1: the tangents combine before the last division, so a
    subnormal b does not send inf - inf; d tb first, so a tiny d brings a huge a / b back:
    the fwd-rev HVP of w xlogy(x, y) at float32 (1e-30, 3e38, 0.5) was -inf, true -1.2e9),
    every ratio with its exponents apart.  Products of d with a tangent (and, in the reverse
    rules, of a cotangent with d) are formed as floats first: where they underflow or overflow
    and the rest would bring them back, the result is off (open)."""
    td, ta, tb = tangents
    terms = []
    if part == 0:
        if td is not None:
            terms.append(td * F.log(b))
        if tb is not None:
            terms.append(_ratio(tb, d, b, 1))
    else:
        if td is not None:
            terms.append(_ratio(td, a, b, part))
        if ta is not None or tb is not None:
            moved = None if tb is None else _ratio(d * tb, a, b, 1) * part
            numerator = d * ta if moved is None else (-moved if ta is None else d * ta - moved)
            terms.append(numerator / b if part == 1 else _ratio(numerator, const(1.0, b.dtype), b, part))
    if not terms:
        return None
    total = terms[0] if len(terms) == 1 else terms[0] + terms[1]
    return total if total.type.shape == out.type.shape else structure.BROADCAST_LIKE(total, out)


def _mul_log_slope_dtype(types, part=None):
    if not isinstance(part, int) or isinstance(part, bool) or part < 0:
        raise DTypeError(f"mul_log_slope: part must be an int >= 0, got {part!r}")
    return float_only(types)


def _mul_log_slope_samples(rng):
    # parts 0 and 1 only: the extreme-input table takes its attrs from here, and its first and
    # second derivatives of part 1 compute parts 2 and 3 and part 2's rules in both backends.
    # Part 2's own derivatives at infinite coordinates would meet the table's proxies for
    # infinity, 2**1100 and 2**1150, which are not large enough against b**3 (1e900): their
    # limit looks like 0 where it is inf.
    cases = []
    for part in (0, 1):
        for shapes in [((), (), ()), ((4,), (4,), (4,)), ((3, 1), (4,), (3, 4))]:
            d, a = (rng.uniform(0.3, 2.0, size=s) * rng.choice([-1, 1], size=s) for s in shapes[:2])
            cases.append(((d, a, rng.uniform(0.3, 3.0, size=shapes[2])), {"part": part}))
    return cases


MUL_LOG_SLOPE = elementwise(
    "mul_log_slope", _mul_log_slope_numpy, (functools.partial(_mul_log_slope_vjp, 0),
                                            functools.partial(_mul_log_slope_vjp, 1),
                                            functools.partial(_mul_log_slope_vjp, 2)),
    "(({0} * math.log({2})) if {part} == 0 else _times_ratio_power({part}, {0}, {1}, {2}))",
    (ANYWHERE, ANYWHERE, POSITIVE), dtype_rule=_mul_log_slope_dtype,
    doc="mul_log's slopes (private): d * log(b) (part 0) and d * a / b**k (part k >= 1), exponents apart; "
        "parts 0 and 1 differentiated together.")
MUL_LOG_SLOPE.jvp = _mul_log_slope_jvp
MUL_LOG_SLOPE.vjp_joint = _mul_log_slope_joint
MUL_LOG_SLOPE.compiled_as = _mul_log_slope_compiled
MUL_LOG_SLOPE.samples = _mul_log_slope_samples


# 1 + a log b, relatively accurate where the sum cancels (private: pow's mixed second
# derivative x**(y - 1) (1 + y log x), 257,633 ulps off at (0.5, 1.4427) from the product
# rule).  log b in double-double (``precise_log``, one algorithm run by NumPy in the
# reference and emitted as LLVM IR in kernels: the same bits); its derivatives are
# mul_log's.  Kernels compute it over whole arrays in a vector pass (as libmvec's functions).
ONE_PLUS_MUL_LOG = elementwise(
    "one_plus_mul_log", precise_log.one_plus_mul_log_numpy,
    (lambda d, out, a, b: MUL_LOG_SLOPE(d, a, b, part=0), lambda d, out, a, b: MUL_LOG_SLOPE(d, a, b, part=1)),
    "_one_plus_mul_log({0}, {1})", (ANYWHERE, POSITIVE),
    doc="1 + a * log(b) (private: pow's mixed second derivative), accurate where the sum cancels.")


def _power(x, y):
    # np.power takes a sqrt shortcut for a scalar or stride-0 exponent of 0.5, which
    # differs from pow at -0.0 and -inf and in the last bit: make the result
    # independent of how the exponent happens to be stored.
    shape = np.broadcast_shapes(np.shape(x), np.shape(y))
    return np.power(x, np.array(np.broadcast_to(y, shape)))  # a real (copied) array, 0-d kept 0-d


POW = elementwise("pow", _power, (_pow_dx, _pow_dy), "({0} ** {1})",
                  (POSITIVE, ANYWHERE), doc="x ** y; the derivative in y is real for x >= 0.")


# ------------------------------------------------ pow's partial derivatives (private)

def _widened(value, *others):
    """value broadcast against ``others`` (where(c, v, v), which the rewriter widens, with c
    true wherever the others are not NaN)."""
    if value.type.shape == broadcast_shapes(value.type.shape, *(o.type.shape for o in others)):
        return value
    mask = None
    for other in others:
        present = F.equal(other, other)
        mask = present if mask is None else F.logical_and(mask, present)
    return F.where(mask, value, value)


def _placeholders(inputs):
    """One symbol per input, all of the broadcast shape: a partial is formed on them and the
    inputs substituted after, so that x ** x differentiates its x-slot alone."""
    shape = broadcast_shapes(*(v.type.shape for v in inputs))
    return [F.tensor(f"_sd_pow_partial{i}", shape, inputs[0].dtype) for i in range(len(inputs))]


def _on_inputs(form, inputs):
    """form(*placeholders) with ``inputs`` put in their place, widened to their broadcast shape."""
    from ..custom import substitute

    slots = _placeholders(inputs)
    # every input widened to the slots' shape: an op of the form may not broadcast an input
    # it does not read (mul_log_slope's part 0 and its a)
    (value,) = substitute([form(*slots)], {slot: _widened(v, *inputs) for slot, v in zip(slots, inputs)})
    return _widened(value, *inputs)


_NESTED = threading.local()


def _compiled(value):
    """value with its private ops replaced by their compiled forms; pow_slope nodes inside a
    pow_curvature's composite (the slopes of the pows inside pow's regimes, and of x**y in
    their masks) compile as their plain composites: the subnormal form of _y_slope_value is
    for the y-slope's value (the second partials have none), and in a Hessian's kernel it cost
    the scaled form's flops and a third loop."""
    from ..function import compiled_forms

    _NESTED.depth = getattr(_NESTED, "depth", 0) + 1
    try:
        return compiled_forms([value])[0]
    finally:
        _NESTED.depth -= 1


def _curvature_form(c, d, x, y, wrt):
    """c d times pow's second partial ``wrt`` as a composite: "xx" and "xy" differentiate the
    x-slope in x and y, "yx" and "yy" the y-slope ("xy" and "yx" have one value)."""
    from ..autodiff import vjp

    if wrt == "xx":
        return vjp(_x_slope_composite(d, x, y), x, c)
    if wrt == "yy":
        return vjp(_y_slope_composite(d, x, y), y, c)
    if wrt == "xy":
        return vjp(_x_slope_composite(d, x, y), y, c)
    return vjp(_y_slope_composite(d, x, y), x, c)


_SLOPE_FORMS = {"x": _x_slope_composite, "y": _y_slope_value}


def _slope_form(d, x, y, wrt):
    form = _y_slope_composite if wrt == "y" and getattr(_NESTED, "depth", 0) else _SLOPE_FORMS[wrt]
    return form(d, x, y)


def _slope_value(d, x, y, wrt):
    return _widened(_slope_form(d, x, y, wrt), d, x, y)


def _mixed_value(c, d, x, y, wrt):
    """c d x**(y - 1) (1 + y log x) ("xy", "yx"): (c d) ((x**y u) / x), u = 1 + y log x from
    one_plus_mul_log, where |u| < 1/2 (the composite's product rule cancels there; x**y is
    within e**(+-1/2) of 1/e, so x**y u is exact but for one rounding) or where x**(y - 1)
    is subnormal and x**y normal (the composite rounded on the subnormal grid before the
    product with u: 120 ulps at (1.68e293, -0.0667)); the composite elsewhere.  For the
    value only: the rules (third order) differentiate the composite."""
    composite = _curvature_form(c, d, x, y, wrt)
    if np.dtype(x.dtype) != np.float64:
        return composite
    out = POW(x, y)
    # read after the y-slope's log (its vector pass): the kernel forms the closed form in
    # the loop after it, beside the composite's last steps, and stores nothing more between
    # its loops (three more stored arrays stopped LLVM vectorising the first loop: HVP of
    # sum(a ** b) on 1e6 elements 56 -> 97 ms)
    log_x = F.log(_log_argument(out, x))
    u, out, x, c, d = (_after_log(log_x, v) for v in (ONE_PLUS_MUL_LOG(y, x), out, x, c, d))
    quotient = out / x
    tiny = float(np.finfo(np.float64).tiny)
    subnormal = F.logical_and(F.logical_and(F.greater(out, tiny), F.less(out, np.inf)),
                              F.logical_and(F.less(F.abs(quotient), tiny), F.less(F.abs(u), np.inf)))
    near = F.logical_or(F.less(F.abs(u), 0.5), F.logical_and(subnormal, F.greater(x, 0)))
    return F.where(near, (c * d) * ((out * u) / x), composite)


def _value_form(c, d, x, y, wrt):
    return (_mixed_value if wrt in ("xy", "yx") else _curvature_form)(c, d, x, y, wrt)


def _curvature_value(c, d, x, y, wrt):
    return _on_inputs(functools.partial(_value_form, wrt=wrt), (c, d, x, y))


def _reference(form, nested):
    """The NumPy reference of a partial: its composite, evaluated by the reference evaluator
    (a pow_curvature's inner pow_slope nodes as compiled: _compiled)."""

    def numpy_fn(*arrays, **attrs):
        from ..evaluate import evaluate

        dtype = np.result_type(*arrays).name
        arrays = np.broadcast_arrays(*(np.asarray(a, dtype=dtype) for a in arrays))  # one shape: vjp's cotangent
        slots = [F.tensor(f"_sd_pow_reference{i}", a.shape, dtype) for i, a in enumerate(arrays)]
        expr = form(*slots, **attrs)
        _NESTED.depth = getattr(_NESTED, "depth", 0) + nested
        try:
            value = evaluate(expr, dict(zip(slots, arrays)))
        finally:
            _NESTED.depth -= nested
        return np.array(np.broadcast_to(value, arrays[0].shape), dtype=dtype)

    return numpy_fn


def _third_order(index):
    """A second partial's derivative in x (index 2) or y (3): its composite's own, on placeholders."""

    def rule(t, out, c, d, x, y, wrt):
        from ..autodiff import vjp

        def form(ts, cs, ds, xs, ys):
            return vjp(_curvature_form(cs, ds, xs, ys, wrt), (xs, ys)[index - 2], ts)

        return _on_inputs(form, (structure.BROADCAST_LIKE(t, out) if t.type.shape != out.type.shape else t, c, d, x, y))

    return rule


# pow's second partials c d (d2 x**y / dx2, d2/dxdy, d2/dy2), private: one node each so that
# SymPy reads a plain formula.  As the composites' derivatives, the regimes' wheres became
# Piecewise whose conditions hold Piecewise, which SymPy folds (piecewise_fold,
# distribute_and_over_or): sd.to_sympy of d2/dx2 of x ** y ran for minutes.  It compiles as
# those composites' derivatives (the same kernel code as before; "xy" differentiates the
# x-slope in y, "yx" the y-slope in x, so that each shares its nodes with its slope's other
# partial), and its own derivatives (third order) are the composites' too.
_CURVATURE_CODE = ("(({0} * {1}) * ({3} * ({3} - 1) * {2} ** ({3} - 2) if '{wrt}' == 'xx' else "
                   "{2} ** {3} * math.log({2}) ** 2 if '{wrt}' == 'yy' else {2} ** ({3} - 1) * (1 + {3} * math.log({2}))))")
POW_CURVATURE = elementwise(
    "pow_curvature", _reference(_value_form, 1),
    (lambda t, out, c, d, x, y, wrt: POW_CURVATURE(t, d, x, y, wrt=wrt),
     lambda t, out, c, d, x, y, wrt: POW_CURVATURE(c, t, x, y, wrt=wrt), _third_order(2), _third_order(3)),
    _CURVATURE_CODE, (ANYWHERE, ANYWHERE, POSITIVE, ANYWHERE),
    doc="c * d * pow's second partial wrt ('xx', 'xy', 'yx', 'yy') (private).")
POW_CURVATURE.compiled_as = lambda c, d, x, y, wrt: _compiled(_curvature_value(c, d, x, y, wrt))

_CURVATURES = {"x": ("xx", "xy"), "y": ("yx", "yy")}

# pow's slopes d y x**(y - 1) (wrt="x") and d x**y log x (wrt="y"), private: one node each,
# spelled plainly for SymPy (the first derivative of x ** y printed as 2,800 characters of
# Piecewise), whose derivatives are pow_curvature nodes.  It compiles as the composite
# (_pow_slope's regimes, mul_log): value+grad's kernel code is unchanged (the same source).
POW_SLOPE = elementwise(
    "pow_slope", _reference(_slope_form, 0),
    (lambda t, out, d, x, y, wrt: POW_SLOPE(t, x, y, wrt=wrt),
     lambda t, out, d, x, y, wrt: POW_CURVATURE(t, d, x, y, wrt=_CURVATURES[wrt][0]),
     lambda t, out, d, x, y, wrt: POW_CURVATURE(t, d, x, y, wrt=_CURVATURES[wrt][1])),
    "({0} * ({2} * {1} ** ({2} - 1) if '{wrt}' == 'x' else {1} ** {2} * math.log({1})))", (ANYWHERE, POSITIVE, ANYWHERE),
    doc="d * pow's first partial wrt ('x' or 'y') (private).")
POW_SLOPE.compiled_as = lambda d, x, y, wrt: _compiled(_slope_value(d, x, y, wrt))


def _with_attrs(samples, name, values):
    """Each sample of ``samples`` once per value of the attribute ``name``."""
    return lambda rng: [(inputs, {name: value}) for value in values for inputs, _ in samples(rng)]


POW_SLOPE.samples = _with_attrs(POW_SLOPE.samples, "wrt", ("x", "y"))
POW_CURVATURE.samples = _with_attrs(POW_CURVATURE.samples, "wrt", ("xx", "xy", "yx", "yy"))


def _select(c, d):
    """d where c holds, 0 elsewhere (a mask, not a multiply: inf * 0 stays out)."""
    return F.where(c, d, 0)


# Ties give each side half, so maximum(x, x) has derivative 1 in x, like JAX.
def _max_dx(d, out, x, y):
    return F.where(F.equal(x, y), d * 0.5, _select(x > y, d))


def _min_dx(d, out, x, y):
    return F.where(F.equal(x, y), d * 0.5, _select(x < y, d))


MAXIMUM = elementwise("maximum", np.maximum, (_max_dx, lambda d, out, x, y: _max_dx(d, out, y, x)), "max({0}, {1})",
                      (ANYWHERE, ANYWHERE), dtype_rule=same_dtype)
MINIMUM = elementwise("minimum", np.minimum, (_min_dx, lambda d, out, x, y: _min_dx(d, out, y, x)), "min({0}, {1})",
                      (ANYWHERE, ANYWHERE), dtype_rule=same_dtype)


def _away_from_ties(samples, gap=0.1):
    """Redraw until every pair x, y (after broadcasting) is ``gap`` apart: the
    derivative jumps where x == y, and finite differences must not step across."""

    def draw(rng):
        while True:
            cases = samples(rng)
            if all(np.min(np.abs(np.subtract(*inputs))) > gap for inputs, _ in cases):
                return cases

    return draw


MAXIMUM.samples = _away_from_ties(MAXIMUM.samples)
MINIMUM.samples = _away_from_ties(MINIMUM.samples)

# --------------------------------------------------------- comparisons, logic

LESS = elementwise("less", np.less, None, "({0} < {1})", (ANYWHERE, ANYWHERE), dtype_rule=bool_result)
LESS_EQUAL = elementwise("less_equal", np.less_equal, None, "({0} <= {1})", (ANYWHERE, ANYWHERE), dtype_rule=bool_result)
GREATER = elementwise("greater", np.greater, None, "({0} > {1})", (ANYWHERE, ANYWHERE), dtype_rule=bool_result)
GREATER_EQUAL = elementwise("greater_equal", np.greater_equal, None, "({0} >= {1})", (ANYWHERE, ANYWHERE),
                            dtype_rule=bool_result)
EQUAL = elementwise("equal", np.equal, None, "({0} == {1})", (ANYWHERE, ANYWHERE), dtype_rule=bool_result)
NOT_EQUAL = elementwise("not_equal", np.not_equal, None, "({0} != {1})", (ANYWHERE, ANYWHERE), dtype_rule=bool_result)
LOGICAL_NOT = elementwise("logical_not", np.logical_not, None, "(not {0})", ("bool",), dtype_rule=bool_only)
# & and |, not and/or: no branch in a loop body (bools: the same values)
LOGICAL_AND = elementwise("logical_and", np.logical_and, None, "({0} & {1})", ("bool", "bool"), dtype_rule=bool_only)
LOGICAL_OR = elementwise("logical_or", np.logical_or, None, "({0} | {1})", ("bool", "bool"), dtype_rule=bool_only)

# ------------------------------------------------------------ select and cast


def _where_dtype(types, **attrs):
    cond, x, y = types
    if cond.dtype != "bool":
        raise DTypeError(f"the condition must be bool, got {cond.dtype}")
    return same_dtype((x, y))


WHERE = elementwise("where", np.where,
                    (None, lambda d, out, c, x, y: _select(c, d), lambda d, out, c, x, y: F.where(c, 0, d)),
                    "({1} if {0} else {2})", ("bool", ANYWHERE, ANYWHERE), dtype_rule=_where_dtype)


def _cast_dtype(types, dtype):
    return dtype


def _cast_derivative(d, out, x, dtype):
    # Derivatives only reach float -> float casts (int and bool nodes carry none);
    # the factory casts d to the dtype each direction needs.
    return d


def _cast_impl(x, dtype):
    return x.astype(dtype)


CAST = elementwise("cast", _cast_impl, (_cast_derivative,), "_cast_{dtype}({0})", (ANYWHERE,), dtype_rule=_cast_dtype,
                   doc="Convert to another dtype (NumPy astype).")
CAST.samples = lambda rng: [((rng.normal(size=(3,)),), {"dtype": "float32"}),
                            ((rng.normal(size=(2, 2)).astype(np.float32),), {"dtype": "float64"})]

STOP_GRADIENT = Op(
    "stop_gradient",
    infer=lambda types: types[0],
    impl=lambda x: x,
    vjp=(None,),
    jvp=lambda tangents, out, x: None,
    kind="elementwise",
    scalar_code="{0}",
    samples=_sampler((ANYWHERE,)),
    doc="Identity whose derivative is zero: no gradient flows through it.",
)
