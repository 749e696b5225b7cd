"""SciPy's convolution functions (``scipy.signal``) over symdiff expressions.

``convolve`` and ``correlate`` take inputs of any (equal) number of dimensions,
``convolve2d`` and ``correlate2d`` two 2-d arrays with SciPy's boundary handling.  All
are the ``conv`` primitive (see ``symdiff.frontend.convolution``), so their gradients
are convolutions again.  SciPy's ``method`` ('auto', 'direct', 'fft') is accepted and
does not change the result beyond rounding: the compiled kernel computes directly.

>>> import symdiff as sd
>>> image, kernel = sd.matrix("image"), sd.matrix("kernel", (2, 2))
>>> edges = sd.signal.correlate2d(image, kernel, mode="valid")
>>> edges.type
f64[?,?]
"""

from __future__ import annotations

import numpy as np

from . import frontend as F
from .errors import DTypeError, ShapeError
from .frontend.convolution import correlate_windows, fail, flipped, logical_result, mode_name
from .ir import Expr

__all__ = ["convolve", "convolve2d", "correlate", "correlate2d"]

BOUNDARIES = {"fill": "constant", "wrap": "wrap", "symm": "symmetric"}  # SciPy's name -> np.pad's mode


def _valid_swap(name: str, in1: Expr, in2: Expr) -> bool:
    """SciPy's 'valid' mode slides the smaller input over the larger: whether in2 is the
    larger.  Sizes known only at run time count as larger (the kernel checks them)."""
    pairs = [(a, b) for a, b in zip(in1.type.shape, in2.type.shape) if a is not None and b is not None]
    first = all(a >= b for a, b in pairs)
    second = all(b >= a for a, b in pairs)
    unknown1 = any(a is None for a in in1.type.shape)
    unknown2 = any(b is None for b in in2.type.shape)
    if not (first or second):
        fail(ValueError, name, f"for 'valid' mode, one must be at least as large as the other in every dimension; "
                               f"got {in1.type!r} and {in2.type!r}")
    if first and second:  # equal where both are known: the one with unknown sizes is taken to be larger
        return unknown2 and not unknown1
    return not first


def _padding(name: str, mode: str, kernel: tuple, centre) -> tuple:
    """(lo, hi) per axis for a correlation with a kernel of these sizes: 'same' puts
    ``centre(k)`` before."""
    if None in kernel:
        fail(ShapeError, name, f"mode {mode!r} pads by the second input's sizes, so they must be static; got "
                               f"{kernel} (mode 'valid' works with sizes known only at run time)")
    if mode == "full":
        return tuple((k - 1, k - 1) for k in kernel)
    return tuple((centre(k), k - 1 - centre(k)) for k in kernel)


def _prepare(name: str, in1, in2, two_d: bool):
    in1, in2 = F.operands(in1, in2)
    if two_d and not in1.ndim == in2.ndim == 2:
        fail(ValueError, name, f"inputs must both be 2-D arrays, got {in1.type!r} and {in2.type!r}")
    if in1.ndim != in2.ndim:
        fail(ValueError, name, f"in1 and in2 should have the same dimensionality, got {in1.type!r} and {in2.type!r}")
    for x in (in1, in2):
        if 0 in x.type.shape:
            fail(ValueError, name, f"inputs cannot be empty, got {in1.type!r} and {in2.type!r}")
    return in1, in2


