"""Transcendental functions over whole arrays at SIMD speed: glibc's libmvec.

Numba compiles ``math.tanh(x[i])`` in a loop to one scalar libm call per element,
about 10x slower than NumPy's SIMD ufuncs, and LLVM 20 vectorises only exp, log,
sin, cos and pow through its libmvec table.  glibc 2.22+ ships vector versions of
most of libm (``_ZGVeN8v_tanh``: 8 doubles in a zmm register, AVX-512;
``_ZGVdN4v_tanh``: 4, AVX2).  ``_vm_<fn>(src, dst)`` is a Numba intrinsic whose code
loads ``width`` elements at a time, calls the vector symbol, stores, and finishes the
remainder with scalar libm calls: NumPy's per-element speed, no object mode, and
cacheable (the symbol is resolved by name when a cached kernel is loaded, libmvec
being loaded into the process by this module).

Measured on this machine over 1e5 doubles (see docs/architecture.md): tanh 2,207 us
as a scalar loop, 100 us with ``_ZGVeN8v_tanh``, 84 us for ``np.tanh``.

Where libmvec, AVX2 or AVX-512 is missing (other libcs, other CPUs), or Numba is
told to compile for a generic CPU (``NUMBA_CPU_NAME``: a vector argument would then
not be passed in the register the library expects), ``CHOICE.width`` is 0 and kernels
keep their scalar loops.  ``SYMDIFF_VECTOR_MATH=off`` does the same.  The choice is
written into every kernel that uses it (``_SD_VECTOR_MATH = ...``), so it is part of
the cache key.  Nothing here changes a process-wide LLVM option: the user's own
Numba code compiles as before.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
from typing import NamedTuple

ENV = "SYMDIFF_VECTOR_MATH"

# op name -> libm name, for the functions libmvec provides.
LIBM_NAME = {
    "exp": "exp", "log": "log", "sin": "sin", "cos": "cos", "tan": "tan", "tanh": "tanh", "expm1": "expm1",
    "log1p": "log1p", "arcsin": "asin", "arccos": "acos", "arctan": "atan", "sinh": "sinh", "cosh": "cosh",
    "arcsinh": "asinh", "arccosh": "acosh", "arctanh": "atanh", "log2": "log2", "log10": "log10",
    "cbrt": "cbrt", "erf": "erf", "erfc": "erfc",
}


class Choice(NamedTuple):
    """Which vector variants kernels call: ``width`` doubles per call (0: none), the
    ISA letter of glibc's vector ABI names, and a tag for the cache key."""

    width: int
    letter: str
    tag: str
    library: str


NONE = Choice(0, "", "scalar libm", "")

# (CPU feature, vector ABI letter, doubles per vector), widest first.
_ISAS = (("avx512f", "e", 8), ("avx2", "d", 4))


def _choose() -> Choice:
    if os.environ.get(ENV, "").strip().lower() in ("off", "0", "no", "false", "scalar"):
        return NONE
    if os.environ.get("NUMBA_CPU_NAME") or os.environ.get("NUMBA_CPU_FEATURES"):
        return NONE  # kernels compiled for another CPU: vector arguments would not be passed as libmvec expects
    path = "libmvec.so.1"  # glibc's name: ctypes.util.find_library runs ldconfig in a subprocess (6 ms)
    try:
        try:
            library = ctypes.CDLL(path)
        except OSError:
            path = ctypes.util.find_library("mvec")
            if path is None:
                return NONE
            library = ctypes.CDLL(path)
        import llvmlite.binding as llvm

        features = llvm.get_host_cpu_features()
    except (OSError, RuntimeError, ImportError):
        return NONE
    for feature, letter, width in _ISAS:
        if not features.get(feature):
            continue
        names = [f"_ZGV{letter}N{width}v_{name}" for name in set(LIBM_NAME.values())]
        names += [f"_ZGV{letter}N{2 * width}v_{name}f" for name in set(LIBM_NAME.values())]
        if all(hasattr(library, n) for n in names):
            llvm.load_library_permanently(path)  # cached kernels resolve the symbols by name
            return Choice(width, letter, f"libmvec {feature} x{width}", path)
    return NONE


CHOICE = _choose()


def available() -> bool:
    """Whether kernels call libmvec's vector functions on this machine.

    >>> isinstance(available(), bool)
    True
    """
    return CHOICE.width > 0


class _Lanes:
    """Instruction helpers over values that are either vectors of ``width`` lanes or
    scalars (the remainder loop), so one recipe serves both."""

    def __init__(self, builder, element, width: int, suffix: str):
        from llvmlite import ir

        self.ir, self.b, self.element, self.width, self.suffix = ir, builder, element, width, suffix
        self.type = ir.VectorType(element, width) if width > 1 else element

    def call(self, libm_name: str, value):
        """libm_name(value): the vector symbol on vectors, scalar libm on scalars."""
        ir = self.ir
        name = (f"_ZGV{CHOICE.letter}N{self.width}v_{libm_name}{self.suffix}" if self.width > 1
                else f"{libm_name}{self.suffix}")
        fn = self.b.module.globals.get(name)
        if fn is None:
            fn = ir.Function(self.b.module, ir.FunctionType(self.type, [self.type]), name)
        return self.b.call(fn, [value])

    def const(self, number: float):
        scalar = self.ir.Constant(self.element, number)
        return self.ir.Constant(self.type, [scalar] * self.width) if self.width > 1 else scalar

    def fabs(self, value):
        ir = self.ir
        bits = "f32" if isinstance(self.element, ir.FloatType) else "f64"
        name = f"llvm.fabs.v{self.width}{bits}" if self.width > 1 else f"llvm.fabs.{bits}"
        fn = self.b.module.globals.get(name)
        if fn is None:  # llvmlite's declare_intrinsic cannot name vector overloads
            fn = ir.Function(self.b.module, ir.FunctionType(self.type, [self.type]), name)
        return self.b.call(fn, [value])


