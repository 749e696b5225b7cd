"""Long straight-line scalar regions as LLVM IR inside the Numba kernel.

Numba's compile time for one basic block grows superlinearly with its length (the
300-layer chain as Python statements: 6.5 s; 1000 layers: 173 s), while LLVM
itself compiles the same code in a fraction of a second.  So a long run of scalar
statements is handed to Numba as ONE call to an ``@intrinsic`` whose code
generator writes the run's instructions straight into the kernel's LLVM function:
Numba's front end sees one call, LLVM optimises the whole kernel, and Numba's
cache stores the result like any other kernel.

Each elementwise op that can appear in a region has an entry in ``IR_OPS``,
``emit(builder, args, dtypes, out_dtype, cast_to) -> value``; the semantics follow
NumPy (NaN propagates through maximum/minimum/sign, comparisons are IEEE).
"""

from __future__ import annotations

import numpy as np
from llvmlite import ir

F64, F32, I64, I1 = ir.DoubleType(), ir.FloatType(), ir.IntType(64), ir.IntType(1)
LLVM_TYPE = {"float64": F64, "float32": F32, "int64": I64, "bool": I1}
FLOATS = ("float64", "float32")


def _const(dtype, value):
    return ir.Constant(LLVM_TYPE[dtype], value)


def _intrinsic(b, name, ty, args):
    return b.call(b.module.declare_intrinsic(name, [ty]), args)


def _libm(b, name, ty, args):
    fname = name if ty == F64 else name + "f"
    fn = b.module.globals.get(fname)
    if fn is None:
        fn = ir.Function(b.module, ir.FunctionType(ty, [ty] * len(args)), fname)
    return b.call(fn, args)


def _unary_intrinsic(name):
    def emit(b, args, dtypes, out, cast_to):
        return _intrinsic(b, name, LLVM_TYPE[out], args)

    return emit


def _unary_libm(name):
    def emit(b, args, dtypes, out, cast_to):
        return _libm(b, name, LLVM_TYPE[out], args)

    return emit


def _arith(float_fn, int_fn):
    def emit(b, args, dtypes, out, cast_to):
        return getattr(b, float_fn if out in FLOATS else int_fn)(*args)

    return emit


def _neg(b, args, dtypes, out, cast_to):
    (x,) = args
    return b.fneg(x) if out in FLOATS else b.neg(x)


def _abs(b, args, dtypes, out, cast_to):
    (x,) = args
    if out in FLOATS:
        return _intrinsic(b, "llvm.fabs", LLVM_TYPE[out], [x])
    return b.select(b.icmp_signed("<", x, _const(out, 0)), b.neg(x), x)


def _sign(b, args, dtypes, out, cast_to):
    (x,) = args
    zero, one, minus = _const(out, 0), _const(out, 1), _const(out, -1)
    if out in FLOATS:  # NaN -> NaN ("x itself"); -0.0 -> +0.0 as in NumPy (x + 0.0)
        tie = b.fadd(x, zero)
        return b.select(b.fcmp_ordered(">", x, zero), one, b.select(b.fcmp_ordered("<", x, zero), minus, tie))
    return b.select(b.icmp_signed(">", x, zero), one, b.select(b.icmp_signed("<", x, zero), minus, zero))


def _sigmoid(b, args, dtypes, out, cast_to):
    (x,) = args
    ty = LLVM_TYPE[out]
    e = _intrinsic(b, "llvm.exp", ty, [b.fneg(_intrinsic(b, "llvm.fabs", ty, [x]))])
    denominator = b.fadd(_const(out, 1.0), e)
    positive = b.fdiv(_const(out, 1.0), denominator)
    negative = b.fdiv(e, denominator)
    return b.select(b.fcmp_ordered(">=", x, _const(out, 0.0)), positive, negative)


