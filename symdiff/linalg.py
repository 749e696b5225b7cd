"""``sd.linalg``: NumPy's ``np.linalg`` (and SciPy's ``solve_triangular``, ``cho_factor``,
``cho_solve``, ``expm``) on symdiff expressions, with derivatives of every order.

Names, signatures and semantics are NumPy's: leading (batch) dimensions broadcast as in
``np.linalg``, a right-hand side is a vector only when it is 1-d (NumPy 2), integer
inputs are computed in float64, results come back as ``SlogdetResult``, ``EighResult``,
``QRResult`` and ``SVDResult`` named tuples.  Failures are NumPy's: a singular matrix in
``solve``/``inv`` and a matrix that is not positive definite in ``cholesky`` raise
``numpy.linalg.LinAlgError`` (also exported here) naming the node and the line that built
it, in both backends; ``det`` of a singular matrix is 0 and ``slogdet`` gives (0, -inf).

Compiled code calls LAPACK from the library NumPy ships (see ``symdiff.backends.lapack``),
and a factorisation the value and its derivatives share (the Cholesky factor of K in a
Gaussian-process likelihood and in its gradient, the LU factors of A in ``solve(A, b)``
and in the solve with A^T its gradient needs) is computed once per call.

Conventions where NumPy has none:

- ``cholesky``, ``eigh`` and ``eigvalsh`` act on the symmetric part (A + A^T)/2 of their
  input, as JAX does (NumPy reads one triangle).  For a symmetric A the results are
  NumPy's; the derivative is that of the function computed, so a gradient with respect
  to A is symmetric and directional derivatives are right along any direction.
- Eigenvectors (and singular vectors) are LAPACK's, signs included, as in NumPy.  Their
  derivatives need distinct eigenvalues (singular values).  A pair equal to rounding
  (within 128 ulps of the largest: the vectors of such a pair are fixed by rounding alone)
  contributes no rotation within its eigenspace: that pair's 1/(w_j - w_i) term is 0 (JAX
  zeroes only exact equality, which rounding almost never produces, and returns ~1/eps
  there).  That is exact for functions of the eigenvalues (any multiplicity) and for
  functions that do not depend on how a degenerate eigenspace's basis is chosen, and it
  keeps other gradients finite; near-equal but distinct values (gap 1e-4, say) give the
  true derivative, large like 1/gap, as the vectors themselves are ill-conditioned there.
  Eigenvalue and singular-value derivatives need no gap.
- The derivative of ``det``/``slogdet`` at an exactly singular matrix needs A^-1 and
  raises ``LinAlgError``; derivatives of ``svd``'s U and Vh need nonzero singular values
  when the matrix is not square; ``qr``'s derivative needs m >= n or static sizes.
"""

from __future__ import annotations

import functools
import math
import operator
from typing import NamedTuple

import numpy as np

from . import frontend as F
from .frontend.math import power_of_two_scale, two_norm
from .errors import DTypeError, ShapeError, SymdiffError
from .ir import Expr, _user_origin
from .ops import decompositions as D
from .ops import structure as S
from .types import broadcast_shapes, fmt_shape

LinAlgError = np.linalg.LinAlgError

__all__ = [
    "EighResult", "LinAlgError", "QRResult", "SVDResult", "SlogdetResult", "cho_factor", "cho_solve", "cholesky",
    "det", "diagonal", "eigh", "eigvalsh", "expm", "inv", "lstsq", "matrix_norm", "matrix_power",
    "matrix_transpose", "multi_dot", "norm", "pinv", "qr", "slogdet", "solve", "solve_triangular", "svd", "svdvals",
    "vector_norm",
]


class SlogdetResult(NamedTuple):
    sign: Expr
    logabsdet: Expr


class EighResult(NamedTuple):
    eigenvalues: Expr
    eigenvectors: Expr


class QRResult(NamedTuple):
    Q: Expr
    R: Expr


class SVDResult(NamedTuple):
    U: Expr
    S: Expr
    Vh: Expr


# ------------------------------------------------------------------ helpers


def _named(fn):
    """Errors raised while ``fn`` builds its graph start with ``fn``'s name."""
    name = fn.__name__

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except (SymdiffError, TypeError, ValueError) as exc:
            message = str(exc)
            if message.startswith(f"{name}:") or type(exc) not in (
                    ShapeError, DTypeError, TypeError, ValueError, NotImplementedError):
                raise
            raise type(exc)(f"{name}: {message}") from None

    return wrapper


def _at() -> str:
    where = _user_origin()
    return f" (at {where[0]}:{where[1]})" if where else ""


def _float(x) -> Expr:
    """An expression; ints and bools become float64 as np.linalg converts them."""
    x = F.as_expr(x)
    return x if x.type.is_float else F.astype(x, "float64")


