"""Convolution: one primitive, ``conv``, whose derivatives are ``conv`` again.

``conv(x, w)`` is the batched, multi-channel cross-correlation of deep-learning
frameworks over any number of spatial axes, with strides, filter dilation and zero
padding (``lax.conv_general_dilated`` without input dilation or feature groups)::

    out[n, o, p] = sum over c, k of  x[n, c, p*stride + k*dilation - lo] * w[o, c, k]

x is (batch, in_channels, *spatial), w is (out_channels, in_channels, *kernel), p
and k are multi-indices over the spatial axes and x reads as zero outside its
bounds.  Without ``like`` the output's spatial sizes are
``(S + lo + hi - dilation*(K-1) - 1) // stride + 1`` (the padded input must hold the
dilated filter once, as in PyTorch); with a third input ``like``
they are ``like``'s trailing spatial sizes (only its shape is used) and ``hi`` is 0.

``transpose=True`` is the adjoint map in ``x`` (a "transposed convolution"): x is
(batch, out_channels, *P), w still (out_channels, in_channels, *K), and the output,
shaped (batch, in_channels, *like's spatial sizes), is::

    out[n, c, u] = sum over o, p, k with p*stride + k*dilation - lo == u  of  x[n, o, p] * w[o, c, k]

Both modes are the same trilinear relation ``u = p*stride + k*dilation - lo`` read
three ways, so each one's reverse rules are the other mode (for the input) and the
forward mode with strides and dilation exchanged (for the filter, the batch axis
becoming the contraction): every derivative is a ``conv`` and differentiates again.
``like`` exists for them: the adjoint's output has the input's size, known perhaps
only at run time.  ``cover=True`` (forward only) also requires the unpadded input to
be at least as large as the dilated filter: np.convolve slides the shorter argument
over the longer, and when a length is known only at run time the front end takes it
to be the longer and lets the kernel check it.

Why a primitive and not a sum of shifted slices (benchmarks/convolution.py, design
probe): its graph and kernel do not grow with the filter (value and gradient of a
101-tap 1-d correlation: 19 nodes and 1.6 s of compile against 1,315 nodes and 7 s
for the composite, and 11 ms against 20 ms per call at n = 1e5), a filter or image
whose size is known only at run time works, and the channels are contracted by gemm.
"""

from __future__ import annotations

import math

import numpy as np

from .. import frontend as F
from ..errors import DTypeError
from ..ir import Op, fail_shape
from ..types import TensorType, fmt_shape

DTYPES = ("float64", "float32", "int64")


def span(kernel: int, dilation: int) -> int:
    """The extent of a dilated filter: ``dilation * (kernel - 1) + 1``.

    >>> span(3, 2)
    5
    """
    return dilation * (kernel - 1) + 1


def output_size(size: int, kernel: int, stride: int, dilation: int, lo: int, hi: int) -> int:
    """Positions of a dilated filter in a padded input with the given stride.

    >>> output_size(8, 3, 1, 1, 1, 1), output_size(9, 3, 2, 1, 0, 0)
    (8, 4)
    """
    return (size + lo + hi - span(kernel, dilation)) // stride + 1


def _check_attrs(nd, strides, dilation, padding, transpose, cover, like):
    if not (len(strides) == len(dilation) == len(padding) == nd):
        fail_shape(f"strides {strides}, dilation {dilation} and padding {padding} need one entry per spatial "
                   f"axis ({nd})")
    if any(s < 1 for s in strides) or any(d < 1 for d in dilation):
        fail_shape(f"strides {strides} and dilation {dilation} must be >= 1")
    if any(len(p) != 2 or p[0] < 0 or p[1] < 0 for p in padding):
        fail_shape(f"padding {padding} must be (lo, hi) pairs >= 0 per spatial axis")
    if transpose and like is None:
        fail_shape("a transposed conv needs a third input giving its output's spatial sizes")
    if like is not None and any(hi for _, hi in padding):
        fail_shape(f"with a third input the output's size is that input's, so padding {padding} must have hi = 0")
    if cover and transpose:
        fail_shape("cover applies to the forward conv only")


