"""Special functions (``sd.special``, after ``scipy.special``) that are primitives.

Why each is one:

- ``erf erfc gammaln``: one libm call each; nothing smaller computes them.
- ``polygamma(x, n)``: ONE op with an int attribute ``n``, whose derivative is
  ``polygamma(x, n + 1)``: so digamma (n = 0, the derivative of gammaln), trigamma and
  every higher derivative of gammaln exist, to any order, with no op per order.
- ``erfinv``: no libm function; its derivative sqrt(pi)/2 exp(erfinv(x)^2) is written
  with the op's own output.
- ``ndtr``: ``0.5 * erfc(-x / sqrt(2))`` rounds -x/sqrt(2), which costs up to x^2 eps
  relative in the lower tail (measured: 847 ulp at x = -37, 264 at -20.7; SciPy's own
  ndtr is as bad); Cody's algorithm keeps 3 ulp.
- ``ndtr_derivative(x, n)`` (private, n >= 1, derivative n + 1): ndtr's slope phi(x) and
  its derivatives (-1)^(n-1) He_(n-1)(x) phi(x).  As composites of exp, every derivative
  multiplies exp's output by x, and where phi is subnormal (|x| > 37.5) that output has
  lost its precision to the subnormal grid (ndtr'' 29 ulps at 37.7, 39 subnormal steps at
  38.5); the helper carries phi scaled by 2**600 there.  It compiles as the composite
  (vector-math exp) below |x| = 30.
- ``erf_derivative(x, n)`` (private, n >= 1, derivative n + 1): erf's slope 2/sqrt(pi)
  exp(-x*x) and its derivatives (-1)^(n-1) H_(n-1)(x) 2/sqrt(pi) exp(-x*x), for the same
  reason from |x| = 26.55 (erf'' 26-27 ulps, up to 48 subnormal steps, between 26.6 and
  27.3); the helper carries the Gaussian scaled by 2**1100 from |x| = 21.  The Hermite
  factors of both are products over their zeros (relative accuracy next to them).
- ``log_ndtr``: log(ndtr(x)) underflows below x = -38.5; the op is accurate at -40 and
  -1e300.  Its derivative phi(x)/Phi(x) is the op ``log_ndtr_prime``: the usual form
  exp(-x^2/2 - log_ndtr(x))/sqrt(2 pi) subtracts two numbers of size x^2/2, which is all
  rounding error at x = -1e8 (the ratio is about -x there); the op computes it with no
  exp at all in the lower tail.  Its own derivative -r (x + r) cancels for x << 0 (-1 at
  x = -1e15 came out 0), and so does every later one: ``log_ndtr_derivative(x, n)``
  (n >= 2, derivative n + 1, as polygamma) computes them from the Mills ratio's continued
  fraction and Chebyshev series (details in special_scalar).

The algorithms that libm lacks are in ``symdiff.ops.special_scalar``: plain Python that
the reference runs per element (``np.frompyfunc``) and Numba compiles for kernels.
Composites (in ``symdiff.special``): digamma (polygamma with n = 0), expit (sigmoid),
logit, xlogy, xlog1py.
"""

from __future__ import annotations

import math

import numpy as np

from .. import frontend as F
from ..errors import DTypeError
from . import special_scalar as scalar
from .elementwise import ANYWHERE, NumpySteps, elementwise, float_only



def _vectorized(function):
    """An elementwise NumPy reference from a scalar function of a Python float: computed
    in float64 and rounded to the input's dtype (float32 stays float32)."""
    ufunc = np.frompyfunc(function, 1, 1)

    def impl(x):
        x = np.asarray(x)
        return np.asarray(ufunc(x), dtype=np.float64).astype(x.dtype, copy=False)

    return impl


_lgamma = None


def _load_lgamma():
    """The C library's lgamma: 2.3 ulp at worst on our tests, where CPython's math.lgamma
    (its own Lanczos sum) is off by 21,166 ulp near its roots.  Falls back to math.lgamma
    where the C library cannot be loaded (its pole is then inf, as in C)."""
    try:
        import ctypes

        function = ctypes.CDLL(None).lgamma  # the running process has libm loaded
        function.restype, function.argtypes = ctypes.c_double, [ctypes.c_double]
        return lambda x: function(float(x))
    except (OSError, AttributeError, TypeError):
        def fallback(x):
            try:
                return math.lgamma(float(x))
            except ValueError:  # the poles 0, -1, -2...
                return math.inf

        return fallback


