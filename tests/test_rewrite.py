"""Tests of the graph rewrites (symdiff.rewrite).

Every rule has a case below that makes it fire; each case checks that the rule
fired, that the IR verifier accepts the graph after every sweep, that types are
kept, that the original graph is untouched, and that the rewritten graph gives
the same values as the original under the NumPy reference evaluator: bitwise
(NaN stays NaN, signed zeros kept) for exact rules on inputs full of zeros, -0.0,
infinities and NaNs; to rounding for the "rounding" rules; on finite inputs for
``fast_math`` cases.  Then: the seed gradient's shape, the node-count ratios,
fixed points, speed on a 100k-node graph (measured, not asserted) and the
elementwise regions' contract.

Run ``python tests/test_rewrite.py`` to print the table of ratios of
docs/architecture.md ("Graph rewrites and the verifier") (with JAX and PyTensor counts when they are installed).
"""

import time

import numpy as np
import pytest

import symdiff as sd
from symdiff.ops import elementwise as E
from symdiff.ops import reductions as R
from symdiff.ops import structure as S
from symdiff.ops.leaves import const
from symdiff.rewrite import ROUNDING, RULES, Region, elementwise_regions, fusion_schedule, rewrite

SPECIAL = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, 1.0, -1.0, 1e308, -5e-324])
RUN_TIME_SIZE = 3  # the size given to None dimensions


# ------------------------------------------------------------------ helpers


def random_inputs(symbols, rng, special=True):
    """Values for ``symbols``; with ``special``, about half the floats are zeros,
    -0.0, infinities, NaN, huge or subnormal."""
    values = {}
    for sym in symbols:
        shape = tuple(RUN_TIME_SIZE if d is None else d for d in sym.type.shape)
        if sym.dtype == "bool":
            values[sym] = rng.random(shape) < 0.5
        elif sym.dtype == "int64":
            values[sym] = rng.integers(-3, 4, size=shape)
        else:
            x = rng.normal(size=shape) * 3
            if special:
                picks = SPECIAL[rng.integers(len(SPECIAL), size=shape)]
                x = np.where(rng.random(shape) < 0.5, picks, x)
            with np.errstate(over="ignore"):  # 1e308 becomes inf in float32: one more special value
                values[sym] = np.asarray(x, dtype=sym.dtype)
    return values


def same_bits(a, b) -> bool:
    a, b = np.asarray(a), np.asarray(b)
    if a.dtype != b.dtype or a.shape != b.shape:
        return False
    if a.dtype.kind != "f":
        return np.array_equal(a, b)
    nan_a, nan_b = np.isnan(a), np.isnan(b)
    return np.array_equal(nan_a, nan_b) and np.array_equal(a[~nan_a].tobytes(), b[~nan_b].tobytes())


def close_with_same_specials(a, b) -> bool:
    """Equal to rounding, with NaN and infinities (and their signs) in the same places."""
    a, b = np.asarray(a), np.asarray(b)
    if a.dtype != b.dtype or a.shape != b.shape:
        return False
    finite = np.isfinite(a)
    return (
        np.array_equal(finite, np.isfinite(b))
        and np.array_equal(np.isnan(a), np.isnan(b))
        and np.array_equal(a[np.isinf(a)], b[np.isinf(a)])
        and np.allclose(a[finite], b[finite], rtol=1e-14, atol=0)
    )


def snapshot(outputs):
    """Everything about the nodes of a graph that a rewrite must not change."""
    return [(n.id, n.op, tuple(x.id for x in n.inputs), n.attrs, n.type, n.origin, n.note)
            for n in sd.toposort(outputs)]


def check_rewrite(outputs, fast_math=False, expect=(), compare="exact", seed=0, trials=6):
    """Rewrite ``outputs``; check the invariants and values; return the result."""
    outs = list(outputs)
    before = snapshot(outs)
    result = rewrite(outs, fast_math=fast_math, after_sweep=sd.verify)
    assert snapshot(outs) == before, "the original graph changed"
    assert not result.rejected, f"rules produced nodes of another type: {result.rejected}"
    for rule_name in expect:
        assert result.fired[rule_name], f"{rule_name} did not fire; fired: {dict(result.fired)}"
    for old, new in zip(outs, result.outputs):
        assert new.type == old.type
    if compare == "auto":  # bitwise unless a rounding rule fired
        rounding = any(RULES[name].tier == ROUNDING for name, count in result.fired.items() if count)
        compare = "rounding" if rounding else "exact"
    symbols = sd.Graph(outs).inputs
    rng = np.random.default_rng(seed)
    for _ in range(trials):
        values = random_inputs(symbols, rng, special=compare != "finite")
        want = sd.evaluate(outs, values)
        got = sd.evaluate(result.outputs, {s: v for s, v in values.items()
                                           if s in set(sd.Graph(result.outputs).inputs)})
        for w, g in zip(want, got):
            if compare == "exact":
                assert same_bits(w, g), (w, g)
            elif compare == "rounding":
                assert close_with_same_specials(w, g), (w, g)
            else:
                assert np.allclose(w, g, rtol=1e-12, atol=1e-300, equal_nan=True), (w, g)
    return result


