"""Lowering of the linear-algebra ops of ``symdiff.ops.decompositions``: each batch element
is one call of a jitted helper of ``lapack`` (LAPACK from NumPy's library, or loops).

Sharing: the LU factors of a matrix are computed once per kernel call for every ``solve``
and ``slogdet`` of it (the value's solve with A and the gradient's with A^T included),
and a factorisation with several parts (eigh's w and V, svd's U, s and Vh, qr's Q and R,
slogdet's sign, log|det| and det) computes every part the kernel uses in one call, when the
first of them is placed.  A Cholesky factor is a node, so hash-consing already shares it.

Failures raise ``KernelLinAlgError`` (a ``numpy.linalg.LinAlgError``) with NumPy's message
and the node's position; the kernel's source holds no user file or line (that would make
the cache key change with every edit above the call).
"""

from __future__ import annotations

import numpy as np

from ..ir import Expr, toposort
from .lapack import HELPER_PREFIX
from .lowering import NUMPY_NAME, Allocated, Value, _index_text, lowers


def raise_linalg_error(function, args):
    """Raise the reference evaluator's LinAlgError for the (converted) ``args`` with which
    ``function``'s kernel raised one: it names the node and the line that built it (the
    kernel's own message names only the node's position).  For the call wrapper."""
    from ..evaluate import run

    bound = {sym.id: np.asarray(value) for sym, value in zip(function.inputs, args)}
    run(toposort(function.lowered_outputs), bound)
    raise np.linalg.LinAlgError("the compiled kernel found a singular or indefinite matrix, but the reference "
                                "evaluator finds none for these inputs (please report this)")


def helper(name: str) -> str:
    """The jitted helper kernels call for ``name`` (its prefix names the implementation)."""
    return HELPER_PREFIX + name


def flag(value: bool) -> str:
    """A bool argument for a helper: np.bool_, so Numba compiles one version of the helper
    rather than one per literal True/False."""
    return f"np.bool_({bool(value)})"


def _batch(L, node: Expr, *inputs: Expr) -> tuple:
    """The common batch dims of ``inputs`` (unified) and their loop variables."""
    dims = []
    for k in range(node.ndim - _core(node)):
        d = L.dim(inputs[0], k)
        for x in inputs[1:]:
            d = L.dims.unify(d, L.dim(x, k), L.context(node))
        dims.append(d)
    return tuple(dims)


_CORE = {"diag_part": 1, "slogdet": 0, "expm": 3}


def _core(node: Expr) -> int:
    if node.op.name == "eigh" and node.params["part"] == "w":
        return 1
    if node.op.name == "svd" and node.params["part"] == "s":
        return 1
    return _CORE.get(node.op.name, 2)


class _Emitter:
    """Lines for one lowering: batch loops around per-element statements."""

    def __init__(self, L, node: Expr, batch: tuple):
        self.L = L
        self.lines = [f"# {L.comment(node)}"]
        self.batch = batch
        self.index = [f"b{j}" for j in range(len(batch))]
        self.indent = ""
        for j, d in enumerate(batch):
            self.lines.append(f"{self.indent}for b{j} in range({L.dims.text(d)}):")
            self.indent += "    "

    def at(self, array: str) -> str:
        """The current batch element of ``array``."""
        return f"{array}[{_index_text(self.index)}]" if self.index else array

    def add(self, *lines: str):
        self.lines.extend(self.indent + line for line in lines)

    def copy_in(self, dest: str, x: Expr, core_dims: tuple):
        """dest[batch element] = x's batch element, read through views (no extra copy)."""
        names = [f"ci{k}" for k in range(len(core_dims))]  # not c{k}: a view's copy is named c{p}
        indent = ""
        for name, d in zip(names, core_dims):
            self.add(f"{indent}for {name} in range({self.L.dims.text(d)}):")
            indent += "    "
        target = f"{dest}[{_index_text(self.index + names)}]"
        self.add(f"{indent}{target} = {self.L.load(x, self.index + names)}")

    def fail_if(self, condition: str, message: str, node: Expr):
        text = f"{message} ({node.op.name}, node %{self.L.p(node)} of the compiled function)"
        self.add(f"if {condition}:", f"    raise KernelLinAlgError({text!r})")


