"""Structure and constructor functions against NumPy's: values with static sizes and with
sizes known only at run time (None), negative axes, empty arrays, dtypes; gradients
against finite differences; one compiled kernel; and errors that name the function,
the shapes and the test's own line."""

from __future__ import annotations

import numpy as np
import pytest

import symdiff as sd
from symdiff.testing import check_grads


def _all_runtime(shapes):
    return [tuple(None if d != 1 else 1 for d in s) for s in shapes]


# (label, symdiff function, NumPy function, input shapes, declared shapes for the run-time
# variant: "all" = every size not 1 is None, a list = those shapes, None = static only)
CASES = [
    ("pad-constant", lambda x: sd.pad(x, 2), lambda x: np.pad(x, 2), [(3, 4)], "all"),
    ("pad-constant-values", lambda x: sd.pad(x, ((1, 2), (0, 3)), constant_values=((1, 2), (3, 4))),
     lambda x: np.pad(x, ((1, 2), (0, 3)), constant_values=((1, 2), (3, 4))), [(3, 4)], "all"),
    ("pad-constant-empty-axis", lambda x: sd.pad(x, ((1, 1), (2, 0)), constant_values=7.0),
     lambda x: np.pad(x, ((1, 1), (2, 0)), constant_values=7.0), [(0, 3)], "all"),
    ("pad-edge", lambda x: sd.pad(x, ((2, 1), (1, 3)), mode="edge"),
     lambda x: np.pad(x, ((2, 1), (1, 3)), mode="edge"), [(3, 4)], "all"),
    ("pad-reflect", lambda x: sd.pad(x, ((2, 1), (1, 3)), mode="reflect"),
     lambda x: np.pad(x, ((2, 1), (1, 3)), mode="reflect"), [(3, 4)], "all"),
    ("pad-reflect-beyond-length", lambda x: sd.pad(x, (7, 5), mode="reflect"),
     lambda x: np.pad(x, (7, 5), mode="reflect"), [(3,)], None),
    ("pad-reflect-length-1", lambda x: sd.pad(x, 2, mode="reflect"), lambda x: np.pad(x, 2, mode="reflect"),
     [(1, 2)], None),
    ("pad-symmetric", lambda x: sd.pad(x, ((2, 1), (3, 2)), mode="symmetric"),
     lambda x: np.pad(x, ((2, 1), (3, 2)), mode="symmetric"), [(3, 4)], "all"),
    ("pad-symmetric-beyond", lambda x: sd.pad(x, (5, 4), mode="symmetric"),
     lambda x: np.pad(x, (5, 4), mode="symmetric"), [(2,)], None),
    ("pad-wrap", lambda x: sd.pad(x, ((2, 1), (3, 2)), mode="wrap"),
     lambda x: np.pad(x, ((2, 1), (3, 2)), mode="wrap"), [(3, 4)], "all"),
    ("pad-wrap-beyond", lambda x: sd.pad(x, (7, 4), mode="wrap"), lambda x: np.pad(x, (7, 4), mode="wrap"),
     [(3,)], None),
    ("pad-reflect-many-runs", lambda x: sd.pad(x, ((0, 0), (30, 2)), mode="reflect"),
     lambda x: np.pad(x, ((0, 0), (30, 2)), mode="reflect"), [(2, 3)], [(None, 3)]),
    ("pad-wide-runtime", lambda x: sd.pad(x, (12, 10), mode="symmetric"),
     lambda x: np.pad(x, (12, 10), mode="symmetric"), [(15,)], "all"),
    ("pad-dict-3d", lambda x: sd.pad(x, {-1: (1, 2), 0: 1}, mode="reflect"),
     lambda x: np.pad(x, ((1, 1), (0, 0), (1, 2)), mode="reflect"), [(2, 3, 4)], "all"),
    ("tile", lambda x: sd.tile(x, (2, 3)), lambda x: np.tile(x, (2, 3)), [(2, 3)], [(None, 3)]),
    ("tile-more-reps", lambda x: sd.tile(x, (2, 1, 2)), lambda x: np.tile(x, (2, 1, 2)), [(3,)], "all"),
    ("tile-many", lambda x: sd.tile(x, 12), lambda x: np.tile(x, 12), [(2, 3)], [(2, None)]),
    ("tile-zero", lambda x: sd.tile(x, (0, 2)), lambda x: np.tile(x, (0, 2)), [(2, 3)], [(None, 3)]),
    ("tile-scalar", lambda x: sd.tile(x, 3), lambda x: np.tile(x, 3), [()], None),
    ("repeat", lambda x: sd.repeat(x, 3, axis=-1), lambda x: np.repeat(x, 3, axis=-1), [(2, 3)], [(2, None)]),
    ("repeat-flat", lambda x: sd.repeat(x, 2), lambda x: np.repeat(x, 2), [(2, 3)], [(None, 3)]),
    ("repeat-flat-runtime", lambda x: sd.repeat(x, 2), lambda x: np.repeat(x, 2), [(2, 3)], "all"),
    ("repeat-counts", lambda x: sd.repeat(x, [2, 0, 1], axis=1), lambda x: np.repeat(x, [2, 0, 1], axis=1),
     [(2, 3)], [(None, 3)]),
    ("repeat-zero", lambda x: sd.repeat(x, 0, axis=0), lambda x: np.repeat(x, 0, axis=0), [(2, 3)], "all"),
    ("swapaxes", lambda x: sd.swapaxes(x, 0, -1), lambda x: np.swapaxes(x, 0, -1), [(2, 3, 4)], "all"),
    ("moveaxis", lambda x: sd.moveaxis(x, [0, -1], [-1, 1]), lambda x: np.moveaxis(x, [0, -1], [-1, 1]),
     [(2, 3, 4, 5)], "all"),
    ("diagonal", lambda x: sd.diagonal(x), np.diagonal, [(3, 4)], [(None, 4)]),
    ("diagonal-offset", lambda x: sd.diagonal(x, 2), lambda x: np.diagonal(x, 2), [(3, 4)], [(3, None)]),
    ("diagonal-negative", lambda x: sd.diagonal(x, -1), lambda x: np.diagonal(x, -1), [(4, 3)], [(None, 3)]),
    ("diagonal-square-runtime", lambda x: sd.diagonal(x, 1), lambda x: np.diagonal(x, 1), [(4, 4)], "all"),
    ("diagonal-square-runtime-below", lambda x: sd.diagonal(x, -2), lambda x: np.diagonal(x, -2), [(4, 4)], "all"),
    ("diagonal-wide-runtime", lambda x: sd.diagonal(x, -1), lambda x: np.diagonal(x, -1), [(3, 5)], "all"),
    ("diagonal-tall-runtime", lambda x: sd.diagonal(x, 1), lambda x: np.diagonal(x, 1), [(5, 3)], "all"),
    ("diagonal-static-plane-runtime-batch", lambda x: sd.diagonal(x, 1, -1, -2), lambda x: np.diagonal(x, 1, -1, -2),
     [(2, 3, 3, 4)], [(None, None, 3, 4)]),
    ("diagonal-past-the-end", lambda x: sd.diagonal(x, 5), lambda x: np.diagonal(x, 5), [(3, 4)], None),
    ("diagonal-3d", lambda x: sd.diagonal(x, 1, axis1=-1, axis2=0), lambda x: np.diagonal(x, 1, -1, 0),
     [(3, 2, 4)], [(3, None, 4)]),
    ("diagonal-3d-runtime-batch", lambda x: sd.diagonal(x, 0, 1, 2), lambda x: np.diagonal(x, 0, 1, 2),
     [(2, 3, 3)], "all"),
    ("diagonal-empty-plane", lambda x: sd.diagonal(x, 0, 1, 2), lambda x: np.diagonal(x, 0, 1, 2), [(2, 0, 4)],
     [(None, 0, 4)]),
    ("diag-vector", lambda x: sd.diag(x), np.diag, [(3,)], "all"),
    ("diag-vector-above", lambda x: sd.diag(x, 2), lambda x: np.diag(x, 2), [(3,)], "all"),
    ("diag-vector-below", lambda x: sd.diag(x, -1), lambda x: np.diag(x, -1), [(3,)], "all"),
    ("diag-matrix", lambda x: sd.diag(x, -1), lambda x: np.diag(x, -1), [(4, 3)], [(None, 3)]),
    ("diag-empty", lambda x: sd.diag(x), np.diag, [(0,)], "all"),
    ("trace", lambda x: sd.trace(x), np.trace, [(3, 4)], "all"),
    ("trace-offset", lambda x: sd.trace(x, -2), lambda x: np.trace(x, -2), [(4, 3)], "all"),
    ("trace-3d", lambda x: sd.trace(x, 1, axis1=2, axis2=0), lambda x: np.trace(x, 1, 2, 0), [(3, 2, 4)], "all"),
    ("tril", lambda x: sd.tril(x), np.tril, [(3, 4)], "all"),
    ("tril-k", lambda x: sd.tril(x, -1), lambda x: np.tril(x, -1), [(2, 4, 3)], "all"),
    ("tril-vector", lambda x: sd.tril(x, 1), lambda x: np.tril(x, 1), [(3,)], "all"),
    ("triu", lambda x: sd.triu(x), np.triu, [(4, 3)], "all"),
    ("triu-k", lambda x: sd.triu(x, 2), lambda x: np.triu(x, 2), [(2, 3, 5)], "all"),
    ("outer", lambda a, b: sd.outer(a, b), np.outer, [(3,), (2, 2)], [(None,), (2, None)]),
    ("outer-runtime", lambda a, b: sd.outer(a, b), np.outer, [(3,), (2, 2)], "all"),
    ("inner", lambda a, b: sd.inner(a, b), np.inner, [(2, 3), (4, 3)], "all"),
    ("inner-vectors", lambda a, b: sd.inner(a, b), np.inner, [(3,), (3,)], "all"),
    ("inner-scalar", lambda a, b: sd.inner(a, b), np.inner, [(), (2, 3)], "all"),
    ("tensordot-2", lambda a, b: sd.tensordot(a, b), np.tensordot, [(2, 3, 4), (3, 4, 5)], "all"),
    ("tensordot-0", lambda a, b: sd.tensordot(a, b, 0), lambda a, b: np.tensordot(a, b, 0), [(2, 3), (4,)],
     "all"),
    ("tensordot-lists", lambda a, b: sd.tensordot(a, b, ([0, -1], [2, 0])),
     lambda a, b: np.tensordot(a, b, ([0, -1], [2, 0])), [(2, 3, 4), (4, 5, 2)], "all"),
    ("tensordot-empty", lambda a, b: sd.tensordot(a, b, 1), lambda a, b: np.tensordot(a, b, 1),
     [(2, 0), (0, 3)], "all"),
    ("kron", lambda a, b: sd.kron(a, b), np.kron, [(2, 3), (3, 2)], [(None, 3), (3, 2)]),
    ("kron-vectors", lambda a, b: sd.kron(a, b), np.kron, [(3,), (2,)], [(None,), (2,)]),
    ("kron-vectors-runtime", lambda a, b: sd.kron(a, b), np.kron, [(3,), (2,)], "all"),
    ("kron-mixed", lambda a, b: sd.kron(a, b), np.kron, [(2,), (3, 2)], None),
    ("hstack", lambda a, b: sd.hstack([a, b]), lambda a, b: np.hstack([a, b]), [(2, 3), (2, 1)], [(None, 3),
                                                                                              (None, 1)]),
    ("hstack-vectors", lambda a, b: sd.hstack([a, b]), lambda a, b: np.hstack([a, b]), [(2,), (3,)], None),
    ("vstack", lambda a, b: sd.vstack([a, b]), lambda a, b: np.vstack([a, b]), [(3,), (2, 3)], [(None,),
                                                                                            (2, None)]),
    ("column_stack", lambda a, b: sd.column_stack([a, b]), lambda a, b: np.column_stack([a, b]),
     [(3,), (3, 2)], "all"),
    ("atleast_1d", lambda x: sd.atleast_1d(x), np.atleast_1d, [()], None),
    ("atleast_2d", lambda x: sd.atleast_2d(x), np.atleast_2d, [(3,)], "all"),
    ("atleast_2d-scalar", lambda x: sd.atleast_2d(x), np.atleast_2d, [()], None),
    ("ravel", lambda x: sd.ravel(x), np.ravel, [(2, 3, 4)], [(2, None, 4)]),
    ("ravel-runtime", lambda x: sd.ravel(x), np.ravel, [(2, 3, 4)], "all"),
    ("ravel-empty", lambda x: sd.ravel(x), np.ravel, [(2, 0)], "all"),
]


