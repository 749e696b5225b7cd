"""Lowering of ``conv``: one call to a jitted helper of ``convolution_runtime``.

The helpers are compiled once per process for a dtype and a spatial rank (1-d arrives
as 2-d with one row), so a kernel holding convolutions stays small: written into the
kernel, each convolution's loops cost about 0.8 s of compile in every kernel, while
a helper costs 1-2 s once and each call to it about 0.2 s (Numba's compile time
also grows faster than linearly with a kernel's size).  Cached kernels contain the
helpers' code: loading one compiles nothing.

The operands are passed C-contiguous with their spatial axes flattened (a view or a
broadcast is copied first: O(size) against the convolution's O(size * taps)).  Which
helper, from the static sizes:

- BLAS (float, a gemm library found) when the filter's leading axis (output channels,
  or the channels a transposed convolution contracts) has at least
  GEMM_MIN_CHANNELS entries and the rest of it at least GEMM_MIN_CONTRACTION:
  ``_conv_gemm`` (im2col + gemm per image), ``_conv_transposed_gemm`` (gemm + col2im),
  or, with fewer output positions than taps (a filter's gradient),
  ``_conv_filter_gemm``;
- loops otherwise (one channel as in np.convolve, integers): ``_conv_taps``,
  ``_conv_positions`` (few output positions), ``_conv_scatter`` (transposed).
"""

from __future__ import annotations

import math

from ..ir import Expr
from ..ops.convolution import span
from .lowering import Value, lowers

# gemm pays an im2col copy of C*K*P elements per image for O*C*K*P multiply-adds: it
# wins once a few output channels share the copy (benchmarks/convolution.py); a single
# channel (np.convolve) is a loop of axpys, as fast and with no copy.
GEMM_MIN_CHANNELS = 4  # w.shape[0]: output channels, or the channels a transposed conv contracts
GEMM_MIN_CONTRACTION = 4  # prod(w.shape[1:])


def _static_product(dims):
    return None if any(not isinstance(d, int) for d in dims) else math.prod(dims)


def _output_sizes(L, node: Expr, x: Expr, w: Expr, like, nd: int) -> list:
    params = node.params
    sizes = []
    for axis in range(nd):
        if like is not None:
            sizes.append(L.dim(like, like.ndim - nd + axis))
            continue
        size, k = L.dim(x, 2 + axis), L.dim(w, 2 + axis)
        if isinstance(size, int) and isinstance(k, int):
            sizes.append(node.type.shape[2 + axis])
            continue
        stride, dilation = params["strides"][axis], params["dilation"][axis]
        lo, hi = params["padding"][axis]
        code = f"({size} + {lo + hi} - {dilation} * ({k} - 1) - 1) // {stride} + 1"
        sizes.append(L.dims.new(code, f"spatial size {axis} of the conv at {L.context(node)}",
                                key=("conv", size, k, stride, dilation, lo, hi)))
    return sizes


def _checks(L, node: Expr, x: Expr, w: Expr, like, nd: int):
    """Run-time checks of what the shape rule could not see: the channels, a filter of at
    least one tap, the filter inside the padded input (and inside the input, with ``cover``)."""
    params = node.params
    context = L.context(node)
    L.dims.unify(L.dim(x, 1), L.dim(w, 0 if params["transpose"] else 1), context)
    for axis in range(nd):
        k = L.dim(w, 2 + axis)
        dilation = params["dilation"][axis]
        if isinstance(k, int):
            reach = reach_text = str(span(k, dilation))
        else:
            L.dims.require(f"min({k}, 1)", "1", L.dims.description(k), "a filter needs at least one tap", context)
            reach, reach_text = f"{dilation} * ({k} - 1) + 1", f"{dilation} * ({L.dims.description(k)} - 1) + 1"
        size = L.dim(x, 2 + axis)
        if params["transpose"] or (isinstance(size, int) and isinstance(k, int)):
            continue  # static sizes were checked when the graph was built
        lo, hi = params["padding"][axis]
        what = f"the filter's span {reach_text} (kernel {L.dims.description(k)}, dilation {dilation})"
        if params["cover"]:
            L.dims.require(f"min({size}, {reach})", reach, L.dims.description(size),
                           f"{what} must fit in it (the input of run-time size is taken to be the larger)", context)
        if like is None:
            L.dims.require(f"min({size} + {lo + hi}, {reach})", reach,
                           f"{L.dims.description(size)} + {lo + hi} (padded)", f"{what} must fit in it", context)