def _sech2(b, args, dtypes, out, cast_to):
    (x,) = args
    ty = LLVM_TYPE[out]
    minus_twice = b.fmul(_const(out, -2.0), _intrinsic(b, "llvm.fabs", ty, [x]))
    e = _intrinsic(b, "llvm.exp", ty, [minus_twice])
    one_plus = b.fadd(_const(out, 1.0), e)
    return b.fdiv(b.fmul(_const(out, 4.0), e), b.fmul(one_plus, one_plus))


def _softplus(b, args, dtypes, out, cast_to):
    (x,) = args
    ty = LLVM_TYPE[out]
    minus_x = b.fneg(x)
    above = b.fadd(x, _libm(b, "log1p", ty, [_intrinsic(b, "llvm.exp", ty, [minus_x])]))
    below = _libm(b, "log1p", ty, [_intrinsic(b, "llvm.exp", ty, [x])])
    return b.select(b.fcmp_ordered(">", x, _const(out, 0.0)), above, below)


def _extremum(float_op, int_op):
    def emit(b, args, dtypes, out, cast_to):
        x, y = args
        if out in FLOATS:  # x wins when it is strictly the extremum or NaN; else y (ties and NaN in y), as NumPy
            wins = b.or_(b.fcmp_ordered(float_op, x, y), b.fcmp_unordered("uno", x, x))
        else:
            wins = b.icmp_signed(int_op, x, y)
        return b.select(wins, x, y)

    return emit


def _compare(op):
    def emit(b, args, dtypes, out, cast_to):
        x, y = args
        if dtypes[0] in FLOATS:
            return b.fcmp_unordered(op, x, y) if op == "!=" else b.fcmp_ordered(op, x, y)
        if dtypes[0] == "bool":
            return b.icmp_unsigned(op, x, y)
        return b.icmp_signed(op, x, y)

    return emit


def _where(b, args, dtypes, out, cast_to):
    c, x, y = args
    return b.select(c, x, y)


def convert(b, value, source: str, target: str):
    """NumPy astype between two of the four dtypes."""
    if source == target:
        return value
    ty = LLVM_TYPE[target]
    if target == "bool":
        if source in FLOATS:
            return b.fcmp_unordered("!=", value, _const(source, 0.0))
        return b.icmp_signed("!=", value, _const(source, 0))
    if source == "bool":
        return b.uitofp(value, ty) if target in FLOATS else b.zext(value, ty)
    if source in FLOATS and target in FLOATS:
        return b.fpext(value, ty) if target == "float64" else b.fptrunc(value, ty)
    if source in FLOATS:
        # fptosi of NaN or of a value out of int64's range is poison, which the optimiser may
        # turn into anything; x86 (and NumPy there) gives INT64_MIN, so select it explicitly.
        in_range = b.and_(b.fcmp_ordered("<", value, _const(source, 2.0 ** 63)),
                          b.fcmp_ordered(">=", value, _const(source, -2.0 ** 63)))
        return b.select(in_range, b.fptosi(value, ty), _const(target, -(2 ** 63)))
    return b.sitofp(value, ty)


def _cast(b, args, dtypes, out, cast_to):
    return convert(b, args[0], dtypes[0], out)


def _intrinsic_of(name, arity):
    """An LLVM intrinsic of ``arity`` operands of the result's type (floor, copysign...)."""

    def emit(b, args, dtypes, out, cast_to):
        ty = LLVM_TYPE[out]
        fn = b.module.declare_intrinsic(name, [ty], ir.FunctionType(ty, [ty] * arity))
        return b.call(fn, args)

    return emit


def _libm_in_double(name):
    """A libm function computed in float64 even for float32 (then rounded), as the
    NumPy reference of erf, erfc and gammaln computes it."""

    def emit(b, args, dtypes, out, cast_to):
        if out == "float64":
            return _libm(b, name, F64, args)
        return b.fptrunc(_libm(b, name, F64, [b.fpext(a, F64) for a in args]), F32)

    return emit