def _check(label, fn, np_fn, shapes, declared, rng):
    values = [rng.normal(size=s) for s in shapes]
    want = np_fn(*values)
    symbols = [sd.tensor(f"x{k}", d) for k, d in enumerate(declared)]
    got = sd.evaluate(fn(*symbols), dict(zip(symbols, values)))
    assert np.shape(got) == np.shape(want), f"{label} declared {declared}: {np.shape(got)} vs {np.shape(want)}"
    assert np.asarray(got).dtype == np.asarray(want).dtype, label
    np.testing.assert_allclose(got, want, rtol=1e-13, atol=1e-15, err_msg=f"{label} declared {declared}")


@pytest.mark.parametrize("label, fn, np_fn, shapes, runtime", CASES, ids=[c[0] for c in CASES])
def test_values_match_numpy(label, fn, np_fn, shapes, runtime):
    rng = np.random.default_rng(0)
    _check(label, fn, np_fn, shapes, shapes, rng)
    if runtime is not None:
        _check(label, fn, np_fn, shapes, _all_runtime(shapes) if runtime == "all" else runtime, rng)


GRADIENT_CASES = [c for c in CASES if all(0 not in s for s in c[3])]
# Flattening more than one run-time size: the value is fine, but reshape's own reverse
# rule needs the input shape statically up to one size (symdiff.ops.structure).
RESHAPE_OF_RUNTIME_SIZES = {"repeat-flat-runtime", "ravel-runtime", "outer-runtime", "kron-vectors-runtime"}