def choose_helper(L, node: Expr, w: Expr, output_sizes) -> str:
    """The name of the convolution_runtime helper that computes ``node``."""
    from .runtime import BLAS

    nd = w.ndim - 2
    transpose = node.params["transpose"]
    taps = _static_product([L.dim(w, 2 + a) for a in range(nd)])
    positions = _static_product(output_sizes)
    # a filter's gradient: a static, small output (the filter's size) and taps as many as an image's
    few_positions = not transpose and positions is not None and (taps is None or positions < taps)
    lead, rest = L.dim(w, 0), _static_product([L.dim(w, a) for a in range(1, w.ndim)])
    gemm = (node.dtype in ("float32", "float64") and BLAS
            and (not isinstance(lead, int) or lead >= GEMM_MIN_CHANNELS)
            and (rest is None or rest >= GEMM_MIN_CONTRACTION))
    if transpose:
        return "_conv_transposed_gemm" if gemm else "_conv_scatter"
    if few_positions:
        return "_conv_filter_gemm" if gemm else "_conv_positions"
    return "_conv_gemm" if gemm else "_conv_taps"


def _in_order(L, node: Expr):
    """A C-contiguous array holding node's elements in node's order, if one exists without a copy:
    the array itself, or the base of views that keep the order (expand_dims, squeeze, and
    transposes that move only axes of size 1, as the batch-channel swap of a filter's
    gradient when there is one channel); None otherwise."""
    v = L.values[node.id]
    if v.kind == "array" and v.array:
        L.ready(node)
        return v.array
    if v.kind != "view" or node.op.name not in ("expand_dims", "squeeze", "transpose"):
        return None
    x = node.inputs[0]
    if node.op.name == "transpose":
        moved = [a for a in node.params["axes"] if L.dim(x, a) != 1]
        if moved != sorted(moved):
            return None
    return _in_order(L, x)


def _tuple(items) -> str:
    """A tuple of int64s; a literal int would be typed as its own value and compile the
    helper once per distinct size (Numba's literal specialisation), not once per rank."""
    items = [f"np.int64({i})" if isinstance(i, int) or str(i).isdigit() else str(i) for i in items]
    return "(" + ", ".join(items) + ("," if len(items) == 1 else "") + ")"


@lowers("conv")
def lower_conv(L, node: Expr):
    x, w = node.inputs[:2]
    like = node.inputs[2] if len(node.inputs) == 3 else None
    params = node.params
    nd = x.ndim - 2
    _checks(L, node, x, w, like, nd)
    sizes = _output_sizes(L, node, x, w, like, nd)
    out_channels = L.dim(w, 1 if params["transpose"] else 0)
    L.shape[node.id] = (L.dim(x, 0), out_channels) + tuple(sizes)
    helper = choose_helper(L, node, w, sizes)
    x_array, w_array = _in_order(L, x) or L.copy_or_array(x), _in_order(L, w) or L.copy_or_array(w)
    at = max(L.avail(x), L.avail(w))
    name = f"a{L.p(node)}"
    L.allocate(name, node)
    product, text = L.dims.product, L.dims.text

    def flat(array: str, node: Expr) -> str:  # the array as (lead, channels, prod(spatial))
        dims = L.dims_of(node)
        return f"{array}.reshape(({text(dims[0])}, {text(dims[1])}, {product(dims[2:])}))"

    kernel = [text(L.dim(w, 2 + a)) for a in range(nd)]
    spatial = [text(L.dim(x, 2 + a)) for a in range(nd)]
    out_spatial = [text(d) for d in sizes]
    # transposed: the helper's (K, U, P) are the filter's, the output's and x's spatial sizes
    first, second = (out_spatial, spatial) if params["transpose"] else (spatial, out_spatial)
    strides, dilation = list(params["strides"]), list(params["dilation"])
    lows = [lo for lo, _ in params["padding"]]
    if nd == 1:  # as 2-d with one row: the helpers are compiled for one rank fewer
        kernel, first, second = ["1"] + kernel, ["1"] + first, ["1"] + second
        strides, dilation, lows = [1] + strides, [1] + dilation, [0] + lows
    L.prelude(at).append(
        f"{helper}({flat(name, node)}, {flat(x_array, x)}, {flat(w_array, w)}, {_tuple(kernel)}, {_tuple(first)}, "
        f"{_tuple(second)}, {_tuple(strides)}, {_tuple(dilation)}, {_tuple(lows)})  # {L.comment(node)}")
    L.values[node.id] = Value("array", name=name, array=name, avail=at, root=name)
