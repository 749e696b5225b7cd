"""Structure and constructors, with NumPy's names, signatures and semantics.

Constructors: ``eye zeros ones full arange linspace zeros_like ones_like full_like``.
Structure: ``pad tile repeat swapaxes moveaxis diagonal diag trace tril triu outer
inner tensordot kron split array_split hstack vstack column_stack atleast_1d
atleast_2d ravel``.

All are composites of existing primitives (slices, reshapes, transposes, broadcasts,
concatenation, ``where``, ``matmul``, sums), so their derivatives come from their
parts, plus one primitive, ``iota`` (``symdiff.ops.creation``): the index along an
axis, which nothing else gives when the axis length is known only at run time.
``tril``, ``triu``, ``eye``, ``diag`` and (for run-time sizes) ``diagonal`` and
``trace`` compare such indices.

Sizes may be run-time values: a shape entry or a length may be ``x.shape[k]`` for a
``None`` dimension (an int64 ``dim`` node), as in NumPy code written against
``x.shape``; any other computed int is refused, since its value would decide a shape.
"""

from __future__ import annotations

import builtins
import functools
import math
import threading

import numpy as np

from .. import ir
from ..errors import ShapeError, SymdiffError
from ..ir import Expr
from ..ops import creation as C
from ..ops import indexing as I
from ..ops import reductions as R
from ..ops import structure as S
from ..ops.leaves import const, numpy_dtype
from ..types import FLOAT_DTYPES, check_dtype, dtype_of_array, fmt_shape
from . import (
    as_expr, astype, broadcast_like, broadcast_to, concatenate, constant, equal, greater_equal, less_equal, multiply,
    operands, transpose, where,
)

__all__ = [
    "arange", "array_split", "atleast_1d", "atleast_2d", "column_stack", "diag", "diagonal", "eye", "full",
    "full_like", "hstack", "inner", "kron", "linspace", "moveaxis", "ones", "ones_like", "outer", "pad", "ravel",
    "repeat", "split", "swapaxes", "tensordot", "tile", "trace", "tril", "triu", "vstack", "zeros", "zeros_like",
]

# ------------------------------------------------------------------ errors

_depth = threading.local()


def named(fn):
    """Errors raised while ``fn`` builds its graph name ``fn`` (the function the user
    called), even when a primitive or another composite deeper down found them."""
    name = fn.__name__

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        depth = getattr(_depth, "value", 0)
        _depth.value = depth + 1
        try:
            return fn(*args, **kwargs)
        except (SymdiffError, TypeError, ValueError, IndexError) as exc:
            message = str(exc)
            if depth or message.startswith(f"{name}:") or not _rebuildable(exc):
                raise
            raise _rebuild(exc, f"{name}: {message}") from None
        finally:
            _depth.value = depth

    return wrapper


def _rebuildable(exc) -> bool:
    return isinstance(exc, SymdiffError) or type(exc) in (TypeError, ValueError, IndexError)


def _rebuild(exc, message):
    try:
        new = type(exc)(message)
    except Exception:  # an exception class that wants other arguments: keep it as it is
        return exc
    new.__cause__ = exc.__cause__
    return new


def user_line() -> str:
    """`` (at file:line)`` for the user's code that called into symdiff, or ''."""
    where = ir._user_origin()
    return f" (at {where[0]}:{where[1]})" if where else ""


def describe(*xs) -> str:
    return " and ".join(f"{fmt_shape(x.type.shape)} {x.dtype}" for x in xs)


def shape_error(reason: str, *xs) -> ShapeError:
    """A ShapeError naming the inputs' shapes and the user's line (the caller's name is
    added by ``named``)."""
    shapes = f"; input shapes {describe(*xs)}" if xs else ""
    return ShapeError(f"{reason}{shapes}{user_line()}")


# ------------------------------------------------------------------ helpers

SMALL_CONSTANT = 1024
"""Elements up to which a constructor's result is stored as a constant; a bigger one is
computed from index vectors (an identity of 10^4 x 10^4 would be 800 MB in the graph)."""


def static_int(value, what: str, minimum=None) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{what} must be a static int, got {type(value).__name__} {value!r}")
    if minimum is not None and value < minimum:
        raise ValueError(f"{what} must be >= {minimum}, got {value}")
    return int(value)


def one_axis(axis, ndim: int, what="axis") -> int:
    axis = static_int(axis, what)
    if not -ndim <= axis < ndim:
        raise shape_error(f"{what} {axis} is out of bounds for a {ndim}-d input")
    return axis % ndim


def size_arg(value, what: str):
    """A length: a static int >= 0, or a run-time size ``x.shape[k]`` (a ``dim`` node)."""
    if isinstance(value, Expr):
        if value.op is S.DIM:
            return value
        raise TypeError(
            f"{what} must be a static int or a run-time size x.shape[k], got the computed expression {value!r}: "
            "its value would decide a shape, which a graph built before values arrive cannot have"
        )
    return static_int(value, what, minimum=0)


def shape_arg(shape, what="shape") -> list:
    """A shape: ints and run-time sizes (``x.shape`` works as is)."""
    if isinstance(shape, Expr) or isinstance(shape, (int, np.integer)):
        shape = (shape,)
    try:
        entries = list(shape)
    except TypeError:
        raise TypeError(f"{what} must be an int or a sequence of ints, got {type(shape).__name__} {shape!r}") from None
    return [size_arg(d, f"{what} entry") for d in entries]


def index_vector(size) -> Expr:
    """0, 1, ..., size-1 as int64: a constant for a static size, ``iota`` for a run-time one."""
    if isinstance(size, Expr):
        x, axis = size.inputs[0], size.params["axis"]
        return C.IOTA(x, axis=axis)
    return const(np.arange(size, dtype=np.int64), "int64")


def axis_index(x: Expr, axis: int) -> Expr:
    """The index along ``axis`` of x (its run-time length), as an int64 vector."""
    if x.type.shape[axis] is not None:
        return const(np.arange(x.type.shape[axis], dtype=np.int64), "int64")
    return C.IOTA(x, axis=axis)


def along(index: Expr, axis: int, ndim: int) -> Expr:
    """A 1-d ``index`` placed along ``axis`` of an ``ndim``-d result (size 1 elsewhere)."""
    others = tuple(a for a in range(ndim) if a != axis)
    return S.EXPAND_DIMS(index, axes=others) if others else index


