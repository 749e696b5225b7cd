"""The ``symdiff`` command: see the graph that symbol-to-symbol differentiation built.

    symdiff grad "e = (a + b) * (b + 1)" --wrt a,b --at a=2,b=1
    symdiff explain "e = (a + b) * (b + 1)" --wrt a,b
    symdiff grad --file model.py:loss --format dot -o grad.dot

Exit status: 0 on success, 2 for a usage error (bad option, an expression that
does not parse, an unknown name; the expression is printed with a caret under
the fault), 1 when the computation fails (shapes that do not fit, a value of the
wrong shape, an error in the user's function).  No Python traceback is printed
unless ``--debug`` is given.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import re
import sys
import textwrap
import traceback
from dataclasses import dataclass, field
from typing import Optional

import numpy as np

import symdiff as sd

from . import autodiff, printers
from .errors import ShapeError, SymdiffError
from .evaluate import coerce_input
from .ir import Expr, toposort
from .ops.leaves import const
from .parse import FUNCTIONS, ExpressionError, check_name, parse_expression, parse_values, parse_var, split_assignment
from .types import TensorType, fmt_shape

__all__ = ["main"]


class UsageError(SymdiffError, ValueError):
    """A command line that cannot be carried out as written (exit status 2)."""


class UserCodeError(SymdiffError, RuntimeError):
    """An exception raised inside the user's FILE.py:FUNCTION (exit status 1)."""


# --------------------------------------------------------------------- the problem

_FILE_FUNCTION = re.compile(r"^(?P<path>.+\.py):(?P<function>[A-Za-z_]\w*)$")


@dataclass
class Problem:
    """What the command line asks about: a cost, its inputs, the wrt list, values."""

    name: str
    cost: Expr
    source: str
    inputs: dict  # name -> symbol, in order of first use
    wrt: list = field(default_factory=list)
    values: dict = None  # name -> array, or None without --at
    from_file: bool = False
    spans: dict = field(default_factory=dict)  # node id -> (start, end) in ``text``, for run-time errors
    text: str = ""  # the expression as typed (one line)

    @property
    def title(self) -> str:
        """``e = (a + b) * (b + 1)``, or ``loss from model.py:loss``."""
        return f"{self.name} from {self.source}" if self.from_file else f"{self.name} = {_strip_name(self.source)}"


def _declare(spec_by_name: dict):
    def declare(name: str) -> Expr:
        dtype, shape = spec_by_name.get(name, ("float64", ()))
        return sd.tensor(name, shape, dtype)

    return declare


def load_problem(args, scalar_cost: bool = True) -> Problem:
    """Parse EXPR (or import --file FILE.py:FUNCTION), --var, --wrt and --at."""
    spans, text = {}, ""
    if args.file:
        match = _FILE_FUNCTION.match(args.file.strip())
        if not match:
            raise UsageError(f"--file {args.file!r}: give FILE.py:FUNCTION, e.g. --file model.py:loss")
        if args.expr:
            raise UsageError("give an expression or --file FILE.py:FUNCTION, not both")
        if args.var:
            raise UsageError("--var has no effect with --file FILE.py:FUNCTION: the function declares its own inputs")
        name = match.group("function")
        cost = call_user_function(match.group("path"), name)
        source = args.file.strip()
    elif not args.expr:
        raise UsageError("give an expression to differentiate (or --file FILE.py:FUNCTION)")
    elif _FILE_FUNCTION.match(args.expr.strip()):
        raise UsageError(f"{args.expr.strip()!r} is not an expression; to import that file and call the function "
                         f"(which runs the file as Python would), ask for it: --file {args.expr.strip()}")
    else:
        specs = {}
        for spec in args.var or []:
            var_name, dtype, shape = parse_var(spec)
            specs[var_name] = (dtype, shape)
        name, body = split_assignment(args.expr)
        declared = {n: sd.tensor(n, shape, dtype) for n, (dtype, shape) in specs.items()}
        text = re.sub(r"[\r\n\t]", " ", args.expr)  # show `NAME =` too: offsets are the same
        try:
            cost = parse_expression(body, declared, declare=_declare(specs), spans=spans)
        except ExpressionError as exc:
            exc.text = text
            raise
        source = args.expr.strip()
        if name is None:
            used = {n.name for n in toposort(cost) if n.is_symbol}
            name = next(n for n in ("f", "out", "out_") if n not in used)
    inputs = {}
    for node in toposort(cost):
        if node.is_symbol:
            other = inputs.setdefault(node.name, node)
            if other is not node:
                raise UsageError(f"two different inputs are named {node.name!r} ({other.type!r} and "
                                 f"{node.type!r}); give them different names")
    if name in inputs:
        raise UsageError(f"the result's name {name!r} is also an input's name; use `NAME = EXPR` with another name")
    if scalar_cost and (cost.ndim != 0 or not cost.type.is_float):
        raise SymdiffError(f"{name} has type {cost.type!r}; this command needs a float scalar (0-d) cost: "
                           "reduce it first, e.g. sum(...) or mean(...)")
    problem = Problem(name, cost, source, inputs, from_file=bool(args.file), spans=spans, text=text)
    problem.wrt = _wrt(args.wrt, inputs)
    args.problem = problem  # for describing a failure at run time
    return problem


