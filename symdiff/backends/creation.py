"""Lowering of ``iota`` (the index along an axis): a loop counter, fused into the
first loop nest over its length, stored to an array only if a later loop reads it."""

from __future__ import annotations

from ..ir import Expr
from .lowering import Value, lowers


@lowers('iota')
def lower_iota(L, node: Expr):
    (x,) = node.inputs
    L.shape[node.id] = (L.shape[x.id][node.params["axis"]],)
    step = L.find_group(L.shape[node.id], 0)  # reads no value, so any loop over its length will do
    name = f"v{L.p(node)}"
    step.body.append(f"{name} = np.int64(i0)  # {L.comment(node)}")
    step.labels.append(L.label(node))
    L.values[node.id] = Value("fused", name=name, group=step.index, avail=step.index + 1)
