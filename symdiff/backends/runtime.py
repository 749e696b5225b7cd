"""Jitted helpers called by generated kernels, and the kernel's shape-check error.

Generated source does ``from symdiff.backends.runtime import *``.  Few helpers on
purpose: each jitted helper is compiled separately on first use, so most scalar
spellings are inline expressions (see ``lowering.SCALAR_CODE_OVERRIDES``).  Their plain
Python versions (``.py_func``) are used to describe sizes in error messages.
"""

from __future__ import annotations

import ctypes
import math
import os
import sys
from typing import NamedTuple

import numpy as np
from numba import njit, types
from numba.extending import intrinsic

from ..ops.reductions import SCALED_PROD_INFINITE  # one value for the reference and kernels

__all__ = ["KernelShapeError", "SLICE_NONE", "_revolve_next", "_sech2", "_sigmoid", "_softplus", "_slice_len",
           "_slice_start"]

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
def _sech2(x):
    e = math.exp(-2 * abs(x))  # <= 1: no overflow, nothing cancels
    return 4 * e / ((1 + e) * (1 + e))


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
def _revolve_next(start, stop, snapshots, depth):
    """Where the binomial (revolve) schedule places the next snapshot while advancing
    from step ``start`` to reverse steps ``[start, stop)``, with ``depth`` of the
    ``snapshots`` slots in use (one of them holds step ``start``); -1 for none.

    For l = stop - start steps and c = snapshots - depth + 1 slots counting the one at
    ``start``, let r be the least integer with C(c + r, c) >= l (the repetition number);
    then start + max(C(c + r - 2, c), l - C(c - 1 + r, c - 1)) is an optimal split
    (Griewank's binomial checkpointing; tests/test_loops.py checks it against the
    dynamic program for every l < 90 and c <= 6)."""
    c, length = snapshots - depth + 1, stop - start
    if c < 2 or length < 2:
        return -1
    r, beta = 0, 1  # beta = C(c + r, c)
    while beta < length:
        r += 1
        beta = beta * (c + r) // r
    left = 0  # C(c + r - 2, c)
    if r >= 2:
        left = 1
        for k in range(1, r - 1):
            left = left * (c + k) // k
    right = 1  # C(c - 1 + r, c - 1)
    for k in range(1, r + 1):
        right = right * (c - 1 + k) // k
    return start + min(max(left, length - right, 1), length - 1)


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


# --- matmul: which BLAS ``_gemm`` calls ------------------------------------------------
#
# Preferred: the BLAS that NumPy's own wheels bundle (OpenBLAS in ``numpy.libs`` or
# ``numpy/.dylibs``), or that a NumPy built from source links (found through NumPy's
# extension module).  It is already loaded once NumPy is, so finding it costs a few
# dlsym calls (0.2 ms); SciPy's cython_blas, which Numba's own BLAS bindings use, costs
# an import of scipy.linalg (0.1-0.2 s; Numba itself would import it when its CPU target
# first loads, from ``numba.np.arraymath``: see ``_load_numba_array_math_without_scipy_linalg``).
# The address is registered with LLVM under a fixed name (``symdiff_dgemm_fortran64``...) when this module is imported,
# and kernels call that name: cached machine code holds the name, not an address, so it
# links in any later process (generated kernels import this module before their code loads).

BLAS_ENV = "SYMDIFF_BLAS"  # "numpy" (the default), "scipy" or "loops": the first choice to try


class BlasChoice(NamedTuple):
    """The gemm that kernels call: ``source`` is "numpy" (NumPy's BLAS, called directly),
    "scipy" (SciPy's cython_blas through Numba's ``numba_xxgemm``) or "loops" (no BLAS);
    ``abi`` is "fortran" or "cblas" for NumPy's; ``int_bits`` the BLAS integer width
    (64: ILP64, 32: LP64); ``symbols`` the exported names by precision ("d", "s")."""

    source: str
    abi: str = ""
    int_bits: int = 0
    library: str = ""
    symbols: tuple = ()
    addresses: tuple = ()
    threads_local: int = 0  # address of OpenBLAS's openblas_set_num_threads_local, 0 if absent


# Name families, most specific first: (ABI, name pattern, integer width the name implies).
# ``scipy_`` prefixes and ``64_`` suffixes are how NumPy's and SciPy's OpenBLAS builds
# (and distributions' ILP64 OpenBLAS) rename symbols; a ``64_`` suffix always means ILP64.
_GEMM_NAMES = (
    ("fortran", "scipy_{x}gemm_64_", 64),
    ("fortran", "{x}gemm_64_", 64),
    ("fortran", "scipy_{x}gemm_", None),
    ("fortran", "{x}gemm_", None),
    ("cblas", "scipy_cblas_{x}gemm64_", 64),
    ("cblas", "cblas_{x}gemm64_", 64),
    ("cblas", "scipy_cblas_{x}gemm", None),
    ("cblas", "cblas_{x}gemm", None),
)
# OpenBLAS 0.3.27+: set the calling thread's BLAS thread count (returns the old one).
_THREADS_LOCAL_NAMES = ("scipy_openblas_set_num_threads_local64_", "openblas_set_num_threads_local64_",
                        "scipy_openblas_set_num_threads_local", "openblas_set_num_threads_local")
# A gemm with fewer multiply-adds than this (m * n * k) runs on the calling thread alone.
# OpenBLAS threads a 256x64x128 product; on a busy machine its workers wait for a core,
# and that product took 2,700 us with 2 threads against 310 us with one (a quiet machine:
# see docs/architecture.md).  Bigger products keep OpenBLAS's own choice.
SINGLE_THREAD_BELOW = 1 << 24
_OPENBLAS_CONFIG_NAMES = ("scipy_openblas_get_config64_", "openblas_get_config64_", "scipy_openblas_get_config",
                          "openblas_get_config")
_CBLAS_ROW_MAJOR, _CBLAS_NO_TRANS, _CBLAS_TRANS = 101, 111, 112


def _numpy_blas_libraries() -> list:
    """Shared libraries that may hold NumPy's BLAS, most likely first: the libraries
    bundled with NumPy's wheels whose name mentions BLAS, then NumPy's extension
    module itself (a symbol lookup in it also searches the libraries it links)."""
    package = os.path.dirname(os.path.abspath(np.__file__))
    folders = (os.path.join(os.path.dirname(package), "numpy.libs"), os.path.join(package, ".dylibs"))
    found = []
    for folder in folders:
        try:
            names = sorted(os.listdir(folder))
        except OSError:
            continue
        for name in names:
            lower = name.lower()
            if "blas" in lower and (lower.endswith((".so", ".dylib", ".dll")) or ".so." in lower):
                found.append(os.path.join(folder, name))
    core = getattr(getattr(np, "_core", None), "_multiarray_umath", None)
    if core is None:  # NumPy 1.x
        core = getattr(getattr(np, "core", None), "_multiarray_umath", None)
    if getattr(core, "__file__", None):
        found.append(core.__file__)
    return found


def _numpy_config_int_bits() -> int:
    """64 if NumPy says its BLAS is ILP64 (OpenBLAS ``USE64BITINT``, MKL ``ilp64``), else 32."""
    try:
        import numpy.__config__ as config

        blas = config.CONFIG["Build Dependencies"]["blas"]
    except (ImportError, AttributeError, KeyError, TypeError):
        return 32
    text = " ".join(str(value) for value in blas.values()).lower()
    return 64 if "use64bitint" in text or "ilp64" in text else 32