def _logaddexp(exp_name, log_scale, tie_add):
    """NumPy's npy_logaddexp (and logaddexp2): the larger argument plus log1p of the
    exponential of minus the difference; x + tie_add at ties (so inf and -inf ties are
    exact); NaN when the difference is NaN."""

    def emit(b, args, dtypes, out, cast_to):
        x, y = args
        ty = LLVM_TYPE[out]
        difference = b.fsub(x, y)
        minus = b.fneg(difference)

        def log1p_exp(t):
            value = _libm(b, "log1p", ty, [_libm(b, exp_name, ty, [t])])
            return value if log_scale == 1.0 else b.fmul(value, _const(out, log_scale))

        above = b.fadd(x, log1p_exp(minus))
        below = b.fadd(y, log1p_exp(difference))
        result = b.select(b.fcmp_ordered(">", difference, _const(out, 0.0)), above,
                          b.select(b.fcmp_ordered("<=", difference, _const(out, 0.0)), below, difference))
        return b.select(b.fcmp_ordered("==", x, y), b.fadd(x, _const(out, tie_add)), result)

    return emit


def _copysign(b, value, sign_of, ty):
    fn = b.module.declare_intrinsic("llvm.copysign", [ty], ir.FunctionType(ty, [ty, ty]))
    return b.call(fn, [value, sign_of])


def _float_mod(b, args, dtypes, out, cast_to):
    """NumPy's npy_remainder: fmod moved to the divisor's sign; a zero takes y's sign."""
    x, y = args
    ty = LLVM_TYPE[out]
    zero = _const(out, 0.0)
    mod = b.frem(x, y)
    differ = b.xor(b.fcmp_ordered("<", y, zero), b.fcmp_ordered("<", mod, zero))
    moved = b.select(differ, b.fadd(mod, y), mod)
    return b.select(b.fcmp_unordered("!=", mod, zero), moved, _copysign(b, zero, y, ty))


def _float_floor_divide(b, args, dtypes, out, cast_to):
    """NumPy's npy_floor_divide: (x - fmod(x, y)) / y, one less where the remainder moves,
    snapped to the nearest integer; x / y when y is 0."""
    x, y = args
    ty = LLVM_TYPE[out]
    zero, one, half = _const(out, 0.0), _const(out, 1.0), _const(out, 0.5)
    mod = b.frem(x, y)
    div = b.fdiv(b.fsub(x, mod), y)
    differ = b.and_(b.fcmp_unordered("!=", mod, zero),
                    b.xor(b.fcmp_ordered("<", y, zero), b.fcmp_ordered("<", mod, zero)))
    div = b.select(differ, b.fsub(div, one), div)
    floor = b.call(b.module.declare_intrinsic("llvm.floor", [ty], ir.FunctionType(ty, [ty])), [div])
    snapped = b.select(b.fcmp_ordered(">", b.fsub(div, floor), half), b.fadd(floor, one), floor)
    quotient = b.fdiv(x, y)
    result = b.select(b.fcmp_unordered("!=", div, zero), snapped, _copysign(b, zero, quotient, ty))
    return b.select(b.fcmp_ordered("==", y, zero), quotient, result)


def _one_plus_mul_log(b, args, dtypes, out, cast_to):
    from . import precise_log  # 1 + y log x in double-double where it cancels (ops.precise_log)

    return precise_log.emit(b, args[0], args[1], 1, out)


def _binary_libm(name):
    def emit(b, args, dtypes, out, cast_to):
        return _libm(b, name, LLVM_TYPE[out], args)

    return emit


