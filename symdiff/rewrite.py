"""Graph rewrites: small named rules, grouped in passes, run to a fixed point.

``optimize(outputs)`` returns outputs that compute the same values with fewer
nodes: multiplications by one, additions of zeros, double negations, transposes of
transposes, zero gradients flowing through linear ops, constants and repeated
subexpressions are removed.  Nodes are immutable and hash-consed, so the original
graph is never changed: rewritten nodes are new nodes, interned like any other
(which is also what makes common-subexpression elimination nearly free).

The driver walks the graph once in topological order with a memo (old node ->
rewritten node).  Each node is first rebuilt on its rewritten inputs, then the
rules registered for its op are tried until none fires; nodes a rule builds go
through the same process (``Rewriter.make``), so every node the walk returns is
already a fixed point of the rules.  Sweeps repeat until one fires no rule (the
second sweep normally only confirms the fixed point).  Work per node is bounded:
rules look at a node and its inputs (and a few cached per-node facts), never scan
the graph.

Exactness.  Unless ``fast_math=True`` every rule gives bitwise-identical results
for all inputs, infinities, NaNs (NaN stays NaN) and signed zeros included, with
one documented exception, the "rounding" rules: a sum of ``n`` copies of ``s`` is
rewritten to ``s * n``, the exactly rounded value of the sum, which can differ in
the last bit from one particular summation order (and summation order already
differs between backends).  ``fast_math=True`` also applies rules that assume
finite values and ignore the sign of zero (``x * 0 -> 0``, ``x - x -> 0``).

Rules must preserve each node's static type exactly; the driver refuses (and
records in ``RewriteResult.rejected``) any result of another type.
"""

from __future__ import annotations

import heapq
import math
from collections import Counter
from dataclasses import dataclass, field
from typing import Callable, Optional

import numpy as np

from . import ir
from .errors import SymdiffError
from .ir import Expr, as_list, make_node, toposort
from .ops import elementwise as E
from .ops import reductions as R
from .ops import structure as S
from .ops.leaves import CONSTANT, const, numpy_dtype
from .polynomials import collect_polynomials

# ------------------------------------------------------------------ rule tables

EXACT = "exact"
"""Bitwise-identical results for every input (NaN stays NaN; the sign of zero is kept)."""
ROUNDING = "rounding"
"""The exactly rounded value of a sum whose rounding order the reference leaves open."""

PASSES = ("cse", "fold", "algebra", "shape", "zeros", "dce")
"""The passes, in the order their rules are tried on a node."""


@dataclass(frozen=True)
class Rule:
    """One rewrite: ``fn(node, rewriter) -> Expr or None`` (None: does not apply)."""

    name: str
    math: str
    pass_name: str
    ops: tuple
    tier: str
    fn: Callable


RULES: dict[str, Rule] = {}
"""Every rule by name; tests check that each one fires and preserves values."""

ANY_OP = "kind:*"
"""Selects every non-leaf op, including ops registered after this module."""
ELEMENTWISE = "kind:elementwise"
"""Selects every elementwise op, including ops registered after this module."""


def rule(pass_name: str, math_text: str, *op_names: str, tier: str = EXACT):
    """Register the decorated function as a rule of ``pass_name`` for ``op_names``.

    ``math_text`` is the rule in one line, with its condition (``x * 1 -> x``).
    An op name may also be ``ANY_OP`` or ``ELEMENTWISE``.
    """
    if pass_name not in PASSES:
        raise ValueError(f"unknown pass {pass_name!r}")

    def register(fn):
        if fn.__name__ in RULES:
            raise ValueError(f"rule {fn.__name__!r} is registered twice")
        entry = Rule(fn.__name__, math_text, pass_name, op_names, tier, fn)
        RULES[fn.__name__] = entry
        _rule_tables.clear()
        return fn

    return register


def _selects(entry: Rule, op) -> bool:
    if op.user:  # a user's op is opaque: no rule may evaluate, reorder or drop it
        return False
    return op.name in entry.ops or (op.kind != "leaf" and ANY_OP in entry.ops) or (
        op.kind == "elementwise" and ELEMENTWISE in entry.ops)


_rule_tables: dict[tuple, dict] = {}


def _rules_for(passes) -> dict[str, list[Rule]]:
    """{op name: its rules from ``passes``, in pass order}, for the ops registered now."""
    key = (tuple(passes), len(ir.OPS))
    table = _rule_tables.get(key)
    if table is None:
        order = {name: k for k, name in enumerate(PASSES)}
        table = {}
        for op in ir.OPS.values():
            selected = [r for r in RULES.values() if r.pass_name in passes and _selects(r, op)]
            if selected:
                table[op.name] = sorted(selected, key=lambda r: order[r.pass_name])
        _rule_tables[key] = table
    return table


# ------------------------------------------------------------ per-node facts
#
# Three bits, computed once per node from its inputs (bounded work): enough to
# prove that ``x + 0.0`` (x never -0.0) or ``x * 0`` (x finite, sign bit clear)
# is exact for nodes such as casts of booleans, constants, exp, abs and sums.

FINITE = 1  # no inf, no NaN
NONNEG = 2  # sign bit never set and never NaN (so >= +0.0)
NO_NEG_ZERO = 4  # never -0.0
ALL_FACTS = FINITE | NONNEG | NO_NEG_ZERO

_SHAPE_OPS = ("reshape", "transpose", "expand_dims", "squeeze", "slice", "broadcast_to", "broadcast_like")
_FILL_OPS = _SHAPE_OPS  # shape ops whose result is uniform when their (first) input is


def _array_facts(value: np.ndarray) -> int:
    if value.dtype.kind in "biu":
        return FINITE | NO_NEG_ZERO | (NONNEG if value.size == 0 or value.min() >= 0 else 0)
    finite = bool(np.all(np.isfinite(value)))
    signbit = np.signbit(value)
    facts = FINITE if finite else 0
    if not np.any(signbit) and not np.any(np.isnan(value)):
        facts |= NONNEG
    if not np.any(signbit & (value == 0)):
        facts |= NO_NEG_ZERO
    return facts


# ---------------------------------------------------------------- the driver


@dataclass
class RewriteResult:
    """What :func:`rewrite` returns: the new outputs and what happened."""

    outputs: list
    fired: Counter = field(default_factory=Counter)
    sweeps: int = 0
    rejected: list = field(default_factory=list)


