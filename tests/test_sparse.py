"""Sparse Jacobians and Hessians: detected patterns, colourings, and sparse == dense.

Problems are built so their true pattern is known (banded, block, arrow and
random); values are compared with the dense Jacobian/Hessian from
``symdiff.jacobians`` evaluated by the NumPy reference evaluator.
"""

import sys

import numpy as np
import pytest

import symdiff as sd
from symdiff.sparsity import PATTERN_RULES, Pattern, _symmetric_recovery, color_columns, star_colors

RNG = np.random.default_rng(7)


def dense_nonzeros(matrix):
    return Pattern.from_dense(np.abs(np.asarray(matrix)) > 0)


def assert_sparse_equals_dense(sparse, dense_node, point, exact_pattern=None):
    """The sparse result equals the dense one, and its pattern holds every nonzero."""
    dense = np.asarray(sd.evaluate(dense_node, point)).reshape(sparse.shape)
    got = sparse.evaluate(point, format="dense")
    np.testing.assert_allclose(got, dense, rtol=1e-12, atol=1e-12)
    found = sparse.pattern.to_dense()
    assert not np.any((dense != 0) & ~found), "the detected pattern misses a nonzero"
    if exact_pattern is not None:
        np.testing.assert_array_equal(found, exact_pattern)


# ------------------------------------------------------------------- Pattern


def test_pattern_operations():
    p = Pattern([0, 2, 0, 1], [1, 0, 1, 2], (3, 3))
    assert p.nnz == 3 and p.rows.tolist() == [0, 1, 2] and p.cols.tolist() == [1, 2, 0]
    assert p.indptr.tolist() == [0, 1, 2, 3]
    assert p.gather_rows([2, 2, 0]) == Pattern([0, 1, 2], [0, 0, 1], (3, 3))
    assert p.merge_rows([0, 0, 0], 1) == Pattern([0, 0, 0], [0, 1, 2], (1, 3))
    assert p.transpose() == Pattern([1, 2, 0], [0, 1, 2], (3, 3))
    np.testing.assert_array_equal(p.symmetrize().to_dense(), p.to_dense() | p.to_dense().T)
    assert Pattern.from_dense(p.to_dense()) == p
    assert Pattern.empty((2, 5)).nnz == 0
    with pytest.raises(ValueError, match="outside"):
        Pattern([3], [0], (3, 3))


# ------------------------------------------------------------- Jacobian patterns


def random_dependency_problem(rng, m, n, density):
    """y_i = sin(sum_{j in S_i} c_ij x_j) for random sets S_i: the pattern is exactly S."""
    x = sd.vector("x", n)
    mask = rng.random((m, n)) < density
    mask[np.arange(m), rng.integers(n, size=m)] = True  # no empty rows
    outputs = []
    for i in range(m):
        terms = [x[j] * float(rng.uniform(0.5, 2.0)) for j in np.flatnonzero(mask[i])]
        total = terms[0]
        for term in terms[1:]:
            total = total + term
        outputs.append(sd.sin(total))
    return sd.stack(outputs), x, mask


