"""Printers: the graph as a register listing, Graphviz DOT, or JSON (and back).

All printers share one :class:`Listing`, which fixes what is printed and how it is
named: the nodes each output needs, output by output, so the nodes that
differentiation appended come after the forward graph they differentiate, each
group in a topological order that depends only on the graph's structure.  Nodes are numbered by their position in
that listing (``%7`` is the eighth node printed), never by their global ids, which
depend on everything else built in the process; so the same program always
prints the same text and printed graphs can be golden-file tested and diffed.

Nodes that differentiation appended carry a note saying what added them
(``grad of e wrt b``, ``bprop of %5 (mul) for grad of e``).  The core writes those
notes with global ids; the listing translates them to its own numbering and to
the outputs' names.

By default the printers first run :func:`symdiff.rewrite.optimize`, so they show
the graph a backend would run; ``optimize=False`` shows the graph as built.
"""

from __future__ import annotations

import json
import re

import numpy as np

from .errors import SymdiffError
from .ir import OPS, ConstValue, Expr, creation_note, make_node
from .types import SHORT_DTYPE, TensorType, check_shape

__all__ = ["Listing", "to_text", "to_dot", "to_json", "from_json", "GraphFormatError"]

JSON_FORMAT = "symdiff-graph"
JSON_VERSION = 1

_NOTE_REF = re.compile(r"%(\d+)")


class GraphFormatError(SymdiffError, ValueError):
    """A JSON graph that does not follow the documented schema."""


# ------------------------------------------------------------------ the listing


def named_outputs(outputs) -> tuple[list[str], list[Expr]]:
    """Names and expressions of ``outputs``: one Expr, a list, or a ``{name: Expr}`` dict.

    Unnamed outputs are called ``out`` (just one) or ``out0``, ``out1``...

    >>> import symdiff as sd
    >>> a = sd.scalar("a")
    >>> named_outputs([a, a * 2])[0]
    ['out0', 'out1']
    """
    if isinstance(outputs, Expr):
        return ["out"], [outputs]
    if isinstance(outputs, dict):
        names, exprs = [str(k) for k in outputs], list(outputs.values())
    else:
        exprs = list(outputs)
        names = [f"out{i}" for i in range(len(exprs))]
    for name, x in zip(names, exprs):
        if not isinstance(x, Expr):
            raise TypeError(f"output {name!r}: expected a symdiff expression, got {type(x).__name__} {x!r}")
    return names, exprs


def optimized(exprs: list, optimize: bool) -> list:
    """``exprs`` after the rewrite passes (all at once, so they share work), if asked."""
    if not optimize or not exprs:
        return list(exprs)
    from .rewrite import optimize as run_passes  # lazy: printing without rewrites stays cheap

    return list(run_passes(list(exprs)))


