"""Sparse Jacobians and Hessians: patterns found from the graph, compressed by colouring.

**Pattern detection.**  The sparsity pattern of d y / d x is found without
evaluating anything: every node gets the set of x's (flat) elements each of its
(flat) elements depends on, propagated through the ops in topological order.
The sets of a whole node are one :class:`Pattern` (a boolean (node size, x size)
matrix in sorted coordinate form), and each op kind has one rule: elementwise ops
gather rows through NumPy broadcasting, reductions merge rows, slices,
transposes, concatenations and broadcasts move rows, matmul is treated as dense
in its contraction.  An op without a rule gets the dense answer (every output
element depends on everything its inputs depend on), so detection is
conservative: it may add entries, never miss one.  Ops through which no
derivative flows (comparisons, ``stop_gradient``, the condition of ``where``...)
contribute nothing.  A Hessian's pattern is the Jacobian pattern of the gradient
graph that ``sd.grad`` builds, symmetrised.

**Compression.**  Columns of a Jacobian that share no row are *structurally
orthogonal*: one forward sweep along the sum of their unit vectors gives all of
them, each entry read off directly.  A greedy colouring of the column
intersection graph groups them (:func:`color_columns`), so a banded Jacobian of
any size takes ``bandwidth`` sweeps.  Rows can be grouped the same way for
reverse sweeps.  Hessians are symmetric, so a *star colouring* of the adjacency
graph suffices (:func:`star_colors`): every entry H_ij can still be read
directly, either from row i or from row j of the compressed product, and an
arrow-shaped Hessian takes 2 sweeps where column colouring would take n.

**As graph.**  The result, :class:`SparseDerivative`, holds the compressed sweeps
as one ordinary node ``compressed`` (one jvp, vjp or hvp per colour, the seeds
being constants), together with the pattern and the indices that read the
values out of it.  Evaluate or compile ``compressed`` like any node, then call
:meth:`SparseDerivative.assemble` on its value.

SciPy is optional: when it is installed, results are ``scipy.sparse.csr_matrix``;
otherwise (or with ``format="coo"``) they are a ``(rows, cols, values)`` triple of
NumPy arrays.  Matrices are indexed by flat (C-order) positions: a Jacobian of
``y`` wrt ``x`` is (y.size, x.size).
"""

from __future__ import annotations

import numpy as np

from . import frontend as F
from .autodiff import grad, hvp, jvp, vjp
from .errors import GradientError
from .ir import Expr, creation_note, toposort
from .jacobians import static_size
from .ops import indexing as indexing_ops
from .ops.leaves import const
from .ops.structure import _index_to_numpy

FORMATS = ("auto", "scipy", "coo", "dense")

# ------------------------------------------------------------------- patterns


def _sorted_unique(keys: np.ndarray) -> np.ndarray:
    # A plain sort: np.unique on integers hashes first, several times slower at these sizes.
    keys = np.sort(keys)
    if keys.size < 2:
        return keys
    keep = np.empty(keys.size, dtype=bool)
    keep[0] = True
    np.not_equal(keys[1:], keys[:-1], out=keep[1:])
    return keys[keep]