def _stack_of_matrices(x: Expr, square=False) -> Expr:
    if x.ndim < 2:
        raise ShapeError(f"needs an array of at least 2 dimensions, got shape {fmt_shape(x.type.shape)}{_at()}")
    if square:
        m, n = x.type.shape[-2:]
        if m is not None and n is not None and m != n:
            raise ShapeError(f"the last 2 dimensions must be square, got shape {fmt_shape(x.type.shape)}{_at()}")
    return x


def _broadcast_batches(*pairs) -> list:
    """Broadcast the leading (batch) axes of several (expression, core rank) pairs, as
    np.linalg's gufuncs do: the results share one batch shape and keep their cores."""
    batches = [x.type.shape[:x.ndim - core] for x, core in pairs]
    try:
        target = broadcast_shapes(*batches)
    except ShapeError:
        shapes = " and ".join(fmt_shape(x.type.shape) for x, _ in pairs)
        raise ShapeError(f"the batch dimensions of {shapes} do not broadcast{_at()}") from None
    out = []
    for k, (x, core) in enumerate(pairs):
        batch = batches[k]
        if batch == target:
            out.append(x)
            continue
        full = target + x.type.shape[x.ndim - core:]
        if None not in full:
            out.append(S.BROADCAST_TO(x, shape=full))
            continue
        # a run-time size: broadcast_like needs a node of the target shape
        lifted = x
        if len(batch) < len(target):
            lifted = S.EXPAND_DIMS(x, axes=tuple(range(len(target) - len(batch))))
        ref = lifted
        for j, (y, y_core) in enumerate(pairs):
            if j == k:
                continue
            corner = y  # y's batch shape (a sum over its core: exact for empty cores too), then x's core rank
            if y_core:
                corner = F.sum(F.stop_gradient(y), axis=tuple(range(y.ndim - y_core, y.ndim)))
            corner = S.EXPAND_DIMS(corner, axes=tuple(range(corner.ndim, corner.ndim + core))) if core else corner
            ref = ref + F.stop_gradient(F.astype(F.less(corner, corner), x.dtype))  # zeros: only the shape counts
        out.append(S.BROADCAST_LIKE(x, ref))
    return out


def _rhs(b: Expr):
    """(B as stacked matrices, whether b was a vector): NumPy 2 treats b as a vector only
    when it is 1-d."""
    if b.ndim == 0:
        raise ShapeError(f"the right-hand side must have at least 1 dimension, got a scalar{_at()}")
    if b.ndim == 1:
        return S.EXPAND_DIMS(b, axes=(1,)), True
    return b, False


def _solve_with(op_call, a: Expr, b, a_core_square=True):
    a = _stack_of_matrices(_float(a), square=a_core_square)
    b = _float(b)
    a, b = F.operands(a, b)
    B, vector = _rhs(b)
    a, B = _broadcast_batches((a, 2), (B, 2))
    x = op_call(a, B)
    return S.SQUEEZE(x, axes=(x.ndim - 1,)) if vector else x


def _static_n(x: Expr):
    return x.type.shape[-1]


# ------------------------------------------------------------------ solves


@_named
def solve(a, b) -> Expr:
    """np.linalg.solve: x with a @ x = b, by LU with partial pivoting (LAPACK getrf/getrs).

    b is a vector (..., M) only when it is 1-d, else stacked matrices (..., M, K) (NumPy 2);
    batch dimensions broadcast.  A singular matrix raises LinAlgError.  The gradient solves
    with a^T using the same LU factors (compiled code factors a once).

    >>> import symdiff as sd
    >>> A, b = sd.matrix("A", (2, 2)), sd.vector("b", 2)
    >>> sd.evaluate(sd.linalg.solve(A, b), {A: [[3.0, 1.0], [1.0, 2.0]], b: [9.0, 8.0]})
    array([2., 3.])
    """
    return _solve_with(lambda a, B: D.SOLVE(a, B, trans=False), a, b)


@_named
def inv(a) -> Expr:
    """np.linalg.inv: the solve of a X = I (LAPACK getrf/getrs); singular raises LinAlgError.

    >>> import symdiff as sd
    >>> A = sd.matrix("A", (2, 2))
    >>> sd.evaluate(sd.linalg.inv(A), {A: [[2.0, 0.0], [0.0, 4.0]]})
    array([[0.5 , 0.  ],
           [0.  , 0.25]])
    """
    a = _stack_of_matrices(_float(a), square=True)
    return D.SOLVE(a, D.eye_like(a), trans=False)


