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


def _extremum_weights(out, x, axes, keepdims, initial=None):
    """Where x attains the extremum, 1/(number of ties); elsewhere 0.

    Ties share the derivative equally, so it is the same whichever tie a
    backend happens to pick.  With ``initial``, a slice that no element attains (empty, or
    ``initial`` beyond every element) has weight 0 throughout (``initial`` takes no share).
    """
    hit = F.astype(F.equal(x, keep_axes(out, axes, keepdims)), x.dtype)
    count = SUM(hit, axes=axes, keepdims=True)
    return hit / (count if initial is None else F.where(F.equal(count, 0), 1, count))


def _infer_extremum(types, axes, keepdims, initial=None):
    if initial is not None and not axes:
        fail_shape("initial needs at least one reduced axis")
    return _infer_reduction(types, axes, keepdims)


def _extremum_op(name, numpy_fn):
    def impl(x, axes, keepdims, initial=None):
        if initial is None:
            return numpy_fn(x, axis=axes, keepdims=keepdims)
        return numpy_fn(x, axis=axes, keepdims=keepdims, initial=np.asarray(initial).astype(x.dtype))

    op = Op(
        name,
        infer=_infer_extremum,
        impl=impl,
        vjp=(lambda g, out, x, axes, keepdims, initial=None:
             keep_axes(g, axes, keepdims) * _extremum_weights(out, x, axes, keepdims, initial),),
        jvp=lambda ts, out, x, axes, keepdims, initial=None:
            SUM(ts[0] * _extremum_weights(out, x, axes, keepdims, initial), axes=axes, keepdims=keepdims),
        kind="reduction",
        samples=_reduction_samples,
        doc=f"{name.capitalize()} over static axes; ties share the derivative equally.  The optional static "
            f"``initial`` (private: prod's rule) takes part in the {name} and is the value over an empty axis, "
            f"with no share of the derivative (the front end's ``initial`` is a composite instead).",
    )
    return op


MAX = _extremum_op("max", np.max)
MIN = _extremum_op("min", np.min)


def _two_norm_numpy(x, axes, keepdims):
    """The composite's steps (``frontend.math.two_norm_composite``) in NumPy."""
    scale, root = _two_norm_scale_root(x, axes)  # scale is 1 where the plain sum was in range
    with np.errstate(all="ignore"):
        result = (root / scale).astype(x.dtype, copy=False)
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
    """x / norm in x's shape (the private primitive ``two_norm_slope``)."""
    return TWO_NORM_SLOPE(x, axes=axes, keepdims=keepdims)


def _two_norm_slope_composite(x, axes, keepdims):
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
    slope = (late * keep_axes(scale, axes, keepdims)) / F.where(F.equal(norm, 0), 1, norm)
    return F.where(F.equal(norm, np.inf), _infinite_slope(x, late, axes, F), slope)


def _infinite_slope(x, late, axes, ops):
    """x / norm's limit where the norm is infinite (and no entry NaN): +-1 / sqrt(m) at the m
    infinite entries of the slice, 0 at the finite ones (x / inf gave inf / inf = NaN and 0:
    [nan, 0] at [inf, 1], true [1, 0]).  ``ops``: the frontend, or NumPy for the reference.
    The count reads x (its reduction joins the sum of squares' loop), the rest reads ``late``
    (x, placed in the slope's own loop: no array is stored between the loops) and selects
    only, so the common path's loops stay vectorised (sign(x) and an inf test stored for the
    last loop made norm's value+grad on 1e6 elements 1.25 -> 8.9 ms)."""
    if ops is F:
        # reduced without keepdims: a kept axis made its loop accumulate through memory
        infinite = F.astype(F.equal(F.abs(x), np.inf), x.dtype)
        count = keep_axes(SUM(infinite, axes=axes, keepdims=False), axes, False)
    else:
        count = np.sum(np.abs(x) == np.inf, axis=axes, keepdims=True).astype(x.dtype)
    share = 1 / ops.sqrt(count)
    return ops.where(ops.equal(ops.abs(late), np.inf), ops.where(ops.greater(late, 0), share, -share), 0)


