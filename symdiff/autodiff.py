"""Differentiation passes: reverse mode (``grad``, ``vjp``), forward mode (``jvp``)
and Hessian-vector products.  Each appends nodes to the graph and returns them.
(``grad`` of a single scalar input sweeps forward by default; see its docstring.)

``backprop`` is the classic algorithm and knows no calculus: it restricts the
graph to nodes that are ancestors of the outputs and descendants of ``wrt``, seeds
a grad table with the output cotangents, and walks the nodes in reverse
topological order; each node's adjoint is the sum of the messages its consumers'
``vjp`` rules sent it.  Work and new nodes are linear in the size of the graph.
"""

from __future__ import annotations

from . import frontend as F
from .errors import GradientError
from .ir import Expr, as_list, creation_note, gc_paused, toposort
from .ops.elementwise import ADD, zeros_like
from .ops.leaves import const
from .types import TensorType, fmt_shape


def _compatible(got: TensorType, want: TensorType) -> bool:
    return got == want or (
        got.dtype == want.dtype
        and len(got.shape) == len(want.shape)
        and all(g is None or w is None or g == w for g, w in zip(got.shape, want.shape))
    )


def _check_rule_result(node: Expr, index: int, result, want: TensorType, direction: str):
    if not isinstance(result, Expr) or not _compatible(result.type, want):
        got = result.type if isinstance(result, Expr) else result
        raise GradientError(
            f"the {direction} rule of op {node.op.name!r} returned {got!r} for input {index}, "
            f"which has type {want!r} (node {node!r}); this is a bug in that op's rule"
        )


def _or_zeros(derivative, like: Expr) -> Expr:
    return zeros_like(like) if derivative is None else derivative


def note_name(x: Expr) -> str:
    """How notes name ``x``: its label, or its own note when a pass created it (a
    gradient of a gradient says what it differentiates even after rewrites drop x)."""
    return f"({x.note})" if x.note else x.label()


def _paired(nodes, values) -> list:
    """Values that pair with ``nodes``: one value (a number, an array, a list of
    numbers) when ``nodes`` is one Expr, else a list of them."""
    if not isinstance(values, (list, tuple)):
        return [values]
    if isinstance(nodes, Expr) and not any(isinstance(v, Expr) for v in values):
        return [values]  # e.g. [1.0, 2.0]: the value of the one node, not two values
    return list(values)


def _differentiable_wrt(wrt: list, what: str):
    for w in wrt:
        if not w.type.is_float:
            raise GradientError(
                f"cannot differentiate with respect to {w.label()} of type {w.type!r}: {what} needs "
                "float64 or float32 nodes (integer and bool values have no derivative)"
            )


def backprop(seeds: list, wrt: list, name: str, trace=None) -> dict:
    """Reverse sweep from ``seeds`` [(output, cotangent), ...]; the adjoint of each
    node on a path to ``wrt``, by node id.

    ``trace(node, messages, total, sent)``, if given, is called once per node in
    the order of the sweep with the messages it received, their sum (its adjoint)
    and the [(input index, input, message)] its rule sent on (``symdiff explain``)."""
    nodes = toposort([out for out, _ in seeds])
    wrt_ids = {w.id for w in wrt}
    # Nodes on a differentiable path from some wrt node: only these get adjoints.
    relevant = set()
    for node in nodes:
        if node.id in wrt_ids:
            relevant.add(node.id)
        elif node.type.is_float and node.op.vjp is not None:
            for i, x in enumerate(node.inputs):
                if x.id in relevant and node.op.vjp_rule(i) is not None:
                    relevant.add(node.id)
                    break

    # Ops with several result nodes differentiated at once (a loop's parts, ``Op.vjp_joint``):
    # the group's rule runs at its oldest node, when every member has its adjoint.
    groups: dict = {}
    for node in nodes:
        if node.id in relevant and getattr(node.op, "vjp_joint", None) is not None:
            key = (node.op, node.inputs, tuple(kv for kv in node.attrs if kv[0] != "part"))
            groups.setdefault(key, []).append(node)
    joint = {min(members, key=lambda n: n.id).id: members for members in groups.values()}
    with gc_paused():
        return _reverse_sweep(nodes, relevant, seeds, name, trace, joint)


