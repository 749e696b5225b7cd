"""Leaves of the graph: named symbols (inputs) and constants."""

from __future__ import annotations

import numpy as np

from ..ir import ConstValue, Expr, Op, make_node
from ..types import TensorType, dtype_of_array


def _infer_symbol(types, name, type):
    return type


def _impl_leaf(*values, **attrs):
    raise AssertionError("leaves are evaluated by the evaluator, not called")


SYMBOL = Op(
    "symbol",
    infer=_infer_symbol,
    impl=_impl_leaf,
    kind="leaf",
    doc="A named input; its value is supplied when the graph is evaluated.",
)


def _infer_constant(types, value):
    return TensorType(dtype_of_array(value.array), value.array.shape)


CONSTANT = Op(
    "constant",
    infer=_infer_constant,
    impl=_impl_leaf,
    kind="leaf",
    doc="A fixed array, stored read-only in the node.",
)

_NUMPY_DTYPE = {"bool": np.bool_, "int64": np.int64, "float32": np.float32, "float64": np.float64}


def const(value, dtype: str) -> Expr:
    """A constant node holding ``value`` converted to ``dtype``.

    >>> const(1.0, "float32")
    Expr(%... = constant 1.0 : f32[])
    """
    return make_node(CONSTANT, (), {"value": ConstValue(np.asarray(value, dtype=_NUMPY_DTYPE[dtype]))})


def constant_value(x: Expr):
    """The array of a constant node, or None if ``x`` is not a constant."""
    return x.params["value"].array if x.op is CONSTANT else None


def is_constant_equal(x: Expr, number) -> bool:
    """True when ``x`` is a constant whose every element equals ``number``."""
    value = constant_value(x)
    return value is not None and value.size > 0 and bool(np.all(value == number))


def numpy_dtype(dtype: str):
    return _NUMPY_DTYPE[dtype]