@pytest.mark.parametrize("label, fn, np_fn, shapes, runtime", GRADIENT_CASES, ids=[c[0] for c in GRADIENT_CASES])
def test_gradients(label, fn, np_fn, shapes, runtime):
    rng = np.random.default_rng(1)
    values = [rng.normal(size=s) for s in shapes]
    check_grads(fn, values=values, order=1)
    if runtime is not None and label not in RESHAPE_OF_RUNTIME_SIZES:  # the run-time paths too
        declared = _all_runtime(shapes) if runtime == "all" else runtime
        symbols = [sd.tensor(f"y{k}", d) for k, d in enumerate(declared)]
        check_grads(fn(*symbols), symbols, dict(zip(symbols, values)), order=1)


def test_second_order_through_structure():
    check_grads(lambda x: sd.sum(sd.pad(x, 2, mode="reflect") ** 3), values=[np.linspace(-1, 1, 5)], order=2)
    check_grads(lambda x: sd.trace(sd.tril(x) @ sd.triu(x)) ** 2, values=[np.arange(9.0).reshape(3, 3) / 9], order=2)


@pytest.mark.parametrize("dtype", ["int64", "bool", "float32"])
def test_dtypes_are_kept(dtype):
    x = (np.arange(12).reshape(3, 4) % 3).astype(dtype)
    X = sd.constant(x)
    for got, want in [(sd.pad(X, 1, mode="reflect"), np.pad(x, 1, mode="reflect")),
                      (sd.pad(X, 1, constant_values=2.7), np.pad(x, 1, constant_values=2.7)),
                      (sd.tril(X), np.tril(x)), (sd.diagonal(X, 1), np.diagonal(x, 1)), (sd.trace(X), np.trace(x)),
                      (sd.diag(X[0]), np.diag(x[0])), (sd.tile(X, 2), np.tile(x, 2)),
                      (sd.repeat(X, 2), np.repeat(x, 2)),
                      (sd.kron(X, X[:2, :2]), np.kron(x, x[:2, :2])), (sd.outer(X[0], X[1]), np.outer(x[0], x[1]))]:
        value = sd.evaluate(got, {})
        assert value.dtype == want.dtype, (got, dtype)
        np.testing.assert_array_equal(value, want)
    M = sd.matrix("M", (None, 4), dtype=dtype)
    for got, want in [(sd.diagonal(M), np.diagonal(x)), (sd.trace(M, 1), np.trace(x, 1))]:
        value = sd.evaluate(got, {M: x})
        assert value.dtype == want.dtype
        np.testing.assert_array_equal(value, want)


