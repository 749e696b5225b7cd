"""sd.linalg against np.linalg and scipy.linalg, in both backends; derivatives (first and
second order, HVPs, the Hessian of a Gaussian-process likelihood) against finite
differences; degenerate spectra; failures; LAPACK discovery and the pure-loop fallback.

Compiles are slow, so the compiled checks share a few kernels, each called at several
run-time sizes; derivatives are checked with the NumPy reference evaluator, and their
compiled versions against it.
"""

from __future__ import annotations

import functools
import re

import numpy as np
import pytest

import symdiff as sd
from symdiff.ops.decompositions import spd
from symdiff.testing import check_grads, check_hvp

L = sd.linalg
LinAlgError = np.linalg.LinAlgError
scipy_linalg = pytest.importorskip("scipy.linalg")
pytestmark = pytest.mark.filterwarnings("ignore:Code running in object mode")


def _rng(seed=0):
    return np.random.default_rng(seed)


def _tri(rng, n, batch=(), lower=True):
    t = np.linalg.cholesky(spd(rng, n, batch)) + rng.normal(size=batch + (n, n)) * 0.2
    return np.tril(t) if lower else np.swapaxes(np.tril(t), -1, -2)


def _close(got, want, label, rtol=1e-10, atol=1e-10):
    got, want = np.asarray(got), np.asarray(want)
    assert got.shape == want.shape, f"{label}: shape {got.shape}, expected {want.shape}"
    np.testing.assert_allclose(got, want, rtol=rtol, atol=atol, err_msg=label)


# ------------------------------------------------------------------ values


A = sd.tensor("A", (2, None, None))  # general square matrices, a batch of 2
K = sd.tensor("K", (2, None, None))  # symmetric positive definite
T = sd.tensor("T", (2, None, None))  # lower triangular
b = sd.vector("b")
B = sd.tensor("B", (3, 1, None, None))  # right-hand sides broadcasting against A's batch
M = sd.matrix("M", (None, None))  # rectangular
y = sd.vector("y")


def _value_cases():
    """(label, expression, reference(values) -> array, tolerance) for every function."""
    S = sd.linalg.matrix_transpose(K) + K
    cases = [
        ("solve vector", L.solve(A, b), lambda v: np.linalg.solve(v[A], v[b])),
        ("solve batched", L.solve(A, B), lambda v: np.linalg.solve(v[A], v[B])),
        ("inv", L.inv(A), lambda v: np.linalg.inv(v[A])),
        ("det", L.det(A), lambda v: np.linalg.det(v[A])),
        ("slogdet sign", L.slogdet(A)[0], lambda v: np.linalg.slogdet(v[A])[0]),
        ("slogdet log", L.slogdet(A)[1], lambda v: np.linalg.slogdet(v[A])[1]),
        ("cholesky", L.cholesky(K), lambda v: np.linalg.cholesky(v[K])),
        ("cholesky upper", L.cholesky(K, upper=True), lambda v: np.linalg.cholesky(v[K], upper=True)),
        ("eigh w", L.eigh(S)[0], lambda v: np.linalg.eigh(v[K] + np.swapaxes(v[K], -1, -2))[0]),
        ("eigh v", L.eigh(S)[1], lambda v: np.linalg.eigh(v[K] + np.swapaxes(v[K], -1, -2))[1]),
        ("eigvalsh", L.eigvalsh(K), lambda v: np.linalg.eigvalsh(v[K])),
        ("svd U", L.svd(M)[0], lambda v: np.linalg.svd(v[M])[0]),
        ("svd S", L.svd(M)[1], lambda v: np.linalg.svd(v[M])[1]),
        ("svd Vh", L.svd(M)[2], lambda v: np.linalg.svd(v[M])[2]),
        ("svd reduced U", L.svd(M, full_matrices=False)[0], lambda v: np.linalg.svd(v[M], full_matrices=False)[0]),
        ("svdvals", L.svdvals(A), lambda v: np.linalg.svdvals(v[A])),
        ("qr Q", L.qr(M)[0], lambda v: np.linalg.qr(v[M])[0]),
        ("qr R", L.qr(M)[1], lambda v: np.linalg.qr(v[M])[1]),
        ("qr complete Q", L.qr(M, mode="complete")[0], lambda v: np.linalg.qr(v[M], mode="complete")[0]),
        ("qr r", L.qr(A, mode="r"), lambda v: np.linalg.qr(v[A], mode="r")),
        ("pinv", L.pinv(M), lambda v: np.linalg.pinv(v[M])),
        ("matrix_power 5", L.matrix_power(A, 5), lambda v: np.linalg.matrix_power(v[A], 5)),
        ("matrix_power -2", L.matrix_power(A, -2), lambda v: np.linalg.matrix_power(v[A], -2)),
        ("matrix_power 0", L.matrix_power(A, 0), lambda v: np.linalg.matrix_power(v[A], 0)),
        ("multi_dot", L.multi_dot([M.T, M, y]), lambda v: np.linalg.multi_dot([v[M].T, v[M], v[y]])),
        ("solve_triangular", L.solve_triangular(T, B, lower=True),
         lambda v: np.stack([[scipy_linalg.solve_triangular(t, v[B][i, 0], lower=True) for t in v[T]]
                             for i in range(3)])),
        ("solve_triangular T unit", L.solve_triangular(T, b, trans="T", lower=True, unit_diagonal=True),
         lambda v: np.stack([scipy_linalg.solve_triangular(t, v[b], trans="T", lower=True, unit_diagonal=True)
                             for t in v[T]])),
        ("solve_triangular upper", L.solve_triangular(sd.linalg.matrix_transpose(T), b),
         lambda v: np.stack([scipy_linalg.solve_triangular(t.T, v[b]) for t in v[T]])),
        ("cho_solve lower", L.cho_solve(L.cho_factor(K, lower=True), b),
         lambda v: np.stack([scipy_linalg.cho_solve(scipy_linalg.cho_factor(k, lower=True), v[b]) for k in v[K]])),
        ("cho_solve upper", L.cho_solve(L.cho_factor(K), B),
         lambda v: np.stack([[scipy_linalg.cho_solve(scipy_linalg.cho_factor(k), v[B][i, 0]) for k in v[K]]
                             for i in range(3)])),
        ("expm", L.expm(A * 0.7), lambda v: np.stack([scipy_linalg.expm(a * 0.7) for a in v[A]])),
        ("diagonal", L.diagonal(A), lambda v: np.linalg.diagonal(v[A])),
        ("norm fro", L.norm(A, axis=(-2, -1)), lambda v: np.linalg.norm(v[A], axis=(-2, -1))),
        ("norm nuc", L.norm(M, "nuc"), lambda v: np.linalg.norm(v[M], "nuc")),
        ("norm 2", L.norm(M, 2), lambda v: np.linalg.norm(v[M], 2)),
        ("norm -1", L.norm(A, -1, axis=(1, 2), keepdims=True), lambda v: np.linalg.norm(v[A], -1, axis=(1, 2),
                                                                                            keepdims=True)),
        ("norm inf", L.norm(M, np.inf), lambda v: np.linalg.norm(v[M], np.inf)),
        ("vector norm 3", L.norm(A, 3, axis=-1), lambda v: np.linalg.norm(v[A], 3, axis=-1)),
        ("vector norm -inf", L.norm(y, -np.inf), lambda v: np.linalg.norm(v[y], -np.inf)),
        ("vector_norm", L.vector_norm(A, ord=1), lambda v: np.linalg.vector_norm(v[A], ord=1)),
        ("matrix_norm", L.matrix_norm(A, ord=-2), lambda v: np.linalg.matrix_norm(v[A], ord=-2)),
    ]
    return cases