# What each pass computes per element, as instructions over _Lanes.  A transcendental op
# is one libm call; sigmoid, softplus and sech2 are their reference formulas (exp(-|x|)
# never overflows), so the vector pass computes what ``_sigmoid``/``_softplus``/``_sech2`` compute.
def _libm_recipe(libm_name: str):
    return lambda lanes, x: lanes.call(libm_name, x)


def _sigmoid_recipe(lanes, x):
    b = lanes.b
    e = lanes.call("exp", b.fneg(lanes.fabs(x)))
    denominator = b.fadd(lanes.const(1.0), e)
    positive = b.fcmp_ordered(">=", x, lanes.const(0.0))
    return b.select(positive, b.fdiv(lanes.const(1.0), denominator), b.fdiv(e, denominator))


def _softplus_recipe(lanes, x):
    b = lanes.b  # max(x, 0) + log1p(exp(-|x|)), NumPy's logaddexp(0, x)
    tail = lanes.call("log1p", lanes.call("exp", b.fneg(lanes.fabs(x))))
    positive = b.fcmp_ordered(">", x, lanes.const(0.0))
    return b.fadd(b.select(positive, x, lanes.const(0.0)), tail)


def _sech2_recipe(lanes, x):
    b = lanes.b  # 4e / (1 + e)**2 with e = exp(-2|x|), as ``_sech2``
    e = lanes.call("exp", b.fmul(lanes.const(-2.0), lanes.fabs(x)))
    one_plus = b.fadd(lanes.const(1.0), e)
    return b.fdiv(b.fmul(lanes.const(4.0), e), b.fmul(one_plus, one_plus))


def _one_plus_mul_log_recipe(lanes, y, x):
    from . import precise_log  # 1 + y log x in double-double where it cancels (ops.precise_log)

    single = not isinstance(lanes.element, lanes.ir.DoubleType)
    return precise_log.emit(lanes.b, y, x, lanes.width, "float32" if single else "float64")


RECIPES = {op: _libm_recipe(name) for op, name in LIBM_NAME.items()}
RECIPES.update(sigmoid=_sigmoid_recipe, softplus=_softplus_recipe, sech2=_sech2_recipe,
               one_plus_mul_log=_one_plus_mul_log_recipe)
ARITY = {"one_plus_mul_log": 2}  # the others: 1


def _make_intrinsic(op_name: str):
    """``_vm_<op>(src, ..., dst)``: dst[...] = op(src[...], ...) over C-contiguous arrays of one
    float dtype and the same size: whole vectors first, then the remainder as scalars."""
    from llvmlite import ir
    from numba import types
    from numba.core import cgutils
    from numba.extending import intrinsic

    recipe = RECIPES[op_name]

    def codegen(context, builder, signature, args):
        *source_types, dst_type = signature.args
        sources = [context.make_array(t)(context, builder, a) for t, a in zip(source_types, args)]
        target = context.make_array(dst_type)(context, builder, args[-1])
        single = dst_type.dtype == types.float32
        element = ir.FloatType() if single else ir.DoubleType()
        width = CHOICE.width * (2 if single else 1)
        suffix = "f" if single else ""
        vectors, scalars = _Lanes(builder, element, width, suffix), _Lanes(builder, element, 1, suffix)
        n = target.nitems
        intp = n.type
        whole = builder.mul(builder.udiv(n, ir.Constant(intp, width)), ir.Constant(intp, width))
        pointer_type = vectors.type.as_pointer()
        with cgutils.for_range_slice(builder, ir.Constant(intp, 0), whole, ir.Constant(intp, width),
                                     intp) as (i, _):
            loads = [builder.load(builder.bitcast(builder.gep(s.data, [i]), pointer_type), align=1) for s in sources]
            result = recipe(vectors, *loads)
            builder.store(result, builder.bitcast(builder.gep(target.data, [i]), pointer_type), align=1)
        with cgutils.for_range_slice(builder, whole, n, ir.Constant(intp, 1), intp) as (i, _):
            value = recipe(scalars, *(builder.load(builder.gep(s.data, [i])) for s in sources))
            builder.store(value, builder.gep(target.data, [i]))
        return context.get_dummy_value()

    def typed(*arrays):
        if not (all(isinstance(a, types.Array) for a in arrays) and len({a.dtype for a in arrays}) == 1
                and arrays[0].dtype in (types.float64, types.float32)):
            return None
        return types.void(*arrays), codegen

    if ARITY.get(op_name, 1) == 2:
        def apply(typingctx, first, second, dst):
            return typed(first, second, dst)
    else:
        def apply(typingctx, src, dst):
            return typed(src, dst)

    apply.__name__ = f"_vm_{op_name}"
    return intrinsic(apply)


__all__ = []
if available():
    for _op in sorted(RECIPES):
        globals()[f"_vm_{_op}"] = _make_intrinsic(_op)
        __all__.append(f"_vm_{_op}")
