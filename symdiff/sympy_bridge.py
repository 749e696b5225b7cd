"""SymPy in and out: a scalar graph as a formula, and a formula as a graph.

``to_sympy`` shows a (scalar) gradient as a formula or as LaTeX.  ``from_sympy``
goes the other way, so a SymPy user can hand a formula to symdiff and get its
gradient as graph, where a subexpression that occurs many times is one node, in
place of ``sympy.diff``'s expression swell.  Both walks are iterative, so deep
expressions do not hit Python's recursion limit.  SymPy is imported only when
these functions are called.
"""

from __future__ import annotations

import contextlib
import functools
import sys
import threading

import numpy as np

from . import frontend as F
from .errors import SymdiffError
from .ir import Expr, as_list, make_node, toposort
from .printers import optimized

__all__ = ["to_sympy", "from_sympy", "to_latex", "latex_definitions"]


class SympyConversionError(SymdiffError, ValueError):
    """A node or a SymPy expression the bridge has no spelling for."""


# ------------------------------------------------------------------ to SymPy


def _number(value: np.ndarray, sympy):
    item = value[()].item()
    if isinstance(item, bool):
        return sympy.true if item else sympy.false
    if isinstance(item, int):
        return sympy.Integer(item)
    if np.isnan(item):
        return sympy.nan
    if np.isinf(item):
        return sympy.oo if item > 0 else -sympy.oo
    if float(item).is_integer() and abs(item) < 2**53:
        return sympy.Integer(int(item))  # 2*a reads better than 2.0*a, and is the same number
    return sympy.Float(item)


def _sympy_rules(sympy):
    """op name -> the SymPy spelling, a function of the converted inputs."""
    return {
        "neg": lambda x: -x,
        "exp": sympy.exp,
        "expm1": lambda x: sympy.exp(x) - 1,
        "log": sympy.log,
        "log1p": lambda x: sympy.log(1 + x),
        "sqrt": sympy.sqrt,
        "sin": sympy.sin,
        "cos": sympy.cos,
        "tan": sympy.tan,
        "tanh": sympy.tanh,
        "sech2": lambda x: sympy.sech(x) ** 2,
        "mul_log": lambda a, b: a * sympy.log(b),
        "one_plus_mul_log": lambda a, b: 1 + a * sympy.log(b),
        "arctan2": sympy.atan2,
        "over_squared_norm": lambda a, b: a / (a**2 + b**2),  # arctan2's slope
        "hypot": lambda x, y: sympy.sqrt(x**2 + y**2),
        "over_hypot": lambda a, b: a / sympy.sqrt(a**2 + b**2),  # hypot's slope
        "erf": sympy.erf,
        "erfc": sympy.erfc,
        "erfinv": sympy.erfinv,
        "erfinv_slope": lambda y: sympy.sqrt(sympy.pi) / 2 * sympy.exp(sympy.erfinv(y) ** 2),
        "two_norm": sympy.Abs,  # of a scalar: the bridge converts scalar graphs
        "two_norm_slope": sympy.sign,
        "others_sum": lambda x: sympy.Integer(0),  # of a scalar: no other entries  # two_norm's slope x / |x| (0 at 0)
        "scaled_prod": lambda x, y, w, z: x * y * w / z,  # prod's partials; of a scalar x its product is x
        "abs": sympy.Abs,
        "sign": sympy.sign,
        "sigmoid": lambda x: 1 / (1 + sympy.exp(-x)),
        "softplus": lambda x: sympy.log(1 + sympy.exp(x)),
        "add": lambda x, y: x + y,
        "sub": lambda x, y: x - y,
        "mul": lambda x, y: x * y,
        "div": lambda x, y: x / y,
        "pow": lambda x, y: x**y,
        "maximum": sympy.Max,
        "minimum": sympy.Min,
        "less": sympy.Lt,
        "less_equal": sympy.Le,
        "greater": sympy.Gt,
        "greater_equal": sympy.Ge,
        "equal": sympy.Eq,
        "not_equal": sympy.Ne,
        "logical_not": sympy.Not,
        "logical_and": sympy.And,
        "logical_or": sympy.Or,
        "where": lambda c, x, y: sympy.Piecewise((x, c), (y, True)),
        "stop_gradient": _stop_gradient_function(),
    }


