"""Matrix factorisations and solves: Cholesky, triangular and LU solves, log-determinants,
symmetric eigendecomposition, SVD, QR, pseudo-inverse and the matrix exponential; and two
structural ops their rules need (triangle masks, diagonals).

Every matrix input has its matrix in the last two axes; leading (batch) axes must agree
(the front end, ``symdiff.linalg``, broadcasts them first, so the evaluator's None-never-
broadcasts check sees every stretch).  Right-hand sides are matrices (..., n, k): the
front end turns a vector into one column.

Factorisations with several results (eigh's w and V, svd's U, s and Vh, qr's Q and R,
slogdet's sign and log|det|) are one op with a static ``part`` attribute: ``eigh(A,
part="w")`` and ``eigh(A, part="v")`` are two nodes whose rules use each other (hash-
consing makes them the nodes the user built), and the compiled backend computes every
part the graph uses from one LAPACK call.  The IR has no tuple values; this keeps it so.

Derivative rules are written with symdiff expressions, so they differentiate again.
Conventions (stated in ``symdiff.linalg``'s docstrings):

- ``cholesky`` and ``eigh`` act on the symmetric part (A + A^T)/2, as JAX does: for a
  symmetric A the result is NumPy's, and derivatives are those of the function of A they
  compute (symmetric gradients, correct along any direction).
- eigenvector and singular-vector derivatives use F_ij = 1/(w_j - w_i) (1/(s_j^2 - s_i^2),
  taken times s_i or s_j as 1/(s_j - s_i) * s/(s_i + s_j): no overflowing squares),
  set to 0 where two eigen/singular values are equal to rounding (TIE_ULPS ulps of the
  largest): such a pair's rotation within its eigenspace is arbitrary (fixed by rounding
  alone), and the derivative keeps none of it (JAX does this for exact equality only,
  which rounding almost never produces: its gradients there are ~1/eps).
"""

from __future__ import annotations

import math
import weakref

import numpy as np

from .. import frontend as F
from ..errors import DTypeError, GradientError
from ..ir import Expr, Op, fail_shape
from ..types import FLOAT_DTYPES, TensorType, fmt_shape
from .elementwise import zeros_like
from .linalg import MATMUL
from .reductions import MAX, SUM
from .structure import BROADCAST_LIKE, CHECK_SIZES, CONCATENATE, EXPAND_DIMS, RESHAPE, SCATTER_SLICE, SLICE, TRANSPOSE

LinAlgError = np.linalg.LinAlgError

# ------------------------------------------------------------------ shape rules


def _merge(a, b, what: str):
    """Two static sizes that must agree (None: known at run time)."""
    if a is None:
        return b
    if b is None or a == b:
        return a
    fail_shape(f"{what}: {a} != {b}")


def _float_matrix(t: TensorType, what: str = "input"):
    if t.dtype not in FLOAT_DTYPES:
        raise DTypeError(f"needs float32 or float64 matrices, got {t.dtype} (symdiff.linalg converts ints)")
    if t.ndim < 2:
        fail_shape(f"the {what} must have at least 2 dimensions (a matrix), got {t.ndim}")


def _square(t: TensorType, what: str = "input"):
    _float_matrix(t, what)
    return _merge(t.shape[-2], t.shape[-1], f"the {what} must be square, got {fmt_shape(t.shape[-2:])}")


def _batch(*types) -> tuple:
    """The common leading (batch) shape; the front end has broadcast them already."""
    ndims = {t.ndim for t in types}
    if len(ndims) != 1:
        fail_shape(f"batch dimensions differ: {' and '.join(fmt_shape(t.shape) for t in types)}")
    batch = types[0].shape[:-2]
    for t in types[1:]:
        batch = tuple(_merge(a, b, "batch dimensions differ") for a, b in zip(batch, t.shape[:-2]))
    return batch


def _same_dtype(*types):
    if len({t.dtype for t in types}) != 1:
        raise DTypeError(f"inputs must share one dtype, got {[t.dtype for t in types]}")


def _infer_solve_like(types, what="matrix", **attrs):
    a, b = types
    n = _square(a, what)
    _float_matrix(b, "right-hand side")
    _same_dtype(a, b)
    rows = _merge(n, b.shape[-2], f"the right-hand side has {b.shape[-2]} rows for a {n}x{n} matrix")
    return TensorType(a.dtype, _batch(a, b) + (rows, b.shape[-1]))


def _part(attrs_part, allowed, op):
    if attrs_part not in allowed:
        fail_shape(f"{op} part must be one of {allowed}, got {attrs_part!r}")


# ------------------------------------------------------------------ vocabulary


def mT(x: Expr) -> Expr:
    """Swap the last two axes (the matrix transpose of a batch of matrices)."""
    axes = tuple(range(x.ndim - 2)) + (x.ndim - 1, x.ndim - 2)
    return TRANSPOSE(x, axes=axes)


def sym(x: Expr) -> Expr:
    """(x + x^T) / 2."""
    return (x + mT(x)) * 0.5


def tril(x: Expr, k: int = 0) -> Expr:
    from ..frontend.structure import tril as _tril  # late: the front end builds on the ops

    return _tril(x, k)


def triu(x: Expr, k: int = 0) -> Expr:
    from ..frontend.structure import triu as _triu

    return _triu(x, k)


def _eye(x: Expr, dtype: str) -> Expr:
    """The (n, n) identity for the square matrices x (n may be a run-time size)."""
    from ..frontend.structure import eye

    n = x.type.shape[-1]
    return eye(n if n is not None else F.dim(x, x.ndim - 1), dtype=dtype)


# Nodes known to be diagonal matrices (made by diag_embed), with their diagonals: cholesky's
# rule takes such cotangent terms by their diagonal, without a matrix product (and without
# ever building the matrix).  A fact about the node's value, so hash-consing cannot make it
# wrong; a graph loaded from JSON just takes the general path.
_DIAGONAL = weakref.WeakKeyDictionary()


def diag_embed(d: Expr, like: Expr) -> Expr:
    """The square matrices (shaped like ``like``) with ``d`` on the diagonal, 0 elsewhere."""
    out = F.where(_eye(like, "bool"), BROADCAST_LIKE(EXPAND_DIMS(d, axes=(d.ndim,)), like), 0)
    _DIAGONAL[out] = d
    return out


def eye_like(x: Expr) -> Expr:
    """Identity matrices shaped like the square matrices ``x`` (sizes may be run-time)."""
    eye = _eye(x, x.dtype)
    return eye if eye.type.shape == x.type.shape else BROADCAST_LIKE(eye, x)


def _row(v: Expr) -> Expr:  # (..., k) -> (..., 1, k): scales columns when multiplied
    return EXPAND_DIMS(v, axes=(v.ndim - 1,))


def _col(v: Expr) -> Expr:  # (..., k) -> (..., k, 1): scales rows
    return EXPAND_DIMS(v, axes=(v.ndim,))


# ---------------------------------------------------------------- diag_part


def _infer_diag(types):
    (x,) = types
    if x.ndim < 2:
        fail_shape(f"needs at least 2 dimensions, got {x.ndim}")
    n = _merge(x.shape[-2], x.shape[-1], f"needs square matrices, got {fmt_shape(x.shape[-2:])}")
    return TensorType(x.dtype, x.shape[:-2] + (n,))


def _impl_diag(x):
    if x.shape[-2] != x.shape[-1]:
        raise ValueError(f"diag_part needs square matrices, got shape {x.shape}")
    return np.diagonal(x, axis1=-2, axis2=-1).copy()


DIAG_PART = Op(
    "diag_part",
    infer=_infer_diag,
    impl=_impl_diag,
    vjp=(lambda g, out, x: diag_embed(g, x),),
    jvp=lambda ts, out, x: DIAG_PART(ts[0]),
    kind="linalg",
    samples=lambda rng: [((rng.normal(size=(2, 4, 4)),), {})],
    doc="The main diagonal of square matrices (np.diagonal over the last two axes).",
)

# ----------------------------------------------------------- test matrices


def spd(rng, n, batch=()):
    """Well-conditioned symmetric positive definite matrices."""
    x = rng.normal(size=batch + (n, n))
    return x @ np.swapaxes(x, -1, -2) / n + np.eye(n)


