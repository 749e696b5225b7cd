"""Elementwise math with NumPy's names and semantics: inverse trigonometric and
hyperbolic functions, log2/log10/exp2/cbrt, rounding, remainders, logaddexp, the
NaN/inf tests, nan_to_num, heaviside and copysign.

The primitives behind them, and why each is one, are in ``symdiff.ops.math``; the rest
are composites here.  Dtypes follow NumPy: the transcendental functions take ints as
float64 and keep float32 as float32; ``floor``, ``ceil`` and ``trunc`` of an int or
bool array return it unchanged (NumPy 2 keeps the integer dtype); ``rint`` and
``round`` of ints as NumPy (float64, resp. the int dtype); ``mod``, ``fmod`` and
``floor_divide`` of ints are integer operations (division by zero gives 0, as NumPy
does with a warning), bools computed as int64 (NumPy gives int8).  Where NumPy's result
would be a dtype symdiff lacks (float16 from ``rint`` of bools), or a silent surprise
(``reciprocal`` of ints is integer division in NumPy: 1/2 -> 0), a ``DTypeError`` says
what to write instead.
"""

from __future__ import annotations

import builtins

import numpy as np

from ..errors import DTypeError
from ..ir import Expr
from ..ops import math as M
from ..types import FLOAT_DTYPES
from . import (
    _binary, _float_operand, _unary_float, abs, astype, equal, greater, less, logical_and, not_equal, operands,
    power, stop_gradient, where,
)

__all__ = [
    "arccos", "arccosh", "arcsin", "arcsinh", "arctan", "arctan2", "arctanh", "around", "cbrt", "ceil", "copysign",
    "cosh", "exp2", "fix", "floor", "floor_divide", "fmod", "heaviside", "hypot", "isfinite", "isinf", "isnan",
    "log10", "log2", "logaddexp", "logaddexp2", "mod", "nan_to_num", "reciprocal", "remainder", "rint", "round",
    "sinh", "trunc",
]

# ------------------------------------------------------------ transcendental

arcsin = _unary_float("arcsin", M.ARCSIN, "Elementwise inverse sine (nan outside [-1, 1]).",
                      "sd.evaluate(sd.arcsin(sd.constant(1.0)), {})", "np.float64(1.5707963267948966)")
arccos = _unary_float("arccos", M.ARCCOS, "Elementwise inverse cosine (nan outside [-1, 1]).",
                      "sd.evaluate(sd.arccos(sd.constant(1.0)), {})", "np.float64(0.0)")
arctan = _unary_float("arctan", M.ARCTAN, "Elementwise inverse tangent.",
                      "sd.evaluate(sd.arctan(sd.constant(1.0)), {})", "np.float64(0.7853981633974483)")
arctan2 = _binary("arctan2", M.ARCTAN2, "arctan2(y, x): the angle of the point (x, y) in (-pi, pi], broadcasting.",
                  "sd.evaluate(sd.arctan2(1.0, -1.0), {})", "np.float64(2.356194490192345)", to_float=True)
sinh = _unary_float("sinh", M.SINH, "Elementwise hyperbolic sine.",
                    "sd.evaluate(sd.sinh(sd.constant(0.0)), {})", "np.float64(0.0)")
cosh = _unary_float("cosh", M.COSH, "Elementwise hyperbolic cosine.",
                    "sd.evaluate(sd.cosh(sd.constant(0.0)), {})", "np.float64(1.0)")
arcsinh = _unary_float("arcsinh", M.ARCSINH, "Elementwise inverse hyperbolic sine.",
                       "sd.evaluate(sd.arcsinh(sd.constant(0.0)), {})", "np.float64(0.0)")
arccosh = _unary_float("arccosh", M.ARCCOSH, "Elementwise inverse hyperbolic cosine (nan below 1).",
                       "sd.evaluate(sd.arccosh(sd.constant(1.0)), {})", "np.float64(0.0)")
arctanh = _unary_float("arctanh", M.ARCTANH, "Elementwise inverse hyperbolic tangent (+-inf at +-1).",
                       "sd.evaluate(sd.arctanh(sd.constant(0.0)), {})", "np.float64(0.0)")