def test_split_and_array_split():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(4, 6))
    for declared in [(4, 6), (None, None)]:
        X = sd.matrix("X", declared)
        for how in ([1, 3], [2, -1], [5, 9], []):
            for axis in (0, -1):
                got = sd.evaluate(sd.split(X, how, axis=axis), {X: x})
                want = np.split(x, how, axis=axis)
                assert [g.shape for g in got] == [w.shape for w in want]
                for g, w in zip(got, want):
                    np.testing.assert_array_equal(g, w)
    X = sd.matrix("X", (4, 6))
    for sections in (1, 3, 4, 6):
        for got, want in zip(sd.evaluate(sd.array_split(X, sections, axis=1), {X: x}), np.array_split(x, sections, 1)):
            np.testing.assert_array_equal(got, want)
    for got, want in zip(sd.evaluate(sd.split(X, 2), {X: x}), np.split(x, 2)):
        np.testing.assert_array_equal(got, want)
    Y = sd.matrix("Y", (None, 6))
    first, _, last = sd.split(Y, 3, axis=1)
    check_grads(sd.sum(first * last ** 2), [Y], {Y: x}, order=1)


def test_constructors_static():
    cases = [
        (sd.zeros((2, 3)), np.zeros((2, 3))), (sd.zeros(3, dtype="int64"), np.zeros(3, dtype=np.int64)),
        (sd.zeros(()), np.zeros(())), (sd.zeros((0, 2)), np.zeros((0, 2))), (sd.ones(2, "bool"), np.ones(2, bool)),
        (sd.full((2, 2), 3), np.full((2, 2), 3)), (sd.full(3, 2.5, dtype="float32"), np.full(3, 2.5, np.float32)),
        (sd.full((2, 3), [1.0, 2.0, 3.0]), np.full((2, 3), [1.0, 2.0, 3.0])),
        (sd.eye(3), np.eye(3)), (sd.eye(2, 4, k=1), np.eye(2, 4, k=1)), (sd.eye(3, k=-1, dtype="int64"),
                                                                       np.eye(3, k=-1, dtype=np.int64)),
        (sd.eye(0), np.eye(0)), (sd.eye(40, 50, k=-3), np.eye(40, 50, k=-3)), (sd.arange(5), np.arange(5)),
        (sd.arange(2, 7, 2), np.arange(2, 7, 2)),
        (sd.arange(1.0, 0, -0.25), np.arange(1.0, 0, -0.25)), (sd.arange(3, dtype="float32"),
                                                              np.arange(3, dtype=np.float32)),
        (sd.arange(5, 2), np.arange(5, 2)), (sd.linspace(0, 1, 7), np.linspace(0, 1, 7)),
        (sd.linspace(2, 3, 4, endpoint=False), np.linspace(2, 3, 4, endpoint=False)),
        (sd.linspace(0, 1, 0), np.linspace(0, 1, 0)), (sd.linspace(0, 1, 1), np.linspace(0, 1, 1)),
        (sd.linspace([0, 1], [2, 5], 3, axis=-1), np.linspace([0, 1], [2, 5], 3, axis=-1)),
        (sd.linspace(-3, 3, 5, dtype="int64"), np.linspace(-3, 3, 5, dtype=np.int64)),
        (sd.zeros_like(sd.constant(np.ones((2, 3), np.float32))), np.zeros((2, 3), np.float32)),
        (sd.ones_like(sd.constant([1, 2])), np.ones(2, np.int64)),
        (sd.full_like(sd.constant([1, 2]), 2.7), np.full_like(np.array([1, 2]), 2.7)),
        (sd.full_like(sd.constant([1.0, 2.0]), 7, dtype="int64", shape=(3,)), np.full(3, 7)),
    ]
    for got, want in cases:
        value = sd.evaluate(got, {})
        assert np.asarray(value).dtype == want.dtype and np.shape(value) == want.shape, (got, want)
        np.testing.assert_array_equal(value, want)
    y, step = sd.linspace(0, 1, 5, retstep=True)
    assert sd.evaluate(step, {}) == np.linspace(0, 1, 5, retstep=True)[1]