def _library_int_bits(library) -> int | None:
    """The integer width an OpenBLAS build reports about itself (None if it is not OpenBLAS)."""
    for name in _OPENBLAS_CONFIG_NAMES:
        function = getattr(library, name, None)
        if function is not None:
            function.restype = ctypes.c_char_p
            return 64 if b"USE64BITINT" in (function() or b"") else 32
    return None


def _gemm_int_storage_bits(choice: BlasChoice) -> int:
    """Width of the integers the Fortran ABI receives by reference.  On a little-endian
    machine an int64 holding a value below 2**31 reads the same as an int32, so 64-bit
    storage is right for LP64 and ILP64 alike: a wrong guess of the width cannot turn
    into wrong numbers or a crash (dimensions of 2**31 or more need a true ILP64 BLAS)."""
    return 64 if sys.byteorder == "little" else choice.int_bits


def _find_numpy_blas(abis=("fortran", "cblas"), libraries=None) -> BlasChoice | None:
    """NumPy's BLAS gemm (double and single precision from one name family, with an
    ABI from ``abis``), or None; ``libraries`` (paths) replaces NumPy's in tests.  The
    Fortran ABI comes first: its integers are passed by reference, which makes a
    wrong guess of their width harmless (see ``_gemm_int_storage_bits``)."""
    for path in _numpy_blas_libraries() if libraries is None else libraries:
        try:
            library = ctypes.CDLL(path)  # already loaded by NumPy: no new load, no cost
        except OSError:
            continue
        for abi, pattern, int_bits in _GEMM_NAMES:
            if abi not in abis:
                continue
            names = (pattern.format(x="d"), pattern.format(x="s"))
            functions = [getattr(library, name, None) for name in names]
            if None in functions:
                continue
            if int_bits is None:
                int_bits = _library_int_bits(library) or _numpy_config_int_bits()
            addresses = tuple(ctypes.cast(function, ctypes.c_void_p).value for function in functions)
            choice = BlasChoice("numpy", abi, int_bits, path, names, addresses)
            if _gemm_self_test(choice):
                local = next((getattr(library, name) for name in _THREADS_LOCAL_NAMES if hasattr(library, name)), None)
                if local is not None:
                    choice = choice._replace(threads_local=ctypes.cast(local, ctypes.c_void_p).value)
                return choice
    return None


def _call_gemm_ctypes(choice: BlasChoice, precision: str, a, b, transpose_a: bool, transpose_b: bool):
    """op(a) @ op(b) through ``choice``'s gemm from Python, with exactly the argument
    convention of the generated code (row-major operands; see ``_make_gemm``)."""
    m, k = (a.shape[1], a.shape[0]) if transpose_a else a.shape
    n = b.shape[0] if transpose_b else b.shape[1]
    out = np.full((m, n), np.nan, dtype=a.dtype)
    address = choice.addresses["ds".index(precision)]
    scalar = ctypes.c_double if precision == "d" else ctypes.c_float
    lda, ldb = max(a.shape[1], 1), max(b.shape[1], 1)
    if choice.abi == "fortran":
        integer = ctypes.c_int64 if _gemm_int_storage_bits(choice) == 64 else ctypes.c_int32
        ref = ctypes.byref
        function = ctypes.CFUNCTYPE(None, *[ctypes.c_void_p] * 13, ctypes.c_size_t, ctypes.c_size_t)(address)
        function(ref(ctypes.c_char(b"t" if transpose_b else b"n")), ref(ctypes.c_char(b"t" if transpose_a else b"n")),
                 ref(integer(n)), ref(integer(m)), ref(integer(k)), ref(scalar(1)), b.ctypes.data, ref(integer(ldb)),
                 a.ctypes.data, ref(integer(lda)), ref(scalar(0)), out.ctypes.data, ref(integer(max(n, 1))), 1, 1)
    else:
        integer = ctypes.c_int64 if choice.int_bits == 64 else ctypes.c_int32
        enum = ctypes.c_int
        function = ctypes.CFUNCTYPE(None, enum, enum, enum, integer, integer, integer, scalar, ctypes.c_void_p,
                                    integer, ctypes.c_void_p, integer, scalar, ctypes.c_void_p, integer)(address)
        function(_CBLAS_ROW_MAJOR, _CBLAS_TRANS if transpose_a else _CBLAS_NO_TRANS,
                 _CBLAS_TRANS if transpose_b else _CBLAS_NO_TRANS, m, n, k, 1, a.ctypes.data, lda, b.ctypes.data, ldb,
                 0, out.ctypes.data, max(n, 1))
    return out


def _gemm_self_test(choice: BlasChoice) -> bool:
    """Whether ``choice`` multiplies small non-square matrices right in both precisions
    (a wrong name family or integer width shows as wrong numbers here, not in a kernel)."""
    a = np.arange(1.0, 9.0).reshape(2, 4)  # (m, k) = (2, 4); a.T is read as (4, 2)
    b = np.arange(-6.0, 6.0).reshape(4, 3)  # (k, n) = (4, 3)
    for dtype, precision in ((np.float64, "d"), (np.float32, "s")):
        x, y = a.astype(dtype), b.astype(dtype)
        for transpose_a, transpose_b in ((False, True), (True, False)):
            left = np.ascontiguousarray(x.T) if transpose_a else x
            right = np.ascontiguousarray(y.T) if transpose_b else y
            if not np.array_equal(_call_gemm_ctypes(choice, precision, left, right, transpose_a, transpose_b), x @ y):
                return False
    return True


def _gemm_symbol(choice: BlasChoice, precision: str) -> str:
    """The name kernels call for NumPy's gemm; it names the ABI, so code compiled for
    one ABI can never link against a function of another."""
    return f"symdiff_{precision}gemm_{choice.abi}{choice.int_bits}"


def _register_gemm_symbols(choice: BlasChoice):
    """Make ``choice``'s gemm addresses known to LLVM's linker, for compiled and cached kernels."""
    from llvmlite import binding

    for precision, address in zip("ds", choice.addresses):
        binding.add_symbol(_gemm_symbol(choice, precision), address)
    if choice.threads_local:
        binding.add_symbol(_THREADS_LOCAL_SYMBOL, choice.threads_local)


_THREADS_LOCAL_SYMBOL = "symdiff_openblas_set_num_threads_local"


def _scipy_blas_available() -> bool:
    """Numba's BLAS bindings need SciPy's cython_blas (an import of scipy.linalg)."""
    try:
        import scipy.linalg.cython_blas  # noqa: F401  (what Numba's BLAS bindings load)
    except ImportError:
        return False
    return True


def _choose_blas(preference: str | None = None) -> BlasChoice:
    """The first gemm that works, starting from ``preference`` ("numpy" when None or
    empty, then "scipy", then "loops").

    >>> _choose_blas("loops")
    BlasChoice(source='loops', abi='', int_bits=0, library='', symbols=(), addresses=(), threads_local=0)
    """
    order = ("numpy", "scipy", "loops")
    preference = (preference or "numpy").strip().lower()
    if preference not in order:
        raise ValueError(f"{BLAS_ENV}={preference!r}: expected one of {', '.join(order)}")
    for source in order[order.index(preference):]:
        if source == "numpy":
            choice = _find_numpy_blas()
            if choice is not None:
                return choice
        elif source == "scipy" and _scipy_blas_available():
            return BlasChoice("scipy", "numba")
    return BlasChoice("loops")


