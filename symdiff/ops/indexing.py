"""Gathers and scatters: NumPy's integer-array indexing and its adjoints.

``gather(x, *index, axes)`` is ``x[..., index_0, ..., index_k, ...]`` with the k
int64 index arrays on the (sorted, distinct) ``axes`` of ``x`` and full slices
elsewhere, laid out as NumPy lays out advanced indexing: the index shape ``B``
replaces the indexed axes when they are adjacent, and goes first otherwise.
The index arrays have one shape (sizes known only at run time must agree): the
front end broadcasts them, with views, before building the node, so the op never
stretches an array whose size is unknown (see ``symdiff.types``).

The scatters are functional updates ``x.at[index].op(updates)``: a copy of ``x``
with ``updates`` (shaped exactly like ``gather(x, *index)``) combined into the
indexed elements: ``scatter_add`` (repeated indices accumulate; it is also the
reverse rule of ``gather``: zeros plus the cotangent), ``scatter_set`` (the last
update in C order wins), ``scatter_mul``, ``scatter_max`` and ``scatter_min``.

Why primitives: a gather is the only way to read data-dependent positions, and
its adjoint written as a composite would be a dense one-hot matrix product
(O(n * m) work and memory for an O(m) operation).  ``scatter_set``, ``_mul``,
``_max`` and ``_min`` combine repeated indices in ways no elementwise composite
can (last wins, segment products and extrema); their reverse rules are written
with gathers, scatters and ``where``, so they differentiate again.

Indices may be negative (they wrap, as in NumPy); an index outside
``[-n, n)`` raises :class:`~symdiff.errors.IndexOutOfBoundsError` (an
``IndexError``) naming the node, the axis, the size and the index, in the
reference evaluator and in compiled code alike.
"""

from __future__ import annotations

import numpy as np

from .. import frontend as F
from ..errors import DTypeError, GradientError, IndexOutOfBoundsError
from ..ir import OPS, Expr, Op, fail_shape
from ..types import TensorType, fmt_shape
from . import structure
from .leaves import CONSTANT, const

# ------------------------------------------------------------------ shapes


def index_shape(shapes) -> tuple:
    """The one shape of the index arrays: equal ranks, and sizes that agree where known.

    >>> index_shape([(None, 3), (2, None)])
    (2, 3)
    """
    ndim = len(shapes[0])
    if any(len(s) != ndim for s in shapes):
        fail_shape(f"index arrays have shapes {', '.join(map(fmt_shape, shapes))}: they need one shape "
                   "(the front end broadcasts them)")
    out = []
    for axis in range(ndim):
        known = {s[axis] for s in shapes if s[axis] is not None}
        if len(known) > 1:
            fail_shape(f"index arrays have shapes {', '.join(map(fmt_shape, shapes))}: they need one shape "
                       "(the front end broadcasts them)")
        out.append(known.pop() if known else None)
    return tuple(out)


def adjacent(axes) -> bool:
    """Whether the indexed axes are consecutive (NumPy then keeps the index shape in place)."""
    return list(axes) == list(range(axes[0], axes[0] + len(axes)))


def gathered_shape(x_shape, b_shape, axes) -> tuple:
    """The shape of ``x[index]`` with index arrays of shape ``b_shape`` on ``axes``.

    >>> gathered_shape((3, 4, 5), (2,), (1,)), gathered_shape((3, 4, 5), (2,), (0, 2))
    ((3, 2, 5), (2, 4))
    """
    if adjacent(axes):
        return tuple(x_shape[:axes[0]]) + tuple(b_shape) + tuple(x_shape[axes[-1] + 1:])
    return tuple(b_shape) + tuple(d for a, d in enumerate(x_shape) if a not in axes)


def index_position(axes) -> int:
    """Where the index shape sits in the gathered shape."""
    return axes[0] if adjacent(axes) else 0


def _check_axes(x, axes, count):
    if count == 0:
        fail_shape("needs at least one index array")
    if len(axes) != count:
        fail_shape(f"{count} index arrays for {len(axes)} axes {axes}")
    if list(axes) != sorted(set(axes)) or any(not 0 <= a < x.ndim for a in axes):
        fail_shape(f"axes {axes} must be sorted, distinct and within the {x.ndim} dimensions of x")


