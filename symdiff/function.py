"""``sd.function``: turn a graph into a Python callable.

Two backends share one interface.  ``backend="numba"`` lowers the graph needed for
the outputs to a single Numba kernel (see ``symdiff/backends/``); ``backend="numpy"``
runs the reference evaluator node by node.  Either way the callable takes the input
values positionally (or by symbol name), in ``inputs`` order, and returns one value
for one output Expr or a tuple for a list of outputs.  0-d results come back as
Python or NumPy scalars, arrays never alias the inputs or each other, and user
arrays are never modified.

The core never imports Numba: the backend module is imported only when a Numba
function is built.
"""

from __future__ import annotations

import keyword

from .errors import InputError
from .evaluate import coerce_input, export, run
from .ir import as_list, make_node, toposort

BACKENDS = ("numba", "numpy")


SPARSE_FORMATS = ("auto", "scipy", "coo", "dense")


def function(inputs, outputs, backend="numba", optimize=True, sparse_format="auto"):
    """Compile ``outputs`` as a function of the symbols ``inputs``.

    ``inputs``: a symbol or a list of symbols, the parameters in order.
    ``outputs``: one Expr (the call returns one value) or a list (a tuple back).
    An output may also be a sparse Jacobian or Hessian (``sd.jacobian(...,
    sparse=True)``, a :class:`~symdiff.sparsity.SparseDerivative`): its compressed
    sweeps are compiled with the rest, and the call returns the matrix, as
    ``sparse_format`` says: "scipy" a ``scipy.sparse.csr_matrix`` (an ImportError
    here if SciPy is missing); "coo" the triple ``(rows, cols, values)`` of NumPy
    arrays (flat C-order positions, sorted by row then column: ``matrix[rows[k],
    cols[k]] = values[k]``); "dense" an ndarray; "auto" (the default) "scipy" when
    SciPy is installed, else "coo", as ``SparseDerivative.evaluate`` does.
    ``backend``: "numba" (one compiled kernel) or "numpy" (the reference evaluator).
    ``optimize``: run the graph rewrites (``symdiff.rewrite.optimize``) first.

    >>> import symdiff as sd
    >>> a, b = sd.scalars("a b")
    >>> e = (a + b) * (b + 1)
    >>> f = sd.function([a, b], [e, *sd.grad(e, [a, b])], backend="numpy")
    >>> f(2.0, 1.0)
    (np.float64(6.0), np.float64(2.0), np.float64(5.0))
    >>> x = sd.vector("x", 3)
    >>> hessian = sd.function([x], sd.hessian(sd.sum(x ** 3), x, sparse=True), sparse_format="coo")
    >>> hessian([1.0, 2.0, 3.0])
    (array([0, 1, 2]), array([0, 1, 2]), array([ 6., 12., 18.]))
    """
    outputs, sparse = _sparse_outputs(outputs, sparse_format)
    if sparse:
        inner = function(inputs, outputs, backend=backend, optimize=optimize)
        return SparseOutputsFunction(inner, sparse, sparse_format)
    symbols = _check_inputs(inputs)
    outs, single = as_list(outputs)
    _check_closed(symbols, outs)
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}: choose one of {', '.join(BACKENDS)}")
    outs = compiled_forms(outs)
    lowered = _optimized(outs) if optimize else list(outs)
    if backend == "numpy":
        return NumpyFunction(symbols, outs, lowered, single)
    from .backends.numba_backend import NumbaFunction  # Numba is imported only here

    return NumbaFunction(symbols, outs, lowered, single)


def _sparse_outputs(outputs, sparse_format):
    """``outputs`` with each SparseDerivative replaced by its compressed node, and
    {position: SparseDerivative} (position None for a single output)."""
    from .sparsity import SparseDerivative

    if isinstance(outputs, SparseDerivative):
        found = {None: outputs}
        outputs = outputs.compressed
    elif isinstance(outputs, (list, tuple)) and any(isinstance(o, SparseDerivative) for o in outputs):
        found = {k: o for k, o in enumerate(outputs) if isinstance(o, SparseDerivative)}
        outputs = [o.compressed if isinstance(o, SparseDerivative) else o for o in outputs]
    else:
        return outputs, {}
    if sparse_format not in SPARSE_FORMATS:
        raise ValueError(f"sparse_format must be one of {SPARSE_FORMATS}, got {sparse_format!r}")
    if sparse_format == "scipy":
        from .sparsity import _scipy_sparse

        if _scipy_sparse() is None:
            raise ImportError("a sparse output is returned as a scipy.sparse matrix, and SciPy is not installed: "
                              "install it (pip install symdiff[sparse]), or pass sparse_format='coo' for the "
                              "triple (rows, cols, values), or 'dense'")
    return outputs, found


def compiled_forms(outs: list) -> list:
    """``outs`` with every node whose op has a ``compiled_as`` composite replaced by it (on
    its replaced inputs): primitives that exist for their derivative rules compile as the
    composite, which fuses into the kernel's loops (``two_norm``)."""
    nodes = toposort(outs)
    if not any(node.op.compiled_as is not None for node in nodes):
        return list(outs)
    memo = {}
    for node in nodes:
        inputs = tuple(memo.get(x.id, x) for x in node.inputs)
        if node.op.compiled_as is not None:
            memo[node.id] = node.op.compiled_as(*inputs, **node.params)
        elif any(new is not old for new, old in zip(inputs, node.inputs)):
            memo[node.id] = make_node(node.op, inputs, node.params)
    return [memo.get(o.id, o) for o in outs]


