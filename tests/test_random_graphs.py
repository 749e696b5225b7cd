"""Hypothesis-generated random expression graphs, differentiated every way symdiff can.

Each example is a small random DAG over two scalars, two vectors and a matrix: a
program of steps, each applying a smooth op to earlier nodes, so subexpressions
are shared, scalars and vectors broadcast against matrices, and data moves
through slices, concatenation, transposes and matmul.  Arguments of log, sqrt,
pow and division are positive by construction, and kinks (abs, maximum, where)
are left out, so finite differences are valid everywhere.  For each graph we
check, against finite differences: the gradient to second order (reverse over
reverse), the jvp to second order (forward over forward), and the Hessian-vector
product in both modes (rev-rev and fwd-rev), which must also agree.
"""

from __future__ import annotations

import functools

import numpy as np
import pytest
from hypothesis import HealthCheck, Phase, assume, example, given, settings
from hypothesis import strategies as st

import symdiff as sd
from symdiff.testing import check_grads, check_hvp, check_jvp

N = 3  # vector length; matrices are N x N

# Each table maps a step name to its function; the table's name says the ranks
# (0 scalar, 1 vector, 2 matrix) of its operands and result.
ELEMENTWISE_UNARY = {  # any rank -> same rank
    "sin": sd.sin,
    "cos": sd.cos,
    "tanh": sd.tanh,
    "sigmoid": sd.sigmoid,
    "softplus": sd.softplus,
    "negative": sd.negative,
    "square": sd.square,
    "cube": lambda z: z ** 3,
    "exp_of_tanh": lambda z: sd.exp(sd.tanh(z)),  # exp of a bounded argument cannot overflow
    "expm1_of_sin": lambda z: sd.expm1(sd.sin(z)),
    "log_of_1_plus_square": lambda z: sd.log(1 + sd.square(z)),
    "log1p_of_sigmoid": lambda z: sd.log1p(sd.sigmoid(z)),
    "sqrt_of_1_plus_square": lambda z: sd.sqrt(1 + z * z),
    "tan_of_tanh": lambda z: sd.tan(sd.tanh(z)),  # |tanh| < 1 < pi/2
    "reciprocal_of_softplus": lambda z: 1 / (sd.softplus(z) + 0.5),
}
ELEMENTWISE_BINARY = {  # any ranks -> the broadcast rank
    "add": lambda p, q: p + q,
    "subtract": lambda p, q: p - q,
    "multiply": lambda p, q: p * q,
    "divide_by_positive": lambda p, q: p / (1 + q * q),
    "power_of_positive": lambda p, q: (1 + sd.sigmoid(p)) ** q,
}
TO_SCALAR = {  # vector or matrix -> scalar
    "sum": sd.sum,
    "mean": sd.mean,
    "prod": sd.prod,
    "logsumexp": sd.logsumexp,
    "first": lambda v: v[(0,) * v.ndim],
}
VECTOR_TO_VECTOR = {
    "softmax": sd.softmax,
    "reverse": lambda v: v[::-1],
    "roll": lambda v: sd.concatenate([v[1:], v[:1]]),
    "cumulative_pairs": lambda v: sd.stack([v[0], v[0] + v[1], v[1] * v[2]]),
    "constant_matvec": lambda v: sd.constant(np.array([[1.0, -0.5, 0.25], [0.0, 2.0, 1.0], [0.5, 0.5, -1.0]])) @ v,
}
MATRIX_TO_VECTOR = {
    "sum_columns": lambda m: sd.sum(m, axis=0),
    "mean_rows": lambda m: sd.mean(m, axis=1),
    "logsumexp_rows": lambda m: sd.logsumexp(m, axis=1),
    "second_row": lambda m: m[1],
    "last_column_reversed": lambda m: m[::-1, -1],
}
MATRIX_TO_MATRIX = {
    "transpose": lambda m: m.T,
    "softmax_rows": lambda m: sd.softmax(m, axis=1),
    "flatten_reverse_unflatten": lambda m: sd.reshape(sd.reshape(m, (N * N,))[::-1], (N, N)),
    "stack_rows": lambda m: sd.concatenate([m[2:], m[:2]], axis=0),
}
MATMUL = {"matmul": sd.matmul}  # ranks r, q >= 1 -> r + q - 2 (vector @ vector is a scalar)
VECTORS_TO_MATRIX = {"outer": lambda p, q: p[:, None] * q[None, :]}
TABLES = {
    "unary": ELEMENTWISE_UNARY, "binary": ELEMENTWISE_BINARY, "to_scalar": TO_SCALAR,
    "vector_to_vector": VECTOR_TO_VECTOR, "matrix_to_vector": MATRIX_TO_VECTOR, "matrix_to_matrix": MATRIX_TO_MATRIX,
    "matmul": MATMUL, "vectors_to_matrix": VECTORS_TO_MATRIX,
}
# The ranks each kind of step accepts per operand (None: any).
OPERAND_RANKS = {
    "unary": [None], "binary": [None, None], "to_scalar": [(1, 2)], "vector_to_vector": [(1,)],
    "matrix_to_vector": [(2,)], "matrix_to_matrix": [(2,)], "matmul": [(1, 2), (1, 2)],
    "vectors_to_matrix": [(1,), (1,)],
}
FUNCTIONS = {name: fn for table in TABLES.values() for name, fn in table.items()}
INPUT_RANKS = [0, 0, 1, 1, 2]  # a, b, x, y, M