def _two_norm_slope_numpy(x, axes, keepdims):
    """The composite's steps (``_two_norm_slope_composite``) in NumPy."""
    scale, root = _two_norm_scale_root(x, axes)
    with np.errstate(all="ignore"):
        slope = (x * scale) / np.where(root == 0, 1, root)
        return np.where(root == np.inf, _infinite_slope(x, x, axes, np), slope).astype(x.dtype, copy=False)


def _two_norm_scale_root(x, axes):
    """(scale, root) of ``frontend.math.two_norm_parts`` in NumPy, the reduced axes kept."""
    dtype = x.dtype
    smallest_sum, down, up = TWO_NORM_RANGE[dtype.name]
    with np.errstate(all="ignore"):
        squares = np.sum(x * x, axis=axes, keepdims=True)
        plain = (squares >= smallest_sum) & (squares < np.inf)
        scale = np.where(plain, 1.0, np.where(squares >= 1, down, up)).astype(dtype)
        rescaled = np.sum((x * scale) * (x * scale), axis=axes, keepdims=True)
        value = np.where(plain, squares, rescaled)
        root = np.where(value > 0, np.sqrt(np.where(value > 0, value, 1)), value).astype(dtype, copy=False)
    return scale, root


def _two_norm_slope_derivative(c, out, x, axes, keepdims):
    """The slope's derivative along c (its vjp and its jvp: the operator is symmetric),
    (c - u (u . c)) / norm with u = x / norm: the projection first, then the division by the
    norm as (p / root) * scale where x was scaled up, (p * scale) / root elsewhere, so that
    1 / norm is never formed (it overflows below 5.6e-309 where (1 - u_i**2) / norm does not:
    the diagonal at [3e-309, 4e-309] was inf by reverse over reverse, true 1.28e308).
    Where the norm is 0 (x = 0, where the norm has no derivative and the gradient is the
    subgradient 0): 0, the derivative of that constant choice.  The limit along c, c / (|c| t),
    is unbounded, and an infinite Hessian there made every composite that is smooth at 0 NaN
    by forward over reverse (the ridge penalty norm(w)**2 at w = 0: 0 * inf), where 0 keeps
    them finite (their true second derivatives need the norm's slope, which 0 has not: the
    Hessian of norm(w)**2 at 0 comes out 0, not 2I; sum(w * w) is exact)."""
    from ..frontend.math import two_norm_parts

    _, scale, root = two_norm_parts(x, axes, keepdims)
    scale, root = keep_axes(scale, axes, keepdims), keep_axes(root, axes, keepdims)
    # (I - u u^T) c.  Its i-th entry c_i (1 - u_i**2) - u_i sum_{j != i} u_j c_j cancels in
    # c_i - u_i (u . c) where |u_i| is near 1 (the diagonal 1 - u_i**2: 455 ulps at [1e-310,
    # 2.5e-309]).  At most one entry of a slice has u_i**2 > 9/16 (the dominant one; with 1/2,
    # both entries of [1.7e308, 1.7e308] rounded above it); it takes 1 - u_i**2 as the sum of
    # the other squares and u . c without its own term, sums of the others without subtraction
    # (others_sum forms sum - x_i, which cancels the same way).  The other entries keep
    # c_i - u_i (u . c): there 1 - u_i**2 >= 7/16.
    def total(v):  # reduced without keepdims: a kept axis made its loop accumulate through memory
        return keep_axes(SUM(v, axes=axes, keepdims=False), axes, False)

    dominant = F.greater(out * out, 0.5625)
    rest, others = total(F.where(dominant, 0, out * out)), total(F.where(dominant, 0, out * c))
    p = F.where(dominant, c * rest - out * others, c - out * total(out * c))
    quotient = F.where(F.greater(scale, 1), (p / root) * scale, (p * scale) / root)
    return F.where(F.equal(root, 0), 0, quotient)


def _two_norm_slope_samples(rng):
    return [((rng.normal(size=(3, 4)),), {"axes": (1,), "keepdims": False}),
            ((rng.normal(size=(3, 4)),), {"axes": (0, 1), "keepdims": False}),
            ((rng.normal(size=(2, 3, 4)),), {"axes": (0, 2), "keepdims": True})]


