"""Cumulative and ordering primitives: the linear recurrence behind cumsum and cumprod,
argmax and argsort (``sort`` is the composite ``take_along_axis(x, argsort(x))``).

``linear_recurrence(a, b)`` runs ``s[j] = a[j] * s[j-1] + b[j]`` along one axis, from
``s[0] = b[0]`` or, with ``init``, from ``s[-1] = init``; ``reverse`` runs it from the end,
``s[j] = a[j+1] * s[j+1] + b[j]`` (``a[j]`` always weighs the link between positions j-1
and j).  a and b broadcast.  It is one primitive for two NumPy functions, and closed
under differentiation: its reverse rule is the recurrence run the other way over the
same links, its forward rule is the recurrence again, and the derivative in ``a`` is a
product of neighbours, so derivatives of every order are sums and products, never
divisions.

- ``cumsum(x)`` is ``linear_recurrence(1, x)``: compiled, ``s = s + x[j]`` in one loop, and
  the gradient is a reverse running sum, one loop again.
- ``cumprod(x)`` is ``linear_recurrence(x, -0.0, init=1)`` (``-0.0`` is the additive
  identity, signed zeros included, so this is the running product exactly; compiled,
  ``s = x[j] * s``).  Its gradient wrt ``x[j]`` is ``lam[j] * s[j-1]``, with ``lam`` the
  reverse recurrence of the cotangent: exact at zeros, any number of them, to every
  order.  A cumprod primitive would need that reverse recurrence for its rule anyway:
  ``sum_{k>=j} g[k] * prod_{i<=k, i!=j} x[i]`` is no running sum without division.

``argmax`` (the first maximum; the first NaN wins, like NumPy) and ``argsort`` (stable,
NaN last) have no derivative.  ``argmin`` is ``argmax`` of an order-reversing map in the
front end.
"""

from __future__ import annotations

import numpy as np

from ..errors import DTypeError
from ..ir import Expr, Op, fail_shape
from ..types import TensorType, broadcast_shapes
from . import reductions, structure

# ------------------------------------------------------------ linear recurrence


def _infer_recurrence(types, axis, reverse, init):
    a, b = types
    if a.dtype != b.dtype:
        raise DTypeError(f"a and b must share one dtype, got {a.dtype} and {b.dtype}")
    if b.dtype == "bool":
        raise DTypeError("bool inputs are not supported; cast to int64 first (sd.cumsum does)")
    if a.ndim != b.ndim:
        fail_shape(f"a and b must have the same number of dimensions, got {a.ndim} and {b.ndim}")
    if not 0 <= axis < b.ndim:
        fail_shape(f"axis {axis} out of range for a {b.ndim}-d input")
    if init is not None and reverse:
        fail_shape("init (the value before the first element) applies to a forward recurrence only")
    return TensorType(b.dtype, broadcast_shapes(a.shape, b.shape))


def _impl_recurrence(a, b, axis, reverse, init):
    shape = np.broadcast_shapes(a.shape, b.shape)
    a = np.moveaxis(np.broadcast_to(a, shape), axis, 0)
    s = np.array(np.moveaxis(np.broadcast_to(b, shape), axis, 0))  # a writable copy, axis first
    n = s.shape[0]
    if n == 0:
        return np.moveaxis(s, 0, axis)
    if init is None and np.all(a == 1):
        # cumsum: np.add.accumulate is the same sequential sum (1 * s == s exactly)
        out = np.cumsum(s if not reverse else s[::-1], axis=0, dtype=s.dtype)
        return np.moveaxis(out if not reverse else out[::-1], 0, axis)
    if init is not None and np.all(s == 0) and (s.dtype.kind != "f" or np.all(np.signbit(s))):
        # cumprod: a[j] * s[j-1] + (-0.0) is the product alone, as np.multiply.accumulate has it
        factors = np.array(a)
        factors[0] = a[0] * s.dtype.type(init) + s[0]
        return np.moveaxis(np.multiply.accumulate(factors, axis=0), 0, axis)
    if init is not None:
        s[0] = a[0] * s.dtype.type(init) + s[0]
    if not reverse:
        for j in range(1, n):
            s[j] = a[j] * s[j - 1] + s[j]
    else:
        for j in range(n - 2, -1, -1):
            s[j] = a[j + 1] * s[j + 1] + s[j]
    return np.moveaxis(s, 0, axis)


def _axis_index(ndim, axis, entry):
    return tuple(entry if k == axis else (None, None, 1) for k in range(ndim))


def along(v: Expr, axis: int, start, stop) -> Expr:
    """``v[start:stop]`` along ``axis``, or ``v`` itself where it is broadcast (size 1) along it."""
    if v.type.shape[axis] == 1:
        return v
    return structure.SLICE(v, index=_axis_index(v.ndim, axis, (start, stop, 1)))


def _placed(values: Expr, ref: Expr, axis: int, start, stop) -> Expr:
    """Zeros shaped like ``ref`` with ``values`` at ``ref[start:stop]`` along ``axis``.

    The link terms exist at positions 1 .. n-1 (forward) or 0 .. n-2 (reverse); the
    other end gets an exact zero, not a product with zero (NaN for an infinite term).
    """
    return structure.SCATTER_SLICE(values, ref, index=_axis_index(ref.ndim, axis, (start, stop, 1)))


