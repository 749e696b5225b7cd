"""Users' own primitives (``custom_op``) and derivative overrides of composites
(``custom_vjp``, ``custom_jvp``), each one record, as the built-in ops are.

A custom op is an ``ir.Op`` with ``user=True`` in the same registry as the built-in
ops, so differentiation, printers, JSON and the backends treat it like any other op
(rewrites treat it as opaque).  Its rules are written with symdiff expressions, so
its derivatives differentiate again.  One rule is enough for both modes:

* a vjp rule u -> vjp(u) is linear in the cotangent u, so the jvp along t is the
  gradient with respect to u of <vjp(u), t> (graph again: forward mode, HVPs in
  both modes and Hessians work with only a vjp rule, where JAX refuses);
* likewise a jvp rule is linear in the tangents, and the vjp of u is the gradient
  with respect to each tangent of <u, jvp(t)>.

The derived rule is the rule's linearisation at u = 0 (t = 0): exact for every
rule that is linear, as a derivative rule is.  A rule that is deliberately not
linear (gradient clipping, ``clip(u, -1, 1)``) acts in reverse mode as written,
while forward mode sees its slope at zero (the identity, for clipping).

This module is part of the core: it never imports Numba.  The Numba backend finds
a custom op's ``numba=`` function and code hash through ``CUSTOM_OPS``.
"""

from __future__ import annotations

import functools
import hashlib
import inspect
import itertools
import keyword
import types as pytypes
from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np

from . import frontend as F
from .errors import DTypeError, GradientError, SymdiffError
from .ir import OPS, Expr, Op, make_node, toposort
from .ops import reductions, structure
from .ops.elementwise import same_dtype, zeros_like
from .ops.leaves import numpy_dtype
from .types import TensorType, broadcast_shapes, dtype_of_array


class CustomOpError(SymdiffError):
    """A custom op's definition or implementation is wrong (the message names the op)."""


class CustomOpWarning(UserWarning):
    """A custom op runs slower than it could (its kernel calls Python)."""


@dataclass
class CustomOpRecord:
    """What the backends need of a user's op beyond its ``Op``: the functions the
    compiled kernel calls and the hash of their code (part of the cache key)."""

    op: Op
    impl: Callable
    numba: Optional[Callable]
    code_hash: str
    elementwise: bool = False  # broadcasts like NumPy (its result's sizes are its inputs')


CUSTOM_OPS: dict[str, CustomOpRecord] = {}


# ------------------------------------------------------------------ code hashes


def code_hash(*functions) -> str:
    """A hash of the code of ``functions`` and of everything they reach that Numba bakes
    into a compiled kernel: bytecode, constants and names; the values of the globals
    and closure cells they read (numbers, strings, tuples, NumPy scalars and arrays);
    functions reached through globals, closures or module attributes (``helpers.f``),
    recursively.  Editing any of them gives a new hash, so a new kernel cache key.

    >>> def f(x): return x + 1
    >>> def g(x): return x + 2
    >>> code_hash(f) == code_hash(f) != code_hash(g)
    True
    """
    digest = hashlib.sha256()
    seen: set = set()
    pending = [fn for fn in functions if fn is not None]

    def value(item):
        """Hash a value a kernel may bake in; queue a function; say whether it was either."""
        if isinstance(item, (bool, int, float, complex, str, bytes, type(None), np.generic)):
            digest.update(repr((type(item).__name__, item)).encode())
        elif isinstance(item, np.ndarray):
            digest.update(repr((item.dtype.str, item.shape)).encode() + np.ascontiguousarray(item).tobytes())
        elif isinstance(item, tuple):
            for element in item:
                value(element)
        elif callable(item) and (hasattr(item, "__code__") or hasattr(item, "py_func")):
            pending.append(item)
        else:
            return False
        return True

    while pending:
        fn = pending.pop()
        fn = getattr(fn, "py_func", fn)  # a Numba dispatcher: its Python function
        if isinstance(fn, functools.partial):
            value((fn.args, tuple(sorted(fn.keywords.items()))))
            pending.append(fn.func)
            continue
        code = getattr(fn, "__code__", None)
        if code is None or id(code) in seen:
            continue
        seen.add(id(code))
        namespace = getattr(fn, "__globals__", {})
        for c in _code_objects(code):
            digest.update(c.co_code)
            digest.update(repr(c.co_names).encode())
            digest.update(repr([k for k in c.co_consts if not isinstance(k, pytypes.CodeType)]).encode())
            for name in c.co_names:
                if name in namespace:
                    target = namespace[name]
                    if isinstance(target, pytypes.ModuleType):  # helpers.f: every attribute the code names
                        for attribute in c.co_names:
                            if hasattr(target, attribute):
                                value(getattr(target, attribute))
                    else:
                        value(target)
        for cell in getattr(fn, "__closure__", None) or ():
            try:
                value(cell.cell_contents)
            except ValueError:  # an empty cell
                continue
        value(getattr(fn, "__defaults__", None))
    return digest.hexdigest()[:16]


