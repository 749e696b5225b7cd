"""Integer-array and boolean indexing, take, take_along_axis and x.at[...] against NumPy.

The reference evaluator is compared with NumPy on random indices (values and
gradients, static and run-time sizes), derivatives with finite differences at
first and second order, bad indices with NumPy's errors, and the compiled kernel
with the reference on the programs the feature is for (cross-entropy with integer
labels, an embedding lookup), in two kernels.
"""

from __future__ import annotations

import re

import numpy as np
import pytest

import symdiff as sd
from symdiff.testing import check_grads, check_hvp, check_jvp

HERE = re.escape(__file__)


# ---------------------------------------------------------------- random indices


def _random_index(rng, shape, masks=True):
    """A NumPy index for an array of ``shape``: slices, ints, None, ..., index arrays
    (broadcastable shapes, negative and repeated entries, sometimes empty), masks."""
    items, axis = [], 0
    while axis < len(shape):
        r = rng.random()
        n = shape[axis]
        if r < 0.12:
            items.append(None)
            continue
        if r < 0.3 or n == 0:
            start = int(rng.integers(-n - 1, n + 2)) if rng.random() < 0.5 else None
            items.append(slice(start, None, int(rng.choice([1, 2, -1]))))
        elif r < 0.42:
            items.append(int(rng.integers(-n, n)))
        elif r < 0.5 and masks:
            items.append(rng.random(n) < 0.5)
        else:
            index_shape = tuple(int(s) for s in rng.choice([0, 1, 2, 3], size=rng.integers(0, 3),
                                                          p=[0.1, 0.3, 0.3, 0.3]))
            items.append(rng.integers(-n, n, size=index_shape))
        axis += 1
    if rng.random() < 0.25 and items:
        items = items[:int(rng.integers(0, len(items)))] + [Ellipsis]
    return tuple(items)


def _cases(seed, count, masks=True):
    rng = np.random.default_rng(seed)
    cases = []
    while len(cases) < count:
        shape = tuple(int(s) for s in rng.integers(0 if rng.random() < 0.1 else 1, 5, size=rng.integers(1, 5)))
        index = _random_index(rng, shape, masks)
        if not any(isinstance(i, np.ndarray) for i in index):
            continue
        value = rng.normal(size=shape)
        try:
            want = value[index]
        except IndexError:
            continue  # mismatched index shapes: test_numpy_index_errors_are_index_errors
        cases.append((shape, index, value, want))
    return cases


def test_getitem_matches_numpy_on_random_indices():
    """Values and gradients (np.add.at of the weights), with static sizes and with every size unknown."""
    for shape, index, value, want in _cases(0, 150):
        label = f"x of shape {shape}, index {index}"
        weights = np.random.default_rng(1).normal(size=want.shape)
        grad_want = np.zeros(shape)
        np.add.at(grad_want, index, weights)
        has_mask = any(isinstance(i, np.ndarray) and i.dtype == bool for i in index)
        for dims in ([shape] + ([] if has_mask else [(None,) * len(shape)])):
            x = sd.tensor("x", dims)
            out = x[index]
            assert len(out.type.shape) == want.ndim and all(d in (None, w) for d, w in zip(out.type.shape, want.shape))
            got, grad = sd.evaluate([out, sd.grad(sd.sum(out * sd.constant(weights)), x)], {x: value})
            np.testing.assert_array_equal(got, want, err_msg=label)
            np.testing.assert_allclose(grad, grad_want, rtol=1e-14, atol=1e-14, err_msg=label)


def test_numpy_index_errors_are_index_errors():
    rng = np.random.default_rng(2)
    refused = 0
    for _ in range(400):
        shape = tuple(int(s) for s in rng.integers(1, 5, size=rng.integers(1, 4)))
        index = _random_index(rng, shape)
        try:
            np.zeros(shape)[index]
            continue
        except IndexError:
            refused += 1
        with pytest.raises(IndexError):
            sd.tensor("x", shape)[index]
    assert refused > 5