def _result_rank(kind, operand_ranks):
    if kind == "unary":
        return operand_ranks[0]
    if kind == "binary":
        return max(operand_ranks)
    if kind == "matmul":
        return sum(operand_ranks) - 2
    return {"to_scalar": 0, "vector_to_vector": 1, "matrix_to_vector": 1, "matrix_to_matrix": 2,
            "vectors_to_matrix": 2}[kind]


@st.composite
def programs(draw):
    """A list of steps (op name, operand indices); operands 0..4 are the inputs a, b, x, y, M."""
    ranks = list(INPUT_RANKS)
    steps = []
    for _ in range(draw(st.integers(1, 7))):
        kind = draw(st.sampled_from(["unary"] * 3 + ["binary"] * 2 + sorted(set(TABLES) - {"unary", "binary"})))
        name = draw(st.sampled_from(sorted(TABLES[kind])))
        operands = tuple(draw(st.sampled_from([i for i, r in enumerate(ranks) if ok is None or r in ok]))
                         for ok in OPERAND_RANKS[kind])
        steps.append((name, operands))
        ranks.append(_result_rank(kind, [ranks[i] for i in operands]))
    return steps


def build(program, inputs):
    nodes = list(inputs)
    for name, operands in program:
        nodes.append(FUNCTIONS[name](*[nodes[i] for i in operands]))
    return nodes


A, B = sd.scalars("a b")
X, Y = sd.vector("x", N), sd.vector("y", N)
M = sd.matrix("M", (N, N))
INPUTS = [A, B, X, Y, M]

# Exact zeros stay (prod has special cases there); magnitudes below 1e-6 become 0,
# since products of such numbers underflow in the derivatives, a limit of the
# float format rather than of the rules.
coordinate = st.floats(-1.5, 1.5).map(lambda v: 0.0 if abs(v) < 1e-6 else v)
input_values = st.tuples(coordinate, coordinate, st.lists(coordinate, min_size=N, max_size=N),
                         st.lists(coordinate, min_size=N, max_size=N),
                         st.lists(coordinate, min_size=N * N, max_size=N * N))

# derandomize: the same examples on every run, so CI is reproducible; no explain
# phase, which on a failure would rerun the slow checks hundreds of times.
EXAMPLES = settings(max_examples=120, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow],
                    phases=[Phase.explicit, Phase.generate, Phase.shrink])


def _graph(program, values):
    nodes = build(program, INPUTS)
    a, b, x, y, m = values
    point = {A: a, B: b, X: np.array(x), Y: np.array(y), M: np.array(m).reshape(N, N)}
    computed = sd.evaluate(nodes, point)
    # Keep to points where every intermediate is moderate (finite, below 1e3, and
    # zero or above 1e-30): finite differences of huge values, and derivatives
    # of products that underflow, test the float format, not the rules.
    magnitudes = [np.abs(np.asarray(v, dtype=np.float64)) for v in computed]
    assume(all(np.all(np.isfinite(size)) and np.max(size) < 1e3 and np.all((size == 0) | (size > 1e-30))
               for size in magnitudes))
    # The output sums every sink (a node no later step uses), so every step counts.
    used = {i for _, operands in program for i in operands}
    sinks = [node for i, node in enumerate(nodes) if i >= len(INPUTS) and i not in used]
    output = functools.reduce(lambda p, q: p + q, sinks)
    wrt = sd.ir.symbols_of(output)
    return output, wrt, {s: point[s] for s in wrt}


# Operand choices (indices into a, b, x, y, M) covering each kind's accepted ranks.
RANK_EXAMPLES = {
    "unary": [(0,), (2,), (4,)], "binary": [(0, 2), (2, 4), (4, 4)], "to_scalar": [(2,), (4,)],
    "vector_to_vector": [(2,)], "matrix_to_vector": [(4,)], "matrix_to_matrix": [(4,)],
    "matmul": [(2, 3), (4, 2), (2, 4), (4, 4)], "vectors_to_matrix": [(2, 3)],
}


