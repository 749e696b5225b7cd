"""Jitted helpers for gathers and scatters, and the kernel's index error.

A kernel cannot format a message cheaply, so an index out of range raises the bare
``KernelIndexError``; the caller (``NumbaFunction``) then runs the reference evaluator
on the same inputs, which raises the ``IndexOutOfBoundsError`` naming the node, the
axis, the size and the index (``symdiff.backends.indexing.raise_index_error``): the
text is the NumPy backend's, word for word.
"""

from __future__ import annotations

from numba import njit

__all__ = ["KernelIndexError", "_wrap_index"]


class KernelIndexError(Exception):
    """Raised inside a kernel by an index out of range (the call wrapper describes it)."""


@njit(nogil=True, error_model="numpy")
def _wrap_index(i, n):
    """``i`` (or ``i + n`` if negative) as an index into an axis of size ``n``, as NumPy does."""
    if i < 0:
        i += n
    if i < 0 or i >= n:
        raise KernelIndexError()
    return i
