"""Loops (issue 12): scan, fori_loop and while_loop against their unrolled equivalents
(values, gradients, jvp, HVPs in both modes, equal to rounding), finite differences,
the compiled kernel against the reference evaluator, and bad input."""

from __future__ import annotations

import itertools
import re

import numpy as np
import pytest

import symdiff as sd
from symdiff.testing import check_grads, check_hvp, check_jvp

H, D, N = 4, 3, 5
RNG = np.random.default_rng(12)


def _close(a, b, tol=1e-12):
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    return a.shape == b.shape and np.allclose(a, b, rtol=tol, atol=tol)


class RNN:
    """An Elman cell over a sequence, as a scan and unrolled."""

    def __init__(self, steps=None):
        self.W = sd.matrix("W", (H, H))
        self.U = sd.matrix("U", (H, D))
        self.b = sd.vector("b", H)
        self.h0 = sd.vector("h0", H)
        self.X = sd.matrix("X", (steps, D))
        self.params = [self.W, self.U, self.b, self.h0]

    def cell(self, h, x):
        h = sd.tanh(self.W @ h + self.U @ x + self.b)
        return h, sd.sum(h * h)

    def scan_loss(self, **kwargs):
        hT, ys = sd.scan(self.cell, self.h0, self.X, **kwargs)
        return sd.sum(hT * hT) + sd.sum(ys * sd.arange(1.0, N + 1.0)) if kwargs.get("reverse") is None else None

    def values(self):
        return {self.W: RNG.normal(size=(H, H)) * 0.6, self.U: RNG.normal(size=(H, D)), self.b: RNG.normal(size=H),
                self.h0: RNG.normal(size=H), self.X: RNG.normal(size=(N, D))}


def _scan_and_unrolled(reverse=False):
    rnn = RNN(N)
    hT, ys = sd.scan(rnn.cell, rnn.h0, rnn.X, reverse=reverse)
    weights = sd.arange(1.0, N + 1.0)
    looped = sd.sum(hT * hT) + sd.sum(ys * weights)
    h, terms = rnn.h0, [None] * N
    for t in (reversed(range(N)) if reverse else range(N)):
        h, terms[t] = rnn.cell(h, rnn.X[t])
    unrolled = sd.sum(h * h) + sd.sum(sd.stack(terms) * weights)
    return rnn, looped, unrolled


@pytest.mark.parametrize("reverse", [False, True])
def test_scan_equals_unrolled_value_grad_jvp_hvp(reverse):
    rnn, looped, unrolled = _scan_and_unrolled(reverse)
    values = rnn.values()
    wrt = rnn.params + [rnn.X]
    tangents = [RNG.normal(size=v.shape) for v in (values[w] for w in wrt)]
    exprs = {}
    for name, cost in (("loop", looped), ("unrolled", unrolled)):
        exprs[name] = ([cost] + sd.grad(cost, wrt) + [sd.jvp(cost, wrt, tangents)]
                       + sd.hvp(cost, wrt, tangents, mode="rev-rev") + sd.hvp(cost, wrt, tangents, mode="fwd-rev"))
    got, want = sd.evaluate(exprs["loop"], values), sd.evaluate(exprs["unrolled"], values)
    for k, (g, w) in enumerate(zip(got, want)):
        assert _close(g, w), f"output {k}: {g} != {w}"


def test_scan_against_finite_differences():
    rnn, looped, _ = _scan_and_unrolled()
    values = rnn.values()
    check_grads(looped, rnn.params, values, order=2)
    check_jvp(looped, rnn.params, values, order=2)
    check_hvp(looped, rnn.params, values)


def test_pytrees_reverse_ys_and_closed_over_values():
    a, xs = sd.scalar("a"), sd.vector("xs", 4)
    init = {"s": sd.scalar("s0"), "pair": (1.0, sd.vector("v0", 2))}

    def f(carry, x):
        s = carry["s"] * a + x
        k, v = carry["pair"]
        return {"s": s, "pair": (k + 1.0, v * sd.sin(x))}, [s, {"vx": v * x}]

    final, (ss, d) = sd.scan(f, init, xs, reverse=True)
    assert set(final) == {"s", "pair"} and isinstance(final["pair"], tuple)
    vals = {a: 0.7, xs: [1.0, -2.0, 0.5, 3.0], "s0": 0.3, "v0": [1.0, 2.0]}
    got = sd.evaluate([final["s"], final["pair"][0], final["pair"][1], ss, d["vx"]], vals)
    s, k, v, trace_s, trace_v = 0.3, 1.0, np.array([1.0, 2.0]), [0.0] * 4, [None] * 4
    for t in reversed(range(4)):
        x = vals[xs][t]
        s, k, v, prev_v = s * 0.7 + x, k + 1.0, v * np.sin(x), v
        trace_s[t], trace_v[t] = s, prev_v * x
    assert _close(got[0], s) and _close(got[1], k) and _close(got[2], v)
    assert _close(got[3], trace_s) and _close(got[4], np.array(trace_v))
    check_grads(final["s"] + sd.sum(d["vx"]), [a, init["s"], init["pair"][1]], vals, order=2)