# A primitive for its rules: as the composite, the slope's derivative divided by the norm
# before the projection (I - u u^T) reduced it, and 1 / norm overflows below 5.6e-309 where
# the Hessian (I - u u^T) / norm does not (its diagonal was inf or NaN there by reverse over
# reverse); at x = 0 the composite's derivative was diag(2**600), a value of nothing (now 0).  Its
# rules (``_two_norm_slope_derivative``) project first and scale by powers of two.
# Compiled as the composite (``_two_norm_slope_composite``), whose nodes the value shares.
TWO_NORM_SLOPE = Op(
    "two_norm_slope",
    infer=lambda types, axes, keepdims: _infer_float_reduction(types, axes, True) and types[0],
    impl=_two_norm_slope_numpy,
    vjp=(lambda c, out, x, axes, keepdims: _two_norm_slope_derivative(c, out, x, axes, keepdims),),
    jvp=lambda ts, out, x, axes, keepdims: _two_norm_slope_derivative(ts[0], out, x, axes, keepdims),
    kind="reduction",
    samples=_two_norm_slope_samples,
    doc="x / two_norm(x) over static axes in x's shape, 0 where the norm is 0 (private: two_norm's "
        "slope); a primitive for its rules, compiled as its composite.",
    compiled_as=lambda x, axes, keepdims: _two_norm_slope_composite(x, axes, keepdims),
)


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
        "and std); a primitive for its rules, compiled as its composite.  At x = 0 its gradient is the "
        "subgradient 0 and its Hessian 0 (two_norm_slope: why).",
    compiled_as=_two_norm_compiled,
)


def _least_parts(x, axes):
    """The pieces of ``_prod_partial`` (shared by scaled_prod's rules; identical nodes are one):
    (is_least, count of least per slice, x with its least replaced by 1, the other least
    element (others_sum of the least: meaningful for a count of 2), is_zero, x with its zeros
    replaced by 1 (the divisor of prod / x_i), a one of x's rank)."""
    magnitude = F.abs(x)
    # initial: over an empty axis the partial is empty, and min would raise (the largest finite
    # float, not inf: a slice of infinities has no least elements, so each takes prod / x_i, the
    # product of the others where x_i's own infinity cancels in scaled_prod)
    empty_allowed = {"initial": float(np.finfo(x.dtype).max) if x.dtype in ("float32", "float64") else 2**63 - 1} \
        if axes else {}
    is_least = F.equal(magnitude, MIN(magnitude, axes=axes, keepdims=True, **empty_allowed))
    x_rest = F.where(is_least, 1, x)
    count = SUM(F.astype(is_least, "int64"), axes=axes, keepdims=True)
    other_one = OTHERS_SUM(F.where(is_least, x, 0), axes=axes, infinities_apart=False)
    is_zero = F.equal(x, 0)
    one = F.constant(np.ones((1,) * x.ndim, dtype=x.dtype))
    return is_least, count, x_rest, other_one, is_zero, _divisor(x, None, True), one


def _prod_partial(x, axes, times):
    """d prod / d x_i times ``times`` (x's shape, or size 1 along ``axes``): the product of
    the other elements, exact at zeros and well conditioned near them; its own derivatives
    are exact to any order with at most two zeros per reduced slice, and to the second
    derivative of prod with more.

    The elements of least magnitude (zeros first) get the product of the others
    without division: the product of the rest times that of the other least
    elements (none; the one other, as ``others_sum`` of the least elements so it keeps
    its derivative; or, for three or more, the product / x_i, or 0 if they are zeros).
    Every other element gets prod / x_i, a ``scaled_prod`` with ``others=True``: its rules
    never form x_i's own derivative (p_i / x_i - prod / x_i**2, two terms that cancel
    exactly and overflowed where the partial does not: NaN on the Hessian's diagonal).

    Every product is a ``scaled_prod`` (its binary exponent tracked apart) with ``times``
    inside it: right wherever the partial times ``times`` is representable, also where
    prod itself, the product of the rest or a partial product overflows or underflows
    (``[1e80] * 4``: inf before, true 1e240; ``[1e-200] * 3 + [1e200]``: 0, true 1e-200),
    and at an infinite x_i (prod / x_i cancels x_i's own infinity: [inf, 2, 3] gives 6).
    """
    is_least, count, x_rest, other_one, is_zero, over, one = _least_parts(x, axes)
    # prod / x_i: the others; for three or more least, 0 at their zeros (no 0 / 0, even in the
    # masked-out branch's derivative: x_i is replaced by 1 there)
    over_x = SCALED_PROD(x, times, one, over, axes=axes, others=True)
    least_many = F.where(is_zero, 0, over_x)
    least_few = SCALED_PROD(x_rest, F.where(F.equal(count, 1), one, other_one), times, one, axes=axes)
    return F.where(is_least, F.where(F.greater(count, 2), least_many, least_few), over_x)


