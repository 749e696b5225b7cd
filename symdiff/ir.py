"""The graph IR: immutable, hash-consed nodes and the op records they point to.

A node (:class:`Expr`) is ``(op, inputs, attrs)`` plus its static
:class:`~symdiff.types.TensorType`.  Nodes are created once per distinct structure
(hash-consing), so the same subexpression built twice, by the user or by
differentiation, is one node and its work is never duplicated.  Nodes are never
mutated: differentiation only appends.  Every node gets an increasing ``id`` when
it is created, and since a node's inputs exist before it, sorting by ``id`` is a
topological order; this is the graph's insertion order.

An :class:`Op` is one record holding everything about a primitive: its shape and
dtype rule (``infer``), its NumPy reference implementation (``impl``), its reverse
rule (``vjp``, one per input), its forward rule (``jvp``), its code-generation
spelling and the domain its tests sample from.  Adding a primitive means writing
one such record (see ``symdiff/ops/``).
"""

from __future__ import annotations

import functools
import gc
import itertools
import os
import sys
import threading
import weakref
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable, Optional, Sequence

import numpy as np

from .errors import ShapeError, SymdiffError
from .types import TensorType, fmt_shape

_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep
_CONTEXTLIB = __import__("contextlib").__file__

# --------------------------------------------------------------------------- ops

OPS: dict[str, "Op"] = {}
"""The registry: every primitive by name.  Tests are generated from it."""


def builtin_ops() -> dict:
    """The registry without users' ops (``sd.custom_op``): what symdiff ships and tests.

    >>> "exp" in builtin_ops()
    True
    """
    return {name: op for name, op in OPS.items() if not op.user}


@dataclass(eq=False)
class Op:
    """The record of one primitive operation.

    infer(input_types, **attrs) -> TensorType
        The shape/dtype rule; raises ShapeError/DTypeError for invalid inputs.
    impl(*values, **attrs) -> ndarray
        The NumPy reference implementation, the oracle for every backend.
    vjp
        One rule per input, ``rule(cotangent, out, *inputs, **attrs) -> Expr``
        giving the input's share of the cotangent, or ``None`` for an input no
        derivative flows into.  Variadic ops (concatenate) give one callable
        taking the input's index first.  ``vjp=None`` marks an op whose output carries no
        derivative at all (comparisons, ``sign``, ``stop_gradient``...).
    jvp(tangents, out, *inputs, **attrs) -> Expr | None
        Forward rule: ``tangents`` holds one Expr or None (zero) per input.
    kind
        "leaf", "elementwise", "reduction", "shape" or "linalg"; passes and
        backends dispatch on it.
    scalar_code
        For elementwise ops: the spelling as a scalar expression over ``{0}``,
        ``{1}``..., used by code generators (e.g. ``"math.exp({0})"``).
    samples(rng) -> list of (input arrays, attrs)
        Valid inputs for the registry-generated tests, inside the op's domain
        and away from kinks, on scalars, vectors, matrices and broadcasting.
    user
        True for ops registered by users (``sd.custom_op``, ``sd.custom_vjp``):
        rewrites treat them as opaque, and the built-in registry's tests skip them
        (users test theirs with ``symdiff.testing.check_op``).
    compiled_as(*inputs, **attrs) -> Expr
        For a primitive that exists for its derivative rules only: the composite that
        ``sd.function`` compiles in its place (``two_norm``: a gradient x / norm in one
        pass, where the composite's own chain rule underflowed).
    """

    name: str
    infer: Callable[..., TensorType]
    impl: Callable[..., np.ndarray]
    vjp: Optional[tuple] = None
    jvp: Optional[Callable] = None
    kind: str = "elementwise"
    scalar_code: Optional[str] = None
    samples: Optional[Callable] = None
    doc: str = ""
    user: bool = False
    compiled_as: Optional[Callable] = None

    def __post_init__(self):
        if self.name in OPS:
            raise SymdiffError(f"op {self.name!r} is registered twice")
        OPS[self.name] = self

    @property
    def differentiable(self) -> bool:
        return self.vjp is not None

    def vjp_rule(self, index: int) -> Optional[Callable]:
        """The reverse rule for input ``index`` (variadic ops take the index first)."""
        if self.vjp is None:
            return None
        if callable(self.vjp):
            return functools.partial(self.vjp, index)
        return self.vjp[index]

    def __call__(self, *inputs: "Expr", **attrs) -> "Expr":
        return make_node(self, inputs, attrs)

    def __repr__(self) -> str:
        return f"<op {self.name}>"


# -------------------------------------------------------------------------- nodes

