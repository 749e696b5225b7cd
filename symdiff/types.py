"""Tensor types: a dtype and a shape whose dimensions may be unknown (``None``).

The shape rules here are the static half of NumPy's: broadcasting is decided when
the graph is built, never when values arrive.  A ``None`` dimension is a size known
only at run time and is never assumed to be 1, so ``None`` against ``5`` gives ``5``
(the run time checks they agree) and ``None`` against ``1`` gives ``None``.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from .errors import DTypeError, ShapeError

DTYPES = ("bool", "int64", "float32", "float64")
FLOAT_DTYPES = ("float32", "float64")
SHORT_DTYPE = {"bool": "bool", "int64": "i64", "float32": "f32", "float64": "f64"}

Shape = tuple  # tuple[int | None, ...]


class TensorType(NamedTuple):
    """The static type of a node: ``dtype`` (one of DTYPES) and ``shape``.

    A NamedTuple, so comparing and hashing types (done for every node built)
    runs at C speed.

    >>> TensorType("float64", (None, 3))
    f64[?,3]
    """

    dtype: str
    shape: Shape

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def is_float(self) -> bool:
        return self.dtype in FLOAT_DTYPES

    def __repr__(self) -> str:
        dims = ",".join("?" if d is None else str(d) for d in self.shape)
        return f"{SHORT_DTYPE[self.dtype]}[{dims}]"


def check_dtype(dtype) -> str:
    """Normalise a dtype given as a string or NumPy dtype to one of DTYPES.

    >>> check_dtype(np.float32)
    'float32'
    """
    try:
        name = dtype if dtype in DTYPES else np.dtype(dtype).name
    except TypeError:
        name = str(dtype)
    if name not in DTYPES:
        raise DTypeError(f"unsupported dtype {dtype!r}: symdiff supports {', '.join(DTYPES)}")
    return name


def dtype_of_array(value: np.ndarray) -> str:
    """The symdiff dtype a NumPy array maps to (any int to int64, ...).

    >>> dtype_of_array(np.arange(3, dtype=np.int32))
    'int64'
    """
    kind = value.dtype.kind
    if kind == "b":
        return "bool"
    if kind in "iu":
        if kind == "u" and value.size and value.max() > np.iinfo(np.int64).max:
            raise DTypeError(f"unsigned values above {np.iinfo(np.int64).max} do not fit symdiff's int64")
        return "int64"
    if kind == "f":
        return "float32" if value.dtype.itemsize <= 4 else "float64"
    raise DTypeError(f"arrays of dtype {value.dtype} are not supported (complex, object, ...)")


_RANK = {"bool": 0, "int64": 1, "float32": 2, "float64": 3}


def promote(a: str, b: str) -> str:
    """NumPy's promotion on symdiff's four dtypes (int64 with float32 gives float64).

    >>> promote("int64", "float32")
    'float64'
    """
    if a == b:
        return a
    if {a, b} == {"int64", "float32"}:
        return "float64"
    return a if _RANK[a] > _RANK[b] else b


def check_shape(shape) -> Shape:
    """Validate a user shape: a tuple of non-negative ints or None.

    >>> check_shape((None, 3))
    (None, 3)
    """
    if isinstance(shape, (int, np.integer)) or shape is None:
        shape = (shape,)
    out = []
    for dim in shape:
        if dim is None:
            out.append(None)
        elif isinstance(dim, (int, np.integer)) and not isinstance(dim, bool) and dim >= 0:
            out.append(int(dim))
        else:
            raise ShapeError(f"bad dimension {dim!r} in shape {shape!r}: use a non-negative int or None")
    return tuple(out)


def broadcast_shapes(*shapes: Shape) -> Shape:
    """Static NumPy broadcasting; ``None`` never broadcasts (see module docstring).

    >>> broadcast_shapes((None, 1), (3,))
    (None, 3)
    """
    first = shapes[0]
    if all(s == first for s in shapes) and None not in first:
        return first
    ndim = max(len(s) for s in shapes)
    result = []
    for axis in range(ndim):
        dims = [s[axis - ndim + len(s)] for s in shapes if axis - ndim + len(s) >= 0]
        known = {d for d in dims if d is not None and d != 1}
        if len(known) > 1:
            raise ShapeError(f"shapes {', '.join(map(fmt_shape, shapes))} do not broadcast")
        if known:
            result.append(known.pop())
        elif None in dims:
            result.append(None)
        else:
            result.append(1)
    return tuple(result)


def normalize_axes(axis, ndim: int) -> tuple[int, ...]:
    """Axes as a sorted tuple of non-negative ints; ``None`` means all axes.

    >>> normalize_axes(-1, 3), normalize_axes(None, 2)
    ((2,), (0, 1))
    """
    if axis is None:
        return tuple(range(ndim))
    if isinstance(axis, (int, np.integer)):
        axis = (axis,)
    axes = []
    for a in axis:
        if not isinstance(a, (int, np.integer)) or not -ndim <= a < ndim:
            raise ShapeError(f"axis {a!r} is out of range for {ndim}-d input")
        axes.append(int(a) % ndim)
    if len(set(axes)) != len(axes):
        raise ShapeError(f"repeated axis in {tuple(axis)!r}")
    return tuple(sorted(axes))


def fmt_shape(shape: Shape) -> str:
    """A shape for messages, unknown dims as ``?``.

    >>> fmt_shape((None, 3))
    '(?, 3)'
    """
    inner = ", ".join("?" if d is None else str(d) for d in shape)
    return f"({inner},)" if len(shape) == 1 else f"({inner})"
