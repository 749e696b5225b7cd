"""Loops: ``scan``, ``fori_loop`` and ``while_loop`` (JAX's signatures), each ONE node
whose attribute is its body (see ``symdiff.ops.loops``).

The user's function is traced once over placeholder symbols: the graph it builds is
the body, compiled once whatever the number of steps.  Carries, slices of ``xs`` and
per-step outputs are pytrees of expressions (tuples, lists, dicts; numbers and arrays
become constants).  Values the body reads from outside become inputs of the loop node,
and so does every part of the body that does not change from step to step (it is
computed once, before the loop).

Derivatives are loops again: ``sd.grad`` through a loop is a reverse scan over the
stored carries whose body is the vjp of the forward body (the cotangents of the
closed-over parameters accumulate in its carry: backprop through time); ``sd.jvp`` is a
loop over (carry, tangent); Hessian-vector products in both modes and derivatives of any
order follow, since each derivative is a loop of the same kind.  A while loop's reverse
sweep runs the trip count its forward run recorded.
"""

from __future__ import annotations

import os
import sys

import numpy as np

from . import frontend as F
from .errors import DTypeError, ShapeError
from .ir import _PACKAGE_DIR, Expr, make_node
from .ops.loops import LOOP, T_TYPE, CheckpointWarning, LoopError, hoist_maps, make_body, temporary, tracing
from .types import TensorType

__all__ = ["scan", "fori_loop", "while_loop", "LoopError", "CheckpointWarning", "CHECKPOINTS"]

CHECKPOINTS = ("all", "sqrt", "an int k >= 1", "('binomial', s)")
"""The store-or-recompute policies (``checkpoint=``): "all" stores every carry; "sqrt"
and an int k store every k-th carry (k = isqrt(n) for "sqrt") and the compiled reverse
sweep recomputes each segment of k steps once from its checkpoint; ("binomial", s)
keeps at most s snapshots and recomputes as few steps as any schedule with s snapshots
can (Griewank's revolve: the forward and reverse sweeps together advance the body
T(n, s) + 1 times, 57,625 for n = 10,000 and s = 10, against n for "all")."""


# ------------------------------------------------------------------- pytrees


def _flatten(tree, path="", out=None):
    """Leaves (with their paths, e.g. ``['h'][0]``) and a structure to rebuild from."""
    out = [] if out is None else out
    if isinstance(tree, dict):
        keys = sorted(tree)
        return ("dict", keys, [_flatten(tree[k], f"{path}[{k!r}]", out)[0] for k in keys]), out
    if isinstance(tree, (tuple, list)):
        kind = "list" if isinstance(tree, list) else ("namedtuple", type(tree)) if hasattr(tree, "_fields") \
            else "tuple"
        return (kind, None, [_flatten(v, f"{path}[{k}]", out)[0] for k, v in enumerate(tree)]), out
    if tree is None:
        return ("none", None, None), out
    out.append((path, tree))
    return ("leaf", len(out) - 1, None), out


def _unflatten(structure, leaves):
    kind, extra, children = structure
    if kind == "leaf":
        return leaves[extra]
    if kind == "none":
        return None
    items = [_unflatten(c, leaves) for c in children]
    if kind == "dict":
        return dict(zip(extra, items))
    if kind == "list":
        return items
    if isinstance(kind, tuple):
        return kind[1](*items)
    return tuple(items)


def _same_structure(a, b) -> bool:
    ka, ea, ca = a
    kb, eb, cb = b
    if ka != kb or (ka == "dict" and ea != eb):
        return False
    if ka in ("leaf", "none"):
        return True
    return len(ca) == len(cb) and all(_same_structure(x, y) for x, y in zip(ca, cb))


def _describe(structure) -> str:
    kind, extra, children = structure
    if kind == "leaf":
        return "*"
    if kind == "none":
        return "None"
    inner = [_describe(c) for c in children]
    if kind == "dict":
        return "{" + ", ".join(f"{k!r}: {v}" for k, v in zip(extra, inner)) + "}"
    if kind == "list":
        return "[" + ", ".join(inner) + "]"
    return "(" + ", ".join(inner) + ("," if len(inner) == 1 else "") + ")"


def _exprs(kind, what, leaves):
    out = []
    for path, value in leaves:
        try:
            out.append(F.as_expr(value))
        except Exception as exc:
            raise TypeError(f"{kind}: {what}{path} must be a symdiff expression, a number or an array, "
                            f"got {type(value).__name__}") from exc
    return out


