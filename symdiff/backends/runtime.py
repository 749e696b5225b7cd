"""Jitted helpers called by generated kernels, and the kernel's shape-check error.

Generated source does ``from symdiff.backends.runtime import *``.  Few helpers on
purpose: each jitted helper is compiled separately on first use, so most scalar
spellings are inline expressions (see ``lowering.SCALAR_CODE_OVERRIDES``).  Their plain
Python versions (``.py_func``) are used to describe sizes in error messages.
"""

from __future__ import annotations

import math

from numba import njit

__all__ = ["KernelShapeError", "SLICE_NONE", "_sigmoid", "_softplus", "_slice_len", "_slice_start"]

SLICE_NONE = 1 << 62  # stands for an omitted slice bound (None) in generated code


class KernelShapeError(Exception):
    """Raised inside a kernel when run-time sizes disagree; the caller re-evaluates
    the size checks in Python and raises a ShapeError naming the inputs and sizes."""


@njit(nogil=True, error_model="numpy")
def _sigmoid(x):
    e = math.exp(-abs(x))  # never overflows
    if x >= 0:
        return 1 / (1 + e)
    return e / (1 + e)


@njit(nogil=True, error_model="numpy")
def _softplus(x):
    # np.logaddexp(0, x) = max(x, 0) + log1p(exp(-|x|)), without overflow
    if x > 0:
        return x + math.log1p(math.exp(-x))
    return math.log1p(math.exp(x))


@njit(nogil=True, error_model="numpy")
def _slice_start(n, start, stop, step):
    """The first index of x[start:stop:step] for len(x) == n (Python's slice.indices)."""
    if step > 0:
        if start == SLICE_NONE:
            return 0
        if start < 0:
            return max(start + n, 0)
        return min(start, n)
    if start == SLICE_NONE:
        return n - 1
    if start < 0:
        return max(start + n, -1)
    return min(start, n - 1)


@njit(nogil=True, error_model="numpy")
def _slice_len(n, start, stop, step):
    """len(range(n)[start:stop:step]) with SLICE_NONE for omitted bounds."""
    first = _slice_start(n, start, stop, step)
    if step > 0:
        if stop == SLICE_NONE:
            last = n
        elif stop < 0:
            last = max(stop + n, 0)
        else:
            last = min(stop, n)
        return max((last - first + step - 1) // step, 0)
    if stop == SLICE_NONE:
        last = -1
    elif stop < 0:
        last = max(stop + n, -1)
    else:
        last = min(stop, n - 1)
    return max((first - last - step - 1) // (-step), 0)


def _blas_available() -> bool:
    """Numba's BLAS bindings need SciPy's cython_blas; without it matmul is loops."""
    try:
        import scipy.linalg.cython_blas  # noqa: F401  (what Numba's BLAS bindings load)
    except ImportError:
        return False
    return True


BLAS = _blas_available()


@njit(nogil=True, error_model="numpy")
def _gemm_loops(out, a, b, m, n, k, transpose_a, transpose_b):
    """out (m x n) = op(a) @ op(b) by loops (int64 and bool, or no SciPy for BLAS).

    The arrays are C-contiguous with any rank (batch slices, vectors): they are read
    as flat buffers, a stored (m, k) or, transposed, (k, m); b (k, n) or (n, k).
    """
    o = out.reshape((out.size,))
    x = a.reshape((a.size,))
    y = b.reshape((b.size,))
    for q in range(m * n):
        o[q] = 0
    for i in range(m):
        for p in range(k):
            aip = x[p * m + i] if transpose_a else x[i * k + p]
            for j in range(n):
                o[i * n + j] += aip * (y[j * k + p] if transpose_b else y[p * n + j])


def _make_gemm():
    """``_gemm(out, a, b, m, n, k, transpose_a, transpose_b)``: out = op(a) @ op(b)
    on C-contiguous 2-d arrays, as one call to BLAS ``xgemm`` emitted inline (no
    per-layout compilation, unlike ``np.dot``).  Row-major C = A B is column-major
    C^T = B^T A^T, so the operands are passed swapped."""
    from llvmlite import ir
    from numba import types
    from numba.core import cgutils
    from numba.extending import intrinsic
    from numba.np.linalg import ensure_blas, get_blas_kind

    char, intp = ir.IntType(8), ir.IntType(64)
    void_p = ir.IntType(8).as_pointer()

    def codegen(context, builder, signature, args):
        out, a, b, m, n, k, transpose_a, transpose_b = args
        out_type, a_type, b_type = signature.args[:3]
        dtype = out_type.dtype

        def pointer(array_type, value):
            return builder.bitcast(context.make_array(array_type)(context, builder, value).data, void_p)

        one = cgutils.alloca_once_value(builder, context.get_constant(dtype, 1.0))
        zero = cgutils.alloca_once_value(builder, context.get_constant(dtype, 0.0))
        t, nt = ir.Constant(char, ord("t")), ir.Constant(char, ord("n"))
        flag_a = builder.icmp_unsigned("!=", transpose_a, ir.Constant(transpose_a.type, 0))
        flag_b = builder.icmp_unsigned("!=", transpose_b, ir.Constant(transpose_b.type, 0))
        lda = builder.select(flag_a, m, k)  # the stored row length of a
        ldb = builder.select(flag_b, k, n)

        def at_least_one(value):
            return builder.select(builder.icmp_signed("<", value, ir.Constant(intp, 1)), ir.Constant(intp, 1), value)

        fnty = ir.FunctionType(ir.IntType(32), [char, char, char, intp, intp, intp, void_p, void_p, intp, void_p,
                                                intp, void_p, void_p, intp])
        fn = cgutils.get_or_insert_function(builder.module, fnty, "numba_xxgemm")
        kind = ir.Constant(char, ord(get_blas_kind(dtype)))
        builder.call(fn, [
            kind, builder.select(flag_b, t, nt), builder.select(flag_a, t, nt), n, m, k,
            builder.bitcast(one, void_p), pointer(b_type, b), at_least_one(ldb), pointer(a_type, a),
            at_least_one(lda), builder.bitcast(zero, void_p), pointer(out_type, out), at_least_one(n),
        ])
        return context.get_dummy_value()

    @intrinsic
    def _gemm(typingctx, out, a, b, m, n, k, transpose_a, transpose_b):
        if not all(isinstance(x, types.Array) for x in (out, a, b)):
            return None
        if out.dtype not in (types.float32, types.float64):
            return None
        ensure_blas()
        return types.none(out, a, b, types.int64, types.int64, types.int64, types.int64, types.int64), codegen

    return _gemm


if BLAS:
    _gemm = _make_gemm()
else:
    _gemm = _gemm_loops
__all__ += ["_gemm", "_gemm_loops", "BLAS"]
