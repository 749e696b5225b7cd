"""examples/train_mlp.py trains the digits MLP to at least 95% test accuracy.

The example runs in this process (its ``main`` takes argv), once per backend of
``sd.function``; no timing is asserted (speed lives in benchmarks/).
"""

import importlib.util
from pathlib import Path

import pytest

pytest.importorskip("sklearn", reason="scikit-learn is not installed (pip install -e '.[examples]'): "
                                      "the example trains on its bundled digits")

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "train_mlp.py"


def _numba_backend_missing() -> bool:
    try:
        return importlib.util.find_spec("symdiff.backends.numba_backend") is None
    except ModuleNotFoundError:
        return True


@pytest.fixture(scope="module")
def train_mlp():
    spec = importlib.util.spec_from_file_location("train_mlp_example", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("backend", [
    "numpy",
    pytest.param("numba", marks=pytest.mark.skipif(_numba_backend_missing(),
                                                   reason="symdiff's Numba backend is not there yet")),
])
def test_reaches_95_percent(train_mlp, backend, capsys):
    result = train_mlp.main(["--backend", backend, "--epochs", "20"])
    printed = capsys.readouterr().out
    assert result["accuracy"] >= 0.95, printed
    assert sum(line.startswith("epoch ") for line in printed.splitlines()) == 20
    assert f"final test accuracy {result['accuracy']:.4f}" in printed


def test_sgd_also_learns(train_mlp, capsys):
    result = train_mlp.main(["--backend", "numpy", "--optimizer", "sgd", "--epochs", "20"])
    capsys.readouterr()
    assert result["accuracy"] >= 0.95


def test_step_matches_a_hand_written_backward_pass(train_mlp):
    """The example's one function computes the mean cross-entropy, the logits and
    the gradient a hand-written NumPy backward pass gives."""
    import numpy as np

    step = train_mlp.build_step(64, "numpy")
    rng = np.random.default_rng(1)
    params = train_mlp.init_params(64, rng)
    X = rng.uniform(0, 1, (7, 64))
    Y = np.eye(10)[rng.integers(0, 10, 7)]
    loss, logits, *grads = step(*params, X, Y)
    W1, b1, W2, b2 = params
    hidden = np.tanh(X @ W1 + b1)
    expected_logits = hidden @ W2 + b2
    shifted = expected_logits - expected_logits.max(axis=1, keepdims=True)
    probs = np.exp(shifted) / np.exp(shifted).sum(axis=1, keepdims=True)
    np.testing.assert_allclose(logits, expected_logits, rtol=1e-12)
    np.testing.assert_allclose(loss, -np.mean(np.sum(Y * np.log(probs), axis=1)), rtol=1e-12)
    d_logits = (probs - Y) / len(X)
    d_pre = (d_logits @ W2.T) * (1 - hidden ** 2)
    for got, want in zip(grads, [X.T @ d_pre, d_pre.sum(0), hidden.T @ d_logits, d_logits.sum(0)]):
        np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-14)
