"""Reductions over static axes: sum, max, min, prod; and ``unbroadcast``, the
adjoint of NumPy broadcasting that every broadcasting op's reverse rule uses."""

from __future__ import annotations

import numpy as np

from .. import frontend as F
from ..errors import DTypeError
from ..ir import Expr, Op, fail_shape
from ..types import TensorType


def _infer_reduction(types, axes, keepdims):
    (x,) = types
    if list(axes) != sorted(set(axes)) or any(not 0 <= a < x.ndim for a in axes):
        fail_shape(f"axes {axes} must be sorted, unique and within {x.ndim} dimensions")
    if keepdims:
        shape = tuple(1 if a in axes else d for a, d in enumerate(x.shape))
    else:
        shape = tuple(d for a, d in enumerate(x.shape) if a not in axes)
    return TensorType(x.dtype, shape)


def _infer_numeric_reduction(types, axes, keepdims):
    # NumPy sums and multiplies bools as int64; the front-end casts them first.
    if types[0].dtype == "bool":
        raise DTypeError("bool inputs are not supported; cast to int64 first (sd.sum does)")
    return _infer_reduction(types, axes, keepdims)


def keep_axes(g: Expr, axes, keepdims) -> Expr:
    """A reduction's result (or cotangent) with the reduced axes kept as size 1.

    >>> import symdiff as sd
    >>> keep_axes(sd.vector("g", 3), (0,), keepdims=False).type
    f64[1,3]
    """
    return g if keepdims or not axes else F.expand_dims(g, axes)


def unbroadcast(g: Expr, target: TensorType) -> Expr:
    """Sum ``g`` over the axes that broadcasting added to something of type ``target``.

    Broadcasting is decided statically, so so is this: leading axes that ``target``
    lacks, and axes where ``target`` has size 1 and ``g`` does not.

    >>> import symdiff as sd
    >>> unbroadcast(sd.matrix("g", (2, 3)), sd.vector("b", 3).type).type
    f64[3]
    """
    if g.type == target:
        return g
    lead = g.ndim - len(target.shape)
    stretched = tuple(lead + a for a, d in enumerate(target.shape) if d == 1 and g.type.shape[lead + a] != 1)
    if stretched:
        g = SUM(g, axes=stretched, keepdims=True)
    if lead:
        g = SUM(g, axes=tuple(range(lead)), keepdims=False)
    return g if g.dtype == target.dtype else F.astype(g, target.dtype)


def _reduction_samples(rng):
    return [
        ((rng.normal(size=(3, 4)),), {"axes": (1,), "keepdims": False}),
        ((rng.normal(size=(3, 4)),), {"axes": (0, 1), "keepdims": False}),
        ((rng.normal(size=(2, 3, 4)),), {"axes": (0, 2), "keepdims": True}),
        ((rng.normal(size=(5,)),), {"axes": (0,), "keepdims": True}),
    ]


SUM = Op(
    "sum",
    infer=_infer_numeric_reduction,
    impl=lambda x, axes, keepdims: np.sum(x, axis=axes, keepdims=keepdims),
    vjp=(lambda g, out, x, axes, keepdims: F.broadcast_like(keep_axes(g, axes, keepdims), x),),
    jvp=lambda ts, out, x, axes, keepdims: SUM(ts[0], axes=axes, keepdims=keepdims),
    kind="reduction",
    samples=_reduction_samples,
    doc="Sum over static axes.",
)


def _extremum_weights(out, x, axes, keepdims):
    """Where x attains the extremum, 1/(number of ties); elsewhere 0.

    Ties share the derivative equally, so it is the same whichever tie a
    backend happens to pick.
    """
    hit = F.astype(F.equal(x, keep_axes(out, axes, keepdims)), x.dtype)
    return hit / SUM(hit, axes=axes, keepdims=True)


def _extremum_op(name, numpy_fn):
    op = Op(
        name,
        infer=_infer_reduction,
        impl=lambda x, axes, keepdims: numpy_fn(x, axis=axes, keepdims=keepdims),
        vjp=(lambda g, out, x, axes, keepdims: keep_axes(g, axes, keepdims) * _extremum_weights(out, x, axes, keepdims),),
        jvp=lambda ts, out, x, axes, keepdims: SUM(ts[0] * _extremum_weights(out, x, axes, keepdims), axes=axes, keepdims=keepdims),
        kind="reduction",
        samples=_reduction_samples,
        doc=f"{name.capitalize()} over static axes; ties share the derivative equally.",
    )
    return op


MAX = _extremum_op("max", np.max)
MIN = _extremum_op("min", np.min)


def _two_norm_numpy(x, axes, keepdims):
    """The composite's steps (``frontend.math.two_norm_composite``) in NumPy."""
    dtype = x.dtype
    smallest_sum, down, up = TWO_NORM_RANGE[dtype.name]
    with np.errstate(all="ignore"):
        squares = np.sum(x * x, axis=axes, keepdims=True)
        plain = (squares >= smallest_sum) & (squares < np.inf)
        scale = np.where(squares >= 1, down, up).astype(dtype)
        rescaled = np.sum((x * scale) * (x * scale), axis=axes, keepdims=True)
        value = np.where(plain, squares, rescaled)
        root = np.where(value > 0, np.sqrt(np.where(value > 0, value, 1)), value)
        result = np.where(plain, root, root / scale).astype(dtype, copy=False)
    return result if keepdims else np.squeeze(result, axis=axes)


# Per dtype: the smallest sum of squares that keeps full precision (2**-970: below it the
# squares are near the subnormals), and the exact power-of-two scales for a second pass when
# the plain sum overflowed (2**-600: every scaled square and sum then stays finite) or fell
# below that bound (2**600: then every |x| < 2**-485, and every scaled square stays normal).
TWO_NORM_RANGE = {"float64": (2.0 ** -970, 2.0 ** -600, 2.0 ** 600), "float32": (2.0 ** -103, 2.0 ** -80, 2.0 ** 100)}


