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


def _samples(rng):
    shapes = [((3, 4), (4, 2)), ((4,), (4, 2)), ((3, 4), (4,)), ((4,), (4,)), ((2, 3, 4), (4, 5)), ((2, 1, 3, 4), (3, 4, 2))]
    return [((rng.normal(size=sa), rng.normal(size=sb)), {}) for sa, sb in shapes]


MATMUL = Op(
    "matmul",
    infer=_infer_matmul,
    impl=np.matmul,
    vjp=(_vjp_a, _vjp_b),
    jvp=_jvp_matmul,
    kind="linalg",
    samples=_samples,
    doc="np.matmul: BLAS in compiled code.",
)
