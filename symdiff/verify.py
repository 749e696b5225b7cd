"""The IR verifier: checks the invariants every pass must preserve.

``verify`` walks a graph once (linear work) and checks, for every node:

* it is an ``Expr`` whose op is the registered op of that name;
* its inputs are ``Expr`` nodes created before it (ids increase along edges, so
  sorting by id is a topological order) and, for a :class:`~symdiff.Graph`, belong
  to the graph (no dangling references);
* its attributes are a sorted tuple of (name, value) pairs;
* its static type equals what its op's ``infer`` gives for its inputs' types and
  attributes, and is a well-formed ``TensorType``;
* symbols and constants are well formed (a name and a type; a read-only array
  whose dtype and shape give the node's type), and no two symbols share a name;
* it is the interned node for its structure, so equal structures are one node
  (common subexpressions are shared; rewritten nodes were re-interned).

A violation raises :class:`VerificationError` naming the node, its op, where the
user created it, and what is wrong.
"""

from __future__ import annotations

import numpy as np

from . import ir
from .errors import SymdiffError
from .ir import ConstValue, Expr, Graph
from .types import DTYPES, TensorType, dtype_of_array


class VerificationError(SymdiffError, AssertionError):
    """The graph breaks an IR invariant (a bug in whatever built or rewrote it)."""


def _describe(node) -> str:
    if not isinstance(node, Expr):
        return f"{type(node).__name__} {node!r}"
    where = node.where()
    return f"node {node!r}" + (f" (created at {where})" if where else "") + (f" [{node.note}]" if node.note else "")


def _fail(node, problem: str):
    raise VerificationError(f"{_describe(node)}: {problem}")


def _check_type(node: Expr):
    t = node.type
    if not isinstance(t, TensorType):
        _fail(node, f"its type is {type(t).__name__}, not a TensorType")
    if t.dtype not in DTYPES:
        _fail(node, f"unknown dtype {t.dtype!r}")
    if not isinstance(t.shape, tuple) or any(
        not (d is None or (type(d) is int and d >= 0)) for d in t.shape
    ):
        _fail(node, f"malformed shape {t.shape!r}: a tuple of non-negative ints or None")


def _check_leaf(node: Expr, names: dict):
    params = node.params
    if node.is_symbol:
        if set(params) != {"name", "type"} or not isinstance(params["name"], str):
            _fail(node, f"a symbol needs exactly the attributes name (str) and type, got {sorted(params)}")
        other = names.setdefault(params["name"], node)
        if other is not node:
            _fail(node, f"two different symbols are named {params['name']!r} ({other!r} and {node!r})")
    else:
        value = params.get("value")
        if set(params) != {"value"} or not isinstance(value, ConstValue):
            _fail(node, "a constant needs exactly one attribute, value, holding a ConstValue")
        array = value.array
        if array.flags.writeable:
            _fail(node, "a constant's array must be read-only")
        if dtype_of_array(array) != node.type.dtype or array.dtype != np.dtype(node.type.dtype):
            _fail(node, f"the constant's array has dtype {array.dtype}, the node says {node.type.dtype}")


def verify(graph_or_outputs) -> Graph:
    """Check the IR invariants of a graph (a Graph, one Expr or a list of them).

    Returns the :class:`~symdiff.Graph` checked; raises :class:`VerificationError`
    naming the first node at fault.

    >>> import symdiff as sd
    >>> x = sd.scalar("x")
    >>> len(sd.verify(sd.grad(sd.sin(x) * x, x)))
    8
    """
    graph = graph_or_outputs if isinstance(graph_or_outputs, Graph) else Graph(graph_or_outputs)
    members = {}
    previous = -1
    for node in graph.nodes:
        if not isinstance(node, Expr):
            _fail(node, "the graph holds something that is not an Expr")
        if node.id <= previous:
            _fail(node, f"nodes are not in increasing id order (follows id {previous})")
        previous = node.id
        members[node.id] = node
    for out in graph.outputs:
        if members.get(getattr(out, "id", None)) is not out:
            _fail(out, "an output is not a node of the graph")

    names: dict = {}
    for node in graph.nodes:
        op = node.op
        if ir.OPS.get(getattr(op, "name", None)) is not op:
            _fail(node, f"its op {op!r} is not the registered op of that name")
        _check_type(node)
        if not isinstance(node.inputs, tuple) or not isinstance(node.attrs, tuple):
            _fail(node, "inputs and attrs must be tuples")
        keys = [item[0] if isinstance(item, tuple) and len(item) == 2 else None for item in node.attrs]
        if None in keys or keys != sorted(keys):
            _fail(node, f"attrs must be a sorted tuple of (name, value) pairs, got {node.attrs!r}")
        for x in node.inputs:
            if not isinstance(x, Expr):
                _fail(node, f"input {x!r} is not an Expr")
            if members.get(x.id) is not x:
                _fail(node, f"input {x!r} is not a node of the graph (dangling reference)")
            if x.id >= node.id:
                _fail(node, f"input {x.label()} (id {x.id}) was not created before its consumer")
        if op.kind == "leaf":
            if node.inputs:
                _fail(node, "a leaf has inputs")
            _check_leaf(node, names)
        try:
            expected = op.infer(tuple(x.type for x in node.inputs), **node.params)
        except SymdiffError as exc:
            _fail(node, f"its op's shape rule rejects its inputs: {exc}")
        if expected != node.type:
            inputs = ", ".join(f"{x.label()}: {x.type!r}" for x in node.inputs) or "no inputs"
            _fail(node, f"type {node.type!r} differs from {expected!r}, which {op.name}'s shape rule gives "
                  f"for {inputs}")
        with ir._intern_lock:
            interned = ir._intern_table.get((op, node.inputs, node.attrs))
        if interned is not node:
            _fail(node, "it is not the interned node for its structure (an equal node exists, or it was "
                  "built without make_node), so common subexpressions are not shared")
    return graph