_intern_table: "weakref.WeakValueDictionary[tuple, Expr]" = weakref.WeakValueDictionary()
_intern_lock = threading.Lock()
_next_id = itertools.count()
_local = threading.local()

# The front-end installs itself here so Expr's operators can reach it without a
# circular import (frontend imports the ops, which build on this module).
_frontend = None


class Expr:
    """A node of the graph: the result of ``op`` applied to ``inputs``.

    Users never construct Expr directly; symbols, constants, operators and the
    functions of ``symdiff`` create them.  ``==`` and ``hash`` are identity (so an
    Expr can key a dict, e.g. in :func:`symdiff.evaluate`); use ``sd.equal`` for
    the elementwise comparison.

    >>> import symdiff as sd
    >>> a, b = sd.scalars("a b")
    >>> (a + b) * (b + 1)
    Expr(%... = mul %... %... : f64[])
    """

    __slots__ = ("op", "inputs", "attrs", "type", "id", "origin", "note", "__weakref__")
    __array_ufunc__ = None  # make ``ndarray * Expr`` defer to Expr.__rmul__

    op: Op
    inputs: tuple
    attrs: tuple
    type: TensorType
    id: int
    origin: Optional[tuple]
    note: Optional[str]

    # --- static facts
    @property
    def shape(self) -> tuple:
        """Static dims as ints; a dimension unknown until run time is an int64 Expr.

        >>> import symdiff as sd
        >>> sd.matrix("W", (None, 3)).shape
        (Expr(%... = dim W : i64[]), 3)
        """
        return tuple(_frontend.dim(self, ax) if d is None else d for ax, d in enumerate(self.type.shape))

    @property
    def size(self):
        """The number of elements: an int, or an int64 Expr when a size is known only at run time.

        >>> import symdiff as sd
        >>> sd.matrix("W", (2, 3)).size, sd.matrix("X", (None, 3)).size
        (6, Expr(%... = mul %... %... : i64[]))
        """
        static = 1
        for d in self.type.shape:
            static *= d if d is not None else 1
        total = static
        for axis, d in enumerate(self.type.shape):
            if d is None:
                total = _frontend.dim(self, axis) * total
        return total

    @property
    def dtype(self) -> str:
        return self.type.dtype

    @property
    def ndim(self) -> int:
        return len(self.type.shape)

    @property
    def params(self) -> dict:
        """The static attributes as a dict."""
        return dict(self.attrs)

    @property
    def name(self) -> Optional[str]:
        """The symbol's name, for symbols; None otherwise."""
        return self.params.get("name") if self.op.name == "symbol" else None

    @property
    def is_symbol(self) -> bool:
        return self.op.name == "symbol"

    @property
    def is_constant(self) -> bool:
        return self.op.name == "constant"

    def label(self) -> str:
        """``a`` for a symbol named a, ``%7`` otherwise."""
        return self.name if self.is_symbol else f"%{self.id}"

    def where(self) -> str:
        """The user's ``file:line`` that created this node, or ''."""
        if self.origin is None:
            return ""
        return f"{self.origin[0]}:{self.origin[1]}"

    def __repr__(self) -> str:
        if self.is_symbol:
            return f"Expr({self.name} : {self.type!r})"
        if self.is_constant:
            value = self.params["value"].array
            text = np.array2string(value, threshold=6) if value.ndim else repr(value.item())
            return f"Expr(%{self.id} = constant {text} : {self.type!r})"
        args = " ".join(x.label() for x in self.inputs)
        return f"Expr(%{self.id} = {self.op.name} {args} : {self.type!r})"

    def __bool__(self):
        raise TypeError(
            "a symbolic expression has no truth value; use sd.where(cond, x, y) "
            "instead of `if`, and sd.equal(x, y) for elementwise equality"
        )

    def __iter__(self):
        if self.ndim == 0 or self.type.shape[0] is None:
            raise TypeError(f"cannot iterate over {self.type!r}: the first dimension is not static")
        return (self[i] for i in range(self.type.shape[0]))

    def __len__(self):
        if self.ndim == 0 or self.type.shape[0] is None:
            raise TypeError(f"len() of {self.type!r} is not known statically; use x.shape[0]")
        return self.type.shape[0]

    def __reduce__(self):
        # Rebuild through make_node so a loaded node is interned and gets a fresh id.
        return (_rebuild, (self.op.name, self.inputs, self.attrs))

    def __copy__(self):
        return self

    def __deepcopy__(self, memo):
        return self

    def __array__(self, *args, **kwargs):
        raise TypeError("a symdiff expression has no array value until it is evaluated (sd.evaluate); "
                        "to combine expressions use sd.stack or sd.concatenate")

    # --- operators: forwarded to the front-end, which promotes dtypes
    def __add__(self, other): return _frontend.add(self, other)
    def __radd__(self, other): return _frontend.add(other, self)
    def __sub__(self, other): return _frontend.subtract(self, other)
    def __rsub__(self, other): return _frontend.subtract(other, self)
    def __mul__(self, other): return _frontend.multiply(self, other)
    def __rmul__(self, other): return _frontend.multiply(other, self)
    def __truediv__(self, other): return _frontend.divide(self, other)
    def __rtruediv__(self, other): return _frontend.divide(other, self)
    def __pow__(self, other): return _frontend.power(self, other)
    def __rpow__(self, other): return _frontend.power(other, self)
    def __matmul__(self, other): return _frontend.matmul(self, other)
    def __rmatmul__(self, other): return _frontend.matmul(other, self)
    def __neg__(self): return _frontend.negative(self)
    def __pos__(self): return self
    def __abs__(self): return _frontend.abs(self)
    def __lt__(self, other): return _frontend.less(self, other)
    def __le__(self, other): return _frontend.less_equal(self, other)
    def __gt__(self, other): return _frontend.greater(self, other)
    def __ge__(self, other): return _frontend.greater_equal(self, other)
    def __and__(self, other): return _frontend.and_operator(self, other)
    def __rand__(self, other): return _frontend.and_operator(other, self)
    def __or__(self, other): return _frontend.or_operator(self, other)
    def __ror__(self, other): return _frontend.or_operator(other, self)
    def __invert__(self): return _frontend.invert_operator(self)
    def __getitem__(self, index): return _frontend.getitem(self, index)

    # --- NumPy-style methods
    @property
    def T(self): return _frontend.transpose(self)
    def sum(self, axis=None, keepdims=False): return _frontend.sum(self, axis, keepdims)
    def mean(self, axis=None, keepdims=False): return _frontend.mean(self, axis, keepdims)
    def max(self, axis=None, keepdims=False): return _frontend.max(self, axis, keepdims)
    def min(self, axis=None, keepdims=False): return _frontend.min(self, axis, keepdims)
    def prod(self, axis=None, keepdims=False): return _frontend.prod(self, axis, keepdims)
    def reshape(self, *shape): return _frontend.reshape(self, shape[0] if len(shape) == 1 else shape)
    def transpose(self, *axes): return _frontend.transpose(self, (axes[0] if len(axes) == 1 else axes) or None)
    def astype(self, dtype): return _frontend.astype(self, dtype)
    def dot(self, other): return _frontend.dot(self, other)
    def squeeze(self, axis=None): return _frontend.squeeze(self, axis)
    def clip(self, min=None, max=None): return _frontend.clip(self, min, max)  # noqa: A002  (NumPy's names)
    # the methods below reach functions of the front end's family modules through the package
    def ravel(self): return _api().ravel(self)
    def flatten(self): return _api().ravel(self)
    def swapaxes(self, axis1, axis2): return _api().swapaxes(self, axis1, axis2)
    def repeat(self, repeats, axis=None): return _api().repeat(self, repeats, axis)
    def take(self, indices, axis=None, mode="raise"): return _api().take(self, indices, axis, mode)
    def diagonal(self, offset=0, axis1=0, axis2=1): return _api().diagonal(self, offset, axis1, axis2)
    def trace(self, offset=0, axis1=0, axis2=1): return _api().trace(self, offset, axis1, axis2)
    def var(self, axis=None, ddof=0, keepdims=False): return _api().var(self, axis, ddof=ddof, keepdims=keepdims)
    def std(self, axis=None, ddof=0, keepdims=False): return _api().std(self, axis, ddof=ddof, keepdims=keepdims)
    def cumsum(self, axis=None): return _api().cumsum(self, axis)
    def cumprod(self, axis=None): return _api().cumprod(self, axis)
    def argmax(self, axis=None, keepdims=False): return _api().argmax(self, axis, keepdims=keepdims)
    def argmin(self, axis=None, keepdims=False): return _api().argmin(self, axis, keepdims=keepdims)
    def argsort(self, axis=-1): return _api().argsort(self, axis)
    def round(self, decimals=0): return _api().round(self, decimals)