MAX_SWEEPS = 8
MAX_STEPS_PER_NODE = 64


class Rewriter:
    """One sweep's state: the memo (node id -> rewritten node) and cached facts.

    Rules receive it as their second argument and use ``make`` to build nodes
    (which rewrites them too), ``fill`` and ``facts`` to inspect inputs.
    """

    def __init__(self, rules_by_op: dict, fast_math: bool, result: RewriteResult):
        self.rules_by_op = rules_by_op
        self.fast_math = fast_math
        self.result = result
        self.memo: dict[int, Expr] = {}
        self._fills: dict[int, Optional[np.ndarray]] = {}
        self._facts: dict[int, int] = {}
        self._context: list[Expr] = []
        self.unordered: dict[tuple, Expr] = {}  # (op, id, id) -> first node seen, for commutative ops
        self.unfinished = 0
        self.first_new_id = ir.new_node_mark()

    # --- building
    def _adopt(self, node: Expr, like: Optional[Expr]):
        """Give a node this rewrite created the origin and note of the node it replaces."""
        if like is not None and node.id not in self.memo:
            ir.inherit_provenance(node, like, self.first_new_id)

    def make(self, op, *inputs, **attrs) -> Optional[Expr]:
        """The rewritten node ``op(*inputs, **attrs)``, or None if that node is invalid."""
        try:
            node = make_node(op, inputs, attrs)
        except SymdiffError:
            return None
        known = self.memo.get(node.id)
        if known is not None:
            return known
        self._adopt(node, self._context[-1] if self._context else None)
        return self.simplify(node)

    def rebuild(self, node: Expr) -> Expr:
        """``node`` on its rewritten inputs, then rewritten itself."""
        known = self.memo.get(node.id)
        if known is not None:
            return known
        inputs = tuple([self.memo[x.id] for x in node.inputs])
        if inputs != node.inputs:  # Expr equality is identity
            rebuilt = make_node(node.op, inputs, node.params)
            self._adopt(rebuilt, node)
            known = self.memo.get(rebuilt.id)
            result = known if known is not None else self.simplify(rebuilt)
        else:
            result = self.simplify(node)
        self.memo[node.id] = result
        return result

    def simplify(self, node: Expr) -> Expr:
        """Apply rules to ``node`` (whose inputs are rewritten) until none fires."""
        chain = [node]
        for _ in range(MAX_STEPS_PER_NODE):
            replacement = self._apply_one(node)
            if replacement is None:
                break
            known = self.memo.get(replacement.id)
            node = replacement if known is None else known
            chain.append(node)
            if known is not None:
                break
        else:
            self.unfinished += 1  # the node may not be a fixed point: the driver sweeps again
        for step in chain:
            self.memo[step.id] = node
        return node

    def _apply_one(self, node: Expr) -> Optional[Expr]:
        rules = self.rules_by_op.get(node.op.name)
        if not rules:
            return None
        self._context.append(node)
        for entry in rules:
            out = entry.fn(node, self)
            if out is None or out is node:
                continue
            if out.type != node.type:
                self.result.rejected.append((entry.name, node, out))
                continue
            self.result.fired[entry.name] += 1
            self._context.pop()
            return out
        self._context.pop()
        return None

    # --- facts about nodes
    def fill(self, x: Expr) -> Optional[np.ndarray]:
        """The single value (0-d array) of every element of ``x``, if ``x`` is uniform.

        Uniform nodes are constants with identical elements (bitwise), and shape
        ops (broadcasts, reshapes, slices...) of uniform nodes.
        """
        # Walk down the chain of shape ops first (a loop, not recursion: chains can be deep).
        chain = []
        while x.id not in self._fills and x.op.name in _FILL_OPS:
            chain.append(x)
            x = x.inputs[0]
        if x.id not in self._fills:
            value = None
            if x.op is CONSTANT:
                array = x.params["value"].array
                if array.size:
                    first = array.reshape(-1)[:1]
                    if array.size == 1 or array.tobytes() == first.tobytes() * array.size:
                        value = first.reshape(())
            self._fills[x.id] = value
        value = self._fills[x.id]
        for node in chain:
            self._fills[node.id] = value
        return value

    def facts(self, x: Expr) -> int:
        """FINITE / NONNEG / NO_NEG_ZERO bits that hold for every element of ``x``."""
        known = self._facts.get(x.id)
        if known is not None:
            return known
        # Inputs before their consumer, with an explicit stack: graphs can be deeper
        # than Python's recursion limit.
        stack = [x]
        while stack:
            node = stack[-1]
            if node.id in self._facts:
                stack.pop()
                continue
            pending = [i for i in node.inputs if i.id not in self._facts]
            if pending:
                stack.extend(pending)
                continue
            self._facts[node.id] = _facts_of(self, node)
            stack.pop()
        return self._facts[x.id]

    def never_neg_zero(self, x: Expr) -> bool:
        return self.fast_math or bool(self.facts(x) & NO_NEG_ZERO)

    def finite_nonneg(self, x: Expr) -> bool:
        """``x * (+0.0)`` is exactly +0.0 (or fast_math ignores inf, NaN and signs)."""
        return self.fast_math or self.facts(x) & (FINITE | NONNEG) == FINITE | NONNEG

    # --- helpers for rules
    def fill_like(self, value, node: Expr, refs=()) -> Optional[Expr]:
        """A uniform node of ``node``'s type holding ``value``, or None.

        Scalars become constants, static shapes ``broadcast_to``; a shape known only
        at run time needs a node among ``refs`` with exactly ``node``'s static shape
        (its run-time shape is then ``node``'s, since None never broadcasts).
        """
        value = np.asarray(value)
        if value.dtype != numpy_dtype(node.dtype):
            return None
        c = const(value, node.dtype)
        shape = node.type.shape
        if not shape:
            return c
        if None not in shape:
            return self.make(S.BROADCAST_TO, c, shape=shape)
        ref = self.shape_ref(node, refs)
        return None if ref is None else self.make(S.BROADCAST_LIKE, c, ref)

    def shape_ref(self, node: Expr, candidates) -> Optional[Expr]:
        """A node among ``candidates`` (or their broadcast refs) with ``node``'s static shape."""
        shape = node.type.shape
        for x in candidates:
            if x.type.shape == shape and x is not node:
                return x
            if x.op is S.BROADCAST_LIKE and x.inputs[1].type.shape == shape:
                return x.inputs[1]
        return None

    def widen(self, x: Expr, node: Expr, refs=()) -> Optional[Expr]:
        """``x`` broadcast to ``node``'s type (x itself when the types agree), or None."""
        if x.type == node.type:
            return x
        if x.dtype != node.dtype:
            return None
        shape = node.type.shape
        if None not in shape:
            return self.make(S.BROADCAST_TO, x, shape=shape)
        ref = self.shape_ref(node, refs)
        return None if ref is None else self.make(S.BROADCAST_LIKE, x, ref)


