"""1 + y log x to relative accuracy where the sum cancels (pow's mixed second derivative).

d2(x**y)/dxdy = x**(y - 1) (1 + y log x) cancels near x = exp(-1/y): the product y log x
is about -1 there, and log x rounded to double is off by up to 2**-53 of it, so the sum
is off by about 2**-53 absolutely however small it is (257,633 ulps at (0.5, 1.4427);
exactly 0 at (exp(-1/3), 3), true 4.4e-17).  Here log x is formed in double-double from
x = 2**k m, m in [sqrt(1/2), sqrt(2)), and a 91-entry table of log(128 / t), t =
rint(128 / m): r = m t / 128 - 1 is exact (a multiple of 2**-60 below 2**-7.5), and

    log x = k log 2 + log(128 / t) + log1p(r),

y log x is an exact product (TwoProduct) and 1 + y log x a TwoSum.  Two tiers:

- ``_log_head``: log1p(r) = r - r**2 / 2 + r**3 q(r) with r**2 exact and q in double,
  absolutely within about 2**-74 (relatively 2**-65 where |log x| >= 2**-8.7; where
  k = 0 and t = 128 every term scales with r): 1 + y log x within a quarter of an ulp
  wherever it is at least 2**-11 in size;
- ``_log_full``, where the first tier's sum is below 2**-11 (about 1e-4 of uniform
  samples): the series' terms to r**7 in double-double (Horner), log 2 in three parts,
  a few 2**-106 relatively.

The algorithm is written once over a small set of lane operations (``+ - * /`` on the
values and the methods of ``NumpyLanes``), run by NumPy in the reference evaluator and
emitted as LLVM IR for kernels (``backends.precise_log``: the same operations in the
same order, TwoProduct's error term by one fused multiply-add where NumPy runs Dekker's
exact split), so both backends compute the same bits.  Fused multiply-adds are used for
exact error terms only: a rounded one would differ from NumPy's two roundings.
"""

from __future__ import annotations

import decimal
import fractions

import numpy as np

_TINY = 2.0 ** -1022
_SQRT_HALF = 0.7071067811865476
_SPLITTER = 134217729.0  # 2**27 + 1: Veltkamp's split
# |y| below this: y * log x and its split stay in range (|log x| < 745)
_Y_LIMIT = 2.0 ** 900
# Below this the first tier's 1 + y log x is not trusted to a quarter of an ulp.
_REFINE_BELOW = 2.0 ** -11
TABLE_START, TABLE_END = 91, 182  # t = rint(128 / m) for m in [sqrt(1/2), sqrt(2))


def _parts(value: decimal.Decimal, bits: int = 53) -> tuple:
    """value as (head, tail): head rounded to ``bits`` significant bits, tail the double
    nearest the rest."""
    head = float(value)
    if bits < 53:
        scale = 2.0 ** (bits - 1 - int(np.floor(np.log2(abs(head)))))
        head = round(head * scale) / scale
    return head, float(value - decimal.Decimal(head))


def _constants():
    with decimal.localcontext() as context:
        context.prec = 80
        ln2 = decimal.Decimal(2).ln()
        hi, rest = _parts(ln2, bits=42)  # k * hi exact for |k| < 2**11
        mid = float(ln2 - decimal.Decimal(hi))
        lo = float(ln2 - decimal.Decimal(hi) - decimal.Decimal(mid))
        table = [_parts((decimal.Decimal(128) / t).ln()) for t in range(TABLE_START, TABLE_END)]
    return (hi, mid, lo), table


(_LN2_HI, _LN2_MID, _LN2_LO), _TABLE = _constants()
TABLE_HI = np.array([head for head, _ in _TABLE])
TABLE_LO = np.array([tail for _, tail in _TABLE])


def _coefficient(j: int) -> tuple:
    """log1p's j-th Taylor coefficient (-1)**(j + 1) / j as (head, tail)."""
    exact = fractions.Fraction((-1) ** (j + 1), j)
    head = float(exact)
    return head, float(exact - fractions.Fraction(head))


# q(r) = 1/3 - r/4 + r**2/5 - ... - r**7/10: relatively within 2**-51 for |r| < 2**-7.5.
_HEAD_SERIES = tuple(_coefficient(j)[0] for j in range(3, 11))
# The full tier: coefficients 8 to 15 in double (Horner), 2 to 7 in double-double.
_PLAIN_SERIES = tuple(_coefficient(j)[0] for j in range(8, 16))
_DOUBLE_SERIES = tuple(_coefficient(j) for j in range(2, 8))


def _two_sum(a, b):
    s = a + b
    v = s - a
    return s, (a - (s - v)) + (b - v)


def _fast_two_sum(a, b):
    """(s, e) with s + e = a + b exactly, for |a| >= |b| (or a = 0)."""
    s = a + b
    return s, b - (s - a)


def _reduce(ops, x):
    """(k, t, r) for a positive finite x: x = 2**k m, m in [sqrt(1/2), sqrt(2)), t =
    rint(128 / m) in [91, 181] and r = m t / 128 - 1, exact."""
    small = ops.less(x, _TINY)
    m, e = ops.frexp(ops.where(small, x * 2.0 ** 64, x))  # m in [1/2, 1)
    low = ops.less(m, _SQRT_HALF)
    m = ops.where(low, m * 2.0, m)
    k = (e - ops.where(low, 1.0, 0.0)) - ops.where(small, 64.0, 0.0)
    t = ops.rint(128.0 / m)
    c = t * (1.0 / 128.0)
    p = m * c
    return k, t, (p - 1.0) + ops.product_error(m, c, p)