def _api():
    """The ``symdiff`` package: the whole NumPy-named vocabulary, for Expr's methods.

    >>> import symdiff as sd
    >>> x = sd.vector("x", 3)
    >>> sd.evaluate([x.cumsum(), x.var(), x.argmax()], {x: [1.0, 3.0, 2.0]})
    [array([1., 4., 6.]), np.float64(0.6666666666666666), np.int64(1)]
    """
    return sys.modules["symdiff"]


def _rebuild(op_name, inputs, attrs):
    return make_node(OPS[op_name], inputs, dict(attrs))


class ConstValue:
    """A constant's array, hashable by dtype, shape and bytes (so -0.0 != 0.0)."""

    __slots__ = ("array", "_key")

    def __reduce__(self):
        return (ConstValue, (self.array,))

    def __init__(self, array: np.ndarray):
        array = np.array(array, copy=True)  # never alias (or later see changes to) user data
        array.flags.writeable = False
        self.array = array
        self._key = (array.dtype.str, array.shape, array.tobytes())

    def __hash__(self):
        return hash(self._key)

    def __eq__(self, other):
        return isinstance(other, ConstValue) and self._key == other._key

    def __repr__(self):
        return repr(self.array)


def _user_origin() -> Optional[tuple]:
    """(file, line) of the innermost frame outside the symdiff package."""
    origin = getattr(_local, "origin", None)
    if origin is not None:  # a pass building many nodes for one user call
        return origin
    frame = sys._getframe(2)
    while frame is not None and (frame.f_code.co_filename.startswith(_PACKAGE_DIR)
                                 or frame.f_code.co_filename == _CONTEXTLIB):
        frame = frame.f_back
    return None if frame is None else (frame.f_code.co_filename, frame.f_lineno)


