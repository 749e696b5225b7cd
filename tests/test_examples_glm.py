"""examples/glm.py: Poisson and multinomial GLMs fitted by trust-ncg agree with scikit-learn.

The quick run goes in a fresh process with single-threaded BLAS (SciPy and
scikit-learn slow down many times over when BLAS threads compete for the cores of
a busy machine), on sd.function's default backend; its printed agreement lines are
checked against the numbers main() returns.  The losses' gradients and HVPs are
also checked here against hand-written NumPy, on the reference backend.
"""

import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("scipy")
pytest.importorskip("sklearn", reason="scikit-learn is not installed (pip install -e '.[examples]'): "
                                      "the example compares with its estimators and uses its digits")

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "glm.py"
NUMBER = r"([-+0-9.e]+)"


@pytest.fixture(scope="module")
def glm():
    spec = importlib.util.spec_from_file_location("glm_example", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_quick():
    code = (
        "import json, runpy\n"
        f"namespace = runpy.run_path({str(EXAMPLE)!r})\n"
        "print(json.dumps(namespace['main'](['--quick'])))\n"
    )
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr
    *printed, result = done.stdout.strip().splitlines()
    return "\n".join(printed), json.loads(result)


def printed_agreement(printed, label):
    match = re.search(re.escape(label) + rf": max \|symdiff - sklearn\| = {NUMBER} \(relative {NUMBER}\)", printed)
    assert match, f"no agreement line for {label!r} in:\n{printed}"
    return float(match.group(1)), float(match.group(2))


def test_quick_run_agrees_with_sklearn():
    printed, result = run_quick()
    poisson, multinomial = result["poisson"], result["multinomial"]
    # The printed lines are the numbers main() returned (3 significant digits).
    for label, part, key in [("coefficients and intercept", poisson, "coef"),
                             ("coefficients W", multinomial, "coef"),
                             ("centred intercepts", multinomial, "intercept")]:
        diff, relative = printed_agreement(printed, label)
        assert diff == pytest.approx(part[f"{key}_diff"], rel=1e-3), label
        assert relative == pytest.approx(part[f"{key}_relative"], rel=1e-3), label
    # Both fits converge to gradients near 1e-12 (symdiff) and 1e-14 (sklearn's Newton),
    # which leaves ~1e-11 (Poisson) and ~1e-9 (digits) between the coefficients.
    assert poisson["coef_relative"] < 1e-8, printed
    assert multinomial["coef_relative"] < 1e-6 and multinomial["intercept_relative"] < 1e-6, printed
    # Same objective, to rounding: symdiff's fit is no worse than sklearn's, and the compiled
    # objective at sklearn's fit is what SciPy's pmf / sklearn's log_loss + penalty give.
    for part, other in [(poisson, "scipy_objective"), (multinomial, "sklearn_own_objective")]:
        assert part["objective"] <= part["sklearn_objective"] + 1e-14, printed
        assert part["sklearn_objective"] == pytest.approx(part[other], rel=1e-13), printed
    assert multinomial["accuracy"] > 0.93 and multinomial["accuracy"] == multinomial["sklearn_accuracy"], printed
    assert re.search(rf"test accuracy: symdiff {NUMBER}, sklearn {NUMBER}", printed)
    assert "trust-ncg" in printed and "HVP calls" in printed


def test_losses_match_hand_written_numpy(glm):
    """Value, gradient and HVP of both losses (reference backend) against NumPy formulas."""
    rng = np.random.default_rng(3)
    n, p, k, C = 37, 6, 4, 0.7

    # Poisson: d/dw = X^T (mu - y) / n, H v = X^T (mu * (X v_w + v_b)) / n.
    objective = glm.FlatObjective(*glm.poisson_loss(), backend="numpy")
    X, y = rng.standard_normal((n, p)), rng.poisson(2.0, n)
    w, b, v_w, v_b = rng.standard_normal(p) * 0.3, 0.4, rng.standard_normal(p), -0.8
    value, g_w, g_b = objective.value_and_grad(w, b, X, y)
    eta = X @ w + b
    mu = np.exp(eta)
    from scipy.special import gammaln
    assert value == pytest.approx(np.mean(mu - y * eta + gammaln(y + 1.0)), rel=1e-14)
    np.testing.assert_allclose(g_w, X.T @ (mu - y) / n, rtol=1e-12)
    assert g_b == pytest.approx(np.mean(mu - y), rel=1e-12)
    h_w, h_b = objective.hvp(w, b, X, y, v_w, v_b)
    curvature = mu * (X @ v_w + v_b) / n
    np.testing.assert_allclose(h_w, X.T @ curvature, rtol=1e-12)
    assert h_b == pytest.approx(curvature.sum(), rel=1e-12)

    # Multinomial: d/dZ = (P - onehot) / n, H v through dP = P * (dZ - sum(P * dZ)).
    objective = glm.FlatObjective(*glm.multinomial_loss(C), backend="numpy")
    y = rng.integers(0, k, n)
    W, V_W = rng.standard_normal((p, k)), rng.standard_normal((p, k))
    b, v_b = rng.standard_normal(k), rng.standard_normal(k)
    value, g_W, g_b = objective.value_and_grad(W, b, X, y)
    Z = X @ W + b
    log_probs = Z - Z.max(axis=1, keepdims=True)
    log_probs -= np.log(np.exp(log_probs).sum(axis=1, keepdims=True))
    P = np.exp(log_probs)
    assert value == pytest.approx(-np.mean(log_probs[np.arange(n), y]) + 0.5 * np.sum(W ** 2) / (C * n), rel=1e-14)
    residual = P - np.eye(k)[y]
    np.testing.assert_allclose(g_W, X.T @ residual / n + W / (C * n), rtol=1e-12)
    np.testing.assert_allclose(g_b, residual.sum(axis=0) / n, rtol=1e-12, atol=1e-16)
    h_W, h_b = objective.hvp(W, b, X, y, V_W, v_b)
    dZ = X @ V_W + v_b
    dP = P * (dZ - np.sum(P * dZ, axis=1, keepdims=True)) / n
    np.testing.assert_allclose(h_W, X.T @ dP + V_W / (C * n), rtol=1e-12)
    np.testing.assert_allclose(h_b, dP.sum(axis=0), rtol=1e-12, atol=1e-16)

    # The flat view SciPy sees: the same numbers, concatenated in the parameters' order.
    fun, hessp, unflatten, size = objective.bind([(p, k), (k,)], X, y)
    theta, v = np.concatenate([W.ravel(), b]), np.concatenate([V_W.ravel(), v_b])
    assert size == p * k + k
    flat_value, flat_grad = fun(theta)
    assert flat_value == value
    np.testing.assert_array_equal(flat_grad, np.concatenate([g_W.ravel(), g_b]))
    np.testing.assert_array_equal(hessp(theta, v), np.concatenate([h_W.ravel(), h_b]))