def test_fori_loop_with_a_runtime_count_and_nested_loops():
    x, k = sd.scalar("x"), sd.scalar("k", "int64")

    def outer(i, v):
        inner = sd.fori_loop(0, 3, lambda j, w: sd.sin(w * x) + v * 0.1, v)  # closes over the outer carry
        return inner + sd.astype(i, "float64") * x

    y = sd.fori_loop(1, k, outer, 0.2)
    v = 0.2
    for i in range(1, 4):
        w = v
        for _ in range(3):
            w = np.sin(w * 0.9) + v * 0.1
        v = w + i * 0.9
    assert _close(sd.evaluate(y, {x: 0.9, k: 4}), v)
    check_grads(y, [x], {x: 0.9, k: 4}, order=3)
    check_hvp(y, [x], {x: 0.9, k: 4})
    assert sd.evaluate(y, {x: 0.9, k: 0}) == 0.2  # an empty range leaves the carry


def test_while_loop_gradient_equals_the_unrolled_loop_of_its_trip_count():
    a, v0 = sd.scalar("a"), sd.vector("v0", 2)

    def cond(c):
        return sd.sum(c[0] * c[0]) < 50.0

    def body(c):
        v, n = c
        return v * a + sd.sin(v), n + 1

    (v, n), = [sd.while_loop(cond, body, (v0, sd.constant(0)), max_steps=100)]
    values = {a: 1.3, v0: [0.5, -0.2]}
    trips = int(sd.evaluate(n, values))
    assert trips > 2
    w = v0
    for _ in range(trips):
        w = w * a + sd.sin(w)
    cost, unrolled = sd.sum(v * v), sd.sum(w * w)
    got = sd.evaluate([cost] + sd.grad(cost, [a, v0]) + sd.hvp(cost, [a, v0], [0.3, np.ones(2)]), values)
    want = sd.evaluate([unrolled] + sd.grad(unrolled, [a, v0]) + sd.hvp(unrolled, [a, v0], [0.3, np.ones(2)]), values)
    for g, w_ in zip(got, want):
        assert _close(g, w_)
    check_jvp(cost, [a, v0], values, order=1)


def test_compiled_kernel_matches_the_reference():
    """One kernel: scans in both directions (gradients, jvp, HVPs), a run-time fori
    count, a while loop and its gradient."""
    rnn, looped, _ = _scan_and_unrolled()
    hT, _ = sd.scan(rnn.cell, rnn.h0, rnn.X, reverse=True)
    back = sd.sum(hT)
    k = sd.scalar("k", "int64")
    fori = sd.fori_loop(0, k, lambda i, v: v * sd.tanh(rnn.b) + sd.astype(i, "float64"), rnn.h0)
    grow = sd.while_loop(lambda v: sd.sum(v * v) < 40.0, lambda v: v * 1.5 + rnn.b, rnn.h0, max_steps=1000)
    wrt = rnn.params
    tangent = [np.full(w.type.shape, 0.1) for w in wrt]
    outs = ([looped, back, sd.sum(fori), sd.sum(grow)] + sd.grad(looped + back, wrt)
            + sd.grad(sd.sum(fori) + sd.sum(grow), [rnn.b, rnn.h0]) + [sd.jvp(looped, wrt, tangent)]
            + sd.hvp(looped, wrt, tangent, mode="fwd-rev"))
    values = rnn.values()
    values[rnn.h0] = values[rnn.h0] * 0.5
    f = sd.function([*rnn.params, rnn.X, k], outs)
    got = f(*[values[s] for s in [*rnn.params, rnn.X]], 3)
    want = sd.evaluate(outs, {**values, k: 3})
    for i, (g, w) in enumerate(zip(got, want)):
        assert _close(g, w, 1e-10), f"output {i}"


def test_none_leading_dimension_one_kernel_for_every_length():
    rnn = RNN(None)
    hT, ys = sd.scan(rnn.cell, rnn.h0, rnn.X)
    cost = sd.sum(ys)
    outs = [cost] + sd.grad(cost, rnn.params)
    f = sd.function([*rnn.params, rnn.X], outs)
    for n in (0, 1, 7):
        values = rnn.values()
        values[rnn.X] = RNG.normal(size=(n, D))
        got = f(*[values[s] for s in [*rnn.params, rnn.X]])
        want = sd.evaluate(outs, values)
        assert all(_close(g, w, 1e-10) for g, w in zip(got, want))


def test_run_time_sizes_everywhere_gradient_and_hvp_compile():
    """Every size None (hidden width, inputs, steps): the reverse sweep's per-step outputs
    (a cotangent as a column, x @ W's row) take their sizes from a carry through
    expand_dims, matmul and elementwise work (found by review: "cannot tell the size")."""
    W, U, xs, h0 = sd.matrix("W", (None, None)), sd.matrix("U", (None, None)), sd.matrix("xs", (None, None)), \
        sd.vector("h0", None)
    hT, ys = sd.scan(lambda h, x: (sd.tanh(W @ h + U @ x), sd.sum(sd.tanh(W @ h) ** 2) + x @ x), h0, xs)
    loss = sd.sum(ys) + sd.sum(hT @ W)
    rolled = sd.fori_loop(0, 4, lambda i, c: sd.sin(W.T @ c) + c @ W, h0)
    # through a row pick and through matmul's batch axis (found by the second review)
    batches = sd.tensor("batches", (None, None, 1))
    picked = sd.sum(sd.scan(lambda C, x: (C + 0.1 * sd.sin(C.T @ C), sd.expand_dims(C[0], 0)), W, batches)[1])
    batched = sd.sum(sd.scan(lambda C, x: (C * 0.9, C @ sd.expand_dims(sd.sin(C), 2)), W, batches)[1])
    outs = [loss, *sd.grad(loss, [W, U, h0]), sd.hvp(loss, h0, h0), *sd.grad(sd.sum(rolled), [W, h0]),
            *sd.grad(picked + batched, [W])]
    values = {W: RNG.normal(size=(6, 6)) * 0.3, U: RNG.normal(size=(6, 5)) * 0.3, xs: RNG.normal(size=(9, 5)),
              h0: RNG.normal(size=6), batches: RNG.normal(size=(3, 6, 1))}
    got = sd.function([W, U, xs, h0, batches], outs)(*values.values())
    for i, (g, w) in enumerate(zip(got, sd.evaluate(outs, values))):
        assert _close(g, w, 1e-10), f"output {i}"