class _Note:
    __slots__ = ("text",)

    def __init__(self, text):
        self.text = text


@contextmanager
def creation_note(text: Optional[str]):
    """Tag every node created inside the block with ``text`` (e.g. 'grad of e wrt b').

    Printers use the tag to show which nodes differentiation appended.  A node
    that already existed keeps its first tag, since it is the same node.  The
    block gets a handle whose ``.text`` may be changed as work moves on (cheaper
    than re-entering per node in a pass that creates many nodes).

    >>> import symdiff as sd
    >>> with creation_note("built by a doctest"):
    ...     y = sd.exp(sd.scalar("note_demo")) + 41
    >>> y.note
    'built by a doctest'
    """
    stack = _local.__dict__.setdefault("notes", [])
    note = _Note(text)
    stack.append(note)
    outer_origin = getattr(_local, "origin", None)
    if outer_origin is None:  # every node of the block comes from the same user call
        _local.origin = _user_origin()
    try:
        yield note
    finally:
        stack.pop()
        _local.origin = outer_origin


def new_node_mark() -> int:
    """An id below that of every node created from now on (a consumed id is harmless:
    ids only need to increase), so a pass can tell the nodes it made."""
    return next(_next_id)


def inherit_provenance(node: Expr, like: Expr, mark: int) -> Expr:
    """Give ``node``, if it was created after ``mark``, the origin and note of ``like``,
    the node a rewrite replaces with it: printed graphs still say where it came from."""
    if node.id >= mark:
        node.origin, node.note = like.origin, like.note
    return node


