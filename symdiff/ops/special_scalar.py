"""Scalar algorithms for the special functions the C math library lacks.

Plain Python on floats, written so that Numba compiles the same source
(``symdiff.backends.special_math`` jits these functions for generated kernels) and
``np.frompyfunc`` runs it for the NumPy reference evaluator: one algorithm, so the
two backends agree to the last bit or two.  The rules that keeps both working:

- every function turns its argument into a Python float first (a float32 argument is
  computed in float64 and rounded by the caller, as the kernels do);
- special inputs (NaN, infinities, poles, the ends of a domain) are answered before
  any arithmetic, so plain Python never divides by zero or overflows ``math.exp``
  (which would raise where C returns inf);
- ``math.floor`` only sees numbers below 2**52 (Numba returns an int64 from it).

Algorithms and accuracy (measured against mpmath at 40 digits in
``tests/test_math_ops.py``):

- ``ndtr``, ``log_ndtr``, ``log_ndtr_prime`` (phi/Phi): W. J. Cody's rational
  approximations of the normal distribution (Math. Comp. 1969; ACM TOMS 715, 1993),
  with exp(-x*x/2) split so that x*x is exact (Cody's own trick); the log and the
  ratio never form the underflowing Phi(x), so they hold at x = -40 and -1e300.
- ``digamma``: on [1, 2] a Taylor series around the positive root 1.4616...
  (coefficients psi^(k)(x0)/k! from mpmath), so the root keeps relative accuracy;
  (0, 1) one step up and (2, 10) exact steps down into [1, 2]; the asymptotic
  series from 10 on; reflection for x < 0.
- ``polygamma`` (n >= 1): (-1)^(n+1) n! zeta(n+1, x) with the Euler-Maclaurin
  Hurwitz zeta of Cephes; reflection for x < 0 with the n-th derivative of cot
  as a polynomial in cot.
- ``erfinv``: Giles' single-precision polynomials as the first guess (1.25e-7) and one
  Halley step on erf, or on erfc with the exact 1 - |y| for |y| > 0.5; beyond
  |y| = 1 - 5.6e-8 Winitzki's closed form and three steps, so the tail keeps relative
  accuracy up to |y| = 1 - 2**-53.
"""

from __future__ import annotations

import math

import numpy as np

INF = float("inf")
NAN = float("nan")
PI = math.pi
SQRT_PI = math.sqrt(math.pi)
SQRT_HALF = math.sqrt(0.5)
INV_SQRT_2PI = 0.3989422804014327  # 1/sqrt(2 pi): the normal density at 0

# ------------------------------------------------------------------- planar


def over_squared_norm(a, b):
    """a / (a*a + b*b), the slope of arctan2, on the pair scaled by m = max(|a|, |b|):
    the squares neither overflow (a = 1e200) nor underflow (a = b = 1e-310, where the
    quotient is 5e309: inf, as it should be).  0 (with a's sign) at an infinite
    coordinate, NaN at the origin and at NaN."""
    a = float(a)
    b = float(b)
    if a != a or b != b:
        return NAN
    if a == INF or a == -INF or b == INF or b == -INF:
        return math.copysign(0.0, a)
    m = max(abs(a), abs(b))
    if m == 0.0:
        return NAN
    a_scaled = a / m
    b_scaled = b / m
    return (a_scaled / (a_scaled * a_scaled + b_scaled * b_scaled)) / m


def over_hypot(a, b):
    """a / hypot(a, b), hypot's slope, on the pair scaled by m = max(|a|, |b|) with an
    exactly rounded square root (the same bits in both backends; libm's and CPython's
    hypot differ): no quotient of subnormals, no overflow.  0 at the origin (hypot's
    subgradient convention), +-1 or 0 at one infinite coordinate, sign(a)/sqrt(2) at two;
    NaN at NaN."""
    a = float(a)
    b = float(b)
    if a != a or b != b:
        return NAN
    a_infinite = a == INF or a == -INF
    b_infinite = b == INF or b == -INF
    if a_infinite or b_infinite:
        if a_infinite and b_infinite:
            return math.copysign(SQRT_HALF, a)
        return math.copysign(1.0 if a_infinite else 0.0, a)
    m = max(abs(a), abs(b))
    if m == 0.0:
        return 0.0
    a_scaled = a / m
    b_scaled = b / m
    return a_scaled / math.sqrt(a_scaled * a_scaled + b_scaled * b_scaled)


# ----------------------------------------------------------- normal distribution

# Cody's coefficients (ANORM, ACM TOMS 715).  |x| <= CENTRAL: Phi(x) = 1/2 + x A(x*x)/B(x*x).
CENTRAL = 0.66291
_A = (2.2352520354606839287, 161.02823106855587881, 1067.6894854603709582, 18154.981253343561249,
      0.065682337918207449113)
_B = (47.20258190468824187, 976.09855173777669322, 10260.932208618978205, 45507.789335026729956)
# CENTRAL < y <= ROOT32: Phi(-y) = exp(-y*y/2) C(y)/D(y)
ROOT32 = 5.656854248
_C = (0.39894151208813466764, 8.8831497943883759412, 93.506656132177855979, 597.27027639480026226,
      2494.5375852903726711, 6848.1904505362823326, 11602.651437647350124, 9842.7148383839780218,
      1.0765576773720192317e-08)
_D = (22.266688044328115691, 235.38790178262499861, 1519.377599407554805, 6485.558298266760755,
      18615.571640885098091, 34900.952721145977266, 38912.003286093271411, 19685.429676859990727)
# y > ROOT32: Phi(-y) = exp(-y*y/2) (1/sqrt(2 pi) - z P(z)/Q(z)) / y with z = 1/(y*y)
_P = (0.21589853405795699, 0.1274011611602473639, 0.022235277870649807, 0.001421619193227893466,
      2.9112874951168792e-05, 0.02307344176494017303)
_Q = (1.28426009614491121, 0.468238212480865118, 0.0659881378689285515, 0.00378239633202758244,
      7.29751555083966205e-05)
EXACT_SQUARE = 4194304.0  # 2**22: below it, floor(16 y)/16 has at most 26 bits and its square is exact


def _central(x):
    """Phi(x) - 1/2 for |x| <= CENTRAL."""
    xsq = x * x
    num = _A[4] * xsq
    den = xsq
    for i in range(3):
        num = (num + _A[i]) * xsq
        den = (den + _B[i]) * xsq
    return x * (num + _A[3]) / (den + _B[3])