def test_every_checkpoint_policy_gives_the_same_derivatives():
    """Compiled: "sqrt" and an int k keep every k-th carry and recompute segments in the
    reverse sweep (no full tape in the kernel); gradients equal the reference's (which
    stores every carry, as "all" does: tests above) for every length (0, shorter than a
    segment, not a multiple of k), in both directions and through a while loop."""
    rnn = RNN(None)
    outs = []
    for checkpoint, reverse in (("sqrt", False), (3, True), (("binomial", 3), False), (("binomial", 1), True)):
        hT, ys = sd.scan(rnn.cell, rnn.h0, rnn.X, reverse=reverse, checkpoint=checkpoint)
        cost = sd.sum(hT * hT) + sd.sum(ys)
        outs += sd.grad(cost, [*rnn.params, rnn.X])
    y = sd.while_loop(lambda h: sd.sum(h * h) < 30.0, lambda h: h * 1.3 + sd.sin(h) * 0.1 + rnn.b, rnn.h0,
                      max_steps=500, checkpoint="sqrt")
    outs += sd.grad(sd.sum(y), [rnn.b, rnn.h0])
    f = sd.function([*rnn.params, rnn.X], outs)
    assert f.source.count("recomputed from its checkpoint on entry") == 3
    assert f.source.count("# binomial schedule of loop") == 2
    for n in (0, 1, 2, 10):
        values = rnn.values()
        values[rnn.X] = RNG.normal(size=(n, D))
        got = f(*[values[s] for s in [*rnn.params, rnn.X]])
        want = sd.evaluate(outs, values)
        for k, (g, w) in enumerate(zip(got, want)):
            assert _close(g, w, 1e-10), f"output {k} at n={n}"
    hT, _ = sd.scan(rnn.cell, rnn.h0, rnn.X, checkpoint=("binomial", 2))
    check_hvp(sd.sum(hT), rnn.params[:3], {**rnn.values(), rnn.X: RNG.normal(size=(N, D))})


def test_a_checkpoint_policy_that_cannot_apply_says_so():
    """Found by review: where the stored carries leave the reverse sweeps (a reverse-over-reverse
    HVP) every carry is stored; a CheckpointWarning names the loop.  A list policy works for every
    loop kind, and a huge number of snapshots is clamped."""
    rnn = RNN(None)
    hT, _ = sd.scan(rnn.cell, rnn.h0, rnn.X, checkpoint=["binomial", 2**70])
    assert hT.params["checkpoint"] == ("binomial", 2**62)
    direction = [np.full(w.type.shape, 0.1) for w in rnn.params[:2]]
    with pytest.warns(sd.CheckpointWarning, match=r"scan at test_loops.py:\d+: checkpoint=\('binomial', .*every carry"):
        sd.function([*rnn.params, rnn.X], sd.hvp(sd.sum(hT), rnn.params[:2], direction, mode="rev-rev"))
    looped = sd.while_loop(lambda h: sd.sum(h * h) < 30.0, lambda h: h * 1.3 + rnn.b, rnn.h0, max_steps=50,
                           checkpoint=["binomial", 3])
    assert looped.params["checkpoint"] == ("binomial", 3)


def test_the_binomial_schedule_takes_revolves_number_of_steps():
    """``_revolve_next`` splits optimally (against the dynamic program), and the sweep the
    kernels run (forward loop placing snapshots, reverse loop popping and re-advancing)
    recomputes exactly T(n, s) - (n - 1) steps, T being revolve's minimal count."""
    from functools import lru_cache

    from symdiff.backends.runtime import _revolve_next

    split = _revolve_next.py_func

    @lru_cache(None)
    def fewest(length, slots):  # steps advanced to reverse `length` steps with `slots` snapshots
        if length <= 1:
            return 0
        if slots == 1:
            return length * (length - 1) // 2
        return min(m + fewest(length - m, slots - 1) + fewest(m, slots) for m in range(1, length))

    def sweep(n, slots):  # the generated code's schedule, step for step
        slots = max(1, min(slots, n))
        stack, target = [0], split(0, n, slots, 1)
        for step in range(n):
            if step == target:
                stack.append(step)
                target = split(step, n, slots, len(stack))
        advanced = 0
        for j in range(n - 2, -1, -1):  # the last step's carry is kept by the forward loop
            while stack[-1] > j:
                stack.pop()
            at, target = stack[-1], split(stack[-1], j + 1, slots, len(stack))
            while at < j:
                at += 1
                advanced += 1
                if at == target:
                    stack.append(at)
                    target = split(at, j + 1, slots, len(stack))
            assert len(stack) <= slots
        return advanced

    for slots in range(1, 7):
        for length in range(2, 90):
            m = split(0, length, slots, 1) if slots > 1 else -1
            if slots > 1:
                assert 0 < m < length and m + fewest(length - m, slots - 1) + fewest(m, slots) == fewest(length, slots)
            assert sweep(length, slots) == fewest(length, min(slots, length)) - (length - 1)


