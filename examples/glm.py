"""Generalised linear models fitted by SciPy's trust-ncg on symdiff's compiled value, gradient and HVP.

Two losses, written as a NumPy user writes them, and checked against scikit-learn:

* Poisson regression with its full likelihood, gammaln included:
      mean(exp(eta) - y * eta + gammaln(y + 1)),  eta = X @ w + b,  y int64 counts;
  against ``PoissonRegressor(alpha=0)`` (whose half Poisson deviance differs from this
  by a constant, so both have the same minimiser).
* Multinomial logistic regression on scikit-learn's digits with integer labels:
      -mean(log_softmax(X @ W + b, axis=1)[arange(n), y]) + 0.5 * sum(W**2) / (C * n);
  against ``LogisticRegression(C=C)``, which minimises exactly this: its L2 penalty is
  0.5 * ||W||^2 / C added to the SUM of the log-losses (divide by n: the line above), and
  its intercept is not penalised.

scikit-learn fits with its ``newton-cholesky`` solver at ``tol=1e-10`` by default: its
gradients end near 1e-14, where ``lbfgs`` stops near 1e-8 (on the objective's relative
change), so the coefficients' differences printed measure symdiff's fit, not sklearn's.

Every size is ``None`` (``sd.matrix("X")``), so the one compiled kernel per function
serves the training set, the test set and any other batch.  SciPy sees one flat
parameter vector: ``fun`` returns the value and gradient (``jac=True``), ``hessp`` the
Hessian-vector product from ``sd.hvp``.

    pip install -e '.[examples]'      # scikit-learn and SciPy
    python examples/glm.py            # 20000 Poisson rows, all the digits
    python examples/glm.py --quick    # smaller Poisson data, half the digits
"""

from __future__ import annotations

import argparse
import time

import numpy as np
try:
    import sklearn  # noqa: F401  (checked here: the comparison needs it)
    from scipy.optimize import minimize
except ImportError:  # the example's extra: name it instead of a bare ModuleNotFoundError
    raise SystemExit("glm.py fits with SciPy's optimizers and compares with scikit-learn: install the examples extra, "
                     "pip install 'symdiff[examples]'") from None

import symdiff as sd


class FlatObjective:
    """A scalar loss over several parameter arrays, compiled for ``scipy.optimize.minimize``.

    Two functions: value and gradients, and the Hessian-vector product; SciPy's side
    sees one flat vector, cut into the parameters' shapes (known once data arrive).
    """

    def __init__(self, loss, params, data, backend="numba"):
        directions = [sd.tensor(f"d_{p.name}", p.type.shape, p.dtype) for p in params]
        self.params, self.data = list(params), list(data)
        self.value_and_grad = sd.function(self.params + self.data, [loss, *sd.grad(loss, self.params)],
                                          backend=backend)
        self.hvp = sd.function(self.params + self.data + directions, sd.hvp(loss, self.params, directions),
                               backend=backend)

    def bind(self, shapes, *data):
        """``fun(theta) -> (value, gradient)`` and ``hessp(theta, v)`` over the given data."""
        sizes = [int(np.prod(s)) for s in shapes]
        cuts = np.cumsum(sizes)[:-1]

        def unflatten(theta):
            return [part.reshape(s) for part, s in zip(np.split(theta, cuts), shapes)]

        def flatten(arrays):
            return np.concatenate([np.ravel(a) for a in arrays])

        def fun(theta):
            value, *grads = self.value_and_grad(*unflatten(theta), *data)
            return float(value), flatten(grads)

        def hessp(theta, v):
            return flatten(self.hvp(*unflatten(theta), *data, *unflatten(v)))

        return fun, hessp, unflatten, sum(sizes)


def fit(objective, shapes, data, gtol):
    """trust-ncg from zeros; the fitted parameters, SciPy's result and the wall time."""
    fun, hessp, unflatten, size = objective.bind(shapes, *data)
    start = time.perf_counter()
    result = minimize(fun, np.zeros(size), jac=True, hessp=hessp, method="trust-ncg",
                      options={"gtol": gtol, "maxiter": 1000})
    seconds = time.perf_counter() - start
    if not result.success:
        raise RuntimeError(f"trust-ncg did not converge: {result.message}")
    return unflatten(result.x), result, seconds


def agreement(label, ours, theirs):
    """Print and return the max abs difference, absolute and relative to the largest coefficient."""
    diff = float(np.max(np.abs(ours - theirs)))
    relative = diff / float(np.max(np.abs(theirs)))
    print(f"{label}: max |symdiff - sklearn| = {diff:.3e} (relative {relative:.3e})")
    return diff, relative


