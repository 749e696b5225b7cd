"""``one_plus_mul_log`` (1 + y log x, accurate where it cancels) as LLVM IR.

``ops.precise_log`` writes the algorithm once over a few lane operations; ``IRLanes``
emits them as LLVM IR over vectors of any width or scalars, in the order the NumPy
reference runs them (no fast-math, no contraction: the same bits).  The exact error of a
product is one ``llvm.fma`` (NumPy: Dekker's split; both exact), the table of
log(128 / t) two internal constant arrays, and the rare second tier a branch taken when
any lane needs it.  Used three ways:

- ``vector_math``'s pass over whole arrays (``_vm_one_plus_mul_log``), where libmvec is used:
  the branch-free first tier runs at the vector width (8 doubles with AVX-512);
- ``scalar_ir``'s IR regions (``IR_OPS["one_plus_mul_log"]``), one element at a time;
- ``_one_plus_mul_log(y, x)``, a jitted scalar for kernels' Python statements.
"""

from __future__ import annotations

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.extending import intrinsic

from ..ops import precise_log

F64, I64 = ir.DoubleType(), ir.IntType(64)


class _Value:
    """An LLVM value with Python's arithmetic operators (floats become constants)."""

    __slots__ = ("lanes", "v")

    def __init__(self, lanes, v):
        self.lanes, self.v = lanes, v

    def _binary(self, other, name, swap=False):
        a, b = self.v, self.lanes.value(other)
        if swap:
            a, b = b, a
        return _Value(self.lanes, getattr(self.lanes.b, name)(a, b))

    def __add__(self, other):
        return self._binary(other, "fadd")

    def __radd__(self, other):
        return self._binary(other, "fadd", swap=True)

    def __sub__(self, other):
        return self._binary(other, "fsub")

    def __rsub__(self, other):
        return self._binary(other, "fsub", swap=True)

    def __mul__(self, other):
        return self._binary(other, "fmul")

    def __rmul__(self, other):
        return self._binary(other, "fmul", swap=True)

    def __truediv__(self, other):
        return self._binary(other, "fdiv")

    def __rtruediv__(self, other):
        return self._binary(other, "fdiv", swap=True)