def test_constructors_follow_runtime_sizes():
    X = sd.matrix("X", (None, 3))
    v = sd.vector("v")
    x = np.arange(6.0).reshape(2, 3)
    values = {X: x, v: np.arange(4.0)}
    cases = [
        (sd.zeros(X.shape), np.zeros((2, 3))), (sd.ones((X.shape[0], 4, v.shape[0]), "int64"),
                                                np.ones((2, 4, 4), np.int64)),
        (sd.full((v.shape[0], X.shape[0]), 2.5), np.full((4, 2), 2.5)), (sd.eye(X.shape[0]), np.eye(2)),
        (sd.eye(X.shape[0], v.shape[0], k=1, dtype="bool"), np.eye(2, 4, k=1, dtype=bool)),
        (sd.arange(v.shape[0]), np.arange(4)), (sd.arange(1, v.shape[0], 2, dtype="float64"), np.arange(1, 4, 2.0)),
        (sd.arange(7, v.shape[0]), np.arange(7, 4)),
        (sd.zeros_like(X), np.zeros((2, 3))), (sd.ones_like(v, dtype="float32"), np.ones(4, np.float32)),
        (sd.full_like(X, 4), np.full((2, 3), 4.0)), (sd.zeros_like(X, shape=(v.shape[0],)), np.zeros(4)),
    ]
    for got, want in cases:
        value = sd.evaluate(got, values)
        assert np.asarray(value).dtype == want.dtype and np.shape(value) == want.shape, (got, want)
        np.testing.assert_array_equal(value, want)