# --------------------------------------------------------- one case per rule

X = sd.matrix("X", (2, 3))
XR = sd.matrix("XR", (None, 3))  # a run-time size
x, y = sd.vector("x", 3), sd.vector("y", 3)
a, b = sd.scalars("a b")
c = sd.vector("c", 3, dtype="bool")
x32 = sd.vector("x32", 3, dtype="float32")
IDX = ((0, 2, 1), (None, None, -1))


def zeros(ref):
    return E.zeros_like(ref)


def fill(value, shape, dtype="float64"):
    return S.BROADCAST_TO(const(value, dtype), shape=shape)


# (rule, builder -> outputs, fast_math, comparison)
CASES = [
    ("commute_inputs", lambda: [x * y, y * x, a + b, b + a], False, "exact"),
    ("fold_constants", lambda: [x * (sd.constant(2.0) * sd.constant([1.0, 3.0, -0.0]))], False, "exact"),
    ("fold_uniform", lambda: [-zeros(XR), sd.exp(zeros(XR)) * XR], False, "exact"),
    ("fold_shape_of_fill", lambda: [S.TRANSPOSE(fill(2.0, (2, 3)), axes=(1, 0)) * X.T,
                                    sd.reshape(fill(-0.0, (40, 30)), (-1,)) + sd.vector("z", 1200)], False, "exact"),
    ("fold_concatenate_fills", lambda: [sd.concatenate([fill(1.0, (1,)), fill(1.0, (2,))]) + x], False, "exact"),
    ("dim_static", lambda: [sd.astype(S.DIM(XR, axis=1), "float64") * a], False, "exact"),
    ("fold_sum_of_fill", lambda: [sd.sum(fill(0.5, (4, 3)), axis=0) * x, sd.sum(fill(-0.0, (3,))) + a,
                                  sd.sum(fill(0.1, (3,))) * a], False, "exact"),
    ("fold_extremum_of_fill", lambda: [sd.max(fill(2.0, (3, 4)), axis=1) * x], False, "exact"),
    ("add_neg_zero", lambda: [x + (-0.0), (-0.0) + X, a + fill(-0.0, (3,))], False, "exact"),
    ("add_zero", lambda: [sd.exp(x) + 0.0, 0.0 + sd.abs(X), sd.astype(c, "float64") + zeros(x)], False, "exact"),
    ("add_zero", lambda: [x + 0.0, 0.0 + X], True, "finite"),
    ("add_neg", lambda: [x + (-y), (-x) + a], False, "exact"),
    ("sub_zero", lambda: [x - 0.0, sd.exp(X) - (-0.0), a - zeros(x)], False, "exact"),
    ("sub_zero", lambda: [x - (-0.0)], True, "finite"),
    ("sub_from_zero", lambda: [(-0.0) - x, fill(-0.0, (2, 3)) - a], False, "exact"),
    ("sub_from_zero", lambda: [0.0 - x], True, "finite"),
    ("sub_neg", lambda: [x - (-y), a - (-X)], False, "exact"),
    ("sub_self", lambda: [x - x, XR - XR], True, "finite"),
    ("mul_one", lambda: [x * 1.0, 1.0 * X, a * fill(1.0, (2, 3)), sd.broadcast_like(1.0, XR) * a], False, "exact"),
    ("mul_minus_one", lambda: [x * -1.0, -1.0 * a, sd.vector("k", 3, "int64") * -1], False, "exact"),
    ("neg_times_neg", lambda: [(-x) * (-y), (-x) / (-a)], False, "exact"),
    ("fold_power_of_two_scaling", lambda: [100.0 * (x * 2.0), (4.0 * X) * -1.5, a * fill(3.0, (2, 3)) * 8.0,
                                           1e308 * (x * 2.0)], False, "exact"),
    ("div_one", lambda: [x / 1.0, X / -1.0, a / fill(1.0, (3,))], False, "exact"),
    ("neg_neg", lambda: [-(-x), -(-(-a))], False, "exact"),
    ("pow_one", lambda: [x ** 1.0], False, "exact"),
    ("pow_to_one", lambda: [x ** 0.0, sd.constant(1.0) ** X, x ** -0.0], False, "exact"),
    ("where_same", lambda: [sd.where(c, x, x), sd.where(sd.matrix("m", (2, 3), "bool"), a, a)], False, "exact"),
    ("where_constant", lambda: [sd.where(sd.constant(True), x, y), sd.where(fill(False, (3,), "bool"), a, x)],
     False, "exact"),
    ("where_not", lambda: [sd.where(~c, x, y)], False, "exact"),
    ("extremum_same", lambda: [sd.maximum(x, x), sd.minimum(X, X)], False, "exact"),
    ("not_not", lambda: [~~c], False, "exact"),
    ("cast_roundtrip", lambda: [sd.astype(sd.astype(x32, "float64"), "float32"), E.CAST(x, dtype="float64"),
                                sd.astype(sd.astype(c, "int64"), "bool")], False, "exact"),
    ("transpose_identity", lambda: [S.TRANSPOSE(X, axes=(0, 1)) * 2.0], False, "exact"),
    ("transpose_transpose", lambda: [X.T.T, sd.transpose(sd.transpose(sd.tensor("T", (2, 3, 4)), (1, 2, 0)),
                                                          (2, 0, 1)), sd.transpose(sd.transpose(
                                                              sd.tensor("U", (2, 3, 4)), (1, 0, 2)), (0, 2, 1))],
     False, "exact"),
    ("reshape_noop", lambda: [S.RESHAPE(X, shape=(2, 3)), sd.expand_dims(sd.squeeze(sd.tensor("V", (1, 3)), 0), 0),
                              sd.reshape(sd.reshape(XR, (-1,)), (-1, 3))], False, "exact"),
    ("reshape_reshape", lambda: [sd.reshape(sd.reshape(X, (6,)), (3, 2)), sd.reshape(sd.expand_dims(x, 0), (3, 1))],
     False, "exact"),
    ("broadcast_noop", lambda: [S.BROADCAST_TO(X, shape=(2, 3)), S.BROADCAST_LIKE(XR, XR)], False, "exact"),
    ("broadcast_broadcast", lambda: [sd.broadcast_to(sd.broadcast_to(a, (3,)), (2, 3)),
                                     sd.broadcast_like(sd.broadcast_like(a, x), XR)], False, "exact"),
    ("elementwise_implicit_broadcast", lambda: [sd.broadcast_to(x, (2, 3)) * X, sd.expand_dims(x, 0) + X,
                                                sd.where(sd.broadcast_like(c, XR), XR, a)], False, "exact"),
    ("slice_full", lambda: [S.SLICE(X, index=((None, None, 1), (0, None, 1))) * 2.0], False, "exact"),
    ("slice_of_scatter", lambda: [S.SLICE(S.SCATTER_SLICE(sd.matrix("G", (2, 3)), sd.matrix("Z", (3, 3)), index=IDX),
                                          index=IDX)], False, "exact"),
    ("concatenate_one", lambda: [S.CONCATENATE(X, axis=0) * 2.0], False, "exact"),
    ("sum_no_axes", lambda: [R.SUM(sd.exp(X), axes=(), keepdims=False) * 2.0], False, "exact"),
    ("sum_no_axes", lambda: [R.SUM(X, axes=(), keepdims=True) * 2.0], True, "finite"),
    ("sum_of_broadcast", lambda: [sd.sum(sd.broadcast_to(a, (4, 3))), sd.sum(sd.broadcast_to(sd.exp(a), (3,))),
                                  sd.sum(sd.broadcast_to(a, (2, 3)), axis=1), sd.sum(sd.broadcast_to(a, (0,)))],
     False, "rounding"),
    ("mul_zero", lambda: [sd.astype(c, "float64") * 0.0, 0.0 * sd.abs(sd.constant([1.0, 2.0, 3.0]) * 0.5 + 1.0)],
     False, "exact"),
    ("mul_zero", lambda: [x * 0.0, zeros(X) * X], True, "finite"),
    ("zero_div", lambda: [0.0 / x], True, "finite"),
    ("matmul_zero", lambda: [sd.astype(sd.matrix("B", (2, 3), "bool"), "float64") @ zeros(sd.matrix("W", (3, 4)))],
     False, "exact"),
    ("matmul_zero", lambda: [X @ zeros(sd.matrix("W", (3, 4))), zeros(X) @ x], True, "finite"),
    ("matmul_outer", lambda: [sd.matrix("P", (None, 1)) @ sd.matrix("Q", (1, 4)),
                              sd.tensor("T", (2, 3, 1)) @ sd.matrix("R", (1, None)),
                              sd.matrix("P32", (3, 1), "float32") @ sd.matrix("Q32", (1, 2), "float32")], False, "exact"),
    ("matmul_of_fill", lambda: [sd.sum(X @ sd.matrix("W3", (3, 4))) * 0 + fill(1.0, (5, 3)) @ sd.matrix("W4", (3, 4)),
                                sd.matrix("P5", (None, None)) @ sd.broadcast_like(-1.0, sd.matrix("Q5", (None, None))),
                                sd.matrix("P6", (2, 0)) @ fill(1.0, (0, 3)),
                                S.TRANSPOSE(X, axes=(1, 0)) @ fill(1.0, (2, 5))], False, "rounding"),
    ("scatter_zero", lambda: [S.SCATTER_SLICE(zeros(sd.matrix("G", (2, 3))), sd.matrix("Z", (3, 3)), index=IDX)],
     False, "exact"),
    ("broadcast_static", lambda: [zeros(sd.exp(X)) + a, sd.broadcast_like(a, sd.exp(X))], False, "exact"),
    ("broadcast_ref_source", lambda: [sd.broadcast_like(a, sd.exp(XR) * 2.0)], False, "exact"),
    ("dim_ref_source", lambda: [sd.astype(sd.dim(sd.exp(XR) + 1.0, 0), "float64") * a], False, "exact"),
]


