"""Statistics with NumPy's names and semantics: ``var std average cov corrcoef``.

All are composites.  ``var`` is two-pass, as NumPy computes it: the mean first, then
the mean of squared deviations, never E[x^2] - E[x]^2, which cancels catastrophically
when the mean is large against the spread.  Its derivative, 2 (x - mean) / (N - ddof)
from the parts (the mean's own term sums to zero), keeps the same accuracy, so a
primitive would add nothing.

Known differences from NumPy, all where NumPy's answer depends on values that arrive
only when the graph runs: ``average`` with weights that sum to zero gives inf or nan
where NumPy raises ZeroDivisionError; ``cov``'s fweights and aweights given as
expressions are not checked for being non-negative (or integral); and ``cov`` squeezes
only axes that are statically of size 1.
"""

from __future__ import annotations

import math

import numpy as np

from ..ir import Expr
from ..ops import reductions as R
from ..ops import structure as S
from ..ops.leaves import const
from ..types import FLOAT_DTYPES, check_dtype, normalize_axes, promote
from . import (
    _count, as_expr, astype, broadcast_like, broadcast_to, clip, maximum, mean, operands, sqrt, transpose, where,
)
from .math import power_of_two_scale, two_norm
from .structure import diagonal, named, shape_error

__all__ = ["average", "corrcoef", "cov", "std", "var"]


def _float(a, dtype) -> Expr:
    x = as_expr(a)
    if dtype is not None:
        return astype(x, dtype)
    (x,) = operands(x, to_float=True)
    return x


def _divisor(count, ddof, dtype: str):
    """max(count - ddof, 0): a number, or a node when the count is known only at run time."""
    if isinstance(count, int):
        return max(count - ddof, 0)
    return astype(maximum(count - ddof, 0), dtype)


@named
def var(a, axis=None, dtype=None, *, ddof=0, keepdims=False) -> Expr:
    """np.var: the mean of squared deviations from the mean, divided by N - ddof.

    Two-pass and exact in form (see the module docstring).  N - ddof <= 0 gives inf or
    nan, as NumPy (which also warns).  Ints and bools give float64.

    >>> import symdiff as sd
    >>> x = sd.vector("x")
    >>> sd.evaluate(sd.var(x, ddof=1), {x: [1e9 + 1.0, 1e9 + 2.0, 1e9 + 3.0]})
    np.float64(1.0)
    """
    x, axes, deviation, count = _deviations(a, axis, dtype, ddof)
    squares = R.SUM(deviation * deviation, axes=axes, keepdims=bool(keepdims))
    return squares / _divisor(count, ddof, x.dtype)


def _deviations(a, axis, dtype, ddof):
    """(x, its axes, x - mean(x) over them, their count)."""
    x = _float(a, dtype)
    axes = normalize_axes(axis, x.ndim)
    if isinstance(ddof, Expr) or np.ndim(ddof) != 0:
        raise TypeError(f"ddof must be a static number, got {ddof!r}")
    count = _count(x, axes)
    total = R.SUM(x, axes=axes, keepdims=True)
    centre = total / (count if isinstance(count, int) else astype(count, x.dtype))
    return x, axes, x - centre, count


@named
def std(a, axis=None, dtype=None, *, ddof=0, keepdims=False) -> Expr:
    """np.std: sqrt(var), as the norm of the deviations (no overflow where the variance
    alone would).  At zero variance the value is 0, as NumPy, and the derivative is 0, the
    norm's subgradient (std is not differentiable there: it grows like |x|; JAX gives nan).

    >>> import symdiff as sd
    >>> X = sd.matrix("X")
    >>> sd.evaluate(sd.std(X, axis=0), {X: [[1.0, 2.0], [3.0, 2.0]]})
    array([1., 0.])
    """
    # the norm of the deviations over sqrt(N - ddof): var itself overflows where std is
    # finite (entries near 1e200: inf with a zero gradient; near 1e-200: 0 with a NaN one)
    x, axes, deviation, count = _deviations(a, axis, dtype, ddof)
    divisor = _divisor(count, ddof, x.dtype)
    root = math.sqrt(divisor) if isinstance(divisor, int) else sqrt(divisor)
    return two_norm(deviation, axes, bool(keepdims)) / root


