"""sd.einsum against np.einsum: a table of subscript strings (values, with static and
run-time sizes, and gradients), the contraction order np.einsum_path chooses, dtypes,
the interleaved form, one compiled kernel, and errors that name einsum, the string,
the shapes and the test's own line."""

from __future__ import annotations

import numpy as np
import pytest

import symdiff as sd
from symdiff.testing import check_grads, check_hvp

# (subscripts, operand shapes)
CASES = [
    ("ij,jk->ik", [(2, 3), (3, 4)]),
    ("ij,jk", [(2, 3), (3, 4)]),
    ("ij->ji", [(2, 3)]),
    ("ji", [(2, 3)]),
    ("ij", [(2, 3)]),
    ("ii->i", [(3, 3)]),
    ("ii", [(3, 3)]),
    ("iij->ji", [(3, 3, 2)]),
    ("ijij->ij", [(2, 3, 2, 3)]),
    ("ij->", [(2, 3)]),
    ("ij->j", [(2, 3)]),
    ("i,i->", [(3,), (3,)]),
    ("i,i", [(3,), (3,)]),
    ("i,j->ij", [(2,), (3,)]),
    ("i,j", [(2,), (3,)]),
    ("i,i->i", [(3,), (3,)]),
    ("ij,ij->ij", [(2, 3), (2, 3)]),
    ("ij,ij->", [(2, 3), (2, 3)]),
    ("ij,j->i", [(2, 3), (3,)]),
    ("j,ij->i", [(3,), (2, 3)]),
    ("bij,bjk->bik", [(2, 3, 4), (2, 4, 5)]),
    ("bik,bkj->bji", [(2, 3, 4), (2, 4, 5)]),
    ("bn,anm,bm->ba", [(2, 3), (4, 3, 5), (2, 5)]),
    ("ijk,jk->i", [(2, 3, 4), (3, 4)]),
    ("ijk,kj->", [(2, 3, 4), (4, 3)]),
    ("abk,kcd->abcd", [(2, 5, 3), (3, 4, 2)]),
    ("abc,cd,de->abe", [(2, 3, 4), (4, 5), (5, 2)]),
    ("ij,jk,kl->il", [(10, 30), (30, 5), (5, 20)]),
    ("ij,jk,kl->il", [(30, 10), (10, 30), (30, 5)]),
    ("ij,jk,kl,lm->im", [(3, 4), (4, 5), (5, 6), (6, 2)]),
    ("ij,ij,ij->j", [(2, 3), (2, 3), (2, 3)]),
    ("...ij,...jk->...ik", [(2, 3, 4), (4, 5)]),
    ("...ij,...jk", [(5, 2, 3), (3, 4)]),
    ("ij...,jk...->ik...", [(2, 3, 5), (3, 4, 1)]),
    ("...,...->...", [(2, 3), (3,)]),
    ("...", [(2, 3)]),
    ("i...i->...", [(3, 4, 3)]),
    ("i...i", [(3, 4, 3)]),
    ("...ii->...i", [(2, 3, 3)]),
    ("a...b,...b->...a", [(2, 3, 4), (3, 4)]),
    ("ba,aB", [(2, 3), (3, 4)]),  # implicit output sorts by code point: uppercase first
    ("Ba,ab", [(2, 3), (3, 4)]),
    ("i,i,i->", [(3,), (1,), (3,)]),  # a static 1 broadcasts, as in NumPy
    ("ij,jk", [(2, 1), (3, 4)]),
    ("ij,ij->", [(2, 1), (2, 1)]),
    ("", [()]),
    (",->", [(), ()]),
    ("i,->i", [(3,), ()]),
    ("i j , j k -> i k", [(2, 3), (3, 4)]),  # spaces are ignored
    ("ij,jk->ik", [(0, 3), (3, 4)]),  # empty arrays
    ("ij,jk->ik", [(2, 0), (0, 4)]),
    ("ij->", [(0, 3)]),
    ("ii->i", [(0, 0)]),
]
IDS = [f"{spec or 'empty'}-{'x'.join(map(str, shapes[0])) or 'scalar'}" for spec, shapes in CASES]


def _values(shapes, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.normal(size=s) for s in shapes]


def _runtime(shape):
    return tuple(None if d != 1 else 1 for d in shape)


@pytest.mark.parametrize("spec, shapes", CASES, ids=IDS)
def test_values_match_numpy(spec, shapes):
    values = _values(shapes)
    want = np.einsum(spec, *values)
    for declared in (shapes, [_runtime(s) for s in shapes]):
        symbols = [sd.tensor(f"x{k}", d) for k, d in enumerate(declared)]
        out = sd.einsum(spec, *symbols)
        got = sd.evaluate(out, dict(zip(symbols, values)))
        assert np.shape(got) == want.shape, (spec, declared)
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12, err_msg=f"{spec} {declared}")