@functools.lru_cache(maxsize=None)
def _stop_gradient_function():
    """stop_gradient as a SymPy function: the value passes, derivatives must not, so it
    stays a named function of a symbolic argument; of a number it is that number (a
    gradient formula evaluated at a point is a number: pow's x-slope carries its exponent
    correction under stop_gradient, exactly 1 in SymPy's exact arithmetic)."""
    import sympy

    class stop_gradient(sympy.Function):  # noqa: N801  (the op's name, printed as such)
        @classmethod
        def eval(cls, argument):
            return argument if argument.is_Number else None

    return stop_gradient


def _users_op(node):
    """A user's op without attributes as an undefined SymPy function of its name (printed as
    such; ``from_sympy`` maps it back while the op is registered); a ``custom_vjp`` or
    ``custom_jvp`` node as its body's value.  None for other ops."""
    import sympy

    if node.op.kind == "custom_derivative":
        return lambda body, *inputs: body
    if node.op.user and not node.params:
        return sympy.Function(node.op.name, real=True)
    return None


def _spelled(node: Expr, args: list, rules: dict, sympy, caller: str):
    """``node``'s SymPy expression, given its inputs' (``args``)."""
    if node.is_symbol:
        return sympy.Symbol(node.name, real=True)
    if node.is_constant:
        return _number(node.params["value"].array, sympy)
    name = node.op.name
    if name == "cast":
        return _cast(node, args[0], sympy)
    if name in _SPELLED_WITH_ATTRIBUTES:
        return _SPELLED_WITH_ATTRIBUTES[name](sympy, node.params, *args)
    if name in _PASS_THROUGH:
        return args[0]
    if name in rules:
        return rules[name](*args)
    users = _users_op(node)
    if users:
        return users(*args)
    raise SympyConversionError(f"{caller}: no SymPy spelling for op {name!r} ({node!r})")


def to_sympy(outputs, optimize: bool = True):
    """A SymPy expression for each output of a scalar-valued graph (every node 0-d).

    Symbols become real SymPy symbols of the same name; the graph's shared nodes
    become SymPy's own shared subtrees.  One Expr gives one SymPy expression, a
    list gives a list.

    >>> import symdiff as sd
    >>> a, b = sd.scalars("a b")
    >>> sd.to_sympy(sd.grad((a + b) * (b + 1), b))
    a + 2*b + 1
    """
    import sympy

    outs, single = as_list(outputs)
    outs = optimized(outs, optimize)
    rules = _sympy_rules(sympy)
    converted: dict[int, object] = {}
    for node in toposort(outs):
        if node.ndim != 0:
            raise SympyConversionError(
                f"to_sympy works on scalar-valued graphs; {node!r} has type {node.type!r}"
            )
        converted[node.id] = _spelled(node, [converted[x.id] for x in node.inputs], rules, sympy, "to_sympy")
    results = [converted[o.id] for o in outs]
    return results[0] if single else results


def _ndtr_derivative_spelling(sympy, params, x):
    """The n-th derivative of ndtr: SymPy's own derivative of (1 + erf(t / sqrt 2)) / 2 at x."""
    t = sympy.Dummy("t", real=True)
    return sympy.diff((1 + sympy.erf(t / sympy.sqrt(2))) / 2, t, params["n"]).subs(t, x)


def _erf_derivative_spelling(sympy, params, x):
    """The n-th derivative of erf: SymPy's own derivative of erf(t) at x."""
    t = sympy.Dummy("t", real=True)
    return sympy.diff(sympy.erf(t), t, params["n"]).subs(t, x)


# Private ops whose spelling depends on an attribute: (sympy, node.params, *inputs) -> expression.
_SPELLED_WITH_ATTRIBUTES = {
    "mul_log_slope": lambda sympy, params, d, a, b: d * sympy.log(b) if params["part"] == 0 else d * a / b ** params["part"],
    "ndtr_derivative": _ndtr_derivative_spelling,
    # pow's first and second partials (private; their regimes are the compiled code's business)
    "pow_slope": lambda sympy, params, d, x, y: d * y * x ** (y - 1) if params["wrt"] == "x" else d * x**y * sympy.log(x),
    "pow_curvature": lambda sympy, params, c, d, x, y: c * d * {
        "xx": lambda: y * (y - 1) * x ** (y - 2),
        "xy": lambda: x ** (y - 1) * (1 + y * sympy.log(x)),
        "yx": lambda: x ** (y - 1) * (1 + y * sympy.log(x)),
        "yy": lambda: x**y * sympy.log(x) ** 2}[params["wrt"]](),
    "erf_derivative": _erf_derivative_spelling,
}


