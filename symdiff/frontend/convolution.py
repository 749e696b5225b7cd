"""Convolution with NumPy's and the deep-learning frameworks' names: ``convolve`` and
``correlate`` (np.convolve, np.correlate: 1-d, modes full, same, valid) and
``conv2d`` (batched, multi-channel images, NCHW, cross-correlation as in PyTorch,
JAX and TensorFlow).  ``symdiff.signal`` has SciPy's names on the same footing.

All are one primitive, ``conv`` (``symdiff.ops.convolution``): a filter applied at
every position of its input (weight tying), so the filter's gradient is the sum over
every place it was applied, and that gradient, like the input's, is a ``conv`` again.
Flipping a filter (convolution instead of correlation) is a reversed slice, a view.
"""

from __future__ import annotations

import numpy as np

from ..errors import DTypeError, ShapeError
from ..ir import Expr, _user_origin
from ..ops.convolution import CONV, span
from ..types import fmt_shape
from . import astype, expand_dims, not_equal, operands, reshape

__all__ = ["conv2d", "convolve", "correlate"]

MODES = ("valid", "same", "full")  # NumPy also takes 0, 1, 2


def at_user_line() -> str:
    """' (at file:line)' for the user's code that called into symdiff, or ''."""
    origin = _user_origin()
    return f" (at {origin[0]}:{origin[1]})" if origin else ""


def fail(kind, name: str, message: str):
    """Raise ``kind`` naming the function and the user's line."""
    raise kind(f"{name}: {message}{at_user_line()}")


def mode_name(name: str, mode, numeric=True) -> str:
    """'valid', 'same' or 'full' (NumPy's functions also take 0, 1, 2)."""
    if isinstance(mode, str) and mode in MODES:
        return mode
    if numeric and isinstance(mode, (int, np.integer)) and not isinstance(mode, bool) and 0 <= mode <= 2:
        return MODES[int(mode)]
    fail(ValueError, name, f"mode must be one of 'valid', 'same', or 'full' (got {mode!r})")


def flipped(w: Expr) -> Expr:
    """w reversed along every axis (a view): convolution is correlation with the flipped filter."""
    return w[(slice(None, None, -1),) * w.ndim]


def correlate_windows(x: Expr, w: Expr, padding, cover: bool) -> Expr:
    """``out[p] = sum_k x[p + k - lo] * w[k]`` over every axis of x and w (same rank),
    x read as zero in the padding ``((lo, hi), ...)``; ``cover``: x must be at least
    as large as w (checked at run time for sizes known only then)."""
    nd = x.ndim
    out = CONV(expand_dims(x, (0, 1)), expand_dims(w, (0, 1)), strides=(1,) * nd, dilation=(1,) * nd,
               padding=tuple(padding), transpose=False, cover=cover)
    return out[0, 0]


def logical_result(fn, x: Expr, w: Expr):
    """NumPy's convolutions of bools are or-of-ands: the int64 result, != 0."""
    if x.dtype != "bool":
        return fn(x, w)
    return not_equal(fn(astype(x, "int64"), astype(w, "int64")), 0)


def _one_dimensional(name: str, a: Expr, which: str) -> Expr:
    if a.ndim == 0:
        return reshape(a, (1,))
    if a.ndim > 1:
        fail(ValueError, name, f"object too deep for desired array: {which} has type {a.type!r}, expected 1-d")
    return a


