"""Lowering of the cumulative and ordering ops: ``linear_recurrence`` (cumsum, cumprod:
one running loop along the axis), ``argmax`` (one pass per slice) and ``argsort`` (per slice: a contiguous copy sorted by the compiled stable argsort of
``ordering_runtime``, never object mode).

Each is a few statements before a step (like matmul): loops over the other axes
around a loop along the axis.  Axes after the sorted or accumulated one are the
innermost loops, so a recurrence along axis 0 of a matrix updates whole contiguous rows
(vectorisable) instead of walking a column.
"""

from __future__ import annotations

import numpy as np

from ..errors import ShapeError
from ..ir import Expr
from .lowering import NUMPY_NAME, Value, _index_text, literal, lowers


def _loops(L, dims, axes, indent=""):
    """``for`` headers over ``axes`` of ``dims`` (with indices i<axis>), and the inner indent."""
    lines = []
    for k in axes:
        lines.append(f"{indent}for i{k} in range({L.dims.text(dims[k])}):")
        indent += "    "
    return lines, indent


def _index(ndim, axis, position):
    """i0, i1, ... with ``position`` (source text) along ``axis``."""
    return [position if k == axis else f"i{k}" for k in range(ndim)]


def _nonempty(L, n, node: Expr, what: str):
    """A kernel check that the axis of size ``n`` has an element (NumPy raises on empty)."""
    n = L.dims.find(n)
    if isinstance(n, int):
        if n == 0:
            raise ShapeError(f"{what} of an empty axis: {L.context(node)}")
        return
    L.dims.require(f"min({n}, 1)", "1", L.dims.description(n), f"{what} needs at least one element",
                   L.context(node))


def _constant_equal(x: Expr, number, negative_zero=False) -> bool:
    """x is a constant whose every element is ``number`` (-0.0 itself, if asked)."""
    if not x.is_constant:
        return False
    value = x.params["value"].array
    return bool(value.size and np.all(value == number) and (not negative_zero or np.all(np.signbit(value))))


@lowers("linear_recurrence")
def lower_linear_recurrence(L, node: Expr):
    a, b = node.inputs
    axis, reverse, init = node.params["axis"], node.params["reverse"], node.params["init"]
    shape = []
    for k in range(node.ndim):
        d = 1
        for x in (a, b):
            dx = L.dim(x, k)
            if dx != 1:
                d = dx if d == 1 else L.dims.unify(d, dx, L.context(node))
        shape.append(d)
    L.shape[node.id] = tuple(shape)
    at = max(L.ready(a), L.ready(b))
    name = f"a{L.p(node)}"
    L.allocate(name, node)
    n = L.dims.text(shape[axis])
    ndim = node.ndim
    j = f"i{axis}"
    first = "0" if not reverse else f"{n} - 1"
    previous = f"{j} - 1" if not reverse else f"{j} + 1"
    link = j if not reverse else f"{j} + 1"  # a[j] weighs the link from j-1 to j
    span = f"range(1, {n})" if not reverse else f"range({n} - 2, -1, -1)"
    unit_weights = _constant_equal(a, 1)  # cumsum: s + b, no multiply
    no_addend = _constant_equal(b, -0.0, negative_zero=True)  # cumprod: x + (-0.0) is x exactly

    def load(x, position):
        return L.load(x, L.broadcast_index(x, _index(ndim, axis, position)))

    def step(weight, carried, position):
        product = carried if unit_weights else f"{weight} * {carried}"
        return product if no_addend else f"{product} + {load(b, position)}"

    if init is None:
        start = load(b, first)
    else:
        weight = load(a, "0")
        start = step(weight, literal(init, node.dtype), "0") if init != 1 else (
            weight if no_addend else f"{weight} + {load(b, '0')}")
    lines = [f"# {L.comment(node)}"]
    outer, indent = _loops(L, shape, range(axis))
    lines += outer
    length = L.dims.find(shape[axis])
    if not (isinstance(length, int) and length > 0):
        lines.append(f"{indent}if {n} > 0:")
        indent += "    "
    inner_axes = range(axis + 1, ndim)
    if not inner_axes:  # the running value rides in a local
        s = f"s{L.p(node)}"
        lines.append(f"{indent}{s} = {start}")
        lines.append(f"{indent}{name}[{_index_text(_index(ndim, axis, first))}] = {s}")
        lines.append(f"{indent}for {j} in {span}:")
        lines.append(f"{indent}    {s} = {step(load(a, link), s, j)}")
        lines.append(f"{indent}    {name}[{_index_text(_index(ndim, axis, j))}] = {s}")
    else:  # whole inner blocks at a time, reading the previous block of the result
        head, inner = _loops(L, shape, inner_axes, indent)
        lines += head
        lines.append(f"{inner}{name}[{_index_text(_index(ndim, axis, first))}] = {start}")
        lines.append(f"{indent}for {j} in {span}:")
        head, inner = _loops(L, shape, inner_axes, indent + "    ")
        lines += head
        carried = f"{name}[{_index_text(_index(ndim, axis, previous))}]"
        lines.append(f"{inner}{name}[{_index_text(_index(ndim, axis, j))}] = {step(load(a, link), carried, j)}")
    L.prelude(at).extend(lines)
    L.values[node.id] = Value("array", name=name, array=name, avail=at, root=name)


