"""``einsum``: Einstein summation lowered to transposes, matmuls and reductions.

The subscripts are parsed here (NumPy's grammar: letters, one ``...`` per term, implicit
or explicit output, and the interleaved ``einsum(a, [0, 1], b, [1, 2])`` form).  Then:

1. a label repeated inside one term takes a diagonal (``"ii->i"``);
2. a label of static size 1 next to a larger size elsewhere broadcasts, as in NumPy:
   that operand is constant along it, so the axis is dropped;
3. a label used by one term only, and not in the output, is summed there;
4. the remaining terms are contracted pairwise in the order
   ``np.einsum_path(..., optimize="optimal")`` finds on stand-in arrays of the static
   shapes (NumPy solves the ordering; this module does not search paths);
5. each pair with a summed label becomes one ``matmul``: shared kept labels are its
   batch axes, the summed labels merge into its inner axis, the labels of one side
   merge into its rows or columns (or ride along as broadcast batch axes when sizes
   known only at run time make the reshape inexpressible).  A pair without a summed
   label is an elementwise product, and a pair whose labels are all shared (a batched
   dot product) is a product and a sum, which fuse into one loop.

Everything is a composite, so derivatives are transposes and matmuls again: the
reverse of ``einsum("ij,jk->ik")`` is two matmuls, as it should be.
"""

from __future__ import annotations

import string

import numpy as np

from ..errors import ShapeError
from ..ir import Expr
from ..ops import linalg as L
from ..ops import reductions as R
from ..ops import structure as S
from ..types import fmt_shape
from . import astype, not_equal, operands, transpose
from .structure import _diagonal_last, merge_axes, named, user_line

__all__ = ["einsum"]

LETTERS = string.ascii_letters
RUNTIME_STAND_IN = 256
"""The size a dimension known only at run time has when NumPy plans the contraction
order (at least the largest static size of the problem): such axes are usually the data
axes, as large as or larger than the parameter axes."""


class _Ellipsis(tuple):
    """The label of the k-th broadcast dimension (counted from the right) of ``...``."""

    def __repr__(self):
        return f"the ellipsis dimension {self[0]}"


def _ellipsis_labels(count):
    return [_Ellipsis((count - k,)) for k in range(count)]


def _label_name(label) -> str:
    return repr(label) if isinstance(label, _Ellipsis) else f"subscript {label!r}"


# ---------------------------------------------------------------- parsing


def _parse_term(term: str, ndim: int, k: int):
    """(labels, ellipsis position or None) of one input term."""
    if term.count("...") > 1 or term.replace("...", "").count("."):
        raise ValueError(f"term {term!r} (operand {k}) has a '.' that is not part of one ellipsis ('...')")
    head, dots, tail = term.partition("...")
    for ch in head + tail:
        if ch not in LETTERS:
            raise ValueError(f"invalid subscript {ch!r} in term {term!r}: subscripts must be letters")
    explicit = len(head) + len(tail)
    if not dots and explicit != ndim:
        what = "too many" if explicit > ndim else "too few"
        raise ShapeError(f"{what} subscripts in term {term!r} for operand {k} of {ndim} dimensions")
    if dots and explicit > ndim:
        raise ShapeError(f"too many subscripts in term {term!r} for operand {k} of {ndim} dimensions")
    return list(head), (ndim - explicit if dots else None), list(tail)


def parse(subscripts: str, ndims):
    """Input labels per operand and the output labels, with ``...`` expanded."""
    spec = subscripts.replace(" ", "")
    if spec.count("->") > 1:
        raise ValueError("the subscripts have more than one '->'")
    inputs, arrow, output = spec.partition("->")
    if "-" in inputs + output or ">" in inputs + output:
        raise ValueError("'-' and '>' may appear only as one '->'")
    terms = inputs.split(",")
    if len(terms) != len(ndims):
        raise ValueError(f"{len(terms)} terms in the subscripts for {len(ndims)} operands")
    parsed = [_parse_term(t, n, k) for k, (t, n) in enumerate(zip(terms, ndims))]
    broadcast = max([e for _, e, _ in parsed if e is not None], default=0)
    labels = [head + _ellipsis_labels(e) + tail if e is not None else head + tail for head, e, tail in parsed]
    used_ellipsis = any(e is not None for _, e, _ in parsed)
    if not arrow:
        counts = {}
        for term in labels:
            for label in term:
                counts[label] = counts.get(label, 0) + 1
        singles = sorted(label for label, c in counts.items() if c == 1 and not isinstance(label, _Ellipsis))
        out = (_ellipsis_labels(broadcast) if used_ellipsis else []) + singles
        return labels, out
    if output.count("...") > 1 or output.replace("...", "").count("."):
        raise ValueError(f"output {output!r} has a '.' that is not part of one ellipsis ('...')")
    head, dots, tail = output.partition("...")
    for ch in head + tail:
        if ch not in LETTERS:
            raise ValueError(f"invalid subscript {ch!r} in the output {output!r}: subscripts must be letters")
    out = list(head) + (_ellipsis_labels(broadcast) if dots else []) + list(tail)
    seen = set()
    everywhere = {label for term in labels for label in term}
    for label in out:
        if label in seen:
            raise ValueError(f"the output {output!r} has {_label_name(label)} more than once")
        seen.add(label)
        if label not in everywhere:
            raise ValueError(f"the output {output!r} has {_label_name(label)}, which no input has")
    if broadcast and not dots:
        raise ShapeError("the inputs' '...' stands for dimensions that the output, without '...', does not keep")
    return labels, out