def _code_objects(code):
    stack = [code]
    while stack:
        c = stack.pop()
        yield c
        stack.extend(k for k in c.co_consts if isinstance(k, pytypes.CodeType))


# ---------------------------------------------------------- rules from rules


_placeholders = itertools.count()


def _placeholder(like: Expr) -> Expr:
    """A fresh symbol of ``like``'s type (a cotangent or tangent variable)."""
    return F.tensor(f"_sd_linear{next(_placeholders)}", like.type.shape, like.dtype)


def substitute(outputs: list, replacements: dict) -> list:
    """``outputs`` rebuilt with each node ``old`` replaced by ``replacements[old]``.

    >>> import symdiff as sd
    >>> x, y = sd.scalars("x y")
    >>> substitute([sd.sin(x) * 2], {x: y})
    [Expr(%... = mul %... %... : f64[])]
    """
    new = {old.id: value for old, value in replacements.items()}
    for node in toposort(outputs):
        if node.id in new or not node.inputs:
            continue
        inputs = [new.get(x.id, x) for x in node.inputs]
        if any(a is not b for a, b in zip(inputs, node.inputs)):
            new[node.id] = make_node(node.op, inputs, node.params)
    return [new.get(o.id, o) for o in outputs]


def _inner(pairs) -> Optional[Expr]:
    """sum_i <a_i, b_i> over the pairs whose parts are both present."""
    total = None
    for a, b in pairs:
        if a is None or b is None:
            continue
        term = F.sum(a * b)
        total = term if total is None else total + term
    return total


def _grad_at_zero(inner: Optional[Expr], variable: Expr, like: Expr) -> Optional[Expr]:
    """d inner / d variable, with ``variable`` then set to zero (exact for an inner
    product linear in it: the gradient does not depend on where it is taken)."""
    from .autodiff import grad

    if inner is None:
        return None
    (gradient,) = substitute([grad(inner, [variable], mode="rev")[0]], {variable: zeros_like(like)})
    return gradient


def jvp_from_vjp(vjp_rules) -> Callable:
    """A forward rule from per-input reverse rules (see the module docstring)."""

    def jvp(tangents, out, *inputs, **attrs):
        u = _placeholder(out)
        contributions = [None if rule is None or t is None else rule(u, out, *inputs, **attrs)
                         for rule, t in zip(vjp_rules, tangents)]
        return _grad_at_zero(_inner(zip(contributions, tangents)), u, out)

    return jvp


