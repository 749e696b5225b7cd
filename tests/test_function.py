"""``sd.function``: the interface both backends share, the call path and bad input.

Numba kernels are built once per session (fixtures) and shared by many checks.
"""

from __future__ import annotations

import threading

import numpy as np
import pytest

import symdiff as sd

BACKENDS = ["numpy", "numba"]
# Object-mode blocks (NumPy ufuncs) make Numba warn under pytest's warning capture; expected.
pytestmark = pytest.mark.filterwarnings("ignore:Code running in object mode")


def _seed():
    a, b = sd.scalars("a b")
    e = (a + b) * (b + 1)
    return [a, b], [e, *sd.grad(e, [a, b])]


def _rosenbrock():
    x = sd.vector("x")
    r = sd.sum(100 * (x[1:] - x[:-1] ** 2) ** 2 + (1 - x[:-1]) ** 2)
    return [x], [r, sd.grad(r, x)]


def _mlp(dtype="float64"):
    X = sd.matrix("X", (None, 6), dtype)
    Y = sd.matrix("Y", (None, 3), dtype)
    W1 = sd.matrix("W1", (6, 64), dtype)  # 64 hidden units: tanh runs as NumPy's ufunc (object mode)
    b1 = sd.vector("b1", 64, dtype)
    W2 = sd.matrix("W2", (64, 3), dtype)
    h = sd.tanh(X @ W1 + b1)
    loss = -sd.mean(sd.sum(Y * sd.log_softmax(h @ W2, axis=1), axis=1))
    inputs = [X, Y, W1, b1, W2]
    return inputs, [loss, *sd.grad(loss, [W1, b1, W2])]


def _mlp_values(n, dtype=np.float64, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.normal(size=(n, 6)).astype(dtype), np.eye(3, dtype=dtype)[rng.integers(0, 3, n)],
            rng.normal(size=(6, 64)).astype(dtype), rng.normal(size=64).astype(dtype),
            rng.normal(size=(64, 3)).astype(dtype)]


@pytest.fixture(scope="session")
def seed_fns():
    inputs, outputs = _seed()
    return {b: sd.function(inputs, outputs, backend=b) for b in BACKENDS}


@pytest.fixture(scope="session")
def rosen_fns():
    inputs, outputs = _rosenbrock()
    return {b: sd.function(inputs, outputs, backend=b) for b in BACKENDS}, outputs


@pytest.fixture(scope="session")
def mlp_fns():
    inputs, outputs = _mlp()
    return {b: sd.function(inputs, outputs, backend=b) for b in BACKENDS}


@pytest.mark.parametrize("backend", BACKENDS)
def test_seed_values_and_result_kinds(seed_fns, backend):
    f = seed_fns[backend]
    e, da, db = f(2.0, 1.0)
    assert (e, da, db) == (6.0, 2.0, 5.0)
    assert all(isinstance(v, (float, np.floating)) for v in (e, da, db))
    assert f(a=2.0, b=1.0) == f(2.0, 1.0) == f(2, 1)  # keywords by symbol name; ints for float inputs


def test_single_output_is_not_a_tuple():
    x = sd.vector("x")
    for backend in BACKENDS:
        f = sd.function(x, sd.sum(x * x), backend=backend)
        assert float(f(np.array([1.0, 2.0]))) == 5.0
        g = sd.function([x], [sd.sum(x)], backend=backend)
        assert isinstance(g(np.ones(2)), tuple) and len(g(np.ones(2))) == 1


@pytest.mark.parametrize("backend", BACKENDS)
def test_rosenbrock_matches_reference(rosen_fns, backend):
    fns, outputs = rosen_fns
    x0 = np.random.default_rng(0).normal(size=50)
    value, gradient = fns[backend](x0)
    want_value, want_gradient = sd.evaluate(outputs, {"x": x0})
    np.testing.assert_allclose(value, want_value, rtol=1e-12)
    np.testing.assert_allclose(gradient, want_gradient, rtol=1e-12)


def test_none_dims_two_sizes_one_kernel(mlp_fns):
    f, ref = mlp_fns["numba"], mlp_fns["numpy"]
    for n in (7, 31):
        values = _mlp_values(n)
        for got, want in zip(f(*values), ref(*values)):
            np.testing.assert_allclose(got, want, rtol=1e-11, atol=1e-13)
    assert len(f.kernel.signatures) == 1  # no recompilation for the second size


def test_float32_end_to_end():
    inputs, outputs = _mlp("float32")
    f = sd.function(inputs, outputs)
    values = _mlp_values(9, np.float32)
    got = f(*values)
    want = sd.evaluate(outputs, dict(zip(inputs, values)))
    for g, w in zip(got[1:], want[1:]):
        assert g.dtype == np.float32
        np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(got[0], want[0], rtol=1e-5)


def test_outputs_never_alias_inputs_or_each_other():
    x = sd.vector("x")
    y = x * 2
    for backend in BACKENDS:
        f = sd.function([x], [x, y, y, sd.reshape(y, (2, -1)), sd.stop_gradient(x)], backend=backend)
        x0 = np.arange(4.0)
        outs = f(x0)
        arrays = [np.asarray(o) for o in outs]
        for k, a in enumerate(arrays):
            assert not np.shares_memory(a, x0), (backend, k)
            for b in arrays[k + 1:]:
                assert not np.shares_memory(a, b), (backend, k)
        np.testing.assert_array_equal(outs[3], (x0 * 2).reshape(2, 2))