def _weights_like(a: Expr, w: Expr, axes, given_axis) -> Expr:
    """w placed to broadcast against a (np.average's rules for weights of another shape)."""
    same = w.ndim == a.ndim and all(p is None or q is None or p == q for p, q in zip(a.type.shape, w.type.shape))
    if same:
        return w
    if given_axis is None:
        raise TypeError("Axis must be specified when shapes of a and weights differ")
    order = [int(x) % a.ndim for x in ((given_axis,) if isinstance(given_axis, (int, np.integer)) else given_axis)]
    wanted = tuple(a.type.shape[x] for x in order)
    if w.ndim != len(order) or any(p is not None and q is not None and p != q for p, q in zip(w.type.shape, wanted)):
        raise shape_error("Shape of weights must be consistent with shape of a along specified axis", a, w)
    w = transpose(w, [int(k) for k in np.argsort(order)])
    others = tuple(k for k in range(a.ndim) if k not in axes)
    return S.EXPAND_DIMS(w, axes=others) if others else w


@named
def average(a, axis=None, weights=None, returned=False, *, keepdims=False):
    """np.average: the mean, or sum(a * w) / sum(w) with ``weights`` (an expression gets
    derivatives too); ``returned`` also gives the sum of weights (or the count).

    Weights summing to zero give inf or nan, where NumPy raises (see module docstring).

    >>> import symdiff as sd
    >>> x, w = sd.vector("x"), sd.vector("w")
    >>> sd.evaluate(sd.average(x, weights=w), {x: [1.0, 3.0], w: [3.0, 1.0]})
    np.float64(1.5)
    """
    x = as_expr(a)
    axes = normalize_axes(axis, x.ndim)
    if weights is None:
        avg = mean(x, axes, keepdims)
        count = _count(x, axes)
        scale = const(count, avg.dtype) if isinstance(count, int) else astype(count, avg.dtype)
    else:
        w = as_expr(weights)
        dtype = promote(x.dtype, w.dtype) if x.dtype in FLOAT_DTYPES else "float64"
        dtype = dtype if dtype in FLOAT_DTYPES else "float64"
        x, w = astype(x, dtype), astype(w, dtype)
        w = _weights_like(x, w, axes, axis)
        scale = R.SUM(w, axes=axes, keepdims=bool(keepdims))  # size 1 off the axes, as NumPy's
        avg = R.SUM(x * w, axes=axes, keepdims=bool(keepdims)) / scale
    if not returned:
        return avg
    if scale.type.shape != avg.type.shape:
        scale = broadcast_to(scale, avg.type.shape) if None not in avg.type.shape else broadcast_like(scale, avg)
    return avg, scale


def _rows(m, dtype, rowvar, what):
    m = astype(as_expr(m), dtype)
    if m.ndim > 2:
        raise shape_error(f"{what} has more than 2 dimensions", m)
    flat = m.ndim < 2
    if m.ndim < 2:
        m = S.EXPAND_DIMS(m, axes=tuple(range(2 - m.ndim)))
    return m, flat


def _frequency_weights(values, name, n, integral):
    if values is None:
        return None
    if isinstance(values, Expr):
        w = values
    else:
        array = np.asarray(values, dtype=float)
        if integral and not np.all(array == np.around(array)):
            raise TypeError(f"{name} must be integer")
        if (array < 0).any():
            raise ValueError(f"{name} cannot be negative")
        w = const(array, "float64")
    if w.ndim != 1:
        raise shape_error(f"cannot handle multidimensional {name}", w)
    if w.type.shape[0] is not None and n is not None and w.type.shape[0] != n:
        raise shape_error(f"incompatible numbers of samples ({n}) and {name} ({w.type.shape[0]})", w)
    return astype(w, "float64") if w.dtype != "float64" else w