@contextmanager
def gc_paused():
    """Pause the cyclic garbage collector for a pass over the graph or a compile.  Nodes
    hold no reference cycles, so the collector's repeated scans of the many objects a pass
    allocates only cost time (a quarter to a third of a large sweep); the cycles a compiler
    leaves are collected once the collector runs again."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def make_node(op: Op, inputs: Sequence[Expr], attrs: dict) -> Expr:
    """Return the unique node ``op(*inputs, **attrs)``, creating it if new.

    >>> import symdiff as sd
    >>> a = sd.scalar("a")
    >>> make_node(OPS["exp"], (a,), {}) is sd.exp(a)
    True
    """
    for x in inputs:
        if type(x) is not Expr:
            raise TypeError(f"{op.name}: expected symdiff expressions as inputs, got {type(x).__name__} {x!r}")
    inputs = tuple(inputs)
    attr_items = tuple(sorted(attrs.items())) if attrs else ()
    # A user's impl may tell -0.0 from 0.0 or True from 1: its attributes are keyed by type and repr.
    key = (op, inputs, tuple((k, _typed_key(v)) for k, v in attr_items) if op.user else attr_items)
    node = _intern_table.get(key)  # a plain read; the insert below is locked
    if node is not None:
        return node
    try:
        out_type = op.infer(tuple(x.type for x in inputs), **attrs)
    except SymdiffError as exc:
        raise type(exc)(_describe_failure(op, inputs, str(exc))) from None
    node = Expr.__new__(Expr)
    node.op = op
    node.inputs = inputs
    node.attrs = attr_items
    node.type = out_type
    node.origin = _user_origin()
    notes = getattr(_local, "notes", None)
    node.note = notes[-1].text if notes else None
    with _intern_lock:
        existing = _intern_table.get(key)
        if existing is not None:  # another thread built it meanwhile
            return existing
        node.id = next(_next_id)
        _intern_table[key] = node
    return node


def _typed_key(value):
    """``value`` as a hash key that equal values of other types or signs do not share."""
    if isinstance(value, tuple):
        return tuple, tuple(_typed_key(v) for v in value)
    return type(value), repr(value)


def _describe_failure(op: Op, inputs: Sequence[Expr], reason: str) -> str:
    shapes = " and ".join(f"{fmt_shape(x.type.shape)} {x.type.dtype}" for x in inputs) or "no inputs"
    where = _user_origin()
    at = f" (at {where[0]}:{where[1]})" if where else ""
    return f"{op.name}: {reason}; inputs have shapes {shapes}{at}"


# ---------------------------------------------------------------------- traversal


def as_list(outputs) -> tuple[list[Expr], bool]:
    """Normalise one Expr or a sequence of them; the flag says whether it was one.

    >>> import symdiff as sd
    >>> as_list(sd.scalar("a"))
    ([Expr(a : f64[])], True)
    """
    if isinstance(outputs, Expr):
        return [outputs], True
    if isinstance(outputs, (str, bytes)) or not hasattr(outputs, "__iter__"):
        raise TypeError(f"expected a symdiff expression or a list of them, got {type(outputs).__name__} {outputs!r}")
    outs = list(outputs)
    for x in outs:
        if not isinstance(x, Expr):
            raise TypeError(f"expected a symdiff expression, got {type(x).__name__} {x!r}")
    return outs, False


def toposort(outputs, stop=frozenset()) -> list[Expr]:
    """Every node needed to compute ``outputs``, inputs first (iterative, no recursion).
    Nodes whose ids are in ``stop`` are included but not expanded (given values).

    >>> import symdiff as sd
    >>> a = sd.scalar("a")
    >>> [n.op.name for n in sd.toposort(sd.exp(a) * a)]
    ['symbol', 'exp', 'mul']
    """
    outs, _ = as_list(outputs)
    seen: dict[int, Expr] = {}
    stack = list(outs)
    while stack:
        node = stack.pop()
        if node.id in seen:
            continue
        seen[node.id] = node
        if node.id not in stop:
            stack.extend(x for x in node.inputs if x.id not in seen)
    return [seen[i] for i in sorted(seen)]


def symbols_of(outputs) -> list[Expr]:
    """The symbols ``outputs`` depend on, in creation order.

    >>> import symdiff as sd
    >>> a, b = sd.scalars("a b")
    >>> [s.name for s in symbols_of(b * a)]
    ['a', 'b']
    """
    return [n for n in toposort(outputs) if n.is_symbol]


def node_count(outputs) -> int:
    """The number of operation nodes needed to compute ``outputs``.

    Symbols and constants are not operations and are not counted.

    >>> import symdiff as sd
    >>> a, b = sd.scalars("a b")
    >>> sd.node_count((a + b) * (b + 1))
    3
    """
    return sum(1 for n in toposort(outputs) if n.op.kind != "leaf")


class Graph:
    """The nodes needed for some outputs, in topological (creation) order.

    >>> import symdiff as sd
    >>> x = sd.vector("x")
    >>> g = sd.Graph(sd.sum(sd.exp(x)))
    >>> [n.op.name for n in g.nodes]
    ['symbol', 'exp', 'sum']
    """

    def __init__(self, outputs):
        self.outputs, self.single = as_list(outputs)
        self.nodes = toposort(self.outputs)

    @property
    def inputs(self) -> list[Expr]:
        return [n for n in self.nodes if n.is_symbol]

    def consumers(self) -> dict[int, list[Expr]]:
        """For each node id, the nodes of this graph that use it (in order)."""
        users: dict[int, list[Expr]] = {n.id: [] for n in self.nodes}
        for n in self.nodes:
            for x in dict.fromkeys(n.inputs):
                users[x.id].append(n)
        return users

    def __len__(self):
        return len(self.nodes)

    def __repr__(self):
        return f"Graph({len(self.nodes)} nodes, outputs {[o.label() for o in self.outputs]})"


def fail_shape(message: str):
    """Raise a ShapeError from inside a shape rule (the caller adds op and shapes)."""
    raise ShapeError(message)
