"""Jitted helpers for ``conv`` (see ``convolution``): each is compiled once per process for
a dtype and a spatial rank, and a kernel calls it in one line, so kernels stay small
(Numba's compile time grows faster than linearly with a kernel's size).

Arrays arrive C-contiguous with the spatial axes flattened: x (N, C, prod(S)),
w (O, C, prod(K)), out (N, O, prod(P)); the spatial sizes, strides, dilations and
low paddings come as tuples.  The element of x under output position p and tap k is
at ``i = p*stride + k*dilation - lo`` on each axis, zero outside ``0 <= i < S``.  The
relation is symmetric in (p, stride) and (k, dilation), so one routine finds, for a
fixed index on one side, the range of the other side's last-axis index that stays
inside: inner loops run over contiguous memory (the output's or the filter's last
axis) with no test per element.

- ``_conv_gemm``: per image, im2col (the windows as a (C*K, P) matrix, padding as
  zeros) and one BLAS gemm ``out[n] = w (O, C*K) @ col``.
- ``_conv_transposed_gemm``: per image, ``col = w^T @ x[n]`` and col2im (each column
  added into the window it came from).
- ``_conv_filter_gemm``: few output positions and many taps (a filter's gradient, the
  taps being a whole cotangent image): the windows as rows over the taps, a chunk of
  channels at a time, each chunk one wide gemm for all images and positions at once.
- ``_conv_taps``, ``_conv_positions``, ``_conv_scatter``: the same three as loops (one
  channel, np.convolve; integers; no BLAS): an axpy per tap, a dot product per
  output element, an axpy per tap into the output.

Speed (benchmarks/convolution.py): inner loops index with unsigned integers (``_u``),
since Numba's test for negative indices kept LLVM from vectorising them (an axpy of
1e5: 67 -> 19 us); the small helpers are inlined and two spatial axes take a direct
path (per-row overhead dominated small images: the forward conv of the digits'
second layer, 64 x 16 x 4 x 4 to 32 channels, 0.74 -> 0.19 ms); the dot products may
reassociate their sums (83 -> 17 us for 1e5).
"""

from __future__ import annotations

import numpy as np
from numba import njit

__all__ = ["_conv_filter_gemm", "_conv_gemm", "_conv_positions", "_conv_scatter", "_conv_taps",
           "_conv_transposed_gemm"]

FILTER_GEMM_CHUNK = 1 << 16  # elements of _conv_filter_gemm's column buffer per gemm (at least one channel)


@njit(nogil=True, error_model="numpy", inline="always")
def _u(index):
    """An index known to be in bounds, unsigned: Numba then skips the negative-index
    wrap-around test that keeps LLVM from vectorising the inner loops (3-4x measured)."""
    return np.uint64(index)


@njit(nogil=True, error_model="numpy", inline="always")
def _product(sizes):
    total = 1
    for size in sizes:
        total *= size
    return total


@njit(nogil=True, error_model="numpy", inline="always")
def _unravel(flat, sizes, index, count):
    """index[:count] = the row-major multi-index of ``flat`` in sizes[:count]."""
    for a in range(count - 1, -1, -1):
        index[a] = flat % sizes[a]
        flat //= sizes[a]