class Pattern:
    """The nonzero positions of an (m, n) matrix: sorted, unique ``rows`` and ``cols`` arrays.

    >>> p = Pattern([1, 0, 1], [2, 0, 2], (2, 3))
    >>> p
    Pattern((2, 3), nnz=2)
    >>> p.rows, p.cols
    (array([0, 1]), array([0, 2]))
    """

    __slots__ = ("rows", "cols", "shape", "_indptr")

    def __init__(self, rows, cols, shape, presorted=False):
        m, n = (int(s) for s in shape)
        rows = np.asarray(rows, dtype=np.int64).ravel()
        cols = np.asarray(cols, dtype=np.int64).ravel()
        if rows.shape != cols.shape:
            raise ValueError(f"Pattern: {rows.size} rows but {cols.size} cols")
        if rows.size and (rows.min() < 0 or rows.max() >= m or cols.min() < 0 or cols.max() >= n):
            raise ValueError(f"Pattern: an index is outside the shape {(m, n)}")
        if not presorted and rows.size:
            keys = _sorted_unique(rows * n + cols)  # by row, then column, without repeats
            rows, cols = keys // n, keys % n
        self.rows, self.cols, self.shape = rows, cols, (m, n)
        self._indptr = None

    @classmethod
    def identity(cls, n: int) -> "Pattern":
        index = np.arange(n, dtype=np.int64)
        return cls(index, index, (n, n), presorted=True)

    @classmethod
    def empty(cls, shape) -> "Pattern":
        nothing = np.zeros(0, dtype=np.int64)
        return cls(nothing, nothing, shape, presorted=True)

    @classmethod
    def from_dense(cls, mask) -> "Pattern":
        """The pattern of the nonzeros of a 2-d array."""
        mask = np.asarray(mask)
        rows, cols = np.nonzero(mask)
        return cls(rows, cols, mask.shape, presorted=True)

    @property
    def nnz(self) -> int:
        return int(self.rows.size)

    @property
    def indptr(self) -> np.ndarray:
        """CSR row pointers: row i's entries are ``[indptr[i], indptr[i+1])``."""
        if self._indptr is None:
            self._indptr = np.searchsorted(self.rows, np.arange(self.shape[0] + 1, dtype=np.int64))
        return self._indptr

    def gather_rows(self, source) -> "Pattern":
        """A pattern whose row r is this pattern's row ``source[r]``."""
        source = np.asarray(source, dtype=np.int64).ravel()
        starts = self.indptr[source]
        counts = self.indptr[source + 1] - starts
        total = int(counts.sum())
        new_rows = np.repeat(np.arange(source.size, dtype=np.int64), counts)
        # position k of new row r reads entry starts[r] + k
        first_of_row = np.cumsum(counts) - counts
        positions = np.repeat(starts - first_of_row, counts) + np.arange(total, dtype=np.int64)
        return Pattern(new_rows, self.cols[positions], (source.size, self.shape[1]), presorted=True)

    def merge_rows(self, destination, m: int) -> "Pattern":
        """A pattern of m rows where row ``destination[r]`` collects (unions) row r."""
        destination = np.asarray(destination, dtype=np.int64).ravel()
        return Pattern(destination[self.rows], self.cols, (m, self.shape[1]))

    def transpose(self) -> "Pattern":
        return Pattern(self.cols, self.rows, (self.shape[1], self.shape[0]))

    @property
    def T(self) -> "Pattern":
        return self.transpose()

    def symmetrize(self) -> "Pattern":
        """The union of the pattern and its transpose (square patterns only)."""
        return union([self, self.transpose()], self.shape)

    def to_dense(self) -> np.ndarray:
        mask = np.zeros(self.shape, dtype=bool)
        mask[self.rows, self.cols] = True
        return mask

    def __eq__(self, other):
        return (
            isinstance(other, Pattern)
            and self.shape == other.shape
            and np.array_equal(self.rows, other.rows)
            and np.array_equal(self.cols, other.cols)
        )

    __hash__ = None

    def __repr__(self):
        return f"Pattern({self.shape}, nnz={self.nnz})"


def union(patterns, shape) -> Pattern:
    """The entries present in any of ``patterns`` (all of ``shape``)."""
    patterns = [p for p in patterns if p is not None]
    if not patterns:
        return Pattern.empty(shape)
    if len(patterns) == 1:
        return patterns[0]
    return Pattern(np.concatenate([p.rows for p in patterns]), np.concatenate([p.cols for p in patterns]), shape)


# ------------------------------------------------------- propagation through ops


def _size(shape) -> int:
    return int(np.prod(shape, dtype=np.int64))


def _flat_positions(shape) -> np.ndarray:
    return np.arange(_size(shape), dtype=np.int64).reshape(shape)


def _broadcast(pattern: Pattern, in_shape, out_shape) -> Pattern:
    """Rows of ``pattern`` (an array of ``in_shape``) broadcast NumPy-style to ``out_shape``."""
    if tuple(in_shape) == tuple(out_shape):
        return pattern
    return pattern.gather_rows(np.broadcast_to(_flat_positions(in_shape), out_shape))


def _reduce(pattern: Pattern, in_shape, axes) -> Pattern:
    """Rows merged over ``axes`` (the result laid out with those axes kept as size 1)."""
    kept = tuple(1 if a in axes else d for a, d in enumerate(in_shape))
    destination = np.broadcast_to(_flat_positions(kept), in_shape)
    return pattern.merge_rows(destination, _size(kept))