def _tail_ratio(y):
    """Phi(-y) * exp(y*y/2) for y > CENTRAL (inf gives 0): smooth, never underflows."""
    if y <= ROOT32:
        num = _C[8] * y
        den = y
        for i in range(7):
            num = (num + _C[i]) * y
            den = (den + _D[i]) * y
        return (num + _C[7]) / (den + _D[7])
    if y == INF:
        return 0.0
    z = 1.0 / (y * y)
    num = _P[5] * z
    den = z
    for i in range(4):
        num = (num + _P[i]) * z
        den = (den + _Q[i]) * z
    return (INV_SQRT_2PI - z * (num + _P[4]) / (den + _Q[4])) / y


def _half_square(y):
    """y*y/2 as (exact part, small rest) for 0 <= y < EXACT_SQUARE."""
    s = math.floor(y * 16.0) / 16.0
    return 0.5 * (s * s), 0.5 * ((y - s) * (y + s))


def _exp_half_square(y):
    """exp(-y*y/2) for y >= 0, without the rounding error of y*y (relative ~1 ulp)."""
    if y > 40.0:  # exp(-800) underflows; also keeps inf out of floor
        return 0.0
    big, rest = _half_square(y)
    return math.exp(-big) * math.exp(-rest)


def ndtr(x):
    """The standard normal CDF Phi(x), accurate in both tails."""
    x = float(x)
    if x != x:
        return x
    y = abs(x)
    if y <= CENTRAL:
        return 0.5 + _central(x)
    tail = _exp_half_square(y) * _tail_ratio(y)
    return tail if x < 0 else 1.0 - tail


def log_ndtr(x):
    """log(Phi(x)): -x*x/2 + log(tail ratio) below -CENTRAL, so x = -40 or -1e300 is fine."""
    x = float(x)
    if x != x:
        return x
    if x < -CENTRAL:
        y = -x
        if y < EXACT_SQUARE:
            big, rest = _half_square(y)
            return (-big - rest) + math.log(_tail_ratio(y))
        if y == INF:
            return -INF
        return -0.5 * y * y + math.log(_tail_ratio(y))  # overflows to -inf where the value does
    if x <= CENTRAL:
        return math.log(0.5 + _central(x))
    return math.log1p(-(_exp_half_square(x) * _tail_ratio(x)))


# Above x = 30 the density phi(x) = exp(-x*x/2) / sqrt(2 pi) heads for the subnormal range
# (from 37.5), where its rounding to the subnormal grid is most of its precision and every
# product x^k phi(x) built on it keeps that error (log Phi's 2nd derivative -x phi(x) was 9
# ulps off at 37.7, the 3rd 224 at 37.9, the 4th 8,500).  There the density is carried as
# phi(x) 2**600, normal up to x = 40 (6e-168), and a result is scaled back by 2**-600 once,
# at the end (exact, or one rounding to the subnormal grid).  512 - x*x/2 is exact (the
# head of x*x/2 is a multiple of 2**-9 below 800), and exp(-512) 2**600 / sqrt(2 pi) is one
# constant.
SCALED_DENSITY_FROM = 30.0
_SCALED_DENSITY_CONSTANT = 7.246573971388966e-43  # exp(-512) 2**600 / sqrt(2 pi), rounded from mpmath
_DENSITY_UNSCALE = 2.0 ** -600


def _scaled_density(y):
    """phi(y) 2**600 for SCALED_DENSITY_FROM <= y <= 40, within ~2 ulps (normal there)."""
    big, rest = _half_square(y)
    return _SCALED_DENSITY_CONSTANT * (math.exp(512.0 - big) * math.exp(-rest))


def log_ndtr_prime(x):
    """d/dx log(Phi(x)) = phi(x)/Phi(x): 1/(sqrt(2 pi) tail ratio) below -CENTRAL (no
    exp at all: -x at x = -1e300), phi(x)/Phi(x) elsewhere (phi scaled by 2**600 from
    x = 30 to 40, so the subnormal result is rounded once)."""
    x = float(x)
    if x != x:
        return x
    if x < -CENTRAL:
        if x == -INF:
            return INF
        return INV_SQRT_2PI / _tail_ratio(-x)
    if SCALED_DENSITY_FROM <= x <= 40.0:
        return (_scaled_density(x) / (1.0 - _exp_half_square(x) * _tail_ratio(x))) * _DENSITY_UNSCALE
    density = INV_SQRT_2PI * _exp_half_square(abs(x))
    if x <= CENTRAL:
        return density / (0.5 + _central(x))
    return density / (1.0 - _exp_half_square(x) * _tail_ratio(x))


# Hermite polynomials as products over their zeros, so that a derivative of phi or of erf
# keeps relative accuracy next to a zero of its polynomial factor: He_2 = x*x - 1 formed by
# the recurrence cancels at x = +-1 (Phi''' 13 ulps there, 28.6 in float32), (x - 1)(x + 1)
# does not (x - 1 is exact there, Sterbenz).  The positive zeros r of He_k (probabilists')
# and H_k (physicists') for k = 2..HERMITE_FACTORED, each as (high, low) with r = high + low
# to 1e-33 (mpmath at 60 digits; ``tests/test_math_ops.py`` recomputes them); the factor of
# +-r is ((x - high) - low) ((x + high) + low).  He_k = x^(k mod 2) prod (x^2 - r^2),
# H_k = 2^k times the same over its own zeros.  Higher degrees take the recurrence (absolute
# accuracy next to their zeros only).
HERMITE_FACTORED = 8
HERMITE_ZEROS = (
    # He_2 .. He_8
    1.0, 0.0,
    1.7320508075688772, 1.0035084221806903e-16,
    0.7419637843027258, 5.369440972972686e-17, 2.3344142183389773, -9.219523906702006e-17,
    1.355626179974266, -6.65847569665231e-17, 2.8569700138728056, 7.367188270201619e-17,
    0.6167065901925941, 4.592367848488691e-17, 1.8891758777537107, 2.266575433448673e-17,
    3.324257433552119, 6.239846835258603e-17,
    1.1544053947399682, -4.4196264373219094e-17, 2.366759410734541, 1.8609102835270645e-16,
    3.7504397177257425, -2.1595014704520146e-16,
    0.5390798113513751, 4.805903747363392e-17, 1.636519042435108, 7.020217190860664e-17,
    2.8024858612875416, 7.494802350891871e-17, 4.1445471861258945, -1.236391832301139e-16,
    # H_2 .. H_8
    0.7071067811865476, -4.833646656726457e-17,
    1.224744871391589, 1.084308259051623e-16,
    0.5246476232752904, -3.5577681434244456e-17, 1.6506801238857844, 1.1094631065375309e-16,
    0.9585724646138185, -1.881088219589814e-18, 2.0201828704560856, 5.5313611163312725e-17,
    0.4360774119276165, -8.223880658256676e-19, 1.335849074013697, -6.3470824414533e-17,
    2.3506049736744923, -5.895378482846031e-17,
    0.8162878828589647, -3.430255316828997e-17, 1.6735516287674714, 1.1952706575843276e-17,
    2.6519613568352334, 1.1810654954254138e-16,
    0.3811869902073221, 9.605563988948245e-18, 1.1571937124467802, 4.0852235018543894e-17,
    1.981656756695843, -3.218352557207254e-17, 2.930637420257244, -3.3156016711474214e-17,
)


