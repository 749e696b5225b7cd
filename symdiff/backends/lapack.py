"""LAPACK for compiled kernels: found in the library NumPy ships, registered by name, and
called from jitted helpers; pure loops when no LAPACK is found.

Discovery mirrors compiled matmul's BLAS (``runtime._find_numpy_blas``): NumPy's wheels
bundle OpenBLAS, whose LAPACK routines are exported under the same renaming as its gemm
(``scipy_dpotrf_64_``...).  The routines are looked up (a few dlsym calls; the library is
already loaded), checked on small problems through ctypes with exactly the calling
convention the kernels use (a wrong integer width shows as wrong pivots here, not as a
crash in a kernel), and their addresses registered with LLVM under fixed names
(``symdiff_dpotrf_lapack64``...), so cached kernels hold names, not addresses, and link in
any process.  SciPy is never imported.

The helpers work on C-contiguous matrices.  A C-order n x n buffer is the transpose in
LAPACK's column-major view, which the helpers use instead of copying: a Cholesky factor
is ``potrf('L')`` of the symmetric buffer (as NumPy calls it), moved from the C upper
triangle to the C lower one, a
triangular solve X = op(T)^-1 B is the right-sided ``trsm`` X^T = B^T op(T)^-T on the
Fortran view of X, and ``solve`` factors A^T (the buffer as it is) and solves with the
transposed factors.  Eigen-, singular-value and QR decompositions copy into column-major
order as NumPy does, so their vectors (signs included) are NumPy's.

Which implementation kernels call is in their source: helpers are exported as
``_lapack64_cholesky`` (LAPACK with 64-bit integers), ``_lapack32_...`` or
``_loops_...``; ``HELPER_PREFIX`` is the one this process uses, so a kernel compiled
against one never loads in a process that found another (it is part of the cache key).
``SYMDIFF_LAPACK=loops`` forces the fallback.
"""

from __future__ import annotations

import ctypes
import math
import os
from typing import NamedTuple

import numpy as np
from numba import njit

from ..ops.decompositions import cofactor_tangent_core, products_of_others

LinAlgError = np.linalg.LinAlgError


class KernelLinAlgError(LinAlgError):
    """NumPy's LinAlgError, raised inside a compiled kernel: the message is NumPy's and
    names the op and its node in the compiled function."""


LAPACK_ENV = "SYMDIFF_LAPACK"  # "numpy" (the default) or "loops"

# Each routine's arguments, all passed by reference (Fortran): c a character (with a hidden
# length appended), i an integer, f a scalar of the routine's precision, a an array, o the
# integer ``info`` the helper returns.
ROUTINES = {
    "gemm": "cciiifaiaifai",
    "potrf": "ciaio",
    "trtri": "cciaio",
    "lauum": "ciaio",
    "getrf": "iiaiao",
    "trsm": "cccciifaiai",
    "syevd": "cciaiaaiaio",
    "gesdd": "ciiaiaaiaiaiao",
    "geqrf": "iiaiaaio",
    "orgqr": "iiiaiaaio",
}

_NAME_PATTERNS = (("scipy_{x}{r}_64_", 64), ("{x}{r}_64_", 64), ("scipy_{x}{r}_", None), ("{x}{r}_", None))


class LapackChoice(NamedTuple):
    """``source`` "numpy" (the routines of NumPy's library) or "loops"; ``pattern`` the
    exported name pattern; ``int_bits`` LAPACK's integer width; ``addresses`` by
    (routine, precision letter); ``threads_local`` the address of OpenBLAS's
    ``openblas_set_num_threads_local`` (0 if absent)."""

    source: str
    pattern: str = ""
    int_bits: int = 0
    library: str = ""
    addresses: tuple = ()
    threads_local: int = 0

    def address(self, routine: str, precision: str) -> int:
        return dict(self.addresses)[(routine, precision)]


def _symbol(choice: LapackChoice, routine: str, precision: str) -> str:
    return f"symdiff_{precision}{routine}_lapack{choice.int_bits}"


# OpenBLAS 0.3.27+: the calling thread's BLAS thread count (returns the old one).  As for
# compiled matmul (runtime.SINGLE_THREAD_BELOW), a call of fewer than 2**24 multiply-adds
# runs on the calling thread alone: on a busy machine OpenBLAS's workers wait for a core
# (a Cholesky solve with one right-hand side, n = 442: 0.2 ms alone, up to 25 ms threaded).
_THREADS_LOCAL_NAMES = ("scipy_openblas_set_num_threads_local64_", "openblas_set_num_threads_local64_",
                        "scipy_openblas_set_num_threads_local", "openblas_set_num_threads_local")
_THREADS_SYMBOL = "symdiff_lapack_set_num_threads_local"
SINGLE_THREAD_BELOW = 1 << 24


# ------------------------------------------------------------- ctypes check


def _call_ctypes(choice: LapackChoice, routine: str, precision: str, *args):
    """Call ``routine`` through ctypes with the kernels' convention; returns info (or None)."""
    kinds = ROUTINES[routine]
    integer = ctypes.c_int64 if choice.int_bits == 64 else ctypes.c_int32
    scalar = ctypes.c_double if precision == "d" else ctypes.c_float
    keep, call, info = [], [], None
    for kind, value in zip(kinds, args):
        if kind == "c":
            slot = ctypes.c_char(value.encode())
        elif kind == "i":
            slot = integer(value)
        elif kind == "f":
            slot = scalar(value)
        elif kind == "o":
            slot = info = integer(0)
        if kind == "a":
            call.append(ctypes.c_void_p(value.ctypes.data))
        else:
            keep.append(slot)
            call.append(ctypes.cast(ctypes.byref(slot), ctypes.c_void_p))
    if kinds[-1] == "o" and len(args) == len(kinds) - 1:
        info = integer(0)
        keep.append(info)
        call.append(ctypes.cast(ctypes.byref(info), ctypes.c_void_p))
    lengths = [ctypes.c_size_t(1)] * kinds.count("c")
    function = ctypes.CFUNCTYPE(None, *([ctypes.c_void_p] * len(call) + [ctypes.c_size_t] * len(lengths)))(
        choice.address(routine, precision))
    function(*call, *lengths)
    return None if info is None else info.value


