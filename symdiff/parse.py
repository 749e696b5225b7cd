"""Safe parsing of the command line's expressions, shapes and values.

An expression such as ``"sum(exp(W @ x) * 2)"`` is parsed with :mod:`ast` and
then walked against a whitelist: numbers, names, arithmetic, comparisons, calls
to symdiff's functions (also spelled ``np.exp`` or ``sd.exp``), a few methods
(``x.sum(axis=0)``, ``x.T``) and subscripts with static ints and slices.  Nothing
is ever passed to ``eval``, so user text cannot run code.  Text is limited in
length and bracket depth before :func:`ast.parse` sees it (the parser itself
recurses), and the walk over the tree uses an explicit stack.

Errors are :class:`ExpressionError`, which knows where in the text the fault
is and prints the expression with a caret under it.
"""

from __future__ import annotations

import ast
import difflib
import inspect
import math
import re
import unicodedata

import numpy as np

from . import frontend as F
from . import ir
from .errors import SymdiffError
from .ir import Expr
from .types import DTYPES

__all__ = ["ExpressionError", "parse_expression", "parse_var", "parse_values", "check_name", "FUNCTIONS"]

MAX_LENGTH = 2000
"""Longest expression accepted; longer programs belong in a file (``FILE.py:FUNCTION``)."""
MAX_BRACKET_DEPTH = 64
MAX_UNARY_RUN = 64


