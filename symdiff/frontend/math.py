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
    _binary, _float_operand, _unary_float, abs, astype, equal, greater, greater_equal, less, logical_and,
    not_equal, operands, power, sqrt, stop_gradient, where,
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


def power_of_two_scale(x: Expr, axes, smallest: bool = False):
    """(x * 2**-k, 2**k) with k = floor(log2(max |x|)) over ``axes`` (of min |x| when
    ``smallest``), both kept (keepdims) to broadcast: the scaled slice's largest (smallest)
    magnitude is in [1, 2), so its squares and powers neither overflow nor underflow, and a
    power of two scales exactly.  Not in ``__all__``: norms and std use it,
    ``norm(x) = 2**k norm(x * 2**-k)``, where the result is homogeneous, so k is a constant
    to differentiation.  k is clamped to +-1000 (+-100 in float32) so that 2**-k stays
    finite; a slice of zeros, infinities or NaN, or an empty one, takes k = 0 (its result is
    then 0, inf or NaN as before).

    >>> import symdiff as sd
    >>> x = sd.vector("x")
    >>> sd.evaluate(list(power_of_two_scale(x, (0,))), {x: [3e200, -1e200]})
    [array([ 1.959...,  -0.653...]), array([1.530...e+200])]
    """
    magnitude = abs(stop_gradient(x))
    from . import max as largest_of, min as smallest_of

    if smallest:
        m = smallest_of(magnitude, axis=axes, keepdims=True, initial=np.inf)
    else:
        m = largest_of(magnitude, axis=axes, keepdims=True, initial=0.0)
    limit = 1000.0 if x.dtype == "float64" else 100.0
    usable = logical_and(greater(m, 0), less(m, np.inf))
    k = floor(log2(where(usable, m, 1)))
    k = where(less(k, -limit), -limit, where(greater(k, limit), limit, k))
    return x * exp2(-k), exp2(k)


def two_norm(x: Expr, axes, keepdims: bool = False) -> Expr:
    """sqrt(sum(x * x)) over ``axes`` with no overflow or underflow of the squares: the
    private primitive ``two_norm`` (its gradient is x / norm; compiled as
    :func:`two_norm_composite`).  Not in ``__all__``: norms and std use it.

    At x = 0 the norm has no derivative.  Its gradient there is the subgradient 0 (as
    torch's; JAX's sqrt(sum(x*x)) gives 0 * inf = NaN), and its Hessian 0, the derivative of
    that constant choice: finite, so that composites smooth at 0 stay finite in every mode
    (``norm(w) ** 2`` at 0 has Hessian 0 there, not its true 2I: write ``sum(w * w)``).

    >>> import symdiff as sd
    >>> x = sd.vector("x")
    >>> sd.evaluate(two_norm(x, (0,)), {x: [3e200, 4e200]}), sd.evaluate(two_norm(x, (0,)), {x: [3e-300, 4e-300]})
    (np.float64(4.9999999999999995e+200), np.float64(5.0000000000000006e-300))
    """
    from ..ops.reductions import TWO_NORM

    return TWO_NORM(x, axes=tuple(sorted(axes)), keepdims=bool(keepdims))


def two_norm_composite(x: Expr, axes, keepdims: bool = False) -> Expr:
    """``two_norm`` as the code generators compile it.  Where the plain sum of squares is
    finite and not tiny, it is the value (to the bit); where it overflowed or lost precision
    to underflow, a second sum of squares of x scaled by a power of two (exact) gives the
    value.  Two reductions in one or two loops and no stored temporaries.  Blue's one-pass
    algorithm (three masked sums, as LAPACK's dnrm2) was measured first: its value cost
    1.5x the plain formula's at n = 1e6, but its gradient stored five arrays between loops
    (value+grad 2.3 ms against 0.89); see docs/architecture.md.  The derivative at 0 is 0."""
    plain, scale, root = two_norm_parts(x, axes, keepdims)
    return where(plain, root, root / scale)


def two_norm_parts(x: Expr, axes, keepdims: bool = False):
    """(plain, scale, root) behind :func:`two_norm_composite`: ``plain`` where the plain sum
    of squares is finite and not tiny; ``scale`` the power of two that x is scaled by (1
    where plain: then the second sum is the plain one again); ``root`` = the norm of
    x * scale, which is normal wherever the norm is not 0, inf or NaN (the norm is
    root / scale).  ``two_norm``'s slope is (x * scale) / root, formed from these nodes
    so that in a compiled gradient they are the value's own (no further pass), and right
    where the norm itself is subnormal or overflows."""
    from ..ops.reductions import TWO_NORM_RANGE, keep_axes
    from . import sum as total_of

    smallest_sum, down, up = TWO_NORM_RANGE[x.dtype]
    squares = total_of(x * x, axis=axes, keepdims=keepdims)
    plain = logical_and(greater_equal(squares, smallest_sum), less(squares, np.inf))
    # overflowed (or NaN: any scale will do) or too small; in x's dtype (two numbers make float64);
    # 1 where plain, so that root is the scaled norm everywhere (the slope's denominator)
    scale = astype(where(plain, 1.0, where(greater_equal(squares, 1), down, up)), x.dtype)
    kept = keep_axes(scale, axes, keepdims)
    rescaled = total_of((x * kept) * (x * kept), axis=axes, keepdims=keepdims)
    value = where(plain, squares, rescaled)
    positive = greater(value, 0)
    root = where(positive, sqrt(where(positive, value, 1)), value)  # 0 (derivative 0 there) or NaN
    return plain, scale, root


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