def hermite_zeros_start(k, physicists):
    """Index (in pairs) of the first positive zero of He_k (H_k) in HERMITE_ZEROS, 2 <= k <= 8."""
    start = 0
    for degree in range(2, k):
        start += degree // 2
    if physicists:
        for degree in range(2, HERMITE_FACTORED + 1):
            start += degree // 2
    return start


def hermite(k, x, physicists):
    """He_k(x), or H_k(x) if ``physicists``, for k >= 0: a product over its zeros up to
    degree HERMITE_FACTORED (relative accuracy next to each zero), the three-term recurrence
    beyond."""
    if k > HERMITE_FACTORED:
        two = 2.0 if physicists else 1.0
        previous = 1.0
        value = two * x
        for j in range(1, k):
            previous, value = value, two * x * value - two * j * previous
        return value
    value = x if k % 2 == 1 else 1.0
    start = hermite_zeros_start(k, physicists) if k >= 2 else 0
    for j in range(start, start + k // 2):
        high = HERMITE_ZEROS[2 * j]
        low = HERMITE_ZEROS[2 * j + 1]
        value = value * (((x - high) - low) * ((x + high) + low))
    if physicists:
        value = value * 2.0 ** k
    return value


def _signed_hermite(n, x, physicists):
    """(-1)^(n-1) times the Hermite polynomial of degree n - 1 at x (the physicists' H or
    the probabilists' He): the polynomial factor of the n-th derivative of erf or Phi."""
    factor = hermite(n - 1, x, physicists)
    return -factor if n % 2 == 0 else factor


def ndtr_derivative(n, x):
    """The n-th derivative of Phi for n >= 1: (-1)^(n-1) He_(n-1)(x) phi(x), He the
    probabilists' Hermite polynomials (``hermite``: factored over its zeros up to degree 8).
    phi is exp(-x*x/2) with x*x split exactly, and from |x| = 30 on phi 2**600 with the
    product scaled back once: the composite -x exp(-x*x/2) / sqrt(2 pi) rounds the density to
    the subnormal grid first (Phi'' 29 ulps at 37.7).  0 beyond |x| = 40 (every order below
    8 underflows there) and at +-inf."""
    x = float(x)
    if x != x:
        return x
    y = abs(x)
    if y > 40.0:
        return 0.0
    factor = _signed_hermite(n, x, False)
    if y >= SCALED_DENSITY_FROM:
        return (factor * _scaled_density(y)) * _DENSITY_UNSCALE
    return factor * (INV_SQRT_2PI * _exp_half_square(y))


# erf's derivatives (-1)^(n-1) H_(n-1)(x) 2/sqrt(pi) exp(-x*x): exp(-x*x) is subnormal from
# |x| = 26.55, where erf'' = -2x erf' is still normal (or many subnormal steps large) and the
# composite multiplied exp's subnormal output by 2x: 26-27 ulps (up to 48 subnormal steps)
# between 26.6 and 27.3.  From |x| = ERF_SCALED_FROM the Gaussian is carried as
# 2/sqrt(pi) exp(-x*x) 2**1100 = C exp(1000 - x*x), normal up to |x| = 40 (exp(-600)), and
# scaled back by 2**-550 twice (the first exact wherever the result is not 0).  x*x = s*s +
# (x - s)(x + s) with s = x rounded down to a multiple of 2**-20: s has at most 26 bits
# below 64, so s*s and 1000 - s*s are exact, and the rest is below 2**-13 (its rounding is
# below 2**-66 absolute).
ERF_SCALED_FROM = 21.0
TWO_OVER_SQRT_PI = 1.1283791670955126  # 2/sqrt(pi)
_ERF_SCALED_CONSTANT = 7.779799175627849e-104  # 2/sqrt(pi) exp(-1000) 2**1100, rounded from mpmath
_ERF_UNSCALE = 2.0 ** -550


def _fine_square(y):
    """y*y as (exact part, small rest) for 0 <= y < 64."""
    s = math.floor(y * 1048576.0) / 1048576.0
    return s * s, (y - s) * (y + s)


def erf_derivative(n, x):
    """The n-th derivative of erf for n >= 1: (-1)^(n-1) H_(n-1)(x) 2/sqrt(pi) exp(-x*x), H
    the physicists' Hermite polynomials (``hermite``), exp(-x*x) with x*x split exactly and,
    from |x| = ERF_SCALED_FROM on, scaled by 2**1100 and scaled back once (see above).  0
    beyond |x| = 40 (every order below ~190 underflows there) and at +-inf."""
    x = float(x)
    if x != x:
        return x
    y = abs(x)
    if y > 40.0:
        return 0.0
    factor = _signed_hermite(n, x, True)
    big, rest = _fine_square(y)
    if y >= ERF_SCALED_FROM:
        scaled = _ERF_SCALED_CONSTANT * (math.exp(1000.0 - big) * math.exp(-rest))
        return ((factor * scaled) * _ERF_UNSCALE) * _ERF_UNSCALE
    return factor * (TWO_OVER_SQRT_PI * (math.exp(-big) * math.exp(-rest)))


# log Phi's derivatives of order n >= 2.  As composites of r = phi/Phi (r' = -r (x + r))
# they cancel for x << 0: -r (x + r) subtracts two numbers near -x, r (s^2 + r s - 1) with
# s = x + r three numbers near 1 (384 and 3e7 ulps at x = -20, nothing right at -1e15).
# Below -3 they come from the tails D_k = t + k / D_{k+1} (t = -x) of Laplace's continued
# fraction of the Mills ratio, Phi(x)/phi(x) = 1 / D_1, which has no cancellation: r = D_1
# and s = 1 / D_2, so
#     log Phi'' = -D_1 / D_2,   log Phi''' = 2 (D_1 / D_2) (3 / D_4 - 2 / D_3) / (D_2^2 D_3),
# and higher orders from the Taylor coefficients of D_1(t + h), carried through the same
# recurrence.  900 / t^2 + 20 terms reach 1 ulp (the fraction converges like
# exp(-2 t sqrt(terms))).  On [-3, 1] (orders 2, 3) and [-3, 3] (orders 4, 5), where it
# would need thousands of terms, Chebyshev series on [-3, -1], [-1, 1] and [1, 3] computed
# with mpmath at 60 digits (``tests/test_math_ops.py`` recomputes them), of the function
# divided by (x - z) for each zero z within 0.5 of the piece, so that the value keeps
# relative accuracy next to its zeros (L5(0) = -0.0044: 24 ulps otherwise).  Elsewhere
# (above 1 or 3, and orders above 5 on [-3, 3]) the Riccati equation gives r's derivatives
# as composites, which do not cancel there but lose relative accuracy next to zeros (order
# 8 has one at 3.3), and orders above 5 on [-3, 3] only keep absolute accuracy.
# (order, from, to) of each series, orders 2 and 3 on [-3, 1] only
LOG_NDTR_SERIES_LAYOUT = ((2, -3.0, -1.0), (2, -1.0, 1.0), (3, -3.0, -1.0), (3, -1.0, 1.0),
                          (4, -3.0, -1.0), (4, -1.0, 1.0), (4, 1.0, 3.0),
                          (5, -3.0, -1.0), (5, -1.0, 1.0), (5, 1.0, 3.0))
# order n's series start at index _LOG_NDTR_FIRST[n - 2]
_LOG_NDTR_FIRST = tuple(min(k for k, (order, _, _) in enumerate(LOG_NDTR_SERIES_LAYOUT) if order == n)
                        for n in sorted({order for order, _, _ in LOG_NDTR_SERIES_LAYOUT}))
# series k: _LOG_NDTR_SERIES[_LOG_NDTR_STARTS[k]:_LOG_NDTR_STARTS[k + 1]]; its zeros, as
# (high, low) pairs: _LOG_NDTR_ROOTS[2 j], _LOG_NDTR_ROOTS[2 j + 1] for j in
# range(_LOG_NDTR_ROOT_STARTS[k], _LOG_NDTR_ROOT_STARTS[k + 1])
_LOG_NDTR_SERIES = (
    -1.7510993785428701, 0.06303380509782242, 0.010275366627761004, 0.0012321510567442867,
    0.00010347564288006263, 3.4602981523666037e-06, -7.036820660658604e-07, -1.7510501168533827e-07,
    -2.307870990778659e-08, -1.9689275821773876e-09, -6.386513329723148e-11, 1.3349087401284611e-11,
    3.2100118684182857e-12, 4.1050634351243785e-13, 3.380018584921857e-14, 9.903603477321388e-16,
    -2.3604719518322657e-16, -5.3837219913837085e-17, -6.670681592755016e-18, -5.305151479562172e-19,
    -1.2206385257688954, 0.21620490441488316, 0.025504017639483595, -0.000800244444783849,
    -0.0007951683035787386, -0.00011371352131803999, 1.8691380925274446e-06, 3.360962556798538e-06,
    5.329195112720237e-07, 4.9651405517092085e-09, -1.2766390000866224e-08, -2.317597466965519e-09,
    -7.840101575722226e-11, 4.37587764526693e-11, 9.34580761442719e-12, 5.233342931849105e-13,
    -1.3601489544133342e-13, -3.5353599529564154e-14, -2.710252053652112e-15, 3.7882004116562985e-16,
    1.2671634478104309e-16, 1.2278297633453403e-17, -8.99677956585932e-19, -4.33121004812195e-19,
    -5.102547212415979e-20, 0.1334926329111551, 0.04192045701060943, 0.007425022715510261,
    0.0008189904995654161, 3.211637504454022e-05, -8.814643475084974e-06, -2.4866064791258152e-06,
    -3.7045868229464976e-07, -3.51363155310796e-08, -1.1993237700642725e-09, 3.0438094811337393e-10,
    7.797889588035715e-11, 1.0701025285112489e-11, 9.38611038318295e-13, 2.7860353789105752e-14,
    -7.794165459825032e-15, -1.85045664285841e-15, -2.406552139617821e-16, -1.9991165787949483e-17,
    -5.106766226015561e-19, 1.6840983438677143e-19, 3.755497605227414e-20, 4.690859779416969e-21,
    0.42651829996130475, 0.09568542354640835, -0.005891508868461572, -0.006330647011526028,
    -0.0010900421997584776, 3.0699417103880384e-05, 4.709301342192225e-05, 8.269759993551051e-06,
    3.953762674271746e-08, -2.5695218680132956e-07, -4.98349031880483e-08, -1.6243867840050676e-09,
    1.1522410851931166e-09, 2.5723759416826656e-10, 1.4512897423714771e-11, -4.4450190356947985e-12,
    -1.187131371832545e-12, -9.254238157212958e-14, 1.489101217263598e-14, 5.026692359346451e-15,
    4.958506083420489e-16, -4.196143189527216e-17, -1.9837892262994e-17, -2.375601805491153e-18,
    8.567395836696961e-20, 7.362085646851673e-20, 0.0886615043141781, 0.02992662674876309, 0.004820590292959232,
    0.0002265358867220464, -9.335270443326469e-05, -3.0395113634275393e-05, -5.2062696824149415e-06,
    -5.558358847656087e-07, -1.984813028984525e-08, 6.345163731664874e-09, 1.7396975713116566e-09,
    2.5754476939739517e-10, 2.4161861943799384e-11, 7.201625546954341e-13, -2.4202505247628477e-13,
    -5.9927351399527e-14, -8.200088681533758e-15, -7.12738828057881e-16, -1.7811406833165165e-17,
    6.943140308300345e-18, 1.5943048256939672e-18, 2.067469328294871e-19, 1.699583149845331e-20,
    -0.25289593473807676, -0.09969005025514381, -0.010399751440167688, 0.0037097350690534696,
    0.0015256858218285151, 0.0001850992923082431, -2.50499345754053e-05, -1.3073233381421908e-05,
    -1.8306287600415658e-06, 9.465308496228869e-08, 8.303276157595552e-08, 1.3436624922043183e-08,
    -5.0411783446480505e-11, -4.3394820915392526e-10, -8.168504612084488e-11, -2.4246941816550887e-12,
    1.9578445776719952e-12, 4.3507165755782276e-13, 2.444488302480532e-14, -7.7733952810224e-15,
    -2.0969074395455262e-15, -1.6631585326004563e-16, 2.7040762620215825e-17, 9.326123014387014e-18,
    9.43344063785574e-19, -7.899170148225569e-20, -3.8734686422162797e-20, -4.7738942676050105e-21,
    -0.3215378422397598, 0.10853287525233632, 0.02616927928322617, -0.014300046150189222, -0.001312262736866714,
    0.0011258644882432803, 4.9086490668877596e-05, -6.927430404424853e-05, -1.2823938679376634e-06,
    3.6674281114104652e-06, 5.136889366789091e-09, -1.753896705988463e-07, 2.211861608649621e-09,
    7.798003796711829e-09, -1.979555903995686e-10, -3.2825442675778697e-10, 1.2364215129759401e-11,
    1.3239755999602836e-11, -6.589708839927283e-13, -5.158185393730211e-13, 3.19170247079098e-14,
    1.952098934063229e-14, -1.4469268019881385e-15, -7.205339483450395e-16, 6.243657431334233e-17,
    2.601752250234459e-17, -2.592097363138954e-18, -9.211609550059333e-19, 1.0429456187674961e-19,
    3.2035477511050505e-20, -4.0883692377708484e-21, 0.06090085587496353, 0.018472782096893625,
    0.0010476023774373478, -0.0008095790749433025, -0.00031161294289493044, -6.275743947718495e-05,
    -7.661806552176516e-06, -2.822032882056457e-07, 1.198958345420073e-07, 3.536679643187825e-08,
    5.682887372039565e-09, 5.72845005645112e-10, 1.6902445296870938e-11, -7.039681006073233e-12,
    -1.821781125210349e-12, -2.6297953673725955e-13, -2.3960583224538448e-14, -5.766989281793176e-16,
    2.7253692942950797e-16, 6.451171781462837e-17, 8.697597714094905e-18, 7.395247868696877e-19,
    1.4226535256445674e-20, -8.291799062257869e-21, -1.8321813600161252e-21, -0.29134977392833084,
    -0.0980582276350279, 0.005881513554507337, 0.01109317318540873, 0.002663587698096631, 4.672492281894317e-07,
    -0.00014647906874701747, -3.47596360174176e-05, -1.2459926047303826e-06, 1.2116451613466057e-06,
    3.1299218601890793e-07, 1.9656251033543535e-08, -7.484327515648946e-09, -2.2323054893332826e-09,
    -1.9152415294954368e-10, 3.6855328887683886e-11, 1.35183970196454e-11, 1.4498868188639348e-12,
    -1.4475068220419684e-13, -7.230103426242891e-14, -9.313976545667458e-15, 4.048152095645507e-16,
    3.4954718459970545e-16, 5.313771582630642e-17, -2.1962188429470396e-19, -1.5478564154474874e-18,
    -2.765809549989994e-19, -7.240437159566815e-21, 6.312724716999446e-21, 0.5915929940455612,
    -0.043335031575643286, -0.12549196592342612, 0.012058747779465341, 0.013701402701149019,
    -0.0014372624199721301, -0.0010762885216490836, 0.00011959979235016715, 6.901008941530608e-05,
    -8.140783769366674e-06, -3.852112938332934e-06, 4.872859113901156e-07, 1.9450372938666353e-07,
    -2.663732750038451e-08, -9.104825410679171e-09, 1.358841159009237e-09, 4.016290245457895e-10,
    -6.557536506463009e-11, -1.6881115886562938e-11, 3.0222860146953387e-12, 6.812715404725804e-13,
    -1.33984944989102e-13, -2.6540488060820577e-14, 5.745621286785743e-15, 1.001862059695059e-15,
    -2.394030651737919e-16, -3.674119704217524e-17, 9.727782586948482e-18, 1.3112096747302207e-18,
    -3.8661430040855177e-19, -4.5574208693315846e-20, 1.5065405392066983e-20,
)
_LOG_NDTR_STARTS = (0, 20, 45, 68, 94, 117, 145, 176, 201, 230, 262)
_LOG_NDTR_ROOTS = (1.0023693422683706, 3.307931112806142e-17, 1.0023693422683706, 3.307931112806142e-17,
                   -0.029833620926059144, -4.849512805071621e-19, 2.071288938808874, -2.2094811106678995e-16)
_LOG_NDTR_ROOT_STARTS = (0, 0, 0, 0, 0, 0, 1, 2, 2, 3, 4)


def _chebyshev(start, stop, u):
    """c_0 / 2 + sum c_k T_k(u) for u in [-1, 1] and c = _LOG_NDTR_SERIES[start:stop] (Clenshaw)."""
    b1 = 0.0
    b2 = 0.0
    for k in range(stop - 1, start, -1):
        b1, b2 = 2.0 * u * b1 - b2 + _LOG_NDTR_SERIES[k], b1
    return u * b1 - b2 + 0.5 * _LOG_NDTR_SERIES[start]


def _mills_terms(t, order):
    """Terms of the continued fraction for 1 ulp at t >= 3 for derivatives up to ``order``:
    higher Taylor coefficients converge later (order 20 at t = 3 was 8e-4 off with the 119
    terms that orders 2 and 3 need, 2e-11 (rounding) from 300 on).  t * t may overflow: 20."""
    return 20 + int(900.0 * (1.0 + max(order - 3, 0) / 5.0) / (t * t))


def _mills_tails(t):
    """D_1 .. D_4 of the Mills ratio's continued fraction, for t >= 3."""
    d = t
    d2 = d3 = d4 = t
    for k in range(_mills_terms(t, 3), 0, -1):
        d = t + k / d
        if k == 4:
            d4 = d
        elif k == 3:
            d3 = d
        elif k == 2:
            d2 = d
    return d, d2, d3, d4


def _mills_jet(t, n):
    """The Taylor coefficients of D_1(t + h) in h, up to h^(n - 1), for t >= 3."""
    d = np.zeros(n)
    q = np.zeros(n)
    d[0] = t
    d[1] = 1.0
    for k in range(_mills_terms(t, n), 0, -1):
        q[0] = 1.0 / d[0]  # q = 1 / d, term by term
        for i in range(1, n):
            total = 0.0
            for j in range(1, i + 1):
                total += d[j] * q[i - j]
            q[i] = -total * q[0]
        d[0] = t + k * q[0]
        d[1] = 1.0 + k * q[1]
        for i in range(2, n):
            d[i] = k * q[i]
    return d


def _has_series(n, x):
    return n <= 5 and -3.0 <= x <= (1.0 if n <= 3 else 3.0)


def _series(n, x):
    """Order n at x from its Chebyshev series (where ``_has_series``)."""
    piece = 0 if x < -1.0 else (1 if x <= 1.0 else 2)
    k = _LOG_NDTR_FIRST[n - 2] + piece
    value = _chebyshev(_LOG_NDTR_STARTS[k], _LOG_NDTR_STARTS[k + 1], x + 2.0 - 2.0 * piece)
    for root in range(_LOG_NDTR_ROOT_STARTS[k], _LOG_NDTR_ROOT_STARTS[k + 1]):
        value *= (x - _LOG_NDTR_ROOTS[2 * root]) - _LOG_NDTR_ROOTS[2 * root + 1]
    return value


def _riccati(n, x):
    """The (n - 1)-th derivative of r = phi/Phi from r' = -(x r + r^2), each order taken from
    its series where one covers x (the recurrence amplifies its inputs' rounding: seeded with
    r alone, order 6 at x = -2.97 came out 5e5 ulps off)."""
    r = np.zeros(n)
    # from x = 30 to 40 the recurrence runs on r 2**600 (see _scaled_density): it is linear
    # but for the products r_j r_(k-j), which take one 2**-600 (they are ~1e-196 of the rest
    # there); the result is scaled back once
    scaled = SCALED_DENSITY_FROM <= x <= 40.0
    if scaled:
        r[0] = _scaled_density(x) / (1.0 - _exp_half_square(x) * _tail_ratio(x))
    else:
        r[0] = log_ndtr_prime(x)
    if r[0] == 0.0:  # x > 40 (and inf): every derivative underflows, and x r would be 0 * inf
        return 0.0
    square_scale = _DENSITY_UNSCALE if scaled else 1.0
    for k in range(n - 1):
        if _has_series(k + 2, x):
            r[k + 1] = _series(k + 2, x)
            continue
        total = x * r[k]
        if k >= 1:
            total += k * r[k - 1]
        binomial = 1.0
        for j in range(k + 1):
            total += binomial * r[j] * (r[k - j] * square_scale)
            binomial = binomial * (k - j) / (j + 1)
        r[k + 1] = -total
    return float(r[n - 1]) * square_scale


def log_ndtr_derivative(n, x):
    """The n-th derivative of log(Phi(x)) for n >= 2 (about -1 and 2 / |x|^3 for x << 0):
    within 3, 6, 9 and 17 ulp for orders 2 to 5 (measured on 900 points) below x = 37.5;
    below -3 the Taylor recurrence loses more with the order (2e-11 relative at order 20).
    From 30 to 40 the recurrence runs on phi/Phi scaled by 2**600 (it is subnormal from
    37.5 on), so a result there is rounded once; beyond 40 every order is 0.
    Orders above 5 on [-3, 3] keep absolute accuracy only."""
    x = float(x)
    if x != x:
        return x
    if x < -3.0:
        if x == -INF:
            return -1.0 if n == 2 else 0.0
        if n <= 3:
            d1, d2, d3, d4 = _mills_tails(-x)
            if n == 2:
                return -(d1 / d2)
            return 2.0 * (d1 / d2) * ((3.0 / d4 - 2.0 / d3) / d2) / d3  # in this order nothing overflows
        coefficient = float(_mills_jet(-x, n)[n - 1])
        for k in range(2, n):  # d^m/dx^m = (-1)^m d^m/dt^m: times (-1)^(n-1) (n-1)!
            coefficient *= k
        return coefficient if n % 2 == 1 else -coefficient
    if _has_series(n, x):
        return _series(n, x)
    return _riccati(n, x)


# ----------------------------------------------------------------------- erfinv

# First guesses.  Giles ("Approximating the erfinv function", GPU Computing Gems, 2011),
# single-precision version: relative error 1.25e-7 for w = -log(1 - y^2) < 16, where one
# Halley step then gives full precision.  Beyond (|y| > 1 - 5.6e-8) Winitzki's closed form
# (relative error below 1e-2 up to 1 - 2**-53) and three steps.
_GILES_CENTRAL = (1.50140941, 0.246640727, -0.00417768164, -0.00125372503, 0.00021858087, -4.39150654e-06,
                  -3.5233877e-06, 3.43273939e-07, 2.81022636e-08)
_GILES_TAIL = (2.83297682, 1.00167406, 0.00943887047, -0.0076224613, 0.00573950773, -0.00367342844,
               0.00134934322, 0.000100950558, -0.000200214257)
_WINITZKI = 0.147
_TWO_OVER_PI_A = 2.0 / (PI * _WINITZKI)


def _horner(coefficients, t):
    total = coefficients[-1]
    for k in range(len(coefficients) - 2, -1, -1):
        total = total * t + coefficients[k]
    return total


def erfinv(y):
    """The inverse error function on [-1, 1] (nan outside, +-inf at +-1)."""
    y = float(y)
    if y != y:
        return y
    a = abs(y)
    if a >= 1.0:
        if a == 1.0:
            return INF if y > 0 else -INF
        return NAN
    if a < 1e-8:  # erfinv(y) = sqrt(pi)/2 y (1 + pi y^2/12 + ...): the rest is below a quarter ulp
        return 0.5 * SQRT_PI * y
    log_rest = math.log((1.0 - a) * (1.0 + a))
    w = -log_rest
    if w < 5.0:
        z = a * _horner(_GILES_CENTRAL, w - 2.5)
        steps = 1
    elif w < 16.0:
        z = a * _horner(_GILES_TAIL, math.sqrt(w) - 3.0)
        steps = 1
    else:
        t = _TWO_OVER_PI_A + 0.5 * log_rest
        z = math.sqrt(math.sqrt(t * t - log_rest / _WINITZKI) - t)
        steps = 3
    rest = 1.0 - a  # exact for a >= 1/2 (Sterbenz)
    for _ in range(steps):
        # Halley on f(z) = erf(z) - a (or erfc(z) - (1 - a), whose sign flips): with
        # u = f/f', f''/f' = -2z gives the step u / (1 + z u).
        slope = 2.0 / SQRT_PI * math.exp(-z * z)
        if a <= 0.5:
            u = (math.erf(z) - a) / slope
        else:
            u = (rest - math.erfc(z)) / slope
        z = z - u / (1.0 + z * u)
    return z if y > 0 else -z


def erfinv_slope(y):
    """d/dy erfinv(y) = sqrt(pi)/2 exp(x*x), x = erfinv(y).  exp(x*x) turns x's rounding
    into a relative error 2 x*x times larger (31 ulps at y = 1 - 2**-53, x = 5.9), so x
    is refined by one Newton step whose residual is taken as erfc(x) - (1 - |y|) in the
    tail (both exact to an ulp: no cancellation of erf(x) against y), and x*x is split
    into an exact part and a small rest (_half_square)."""
    y = float(y)
    if y != y:
        return y
    a = abs(y)
    if a >= 1.0:
        return INF if a == 1.0 else NAN
    x = erfinv(a)
    if x >= EXACT_SQUARE:  # not reached: x < 6 below 1
        return INF
    big, rest = _half_square(x)
    slope = 0.5 * SQRT_PI * math.exp(2.0 * big) * math.exp(2.0 * rest)
    residual = math.erfc(x) - (1.0 - a) if a > 0.5 else a - math.erf(x)
    correction = residual * slope  # the exact root is x + correction, to second order
    return slope * math.exp(correction * (2.0 * x + correction))


# --------------------------------------------------------------- gamma family

# psi(x) = sum_k c_k (x - x0)^k around the positive root x0 = X0_HI + X0_LO of digamma,
# c_k = psi^(k)(x0)/k! (mpmath, 60 digits); used on [1, 2], where |x - x0| <= 0.54 and
# |c_k| (x - x0)^k shrinks like 0.37^k, so 40 terms reach 1e-17.
X0_HI = 1.4616321449683622
X0_LO = 9.549995429965697e-17
_ROOT_SERIES = (
    0.9676722454476212, -0.4427631689835921, 0.258499760955651, -0.16394270544240652, 0.10782405069126237,
    -0.07219956125645471, 0.04880428816414311, -0.03316112647484736, 0.022597648232218104, -0.01542476590494896,
    0.010538791616612175, -0.007204534386356869, 0.004926781395729853, -0.003369801655439328, 0.002305126326734928,
    -0.0015769367714301972, 0.0010788252019162967, -0.0007380709389960052, 0.000504953265834602,
    -0.0003454680251063077, 0.00023635601564027053, -0.00016170622091974803, 0.0001106337276874741,
    -7.569179582195066e-05, 5.178575795222081e-05, -3.5430070947659604e-05, 2.424006611860132e-05,
    -1.6584242271854135e-05, 1.134638458466385e-05, -7.762817668462094e-06, 5.3110609208898636e-06,
    -3.6336507898010456e-06, 2.486022733129538e-06, -1.7008538854332607e-06, 1.1636675363548843e-06,
    -7.96142543124197e-07, 5.446941930669446e-07, -3.7266161283438227e-07, 2.549626552021554e-07,
    -1.7443695117727745e-07,

)
_ROOT_EVEN = _ROOT_SERIES[0::2]  # c_1, c_3, ...: the coefficients of d^0, d^2... after the factor d
_ROOT_ODD = _ROOT_SERIES[1::2]
# The asymptotic series of digamma: psi(x) ~ log x - 1/(2x) - sum_k B_2k / (2k x^2k)
_DIGAMMA_ASYMPTOTIC = (1.0 / 12, -1.0 / 120, 1.0 / 252, -1.0 / 240, 1.0 / 132, -691.0 / 32760, 1.0 / 12)
# Euler-Maclaurin coefficients of the Hurwitz zeta function (Cephes zeta.c): (2k)!/B_2k
_ZETA_A = (12.0, -720.0, 30240.0, -1209600.0, 47900160.0, -1.8924375803183791606e9, 7.47242496e10,
           -2.950130727918164224e12, 1.1646782814350067249e14, -4.5979787224074726105e15,
           1.8152105401943546773e17, -7.1661652561756670113e18)
MACHEP = 1.11022302462515654042e-16
LOG_MAX = 709.782712893384  # log of the largest float64


def _is_integer(x):
    return abs(x) >= 4503599627370496.0 or x == math.floor(x)  # every float >= 2**52 is an integer


PI_LO = 1.2246467991473532e-16  # pi - PI


def _split(a):
    """a = high + low with high on 26 bits (Veltkamp), so products of halves are exact."""
    t = 134217729.0 * a
    high = t - (t - a)
    return high, a - high


def _cot_pi(x):
    """cot(pi x) for a non-integer x, after an exact reduction to |r| <= 1/2, within 1.7
    ulps: the rounding e of u = PI r (the product's, by Dekker's split, and PI's own) is put
    back to first order, cot(u + e) = cot(u) - e (1 + cot(u)^2).  Without it 1.8 ulps at
    x = -0.1 (polygamma 2 and 3 there: 5 ulps) and 568 next to +-1/2, where cot is small."""
    if abs(x) < 0.5:
        r = x  # x - floor(x) would round 1 - tiny to 1 here
    elif abs(x) >= 4503599627370496.0:
        return NAN
    else:
        r = x - math.floor(x)  # exact for |x| >= 1/2
        if r > 0.5:
            r -= 1.0
    if abs(r) == 0.5:  # cot(pi/2) is 0; 1 / tan(PI * 0.5) would be 6e-17, which the reflection scales by pi^(n+1)
        return 0.0
    u = PI * r
    if abs(r) < 1e-300:  # cot is near 1 / u, beyond 3e299 and inf below 2e-309: left uncorrected
        return 1.0 / math.tan(u)
    pi_high, pi_low = _split(PI)
    r_high, r_low = _split(r)
    rounding = (((pi_high * r_high - u) + pi_high * r_low) + pi_low * r_high) + pi_low * r_low + PI_LO * r
    c = 1.0 / math.tan(u)
    return (c - (rounding * c) * c) - rounding  # c * c alone overflows from |c| = 1.3e154


def _digamma_root_series(x):
    """psi(x) for 1 <= x <= 2, relative to its root: accurate where psi(x) is near 0."""
    d = (x - X0_HI) - X0_LO  # x - X0_HI is exact here (Sterbenz)
    # two independent Horner chains in d^2 (even and odd terms): half the latency of one
    d2 = d * d
    even = _ROOT_EVEN[-1]
    odd = _ROOT_ODD[-1]
    for k in range(len(_ROOT_EVEN) - 2, -1, -1):
        even = even * d2 + _ROOT_EVEN[k]
        odd = odd * d2 + _ROOT_ODD[k]
    return d * (even + d * odd)


def _digamma_positive(x):
    if x < 1.0:  # psi(x) = psi(x + 1) - 1/x; |psi| > 0.57 here, so rounding x + 1 costs nothing
        return _digamma_root_series(x + 1.0) - 1.0 / x
    if x <= 2.0:
        return _digamma_root_series(x)
    if x < 10.0:  # down to [1, 2): psi(x) = psi(x - m) + sum_{k=1..m} 1/(x - k), every x - k exact
        m = math.floor(x) - 1
        total = 0.0
        for k in range(1, m + 1):
            total += 1.0 / (x - k)
        return _digamma_root_series(x - m) + total
    z = 1.0 / (x * x)
    series = 0.0
    for k in range(len(_DIGAMMA_ASYMPTOTIC) - 1, -1, -1):
        series = (series + _DIGAMMA_ASYMPTOTIC[k]) * z
    return (math.log(x) - 0.5 / x) - series


def digamma(x):
    """psi(x) = d/dx log Gamma(x); as SciPy: -inf at +0, inf at -0, nan at negative integers."""
    x = float(x)
    if x != x or x == INF:
        return x
    if x == -INF:
        return NAN
    if x == 0.0:
        return INF if math.copysign(1.0, x) < 0 else -INF
    if x < 0:
        if _is_integer(x):
            return NAN
        return _digamma_positive(1.0 - x) - PI * _cot_pi(x)  # psi(1 - x) - psi(x) = pi cot(pi x)
    return _digamma_positive(x)


def _scaled_hurwitz_zeta(s, q):
    """q^s zeta(s, q) = sum_k (q / (q + k))^s for s > 1 and q > 0 (Euler-Maclaurin, as
    Cephes, but scaled so that no term under- or overflows: the sum is >= 1)."""
    if q > 1e8:
        return (1.0 / (s - 1.0) + 0.5 / q) * q
    total = 1.0
    a = q
    b = 0.0
    i = 0
    while i < 9 or a <= 9.0:
        i += 1
        a = q + i
        b = (q / a) ** s
        total += b
        if b < MACHEP * total:
            return total
    w = a
    total += b * w / (s - 1.0) - 0.5 * b
    factor = 1.0
    k = 0.0
    for j in range(12):
        factor *= s + k
        b /= w
        term = factor * b / _ZETA_A[j]
        total += term
        if abs(term) < MACHEP * total:
            break
        k += 1.0
        factor *= s + k
        b /= w
        k += 1.0
    return total


def _cot_derivative(n, c):
    """P_n(c) with d^n/du^n cot(u) = P_n(cot u): P_0 = c, P_{k+1} = -(1 + c^2) P_k'(c)."""
    coefficients = [0.0] * (n + 2)
    coefficients[1] = 1.0
    for degree in range(1, n + 1):  # P_{degree - 1} has degree `degree`
        new = [0.0] * (n + 2)
        for j in range(1, degree + 1):
            term = j * coefficients[j]
            new[j - 1] -= term
            new[j + 1] -= term
        coefficients = new
    total = coefficients[n + 1]  # (not 0.0 * c: c is inf next to a pole)
    for j in range(n, -1, -1):
        total = total * c + coefficients[j]
    return total


def _polygamma_positive(n, x):
    """|psi^(n)(x)| = n! zeta(n + 1, x) for n >= 1 and 0 < x < inf."""
    if x > 1e8:  # (n-1)!/x^n + n!/(2 x^(n+1)); the next term is n^2/(12 x^2) smaller
        s = float(n)
        scaled = 1.0 + 0.5 * n / x
    else:
        s = n + 1.0
        scaled = _scaled_hurwitz_zeta(s, x)
    half_power = 0.5 * s * math.log(x)
    if s <= 170.0 and abs(half_power) < 700.0:
        # (s-1)! x^-s times the scaled sum, x^-s as two halves so nothing overflows before the result
        half = x ** (-0.5 * s)
        return ((math.gamma(s) * half) * scaled) * half
    # extreme n or x: exp loses |magnitude| * eps relative, the price of not overflowing early
    magnitude = math.lgamma(s) - 2.0 * half_power + math.log(scaled)
    if magnitude > LOG_MAX:
        return INF
    return math.exp(magnitude)


def polygamma(n, x):
    """The n-th derivative of digamma (n >= 0); at the poles (-1)^(n+1) inf, as SciPy."""
    x = float(x)
    if n == 0:
        return digamma(x)
    if x != x:
        return x
    sign = 1.0 if n % 2 == 1 else -1.0  # (-1)^(n+1)
    if x == INF:
        return 0.0
    if x == -INF:
        return NAN
    if x <= 0.0:
        if _is_integer(x):
            return sign * INF
        # psi^(n)(x) = (-1)^n psi^(n)(1 - x) - pi^(n+1) P_n(cot(pi x))
        scale = PI ** (n + 1) if n < 600 else INF  # plain Python's ** raises on overflow
        return -_polygamma_positive(n, 1.0 - x) - scale * _cot_derivative(n, _cot_pi(x))
    return sign * _polygamma_positive(n, x)