def _infer_conv(types, strides, dilation, padding, transpose, cover):
    if len(types) not in (2, 3):
        fail_shape(f"takes 2 or 3 inputs (x, w, like), got {len(types)}")
    x, w = types[:2]
    like = types[2] if len(types) == 3 else None
    if x.dtype != w.dtype or x.dtype not in DTYPES:
        raise DTypeError(f"needs x and w of one dtype among {', '.join(DTYPES)}, got {x.dtype} and {w.dtype}")
    if x.ndim < 3 or w.ndim != x.ndim:
        fail_shape("needs x of shape (batch, channels, *spatial) and w of shape (out_channels, in_channels, "
                   "*kernel), with at least one spatial axis and as many in both")
    nd = x.ndim - 2
    _check_attrs(nd, strides, dilation, padding, transpose, cover, like)
    if like is not None and like.ndim < nd:
        fail_shape(f"the third input needs at least {nd} axes (the output's spatial sizes)")
    channels, expected = x.shape[1], w.shape[0 if transpose else 1]
    if channels is not None and expected is not None and channels != expected:
        role = "output channels" if transpose else "input channels"
        fail_shape(f"x has {channels} channels but the filter {fmt_shape(w.shape)} has {expected} {role}")
    for k in w.shape[2:]:
        if k == 0:
            fail_shape(f"the filter {fmt_shape(w.shape)} is empty along a spatial axis")
    if like is not None:
        spatial = like.shape[like.ndim - nd:]
    else:
        spatial = []
        for size, k, s, dl, (lo, hi) in zip(x.shape[2:], w.shape[2:], strides, dilation, padding):
            if size is None or k is None:
                spatial.append(None)
                continue
            if cover and size < span(k, dl):
                fail_shape(f"the input's spatial size {size} is smaller than the filter's span {span(k, dl)} "
                           f"(kernel {k}, dilation {dl})")
            if size + lo + hi < span(k, dl):
                fail_shape(f"the filter's span {span(k, dl)} (kernel {k}, dilation {dl}) exceeds the padded "
                           f"input's size {size + lo + hi}")
            spatial.append(output_size(size, k, s, dl, lo, hi))
    if cover and like is not None:
        for size, k, dl in zip(x.shape[2:], w.shape[2:], dilation):
            if size is not None and k is not None and size < span(k, dl):
                fail_shape(f"the input's spatial size {size} is smaller than the filter's span {span(k, dl)}")
    out_channels = w.shape[1] if transpose else w.shape[0]
    return TensorType(x.dtype, (x.shape[0], out_channels) + tuple(spatial))


# ------------------------------------------------------------ NumPy reference


def _check_values(x, w, like, strides, dilation, padding, transpose, cover):
    """The run-time rules (sizes that were None when the graph was built); returns the output's spatial sizes."""
    nd = x.ndim - 2
    kernel = w.shape[2:]
    if 0 in kernel:
        raise ValueError(f"the filter {fmt_shape(w.shape)} is empty along a spatial axis")
    channels, expected = x.shape[1], w.shape[0 if transpose else 1]
    if channels != expected:
        raise ValueError(f"x has {channels} channels but the filter {fmt_shape(w.shape)} has {expected}")
    for size, k, dl in zip(x.shape[2:], kernel, dilation):
        if cover and size < span(k, dl):
            raise ValueError(f"the input's spatial size {size} is smaller than the filter's span {span(k, dl)}; "
                             "an input of run-time size was taken to be the larger one")
    if like is not None:
        return tuple(like.shape[like.ndim - nd:])
    spatial = []
    for size, k, s, dl, (lo, hi) in zip(x.shape[2:], kernel, strides, dilation, padding):
        if size + lo + hi < span(k, dl):
            raise ValueError(f"the filter's span {span(k, dl)} exceeds the padded input's size {size + lo + hi}")
        spatial.append(output_size(size, k, s, dl, lo, hi))
    return tuple(spatial)


def _forward(x, w, spatial, strides, dilation, lows):
    n, o = x.shape[0], w.shape[0]
    kernel, sizes = w.shape[2:], x.shape[2:]
    out = np.zeros((n, o) + spatial, dtype=np.result_type(x, w))
    if 0 in spatial or 0 in sizes or out.size == 0:
        return out
    # Pad x with the zeros it reads outside its bounds, so every window is a plain slice.
    reach = [(p - 1) * s + (k - 1) * dl + 1 for p, k, s, dl in zip(spatial, kernel, strides, dilation)]
    pads = [(lo, max(r - lo - size, 0)) for r, lo, size in zip(reach, lows, sizes)]
    xp = np.pad(x, [(0, 0), (0, 0)] + pads)
    both = (slice(None), slice(None))
    if math.prod(kernel) <= math.prod(spatial):  # few filter taps: one contraction per tap
        for k in np.ndindex(*kernel):
            window = tuple(slice(j * dl, j * dl + (p - 1) * s + 1, s)
                           for j, p, s, dl in zip(k, spatial, strides, dilation))
            out += np.moveaxis(np.tensordot(xp[both + window], w[both + k], axes=([1], [1])), -1, 1)
    else:  # few output positions (a filter's gradient): one contraction per position
        axes = list(range(1, w.ndim))
        for p in np.ndindex(*spatial):
            window = tuple(slice(j * s, j * s + (k - 1) * dl + 1, dl)
                           for j, k, s, dl in zip(p, kernel, strides, dilation))
            out[both + p] = np.tensordot(xp[both + window], w, axes=(axes, axes))
    return out