def _numpy_1d(name: str, a, v, mode, convolution: bool) -> Expr:
    mode = mode_name(name, mode)
    a, v = operands(a, v)
    a, v = _one_dimensional(name, a, "a"), _one_dimensional(name, v, "v")
    n, m = a.type.shape[0], v.type.shape[0]
    for size, label, numpy_text in ((n, "a", "first array argument"), (m, "v", "second array argument")):
        if size == 0:
            fail(ValueError, name, f"{label if convolution else numpy_text} cannot be empty")
    # NumPy slides the shorter over the longer.  A length known only at run time is
    # taken to be the longer one, and the kernel checks it (cover=True).
    if n is not None and m is not None:
        swap = m > n
    else:
        swap = n is not None and m is None
    signal, taps = (v, a) if swap else (a, v)
    length = taps.type.shape[0]
    if length is None and mode != "valid":
        fail(ShapeError, name, f"mode {mode!r} pads by the shorter input's length, so it must be static; "
                               f"got a {a.type!r} and v {v.type!r} (mode 'valid' works with both unknown)")

    def compute(signal, taps):
        if convolution:
            taps = flipped(taps)  # convolution commutes, so swapping needs nothing else
        lo = {"valid": 0, "same": (length or 0) // 2, "full": (length or 1) - 1}[mode]
        hi = {"valid": 0, "same": (length or 0) - 1 - lo, "full": lo}[mode]
        out = correlate_windows(signal, taps, ((lo, hi),), cover=n is None or m is None)
        return out[::-1] if swap and not convolution else out  # NumPy reverses a swapped correlation

    return logical_result(compute, signal, taps)


def convolve(a, v, mode="full") -> Expr:
    """np.convolve: the discrete linear convolution of two 1-d sequences.

    mode: 'full' (length n + m - 1), 'same' (max(n, m), centred as NumPy does) or
    'valid' (max(n, m) - min(n, m) + 1); NumPy's 0, 1, 2 also work.  As in NumPy the
    shorter input slides over the longer.  A length known only at run time (None) is
    taken to be the longer one, and a call with it shorter raises ShapeError; modes
    'same' and 'full' need the shorter length to be static.  Bool inputs give NumPy's
    or-of-ands.

    >>> import symdiff as sd
    >>> x, w = sd.vector("x"), sd.vector("w", 3)
    >>> y = sd.convolve(x, w, mode="same")
    >>> sd.evaluate(y, {x: [1.0, 2.0, 3.0, 4.0], w: [0.0, 1.0, 0.5]})
    array([1. , 2.5, 4. , 5.5])
    >>> sd.evaluate(sd.grad(sd.sum(y), w), {x: [1.0, 2.0, 3.0, 4.0], w: [0.0, 1.0, 0.5]})
    array([ 9., 10.,  6.])
    """
    return _numpy_1d("convolve", a, v, mode, convolution=True)


def correlate(a, v, mode="valid") -> Expr:
    """np.correlate: ``c[k] = sum_n a[n + k] * v[n]`` for two 1-d sequences.

    Modes and lengths as in :func:`convolve` (the default here is 'valid', as NumPy's).
    When the second input is the longer, NumPy reverses the result; so does this.

    >>> import symdiff as sd
    >>> x = sd.vector("x")
    >>> sd.evaluate(sd.correlate(x, [1.0, -1.0]), {x: [1.0, 4.0, 9.0]})
    array([-3., -5.])
    """
    return _numpy_1d("correlate", a, v, mode, convolution=False)


# ----------------------------------------------------------------- conv2d


def _pair(name: str, what: str, value, minimum: int) -> tuple:
    items = (value, value) if isinstance(value, (int, np.integer)) else value
    ok = isinstance(items, (tuple, list)) and len(items) == 2 and all(
        isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v >= minimum for v in items)
    if not ok:
        fail(ValueError, name, f"{what} must be an int >= {minimum} or a pair of them, got {value!r}")
    return tuple(int(v) for v in items)


def conv_padding(name: str, padding, kernel, strides, dilation) -> tuple:
    """((lo, hi), ...) per spatial axis from 'valid', 'same', an int, one int per axis,
    or (lo, hi) pairs per axis."""
    nd = len(kernel)
    if isinstance(padding, str):
        if padding == "valid":
            return ((0, 0),) * nd
        if padding != "same":
            fail(ValueError, name, f"padding must be 'valid', 'same', an int or pairs of ints, got {padding!r}")
        if any(s != 1 for s in strides):
            fail(ValueError, name, f"padding='same' is not supported for strided convolutions (stride {strides}); "
                                   "give the padding explicitly")
        if None in kernel:
            fail(ShapeError, name, f"padding='same' needs the kernel's spatial sizes statically, got {kernel}")
        totals = [span(k, d) - 1 for k, d in zip(kernel, dilation)]
        return tuple((t // 2, t - t // 2) for t in totals)  # the extra one on the right, as PyTorch
    if isinstance(padding, (int, np.integer)) and not isinstance(padding, bool):
        padding = (padding,) * nd
    if isinstance(padding, (tuple, list)) and len(padding) == nd:
        pairs = []
        for p in padding:
            pair = (p, p) if isinstance(p, (int, np.integer)) and not isinstance(p, bool) else p
            if not (isinstance(pair, (tuple, list)) and len(pair) == 2 and all(
                    isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v >= 0 for v in pair)):
                break
            pairs.append((int(pair[0]), int(pair[1])))
        else:
            return tuple(pairs)
    fail(ValueError, name, f"padding must be 'valid', 'same', an int >= 0, {nd} ints or {nd} (lo, hi) pairs, "
                           f"got {padding!r}")


def conv2d(x, w, stride=1, padding="valid", dilation=1) -> Expr:
    """A 2-d convolution layer's cross-correlation, as in PyTorch, JAX and TensorFlow.

    x: (batch, in_channels, height, width) (NCHW); w: (out_channels, in_channels,
    kh, kw).  ``out[n, o, i, j] = sum_{c, a, b} x[n, c, i*sh + a*dh - top, j*sw +
    b*dw - left] * w[o, c, a, b]`` with x zero outside its bounds.  stride and
    dilation: an int or a pair; padding: 'valid' (none), 'same' (stride 1 only: the
    output has x's size; an odd total puts the extra row and column at the bottom
    and right, as PyTorch), an int, a pair, or ((top, bottom), (left, right)).  The
    batch (and any size) may be None.  The filter's gradient sums over every place
    it was applied, and is a convolution again.

    >>> import numpy as np, symdiff as sd
    >>> x, w = sd.tensor("x", (None, 1, 4, 4)), sd.tensor("w", (2, 1, 3, 3))
    >>> y = sd.conv2d(x, w, padding="same")
    >>> y.type
    f64[?,2,4,4]
    >>> sd.conv2d(x, w, stride=2, padding=1).type
    f64[?,2,2,2]
    >>> value = sd.evaluate(y, {x: np.ones((1, 1, 4, 4)), w: np.ones((2, 1, 3, 3))})
    >>> value[0, 0]
    array([[4., 6., 6., 4.],
           [6., 9., 9., 6.],
           [6., 9., 9., 6.],
           [4., 6., 6., 4.]])
    """
    name = "conv2d"
    x, w = operands(x, w)
    if x.dtype == "bool":
        fail(DTypeError, name, "bool inputs are not supported; cast them to a number type")
    if x.ndim != 4 or w.ndim != 4:
        fail(ShapeError, name, f"x must be (batch, in_channels, height, width) and w (out_channels, in_channels, "
                               f"kh, kw); got x of type {x.type!r} and w of type {w.type!r}")
    c, expected = x.type.shape[1], w.type.shape[1]
    if c is not None and expected is not None and c != expected:
        fail(ShapeError, name, f"x {fmt_shape(x.type.shape)} has {c} channels but w {fmt_shape(w.type.shape)} "
                               f"expects {expected}")
    strides = _pair(name, "stride", stride, 1)
    dilation = _pair(name, "dilation", dilation, 1)
    kernel = w.type.shape[2:]
    pads = conv_padding(name, padding, kernel, strides, dilation)
    for axis, (size, k, (lo, hi), dl) in enumerate(zip(x.type.shape[2:], kernel, pads, dilation)):
        if size is not None and k is not None and size + lo + hi < span(k, dl):
            fail(ShapeError, name, f"the kernel {fmt_shape(kernel)} (dilation {dilation}) is larger than the padded "
                                   f"input {fmt_shape(x.type.shape)} with padding {pads} along spatial axis {axis}")
    return CONV(x, w, strides=strides, dilation=dilation, padding=pads, transpose=False, cover=False)