def _others_sum_composite(x, axes, infinities_apart):
    """``others_sum`` from existing ops: sum - x_i; with ``infinities_apart``, the finite
    entries' sum minus the entry's own finite part, then the others' infinities and NaN by
    counts (an entry's own infinity is never subtracted from a sum that holds it)."""
    from ..frontend.math import isfinite

    if not infinities_apart:
        return SUM(x, axes=axes, keepdims=True) - x
    finite = isfinite(x)
    own = F.where(finite, x, 0)
    rest = SUM(own, axes=axes, keepdims=True) - own

    def others(mask):
        count = F.astype(mask, "int64")
        return F.greater(SUM(count, axes=axes, keepdims=True) - count, 0)

    up, down, nan = others(F.equal(x, np.inf)), others(F.equal(x, -np.inf)), others(F.not_equal(x, x))
    infinite = F.where(up, np.inf, F.where(down, -np.inf, rest))
    return F.where(F.logical_or(nan, F.logical_and(up, down)), np.nan, infinite)


def _others_sum_numpy(x, axes, infinities_apart):
    """The composite's steps in NumPy."""
    with np.errstate(all="ignore"):
        if not infinities_apart:
            return np.sum(x, axis=axes, keepdims=True) - x
        finite = np.isfinite(x)
        own = np.where(finite, x, 0).astype(x.dtype)
        rest = np.sum(own, axis=axes, keepdims=True) - own

        def others(mask):
            count = mask.astype(np.int64)
            return np.sum(count, axis=axes, keepdims=True) - count > 0

        up, down, nan = others(x == np.inf), others(x == -np.inf), others(x != x)
        result = np.where(nan | (up & down), np.nan, np.where(up, np.inf, np.where(down, -np.inf, rest)))
    return result.astype(x.dtype, copy=False)


def _others_sum_samples(rng):  # finite (finite differences); infinities: tests/test_math_ops.py (prod's Hessian)
    return [((rng.normal(size=(3, 4)),), {"axes": (1,), "infinities_apart": False}),
            ((rng.normal(size=(2, 3, 4)),), {"axes": (0, 2), "infinities_apart": True}),
            ((rng.normal(size=(5,)),), {"axes": (0,), "infinities_apart": True})]


# A primitive for its rules: sum(x) - x_i sends a cotangent c_i to x_i twice, through the
# sum and through -x_i, where it cancels; an infinite c_i (a Hessian entry of prod that
# overflows) makes that inf - inf = NaN.  Its derivative is itself (the operator is
# symmetric) with the others' infinities counted apart (``infinities_apart``), so no entry's
# infinite cotangent meets itself: prod's Hessian diagonal at [1e200, 1e200, 1e-200, 1e-200]
# was NaN by reverse over reverse (true 0, the row's other least entry 1 / 1e-400
# overflowing).  prod's gradient uses the plain form (sum - x_i: its kernel is unchanged;
# infinities apart cost value+grad on 1e6 elements 8 -> 22 ms), whose rules are the
# counted form.  Compiled as its composite.
OTHERS_SUM = Op(
    "others_sum",
    infer=lambda types, axes, infinities_apart: _infer_float_reduction(types, axes, True) and types[0],
    impl=_others_sum_numpy,
    vjp=(lambda c, out, x, axes, infinities_apart: OTHERS_SUM(c, axes=axes, infinities_apart=True),),
    jvp=lambda ts, out, x, axes, infinities_apart: OTHERS_SUM(ts[0], axes=axes, infinities_apart=True),
    kind="reduction",
    samples=_others_sum_samples,
    doc="The sum over static axes of the entries other than x_i, in x's shape (private: prod's partial); "
        "with infinities_apart, an entry's own infinity never cancels against itself (its rules' form).  "
        "A primitive for its rules, compiled as its composite.",
    compiled_as=_others_sum_composite,
)