def _interleaved(args):
    """einsum(a, [0, 1], b, [1, 2], [0, 2]) -> ("AB,BC->AC", [a, b]), as NumPy reads it."""
    def term(sublist):
        text = ""
        for s in sublist:
            if s is Ellipsis:
                text += "..."
            elif isinstance(s, (int, np.integer)) and not isinstance(s, bool) and 0 <= s < 52:
                text += chr(ord("A") + s) if s < 26 else chr(ord("a") + s - 26)
            else:
                raise ValueError(f"subscripts in a sublist must be ints in [0, 52) or Ellipsis, got {s!r}")
        return text

    args = list(args)
    operands_, terms = [], []
    while len(args) >= 2:
        operands_.append(args.pop(0))
        terms.append(term(args.pop(0)))
    spec = ",".join(terms)
    if args:
        spec += "->" + term(args.pop(0))
    return spec, operands_


# ------------------------------------------------------------ contraction


def _sizes(terms):
    """{label: [static size or None, ...]} over every occurrence."""
    sizes = {}
    for x, labels in terms:
        for label, d in zip(labels, x.type.shape):
            sizes.setdefault(label, []).append(d)
    return sizes


def _check_sizes(terms, spec):
    for k, (x, labels) in enumerate(terms):
        for label in set(labels):
            dims = {x.type.shape[a] for a, l in enumerate(labels) if l == label} - {None}
            if len(dims) > 1:
                raise ShapeError(f"{_label_name(label)} repeats in operand {k} with sizes {sorted(dims)}, "
                                 f"which must be equal to take the diagonal{spec}")
    for label, dims in _sizes(terms).items():
        known = {d for d in dims if d is not None and d != 1}
        if len(known) > 1:
            places = ", ".join(f"{d} in operand {k}" for k, (x, labels) in enumerate(terms)
                               for l, d in zip(labels, x.type.shape) if l == label)
            raise ShapeError(f"{_label_name(label)} has sizes that differ ({places}){spec}")


def _take_diagonals(x: Expr, labels: list):
    while len(set(labels)) < len(labels):
        label = next(l for l in labels if labels.count(l) > 1)
        i = labels.index(label)
        j = labels.index(label, i + 1)
        rest = [a for a in range(x.ndim) if a not in (i, j)]
        x = _diagonal_last(transpose(x, rest + [i, j]), 0, square=True)
        labels = [labels[a] for a in rest] + [label]
    return x, labels


def _sum_out(x: Expr, labels: list, drop) -> tuple:
    axes = tuple(a for a, l in enumerate(labels) if l in drop)
    if not axes:
        return x, labels
    return R.SUM(x, axes=axes, keepdims=False), [l for l in labels if l not in drop]


def _arrange(x: Expr, labels: list, order: list) -> Expr:
    """x transposed so its labels read ``order``."""
    return transpose(x, [labels.index(l) for l in order])


def _product_and_sum(a, la, b, lb, batch, summed, left, right):
    """a * b broadcast over (batch, summed, left, right), then the sum over ``summed``."""
    nb, ns, nl, nr = len(batch), len(summed), len(left), len(right)
    a2 = _arrange(a, la, batch + summed + left)
    if nr:
        a2 = S.EXPAND_DIMS(a2, axes=tuple(range(nb + ns + nl, nb + ns + nl + nr)))
    b2 = _arrange(b, lb, batch + summed + right)
    if nl:
        b2 = S.EXPAND_DIMS(b2, axes=tuple(range(nb + ns, nb + ns + nl)))
    product = a2 * b2
    if ns:
        product = R.SUM(product, axes=tuple(range(nb, nb + ns)), keepdims=False)
    return product, batch + left + right


def _singles(start, count):
    return [[k] for k in range(start, start + count)]