hypot = _binary("hypot", M.HYPOT, "sqrt(x**2 + y**2) without overflow; its derivative at the origin is 0.",
                "sd.evaluate(sd.hypot(3.0, 4.0), {})", "np.float64(5.0)", to_float=True)
log2 = _unary_float("log2", M.LOG2, "Elementwise base-2 logarithm, exact at powers of 2.",
                    "sd.evaluate(sd.log2(sd.constant(8.0)), {})", "np.float64(3.0)")
log10 = _unary_float("log10", M.LOG10, "Elementwise base-10 logarithm, exact at powers of 10.",
                     "sd.evaluate(sd.log10(sd.constant(1000.0)), {})", "np.float64(3.0)")
cbrt = _unary_float("cbrt", M.CBRT, "Elementwise real cube root (negative for negative x).",
                    "sd.evaluate(sd.cbrt(sd.constant(-8.0)), {})", "np.float64(-2.0)")
logaddexp = _binary("logaddexp", M.LOGADDEXP, "log(exp(x) + exp(y)) without overflow, broadcasting.",
                    "sd.evaluate(sd.logaddexp(1000.0, 1000.0), {})", "np.float64(1000.6931471805599)", to_float=True)
logaddexp2 = _binary("logaddexp2", M.LOGADDEXP2, "log2(2**x + 2**y) without overflow, broadcasting.",
                     "sd.evaluate(sd.logaddexp2(1000.0, 1000.0), {})", "np.float64(1001.0)", to_float=True)
copysign = _binary("copysign", M.COPYSIGN, "|x| with the sign of y (its sign bit: -0.0 counts as negative).",
                   "sd.evaluate(sd.copysign(2.0, -0.0), {})", "np.float64(-2.0)", to_float=True)


def exp2(x) -> Expr:
    """Elementwise 2**x (pow, exact at integers as np.exp2).

    >>> import symdiff as sd
    >>> sd.evaluate(sd.exp2(sd.constant([3.0, -1.0])), {})
    array([8. , 0.5])
    """
    return power(2.0, _float_operand(x))


def reciprocal(x) -> Expr:
    """Elementwise 1/x for float x (np.reciprocal).

    NumPy's reciprocal of an integer array is integer division (1/2 -> 0), which is
    refused here rather than copied: cast to float first.

    >>> import symdiff as sd
    >>> sd.evaluate(sd.reciprocal(sd.constant([4.0, -0.5])), {})
    array([ 0.25, -2.  ])
    """
    (x,) = operands(x)
    if x.dtype not in FLOAT_DTYPES:
        raise DTypeError(f"reciprocal of {x.dtype} (NumPy's integer reciprocal truncates: 1/2 -> 0); "
                         "use sd.reciprocal(sd.astype(x, 'float64')) or 1 / x")
    return 1 / x


# ------------------------------------------------------------------- rounding


def _rounding(name, op, summary, example, result):
    def fn(x) -> Expr:
        (x,) = operands(x)
        return x if x.dtype not in FLOAT_DTYPES else op(x)  # an int or bool is its own floor (NumPy 2)

    fn.__name__ = fn.__qualname__ = name
    fn.__doc__ = (f"{summary} Ints and bools are returned unchanged, as NumPy 2 does; no derivative flows.\n\n"
                  f">>> import symdiff as sd\n>>> {example}\n{result}\n")
    return fn


floor = _rounding("floor", M.FLOOR, "Elementwise largest integer <= x.",
                  "sd.evaluate(sd.floor(sd.constant([-1.5, 1.5])), {})", "array([-2.,  1.])")
ceil = _rounding("ceil", M.CEIL, "Elementwise smallest integer >= x.",
                 "sd.evaluate(sd.ceil(sd.constant([-1.5, 1.5])), {})", "array([-1.,  2.])")
trunc = _rounding("trunc", M.TRUNC, "Elementwise rounding toward 0.",
                  "sd.evaluate(sd.trunc(sd.constant([-1.5, 1.5])), {})", "array([-1.,  1.])")