def vjp_from_jvp(jvp_rule, arity: int) -> tuple:
    """Per-input reverse rules from a forward rule (see the module docstring)."""

    def rule_for(index):
        def rule(cotangent, out, *inputs, **attrs):
            tangent = _placeholder(inputs[index])
            tangents = [tangent if k == index else None for k in range(len(inputs))]
            return _grad_at_zero(_inner([(cotangent, jvp_rule(tangents, out, *inputs, **attrs))]), tangent,
                                 inputs[index])

        return rule

    return tuple(rule_for(i) for i in range(arity))


# ----------------------------------------------------------------- custom_op


def _checked_impl(name: str, impl: Callable, infer_type: Callable) -> Callable:
    """``impl`` with its result checked against the type rule (a wrong dtype or shape
    from a user's implementation is an error naming the op, never a silent cast)."""

    @functools.wraps(impl)
    def run(*arrays, **attrs):
        out = np.asarray(impl(*arrays, **attrs))
        want = infer_type(tuple(TensorType(dtype_of_array(np.asarray(a)), np.shape(a)) for a in arrays), **attrs)
        if out.dtype != numpy_dtype(want.dtype) or out.ndim != len(want.shape) or any(
                w is not None and w != o for o, w in zip(out.shape, want.shape)):  # None: only the result knows
            raise CustomOpError(f"custom op {name!r}: impl returned {out.dtype} of shape {out.shape}, but its type "
                                f"rule says {want.dtype} of shape {want.shape}")
        return out

    return run


def _arity(name: str, impl: Callable, vjp) -> int:
    if isinstance(vjp, (tuple, list)):
        return len(vjp)
    try:
        params = inspect.signature(impl).parameters.values()
    except (TypeError, ValueError):
        raise CustomOpError(f"custom op {name!r}: cannot tell how many inputs impl takes; give vjp= as a "
                            f"tuple with one rule per input") from None
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
                  and p.default is p.empty]
    return len(positional)


def _missing_rule(name: str, direction: str):
    def rule(*args, **attrs):
        raise GradientError(f"custom op {name!r} has no derivative rule: give vjp= or jvp= to sd.custom_op "
                            f"(needed for {direction})")

    rule.missing = True  # check_op skips the derivative checks of such an op
    return rule


class CustomOp:
    """A user's primitive (what ``sd.custom_op`` returns): call it on expressions
    (or numbers and arrays) to build nodes.  ``op`` is its registered ``ir.Op``."""

    def __init__(self, record: CustomOpRecord, elementwise: bool):
        self.record = record
        self.op = record.op
        self.name = record.op.name
        self.elementwise = elementwise
        self.samples = record.op.samples
        functools.update_wrapper(self, record.impl, assigned=("__doc__",), updated=())

    def __call__(self, *args, **attrs) -> Expr:
        if self.elementwise:
            if attrs and self.record.numba is not None:  # the fused scalar call has no place for them
                raise CustomOpError(f"custom op {self.name!r}: an elementwise op with numba= takes no attributes "
                                    f"(got {sorted(attrs)}); pass them as inputs")
            inputs = F.operands(*args, to_float=True)  # ints and bools promote to float64, as NumPy's math does
        else:
            inputs = [F.as_expr(a) for a in args]
        bad = [key for key in attrs if not key.isidentifier() or keyword.iskeyword(key)]
        if bad:
            raise CustomOpError(f"custom op {self.name!r}: attribute names must be Python identifiers, got {bad}")
        for key, value in attrs.items():
            try:
                hash(value)
            except TypeError:
                raise CustomOpError(f"custom op {self.name!r}: attribute {key}={value!r} is not hashable (nodes are "
                                    f"shared by value): pass a tuple, not a {type(value).__name__}") from None
        return make_node(self.op, inputs, attrs)

    def __repr__(self) -> str:
        return f"<custom op {self.name}>"