class ExpressionError(SymdiffError, ValueError):
    """An expression that cannot be parsed (``status`` 2) or built (``status`` 1).

    ``str()`` gives the message; :meth:`render` adds the expression's line with
    a caret under the fault.
    """

    def __init__(self, message: str, text: str = "", start: int = None, end: int = None, status: int = 2,
                 line: int = 1):
        super().__init__(message)
        self.message, self.text, self.start, self.end = message, text, start, end
        self.status, self.line = status, line

    def render(self, width: int = 100) -> str:
        """The message, the expression's line and a caret under the fault (a window
        of ``width`` characters around it when the line is longer)."""
        if self.start is None or not self.text:
            return self.message
        source = self.text.splitlines()[self.line - 1] if self.text.splitlines() else ""
        start = self.start
        end = max(self.end if self.end is not None else start + 1, start + 1)
        end = min(end, max(len(source), start + 1))
        if len(source) > width:
            left = max(0, min(start - width // 3, len(source) - width))
            window = source[left:left + width]
            prefix = "..." if left > 0 else ""
            suffix = "..." if left + width < len(source) else ""
            source = prefix + window + suffix
            start, end = start - left + len(prefix), min(end - left, width) + len(prefix)
            end = max(end, start + 1)
        return f"{self.message}\n    {source}\n    {' ' * start}{'^' * (end - start)}"


# ------------------------------------------------------------------- the whitelist

_FUNCTION_NAMES = (
    "abs", "exp", "expm1", "log", "log1p", "sqrt", "sin", "cos", "tan", "tanh", "sigmoid", "softplus", "relu",
    "square", "sign", "negative", "add", "subtract", "multiply", "divide", "power", "maximum", "minimum", "where",
    "clip", "sum", "mean", "max", "min", "prod", "logsumexp", "softmax", "log_softmax", "dot", "matmul", "transpose",
    "reshape", "concatenate", "stack", "stop_gradient", "astype", "expand_dims", "squeeze", "broadcast_to",
    "less", "less_equal", "greater", "greater_equal", "equal", "not_equal", "logical_and", "logical_or",
    "logical_not",
)
FUNCTIONS = {name: getattr(F, name) for name in _FUNCTION_NAMES}
"""The functions an expression may call, by name (symdiff's NumPy-named functions)."""

_SIGNATURES = {name: inspect.signature(fn) for name, fn in FUNCTIONS.items()}
_METHODS = ("sum", "mean", "max", "min", "prod", "reshape", "transpose", "astype", "dot")
_MODULES = ("np", "numpy", "sd", "symdiff")
_CONSTANTS = {"pi": math.pi, "inf": math.inf}

_BINARY = {ast.Add: F.add, ast.Sub: F.subtract, ast.Mult: F.multiply, ast.Div: F.divide, ast.Pow: F.power,
           ast.MatMult: F.matmul}
_COMPARE = {ast.Lt: F.less, ast.LtE: F.less_equal, ast.Gt: F.greater, ast.GtE: F.greater_equal, ast.Eq: F.equal,
            ast.NotEq: F.not_equal}
_UNSUPPORTED_HINT = {
    ast.FloorDiv: "floor division (//) is not supported",
    ast.Mod: "the remainder (%) is not supported",
    ast.IfExp: "a conditional expression is not supported; use where(condition, x, y)",
    ast.BoolOp: "'and'/'or' are not supported; use logical_and(x, y) / logical_or(x, y)",
    ast.Lambda: "lambda is not allowed",
    ast.Await: "await is not allowed",
}


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


# --------------------------------------------------------------------- the parser


def _precheck(text: str):
    """Reject text the parser could choke on (it recurses on nesting) with a clear message."""
    if "\0" in text:
        at = text.index("\0")
        raise ExpressionError("the expression contains a NUL byte", text.replace("\0", " "), at, at + 1)
    if len(text) > MAX_LENGTH:
        raise ExpressionError(
            f"the expression is {len(text)} characters long; the limit is {MAX_LENGTH} "
            "(write longer programs as a Python function and pass --file FILE.py:FUNCTION)"
        )
    depth = 0
    for i, ch in enumerate(text):
        if ch in "([{":
            depth += 1
            if depth > MAX_BRACKET_DEPTH:
                raise ExpressionError(f"brackets nested more than {MAX_BRACKET_DEPTH} deep", text, i, i + 1)
        elif ch in ")]}":
            depth -= 1
    run = re.search(r"[-+~](\s*[-+~]){%d,}" % MAX_UNARY_RUN, text)
    if run:
        raise ExpressionError(f"more than {MAX_UNARY_RUN} signs in a row", text, run.start(), run.end())


def _span(node, text: str, indent: int = 0):
    """Character offsets of an AST node in the (one-line) text; ast gives UTF-8 byte offsets."""
    raw = text[indent:].encode("utf-8")

    def chars(offset):
        return indent + len(raw[:offset].decode("utf-8", errors="ignore"))

    return chars(node.col_offset), chars(node.end_col_offset), 1


def _fail(message: str, node, text: str, status: int = 2, indent: int = 0):
    start, end, line = _span(node, text, indent)
    raise ExpressionError(message, text, start, end, status, line)


def split_assignment(text: str) -> tuple:
    """``"e = a * b"`` -> ``("e", "    a * b")``; text without ``NAME =`` gives ``(None, text)``.

    The name is blanked out rather than cut, so offsets (for carets) still match.

    >>> split_assignment("e = (a + b) * (b + 1)")
    ('e', '    (a + b) * (b + 1)')
    >>> split_assignment("a == b")
    (None, 'a == b')
    """
    match = re.match(r"\s*([A-Za-z_]\w*)\s*=(?!=)", text)
    if not match:
        return None, text
    return match.group(1), " " * match.end() + text[match.end():]  # keep offsets for carets


def parse_expression(text: str, symbols: dict, declare=None, spans: dict = None):
    """Build the graph of ``text``; ``symbols`` maps names to symdiff expressions.

    A name not in ``symbols`` is passed to ``declare(name)`` (which returns a new
    symbol) or, without ``declare``, is an error.  Returns an Expr.  With ``spans`` (a
    dict), each node the expression created is recorded there by id as the
    ``(start, end)`` of the text that made it, so a failure at run time can point
    into the user's text.

    >>> import symdiff as sd
    >>> a = sd.scalar("a")
    >>> parse_expression("exp(a) * 2", {"a": a}) is sd.exp(a) * 2
    True
    """
    text = re.sub(r"[\r\n\t]", " ", text)  # one line, so a caret can point into it
    _precheck(text)
    indent = len(text) - len(text.lstrip(" "))  # eval mode rejects leading spaces; offsets keep them
    try:
        tree = ast.parse(text[indent:], mode="eval")
    except SyntaxError as exc:
        line = 1
        start = (exc.offset or 1) - 1 + indent
        end = (exc.end_offset - 1 + indent) if exc.end_offset and exc.end_lineno == exc.lineno else start + 1
        reason = exc.msg if text.strip() else "empty expression"
        raise ExpressionError(f"syntax error: {reason}", text, start, end, 2, line) from None
    except (RecursionError, MemoryError):
        raise ExpressionError("the expression is nested too deeply to parse") from None
    _check_spelling(tree, text, indent)
    return _Builder(text, symbols, declare, indent, spans).build(tree.body)


def _check_spelling(tree, text: str, indent: int):
    """Python reads identifiers in NFKC form (a full-width ``ｘ`` is ``x``): say so rather
    than silently use another name than the one typed (and than ``--var`` declared)."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Name):
            start, end, _ = _span(node, text, indent)
            written = text[start:end]
            if written != node.id:
                raise ExpressionError(
                    f"the name {written!r} has characters Python reads as {node.id!r} (Unicode NFKC "
                    f"normalization); write {node.id!r}", text, start, end)


def check_name(name: str, what: str) -> str:
    """A --var or --at name as Python would read it in an expression, or an error.

    >>> check_name("x", "--var")
    'x'
    """
    normal = unicodedata.normalize("NFKC", name)
    if normal != name:
        raise ExpressionError(f"{what} {name!r}: the name has characters Python reads as {normal!r} (Unicode NFKC "
                              f"normalization), so the expression could not refer to it; write {normal!r}")
    return name


class _Builder:
    """The walk over a parsed expression, with an explicit stack."""

    def __init__(self, text: str, symbols: dict, declare, indent: int = 0, spans: dict = None):
        self.text, self.symbols, self.declare, self.indent = text, dict(symbols), declare, indent
        self.spans = spans

    def _fail(self, message: str, node, status: int = 2):
        _fail(message, node, self.text, status, self.indent)

    def build(self, root):
        values: dict[int, object] = {}
        stack = [(root, False)]
        while stack:
            node, ready = stack.pop()
            if ready:
                values[id(node)] = self._apply(node, values)
                continue
            stack.append((node, True))
            stack.extend((child, False) for child in reversed(self._children(node)))
        result = values[id(root)]
        if isinstance(result, Expr):
            return result
        if _is_number(result):
            return F.constant(float(result))
        self._fail("the expression must be a number or an array expression", root)

    # --- checking a node and listing the children to build first
    def _children(self, node) -> list:
        if isinstance(node, ast.BinOp):
            if type(node.op) not in _BINARY:
                self._fail(_UNSUPPORTED_HINT.get(type(node.op), f"operator {type(node.op).__name__} is not supported"),
                      node)
            return [node.left, node.right]
        if isinstance(node, ast.UnaryOp):
            if not isinstance(node.op, (ast.USub, ast.UAdd)):
                self._fail(f"operator {type(node.op).__name__} is not supported", node)
            return [node.operand]
        if isinstance(node, ast.Compare):
            if len(node.ops) != 1 or type(node.ops[0]) not in _COMPARE:
                self._fail("only single comparisons (<, <=, >, >=, ==, !=) are supported", node)
            return [node.left, node.comparators[0]]
        if isinstance(node, ast.Call):
            self._callee(node)  # fail early on unknown functions
            children = list(node.args) + [k.value for k in node.keywords]
            if isinstance(node.func, ast.Attribute) and node.func.attr in _METHODS and not self._is_module(node.func):
                children.insert(0, node.func.value)
            for a in node.args:
                if isinstance(a, ast.Starred):
                    self._fail("*args are not supported", a)
            for k in node.keywords:
                if k.arg is None:
                    self._fail("**kwargs are not supported", k.value)
            return children
        if isinstance(node, (ast.Tuple, ast.List)):
            return list(node.elts)
        if isinstance(node, ast.Subscript):
            return [node.value]
        if isinstance(node, ast.Attribute):
            if node.attr != "T":
                self._fail(f"attribute .{node.attr} is not supported (only .T, and calls such as x.sum())", node)
            return [node.value]
        if isinstance(node, (ast.Name, ast.Constant)):
            return []
        hint = _UNSUPPORTED_HINT.get(type(node), f"{type(node).__name__} is not allowed in an expression")
        self._fail(hint, node)

    def _is_module(self, func) -> bool:
        return isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name) and func.value.id in _MODULES \
            and func.value.id not in self.symbols

    def _callee(self, node) -> tuple:
        """(function name, is a method call) of a call, or a caret error."""
        func = node.func
        if isinstance(func, ast.Name):
            name, method = func.id, False
        elif isinstance(func, ast.Attribute) and self._is_module(func):
            name, method = func.attr, False
        elif isinstance(func, ast.Attribute) and func.attr in _METHODS:
            return func.attr, True
        elif isinstance(func, ast.Attribute):
            self._fail(f"unknown method .{func.attr}(); methods: {', '.join(_METHODS)}", func)
        else:
            self._fail("only symdiff functions can be called", func)
        if name not in FUNCTIONS:
            close = difflib.get_close_matches(name, FUNCTIONS, n=1)
            hint = f" (did you mean {close[0]}?)" if close else "; see `symdiff --help` for the list"
            self._fail(f"unknown function {name!r}{hint}", func)
        return name, method

    # --- building one node from its built children
    def _apply(self, node, values: dict):
        get = lambda child: values[id(child)]  # noqa: E731
        if isinstance(node, ast.Constant):
            if isinstance(node.value, float) and math.isinf(node.value):
                self._fail("this number is too large for float64 (Python reads it as inf; write inf if you "
                           "mean it)", node)
            if isinstance(node.value, bool) or _is_number(node.value) or node.value is None:
                return node.value
            if isinstance(node.value, str):
                return node.value  # only useful as an argument, e.g. astype(x, "float32")
            self._fail(f"{type(node.value).__name__} constants are not supported", node)
        if isinstance(node, ast.Name):
            return self._name(node)
        if isinstance(node, ast.UnaryOp):
            operand = get(node.operand)
            if _is_number(operand):
                return -operand if isinstance(node.op, ast.USub) else operand
            return self._call(node, F.negative if isinstance(node.op, ast.USub) else (lambda x: x), [operand], {})
        if isinstance(node, ast.BinOp):
            left, right = get(node.left), get(node.right)
            if _is_number(left) and _is_number(right):
                return self._fold(node, left, right)
            return self._call(node, _BINARY[type(node.op)], [left, right], {})
        if isinstance(node, ast.Compare):
            return self._call(node, _COMPARE[type(node.ops[0])], [get(node.left), get(node.comparators[0])], {})
        if isinstance(node, (ast.Tuple, ast.List)):
            return tuple(get(e) for e in node.elts) if isinstance(node, ast.Tuple) else [get(e) for e in node.elts]
        if isinstance(node, ast.Attribute):
            return self._call(node, F.transpose, [self._array(get(node.value), node.value)], {})
        if isinstance(node, ast.Subscript):
            target = self._array(get(node.value), node.value)
            return self._call(node, F.getitem, [target, self._index(node.slice)], {})
        if isinstance(node, ast.Call):
            name, method = self._callee(node)
            args = [get(a) for a in node.args]
            if method:
                args.insert(0, self._array(get(node.func.value), node.func.value))
            kwargs = {k.arg: get(k.value) for k in node.keywords}
            fn = FUNCTIONS[name]
            try:
                _SIGNATURES[name].bind(*args, **kwargs)
            except TypeError as exc:
                self._fail(f"{name}(): {exc}", node)
            return self._call(node, fn, args, kwargs)
        raise AssertionError(type(node))  # _children rejected everything else

    def _name(self, node):
        name = node.id
        if name in self.symbols:
            return self.symbols[name]
        if name in _CONSTANTS:
            return _CONSTANTS[name]
        if name in FUNCTIONS:
            self._fail(f"{name} is a function; call it, e.g. {name}(x)", node)
        if self.declare is None:
            close = difflib.get_close_matches(name, list(self.symbols), n=1)
            hint = f" (did you mean {close[0]}?)" if close else ""
            known = ", ".join(self.symbols) or "none"
            self._fail(f"unknown name {name!r}{hint}; known inputs: {known}", node)
        try:
            symbol = self.declare(name)
        except (SymdiffError, ValueError) as exc:
            self._fail(str(exc), node)
        self.symbols[name] = symbol
        return symbol

    def _array(self, value, node):
        if isinstance(value, Expr):
            return value
        if _is_number(value):
            return F.constant(value)
        self._fail("expected an array expression here", node)

    def _index(self, node):
        """A static index: ints (with a sign), slices of them, None, ... and tuples of these."""
        if isinstance(node, ast.Tuple):
            return tuple(self._index_item(e) for e in node.elts)
        return self._index_item(node)

    def _index_item(self, node):
        if isinstance(node, ast.Slice):
            return slice(*(None if part is None else self._static_int(part) for part in
                           (node.lower, node.upper, node.step)))
        if isinstance(node, ast.Constant) and (node.value is None or node.value is Ellipsis):
            return node.value
        return self._static_int(node)

    def _static_int(self, node) -> int:
        value = node
        sign = 1
        while isinstance(value, ast.UnaryOp) and isinstance(value.op, (ast.USub, ast.UAdd)):
            sign = -sign if isinstance(value.op, ast.USub) else sign
            value = value.operand
        if isinstance(value, ast.Constant) and isinstance(value.value, int) and not isinstance(value.value, bool):
            return sign * value.value
        self._fail("indices must be integer literals (basic indexing: ints, slices, None, ...)", node)

    def _fold(self, node, left, right):
        """Arithmetic on two numbers, done here, in Python, so that a result no dtype can
        hold is an error at the number (``a ** (10**400)`` was silently inf)."""
        op = type(node.op)
        if op is ast.Pow and isinstance(left, int) and isinstance(right, int) and right >= 0 and abs(left) > 1 \
                and right * math.log2(abs(left)) > 1100:
            self._fail(f"{left} ** {right} is too large for float64", node, status=1)
        try:
            if op is ast.MatMult:
                self._fail("@ needs arrays, not numbers", node, status=1)
            value = {ast.Add: lambda: left + right, ast.Sub: lambda: left - right, ast.Mult: lambda: left * right,
                     ast.Div: lambda: left / right, ast.Pow: lambda: left ** right}[op]()
        except ZeroDivisionError:
            self._fail("division by zero", node, status=1)
        except OverflowError:
            self._fail("the result is too large for float64", node, status=1)
        if isinstance(value, complex):
            self._fail(f"{left} ** {right} is not a real number", node, status=1)
        if isinstance(value, float) and math.isinf(value):
            self._fail("the result is too large for float64 (it would be inf)", node, status=1)
        if isinstance(value, int) and value.bit_length() > 1024:
            self._fail("the result is too large for float64", node, status=1)
        return value

    def _call(self, node, fn, args, kwargs):
        """Apply a symdiff function; its failures point at this node (status 1)."""
        mark = ir.new_node_mark()
        try:
            result = fn(*args, **kwargs)
        except (SymdiffError, TypeError, ValueError, IndexError) as exc:
            self._fail(str(exc), node, status=1)
        except OverflowError:  # a Python int no dtype of the expression holds
            numbers = [a for a in args if isinstance(a, int) and not isinstance(a, bool)]
            self._fail(f"the number {max(numbers, key=abs) if numbers else '?'} does not fit the expression's "
                       "dtype (int64 or float64)", node, status=1)
        if self.spans is not None and isinstance(result, Expr):
            start, end, _ = _span(node, self.text, self.indent)
            stack = [result]
            while stack:  # the nodes this call created: newer than the mark
                current = stack.pop()
                if current.id >= mark and current.id not in self.spans:
                    self.spans[current.id] = (start, end)
                    stack.extend(current.inputs)
        return result


# ------------------------------------------------------------ shapes and values

_DTYPE_ALIASES = {"f64": "float64", "f32": "float32", "i64": "int64", "float": "float64", "int": "int64",
                  "double": "float64", **{d: d for d in DTYPES}}
_SHAPE_KEYWORDS = {"scalar": (), "vector": (None,), "matrix": (None, None)}
_VAR_HELP = "use NAME:SHAPE, e.g. x:vector, W:3x4, x:f32[n], b:f32:vector, s:scalar"


_TYPE_WORDS = sorted(set(_SHAPE_KEYWORDS) | set(_DTYPE_ALIASES))
_MAX_SIZE = np.iinfo(np.intp).max  # NumPy's limit on an array's elements (and on each dimension)


def parse_var(spec: str) -> tuple:
    """``"W:3x4"`` -> ``("W", "float64", (3, 4))``.

    SHAPE is ``scalar``, ``vector``, ``matrix``, sizes joined by ``x``
    (``3x4``, ``nx3``) or in brackets (``[3,4]``, ``[n]``), optionally after a
    dtype (``f32[n]``, ``f32:vector``, ``i64``).  A size written as a name or
    ``?`` is known only at run time.  A single word must be a dtype or a shape
    keyword: ``x:scaler`` is an error (did you mean scalar?), not a size named
    "scaler"; a lone named size is written ``x:[n]``.  Nothing after the colon
    (``x:``) is an error too, and so is a size no array can have.

    >>> parse_var("x:f32[n]")
    ('x', 'float32', (None,))
    >>> parse_var("W:3x4")
    ('W', 'float64', (3, 4))
    """
    name, sep, rest = spec.partition(":")
    name = name.strip()
    if not sep or not name.isidentifier():
        raise ExpressionError(f"bad --var {spec!r}: {_VAR_HELP}")
    check_name(name, "--var")
    rest = rest.strip().lower().replace(" ", "")
    dtype = "float64"
    match = re.match(r"(float64|float32|int64|bool|f64|f32|i64|float|int|double)(?![a-z0-9_])", rest)
    if match:
        dtype = _DTYPE_ALIASES[match.group(1)]
        rest = rest[match.end():].lstrip(":")
    if rest in _SHAPE_KEYWORDS or (rest == "" and match):
        return name, dtype, _SHAPE_KEYWORDS.get(rest, ())
    if rest == "":
        raise ExpressionError(f"bad --var {spec!r}: no type after the colon; {_VAR_HELP}")
    if rest.startswith("[") and rest.endswith("]"):
        dims = [d for d in rest[1:-1].split(",")] if rest[1:-1] else []
    else:
        dims = rest.split("x")
        if len(dims) == 1 and not re.fullmatch(r"\d+|\?", rest):
            close = difflib.get_close_matches(rest, _TYPE_WORDS, n=1, cutoff=0.6)
            if close:  # a misspelt keyword: not a size named after the typo
                hint = f"did you mean {name}:{close[0]}?"
            elif re.fullmatch(r"[a-z_]\w*", rest):
                hint = f"a size known only at run time is written in brackets: {name}:[{rest}]"
            else:
                hint = _VAR_HELP
            raise ExpressionError(f"bad --var {spec!r}: unknown type {rest!r}; {hint}")
    shape = []
    for d in dims:
        if re.fullmatch(r"\d+", d):
            shape.append(int(d))
        elif d == "?" or re.fullmatch(r"[a-z_]\w*", d):
            shape.append(None)
        else:
            raise ExpressionError(f"bad --var {spec!r}: cannot read size {d!r}; {_VAR_HELP}")
    size = math.prod(d for d in shape if d is not None)
    if size > _MAX_SIZE:  # NumPy could not even describe such an array
        raise ExpressionError(f"bad --var {spec!r}: {name} would have {size:,} elements, more than an array can "
                              f"hold ({_MAX_SIZE:,})")
    return name, dtype, tuple(shape)


def _split_top_level(text: str) -> list:
    parts, depth, current = [], 0, []
    for ch in text:
        depth += ch in "[(" and 1 or 0
        depth -= ch in "])" and 1 or 0
        if ch == "," and depth == 0:
            parts.append("".join(current))
            current = []
        else:
            current.append(ch)
    parts.append("".join(current))
    return [p for p in (p.strip() for p in parts) if p]


_VALUE_WORDS = {"inf": math.inf, "nan": math.nan}


def parse_values(text: str) -> dict:
    """``"a=2,b=1,x=[1,2]"`` -> ``{"a": 2, "b": 1, "x": [1, 2]}`` (literals only, never code).

    Values stay Python numbers and nested lists, so the library's one casting policy
    (:func:`symdiff.evaluate.coerce_input`: Python numbers by kind) applies to them as
    it does to ``sd.function(...)(1.5)``.  The words ``inf``, ``-inf`` and ``nan`` are
    those floats; a literal too large for float64 (``1e400``, which Python reads as
    inf) is refused, as it is in an expression.

    >>> parse_values("a=2, x=[1.5, -2], y=[nan, -inf]")
    {'a': 2, 'x': [1.5, -2], 'y': [nan, -inf]}
    """
    if len(text) > 100_000:
        raise ExpressionError("--at values are too long (limit 100000 characters)")
    depth = max(np.cumsum([1 if c in "[(" else -1 if c in "])" else 0 for c in text]), default=0)
    if depth > 32:
        raise ExpressionError("--at values are nested more than 32 deep")
    values = {}
    for item in _split_top_level(text):
        name, sep, literal = item.partition("=")
        name, literal = name.strip(), literal.strip()
        if not sep or not name.isidentifier():
            raise ExpressionError(f"bad --at item {item!r}: use NAME=VALUE, e.g. a=2,b=1 or x=[1,2,3]")
        check_name(name, "--at")
        try:
            tree = ast.parse(literal, mode="eval")
        except (ValueError, SyntaxError, MemoryError, RecursionError):
            tree = None
        value = _literal(tree.body, name, literal) if tree is not None else None
        if value is None or _literal_shape(value) is None:
            raise ExpressionError(f"bad value for {name} in --at: {literal!r} is not a number (or inf, -inf, "
                                  "nan) or a (rectangular) list of numbers")
        values[name] = value
    return values


def _literal(node, name: str, literal: str):
    """A number or nested list from an --at value's syntax tree; None for anything else."""
    sign = 1
    while isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        sign = -sign if isinstance(node.op, ast.USub) else sign
        node = node.operand
    if isinstance(node, (ast.List, ast.Tuple)):
        if sign != 1:
            return None
        items = [_literal(x, name, literal) for x in node.elts]
        return None if any(x is None for x in items) else items
    if isinstance(node, ast.Name) and node.id in _VALUE_WORDS:
        return sign * _VALUE_WORDS[node.id]
    if isinstance(node, ast.Constant) and isinstance(node.value, bool):
        return node.value if sign == 1 else None
    if isinstance(node, ast.Constant) and _is_number(node.value):
        if isinstance(node.value, float) and math.isinf(node.value):
            written = ast.get_source_segment(literal, node) or literal
            raise ExpressionError(f"--at {name}={literal}: the number {written} is too large for float64 (Python "
                                  "reads it as inf; write inf if you mean it)")
        return sign * node.value
    return None


def _literal_shape(value):
    """The shape of a number or nested list, or None when the lists are ragged."""
    if not isinstance(value, list):
        return ()
    shapes = {_literal_shape(x) for x in value}
    if len(shapes) > 1 or None in shapes:
        return None
    return (len(value),) + (shapes.pop() if shapes else ())
