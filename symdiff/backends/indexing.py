"""Lowering of gathers and scatters.

A ``gather`` is a *view*: reading it at an index reads its input at the indexed
position, so ``logp[i, y[i]]`` is one load inside whatever loop consumes it (a sum,
an elementwise expression): no gathered temporary.  Index arrays are read where
they are needed, negative entries wrapped and every entry checked against the axis
(``_wrap_index``), except when the lowering can see they are in range: constants
checked against a static size, and ``iota`` along an axis of the indexed size
(``x[sd.arange(n), y]``), whose value is the loop counter itself.

A scatter is a copy of ``x`` (a fill for a uniform ``x``, e.g. zeros) followed by
one statement per update in the loop nest that produces the updates: ``+=`` for
``scatter_add``, which is how a gather's gradient becomes a scatter-add loop into a
zero-filled buffer; ``*=``, ``=`` (in C order, so the last update wins, as in the
reference) and NumPy's maximum/minimum (NaN propagates, ties keep the update).

An index out of range raises ``KernelIndexError``; the call wrapper then asks the
reference evaluator for the message (``raise_index_error``), so both backends
report the same node, axis, size and index.
"""

from __future__ import annotations

import numpy as np

from ..errors import IndexOutOfBoundsError
from ..ir import Expr, toposort
from ..ops import indexing as I
from .lowering import Value, _index_text, finishing_pass, lowers


def _index_dims(L, node: Expr, index) -> list:
    """The index arrays' shape: one per axis, unified (checked at the kernel top)."""
    dims = list(L.dims_of(index[0]))
    for i in index[1:]:
        for k in range(len(dims)):
            dims[k] = L.dims.unify(dims[k], L.dim(i, k), L.context(node))
    return dims


class IndexReader:
    """Source text for the index into an axis of size ``size`` read from ``node``."""

    def __init__(self, L, node: Expr, size):
        self.L, self.node, self.size = L, node, size
        base, chain = node, []
        value = L.values[base.id]
        while value.kind == "view":
            chain.append(value.transform)
            base = value.base
            value = L.values[base.id]
        self.chain = chain
        self.iota = base.op.name == "iota"
        if self.iota:  # its value is the index along its axis: in range if the axis is no longer
            length = L.dim(base, 0)
            self.safe = length == size or (isinstance(length, int) and isinstance(size, int) and length <= size)
            self.avail = 0
            return
        if base.op.name == "constant":
            values = base.params["value"].array
            self.safe = values.size == 0 or (isinstance(size, int) and int(values.min()) >= 0
                                             and int(values.max()) < size)
        else:
            self.safe = False
        self.avail = L.ready(node)

    def text(self, idx: list) -> str:
        if self.iota:
            idx = list(idx)
            for transform in self.chain:
                idx = transform(idx)
            raw = idx[0]
        else:
            raw = self.L.load(self.node, list(idx))
        return raw if self.safe else f"_wrap_index({raw}, {self.L.dims.text(self.size)})"


class _Gather:
    """A gather's index readers, and whether any load read them (see ``check_unread_indices``)."""

    def __init__(self, node, readers, dims):
        self.node, self.readers, self.dims, self.read = node, readers, dims, False


def _pending(L) -> list:
    return L.__dict__.setdefault("_gathers", [])


@lowers("gather")
def lower_gather(L, node: Expr):
    x, *index = node.inputs
    axes = node.params["axes"]
    dims = _index_dims(L, node, index)
    xd = L.dims_of(x)
    L.shape[node.id] = I.gathered_shape(xd, dims, axes)
    readers = [IndexReader(L, i, xd[a]) for i, a in zip(index, axes)]
    gather = _Gather(node, readers, dims)
    _pending(L).append(gather)
    at, rank = I.index_position(axes), len(dims)
    avail = max([L.ready(x)] + [r.avail for r in readers])

    def transform(idx, x=x, axes=axes, readers=readers, at=at, rank=rank, gather=gather):
        gather.read = True
        inner = idx[at:at + rank]
        rest = iter(idx[:at] + idx[at + rank:])
        reader = iter(readers)
        return [next(reader).text(inner) if a in axes else next(rest) for a in range(x.ndim)]

    vx = L.values[x.id]
    if vx.kind == "scalar":  # every element is one value; the indices are still checked
        L.values[node.id] = Value("scalar", name=vx.name, avail=avail)
        return
    if node.ndim == 0:
        name = f"v{L.p(node)}"
        L.prelude(avail).append(f"{name} = {L.load(x, transform([]))}  # {L.comment(node)}")
        L.values[node.id] = Value("scalar", name=name, avail=avail)
        return
    L.values[node.id] = Value("view", base=x, transform=transform, avail=avail)