@_named
def slogdet(a) -> SlogdetResult:
    """np.linalg.slogdet: (sign, log|det a|) from an LU factorisation (LAPACK getrf).

    A singular matrix gives (0, -inf), as NumPy.  d log|det a| = tr(a^-1 da): the gradient
    a^-T comes from a solve with the same LU factors.

    >>> import symdiff as sd
    >>> A = sd.matrix("A", (2, 2))
    >>> sign, logdet = sd.linalg.slogdet(A)
    >>> sd.evaluate([sign, logdet], {A: [[-2.0, 0.0], [0.0, 3.0]]})
    [np.float64(-1.0), np.float64(1.791759469228055)]
    """
    a = _stack_of_matrices(_float(a), square=True)
    return SlogdetResult(D.SLOGDET(a, part="sign"), D.SLOGDET(a, part="logabsdet"))


@_named
def det(a) -> Expr:
    """np.linalg.det: sign * exp(log|det|), as NumPy computes it; 0 for a singular matrix.

    The derivative det(a) a^-T is formed without det(a): it stays finite and accurate
    where det(a) itself overflows or underflows (n x n at scale s: s^(n-1) against s^n).

    >>> import symdiff as sd
    >>> A = sd.matrix("A", (2, 2))
    >>> float(sd.evaluate(sd.linalg.det(A), {A: [[1.0, 2.0], [3.0, 4.0]]}))
    -2.0000000000000004
    """
    a = _stack_of_matrices(_float(a), square=True)
    return D.SLOGDET(a, part="det")


@_named
def cholesky(a, /, *, upper=False) -> Expr:
    """np.linalg.cholesky: the lower factor L with L L^T = a (upper=True: L^T) (LAPACK potrf).

    Computed from the symmetric part (a + a^T)/2 (NumPy reads the lower triangle; the
    same for a symmetric a); the gradient with respect to a is symmetric.  A matrix that
    is not positive definite raises LinAlgError.

    >>> import symdiff as sd
    >>> K = sd.matrix("K", (2, 2))
    >>> sd.evaluate(sd.linalg.cholesky(K), {K: [[4.0, 2.0], [2.0, 5.0]]})
    array([[2., 0.],
           [1., 2.]])
    """
    a = _stack_of_matrices(_float(a), square=True)
    L = D.CHOLESKY(a)
    return D.mT(L) if upper else L


def _trans_flag(trans) -> bool:
    if trans in (0, "N", "n"):
        return False
    if trans in (1, 2, "T", "t", "C", "c"):
        return True
    raise ValueError(f"trans must be 0, 1, 2, 'N', 'T' or 'C', got {trans!r}")


@_named
def solve_triangular(a, b, trans=0, lower=False, unit_diagonal=False, overwrite_b=False, check_finite=True) -> Expr:
    """scipy.linalg.solve_triangular: x with op(a) x = b, op(a) = a (trans=0) or a^T (1, 2);
    only the lower (lower=True) or upper triangle of a is read, its diagonal taken as 1 with
    unit_diagonal (LAPACK trsm).

    A zero on the diagonal raises LinAlgError (singular).  Batches broadcast; b is a vector
    only when 1-d.  ``overwrite_b`` and ``check_finite`` are accepted for SciPy's signature:
    nothing is ever overwritten, and values are not checked for inf or NaN.

    >>> import symdiff as sd
    >>> L, b = sd.matrix("L", (2, 2)), sd.vector("b", 2)
    >>> sd.evaluate(sd.linalg.solve_triangular(L, b, lower=True), {L: [[2.0, 0.0], [1.0, 1.0]], b: [4.0, 3.0]})
    array([2., 1.])
    """
    flag = _trans_flag(trans)
    return _solve_with(lambda a, B: D.SOLVE_TRIANGULAR(a, B, lower=bool(lower), trans=flag,
                                                       unit_diagonal=bool(unit_diagonal)), a, b)


@_named
def cho_factor(a, lower=False, overwrite_a=False, check_finite=True):
    """scipy.linalg.cho_factor: (c, lower) with c the Cholesky factor, lower (L) or upper
    (L^T), for ``cho_solve``.  SciPy leaves arbitrary values in c's other triangle; here
    it is zero.  Computed as ``cholesky`` (symmetric part, LinAlgError if not positive
    definite).

    >>> import symdiff as sd
    >>> K = sd.matrix("K", (2, 2))
    >>> c, low = sd.linalg.cho_factor(K)
    >>> sd.evaluate(c, {K: [[4.0, 2.0], [2.0, 5.0]]}), low
    (array([[2., 1.],
           [0., 2.]]), False)
    """
    return cholesky(a, upper=not lower), bool(lower)