def _gammaln(x):
    global _lgamma
    if _lgamma is None:
        _lgamma = _vectorized(_load_lgamma())
    return _lgamma(x)


def _order_dtype(name, lowest):
    """The dtype rule of an op with a static int order attribute n >= lowest."""
    def rule(types, n=None):
        if not isinstance(n, int) or isinstance(n, bool) or n < lowest:
            raise DTypeError(f"{name} needs a static int order n >= {lowest}, got {n!r}")
        return float_only(types)

    return rule


def _of_order(scalar_fn):
    """The NumPy reference of an op with an order attribute: scalar_fn(n, v) per element."""
    return lambda x, n: _vectorized(lambda v: scalar_fn(n, v))(x)


def _order_samples(cases):
    """Samples from (shape, n, low, high) cases."""
    return lambda rng: [((rng.uniform(low, high, size=shape),), {"n": n}) for shape, n, low, high in cases]


# x * 2**-k + 0.75 rounds x to a multiple of 2**-20 (float64; 2**-8 in float32), the ulp of
# 0.75 being 2**-53 (2**-24): below |x| = 64 (16 in float32, beyond which float32's
# Gaussian is 0) that head has at most 26 (12) bits, so its square is exact.
_GRID_SCALES = {np.dtype(np.float64): 2.0 ** -33, np.dtype(np.float32): 2.0 ** -16}


def _square_rounding(x, ops=F):
    """x*x - fl(x*x), the rounding error of the square, for |x| <= 40, as a constant to
    differentiation (None for a dtype without a grid).  x = head + tail with the head on
    a grid short enough that head**2 is exact; then x*x - fl(x*x) = (head**2 - fl(x*x)) +
    tail (x + head), whose difference is exact (Sterbenz, wherever it matters) and whose
    product, below 2**-14 (2**-4 in float32), is rounded in its last bits only: right to
    2**-66 absolute (2**-27 in float32), far below what exp(-scale x*x) can see.

    Not Veltkamp's split x * 134217729 (Dekker's product), which is as exact: a constant
    of 1e8 shows up in every listing of the derivative (and once set the scale of value
    tables, where erf's slope exp(-9) at x = 3 printed as 0).  Here every constant and
    intermediate but x and its square is at most 1; the division by a power of two is exact
    (LLVM makes it a multiplication)."""
    grid = _GRID_SCALES.get(np.dtype(x.dtype))
    if grid is None:
        return None
    head = ((x * grid + 0.75) - 0.75) / grid
    return ops.stop_gradient((head * head - x * x) + (x - head) * (x + head))


def _gaussian(x, scale, ops=F):
    """exp(-scale * x**2), whose derivatives are 0 where it underflows rather than NaN:
    from |x| = 1.3e154 the exponent's slope -2 scale x t overflows (inf at x = inf; in
    forward mode from 9e307) and meets exp's 0.  Beyond |x| = 40, where the value is 0
    in every dtype for scale >= 1/2 (exp(-800)), x is replaced by 0 before the square
    (so no inf reaches a derivative) and the value 0 put back after, by a where or a
    factor of 0 selected on x alone (its own arithmetic, inf or NaN there, discarded), so
    every other point keeps the plain formula and all its derivatives.

    The square's rounding error r is corrected: exp(-scale fl(x*x)) alone has r times
    scale x**2 in relative terms (erf' 94 ulps at 26.3, ndtr'' 103 at 37.7, float32 ndtr'
    11 at 8.1).  The value is exp(-scale fl(x*x)) (1 - scale r), |r| <= 2**-43 (2**-17
    in float32), so the neglected second-order term is below 1e-26 (3e-11).  The factor is a
    constant to differentiation: every derivative of the product is exp's derivative
    times the same factor, which is the right correction for it too.

    The factor reads x through where(value >= 0, x, 0), which is x wherever the value is
    not NaN (and 0 where it is, which changes nothing): the code generator puts a node in
    the first loop where its inputs are ready, so this places the factor's dozen flops in
    the loop after exp's vector-math pass, which reads x and exp's output, rather than
    in the loop before it, which would store the factor in one more temporary (and, for
    ndtr, run the flops in that loop's scalar code beside the _ndtr call).  Value+grad
    on 1e6 elements, minimum of 30 calls, five alternating runs: erf 3.4-3.65 -> 3.5-3.6
    ms, ndtr 21.9-22.4 ms before and after; with the factor in the first loop, 3.9 and
    24.2 ms."""
    beyond = ops.greater(ops.abs(x), 40.0)
    inside = ops.where(beyond, 0, x)
    value = ops.exp(inside * inside * -scale)
    late = ops.where(ops.greater_equal(value, 0), x, 0)
    rounding = _square_rounding(late, ops)
    if rounding is None:
        return ops.where(beyond, 0, value)
    return value * ops.where(ops.greater(ops.abs(late), 40.0), 0, rounding * -scale + 1)