fix = _rounding("fix", M.TRUNC, "Elementwise rounding toward 0 (np.fix, the same as trunc).",
                "sd.evaluate(sd.fix(sd.constant([-1.5, 1.5])), {})", "array([-1.,  1.])")


def rint(x) -> Expr:
    """Elementwise rounding to the nearest integer, ties to even; no derivative flows.

    Ints give float64 as in NumPy; bools are refused (NumPy gives float16).

    >>> import symdiff as sd
    >>> sd.evaluate(sd.rint(sd.constant([0.5, 1.5, -2.5])), {})
    array([ 0.,  2., -2.])
    """
    (x,) = operands(x)
    if x.dtype == "bool":
        raise DTypeError("rint of bool (NumPy gives float16, which symdiff does not have); cast to float64 first")
    return M.RINT(x) if x.dtype in FLOAT_DTYPES else astype(x, "float64")


def round(x, decimals=0) -> Expr:  # noqa: A001  (NumPy's name)
    """np.round: to ``decimals`` places (may be negative), ties to even, by NumPy's own
    steps (rint(x * 10**decimals) / 10**decimals); no derivative flows.

    Ints keep their dtype (unchanged for decimals >= 0); bools are refused (NumPy gives float16).

    >>> import symdiff as sd
    >>> sd.evaluate(sd.round(sd.constant([2.5, 3.14159]), 2), {})
    array([2.5 , 3.14])
    >>> sd.evaluate(sd.round(sd.constant([1250, 1351]), -2), {})
    array([1200, 1400])
    """
    if isinstance(decimals, bool) or not isinstance(decimals, (int, np.integer)):
        raise TypeError(f"round: decimals must be a static int, got {type(decimals).__name__} {decimals!r}")
    decimals = int(decimals)
    (x,) = operands(x)
    if x.dtype == "bool":
        raise DTypeError("round of bool (NumPy gives float16, which symdiff does not have); cast first")
    if x.dtype not in FLOAT_DTYPES:
        if decimals >= 0:
            return x
        scale = _power_of_ten(-decimals)
        return astype(M.RINT(astype(x, "float64") / scale) * scale, x.dtype)
    if decimals == 0:
        return M.RINT(x)
    scale = _power_of_ten(builtins.abs(decimals))
    return M.RINT(x * scale) / scale if decimals > 0 else M.RINT(x / scale) * scale


def _power_of_ten(k: int) -> float:
    with np.errstate(over="ignore"):  # inf from 10**309 on, as NumPy's round (whose result is then nan)
        return float(np.power(10.0, k))


around = round

# ------------------------------------------------------------------ remainders


def _integer_or_float(*args):
    """Operands of one dtype, bools as int64 (NumPy computes them in int8)."""
    xs = operands(*args)
    return [astype(x, "int64") for x in xs] if xs[0].dtype == "bool" else xs


def mod(x, y) -> Expr:
    """Elementwise remainder with the sign of y (Python's %, np.mod, np.remainder).

    d/dx = 1 and d/dy = -floor(x / y) for floats; ints give ints (x % 0 is 0, as NumPy).

    >>> import symdiff as sd
    >>> sd.evaluate(sd.mod(sd.constant([5.0, -5.0]), 3.0), {})
    array([2., 1.])
    """
    return M.MOD(*_integer_or_float(x, y))


remainder = mod


def fmod(x, y) -> Expr:
    """Elementwise remainder with the sign of x (C's fmod, np.fmod).

    d/dx = 1 and d/dy = -trunc(x / y) for floats; ints give ints (fmod(x, 0) is 0, as NumPy).

    >>> import symdiff as sd
    >>> sd.evaluate(sd.fmod(sd.constant([5.0, -5.0]), 3.0), {})
    array([ 2., -2.])
    """
    x, y = _integer_or_float(x, y)
    if x.dtype in FLOAT_DTYPES:
        return M.FMOD(x, y)
    r = M.MOD(x, y)  # exact for ints; move it to x's sign where the two conventions differ
    return where(logical_and(not_equal(r, 0), not_equal(less(r, 0), less(x, 0))), r - y, r)


