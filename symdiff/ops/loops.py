"""Loops as single nodes: the ``loop`` op, whose attribute is its body.

A loop node is ``loop(*inputs, body=Body, part=..., length=..., dynamic=..., reverse=...,
kind=..., checkpoint=...)``.  The body is an ordinary hash-consed sub-graph over
placeholder symbols, one per *slot*: slot 0 is the step index ``t`` (int64, the index
into ``xs``), then one per carry, one per slice of ``xs`` and one per closed-over value
("const").  The node's inputs are, in order: the run-time trip count (only when
``dynamic``), the initial carries, the ``xs`` arrays (leading axis = steps), the consts.

A body is *closed*: it reads nothing but its own placeholders and 0-d constants.
Everything in it that does not depend on the step (``t``, carries, slices) is hoisted out
when the body is built and becomes a const input, so loop-invariant work (``W @ V`` of two
parameters) is computed once, in the forward and in every derived loop alike.

The IR has no tuple values, so a loop with several results is several nodes that differ
only in ``part`` (as the factorisations' ``part``): ``("carry", i)`` the final carry i,
``("ys", j)`` the stacked per-step outputs j, ``("tape", i)`` carry i before each step
and ``("next", i)`` after it (what the reverse sweep reads; stacked by step index: the
reverse body reads the new carry instead of recomputing what it is made of, e.g. the
``tanh`` of an RNN whose derivative is ``1 - out**2``), ``("trips", 0)`` the number of
steps a while loop ran.  Backends and the reference evaluator run the loop once for every
part of a group; reverse mode differentiates a group at once (``Op.vjp_joint``).

Semantics, with n the trip count (static ``length``, or input 0 when ``dynamic``)::

    c = init
    for s in range(n):                      # at most n steps for a while loop
        t = n - 1 - s if reverse else s
        if has_cond and not cond(c): break  # cond is the body's last output
        tape[t] = c
        c, y = f(t, c, xs[t], consts)
        ys[t] = y

A while loop (``has_cond``) that still wants to run after n steps raises (its
``max_steps``); without a bound (``length=None`` and not dynamic) it runs until cond fails.
"""

from __future__ import annotations

import itertools
import threading
from dataclasses import dataclass

import numpy as np

from ..errors import DTypeError, GradientError, ShapeError, SymdiffError
from ..ir import Expr, Op, make_node, toposort
from ..types import TensorType, fmt_shape
from .leaves import CONSTANT, SYMBOL


class LoopError(SymdiffError, RuntimeError):
    """A loop failed at run time (a while loop exceeded its max_steps)."""


class CheckpointWarning(UserWarning):
    """A loop's ``checkpoint=`` policy could not be applied: every carry is stored."""


_local = threading.local()
_temporaries = itertools.count()


def depth() -> int:
    """How many loop bodies are being traced around the caller (placeholder names use it,
    so an inner body tells its own placeholders from those of the bodies around it)."""
    return getattr(_local, "depth", 0)


class tracing:
    """Context: one level deeper in loop bodies."""

    def __enter__(self):
        _local.depth = depth() + 1
        return _local.depth - 1

    def __exit__(self, *exc):
        _local.depth -= 1


def placeholder(level: int, slot: int, type_: TensorType) -> Expr:
    """The canonical placeholder of ``slot`` in a body at nesting ``level``."""
    return make_node(SYMBOL, (), {"name": f"_sd_loop{level}_{slot}", "type": type_})


def temporary(type_: TensorType) -> Expr:
    """A fresh symbol (a cotangent or tangent variable while a derived body is built);
    canonicalisation replaces it by a slot placeholder."""
    return make_node(SYMBOL, (), {"name": f"_sd_looptmp{next(_temporaries)}", "type": type_})


T_TYPE = TensorType("int64", ())


class Body:
    """A loop body: its placeholders (t, carries, slices, consts) and outputs (new
    carries, per-step outputs, and the condition for a while loop).

    Hashable by the identity of its hash-consed nodes, so two loops with the same
    body are one node."""

    __slots__ = ("placeholders", "outputs", "n_carry", "n_xs", "n_consts", "n_ys", "has_cond", "level",
                 "_key", "_nodes")

    def __init__(self, placeholders, outputs, n_carry, n_xs, n_consts, n_ys, has_cond, level):
        self.placeholders = tuple(placeholders)
        self.outputs = tuple(outputs)
        self.n_carry, self.n_xs, self.n_consts, self.n_ys = n_carry, n_xs, n_consts, n_ys
        self.has_cond = bool(has_cond)
        self.level = level
        self._key = (self.placeholders, self.outputs, n_carry, n_xs, n_consts, n_ys, self.has_cond, level)
        self._nodes = None

    def __hash__(self):
        return hash(self._key)

    def __eq__(self, other):
        return isinstance(other, Body) and self._key == other._key

    def __reduce__(self):
        return (Body, (self.placeholders, self.outputs, self.n_carry, self.n_xs, self.n_consts, self.n_ys,
                       self.has_cond, self.level))

    def __repr__(self):
        return (f"<body: {self.n_carry} carries, {self.n_xs} xs, {self.n_consts} consts -> {self.n_ys} ys"
                f"{', cond' if self.has_cond else ''}; {len(self.nodes)} nodes>")

    # --- slots
    @property
    def t(self) -> Expr:
        return self.placeholders[0]

    @property
    def carries(self) -> tuple:
        return self.placeholders[1:1 + self.n_carry]

    @property
    def slices(self) -> tuple:
        return self.placeholders[1 + self.n_carry:1 + self.n_carry + self.n_xs]

    @property
    def consts(self) -> tuple:
        return self.placeholders[1 + self.n_carry + self.n_xs:]

    @property
    def carry_out(self) -> tuple:
        return self.outputs[:self.n_carry]

    @property
    def ys(self) -> tuple:
        return self.outputs[self.n_carry:self.n_carry + self.n_ys]

    @property
    def cond(self):
        return self.outputs[-1] if self.has_cond else None

    @property
    def nodes(self) -> list:
        if self._nodes is None:
            self._nodes = toposort(list(self.outputs))
        return self._nodes

    def without_cond(self) -> "Body":
        return Body(self.placeholders, self.outputs[:-1], self.n_carry, self.n_xs, self.n_consts, self.n_ys,
                    False, self.level)