# ---------------------------------------------------------------------------- Poisson regression

def poisson_loss():
    """The average Poisson negative log-likelihood over int64 counts y; parameters w, b."""
    X = sd.matrix("X")
    y = sd.vector("y", dtype="int64")
    w, b = sd.vector("w"), sd.scalar("b")
    eta = X @ w + b
    loss = sd.mean(sd.exp(eta) - y * eta + sd.special.gammaln(y + 1))
    return loss, [w, b], [X, y]


def poisson_data(rows, features, seed):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((rows, features))
    true_w = rng.uniform(-0.5, 0.5, features) / np.sqrt(features)
    y = rng.poisson(np.exp(X @ true_w + 0.7))  # int64 counts
    return X, y


def run_poisson(rows, features, seed, backend, gtol, solver, sk_tol):
    from scipy.stats import poisson
    from sklearn.linear_model import PoissonRegressor

    X, y = poisson_data(rows, features, seed)
    print(f"Poisson regression: {rows} rows x {features} features, counts 0..{y.max()}")
    start = time.perf_counter()
    objective = FlatObjective(*poisson_loss(), backend=backend)
    objective.value_and_grad(np.zeros(features), 0.0, X[:2], y[:2])
    objective.hvp(np.zeros(features), 0.0, X[:2], y[:2], np.zeros(features), 0.0)
    print(f"  functions built and first calls done: {time.perf_counter() - start:.2f} s")

    (w, b), result, seconds = fit(objective, [(features,), ()], (X, y), gtol)
    print(f"  symdiff + trust-ncg: {seconds * 1e3:.1f} ms, {result.nit} iterations, "
          f"{result.nfev} value+gradient and {result.nhev} HVP calls")

    start = time.perf_counter()
    model = PoissonRegressor(alpha=0.0, solver=solver, tol=sk_tol, max_iter=10000).fit(X, y)
    sk_seconds = time.perf_counter() - start
    print(f"  sklearn PoissonRegressor(alpha=0, solver={solver!r}): {sk_seconds * 1e3:.1f} ms, "
          f"{model.n_iter_} iterations")

    ours = np.concatenate([w, [b]])
    theirs = np.concatenate([model.coef_, [model.intercept_]])
    diff, relative = agreement("  coefficients and intercept", ours, theirs)
    value_ours = objective.value_and_grad(w, b, X, y)[0]
    value_theirs = objective.value_and_grad(model.coef_, model.intercept_, X, y)[0]
    # An independent spelling of the same likelihood (SciPy's pmf), at sklearn's fit.
    scipy_value = -np.mean(poisson.logpmf(y, np.exp(X @ model.coef_ + model.intercept_)))
    print(f"  mean negative log-likelihood: symdiff's fit {value_ours:.16g}, sklearn's fit {value_theirs:.16g} "
          f"(difference {value_ours - value_theirs:.1e}; scipy.stats.poisson at sklearn's fit {scipy_value:.16g})")
    return {"coef_diff": diff, "coef_relative": relative, "objective": float(value_ours),
            "sklearn_objective": float(value_theirs), "scipy_objective": float(scipy_value),
            "seconds": seconds, "sklearn_seconds": sk_seconds}


# ---------------------------------------------------------------- multinomial logistic regression

def multinomial_loss(C):
    """Mean cross-entropy of softmax(X @ W + b) at int64 labels y, plus sklearn's L2 penalty."""
    X = sd.matrix("X")
    y = sd.vector("y", dtype="int64")
    W, b = sd.matrix("W"), sd.vector("b")
    n = X.shape[0]
    log_probs = sd.log_softmax(X @ W + b, axis=1)
    loss = -sd.mean(log_probs[sd.arange(n), y]) + 0.5 * sd.sum(W ** 2) / (C * n)
    return loss, [W, b], [X, y]


def digits_data(fraction, seed):
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    X, y = digits.data / 16.0, digits.target.astype(np.int64)
    if fraction < 1.0:
        X, _, y, _ = train_test_split(X, y, train_size=fraction, random_state=seed, stratify=y)
    return train_test_split(X, y, test_size=0.25, random_state=seed, stratify=y)