def _link_products(later: Expr, earlier: Expr, ref: Expr, axis: int, init) -> Expr:
    """Shaped like ``ref``: ``later[j] * earlier[j-1]`` at positions j >= 1, and at 0
    ``later[0] * init`` (an exact zero for init None).  Either factor may be broadcast."""
    terms = _placed(along(later, axis, 1, None) * along(earlier, axis, None, -1), ref, axis, 1, None)
    if init is None:
        return terms
    first = along(later, axis, None, 1)
    return terms + _placed(first if init == 1 else first * init, ref, axis, None, 1)


def _vjp_recurrence_a(g, out, a, b, axis, reverse, init):
    # The adjoint runs the recurrence of g the other way over the same links.  Forward:
    # d s[j] / d a[j] = s[j-1] (init before the first); reverse: d s[j-1] / d a[j] = s[j].
    lam = LINEAR_RECURRENCE(a, g, axis=axis, reverse=not reverse, init=None)
    if not reverse:
        terms = _link_products(lam, out, out, axis, init)
    else:
        terms = _link_products(out, lam, out, axis, None)
    return reductions.unbroadcast(terms, a.type)


def _vjp_recurrence_b(g, out, a, b, axis, reverse, init):
    return reductions.unbroadcast(LINEAR_RECURRENCE(a, g, axis=axis, reverse=not reverse, init=None), b.type)


def _jvp_recurrence(ts, out, a, b, axis, reverse, init):
    da, db = ts
    drive = db
    if da is not None:
        if not reverse:  # da[j] * s[j-1], with s[-1] = init
            terms = _link_products(da, out, out, axis, init)
        else:  # da[j+1] * s[j+1] at j <= n-2
            terms = _placed(along(da * out, axis, 1, None), out, axis, None, -1)
        drive = terms if drive is None else drive + terms
    if drive is None:
        return None
    return LINEAR_RECURRENCE(a, drive, axis=axis, reverse=reverse, init=None)


def _recurrence_samples(rng):
    def case(a_shape, b_shape, axis, reverse=False, init=None):
        return ((rng.normal(size=a_shape), rng.normal(size=b_shape)), {"axis": axis, "reverse": reverse, "init": init})

    return [
        case((5,), (5,), 0),
        case((5,), (5,), 0, reverse=True),
        case((3, 4), (3, 4), 1, init=1.0),
        case((1, 4), (3, 4), 0, reverse=True),
        case((3, 1), (3, 4), 1),
        case((3, 4), (1, 1), 1, init=1.0),
        case((2, 3), (2, 1), 0, init=-0.5),
        ((np.ones((1, 1)), rng.normal(size=(2, 3))), {"axis": 0, "reverse": False, "init": None}),
    ]


LINEAR_RECURRENCE = Op(
    "linear_recurrence",
    infer=_infer_recurrence,
    impl=_impl_recurrence,
    vjp=(_vjp_recurrence_a, _vjp_recurrence_b),
    jvp=_jvp_recurrence,
    kind="ordering",
    samples=_recurrence_samples,
    doc="s[j] = a[j] * s[j-1] + b[j] along a static axis, from s[0] = b[0] (init None) or "
    "s[0] = a[0] * init + b[0]; reverse: s[j] = a[j+1] * s[j+1] + b[j] from the end.  a and b "
    "broadcast.  cumsum and cumprod are built on it.",
)

# ---------------------------------------------------------------------- argmax


def _infer_argmax(types, axis, keepdims):
    (x,) = types
    if not 0 <= axis < x.ndim:
        fail_shape(f"axis {axis} out of range for a {x.ndim}-d input")
    if x.shape[axis] == 0:
        fail_shape(f"argmax of an empty axis (axis {axis} has size 0)")
    shape = tuple(1 if k == axis else d for k, d in enumerate(x.shape) if keepdims or k != axis)
    return TensorType("int64", shape)


ARGMAX = Op(
    "argmax",
    infer=_infer_argmax,
    impl=lambda x, axis, keepdims: np.argmax(x, axis=axis, keepdims=keepdims),
    kind="ordering",
    samples=lambda rng: [
        ((rng.normal(size=(5,)),), {"axis": 0, "keepdims": False}),
        ((rng.normal(size=(3, 4)),), {"axis": 0, "keepdims": True}),
        ((np.array([[1.0, 3.0, 3.0, -2.0], [2.0, 2.0, -1.0, 0.0]]),), {"axis": 1, "keepdims": False}),  # ties
    ],
    doc="Index of the first maximum along a static axis (int64; the first NaN wins, as np.argmax).",
)

# ------------------------------------------------------------- argsort and sort


def _infer_sort(types, axis, dtype=None):
    (x,) = types
    if not 0 <= axis < x.ndim:
        fail_shape(f"axis {axis} out of range for a {x.ndim}-d input")
    return TensorType(dtype or x.dtype, x.shape)


def _sort_samples(rng):
    ties = np.array([[2.0, -1.0, 2.0, 0.5, -1.0], [0.0, 3.0, -2.0, 0.0, -0.0]])  # NaN: tests/test_ordering.py
    return [
        ((rng.normal(size=(6,)),), {"axis": 0}),
        ((rng.normal(size=(3, 4)),), {"axis": 0}),
        ((rng.normal(size=(2, 3, 4)),), {"axis": 2}),
        ((ties,), {"axis": 1}),
    ]


ARGSORT = Op(
    "argsort",
    infer=lambda types, axis: _infer_sort(types, axis, "int64"),
    impl=lambda x, axis: np.argsort(x, axis=axis, kind="stable"),
    kind="ordering",
    samples=_sort_samples,
    doc="The stable sorting permutation along a static axis (int64; NaN last, as np.argsort).",
)
