"""Matrix multiplication with NumPy's ``matmul`` semantics (1-d promotion, batch
broadcasting)."""

from __future__ import annotations

import numpy as np

from .. import frontend as F
from ..ir import Op, fail_shape
from ..types import TensorType, broadcast_shapes
from .reductions import unbroadcast


def _infer_matmul(types):
    a, b = types
    if a.dtype != b.dtype:
        fail_shape(f"dtypes differ: {a.dtype} and {b.dtype}")
    if a.ndim == 0 or b.ndim == 0:
        fail_shape("matmul needs at least 1-d inputs (use * for scalars)")
    a_shape = (1,) + a.shape if a.ndim == 1 else a.shape
    b_shape = b.shape + (1,) if b.ndim == 1 else b.shape
    k_a, k_b = a_shape[-1], b_shape[-2]
    if k_a is not None and k_b is not None and k_a != k_b:
        fail_shape(f"contraction dimensions differ: {k_a} != {k_b}")
    batch = broadcast_shapes(a_shape[:-2], b_shape[:-2])
    shape = batch + (a_shape[-2], b_shape[-1])
    if a.ndim == 1:
        shape = shape[:-2] + shape[-1:]
    if b.ndim == 1:
        shape = shape[:-1]
    return TensorType(a.dtype, shape)


def _as_matrices(g, a, b):
    """Cotangent and operands with 1-d operands promoted as matmul does."""
    if a.ndim == 1:
        g = F.expand_dims(g, -2 if b.ndim > 1 else 0)
        a = F.expand_dims(a, 0)
    if b.ndim == 1:
        g = F.expand_dims(g, -1)
        b = F.expand_dims(b, -1)
    return g, a, b


def _swap_last(x):
    axes = tuple(range(x.ndim - 2)) + (x.ndim - 1, x.ndim - 2)
    return F.transpose(x, axes)


def _vjp_a(g, out, a, b):
    if a.ndim == 1 and b.ndim == 1:
        return g * b
    if a.ndim == 1 and b.ndim == 2:  # v @ B: B @ g, a matrix-vector product with no promoted copies
        return MATMUL(b, g)
    g2, a2, b2 = _as_matrices(g, a, b)
    grad = unbroadcast(MATMUL(g2, _swap_last(b2)), a2.type)
    return F.squeeze(grad, 0) if a.ndim == 1 else grad


def _vjp_b(g, out, a, b):
    if a.ndim == 1 and b.ndim == 1:
        return g * a
    if a.ndim == 2 and b.ndim == 1:  # A @ v: A.T @ g, read transposed in place by BLAS
        return MATMUL(_swap_last(a), g)
    g2, a2, b2 = _as_matrices(g, a, b)
    grad = unbroadcast(MATMUL(_swap_last(a2), g2), b2.type)
    return F.squeeze(grad, -1) if b.ndim == 1 else grad


def _jvp_matmul(tangents, out, a, b):
    ta, tb = tangents
    terms = []
    if ta is not None:
        terms.append(MATMUL(ta, b))
    if tb is not None:
        terms.append(MATMUL(a, tb))
    return terms[0] if len(terms) == 1 else terms[0] + terms[1]


def _impl_matmul(a, b):
    """np.matmul, with every inf or NaN entry of a float result recomputed by
    ``careful_dot`` (see ``recompute_nonfinite_dots``)."""
    out = np.matmul(a, b)
    if out.dtype.kind == "f" and a.shape[-1] > 1 and out.size:
        out = recompute_nonfinite_dots(out, a, b)
    return out