# ---------------------------------------------------------------- bad input


def test_body_changing_the_carry_is_refused_at_build_time():
    h = sd.vector("h", 3)
    with pytest.raises(sd.ShapeError, match=r"scan at test_loops.py:\d+: the body changes carry element "
                                            r"carry\['h'\] from f64\[3\] to f64\[1,3\]"):
        sd.scan(lambda c, x: ({"h": sd.reshape(c["h"], (1, 3))}, None), {"h": h}, length=2)
    with pytest.raises(sd.ShapeError, match=r"carry\[1\] from i64\[\] to f64\[\]"):
        sd.fori_loop(0, 3, lambda i, c: (c[0], c[1] * 0.5), (h, sd.constant(1)))
    with pytest.raises(TypeError, match="structure"):
        sd.scan(lambda c, x: ((c, c), None), h, length=2)


def test_xs_of_different_lengths_and_bad_conditions():
    with pytest.raises(sd.ShapeError, match=r"xs leaves of different lengths: xs\[0\] has 3 steps, xs\[1\] has 4"):
        sd.scan(lambda c, x: (c, None), 0.0, (sd.vector("p", 3), sd.vector("q", 4)))
    with pytest.raises(sd.DTypeError, match=r"while_loop at test_loops.py:\d+: cond_fun must return a bool scalar"):
        sd.while_loop(lambda c: c * 2.0, lambda c: c, 1.0)
    with pytest.raises(sd.DTypeError, match="bool scalar"):
        sd.while_loop(lambda c: c < sd.vector("z", 2), lambda c: c, 1.0)
    with pytest.raises(ValueError, match="checkpoint"):
        sd.scan(lambda c, x: (c, None), 0.0, length=2, checkpoint="everything")
    for bad in (("binomial", 0), ("binomial", 2.5), ("binomial",), ("revolve", 3)):
        with pytest.raises(ValueError, match=r"\('binomial', s\) with s >= 1"):
            sd.scan(lambda c, x: (c, None), 0.0, length=2, checkpoint=bad)
    p, q = sd.vector("p"), sd.vector("q")
    cost = sd.sum(sd.scan(lambda c, x: (c + x[0] * x[1], None), 0.0, (p, q))[0])
    with pytest.raises(sd.ShapeError, match="steps"):
        sd.evaluate(cost, {p: [1.0, 2.0], q: [1.0]})
    with pytest.raises(sd.ShapeError, match=r"scan at test_loops.py:\d+: xs\[1\] and the loop have different"):
        sd.function([p, q], cost)([1.0, 2.0], [1.0])


def test_while_loop_exceeding_max_steps():
    a = sd.scalar("a")
    y = sd.while_loop(lambda v: v < 100.0, lambda v: v * a, 1.0, max_steps=5)
    assert sd.evaluate(y, {a: 3.0}) == 243.0  # five steps are enough: fine
    with pytest.raises(sd.LoopError, match="while_loop at .*max_steps=5"):
        sd.evaluate(y, {a: 2.0})
    f = sd.function([a], y)
    assert f(3.0) == 243.0
    with pytest.raises(sd.LoopError, match="max_steps=5"):
        f(2.0)


# ---------------------------------------------------------------- printers, CLI


def _small_rnn_grad():
    W, h0, X = sd.matrix("W", (2, 2)), sd.vector("h0", 2), sd.matrix("X", (None, 2))
    hT, _ = sd.scan(lambda h, x: (sd.tanh(W @ h + x), None), h0, X)
    loss = sd.sum(hT)
    return loss, sd.grad(loss, W)


def test_bodies_print_once_in_text_dot_and_json():
    loss, dW = _small_rnn_grad()
    text = sd.to_text({"loss": loss, "dW": dW}, optimize=False)
    assert text.count("body B0 (") == 1 and text.count("body B1 (") == 1
    # the final carry and the stored tape of carries share the forward body (tanh's
    # derivative, sech2 of the pre-activation, is recomputed from the carry: no tape of outputs)
    assert text.count("body=B0") == 2
    assert "reverse=True" in text and "    %5 = tanh %4" in text
    dot = sd.to_dot({"loss": loss, "dW": dW}, optimize=False)
    assert dot.count("subgraph cluster_B0") == 1 and dot.count("subgraph cluster_B1") == 1
    for optimize in (False, True):
        doc = sd.to_json({"loss": loss, "dW": dW}, optimize=optimize)
        assert doc.count('"n_carry"') == 2
        back = sd.from_json(doc)
        want = [loss, dW] if not optimize else sd.optimize([loss, dW])
        assert back["loss"] is want[0] and back["dW"] is want[1]
    nested = sd.fori_loop(0, 3, lambda i, v: sd.fori_loop(0, 2, lambda j, w: sd.sin(w) * v, v), sd.scalar("a"))
    assert sd.from_json(sd.to_json(nested, optimize=False))["out"] is nested
    assert "        body B1" in sd.to_text(nested)


