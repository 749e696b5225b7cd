"""Lowering of ``conv``: loop nests written into the kernel, or im2col + one BLAS gemm
per image when the channels make a matrix product worth its copy.

Four shapes of code, chosen from the static sizes when the graph is lowered:

- *taps* (forward, few filter taps): for each image, output channel, input channel
  and tap, an axpy over the output positions the tap reaches inside the input
  (``out[n, o, p] += w[o, c, k] * x[n, c, p*s + k*d - lo]``); the innermost loop runs
  along the last output axis, reads x with a constant stride and vectorises.
- *positions* (forward, more taps than output positions: a filter's gradient, whose
  "filter" is the whole cotangent): for each output element, a dot product over the
  channels and the taps that land inside the input, in a scalar accumulator.
- *scatter* (transposed): for each tap, an axpy from the input positions into the
  output positions it reaches (``out[n, c, p*s + k*d - lo] += w[o, c, k] * x[n, o, p]``).
- *gemm* (float, with BLAS, enough channels): per image, the input's windows are
  copied into a (C*K, P) matrix (zeros for padding) and ``out[n] = w (O, C*K) @ col``
  is one gemm; transposed, ``col = w^T @ x[n]`` is one gemm and the columns are
  added back into the windows they came from.

Windows never read outside the input: every axpy's range of output positions is
computed from the padding once per tap, so there is no test per element (except in
im2col's copy, which writes the padding's zeros).  Operands are read through views
(a transposed cotangent, a flipped filter) without copies, except the gemm's
operands, which BLAS needs contiguous.
"""

from __future__ import annotations

import math

from ..ir import Expr
from ..ops.convolution import span
from .lowering import Value, _index_text, literal, lowers

# gemm pays an im2col copy of C*K*P elements per image for O*C*K*P multiply-adds: it
# wins once several output channels share the copy and the contraction is not tiny.
# Measured on the shapes of /work/notes/conv.md (benchmarks/convolution.py).
GEMM_MIN_OUT_CHANNELS = 4
GEMM_MIN_CONTRACTION = 16  # C * prod(K)


def _static_product(dims) -> int | None:
    return None if any(not isinstance(d, int) for d in dims) else math.prod(dims)


def _affine(p: str, stride: int, k: str, dilation: int, lo: int) -> str:
    """Source for p*stride + k*dilation - lo."""
    text = p if stride == 1 else f"{stride} * {p}"
    text += f" + {k}" if dilation == 1 else f" + {dilation} * {k}"
    return text + (f" - {lo}" if lo else "")


def _range(first: str, step: int, lo: int, size, count) -> tuple:
    """(start, stop) of the positions q in range(count) with 0 <= q*step + first - lo < size:
    the output positions one tap reaches inside the input, or the taps one output position reads."""
    start = f"max(-(({first} - {lo}) // {step}), 0)"
    stop = f"min(({size} - 1 + {lo} - {first}) // {step} + 1, {count})"
    return start, stop


def _spatial_sizes(L, node: Expr, x: Expr, w: Expr, like, nd: int) -> list:
    params = node.params
    sizes = []
    for axis in range(nd):
        if like is not None:
            sizes.append(L.dim(like, like.ndim - nd + axis))
            continue
        size, k = L.dim(x, 2 + axis), L.dim(w, 2 + axis)
        stride, dilation = params["strides"][axis], params["dilation"][axis]
        lo, hi = params["padding"][axis]
        if isinstance(size, int) and isinstance(k, int):
            sizes.append(node.type.shape[2 + axis])
            continue
        code = f"({size} + {lo + hi} - {dilation} * ({k} - 1) - 1) // {stride} + 1"
        sizes.append(L.dims.new(code, f"spatial size {axis} of the conv at {L.context(node)}",
                                key=("conv", size, k, stride, dilation, lo, hi)))
    return sizes