def custom_op(name: str, impl: Callable, *, vjp=None, jvp=None, infer=None, elementwise: bool = False,
              numba: Optional[Callable] = None, samples: Optional[Callable] = None) -> CustomOp:
    """Register a new primitive and return a callable that builds its nodes.

    impl(*arrays, **attrs): the NumPy implementation (the reference).
    vjp: one rule per input, ``rule(cotangent, out, *inputs, **attrs) -> Expr or
    None``, written with symdiff expressions (a callable alone for one input).
    jvp: ``jvp(tangents, out, *inputs, **attrs) -> Expr`` (tangents: Expr or None).
    With only one of vjp and jvp the other is derived (see ``symdiff.custom``);
    with neither, the op evaluates and compiles but differentiating it raises.
    infer(*input_types, **attrs) -> TensorType, or elementwise=True for an op that
    broadcasts like NumPy and keeps its inputs' promoted dtype.
    numba: for an elementwise op, a scalar function (plain Python or ``@njit``)
    compiled into the fused loop; for other ops, ``fn(*arrays, out)`` filling a
    preallocated output.  Without it the compiled function calls ``impl`` from
    Python between kernels (about 1 us per call plus NumPy's time; from object mode
    inside a loop body; a warning says so once per op).
    samples(rng) -> [(input arrays, attrs), ...]: valid inputs for
    ``symdiff.testing.check_op``.

    >>> import numpy as np, symdiff as sd
    >>> def log1mexp_impl(x):  # log(1 - exp(x)) for x < 0, stable on both sides of -log 2
    ...     return np.where(x > -0.6931, np.log(-np.expm1(x)), np.log1p(-np.exp(x)))
    >>> log1mexp = sd.custom_op("doc_log1mexp", log1mexp_impl, elementwise=True,
    ...                         vjp=lambda g, out, x: g / -sd.expm1(-x))
    >>> x = sd.scalar("x")
    >>> y = log1mexp(x)
    >>> float(sd.evaluate(y, {x: -1.0})), float(sd.evaluate(sd.grad(y, x), {x: -1.0}))
    (-0.45867514538708193, -0.5819767068693263)
    >>> float(sd.evaluate(sd.derivative(y, x, 2), {x: -1.0}))  # from the vjp rule alone
    -0.92067359420779...
    """
    if not isinstance(name, str) or not name.isidentifier() or keyword.iskeyword(name) or name.startswith("__"):
        raise CustomOpError(f"custom op name must be an identifier that is not a keyword or a dunder, got {name!r}")
    if name in OPS:
        kind = "a custom op" if OPS[name].user else "a built-in op"
        raise CustomOpError(f"custom op {name!r}: the name is already registered ({kind}); choose another name")
    if not callable(impl):
        raise CustomOpError(f"custom op {name!r}: impl must be a function of NumPy arrays, got {impl!r}")
    if infer is None and not elementwise:
        raise CustomOpError(f"custom op {name!r}: give infer=(*input_types, **attrs) -> TensorType, "
                            f"or elementwise=True")
    if callable(vjp) and not isinstance(vjp, (tuple, list)):
        vjp = (vjp,)
    arity = _arity(name, impl, vjp)
    if vjp is not None and len(vjp) != arity:
        raise CustomOpError(f"custom op {name!r}: {len(vjp)} vjp rules for {arity} inputs")

    if elementwise:
        def infer_type(types, **attrs):
            if len(types) != arity:
                raise DTypeError(f"takes {arity} inputs, got {len(types)}")
            return TensorType(same_dtype(types), broadcast_shapes(*(t.shape for t in types)))
    else:
        def infer_type(types, **attrs):
            result = infer(*types, **attrs)
            if not isinstance(result, TensorType):
                raise CustomOpError(f"custom op {name!r}: infer returned {result!r}, not a sd.TensorType")
            return result

    if jvp is not None:
        jvp = _checked_jvp(name, jvp, elementwise)
    if vjp is not None:
        rules = tuple(None if r is None else _checked_vjp(name, r, i, elementwise) for i, r in enumerate(vjp))
        forward = jvp if jvp is not None else jvp_from_vjp(rules)
    elif jvp is not None:
        forward = jvp
        rules = vjp_from_jvp(jvp, arity)
    else:
        rules = tuple(_missing_rule(name, "reverse mode") for _ in range(arity))
        forward = _missing_rule(name, "forward mode")
    op = Op(
        name,
        infer=infer_type,
        impl=_checked_impl(name, impl, infer_type),
        vjp=rules,
        jvp=forward,
        kind="elementwise" if elementwise and numba is not None else "custom",
        scalar_code=f"_sd_numba_{name}(" + ", ".join(f"{{{k}}}" for k in range(arity)) + ")"
        if elementwise and numba is not None else None,
        samples=samples,
        doc=(inspect.getdoc(impl) or "").split("\n")[0],
        user=True,
    )
    record = CustomOpRecord(op, impl, numba, code_hash(impl, numba), elementwise)
    CUSTOM_OPS[name] = record
    return CustomOp(record, elementwise)


