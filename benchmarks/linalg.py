"""Linear algebra (issue 11's targets), one run, interleaved medians (and minima).

1. ``solve`` (one right-hand side) and ``cholesky`` at n = 500: symdiff's compiled kernel
   against ``np.linalg`` on the same inputs.  Target: within 1.2x.
2. Gaussian-process negative log marginal likelihood (squared-exponential kernel, three
   hyperparameters, n = 1000 points in 3-d): compiled value+gradient against the value
   alone (target 1.3x; see the note printed below the table), against JAX's jit of the same
   function if JAX is installed, and scikit-learn's ``log_marginal_likelihood``.
3. The same at n = 50: the compiled call's time above its LAPACK work (the same LAPACK
   helpers called back to back from one jitted function).  Target: at most 5 us.

The machine is shared: each pair is measured alternately (A, B, A, B, ...) and both the
median and the minimum of the repeats are printed; CPU time per call (all threads) is
printed beside the wall clock for the n = 1000 rows.

Run: python benchmarks/linalg.py [--quick]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import symdiff as sd  # noqa: E402
from timing import FULL, QUICK, measure  # noqa: E402


def interleaved(calls: dict, settings, rounds: int) -> dict:
    """{name: (median s, min s, cpu median s)} over ``rounds`` alternating measurements."""
    results = {name: [] for name in calls}
    for _ in range(rounds):
        for name, (fn, args) in calls.items():
            results[name].append(measure(fn, args, settings))
    out = {}
    for name, runs in results.items():
        cpu = [r["cpu_median_s"] for r in runs if r["cpu_median_s"] is not None]
        out[name] = (statistics.median(r["median_s"] for r in runs), min(r["min_s"] for r in runs),
                     statistics.median(cpu) if cpu else float("nan"))
    return out


def gp_nll(X, y, theta, ops):
    """The likelihood in either vocabulary: ``ops`` is (module, linalg, scipy-like linalg)."""
    m, linalg, scipy_linalg = ops
    lengthscale, signal, noise = m.exp(theta[0]), m.exp(theta[1]), m.exp(theta[2])
    sq = m.sum(X * X, axis=1)
    d2 = m.maximum(sq[:, None] + sq[None, :] - 2 * (X @ X.T), 0.0)
    K = signal * m.exp(-0.5 * d2 / lengthscale ** 2) + noise * m.eye(X.shape[0])
    L = linalg.cholesky(K)
    alpha = scipy_linalg.cho_solve((L, True), y)
    return 0.5 * (y @ alpha) + m.sum(m.log(m.diagonal(L))) + 0.5 * X.shape[0] * np.log(2 * np.pi)


def gp_data(n, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.uniform(-2, 2, size=(n, 3))
    y = np.sin(X.sum(axis=1)) + 0.1 * rng.normal(size=n)
    return X, y, np.log(np.array([1.0, 1.0, 0.1]))


def symdiff_gp():
    X, y, theta = sd.matrix("X", (None, 3)), sd.vector("y"), sd.vector("theta", 3)
    nll = gp_nll(X, y, theta, (sd, sd.linalg, sd.linalg))
    value = sd.function([X, y, theta], nll)
    value_and_grad = sd.function([X, y, theta], [nll, sd.grad(nll, theta)])
    return value, value_and_grad


def jax_gp():
    try:
        import jax
        import jax.numpy as jnp
        import jax.scipy.linalg as jsl
    except ImportError:
        return None
    jax.config.update("jax_enable_x64", True)

    class Ops:
        exp, sum, maximum, eye, log, diagonal = jnp.exp, jnp.sum, jnp.maximum, jnp.eye, jnp.log, jnp.diagonal

    def nll(theta, X, y):
        return gp_nll(X, y, theta, (Ops, jnp.linalg, jsl))

    value = jax.jit(nll)
    value_and_grad = jax.jit(jax.value_and_grad(nll))

    def blocking(fn):
        def call(X, y, theta):
            return jax.block_until_ready(fn(theta, X, y))
        return call

    return blocking(value), blocking(value_and_grad), jax.__version__


def lapack_work(n):
    """A jitted function calling the LAPACK helpers of the GP's value+gradient kernel (one
    Cholesky, two Cholesky solves, one Cholesky inverse) on preallocated arrays."""
    from numba import njit

    from symdiff.backends import runtime  # noqa: F401  (exports lapack's helpers)
    from symdiff.backends import lapack

    cholesky = getattr(lapack, lapack.HELPER_PREFIX + "cholesky")
    cho_solve = getattr(lapack, lapack.HELPER_PREFIX + "cho_solve")
    cho_inverse = getattr(lapack, lapack.HELPER_PREFIX + "cho_inverse")

    @njit(nogil=True)
    def work(k, out, rhs, rhs2, inverse, weights):
        cholesky(out, k)
        cho_solve(out, rhs, np.bool_(True))
        cho_solve(out, rhs2, np.bool_(True))
        cho_inverse(inverse, out, weights)

    X, y, theta = gp_data(n)
    d2 = ((X[:, None, :] - X[None, :, :]) ** 2).sum(-1)
    k = np.exp(theta[1]) * np.exp(-0.5 * d2 / np.exp(theta[0]) ** 2) + np.exp(theta[2]) * np.eye(n)
    args = (k, np.empty_like(k), y[:, None].copy(), y[:, None].copy(), np.empty_like(k), np.full(n, 0.5))
    work(*args)
    return work, args


def fmt(seconds):
    return f"{seconds * 1e3:.3f}"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer, shorter repeats")
    args = parser.parse_args(argv)
    settings, rounds = (QUICK, 2) if args.quick else (FULL, 5)
    rng = np.random.default_rng(1)
    print(f"load average {os.getloadavg()[0]:.1f}, {os.cpu_count()} cores, "
          f"OPENBLAS_NUM_THREADS={os.environ.get('OPENBLAS_NUM_THREADS', 'unset')}")

    # 1. solve and cholesky at n = 500
    n = 500
    A_value = rng.normal(size=(n, n)) + n ** 0.5 * np.eye(n)
    b_value = rng.normal(size=n)
    K_value = A_value @ A_value.T / n + np.eye(n)
    A, b, K = sd.matrix("A", (None, None)), sd.vector("b"), sd.matrix("K", (None, None))
    solve = sd.function([A, b], sd.linalg.solve(A, b))
    cholesky = sd.function([K], sd.linalg.cholesky(K))
    np.testing.assert_allclose(solve(A_value, b_value), np.linalg.solve(A_value, b_value), rtol=1e-9)
    np.testing.assert_allclose(cholesky(K_value), np.linalg.cholesky(K_value), rtol=1e-9, atol=1e-12)
    times = interleaved({"np solve": (np.linalg.solve, (A_value, b_value)), "sd solve": (solve, (A_value, b_value)),
                         "np cholesky": (np.linalg.cholesky, (K_value,)), "sd cholesky": (cholesky, (K_value,))},
                        settings, rounds)
    print("\n| n = 500 | np.linalg median (min) ms | symdiff median (min) ms | ratio of medians (of minima) |")
    print("|---|---|---|---|")
    for op in ("solve", "cholesky"):
        ours, theirs = times[f"sd {op}"], times[f"np {op}"]
        print(f"| {op} | {fmt(theirs[0])} ({fmt(theirs[1])}) | {fmt(ours[0])} ({fmt(ours[1])}) | "
              f"{ours[0] / theirs[0]:.2f} ({ours[1] / theirs[1]:.2f}) |")

    # 2. and 3. the GP likelihood at n = 1000 and n = 50
    value, value_and_grad = symdiff_gp()
    jax_functions = jax_gp()
    print("\n| GP -log p(y|X), n | symdiff value ms | symdiff value+grad ms | ratio | JAX value ms | "
          "JAX value+grad ms | sklearn value+grad ms |")
    print("|---|---|---|---|---|---|---|")
    for n in (1000, 50):
        X_value, y_value, theta_value = gp_data(n)
        data = (X_value, y_value, theta_value)
        want = value_and_grad(*data)
        calls = {"value": (value, data), "value+grad": (value_and_grad, data)}
        if jax_functions is not None:
            jv, jvg, _ = jax_functions
            got = jvg(*data)
            np.testing.assert_allclose(float(got[0]), want[0], rtol=1e-9)
            np.testing.assert_allclose(np.asarray(got[1]), want[1], rtol=1e-7)
            calls.update({"jax value": (jv, data), "jax value+grad": (jvg, data)})
        try:
            from sklearn.gaussian_process import GaussianProcessRegressor
            from sklearn.gaussian_process.kernels import RBF, ConstantKernel, WhiteKernel

            kernel = ConstantKernel(1.0) * RBF(1.0) + WhiteKernel(0.1)
            gp = GaussianProcessRegressor(kernel, alpha=0.0, optimizer=None).fit(X_value, y_value)
            calls["sklearn"] = (lambda t: gp.log_marginal_likelihood(t, eval_gradient=True), (gp.kernel_.theta,))
        except ImportError:
            pass
        t = interleaved(calls, settings, rounds)

        def cell(name):
            if name not in t:
                return "-"
            median, minimum, cpu = t[name]
            extra = f", CPU {fmt(cpu)}" if n == 1000 else ""
            return f"{fmt(median)} ({fmt(minimum)}{extra})"

        print(f"| {n} | {cell('value')} | {cell('value+grad')} | {t['value+grad'][0] / t['value'][0]:.2f} | "
              f"{cell('jax value')} | {cell('jax value+grad')} | {cell('sklearn')} |")
        if n == 50:
            work, work_args = lapack_work(n)
            lapack = interleaved({"lapack": (work, work_args), "value+grad": (value_and_grad, data)}, settings,
                                 rounds)
            above = lapack["value+grad"][1] - lapack["lapack"][1]
            print(f"\nn = 50: value+grad {lapack['value+grad'][1] * 1e6:.1f} us (min), its LAPACK calls alone "
                  f"{lapack['lapack'][1] * 1e6:.1f} us: {above * 1e6:.1f} us above the LAPACK work "
                  "(the call, the kernel matrix and its derivative's O(n^2) loops)")
    if jax_functions is None:
        print("\nJAX is not installed (pip install jax): no JAX column")
    else:
        print(f"\nJAX {jax_functions[2]}, jit, float64 (x64 enabled)")
    print("value+grad over value: the value needs one Cholesky factorisation (n^3/3 flops); the gradient of "
          "log det K needs K^-1 (trtri + lauum, 2n^3/3 more), so about 3x is the floor for an exact gradient")


if __name__ == "__main__":
    main()