def _rule_elementwise(node, patterns, n):
    out_shape = node.type.shape
    parts = []
    for i, (x, p) in enumerate(zip(node.inputs, patterns)):
        if p is not None and node.op.vjp_rule(i) is not None:
            parts.append(_broadcast(p, x.type.shape, out_shape))
    return union(parts, (_size(out_shape), n))


def _rule_reduction(node, patterns, n):
    (x,) = node.inputs
    return _reduce(patterns[0], x.type.shape, node.params["axes"])


def _rule_same_order(node, patterns, n):
    # reshape, expand_dims, squeeze: the flat (C) order of the elements is unchanged.
    return patterns[0]


def _rule_transpose(node, patterns, n):
    (x,) = node.inputs
    return patterns[0].gather_rows(_flat_positions(x.type.shape).transpose(node.params["axes"]))


def _rule_slice(node, patterns, n):
    (x,) = node.inputs
    shape = x.type.shape
    return patterns[0].gather_rows(_flat_positions(shape)[_index_to_numpy(node.params["index"], shape)])


def _rule_scatter_slice(node, patterns, n):
    cotangent, ref = node.inputs
    if patterns[0] is None:
        return None
    shape = node.type.shape
    targets = _flat_positions(shape)[_index_to_numpy(node.params["index"], shape)]
    spread = _broadcast(patterns[0], cotangent.type.shape, targets.shape)
    return Pattern(targets.ravel()[spread.rows], spread.cols, (_size(shape), n))


def _rule_broadcast(node, patterns, n):
    # broadcast_to and broadcast_like; the reference input of broadcast_like carries no derivative
    return None if patterns[0] is None else _broadcast(patterns[0], node.inputs[0].type.shape, node.type.shape)


def _rule_concatenate(node, patterns, n):
    axis = node.params["axis"]
    blocks, offset, stacked = [], 0, []
    for x, p in zip(node.inputs, patterns):
        size = _size(x.type.shape)
        blocks.append(offset + _flat_positions(x.type.shape))
        if p is not None:
            stacked.append(Pattern(p.rows + offset, p.cols, (offset + size, n), presorted=True))
        offset += size
    # row offsets increase block by block, so the concatenation stays sorted
    rows = np.concatenate([p.rows for p in stacked])
    combined = Pattern(rows, np.concatenate([p.cols for p in stacked]), (offset, n), presorted=True)
    return combined.gather_rows(np.concatenate(blocks, axis=axis))


def _rule_matmul(node, patterns, n):
    # out[..., i, j] = sum_k a[..., i, k] b[..., k, j]: dense in the contraction index k.
    a, b = node.inputs
    a_shape = (1,) + a.type.shape if a.ndim == 1 else a.type.shape
    b_shape = b.type.shape + (1,) if b.ndim == 1 else b.type.shape
    full = tuple(np.broadcast_shapes(a_shape[:-2], b_shape[:-2])) + (a_shape[-2], b_shape[-1])
    parts = []
    if patterns[0] is not None:
        rows_of_a = _reduce(patterns[0], a_shape, (len(a_shape) - 1,))
        parts.append(_broadcast(rows_of_a, a_shape[:-1] + (1,), full))
    if patterns[1] is not None:
        cols_of_b = _reduce(patterns[1], b_shape, (len(b_shape) - 2,))
        parts.append(_broadcast(cols_of_b, b_shape[:-2] + (1, b_shape[-1]), full))
    return union(parts, (_size(full), n))  # dropping promoted size-1 axes keeps the flat order


def _rule_scaled_prod(node, patterns, n):
    # prod(x over axes) * y * w / z in x's shape: x's slice, merged and spread back over it;
    # y, w and z elementwise (broadcasting)
    x = node.inputs[0]
    axes = node.params["axes"]
    out_shape = node.type.shape
    parts = []
    if patterns[0] is not None:
        kept = tuple(1 if a in axes else d for a, d in enumerate(x.type.shape))
        parts.append(_broadcast(_reduce(patterns[0], x.type.shape, axes), kept, out_shape))
    for t, p in zip(node.inputs[1:], patterns[1:]):
        if p is not None:
            parts.append(_broadcast(p, t.type.shape, out_shape))
    return union(parts, (_size(out_shape), n))