@pytest.mark.parametrize("rule_name, build, fast_math, compare", CASES,
                         ids=[f"{case[0]}{'-fast' if case[2] else ''}" for case in CASES])
def test_rule_fires_and_preserves_values(rule_name, build, fast_math, compare):
    check_rewrite(build(), fast_math=fast_math, expect=[rule_name], compare=compare)


def test_power_of_two_scaling_stays_when_it_would_change_an_overflow():
    """0.5 * (x * 2) is inf at x = 1e308 but x is not; 0.5 * 0.5 and 3 are not 2^k; c * 2^k overflowing."""
    outputs = [0.5 * (x * 2.0), (x * 0.5) * 4.0, (x * 3.0) * 4.0, 1e308 * (x * 4.0)]
    result = check_rewrite(outputs, compare="exact")
    assert not result.fired["fold_power_of_two_scaling"]


def test_matmul_outer_keeps_the_size_check_of_a_run_time_contracted_size():
    """(n, 1) @ (m, k) with m known only at run time is not an outer product: a multiply
    would broadcast (3, 1) against (3, 4) where matmul must refuse (found by review)."""
    left, right = sd.matrix("left", (None, 1)), sd.matrix("right", (None, None))
    assert sd.optimize([left @ right])[0].op.name == "matmul"
    with pytest.raises(sd.ShapeError):
        sd.function([left, right], left @ right)(np.ones((3, 1)), np.ones((3, 4)))