# ------------------------------------------------------------------- helpers


def _where() -> str:
    frame = sys._getframe(1)
    while frame is not None and frame.f_code.co_filename.startswith(_PACKAGE_DIR):
        frame = frame.f_back
    return "" if frame is None else f" at {os.path.basename(frame.f_code.co_filename)}:{frame.f_lineno}"


def _compatible(got: TensorType, want: TensorType) -> bool:
    return got.dtype == want.dtype and len(got.shape) == len(want.shape) and all(
        a is None or b is None or a == b for a, b in zip(got.shape, want.shape))


def _check_checkpoint(kind, checkpoint):
    if checkpoint in ("all", "sqrt"):
        return checkpoint
    if isinstance(checkpoint, (int, np.integer)) and not isinstance(checkpoint, bool) and checkpoint >= 1:
        return int(checkpoint)
    if (isinstance(checkpoint, (tuple, list)) and len(checkpoint) == 2 and checkpoint[0] == "binomial"
            and isinstance(checkpoint[1], (int, np.integer)) and not isinstance(checkpoint[1], bool)
            and checkpoint[1] >= 1):
        return ("binomial", min(int(checkpoint[1]), 2**62))  # more snapshots than steps are never used
    raise ValueError(f"{kind}{_where()}: checkpoint must be 'all', 'sqrt', an int k >= 1 or ('binomial', s) with "
                     f"s >= 1 snapshots, got {checkpoint!r}")


def _trip_count(kind, value, what):
    """A static int, or an int64 0-d expression (one kernel for every count)."""
    if isinstance(value, Expr):
        if value.ndim != 0 or value.dtype != "int64":
            raise DTypeError(f"{kind}{_where()}: {what} must be an int or an int64 scalar expression, "
                             f"got {value.type!r}")
        return value
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{kind}{_where()}: {what} must be an int or an int64 scalar expression, got "
                        f"{type(value).__name__} {value!r}")
    return int(value)


def _trace(kind, level, carry_structure, carry_leaves, x_structure, x_leaves, step):
    """Trace ``step(carry_tree, x_tree, t)`` over fresh symbols; returns the symbols."""
    t = temporary(T_TYPE)
    carries = [temporary(c.type) for c in carry_leaves]
    slices = [temporary(TensorType(x.dtype, x.type.shape[1:])) for x in x_leaves]
    carry_tree = _unflatten(carry_structure, carries)
    x_tree = _unflatten(x_structure, slices) if x_structure is not None else None
    return t, carries, slices, step(carry_tree, x_tree, t)


def _check_carry(kind, where, init_structure, init_leaves, new_tree):
    structure, leaves = _flatten(new_tree)
    if not _same_structure(structure, init_structure):
        raise TypeError(f"{kind}{where}: the body returned a carry of structure {_describe(structure)}, but the "
                        f"initial carry has structure {_describe(init_structure)}")
    new = _exprs(kind, "the new carry", [("carry" + p, v) for p, v in leaves])
    for (path, _), x, c in zip(leaves, new, init_leaves):
        if not _compatible(x.type, c.type):
            raise ShapeError(f"{kind}{where}: the body changes carry element carry{path} from {c.type!r} to "
                             f"{x.type!r}; a carry must keep its shape and dtype (cast with .astype, or change "
                             f"the initial value)")
    return new


def _parts(level_body, consts, n, init, xs, attrs):
    body, xs, consts = hoist_maps(level_body, xs, consts, attrs["checkpoint"], lengths_checked=False)
    inputs = ([n] if attrs["dynamic"] else []) + list(init) + list(xs) + list(consts)
    carry = [make_node(LOOP, inputs, dict(attrs, body=body, part=("carry", i))) for i in range(body.n_carry)]
    ys = [make_node(LOOP, inputs, dict(attrs, body=body, part=("ys", j))) for j in range(body.n_ys)]
    return carry, ys, inputs


# ----------------------------------------------------------------------- API


