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