DENSE_FALLBACK_LIMIT = 50_000_000
"""The most entries the dense fallback may create before it asks for a rule instead."""


def _rule_dense(node, patterns, n):
    """Conservative rule for ops without one: every element depends on everything."""
    cols = np.unique(np.concatenate([p.cols for p in patterns if p is not None]))
    m = _size(node.type.shape)
    if m * cols.size > DENSE_FALLBACK_LIMIT:
        raise GradientError(
            f"sparsity: op {node.op.name!r} (node {node.label()}, built at {node.where() or '?'}) has no sparsity "
            f"rule, and assuming it dense gives {m * cols.size:,} entries; add a rule to "
            "symdiff.sparsity.PATTERN_RULES or pass pattern= to sparse_jacobian/sparse_hessian"
        )
    return Pattern(np.repeat(np.arange(m, dtype=np.int64), cols.size), np.tile(cols, m), (m, n), presorted=True)


PATTERN_RULES = {
    "sum": _rule_reduction,
    "max": _rule_reduction,
    "min": _rule_reduction,
    "prod": _rule_reduction,
    "scaled_prod": _rule_scaled_prod,
    "reshape": _rule_same_order,
    "expand_dims": _rule_same_order,
    "squeeze": _rule_same_order,
    "transpose": _rule_transpose,
    "slice": _rule_slice,
    "scatter_slice": _rule_scatter_slice,
    "broadcast_to": _rule_broadcast,
    "broadcast_like": _rule_broadcast,
    "concatenate": _rule_concatenate,
    "matmul": _rule_matmul,
}
"""Sparsity rules by op name; elementwise ops share one rule, other ops fall back to dense."""
PATTERN_RULES.update(indexing_ops.PATTERN_RULES)  # issue 10: gathers and scatters, beside their ops


def _declared_elementwise(name: str) -> bool:
    """A user's op made with ``elementwise=True`` (without ``numba=`` its kind is "custom")."""
    from .custom import CUSTOM_OPS

    record = CUSTOM_OPS.get(name)
    return record is not None and record.elementwise


def jacobian_pattern(y, x) -> Pattern:
    """The structural sparsity pattern of d y / d x, found from the graph: shape (y.size, x.size).

    >>> import symdiff as sd
    >>> x = sd.vector("x", 4)
    >>> p = sd.jacobian_pattern(x[1:] * x[:-1], x)
    >>> p.to_dense().astype(int)
    array([[1, 1, 0, 0],
           [0, 1, 1, 0],
           [0, 0, 1, 1]])
    """
    if not isinstance(y, Expr) or not isinstance(x, Expr):
        raise TypeError("jacobian_pattern: y and x must be symdiff expressions")
    n = static_size(x, "jacobian_pattern")
    m = static_size(y, "jacobian_pattern")
    patterns = {x.id: Pattern.identity(n)}
    for node in toposort(y):
        if node.id in patterns or not node.inputs or not node.type.is_float or node.op.vjp is None:
            continue
        incoming = [patterns.get(i.id) for i in node.inputs]
        if all(p is None for p in incoming):
            continue
        static_size(node, "jacobian_pattern")
        if node.op.kind == "elementwise" or (node.op.user and _declared_elementwise(node.op.name)):
            rule = _rule_elementwise
        else:
            rule = PATTERN_RULES.get(node.op.name, _rule_dense)
        result = rule(node, incoming, n)
        if result is not None and result.nnz:
            patterns[node.id] = result
    return patterns.get(y.id, Pattern.empty((m, n)))


def hessian_pattern(cost, x) -> Pattern:
    """The structural pattern of the Hessian of ``cost`` wrt ``x``: (x.size, x.size), symmetric.

    It is the Jacobian pattern of the gradient graph ``sd.grad(cost, x)``, symmetrised.

    >>> import symdiff as sd
    >>> x = sd.vector("x", 4)
    >>> sd.hessian_pattern(sd.sum(x[1:] * x[:-1]), x).to_dense().astype(int)
    array([[0, 1, 0, 0],
           [1, 0, 1, 0],
           [0, 1, 0, 1],
           [0, 0, 1, 0]])
    """
    return jacobian_pattern(grad(cost, x, mode="rev"), x).symmetrize()