def _distinct_spectrum(rng, n, batch=(), gap=0.7):
    """Symmetric matrices with eigenvalues at least ``gap`` apart."""
    q, _ = np.linalg.qr(rng.normal(size=batch + (n, n)))
    w = np.cumsum(rng.uniform(gap, gap + 1.0, size=batch + (n,)), axis=-1) - n * (gap + 0.5) / 2
    return (q * w[..., None, :]) @ np.swapaxes(q, -1, -2)


def _stable(draw, impl, rng, tries=50):
    """A sample ``draw(rng)`` whose factor ``impl`` moves continuously under perturbations
    the size of the tests' float32 finite-difference steps: LAPACK picks each singular or
    eigenvector's sign, and that choice jumps across surfaces a sample must stay away from."""
    for _ in range(tries):
        x = draw(rng)
        base = impl(x)
        steps = [rng.uniform(-1, 1, size=x.shape) * 0.03 * np.maximum(1, np.abs(x)) for _ in range(4)]
        if all(np.max(np.abs(impl(x + d) - base)) < 0.3 for d in steps):
            return x
    raise AssertionError("no stable sample found")


def _well_conditioned(rng, shape):
    """Matrices with singular values in [1, 2.6] and at least 0.3 apart (distinct: SVD
    samples), not symmetric."""
    m, n = shape[-2:]
    k = min(m, n)
    u, _ = np.linalg.qr(rng.normal(size=shape[:-2] + (m, m)))
    v, _ = np.linalg.qr(rng.normal(size=shape[:-2] + (n, n)))
    s = 1.0 + 0.4 * np.arange(k)[::-1] + rng.uniform(0, 0.1, size=shape[:-2] + (k,))
    return (u[..., :, :k] * s[..., None, :]) @ np.swapaxes(v[..., :, :k], -1, -2)


# ---------------------------------------------------------------- cholesky


def require_square(a, op: str):
    """A ValueError (the evaluator's ShapeError) for run-time sizes that are not square;
    np.linalg would raise LinAlgError, which is for values, not shapes."""
    if a.ndim < 2 or a.shape[-1] != a.shape[-2]:
        raise ValueError(f"{op} needs square matrices, got shape {a.shape}")


def _impl_cholesky(a):
    require_square(a, "cholesky")
    # (a + a^T) * 0.5 is exactly a for a symmetric a, so NumPy's value is kept bitwise.
    return np.linalg.cholesky((a + np.swapaxes(a, -1, -2)) * 0.5)


def _infer_cholesky(types):
    (a,) = types
    _square(a)
    return a


def _phi(x: Expr) -> Expr:
    """The lower triangle with its diagonal halved (Murray 2016's Phi)."""
    return tril(x) - F.where(_eye(x, "bool"), x * 0.5, 0)


def _cholesky_sandwich(L: Expr, P: Expr) -> Expr:
    """L^-T P L^-1 by two triangular solves."""
    Y = SOLVE_TRIANGULAR(L, P, lower=True, trans=True, unit_diagonal=False)  # L^-T P
    return mT(SOLVE_TRIANGULAR(L, mT(Y), lower=True, trans=True, unit_diagonal=False))  # (L^-T Y^T)^T = Y L^-1


def _sum_terms(cotangent: Expr, out: Expr) -> list:
    """The cotangent as a list of terms whose sum it is (it is linear, so a rule may
    treat each kind of term its own way); ADD nodes of the output's type are opened."""
    terms, stack = [], [cotangent]
    while stack and len(terms) < 64:
        t = stack.pop()
        if t.op.name == "add" and all(x.type == out.type for x in t.inputs):
            stack.extend(t.inputs)
        else:
            terms.append(t)
    return terms + stack


# Cotangents cho_solve sends a lower factor L: node -> (u, x, L) with the node equal to
# tril((u x^T + x u^T) L).  Cholesky's rule turns such a term into sym(u x^T) directly.
_CHO_SOLVE_TERMS = weakref.WeakKeyDictionary()


def _cho_solve_term(t: Expr, out: Expr):
    found = _CHO_SOLVE_TERMS.get(t)
    if found is None or found[2] is not out:
        return None
    return found[:2]


def _full_slice_of(x: Expr, of: Expr) -> bool:
    return x is of or (x.op is SLICE and x.inputs[0] is of
                       and all(e in ((None, None, 1), (0, None, 1)) for e in x.params["index"]))


def _diagonal_of(t: Expr, out: Expr):
    """The diagonal d (..., n) if the cotangent term ``t`` is exactly the square matrices
    with d on the diagonal and zeros elsewhere, else None.  Three spellings reach cholesky's
    rule: diag_embed (the rule of sd.linalg.diagonal), and the rules of sd.diagonal/sd.diag,
    a scatter into the flattened matrix with step n + 1 (static sizes) or a scatter_add at
    (iota, iota) (run-time sizes).  Anything else is a general term, which is correct too."""
    n, diag_shape = out.type.shape[-1], out.type.shape[:-1]
    if t in _DIAGONAL:
        d = _DIAGONAL[t]
        return d if d.type.shape == diag_shape else None
    if t.type != out.type:
        return None
    if t.op is SCATTER_SLICE and t.inputs[1] is out and all(
            e in ((None, None, 1), (0, None, 1)) for e in t.params["index"]):  # the rule of a full slice of L
        return _diagonal_of(t.inputs[0], out)
    if t.op is RESHAPE and t.inputs[0].op is SCATTER_SLICE and n is not None:
        scatter = t.inputs[0]
        d, index = scatter.inputs[0], scatter.params["index"]
        flat = scatter.inputs[1].type.shape[-1]
        start, stop, step = index[-1]
        if (flat == n * n and (start or 0) == 0 and step == n + 1 and len(range(n * n)[start:stop:step]) == n
                and all(e == (None, None, 1) for e in index[:-1]) and d.type.shape == diag_shape):
            return d
        return None
    if t.op.name == "scatter_add" and len(t.inputs) == 4 and t.params.get("axes") == (out.ndim - 2, out.ndim - 1):
        base, d, rows, cols = t.inputs
        zeros = base.op is BROADCAST_LIKE and base.inputs[0].op.name == "constant" \
            and not np.any(base.inputs[0].params["value"].array)
        if (zeros and rows is cols and rows.op.name == "iota" and _full_slice_of(rows.inputs[0], out)
                and rows.params["axis"] in (out.ndim - 2, out.ndim - 1) and d.type.shape == diag_shape):
            return d
    return None


def _vjp_cholesky(g, out, a):
    """d(sym A) = dL L^T + L dL^T gives Abar = sym(L^-T Phi(L^T Lbar) L^-1).  The rule is
    linear in Lbar; it sorts Lbar's terms: a diagonal term D (from diag(L), e.g. a log-
    determinant) needs no product, Phi(L^T D) = diag(diag(L) * diag(D)) / 2, and the
    sandwich is cho_inverse (LAPACK trtri + lauum, 2n^3/3 flops where two triangular
    solves take 2n^3); a term tril(G L) with symmetric G (what cho_solve sends) is exactly
    G / 2 with no O(n^3) work; the rest take the general formula (one matmul, two
    triangular solves)."""
    L = out
    general, diagonal, direct = [], [], []
    for t in _sum_terms(g, out):
        pair = _cho_solve_term(t, out)
        if pair is not None:
            u, v = pair
            direct.append(sym(MATMUL(u, mT(v))))  # (u v^T + v u^T) / 2
        elif _diagonal_of(t, out) is not None:
            diagonal.append(_diagonal_of(t, out))
        else:
            general.append(t)
    parts = []
    if general:
        total = general[0]
        for t in general[1:]:
            total = total + t
        parts.append(sym(_cholesky_sandwich(L, _phi(MATMUL(mT(L), total)))))
    if diagonal:
        total = diagonal[0]
        for t in diagonal[1:]:
            total = total + t
        parts.append(CHO_INVERSE(L, DIAG_PART(L) * total * 0.5))  # L^-T diag(w) L^-1, symmetric
    parts.extend(direct)
    result = parts[0]
    for p in parts[1:]:
        result = result + p
    return result


def _jvp_cholesky(tangents, out, a):
    (da,) = tangents
    L = out
    X = SOLVE_TRIANGULAR(L, sym(da), lower=True, trans=False, unit_diagonal=False)  # L^-1 dS
    Y = SOLVE_TRIANGULAR(L, mT(X), lower=True, trans=False, unit_diagonal=False)  # L^-1 dS L^-T
    return MATMUL(L, _phi(Y))