def _wrt(text, inputs: dict) -> list:
    if not text:
        found = [x for x in inputs.values() if x.type.is_float]
        if not found:
            raise UsageError("the expression has no float inputs to differentiate with respect to")
        return found
    result = []
    for name in (n.strip() for n in text.split(",")):
        if not name:
            continue
        check_name(name, "--wrt")
        if name not in inputs:
            known = ", ".join(inputs) or "none"
            raise UsageError(f"--wrt {name}: the expression has no input named {name!r} (inputs: {known})")
        if inputs[name] not in result:
            result.append(inputs[name])
    if not result:
        raise UsageError("--wrt names no inputs; give names separated by commas, e.g. --wrt a,b")
    return result


def call_user_function(path: str, function: str) -> Expr:
    """Import ``path`` and call ``function()``, which must return one symdiff expression."""
    if not os.path.isfile(path):
        raise UsageError(f"no such file: {path}")
    module_name = "_symdiff_user_" + re.sub(r"\W", "_", os.path.splitext(os.path.basename(path))[0])
    spec = importlib.util.spec_from_file_location(module_name, path)
    module = importlib.util.module_from_spec(spec)
    folder = os.path.dirname(os.path.abspath(path))
    sys.path.insert(0, folder)  # so the user's file can import its neighbours
    try:
        try:
            spec.loader.exec_module(module)
        except (SyntaxError, ValueError) as exc:
            if isinstance(exc, SyntaxError) and exc.lineno is not None:
                raise UsageError(f"{path}:{exc.lineno}: syntax error: {exc.msg}") from None
            if "null bytes" not in str(exc):
                raise UserCodeError(_describe_user_exception(exc, path, f"importing {path}")) from exc
            with open(path, "rb") as handle:
                line = handle.read().split(b"\0", 1)[0].count(b"\n") + 1
            raise UsageError(f"{path}:{line}: the file contains a NUL byte, so it is not Python source") from None
        except Exception as exc:
            raise UserCodeError(_describe_user_exception(exc, path, f"importing {path}")) from exc
        fn = getattr(module, function, None)
        if not callable(fn):
            found = sorted(n for n, v in vars(module).items() if callable(v) and not n.startswith("_")
                           and getattr(v, "__module__", None) == module_name)
            raise UsageError(f"{path} has no function {function!r} (functions: {', '.join(found) or 'none'})")
        try:
            result = fn()
        except Exception as exc:
            raise UserCodeError(_describe_user_exception(exc, path, f"{function}()")) from exc
    finally:
        sys.path.remove(folder)
    if not isinstance(result, Expr):
        raise UserCodeError(f"{path}:{function}() must return one symdiff expression (the cost), "
                            f"got {type(result).__name__}")
    return result


def _describe_user_exception(exc: Exception, path: str, what: str) -> str:
    """``file:line: in function(): ErrorType: message``, at the innermost frame of the user's file."""
    where = ""
    for frame in traceback.extract_tb(exc.__traceback__):
        if os.path.abspath(frame.filename) == os.path.abspath(path):
            where = f"{path}:{frame.lineno}: "
    return f"{where}error in {what}: {type(exc).__name__}: {exc}"


def bind_values(problem: Problem, text_items: list, extra: dict = None) -> dict:
    """The --at values by name, scalars broadcast to static shapes; extra symbols allowed."""
    raw = {}
    for text in text_items:
        raw.update(parse_values(text))
    symbols = dict(problem.inputs, **(extra or {}))
    for name in raw:
        if name not in symbols:
            raise UsageError(f"--at {name}=...: there is no input named {name!r} (inputs: {', '.join(symbols)})")
    missing = [n for n in symbols if n not in raw]
    if missing:
        hints = {n: "" for n in missing}
        for n in missing:
            if n in (extra or {}):
                hints[n] = f" (the direction for {n[2:] if n.startswith('v_') else n[:-4]})"
        listed = ", ".join(f"{n} of type {symbols[n].type!r}{hints[n]}" for n in missing)
        raise UsageError(f"--at gives no value for {listed}")
    values = {}
    for name, value in raw.items():
        want = symbols[name].type
        if isinstance(value, list) or not want.shape or None in want.shape:
            values[name] = coerce_input(name, want, value)
            continue
        number = coerce_input(name, TensorType(want.dtype, ()), value)  # the library's casting policy
        size = int(np.prod(want.shape, dtype=object))
        try:
            values[name] = np.full(want.shape, number)  # a number for a fixed-shape input fills it
        except MemoryError:
            raise SymdiffError(f"--at {name}={value}: filling {name} (shape {fmt_shape(want.shape)}, "
                               f"{size:,} values) needs {_bytes(size * number.itemsize)}, more memory than "
                               "is free; declare a smaller size with --var") from None
    return values


def _bytes(count: int) -> str:
    """``80.0 GB``: a byte count for people.

    >>> _bytes(80_000_000_000), _bytes(1536)
    ('80.0 GB', '1.5 kB')
    """
    for unit, size in (("TB", 10**12), ("GB", 10**9), ("MB", 10**6), ("kB", 10**3)):
        if count >= size:
            return f"{count / size:.1f} {unit}"
    return f"{count} bytes"