# ------------------------------------------------------------------- colouring


def _adjacency(pattern: Pattern) -> tuple[list, list]:
    return pattern.indptr.tolist(), pattern.cols.tolist()


def color_columns(pattern: Pattern) -> np.ndarray:
    """Colours for the columns such that columns sharing a row get different colours.

    Greedy, largest column first.  Columns of one colour are structurally
    orthogonal, so one forward sweep per colour recovers every entry.

    >>> color_columns(Pattern.from_dense([[1, 1, 0, 0], [0, 1, 1, 0], [0, 0, 1, 1]]))
    array([1, 0, 1, 0])
    """
    m, n = pattern.shape
    row_ptr, row_cols = _adjacency(pattern)
    by_column = pattern.transpose()
    col_ptr, col_rows = _adjacency(by_column)
    order = np.argsort(-np.diff(by_column.indptr), kind="stable").tolist()
    color = [-1] * n
    forbidden = [-1] * (n + 1)  # forbidden[c] == j: colour c is taken near column j
    for j in order:
        for r in col_rows[col_ptr[j]:col_ptr[j + 1]]:
            for k in row_cols[row_ptr[r]:row_ptr[r + 1]]:
                if color[k] >= 0:
                    forbidden[color[k]] = j
        c = 0
        while forbidden[c] == j:
            c += 1
        color[j] = c
    return np.asarray(color, dtype=np.int64)


def star_colors(pattern: Pattern) -> np.ndarray:
    """A star colouring of the adjacency graph of a symmetric pattern.

    Neighbours get different colours and every path on four vertices uses at
    least three colours, which is what direct recovery of a symmetric matrix from
    its compressed columns needs (Gebremedhin, Manne and Pothen 2005, the simple
    greedy star colouring).  Diagonal entries are ignored.

    >>> arrow = np.eye(5, dtype=bool); arrow[0, :] = arrow[:, 0] = True
    >>> star_colors(Pattern.from_dense(arrow))
    array([0, 1, 1, 1, 1])
    """
    n = pattern.shape[0]
    off_diagonal = pattern.rows != pattern.cols
    graph = Pattern(pattern.rows[off_diagonal], pattern.cols[off_diagonal], pattern.shape, presorted=True)
    graph = graph.symmetrize()
    ptr, neighbours = _adjacency(graph)
    order = np.argsort(-np.diff(graph.indptr), kind="stable").tolist()
    color = [-1] * n
    forbidden = [-1] * (n + 1)
    for v in order:
        near = neighbours[ptr[v]:ptr[v + 1]]
        for w in near:
            if color[w] >= 0:
                forbidden[color[w]] = v
        for w in near:
            color_w = color[w]
            for x in neighbours[ptr[w]:ptr[w + 1]]:
                color_x = color[x]
                if x == v or color_x < 0:
                    continue
                if color_w < 0:  # v and x are at distance 2 through an uncoloured w
                    forbidden[color_x] = v
                else:  # giving v colour(x) would make x-w a two-coloured path v-w-x-y
                    for y in neighbours[ptr[x]:ptr[x + 1]]:
                        if y != w and color[y] == color_w:
                            forbidden[color_x] = v
                            break
        c = 0
        while forbidden[c] == v:
            c += 1
        color[v] = c
    return np.asarray(color, dtype=np.int64)


def _symmetric_recovery(pattern: Pattern, colors: np.ndarray, n_colors: int) -> np.ndarray:
    """Flat indices into the compressed (n, colours) product B = H S giving each entry of ``pattern``.

    H_ij is B[i, colour j] when j is the only column of colour(j) in row i, else
    B[j, colour i] when i is the only one of colour(i) in row j; a star colouring
    guarantees one of the two.
    """
    rows, cols = pattern.rows, pattern.cols
    direct = rows * n_colors + colors[cols]
    keys, counts = np.unique(direct, return_counts=True)
    direct_ok = counts[np.searchsorted(keys, direct)] == 1
    mirrored = cols * n_colors + colors[rows]
    found = np.searchsorted(keys, mirrored)
    found_ok = (found < keys.size) & (keys[np.minimum(found, keys.size - 1)] == mirrored)
    mirrored_ok = found_ok & (counts[np.minimum(found, keys.size - 1)] == 1)
    if not np.all(direct_ok | mirrored_ok):
        bad = int(np.argmax(~(direct_ok | mirrored_ok)))
        raise GradientError(
            f"sparse hessian: entry ({rows[bad]}, {cols[bad]}) cannot be recovered from the colouring; "
            "the colouring is not a star colouring of the pattern"
        )
    return np.where(direct_ok, direct, mirrored)