def scan(f, init, xs=None, length=None, reverse=False, checkpoint="all"):
    """Loop ``carry, y = f(carry, x)`` over the leading axis of ``xs``; return the final
    carry and the stacked ``y`` (JAX's ``lax.scan``).

    ``init``, ``xs`` and the results of ``f`` are pytrees (tuples, lists, dicts) of
    expressions; the leaves of ``xs`` share their leading size, which may be ``None``
    (known when values arrive: one kernel serves every sequence length).  Without
    ``xs``, ``length`` gives the number of steps (an int, or an int64 expression).
    ``reverse=True`` walks the steps from the last.  ``checkpoint`` chooses what the
    reverse sweep keeps: ``"all"`` (every carry, the default), ``"sqrt"`` or an int k
    (every k-th carry; the compiled reverse sweep recomputes each segment once from its
    checkpoint), or ``("binomial", s)`` (at most s carries, placed by the revolve
    schedule: the fewest recomputed steps for that memory).  Only carries are stored,
    never the body's intermediates.  A policy other than "all" applies where the stored
    carries are read only by the reverse sweeps of the same kernel; where something else
    reads them (the default reverse-over-reverse ``sd.hvp``, a user's op without
    ``numba=`` between the loop and the loss) every carry is stored, with a
    ``CheckpointWarning``.  A carry keeps its shape and dtype from step to step (a body
    that changes a run-time size raises ``ShapeError``).  Costly work of the body that
    reads no carry (``U @ x`` of an RNN) is computed for every step before the loop, as
    one matrix product (under ``checkpoint="all"``; the other policies keep it in the loop).

    >>> import symdiff as sd
    >>> xs, a = sd.vector("xs"), sd.scalar("a")
    >>> total, partial = sd.scan(lambda c, x: (a * c + x, c), 0.0, xs)
    >>> sd.evaluate([total, partial, sd.grad(total, a)], {xs: [1.0, 2.0, 3.0], a: 2.0})
    [np.float64(11.0), array([0., 1., 4.]), np.float64(6.0)]
    """
    where = _where()
    kind = "scan"
    checkpoint = _check_checkpoint(kind, checkpoint)
    init_structure, init_paths = _flatten(init)
    init_leaves = _exprs(kind, "init", [("init" + p, v) for p, v in init_paths])
    if xs is not None:
        x_structure, x_paths = _flatten(xs)
        x_leaves = _exprs(kind, "xs", [("xs" + p, v) for p, v in x_paths])
    else:
        x_structure, x_paths, x_leaves = None, [], []
    for (path, _), x in zip(x_paths, x_leaves):
        if x.ndim == 0:
            raise ShapeError(f"{kind}{where}: xs{path} is a 0-d {x.type!r}; xs leaves need a leading (step) axis")
    static = [(path, x.type.shape[0]) for (path, _), x in zip(x_paths, x_leaves) if x.type.shape[0] is not None]
    for (p1, n1), (p2, n2) in zip(static, static[1:]):
        if n1 != n2:
            raise ShapeError(f"{kind}{where}: xs leaves of different lengths: xs{p1} has {n1} steps, "
                             f"xs{p2} has {n2}")
    if length is not None:
        length = _trip_count(kind, length, "length")
        if isinstance(length, int) and static and static[0][1] != length:
            raise ShapeError(f"{kind}{where}: length={length} but xs{static[0][0]} has {static[0][1]} steps")
    elif static:
        length = static[0][1]
    elif x_leaves:
        length = F.dim(x_leaves[0], 0)
    else:
        raise ValueError(f"{kind}{where}: give xs or length (the number of steps)")

    def step(carry, x, t):
        result = f(carry, x)
        if not isinstance(result, (tuple, list)) or len(result) != 2:
            raise TypeError(f"{kind}{where}: f(carry, x) must return a pair (new carry, y), got "
                            f"{type(result).__name__}")
        return result

    with tracing() as level:
        t, carries, slices, (new_carry, y_tree) = _trace(kind, level, init_structure, init_leaves, x_structure,
                                                        x_leaves, step)
        carry_out = _check_carry(kind, where, init_structure, init_leaves, new_carry)
        y_structure, y_paths = _flatten(y_tree)
        ys_out = _exprs(kind, "y", [("y" + p, v) for p, v in y_paths])
    body, consts = make_body(level, t, carries, slices, carry_out + ys_out, len(ys_out), False, {})
    attrs = _attrs(kind, length, reverse, checkpoint, where)
    n = length if isinstance(length, Expr) else None
    carry, ys, _ = _parts(body, consts, n, init_leaves, x_leaves, attrs)
    return _unflatten(init_structure, carry), _unflatten(y_structure, ys)