def _matmul(a, la, b, lb, batch, summed, left, right):
    """One matmul, or None when sizes known only at run time prevent merging the summed
    axes, or would leave one matrix-vector product per element of the other axes."""
    nb, ns, nl, nr = len(batch), len(summed), len(left), len(right)
    a1 = _arrange(a, la, batch + left + summed)
    b1 = _arrange(b, lb, batch + summed + right)
    left_dims = [a1.type.shape[nb + k] for k in range(nl)]
    right_dims = [b1.type.shape[nb + ns + k] for k in range(nr)]
    batch_dims = [p if q is None else q for p, q in zip(a1.type.shape[:nb], b1.type.shape[:nb])]
    inner_a = [list(range(nb + nl, nb + nl + ns))]
    inner_b = [list(range(nb, nb + ns))]

    # Rows and columns merged: one gemm per batch element.
    a2 = merge_axes(a1, _singles(0, nb) + ([list(range(nb, nb + nl))] if nl else []) + inner_a)
    b2 = merge_axes(b1, _singles(0, nb) + inner_b + ([list(range(nb + ns, nb + ns + nr))] if nr else []))
    target = batch_dims + left_dims + right_dims
    if a2 is not None and b2 is not None and (max(nl, nr) <= 1 or target.count(None) <= 1):
        if not nl:
            a2 = S.EXPAND_DIMS(a2, axes=(nb,))
        if not nr:
            b2 = S.EXPAND_DIMS(b2, axes=(nb + 1,))
        out = L.MATMUL(a2, b2)
        if not nl or not nr:
            out = S.SQUEEZE(out, axes=tuple(([nb] if not nl else []) + ([nb + 1] if not nr else [])))
        if max(nl, nr) > 1:
            out = S.RESHAPE(out, shape=tuple(-1 if d is None else d for d in target))
        return out, batch + left + right

    # Extra row and column axes as broadcast batch axes; only the summed axes merge.  Not
    # for a matrix-vector product: one gemv per element of the extra axes is far slower
    # than the fused product-and-sum loop.
    if not nl or not nr:
        return None
    a2 = merge_axes(a1, _singles(0, nb + nl) + inner_a)
    b2 = merge_axes(b1, _singles(0, nb) + inner_b + _singles(nb + ns, nr))
    if a2 is None or b2 is None:
        return None
    # a2: (batch, l_1..l_p, K) -> (batch, l_1..l_{p-1}, 1 * (q-1), l_p, K)
    if nr > 1:
        a2 = S.EXPAND_DIMS(a2, axes=tuple(range(nb + nl - 1, nb + nl + nr - 2)))
    # b2: (batch, K, r_1..r_q) -> (batch, 1 * (p-1), r_1..r_{q-1}, K, r_q)
    b2 = transpose(b2, list(range(nb)) + list(range(nb + 1, nb + nr)) + [nb, nb + nr])
    if nl > 1:
        b2 = S.EXPAND_DIMS(b2, axes=tuple(range(nb, nb + nl - 1)))
    return L.MATMUL(a2, b2), batch + left[:-1] + right[:-1] + [left[-1], right[-1]]


def _pair(a, la, b, lb, keep, output):
    a, la = _sum_out(a, la, {l for l in la if l not in lb and l not in keep})
    b, lb = _sum_out(b, lb, {l for l in lb if l not in la and l not in keep})
    first = {l: k for k, l in enumerate(output)}
    if min((first.get(l, len(output)) for l in lb if l not in la), default=len(output)) < min(
            (first.get(l, len(output)) for l in la if l not in lb), default=len(output)):
        a, la, b, lb = b, lb, a, la  # rows from the operand whose labels the output lists first
    batch = [l for l in la if l in lb and l in keep]
    summed = [l for l in la if l in lb and l not in keep]
    left = [l for l in la if l not in lb]
    right = [l for l in lb if l not in la]
    if summed and (left or right):
        done = _matmul(a, la, b, lb, batch, summed, left, right)
        if done is not None:
            return done
    return _product_and_sum(a, la, b, lb, batch, summed, left, right)


def _path(terms, output, optimize):
    """NumPy's contraction order for the terms (positions, as np.einsum_path gives them)."""
    if len(terms) <= 2:
        return [tuple(range(len(terms)))]
    if optimize is False:
        return [(0, 1)] * (len(terms) - 1)
    labels = sorted({l for _, ls in terms for l in ls} | set(output), key=repr)
    if len(labels) > len(LETTERS):
        return [(0, 1)] * (len(terms) - 1)
    letter = dict(zip(labels, LETTERS))
    sizes = _sizes(terms)
    largest = max([d for ds in sizes.values() for d in ds if d is not None], default=1)
    stand_in = max(RUNTIME_STAND_IN, largest)
    size = {l: max([d for d in ds if d is not None] or [stand_in]) for l, ds in sizes.items()}
    spec = ",".join("".join(letter[l] for l in ls) for _, ls in terms) + "->" + "".join(letter[l] for l in output)
    dummies = [np.broadcast_to(np.empty((), np.float64), tuple(size[l] for l in ls)) for _, ls in terms]
    path, _ = np.einsum_path(spec, *dummies, optimize="optimal" if optimize is True else optimize)
    return path[1:]