def _facts_of(rw: Rewriter, x: Expr) -> int:
    name = x.op.name
    if x.op is CONSTANT:
        return _array_facts(x.params["value"].array)
    if not x.type.is_float:
        return ALL_FACTS if x.dtype == "bool" else FINITE | NO_NEG_ZERO
    inputs = [rw.facts(i) for i in x.inputs]
    if name == "cast":
        source = x.inputs[0].dtype
        if source == "bool":
            return ALL_FACTS
        if source == "int64":
            return FINITE | NO_NEG_ZERO
        if source == "float32" or source == x.dtype:
            return inputs[0]
        return inputs[0] & NONNEG  # float64 -> float32 may overflow or underflow to -0.0
    if name in _SHAPE_OPS or name in ("stop_gradient", "concatenate"):
        return _and_all(inputs)
    if name == "scatter_slice":
        return inputs[0]  # the rest is +0.0
    if name == "where":
        return inputs[1] & inputs[2]
    if name == "abs":
        return NO_NEG_ZERO | (FINITE | NONNEG if inputs[0] & FINITE else 0)
    if name == "neg":
        return inputs[0] & FINITE
    if name in ("exp", "sigmoid", "softplus", "sech2"):  # results in [+0, inf] or NaN
        finite_in = inputs[0] & FINITE
        bounded = name in ("sigmoid", "sech2")  # in [0, 1]
        return NO_NEG_ZERO | (NONNEG if finite_in else 0) | (FINITE if bounded and finite_in else 0)
    if name in ("sin", "cos", "tanh"):
        return inputs[0] & FINITE
    if name == "add":  # a sum is -0.0 only when both terms are
        a, b = inputs
        return ((a | b) & NO_NEG_ZERO) | (a & b & NONNEG)
    if name == "mul":  # finite, sign-bit-clear factors: the product is >= +0.0 (maybe inf)
        both = inputs[0] & inputs[1]
        return NONNEG | NO_NEG_ZERO if both & FINITE and both & NONNEG else 0
    if name == "sum":  # NumPy's sums start from +0.0, so a sum is never -0.0
        return NO_NEG_ZERO | (inputs[0] & NONNEG)
    return 0


def _and_all(facts) -> int:
    out = ALL_FACTS
    for f in facts:
        out &= f
    return out


def rewrite(outputs, passes=PASSES, fast_math=False, after_sweep=None) -> RewriteResult:
    """Run the rules of ``passes`` over ``outputs`` to a fixed point.

    Returns a :class:`RewriteResult` whose ``outputs`` is always a list.
    ``after_sweep(outputs)`` is called after every sweep (tests pass
    :func:`symdiff.verify`).

    One sweep normally reaches the fixed point: every node it returns had the
    rules applied until none fired, on inputs that were fixed points already, and
    a rule only looks at the sub-graph below its node, which no longer changes.
    Another sweep runs only if some node hit ``MAX_STEPS_PER_NODE``.

    >>> import symdiff as sd
    >>> x = sd.scalar("x")
    >>> result = rewrite(-(-x) * 1.0)
    >>> result.outputs[0] is x, sorted(result.fired)
    (True, ['mul_one', 'neg_neg'])
    """
    outs, _ = as_list(outputs)
    unknown = set(passes) - set(PASSES)
    if unknown:
        raise ValueError(f"unknown passes {sorted(unknown)}; the passes are {PASSES}")
    rules_by_op = _rules_for(passes)
    result = RewriteResult(outputs=outs)
    for _ in range(MAX_SWEEPS):
        rw = Rewriter(rules_by_op, fast_math, result)
        with ir.gc_paused():
            for node in toposort(result.outputs):
                rw.rebuild(node)
        result.outputs = [rw.memo[o.id] for o in result.outputs]
        result.sweeps += 1
        if after_sweep is not None:
            after_sweep(result.outputs)
        if not rw.unfinished:
            break
    return result


def optimize(outputs, fast_math=False):
    """Equivalent outputs with fewer nodes (one Expr -> one Expr, a list -> a list).

    The original graph is not changed.  With ``fast_math=True`` rules that assume
    finite values and ignore the sign of zero also apply (``x * 0 -> 0``), and like
    terms of scalar polynomials are collected (``a*b + 2*b*a -> 3*(a*b)``, see
    ``symdiff/polynomials.py``), which reassociates sums and products.

    >>> import symdiff as sd
    >>> a, b = sd.scalars("a b")
    >>> e = (a + b) * (b + 1)
    >>> de_da, de_db = sd.optimize(sd.grad(e, [a, b]))
    >>> de_da is b + 1, de_db is (a + b) + (b + 1)
    (True, True)
    """
    outs, single = as_list(outputs)
    new = rewrite(outs, fast_math=fast_math).outputs
    if fast_math:
        collected = collect_polynomials(new)
        if any(a is not b for a, b in zip(collected, new)):
            new = rewrite(collected, fast_math=True).outputs
    return new[0] if single else new


# =========================================================================== rules
#
# Each rule's one line of math is its first decorator argument.  ``fill`` values
# are 0-d arrays of the node's dtype; "0" below means +0.0, "-0.0" the negative zero.


def _is(value, number, negative_zero=False) -> bool:
    """``value`` (a 0-d array or None) equals ``number``; for zero, with the given sign."""
    if value is None or value.dtype == np.bool_ and number not in (0, 1):
        return False
    if value != number:
        return False
    return number != 0 or value.dtype.kind != "f" or bool(np.signbit(value)) == negative_zero


# ----------------------------------------------------------------------- cse

