"""Cumulative and ordering functions, with NumPy's names, signatures and semantics:
cumsum, cumprod, diff, flip, roll, sort, argsort, argmax, argmin, median, quantile and
percentile (``max``/``min`` with ``initial=`` live with the other reductions).

Three primitives stand behind them (``symdiff.ops.ordering``): ``linear_recurrence``
(cumsum, cumprod), ``argsort`` and ``argmax``.  The rest are composites: ``sort`` gathers
x through ``argsort(x)``, ``diff``, ``flip`` and ``roll`` are slices and concatenations
(a gather for a roll over a run-time length), ``argmin`` is ``argmax`` of an
order-reversing map, and the order statistics gather and interpolate elements of the
sorted array, so their derivatives are scatters through the sorting permutation.
"""

from __future__ import annotations

import operator

import numpy as np

from .. import ir
from ..errors import DTypeError, ShapeError
from ..ir import Expr
from ..ops import creation as C
from ..ops import indexing as I
from ..ops import ordering as O
from ..ops import reductions as R
from ..ops import structure as S
from ..ops.elementwise import NEG
from ..ops.leaves import const
from ..types import FLOAT_DTYPES, normalize_axes
from . import (
    as_expr, astype, broadcast_like, broadcast_to, concatenate, equal, greater_equal, minimum, not_equal, reshape,
    subtract, where,
)
from .math import floor_divide, mod

__all__ = [
    "argmax", "argmin", "argsort", "cumprod", "cumsum", "diff", "flip", "median", "percentile", "quantile", "roll",
    "sort",
]


# ------------------------------------------------------------------- helpers


def _at() -> str:
    """`` (at file:line)`` of the user's code that called in, for error messages."""
    where = ir._user_origin()
    return f" (at {where[0]}:{where[1]})" if where else ""


def _one_axis(name: str, x: Expr, axis) -> int:
    """A single static axis, normalised (NumPy's cumulative and ordering functions take one)."""
    if isinstance(axis, bool) or not isinstance(axis, (int, np.integer)):
        raise TypeError(f"{name}: axis must be an int or None, got {type(axis).__name__} {axis!r}{_at()}")
    if not -x.ndim <= axis < x.ndim:
        raise ShapeError(f"{name}: axis {axis} is out of bounds for {x.ndim}-d input of type {x.type!r}{_at()}")
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


def _size_one_along(x: Expr, axis: int) -> Expr:
    """Zeros with x's run-time shape but size 1 along ``axis``, for any length of it (even 0):
    a keepdims sum over the empty slice x[0:0], so no work is done on x's values."""
    numeric = astype(x, "int64") if x.dtype == "bool" else x
    return R.SUM(_take(numeric, axis, slice(0, 0)), axes=(axis,), keepdims=True)


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
        raise DTypeError(f"{name}: a bool accumulation (dtype='bool') is not supported; use an int or float "
                         f"dtype{_at()}")


# ------------------------------------------------------------- differences