CHOLESKY = Op(
    "cholesky",
    infer=_infer_cholesky,
    impl=_impl_cholesky,
    vjp=(_vjp_cholesky,),
    jvp=_jvp_cholesky,
    kind="linalg",
    samples=lambda rng: [((spd(rng, 3),), {}), ((spd(rng, 4, (2,)),), {})],
    doc="Lower Cholesky factor of the symmetric part (A + A^T)/2 (LAPACK potrf).",
)

# ------------------------------------------------------- triangular solves


def _triangle(a, lower: bool, unit: bool):
    t = np.tril(a) if lower else np.triu(a)
    if unit:
        n = a.shape[-1]
        t = t.copy()
        t[..., np.arange(n), np.arange(n)] = 1
    return t


def tri_solve(t, b, lower: bool):
    """Solve t x = b for triangular t (..., n, n) and b (..., n, k) by substitution
    (the NumPy reference for what LAPACK's trsm computes)."""
    n = t.shape[-1]
    dtype = np.result_type(t, b)
    x = np.array(b, dtype=dtype, copy=True)
    diag = np.diagonal(t, axis1=-2, axis2=-1)
    if np.any(diag == 0):
        raise LinAlgError("Singular matrix: a zero on the diagonal of a triangular matrix")
    for i in (range(n) if lower else range(n - 1, -1, -1)):
        if lower:
            acc = (t[..., i:i + 1, :i] @ x[..., :i, :])[..., 0, :] if i else 0
        else:
            acc = (t[..., i:i + 1, i + 1:] @ x[..., i + 1:, :])[..., 0, :] if i < n - 1 else 0
        x[..., i, :] = (b[..., i, :] - acc) / diag[..., i, None]
    return x


def _impl_solve_triangular(a, b, lower, trans, unit_diagonal):
    if a.shape[-1] != a.shape[-2] or a.shape[-1] != b.shape[-2] or a.shape[:-2] != b.shape[:-2]:
        raise ValueError(f"solve_triangular: shapes {a.shape} and {b.shape} do not fit")
    t = _triangle(a, lower, unit_diagonal)
    if trans:
        t, lower = np.swapaxes(t, -1, -2), not lower
    return tri_solve(t, b, lower)


def _triangle_mask(x, lower, unit):
    if lower:
        return tril(x, -1 if unit else 0)
    return triu(x, 1 if unit else 0)


def _vjp_trisolve_b(g, out, a, b, lower, trans, unit_diagonal):
    return SOLVE_TRIANGULAR(a, g, lower=lower, trans=not trans, unit_diagonal=unit_diagonal)


def _vjp_trisolve_a(g, out, a, b, lower, trans, unit_diagonal):
    bbar = _vjp_trisolve_b(g, out, a, b, lower, trans, unit_diagonal)
    tbar = MATMUL(out, mT(bbar)) if trans else MATMUL(bbar, mT(out))
    return -_triangle_mask(tbar, lower, unit_diagonal)


def _jvp_trisolve(tangents, out, a, b, lower, trans, unit_diagonal):
    da, db = tangents
    rhs = db
    if da is not None:
        dt = _triangle_mask(da, lower, unit_diagonal)
        term = MATMUL(mT(dt) if trans else dt, out)
        rhs = -term if rhs is None else rhs - term
    return SOLVE_TRIANGULAR(a, rhs, lower=lower, trans=trans, unit_diagonal=unit_diagonal)


def _trisolve_samples(rng):
    def tri(n, batch=()):
        return np.linalg.cholesky(spd(rng, n, batch)) + rng.normal(size=batch + (n, n)) * 0.3

    return [((tri(3), rng.normal(size=(3, 2))), {"lower": False, "trans": True, "unit_diagonal": False}),
            ((tri(4, (2,)), rng.normal(size=(2, 4, 3))), {"lower": True, "trans": False, "unit_diagonal": True})]


SOLVE_TRIANGULAR = Op(
    "solve_triangular",
    infer=lambda types, **attrs: _infer_solve_like(types, "triangular matrix"),
    impl=_impl_solve_triangular,
    vjp=(_vjp_trisolve_a, _vjp_trisolve_b),
    jvp=_jvp_trisolve,
    kind="linalg",
    samples=_trisolve_samples,
    doc="X with op(T) X = B, T the lower or upper triangle of A (unit diagonal if asked), op(T) = T or T^T "
        "(LAPACK trsm); a zero on T's diagonal raises LinAlgError.",
)

# --------------------------------------------------------------- cho_solve


def _factor_lower(c, lower):
    return np.tril(c) if lower else np.swapaxes(np.triu(c), -1, -2)


def _impl_cho_solve(c, b, lower):
    if c.shape[-1] != c.shape[-2] or c.shape[-1] != b.shape[-2] or c.shape[:-2] != b.shape[:-2]:
        raise ValueError(f"cho_solve: shapes {c.shape} and {b.shape} do not fit")
    L = _factor_lower(c, lower)
    return tri_solve(np.swapaxes(L, -1, -2), tri_solve(L, b, True), False)


def _vjp_cho_solve_b(g, out, c, b, lower):
    return CHO_SOLVE(c, g, lower=lower)


def _vjp_cho_solve_c(g, out, c, b, lower):
    """With K = L L^T and Kbar = -(Bbar X^T + X Bbar^T)/2: Lbar = -tril((Bbar X^T + X Bbar^T) L),
    built as tril(u (X^T L) + X (u^T L)) with u = -Bbar, the form cholesky's rule recognises
    (and then never computes: it needs only u and X)."""
    u = -_vjp_cho_solve_b(g, out, c, b, lower)
    x = out
    if lower:
        f = tril(c)  # only the factor's triangle is read
        term = tril(MATMUL(u, MATMUL(mT(x), f)) + MATMUL(x, MATMUL(mT(u), f)))
        if c.op is CHOLESKY:
            _CHO_SOLVE_TERMS[term] = (u, x, c)
        return term
    # K = U^T U: Ubar = -triu(U (Bbar X^T + X Bbar^T))
    f = triu(c)
    return triu(MATMUL(MATMUL(f, u), mT(x)) + MATMUL(MATMUL(f, x), mT(u)))


def _jvp_cho_solve(tangents, out, c, b, lower):
    dc, db = tangents
    rhs = db
    if dc is not None:
        x = out
        if lower:
            f, df = tril(c), tril(dc)  # dK X = dL (L^T X) + L (dL^T X)
            term = MATMUL(df, MATMUL(mT(f), x)) + MATMUL(f, MATMUL(mT(df), x))
        else:
            f, df = triu(c), triu(dc)  # dK X = dU^T (U X) + U^T (dU X)
            term = MATMUL(mT(df), MATMUL(f, x)) + MATMUL(mT(f), MATMUL(df, x))
        rhs = -term if rhs is None else rhs - term
    return CHO_SOLVE(c, rhs, lower=lower)


def _cho_solve_samples(rng):
    L3 = np.linalg.cholesky(spd(rng, 3))
    L4 = np.linalg.cholesky(spd(rng, 4, (2,)))
    return [((L3, rng.normal(size=(3, 2))), {"lower": True}),
            ((np.swapaxes(L4, -1, -2), rng.normal(size=(2, 4, 1))), {"lower": False})]


CHO_SOLVE = Op(
    "cho_solve",
    infer=lambda types, **attrs: _infer_solve_like(types, "Cholesky factor"),
    impl=_impl_cho_solve,
    vjp=(_vjp_cho_solve_c, _vjp_cho_solve_b),
    jvp=_jvp_cho_solve,
    kind="linalg",
    samples=_cho_solve_samples,
    doc="X with (L L^T) X = B from a Cholesky factor (lower=True: L = tril(c); else c's upper triangle is "
        "L^T) (LAPACK potrs).  Its own op so its factor's gradient reaches cholesky as tril(G L), which "
        "costs cholesky's rule nothing.",
)

# ------------------------------------------------------------- cho_inverse


def _infer_cho_inverse(types):
    c, w = types
    n = _square(c, "Cholesky factor")
    _same_dtype(c, w)
    if w.ndim != c.ndim - 1:
        fail_shape(f"the weights must have the factor's batch dimensions and length n, got {fmt_shape(w.shape)}")
    _merge(n, w.shape[-1], "the weights' length differs from the factor's size")
    return TensorType(c.dtype, _batch(c, TensorType(w.dtype, w.shape + (1,))) + (n, n))


