"""The BLAS gemm behind compiled matmul: which BLAS is chosen, and that every way of
calling it (NumPy's BLAS through the Fortran or the CBLAS ABI, SciPy's through Numba,
plain loops) multiplies right for every transpose combination and awkward sizes."""

from __future__ import annotations

import ctypes
import json
import os
import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("numba")

from numba import njit  # noqa: E402

import symdiff as sd  # noqa: E402
from symdiff.backends import runtime  # noqa: E402

# (m, n, k): square, non-square, one row, one column (beyond the four rows _matvec's loops take
# at a time), inner size one, and empty products
SIZES = [(2, 3, 4), (4, 4, 4), (7, 5, 9), (64, 33, 17), (1, 6, 5), (6, 1, 5), (1, 1, 1), (3, 4, 1), (1, 1, 7),
         (0, 3, 2), (3, 0, 2), (2, 3, 0), (0, 0, 0), (9, 1, 13), (1, 11, 6), (1, 1, 0), (0, 1, 3), (1, 0, 3)]
CASES = [(m, n, k, transpose_a, transpose_b) for m, n, k in SIZES for transpose_a in (0, 1) for transpose_b in (0, 1)]
NUMPY_BLAS_OVERRIDDEN = os.environ.get(runtime.BLAS_ENV, "numpy").strip().lower() not in ("", "numpy")


def _case_buffers(dtype):
    """All cases packed into three flat buffers, and a table of (offsets, m, n, k, flags).
    Operands hold small integers so every BLAS summation order gives exact results."""
    rng = np.random.default_rng(7)
    a_parts, b_parts, rows, at = [], [], [], [0, 0, 0]
    for m, n, k, transpose_a, transpose_b in CASES:
        a_parts.append(rng.integers(-4, 5, size=m * k))
        b_parts.append(rng.integers(-4, 5, size=k * n))
        rows.append(at + [m, n, k, transpose_a, transpose_b])
        at = [at[0] + m * k, at[1] + k * n, at[2] + m * n]
    a = np.concatenate(a_parts).astype(dtype)
    b = np.concatenate(b_parts).astype(dtype)
    return a, b, np.full(at[2], np.nan, dtype=dtype), np.array(rows, dtype=np.int64)


def _expected(a, b, table, dtype):
    out = []
    for oa, ob, _, m, n, k, transpose_a, transpose_b in table:
        x = a[oa:oa + m * k].reshape((k, m) if transpose_a else (m, k))
        y = b[ob:ob + k * n].reshape((n, k) if transpose_b else (k, n))
        out.append(((x.T if transpose_a else x) @ (y.T if transpose_b else y)).ravel())
    return np.concatenate(out).astype(dtype)


def _case_runner(gemm):
    """One compiled function (per dtype) that runs every case through ``gemm``."""

    @njit
    def run(a, b, out, table):
        for row in range(table.shape[0]):
            oa, ob, oo = table[row, 0], table[row, 1], table[row, 2]
            m, n, k = table[row, 3], table[row, 4], table[row, 5]
            gemm(out[oo:oo + m * n], a[oa:oa + m * k], b[ob:ob + k * n], m, n, k, table[row, 6], table[row, 7])

    return run


def _scipy_bundled_openblas() -> list:
    """SciPy's wheels bundle an LP64 OpenBLAS (``scipy_dgemm_``): a second BLAS, of the
    other integer width than NumPy's ILP64 one, to run the same ABIs against."""
    import importlib.util

    spec = importlib.util.find_spec("scipy")
    if spec is None or not spec.submodule_search_locations:
        return []
    folder = os.path.join(os.path.dirname(list(spec.submodule_search_locations)[0]), "scipy.libs")
    try:
        return [os.path.join(folder, name) for name in sorted(os.listdir(folder)) if "openblas" in name.lower()]
    except OSError:
        return []


def _gemm_implementations():
    """(label, gemm) for the gemm kernels call here, and every other way this machine offers."""
    found = [("selected:" + runtime.BLAS_SOURCE, runtime._gemm)]
    others = []
    if runtime.BLAS_SOURCE == "numpy":
        others.append(runtime._find_numpy_blas(abis=("cblas",)))
    for abi in ("fortran", "cblas"):
        others.append(runtime._find_numpy_blas(abis=(abi,), libraries=_scipy_bundled_openblas()))
    for choice in others:
        if choice is not None and choice[1:3] != runtime._BLAS_CHOICE[1:3]:
            runtime._register_gemm_symbols(choice)
            found.append((f"{os.path.basename(os.path.dirname(choice.library))}:{choice.abi}{choice.int_bits}",
                          runtime._make_gemm(choice)))
    if runtime.BLAS_SOURCE != "scipy" and runtime._scipy_blas_available():
        found.append(("scipy", runtime._make_gemm(runtime.BlasChoice("scipy", "numba"))))
    found.append(("loops", runtime._gemm_loops))
    found.append(("matvec", runtime._matvec))  # what kernels call where an operand is a vector
    return found