# ------------------------------------------------------------- the result as graph


class SparseDerivative:
    """A sparse Jacobian or Hessian: compressed sweeps as graph, plus the pattern.

    ``compressed`` is an ordinary node holding one sweep (jvp, vjp or hvp) per
    colour; evaluate or compile it like any node and pass its value to
    :meth:`assemble`.  :meth:`evaluate` does both with the NumPy evaluator, and
    :meth:`compile` with a compiled function (``H.compile([x])``, a callable
    returning the matrix).  ``sd.function([x], H)`` and ``sd.evaluate(H, ...)`` take
    it as an output directly, beside other outputs; the matrix comes as a
    scipy.sparse matrix, or without SciPy as the triple (rows, cols, values)
    (``sparse_format`` chooses: "auto", "scipy", "coo", "dense").

    Attributes: ``kind`` ("jacobian" or "hessian"), ``mode`` (the sweeps:
    "fwd", "rev", "fwd-rev" or "rev-rev"), ``pattern`` (:class:`Pattern`,
    shape (rows, cols) of the flattened matrix), ``colors`` (one per column,
    or per row in "rev" mode), ``n_colors`` (the number of sweeps), ``seeds``
    (the constant seed nodes) and ``compressed``.

    >>> import symdiff as sd
    >>> x = sd.vector("x", 5)
    >>> H = sd.hessian(sd.sum(x[1:] * x[:-1] ** 2), x, sparse=True)
    >>> H
    SparseDerivative(hessian of %... wrt x, (5, 5), nnz=12, 3 fwd-rev sweeps)
    >>> H.evaluate({x: np.arange(5.0)}, format="dense")[:2]
    array([[2., 0., 0., 0., 0.],
           [0., 4., 2., 0., 0.]])
    >>> H.compile([x], format="dense")(np.arange(5.0))[:2]
    array([[2., 0., 0., 0., 0.],
           [0., 4., 2., 0., 0.]])
    """

    def __init__(self, kind, mode, pattern, colors, seeds, compressed, gather, label):
        self.kind = kind
        self.mode = mode
        self.pattern = pattern
        self.colors = colors
        self.seeds = seeds
        self.compressed = compressed
        self.gather = gather
        self.label = label

    @property
    def n_colors(self) -> int:
        return len(self.seeds)

    @property
    def shape(self) -> tuple:
        return self.pattern.shape

    def values(self, compressed_value) -> np.ndarray:
        """The nonzero values, in the order of ``pattern.rows`` and ``pattern.cols``."""
        compressed_value = np.asarray(compressed_value)
        want = self.compressed.type.shape
        if compressed_value.shape != want:
            raise ValueError(
                f"{self.kind} of {self.label}: the compressed value has shape {compressed_value.shape}, "
                f"expected {want} (the value of .compressed)"
            )
        return compressed_value.ravel()[self.gather]

    def assemble(self, compressed_value, format="auto"):
        """The matrix from the value of ``compressed``.

        ``format``: "scipy" gives a ``scipy.sparse.csr_matrix``; "coo" gives the
        triple ``(rows, cols, values)`` of NumPy arrays; "dense" an ndarray;
        "auto" (the default) is "scipy" when SciPy is installed, else "coo".
        """
        if format not in FORMATS:
            raise ValueError(f"format must be one of {FORMATS}, got {format!r}")
        values = self.values(compressed_value)
        if format == "auto":
            format = "scipy" if _scipy_sparse() is not None else "coo"
        if format == "coo":
            return self.pattern.rows.copy(), self.pattern.cols.copy(), values
        if format == "dense":
            dense = np.zeros(self.shape, dtype=values.dtype)
            dense[self.pattern.rows, self.pattern.cols] = values
            return dense
        sparse = _scipy_sparse()
        if sparse is None:
            raise ImportError("format='scipy' needs SciPy; use format='coo' for (rows, cols, values)")
        return sparse.csr_matrix((values, (self.pattern.rows, self.pattern.cols)), shape=self.shape)

    def compile(self, inputs, format="auto", **options):
        """``sd.function(inputs, compressed, **options)`` followed by :meth:`assemble`, as one callable.

        The callable takes the input values like any compiled function and returns
        the matrix in ``format`` (see :meth:`assemble`: by default a scipy.sparse
        matrix, or without SciPy the ``(rows, cols, values)`` triple); its ``compiled``
        attribute is the underlying function.  ``sd.function([x], H)`` does the same,
        and takes other outputs beside it.

        >>> import symdiff as sd
        >>> x = sd.vector("x", 3)
        >>> H = sd.hessian(sd.sum(x ** 3), x, sparse=True)
        >>> H.compile([x], format="dense", backend="numpy")([1.0, 2.0, 3.0])
        array([[ 6.,  0.,  0.],
               [ 0., 12.,  0.],
               [ 0.,  0., 18.]])
        """
        from .function import function

        compiled = function(inputs, self.compressed, **options)

        def matrix(*values, **named):
            return self.assemble(compiled(*values, **named), format=format)

        matrix.compiled = compiled
        return matrix

    def evaluate(self, inputs, format="auto"):
        """Evaluate the sweeps with the NumPy reference evaluator and assemble the matrix."""
        from .evaluate import evaluate

        return self.assemble(evaluate(self.compressed, inputs), format=format)

    def __repr__(self):
        return (
            f"SparseDerivative({self.kind} of {self.label}, {self.shape}, nnz={self.pattern.nnz}, "
            f"{self.n_colors} {self.mode} sweeps)"
        )


