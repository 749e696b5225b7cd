"""examples/gaussian_process.py fits the GP hyperparameters that scikit-learn fits.

The example runs in this process (its ``main`` takes argv) on the first rows of the
diabetes data; no timing is asserted (speed lives in benchmarks/linalg.py).
"""

import importlib.util
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("sklearn", reason="scikit-learn is not installed (pip install -e '.[examples]')")
pytest.importorskip("scipy.optimize")

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "gaussian_process.py"


@pytest.fixture(scope="module")
def example():
    spec = importlib.util.spec_from_file_location("gaussian_process_example", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("backend", ["numba", "numpy"])
def test_same_optimum_as_scikit_learn(example, backend, capsys):
    result = example.main(["--rows", "150", "--backend", backend])
    printed = capsys.readouterr().out
    ours, theirs = result["symdiff"], result["sklearn"]
    assert abs(ours["nll"] - theirs["nll"]) <= 1e-6 * abs(theirs["nll"]), printed
    for name in ("lengthscale", "signal", "noise"):
        np.testing.assert_allclose(ours[name], theirs[name], rtol=1e-3, err_msg=f"{name}\n{printed}")
    assert "scikit-learn" in printed and f"symdiff {backend}" in printed


def test_likelihood_and_gradient_match_scikit_learn(example):
    """At a point away from the optimum: value and gradient against sklearn's own."""
    from sklearn.gaussian_process import GaussianProcessRegressor
    from sklearn.gaussian_process.kernels import RBF, ConstantKernel, WhiteKernel

    X, y = example.load(80)
    f = example.build(X.shape[1], "numba")
    theta = np.log([2.0, 0.7, 0.3])  # lengthscale, signal, noise
    value, gradient = f(X, y, theta)
    kernel = ConstantKernel(0.7) * RBF(2.0) + WhiteKernel(0.3)
    gp = GaussianProcessRegressor(kernel, alpha=0.0, optimizer=None).fit(X, y)
    lml, lml_gradient = gp.log_marginal_likelihood(gp.kernel_.theta, eval_gradient=True)
    np.testing.assert_allclose(value, -lml, rtol=1e-10)
    np.testing.assert_allclose(gradient, -lml_gradient[[1, 0, 2]], rtol=1e-8)