# Besides the generated programs, one that applies every step once, to inputs of
# each rank it accepts, so every table entry is differentiated on every run.
EVERY_STEP = [(name, operands) for kind, table in TABLES.items() for name in sorted(table)
              for operands in RANK_EXAMPLES[kind]]
GENERIC_POINT = (0.7, -0.4, [0.3, -1.1, 0.9], [1.2, 0.5, -0.6], [0.2, -0.7, 1.3, 0.4, -1.2, 0.8, -0.3, 1.1, 0.6])


def with_every_step(test):
    return example(program=EVERY_STEP, values=GENERIC_POINT)(test)


@EXAMPLES
@with_every_step
@given(program=programs(), values=input_values)
def test_gradient_to_second_order(program, values):
    output, wrt, point = _graph(program, values)
    check_grads(output, wrt, point, order=2, label=f"random graph {program}")


@EXAMPLES
@with_every_step
@given(program=programs(), values=input_values)
def test_jvp_to_second_order(program, values):
    output, wrt, point = _graph(program, values)
    check_jvp(output, wrt, point, order=2, label=f"random graph {program}")


@EXAMPLES
@with_every_step
@given(program=programs(), values=input_values)
def test_hvp_both_modes(program, values):
    output, wrt, point = _graph(program, values)
    check_hvp(output, wrt, point, modes=("rev-rev", "fwd-rev"), label=f"random graph {program}")


def test_every_step_builds_and_evaluates():
    """Each step, on inputs of each rank it accepts, builds, has the rank the
    generator assumes, and is finite (a guard against typos in the tables)."""
    values = {A: 0.5, B: -0.3, X: [0.1, 0.2, 0.3], Y: [1.0, -1.0, 0.5], M: np.arange(9.0).reshape(3, 3) / 9}
    assert set(RANK_EXAMPLES) == set(TABLES) == set(OPERAND_RANKS)
    for kind, table in TABLES.items():
        for name in table:
            for operands in RANK_EXAMPLES[kind]:
                node = build([(name, operands)], INPUTS)[-1]
                want = _result_rank(kind, [INPUT_RANKS[i] for i in operands])
                assert node.ndim == want, f"{name} on inputs {operands}: rank {node.ndim}, generator assumes {want}"
                assert np.all(np.isfinite(sd.evaluate(node, {s: values[s] for s in sd.ir.symbols_of(node)})))


# ------------------------------------------------------- the whole op set, fuzzed
#
# Random graphs over every op the registry holds (new ops join by having samples):
# each graph applies one op to inputs drawn from one of its samples, under a random
# smooth post-op, and several graphs share one compiled kernel.  Elementwise ops get
# random broadcastable shapes with size-0 and size-1 axes (their values taken from the
# sample, pairs kept together, so the op stays in its domain and away from its kinks);
# every op gets dimensions declared None (known only at run time) at random.  Checked:
# compiled values and gradients against the reference evaluator, and the reference
# gradient to second order against finite differences.  Budget: FUZZ_EXAMPLES kernels.

from symdiff.ir import builtin_ops  # noqa: E402

FUZZ_EXAMPLES = 4
GRAPHS_PER_KERNEL = 6
POST_OPS = {"identity": lambda z: z, "sin": sd.sin, "tanh": sd.tanh, "square": sd.square}


def _fuzzable_ops() -> list:
    names = []
    for name, op in sorted(builtin_ops().items()):
        if op.kind == "leaf" or op.samples is None:
            continue
        try:
            samples = op.samples(np.random.default_rng(0))
        except Exception:  # noqa: BLE001  (broken samples are test_ops' to report)
            continue
        if any(any(np.asarray(a).dtype.kind == "f" for a in arrays) for arrays, _ in samples):
            names.append(name)
    return names


FUZZABLE = _fuzzable_ops()