class IRLanes:
    """precise_log's lane operations as LLVM IR on ``width`` doubles (1: scalars)."""

    def __init__(self, builder, width: int):
        self.b, self.width = builder, width
        self.type = ir.VectorType(F64, width) if width > 1 else F64
        self.int_type = ir.VectorType(I64, width) if width > 1 else I64
        self.bool_type = ir.VectorType(ir.IntType(1), width) if width > 1 else ir.IntType(1)

    def constant(self, number, element=F64):
        scalar = ir.Constant(element, number)
        return ir.Constant(ir.VectorType(element, self.width), [scalar] * self.width) if self.width > 1 else scalar

    def value(self, x):
        if isinstance(x, _Value):
            return x.v
        return x if isinstance(x, ir.Value) else self.constant(float(x))

    def wrap(self, v):
        return _Value(self, v)

    def _intrinsic(self, name, *args):
        suffix = f"v{self.width}f64" if self.width > 1 else "f64"
        full = f"{name}.{suffix}"
        fn = self.b.module.globals.get(full)
        if fn is None:
            fn = ir.Function(self.b.module, ir.FunctionType(self.type, [self.type] * len(args)), full)
        return _Value(self, self.b.call(fn, [self.value(a) for a in args]))

    def _compare(self, op, a, c):
        return self.b.fcmp_ordered(op, self.value(a), self.value(c))

    def less(self, a, c):
        return self._compare("<", a, c)

    def greater(self, a, c):
        return self._compare(">", a, c)

    def equal(self, a, c):
        return self._compare("==", a, c)

    def logical_and(self, p, q):
        return self.b.and_(p, q)

    def where(self, mask, a, c):
        return _Value(self, self.b.select(mask, self.value(a), self.value(c)))

    def abs(self, a):
        return self._intrinsic("llvm.fabs", a)

    def rint(self, a):
        return self._intrinsic("llvm.rint", a)

    def product_error(self, a, c, p):
        return self._intrinsic("llvm.fma", a, c, self.b.fneg(self.value(p)))

    def frexp(self, x):
        """(m, e) with x = m 2**e, m in [1/2, 1), for a positive normal x (NumPy's frexp)."""
        b = self.b
        bits = b.bitcast(self.value(x), self.int_type)
        exponent = b.and_(b.lshr(bits, self.constant(52, I64)), self.constant(0x7FF, I64))
        mantissa = b.or_(b.and_(bits, self.constant((1 << 52) - 1, I64)), self.constant(0x3FE << 52, I64))
        e = b.sitofp(b.sub(exponent, self.constant(1022, I64)), self.type)
        return _Value(self, b.bitcast(mantissa, self.type)), _Value(self, e)

    def table(self, values, t):
        """values[t - TABLE_START] for each lane (an internal constant array of the module)."""
        b = self.b
        name = "_sd_precise_log_" + ("hi" if values is precise_log.TABLE_HI else "lo")
        array_type = ir.ArrayType(F64, len(values))
        table = b.module.globals.get(name)
        if table is None:
            table = ir.GlobalVariable(b.module, array_type, name)
            table.initializer = ir.Constant(array_type, [float(v) for v in values])
            table.global_constant = True
            table.linkage = "internal"
        index = b.sub(b.fptosi(self.value(t), self.int_type), self.constant(precise_log.TABLE_START, I64))
        if self.width == 1:
            return _Value(self, b.load(b.gep(table, [ir.Constant(I64, 0), index], inbounds=True)))
        result = ir.Constant(self.type, ir.Undefined)
        for lane in range(self.width):
            at = b.extract_element(index, ir.Constant(ir.IntType(32), lane))
            element = b.load(b.gep(table, [ir.Constant(I64, 0), at], inbounds=True))
            result = b.insert_element(result, element, ir.Constant(ir.IntType(32), lane))
        return _Value(self, result)

    def _any(self, mask):
        b = self.b
        if self.width == 1:
            return mask
        return b.icmp_unsigned("!=", b.bitcast(mask, ir.IntType(self.width)), ir.Constant(ir.IntType(self.width), 0))

    def refine(self, mask, form, inputs, value):
        """value, with form(*inputs) where mask holds, computed only when a lane needs it."""
        b = self.b
        before = b.block
        with b.if_then(self._any(mask), likely=False):
            refined = self.where(mask, form(*inputs), value).v
            inside = b.block
        merged = b.phi(self.type)
        merged.add_incoming(value.v, before)
        merged.add_incoming(refined, inside)
        return _Value(self, merged)


def emit(builder, y, x, width: int, dtype: str = "float64"):
    """1 + y log x for LLVM values y, x of ``dtype`` (scalars, or vectors of ``width``);
    float32 is computed in float64 and rounded, as the reference does."""
    lanes = IRLanes(builder, width)
    if dtype == "float32":
        y, x = builder.fpext(y, lanes.type), builder.fpext(x, lanes.type)
    value = precise_log.one_plus_mul_log(lanes, lanes.wrap(y), lanes.wrap(x)).v
    if dtype == "float32":
        value = builder.fptrunc(value, ir.VectorType(ir.FloatType(), width) if width > 1 else ir.FloatType())
    return value


@intrinsic
def _one_plus_mul_log_scalar(typingctx, y, x):
    if not (y == types.float64 and x == types.float64):
        return None

    def codegen(context, builder, signature, args):
        return emit(builder, args[0], args[1], 1)

    return types.float64(y, x), codegen


@njit(nogil=True, error_model="numpy")
def _one_plus_mul_log(y, x):
    return _one_plus_mul_log_scalar(np.float64(y), np.float64(x))


__all__ = ["_one_plus_mul_log"]