# ------------------------------------------------------------ building bodies


def _substitute(outputs: list, replacements: dict) -> list:
    """``outputs`` rebuilt with node ids in ``replacements`` replaced (simultaneously)."""
    new = dict(replacements)
    for node in toposort(outputs):
        if node.id in new or not node.inputs:
            continue
        inputs = [new.get(x.id, x) for x in node.inputs]
        if any(a is not b for a, b in zip(inputs, node.inputs)):
            new[node.id] = make_node(node.op, inputs, node.params)
    return [new.get(o.id, o) for o in outputs]


def _keep_inside(node: Expr) -> bool:
    """Invariant nodes a body keeps (0-d constants are literals in generated code)."""
    return node.op is CONSTANT and node.ndim == 0


def make_body(level: int, t: Expr, carries: list, slices: list, outputs: list, n_ys: int, has_cond: bool,
              const_values: dict) -> tuple:
    """Close and canonicalise a traced body.

    ``t``, ``carries``, ``slices``: the symbols the body was traced over; ``outputs``:
    carries out, ys, [cond]; ``const_values``: {symbol id: outer Expr} for placeholders
    that stand for outer values (a derived body's consts).  Returns (Body, consts): the
    outer Exprs the loop node takes as its const inputs."""
    outputs = _substitute(list(outputs), const_values) if const_values else list(outputs)
    variant = {t.id, *(c.id for c in carries), *(x.id for x in slices)}
    nodes = toposort(outputs)
    depends = set(variant)
    for node in nodes:
        if node.id not in depends and any(x.id in depends for x in node.inputs):
            depends.add(node.id)
    hoisted: dict = {}
    for node in nodes:
        if node.id in depends and node.inputs:
            for x in node.inputs:
                if x.id not in depends and not _keep_inside(x):
                    hoisted.setdefault(x.id, x)
    for o in outputs:
        if o.id not in depends and not _keep_inside(o):
            hoisted.setdefault(o.id, o)
    consts = [hoisted[k] for k in sorted(hoisted)]
    slot = itertools.count(1)
    mapping = {t.id: placeholder(level, 0, T_TYPE)}
    for p in [*carries, *slices, *consts]:
        mapping[p.id] = placeholder(level, next(slot), p.type)
    new_outputs = _substitute(outputs, mapping)
    new_placeholders = [mapping[t.id]] + [mapping[p.id] for p in [*carries, *slices, *consts]]
    body = Body(new_placeholders, new_outputs, len(carries), len(slices), len(consts), n_ys, has_cond, level)
    return body, consts


# Elementwise ops cheap enough that computing them for every step ahead of the loop
# gains nothing for the memory it costs (an (n, ...) array per hoisted expression).
_CHEAP_ELEMENTWISE = frozenset({
    "abs", "add", "cast", "ceil", "copysign", "div", "equal", "floor", "greater", "greater_equal", "less",
    "less_equal", "logical_and", "logical_not", "logical_or", "maximum", "minimum", "mul", "neg", "not_equal",
    "rint", "sign", "stop_gradient", "sub", "trunc", "where"})


