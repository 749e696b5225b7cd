"""Jacobians and Hessians as graph, and the order in which to accumulate them.

A Jacobian is built from the two sweeps ``symdiff.autodiff`` provides: forward mode
gives one column (the derivative of every output along one input direction) per
``jvp`` sweep, reverse mode gives one row (the gradient of one output element) per
``vjp`` sweep.  So an (m, n) Jacobian costs n forward sweeps or m reverse sweeps,
and ``mode="auto"`` takes the smaller count.  Every sweep appends nodes to the same
hash-consed graph, so the forward work the sweeps share exists once, and the
result is an ordinary node that prints, differentiates and compiles.

The result's shape is ``y.shape + x.shape`` (so a Hessian of a cost of ``x`` has
shape ``x.shape + x.shape``), the layout of JAX's ``jacfwd`` and ``jacrev``.

Sparse Jacobians and Hessians (``sparse=True``) live in :mod:`symdiff.sparsity`.

When a Jacobian is a chain J_K ... J_2 J_1 of Jacobians of known sizes, the order
of the products decides the work: all-forward multiplies from the input side,
all-reverse from the output side, and neither is optimal in general.
:func:`chain_order` solves the matrix-chain problem by dynamic programming and
:func:`jacobian_chain` builds the product in the order it finds.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import frontend as F
from .autodiff import note_name, grad, jvp, vjp
from .errors import GradientError, ShapeError
from .ir import Expr, as_list, creation_note
from .ops.leaves import const
from .types import fmt_shape

JACOBIAN_MODES = ("auto", "fwd", "rev")
HESSIAN_MODES = ("fwd-rev", "rev-rev")


def static_size(x: Expr, what: str) -> int:
    """The number of elements of ``x``, which must have a static shape."""
    if None in x.type.shape:
        raise ShapeError(
            f"{what}: {x.label()} has shape {fmt_shape(x.type.shape)} (built at {x.where() or '?'}); "
            "Jacobians need static shapes, since their size is part of the graph"
        )
    return int(np.prod(x.type.shape, dtype=np.int64))


def unit_seed(index: int, like: Expr) -> Expr:
    """The constant one-hot array shaped like ``like`` with a 1 at flat ``index``."""
    seed = np.zeros(like.type.shape, dtype=np.float64)
    seed.flat[index] = 1.0
    return const(seed, like.dtype)


def _check_pair(y, x, what: str):
    if not isinstance(y, Expr):
        raise TypeError(f"{what}: the output must be a symdiff expression, got {type(y).__name__} {y!r}")
    if not y.type.is_float:
        raise GradientError(f"{what}: the output {y.label()} has type {y.type!r}; it must be float")
    for w in x:
        if not w.type.is_float:
            raise GradientError(f"{what}: cannot differentiate with respect to {w.label()} of type {w.type!r}")


def jacobian(y, x, mode="auto", sparse=False):
    """The Jacobian of ``y`` with respect to ``x``, as a graph node of shape ``y.shape + x.shape``.

    ``mode="fwd"`` builds it from ``x.size`` forward (jvp) sweeps, one column each;
    ``mode="rev"`` from ``y.size`` reverse (vjp) sweeps, one row each;
    ``mode="auto"`` (the default) picks the mode with fewer sweeps (forward on a tie,
    since a forward sweep keeps fewer values alive).  ``x`` may be a list, giving a
    list of Jacobians.  Shapes must be static.

    ``sparse=True`` instead returns a :class:`symdiff.sparsity.SparseDerivative`: the
    sparsity pattern found from the graph and the few compressed sweeps that graph
    colouring needs (see :func:`symdiff.sparsity.sparse_jacobian`).

    >>> import symdiff as sd
    >>> x = sd.vector("x", 2)
    >>> J = sd.jacobian(sd.stack([x[0] * x[1], sd.sin(x[0])]), x)
    >>> J.type
    f64[2,2]
    >>> sd.evaluate(J, {x: [0.0, 3.0]})
    array([[3., 0.],
           [1., 0.]])
    """
    if sparse:
        from .sparsity import sparse_jacobian

        return sparse_jacobian(y, x, mode=mode)
    if mode not in JACOBIAN_MODES:
        raise ValueError(f"jacobian: mode must be one of {JACOBIAN_MODES}, got {mode!r}")
    xs, single = as_list(x)
    _check_pair(y, xs, "jacobian")
    m = static_size(y, "jacobian")
    sizes = [static_size(w, "jacobian") for w in xs]
    if mode == "auto":
        mode = "fwd" if sum(sizes) <= m else "rev"
    with creation_note(f"jacobian of {note_name(y)} wrt {','.join(w.label() for w in xs)} ({mode})"):
        if mode == "fwd":
            results = [_jacobian_fwd(y, w, n) for w, n in zip(xs, sizes)]
        else:
            results = _jacobian_rev(y, xs, m)
    return results[0] if single else results


def _jacobian_fwd(y: Expr, x: Expr, n: int) -> Expr:
    if n == 0 or static_size(y, "jacobian") == 0:
        return const(np.zeros(y.type.shape + x.type.shape), y.dtype)
    columns = [jvp(y, x, unit_seed(j, x)) for j in range(n)]
    stacked = F.stack(columns, axis=y.ndim)  # y.shape + (n,)
    return stacked if x.ndim == 1 else F.reshape(stacked, y.type.shape + x.type.shape)


def _jacobian_rev(y: Expr, xs: list, m: int) -> list:
    if m == 0 or any(static_size(w, "jacobian") == 0 for w in xs):
        return [const(np.zeros(y.type.shape + w.type.shape), y.dtype) for w in xs]
    rows_per_x = [[] for _ in xs]
    for i in range(m):
        for rows, row in zip(rows_per_x, vjp(y, xs, [unit_seed(i, y)])):
            rows.append(row)
    results = []
    for w, rows in zip(xs, rows_per_x):
        stacked = F.stack(rows, axis=0)  # (m,) + x.shape
        results.append(stacked if y.ndim == 1 else F.reshape(stacked, y.type.shape + w.type.shape))
    return results


def hessian(cost, x, mode="fwd-rev", sparse=False):
    """The Hessian of the scalar ``cost`` with respect to ``x``: shape ``x.shape + x.shape``.

    ``mode="fwd-rev"`` (the default) takes ``x.size`` forward sweeps through the
    gradient graph (Hessian-vector products by forward-over-reverse);
    ``mode="rev-rev"`` takes ``x.size`` reverse sweeps through it.  Both give the
    same values.  ``sparse=True`` returns a
    :class:`symdiff.sparsity.SparseDerivative` that needs only as many
    Hessian-vector products as a star colouring of the pattern has colours
    (see :func:`symdiff.sparsity.sparse_hessian`).

    >>> import symdiff as sd
    >>> x = sd.vector("x", 2)
    >>> H = sd.hessian(x[0] ** 2 * x[1], x)
    >>> sd.evaluate(H, {x: [1.0, 2.0]})
    array([[4., 2.],
           [2., 0.]])
    """
    if sparse:
        from .sparsity import sparse_hessian

        return sparse_hessian(cost, x, mode=mode)
    if mode not in HESSIAN_MODES:
        raise ValueError(f"hessian: mode must be one of {HESSIAN_MODES}, got {mode!r}")
    if not isinstance(x, Expr):
        raise TypeError(f"hessian: x must be one symdiff expression, got {type(x).__name__}")
    gradient = grad(cost, x, mode="rev")
    return jacobian(gradient, x, mode="fwd" if mode == "fwd-rev" else "rev")


def derivative(f, x, order=1):
    """The ``order``-th derivative of ``f`` with respect to the scalar ``x``, by nested forward mode.

    ``f`` may have any shape (each element is differentiated).  Nested forward
    sweeps share structure across orders: every sweep only adds the tangents of
    nodes the previous one built, and hash-consing merges equal ones, so the graph
    grows polynomially with the order.  Repeated ``sd.grad`` of a scalar input
    builds the same nodes (it sweeps forward too; counts in docs/architecture.md).

    >>> import symdiff as sd
    >>> x = sd.scalar("x")
    >>> d5 = sd.derivative(sd.sin(x) * sd.exp(x), x, 5)
    >>> float(sd.evaluate(d5, {x: 0.0}))
    -4.0
    """
    if not isinstance(x, Expr) or x.ndim != 0 or not x.type.is_float:
        raise GradientError(f"derivative: x must be a float scalar expression, got {x!r}")
    if not isinstance(order, (int, np.integer)) or order < 0:
        raise ValueError(f"derivative: order must be a non-negative int, got {order!r}")
    (result,) = F.operands(f, to_float=True) if not isinstance(f, Expr) else (f,)
    _check_pair(result, [x], "derivative")
    for k in range(int(order)):
        with creation_note(f"derivative {k + 1} of {note_name(result)} wrt {x.label()}"):
            result = jvp(result, x, const(1, x.dtype))
    return result


# ------------------------------------------------------------ accumulation order


@dataclass(frozen=True)
class ChainPlan:
    """The cheapest order to multiply a chain of Jacobians, and what the fixed orders cost.

    ``sizes`` are n_0 (input) ... n_K (output), so J_k has shape (n_k, n_{k-1}).
    Costs count scalar multiplications of dense matrix products; forward
    accumulation multiplies from the input side (as K forward-mode passes of n_0
    directions would), reverse from the output side.  ``order`` spells the optimal
    bracketing, e.g. ``"(J4 (J3 J2)) J1"``.
    """

    sizes: tuple
    cost: int
    forward_cost: int
    reverse_cost: int
    order: str
    tree: object  # an int k for J_k, or a pair (left, right) meaning left @ right


def _tree_cost(tree, sizes) -> tuple[int, int, int]:
    """(multiplications, rows, cols) of a bracketing; J_k is (sizes[k], sizes[k-1])."""
    if isinstance(tree, int):
        return 0, sizes[tree], sizes[tree - 1]
    left_cost, rows, inner = _tree_cost(tree[0], sizes)
    right_cost, inner_right, cols = _tree_cost(tree[1], sizes)
    assert inner == inner_right
    return left_cost + right_cost + rows * inner * cols, rows, cols


def _tree_text(tree, top=True) -> str:
    if isinstance(tree, int):
        return f"J{tree}"
    text = f"{_tree_text(tree[0], False)} {_tree_text(tree[1], False)}"
    return text if top else f"({text})"


def chain_order(sizes) -> ChainPlan:
    """The optimal multiplication order for J_K ... J_1, by matrix-chain dynamic programming.

    ``sizes`` lists the dimension of each variable along the chain, input first:
    n_0, n_1, ..., n_K.  O(K^3) time.

    >>> plan = chain_order([1000, 1, 1000, 1, 1000])
    >>> plan.forward_cost, plan.reverse_cost, plan.cost, plan.order
    (3000000, 3000000, 1002000, '(J4 (J3 J2)) J1')
    """
    sizes = tuple(int(s) for s in sizes)
    if len(sizes) < 2 or any(s < 0 for s in sizes):
        raise ValueError(f"chain_order: need at least two non-negative sizes (input and output), got {sizes}")
    count = len(sizes) - 1  # Jacobians J_1 .. J_K
    # best[i][j]: cheapest (cost, tree) for the product J_j ... J_i (i <= j).
    best = {(i, i): (0, i) for i in range(1, count + 1)}
    for length in range(2, count + 1):
        for i in range(1, count - length + 2):
            j = i + length - 1
            candidates = []
            for s in range(i, j):  # (J_j ... J_{s+1}) (J_s ... J_i)
                left_cost, left = best[(s + 1, j)]
                right_cost, right = best[(i, s)]
                cost = left_cost + right_cost + sizes[j] * sizes[s] * sizes[i - 1]
                candidates.append((cost, (left, right)))
            best[(i, j)] = min(candidates, key=lambda c: c[0])
    cost, tree = best[(1, count)]
    forward_tree = 1
    for k in range(2, count + 1):
        forward_tree = (k, forward_tree)
    reverse_tree = count
    for k in range(count - 1, 0, -1):
        reverse_tree = (reverse_tree, k)
    return ChainPlan(
        sizes=sizes,
        cost=cost,
        forward_cost=_tree_cost(forward_tree, sizes)[0],
        reverse_cost=_tree_cost(reverse_tree, sizes)[0],
        order=_tree_text(tree),
        tree=tree,
    )


def _depends_avoiding(node: Expr, target: Expr, avoid: Expr) -> bool:
    """Whether ``node`` reaches ``target`` along a path that does not pass ``avoid``."""
    seen, stack = set(), [node]
    while stack:
        current = stack.pop()
        if current is target:
            return True
        if current.id in seen or current is avoid:
            continue
        seen.add(current.id)
        stack.extend(current.inputs)
    return False


def jacobian_chain(nodes, order="optimal") -> Expr:
    """The Jacobian of ``nodes[-1]`` wrt ``nodes[0]`` through the chain ``nodes``, as one node.

    ``nodes`` = [x_0, x_1, ..., x_K] where each x_k depends on x_0 only through
    x_{k-1}.  Each local Jacobian J_k = d x_k / d x_{k-1} is built by
    :func:`jacobian` (mode auto) and the product is taken in the ``order`` given:
    "optimal" (the :func:`chain_order` bracketing), "forward" or "reverse".
    The result has shape ``x_K.shape + x_0.shape``.

    >>> import symdiff as sd
    >>> x = sd.vector("x", 3)
    >>> s = sd.sum(x * x)
    >>> y = sd.stack([s, 2 * s])
    >>> sd.evaluate(sd.jacobian_chain([x, s, y]), {x: [1.0, 2.0, 3.0]})
    array([[ 2.,  4.,  6.],
           [ 4.,  8., 12.]])
    """
    nodes = list(nodes)
    if len(nodes) < 2:
        raise ValueError("jacobian_chain: need at least an input and an output node")
    sizes = [static_size(x, "jacobian_chain") for x in nodes]
    for k in range(2, len(nodes)):
        if _depends_avoiding(nodes[k], nodes[0], nodes[k - 1]):
            raise GradientError(
                f"jacobian_chain: {nodes[k].label()} depends on {nodes[0].label()} other than through "
                f"{nodes[k - 1].label()}, so the chain rule along the list does not hold"
            )
    plan = chain_order(sizes)
    if order == "optimal":
        tree = plan.tree
    elif order == "forward":
        tree = 1
        for k in range(2, len(nodes)):
            tree = (k, tree)
    elif order == "reverse":
        tree = len(nodes) - 1
        for k in range(len(nodes) - 2, 0, -1):
            tree = (tree, k)
    else:
        raise ValueError(f"jacobian_chain: order must be 'optimal', 'forward' or 'reverse', got {order!r}")

    def local(k: int) -> Expr:
        J = jacobian(nodes[k], nodes[k - 1])
        return F.reshape(J, (sizes[k], sizes[k - 1]))

    def build(t) -> Expr:
        if isinstance(t, int):
            return local(t)
        return F.matmul(build(t[0]), build(t[1]))

    with creation_note(f"jacobian chain of {nodes[-1].label()} wrt {nodes[0].label()}"):
        product = build(tree)
        return F.reshape(product, nodes[-1].type.shape + nodes[0].type.shape)


__all__ = ["ChainPlan", "chain_order", "derivative", "hessian", "jacobian", "jacobian_chain"]