def test_every_rule_has_a_case():
    covered = {case[0] for case in CASES}
    assert set(RULES) - covered == set(), "rules without a test case"
    for entry in RULES.values():  # one line of math, with an arrow
        assert "->" in entry.math and "\n" not in entry.math, entry.name


@pytest.mark.parametrize("build", [
    lambda: [x + 0.0],  # x may be -0.0: x + 0.0 is +0.0 there
    lambda: [x * 0.0, X @ zeros(sd.matrix("W", (3, 4)))],  # inf * 0 is NaN
    lambda: [x - x, 0.0 - x, 0.0 / x],  # inf - inf; 0 - 0 is +0.0; 0 / 0
    lambda: [sd.sum(sd.broadcast_to(a, (5,))) * 0 + sd.maximum(x, 0.0)],  # maximum(-0.0, 0.0) keeps its order
])
def test_inexact_rules_do_not_fire_without_fast_math(build):
    result = check_rewrite(build(), compare="exact")
    for name in ("add_zero", "mul_zero", "matmul_zero", "sub_self", "sub_from_zero", "zero_div"):
        assert not result.fired[name], name


def random_program(rng, steps=14):
    """A random DAG over a scalar, a vector and a matrix, full of the patterns the
    rules look for: constants 0, -0.0, 1, -1, zeros_like, fills, negations,
    broadcasts, transposes, where, casts of comparisons, and its gradient."""
    s, v, m = sd.scalar("s"), sd.vector("v", 3), sd.matrix("m", (2, 3))
    pool = [s, v, m]
    constants = [0.0, -0.0, 1.0, -1.0, 2.0]
    unary = [sd.negative, sd.exp, sd.abs, sd.sin, lambda z: sd.astype(z > 0, "float64"), E.zeros_like,
             lambda z: z.T.T if z.ndim == 2 else -z,
             lambda z: sd.reshape(sd.reshape(z, (-1,)), z.type.shape), lambda z: sd.sum(z, axis=0)
             if z.ndim else z, lambda z: sd.broadcast_to(z, (2, 3)) if z.ndim < 2 else z]
    binary = [sd.add, sd.subtract, sd.multiply, sd.divide, sd.maximum,
              lambda p, q: sd.where(p > q, p, q), lambda p, q: sd.where(p > 0, q, q)]
    for _ in range(steps):
        p = pool[rng.integers(len(pool))]
        if rng.random() < 0.4:
            q = const(constants[rng.integers(len(constants))], "float64") if rng.random() < 0.5 else \
                pool[rng.integers(len(pool))]
            op = binary[rng.integers(len(binary))]
            pool.append(op(p, q) if rng.random() < 0.5 else op(q, p))
        else:
            pool.append(unary[rng.integers(len(unary))](p))
    out = sd.sum(pool[-1]) + sd.sum(pool[-2]) * 0.5
    return [out, pool[-3]] + sd.grad(out, [s, v, m])