def _check_index_dtypes(index_types):
    for t in index_types:
        if t.dtype != "int64":
            raise DTypeError(f"index arrays must be int64, got {t.dtype}")


def _infer_gather(types, axes):
    x, *index = types
    _check_axes(x, axes, len(index))
    _check_index_dtypes(index)
    return TensorType(x.dtype, gathered_shape(x.shape, index_shape([t.shape for t in index]), axes))


def _infer_scatter(types, axes, no_bool=False):
    x, updates, *index = types
    _check_axes(x, axes, len(index))
    _check_index_dtypes(index)
    if updates.dtype != x.dtype:
        raise DTypeError(f"updates have dtype {updates.dtype} but x has {x.dtype} (the front end converts them)")
    if no_bool and x.dtype == "bool":
        raise DTypeError("bool arrays are not supported (NumPy's + and * on bools are or and and); cast to int64")
    want = gathered_shape(x.shape, index_shape([t.shape for t in index]), axes)
    if len(want) != updates.ndim or any(w is not None and u is not None and w != u for w, u in zip(want, updates.shape)):
        fail_shape(f"updates of shape {fmt_shape(updates.shape)} for indexed elements of shape {fmt_shape(want)} "
                   "(the front end broadcasts them)")
    return x


# --------------------------------------------------------------- reference


def wrap_indices(index, shape, axes) -> list:
    """The index arrays with negative entries wrapped, after checking every entry is in range.

    >>> wrap_indices([np.array([0, -1])], (3,), (0,))
    [array([0, 2])]
    """
    shapes = {np.shape(i) for i in index}
    if len(shapes) > 1:
        raise ValueError(f"index arrays have shapes {', '.join(fmt_shape(s) for s in map(np.shape, index))}, "
                         "which differ (sizes known only at run time must agree)")
    out = []
    for i, axis in zip(index, axes):
        n = shape[axis]
        i = np.asarray(i, dtype=np.int64)
        bad = (i < -n) | (i >= n)
        if bad.any():
            raise IndexOutOfBoundsError(f"index {int(i[bad].flat[0])} is out of bounds for axis {axis} with size {n}")
        out.append(np.where(i < 0, i + n, i))
    return out


def numpy_index(index, axes, ndim) -> tuple:
    """The NumPy index tuple: the arrays on ``axes``, full slices elsewhere."""
    items = [slice(None)] * ndim
    for i, axis in zip(index, axes):
        items[axis] = i
    return tuple(items)


def _impl_gather(x, *index, axes):
    return x[numpy_index(wrap_indices(index, x.shape, axes), axes, x.ndim)]


def _prepare_scatter(x, updates, index, axes):
    index = wrap_indices(index, x.shape, axes)
    want = gathered_shape(x.shape, np.shape(index[0]), axes)
    if np.shape(updates) != want:
        raise ValueError(f"updates have shape {fmt_shape(np.shape(updates))} but the indexed elements "
                         f"{fmt_shape(want)} (sizes known only at run time must agree)")
    return np.array(x, copy=True), index


def last_occurrences(index, sub_shape) -> np.ndarray:
    """Flat positions (in C order over the index shape) of the last occurrence of each
    distinct index tuple: the updates ``scatter_set`` keeps.

    >>> last_occurrences([np.array([2, 0, 2, 1])], (3,))
    array([1, 2, 3])
    """
    flat = np.ravel_multi_index(tuple(np.ravel(i) for i in index), sub_shape) if np.size(index[0]) else np.zeros(0, int)
    _, first_from_end = np.unique(flat[::-1], return_index=True)
    return np.sort(flat.size - 1 - first_from_end)


def _impl_scatter_set(x, updates, *index, axes):
    out, index = _prepare_scatter(x, updates, index, axes)
    keep = last_occurrences(index, tuple(x.shape[a] for a in axes))
    if keep.size < np.size(index[0]):  # repeated targets: keep the last update of each, so the result
        at = index_position(axes)       # does not depend on NumPy's unspecified assignment order
        rank = np.ndim(index[0])
        block = (int(np.size(index[0])),)
        updates = np.reshape(updates, np.shape(updates)[:at] + block + np.shape(updates)[at + rank:])
        updates = updates[(slice(None),) * at + (keep,)]
        index = [np.ravel(i)[keep] for i in index]
    out[numpy_index(index, axes, x.ndim)] = updates
    return out