def _checked_vjp(name: str, rule, index: int, elementwise: bool):
    """The user's reverse rule for input ``index``: None means no derivative flows (zeros);
    an elementwise op's broadcast cotangent is summed back to the input's shape."""

    def reverse(cotangent, out, *inputs, **attrs):
        result = rule(cotangent, out, *inputs, **attrs)
        if result is None:
            return zeros_like(inputs[index])
        if not isinstance(result, Expr):
            raise CustomOpError(f"custom op {name!r}: its vjp rule for input {index} returned "
                                f"{type(result).__name__} {result!r}, not a symdiff expression (or None)")
        return reductions.unbroadcast(result, inputs[index].type) if elementwise else result

    return reverse


def _checked_jvp(name: str, rule, elementwise: bool):
    """The user's forward rule; an elementwise op's tangent is broadcast to the output."""

    def forward(tangents, out, *inputs, **attrs):
        result = rule(tangents, out, *inputs, **attrs)
        if result is None:
            return None
        if not isinstance(result, Expr):
            raise CustomOpError(f"custom op {name!r}: its jvp rule returned {type(result).__name__} {result!r}, "
                                f"not a symdiff expression (or None)")
        if elementwise and result.type.shape != out.type.shape:
            result = structure.BROADCAST_LIKE(result, out)
        return result

    return forward


# ------------------------------------------------------- custom_vjp, custom_jvp