def _self_test(choice: LapackChoice) -> bool:
    """Small problems with known answers in both precisions, through the same argument
    convention the kernels use: Cholesky, LU with pivoting, a triangular solve, eigen-,
    singular-value and QR decompositions (with their workspace queries)."""
    rng = np.random.default_rng(3)
    int_dtype = np.int64 if choice.int_bits == 64 else np.int32
    for precision, dtype, tol in (("d", np.float64, 1e-10), ("s", np.float32, 1e-3)):
        p = np.array(rng.normal(size=(2, 3)), dtype=dtype, order="F")
        q = np.array(rng.normal(size=(3, 4)), dtype=dtype, order="F")
        c = np.zeros((2, 4), dtype=dtype, order="F")
        _call_ctypes(choice, "gemm", precision, "N", "N", 2, 4, 3, 1.0, p, 2, q, 3, 0.0, c, 2)
        if not np.allclose(c, p.astype(np.float64) @ q, atol=tol, rtol=tol):
            return False
        x = rng.normal(size=(4, 4))
        spd = (x @ x.T + 4 * np.eye(4)).astype(dtype)
        a = np.array(spd, order="F")
        if _call_ctypes(choice, "potrf", precision, "L", 4, a, 4) != 0:
            return False
        if not np.allclose(np.tril(a), np.linalg.cholesky(spd.astype(np.float64)), atol=tol, rtol=tol):
            return False
        inverse = np.array(np.tril(a), order="F")
        if _call_ctypes(choice, "trtri", precision, "L", "N", 4, inverse, 4) != 0:
            return False
        if _call_ctypes(choice, "lauum", precision, "L", 4, inverse, 4) != 0:  # L^-T L^-1 = spd^-1
            return False
        if not np.allclose(np.tril(inverse), np.tril(np.linalg.inv(spd.astype(np.float64))), atol=tol, rtol=tol):
            return False
        g = np.array([[1.0, 2.0, 0.0], [4.0, 1.0, 1.0], [0.0, 3.0, 5.0]], dtype=dtype, order="F")
        lu, piv = g.copy(order="F"), np.zeros(3, dtype=int_dtype)
        if _call_ctypes(choice, "getrf", precision, 3, 3, lu, 3, piv) != 0 or list(piv) != [2, 3, 3]:
            return False
        b = np.array(rng.normal(size=(3, 2)), dtype=dtype, order="F")
        t = np.array(np.tril(spd[:3, :3]), order="F")
        want = np.linalg.solve(t.astype(np.float64), b.astype(np.float64))
        _call_ctypes(choice, "trsm", precision, "L", "L", "N", "N", 3, 2, 1.0, t, 3, b, 3)
        if not np.allclose(b, want, atol=tol, rtol=tol):
            return False
        w, work, iwork = np.zeros(4, dtype), np.zeros(1, dtype), np.zeros(1, int_dtype)
        a = np.array(spd, order="F")
        if _call_ctypes(choice, "syevd", precision, "V", "L", 4, a, 4, w, work, -1, iwork, -1) != 0:
            return False
        work, iwork = np.zeros(int(work[0]), dtype), np.zeros(int(iwork[0]), int_dtype)
        if _call_ctypes(choice, "syevd", precision, "V", "L", 4, a, 4, w, work, work.size, iwork, iwork.size) != 0:
            return False
        if not np.allclose(w, np.linalg.eigvalsh(spd.astype(np.float64)), atol=tol, rtol=tol):
            return False
        m = np.array(rng.normal(size=(4, 3)), dtype=dtype, order="F")
        s, u, vt = np.zeros(3, dtype), np.zeros((4, 3), dtype, order="F"), np.zeros((3, 3), dtype, order="F")
        work, iwork = np.zeros(1, dtype), np.zeros(24, int_dtype)
        mm = m.copy(order="F")
        if _call_ctypes(choice, "gesdd", precision, "S", 4, 3, mm, 4, s, u, 4, vt, 3, work, -1, iwork) != 0:
            return False
        work = np.zeros(int(work[0]), dtype)
        if _call_ctypes(choice, "gesdd", precision, "S", 4, 3, mm, 4, s, u, 4, vt, 3, work, work.size, iwork) != 0:
            return False
        if not np.allclose((u * s) @ vt, m, atol=tol, rtol=tol):
            return False
        qr, tau, work = m.copy(order="F"), np.zeros(3, dtype), np.zeros(64, dtype)
        if _call_ctypes(choice, "geqrf", precision, 4, 3, qr, 4, tau, work, 64) != 0:
            return False
        r = np.triu(qr[:3])
        if _call_ctypes(choice, "orgqr", precision, 4, 3, 3, qr, 4, tau, work, 64) != 0:
            return False
        if not np.allclose(qr @ r, m, atol=tol, rtol=tol):
            return False
    return True


def _numpy_libraries() -> list:
    """The shared libraries that may hold NumPy's BLAS and LAPACK, as
    ``runtime._numpy_blas_libraries`` lists them (this module is imported by runtime, so
    it does not import runtime: a doctest collection may import it first)."""
    package = os.path.dirname(os.path.abspath(np.__file__))
    found = []
    for folder in (os.path.join(os.path.dirname(package), "numpy.libs"), os.path.join(package, ".dylibs")):
        try:
            names = sorted(os.listdir(folder))
        except OSError:
            continue
        found += [os.path.join(folder, name) for name in names
                  if "blas" in name.lower() and (name.lower().endswith((".so", ".dylib", ".dll")) or ".so." in name)]
    core = getattr(getattr(np, "_core", None), "_multiarray_umath", None)
    if core is None:  # NumPy 1.x
        core = getattr(getattr(np, "core", None), "_multiarray_umath", None)
    if getattr(core, "__file__", None):
        found.append(core.__file__)
    return found


def _library_int_bits(library) -> int | None:
    """The integer width an OpenBLAS build reports (None if it is not OpenBLAS)."""
    for name in ("scipy_openblas_get_config64_", "openblas_get_config64_", "scipy_openblas_get_config",
                 "openblas_get_config"):
        function = getattr(library, name, None)
        if function is not None:
            function.restype = ctypes.c_char_p
            return 64 if b"USE64BITINT" in (function() or b"") else 32
    return None


def _find_numpy_lapack(libraries=None) -> LapackChoice | None:
    """NumPy's LAPACK (every routine of ROUTINES, double and single, under one naming
    pattern), or None; ``libraries`` (paths) replaces NumPy's in tests."""
    for path in _numpy_libraries() if libraries is None else libraries:
        try:
            library = ctypes.CDLL(path)
        except OSError:
            continue
        for pattern, int_bits in _NAME_PATTERNS:
            functions = {(r, x): getattr(library, pattern.format(x=x, r=r), None) for r in ROUTINES for x in "ds"}
            if None in functions.values():
                continue
            addresses = tuple(sorted((key, ctypes.cast(f, ctypes.c_void_p).value) for key, f in functions.items()))
            # A 64-bit integer slot read as 32 bits on a little-endian machine holds the same
            # small value, so 64 is the harmless guess; 32 only when the library says so
            # (pivots and info are written at the library's width: the self-test sees it).
            widths = [int_bits or _library_int_bits(library) or 64]
            local = next((getattr(library, name) for name in _THREADS_LOCAL_NAMES if hasattr(library, name)), None)
            threads_local = ctypes.cast(local, ctypes.c_void_p).value if local is not None else 0
            for width in widths:
                choice = LapackChoice("numpy", pattern, width, path, addresses, threads_local)
                try:
                    if _self_test(choice):
                        return choice
                except Exception:  # a crash-free mismatch (wrong width): try the next
                    continue
    return None


def _choose_lapack(preference: str | None = None) -> LapackChoice:
    """NumPy's LAPACK unless ``preference`` (or $SYMDIFF_LAPACK) is "loops" or none is found.

    >>> _choose_lapack("loops")
    LapackChoice(source='loops', pattern='', int_bits=0, library='', addresses=(), threads_local=0)
    """
    preference = (preference or "numpy").strip().lower()
    if preference not in ("numpy", "loops"):
        raise ValueError(f"{LAPACK_ENV}={preference!r}: expected numpy or loops")
    if preference == "numpy":
        choice = _find_numpy_lapack()
        if choice is not None:
            return choice
    return LapackChoice("loops")