@pytest.mark.parametrize("label, gemm", [pytest.param(*item, id=item[0]) for item in _gemm_implementations()])
def test_gemm_matches_numpy_for_all_transposes_and_sizes(label, gemm):
    run = _case_runner(gemm)
    for dtype in (np.float64, np.float32):
        a, b, out, table = _case_buffers(dtype)
        a_before, b_before = a.copy(), b.copy()
        run(a, b, out, table)
        expected = _expected(a, b, table, dtype)
        assert out.dtype == dtype
        bad = [tuple(int(x) for x in row[3:]) for row in table
               if not np.array_equal(out[row[2]:row[2] + row[3] * row[4]], expected[row[2]:row[2] + row[3] * row[4]])]
        assert not bad, f"{label} {np.dtype(dtype).name}: wrong products for (m, n, k, transpose_a, transpose_b) {bad}"
        assert np.array_equal(a, a_before) and np.array_equal(b, b_before), "gemm wrote to its operands"


def _numpy_bundles_openblas() -> bool:
    import numpy.__config__ as config

    name = str(config.CONFIG.get("Build Dependencies", {}).get("blas", {}).get("name", ""))
    bundled = [path for path in runtime._numpy_blas_libraries() if "numpy.libs" in path or ".dylibs" in path]
    return "openblas" in name.lower() and bool(bundled)


def test_numpy_openblas_is_selected_when_numpy_bundles_it():
    if NUMPY_BLAS_OVERRIDDEN:
        pytest.skip(f"{runtime.BLAS_ENV} asks for another BLAS")
    if not _numpy_bundles_openblas():
        pytest.skip("this NumPy does not bundle OpenBLAS")
    choice = runtime._BLAS_CHOICE
    assert runtime.BLAS_SOURCE == "numpy" and runtime.BLAS
    assert choice.abi == "fortran" and all("gemm" in name for name in choice.symbols)
    assert os.path.basename(os.path.dirname(choice.library)) in ("numpy.libs", ".dylibs")
    # the width NumPy's build reports agrees with what the library says about itself
    assert choice.int_bits == runtime._numpy_config_int_bits()
    assert runtime._library_int_bits(ctypes.CDLL(choice.library)) in (None, choice.int_bits)
    local = "/threads-local" if choice.threads_local else ""
    assert runtime.BLAS_CACHE_TAG == f"numpy/fortran/{choice.int_bits}{local}"


def test_small_products_run_on_the_calling_thread_and_leave_openblas_as_it_was():
    """A kernel's small gemm sets OpenBLAS's per-thread count to 1 and restores it, so the
    user's own NumPy calls keep OpenBLAS's threads (and a big product keeps them too)."""
    choice = runtime._BLAS_CHOICE
    if not choice.threads_local:
        pytest.skip("this BLAS has no openblas_set_num_threads_local")
    set_local = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_int)(choice.threads_local)
    before = set_local(3)  # a count the kernel must restore, whatever it was
    try:
        for n in (8, 400):  # 8^3 below SINGLE_THREAD_BELOW, 400^3 above
            a = sd.matrix("a", (n, n))
            f = sd.function([a], a @ a)
            value = np.random.default_rng(n).normal(size=(n, n))
            np.testing.assert_allclose(f(value), value @ value, rtol=1e-12, atol=1e-10)
            assert set_local(3) == 3
    finally:
        set_local(before)


def test_numpy_blas_is_found_through_numpy_extension_module_too():
    """A NumPy that links a system BLAS (no bundled copy) is found through the symbols
    its extension module can see; here that must lead to the bundled library's functions."""
    if runtime.BLAS_SOURCE != "numpy":
        pytest.skip("NumPy's BLAS is not in use")
    extension = runtime._numpy_blas_libraries()[-1]
    assert "_multiarray_umath" in os.path.basename(extension)
    through_extension = runtime._find_numpy_blas(libraries=[extension])
    assert through_extension is not None
    assert through_extension.addresses == runtime._BLAS_CHOICE.addresses


def test_integer_width_is_read_from_the_library():
    widths = {choice.int_bits for choice in [runtime._BLAS_CHOICE] if choice.source == "numpy"}
    for path in _scipy_bundled_openblas():  # LP64: no 64_ suffix, and OpenBLAS says so in its config
        choice = runtime._find_numpy_blas(libraries=[path])
        assert choice is not None and choice.int_bits == 32 and choice.symbols[0] == "scipy_dgemm_"
        widths.add(choice.int_bits)
    if not widths:
        pytest.skip("neither NumPy's nor SciPy's bundled OpenBLAS is here")
    if runtime.BLAS_SOURCE == "numpy":
        assert runtime._BLAS_CHOICE.int_bits == runtime._library_int_bits(ctypes.CDLL(runtime._BLAS_CHOICE.library))