ERF = elementwise("erf", _vectorized(math.erf), (lambda d, out, x: d * ERF_DERIVATIVE(x, n=1),),
                  "math.erf(np.float64({0}))", (ANYWHERE,), doc="The error function.")
ERFC = elementwise("erfc", _vectorized(math.erfc), (lambda d, out, x: -(d * ERF_DERIVATIVE(x, n=1)),),
                   "math.erfc(np.float64({0}))", (ANYWHERE,), doc="1 - erf(x), accurate where erf(x) is near 1.")
ERFINV = elementwise("erfinv", _vectorized(scalar.erfinv), (lambda d, out, x: d * ERFINV_SLOPE(x),),
                     "_erfinv({0})", (((-0.9, 0.9),),), doc="The inverse of erf on [-1, 1].")
# A primitive, not d * exp(out * out) sqrt(pi)/2: exp(out**2) multiplies out's rounding by
# 2 out**2 (31 ulps at y = 1 - 2**-53; 19 in float32 at 0.99999994); its own derivative,
# 2 x s**2, is a product of accurate factors.
ERFINV_SLOPE = elementwise("erfinv_slope", _vectorized(scalar.erfinv_slope),
                           (lambda d, out, y: d * ((ERFINV(y) * 2) * out * out),), "_erfinv_slope({0})",
                           (((-0.9, 0.9),),), doc="d/dy erfinv(y) (private), with erfinv's rounding corrected.")
GAMMALN = elementwise("gammaln", _gammaln, (lambda d, out, x: d * POLYGAMMA(x, n=0),), "math.lgamma(np.float64({0}))",
                      (((0.3, 4.0), (-2.7, -2.3)),), doc="log|Gamma(x)|; inf at the poles 0, -1, -2...")
POLYGAMMA = elementwise("polygamma", _of_order(scalar.polygamma), (lambda d, out, x, n: d * POLYGAMMA(x, n=n + 1),),
                        "_polygamma({n}, {0})", (((0.4, 4.0),),), dtype_rule=_order_dtype("polygamma", 0),
                        doc="The n-th derivative of digamma (attribute n >= 0); its derivative is polygamma n + 1.")


POLYGAMMA.samples = _order_samples([((), 0, 0.4, 4.0), ((4,), 1, 0.4, 4.0), ((3, 4), 2, 0.4, 4.0),
                                    ((4,), 0, -1.8, -1.2), ((2, 3), 3, -2.8, -2.2)])

NDTR = elementwise("ndtr", _vectorized(scalar.ndtr), (lambda d, out, x: d * NDTR_DERIVATIVE(x, n=1),),
                   "_ndtr({0})", (((-4.0, 4.0),),), doc="The standard normal CDF.")


def _gaussian_slope(x, erf):
    """phi(x), ndtr's slope (or 2/sqrt(pi) exp(-x*x), erf's), as the composite of
    ``_gaussian`` (the vector-math exp in kernels; NumPy's steps in the reference)."""
    scale, factor = (1.0, scalar.TWO_OVER_SQRT_PI) if erf else (0.5, scalar.INV_SQRT_2PI)
    if isinstance(x, np.ndarray):
        with np.errstate(all="ignore"):
            return _gaussian(x, scale, NumpySteps) * x.dtype.type(factor)
    return _gaussian(x, scale) * factor