@_named
def cho_solve(c_and_lower, b, overwrite_b=False, check_finite=True) -> Expr:
    """scipy.linalg.cho_solve: x with a x = b given ``(c, lower) = cho_factor(a)`` (LAPACK potrs).

    When c comes from ``cholesky``/``cho_factor`` of a matrix K, the gradient with respect
    to K costs O(n^2 k) beyond the solves: no O(n^3) work (see cholesky's rule).

    >>> import symdiff as sd
    >>> K, y = sd.matrix("K", (2, 2)), sd.vector("y", 2)
    >>> x = sd.linalg.cho_solve(sd.linalg.cho_factor(K, lower=True), y)
    >>> sd.evaluate(x, {K: [[4.0, 2.0], [2.0, 5.0]], y: [8.0, 9.0]})
    array([1.375, 1.25 ])
    """
    try:
        c, lower = c_and_lower
    except (TypeError, ValueError):
        raise TypeError("the first argument must be the pair (c, lower) that cho_factor returns") from None
    lower = bool(lower)
    c = F.as_expr(c)
    if not lower and c.op is S.TRANSPOSE and c.inputs[0].op is D.CHOLESKY and D.mT(c.inputs[0]) is c:
        # the upper factor of cho_factor(a): solve with the lower one, whose rule is cheapest
        c, lower = c.inputs[0], True
    return _solve_with(lambda c, B: D.CHO_SOLVE(c, B, lower=lower), c, b)


# ---------------------------------------------------------- decompositions


def _uplo(UPLO):
    if UPLO not in ("L", "U"):
        raise ValueError(f"UPLO argument must be 'L' or 'U', got {UPLO!r}")


@_named
def eigh(a, UPLO="L") -> EighResult:
    """np.linalg.eigh: eigenvalues (ascending) and eigenvectors (columns) of the symmetric
    part (a + a^T)/2 (LAPACK syevd).  For a symmetric a both triangles agree, so ``UPLO``
    (accepted for NumPy's signature) does not change the result.

    Derivatives need distinct eigenvalues for the eigenvectors; see the module docstring
    for exactly equal ones.

    >>> import symdiff as sd
    >>> A = sd.matrix("A", (2, 2))
    >>> w, V = sd.linalg.eigh(A)
    >>> sd.evaluate(w, {A: [[2.0, 1.0], [1.0, 2.0]]})
    array([1., 3.])
    """
    _uplo(UPLO)
    a = _stack_of_matrices(_float(a), square=True)
    return EighResult(D.EIGH(a, part="w"), D.EIGH(a, part="v"))


@_named
def eigvalsh(a, UPLO="L") -> Expr:
    """np.linalg.eigvalsh: the eigenvalues (ascending) of the symmetric part of a.

    >>> import symdiff as sd
    >>> A = sd.matrix("A", (2, 2))
    >>> sd.evaluate(sd.linalg.eigvalsh(A), {A: [[2.0, 1.0], [1.0, 2.0]]})
    array([1., 3.])
    """
    _uplo(UPLO)
    a = _stack_of_matrices(_float(a), square=True)
    return D.EIGH(a, part="w")


@_named
def svd(a, full_matrices=True, compute_uv=True, hermitian=False):
    """np.linalg.svd: ``SVDResult(U, S, Vh)`` with a = U diag(S) Vh, S descending (LAPACK
    gesdd); ``compute_uv=False`` gives S alone.

    Derivatives of U and Vh need full_matrices=False unless a is square (the extra columns
    are arbitrary), distinct singular values, and nonzero ones for non-square a.
    ``hermitian=True`` is accepted and computed by the general algorithm (same S; NumPy's
    hermitian path may choose other signs for U and Vh).

    >>> import symdiff as sd
    >>> A = sd.matrix("A", (2, 2))
    >>> sd.evaluate(sd.linalg.svd(A, compute_uv=False), {A: [[3.0, 0.0], [0.0, -4.0]]})
    array([4., 3.])
    """
    a = _stack_of_matrices(_float(a))
    full = bool(full_matrices)
    if not compute_uv:  # S does not depend on full_matrices; its rule needs the reduced U and Vh
        return D.SVD(a, part="s", full_matrices=False)
    s = D.SVD(a, part="s", full_matrices=full)
    return SVDResult(D.SVD(a, part="u", full_matrices=full), s, D.SVD(a, part="vh", full_matrices=full))


@_named
def svdvals(x, /) -> Expr:
    """np.linalg.svdvals: the singular values, descending.

    >>> import symdiff as sd
    >>> A = sd.matrix("A", (2, 2))
    >>> sd.evaluate(sd.linalg.svdvals(A), {A: [[3.0, 0.0], [0.0, -4.0]]})
    array([4., 3.])
    """
    return svd(x, compute_uv=False)


