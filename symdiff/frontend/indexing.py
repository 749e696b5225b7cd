"""Integer-array and boolean indexing, ``take``, ``take_along_axis`` and ``x.at[...]``.

``x[index]`` with an index array (a NumPy integer array or list, an int64
expression, or a constant boolean mask) follows NumPy's advanced indexing:
index arrays broadcast together; integers next to them count as index arrays; the
broadcast index shape replaces the indexed axes when they are adjacent in the
index and comes first otherwise; ``None`` inserts axes.  Negative indices wrap.

The plan for one index: basic slicing of the other axes first (a view), then one
``gather`` node over the indexed axes, then a transpose and new axes when NumPy's
layout asks for them.  Constant index arrays are checked and their negative entries
wrapped when the graph is built (when the axis size is static), so an index out of
range is reported at the user's line; index expressions are checked when values
arrive, by both backends, with the same message.

``x.at[index].set(v)`` (and ``add``, ``multiply``, ``min``, ``max``, ``get``) are
JAX's functional updates: a new array, ``x`` unchanged.  They map to the scatter
ops of ``symdiff.ops.indexing``; see there for repeated indices.
"""

from __future__ import annotations

import builtins
from dataclasses import dataclass, field
from functools import reduce

import numpy as np

from .. import ir
from ..errors import DTypeError, IndexOutOfBoundsError, ShapeError
from ..ir import Expr
from ..ops import indexing as I
from ..ops import structure as S
from ..ops.creation import IOTA
from ..ops.leaves import CONSTANT, const, numpy_dtype
from ..types import broadcast_shapes, fmt_shape, promote
from . import add, as_expr, astype, broadcast_like, broadcast_to, clip, dim, maximum, minimum, multiply, where

__all__ = ["IndexDTypeError", "take", "take_along_axis"]


class IndexDTypeError(DTypeError, IndexError):
    """An index of a dtype indexing cannot use (float, or a bool expression).  A
    ``sd.DTypeError`` (a TypeError) and, as NumPy raises for float index arrays, an IndexError."""


def _at_line() -> str:
    where = ir._user_origin()
    return f" (at {where[0]}:{where[1]})" if where else ""


def _is_static_int(item) -> bool:
    return isinstance(item, (int, np.integer)) and not isinstance(item, (bool, np.bool_))


def is_advanced(item) -> bool:
    """Whether an index item needs a gather (anything but None, ..., a slice or a static int)."""
    return not (item is None or item is Ellipsis or isinstance(item, slice) or _is_static_int(item))


# ------------------------------------------------------------ index arrays


def _index_array(item, what: str, x: Expr):
    """An index item as an int64 Expr, an int64 ndarray, or a bool ndarray (a mask)."""
    if isinstance(item, Expr) and item.op is CONSTANT and item.dtype in ("int64", "bool"):
        item = item.params["value"].array  # checked (and masks expanded) when the graph is built
    if isinstance(item, Expr):
        if item.dtype == "int64":
            return item
        if item.dtype == "bool":
            raise IndexDTypeError(
                f"{what}: a boolean mask given as an expression selects a number of elements known only from "
                f"its values, which a graph cannot have; use a constant NumPy mask, or sd.where(mask, x, 0) "
                f"to keep the shape{_at_line()}")
        raise IndexDTypeError(f"{what}: index arrays must be integer (or boolean) arrays, got the {item.dtype} "
                              f"expression {item.type!r}; indexing {x.type!r}{_at_line()}")
    if isinstance(item, list) and len(item) == 0:
        return np.zeros(0, dtype=np.int64)  # NumPy reads x[[]] as an empty integer index
    try:
        array = np.asarray(item)
    except Exception:
        array = None
    if array is None or array.dtype.kind not in "biu":
        got = f"{type(item).__name__}" + (f" of dtype {array.dtype}" if array is not None else "")
        raise IndexDTypeError(f"{what}: index arrays must be integer (or boolean) arrays, got {got} of shape "
                              f"{fmt_shape(np.shape(item))}; indexing {x.type!r}{_at_line()}")
    if array.dtype.kind == "b":
        return array
    if array.dtype.kind == "u" and array.size and array.max() > np.iinfo(np.int64).max:
        raise IndexOutOfBoundsError(f"{what}: index {array.max()} is out of bounds for {x.type!r}{_at_line()}")
    return array.astype(np.int64)


