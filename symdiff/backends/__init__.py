"""Code generators.  Only this package imports Numba (and llvmlite).

- ``lowering``: graph -> one kernel's Python source (fused loops, accumulators, BLAS
  calls, scalar regions); pure Python, no Numba import.
- ``runtime``: the small jitted helpers the generated source calls.
- ``scalar_ir``: long straight-line scalar regions emitted as LLVM IR inside the
  kernel (Numba's own compile time is superlinear in the length of a basic block).
- ``cache``: the on-disk kernel cache.
- ``numba_backend``: ``NumbaFunction``, the callable ``sd.function`` returns.
"""