def filled(value: Expr, entries) -> Expr:
    """``value`` (0-d or broadcastable) broadcast to a shape of ints and run-time sizes."""
    if builtins.all(isinstance(d, int) for d in entries):
        shape = tuple(entries)
        return value if value.type.shape == shape else broadcast_to(value, shape)
    ndim = len(entries)
    # One array with the whole shape: then broadcast_like(value, it) is a view.
    sources = {d.inputs[0] for d in entries if isinstance(d, Expr)}
    if len(sources) == 1:
        (x,) = sources
        if x.ndim == ndim and builtins.all(
                (isinstance(d, Expr) and d.params["axis"] == k) or d == x.type.shape[k] for k, d in enumerate(entries)):
            return broadcast_like(value, x)
    ref = broadcast_to(const(0, "int64"), tuple(1 if isinstance(d, Expr) else d for d in entries))
    for k, d in enumerate(entries):
        if isinstance(d, Expr):
            ref = ref + along(index_vector(d), k, ndim)
    return broadcast_like(value, ref)


def numpy_cast(value, dtype: str) -> Expr:
    """A constant of ``value`` cast to ``dtype`` unsafely, as NumPy's assignments do."""
    with np.errstate(all="ignore"):
        return const(np.asarray(value).astype(numpy_dtype(dtype)), dtype)


def take_slice(x: Expr, axis: int, start, stop, step=1) -> Expr:
    """x[..., start:stop:step, ...] along ``axis`` (static bounds)."""
    index = tuple((start, stop, step) if a == axis else (None, None, 1) for a in range(x.ndim))
    return x if (start, stop, step) == (None, None, 1) else S.SLICE(x, index=index)


def take_at(x: Expr, axis: int, indices) -> Expr:
    """x at static ``indices`` along ``axis`` (one gather; negative indices count from the
    end; an index outside the axis raises IndexError, when values arrive for a run-time
    length), so it doubles as a check that the axis is long enough."""
    return I.GATHER(x, const(np.asarray(indices, dtype=np.int64), "int64"), axes=(axis,))


def size_one_along(x: Expr, axis: int) -> Expr:
    """Zeros of x's dtype and run-time shape, but of size 1 along ``axis``; no work is done
    on x's values (a sum over an empty slice), and it exists for any length of the axis."""
    numeric = astype(x, "int64") if x.dtype == "bool" else x
    empty = take_slice(numeric, axis, 0, 0)
    return astype(R.SUM(empty, axes=(axis,), keepdims=True), x.dtype)


def stretch(x: Expr, axis: int, count: int) -> Expr:
    """x (statically of size 1 along ``axis``) repeated ``count`` times along it."""
    shape = list(x.type.shape)
    shape[axis] = count
    if None not in shape:
        return broadcast_to(x, tuple(shape))
    mask = const(np.ones((count,) + (1,) * (x.ndim - axis - 1), dtype=bool), "bool")
    return where(mask, x, x)  # the broadcast of a run-time shape, as a select


def block(x: Expr, axis: int, width: int, value: Expr) -> Expr:
    """``value`` (0-d, x's dtype) in x's run-time shape, but ``width`` long along ``axis``."""
    shape = list(x.type.shape)
    shape[axis] = width
    if None not in shape:
        return broadcast_to(value, tuple(shape))
    mask = const(np.ones((width,) + (1,) * (x.ndim - axis - 1), dtype=bool), "bool")
    return where(mask, value, size_one_along(x, axis))


def empty_along(x: Expr, axis: int) -> Expr:
    """x's dtype and run-time shape, but statically empty along ``axis``."""
    if x.type.shape[axis] is not None:
        return take_slice(x, axis, 0, 0)
    return take_slice(size_one_along(x, axis), axis, 0, 0)


def merge_axes(x: Expr, groups) -> Expr | None:
    """Reshape merging each group of consecutive axes into one, or None when the
    reshape cannot be expressed (its run-time sizes fall in more than one group)."""
    if all(len(group) == 1 for group in groups):
        return x
    target, unknown = [], 0
    for group in groups:
        dims = [x.type.shape[a] for a in group]
        if None in dims:
            unknown += 1
            target.append(-1)
        else:
            target.append(math.prod(dims))
    return None if unknown > 1 else S.RESHAPE(x, shape=tuple(target))


def reshape_or_fail(x: Expr, target, what: str) -> Expr:
    if list(target).count(None) > 1:
        raise shape_error(
            f"{what} needs a reshape to {fmt_shape(tuple(target))}, which has more than one size known only at run "
            "time (a reshape can infer one); declare more of the sizes", x)
    return S.RESHAPE(x, shape=tuple(-1 if d is None else d for d in target))


# ----------------------------------------------------------- constructors


@named
def zeros(shape, dtype=float) -> Expr:
    """np.zeros: entries may be ints or run-time sizes (``x.shape[0]``, or ``x.shape``).

    >>> import symdiff as sd
    >>> X = sd.matrix("X", (None, 3))
    >>> sd.zeros((X.shape[0], 2)).type
    f64[?,2]
    >>> sd.evaluate(sd.zeros(X.shape, dtype="int64"), {X: np.ones((2, 3))})
    array([[0, 0, 0],
           [0, 0, 0]])
    """
    dtype = check_dtype(dtype)
    return filled(const(0, dtype), shape_arg(shape))


@named
def ones(shape, dtype=float) -> Expr:
    """np.ones: entries may be ints or run-time sizes.

    >>> import symdiff as sd
    >>> sd.evaluate(sd.ones(3), {})
    array([1., 1., 1.])
    """
    dtype = check_dtype(dtype)
    return filled(const(1, dtype), shape_arg(shape))


def _fill_value(fill_value, dtype) -> Expr:
    if isinstance(fill_value, Expr):
        return fill_value if dtype is None else astype(fill_value, dtype)
    array = np.asarray(fill_value)
    if array.dtype.kind not in "biuf":
        raise TypeError(f"fill_value must be a number, an array or an expression, got {type(fill_value).__name__}")
    if dtype is None:
        return constant(array)
    return numpy_cast(array, check_dtype(dtype))