def _values(n, m, p, seed):
    rng = _rng(seed)
    return {A: rng.normal(size=(2, n, n)) + 2 * np.eye(n), K: spd(rng, n, (2,)), T: _tri(rng, n, (2,)),
            b: rng.normal(size=n), B: rng.normal(size=(3, 1, n, 2)), M: rng.normal(size=(m, p)),
            y: rng.normal(size=p)}


SIZES = [(4, 5, 3, 0), (3, 2, 4, 1)]  # (n, m, p, seed): tall and wide M


def _check_values(function, cases, label):
    for n, m, p, seed in SIZES:
        values = _values(n, m, p, seed)
        got = function(*[values[s] for s in function.inputs])
        for (name, _, reference), value in zip(cases, got):
            _close(value, reference(values), f"{label} {name} at n={n}, M {m}x{p}")


def test_every_function_against_numpy_with_the_reference_backend():
    cases = _value_cases()
    symbols = [A, K, T, b, B, M, y]
    f = sd.function(symbols, [e for _, e, _ in cases], backend="numpy")
    _check_values(f, cases, "numpy backend")


def test_every_function_against_numpy_compiled():
    cases = _value_cases()
    symbols = [A, K, T, b, B, M, y]
    half = len(cases) // 2
    for part in (cases[:half], cases[half:]):
        f = sd.function(symbols, [e for _, e, _ in part])
        _check_values(f, part, "compiled")


def test_eigenvectors_and_singular_vectors_are_numpys_bitwise():
    """Compiled eigh and svd call the routine NumPy calls, on the same column-major copy:
    same vectors, signs included."""
    S, X = sd.matrix("S", (None, None)), sd.matrix("X", (None, None))
    w, v = L.eigh(S)
    u, s, vh = L.svd(X)
    f = sd.function([S, X], [w, v, u, s, vh])
    rng = _rng(5)
    s_value, x_value = spd(rng, 6), rng.normal(size=(7, 4))
    got = f(s_value, x_value)
    for g, want in zip(got, [*np.linalg.eigh(s_value), *np.linalg.svd(x_value)]):
        assert np.array_equal(g, want)


def test_float32_stays_float32():
    X = sd.matrix("X32", (None, None), dtype="float32")
    v = sd.vector("v32", dtype="float32")
    eye = 3 * sd.eye(X.shape[0], dtype="float32")
    outs = [L.solve(X @ X.T + eye, v), L.cholesky(X @ X.T + eye), L.slogdet(X)[1], L.eigvalsh(X + X.T), L.svdvals(X),
            L.inv(X + eye)]
    rng = _rng(3)
    x, vv = rng.normal(size=(5, 5)).astype(np.float32), rng.normal(size=5).astype(np.float32)
    want = sd.evaluate(outs, {X: x, v: vv})
    for backend in ("numpy", "numba"):
        got = sd.function([X, v], outs, backend=backend)(x, vv)
        for g, w in zip(got, want):
            assert np.asarray(g).dtype == np.float32
            _close(g, w, f"float32 {backend}", rtol=2e-5, atol=2e-5)


def test_empty_matrices():
    X = sd.matrix("X0", (None, None))
    outs = [L.solve(X, sd.vector("z0")), L.det(X), L.cholesky(X @ X.T), L.inv(X), L.eigvalsh(X)]
    x, z = np.zeros((0, 0)), np.zeros(0)
    want = [np.linalg.solve(x, z), np.linalg.det(x), np.linalg.cholesky(x), np.linalg.inv(x), np.linalg.eigvalsh(x)]
    got = sd.evaluate(outs, {"X0": x, "z0": z})
    for g, w in zip(got, want):
        _close(g, w, "empty")


# ----------------------------------------------------------------- derivatives


def _gp_negative_log_likelihood(X, yv, theta):
    """Squared-exponential GP: -log p(y | X, lengthscale, signal and noise variance)."""
    ell, sf2, sn2 = sd.exp(theta[0]), sd.exp(theta[1]), sd.exp(theta[2])
    sq = sd.sum(X * X, axis=1)
    d2 = sq[:, None] + sq[None, :] - 2 * (X @ X.T)
    Kx = sf2 * sd.exp(-0.5 * d2 / ell ** 2) + sn2 * sd.eye(X.shape[0])
    Lx = L.cholesky(Kx)
    alpha = L.cho_solve((Lx, True), yv)
    return 0.5 * sd.sum(yv * alpha) + sd.sum(sd.log(L.diagonal(Lx))) + 0.5 * X.shape[0] * np.log(2 * np.pi)


def _gp_problem(n=9, seed=2):
    rng = _rng(seed)
    X, yv, theta = sd.matrix("Xgp", (None, 2)), sd.vector("ygp"), sd.vector("theta", 3)
    values = {X: rng.normal(size=(n, 2)), yv: rng.normal(size=n), theta: np.array([0.2, -0.3, -1.2])}
    return X, yv, theta, _gp_negative_log_likelihood(X, yv, theta), values


def test_composites_first_and_second_derivatives():
    rng = _rng(7)
    a0 = rng.normal(size=(3, 3)) + 2 * np.eye(3)
    k0 = spd(rng, 3)
    m0 = rng.normal(size=(4, 3))
    problems = [
        (lambda a: L.det(a), (a0,)),
        (lambda a: L.inv(a), (a0,)),
        (lambda a, v: L.solve(a, v), (a0, rng.normal(size=3))),
        (lambda a, v: L.solve(a, v), (rng.normal(size=(2, 3, 3)) + 2 * np.eye(3), rng.normal(size=(3, 2)))),
        (lambda a: L.matrix_power(a, -2), (a0,)),
        (lambda a: L.matrix_power(a, 4), (a0 * 0.5,)),
        (lambda k, v: L.cho_solve(L.cho_factor(k), v), (k0, rng.normal(size=3))),
        (lambda k, v: L.cho_solve(L.cho_factor(k, lower=True), v), (k0, rng.normal(size=(3, 2)))),
        (lambda t, v: L.solve_triangular(t, v, lower=True, trans=1), (_tri(rng, 3), rng.normal(size=3))),
        (lambda m: L.pinv(m), (m0,)),
        (lambda m, v: L.lstsq(m, v)[0], (m0, rng.normal(size=4))),
        (lambda m, v: L.lstsq(m, v)[1], (m0, rng.normal(size=4))),
        (lambda a: L.expm(a), (a0 * 0.3,)),
        (lambda m: L.multi_dot([m, m.T, m]), (m0,)),
        (lambda m: L.qr(m.T)[0], (m0,)),  # wide: the composite split
        (lambda m: L.qr(m.T)[1], (m0,)),
        (lambda m: L.norm(m), (m0,)),
        (lambda m: L.norm(m, "nuc"), (m0,)),
        (lambda m: L.norm(m, 2), (m0,)),
        (lambda m: L.norm(m, 1), (m0,)),
        (lambda m: L.norm(m, 3.5, axis=0), (m0,)),
    ]
    for k, (f, values) in enumerate(problems):
        check_grads(f, values=values, order=2, rng=k, label=f"problem {k}")


def test_hvps_through_solve_cholesky_slogdet_eigh():
    rng = _rng(8)
    a0 = rng.normal(size=(4, 4)) + 2 * np.eye(4)
    Am, v = sd.matrix("Ah", (4, 4)), sd.vector("vh", 4)
    values = {Am: a0, v: rng.normal(size=4)}
    sym = Am + Am.T
    costs = [
        sd.sum(L.solve(Am, v) ** 2),
        sd.sum(sd.sin(L.cholesky(Am @ Am.T + 4 * sd.eye(4)))),
        L.slogdet(Am)[1] * L.slogdet(Am)[1],
        sd.sum(L.eigh(sym)[0] ** 3) + sd.sum(L.eigh(sym)[1][:, 0] * v) ** 2,
    ]
    for k, cost in enumerate(costs):
        check_hvp(cost, [Am, v] if k in (0, 3) else [Am], values, rng=k, label=f"hvp {k}")