class Listing:
    """What a printer shows: nodes in print order, numbered by position, with names.

    ``steps`` interleaves ``("node", node)`` and ``("output", name, node)``: an
    output is announced right after the last node it needs.

    >>> import symdiff as sd
    >>> a, b = sd.scalars("a b")
    >>> lst = Listing({"e": a * b}, optimize=False)
    >>> [lst.label(n) for n in lst.nodes]
    ['a', 'b', '%2']
    """

    def __init__(self, outputs, optimize: bool = True, bodies: dict = None):
        self.bodies = {} if bodies is None else bodies  # loop bodies by first appearance: B0, B1... (issue 12)
        self.printed_bodies: set = set()
        self.names, exprs = named_outputs(outputs)
        self.outputs = optimized(exprs, optimize)
        self.originals = exprs  # before rewrites: notes may refer to their nodes
        self.nodes: list[Expr] = []
        self.position: dict[int, int] = {}  # global id -> place in the listing
        self.steps: list[tuple] = []
        self.output_name: dict[int, str] = {}
        for name, out in zip(self.names, self.outputs):
            new = self._new_ancestors(out)
            for node in new:
                self.position[node.id] = len(self.nodes)
                self.nodes.append(node)
                self.steps.append(("node", node))
            self.steps.append(("output", name, out))
            # Notes call a node by an output's name only where the node first appears
            # as that output: b + 1 computed for e and reused as de/da stays %4 there.
            if new and new[-1] is out:
                self.output_name.setdefault(out.id, name)
        for name, original in zip(self.names, self.originals):
            if original.id not in self.position:  # replaced by a rewrite: only its name is left
                self.output_name.setdefault(original.id, name)

    def extend(self, nodes):
        """Also list ``nodes`` (and what they need), after everything listed so far, unnamed."""
        for out in nodes:
            for node in self._new_ancestors(out):
                self.position[node.id] = len(self.nodes)
                self.nodes.append(node)
                self.steps.append(("node", node))

    def _new_ancestors(self, out: Expr) -> list[Expr]:
        """The nodes ``out`` needs that are not listed yet, inputs first.

        The order is a depth-first post-order over each node's inputs in order:
        it depends only on the graph's structure, never on global ids, which
        differ with what the process built before (a shared constant may be old).
        """
        if out.id in self.position:
            return []
        order = []
        seen = {out.id}
        stack = [(out, iter(out.inputs))]
        while stack:
            node, pending = stack[-1]
            for x in pending:
                if x.id not in seen and x.id not in self.position:
                    seen.add(x.id)
                    stack.append((x, iter(x.inputs)))
                    break
            else:
                stack.pop()
                order.append(node)
        return order

    # --- names
    def label(self, node: Expr) -> str:
        """A symbol's name, else ``%k`` with k the node's place in the listing."""
        if node.is_symbol:
            return node.name
        return f"%{self.position[node.id]}"

    def note(self, node: Expr, use_names: bool = True) -> str:
        """The node's creation note in this listing's terms ('' if none).

        Global ids in the note become listing labels, or output names if
        ``use_names``; a node the listing does not show (a rewrite replaced it)
        becomes "a node not shown".
        """
        if not node.note or node.op.kind == "leaf":
            # A constant is one node for the whole process: the note of whichever pass
            # made it first would be misleading in another graph, so leaves show none.
            return ""

        def rename(match):
            raw_id = int(match.group(1))
            if use_names and raw_id in self.output_name:
                return self.output_name[raw_id]
            # a node this listing does not show (a rewrite replaced it, or, in an HVP, the
            # inner product the second sweep starts from): say so rather than print %?
            return f"%{self.position[raw_id]}" if raw_id in self.position else "a node not shown"

        return _NOTE_REF.sub(rename, node.note)

    def is_appended(self, node: Expr) -> bool:
        """True for nodes that differentiation (or another pass leaving a note) added."""
        return bool(node.note)

    # --- spelling
    def definition(self, node: Expr) -> str:
        """``input``, ``constant 1.0`` or ``mul %3 %5`` (with ``op[attr=...]`` when it has attributes)."""
        if node.is_symbol:
            return "input"
        if node.is_constant:
            return f"constant {format_array(node.params['value'].array)}"
        attrs = ", ".join(f"{k}={self.body_label(v) if _is_body(v) else _attr_text(v)}"
                          for k, v in node.attrs if v is not False)
        head = f"{node.op.name}[{attrs}]" if attrs else node.op.name
        return " ".join([head] + [self.label(x) for x in node.inputs])

    def instruction(self, node: Expr) -> str:
        """``%7 = mul %3 %5`` or ``a = input``."""
        return f"{self.label(node)} = {self.definition(node)}"

    # --- loop bodies (issue 12): printed once, under the first loop node that has them
    def body_label(self, body) -> str:
        return f"B{self.bodies.setdefault(body, len(self.bodies))}"

    def new_body(self, node: Expr):
        """The body of a loop ``node`` if this is the first node printed with it, else None."""
        for _, value in node.attrs:
            if _is_body(value) and value not in self.printed_bodies:
                self.body_label(value)
                self.printed_bodies.add(value)
                return value
        return None

    def body_listing(self, body) -> "Listing":
        """The body's own listing (its placeholders included), sharing the body names."""
        named = {f"carry{i}": o for i, o in enumerate(body.carry_out)}
        named.update({f"y{j}": o for j, o in enumerate(body.ys)})
        if body.has_cond:
            named["cond"] = body.cond
        inner = Listing(named, optimize=False, bodies=self.bodies)
        inner.printed_bodies = self.printed_bodies
        inner.extend(body.placeholders)
        return inner