def hoist_maps(body: Body, xs: list, consts: list, checkpoint="all", lengths_checked: bool = True) -> tuple:
    """(body, xs, consts) with the costly per-step work that reads no carry and not the
    step index (``U @ x_t + b`` in an RNN, the pre-activation ``W @ h_t + U @ x_t + b``
    a reverse sweep recomputes from the stored carry ``h_t``) computed for every step
    before the loop, as whole-array operations (a matrix product instead of n
    matrix-vector products): it becomes one more xs of the loop.

    Only elementwise ops and matrix products with one per-step operand are batched;
    anything else stays in the body.  Nothing is moved under a checkpoint policy other
    than "all" (the moved work is an (n, ...) array, the memory such a policy saves), and
    while loops are left alone.
    Unless ``lengths_checked`` (a derived loop, whose xs all come from checked ones), an
    expression reads two xs only when their lengths are static and equal: the loop's own
    error for xs of different lengths must come first, not a broadcasting error."""
    if body.has_cond or not body.n_xs or checkpoint != "all":
        return body, list(xs), list(consts)
    slot_of = {p.id: k for k, p in enumerate(body.slices)}
    steps = {body.t.id, *(c.id for c in body.carries)}
    per_step, mapped = set(slot_of), {}  # mapped: node id -> reads per-step data only, batchable
    for node in body.nodes:
        if node.id in steps or any(x.id in steps for x in node.inputs):
            steps.add(node.id)
        elif node.id in per_step or any(x.id in per_step for x in node.inputs):
            per_step.add(node.id)
            if node.id in slot_of or (_batchable(node, per_step)
                                      and all(x.id in mapped for x in node.inputs if x.id in per_step)):
                mapped[node.id] = node
    readers = {o.id for o in body.outputs}
    for node in body.nodes:
        if node.id not in mapped:
            readers.update(x.id for x in node.inputs)
    roots = [node for node in mapped.values()
             if node.id in readers and node.id not in slot_of and _worth_hoisting(node, mapped, body.slices)
             and (lengths_checked or _one_length(node, mapped, slot_of, xs))]
    if not roots:
        return body, list(xs), list(consts)
    outer = {p.id: (x, True) for p, x in zip(body.slices, xs)}
    outer.update((p.id, (c, False)) for p, c in zip(body.consts, consts))
    stacked = [_batched(root, outer) for root in roots]
    fresh = [temporary(root.type) for root in roots]
    outputs = _substitute(list(body.outputs), {root.id: f for root, f in zip(roots, fresh)})
    new_body, new_consts = make_body(body.level, body.t, list(body.carries), list(body.slices) + fresh, outputs,
                                     body.n_ys, body.has_cond, {p.id: c for p, c in zip(body.consts, consts)})
    return new_body, list(xs) + stacked, new_consts


def _one_length(root: Expr, mapped: dict, slot_of: dict, xs: list) -> bool:
    """Whether the xs that ``root`` reads have one static length, or are one xs."""
    read = {slot_of[n.id] for n in toposort([root]) if n.id in slot_of and n.id in mapped}
    lengths = {xs[k].type.shape[0] for k in read}
    return len(read) <= 1 or (len(lengths) == 1 and None not in lengths)


def _batchable(node: Expr, per_step: set) -> bool:
    """Whether ``node`` (reading per-step values) has a whole-array form here."""
    if node.op.kind == "elementwise":
        return True
    if node.op.name != "matmul":
        return False
    a, b = node.inputs
    if (a.id in per_step) == (b.id in per_step):
        return False  # both per step: a batched product of two stacks, not worth a rule here
    fixed = b if a.id in per_step else a
    return fixed.ndim <= 2


def _worth_hoisting(root: Expr, mapped: dict, slices) -> bool:
    """Whether the expression ``root`` contains a product or a transcendental op, and its
    per-step value is no larger than four times the per-step slices it reads."""
    costly, read, stack = False, 0, [root]
    seen = set()
    slice_ids = {p.id for p in slices}
    while stack:
        node = stack.pop()
        if node.id in seen:
            continue
        seen.add(node.id)
        if node.id in slice_ids:
            read += _static_size(node) or 0
            continue
        costly = costly or node.op.name == "matmul" or (node.op.kind == "elementwise"
                                                        and node.op.name not in _CHEAP_ELEMENTWISE)
        stack.extend(x for x in node.inputs if x.id in mapped)
    size = _static_size(root)
    return costly and (size <= 4 * read if size is not None and read else root.ndim <= max(p.ndim for p in slices))


def _static_size(node: Expr):
    shape = node.type.shape
    return None if None in shape else int(np.prod(shape, dtype=np.int64))


def _batched(node: Expr, outer: dict) -> tuple:
    """The outer expression holding ``node`` of every step stacked on a leading axis
    (or ``node``'s own outer value when it does not vary), and whether it is stacked."""
    from .. import frontend as F

    memo = outer

    def build(u):
        if u.id in memo:
            return memo[u.id]
        if not u.inputs:  # a 0-d constant kept inside
            return u, False
        args = [build(x) for x in u.inputs]
        if u.op.kind == "elementwise":
            inputs = []
            for (value, stacked), x in zip(args, u.inputs):
                if stacked and x.ndim < u.ndim:  # its step axis must stay leading under broadcasting
                    value = F.expand_dims(value, tuple(range(1, 1 + u.ndim - x.ndim)))
                inputs.append(value)
            result = make_node(u.op, inputs, u.params)
        else:  # matmul with one stacked operand (see _batchable)
            (a, a_stacked), (b, _) = args
            a_node, b_node = u.inputs
            if a_stacked or b_node.ndim > 1:
                result = F.matmul(a, b)  # NumPy's batch broadcasting has the step axis lead
            else:  # fixed matrix @ a vector per step: the stack of vectors times its transpose
                result = F.matmul(b, F.transpose(a)) if a_node.ndim == 2 else F.matmul(b, a)
        memo[u.id] = (result, True)
        return memo[u.id]

    return build(node)[0]