_COMMUTATIVE = ("add", "mul", "equal", "not_equal", "logical_and", "logical_or")


@rule("cse", "y op x -> x op y when x op y exists (one node for both orders; + and * commute in IEEE)",
      *_COMMUTATIVE)
def commute_inputs(node, rw):
    x, y = node.inputs
    key = (node.op, x.id, y.id) if x.id < y.id else (node.op, y.id, x.id)
    first = rw.unordered.setdefault(key, node)
    return None if first is node else first


# ---------------------------------------------------------------------- fold

FOLD_MAX_ELEMENTS = 1024
"""Constant folding evaluates a node only when its inputs and result together hold
at most this many elements, so folded constants stay small."""


def _evaluate(node, args):
    """Run ``node``'s impl on ``args`` as the reference evaluator does, or None."""
    try:
        with np.errstate(all="ignore"):
            out = np.asarray(node.op.impl(*args, **node.params))
    except (ValueError, IndexError, TypeError, ArithmeticError):
        return None
    return out.astype(numpy_dtype(node.dtype), copy=False)


@rule("fold", "op(c1, ..., ck) -> c evaluated with op.impl (small constants only)", ANY_OP)
def fold_constants(node, rw):
    if node.op in (S.BROADCAST_TO, S.BROADCAST_LIKE):
        return None  # a broadcast of a constant is a cheap fill; materialising it only costs memory
    for x in node.inputs:
        if x.op is not CONSTANT:
            return None
    if None in node.type.shape:
        return None
    arrays = [x.params["value"].array for x in node.inputs]
    if sum(a.size for a in arrays) + math.prod(node.type.shape) > FOLD_MAX_ELEMENTS:
        return None
    out = _evaluate(node, arrays)
    if out is None or out.shape != node.type.shape:
        return None
    return const(out, node.dtype)


@rule("fold", "f(fill a, fill b) -> fill f(a, b) for elementwise f", ELEMENTWISE)
def fold_uniform(node, rw):
    if not node.type.shape:
        return None  # scalars: all inputs are scalar constants, fold_constants' job
    values = []
    for x in node.inputs:
        value = rw.fill(x)
        if value is None:
            return None
        values.append(value)
    out = _evaluate(node, values)
    return None if out is None or out.shape != () else rw.fill_like(out, node, node.inputs)


def _is_canonical_fill(x: Expr) -> bool:
    return x.op in (S.BROADCAST_TO, S.BROADCAST_LIKE) and x.inputs[0].op is CONSTANT and x.inputs[0].ndim == 0


@rule("fold", "shape_op(fill a) -> fill a (reshape, transpose, slice, broadcast, expand_dims, squeeze)", *_FILL_OPS)
def fold_shape_of_fill(node, rw):
    value = rw.fill(node.inputs[0])
    if value is None or _is_canonical_fill(node):
        return None
    refs = [node.inputs[1]] if node.op is S.BROADCAST_LIKE else []
    return rw.fill_like(value, node, refs)


@rule("fold", "concatenate(fill a, ..., fill a) -> fill a", "concatenate")
def fold_concatenate_fills(node, rw):
    values = [rw.fill(x) for x in node.inputs]
    first = values[0]
    if first is None or any(v is None or v.tobytes() != first.tobytes() for v in values):
        return None
    return rw.fill_like(first, node)


@rule("fold", "dim(x, axis) -> n when the axis has the static size n", "dim")
def dim_static(node, rw):
    size = node.inputs[0].type.shape[node.params["axis"]]
    return None if size is None else const(size, "int64")


def _static_count(x: Expr, axes) -> Optional[int]:
    sizes = [x.type.shape[a] for a in axes]
    return None if None in sizes else math.prod(sizes)


def _sum_is_exact(value: np.ndarray, count: int) -> bool:
    """Every partial sum k * value (k <= count) is exact, so any order gives count * value.

    True for integers, zeros, infinities and NaN, and for floats whose significand
    (without trailing zero bits) times ``count`` fits in the format's precision.
    """
    if value.dtype.kind != "f" or not np.isfinite(value) or value == 0:
        return True
    bits = 24 if value.dtype == np.float32 else 53
    mantissa, _ = math.frexp(abs(float(value)))
    significand = int(mantissa * 2**bits)
    odd = significand >> ((significand & -significand).bit_length() - 1)
    return odd * count < 2**bits


@rule("fold", "sum(fill a) over n elements -> fill n * a when every partial sum is exact (always for 0)", "sum")
def fold_sum_of_fill(node, rw):
    x = node.inputs[0]
    value = rw.fill(x)
    count = _static_count(x, node.params["axes"])
    if value is None or count is None or node.dtype == "bool" or not _sum_is_exact(value, count):
        return None
    with np.errstate(all="ignore"):
        # n * a, then + 0 because NumPy's sums start from +0.0 (a sum of -0.0s is +0.0).
        total = np.multiply(value, count, dtype=value.dtype) + value.dtype.type(0) if count else np.zeros_like(value)
    return rw.fill_like(np.asarray(total, dtype=value.dtype), node)


@rule("fold", "max(fill a) -> fill a, min(fill a) -> fill a over a non-empty static axis set", "max", "min")
def fold_extremum_of_fill(node, rw):
    x = node.inputs[0]
    value = rw.fill(x)
    count = _static_count(x, node.params["axes"])
    if node.params.get("initial") is not None:  # min(fill a, initial): not a alone
        return None
    return None if value is None or not count else rw.fill_like(value, node)


# ------------------------------------------------------------------- algebra


@rule("algebra", "x + (-0.0) -> x;  (-0.0) + x -> x", "add")
def add_neg_zero(node, rw):
    x, y = node.inputs
    for keep, other in ((x, y), (y, x)):
        if _is(rw.fill(other), 0, negative_zero=True):
            return rw.widen(keep, node, [other])
    return None


@rule("algebra", "x + 0 -> x;  0 + x -> x   if x is never -0.0 (or fast_math)", "add")
def add_zero(node, rw):
    x, y = node.inputs
    for keep, other in ((x, y), (y, x)):
        if _is(rw.fill(other), 0) and rw.never_neg_zero(keep):
            return rw.widen(keep, node, [other])
    return None