IR_OPS = {
    "neg": _neg,
    "exp": _unary_intrinsic("llvm.exp"),
    "expm1": _unary_libm("expm1"),
    "log": _unary_intrinsic("llvm.log"),
    "log1p": _unary_libm("log1p"),
    "sqrt": _unary_intrinsic("llvm.sqrt"),
    "sin": _unary_intrinsic("llvm.sin"),
    "cos": _unary_intrinsic("llvm.cos"),
    "tan": _unary_libm("tan"),
    "tanh": _unary_libm("tanh"),
    "abs": _abs,
    "sign": _sign,
    "sigmoid": _sigmoid,
    "sech2": _sech2,
    "softplus": _softplus,
    "add": _arith("fadd", "add"),
    "sub": _arith("fsub", "sub"),
    "mul": _arith("fmul", "mul"),
    "div": _arith("fdiv", "sdiv"),
    "pow": lambda b, args, dtypes, out, cast_to: _intrinsic(b, "llvm.pow", LLVM_TYPE[out], args),
    "maximum": _extremum(">", ">="),
    "minimum": _extremum("<", "<="),
    "less": _compare("<"),
    "less_equal": _compare("<="),
    "greater": _compare(">"),
    "greater_equal": _compare(">="),
    "equal": _compare("=="),
    "not_equal": _compare("!="),
    "logical_not": lambda b, args, dtypes, out, cast_to: b.xor(args[0], _const("bool", 1)),
    "logical_and": lambda b, args, dtypes, out, cast_to: b.and_(*args),
    "logical_or": lambda b, args, dtypes, out, cast_to: b.or_(*args),
    "where": _where,
    "cast": _cast,
    "stop_gradient": lambda b, args, dtypes, out, cast_to: args[0],
    "one_plus_mul_log": _one_plus_mul_log,
    # elementwise math (symdiff.ops.math)
    "arcsin": _unary_libm("asin"),
    "arccos": _unary_libm("acos"),
    "arctan": _unary_libm("atan"),
    "arctan2": _binary_libm("atan2"),
    "sinh": _unary_libm("sinh"),
    "cosh": _unary_libm("cosh"),
    "arcsinh": _unary_libm("asinh"),
    "arccosh": _unary_libm("acosh"),
    "arctanh": _unary_libm("atanh"),
    "hypot": _binary_libm("hypot"),
    "log2": _unary_libm("log2"),
    "log10": _unary_libm("log10"),
    "cbrt": _unary_libm("cbrt"),
    "logaddexp": _logaddexp("exp", 1.0, float(np.log(2.0))),
    "logaddexp2": _logaddexp("exp2", float(np.log2(np.e)), 1.0),
    "floor": _intrinsic_of("llvm.floor", 1),
    "ceil": _intrinsic_of("llvm.ceil", 1),
    "trunc": _intrinsic_of("llvm.trunc", 1),
    "rint": _intrinsic_of("llvm.rint", 1),
    "copysign": _intrinsic_of("llvm.copysign", 2),
    "fmod": lambda b, args, dtypes, out, cast_to: b.frem(*args),
    "mod": _float_mod,
    "floor_divide": _float_floor_divide,
    # special functions (symdiff.ops.special) that libm has
    "erf": _libm_in_double("erf"),
    "erfc": _libm_in_double("erfc"),
    "gammaln": _libm_in_double("lgamma"),
}

# Elementwise ops that have no LLVM spelling: their scalar code calls a jitted helper
# (``symdiff.backends.special_math``; mul_log_slope's parts from 2,
# ``runtime._times_ratio_power``), which an IR region cannot call, so they end a region and
# run as Python statements in the kernel.  The guard test accepts an op
# listed here instead of one in IR_OPS.
PYTHON_STATEMENT_OPS = frozenset({"erfinv", "polygamma", "ndtr", "log_ndtr", "log_ndtr_prime",
                                  "log_ndtr_derivative", "over_squared_norm", "erfinv_slope",
                                  "over_hypot", "ndtr_derivative", "erf_derivative",
                                  "mul_log_slope"})

# Integer versions stay Python statements: LLVM's sdiv/srem are undefined at 0 and at
# INT_MIN / -1, where NumPy and Numba give 0.
_FLOAT_ONLY = {"mod", "floor_divide"}

_ARITHMETIC = {"neg", "abs", "sign", "add", "sub", "mul", "maximum", "minimum"}