def test_index_expressions_wrap_and_broadcast_like_numpy():
    X = sd.matrix("X", (None, None))
    i = sd.vector("i", dtype="int64")
    j = sd.tensor("j", (None, 1), dtype="int64")
    k = sd.scalar("k", dtype="int64")
    value = np.arange(20.0).reshape(4, 5)
    iv, jv = np.array([3, -1, 0, 3]), np.array([[-4], [2]])
    outs = [X[i], X[:, i], X[i, 1:], X[j, i], X[i, None, k], X[k], X[-1, i], X[None, ..., i], X[j[:, 0], ::-1]]
    wants = [value[iv], value[:, iv], value[iv, 1:], value[jv, iv], value[iv, None, 2], value[2], value[-1, iv],
             value[None, ..., iv], value[jv[:, 0], ::-1]]
    for got, want in zip(sd.evaluate(outs, {X: value, i: iv, j: jv, k: 2}), wants):
        np.testing.assert_array_equal(got, want)


def test_empty_index_arrays_and_empty_axes():
    x = sd.vector("x")
    X = sd.matrix("X", (0, 3))
    empty = np.zeros(0, dtype=np.int64)
    assert sd.evaluate(x[[]], {x: [1.0, 2.0]}).shape == (0,)
    assert sd.evaluate(X[:, [2, 0]], {X: np.zeros((0, 3))}).shape == (0, 2)
    assert sd.evaluate(x.at[empty].add(1.0), {x: [1.0, 2.0]}).tolist() == [1.0, 2.0]
    g = sd.grad(sd.sum(x[sd.constant(empty)]), x)
    assert sd.evaluate(g, {x: [1.0, 2.0]}).tolist() == [0.0, 0.0]


# ----------------------------------------------------------------------- .at


def _last_wins(value, index, updates):
    """x[index] = updates with repeated targets resolved as symdiff promises: the last (C order) wins."""
    out = value.copy()
    positions = np.arange(value.size).reshape(value.shape)[index]
    updates = np.broadcast_to(updates, positions.shape)
    flat = out.reshape(-1)
    for p, u in zip(positions.ravel(), updates.ravel()):
        flat[p] = u
    return out


@pytest.mark.parametrize("mode", ["set", "add", "multiply", "min", "max"])
def test_at_methods_match_numpy(mode):
    ufuncs = {"add": np.add, "multiply": np.multiply, "min": np.minimum, "max": np.maximum}
    for shape, index, value, want in _cases(3, 60):
        updates = np.round(np.random.default_rng(4).normal(size=want.shape), 1)  # rounded: ties happen
        for v in (updates, updates[(0,) * updates.ndim] if updates.size else 1.5):  # full, and a scalar
            if mode == "set":
                expected = _last_wins(value, index, v)
            else:
                expected = value.copy()
                ufuncs[mode].at(expected, index, np.broadcast_to(v, want.shape))
            x = sd.tensor("x", shape)
            got = sd.evaluate(getattr(x.at[index], mode)(sd.constant(v) if np.ndim(v) else float(v)), {x: value})
            np.testing.assert_array_equal(got, expected, err_msg=f"{mode} {shape} {index}")
    x = sd.vector("x", 3)
    assert sd.evaluate(x.at[[0, 2]].get(), {x: [1.0, 2.0, 3.0]}).tolist() == [1.0, 3.0]