def _impl_cho_inverse(c, w):
    if c.shape[-1] != c.shape[-2] or c.shape[:-2] != w.shape[:-1] or w.shape[-1] != c.shape[-1]:
        raise ValueError(f"cho_inverse: shapes {c.shape} and {w.shape} do not fit")
    z = tri_solve(np.tril(c), np.broadcast_to(np.eye(c.shape[-1], dtype=c.dtype), c.shape), True)  # L^-1
    return np.swapaxes(z, -1, -2) @ (w[..., :, None] * z)


def _vjp_cho_inverse_c(g, out, c, w):
    # dS = -L^-T dL^T S - S dL L^-1 (+ the weights' term): Lbar = -tril(S (Sbar + Sbar^T) L^-T)
    L = tril(c)
    p = MATMUL(out, g + mT(g))
    return -tril(mT(SOLVE_TRIANGULAR(L, mT(p), lower=True, trans=False, unit_diagonal=False)))


def _vjp_cho_inverse_w(g, out, c, w):
    # <Sbar, L^-T dW L^-1> = sum_i dw_i (L^-1 Sbar L^-T)_ii
    L = tril(c)
    y = SOLVE_TRIANGULAR(L, g, lower=True, trans=False, unit_diagonal=False)  # L^-1 Sbar
    return DIAG_PART(SOLVE_TRIANGULAR(L, mT(y), lower=True, trans=False, unit_diagonal=False))


def _jvp_cho_inverse(tangents, out, c, w):
    dc, dw = tangents
    total = None
    if dc is not None:
        a1 = SOLVE_TRIANGULAR(tril(c), MATMUL(mT(tril(dc)), out), lower=True, trans=True, unit_diagonal=False)
        total = -(a1 + mT(a1))  # -L^-T dL^T S - S dL L^-1 (S symmetric)
    if dw is not None:
        term = CHO_INVERSE(c, dw)
        total = term if total is None else total + term
    return total


def _cho_inverse_samples(rng):
    L3 = np.linalg.cholesky(spd(rng, 3))
    L4 = np.linalg.cholesky(spd(rng, 4, (2,)))
    return [((L3, rng.uniform(0.5, 2.0, size=3)), {}), ((L4, rng.normal(size=(2, 4))), {})]


CHO_INVERSE = Op(
    "cho_inverse",
    infer=_infer_cho_inverse,
    impl=_impl_cho_inverse,
    vjp=(_vjp_cho_inverse_c, _vjp_cho_inverse_w),
    jvp=_jvp_cho_inverse,
    kind="linalg",
    samples=_cho_inverse_samples,
    doc="L^-T diag(w) L^-1 for the lower triangle L of c: (L L^T)^-1 for w = 1 (LAPACK trtri, then lauum "
        "of diag(sqrt|w|) L^-1 for each sign of w).  Its own op for cholesky's rule: the log-determinant's "
        "term of a Cholesky gradient in 2n^3/3 flops where two triangular solves take 2n^3.",
)

# ------------------------------------------------------------------ LU solve


def _impl_solve(a, b, trans, singular="raise", reason=""):
    if a.shape[-1] != a.shape[-2] or a.shape[-1] != b.shape[-2] or a.shape[:-2] != b.shape[:-2]:
        raise ValueError(f"solve: shapes {a.shape} and {b.shape} do not fit")
    a = np.swapaxes(a, -1, -2) if trans else a
    try:
        return np.linalg.solve(a, b)
    except np.linalg.LinAlgError as exc:  # per matrix: 0 for the singular ones
        if singular == "raise":
            raise LinAlgError(f"{exc}{reason}") from None
        out = np.empty(b.shape, dtype=np.result_type(a, b))
        for index in np.ndindex(out.shape[:-2]):
            try:
                out[index] = np.linalg.solve(a[index], b[index])
            except np.linalg.LinAlgError:
                out[index] = 0
        return out


# A solve's private attributes (singular, reason) pass on to the solves of its own rules.
def _vjp_solve_b(g, out, a, b, trans, **private):
    return SOLVE(a, g, trans=not trans, **private)


def _vjp_solve_a(g, out, a, b, trans, **private):
    bbar = _vjp_solve_b(g, out, a, b, trans, **private)
    return -(MATMUL(out, mT(bbar)) if trans else MATMUL(bbar, mT(out)))


def _jvp_solve(tangents, out, a, b, trans, **private):
    da, db = tangents
    rhs = db
    if da is not None:
        term = MATMUL(mT(da) if trans else da, out)
        rhs = -term if rhs is None else rhs - term
    return SOLVE(a, rhs, trans=trans, **private)


SOLVE = Op(
    "solve",
    infer=lambda types, **attrs: _infer_solve_like(types),
    impl=_impl_solve,
    vjp=(_vjp_solve_a, _vjp_solve_b),
    jvp=_jvp_solve,
    kind="linalg",
    samples=lambda rng: [((_well_conditioned(rng, (3, 3)), rng.normal(size=(3, 2))), {"trans": False}),
                         ((_well_conditioned(rng, (2, 4, 4)), rng.normal(size=(2, 4, 1))), {"trans": True})],
    doc="X with A X = B (trans: A^T X = B) by LU with partial pivoting (LAPACK getrf/getrs); the compiled "
        "backend factors each A once for every solve with it (the gradient's A^T solve included).  A singular "
        "A raises LinAlgError (NumPy's message, then the private attribute reason: what a rule needed the "
        "solve for); with the private attribute singular='zero' (det's rules, which select another value "
        "there) its X is 0 instead, and so are its derivatives there.",
)

# ------------------------------------------------------------------ slogdet


def _infer_slogdet(types, part, singular="raise"):
    (a,) = types
    _square(a)
    _part(part, ("sign", "logabsdet", "det"), "slogdet")
    return TensorType(a.dtype, a.shape[:-2])


def _impl_slogdet(a, part, singular="raise"):
    require_square(a, "slogdet")
    sign, logabsdet = np.linalg.slogdet(a)
    if part == "det":
        return sign * np.exp(logabsdet)  # np.linalg.det's own formula
    return sign if part == "sign" else logabsdet


# What a singular A^-T solve of log|det|'s rules says after NumPy's "Singular matrix" (no user
# line: attributes are printed in the kernel's source, which is the cache key)
_NO_LOGDET_DERIVATIVE = " (log|det| from slogdet has no derivative at a singular matrix, where it is -inf)"


def _inverse_transpose(a: Expr, singular) -> Expr:
    """A^-T for log|det A|'s rules, as the solve A^T X = I (which shares A's LU factors with
    solve(A, .)); at a singular A it raises LinAlgError saying why, or with singular='zero'
    (det's rules) it is 0 there."""
    if singular == "zero":
        return SOLVE(a, eye_like(a), trans=True, singular="zero")
    return SOLVE(a, eye_like(a), trans=True, reason=_NO_LOGDET_DERIVATIVE)


_LN2 = math.log(2.0)


def _det_factors(a: Expr):
    """det(A) = sign * m * 2**k with k = rint(log|det| / ln 2) and |m| in [0.7, 1.42], as
    (sign * m, 2**low, 2**(k - low)), low = floor(k / 2): two exact powers of two, each about
    the square root of det's scale, to apply one after the other; k has no derivative.

    At a singular A (sign 0, log|det| -inf) k is 0: m = 0 * exp(-inf) = 0 and the powers
    are 1, and log|det|'s rule there is 0 (its private singular='zero'), so that the
    derivatives of the regular branch det's rules select away are exact zeros, not NaN
    (which a zero cotangent or a ``where`` would not mask) nor a LinAlgError."""
    from ..frontend.math import floor, rint  # late: the front end builds on the ops

    sign, logabsdet = SLOGDET(a, part="sign"), SLOGDET(a, part="logabsdet", singular="zero")
    k = F.stop_gradient(rint(F.where(F.equal(sign, 0), 0.0, logabsdet) * (1 / _LN2)))
    low = floor(k * 0.5)
    return sign * F.exp(logabsdet - k * _LN2), F.power(2.0, low), F.power(2.0, k - low)