def _ufunc_scatter(ufunc):
    def impl(x, updates, *index, axes):
        out, index = _prepare_scatter(x, updates, index, axes)
        ufunc.at(out, numpy_index(index, axes, x.ndim), updates)  # in C order, as the kernels
        return out

    return impl


# ------------------------------------------------------------------ rules


def _ones_like(x: Expr, value=1) -> Expr:
    fill = const(value, x.dtype)
    return structure.BROADCAST_LIKE(fill, x) if x.ndim else fill


def _zeros_like(x: Expr) -> Expr:
    return _ones_like(x, 0)


def _full_like(x: Expr, value, dtype) -> Expr:
    fill = const(value, dtype)
    return structure.BROADCAST_LIKE(fill, x) if x.ndim else fill


def flat_positions(x: Expr) -> Expr:
    """int64 ``arange(x.size).reshape(x.shape)`` for x's run-time shape: a distinct label per element."""
    if None not in x.type.shape:
        return const(np.arange(int(np.prod(x.type.shape, dtype=np.int64)), dtype=np.int64).reshape(x.type.shape),
                     "int64")
    iota = OPS.get("iota")
    if iota is None:
        raise GradientError("scatter_set's reverse rule with sizes known only at run time needs the iota op")
    total, stride = None, 1
    for axis in reversed(range(x.ndim)):
        along = F.expand_dims(iota(x, axis=axis), tuple(a for a in range(x.ndim) if a != axis)) \
            if x.ndim > 1 else iota(x, axis=axis)
        term = along if isinstance(stride, int) and stride == 1 else along * stride
        total = term if total is None else total + term
        size = x.type.shape[axis]
        stride = stride * (size if size is not None else F.dim(x, axis))
    return F.broadcast_like(total, x)


def static_index_values(index) -> list | None:
    """The index arrays' values when all are constants (or broadcasts of constants), else None."""
    values = []
    for i in index:
        node = i
        if node.op is structure.BROADCAST_TO and node.inputs[0].op is CONSTANT:
            values.append(np.broadcast_to(node.inputs[0].params["value"].array, node.params["shape"]))
        elif node.op is CONSTANT:
            values.append(node.params["value"].array)
        else:
            return None
    return values


def _gather_vjp(i, g, out, x, *index, axes):
    return SCATTER_ADD(_zeros_like(x), g, *index, axes=axes) if i == 0 else None


def _gather_jvp(ts, out, x, *index, axes):
    return None if ts[0] is None else GATHER(ts[0], *index, axes=axes)


def _scatter_add_vjp(i, g, out, x, updates, *index, axes):
    if i == 0:
        return g
    return GATHER(g, *index, axes=axes) if i == 1 else None


def _linear_scatter_jvp(op):
    def jvp(ts, out, x, updates, *index, axes):
        tx, tu = ts[0], ts[1]
        if tx is None and tu is None:
            return None
        if tu is None and op is SCATTER_ADD:
            return tx
        return op(_zeros_like(x) if tx is None else tx, _zeros_like(updates) if tu is None else tu, *index, axes=axes)

    return jvp


def set_winners(x: Expr, updates: Expr, index, axes) -> Expr | None:
    """bool, shaped like ``updates``: the updates ``scatter_set`` keeps (the last one per
    target, in C order); None when every update is kept (constant indices without repeats)."""
    values = static_index_values(index)
    if values is not None and all(x.type.shape[a] is not None or np.all(v >= 0) for v, a in zip(values, axes)):
        sizes = [x.type.shape[a] for a in axes]
        wrapped = [np.where(v < 0, v + (n or 0), v) for v, n in zip(values, sizes)]
        bound = tuple(int(max(np.max(v, initial=0) + 1, n or 0)) for v, n in zip(wrapped, sizes))
        keep = last_occurrences(wrapped, bound)
        b_shape = np.shape(values[0])
        if keep.size == int(np.prod(b_shape, dtype=np.int64)):
            return None
        mask = np.zeros(b_shape, dtype=bool)
        mask.flat[keep] = True
        at = index_position(axes)
        mask = mask.reshape((1,) * at + b_shape + (1,) * (updates.ndim - at - len(b_shape)))
        return F.broadcast_like(const(mask, "bool"), updates)
    labels = flat_positions(updates)
    kept = SCATTER_SET(_full_like(x, -1, "int64"), labels, *index, axes=axes)
    return F.equal(GATHER(kept, *index, axes=axes), labels)


