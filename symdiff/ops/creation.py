"""Arrays made from a shape rather than from values: ``iota``, the index along an axis.

``iota(x, axis)`` is ``np.arange(x.shape[axis])`` as int64.  It is a primitive because
nothing else in the IR carries an element's position when the axis length is known
only at run time: slices, reshapes and broadcasts move values but never create a
0, 1, 2, ... sequence, and a constant ``np.arange(n)`` needs ``n`` when the graph is
built.  With it the front end writes ``tril``, ``triu``, ``eye``, ``diag`` and
``diagonal`` over run-time sizes as comparisons of indices, and ``sd.arange(x.shape[0])``
works for a ``None`` dimension.  It depends on ``x``'s shape only, never its values, so
its output is an integer with no derivative (like ``dim``).
"""

from __future__ import annotations

import numpy as np

from ..ir import Op, fail_shape
from ..types import TensorType


def _infer_iota(types, axis):
    (x,) = types
    if not 0 <= axis < x.ndim:
        fail_shape(f"axis {axis} out of range for a {x.ndim}-d input")
    return TensorType("int64", (x.shape[axis],))


IOTA = Op(
    "iota",
    infer=_infer_iota,
    impl=lambda x, axis: np.arange(np.shape(x)[axis], dtype=np.int64),
    kind="shape",
    samples=lambda rng: [
        ((rng.normal(size=(3, 4)),), {"axis": 1}),
        ((rng.normal(size=(5,)),), {"axis": 0}),
        ((rng.normal(size=(0, 2)),), {"axis": 0}),
    ],
    doc="np.arange(x.shape[axis]) as int64: the index along an axis whose length may be known only at run time.",
)
