"""``sd.special``: special functions with SciPy's names (``scipy.special``), so a loss
written with ``scipy.special.gammaln`` ports as ``sd.special.gammaln``.  SciPy is not
needed: symdiff has its own implementations (``symdiff.ops.special``,
``symdiff.ops.special_scalar``), tested against SciPy and mpmath.

Every function differentiates to any order: gammaln -> digamma -> polygamma(1) -> ...
(``polygamma(n, x)`` is one primitive whose derivative is ``polygamma(n + 1, x)``), and
log_ndtr's derivative phi/Phi is itself a primitive that stays accurate at x = -1e300.
Ints are taken as float64 and float32 stays float32, as in SciPy.

>>> import symdiff as sd
>>> x = sd.scalar("x")
>>> sd.evaluate(sd.derivative(sd.special.gammaln(x), x, order=2), {x: 1.0})  # trigamma(1) = pi**2/6
np.float64(1.6449340668482264)
"""

from __future__ import annotations

import numpy as np

from .frontend import (
    _float_operand, _unary_float, equal, greater, less, less_equal, log, log1p, logical_and, logical_or, operands, sigmoid,
    where,
)
from .frontend.math import arctanh
from .ir import Expr
from .ops import special as S
from .ops.elementwise import MUL_LOG

__all__ = ["digamma", "erf", "erfc", "erfinv", "expit", "gammaln", "log_ndtr", "logit", "ndtr", "polygamma", "psi",
           "xlog1py", "xlogy"]

erf = _unary_float("erf", S.ERF, "The error function 2/sqrt(pi) * integral of exp(-t**2) from 0 to x.",
                   "sd.evaluate(sd.special.erf(sd.constant(0.5)), {})", "np.float64(0.5204998778130465)")
erfc = _unary_float("erfc", S.ERFC, "1 - erf(x), accurate where erf(x) is close to 1.",
                    "sd.evaluate(sd.special.erfc(sd.constant(10.0)), {})", "np.float64(2.088487583762545e-45)")
erfinv = _unary_float("erfinv", S.ERFINV, "The inverse of erf: nan outside [-1, 1], +-inf at +-1.",
                      "sd.evaluate(sd.special.erfinv(sd.constant(0.5)), {})", "np.float64(0.4769362762044699)")
gammaln = _unary_float("gammaln", S.GAMMALN, "log|Gamma(x)|; inf at the poles 0, -1, -2, ...",
                       "sd.evaluate(sd.special.gammaln(sd.constant(5.0)), {})", "np.float64(3.1780538303479458)")
ndtr = _unary_float("ndtr", S.NDTR, "The standard normal CDF, accurate in both tails.",
                    "sd.evaluate(sd.special.ndtr(sd.constant(-30.0)), {})", "np.float64(4.906713927148187e-198)")
log_ndtr = _unary_float("log_ndtr", S.LOG_NDTR, "log of the standard normal CDF, for any x (no underflow).",
                        "sd.evaluate(sd.special.log_ndtr(sd.constant(-40.0)), {})", "np.float64(-804.6084420137538)")


def expit(x) -> Expr:
    """The logistic function 1 / (1 + exp(-x)), without overflow (``sd.sigmoid``).

    >>> import symdiff as sd
    >>> sd.evaluate(sd.special.expit(sd.constant([-1000.0, 0.0])), {})
    array([0. , 0.5])
    """
    return sigmoid(x)


def polygamma(n, x) -> Expr:
    """The n-th derivative of digamma (``n`` a static int >= 0), as scipy.special.polygamma;
    its derivative is polygamma(n + 1, x).  At the poles 0, -1, ... it is (-1)**(n+1) inf.

    >>> import symdiff as sd
    >>> sd.evaluate(sd.special.polygamma(1, sd.constant(1.0)), {})
    np.float64(1.6449340668482264)
    """
    if isinstance(n, (bool, np.bool_)) or not isinstance(n, (int, np.integer)):
        raise TypeError(f"polygamma: the order n must be a static int, got {type(n).__name__} {n!r}")
    if n < 0:
        raise ValueError(f"polygamma: the order n must be >= 0, got {n}")
    return S.POLYGAMMA(_float_operand(x), n=int(n))


def digamma(x) -> Expr:
    """psi(x) = d/dx gammaln(x) (polygamma with n = 0); -inf at +0, nan at -1, -2, ...

    >>> import symdiff as sd
    >>> sd.evaluate(sd.special.digamma(sd.constant(1.0)), {})  # -Euler's gamma
    np.float64(-0.5772156649015329)
    """
    return polygamma(0, x)