# ------------------------------------------------------------------ the op


def _loop_n(types, length, dynamic):
    return length if not dynamic else None


def _infer_loop(types, body, part, length, dynamic, reverse, kind, checkpoint, at=""):
    kind = f"{kind} at {at}" if at else kind
    types = list(types)
    if dynamic:
        n_type = types.pop(0)
        if n_type.dtype != "int64" or n_type.shape != ():
            raise DTypeError(f"{kind}: the trip count must be an int64 scalar, got {n_type!r}")
    need = body.n_carry + body.n_xs + body.n_consts
    if len(types) != need:
        raise ShapeError(f"{kind}: the body takes {need} inputs, got {len(types)}")
    phs = body.placeholders[1:]
    for k, (got, ph) in enumerate(zip(types, phs)):
        want = ph.type
        if k >= body.n_carry and k < body.n_carry + body.n_xs:  # an xs array: one more (leading) axis
            if got.ndim != want.ndim + 1:
                raise ShapeError(f"{kind}: xs[{k - body.n_carry}] has type {got!r}, expected a stack of {want!r}")
            got = TensorType(got.dtype, got.shape[1:])
        if got.dtype != want.dtype:
            raise DTypeError(f"{kind}: input {k} has dtype {got.dtype} but the body was built for {want!r}")
        if len(got.shape) != len(want.shape) or any(
                a is not None and b is not None and a != b for a, b in zip(got.shape, want.shape)):
            raise ShapeError(f"{kind}: input {k} has type {got!r} but the body was built for {want!r}")
    n = length if not dynamic else None
    for k in range(body.n_xs):
        lead = types[body.n_carry + k].shape[0]
        if n is not None and lead is not None and lead != n:
            raise ShapeError(f"{kind}: xs[{k}] has {lead} steps, the loop {n}")
    what, index = part
    if what == "carry":
        return types[index]
    if what in ("tape", "next"):
        return TensorType(types[index].dtype, (n,) + types[index].shape)
    if what == "ys":
        y = body.ys[index].type
        return TensorType(y.dtype, (n,) + y.shape)
    if what == "trips":
        return T_TYPE
    raise ShapeError(f"{kind}: unknown part {part!r}")


# --- the reference implementation (NumPy), shared by every part of a group

_CACHE_SIZE = 8
_cache: list = []  # [(body, attrs key, input arrays, results)], most recent last


def _run_body(body: Body, values: dict) -> list:
    from ..evaluate import run

    run(body.nodes, values)
    return [values[o.id] for o in body.outputs]


def _in_step(error: ShapeError, kind: str, step: int) -> ShapeError:
    """``error`` of a body node, prefixed with the loop and the step it failed in; it keeps
    the node that failed (so the evaluator does not wrap it again in the loop's shapes)."""
    named = ShapeError(f"{kind}, step {step}: {error}")
    named.sd_complete = True
    if hasattr(error, "node"):
        named.node, named.reason, named.shapes = error.node, error.reason, error.shapes
    return named


def _same_shape(kind: str, i: int, new: np.ndarray, shape: tuple, step: int) -> np.ndarray:
    if new.shape != shape:
        raise ShapeError(f"{kind}: step {step} changed carry {i} from shape {shape} to {new.shape}; a carry "
                         f"must keep its shape")
    return new


def _per_step_shape(body: Body, y: Expr, inputs: list) -> tuple:
    """The shape of the per-step output ``y`` without running a step (a loop of zero steps):
    each size ``None`` is that of the carry, slice or const it keeps (0 if none does)."""
    from ..backends.loops import _placeholder_axis

    shape = []
    for k, static in enumerate(y.type.shape):
        found = None if static is not None else _placeholder_axis(body, y, k)
        if found is None:
            shape.append(0 if static is None else static)
            continue
        slot, axis = found
        array = inputs[slot - 1]
        shape.append(array.shape[axis + (1 if body.n_carry < slot <= body.n_carry + body.n_xs else 0)])
    return tuple(shape)