# On 0-d values these ops pass their first input through (sums over no axes, ...).
_PASS_THROUGH = {"sum", "prod", "max", "min", "reshape", "squeeze", "expand_dims", "transpose", "broadcast_to",
                 "broadcast_like"}


def _cast(node: Expr, x, sympy):
    source = node.inputs[0].dtype
    target = node.params["dtype"]
    if target in ("float64", "float32") or source == target:
        return sympy.Piecewise((1, x), (0, True)) if source == "bool" else x
    if target == "int64" and source == "bool":
        return sympy.Piecewise((1, x), (0, True))
    if target == "bool":
        return sympy.Ne(x, 0)
    return sympy.sign(x) * sympy.floor(sympy.Abs(x))  # NumPy's float -> int truncates toward zero


def to_latex(outputs, optimize: bool = True) -> str:
    """LaTeX for a scalar-valued graph (via :func:`to_sympy` and ``sympy.latex``).

    >>> import symdiff as sd
    >>> a = sd.scalar("a")
    >>> sd.to_latex(sd.exp(a) / 2)
    '\\\\frac{e^{a}}{2}'
    """
    import sympy

    outs, single = as_list(outputs)
    with _deep_recursion():  # SymPy's conversion and printer recurse once per level of nesting
        texts = [sympy.latex(f) for f in to_sympy(outs, optimize)]
    return texts[0] if single else texts


# The recursion limit to_latex allows itself: a 500-level power tower needs ~9,000; at 100,000
# a 20,000-level exp chain overflowed the 8 MB C stack (a segfault, not a RecursionError).
DEEPEST = 20_000
_RECURSION_LIMIT_LOCK = threading.Lock()  # the limit is process-wide: one raiser at a time


@contextlib.contextmanager
def _deep_recursion():
    """Raise the interpreter's recursion limit for a deep expression; a RecursionError even
    then becomes a clear error naming the alternative."""
    with _RECURSION_LIMIT_LOCK:
        previous = sys.getrecursionlimit()
        sys.setrecursionlimit(max(previous, DEEPEST))
        try:
            yield
        except RecursionError:
            raise SymdiffError("the expression is nested too deeply for SymPy's LaTeX printer; "
                               "symdiff.sympy_bridge.latex_definitions (or the CLI's --format latex) writes it "
                               "with shared subexpressions defined once") from None
        finally:
            sys.setrecursionlimit(previous)


INLINE_LATEX = 24  # a subexpression used more than once is written out where used up to this length
# A subexpression of more nodes than this is defined on its own line even when used once: SymPy
# flattens sums and products when it builds them and prints them by sorting their terms, so one
# long line costs time quadratic in its length (the HVP of a 640-level power tower: 35 s, one
# line of 148,000 characters).
INLINE_NODES = 40
_DEFINITION_PREFIXES = ("t", "u", "w", "q", "tau", "theta", "xi", "zeta")