def _scatter_set_vjp(i, g, out, x, updates, *index, axes):
    if i == 0:
        touched = SCATTER_SET(_full_like(x, False, "bool"), _full_like(updates, True, "bool"), *index, axes=axes)
        return F.where(touched, 0, g)
    if i == 1:
        winners = set_winners(x, updates, index, axes)
        gathered = GATHER(g, *index, axes=axes)
        return gathered if winners is None else F.where(winners, gathered, 0)
    return None


def _extremum_weights(out, x, updates, index, axes):
    """Each participant's share of the derivative: 1 / (number of ties) for the x element
    and the updates equal to the result, 0 for the others (as sd.max shares it)."""
    hit_x = F.astype(F.equal(x, out), x.dtype)
    hit_u = F.astype(F.equal(updates, GATHER(out, *index, axes=axes)), x.dtype)
    count = hit_x + SCATTER_ADD(_zeros_like(x), hit_u, *index, axes=axes)
    return hit_x / count, hit_u / GATHER(count, *index, axes=axes)


def _extremum_vjp(i, g, out, x, updates, *index, axes):
    if i >= 2:
        return None
    w_x, w_u = _extremum_weights(out, x, updates, index, axes)
    return g * w_x if i == 0 else GATHER(g, *index, axes=axes) * w_u


def _extremum_jvp(ts, out, x, updates, *index, axes):
    tx, tu = ts[0], ts[1]
    if tx is None and tu is None:
        return None
    w_x, w_u = _extremum_weights(out, x, updates, index, axes)
    terms = []
    if tx is not None:
        terms.append(tx * w_x)
    if tu is not None:
        terms.append(SCATTER_ADD(_zeros_like(x), tu * w_u, *index, axes=axes))
    return terms[0] if len(terms) == 1 else terms[0] + terms[1]


def _product_of_others(x, updates, index, axes):
    """For each update, the product of the other updates with the same target: exact
    at zeros (no division by one) and, like ``prod``'s rule, exact in its own
    derivatives with up to two zeros per target.

    No zero at the target: P / u (P the product of the target's updates).  One zero:
    the zero gets the product of the nonzero ones; the others get (that zero) * P / u,
    0 in value but with the right derivative in the zero.  Two zeros: each zero gets
    (the other zero) * P; the others 0.  More zeros: 0.
    """
    is_zero = F.equal(updates, 0)
    safe = F.where(is_zero, 1, updates)
    zeros = GATHER(SCATTER_ADD(_zeros_like(x), F.astype(is_zero, x.dtype), *index, axes=axes), *index, axes=axes)
    nonzero_product = GATHER(SCATTER_MUL(_ones_like(x), safe, *index, axes=axes), *index, axes=axes)
    zero_sum = GATHER(SCATTER_ADD(_zeros_like(x), F.where(is_zero, updates, 0), *index, axes=axes), *index, axes=axes)
    of_nonzero = F.where(F.equal(zeros, 0), nonzero_product / safe,
                         F.where(F.equal(zeros, 1), zero_sum * nonzero_product / safe, 0))
    of_zero = F.where(F.equal(zeros, 1), nonzero_product,
                      F.where(F.equal(zeros, 2), (zero_sum - updates) * nonzero_product, 0))
    return F.where(is_zero, of_zero, of_nonzero)


def _scatter_mul_vjp(i, g, out, x, updates, *index, axes):
    if i == 0:
        return g * SCATTER_MUL(_ones_like(x), updates, *index, axes=axes)
    if i == 1:
        return GATHER(g * x, *index, axes=axes) * _product_of_others(x, updates, index, axes)
    return None


