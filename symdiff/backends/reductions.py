"""Lowering of reductions (sum, prod, max, min, and prod's private ``scaled_prod``): each
accumulates inside the loop nest that produces its input, so a reduction of a fused
expression needs no temporary."""

from __future__ import annotations

import numpy as np

from ..errors import ShapeError
from ..ir import Expr
from .lowering import Allocated, Value, _index_text, literal, lowers


@lowers("sum", "max", "min", "prod")
def lower_reduction(L, node: Expr):
    (x,) = node.inputs
    axes = node.params["axes"]
    keep = node.params["keepdims"]
    xd = L.shape[x.id]
    L.shape[node.id] = tuple(1 if a in axes else d for a, d in enumerate(xd) if keep or a not in axes)
    # nothing reduced: the value itself; but a float sum adds its identity, as NumPy does
    # (np.sum(-0.0) is 0.0), so it takes the loop below
    if (x.ndim == 0 or not axes) and not (node.op.name == "sum" and node.dtype in ("float32", "float64")):
        if node.ndim == 0:
            L.ready(x)
            L.values[node.id] = Value("scalar", name=L.values[x.id].name, avail=L.avail(x))
        else:
            L.values[node.id] = Value("view", base=x, transform=lambda idx: idx, avail=L.ready(x))
        return
    op = node.op.name
    initial = node.params.get("initial") if op in ("max", "min") else None
    if op in ("max", "min") and initial is None:  # like NumPy: no identity, so an empty axis is an error
        for a in axes:
            n = L.dims.find(xd[a])
            if not isinstance(n, int):
                L.dims.require(f"min({n}, 1)", "1", L.dims.description(n),
                                  f"{op} over it needs at least one element", L.context(node))
            elif n == 0:
                raise ShapeError(f"{op} over an empty axis has no identity: {L.context(node)}")
    step, idx = _reading_step(L, x, xd)
    value, _, _ = L.operand(x, idx, step.index)
    if op in ("sum", "prod"):
        init = literal(0 if op == "sum" else 1, node.dtype)
    elif node.dtype == "bool":
        init = "False" if op == "max" else "True"
    elif node.dtype == "int64":
        init = str(-(1 << 63)) if op == "max" else str((1 << 63) - 1)
    elif initial is not None:
        init = literal(np.asarray(initial).astype(node.dtype).item(), node.dtype)
    else:
        init = literal(-np.inf if op == "max" else np.inf, node.dtype)
    name = f"r{L.p(node)}"
    if node.ndim == 0:
        L.prelude(step.index).append(f"{name} = {init}  # {L.label(node)} accumulates {op}")
        target = name
    else:
        L.allocate(name, node, fill=init if op != "sum" else None, zeros=op == "sum")
        out_idx = ["0" if a in axes else i for a, i in enumerate(idx) if keep or a not in axes]
        target = f"{name}[{_index_text(out_idx)}]"
    if op == "sum" and node.dtype in ("float32", "float64"):
        # a reassociable add, so LLVM vectorises the sum (runtime._sum_add): into a scalar, or
        # into an element across an inner loop (sum(X, axis=1) on 1000 x 1000: 807 -> 100 us)
        step.body.append(f"{target} = _sum_add({target}, {value})  # {L.comment(node)}")
    elif op in ("sum", "prod"):
        step.body.append(f"{target} {'+' if op == 'sum' else '*'}= {value}  # {L.comment(node)}")
    else:  # like np.max/np.min: a NaN, once seen, stays; of tied values (0.0, -0.0) the later one
        compare = ">=" if op == "max" else "<="
        temp = f"t{L.p(node)}"
        step.body.append(f"{temp} = {value}  # {L.comment(node)}")
        step.body.append(f"if {temp} {compare} {target} or {temp} != {temp}:")
        step.body.append(f"    {target} = {temp}")
    step.labels.append(L.label(node))
    kind = "scalar" if node.ndim == 0 else "array"
    L.values[node.id] = Value(kind, name=name, array=name if node.ndim else None, avail=step.index + 1,
                                 root=name)