def latex_definitions(outputs, optimize: bool = True) -> str:
    """LaTeX for named scalar outputs, one line each, with every subexpression used more
    than once (and longer than INLINE_LATEX characters) or larger than INLINE_NODES graph
    nodes defined once on a line of its own (``t_{1} = ...``) and referred to by name.

    A formula written out in full repeats shared subexpressions, and a derivative
    shares many: the gradient of the power tower x**x**...**x (n levels) has a tree of
    size n**2 (55 s at n = 200 through ``sympy.latex``), but a graph of size n.  These
    lines are as long as the graph, and none is longer than a bounded subexpression, so
    the time is linear.  ``outputs`` maps each LaTeX name to a scalar expression.

    >>> import symdiff as sd
    >>> x = sd.scalar("x")
    >>> y = sd.exp(sd.sin(x) + sd.cos(x)) * sd.exp(sd.sin(x) + sd.cos(x))
    >>> print(latex_definitions({"y": y}, optimize=False))
    t_{1} = e^{\\sin{\\left(x \\right)} + \\cos{\\left(x \\right)}}
    y = t_{1}^{2}
    """
    import sympy

    names, exprs = list(outputs), list(outputs.values())
    exprs = optimized(exprs, optimize)
    nodes = toposort(exprs)
    uses: dict[int, int] = {}
    for node in nodes:
        for x in node.inputs:
            uses[x.id] = uses.get(x.id, 0) + 1
    output_ids = {out.id for out in exprs}
    # the names the definitions' t_{k} could collide with, as printed: a symbol t1 prints t_{1} too
    printed = {sympy.latex(sympy.Symbol(node.name)) for node in nodes if node.is_symbol} | set(names)
    prefix = next((p for p in _DEFINITION_PREFIXES
                   if not any(n.startswith(sympy.latex(sympy.Symbol(p + "_1"))[:-2]) for n in printed)), None)
    if prefix is None:
        raise SympyConversionError(f"LaTeX output: every name for definitions ({', '.join(_DEFINITION_PREFIXES)} "
                                   "with a subscript) is taken by a symbol or an output; rename one")
    rules = _sympy_rules(sympy)
    converted: dict[int, object] = {}  # node id -> what its consumers see (an expression or a name)
    inlined_nodes: dict[int, int] = {}  # node id -> the graph nodes its expression writes out
    lines = []
    with _deep_recursion():
        for node in nodes:
            if node.ndim != 0:
                raise SympyConversionError(
                    f"LaTeX output works on scalar-valued graphs; {node!r} has type {node.type!r}")
            value = _spelled(node, [converted[x.id] for x in node.inputs], rules, sympy, "LaTeX output")
            size = 1 + sum(inlined_nodes[x.id] for x in node.inputs)
            shared = uses.get(node.id, 0) + (node.id in output_ids) > 1
            large = size > INLINE_NODES and node.id not in output_ids
            if (shared or large) and not isinstance(value, (sympy.Symbol, sympy.Number)):
                text = sympy.latex(value)
                if large or len(text) > INLINE_LATEX:  # short ones are clearer repeated, and cost that per use
                    name = sympy.Symbol(f"{prefix}_{len(lines) + 1}", real=True)
                    lines.append(f"{sympy.latex(name)} = {text}")
                    value, size = name, 1
            converted[node.id], inlined_nodes[node.id] = value, size
        lines += [f"{name} = {sympy.latex(converted[out.id])}" for name, out in zip(names, exprs)]
    return "\n".join(lines)


# ---------------------------------------------------------------- from SymPy


def from_sympy(expr, symbols=None):
    """Import a SymPy expression into the graph: one node per distinct subexpression.

    Free symbols become float64 scalars of the same name unless ``symbols``
    maps them (by SymPy symbol or by name) to symdiff expressions, e.g. to a
    vector for an elementwise function.  Integers, rationals and SymPy's
    constants (pi, E) become float64 constants.  The walk is iterative, so deep
    expressions are fine.

    >>> import sympy, symdiff as sd
    >>> x = sympy.Symbol("x")
    >>> f = sd.from_sympy(sympy.sin(x) ** 2 + sympy.sin(x))
    >>> sd.evaluate(sd.grad(f, sd.scalar("x")), {"x": 0.0})
    np.float64(1.0)
    """
    import sympy

    given = {}
    for key, value in (symbols or {}).items():
        given[key if isinstance(key, str) else str(key)] = F.as_expr(value)
    return F.as_expr(_Importer(sympy, given).value(sympy.sympify(expr)))