def _times_det(x: Expr, a: Expr) -> Expr:
    """det(A) * x for x of the batch shape of ``a`` followed by ``core`` axes, without det(A)
    (``_det_factors``), the powers of two applied last.  det(A) * A^-T (the cofactors) is
    representable far beyond the range of det(A) itself (an n x n matrix at scale s: s^(n-1)
    against s^n); multiplying by the halves one after the other keeps each intermediate
    between x and the result."""
    mantissa, low, high = _det_factors(a)

    def spread(v):  # batch shape -> broadcasting against x
        for _ in range(x.ndim - v.ndim):
            v = _col(v)
        return v

    return spread(low) * (spread(high) * (spread(mantissa) * x))


def _cofactors(g: Expr, a: Expr) -> Expr:
    """g det(A) A^-T, as 2**low X with A^T X = (g m 2**(k - low)) I (``_det_factors``).

    Not ``_times_det(g A^-T, a)``, although the values agree: that product's own reverse
    derivative (a reverse-over-reverse HVP) sends the cotangent V through the factors to
    A^-T as det(A) V, scale s^n at scale s, which overflowed at 2**500 (3x3) and
    underflowed at 2**-500.  Here the right-hand side is det's larger half (s^(n/2)) and
    the solve brings it down to s^(n/2-1): reverse mode sees V 2**low (s^(n/2)), the solve's
    cotangent (s^(n/2-1)) and A's (s^(n-2), the HVP's own scale).  Only log|det|'s scalar
    cotangent <V, result> has the gradient's scale, s^(n-1), unavoidably (the result is
    proportional to exp(log|det|)).  The same solve as before (A^T X = I): one LU of A."""
    mantissa, low, high = _det_factors(a)
    rhs = _col(_col(g * (high * mantissa))) * eye_like(a)
    regular = _col(_col(low)) * SOLVE(a, rhs, trans=True, singular="zero")
    # at an exactly singular A (slogdet's sign 0: a zero pivot) the solve is 0 and the
    # cofactors come from an SVD (``singular_cofactors``, which does no work elsewhere)
    sign = SLOGDET(a, part="sign")
    return F.where(_col(_col(F.equal(sign, 0))), _col(_col(g)) * SINGULAR_COFACTORS(a, sign), regular)


def _vjp_slogdet(g, out, a, part, singular="raise"):
    if part == "sign":
        return zeros_like(a)
    if part == "det":  # g det(A) A^-T, the cofactors' scale kept apart from det's
        return _cofactors(g, a)
    return _col(_col(g)) * _inverse_transpose(a, singular)


def _infer_singular_cofactors(types):
    a, sign, *direction = types
    _square(a)
    if sign.shape != a.shape[:-2]:
        fail_shape(f"sign must have the batch shape {fmt_shape(a.shape[:-2])}, got {fmt_shape(sign.shape)}")
    if direction:
        (e,) = direction
        if e.ndim != a.ndim or e.dtype != a.dtype:
            fail_shape(f"the direction must be like the matrix {a}, got {e}")
        return TensorType(a.dtype, tuple(_merge(x, y, "the direction's shape differs") for x, y in zip(a.shape, e.shape)))
    return a


def products_of_others(s, skip):
    """prod_{j != k, j != skip} s_j for each k of the vector s (singular values: >= 0; skip
    -1 for none), by prefix and suffix products kept as a mantissa and a binary exponent: a
    plain running product overflowed to inf and met a zero singular value as NaN (det's
    gradient at diag(1e200, 1e200, 1e-200, 1e-200, 0), true diag(0, 0, 0, 0, 1)).  Plain
    Python on scalars, run as it is by the reference and compiled by Numba for kernels
    (``backends.lapack``): the same operations, the same bits."""
    n = len(s)
    out = np.empty(n, dtype=s.dtype)
    mantissas, exponents = np.empty(n), np.empty(n, dtype=np.int64)
    mantissa, exponent = 1.0, 0
    for k in range(n):
        mantissas[k], exponents[k] = mantissa, exponent
        fraction, power = math.frexp(1.0 if k == skip else float(s[k]))
        mantissa, carry = math.frexp(mantissa * fraction)
        exponent += power + carry
    mantissa, exponent = 1.0, 0
    for k in range(n - 1, -1, -1):
        fraction, power = math.frexp(mantissas[k] * mantissa)
        total = int(exponents[k]) + exponent + power
        # ldexp raises OverflowError in Python where the true product is above the range
        out[k] = math.inf if fraction != 0 and total > 1024 else math.ldexp(fraction, max(total, -1100))
        fraction, power = math.frexp(1.0 if k == skip else float(s[k]))
        mantissa, carry = math.frexp(mantissa * fraction)
        exponent += power + carry
    return out


def cofactor_tangent_core(w, q):
    """d cof(diag(s))[W], the derivative of the cofactor matrix of diag(s) along W, for any s:
    sum_{k != i} q_ik W_kk on the diagonal and -q_ij W_ji off it, q_ij = prod_{l != i, j} s_l
    (the (n-2)-minors of diag(s): row i of q is ``products_of_others(s, i)``; its diagonal
    is not read).  In place of W; plain Python as ``products_of_others`` (the reference runs
    it, kernels run it compiled; no function argument: that made kernels uncacheable)."""
    n = w.shape[0]
    diagonal = np.empty(n, dtype=w.dtype)
    for i in range(n):
        diagonal[i] = w[i, i]
    for i in range(n):
        total = 0.0
        for k in range(n):
            if k != i:
                total += q[i, k] * diagonal[k]
        for j in range(i + 1, n):  # the pair (i, j) and its transpose: q is symmetric
            w[i, j], w[j, i] = -q[i, j] * w[j, i], -q[i, j] * w[i, j]
        w[i, i] = total
    return w


def _impl_singular_cofactors(a, sign, *direction):
    out = np.zeros(a.shape, dtype=a.dtype)
    for index in np.ndindex(a.shape[:-2]):
        if sign[index] == 0 and not np.all(np.isfinite(a[index])):
            out[index] = np.nan  # LU finds a NaN matrix singular (NumPy's det is 0); no SVD converges
        elif sign[index] == 0:
            u, s, vh = np.linalg.svd(a[index])
            turn = np.linalg.det(u) * np.linalg.det(vh)
            if direction:  # cof(A + tE) = turn U cof(diag(s) + t U^T E Vh^T) Vh
                w = np.ascontiguousarray(u.T @ direction[0][index] @ vh.T)
                q = np.array([products_of_others(s, i) for i in range(len(s))])
                out[index] = turn * (u @ cofactor_tangent_core(w, q) @ vh)
            else:
                out[index] = turn * ((u * products_of_others(s, -1)) @ vh)
    return out


def _not_differentiated_at_singular(a, sign):
    """0 where ``sign`` is not 0 (the op's value is 0 there), NaN where it is: the derivative
    of the cofactors' tangent at a singular matrix (third derivatives of det there) is not
    formed."""
    return F.where(_col(_col(F.equal(sign, 0))), np.nan, zeros_like(a))


def _vjp_singular_cofactors(i, c, out, a, sign, *direction):
    # d cof(A) is self-adjoint, <C, d cof(A)[E]> = d2 det(A)[C, E] = <d cof(A)[C], E>: the
    # cotangent of A (cofactors) and of E (their tangent) are the tangent along C
    if i == 1:  # slogdet's sign: no derivative
        return zeros_like(sign)
    if i == 0 and direction:
        return _not_differentiated_at_singular(a, sign)
    return SINGULAR_COFACTORS(a, sign, c)


def _jvp_singular_cofactors(tangents, out, a, sign, *direction):
    da, _, *de = tangents
    if not direction:
        return None if da is None else SINGULAR_COFACTORS(a, sign, da)
    total = None if de[0] is None else SINGULAR_COFACTORS(a, sign, de[0])
    if da is not None:
        unformed = _not_differentiated_at_singular(a, sign)
        total = unformed if total is None else total + unformed
    return total


def _singular_cofactors_samples(rng):
    # regular matrices only: the op is 0 near them, and at a singular one it is not continuous
    # (tests/test_linalg.py checks the singular values in both backends against exact ones)
    return [((_well_conditioned(rng, (2, 3, 3)), np.ones(2)), {}), ((_well_conditioned(rng, (3, 3)), -np.ones(())), {}),
            ((_well_conditioned(rng, (2, 3, 3)), np.ones(2), rng.normal(size=(2, 3, 3))), {})]


