"""Jitted helpers for the ordering lowerings: a stable argsort of one contiguous slice.

``_argsort_floats(values)`` (float64) and ``_argsort_integers(values)`` (int64) are
``np.argsort(values, kind="stable")``: ties keep their order, NaN sorts last (either
sign) and -0.0 ties with 0.0.  Kernels copy each slice widened to one of the two dtypes
(exactly), so only two helpers are ever compiled.  Short slices use Numba's compiled
mergesort; long ones an LSD radix sort of order-preserving 64-bit keys (11-bit digits,
all histograms in one pass, a digit every key shares skipped), about 2.5-3x faster than
the mergesort at 1e6 elements (/work/notes/ordering.md has the measurement).
"""

from __future__ import annotations

import numpy as np
from numba import njit

__all__ = ["_argsort_floats", "_argsort_integers"]

_RADIX_FROM = 2048  # shorter slices: mergesort (the digit histograms would dominate)
_BITS = 11
_BUCKETS = 1 << _BITS
_SIGN = np.uint64(1) << np.uint64(63)
_NAN_KEY = np.uint64(0xFFFFFFFFFFFFFFFF)


@njit(nogil=True, error_model="numpy")
def _radix_argsort(keys):
    """The stable sorting permutation of unsigned 64-bit keys (LSD, 11-bit digits; the
    histograms of all digits in one pass, and a digit every key shares is skipped)."""
    n = keys.size
    passes = (64 + _BITS - 1) // _BITS
    mask = np.uint64(_BUCKETS - 1)
    counts = np.zeros((passes, _BUCKETS), dtype=np.int64)
    for i in range(n):
        key = keys[i]
        for p in range(passes):
            counts[p, (key >> np.uint64(p * _BITS)) & mask] += 1
    order = np.arange(n)
    spare_order = np.empty(n, dtype=np.int64)
    spare_keys = np.empty(n, dtype=np.uint64)
    for p in range(passes):
        s = np.uint64(p * _BITS)
        if counts[p, (keys[0] >> s) & mask] == n:  # every key has this digit
            continue
        total = 0
        for d in range(_BUCKETS):
            c = counts[p, d]
            counts[p, d] = total
            total += c
        for i in range(n):
            d = (keys[i] >> s) & mask
            at = counts[p, d]
            counts[p, d] = at + 1
            spare_keys[at] = keys[i]
            spare_order[at] = order[i]
        keys, spare_keys = spare_keys, keys
        order, spare_order = spare_order, order
    return order


@njit(nogil=True, error_model="numpy")
def _argsort_floats(values):
    """np.argsort(values, kind="stable") of a contiguous float64 vector."""
    if values.size < _RADIX_FROM:
        return np.argsort(values, kind="mergesort")
    bits = values.view(np.uint64)
    keys = np.empty(values.size, dtype=np.uint64)
    for i in range(values.size):
        v = values[i]
        if v != v:
            keys[i] = _NAN_KEY  # NaN last, in order
        elif v == 0:
            keys[i] = _SIGN  # -0.0 ties with 0.0
        elif bits[i] & _SIGN:
            keys[i] = ~bits[i]  # negatives: larger magnitude first
        else:
            keys[i] = bits[i] | _SIGN
    return _radix_argsort(keys)


@njit(nogil=True, error_model="numpy")
def _argsort_integers(values):
    """np.argsort(values, kind="stable") of a contiguous int64 vector."""
    if values.size < _RADIX_FROM:
        return np.argsort(values, kind="mergesort")
    keys = np.empty(values.size, dtype=np.uint64)
    for i in range(values.size):
        keys[i] = np.uint64(values[i]) ^ _SIGN  # two's complement in unsigned order
    return _radix_argsort(keys)