@pytest.mark.parametrize("seed", range(12))
def test_random_programs_keep_their_bits(seed):
    rng = np.random.default_rng(seed)
    for _ in range(4):
        check_rewrite(random_program(rng), compare="auto", seed=seed, trials=3)


def test_commuting_gives_one_node_for_both_orders():
    new = sd.optimize([x * y, y * x])
    assert new[0] is new[1]


# ------------------------------------------------------------- the seed case


def test_seed_gradient_optimizes_to_what_a_person_writes():
    a, b = sd.scalars("a b")
    e = (a + b) * (b + 1)
    de_da, de_db = sd.grad(e, [a, b])
    new_e, new_da, new_db = sd.optimize([e, de_da, de_db])
    assert new_e is e
    assert new_da is b + 1  # hash-consing: the very node of the forward pass
    assert new_db.op.name == "add" and set(new_db.inputs) == {a + b, b + 1}
    assert sd.node_count([new_e, new_da, new_db]) == 4  # a+b, b+1, their product, their sum
    assert all(n.op.name != "mul" or n is e for n in sd.toposort([new_da, new_db]))
    assert sd.evaluate([new_da, new_db], {a: 2.0, b: 1.0}) == [2.0, 5.0]


def test_optimize_returns_one_for_one_and_list_for_list():
    assert isinstance(sd.optimize(a * 1.0), sd.Expr)
    assert sd.optimize(a * 1.0) is a
    assert sd.optimize([a * 1.0, b]) == [a, b]
    assert sd.optimize((a,)) == [a]


# ------------------------------------------------------- ratios and fixed points


def chain(n):
    """x <- sin(x) * x + cos(x), n times."""
    x0 = sd.scalar("x")
    out = x0
    for _ in range(n):
        out = sd.sin(out) * out + sd.cos(out)
    return [x0], out


def mlp_loss():
    """Mean cross-entropy of a one-hidden-layer tanh network with a softmax output."""
    X = sd.matrix("X", (256, 64))
    Y = sd.matrix("Y", (256, 10))
    W1, b1 = sd.matrix("W1", (64, 128)), sd.vector("b1", 128)
    W2, b2 = sd.matrix("W2", (128, 10)), sd.vector("b2", 10)
    hidden = sd.tanh(X @ W1 + b1)
    log_probs = sd.log_softmax(hidden @ W2 + b2)
    return [W1, b1, W2, b2], -sd.mean(sd.sum(Y * log_probs, axis=1))