@functools.lru_cache(maxsize=None)
def _gp_compiled():
    X, yv, theta, nll, _ = _gp_problem()
    outputs = [nll, sd.grad(nll, theta)]
    return sd.function([X, yv, theta], outputs), outputs


def test_gaussian_process_hessian_and_its_compiled_kernel():
    X, yv, theta, nll, values = _gp_problem()
    check_grads(nll, theta, values, order=2, label="GP negative log-likelihood")
    check_hvp(nll, theta, values, label="GP negative log-likelihood")
    gradient = sd.grad(nll, theta)
    hessian = sd.hessian(nll, theta)
    want = sd.evaluate([nll, gradient, hessian], values)
    np.testing.assert_allclose(want[2], want[2].T, rtol=1e-10)
    check_grads(lambda t: sd.sum(sd.hessian(_gp_negative_log_likelihood(sd.constant(values[X]), sd.constant(values[yv]),
                                                                        t), t) * sd.constant(np.eye(3))),
                values=(values[theta],), order=1, label="trace of the GP Hessian")
    # against scikit-learn's own gradient (its hyperparameters: log signal, log length, log noise)
    sklearn = pytest.importorskip("sklearn.gaussian_process")
    kernels = sklearn.kernels
    kernel = (kernels.ConstantKernel(np.exp(-0.3)) * kernels.RBF(np.exp(0.2)) + kernels.WhiteKernel(np.exp(-1.2)))
    gp = sklearn.GaussianProcessRegressor(kernel, optimizer=None, alpha=0.0).fit(values[X], values[yv])
    lml, lml_grad = gp.log_marginal_likelihood(gp.kernel_.theta, eval_gradient=True)
    _close(want[0], -lml, "GP value vs scikit-learn", rtol=1e-9)
    _close(want[1], -lml_grad[[1, 0, 2]], "GP gradient vs scikit-learn", rtol=1e-8)
    f, outputs = _gp_compiled()
    for n, seed in ((9, 2), (14, 3)):
        _, _, _, _, vals = _gp_problem(n, seed)
        got = f(vals[X], vals[yv], vals[theta])
        for g, w, name in zip(got, sd.evaluate(outputs, vals), ("value", "gradient")):
            _close(g, w, f"compiled GP {name} n={n}", rtol=1e-9)


def test_the_log_determinant_gradient_needs_no_matrix_product_however_the_diagonal_is_spelled():
    """sd.linalg.diagonal, sd.diagonal and sd.diag (static and run-time sizes): cholesky's
    rule takes the log-determinant's cotangent by its diagonal (cho_inverse), never through
    L^T Lbar.  If the spelling of sd.diagonal's gradient changes, this flags the lost speed."""
    rng = _rng(16)
    for n in (4, None):
        Km = sd.matrix("Kd", (n, n))
        Lm = L.cholesky(Km)
        for diagonal in (L.diagonal, sd.diagonal, sd.diag):
            cost = sd.sum(sd.log(diagonal(Lm)))
            gradient = sd.grad(cost, Km)
            ops = [x.op.name for x in sd.toposort(gradient)]
            assert "cho_inverse" in ops and "matmul" not in ops, (n, diagonal.__name__, ops)
            k0 = spd(rng, 4)
            _close(sd.evaluate(gradient, {Km: k0}), 0.5 * np.linalg.inv(k0), f"{diagonal.__name__} n={n}")


def test_factorisations_are_computed_once_per_call():
    """The Cholesky factor of K in the likelihood and its gradient, the LU factors of A in
    solve and in its gradient's solve with A^T, eigh's two parts: one LAPACK call each."""
    f, (_, gradient) = _gp_compiled()
    assert f.source.count("cholesky(") == 1
    # cholesky's rule needs no n x n matrix product here: cho_solve's and diagonal's terms are direct
    products = [n for n in sd.toposort(gradient) if n.op.name == "matmul" and n.ndim == 2
                and n.type.shape[1] is None and n.inputs[0].type.shape[-1] is None]
    assert products == [], products
    Am, v = sd.matrix("Alu", (None, None)), sd.vector("vlu")
    cost = sd.sum(L.solve(Am, v) ** 2) + L.slogdet(Am)[1]
    g = sd.function([Am, v], [cost, *sd.grad(cost, [Am, v])])
    assert len(re.findall(r"_lu\(", g.source)) == 1, g.source
    rng = _rng(4)
    a0, v0 = rng.normal(size=(5, 5)) + 3 * np.eye(5), rng.normal(size=5)
    for got, want in zip(g(a0, v0), sd.evaluate([cost, *sd.grad(cost, [Am, v])], {Am: a0, v: v0})):
        _close(got, want, "shared LU")
    S = sd.matrix("Seig", (None, None))
    w, vecs = L.eigh(S)
    e = sd.function([S], [w, vecs, sd.grad(sd.sum(w * w) + sd.sum(vecs[0] ** 2), S)])
    assert len(re.findall(r"_eigh\(", e.source)) == 1


# ------------------------------------------------------------ far from scale 1


def _check_power_of_two_scaling(values, outputs, label):
    """Each input x (``values``: x -> (array at scale 1, e)) taken at 2**e and 2**-e times
    its value; each output (``outputs``: (expr, x, degree)) must then be its scale-1 value
    times 2**(+-e_x * degree), exactly up to rounding, in both backends (one kernel)."""
    inputs = list(values)
    exprs = [expr for expr, _, _ in outputs]
    base = sd.evaluate(exprs, {x: v for x, (v, _) in values.items()})
    kernel = sd.function(inputs, exprs)
    for sign in (1, -1):
        scaled = {x: np.ldexp(v, sign * e).astype(v.dtype) for x, (v, e) in values.items()}
        runs = {"reference": sd.evaluate(exprs, scaled), "compiled": kernel(*(scaled[x] for x in inputs))}
        for backend, got in runs.items():
            for (expr, x, degree), g, w in zip(outputs, got, base):
                want = np.ldexp(w, sign * values[x][1] * degree)
                g = np.asarray(g)
                rtol = 1e-4 if expr.dtype == "float32" else 1e-12
                where = f"{label}: output {exprs.index(expr)} ({expr.dtype}) at 2**{sign * values[x][1]}, {backend}"
                assert np.all(np.isfinite(g)), f"{where}: {g}"
                assert np.max(np.abs(g - want)) <= rtol * np.max(np.abs(want)), f"{where}: {g}, expected {want}"


def test_pinv_and_lstsq_gradients_far_from_scale_one():
    """pinv's rule grouped P (P w) and (z P) A: intermediates of order g / s^3 under- or
    overflowed (A ~ s) where the gradient g / s^2 is normal: wrong at 1e108, NaN at 1e-104."""
    rng = _rng(21)
    A64, R64, A32 = sd.matrix("Ap", (2, 2)), sd.matrix("Rp", (3, 2)), sd.matrix("Ap32", (2, 2), dtype="float32")
    rhs, weights = rng.normal(size=3), rng.normal(size=(2, 2))
    m0 = np.array([[2.0, 1.0], [1.0, 3.0]])
    values = {A64: (m0, 350), R64: (rng.normal(size=(3, 2)), 350), A32: (m0.astype(np.float32), 50)}
    outputs = [(sd.grad(sd.sum(L.pinv(A64) * weights), A64), A64, -2),
               (sd.grad(sd.sum(L.lstsq(R64, rhs)[0]), R64), R64, -2),
               (sd.grad(sd.sum(L.pinv(A32)), A32), A32, -2)]
    _check_power_of_two_scaling(values, outputs, "pinv/lstsq")