def _hermite_zeros(k, physicists, dtype):
    """The positive zeros of He_k (H_k) as (high, low) pairs in ``dtype`` (high + low the
    zero to twice the dtype's precision), from ``special_scalar.HERMITE_ZEROS``."""
    start = scalar.hermite_zeros_start(k, physicists)
    pairs = []
    for j in range(start, start + k // 2):
        high, low = scalar.HERMITE_ZEROS[2 * j], scalar.HERMITE_ZEROS[2 * j + 1]
        if np.dtype(dtype) == np.float32:
            rounded = float(np.float32(high))
            high, low = rounded, float(np.float32((high - rounded) + low))  # high - rounded is exact
        pairs.append((high, low))
    return pairs


def _hermite_steps(x, k, physicists):
    """(P, odd): He_k(x) (H_k(x) if ``physicists``) is P * x if ``odd`` else P, on Exprs or
    NumPy arrays.  P: over its zeros, ((x - high) - low) ((x + high) + low) per pair, up to
    degree HERMITE_FACTORED (He_2 = (x - 1)(x + 1), not x*x - 1, which cancels at +-1:
    ndtr's third derivative was 13 ulps off there, 28.6 in float32), the factor x of an odd
    degree left for the caller to multiply last (at a subnormal x every product after it
    rounds on the subnormal grid again: erf's fourth derivative at 5e-324 was 9 steps off);
    the three-term recurrence beyond (odd False)."""
    if k > scalar.HERMITE_FACTORED:
        two = 2.0 if physicists else 1.0
        previous, value = 1.0, x * two
        for j in range(1, k):
            previous, value = value, x * value * two - previous * (two * j)
        return value, False
    value = None
    for high, low in (_hermite_zeros(k, physicists, x.dtype) if k >= 2 else []):
        below, above = (x - high, x + high) if low == 0 else ((x - high) - low, (x + high) + low)
        pair = below * above
        value = pair if value is None else value * pair
    scale = 2.0 ** k if physicists else 1.0
    value = scale if value is None else (value * scale if physicists else value)
    return value, k % 2 == 1


# Orders from 2 take the composite below |x| = 30 for ndtr, 21 for erf (10 and 7 in float32),
# where the Gaussian is far from the subnormal range, and the scalar helper beyond: the helper
# for every element made ndtr's HVP on 1e6 elements 2.7 times slower (5.4 -> 14.5 ms; a scalar
# exp pair per element against the vector-math pass).  The helper is fed 41 (its early return)
# where not taken.
_HELPER_FROM = {False: {np.dtype(np.float64): 30.0, np.dtype(np.float32): 10.0},
                True: {np.dtype(np.float64): scalar.ERF_SCALED_FROM, np.dtype(np.float32): 7.0}}


def _gaussian_derivative_steps(x, n, erf):
    """Order n >= 1 of ndtr (of erf), as kernels compute it (Exprs) or as the reference does
    (NumPy)."""
    slope = _gaussian_slope(x, erf)
    if n == 1:
        return slope
    polynomial, odd = _hermite_steps(x, n - 1, erf)
    near = (polynomial * slope) * x if odd else polynomial * slope
    near = -near if n % 2 == 0 else near
    start = _HELPER_FROM[erf].get(np.dtype(x.dtype), 0.0)
    helper = scalar.erf_derivative if erf else scalar.ndtr_derivative
    if isinstance(x, np.ndarray):
        far = ~(np.abs(x) < start)  # NaN too: the helper gives NaN
        if np.any(far):
            near = np.array(near, copy=True)
            near[far] = _vectorized(lambda v: helper(n, v))(x[far])
        return near
    far = F.greater_equal(F.abs(x), start)
    op = ERF_DERIVATIVE if erf else NDTR_DERIVATIVE
    return F.where(far, op(F.where(far, x, 41.0), n=n), near)


def _ndtr_derivative_steps(x, n):
    return _gaussian_derivative_steps(x, n, False)


def _erf_derivative_steps(x, n):
    return _gaussian_derivative_steps(x, n, True)


def _numpy_of(steps):
    def impl(x, n):
        x = np.asarray(x)
        with np.errstate(all="ignore"):
            return steps(x, n)

    return impl


# A primitive (private, as log_ndtr_derivative), for its derivative: the order n + 1 is
# (-1)^n He_n(x) phi(x) computed with phi scaled by 2**600 where it is subnormal, rounded
# once.  The composite's derivative multiplies exp's subnormal output by x: ndtr'' was 29
# ulps off at 37.7, and subnormal steps off at +-38.5.  It compiles as the composite
# (``compiled_as``) but beyond |x| = 30 for orders from 2, so ndtr's value+grad keeps its
# kernel (the vector-math exp).
NDTR_DERIVATIVE = elementwise(
    "ndtr_derivative", _numpy_of(_ndtr_derivative_steps), (lambda d, out, x, n: d * NDTR_DERIVATIVE(x, n=n + 1),),
    "_ndtr_derivative({n}, {0})", (((-4.0, 4.0),),), dtype_rule=_order_dtype("ndtr_derivative", 1),
    doc="The n-th derivative of ndtr (private, attribute n >= 1): phi(x) for n = 1; its derivative is order n + 1.",
)
NDTR_DERIVATIVE.compiled_as = _ndtr_derivative_steps
NDTR_DERIVATIVE.samples = _order_samples([((), 1, -4.0, 4.0), ((4,), 2, -4.0, 4.0), ((3, 4), 3, -6.0, 6.0),
                                          ((5,), 2, -40.0, 40.0)])
# A primitive (private) for the same reason as ndtr_derivative: erf's order n + 1 is
# (-1)^n H_n(x) 2/sqrt(pi) exp(-x*x), and as a composite of exp every derivative multiplies
# exp's output by 2x, which has lost its precision to the subnormal grid from |x| = 26.55
# (erf'' 26-27 ulps between 26.6 and 27.3, up to 48 subnormal steps); the helper carries the
# Gaussian scaled by 2**1100 there.  erfc's derivatives are its negatives.  It compiles as
# the composite, the helper only for orders from 2 beyond |x| = 21 (7 in float32), so erf's
# value+grad keeps its kernel.
ERF_DERIVATIVE = elementwise(
    "erf_derivative", _numpy_of(_erf_derivative_steps), (lambda d, out, x, n: d * ERF_DERIVATIVE(x, n=n + 1),),
    "_erf_derivative({n}, {0})", (((-4.0, 4.0),),), dtype_rule=_order_dtype("erf_derivative", 1),
    doc="The n-th derivative of erf (private, attribute n >= 1): 2/sqrt(pi) exp(-x*x) for n = 1; its derivative "
        "is order n + 1.  A primitive so that orders from 2 carry the Gaussian scaled where exp(-x*x) is "
        "subnormal (as a composite of exp they multiply its subnormal output: erf'' 26-30 ulps at 26.6-27.3).",
)
ERF_DERIVATIVE.compiled_as = _erf_derivative_steps
ERF_DERIVATIVE.samples = _order_samples([((), 1, -4.0, 4.0), ((4,), 2, -4.0, 4.0), ((3, 4), 3, -5.0, 5.0),
                                         ((5,), 2, -28.0, 28.0)])
LOG_NDTR = elementwise("log_ndtr", _vectorized(scalar.log_ndtr), (lambda d, out, x: d * LOG_NDTR_PRIME(x),),
                       "_log_ndtr({0})", (((-8.0, 3.0),),), doc="log of the standard normal CDF, for any x.")
LOG_NDTR_PRIME = elementwise(
    "log_ndtr_prime", _vectorized(scalar.log_ndtr_prime), (lambda d, out, x: d * LOG_NDTR_DERIVATIVE(x, n=2),),
    "_log_ndtr_prime({0})", (((-5.0, 3.0),),),
    doc="phi(x)/Phi(x), the derivative of log_ndtr, without cancellation (about -x for very negative x).",
)


LOG_NDTR_DERIVATIVE = elementwise(
    "log_ndtr_derivative", _of_order(scalar.log_ndtr_derivative), (lambda d, out, x, n: d * LOG_NDTR_DERIVATIVE(x, n=n + 1),),
    "_log_ndtr_derivative({n}, {0})", (((-8.0, 3.0),),), dtype_rule=_order_dtype("log_ndtr_derivative", 2),
    doc="The n-th derivative of log_ndtr (attribute n >= 2), accurate for x << 0, where composites of "
        "phi/Phi cancel; its derivative is order n + 1.",
)


LOG_NDTR_DERIVATIVE.samples = _order_samples([((), 2, -8.0, 3.0), ((4,), 3, -8.0, 3.0), ((3, 4), 2, -8.0, 3.0),
                                              ((5,), 3, -40.0, -3.0)])