_BLAS_CHOICE = _choose_blas(os.environ.get(BLAS_ENV))
BLAS_SOURCE = _BLAS_CHOICE.source  # "numpy", "scipy" or "loops": which gemm kernels call
BLAS = BLAS_SOURCE != "loops"  # whether matmul on float32/float64 is a BLAS call
# Kernels built against one choice must not be loaded by a process that made another.
BLAS_CACHE_TAG = (f"{BLAS_SOURCE}/{_BLAS_CHOICE.abi}/{_BLAS_CHOICE.int_bits}"
                  + ("/threads-local" if _BLAS_CHOICE.threads_local else ""))
if BLAS_SOURCE == "numpy":
    _register_gemm_symbols(_BLAS_CHOICE)


@njit(nogil=True, error_model="numpy")
def _gemm_loops(out, a, b, m, n, k, transpose_a, transpose_b):
    """out (m x n) = op(a) @ op(b) by loops (int64 and bool, or when no BLAS was found).

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


def _make_gemm(choice: BlasChoice):
    """``_gemm(out, a, b, m, n, k, transpose_a, transpose_b)``: out = op(a) @ op(b)
    on C-contiguous arrays, as one call to BLAS ``xgemm`` emitted inline (no
    per-layout compilation, unlike ``np.dot``).  The Fortran ABI is column-major, and
    row-major C = A B is column-major C^T = B^T A^T, so there the operands are passed
    swapped; CBLAS is told the order is row-major and takes them as they are."""
    from llvmlite import ir
    from numba import types
    from numba.core import cgutils
    from numba.extending import intrinsic

    char, int32, int64 = ir.IntType(8), ir.IntType(32), ir.IntType(64)
    size_t = ir.IntType(8 * ctypes.sizeof(ctypes.c_size_t))
    void_p = ir.IntType(8).as_pointer()

    def codegen(context, builder, signature, args):
        out, a, b, m, n, k, transpose_a, transpose_b = args
        out_type, a_type, b_type = signature.args[:3]
        dtype = out_type.dtype
        scalar = context.get_value_type(dtype)

        def pointer(array_type, value):
            return builder.bitcast(context.make_array(array_type)(context, builder, value).data, void_p)

        def at_least_one(value):  # BLAS wants leading dimensions >= 1 even for empty matrices
            return builder.select(builder.icmp_signed("<", value, ir.Constant(int64, 1)), ir.Constant(int64, 1), value)

        flag_a = builder.icmp_unsigned("!=", transpose_a, ir.Constant(transpose_a.type, 0))
        flag_b = builder.icmp_unsigned("!=", transpose_b, ir.Constant(transpose_b.type, 0))
        lda = at_least_one(builder.select(flag_a, m, k))  # the stored row length of a
        ldb = at_least_one(builder.select(flag_b, k, n))
        ldc = at_least_one(n)

        single_thread = None
        if choice.source == "numpy" and choice.threads_local:
            # small products on this thread alone (SINGLE_THREAD_BELOW), restored after the call
            work = builder.mul(builder.mul(m, n), k)
            single_thread = builder.icmp_signed("<", work, ir.Constant(work.type, SINGLE_THREAD_BELOW))
            set_threads = cgutils.get_or_insert_function(builder.module, ir.FunctionType(int32, [int32]),
                                                         _THREADS_LOCAL_SYMBOL)
            previous = cgutils.alloca_once_value(builder, ir.Constant(int32, 0))
            with builder.if_then(single_thread):
                builder.store(builder.call(set_threads, [ir.Constant(int32, 1)]), previous)
        if choice.source == "numpy" and choice.abi == "fortran":
            integer = ir.IntType(_gemm_int_storage_bits(choice))

            def by_reference(value, value_type=integer):
                slot = cgutils.alloca_once(builder, value_type)
                if value.type != value_type:
                    value = builder.trunc(value, value_type)
                builder.store(value, slot)
                return builder.bitcast(slot, void_p)

            def trans(flag):
                letter = builder.select(flag, ir.Constant(char, ord("t")), ir.Constant(char, ord("n")))
                return by_reference(letter, char)

            # the two trailing arguments are the hidden lengths of the character arguments
            # (gfortran's convention; a BLAS written in C ignores them)
            fnty = ir.FunctionType(ir.VoidType(), [void_p] * 13 + [size_t, size_t])
            fn = cgutils.get_or_insert_function(builder.module, fnty, _gemm_symbol(choice, _blas_kind(dtype)))
            builder.call(fn, [
                trans(flag_b), trans(flag_a), by_reference(n), by_reference(m), by_reference(k),
                by_reference(context.get_constant(dtype, 1.0), scalar), pointer(b_type, b), by_reference(ldb),
                pointer(a_type, a), by_reference(lda), by_reference(context.get_constant(dtype, 0.0), scalar),
                pointer(out_type, out), by_reference(ldc), ir.Constant(size_t, 1), ir.Constant(size_t, 1),
            ])
        elif choice.source == "numpy":
            integer = ir.IntType(choice.int_bits)

            def blas_int(value):
                return value if value.type == integer else builder.trunc(value, integer)

            def trans(flag):
                return builder.select(flag, ir.Constant(int32, _CBLAS_TRANS), ir.Constant(int32, _CBLAS_NO_TRANS))

            fnty = ir.FunctionType(ir.VoidType(), [int32, int32, int32, integer, integer, integer, scalar, void_p,
                                                   integer, void_p, integer, scalar, void_p, integer])
            fn = cgutils.get_or_insert_function(builder.module, fnty, _gemm_symbol(choice, _blas_kind(dtype)))
            builder.call(fn, [
                ir.Constant(int32, _CBLAS_ROW_MAJOR), trans(flag_a), trans(flag_b), blas_int(m), blas_int(n),
                blas_int(k), context.get_constant(dtype, 1.0), pointer(a_type, a), blas_int(lda), pointer(b_type, b),
                blas_int(ldb), context.get_constant(dtype, 0.0), pointer(out_type, out), blas_int(ldc),
            ])
        else:  # Numba's own helper over SciPy's cython_blas
            one = cgutils.alloca_once_value(builder, context.get_constant(dtype, 1.0))
            zero = cgutils.alloca_once_value(builder, context.get_constant(dtype, 0.0))
            t, nt = ir.Constant(char, ord("t")), ir.Constant(char, ord("n"))
            fnty = ir.FunctionType(int32, [char, char, char, int64, int64, int64, void_p, void_p, int64, void_p,
                                           int64, void_p, void_p, int64])
            fn = cgutils.get_or_insert_function(builder.module, fnty, "numba_xxgemm")
            builder.call(fn, [
                ir.Constant(char, ord(_blas_kind(dtype))), builder.select(flag_b, t, nt), builder.select(flag_a, t, nt),
                n, m, k, builder.bitcast(one, void_p), pointer(b_type, b), ldb, pointer(a_type, a), lda,
                builder.bitcast(zero, void_p), pointer(out_type, out), ldc,
            ])
        if single_thread is not None:
            with builder.if_then(single_thread):
                builder.call(set_threads, [builder.load(previous)])
        return context.get_dummy_value()

    @intrinsic
    def _gemm(typingctx, out, a, b, m, n, k, transpose_a, transpose_b):
        if not all(isinstance(x, types.Array) for x in (out, a, b)):
            return None
        if out.dtype not in (types.float32, types.float64):
            return None
        if choice.source == "scipy":
            from numba.np.linalg import ensure_blas

            ensure_blas()  # loads SciPy's cython_blas into Numba's helper table
        return types.none(out, a, b, types.int64, types.int64, types.int64, types.int64, types.int64), codegen

    _gemm.emit = codegen  # for _matvec, which falls back to this call
    return _gemm


def _blas_kind(dtype) -> str:
    """BLAS's precision letter for a Numba float type."""
    return "d" if str(dtype) == "float64" else "s"