def test_numba_array_math_keeps_the_real_ensure_blas():
    """The warm-start shim swaps Numba's ensure_blas only while numba.np.arraymath is
    imported: afterwards np.dot in any Numba code loads SciPy's BLAS as usual."""
    import numba
    import numba.np.arraymath as array_math
    import numba.np.linalg as numba_linalg

    assert array_math.ensure_blas is numba_linalg.ensure_blas
    assert numba_linalg.ensure_blas.__module__ == "numba.np.linalg"

    @numba.njit
    def dot(a, b):
        return np.dot(a, b)

    a = np.arange(6.0).reshape(2, 3)
    np.testing.assert_array_equal(dot(a, a.T), a @ a.T)


def test_fallback_order_and_flag():
    assert runtime._choose_blas("loops") == runtime.BlasChoice("loops")
    expected = "scipy" if runtime._scipy_blas_available() else "loops"
    assert runtime._choose_blas("scipy").source == expected
    with pytest.raises(ValueError, match="SYMDIFF_BLAS='mkl'"):
        runtime._choose_blas("mkl")
    assert runtime.BLAS == (runtime.BLAS_SOURCE != "loops")


def test_self_test_rejects_a_gemm_that_computes_nothing():
    if runtime.BLAS_SOURCE != "numpy":
        pytest.skip("NumPy's BLAS is not in use")
    do_nothing = ctypes.CFUNCTYPE(None, *[ctypes.c_void_p] * 13, ctypes.c_size_t, ctypes.c_size_t)(lambda *args: None)
    address = ctypes.cast(do_nothing, ctypes.c_void_p).value
    fake = runtime._BLAS_CHOICE._replace(abi="fortran", addresses=(address, address))
    assert not runtime._gemm_self_test(fake)
    assert runtime._gemm_self_test(runtime._BLAS_CHOICE)


# A fresh process builds a function with float64 and float32 matmuls (transposed ones
# in the gradient, a matrix-vector product) and reports how it got its kernel.
SCRIPT = """
import json, sys
import numpy as np
import symdiff as sd
from symdiff.backends import runtime
A, B, v = sd.matrix("A", (None, 5)), sd.matrix("B", (5, 3)), sd.vector("v", 3)
P, Q = sd.matrix("P", (4, 3), dtype="float32"), sd.matrix("Q", (3, 2), dtype="float32")
loss = sd.sum(sd.tanh(A @ B) @ v)
outputs = [loss, *sd.grad(loss, [A, B, v]), P @ Q]
f = sd.function([A, B, v, P, Q], outputs)
rng = np.random.default_rng(3)
values = [rng.normal(size=(6, 5)), rng.normal(size=(5, 3)), rng.normal(size=3),
          rng.normal(size=(4, 3)).astype(np.float32), rng.normal(size=(3, 2)).astype(np.float32)]
got = f(*values)
want = sd.evaluate(outputs, dict(zip([A, B, v, P, Q], values)))
ok = all(np.allclose(x, y, rtol=1e-5) and np.asarray(x).dtype == np.asarray(y).dtype for x, y in zip(got, want))
print(json.dumps({"status": f.cache_status, "ok": bool(ok), "source": runtime.BLAS_SOURCE, "blas": runtime.BLAS,
                  "compiled": sum(f.kernel.stats.cache_misses.values()),
                  "scipy_linalg_imported": "scipy.linalg" in sys.modules}))
"""


def _fresh_process(cache_dir, blas=None) -> dict:
    env = dict(os.environ, SYMDIFF_CACHE_DIR=str(cache_dir))
    env.pop(runtime.BLAS_ENV, None)
    if blas:
        env[runtime.BLAS_ENV] = blas
    result = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_cached_blas_kernel_links_in_a_new_process(tmp_path):
    """The gemm is called by a symbol name registered at import, not by an address
    baked into the code, so a kernel loaded from the disk cache works without compiling."""
    first = _fresh_process(tmp_path)
    assert first["ok"] and first["status"] == "miss" and first["source"] == runtime._choose_blas().source
    second = _fresh_process(tmp_path)
    assert second["ok"] and second["status"] == "hit" and second["compiled"] == 0
    if second["source"] == "numpy":  # a warm start never imports scipy.linalg (0.1-0.2 s)
        assert not second["scipy_linalg_imported"]
    if runtime._scipy_blas_available():  # another BLAS is another cache entry, never the first one's code
        other = _fresh_process(tmp_path, blas="scipy")
        assert other["ok"] and other["source"] == "scipy" and other["status"] == "miss"