psi = digamma


def logit(p) -> Expr:
    """log(p / (1 - p)), the inverse of expit; -inf at 0, inf at 1, nan outside [0, 1].

    On [1/4, 3/4] it is 2 arctanh(2p - 1) (2p - 1 is exact there), elsewhere
    log(p) - log(1 - p): full relative accuracy everywhere, also of the derivatives, which
    are +-inf (not NaN) at 0 and 1.

    >>> import symdiff as sd
    >>> sd.evaluate(sd.special.logit(sd.constant([0.5, 0.75, 1e-10])), {})
    array([  0.        ,   1.09861229, -23.02585093])
    """
    p = _float_operand(p)
    # below 1/4 and above 3/4: log(p) - log(1 - p), whose terms have opposite signs there (no
    # cancellation; 1 - p is exact above 1/2).  Above 3/4 it replaced arctanh(2p - 1), whose
    # derivative divides by (1 - u)(1 + u): at p = 1 the derivative of that product met
    # the infinite quotient as 0 * inf, so logit''(1) was NaN (true +inf) in both backends
    low = logical_or(less(p, 0.25), greater(p, 0.75))
    # each branch sees a harmless argument where it is not chosen, so its derivative stays finite
    # + 0.0 turns -0.0 into +0.0 (-0.0 == 0.0, the same point of the domain): the derivatives
    # of log(small), 1/small and 2/small**3, were -inf at -0.0 where they are +inf at +0.0.
    # The rewrite keeps x + 0.0 wherever x may be -0.0 (rewrite.py's sign analysis)
    small = where(low, p, 0.125) + 0.0
    central = where(low, 0.5, p)
    # log(p) - log(1 - p), not log(p / (1 - p)): the quotient's derivative 1/q overflows at a
    # subnormal p and met inf - inf in the second derivative (logit'' by sd.hvp was NaN at
    # 5e-324, true -inf), and its second derivative lost up to 6.8 ulps (float64, 6.4 in
    # float32) to cancellation; these derivatives are 1/p + 1/(1-p) and -1/p**2 + 1/(1-p)**2
    # (2.2 ulps worst), which overflow to the right infinity and do not cancel for p < 1/4.
    # log(1 - p), not log1p(-p): 1 - p rounds by an ulp of 1 in a value of at least log(3)
    # (2 ulps worst), and both logs take the vector-math pass.  Value+grad on 1e6 elements
    # 6.8 -> 7.9 ms (log1p: 9.9 ms; the quotient with log(p) taken below 2**-60, which fixes
    # the NaN only, 7.1 ms)
    return where(low, log(small) - log(1 - small), arctanh(central * 2 - 1) * 2)


def _x_times_log(x, y, times_log, stand_in, singular):
    x, y = operands(x, y, to_float=True)
    # 0 where x == 0 and the log of y is -inf, nan (y outside the domain) or inf: y is replaced
    # by a harmless value there, so value and derivatives stay finite; a NaN y still gives NaN
    special = logical_and(equal(x, 0), singular(y))
    # + 0.0 turns the -0.0 of 0 * log(y < 1) into SciPy's +0.0 and changes nothing else
    return times_log(x, where(special, stand_in, y)) + 0.0


def xlogy(x, y) -> Expr:
    """x * log(y), and 0 where x == 0 (also for y == 0), as scipy.special.xlogy (NaN y gives NaN).

    Derivatives: log(y) in x (also at x = 0 when y > 0) and x / y in y; both are 0 where
    x == 0 and y is 0, negative or inf (JAX gives -inf and nan there).

    >>> import symdiff as sd
    >>> sd.evaluate(sd.special.xlogy(sd.constant([0.0, 2.0]), sd.constant([0.0, 3.0])), {})
    array([0.        , 2.19722458])
    """
    # mul_log: its forward rule forms x / y before the tangent (inf at a subnormal y)
    return _x_times_log(x, y, MUL_LOG, 1.0, lambda y: logical_or(less_equal(y, 0), equal(y, np.inf)))


def xlog1py(x, y) -> Expr:
    """x * log1p(y), and 0 where x == 0 (also for y == -1), as scipy.special.xlog1py.

    >>> import symdiff as sd
    >>> sd.evaluate(sd.special.xlog1py(sd.constant([0.0, 2.0]), sd.constant([-1.0, 1e-20])), {})
    array([0.e+00, 2.e-20])
    """
    return _x_times_log(x, y, lambda a, b: a * log1p(b), 0.0, lambda y: logical_or(less_equal(y, -1), equal(y, np.inf)))