@rule("algebra", "x + (-y) -> x - y;  (-x) + y -> y - x", "add")
def add_neg(node, rw):
    x, y = node.inputs
    if y.op is E.NEG:
        return rw.make(E.SUB, x, y.inputs[0])
    if x.op is E.NEG:
        return rw.make(E.SUB, y, x.inputs[0])
    return None


@rule("algebra", "x - 0 -> x;  x - (-0.0) -> x   if x is never -0.0 (or fast_math)", "sub")
def sub_zero(node, rw):
    x, y = node.inputs
    value = rw.fill(y)
    if _is(value, 0) or _is(value, 0, negative_zero=True) and rw.never_neg_zero(x):
        return rw.widen(x, node, [y])
    return None


@rule("algebra", "(-0.0) - x -> -x;  0 - x -> -x   only with fast_math (0 - 0 is +0.0)", "sub")
def sub_from_zero(node, rw):
    x, y = node.inputs
    value = rw.fill(x)
    if _is(value, 0, negative_zero=True) or rw.fast_math and _is(value, 0):
        negated = rw.make(E.NEG, y)
        return None if negated is None else rw.widen(negated, node, [x])
    return None


@rule("algebra", "x - (-y) -> x + y", "sub")
def sub_neg(node, rw):
    x, y = node.inputs
    return rw.make(E.ADD, x, y.inputs[0]) if y.op is E.NEG else None


@rule("algebra", "x - x -> 0   only with fast_math (inf - inf is NaN)", "sub")
def sub_self(node, rw):
    x, y = node.inputs
    if not rw.fast_math or x is not y:
        return None
    return rw.fill_like(np.zeros((), numpy_dtype(node.dtype)), node, [x])


@rule("algebra", "x * 1 -> x;  1 * x -> x", "mul")
def mul_one(node, rw):
    x, y = node.inputs
    for keep, other in ((x, y), (y, x)):
        if _is(rw.fill(other), 1):
            return rw.widen(keep, node, [other])
    return None


@rule("algebra", "x * -1 -> -x;  -1 * x -> -x", "mul")
def mul_minus_one(node, rw):
    x, y = node.inputs
    if node.dtype == "bool":
        return None
    for keep, other in ((x, y), (y, x)):
        if _is(rw.fill(other), -1):
            negated = rw.make(E.NEG, keep)
            return None if negated is None else rw.widen(negated, node, [other])
    return None


def _power_of_two_above_one(value) -> bool:
    """``value`` (a 0-d float array) is 2, 4, 8, ...: multiplying by it is exact unless it overflows."""
    if value is None or value.dtype.kind != "f" or not np.isfinite(value) or value < 2:
        return False
    mantissa, _ = math.frexp(float(value))
    return mantissa == 0.5


@rule("algebra", "c * (x * 2^k) -> (c * 2^k) * x   if k >= 1, |c| >= 1 and c * 2^k is finite", "mul")
def fold_power_of_two_scaling(node, rw):
    # Exact: x * 2^k is x scaled without rounding unless it overflows, and then
    # |c * 2^k * x| >= |x * 2^k| overflows too, to the same signed inf.  Gradients
    # make these chains (d(c * x**2) = c * (x * 2)).
    if node.dtype not in ("float32", "float64"):
        return None
    for outer, inner in node.inputs, node.inputs[::-1]:
        c = rw.fill(outer)
        if c is None or inner.op is not E.MUL or not np.isfinite(c) or abs(c) < 1:
            continue
        for scale, x in inner.inputs, inner.inputs[::-1]:
            two_k = rw.fill(scale)
            if not _power_of_two_above_one(two_k):
                continue
            with np.errstate(over="ignore"):
                folded = np.multiply(c, two_k, dtype=c.dtype)
            if not np.isfinite(folded):
                continue
            product = rw.make(E.MUL, const(folded, node.dtype), x)
            return None if product is None else rw.widen(product, node, [outer, inner, x])
    return None


@rule("algebra", "(-x) * (-y) -> x * y;  (-x) / (-y) -> x / y", "mul", "div")
def neg_times_neg(node, rw):
    x, y = node.inputs
    if x.op is E.NEG and y.op is E.NEG:
        return rw.make(node.op, x.inputs[0], y.inputs[0])
    return None


@rule("algebra", "x / 1 -> x;  x / -1 -> -x", "div")
def div_one(node, rw):
    x, y = node.inputs
    value = rw.fill(y)
    if _is(value, 1):
        return rw.widen(x, node, [y])
    if _is(value, -1):
        negated = rw.make(E.NEG, x)
        return None if negated is None else rw.widen(negated, node, [y])
    return None


@rule("algebra", "-(-x) -> x", "neg")
def neg_neg(node, rw):
    (x,) = node.inputs
    return x.inputs[0] if x.op is E.NEG else None


@rule("algebra", "x ** 1 -> x", "pow")
def pow_one(node, rw):
    x, y = node.inputs
    return rw.widen(x, node, [y]) if _is(rw.fill(y), 1) else None


@rule("algebra", "x ** 0 -> 1;  1 ** y -> 1   (pow(NaN, 0) and pow(1, NaN) are 1)", "pow")
def pow_to_one(node, rw):
    x, y = node.inputs
    if _is(rw.fill(y), 0) or _is(rw.fill(y), 0, negative_zero=True) or _is(rw.fill(x), 1):
        return rw.fill_like(np.ones((), numpy_dtype(node.dtype)), node, node.inputs)
    return None


@rule("algebra", "where(c, x, x) -> x", "where")
def where_same(node, rw):
    c, x, y = node.inputs
    return rw.widen(x, node, [c]) if x is y else None


@rule("algebra", "where(True, x, y) -> x;  where(False, x, y) -> y", "where")
def where_constant(node, rw):
    c, x, y = node.inputs
    value = rw.fill(c)
    if value is None:
        return None
    return rw.widen(x if value else y, node, [c, x, y])


@rule("algebra", "where(not c, x, y) -> where(c, y, x)", "where")
def where_not(node, rw):
    c, x, y = node.inputs
    return rw.make(E.WHERE, c.inputs[0], y, x) if c.op is E.LOGICAL_NOT else None


@rule("algebra", "maximum(x, x) -> x;  minimum(x, x) -> x", "maximum", "minimum")
def extremum_same(node, rw):
    x, y = node.inputs
    return x if x is y else None