def _array(L, node: Expr) -> str:
    """A C-contiguous array holding ``node`` (copying a view)."""
    L.ready(node)
    return L.copy_or_array(node)


def _square(L, node: Expr, x: Expr):
    return L.dims.unify(L.dim(x, x.ndim - 2), L.dim(x, x.ndim - 1), L.context(node))


def _allocate(L, name: str, shape: tuple, dtype: str):
    text = "(" + ", ".join(L.dims.text(d) for d in shape) + ("," if len(shape) == 1 else "") + ")"
    L.allocations.append((name, [f"{name} = _empty({text}, {dtype})"]))
    scalar = {numpy: ours for ours, numpy in NUMPY_NAME.items()}.get(dtype)
    if scalar is not None:  # a type the loop-body workspace can pass (LAPACK_INT is not one)
        L.allocated[name] = Allocated(name, text, scalar, len(shape))


def _siblings(L, node: Expr) -> dict:
    """The nodes of this kernel that are parts of the same factorisation, by part."""
    key = tuple((k, v) for k, v in node.attrs if k != "part")
    found = {}
    for n in L.nodes:
        if n.op is node.op and n.inputs == node.inputs and tuple((k, v) for k, v in n.attrs if k != "part") == key:
            found[n.params["part"]] = n
    return found


def _publish(L, node: Expr, name: str, shape: tuple, at: int):
    L.shape[node.id] = shape
    if node.ndim == 0:
        L.values[node.id] = Value("scalar", name=name, avail=at)
    else:
        L.values[node.id] = Value("array", name=name, array=name, avail=at, root=name)


# ---------------------------------------------------------------- diag_part


@lowers("diag_part")
def lower_diag_part(L, node: Expr):
    (x,) = node.inputs
    n = _square(L, node, x)
    L.shape[node.id] = tuple(L.dim(x, k) for k in range(x.ndim - 2)) + (n,)
    avail = L.ready(x)

    def transform(idx):
        return list(idx) + [idx[-1]]

    L.values[node.id] = Value("view", base=x, transform=transform, avail=avail)


# ---------------------------------------------------------------- cholesky


@lowers("cholesky")
def lower_cholesky(L, node: Expr):
    (a,) = node.inputs
    n = _square(L, node, a)
    batch = _batch(L, node, a)
    shape = batch + (n, n)
    source = _array(L, a)
    at = L.avail(a)
    name = f"a{L.p(node)}"
    _allocate(L, name, shape, NUMPY_NAME[node.dtype])
    e = _Emitter(L, node, batch)
    e.add(f"info = {helper('cholesky')}({e.at(name)}, {e.at(source)})")
    e.fail_if("info != 0", "Matrix is not positive definite", node)
    L.prelude(at).extend(e.lines)
    _publish(L, node, name, shape, at)


# ------------------------------------------------- triangular and Cholesky solves


def _rhs_solve(L, node: Expr, matrix: Expr, call, message: str):
    """out = copy of B, then ``call(emitter, matrix array, out element)`` in place."""
    b = node.inputs[1]
    n = _square(L, node, matrix)
    rows = L.dims.unify(n, L.dim(b, b.ndim - 2), L.context(node))
    batch = _batch(L, node, matrix, b)
    shape = batch + (rows, L.dim(b, b.ndim - 1))
    source = _array(L, matrix)
    L.ready(b)
    at = max(L.avail(matrix), L.avail(b))
    name = f"a{L.p(node)}"
    _allocate(L, name, shape, NUMPY_NAME[node.dtype])
    e = _Emitter(L, node, batch)
    e.copy_in(name, b, shape[-2:])
    e.add(f"info = {call(e, source, name)}")
    e.fail_if("info != 0", message, node)
    L.prelude(at).extend(e.lines)
    _publish(L, node, name, shape, at)


@lowers("solve_triangular")
def lower_solve_triangular(L, node: Expr):
    p = node.params
    _rhs_solve(L, node, node.inputs[0],
               lambda e, t, x: f"{helper('trisolve')}({e.at(t)}, {e.at(x)}, {flag(p['lower'])}, "
                               f"{flag(p['trans'])}, {flag(p['unit_diagonal'])})",
               "Singular matrix: a zero on the diagonal of a triangular matrix")