@named
def full(shape, fill_value, dtype=None) -> Expr:
    """np.full: ``fill_value`` (a number, array or expression, which then gets the
    derivative) broadcast to ``shape``; the dtype is fill_value's unless given.

    >>> import symdiff as sd
    >>> a = sd.scalar("a")
    >>> y = sd.full((2, 2), a)
    >>> sd.evaluate(y, {a: 3.0})
    array([[3., 3.],
           [3., 3.]])
    >>> sd.evaluate(sd.grad(sd.sum(y), a), {a: 3.0})
    np.float64(4.0)
    """
    value = _fill_value(fill_value, dtype)
    entries = shape_arg(shape)
    if value.ndim > len(entries):
        raise shape_error(f"fill_value of shape {fmt_shape(value.type.shape)} does not broadcast to a "
                          f"{len(entries)}-d shape", value)
    return filled(value, entries)


def _like(a, dtype, shape, value_for) -> Expr:
    a = as_expr(a)
    dtype = a.dtype if dtype is None else check_dtype(dtype)
    value = value_for(dtype)
    if shape is not None:
        return filled(value, shape_arg(shape))
    if value.ndim > a.ndim:
        raise shape_error(f"fill_value of shape {fmt_shape(value.type.shape)} does not broadcast to the "
                          "shape of a", value, a)
    if value.type.shape == a.type.shape:
        return value
    return broadcast_to(value, a.type.shape) if None not in a.type.shape else broadcast_like(value, a)


@named
def zeros_like(a, dtype=None, shape=None) -> Expr:
    """np.zeros_like: zeros with a's (run-time) shape and dtype (or ``dtype``, ``shape``).

    >>> import symdiff as sd
    >>> x = sd.vector("x")
    >>> sd.evaluate(sd.zeros_like(x), {x: [1.0, 2.0]})
    array([0., 0.])
    """
    return _like(a, dtype, shape, lambda d: const(0, d))


@named
def ones_like(a, dtype=None, shape=None) -> Expr:
    """np.ones_like: ones with a's (run-time) shape and dtype.

    >>> import symdiff as sd
    >>> x = sd.vector("x", dtype="int64")
    >>> sd.evaluate(sd.ones_like(x), {x: [5, 6]})
    array([1, 1])
    """
    return _like(a, dtype, shape, lambda d: const(1, d))


@named
def full_like(a, fill_value, dtype=None, shape=None) -> Expr:
    """np.full_like: ``fill_value`` broadcast to a's (run-time) shape, cast to a's dtype
    (unsafely, as NumPy: 2.7 fills an int64 array with 2) unless ``dtype`` is given.

    >>> import symdiff as sd
    >>> x = sd.vector("x", dtype="int64")
    >>> sd.evaluate(sd.full_like(x, 2.7), {x: [5, 6]})
    array([2, 2])
    """
    def value_for(d):
        if isinstance(fill_value, Expr):
            return astype(fill_value, d)
        return numpy_cast(fill_value, d)

    return _like(a, dtype, shape, value_for)


@named
def eye(N, M=None, k=0, dtype=float) -> Expr:
    """np.eye: ones on the k-th diagonal of an N x M matrix; N and M may be run-time
    sizes (``sd.eye(X.shape[0])``).

    >>> import symdiff as sd
    >>> sd.evaluate(sd.eye(2, 3, k=1, dtype="int64"), {})
    array([[0, 1, 0],
           [0, 0, 1]])
    """
    dtype = check_dtype(dtype)
    rows = size_arg(N, "N")
    cols = rows if M is None else size_arg(M, "M")
    k = static_int(k, "k")
    if isinstance(rows, int) and isinstance(cols, int) and rows * cols <= SMALL_CONSTANT:
        return const(np.eye(rows, cols, k, dtype=numpy_dtype(dtype)), dtype)
    i = S.EXPAND_DIMS(index_vector(rows), axes=(1,))
    j = S.EXPAND_DIMS(index_vector(cols), axes=(0,))
    return astype(equal(i + k, j), dtype)


@named
def arange(start, stop=None, step=None, dtype=None) -> Expr:
    """np.arange.  With static numbers, a constant; the stop may also be a run-time size
    (``sd.arange(x.shape[0])``, with a static start >= 0 and step > 0).

    >>> import symdiff as sd
    >>> sd.evaluate(sd.arange(1, 2, 0.25), {})
    array([1.  , 1.25, 1.5 , 1.75])
    >>> x = sd.vector("x")
    >>> sd.evaluate(sd.arange(x.shape[0]), {x: [7.0, 8.0, 9.0]})
    array([0, 1, 2])
    """
    if stop is None:
        start, stop = 0, start
    if not builtins.any(isinstance(v, Expr) for v in (start, stop, step)):
        for v, what in ((start, "start"), (stop, "stop"), (step, "step")):
            if v is not None and not (np.ndim(v) == 0 and np.asarray(v).dtype.kind in "biuf"):
                raise TypeError(f"{what} must be a number, got {type(v).__name__} {v!r}")
        values = np.arange(start, stop, 1 if step is None else step)
        if dtype is not None:
            values = values.astype(numpy_dtype(check_dtype(dtype)))
        return const(values, dtype_of_array(values))
    if isinstance(start, Expr) or isinstance(step, Expr):
        raise TypeError("only the stop may be a run-time size (x.shape[k]); start and step must be static ints")
    stop = size_arg(stop, "stop")
    start = static_int(start, "start", minimum=0)
    step = 1 if step is None else static_int(step, "step", minimum=1)
    out = index_vector(stop)
    if (start, step) != (0, 1):
        out = S.SLICE(out, index=((start, None, step),))
    return out if dtype is None else astype(out, dtype)


