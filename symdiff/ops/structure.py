"""Ops that move data without arithmetic: reshape, transpose, slicing, broadcasting,
concatenation, ``dim`` (a size known only at run time) and ``check_sizes`` (a condition
on run-time sizes)."""

from __future__ import annotations

import itertools
import weakref

import numpy as np

from ..ir import Op, fail_shape
from ..types import TensorType, broadcast_shapes, fmt_shape
from . import reductions

# ------------------------------------------------------------------ reshape


def _infer_reshape(types, shape):
    (x,) = types
    if shape.count(-1) > 1 or any(d < -1 for d in shape):
        fail_shape(f"bad target shape {shape}: ints >= 0 and at most one -1")
    if None in x.shape:
        return TensorType(x.dtype, tuple(None if d == -1 else d for d in shape))
    size = int(np.prod(x.shape))
    known = int(np.prod([d for d in shape if d != -1]))
    if -1 in shape:
        if known == 0 or size % known:
            fail_shape(f"cannot reshape size {size} into {shape}")
        shape = tuple(size // known if d == -1 else d for d in shape)
    elif known != size:
        fail_shape(f"cannot reshape size {size} into {fmt_shape(shape)}")
    return TensorType(x.dtype, shape)


def _vjp_reshape(g, out, x, shape):
    if x.type.shape.count(None) > 1 or (None in x.type.shape and 0 in x.type.shape):
        # the input's shape exists only at run time (with a 0 beside it, -1 has no answer)
        return RESHAPE_LIKE(g, x)
    return RESHAPE(g, shape=tuple(-1 if d is None else d for d in x.type.shape))


RESHAPE = Op(
    "reshape",
    infer=_infer_reshape,
    impl=lambda x, shape: np.reshape(x, shape),
    vjp=(_vjp_reshape,),
    jvp=lambda ts, out, x, shape: RESHAPE(ts[0], shape=shape),
    kind="shape",
    samples=lambda rng: [((rng.normal(size=(2, 6)),), {"shape": (3, 4)}), ((rng.normal(size=(12,)),), {"shape": (2, -1, 3)})],
    doc="np.reshape with a static target shape (one -1 allowed).",
)



def _infer_reshape_like(types):
    x, ref = types
    if None not in x.shape and None not in ref.shape and int(np.prod(x.shape)) != int(np.prod(ref.shape)):
        fail_shape(f"cannot reshape size {int(np.prod(x.shape))} into {fmt_shape(ref.shape)}")
    return TensorType(x.dtype, ref.shape)


def _impl_reshape_like(x, ref):
    if x.size != ref.size:
        raise ValueError(f"cannot reshape size {x.size} into shape {ref.shape}")
    return np.reshape(x, ref.shape)


RESHAPE_LIKE = Op(
    "reshape_like",
    infer=_infer_reshape_like,
    impl=_impl_reshape_like,
    vjp=(lambda g, out, x, ref: RESHAPE_LIKE(g, x), None),
    jvp=lambda ts, out, x, ref: None if ts[0] is None else RESHAPE_LIKE(ts[0], ref),
    kind="shape",
    samples=lambda rng: [((rng.normal(size=(2, 6)), rng.normal(size=(3, 4))), {}),
                         ((rng.normal(size=(12,)), rng.normal(size=(2, 3, 2))), {})],
    doc="Reshape x to the run-time shape of ref (whose value is not used): the reverse "
    "rule of a reshape whose input has more than one size known only at run time.",
)

# ---------------------------------------------------------------- transpose


def _infer_transpose(types, axes):
    (x,) = types
    if sorted(axes) != list(range(x.ndim)):
        fail_shape(f"axes {axes} are not a permutation of {x.ndim} axes")
    return TensorType(x.dtype, tuple(x.shape[a] for a in axes))


TRANSPOSE = Op(
    "transpose",
    infer=_infer_transpose,
    impl=lambda x, axes: np.transpose(x, axes),
    vjp=(lambda g, out, x, axes: TRANSPOSE(g, axes=tuple(int(a) for a in np.argsort(axes))),),
    jvp=lambda ts, out, x, axes: TRANSPOSE(ts[0], axes=axes),
    kind="shape",
    samples=lambda rng: [((rng.normal(size=(2, 3)),), {"axes": (1, 0)}), ((rng.normal(size=(2, 3, 4)),), {"axes": (2, 0, 1)})],
    doc="np.transpose with a static permutation.",
)

# ------------------------------------------------------- expand_dims / squeeze


def _infer_expand_dims(types, axes):
    (x,) = types
    ndim = x.ndim + len(axes)
    if any(not 0 <= a < ndim for a in axes):
        fail_shape(f"axes {axes} out of range for a {ndim}-d result")
    dims = iter(x.shape)
    return TensorType(x.dtype, tuple(1 if a in axes else next(dims) for a in range(ndim)))


def _infer_squeeze(types, axes):
    (x,) = types
    for a in axes:
        if not 0 <= a < x.ndim or x.shape[a] != 1:
            fail_shape(f"cannot squeeze axis {a}: its size must be statically 1")
    return TensorType(x.dtype, tuple(d for a, d in enumerate(x.shape) if a not in axes))


EXPAND_DIMS = Op(
    "expand_dims",
    infer=_infer_expand_dims,
    impl=lambda x, axes: np.expand_dims(x, axes),
    vjp=(lambda g, out, x, axes: SQUEEZE(g, axes=axes),),
    jvp=lambda ts, out, x, axes: EXPAND_DIMS(ts[0], axes=axes),
    kind="shape",
    samples=lambda rng: [((rng.normal(size=(3,)),), {"axes": (0, 2)}), ((rng.normal(size=()),), {"axes": (0,)})],
    doc="Insert axes of size 1 at the given (sorted, result) positions.",
)

SQUEEZE = Op(
    "squeeze",
    infer=_infer_squeeze,
    impl=lambda x, axes: np.squeeze(x, axes),
    vjp=(lambda g, out, x, axes: EXPAND_DIMS(g, axes=axes),),
    jvp=lambda ts, out, x, axes: SQUEEZE(ts[0], axes=axes),
    kind="shape",
    samples=lambda rng: [((rng.normal(size=(1, 3, 1)),), {"axes": (0, 2)})],
    doc="Remove axes whose size is statically 1.",
)

# ------------------------------------------------------------------- slicing
#
# ``index`` holds one entry per axis: an int i (keep element i, as an axis of
# length 1) or a (start, stop, step) triple.  Integer indexing is slice + squeeze
# in the front-end, so both ops keep the input's rank.


def _index_to_numpy(index, shape):
    out = []
    for axis, (entry, size) in enumerate(zip(index, shape)):
        if isinstance(entry, tuple):
            out.append(slice(*entry))
        else:
            if not -size <= entry < size:
                raise IndexError(f"index {entry} is out of bounds for axis {axis} with size {size}")
            out.append(slice(entry, entry + 1 if entry != -1 else None))
    return tuple(out)


def _infer_slice(types, index):
    (x,) = types
    if len(index) != x.ndim:
        fail_shape(f"index has {len(index)} entries for a {x.ndim}-d input")
    dims = []
    for axis, (entry, size) in enumerate(zip(index, x.shape)):
        if isinstance(entry, tuple):
            if entry[2] == 0:
                fail_shape("slice step cannot be zero")
            dims.append(None if size is None else len(range(*slice(*entry).indices(size))))
        else:
            if size is not None and not -size <= entry < size:
                fail_shape(f"index {entry} is out of bounds for axis {axis} with size {size}")
            dims.append(1)
    return TensorType(x.dtype, tuple(dims))


def _impl_slice(x, index):
    return x[_index_to_numpy(index, x.shape)]


def _infer_scatter(types, index):
    cotangent, ref = types
    expected = _infer_slice((ref,), index).shape
    broadcast_shapes(expected, cotangent.shape)  # checks compatibility
    if len(expected) != len(cotangent.shape):
        fail_shape(f"cotangent {fmt_shape(cotangent.shape)} does not match slice {fmt_shape(expected)}")
    return TensorType(cotangent.dtype, ref.shape)


def _impl_scatter(cotangent, ref, index):
    out = np.zeros(ref.shape, dtype=cotangent.dtype)
    out[_index_to_numpy(index, ref.shape)] = cotangent
    return out


SLICE = Op(
    "slice",
    infer=_infer_slice,
    impl=_impl_slice,
    vjp=(lambda g, out, x, index: SCATTER_SLICE(g, x, index=index),),
    jvp=lambda ts, out, x, index: SLICE(ts[0], index=index),
    kind="shape",
    samples=lambda rng: [
        ((rng.normal(size=(5,)),), {"index": ((1, None, 1),)}),
        ((rng.normal(size=(5,)),), {"index": ((None, -1, 1),)}),
        ((rng.normal(size=(4, 5)),), {"index": (-1, (4, 0, -2))}),
    ],
    doc="Basic NumPy indexing with static ints and slices (negative and stepped).",
)

SCATTER_SLICE = Op(
    "scatter_slice",
    infer=_infer_scatter,
    impl=_impl_scatter,
    vjp=(lambda g, out, ct, ref, index: SLICE(g, index=index), None),
    jvp=lambda ts, out, ct, ref, index: None if ts[0] is None else SCATTER_SLICE(ts[0], ref, index=index),
    kind="shape",
    samples=lambda rng: [((rng.normal(size=(2, 2)), rng.normal(size=(4, 5))), {"index": ((1, 3, 1), (4, 0, -2))})],
    doc="Zeros shaped like ``ref`` with ``cotangent`` placed at ``ref[index]``: "
    "the adjoint of slice, a scatter rather than a padded copy.",
)

# ------------------------------------------------------------- broadcasting


def _infer_broadcast_to(types, shape):
    (x,) = types
    if broadcast_shapes(x.shape, shape) != tuple(shape):
        fail_shape(f"cannot broadcast to {fmt_shape(shape)}")
    return TensorType(x.dtype, tuple(shape))


def _infer_broadcast_like(types):
    x, ref = types
    # A size ref knows only at run time may be one x knows statically (a (3, 4)
    # tangent for a (?, ?) symbol): the result then has x's static size.
    shape = broadcast_shapes(x.shape, ref.shape) if x.ndim <= ref.ndim else None
    if shape is None or any(r is not None and r != d for r, d in zip(ref.shape, shape)):
        fail_shape(f"cannot broadcast {fmt_shape(x.shape)} to {fmt_shape(ref.shape)}")
    return TensorType(x.dtype, shape)


BROADCAST_TO = Op(
    "broadcast_to",
    infer=_infer_broadcast_to,
    impl=lambda x, shape: np.broadcast_to(x, shape),
    vjp=(lambda g, out, x, shape: reductions.unbroadcast(g, x.type),),
    jvp=lambda ts, out, x, shape: BROADCAST_TO(ts[0], shape=shape),
    kind="shape",
    samples=lambda rng: [((rng.normal(size=(3, 1)),), {"shape": (2, 3, 4)}), ((rng.normal(size=()),), {"shape": (3,)})],
    doc="np.broadcast_to with a static shape.",
)

BROADCAST_LIKE = Op(
    "broadcast_like",
    infer=_infer_broadcast_like,
    impl=lambda x, ref: np.broadcast_to(x, ref.shape),
    vjp=(lambda g, out, x, ref: reductions.unbroadcast(g, x.type), None),
    jvp=lambda ts, out, x, ref: None if ts[0] is None else BROADCAST_LIKE(ts[0], ref),
    kind="shape",
    samples=lambda rng: [((rng.normal(size=(3, 1)), rng.normal(size=(3, 4))), {})],
    doc="Broadcast x to the run-time shape of ref (whose value is not used).",
)

# -------------------------------------------------------------- concatenate


def _infer_concatenate(types, axis):
    first = types[0]
    if any(t.ndim != first.ndim for t in types):
        fail_shape("all inputs must have the same number of dimensions")
    if not 0 <= axis < first.ndim:
        fail_shape(f"axis {axis} out of range for {first.ndim}-d inputs")
    dims = []
    for a in range(first.ndim):
        column = [t.shape[a] for t in types]
        if a == axis:
            dims.append(None if None in column else sum(column))
        else:
            known = {d for d in column if d is not None}
            if len(known) > 1:
                fail_shape(f"sizes along axis {a} differ: {column}")
            dims.append(known.pop() if known else None)
    return TensorType(first.dtype, tuple(dims))


_CONCAT_BOUNDS = weakref.WeakKeyDictionary()  # out -> [(start, stop)] per input: O(k) once per node


def _concat_bounds(out, xs, axis):
    """Where each input sits along ``axis`` of ``out``: offsets from the start up to
    the one input of unknown size (at most one: see ``_concatenated_part``), from the
    end after it."""
    sizes = [x.type.shape[axis] for x in xs]
    unknown = [k for k, d in enumerate(sizes) if d is None]
    split = unknown[0] if unknown else len(xs)
    head = list(itertools.accumulate(sizes[:split], initial=0))
    tail = list(itertools.accumulate(reversed(sizes[split + 1:]), initial=0))[::-1]  # tail[j] = sum(sizes[split+1+j:])
    bounds = []
    for i in range(len(xs)):
        if sizes[i] == 0:  # counted from the end, an empty part's start would be -0, the axis's start
            bounds.append((0, 0))
        elif i < split:
            bounds.append((head[i], head[i] + sizes[i]))
        elif i == split:
            bounds.append((head[i], -tail[0] or None))
        else:
            j = i - split - 1
            bounds.append((-(tail[j]), -(tail[j] - sizes[i]) or None))
    return bounds


def _vjp_concatenate(i, g, out, *xs, axis):
    if sum(x.type.shape[axis] is None for x in xs) > 1:
        return _concatenated_part(g, xs, i, axis)
    bounds = _CONCAT_BOUNDS.get(out)
    if bounds is None:
        bounds = _CONCAT_BOUNDS[out] = _concat_bounds(out, xs, axis)
    start, stop = bounds[i]
    index = tuple((start, stop, 1) if a == axis else (None, None, 1) for a in range(g.ndim))
    return SLICE(g, index=index)


def _concatenated_part(g, xs, i, axis):
    """Part ``i`` of ``g`` along ``axis`` when several parts' sizes are known only at run
    time: a gather at iota + the run-time offset (a slice needs static bounds)."""
    from .. import frontend as F
    from ..frontend.indexing import take  # late: the front end builds on this module
    from .creation import IOTA

    offset = sum(x.type.shape[axis] for x in xs[:i] if x.type.shape[axis] is not None)
    for x in xs[:i]:
        if x.type.shape[axis] is None:
            offset = F.dim(x, axis) + offset
    return take(g, IOTA(xs[i], axis=axis) + offset, axis=axis)


def _jvp_concatenate(ts, out, *xs, axis):
    from .elementwise import zeros_like  # late: elementwise builds on this module

    return CONCATENATE(*[zeros_like(x) if t is None else t for t, x in zip(ts, xs)], axis=axis)


CONCATENATE = Op(
    "concatenate",
    infer=_infer_concatenate,
    impl=lambda *xs, axis: np.concatenate(xs, axis=axis),
    vjp=_vjp_concatenate,
    jvp=_jvp_concatenate,
    kind="shape",
    samples=lambda rng: [
        ((rng.normal(size=(2, 3)), rng.normal(size=(1, 3)), rng.normal(size=(4, 3))), {"axis": 0}),
        ((rng.normal(size=(2,)), rng.normal(size=(3,))), {"axis": 0}),
    ],
    doc="np.concatenate along a static axis.",
)

# ---------------------------------------------------------------------- dim


def _infer_dim(types, axis):
    (x,) = types
    if not 0 <= axis < x.ndim:
        fail_shape(f"axis {axis} out of range for {x.ndim}-d input")
    return TensorType("int64", ())


DIM = Op(
    "dim",
    infer=_infer_dim,
    impl=lambda x, axis: np.asarray(x.shape[axis], dtype=np.int64),
    kind="shape",
    samples=lambda rng: [((rng.normal(size=(3, 4)),), {"axis": 1})],
    doc="The run-time size of one axis, as an int64 scalar.",
)


# ------------------------------------------------------------------ check_sizes

_SIZE_RELATIONS = {"==": lambda left, right: left == right, ">=": lambda left, right: left >= right}
_SIZE_ERRORS = ("ShapeError", "GradientError")


def size_check_error(error: str, message: str, sizes):
    """The exception ``check_sizes`` raises: ``error`` (a class of ``symdiff.errors``) with
    ``message`` formatted with the two sizes; marked complete (``sd_complete``), so the
    reference evaluator passes it on as it is (it already names the user's line)."""
    from .. import errors

    exc = getattr(errors, error)(message.format(*sizes))
    exc.sd_complete = True
    return exc


def _infer_check_sizes(types, axes, relation, error, message):
    x, y = types
    if relation not in _SIZE_RELATIONS or error not in _SIZE_ERRORS:
        fail_shape(f"relation must be one of {tuple(_SIZE_RELATIONS)} and error one of {_SIZE_ERRORS}")
    if len(axes) != 2 or not all(-y.ndim <= a < y.ndim for a in axes):
        fail_shape(f"axes {axes}: two axes of the {y.ndim}-d second input")
    sizes = [y.shape[a] for a in axes]
    if None not in sizes and not _SIZE_RELATIONS[relation](*sizes):
        raise size_check_error(error, message, sizes)
    return x


def _impl_check_sizes(x, y, axes, relation, error, message):
    sizes = [np.shape(y)[a] for a in axes]
    if not _SIZE_RELATIONS[relation](*sizes):
        raise size_check_error(error, message, sizes)
    return x


CHECK_SIZES = Op(
    "check_sizes",
    infer=_infer_check_sizes,
    impl=_impl_check_sizes,
    vjp=(lambda g, out, x, y, **attrs: g, None),
    jvp=lambda tangents, out, x, y, **attrs: tangents[0],
    kind="shape",
    samples=lambda rng: [((rng.normal(size=(2, 3)), rng.normal(size=(4, 4))),
                          {"axes": (0, 1), "relation": "==", "error": "GradientError", "message": "{0} != {1}"}),
                         ((rng.normal(size=(3,)), rng.normal(size=(4, 2))),
                          {"axes": (-2, -1), "relation": ">=", "error": "ShapeError", "message": "{0} < {1}"})],
    doc="x, once y.shape[axes[0]] `relation` y.shape[axes[1]] holds (relation '==' or '>='); else "
        "the error class named `error` (of symdiff.errors) with `message` formatted with the two sizes. "
        "A rule whose formulas need a condition on sizes that the shape rule cannot see (None sizes) "
        "routes a value through it, so the condition is checked before the formulas run, with the "
        "rule's own words: svd's U and Vh rules need a square matrix when full_matrices=True.  "
        "A primitive because neither backend could otherwise raise a chosen error with a chosen "
        "message: the compiled backend checks it with its other run-time sizes at the kernel's top.",
)