@lowers("cho_solve")
def lower_cho_solve(L, node: Expr):
    lower = node.params["lower"]
    _rhs_solve(L, node, node.inputs[0], lambda e, c, x: f"{helper('cho_solve')}({e.at(c)}, {e.at(x)}, {flag(lower)})",
               "Singular matrix: a zero on the diagonal of a triangular matrix")


@lowers("cho_inverse")
def lower_cho_inverse(L, node: Expr):
    c, w = node.inputs
    n = _square(L, node, c)
    n = L.dims.unify(n, L.dim(w, w.ndim - 1), L.context(node))
    batch = _batch(L, node, c, w)
    shape = batch + (n, n)
    factor, weights = _array(L, c), _array(L, w)
    at = max(L.avail(c), L.avail(w))
    name = f"a{L.p(node)}"
    _allocate(L, name, shape, NUMPY_NAME[node.dtype])
    e = _Emitter(L, node, batch)
    e.add(f"info = {helper('cho_inverse')}({e.at(name)}, {e.at(factor)}, {e.at(weights)})")
    e.fail_if("info != 0", "Singular matrix: a zero on the diagonal of a triangular matrix", node)
    L.prelude(at).extend(e.lines)
    _publish(L, node, name, shape, at)


# -------------------------------------------------------------- LU: solve, slogdet


def _lu_factors(L, node: Expr, a: Expr):
    """(lu, pivots, info) arrays holding the LU factors of ``a``, computed once per kernel
    (the first solve or slogdet of ``a`` places them)."""
    cache = L.__dict__.setdefault("_lu_factors", {})
    if a.id in cache:
        return cache[a.id]
    n = _square(L, node, a)
    batch = tuple(L.dim(a, k) for k in range(a.ndim - 2))
    L.ready(a)
    at = L.avail(a)
    names = (f"lu{L.p(a)}", f"piv{L.p(a)}", f"luinfo{L.p(a)}")
    _allocate(L, names[0], batch + (n, n), NUMPY_NAME[a.dtype])
    _allocate(L, names[1], batch + (n,), "LAPACK_INT")
    _allocate(L, names[2], batch + (1,), "np.int64")
    e = _Emitter(L, node, batch)
    e.lines[0] = f"# LU factors of {L.label(a)} (shared by its solves and slogdet)"
    e.copy_in(names[0], a, (n, n))
    e.add(f"{e.at(names[2])}[0] = {helper('lu')}({e.at(names[0])}, {e.at(names[1])})")
    L.prelude(at).extend(e.lines)
    cache[a.id] = (names, at, batch, n)
    return cache[a.id]


@lowers("solve")
def lower_solve(L, node: Expr):
    a, b = node.inputs
    (lu, piv, info), lu_at, lu_batch, n = _lu_factors(L, node, a)
    rows = L.dims.unify(n, L.dim(b, b.ndim - 2), L.context(node))
    batch = _batch(L, node, a, b)
    shape = batch + (rows, L.dim(b, b.ndim - 1))
    L.ready(b)
    at = max(lu_at, L.avail(b))
    name = f"a{L.p(node)}"
    _allocate(L, name, shape, NUMPY_NAME[node.dtype])
    e = _Emitter(L, node, batch)
    if node.params.get("singular", "raise") == "zero":  # det's rules select another value where A is singular
        e.add(f"if {e.at(info)}[0] > 0:", f"    {e.at(name)}.fill(0)", "else:")
        e.indent += "    "
    else:
        e.fail_if(f"{e.at(info)}[0] > 0", "Singular matrix", node)
    e.copy_in(name, b, shape[-2:])
    e.add(f"{helper('lu_solve')}({e.at(lu)}, {e.at(piv)}, {e.at(name)}, {flag(node.params['trans'])})")
    L.prelude(at).extend(e.lines)
    _publish(L, node, name, shape, at)