def test_determinant_derivatives_where_the_determinant_overflows():
    """The cofactors det(A) A^-T are representable where det(A) is not (3x3 at s: s^2 against
    s^3); the gradient was +-inf / 0 there, and the forward derivative too."""
    B64, V64, B32 = sd.matrix("Bd", (3, 3)), sd.matrix("Vd", (3, 3)), sd.matrix("Bd32", (3, 3), dtype="float32")
    s0 = np.array([[4.0, 1.0, 0.0], [1.0, 3.0, 1.0], [0.0, 1.0, 2.0]])
    values = {B64: (s0, 500), V64: (np.arange(9.0).reshape(3, 3) / 5 - 0.7, 0), B32: (s0.astype(np.float32), 50)}
    outputs = [(sd.grad(L.det(B64), B64), B64, 2), (sd.jvp(L.det(B64), B64, V64), B64, 2),
               (sd.grad(L.det(B32), B32), B32, 2)]
    _check_power_of_two_scaling(values, outputs, "det")


def test_determinant_hvps_in_both_modes_where_the_determinant_overflows():
    """Reverse over reverse sent the cotangent V to A^-T as det(A) V (s^3 for 3x3 at s): the
    HVP was NaN at 2**500 and 0 at 2**-500 (fwd-rev was right).  The rule now solves with a
    right-hand side of det's larger half, so every intermediate stays within the gradient's
    scale; the HVP is s times its scale-1 value, which the closed form checks."""
    B64, V64 = sd.matrix("Bh", (3, 3)), sd.matrix("Vh", (3, 3))
    B32, V32 = sd.matrix("Bh32", (3, 3), dtype="float32"), sd.matrix("Vh32", (3, 3), dtype="float32")
    s0 = np.array([[4.0, 1.0, 0.0], [1.0, 3.0, 1.0], [0.0, 1.0, 2.0]])
    v0 = np.arange(9.0).reshape(3, 3) / 5 - 0.7
    inv_t = np.linalg.inv(s0).T  # d<det(A) A^-T, V> = det(A) (tr(A^-1 V) A^-T - A^-T V^T A^-T)
    exact = np.linalg.det(s0) * (np.trace(np.linalg.solve(s0, v0)) * inv_t - inv_t @ v0.T @ inv_t)
    _close(sd.evaluate(sd.hvp(L.det(B64), B64, V64), {B64: s0, V64: v0}), exact, "det's HVP", rtol=1e-13)
    values = {B64: (s0, 500), V64: (v0, 0), B32: (s0.astype(np.float32), 50), V32: (v0.astype(np.float32), 0)}
    outputs = [(sd.hvp(L.det(B64), B64, V64), B64, 1), (sd.hvp(L.det(B64), B64, V64, mode="fwd-rev"), B64, 1),
               (sd.hvp(L.det(B32), B32, V32), B32, 1)]
    _check_power_of_two_scaling(values, outputs, "det's HVP")


def _dot_within_rounding(x, y, got, dtype):
    """``got`` against sum(x * y) in exact rationals: within k eps sum |x y| (the rounding of any
    summation order in the dtype), +-inf exactly where the true sum is beyond the dtype's range and not
    that close to it (an ill-conditioned sum may overflow either way), and always the same
    infinity as the true sum's sign would give.  Returns False where nothing overflows in any
    order (the fast sum's entries, not this test's business)."""
    from fractions import Fraction

    terms = [Fraction(float(p)) * Fraction(float(q)) for p, q in zip(x, y)]
    total, size = sum(terms), sum(abs(t) for t in terms)
    largest = Fraction(float(np.finfo(dtype).max))
    if size < largest / 2:
        return False
    slack = size * len(terms) * Fraction(float(np.finfo(dtype).eps))
    label = f"{dtype.__name__}: {got} against {float(total / largest)} * max"
    if np.isinf(got):
        assert abs(total) + slack >= largest and (got > 0) == (total > 0) or abs(total) < slack, label
    else:
        assert abs(Fraction(float(got)) - total) <= slack, label
        assert abs(total) - slack <= largest, label
    return True


def test_matmul_where_products_overflow_is_the_true_sum_in_both_backends():
    """BLAS and the compiled loops sum in their own orders with FMAs; where products overflow,
    the order decided between inf, NaN and a finite number: float32 rows of +-3e38 * 10 gave inf
    from NumPy's sgemv and NaN from the compiled loops (or the reverse), float64 gemm finite, -inf
    or NaN at one entry.  Now both recompute each non-finite entry without overflow: the true
    sum, inf only where it overflows, NaN only from infinite inputs (inf * 0, +inf and -inf),
    and the same bits in both backends."""
    big = np.float32(3e38)
    rows = np.array([[big, big, big, big], [big, -big, 1, 1], [big, big, -big, 2], [-big, -big, -big, 0],
                     [np.inf, -np.inf, 1, 1], [np.inf, 1, 1, 1], [np.inf, big, 0, 0]], dtype=np.float32)
    u0 = np.array([10, 10, 1, 1], dtype=np.float32)
    want = np.array([np.inf, 2, np.inf, -np.inf, np.nan, np.inf, np.inf], dtype=np.float32)
    A32, u32 = sd.matrix("Ao", dtype="float32"), sd.vector("uo", dtype="float32")
    X, Y = sd.matrix("Xo"), sd.matrix("Yo")
    outputs = [A32 @ u32, X @ Y.T, X.T @ Y]
    rng = _rng(31)
    inputs = []
    for n, dtype, scale in ((70, np.float32, 3e38), (40, np.float64, 1e300)):
        a = rng.normal(size=(n, n)).astype(dtype)
        a[rng.random((n, n)) < 0.1] = scale
        a[rng.random((n, n)) < 0.1] *= -1
        c = rng.normal(size=(n, n)) * 2
        c[rng.random((n, n)) < 0.1] = -1e10
        inputs.append((a, (rng.normal(size=n) * 4).astype(dtype), c))
    (a32, v32, _), (a64, _, c64) = inputs
    results = []
    for f in _compiled_and_reference([A32, u32, X, Y], outputs):
        backend = "compiled" if f.backend == "numba" else "reference"
        with np.errstate(over="ignore", invalid="ignore"):
            got = f(rows, u0, np.eye(2), np.eye(2))[0]
            zero_times_inf = f(rows[5:6], np.array([0, 1, 1, 1], dtype=np.float32), np.eye(2), np.eye(2))[0]
            results.append(f(a32, v32, a64, c64))
        np.testing.assert_array_equal(got, want, err_msg=f"float32 rows, {backend}")
        assert np.isnan(zero_times_inf[0]), f"inf * 0, {backend}"
        matvec, outer, inner = results[-1]
        pairs = {np.float32: [(a32[i], v32, matvec[i]) for i in range(len(v32))],
                 np.float64: [(a64[i], c64[j], outer[i, j]) for i in range(0, 40, 3) for j in range(40)]
                 + [(a64[:, i], c64[:, j], inner[i, j]) for i in range(0, 40, 3) for j in range(40)]}
        for dtype, cases in pairs.items():
            checked = sum(_dot_within_rounding(x, y, g, dtype) for x, y, g in cases)
            assert checked > 20, f"{dtype.__name__}, {backend}: only {checked} entries overflowed"
    for reference, compiled in zip(*results):  # the recomputed entries: the same bits
        nonfinite = ~np.isfinite(reference) | ~np.isfinite(compiled)
        np.testing.assert_array_equal(compiled[nonfinite], reference[nonfinite])