def _is_body(value) -> bool:
    from .ops.loops import Body

    return isinstance(value, Body)


def _body_header(listing: Listing, body) -> str:
    slots = [("t", [body.t]), ("carries", body.carries), ("xs slices", body.slices), ("consts", body.consts)]
    text = "; ".join(f"{what} {' '.join(p.name for p in ps)}" for what, ps in slots if ps)
    return f"body {listing.body_label(body)} ({text}):"


def _attr_text(value) -> str:
    return value if isinstance(value, str) else repr(value)  # dtype=float32, axes=(0,)


def format_array(value, precision: int = None) -> str:
    """A short, stable spelling of a value: ``1.0``, ``3``, ``[1. 2. 3.]``.

    >>> format_array(np.float32(0.1)), format_array(np.arange(3.0))
    ('0.1', '[0. 1. 2.]')
    """
    value = np.asarray(value)
    if value.ndim == 0:
        item = value[()]
        if precision is not None and value.dtype.kind == "f":
            return f"{float(item):.{precision}g}"
        return str(item.item()) if value.dtype != np.float32 else str(item)
    digits = 8 if precision is None else min(precision, 4)  # digits after the point: arrays stay readable
    with stable_printoptions(precision=digits, threshold=6, edgeitems=2):
        return np.array2string(value, max_line_width=10**6).replace("\n", "")


CELL_WIDTH = 28  # array cells of value tables longer than this print fewer elements


def format_value(value, exact: bool = False) -> str:
    """A value for a table or summary: 6 significant digits, ``-0`` as ``0``, and long
    arrays kept to about CELL_WIDTH characters.

    The one rule for rounding noise, for computed values (not ``exact``): within one
    float array, an entry smaller than the dtype's machine epsilon times the largest
    finite magnitude in THAT array prints as 0 (where it came out of a sum with the
    large entries it is below their rounding: ``[1, 1.85e-17]`` shows as ``[1. 0.]``).
    Nothing else is ever printed as 0: a number alone (``1e-20``, ``sin(pi)`` =
    1.2e-16) prints as it is, whatever other rows or columns of a table hold, an array
    of only tiny entries keeps them, and an ``exact`` value (what the user gave: inputs
    and constants; and the results a summary states) prints every entry.

    >>> format_value(-0.0), format_value(1e-20), format_value(np.array([1.85e-17, 2.5, -0.0]))
    ('0', '1e-20', '[0.  2.5 0. ]')
    >>> format_value(np.array([1e-20, 0.0, 1.85e-17]))
    '[1.00e-20 0.00e+00 1.85e-17]'
    >>> format_value(np.array([1e20, 1.0]), exact=True)
    '[1.e+20 1.e+00]'
    """
    value = np.asarray(value)
    if value.dtype.kind == "f":
        if value.ndim and not exact:
            finite = np.abs(value[np.isfinite(value)])
            scale = float(finite.max()) if finite.size else 0.0
            with np.errstate(all="ignore"):
                value = np.where(np.abs(value) < np.finfo(value.dtype).eps * scale, 0.0, value).astype(value.dtype)
        value = value + value.dtype.type(0)  # + 0.0 turns -0.0 into 0.0
    text = format_array(value, precision=6)
    if value.ndim and len(text) > CELL_WIDTH:
        with stable_printoptions(precision=4, threshold=4, edgeitems=1):
            text = np.array2string(value, max_line_width=10**6).replace("\n", "")
    return text