def _attrs(kind, length, reverse, checkpoint, where):
    """The loop node's attributes; ``at`` (the user's file:line) names the loop in
    run-time errors, which the evaluator raises without the node at hand."""
    dynamic = isinstance(length, Expr)
    return {"length": None if dynamic else length, "dynamic": dynamic, "reverse": bool(reverse), "kind": kind,
            "checkpoint": checkpoint, "at": where[len(" at "):]}


def fori_loop(lower, upper, body_fun, init_val, checkpoint="all"):
    """``for i in range(lower, upper): val = body_fun(i, val)``; return ``val``
    (JAX's ``lax.fori_loop``).  ``lower`` and ``upper`` are ints or int64 scalar
    expressions (one kernel for every count); ``i`` is an int64 scalar expression.

    >>> import symdiff as sd
    >>> x = sd.scalar("x")
    >>> y = sd.fori_loop(0, 3, lambda i, v: v * x + i, 1.0)   # ((x + 0) x + 1) x + 2
    >>> sd.evaluate([y, sd.grad(y, x)], {x: 2.0})
    [np.float64(12.0), np.float64(13.0)]
    """
    where = _where()
    kind = "fori_loop"
    checkpoint = _check_checkpoint(kind, checkpoint)
    lower = _trip_count(kind, lower, "lower")
    upper = _trip_count(kind, upper, "upper")
    if isinstance(lower, int) and isinstance(upper, int):
        length = max(upper - lower, 0)
    else:
        length = F.maximum(F.subtract(upper, lower), 0)
    init_structure, init_paths = _flatten(init_val)
    init_leaves = _exprs(kind, "init_val", [("init_val" + p, v) for p, v in init_paths])

    def step(carry, x, t):
        return body_fun(t + lower, carry)

    with tracing() as level:
        t, carries, slices, new_carry = _trace(kind, level, init_structure, init_leaves, None, [], step)
        carry_out = _check_carry(kind, where, init_structure, init_leaves, new_carry)
    body, consts = make_body(level, t, carries, slices, carry_out, 0, False, {})
    attrs = _attrs(kind, length, False, checkpoint, where)
    carry, _, _ = _parts(body, consts, length if isinstance(length, Expr) else None, init_leaves, [], attrs)
    return _unflatten(init_structure, carry)


def while_loop(cond_fun, body_fun, init_val, max_steps=None, checkpoint="all"):
    """``while cond_fun(val): val = body_fun(val)``; return ``val`` (JAX's
    ``lax.while_loop``).  ``cond_fun`` must return a bool scalar expression.
    ``max_steps`` (an int or an int64 scalar expression) bounds the trip count: a loop
    that still wants to run after it raises ``sd.LoopError``.  Unlike JAX, reverse mode
    works: the forward run records its trip count and the reverse sweep runs that many
    steps.

    >>> import symdiff as sd
    >>> a = sd.scalar("a")
    >>> y = sd.while_loop(lambda v: v < 10.0, lambda v: v * a, 1.0, max_steps=100)
    >>> sd.evaluate([y, sd.grad(y, a)], {a: 3.0})   # a^3 after three steps
    [np.float64(27.0), np.float64(27.0)]
    """
    where = _where()
    kind = "while_loop"
    checkpoint = _check_checkpoint(kind, checkpoint)
    if max_steps is not None:
        max_steps = _trip_count(kind, max_steps, "max_steps")
    init_structure, init_paths = _flatten(init_val)
    init_leaves = _exprs(kind, "init_val", [("init_val" + p, v) for p, v in init_paths])

    def step(carry, x, t):
        return cond_fun(carry), body_fun(carry)

    with tracing() as level:
        t, carries, slices, (cond, new_carry) = _trace(kind, level, init_structure, init_leaves, None, [], step)
        if isinstance(cond, (bool, np.bool_)):
            cond = F.constant(bool(cond))
        if not isinstance(cond, Expr) or cond.dtype != "bool" or cond.ndim != 0:
            got = cond.type if isinstance(cond, Expr) else f"{type(cond).__name__} {cond!r}"
            raise DTypeError(f"{kind}{where}: cond_fun must return a bool scalar (0-d) expression, got {got!r}")
        carry_out = _check_carry(kind, where, init_structure, init_leaves, new_carry)
    body, consts = make_body(level, t, carries, slices, carry_out + [cond], 0, True, {})
    attrs = _attrs(kind, max_steps, False, checkpoint, where)
    carry, _, _ = _parts(body, consts, max_steps if isinstance(max_steps, Expr) else None, init_leaves, [], attrs)
    return _unflatten(init_structure, carry)