@named
def linspace(start, stop, num=50, endpoint=True, retstep=False, dtype=None, axis=0):
    """np.linspace.  ``start`` and ``stop`` may be expressions (arrays broadcast, as in
    NumPy) and then get derivatives; ``num`` is static.

    >>> import symdiff as sd
    >>> sd.evaluate(sd.linspace(0, 1, 5), {})
    array([0.  , 0.25, 0.5 , 0.75, 1.  ])
    >>> a = sd.scalar("a")
    >>> sd.evaluate(sd.linspace(a, 2 * a, 3), {a: 1.0})
    array([1. , 1.5, 2. ])
    """
    num = static_int(num, "num")
    if num < 0:
        raise ValueError(f"Number of samples, {num}, must be non-negative")
    if not isinstance(start, Expr) and not isinstance(stop, Expr):
        dt = None if dtype is None else numpy_dtype(check_dtype(dtype))
        values, step = np.linspace(start, stop, num, endpoint=endpoint, retstep=True, dtype=dt, axis=axis)
        if np.asarray(values).dtype.kind not in "biuf":
            raise TypeError(f"start and stop must be real numbers, got {start!r} and {stop!r}")
        out = const(values, dtype_of_array(np.asarray(values)))
        return (out, constant(step)) if retstep else out
    start, stop = operands(start, stop, to_float=True)
    div = (num - 1) if endpoint else num
    delta = stop - start
    y = const(np.arange(num, dtype=numpy_dtype(delta.dtype)).reshape((-1,) + (1,) * delta.ndim), delta.dtype)
    if div > 0:
        step = delta / div
        any_step_zero = R.MAX(equal(step, 0), axes=tuple(range(step.ndim)), keepdims=False)
        y = where(any_step_zero, y / div * delta, y * step)  # NumPy's path for denormal steps
    else:
        step = const(np.nan, delta.dtype)
        y = y * delta
    y = y + start
    if endpoint and num > 1:
        last = S.EXPAND_DIMS(stop, axes=(0,))
        y = S.CONCATENATE(y[:-1], broadcast_like(last, y[-1:]), axis=0)
    y = moveaxis(y, 0, axis)
    if dtype is not None:
        dtype = check_dtype(dtype)
        if dtype not in FLOAT_DTYPES:  # NumPy floors before converting to an integer dtype
            truncated = astype(astype(y, "int64"), y.dtype)
            y = where(truncated > y, truncated - 1, truncated)
        y = astype(y, dtype)
    return (y, step) if retstep else y


# ------------------------------------------------------------ rearranging


@named
def ravel(a) -> Expr:
    """np.ravel: the elements in C order as a 1-d array.

    >>> import symdiff as sd
    >>> sd.ravel(sd.matrix("X")).type
    f64[?]
    """
    a = as_expr(a)
    return a if a.ndim == 1 else S.RESHAPE(a, shape=(-1,))


@named
def swapaxes(a, axis1, axis2) -> Expr:
    """np.swapaxes.

    >>> import symdiff as sd
    >>> sd.swapaxes(sd.tensor("x", (2, 3, 4)), 0, -1).type
    f64[4,3,2]
    """
    a = as_expr(a)
    i, j = one_axis(axis1, a.ndim, "axis1"), one_axis(axis2, a.ndim, "axis2")
    axes = list(range(a.ndim))
    axes[i], axes[j] = j, i
    return transpose(a, axes)


def _axis_list(axes, ndim, what):
    items = [axes] if isinstance(axes, (int, np.integer)) else list(axes)
    out = [one_axis(a, ndim, what) for a in items]
    if len(set(out)) != len(out):
        raise ValueError(f"repeated axis in `{what}` argument")
    return out


@named
def moveaxis(a, source, destination) -> Expr:
    """np.moveaxis: move axes to new positions, the others keeping their order.

    >>> import symdiff as sd
    >>> sd.moveaxis(sd.tensor("x", (2, 3, 4)), 0, -1).type
    f64[3,4,2]
    """
    a = as_expr(a)
    src = _axis_list(source, a.ndim, "source")
    dst = _axis_list(destination, a.ndim, "destination")
    if len(src) != len(dst):
        raise ValueError("`source` and `destination` arguments must have the same number of elements")
    order = [n for n in range(a.ndim) if n not in src]
    for d, s in sorted(zip(dst, src)):
        order.insert(d, s)
    return transpose(a, order)


@named
def atleast_1d(*arys):
    """np.atleast_1d: 0-d inputs become shape (1,); one input gives one result.

    >>> import symdiff as sd
    >>> sd.atleast_1d(sd.scalar("a")).type
    f64[1]
    """
    out = [(lambda x: S.RESHAPE(x, shape=(1,)) if x.ndim == 0 else x)(as_expr(a)) for a in arys]
    return out[0] if len(out) == 1 else tuple(out)


@named
def atleast_2d(*arys):
    """np.atleast_2d: 0-d inputs become (1, 1), 1-d inputs (1, n).

    >>> import symdiff as sd
    >>> sd.atleast_2d(sd.vector("x", 3)).type
    f64[1,3]
    """
    def lift(x):
        x = as_expr(x)
        return x if x.ndim >= 2 else S.EXPAND_DIMS(x, axes=tuple(range(2 - x.ndim)))

    out = [lift(a) for a in arys]
    return out[0] if len(out) == 1 else tuple(out)


def _arrays(name, tup):
    if isinstance(tup, Expr) or not isinstance(tup, (list, tuple)) or not tup:
        raise TypeError(f"{name} takes a non-empty list or tuple of arrays, got {type(tup).__name__}")
    return list(tup)


@named
def hstack(tup, *, dtype=None) -> Expr:
    """np.hstack: along axis 1, or axis 0 for 1-d inputs.

    >>> import symdiff as sd
    >>> sd.hstack([sd.vector("x", 2), sd.vector("y", 3)]).type
    f64[5]
    """
    xs = [atleast_1d(x) for x in _arrays("hstack", tup)]
    out = concatenate(xs, axis=0 if xs[0].ndim == 1 else 1)
    return out if dtype is None else astype(out, dtype)


@named
def vstack(tup, *, dtype=None) -> Expr:
    """np.vstack: along axis 0 after atleast_2d (1-d inputs become rows).

    >>> import symdiff as sd
    >>> sd.vstack([sd.vector("x", 3), sd.vector("y", 3)]).type
    f64[2,3]
    """
    out = concatenate([atleast_2d(x) for x in _arrays("vstack", tup)], axis=0)
    return out if dtype is None else astype(out, dtype)


@named
def column_stack(tup) -> Expr:
    """np.column_stack: 1-d inputs become columns, then join along axis 1.

    >>> import symdiff as sd
    >>> sd.column_stack([sd.vector("x", 3), sd.matrix("Y", (3, 2))]).type
    f64[3,3]
    """
    def column(x):
        x = as_expr(x)
        if x.ndim == 0:
            return S.RESHAPE(x, shape=(1, 1))
        return S.EXPAND_DIMS(x, axes=(1,)) if x.ndim == 1 else x

    return concatenate([column(x) for x in _arrays("column_stack", tup)], axis=1)