def graphs(problem):
    """(value, value + gradient, Hessian-vector product) outputs of a problem."""
    wrt, value = problem
    grads = sd.grad(value, wrt)
    directions = [sd.tensor(f"v_{w.name}", w.type.shape) for w in wrt]
    return [value], [value] + grads, sd.hvp(value, wrt, directions)


def ratios(problem, fast_math=False):
    """node_count ratios (value+gradient / value, HVP / value), before and after."""
    value, value_grad, hvp = graphs(problem)
    new_value, new_value_grad, new_hvp = (sd.optimize(g, fast_math=fast_math) for g in (value, value_grad, hvp))
    base, new_base = sd.node_count(value), sd.node_count(new_value)
    return {
        "value": (base, new_base),
        "value+grad": (sd.node_count(value_grad) / base, sd.node_count(new_value_grad) / new_base),
        "hvp": (sd.node_count(hvp) / base, sd.node_count(new_hvp) / new_base),
    }


@pytest.mark.parametrize("name, problem", [("chain10", lambda: chain(10)), ("chain100", lambda: chain(100)),
                                           ("chain1000", lambda: chain(1000)), ("mlp", mlp_loss)])
def test_gradient_and_hvp_stay_small(name, problem):
    r = ratios(problem())
    assert r["value+grad"][1] <= 3, r
    assert r["hvp"][1] <= 8, r
    assert r["value+grad"][1] < r["value+grad"][0] and r["hvp"][1] < r["hvp"][0], r


def test_optimized_gradients_evaluate_like_the_originals():
    wrt, loss = mlp_loss()
    _, value_grad, hvp = graphs((wrt, loss))
    outs = value_grad + hvp
    rng = np.random.default_rng(1)
    values = {s: rng.normal(size=s.type.shape) * 0.3 for s in sd.Graph(outs).inputs}
    for fast_math in (False, True):
        new = sd.optimize(outs, fast_math=fast_math)
        sd.verify(new)
        for want, got in zip(sd.evaluate(outs, values), sd.evaluate(new, values)):
            np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("fast_math", [False, True])
def test_fixed_point_reached_in_one_sweep_and_stable(fast_math):
    outs = graphs(chain(30))[2] + graphs(mlp_loss())[2]
    first = rewrite(outs, fast_math=fast_math, after_sweep=sd.verify)
    assert first.sweeps == 1
    again = rewrite(first.outputs, fast_math=fast_math)
    assert sum(again.fired.values()) == 0 and again.sweeps == 1
    assert all(n is m for n, m in zip(again.outputs, first.outputs))


def test_each_pass_alone_keeps_the_ir_valid():
    outs = graphs(mlp_loss())[2]
    rng = np.random.default_rng(2)
    values = {s: rng.normal(size=s.type.shape) for s in sd.Graph(outs).inputs}
    want = sd.evaluate(outs, values)
    for pass_name in ("cse", "fold", "algebra", "shape", "zeros", "dce"):
        new = rewrite(outs, passes=(pass_name,), after_sweep=sd.verify).outputs
        for w, g in zip(want, sd.evaluate(new, values)):
            np.testing.assert_allclose(g, w, rtol=1e-12)


def test_original_graph_unchanged_by_optimize():
    outs = graphs(mlp_loss())[2]
    before = snapshot(outs)
    sd.optimize(outs, fast_math=True)
    assert snapshot(outs) == before


def test_rewritten_nodes_keep_the_users_origin():
    a, b = sd.scalars("a b")
    e = (b * a) * 1.0 + -(-(a * b))
    new = sd.optimize(e)
    assert new.op.name == "add" and new.inputs[0] is new.inputs[1]  # a new node: b * a and a * b are one
    assert new.origin == e.origin and new.origin[0] == __file__


def test_100k_node_graph_optimizes_in_one_linear_sweep():
    """The gradient of a 40k-op chain: 100k nodes.  The time is printed, not asserted."""
    wrt, value = chain(10_000)
    outs = [value, sd.grad(value, wrt[0])]
    nodes = len(sd.toposort(outs))
    assert nodes >= 100_000
    start, start_wall = time.process_time(), time.perf_counter()
    result = rewrite(outs)
    seconds, wall = time.process_time() - start, time.perf_counter() - start_wall
    print(f"\noptimize: {nodes} nodes in {seconds:.2f} s of CPU time ({wall:.2f} s wall)")
    assert result.sweeps == 1
    # Per layer: value 4 ops; gradient at most 5 (x - x is kept: it is NaN for infinite x).
    assert sd.node_count(result.outputs) <= 9 * 10_000
    assert sd.node_count(outs) == 10 * 10_000


