"""The on-disk kernel cache: hits in a fresh process, damaged, unwritable and untrusted
caches, and kernels that land only where SYMDIFF_CACHE_DIR says."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import warnings

import numpy as np
import pytest

import symdiff as sd

pytest.importorskip("numba")

# A fresh process builds the Rosenbrock value+gradient and reports how it got its kernel.
SCRIPT = """
import json, warnings
import numpy as np
import symdiff as sd
x = sd.vector("x")
r = sd.sum(100 * (x[1:] - x[:-1] ** 2) ** 2 + (1 - x[:-1]) ** 2)
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    f = sd.function([x], [r, sd.grad(r, x)])
value, gradient = f(np.linspace(-1, 1, 7))
want = sd.evaluate([r, sd.grad(r, x)], {x: np.linspace(-1, 1, 7)})
print(json.dumps({"status": f.cache_status, "ok": bool(np.isclose(value, want[0]) and np.allclose(gradient, want[1])),
                  "warnings": [str(w.message) for w in caught]}))
"""


# A fresh process loads kernels that use each part of the runtime: BLAS, libmvec, a run-time
# size, the slow path's conversion, errors raised inside a kernel, LAPACK, a loop, a gather
# and its index error, sorting; then a user's op in object mode and in nopython mode (its
# numba= function is compiled, which installs Numba's registries) and a Numba function of
# the user's own.
RUNTIME_SCRIPT = """
import json, sys, warnings
import numpy as np
import symdiff as sd

rng = np.random.default_rng(0)
report = {}
b = sd.vector("b", 3)
bv = rng.standard_normal(3)
W, X = sd.matrix("W", (4, 3)), sd.matrix("X")
loss = sd.sum(sd.log_softmax(sd.tanh(X @ W) + b, axis=1))
f = sd.function([W, X, b], [loss, *sd.grad(loss, [W, b])])
Wv, Xv = rng.standard_normal((4, 3)), rng.standard_normal((5, 4))
want = sd.evaluate([loss, *sd.grad(loss, [W, b])], {W: Wv, X: Xv, b: bv})
report["mlp"] = all(np.allclose(g, w) for g, w in zip(f(Wv, Xv, bv), want))
converted = f(Wv.astype(np.float32), np.asfortranarray(Xv), list(bv))
report["converted"] = all(np.allclose(g, w, rtol=1e-6) for g, w in zip(converted, want))
try:
    f(Wv, rng.standard_normal((5, 2)), bv)
except sd.ShapeError as exc:
    report["shape_error"] = "X" in str(exc)
A = sd.matrix("A", (3, 3))
solve = sd.function([A, b], [sd.linalg.solve(A, b), sd.sum(sd.linalg.cholesky(A))])
spd = np.eye(3) * 2 + 0.1
report["linalg"] = bool(np.allclose(solve(spd, bv)[0], np.linalg.solve(spd, bv)))
try:
    solve(-np.eye(3), bv)
except np.linalg.LinAlgError as exc:
    report["linalg_error"] = "cholesky" in str(exc)
k = sd.scalar("k", "int64")
looped = sd.fori_loop(0, k, lambda i, c: sd.sin(c) * 0.5 + b, b)
outputs = [looped, sd.grad(sd.sum(looped), b)]
loop = sd.function([b, k], outputs)
report["loop"] = all(np.allclose(g, w) for g, w in zip(loop(bv, 7), sd.evaluate(outputs, {b: bv, k: 7})))
i = sd.vector("i", None, "int64")
gather = sd.function([b, i], sd.take(b, i) * 2.0)
report["gather"] = bool(np.allclose(gather(bv, np.array([2, 0])), bv[[2, 0]] * 2))
try:
    gather(bv, np.array([5]))
except IndexError as exc:
    report["index_error"] = "5" in str(exc)
report["sort"] = bool(np.allclose(sd.function([b], sd.sort(b))(bv), np.sort(bv)))
report["registries_loaded"] = "numba.np.polynomial.polynomial_core" in sys.modules
square = sd.custom_op("fresh_square", lambda x: x * x, elementwise=True, vjp=lambda g, out, x: 2 * g * x,
                      numba=lambda x: x * x)
