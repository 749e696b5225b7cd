"""Run the Newton examples (examples/newton_rosenbrock.py, examples/sparse_newton.py).

Each runs in a fresh process with single-threaded BLAS: SciPy's L-BFGS-B and
dense BFGS slow down many times over when BLAS threads compete for the cores of a
busy machine.  The examples use sd.function's default backend.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("scipy")

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def run_main(script: str, call: str):
    """Run ``main`` of an example in a new process; its printed output and returned value."""
    code = (
        "import json, runpy\n"
        f"namespace = runpy.run_path({str(EXAMPLES / script)!r})\n"
        f"print(json.dumps(namespace['main']{call}))\n"
    )
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    *printed, result = done.stdout.strip().splitlines()
    return "\n".join(printed), json.loads(result)


def test_newton_rosenbrock_reaches_the_minimum():
    printed, rows = run_main("newton_rosenbrock.py", "(n=1000, budget=0.3)")
    assert "trust-ncg" in printed and "BFGS" in printed and "finite-difference gradient" in printed
    by_label = {(row["method"], row["derivatives"]): row for row in rows}
    for method in ("trust-ncg", "Newton-CG"):
        row = by_label[(method, "symdiff gradient + HVP (fwd-rev)")]
        assert row["converged"] and row["error"] < 1e-6 and row["f"] < 1e-10, row
    assert by_label[("L-BFGS-B", "symdiff gradient")]["error"] < 1e-4
    assert len(rows) == 6 and all(row["iterations"] > 0 for row in rows)


def test_sparse_newton_solves_with_three_colours():
    printed, result = run_main("sparse_newton.py", "(n=20000)")
    assert "3 colours" in printed
    assert result["n_colors"] == 3
    assert result["error"] < 1e-6 and result["f"] < 1e-12