def test_at_on_integer_and_bool_arrays_and_basic_indices():
    n = sd.vector("n", dtype="int64")
    b = sd.vector("b", dtype="bool")
    X = sd.matrix("X", (3, 4))
    xv = np.arange(12.0).reshape(3, 4)
    outs = [n.at[[0, 0, 2]].add(5), b.at[[1, -1]].set(True), n.at[1:].max(2), X.at[1:, [0, 0, 3]].add(1.0),
            X.at[::2, None, 1].set(sd.constant([[7.0], [8.0]])), X.at[..., -1].multiply(2.0), X.at[1].min(0.0)]
    got = sd.evaluate(outs, {n: [1, 2, 3], b: [False, False, False, False], X: xv})
    assert got[0].tolist() == [11, 2, 8] and got[0].dtype == np.int64
    assert got[1].tolist() == [False, True, False, True]
    assert got[2].tolist() == [1, 2, 3]
    want = xv.copy()
    np.add.at(want, (slice(1, None), [0, 0, 3]), 1.0)
    np.testing.assert_array_equal(got[3], want)
    want = xv.copy()
    want[::2, None, 1] = [[7.0], [8.0]]
    np.testing.assert_array_equal(got[4], want)
    want = xv.copy()
    want[..., -1] *= 2
    np.testing.assert_array_equal(got[5], want)
    want = xv.copy()
    want[1] = np.minimum(want[1], 0)
    np.testing.assert_array_equal(got[6], want)
    with pytest.raises(sd.DTypeError, match="at\\[...\\].set"):
        n.at[0].set(1.5)
    with pytest.raises(sd.DTypeError, match="float64 values into a int64"):
        n.at[0].add(sd.scalar("s"))
    with pytest.raises(sd.ShapeError, match="do not broadcast"):
        X.at[[0, 1]].set(sd.constant(np.ones((2, 3))))


# ----------------------------------------------------------- take, take_along_axis


def test_take_matches_numpy():
    rng = np.random.default_rng(5)
    value = rng.normal(size=(3, 4, 5))
    x, xd = sd.tensor("x", (3, 4, 5)), sd.tensor("xd", (None, None, None))
    k = sd.tensor("k", (None, None), dtype="int64")
    index = rng.integers(-3, 3, size=(2, 3))
    for axis in (None, 0, 1, -1, -2):
        for mode in ("raise", "clip"):
            idx = index if mode == "raise" or axis is None else index * 3
            want = np.take(value, idx, axis=axis, mode=mode)
            outs = [sd.take(x, idx, axis=axis, mode=mode), sd.take(xd, k, axis=axis, mode=mode)]
            for got in sd.evaluate(outs, {x: value, xd: value, k: idx}):
                np.testing.assert_array_equal(got, want, err_msg=f"axis {axis} mode {mode}")
    assert sd.evaluate(sd.take(x, [], axis=1), {x: value}).shape == (3, 0, 5)
    with pytest.raises(ValueError, match="'wrap' is not supported"):
        sd.take(x, [0], mode="wrap")
    with pytest.raises(sd.IndexDTypeError, match="take: indices must be integers"):
        sd.take(x, np.array([True, False]))


def test_take_along_axis_matches_numpy():
    rng = np.random.default_rng(6)
    arr = rng.normal(size=(3, 4, 5))
    cases = [(rng.integers(-5, 5, size=(3, 4, 2)), -1), (rng.integers(0, 4, size=(1, 6, 5)), 1),
             (rng.integers(0, 3, size=(2, 4, 1)), 0), (rng.integers(0, 5, size=(3, 1, 7)), 2)]
    a = sd.tensor("a", (3, 4, 5))
    ad = sd.tensor("ad", (None, None, None))
    for index, axis in cases:
        want = np.take_along_axis(arr, index, axis=axis)
        k = sd.tensor("k", tuple(1 if d == 1 else None for d in index.shape), dtype="int64")  # None never stretches
        outs = [sd.take_along_axis(a, index, axis), sd.take_along_axis(ad, k, axis)]
        for got in sd.evaluate(outs, {a: arr, ad: arr, k: index}):
            np.testing.assert_array_equal(got, want, err_msg=f"axis {axis} index shape {index.shape}")
    flat = rng.integers(-60, 60, size=7)
    np.testing.assert_array_equal(sd.evaluate(sd.take_along_axis(a, flat, axis=None), {a: arr}),
                                  np.take_along_axis(arr, flat, axis=None))
    stretched = sd.tensor("s", (3, 1, 5))  # arr broadcast against the indices, as NumPy does
    index = rng.integers(0, 5, size=(3, 4, 2))
    np.testing.assert_array_equal(sd.evaluate(sd.take_along_axis(stretched, index, 2), {stretched: arr[:, :1]}),
                                  np.take_along_axis(arr[:, :1], index, 2))
    with pytest.raises(ValueError, match="same number of dimensions"):
        sd.take_along_axis(a, np.zeros((3, 4), dtype=int), 1)


