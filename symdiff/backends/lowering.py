"""Lower a graph to the source of ONE Numba kernel: the driver.

This module schedules nodes into loop nests, fuses elementwise work and manages
buffers and sizes.  How each non-elementwise op becomes code lives beside its kin,
one module per op family (``FAMILIES``: ``leaves``, ``reductions``, ``views``,
``linalg``, ...), registered by op name with ``@lowers``; elementwise ops are spelled
by ``elementwise.scalar_code``.

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
- a transcendental op on an array is one vector-math pass (libmvec, ``vector_math``):
  Numba's loops call scalar libm, about 10x slower;
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

import importlib
import math
import re
from dataclasses import dataclass, field
from typing import NamedTuple, Optional

import numpy as np

from ..errors import SymdiffError
from ..ir import OPS, Expr, toposort

SLICE_NONE = 1 << 62  # same value as runtime.SLICE_NONE (the runtime module imports Numba)

NUMBA_SCALAR = {"float64": "float64", "float32": "float32", "int64": "int64", "bool": "boolean"}
NUMPY_NAME = {"float64": "np.float64", "float32": "np.float32", "int64": "np.int64", "bool": "np.bool_"}

# Lowerings of non-elementwise ops, by op name: ``fn(lowering, node)``.  Each op family
# registers its own in a module of this package (``@lowers``), listed in FAMILIES.
LOWERINGS: dict = {}

# Passes over the whole program after the outputs are placed (``@finishing_pass``).
FINISHING_PASSES: list = []

# The modules of symdiff.backends that register lowerings, one op family each.
# Elementwise ops need none: their scalar spellings fuse into loops (``elementwise``).
FAMILIES = (
    "elementwise",
    "leaves",
    "reductions",
    "views",
    "linalg",
    "custom",
    "ordering",
    "creation",
    "convolution",
    "indexing",
    "factorizations",
    "loops",
)


def lowers(*op_names):
    """Register the decorated ``fn(lowering, node)`` as the lowering of ``op_names``."""

    def register(fn):
        for name in op_names:
            if name in LOWERINGS:
                raise LoweringError(f"op {name!r} has two lowerings: {LOWERINGS[name].__module__} and {fn.__module__}")
            LOWERINGS[name] = fn
        return fn

    return register


def lowering_of(op):
    """The lowering registered for ``op``: by its name, else for its whole kind
    (``"kind:custom"``: users' ops), else None."""
    return LOWERINGS.get(op.name) or LOWERINGS.get(f"kind:{op.kind}")


def finishing_pass(fn):
    """Register ``fn(lowering)`` to run once every node is placed, before rendering."""
    FINISHING_PASSES.append(fn)
    return fn


REGION_MIN_STATEMENTS = 48  # shorter runs of scalar statements stay Python source
OPAQUE_INNER_FROM = 8  # static inner loop sizes from here on are hidden from LLVM (Dims.loop_bound)


class LoweringError(SymdiffError):
    """An op the Numba backend cannot lower."""


def unsupported_ops() -> list:
    """Registered ops the backend has no lowering for (the guard test wants []).

    >>> unsupported_ops()
    []
    """
    return sorted(
        name for name, op in OPS.items()
        if lowering_of(op) is None and op.compiled_as is None  # compiled_as: sd.function compiles the composite
        and not (op.kind == "elementwise" and elementwise.scalar_code(op))
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
        self.errors: dict = {}  # context -> (error class, message) of a check_sizes node's check
        # Sizes known only once part of the kernel ran (the trip count of a while loop, or of
        # a loop whose count is computed): name -> the prelude (step index) defining it.
        self.late: dict = {}
        self.late_definitions = []  # (name, code) of sizes computed from late ones

    def late_in(self, code: str) -> list:
        """The late sizes that the source ``code`` mentions."""
        return [d for d in self.late if re.search(rf"\b{d}\b", code)]

    def new(self, code: str, description: str, key=None):
        if key is not None and key in self.memo:
            return self.memo[key]
        late = self.late_in(code)
        if late:  # computed from a late size: late too, defined right after it
            name = f"nlate{len(self.late_definitions)}"
            self.late[name] = max(self.late[d] for d in late)
            self.late_definitions.append((name, code))
        else:
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

    def loop_bound(self, d, inner: bool) -> str:
        """The bound of a loop over ``d``.  A static size of at least OPAQUE_INNER_FROM on an
        inner loop is hidden from LLVM (``runtime._opaque``): LLVM unrolls such a loop
        completely before its vectoriser runs, which then cannot vectorise the nest (20,000 x
        64: a fill 568 -> 115 us, a sum 1,042 -> 196 us).  Shorter inner loops gain from the
        unrolling (a fill of 2-wide rows: 287 us as a constant, 853 hidden)."""
        d = self.find(d)
        if inner and isinstance(d, int) and d >= OPAQUE_INNER_FROM:
            return f"_opaque({d})"
        return str(d)

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
        if isinstance(b, int) or (isinstance(a, str) and self.age(a) > self.age(b)):
            a, b = b, a
        self.parent[b] = a  # the static or the older one represents both
        return a

    def age(self, name: str) -> tuple:
        """Definition order (late sizes after every size computed at the kernel's top)."""
        return (1, self.late[name]) if name in self.late else (0, int(name[1:]))

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


@dataclass(slots=True)
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


@dataclass(slots=True)
class ScalarStatement:
    """``out = op(operands)``: one elementwise node on scalars, rendered either as
    Python (its scalar spelling) or, inside a long run, as LLVM IR."""

    out: str
    node: Expr
    operands: list  # (text, dtype, kind) with kind "local", "literal" or "load"
    comment: str

    def python(self) -> str:
        params = self.node.params
        code = elementwise.scalar_code(self.node.op, params, self.node.dtype).format(*(text for text, _, _ in self.operands),
                                                                        **params)
        if self.node.dtype == "float32" and not code.startswith("np.float32("):
            code = f"np.float32({code})"  # math.* and mixed literals compute in float64; NumPy stays float32
        return f"{self.out} = {code}  # {self.comment}"


@dataclass(slots=True)
class Step:
    index: int
    domain: tuple = ()  # a loop nest's shape (dims); () for a statement step
    body: list = field(default_factory=list)
    loop: bool = True
    labels: list = field(default_factory=list)
    before: list = field(default_factory=list)  # lines right before the loop nest (after the prelude)
    after: list = field(default_factory=list)  # lines right after it


class Allocated(NamedTuple):
    """An array the kernel allocates: its name, shape (source), dtype and ndim."""
    name: str
    shape: str
    dtype: str
    ndim: int

    def line(self, name: str = "") -> str:
        return f"{name or self.name} = _empty({self.shape}, {NUMPY_NAME[self.dtype]})"


@dataclass(slots=True)
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
    workspace: list = field(default_factory=list)  # Allocated: a loop body's arrays (their sizes read the params)
    workspace_static: bool = True  # whether every size is static (no workspace size reads a param)
    prologue: int = 0  # lines of the function computing and checking sizes, before its allocations
    returned_buffers: list = field(default_factory=list)  # workspace arrays the body returns
    check_errors: dict = field(default_factory=dict)  # context -> (error class, message): check_sizes


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
    """Builds the program for ``outputs`` as a function of ``inputs``: symbols, or any
    nodes whose values the caller computes (they become parameters; see ``staged``).
    ``extra_roots`` are nodes lowered without being returned (``result_hooks`` may read them)."""

    def __init__(self, inputs: list, outputs: list, kernel_name: str = "kernel", extra_roots: tuple = (),
                 node_order: Optional[dict] = None):
        self.inputs = inputs
        self.outputs = outputs
        self.kernel_name = kernel_name
        given = {n.id for n in inputs if not n.is_symbol}
        every = toposort(list(outputs) + list(extra_roots), stop=given)
        if node_order:  # another process's creation order (node id -> rank): its generated names
            every.sort(key=lambda n: node_order[n.id])
        self.given = [n for n in inputs if n.id in given]
        self.nodes = [n for n in every if n.id not in given]
        self.position = {n.id: p for p, n in enumerate(every)}
        self.uses: dict = {n.id: 0 for n in every}
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
        self.allocated: dict = {}  # name -> Allocated (what a loop body's workspace passes)
        self.aliases: dict = {}
        self.dropped: set = set()
        self.hidden: list = []
        self.module_lines: dict = {}  # name -> a module-level definition the kernel needs (users' functions)
        self.scatter_writes: dict = {}  # buffer -> [ScatterWrite]
        self.scatter_nodes: dict = {}  # buffer -> the scatter_slice node it was allocated for
        self.added_into: set = set()  # buffers that also receive a plain ``+=`` (not a scatter)
        self.param_of: dict = {}
        # Parameters are always prefixed: a symbol may be named like anything the
        # kernel's source uses (np, math, sizes_agree, a13, ...).
        for k, sym in enumerate(inputs):
            self.param_of[sym.id] = f"in{k}_{sym.name if sym.is_symbol else 'given'}"
        self.result_hooks: list = []  # fn(lowering) -> the text of one more returned value

    # --- small helpers
    def p(self, node: Expr) -> int:
        return self.position[node.id]

    def dim(self, node: Expr, axis: int):
        return self.dims.find(self.shape[node.id][axis])

    def dims_of(self, node: Expr) -> tuple:
        return tuple(map(self.dims.find, self.shape[node.id]))

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
        lines = [f"{name} = _empty({self.shape_text(node)}, {dtype})  # {self.label(node)}"]
        self.allocated[name] = Allocated(name, self.shape_text(node), node.dtype, node.ndim)
        if zeros:
            fill = literal(0, node.dtype)
        if fill is not None:
            indent = ""
            for k, d in enumerate(self.shape[node.id]):
                lines.append(f"{indent}for i{k} in range({self.dims.loop_bound(d, k > 0)}):")
                indent += "    "
            lines.append(f"{indent}{name}[{_index_text([f'i{k}' for k in range(node.ndim)])}] = {fill}")
        if fill_at is not None:
            late = self.dims.late_in(lines[0])  # the fill runs where the size is known
            fill_at = max([fill_at] + [self.dims.late[d] for d in late])
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
        for node in self.given:
            lowering_of(OPS["symbol"])(self, node)
        for node in self.nodes:
            if node.op.kind == "elementwise":
                self.infer_elementwise_shape(node)
                if node.ndim == 0:
                    self.lower_scalar(node)
                else:
                    self.lower_elementwise(node)
            else:
                lower_node = lowering_of(node.op)
                if lower_node is None:
                    raise LoweringError(f"the Numba backend has no lowering for op {node.op.name!r}")
                lower_node(self, node)
        return self.render()

    # --- elementwise: fusion into loop nests
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
        return x.ndim == len(idx) and self.dims_of(x) == self.current_domain

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
        if elementwise.use_vector_math(self, node):
            elementwise.lower_vector_math(self, node)
            return
        inline = []
        in_domain = []  # per input: fused into a loop nest over this node's domain
        for x in node.inputs:
            v = self.values[x.id]
            fused = v.kind == "fused" and self.dims_of(x) == self.current_domain
            in_domain.append(fused)
            if fused and v.array is None and x.ndim == node.ndim:
                inline.append(v.group)
        step = None
        if inline:
            target = max(inline)
            others = [x for x, fused in zip(node.inputs, in_domain) if not (fused and self.values[x.id].group == target)]
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

    # --- buffers for the op families: one value, contiguous copies
    def same_scalar(self, node: Expr, x: Expr) -> bool:
        """A view or reshape of one value (0-d, or every element equal) is that value."""
        if x.ndim and self.values[x.id].kind != "scalar":
            return False
        self.ready(x)
        self.values[node.id] = Value("scalar", name=self.values[x.id].name, avail=self.avail(x))
        return True

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
            text = f"_copy({text})"
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
        results += [hook(self) for hook in self.result_hooks]
        for finish in FINISHING_PASSES:  # after the outputs: copying one may add writes to a loop
            finish(self)
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
                    self.dims.checks.append((f"{self.param_of[s.id]}.shape[{k}]", str(d),
                                             f"{self.label(s)}.shape[{k}]", f"the declared {d}",
                                             f"input {self.label(s)} of type {s.type!r}"))
        deferred: dict = {}  # prelude index -> (late sizes, lines) to place right after their definition
        for name, code in self.dims.late_definitions:
            late = self.dims.late_in(code)
            deferred.setdefault(self.dims.late[name], []).append(
                (late, [f"{name} = {code}  # {self.dims.describe[name]}"]))
        late_checks = []
        for check in self.dims.checks:  # a late size is checked where it is known, with its own message
            late = self.dims.late_in(check[0] + " " + check[1])
            if late:
                left, right, left_text, right_text, context = check
                message = f"{context}: {left_text} and {right_text} differ"
                deferred.setdefault(max(self.dims.late[d] for d in late), []).append(
                    (late, [f"if {left} != {right}:", f"    raise KernelLoopShapeError({message!r})"]))
                late_checks.append(check)
        self.dims.checks = [check for check in self.dims.checks if check not in late_checks]
        # One raise site for all checks: each raise is a lot of code for Numba to
        # compile; the caller finds which check failed by re-evaluating them in Python.
        if self.dims.checks:
            body.append("sizes_agree = True")
            for left, right, _, _, context in self.dims.checks:
                body.append(f"if {left} != {right}:  # {context}")
                body.append("    sizes_agree = False")
            body.append("if not sizes_agree:")
            body.append("    raise KernelShapeError()")
        prologue = len(body)  # the sizes and their checks come before any allocation
        workspace = []
        for name, lines in self.allocations:
            if name in self.dropped:
                continue
            late = self.dims.late_in(lines[0])
            if late:
                deferred.setdefault(max(self.dims.late[d] for d in late), []).append((late, lines))
                continue
            if self.workspace and name in self.allocated:
                workspace.append(self.allocated[name])
                lines = lines[1:]  # a fill runs at every call
            body.extend(lines)
        regions = RegionCounter()
        for index in range(len(self.steps) + 1):
            prelude = self.prelude(index)
            for late, lines in deferred.get(index, []):  # right after the line defining the size
                at = max(k for k, line in enumerate(prelude)
                         if isinstance(line, str) and any(line.startswith(f"{d} = ") for d in late))
                prelude[at + 1:at + 1] = lines
            body.extend(regions.lines(prelude, self))
            if index == len(self.steps):
                break
            step = self.steps[index]
            if not step.body:
                continue
            loops = [f"for i{k} in range({self.dims.loop_bound(d, k > 0)}):" for k, d in enumerate(step.domain)]
            shape = ", ".join(self.dims.text(d) for d in step.domain)
            labels = " ".join(step.labels[:24]) + (f" ... ({len(step.labels)} in all)" if len(step.labels) > 24 else "")
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
        header.extend(self.module_lines.values())
        if regions.definitions:
            header.append("from symdiff.backends.scalar_ir import make_region")
            header.append("")
            header.extend(regions.definitions)
        header.append("")
        header.append("")
        returned_buffers = []
        if workspace:
            names = [array.name for array in workspace]
            returned = set(_NAME.findall(ret))
            returned_buffers = [name for name in names if name in returned]
            params = params + names
            types = ", ".join(self.numba_type(array.dtype, array.ndim) for array in workspace)
            signature = signature[:-1].rstrip(",") + ", " + types + ")"
        header.append(f"@njit({signature}, nogil=True, error_model=\"numpy\", cache=_SD_CACHE)")
        header.append(f"def {self.kernel_name}({', '.join(params)}):")
        source = "\n".join(header) + "\n" + "\n".join("    " + line if line else "" for line in text.split("\n")) + "\n"
        return Program(source=source, kernel_name=self.kernel_name, params=params,
                       input_names=[self.label(s) for s in self.inputs], hidden=[array for _, array, _ in self.hidden],
                       checks=list(self.dims.checks), dim_definitions=list(self.dims.definitions),
                       signature=signature, regions=regions.count,
                       workspace=workspace, workspace_static=not self.dims.definitions,
                       prologue=prologue,
                       returned_buffers=returned_buffers, check_errors=dict(self.dims.errors))

    single_output = True
    # A loop body is called once per step: its arrays are allocated once, by the loop
    # (``Program.workspace``), and passed in as parameters after its inputs (an allocation
    # costs ~60 ns, more than a step of a small body's arithmetic).
    workspace = False

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


_NAME = re.compile(r"\b[A-Za-z_]\w*\b")
_WRITTEN = re.compile(r"^\s*([A-Za-z_]\w*)\s*(\[[^\]]*\])?\s*(\+|-|\*)?=[^=]")


def _movable(line: str, position: int, last_read: dict) -> bool:
    """Whether ``line`` (an assignment) may run after the statements that follow it:
    nothing it writes is read by a later statement."""
    written = _WRITTEN.match(line)
    if written is None:
        return False
    return last_read.get(written.group(1), -1) < position


class RegionCounter:
    """Renders line lists; long runs of scalar statements become LLVM IR regions."""

    def __init__(self):
        self.count = 0
        self.definitions = []

    def lines(self, items: list, lowering: "Lowering") -> list:
        """Source lines for ``items``.  A plain line inside a run of scalar statements
        (a reduction's ``r5 = _sum_add(r5, v4)``, a store ``a7[i0] = v7``) does not end the run when
        no later statement reads what it writes: it moves after the run's region.
        Otherwise the gradient's statements would be a second region taking every
        forward value as an argument: a tuple of hundreds of elements, which Numba
        types and lowers in time quadratic in its length."""
        from . import scalar_ir

        last_read = {}  # name -> position of the last statement reading it
        for position, item in enumerate(items):
            if isinstance(item, ScalarStatement):
                for text, _, _ in item.operands:
                    for name in _NAME.findall(text):
                        last_read[name] = position
        out = []
        pending: list = []  # the run's statements and the lines that may move after it, in order

        def flush():
            run = [item for item in pending if isinstance(item, ScalarStatement)]
            if len(run) >= REGION_MIN_STATEMENTS:
                out.extend(self.region(run, items, lowering))
                out.extend(item for item in pending if not isinstance(item, ScalarStatement))
            else:
                out.extend(item.python() if isinstance(item, ScalarStatement) else item for item in pending)
            pending.clear()

        for position, item in enumerate(items):
            if isinstance(item, ScalarStatement) and scalar_ir.supported(item.node):
                pending.append(item)
                continue
            if pending and isinstance(item, str) and _movable(item, position, last_read):
                pending.append(item)
                continue
            flush()
            out.append(item.python() if isinstance(item, ScalarStatement) else item)
        flush()
        return out

    def region(self, run: list, items: list, lowering: "Lowering") -> list:
        from . import scalar_ir

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
        # The instructions are one string, a line each: Python compiles a string constant at
        # once, and a list of 45,000 tuples (the 5,000-layer chain) in 1.5 s, on every load.
        self.definitions.append(f'{name} = make_region({name!r}, {in_locals!r}, {in_types!r}, r"""')
        for s, ins in zip(run, instructions):
            comment = s.comment.replace('"""', "'''")
            self.definitions.append(f"    {scalar_ir.instruction_text(ins)}  # {comment}")
        # The part size is in the source, so it is in the cache key.
        split = len(run) > scalar_ir.SPLIT_ABOVE and len(inputs) <= scalar_ir.PART_SIZE
        part_size = scalar_ir.PART_SIZE if split else None
        self.definitions.append(f'""", {outputs!r}, {[out_types[o] for o in outputs]!r}'
                                + (f", part_size={part_size})" if part_size else ")"))
        lines = list(hoisted)
        parts = f" in {-(-len(run) // part_size)} parts" if part_size else ""
        lines.append(f"# {len(run)} scalar statements compiled as LLVM IR{parts}: {name}")
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


def lower(inputs: list, outputs: list, single: bool, node_order: Optional[dict] = None) -> Program:
    """The kernel source and calling facts for ``outputs`` of the symbols ``inputs``.

    >>> import symdiff as sd
    >>> x = sd.vector("x")
    >>> print(lower([x], [sd.sum(sd.sqrt(x))], single=True).source.split("def ")[1])
    kernel(in0_x):
        n0 = in0_x.shape[0]  # x.shape[0]
        r2 = 0.0  # %2 accumulates sum
        # loop 0 over (n0): %1 %2
        for i0 in range(n0):
            v1 = math.sqrt(in0_x[i0])  # %1 = sqrt x
            r2 = _sum_add(r2, v1)  # %2 = sum %1 [axes=(0,), keepdims=False]
        return r2
    <BLANKLINE>
    """
    lowering = Lowering(inputs, outputs, node_order=node_order)
    lowering.single_output = single
    return lowering.run()


# The op families register their lowerings (they import this module: keep this last).
for _family in FAMILIES:
    importlib.import_module(f".{_family}", __package__)
from . import elementwise  # noqa: E402  (scalar spellings, used by ScalarStatement)