def run_loop(args, body, length, dynamic, reverse, kind, need_tape=True) -> dict:
    """Run the loop with NumPy: {"carry": [...], "ys": [...], "tape": [...], "trips": n}."""
    args = list(args)
    n = int(args.pop(0)) if dynamic else length
    carries = [np.asarray(a) for a in args[:body.n_carry]]
    xs = args[body.n_carry:body.n_carry + body.n_xs]
    consts = args[body.n_carry + body.n_xs:]
    if n is not None and n < 0:  # a negative count runs no step, as range() does (and the kernel)
        n = 0
    for k, x in enumerate(xs):
        if n is None or (not body.has_cond and x.shape[0] != n):
            if not body.has_cond:
                raise ShapeError(f"{kind}: xs[{k}] has {x.shape[0]} steps but the loop runs {n}")
    base = {p.id: v for p, v in zip(body.consts, consts)}
    ys_steps, tape_steps, next_steps = [], [], []
    step = 0
    while n is None or step < n:
        t = (n - 1 - step) if reverse else step
        values = dict(base)
        values[body.t.id] = np.int64(t)
        for p, c in zip(body.carries, carries):
            values[p.id] = c
        if body.has_cond:
            from ..evaluate import run

            run(toposort(body.cond), values)
            if not bool(values[body.cond.id]):
                break
        for p, x in zip(body.slices, xs):
            values[p.id] = x[t]
        if need_tape:
            tape_steps.append(carries)
        try:
            outs = _run_body(body, values)
        except ShapeError as exc:
            raise _in_step(exc, kind, step) from None
        carries = [_same_shape(kind, i, np.asarray(c), np.shape(a), step)
                   for i, (c, a) in enumerate(zip(outs[:body.n_carry], args[:body.n_carry]))]
        if need_tape:
            next_steps.append(carries)
        ys_steps.append(outs[body.n_carry:body.n_carry + body.n_ys])
        step += 1
    else:
        if body.has_cond and n is not None:
            values = dict(base)
            values[body.t.id] = np.int64(n)
            for p, c in zip(body.carries, carries):
                values[p.id] = c
            from ..evaluate import run

            run(toposort(body.cond), values)
            if bool(values[body.cond.id]):
                raise LoopError(f"{kind}: the loop still runs after max_steps={n} steps (its cond is still True)")
    trips = step
    if reverse:
        ys_steps.reverse()
        tape_steps.reverse()
        next_steps.reverse()
    ys = []
    inputs = [np.asarray(a) for a in args]
    for j, y in enumerate(body.ys):
        shape = (trips,) + (tuple(np.shape(ys_steps[0][j])) if trips else _per_step_shape(body, y, inputs))
        changed = next((np.shape(outs[j]) for outs in ys_steps if np.shape(outs[j]) != shape[1:]), None)
        if changed is not None:  # as the compiled loop says it (np.array would say "inhomogeneous shape")
            error = ShapeError(f"{kind}: per-step output {j} changed its shape between steps "
                               f"({shape[1:]} and {changed})")
            error.sd_complete = True
            raise error
        ys.append(np.array([s[j] for s in ys_steps]).reshape(shape) if trips else
                  np.zeros(shape, dtype=np.dtype(y.dtype)))
    def stacked(steps):
        if trips:
            return [np.array([s[i] for s in steps]) for i in range(body.n_carry)]
        return [np.zeros((0,) + np.shape(a), dtype=np.asarray(a).dtype) for a in args[:body.n_carry]]

    return {"carry": carries, "ys": ys, "tape": stacked(tape_steps), "next": stacked(next_steps),
            "trips": np.int64(trips)}


def _impl_loop(*args, body, part, length, dynamic, reverse, kind, checkpoint, at=""):
    kind = f"{kind} at {at}" if at else kind
    key = (body, length, dynamic, reverse, kind)
    for entry in reversed(_cache):
        if entry[0] == key and len(entry[1]) == len(args) and all(a is b for a, b in zip(entry[1], args)):
            results = entry[2]
            break
    else:
        results = run_loop(args, body, length, dynamic, reverse, kind)
        _cache.append((key, tuple(args), results))  # holds the arrays: their ids cannot be reused
        del _cache[:-_CACHE_SIZE]
    what, index = part
    value = results[what] if what == "trips" else results[what][index]
    return value


def clear_cache():
    """Forget the reference evaluator's loop results (they hold arrays alive)."""
    _cache.clear()


# --- derivatives


def _vjp_single(index, cotangent, out, *inputs, **attrs):
    """One input's share for one part (used by passes that ask per node; backprop
    asks once per group through ``vjp_joint``)."""
    return vjp_group({attrs["part"]: (out, cotangent)}, inputs, attrs)[index]


def _jvp_loop(tangents, out, *inputs, **attrs):
    return jvp_part(tangents, out, inputs, attrs)


def _vjp_joint(parts: dict, inputs, attrs, wanted=None):
    return vjp_group(parts, inputs, attrs, wanted)


def _samples(rng):
    """Small fixed bodies: an RNN-like scan (both directions), a fori loop of run-time
    length, a while loop (its trip count away from the boundary)."""
    from .. import frontend as F

    f64 = lambda *shape: TensorType("float64", shape)  # noqa: E731
    t, c, x, w = temporary(T_TYPE), temporary(f64(2)), temporary(f64(2)), temporary(f64(2))
    w_out = F.tanh(w * c + x)
    rnn, _ = make_body(0, t, [c, x][:1], [x], [w_out, F.sum(w_out * c)], 1, False, {})
    init, xs, consts = rng.normal(size=2), rng.normal(size=(3, 2)), rng.uniform(0.5, 1.5, size=2)
    cases = []
    for part, reverse in [(("carry", 0), False), (("carry", 0), True), (("ys", 0), False), (("ys", 0), True),
                          (("tape", 0), False), (("next", 0), True)]:
        attrs = dict(body=rnn, part=part, length=3, dynamic=False, reverse=reverse, kind="scan",
                     checkpoint="all")
        cases.append(((init, xs, consts), attrs))
    k, v = temporary(T_TYPE), temporary(f64(2))  # an int64 carry beside a float one
    counted, _ = make_body(0, t, [k, v], [x], [k + 1, v * F.astype(k + 1, "float64") + x], 0, False, {})
    cases.append(((np.int64(2), init, xs), dict(body=counted, part=("carry", 1), length=3, dynamic=False,
                                                reverse=False, kind="scan", checkpoint="all")))
    s, a = temporary(f64()), temporary(f64())
    fori, _ = make_body(0, t, [s], [], [F.sin(s) * a + F.astype(t, "float64")], 0, False, {})
    cases.append(((np.int64(4), rng.normal(), rng.uniform(0.5, 1.0)),
                  dict(body=fori, part=("carry", 0), length=None, dynamic=True, reverse=False, kind="fori_loop",
                       checkpoint="all")))
    grow, _ = make_body(0, t, [s], [], [s * a, F.less(s, 10.0)], 0, True, {})
    for part in [("carry", 0), ("trips", 0)]:
        cases.append(((np.float64(1.0), np.float64(2.1)),
                      dict(body=grow, part=part, length=None, dynamic=False, reverse=False, kind="while_loop",
                           checkpoint="all")))
    return cases


