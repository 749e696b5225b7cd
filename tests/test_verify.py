"""Tests of the IR verifier: well-formed graphs pass; each broken invariant is
reported with the node at fault."""

import numpy as np
import pytest

import symdiff as sd
from symdiff import ir
from symdiff.ir import ConstValue, Expr
from symdiff.ops import elementwise as E
from symdiff.types import TensorType
from symdiff.verify import VerificationError


def forged(op, inputs, attrs=(), type_=None, node_id=None):
    """A node built behind make_node's back (not interned, type not inferred)."""
    node = Expr.__new__(Expr)
    node.op, node.inputs, node.attrs = op, tuple(inputs), tuple(attrs)
    node.type = type_ if type_ is not None else inputs[0].type
    node.id = next(ir._next_id) if node_id is None else node_id
    node.origin, node.note = ("model.py", 7), None
    return node


def test_graphs_built_by_the_library_pass():
    x, v = sd.vector("x", 3), sd.vector("v", 3)
    W = sd.matrix("W", (None, 3))
    f = sd.sum(sd.tanh(W @ x) ** 2) + sd.logsumexp(x)
    outs = [f] + [sd.grad(f, x), sd.hvp(f, x, v), W[1:, ::-1].T]
    graph = sd.verify(outs)
    assert isinstance(graph, sd.Graph) and len(graph) == len(sd.toposort(outs))
    sd.verify(sd.optimize(outs))
    sd.verify(sd.Graph(f))
    sd.verify(f)


def test_type_that_disagrees_with_the_shape_rule_is_named():
    x = sd.vector("x", 3)
    bad = forged(E.EXP, [x], type_=TensorType("float64", (4,)))
    with pytest.raises(VerificationError, match=r"exp x.*model\.py:7.*f64\[4\] differs from f64\[3\]"):
        sd.verify(bad)


def test_input_created_after_its_consumer_is_reported():
    x = sd.vector("x", 3)
    late = sd.exp(sd.vector("late", 3))
    bad = forged(E.ADD, [x, late], node_id=late.id - 1)
    with pytest.raises(VerificationError, match="not created before its consumer|increasing id order"):
        sd.verify(bad)


def test_node_not_interned_is_reported():
    x = sd.vector("x", 3)
    sd.exp(x)  # the interned node
    with pytest.raises(VerificationError, match="not the interned node"):
        sd.verify(forged(E.EXP, [x]))


def test_dangling_input_in_a_graph_is_reported():
    x = sd.vector("x", 3)
    y = sd.exp(sd.sin(x))
    graph = sd.Graph(y)
    graph.nodes = [n for n in graph.nodes if n.op.name != "sin"]
    with pytest.raises(VerificationError, match="dangling"):
        sd.verify(graph)


def test_output_outside_the_graph_is_reported():
    graph = sd.Graph(sd.exp(sd.vector("x", 3)))
    graph.outputs = [sd.vector("other", 3)]
    with pytest.raises(VerificationError, match="output is not a node"):
        sd.verify(graph)


def test_two_symbols_with_one_name_are_reported():
    first, second = sd.vector("twin", 3), sd.vector("twin", 4)
    with pytest.raises(VerificationError, match="two different symbols are named 'twin'"):
        sd.verify(first + second[:3])


def test_malformed_constant_is_reported():
    value = ConstValue(np.array([1.0, 2.0]))
    value.array = np.array([1.0, 2.0])  # writeable: could change under the graph
    bad = forged(ir.OPS["constant"], [], attrs=(("value", value),), type_=TensorType("float64", (2,)))
    with pytest.raises(VerificationError, match="read-only"):
        sd.verify(bad)


def test_unsorted_attrs_are_reported():
    x = sd.tensor("T", (2, 3, 4))
    good = sd.sum(x, axis=1, keepdims=True)
    bad = forged(good.op, good.inputs, attrs=tuple(reversed(good.attrs)), type_=good.type)
    with pytest.raises(VerificationError, match="sorted tuple"):
        sd.verify(bad)


def test_unregistered_op_is_reported():
    x = sd.vector("x", 3)
    impostor = ir.Op.__new__(ir.Op)
    impostor.__dict__.update(vars(E.EXP))  # same name and rules, but not the registered record
    with pytest.raises(VerificationError, match="not the registered op"):
        sd.verify(forged(impostor, [x]))