def _checks(L, node: Expr, x: Expr, w: Expr, like, nd: int):
    """Run-time checks of what the shape rule could not see: channels, filters at least one
    tap long, the filter inside the padded input (and inside the input, with ``cover``)."""
    params = node.params
    context = L.context(node)
    L.dims.unify(L.dim(x, 1), L.dim(w, 0 if params["transpose"] else 1), context)
    for axis in range(nd):
        k = L.dim(w, 2 + axis)
        dilation = params["dilation"][axis]
        if isinstance(k, int):
            reach = str(span(k, dilation))
        else:
            L.dims.require(f"min({k}, 1)", "1", L.dims.description(k), "a filter needs at least one tap", context)
            reach = f"{dilation} * ({k} - 1) + 1"
        size = L.dim(x, 2 + axis)
        if params["transpose"] or (isinstance(size, int) and isinstance(k, int)):
            continue  # static sizes were checked when the graph was built
        lo, hi = params["padding"][axis]
        what = f"the filter's span {reach} (kernel {L.dims.description(k)}, dilation {dilation})"
        if params["cover"]:
            L.dims.require(f"min({size}, {reach})", reach, L.dims.description(size),
                           f"{what} must fit in it (the input of run-time size is taken to be the larger)", context)
        if like is None:
            L.dims.require(f"min({size} + {lo + hi}, {reach})", reach, f"{L.dims.description(size)} + {lo + hi} "
                           "(padded)", f"{what} must fit in it", context)


def _use_gemm(L, node: Expr, x: Expr, w: Expr, nd: int) -> bool:
    from .runtime import BLAS

    if node.dtype not in ("float32", "float64") or not BLAS:
        return False
    transpose = node.params["transpose"]
    out_channels = L.dim(w, 1 if transpose else 0)
    contraction = _static_product([L.dim(w, 0 if transpose else 1)] + [L.dim(w, 2 + a) for a in range(nd)])
    many_out = not isinstance(out_channels, int) or out_channels >= GEMM_MIN_OUT_CHANNELS
    return many_out and (contraction is None or contraction >= GEMM_MIN_CONTRACTION)


@lowers("conv")
def lower_conv(L, node: Expr):
    x, w = node.inputs[:2]
    like = node.inputs[2] if len(node.inputs) == 3 else None
    nd = x.ndim - 2
    transpose = node.params["transpose"]
    _checks(L, node, x, w, like, nd)
    spatial = _spatial_sizes(L, node, x, w, like, nd)
    out_channels = L.dim(w, 1 if transpose else 0)
    L.shape[node.id] = (L.dim(x, 0), out_channels) + tuple(spatial)
    name = f"a{L.p(node)}"
    if _use_gemm(L, node, x, w, nd):
        lines, at = _gemm_lines(L, node, x, w, nd, name)
    else:
        L.ready(x)
        L.ready(w)
        at = max(L.avail(x), L.avail(w))
        if transpose:
            lines = _scatter_lines(L, node, x, w, nd, name)
        else:
            taps = _static_product([L.dim(w, 2 + a) for a in range(nd)])
            positions = _static_product(spatial)
            few_positions = taps is not None and positions is not None and positions < taps
            lines = (_positions_lines if few_positions else _taps_lines)(L, node, x, w, nd, name)
    L.prelude(at).extend([f"# {L.comment(node)}"] + lines)
    L.values[node.id] = Value("array", name=name, array=name, avail=at, root=name)


class _Names:
    """Kernel locals of one conv node: q<position>_<what>."""

    def __init__(self, L, node):
        self.prefix = f"q{L.p(node)}_"

    def __getattr__(self, what):
        return self.prefix + what


def _loops(lines: list, indent: str, variables, bounds) -> str:
    for variable, bound in zip(variables, bounds):
        lines.append(f"{indent}for {variable} in range({bound}):")
        indent += "    "
    return indent


