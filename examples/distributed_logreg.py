"""Fit a logistic regression on rows that live on Dask workers, with sd.distributed and L-BFGS-B.

The rows are generated on the workers (``dask.array.random``) and never come to
this process: each evaluation of the loss and its gradient sends the 21
parameters to the workers, runs the compiled kernel over the blocks each one
holds, and adds up the block results.

    python examples/distributed_logreg.py                 # 10M rows x 20 features, 16 blocks
    python examples/distributed_logreg.py --rows 200000   # a quick run

It prints one progress line per evaluation, the time per evaluation, and the
fitted coefficients next to the true ones.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
try:
    import dask.array  # noqa: F401  (checked here: make_data and the cluster need it)
    from scipy.optimize import minimize
except ImportError:  # the example's extra: name it instead of a bare ModuleNotFoundError
    raise SystemExit("distributed_logreg.py fits with SciPy's L-BFGS-B on a Dask cluster: install the extras, "
                     "pip install 'symdiff[distributed,examples]'") from None

import symdiff as sd


def make_data(rows: int, features: int, blocks: int, seed: int):
    """Dask arrays X (rows x features) and y (0/1), drawn from a known logistic model."""
    import dask.array as da

    rng = da.random.default_rng(seed)
    chunk = -(-rows // blocks)
    true_w = np.linspace(-1.0, 1.0, features)
    true_b = 0.5
    X = rng.standard_normal((rows, features), chunks=(chunk, features))
    p = 1.0 / (1.0 + da.exp(-(X @ true_w + true_b)))
    y = (rng.random(rows, chunks=chunk) < p).astype(np.float64)
    return X, y, true_w, true_b


def main(argv=None, client=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--features", type=int, default=20)
    parser.add_argument("--blocks", type=int, default=16)
    parser.add_argument("--workers", type=int, default=2, help="LocalCluster workers (when no client is given)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    w, b = sd.vector("w", args.features), sd.scalar("b")
    X, y = sd.matrix("X", (None, args.features)), sd.vector("y")
    z = X @ w + b
    loss = sd.sum(sd.softplus(z) - y * z)  # the negative log-likelihood, one term per row

    X_data, y_data, true_w, true_b = make_data(args.rows, args.features, args.blocks, args.seed)
    start = time.perf_counter()
    with sd.distributed.Objective(loss, [w, b], {X: X_data, y: y_data}, client=client, reduce="mean",
                                  n_workers=args.workers, local_below=0, progress=True) as objective:
        print(f"setup (rows generated and persisted on the workers; meanwhile the kernel compiled or loaded here "
              f"and loaded on the workers): {time.perf_counter() - start:.2f} s; {objective}")
        x0 = objective.flatten([np.zeros(args.features), 0.0])
        start = time.perf_counter()
        result = minimize(objective.fun, x0, jac=True, method="L-BFGS-B", options={"gtol": 1e-8})
        seconds = time.perf_counter() - start
        fitted_w, fitted_b = objective.unflatten(result.x)
        first, *rest = objective.timings
        later = [t[1] for t in rest] or [first[1]]
        kernels = [t[2] for t in rest] or [first[2]]
        print(f"\n{result.message} after {objective.evaluations} evaluations in {seconds:.2f} s.\n"
              f"The first evaluation took {first[1]:.2f} s, the others {1e3 * np.median(later):.1f} ms each "
              f"(median), of which the slowest worker's kernels {1e3 * np.median(kernels):.1f} ms")
    print(f"\n{'coefficient':>12} {'fitted':>10} {'true':>10}")
    for k in range(args.features):
        print(f"{'w[%d]' % k:>12} {fitted_w[k]:10.4f} {true_w[k]:10.4f}")
    print(f"{'b':>12} {float(fitted_b):10.4f} {true_b:10.4f}")
    return result, np.append(fitted_w, fitted_b), np.append(true_w, true_b)


if __name__ == "__main__":  # LocalCluster starts worker processes: keep the script importable
    main()