def test_detected_patterns_are_exact_through_each_op_kind():
    x = sd.vector("x", 6)
    X = sd.matrix("X", (2, 3))
    eye = np.eye(6, dtype=bool)
    band = np.zeros((4, 6), dtype=bool)
    for i in range(4):
        band[i, i:i + 3] = True
    cases = [
        ("elementwise", sd.exp(x) * x, x, eye),
        ("banded slices", x[2:] * x[1:-1] - sd.sin(x[:-2]), x, band),
        ("reversed", x[::-1] * 2, x, eye[::-1]),
        ("outer product", sd.reshape(x[:, None] * x[None, :], (36,)), x,
         np.array([[k in (i, j) for k in range(6)] for i in range(6) for j in range(6)])),
        ("transpose", sd.reshape(sd.transpose(sd.tanh(X)), (6,)), X,
         eye.reshape(2, 3, 6).transpose(1, 0, 2).reshape(6, 6)),
        ("row sums", sd.sum(X * X, axis=1), X, np.kron(np.eye(2, dtype=bool), np.ones((1, 3), dtype=bool))),
        ("concatenate", sd.concatenate([x[4:], x[:2] ** 2]), x, eye[[4, 5, 0, 1]]),
        ("broadcast", sd.reshape(sd.broadcast_to(X[:, :1], (2, 3)), (6,)), X,
         np.array([[k == 3 * (i // 3) for k in range(6)] for i in range(6)])),
        ("where + comparison", sd.where(x > 0, x ** 2, 0.0), x, eye),
        ("stop_gradient", x * sd.stop_gradient(sd.sum(x)), x, eye),
        ("scatter (gradient of a slice)", sd.grad(sd.sum(x[1:4] ** 3), x), x, np.diag([0, 1, 1, 1, 0, 0]).astype(bool)),
    ]
    for name, y, wrt, want in cases:
        pattern = sd.jacobian_pattern(y, wrt)
        np.testing.assert_array_equal(pattern.to_dense(), want, err_msg=name)
        dense = sd.evaluate(sd.jacobian(y, wrt), {wrt: RNG.uniform(0.5, 1.5, size=wrt.type.shape)})
        dense = np.asarray(dense).reshape(pattern.shape)
        assert not np.any((dense != 0) & ~pattern.to_dense()), name


def test_matmul_pattern_is_dense_in_the_contraction():
    X = sd.matrix("X", (3, 4))
    W = sd.constant(RNG.normal(size=(4, 2)))
    pattern = sd.jacobian_pattern(X @ W, X)  # row i of the result depends on row i of X
    want = np.kron(np.eye(3, dtype=bool), np.ones((2, 4), dtype=bool))
    np.testing.assert_array_equal(pattern.to_dense(), want)
    v = sd.vector("v", 4)
    np.testing.assert_array_equal(sd.jacobian_pattern(sd.constant(RNG.normal(size=(3, 4))) @ v, v).to_dense(),
                                  np.ones((3, 4), dtype=bool))


def test_an_op_without_a_rule_falls_back_to_dense(monkeypatch):
    x = sd.vector("x", 5)
    y = sd.transpose(sd.reshape(x[1:] ** 2, (2, 2)))
    exact = sd.jacobian_pattern(y, x)
    monkeypatch.delitem(PATTERN_RULES, "transpose")
    conservative = sd.jacobian_pattern(y, x)
    assert conservative.nnz == 16 and exact.nnz == 4
    assert np.all(conservative.to_dense() >= exact.to_dense())
    monkeypatch.setattr("symdiff.sparsity.DENSE_FALLBACK_LIMIT", 10)
    with pytest.raises(sd.GradientError, match="'transpose'.*no sparsity rule"):
        sd.jacobian_pattern(y, x)


# ------------------------------------------------------------------ colourings


def test_column_colouring_is_structurally_orthogonal_on_random_patterns():
    rng = np.random.default_rng(1)
    for _ in range(30):
        mask = rng.random((rng.integers(1, 30), rng.integers(1, 30))) < rng.uniform(0.02, 0.4)
        colors = color_columns(Pattern.from_dense(mask))
        for row in mask:
            used = colors[row]
            assert len(set(used.tolist())) == used.size


def _is_star_colouring(adjacency, colors):
    n = len(adjacency)
    for v in range(n):
        for w in np.flatnonzero(adjacency[v]):
            assert colors[v] != colors[w]
    # no path a-b-c-d on two colours
    for b in range(n):
        for c in np.flatnonzero(adjacency[b]):
            for a in np.flatnonzero(adjacency[b]):
                for d in np.flatnonzero(adjacency[c]):
                    if len({a, b, c, d}) == 4 and colors[a] == colors[c] and colors[b] == colors[d]:
                        return False
    return True


def test_star_colouring_is_valid_and_recovers_random_symmetric_matrices():
    rng = np.random.default_rng(2)
    for trial in range(30):
        n = int(rng.integers(2, 25))
        upper = np.triu(rng.random((n, n)) < rng.uniform(0.05, 0.4), 1)
        adjacency = upper | upper.T
        mask = adjacency | np.eye(n, dtype=bool)
        pattern = Pattern.from_dense(mask)
        colors = star_colors(pattern)
        assert _is_star_colouring(adjacency, colors), trial
        # recover H from B = H S directly
        H = np.where(mask, rng.normal(size=(n, n)), 0.0)
        H = np.triu(H) + np.triu(H, 1).T
        n_colors = int(colors.max()) + 1
        seeds = np.eye(n_colors)[colors]  # (n, colours)
        compressed = H @ seeds
        values = compressed.ravel()[_symmetric_recovery(pattern, colors, n_colors)]
        np.testing.assert_allclose(values, H[pattern.rows, pattern.cols], rtol=1e-12, atol=1e-14)


# ------------------------------------------------------------- sparse Jacobians


def test_sparse_jacobian_equals_dense_on_known_patterns():
    n = 12
    x = sd.vector("x", n)
    point = {x: RNG.normal(size=n)}
    band = np.zeros((n - 2, n), dtype=bool)
    for i in range(n - 2):
        band[i, i:i + 3] = True
    X = sd.reshape(x, (4, 3))
    W = sd.constant(RNG.normal(size=(3, 3)))
    block = np.kron(np.eye(4, dtype=bool), np.ones((3, 3), dtype=bool))
    dense_column = np.eye(n, dtype=bool)
    dense_column[:, 0] = True
    dense_row = np.eye(n, dtype=bool)
    dense_row[0, :] = True
    cases = [
        ("banded", x[2:] * x[1:-1] - sd.sin(x[:-2]), band, 3, "fwd"),
        ("block", sd.reshape(sd.tanh(X @ W), (n,)), block, 3, "fwd"),
        ("arrow column", sd.sin(x) * x[0], dense_column, 2, "fwd"),
        ("arrow row", sd.concatenate([sd.sum(x ** 3, keepdims=True), x[1:] ** 2]), dense_row, 2, "rev"),
    ]
    for name, y, want, colours, mode in cases:
        J = sd.jacobian(y, x, sparse=True)
        assert (J.n_colors, J.mode) == (colours, mode), name
        assert_sparse_equals_dense(J, sd.jacobian(y, x), point, exact_pattern=want)
        for forced in ("fwd", "rev"):
            assert_sparse_equals_dense(sd.jacobian(y, x, mode=forced, sparse=True), sd.jacobian(y, x), point)


def test_sparse_jacobian_equals_dense_on_random_patterns():
    rng = np.random.default_rng(5)
    for _ in range(6):
        m, n = int(rng.integers(3, 15)), int(rng.integers(3, 15))
        y, x, mask = random_dependency_problem(rng, m, n, 0.2)
        point = {x: rng.normal(size=n)}
        J = sd.jacobian(y, x, sparse=True)
        assert_sparse_equals_dense(J, sd.jacobian(y, x), point, exact_pattern=mask)
        assert J.n_colors <= min(m, n)


# -------------------------------------------------------------- sparse Hessians


def test_sparse_hessian_equals_dense_on_known_patterns():
    n = 12
    x = sd.vector("x", n)
    point = {x: RNG.normal(size=n)}
    idx = np.arange(n)
    tridiagonal = np.abs(idx[:, None] - idx[None, :]) <= 1
    penta_no_diagonal = (np.abs(idx[:, None] - idx[None, :]) <= 2) & ~np.eye(n, dtype=bool)
    blocks = np.kron(np.eye(4, dtype=bool), np.ones((3, 3), dtype=bool))
    arrow = np.eye(n, dtype=bool)
    arrow[0, :] = arrow[:, 0] = True
    cases = [
        ("rosenbrock", sd.sum(100 * (x[1:] - x[:-1] ** 2) ** 2 + (1 - x[:-1]) ** 2), tridiagonal, 3),
        ("pentadiagonal", sd.sum(x[2:] * x[1:-1] * x[:-2]), penta_no_diagonal, 5),
        ("block", sd.sum(sd.sum(sd.reshape(x, (4, 3)), axis=1) ** 3) + sd.sum(sd.sin(x)), blocks, 3),
        ("arrow", x[0] * sd.sum(x[1:] ** 2) + sd.sum(sd.sin(x)), arrow, 2),
    ]
    for name, cost, want, colours in cases:
        H = sd.hessian(cost, x, sparse=True)
        assert H.n_colors == colours, (name, H.n_colors)
        assert_sparse_equals_dense(H, sd.hessian(cost, x), point, exact_pattern=want)
        rev = sd.hessian(cost, x, sparse=True, mode="rev-rev")
        assert_sparse_equals_dense(rev, sd.hessian(cost, x), point)
    # colouring columns ignores symmetry: the arrow then needs one sweep per column
    arrow_cost = cases[-1][1]
    by_columns = sd.sparse_hessian(arrow_cost, x, coloring="columns")
    assert by_columns.n_colors == n
    assert_sparse_equals_dense(by_columns, sd.hessian(arrow_cost, x), point)


def test_sparse_hessian_on_random_interaction_graphs():
    rng = np.random.default_rng(11)
    for _ in range(5):
        n = int(rng.integers(4, 16))
        x = sd.vector("x", n)
        pairs = {tuple(sorted(rng.choice(n, 2, replace=False).tolist())) for _ in range(n)}
        cost = sd.sum(x ** 2) / 2
        for i, j in sorted(pairs):
            cost = cost + sd.sin(x[i] * x[j])
        want = np.eye(n, dtype=bool)
        for i, j in pairs:
            want[i, j] = want[j, i] = True
        H = sd.hessian(cost, x, sparse=True)
        assert_sparse_equals_dense(H, sd.hessian(cost, x), {x: rng.normal(size=n)}, exact_pattern=want)


def test_rosenbrock_hessian_at_n_100000_takes_three_sweeps():
    n = 100_000
    x = sd.vector("x", n)
    cost = sd.sum(100 * (x[1:] - x[:-1] ** 2) ** 2 + (1 - x[:-1]) ** 2)
    H = sd.hessian(cost, x, sparse=True)
    assert H.n_colors == 3 and H.pattern.nnz == 3 * n - 2
    v = np.random.default_rng(0).normal(size=n)
    rows, cols, values = H.evaluate({x: v}, format="coo")
    # the analytic tridiagonal Hessian
    diagonal = np.zeros(n)
    diagonal[:-1] += 1200 * v[:-1] ** 2 - 400 * v[1:] + 2
    diagonal[1:] += 200
    off = -400 * v[:-1]
    want = np.zeros(values.shape)
    on_diagonal = rows == cols
    want[on_diagonal] = diagonal[rows[on_diagonal]]
    want[~on_diagonal] = off[np.minimum(rows, cols)[~on_diagonal]]
    np.testing.assert_allclose(values, want, rtol=1e-12, atol=1e-9)


# ---------------------------------------------------------------- result forms


def test_result_formats_and_the_scipy_fallback(monkeypatch):
    scipy_sparse = pytest.importorskip("scipy.sparse")
    x = sd.vector("x", 6)
    H = sd.hessian(sd.sum(x[1:] * sd.exp(x[:-1])), x, sparse=True)
    point = {x: RNG.normal(size=6)}
    dense = H.evaluate(point, format="dense")
    matrix = H.evaluate(point)
    assert scipy_sparse.issparse(matrix)
    np.testing.assert_allclose(matrix.toarray(), dense)
    rows, cols, values = H.evaluate(point, format="coo")
    np.testing.assert_allclose(dense[rows, cols], values)
    # without SciPy, "auto" gives the (rows, cols, values) triple and "scipy" says what is missing
    monkeypatch.setitem(sys.modules, "scipy", None)
    monkeypatch.setitem(sys.modules, "scipy.sparse", None)
    fallback = H.evaluate(point)
    assert isinstance(fallback, tuple) and len(fallback) == 3
    np.testing.assert_allclose(fallback[2], values)
    with pytest.raises(ImportError, match="coo"):
        H.evaluate(point, format="scipy")
    with pytest.raises(ValueError, match="format"):
        H.evaluate(point, format="csc")


def test_compressed_sweeps_are_graph_that_compiles():
    x = sd.vector("x", 8)
    cost = sd.sum(sd.tanh(x[1:] - x[:-1]) ** 2)
    H = sd.hessian(cost, x, sparse=True)
    assert H.compressed.type.shape == (8, H.n_colors)
    assert all(seed.is_constant for seed in H.seeds)
    f = sd.function([x], H.compressed, backend="numpy")
    v = RNG.normal(size=8)
    np.testing.assert_allclose(H.assemble(f(v), format="dense"), sd.evaluate(sd.hessian(cost, x), {x: v}),
                               rtol=1e-12, atol=1e-14)
    hessian_at = H.compile([x], format="dense", backend="numpy")
    np.testing.assert_allclose(hessian_at(v), H.assemble(f(v), format="dense"))
    assert hessian_at.compiled.backend == "numpy"
    with pytest.raises(ValueError, match="compressed value"):
        H.assemble(np.zeros((3, 3)))
    assert "3 fwd-rev sweeps" in repr(H)


def test_functions_without_dependence_give_empty_results():
    x, y = sd.vector("x", 4), sd.vector("y", 4)
    J = sd.jacobian(sd.sin(y), x, sparse=True)
    assert J.n_colors == 0 and J.pattern.nnz == 0
    np.testing.assert_array_equal(J.evaluate({y: np.ones(4)}, format="dense"), np.zeros((4, 4)))
    H = sd.hessian(sd.sum(x * 3.0), x, sparse=True)  # linear: the Hessian is structurally zero
    assert H.n_colors == 0
    np.testing.assert_array_equal(H.evaluate({x: np.ones(4)}, format="dense"), np.zeros((4, 4)))


def test_a_given_pattern_skips_detection():
    x = sd.vector("x", 5)
    cost = sd.sum(x[1:] ** 2 * x[:-1])
    known = sd.hessian_pattern(cost, x)
    H = sd.sparse_hessian(cost, x, pattern=known.to_dense())
    assert_sparse_equals_dense(H, sd.hessian(cost, x), {x: RNG.normal(size=5)})
    with pytest.raises(ValueError, match="shape"):
        sd.sparse_hessian(cost, x, pattern=np.ones((4, 4)))


def test_matrix_inputs_are_flattened_in_c_order():
    X = sd.matrix("X", (4, 3))
    # each row of X interacts only within itself and with the next row's first element
    cost = sd.sum(sd.logsumexp(X, axis=1)) + sd.sum(X[1:, 0] * X[:-1, 2] ** 2)
    H = sd.hessian(cost, X, sparse=True)
    assert H.shape == (12, 12)
    assert_sparse_equals_dense(H, sd.hessian(cost, X), {X: RNG.normal(size=(4, 3))})
    J = sd.jacobian(sd.softmax(X, axis=0), X, sparse=True)  # columns couple: 4x4 blocks on a stride of 3
    assert J.n_colors == 4
    assert_sparse_equals_dense(J, sd.jacobian(sd.softmax(X, axis=0), X), {X: RNG.normal(size=(4, 3))})


def test_unknown_sizes_and_bad_arguments_are_reported():
    x = sd.vector("x")
    with pytest.raises(sd.ShapeError, match="static shapes"):
        sd.jacobian(sd.sin(x), x, sparse=True)
    y = sd.vector("y", 3)
    with pytest.raises(ValueError, match="mode"):
        sd.jacobian(sd.sin(y), y, sparse=True, mode="rev-rev")
    with pytest.raises(ValueError, match="coloring"):
        sd.sparse_hessian(sd.sum(y ** 3), y, coloring="greedy")
    with pytest.raises(sd.GradientError, match="scalar"):
        sd.hessian(sd.sin(y), y, sparse=True)


def test_evaluate_takes_a_sparse_derivative_as_function_does():
    x = sd.vector("x", 4)
    H = sd.hessian(sd.sum(x[1:] * x[:-1] ** 2), x, sparse=True)
    point = {x: np.arange(1.0, 5.0)}
    dense = H.evaluate(point, format="dense")
    for fmt in ("dense", "coo"):
        alone = sd.evaluate(H, point, sparse_format=fmt)
        value, beside = sd.evaluate([sd.sum(x), H], point, sparse_format=fmt)
        compiled = sd.function([x], [sd.sum(x), H], sparse_format=fmt)(point[x])[1]
        for got in (alone, beside, compiled):
            if fmt == "coo":
                rows, cols, values = got
                got = np.zeros((4, 4))
                got[rows, cols] = values
            np.testing.assert_array_equal(got, dense)
        assert value == 10.0
    with pytest.raises(ValueError, match="sparse_format must be one of"):
        sd.evaluate(H, point, sparse_format="csc")