def _checked_constant(values: np.ndarray, size, axis: int, what: str, x: Expr) -> np.ndarray:
    """Constant indices checked against a static axis size, negative ones wrapped."""
    if size is None:
        return values
    bad = (values < -size) | (values >= size)
    if bad.any():
        raise IndexOutOfBoundsError(f"{what}: index {int(values[bad].flat[0])} is out of bounds for axis {axis} "
                                    f"with size {size}; indexing {x.type!r}{_at_line()}")
    return np.where(values < 0, values + size, values)


def _covers(shape, target) -> bool:
    """Whether an array of ``shape`` has the (rank and) sizes of ``target`` without stretching."""
    return len(shape) == len(target) and all(s == t or s is None or (t is None and s != 1) for s, t in zip(shape, target))


def broadcast_indices(indices: list, what: str) -> list:
    """Index arrays (Exprs and int64 ndarrays) brought to one shape, NumPy-style, as views.

    The gather op takes arrays of one shape, so that it never stretches a size known
    only at run time; broadcasting here is static (``broadcast_to``), or relative to an
    index array of the full shape (``broadcast_like``) when some sizes are unknown.
    """
    shapes = [tuple(np.shape(i)) if isinstance(i, np.ndarray) else i.type.shape for i in indices]
    try:
        target = broadcast_shapes(*shapes)
    except ShapeError:
        raise IndexError(f"{what}: shape mismatch: indexing arrays could not be broadcast together with shapes "
                         f"{' '.join(map(fmt_shape, shapes))}{_at_line()}") from None
    indices = [const(i, "int64") if isinstance(i, np.ndarray) else i for i in indices]
    ref = None
    if None in target:
        full = [i for i in indices if len(i.type.shape) == len(target)
                and all(d != 1 or t == 1 for d, t in zip(i.type.shape, target))]
        ref = full[0] if full else reduce(add, indices)  # the sum's shape is the broadcast shape: a reference
    out = []
    for i, shape in zip(indices, shapes):
        if _covers(shape, target):
            out.append(i)
        elif None in target:
            out.append(broadcast_like(i, ref))
        else:
            out.append(broadcast_to(i, target))
    return out


# --------------------------------------------------------------- the plan


@dataclass
class Plan:
    """How ``x[index]`` is computed: basic slicing, one gather, then NumPy's layout."""

    x: Expr
    entries: tuple  # one slice entry per axis of x (SLICE's format), full slices on indexed axes
    axes: tuple = ()  # the indexed axes of x
    indices: list = field(default_factory=list)  # int64 Exprs of one shape, one per indexed axis
    perm: tuple = ()  # a transpose of the gathered array, () for none
    new_axes: tuple = ()  # expand_dims axes of the result

    def sliced(self) -> Expr:
        if builtins.all(e == (None, None, 1) for e in self.entries):
            return self.x
        return S.SLICE(self.x, index=self.entries)

    def gathered(self, source: Expr) -> Expr:
        return I.GATHER(source, *self.indices, axes=self.axes)

    def layout(self, gathered: Expr) -> Expr:
        out = S.TRANSPOSE(gathered, axes=self.perm) if self.perm else gathered
        return S.EXPAND_DIMS(out, axes=self.new_axes) if self.new_axes else out

    def result(self) -> Expr:
        return self.layout(self.gathered(self.sliced()))