_COMBINE = {
    "scatter_add": ["{t} += {v}"],
    "scatter_mul": ["{t} *= {v}"],
    "scatter_set": ["{t} = {v}"],
    # np.maximum(old, v): old if old > v or old is NaN, else v (a tie gives v, as NumPy)
    "scatter_max": ["{s} = {v}", "if not ({t} > {s} or {t} != {t}):", "    {t} = {s}"],
    "scatter_min": ["{s} = {v}", "if not ({t} < {s} or {t} != {t}):", "    {t} = {s}"],
}


@lowers(*_COMBINE)
def lower_scatter(L, node: Expr):
    x, updates, *index = node.inputs
    axes = node.params["axes"]
    dims = _index_dims(L, node, index)
    xd = L.dims_of(x)
    L.shape[node.id] = xd
    domain = list(I.gathered_shape(xd, dims, axes))
    for k in range(updates.ndim):  # the updates have exactly the indexed shape
        domain[k] = L.dims.unify(domain[k], L.dim(updates, k), L.context(node))
    readers = [IndexReader(L, i, xd[a]) for i, a in zip(index, axes)]
    p = L.p(node)
    name = f"a{p}"
    idx_x = [f"i{k}" for k in range(x.ndim)]
    vx = L.values[x.id]
    zero_start = vx.kind == "scalar" and vx.name in ("0.0", "np.float32(0.0)", "0")
    if zero_start:
        L.allocate(name, node, zeros=True)
        start = 0
    elif vx.kind == "scalar":
        L.allocate(name, node, fill=vx.name, fill_at=vx.avail)
        start = vx.avail
    else:  # a copy of x, in the loop that makes x when it is fused there
        if vx.kind == "fused" and vx.array is None:
            first = L.steps[vx.group]
        else:
            first = L.find_group(xd, L.ready(x))
        L.current_domain = xd
        text, _, _ = L.operand(x, idx_x, first.index)
        L.allocate(name, node)
        first.body.append(f"{name}[{_index_text(idx_x)}] = {text}  # copy for {L.comment(node)}")
        first.labels.append(L.label(node))
        start = first.index + 1  # every element copied before any update lands
    earliest = max([start] + [r.avail for r in readers])
    vu = L.values[updates.id]
    if vu.kind == "fused" and vu.array is None and vu.group >= earliest and L.dims_of(updates) == tuple(
            L.dims.find(d) for d in domain):
        step = L.steps[vu.group]
    else:
        step = L.find_group(tuple(domain), max(earliest, L.ready(updates)))
    L.current_domain = tuple(L.dims.find(d) for d in domain)
    idx = [f"i{k}" for k in range(len(domain))]
    value, _, _ = L.operand(updates, idx, step.index)
    at, rank = I.index_position(axes), len(dims)
    inner = idx[at:at + rank]
    rest = iter(idx[:at] + idx[at + rank:])
    reader = iter(readers)
    target_idx = []
    for a in range(x.ndim):
        if a in axes:
            text = next(reader).text(inner)
            if not text.isidentifier():  # computed once per update
                local = f"j{p}_{a}"
                step.body.append(f"{local} = {text}")
                text = local
            target_idx.append(text)
        else:
            target_idx.append(next(rest))
    target = f"{name}[{_index_text(target_idx)}]"
    for line in _COMBINE[node.op.name]:
        step.body.append(line.format(t=target, v=value, s=f"s{p}") + (f"  # {L.comment(node)}" if "{v}" in line else ""))
    step.labels.append(L.label(node))
    accumulate = zero_start and node.op.name == "scatter_add"
    if accumulate:
        L.added_into.add(name)  # not a scatter_slice buffer: plan_carries must leave what it merges with alone
    L.values[node.id] = Value("array", name=name, array=name, avail=step.index + 1, root=name,
                              accumulator=accumulate)


@finishing_pass
def check_unread_indices(L):
    """Index arrays of a gather no load read (its value was uniform, or only its shape
    was used) are still checked, as the reference checks them: one loop at the end."""
    for gather in _pending(L):
        unsafe = [r for r in gather.readers if not r.safe]
        if gather.read or not unsafe:
            continue
        step = L.new_step(tuple(gather.dims))
        idx = [f"i{k}" for k in range(len(gather.dims))]
        for r in unsafe:
            step.body.append(f"{r.text(idx)}  # index check of {L.comment(gather.node)}")
        step.labels.append(L.label(gather.node))


def raise_index_error(function, args):
    """Raise the reference evaluator's IndexOutOfBoundsError for the (converted) ``args``
    with which ``function``'s kernel raised KernelIndexError: the same text as sd.evaluate."""
    from ..evaluate import run

    bound = {sym.id: np.asarray(value) for sym, value in zip(function.inputs, args)}
    run(toposort(function.lowered_outputs), bound)
    raise IndexOutOfBoundsError("an index is out of bounds in the compiled kernel, but the reference evaluator "
                                "finds none for these inputs (please report this)") from None
