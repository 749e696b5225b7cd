"""Products with a vector operand: the loops compiled matmul calls for them
(``runtime._matvec``) against BLAS gemm with n = 1 (what kernels called before) and
NumPy's ``@`` (which calls gemv, threaded), float64, M @ v and M.T @ u for each
shape.  Each kernel repeats the product enough times to run ~3 ms; the figure is the
best of 7 runs (``loops.best_of``) divided by the repeats (nanoseconds per product).

    python benchmarks/matvec.py
"""

from __future__ import annotations

import os
import sys

import numpy as np
from numba import njit

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from loops import best_of  # noqa: E402
from symdiff.backends.runtime import _gemm, _matvec  # noqa: E402

SHAPES = [(8, 8), (32, 8), (32, 32), (64, 64), (128, 128), (256, 256), (512, 512), (1000, 1000), (20000, 30),
          (100000, 20), (30, 20000), (64, 256)]


def _repeat(product):
    @njit(nogil=True)
    def run(out, matrix, vector, transposed, reps):
        rows, cols = matrix.shape
        for _ in range(reps):
            if transposed:
                product(out, matrix, vector, cols, 1, rows, 1, 0)
            else:
                product(out, matrix, vector, rows, 1, cols, 0, 0)

    return run


def main():
    loops, blas = _repeat(_matvec), _repeat(_gemm)
    rng = np.random.default_rng(0)
    print(f"{'shape':>14} | {'M @ v: loops':>13} {'gemm':>10} {'numpy':>10} | {'M.T @ u: loops':>15} {'gemm':>10} "
          f"{'numpy':>10}   (ns per product)")
    for rows, cols in SHAPES:
        matrix = rng.normal(size=(rows, cols))
        v, u = rng.normal(size=cols), rng.normal(size=rows)
        reps = max(1, int(3e6 // (rows * cols)))
        figures = []
        for transposed, vector, size in ((0, v, rows), (1, u, cols)):
            out_loops, out_blas = np.empty(size), np.empty(size)
            figures.append(best_of(loops, (out_loops, matrix, vector, transposed, reps), 7) / reps)
            figures.append(best_of(blas, (out_blas, matrix, vector, transposed, reps), 7) / reps)
            figures.append(best_of(np.matmul, (matrix.T if transposed else matrix, vector), 7))
            assert np.allclose(out_loops, out_blas), (rows, cols, transposed)
        print(f"{rows:>6} x {cols:<5} | " + " ".join(f"{x * 1e9:>10,.0f}" for x in figures[:3]) + " | "
              + " ".join(f"{x * 1e9:>10,.0f}" for x in figures[3:]))


if __name__ == "__main__":
    main()