def _scatter_mul_jvp(ts, out, x, updates, *index, axes):
    tx, tu = ts[0], ts[1]
    terms = []
    if tx is not None:
        terms.append(tx * SCATTER_MUL(_ones_like(x), updates, *index, axes=axes))
    if tu is not None:
        terms.append(x * SCATTER_ADD(_zeros_like(x), tu * _product_of_others(x, updates, index, axes),
                                     *index, axes=axes))
    if not terms:
        return None
    return terms[0] if len(terms) == 1 else terms[0] + terms[1]


# ----------------------------------------------------------------- samples


def _gather_samples(rng):
    return [
        ((rng.normal(size=(5,)), np.array([0, 3, -1, 3])), {"axes": (0,)}),
        ((rng.normal(size=(4, 5)), np.array([[1, -5, 4], [4, 0, 1]])), {"axes": (1,)}),
        ((rng.normal(size=(3, 4, 5)), np.array([2, -3]), np.array([4, 4])), {"axes": (0, 2)}),
        ((rng.normal(size=(3, 4)), np.array([[0, 2], [2, 2]]), np.array([[3, 0], [-1, 3]])), {"axes": (0, 1)}),
        ((rng.normal(size=(4, 3)), np.array(2)), {"axes": (0,)}),
    ]


def _scatter_samples(inner_axis=True, zeros=False):
    """Repeated and negative indices on a vector, an inner axis (``inner_axis``; kept for the
    cheaper ops: compiled gradients of every sample are part of the test suite's time), two
    non-adjacent axes, and for ``zeros`` the factors a product's derivative must get exact."""

    def samples(rng):
        cases = [
            ((rng.normal(size=(5,)), rng.normal(size=(6,)), np.array([1, 3, -2, 0, 3, 1])), {"axes": (0,)}),
            ((rng.normal(size=(3, 4, 5)), rng.normal(size=(3, 4)), np.array([2, 0, 2]), np.array([4, -1, 4])),
             {"axes": (0, 2)}),
        ]
        if inner_axis:
            cases.append(((rng.normal(size=(3, 4)), rng.normal(size=(3, 2)), np.array([-1, 2])), {"axes": (1,)}))
        if zeros:  # targets with one zero and a nonzero, two zeros (alone, with a nonzero), three zeros
            updates = rng.uniform(0.5, 1.5, size=(12,)) * rng.choice([-1, 1], size=12)
            updates[[1, 2, 3, 5, 6, 7, 8, 9]] = 0.0
            index = np.array([0, 0, 1, 1, 2, 2, 2, 3, 3, 3, 4, -1])
            cases.append(((rng.normal(size=(6,)), updates, index), {"axes": (0,)}))
        return cases

    return samples


def _extremum_samples(rng):
    """Distinct values (no ties, so finite differences see a smooth function)."""
    cases = _scatter_samples(inner_axis=False)(rng)
    out = []
    for arrays, attrs in cases:
        x, u = arrays[0], arrays[1]
        values = rng.permutation(x.size + u.size).astype(np.float64) / 3 - 2
        out.append(((values[:x.size].reshape(x.shape), values[x.size:].reshape(u.shape)) + arrays[2:], attrs))
    return out


# --------------------------------------------------------------------- ops

GATHER = Op(
    "gather",
    infer=_infer_gather,
    impl=_impl_gather,
    vjp=_gather_vjp,
    jvp=_gather_jvp,
    kind="indexing",
    samples=_gather_samples,
    doc="x[..., index_0, ..., index_k, ...]: NumPy integer-array indexing with int64 index arrays of one "
    "shape on the static ``axes``; negative indices wrap.",
)

SCATTER_ADD = Op(
    "scatter_add",
    infer=lambda types, axes: _infer_scatter(types, axes, no_bool=True),
    impl=_ufunc_scatter(np.add),
    vjp=_scatter_add_vjp,
    jvp=None,  # set below: the rule refers to the op itself
    kind="indexing",
    samples=_scatter_samples(),
    doc="x.at[index].add(updates): a copy of x with updates added at the indexed elements; repeated "
    "indices accumulate.  With x zero it is the reverse rule of gather.",
)
SCATTER_ADD.jvp = _linear_scatter_jvp(SCATTER_ADD)

SCATTER_SET = Op(
    "scatter_set",
    infer=_infer_scatter,
    impl=_impl_scatter_set,
    vjp=_scatter_set_vjp,
    jvp=None,
    kind="indexing",
    samples=_scatter_samples(),
    doc="x.at[index].set(updates): a copy of x with the indexed elements replaced; of repeated "
    "indices the last update (in C order) wins.",
)
SCATTER_SET.jvp = _linear_scatter_jvp(SCATTER_SET)

