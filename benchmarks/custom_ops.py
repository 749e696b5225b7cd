"""Custom ops against built-in ones (issue 13's targets), one run, medians.

1. softplus re-implemented as ``sd.custom_op(..., numba=scalar)`` against the
   built-in softplus, each as sum(softplus(x)) with its gradient, on 1e6 elements,
   sizes static and None, measured in turns (medians of ROUNDS rounds).  Target: at most 1.1x the built-in in a fused loop, so the
   comparison runs with ``SYMDIFF_VECTOR_MATH=off`` (both ops scalar in the loop);
   the built-in with vector math (libmvec passes) is shown too.
2. The fallback (no ``numba=``: the compiled function calls impl from Python between
   kernels, ``symdiff/backends/staged.py``): its time above NumPy's own time for the
   same impl on a small array, with and without the overhead every kernel call has (a
   kernel computing x + 1).  Target: at most 2 us per call.

Run: python benchmarks/custom_ops.py
"""

from __future__ import annotations

import math
import os
import statistics
import sys
import warnings

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import symdiff as sd  # noqa: E402
from timing import FULL, measure  # noqa: E402

ROUNDS = 7


def softplus_scalar(x):
    if x > 0:
        return x + math.log1p(math.exp(-x))
    return math.log1p(math.exp(x))


def main(fallback: bool = True):
    custom_softplus = sd.custom_op("bench_softplus", lambda x: np.logaddexp(0, x), elementwise=True,
                                   vjp=lambda g, out, x: g * sd.sigmoid(x), numba=softplus_scalar)
    rng = np.random.default_rng(0)
    x_value = rng.normal(size=1_000_000) * 3
    from symdiff.backends import vector_math

    math = "vector math" if vector_math.available() else "scalar libm in the fused loop"
    print(f"| problem ({math}) | sizes | built-in (us) | custom op (us) | ratio |")
    print("|---|---|---|---|---|")
    for sizes in ("static", "None"):
        x = sd.vector("x", x_value.size if sizes == "static" else None)
        functions = []
        for softplus in (sd.softplus, custom_softplus):
            y = sd.sum(softplus(x))
            functions.append(sd.function([x], [y, sd.grad(y, x)]))
        rounds = [[], []]  # measured in turns, as the fallback below: minutes apart, timings drift
        for _ in range(ROUNDS):
            for k, f in enumerate(functions):
                rounds[k].append(measure(f, (x_value,), FULL)["median_s"] * 1e6)
        times = [statistics.median(r) for r in rounds]
        print(f"| sum(softplus(x)) + gradient, n = 1e6 | {sizes} | {times[0]:.0f} | {times[1]:.0f} | "
              f"{times[1] / times[0]:.3f} |")

    if not fallback:
        return

    def impl(v):
        return np.sqrt(v * v + 1.0)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fallback = sd.custom_op("bench_fallback", impl, elementwise=True)
        x = sd.vector("x")
        f = sd.function([x], fallback(x))
    small = rng.normal(size=16)
    plain = sd.function([x], x + 1.0)  # the cost of calling any kernel, for reference
    # The three are measured in turns, ROUNDS times, and each figure is the median of its
    # rounds: a difference of two microsecond timings taken minutes apart is mostly noise.
    rounds = {"kernel": [], "bare": [], "plain": []}
    for _ in range(ROUNDS):
        for key, fn in (("kernel", f), ("bare", impl), ("plain", plain)):
            rounds[key].append(measure(fn, (small,), FULL)["median_s"] * 1e6)
    kernel_us, bare_us, plain_us = (statistics.median(rounds[k]) for k in ("kernel", "bare", "plain"))
    print()
    print(f"| fallback (impl between kernels), 16 elements (medians of {ROUNDS} rounds) | us per call |")
    print("|---|---|")
    print(f"| compiled function calling impl | {kernel_us:.2f} |")
    print(f"| the user's NumPy function alone | {bare_us:.2f} |")
    print(f"| a kernel computing x + 1 (any call's overhead) | {plain_us:.2f} |")
    print(f"| fallback cost above NumPy's own time | {kernel_us - bare_us:.2f} |")
    print(f"| fallback cost above NumPy's own time and a call's overhead | {kernel_us - bare_us - plain_us:.2f} |")

if __name__ == "__main__":
    if "--child" not in sys.argv:  # the fused-loop comparison: both ops scalar
        import subprocess

        env = dict(os.environ, SYMDIFF_VECTOR_MATH="off")
        subprocess.run([sys.executable, __file__, "--child"], env=env, check=True)
        print()
    main(fallback="--child" not in sys.argv)