@lowers("argmax")
def lower_argmax(L, node: Expr):
    (x,) = node.inputs
    axis, keepdims = node.params["axis"], node.params["keepdims"]
    xd = L.shape[x.id]
    L.shape[node.id] = tuple(1 if k == axis else d for k, d in enumerate(xd) if keepdims or k != axis)
    _nonempty(L, xd[axis], node, "argmax")
    at = L.ready(x)
    p = L.p(node)
    best, where, value = f"best{p}", f"where{p}", f"t{p}"  # k{n} names hidden constants
    j = f"i{axis}"
    lines = [f"# {L.comment(node)}"]
    outer, indent = _loops(L, xd, [k for k in range(x.ndim) if k != axis])
    lines += outer
    lines.append(f"{indent}{best} = {L.load(x, _index(x.ndim, axis, '0'))}")
    lines.append(f"{indent}{where} = 0")
    lines.append(f"{indent}for {j} in range(1, {L.dims.text(xd[axis])}):")
    lines.append(f"{indent}    {value} = {L.load(x, _index(x.ndim, axis, j))}")
    # as np.argmax: the first maximum; the first NaN beats everything and stays
    lines.append(f"{indent}    if {value} > {best} or ({value} != {value} and {best} == {best}):")
    lines.append(f"{indent}        {best} = {value}")
    lines.append(f"{indent}        {where} = {j}")
    if node.ndim == 0:
        lines.append(f"{indent}v{p} = {where}")
        L.values[node.id] = Value("scalar", name=f"v{p}", avail=at)
    else:
        name = f"a{p}"
        L.allocate(name, node)
        out_idx = ["0" if k == axis else f"i{k}" for k in range(x.ndim) if keepdims or k != axis]
        lines.append(f"{indent}{name}[{_index_text(out_idx)}] = {where}")
        L.values[node.id] = Value("array", name=name, array=name, avail=at, root=name)
    L.prelude(at).extend(lines)


def _per_slice(L, node: Expr, x: Expr, call: str, buffer_dtype: str):
    """out[..., :, ...] = call(contiguous copy of x[..., :, ...] as buffer_dtype) for every slice along the axis."""
    axis = node.params["axis"]
    xd = L.shape[x.id]
    L.shape[node.id] = tuple(xd)
    at = L.ready(x)
    p = L.p(node)
    name, buffer, result = f"a{p}", f"w{p}", f"u{p}"
    L.allocate(name, node)
    n = L.dims.text(xd[axis])
    j = f"i{axis}"
    lines = [f"# {L.comment(node)}", f"{buffer} = _empty(({n},), {NUMPY_NAME[buffer_dtype]})"]
    outer, indent = _loops(L, xd, [k for k in range(x.ndim) if k != axis])
    lines += outer
    lines.append(f"{indent}for {j} in range({n}):")
    lines.append(f"{indent}    {buffer}[{j}] = {L.load(x, _index(x.ndim, axis, j))}")
    lines.append(f"{indent}{result} = {call.format(buffer)}")
    lines.append(f"{indent}for {j} in range({n}):")
    lines.append(f"{indent}    {name}[{_index_text(_index(x.ndim, axis, j))}] = {result}[{j}]")
    L.prelude(at).extend(lines)
    L.values[node.id] = Value("array", name=name, array=name, avail=at, root=name)


@lowers("argsort")
def lower_argsort(L, node: Expr):
    # stable, NaN last, as np.argsort(kind="stable"): a radix sort for long slices (ordering_runtime).
    # The slices are copied widened (exactly) to float64 or int64: two compiled helpers, not four.
    x = node.inputs[0]
    if x.dtype in ("float64", "float32"):
        _per_slice(L, node, x, "_argsort_floats({})", "float64")
    else:
        _per_slice(L, node, x, "_argsort_integers({})", "int64")