# A primitive because the cofactors of a singular matrix need no inverse but no op of the
# vocabulary forms them: det's gradient g det(A) A^-T solved with A's LU raised
# LinAlgError at an exactly singular A, where the true gradient, the cofactor matrix (the
# transposed adjugate), is finite: [[4, -2], [-2, 1]] at [[1, 2], [2, 4]]; 0 where the rank
# is n - 2 or less.  Formed by an SVD, A = U diag(s) Vh: cof(A) = det(U) det(Vh) U diag(prod
# of the other s) Vh, exact to rounding relative to |A|^(n-1).  It takes slogdet's sign and
# works only where it is 0 (elsewhere its value is 0 and no SVD runs: det's rule selects
# the LU solve there), so the regular case keeps its cost.  With a third input E it is the
# cofactors' derivative along E (det's second derivatives at a singular matrix), by the
# same SVD: cof is multiplicative, so cof(A + tE) = det(U) det(Vh) U cof(diag(s) + tW) Vh
# with W = U^T E Vh^T, whose derivative needs no derivative of U or Vh (any rank, repeated
# zero singular values included; ``cofactor_tangent_core``).  That tangent is not
# differentiated in A at singular matrices (NaN: det's third derivatives there); compiled
# as one call of ``lapack``'s cofactors helper per singular batch element.
SINGULAR_COFACTORS = Op(
    "singular_cofactors",
    infer=_infer_singular_cofactors,
    impl=_impl_singular_cofactors,
    vjp=_vjp_singular_cofactors,
    jvp=_jvp_singular_cofactors,
    kind="linalg",
    samples=_singular_cofactors_samples,
    doc="The cofactor matrix (transposed adjugate) of each square matrix whose slogdet sign is 0, or with a "
        "third input E its derivative along E, by an SVD; 0 for the others (private: det's first and second "
        "derivatives at singular matrices).",
)


def _jvp_slogdet(tangents, out, a, part, singular="raise"):
    (da,) = tangents
    if part == "sign":
        return None
    if part == "det":  # <cof(A), dA>: the cofactors as the reverse rule forms them (also at a singular A)
        return SUM(_cofactors(zeros_like(out) + 1, a) * da, axes=(a.ndim - 2, a.ndim - 1), keepdims=False)
    return SUM(_inverse_transpose(a, singular) * da, axes=(a.ndim - 2, a.ndim - 1), keepdims=False)


SLOGDET = Op(
    "slogdet",
    infer=_infer_slogdet,
    impl=_impl_slogdet,
    vjp=(_vjp_slogdet,),
    jvp=_jvp_slogdet,
    kind="linalg",
    samples=lambda rng: [((_well_conditioned(rng, (2, 3, 3)) * -1,), {"part": "logabsdet"}),
                         ((_well_conditioned(rng, (3, 3)),), {"part": "sign"}),
                         ((_well_conditioned(rng, (2, 3, 3)) * -1.5,), {"part": "det"})],
    doc="np.linalg.slogdet's sign or log|det|, or det = sign * exp(log|det|) (LAPACK getrf); d log|det A| = "
        "tr(A^-1 dA), through a solve.  det is a part so that its rules can scale det(A) A^-T without "
        "forming det(A), which overflows long before the cofactors do.  A singular A gives (0, -inf) and "
        "log|det|'s derivatives raise LinAlgError; with the private attribute singular='zero' (det's "
        "rules) they are 0 there.",
)

# --------------------------------------------------------------------- eigh


def _infer_eigh(types, part):
    (a,) = types
    n = _square(a)
    _part(part, ("w", "v"), "eigh")
    return TensorType(a.dtype, a.shape[:-2] + ((n,) if part == "w" else (n, n)))


def _impl_eigh(a, part):
    require_square(a, "eigh")
    s = (a + np.swapaxes(a, -1, -2)) * 0.5
    if part == "w":
        return np.linalg.eigvalsh(s)
    return np.linalg.eigh(s)[1]


def _eigh_parts(a):
    return EIGH(a, part="w"), EIGH(a, part="v")


# Eigen- (singular) values closer than this many ulps of the largest one count as equal:
# their vectors are then fixed by rounding alone, and 1/gap would be ~1/eps.
TIE_ULPS = 128


def _tie_mask(d: Expr, values: Expr) -> Expr:
    """|d| <= TIE_ULPS * eps * max|values| (per matrix of a batch)."""
    eps = float(np.finfo(values.dtype).eps)
    # initial 0 (the values' magnitudes are >= 0): a 0x0 eigh or a size-0 svd has no values, and
    # max over an empty axis raised a ShapeError from inside the rule
    scale = MAX(F.abs(F.stop_gradient(values)), axes=(values.ndim - 1,), keepdims=True, initial=0.0)
    return F.abs(F.stop_gradient(d)) <= EXPAND_DIMS(scale, axes=(scale.ndim,)) * (TIE_ULPS * eps)


def _gaps(w: Expr) -> Expr:
    """F[i, j] = 1 / (w[j] - w[i]), 0 on the diagonal and where the values tie (to rounding)."""
    d = _row(w) - _col(w)
    tie = _tie_mask(d, w)
    return F.where(tie, 0, 1 / F.where(tie, 1, d))


def _vjp_eigh(g, out, a, part):
    w, v = _eigh_parts(a)
    if part == "w":
        return MATMUL(v * _row(g), mT(v))  # V diag(wbar) V^T: symmetric already
    return sym(MATMUL(MATMUL(v, _gaps(w) * MATMUL(mT(v), g)), mT(v)))


def _jvp_eigh(tangents, out, a, part):
    (da,) = tangents
    w, v = _eigh_parts(a)
    c = MATMUL(MATMUL(mT(v), sym(da)), v)
    if part == "w":
        return DIAG_PART(c)
    return MATMUL(v, _gaps(w) * c)


EIGH = Op(
    "eigh",
    infer=_infer_eigh,
    impl=_impl_eigh,
    vjp=(_vjp_eigh,),
    jvp=_jvp_eigh,
    kind="linalg",
    samples=lambda rng: [
        ((_stable(lambda r: _distinct_spectrum(r, n, batch), lambda a: _impl_eigh(a, part), rng),), {"part": part})
        for n, batch, part in ((3, (), "w"), (4, (2,), "v"))],
    doc="Eigenvalues (part 'w', ascending) or eigenvectors (part 'v', columns) of the symmetric part of A "
        "(LAPACK syevd).",
)

# ---------------------------------------------------------------------- svd


def _infer_svd(types, part, full_matrices):
    (a,) = types
    _float_matrix(a)
    _part(part, ("u", "s", "vh"), "svd")
    m, n = a.shape[-2:]
    k = min(m, n) if m is not None and n is not None else (0 if 0 in (m, n) else None)
    batch = a.shape[:-2]
    if part == "s":
        return TensorType(a.dtype, batch + (k,))
    if part == "u":
        return TensorType(a.dtype, batch + (m, m if full_matrices else k))
    return TensorType(a.dtype, batch + (n if full_matrices else k, n))


def _impl_svd(a, part, full_matrices):
    if part == "s":
        return np.linalg.svd(a, compute_uv=False)
    u, _, vh = np.linalg.svd(a, full_matrices=full_matrices)
    return u if part == "u" else vh


def _svd_parts(a, full_matrices):
    return (SVD(a, part="u", full_matrices=full_matrices), SVD(a, part="s", full_matrices=full_matrices),
            SVD(a, part="vh", full_matrices=full_matrices))


def _statically_square(a) -> bool:
    m, n = a.type.shape[-2:]
    return m is not None and m == n


def _square_unless_reduced(x, out, a, full_matrices):
    """``x``, for a rule of U or Vh, once a is square or the svd reduced: with full_matrices=True
    the extra columns of U or V of a rectangular matrix are arbitrary and have no derivative.
    Static sizes are refused here; run-time ones by ``check_sizes`` (both backends), before the
    rule's products would fail with a ShapeError about a product the user never wrote."""
    if not full_matrices:
        return x
    m, n = a.type.shape[-2:]
    message = (f"svd at {out.where() or '?'}: with full_matrices=True and a {{0}}x{{1}} matrix the extra "
               "columns of U or V are arbitrary and have no derivative; use full_matrices=False")
    if m is not None and n is not None:
        if m != n:
            raise GradientError(message.format(m, n))
        return x
    return CHECK_SIZES(x, a, axes=(a.ndim - 2, a.ndim - 1), relation="==", error="GradientError", message=message)