@st.composite
def op_graphs(draw, number: int, name=None):
    """(symbols, cost or None, values, label) for one random application of one op (``name``,
    or one drawn from the registry)."""
    name = draw(st.sampled_from(FUZZABLE)) if name is None else name
    op = sd.ir.OPS[name]
    samples = [(tuple(np.asarray(a) for a in arrays), attrs)
               for arrays, attrs in op.samples(np.random.default_rng(draw(st.integers(0, 2 ** 16))))]
    arrays, attrs = samples[draw(st.integers(0, len(samples) - 1))]
    if op.kind == "elementwise" and arrays:
        rank = draw(st.integers(0, 3))
        full = tuple(draw(st.sampled_from([0, 1, 2, 3])) for _ in range(rank))
        shapes = [tuple(d if draw(st.booleans()) else 1 for d in full)[draw(st.integers(0, rank)):] for _ in arrays]
        flat = [np.ravel(c) for c in np.broadcast_arrays(*arrays)]
        base = tuple(max(d, 1) for d in full)
        picks = np.random.default_rng(number).integers(0, flat[0].size, size=int(np.prod(base, dtype=int)))
        pool = [f[picks].reshape(base) for f in flat]  # the same positions for every input: pairs stay pairs
        arrays = tuple(np.array(p[tuple(slice(0, s) for s in (1,) * (rank - len(shape)) + shape)]).reshape(shape)
                       for p, shape in zip(pool, shapes))
    declared = []
    for j, array in enumerate(arrays):
        shape = tuple(None if d != 1 and draw(st.booleans()) else d for d in np.shape(array))
        declared.append(sd.tensor(f"g{number}_{j}", shape, _dtype_name(array)))
    try:
        out = sd.ir.make_node(op, declared, dict(attrs))
    except (sd.ShapeError, sd.DTypeError):  # an op that needs these sizes static: declare them so
        declared = [sd.tensor(f"g{number}_{j}s", np.shape(a), _dtype_name(a)) for j, a in enumerate(arrays)]
        out = sd.ir.make_node(op, declared, dict(attrs))
    values = {s: a for s, a in zip(declared, arrays)}
    label = f"{name}{list(attrs.items()) or ''} on {[tuple(np.shape(a)) for a in arrays]} " \
            f"declared {[s.type for s in declared]}"
    if not out.type.is_float:
        return declared, None, values, label, out
    post = draw(st.sampled_from(sorted(POST_OPS)))
    weights = sd.constant(np.random.default_rng(number).normal(size=np.shape(sd.evaluate(out, values))))
    cost = sd.sum(POST_OPS[post](out) * weights)
    return declared, cost, values, f"{post}({label})", out


def _dtype_name(array) -> str:
    return {"f": "float64", "b": "bool"}.get(np.asarray(array).dtype.kind, "int64") \
        if np.asarray(array).dtype != np.float32 else "float32"


@settings(max_examples=FUZZ_EXAMPLES, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck),
          phases=[Phase.explicit, Phase.generate])
@given(data=st.data())
def test_random_graphs_over_every_op_compiled_and_differentiated(data):
    _check_graphs([data.draw(op_graphs(k)) for k in range(GRAPHS_PER_KERNEL)])


# Every op once per run, whatever the draws above pick: the registry in kernels of
# GRAPHS_PER_KERNEL graphs, each op's graph drawn (derandomised) as above.
CHUNKS = [FUZZABLE[i:i + GRAPHS_PER_KERNEL] for i in range(0, len(FUZZABLE), GRAPHS_PER_KERNEL)]


@pytest.mark.parametrize("chunk", range(len(CHUNKS)))
@settings(max_examples=1, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck),
          phases=[Phase.generate])
@given(data=st.data())
def test_every_fuzzable_op_in_a_random_graph(chunk, data):
    _check_graphs([data.draw(op_graphs(k, name)) for k, name in enumerate(CHUNKS[chunk])])


def _check_graphs(graphs):
    """Compile the graphs into one kernel: values and gradients against the reference, and
    the reference gradients to order 2 against finite differences."""
    inputs, outputs, values, labels, tolerances = [], [], {}, [], []
    for symbols, cost, point, label, out in graphs:
        inputs += symbols
        values.update(point)
        wrt = [s for j, s in enumerate(symbols) if s.type.is_float and out.op.vjp_rule(j) is not None]
        targets = [out] if cost is None else [out, cost] + (sd.grad(cost, wrt) if wrt and out.op.differentiable
                                                            else [])
        outputs += targets
        labels += [label] * len(targets)
        # float32 anywhere in the graph: the backends' float32 math differs in the last bits,
        # and a float64 result computed from it (a post-op times float64 weights) carries that
        single = any(s.dtype == "float32" for s in symbols) or out.dtype == "float32"
        tolerances += [1e-5 if single else 1e-10] * len(targets)
        if cost is not None and wrt and out.op.differentiable and out.dtype == "float64":
            check_grads(cost, wrt, {s: point[s] for s in symbols}, order=2, label=label)
    compiled = sd.function(inputs, outputs)(*[values[s] for s in inputs])
    reference = sd.evaluate(outputs, values)
    for got, want, label, tolerance in zip(compiled, reference, labels, tolerances):
        got, want = np.asarray(got), np.asarray(want)
        assert got.shape == want.shape, label
        np.testing.assert_allclose(got.astype(np.float64), want.astype(np.float64), rtol=tolerance,
                                   atol=tolerance * max(1.0, float(np.max(np.abs(want), initial=0.0))), err_msg=label)


def test_every_op_with_float_samples_is_fuzzed():
    """Guard: the fuzzer draws from the whole registry, including ops added later."""
    computing = {name for name, op in builtin_ops().items() if op.kind != "leaf" and op.samples is not None}
    assert {"exp", "sum", "matmul", "slice", "concatenate", "where"} <= set(FUZZABLE) <= computing