@_named
def qr(a, mode="reduced"):
    """np.linalg.qr: ``QRResult(Q, R)`` (mode 'reduced' or 'complete') or R alone (mode 'r')
    (LAPACK geqrf/orgqr).

    Derivatives for m >= n, and for m < n with static sizes (A = [X, Y]: Q and the first
    block of R from X, R's second block Q^T Y).  Mode 'complete' with m > n has no
    derivative (the extra columns of Q are arbitrary); mode 'raw' is not supported.

    >>> import symdiff as sd
    >>> A = sd.matrix("A", (2, 2))
    >>> Q, R = sd.linalg.qr(A)
    >>> sd.evaluate(R, {A: [[3.0, 1.0], [4.0, 2.0]]})
    array([[-5. , -2.2],
           [ 0. ,  0.4]])
    """
    if mode not in ("reduced", "complete", "r"):
        raise ValueError(f"mode must be 'reduced', 'complete' or 'r' ('raw' is not supported), got {mode!r}")
    a = _stack_of_matrices(_float(a))
    m, n = a.type.shape[-2:]
    if mode == "complete" and not (m is not None and n is not None and m <= n):
        q = D.QR(a, part="q", mode="complete")
        r = D.QR(a, part="r", mode="complete")
    elif m is not None and n is not None and m < n:
        # A = [X, Y] with X square: Q R1 = X, R = [R1, Q^T Y]; the primitive's rule needs m >= n
        x = S.SLICE(a, index=tuple((None, None, 1) for _ in range(a.ndim - 1)) + ((0, m, 1),))
        y = S.SLICE(a, index=tuple((None, None, 1) for _ in range(a.ndim - 1)) + ((m, None, 1),))
        q = D.QR(x, part="q", mode="reduced")
        r = S.CONCATENATE(D.QR(x, part="r", mode="reduced"), F.matmul(D.mT(q), y), axis=a.ndim - 1)
    else:
        q = D.QR(a, part="q", mode="reduced")
        r = D.QR(a, part="r", mode="reduced")
    if mode == "r":
        return r
    return QRResult(q, r)


# -------------------------------------------------------------- composites

_NO_VALUE = object()


@_named
def pinv(a, rcond=None, hermitian=False, *, rtol=_NO_VALUE) -> Expr:
    """np.linalg.pinv: the Moore-Penrose pseudo-inverse by SVD; singular values <= rcond *
    max(S) are dropped (rcond default 1e-15; ``rtol=None`` means max(M, N) * eps), as NumPy.

    Its derivative is exact wherever the rank is constant (the formula in pinv itself, not
    through the SVD's vectors).  ``hermitian`` is accepted; the general SVD is used.

    >>> import symdiff as sd
    >>> A = sd.matrix("A", (2, 1))
    >>> sd.evaluate(sd.linalg.pinv(A), {A: [[3.0], [4.0]]})
    array([[0.12, 0.16]])
    """
    a = _stack_of_matrices(_float(a))
    if rcond is None:
        if rtol is _NO_VALUE:
            rcond = 1e-15
        elif rtol is None:
            m, n = a.type.shape[-2:]
            if m is None or n is None:
                raise ValueError(f"rtol=None needs static matrix sizes (it is max(M, N) * eps), got "
                                 f"{fmt_shape(a.type.shape)}; pass a number")
            rcond = max(m, n) * float(np.finfo(a.dtype).eps)
        else:
            rcond = rtol
    elif rtol is not _NO_VALUE:
        raise ValueError("`rtol` and `rcond` can't be both set.")
    if isinstance(rcond, Expr) or np.ndim(rcond) != 0:
        raise TypeError(f"rcond must be a number, got {type(rcond).__name__} {rcond!r}")
    return D.PINV(a, rcond=float(rcond))