def test_cli_explain_shows_backprop_through_time(tmp_path, capsys):
    from symdiff import cli

    source = tmp_path / "rnn_loss.py"
    source.write_text("import symdiff as sd\n\n"
                      "def loss():\n"
                      "    w, x = sd.scalar('w'), sd.vector('x', 3)\n"
                      "    h, _ = sd.scan(lambda h, xt: (sd.tanh(w * h + xt), None), 0.0, x)\n"
                      "    return h * h\n")
    assert cli.main(["explain", "--file", f"{source}:loss", "--wrt", "w", "--at", "w=0.5,x=[1,2,3]"]) == 0
    out = capsys.readouterr().out
    assert "body B0" in out and "body B1" in out and "reverse=True" in out
    assert "bprop of loop sends" in out


def test_rewrites_verify_and_sparsity_accept_loops():
    loss, dW = _small_rnn_grad()
    optimized = sd.optimize([loss, dW])
    sd.verify(optimized)
    values = {"W": [[0.5, -0.2], [0.1, 0.3]], "h0": [0.1, 0.2], "X": np.ones((3, 2))}
    assert all(_close(a, b) for a, b in zip(sd.evaluate(optimized, values), sd.evaluate([loss, dW], values)))
    x = sd.vector("x", 3)
    y, _ = sd.scan(lambda c, xt: (c * xt, None), 1.0, x)
    pattern = sd.jacobian_pattern(sd.stack([y, x[0]]), x)
    assert pattern.shape == (2, 3)


# ------------------------------------------------- per-step work batched, workspaces


def _loop_bodies(outputs) -> list:
    """The bodies of the loop nodes of ``outputs``, forward (reverse=False) first."""
    from symdiff.ir import toposort

    loops = {n.params["body"]: n.params["reverse"] for n in toposort(list(outputs)) if n.op.name == "loop"}
    return sorted(loops, key=lambda body: loops[body])


def test_per_step_work_without_the_carry_runs_before_the_loop_as_whole_array_ops():
    """U @ x_t + b is computed for every step by one matrix product before the forward
    loop; the reverse loop's recomputed pre-activation and its sech2 likewise (from the
    stored carries): the bodies keep W @ h and W^T @ g only.  Each batching rule (a fixed
    matrix or vector on either side of a per-step vector or matrix, broadcasting a
    per-step value of lower rank) gives the unrolled loop's values and derivatives, in
    the reference and in one compiled kernel, for a run-time length."""
    rnn = RNN(N)
    hT, _ = sd.scan(rnn.cell, rnn.h0, rnn.X)
    cost = sd.sum(hT)
    grads = sd.grad(cost, rnn.params)
    forward, backward = _loop_bodies(grads)
    names = lambda body: [n.op.name for n in body.nodes]  # noqa: E731
    assert names(forward).count("matmul") == 1 and "tanh" in names(forward)
    assert names(backward).count("matmul") == 1 and not {"tanh", "sech2"} & set(names(backward))

    n_steps = None
    M, v, C = sd.matrix("M", (3, 4)), sd.vector("v", 3), sd.matrix("C", (2, 3))
    xs = {"vec": sd.matrix("xv", (n_steps, 3)), "mat": sd.tensor("xm", (n_steps, 3, 3)), "s": sd.vector("xs", n_steps)}
    deep = sd.tensor("deep", (2, 4, 3))

    def step(c, x):
        terms = [
            sd.sum(sd.sin(x["vec"] @ M)),  # per-step vector @ fixed matrix
            sd.sum(sd.exp(0.1 * (x["mat"] @ M))),  # per-step matrix @ fixed matrix
            sd.sum(sd.cos(C @ x["mat"])),  # fixed matrix @ per-step matrix
            sd.sum(sd.tanh(v @ x["mat"])),  # fixed vector @ per-step matrix
            sd.sum(sd.sin(C @ x["vec"])),  # fixed matrix @ per-step vector
            sd.sum(sd.exp(x["s"] * v)),  # a per-step scalar broadcast against a vector
            sd.sum(sd.cos(x["vec"] + sd.transpose(M)[:2, :])),  # a per-step vector against a matrix
            sd.sum(sd.sin(deep @ x["vec"])),  # a fixed 3-d operand: stays in the body
        ]
        new = c * 0.5 + sd.sin(c) * sum(terms[1:], terms[0])
        return new, new * terms[0]

    init = sd.scalar("c0")
    final, ys = sd.scan(step, init, xs)
    loss = final + sd.sum(ys)
    hoisted_body = _loop_bodies([loss])[0]
    assert hoisted_body.n_xs == 3 + 7  # seven expressions hoisted; deep @ x stays
    rng = np.random.default_rng(5)
    values = {init: 0.3, M: rng.normal(size=(3, 4)) * 0.5, v: rng.normal(size=3) * 0.5,
              C: rng.normal(size=(2, 3)) * 0.5, deep: rng.normal(size=(2, 4, 3)) * 0.5}
    wrt = [init, M, v, C, deep]
    direction = [rng.normal(size=np.shape(values[w])) for w in wrt]
    outs = [loss, *sd.grad(loss, wrt), sd.hvp(loss, init, 1.0), *sd.hvp(loss, wrt, direction, mode="fwd-rev")]
    symbols = [init, M, v, C, deep, xs["vec"], xs["mat"], xs["s"]]
    kernel = sd.function(symbols, outs)
    for n in (0, 1, 4):
        values.update({xs["vec"]: rng.normal(size=(n, 3)), xs["mat"]: rng.normal(size=(n, 3, 3)),
                       xs["s"]: rng.normal(size=n)})
        c, unrolled_ys = init, []
        for t in range(n):
            c, y = step(c, {key: x[t] for key, x in xs.items()})
            unrolled_ys.append(y)
        unrolled = c + sum(unrolled_ys, sd.constant(0.0))
        want = sd.evaluate([unrolled, *sd.grad(unrolled, wrt), sd.hvp(unrolled, init, 1.0),
                            *sd.hvp(unrolled, wrt, direction, mode="fwd-rev")], values)
        reference = sd.evaluate(outs, values)
        compiled = kernel(*[values[s] for s in symbols])
        for k, (r, g, w) in enumerate(zip(reference, compiled, want)):
            assert _close(r, w, 1e-10) and _close(g, w, 1e-10), f"output {k} at n={n}"