_gemm = _make_gemm(_BLAS_CHOICE) if BLAS else _gemm_loops
__all__ += ["_gemm", "_gemm_loops", "BLAS", "BLAS_SOURCE"]


# --- matrix-vector products ----------------------------------------------------------
#
# BLAS is slow at a product with one vector operand: through gemm, 32x32 @ v took 136 ns
# and 100,000x20 @ v 892 us, where loops over four rows at a time take 59 ns and 248 us
# (X.T @ v: 1,755 against 264 us), and they are not slower up to SINGLE_THREAD_BELOW
# multiply-adds (docs/architecture.md, "Matrix-vector products").  The loops are LLVM IR
# functions defined in the kernel's own module: written as Numba functions they cost
# 0.2-0.8 s of compile in every process that builds a kernel calling them (the RNN's
# value+grad compiled in 2.65 s instead of 1.3).  Their sums may be reassociated, so LLVM
# keeps vector accumulators, and multiply-adds contract to FMAs, as BLAS does; NaN and
# infinity keep IEEE semantics.  Their sizes are hidden from LLVM (``_hidden``): a static
# 100,000 x 20, constant-folded, had each row of 20 unrolled and took 3,625 us instead of 248.

_REASSOC = ("reassoc", "contract")


def _rows_function(module, kind: str, element):
    """The module's ``symdiff_rows_<kind>_<f64|f32>(out, matrix, vector, rows, length)``
    (defined on first use), for a row-major ``matrix`` and three non-overlapping buffers:
    kind "dot": out[i] = sum_p matrix[i, p] * vector[p] (four rows share each read of
    ``vector``); kind "axpy": out[j] = sum_p vector[p] * matrix[p, j] (four rows added to
    ``out`` per pass).  It returns the sum of x - x over out, NaN if an entry is not finite
    (``_matvec`` then recomputes those, ``_nonfinite_function``): summed as the dot loop
    stores each entry, it costs nothing measurable, where a separate pass cost ~10 ns per
    32 x 32 product (an RNN step)."""
    from llvmlite import ir
    from numba.core import cgutils

    name = f"symdiff_rows_{kind}_{'f32' if isinstance(element, ir.FloatType) else 'f64'}"
    existing = module.globals.get(name)
    if existing is not None:
        return existing
    int64 = ir.IntType(64)
    pointer = element.as_pointer()
    function = ir.Function(module, ir.FunctionType(element, [pointer, pointer, pointer, int64, int64]), name)
    function.linkage = "internal"
    function.attributes.add("noinline")
    for argument in function.args[:3]:
        argument.add_attribute("noalias")
    out, matrix, vector, rows, length = function.args
    builder = ir.IRBuilder(function.append_basic_block("entry"))
    zero, one, four = ir.Constant(element, 0.0), ir.Constant(int64, 1), ir.Constant(int64, 4)

    def load(base, index):
        return builder.load(builder.gep(base, [index]))

    def multiply_add(total, x, y):
        return builder.fadd(total, builder.fmul(x, y, flags=("contract",)), flags=_REASSOC)

    blocked = builder.mul(builder.udiv(rows, four), four)
    sums = [cgutils.alloca_once(builder, element) for _ in range(4)]
    screen = cgutils.alloca_once(builder, element)  # the sum of x - x over out: NaN if any x is not finite
    builder.store(zero, screen)

    def dot_rows(first, count):  # out[first + q] for q < count, sharing each read of vector
        starts = [builder.mul(builder.add(first, ir.Constant(int64, q)), length) for q in range(count)]
        for total in sums[:count]:
            builder.store(zero, total)
        with cgutils.for_range_slice(builder, ir.Constant(int64, 0), length, one, int64) as (p, _):
            vp = load(vector, p)
            for total, row in zip(sums, starts):
                builder.store(multiply_add(builder.load(total), load(matrix, builder.add(row, p)), vp), total)
        for q, total in enumerate(sums[:count]):
            value = builder.load(total)
            builder.store(value, builder.gep(out, [builder.add(first, ir.Constant(int64, q))]))
            builder.store(builder.fadd(builder.load(screen), builder.fsub(value, value), flags=_REASSOC), screen)

    def axpy_rows(first, count):  # rows first .. first + count - 1 added to out in one pass
        rows_q = [builder.add(first, ir.Constant(int64, q)) for q in range(count)]
        weights = [load(vector, r) for r in rows_q]
        starts = [builder.mul(r, length) for r in rows_q]
        with cgutils.for_range_slice(builder, ir.Constant(int64, 0), length, one, int64) as (j, _):
            total = builder.fmul(load(matrix, builder.add(starts[0], j)), weights[0], flags=("contract",))
            for start, weight in zip(starts[1:], weights[1:]):
                total = multiply_add(total, load(matrix, builder.add(start, j)), weight)
            target = builder.gep(out, [j])
            builder.store(builder.fadd(builder.load(target), total, flags=_REASSOC), target)

    if kind == "axpy":
        with cgutils.for_range_slice(builder, ir.Constant(int64, 0), length, one, int64) as (j, _):
            builder.store(zero, builder.gep(out, [j]))
    rows_pass = dot_rows if kind == "dot" else axpy_rows
    with cgutils.for_range_slice(builder, ir.Constant(int64, 0), blocked, four, int64) as (i, _):
        rows_pass(i, 4)
    with cgutils.for_range_slice(builder, blocked, rows, one, int64) as (i, _):
        rows_pass(i, 1)
    if kind == "axpy":  # out is final only now
        with cgutils.for_range_slice(builder, ir.Constant(int64, 0), length, one, int64) as (j, _):
            value = builder.load(builder.gep(out, [j]))
            builder.store(builder.fadd(builder.load(screen), builder.fsub(value, value), flags=_REASSOC), screen)
    builder.ret(builder.load(screen))
    return function


