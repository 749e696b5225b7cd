"""Regression tests for issue 15: wrong numbers at large logits and in the sigmoid's
tails, integers that wrapped, one casting policy for both backends, and the rough
edges a new user hits first.  Each test failed on the code before its fix.

Compiled checks share one kernel per concern (compiles are slow).
"""

from __future__ import annotations

import importlib.util
import pathlib
import runpy
import sys

import mpmath
import numpy as np
import pytest

import symdiff as sd
from symdiff.errors import InputTypeError

pytestmark = pytest.mark.filterwarnings("ignore:Code running in object mode")


def _both(inputs, outputs, values):
    """(compiled, reference) results of ``outputs`` at ``values`` (given in inputs order)."""
    compiled = sd.function(inputs, outputs)(*values)
    reference = sd.evaluate(outputs, dict(zip(inputs, values)))
    return compiled, reference


def _relative_error(got, want):
    got, want = np.asarray(got, dtype=np.float64), np.asarray(want, dtype=np.float64)
    return np.max(np.abs(got - want) / np.abs(want))


# ------------------------------------------------------------ 1: large logits


def test_softmax_and_log_softmax_do_not_cancel_at_large_logits():
    x32, x64 = sd.vector("x32", 2, dtype="float32"), sd.vector("x64", 2)
    outputs = [sd.softmax(x32), sd.log_softmax(x32), sd.logsumexp(x32),
               sd.softmax(x64), sd.log_softmax(x64), sd.logsumexp(x64)]
    for big32, big64 in ((1e7, 1e15), (1e8, 1e300), (-3e38, -1e308)):
        values = (np.array([big32, big32], np.float32), np.array([big64, big64]))
        for results in _both([x32, x64], outputs, values):
            p32, logp32, lse32, p64, logp64, lse64 = results
            np.testing.assert_array_equal(p32, np.float32([0.5, 0.5]))
            np.testing.assert_array_equal(p64, [0.5, 0.5])
            np.testing.assert_allclose(logp32, np.float32([-np.log(2)] * 2), rtol=1e-7)
            np.testing.assert_allclose(logp64, [-np.log(2)] * 2, rtol=1e-15)
            assert lse32 == np.float32(big32) + np.float32(np.log(2)) and lse64 == big64 + np.log(2)


def test_softmax_tail_has_relative_accuracy():
    x = sd.vector("x", 3)
    point = np.array([0.0, -700.0, -30.0])
    compiled, reference = _both([x], [sd.softmax(x), sd.log_softmax(x)], (point,))
    with mpmath.workdps(50):
        exps = [mpmath.exp(mpmath.mpf(v)) for v in point]
        want = [float(e / mpmath.fsum(exps)) for e in exps]
        want_log = [float(mpmath.log(e / mpmath.fsum(exps))) for e in exps]
    for p, logp in (compiled, reference):
        assert _relative_error(p, want) < 4e-16
        assert _relative_error(logp, want_log) < 4e-16


def test_logsumexp_hessian_keeps_relative_accuracy():
    """The diagonal of the Hessian at the dominant logit is p (1 - p) with p ~ 1: it was 0."""
    x, v = sd.vector("x", 2), sd.vector("v", 2)
    cost = sd.logsumexp(x)
    outputs = [sd.hvp(cost, x, v, mode="rev-rev"), sd.hvp(cost, x, v, mode="fwd-rev"), sd.hessian(cost, x),
               sd.hessian(sd.sum(sd.log_softmax(x) * sd.constant([1.0, 0.0])), x)]
    with mpmath.workdps(50):
        p0 = 1 / (1 + mpmath.exp(-60))
        curvature = float(p0 * (1 - p0))  # 8.756e-27
    want_h = np.array([[curvature, -curvature], [-curvature, curvature]])
    for results in _both([x, v], outputs, (np.array([30.0, -30.0]), np.array([1.0, -2.0]))):
        hv_rev, hv_fwd, hessian, hessian_log_softmax = results
        for hv in (hv_rev, hv_fwd):
            assert _relative_error(hv, [3 * curvature, -3 * curvature]) < 1e-14
        assert _relative_error(hessian, want_h) < 1e-14
        assert _relative_error(hessian_log_softmax, -want_h) < 1e-14