def _steps_allocating(source: str) -> list:
    """For each loop over steps in a kernel's source, how many allocations its step makes."""
    lines = source.split("\n")
    counts = []
    for k, line in enumerate(lines):
        if re.match(r"\s*for s\d+ in range", line):
            depth = len(line) - len(line.lstrip())
            body = itertools.takewhile(lambda x: not x.strip() or len(x) - len(x.lstrip()) > depth, lines[k + 1:])
            counts.append(sum(any(call in x for call in ("np.empty(", ".copy()", "_empty(", "_copy(")) for x in body))
    return counts


def test_a_body_writes_into_arrays_allocated_once_without_clobbering_its_carries():
    """Compiled bodies take their arrays from the loop (allocated at the first step); a
    carry the body returns is read by the next step, which must write elsewhere: carries
    that are an intermediate, a view of one (a transpose), the same array as a per-step
    output, a product that reads the old carry while writing (M @ w), or passed through
    unchanged, all equal the reference at every length."""
    M, A0, v0 = sd.matrix("M", (3, 3)), sd.matrix("A0", (3, 3)), sd.vector("v0", 3)
    X = sd.matrix("X", (None, 3))

    def step(carry, x):
        A, v, fixed, w = carry
        inner = sd.sin(A @ M) * 0.5
        new_v = sd.tanh(inner @ v + x)
        return (sd.transpose(inner), new_v, fixed, M @ w), (new_v, inner[0])

    (A, v, fixed, w), (vs, rows) = sd.scan(step, (A0, v0, v0 * 2.0, v0), X)
    outs = [A, v, fixed, w, vs, rows, *sd.grad(sd.sum(A * A) + sd.sum(vs) + sd.sum(rows) + sd.sum(w), [M, A0, v0])]
    f = sd.function([M, A0, v0, X], outs)
    assert _steps_allocating(f.source) == [0, 0]  # the forward and the reverse loop
    # reverse over reverse: a later loop's per-step output is its carry (no copy per step)
    hvp = sd.function([M, A0, v0, X], sd.hvp(sd.sum(vs), v0, v0, mode="rev-rev"))
    assert set(_steps_allocating(hvp.source)) == {0}
    rng = np.random.default_rng(8)
    values = {M: rng.normal(size=(3, 3)), A0: rng.normal(size=(3, 3)), v0: rng.normal(size=3)}
    for n in (0, 1, 2, 5):
        values[X] = rng.normal(size=(n, 3))
        got = f(*values.values())
        for k, (g, w) in enumerate(zip(got, sd.evaluate(outs, values))):
            assert _close(g, w, 1e-12), f"output {k} at n={n}"


def test_body_arrays_whose_size_follows_the_step_or_a_carry_are_reallocated():
    """Found by review: a workspace array sized at the first step was reused when an inner
    loop's length follows the outer step index (wrong values, then a heap corruption)."""
    A, h0, n = sd.matrix("A", (3, 3)), sd.vector("h0", 3), sd.scalar("n", dtype="int64")

    def outer(i, h):
        hT, ys = sd.scan(lambda c, x: (sd.tanh(A @ c), sd.tanh(A @ c)), h, length=i + 1)
        E = sd.exp(ys)
        return sd.tanh(hT + sd.sum(E.T @ E, axis=0) * 0.01)

    final = sd.fori_loop(0, n, outer, h0)
    f = sd.function([A, h0, n], final)
    values = {A: RNG.normal(size=(3, 3)) * 0.5, h0: RNG.normal(size=3)}
    for k in (1, 2, 4, 8):
        assert _close(f(values[A], values[h0], np.int64(k)), sd.evaluate(final, {**values, n: np.int64(k)}))


def test_a_carry_that_changes_its_run_time_size_is_refused_in_both_backends():
    h0, X = sd.vector("h0", None), sd.matrix("X", (None, 2))
    for body, init in ((lambda c, x: (sd.tanh(sd.concatenate([c, x])), sd.sum(c)), np.ones(3)),
                       (lambda c, x: (sd.tanh(c[1:]), sd.sum(c)), np.arange(6.0))):
        hT, ys = sd.scan(body, h0, X)
        f = sd.function([h0, X], [hT, ys])
        with pytest.raises(sd.ShapeError, match="carry 0"):
            f(init, np.ones((3, 2)))
        with pytest.raises(sd.ShapeError, match=r"changed carry 0 from shape"):
            sd.evaluate([hT, ys], {h0: init, X: np.ones((3, 2))})


