"""The on-disk kernel cache: hits in a fresh process, corrupt and unwritable caches."""

from __future__ import annotations

import json
import os
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


def _fresh_process(cache_dir) -> dict:
    env = dict(os.environ, SYMDIFF_CACHE_DIR=str(cache_dir))
    result = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_second_process_loads_from_cache_and_corrupt_entries_are_rebuilt(tmp_path):
    first = _fresh_process(tmp_path)
    assert first == {"status": "miss", "ok": True, "warnings": []}
    sources = list(tmp_path.glob("sd_*.py"))
    compiled = list((tmp_path / "__pycache__").glob("sd_*"))
    assert len(sources) == 1 and compiled
    assert _fresh_process(tmp_path)["status"] == "hit"

    for path in compiled:  # corrupt Numba's index and data files
        path.write_bytes(b"\x80\x04 not a pickle" + os.urandom(64))
    rebuilt = _fresh_process(tmp_path)
    assert rebuilt["ok"] and rebuilt["status"] in ("miss", "uncached")
    assert _fresh_process(tmp_path) == {"status": "hit", "ok": True, "warnings": []}  # the entry was rebuilt

    sources[0].write_text("garbage that is not the kernel's source\n")  # a damaged source file is rewritten
    again = _fresh_process(tmp_path)
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