def test_logsumexp_hessian_at_tied_logits():
    """Tied maxima (zero-initialised weights) were counted as constants: the Hessian of
    logsumexp and log_softmax at x = 0 was exactly 0 instead of diag(p) - p p^T."""
    x, v = sd.vector("x", 3), sd.vector("v", 3)
    cost = sd.logsumexp(x)
    outputs = [sd.hessian(cost, x), sd.hvp(cost, x, v, mode="fwd-rev"),
               sd.hessian(sd.sum(sd.log_softmax(x) * sd.constant([1.0, 0.0, 0.0])), x)]
    for point in (np.zeros(3), np.array([2.0, 2.0, -1.0])):
        p = np.exp(point - point.max())
        p /= p.sum()
        want = np.diag(p) - np.outer(p, p)
        tangent = np.array([1.0, -2.0, 0.5])
        for hessian, hv, hessian_log_softmax in _both([x, v], outputs, (point, tangent)):
            np.testing.assert_allclose(hessian, want, rtol=1e-14, atol=1e-16)
            np.testing.assert_allclose(hv, want @ tangent, rtol=1e-14, atol=1e-16)
            np.testing.assert_allclose(hessian_log_softmax, -want, rtol=1e-14, atol=1e-16)


def test_logsumexp_and_softmax_over_an_empty_axis_are_scipys():
    """Their maximum had no identity: over an empty axis they raised 'max over an empty axis
    ... give a start value (max(..., initial=...))', a call the user never wrote.  SciPy's
    logsumexp of an empty axis is -inf; softmax and log_softmax of one are empty."""
    X, x = sd.matrix("X"), sd.vector("x")
    rows = sd.logsumexp(X, axis=1)
    outputs = [rows, sd.grad(sd.sum(rows), X), sd.softmax(X, axis=0), sd.log_softmax(X, axis=0),
               sd.logsumexp(x), sd.grad(sd.logsumexp(x), x)]
    for result in _both([X, x], outputs, (np.zeros((3, 0)), np.zeros(0))):
        np.testing.assert_array_equal(result[0], [-np.inf] * 3)
        assert [np.shape(r) for r in result[1:]] == [(3, 0), (3, 0), (3, 0), (), (0,)]
        assert result[4] == -np.inf


# ----------------------------------------------------- 3: the sigmoid's tails


def test_sigmoid_derivatives_keep_relative_accuracy_in_the_tails():
    t64, t32 = sd.scalar("t64"), sd.scalar("t32", "float32")
    outputs = []
    for t in (t64, t32):
        d1 = sd.grad(sd.sigmoid(t), t)
        outputs += [d1, sd.grad(d1, t), sd.grad(sd.grad(sd.softplus(t), t), t)]
    points = ((40.0, np.float32(17.0)), (-700.0, np.float32(-80.0)), (700.0, np.float32(20.0)))
    for x64, x32 in points:
        with mpmath.workdps(60):
            def sigmoid_derivatives(x):  # in terms of e = exp(-x): no 1 - s to cancel
                e = mpmath.exp(-mpmath.mpf(float(x)))
                first = e / (1 + e) ** 2
                return first, first * (e - 1) / (e + 1)
            d64, dd64 = sigmoid_derivatives(x64)
            d32, dd32 = sigmoid_derivatives(x32)
        want = [float(d64), float(dd64), float(d64), float(d32), float(dd32), float(d32)]
        compiled, reference = _both([t64, t32], outputs, (x64, x32))
        for k, (c, r, w) in enumerate(zip(compiled, reference, want)):
            tolerance = 1e-14 if k < 3 else 2e-6
            assert _relative_error(c, w) < tolerance, (x64, x32, k, c, w)
            assert _relative_error(r, w) < tolerance, (x64, x32, k, r, w)


# ------------------------------------------- 2 and 14: one casting policy


@pytest.fixture(scope="module")
def casting_fns():
    i, f, g, b = sd.scalar("i", "int64"), sd.scalar("f"), sd.scalar("g", "float32"), sd.scalar("b", "bool")
    v = sd.vector("v", dtype="int64")
    inputs, outputs = [i, f, g, b, v], [i + 0, f * 1, g * 1, sd.logical_not(b), sd.sum(v)]
    return [sd.function(inputs, outputs, backend=backend) for backend in ("numba", "numpy")], inputs, outputs


GOOD = (3, 1.5, np.float32(2.0), True, [1, 2])
REFUSED = [  # (argument position, value): what the policy refuses, and why
    (0, 2**64 - 1), (0, 2**63), (0, -2**63 - 1), (0, np.uint64(3)), (0, 2.0), (0, np.float64(2.0)),
    (1, 10**400), (1, np.complex128(1)), (1, "1.0"),
    (2, np.float64(2.5)), (2, np.int64(3)), (2, 1e300), (2, 10**39), (2, -1e39),
    (3, 1), (3, np.int64(1)),
    (4, [1, 2**64 - 1]), (4, [1, 2**63]), (4, np.array([1, 2], np.uint64)), (4, [1.0, 2.0]),
]
ACCEPTED = [  # (argument position, value, result)
    (0, 2**63 - 1, 2**63 - 1), (0, np.int32(-4), -4), (0, True, 1),
    (1, 2**70, 2.0**70), (1, 2**64 - 1, 2.0**64), (1, np.float32(0.5), 0.5), (1, np.uint64(3), 3.0),
    (1, np.int64(2**62), 2.0**62),
    (2, 3, 3.0), (2, 0.1, np.float32(0.1)), (2, 3.4028235e38, np.float32(3.4028235e38)), (2, float("inf"), np.inf),
    (3, np.bool_(False), True),
    (4, [2**62, 2**62 - 1], 2**63 - 1), (4, np.array([1, 2], np.int32), 3),
]