def _matvec_codegen(kind):
    """Code for ``_matvec``.  ``kind`` is (n == 1, the vector's partner read transposed)
    when the call's literal arguments decide it, so a kernel defines and optimises only the
    one loop it needs; None decides at run time."""

    def codegen(context, builder, signature, args):
        from llvmlite import ir

        out, a, b, m, n, k, transpose_a, transpose_b = args
        out_type, a_type, b_type = signature.args[:3]
        element = context.get_value_type(out_type.dtype)
        int64 = ir.IntType(64)
        one = ir.Constant(int64, 1)

        def data(array_type, value):
            return context.make_array(array_type)(context, builder, value).data

        def call(which, matrix, vector, rows, length):
            screen = builder.call(_rows_function(builder.module, which, element), [o, matrix, vector, rows, length])
            _emit_nonfinite_fix(context, builder, signature, args,
                                builder.fcmp_unordered("uno", screen, ir.Constant(element, 0.0)))

        work = builder.mul(builder.mul(m, n), k)
        vector_operand = builder.or_(builder.icmp_signed("==", m, one), builder.icmp_signed("==", n, one))
        loops = builder.and_(vector_operand, builder.icmp_signed("<", work, ir.Constant(int64, SINGLE_THREAD_BELOW)))
        with builder.if_else(loops) as (small, large):
            with small:
                o, x, y = data(out_type, out), data(a_type, a), data(b_type, b)
                m, n, k = (_hidden(builder, size) for size in (m, n, k))  # no constant propagation into the loops
                cases = {  # (n == 1, transposed operand) -> the loop and its operands
                    (True, True): ("axpy", x, y, k, m),  # op(a) @ y with a stored (k, m)
                    (True, False): ("dot", x, y, m, k),  # a stored (m, k)
                    (False, True): ("dot", y, x, n, k),  # x @ op(b) with b stored (n, k)
                    (False, False): ("axpy", y, x, k, n),  # b stored (k, n)
                }
                if kind is not None:
                    call(*cases[kind])
                else:
                    zero = ir.Constant(transpose_a.type, 0)
                    with builder.if_else(builder.icmp_signed("==", n, one)) as (column, row):
                        for n_is_one, block, flag in ((True, column, transpose_a), (False, row, transpose_b)):
                            with block:
                                with builder.if_else(builder.icmp_signed("!=", flag, zero)) as (yes, no):
                                    with yes:
                                        call(*cases[(n_is_one, True)])
                                    with no:
                                        call(*cases[(n_is_one, False)])
            with large:
                if BLAS:
                    _gemm.emit(context, builder, signature, args)
                else:
                    context.compile_internal(builder, _gemm_loops.py_func, signature, args)
                _emit_nonfinite_fix(context, builder, signature, args)
        return context.get_dummy_value()

    return codegen


def _literal(value_type):
    return value_type.literal_value if isinstance(value_type, types.IntegerLiteral) else None


@intrinsic(prefer_literal=True)
def _matvec(typingctx, out, a, b, m, n, k, transpose_a, transpose_b):
    """``_gemm``'s contract; a product with m = 1 or n = 1 (a vector operand) runs in the
    loops of ``_rows_function`` below SINGLE_THREAD_BELOW multiply-adds (above, BLAS's
    threads win), any other in BLAS.  Then, as ``_matmul_nonfinite`` after ``_gemm``, any inf
    or NaN entry is recomputed in the reference's way."""
    if not all(isinstance(x, types.Array) and x.layout == "C" for x in (out, a, b)):
        return None
    if out.dtype not in (types.float32, types.float64) or a.dtype != out.dtype or b.dtype != out.dtype:
        return None
    if BLAS and BLAS_SOURCE == "scipy":
        from numba.np.linalg import ensure_blas

        ensure_blas()
    kind = None  # decided by the generated code's literals: which size is 1, which operand is transposed
    if _literal(n) == 1 and _literal(transpose_a) is not None:
        kind = (True, bool(_literal(transpose_a)))
    elif _literal(m) == 1 and _literal(transpose_b) is not None:
        kind = (False, bool(_literal(transpose_b)))
    return types.none(out, a, b, m, n, k, transpose_a, transpose_b), _matvec_codegen(kind)


def _nonfinite_function(module, element):
    """The module's ``symdiff_matmul_nonfinite_<f64|f32>(out, a, b, m, n, k, transpose_a,
    transpose_b)`` (defined on first use): every inf or NaN entry of out = op(a) @ op(b)
    (``_gemm``'s layout) recomputed by the operations of the reference's
    ``ops.linalg.careful_dot``, in its order, with no flags on the instructions (no FMA,
    no reassociation), so both backends give the same bits: float32 summed in float64;
    float64 scaled by powers of two from the largest finite |entry| of the row and of the
    column.  Called only where ``_emit_nonfinite_screen`` finds something to do."""
    from llvmlite import ir
    from numba.core import cgutils

    single = isinstance(element, ir.FloatType)
    name = f"symdiff_matmul_nonfinite_{'f32' if single else 'f64'}"
    existing = module.globals.get(name)
    if existing is not None:
        return existing
    int64, double = ir.IntType(64), ir.DoubleType()
    pointer = element.as_pointer()
    function = ir.Function(module, ir.FunctionType(ir.VoidType(), [pointer] * 3 + [int64] * 5), name)
    function.linkage = "internal"
    # Not optimised: it runs only where a product overflowed, and LLVM's passes over its
    # loops were a fifth of the optimised IR of an RNN's value+grad kernel (cold compile)
    for attribute in ("noinline", "optnone", "cold"):
        function.attributes.add(attribute)
    out, a, b, m, n, k, transpose_a, transpose_b = function.args
    builder = ir.IRBuilder(function.append_basic_block("entry"))
    one, zero = ir.Constant(int64, 1), ir.Constant(int64, 0)
    flag_a, flag_b = builder.icmp_signed("!=", transpose_a, zero), builder.icmp_signed("!=", transpose_b, zero)
    fabs = module.declare_intrinsic("llvm.fabs", [double])
    total = cgutils.alloca_once(builder, double)
    largest = [cgutils.alloca_once(builder, double) for _ in range(2)]

    def nonfinite(x):  # x - x is NaN exactly for inf and NaN
        return builder.fcmp_unordered("uno", builder.fsub(x, x), ir.Constant(x.type, 0.0))

    def power_of_two(e):  # 2**e for -1022 <= e <= 1023, from its bits
        return builder.bitcast(builder.shl(builder.add(e, ir.Constant(int64, 1023)), ir.Constant(int64, 52)), double)

    def clipped_exponent(x):  # frexp's exponent of x >= 0, clipped to [-1021, 1022]
        e = builder.sub(builder.lshr(builder.bitcast(x, int64), ir.Constant(int64, 52)), ir.Constant(int64, 1022))
        e = builder.select(builder.icmp_signed("<", e, ir.Constant(int64, -1021)), ir.Constant(int64, -1021), e)
        return builder.select(builder.icmp_signed(">", e, ir.Constant(int64, 1022)), ir.Constant(int64, 1022), e)

    with cgutils.for_range_slice(builder, zero, builder.mul(m, n), one, int64) as (q, _):
        target = builder.gep(out, [q])
        with builder.if_then(nonfinite(builder.load(target)), likely=False):
            i, j = builder.udiv(q, n), builder.urem(q, n)

            def operands(p):  # a's and b's entries of the product's p-th term, as doubles
                at_a = builder.select(flag_a, builder.add(builder.mul(p, m), i), builder.add(builder.mul(i, k), p))
                at_b = builder.select(flag_b, builder.add(builder.mul(j, k), p), builder.add(builder.mul(p, n), j))
                pair = [builder.load(builder.gep(base, [at])) for base, at in ((a, at_a), (b, at_b))]
                return [builder.fpext(x, double) for x in pair] if single else pair

            builder.store(ir.Constant(double, -0.0), total)
            if single:  # exact products, a float64 sum, one rounding
                with cgutils.for_range_slice(builder, zero, k, one, int64) as (p, _):
                    x, y = operands(p)
                    builder.store(builder.fadd(builder.load(total), builder.fmul(x, y)), total)
                builder.store(builder.fptrunc(builder.load(total), element), target)
            else:
                for slot in largest:
                    builder.store(ir.Constant(double, 0.0), slot)
                with cgutils.for_range_slice(builder, zero, k, one, int64) as (p, _):
                    for slot, x in zip(largest, operands(p)):
                        size = builder.call(fabs, [x])
                        bigger = builder.and_(builder.fcmp_ordered(">", size, builder.load(slot)),
                                              builder.not_(nonfinite(size)))
                        builder.store(builder.select(bigger, size, builder.load(slot)), slot)
                ex, ey = (clipped_exponent(builder.load(slot)) for slot in largest)
                sx, sy = power_of_two(builder.neg(ex)), power_of_two(builder.neg(ey))
                with cgutils.for_range_slice(builder, zero, k, one, int64) as (p, _):
                    x, y = operands(p)
                    builder.store(builder.fadd(builder.load(total), builder.fmul(builder.fmul(x, sx),
                                                                                builder.fmul(y, sy))), total)
                exponent = builder.add(ex, ey)
                low = builder.ashr(exponent, one)
                scaled = builder.fmul(builder.fmul(builder.load(total), power_of_two(low)),
                                      power_of_two(builder.sub(exponent, low)))
                builder.store(scaled, target)
    builder.ret_void()
    return function