def _svd_gaps(s: Expr):
    """(F * s_j, F * s_i) with F[i, j] = 1 / (s[j]^2 - s[i]^2), 0 on the diagonal and where
    the values tie (to rounding): the rules use F only times one of the two values."""
    # As 1 / (s_j - s_i) times s_j / (s_i + s_j): a ratio in [0, 1] and a gap of the values'
    # scale.  F itself (or (s_i + s_j)(s_j - s_i)) overflows beyond s ~ 1e154 and underflows
    # below 1e-154 (float32: 2**+-64), which made svdvals' HVPs 0 or NaN there.
    d = _row(s) - _col(s)
    tie = _tie_mask(d, s)
    gap = 1 / F.where(tie, 1, d)
    total = F.where(tie, 1, _row(s) + _col(s))
    return F.where(tie, 0, gap * (_row(s) / total)), F.where(tie, 0, gap * (_col(s) / total))


def _has_no_entries(a) -> bool:
    """A static size 0: every derivative is empty, and the full SVD's rules could not form it
    (a 0x3 matrix has a 3x3 Vh and no singular values)."""
    return 0 in a.type.shape


def _vjp_svd(g, out, a, part, full_matrices):
    if _has_no_entries(a):
        return zeros_like(a)
    if part == "s":  # U_k diag(g) Vh_k: the reduced parts (the full ones' extra columns play no part)
        u, s, vh = _svd_parts(a, full_matrices and _statically_square(a))
        return MATMUL(u * _row(g), vh)
    g = _square_unless_reduced(g, out, a, full_matrices)
    u, s, vh = _svd_parts(a, full_matrices)
    f_right, f_left = _svd_gaps(s)
    inv_s = 1 / s
    if part == "u":
        j = MATMUL(mT(u), g)
        inner = MATMUL(u, f_right * (j - mT(j))) + (g - MATMUL(u, j)) * _row(inv_s)
        return MATMUL(inner, vh)
    k = MATMUL(vh, mT(g))  # V^T Vbar
    inner = f_left * (k - mT(k))
    rest = (g - MATMUL(mT(k), vh)) * _col(inv_s)
    return MATMUL(u, MATMUL(inner, vh) + rest)


def _jvp_svd(tangents, out, a, part, full_matrices):
    (da,) = tangents
    if _has_no_entries(a):
        return zeros_like(out)
    if part == "s":
        full_matrices = full_matrices and _statically_square(a)
    else:
        da = _square_unless_reduced(da, out, a, full_matrices)
    u, s, vh = _svd_parts(a, full_matrices)
    v = mT(vh)
    ds = MATMUL(MATMUL(mT(u), da), v)
    if part == "s":
        return DIAG_PART(ds)
    f_right, f_left = _svd_gaps(s)
    inv_s = _row(1 / s)
    if part == "u":
        return MATMUL(u, f_right * ds + f_left * mT(ds)) + (MATMUL(da, v) - MATMUL(u, ds)) * inv_s
    dv = MATMUL(v, f_left * ds + f_right * mT(ds)) + (MATMUL(mT(da), u) - MATMUL(v, mT(ds))) * inv_s
    return mT(dv)


SVD = Op(
    "svd",
    infer=_infer_svd,
    impl=_impl_svd,
    vjp=(_vjp_svd,),
    jvp=_jvp_svd,
    kind="linalg",
    samples=lambda rng: [
        ((_stable(lambda r: _well_conditioned(r, shape), lambda a: _impl_svd(a, part, full), rng),),
         {"part": part, "full_matrices": full})
        for shape, part, full in (((4, 3), "s", False), ((4, 3), "u", False), ((3, 4), "vh", False),
                                  ((2, 3, 3), "u", True))],
    doc="np.linalg.svd's U, s or Vh (LAPACK gesdd).",
)

# ----------------------------------------------------------------------- qr


def _infer_qr(types, part, mode):
    (a,) = types
    _float_matrix(a)
    _part(part, ("q", "r"), "qr")
    _part(mode, ("reduced", "complete"), "qr mode")
    m, n = a.shape[-2:]
    k = min(m, n) if m is not None and n is not None else (0 if 0 in (m, n) else None)
    if mode == "complete":
        k = m
    return TensorType(a.dtype, a.shape[:-2] + ((m, k) if part == "q" else (k, n)))


def _impl_qr(a, part, mode="reduced"):
    q, r = np.linalg.qr(a, mode=mode)
    return q if part == "q" else r


def _qr_parts(a, mode):
    m, n = a.type.shape[-2:]
    if m is not None and n is not None and m < n:
        raise GradientError(f"qr at {a.where() or '?'}: the derivative of the primitive needs m >= n, got {m}x{n} "
                            "(symdiff.linalg.qr splits wider matrices)")
    if mode == "complete" and not (m is not None and m == n):
        raise GradientError(f"qr at {a.where() or '?'}: mode='complete' with m > n (or run-time sizes) has no "
                            "derivative: the extra columns of Q are arbitrary; use mode='reduced'")
    return QR(a, part="q", mode=mode), QR(a, part="r", mode=mode)


def _times_r_inverse_transpose(w: Expr, r: Expr) -> Expr:
    """W R^-T (R upper triangular): Y R^T = W is R Y^T = W^T."""
    return mT(SOLVE_TRIANGULAR(r, mT(w), lower=False, trans=False, unit_diagonal=False))


def _copy_upper(x: Expr) -> Expr:
    """The upper triangle mirrored into the lower one."""
    return triu(x) + mT(triu(x, 1))


def _vjp_qr(g, out, a, part, mode):
    # Abar = (Qbar - Q copyutl(Q^T Qbar - Rbar R^T)) R^-T, split between the parts.
    q, r = _qr_parts(a, mode)
    if part == "q":
        return _times_r_inverse_transpose(g - MATMUL(q, _copy_upper(MATMUL(mT(q), g))), r)
    return _times_r_inverse_transpose(MATMUL(q, _copy_upper(MATMUL(g, mT(r)))), r)


def _jvp_qr(tangents, out, a, part, mode):
    (da,) = tangents
    q, r = _qr_parts(a, mode)
    x = mT(SOLVE_TRIANGULAR(r, mT(da), lower=False, trans=True, unit_diagonal=False))  # dA R^-1
    c = MATMUL(mT(q), x)
    lower = tril(c, -1)
    omega = lower - mT(lower)
    if part == "q":
        return MATMUL(q, omega - c) + x
    return MATMUL(c - omega, r)


QR = Op(
    "qr",
    infer=_infer_qr,
    impl=_impl_qr,
    vjp=(_vjp_qr,),
    jvp=_jvp_qr,
    kind="linalg",
    samples=lambda rng: [
        ((_stable(lambda r: _well_conditioned(r, shape), lambda a: _impl_qr(a, part, mode), rng),),
         {"part": part, "mode": mode})
        for shape, part, mode in (((4, 3), "q", "reduced"), ((2, 3, 3), "r", "complete"))],
    doc="np.linalg.qr's (reduced) Q or R (LAPACK geqrf/orgqr); derivatives for m >= n.",
)

# --------------------------------------------------------------------- pinv


def _infer_pinv(types, rcond):
    (a,) = types
    _float_matrix(a)
    return TensorType(a.dtype, a.shape[:-2] + (a.shape[-1], a.shape[-2]))


def _impl_pinv(a, rcond):
    return np.linalg.pinv(a, rcond=rcond)


def _vjp_pinv(g, out, a, rcond):
    """Golub and Pereyra: dP = -P dA P + P P^T dA^T (I - A P) + (I - P A) dA^T P^T P
    (exact while the rank is constant), transposed."""
    # Every product is grouped so that its intermediates scale between its inputs and its
    # result (A ~ s, P ~ 1/s): the cotangent meets P one factor at a time, and the projectors
    # A P, P A are formed before they act.  P (P w) or (z P) A pass through g / s^3, which
    # under/overflowed at s ~ 1e108 (float32: 1e15) where the gradient (g / s^2) is normal,
    # and (z P) A lost z - z P A's exact cancellation (inf - inf).
    p = out
    w = MATMUL(MATMUL(mT(g), p), mT(p))  # Pbar^T P P^T
    z = MATMUL(mT(p), MATMUL(p, mT(g)))  # P^T P Pbar^T
    return -MATMUL(MATMUL(mT(p), g), mT(p)) + (w - MATMUL(MATMUL(a, p), w)) + (z - MATMUL(z, MATMUL(p, a)))


