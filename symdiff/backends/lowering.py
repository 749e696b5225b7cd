"""Lower a graph to the source of ONE Numba kernel.

The program is a sequence of *steps*; each step is either a loop nest over one
domain (a shape) or a few statements (a BLAS call, a reshape).  Before each step
runs a *prelude* of scalar statements.  Every node is placed once, in topological
order, greedily:

- an elementwise node joins the loop nest that computes its inputs when they have
  its own shape (its value is then a local of that loop body: no temporary array);
  otherwise it joins the earliest loop nest of its shape that runs after its inputs
  are ready, or starts a new one;
- a reduction accumulates inside the loop nest that produces its input;
- ``scatter_slice`` (the adjoint of slicing) is a scatter-add inside the loop nest
  that produces the cotangent, and a sum of such scatters shares one buffer, so the
  gradient of ``x[1:]`` and ``x[:-1]`` is two ``+=`` in the forward loop; when every
  write into such a buffer is a unit-step, constant-offset scatter in one 1-d loop,
  the buffer is written once per element instead (``plan_carries``: pending sums in
  scalar "carries", no zero-fill, no read-modify-write);
- slices with static offsets, transposes, expand/squeeze and broadcasts are *views*:
  index arithmetic on the array they read, never copies;
- matmul is one BLAS ``gemm`` call (transposed operands are read in place);
- a transcendental op on a big array (``VECTOR_MATH``) calls NumPy's SIMD ufunc in an
  object-mode block: Numba's loops call scalar libm, about 10x slower;
- 0-d nodes are scalar statements, and a long run of them (the 300-layer chain)
  becomes one LLVM IR region (see ``scalar_ir``): Numba's own compile time is
  superlinear in the length of a basic block.

Sizes: a ``None`` dimension is a kernel local (``n0 = x.shape[0]``); dimensions that
the graph says must agree are unified and checked once at the top of the kernel,
raising ``KernelShapeError(check, left, right)`` which the caller describes.

Names in the generated source are numbered by position in the lowered graph, not
by node id, so the same function built in another process gives the same source
(the cache key).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Optional

import numpy as np

from ..errors import ShapeError, SymdiffError
from ..ir import OPS, Expr, toposort

SLICE_NONE = 1 << 62  # same value as runtime.SLICE_NONE (the runtime module imports Numba)

NUMBA_SCALAR = {"float64": "float64", "float32": "float32", "int64": "int64", "bool": "boolean"}
NUMPY_NAME = {"float64": "np.float64", "float32": "np.float32", "int64": "np.int64", "bool": "np.bool_"}

# Scalar spellings that differ from the op records' ``scalar_code``: NumPy's NaN rules
# for maximum/minimum/sign, and Numba builtins instead of helper functions (each
# jitted helper costs a separate compilation on first use).
SCALAR_CODE_OVERRIDES = {
    "maximum": "({0} if {0} > {1} or {0} != {0} else {1})",  # a tie (0.0, -0.0) gives the second, as NumPy
    "minimum": "({0} if {0} < {1} or {0} != {0} else {1})",
    "sign": "(math.copysign(1, {0}) if {0} != 0 and {0} == {0} else {0} + 0)",  # sign(-0.0) is +0.0
    "cast": {"float64": "np.float64({0})", "float32": "np.float32({0})", "int64": "np.int64({0})",
             "bool": "({0} != 0)"},
}

# Non-elementwise ops: how each is lowered (the method of ``Lowering`` it names).
LOWERINGS = {
    "symbol": "lower_symbol",
    "constant": "lower_constant",
    "sum": "lower_reduction",
    "max": "lower_reduction",
    "min": "lower_reduction",
    "prod": "lower_reduction",
    "slice": "lower_view",
    "expand_dims": "lower_view",
    "squeeze": "lower_view",
    "transpose": "lower_view",
    "broadcast_to": "lower_view",
    "broadcast_like": "lower_view",
    "reshape": "lower_reshape",
    "scatter_slice": "lower_scatter",
    "concatenate": "lower_concatenate",
    "dim": "lower_dim",
    "matmul": "lower_matmul",
}

REGION_MIN_STATEMENTS = 48  # shorter runs of scalar statements stay Python source

# Transcendental ops computed by NumPy (SIMD) on big arrays, inside an object-mode block.
VECTOR_MATH = {"tanh": "np.tanh", "exp": "np.exp", "log": "np.log", "sin": "np.sin", "cos": "np.cos",
               "tan": "np.tan", "expm1": "np.expm1", "log1p": "np.log1p"}
VECTOR_MATH_MIN_STATIC = 64  # static elements per batch row, for shapes with a None dim
VECTOR_MATH_MIN_SIZE = 4096  # elements, for fully static shapes
VECTOR_MATH_MAX_CALLS = 4  # per kernel (each block is compiled in object mode)


class LoweringError(SymdiffError):
    """An op the Numba backend cannot lower."""


# Spellings for one result dtype: NumPy's + and * on bools are "or" and "and"
# (Python's would give ints), and the sign of an int is an int.
DTYPE_SCALAR_CODE = {
    ("add", "bool"): "({0} | {1})",
    ("mul", "bool"): "({0} & {1})",
    ("sign", "int64"): "(1 if {0} > 0 else (-1 if {0} < 0 else 0))",
}


def scalar_code(op, params=None, dtype=None) -> str:
    """The scalar spelling of an elementwise op in generated source.

    >>> from symdiff.ir import OPS
    >>> scalar_code(OPS["exp"]), scalar_code(OPS["cast"], {"dtype": "float32"})
    ('math.exp({0})', 'np.float32({0})')
    """
    code = DTYPE_SCALAR_CODE.get((op.name, dtype)) or SCALAR_CODE_OVERRIDES.get(op.name, op.scalar_code)
    if isinstance(code, dict):
        code = code[(params or {}).get("dtype", "float64")]
    if code is None:
        raise LoweringError(f"op {op.name!r} has no scalar spelling for the Numba backend")
    return code


def unsupported_ops() -> list:
    """Registered ops the backend has no lowering for (the guard test wants []).

    >>> unsupported_ops()
    []
    """
    return sorted(
        name for name, op in OPS.items()
        if name not in LOWERINGS and not (op.kind == "elementwise" and scalar_code(op))
    )


def literal(value, dtype: str) -> str:
    """Source text for a scalar constant of ``dtype`` (typed, so float32 stays float32).

    >>> literal(0.5, "float32"), literal(float("inf"), "float64"), literal(3, "int64")
    ('np.float32(0.5)', 'np.inf', '3')
    """
    if dtype == "bool":
        return "True" if bool(value) else "False"
    if dtype == "int64":
        return str(int(value))
    v = float(value)
    text = "np.nan" if math.isnan(v) else ("np.inf" if v > 0 else "-np.inf") if math.isinf(v) else repr(v)
    return text if dtype == "float64" else f"np.float32({text})"


# ---------------------------------------------------------------------- sizes


class Dims:
    """Run-time sizes: kernel locals defined from input shapes, unified when the
    graph says they must agree (each unification is a check at the kernel top)."""

    def __init__(self):
        self.definitions = []  # (name, code)
        self.parent: dict = {}
        self.memo: dict = {}
        self.describe: dict = {}
        self.checks = []  # (left code, right code, left description, right description, context)

    def new(self, code: str, description: str, key=None):
        if key is not None and key in self.memo:
            return self.memo[key]
        name = f"n{len(self.definitions)}"
        self.definitions.append((name, code))
        self.describe[name] = description
        if key is not None:
            self.memo[key] = name
        return name

    def find(self, d):
        while isinstance(d, str) and d in self.parent:
            d = self.parent[d]
        return d

    def text(self, d) -> str:
        return str(self.find(d))

    def description(self, d) -> str:
        d = self.find(d)
        return str(d) if isinstance(d, int) else self.describe[d]

    def unify(self, a, b, context: str):
        a, b = self.find(a), self.find(b)
        if a == b:
            return a
        if isinstance(a, int) and isinstance(b, int):
            raise LoweringError(f"internal: static sizes {a} and {b} meet in {context}")
        self.checks.append((str(a), str(b), self.description(a), self.description(b), context))
        if isinstance(b, int) or (isinstance(a, str) and int(a[1:]) > int(b[1:])):
            a, b = b, a
        self.parent[b] = a  # the static or the older one represents both
        return a

    def require(self, left: str, right: str, left_text: str, right_text: str, context: str):
        """A check that two size expressions agree, without unifying anything."""
        self.checks.append((left, right, left_text, right_text, context))

    def product(self, dims) -> str:
        dims = [self.find(d) for d in dims]
        static = int(np.prod([d for d in dims if isinstance(d, int)], dtype=np.int64))
        parts = [d for d in dims if isinstance(d, str)]
        if static != 1 or not parts:
            parts.append(str(static))
        return " * ".join(parts)


# --------------------------------------------------------------- node values


@dataclass
class Value:
    """Where a node's value lives in the kernel.

    kind: "scalar" (a local or literal, 0-d), "array" (an array local), "fused" (a
    local of loop nest ``group``'s body; ``array`` once it is also stored), "view"
    (index arithmetic on ``base``).  ``avail``: the first step that may read it.
    """

    kind: str
    name: str = ""
    avail: int = 0
    group: int = -1
    array: Optional[str] = None
    base: Optional[Expr] = None
    transform: object = None
    root: Optional[str] = None  # the buffer an array shares memory with
    accumulator: bool = False  # a zero-initialised buffer other sums may add into
    copy: Optional[str] = None  # for views: a contiguous copy, once made


@dataclass
class ScalarStatement:
    """``out = op(operands)``: one elementwise node on scalars, rendered either as
    Python (its scalar spelling) or, inside a long run, as LLVM IR."""

    out: str
    node: Expr
    operands: list  # (text, dtype, kind) with kind "local", "literal" or "load"
    comment: str

    def python(self) -> str:
        params = self.node.params
        code = scalar_code(self.node.op, params, self.node.dtype).format(*(text for text, _, _ in self.operands),
                                                                        **params)
        if self.node.dtype == "float32" and not code.startswith("np.float32("):
            code = f"np.float32({code})"  # math.* and mixed literals compute in float64; NumPy stays float32
        return f"{self.out} = {code}  # {self.comment}"


@dataclass
class Step:
    index: int
    domain: tuple = ()  # a loop nest's shape (dims); () for a statement step
    body: list = field(default_factory=list)
    loop: bool = True
    labels: list = field(default_factory=list)
    before: list = field(default_factory=list)  # lines right before the loop nest (after the prelude)
    after: list = field(default_factory=list)  # lines right after it


@dataclass
class ScatterWrite:
    """One ``buffer[i + offset] += value`` line of a scatter, recorded so that the
    buffer's writes can be re-planned as carries (see ``Lowering.plan_carries``).

    ``offset`` is the constant start of a unit-step slice of a 1-d buffer, or None
    for any other scatter (which keeps the buffer on the general code).
    """

    step: int
    position: int  # in the step's body
    offset: Optional[int]
    length: object  # the slice's length (a dim)
    value: str
    comment: str


@dataclass
class Program:
    source: str
    kernel_name: str
    params: list  # kernel parameter names: the inputs, then hidden constant arrays
    input_names: list
    hidden: list  # constant arrays passed after the inputs
    checks: list  # (left code, right code, left text, right text, context)
    dim_definitions: list  # (name, code) computing the run-time sizes from the inputs
    signature: str
    regions: int


def _index_text(idx) -> str:
    return ", ".join(idx)


def _plus(dim, k: int):
    """A dim (a static int or a size local) plus a constant: an int or source text."""
    if isinstance(dim, int):
        return dim + k
    return f"{dim} + {k}" if k else dim


def _affine(i: str, start, step) -> str:
    """Source for start + step * i, simplified."""
    start = str(start)
    if i == "0":
        return start
    term = i if step == 1 else f"{step} * ({i})" if " " in i else f"{step} * {i}"
    if start == "0":
        return term
    return f"{term} + {start}" if not start.startswith("-") else f"{term} - {start[1:]}"


# ------------------------------------------------------------------- lowering


class Lowering:
    """Builds the program for ``outputs`` as a function of ``inputs`` (symbols)."""

    def __init__(self, inputs: list, outputs: list, kernel_name: str = "kernel"):
        self.inputs = inputs
        self.outputs = outputs
        self.kernel_name = kernel_name
        self.nodes = toposort(outputs)
        self.position = {n.id: p for p, n in enumerate(self.nodes)}
        self.uses: dict = {n.id: 0 for n in self.nodes}
        for n in self.nodes:
            for x in n.inputs:
                self.uses[x.id] += 1
        for o in outputs:
            self.uses[o.id] += 1
        self.output_ids = {o.id for o in outputs}
        self.dims = Dims()
        self.shape: dict = {}
        self.values: dict = {}
        self.steps: list = []
        self.preludes: dict = {}
        self.allocations: list = []
        self.aliases: dict = {}
        self.dropped: set = set()
        self.hidden: list = []
        self.vector_math_calls = 0
        self.scatter_writes: dict = {}  # buffer -> [ScatterWrite]
        self.scatter_nodes: dict = {}  # buffer -> the scatter_slice node it was allocated for
        self.added_into: set = set()  # buffers that also receive a plain ``+=`` (not a scatter)
        self.param_of: dict = {}
        # Parameters are always prefixed: a symbol may be named like anything the
        # kernel's source uses (np, math, sizes_agree, a13, ...).
        for k, sym in enumerate(inputs):
            self.param_of[sym.id] = f"in{k}_{sym.name}"

    # --- small helpers
    def p(self, node: Expr) -> int:
        return self.position[node.id]

    def dim(self, node: Expr, axis: int):
        return self.dims.find(self.shape[node.id][axis])

    def dims_of(self, node: Expr) -> tuple:
        return tuple(self.dims.find(d) for d in self.shape[node.id])

    def shape_text(self, node: Expr) -> str:
        dims = [self.dims.text(d) for d in self.shape[node.id]]
        return "(" + ", ".join(dims) + ("," if len(dims) == 1 else "") + ")"

    def context(self, node: Expr) -> str:
        where = node.where()
        return f"{node.op.name}" + (f" at {where}" if where else "")

    def prelude(self, index: int) -> list:
        return self.preludes.setdefault(index, [])

    def comment(self, node: Expr) -> str:
        args = " ".join(self.label(x) for x in node.inputs)
        text = f"%{self.p(node)} = {node.op.name} {args}".rstrip()
        if node.params and node.op.name not in ("cast",):
            params = ", ".join(f"{k}={v}" for k, v in node.attrs)
            text += f" [{params}]"
        return text

    def label(self, node: Expr) -> str:
        return node.name if node.is_symbol else f"%{self.p(node)}"

    def new_step(self, domain=(), loop=True) -> Step:
        step = Step(len(self.steps), tuple(domain), loop=loop)
        self.steps.append(step)
        return step

    def find_group(self, domain: tuple, earliest: int) -> Step:
        """The earliest loop nest over ``domain`` at or after step ``earliest``."""
        want = tuple(self.dims.find(d) for d in domain)
        for step in self.steps[earliest:]:
            if step.loop and tuple(self.dims.find(d) for d in step.domain) == want:
                return step
        return self.new_step(domain)

    def allocate(self, name: str, node: Expr, zeros=False, fill=None, fill_at=None):
        """An array for ``node``; filled by explicit loops (np.zeros and np.full are
        library functions Numba compiles on each first use: seconds, not loops).
        A fill computed in the kernel goes in the prelude of step ``fill_at``, where
        its value exists; a literal fill goes with the allocation."""
        dtype = NUMPY_NAME[node.dtype]
        lines = [f"{name} = np.empty({self.shape_text(node)}, dtype={dtype})  # {self.label(node)}"]
        if zeros:
            fill = literal(0, node.dtype)
        if fill is not None:
            indent = ""
            for k, d in enumerate(self.shape[node.id]):
                lines.append(f"{indent}for i{k} in range({self.dims.text(d)}):")
                indent += "    "
            lines.append(f"{indent}{name}[{_index_text([f'i{k}' for k in range(node.ndim)])}] = {fill}")
        if fill_at is not None:
            self.prelude(fill_at).extend(lines[1:])
            lines = lines[:1]
        self.allocations.append((name, lines))

    # --- access
    def avail(self, node: Expr) -> int:
        return self.values[node.id].avail

    def store(self, node: Expr):
        """Make a fused node readable outside its loop body (an array it writes)."""
        v = self.values[node.id]
        if v.kind != "fused" or v.array is not None:
            return
        name = f"a{self.p(node)}"
        self.allocate(name, node)
        idx = [f"i{k}" for k in range(node.ndim)]
        self.steps[v.group].body.append(f"{name}[{_index_text(idx)}] = {v.name}")
        v.array = name
        v.root = name
        v.avail = v.group + 1

    def ready(self, node: Expr) -> int:
        """Store it if needed; the first step that may read it as an array."""
        self.store(node)
        return self.avail(node)

    def load(self, node: Expr, idx: list) -> str:
        """Source reading ``node`` at index ``idx`` (one entry per axis)."""
        v = self.values[node.id]
        if node.ndim == 0 or v.kind == "scalar":
            return v.name
        if v.kind == "view":
            return self.load(v.base, v.transform(idx))
        if v.array is None:
            raise LoweringError(f"internal: {self.label(node)} is read outside its loop before being stored")
        return f"{v.array}[{_index_text(idx)}]"

    def broadcast_index(self, node: Expr, idx: list) -> list:
        """Index into ``node`` from a loop over a (broadcast) result with indices ``idx``."""
        offset = len(idx) - node.ndim
        return ["0" if self.dim(node, k) == 1 else idx[offset + k] for k in range(node.ndim)]

    def fill(self, node: Expr):
        """A scalar standing for a whole array (a filled constant, a broadcast scalar) as a real array."""
        v = self.values[node.id]
        if node.ndim and v.kind == "scalar" and v.array is None:
            name = f"f{self.p(node)}"
            self.allocate(name, node, fill=v.name, fill_at=v.avail)
            v.array = v.root = name

    def contiguous(self, node: Expr) -> str:
        """Source for a C- or F-contiguous array holding ``node`` (for BLAS, reshape)."""
        v = self.values[node.id]
        self.fill(node)
        self.store(node)
        if v.kind != "view":
            return v.array
        base = self.values[v.base.id]
        if node.op.name == "transpose" and node.ndim == 2 and base.kind != "view" and base.array:
            return f"{base.array}.T"
        return self.copy_of(node)

    # --- the main loop
    def run(self) -> Program:
        for node in self.nodes:
            if node.op.kind == "elementwise":
                self.infer_elementwise_shape(node)
                if node.ndim == 0:
                    self.lower_scalar(node)
                else:
                    self.lower_elementwise(node)
            else:
                method = LOWERINGS.get(node.op.name)
                if method is None:
                    raise LoweringError(f"the Numba backend has no lowering for op {node.op.name!r}")
                getattr(self, method)(node)
        return self.render()

    # --- leaves
    def lower_symbol(self, node: Expr):
        name = self.param_of[node.id]
        shape = []
        for k, d in enumerate(node.type.shape):
            if d is None:
                shape.append(self.dims.new(f"{name}.shape[{k}]", f"{node.name}.shape[{k}]"))
            else:
                shape.append(d)
        self.shape[node.id] = tuple(shape)
        kind = "scalar" if node.ndim == 0 else "array"
        self.values[node.id] = Value(kind, name=name, array=name if node.ndim else None, root=name)

    def lower_constant(self, node: Expr):
        array = node.params["value"].array
        self.shape[node.id] = tuple(array.shape)
        if array.ndim == 0:
            self.values[node.id] = Value("scalar", name=literal(array[()], node.dtype))
            return
        if array.size == 1 or (array.size > 0 and np.all(array == array.flat[0]) and not np.isnan(array.flat[0])):
            # a filled constant is one scalar read at any index
            self.values[node.id] = Value("scalar", name=literal(array.flat[0], node.dtype))
            return
        name = f"k{len(self.hidden)}"
        self.hidden.append((name, array, node))
        self.values[node.id] = Value("array", name=name, array=name, root=name)

    def lower_dim(self, node: Expr):
        (x,) = node.inputs
        self.shape[node.id] = ()
        self.values[node.id] = Value("scalar", name=self.dims.text(self.shape[x.id][node.params["axis"]]))

    # --- elementwise
    def infer_elementwise_shape(self, node: Expr):
        ndim = node.ndim
        dims = []
        for axis, static in enumerate(node.type.shape):
            found = static if static is not None else None
            for x in node.inputs:
                k = axis - (ndim - x.ndim)
                if k < 0:
                    continue
                d = self.dim(x, k)
                if d == 1:
                    continue
                found = d if found is None else self.dims.unify(found, d, self.context(node))
            dims.append(1 if found is None else found)
        self.shape[node.id] = tuple(dims)

    def operand(self, x: Expr, idx: list, inline_group: int):
        v = self.values[x.id]
        if x.ndim == 0 or v.kind == "scalar":
            is_local = re.match(r"^[A-Za-z_]\w*$", v.name) and v.name not in ("True", "False")
            return (v.name, x.dtype, "local" if is_local else "literal")
        if v.kind == "fused" and v.group == inline_group and self.same_shape(x, idx):
            return (v.name, x.dtype, "local")
        return (self.load(x, self.broadcast_index(x, idx)), x.dtype, "load")

    def same_shape(self, x: Expr, idx: list) -> bool:
        return x.ndim == len(idx) and all(self.dim(x, k) == d for k, d in enumerate(self.current_domain))

    def lower_scalar(self, node: Expr):
        for x in node.inputs:
            self.ready(x)
        at = max([self.avail(x) for x in node.inputs], default=0)
        name = f"v{self.p(node)}"
        operands = [self.operand(x, [], -1) for x in node.inputs]
        self.prelude(at).append(ScalarStatement(name, node, operands, self.comment(node)))
        self.values[node.id] = Value("scalar", name=name, avail=at)

    def lower_elementwise(self, node: Expr):
        domain = self.shape[node.id]
        self.current_domain = self.dims_of(node)
        if node.op.name == "add" and self.try_accumulate_add(node):
            return
        if self.use_vector_math(node):
            self.lower_vector_math(node)
            return
        inline = []
        for x in node.inputs:
            v = self.values[x.id]
            if v.kind == "fused" and v.array is None and x.ndim == node.ndim and self.dims_of(x) == self.current_domain:
                inline.append(v.group)
        step = None
        if inline:
            target = max(inline)
            def inline_in_target(x):
                v = self.values[x.id]
                return v.kind == "fused" and v.group == target and self.dims_of(x) == self.current_domain

            others = [x for x in node.inputs if not inline_in_target(x)]
            if all(self.ready(x) <= target for x in others):
                step = self.steps[target]
        if step is None:
            earliest = max(self.ready(x) for x in node.inputs)
            step = self.find_group(domain, earliest)
        idx = [f"i{k}" for k in range(node.ndim)]
        operands = [self.operand(x, idx, step.index) for x in node.inputs]
        name = f"v{self.p(node)}"
        step.body.append(ScalarStatement(name, node, operands, self.comment(node)))
        step.labels.append(self.label(node))
        self.values[node.id] = Value("fused", name=name, group=step.index, avail=step.index + 1)

    # --- big transcendental loops: NumPy's SIMD ufuncs
    def use_vector_math(self, node: Expr) -> bool:
        """Whether to compute ``node`` with NumPy's vectorised ufunc instead of a loop.

        Numba's loops call scalar libm: tanh over 256x128 takes ~0.5 ms vs ~0.05 ms for
        ``np.tanh``.  A NumPy call costs an object-mode block (~2 us per call, a little
        compile time) and breaks fusion, so only big arrays qualify: at least
        VECTOR_MATH_MIN_STATIC static elements per row of a batch (a None dimension), or
        VECTOR_MATH_MIN_SIZE elements in all; at most VECTOR_MATH_MAX_CALLS per kernel.
        """
        if node.op.name not in VECTOR_MATH or node.dtype not in ("float32", "float64"):
            return False
        if self.vector_math_calls >= VECTOR_MATH_MAX_CALLS:
            return False
        static = int(np.prod([d for d in node.type.shape if d is not None], dtype=np.int64))
        if None in node.type.shape:
            return static >= VECTOR_MATH_MIN_STATIC
        return static >= VECTOR_MATH_MIN_SIZE

    def lower_vector_math(self, node: Expr):
        (x,) = node.inputs
        self.fill(x)
        array = self.copy_or_array(x) if self.values[x.id].kind != "view" else self.copy_of(x)
        at = self.avail(x)
        name = f"a{self.p(node)}"
        kind = self.numba_type(node.dtype, node.ndim)
        self.prelude(at).append(f"with numba.objmode({name}={kind!r}):  # {self.comment(node)}: NumPy's SIMD ufunc")
        self.prelude(at).append(f"    {name} = np.ascontiguousarray({VECTOR_MATH[node.op.name]}({array}))")
        self.vector_math_calls += 1
        self.values[node.id] = Value("array", name=name, array=name, avail=at, root=name)

    # --- accumulating sums of scatters
    def mergeable(self, x: Expr, node: Expr) -> bool:
        v = self.values[x.id]
        return (v.accumulator and self.uses[x.id] == 1 and x.id not in self.output_ids
                and x.dtype == node.dtype and self.dims_of(x) == self.current_domain)

    def try_accumulate_add(self, node: Expr) -> bool:
        """x + y where x is a scatter buffer nobody else reads: add y into it."""
        a, b = node.inputs
        if a.id == b.id:
            return False
        if not self.mergeable(a, node):
            if not self.mergeable(b, node):
                return False
            a, b = b, a
        va = self.values[a.id]
        if self.mergeable(b, node):  # two buffers: the second writes into the first
            vb = self.values[b.id]
            self.aliases[vb.array] = va.array
            self.dropped.add(vb.array)
            avail = max(va.avail, vb.avail)
        else:
            vb = self.values[b.id]
            idx = [f"i{k}" for k in range(node.ndim)]
            if vb.kind == "fused" and vb.array is None and self.dims_of(b) == self.current_domain:
                step = self.steps[vb.group]
            else:
                step = self.find_group(self.shape[node.id], self.ready(b))
            text, _, _ = self.operand(b, idx, step.index)
            self.added_into.add(va.array)
            step.body.append(f"{va.array}[{_index_text(idx)}] += {text}  # {self.comment(node)}")
            step.labels.append(self.label(node))
            avail = max(va.avail, step.index + 1)
        self.values[node.id] = Value("array", name=va.array, array=va.array, avail=avail, root=va.array,
                                     accumulator=True)
        return True

    # --- reductions
    def lower_reduction(self, node: Expr):
        (x,) = node.inputs
        axes = node.params["axes"]
        keep = node.params["keepdims"]
        xd = self.shape[x.id]
        self.shape[node.id] = tuple(1 if a in axes else d for a, d in enumerate(xd) if keep or a not in axes)
        if x.ndim == 0 or not axes:  # nothing reduced: the value itself
            if node.ndim == 0:
                self.ready(x)
                self.values[node.id] = Value("scalar", name=self.values[x.id].name, avail=self.avail(x))
            else:
                self.values[node.id] = Value("view", base=x, transform=lambda idx: idx, avail=self.ready(x))
            return
        op = node.op.name
        if op in ("max", "min"):  # like NumPy: no identity, so an empty axis is an error, not +-inf
            for a in axes:
                n = self.dims.find(xd[a])
                if not isinstance(n, int):
                    self.dims.require(f"min({n}, 1)", "1", self.dims.description(n),
                                      f"{op} over it needs at least one element", self.context(node))
                elif n == 0:
                    raise ShapeError(f"{op} over an empty axis has no identity: {self.context(node)}")
        vx = self.values[x.id]
        if vx.kind == "fused" and vx.array is None:
            step = self.steps[vx.group]
        else:
            step = self.find_group(xd, self.ready(x))
        self.current_domain = self.dims_of(x)
        idx = [f"i{k}" for k in range(x.ndim)]
        value, _, _ = self.operand(x, idx, step.index)
        if op in ("sum", "prod"):
            init = literal(0 if op == "sum" else 1, node.dtype)
        elif node.dtype == "bool":
            init = "False" if op == "max" else "True"
        elif node.dtype == "int64":
            init = str(-(1 << 63)) if op == "max" else str((1 << 63) - 1)
        else:
            init = literal(-np.inf if op == "max" else np.inf, node.dtype)
        name = f"r{self.p(node)}"
        if node.ndim == 0:
            self.prelude(step.index).append(f"{name} = {init}  # {self.label(node)} accumulates {op}")
            target = name
        else:
            self.allocate(name, node, fill=init if op != "sum" else None, zeros=op == "sum")
            out_idx = ["0" if a in axes else i for a, i in enumerate(idx) if keep or a not in axes]
            target = f"{name}[{_index_text(out_idx)}]"
        if op in ("sum", "prod"):
            step.body.append(f"{target} {'+' if op == 'sum' else '*'}= {value}  # {self.comment(node)}")
        else:  # like np.max/np.min: a NaN, once seen, stays; of tied values (0.0, -0.0) the later one
            compare = ">=" if op == "max" else "<="
            temp = f"t{self.p(node)}"
            step.body.append(f"{temp} = {value}  # {self.comment(node)}")
            step.body.append(f"if {temp} {compare} {target} or {temp} != {temp}:")
            step.body.append(f"    {target} = {temp}")
        step.labels.append(self.label(node))
        kind = "scalar" if node.ndim == 0 else "array"
        self.values[node.id] = Value(kind, name=name, array=name if node.ndim else None, avail=step.index + 1,
                                     root=name)

    # --- views
    def lower_view(self, node: Expr):
        x = node.inputs[0]
        op = node.op.name
        params = node.params
        xd = self.shape[x.id]
        if op == "slice":
            shape, transform = self.slice_view(node, x, params["index"])
        elif op == "expand_dims":
            axes = params["axes"]
            it = iter(xd)
            shape = tuple(1 if a in axes else next(it) for a in range(node.ndim))
            def transform(idx, axes=axes):
                return [i for a, i in enumerate(idx) if a not in axes]
        elif op == "squeeze":
            axes = params["axes"]
            shape = tuple(d for a, d in enumerate(xd) if a not in axes)
            def transform(idx, axes=axes, ndim=x.ndim):
                it = iter(idx)
                return ["0" if a in axes else next(it) for a in range(ndim)]
        elif op == "transpose":
            axes = params["axes"]
            shape = tuple(xd[a] for a in axes)
            def transform(idx, axes=axes):
                out = [None] * len(axes)
                for k, a in enumerate(axes):
                    out[a] = idx[k]
                return out
        else:  # broadcast_to / broadcast_like
            if op == "broadcast_to":
                target = tuple(params["shape"])
            else:
                target = self.shape[node.inputs[1].id]
            offset = len(target) - x.ndim
            shape = list(target)
            for k in range(x.ndim):
                d = self.dim(x, k)
                if d != 1:
                    shape[offset + k] = self.dims.unify(target[offset + k], d, self.context(node))
            shape = tuple(shape)
            def transform(idx, x=x, offset=offset):
                return ["0" if self.dim(x, k) == 1 else idx[offset + k] for k in range(x.ndim)]
        self.shape[node.id] = shape
        if self.same_scalar(node, x):
            return
        avail = self.ready(x)
        if node.ndim == 0:  # a single element: read it once
            name = f"v{self.p(node)}"
            self.prelude(avail).append(f"{name} = {self.load(x, transform([]))}  # {self.comment(node)}")
            self.values[node.id] = Value("scalar", name=name, avail=avail)
            return
        self.values[node.id] = Value("view", base=x, transform=transform, avail=avail)

    def same_scalar(self, node: Expr, x: Expr) -> bool:
        """A view or reshape of one value (0-d, or every element equal) is that value."""
        if x.ndim and self.values[x.id].kind != "scalar":
            return False
        self.ready(x)
        self.values[node.id] = Value("scalar", name=self.values[x.id].name, avail=self.avail(x))
        return True

    def slice_view(self, node: Expr, x: Expr, index):
        shape, starts, steps = [], [], []
        for axis, entry in enumerate(index):
            n = self.dim(x, axis)
            if not isinstance(entry, tuple):
                if not isinstance(n, int):  # the reference raises IndexError; so must the kernel
                    need = entry + 1 if entry >= 0 else -entry
                    self.dims.require(f"min({n}, {need})", str(need), self.dims.description(n),
                                      f"index {entry} needs a size of at least {need}", self.context(node))
                shape.append(1)
                if entry >= 0:
                    starts.append(str(entry))
                else:
                    starts.append(str(n + entry) if isinstance(n, int) else f"({n} - {-entry})")
                steps.append(1)
                continue
            start, stop, step = entry
            if isinstance(n, int):
                first, _, _ = slice(start, stop, step).indices(n)
                shape.append(len(range(*slice(start, stop, step).indices(n))))
                starts.append(str(first))
            else:
                shape.append(self.slice_length(n, start, stop, step, x, axis))
                if step > 0 and (start is None or start >= 0):
                    starts.append(str(start or 0))
                else:
                    code = f"_slice_start({n}, {self.bound(start)}, {self.bound(stop)}, {step})"
                    starts.append(self.dims.new(code, f"start of {x.label()}[{start}:{stop}:{step}]",
                                                key=("start", n, start, stop, step)))
            steps.append(step)

        def transform(idx, starts=starts, steps=steps):
            return [_affine(i, s, st) for i, s, st in zip(idx, starts, steps)]

        return tuple(shape), transform

    @staticmethod
    def bound(b) -> str:
        return "SLICE_NONE" if b is None else str(b)

    def slice_length(self, n: str, start, stop, step, x: Expr, axis: int):
        desc = self.dims.description(n)
        if step == 1 and (start is None or start >= 0) and (stop is None or stop < 0):
            cut = (start or 0) + (-stop if stop is not None else 0)
            if cut == 0:
                return n
            return self.dims.new(f"max({n} - {cut}, 0)", f"{desc} - {cut}", key=("minus", n, cut))
        code = f"_slice_len({n}, {self.bound(start)}, {self.bound(stop)}, {step})"
        text = f"{'' if start is None else start}:{'' if stop is None else stop}:{step}"
        return self.dims.new(code, f"len of [{text}] of {desc}", key=("slice", n, start, stop, step))

    # --- scatter (adjoint of slice)
    def lower_scatter(self, node: Expr):
        cotangent, ref = node.inputs
        self.shape[node.id] = self.shape[ref.id]
        if ref.ndim == 0:
            self.ready(cotangent)
            self.values[node.id] = Value("scalar", name=self.values[cotangent.id].name, avail=self.avail(cotangent))
            return
        # the slice's own shape and index map, as if slicing ``ref``
        slice_shape, transform = self.slice_view(node, ref, node.params["index"])
        for k in range(cotangent.ndim):
            d = self.dim(cotangent, k)
            if d != 1 or slice_shape[k] == 1:
                self.dims.unify(slice_shape[k], d, self.context(node))
        name = f"a{self.p(node)}"
        self.allocate(name, node, zeros=True)
        vc = self.values[cotangent.id]
        # A cotangent of size 1 on an axis the slice is longer on is broadcast: loop over the slice.
        domain = tuple(self.dims.find(d) for d in slice_shape[:cotangent.ndim])
        broadcast = domain != self.dims_of(cotangent)
        if vc.kind == "fused" and vc.array is None and not broadcast:
            step = self.steps[vc.group]
        else:
            step = self.find_group(domain if broadcast else self.shape[cotangent.id], self.ready(cotangent))
        self.current_domain = domain if broadcast else self.dims_of(cotangent)
        idx = [f"i{k}" for k in range(cotangent.ndim)]
        text, _, _ = self.operand(cotangent, idx, step.index)
        # A unit-step slice with a constant start, in a 1-d loop, may become carries (plan_carries).
        offset = None
        index = node.params["index"]
        unit_step = ref.ndim == 1 and len(index) == 1 and isinstance(index[0], tuple) and index[0][2] == 1
        if unit_step and len(step.domain) == 1 and node.dtype in ("float32", "float64"):
            start = transform(["0"])[0]
            offset = int(start) if start.isdigit() else None
        self.scatter_nodes[name] = node
        self.scatter_writes.setdefault(name, []).append(
            ScatterWrite(step.index, len(step.body), offset, slice_shape[0], text, self.comment(node)))
        step.body.append(f"{name}[{_index_text(transform(idx))}] += {text}  # {self.comment(node)}")
        step.labels.append(self.label(node))
        self.values[node.id] = Value("array", name=name, array=name, avail=step.index + 1, root=name,
                                     accumulator=True)

    def plan_carries(self):
        """Scatter buffers written once per element instead of zero-filled and ``+=``.

        Applies to a buffer whose every write is a scatter of a unit-step slice with a
        constant start into a 1-d buffer, all in one 1-d loop (the gradient of
        ``x[1:]``, ``x[:-1]``, ``x[2:]``...): anything else (other steps or starts, a
        plain ``+=`` from a sum, writes in two loops) keeps the general code.

        With offsets m (smallest) to M (largest), iteration i gives element i + m its
        last term, so it is stored then; the pending sums of elements i + m + 1 ..
        i + M ride in scalar locals (``<buffer>_carry<d>``, d = 0 .. M - m).  One
        pass over the buffer instead of three (fill, read, write), and no
        store-to-load dependency between iterations.  Each element adds its terms in
        the iterations' order, as the ``+=`` lines did.  Zeros follow the reference,
        where each scatter is zeros with its slice assigned and the scatters are
        added: an element every slice reaches is the sum of its terms alone (so
        sign(-0.0 + -0.0) stays negative, and ``+= `` onto a zero-filled buffer would
        have made it +0.0), and an element some slice misses has a +0.0 among its
        terms: the carries start at 0.0 before the loop, and the ones stored after it
        (never reached by the offset-m slice) get ``0.0 +``.  Elements no iteration
        reaches (before m, past the loop's reach) are zeroed before or after the loop.
        """
        groups: dict = {}
        for name, writes in self.scatter_writes.items():
            groups.setdefault(self.resolve(name), []).extend(writes)
        added_into = {self.resolve(name) for name in self.added_into}
        edits: dict = {}  # step index -> {body position: replacement lines}
        for root, writes in groups.items():
            if root in added_into or root not in self.scatter_nodes or root in self.dropped:
                continue
            if any(w.offset is None for w in writes) or len({w.step for w in writes}) != 1:
                continue
            step = self.steps[writes[0].step]
            length = self.dims.find(step.domain[0])
            if any(self.dims.find(w.length) != length for w in writes):
                continue  # the loop must run over every slice exactly (lower_scatter makes it so)
            node = self.scatter_nodes[root]
            size = self.dims.find(self.shape[node.id][0])
            writes = sorted(writes, key=lambda w: w.position)
            low = min(w.offset for w in writes)
            span = max(w.offset for w in writes) - low
            zero = literal(0, node.dtype)
            carry = [f"{root}_carry{d}" for d in range(span + 1)]
            replaced = edits.setdefault(step.index, {})
            fresh = False
            for w in writes:
                d = w.offset - low
                if d == span and not fresh:  # element i + M: its first term (see the docstring on zeros)
                    replaced[w.position] = [f"{carry[d]} = {w.value}  # {w.comment}"]
                    fresh = True
                else:
                    replaced[w.position] = [f"{carry[d]} += {w.value}  # {w.comment}"]
            last = replaced[writes[-1].position]
            last.append(f"{root}[{_affine('i0', low, 1)}] = {carry[0]}  # complete: stored once")
            last.extend(f"{carry[d]} = {carry[d + 1]}" for d in range(span))
            step.before.append(f"# {self.label(node)}: each element stored once; pending sums in {root}_carry*")
            if low:
                head = min(low, size) if isinstance(size, int) else f"min({low}, {size})"
                if head != 0:
                    step.before += [f"for i0 in range({head}):", f"    {root}[i0] = {zero}"]
            step.before += [f"{carry[d]} = {zero}" for d in range(span)]
            for d in range(span):  # the carries hold the last elements the loop reached
                element = _plus(length, low + d)
                store = f"{root}[{element}] = {zero} + {carry[d]}"  # not reached by the offset-m slice
                if isinstance(element, int) and isinstance(size, int):
                    if element < size:
                        step.after.append(store)
                else:
                    step.after += [f"if {element} < {size}:", f"    {store}"]
            tail = _plus(length, low + span)  # elements past the loop's reach
            static_past_end = isinstance(tail, int) and isinstance(size, int) and tail >= size
            if not static_past_end and self.shortened_by(length, size) not in range(low + span + 1):
                step.after += [f"for i0 in range({tail}, {size}):", f"    {root}[i0] = {zero}"]
            # the allocation without its zero-fill loop
            self.allocations = [(name, code[:1] if name == root else code) for name, code in self.allocations]
        for index, replaced in edits.items():
            step = self.steps[index]
            step.body = [line for k, item in enumerate(step.body) for line in replaced.get(k, [item])]

    def shortened_by(self, length, size) -> Optional[int]:
        """k when the run-time ``length`` is ``max(size - k, 0)`` (a slice like x[1:] of x)."""
        for key, name in self.dims.memo.items():
            if key[0] == "minus" and self.dims.find(name) == length and self.dims.find(key[1]) == size:
                return key[2]
        return None

    # --- data movement that needs a real array
    def lower_reshape(self, node: Expr):
        (x,) = node.inputs
        target = node.params["shape"]
        xdims = self.dims_of(x)
        if None in x.type.shape and -1 in target:
            known = int(np.prod([d for d in target if d != -1], dtype=np.int64))
            statics = int(np.prod([d for d in xdims if isinstance(d, int)], dtype=np.int64))
            variables = [d for d in xdims if isinstance(d, str)]
            if len(variables) == 1 and statics == known:
                free = variables[0]  # (n, 3) -> (-1, 3): the same n
            else:
                total = self.dims.product(xdims)
                free = self.dims.new(f"({total}) // {known}", f"size of {x.label()} / {known}",
                                     key=("reshape", xdims, known))
                self.dims.require(f"{free} * {known}", total, f"{known} * ({self.dims.description(free)})",
                                  f"the size of {x.label()}", self.context(node))
            shape = tuple(free if d == -1 else d for d in target)
        else:
            shape = tuple(d for d in node.type.shape)
        self.shape[node.id] = shape
        if self.same_scalar(node, x):
            return
        array = self.contiguous(x)
        at = self.avail(x)
        if node.ndim == 0:
            name = f"v{self.p(node)}"
            self.prelude(at).append(f"{name} = {array}[{', '.join(['0'] * x.ndim)}]  # {self.comment(node)}")
            self.values[node.id] = Value("scalar", name=name, avail=at)
            return
        if array.endswith(".T"):
            array = self.copy_of(x)
            at = self.avail(x)
        name = f"a{self.p(node)}"
        self.prelude(at).append(f"{name} = {array}.reshape({self.shape_text(node)})  # {self.comment(node)}")
        root = self.values[x.id].root if self.values[x.id].kind != "view" else self.values[x.id].copy
        self.values[node.id] = Value("array", name=name, array=name, avail=at, root=root)

    def copy_of(self, node: Expr) -> str:
        """A C-contiguous copy of a view."""
        v = self.values[node.id]
        if v.copy is None:
            v.copy = f"c{self.p(node)}"
            self.allocate(v.copy, node)
            step = self.find_group(self.shape[node.id], v.avail)
            idx = [f"i{k}" for k in range(node.ndim)]
            step.body.append(f"{v.copy}[{_index_text(idx)}] = {self.load(node, idx)}")
            v.avail = max(v.avail, step.index + 1)
        return v.copy

    def lower_concatenate(self, node: Expr):
        axis = node.params["axis"]
        parts = node.inputs
        first = parts[0]
        shape = []
        for a in range(node.ndim):
            if a == axis:
                dims = [self.dim(x, a) for x in parts]
                statics = sum(d for d in dims if isinstance(d, int))
                names = [d for d in dims if isinstance(d, str)]
                if not names:
                    shape.append(statics)
                else:
                    code = " + ".join(names + ([str(statics)] if statics else []))
                    shape.append(self.dims.new(code, f"total length of the concatenation at {self.context(node)}",
                                               key=("concat", tuple(dims))))
            else:
                d = self.dim(first, a)
                for x in parts[1:]:
                    d = self.dims.unify(d, self.dim(x, a), self.context(node))
                shape.append(d)
        self.shape[node.id] = tuple(shape)
        name = f"a{self.p(node)}"
        self.allocate(name, node)
        offset = []
        avail = 0
        for x in parts:
            vx = self.values[x.id]
            if x.ndim and vx.kind == "fused" and vx.array is None:
                step = self.steps[vx.group]
            else:
                step = self.find_group(self.shape[x.id], self.ready(x))
            self.current_domain = self.dims_of(x)
            idx = [f"i{k}" for k in range(x.ndim)]
            text, _, _ = self.operand(x, idx, step.index)
            start = " + ".join(offset) if offset else "0"
            out_idx = [_affine(i, start, 1) if a == axis else i for a, i in enumerate(idx)]
            step.body.append(f"{name}[{_index_text(out_idx)}] = {text}  # part of {self.comment(node)}")
            step.labels.append(self.label(node))
            avail = max(avail, step.index + 1)
            d = self.dim(x, axis)
            offset.append(str(d))
        self.values[node.id] = Value("array", name=name, array=name, avail=avail, root=name)

    def lower_matmul(self, node: Expr):
        a, b = node.inputs
        ad, bd = self.shape[a.id], self.shape[b.id]
        context = self.context(node)
        k_a = ad[-1]
        k_b = bd[-2] if b.ndim > 1 else bd[0]
        self.dims.unify(k_a, k_b, context)
        batch_a = ad[:-2] if a.ndim > 2 else ()
        batch_b = bd[:-2] if b.ndim > 2 else ()
        nb = max(len(batch_a), len(batch_b))
        batch = []
        for k in range(nb):
            da = batch_a[k - (nb - len(batch_a))] if k >= nb - len(batch_a) else 1
            db = batch_b[k - (nb - len(batch_b))] if k >= nb - len(batch_b) else 1
            da, db = self.dims.find(da), self.dims.find(db)
            batch.append(db if da == 1 else da if db == 1 else self.dims.unify(da, db, context))
        rows = (ad[-2],) if a.ndim > 1 else ()
        cols = (bd[-1],) if b.ndim > 1 else ()
        self.shape[node.id] = tuple(batch) + rows + cols
        self.ready(a)
        self.ready(b)
        x, transpose_a = self.gemm_operand(a)
        y, transpose_b = self.gemm_operand(b)
        at = max(self.avail(a), self.avail(b))
        m = self.dims.text(ad[-2]) if a.ndim > 1 else "1"
        k = self.dims.text(k_a)
        n = self.dims.text(bd[-1]) if b.ndim > 1 else "1"
        blas = node.dtype in ("float32", "float64")
        lines = [f"# {self.comment(node)}"]
        name = f"a{self.p(node)}"
        if node.ndim == 0:
            lines.append(f"{name} = np.empty((1,), dtype={NUMPY_NAME[node.dtype]})")
        else:
            self.allocate(name, node)
        bidx = [f"b{j}" for j in range(nb)]
        indent = ""
        for j in range(nb):
            lines.append(f"{indent}for b{j} in range({self.dims.text(batch[j])}):")
            indent += "    "

        def batch_part(array, dims, nd):
            lead = nd - 2 if nd > 2 else 0
            if not lead:
                return array
            picks = ["0" if self.dims.find(dims[j]) == 1 else bidx[nb - lead + j] for j in range(lead)]
            return f"{array}[{_index_text(picks)}]"

        xa, yb = batch_part(x, ad, a.ndim), batch_part(y, bd, b.ndim)
        out = f"{name}[{_index_text(bidx)}]" if nb else name
        gemm = "_gemm" if blas else "_gemm_loops"  # BLAS takes float32/float64 only
        lines.append(f"{indent}{gemm}({out}, {xa}, {yb}, {m}, {n}, {k}, {transpose_a}, {transpose_b})")
        if node.ndim == 0:
            scalar = f"v{self.p(node)}"
            lines.append(f"{scalar} = {name}[0]")
            self.values[node.id] = Value("scalar", name=scalar, avail=at)
        else:
            self.values[node.id] = Value("array", name=name, array=name, avail=at, root=name)
        self.prelude(at).extend(lines)

    def gemm_operand(self, node: Expr):
        """(C-contiguous array, 1 if it is to be read transposed) for a matmul operand."""
        v = self.values[node.id]
        self.fill(node)
        if v.kind == "view" and node.op.name == "transpose" and node.ndim == 2:
            base = self.values[v.base.id]
            if base.kind != "view" and base.array:
                return base.array, 1
        return self.copy_or_array(node), 0

    def copy_or_array(self, node: Expr) -> str:
        v = self.values[node.id]
        self.fill(node)
        self.store(node)
        return self.copy_of(node) if v.kind == "view" else v.array

    # --- output
    def output_text(self, node: Expr, returned: set) -> str:
        v = self.values[node.id]
        if node.ndim == 0:
            return v.name
        if v.kind == "scalar":
            self.fill(node)
            text = root = v.array
        elif v.kind == "view":
            text = root = self.copy_of(node)
        else:
            self.store(node)
            v = self.values[node.id]
            root = self.resolve(v.root or v.array)
            text = v.array
        # Outputs never alias inputs, constants or each other (the same node twice included).
        if root in returned or root in self.param_of.values() or root.startswith("k"):
            text = f"{text}.copy()"
        returned.add(root)
        return text

    def resolve(self, name: str) -> str:
        while name in self.aliases:
            name = self.aliases[name]
        return name

    # --- rendering
    def render(self) -> Program:
        returned: set = set()
        results = [self.output_text(o, returned) for o in self.outputs]
        self.plan_carries()  # after the outputs: copying one may add writes to a loop
        params = [self.param_of[s.id] for s in self.inputs] + [name for name, _, _ in self.hidden]
        sig_types = []
        for s in self.inputs:
            sig_types.append(self.numba_type(s.dtype, s.ndim))
        for _, array, node in self.hidden:
            sig_types.append(self.numba_type(node.dtype, array.ndim))
        signature = "(" + ", ".join(sig_types) + ("," if len(sig_types) == 1 else "") + ")"

        body = []
        for name, code in self.dims.definitions:
            body.append(f"{name} = {code}  # {self.dims.describe[name]}")
        for s in self.inputs:  # static dimensions of inputs
            for k, d in enumerate(s.type.shape):
                if d is not None:
                    self.dims.checks.append((f"{self.param_of[s.id]}.shape[{k}]", str(d), f"{s.name}.shape[{k}]",
                                             f"the declared {d}", f"input {s.name} of type {s.type!r}"))
        # One raise site for all checks: each raise is a lot of code for Numba to
        # compile; the caller finds which check failed by re-evaluating them in Python.
        if self.dims.checks:
            body.append("sizes_agree = True")
            for left, right, _, _, context in self.dims.checks:
                body.append(f"if {left} != {right}:  # {context}")
                body.append("    sizes_agree = False")
            body.append("if not sizes_agree:")
            body.append("    raise KernelShapeError()")
        for name, lines in self.allocations:
            if name not in self.dropped:
                body.extend(lines)
        regions = RegionCounter()
        for index in range(len(self.steps) + 1):
            body.extend(regions.lines(self.prelude(index), self))
            if index == len(self.steps):
                break
            step = self.steps[index]
            if not step.body:
                continue
            loops = [f"for i{k} in range({self.dims.text(d)}):" for k, d in enumerate(step.domain)]
            shape = ", ".join(self.dims.text(d) for d in step.domain)
            labels = " ".join(step.labels)
            body.extend(step.before)
            body.append(f"# loop {index} over ({shape}): {labels}")
            indent = ""
            for loop in loops:
                body.append(indent + loop)
                indent += "    "
            body.extend(indent + line for line in regions.lines(step.body, self))
            body.extend(step.after)
        if len(results) == 1 and self.single_output:
            ret = results[0]
        else:
            ret = "(" + ", ".join(results) + ("," if len(results) == 1 else "") + ")"
        body.append(f"return {ret}")
        text = "\n".join(self.apply_aliases(line) for line in body)
        header = [
            "# Generated by symdiff (Numba backend). One kernel for the whole function.",
            "import math",
            "import numba",
            "import numpy as np",
            "from numba import njit",
            "from numba.types import boolean, float32, float64, int64",
            "from symdiff.backends.runtime import *",
        ]
        if regions.definitions:
            header.append("from symdiff.backends.scalar_ir import make_region")
            header.append("")
            header.extend(regions.definitions)
        header.append("")
        header.append("")
        header.append(f"@njit({signature}, nogil=True, error_model=\"numpy\", cache=_SD_CACHE)")
        header.append(f"def {self.kernel_name}({', '.join(params)}):")
        source = "\n".join(header) + "\n" + "\n".join("    " + line if line else "" for line in text.split("\n")) + "\n"
        return Program(source=source, kernel_name=self.kernel_name, params=params,
                       input_names=[s.name for s in self.inputs], hidden=[array for _, array, _ in self.hidden],
                       checks=list(self.dims.checks), dim_definitions=list(self.dims.definitions),
                       signature=signature, regions=regions.count)

    single_output = True

    def apply_aliases(self, line: str) -> str:
        if not self.aliases:
            return line
        return re.sub(r"\ba\d+\b", lambda m: self.resolve(m.group(0)), line)

    @staticmethod
    def numba_type(dtype: str, ndim: int) -> str:
        t = NUMBA_SCALAR[dtype]
        if ndim == 0:
            return t
        return f"{t}[{', '.join([':'] * (ndim - 1) + ['::1'])}]"


class RegionCounter:
    """Renders line lists; long runs of scalar statements become LLVM IR regions."""

    def __init__(self):
        self.count = 0
        self.definitions = []

    def lines(self, items: list, lowering: "Lowering") -> list:
        from . import scalar_ir

        out = []
        run: list = []

        def flush():
            if len(run) >= REGION_MIN_STATEMENTS:
                out.extend(self.region(run, items, lowering))
            else:
                out.extend(s.python() for s in run)
            run.clear()

        for item in items:
            if isinstance(item, ScalarStatement) and scalar_ir.supported(item.node):
                run.append(item)
                continue
            flush()
            out.append(item.python() if isinstance(item, ScalarStatement) else item)
        flush()
        return out

    def region(self, run: list, items: list, lowering: "Lowering") -> list:
        defined = {s.out for s in run}
        inputs: dict = {}
        hoisted = []
        instructions = []
        for s in run:
            operands = []
            for text, dtype, kind in s.operands:
                if kind == "literal":
                    operands.append(("const", text, dtype))
                elif text in defined:
                    operands.append(text)
                else:
                    if text not in inputs:
                        local = text if kind == "local" else f"t{len(hoisted)}_{self.count}"
                        if kind != "local":
                            hoisted.append(f"{local} = {text}")
                        inputs[text] = (local, dtype)
                    operands.append(inputs[text][0])
            instructions.append((s.out, s.node.op.name, tuple(operands), s.node.dtype, s.node.params.get("dtype")))
        # outputs: values defined here and read after the run (anywhere else in the program)
        used_elsewhere = self.names_used_outside(run, lowering)
        outputs = [s.out for s in run if s.out in used_elsewhere]
        name = f"_region{self.count}"
        self.count += 1
        in_locals = [local for local, _ in inputs.values()]
        in_types = [dtype for _, dtype in inputs.values()]
        out_types = {s.out: s.node.dtype for s in run}
        self.definitions.append(f"{name} = make_region({name!r}, {in_locals!r}, {in_types!r}, [")
        for s, ins in zip(run, instructions):
            self.definitions.append(f"    {ins!r},  # {s.comment}")
        self.definitions.append(f"], {outputs!r}, {[out_types[o] for o in outputs]!r})")
        lines = list(hoisted)
        lines.append(f"# {len(run)} scalar statements compiled as LLVM IR: {name}")
        targets = ", ".join(outputs) + ("," if len(outputs) == 1 else "")
        args = ", ".join(in_locals) + ("," if len(in_locals) == 1 else "")
        if outputs:
            lines.append(f"({targets}) = {name}(({args}))")
        return lines

    @staticmethod
    def names_used_outside(run: list, lowering: "Lowering") -> set:
        inside = {id(s) for s in run}
        used = set()
        pattern = re.compile(r"\b[vr]\d+\b")

        def scan(items):
            for item in items:
                if isinstance(item, ScalarStatement):
                    if id(item) in inside:
                        continue
                    for text, _, _ in item.operands:
                        used.update(pattern.findall(text))
                else:
                    used.update(pattern.findall(item))

        for items in lowering.preludes.values():
            scan(items)
        for step in lowering.steps:
            scan(step.body)
        for o in lowering.outputs:
            v = lowering.values[o.id]
            used.update(pattern.findall(v.name or ""))
        return used


def lower(inputs: list, outputs: list, single: bool) -> Program:
    """The kernel source and calling facts for ``outputs`` of the symbols ``inputs``.

    >>> import symdiff as sd
    >>> x = sd.vector("x")
    >>> print(lower([x], [sd.sum(sd.exp(x))], single=True).source.split("def ")[1])
    kernel(in0_x):
        n0 = in0_x.shape[0]  # x.shape[0]
        r2 = 0.0  # %2 accumulates sum
        # loop 0 over (n0): %1 %2
        for i0 in range(n0):
            v1 = math.exp(in0_x[i0])  # %1 = exp x
            r2 += v1  # %2 = sum %1 [axes=(0,), keepdims=False]
        return r2
    <BLANKLINE>
    """
    lowering = Lowering(inputs, outputs)
    lowering.single_output = single
    return lowering.run()