def plan_index(x: Expr, index, what: str, ints_as_arrays: bool = False) -> Plan:
    """Parse an index with at least one index array (or, with ``ints_as_arrays``, any
    index: ints become 0-d index arrays, as NumPy treats them next to arrays)."""
    items = list(index) if isinstance(index, tuple) else [index]
    converted = []
    for item in items:
        if item is None or item is Ellipsis or isinstance(item, slice):
            converted.append(item)
        elif _is_static_int(item):
            converted.append(int(item))
        elif isinstance(item, (bool, np.bool_)):
            raise IndexDTypeError(f"{what}: a bool scalar as an index (x[True]) is not supported; use None to add "
                                  f"an axis{_at_line()}")
        else:
            converted.append(_index_array(item, what, x))
    if builtins.sum(item is Ellipsis for item in converted) > 1:
        raise IndexError(f"{what}: an index can only have a single ellipsis ('...'){_at_line()}")

    def consumed(item):
        if item is None or item is Ellipsis:
            return 0
        if isinstance(item, np.ndarray) and item.dtype == bool:
            return builtins.max(item.ndim, 1) if item.ndim else 0
        return 1

    used = builtins.sum(consumed(item) for item in converted)
    if used > x.ndim:
        raise IndexError(f"{what}: too many indices: {used} for a {x.ndim}-d expression of type {x.type!r}"
                         f"{_at_line()}")
    if builtins.any(item is Ellipsis for item in converted):
        at = next(k for k, item in enumerate(converted) if item is Ellipsis)
        converted[at:at + 1] = [slice(None)] * (x.ndim - used)
    else:
        converted += [slice(None)] * (x.ndim - used)

    has_arrays = builtins.any(isinstance(item, (np.ndarray, Expr)) for item in converted)
    # tokens: ("new",) for None, ("x", axis) for a slice, ("adv", axis) for an index array or int
    tokens, entries, adv_axes, adv_values = [], [], [], []
    axis = 0
    for item in converted:
        if item is None:
            tokens.append(("new",))
            continue
        if isinstance(item, slice):
            parts = tuple(None if p is None else _static_bound(p, what) for p in (item.start, item.stop, item.step))
            if parts[2] == 0:
                raise ValueError(f"{what}: slice step cannot be zero{_at_line()}")
            entries.append(parts[:2] + (1 if parts[2] is None else parts[2],))
            tokens.append(("x", axis))
            axis += 1
            continue
        if isinstance(item, np.ndarray) and item.dtype == bool:
            arrays = _mask_indices(item, x, axis, what)
            for k, values in enumerate(arrays):
                tokens.append(("adv", axis + k))
                entries.append((None, None, 1))
                adv_axes.append(axis + k)
                adv_values.append(values)
            axis += len(arrays)
            continue
        if isinstance(item, int) and not (has_arrays or ints_as_arrays):
            raise AssertionError("basic indexing is getitem's job")
        if isinstance(item, int):
            item = np.asarray(item, dtype=np.int64)
        if isinstance(item, np.ndarray):
            item = _checked_constant(item, x.type.shape[axis], axis, what, x)
        tokens.append(("adv", axis))
        entries.append((None, None, 1))
        adv_axes.append(axis)
        adv_values.append(item)
        axis += 1
    plan = Plan(x, tuple(entries))
    if not adv_axes:  # slices only (x.at[1:3])
        plan.new_axes = tuple(k for k, t in enumerate(tokens) if t[0] == "new")
        return plan
    plan.axes = tuple(adv_axes)
    plan.indices = broadcast_indices(adv_values, what)
    rank = plan.indices[0].ndim
    # The gather's layout over x's axes, then NumPy's over the index items (Nones included).
    rest = [("x", a) for a in range(x.ndim) if a not in plan.axes]
    block = [("b", k) for k in range(rank)]
    at = I.index_position(plan.axes)
    gathered = rest[:at] + block + rest[at:] if I.adjacent(plan.axes) else block + rest
    positions = [k for k, t in enumerate(tokens) if t[0] == "adv"]
    if positions == list(range(positions[0], positions[0] + len(positions))):
        final = tokens[:positions[0]] + block + tokens[positions[-1] + 1:]
    else:
        final = block + [t for t in tokens if t[0] != "adv"]
    without_new = [t for t in final if t[0] != "new"]
    perm = tuple(gathered.index(t) for t in without_new)
    plan.perm = perm if perm != tuple(range(len(perm))) else ()
    plan.new_axes = tuple(k for k, t in enumerate(final) if t[0] == "new")
    return plan


def _static_bound(value, what):
    if _is_static_int(value):
        return int(value)
    raise TypeError(f"{what}: slice bounds must be static ints, got {type(value).__name__} {value!r}{_at_line()}")


def _mask_indices(mask: np.ndarray, x: Expr, axis: int, what: str) -> list:
    """A constant boolean mask as the integer index arrays np.nonzero gives (NumPy's own rule)."""
    if mask.ndim == 0:
        raise IndexDTypeError(f"{what}: a 0-d boolean index is not supported; use None to add an axis{_at_line()}")
    sizes = x.type.shape[axis:axis + mask.ndim]
    for k, (size, length) in enumerate(zip(sizes, mask.shape)):
        if size is None:
            raise IndexError(f"{what}: a boolean mask needs the sizes of the axes it indexes, but axis {axis + k} "
                             f"of {x.type!r} is known only at run time; declare that size{_at_line()}")
        if size != length:
            raise IndexError(f"{what}: boolean index did not match indexed array along axis {axis + k}; size of axis "
                             f"is {size} but size of corresponding boolean axis is {length}{_at_line()}")
    return [i.astype(np.int64) for i in np.nonzero(mask)]


