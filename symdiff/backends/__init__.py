"""Code generators.  Only this package imports Numba (and llvmlite).

- ``lowering``: the driver, graph -> one kernel's Python source (scheduling, fused
  loops, accumulators, buffers, sizes); pure Python, no Numba import.  Each op family
  lowers its ops in its own module, registered by op name with ``@lowers``:
  ``elementwise`` (scalar spellings, vector-math passes), ``leaves``, ``reductions``,
  ``views`` (slices, broadcasts, reshape, concatenate, slice scatters), ``linalg``
  (matmul), ``indexing``, ``ordering``, ``creation``, ``convolution``,
  ``factorizations`` (LAPACK), ``loops``, ``custom`` (users' ops); ``FAMILIES`` in
  ``lowering`` lists them.
- ``runtime``: the jitted helpers the generated source calls (gemm through NumPy's
  BLAS), and each family's helpers (``vector_math``: libmvec; ``lapack``;
  ``special_math``; ``index_runtime``...), exported to kernels by ``_export``.
- ``scalar_ir``: long straight-line scalar regions emitted as LLVM IR inside the
  kernel (Numba's own compile time is superlinear in the length of a basic block).
- ``cache``: the on-disk kernel cache.
- ``numba_backend``: ``NumbaFunction``, the callable ``sd.function`` returns.
"""