def _emit_nonfinite_screen(builder, element, out, a, b, m, n, k):
    """An i1: whether out = op(a) @ op(b) may hold an inf or NaN entry (a call of the
    module's ``_screen_function``: its loops are compiled once per kernel, not once per
    product; a call costs nothing beside a product large enough for BLAS)."""
    return builder.call(_screen_function(builder.module, element), [out, a, b, m, n, k])


def _screen_function(module, element):
    """The module's ``symdiff_matmul_screen_<f64|f32>(out, a, b, m, n, k) -> i1`` (defined on
    first use), whose body ``_screen_body`` writes."""
    from llvmlite import ir

    name = f"symdiff_matmul_screen_{'f32' if isinstance(element, ir.FloatType) else 'f64'}"
    existing = module.globals.get(name)
    if existing is not None:
        return existing
    int64, pointer = ir.IntType(64), element.as_pointer()
    function = ir.Function(module, ir.FunctionType(ir.IntType(1), [pointer] * 3 + [int64] * 3), name)
    function.linkage = "internal"
    function.attributes.add("noinline")
    builder = ir.IRBuilder(function.append_basic_block("entry"))
    builder.ret(_screen_body(builder, element, *function.args))
    return function


def _screen_body(builder, element, out, a, b, m, n, k):
    """Code giving an i1: whether out = op(a) @ op(b) may hold an inf or NaN entry.
    No, if no product or partial sum can overflow: every partial sum is at most sum|a| *
    sum|b| (in float64) in any order; that reads (m + n) k entries, so it is the test where
    the result has more (an outer product 1000 x 2 @ 2 x 1000: 0.30 ms before any test, 0.42
    with the one below alone).  Otherwise, or if it fails, the sum of x - x over out (0 if
    every entry is finite, else NaN; reassociated, so vectorised: 1e6 entries 0.1-0.2 ms,
    against 0.7 for an entry-by-entry scan).  Matrix-vector products below BLAS's size do not
    come here: their loops screen out as they store it (``_rows_function``)."""
    from llvmlite import ir
    from numba.core import cgutils

    int64, double = ir.IntType(64), ir.DoubleType()
    one, zero = ir.Constant(int64, 1), ir.Constant(int64, 0)
    single = isinstance(element, ir.FloatType)

    def vector_sum(base, count, term):
        sum_slot = cgutils.alloca_once(builder, element)
        builder.store(ir.Constant(element, 0.0), sum_slot)
        with cgutils.for_range_slice(builder, zero, count, one, int64) as (q, _):
            x = builder.load(builder.gep(base, [q]))
            builder.store(builder.fadd(builder.load(sum_slot), term(x), flags=("reassoc",)), sum_slot)
        return builder.load(sum_slot)

    entries, inputs = builder.mul(m, n), builder.mul(builder.add(m, n), k)
    fabs = builder.module.declare_intrinsic("llvm.fabs", [element])
    safe = cgutils.alloca_once(builder, ir.IntType(1))
    builder.store(ir.Constant(ir.IntType(1), 0), safe)
    with builder.if_then(builder.icmp_signed("<", inputs, entries)):
        bound = [vector_sum(base, count, lambda x: builder.call(fabs, [x]))
                 for base, count in ((a, builder.mul(m, k)), (b, builder.mul(k, n)))]
        if single:
            bound = [builder.fpext(x, double) for x in bound]
        limit = ir.Constant(double, float(np.finfo(np.float32 if single else np.float64).max) / 4)
        builder.store(builder.fcmp_ordered("<", builder.fmul(*bound), limit), safe)
    screen = cgutils.alloca_once(builder, element)
    builder.store(ir.Constant(element, 0.0), screen)
    with builder.if_then(builder.not_(builder.load(safe))):
        builder.store(vector_sum(out, entries, lambda x: builder.fsub(x, x)), screen)
    return builder.fcmp_unordered("uno", builder.load(screen), ir.Constant(element, 0.0))


@intrinsic
def _matmul_nonfinite(typingctx, out, a, b, m, n, k, transpose_a, transpose_b):
    """After ``_gemm`` or ``_matvec`` (same arguments): each inf or NaN entry of a float
    product recomputed without overflow of products or partial sums, by the reference's
    operations in its order (``_nonfinite_function``; why: ``ops.linalg``), whatever order
    and FMAs BLAS or the loops used."""
    if not all(isinstance(x, types.Array) and x.layout == "C" for x in (out, a, b)):
        return None
    if out.dtype not in (types.float32, types.float64) or a.dtype != out.dtype or b.dtype != out.dtype:
        return None
    sizes = (m, n, k, transpose_a, transpose_b)
    if not all(isinstance(x, types.Integer) for x in sizes):
        return None

    def codegen(context, builder, signature, args):
        _emit_nonfinite_fix(context, builder, signature, args)
        return context.get_dummy_value()

    return types.none(out, a, b, m, n, k, transpose_a, transpose_b), codegen


def _emit_nonfinite_fix(context, builder, signature, args, needed=None):
    """Code calling ``_nonfinite_function`` on out = op(a) @ op(b) (``_gemm``'s arguments)
    where ``needed`` (an i1) holds; by default where ``_emit_nonfinite_screen`` finds that the
    product may hold an inf or NaN entry."""
    element = context.get_value_type(signature.args[0].dtype)
    arrays = [context.make_array(t)(context, builder, v).data for t, v in zip(signature.args[:3], args[:3])]
    integers = [context.cast(builder, v, t, types.int64) for v, t in zip(args[3:], signature.args[3:])]
    if needed is None:
        needed = _emit_nonfinite_screen(builder, element, *arrays, *integers[:3])
    with builder.if_then(needed, likely=False):
        builder.call(_nonfinite_function(builder.module, element), arrays + integers)


__all__ += ["_matmul_nonfinite"]


