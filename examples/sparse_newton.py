"""Newton's method with a sparse Hessian: Rosenbrock in 100,000 variables.

``sd.hessian(cost, x, sparse=True)`` finds the Hessian's pattern from the graph
(tridiagonal here), star-colours it (3 colours), and builds one Hessian-vector
product per colour: 3 sweeps instead of n.  Each Newton step compiles nothing new:
it evaluates the compiled compressed sweeps, assembles a ``scipy.sparse`` matrix
and solves with ``scipy.sparse.linalg.spsolve``.  Far from the minimum the
Hessian of Rosenbrock is indefinite, so the step solves (H + lambda I) d = -g and
adapts lambda (Levenberg-Marquardt damping): lambda shrinks after a step that
lowers f, grows after one that does not, and the iteration becomes Newton's.

    pip install -e '.[examples]'          # SciPy
    python examples/sparse_newton.py [--n 100000] [--backend numba|numpy]
"""

import argparse
import sys
import time

import numpy as np

import symdiff as sd

try:
    import scipy.sparse
    import scipy.sparse.linalg
except ImportError:  # the example's extra: name it instead of a bare ModuleNotFoundError
    sys.exit("sparse_newton.py solves with scipy.sparse: install the examples extra, "
             "pip install 'symdiff[examples]' (or pip install scipy)")


def damped_newton(value_and_grad, sparse_hessian, compressed, x, tol=1e-8, max_iterations=200):
    """Minimise from ``x``; returns (x, f, iterations, sparse solves)."""
    n = x.size
    identity = scipy.sparse.identity(n, format="csc")
    damping = 1e-3
    f, g = value_and_grad(x)
    iterations = solves = 0
    while np.abs(g).max() > tol and iterations < max_iterations:
        iterations += 1
        H = sparse_hessian.assemble(compressed(x), format="scipy").tocsc()
        while True:
            solves += 1
            # a minimum-degree ordering for a symmetric pattern (COLAMD, the default, is for general ones)
            step = scipy.sparse.linalg.spsolve(H + damping * identity, -g, permc_spec="MMD_AT_PLUS_A")
            f_new, g_new = value_and_grad(x + step)
            if f_new < f:
                x, f, g = x + step, f_new, g_new
                damping = max(damping / 3, 1e-12)
                break
            damping *= 4
    return x, f, iterations, solves


def main(n=100_000, backend="numba"):
    start = time.perf_counter()
    x = sd.vector("x", n)
    cost = sd.sum(100 * (x[1:] - x[:-1] ** 2) ** 2 + (1 - x[:-1]) ** 2)
    gradient = sd.grad(cost, x)
    hessian = sd.hessian(cost, x, sparse=True)
    built = time.perf_counter()
    value_and_grad = sd.function([x], [cost, gradient], backend=backend)
    compressed = sd.function([x], hessian.compressed, backend=backend)
    x0 = np.random.default_rng(0).uniform(0.5, 1.5, n)
    value_and_grad(x0), compressed(x0)  # compile before timing
    compiled = time.perf_counter()
    print(f"Rosenbrock, n = {n}; backend: {value_and_grad.backend}")
    print(f"Hessian pattern: {hessian.pattern.nnz} nonzeros, {hessian.n_colors} colours "
          f"-> {hessian.n_colors} Hessian-vector products per Hessian (instead of {n})")
    print(f"pattern + colouring + graph: {built - start:.2f} s; compile: {compiled - built:.2f} s")
    solution, f, iterations, solves = damped_newton(value_and_grad, hessian, compressed, x0)
    solved = time.perf_counter()
    error = float(np.abs(solution - 1).max())
    print(f"damped Newton: {iterations} iterations, {solves} sparse solves, {solved - compiled:.2f} s; "
          f"f = {f:.2e}, max|x - 1| = {error:.2e}")
    return {"n_colors": hessian.n_colors, "iterations": iterations, "f": float(f), "error": error}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--backend", default="numba", choices=["numba", "numpy"])
    args = parser.parse_args()
    main(args.n, args.backend)