LAPACK_CHOICE = _choose_lapack(os.environ.get(LAPACK_ENV))
LAPACK = LAPACK_CHOICE.source == "numpy"
HELPER_PREFIX = f"_lapack{LAPACK_CHOICE.int_bits}_" if LAPACK else "_loops_"
LAPACK_INT = np.int64 if LAPACK_CHOICE.int_bits != 32 else np.int32


def _register_symbols(choice: LapackChoice):
    from llvmlite import binding

    for (routine, precision), address in choice.addresses:
        binding.add_symbol(_symbol(choice, routine, precision), address)
    if choice.threads_local:
        binding.add_symbol(_THREADS_SYMBOL, choice.threads_local)


if LAPACK:
    _register_symbols(LAPACK_CHOICE)

# ---------------------------------------------------------------- intrinsics


def _make_routine(routine: str, choice: LapackChoice):
    """A Numba intrinsic ``f(*args) -> info`` calling ``routine`` by its registered name;
    the precision (d or s) is that of its float array arguments."""
    from llvmlite import ir
    from numba import types
    from numba.core import cgutils
    from numba.extending import intrinsic

    kinds = ROUTINES[routine]
    inputs = kinds[:-1] if kinds.endswith("o") else kinds
    integer = ir.IntType(choice.int_bits)
    void_p = ir.IntType(8).as_pointer()
    size_t = ir.IntType(8 * ctypes.sizeof(ctypes.c_size_t))

    def precision_of(argtypes):
        for kind, t in zip(inputs, argtypes):
            if kind == "a" and t.dtype in (types.float32, types.float64):
                return "d" if t.dtype == types.float64 else "s", t.dtype
        raise TypeError(f"{routine}: no float array argument")

    def codegen(context, builder, signature, args):
        letter, dtype = precision_of(signature.args)
        call = []
        for kind, t, value in zip(inputs, signature.args, args):
            if kind == "a":
                data = context.make_array(t)(context, builder, value).data
                call.append(builder.bitcast(data, void_p))
                continue
            if kind == "c":
                slot_type, value = ir.IntType(8), builder.trunc(value, ir.IntType(8))
            elif kind == "i":
                slot_type = integer
                value = builder.trunc(value, integer) if value.type.width > integer.width else value
            else:  # f
                slot_type = context.get_value_type(dtype)
                value = context.cast(builder, value, t, dtype)
            slot = cgutils.alloca_once(builder, slot_type)
            builder.store(value, slot)
            call.append(builder.bitcast(slot, void_p))
        info = None
        if kinds.endswith("o"):
            info = cgutils.alloca_once_value(builder, ir.Constant(integer, 0))
            call.append(builder.bitcast(info, void_p))
        hidden = [ir.Constant(size_t, 1)] * kinds.count("c")
        fnty = ir.FunctionType(ir.VoidType(), [void_p] * len(call) + [size_t] * len(hidden))
        fn = cgutils.get_or_insert_function(builder.module, fnty, _symbol(choice, routine, letter))
        builder.call(fn, call + hidden)
        if info is None:
            return ir.Constant(ir.IntType(64), 0)
        loaded = builder.load(info)
        return builder.sext(loaded, ir.IntType(64)) if integer.width < 64 else loaded

    def typer(typingctx, args):
        if len(args) != len(inputs):
            return None
        for kind, t in zip(inputs, args):
            if (kind == "a") != isinstance(t, types.Array):
                return None
        precision_of(args)
        return types.int64(*args), codegen

    params = ", ".join(f"x{k}" for k in range(len(inputs)))
    namespace = {"typer": typer}
    exec(f"def {routine}(typingctx, {params}):\n    return typer(typingctx, ({params},))\n", namespace)
    return intrinsic(namespace[routine])


def _make_threads(choice: LapackChoice):
    """``_threads(work) -> previous``: below SINGLE_THREAD_BELOW multiply-adds, OpenBLAS
    runs this thread's calls on it alone (returns the old count, else -1); ``_threads(-
    previous - 2)`` restores it.  A no-op without openblas_set_num_threads_local."""
    from llvmlite import ir
    from numba import types
    from numba.core import cgutils
    from numba.extending import intrinsic

    int32, int64 = ir.IntType(32), ir.IntType(64)

    @intrinsic
    def _threads(typingctx, work):
        if not isinstance(work, types.Integer):
            return None

        def codegen(context, builder, signature, args):
            (value,) = args
            value = context.cast(builder, value, signature.args[0], types.int64)
            result = cgutils.alloca_once_value(builder, ir.Constant(int64, -1))
            if choice.threads_local:
                fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(int32, [int32]), _THREADS_SYMBOL)
                small = builder.and_(builder.icmp_signed(">=", value, ir.Constant(int64, 0)),
                                     builder.icmp_signed("<", value, ir.Constant(int64, SINGLE_THREAD_BELOW)))
                restore = builder.icmp_signed("<=", value, ir.Constant(int64, -2))
                with builder.if_then(small):
                    old = builder.call(fn, [ir.Constant(int32, 1)])
                    builder.store(builder.sext(old, int64), result)
                with builder.if_then(restore):
                    count = builder.trunc(builder.sub(ir.Constant(int64, -2), value), int32)
                    builder.call(fn, [count])
            return builder.load(result)

        return types.int64(types.int64), codegen

    return _threads


if LAPACK:
    _threads = _make_threads(LAPACK_CHOICE)

    @njit(nogil=True, error_model="numpy")
    def _restore(previous):
        if previous >= 0:
            _threads(-previous - 2)

    _gemm = _make_routine("gemm", LAPACK_CHOICE)
    _potrf = _make_routine("potrf", LAPACK_CHOICE)
    _trtri = _make_routine("trtri", LAPACK_CHOICE)
    _lauum = _make_routine("lauum", LAPACK_CHOICE)
    _getrf = _make_routine("getrf", LAPACK_CHOICE)
    _trsm = _make_routine("trsm", LAPACK_CHOICE)
    _syevd = _make_routine("syevd", LAPACK_CHOICE)
    _gesdd = _make_routine("gesdd", LAPACK_CHOICE)
    _geqrf = _make_routine("geqrf", LAPACK_CHOICE)
    _orgqr = _make_routine("orgqr", LAPACK_CHOICE)

_C, _D, _I, _L, _N, _R, _S, _T, _U, _V, _A = (ord(c) for c in "CDILNRSTUVA")
# Flags passed between helpers as np.bool_: a Python True would make Numba compile one
# specialisation of the callee per literal value (seconds each); kernels pass them so too.
_YES, _NO = np.bool_(True), np.bool_(False)
_BLOCK = 32  # tile of blocked transposes: a row and a column of it stay in cache

# --------------------------------------------------------- shared loops