def test_singular_value_second_derivatives_far_from_scale_one():
    """1 / (s_j^2 - s_i^2) overflowed beyond s ~ 1e154 and underflowed below 1e-154: the HVPs of
    the nuclear and spectral norms and svdvals, and the derivatives of U, were 0 or NaN there."""
    rng = _rng(22)
    A64, V64 = sd.matrix("As", (3, 3)), sd.matrix("Vs", (3, 3))
    M64, A32 = sd.matrix("Ms", (4, 3)), sd.matrix("As32", (3, 3), dtype="float32")
    a0 = np.array([[4.0, 1.0, 0.5], [1.0, 3.0, 1.0], [0.2, 1.0, 2.0]])
    values = {A64: (a0, 600), V64: (rng.normal(size=(3, 3)), 600), M64: (rng.normal(size=(4, 3)), 600),
              A32: (a0.astype(np.float32), 70)}
    u, _, vh = L.svd(M64, full_matrices=False)
    outputs = [(sd.hvp(L.norm(A64, "nuc"), A64, V64), A64, 0),
               (sd.hvp(L.norm(A64, 2), A64, V64, mode="fwd-rev"), A64, 0),
               (sd.hvp(sd.sum(L.svdvals(A64) * np.array([1.0, 2.0, 3.0])), A64, V64), A64, 0),
               (sd.grad(sd.sum(u * rng.normal(size=(4, 3))) + sd.sum(vh * rng.normal(size=(3, 3))), M64), M64, -1),
               (sd.grad(sd.sum(L.svd(A32)[0][:, 0]), A32), A32, -1)]
    _check_power_of_two_scaling(values, outputs, "svd")


def test_singular_values_of_a_rectangular_matrix_have_a_gradient():
    """svdvals (svd with compute_uv=False) asked for full U and Vh, whose rule refuses
    non-square matrices: its gradient raised GradientError.  It is U[:, :k] Vh."""
    M = sd.matrix("Mr", (4, 3))
    m0 = _rng(23).normal(size=(4, 3))
    u, _, vh = np.linalg.svd(m0, full_matrices=False)
    _close(sd.evaluate(sd.grad(sd.sum(L.svdvals(M)), M), {M: m0}), u @ vh, "grad of sum(svdvals)")


# ------------------------------------------------------------ degenerate spectra


def test_eigenvalue_functions_are_exact_at_repeated_eigenvalues():
    """A function of the eigenvalues alone needs no eigenvector derivative: at a repeated
    eigenvalue the gradient of sum(w**3) is 3 A^2 (a matrix function), exactly."""
    q, _ = np.linalg.qr(_rng(9).normal(size=(4, 4)))
    a0 = (q * np.array([1.0, 2.0, 2.0, 5.0])) @ q.T
    S = sd.matrix("Sdeg", (4, 4))
    gradient = sd.grad(sd.sum(L.eigvalsh(S) ** 3), S)
    _close(sd.evaluate(gradient, {S: a0}), 3 * a0 @ a0, "grad sum(w^3) at a repeated eigenvalue", rtol=1e-12)
    U = sd.matrix("Udeg", (4, 4))
    nuclear = sd.grad(L.norm(U, "nuc"), U)
    _close(sd.evaluate(nuclear, {U: q}), q, "grad of the nuclear norm at an orthogonal matrix", rtol=1e-12)


def test_eigenvector_derivatives_at_and_near_repeated_eigenvalues():
    """Eigenvalues equal to rounding: the pair's term is 0, so the gradient is finite and is
    the derivative with the rotation inside the eigenspace left out; near-equal ones give
    the true (large) derivative, which finite differences confirm."""
    q, _ = np.linalg.qr(_rng(10).normal(size=(3, 3)))
    S, W = sd.matrix("Sv", (3, 3)), sd.matrix("Wv", (3, 3))
    cost = sd.sum(L.eigh(S)[1] * W)
    gradient = sd.grad(cost, S)
    weights = _rng(11).normal(size=(3, 3))
    exact = (q * np.array([1.0, 1.0, 3.0])) @ q.T
    value = sd.evaluate(gradient, {S: exact, W: weights})
    w, v = np.linalg.eigh(exact)
    assert 0 < w[1] - w[0] < 1e-14, "rounding separates the pair a little"
    d = w[None, :] - w[:, None]
    f = np.where(np.abs(d) <= 128 * np.finfo(float).eps * np.abs(w).max(), 0.0, 1 / np.where(d == 0, 1.0, d))
    g = v @ (f * (v.T @ weights)) @ v.T
    _close(value, (g + g.T) / 2, "eigenvector gradient with the degenerate pair's term 0", rtol=1e-10, atol=1e-12)
    assert np.abs(value).max() < 10
    near = (q * np.array([1.0, 1.0 + 1e-4, 3.0])) @ q.T
    check_grads(cost, S, {S: near, W: weights}, order=1, step=1e-8, rtol=1e-4, label="eigenvectors, gap 1e-4")
    assert np.abs(sd.evaluate(gradient, {S: near, W: weights})).max() > 100, "the derivative grows like 1/gap"


def test_singular_vector_derivatives_near_repeated_singular_values():
    q1, _ = np.linalg.qr(_rng(12).normal(size=(4, 4)))
    q2, _ = np.linalg.qr(_rng(13).normal(size=(3, 3)))
    near = (q1[:, :3] * np.array([2.0, 2.0 - 1e-4, 0.5])) @ q2.T
    X, W = sd.matrix("Xs", (4, 3)), sd.matrix("Ws", (4, 3))
    cost = sd.sum(L.svd(X, full_matrices=False)[0] * W)
    check_grads(cost, X, {X: near, W: _rng(14).normal(size=(4, 3))}, order=1, step=1e-8, rtol=1e-4,
                label="singular vectors, gap 1e-4")
    exact = (q1[:, :3] * np.array([2.0, 2.0, 0.5])) @ q2.T
    assert np.abs(sd.evaluate(sd.grad(cost, X), {X: exact, W: np.ones((4, 3))})).max() < 100


# ------------------------------------------------------------------ failures


def _compiled_and_reference(inputs, outputs):
    return [sd.function(inputs, outputs, backend="numpy"), sd.function(inputs, outputs)]


def _failures():
    """One kernel, one input per failure: each call makes one of them fail."""
    X1, X2, X3, X4 = (sd.matrix(f"Xf{k}", (None, None)) for k in range(4))
    v = sd.vector("vf")
    inputs = [X1, X2, X3, X4, v]
    outputs = [L.solve(X1, v), L.inv(X2), L.cholesky(X3), L.solve_triangular(X4, v, lower=True)]
    good = [np.eye(2), np.eye(2), np.eye(2), np.eye(2), np.ones(2)]
    bad = [(0, np.array([[1.0, 2.0], [2.0, 4.0]]), "[Ss]ingular matrix"),
           (1, np.array([[1.0, 2.0], [2.0, 4.0]]), "[Ss]ingular matrix"),
           (2, np.array([[1.0, 2.0], [2.0, 1.0]]), "not positive definite"),
           (3, np.array([[1.0, 0.0], [3.0, 0.0]]), "[Ss]ingular")]
    return inputs, outputs, good, bad


def _check_failures(backend):
    inputs, outputs, good, bad = _failures()
    f = sd.function(inputs, outputs, backend=backend)
    f(*good)
    for k, value, message in bad:
        args = list(good)
        args[k] = value
        with pytest.raises(LinAlgError, match=message):
            f(*args)


def test_singular_and_indefinite_matrices_raise_linalgerror_compiled():
    _check_failures("numba")