# --------------------------------------------------------- elementwise regions


def check_regions(outs):
    steps = fusion_schedule(outs)
    nodes = sd.toposort(outs)
    placed = {}
    for k, step in enumerate(steps):
        for n in (step.nodes if isinstance(step, Region) else [step]):
            assert n.id not in placed, "a node is in two steps"
            placed[n.id] = k
    assert set(placed) == {n.id for n in nodes}
    for k, step in enumerate(steps):
        members = step.nodes if isinstance(step, Region) else [step]
        for n in members:
            for x in n.inputs:
                assert placed[x.id] < k or placed[x.id] == k, "a step reads something computed later"
        if isinstance(step, Region):
            assert all(n.op.kind == "elementwise" and n.inputs and n.type.shape == step.shape for n in step.nodes)
            inside = {n.id for n in step.nodes}
            assert {x.id for x in step.inputs} == {x.id for n in step.nodes for x in n.inputs} - inside
        else:
            assert step.op.kind != "elementwise" or not step.inputs
    regions = [s for s in steps if isinstance(s, Region)]
    assert [r.nodes for r in regions] == [r.nodes for r in elementwise_regions(outs)]
    return regions


def test_chain_value_is_one_region():
    (_,), value = chain(50)
    regions = check_regions(value)
    assert len(regions) == 1 and len(regions[0].nodes) == 200 and regions[0].outputs == [value]


def test_regions_never_fuse_across_a_dependency_through_another_node():
    v = sd.vector("v", 3)
    W = sd.matrix("W", (3, 3))
    first = sd.exp(v)
    out = (W @ first) * first  # fusing exp with the product would need W @ exp inside the kernel
    regions = check_regions(out)
    assert [[n.op.name for n in r.nodes] for r in regions] == [["exp"], ["mul"]]
    assert regions[0].outputs == [first]


def test_regions_of_optimized_mlp_gradients_satisfy_the_contract():
    outs = sd.optimize(graphs(mlp_loss())[1])
    regions = check_regions(outs)
    sizes = sorted(len(r.nodes) for r in regions)
    assert sizes[-1] >= 3  # the softmax/cross-entropy backward chain fuses


# ------------------------------------------------------------ the table in docs


def _table():  # pragma: no cover - run by hand: python tests/test_rewrite.py
    rows = [("chain n=10", lambda: chain(10)), ("chain n=100", lambda: chain(100)),
            ("chain n=1000", lambda: chain(1000)), ("MLP", mlp_loss)]
    print("| problem | value nodes | value+grad / value: before, after, fast_math | "
          "HVP / value: before, after, fast_math |")
    print("|---|---|---|---|")
    for name, problem in rows:
        r = ratios(problem())
        f = ratios(problem(), fast_math=True)
        print(f"| {name} | {r['value'][0]} -> {r['value'][1]} | {r['value+grad'][0]:.2f}, {r['value+grad'][1]:.2f}, "
              f"{f['value+grad'][1]:.2f} | {r['hvp'][0]:.2f}, {r['hvp'][1]:.2f}, {f['hvp'][1]:.2f} |")