def _optimized(outs: list) -> list:
    from .rewrite import optimize

    return list(optimize(outs))


def _check_inputs(inputs) -> list:
    symbols, _ = as_list(inputs)
    seen = {}
    for sym in symbols:
        if not sym.is_symbol:
            raise InputError(f"function inputs must be symbols, got {sym!r}")
        if sym.name.startswith("_sd_") or keyword.iskeyword(sym.name):
            raise InputError(f"symbol name {sym.name!r} is reserved; rename the symbol")
        other = seen.setdefault(sym.name, sym)
        if other is sym and sum(s is sym for s in symbols) > 1:
            raise InputError(f"symbol {sym.name!r} is listed twice in the inputs")
        if other is not sym:
            raise InputError(
                f"two different symbols are named {sym.name!r} ({other.type!r} and {sym.type!r}); "
                "give them different names"
            )
    return symbols


def _check_closed(symbols: list, outs: list):
    """Every symbol the outputs need must be an input."""
    given = {s.id for s in symbols}
    missing = [n for n in toposort(outs) if n.is_symbol and n.id not in given]
    if missing:
        names = ", ".join(f"{m.name} ({m.type!r})" for m in missing)
        raise InputError(f"the outputs depend on symbols that are not inputs: {names}; add them to the inputs list")


class CompiledFunction:
    """What ``sd.function`` returns: call it with the input values.

    Attributes: ``inputs`` (the symbols), ``outputs`` (the Exprs as given),
    ``backend``, and ``source`` (the generated code, or a node listing for NumPy).
    """

    backend = ""

    def __init__(self, symbols, outputs, lowered, single):
        self.inputs = list(symbols)
        self.outputs = list(outputs)
        self.lowered_outputs = list(lowered)
        self.single = single

    def __repr__(self):
        args = ", ".join(s.name for s in self.inputs)
        return f"<symdiff function ({args}) -> {len(self.outputs)} output(s), backend={self.backend}>"

    def _bind_positional(self, args, kwargs) -> list:
        """The values in inputs order, from positional and keyword arguments."""
        names = [s.name for s in self.inputs]
        if len(args) > len(names):
            raise TypeError(f"this function takes {len(names)} inputs ({', '.join(names)}), got {len(args)}")
        values = list(args)
        for name in names[len(args):]:
            if name not in kwargs:
                raise TypeError(f"missing value for input {name!r}; the inputs are ({', '.join(names)})")
            values.append(kwargs.pop(name))
        if kwargs:
            unknown = ", ".join(sorted(kwargs))
            raise TypeError(f"unknown or repeated input(s) {unknown}; the inputs are ({', '.join(names)})")
        return values


class NumpyFunction(CompiledFunction):
    """The reference evaluator behind the compiled-function interface."""

    backend = "numpy"

    def __init__(self, symbols, outputs, lowered, single):
        super().__init__(symbols, outputs, lowered, single)
        self._nodes = toposort(self.lowered_outputs)

    @property
    def source(self) -> str:
        lines = []
        for node in self._nodes:
            if node.is_symbol:
                lines.append(f"{node.name} = input : {node.type!r}")
            elif node.is_constant:
                lines.append(repr(node))
            else:
                args = " ".join(x.label() for x in node.inputs)
                lines.append(f"%{node.id} = {node.op.name} {args} : {node.type!r}")
        lines.append("return " + ", ".join(o.label() for o in self.lowered_outputs))
        return "\n".join(lines) + "\n"

    def __call__(self, *args, **kwargs):
        values = self._bind_positional(args, kwargs)
        bound = {sym.id: coerce_input(sym.name, sym.type, v) for sym, v in zip(self.inputs, values)}
        run(self._nodes, bound)
        results = []
        seen = set()
        for out in self.lowered_outputs:
            value = export(bound[out.id])
            if out.id in seen and getattr(value, "ndim", 0):
                value = value.copy()  # the same node twice: two independent arrays
            seen.add(out.id)
            results.append(value)
        return results[0] if self.single else tuple(results)


class SparseOutputsFunction:
    """What ``sd.function`` returns when some outputs are sparse derivatives: the
    compiled function of their compressed sweeps (``compiled``), whose results are
    assembled into matrices (see ``sd.function``'s ``sparse_format``)."""

    def __init__(self, compiled, sparse: dict, sparse_format: str):
        self.compiled, self.sparse, self.sparse_format = compiled, sparse, sparse_format
        self.inputs, self.backend = compiled.inputs, compiled.backend

    @property
    def source(self) -> str:
        return self.compiled.source

    def __repr__(self):
        return f"<symdiff function with {len(self.sparse)} sparse output(s), {self.compiled!r}>"

    def __call__(self, *args, **kwargs):
        results = self.compiled(*args, **kwargs)
        if None in self.sparse:
            return self.sparse[None].assemble(results, format=self.sparse_format)
        return tuple(self.sparse[k].assemble(r, format=self.sparse_format) if k in self.sparse else r
                     for k, r in enumerate(results))