def supported(node) -> bool:
    """Whether ``node`` (an elementwise op on scalars) can be part of an IR region.

    >>> import symdiff as sd
    >>> supported(sd.sin(sd.scalar("x"))), supported(sd.scalar("p", "bool") + True)
    (True, False)
    """
    name = node.op.name
    if name not in IR_OPS:
        return False
    if name in _ARITHMETIC:
        return node.dtype != "bool"  # NumPy's bool arithmetic stays in Python
    if name in _FLOAT_ONLY:
        return node.dtype in FLOATS
    return True


def _constant_value(text: str):
    return eval(text, {"np": np, "__builtins__": {"True": True, "False": False}})  # our own literals only


def _sin_cos_pairs(instructions) -> dict:
    """{out: (sin out, cos out)} for every value whose sine and cosine are both taken."""
    sines, cosines = {}, {}
    for out, op, operands, dtype, _ in instructions:
        if op in ("sin", "cos") and isinstance(operands[0], str):
            (sines if op == "sin" else cosines).setdefault(operands[0], out)
    paired = {}
    for operand, sin_out in sines.items():
        if operand in cosines:
            paired[sin_out] = paired[cosines[operand]] = (sin_out, cosines[operand])
    return paired


def _sincos(b, x, dtype):
    """libm's sincos: both values for about the price of one."""
    ty = LLVM_TYPE[dtype]
    fname = "sincos" if ty == F64 else "sincosf"
    fn = b.module.globals.get(fname)
    if fn is None:
        fn = ir.Function(b.module, ir.FunctionType(ir.VoidType(), [ty, ty.as_pointer(), ty.as_pointer()]), fname)
    with b.goto_entry_block():
        sin_slot, cos_slot = b.alloca(ty), b.alloca(ty)
    b.call(fn, [x, sin_slot, cos_slot])
    return b.load(sin_slot), b.load(cos_slot)


def _emit(b, instructions, values: dict, dtypes: dict, paired: dict, defined=None):
    """Emit ``instructions`` at ``b``, reading and adding to {name: LLVM value} ``values``;
    ``defined(name)``, if given, is called after each new value."""
    for out, op, operands, out_dtype, cast_to in instructions:
        if out in paired:  # sin and cos of one value: one sincos call gives both
            if out not in values:
                sin_name, cos_name = paired[out]
                values[sin_name], values[cos_name] = _sincos(b, values[operands[0]], out_dtype)
                dtypes[sin_name] = dtypes[cos_name] = out_dtype
                if defined is not None:
                    defined(sin_name)
                    defined(cos_name)
            continue
        args, arg_dtypes = [], []
        for operand in operands:
            if isinstance(operand, tuple):
                _, text, dtype = operand
                args.append(_const(dtype, _constant_value(text)))
                arg_dtypes.append(dtype)
            else:
                args.append(values[operand])
                arg_dtypes.append(dtypes[operand])
        values[out] = IR_OPS[op](b, args, arg_dtypes, out_dtype, cast_to)
        dtypes[out] = out_dtype
        if defined is not None:
            defined(out)


# The lowering gives a region of more than SPLIT_ABOVE instructions a part size, PART_SIZE:
# it is emitted as several LLVM functions of that many instructions, called in turn, that
# pass values through stack slots.  LLVM's code generation of one basic block takes time
# superlinear in its length (the 5,000-layer chain and its gradient, 45,000 instructions:
# 13.4 s of machine code generation, against 4.2 s at half the length); parts make it
# linear.  The parts are also optnone: the optimiser and the slow register allocator are
# skipped, which halves the compile again (20,000-node chain: 9.7 -> 6.6 s) at a small cost
# in speed (its call 481 -> 491 us; an arithmetic chain's 121 -> 137 us).  Graphs that big
# are dominated by their compile time; smaller regions keep one optimised block.
# A region that takes more than PART_SIZE inputs stays one block: the kernel would store each
# into its slot, and LLVM scheduled those 10,000 stores (a gradient region after an erfinv,
# which has no IR form) in 16.8 s against 4.0 s for the one block.
SPLIT_ABOVE = 8192
PART_SIZE = 1024