@lowers("singular_cofactors")
def lower_singular_cofactors(L, node: Expr):
    """The cofactors (or their derivative along a third input) by ``lapack``'s cofactors
    helper (an SVD) for each batch element whose slogdet sign is 0; zeros for the others
    (no factorisation)."""
    a, sign, *direction = node.inputs
    n = _square(L, node, a)
    batch = _batch(L, node, a)
    shape = batch + (n, n)
    source = _array(L, a)
    along = _array(L, direction[0]) if direction else source
    L.ready(sign)
    at = max(L.avail(x) for x in node.inputs)
    name = f"a{L.p(node)}"
    _allocate(L, name, shape, NUMPY_NAME[node.dtype])
    e = _Emitter(L, node, batch)
    e.add(f"if {L.load(sign, e.index)} != 0:", f"    {e.at(name)}.fill(0)", "else:")
    e.indent += "    "
    e.add(f"info = {helper('cofactors')}({e.at(name)}, {e.at(source)}, {e.at(along)}, {flag(bool(direction))})")
    e.fail_if("info != 0", "SVD did not converge", node)
    L.prelude(at).extend(e.lines)
    _publish(L, node, name, shape, at)


@lowers("slogdet")
def lower_slogdet(L, node: Expr):
    if node.id in L.values:  # placed with its sibling part
        return
    (a,) = node.inputs
    (lu, piv, info), at, batch, _ = _lu_factors(L, node, a)
    parts = _siblings(L, node)
    names = {part: f"a{L.p(n)}" if batch else f"v{L.p(n)}" for part, n in parts.items()}
    e = _Emitter(L, node, batch)
    sign, logdet = f"sg{L.p(node)}", f"ld{L.p(node)}"
    e.add(f"{sign}, {logdet} = {helper('slogdet')}({e.at(lu)}, {e.at(piv)}, {e.at(info)}[0])")
    for part, value in (("sign", sign), ("logabsdet", logdet), ("det", None)):
        if part not in parts:
            continue
        dtype = NUMPY_NAME[parts[part].dtype]
        if value is None:  # np.linalg.det's formula, in the output's dtype (as the composite it was)
            value = f"{dtype}({sign}) * np.exp({dtype}({logdet}))"
        if batch:
            _allocate(L, names[part], batch, dtype)
            e.add(f"{e.at(names[part])} = {value}")
        else:
            e.add(f"{names[part]} = {dtype}({value})")
    L.prelude(at).extend(e.lines)
    for part, n in parts.items():
        _publish(L, n, names[part], batch, at)


# ------------------------------------------------------------------------- eigh


@lowers("eigh")
def lower_eigh(L, node: Expr):
    if node.id in L.values:
        return
    (a,) = node.inputs
    n = _square(L, node, a)
    batch = _batch(L, node, a)
    parts = _siblings(L, node)
    source = _array(L, a)
    at = L.avail(a)
    dtype = NUMPY_NAME[node.dtype]
    w = f"a{L.p(parts['w'])}" if "w" in parts else f"w{L.p(node)}"
    v = f"a{L.p(parts['v'])}" if "v" in parts else f"vdummy{L.p(node)}"
    _allocate(L, w, batch + (n,), dtype)
    _allocate(L, v, (batch + (n, n)) if "v" in parts else (1, 1), dtype)
    e = _Emitter(L, node, batch)
    v_at = e.at(v) if "v" in parts else v
    e.add(f"info = {helper('eigh')}({e.at(source)}, {e.at(w)}, {v_at}, {flag('v' in parts)})")
    e.fail_if("info != 0", "Eigenvalues did not converge", node)
    L.prelude(at).extend(e.lines)
    if "w" in parts:
        _publish(L, parts["w"], w, batch + (n,), at)
    if "v" in parts:
        _publish(L, parts["v"], v, batch + (n, n), at)


# -------------------------------------------------------------------------- svd


def _min_dim(L, m, n):
    m, n = L.dims.find(m), L.dims.find(n)
    if isinstance(m, int) and isinstance(n, int):
        return min(m, n)
    return L.dims.new(f"min({m}, {n})", f"min({L.dims.description(m)}, {L.dims.description(n)})", key=("min", m, n))