def _taps_lines(L, node, x, w, nd, name) -> list:
    """Forward conv, axpy per tap over the output positions it reaches."""
    params = node.params
    q = _Names(L, node)
    L.allocate(name, node, zeros=True)
    text = L.dims.text
    lines = []
    indent = _loops(lines, "", [q.n, q.o, q.c], [text(L.dim(x, 0)), text(L.dim(w, 0)), text(L.dim(x, 1))])
    for a in range(nd):
        k, stride, dilation, lo = f"{q.k}{a}", params["strides"][a], params["dilation"][a], params["padding"][a][0]
        lines.append(f"{indent}for {k} in range({text(L.dim(w, 2 + a))}):")
        indent += "    "
        start, stop = _range(f"{dilation} * {k}", stride, lo, text(L.dim(x, 2 + a)), text(L.shape[node.id][2 + a]))
        lines.append(f"{indent}{q.start}{a} = {start}")
        lines.append(f"{indent}{q.stop}{a} = {stop}")
    taps = [f"{q.k}{a}" for a in range(nd)]
    lines.append(f"{indent}{q.w} = {L.load(w, [q.o, q.c] + taps)}")
    positions = [f"{q.p}{a}" for a in range(nd)]
    indent = _loops(lines, indent, positions, [f"{q.start}{a}, {q.stop}{a}" for a in range(nd)])
    index = [_affine(positions[a], params["strides"][a], taps[a], params["dilation"][a], params["padding"][a][0])
             for a in range(nd)]
    lines.append(f"{indent}{name}[{_index_text([q.n, q.o] + positions)}] += {q.w} * {L.load(x, [q.n, q.c] + index)}")
    return lines


def _positions_lines(L, node, x, w, nd, name) -> list:
    """Forward conv, a dot product per output element over the taps that land inside the input."""
    params = node.params
    q = _Names(L, node)
    L.allocate(name, node)
    text = L.dims.text
    lines = []
    positions = [f"{q.p}{a}" for a in range(nd)]
    indent = _loops(lines, "", [q.n, q.o], [text(L.dim(x, 0)), text(L.dim(w, 0))])
    for a in range(nd):
        p, stride, dilation, lo = positions[a], params["strides"][a], params["dilation"][a], params["padding"][a][0]
        lines.append(f"{indent}for {p} in range({text(L.shape[node.id][2 + a])}):")
        indent += "    "
        start, stop = _range(f"{stride} * {p}", dilation, lo, text(L.dim(x, 2 + a)), text(L.dim(w, 2 + a)))
        lines.append(f"{indent}{q.start}{a} = {start}")
        lines.append(f"{indent}{q.stop}{a} = {stop}")
    lines.append(f"{indent}{q.acc} = {literal(0, node.dtype)}")
    taps = [f"{q.k}{a}" for a in range(nd)]
    inner = _loops(lines, indent, [q.c] + taps, [text(L.dim(x, 1))] + [f"{q.start}{a}, {q.stop}{a}" for a in range(nd)])
    index = [_affine(positions[a], params["strides"][a], taps[a], params["dilation"][a], params["padding"][a][0])
             for a in range(nd)]
    lines.append(f"{inner}{q.acc} += {L.load(x, [q.n, q.c] + index)} * {L.load(w, [q.o, q.c] + taps)}")
    lines.append(f"{indent}{name}[{_index_text([q.n, q.o] + positions)}] = {q.acc}")
    return lines


def _scatter_lines(L, node, x, w, nd, name) -> list:
    """Transposed conv: axpy per tap from the input positions into the outputs they reach."""
    params = node.params
    q = _Names(L, node)
    L.allocate(name, node, zeros=True)
    text = L.dims.text
    lines = []
    indent = _loops(lines, "", [q.n, q.o, q.c], [text(L.dim(x, 0)), text(L.dim(x, 1)), text(L.dim(w, 1))])
    for a in range(nd):
        k, stride, dilation, lo = f"{q.k}{a}", params["strides"][a], params["dilation"][a], params["padding"][a][0]
        lines.append(f"{indent}for {k} in range({text(L.dim(w, 2 + a))}):")
        indent += "    "
        start, stop = _range(f"{dilation} * {k}", stride, lo, text(L.shape[node.id][2 + a]), text(L.dim(x, 2 + a)))
        lines.append(f"{indent}{q.start}{a} = {start}")
        lines.append(f"{indent}{q.stop}{a} = {stop}")
    taps = [f"{q.k}{a}" for a in range(nd)]
    lines.append(f"{indent}{q.w} = {L.load(w, [q.o, q.c] + taps)}")
    positions = [f"{q.p}{a}" for a in range(nd)]
    indent = _loops(lines, indent, positions, [f"{q.start}{a}, {q.stop}{a}" for a in range(nd)])
    index = [_affine(positions[a], params["strides"][a], taps[a], params["dilation"][a], params["padding"][a][0])
             for a in range(nd)]
    lines.append(f"{indent}{name}[{_index_text([q.n, q.c] + index)}] += {q.w} * {L.load(x, [q.n, q.o] + positions)}")
    return lines


