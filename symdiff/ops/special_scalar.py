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

INF = float("inf")
NAN = float("nan")
PI = math.pi
SQRT_PI = math.sqrt(math.pi)
INV_SQRT_2PI = 0.3989422804014327  # 1/sqrt(2 pi): the normal density at 0

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


def log_ndtr_prime(x):
    """d/dx log(Phi(x)) = phi(x)/Phi(x): 1/(sqrt(2 pi) tail ratio) below -CENTRAL (no
    exp at all: -x at x = -1e300), phi(x)/Phi(x) elsewhere."""
    x = float(x)
    if x != x:
        return x
    if x < -CENTRAL:
        if x == -INF:
            return INF
        return INV_SQRT_2PI / _tail_ratio(-x)
    density = INV_SQRT_2PI * _exp_half_square(abs(x))
    if x <= CENTRAL:
        return density / (0.5 + _central(x))
    return density / (1.0 - _exp_half_square(x) * _tail_ratio(x))


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


def _cot_pi(x):
    """cot(pi x) for a non-integer x, after an exact reduction to |r| <= 1/2."""
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
    return 1.0 / math.tan(PI * r)


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