def recompute_nonfinite_dots(out, a, b):
    """``out`` = a @ b (NumPy shapes) with each inf or NaN entry replaced by ``careful_dot``
    of its row and column.

    Why: a BLAS or a vectorised loop sums in its own order, in several accumulators, with
    fused multiply-adds; where products or partial sums overflow, that order decides
    between inf, NaN and a finite number.  fma(x, y, +1.5e308) is finite where x y alone
    would round to -inf, and fma(x, y, +inf) is +inf where x y is -inf.  Measured before
    this: float32 rows mixing +-3e38 * 10 gave inf from NumPy's sgemv and NaN from the
    compiled loops (and the reverse at other entries), and float64 gemm gave finite,
    -inf or NaN in the two backends at the same entry.  Non-finite entries are rare and
    cheap to find (one pass over the result), so both backends recompute exactly those,
    in one order, by the same operations (the compiled ``runtime._matmul_nonfinite``):
    the two backends then give the same bits there, and the entry is the true sum, inf
    only where the true sum overflows, NaN only from inf * 0 or +inf with -inf among the
    products of infinite inputs.  Finite entries are left as the fast sum made them."""
    if np.isfinite(out).all():
        return out
    a2 = a[None, :] if a.ndim == 1 else a  # matmul's promotions of 1-d operands
    b2 = b[:, None] if b.ndim == 1 else b
    out2 = out.reshape(out.shape[:-1] + (1,) + out.shape[-1:]) if a.ndim == 1 else out
    out2 = out2[..., None] if b.ndim == 1 else out2
    batch = out2.shape[:-2]
    a2 = np.broadcast_to(a2, batch + a2.shape[-2:])
    b2 = np.broadcast_to(b2, batch + b2.shape[-2:])
    out2 = np.array(out2)
    for index in zip(*np.nonzero(~np.isfinite(out2))):
        *where, i, j = index
        out2[index] = careful_dot(a2[(*where, i)], b2[(*where, slice(None), j)])
    return out2.reshape(out.shape)[()]  # a 0-d result stays a NumPy scalar, as matmul returns it


def careful_dot(x, y):
    """sum(x * y) for 1-d float arrays, added in order from -0.0 with no product or partial
    sum overflowing unless the result does.  float32: in float64 (the products are exact,
    at most 2**256) and rounded once.  float64: x and y scaled by powers of two 2**-e
    (e = the exponent of the largest finite |entry|, clipped to [-1021, 1022], so every
    scaled finite entry is below 2 and every product below 4), the sum scaled back by
    2**(e_x + e_y) in two halves.  Products below 2**-1074 of the largest possible are
    lost, a relative error below k**2 2**-50 of sum |x y| where this is called (something
    overflowed there, so sum |x y| >= 2**1024 / k)."""
    with np.errstate(over="ignore", invalid="ignore", under="ignore"):
        if x.dtype == np.float32:
            return np.float32(np.cumsum(x.astype(np.float64) * y.astype(np.float64))[-1])
        ex, ey = _scale_exponent(x), _scale_exponent(y)
        total = np.cumsum((x * 2.0 ** -ex) * (y * 2.0 ** -ey))[-1]
        low = (ex + ey) >> 1
        return total * 2.0 ** low * 2.0 ** (ex + ey - low)


def _scale_exponent(v):
    largest = np.max(np.abs(v), initial=0.0, where=np.isfinite(v))
    return int(np.clip(np.frexp(largest)[1], -1021, 1022))


def _samples(rng):
    shapes = [((3, 4), (4, 2)), ((4,), (4, 2)), ((3, 4), (4,)), ((4,), (4,)), ((2, 3, 4), (4, 5)), ((2, 1, 3, 4), (3, 4, 2))]
    return [((rng.normal(size=sa), rng.normal(size=sb)), {}) for sa, sb in shapes]


MATMUL = Op(
    "matmul",
    infer=_infer_matmul,
    impl=_impl_matmul,
    vjp=(_vjp_a, _vjp_b),
    jvp=_jvp_matmul,
    kind="linalg",
    samples=_samples,
    doc="np.matmul: BLAS in compiled code.  An inf or NaN entry of a float result is recomputed without overflow "
        "of products or partial sums, the same way in both backends (``recompute_nonfinite_dots``).",
)