LOOP = Op(
    "loop",
    infer=_infer_loop,
    impl=_impl_loop,
    vjp=_vjp_single,
    jvp=_jvp_loop,
    kind="loop",
    samples=_samples,
    doc="A loop whose attribute is its body (sd.scan, sd.fori_loop, sd.while_loop); one node per result part.",
)
LOOP.vjp_joint = _vjp_joint


def group_key(node: Expr):
    """Nodes with equal keys are parts of one loop run."""
    return (node.inputs, tuple((k, v) for k, v in node.attrs if k != "part"))


def part_node(like: Expr, part) -> Expr:
    """The node of ``part`` of ``like``'s loop."""
    params = like.params
    params["part"] = part
    return make_node(LOOP, like.inputs, params)


def fmt_type(t: TensorType) -> str:
    return f"{t.dtype}{fmt_shape(t.shape)}"


def _split(inputs, attrs):
    body = attrs["body"]
    ins = list(inputs)
    n = ins.pop(0) if attrs["dynamic"] else None
    c, x = body.n_carry, body.n_xs
    return n, ins[:c], ins[c:c + x], ins[c + x:]


def _loop_node(body, consts, n, init, xs, part, attrs, reverse=None, lengths_checked=True):
    """A part of the loop (body, n, init, xs, consts) with the other attributes of ``attrs``
    (``lengths_checked``: see ``hoist_maps``)."""
    params = {k: v for k, v in attrs.items() if k != "part"}
    body, xs, consts = hoist_maps(body, xs, consts, params["checkpoint"], lengths_checked)
    params.update(body=body, part=part)
    if reverse is not None:
        params["reverse"] = reverse
    inputs = ([n] if params["dynamic"] else []) + list(init) + list(xs) + list(consts)
    return make_node(LOOP, inputs, params)


def _while_as_scan(parts: dict, inputs, attrs):
    """A while loop's parts as those of the loop of fixed length ``trips`` (the trip
    count the forward run recorded) over the same body without its cond."""
    body = attrs["body"]
    any_node = next(iter(parts.values()))[0]
    trips = part_node(any_node, ("trips", 0))
    fixed = dict(attrs, body=body.without_cond(), length=None, dynamic=True)
    fixed_inputs = [trips] + list(inputs[1 if attrs["dynamic"] else 0:])
    return fixed, fixed_inputs


def _terms(g) -> list:
    """The summands of ``g`` (adds of same-shaped operands, unfolded)."""
    if g is None:
        return []
    terms, stack = [], [g]
    while stack:
        x = stack.pop()
        if x.op.name == "add" and all(y.type == x.type for y in x.inputs):
            stack.extend(reversed(x.inputs))
        else:
            terms.append(x)
    return terms


def _vector_view(x):
    """The 1-d node ``x`` (a (p, 1) or (1, q) matrix) is a reshaping of, or None."""
    while x.op.name in ("expand_dims", "transpose", "reshape", "squeeze"):
        x = x.inputs[0]
    return x if x.ndim == 1 else None


def _is_outer(term) -> bool:
    """a @ b with a of shape (p, 1) and b of shape (1, q): an outer product."""
    if term.op.name != "matmul" or term.ndim != 2:
        return False
    a, b = term.inputs
    return a.ndim == 2 and b.ndim == 2 and a.type.shape[1] == 1 and b.type.shape[0] == 1