GRADIENT_CASES = [(s, sh) for s, sh in CASES if all(0 not in shape for shape in sh)]


@pytest.mark.parametrize("spec, shapes", GRADIENT_CASES, ids=[f"{s or 'empty'}-{k}" for k, (s, _) in
                                                              enumerate(GRADIENT_CASES)])
def test_gradients(spec, shapes):
    values = _values(shapes, seed=1)
    check_grads(lambda *xs: sd.einsum(spec, *xs), values=values, order=1)


@pytest.mark.parametrize("spec, shapes", [
    ("ij,jk,kl->il", [(3, 4), (4, 5), (5, 2)]),
    ("bn,anm,bm->ba", [(2, 3), (4, 3, 5), (2, 5)]),
    ("ii", [(3, 3)]),
    ("...ij,...jk", [(2, 3, 4), (4, 5)]),
])
def test_second_order(spec, shapes):
    values = _values(shapes, seed=2)
    check_grads(lambda *xs: sd.einsum(spec, *xs), values=values, order=2)
    check_hvp(lambda *xs: sd.sum(sd.einsum(spec, *xs) ** 2), values=values)


def test_gradients_with_runtime_sizes():
    """Sizes known only at run time take the other lowering paths (broadcast batch axes,
    product and sum); their gradients must agree too."""
    rng = np.random.default_rng(3)
    for spec, declared, shapes in [
        ("abk,kc->abc", [(None, None, 3), (3, 4)], [(2, 5, 3), (3, 4)]),
        ("abk,kcd->abcd", [(None, None, 3), (3, None, 2)], [(2, 5, 3), (3, 4, 2)]),
        ("ijk,jk->i", [(None, None, 3), (None, 3)], [(2, 4, 3), (4, 3)]),
        ("xab,xbc->xac", [(None, None, None), (None, None, None)], [(2, 3, 4), (2, 4, 5)]),
        ("ii->i", [(None, None)], [(3, 3)]),
    ]:
        symbols = [sd.tensor(f"x{k}", d) for k, d in enumerate(declared)]
        values = [rng.normal(size=s) for s in shapes]
        out = sd.einsum(spec, *symbols)
        np.testing.assert_allclose(sd.evaluate(out, dict(zip(symbols, values))), np.einsum(spec, *values),
                                   rtol=1e-12)
        check_grads(out, symbols, dict(zip(symbols, values)), order=1)


def _matmul_shapes(out):
    return [(n.inputs[0].type.shape, n.inputs[1].type.shape) for n in sd.toposort(out) if n.op.name == "matmul"]


def test_contraction_order_is_numpys_optimal_path():
    """The chain is parenthesised where the cheaper product is: (AB)C for a thin middle,
    A(BC) for a thin end, as np.einsum_path(optimize="optimal") says."""
    A, B, C = sd.matrix("A", (10, 100)), sd.matrix("B", (100, 5)), sd.matrix("C", (5, 200))
    assert _matmul_shapes(sd.einsum("ij,jk,kl->il", A, B, C)) == [((10, 100), (100, 5)), ((10, 5), (5, 200))]
    A, B, C = sd.matrix("A", (100, 10)), sd.matrix("B", (10, 100)), sd.matrix("C", (100, 5))
    first, second = _matmul_shapes(sd.einsum("ij,jk,kl->il", A, B, C))
    assert sorted(first) == [(5, 100), (100, 10)] and second == ((100, 10), (10, 5))  # B C first
    # Left to right when asked (optimize=False), whatever it costs:
    assert _matmul_shapes(sd.einsum("ij,jk,kl->il", A, B, C, optimize=False))[0] == ((100, 10), (10, 100))
    # One matmul per pair, no other products, and the output needs no transpose:
    out = sd.einsum("ij,jk,kl->il", A, B, C)
    assert out.op.name == "matmul" and not any(n.op.name == "mul" for n in sd.toposort(out))


def test_interleaved_form_and_explicit_path():
    a, b = _values([(2, 3), (3, 4)])
    A, B = sd.constant(a), sd.constant(b)
    np.testing.assert_allclose(sd.evaluate(sd.einsum(A, [0, 1], B, [1, 2], [0, 2]), {}), a @ b, rtol=1e-14)
    np.testing.assert_allclose(sd.evaluate(sd.einsum(A, [0, Ellipsis], [Ellipsis]), {}), a.sum(0), rtol=1e-14)
    np.testing.assert_allclose(sd.evaluate(sd.einsum(A, [27, 1], [1, 27]), {}), a.T, rtol=1e-14)
    got = sd.einsum("ij,jk,kl->il", A, B, sd.constant(b.T), optimize=["einsum_path", (1, 2), (0, 1)])
    np.testing.assert_allclose(sd.evaluate(got, {}), a @ b @ b.T, rtol=1e-12)