def _scipy_sparse():
    """The ``scipy.sparse`` module, or None: SciPy is optional and imported only when needed."""
    try:
        import scipy.sparse
    except ImportError:
        return None
    return scipy.sparse


def _seed(colors: np.ndarray, color: int, like: Expr) -> Expr:
    """The constant that sums the unit directions of one colour, shaped like ``like``."""
    return const((colors == color).astype(np.float64).reshape(like.type.shape), like.dtype)


def _stack_flat(sweeps: list, axis: int, empty_shape, dtype) -> Expr:
    if not sweeps:
        return const(np.zeros(empty_shape), dtype)
    return F.stack([F.reshape(s, (-1,)) for s in sweeps], axis=axis)


def sparse_jacobian(y, x, mode="auto", pattern=None) -> SparseDerivative:
    """The Jacobian of ``y`` wrt ``x`` compressed by colouring (``sd.jacobian(y, x, sparse=True)``).

    ``mode="fwd"`` colours columns and takes one jvp per colour; ``"rev"`` colours
    rows and takes one vjp per colour; ``"auto"`` takes whichever needs fewer
    sweeps.  ``pattern`` (a :class:`Pattern` of shape (y.size, x.size)) skips the
    detection when the structure is known; it must contain every nonzero.

    >>> import symdiff as sd
    >>> x = sd.vector("x", 6)
    >>> J = sd.jacobian(sd.sin(x[1:]) * x[:-1], x, sparse=True)
    >>> J.n_colors, J.mode
    (2, 'fwd')
    >>> rows, cols, values = J.evaluate({x: np.ones(6)}, format="coo")
    >>> rows[:3], cols[:3]
    (array([0, 0, 1]), array([0, 1, 1]))
    """
    if mode not in ("auto", "fwd", "rev"):
        raise ValueError(f"sparse jacobian: mode must be 'auto', 'fwd' or 'rev', got {mode!r}")
    if not isinstance(y, Expr) or not isinstance(x, Expr):
        raise TypeError("sparse jacobian: y and x must each be one symdiff expression")
    if not y.type.is_float or not x.type.is_float:
        raise GradientError(f"sparse jacobian: {y.label()} and {x.label()} must be float, got {y.type!r}, {x.type!r}")
    m, n = static_size(y, "sparse jacobian"), static_size(x, "sparse jacobian")
    pattern = jacobian_pattern(y, x) if pattern is None else _checked_pattern(pattern, (m, n))
    column_colors = color_columns(pattern) if mode in ("auto", "fwd") else None
    row_colors = color_columns(pattern.transpose()) if mode in ("auto", "rev") else None
    if mode == "auto":
        count = lambda colors: int(colors.max()) + 1 if colors.size and pattern.nnz else 0  # noqa: E731
        mode = "fwd" if count(column_colors) <= count(row_colors) else "rev"
    label = f"{y.label()} wrt {x.label()}"
    with creation_note(f"sparse jacobian of {label} ({mode})"):
        if mode == "fwd":
            colors = column_colors
            n_colors = int(colors.max()) + 1 if pattern.nnz else 0
            seeds = [_seed(colors, c, x) for c in range(n_colors)]
            compressed = _stack_flat([jvp(y, x, s) for s in seeds], 1, (m, 0), y.dtype)  # (m, colours)
            gather = pattern.rows * n_colors + colors[pattern.cols]
        else:
            colors = row_colors
            n_colors = int(colors.max()) + 1 if pattern.nnz else 0
            seeds = [_seed(colors, c, y) for c in range(n_colors)]
            compressed = _stack_flat([vjp(y, x, s) for s in seeds], 0, (0, n), x.dtype)  # (colours, n)
            gather = colors[pattern.rows] * n + pattern.cols
    return SparseDerivative("jacobian", mode, pattern, colors, seeds, compressed, gather, label)