def vjp_group(parts: dict, inputs, attrs, wanted=None) -> list:
    """The cotangents of a loop's inputs, given {part: (node, cotangent)} for the
    parts that received any: one reverse loop (a scan in the other direction over
    the stored carries) whose body is the vjp of the forward body."""
    from .. import frontend as F
    from ..autodiff import backprop
    from .elementwise import ADD, zeros_like

    body = attrs["body"]
    if body.has_cond:
        fixed, fixed_inputs = _while_as_scan(parts, inputs, attrs)
        fixed_parts = {p: (make_node(LOOP, fixed_inputs, dict(fixed, part=p)), g)
                       for p, (node, g) in parts.items() if p[0] != "trips"}
        if wanted is not None:
            wanted = (False,) + tuple(wanted[1 if attrs["dynamic"] else 0:])
        shares = vjp_group(fixed_parts, fixed_inputs, dict(fixed, part=("carry", 0)), wanted)
        return ([None] if attrs["dynamic"] else []) + shares[1:]
    n, init, xs, consts = _split(inputs, attrs)
    forward = make_node(LOOP, inputs, dict(attrs, part=("carry", 0))) if body.n_carry else None
    cot = {p: g for p, (node, g) in parts.items()}
    fc = [i for i in range(body.n_carry) if init[i].type.is_float]
    offset = 1 if attrs["dynamic"] else 0
    want = (lambda k: True) if wanted is None else (lambda k: wanted[offset + k])
    fx = [k for k in range(body.n_xs) if xs[k].type.is_float and want(body.n_carry + k)]
    fk = [m for m in range(body.n_consts) if consts[m].type.is_float and want(body.n_carry + body.n_xs + m)]
    gy = [j for j in range(body.n_ys) if ("ys", j) in cot and body.ys[j].type.is_float]
    gt = [i for i in fc if ("tape", i) in cot]
    gn = [i for i in fc if ("next", i) in cot]
    gc_tmp = {i: temporary(body.carries[i].type) for i in fc}
    ga_tmp = {m: temporary(body.consts[m].type) for m in fk}
    gy_tmp = {j: temporary(body.ys[j].type) for j in gy}
    gt_tmp = {i: temporary(body.carries[i].type) for i in gt}
    gn_tmp = {i: temporary(body.carries[i].type) for i in gn}
    seeds = [(body.carry_out[i], gc_tmp[i]) for i in fc] + [(body.ys[j], gy_tmp[j]) for j in gy] + \
        [(body.carry_out[i], gn_tmp[i]) for i in gn]
    wrt = [body.carries[i] for i in fc] + [body.slices[k] for k in fx] + [body.consts[m] for m in fk]
    adjoint = backprop(seeds, wrt, f"{attrs['kind']} body") if seeds else {}
    carry_out = []
    for i in fc:
        g = adjoint.get(body.carries[i].id)
        if i in gt_tmp:
            g = gt_tmp[i] if g is None else ADD(g, gt_tmp[i])
        carry_out.append(zeros_like(body.carries[i]) if g is None else g)
    # A parameter's cotangent is summed over the steps.  Outer products (the gradient of
    # W in W @ h) are not accumulated step by step in the carry (an H x H update per step):
    # their two factors become per-step outputs and one matrix product after the loop sums
    # them (sum_t a_t b_t^T = A^T B).  Other terms accumulate in the carry.
    live = [k for k in fx if adjoint.get(body.slices[k].id) is not None]  # the others' cotangents are 0
    slice_cotangents = [adjoint[body.slices[k].id] for k in live]
    accumulated, outer_factors, factor_ys = [], {}, []
    factor_index = {g.id: j for j, g in enumerate(slice_cotangents)}  # per-step outputs, by their index in ys

    def factor(x):
        """A factor as ("slice", k) when it is a slice of xs or a stored carry, else a per-step output."""
        source = _vector_view(x)
        if source is not None:
            for k, p in enumerate(body.slices):
                if p is source:
                    return ("xs", k)
            for i, p in enumerate(body.carries):
                if p is source:
                    return ("tape", i)
            x = source  # stacked as an (n, size) matrix, which the product reads transposed in place
        if x.id not in factor_index:
            factor_index[x.id] = len(slice_cotangents) + len(factor_ys)
            factor_ys.append(x)
        return ("ys", factor_index[x.id])

    for m in fk:
        g = adjoint.get(body.consts[m].id)
        kept = []
        for term in _terms(g):
            if _is_outer(term) and attrs["checkpoint"] == "all":  # per-step factors: O(n) memory
                outer_factors.setdefault(m, []).append(tuple(factor(x) for x in term.inputs))
            else:
                kept.append(term)
        if kept:
            total = kept[0]
            for term in kept[1:]:
                total = ADD(total, term)
            accumulated.append(m)
            carry_out.append(ADD(ga_tmp[m], total))
    ys_out = slice_cotangents + factor_ys
    # The new carry of step t is stored: the reverse body reads it instead of recomputing it.
    nexts_tmp = {i: temporary(body.carries[i].type) for i in range(body.n_carry)
                 if body.carry_out[i].inputs and body.carry_out[i].id not in {p.id for p in body.placeholders}}
    outs = carry_out + ys_out
    if nexts_tmp and outs:
        outs = _substitute(outs, {body.carry_out[i].id: v for i, v in nexts_tmp.items()})
    carry_out, ys_out = outs[:len(carry_out)], outs[len(carry_out):]
    used = {node.id for node in toposort(outs)} if outs else set()
    tapes = [i for i in range(body.n_carry) if body.carries[i].id in used]
    nexts = [i for i, v in nexts_tmp.items() if v.id in used]
    slices = [body.carries[i] for i in tapes] + [nexts_tmp[i] for i in nexts] + list(body.slices) + \
        [gy_tmp[j] for j in gy] + [gt_tmp[i] for i in gt] + [gn_tmp[i] for i in gn]
    xs_in = [part_node(forward, ("tape", i)) for i in tapes] + [part_node(forward, ("next", i)) for i in nexts] + \
        list(xs) + [cot[("ys", j)] for j in gy] + [cot[("tape", i)] for i in gt] + [cot[("next", i)] for i in gn]
    carries = [gc_tmp[i] for i in fc] + [ga_tmp[m] for m in accumulated]
    init_in = [cot[("carry", i)] if ("carry", i) in cot else zeros_like(init[i]) for i in fc] + \
        [zeros_like(consts[m]) for m in accumulated]
    const_values = {body.consts[m].id: consts[m] for m in range(body.n_consts)}
    rbody, rconsts = make_body(body.level, body.t, carries, slices, carry_out + ys_out, len(ys_out), False,
                               const_values)
    shares = [None] * len(inputs)
    rev = not attrs["reverse"]
    for k, i in enumerate(fc):
        if not want(i):
            continue
        shares[offset + i] = _loop_node(rbody, rconsts, n, init_in, xs_in, ("carry", k), attrs, rev)
    for m in fk:
        total = _loop_node(rbody, rconsts, n, init_in, xs_in, ("carry", len(fc) + accumulated.index(m)), attrs,
                           rev) if m in accumulated else None
        for fa, fb in outer_factors.get(m, []):
            def stacked(where, axis):
                """The factor of every step as an (n, size) matrix."""
                kind, k = where
                if kind == "xs":
                    return xs[k]
                if kind == "tape":
                    return part_node(forward, ("tape", k))
                stack = _loop_node(rbody, rconsts, n, init_in, xs_in, ("ys", k), attrs, rev)
                return stack if stack.ndim == 2 else F.squeeze(stack, axis)
            term = F.matmul(F.transpose(stacked(fa, 2)), stacked(fb, 1))  # (p, n) @ (n, q)
            total = term if total is None else ADD(total, term)
        shares[offset + body.n_carry + body.n_xs + m] = total if total is not None else zeros_like(consts[m])
    for l in fx:
        shares[offset + body.n_carry + l] = (_loop_node(rbody, rconsts, n, init_in, xs_in, ("ys", live.index(l)),
                                                        attrs, rev) if l in live else zeros_like(xs[l]))
    return shares