SCATTER_MUL = Op(
    "scatter_mul",
    infer=lambda types, axes: _infer_scatter(types, axes, no_bool=True),
    impl=_ufunc_scatter(np.multiply),
    vjp=_scatter_mul_vjp,
    jvp=_scatter_mul_jvp,
    kind="indexing",
    samples=_scatter_samples(inner_axis=False, zeros=True),
    doc="x.at[index].multiply(updates): repeated indices multiply; derivatives are exact at zeros.",
)

SCATTER_MAX = Op(
    "scatter_max",
    infer=_infer_scatter,
    impl=_ufunc_scatter(np.maximum),
    vjp=_extremum_vjp,
    jvp=_extremum_jvp,
    kind="indexing",
    samples=_extremum_samples,
    doc="x.at[index].max(updates): each indexed element becomes the maximum of itself and its updates; "
    "ties share the derivative equally.",
)

SCATTER_MIN = Op(
    "scatter_min",
    infer=_infer_scatter,
    impl=_ufunc_scatter(np.minimum),
    vjp=_extremum_vjp,
    jvp=_extremum_jvp,
    kind="indexing",
    samples=_extremum_samples,
    doc="x.at[index].min(updates): each indexed element becomes the minimum of itself and its updates; "
    "ties share the derivative equally.",
)

SCATTERS = {"add": SCATTER_ADD, "set": SCATTER_SET, "multiply": SCATTER_MUL, "max": SCATTER_MAX,
            "min": SCATTER_MIN}
"""The ``.at[index].<mode>(updates)`` methods and their ops."""


# ---------------------------------------------------------------- sparsity


def _constant_positions(node: Expr, x: Expr, index) -> np.ndarray | None:
    """For constant indices and a static x: the flat position in x of each element of
    ``gather(x, *index)``, in its layout; None otherwise (the pattern is then dense)."""
    values = static_index_values(index)
    if values is None or None in x.type.shape:
        return None
    positions = np.arange(int(np.prod(x.type.shape, dtype=np.int64)), dtype=np.int64).reshape(x.type.shape)
    return _impl_gather(positions, *values, axes=node.params["axes"]).ravel()


def _gather_pattern(node, patterns, n):
    from ..sparsity import _rule_dense

    positions = _constant_positions(node, node.inputs[0], node.inputs[1:])
    if positions is None:
        return _rule_dense(node, patterns, n)
    return None if patterns[0] is None else patterns[0].gather_rows(positions)


def _scatter_pattern(node, patterns, n):
    """Element t of the result depends on x[t] and on every update aimed at t (for
    ``scatter_set``: on x[t] only where nothing lands, else on the winning update)."""
    from ..sparsity import Pattern, _rule_dense, union

    x, updates, *index = node.inputs
    targets = _constant_positions(node, x, index)
    if targets is None:
        return _rule_dense(node, patterns, n)
    size = int(np.prod(x.type.shape, dtype=np.int64))
    from_x, from_updates = patterns[0], patterns[1]
    if node.op is SCATTER_SET:
        keep = np.unique(targets[::-1], return_index=True)[1]
        winners = np.zeros(targets.size, dtype=bool)
        winners[targets.size - 1 - keep] = True
        if from_x is not None:
            untouched = ~np.isin(from_x.rows, targets)
            from_x = Pattern(from_x.rows[untouched], from_x.cols[untouched], from_x.shape, presorted=True)
        if from_updates is not None:
            chosen = winners[from_updates.rows]
            from_updates = Pattern(from_updates.rows[chosen], from_updates.cols[chosen], from_updates.shape,
                                   presorted=True)
    parts = [] if from_x is None else [from_x]
    if from_updates is not None:
        parts.append(from_updates.merge_rows(targets, size))
    return union(parts, (size, n))


PATTERN_RULES = {"gather": _gather_pattern, **{op.name: _scatter_pattern for op in SCATTERS.values()}}
"""Sparsity rules (see ``symdiff.sparsity``): exact for constant indices, dense otherwise."""