def _indexing_name(x: Expr) -> str:
    return f"{x.name}[...]" if x.is_symbol else "indexing"


def advanced_getitem(x: Expr, index) -> Expr:
    """``x[index]`` for an index with index arrays (getitem sends such indices here)."""
    return plan_index(x, index, _indexing_name(x)).result()


# ------------------------------------------------------------------- take


def _as_index(indices, what: str, x: Expr):
    values = _index_array(indices, what, x)
    if isinstance(values, np.ndarray) and values.dtype == bool:
        raise IndexDTypeError(f"{what}: indices must be integers, got a boolean array (for a mask use "
                              f"x[mask]){_at_line()}")
    return values


def _one_axis(axis, ndim: int, what: str) -> int:
    if not _is_static_int(axis):
        raise TypeError(f"{what}: axis must be an int or None, got {type(axis).__name__} {axis!r}")
    if not -ndim <= axis < ndim:
        raise ShapeError(f"{what}: axis {axis} is out of bounds for an array of dimension {ndim}{_at_line()}")
    return int(axis) % ndim


def _flat(x: Expr) -> Expr:
    return x if x.ndim == 1 else S.RESHAPE(x, shape=(-1,))


def take(a, indices, axis=None, mode="raise") -> Expr:
    """np.take: elements of ``a`` at ``indices`` along ``axis`` (of the flattened ``a`` for None).

    ``indices``: a NumPy integer array or an int64 expression; negative indices wrap.
    ``mode``: "raise" (an index out of range raises IndexError) or "clip" (indices are
    clipped to the axis, negative ones to 0, as NumPy does); "wrap" is not supported.

    >>> import symdiff as sd
    >>> x = sd.vector("x")
    >>> sd.evaluate(sd.take(x, [2, 0, -1, 2]), {x: [1.0, 2.0, 3.0]})
    array([3., 1., 3., 3.])
    """
    a = as_expr(a)
    if mode not in ("raise", "clip"):
        raise ValueError(f"take: mode must be 'raise' or 'clip' ('wrap' is not supported), got {mode!r}")
    if axis is None:
        a, axis = _flat(a), 0
    if a.ndim == 0:
        raise ShapeError(f"take: cannot index a 0-d array{_at_line()}")
    axis = _one_axis(axis, a.ndim, "take")
    values = _as_index(indices, "take", a)
    size = a.type.shape[axis]
    if mode == "clip":
        if size == 0:
            raise IndexError(f"take: cannot do a non-empty take from an empty axis{_at_line()}")
        if isinstance(values, np.ndarray) and size is not None:
            values = np.clip(values, 0, size - 1)
        else:
            top = size - 1 if size is not None else dim(a, axis) - 1
            values = clip(as_expr(values), 0, top)
    if isinstance(values, np.ndarray):
        values = const(_checked_constant(values, size, axis, "take", a), "int64")
    return I.GATHER(a, values, axes=(axis,))


def _axis_grid(arr: Expr, axis: int) -> Expr:
    """0, 1, ..., n-1 along ``axis`` of arr (shaped to broadcast against arr)."""
    size = arr.type.shape[axis]
    line = const(np.arange(size, dtype=np.int64), "int64") if size is not None else IOTA(arr, axis=axis)
    others = tuple(a for a in range(arr.ndim) if a != axis)
    return S.EXPAND_DIMS(line, axes=others) if others else line