def test_singular_and_indefinite_matrices_raise_linalgerror_reference():
    _check_failures("numpy")


def test_linalgerror_names_the_node_and_the_users_line():
    X = sd.matrix("Xline", (None, None))
    chol = L.cholesky(X)  # the error names this line
    for backend in ("numba", "numpy"):
        with pytest.raises(LinAlgError, match=rf"cholesky at .*test_linalg.py:{chol.origin[1]}: Matrix is not pos"):
            sd.function([X], [chol], backend=backend)(np.array([[1.0, 2.0], [2.0, 1.0]]))


def test_singular_determinants_are_zero_in_both_backends():
    X = sd.matrix("Xd", (None, None))
    for f in _compiled_and_reference([X], [L.det(X), *L.slogdet(X)]):
        det, sign, logabsdet = f(np.array([[1.0, 2.0], [2.0, 4.0]]))
        assert det == 0 and sign == 0 and logabsdet == -np.inf


def test_log_determinant_derivatives_at_singular_matrices_say_why_they_fail():
    """log|det| is -inf at a singular matrix (NumPy's value, kept) and has no derivative there;
    its rules' A^-T solve raised NumPy's bare "Singular matrix" under the name solve, an op the
    user never wrote.  Now the message says that log|det| from slogdet has no derivative at a
    singular matrix, in both backends, for grad, jvp and HVPs.  det's derivatives at a NaN
    matrix (which LU calls singular: NumPy's det is 0) raised "SVD did not converge" from
    singular_cofactors; now NaN, as everywhere a NaN enters."""
    X, V = sd.matrix("Xl", (None, None)), sd.matrix("Vl", (None, None))
    logabsdet = L.slogdet(X)[1]
    singular = np.array([[1.0, 2.0], [2.0, 4.0]])
    for outputs in ([sd.grad(logabsdet, X)], [sd.jvp(logabsdet, X, V)], sd.hvp(logabsdet, [X], [V], mode="fwd-rev")):
        for f in _compiled_and_reference([X, V], outputs):
            with pytest.raises(LinAlgError, match=r"Singular matrix \(log\|det\| from slogdet has no derivative"):
                f(singular, np.ones((2, 2)))
    det = L.det(X)
    outputs = [sd.grad(det, X), *sd.hvp(det, [X], [V], mode="rev-rev"), *sd.hvp(det, [X], [V], mode="fwd-rev")]
    for f in _compiled_and_reference([X, V], outputs):
        for got in f(np.array([[np.nan, 1.0], [1.0, 1.0]]), np.ones((2, 2))):
            assert np.all(np.isnan(got)), got


def _exact_cofactors(a, exact=False):
    """The cofactor matrix of a float (or Fraction) matrix, in exact arithmetic (fractions);
    with ``exact`` as Fractions, else rounded to floats."""
    from fractions import Fraction

    def det(m):
        if len(m) == 0:
            return Fraction(1)
        return sum((-1) ** j * m[0][j] * det([row[:j] + row[j + 1:] for row in m[1:]]) for j in range(len(m)))

    m = [[Fraction(v) for v in row] for row in (a if exact else np.asarray(a).tolist())]
    n = len(m)
    cof = [[(-1) ** (i + j) * det([row[:j] + row[j + 1:] for k, row in enumerate(m) if k != i]) for j in range(n)]
           for i in range(n)]
    return cof if exact else np.array(cof, dtype=float)


def _exact_cofactor_tangent(a, v):
    """d/dt cof(A + tV) at t = 0 in exact arithmetic: cof(A + tV) is a polynomial of degree
    n - 1 in t, so its values at t = 0..n-1 give its derivative at 0 by Lagrange's basis."""
    from fractions import Fraction

    a, v = np.asarray(a).tolist(), np.asarray(v).tolist()
    n = len(a)
    nodes = range(n)

    def basis_slope(j):  # L_j'(0) for the nodes 0..n-1
        total = Fraction(0)
        for r in nodes:
            if r != j:
                term = Fraction(1, j - r)
                for m in nodes:
                    if m not in (j, r):
                        term *= Fraction(-m, j - m)
                total += term
        return total

    out = [[Fraction(0)] * n for _ in range(n)]
    for j in nodes:
        at = [[Fraction(x) + j * Fraction(y) for x, y in zip(ra, rv)] for ra, rv in zip(a, v)]
        cof, weight = _exact_cofactors(at, exact=True), basis_slope(j)
        out = [[o + weight * c for o, c in zip(ro, rc)] for ro, rc in zip(out, cof)]
    return np.array(out, dtype=float)


_SINGULAR_MATRICES = [  # rank n-1, n-2 (repeated zero singular values), lower, 0; the last regular
    [[1, 2], [2, 4]], [[0, 0], [0, 0]], [[1, 2, 3], [4, 5, 6], [7, 8, 9]], [[1, 2, 3], [2, 4, 6], [3, 6, 9]],
    [[0, 0, 0], [0, 0, 0], [0, 0, 0]], [[2, 0, 0, 1], [0, 3, 0, 0], [0, 0, 0, 0], [1, 0, 0, 5]],
    [[1, 2, 0, 0], [2, 4, 0, 0], [0, 0, 0, 0], [0, 0, 0, 3]], [[1, 1, 1, 1], [1, 1, 1, 1], [0, 1, 2, 3], [0] * 4],
    [[2, 1, 0], [1, 3, 1], [0, 1, 4]]]


@pytest.mark.parametrize("dtype, big", [("float64", 1e200), ("float64", 1e160), ("float32", 1e20)])
def test_determinant_gradient_at_a_singular_matrix_whose_singular_values_span_beyond_the_range(dtype, big):
    """Found by review: the product of the other singular values overflowed to inf and met
    the zero one as NaN (true: the cofactor of the zero, 1; 0 elsewhere), in both backends,
    also with the entries permuted (a rotation would round the matrix to a regular one whose
    determinant overflows)."""
    A = sd.matrix("A", (5, 5), dtype=dtype)
    gradient = sd.grad(sd.linalg.det(A), A)
    compiled = sd.function([A], [gradient])
    diagonal = np.diag(np.array([big, big, 1 / big, 1 / big, 0.0], dtype=dtype))
    permutation = np.eye(5)[[4, 0, 3, 1, 2]]  # P D P^T: its cofactors are P cof(D) P^T
    want = np.zeros((5, 5))
    want[4, 4] = 1.0
    for matrix, expected in ((diagonal, want), ((permutation @ diagonal @ permutation.T).astype(dtype),
                                                 permutation @ want @ permutation.T)):
        for got in (sd.evaluate(gradient, {A: matrix}), compiled(matrix)[0]):
            assert np.all(np.isfinite(got)), got
            np.testing.assert_allclose(got, expected, atol=1e-5 if dtype == "float32" else 1e-12)


