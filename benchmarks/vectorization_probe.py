"""Why the Rosenbrock 1e6 value+gradient loop runs at scalar speed: hand-written Numba
variants of the loop symdiff emits, timed in one process.

    python benchmarks/vectorization_probe.py

Each variant computes, for x of length n = 1e6, some of: the value sum
sum(100*(x[i+1] - x[i]**2)**2 + (1 - x[i])**2) and the gradient, into a preallocated
output. The medians (21 calls each) show what blocks LLVM's vectoriser: a sequential
float sum (vectorising it needs reassociation) and the loop-carried "carry" of the
gradient's second slice term.  Results are in docs/architecture.md, "Code generation".
"""

from __future__ import annotations

import time

import numpy as np
from numba import njit


def _variants():
    def value_and_gradient(fastmath):
        @njit(fastmath=fastmath)
        def run(x, g):
            n = x.shape[0]
            total, carry = 0.0, 0.0
            for i in range(n - 1):
                d = x[i + 1] - x[i] * x[i]
                c = 1.0 - x[i]
                total += 100.0 * d * d + c * c
                g[i] = carry + (-400.0 * d * x[i] - 2.0 * c)
                carry = 200.0 * d
            if n > 0:
                g[n - 1] = carry
            return total

        return run

    def without_carry(fastmath, with_sum=True):
        @njit(fastmath=fastmath)
        def run(x, g):
            total = 0.0
            for i in range(x.shape[0] - 1):
                d = x[i + 1] - x[i] * x[i]
                c = 1.0 - x[i]
                if with_sum:
                    total += 100.0 * d * d + c * c
                g[i] = -400.0 * d * x[i] - 2.0 * c
            return total

        return run

    @njit
    def carry_without_sum(x, g):
        carry = 0.0
        for i in range(x.shape[0] - 1):
            d = x[i + 1] - x[i] * x[i]
            c = 1.0 - x[i]
            g[i] = carry + (-400.0 * d * x[i] - 2.0 * c)
            carry = 200.0 * d
        return 0.0

    return {
        "value sum + gradient with a carry (symdiff's loop)": value_and_gradient(False),
        "the same, fastmath reassoc": value_and_gradient({"reassoc"}),
        "value sum + gradient term without the carry": without_carry(False),
        "the same, fastmath reassoc (vectorised)": without_carry({"reassoc"}),
        "gradient term only (vectorised)": without_carry(False, with_sum=False),
        "gradient with the carry, no sum": carry_without_sum,
    }


def main():
    x = np.random.default_rng(0).normal(size=1_000_000)
    g = np.empty_like(x)
    for label, run in _variants().items():
        run(x, g)  # compile
        times = []
        for _ in range(21):
            start = time.perf_counter()
            run(x, g)
            times.append(time.perf_counter() - start)
        print(f"{np.median(times) * 1e6:8.0f} us  {label}")


if __name__ == "__main__":
    main()