def _allocate(context, builder, array_type, sizes):
    """A new C-ordered ``array_type`` (an array struct) of run-time ``sizes`` (intp values),
    allocated inline, as NumPy would: a size whose bytes overflow is too big, a failed
    allocation a MemoryError."""
    from llvmlite import ir
    from numba.core import cgutils
    from numba.np.arrayobj import get_itemsize, make_array, populate_array

    intp = context.get_value_type(types.intp)
    itemsize = context.get_constant(types.intp, get_itemsize(context, array_type))
    count, overflow = context.get_constant(types.intp, 1), ir.Constant(ir.IntType(1), 0)
    for size in list(sizes) + [itemsize]:
        product = builder.smul_with_overflow(count, size)
        count, overflow = builder.extract_value(product, 0), builder.or_(overflow, builder.extract_value(product, 1))
    with builder.if_then(overflow, likely=False):
        context.call_conv.return_user_exc(builder, ValueError, (
            "array is too big; `arr.size * arr.dtype.itemsize` is larger than the maximum possible size.",))
    strides = [itemsize]
    for size in reversed(sizes[1:]):
        strides.append(builder.mul(strides[-1], size))
    meminfo = context.nrt.meminfo_alloc_aligned(
        builder, size=count, align=context.get_preferred_array_alignment(array_type.dtype))
    array = make_array(array_type)(context, builder)
    element = context.get_data_type(array_type.dtype)
    populate_array(array, data=builder.bitcast(context.nrt.meminfo_data(builder, meminfo), element.as_pointer()),
                   shape=cgutils.pack_array(builder, list(sizes), ty=intp),
                   strides=cgutils.pack_array(builder, list(reversed(strides))[:len(sizes)], ty=intp),
                   itemsize=itemsize, meminfo=meminfo)
    return array, count


@intrinsic
def _empty(typingctx, shape, dtype):
    """``np.empty(shape, dtype)`` for generated kernels, allocated inline.  NumPy's own
    overload (and the array type's allocator method it calls) is a function Numba compiles
    in every process for every rank: 0.15 s CPU of an RNN value+grad kernel's 1.05 s cold
    compile.  The same checks: a negative size is NumPy's ValueError (``_allocate``: the
    others)."""
    if isinstance(shape, types.Integer):
        rank = 1
    elif isinstance(shape, types.BaseTuple) and all(isinstance(s, types.Integer) for s in shape):
        rank = len(shape)
    else:
        return None
    if not isinstance(dtype, (types.NumberClass, types.DType)):
        return None
    array_type = types.Array(dtype.dtype, rank, "C")

    def codegen(context, builder, signature, args):
        from numba.np.arrayobj import _parse_shape

        sizes = _parse_shape(context, builder, signature.args[0], args[0])
        return _allocate(context, builder, array_type, sizes)[0]._getvalue()

    return array_type(shape, dtype), codegen


@intrinsic
def _copy(typingctx, source):
    """``source.copy()`` (C order) for generated kernels, allocated inline (``_empty``: why);
    one memcpy where the source is C-contiguous, else a loop over its entries."""
    if not isinstance(source, types.Array):
        return None
    array_type = types.Array(source.dtype, source.ndim, "C")

    def codegen(context, builder, signature, args):
        from numba.core import cgutils
        from numba.np.arrayobj import make_array

        original = make_array(source)(context, builder, args[0])
        sizes = cgutils.unpack_tuple(builder, original.shape, source.ndim)
        copy, count = _allocate(context, builder, array_type, sizes)
        if source.layout == "C":
            cgutils.raw_memcpy(builder, copy.data, original.data, count, 1)
        else:
            strides = cgutils.unpack_tuple(builder, original.strides, source.ndim)
            with cgutils.loop_nest(builder, sizes, sizes[0].type if sizes else context.get_value_type(types.intp)) \
                    as indices:
                value = builder.load(cgutils.get_item_pointer2(context, builder, original.data, sizes, strides,
                                                               source.layout, indices))
                builder.store(value, cgutils.get_item_pointer2(context, builder, copy.data, sizes, None, "C",
                                                               indices))
        return copy._getvalue()

    return array_type(source), codegen


@intrinsic
def _opaque(typingctx, value):
    """``value``, hidden from LLVM's constant propagation (``_hidden``): the bound of a
    static inner loop (``lowering.Dims.loop_bound``), which LLVM would otherwise unroll
    completely before vectorising."""
    if value != types.int64:
        return None

    def codegen(context, builder, signature, args):
        return _hidden(builder, args[0])

    return types.int64(types.int64), codegen


def _hidden(builder, value):
    """``value`` through an empty inline-assembly identity: LLVM cannot see its value."""
    from llvmlite import ir

    return builder.asm(ir.FunctionType(value.type, [value.type]), "", "=r,0", [value], side_effect=False)


@intrinsic
def _sum_add(typingctx, total, value):
    """``total + value`` as an ``fadd`` that may be reassociated: a sum's accumulation
    (``r = _sum_add(r, v)``), which LLVM then vectorises with several partial sums instead
    of one addition after another (1e6 doubles: 820 -> 89 us; the error stays of the
    order of the sequential sum's, NumPy's pairwise sum being the more accurate).  The flag
    sits on this one instruction, so no other arithmetic of the kernel is reordered;
    NaN and infinity keep IEEE semantics."""
    if not (isinstance(total, types.Float) and isinstance(value, (types.Float, types.Integer, types.Boolean))):
        return None

    def codegen(context, builder, signature, args):
        addend = context.cast(builder, args[1], signature.args[1], signature.args[0])
        return builder.fadd(args[0], addend, flags=("reassoc",))

    return total(total, value), codegen


__all__ += ["_copy", "_empty", "_matvec", "_opaque", "_sum_add"]


# ``scaled_prod`` (prod's derivative): a product kept as m * 2**e, m a float64 and e an int64.
# m stays in [2**-500, 2**500]: a step whose plain product m * x leaves that range (or is 0,
# inf or NaN) is taken again from the old m with x's frexp mantissa and exponent, and m is
# renormalised by frexp if it still leaves it.  Both are powers-of-two scalings, exact: the
# rounding is the plain product's.  0 and NaN stay in m; an infinity is +-0.5 * 2**INFINITE
# (``_frexp_apart``), a power beyond every float, so that prod / x_i cancels x_i's own
# infinity and gives the product of the others (ops.reductions.SCALED_PROD).


@njit(nogil=True, error_model="numpy", inline="always")
def _frexp_apart(x):
    """frexp, with an infinity as +-0.5 * 2**SCALED_PROD_INFINITE."""
    if math.isinf(x):
        return math.copysign(0.5, x), SCALED_PROD_INFINITE
    return math.frexp(x)


@njit(nogil=True, error_model="numpy")
def _scaled_prod_step(m, e, x):
    t = m * x
    a = abs(t)
    if a >= 2.0 ** -500 and a <= 2.0 ** 500:
        return t, e
    f, k = _frexp_apart(x)
    m = m * f
    e = min(e + k, 3 * SCALED_PROD_INFINITE)  # at most 3 infinities are counted (int64 range)
    a = abs(m)
    if not (a >= 2.0 ** -500 and a <= 2.0 ** 500) and a != 0.0 and a != math.inf and a == a:
        m, k = math.frexp(m)
        e += k
    return m, e


@njit(nogil=True, error_model="numpy")
def _scaled_prod_settle(m, e):
    """m * 2**e with e = 0 where that is in m's range (the common case: then the ratios take
    their fast path)."""
    if e != 0:
        r = math.ldexp(m, min(max(e, -2000), 2000))
        a = abs(r)
        if a >= 2.0 ** -500 and a <= 2.0 ** 500:
            return r, 0
    return m, e


@njit(nogil=True, error_model="numpy")
def _scaled_prod_settle_arrays(m, e):
    flat_m, flat_e = m.ravel(), e.ravel()
    for i in range(flat_m.size):
        flat_m[i], flat_e[i] = _scaled_prod_settle(flat_m[i], flat_e[i])