def test_inputs_unchanged_and_strided_or_readonly_inputs(mlp_fns):
    f, ref = mlp_fns["numba"], mlp_fns["numpy"]
    values = _mlp_values(12)
    copies = [v.copy() for v in values]
    f(*values)
    for v, c in zip(values, copies):
        np.testing.assert_array_equal(v, c)
    strided = [np.asfortranarray(values[0]), values[1]] + values[2:]
    frozen = [v.copy() for v in values]
    for v in frozen:
        v.flags.writeable = False
    for variant in (strided, frozen, [v.astype(np.float32) for v in values], [v.tolist() for v in values]):
        for got, want in zip(f(*variant), ref(*variant)):
            np.testing.assert_allclose(got, want, rtol=1e-11, atol=1e-14)


def test_four_threads_at_once(mlp_fns):
    f, ref = mlp_fns["numba"], mlp_fns["numpy"]
    problems = [_mlp_values(20 + k, seed=k) for k in range(4)]
    expected = [ref(*p) for p in problems]
    failures = []
    barrier = threading.Barrier(4)

    def work(k):
        barrier.wait()
        for _ in range(50):
            for got, want in zip(f(*problems[k]), expected[k]):
                if not np.allclose(got, want, rtol=1e-11, atol=1e-13):
                    failures.append(k)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert failures == []


# ------------------------------------------------------------------ bad input


@pytest.mark.parametrize("backend", BACKENDS)
def test_wrong_number_of_arguments(seed_fns, backend):
    f = seed_fns[backend]
    with pytest.raises(TypeError, match="b"):
        f(1.0)
    with pytest.raises(TypeError):
        f(1.0, 2.0, 3.0)


@pytest.mark.parametrize("backend", BACKENDS)
def test_non_numeric_input_names_the_input(seed_fns, backend):
    f = seed_fns[backend]
    with pytest.raises(TypeError, match="'a'"):
        f("two", 1.0)
    with pytest.raises(TypeError, match="'b'"):
        f(1.0, object())
    with pytest.raises(TypeError, match="'b'"):
        f(1.0, 1 + 2j)


@pytest.mark.parametrize("backend", BACKENDS)
def test_wrong_ndim_or_static_size_names_the_input(mlp_fns, backend):
    f = mlp_fns[backend]
    values = _mlp_values(5)
    with pytest.raises(ValueError, match="'b1'"):
        f(*values[:3], np.ones((64, 1)), values[4])
    with pytest.raises(ValueError, match="'W1'"):
        f(values[0], values[1], np.ones((6, 4)), *values[3:])
    with pytest.raises(TypeError, match="'X'"):
        f(values[0].astype(np.complex128), *values[1:])


def test_disagreeing_run_time_sizes_name_inputs_and_sizes(mlp_fns):
    f = mlp_fns["numba"]
    values = _mlp_values(5)
    values[1] = values[1][:4]
    sizes = r"Y\.shape\[0\] is 4.*X\.shape\[0\] is 5|X\.shape\[0\] is 5.*Y\.shape\[0\] is 4"
    with pytest.raises(ValueError, match=sizes):
        f(*values)


def test_constants_dims_and_scalars_as_outputs():
    x = sd.vector("x")
    a = sd.scalar("a")
    outs = [sd.constant(2.0), sd.constant([1.0, 2.0]), sd.constant(np.zeros((2, 2))), sd.dim(x, 0), sd.sum(x > 0),
            sd.broadcast_like(a, x), x[2], sd.max(x) > a, sd.astype(x, "int64"), sd.where(x > a, 1.0, 0.0)]
    f = sd.function([x, a], outs)
    ref = sd.function([x, a], outs, backend="numpy")
    x0 = np.array([1.0, -2.0, 3.0, 0.5])
    for got, want in zip(f(x0, 0.7), ref(x0, 0.7)):
        assert np.asarray(got).dtype == np.asarray(want).dtype
        np.testing.assert_array_equal(got, want)
    first, second = f(x0, 0.7)[1], f(x0, 0.7)[1]
    first[0] = 99.0  # a returned constant is a fresh array each call
    assert second[0] == 1.0


def test_int_and_bool_inputs():
    n = sd.scalar("n", "int64")
    m = sd.vector("m", None, "bool")
    x = sd.vector("x")
    out = sd.sum(sd.where(m, x, 0.0)) * n
    f = sd.function([n, m, x], out)
    assert f(3, np.array([True, False, True]), np.array([1.0, 2.0, 4.0])) == 15.0
    with pytest.raises(TypeError, match="'n'"):
        f(2.5, np.array([True]), np.array([1.0]))
    with pytest.raises(TypeError, match="'m'"):
        f(1, np.array([0.5]), np.array([1.0]))


def test_nan_propagates():
    x = sd.vector("x")
    outs = [sd.max(x), sd.sum(sd.exp(x)), sd.maximum(x, 0.0), sd.grad(sd.sum(x * x), x)]
    f = sd.function([x], outs)
    got = f(np.array([1.0, np.nan, 2.0]))
    assert np.isnan(got[0]) and np.isnan(got[1])
    assert np.isnan(got[2][1]) and got[2][0] == 1.0
    assert np.isnan(got[3][1]) and got[3][0] == 2.0
    assert f(np.array([np.inf, 1.0]))[0] == np.inf


def test_inputs_must_be_distinct_symbols_and_cover_the_outputs():
    a, b = sd.scalars("a b")
    with pytest.raises(ValueError, match="'b'|b \\("):
        sd.function([a], a + b)
    with pytest.raises(ValueError, match="must be symbols"):
        sd.function([a + b], a)
    with pytest.raises(ValueError, match="twice"):
        sd.function([a, a], a)
    with pytest.raises(ValueError, match="unknown backend"):
        sd.function([a], a, backend="jax")


def test_source_and_repr(seed_fns):
    f = seed_fns["numba"]
    assert "def kernel(in0_a, in1_b)" in f.source and "# %" in f.source
    assert "numba" in repr(f) and "(a, b)" in repr(f)
    assert "add" in seed_fns["numpy"].source