def _slab(name: str, value, x: Expr, axis: int) -> Expr:
    """``value`` as a block to join to x along ``axis``: a scalar is broadcast to x's shape
    with size 1 along axis (as np.diff does); an array must fit as it is."""
    v = as_expr(value)
    if v.ndim == 0:
        shape = tuple(1 if k == axis else d for k, d in enumerate(x.type.shape))
        if None not in shape:
            return broadcast_to(v, shape)
        return broadcast_like(v, _size_one_along(x, axis))
    if v.ndim != x.ndim:
        raise ShapeError(f"diff: {name} of type {v.type!r} must be a scalar or have the {x.ndim} dimensions of "
                         f"the input {x.type!r}{_at()}")
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
        raise ValueError(f"diff: order must be non-negative but got {n}{_at()}")
    if n == 0:
        return x
    if x.ndim == 0:
        raise ValueError(f"diff requires input that is at least one dimensional{_at()}")
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

    Along a static size it is two slices joined; along a size known only at run time, a
    gather (the shift modulo the size is computed when the values arrive).

    >>> import symdiff as sd
    >>> x = sd.vector("x", 5)
    >>> sd.evaluate(sd.roll(x, 2), {x: [1.0, 2.0, 3.0, 4.0, 5.0]})
    array([4., 5., 1., 2., 3.])
    """
    x = as_expr(a)
    if axis is None:
        if x.ndim == 1:
            return roll(x, shift, 0)
        if x.type.shape.count(None) > 1:  # no reshape back: gather at the unravelled positions
            return _roll_flat_run_time(x, int(np.sum(_static_ints("roll", shift))))
        flat = roll(reshape(x, (-1,)), shift, 0)
        return reshape(flat, tuple(-1 if d is None else d for d in x.type.shape))
    shifts, axes = _static_ints("roll", shift), _static_ints("roll", axis)
    try:
        shifts, axes = np.broadcast_arrays(shifts, axes)
    except ValueError:
        raise ValueError(f"roll: 'shift' and 'axis' should be scalars or 1D sequences of the same length, got "
                         f"{shift!r} and {axis!r}{_at()}") from None
    totals = {}
    for s, ax in zip(shifts.tolist(), axes.tolist()):
        ax = _one_axis("roll", x, ax)
        totals[ax] = totals.get(ax, 0) + s
    for ax, s in sorted(totals.items()):
        size = x.type.shape[ax]
        if size is None:
            x = _roll_run_time(x, s, ax) if s else x
            continue
        k = s % size if size else 0
        if k:
            x = S.CONCATENATE(_take(x, ax, slice(size - k, None)), _take(x, ax, slice(None, size - k)), axis=ax)
    return x


def _static_ints(name, value) -> np.ndarray:
    ints = np.atleast_1d(np.asarray(value))
    if ints.dtype.kind not in "iu" or ints.ndim > 1:
        raise TypeError(f"{name}: shift and axis must be static ints or sequences of ints, got {value!r}{_at()}")
    return ints


def _divmod(a: Expr, n: Expr):
    """(a // n, a % n) for int64 nodes (floored, as Python and NumPy)."""
    return floor_divide(a, n), mod(a, n)


def _roll_run_time(x: Expr, shift: int, ax: int) -> Expr:
    """roll along an axis of run-time length n: a gather at (i - shift) mod n, since the
    slice bounds of the static case would depend on n."""
    n = S.DIM(x, axis=ax)
    _, k = _divmod(const(shift, "int64"), n)
    index = C.IOTA(x, axis=ax) - k
    return I.GATHER(x, where(index < 0, index + n, index), axes=(ax,))


def _roll_flat_run_time(x: Expr, shift: int) -> Expr:
    """roll of the flattened x, reshaped back, for a shape with several run-time sizes: each
    element reads flat position (p - shift) mod size, unravelled into one index per axis."""
    if shift == 0:
        return x
    sizes = [S.DIM(x, axis=k) if d is None else const(d, "int64") for k, d in enumerate(x.type.shape)]
    total = sizes[0]
    for size in sizes[1:]:
        total = total * size
    _, k = _divmod(const(shift, "int64"), total)
    source = I.flat_positions(x) - k
    source = where(source < 0, source + total, source)
    index = []
    for size in reversed(sizes[1:]):
        source, position = _divmod(source, size)
        index.append(position)
    index.append(source)
    return I.GATHER(x, *reversed(index), axes=tuple(range(x.ndim)))


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
        out = O.ARGMAX(x if x.ndim == 1 else reshape(x, (-1,)), axis=0, keepdims=False)
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
    return O.ARGSORT(x, axis=axis)


def _check_sort_arguments(name, kind, order, stable):
    if kind not in (None, "stable", "mergesort", "quicksort", "heapsort"):
        raise ValueError(f"{name}: kind must be one of 'quicksort', 'mergesort', 'heapsort', 'stable', "
                         f"got {kind!r}{_at()}")
    if order is not None:
        raise ValueError(f"{name}: order= applies to structured arrays, which symdiff does not have{_at()}")
    if stable is not None and not isinstance(stable, bool):
        raise TypeError(f"{name}: stable must be a bool or None, got {stable!r}{_at()}")


def _take_along(x: Expr, index: Expr, axis: int) -> Expr:
    """np.take_along_axis(x, index, axis) for an int64 ``index`` of x's (run-time) shape: a
    gather whose index arrays on the other axes are the positions along them, broadcast
    like ``index`` (``sd.take_along_axis`` does not yet broadcast them over run-time sizes)."""
    if x.ndim == 1:
        return I.GATHER(x, index, axes=(0,))
    arrays = []
    for k in range(x.ndim):
        if k == axis:
            arrays.append(index)
            continue
        size = x.type.shape[k]
        positions = C.IOTA(x, axis=k) if size is None else const(np.arange(size), "int64")
        positions = S.EXPAND_DIMS(positions, axes=tuple(a for a in range(x.ndim) if a != k))
        arrays.append(broadcast_like(positions, index))
    return I.GATHER(x, *arrays, axes=tuple(range(x.ndim)))


def sort(a, axis=-1, kind=None, order=None, *, stable=None) -> Expr:
    """A sorted copy of ``a`` along ``axis`` (None: the flattened input), as np.sort: NaN
    last, ties in their original order.  It is ``a`` gathered through ``argsort(a)``, so
    its derivative moves each cotangent back to the element it came from.

    >>> import symdiff as sd
    >>> x = sd.vector("x")
    >>> sd.evaluate(sd.sort(x), {x: [3.0, 1.0, 2.0]})
    array([1., 2., 3.])
    >>> sd.evaluate(sd.grad(sd.sort(x)[0], x), {x: [3.0, 1.0, 2.0]})
    array([0., 1., 0.])
    """
    _check_sort_arguments("sort", kind, order, stable)
    x, axis = _flat_or_axis("sort", as_expr(a), axis)
    return _take_along(x, O.ARGSORT(x, axis=axis), axis)


# -------------------------------------------------------- order statistics


def _merged(name: str, x: Expr, axis):
    """(y, ax, axes): x with the reduced ``axes`` as the single axis ``ax`` of y, the other
    axes in their order (what a reduction over ``axes`` keeps)."""
    if axis is None:
        return (x if x.ndim == 1 else reshape(x, (-1,))), 0, tuple(range(x.ndim))
    axes = normalize_axes(axis, x.ndim)
    if len(axes) == 1:
        return x, axes[0], axes
    kept = [a for a in range(x.ndim) if a not in axes]
    moved = x if kept + list(axes) == list(range(x.ndim)) else S.TRANSPOSE(x, axes=tuple(kept + list(axes)))
    target = [x.type.shape[a] for a in kept]
    merged = [x.type.shape[a] for a in axes]
    target.append(None if None in merged else int(np.prod(merged, dtype=np.int64)))
    if target.count(None) > 1:
        raise ShapeError(f"{name}: reducing axes {axes} of {x.type!r} merges them with a reshape, which can infer "
                         f"only one size known at run time; declare more of the sizes{_at()}")
    return S.RESHAPE(moved, shape=tuple(-1 if d is None else d for d in target)), len(kept), axes


def _keepdims(result: Expr, axes, lead: int) -> Expr:
    """The reduced ``axes`` back as size-1 axes, after ``lead`` leading (q) axes."""
    return S.EXPAND_DIMS(result, axes=tuple(lead + a for a in axes))


def _picked(s: Expr, ax: int, index: Expr) -> Expr:
    """s[..., index, ...] along ``ax`` with the index's axes moved to the front."""
    out = I.GATHER(s, index, axes=(ax,))
    lead = index.ndim
    if lead == 0 or ax == 0:
        return out
    order = tuple(range(ax, ax + lead)) + tuple(range(ax)) + tuple(range(ax + lead, out.ndim))
    return S.TRANSPOSE(out, axes=order)


def _last(s: Expr, ax: int) -> Expr:
    return _take(s, ax, -1)


def _nan_where_last_is_nan(result: Expr, s: Expr, ax: int) -> Expr:
    """As NumPy: a slice holding a NaN sorts it last, and its result is that NaN."""
    if s.dtype not in FLOAT_DTYPES:
        return result
    last = _last(s, ax)
    return where(not_equal(last, last), last, result)


def _count(y: Expr, ax: int) -> Expr:
    return S.DIM(y, axis=ax)


def median(a, axis=None, out=None, overwrite_input=False, keepdims=False) -> Expr:
    """The median along ``axis`` (int, tuple or None for all), as np.median: the middle
    element of the sorted slice, or the mean of the middle two; NaN where a slice holds a
    NaN, NaN for an empty slice.  Its derivative goes to the middle element(s).

    >>> import symdiff as sd
    >>> x = sd.vector("x")
    >>> sd.evaluate(sd.median(x), {x: [3.0, 1.0, 4.0, 2.0]})
    np.float64(2.5)
    """
    _no_output_arguments("median", out)
    x = as_expr(a)
    y, ax, axes = _merged("median", x, axis)
    dtype = x.dtype if x.dtype in FLOAT_DTYPES else "float64"  # np.mean of ints and bools is float64
    n = y.type.shape[ax]
    if n == 0:
        numeric = astype(y, "int64") if y.dtype == "bool" else y
        result = broadcast_like(const(np.nan, dtype), R.SUM(numeric, axes=(ax,), keepdims=False))
    else:
        s = sort(y, axis=ax)
        if s.dtype != dtype:
            s = astype(s, dtype)
        if n is not None:
            middle = _take(s, ax, (n - 1) // 2)
            result = middle if n % 2 else (_take(s, ax, n // 2 - 1) + _take(s, ax, n // 2)) / 2
        else:
            # Positions (n-1)//2 and n//2 of [nan] + sorted: the NaN block answers an empty slice.
            padded = S.CONCATENATE(broadcast_like(const(np.nan, dtype), _size_one_along(s, ax)), s, axis=ax)
            # (n-1)//2 + 1 and n//2 + 1, except 0 (the NaN block) for n = 0
            count = _count(y, ax)
            low = floor_divide(count + 1, 2)
            high = minimum(floor_divide(count, 2) + 1, count)
            lower, upper = _picked(padded, ax, low), _picked(padded, ax, high)
            result = where(equal(low, high), lower, (lower + upper) / 2)
            s = padded  # its last element is the slice's last, or the NaN block's
        result = _nan_where_last_is_nan(result, s, ax)
    return _keepdims(result, axes, 0) if keepdims else result


def _no_output_arguments(name, out, overwrite_input=False):
    if out is not None:
        raise TypeError(f"{name}: out= is not supported (symdiff results are new arrays){_at()}")


def quantile(a, q, axis=None, out=None, overwrite_input=False, method="linear", keepdims=False) -> Expr:
    """The q-th quantiles along ``axis``, as np.quantile with ``method="linear"``: the
    sorted slice interpolated at position (n-1)*q, with NumPy's rounding and dtypes; the
    dimensions of ``q`` (a static number or array in [0, 1]) come first.  NaN where a slice
    holds a NaN.  Its derivative goes to the two neighbouring elements, weighted.

    >>> import symdiff as sd
    >>> x = sd.vector("x")
    >>> sd.evaluate(sd.quantile(x, [0.25, 0.5]), {x: [4.0, 1.0, 3.0, 2.0]})
    array([1.75, 2.5 ])
    """
    weak = type(q) in (int, float)
    q = _static_q("quantile", q)
    if not _valid_fraction(q):
        raise ValueError(f"quantile: Quantiles must be in the range [0, 1]{_at()}")
    return _quantile("quantile", a, q, weak, axis, out, method, keepdims)


def percentile(a, q, axis=None, out=None, overwrite_input=False, method="linear", keepdims=False) -> Expr:
    """The q-th percentiles along ``axis``: ``quantile(a, q / 100, ...)``, as np.percentile.

    >>> import symdiff as sd
    >>> x = sd.vector("x")
    >>> sd.evaluate(sd.percentile(x, 50), {x: [4.0, 1.0, 3.0, 2.0]})
    np.float64(2.5)
    """
    weak = type(q) in (int, float)
    q = np.true_divide(_static_q("percentile", q), 100)
    if not _valid_fraction(q):
        raise ValueError(f"percentile: Percentiles must be in the range [0, 100]{_at()}")
    return _quantile("percentile", a, q, weak, axis, out, method, keepdims)


def _static_q(name, q) -> np.ndarray:
    if isinstance(q, Expr):
        raise TypeError(f"{name}: q must be a static number or array (it picks the positions to interpolate "
                        f"between), not an expression{_at()}")
    q = np.asanyarray(q)
    if q.dtype.kind not in "biuf" or q.dtype.kind == "b":
        raise TypeError(f"{name}: q must be numbers, got dtype {q.dtype}{_at()}")
    if q.ndim > 2:
        raise ValueError(f"{name}: q must be a scalar or 1d{_at()}")
    return q


def _valid_fraction(q: np.ndarray) -> bool:
    return bool(q.size == 0 or (np.min(q) >= 0 and np.max(q) <= 1))


def _quantile(name, a, q, weak, axis, out, method, keepdims) -> Expr:
    _no_output_arguments(name, out)
    if method != "linear":
        raise ValueError(f"{name}: only method='linear' (NumPy's default) is supported, got {method!r}{_at()}")
    x = as_expr(a)
    if x.dtype == "bool":
        raise TypeError(f"{name}: bool input is not supported (NumPy's linear interpolation subtracts bools){_at()}")
    y, ax, axes = _merged(name, x, axis)
    n = y.type.shape[ax]
    if n == 0:
        raise IndexError(f"{name}: axis {ax} of {y.type!r} is empty (NumPy raises IndexError too){_at()}")
    s = sort(y, axis=ax)
    q_dtype = "float32" if q.dtype == np.float32 else "float64"
    if q.dtype.kind in "iu":  # integer positions: no interpolation, the values keep their dtype (NumPy)
        if n is not None:
            index = const((n - 1) * q.astype(np.int64), "int64")
        else:
            index = (_count(y, ax) - 1) * const(q.astype(np.int64), "int64")
        result = _picked(s, ax, index)
    elif n is not None:
        result = _static_lerp(s, ax, n, q, weak)
    else:
        result = _run_time_lerp(s, y, ax, q, q_dtype, weak)
    result = _nan_where_last_is_nan(result, s, ax)
    return _keepdims(result, axes, q.ndim) if keepdims else result


def _static_lerp(s: Expr, ax: int, n: int, q: np.ndarray, weak: bool) -> Expr:
    """NumPy's linear method with a static slice length: positions and weights are numbers."""
    virtual = (n - 1) * q
    previous = np.floor(virtual)
    following = previous + 1
    above = virtual >= n - 1
    previous = np.where(above, -1, previous)  # NumPy takes the last element twice there, with
    following = np.where(above, -1, following)  # weight virtual - (-1): an exact 0 times (b - a)
    gamma = np.asarray(virtual - previous, dtype=virtual.dtype)
    lower = _picked(s, ax, const(previous.astype(np.int64), "int64"))
    upper = _picked(s, ax, const(following.astype(np.int64), "int64"))
    if weak:  # NumPy passes a Python float: it takes the dtype of the values
        t = float(gamma)
        return _lerp(lower, upper, t, 1 - t, t >= 0.5)
    shape = gamma.shape + (1,) * (lower.ndim - gamma.ndim)
    dtype = "float32" if gamma.dtype == np.float32 else "float64"
    t = const(gamma.reshape(shape), dtype)
    one_minus_t = const((1 - gamma).reshape(shape), dtype)
    upper_half = gamma.reshape(shape) >= 0.5
    if upper_half.all() or not upper_half.any():
        return _lerp(lower, upper, t, one_minus_t, bool(upper_half.all()))
    return _lerp(lower, upper, t, one_minus_t, const(upper_half, "bool"))


def _run_time_lerp(s: Expr, y: Expr, ax: int, q: np.ndarray, q_dtype: str, weak: bool) -> Expr:
    """NumPy's linear method when the slice length is known only at run time."""
    last = astype(_count(y, ax) - 1, q_dtype)
    virtual = last * const(q, q_dtype)
    previous = astype(virtual, "int64")  # truncation is the floor: virtual >= 0 (n = 0 fails in the gather)
    above = greater_equal(virtual, last)
    previous = where(above, -1, previous)
    following = where(above, -1, previous + 1)
    gamma = virtual - astype(previous, q_dtype)
    lower, upper = _picked(s, ax, previous), _picked(s, ax, following)
    shape = tuple(q.shape) + (1,) * (lower.ndim - q.ndim)
    if shape != tuple(q.shape):
        gamma = reshape(gamma, shape)
    one_minus_gamma = 1 - gamma
    if weak:  # a Python float in NumPy: rounded to the values' dtype
        dtype = lower.dtype if lower.dtype in FLOAT_DTYPES else "float64"
        gamma, one_minus_gamma = astype(gamma, dtype), astype(one_minus_gamma, dtype)
    return _lerp(lower, upper, gamma, one_minus_gamma, greater_equal(gamma, 0.5))


def _lerp(a: Expr, b: Expr, t, one_minus_t, upper_half) -> Expr:
    """NumPy's _lerp: a + (b - a) * t, or b - (b - a) * (1 - t) where t >= 0.5 (static bool or mask)."""
    difference = b - a
    if upper_half is True:
        return b - difference * one_minus_t
    if upper_half is False:
        return a + difference * t
    return where(upper_half, b - difference * one_minus_t, a + difference * t)
