"""Cumulative and ordering functions, with NumPy's names, signatures and semantics:
cumsum, cumprod, diff, flip, roll, sort, argsort, argmax, argmin, median, quantile and
percentile (``max``/``min`` with ``initial=`` live with the other reductions).

Only four primitives stand behind them (``symdiff.ops.ordering``): ``linear_recurrence``
(cumsum, cumprod), ``sort``, ``argsort`` and ``argmax``.  The rest are composites:
``diff``, ``flip`` and ``roll`` are slices and concatenations, ``argmin`` is ``argmax``
of an order-reversing map, and the order statistics interpolate between elements of
the sorted array, so their derivatives flow through sort's gather.
"""

from __future__ import annotations

import builtins
import operator

import numpy as np

from ..errors import DTypeError, ShapeError
from ..ir import Expr
from ..ops import ordering as O
from ..ops import reductions as R
from ..ops import structure as S
from ..ops.elementwise import NEG
from ..ops.leaves import const
from ..types import FLOAT_DTYPES, fmt_shape, normalize_axes
from . import as_expr, astype, broadcast_like, broadcast_to, concatenate, not_equal, operands, reshape, subtract

__all__ = ["argmax", "argmin", "argsort", "cumprod", "cumsum", "diff", "flip", "roll"]


# ------------------------------------------------------------------- helpers


def _one_axis(name: str, x: Expr, axis) -> int:
    """A single static axis, normalised (NumPy's cumulative and ordering functions take one)."""
    if isinstance(axis, bool) or not isinstance(axis, (int, np.integer)):
        raise TypeError(f"{name}: axis must be an int or None, got {type(axis).__name__} {axis!r}")
    if not -x.ndim <= axis < x.ndim:
        raise ShapeError(f"{name}: axis {axis} is out of bounds for {x.ndim}-d input of type {x.type!r}")
    return int(axis) % x.ndim


def _flat_or_axis(name: str, x: Expr, axis):
    """(x, axis), with axis=None meaning x flattened (as NumPy) and axis 0."""
    if axis is None:
        return (x if x.ndim == 1 else reshape(x, (-1,))), 0
    return x, _one_axis(name, x, axis)


def _numeric(x, dtype=None) -> Expr:
    """An Expr of ``dtype`` or, by default, of x's dtype with bool accumulated as int64 (NumPy)."""
    x = as_expr(x)
    if dtype is not None:
        return astype(x, dtype)
    return astype(x, "int64") if x.dtype == "bool" else x


def _take(x: Expr, axis: int, index) -> Expr:
    """x[..., index, ...] along ``axis`` with a static int or slice (basic indexing)."""
    return x[(slice(None),) * axis + (index,)]


# ---------------------------------------------------------------- cumulative


def cumsum(a, axis=None, dtype=None) -> Expr:
    """Running sum along ``axis``, as np.cumsum (axis=None: of the flattened input; bool
    counts as int64).  Compiled, it is one loop; its gradient is a reverse running sum.

    >>> import symdiff as sd
    >>> x = sd.vector("x")
    >>> sd.evaluate(sd.cumsum(x), {x: [1.0, 2.0, 3.0]})
    array([1., 3., 6.])
    >>> sd.evaluate(sd.grad(sd.sum(sd.cumsum(x)), x), {x: [1.0, 2.0, 3.0]})
    array([3., 2., 1.])
    """
    x, axis = _flat_or_axis("cumsum", _numeric(a, dtype), axis)
    _check_accumulable("cumsum", x)
    ones = const(np.ones((1,) * x.ndim), x.dtype)  # the link weights: s[j] = 1 * s[j-1] + x[j]
    return O.LINEAR_RECURRENCE(ones, x, axis=axis, reverse=False, init=None)


def cumprod(a, axis=None, dtype=None) -> Expr:
    """Running product along ``axis``, as np.cumprod (axis=None: of the flattened input).

    Its derivatives are exact at zeros, to every order: the gradient wrt x[j] is the
    product of the elements before j times a reverse running sum of the cotangent
    weighted by the elements after it, computed without division.

    >>> import symdiff as sd
    >>> x = sd.vector("x")
    >>> sd.evaluate(sd.cumprod(x), {x: [2.0, 0.0, 3.0]})
    array([2., 0., 0.])
    >>> sd.evaluate(sd.grad(sd.sum(sd.cumprod(x)), x), {x: [2.0, 0.0, 3.0]})
    array([1., 8., 0.])
    """
    x, axis = _flat_or_axis("cumprod", _numeric(a, dtype), axis)
    _check_accumulable("cumprod", x)
    # s[j] = x[j] * s[j-1] + (-0.0) from s[-1] = 1: -0.0 is the additive identity, so this
    # is the running product exactly, signed zeros included.
    negative_zero = const(np.full((1,) * x.ndim, -0.0), x.dtype)
    return O.LINEAR_RECURRENCE(x, negative_zero, axis=axis, reverse=False, init=1.0)


