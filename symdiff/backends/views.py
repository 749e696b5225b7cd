"""Lowering of data movement: views (slices with static offsets, transposes,
expand/squeeze, broadcasts: index arithmetic, never copies), reshape, concatenate,
and ``scatter_slice``, the adjoint of slicing (a scatter-add in the loop that makes
the cotangent; ``plan_carries`` turns unit-step ones into once-per-element stores)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np

from ..ir import Expr
from .lowering import Value, _affine, _index_text, _plus, finishing_pass, literal, lowers


@dataclass
class ScatterWrite:
    """One ``buffer[i + offset] += value`` line of a scatter, recorded so that the
    buffer's writes can be re-planned as carries (see ``plan_carries``).

    ``offset`` is the constant start of a unit-step slice of a 1-d buffer, or None
    for any other scatter (which keeps the buffer on the general code).
    """

    step: int
    position: int  # in the step's body
    offset: Optional[int]
    length: object  # the slice's length (a dim)
    value: str
    comment: str


@lowers("slice", "expand_dims", "squeeze", "transpose", "broadcast_to", "broadcast_like")
def lower_view(L, node: Expr):
    x = node.inputs[0]
    op = node.op.name
    params = node.params
    xd = L.shape[x.id]
    if op == "slice":
        shape, transform = slice_view(L, node, x, params["index"])
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
            target = L.shape[node.inputs[1].id]
        offset = len(target) - x.ndim
        shape = list(target)
        for k in range(x.ndim):
            d = L.dim(x, k)
            if d != 1:
                shape[offset + k] = L.dims.unify(target[offset + k], d, L.context(node))
        shape = tuple(shape)
        def transform(idx, x=x, offset=offset):
            return ["0" if L.dim(x, k) == 1 else idx[offset + k] for k in range(x.ndim)]
    L.shape[node.id] = shape
    if L.same_scalar(node, x):
        return
    avail = L.ready(x)
    if node.ndim == 0:  # a single element: read it once
        name = f"v{L.p(node)}"
        L.prelude(avail).append(f"{name} = {L.load(x, transform([]))}  # {L.comment(node)}")
        L.values[node.id] = Value("scalar", name=name, avail=avail)
        return
    L.values[node.id] = Value("view", base=x, transform=transform, avail=avail)


def slice_view(L, node: Expr, x: Expr, index):
    shape, starts, steps = [], [], []
    for axis, entry in enumerate(index):
        n = L.dim(x, axis)
        if not isinstance(entry, tuple):
            if not isinstance(n, int):  # the reference raises IndexError; so must the kernel
                need = entry + 1 if entry >= 0 else -entry
                L.dims.require(f"min({n}, {need})", str(need), L.dims.description(n),
                                  f"index {entry} needs a size of at least {need}", L.context(node))
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
            shape.append(slice_length(L, n, start, stop, step, x, axis))
            if step > 0 and (start is None or start >= 0):
                starts.append(str(start or 0))
            else:
                code = f"_slice_start({n}, {bound(start)}, {bound(stop)}, {step})"
                starts.append(L.dims.new(code, f"start of {x.label()}[{start}:{stop}:{step}]",
                                            key=("start", n, start, stop, step)))
        steps.append(step)

    def transform(idx, starts=starts, steps=steps):
        return [_affine(i, s, st) for i, s, st in zip(idx, starts, steps)]

    return tuple(shape), transform


def bound(b) -> str:
    """A slice bound in generated source (SLICE_NONE for an omitted one)."""
    return "SLICE_NONE" if b is None else str(b)


def slice_length(L, n: str, start, stop, step, x: Expr, axis: int):
    desc = L.dims.description(n)
    if step == 1 and (start is None or start >= 0) and (stop is None or stop < 0):
        cut = (start or 0) + (-stop if stop is not None else 0)
        if cut == 0:
            return n
        return L.dims.new(f"max({n} - {cut}, 0)", f"{desc} - {cut}", key=("minus", n, cut))
    code = f"_slice_len({n}, {bound(start)}, {bound(stop)}, {step})"
    text = f"{'' if start is None else start}:{'' if stop is None else stop}:{step}"
    return L.dims.new(code, f"len of [{text}] of {desc}", key=("slice", n, start, stop, step))


@lowers("scatter_slice")
def lower_scatter(L, node: Expr):
    cotangent, ref = node.inputs
    L.shape[node.id] = L.shape[ref.id]
    if ref.ndim == 0:
        L.ready(cotangent)
        L.values[node.id] = Value("scalar", name=L.values[cotangent.id].name, avail=L.avail(cotangent))
        return
    # the slice's own shape and index map, as if slicing ``ref``
    slice_shape, transform = slice_view(L, node, ref, node.params["index"])
    for k in range(cotangent.ndim):
        d = L.dim(cotangent, k)
        if d != 1 or slice_shape[k] == 1:
            L.dims.unify(slice_shape[k], d, L.context(node))
    name = f"a{L.p(node)}"
    L.allocate(name, node, zeros=True)
    vc = L.values[cotangent.id]
    # A cotangent of size 1 on an axis the slice is longer on is broadcast: loop over the slice.
    domain = tuple(L.dims.find(d) for d in slice_shape[:cotangent.ndim])
    broadcast = domain != L.dims_of(cotangent)
    if vc.kind == "fused" and vc.array is None and not broadcast:
        step = L.steps[vc.group]
    else:
        step = L.find_group(domain if broadcast else L.shape[cotangent.id], L.ready(cotangent))
    L.current_domain = domain if broadcast else L.dims_of(cotangent)
    idx = [f"i{k}" for k in range(cotangent.ndim)]
    text, _, _ = L.operand(cotangent, idx, step.index)
    # A unit-step slice with a constant start, in a 1-d loop, may become carries (plan_carries).
    offset = None
    index = node.params["index"]
    unit_step = ref.ndim == 1 and len(index) == 1 and isinstance(index[0], tuple) and index[0][2] == 1
    if unit_step and len(step.domain) == 1 and node.dtype in ("float32", "float64"):
        start = transform(["0"])[0]
        offset = int(start) if start.isdigit() else None
    L.scatter_nodes[name] = node
    L.scatter_writes.setdefault(name, []).append(
        ScatterWrite(step.index, len(step.body), offset, slice_shape[0], text, L.comment(node)))
    step.body.append(f"{name}[{_index_text(transform(idx))}] += {text}  # {L.comment(node)}")
    step.labels.append(L.label(node))
    L.values[node.id] = Value("array", name=name, array=name, avail=step.index + 1, root=name,
                                 accumulator=True)


@finishing_pass
def plan_carries(L):
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
    for name, writes in L.scatter_writes.items():
        groups.setdefault(L.resolve(name), []).extend(writes)
    added_into = {L.resolve(name) for name in L.added_into}
    edits: dict = {}  # step index -> {body position: replacement lines}
    for root, writes in groups.items():
        if root in added_into or root not in L.scatter_nodes or root in L.dropped:
            continue
        if any(w.offset is None for w in writes) or len({w.step for w in writes}) != 1:
            continue
        step = L.steps[writes[0].step]
        length = L.dims.find(step.domain[0])
        if any(L.dims.find(w.length) != length for w in writes):
            continue  # the loop must run over every slice exactly (lower_scatter makes it so)
        node = L.scatter_nodes[root]
        size = L.dims.find(L.shape[node.id][0])
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
        step.before.append(f"# {L.label(node)}: each element stored once; pending sums in {root}_carry*")
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
        if not static_past_end and shortened_by(L, length, size) not in range(low + span + 1):
            step.after += [f"for i0 in range({tail}, {size}):", f"    {root}[i0] = {zero}"]
        # the allocation without its zero-fill loop
        L.allocations = [(name, code[:1] if name == root else code) for name, code in L.allocations]
    for index, replaced in edits.items():
        step = L.steps[index]
        step.body = [line for k, item in enumerate(step.body) for line in replaced.get(k, [item])]


def shortened_by(L, length, size) -> Optional[int]:
    """k when the run-time ``length`` is ``max(size - k, 0)`` (a slice like x[1:] of x)."""
    for key, name in L.dims.memo.items():
        if key[0] == "minus" and L.dims.find(name) == length and L.dims.find(key[1]) == size:
            return key[2]
    return None


@lowers("reshape")
def lower_reshape(L, node: Expr):
    (x,) = node.inputs
    target = node.params["shape"]
    xdims = L.dims_of(x)
    if None in x.type.shape and -1 in target:
        known = int(np.prod([d for d in target if d != -1], dtype=np.int64))
        statics = int(np.prod([d for d in xdims if isinstance(d, int)], dtype=np.int64))
        variables = [d for d in xdims if isinstance(d, str)]
        if len(variables) == 1 and statics == known:
            free = variables[0]  # (n, 3) -> (-1, 3): the same n
        else:
            total = L.dims.product(xdims)
            free = L.dims.new(f"({total}) // {known}", f"size of {x.label()} / {known}",
                                 key=("reshape", xdims, known))
            L.dims.require(f"{free} * {known}", total, f"{known} * ({L.dims.description(free)})",
                              f"the size of {x.label()}", L.context(node))
        shape = tuple(free if d == -1 else d for d in target)
    else:
        shape = tuple(d for d in node.type.shape)
    L.shape[node.id] = shape
    _reshape_of(L, node, x)


def _reshape_of(L, node: Expr, x: Expr):
    """``node``'s value, of the shape already in ``L.shape``: ``x`` itself when it is one
    value, else a reshape of a contiguous array holding ``x`` (a view when it has one)."""
    if L.same_scalar(node, x):
        return
    array = L.contiguous(x)
    at = L.avail(x)
    if node.ndim == 0:
        name = f"v{L.p(node)}"
        L.prelude(at).append(f"{name} = {array}[{', '.join(['0'] * x.ndim)}]  # {L.comment(node)}")
        L.values[node.id] = Value("scalar", name=name, avail=at)
        return
    if array.endswith(".T"):
        array = L.copy_of(x)
        at = L.avail(x)
    name = f"a{L.p(node)}"
    L.prelude(at).append(f"{name} = {array}.reshape({L.shape_text(node)})  # {L.comment(node)}")
    root = L.values[x.id].root if L.values[x.id].kind != "view" else L.values[x.id].copy
    L.values[node.id] = Value("array", name=name, array=name, avail=at, root=root)


@lowers("reshape_like")
def lower_reshape_like(L, node: Expr):
    x, ref = node.inputs
    L.shape[node.id] = L.shape[ref.id]
    total_x, total_ref = L.dims.product(L.dims_of(x)), L.dims.product(L.dims_of(ref))
    if total_x != total_ref:
        L.dims.require(total_x, total_ref, f"the size of {x.label()}", f"the size of {ref.label()}", L.context(node))
    _reshape_of(L, node, x)


@lowers("concatenate")
def lower_concatenate(L, node: Expr):
    axis = node.params["axis"]
    parts = node.inputs
    first = parts[0]
    shape = []
    for a in range(node.ndim):
        if a == axis:
            dims = [L.dim(x, a) for x in parts]
            statics = sum(d for d in dims if isinstance(d, int))
            names = [d for d in dims if isinstance(d, str)]
            if not names:
                shape.append(statics)
            else:
                code = " + ".join(names + ([str(statics)] if statics else []))
                shape.append(L.dims.new(code, f"total length of the concatenation at {L.context(node)}",
                                           key=("concat", tuple(dims))))
        else:
            d = L.dim(first, a)
            for x in parts[1:]:
                d = L.dims.unify(d, L.dim(x, a), L.context(node))
            shape.append(d)
    L.shape[node.id] = tuple(shape)
    name = f"a{L.p(node)}"
    L.allocate(name, node)
    static_offset, size_offsets = 0, []  # where the next part starts: a number plus run-time sizes
    avail = 0
    for k, x in enumerate(parts):  # the comment names the part, not every operand (300 parts: 90k labels)
        vx = L.values[x.id]
        if x.ndim and vx.kind == "fused" and vx.array is None:
            step = L.steps[vx.group]
        else:
            step = L.find_group(L.shape[x.id], L.ready(x))
        L.current_domain = L.dims_of(x)
        idx = [f"i{k}" for k in range(x.ndim)]
        text, _, _ = L.operand(x, idx, step.index)
        start = " + ".join(size_offsets + ([str(static_offset)] if static_offset or not size_offsets else []))
        out_idx = [_affine(i, start, 1) if a == axis else i for a, i in enumerate(idx)]
        step.body.append(f"{name}[{_index_text(out_idx)}] = {text}  # part {k} of {L.label(node)} = concatenate")
        step.labels.append(L.label(node))
        avail = max(avail, step.index + 1)
        d = L.dim(x, axis)
        if isinstance(d, int):
            static_offset += d
        else:
            size_offsets.append(d)
    L.values[node.id] = Value("array", name=name, array=name, avail=avail, root=name)