@rule("algebra", "not (not c) -> c", "logical_not")
def not_not(node, rw):
    (x,) = node.inputs
    return x.inputs[0] if x.op is E.LOGICAL_NOT else None


_LOSSLESS_CASTS = {("bool", "int64"), ("bool", "float32"), ("bool", "float64"), ("float32", "float64")}


@rule("algebra", "cast(x, dtype of x) -> x;  cast(cast(x, wider), dtype of x) -> x for lossless widening", "cast")
def cast_roundtrip(node, rw):
    (x,) = node.inputs
    if x.dtype == node.dtype:
        return x
    if x.op is E.CAST and (x.inputs[0].dtype, x.dtype) in _LOSSLESS_CASTS and x.inputs[0].dtype == node.dtype:
        return x.inputs[0]
    return None


# --------------------------------------------------------------------- shape


@rule("shape", "transpose(x, (0, 1, ..., n-1)) -> x", "transpose")
def transpose_identity(node, rw):
    axes = node.params["axes"]
    return node.inputs[0] if tuple(axes) == tuple(range(len(axes))) else None


@rule("shape", "transpose(transpose(x, p), q) -> transpose(x, p[q])", "transpose")
def transpose_transpose(node, rw):
    (x,) = node.inputs
    if x.op is not S.TRANSPOSE:
        return None
    inner, outer = x.params["axes"], node.params["axes"]
    axes = tuple(inner[a] for a in outer)
    if axes == tuple(range(len(axes))):
        return x.inputs[0]
    return rw.make(S.TRANSPOSE, x.inputs[0], axes=axes)


_RESHAPE_LIKE = ("reshape", "expand_dims", "squeeze")


@rule("shape", "reshape(x, shape of x) -> x;  reshape-like(reshape-like(x)) -> x when the types agree", *_RESHAPE_LIKE)
def reshape_noop(node, rw):
    (x,) = node.inputs
    if node.op is S.RESHAPE and x.type == node.type:
        return x  # a reshape's output has at most one None, so equal types mean equal run-time shapes
    if x.op.name in _RESHAPE_LIKE and x.inputs[0].type == node.type:
        inner = x.inputs[0]
        # Rows stay in order through reshape, expand_dims and squeeze, so the
        # composite is the identity when it gives back the input's type, provided
        # the run-time shape is determined (at most one None, or no reshape at all).
        if inner.type.shape.count(None) <= 1 or (node.op is not S.RESHAPE and x.op is not S.RESHAPE):
            return inner
    return None


@rule("shape", "reshape(reshape-like(x), s) -> reshape(x, s)", "reshape")
def reshape_reshape(node, rw):
    (x,) = node.inputs
    if x.op.name not in _RESHAPE_LIKE:
        return None
    return rw.make(S.RESHAPE, x.inputs[0], shape=node.params["shape"])


@rule("shape", "broadcast_to(x, shape of x) -> x;  broadcast_like(x, r) -> x when x has the result's type",
      "broadcast_to", "broadcast_like")
def broadcast_noop(node, rw):
    x = node.inputs[0]
    return x if x.type == node.type else None


@rule("shape", "broadcast(broadcast(x, s), t) -> broadcast(x, t)", "broadcast_to", "broadcast_like")
def broadcast_broadcast(node, rw):
    x = node.inputs[0]
    if x.op not in (S.BROADCAST_TO, S.BROADCAST_LIKE):
        return None
    return rw.make(node.op, x.inputs[0], *node.inputs[1:], **node.params)


def _broadcast_source(x: Expr) -> Optional[Expr]:
    """What ``x`` broadcasts, if ``x`` only broadcasts (or adds leading axes to) it."""
    if x.op is S.BROADCAST_TO or x.op is S.BROADCAST_LIKE:
        return x.inputs[0]
    if x.op is S.EXPAND_DIMS and x.params["axes"] == tuple(range(len(x.params["axes"]))):
        return x.inputs[0]
    return None


@rule("shape", "f(broadcast(x), y) -> f(x, y) for elementwise f when the result keeps its type (f broadcasts)",
      ELEMENTWISE)
def elementwise_implicit_broadcast(node, rw):
    inputs = list(node.inputs)
    if len(inputs) < 2:
        return None
    for k, x in enumerate(inputs):
        source = _broadcast_source(x)
        if source is None:
            continue
        if x.op is S.BROADCAST_LIKE and None in x.type.shape and x.inputs[1] not in inputs:
            continue  # dropping it would drop the run-time check that its reference's size matches
        trial = inputs[:k] + [source] + inputs[k + 1:]
        try:
            if node.op.infer(tuple(t.type for t in trial), **node.params) != node.type:
                continue
        except SymdiffError:
            continue
        return rw.make(node.op, *trial, **node.params)
    return None


@rule("shape", "x[:, ..., :] -> x", "slice")
def slice_full(node, rw):
    (x,) = node.inputs
    index = node.params["index"]
    full = all(isinstance(e, tuple) and e[2] == 1 and e[0] in (None, 0) and e[1] is None for e in index)
    return x if full and x.type == node.type else None


@rule("shape", "scatter_slice(g, r, i)[i] -> g", "slice")
def slice_of_scatter(node, rw):
    (x,) = node.inputs
    if x.op is S.SCATTER_SLICE and x.params["index"] == node.params["index"]:
        return x.inputs[0]
    return None


@rule("shape", "concatenate([x]) -> x", "concatenate")
def concatenate_one(node, rw):
    return node.inputs[0] if len(node.inputs) == 1 else None


@rule("shape", "sum(x, axes=()) -> x   if x is never -0.0 (NumPy adds +0.0) (or fast_math)", "sum")
def sum_no_axes(node, rw):
    (x,) = node.inputs
    return x if not node.params["axes"] and rw.never_neg_zero(x) else None


@rule("shape", "sum(broadcast(s), axes) of a scalar s -> s * n (n static)", "sum", tier=ROUNDING)
def sum_of_broadcast(node, rw):
    x = node.inputs[0]
    if x.op not in (S.BROADCAST_TO, S.BROADCAST_LIKE) or x.inputs[0].ndim or not node.type.is_float:
        return None
    s = x.inputs[0]
    count = _static_count(x, node.params["axes"])
    if count is None:
        return None
    if count == 0:
        return rw.fill_like(np.zeros((), numpy_dtype(node.dtype)), node)
    total = s if count == 1 else rw.make(E.MUL, s, const(count, node.dtype))
    if not rw.never_neg_zero(s):
        # NumPy's sum starts from +0.0, so a sum of -0.0s is +0.0: keep that.
        total = rw.make(E.ADD, total, const(0, node.dtype))
    return None if total is None else rw.widen(total, node)