@pytest.mark.parametrize("dtype", ["int64", "bool", "float32"])
def test_dtypes_match_numpy(dtype):
    rng = np.random.default_rng(4)
    a = (rng.normal(size=(3, 4)) * 3).astype(dtype)
    b = (rng.normal(size=(4, 2)) * 3).astype(dtype)
    for spec in ("ij,jk->ik", "ij,ij->j", "ij->", "ii->i"):
        ops = (a, b) if spec.count(",") else ((a[:3, :3],) if spec == "ii->i" else (a,))
        if spec == "ij,ij->j":
            ops = (a, a)
        want = np.einsum(spec, *ops)
        got = sd.evaluate(sd.einsum(spec, *[sd.constant(o) for o in ops]), {})
        assert np.asarray(got).dtype == want.dtype, (spec, dtype)
        np.testing.assert_allclose(got, want, rtol=1e-6)


def test_mixed_dtypes_promote_and_dtype_argument():
    a = np.arange(6, dtype=np.float32).reshape(2, 3)
    b = np.arange(3)
    got = sd.einsum("ij,j->i", sd.constant(a), sd.constant(b))
    assert got.dtype == np.einsum("ij,j->i", a, b).dtype.name
    assert sd.einsum("ij->i", sd.constant(b[None]), dtype="float32").dtype == "float32"


def test_compiled_matches_reference():
    pytest.importorskip("numba")
    A, B, C = sd.matrix("A", (None, 4)), sd.matrix("B"), sd.matrix("C", (None, None))
    T = sd.tensor("T", (None, None, 4))
    outs = [sd.einsum("ij,jk,kl->il", A, B, C), sd.einsum("ii", C), sd.einsum("ij,ij->j", A, A),
            sd.einsum("abk,kc->abc", T, B), sd.einsum("...k,k->...", T, A[0])]
    cost = sd.sum(outs[0] ** 2) + outs[1] + sd.sum(sd.sin(outs[3])) + sd.sum(outs[4] * outs[4])
    outs += sd.grad(cost, [A, B, C, T])
    f = sd.function([A, B, C, T], outs)
    rng = np.random.default_rng(5)
    values = [rng.normal(size=(3, 4)), rng.normal(size=(4, 5)), rng.normal(size=(5, 5)), rng.normal(size=(2, 3, 4))]
    for got, want in zip(f(*values), sd.evaluate(outs, dict(zip([A, B, C, T], values)))):
        np.testing.assert_allclose(got, want, rtol=1e-11, atol=1e-12)


ERRORS = [
    ("ij,jk->ik", [(2, 3), (4, 4)], sd.ShapeError, "sizes that differ"),
    ("ij,jk->ik", [(2, 3)], ValueError, "2 terms"),
    ("ij", [(2,)], sd.ShapeError, "too many subscripts"),
    ("i", [(2, 3)], sd.ShapeError, "too few subscripts"),
    ("ij->iij", [(2, 3)], ValueError, "more than once"),
    ("ij->k", [(2, 3)], ValueError, "which no input has"),
    ("i.j", [(2, 2)], ValueError, "'.'"),
    ("i1", [(2, 2)], ValueError, "invalid subscript '1'"),
    ("ii", [(2, 3)], sd.ShapeError, "diagonal"),
    ("ij...->ij", [(2, 3, 4)], sd.ShapeError, "'...'"),
    ("i->i->i", [(2,)], ValueError, "more than one '->'"),
]


@pytest.mark.parametrize("spec, shapes, error, text", ERRORS, ids=[e[0] + "-" + e[3] for e in ERRORS])
def test_errors_name_einsum_the_string_the_shapes_and_the_line(spec, shapes, error, text):
    symbols = [sd.tensor(f"x{k}", s) for k, s in enumerate(shapes)]
    with pytest.raises(error) as info:
        sd.einsum(spec, *symbols)
    message = str(info.value)
    assert message.startswith("einsum:") and text in message, message
    assert repr(spec) in message and str(shapes[0]).replace(",)", ",)") in message, message
    assert "test_einsum.py" in message, message
    with pytest.raises(ValueError):  # NumPy refuses the same strings
        np.einsum(spec, *[np.ones(s) for s in shapes])


def test_runtime_size_mismatch_is_an_error_when_values_arrive():
    A, B = sd.matrix("A"), sd.matrix("B")
    out = sd.einsum("ij,jk->ik", A, B)
    with pytest.raises(sd.ShapeError, match="test_einsum.py"):
        sd.evaluate(out, {A: np.ones((2, 3)), B: np.ones((4, 2))})
    # A repeated subscript takes a diagonal of a square block; a run-time size next to a
    # static one must equal it, not be cut to the shorter side.
    for declared, value in [((None, None), np.ones((2, 3))), ((None, 3), np.ones((5, 3))),
                            ((3, None), np.ones((3, 2)))]:
        M = sd.matrix("M", declared)
        with pytest.raises(sd.ShapeError, match="test_einsum.py"):
            sd.evaluate(sd.einsum("ii->i", M), {M: value})