def _send_joint(node, members, adjoints, relevant, table, sent):
    """The group rule of ``node``'s op for the adjoints its members received."""
    parts = {m.params["part"]: (m, adjoints[m.id]) for m in members if m.id in adjoints}
    if not parts:
        return
    wanted = tuple(x.id in relevant for x in node.inputs)  # no work for cotangents nobody asked for
    shares = node.op.vjp_joint(parts, node.inputs, node.params, wanted)
    for i, (x, message) in enumerate(zip(node.inputs, shares)):
        if message is None or x.id not in relevant:
            continue
        _check_rule_result(node, i, message, x.type, "vjp")
        table.setdefault(x.id, []).append(message)
        if sent is not None:
            sent.append((i, x, message))


def _reverse_sweep(nodes, relevant, seeds, name, trace, joint=None) -> dict:
    joint = joint or {}
    in_group = {m.id for members in joint.values() for m in members}
    table: dict[int, list] = {}
    for out, cotangent in seeds:
        if out.id in relevant:
            table.setdefault(out.id, []).append(cotangent)
    adjoints = {}
    with creation_note(None) as note:  # the note is updated per node below
        for node in reversed(nodes):
            messages = table.pop(node.id, None)
            if node.id in joint and not messages:  # its group's rule runs here even so
                note.text = f"bprop of {node.label()} ({node.op.name}) for grad of {name}"
                sent = [] if trace is not None else None
                _send_joint(node, joint[node.id], adjoints, relevant, table, sent)
                continue
            if not messages:
                continue
            label = node.label()
            note.text = f"grad of {name} wrt {label}"
            total = messages[0]
            for message in messages[1:]:
                total = ADD(total, message)
            adjoints[node.id] = total
            sent = [] if trace is not None else None
            if not node.inputs:
                if trace is not None:
                    trace(node, messages, total, sent)
                continue
            note.text = f"bprop of {label} ({node.op.name}) for grad of {name}"
            if node.id in in_group:
                if node.id in joint:
                    _send_joint(node, joint[node.id], adjoints, relevant, table, sent)
                if trace is not None:
                    trace(node, messages, total, sent)
                continue
            params = node.params
            for i, x in enumerate(node.inputs):
                if x.id not in relevant:
                    continue
                rule = node.op.vjp_rule(i)
                if rule is None:
                    continue
                message = rule(total, node, *node.inputs, **params)
                _check_rule_result(node, i, message, x.type, "vjp")
                table.setdefault(x.id, []).append(message)
                if sent is not None:
                    sent.append((i, x, message))
            if trace is not None:
                trace(node, messages, total, sent)
    return adjoints


GRAD_MODES = ("auto", "rev", "fwd")