def test_constructor_derivatives():
    a, b = sd.scalar("a"), sd.vector("b", 2)
    check_grads(lambda s: sd.sum(sd.full((2, 3), s) ** 2), values=[1.5], order=2)
    check_grads(sd.sum(sd.linspace(a, b, 4) ** 2), [a, b], {a: 0.5, b: [1.0, -2.0]}, order=2)
    check_grads(sd.sum(sd.full_like(b, a) * b), [a, b], {a: 0.5, b: [1.0, -2.0]}, order=2)
    check_grads(lambda s: sd.sum(sd.pad(sd.eye(3) * s, 1, constant_values=s)), values=[0.7], order=1)
    for start, stop, num, endpoint in [(0.0, 1.0, 6, True), (2.0, -1.0, 5, False), (1.0, 1.0, 3, True),
                                       (0.5, 4.0, 1, True), (0.5, 4.0, 0, False)]:
        s, t = sd.scalars("s t")
        got = sd.evaluate(sd.linspace(s, t, num, endpoint=endpoint), {s: start, t: stop})
        np.testing.assert_array_equal(got, np.linspace(start, stop, num, endpoint=endpoint))


def test_user_arrays_are_not_mutated():
    x = np.arange(6.0).reshape(2, 3)
    before = x.copy()
    X = sd.matrix("X", (None, 3))
    sd.evaluate([sd.pad(X, 1, mode="wrap"), sd.tril(X), sd.diagonal(X), sd.kron(X, X), sd.full(3, x[0])], {X: x})
    np.testing.assert_array_equal(x, before)


def test_compiled_matches_reference():
    """The lowering patterns these composites make (iota, a select that broadcasts to a
    run-time shape, single-element slices that check a run-time length, a sum over an
    empty slice, strided slices of a reshape), values and one gradient, in one kernel."""
    pytest.importorskip("numba")
    X = sd.matrix("X", (None, 5))
    v = sd.vector("v")
    outs = [sd.tril(X, -1), sd.pad(X, ((2, 1), (0, 0)), mode="reflect"), sd.pad(v, (2, 1), mode="edge"),
            sd.pad(X, ((1, 0), (0, 0)), constant_values=-1.0), sd.diagonal(X, 1), sd.trace(X),
            sd.eye(v.shape[0]), sd.tile(v, 12)]
    cost = sd.sum(outs[1] * outs[1]) + sd.sum(outs[2] ** 3) + outs[5] * sd.sum(outs[7] * outs[0][0, 0])
    outs += sd.grad(cost, [X, v])
    f = sd.function([X, v], outs)
    rng = np.random.default_rng(3)
    for n, m in [(4, 5), (3, 4)]:
        values = [rng.normal(size=(n, 5)), rng.normal(size=m)]
        for got, want in zip(f(*values), sd.evaluate(outs, dict(zip([X, v], values)))):
            assert np.shape(got) == np.shape(want)
            np.testing.assert_allclose(got, want, rtol=1e-11, atol=1e-12)
    with pytest.raises(IndexError, match="test_structure.py"):  # reflect needs length > width
        f(rng.normal(size=(2, 5)), rng.normal(size=5))