def jvp_part(tangents, out, inputs, attrs):
    """Forward mode: the part of a loop over (carry, tangent) that matches ``out``'s part."""
    from ..autodiff import _forward_sweep
    from .elementwise import zeros_like

    body = attrs["body"]
    what, index = attrs["part"]
    if what == "trips":
        return None
    tangents = list(tangents)
    if attrs["dynamic"]:
        tangents.pop(0)
    n, init, xs, consts = _split(inputs, attrs)
    c, x = body.n_carry, body.n_xs
    t_init, t_xs, t_consts = tangents[:c], tangents[c:c + x], tangents[c + x:]
    fc = [i for i in range(c) if init[i].type.is_float]
    dx = [k for k in range(x) if t_xs[k] is not None]
    dk = [m for m in range(body.n_consts) if t_consts[m] is not None]
    dc_tmp = {i: temporary(body.carries[i].type) for i in fc}
    dx_tmp = {k: temporary(body.slices[k].type) for k in dx}
    dk_tmp = {m: temporary(body.consts[m].type) for m in dk}
    seeded = {body.carries[i].id: dc_tmp[i] for i in fc}
    seeded.update({body.slices[k].id: dx_tmp[k] for k in dx})
    seeded.update({body.consts[m].id: dk_tmp[m] for m in dk})
    tangent_of = _forward_sweep(list(body.outputs), dict(seeded))
    fy = [j for j in range(body.n_ys) if body.ys[j].type.is_float]

    def tangent(o):
        d = tangent_of.get(o.id)
        return zeros_like(o) if d is None else d

    carry_out = list(body.carry_out) + [tangent(body.carry_out[i]) for i in fc]
    ys_out = list(body.ys) + [tangent(body.ys[j]) for j in fy]
    outputs = carry_out + ys_out + ([body.cond] if body.has_cond else [])
    const_values = {body.consts[m].id: consts[m] for m in range(body.n_consts)}
    const_values.update({dk_tmp[m].id: t_consts[m] for m in dk})
    carries = list(body.carries) + [dc_tmp[i] for i in fc]
    slices = list(body.slices) + [dx_tmp[k] for k in dx]
    tbody, tconsts = make_body(body.level, body.t, carries, slices, outputs, len(ys_out), body.has_cond,
                               const_values)
    init_in = list(init) + [zeros_like(init[i]) if t_init[i] is None else t_init[i] for i in fc]
    xs_in = list(xs) + [t_xs[k] for k in dx]
    if what in ("carry", "tape", "next"):
        if index not in fc:
            return None
        part = (what, c + fc.index(index))
    else:
        if index not in fy:
            return None
        part = ("ys", body.n_ys + fy.index(index))
    return _loop_node(tbody, tconsts, n, init_in, xs_in, part, attrs, lengths_checked=False)  # users' tangents