def _check_accumulable(name: str, x: Expr):
    if x.dtype == "bool":
        raise DTypeError(f"{name}: a bool accumulation (dtype='bool') is not supported; use an int or float dtype")


# ------------------------------------------------------------- differences


def _slab(name: str, value, x: Expr, axis: int) -> Expr:
    """``value`` as a block to join to x along ``axis``: a scalar is broadcast to x's shape
    with size 1 along axis (as np.diff does); an array must fit as it is."""
    v = as_expr(value)
    if v.ndim == 0:
        shape = tuple(1 if k == axis else d for k, d in enumerate(x.type.shape))
        if None not in shape:
            return broadcast_to(v, shape)
        # A size known only at run time: broadcast like a keepdims sum of x, which has
        # exactly that shape even when x is empty along the axis.
        ref = R.SUM(astype(x, "int64") if x.dtype == "bool" else x, axes=(axis,), keepdims=True)
        return broadcast_like(v, ref)
    if v.ndim != x.ndim:
        raise ShapeError(f"diff: {name} of type {v.type!r} must be a scalar or have the {x.ndim} dimensions of "
                         f"the input {x.type!r}")
    return v


def diff(a, n=1, axis=-1, prepend=None, append=None) -> Expr:
    """The n-th discrete difference along ``axis``, as np.diff: ``a[1:] - a[:-1]``, n times
    (for bool, ``a[1:] != a[:-1]``); ``prepend``/``append`` values are joined first.

    >>> import symdiff as sd
    >>> x = sd.vector("x")
    >>> sd.evaluate(sd.diff(x), {x: [1.0, 4.0, 9.0, 16.0]})
    array([3., 5., 7.])
    >>> sd.evaluate(sd.diff(x, n=2, prepend=0.0), {x: [1.0, 4.0, 9.0, 16.0]})
    array([2., 2., 2.])
    """
    x = as_expr(a)
    n = operator.index(n)
    if n < 0:
        raise ValueError(f"diff: order must be non-negative but got {n}")
    if n == 0:
        return x
    if x.ndim == 0:
        raise ValueError("diff requires input that is at least one dimensional")
    axis = _one_axis("diff", x, axis)
    if prepend is not None or append is not None:
        parts = ([_slab("prepend", prepend, x, axis)] if prepend is not None else []) + [x]
        parts += [_slab("append", append, x, axis)] if append is not None else []
        x = concatenate(parts, axis=axis)
    step = not_equal if x.dtype == "bool" else subtract
    for _ in range(n):
        x = step(_take(x, axis, slice(1, None)), _take(x, axis, slice(None, -1)))
    return x


# ------------------------------------------------------------ flip and roll


def flip(m, axis=None) -> Expr:
    """Reverse the order of elements along ``axis`` (int, tuple, or None for all), as np.flip.

    >>> import symdiff as sd
    >>> X = sd.matrix("X")
    >>> sd.evaluate(sd.flip(X, 1), {X: [[1.0, 2.0], [3.0, 4.0]]})
    array([[2., 1.],
           [4., 3.]])
    """
    x = as_expr(m)
    axes = normalize_axes(axis, x.ndim)
    if not axes:
        return x
    return S.SLICE(x, index=tuple((None, None, -1) if k in axes else (None, None, 1) for k in range(x.ndim)))