def test_determinant_gradient_at_singular_matrices_is_the_cofactor_matrix():
    # det's rule solved with A's LU and raised LinAlgError at an exactly singular A; the true
    # gradient is the cofactor matrix (finite; 0 where the rank is n - 2 or less).  Now the
    # private singular_cofactors (an SVD, run only where slogdet's sign is 0).
    X = sd.matrix("Xs", (None, None))
    T = sd.tensor("Ts", (2, None, None))
    gradient = sd.grad(L.det(X), X)
    scaled = sd.grad(L.det(X) * 3.0, X)
    batched = sd.grad(sd.sum(L.det(T) * sd.constant([2.0, -1.0])), T)
    matrices = [[[1, 2], [2, 4]], [[0, 0], [0, 1]], [[0, 1], [0, 0]], [[1, 2, 3], [4, 5, 6], [7, 8, 9]],
                [[1, 2, 3], [2, 4, 6], [3, 6, 9]], [[0, 0, 0], [0, 0, 0], [0, 0, 0]],
                [[2, 0, 0, 1], [0, 3, 0, 0], [0, 0, 0, 0], [1, 0, 0, 5]], [[2, 1], [1, 3]]]
    for backend in ("reference", "compiled"):
        run = (lambda inputs, outputs: (lambda *values: sd.evaluate(outputs, dict(zip(inputs, values))))) \
            if backend == "reference" else (lambda inputs, outputs: sd.function(inputs, outputs))
        f, f3 = run([X], gradient), run([X], scaled)
        for a in matrices:
            a = np.array(a, dtype=float)
            want = _exact_cofactors(a)
            scale = max(1.0, np.max(np.abs(a))) ** (len(a) - 1)  # exact to rounding, relative to |A|^(n-1)
            for got, factor in ((f(a), 1.0), (f3(a), 3.0)):
                assert np.all(np.isfinite(got)), (backend, a, got)
                assert np.max(np.abs(got - factor * want)) <= 64 * np.finfo(float).eps * scale * factor, \
                    (backend, a.tolist(), got, want)
        V = sd.matrix("Vs", (None, None))
        along = run([X, V], sd.jvp(L.det(X), [X], [V]))  # forward mode: <cof(A), V>
        for a in matrices[:5]:
            a = np.array(a, dtype=float)
            v = np.arange(a.size, dtype=float).reshape(a.shape) - 1.5
            assert abs(along(a, v) - np.sum(_exact_cofactors(a) * v)) <= 1e-12 * max(1.0, np.max(np.abs(a))) ** len(a)
        pair = np.array([[[1.0, 2.0], [2.0, 4.0]], [[2.0, 1.0], [1.0, 3.0]]])
        got = run([T], batched)(pair)
        want = np.array([2 * _exact_cofactors(pair[0]), -_exact_cofactors(pair[1])])
        assert np.allclose(got, want, rtol=0, atol=1e-14), (backend, got)


def test_determinant_hessian_at_singular_matrices_is_the_cofactors_derivative():
    """det is a polynomial: its Hessian exists everywhere, d2 det(A)[V, W] = <d cof(A)[V], W>.
    At an exactly singular A the gradient's cofactors come from singular_cofactors, whose
    derivative was NaN by design and whose sibling LU solve and log|det| rule raised
    LinAlgError, in every mode and both backends.  Now singular_cofactors with a direction
    (the SVD: cof(U S Vh + tE) = det(U) det(Vh) U cof(S + t U^T E Vh^T) Vh, no singular-vector
    derivative, any rank), against exact Fractions."""
    X, V = sd.matrix("Xh", (None, None)), sd.matrix("Vh", (None, None))
    T, W = sd.tensor("Th", (2, None, None)), sd.tensor("Wh", (2, None, None))
    rng = _rng(3)
    kernels = {mode: _compiled_and_reference([X, V], sd.hvp(L.det(X), [X], [V], mode=mode))
               for mode in ("rev-rev", "fwd-rev")}
    for matrix in _SINGULAR_MATRICES:
        a = np.array(matrix, dtype=float)
        v = rng.integers(-3, 4, size=a.shape).astype(float)
        want = _exact_cofactor_tangent(a, v)
        tolerance = 64 * np.finfo(float).eps * max(1.0, np.max(np.abs(a))) ** (len(a) - 2) * np.max(np.abs(v)) * len(a)
        for mode, fs in kernels.items():
            for f in fs:
                (got,) = f(a, v)
                assert np.max(np.abs(got - want)) <= tolerance, (mode, f, matrix, got, want)
    # a batch with one singular element, each mode; and the full Hessian (static sizes)
    pair = np.array([[[1.0, 2.0, 3.0], [4.0, 5.0, 6.0], [7.0, 8.0, 9.0]], [[2.0, 1.0, 0.0], [1.0, 3.0, 1.0], [0.0, 1.0, 4.0]]])
    along = rng.normal(size=pair.shape)
    want = np.array([2 * _exact_cofactor_tangent(pair[k], along[k]) * (1 if k == 0 else -0.5) for k in range(2)])
    weighted = sd.sum(L.det(T) * sd.constant([2.0, -1.0]))
    for mode in ("rev-rev", "fwd-rev"):
        for f in _compiled_and_reference([T, W], sd.hvp(weighted, [T], [W], mode=mode)):
            np.testing.assert_allclose(f(pair, along)[0], want, rtol=0, atol=1e-13, err_msg=mode)
    S = sd.matrix("Sh", (3, 3))
    a = np.array(_SINGULAR_MATRICES[3], dtype=float)
    exact = np.array([[_exact_cofactor_tangent(a, np.eye(9)[i * 3 + j].reshape(3, 3)) for j in range(3)] for i in range(3)])
    for mode in ("fwd-rev", "rev-rev"):
        for f in _compiled_and_reference([S], [sd.hessian(L.det(S), S, mode=mode)]):
            np.testing.assert_allclose(f(a)[0], exact, rtol=0, atol=1e-13, err_msg=mode)


def test_bad_shapes_are_reported():
    with pytest.raises(sd.ShapeError, match="solve"):
        L.solve(sd.matrix("Q1", (2, 3)), sd.vector("q1", 2))
    with pytest.raises(sd.ShapeError, match="cholesky.*square"):
        L.cholesky(sd.matrix("Q2", (2, 3)))
    with pytest.raises(sd.ShapeError, match="at least 2 dimensions"):
        L.inv(sd.vector("q3", 3))
    with pytest.raises(sd.ShapeError, match="do not broadcast"):
        L.solve(sd.tensor("Q4", (2, 3, 3)), sd.tensor("q4", (4, 3, 1)))
    with pytest.raises(ValueError, match="Invalid norm order"):
        L.norm(sd.vector("q5", 3), "fro")
    with pytest.raises(TypeError, match="exponent must be an integer"):
        L.matrix_power(sd.matrix("Q6", (2, 2)), 1.5)
    with pytest.raises(sd.GradientError, match="full_matrices"):
        sd.grad(sd.sum(L.svd(sd.matrix("Q7", (3, 2)))[0]), sd.matrix("Q7", (3, 2)))
    X, v = sd.matrix("Q8", (None, None)), sd.vector("q8")
    for f in _compiled_and_reference([X, v], [L.solve(X, v)]):
        with pytest.raises(sd.ShapeError):
            f(np.eye(3), np.ones(2))
        with pytest.raises(sd.ShapeError):
            f(np.ones((2, 3)), np.ones(2))