def _split_points(name, x, n, indices_or_sections, equal: bool):
    if isinstance(indices_or_sections, (int, np.integer)) and not isinstance(indices_or_sections, bool):
        sections = int(indices_or_sections)
        if sections <= 0:
            raise ValueError("number sections must be larger than 0")
        if n is None:
            raise shape_error(f"{sections} sections of an axis whose length is known only at run time: give the "
                              "split indices instead", x)
        if equal and n % sections:
            raise shape_error(f"array split does not result in an equal division: {n} into {sections}", x)
        each, extras = divmod(n, sections)
        sizes = [each + 1] * extras + [each] * (sections - extras)
        points = [0] + list(np.cumsum(sizes, dtype=np.int64))
        return [(int(a), int(b)) for a, b in zip(points[:-1], points[1:])]
    if isinstance(indices_or_sections, Expr):
        raise TypeError("the split indices must be static ints")
    indices = [static_int(i, "a split index") for i in indices_or_sections]
    bounds = [0] + indices + [None]
    return list(zip(bounds[:-1], bounds[1:]))


@named
def array_split(ary, indices_or_sections, axis=0) -> list:
    """np.array_split: a list of views; sections need not divide the axis evenly.

    >>> import symdiff as sd
    >>> [p.type for p in sd.array_split(sd.vector("x", 5), 2)]
    [f64[3], f64[2]]
    """
    x = as_expr(ary)
    axis = one_axis(axis, x.ndim)
    points = _split_points("array_split", x, x.type.shape[axis], indices_or_sections, equal=False)
    return [take_slice(x, axis, a, b) for a, b in points]


@named
def split(ary, indices_or_sections, axis=0) -> list:
    """np.split: like array_split, but sections must divide the axis evenly.

    >>> import symdiff as sd
    >>> [p.type for p in sd.split(sd.matrix("X", (None, 4)), [1, 3], axis=1)]
    [f64[?,1], f64[?,2], f64[?,1]]
    """
    x = as_expr(ary)
    axis = one_axis(axis, x.ndim)
    points = _split_points("split", x, x.type.shape[axis], indices_or_sections, equal=True)
    return [take_slice(x, axis, a, b) for a, b in points]


def _repeat_each(x: Expr, axis: int, count: int) -> Expr:
    """Each element along ``axis`` repeated ``count`` times in place (np.repeat)."""
    if count == 0:
        return empty_along(x, axis)
    if count == 1:
        return x
    wide = stretch(S.EXPAND_DIMS(x, axes=(axis + 1,)), axis + 1, count)
    n = x.type.shape[axis]
    return reshape_or_fail(wide, x.type.shape[:axis] + (None if n is None else n * count,) + x.type.shape[axis + 1:],
                           f"repeating along axis {axis}")


@named
def repeat(a, repeats, axis=None) -> Expr:
    """np.repeat: each element ``repeats`` times (an int, or one static int per element).

    >>> import symdiff as sd
    >>> sd.evaluate(sd.repeat(sd.constant([1.0, 2.0]), [2, 1]), {})
    array([1., 1., 2.])
    """
    x = as_expr(a)
    if axis is None:
        x, axis = ravel(x), 0
    else:
        axis = one_axis(axis, x.ndim)
    if isinstance(repeats, Expr):
        raise TypeError("repeats must be static ints")
    counts = np.asarray(repeats)
    if counts.dtype.kind not in "iu" or counts.ndim > 1:
        raise TypeError(f"repeats must be an int or a sequence of ints, got {repeats!r}")
    if (counts < 0).any():
        raise ValueError("repeats may not contain negative values")
    if counts.ndim == 0 or counts.size == 1:
        return _repeat_each(x, axis, int(counts.reshape(-1)[0]))
    n = x.type.shape[axis]
    if n is None:
        raise shape_error("one count per element needs the axis length statically", x)
    if counts.size != n:
        raise shape_error(f"{counts.size} repeat counts for an axis of length {n}", x)
    pieces = [stretch(take_slice(x, axis, i, i + 1), axis, int(c)) for i, c in enumerate(counts) if c]
    if not pieces:
        return empty_along(x, axis)
    return pieces[0] if len(pieces) == 1 else S.CONCATENATE(*pieces, axis=axis)


_TILE_CONCATENATE_MAX = 8  # static copies joined by one concatenate; more use a broadcast and a reshape


@named
def tile(A, reps) -> Expr:
    """np.tile: A repeated ``reps`` times along each axis (leading axes added as NumPy does).

    >>> import symdiff as sd
    >>> sd.evaluate(sd.tile(sd.constant([1.0, 2.0]), (2, 2)), {})
    array([[1., 2., 1., 2.],
           [1., 2., 1., 2.]])
    """
    x = as_expr(A)
    if isinstance(reps, Expr):
        raise TypeError("reps must be static ints")
    reps = [static_int(r, "a count in reps", minimum=0) for r in (np.atleast_1d(reps).tolist())]
    if x.ndim < len(reps):
        x = S.EXPAND_DIMS(x, axes=tuple(range(len(reps) - x.ndim)))
    reps = [1] * (x.ndim - len(reps)) + reps
    for axis, count in enumerate(reps):
        if count == 1:
            continue
        if count == 0:
            x = empty_along(x, axis)
            continue
        n = x.type.shape[axis]
        target = x.type.shape[:axis] + (None if n is None else n * count,) + x.type.shape[axis + 1:]
        if (n is not None and count <= _TILE_CONCATENATE_MAX) or target.count(None) > 1:
            # Copies side by side (for a run-time n, whose copies a concatenation's gradient
            # cannot place, only when the reshape below cannot be expressed either).
            x = S.CONCATENATE(*([x] * count), axis=axis)
        else:  # (count, n) -> count * n: a broadcast and a reshape
            wide = stretch(S.EXPAND_DIMS(x, axes=(axis,)), axis, count)
            x = S.RESHAPE(wide, shape=tuple(-1 if d is None else d for d in target))
    return x


# ------------------------------------------------------------------- pad

PAD_MODES = ("constant", "edge", "reflect", "symmetric", "wrap")