def grad(cost, wrt, mode="auto"):
    """The gradient of the scalar ``cost`` with respect to ``wrt``, as new graph nodes.

    ``wrt`` is one Expr (one gradient back) or a list (a list back); each gradient
    has its input's shape and dtype.  ``wrt`` may name intermediate nodes; a node
    the cost does not depend on gets zeros.  Gradients are graph, so ``grad`` of a
    gradient gives second derivatives, and so on to any order.

    ``mode="rev"`` is classic backprop: one reverse sweep for all of ``wrt``.
    ``mode="fwd"`` runs one forward sweep per input and needs 0-d inputs.
    ``mode="auto"`` (the default) is "fwd" for a single 0-d input and "rev"
    otherwise: for one scalar input both cost one sweep, but the forward sweep's
    new nodes are tangents of existing nodes, which hash-cons with the ones the
    previous order built, so repeated ``grad`` grows polynomially with the order
    where repeated reverse sweeps double the graph per order.

    >>> import symdiff as sd
    >>> a, b = sd.scalars("a b")
    >>> e = (a + b) * (b + 1)
    >>> da, db = sd.grad(e, [a, b])
    >>> sd.evaluate([e, da, db], {a: 2.0, b: 1.0})
    [np.float64(6.0), np.float64(2.0), np.float64(5.0)]
    >>> x = sd.scalar("x")
    >>> d5 = sd.grad(sd.grad(sd.grad(sd.grad(sd.grad(sd.tanh(x), x), x), x), x), x)
    >>> round(float(sd.evaluate(d5, {x: 0.5})), 6)
    -3.266686
    """
    if not isinstance(cost, Expr):
        raise TypeError(f"grad: the cost must be a symdiff expression, got {type(cost).__name__} {cost!r}")
    if cost.ndim != 0:
        raise GradientError(
            f"grad needs a scalar cost, got {cost.label()} of shape {fmt_shape(cost.type.shape)} "
            f"(built at {cost.where() or '?'}); reduce it first (e.g. sd.sum) or use sd.vjp"
        )
    if not cost.type.is_float:
        raise GradientError(f"grad needs a float cost, got {cost.type!r}")
    if mode not in GRAD_MODES:
        raise ValueError(f"grad: mode must be one of {GRAD_MODES}, got {mode!r}")
    wrt_list, single = as_list(wrt)
    _differentiable_wrt(wrt_list, "grad")
    if mode == "auto":
        mode = "fwd" if len(wrt_list) == 1 and wrt_list[0].ndim == 0 else "rev"
    name = note_name(cost)
    if mode == "fwd":
        results = []
        for w in wrt_list:
            if w.ndim != 0:
                raise GradientError(f"grad(mode='fwd') needs 0-d inputs (one forward sweep each), got {w.label()} "
                                    f"of shape {fmt_shape(w.type.shape)}; use mode='rev'")
            with creation_note(f"grad of {name} wrt {w.label()} (forward sweep)"):
                tangent = _forward_sweep([cost], {w.id: const(1, w.dtype)}).get(cost.id)
                if tangent is not None and tangent.dtype != w.dtype:
                    tangent = F.astype(tangent, w.dtype)  # a gradient has its input's dtype, as in reverse mode
                results.append(_or_zeros(tangent, w))
    else:
        adjoints = backprop([(cost, const(1, cost.dtype))], wrt_list, name)
        results = [_or_zeros(adjoints.get(w.id), w) for w in wrt_list]
    return results[0] if single else results


def vjp(outputs, wrt, cotangents):
    """Vector-Jacobian products: sum_k <cotangent_k, d output_k / d wrt>.

    ``outputs`` and ``cotangents`` pair up (one Expr each, or lists); the result
    matches ``wrt`` (one Expr or a list).

    >>> import symdiff as sd
    >>> x, u = sd.vector("x", 2), sd.vector("u", 2)
    >>> sd.evaluate(sd.vjp(x * x, x, u), {x: [1.0, 2.0], u: [1.0, 1.0]})
    array([2., 4.])
    """
    outs, _ = as_list(outputs)
    cts = _paired(outputs, cotangents)
    cts = [F.as_expr(c) for c in cts]
    if len(cts) != len(outs):
        raise GradientError(f"vjp: {len(outs)} outputs but {len(cts)} cotangents")
    for out, ct in zip(outs, cts):
        if not _compatible(ct.type, out.type):
            raise GradientError(f"vjp: cotangent of type {ct.type!r} for output {out.label()} of type {out.type!r}")
    wrt_list, single = as_list(wrt)
    _differentiable_wrt(wrt_list, "vjp")
    name = ",".join(note_name(o) for o in outs)
    adjoints = backprop(list(zip(outs, cts)), wrt_list, name)
    results = [_or_zeros(adjoints.get(w.id), w) for w in wrt_list]
    return results[0] if single else results