def stable_printoptions(**options):
    """NumPy's print options with every setting fixed, so output never depends on
    what other code set globally (golden files compare it character by character)."""
    settings = {"precision": 8, "threshold": 1000, "edgeitems": 3, "linewidth": 75, "suppress": False,
                "nanstr": "nan", "infstr": "inf", "sign": "-", "floatmode": "maxprec", "legacy": False}
    settings.update(options)
    return np.printoptions(**settings)


# ------------------------------------------------------------------------ text

_INSTRUCTION_WIDTH = 24


def to_text(outputs, optimize: bool = True) -> str:
    """A stable register listing: one line per node, inputs first, outputs named.

    Each line is ``%k = op inputs : type``; nodes that differentiation appended
    end with a ``# note`` saying what added them, and ``output NAME = %k`` lines
    name the results.  ``outputs`` is one Expr, a list, or a ``{name: Expr}`` dict.

    >>> import symdiff as sd
    >>> a, b = sd.scalars("a b")
    >>> e = (a + b) * (b + 1)
    >>> de_da, de_db = sd.grad(e, [a, b])
    >>> print(sd.to_text({"e": e, "de/db": de_db}, optimize=False))
    a = input                : f64[]
    b = input                : f64[]
    %2 = add a b             : f64[]
    %3 = constant 1.0        : f64[]
    %4 = add b %3            : f64[]
    %5 = mul %2 %4           : f64[]
    output e = %5
    %6 = mul %3 %2           : f64[]  # bprop of e (mul) for grad of e
    %7 = mul %3 %4           : f64[]  # bprop of e (mul) for grad of e
    %8 = add %6 %7           : f64[]  # grad of e wrt b
    output de/db = %8
    """
    listing = outputs if isinstance(outputs, Listing) else Listing(outputs, optimize)
    lines = []
    for step in listing.steps:
        if step[0] == "output":
            lines.append(f"output {step[1]} = {listing.label(step[2])}")
            continue
        node = step[1]
        line = f"{listing.instruction(node):<{_INSTRUCTION_WIDTH}} : {node.type!r}"
        note = listing.note(node)
        if note:
            line = f"{line:<{_INSTRUCTION_WIDTH + 9}} # {note}"
        lines.append(line)
        body = listing.new_body(node)
        if body is not None:
            lines.append("    " + _body_header(listing, body))
            lines.extend("    " + text for text in to_text(listing.body_listing(body)).split("\n"))
    return "\n".join(lines)


def to_table(listing: Listing, columns: list) -> str:
    """The listing as a table with extra columns, e.g. each node's value and adjoint.

    ``columns`` is a list of ``(header, {node id: value})``; a node missing from
    a column's dict shows blank there.

    >>> import symdiff as sd
    >>> a = sd.scalar("a")
    >>> lst = Listing({"y": a * a}, optimize=False)
    >>> print(to_table(lst, [("value", {n.id: v for n, v in zip(lst.nodes, [3.0, 9.0])})]))
    node  definition  type   value
    a     input       f64[]  3
    %1    mul a a     f64[]  9
    output y = %1
    """
    header = ["node", "definition", "type"] + [h for h, _ in columns] + ["note"]
    rows = []
    for step in listing.steps:
        if step[0] == "output":
            rows.append(f"output {step[1]} = {listing.label(step[2])}")
            continue
        node = step[1]
        cells = [listing.label(node), listing.definition(node), repr(node.type)]
        given = node.is_symbol or node.is_constant  # its value (the first column) is what the user gave
        cells += [format_value(values[node.id], given and k == 0) if node.id in values else ""
                  for k, (_, values) in enumerate(columns)]
        cells.append(listing.note(node))
        rows.append(cells)
    table_rows = [r for r in rows if isinstance(r, list)]
    if not any(r[-1] for r in table_rows):  # no notes: drop the column
        header.pop()
        rows = [r[:-1] if isinstance(r, list) else r for r in rows]
        table_rows = [r for r in rows if isinstance(r, list)]
    widths = [max(len(str(r[k])) for r in table_rows + [header]) for k in range(len(header))]

    def line(cells):
        return "  ".join(str(c).ljust(w) for c, w in zip(cells, widths)).rstrip()

    return "\n".join([line(header)] + [line(r) if isinstance(r, list) else r for r in rows])