# The values the command prints are all kept at once (the reference evaluator runs
# the listing and holds every node's value), so before evaluating it refuses a graph
# whose values would not fit in this fraction of the machine's physical memory.
MEMORY_FRACTION = 0.5


def _memory_limit() -> Optional[int]:
    """MEMORY_FRACTION of the physical memory in bytes (None where the system does not say)."""
    try:
        return int(os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") * MEMORY_FRACTION)
    except (ValueError, OSError, AttributeError):
        return None


def _node_bytes(shape: tuple, dtype: str) -> Optional[int]:
    """The bytes of a value of ``shape`` (None for a run-time size)."""
    if None in shape:
        return None
    return int(np.prod(shape, dtype=object)) * np.dtype(dtype).itemsize


def check_memory(problem: Problem, nodes: list, limit: Optional[int] = None, values: Optional[dict] = None) -> None:
    """Refuse, before any evaluation, values of ``nodes`` (and what they need) that would
    not fit: one node larger than ``limit`` (default: MEMORY_FRACTION of physical memory),
    or all of them together, which the evaluation holds at once.  The node is named by
    its op and the part of the expression it computes.  With the bound ``values``
    ({name: array}), sizes known only at run time are taken from them."""
    limit = _memory_limit() if limit is None else limit
    if limit is None:
        return
    nodes = toposort(list(nodes))
    shapes = _shapes_at(nodes, values) if values else {}
    sized = [(_node_bytes(shapes.get(node.id, node.type.shape), node.dtype), node) for node in nodes]
    sized = [(size, node) for size, node in sized if size is not None]
    if not sized:
        return
    total = sum(b for b, _ in sized)
    if total <= limit:
        return
    largest, node = max(sized, key=lambda pair: (pair[0], pair[1].id in problem.spans))  # the expression's own first
    head = f"the input {node.name}" if node.is_symbol else f"the intermediate {node.op.name}"
    size = f", of shape {fmt_shape(shapes.get(node.id, node.type.shape))} and dtype {node.dtype}, needs {_bytes(largest)}"
    over = f"more than {_bytes(limit)} ({MEMORY_FRACTION:.0%} of this machine's memory)"
    advice = "give fewer values with --at" if shapes else "declare smaller sizes with --var"
    if largest > limit:
        tail = f"{size}, {over}; {advice}"
    else:
        head = (f"the {len(sized):,} values the evaluation holds at once need {_bytes(total)} together, {over}; "
                f"the largest, {head}")
        tail = f"{size}; {advice}"
    raise SymdiffError(_in_expression(node, problem, head, tail))


def _shapes_at(nodes: list, values: dict) -> dict:
    """{node id: shape} of ``nodes`` with the inputs of run-time size given the
    shapes of their bound values: the graph rebuilt on inputs of those static sizes (no
    evaluation).  {} where that fails: the evaluation reports what does not fit."""
    from .custom import substitute

    static = {n: sd.tensor(n.name, np.shape(values[n.name]), n.dtype) for n in nodes
              if n.is_symbol and None in n.type.shape and n.name in values}
    if not static:
        return {}
    try:
        rebuilt = substitute(nodes, static)  # in the order of ``nodes``
    except SymdiffError:
        return {}
    return {a.id: b.type.shape for a, b in zip(nodes, rebuilt)}


# ------------------------------------------------------------------- output

_FORMATS = ("text", "dot", "json", "latex")


def _value_text(value) -> str:
    """A value in a title or summary line: every entry as it is (format_value's ``exact``)."""
    return printers.format_value(value, exact=True)


def _evaluate_nodes(nodes: list, values: dict) -> dict:
    """{node id: value} for every node (symbols included)."""
    results = sd.evaluate(list(nodes), values)
    return {n.id: r for n, r in zip(nodes, results)}


def _render(listing, args, problem: Problem, latex_names: dict, columns: list, summary: str) -> str:
    if args.format == "text":
        if columns:
            title = f"{problem.title} at {_at_text(problem.values)}"
            return "\n".join([title, printers.to_table(listing, columns), summary])
        return printers.to_text(listing)
    if args.format == "dot":
        return printers.to_dot(listing, values=columns[0][1] if columns else None)
    if args.format == "json":
        return printers.to_json(listing, values=columns[0][1] if columns else None)
    from .sympy_bridge import latex_definitions

    return latex_definitions({latex_names.get(name, name): out for name, out in zip(listing.names, listing.outputs)},
                             optimize=False)


def _strip_name(source: str) -> str:
    name, body = split_assignment(source)
    return body.strip() if name else source


def _at_text(values: dict) -> str:
    return ", ".join(f"{k} = {_value_text(v)}" for k, v in values.items())


def _emit(text: str, args):
    if args.output:
        with open(args.output, "w", encoding="utf-8") as f:
            f.write(text + "\n")
    else:
        sys.stdout.write(text + "\n")


def _summary(listing, values: dict) -> str:
    return ", ".join(f"{name} = {_value_text(values[out.id])}" for name, out in zip(listing.names, listing.outputs))


def _forward_nodes(listing) -> list:
    """The nodes the first output (the cost) needs: those printed before its output line."""
    nodes = []
    for step in listing.steps:
        if step[0] == "output":
            break
        nodes.append(step[1])
    return nodes


# ------------------------------------------------------------------- commands


def _list_and_evaluate(args, problem: Problem, outputs: dict, directions: Optional[dict] = None, also=None):
    """The listing of ``outputs`` and, with ``--at``, every listed node's value (else None).

    ``also(listing)`` gives more nodes to evaluate with the listing's (a column's
    adjoints or tangents); their values are in the same dict.  The memory all of them
    need together is checked before anything is evaluated."""
    listing = printers.Listing(outputs, optimize=not args.no_optimize)
    if not args.at:
        return listing, None
    nodes = listing.nodes + (list(also(listing)) if also else [])
    check_memory(problem, nodes)
    problem.values = bind_values(problem, args.at, directions) if directions else bind_values(problem, args.at)
    check_memory(problem, nodes, values=problem.values)  # the sizes known only now
    return listing, _evaluate_nodes(nodes, problem.values)


def _render_values(listing, args, problem: Problem, latex_names: dict, values, extra: Optional[str] = None) -> str:
    """Render with a value column and a summary line when there are values."""
    if values is None:
        return _render(listing, args, problem, latex_names, [], "")
    summary = _summary(listing, values) + (f"\n{extra}" if extra else "")
    return _render(listing, args, problem, latex_names, [("value", values)], summary)


def cmd_grad(args) -> str:
    problem = load_problem(args)
    grads = sd.grad(problem.cost, problem.wrt, mode="rev")
    outputs = {problem.name: problem.cost}
    latex_names = {}
    for w, g in zip(problem.wrt, grads):
        key = f"d{problem.name}/d{w.name}"
        outputs[key] = g
        latex_names[key] = rf"\frac{{\partial {problem.name}}}{{\partial {w.name}}}"
    adjoints = {}

    def adjoint_nodes(listing):
        forward = [n for n in _forward_nodes(listing) if n.type.is_float]
        adjoints.update(zip((n.id for n in forward), sd.grad(listing.outputs[0], forward, mode="rev")))
        return adjoints.values()

    listing, values = _list_and_evaluate(args, problem, outputs, also=adjoint_nodes)
    columns, summary = [], ""
    if values is not None:
        adjoint_values = {i: values[a.id] for i, a in adjoints.items()}
        columns = [("value", values), (f"adjoint d{problem.name}/d(node)", adjoint_values)]
        summary = _summary(listing, values)
    return _render(listing, args, problem, latex_names, columns, summary)


def _directions(problem: Problem, prefix: str, suffix: str) -> list:
    directions = []
    for w in problem.wrt:
        name = f"{prefix}{w.name}{suffix}"
        if name in problem.inputs:
            raise UsageError(f"the direction for {w.name} would be named {name!r}, which is already an input; "
                             "rename that input")
        directions.append(sd.tensor(name, w.type.shape, w.dtype))
    return directions


def cmd_jvp(args) -> str:
    problem = load_problem(args, scalar_cost=False)
    tangents = _directions(problem, "", "_dot")
    out_tangent = sd.jvp(problem.cost, problem.wrt, tangents)
    key = f"{problem.name}_dot"
    node_tangents = {}

    def tangent_nodes(listing):
        forward = [n for n in _forward_nodes(listing) if n.type.is_float]
        node_tangents.update(zip((n.id for n in forward), sd.jvp(forward, problem.wrt, tangents)))
        return node_tangents.values()

    listing, values = _list_and_evaluate(args, problem, {problem.name: problem.cost, key: out_tangent},
                                         {t.name: t for t in tangents}, also=tangent_nodes)
    columns, summary = [], ""
    if values is not None:
        columns = [("value", values), ("tangent", {i: values[t.id] for i, t in node_tangents.items()})]
        summary = _summary(listing, values)
    return _render(listing, args, problem, {key: rf"\dot{{{problem.name}}}"}, columns, summary)


def cmd_hvp(args) -> str:
    problem = load_problem(args)
    vs = _directions(problem, "v_", "")
    products = sd.hvp(problem.cost, problem.wrt, vs, mode=args.mode)
    outputs = {problem.name: problem.cost}
    latex_names = {}
    for w, p in zip(problem.wrt, products):
        outputs[f"Hv_{w.name}"] = p
        latex_names[f"Hv_{w.name}"] = rf"(H v)_{{{w.name}}}"
    listing, values = _list_and_evaluate(args, problem, outputs, {v.name: v for v in vs})
    return _render_values(listing, args, problem, latex_names, values)


# A dense Jacobian or Hessian is built as one sweep per input (or output) element;
# past these sizes the command refuses instead of exhausting memory: the entries of the
# result, and the values all the sweeps compute together (each sweep computes about as
# many as the graph it goes through: 20 million float64 values are 160 MB).
MAX_DENSE_ENTRIES = 250_000
MAX_SWEEP_VALUES = 20_000_000


def _size(node: Expr) -> int:
    return int(np.prod(node.type.shape, dtype=np.int64))


def _require_static(what: str, problem: Problem, nodes) -> None:
    """A dense Jacobian's size is part of its graph: every shape must be static."""
    for node in nodes:
        if None not in node.type.shape:
            continue
        if node.is_symbol and not problem.from_file:
            example = "x".join("3" if d is None else str(d) for d in node.type.shape)
            how = f"declare its size with --var, e.g. --var {node.name}:{example}"
        elif node.is_symbol:
            how = f"give {node.name} a static shape in your function"
        else:
            how = "declare the sizes of its inputs with --var (e.g. x:3 rather than x:vector)"
        label = node.name if node.is_symbol else problem.name
        raise UsageError(f"a dense {what} needs static sizes, and {label} has shape {fmt_shape(node.type.shape)} "
                         f"(a size known only at run time); {how}.  For run-time sizes, use sd.jvp, sd.vjp or "
                         f"sd.hvp from Python")


def _check_dense_size(what: str, rows: Expr, columns) -> None:
    entries = _size(rows)
    for w in columns:
        entries_w = entries * _size(w)
        if entries_w > MAX_DENSE_ENTRIES:
            raise UsageError(
                f"the dense {what} wrt {w.name} has {entries_w:,} entries (limit {MAX_DENSE_ENTRIES:,}); "
                f"use sd.sparse_{what}(...) from Python for large inputs"
            )


def _check_sweeps(what: str, graph, wrt: Expr, sweeps: dict, chosen: str, alternative: str) -> None:
    """Refuse a dense derivative whose sweeps would compute more than MAX_SWEEP_VALUES
    values: ``sweeps`` maps each mode to its number of sweeps through ``graph``.  A
    sweep recomputes only the nodes that depend on ``wrt`` (a forward sweep's tangents,
    a reverse sweep's adjoints): inputs and what depends on other inputs only are
    computed once, whatever their size."""
    values = sum(_size(node) for node in _dependents(graph, wrt))
    work = sweeps[chosen] * values
    if work <= MAX_SWEEP_VALUES:
        return
    other = [mode for mode in sweeps if mode != chosen and sweeps[mode] * values <= MAX_SWEEP_VALUES]
    instead = (f"--mode {other[0]} needs {sweeps[other[0]]:,} sweep(s) ({sweeps[other[0]] * values:,} values): "
               "use it" if other else alternative)
    raise UsageError(f"the {what} by {sweeps[chosen]:,} {chosen} sweeps, each through {values:,} values that "
                     f"depend on {wrt.name}, would compute {work:,} values (about {_bytes(8 * work)}; limit "
                     f"{MAX_SWEEP_VALUES:,}); {instead}")


def _dependents(graph, wrt: Expr) -> list:
    """The nodes of ``graph`` (one Expr or a list) that depend on ``wrt``, ``wrt`` included."""
    found, nodes = {wrt.id}, []
    for node in toposort(graph):
        if node.id in found or any(x.id in found for x in node.inputs):
            found.add(node.id)
            nodes.append(node)
    return nodes


def cmd_jacobian(args) -> str:
    problem = load_problem(args, scalar_cost=False)
    _require_static("jacobian", problem, problem.wrt + [problem.cost])
    _check_dense_size("jacobian", problem.cost, problem.wrt)
    for w in problem.wrt:
        sweeps = {"fwd": _size(w), "rev": _size(problem.cost)}
        chosen = args.mode if args.mode != "auto" else ("fwd" if sweeps["fwd"] <= sweeps["rev"] else "rev")
        _check_sweeps(f"jacobian wrt {w.name}", problem.cost, w, sweeps, chosen,
                      "use sd.sparse_jacobian(...) from Python, or sd.jvp / sd.vjp for a few directions")
    outputs = {problem.name: problem.cost}
    latex_names = {}
    for w in problem.wrt:
        key = f"d{problem.name}/d{w.name}"
        outputs[key] = sd.jacobian(problem.cost, w, mode=args.mode)
        latex_names[key] = rf"\frac{{\partial {problem.name}}}{{\partial {w.name}}}"
    listing, values = _list_and_evaluate(args, problem, outputs)
    return _render_values(listing, args, problem, latex_names, values)


def cmd_hessian(args) -> str:
    problem = load_problem(args)
    _require_static("hessian", problem, problem.wrt)
    for w in problem.wrt:
        _check_dense_size("hessian", w, problem.wrt)
    gradients = sd.grad(problem.cost, problem.wrt, mode="rev")
    for w in problem.wrt:  # each block is a Jacobian of the gradient: one sweep per element of w
        _check_sweeps(f"hessian block wrt {w.name}", gradients, w, {"fwd": _size(w)}, "fwd",
                      "use sd.hvp (Hessian-vector products) or sd.sparse_hessian(...) from Python")
    outputs = {problem.name: problem.cost}
    latex_names = {}
    if len(problem.wrt) == 1:
        (w,) = problem.wrt
        blocks = {(0, 0): sd.hessian(problem.cost, w)}
    else:
        # Blocks d/dw_j (d cost/dw_i): the gradient of a scalar gradient, else its Jacobian.
        grads = sd.grad(problem.cost, problem.wrt, mode="rev")
        blocks = {}
        for i, g in enumerate(grads):
            for j in range(i, len(problem.wrt)):
                w = problem.wrt[j]
                blocks[i, j] = sd.grad(g, w, mode="rev") if g.ndim == 0 else sd.jacobian(g, w)
    for (i, j), block in blocks.items():
        wi, wj = problem.wrt[i].name, problem.wrt[j].name
        key = f"d2{problem.name}/d{wi}d{wj}"
        outputs[key] = block
        latex_names[key] = rf"\frac{{\partial^2 {problem.name}}}{{\partial {wi}\,\partial {wj}}}"
    listing, values = _list_and_evaluate(args, problem, outputs)
    matrix = _hessian_matrix(problem, blocks, listing, values) if values is not None else None
    return _render_values(listing, args, problem, latex_names, values, matrix)


def _hessian_matrix(problem: Problem, blocks: dict, listing, values: dict) -> str:
    """The full symmetric Hessian over the flattened wrt inputs, as a NumPy matrix."""
    sizes = [int(np.prod(w.type.shape, dtype=np.int64)) for w in problem.wrt]
    offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(int)
    matrix = np.zeros((offsets[-1], offsets[-1]))
    by_name = dict(zip(listing.names, listing.outputs))
    for (i, j) in blocks:
        key = f"d2{problem.name}/d{problem.wrt[i].name}d{problem.wrt[j].name}"
        block = np.asarray(values[by_name[key].id], dtype=float).reshape(sizes[i], sizes[j])
        matrix[offsets[i]:offsets[i + 1], offsets[j]:offsets[j + 1]] = block
        matrix[offsets[j]:offsets[j + 1], offsets[i]:offsets[i + 1]] = block.T
    order = ", ".join(w.name if s == 1 else f"{w.name}[{s}]" for w, s in zip(problem.wrt, sizes))
    with printers.stable_printoptions(precision=6, suppress=True):
        return f"Hessian over ({order}):\n" + np.array2string(matrix)


def cmd_explain(args) -> str:
    if args.format == "latex":
        raise UsageError("explain prints text, dot or json (the graph with every message of the reverse sweep); "
                         "for LaTeX use `symdiff grad --format latex`")
    problem = load_problem(args)
    events = []
    adjoints = autodiff.backprop([(problem.cost, const(1, problem.cost.dtype))], problem.wrt, problem.cost.label(),
                                 trace=lambda *event: events.append(event))
    grads = [adjoints.get(w.id) for w in problem.wrt]
    outputs = {problem.name: problem.cost}
    for w, g in zip(problem.wrt, grads):
        outputs[f"d{problem.name}/d{w.name}"] = g if g is not None else sd.grad(problem.cost, w, mode="rev")
    listing = printers.Listing(outputs, optimize=False)
    for node, messages, total, sent in events:  # messages that reach no result are listed too
        listing.extend([total] + [m for _, _, m in sent])
    values = None
    if args.at:
        check_memory(problem, listing.nodes)
        problem.values = bind_values(problem, args.at)
        check_memory(problem, listing.nodes, values=problem.values)
        values = _evaluate_nodes(listing.nodes, problem.values)
    if args.format == "dot":  # the graph the sweep built, every message included
        return printers.to_dot(listing, values=values)
    if args.format == "json":
        return printers.to_json(listing, values=values)
    return explain_text(problem, listing, events, values)


def explain_text(problem: Problem, listing, events: list, values) -> str:
    label = listing.label
    at = (lambda node: f"  = {_value_text(values[node.id])}") if values else (lambda node: "")
    consumers = {}
    for node in listing.nodes:
        for x in dict.fromkeys(node.inputs):
            consumers.setdefault(x.id, []).append(node)
    forward_ids = {n.id for n in toposort(problem.cost)}
    received: dict[int, list] = {}
    shown = set()  # messages whose definition was printed already
    wrt_names = ", ".join(w.name for w in problem.wrt)
    out = [
        f"build_grad of {problem.title} with respect to {wrt_names}"
        + (f", at {_at_text(problem.values)}" if values else ""),
        "",
        "The graph (as built, before rewrites); the appended nodes are marked:",
    ]
    out += ["  " + line for line in printers.to_text(listing).splitlines()]
    out += [
        "",
        "The reverse sweep visits the nodes between the inputs and the cost, last first.  At",
        "each node it sums the messages its consumers sent: that sum is the node's entry in",
        f"the grad table (its adjoint d{problem.name}/d(node)).  Then the node's bprop sends a message",
        "to each of its inputs the derivative flows into.",
    ]
    for step, (node, messages, total, sent) in enumerate(events, 1):
        out.append("")
        role = f"  ({problem.name}, the cost)" if node is problem.cost else ""
        out.append(f"step {step}: {listing.instruction(node)} : {node.type!r}{role}")
        if node is problem.cost:
            out.append(f"  seed: d{problem.name}/d{problem.name} = {label(messages[0])} = "
                       f"{listing.definition(messages[0])}")
        else:
            users = [u for u in consumers.get(node.id, []) if u.id in forward_ids]
            out.append("  consumers: " + (", ".join(f"{label(u)} ({u.op.name})" for u in users) or "none"))
            got = received.get(node.id, [])
            out.append("  messages: " + ", ".join(f"{label(m)} from {label(u)}" for u, m in got))
        if len(messages) == 1:
            out.append(f"  grad table[{label(node)}] = {label(total)}{at(total)}")
        else:
            out.append(f"  grad table[{label(node)}] = {label(total)} = {listing.definition(total)}"
                       f"   (the sum of {len(messages)} messages){at(total)}")
        if sent:
            head = f"  bprop of {node.op.name} sends "
            for k, (index, x, message) in enumerate(sent):
                new = message.id not in forward_ids and message.id not in shown and not message.is_constant
                made = f" = {listing.definition(message)}" if new else ""
                shown.add(message.id)
                prefix = head if k == 0 else " " * len(head)
                out.append(f"{prefix}{label(x)} <- {label(message)}{made}{at(message)}")
                received.setdefault(x.id, []).append((node, message))
        elif node.inputs:
            out.append(f"  bprop of {node.op.name} sends nothing on (no input leads to {wrt_names})")
    out.append("")
    results = [f"{name} = {label(o)}" + (f" = {_value_text(values[o.id])}" if values else "")
               for name, o in list(zip(listing.names, listing.outputs))[1:]]
    out.append("result: " + ", ".join(results))
    return "\n".join(out)


# -------------------------------------------------------------------- parser

_EXAMPLES = {
    "grad": """examples:
  symdiff grad "e = (a + b) * (b + 1)" --wrt a,b --at a=2,b=1
  symdiff grad "sum(exp(W @ x))" --var W:2x3 --var x:vector --wrt W
  symdiff grad "sum(sigmoid(x) * x)" --var x:f32[n] --format dot -o grad.dot
  symdiff grad "x * sin(x)" --format latex
  symdiff grad --file model.py:loss --wrt w --no-optimize""",
    "jvp": """examples:
  symdiff jvp "e = (a + b) * (b + 1)" --wrt a,b --at a=2,b=1,a_dot=1,b_dot=0
  symdiff jvp "sin(x) * x" --var x:vector --at x=[0,1],x_dot=[1,1]""",
    "hvp": """examples:
  symdiff hvp "sum(x ** 3)" --var x:3 --at x=[1,2,3],v_x=[1,0,0]
  symdiff hvp "a * a * b" --wrt a,b --mode fwd-rev""",
    "jacobian": """examples:
  symdiff jacobian "y = sin(x) * x" --var x:2 --at x=[0,1]
  symdiff jacobian "W @ x" --var W:2x3 --var x:3 --wrt x --mode rev""",
    "hessian": """examples:
  symdiff hessian "a * a * b" --wrt a,b --at a=1,b=2
  symdiff hessian "sum(x ** 3)" --var x:2 --at x=[1,2]""",
    "explain": """examples:
  symdiff explain "e = (a + b) * (b + 1)" --wrt a,b
  symdiff explain "e = (a + b) * (b + 1)" --wrt a,b --at a=2,b=1
  symdiff explain "e = (a + b) * (b + 1)" --format dot -o sweep.dot""",
}

_DESCRIPTIONS = {
    "grad": "The forward graph and the nodes sd.grad appended; with --at, each node's value and adjoint.",
    "jvp": "Forward mode: the graph with the tangent nodes sd.jvp appended (tangent inputs are NAME_dot).",
    "hvp": "Hessian-vector products H v (direction inputs are v_NAME); see --mode.",
    "jacobian": "The Jacobian of a (vector) expression as graph (sd.jacobian); shapes must be static; see --mode.",
    "hessian": "The Hessian's blocks as graph (sd.hessian / sd.jacobian of the gradient); shapes must be static.",
    "explain": "Step through build_grad in reverse order: consumers, messages, and each grad-table sum "
               "(--format dot or json: the graph with every message).",
}

_MAIN_HELP = """symdiff shows what symbol-to-symbol differentiation builds: the gradient as new nodes
of the same graph, printed as a register listing, Graphviz DOT, JSON or LaTeX.

EXPR is an expression over inputs (names not declared with --var are float64 scalars),
optionally named as `NAME = EXPR`; it is parsed, never run.  --file FILE.py:FUNCTION
instead imports FILE.py (which runs it, as Python would) and differentiates what
FUNCTION() returns.  Expressions may use + - * / ** @, comparisons,
methods such as x.sum(axis=0) and x.T, indexing with integer literals, and the
functions:
%s

shapes (--var): x:vector  W:3x4  x:f32[n]  A:nx3  M:matrix  b:f32:vector  k:i64  s:scalar
""" % textwrap.fill(", ".join(sorted(FUNCTIONS)), width=86, initial_indent="  ", subsequent_indent="  ")


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("expr", metavar="EXPR", nargs="?", help="expression, or `NAME = EXPR`")
    common.add_argument("--file", metavar="FILE.py:FUNCTION",
                        help="import FILE.py (running it, as Python would) and differentiate what FUNCTION() returns")
    common.add_argument("--wrt", metavar="A,B", help="inputs to differentiate with respect to (default: all float)")
    common.add_argument("--var", action="append", metavar="NAME:SHAPE", help="declare an input's dtype and shape")
    common.add_argument("--at", action="append", metavar="A=1,B=2",
                        help="values of the inputs (lists for arrays: x=[1,2]); prints values per node")
    common.add_argument("--format", choices=_FORMATS, default="text", help="output format (default: text)")
    common.add_argument("--no-optimize", action="store_true", help="print the graph as built, without rewrites")
    common.add_argument("-o", "--output", metavar="FILE", help="write to FILE instead of standard output")
    common.add_argument("--debug", action="store_true", help="show Python tracebacks")

    parser = argparse.ArgumentParser(
        prog="symdiff", description=_MAIN_HELP, formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n" + "\n".join(text.split("\n", 1)[1] for text in _EXAMPLES.values())
        + "\n\nexit status: 0 ok, 1 the computation failed, 2 usage error",
    )
    parser.add_argument("--version", action="version", version=f"symdiff {sd.__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    commands = {"grad": cmd_grad, "jvp": cmd_jvp, "hvp": cmd_hvp, "jacobian": cmd_jacobian, "hessian": cmd_hessian,
                "explain": cmd_explain}
    for name, run in commands.items():
        p = sub.add_parser(name, parents=[common], help=_DESCRIPTIONS[name], description=_DESCRIPTIONS[name],
                           epilog=_EXAMPLES[name], formatter_class=argparse.RawDescriptionHelpFormatter)
        if name == "hvp":
            p.add_argument("--mode", choices=("rev-rev", "fwd-rev"), default="rev-rev",
                           help="reverse-over-reverse or forward-over-reverse (default: rev-rev)")
        if name == "jacobian":
            p.add_argument("--mode", choices=("auto", "fwd", "rev"), default="auto",
                           help="forward sweeps (one per input element), reverse sweeps (one per output "
                                "element), or whichever is fewer (default: auto)")
        p.set_defaults(run=run)
    return parser


def _clean_message(message: str, args) -> str:
    """Drop 'at FILE:LINE' origins that point into this command rather than the user's file."""
    if getattr(args, "file", None):
        return message
    return re.sub(r" \((?:built )?at [^()]*:\d+\)", "", re.sub(r"built at [^()\s;]*:\d+", "built at ?", message))


def main(argv=None) -> int:
    """Run the ``symdiff`` command with ``argv`` (default: ``sys.argv[1:]``); returns the exit status.

    >>> main(["grad", "y = t * t", "--no-optimize"])
    t = input                : f64[]
    %1 = mul t t             : f64[]
    output y = %1
    %2 = constant 1.0        : f64[]
    %3 = mul %2 t            : f64[]  # bprop of y (mul) for grad of y
    %4 = add %3 %3           : f64[]  # grad of y wrt t
    output dy/dt = %4
    0
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        _emit(args.run(args), args)
        return 0
    except BrokenPipeError:  # `symdiff ... | head`: the reader left early, which is not a failure
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # Python's own advice
        return 0
    except Exception as exc:
        if args.debug:
            raise
        problem = getattr(args, "problem", None)
        if isinstance(exc, ExpressionError):
            status, message = exc.status, exc.render()
        elif isinstance(exc, UsageError):
            status, message = 2, str(exc)
        elif isinstance(exc, ShapeError) and getattr(exc, "node", None) is not None and problem and problem.text:
            status, message = 1, _runtime_error_in_expression(exc, problem)
        elif isinstance(exc, MemoryError):
            shape, dtype = getattr(exc, "shape", None), getattr(exc, "dtype", None)  # NumPy's failed allocation
            wanted = (f" (an array of shape {fmt_shape(shape)} and dtype {dtype} needs "
                      f"{_bytes(int(np.prod(shape, dtype=object)) * np.dtype(dtype).itemsize)})"
                      if shape is not None and dtype is not None else "")
            status, message = 1, (f"out of memory{wanted}: the sizes given with --var (or the values with --at) "
                                  "need more memory than is free; try smaller sizes (--debug shows where)")
        elif isinstance(exc, (SymdiffError, ValueError, TypeError, IndexError, ArithmeticError, OSError)):
            status, message = 1, str(exc)
        else:
            status, message = 1, f"internal error: {type(exc).__name__}: {exc} (run with --debug for the traceback)"
        sys.stderr.write(f"symdiff: error: {_clean_message(message, args)}\n")
        return status


def _runtime_error_in_expression(exc: ShapeError, problem: Problem) -> str:
    """A run-time failure told in the user's terms (see :func:`_in_expression`)."""
    return _in_expression(exc.node, problem, f"{exc.node.op.name}: {exc.reason}; input shapes {exc.shapes}")


def _in_expression(node: Expr, problem: Problem, head: str, tail: str = "") -> str:
    """``head + tail``, a message about ``node``, with the part of the user's expression
    that made it (or, for a node differentiation appended, the part it differentiates,
    said after ``head``) and a caret under it, instead of a file and line inside the
    command."""
    seen, stack = set(), [node]
    span = None
    while stack and span is None:  # breadth first: the nearest node the expression itself made
        current = stack.pop(0)
        span = problem.spans.get(current.id)
        for x in current.inputs:
            if x.id not in seen:
                seen.add(x.id)
                stack.append(x)
    if span is None or not problem.text or node.is_symbol:
        return head + tail
    appended = " (in a derivative of it)" if node.id not in problem.spans else ""
    start, end = span
    return ExpressionError(f"{head}{appended}{tail}", problem.text, start, end, 1).render()


if __name__ == "__main__":
    sys.exit(main())