def test_a_size_mismatch_inside_a_body_names_the_loop_step_op_and_shapes_in_both_backends():
    """Found by review: with run-time sizes the compiled kernel said only "run-time sizes do
    not agree" (the failed check is inside the step); a wrong-length jvp tangent too."""
    h0, W, X, t = sd.vector("h0"), sd.matrix("W"), sd.matrix("X"), sd.vector("t")
    hT, ys = sd.scan(lambda h, x: (sd.tanh(W @ h + x), sd.sum(h)), h0, X)
    cost = sd.sum(ys) + sd.sum(hT)
    cases = [(cost, (np.zeros(3), np.eye(3), np.zeros((5, 4)))),  # each row of X has 4, h 3
             (sd.jvp(cost, h0, t), (np.zeros(3), np.eye(3), np.zeros((5, 3)), np.ones(4)))]
    for out, values in cases:
        inputs = [h0, W, X, t][:len(values)]
        for backend in ("numpy", "numba"):
            with pytest.raises(sd.ShapeError, match=r"scan at test_loops\.py:\d+, step 0: (add|matmul) at .*"
                                                    r"test_loops\.py:\d+: .*(3.*4|4.*3)") as caught:
                sd.function(inputs, out, backend=backend)(*values)
            assert "(5, " not in str(caught.value)  # the body node's shapes, not the loop's inputs


def test_per_step_outputs_whose_size_only_a_step_tells_compile():
    """Found by review: nested scans with run-time lengths under a rev-rev HVP (a per-step
    output is an inner loop's carry), or a per-step output that concatenates, raised a
    LoweringError asking for static sizes the user never declared."""
    W, h0, X, V = sd.matrix("W"), sd.vector("h0"), sd.tensor("X", (None, None, None)), sd.matrix("V")

    def outer(h, xs):
        hT, ys = sd.scan(lambda c, x: (sd.tanh(W @ c + x), sd.sum(c)), h, xs)
        return hT, sd.sum(ys)

    hT, ys = sd.scan(outer, h0, X)
    nested_hvp = sd.hvp(sd.sum(ys) + sd.sum(hT * hT), W, V, mode="rev-rev")
    c0, Z = sd.vector("c0"), sd.matrix("Z")
    cT, joined = sd.scan(lambda c, z: (sd.tanh(c + sd.sum(z)), sd.concatenate([c, z * c[0]])), c0, Z)
    outs = [nested_hvp, joined * 2.0, *sd.grad(sd.sum(joined * joined) + sd.sum(cT), [c0, Z])]
    for steps in (4, 0):
        values = {W: RNG.normal(size=(3, 3)) * 0.3, h0: RNG.normal(size=3), X: RNG.normal(size=(steps, 2, 3)),
                  V: RNG.normal(size=(3, 3)), c0: RNG.normal(size=3), Z: RNG.normal(size=(steps, 2))}
        got = sd.function(list(values), outs)(*values.values())
        for g, w in zip(got, sd.evaluate(outs, values)):
            assert g.shape == w.shape and _close(g, w, 1e-10)


def test_a_per_step_output_that_changes_shape_is_refused_alike_in_both_backends():
    """Found by review: the reference said only NumPy's "inhomogeneous shape" for it."""
    x = sd.vector("x")

    def outer(c, xi):
        k, s = c
        _, ys = sd.scan(lambda a, _: (a + 1.0, a * xi), s, length=k)  # k rows, k grows each step
        return (k + 1, s + xi), ys

    _, stacked = sd.scan(outer, (sd.constant(np.int64(1)), sd.constant(0.0)), x)
    for backend in ("numpy", "numba"):
        with pytest.raises(sd.ShapeError, match=r"scan at test_loops\.py:\d+: per-step output 0 changed its shape"):
            sd.function([x], stacked, backend=backend)(np.array([1.0, 2.0, 3.0]))


def test_gradients_through_while_loops_and_object_mode_bodies_compile():
    """Found by review: a while loop's reverse sweep had batched work sized by a trip count
    known only once the loop ran (NotDefinedError); the gradient wrt a matrix of a while loop,
    or anything sized by a computed count, failed to compile (older than the batching); two
    inlined bodies calling a custom op without numba= broke LLVM's verifier."""
    import warnings

    A, v0, X = sd.matrix("A", (3, 3)), sd.vector("v0", 3), sd.matrix("X", (None, 3))
    k, v = sd.while_loop(lambda c: c[0] < 4, lambda c: (c[0] + 1, sd.tanh(A @ c[1])),
                         (sd.constant(np.int64(0)), v0), max_steps=10)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        half_sq = sd.custom_op("half_sq_loops", lambda x: x * x * 0.5, elementwise=True, vjp=lambda g, out, x: g * x)
    cell = lambda h, x: (sd.tanh(half_sq(A @ h + x)), sd.sum(h))  # noqa: E731
    h1, _ = sd.scan(cell, v0, X)
    h2, _ = sd.scan(cell, h1 * 2.0, X)
    # a count computed in the kernel: arrays and checks sized by it wait until it is known
    counts = sd.vector("counts", None, dtype="int64")
    hT, ys = sd.scan(lambda c, x: (sd.tanh(A @ c), sd.exp(A @ c)), v0, length=sd.sum(counts))
    outs = [*sd.grad(sd.sum(v), [A, v0]), h2, *sd.grad(sd.sum(h2), [A, v0]), ys * 2.0, *sd.grad(sd.sum(hT), [A])]
    values = {A: RNG.normal(size=(3, 3)) * 0.5, v0: RNG.normal(size=3), X: RNG.normal(size=(2, 3)),
              counts: np.array([1, 2])}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        got = sd.function(list(values), outs)(*values.values())
    for g, w in zip(got, sd.evaluate(outs, values)):
        assert _close(g, w, 1e-10)