class _PartValues(dict):
    """A part's values: one defined in another part is loaded from its slot where first read,
    and one of ``crossing`` is stored into its slot where defined (``defined``).  A value
    loaded on entry or stored on exit would be live across the whole part, and LLVM's
    register allocation of thousands of such values took longer than one big block."""

    def __init__(self, builder, pointers, address, crossing: set):
        super().__init__()
        self.builder, self.pointers, self.address, self.crossing = builder, pointers, address, crossing

    def __missing__(self, name):
        value = self[name] = self.builder.load(self.address(self.builder, self.pointers, name))
        return value

    def defined(self, name):
        if name in self.crossing:
            self.builder.store(self[name], self.address(self.builder, self.pointers, name))


class _RenderedPart(ir.Function):
    """A region part whose body becomes LLVM IR text as soon as it is emitted (``render``).

    Numba turns the kernel's llvmlite module into text only when lowering ends, and until
    then every part's instruction objects (a few per region instruction, each with its name,
    operand list and cached string) stay alive.  Worse, a big compile runs with the cyclic
    collector paused (``ir.gc_paused``), and those objects hold reference cycles (instruction
    <-> block <-> function), so they also outlive the module: through LLVM's optimisation,
    code generation and Numba's cache write, where the process's memory peaks.  For the
    200,000-node chain's gradient that was about 600 MB of Python objects; its text is about
    50 MB.  The module's text is the same either way."""

    body = None  # the blocks' text, once rendered

    def render(self):
        """Keep the body as text and let its instruction objects go."""
        buf = []
        super().descr_body(buf)
        self.body = "".join(buf)
        entry = self.blocks[0]
        entry.instructions, entry.terminator = [], None
        self.blocks = [entry]  # non-empty: the prototype still says "define"
        self.scope = entry.scope = type(self.scope)()  # the instructions' names

    def descr_body(self, buf):
        if self.body is None:
            super().descr_body(buf)
        else:
            buf.append(self.body)