# --------------------------------------------------------------------- zeros


@rule("zeros", "x * 0 -> 0;  0 * x -> 0   if x is finite and >= +0.0 (or fast_math)", "mul")
def mul_zero(node, rw):
    x, y = node.inputs
    for keep, zero in ((x, y), (y, x)):
        if _is(rw.fill(zero), 0) and rw.finite_nonneg(keep) and node.type.is_float:
            return rw.fill_like(rw.fill(zero), node, node.inputs)
    return None


@rule("zeros", "0 / x -> 0   only with fast_math (0 / 0 is NaN)", "div")
def zero_div(node, rw):
    x, y = node.inputs
    if rw.fast_math and _is(rw.fill(x), 0):
        return rw.fill_like(rw.fill(x), node, node.inputs)
    return None


@rule("zeros", "A @ 0 -> 0;  0 @ B -> 0   if the other operand is finite and >= +0.0 (or fast_math)", "matmul")
def matmul_zero(node, rw):
    a, b = node.inputs
    for keep, zero in ((a, b), (b, a)):
        if _is(rw.fill(zero), 0) and rw.finite_nonneg(keep):
            return rw.fill_like(rw.fill(zero), node)
    return None


@rule("algebra", "A @ B -> A * B + 0.0   if the contracted size is statically 1 on both sides and both are "
                 "float matrices (an outer product; + 0.0 gives matmul's +0.0 for a -0.0 product)", "matmul")
def matmul_outer(node, rw):
    # One product per element: as a broadcasting multiply it fuses into the loop that reads
    # it, where gemm with k = 1 was a BLAS call and an array (the outer products of
    # backprop through a loop's matrix-vector step, once per step).
    a, b = node.inputs
    if a.ndim < 2 or b.ndim < 2 or node.dtype not in ("float32", "float64"):
        return None
    if a.type.shape[-1] != 1 or b.type.shape[-2] != 1:  # a run-time size needs matmul's check
        return None
    product = rw.make(E.MUL, a, b)
    return None if product is None else rw.make(E.ADD, product, const(0.0, node.dtype))


@rule("algebra", "A @ B -> sum(A, -1) * v, or v * sum(B, -2), when the other operand is a fill of v = +-1 "
                 "(2-d floats; v from a one-element slice of the fill, 0 for an empty contraction)", "matmul",
      tier=ROUNDING)
def matmul_of_fill(node, rw):
    # The gradient of sum(X @ W) multiplies by the cotangent of the sum, a fill of 1: as
    # gemm, X.T @ 1 and 1 @ W.T cost a whole product each (value+grad 2.65x the value at
    # 20,000 x 30 @ 30 x 64), where they are a row sum and a column sum.  v is read from
    # the fill itself (a one-element slice, summed: v, or 0 when the contracted size is 0 at
    # run time), so the product has the matmul's run-time shape without a shape reference.
    # Only v = +-1: v * sum(b) is then sum(v * b) in another order (ROUNDING).
    a, b = node.inputs
    if a.ndim != 2 or b.ndim != 2 or node.dtype not in ("float32", "float64"):
        return None
    for uniform, other, uniform_is_left in ((b, a, False), (a, b, True)):
        value = rw.fill(uniform)
        if value is None or not (value == 1 or value == -1):
            continue
        whole, first = (None, None, 1), (0, 1, 1)
        if uniform_is_left:  # (m, 1) from the fill, (1, n) column sums of B
            edge = rw.make(R.SUM, rw.make(S.SLICE, uniform, index=(whole, first)), axes=(1,), keepdims=True)
            sums = rw.make(R.SUM, other, axes=(0,), keepdims=True)
            product = None if edge is None or sums is None else rw.make(E.MUL, edge, sums)
        else:  # (m, 1) row sums of A, (1, n) from the fill
            sums = rw.make(R.SUM, other, axes=(1,), keepdims=True)
            edge = rw.make(R.SUM, rw.make(S.SLICE, uniform, index=(first, whole)), axes=(0,), keepdims=True)
            product = None if edge is None or sums is None else rw.make(E.MUL, sums, edge)
        if product is not None and product.type == node.type:
            return product
    return None


@rule("zeros", "scatter_slice(0, r, i) -> 0", "scatter_slice")
def scatter_zero(node, rw):
    g, ref = node.inputs
    value = rw.fill(g)
    return rw.fill_like(value, node, [ref]) if _is(value, 0) else None


# ----------------------------------------------------------------------- dce
#
# DCE proper is implicit: the result holds only what its outputs reach.  These
# rules cut the dependencies that exist only for a shape: ``zeros_like(x)`` is
# ``broadcast_like(0, x)``, which would otherwise keep computing ``x``.


@rule("dce", "broadcast_like(x, r) -> broadcast_to(x, shape) when r's shape is static (r is no longer needed)",
      "broadcast_like")
def broadcast_static(node, rw):
    if None in node.type.shape:
        return None
    return rw.make(S.BROADCAST_TO, node.inputs[0], shape=node.type.shape)


def _same_shape_source(ref: Expr) -> Optional[Expr]:
    """The deepest node reached through inputs of ``ref``'s exact static shape (so the
    same run-time shape), through ops whose result shape is their inputs' broadcast shape;
    None if ``ref`` has no such input.  Followed in a loop: one step per rewrite recursed
    once per layer of a deep graph (a 100-layer chain on a vector of run-time size hit
    Python's recursion limit)."""
    source = None
    while ref.op.kind == "elementwise" or ref.op is S.BROADCAST_LIKE:
        candidates = ref.inputs if ref.op.kind == "elementwise" else ref.inputs[1:]
        step = next((x for x in candidates if x.type.shape == ref.type.shape), None)
        if step is None:
            break
        source = ref = step
    return source


@rule("dce", "broadcast_like(x, f(r, ...)) -> broadcast_like(x, r) when r has f's shape (f elementwise)",
      "broadcast_like")