# ------------------------------------------------------------------------- dot


def _dot_label(lines: list) -> str:
    """A quoted DOT label whose lines are joined by DOT's own newline escape."""
    escaped = [line.replace("\\", "\\\\").replace('"', '\\"') for line in lines]
    return '"' + "\\n".join(escaped) + '"'


# Ops whose input order does not matter get unlabelled edges.
_COMMUTATIVE = {"add", "mul", "maximum", "minimum", "equal", "not_equal", "logical_and", "logical_or"}

_DOT_STYLE = {
    "input": 'shape=ellipse, fillcolor="#fff3c4"',
    "constant": "shape=plaintext",
    "forward": "fillcolor=white",
    "appended": 'fillcolor="#d7e8fb", color="#2b6cb0"',
}


def to_dot(outputs, optimize: bool = True, values: dict = None) -> str:
    """Graphviz DOT: inputs as yellow ellipses, forward nodes as white boxes, nodes
    that differentiation appended as blue boxes labelled with their note, and the
    outputs as plain names.  ``values`` ({node id: value}, optional) adds each
    node's value to its label.  Render with ``dot -Tsvg``.

    >>> import symdiff as sd
    >>> a = sd.scalar("a")
    >>> print(sd.to_dot({"y": sd.sin(a)}, optimize=False))
    digraph symdiff {
      node [fontname="monospace", fontsize=10, shape=box, style="rounded,filled"];
      edge [arrowsize=0.6];
      n0 [label="a\\nf64[]", shape=ellipse, fillcolor="#fff3c4"];
      n1 [label="%1 = sin a\\nf64[]", fillcolor=white];
      n0 -> n1;
      out0 [label="y", shape=plaintext, style=""];
      n1 -> out0 [style=dashed];
    }
    """
    listing = outputs if isinstance(outputs, Listing) else Listing(outputs, optimize)
    lines = [
        "digraph symdiff {",
        '  node [fontname="monospace", fontsize=10, shape=box, style="rounded,filled"];',
        "  edge [arrowsize=0.6];",
    ]
    for node in listing.nodes:
        key = f"n{listing.position[node.id]}"
        if node.is_symbol:
            kind, label = "input", [node.name, repr(node.type)]
        else:
            kind = "constant" if node.is_constant else "appended" if listing.is_appended(node) else "forward"
            label = [listing.instruction(node), repr(node.type)]
            if kind == "appended":
                label.append(listing.note(node))
        if values and node.id in values:
            label.append("= " + format_array(values[node.id], precision=6))
        lines.append(f"  {key} [label={_dot_label(label)}, {_DOT_STYLE[kind]}];")
        ordered = len(node.inputs) > 1 and node.op.name not in _COMMUTATIVE
        for index, x in enumerate(node.inputs):
            edge = f" [label={index}]" if ordered else ""
            lines.append(f"  n{listing.position[x.id]} -> {key}{edge};")
        body = listing.new_body(node)
        if body is not None:
            lines.extend(_dot_body(listing, body, key))
    for k, (name, out) in enumerate(zip(listing.names, listing.outputs)):
        lines.append(f'  out{k} [label={_dot_label([name])}, shape=plaintext, style=""];')
        lines.append(f"  n{listing.position[out.id]} -> out{k} [style=dashed];")
    lines.append("}")
    return "\n".join(lines)