def _pairs(name, value, ndim, as_index):
    array = np.asarray(value)
    if as_index and array.dtype.kind not in "iu":
        raise TypeError(f"`{name}` must be of integral type, got {value!r}")
    if array.dtype.kind not in "biuf":
        raise TypeError(f"`{name}` must be numbers, got {value!r}")
    try:
        pairs = np.broadcast_to(array, (ndim, 2)) if array.ndim <= 2 else None
    except ValueError:
        pairs = None
    if pairs is None:
        raise ValueError(f"`{name}` {value!r} cannot be broadcast to ({ndim}, 2), one (before, after) per axis")
    if as_index and (pairs < 0).any():
        raise ValueError(f"`{name}` can't contain negative values, got {value!r}")
    return pairs


def _runs(indices):
    """Split a list of source indices into runs of steps -1, 0 or +1: (first, step, length)."""
    out, p = [], 0
    while p < len(indices):
        first, q = int(indices[p]), p
        step = int(indices[p + 1] - indices[p]) if p + 1 < len(indices) else 1
        if step not in (-1, 0, 1):
            step = 1
        while q + 1 < len(indices) and indices[q + 1] - indices[q] == step:
            q += 1
        out.append((first, step, q - p + 1))
        p = q + 1
    return out


def _run_piece(x, axis, first, step, length):
    if step == 0 or length == 1:
        return stretch(take_slice(x, axis, first, first + 1), axis, length)
    if step == 1:
        return take_slice(x, axis, first, first + length)
    stop = first - length
    return take_slice(x, axis, first, None if stop < 0 else stop, -1)


_PAD_MAX_RUNS = 8  # slices per side; a side that reflects more often is one gather


def _pad_side(x, axis, source):
    runs = _runs(source)
    if len(runs) > _PAD_MAX_RUNS:
        return [take_at(x, axis, source)]
    return [_run_piece(x, axis, *run) for run in runs]


def _pad_static(x, axis, before, after, mode):
    """Pieces copying NumPy's own index map (np.pad of 0..n-1), so every mode, including
    widths beyond the axis length (reflections of reflections), is NumPy's."""
    n = x.type.shape[axis]
    source = np.pad(np.arange(n), (before, after), mode=mode)
    return _pad_side(x, axis, source[:before]) + [x] + _pad_side(x, axis, source[before + n:])


def _pad_runtime(x, axis, before, after, mode):
    """Pieces for an axis whose length n is known only at run time: gathers at static
    positions counted from either end, of static length (so the gradient of the
    concatenation knows where every piece sits), which fail with an IndexError when
    values arrive if n is too short (NumPy would reflect its reflections; without n we
    cannot)."""
    if mode == "edge":
        head, tail = [0] * before, [-1] * after
    elif mode == "reflect":  # x[before], ..., x[1] | x | x[n-2], ..., x[n-1-after]
        head, tail = range(before, 0, -1), range(-2, -after - 2, -1)
    elif mode == "symmetric":  # x[before-1], ..., x[0] | x | x[n-1], ..., x[n-after]
        head, tail = range(before - 1, -1, -1), range(-1, -after - 1, -1)
    else:  # wrap: x[n-before], ..., x[n-1] | x | x[0], ..., x[after-1]
        head, tail = range(-before, 0), range(after)
    return ([take_at(x, axis, list(head))] if before else []) + [x] + ([take_at(x, axis, list(tail))] if after else [])


@named
def pad(array, pad_width, mode="constant", *, constant_values=None) -> Expr:
    """np.pad in modes "constant", "edge", "reflect", "symmetric" and "wrap".

    ``pad_width`` is NumPy's: an int, (before, after), one pair per axis, or a dict
    {axis: width}.  ``constant_values`` (0 by default) may be numbers (per axis and
    side, as NumPy) or a 0-d expression, which then gets the derivative.  Axes whose
    length is known only at run time need a length greater than the width in mode
    reflect (at least the width in symmetric and wrap, at least 1 in edge): an
    IndexError when values arrive otherwise.

    >>> import symdiff as sd
    >>> x = sd.vector("x")
    >>> sd.evaluate(sd.pad(x, (2, 1), mode="reflect"), {x: [1.0, 2.0, 3.0]})
    array([3., 2., 1., 2., 3., 2.])
    """
    x = as_expr(array)
    if isinstance(pad_width, dict):
        seq = [(0, 0)] * x.ndim
        for axis, width in pad_width.items():
            axis = one_axis(axis, x.ndim)
            seq[axis] = (width, width) if isinstance(width, (int, np.integer)) else tuple(width)
        pad_width = seq
    if isinstance(pad_width, Expr):
        raise TypeError("pad_width must be static ints")
    widths = _pairs("pad_width", pad_width, x.ndim, as_index=True)
    if mode not in PAD_MODES:
        raise ValueError(f"mode {mode!r} is not supported; symdiff pads in modes {', '.join(PAD_MODES)}")
    if mode == "constant":
        constant_values = 0 if constant_values is None else constant_values
        if isinstance(constant_values, Expr):
            if constant_values.ndim:
                raise shape_error("an expression for constant_values must be 0-d", constant_values)
            values = [[astype(constant_values, x.dtype)] * 2] * x.ndim
        else:
            values = [[numpy_cast(v, x.dtype) for v in side] for side in _pairs("constant_values", constant_values,
                                                                                   x.ndim, as_index=False)]
    elif constant_values is not None:
        raise ValueError(f"constant_values is only used in mode 'constant', not {mode!r}")
    original = x
    for axis in range(x.ndim):
        before, after = (int(w) for w in widths[axis])
        if not before and not after:
            continue
        n = x.type.shape[axis]
        if mode == "constant":
            pieces = [block(x, axis, before, values[axis][0])] if before else []
            pieces += [x] + ([block(x, axis, after, values[axis][1])] if after else [])
        elif n == 0:
            raise shape_error(f"can't extend empty axis {axis} using modes other than 'constant'", original)
        elif n is None:
            pieces = _pad_runtime(x, axis, before, after, mode)
        else:
            pieces = _pad_static(x, axis, before, after, mode)
        x = S.CONCATENATE(*pieces, axis=axis)
    return x


# -------------------------------------------------------------- diagonals