@njit(nogil=True, error_model="numpy")
def _scaled_prod_ratio_apart(m, e, y, w, z):
    my, ey = _frexp_apart(y)
    mw, ew = _frexp_apart(w)
    mz, ez = _frexp_apart(z)
    k = e + ey + ew - ez
    r = m * my * mw / mz
    if r == 0.0 and k >= SCALED_PROD_INFINITE // 2:  # 0 times an infinity
        return math.nan
    k = min(max(k, -(1 << 20)), 1 << 20)  # beyond it every float overflows or underflows
    return math.ldexp(r, k)


@njit(nogil=True, error_model="numpy", inline="always")
def _scaled_prod_ratio(m, e, y, w, z):
    """(m * 2**e) * y * w / z, each operand's exponent apart (``_scaled_prod_ratio_apart``:
    m * my * mw / mz is in range, and ldexp rounds once more only where the result is
    subnormal).  Where e = 0 and the plain m * y, m * y * w and m * y * w / z are normal,
    those: the same roundings, without frexp and ldexp (inlined, so that literal operands
    fold; value+grad of prod on 1e6 elements 9.2 ms with checks on y, w and z, 8.3 with these).
    The rare path's call is what remains of the cost: it keeps LLVM from vectorising the loops
    that hold a ratio (the same kernel 6.9 ms with a call-free stand-in, 6.1 with a plain
    division, as prod's rule was before)."""
    t1 = m * y
    t2 = t1 * w
    r = t2 / z
    lo = min(abs(t1), min(abs(t2), abs(r)))
    hi = max(abs(t1), max(abs(t2), abs(r)))
    if (e == 0) & (lo >= 2.0 ** -1022) & (hi <= 1.7976931348623157e308):
        return r
    return _scaled_prod_ratio_apart(m, e, y, w, z)


__all__ += ["_scaled_prod_ratio", "_scaled_prod_ratio_apart", "_scaled_prod_settle", "_scaled_prod_settle_arrays",
            "_scaled_prod_step"]


# ``mul_log_slope``'s parts k >= 2 (third and higher derivatives of pow and xlogy): d a / b**k
# with each operand's binary exponent apart, as ops.elementwise._times_ratio_power_numpy
# computes it in the reference (the mantissas' product is in range; ldexp rounds once more
# only where the result is subnormal).  In float64: a float32 kernel rounds the result.
@njit(nogil=True, error_model="numpy")
def _times_ratio_power(k, d, a, b):
    md, ed = math.frexp(np.float64(d))
    ma, ea = math.frexp(np.float64(a))
    mb, eb = math.frexp(np.float64(b))
    power = mb
    for _ in range(k - 1):
        power = power * mb
    exponent = min(max(ed + ea - k * eb, -(1 << 20)), 1 << 20)
    return math.ldexp(md * ma / power, exponent)


__all__ += ["_times_ratio_power"]


MALLOC_ENV = "SYMDIFF_MALLOC"  # "system": leave the C library's malloc settings alone


def _tune_malloc() -> str:
    """Keep freed memory in the process instead of returning it to the system at once.

    A kernel's temporaries are allocated on every call.  glibc serves blocks of 8 MB
    from the heap once one such block has been freed, but then trims the heap back to
    the system as soon as 16 MB lie free at its top, so the next call page-faults every
    page of its temporaries again.  Measured (1e6 doubles, value and gradient, load
    average 12): sum(tanh(x)) 62 -> 11 ms, sum(exp(x) * log1p(x)) 91 -> 14 ms; NumPy's
    own temporaries gain too (tanh by hand 49 -> 17 ms).  So blocks up to 32 MB come
    from the heap and up to 256 MB of freed memory stay in the process.  This is
    process-wide (it applies to NumPy and the user's own code too), it is done only
    where glibc's ``mallopt`` exists, never over the user's own ``MALLOC_*_``
    environment settings, and ``SYMDIFF_MALLOC=system`` turns it off.  Returns what
    was done ("tuned", "system" or "environment").
    """
    if os.environ.get(MALLOC_ENV, "").strip().lower() in ("system", "off", "0", "no", "false"):
        return "system"
    if any(name.startswith("MALLOC_") and name.endswith("_") for name in os.environ):
        return "environment"
    mallopt = libc_function("mallopt", [ctypes.c_int, ctypes.c_int])
    if mallopt is not None and mallopt(M_MMAP_THRESHOLD, 32 << 20) and mallopt(M_TRIM_THRESHOLD, 256 << 20):
        return "tuned"
    return "system"


M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # mallopt's parameters (glibc's <malloc.h>)


def libc_function(name: str, argtypes: list):
    """The C library's function ``name`` (glibc's mallopt, malloc_trim) through ctypes,
    returning an int, or None where the C library has no such function."""
    try:
        function = getattr(ctypes.CDLL(None), name)
    except (OSError, AttributeError):
        return None
    function.argtypes, function.restype = argtypes, ctypes.c_int
    return function


MALLOC = _tune_malloc()


def _load_numba_array_math_without_scipy_linalg():
    """Import ``numba.np.arraymath`` now, without the import of scipy.linalg it does.

    Loading any cached kernel makes Numba import ``numba.np.arraymath``, whose module
    body runs ``_HAVE_BLAS = _check_blas()``, i.e. ``import scipy.linalg.cython_blas``:
    0.1-0.2 s, the largest part of a warm start (build to first result with the cache
    filled) once our own gemm comes from NumPy's BLAS.  The flag only says whether
    SciPy's BLAS can be imported, so for that one import ``ensure_blas`` is replaced by
    a check that finds the module without executing it; the real function is restored
    right after, so ``np.dot`` in any Numba code still loads SciPy's BLAS when typed.
    Anything unexpected (another Numba layout) leaves Numba to import it its own way;
    when kernels use SciPy's BLAS themselves there is nothing to save.
    """
    if "numba.np.arraymath" in sys.modules or BLAS_SOURCE == "scipy":  # SciPy's BLAS: imported anyway
        return
    try:
        import importlib.util

        import numba.np.linalg as numba_linalg

        real_ensure_blas = numba_linalg.ensure_blas
    except (ImportError, AttributeError):
        return

    def ensure_blas_without_import():
        try:
            found = importlib.util.find_spec("scipy.linalg") is not None  # imports scipy (already), not scipy.linalg
        except (ImportError, ValueError):
            found = False
        if not found:
            raise ImportError("scipy.linalg is not installed")

    numba_linalg.ensure_blas = ensure_blas_without_import
    try:
        import numba.np.arraymath as array_math
    except ImportError:
        return
    finally:
        numba_linalg.ensure_blas = real_ensure_blas
    if getattr(array_math, "ensure_blas", None) is ensure_blas_without_import:
        array_math.ensure_blas = real_ensure_blas


_load_numba_array_math_without_scipy_linalg()


def _export(module_name: str):
    """Make an op family's jitted helpers (its module's ``__all__``) visible to kernels,
    which import this module's ``__all__``."""
    import importlib

    module = importlib.import_module(module_name, __package__)
    globals().update({name: getattr(module, name) for name in module.__all__})
    __all__.extend(module.__all__)


# The op families' jitted helpers, one line each:
_export(".index_runtime")
_export(".vector_math")
_export(".special_math")
_export(".precise_log")
_export(".ordering_runtime")
_export(".lapack")
_export(".convolution_runtime")