def test_svd_vector_derivatives_of_a_rectangular_full_svd_fail_clearly_at_run_time():
    """With sizes None, full_matrices=True and a rectangular matrix, U's and Vh's rules failed at
    run time with a ShapeError about a product inside the rule ("mul at <the grad line>: sizes
    differ").  Now check_sizes raises the static case's GradientError, naming svd, the user's
    line, the run-time shape and the advice, in both backends; a square matrix is unaffected,
    and S (whose rule takes the reduced parts) has a gradient at any shape."""
    import inspect

    A = sd.matrix("Afull")
    U, S, Vh = L.svd(A)
    line = inspect.currentframe().f_lineno - 1
    tangent = sd.matrix("Tfull")
    outputs = [sd.grad(sd.sum(U), A), sd.grad(sd.sum(Vh * Vh[0]), A), sd.jvp(U, A, tangent)]
    pattern = (rf"svd at .*test_linalg.py:{line}: with full_matrices=True and a 4x3 matrix .*"
               r"use full_matrices=False")
    rng = _rng(41)
    a43, a33 = rng.normal(size=(4, 3)), rng.normal(size=(3, 3))
    for output in outputs:
        with pytest.raises(sd.GradientError, match=pattern):
            sd.evaluate(output, {A: a43, tangent: np.ones((4, 3))})
    functions = _compiled_and_reference([A, tangent], outputs)
    for f in functions:
        with pytest.raises(sd.GradientError, match=pattern):
            f(a43, np.ones((4, 3)))
    square = sd.matrix("Asq", (3, 3))
    Us, _, Vhs = L.svd(square)
    want = sd.evaluate([sd.grad(sd.sum(Us), square), sd.grad(sd.sum(Vhs * Vhs[0]), square),
                        sd.jvp(Us, square, np.ones((3, 3)))], {square: a33})
    for f in functions:
        for got, expected in zip(f(a33, np.ones((3, 3))), want):
            _close(got, expected, "square svd at run-time sizes")
    u, _, vh = np.linalg.svd(a43, full_matrices=False)
    singular_values = [sd.grad(sd.sum(S), A), sd.grad(sd.sum(L.svd(sd.matrix("A43", (4, 3)))[1]), sd.matrix("A43", (4, 3)))]
    for f in _compiled_and_reference([A], singular_values[:1]):
        _close(f(a43)[0], u @ vh, "grad of sum(S), full_matrices=True, sizes None")
    _close(sd.evaluate(singular_values[1], {"A43": a43}), u @ vh, "grad of sum(S), full_matrices=True, 4x3")


def test_factorisation_derivatives_of_empty_matrices_are_empty():
    """svd's U/Vh rules of a 0x3 or 3x0 matrix raised: with static sizes and full_matrices=True
    the rectangular refusal (a GradientError), though a size-0 input's derivative has no entries
    to choose; and in every other case the tie mask's max over no singular values (a ShapeError
    from inside the rule; eigh's V of a 0x0 matrix too).  Now the empty result, in both
    backends, reverse and forward.  With run-time sizes and full_matrices=True a 0x3 matrix
    gets the rectangular GradientError (the full rule's products need m == n at run time)."""
    for shape, static in (((0, 3), True), ((3, 0), True), ((0, 3), False), ((3, 0), False), ((0, 0), False)):
        M = sd.matrix("Me", shape if static else (None, None))
        a = np.zeros(shape)
        for full in (True, False) if static or shape == (0, 0) else (False,):
            parts = L.svd(M, full_matrices=full)
            outputs = [sd.grad(sd.sum(part * part), M) for part in parts] + [sd.jvp(part, M, M) for part in parts]
            for f in _compiled_and_reference([M], outputs):
                got = f(a)
                assert [x.shape for x in got] == [shape] * 3 + [np.shape(x) for x in np.linalg.svd(a, full_matrices=full)]
    M = sd.matrix("Mr", (None, None))
    for f in _compiled_and_reference([M], [sd.grad(sd.sum(L.svd(M)[2]), M)]):
        with pytest.raises(sd.GradientError, match="full_matrices=True and a 0x3 matrix"):
            f(np.zeros((0, 3)))
    w, v = L.eigh(M)
    for f in _compiled_and_reference([M], [sd.grad(sd.sum(v * v) + sd.sum(w), M), sd.jvp(v, M, M)]):
        assert [x.shape for x in f(np.zeros((0, 0)))] == [(0, 0), (0, 0)]


def test_integer_inputs_are_computed_in_float64():
    X = sd.matrix("Xi", (2, 2), dtype="int64")
    assert L.inv(X).dtype == "float64"
    _close(sd.evaluate(L.det(X), {X: np.array([[2, 1], [1, 3]])}), 5.0, "int det")


# -------------------------------------------------------- LAPACK and the fallback


def test_lapack_is_numpys_and_kernels_name_it():
    from symdiff.backends import lapack, runtime  # noqa: F401  (runtime first: it exports lapack's helpers)

    choice = lapack._find_numpy_lapack()
    assert choice is not None and choice.source == "numpy"
    assert lapack._choose_lapack("loops").source == "loops"
    X = sd.matrix("Xn", (None, None))
    assert lapack.HELPER_PREFIX + "cholesky(" in sd.function([X], [L.cholesky(X @ X.T)]).source


def test_pure_loop_fallback_matches_lapack():
    """The helpers kernels call when no LAPACK is found, against NumPy (up to the signs of
    eigen- and singular vectors, which only LAPACK's own algorithm fixes).  pinv and expm
    are the LAPACK versions' code over these helpers and the loop gemm."""
    from symdiff.backends import lapack, runtime  # noqa: F401

    rng = _rng(15)
    a = spd(rng, 5)
    out = np.empty_like(a)
    assert lapack._loops_cholesky(out, a) == 0
    _close(out, np.linalg.cholesky(a), "loops cholesky")
    g = rng.normal(size=(5, 5))
    lu, piv = g.copy(), np.empty(5, np.int64)
    info = lapack._loops_lu(lu, piv)
    rhs = rng.normal(size=(5, 2))
    for trans in (False, True):
        x = rhs.copy()
        lapack._loops_lu_solve(lu, piv, x, np.bool_(trans))
        _close(x, np.linalg.solve(g.T if trans else g, rhs), f"loops lu_solve trans={trans}")
    _close(lapack._loops_slogdet(lu, piv, info), np.linalg.slogdet(g), "loops slogdet")
    w, v = np.empty(5), np.empty((5, 5))
    lapack._loops_eigh(a - 3 * np.eye(5), w, v, np.bool_(True))
    a = a - 3 * np.eye(5)  # indefinite
    _close(w, np.linalg.eigvalsh(a), "loops eigh")
    _close((v * w) @ v.T, a, "loops eigh vectors")
    m = rng.normal(size=(6, 4))
    s, u, vh = np.empty(4), np.empty((6, 6)), np.empty((4, 4))
    lapack._loops_svd(m, s, u, vh, np.int64(2))
    _close(s, np.linalg.svdvals(m), "loops svd")
    _close((u[:, :4] * s) @ vh, m, "loops svd vectors")
    _close(u.T @ u, np.eye(6), "loops svd full U")
    q, r = np.empty((6, 4)), np.empty((4, 4))
    lapack._loops_qr(m, q, r, np.bool_(False), np.bool_(True))
    want_q, want_r = np.linalg.qr(m)
    _close(q, want_q, "loops qr Q (LAPACK's reflector signs)")
    _close(r, want_r, "loops qr R")
    t = np.tril(g) + 3 * np.eye(5)
    x = rhs.copy()
    lapack._loops_trisolve(t, x, np.bool_(True), np.bool_(True), np.bool_(False))
    _close(x, scipy_linalg.solve_triangular(t, rhs, lower=True, trans=1), "loops trisolve")


def test_a_factorisation_beside_a_copied_view_compiles():
    """The fuzzer's find: the copy-in loops of a triangular solve (in cholesky's gradient) were
    indexed c0, c1, the names of copies of views: with the transpose as node %1 its copy c1
    was also a loop index, and the kernel did not type."""
    A = sd.matrix("A", (None, 3))
    transposed = sd.transpose(A)  # built first: node %1 of the kernel
    S = sd.matrix("S")
    cost = sd.sum(sd.linalg.cholesky(S) ** 2 * sd.constant(np.arange(9.0).reshape(3, 3)))
    outputs = [transposed, cost, sd.grad(cost, S)]
    a, s = np.arange(6.0).reshape(2, 3), np.array([[4.0, 2.0, 0.0], [2.0, 5.0, 1.0], [0.0, 1.0, 3.0]])
    got = sd.function([A, S], outputs)(a, s)
    for g, w in zip(got, sd.evaluate(outputs, {A: a, S: s})):
        np.testing.assert_allclose(g, w, rtol=1e-12)