def _masked_reduce(x: Expr, mask: Expr, axes) -> Expr:
    """The sum over ``axes`` of x where ``mask`` holds (the one selected element per
    slice, exactly: the others are -0.0, which adds nothing, not even a sign)."""
    if x.dtype == "bool":
        return astype(R.SUM(astype(where(mask, x, False), "int64"), axes=axes, keepdims=False), "bool")
    zero = const(-0.0 if x.type.is_float else 0, x.dtype)
    return R.SUM(where(mask, x, zero), axes=axes, keepdims=False)


def _diagonal_last(b: Expr, offset: int, square=False) -> Expr:
    """The offset diagonal of the last two axes of b, as its last axis (np.diagonal).

    ``square`` (einsum's repeated subscripts, offset 0): the plane must be square, which
    the gather's two index vectors, one per side, check when values arrive.
    """
    n, m = b.type.shape[-2:]
    batch = b.type.shape[:-2]
    full = ((None, None, 1),) * len(batch)
    last = (b.ndim - 2, b.ndim - 1)
    r0, c0 = max(0, -offset), max(0, offset)
    if n is not None and m is not None:
        length = max(0, min(n - r0, m - c0))
        if batch.count(None) == 0 or (batch.count(None) == 1 and n * m):
            # The diagonal of a C-ordered block is every (m+1)-th element of its flattening:
            # a view of a contiguous input, so O(length) rather than O(n*m).
            flat = S.RESHAPE(b, shape=tuple(-1 if d is None else d for d in batch) + (n * m,))
            start = r0 * m + c0
            index = (start, start + (length - 1) * (m + 1) + 1, m + 1) if length else (0, 0, 1)
            return S.SLICE(flat, index=full + (index,))
        rows = const(np.arange(r0, r0 + length, dtype=np.int64), "int64")
        cols = const(np.arange(c0, c0 + length, dtype=np.int64), "int64")
        return I.GATHER(b, rows, cols, axes=last)
    if square:
        return I.GATHER(b, axis_index(b, b.ndim - 2), axis_index(b, b.ndim - 1), axes=last)
    # The diagonal has min(n - r0, m - c0) elements, a minimum of sizes known only at run
    # time that no slice can express: it is read along the side that is statically the
    # shorter (cut to the other's static length), or for two run-time sizes along the
    # rows for offset <= 0 and the columns for offset > 0, which square planes satisfy;
    # if that side is the longer one, the gather's index check fails when values arrive.
    sub = S.SLICE(b, index=full + ((r0, None, 1), (c0, None, 1)))
    n, m = sub.type.shape[-2:]
    if m is not None:
        sub = S.SLICE(sub, index=full + ((None, m, 1), (None, None, 1)))
    elif n is not None:
        sub = S.SLICE(sub, index=full + ((None, None, 1), (None, n, 1)))
    along_rows = m is not None or (n is None and offset <= 0)
    i = axis_index(sub, sub.ndim - 2 if along_rows else sub.ndim - 1)
    return I.GATHER(sub, i, i, axes=last)


def _diagonal_axes(a: Expr, axis1, axis2):
    if a.ndim < 2:
        raise shape_error("needs an array of at least two dimensions", a)
    i, j = one_axis(axis1, a.ndim, "axis1"), one_axis(axis2, a.ndim, "axis2")
    if i == j:
        raise ValueError("axis1 and axis2 cannot be the same")
    rest = [k for k in range(a.ndim) if k not in (i, j)]
    return transpose(a, rest + [i, j])


@named
def diagonal(a, offset=0, axis1=0, axis2=1) -> Expr:
    """np.diagonal: the ``offset`` diagonal of the (axis1, axis2) planes, as the last axis.

    O(length): with static plane sizes a strided view, otherwise a gather.  If both
    plane sizes are known only at run time, the diagonal is read along the rows for
    offset <= 0 and along the columns for offset > 0, which must then be the shorter
    side (square planes always are): an IndexError when values arrive otherwise.

    >>> import symdiff as sd
    >>> X = sd.matrix("X")
    >>> sd.evaluate(sd.diagonal(X), {X: [[1.0, 2.0], [3.0, 4.0]]})
    array([1., 4.])
    """
    a = as_expr(a)
    return _diagonal_last(_diagonal_axes(a, axis1, axis2), static_int(offset, "offset"))


@named
def trace(a, offset=0, axis1=0, axis2=1, dtype=None) -> Expr:
    """np.trace: the sum of the ``offset`` diagonal; bool and int sum as int64.

    >>> import symdiff as sd
    >>> X = sd.matrix("X")
    >>> sd.evaluate(sd.trace(X), {X: [[1.0, 2.0], [3.0, 4.0]]})
    np.float64(5.0)
    """
    a = as_expr(a)
    if dtype is not None:
        a = astype(a, dtype)
    elif a.dtype == "bool":
        a = astype(a, "int64")
    b = _diagonal_axes(a, axis1, axis2)
    offset = static_int(offset, "offset")
    if b.type.shape[-2:] != (None, None):
        return R.SUM(_diagonal_last(b, offset), axes=(b.ndim - 2,), keepdims=False)
    # Both sizes known only at run time: mask the whole plane, O(n*m), which works for
    # every shape (the diagonal's gather needs to know the shorter side).
    i, j = axis_index(b, b.ndim - 2), axis_index(b, b.ndim - 1)
    mask = equal(S.EXPAND_DIMS(i, axes=(1,)) + offset, S.EXPAND_DIMS(j, axes=(0,)))
    return _masked_reduce(b, mask, (b.ndim - 2, b.ndim - 1))


@named
def diag(v, k=0) -> Expr:
    """np.diag: a 1-d v gives the square matrix with v on its k-th diagonal; a 2-d v
    gives its k-th diagonal.

    >>> import symdiff as sd
    >>> sd.evaluate(sd.diag(sd.constant([1.0, 2.0]), k=1), {})
    array([[0., 1., 0.],
           [0., 0., 2.],
           [0., 0., 0.]])
    """
    v = as_expr(v)
    k = static_int(k, "k")
    if v.ndim == 2:
        return _diagonal_last(v, k)
    if v.ndim != 1:
        raise shape_error("input must be 1- or 2-d", v)
    zero = const(0, v.dtype)
    padded = S.CONCATENATE(v, broadcast_to(zero, (abs(k),)), axis=0) if k else v
    i = axis_index(padded, 0)
    rows, cols = S.EXPAND_DIMS(i, axes=(1,)), S.EXPAND_DIMS(i, axes=(0,))
    if k >= 0:  # M[r, r + k] = v[r]
        return where(equal(rows + k, cols), S.EXPAND_DIMS(padded, axes=(1,)), zero)
    return where(equal(rows, cols - k), S.EXPAND_DIMS(padded, axes=(0,)), zero)  # M[c - k, c] = v[c]