def _dot_body(listing: Listing, body, loop_key: str) -> list:
    """A loop body as a cluster of its own nodes (keys prefixed by the body's name),
    with dotted edges from its results to the loop node."""
    name = listing.body_label(body)
    inner = listing.body_listing(body)
    lines = [f"  subgraph cluster_{name} {{", f"    label={_dot_label([_body_header(listing, body)])};",
             '    style="rounded,dashed";']
    for node in inner.nodes:
        key = f"{name}_n{inner.position[node.id]}"
        label = [node.name if node.is_symbol else inner.instruction(node), repr(node.type)]
        kind = "input" if node.is_symbol else "constant" if node.is_constant else "forward"
        lines.append(f"    {key} [label={_dot_label(label)}, {_DOT_STYLE[kind]}];")
        for x in node.inputs:
            lines.append(f"    {name}_n{inner.position[x.id]} -> {key};")
        nested = inner.new_body(node)
        if nested is not None:
            lines.extend("  " + line for line in _dot_body(inner, nested, key))
    lines.append("  }")
    for out_name, out in zip(inner.names, inner.outputs):
        lines.append(f'  {name}_n{inner.position[out.id]} -> {loop_key} [style=dotted, label="{out_name}"];')
    return lines


# ------------------------------------------------------------------------ json


def _encode_attr(value):
    """Attribute values as JSON: tuples become lists (decoded back to tuples); a float that
    JSON cannot spell (inf, nan) and NumPy scalars become tagged objects."""
    if isinstance(value, tuple):
        return [_encode_attr(v) for v in value]
    if isinstance(value, float) and not np.isfinite(value):
        return {"float": repr(value)}
    if isinstance(value, np.generic) and value.dtype.kind in "biuf":
        return {"numpy": value.dtype.name, "value": _encode_attr(value.item())}
    if isinstance(value, (bool, int, float, str)) or value is None:
        return value
    raise GraphFormatError(f"cannot write attribute value {value!r} of type {type(value).__name__} as JSON")


def _decode_attr(value):
    if isinstance(value, list):
        return tuple(_decode_attr(v) for v in value)
    if isinstance(value, dict) and set(value) == {"float"} and value["float"] in ("inf", "-inf", "nan"):
        return float(value["float"])
    if isinstance(value, dict) and set(value) == {"numpy", "value"}:
        return np.dtype(value["numpy"]).type(_decode_attr(value["value"]))
    return value


def _encode_number(x):
    if isinstance(x, float) and not np.isfinite(x):
        return "nan" if np.isnan(x) else ("inf" if x > 0 else "-inf")
    return x


def _encode_value(array: np.ndarray):
    data = array.tolist()
    if array.dtype.kind != "f" or np.all(np.isfinite(array)):
        return data
    if array.ndim == 0:
        return _encode_number(data)
    flat = [_encode_number(v) for v in array.ravel().tolist()]
    return np.array(flat, dtype=object).reshape(array.shape).tolist()


def _decode_value(data, dtype: str, shape: tuple) -> np.ndarray:
    special = {"nan": np.nan, "inf": np.inf, "-inf": -np.inf}
    array = np.array(data, dtype=object)
    flat = [special.get(v, v) if isinstance(v, str) else v for v in array.ravel().tolist()]
    try:
        return np.array(flat, dtype=dtype).reshape(shape)
    except (TypeError, ValueError) as exc:
        raise GraphFormatError(f"constant value does not fit {dtype}{list(shape)}: {exc}") from None


