"""Functions that call users' NumPy code: a few kernels, with the calls between them.

A custom op without ``numba=`` (``sd.custom_op(name, impl)``) runs the user's NumPy
``impl``.  Called from inside a kernel it needs an object-mode block, which costs
1.5-2.6 us by itself (``benchmarks/numba_floor_probe.py``); issue 13 allows 2 us per
call in all.  A kernel call from Python costs about 0.2 us, so a function whose graph
has such ops at its top level is split at them instead:

- every node gets a *stage*: the number of impl calls on its longest path from the
  inputs (a node computed from an impl's result is one stage later than the call);
- kernel ``s`` computes the nodes of stage ``s``, taking as parameters the inputs it
  reads and the values earlier stages or calls produced (``Lowering``'s given nodes),
  and returns what later stages and the calls after it need, and for each call
  after it the result's shape (computed from the kernel's sizes, as the object-mode
  block did; ``custom._output_dims``);
- a generated Python function runs kernel 0, the calls of stage 0, kernel 1, ...;
  the last kernel returns the outputs (so they never alias each other or an input);
  it is skipped when every output is an impl's result used once.

Kernel 0 takes every input: the call wrapper's fast path runs it first, so a value
of the wrong type or size is refused before any user code sees it.  Errors raised
by later kernels (sizes that disagree only once an impl's result is known, an
index out of range, a singular matrix) are explained by the reference evaluator,
which names the node and the user's line, as for one kernel.

An impl call inside a loop body stays an object-mode block (the loop is one loop in
one kernel).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field

import numpy as np

from ..custom import CUSTOM_OPS
from ..errors import ShapeError
from ..ir import Expr, toposort
from ..ops.leaves import numpy_dtype
from . import cache, custom
from .custom import checked_result, users_error
from .lowering import Lowering


def calls_impl(node: Expr) -> bool:
    """Whether ``node`` is a custom op the kernels cannot run (no ``numba=`` function)."""
    return node.op.user and node.op.kind == "custom" and CUSTOM_OPS[node.op.name].numba is None


@dataclass
class Stage:
    """One kernel and the impl calls that run after it."""
    computed: list = field(default_factory=list)  # nodes this kernel computes
    given: list = field(default_factory=list)  # values from earlier stages or calls it reads
    returned: list = field(default_factory=list)  # values it returns for later (the outputs, last)
    calls: list = field(default_factory=list)  # impl nodes called after it, in graph order


def plan(symbols: list, outputs: list):
    """The stages of ``outputs``, or None when no top-level node calls an impl."""
    if all(record.numba is not None for record in CUSTOM_OPS.values()):
        return None  # the usual case: no op without numba= is even registered
    nodes = toposort(outputs)
    if not any(calls_impl(n) for n in nodes):
        return None
    ready: dict = {}  # node id -> the first stage whose kernel may read its value
    stage_of: dict = {}
    for n in nodes:
        if n.is_symbol or n.is_constant:
            ready[n.id] = 0
            continue
        s = max((ready[x.id] for x in n.inputs), default=0)
        stage_of[n.id] = s
        ready[n.id] = s + 1 if calls_impl(n) else s
    last = max(ready[o.id] for o in outputs)
    stages = [Stage() for _ in range(last + 1)]
    for n in nodes:
        if n.id in stage_of:
            target = stages[stage_of[n.id]]
            (target.calls if calls_impl(n) else target.computed).append(n)

    def produced_in(x: Expr):  # the stage whose kernel computes x, or None (a leaf or an impl's result)
        return None if x.id not in stage_of or calls_impl(x) else stage_of[x.id]

    def need(x: Expr, stage: int, by_call: bool):
        """Value x is read by kernel ``stage`` (or by a call after it)."""
        if x.is_symbol or x.is_constant:
            return
        home = produced_in(x)
        if home is not None and x not in stages[home].returned and (home < stage or by_call):
            stages[home].returned.append(x)
        if (home is None or home < stage) and x not in stages[stage].given:
            stages[stage].given.append(x)

    for s, stage in enumerate(stages):
        for n in stage.computed:
            for x in n.inputs:
                if produced_in(x) != s:
                    need(x, s, False)
        for n in stage.calls:
            for x in n.inputs:
                need(x, s, True)  # returned by its kernel; read by kernel s for its size
    for o in outputs:
        need(o, last, False)
    stages[last].returned = list(outputs)
    return stages


def _kernel_inputs(symbols: list, stage: Stage, first: bool) -> list:
    """Kernel parameters: the function's inputs it reads (all of them for kernel 0),
    then the given values."""
    roots = stage.returned + [x for n in stage.calls for x in n.inputs]
    reached = {n.id for n in toposort(roots, stop={g.id for g in stage.given})}
    used = symbols if first else [s for s in symbols if s.id in reached]
    return used + stage.given


def _shape_hook(node: Expr):
    from .custom import _output_dims

    def hook(L) -> str:  # -1 for a size the type rule cannot tell from the inputs' (checked_result reads it)
        dims = ["-1" if d is None else L.dims.text(d) for d in _output_dims(L, node, partial=True)]
        return "(" + ", ".join(dims) + ("," if len(dims) == 1 else "") + ")"

    return hook


def build(function, stages: list, names: list, single: bool):
    """Compile the kernels of ``stages`` and the Python function that runs them; set
    ``function``'s ``program`` (kernel 0's), ``source``, ``kernel`` (runs it all),
    ``cache_status``, and the fast path's pieces (``_first_kernel``, ``_first_hidden``,
    ``_rest``)."""
    symbols = function.inputs
    arg_of = {s.id: name for s, name in zip(symbols, names)}
    namespace = {"_sd_explain": function._explain_failure, "_sd_np": np, "_sd_type": type,
                 "_sd_refs": sys.getrefcount}
    value_names: dict = {}

    def value(x: Expr) -> str:
        if x.id in arg_of:
            return arg_of[x.id]
        if x.id not in value_names:
            value_names[x.id] = f"_sd_v{len(value_names)}"
            if x.is_constant:  # an impl's argument: the graph's (read-only) array itself
                namespace[value_names[x.id]] = x.params["value"].array
        return value_names[x.id]

    skip_last = (not stages[-1].computed and len({o.id for o in function.lowered_outputs}) == len(stages[-1].returned)
                 and all(calls_impl(o) for o in stages[-1].returned))
    shape_names = {n.id: f"_sd_shape{k}" for k, n in enumerate(n for stage in stages for n in stage.calls)}
    sources, statuses, lines = [], [], []
    for s, stage in enumerate(stages):
        if s == len(stages) - 1 and skip_last:
            break
        inputs = _kernel_inputs(symbols, stage, s == 0)
        roots = tuple(x for n in stage.calls for x in n.inputs)
        lowering = Lowering(inputs, stage.returned, extra_roots=roots)
        lowering.single_output = single if s == len(stages) - 1 else False
        lowering.result_hooks = [_shape_hook(n) for n in stage.calls]
        program = lowering.run()
        kernel, status, hidden = cache.load_program(program)
        sources.append(f"# ---- kernel {s} of the function (symdiff.backends.staged)\n{program.source}")
        statuses.append(status)
        namespace[f"_sd_k{s}"] = kernel
        for k, array in enumerate(hidden):
            namespace[f"_sd_h{s}_{k}"] = array
        arguments = [value(x) for x in inputs] + [f"_sd_h{s}_{k}" for k in range(len(hidden))]
        if s == 0:
            function._first_kernel, function._first_hidden, function.program = kernel, hidden, program
            first_arguments, call = ", ".join(arguments), "_sd_first"
        else:
            call = f"_sd_k{s}({', '.join(arguments)})"
        if s == len(stages) - 1:
            lines.append(f"return {call}")
            break
        targets = [value(x) for x in stage.returned] + [shape_names[n.id] for n in stage.calls]
        lines.append(f"{', '.join(targets)}, = {call}")
        for n in stage.calls:
            lines.extend(_call_lines(n, value, shape_names[n.id], namespace))
    if skip_last:  # the outputs are impl results: copy one the impl keeps a reference to (a cache)
        for o in function.lowered_outputs:
            if o.ndim:
                lines += [f"if _sd_refs({value(o)}) > 2:", f"    {value(o)} = {value(o)}.copy()"]
        results = [f"{value(o)}.item()" if o.ndim == 0 else value(o) for o in function.lowered_outputs]
        lines.append("return " + (results[0] if single else "(" + ", ".join(results) + ",)"))
    params = ", ".join(names)
    source = (f"def _sd_rest({params}{', ' if names else ''}_sd_first):\n"
              f"    try:\n" + "".join(f"        {line}\n" for line in lines)
              + "    except _sd_kernel_errors as _sd_exc:\n"
              + f"        _sd_explain(({params}{',' if len(names) == 1 else ''}), _sd_exc)\n\n\n"
              + f"def _sd_run({params}):\n"
              + f"    return _sd_rest({params}{', ' if names else ''}_sd_k0({first_arguments}))\n")
    from .index_runtime import KernelIndexError
    from .runtime import KernelShapeError

    namespace["_sd_kernel_errors"] = (KernelShapeError, KernelIndexError, np.linalg.LinAlgError)
    exec(compile(source, f"<symdiff staged function {function!r}>", "exec"), namespace)
    function._rest, function.kernel = namespace["_sd_rest"], namespace["_sd_run"]
    function.source = ("# Generated by symdiff: the kernels below run in turn, with users' impl calls between "
                       "them (symdiff.backends.staged)\n" + source + "\n\n" + "\n".join(sources))
    function.cache_status = next((st for st in ("miss", "uncached", "hit") if st in statuses), "memory")


def _call_lines(node: Expr, value, shape: str, namespace: dict) -> list:
    """The impl call for ``node`` and the check of its result, inline.  The impl gets
    read-only views of arrays (it must not write the user's arrays or the kernels'),
    0-d arrays for scalars (as from the reference evaluator) and its attributes as
    given.  The usual result (a new writeable C-contiguous array of the right dtype and
    shape; for a 0-d result, a NumPy scalar of the right type) passes a few identity
    tests; anything else goes through ``checked_result`` (conversions, copies, errors)."""
    record, out, k = CUSTOM_OPS[node.op.name], value(node), len(namespace)
    impl, dtype = f"_sd_impl_{node.op.name}", np.dtype(numpy_dtype(node.dtype))
    namespace[impl], namespace["_sd_checked"], namespace["_sd_users_error"] = record.impl, checked_result, users_error
    namespace[f"_sd_{dtype.name}"], namespace[f"_sd_{dtype.name}_scalar"] = dtype, dtype.type
    namespace["_sd_ndarray"] = np.ndarray
    lines, args = [], []
    for j, x in enumerate(node.inputs):
        arg = f"_sd_a{k}_{j}"
        if x.ndim:
            lines += [f"{arg} = {value(x)}.view()", f"{arg}.flags.writeable = False"]
        else:
            kind = np.dtype(numpy_dtype(x.dtype))
            namespace[f"_sd_{kind.name}"] = kind
            lines.append(f"{arg} = _sd_np.array({value(x)}, _sd_{kind.name})")
        args.append(arg)
    attrs = ""
    if node.params:
        namespace[f"_sd_attrs{k}"] = dict(node.params)
        attrs = f", **_sd_attrs{k}"
    lines += [f"try:  # {node.op.name} at {node.where() or '?'}",
              f"    {out} = {impl}({', '.join(args)}{attrs})",
              "except BaseException as _sd_exc:",
              f"    raise _sd_users_error({node.op.name!r}, _sd_exc)"]
    fix = f"_sd_checked({node.op.name!r}, _sd_{dtype.name}, {shape}, {out}, ({', '.join(args)}{',' if args else ''}))"
    if node.ndim == 0:
        lines.append(f"if _sd_type({out}) is not _sd_{dtype.name}_scalar:")
        lines.append(f"    {out} = {fix}[()]")
        return lines
    lines.append(f"if not (_sd_type({out}) is _sd_ndarray and {out}.base is None and {out}.dtype is "
                 f"_sd_{dtype.name} and {out}.shape == {shape} and {out}.flags.carray):")
    lines.append(f"    {out} = {fix}")
    return lines


def warn_once(stages: list):
    """One warning per op, at the user's line."""
    for stage in stages:
        for n in stage.calls:
            custom.warn_once(n.op.name, "the compiled function calls its impl from Python between kernels",
                             "about 1 us")


def explain(function, args, error):
    """Raise the reference evaluator's error for ``args`` (which kernel 0 accepted) where
    a later kernel raised ``error``: it names the node and the user's line."""
    from ..evaluate import run
    from .factorizations import raise_linalg_error
    from .index_runtime import KernelIndexError
    from .indexing import raise_index_error

    if isinstance(error, np.linalg.LinAlgError):
        raise_linalg_error(function, args)
    if isinstance(error, KernelIndexError):
        raise_index_error(function, args)
    run(toposort(function.lowered_outputs), {sym.id: np.asarray(v) for sym, v in zip(function.inputs, args)})
    raise ShapeError("the sizes disagree in a kernel of this function, but the reference evaluator finds no "
                     "disagreement for these inputs (please report this)") from None