def _infer_float_reduction(types, axes, keepdims):
    if types[0].dtype not in ("float32", "float64"):
        raise DTypeError(f"{types[0].dtype} inputs are not supported; cast to a float dtype first (sd.linalg.norm does)")
    return _infer_reduction(types, axes, keepdims)


def _two_norm_slope(out, x, axes, keepdims):
    """x / norm: at most 1 in magnitude, formed before any cotangent or tangent multiplies it
    (the composite's chain rule took 1 / (2 scale sqrt(sum)) first, subnormal in float32 at
    |x| ~ 1e-21: 1e-5 relative error).  0 where the norm is 0 (a subgradient).

    Formed as (x * scale) / root from the composite's own nodes (``two_norm_parts``: scale
    is 1 where the plain sum of squares is in range, a power of two elsewhere, and root the
    norm of x * scale), not from the rounded norm: where the norm is subnormal or overflows,
    x / norm was wrong ([5e-324, 5e-324]: [1, 1]; [1.7e308, 1.7e308]: [0, 0]; true 0.7071).
    A compiled gradient shares these nodes with the value (no further pass over x)."""
    from ..frontend.math import two_norm_parts

    _, scale, root = two_norm_parts(x, axes, keepdims)
    norm = keep_axes(root, axes, keepdims)
    # x read through where(root >= 0, x, 0): x wherever root is not NaN, so x * scale is not the
    # value's own node (which its loop would store for this loop to read) and the greedy
    # placement puts it in the loop after the norm (as the Gaussian's factor in ops/special.py)
    late = F.where(F.greater_equal(norm, 0), x, 0)
    return (late * keep_axes(scale, axes, keepdims)) / F.where(F.equal(norm, 0), 1, norm)


def _two_norm_compiled(x, axes, keepdims):
    from ..frontend.math import two_norm_composite

    return two_norm_composite(x, axes, keepdims)


TWO_NORM = Op(
    "two_norm",
    infer=_infer_float_reduction,
    impl=_two_norm_numpy,
    vjp=(lambda g, out, x, axes, keepdims: keep_axes(g, axes, keepdims) * _two_norm_slope(out, x, axes, keepdims),),
    jvp=lambda ts, out, x, axes, keepdims: SUM(ts[0] * _two_norm_slope(out, x, axes, keepdims), axes=axes,
                                               keepdims=keepdims),
    kind="reduction",
    samples=_reduction_samples,
    doc="sqrt(sum(x * x)) over static axes with no overflow or underflow of the squares (private: norms "
        "and std); a primitive for its rules, compiled as its composite.",
    compiled_as=_two_norm_compiled,
)


def _prod_partial(out, x, axes, keepdims):
    """d prod / d x_i: the product of the other elements, exact at zeros and well
    conditioned near them; its own derivatives are exact to any order with at
    most two zeros per reduced slice, and to the second derivative of prod with more.

    The elements of least magnitude (zeros first) get the product of the others
    without division: the product of the rest times that of the other least
    elements (none; the one other, spelled as their sum - x_i so it keeps its
    derivative; or, for three or more, their product / x_i, or 0 if they are
    zeros).  Every other element gets prod / x_i, whose derivative in x_i,
    p_i / x_i - prod / x_i**2, cancels terms no larger than the products of the
    others, since |x_i| exceeds the least magnitude.
    """
    magnitude = F.abs(x)
    is_least = F.equal(magnitude, MIN(magnitude, axes=axes, keepdims=True))
    x_rest = F.where(is_least, 1, x)
    prod_rest = PROD(x_rest, axes=axes, keepdims=True)
    least = F.where(is_least, x, 1)
    count = SUM(F.astype(is_least, "int64"), axes=axes, keepdims=True)
    other_one = SUM(F.where(is_least, x, 0), axes=axes, keepdims=True) - x
    is_zero = F.equal(x, 0)
    least_nonzero = F.where(is_zero, 1, least)  # no 0 / 0 even in the masked-out branch's derivative
    others_many = F.where(is_zero, 0, PROD(least, axes=axes, keepdims=True) / least_nonzero)
    others = F.where(F.equal(count, 1), 1, F.where(F.equal(count, 2), other_one, others_many))
    return F.where(is_least, others * prod_rest, keep_axes(out, axes, keepdims) / x_rest)


def _prod_samples(rng):
    cases = _reduction_samples(rng)
    with_zero = rng.normal(size=(3, 4))
    with_zero[1, 2] = 0.0
    with_zeros_and_tiny = rng.normal(size=(3, 4))
    with_zeros_and_tiny[0, 1:3] = 0.0  # two zeros in a row: second derivatives need both
    with_zeros_and_tiny[2, 0] = 1e-200  # tiny but nonzero: no ill-conditioned division
    return cases + [((with_zero,), {"axes": (1,), "keepdims": False}),
                    ((with_zeros_and_tiny,), {"axes": (1,), "keepdims": False})]


PROD = Op(
    "prod",
    infer=_infer_numeric_reduction,
    impl=lambda x, axes, keepdims: np.prod(x, axis=axes, keepdims=keepdims),
    vjp=(lambda g, out, x, axes, keepdims: keep_axes(g, axes, keepdims) * _prod_partial(out, x, axes, keepdims),),
    jvp=lambda ts, out, x, axes, keepdims: SUM(ts[0] * _prod_partial(out, x, axes, keepdims), axes=axes, keepdims=keepdims),
    kind="reduction",
    samples=_prod_samples,
    doc="Product over static axes; its derivative is exact at zeros.",
)