def jvp(outputs, wrt, tangents):
    """Forward mode: the derivative of ``outputs`` along ``tangents`` at ``wrt``.

    One sweep in topological order applies each op's ``jvp`` rule; the result
    matches ``outputs`` (one Expr or a list).

    >>> import symdiff as sd
    >>> x = sd.scalar("x")
    >>> sd.evaluate(sd.jvp(sd.sin(x), x, 1.0), {x: 0.0})
    np.float64(1.0)
    """
    outs, single = as_list(outputs)
    wrt_list, _ = as_list(wrt)
    tans = _paired(wrt, tangents)
    if len(tans) != len(wrt_list):
        raise GradientError(f"jvp: {len(wrt_list)} wrt nodes but {len(tans)} tangents")
    _differentiable_wrt(wrt_list, "jvp")
    tangent_of = {}
    for w, t in zip(wrt_list, tans):
        (t,) = F.operands(t) if not isinstance(t, Expr) else (t,)
        if t.dtype != w.dtype:
            t = F.astype(t, w.dtype)
        if t.type.shape != w.type.shape:
            t = F.broadcast_like(t, w) if t.ndim <= w.ndim else t
        if not _compatible(t.type, w.type):
            raise GradientError(f"jvp: tangent of type {t.type!r} for {w.label()} of type {w.type!r}")
        tangent_of[w.id] = t
    with creation_note(f"jvp of {','.join(note_name(o) for o in outs)}"):
        tangent_of = _forward_sweep(outs, tangent_of)
        results = [_or_zeros(tangent_of.get(o.id), o) for o in outs]
    return results[0] if single else results


def _forward_sweep(outs: list, tangent_of: dict) -> dict:
    """Extend ``tangent_of`` (node id -> tangent, seeded at the inputs) to every
    node of ``outs``'s graph that depends on a seeded node, in topological order."""
    with gc_paused():
        return _extend_tangents(toposort(outs), tangent_of)


def _extend_tangents(nodes: list, tangent_of: dict) -> dict:
    for node in nodes:
        if node.id in tangent_of or not node.inputs or not node.type.is_float or node.op.vjp is None:
            continue
        ts = tuple(tangent_of.get(x.id) for x in node.inputs)
        if all(t is None for t in ts):
            continue
        if node.op.jvp is None:
            raise GradientError(f"op {node.op.name!r} has no forward (jvp) rule")
        t = node.op.jvp(ts, node, *node.inputs, **node.params)
        if t is not None:
            _check_rule_result(node, 0, t, node.type, "jvp")
            tangent_of[node.id] = t
    return tangent_of


def hvp(cost, wrt, v, mode="rev-rev"):
    """Hessian-vector product H(cost) v, in time linear in the graph size.

    ``mode="rev-rev"`` differentiates <grad(cost), v> again; ``mode="fwd-rev"``
    pushes ``v`` forward through the gradient graph (jvp of grad), which keeps
    fewer values alive.  ``wrt`` and ``v`` pair up (one Expr each, or lists).

    >>> import symdiff as sd
    >>> x, v = sd.vector("x", 2), sd.vector("v", 2)
    >>> f = sd.sum(x ** 3)
    >>> sd.evaluate(sd.hvp(f, x, v), {x: [1.0, 2.0], v: [1.0, 1.0]})
    array([ 6., 12.])
    """
    wrt_list, single = as_list(wrt)
    vs = _paired(wrt, v)
    if len(vs) != len(wrt_list):
        raise GradientError(f"hvp: {len(wrt_list)} wrt nodes but {len(vs)} vectors")
    grads = grad(cost, wrt_list, mode="rev")
    if mode == "rev-rev":
        inner = None
        with creation_note(f"<grad of {note_name(cost)}, v> for hvp"):
            for g, vec in zip(grads, vs):
                term = F.sum(g * vec)
                inner = term if inner is None else inner + term
        results = grad(inner, wrt_list, mode="rev")
    elif mode == "fwd-rev":
        results = jvp(grads, wrt_list, vs)
    else:
        raise ValueError(f"hvp: mode must be 'rev-rev' or 'fwd-rev', got {mode!r}")
    return results[0] if single else results