def _nd(name: str, in1, in2, mode, method, convolution: bool) -> Expr:
    mode = mode_name(name, mode, numeric=False)
    if method not in ("auto", "direct", "fft"):
        fail(ValueError, name, f"acceptable method flags are 'auto', 'direct', or 'fft', got {method!r}")
    in1, in2 = _prepare(name, in1, in2, two_d=False)
    if in1.ndim == 0:
        return F.multiply(in1, in2)

    def compute(in1, in2):
        swap = mode == "valid" and _valid_swap(name, in1, in2)
        signal, taps = (in2, in1) if swap else (in1, in2)
        if convolution:
            taps = flipped(taps)
        if mode == "valid":
            padding = ((0, 0),) * in1.ndim
        else:
            padding = _padding(name, mode, taps.type.shape, lambda k: k // 2)
        cover = None in in1.type.shape or None in in2.type.shape
        out = correlate_windows(signal, taps, padding, cover=cover and mode == "valid")
        return flipped(out) if swap and not convolution else out  # SciPy undoes a swapped correlation

    return logical_result(compute, in1, in2)


def convolve(in1, in2, mode="full", method="auto") -> Expr:
    """scipy.signal.convolve: the N-d convolution of in1 and in2 (same number of dimensions).

    mode: 'full' (each size S + K - 1), 'same' (in1's sizes, centred on the full result
    as SciPy) or 'valid' (the positions where the smaller fits inside the larger, which
    must be at least as large in every dimension).  Sizes known only at run time count
    as the larger in 'valid' mode (checked when called); 'same' and 'full' need in2's
    sizes statically.  ``method`` is accepted and ignored (the kernel computes directly).

    >>> import symdiff as sd
    >>> x = sd.vector("x")
    >>> sd.evaluate(sd.signal.convolve(x, [1.0, 1.0], mode="same"), {x: [1.0, 2.0, 4.0]})
    array([1., 3., 6.])
    """
    return _nd("convolve", in1, in2, mode, method, convolution=True)


def correlate(in1, in2, mode="full", method="auto") -> Expr:
    """scipy.signal.correlate: ``z[k] = sum_l in1[l] * in2[l - k + K - 1]`` in N dimensions
    (the output's index k runs over the lags of :func:`convolve`'s modes).

    >>> import symdiff as sd
    >>> x = sd.vector("x")
    >>> sd.evaluate(sd.signal.correlate(x, [1.0, 2.0]), {x: [1.0, 2.0, 4.0]})
    array([ 2.,  5., 10.,  4.])
    """
    return _nd("correlate", in1, in2, mode, method, convolution=False)


def _index_runs(indices: np.ndarray) -> list:
    """Split an index array into maximal runs of step +1 or -1: (start, stop, step) slices."""
    runs, begin = [], 0
    while begin < len(indices):
        end, step = begin + 1, 1
        if end < len(indices) and abs(int(indices[end]) - int(indices[begin])) == 1:
            step = int(indices[end]) - int(indices[begin])
            while end < len(indices) and int(indices[end]) - int(indices[end - 1]) == step:
                end += 1
        first, last = int(indices[begin]), int(indices[end - 1])
        stop = last + step
        runs.append((first, None if stop < 0 else stop, step))
        begin = end
    return runs


def _pad_boundary(name: str, x: Expr, padding: tuple, boundary: str, fillvalue) -> Expr:
    """x extended by ``padding`` with SciPy's boundary values, as a concatenation of
    slices of x (wrap, symm) or constant blocks (fill); needs x's sizes statically."""
    if None in x.type.shape:
        fail(ShapeError, name, f"boundary={boundary!r} with a nonzero padding value needs in1's sizes statically, "
                               f"got {x.type!r}")
    for axis, (lo, hi) in enumerate(padding):
        size = x.type.shape[axis]
        if lo == hi == 0:
            continue
        if boundary == "fill":
            parts = []
            for count in (lo, hi):
                shape = tuple(count if a == axis else d for a, d in enumerate(x.type.shape))
                parts.append(F.broadcast_to(F.astype(fillvalue, x.dtype), shape) if count else None)
            pieces = [p for p in (parts[0], x, parts[1]) if p is not None]
        else:
            indices = np.pad(np.arange(size), (lo, hi), mode=BOUNDARIES[boundary])
            pieces = [x[(slice(None),) * axis + (slice(*run),)] for run in _index_runs(indices)]
        x = pieces[0] if len(pieces) == 1 else F.concatenate(pieces, axis=axis)
    return x


def _two_d(name: str, in1, in2, mode, boundary, fillvalue, convolution: bool) -> Expr:
    mode = mode_name(name, mode, numeric=False)
    if boundary not in BOUNDARIES:
        fail(ValueError, name, f"acceptable boundary flags are 'fill', 'wrap' and 'symm', got {boundary!r}")
    in1, in2 = _prepare(name, in1, in2, two_d=True)
    if in1.dtype == "bool":
        fail(DTypeError, name, "not available for bool inputs (as in SciPy); cast them to a number type")
    if isinstance(fillvalue, Expr):
        if fillvalue.ndim != 0:
            fail(ValueError, name, f"fillvalue must be a scalar, got {fillvalue.type!r}")
        fill, constant_fill = F.astype(fillvalue, in1.dtype), None
    else:
        array = np.asarray(fillvalue)
        if array.ndim != 0 or array.dtype.kind not in "biuf":
            fail(ValueError, name, f"fillvalue must be a real scalar, got {fillvalue!r}")
        constant_fill = array.astype(in1.dtype)  # SciPy casts it to the inputs' type
        fill = F.constant(constant_fill)
    swap = mode == "valid" and _valid_swap(name, in1, in2)
    signal, taps = (in2, in1) if swap else (in1, in2)
    if convolution:
        taps = flipped(taps)
    if mode == "valid":
        padding = ((0, 0), (0, 0))
    else:
        # correlate2d centres 'same' on (K - 1) // 2 (one before scipy.signal.correlate for even K)
        padding = _padding(name, mode, taps.type.shape, (lambda k: k // 2) if convolution else (lambda k: (k - 1) // 2))
    zero_fill = boundary == "fill" and constant_fill is not None and not np.any(constant_fill)
    if not zero_fill and any(lo or hi for lo, hi in padding):
        signal = _pad_boundary(name, signal, padding, boundary, fill)
        padding = ((0, 0), (0, 0))
    cover = None in in1.type.shape or None in in2.type.shape
    out = correlate_windows(signal, taps, padding, cover=cover and mode == "valid")
    return flipped(out) if swap and not convolution else out


def convolve2d(in1, in2, mode="full", boundary="fill", fillvalue=0) -> Expr:
    """scipy.signal.convolve2d: the 2-d convolution of in1 and in2.

    mode as in :func:`convolve`; boundary: 'fill' (pad with ``fillvalue``, cast to the
    inputs' type as SciPy does), 'wrap' (circular) or 'symm' (mirrored, the edge
    repeated).  A boundary other than zero fill needs in1's sizes statically.

    >>> import symdiff as sd
    >>> image = sd.matrix("image", (3, 3))
    >>> sd.evaluate(sd.signal.convolve2d(image, [[1.0, 1.0]], mode="same", boundary="wrap"),
    ...             {image: [[1.0, 2.0, 3.0], [4.0, 5.0, 6.0], [7.0, 8.0, 9.0]]})
    array([[ 4.,  3.,  5.],
           [10.,  9., 11.],
           [16., 15., 17.]])
    """
    return _two_d("convolve2d", in1, in2, mode, boundary, fillvalue, convolution=True)


def correlate2d(in1, in2, mode="full", boundary="fill", fillvalue=0) -> Expr:
    """scipy.signal.correlate2d: the 2-d cross-correlation of in1 and in2.

    Modes and boundaries as in :func:`convolve2d`; 'same' is centred as SciPy's
    correlate2d (for an even kernel one position before scipy.signal.correlate).

    >>> import symdiff as sd
    >>> image, kernel = sd.matrix("image", (None, None)), sd.matrix("kernel", (1, 2))
    >>> sd.evaluate(sd.signal.correlate2d(image, kernel, mode="valid"),
    ...             {image: [[1.0, 2.0, 4.0]], kernel: [[-1.0, 1.0]]})
    array([[1., 2.]])
    """
    return _two_d("correlate2d", in1, in2, mode, boundary, fillvalue, convolution=False)
