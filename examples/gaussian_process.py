"""Gaussian-process regression: fit the hyperparameters by maximising the marginal
likelihood with L-BFGS-B on symdiff's compiled value and gradient, and compare with
scikit-learn's ``GaussianProcessRegressor`` (same kernel, same start, same optimiser).

The data: scikit-learn's diabetes set (442 rows, 10 features), standardised.  The model:

    k(x, x') = s * exp(-|x - x'|^2 / (2 l^2)) + n * [x == x']      (squared exponential + noise)
    -log p(y | X) = y^T K^-1 y / 2 + log det(K) / 2 + N log(2 pi) / 2

written as in Rasmussen and Williams' Algorithm 2.1, with NumPy's and SciPy's names:

    L = sd.linalg.cholesky(K)
    alpha = sd.linalg.cho_solve((L, True), y)
    nll = 0.5 * y @ alpha + sum(log(diagonal(L))) + N/2 log(2 pi)

over theta = log(l, s, n).  ``sd.grad`` differentiates through the Cholesky factor; the
compiled kernel factors K once per call for the value and the gradient, and the
gradient needs two triangular solves with n x n right-hand sides (the log-determinant's
K^-1) and O(n^2) more for the data term (``cho_solve``'s own rule).

scikit-learn's ``ConstantKernel(s) * RBF(l) + WhiteKernel(n)`` is the same kernel; its
hyperparameters are ordered (s, l, n); both fits start from s = l = n = 1 and use
L-BFGS-B with sklearn's bounds, 1e-5..1e5 on every hyperparameter.

    pip install -e '.[examples]'           # scikit-learn and SciPy
    python examples/gaussian_process.py    # all 442 rows
    python examples/gaussian_process.py --rows 200 --backend numpy
"""

from __future__ import annotations

import argparse
import time

import numpy as np
try:
    import sklearn  # noqa: F401  (checked here: the comparison needs it)
    from scipy.optimize import minimize
except ImportError:  # the example's extra: name it instead of a bare ModuleNotFoundError
    raise SystemExit("gaussian_process.py fits with SciPy's L-BFGS-B and compares with scikit-learn: "
                     "install the examples extra, pip install 'symdiff[examples]'") from None

import symdiff as sd

BOUNDS = (1e-5, 1e5)  # scikit-learn's default bounds for each of the three hyperparameters


def negative_log_marginal_likelihood(X, y, theta):
    """-log p(y | X, theta) for the squared-exponential kernel plus white noise."""
    lengthscale, signal, noise = sd.exp(theta[0]), sd.exp(theta[1]), sd.exp(theta[2])
    sq = sd.sum(X * X, axis=1)
    d2 = sd.maximum(sq[:, None] + sq[None, :] - 2 * (X @ X.T), 0.0)  # squared distances, never below 0
    K = signal * sd.exp(-0.5 * d2 / lengthscale ** 2) + noise * sd.eye(X.shape[0])
    L = sd.linalg.cholesky(K)
    alpha = sd.linalg.cho_solve((L, True), y)
    return 0.5 * (y @ alpha) + sd.sum(sd.log(sd.linalg.diagonal(L))) + 0.5 * X.shape[0] * np.log(2 * np.pi)


def build(features: int, backend: str):
    """The compiled value and gradient, a function of (X, y, theta); rows are run-time."""
    X, y, theta = sd.matrix("X", (None, features)), sd.vector("y"), sd.vector("theta", 3)
    nll = negative_log_marginal_likelihood(X, y, theta)
    return sd.function([X, y, theta], [nll, sd.grad(nll, theta)], backend=backend)


def load(rows: int | None):
    from sklearn.datasets import load_diabetes

    X, y = load_diabetes(return_X_y=True)
    if rows is not None:
        X, y = X[:rows], y[:rows]
    X = (X - X.mean(axis=0)) / X.std(axis=0)
    y = (y - y.mean()) / y.std()
    return X, y


def fit_symdiff(X, y, backend: str):
    start = time.perf_counter()
    value_and_grad = build(X.shape[1], backend)
    compiled = time.perf_counter() - start
    calls = 0

    def fun(theta):
        nonlocal calls
        calls += 1
        value, gradient = value_and_grad(X, y, theta)
        return float(value), np.asarray(gradient)

    fun(np.zeros(3))  # the first call of a freshly compiled kernel: not part of the fit
    calls = 0
    start = time.perf_counter()
    result = minimize(fun, np.zeros(3), jac=True, method="L-BFGS-B", bounds=[tuple(np.log(BOUNDS))] * 3)
    seconds = time.perf_counter() - start
    lengthscale, signal, noise = np.exp(result.x)
    return {"lengthscale": lengthscale, "signal": signal, "noise": noise, "nll": result.fun, "seconds": seconds,
            "compile_seconds": compiled, "evaluations": calls, "message": result.message}


def fit_sklearn(X, y):
    from sklearn.gaussian_process import GaussianProcessRegressor
    from sklearn.gaussian_process.kernels import RBF, ConstantKernel, WhiteKernel

    kernel = (ConstantKernel(1.0, constant_value_bounds=BOUNDS) * RBF(1.0, length_scale_bounds=BOUNDS)
              + WhiteKernel(1.0, noise_level_bounds=BOUNDS))
    gp = GaussianProcessRegressor(kernel, alpha=0.0, optimizer="fmin_l_bfgs_b", n_restarts_optimizer=0)
    start = time.perf_counter()
    gp.fit(X, y)
    seconds = time.perf_counter() - start
    params = gp.kernel_.get_params()
    return {"lengthscale": params["k1__k2__length_scale"], "signal": params["k1__k1__constant_value"],
            "noise": params["k2__noise_level"], "nll": -gp.log_marginal_likelihood_value_, "seconds": seconds}


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=None, help="use the first ROWS rows (default: all 442)")
    parser.add_argument("--backend", choices=("numba", "numpy"), default="numba")
    args = parser.parse_args(argv)
    X, y = load(args.rows)
    ours = fit_symdiff(X, y, args.backend)
    theirs = fit_sklearn(X, y)
    print(f"diabetes: {X.shape[0]} rows, {X.shape[1]} features, standardised")
    print(f"{'':22}{'lengthscale':>12}{'signal':>12}{'noise':>12}{'-log p(y|X)':>16}{'seconds':>10}")
    for name, r in (("symdiff " + args.backend, ours), ("scikit-learn", theirs)):
        print(f"{name:22}{r['lengthscale']:12.6f}{r['signal']:12.6f}{r['noise']:12.6f}{r['nll']:16.8f}"
              f"{r['seconds']:10.3f}")
    print(f"symdiff: {ours['evaluations']} value+gradient evaluations, kernel built in "
          f"{ours['compile_seconds']:.2f} s (once; cached on disk for the next run); {ours['message']}")
    gap = ours["nll"] - theirs["nll"]
    print(f"difference of the optima: {gap:+.2e} in -log p(y|X)")
    return {"symdiff": ours, "sklearn": theirs}


if __name__ == "__main__":
    main()
