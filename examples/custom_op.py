"""A custom op in one record: log1mexp(x) = log(1 - exp(x)) for x < 0.

Written naively, log(1 - exp(x)) loses every digit near 0 (1 - exp(-1e-20) is 0)
and log1p(-exp(x)) loses them far from 0; the stable form switches at -log 2
(Maechler, "Accurately computing log(1 - exp(-|a|))").  symdiff has no such op, so
we register one: a NumPy reference, a derivative rule written with symdiff
expressions (so its second derivative works too), and a Numba scalar function
that the compiled kernel fuses into its loop.

The fit: each of n devices was checked once, at time t_i, and found failed
(y_i = 1) or working (y_i = 0).  With exponential lifetimes of rate r,
P(failed by t) = 1 - exp(-r t), and the log-likelihood is
    sum_i  y_i * log1mexp(-r t_i)  -  (1 - y_i) * r t_i.
We fit log r with SciPy's trust-ncg on the compiled value, gradient and HVP.

Run: python examples/custom_op.py
"""

from __future__ import annotations

import math
import sys
import time

import numpy as np

import symdiff as sd
from symdiff.testing import check_op

try:
    from scipy.optimize import minimize
except ImportError:  # the example's extra: name it instead of a bare ModuleNotFoundError
    sys.exit("custom_op.py fits with SciPy's trust-ncg: install the examples extra, "
             "pip install 'symdiff[examples]' (or pip install scipy)")

LOG_HALF = -math.log(2.0)


def log1mexp_reference(x):
    """log(1 - exp(x)) for x <= 0, in NumPy."""
    x = np.asarray(x, dtype=np.result_type(x, np.float32))
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(x > LOG_HALF, np.log(-np.expm1(x)), np.log1p(-np.exp(x)))


def log1mexp_scalar(x):
    """The same for one number: Numba compiles this into the kernel's loop."""
    if x > LOG_HALF:
        return math.log(-math.expm1(x))
    return math.log1p(-math.exp(x))


def log1mexp_vjp(cotangent, out, x):
    # d/dx log(1 - e^x) = -e^x / (1 - e^x) = -1 / expm1(-x): no cancellation for any x < 0
    return cotangent / -sd.expm1(-x)


log1mexp = sd.custom_op(
    "log1mexp",
    log1mexp_reference,
    elementwise=True,
    vjp=log1mexp_vjp,
    numba=log1mexp_scalar,
    samples=lambda rng: [((-rng.uniform(0.05, 3.0, size=()),), {}), ((-rng.uniform(0.05, 3.0, size=(5,)),), {})],
)


def main(n: int = 200_000, seed: int = 0):
    check_op(log1mexp)  # the registry's checks: types, derivatives to order 2, compiled vs reference
    print("check_op(log1mexp): passed")

    rng = np.random.default_rng(seed)
    true_rate = 0.35
    times = rng.uniform(0.1, 10.0, size=n)
    failed = (rng.exponential(1 / true_rate, size=n) < times).astype(np.float64)

    log_rate = sd.scalar("log_rate")
    t, y = sd.vector("t"), sd.vector("y")
    rate_t = sd.exp(log_rate) * t
    neg_loglik = -sd.sum(y * log1mexp(-rate_t) - (1 - y) * rate_t) / sd.astype(sd.dim(t, 0), "float64")
    value_and_grad = sd.function([log_rate, t, y], [neg_loglik, sd.grad(neg_loglik, log_rate)])
    hvp = sd.function([log_rate, t, y, sd.scalar("v")],
                      sd.hvp(neg_loglik, [log_rate], [sd.scalar("v")])[0])

    start = time.perf_counter()
    def fun(p):
        value, gradient = value_and_grad(p[0], times, failed)
        return value, np.array([gradient])

    def hessp(p, v):
        return np.array([hvp(p[0], times, failed, v[0])])

    result = minimize(fun, x0=[0.0], jac=True, hessp=hessp, method="trust-ncg")
    seconds = time.perf_counter() - start
    print(f"fitted rate {math.exp(result.x[0]):.4f} (true {true_rate}), {result.nit} iterations, "
          f"{seconds * 1e3:.1f} ms, n = {n}")

    print("\nThe compiled kernel around the custom op:")
    lines = value_and_grad.source.splitlines()
    shown = [k for k, line in enumerate(lines) if "log1mexp" in line]
    for k in range(max(shown[0] - 3, 0), min(shown[-1] + 4, len(lines))):
        print("   ", lines[k])
    return math.exp(result.x[0])


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 200_000)