@pytest.mark.parametrize("position, value", REFUSED, ids=repr)
def test_both_backends_refuse_what_the_policy_refuses(casting_fns, position, value):
    functions, inputs, _ = casting_fns
    args = list(GOOD)
    args[position] = value
    for fn in functions:
        with pytest.raises(InputTypeError, match=repr(inputs[position].name)):
            fn(*args)
    with pytest.raises(InputTypeError):
        sd.evaluate(casting_fns[2][position], {s: a for s, a in zip(inputs, args)})


@pytest.mark.parametrize("position, value, want", ACCEPTED, ids=repr)
def test_both_backends_accept_what_the_policy_accepts(casting_fns, position, value, want):
    functions, inputs, _ = casting_fns
    args = list(GOOD)
    args[position] = value
    compiled, reference = [fn(*args)[position] for fn in functions]
    assert reference == want and reference.dtype == np.dtype(inputs[position].dtype), (reference, want)
    assert compiled == want, (compiled, want)  # 0-d results of the compiled backend are Python scalars


def test_huge_python_ints_never_wrap():
    """2**64 - 1 arrived as -1 in all three paths."""
    k = sd.scalar("k", "int64")
    for call in (lambda: sd.evaluate(k * 1, {k: 2**64 - 1}), lambda: sd.function([k], k * 1)(2**64 - 1),
                 lambda: sd.function([k], k * 1, backend="numpy")(2**64 - 1)):
        with pytest.raises(InputTypeError, match="does not fit int64"):
            call()


# ---------------------------------------------- 16: sparse derivatives compile


@pytest.mark.parametrize("backend", ["numba", "numpy"])
def test_a_sparse_hessian_compiles_directly(backend):
    """sd.function([x], sd.hessian(f, x, sparse=True)) raised a bare TypeError."""
    scipy_sparse = pytest.importorskip("scipy.sparse")
    x = sd.vector("x", 6)
    cost = sd.sum(x[1:] * sd.exp(x[:-1]))
    H = sd.hessian(cost, x, sparse=True)
    point = np.linspace(-1, 1, 6)
    dense = sd.evaluate(sd.hessian(cost, x), {x: point})
    matrix = sd.function([x], H, backend=backend)(point)
    assert scipy_sparse.issparse(matrix)
    np.testing.assert_allclose(matrix.toarray(), dense, rtol=1e-13)
    value, triple, gradient = sd.function([x], [cost, H, sd.grad(cost, x)], backend=backend,
                                          sparse_format="coo")(point)
    rows, cols, values = triple
    np.testing.assert_allclose(dense[rows, cols], values, rtol=1e-13)
    assert np.count_nonzero(dense) <= len(values) < dense.size
    np.testing.assert_allclose(gradient, sd.evaluate(sd.grad(cost, x), {x: point}))
    with pytest.raises(ValueError, match="sparse_format"):
        sd.function([x], H, sparse_format="csc")


# ----------------------------------------------------------- 19: the examples


EXAMPLES = pathlib.Path(__file__).resolve().parent.parent / "examples"


@pytest.mark.parametrize("example, blocked, argv", [
    ("newton_rosenbrock.py", ("scipy",), []),
    ("sparse_newton.py", ("scipy",), []),
    ("train_mlp.py", ("sklearn",), ["--epochs", "1"]),
])
def test_examples_without_their_extra_name_it(monkeypatch, example, blocked, argv):
    """They died with a bare ModuleNotFoundError."""
    for name in list(sys.modules):
        if name.split(".")[0] in blocked:
            monkeypatch.delitem(sys.modules, name)
    for name in blocked:
        monkeypatch.setitem(sys.modules, name, None)  # import name raises ImportError
    monkeypatch.setattr(sys, "argv", [example] + argv)
    with pytest.raises(SystemExit) as stopped:
        runpy.run_path(str(EXAMPLES / example), run_name="__main__")
    assert "symdiff[examples]" in str(stopped.value.code)


def test_train_mlp_prints_each_epochs_own_time(capsys):
    pytest.importorskip("sklearn")
    spec = importlib.util.spec_from_file_location("train_mlp_example", EXAMPLES / "train_mlp.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.main(["--backend", "numpy", "--epochs", "2", "--batch-size", "256"])
    epochs = [line for line in capsys.readouterr().out.splitlines() if line.startswith("epoch ")]
    assert len(epochs) == 2 and all(" epoch " in line and "(total " in line for line in epochs)
