"""Lowering of leaves: symbols (kernel parameters), constants (literals or hidden
arrays passed after the inputs), ``dim`` (a run-time size, a kernel local) and
``check_sizes`` (a condition on run-time sizes, checked with the others at the kernel's top)."""

from __future__ import annotations

import numpy as np

from ..ir import Expr
from .lowering import Value, literal, lowers


@lowers("symbol")
def lower_symbol(L, node: Expr):
    """A kernel parameter: a symbol, or a value computed outside this kernel (``L.given``)."""
    name = L.param_of[node.id]
    shape = []
    for k, d in enumerate(node.type.shape):
        if d is None:
            shape.append(L.dims.new(f"{name}.shape[{k}]", f"{L.label(node)}.shape[{k}]"))
        else:
            shape.append(d)
    L.shape[node.id] = tuple(shape)
    kind = "scalar" if node.ndim == 0 else "array"
    L.values[node.id] = Value(kind, name=name, array=name if node.ndim else None, root=name)


@lowers("constant")
def lower_constant(L, node: Expr):
    array = node.params["value"].array
    L.shape[node.id] = tuple(array.shape)
    if array.ndim == 0:
        L.values[node.id] = Value("scalar", name=literal(array[()], node.dtype))
        return
    if array.size == 1 or (array.size > 0 and np.all(array == array.flat[0]) and not np.isnan(array.flat[0])):
        # a filled constant is one scalar read at any index
        L.values[node.id] = Value("scalar", name=literal(array.flat[0], node.dtype))
        return
    name = f"k{len(L.hidden)}"
    L.hidden.append((name, array, node))
    L.values[node.id] = Value("array", name=name, array=name, root=name)


@lowers("dim")
def lower_dim(L, node: Expr):
    (x,) = node.inputs
    L.shape[node.id] = ()
    name = L.dims.text(L.shape[x.id][node.params["axis"]])
    L.values[node.id] = Value("scalar", name=name, avail=L.dims.late.get(name, 0))  # a late size exists from there


@lowers("check_sizes")
def lower_check_sizes(L, node: Expr):
    """Its input's value; the condition joins the kernel's size checks (``Dims.require``),
    and ``Dims.errors`` tells the call wrapper which error and message to raise for it."""
    x, y = node.inputs
    params = node.params
    left, right = (L.dim(y, axis) for axis in params["axes"])
    if not (isinstance(left, int) and isinstance(right, int)):  # static sizes were checked at build time
        texts = [L.dims.text(d) for d in (left, right)]
        descriptions = [L.dims.description(d) for d in (left, right)]
        context = params["message"].format(*descriptions)
        first = texts[0] if params["relation"] == "==" else f"min({texts[0]}, {texts[1]})"
        L.dims.require(first, texts[1], *descriptions, context)
        L.dims.errors[context] = (params["error"], params["message"])
    L.shape[node.id] = L.shape[x.id]
    L.ready(x)
    L.values[node.id] = L.values[x.id]