cube = sd.custom_op("fresh_cube", lambda x: x ** 3, elementwise=True, vjp=lambda g, out, x: 3 * g * x * x)
h = sd.fori_loop(0, 3, lambda i, c: cube(c) * 0.1 + square(c), b)
with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    custom = sd.function([b], [h, sd.grad(sd.sum(h), b)])
report["custom"] = all(np.allclose(g, w) for g, w in zip(custom(bv), sd.evaluate([h, sd.grad(sd.sum(h), b)], {b: bv})))
import numba
report["users_numba"] = float(numba.njit(lambda a: (a * a).sum())(np.ones(3)))
report["statuses"] = sorted({fn.cache_status for fn in (f, solve, loop, gather, custom)})
print(json.dumps(report))
"""


def test_a_fresh_process_loads_cached_kernels_without_numbas_registries(tmp_path):
    # The kernels load without Numba's registry refresh (cache._no_registry_refresh_on_cache_hits:
    # 0.18 -> 0.10 s warm start of the MLP); every runtime feature must still work in a process
    # that loaded them so, and a later compile of the user's own must still find the registries.
    env = dict(os.environ, SYMDIFF_CACHE_DIR=str(tmp_path / "cache"))
    reports = []
    for _ in range(2):
        result = subprocess.run([sys.executable, "-c", RUNTIME_SCRIPT], env=env, capture_output=True, text=True,
                                timeout=600)
        assert result.returncode == 0, f"the process died ({result.returncode}): {result.stderr[-3000:]}"
        reports.append(json.loads(result.stdout.strip().splitlines()[-1]))
    checks = {"custom": True, "mlp": True, "converted": True, "shape_error": True, "linalg": True,
              "linalg_error": True, "loop": True, "gather": True, "index_error": True, "sort": True,
              "users_numba": 3.0}
    first, second = reports
    assert first == {**checks, "registries_loaded": True, "statuses": ["miss"]}
    assert second == {**checks, "registries_loaded": False, "statuses": ["hit"]}


def _fresh_process(cache_dir, **env_extra) -> dict:
    env = dict(os.environ, SYMDIFF_CACHE_DIR=str(cache_dir), **{k: str(v) for k, v in env_extra.items()})
    result = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, f"the process died ({result.returncode}): {result.stderr}"
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_second_process_loads_from_cache_and_damaged_entries_are_rebuilt(tmp_path):
    cache, elsewhere = tmp_path / "cache", tmp_path / "elsewhere"
    first = _fresh_process(cache, NUMBA_CACHE_DIR=elsewhere / "numba", XDG_CACHE_HOME=elsewhere)
    assert first == {"status": "miss", "ok": True, "warnings": []}
    assert not elsewhere.exists()  # kernels land only in SYMDIFF_CACHE_DIR, not Numba's own places
    assert stat.S_IMODE(cache.stat().st_mode) == 0o700
    sources = list(cache.glob("sd_*.py"))
    compiled = sorted(path for path in (cache / "__pycache__").glob("sd_*") if path.suffix != ".pyc")
    assert len(sources) == 1 and {path.suffix for path in compiled} == {".nbi", ".nbc"}
    assert json.loads(next(cache.glob("sd_*.sha256")).read_text()).keys() == {p.name for p in compiled}
    assert _fresh_process(cache)["status"] == "hit"
    # a process that writes bytecode adds sd_<key>.cpython-*.pyc beside Numba's files:
    # still a healthy entry (counting it made the next process rebuild it as "damaged")
    assert _fresh_process(cache, PYTHONDONTWRITEBYTECODE="") == {"status": "hit", "ok": True, "warnings": []}
    assert _fresh_process(cache, PYTHONDONTWRITEBYTECODE="1") == {"status": "hit", "ok": True, "warnings": []}
    # kernel modules are imported from their source: bytecode beside them, damaged or
    # not, is never run (a flipped byte in a .pyc became a wrong kernel that later
    # processes loaded as a healthy "hit")
    import importlib.util

    from importlib import _bootstrap_external

    bytecode = importlib.util.cache_from_source(str(sources[0]))
    assert not os.path.exists(bytecode)
    marker = tmp_path / "the bytecode ran"
    planted = compile(sources[0].read_text() + f"\nopen({str(marker)!r}, 'w').close()\n", str(sources[0]), "exec")
    status = sources[0].stat()  # a valid header for this source: Python would trust it
    with open(bytecode, "wb") as handle:
        handle.write(_bootstrap_external._code_to_timestamp_pyc(planted, status.st_mtime, status.st_size))
    assert _fresh_process(cache, PYTHONDONTWRITEBYTECODE="")["ok"]
    assert not marker.exists()

    data = next(path for path in compiled if path.suffix == ".nbc")
    damaged = bytearray(data.read_bytes())
    damaged[len(damaged) // 2] ^= 0x40  # one byte flipped in place, same size: loading it crashed the process
    data.write_bytes(bytes(damaged))
    rebuilt = _fresh_process(cache)
    assert rebuilt["ok"] and rebuilt["status"] == "miss"
    assert len(rebuilt["warnings"]) == 1 and "checksums" in rebuilt["warnings"][0]
    # it is rebuilt in the cache, not in memory (the message said both), and the process's one
    # "compiling in memory" warning is kept for a cache that cannot be used
    assert "rebuilt in the cache" in rebuilt["warnings"][0] and "in memory" not in rebuilt["warnings"][0]
    assert _fresh_process(cache) == {"status": "hit", "ok": True, "warnings": []}  # the entry was rebuilt

    sources[0].write_text("garbage that is not the kernel's source\n")  # a damaged source file is rewritten
    again = _fresh_process(cache)
    assert again["ok"] and again["warnings"] == []
    assert "def kernel(in0_x)" in sources[0].read_text()


def test_unwritable_cache_dir_falls_back_with_one_warning(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a directory")
    report = _fresh_process(blocker / "cache")
    assert report["ok"] and report["status"] == "uncached"
    assert len(report["warnings"]) == 1 and "compiling in memory" in report["warnings"][0]


def test_same_function_twice_in_one_process_is_built_once():
    a, b = sd.scalars("a b")
    e = sd.exp(a) * b - a
    f = sd.function([a, b], [e, *sd.grad(e, [a, b])])
    g = sd.function([a, b], [e, *sd.grad(e, [a, b])])
    assert g.cache_status == "memory" and g.kernel is f.kernel
    assert g(1.0, 2.0) == f(1.0, 2.0)


def test_cache_key_depends_on_dtypes():
    from symdiff.backends.cache import cache_key

    for dtype in ("float64", "float32"):
        x = sd.vector("x", None, dtype)
        f = sd.function([x], sd.sum(sd.exp(x)))
        assert f(np.ones(3, dtype=dtype)) == pytest.approx(3 * np.e, rel=1e-6)
    k64 = cache_key(sd.function([sd.vector("x")], sd.sum(sd.vector("x"))).source)
    k32 = cache_key(sd.function([sd.vector("x", None, "float32")], sd.sum(sd.vector("x", None, "float32"))).source)
    assert k64 != k32
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        sd.function([sd.vector("x")], sd.sum(sd.vector("x")))  # no warning on a healthy cache


# ------------------------------------------------------------- trust, in-process


@pytest.fixture
def private_cache(tmp_path, monkeypatch):
    """A cache directory for this test, and the cache's warn-once flag reset."""
    from symdiff.backends import cache

    monkeypatch.setenv("SYMDIFF_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(cache, "_warned", False)
    return tmp_path / "cache"


_UNIQUE = iter(range(10**6))


def _build(dtype="float64"):
    """A small function whose kernel this process has not built before."""
    x = sd.vector("x", None, dtype)
    constant = 1.0 + next(_UNIQUE) / 1024 + os.getpid() % 1000  # a new source, so a new cache entry
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        f = sd.function([x], sd.sum(x * constant))
    assert f(np.ones(2, dtype)) == pytest.approx(2 * constant)
    return f.cache_status, [str(w.message) for w in caught]


def test_cache_directory_writable_by_others_is_refused(private_cache):
    private_cache.mkdir(mode=0o700)
    os.chmod(private_cache, 0o777)
    status, caught = _build()
    assert status == "uncached" and len(caught) == 1
    assert "may be written by other users" in caught[0] and "chmod 700" in caught[0]
    assert not list(private_cache.glob("sd_*"))  # nothing written into it either


def test_group_writable_files_are_fine_in_a_private_directory_but_not_in_a_shared_one(private_cache):
    status, caught = _build()
    assert status == "miss" and caught == []
    for path in list(private_cache.glob("sd_*")) + list((private_cache / "__pycache__").glob("sd_*")):
        os.chmod(path, 0o664)  # what Numba writes under a umask of 002
    assert _build()[0] == "miss"  # other entries in the 0700 directory: still used
    os.chmod(private_cache, 0o775)  # the group may now reach (and write) the entries: refused
    status, caught = _build()
    assert status == "uncached" and "may be written by other users" in caught[0]


@pytest.mark.skipif(not hasattr(os, "getuid") or os.getuid() != 0, reason="only root can give a file away")
def test_entry_owned_by_another_user_is_refused(private_cache):
    from symdiff.backends import cache

    status, _ = _build()
    key = next(private_cache.glob("sd_*.py")).stem
    cache._in_memory.clear()  # load it from disk again
    for path in (private_cache / "__pycache__").glob(key + ".*"):
        os.chown(path, 12345, 12345)
    source_path = private_cache / (key + ".py")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        kernel, status = cache.load(source_path.read_text())
    assert status == "uncached" and "belongs to another user" in str(caught[0].message)


def test_unusable_pycache_never_falls_back_to_numbas_own_cache(private_cache, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    private_cache.mkdir(mode=0o700)
    (private_cache / "__pycache__").write_text("a file where the directory should be")
    status, caught = _build()
    assert status == "uncached" and len(caught) == 1 and "not using the kernel cache" in caught[0]
    assert not (tmp_path / "xdg").exists()