def _transposed(x, w, spatial, strides, dilation, lows):
    n, c = x.shape[0], w.shape[1]
    kernel, positions = w.shape[2:], x.shape[2:]
    extent = [max(lo + u, (p - 1) * s + (k - 1) * dl + 1)
              for lo, u, p, k, s, dl in zip(lows, spatial, positions, kernel, strides, dilation)]
    buffer = np.zeros((n, c) + tuple(extent), dtype=np.result_type(x, w))
    both = (slice(None), slice(None))
    if 0 not in positions and x.size and w.size:
        if math.prod(kernel) <= math.prod(positions):
            for k in np.ndindex(*kernel):
                window = tuple(slice(j * dl, j * dl + (p - 1) * s + 1, s)
                               for j, p, s, dl in zip(k, positions, strides, dilation))
                buffer[both + window] += np.moveaxis(np.tensordot(x, w[both + k], axes=([1], [0])), -1, 1)
        else:
            for p in np.ndindex(*positions):
                window = tuple(slice(j * s, j * s + (k - 1) * dl + 1, dl)
                               for j, k, s, dl in zip(p, kernel, strides, dilation))
                buffer[both + window] += np.tensordot(x[both + p], w, axes=([1], [0]))
    crop = tuple(slice(lo, lo + u) for lo, u in zip(lows, spatial))
    return np.ascontiguousarray(buffer[both + crop])


def _impl_conv(x, w, *like, strides, dilation, padding, transpose, cover):
    like = like[0] if like else None
    spatial = _check_values(x, w, like, strides, dilation, padding, transpose, cover)
    lows = tuple(lo for lo, _ in padding)
    if transpose:
        return _transposed(x, w, spatial, strides, dilation, lows)
    return _forward(x, w, spatial, strides, dilation, lows)


# ------------------------------------------------------------------ derivatives


def _swap_batch_and_channels(x):
    return F.transpose(x, (1, 0) + tuple(range(2, x.ndim)))


def _only_lows(padding):
    return tuple((lo, 0) for lo, _ in padding)


def _vjp_x(g, out, x, w, *like, strides, dilation, padding, transpose, cover):
    """The other mode, shaped like x: the adjoint of x -> conv(x, w) is its transpose and back."""
    return CONV(g, w, x, strides=strides, dilation=dilation, padding=_only_lows(padding),
                transpose=not transpose, cover=False)


def _vjp_w(g, out, x, w, *like, strides, dilation, padding, transpose, cover):
    """dw[o, c, k] = sum over n, p of B[n, o, p] * A[n, c, p*stride + k*dilation - lo]: a forward conv
    of A (batch and channels swapped) with B as the filter, strides and dilation exchanged."""
    signal, taps = (g, x) if transpose else (x, g)
    dw = CONV(_swap_batch_and_channels(signal), _swap_batch_and_channels(taps), w, strides=dilation,
              dilation=strides, padding=_only_lows(padding), transpose=False, cover=False)
    return _swap_batch_and_channels(dw)


def _jvp_conv(tangents, out, x, w, *like, **attrs):
    tx, tw = tangents[:2]
    terms = []
    if tx is not None:
        terms.append(CONV(tx, w, *like, **attrs))
    if tw is not None:
        terms.append(CONV(x, tw, *like, **attrs))
    if not terms:
        return None
    return terms[0] if len(terms) == 1 else terms[0] + terms[1]


def _attrs(strides, dilation=None, padding=None, transpose=False, cover=False):
    nd = len(strides)
    return {"strides": tuple(strides), "dilation": tuple(dilation or (1,) * nd),
            "padding": tuple(padding or ((0, 0),) * nd), "transpose": transpose, "cover": cover}


def _samples(rng):
    def normal(*shape):
        return rng.normal(size=shape)

    return [
        ((normal(2, 3, 7), normal(4, 3, 3)), _attrs((1,))),
        ((normal(2, 2, 9), normal(3, 2, 3)), _attrs((2,), (2,), ((2, 1),))),
        ((normal(2, 3, 5, 6), normal(2, 3, 3, 2)), _attrs((2, 1), (1, 2), ((1, 1), (0, 2)))),
        ((normal(1, 1, 6), normal(1, 1, 4)), _attrs((1,), padding=((2, 1),), cover=True)),
        ((normal(2, 3, 5), normal(2, 3, 2), normal(1, 1, 7)), _attrs((1,), padding=((1, 0),))),
        ((normal(2, 4, 4), normal(4, 3, 3), normal(2, 3, 9)), _attrs((2,), padding=((1, 0),), transpose=True)),
        ((normal(1, 2, 3, 3), normal(2, 2, 2, 2), normal(1, 2, 5, 4)),
         _attrs((2, 1), (1, 2), ((1, 0), (0, 0)), transpose=True)),
        ((normal(1, 2, 4, 3, 3), normal(2, 2, 2, 1, 2)), _attrs((1, 2, 1), (1, 1, 2), ((1, 0), (0, 0), (0, 1)))),
    ]


CONV = Op(
    "conv",
    infer=_infer_conv,
    impl=_impl_conv,
    vjp=(_vjp_x, _vjp_w, None),
    jvp=_jvp_conv,
    kind="linalg",
    samples=_samples,
    doc="Batched multi-channel cross-correlation (strides, dilation, zero padding) and its transpose; "
        "derivatives are convs again.",
)