def roll(a, shift, axis=None) -> Expr:
    """Shift elements along ``axis`` cyclically, as np.roll (axis=None: of the flattened
    input, reshaped back; ``shift`` and ``axis`` may be tuples, broadcast together).

    A size known only at run time cannot take a nonzero shift: the shift modulo the
    size picks slice bounds, which must be static.

    >>> import symdiff as sd
    >>> x = sd.vector("x", 5)
    >>> sd.evaluate(sd.roll(x, 2), {x: [1.0, 2.0, 3.0, 4.0, 5.0]})
    array([4., 5., 1., 2., 3.])
    """
    x = as_expr(a)
    if axis is None:
        if x.ndim == 1:
            return roll(x, shift, 0)
        flat = roll(reshape(x, (-1,)), shift, 0)
        if x.type.shape.count(None) > 1:
            raise ShapeError(f"roll: with axis=None the flattened result is reshaped back to {x.type!r}, which has "
                             "more than one size known only at run time; give axis")
        return reshape(flat, tuple(-1 if d is None else d for d in x.type.shape))
    shifts = np.atleast_1d(np.asarray(shift))
    axes = np.atleast_1d(np.asarray(axis))
    if shifts.dtype.kind not in "iu" or axes.dtype.kind not in "iu" or shifts.ndim > 1 or axes.ndim > 1:
        raise TypeError(f"roll: shift and axis must be static ints or sequences of ints, got {shift!r} and {axis!r}")
    try:
        shifts, axes = np.broadcast_arrays(shifts, axes)
    except ValueError:
        raise ValueError(f"roll: 'shift' and 'axis' should be scalars or 1D sequences of the same length, got "
                         f"{shift!r} and {axis!r}") from None
    totals = {}
    for s, ax in zip(shifts.tolist(), axes.tolist()):
        ax = _one_axis("roll", x, ax)
        totals[ax] = totals.get(ax, 0) + s
    for ax, s in sorted(totals.items()):
        size = x.type.shape[ax]
        if size is None:
            if s == 0:
                continue
            raise ShapeError(f"roll: axis {ax} of {x.type!r} has a size known only at run time, so the shift {s} "
                             "modulo it cannot pick static slice bounds; declare that size")
        k = s % size if size else 0
        if k:
            x = S.CONCATENATE(_take(x, ax, slice(size - k, None)), _take(x, ax, slice(None, size - k)), axis=ax)
    return x


# ----------------------------------------------------------- argmax, argmin


def argmax(a, axis=None, keepdims=False) -> Expr:
    """Index of the first maximum along ``axis`` (None: into the flattened input), as
    np.argmax: int64, and a NaN counts as the maximum (the first NaN wins).

    >>> import symdiff as sd
    >>> x = sd.vector("x")
    >>> sd.evaluate(sd.argmax(x), {x: [1.0, 3.0, 3.0, 2.0]})
    np.int64(1)
    """
    x = as_expr(a)
    if axis is None:
        out = O.ARGMAX(reshape(x, (-1,)), axis=0, keepdims=False)
        return reshape(out, (1,) * x.ndim) if keepdims else out
    return O.ARGMAX(x, axis=_one_axis("argmax", x, axis), keepdims=bool(keepdims))


def _order_reversed(x: Expr) -> Expr:
    """A map that reverses the order of x exactly, NaN kept as NaN: -x for floats, ~x
    (= -1 - x, which never overflows) for ints, not x for bools."""
    if x.dtype in FLOAT_DTYPES:
        return NEG(x)
    if x.dtype == "int64":
        return subtract(const(-1, "int64"), x)
    return not_equal(x, True)


def argmin(a, axis=None, keepdims=False) -> Expr:
    """Index of the first minimum along ``axis`` (None: into the flattened input), as
    np.argmin: int64, and a NaN counts as the minimum (the first NaN wins).

    >>> import symdiff as sd
    >>> x = sd.vector("x")
    >>> sd.evaluate(sd.argmin(x), {x: [2.0, 1.0, 1.0, 3.0]})
    np.int64(1)
    """
    return argmax(_order_reversed(as_expr(a)), axis, keepdims)


# ------------------------------------------------------------------ sorting


def argsort(a, axis=-1, kind=None, order=None, *, stable=None) -> Expr:
    """The permutation that sorts ``a`` along ``axis`` (None: the flattened input), as
    np.argsort: int64, NaN last.  It is always the stable one (``kind='stable'``):
    NumPy's default quicksort may order ties differently.

    >>> import symdiff as sd
    >>> x = sd.vector("x")
    >>> sd.evaluate(sd.argsort(x), {x: [3.0, 1.0, 2.0, 1.0]})
    array([1, 3, 2, 0])
    """
    _check_sort_arguments("argsort", kind, order, stable)
    x, axis = _flat_or_axis("argsort", as_expr(a), axis)
    if x.ndim == 0:
        raise ShapeError("argsort: axis -1 is out of bounds for a 0-d input; use axis=None")
    return O.ARGSORT(x, axis=axis)


def _check_sort_arguments(name, kind, order, stable):
    if kind not in (None, "stable", "mergesort", "quicksort", "heapsort"):
        raise ValueError(f"{name}: kind must be one of 'quicksort', 'mergesort', 'heapsort', 'stable', got {kind!r}")
    if order is not None:
        raise ValueError(f"{name}: order= applies to structured arrays, which symdiff does not have")
    if stable is not None and not isinstance(stable, bool):
        raise TypeError(f"{name}: stable must be a bool or None, got {stable!r}")