def contract(terms, output, optimize="optimal", spec=""):
    """The einsum of ``terms`` ([(Expr, labels)], labels hashable, one per axis) keeping
    ``output`` (labels, in order): the shared machinery of einsum and tensordot."""
    exprs = operands(*[x for x, _ in terms])
    boolean = exprs[0].dtype == "bool"
    if boolean:  # NumPy's bool einsum is or-of-ands: an int64 sum of products, nonzero
        exprs = [astype(x, "int64") for x in exprs]
    terms = [(x, list(labels)) for x, (_, labels) in zip(exprs, terms)]
    _check_sizes(terms, spec)
    terms = [_take_diagonals(x, labels) for x, labels in terms]
    # A static size 1 against a larger or run-time size elsewhere broadcasts: drop it.
    sizes = _sizes(terms)
    stretched = {l for l, ds in sizes.items() if 1 in ds and any(d != 1 for d in ds)}
    for k, (x, labels) in enumerate(terms):
        axes = tuple(a for a, l in enumerate(labels) if l in stretched and x.type.shape[a] == 1)
        if axes:
            terms[k] = (S.SQUEEZE(x, axes=axes), [l for a, l in enumerate(labels) if a not in axes])
    for k, (x, labels) in enumerate(terms):
        elsewhere = set(output).union(*(set(ls) for j, (_, ls) in enumerate(terms) if j != k))
        terms[k] = _sum_out(x, labels, {l for l in labels if l not in elsewhere})
    for step in _path(terms, output, optimize):
        picked = [terms[p] for p in sorted(step)]
        for p in sorted(step, reverse=True):
            terms.pop(p)
        rest = set(output).union(*(set(ls) for _, ls in terms))
        x, labels = picked[0]
        for j, (y, ly) in enumerate(picked[1:], start=1):
            keep = rest.union(*(set(ls) for _, ls in picked[j + 1:]))
            x, labels = _pair(x, labels, y, ly, keep, output)
        terms.append((x, labels))
    (x, labels), = terms
    x, labels = _sum_out(x, labels, {l for l in labels if l not in output})
    x = _arrange(x, labels, list(output))
    return not_equal(x, 0) if boolean else x


@named
def einsum(*args, dtype=None, optimize="optimal") -> Expr:
    """np.einsum: ``einsum("ij,jk->ik", A, B)``, every subscript string NumPy accepts
    (``...``, implicit output, repeated labels for diagonals) and the interleaved form
    ``einsum(A, [0, 1], B, [1, 2], [0, 2])``.

    Lowered to transposes, matmuls and sums in the order ``np.einsum_path`` finds with
    ``optimize`` ("optimal" by default; "greedy", False for left to right, or an
    explicit ``["einsum_path", (0, 1), ...]``), so a chain costs what its cheapest
    parenthesisation costs.  Sizes known only at run time stand in as at least
    ``RUNTIME_STAND_IN`` when the order is chosen.

    >>> import symdiff as sd
    >>> A, B = sd.matrix("A", (2, 3)), sd.matrix("B", (3, 4))
    >>> sd.einsum("ij,jk->ik", A, B).type
    f64[2,4]
    >>> sd.evaluate(sd.einsum("ii", sd.constant([[1.0, 2.0], [3.0, 4.0]])), {})
    np.float64(5.0)
    """
    if not args:
        raise ValueError("needs the subscripts and at least one operand")
    if isinstance(args[0], str):
        spec, values = args[0], list(args[1:])
    else:
        spec, values = _interleaved(args)
    if not values:
        raise ValueError(f"no operands for the subscripts {spec!r}")
    xs = operands(*values)
    if dtype is not None:
        xs = [astype(x, dtype) for x in xs]
    where = f" in {spec!r} for operands of shapes {', '.join(fmt_shape(x.type.shape) for x in xs)}"
    try:
        labels, output = parse(spec, [x.ndim for x in xs])
    except (ValueError, ShapeError) as exc:
        raise type(exc)(f"{exc}{where}{user_line()}") from None
    return contract(list(zip(xs, labels)), output, optimize, where + user_line())

