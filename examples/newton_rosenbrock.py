"""Newton-type optimisation with SciPy, derivatives from compiled symdiff functions.

Minimises the chained Rosenbrock function
    f(x) = sum(100 * (x[1:] - x[:-1]**2)**2 + (1 - x[:-1])**2),   minimum f(1, ..., 1) = 0,
for n = 1000 from a random start, with ``scipy.optimize.minimize``:

- trust-ncg and Newton-CG with ``jac=`` (value and gradient from one compiled
  function) and ``hessp=`` (a compiled forward-over-reverse Hessian-vector product);
- trust-ncg with Hessian-vector products by finite differences of the gradient;
- L-BFGS-B and BFGS with the same gradient, and BFGS with finite-difference
  gradients (SciPy's default when ``jac`` is not given).

Dense BFGS updates an n x n matrix with O(n^3) work per iteration, and a
finite-difference gradient costs n function calls, so those two runs stop after a
time budget (``--budget`` seconds) and report where they got to.

    pip install -e '.[examples]'          # SciPy
    python examples/newton_rosenbrock.py [--n 1000] [--budget 1.0] [--backend numba|numpy]
"""

import argparse
import sys
import time

import numpy as np

import symdiff as sd

try:
    import scipy.optimize
except ImportError:  # the example's extra: name it instead of a bare ModuleNotFoundError
    sys.exit("newton_rosenbrock.py runs SciPy's optimizers: install the examples extra, "
             "pip install 'symdiff[examples]' (or pip install scipy)")


def build(n, backend="numba"):
    """Compiled value+gradient, value, and Hessian-vector product of Rosenbrock in n variables."""
    x, v = sd.vector("x", n), sd.vector("v", n)
    cost = sd.sum(100 * (x[1:] - x[:-1] ** 2) ** 2 + (1 - x[:-1]) ** 2)
    gradient = sd.grad(cost, x)
    hessian_times_v = sd.hvp(cost, x, v, mode="fwd-rev")
    value_and_grad = sd.function([x], [cost, gradient], backend=backend)
    value = sd.function([x], cost, backend=backend)
    hessp = sd.function([x, v], hessian_times_v, backend=backend)
    return value_and_grad, value, hessp


class Budget:
    """A ``minimize`` callback that stops the run after ``seconds`` of wall time."""

    def __init__(self, seconds):
        self.seconds = seconds
        self.start = time.perf_counter()

    def __call__(self, xk):
        if time.perf_counter() - self.start > self.seconds:
            raise StopIteration


def minimize(label, derivatives, fun, x0, budget=None, **options):
    start = time.perf_counter()
    callback = Budget(budget) if budget is not None else None
    result = scipy.optimize.minimize(fun, x0, callback=callback, **options)
    seconds = time.perf_counter() - start
    error = float(np.abs(result.x - 1).max())
    row = {"method": label, "derivatives": derivatives, "iterations": int(result.nit), "fevals": int(result.nfev),
           "seconds": seconds, "f": float(result.fun), "error": error, "converged": bool(result.success)}
    stopped = "" if budget is None or result.success else f"  (stopped after {budget:g} s)"
    print(f"{label:<10} {derivatives:<34} {row['iterations']:>6} {row['fevals']:>7} {seconds:>8.3f} "
          f"{row['f']:>10.2e} {error:>10.2e}{stopped}")
    return row


def main(n=1000, budget=1.0, backend="numba"):
    value_and_grad, value, hessp = build(n, backend)
    x0 = np.random.default_rng(0).uniform(-0.5, 2.0, n)
    value_and_grad(x0), hessp(x0, x0)  # compile (if compiled) before timing

    def finite_difference_hessp(x, v, step=1e-7):
        return (value_and_grad(x + step * v)[1] - value_and_grad(x)[1]) / step

    print(f"Rosenbrock, n = {n}, start uniform(-0.5, 2.0); backend: {value_and_grad.backend}")
    print(f"{'method':<10} {'derivatives':<34} {'iters':>6} {'f evals':>7} {'wall s':>8} {'f(x)':>10} {'max|x-1|':>10}")
    rows = [
        minimize("trust-ncg", "symdiff gradient + HVP (fwd-rev)", value_and_grad, x0, method="trust-ncg",
                 jac=True, hessp=hessp),
        minimize("Newton-CG", "symdiff gradient + HVP (fwd-rev)", value_and_grad, x0, method="Newton-CG",
                 jac=True, hessp=hessp, options={"xtol": 1e-10}),
        minimize("trust-ncg", "symdiff gradient, finite-diff HVP", value_and_grad, x0, method="trust-ncg",
                 jac=True, hessp=finite_difference_hessp),
        # ftol: SciPy 1.17's L-BFGS-B stops on the relative reduction of f (2.2e-9 by default)
        # at max|x - 1| = 1e-3 here; the gradient test (gtol) should decide
        minimize("L-BFGS-B", "symdiff gradient", value_and_grad, x0, method="L-BFGS-B", jac=True,
                 options={"maxiter": 20000, "maxfun": 40000, "gtol": 1e-8, "ftol": 1e-15}),
        minimize("BFGS", "symdiff gradient", value_and_grad, x0, budget=budget, method="BFGS", jac=True),
        minimize("BFGS", "finite-difference gradient", value, x0, budget=budget, method="BFGS"),
    ]
    return rows


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--budget", type=float, default=1.0, help="seconds for each BFGS run")
    parser.add_argument("--backend", default="numba", choices=["numba", "numpy"])
    args = parser.parse_args()
    main(args.n, args.budget, args.backend)