def run_multinomial(C, fraction, seed, backend, gtol, solver, sk_tol):
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import log_loss

    X_train, X_test, y_train, y_test = digits_data(fraction, seed)
    features, classes = X_train.shape[1], int(y_train.max()) + 1
    print(f"\nMultinomial logistic regression on the digits: {len(X_train)} training and {len(X_test)} test rows, "
          f"{features} features, {classes} classes, C = {C}")
    loss, params, data = multinomial_loss(C)
    start = time.perf_counter()
    objective = FlatObjective(loss, params, data, backend=backend)
    W0, b0 = np.zeros((features, classes)), np.zeros(classes)
    objective.value_and_grad(W0, b0, X_train[:2], y_train[:2])
    objective.hvp(W0, b0, X_train[:2], y_train[:2], W0, b0)
    print(f"  functions built and first calls done: {time.perf_counter() - start:.2f} s")

    (W, b), result, seconds = fit(objective, [(features, classes), (classes,)], (X_train, y_train), gtol)
    print(f"  symdiff + trust-ncg: {seconds * 1e3:.1f} ms, {result.nit} iterations, "
          f"{result.nfev} value+gradient and {result.nhev} HVP calls")

    start = time.perf_counter()
    model = LogisticRegression(C=C, solver=solver, tol=sk_tol, max_iter=10000).fit(X_train, y_train)
    sk_seconds = time.perf_counter() - start
    print(f"  sklearn LogisticRegression(C={C}, solver={solver!r}): {sk_seconds * 1e3:.1f} ms, "
          f"{int(model.n_iter_[0])} iterations")

    # The loss is unchanged when every class's intercept moves by the same amount and the
    # intercept is not penalised: compare the centred intercepts.
    diff_W, relative_W = agreement("  coefficients W", W, model.coef_.T)
    diff_b, relative_b = agreement("  centred intercepts", b - b.mean(), model.intercept_ - model.intercept_.mean())
    value_ours = objective.value_and_grad(W, b, X_train, y_train)[0]
    value_theirs = objective.value_and_grad(model.coef_.T, model.intercept_, X_train, y_train)[0]
    # sklearn's own spelling of its objective, at its fit: log_loss (a mean) + 0.5 ||W||^2 / (C n).
    sklearn_value = (log_loss(y_train, model.predict_proba(X_train))
                     + 0.5 * np.sum(model.coef_ ** 2) / (C * len(X_train)))
    print(f"  objective: symdiff's fit {value_ours:.16g}, sklearn's fit {value_theirs:.16g} "
          f"(difference {value_ours - value_theirs:.1e}; sklearn's log_loss + penalty at its fit {sklearn_value:.16g})")

    accuracy = float(np.mean(np.argmax(X_test @ W + b, axis=1) == y_test))
    sk_accuracy = float(model.score(X_test, y_test))
    print(f"  test accuracy: symdiff {accuracy:.4f}, sklearn {sk_accuracy:.4f}")
    return {"coef_diff": diff_W, "coef_relative": relative_W, "intercept_diff": diff_b,
            "intercept_relative": relative_b, "objective": float(value_ours),
            "sklearn_objective": float(value_theirs), "sklearn_own_objective": float(sklearn_value),
            "accuracy": accuracy, "sklearn_accuracy": sk_accuracy, "seconds": seconds, "sklearn_seconds": sk_seconds}


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="2000 Poisson rows and half the digits")
    parser.add_argument("--backend", default="numba", choices=("numba", "numpy"))
    parser.add_argument("--C", type=float, default=1.0, help="LogisticRegression's inverse penalty strength")
    parser.add_argument("--sklearn-solver", default="newton-cholesky",
                        choices=("newton-cholesky", "lbfgs", "newton-cg"),
                        help="scikit-learn's solver; newton-cholesky stops at gradients near 1e-14, lbfgs near 1e-8")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    rows, features, fraction = (2000, 5, 0.5) if args.quick else (20000, 10, 1.0)
    # Both sides stop on the gradient of the same averaged objective.  A gradient norm of
    # 1e-10 is about as far as trust-ncg gets: smaller steps change the objective (~0.2)
    # below its rounding, and it stops predicting improvement.
    solver = args.sklearn_solver
    poisson_result = run_poisson(rows, features, args.seed, args.backend, 1e-10, solver, sk_tol=1e-10)
    multinomial_result = run_multinomial(args.C, fraction, args.seed, args.backend, 1e-10, solver, sk_tol=1e-10)
    return {"poisson": poisson_result, "multinomial": multinomial_result}


if __name__ == "__main__":
    main()