class _CustomDerivative:
    """A composite (a Python function of expressions) whose derivative is given by
    the user instead of derived from its body.  The body computes the value; the
    node ``op(body, *inputs)`` passes it on, and its rules send derivatives to the
    inputs, never into the body."""

    def __init__(self, fun: Callable, name: Optional[str] = None):
        functools.update_wrapper(self, fun)
        self.fun = fun
        self.vjp_rule = None
        self.jvp_rule = None
        self.base_name = name or f"custom_{fun.__module__}.{fun.__qualname__}".replace("<", "").replace(">", "")
        self.op_name = self.base_name
        self._op = None
        self._previous = None  # the op registered for earlier rules

    def defvjp(self, rule: Callable) -> Callable:
        """``rule(cotangent, out, *inputs) -> tuple`` with one Expr or None per input."""
        self.vjp_rule = rule
        self._op = None
        return rule

    def defjvp(self, rule: Callable) -> Callable:
        """``rule(tangents, out, *inputs) -> Expr`` (tangents: one Expr or None per input)."""
        self.jvp_rule = rule
        self._op = None
        return rule

    def _make_op(self, arity: int) -> Op:
        name = self.op_name
        if self.vjp_rule is None and self.jvp_rule is None:
            raise CustomOpError(f"{name}: define its derivative with .defvjp(rule) or .defjvp(rule) before use")
        memo: dict = {}

        def user_vjp(cotangent, out, inputs):
            key = (cotangent.id, out.id)
            if key not in memo:
                result = self.vjp_rule(cotangent, out, *inputs)
                if isinstance(result, Expr) or result is None:
                    result = (result,)
                result = tuple(result)
                if len(result) != len(inputs):
                    raise CustomOpError(f"{name}: the vjp rule returned {len(result)} values for "
                                        f"{len(inputs)} inputs")
                memo.clear()  # keep one entry: the rules of one node are asked in a row
                memo[key] = result
            return memo[key]

        def rule_for(index):
            def rule(cotangent, out, body, *inputs):
                share = user_vjp(cotangent, out, inputs)[index]
                return zeros_like(inputs[index]) if share is None else share  # None: no derivative flows

            return rule

        def user_forward(tangents, out, body, *inputs):  # the body's tangent is not used
            return self.jvp_rule(list(tangents[1:]), out, *inputs)

        if self.vjp_rule is not None:
            rules = (None,) + tuple(rule_for(i) for i in range(arity))
        else:
            rules = (None,) + vjp_from_jvp(user_forward, arity + 1)[1:]
        forward = user_forward if self.jvp_rule is not None else jvp_from_vjp(rules)

        def infer(types):
            return types[0]

        def impl(body, *inputs):
            return body

        return Op(name, infer=infer, impl=impl, vjp=rules, jvp=forward, kind="custom_derivative",
                  doc=(inspect.getdoc(self.fun) or "").split("\n")[0], user=True)

    def __call__(self, *args) -> Expr:
        inputs = [F.as_expr(a) for a in args]
        body = self.fun(*inputs)
        if not isinstance(body, Expr):
            raise CustomOpError(f"{self.op_name}: the function must return one symdiff expression, "
                                f"got {type(body).__name__}")
        if self._op is None:
            if self._previous is not None and OPS.get(self.op_name) is self._previous:
                del OPS[self.op_name]  # new rules after a first use: the name means the new record
            else:  # the name is taken when the op is registered: functions made by one factory get #2, #3...
                self.op_name = self.base_name
                for k in itertools.count(2):
                    if self.op_name not in OPS:
                        break
                    self.op_name = f"{self.base_name}#{k}"
            self._op = self._previous = self._make_op(len(inputs))
        if len(inputs) != len(self._op.vjp) - 1:
            raise CustomOpError(f"{self.op_name}: called with {len(inputs)} arguments, first with "
                                f"{len(self._op.vjp) - 1}")
        return make_node(self._op, [body, *inputs], {})


class custom_vjp(_CustomDerivative):  # noqa: N801  (JAX's name)
    """Decorator: a composite whose reverse-mode derivative is ``defvjp``'s rule.

    Forward mode (and so fwd-rev HVPs) work without a jvp rule: the jvp is derived
    from the vjp rule, which is linear in the cotangent.

    >>> import symdiff as sd
    >>> @sd.custom_vjp
    ... def clip_gradient(x):
    ...     return x * 1.0
    >>> _ = clip_gradient.defvjp(lambda g, out, x: (sd.clip(g, -1.0, 1.0),))
    >>> x = sd.vector("x", 2)
    >>> sd.evaluate(sd.grad(sd.sum(clip_gradient(x) * 5.0), x), {x: [1.0, 2.0]})
    array([1., 1.])
    """


class custom_jvp(_CustomDerivative):  # noqa: N801  (JAX's name)
    """Decorator: a composite whose forward-mode derivative is ``defjvp``'s rule
    (reverse mode is derived from it by transposition).

    >>> import symdiff as sd
    >>> @sd.custom_jvp
    ... def safe_norm(x):
    ...     return sd.sqrt(sd.sum(x * x))
    >>> _ = safe_norm.defjvp(lambda ts, out, x: sd.sum(x * ts[0]) / sd.maximum(out, 1e-12))
    >>> x = sd.vector("x", 2)
    >>> sd.evaluate(sd.grad(safe_norm(x), x), {x: [0.0, 0.0]})
    array([0., 0.])
    """