def _gemm_lines(L, node, x, w, nd, name):
    """im2col + gemm per image (forward), or gemm + col2im per image (transposed)."""
    params = node.params
    transpose = params["transpose"]
    q = _Names(L, node)
    text = L.dims.text
    dtype = node.dtype
    w_array = L.copy_or_array(w)  # BLAS reads w as a contiguous (O, C*K) matrix
    x_array = L.copy_or_array(x) if transpose else None
    L.ready(x)
    at = max(L.avail(x), L.avail(w))
    channels = L.dim(w, 1) if transpose else L.dim(x, 1)
    out_channels = L.dim(w, 0) if not transpose else L.dim(w, 1)
    kernel = [L.dim(w, 2 + a) for a in range(nd)]
    positions = [L.dim(x, 2 + a) for a in range(nd)] if transpose else list(L.shape[node.id][2:])
    rows = " * ".join([text(channels)] + [text(k) for k in kernel])
    columns = " * ".join(text(p) for p in positions)
    lines = [f"{q.col} = np.empty(({rows}, {columns}), dtype=np.{dtype})"]
    if transpose:
        L.allocate(name, node, zeros=True)
        batch = text(L.dim(x, 0))
    else:
        L.allocate(name, node)
        batch = text(L.dim(x, 0))
    lines.append(f"for {q.n} in range({batch}):")
    indent = "    "
    if transpose:  # col = w^T (C*K, O) @ x[n] (O, P)
        lines.append(f"{indent}_gemm({q.col}, {w_array}, {x_array}[{q.n}], {rows}, {columns}, {text(L.dim(w, 0))}, 1, 0)")
    taps = [f"{q.k}{a}" for a in range(nd)]
    ps = [f"{q.p}{a}" for a in range(nd)]
    inner = _loops(lines, indent, [q.c] + taps, [text(channels)] + [text(k) for k in kernel])
    row = q.c
    for a in range(nd):
        row = f"({row}) * {text(kernel[a])} + {taps[a]}"
    lines.append(f"{inner}{q.row} = {row}")
    size_text = [text(L.shape[node.id][2 + a]) if transpose else text(L.dim(x, 2 + a)) for a in range(nd)]
    for a in range(nd):  # the positions whose window element lies inside the input (or output, transposed)
        start, stop = _range(f"{params['dilation'][a]} * {taps[a]}", params["strides"][a], params["padding"][a][0],
                             size_text[a], text(positions[a]))
        lines.append(f"{inner}{q.start}{a} = {start}")
        lines.append(f"{inner}{q.stop}{a} = {stop}")
    column = ps[0]
    for a in range(1, nd):
        column = f"({column}) * {text(positions[a])} + {ps[a]}"
    index = [_affine(ps[a], params["strides"][a], taps[a], params["dilation"][a], params["padding"][a][0])
             for a in range(nd)]
    if transpose:
        body = _loops(lines, inner, ps, [f"{q.start}{a}, {q.stop}{a}" for a in range(nd)])
        lines.append(f"{body}{name}[{_index_text([q.n, q.c] + index)}] += {q.col}[{q.row}, {column}]")
    else:
        body = _loops(lines, inner, ps, [text(p) for p in positions])
        inside = " and ".join(f"{q.start}{a} <= {ps[a]} < {q.stop}{a}" for a in range(nd))
        value = L.load(x, [q.n, q.c] + index)
        lines.append(f"{body}{q.col}[{q.row}, {column}] = {value} if {inside} else {literal(0, dtype)}")
        lines.append(f"{indent}_gemm({name}[{q.n}], {w_array}, {q.col}, {text(out_channels)}, {columns}, {rows}, 0, 0)")
    return lines, at