@_named
def lstsq(a, b, rcond=None):
    """np.linalg.lstsq: (x, residuals, rank, s), x the minimum-norm least-squares solution
    of a x = b (pinv(a) @ b, with NumPy's cutoff: singular values <= rcond * max(s) are zero;
    rcond None is eps * max(M, N)).

    a is 2-d, b is (M,) or (M, K).  residuals are the squared residual norms ((K,), or (1,)
    for a 1-d b) when M > N statically, else an empty array; unlike NumPy, a rank-deficient
    a (known only at run time) still gets its residuals instead of an empty array, and so
    does an a whose sizes are run-time.  rank is an int64 node with no derivative.

    >>> import symdiff as sd
    >>> A, b = sd.matrix("A", (3, 1)), sd.vector("b", 3)
    >>> x, res, rank, s = sd.linalg.lstsq(A, b)
    >>> sd.evaluate([x, res, rank], {A: [[1.0], [1.0], [1.0]], b: [1.0, 2.0, 6.0]})
    [array([3.]), array([14.]), np.int64(1)]
    """
    a = _float(a)
    if a.ndim != 2:
        raise LinAlgError(f"lstsq: {a.ndim}-dimensional array given. Array must be two-dimensional{_at()}")
    b = _float(b)
    a, b = F.operands(a, b)
    if b.ndim not in (1, 2):
        raise ShapeError(f"b must be 1-d or 2-d, got shape {fmt_shape(b.type.shape)}{_at()}")
    m, n = a.type.shape
    if m is not None and b.type.shape[0] is not None and m != b.type.shape[0]:
        raise ShapeError(f"Incompatible dimensions: a has {m} rows, b {b.type.shape[0]}{_at()}")
    if rcond is None:
        if m is None or n is None:
            raise ValueError("rcond=None needs static sizes (it is eps * max(M, N)); pass rcond explicitly")
        rcond = float(np.finfo(np.float64).eps) * max(m, n)
    x = F.matmul(D.PINV(a, rcond=float(rcond)), b)
    s = D.SVD(a, part="s", full_matrices=False)
    if s.type.shape[-1] == 0:
        rank = F.constant(np.int64(0))
    else:
        rank = F.sum(F.astype(s > s[0] * float(rcond), "int64"))
    if m is not None and n is not None and m <= n:
        residuals = F.constant(np.zeros((0,), dtype=np.dtype(a.dtype)))
    else:
        r = b - F.matmul(a, x)
        residuals = F.sum(r * r, axis=0)
        if b.ndim == 1:
            residuals = S.EXPAND_DIMS(residuals, axes=(0,))
    return x, residuals, rank, s


@_named
def matrix_power(a, n) -> Expr:
    """np.linalg.matrix_power: a**n for an integer n by repeated squaring, as NumPy does
    it (n = 0: the identity; n < 0: powers of inv(a)).

    >>> import symdiff as sd
    >>> A = sd.matrix("A", (2, 2))
    >>> sd.evaluate(sd.linalg.matrix_power(A, 3), {A: [[1.0, 1.0], [0.0, 1.0]]})
    array([[1., 3.],
           [0., 1.]])
    """
    a = _stack_of_matrices(F.as_expr(a), square=True)
    try:
        n = operator.index(n)
    except TypeError as exc:
        raise TypeError("exponent must be an integer") from exc
    if n == 0:
        return D.eye_like(a)
    if n < 0:
        if not a.type.is_float:
            raise TypeError("Integers to negative integer powers are not allowed.")
        a = inv(a)
        n = -n
    if n == 1:
        return a
    if n == 2:
        return F.matmul(a, a)
    if n == 3:
        return F.matmul(F.matmul(a, a), a)
    z = result = None
    while n > 0:
        z = a if z is None else F.matmul(z, z)
        n, bit = divmod(n, 2)
        if bit:
            result = z if result is None else F.matmul(result, z)
    return result


def _chain_order(dims):
    """NumPy's multi_dot order: s[i][j] splits arrays i..j (dynamic programming)."""
    n = len(dims) - 1
    cost = [[0] * n for _ in range(n)]
    split = [[0] * n for _ in range(n)]
    for length in range(1, n):
        for i in range(n - length):
            j = i + length
            cost[i][j] = math.inf
            for k in range(i, j):
                c = cost[i][k] + cost[k + 1][j] + dims[i] * dims[k + 1] * dims[j + 1]
                if c < cost[i][j]:
                    cost[i][j], split[i][j] = c, k
    return split


@_named
def multi_dot(arrays, *, out=None) -> Expr:
    """np.linalg.multi_dot: the product of matrices in the cheapest order (NumPy's dynamic
    programme, for static sizes; left to right when a size is run-time).  The first array
    may be 1-d (a row), the last 1-d (a column).

    >>> import symdiff as sd
    >>> A, B, c = sd.matrix("A", (3, 100)), sd.matrix("B", (100, 4)), sd.vector("c", 4)
    >>> sd.linalg.multi_dot([A, B, c]).type
    f64[3]
    """
    if out is not None:
        raise TypeError("out is not supported: symdiff expressions are never written into")
    xs = [F.as_expr(x) for x in arrays]
    if len(xs) < 2:
        raise ValueError("Expecting at least two arrays.")
    if len(xs) == 2:
        return F.dot(xs[0], xs[1])
    first_vector, last_vector = xs[0].ndim == 1, xs[-1].ndim == 1
    if first_vector:
        xs[0] = S.EXPAND_DIMS(xs[0], axes=(0,))
    if last_vector:
        xs[-1] = S.EXPAND_DIMS(xs[-1], axes=(1,))
    for x in xs:
        if x.ndim != 2:
            raise ShapeError(f"{x.ndim}-dimensional array given. Array must be two-dimensional{_at()}")
    dims = [xs[0].type.shape[0]] + [x.type.shape[1] for x in xs]
    if None in dims:
        result = xs[0]
        for x in xs[1:]:
            result = F.matmul(result, x)
    else:
        split = _chain_order(dims)

        def product(i, j):
            if i == j:
                return xs[i]
            k = split[i][j]
            return F.matmul(product(i, k), product(k + 1, j))

        result = product(0, len(xs) - 1)
    if first_vector and last_vector:
        return S.SQUEEZE(result, axes=(0, 1))
    if first_vector:
        return S.SQUEEZE(result, axes=(0,))
    if last_vector:
        return S.SQUEEZE(result, axes=(1,))
    return result