@named
def cov(m, y=None, rowvar=True, bias=False, ddof=None, fweights=None, aweights=None, *, dtype=None) -> Expr:
    """np.cov: the covariance matrix of the rows (variables) of m, observations in
    columns (or the transpose, with rowvar=False); float64 unless ``dtype`` is given.

    >>> import symdiff as sd
    >>> X = sd.matrix("X", (2, None))
    >>> sd.evaluate(sd.cov(X), {X: [[0.0, 1.0, 2.0], [2.0, 1.0, 0.0]]})
    array([[ 1., -1.],
           [-1.,  1.]])
    """
    if ddof is not None and ddof != int(ddof):
        raise ValueError("ddof must be integer")
    X = _variables(m, y, rowvar, dtype)
    if X.type.shape[0] == 0:
        return const(np.zeros((0, 0), dtype=np.float64), "float64")
    return _covariance(X, bias, ddof, fweights, aweights)


def _variables(m, y, rowvar, dtype) -> Expr:
    """cov's and corrcoef's data as one (variables, observations) matrix."""
    m = as_expr(m)
    if dtype is None:
        dtype = promote(m.dtype, "float64") if y is None else promote(promote(m.dtype, as_expr(y).dtype), "float64")
    dtype = check_dtype(dtype)
    X, _ = _rows(m, dtype, rowvar, "m")
    if not rowvar and m.ndim != 1:
        X = transpose(X)
    if y is not None and X.type.shape[0] != 0:
        Y, _ = _rows(y, dtype, rowvar, "y")
        if not rowvar and Y.type.shape[0] != 1:
            Y = transpose(Y)
        X = S.CONCATENATE(*operands(X, Y), axis=0)
    return X


def _covariance(X: Expr, bias, ddof, fweights, aweights) -> Expr:
    if ddof is None:
        ddof = 0 if bias else 1
    n = X.type.shape[1]
    fw = _frequency_weights(fweights, "fweights", n, integral=True)
    aw = _frequency_weights(aweights, "aweights", n, integral=False)
    w = fw if aw is None else aw if fw is None else fw * aw
    if w is None:
        avg = mean(X, 1, keepdims=True)
        count = _count(X, (1,))
        fact = count - ddof
    else:
        w = astype(w, X.dtype)
        w_sum = R.SUM(w, axes=(0,), keepdims=False)
        avg = R.SUM(X * w, axes=(1,), keepdims=True) / w_sum
        if ddof == 0:
            fact = w_sum
        elif aw is None:
            fact = w_sum - ddof
        else:
            fact = w_sum - ddof * R.SUM(w * astype(aw, X.dtype), axes=(0,), keepdims=False) / w_sum
    if isinstance(fact, int):
        scale = 1.0 / fact if fact > 0 else np.inf
    else:
        fact = astype(fact, X.dtype)
        fact = where(fact <= 0, 0, fact)  # NumPy warns and divides by 0
        scale = 1 / fact
    centred = X - avg
    weighted = centred if w is None else centred * w
    c = (centred @ transpose(weighted)) * scale
    squeeze = tuple(k for k, d in enumerate(c.type.shape) if d == 1)
    return S.SQUEEZE(c, axes=squeeze) if squeeze else c


@named
def corrcoef(x, y=None, rowvar=True, *, dtype=None) -> Expr:
    """np.corrcoef: the correlation coefficients, cov / (std_i std_j), clipped to [-1, 1].

    >>> import symdiff as sd
    >>> X = sd.matrix("X", (2, None))
    >>> sd.evaluate(sd.corrcoef(X), {X: [[0.0, 1.0, 2.0], [4.0, 2.0, 0.0]]})
    array([[ 1., -1.],
           [-1.,  1.]])
    """
    X = _variables(x, y, rowvar, dtype)
    if X.type.shape[0] == 0:
        return const(np.zeros((0, 0), dtype=np.float64), "float64")
    # Each variable scaled by a power of two first: correlations do not depend on it, and the
    # covariances of entries near 1e155 overflowed (NaN; 41 ulps off at 1e-155)
    scaled, _ = power_of_two_scale(X, (1,))
    c = _covariance(scaled, False, None, None, None)
    if c.ndim == 0:
        return c / c  # nan for a zero, inf or nan variance, 1 otherwise (NumPy's rule)
    d = diagonal(c)
    stddev = sqrt(d)
    c = c / S.EXPAND_DIMS(stddev, axes=(1,))
    c = c / S.EXPAND_DIMS(stddev, axes=(0,))
    return clip(c, -1, 1)