# ------------------------------------------------------------------ derivatives


def test_derivatives_against_finite_differences():
    """Gathers with repeated and negative indices, every .at method with repeated targets,
    take_along_axis; reverse mode to order 2, forward mode to order 2, HVP both ways."""
    rng = np.random.default_rng(7)
    X = sd.matrix("X", (4, 3))
    v = sd.vector("v", 5)
    i = sd.vector("i", 5, dtype="int64")
    labels = sd.vector("labels", 4, dtype="int64")
    point = {X: rng.normal(size=(4, 3)), v: rng.normal(size=5), i: np.array([1, -1, 3, 1, 0]),
             labels: np.array([2, 0, -1, 2])}
    rows = np.arange(4)
    exprs = [
        sd.sin(X[i, 1:]) * X[i, :2],
        X[rows, labels] * sd.take_along_axis(X, labels[:, None], axis=1)[:, 0],
        sd.exp(X[:, 0].at[i[:4]].set(v[:4] ** 2)),  # repeated targets: the last update wins
        X[:, 1].at[i].add(v * v) ** 2,
        X[:, 2].at[i].multiply(v.at[1].set(0.0)) * X[:, 2],  # a zero among repeated factors
        X[:, 0].at[i].max(v) * X[:, 1].at[i].min(-v),
    ]
    for k, e in enumerate(exprs):
        label = f"expression {k}"
        check_grads(e, [X, v] if v in sd.toposort(e) else [X], point, order=2, rng=k, label=label)
        check_jvp(e, [X, v] if v in sd.toposort(e) else [X], point, order=2, rng=k, label=label)
        check_hvp(sd.sum(e * e), [X, v] if v in sd.toposort(e) else [X], point, rng=k, label=label)


def test_ties_share_the_derivative_like_maximum():
    x = sd.vector("x", 2)
    u = sd.vector("u", 3)
    out = x.at[[0, 0, 1]].max(u)
    gx, gu = sd.evaluate(sd.grad(sd.sum(out), [x, u]), {x: [1.0, 5.0], u: [1.0, 1.0, 2.0]})
    assert gx.tolist() == [1 / 3, 1.0] and gu.tolist() == [1 / 3, 1 / 3, 0.0]
    one = {x: [1.0, 5.0], u: [1.0, 0.0, 0.0]}  # one update per target: the split of sd.maximum
    assert sd.evaluate(sd.grad(x.at[0].max(u[0])[0], [x, u]), one)[0].tolist() == [0.5, 0.0]
    assert sd.evaluate(sd.grad(sd.maximum(x[0], u[0]), [x, u]), one)[0].tolist() == [0.5, 0.0]


def test_set_gradient_goes_to_the_winning_update_only():
    x = sd.vector("x", 3)
    u = sd.vector("u", 4)
    i = sd.vector("i", 4, dtype="int64")
    for index in (sd.constant([2, 0, 2, 2]), i):
        out = x.at[index].set(u)
        gx, gu = sd.evaluate(sd.grad(sd.sum(out * sd.constant([1.0, 2.0, 3.0])), [x, u]),
                             {x: np.zeros(3), u: np.ones(4), i: [2, 0, 2, -1]})
        assert gx.tolist() == [0.0, 2.0, 0.0] and gu.tolist() == [0.0, 1.0, 0.0, 3.0]


# ---------------------------------------------------------------------- errors


