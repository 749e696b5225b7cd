"""examples/rnn_digits.py and examples/ode_fit.py end to end, shortened (the reference
backend, fewer epochs or steps: the examples' compiled kernels are the same graphs,
checked against the reference in tests/test_loops.py).  No timing is asserted."""

import importlib.util
from pathlib import Path

import numpy as np
import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def _load(name):
    spec = importlib.util.spec_from_file_location(f"{name}_example", EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_rnn_reads_digits_row_by_row(capsys):
    pytest.importorskip("sklearn", reason="scikit-learn is not installed (pip install -e '.[examples]')")
    result = _load("rnn_digits").main(["--backend", "numpy", "--epochs", "9"])
    printed = capsys.readouterr().out
    assert result["accuracy"] >= 0.95, printed
    assert f"final test accuracy {result['accuracy']:.4f}" in printed


def test_ode_fit_recovers_the_parameters(capsys):
    pytest.importorskip("scipy")
    result = _load("ode_fit").main(["--backend", "numpy", "--steps", "30", "--horizon", "7.5", "--every", "2"])
    printed = capsys.readouterr().out
    assert np.all(np.abs(result["fitted"] / result["true"] - 1) < 0.05), printed
    assert "parameter     true    start   fitted" in printed