def _log_head(ops, k, t, r):
    """log x as (head, tail), absolutely within about 2**-74 of log(128 / t) + log1p(r)'s size."""
    r2 = r * r
    q = _HEAD_SERIES[-1]
    for coefficient in reversed(_HEAD_SERIES[:-1]):
        q = coefficient + r * q
    half = r2 * -0.5
    s, s_error = _fast_two_sum(r, half)
    low = s_error + (ops.product_error(r, r, r2) * -0.5 + (r * r2) * q)
    h1, e1 = _two_sum(k * _LN2_HI, ops.table(TABLE_HI, t))
    h2, e2 = _two_sum(h1, s)
    return _fast_two_sum(h2, (e1 + e2) + ((k * _LN2_MID + ops.table(TABLE_LO, t)) + low))


def _log_full(ops, k, t, r):
    """log x as (head, tail), relatively within a few 2**-106."""
    head = _PLAIN_SERIES[-1]
    for coefficient in reversed(_PLAIN_SERIES[:-1]):
        head = coefficient + r * head
    tail = 0.0
    for coefficient, coefficient_tail in reversed(_DOUBLE_SERIES):
        p = r * head
        p_error = ops.product_error(r, head, p) + r * tail
        s, s_error = _two_sum(coefficient, p)
        head, tail = _fast_two_sum(s, (s_error + p_error) + coefficient_tail)
    r2 = r * r
    p = r2 * head
    p_error = ops.product_error(r2, head, p) + (r2 * tail + ops.product_error(r, r, r2) * head)
    s, s_error = _fast_two_sum(r, p)
    scaled = k * _LN2_MID
    scaled_error = ops.product_error(k, _LN2_MID, scaled) + k * _LN2_LO
    h1, e1 = _two_sum(k * _LN2_HI, ops.table(TABLE_HI, t))
    h2, e2 = _two_sum(h1, scaled)
    h3, e3 = _two_sum(h2, s)
    low = ((e1 + e2) + e3) + ((scaled_error + ops.table(TABLE_LO, t)) + (s_error + p_error))
    return _fast_two_sum(h3, low)


def _one_plus(ops, y, head, tail):
    """1 + y (head + tail): y head as an exact product, 1 + its head a TwoSum."""
    p = y * head
    error = ops.product_error(y, head, p) + y * tail
    s, s_error = _two_sum(1.0, p)
    return s + (s_error + error)


def one_plus_mul_log(ops, y, x):
    """1 + y log x on ``ops``' lanes (float64), relatively within about an ulp.  Where x
    is 0, negative, infinite or NaN, or |y| >= 2**900 or y is not finite, 1 + y log x as
    IEEE gives it (log's exact limits -inf, inf, NaN, or the tier's head of log x)."""
    valid = ops.logical_and(ops.greater(x, 0.0), ops.less(x, np.inf))
    k, t, r = _reduce(ops, ops.where(valid, x, 1.0))
    head, tail = _log_head(ops, k, t, r)
    limits = ops.where(ops.equal(x, 0.0), -np.inf, ops.where(ops.equal(x, np.inf), np.inf, np.nan))
    plain = 1.0 + y * ops.where(valid, head, limits)
    accurate = ops.logical_and(valid, ops.less(ops.abs(y), _Y_LIMIT))
    y_in = ops.where(accurate, y, 0.0)
    value = ops.where(accurate, _one_plus(ops, y_in, head, tail), plain)

    def refined(y, k, t, r):
        return _one_plus(ops, y, *_log_full(ops, k, t, r))

    near = ops.logical_and(accurate, ops.less(ops.abs(value), _REFINE_BELOW))
    return ops.refine(near, refined, (y_in, k, t, r), value)


class NumpyLanes:
    """The lane operations on NumPy float64 arrays (the reference evaluator's)."""

    where, less, greater, equal, abs, rint, logical_and = (
        np.where, np.less, np.greater, np.equal, np.abs, np.rint, np.logical_and)

    @staticmethod
    def frexp(x):
        m, e = np.frexp(x)
        return m, e.astype(np.float64)

    @staticmethod
    def table(values, t):
        return values[t.astype(np.int64) - TABLE_START]

    @staticmethod
    def product_error(a, b, p):
        """a b - p for p = a b rounded, exactly (Dekker): a fused multiply-add's bits."""
        big = a * _SPLITTER
        a_head = big - (big - a)
        a_tail = a - a_head
        big = b * _SPLITTER
        b_head = big - (big - b)
        b_tail = b - b_head
        return ((a_head * b_head - p) + a_head * b_tail + a_tail * b_head) + a_tail * b_tail

    @staticmethod
    def refine(mask, form, inputs, value):
        """value, with form(*inputs) where mask holds (computed there only)."""
        where = np.nonzero(mask)
        if where[0].size:
            value = value.copy()
            value[where] = form(*(np.broadcast_to(v, mask.shape)[where] for v in inputs))
        return value


def one_plus_mul_log_numpy(y, x):
    """The reference: 1 + y log x elementwise, in float64 (rounded to the inputs' dtype)."""
    dtype = np.result_type(y, x)
    y, x = np.broadcast_arrays(np.asarray(y, dtype=np.float64), np.asarray(x, dtype=np.float64))
    with np.errstate(all="ignore"):
        value = one_plus_mul_log(NumpyLanes, y.ravel(), x.ravel())
    return value.reshape(y.shape).astype(dtype, copy=False)