def _triangle(m, k, keep):
    m = as_expr(m)
    k = static_int(k, "k")
    if m.ndim == 0:
        raise shape_error("needs an array of at least one dimension", m)
    cols = axis_index(m, m.ndim - 1)
    rows = axis_index(m, m.ndim - 2) if m.ndim >= 2 else cols  # 1-d: NumPy broadcasts to n x n
    mask = keep(S.EXPAND_DIMS(rows, axes=(1,)) + k, S.EXPAND_DIMS(cols, axes=(0,)))
    return where(mask, m, const(0, m.dtype))


@named
def tril(m, k=0) -> Expr:
    """np.tril: zeros above the k-th diagonal of the last two axes.

    >>> import symdiff as sd
    >>> sd.evaluate(sd.tril(sd.constant([[1.0, 2.0], [3.0, 4.0]])), {})
    array([[1., 0.],
           [3., 4.]])
    """
    return _triangle(m, k, greater_equal)  # keep j <= i + k


@named
def triu(m, k=0) -> Expr:
    """np.triu: zeros below the k-th diagonal of the last two axes.

    >>> import symdiff as sd
    >>> sd.evaluate(sd.triu(sd.constant([[1.0, 2.0], [3.0, 4.0]])), {})
    array([[1., 2.],
           [0., 4.]])
    """
    return _triangle(m, k, less_equal)  # keep j >= i + k


# ---------------------------------------------------------------- products


@named
def outer(a, b) -> Expr:
    """np.outer: a.ravel()[:, None] * b.ravel()[None, :].

    >>> import symdiff as sd
    >>> sd.outer(sd.vector("a", 2), sd.matrix("B", (2, 3))).type
    f64[2,6]
    """
    a, b = operands(a, b)
    return multiply(S.EXPAND_DIMS(ravel(a), axes=(1,)), S.EXPAND_DIMS(ravel(b), axes=(0,)))


@named
def tensordot(a, b, axes=2) -> Expr:
    """np.tensordot: sum products over ``axes`` (an int N: the last N of a with the first
    N of b; or a pair of axis lists), lowered like einsum (transposes and one matmul).

    >>> import symdiff as sd
    >>> sd.tensordot(sd.tensor("a", (2, 3, 4)), sd.tensor("b", (3, 4, 5))).type
    f64[2,5]
    """
    from .einsum import contract  # the einsum module builds on this one

    a, b = operands(a, b)
    if isinstance(axes, (int, np.integer)) and not isinstance(axes, bool):
        count = static_int(axes, "axes", minimum=0)
        if count > a.ndim or count > b.ndim:
            raise shape_error(f"axes={count} but the inputs have {a.ndim} and {b.ndim} dimensions", a, b)
        axes_a, axes_b = list(range(a.ndim - count, a.ndim)), list(range(count))
    else:
        try:
            axes_a, axes_b = axes
        except (TypeError, ValueError):
            raise TypeError(f"axes must be an int or a pair of axis lists, got {axes!r}") from None
        axes_a = [one_axis(x, a.ndim) for x in ([axes_a] if isinstance(axes_a, (int, np.integer)) else axes_a)]
        axes_b = [one_axis(x, b.ndim) for x in ([axes_b] if isinstance(axes_b, (int, np.integer)) else axes_b)]
        if len(axes_a) != len(axes_b):
            raise shape_error(f"shape-mismatch for sum: {len(axes_a)} axes of a and {len(axes_b)} of b", a, b)
        if len(set(axes_a)) != len(axes_a) or len(set(axes_b)) != len(axes_b):
            raise ValueError("repeated axis in axes")
    for i, j in zip(axes_a, axes_b):
        da, db = a.type.shape[i], b.type.shape[j]
        if da is not None and db is not None and da != db:
            raise shape_error(f"shape-mismatch for sum: axis {i} of a has size {da}, axis {j} of b {db}", a, b)
    labels_a = list(range(a.ndim))
    labels_b = [labels_a[axes_a[axes_b.index(j)]] if j in axes_b else a.ndim + j for j in range(b.ndim)]
    free_a = [labels_a[i] for i in range(a.ndim) if i not in axes_a]
    free_b = [labels_b[j] for j in range(b.ndim) if j not in axes_b]
    return contract([(a, labels_a), (b, labels_b)], free_a + free_b)


@named
def inner(a, b) -> Expr:
    """np.inner: sum products over the last axes (a * b for a 0-d input).

    >>> import symdiff as sd
    >>> sd.inner(sd.matrix("A", (2, 3)), sd.matrix("B", (4, 3))).type
    f64[2,4]
    """
    a, b = operands(a, b)
    if a.ndim == 0 or b.ndim == 0:
        return multiply(a, b)
    return tensordot(a, b, axes=([-1], [-1]))


@named
def kron(a, b) -> Expr:
    """np.kron: the Kronecker product (block a[i, j] * b), for any number of dimensions.

    >>> import symdiff as sd
    >>> sd.evaluate(sd.kron(sd.constant([1.0, 10.0]), sd.constant([1.0, 2.0])), {})
    array([ 1.,  2., 10., 20.])
    """
    a, b = operands(a, b)
    if a.ndim == 0 or b.ndim == 0:
        return multiply(a, b)
    nd = max(a.ndim, b.ndim)
    if a.ndim < nd:
        a = S.EXPAND_DIMS(a, axes=tuple(range(nd - a.ndim)))
    if b.ndim < nd:
        b = S.EXPAND_DIMS(b, axes=tuple(range(nd - b.ndim)))
    product = multiply(S.EXPAND_DIMS(a, axes=tuple(range(1, 2 * nd, 2))),
                       S.EXPAND_DIMS(b, axes=tuple(range(0, 2 * nd, 2))))
    target = [None if p is None or q is None else p * q for p, q in zip(a.type.shape, b.type.shape)]
    return reshape_or_fail(product, target, "the Kronecker product")