@lowers("svd")
def lower_svd(L, node: Expr):
    if node.id in L.values:
        return
    (a,) = node.inputs
    m, n = L.dim(a, a.ndim - 2), L.dim(a, a.ndim - 1)
    k = _min_dim(L, m, n)
    full = node.params["full_matrices"]
    batch = _batch(L, node, a)
    parts = _siblings(L, node)
    vectors = "u" in parts or "vh" in parts
    source = _array(L, a)
    at = L.avail(a)
    dtype = NUMPY_NAME[node.dtype]
    shapes = {"s": batch + (k,), "u": batch + (m, m if full else k), "vh": batch + (n if full else k, n)}
    names = {}
    for part in ("s", "u", "vh"):
        if part in parts:
            names[part] = f"a{L.p(parts[part])}"
            _allocate(L, names[part], shapes[part], dtype)
        elif part == "s":
            names[part] = f"s{L.p(node)}"
            _allocate(L, names[part], shapes[part], dtype)
        else:  # a part the kernel does not use: computed into scratch (or not at all)
            names[part] = f"{part}scratch{L.p(node)}"
            _allocate(L, names[part], shapes[part][-2:] if vectors else (1, 1), dtype)
    e = _Emitter(L, node, batch)
    args = [e.at(names[p]) if p in parts or p == "s" else names[p] for p in ("s", "u", "vh")]
    job = (2 if full else 1) if vectors else 0
    e.add(f"info = {helper('svd')}({e.at(source)}, {', '.join(args)}, np.int64({job}))")
    e.fail_if("info != 0", "SVD did not converge", node)
    L.prelude(at).extend(e.lines)
    for part, n_ in parts.items():
        _publish(L, n_, names[part], shapes[part], at)


# --------------------------------------------------------------------------- qr


@lowers("qr")
def lower_qr(L, node: Expr):
    if node.id in L.values:
        return
    (a,) = node.inputs
    m, n = L.dim(a, a.ndim - 2), L.dim(a, a.ndim - 1)
    complete = node.params["mode"] == "complete"
    k = m if complete else _min_dim(L, m, n)
    batch = _batch(L, node, a)
    parts = _siblings(L, node)
    source = _array(L, a)
    at = L.avail(a)
    dtype = NUMPY_NAME[node.dtype]
    shapes = {"q": batch + (m, k), "r": batch + (k, n)}
    names = {}
    for part in ("q", "r"):
        if part in parts:
            names[part] = f"a{L.p(parts[part])}"
            _allocate(L, names[part], shapes[part], dtype)
        else:
            names[part] = f"{part}scratch{L.p(node)}"
            _allocate(L, names[part], shapes[part][-2:] if part == "r" else (1, 1), dtype)
    e = _Emitter(L, node, batch)
    q = e.at(names["q"]) if "q" in parts else names["q"]
    r = e.at(names["r"]) if "r" in parts else names["r"]
    e.add(f"info = {helper('qr')}({e.at(source)}, {q}, {r}, {flag(complete)}, {flag('q' in parts)})")
    e.fail_if("info != 0", "Incorrect argument found while performing QR factorization", node)
    L.prelude(at).extend(e.lines)
    for part, n_ in parts.items():
        _publish(L, n_, names[part], shapes[part], at)


# --------------------------------------------------------------- pinv and expm


@lowers("pinv")
def lower_pinv(L, node: Expr):
    (a,) = node.inputs
    m, n = L.dim(a, a.ndim - 2), L.dim(a, a.ndim - 1)
    batch = _batch(L, node, a)
    shape = batch + (n, m)
    source = _array(L, a)
    at = L.avail(a)
    name = f"a{L.p(node)}"
    _allocate(L, name, shape, NUMPY_NAME[node.dtype])
    e = _Emitter(L, node, batch)
    e.add(f"info = {helper('pinv')}({e.at(name)}, {e.at(source)}, {node.params['rcond']!r})")
    e.fail_if("info != 0", "SVD did not converge", node)
    L.prelude(at).extend(e.lines)
    _publish(L, node, name, shape, at)


@lowers("expm")
def lower_expm(L, node: Expr):
    (c,) = node.inputs
    n = _square(L, node, c)
    parts = L.dims.unify(L.dim(c, c.ndim - 3), 2 ** node.params["order"], L.context(node))
    batch = _batch(L, node, c)
    shape = batch + (parts, n, n)
    source = _array(L, c)
    at = L.avail(c)
    name = f"a{L.p(node)}"
    _allocate(L, name, shape, NUMPY_NAME[node.dtype])
    e = _Emitter(L, node, batch)
    e.add(f"{helper('expm')}({e.at(name)}, {e.at(source)})")
    L.prelude(at).extend(e.lines)
    _publish(L, node, name, shape, at)