def take_along_axis(arr, indices, axis=-1) -> Expr:
    """np.take_along_axis: ``out[..., j, ...] = arr[..., indices[..., j, ...], ...]`` along ``axis``.

    ``indices`` has arr's number of dimensions and broadcasts against arr on the other
    axes; ``axis=None`` works on the flattened ``arr`` (1-d ``indices``).  The log
    likelihood of labels ``y`` (an int64 vector) is
    ``sd.take_along_axis(logp, y[:, None], axis=1)[:, 0]``.

    >>> import symdiff as sd
    >>> import numpy as np
    >>> logp = sd.matrix("logp", (None, 3))
    >>> y = sd.vector("y", dtype="int64")
    >>> picked = sd.take_along_axis(logp, y[:, None], axis=1)[:, 0]
    >>> sd.evaluate(picked, {logp: np.arange(6.0).reshape(2, 3), y: [2, 0]})
    array([2., 3.])
    """
    arr = as_expr(arr)
    values = _as_index(indices, "take_along_axis", arr)
    rank = values.ndim
    if axis is None:
        if rank != 1:
            raise ValueError(f"take_along_axis: with axis=None, indices must be 1-d, got shape "
                             f"{fmt_shape(np.shape(values) if isinstance(values, np.ndarray) else values.type.shape)}"
                             f"{_at_line()}")
        return take(_flat(arr), values, axis=0)
    if rank != arr.ndim:
        raise ValueError(f"take_along_axis: `indices` and `arr` must have the same number of dimensions, got "
                         f"{rank} and {arr.ndim} ({arr.type!r}){_at_line()}")
    axis = _one_axis(axis, arr.ndim, "take_along_axis")
    if isinstance(values, np.ndarray):
        values = _checked_constant(values, arr.type.shape[axis], axis, "take_along_axis", arr)
    index = [values if a == axis else _axis_grid(arr, a) for a in range(arr.ndim)]
    shapes = [np.shape(i) if isinstance(i, np.ndarray) else i.type.shape for i in index]
    try:  # the other axes of arr and indices must broadcast (arr may be stretched, as in NumPy)
        broadcast_shapes(*shapes)
    except ShapeError:
        raise ShapeError(f"take_along_axis: indices of shape {fmt_shape(shapes[axis])} do not broadcast against "
                         f"arr {arr.type!r} outside axis {axis}{_at_line()}") from None
    return I.GATHER(arr, *broadcast_indices(index, "take_along_axis"), axes=tuple(range(arr.ndim)))


# --------------------------------------------------------------------- .at


def _updates(values, x: Expr, what: str) -> Expr:
    """``values`` as an expression of x's dtype (Python numbers are weak, as in NumPy 2)."""
    if isinstance(values, Expr):
        v = values
    elif isinstance(values, (bool, int, float)) and not isinstance(values, np.generic):
        kind = "bool" if isinstance(values, bool) else "int64" if isinstance(values, int) else "float64"
        if promote(x.dtype, kind) != x.dtype and not (kind == "float64" and x.dtype == "float32"):
            raise DTypeError(f"{what}: cannot put the Python {type(values).__name__} {values!r} into a {x.dtype} "
                             f"array without changing it{_at_line()}")
        return const(np.asarray(values).astype(numpy_dtype(x.dtype)), x.dtype)
    else:
        v = as_expr(values)
    if promote(x.dtype, v.dtype) != x.dtype:
        raise DTypeError(f"{what}: cannot put {v.dtype} values into a {x.dtype} array without losing data; "
                         f"convert them with .astype({x.dtype!r}){_at_line()}")
    return astype(v, x.dtype)


def _broadcast_to_like(v: Expr, target: Expr, what: str) -> Expr:
    """``v`` broadcast to ``target``'s shape (static broadcasting: a None size never stretches)."""
    try:
        shape = broadcast_shapes(v.type.shape[builtins.max(v.ndim - target.ndim, 0):], target.type.shape)
        if v.ndim > target.ndim and builtins.any(d != 1 for d in v.type.shape[:v.ndim - target.ndim]):
            shape = None
    except ShapeError:
        shape = None
    if shape is None or len(shape) != target.ndim or not _covers(shape, target.type.shape):
        raise ShapeError(f"{what}: values of shape {fmt_shape(v.type.shape)} do not broadcast to the indexed "
                         f"shape {fmt_shape(target.type.shape)}{_at_line()}")
    while v.ndim > target.ndim and v.type.shape[0] == 1:  # NumPy drops leading 1s of assigned values
        v = S.SQUEEZE(v, axes=(0,))
    if _covers(v.type.shape, target.type.shape):
        return v
    if None in target.type.shape:
        return broadcast_like(v, target)
    return broadcast_to(v, target.type.shape)


_ELEMENTWISE = {"set": lambda old, v: v, "add": add, "multiply": multiply, "max": maximum, "min": minimum}