@_named
def expm(A) -> Expr:
    """scipy.linalg.expm: the matrix exponential of the last two axes (Pade approximation
    of degree up to 13 with scaling and squaring; float32 is computed in float64).

    Derivatives of every order: the Frechet derivative is the exponential of a matrix over
    dual numbers (the block [[A, E], [0, A]]), and so on for higher orders.

    >>> import symdiff as sd
    >>> A = sd.matrix("A", (2, 2))
    >>> sd.evaluate(sd.linalg.expm(A), {A: [[0.0, 1.0], [0.0, 0.0]]})
    array([[1., 1.],
           [0., 1.]])
    """
    a = _stack_of_matrices(_float(A), square=True)
    c = S.EXPAND_DIMS(a, axes=(a.ndim - 2,))
    return S.SQUEEZE(D.EXPM(c, order=0), axes=(a.ndim - 2,))


@_named
def diagonal(x, /, *, offset=0) -> Expr:
    """np.linalg.diagonal: the diagonals of the last two axes (O(n) even with run-time sizes
    when offset is 0; two run-time sizes must then be equal).

    >>> import symdiff as sd
    >>> X = sd.matrix("X")
    >>> sd.evaluate(sd.linalg.diagonal(X), {X: [[1.0, 2.0], [3.0, 4.0]]})
    array([1., 4.])
    """
    x = _stack_of_matrices(F.as_expr(x))
    m, n = x.type.shape[-2:]
    if offset == 0 and (m is None or n is None or m == n):
        return D.DIAG_PART(x)
    from .frontend.structure import diagonal as np_diagonal

    return np_diagonal(x, offset=offset, axis1=-2, axis2=-1)


@_named
def matrix_transpose(x, /) -> Expr:
    """np.linalg.matrix_transpose: swap the last two axes.

    >>> import symdiff as sd
    >>> sd.linalg.matrix_transpose(sd.tensor("X", (5, 2, 3))).type
    f64[5,3,2]
    """
    return D.mT(_stack_of_matrices(F.as_expr(x)))


# -------------------------------------------------------------------- norms


def _safe_sqrt(t: Expr) -> Expr:
    """sqrt(t) for t >= 0 whose derivative at 0 is 0 (a subgradient) instead of inf * 0."""
    positive = t > 0
    return F.where(positive, F.sqrt(F.where(positive, t, 1)), 0)


def _rescaled(norm_of_scaled, x: Expr, axes, keepdims, smallest=False) -> Expr:
    """norm(x) as 2**k norm(x * 2**-k) (``power_of_two_scale``): the squares or powers of
    the scaled entries stay in range where x's own overflow or underflow (sqrt(sum(x*x)) was
    inf at 1e154 with a zero gradient, 0 at 1e-200 with a NaN one).  Exact scaling: where
    nothing overflows, the value is the unscaled one to the bit."""
    scaled, scale = power_of_two_scale(x, axes, smallest=smallest)
    return norm_of_scaled(scaled) * (scale if keepdims else S.SQUEEZE(scale, axes=tuple(sorted(axes))))


def _vector_norm(x: Expr, ord, axes, keepdims) -> Expr:
    if ord is None or ord == 2:
        return two_norm(x, axes, keepdims)
    if isinstance(ord, str):
        raise ValueError(f"Invalid norm order '{ord}' for vectors")
    if ord == np.inf:
        return F.max(F.abs(x), axis=axes, keepdims=keepdims)
    if ord == -np.inf:
        return F.min(F.abs(x), axis=axes, keepdims=keepdims)
    if ord == 0:
        return F.sum(F.astype(F.not_equal(x, 0), x.dtype), axis=axes, keepdims=keepdims)
    if ord == 1:
        return F.sum(F.abs(x), axis=axes, keepdims=keepdims)
    p = float(ord)

    def p_norm(v):
        total = F.sum(F.abs(v) ** p, axis=axes, keepdims=keepdims)
        positive = total > 0
        return F.where(positive, F.where(positive, total, 1) ** (1.0 / p), 0)

    return _rescaled(p_norm, x, axes, keepdims, smallest=p < 0)  # a negative p is ruled by the smallest entry