def to_json(outputs, optimize: bool = True, values: dict = None) -> str:
    """The graph as JSON in the ``symdiff-graph`` schema (version 1), read back by :func:`from_json`.

    The document is an object ``{"format": "symdiff-graph", "version": 1,
    "nodes": [...], "outputs": [...]}``.  Each node is
    ``{"id", "op", "dtype", "shape", "inputs"}`` plus, when present, ``"name"``
    (symbols), ``"value"`` (constants: nested lists; non-finite floats as the
    strings ``"nan"``, ``"inf"``, ``"-inf"``), ``"attrs"`` (the op's static
    attributes; tuples as lists) and ``"note"`` (what appended the node, with
    ``%k`` meaning the node whose id is k).  ``id`` is the node's position in the
    listing, ``shape`` uses ``null`` for sizes known only at run time, and every
    input id is smaller than the node's id.  Each output is ``{"name", "node"}``.
    With ``values`` ({node id: value}), each node also gets ``"at"``: its value
    at the given inputs, encoded like a constant's (the reader ignores it).
    The writer puts one node per line so documents diff well.

    >>> import symdiff as sd
    >>> a = sd.scalar("a")
    >>> doc = sd.to_json({"y": sd.exp(a)}, optimize=False)
    >>> sd.from_json(doc)["y"] is sd.exp(a)
    True
    """
    listing = outputs if isinstance(outputs, Listing) else Listing(outputs, optimize)
    bodies: dict = {}  # loop bodies (issue 12) -> (k, JSON), inner ones first: {"body": k} in a loop's attrs
    records = _json_records(listing, values, bodies)
    named = zip(listing.names, listing.outputs)
    outputs_json = [{"name": name, "node": listing.position[out.id]} for name, out in named]
    return "\n".join([
        "{",
        f'"format": "{JSON_FORMAT}",',
        f'"version": {JSON_VERSION},',
        '"nodes": [',
        ",\n".join(records),
        "],",
        *([f'"bodies": [{", ".join(text for _, text in bodies.values())}],'] if bodies else []),
        f'"outputs": {json.dumps(outputs_json)}',
        "}",
    ])


def _json_body(listing: Listing, body, bodies: dict) -> dict:
    """A loop body's reference, writing the body into ``bodies`` the first time."""
    if body in bodies:
        return {"body": bodies[body][0]}
    inner = listing.body_listing(body)
    records = _json_records(inner, None, bodies)
    counts = {k: getattr(body, k) for k in ("n_carry", "n_xs", "n_consts", "n_ys", "has_cond", "level")}
    document = dict(counts, placeholders=[inner.position[p.id] for p in body.placeholders],
                    outputs=[inner.position[o.id] for o in body.outputs])
    bodies[body] = (len(bodies), json.dumps(document)[:-1] + ', "nodes": [\n' + ",\n".join(records) + "]}")
    return {"body": bodies[body][0]}


def _json_records(listing: Listing, values, bodies: dict) -> list:
    records = []
    for node in listing.nodes:
        record = {
            "id": listing.position[node.id],
            "op": node.op.name,
            "dtype": node.type.dtype,
            "shape": list(node.type.shape),
            "inputs": [listing.position[x.id] for x in node.inputs],
        }
        if node.is_symbol:
            record["name"] = node.name
        elif node.is_constant:
            record["value"] = _encode_value(node.params["value"].array)
        elif node.attrs:
            record["attrs"] = {k: _json_body(listing, v, bodies) if _is_body(v) else _encode_attr(v)
                               for k, v in node.attrs}
        note = listing.note(node, use_names=False)
        if note:
            record["note"] = note
        if values and node.id in values:
            record["at"] = _encode_value(np.asarray(values[node.id]))
        records.append(json.dumps(record, allow_nan=False))
    return records