def test_a_loop_of_zero_steps_gives_per_step_outputs_their_sizes():
    """Found by review: the reference gave 0-step ys a size 0 wherever a per-step size was
    None, so gradients had wrong shapes (or, with batched per-step work, failed)."""
    W, U, h0, X = sd.matrix("W", (None, None)), sd.matrix("U", (None, None)), sd.vector("h0", None), \
        sd.matrix("X", (None, None))
    hT, ys = sd.scan(lambda h, x: (sd.tanh(W @ h + U @ x), sd.sum(h)), h0, X)
    grads = sd.grad(sd.sum(hT * hT) + sd.sum(ys), [W, U, h0, X])
    args = [RNG.normal(size=(4, 4)), RNG.normal(size=(4, 2)), RNG.normal(size=4), np.zeros((0, 2))]
    want = [(4, 4), (4, 2), (4,), (0, 2)]
    assert [np.shape(g) for g in sd.evaluate(grads, dict(zip([W, U, h0, X], args)))] == want
    assert [np.shape(g) for g in sd.function([W, U, h0, X], grads)(*args)] == want


def test_sizes_known_only_mid_kernel_work_wherever_they_are_used():
    """Found by a second review: a scan whose length is computed from data (or is a while
    loop's counter) has a size known only once the kernel reached it; fills, sizes computed
    from it (concatenate, reshape, slices), its value (mean, shape[0]), a scan over its ys and
    gradients must all wait for it.  Also: a negative count with xs of zero steps runs no step
    in both backends, and a reverse sweep's per-step output sized through a solve compiles."""
    v0, counts, B = sd.vector("v0", 2), sd.vector("counts", None, dtype="int64"), sd.matrix("B", (2, 2))
    A, h0, a = sd.matrix("A", (2, 2)), sd.vector("h0", 2), sd.scalar("a")
    _, ys = sd.scan(lambda c, x: (sd.cos(c), c + 1.0), v0, length=sd.sum(counts))
    _, ys_less = sd.scan(lambda c, x: (sd.sin(c), sd.exp(c)), v0, length=sd.sum(counts) - 1)
    k, v = sd.while_loop(lambda c: sd.sum(c[1] * c[1]) < 20.0,
                         lambda c: (c[0] + 1, sd.tanh(A @ c[1]) * (1.0 + a) + c[1]),
                         (sd.constant(np.int64(0)), h0), max_steps=30)
    hT2, ys2 = sd.scan(lambda c, x: (sd.tanh(A @ c * a), sd.exp(A @ c) * a), v, length=k)
    over, _ = sd.scan(lambda c, x: (c * x, c), v0, ys)
    outs = [sd.ones_like(ys), *sd.grad(sd.sum(ys), [v0]), ys_less * 2.0, sd.concatenate([ys, B], axis=0),
            sd.reshape(ys, (-1,)), ys[1:], sd.mean(ys), sd.astype(ys.shape[0], "float64") * 2.0, over,
            *sd.grad(sd.sum(hT2) + sd.sum(ys2 * ys2), [A, h0, a])]
    values = {v0: np.array([0.1, 0.2]), counts: np.array([1, 2]), B: np.ones((2, 2)), A: np.eye(2) * 0.5,
              h0: np.array([0.3, 0.4]), a: 0.5}
    f = sd.function(list(values), outs)
    for g, w in zip(f(*values.values()), sd.evaluate(outs, values)):
        assert _close(g, w, 1e-10)

    n, X = sd.scalar("n", dtype="int64"), sd.matrix("X", (None, 2))
    hT, ys = sd.scan(lambda c, x: (c + x, sd.sum(c)), v0, X, length=n)
    empty = {v0: np.array([0.1, 0.2]), n: np.int64(-1), X: np.zeros((0, 2))}
    for got in (sd.function(list(empty), [hT, ys])(*empty.values()), sd.evaluate([hT, ys], empty)):
        assert _close(got[0], [0.1, 0.2]) and np.shape(got[1]) == (0,)

    W, h, Xs = sd.matrix("W", (None, None)), sd.vector("h", None), sd.matrix("Xs", (None, None))
    hT, _ = sd.scan(lambda c, x: (sd.tanh(sd.linalg.solve(W, c + x)), sd.sum(c)), h, Xs)
    grad = sd.grad(sd.sum(hT * hT), Xs)
    values = {W: np.eye(3) * 2.0, h: np.array([0.1, 0.2, 0.3]), Xs: np.ones((4, 3)) * 0.1}
    assert _close(sd.function(list(values), grad)(*values.values()), sd.evaluate(grad, values), 1e-10)