def broadcast_ref_source(node, rw):
    x, ref = node.inputs
    source = _same_shape_source(ref)
    return None if source is None else rw.make(S.BROADCAST_LIKE, x, source)


@rule("dce", "dim(f(r, ...), axis) -> dim(r, axis) when r has f's shape (f elementwise)", "dim")
def dim_ref_source(node, rw):
    source = _same_shape_source(node.inputs[0])
    return None if source is None else rw.make(S.DIM, source, axis=node.params["axis"])


# ============================================================ elementwise regions


@dataclass(eq=False)
class Region:
    """A set of elementwise nodes a code generator can compute in one loop nest.

    nodes: the region's nodes, in topological order.
    inputs: nodes outside the region that its nodes read, in topological order.
    outputs: the region's nodes that are needed outside it (read by another node
        or a graph output), in topological order.
    shape: the static shape every node of the region has.
    """

    nodes: list
    inputs: list
    outputs: list
    shape: tuple


def _fusible(producer: Expr, consumer: Expr) -> bool:
    return (
        producer.op.kind == "elementwise"
        and consumer.op.kind == "elementwise"
        and producer.inputs != ()
        and producer.type.shape == consumer.type.shape
    )


def fusion_schedule(outputs) -> list:
    """The graph of ``outputs`` as steps in an executable order, each step either a
    :class:`Region` of elementwise nodes to compute in one loop nest, or one
    other node (leaf, reduction, shape op, matmul...).

    Contract (what a code generator may rely on):

    * every non-leaf node of kind "elementwise" is in exactly one region (regions
      of one node included), and no other node is in any;
    * all nodes of a region have the same static shape (``Region.shape``), so one
      loop nest computes them; a region's inputs may be smaller (they broadcast);
    * contracting each region to one node leaves the graph acyclic, so a region
      can be computed as one kernel once its inputs exist;
    * the regions are returned in an order in which that is possible (each
      region's inputs are leaves, non-elementwise nodes, or outputs of earlier
      regions), and every node comes after its inputs.

    How: each node gets a level, the maximum over its inputs of the input's level,
    plus one when the edge leaves an elementwise node without being fusible (the
    consumer is not elementwise or has another shape).  A region is a connected
    set of fusible edges within one level.  A path that leaves a region raises
    the level and levels never decrease, so it cannot come back: no cycles.  The
    greedy regions are maximal for that criterion; the work is linear.

    >>> import symdiff as sd
    >>> x, W = sd.vector("x", 3), sd.matrix("W", (3, 3))
    >>> steps = fusion_schedule(sd.tanh(W @ x) * 2.0)
    >>> [s.op.name if isinstance(s, sd.Expr) else [n.op.name for n in s.nodes]
    ...  for s in steps if not (isinstance(s, sd.Expr) and s.op.kind == "leaf")]
    ['matmul', ['tanh', 'mul']]
    """
    nodes = toposort(outputs)
    level: dict[int, int] = {}
    parent: dict[int, int] = {}

    def find(i):
        root = i
        while parent[root] != root:
            root = parent[root]
        while parent[i] != root:
            parent[i], i = root, parent[i]
        return root

    for node in nodes:
        lvl = 0
        for x in node.inputs:
            step = 1 if x.op.kind == "elementwise" and x.inputs and not _fusible(x, node) else 0
            lvl = max(lvl, level[x.id] + step)
        level[node.id] = lvl
        if node.op.kind == "elementwise" and node.inputs:
            parent[node.id] = node.id
            for x in node.inputs:
                if _fusible(x, node) and level[x.id] == lvl:
                    parent[find(x.id)] = find(node.id)

    members: dict[int, list] = {}
    for node in nodes:
        if node.id in parent:
            members.setdefault(find(node.id), []).append(node)
    users: dict[int, set] = {}
    for node in nodes:
        for x in node.inputs:
            users.setdefault(x.id, set()).add(find(node.id) if node.id in parent else -1 - node.id)
    output_ids = {o.id for o in as_list(outputs)[0]}
    regions = {}
    for root, group in members.items():
        inside = {n.id for n in group}
        external = {x.id: x for n in group for x in n.inputs if x.id not in inside}
        outs = [n for n in group if n.id in output_ids or any(u != root for u in users.get(n.id, ()))]
        regions[root] = Region(group, [external[i] for i in sorted(external)], outs, group[0].type.shape)
    return _schedule(nodes, {i: find(i) for i in parent}, regions)


def _schedule(nodes, region_of: dict, regions: dict) -> list:
    """Kahn's algorithm over the graph with each region contracted to one step;
    among ready steps, the one whose first node is oldest goes first."""
    unit_of = {n.id: region_of.get(n.id, -1 - n.id) for n in nodes}
    step_of, deps, first_id = {}, {}, {}
    for n in nodes:
        u = unit_of[n.id]
        if u not in step_of:
            step_of[u] = regions.get(u, n)
            deps[u] = set()
            first_id[u] = n.id
        deps[u].update(unit_of[x.id] for x in n.inputs if unit_of[x.id] != u)
    users: dict[int, list] = {}
    for u, ds in deps.items():
        for d in ds:
            users.setdefault(d, []).append(u)
    waiting = {u: len(ds) for u, ds in deps.items()}
    ready = [(first_id[u], u) for u, n in waiting.items() if n == 0]
    heapq.heapify(ready)
    order = []
    while ready:
        _, u = heapq.heappop(ready)
        order.append(step_of[u])
        for v in users.get(u, ()):
            waiting[v] -= 1
            if waiting[v] == 0:
                heapq.heappush(ready, (first_id[v], v))
    if len(order) != len(deps):
        raise AssertionError("elementwise regions formed a cycle: a bug in symdiff.rewrite")
    return order


def elementwise_regions(outputs) -> list:
    """The fusible elementwise regions of ``outputs``' graph, in an executable order.

    See :func:`fusion_schedule` for the contract.

    >>> import symdiff as sd
    >>> x, W = sd.vector("x", 3), sd.matrix("W", (3, 3))
    >>> y = sd.tanh(W @ sd.exp(x) + 1.0) * 2.0
    >>> [[n.op.name for n in r.nodes] for r in elementwise_regions(y)]
    [['exp'], ['add', 'tanh', 'mul']]
    """
    return [step for step in fusion_schedule(outputs) if isinstance(step, Region)]