def from_json(document) -> dict:
    """Rebuild the graph of a ``symdiff-graph`` JSON document; ``{output name: Expr}``.

    ``document`` is the JSON text or the parsed object.  Nodes are rebuilt
    through the ops' own shape rules and checked against the recorded dtype and
    shape; a node identical to one that exists already is that node
    (hash-consing), so reading back what :func:`to_json` wrote gives the very
    same expressions.

    >>> import symdiff as sd
    >>> x = sd.vector("x", 3)
    >>> out = sd.from_json(sd.to_json({"s": sd.sum(x * x)}, optimize=False))
    >>> sd.evaluate(out["s"], {"x": [1.0, 2.0, 3.0]})
    np.float64(14.0)
    """
    if isinstance(document, (str, bytes)):
        try:
            document = json.loads(document)
        except json.JSONDecodeError as exc:
            raise GraphFormatError(f"not a JSON document: {exc}") from None
    if not isinstance(document, dict) or document.get("format") != JSON_FORMAT:
        raise GraphFormatError(f'not a symdiff graph: expected an object with "format": "{JSON_FORMAT}"')
    if document.get("version") != JSON_VERSION:
        raise GraphFormatError(f"unsupported symdiff-graph version {document.get('version')!r} (this reader: 1)")
    built: dict = {"bodies": _read_bodies(document.get("bodies", []))}
    if not isinstance(document.get("nodes", []), list) or not isinstance(document.get("outputs", []), list):
        raise GraphFormatError('"nodes" and "outputs" must be lists')
    for record in document.get("nodes", []):
        try:
            built[record["id"]] = _build_record(record, built)
        except GraphFormatError:
            raise
        except (KeyError, TypeError, ValueError, OverflowError) as exc:
            where = f"node {record.get('id')!r}" if isinstance(record, dict) else f"entry {record!r}"
            raise GraphFormatError(f"{where}: {type(exc).__name__}: {exc}") from None
    result = {}
    for entry in document.get("outputs", []):
        if entry.get("node") not in built:
            raise GraphFormatError(f"output {entry.get('name')!r} refers to unknown node {entry.get('node')!r}")
        result[entry["name"]] = built[entry["node"]]
    return result


def _read_bodies(entries) -> list:
    """Loop bodies (issue 12), each a graph of its own; later ones may use earlier ones."""
    from .ops.loops import Body

    bodies = []
    for k, entry in enumerate(entries):
        try:
            built: dict = {"bodies": bodies}
            for record in entry["nodes"]:
                built[record["id"]] = _build_record(record, built)
            bodies.append(Body([built[i] for i in entry["placeholders"]], [built[i] for i in entry["outputs"]],
                               entry["n_carry"], entry["n_xs"], entry["n_consts"], entry["n_ys"],
                               entry["has_cond"], entry["level"]))
        except GraphFormatError as exc:
            raise GraphFormatError(f"loop body {k}: {exc}") from None
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            raise GraphFormatError(f"loop body {k}: {type(exc).__name__}: {exc}") from None
    return bodies


def _build_record(record: dict, built: dict) -> Expr:
    node_id, op_name = record["id"], record["op"]
    if not isinstance(node_id, int) or isinstance(node_id, bool):
        raise GraphFormatError(f"node ids must be ints, got {node_id!r}")
    if op_name not in OPS:
        raise GraphFormatError(f"node {node_id}: unknown op {op_name!r}; if it is a custom op, it is not registered "
                               f"in this process: run the sd.custom_op (or custom_vjp) definition first")
    if OPS[op_name].kind == "leaf" and record.get("inputs"):
        raise GraphFormatError(f"node {node_id}: a {op_name} has no inputs")
    inputs = []
    for ref in record.get("inputs", []):
        if ref not in built or ref >= node_id:
            raise GraphFormatError(f"node {node_id}: input {ref!r} is not an earlier node")
        inputs.append(built[ref])
    dtype, shape = record["dtype"], check_shape(tuple(record["shape"]))
    if dtype not in SHORT_DTYPE:
        raise GraphFormatError(f"node {node_id}: unknown dtype {dtype!r}")
    if op_name == "symbol":
        attrs = {"name": record["name"], "type": TensorType(dtype, shape)}
    elif op_name == "constant":
        attrs = {"value": ConstValue(_decode_value(record["value"], dtype, shape))}
    else:
        attrs = {k: built["bodies"][v["body"]] if isinstance(v, dict) and "body" in v else _decode_attr(v)
                 for k, v in record.get("attrs", {}).items()}
    note = record.get("note")
    if note:  # the note's %k are listing ids; the graph's notes use global ids
        note = _NOTE_REF.sub(lambda m: f"%{built[int(m.group(1))].id}" if int(m.group(1)) in built else "%?", note)
    with creation_note(note or None):
        node = make_node(OPS[op_name], inputs, attrs)
    if node.type != TensorType(dtype, shape):
        raise GraphFormatError(f"node {node_id}: {op_name} gives {node.type!r}, the document says "
                               f"{TensorType(dtype, shape)!r}")
    return node