@lowers("scaled_prod")
def lower_scaled_prod(L, node: Expr):
    """prod(x over axes) * y * w / z in x's shape (``ops.reductions.SCALED_PROD``): the product
    accumulates as (m, e) beside the loop that produces x (``runtime._scaled_prod_step``:
    a multiply and two compares per element unless a factor or m leaves [2**-400, 2**400] /
    [2**-500, 2**500]); then a loop over x's shape combines it with y, w and z
    (``runtime._scaled_prod_ratio``).  Nodes over the same x and axes share one accumulation."""
    x, *factors = node.inputs
    axes = node.params["axes"]
    xd = L.shape[x.id]
    dims = list(xd)
    for t in factors:
        for k in range(x.ndim):
            d = L.dim(t, k)
            if d != 1:
                dims[k] = L.dims.unify(dims[k], d, L.context(node))
    L.shape[node.id] = tuple(dims)
    m, e, avail, out_idx = _scaled_accumulation(L, node, x, axes)
    if node.ndim == 0:
        operands = [L.operand(t, [], -1)[0] for t in factors]
        at = max([avail] + [L.ready(t) for t in factors])
        name = f"v{L.p(node)}"
        L.prelude(at).append(f"{name} = {_ratio_code(m, e, *operands, node.dtype)}  # {L.comment(node)}")
        L.values[node.id] = Value("scalar", name=name, avail=at)
        return
    L.current_domain = L.dims_of(node)
    step = None
    fused = [t for t in factors if L.values[t.id].kind == "fused" and L.values[t.id].array is None
             and t.ndim == node.ndim and L.dims_of(t) == L.current_domain and L.values[t.id].group >= avail]
    if fused:
        target = max(L.values[t.id].group for t in fused)
        others = [t for t in factors if not (any(t is f for f in fused) and L.values[t.id].group == target)]
        if all(L.ready(t) <= target for t in others):
            step = L.steps[target]
    if step is None:
        step = L.find_group(L.shape[node.id], max([avail] + [L.ready(t) for t in factors]))
    idx = [f"i{k}" for k in range(node.ndim)]
    operands = [L.operand(t, idx, step.index)[0] for t in factors]
    index = f"[{_index_text([idx[a] if i != '0' else '0' for a, i in enumerate(out_idx)])}]" if out_idx else ""
    name = f"v{L.p(node)}"
    step.body.append(f"{name} = {_ratio_code(m + index, e + index, *operands, node.dtype)}  # {L.comment(node)}")
    step.labels.append(L.label(node))
    L.values[node.id] = Value("fused", name=name, group=step.index, avail=step.index + 1)


def _ratio_code(m, e, y, w, z, dtype):
    code = f"_scaled_prod_ratio({m}, {e}, {y}, {w}, {z})"
    return f"np.float32({code})" if dtype == "float32" else code


def _reading_step(L, x: Expr, xd):
    """(the loop nest step that reads x element by element, its index names): the step
    producing x when x is fused and not stored, else one over x's shape."""
    vx = L.values[x.id]
    if vx.kind == "fused" and vx.array is None:
        step = L.steps[vx.group]
    else:
        step = L.find_group(xd, L.ready(x))
    L.current_domain = L.dims_of(x)
    return step, [f"i{k}" for k in range(x.ndim)]


def _scaled_accumulation(L, node: Expr, x: Expr, axes):
    """(m, e, first step that may read them, index pattern) of x's scaled product over axes:
    scalars when every axis is reduced (``out_idx`` empty), else arrays of x's shape with
    the reduced axes of size 1 (``out_idx``: "0" on those, "i" elsewhere)."""
    done = L.__dict__.setdefault("scaled_products", {})
    key = (x.id, axes)
    if key in done:
        return done[key]
    m, e = f"sm{L.p(node)}", f"se{L.p(node)}"
    scalar = x.ndim == 0 or len(axes) == x.ndim
    out_idx = [] if scalar else ["0" if a in axes else "i" for a in range(x.ndim)]
    if x.ndim == 0:
        at = L.ready(x)
        value = L.operand(x, [], -1)[0]
        L.prelude(at).append(f"{m}, {e} = _scaled_prod_step(1.0, 0, {value})  # {L.label(x)} scaled")
        done[key] = (m, e, at, out_idx)
        return done[key]
    xd = L.shape[x.id]
    step, idx = _reading_step(L, x, xd)
    value = L.operand(x, idx, step.index)[0]
    comment = f"{L.label(x)}'s product over {axes}, its exponent apart, for %{L.p(node)}"
    if scalar:
        L.prelude(step.index).append(f"{m} = 1.0; {e} = 0  # {comment}")
        target_m, target_e = m, e
    else:
        shape = "(" + ", ".join("1" if a in axes else L.dims.text(d) for a, d in enumerate(xd)) + ",)"
        lines = [f"{m} = _empty({shape}, np.float64)  # {comment}",
                 f"{e} = _empty({shape}, np.int64)"]
        indent = ""
        for k in range(x.ndim):
            bound = "1" if k in axes else L.dims.loop_bound(xd[k], k > 0)
            lines.append(f"{indent}for i{k} in range({bound}):")
            indent += "    "
        fill_idx = _index_text(idx)
        lines += [f"{indent}{m}[{fill_idx}] = 1.0", f"{indent}{e}[{fill_idx}] = 0"]
        L.allocated[m] = Allocated(m, shape, "float64", x.ndim)
        L.allocated[e] = Allocated(e, shape, "int64", x.ndim)
        late = L.dims.late_in(lines[0])
        if late:  # a size known late: the fill runs where it is known
            at = max(L.dims.late[d] for d in late)
            L.prelude(at).extend(lines[2:])
            lines = lines[:2]
        L.allocations.append((m, lines))
        out = _index_text(["0" if a in axes else i for a, i in enumerate(idx)])
        target_m, target_e = f"{m}[{out}]", f"{e}[{out}]"
    step.body.append(f"{target_m}, {target_e} = _scaled_prod_step({target_m}, {target_e}, {value})  # {comment}")
    # e back into m where the product is in m's range: then the ratios take their fast path
    settle = f"{m}, {e} = _scaled_prod_settle({m}, {e})" if scalar else f"_scaled_prod_settle_arrays({m}, {e})"
    step.after.append(settle)
    step.labels.append(L.label(node))
    done[key] = (m, e, step.index + 1, out_idx)
    return done[key]
