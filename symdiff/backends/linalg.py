"""Lowering of matmul: one BLAS ``gemm`` call per (broadcast) batch element, with
transposed operands read in place (see ``runtime._gemm``), or ``runtime._matvec``'s
loops where an operand is a vector; any inf or NaN entry of a float product is then
recomputed as the reference does it (``runtime._matmul_nonfinite`` after ``_gemm``,
inside ``_matvec``; why: ``ops.linalg.recompute_nonfinite_dots``)."""

from __future__ import annotations

from ..ir import Expr
from .lowering import NUMPY_NAME, Value, _index_text, lowers


@lowers("matmul")
def lower_matmul(L, node: Expr):
    a, b = node.inputs
    ad, bd = L.shape[a.id], L.shape[b.id]
    context = L.context(node)
    k_a = ad[-1]
    k_b = bd[-2] if b.ndim > 1 else bd[0]
    L.dims.unify(k_a, k_b, context)
    batch_a = ad[:-2] if a.ndim > 2 else ()
    batch_b = bd[:-2] if b.ndim > 2 else ()
    nb = max(len(batch_a), len(batch_b))
    batch = []
    for k in range(nb):
        da = batch_a[k - (nb - len(batch_a))] if k >= nb - len(batch_a) else 1
        db = batch_b[k - (nb - len(batch_b))] if k >= nb - len(batch_b) else 1
        da, db = L.dims.find(da), L.dims.find(db)
        batch.append(db if da == 1 else da if db == 1 else L.dims.unify(da, db, context))
    rows = (ad[-2],) if a.ndim > 1 else ()
    cols = (bd[-1],) if b.ndim > 1 else ()
    L.shape[node.id] = tuple(batch) + rows + cols
    L.ready(a)
    L.ready(b)
    x, transpose_a = gemm_operand(L, a)
    y, transpose_b = gemm_operand(L, b)
    at = max(L.avail(a), L.avail(b))
    m = L.dims.text(ad[-2]) if a.ndim > 1 else "1"
    k = L.dims.text(k_a)
    n = L.dims.text(bd[-1]) if b.ndim > 1 else "1"
    blas = node.dtype in ("float32", "float64")
    lines = [f"# {L.comment(node)}"]
    name = f"a{L.p(node)}"
    if node.ndim == 0:
        lines.append(f"{name} = _empty((1,), {NUMPY_NAME[node.dtype]})")
    else:
        L.allocate(name, node)
    bidx = [f"b{j}" for j in range(nb)]
    indent = ""
    for j in range(nb):
        lines.append(f"{indent}for b{j} in range({L.dims.text(batch[j])}):")
        indent += "    "

    def batch_part(array, dims, nd):
        lead = nd - 2 if nd > 2 else 0
        if not lead:
            return array
        picks = ["0" if L.dims.find(dims[j]) == 1 else bidx[nb - lead + j] for j in range(lead)]
        return f"{array}[{_index_text(picks)}]"

    xa, yb = batch_part(x, ad, a.ndim), batch_part(y, bd, b.ndim)
    out = f"{name}[{_index_text(bidx)}]" if nb else name
    if not blas:
        gemm = "_gemm_loops"  # BLAS takes float32/float64 only
    elif "1" in (m, n):
        gemm = "_matvec"  # a vector operand: loops beat BLAS (see runtime._matvec)
    else:
        gemm = "_gemm"
    lines.append(f"{indent}{gemm}({out}, {xa}, {yb}, {m}, {n}, {k}, {transpose_a}, {transpose_b})")
    if gemm == "_gemm" and k != "1":  # inf or NaN entries as the reference has them (_matvec does it itself)
        lines.append(f"{indent}_matmul_nonfinite({out}, {xa}, {yb}, {m}, {n}, {k}, {transpose_a}, {transpose_b})")
    if node.ndim == 0:
        scalar = f"v{L.p(node)}"
        lines.append(f"{scalar} = {name}[0]")
        L.values[node.id] = Value("scalar", name=scalar, avail=at)
    else:
        L.values[node.id] = Value("array", name=name, array=name, avail=at, root=name)
    L.prelude(at).extend(lines)


def gemm_operand(L, node: Expr):
    """(C-contiguous array, 1 if it is to be read transposed) for a matmul operand."""
    v = L.values[node.id]
    L.fill(node)
    if v.kind == "view" and node.op.name == "transpose" and node.ndim == 2:
        base = L.values[v.base.id]
        if base.kind != "view" and base.array:
            return base.array, 1
    return L.copy_or_array(node), 0