def _update(x: Expr, index, values, mode: str) -> Expr:
    what = f"{x.name if x.is_symbol else ''}.at[...].{mode}"
    v = _updates(values, x, what)
    plan = plan_index(x, index, what, ints_as_arrays=True)
    sliced = plan.sliced()
    if plan.axes:
        gathered = plan.gathered(sliced)
        result = plan.layout(gathered)
        v = _broadcast_to_like(v, result, what)
        if plan.new_axes:  # back to the gather's layout
            v = S.SQUEEZE(v, axes=plan.new_axes)
        if plan.perm:
            v = S.TRANSPOSE(v, axes=tuple(int(a) for a in np.argsort(plan.perm)))
        updated = I.SCATTERS[mode](sliced, v, *plan.indices, axes=plan.axes)
    else:
        v = _broadcast_to_like(v, plan.layout(sliced), what)
        updated = _ELEMENTWISE[mode](sliced, S.SQUEEZE(v, axes=plan.new_axes) if plan.new_axes else v)
    if sliced is x:
        return updated
    # Put the updated region back: x outside it, the region inside (where, so x's derivative
    # is masked, never multiplied by zero).
    inside = S.SCATTER_SLICE(_ones(sliced, "int64"), x, index=plan.entries)
    return where(inside, S.SCATTER_SLICE(updated, x, index=plan.entries), x)


def _ones(x: Expr, dtype: str) -> Expr:
    one = const(1, dtype)
    return S.BROADCAST_LIKE(one, x) if x.ndim else one


class IndexUpdateRef:
    """``x.at[index]``: the methods return a new array; ``x`` itself never changes."""

    __slots__ = ("x", "index")

    def __init__(self, x: Expr, index):
        self.x, self.index = x, index

    def get(self) -> Expr:
        """``x[index]``."""
        return self.x[self.index]

    def set(self, values) -> Expr:
        """x with ``x[index] = values``; of repeated indices, the last update (in C order) wins."""
        return _update(self.x, self.index, values, "set")

    def add(self, values) -> Expr:
        """x with ``values`` added at ``index``; repeated indices accumulate (np.add.at)."""
        return _update(self.x, self.index, values, "add")

    def multiply(self, values) -> Expr:
        """x with ``x[index]`` multiplied by ``values``; repeated indices multiply (np.multiply.at)."""
        return _update(self.x, self.index, values, "multiply")

    def min(self, values) -> Expr:  # noqa: A003
        """x with ``x[index] = minimum(x[index], values)``; repeated indices all take part."""
        return _update(self.x, self.index, values, "min")

    def max(self, values) -> Expr:  # noqa: A003
        """x with ``x[index] = maximum(x[index], values)``; repeated indices all take part."""
        return _update(self.x, self.index, values, "max")

    def __repr__(self):
        return f"<{self.x.label()}.at[{self.index!r}]>"


class IndexUpdateHelper:
    """``x.at``: index it, then call ``set``, ``add``, ``multiply``, ``min``, ``max`` or ``get``."""

    __slots__ = ("x",)

    def __init__(self, x: Expr):
        self.x = x

    def __getitem__(self, index) -> IndexUpdateRef:
        return IndexUpdateRef(self.x, index)

    def __repr__(self):
        return f"<{self.x.label()}.at>"


def _at(self) -> IndexUpdateHelper:
    """Functional updates in JAX's spelling: ``x.at[idx].set(v)``, ``.add(v)``, ``.multiply(v)``,
    ``.min(v)``, ``.max(v)``, ``.get()``.  Each returns a new expression; x is unchanged.

    The index is any NumPy index (ints, slices, None, ..., index arrays, int64
    expressions, constant boolean masks); the values broadcast to ``x[idx]``'s shape and
    are converted to x's dtype (refused if that would lose data).  Repeated indices:
    ``add`` and ``multiply`` accumulate, ``min`` and ``max`` combine all of them, and for
    ``set`` the last one in C order wins (JAX leaves it unspecified; NumPy's assignment
    gives the last in practice).  Derivatives: ``set`` sends none to the overwritten
    elements of x and the cotangent to the winning update; ``min``/``max`` share it
    equally between tied participants (x's element and its updates).

    >>> import symdiff as sd
    >>> x = sd.vector("x")
    >>> sd.evaluate(x.at[[0, 2, 0]].add(1.0), {x: [0.0, 0.0, 0.0]})
    array([2., 0., 1.])
    >>> sd.evaluate(x.at[1:].set(5.0), {x: [0.0, 0.0, 0.0]})
    array([0., 5., 5.])
    """
    return IndexUpdateHelper(self)


Expr.at = property(_at)