def test_bad_index_dtypes_name_the_function_and_line():
    x = sd.vector("x", 5)
    for bad, what in [(np.array([0.0, 1.0]), "float64"), (sd.vector("f"), "float64 expression"),
                      ([0.5], "float64")]:
        with pytest.raises(sd.IndexDTypeError, match=f"x\\[...\\]: index arrays must be integer.*{what}.*{HERE}"):
            x[bad]
    with pytest.raises(TypeError, match="boolean mask given as an expression"):
        x[x > 0]
    with pytest.raises(IndexError, match=f"needs the sizes.*declare that size.*{HERE}"):
        sd.vector("y")[np.array([True, False])]


def test_constant_index_out_of_range_is_an_error_when_built():
    X = sd.matrix("X", (3, 5))
    pattern = f"X\\[...\\]: index 7 is out of bounds for axis 1 with size 5.*{HERE}:"
    with pytest.raises(sd.IndexOutOfBoundsError, match=pattern):
        X[:, [0, 7]]
    with pytest.raises(IndexError, match="index -4 is out of bounds for axis 0 with size 3"):
        X[[-4], 1]
    with pytest.raises(IndexError, match="index 9 is out of bounds for axis 0 with size 3"):  # a constant node too
        X[sd.constant([9]), 0]
    with pytest.raises(IndexError, match="take: index 5 is out of bounds for axis 1"):
        sd.take(X, [5], axis=1)
    with pytest.raises(IndexError, match="shape mismatch: indexing arrays could not be broadcast"):
        X[[0, 1], [0, 1, 2]]


def test_index_out_of_range_at_run_time_reads_the_same_in_every_backend():
    x = sd.vector("x")
    i = sd.vector("i", dtype="int64")
    line = __import__("inspect").currentframe().f_lineno + 1
    y = sd.sum(x[i] * 2.0)
    values = ([1.0, 2.0, 3.0, 4.0, 5.0], [0, 7, 1])
    messages = []
    for run in (lambda: sd.evaluate(y, {x: values[0], i: values[1]}),
                lambda: sd.function([x, i], y, backend="numpy")(*values)):
        with pytest.raises(sd.IndexOutOfBoundsError) as info:
            run()
        messages.append(str(info.value))
    assert messages[0] == messages[1] == f"gather at {__file__}:{line}: index 7 is out of bounds for axis 0 with size 5"
    with pytest.raises(sd.ShapeError, match="index arrays have shapes"):  # sizes known only at run time
        sd.evaluate(sd.matrix("M")[i, sd.vector("j", dtype="int64")], {"M": np.eye(3), i: [0, 1], "j": [0]})


# -------------------------------------------------------------- graph tooling


def test_printers_json_optimize_verify_and_sparsity():
    x = sd.vector("x", 6)
    idx = np.array([0, 2, 2, 5])
    cost = sd.sum(sd.sin(x[idx]) * x[idx]) + sd.sum(x.at[[1, 3]].multiply(x[[3, 1]]) ** 2)
    text = sd.to_text(cost, optimize=False)
    assert "gather[axes=(0,)] x %1" in text and "constant [0 2 2 5]" in text and "scatter_mul[axes=(0,)]" in text
    point = np.linspace(0.1, 1.2, 6)
    rebuilt = sd.from_json(sd.to_json({"cost": cost}))["cost"]
    assert sd.evaluate(rebuilt, {"x": point}) == sd.evaluate(cost, {x: point})
    gradient = sd.grad(cost, x)
    np.testing.assert_allclose(sd.evaluate(sd.optimize(gradient), {x: point}), sd.evaluate(gradient, {x: point}),
                               rtol=1e-15)
    sd.verify([cost, gradient])
    pattern = sd.hessian_pattern(cost, x).to_dense()
    assert pattern.sum() == 8  # diagonal of 0, 2, 5; the 1-3 block
    hessian = sd.sparse_hessian(cost, x)
    assembled = hessian.assemble(sd.evaluate(hessian.compressed, {x: point}))
    dense = assembled.toarray() if hasattr(assembled, "toarray") else assembled
    np.testing.assert_allclose(dense, sd.evaluate(sd.hessian(cost, x), {x: point}), rtol=1e-13, atol=1e-15)