def _emit_in_parts(b, region_name, instructions, values: dict, dtypes: dict, paired: dict, out_names,
                   part_size: int, render: bool = True):
    """Emit ``instructions`` as consecutive parts, each its own noinline function.

    A value defined in one part (or an input of the region) and read in a later one (or
    returned by the region) lives in a stack slot of its dtype: stored where it is defined,
    loaded where a later part first reads it.  A slot is reused once its value's last
    reader has run (after that part: its own new values may be stored before it reads the old).
    ``render``: turn each part into text once emitted (``_RenderedPart``).
    """
    defined_in = {name: -1 for name in values}  # the region's inputs: defined before part 0
    dtype_of = dict(dtypes)
    parts, read_in = [], []  # per part: its instructions, the names they read
    for start in range(0, len(instructions), part_size):
        part, reads = [], set()
        for instruction in instructions[start:start + part_size]:
            out, _, operands, out_dtype, _ = instruction
            if out in paired:
                if out in defined_in:  # its pair's sincos already gave it
                    continue
                for both in paired[out]:
                    defined_in[both], dtype_of[both] = len(parts), out_dtype
            else:
                defined_in[out], dtype_of[out] = len(parts), out_dtype
            part.append(instruction)
            reads.update(operand for operand in operands if isinstance(operand, str))
        parts.append(part)
        read_in.append(reads)
    last_read = {}
    for k, reads in enumerate(read_in):
        for name in reads:
            last_read[name] = k
    for name in out_names:
        last_read[name] = len(parts)  # read back by the caller
    crossing = [name for name in defined_in if last_read.get(name, -1) > defined_in[name]]  # in order

    # Slots: the inputs' first; then, part by part, slots for the values it defines, and after
    # it, the slots of the values it read for the last time (a part loads a value where it
    # first reads it, which may come after a store of its own).
    slot, free, count = {}, {d: [] for d in LLVM_TYPE}, dict.fromkeys(LLVM_TYPE, 0)
    born, dying = [[] for _ in parts], [[] for _ in parts]
    for name in crossing:
        if defined_in[name] >= 0:
            born[defined_in[name]].append(name)
        if last_read[name] < len(parts):
            dying[last_read[name]].append(name)

    def take(name):
        dtype = dtype_of[name]
        if free[dtype]:
            slot[name] = free[dtype].pop()
        else:
            slot[name], count[dtype] = count[dtype], count[dtype] + 1

    for name in crossing:
        if defined_in[name] < 0:
            take(name)
    for k in range(len(parts)):
        for name in born[k]:
            take(name)
        for name in dying[k]:
            free[dtype_of[name]].append(slot[name])

    pointer_types = [LLVM_TYPE[d].as_pointer() for d in LLVM_TYPE]
    with b.goto_entry_block():
        buffers = [b.gep(b.alloca(ir.ArrayType(LLVM_TYPE[d], count[d])), [_const("int64", 0)] * 2)
                   if count[d] else ir.Constant(ptr, None) for d, ptr in zip(LLVM_TYPE, pointer_types)]
    buffer_of = dict(zip(LLVM_TYPE, range(len(LLVM_TYPE))))

    def address(builder, pointers, name):
        return builder.gep(pointers[buffer_of[dtype_of[name]]], [_const("int64", slot[name])])

    for name in crossing:
        if defined_in[name] < 0:
            b.store(values[name], address(b, buffers, name))
    function_type = ir.FunctionType(ir.VoidType(), pointer_types)
    stored = set(crossing)
    for k, part in enumerate(parts):
        function = _RenderedPart(b.module, function_type, b.module.get_unique_name(f"{region_name}_part{k}"))
        function.linkage = "internal"
        function.attributes.add("noinline")
        function.attributes.add("nounwind")
        function.attributes.add("optnone")
        inner = ir.IRBuilder(function.append_basic_block("entry"))
        local = _PartValues(inner, function.args, address, stored)
        _emit(inner, part, local, dtype_of, paired, local.defined)
        inner.ret_void()
        if render:
            function.render()
        b.call(function, buffers)
    for name in out_names:
        if name not in values:
            values[name] = b.load(address(b, buffers, name))


def instruction_text(instruction) -> str:
    """One instruction as a line of a region's listing; ``parse_instructions`` reads it back.

    >>> instruction_text(("v3", "add", ("v1", ("const", "1.0", "float64")), "float64", None))
    'v3 = add v1 1.0:float64 -> float64'
    """
    out, op, operands, dtype, cast_to = instruction
    words = [operand if isinstance(operand, str) else f"{operand[1]}:{operand[2]}" for operand in operands]
    return f"{out} = {op} {' '.join(words)} -> {dtype}" + (f" as {cast_to}" if cast_to else "")


def parse_instructions(listing: str) -> list:
    """The instructions of ``listing``, a line each as ``instruction_text`` writes them
    (comments after ``#`` and blank lines ignored).

    >>> parse_instructions("v3 = add v1 1.0:float64 -> float64  # %3 = add %1 1.0")
    [('v3', 'add', ('v1', ('const', '1.0', 'float64')), 'float64', None)]
    """
    instructions = []
    for line in listing.splitlines():
        words = line.split("#", 1)[0].split()
        if not words:
            continue
        arrow = words.index("->")
        operands = tuple(("const", *word.split(":")) if ":" in word else word for word in words[3:arrow])
        cast_to = words[arrow + 3] if len(words) > arrow + 2 else None
        instructions.append((words[0], words[2], operands, words[arrow + 1], cast_to))
    return instructions