def _matrix_norm(x: Expr, ord, row, col, keepdims) -> Expr:
    if ord in (None, "fro", "f"):
        return two_norm(x, (row, col), keepdims)
    if ord in (2, -2, "nuc"):
        moved = F.transpose(x, tuple(a for a in range(x.ndim) if a not in (row, col)) + (row, col))
        s = D.SVD(moved, part="s", full_matrices=False)
        if ord == "nuc":
            value = F.sum(s, axis=-1)
        else:
            value = (F.max if ord == 2 else F.min)(s, axis=-1)
        if keepdims:
            value = S.EXPAND_DIMS(value, axes=tuple(sorted((row, col))))
        return value
    if ord in (1, -1, np.inf, -np.inf):
        summed_axis, reduced_axis = (row, col) if ord in (1, -1) else (col, row)
        sums = F.sum(F.abs(x), axis=summed_axis, keepdims=True)
        value = (F.max if ord in (1, np.inf) else F.min)(sums, axis=reduced_axis, keepdims=True)
        return value if keepdims else S.SQUEEZE(value, axes=tuple(sorted((row, col))))
    raise ValueError("Invalid norm order for matrices.")


@_named
def norm(x, ord=None, axis=None, keepdims=False) -> Expr:
    """np.linalg.norm: vector norms (ord None/2, 1, inf, -inf, 0, any p) over one axis,
    matrix norms ('fro', 'nuc', 1, -1, 2, -2, inf, -inf) over two; axis None means the whole
    array (2-norm of everything when ord is None, else x must be 1-d or 2-d).

    The derivative of a 2-norm (or Frobenius norm) at 0 is 0; 2 and 'nuc' go through the
    singular values.

    >>> import symdiff as sd
    >>> x = sd.vector("x")
    >>> sd.evaluate([sd.linalg.norm(x), sd.linalg.norm(x, 1), sd.linalg.norm(x, float("inf"))], {x: [3.0, -4.0]})
    [np.float64(5.0), np.float64(7.0), np.float64(4.0)]
    """
    x = _float(x)
    nd = x.ndim
    if axis is None:
        if ord is None:
            return two_norm(x, tuple(range(nd)), keepdims)
        if nd == 1:
            return _vector_norm(x, ord, (0,), keepdims)
        if nd == 2:
            return _matrix_norm(x, ord, 0, 1, keepdims)
        raise ValueError("Improper number of dimensions to norm.")
    axes = (axis,) if isinstance(axis, (int, np.integer)) else tuple(axis)
    for a in axes:
        if isinstance(a, bool) or not isinstance(a, (int, np.integer)):
            raise TypeError("'axis' must be None, an integer or a tuple of integers")
        if not -nd <= a < nd:
            raise ShapeError(f"axis {a} is out of bounds for array of dimension {nd}{_at()}")
    axes = tuple(int(a) % nd for a in axes)
    if len(axes) == 1:
        return _vector_norm(x, ord, axes, keepdims)
    if len(axes) == 2:
        if axes[0] == axes[1]:
            raise ValueError("Duplicate axes given.")
        return _matrix_norm(x, ord, axes[0], axes[1], keepdims)
    raise ValueError("Improper number of dimensions to norm.")


@_named
def vector_norm(x, /, *, axis=None, keepdims=False, ord=2) -> Expr:
    """np.linalg.vector_norm: a vector norm over ``axis`` (None: all elements as one vector).

    >>> import symdiff as sd
    >>> X = sd.matrix("X", (2, 2))
    >>> float(sd.evaluate(sd.linalg.vector_norm(X, ord=1), {X: [[1.0, -2.0], [3.0, -4.0]]}))
    10.0
    """
    x = _float(x)
    if axis is None:
        flat = F.reshape(x, (-1,)) if None not in x.type.shape else x
        axes = (0,) if flat is not x else tuple(range(x.ndim))
        value = _vector_norm(flat, ord, axes, False)
        return F.reshape(value, (1,) * x.ndim) if keepdims else value
    axes = (axis,) if isinstance(axis, (int, np.integer)) else tuple(axis)
    axes = tuple(int(a) % x.ndim for a in axes)
    return _vector_norm(x, ord, axes, keepdims)


@_named
def matrix_norm(x, /, *, keepdims=False, ord="fro") -> Expr:
    """np.linalg.matrix_norm: a matrix norm of the last two axes.

    >>> import symdiff as sd
    >>> X = sd.matrix("X", (2, 2))
    >>> float(sd.evaluate(sd.linalg.matrix_norm(X, ord=1), {X: [[1.0, -2.0], [3.0, -4.0]]}))
    6.0
    """
    x = _stack_of_matrices(_float(x))
    return _matrix_norm(x, ord, x.ndim - 2, x.ndim - 1, keepdims)