def sparse_hessian(cost, x, mode="fwd-rev", coloring="star", pattern=None) -> SparseDerivative:
    """The Hessian of ``cost`` wrt ``x`` compressed by colouring (``sd.hessian(cost, x, sparse=True)``).

    One Hessian-vector product per colour (``mode`` "fwd-rev" or "rev-rev", as in
    ``sd.hvp``).  ``coloring="star"`` (the default) uses the symmetry;
    ``"columns"`` colours as for a Jacobian (more sweeps, simpler recovery).
    ``pattern`` skips detection when the structure is known.

    >>> import symdiff as sd
    >>> x = sd.vector("x", 1000)
    >>> rosenbrock = sd.sum(100 * (x[1:] - x[:-1] ** 2) ** 2 + (1 - x[:-1]) ** 2)
    >>> H = sd.hessian(rosenbrock, x, sparse=True)
    >>> H.n_colors, H.pattern.nnz
    (3, 2998)
    """
    if mode not in ("fwd-rev", "rev-rev"):
        raise ValueError(f"sparse hessian: mode must be 'fwd-rev' or 'rev-rev', got {mode!r}")
    if coloring not in ("star", "columns"):
        raise ValueError(f"sparse hessian: coloring must be 'star' or 'columns', got {coloring!r}")
    if not isinstance(x, Expr):
        raise TypeError(f"sparse hessian: x must be one symdiff expression, got {type(x).__name__}")
    n = static_size(x, "sparse hessian")
    if pattern is None:
        pattern = hessian_pattern(cost, x)
    else:
        pattern = _checked_pattern(pattern, (n, n)).symmetrize()
    colors = star_colors(pattern) if coloring == "star" else color_columns(pattern)
    n_colors = int(colors.max()) + 1 if pattern.nnz else 0
    label = f"{cost.label()} wrt {x.label()}"
    with creation_note(f"sparse hessian of {label} ({mode})"):
        seeds = [_seed(colors, c, x) for c in range(n_colors)]
        sweeps = [hvp(cost, x, s, mode=mode) for s in seeds]
        compressed = _stack_flat(sweeps, 1, (n, 0), x.dtype)  # (n, colours)
    if coloring == "star":
        gather = _symmetric_recovery(pattern, colors, n_colors)
    else:
        gather = pattern.rows * n_colors + colors[pattern.cols]
    return SparseDerivative("hessian", mode, pattern, colors, seeds, compressed, gather, label)


def _checked_pattern(pattern, shape) -> Pattern:
    if not isinstance(pattern, Pattern):
        pattern = Pattern.from_dense(pattern)
    if pattern.shape != tuple(shape):
        raise ValueError(f"the given pattern has shape {pattern.shape}, expected {tuple(shape)}")
    return pattern