class _Importer:
    """One import: the SymPy-node -> symdiff-value memo, shared by every walk."""

    def __init__(self, sympy, given: dict):
        self.sympy = sympy
        self.given = given
        self.built: dict = {}

    def value(self, expr):
        """Build ``expr`` bottom-up with an explicit stack (no recursion on depth)."""
        built = self.built
        stack = [(expr, False)]
        while stack:
            node, ready = stack.pop()
            if node in built:
                continue
            if not ready and node.args and not getattr(node, "is_number", False):
                stack.append((node, True))
                stack.extend((arg, False) for arg in node.args if arg not in built)
                continue
            built[node] = self._one(node)
        return built[expr]

    def _one(self, node):
        """The symdiff value of one SymPy node whose arguments are built."""
        sympy = self.sympy
        if isinstance(node, sympy.Symbol):
            return self.given[node.name] if node.name in self.given else F.scalar(node.name)
        if node is sympy.true or node is sympy.false:
            return F.constant(bool(node))
        if isinstance(node, sympy.core.containers.Tuple) or type(node).__name__ == "ExprCondPair":
            return tuple(self.built[a] for a in node.args)
        if getattr(node, "is_number", False):  # sqrt(2)/pi is one constant, not a subgraph
            try:
                return F.constant(float(node))
            except TypeError:
                raise SympyConversionError(f"from_sympy: {node} is not a real number") from None
        args = [self.built[a] for a in node.args]
        if isinstance(node, sympy.Add):
            return self._add(node)
        if isinstance(node, sympy.Mul):
            return self._mul(node)
        if isinstance(node, sympy.Pow):
            return self._power(args[0], node.exp)
        if isinstance(node, sympy.Piecewise):
            return _piecewise(args)
        if isinstance(node, sympy.core.function.AppliedUndef):
            from .custom import CUSTOM_OPS

            record = CUSTOM_OPS.get(type(node).__name__)  # a user's op, as to_sympy spelled it (even "Abs")
            if record is not None:
                return make_node(record.op, args, {})
        rule = _FROM_SYMPY.get(type(node).__name__)
        if rule is None:
            raise SympyConversionError(
                f"from_sympy: no symdiff spelling for {type(node).__name__} (in {node}); supported: "
                "arithmetic, powers, exp, log, trig, tanh, sech, sinh, cosh, Abs, sign, Max, Min, Piecewise, relations"
            )
        return rule(*args)

    def _add(self, node):
        # a - b rather than a + (-1)*b: terms with a negative coefficient are subtracted.
        plus, minus = [], []
        for term in node.args:
            coeff = term.as_coeff_Mul()[0]
            if coeff.is_Number and coeff.is_negative:
                minus.append(self.value(-term))
            else:
                plus.append(self.built[term])
        total = plus[0] if plus else F.negative(minus.pop(0))
        for t in plus[1:]:
            total = F.add(total, t)
        for t in minus:
            total = F.subtract(total, t)
        return total

    def _mul(self, node):
        # Factors with negative exponents form a denominator: x / y, not x * y ** -1.
        numerator, denominator, negate = [], [], False
        for factor in node.args:
            if factor == -1:
                negate = not negate
            elif factor.is_Rational and not factor.is_Integer and factor.p in (1, -1):
                negate ^= factor.p < 0
                denominator.append(F.constant(float(factor.q)))
            elif factor.is_Pow and factor.exp.is_Number and factor.exp.is_negative:
                denominator.append(self.value(1 / factor))
            else:
                numerator.append(self.built[factor])
        top = _product(numerator)
        if denominator:
            top = F.divide(1.0 if top is None else top, _product(denominator))
        return F.negative(top) if negate else top

    def _power(self, base, exponent):
        if exponent == 2:
            return F.multiply(base, base)
        if exponent == self.sympy.Rational(1, 2):
            return F.sqrt(base)
        if exponent == -1:
            return F.divide(1.0, base)
        return F.power(base, float(exponent) if exponent.is_Number else self.built[exponent])


def _product(factors: list):
    total = factors[0] if factors else None
    for f in factors[1:]:
        total = F.multiply(total, f)
    return total


def _fold(fn):
    def apply(*args):
        total = args[0]
        for a in args[1:]:
            total = fn(total, a)
        return total

    return apply


def _piecewise(pairs: list):
    """where(c1, e1, where(c2, e2, ...)); NaN where no condition holds, as in SymPy."""
    value, condition = pairs[-1]
    result = value if _is_true(condition) else F.where(condition, value, np.nan)
    for value, condition in reversed(pairs[:-1]):
        result = F.where(condition, value, result)
    return result


def _is_true(condition) -> bool:
    from .ops.leaves import constant_value

    found = constant_value(condition)
    return found is not None and found.dtype == bool and bool(found.all())


_FROM_SYMPY = {
    "exp": F.exp,
    "log": lambda x, base=None: F.log(x) if base is None else F.divide(F.log(x), F.log(base)),
    "sin": F.sin,
    "cos": F.cos,
    "tan": F.tan,
    "tanh": F.tanh,
    # tanh's derivative prints as sech(x)**2 (symdiff's sech2); 1 / cosh(x) is 0 where
    # cosh overflows, as sech is there
    "sech": lambda x: 1 / F.math.cosh(x),  # symdiff.frontend.math is loaded by then
    "sinh": lambda x: (F.exp(x) - F.exp(-x)) / 2,
    "cosh": lambda x: (F.exp(x) + F.exp(-x)) / 2,
    "Abs": F.abs,
    "sign": F.sign,
    "Max": _fold(F.maximum),
    "Min": _fold(F.minimum),
    "StrictLessThan": F.less,
    "LessThan": F.less_equal,
    "StrictGreaterThan": F.greater,
    "GreaterThan": F.greater_equal,
    "Equality": F.equal,
    "Unequality": F.not_equal,
    "And": _fold(F.logical_and),
    "Or": _fold(F.logical_or),
    "Not": F.logical_not,
    "stop_gradient": F.stop_gradient,
}