def floor_divide(x, y) -> Expr:
    """Elementwise floor(x / y) as NumPy computes it (``//``); no derivative flows.

    >>> import symdiff as sd
    >>> sd.evaluate(sd.floor_divide(sd.constant([7.0, -7.0]), 2.0), {})
    array([ 3., -4.])
    """
    return M.FLOOR_DIVIDE(*_integer_or_float(x, y))


# ------------------------------------------------------------- NaN and inf


def isnan(x) -> Expr:
    """Elementwise test for NaN (x != x); False for ints and bools.

    >>> import symdiff as sd
    >>> sd.evaluate(sd.isnan(sd.constant([1.0, float("nan")])), {})
    array([False,  True])
    """
    x = _any_operand(x)
    return not_equal(x, x)


def isinf(x) -> Expr:
    """Elementwise test for +inf or -inf; False for ints and bools.

    >>> import symdiff as sd
    >>> sd.evaluate(sd.isinf(sd.constant([1.0, -float("inf")])), {})
    array([False,  True])
    """
    x = _any_operand(x)
    if x.dtype not in FLOAT_DTYPES:
        return not_equal(x, x)
    return equal(abs(x), np.inf)


def isfinite(x) -> Expr:
    """Elementwise test for a finite number (not inf, not NaN); True for ints and bools.

    >>> import symdiff as sd
    >>> sd.evaluate(sd.isfinite(sd.constant([1.0, float("inf"), float("nan")])), {})
    array([ True, False, False])
    """
    x = _any_operand(x)
    if x.dtype not in FLOAT_DTYPES:
        return equal(x, x)
    return less(abs(x), np.inf)  # NaN < inf is False


def _any_operand(x) -> Expr:
    (x,) = operands(x)
    return x


def nan_to_num(x, copy=True, nan=0.0, posinf=None, neginf=None) -> Expr:
    """np.nan_to_num: NaN -> ``nan``, inf -> ``posinf`` (default: the dtype's largest
    finite number), -inf -> ``neginf`` (default: its most negative).  ``copy`` is accepted
    for NumPy's signature; symdiff never changes its input.  The derivative passes where x
    is finite and is 0 elsewhere.

    >>> import symdiff as sd
    >>> sd.evaluate(sd.nan_to_num(sd.constant([float("nan"), float("inf"), 1.5]), posinf=9.0), {})
    array([0. , 9. , 1.5])
    """
    (x,) = operands(x)
    if x.dtype not in FLOAT_DTYPES:
        return x
    info = np.finfo(np.float32 if x.dtype == "float32" else np.float64)
    posinf = float(info.max) if posinf is None else posinf
    neginf = float(info.min) if neginf is None else neginf
    for name, value in (("nan", nan), ("posinf", posinf), ("neginf", neginf)):
        if isinstance(value, Expr) or isinstance(value, bool) or not isinstance(value, (int, float, np.number)):
            raise TypeError(f"nan_to_num: {name} must be a number, got {type(value).__name__} {value!r}")
    out = where(equal(x, -np.inf), float(neginf), x)
    out = where(equal(x, np.inf), float(posinf), out)
    return where(not_equal(x, x), float(nan), out)


def heaviside(x1, x2) -> Expr:
    """np.heaviside: 0 where x1 < 0, x2 where x1 == 0, 1 where x1 > 0 (NaN stays NaN).

    No derivative flows into x1; the derivative in x2 passes where x1 == 0.

    >>> import symdiff as sd
    >>> sd.evaluate(sd.heaviside(sd.constant([-1.0, 0.0, 2.0]), 0.5), {})
    array([0. , 0.5, 1. ])
    """
    x1, x2 = operands(x1, x2, to_float=True)
    inner = where(equal(x1, 0), x2, stop_gradient(x1))  # x1 itself only where it is NaN
    return where(less(x1, 0), 0.0, where(greater(x1, 0), 1.0, inner))