@njit(nogil=True, error_model="numpy")
def _symmetric_part(out, a, lower_only):
    """out = (a + a^T) / 2 (lower_only: the lower triangle, zeros above), tile by tile."""
    n = a.shape[0]
    for ib in range(0, n, _BLOCK):
        for jb in range(0, ib + 1, _BLOCK):
            for i in range(ib, min(ib + _BLOCK, n)):
                for j in range(jb, min(jb + _BLOCK, i + 1)):
                    v = (a[i, j] + a[j, i]) * 0.5
                    out[i, j] = v
                    out[j, i] = 0 if lower_only and j < i else v


@njit(nogil=True, error_model="numpy")
def _transpose_into(out, a):
    """out = a^T for 2-d C arrays, tile by tile."""
    m, n = a.shape
    for ib in range(0, m, _BLOCK):
        for jb in range(0, n, _BLOCK):
            for i in range(ib, min(ib + _BLOCK, m)):
                for j in range(jb, min(jb + _BLOCK, n)):
                    out[j, i] = a[i, j]


@njit(nogil=True, error_model="numpy")
def _upper_to_lower(out):
    """Transpose the strict upper triangle into the lower one and zero it, tile by tile."""
    n = out.shape[0]
    for ib in range(0, n, _BLOCK):
        for jb in range(0, ib + 1, _BLOCK):
            for i in range(ib, min(ib + _BLOCK, n)):
                for j in range(jb, min(jb + _BLOCK, i)):
                    out[i, j] = out[j, i]
                    out[j, i] = 0


@njit(nogil=True, error_model="numpy")
def _fill(out, value):
    """out[:, :] = value by loops: Numba compiles a slice assignment in seconds."""
    for i in range(out.shape[0]):
        for j in range(out.shape[1]):
            out[i, j] = value


@njit(nogil=True, error_model="numpy")
def _zero_diagonal_at(t, unit):
    """1 + the first index where the triangular t has a zero diagonal, 0 if none (or unit)."""
    if unit:
        return 0
    for i in range(t.shape[0]):
        if t[i, i] == 0:
            return i + 1
    return 0


@njit(nogil=True, error_model="numpy")
def _slogdet_from_lu(lu, piv, info, swapped_if):
    """(sign, log|det|) from LU factors: the diagonal's signs and logs, and the parity of
    the row interchanges (``piv[i] != i + swapped_if``)."""
    n = lu.shape[0]
    if info > 0:
        return 0.0, -np.inf
    sign = 1.0
    logdet = 0.0
    for i in range(n):
        d = lu[i, i]
        if piv[i] != i + swapped_if:
            sign = -sign
        if d < 0:
            sign = -sign
            d = -d
        logdet += math.log(d)
    return sign, logdet


# ------------------------------------------------------------- LAPACK helpers