def _jvp_pinv(tangents, out, a, rcond):
    (da,) = tangents
    p = out
    dat = mT(da)
    first = -MATMUL(MATMUL(p, da), p)
    # Grouped as in the vjp: dA^T (A P) and (P A) Y keep the projectors whole.
    second = MATMUL(p, MATMUL(mT(p), dat - MATMUL(dat, MATMUL(a, p))))
    y = MATMUL(MATMUL(dat, mT(p)), p)  # dA^T P^T P
    third = y - MATMUL(MATMUL(p, a), y)
    return first + second + third


PINV = Op(
    "pinv",
    infer=_infer_pinv,
    impl=_impl_pinv,
    vjp=(_vjp_pinv,),
    jvp=_jvp_pinv,
    kind="linalg",
    samples=lambda rng: [((_well_conditioned(rng, (2, 3, 4)),), {"rcond": 1e-15})],
    doc="Moore-Penrose pseudo-inverse (np.linalg.pinv: SVD, singular values <= rcond * max dropped); its "
        "own op because the rule in P itself is exact wherever the rank is constant, where the rule of a "
        "composite through the SVD is wrong at repeated singular values (an orthogonal A, the identity).",
)

# --------------------------------------------------------------------- expm
#
# expm acts on matrices over the algebra of "multi-dual" numbers R[e_1..e_k]/(e_i^2): the
# input has shape (..., 2**k, n, n), coefficient b (a bitmask of generators) at index b.
# exp of A + e D has A's exponential and its Frechet derivative L(A, D) as coefficients,
# so derivatives of any order are expm of a larger algebra: no block slicing with run-time
# sizes, and rules that differentiate again.

_PADE = {
    3: (120.0, 60.0, 12.0, 1.0),
    5: (30240.0, 15120.0, 3360.0, 420.0, 30.0, 1.0),
    7: (17297280.0, 8648640.0, 1995840.0, 277200.0, 25200.0, 1512.0, 56.0, 1.0),
    9: (17643225600.0, 8821612800.0, 2075673600.0, 302702400.0, 30270240.0, 2162160.0, 110880.0, 3960.0, 90.0,
        1.0),
    13: (64764752532480000.0, 32382376266240000.0, 7771770303897600.0, 1187353796428800.0, 129060195264000.0,
         10559470521600.0, 670442572800.0, 33522128640.0, 1323241920.0, 40840800.0, 960960.0, 16380.0, 182.0, 1.0),
}
PADE_THETA = ((3, 1.495585217958292e-2), (5, 2.539398330063230e-1), (7, 9.504178996162932e-1),
              (9, 2.097847961257068e0), (13, 5.371920351148152e0))


def expm_matrix(a: np.ndarray) -> np.ndarray:
    """exp of one float64 matrix by Pade approximation with scaling and squaring
    (Higham 2005, the algorithm of scipy.linalg.expm before 1.9)."""
    n = a.shape[0]
    norm = np.max(np.sum(np.abs(a), axis=0)) if n else 0.0
    if not np.isfinite(norm):
        return np.full_like(a, np.nan)
    ident = np.eye(n)
    s = 0
    for m, theta in PADE_THETA:
        if norm <= theta or m == 13:
            break
    if m == 13 and norm > theta:
        s = max(0, int(math.ceil(math.log2(norm / theta))))
        a = a / 2.0 ** s
    # Sums in the order the compiled helper (backends/lapack.py) adds them: powers first, I last.
    b = _PADE[m]
    a2 = a @ a
    if m == 13:
        a4 = a2 @ a2
        a6 = a4 @ a2
        u = a @ (b[3] * a2 + b[5] * a4 + b[7] * a6 + b[1] * ident + a6 @ (b[9] * a2 + b[11] * a4 + b[13] * a6))
        v = a6 @ (b[8] * a2 + b[10] * a4 + b[12] * a6) + (b[2] * a2 + b[4] * a4 + b[6] * a6 + b[0] * ident)
    else:
        powers = [a2]
        for _ in range(2, (m + 1) // 2):
            powers.append(powers[-1] @ a2)
        odd = sum(b[2 * j + 3] * p for j, p in enumerate(powers)) + b[1] * ident
        even = sum(b[2 * j + 2] * p for j, p in enumerate(powers)) + b[0] * ident
        u = a @ odd
        v = even
    r = np.linalg.solve(v - u, v + u)
    for _ in range(s):
        r = r @ r
    return r


def dual_block(c: np.ndarray) -> np.ndarray:
    """The (2**k n)-square block matrix of multiplication by the multi-dual matrix c
    (2**k, n, n): block (U, T) is c[U - T] when T is a subset of U (bitmasks)."""
    parts, n = c.shape[0], c.shape[-1]
    m = np.zeros((parts * n, parts * n), dtype=c.dtype)
    for u in range(parts):
        t = u
        while True:  # every subset t of u
            m[u * n:(u + 1) * n, t * n:(t + 1) * n] = c[u & ~t]
            if t == 0:
                break
            t = (t - 1) & u
    return m


def _impl_expm(c, order):
    parts, n = c.shape[-3], c.shape[-1]
    if parts != 2 ** order or c.shape[-2] != n:
        raise ValueError(f"expm of order {order} needs (..., {2 ** order}, n, n) coefficients, got shape {c.shape}")
    flat = np.asarray(c, dtype=np.float64).reshape((-1, parts, n, n))
    out = np.empty_like(flat)
    for i in range(flat.shape[0]):
        e = expm_matrix(dual_block(flat[i]))
        out[i] = e[:, :n].reshape(parts, n, n)
    return out.reshape(c.shape).astype(c.dtype)


def _infer_expm(types, order):
    (c,) = types
    n = _square(c)
    parts = c.shape[-3] if c.ndim >= 3 else 0
    if c.ndim < 3 or not isinstance(order, int) or order < 0 or parts not in (None, 2 ** order):
        fail_shape(f"expects (..., 2**order, n, n) multi-dual coefficients with order={order!r}, got "
                   f"{fmt_shape(c.shape)}")
    return TensorType(c.dtype, c.shape[:-2] + (n, n))


def _new_generator_part(c: Expr, d: Expr, order: int) -> Expr:
    """The coefficients of a new generator in exp(c + e d): the Frechet derivative of exp at c along d."""
    joined = CONCATENATE(c, d, axis=c.ndim - 3)
    index = tuple((2 ** order, None, 1) if ax == c.ndim - 3 else (None, None, 1) for ax in range(c.ndim))
    return SLICE(EXPM(joined, order=order + 1), index=index)


def _reverse_parts(x: Expr) -> Expr:
    """Coefficient b -> coefficient (2**k - 1) - b: the complementary subset of generators."""
    index = tuple((None, None, -1) if ax == x.ndim - 3 else (None, None, 1) for ax in range(x.ndim))
    return SLICE(x, index=index)


def _vjp_expm(g, out, c, order):
    # <L_X(D), G> = <D, rev L_{X^T}(rev G)>: trace duality of the Frechet derivative, with the
    # pairing of coefficients written as the top coefficient of a product.
    return _reverse_parts(_new_generator_part(mT(c), _reverse_parts(g), order))


def _jvp_expm(tangents, out, c, order):
    return _new_generator_part(c, tangents[0], order)


def _expm_samples(rng):
    def small(shape, scale):
        return rng.normal(size=shape) * scale

    return [((small((2, 2, 2), 0.3),), {"order": 1}), ((small((2, 1, 3, 3), 1.2),), {"order": 0})]


EXPM = Op(
    "expm",
    infer=_infer_expm,
    impl=_impl_expm,
    vjp=(_vjp_expm,),
    jvp=_jvp_expm,
    kind="linalg",
    samples=_expm_samples,
    doc="exp of matrices over multi-dual numbers, input (..., 2**order, n, n): order 0 is scipy.linalg.expm "
        "(Pade 13 with scaling and squaring); derivatives are expm with one more generator.",
)

__all__ = ["CHOLESKY", "CHO_INVERSE", "CHO_SOLVE", "DIAG_PART", "EIGH", "EXPM", "PINV", "QR", "SLOGDET", "SOLVE",
           "SOLVE_TRIANGULAR", "SVD", "diag_embed", "eye_like", "mT", "spd", "sym", "tril", "triu"]