def _jax_counts(sizes):  # pragma: no cover - needs jax; run by hand
    import jax
    import jax.numpy as jnp

    jax.config.update("jax_enable_x64", True)

    def count(jaxpr):  # equations, looking inside sub-jaxprs (pjit, ...)
        total = 0
        for eqn in jaxpr.eqns:
            subs = [v for v in eqn.params.values() if hasattr(v, "jaxpr") or hasattr(v, "eqns")]
            total += sum(count(sub.jaxpr if hasattr(sub, "jaxpr") else sub) for sub in subs) if subs else 1
        return total

    def chain_fn(n):
        def f(x):
            for _ in range(n):
                x = jnp.sin(x) * x + jnp.cos(x)
            return x
        return f

    def mlp(params, X, Y):  # the same composites as symdiff's front-end
        W1, b1, W2, b2 = params
        z = jnp.tanh(X @ W1 + b1) @ W2 + b2
        shift = jax.lax.stop_gradient(jnp.max(z, axis=1, keepdims=True))
        shift = jnp.where(jnp.abs(shift) < jnp.inf, shift, 0.0)
        log_probs = z - (jnp.log(jnp.sum(jnp.exp(z - shift), axis=1, keepdims=True)) + shift)
        return -jnp.mean(jnp.sum(Y * log_probs, axis=1))

    def report(name, f, args):
        def fwd_rev(p, *rest):
            return jax.jvp(lambda q: jax.grad(f)(q, *rest), (p,), (p,))[1]

        def rev_rev(p, *rest):
            def inner(q):
                pairs = zip(jax.tree_util.tree_leaves(jax.grad(f)(q, *rest)), jax.tree_util.tree_leaves(p))
                return sum(jnp.vdot(g, v) for g, v in pairs)
            return jax.grad(inner)(p)

        v, vg, h, hr = (count(jax.make_jaxpr(g)(*args).jaxpr) for g in (f, jax.value_and_grad(f), fwd_rev, rev_rev))
        print(f"jax {jax.__version__} {name}: value {v}, value+grad {vg / v:.2f}, hvp fwd-rev {h / v:.2f}, "
              f"rev-rev {hr / v:.2f}")

    for n in sizes:
        report(f"chain n={n}", chain_fn(n), (1.0,))
    rng = np.random.default_rng(0)
    params = (rng.normal(size=(64, 128)), rng.normal(size=128), rng.normal(size=(128, 10)), rng.normal(size=10))
    report("MLP", mlp, (params, rng.normal(size=(256, 64)), rng.normal(size=(256, 10))))


def _pytensor_counts(sizes):  # pragma: no cover - needs pytensor; run by hand
    import sys

    import pytensor
    import pytensor.tensor as pt
    from pytensor.compile.mode import Mode
    from pytensor.graph.basic import io_toposort

    sys.setrecursionlimit(100_000)  # pytensor.grad recurses along the chain
    mode = Mode(linker="py", optimizer="fast_run").excluding("fusion", "inplace")

    def counts(inputs, outputs):
        before = len(io_toposort(inputs, outputs))
        fn = pytensor.function(inputs, outputs, mode=mode, on_unused_input="ignore")
        return before, sum(1 for n in fn.maker.fgraph.apply_nodes if type(n.op).__name__ != "DeepCopyOp")

    def report(name, inputs, value, wrt, vs):
        grads = pytensor.grad(value, wrt)
        hvp = pytensor.grad(sum((g * v).sum() for g, v in zip(grads, vs)), wrt)
        (v0, v1), (g0, g1), (h0, h1) = (counts(inputs + vs, o) for o in ([value], [value] + grads, hvp))
        print(f"pytensor {pytensor.__version__} {name}: value {v0} -> {v1}, value+grad {g0 / v0:.2f} -> {g1 / v1:.2f}, "
              f"hvp {h0 / v0:.2f} -> {h1 / v1:.2f}")

    for n in sizes:
        x, v = pt.dscalar("x"), pt.dscalar("v")
        out = x
        for _ in range(n):
            out = pt.sin(out) * out + pt.cos(out)
        report(f"chain n={n}", [x], out, [x], [v])
    X, Y = pt.dmatrix("X"), pt.dmatrix("Y")
    W1, b1, W2, b2 = pt.dmatrix("W1"), pt.dvector("b1"), pt.dmatrix("W2"), pt.dvector("b2")
    z = pt.tanh(X @ W1 + b1) @ W2 + b2
    shift = pytensor.gradient.disconnected_grad(pt.max(z, axis=1, keepdims=True))
    shift = pt.switch(pt.abs(shift) < np.inf, shift, 0.0)
    log_probs = z - (pt.log(pt.sum(pt.exp(z - shift), axis=1, keepdims=True)) + shift)
    loss = -pt.mean(pt.sum(Y * log_probs, axis=1))
    vs = [pt.dmatrix("vW1"), pt.dvector("vb1"), pt.dmatrix("vW2"), pt.dvector("vb2")]
    report("MLP", [X, Y, W1, b1, W2, b2], loss, [W1, b1, W2, b2], vs)


if __name__ == "__main__":  # pragma: no cover
    # python tests/test_rewrite.py [jax|pytensor] [chain sizes...]
    import sys

    what, sizes = (sys.argv[1:2] or ["symdiff"])[0], tuple(int(n) for n in sys.argv[2:]) or (10, 100, 1000)
    {"symdiff": lambda s: _table(), "jax": _jax_counts, "pytensor": _pytensor_counts}[what](sizes)