# ----------------------------------------------------------------- compiled


def _cross_entropy_reference(z, labels):
    shifted = z - z.max(axis=1, keepdims=True)
    logp = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    n = z.shape[0]
    onehot = np.zeros_like(z)
    onehot[np.arange(n), labels] = 1
    return -logp[np.arange(n), labels].mean(), (np.exp(logp) - onehot) / n


@pytest.fixture(scope="module")
def programs():
    """Cross-entropy with integer labels in four spellings (run-time sizes), one with static
    sizes and constant labels, and an embedding lookup: values, gradients, an HVP and a jvp."""
    Z = sd.matrix("Z", (None, None))
    y = sd.vector("y", dtype="int64")
    rows = sd.vector("rows", dtype="int64")
    Zs = sd.matrix("Zs", (4, 3))
    E = sd.matrix("E", (None, 2))
    words = sd.vector("words", dtype="int64")
    V = sd.matrix("V", (None, None))
    logp = sd.log_softmax(Z, axis=1)
    losses = [
        -sd.mean(logp[sd.arange(Z.shape[0]), y]),
        -sd.mean(sd.take_along_axis(logp, y[:, None], axis=1)),
        -sd.mean(logp[rows, y]),
        -sd.mean(logp[sd.arange(Z.shape[0])[:, None], y[:, None]][:, 0]),
    ]
    static_loss = -sd.mean(sd.log_softmax(Zs, axis=1)[np.arange(4), np.array([2, 0, 2, 1])])
    embedded = E[words]  # repeated words: their gradients accumulate
    embedding_cost = sd.sum(sd.tanh(embedded @ sd.constant([0.5, -1.0])) ** 2)
    outputs = losses + [sd.grad(l, Z) for l in losses] + [static_loss, sd.grad(static_loss, Zs)]
    outputs += [sd.hvp(losses[0], Z, V), sd.jvp(losses[1], Z, V), embedding_cost, sd.grad(embedding_cost, E),
                sd.hvp(embedding_cost, E, E * 0.5)]
    inputs = [Z, y, rows, Zs, E, words, V]
    return inputs, outputs, sd.function(inputs, outputs)


def test_cross_entropy_and_embedding_compiled_match_reference_and_numpy(programs):
    inputs, outputs, f = programs
    rng = np.random.default_rng(8)
    zs = rng.normal(size=(4, 3))
    for n, c in ((5, 3), (9, 4)):  # one kernel, two sets of sizes
        z, labels = rng.normal(size=(n, c)), rng.integers(-c, c, size=n)
        values = {"Z": z, "y": labels, "rows": np.arange(n), "Zs": zs, "E": rng.normal(size=(6, 2)),
                  "words": np.array([1, 4, 1, 1, -1, 0, 4]), "V": rng.normal(size=(n, c))}
        args = [values[s.name] for s in inputs]
        got = f(*args)
        want = sd.evaluate(outputs, {s: values[s.name] for s in inputs})
        for k, (g, w) in enumerate(zip(got, want)):
            np.testing.assert_allclose(g, w, rtol=1e-11, atol=1e-14, err_msg=f"output {k} at n={n}")
        loss, gradient = _cross_entropy_reference(z, labels % c)
        for k in range(4):
            np.testing.assert_allclose(got[k], loss, rtol=1e-12)
            np.testing.assert_allclose(got[4 + k], gradient, rtol=1e-10, atol=1e-15)
        static_loss, static_gradient = _cross_entropy_reference(zs, np.array([2, 0, 2, 1]))
        np.testing.assert_allclose(got[8], static_loss, rtol=1e-12)
        np.testing.assert_allclose(got[9], static_gradient, rtol=1e-10, atol=1e-15)
    assert "gather" not in re.sub(r"#.*", "", f.source)  # gathers are loads inside loops
    assert "_wrap_index(in1_y[" in f.source  # labels are checked; arange rows are the loop counter