def as_soon_as_possible(instructions) -> list:
    """``instructions`` ordered by depth (the longest chain of instructions each one waits
    for), stable within a depth: each comes right after its last operand.  A derivative
    is created after the whole forward graph, so in creation order a scalar chain's
    tangents all ran after its last sincos, one dependent chain after another; interleaved,
    the processor overlaps each layer's tangent with the next layer's sincos (chain-300
    value+derivative: 8.4 -> 7.4 us, see docs/architecture.md).  Only for regions emitted as one
    block (below ``SPLIT_ABOVE``): a split region's parts keep creation order, which bounds
    the values that cross parts.

    >>> [i[0] for i in as_soon_as_possible([("a", "sin", ("x",), "float64", None),
    ...                                     ("b", "sin", ("a",), "float64", None),
    ...                                     ("t", "mul", ("x", "x"), "float64", None)])]
    ['a', 't', 'b']
    """
    depth, keyed = {}, []
    for index, (out, _, operands, _, _) in enumerate(instructions):
        depth[out] = 1 + max((depth.get(o, 0) for o in operands if isinstance(o, str)), default=0)
        keyed.append((depth[out], index))
    keyed.sort()
    return [instructions[index] for _, index in keyed]


def make_region(name, in_names, in_dtypes, instructions, out_names, out_dtypes, part_size=None):
    """An ``@intrinsic`` taking a tuple of the region's inputs and returning a
    tuple of its outputs, that emits ``instructions`` as LLVM IR.

    instructions: (out name, op name, operands, out dtype, cast dtype or None),
    each operand a name or ("const", literal text, dtype); or their listing, a string
    (``instruction_text`` per line).  ``part_size``: emit them as functions of that many
    instructions each (see ``SPLIT_ABOVE``), else as one block.

    >>> from numba import njit
    >>> square_plus_one = make_region("r", ["x"], ["float64"],
    ...     [("y", "mul", ("x", "x"), "float64", None),
    ...      ("z", "add", ("y", ("const", "1.0", "float64")), "float64", None)],
    ...     ["z"], ["float64"])
    >>> njit(lambda x: square_plus_one((x,))[0])(3.0)
    10.0
    """
    from numba import types
    from numba.extending import intrinsic

    # A listing is parsed only when the code is generated, and the list lives only that long:
    # a kernel loaded from the cache never needs it, and a big compile's memory peaks later
    # (the 200,000-node chain's 500,000 tuples: about 170 MB, held by this closure).
    listing = instructions

    numba_type = {"float64": types.float64, "float32": types.float32, "int64": types.int64, "bool": types.boolean}
    result_type = types.Tuple([numba_type[d] for d in out_dtypes])

    def codegen(context, builder, signature, llvm_args):
        instructions = parse_instructions(listing) if isinstance(listing, str) else listing
        (packed,) = llvm_args
        packed_type = signature.args[0]
        values, dtypes = {}, {}
        for k, (local, dtype) in enumerate(zip(in_names, in_dtypes)):
            raw = builder.extract_value(packed, k)
            values[local] = context.cast(builder, raw, packed_type[k], numba_type[dtype])
            dtypes[local] = dtype
        if part_size is None:
            instructions = as_soon_as_possible(instructions)
        paired = _sin_cos_pairs(instructions)
        if part_size is None:
            _emit(builder, instructions, values, dtypes, paired)
        else:
            # Numba's post-lowering rewrites (fastmath flags, 32-bit division) walk the
            # instruction objects, which a rendered part no longer has.
            render = not (getattr(context, "fastmath", False) or getattr(context, "is32bit", False))
            _emit_in_parts(builder, name, instructions, values, dtypes, paired, out_names, part_size, render)
        return context.make_tuple(builder, result_type, [values[o] for o in out_names])

    def typer(typingctx, packed):
        if not isinstance(packed, types.BaseTuple) or len(packed) != len(in_names):
            return None
        return result_type(packed), codegen

    typer.__name__ = name
    return intrinsic(typer)