if LAPACK:
    @njit(nogil=True, error_model="numpy")
    def _lapack_cholesky(out, a):
        """out = the lower Cholesky factor of (a + a^T)/2; returns LAPACK's info."""
        n = a.shape[0]
        _symmetric_part(out, a, _NO)
        if n == 0:
            return 0
        previous = _threads(n * n * n // 3)
        # potrf('L'), as NumPy calls it (OpenBLAS's 'U' is slower): the factor lands in
        # Fortran's lower triangle, the C upper one, as L^T; moved to the C lower one after
        info = _potrf(_L, n, out, n)
        _restore(previous)
        _upper_to_lower(out)
        return info

    @njit(nogil=True, error_model="numpy")
    def _lapack_trisolve(t, x, lower, trans, unit):
        """x = op(T)^-1 x in place, T the lower (upper) triangle of t; 1 + the index of a zero
        on T's diagonal instead, if there is one."""
        n = t.shape[0]
        k = x.shape[1]
        bad = _zero_diagonal_at(t, unit)
        if bad or n == 0 or k == 0:
            return bad
        # X^T = B^T op(T)^-T on the Fortran view (X^T, k x n), where t reads as T^T
        previous = _threads(n * n * k)
        _trsm(_R, _U if lower else _L, _T if trans else _N, _U if unit else _N, k, n, 1.0, t, n, x, k)
        _restore(previous)
        return 0

    @njit(nogil=True, error_model="numpy")
    def _lapack_cho_solve(c, x, lower):
        """x = (L L^T)^-1 x in place (lower: L = tril(c); else c's upper triangle is L^T)."""
        bad = _lapack_trisolve(c, x, lower, not lower, _NO)
        if bad:
            return bad
        return _lapack_trisolve(c, x, lower, lower, _NO)

    @njit(nogil=True, error_model="numpy")
    def _lapack_cho_inverse(out, c, w):
        """out = L^-T diag(w) L^-1, L the lower triangle of c: L^-1 by trtri, then, for each
        sign of w, lauum of diag(sqrt|w|) L^-1 (Y^T Y in n^3/3 flops)."""
        n = c.shape[0]
        bad = _zero_diagonal_at(c, _NO)
        if bad or n == 0:
            return bad
        for i in range(n):
            for j in range(n):
                out[i, j] = c[i, j] if j <= i else 0.0
        previous = _threads(n * n * n // 3)
        info = _trtri(_U, _N, n, out, n)  # Fortran's upper triangle of out is its C lower one: now L^-1
        positive = negative = False
        for i in range(n):
            positive = positive or w[i] > 0
            negative = negative or w[i] < 0
        other = np.empty((n, n) if positive and negative else (1, 1), dtype=out.dtype)
        if positive and negative:
            for i in range(n):
                for j in range(i + 1):
                    other[i, j] = out[i, j] * math.sqrt(max(-w[i], 0.0))
            _lauum(_U, n, other, n)
        sign = -1.0 if negative and not positive else 1.0
        for i in range(n):
            scale = math.sqrt(max(sign * w[i], 0.0))
            for j in range(i + 1):
                out[i, j] *= scale
        _lauum(_U, n, out, n)  # Fortran's U U^T: Y^T Y into the C lower triangle
        _restore(previous)
        for i in range(n):
            for j in range(i + 1):
                v = out[i, j] * sign
                if positive and negative:
                    v -= other[i, j]
                out[i, j] = v
                out[j, i] = v
        return info

    @njit(nogil=True, error_model="numpy")
    def _lapack_lu(lu, piv):
        """LU factors (getrf) of lu's Fortran view, A^T for the C matrix A it holds."""
        n = lu.shape[0]
        if n == 0:
            return 0
        previous = _threads(2 * n * n * n // 3)
        info = _getrf(n, n, lu, n, piv)
        _restore(previous)
        return info

    @njit(nogil=True, error_model="numpy")
    def _lapack_lu_solve(lu, piv, x, trans):
        """x = A^-1 x (trans: A^-T x) in place, from _lapack_lu's factors of A^T = P L U."""
        n = lu.shape[0]
        k = x.shape[1]
        if n == 0 or k == 0:
            return 0
        previous = _threads(n * n * k)
        if trans:  # A^T X = B: X = U^-1 L^-1 P^T B
            for i in range(n):
                p = piv[i] - 1
                if p != i:
                    for j in range(k):
                        x[i, j], x[p, j] = x[p, j], x[i, j]
            _trsm(_R, _L, _T, _U, k, n, 1.0, lu, n, x, k)
            _trsm(_R, _U, _T, _N, k, n, 1.0, lu, n, x, k)
        else:  # A X = B, A = U^T L^T P^T: X = P L^-T U^-T B
            _trsm(_R, _U, _N, _N, k, n, 1.0, lu, n, x, k)
            _trsm(_R, _L, _N, _U, k, n, 1.0, lu, n, x, k)
            for i in range(n - 1, -1, -1):
                p = piv[i] - 1
                if p != i:
                    for j in range(k):
                        x[i, j], x[p, j] = x[p, j], x[i, j]
        _restore(previous)
        return 0

    @njit(nogil=True, error_model="numpy")
    def _lapack_slogdet(lu, piv, info):
        return _slogdet_from_lu(lu, piv, info, np.int64(1))

    @njit(nogil=True, error_model="numpy")
    def _lapack_eigh(a, w, v, vectors):
        """Eigenvalues (ascending) into w and, if ``vectors``, eigenvectors (columns) into v,
        of the symmetric part of a (syevd on NumPy's column-major copy)."""
        n = a.shape[0]
        if n == 0:
            return 0
        buf = np.empty((n, n), dtype=a.dtype)
        _symmetric_part(buf, a, _NO)
        job = _V if vectors else _N
        work = np.empty(1, dtype=a.dtype)
        iwork = np.empty(1, dtype=LAPACK_INT)
        info = _syevd(job, _L, n, buf, n, w, work, -1, iwork, -1)
        if info != 0:
            return info
        work = np.empty(int(work[0]), dtype=a.dtype)
        iwork = np.empty(max(1, int(iwork[0])), dtype=LAPACK_INT)
        previous = _threads(10 * n * n * n)
        info = _syevd(job, _L, n, buf, n, w, work, work.size, iwork, iwork.size)
        _restore(previous)
        if info == 0 and vectors:
            _transpose_into(v, buf)  # column-major eigenvectors to C order
        return info

    @njit(nogil=True, error_model="numpy")
    def _lapack_svd(a, s, u, vh, job):
        """s (and u, vh unless job is 0) of a, by gesdd on NumPy's column-major copy;
        job: 0 values only, 1 reduced, 2 full matrices."""
        m, n = a.shape
        k = min(m, n)
        if k == 0:  # nothing to factor; full matrices of an empty a are identities
            if job == 2:
                _fill(u, 0.0)
                _fill(vh, 0.0)
                for i in range(m):
                    u[i, i] = 1
                for i in range(n):
                    vh[i, i] = 1
            return 0
        fa = np.empty((n, m), dtype=a.dtype)  # a in column-major order
        _transpose_into(fa, a)
        ucols = m if job == 2 else k
        vrows = n if job == 2 else k
        fu = np.empty((ucols, m), dtype=a.dtype)
        fvt = np.empty((n, vrows), dtype=a.dtype)
        letter = _N if job == 0 else (_A if job == 2 else _S)
        ldu = m
        ldvt = vrows if job else 1
        work = np.empty(1, dtype=a.dtype)
        iwork = np.empty(8 * k, dtype=LAPACK_INT)
        info = _gesdd(letter, m, n, fa, m, s, fu, ldu, fvt, ldvt, work, -1, iwork)
        if info != 0:
            return info
        work = np.empty(int(work[0]), dtype=a.dtype)
        previous = _threads(10 * m * n * k)
        info = _gesdd(letter, m, n, fa, m, s, fu, ldu, fvt, ldvt, work, work.size, iwork)
        _restore(previous)
        if info == 0 and job:
            _transpose_into(u, fu)
            _transpose_into(vh, fvt)
        return info

    @njit(nogil=True, error_model="numpy")
    def _lapack_qr(a, q, r, complete, want_q):
        """R (k x n, or m x n complete) and, if ``want_q``, Q (m x k, or m x m) of a
        (geqrf/orgqr on NumPy's column-major copy)."""
        m, n = a.shape
        k = min(m, n)
        qcols = m if complete else k
        rrows = m if complete else k
        fa = np.empty((max(n, qcols), m), dtype=a.dtype)  # room for Q's columns
        _transpose_into(fa[:n], a)
        tau = np.empty(max(k, 1), dtype=a.dtype)
        work = np.empty(1, dtype=a.dtype)
        info = 0
        previous = _threads(4 * m * max(n, qcols) * k)
        if k:
            info = _geqrf(m, n, fa, m, tau, work, -1)
            work = np.empty(max(1, int(work[0])), dtype=a.dtype)
            info = _geqrf(m, n, fa, m, tau, work, work.size)
            if info != 0:
                _restore(previous)
                return info
        for i in range(rrows):
            for j in range(n):
                r[i, j] = fa[j, i] if j >= i else 0
        if want_q and qcols and m:
            if k == 0:
                for i in range(m):
                    for j in range(qcols):
                        q[i, j] = 1.0 if i == j else 0.0
            else:
                info = _orgqr(m, qcols, k, fa, m, tau, work, -1)
                work = np.empty(max(1, int(work[0])), dtype=a.dtype)
                info = _orgqr(m, qcols, k, fa, m, tau, work, work.size)
                _transpose_into(q, fa[:qcols])
        _restore(previous)
        return info

# --------------------------------------------------------------- pure loops


@njit(nogil=True, error_model="numpy")
def _loops_cholesky(out, a):
    n = a.shape[0]
    _symmetric_part(out, a, _YES)
    for j in range(n):
        d = out[j, j]
        for p in range(j):
            d -= out[j, p] * out[j, p]
        if not d > 0:  # NaN included
            return j + 1
        d = math.sqrt(d)
        out[j, j] = d
        for i in range(j + 1, n):
            v = out[i, j]
            for p in range(j):
                v -= out[i, p] * out[j, p]
            out[i, j] = v / d
    return 0


@njit(nogil=True, error_model="numpy")
def _loops_trisolve(t, x, lower, trans, unit):
    n = t.shape[0]
    k = x.shape[1]
    bad = _zero_diagonal_at(t, unit)
    if bad:
        return bad
    forward = lower != trans  # op(T) lower triangular
    for step in range(n):
        i = step if forward else n - 1 - step
        for c in range(k):
            v = x[i, c]
            if forward:
                for p in range(i):
                    v -= (t[p, i] if trans else t[i, p]) * x[p, c]
            else:
                for p in range(i + 1, n):
                    v -= (t[p, i] if trans else t[i, p]) * x[p, c]
            x[i, c] = v if unit else v / t[i, i]
    return 0


@njit(nogil=True, error_model="numpy")
def _loops_cho_solve(c, x, lower):
    bad = _loops_trisolve(c, x, lower, not lower, _NO)
    if bad:
        return bad
    return _loops_trisolve(c, x, lower, lower, _NO)


@njit(nogil=True, error_model="numpy")
def _loops_cho_inverse(out, c, w):
    """L^-T diag(w) L^-1 by loops: Z = L^-1 column by column, then sum_k w_k z_k z_k^T."""
    n = c.shape[0]
    bad = _zero_diagonal_at(c, _NO)
    if bad:
        return bad
    z = np.zeros((n, n))
    for j in range(n):  # column j of L^-1: forward substitution on e_j
        z[j, j] = 1.0 / c[j, j]
        for i in range(j + 1, n):
            acc = 0.0
            for p in range(j, i):
                acc += c[i, p] * z[p, j]
            z[i, j] = -acc / c[i, i]
    for i in range(n):
        for j in range(i + 1):
            acc = 0.0
            for k in range(i, n):  # (Z^T W Z)_ij = sum_k Z_ki w_k Z_kj, Z lower: k >= max(i, j)
                acc += z[k, i] * w[k] * z[k, j]
            out[i, j] = acc
            out[j, i] = acc
    return 0


@njit(nogil=True, error_model="numpy")
def _loops_lu(lu, piv):
    """Doolittle with partial pivoting on the C matrix itself: P A = L U, piv[i] the row
    swapped with row i at step i (0-based)."""
    n = lu.shape[0]
    info = 0
    for j in range(n):
        p = j
        for i in range(j + 1, n):
            if abs(lu[i, j]) > abs(lu[p, j]):
                p = i
        piv[j] = p
        if p != j:
            for c in range(n):
                lu[j, c], lu[p, c] = lu[p, c], lu[j, c]
        d = lu[j, j]
        if d == 0:
            if info == 0:
                info = j + 1
            continue
        for i in range(j + 1, n):
            f = lu[i, j] / d
            lu[i, j] = f
            for c in range(j + 1, n):
                lu[i, c] -= f * lu[j, c]
    return info


@njit(nogil=True, error_model="numpy")
def _loops_lu_solve(lu, piv, x, trans):
    n = lu.shape[0]
    k = x.shape[1]
    if not trans:  # L U X = P B
        for i in range(n):
            p = piv[i]
            if p != i:
                for c in range(k):
                    x[i, c], x[p, c] = x[p, c], x[i, c]
        _loops_trisolve(lu, x, _YES, _NO, _YES)
        _loops_trisolve(lu, x, _NO, _NO, _NO)
    else:  # A^T X = B with P A = L U: U^T L^T P X = B
        _loops_trisolve(lu, x, _NO, _YES, _NO)
        _loops_trisolve(lu, x, _YES, _YES, _YES)
        for i in range(n - 1, -1, -1):
            p = piv[i]
            if p != i:
                for c in range(k):
                    x[i, c], x[p, c] = x[p, c], x[i, c]
    return 0


@njit(nogil=True, error_model="numpy")
def _loops_slogdet(lu, piv, info):
    return _slogdet_from_lu(lu, piv, info, np.int64(0))


@njit(nogil=True, error_model="numpy")
def _sort_by(order, keys, sign):
    """Insertion sort of ``order`` by sign * keys[k, k] (np.argsort compiles in seconds)."""
    for i in range(1, order.shape[0]):
        current = order[i]
        j = i - 1
        while j >= 0 and sign * keys[order[j], order[j]] > sign * keys[current, current]:
            order[j + 1] = order[j]
            j -= 1
        order[j + 1] = current


@njit(nogil=True, error_model="numpy")
def _complete_basis(q, k):
    """Fill columns k.. of q (m x m) with an orthonormal completion of its first k columns."""
    m = q.shape[0]
    col = k
    for e in range(m):
        if col == m:
            break
        vec = np.zeros(m)
        vec[e] = 1.0
        for _ in range(2):  # twice is enough (Kahan)
            for j in range(col):
                d = 0.0
                for i in range(m):
                    d += q[i, j] * vec[i]
                for i in range(m):
                    vec[i] -= d * q[i, j]
        norm = 0.0
        for i in range(m):
            norm += vec[i] * vec[i]
        norm = math.sqrt(norm)
        if norm > 0.5:
            for i in range(m):
                q[i, col] = vec[i] / norm
            col += 1


@njit(nogil=True, error_model="numpy")
def _loops_svd(a, s, u, vh, job):
    """One-sided Jacobi (Hestenes) on the taller orientation, in float64."""
    m, n = a.shape
    wide = n > m
    rows, cols = (n, m) if wide else (m, n)
    x = np.empty((rows, cols))  # rows >= cols
    for i in range(rows):
        for j in range(cols):
            x[i, j] = a[j, i] if wide else a[i, j]
    v = np.zeros((cols, cols))
    for i in range(cols):
        v[i, i] = 1.0
    for sweep in range(100):
        rotated = False
        for p in range(cols - 1):
            for q in range(p + 1, cols):
                alpha = beta = gamma = 0.0
                for i in range(rows):
                    alpha += x[i, p] * x[i, p]
                    beta += x[i, q] * x[i, q]
                    gamma += x[i, p] * x[i, q]
                if abs(gamma) <= 1e-15 * math.sqrt(alpha * beta) or gamma == 0:
                    continue
                rotated = True
                zeta = (beta - alpha) / (2 * gamma)
                t = (1.0 if zeta >= 0 else -1.0) / (abs(zeta) + math.sqrt(1 + zeta * zeta))
                c = 1 / math.sqrt(1 + t * t)
                sn = c * t
                for i in range(rows):
                    xp, xq = x[i, p], x[i, q]
                    x[i, p] = c * xp - sn * xq
                    x[i, q] = sn * xp + c * xq
                for i in range(cols):
                    vp, vq = v[i, p], v[i, q]
                    v[i, p] = c * vp - sn * vq
                    v[i, q] = sn * vp + c * vq
        if not rotated:
            break
    norms = np.zeros((cols, cols))  # on the diagonal, for _sort_by
    for j in range(cols):
        acc = 0.0
        for i in range(rows):
            acc += x[i, j] * x[i, j]
        norms[j, j] = math.sqrt(acc)
    order = np.empty(cols, dtype=np.int64)
    for j in range(cols):
        order[j] = j
    _sort_by(order, norms, -1.0)
    k = cols
    left = np.zeros((rows, rows))  # columns: x's normalised, then a completion
    right = np.zeros((cols, cols))
    for j in range(k):
        o = order[j]
        s[j] = norms[o, o]
        for i in range(cols):
            right[i, j] = v[i, o]
        for i in range(rows):
            left[i, j] = x[i, o] / norms[o, o] if norms[o, o] > 0 else 0.0
    filled = 0
    while filled < k and norms[order[filled], order[filled]] > 0:
        filled += 1
    _complete_basis(left, filled)
    if job == 0:
        return 0
    # a = left diag(s) right^T (tall), or a^T = that (wide)
    uu, vv = (right, left) if wide else (left, right)
    ucols = u.shape[1]
    for i in range(m):
        for j in range(ucols):
            u[i, j] = uu[i, j]
    for i in range(vh.shape[0]):
        for j in range(n):
            vh[i, j] = vv[j, i]
    return 0


@njit(nogil=True, error_model="numpy")
def _loops_eigh(a, w, v, vectors):
    """The symmetric part S of a shifted to S + c I (c above its spectral radius) is
    positive definite, so its singular vectors are S's eigenvectors and its singular
    values S's eigenvalues plus c: one Jacobi routine (one compile) serves both."""
    n = a.shape[0]
    shifted = np.empty((n, n))
    _symmetric_part(shifted, a.astype(np.float64), _NO)
    c = 1.0
    for i in range(n):
        row = 0.0
        for j in range(n):
            row += abs(shifted[i, j])
        c = max(c, 2 * row)
    for i in range(n):
        shifted[i, i] += c
    s = np.empty(n)
    u = np.empty((n, n))
    vh = np.empty((n, n))
    _loops_svd(shifted, s, u, vh, np.int64(1))
    for j in range(n):  # ascending
        w[j] = s[n - 1 - j] - c
        if vectors:
            for i in range(n):
                v[i, j] = u[i, n - 1 - j]
    return 0


@njit(nogil=True, error_model="numpy")
def _loops_qr(a, q, r, complete, want_q):
    """Householder QR with LAPACK's reflector signs (dlarfg), so R and Q match LAPACK's."""
    m, n = a.shape
    k = min(m, n)
    x = np.empty((m, n))
    for i in range(m):
        for j in range(n):
            x[i, j] = a[i, j]
    vs = np.zeros((k, m))
    taus = np.zeros(k)
    for j in range(k):
        alpha = x[j, j]
        xnorm = 0.0
        for i in range(j + 1, m):
            xnorm += x[i, j] * x[i, j]
        xnorm = math.sqrt(xnorm)
        if xnorm == 0:
            continue
        beta = -math.copysign(math.sqrt(alpha * alpha + xnorm * xnorm), alpha)
        taus[j] = (beta - alpha) / beta
        vs[j, j] = 1.0
        for i in range(j + 1, m):
            vs[j, i] = x[i, j] / (alpha - beta)
        for c in range(j, n):  # x = (I - tau v v^T) x
            d = 0.0
            for i in range(j, m):
                d += vs[j, i] * x[i, c]
            for i in range(j, m):
                x[i, c] -= taus[j] * vs[j, i] * d
    rrows = r.shape[0]
    for i in range(rrows):
        for c in range(n):
            r[i, c] = x[i, c] if c >= i else 0.0
    if want_q:
        qcols = q.shape[1]
        qq = np.zeros((m, qcols))
        for i in range(min(m, qcols)):
            qq[i, i] = 1.0
        for j in range(k - 1, -1, -1):
            if taus[j] == 0:
                continue
            for c in range(qcols):
                d = 0.0
                for i in range(j, m):
                    d += vs[j, i] * qq[i, c]
                for i in range(j, m):
                    qq[i, c] -= taus[j] * vs[j, i] * d
        for i in range(m):
            for c in range(qcols):
                q[i, c] = qq[i, c]
    return 0


# ------------------------------------------------------ pinv and expm


@njit(nogil=True, error_model="numpy")
def _loops_gemm(out, a, b, transpose_a, transpose_b):
    """out = op(a) @ op(b) by loops (float64 accumulation)."""
    m, n = out.shape
    k = a.shape[0] if transpose_a else a.shape[1]
    for i in range(m):
        for j in range(n):
            acc = 0.0
            for p in range(k):
                acc += (a[p, i] if transpose_a else a[i, p]) * (b[j, p] if transpose_b else b[p, j])
            out[i, j] = acc


if LAPACK:
    @njit(nogil=True, error_model="numpy")
    def _lapack_gemm(out, a, b, transpose_a, transpose_b):
        """out = op(a) @ op(b) by BLAS gemm, on C arrays (the Fortran view computes out^T)."""
        m, n = out.shape
        k = a.shape[0] if transpose_a else a.shape[1]
        if m == 0 or n == 0:
            return
        if k == 0:
            _fill(out, 0.0)
            return
        lda = a.shape[1]
        ldb = b.shape[1]
        previous = _threads(m * n * k)
        _gemm(_T if transpose_b else _N, _T if transpose_a else _N, n, m, k, 1.0, b, ldb, a, lda, 0.0, out, n)
        _restore(previous)


def _make_pinv(svd, gemm):
    @njit(nogil=True, error_model="numpy")
    def pinv(out, a, rcond):
        """np.linalg.pinv of one matrix: V diag(1/s) U^T over the singular values > rcond * max."""
        m, n = a.shape
        k = min(m, n)
        s = np.empty(k, dtype=a.dtype)
        u = np.empty((m, k), dtype=a.dtype)
        vh = np.empty((k, n), dtype=a.dtype)
        info = svd(a, s, u, vh, np.int64(1))
        if info != 0:
            return info
        largest = 0.0
        for j in range(k):  # a loop: np.max compiles in seconds
            largest = max(largest, s[j])
        cutoff = rcond * largest
        for j in range(k):
            inv = 1 / s[j] if s[j] > cutoff else 0.0
            for i in range(m):
                u[i, j] *= inv  # u diag(1/s)
        gemm(out, vh, u, _YES, _YES)  # out (n x m) = vh^T (u diag(1/s))^T
        return 0

    return pinv


_products_of_others = njit(nogil=True, error_model="numpy")(products_of_others)
_cofactor_tangent_core = njit(nogil=True, error_model="numpy")(cofactor_tangent_core)


@njit(nogil=True, error_model="numpy")
def _small_product(x, y, out):
    """out = x @ y by plain loops (views such as u.T welcome): the cofactors' products, run
    only for singular batch elements."""
    n, m, p = x.shape[0], x.shape[1], y.shape[1]
    for i in range(n):
        for j in range(p):
            total = 0.0
            for k in range(m):
                total += x[i, k] * y[k, j]
            out[i, j] = total


def _make_cofactors(svd, lu, slogdet):
    @njit(nogil=True, error_model="numpy")
    def cofactors(out, a, e, along):
        """The cofactor matrix of one matrix (the transposed adjugate; the private op
        ``singular_cofactors``), or with ``along`` its derivative along e: from a = U diag(s)
        Vh, det(U) det(Vh) U C Vh with C = diag(prod of the other singular values), or C =
        d cof(diag(s))[U^T e Vh^T]; no inverse (a is singular where it is called)."""
        n = a.shape[0]
        for i in range(n):
            for j in range(n):
                if not np.isfinite(a[i, j]):  # LU finds a NaN matrix singular; no SVD converges
                    out.fill(np.nan)
                    return 0
        s = np.empty(n, dtype=a.dtype)
        u = np.empty((n, n), dtype=a.dtype)
        vh = np.empty((n, n), dtype=a.dtype)
        info = svd(a, s, u, vh, np.int64(1))
        if info != 0:
            return info
        sign = 1.0
        piv = np.empty(n, dtype=LAPACK_INT)
        for factor in (u, vh):  # orthogonal: det is +-1
            work = factor.copy()
            sign *= slogdet(work, piv, lu(work, piv))[0]
        core = np.zeros((n, n), dtype=a.dtype)
        work = np.empty((n, n), dtype=a.dtype)
        if along:
            _small_product(e, vh.T, work)
            _small_product(u.T, work, core)  # W = U^T e Vh^T
            q = np.empty((n, n), dtype=a.dtype)  # q[i, k] = prod_{l != i, k} s_l
            for i in range(n):
                q[i] = _products_of_others(s, i)
            _cofactor_tangent_core(core, q)
        else:
            others = _products_of_others(s, -1)  # prod_{j != k} s_j, exponents apart
            for k in range(n):
                core[k, k] = others[k]
        _small_product(core, vh, work)
        _small_product(u, work, out)
        for i in range(n):
            for j in range(n):
                out[i, j] *= sign
        return 0

    return cofactors


_PADE = {
    3: (120.0, 60.0, 12.0, 1.0),
    5: (30240.0, 15120.0, 3360.0, 420.0, 30.0, 1.0),
    7: (17297280.0, 8648640.0, 1995840.0, 277200.0, 25200.0, 1512.0, 56.0, 1.0),
    9: (17643225600.0, 8821612800.0, 2075673600.0, 302702400.0, 30270240.0, 2162160.0, 110880.0, 3960.0, 90.0, 1.0),
    13: (64764752532480000.0, 32382376266240000.0, 7771770303897600.0, 1187353796428800.0, 129060195264000.0,
         10559470521600.0, 670442572800.0, 33522128640.0, 1323241920.0, 40840800.0, 960960.0, 16380.0, 182.0, 1.0),
}
_THETA = np.array([1.495585217958292e-2, 2.539398330063230e-1, 9.504178996162932e-1, 2.097847961257068e0,
                   5.371920351148152e0])
# Per level (Pade 3, 5, 7, 9, 13), per sum (u, v): [0] the coefficients of x^2, x^4.. in the
# first sum, [1] those of the second (Pade 13), [2][0] the identity's.
_PADE_POWERS = np.array([1, 2, 3, 4, 3])
_PADE_TABLE = np.zeros((5, 2, 3, 4))
for _level, _m in enumerate((3, 5, 7, 9, 13)):
    _b = _PADE[_m]
    for _which, _offset in ((0, 1), (1, 0)):
        _PADE_TABLE[_level, _which, 2, 0] = _b[_offset]
        for _t in range(_PADE_POWERS[_level]):
            _PADE_TABLE[_level, _which, 0, _t] = _b[_offset + 2 * _t + 2]
            if _m == 13:
                _PADE_TABLE[_level, _which, 1, _t] = _b[_offset + 2 * _t + 8]


def _make_expm(lu, lu_solve, gemm):
    # Loops, not array expressions: Numba compiles each array expression into its own loop nest.
    @njit(nogil=True, error_model="numpy")
    def expm_matrix(a):
        """Pade approximation with scaling and squaring (Higham 2005), as the reference's
        ``expm_matrix`` (same sums in the same order), in float64.  Few call sites: LLVM
        inlines each one, and compile time grows faster than the code."""
        n = a.shape[0]
        norm = 0.0
        for j in range(n):
            col = 0.0
            for i in range(n):
                col += abs(a[i, j])
            norm = max(norm, col)
        r = np.empty((n, n))
        if not math.isfinite(norm):
            _fill(r, np.nan)
            return r
        level = 4
        for k in range(4):
            if norm <= _THETA[k]:
                level = k
                break
        s = 0
        x = a.copy()
        if level == 4 and norm > _THETA[4]:
            s = max(0, int(math.ceil(math.log2(norm / _THETA[4]))))
            scale = 2.0 ** s
            for i in range(n):
                for j in range(n):
                    x[i, j] = a[i, j] / scale
        # u = x (U1 + x^6 U2), v = V1 + x^6 V2: U1 = sum b[odd] x^(2j+2) + b1 I, U2 and V2 only for Pade 13
        b = _PADE_TABLE[level]
        count = _PADE_POWERS[level]
        powers = np.empty((count, n, n))
        gemm(powers[0], x, x, _NO, _NO)
        for j in range(1, count):
            gemm(powers[j], powers[j - 1], powers[0], _NO, _NO)
        u = np.empty((n, n))
        v = np.empty((n, n))
        first = np.empty((n, n))
        second = np.empty((n, n))
        product = np.empty((n, n))
        for which in range(2):  # 0: u's sum, 1: v's sum
            dest = first if which == 0 else v
            for i in range(n):
                for j in range(n):
                    acc = 0.0
                    for t in range(count):
                        acc += b[which, 0, t] * powers[t, i, j]
                    dest[i, j] = acc + (b[which, 2, 0] if i == j else 0.0)
            if level == 4:
                for i in range(n):
                    for j in range(n):
                        acc = 0.0
                        for t in range(count):
                            acc += b[which, 1, t] * powers[t, i, j]
                        second[i, j] = acc
                gemm(product, powers[2], second, _NO, _NO)
                for i in range(n):
                    for j in range(n):
                        dest[i, j] += product[i, j]
        gemm(u, x, first, _NO, _NO)
        # r = (v - u)^-1 (v + u): the C buffers hold A; lu_solve solves with A
        for i in range(n):
            for j in range(n):
                product[i, j] = v[i, j] - u[i, j]
                r[i, j] = v[i, j] + u[i, j]
        piv = np.empty(n, dtype=LAPACK_INT)
        if lu(product, piv) > 0:
            _fill(r, np.nan)
            return r
        lu_solve(product, piv, r, _NO)
        for _ in range(s):
            gemm(product, r, r, _NO, _NO)
            r, product = product, r
        return r

    @njit(nogil=True, error_model="numpy")
    def expm(out, c):
        """exp of the multi-dual matrix c (P, n, n) into out (P, n, n): the first block
        column of the exponential of its (P n)-square block matrix."""
        parts, n = c.shape[0], c.shape[1]
        big = np.zeros((parts * n, parts * n))
        for u in range(parts):
            t = u
            while True:
                src = u & ~t
                for i in range(n):
                    for j in range(n):
                        big[u * n + i, t * n + j] = c[src, i, j]
                if t == 0:
                    break
                t = (t - 1) & u
        e = expm_matrix(big)
        for u in range(parts):
            for i in range(n):
                for j in range(n):
                    out[u, i, j] = e[u * n + i, j]
        return 0

    return expm


# ------------------------------------------------------------------ exports

_HELPERS = ("cholesky", "trisolve", "cho_solve", "cho_inverse", "lu", "lu_solve", "slogdet", "eigh", "svd", "qr",
            "pinv", "expm", "gemm", "cofactors")
__all__ = ["KernelLinAlgError", "LAPACK_INT"]
_loops_pinv = _make_pinv(_loops_svd, _loops_gemm)
_loops_expm = _make_expm(_loops_lu, _loops_lu_solve, _loops_gemm)
_loops_cofactors = _make_cofactors(_loops_svd, _loops_lu, _loops_slogdet)
if LAPACK:
    _lapack_cofactors = _make_cofactors(_lapack_svd, _lapack_lu, _lapack_slogdet)
    _lapack_pinv = _make_pinv(_lapack_svd, _lapack_gemm)
    _lapack_expm = _make_expm(_lapack_lu, _lapack_lu_solve, _lapack_gemm)
for _name in _HELPERS:  # kernels name the implementation (and its integer width) they were built for
    _source = globals()[f"_lapack_{_name}" if LAPACK else f"_loops_{_name}"]
    globals()[HELPER_PREFIX + _name] = _source
    __all__.append(HELPER_PREFIX + _name)