ERRORS = [
    (lambda: sd.pad(sd.vector("x", 0), 2, mode="reflect"), sd.ShapeError, "pad: can't extend empty axis 0"),
    (lambda: sd.pad(sd.vector("x"), ((1, 2), (3, 4))), ValueError, "pad: `pad_width`"),
    (lambda: sd.pad(sd.vector("x"), 1, mode="mean"), ValueError, "pad: mode 'mean' is not supported"),
    (lambda: sd.pad(sd.vector("x"), 1, mode="edge", constant_values=3), ValueError, "pad: constant_values"),
    (lambda: sd.tensordot(sd.matrix("a", (2, 3)), sd.matrix("b", (4, 5)), 1), sd.ShapeError,
     "tensordot: shape-mismatch"),
    (lambda: sd.diag(sd.tensor("t", (2, 2, 2))), sd.ShapeError, "diag: input must be 1- or 2-d"),
    (lambda: sd.diagonal(sd.vector("x")), sd.ShapeError, "diagonal: needs an array of at least two"),
    (lambda: sd.diagonal(sd.matrix("X"), 0, 1, -1), ValueError, "diagonal: axis1 and axis2 cannot be the same"),
    (lambda: sd.tril(sd.scalar("s")), sd.ShapeError, "tril: needs an array of at least one"),
    (lambda: sd.repeat(sd.vector("x", 3), [1, 2]), sd.ShapeError, "repeat: 2 repeat counts"),
    (lambda: sd.repeat(sd.vector("x", 3), -1), ValueError, "repeat: repeats may not contain negative"),
    (lambda: sd.split(sd.vector("x", 5), 2), sd.ShapeError, "split: array split does not result in an equal"),
    (lambda: sd.split(sd.vector("x"), 2), sd.ShapeError, "split: 2 sections of an axis"),
    (lambda: sd.arange(sd.dim(sd.vector("x"), 0) + 1), TypeError, "arange: stop must be a static int or a run-time"),
    (lambda: sd.zeros((sd.scalar("n", "int64"), 2)), TypeError, "zeros: shape entry must be"),
    (lambda: sd.moveaxis(sd.matrix("X"), [0, 0], [0, 1]), ValueError, "moveaxis: repeated axis"),
    (lambda: sd.swapaxes(sd.matrix("X"), 0, 2), sd.ShapeError, "swapaxes: axis2 2 is out of bounds"),
    (lambda: sd.kron(sd.matrix("X"), sd.matrix("Y", (2, 2))), sd.ShapeError, "kron: the Kronecker product needs"),
    (lambda: sd.full((2,), sd.matrix("X", (2, 2))), sd.ShapeError, "full: fill_value of shape (2, 2)"),
    (lambda: sd.linspace(0, 1, -1), ValueError, "linspace: Number of samples, -1"),
]


@pytest.mark.parametrize("build, error, text", ERRORS, ids=[e[2].split(":")[0] + str(k) for k, e in enumerate(ERRORS)])
def test_errors_name_the_function(build, error, text):
    with pytest.raises(error) as info:
        build()
    assert str(info.value).startswith(text), str(info.value)


def test_shape_errors_give_the_users_line():
    with pytest.raises(sd.ShapeError, match=r"\(0,\) float64 \(at .*test_structure.py:\d+\)"):
        sd.pad(sd.vector("x", 0), 2, mode="edge")
    x = sd.vector("x")
    for mode, width, n in [("reflect", 2, 2), ("symmetric", 3, 2), ("wrap", 4, 3), ("edge", 1, 0)]:
        with pytest.raises(IndexError, match="test_structure.py"):  # a run-time length, checked when values arrive
            sd.evaluate(sd.pad(x, width, mode=mode), {x: np.ones(n)})
    X = sd.matrix("X")
    for offset, shape in [(0, (3, 2)), (1, (2, 4))]:  # two run-time sizes: the side read must be the shorter
        with pytest.raises(IndexError, match="test_structure.py"):
            sd.evaluate(sd.diagonal(X, offset), {X: np.ones(shape)})