def _frexp_apart(x):
    """frexp, with an infinity as +-0.5 * 2**SCALED_PROD_INFINITE (runtime._frexp_apart)."""
    x = np.asarray(x, dtype=np.float64)
    mantissas, exponents = np.frexp(x)
    infinite = np.isinf(x)
    return (np.where(infinite, np.copysign(0.5, x), mantissas),
            np.where(infinite, SCALED_PROD_INFINITE, exponents.astype(np.int64)))


def _scaled_prod_numpy(x, y, w, z, axes, others=False):
    """prod(x over axes) * y * w / z, as the compiled code computes it: the product as m * 2**e
    (m renormalised by frexp, e an integer), then (m * my * mw / mz) * 2**(e + ey + ew - ez); an
    infinity is +-0.5 * 2**SCALED_PROD_INFINITE, at most three of them counted in x.  With
    ``others``, z is where(x == 0, 1, x) whatever is passed (the compiled code reads z, which
    prod's rule builds so)."""
    if others:
        z = np.where(np.asarray(x) == 0, 1, x).astype(np.result_type(x, y, w, z))
    dtype = np.result_type(x, y, w, z)
    work = np.moveaxis(np.asarray(x, dtype=np.float64), axes, range(-len(axes), 0))
    kept = work.shape[:work.ndim - len(axes)]
    work = work.reshape(kept + (int(np.prod(work.shape[len(kept):], dtype=np.int64)),))
    m = np.ones(work.shape[:-1])
    e = np.zeros(work.shape[:-1], dtype=np.int64)
    with np.errstate(all="ignore"):
        mantissas, exponents = _frexp_apart(work)
        infinities = np.minimum(np.sum(np.isinf(work), axis=-1), 3)
        e += np.sum(np.where(np.isinf(work), 0, exponents), axis=-1) + infinities * SCALED_PROD_INFINITE
        for start in range(0, work.shape[-1], 256):  # each block's product is at least 2**-256
            m = m * np.prod(mantissas[..., start:start + 256], axis=-1)
            m, k = np.frexp(m)
            e += k
        shape = tuple(1 if a in axes else d for a, d in enumerate(np.shape(x)))
        m, e = m.reshape(shape), e.reshape(shape)
        (my, ey), (mw, ew), (mz, ez) = _frexp_apart(y), _frexp_apart(w), _frexp_apart(z)
        exponent = e + ey + ew - ez
        ratio = m * my * mw / mz
        limited = np.clip(exponent, -SCALED_PROD_EXPONENT_LIMIT, SCALED_PROD_EXPONENT_LIMIT)
        result = np.ldexp(ratio, limited.astype(np.int32))
        result = np.where((ratio == 0) & (exponent >= SCALED_PROD_INFINITE // 2), np.nan, result)  # 0 * inf
    return np.broadcast_to(result, np.shape(x)).astype(dtype)


SCALED_PROD_EXPONENT_LIMIT = 1 << 20  # beyond it every float overflows or underflows (ldexp takes a C int)
SCALED_PROD_INFINITE = 1 << 50  # an infinity's exponent: beyond every finite exponent sum (1075 per entry)


def _infer_scaled_prod(types, axes, others=False):
    x, *factors = types
    if x.dtype not in ("float32", "float64") or any(t.dtype != x.dtype for t in factors):
        raise DTypeError(f"scaled_prod takes one float dtype, got {[t.dtype for t in types]}")
    if any(t.ndim != x.ndim for t in factors):
        fail_shape(f"y, w and z must have x's rank {x.ndim} (size 1 to broadcast), got {[t.ndim for t in factors]}")
    for t in factors:
        for a, (d, e) in enumerate(zip(x.shape, t.shape)):
            if e != 1 and d is not None and e is not None and d != e:
                fail_shape(f"size {e} on axis {a} does not broadcast to x's {d}")
    _infer_reduction((x,), axes, True)
    return x


def _divisor(x, z, others):
    """z, or with ``others`` the where(x == 0, 1, x) it stands for (the value ignores z)."""
    return F.where(F.equal(x, 0), 1, x) if others else z


# Products and quotients in the rules are taken left to right from the cotangent or tangent:
# where a branch of prod's partial is masked out, that is an exact 0, and 0 / z stays 0 where
# w / z would be inf (z a subnormal element: 0 * inf was NaN in the Hessian).
def _scaled_prod_vjp_x(g, out, x, y, w, z, axes, others=False):
    if others:  # sum_{i != k} g_i y_i w_i prod / (x_i x_k): x_k's own term is never formed
        return _prod_partial(x, axes, OTHERS_SUM(g * y * w / _divisor(x, z, True), axes=axes, infinities_apart=False))
    return _prod_partial(x, axes, SUM(g * y * w / z, axes=axes, keepdims=True))


def _scaled_prod_vjp_z(g, out, x, y, w, z, axes, others=False):
    if others:  # z stands for x (``others``): x's rule is the whole derivative
        from .elementwise import zeros_like  # (elementwise imports this module)

        return zeros_like(z)
    return unbroadcast(-(SCALED_PROD(x, g, y, z, axes=axes) / z * w), z.type)


def _others_tangent(ts, x, y, w, axes):
    """The x-term of ``others`` scaled_prod's tangent: y_i w_i sum_{k != i} t_k prod / (x_i x_k),
    with no product formed as a float.  Least elements k of a count up to 2 (tiny or zero
    x_k, where t_k / x_k overflows or is undefined) enter as the tangent dL of their own
    product, times the product of the rest over x_i (B); every other k as t_k / x_k, summed
    over the others of i, inside the scaled product (A).  Three or more least elements have
    one magnitude and enter A (at zeros prod / x_i = 0 there, as the true partial)."""
    is_least, count, x_rest, other_one, is_zero, over, one = _least_parts(x, axes)
    few = F.logical_and(is_least, F.less_equal(count, 2))
    ratio = OTHERS_SUM(F.where(few, 0, ts / over), axes=axes, infinities_apart=False)
    along = SCALED_PROD(x, y, w * ratio, over, axes=axes, others=True)
    least_tangent = SUM(F.where(few, ts * F.where(F.equal(count, 1), one, other_one), 0), axes=axes, keepdims=True)
    rest = SCALED_PROD(x_rest, y, w * least_tangent, _divisor(x_rest, None, True), axes=axes, others=True)
    return along + F.where(is_least, 0, rest)


def _scaled_prod_jvp(ts, out, x, y, w, z, axes, others=False):
    tx, ty, tw, tz = ts
    terms = []
    if tx is not None and others:
        terms.append(_others_tangent(tx, x, y, w, axes))
    elif tx is not None:
        # x's term: P y w / z times sum_k t_k / x_k, inside the scaled product (no partial
        # product formed as a float: the fwd-fwd Hessian was NaN where sum_k t_k P / x_k
        # overflowed and met a zero of y).  Exact where x has no zeros, as in every scaled_prod
        # without ``others`` that prod's rules build (over x with its least entries replaced by 1)
        terms.append(SCALED_PROD(x, y, w * SUM(tx / x, axes=axes, keepdims=True), z, axes=axes))
    z = _divisor(x, z, others)
    if ty is not None:
        terms.append(SCALED_PROD(x, ty, w, z, axes=axes, others=others))
    if tw is not None:
        terms.append(SCALED_PROD(x, y, tw, z, axes=axes, others=others))
    if tz is not None and not others:
        terms.append(-(SCALED_PROD(x, tz, y, z, axes=axes) / z * w))
    total = terms[0] if terms else None
    for term in terms[1:]:
        total = total + term
    return total if total is None else F.broadcast_like(total, x)


def _scaled_prod_samples(rng):
    def case(shape, axes, y_shape=None, z_shape=None):
        y_shape, z_shape = y_shape or shape, z_shape or shape
        return ((rng.normal(size=shape), rng.normal(size=y_shape), rng.normal(size=shape),
                 rng.uniform(0.5, 2.0, size=z_shape) * rng.choice([-1.0, 1.0], size=z_shape)), {"axes": axes})

    def others(shape, axes):  # z is x (no zeros: the value there is not the product of the others)
        x = rng.uniform(0.5, 2.0, size=shape) * rng.choice([-1.0, 1.0], size=shape)
        return ((x, rng.normal(size=shape), rng.normal(size=shape), x.copy()), {"axes": axes, "others": True})

    return [case((3, 4), (1,)), case((3, 4), (0, 1), (1, 1)), case((2, 3, 4), (0, 2), (2, 1, 4), (1, 3, 1)),
            case((5,), (0,)), others((3, 4), (1,)), others((2, 3, 4), (0, 2))]


# A primitive because a product's overflow or underflow is decided by its partial products:
# [1e300, 1e300, 1e-300] overflows in its second step whatever is done after it, so the
# derivative of prod needs a product whose binary exponent is kept apart (an integer) while
# its mantissa is renormalised, which no composite of NumPy's vocabulary can form.  Its value
# is prod * y * w / z in x's shape, so that a cotangent, the other least element and the
# partial's quotient meet the product before it is rounded to a float: prod's gradient at
# [1e80] * 4 is 1e240 (inf before), and its Hessian at [1e300, 1e-300, 1e300, 1e-300] has
# the entries 1 (times * other_one underflowed when w was not apart).  An infinity counts as a
# power of two beyond every float (``SCALED_PROD_INFINITE``), so prod / x_i at an infinite x_i is
# the product of the others ([inf, 2, 3]: 6, was NaN).  ``others`` marks prod / x_i itself, whose
# rules skip x_i's own derivative (``_scaled_prod_vjp_x``, ``_others_tangent``).  Its
# rules are written with itself and prod's partial (``_prod_partial``), so it differentiates
# again.  Compiled: ``backends/reductions.py`` (the scaled accumulation beside the loop that
# produces x; runtime helpers ``_scaled_prod_step`` and ``_scaled_prod_ratio``).
SCALED_PROD = Op(
    "scaled_prod",
    infer=_infer_scaled_prod,
    impl=_scaled_prod_numpy,
    vjp=(_scaled_prod_vjp_x,
         lambda g, out, x, y, w, z, axes, others=False:
             unbroadcast(SCALED_PROD(x, g, w, _divisor(x, z, others), axes=axes, others=others), y.type),
         lambda g, out, x, y, w, z, axes, others=False:
             unbroadcast(SCALED_PROD(x, y, g, _divisor(x, z, others), axes=axes, others=others), w.type),
         _scaled_prod_vjp_z),
    jvp=_scaled_prod_jvp,
    kind="reduction",
    samples=_scaled_prod_samples,
    doc="prod(x over axes, kept) * y * w / z in x's shape with the product's binary exponent tracked apart "
        "(private: prod's derivative); exact scaling, so right wherever the result is representable, an "
        "infinity counted as a power of two beyond every float (so x_i's own infinity cancels in prod / x_i).  "
        "With ``others``, z is where(x == 0, 1, x) and the result is read as y w times the product of the entries "
        "other than x_i: its rules never form x_i's own derivative (two cancelling terms that overflowed).",
)


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
    vjp=(lambda g, out, x, axes, keepdims: _prod_partial(x, axes, keep_axes(g, axes, keepdims)),),
    jvp=lambda ts, out, x, axes, keepdims: SUM(_prod_partial(x, axes, ts[0]), axes=axes, keepdims=keepdims),
    kind="reduction",
    samples=_prod_samples,
    doc="Product over static axes; its derivative is exact at zeros, and right where the product "
        "overflows or underflows but a partial does not (scaled_prod).",
)