def test_compiled_index_errors_read_like_the_reference(programs):
    inputs, outputs, f = programs
    values = {"Z": np.zeros((3, 2)), "y": np.array([0, 2, 1]), "rows": np.arange(3), "Zs": np.zeros((4, 3)),
              "E": np.zeros((6, 2)), "words": np.array([0]), "V": np.zeros((3, 2))}
    with pytest.raises(sd.IndexOutOfBoundsError) as compiled:
        f(*[values[s.name] for s in inputs])
    with pytest.raises(sd.IndexOutOfBoundsError) as reference:
        sd.evaluate(outputs, {s: values[s.name] for s in inputs})
    assert str(compiled.value) == str(reference.value)
    assert re.fullmatch(f"gather at {HERE}:\\d+: index 2 is out of bounds for axis 1 with size 2", str(compiled.value))


def test_scatters_compiled_match_reference():
    """Every .at method in one kernel: repeated targets, NaN in max/min, bool and int64 arrays,
    a uniform array gathered, and a gather whose values no output reads (still checked)."""
    x = sd.vector("x")
    u = sd.vector("u")
    i = sd.vector("i", dtype="int64")
    n = sd.vector("n", dtype="int64")
    b = sd.vector("b", dtype="bool")
    X = sd.matrix("X", (None, 3))
    outputs = [x.at[i].set(u), x.at[i].add(u), x.at[i].multiply(u), x.at[i].max(u), x.at[i].min(u),
               n.at[i].add(3), b.at[i].set(True), X.at[i, 1:].add(u[:, None]), X.at[1:, i[:2]].set(-1.0),
               sd.broadcast_like(2.0, x)[i] * u, sd.broadcast_like(0.0, x[i]),
               sd.grad(sd.sum(sd.exp(x.at[i].max(u)) + x.at[i].set(u * u) ** 2), [x, u])[0]]
    f = sd.function([x, u, i, n, b, X], outputs)
    values = {x: np.array([1.0, np.nan, 3.0, -0.0]), u: np.array([2.0, 5.0, -1.0, 0.0, 7.0]),
              i: np.array([0, 1, 0, -1, 2]), n: np.arange(4), b: np.zeros(4, bool), X: np.arange(12.0).reshape(4, 3)}
    order = [x, u, i, n, b, X]
    got = f(*[values[s] for s in order])
    want = sd.evaluate(outputs, values)
    for k, (g, w) in enumerate(zip(got, want)):
        np.testing.assert_array_equal(np.asarray(g), w, err_msg=f"output {k}")
        assert np.asarray(g).dtype == w.dtype
    values[i] = np.array([0, 1, 0, 4, 2])
    with pytest.raises(IndexError, match="index 4 is out of bounds for axis 0 with size 4"):
        f(*[values[s] for s in order])


def test_compiled_gathers_whose_values_are_never_read_still_check_their_indices():
    x = sd.vector("x")
    i = sd.vector("i", dtype="int64")
    k = sd.vector("k", dtype="int64")
    shape_only = sd.broadcast_like(0.0, x[i])  # only x[i]'s shape is used
    uniform = sd.broadcast_like(2.0, x)[k]  # every element read is the same value
    f = sd.function([x, i, k], [shape_only, uniform])
    good = f(np.ones(3), [0, -3], [2, 1, 1])
    assert good[0].tolist() == [0.0, 0.0] and good[1].tolist() == [2.0, 2.0, 2.0]
    for i_value, k_value, bad in (([0, 3], [0], 3), ([0], [1, -4], -4)):
        with pytest.raises(sd.IndexOutOfBoundsError, match=f"index {bad} is out of bounds for axis 0 with size 3"):
            f(np.ones(3), i_value, k_value)