@njit(nogil=True, error_model="numpy", inline="always")
def _inside_range(first, step, size, count):
    """(start, stop), start <= stop, of the q in range(count) with 0 <= q*step + first < size."""
    start = min(max(-(first // step), 0), count)
    stop = max(min((size - 1 - first) // step + 1, count), start)
    return start, stop


@njit(nogil=True, error_model="numpy", inline="always")
def _outer_offset(flat, fixed, sizes, S, step, fixed_step, lo, index):
    """For the multi-index of ``flat`` over sizes[:-1] and the fixed index ``fixed`` of the
    other side: the flat offset in x of the window element (its last axis at 0, times
    S[-1]), or -1 if it falls outside x on one of these axes."""
    nd = len(sizes)
    if nd == 2:  # the common case (1-d arrives as one row), without the index array
        i = flat * step[0] + fixed[0] * fixed_step[0] - lo[0]
        return i * S[1] if 0 <= i < S[0] else -1
    _unravel(flat, sizes, index, nd - 1)
    offset = 0
    for a in range(nd - 1):
        i = index[a] * step[a] + fixed[a] * fixed_step[a] - lo[a]
        if i < 0 or i >= S[a]:
            return -1
        offset = offset * S[a] + i
    return offset * S[nd - 1]


@njit(nogil=True, error_model="numpy", inline="always")
def _fill_row(col, row, x, offset, step, start, stop, last):
    """One row of a window: zeros before ``start`` and from ``stop``, x in between."""
    for p in range(start):
        col[_u(row + p)] = 0
    for p in range(start, stop):
        col[_u(row + p)] = x[_u(offset + p * step)]
    for p in range(stop, last):
        col[_u(row + p)] = 0


@njit(nogil=True, error_model="numpy", inline="always")
def _fill_windows(col, at, x, k, S, P, strides, dilation, lo, index):
    """col[at + flat(p)] = x[window element of output position p for tap k], 0 outside x."""
    nd = len(P)
    last = P[nd - 1]
    first = k[nd - 1] * dilation[nd - 1] - lo[nd - 1]
    step = strides[nd - 1]
    start, stop = _inside_range(first, step, S[nd - 1], last)
    if nd == 2:  # the common case (1-d arrives as one row): rows inside x are a range too
        first0 = k[0] * dilation[0] - lo[0]
        start0, stop0 = _inside_range(first0, strides[0], S[0], P[0])
        for i in range(start0 * last):
            col[_u(at + i)] = 0
        for p0 in range(start0, stop0):
            _fill_row(col, at + p0 * last, x, (p0 * strides[0] + first0) * S[1] + first, step, start, stop, last)
        for i in range(stop0 * last, P[0] * last):
            col[_u(at + i)] = 0
        return
    for outer in range(_product(P) // last if last else 0):
        row = at + outer * last
        offset = _outer_offset(outer, k, P, S, strides, dilation, lo, index)
        if offset < 0:
            for p in range(last):
                col[_u(row + p)] = 0
            continue
        _fill_row(col, row, x, offset + first, step, start, stop, last)


@njit(nogil=True, error_model="numpy", inline="always")
def _add_windows(out, col, at, k, U, P, strides, dilation, lo, index, alpha):
    """out[window element of position p for tap k] += alpha * col[at + flat(p)], where inside out."""
    nd = len(P)
    last = P[nd - 1]
    first = k[nd - 1] * dilation[nd - 1] - lo[nd - 1]
    step = strides[nd - 1]
    start, stop = _inside_range(first, step, U[nd - 1], last)
    if nd == 2:  # the common case: the rows that land inside out are a range
        first0 = k[0] * dilation[0] - lo[0]
        start0, stop0 = _inside_range(first0, strides[0], U[0], P[0])
        for p0 in range(start0, stop0):
            offset = (p0 * strides[0] + first0) * U[1] + first
            row = at + p0 * last
            for p in range(start, stop):
                out[_u(offset + p * step)] += alpha * col[_u(row + p)]
        return
    for outer in range(_product(P) // last if last else 0):
        offset = _outer_offset(outer, k, P, U, strides, dilation, lo, index)
        if offset < 0:
            continue
        offset += first
        row = at + outer * last
        for p in range(start, stop):
            out[_u(offset + p * step)] += alpha * col[_u(row + p)]


@njit(nogil=True, error_model="numpy")
def _zero(out):
    flat = out.reshape(out.size)
    for i in range(flat.size):
        flat[i] = 0


@njit(nogil=True, error_model="numpy")
def _conv_gemm(out, x, w, K, S, P, strides, dilation, lo):
    """out (N, O, P) = conv of x (N, C, S) with w (O, C, K): per image, im2col and one gemm."""
    channels, kf, pf = x.shape[1], _product(K), _product(P)
    col = np.empty(channels * kf * pf, dtype=x.dtype)
    k = np.empty(len(K), dtype=np.int64)
    index = np.empty(len(K), dtype=np.int64)
    for n in range(x.shape[0]):
        for c in range(channels):
            for t in range(kf):
                _unravel(t, K, k, len(K))
                _fill_windows(col, (c * kf + t) * pf, x[n, c], k, S, P, strides, dilation, lo, index)
        _gemm(out[n], w, col, w.shape[0], pf, channels * kf, 0, 0)


@njit(nogil=True, error_model="numpy")
def _conv_transposed_gemm(out, x, w, K, U, P, strides, dilation, lo):
    """out (N, C, U) = transposed conv of x (N, O, P) with w (O, C, K): per image,
    col = w^T (C*K, O) @ x[n] (O, P), each column added into its window."""
    channels, kf, pf = w.shape[1], _product(K), _product(P)
    _zero(out)
    col = np.empty(channels * kf * pf, dtype=x.dtype)
    k = np.empty(len(K), dtype=np.int64)
    index = np.empty(len(K), dtype=np.int64)
    for n in range(x.shape[0]):
        _gemm(col, w, x[n], channels * kf, pf, w.shape[0], 1, 0)
        for c in range(channels):
            for t in range(kf):
                _unravel(t, K, k, len(K))
                _add_windows(out[n, c], col, (c * kf + t) * pf, k, U, P, strides, dilation, lo, index, 1)


@njit(nogil=True, error_model="numpy")
def _conv_filter_gemm(out, x, w, K, S, P, strides, dilation, lo):
    """out (B, O, P) = conv of x (B, C, S) with w (O, C, K) when P is small and K large (a
    filter's gradient, whose taps are a whole cotangent image): for a chunk of channels,
    col (B*P, chunk*K) holds x's windows as rows over the taps (long and contiguous in x)
    and ``prod (O, B*P) = w[:, chunk] (O, chunk*K) @ col^T`` is one wide gemm, added into
    the result.  w is copied as (C, K, O) blocks, read transposed, so a chunk of
    channels is one contiguous operand."""
    images, channels, outs = x.shape[0], x.shape[1], w.shape[0]
    kf, pf = _product(K), _product(P)
    rows = images * pf
    chunk = max(min(FILTER_GEMM_CHUNK // max(rows * kf, 1), channels), 1)
    blocks = np.empty((channels, kf, outs), dtype=w.dtype)
    for o in range(outs):
        for c in range(channels):
            for t in range(kf):
                blocks[c, t, o] = w[o, c, t]
    col = np.empty(rows * chunk * kf, dtype=x.dtype)
    prod = np.empty(outs * rows, dtype=x.dtype)
    total = np.zeros(outs * rows, dtype=x.dtype)
    p = np.empty(len(K), dtype=np.int64)
    index = np.empty(len(K), dtype=np.int64)
    for first in range(0, channels, chunk):
        count = min(chunk, channels - first)
        ld = count * kf
        for b in range(images):
            for flat in range(pf):
                _unravel(flat, P, p, len(P))
                row = (b * pf + flat) * ld
                for j in range(count):  # the taps under output position p: x[t*dilation + p*stride - lo]
                    _fill_windows(col, row + j * kf, x[b, first + j], p, S, K, dilation, strides, lo, index)
        _gemm(prod, blocks[first:], col, outs, rows, ld, 1, 1)
        for i in range(outs * rows):
            total[i] += prod[i]
    for b in range(images):
        for o in range(outs):
            for i in range(pf):
                out[b, o, i] = total[o * rows + b * pf + i]


@njit(nogil=True, error_model="numpy")
def _conv_taps(out, x, w, K, S, P, strides, dilation, lo):
    """out (N, O, P) = conv of x (N, C, S) with w (O, C, K) as loops: an axpy per tap over
    the output positions it reaches inside x."""
    nd = len(P)
    _zero(out)
    kf, last = _product(K), P[nd - 1]
    k = np.empty(nd, dtype=np.int64)
    index = np.empty(nd, dtype=np.int64)
    step = strides[nd - 1]
    for n in range(x.shape[0]):
        for o in range(w.shape[0]):
            target = out[n, o]
            for c in range(x.shape[1]):
                source = x[n, c]
                for t in range(kf):
                    _unravel(t, K, k, nd)
                    alpha = w[o, c, t]
                    first = k[nd - 1] * dilation[nd - 1] - lo[nd - 1]
                    start, stop = _inside_range(first, step, S[nd - 1], last)
                    for outer in range(_product(P) // last if last else 0):
                        offset = _outer_offset(outer, k, P, S, strides, dilation, lo, index)
                        if offset < 0:
                            continue
                        offset += first
                        row = outer * last
                        for p in range(start, stop):
                            target[_u(row + p)] += alpha * source[_u(offset + p * step)]


@njit(nogil=True, error_model="numpy", fastmath={"reassoc"})
def _conv_positions(out, x, w, K, S, P, strides, dilation, lo):
    """out (N, O, P) = conv of x (N, C, S) with w (O, C, K) as loops, for few output
    positions and many taps: a dot product per output element over the taps inside x.
    Its sums may be reassociated (the only floating-point work here), so they vectorise:
    5x faster, rounded like any other summation order (BLAS's, the reference's)."""
    nd = len(P)
    kf, pf, last = _product(K), _product(P), K[nd - 1]
    p = np.empty(nd, dtype=np.int64)
    index = np.empty(nd, dtype=np.int64)
    step = dilation[nd - 1]
    for n in range(x.shape[0]):
        for o in range(w.shape[0]):
            for flat in range(pf):
                _unravel(flat, P, p, nd)
                first = p[nd - 1] * strides[nd - 1] - lo[nd - 1]
                start, stop = _inside_range(first, step, S[nd - 1], last)
                total = 0
                for c in range(x.shape[1]):
                    source, taps = x[n, c], w[o, c]
                    for outer in range(kf // last if last else 0):
                        offset = _outer_offset(outer, p, K, S, dilation, strides, lo, index)
                        if offset < 0:
                            continue
                        offset += first
                        row = outer * last
                        for t in range(start, stop):
                            total += source[_u(offset + t * step)] * taps[_u(row + t)]
                out[n, o, flat] = total


@njit(nogil=True, error_model="numpy")
def _conv_scatter(out, x, w, K, U, P, strides, dilation, lo):
    """out (N, C, U) = transposed conv of x (N, O, P) with w (O, C, K) as loops: an axpy per
    tap from x's positions into the output elements they reach."""
    nd = len(P)
    _zero(out)
    kf = _product(K)
    k = np.empty(nd, dtype=np.int64)
    index = np.empty(nd, dtype=np.int64)
    for n in range(x.shape[0]):
        for o in range(x.shape[1]):
            source = x[n, o]
            for c in range(w.shape[1]):
                target = out[n, c]
                for t in range(kf):
                    _unravel(t, K, k, nd)
                    _add_windows(target, source, 0, k, U, P, strides, dilation, lo, index, w[o, c, t])


# Last: runtime imports this module at its end (to export the helpers), so either module
# may be imported first; Numba looks _gemm up when a helper is first compiled.
from .runtime import _gemm  # noqa: E402
