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


# ------------------------------------------------------- the whole op set, composed
#
# Random graphs over every op the registry holds (an op joins by having samples): each
# graph is a chain of 2-4 registry ops, the output of one feeding an input of the next.
# The fed input stays in the next op's domain: an elementwise op of one or two inputs
# takes lo + (hi - lo) * sigmoid(prev), [lo, hi] spanning one sign of its samples' values;
# any other input takes its sample times (1 + tanh(prev) / 100) (a bool input takes prev,
# or prev > its median; an int input is never fed).  The other inputs are fresh symbols
# with values from the op's samples.  Shapes: elementwise ops, reductions, matmul,
# concatenate, slicing, gather, transpose, reshape, expand_dims, squeeze, broadcast_to,
# argmax, argsort, iota, dim and cast take the previous output's shape, or a random one
# with size-0 and size-1 axes; the rest keep their samples' shapes, fed through
# sum(prev) where the shapes differ.  Dimensions (other than 1) are declared None at
# random, sizes given at call time.  Checked, several graphs per compiled kernel: values
# and gradients compiled (sd.function) against the reference (sd.evaluate), and the
# reference gradient to second order against finite differences where the graph is
# smooth and moderate at the point.
#
# CI runs the derandomised examples below; SYMDIFF_FUZZ_EXAMPLES=N runs N random kernels
# (not derandomised) for a local campaign.

import os  # noqa: E402

from symdiff.ir import builtin_ops, make_node  # noqa: E402
from symdiff.testing import GradCheckError  # noqa: E402

FUZZ_EXAMPLES = int(os.environ.get("SYMDIFF_FUZZ_EXAMPLES", "0")) or 1
FUZZ_RANDOM = bool(os.environ.get("SYMDIFF_FUZZ_EXAMPLES"))
GRAPHS_PER_KERNEL = 8
SIZES = (0, 1, 2, 3, 3, 4)  # axis sizes drawn for new shapes
POST_OPS = {"identity": lambda z: z, "sin": sd.sin, "tanh": sd.tanh, "square": sd.square}
STATIC_ONLY = {"qr"}  # complete QR's derivative needs static sizes (a GradientError otherwise, by design)
MODERATE = 1e4  # finite differences only where every value of the graph is below this


class Source:
    """The draws graphs are made of, from one seed (Hypothesis draws the seed: a failure
    names it, and ``draw_chains(Source(seed), ...)`` rebuilds the same graphs)."""

    def __init__(self, seed: int):
        self.seed, self.rng = seed, np.random.default_rng(seed)

    def int(self, lo: int, hi: int) -> int:
        return int(self.rng.integers(lo, hi + 1))

    def pick(self, seq):
        return seq[self.int(0, len(seq) - 1)]

    def coin(self) -> bool:
        return self.int(0, 1) == 1


@functools.lru_cache(maxsize=None)
def _samples(name: str, seed: int) -> tuple:
    return tuple((tuple(np.asarray(a) for a in arrays), dict(attrs))
                 for arrays, attrs in sd.ir.OPS[name].samples(np.random.default_rng(seed)))


@functools.lru_cache(maxsize=None)
def _halves(name: str, index: int) -> tuple:
    """The values input ``index`` takes in the op's samples, split by sign (for the
    range an elementwise op's fed input is mapped into)."""
    values = np.concatenate([np.ravel(arrays[index]) for arrays, _ in _samples(name, 0)
                             if index < len(arrays)]).astype(np.float64)
    halves = tuple(h for h in (values[values > 0], values[values < 0]) if h.size)
    return tuple((float(h.min()), float(h.max())) for h in halves if h.min() < h.max())


def _fuzzed_ops() -> list:
    names = []
    for name, op in sorted(builtin_ops().items()):
        if op.kind == "leaf" or op.samples is None:
            continue
        try:
            _samples(name, 0)
        except Exception:  # noqa: BLE001  (broken samples are test_ops' to report)
            continue
        names.append(name)
    return names


FUZZED = _fuzzed_ops()


def _dtype_name(array) -> str:
    array = np.asarray(array)
    if array.dtype == np.float32:
        return "float32"
    return {"f": "float64", "b": "bool"}.get(array.dtype.kind, "int64")


def _new_shape(src: Source, low: int = 0, high: int = 3) -> tuple:
    return tuple(src.pick(SIZES) for _ in range(src.int(low, high)))


def _values(pool, shape, rng, distinct=False):
    values = rng.choice(np.ravel(pool), size=shape) if np.size(pool) else np.zeros(shape)
    if distinct:  # no ties (max, argmax...): a kink, or a choice the backends may make apart
        values = values + 0.05 * rng.permutation(int(np.prod(shape, dtype=int))).reshape(shape)
    return values.astype(np.asarray(pool).dtype)


# Layouts: new shapes for an op's inputs, the input fed with the previous output given
# its shape ``P`` (None: any shape).  Each returns (arrays, attrs, fed index) or None.

def _layout_elementwise(src, name, arrays, attrs, P, rng):
    full = _new_shape(src) if P is None else P
    rank, n = len(full), len(arrays)
    fed = src.int(0, n - 1)
    if P is not None and np.asarray(arrays[fed]).dtype.kind not in "fb":
        return None
    shapes = []
    for j in range(n):
        shape = full if j == fed else tuple(d if src.coin() else 1 for d in full)[src.int(0, rank):]
        shapes.append(shape)
    flat = [np.ravel(c) for c in np.broadcast_arrays(*arrays)]
    base = tuple(max(d, 1) for d in full)
    picks = rng.integers(0, flat[0].size, size=int(np.prod(base, dtype=int)))
    pool = [f[picks].reshape(base) for f in flat]  # the same positions for every input: pairs stay pairs
    out = tuple(np.array(p[tuple(slice(0, s) for s in (1,) * (rank - len(shape)) + shape)]).reshape(shape)
                for p, shape in zip(pool, shapes))
    return out, attrs, fed


def _layout_reduction(src, name, arrays, attrs, P, rng):
    if len(arrays) != 1 or "axes" not in attrs:
        return None
    shape = _new_shape(src, 1) if P is None else P
    if not shape:
        return None
    axes = tuple(a for a in range(len(shape)) if src.coin()) or (src.int(0, len(shape) - 1),)
    if name in ("max", "min") and any(shape[a] == 0 for a in axes):
        return None  # no value (a ShapeError, tested in test_edge_cases)
    attrs = dict(attrs, axes=axes)
    if "keepdims" in attrs:
        attrs["keepdims"] = src.coin()
    return (_values(arrays[0], shape, rng, distinct=name in ("max", "min")),), attrs, 0


def _layout_matmul(src, name, arrays, attrs, P, rng):
    n, k, m = (src.pick(SIZES) for _ in range(3))
    if P is None:
        left = (k,) if src.coin() else (n, k)
        right = (k,) if src.coin() else (k, m)
        if src.int(0, 3) == 0:
            left = (src.pick((1, 2)),) + (n, k)
        return (_values(arrays[0], left, rng), _values(arrays[1], right, rng)), attrs, src.int(0, 1)
    if not P:
        return None
    if src.coin():  # P on the left
        k = P[-1]
        return (_values(arrays[0], P, rng), _values(arrays[1], (k,) if src.coin() else (k, m), rng)), attrs, 0
    k = P[0] if len(P) == 1 else P[-2]
    return (_values(arrays[0], (k,) if src.coin() else (n, k), rng), _values(arrays[1], P, rng)), attrs, 1


def _layout_concatenate(src, name, arrays, attrs, P, rng):
    shape = _new_shape(src, 1) if P is None else P
    if not shape:
        return None
    axis, parts = src.int(0, len(shape) - 1), src.int(1, 3)
    fed = src.int(0, parts - 1)
    shapes = [shape if j == fed else shape[:axis] + (src.pick((0, 1, 2)),) + shape[axis + 1:] for j in range(parts)]
    return tuple(_values(arrays[0], s, rng) for s in shapes), dict(attrs, axis=axis), fed


def _slice_index(src, shape):
    index = []
    for d in shape:
        if d > 0 and src.int(0, 2) == 0:
            index.append(src.int(-d, d - 1))
        else:
            bounds = [None] + list(range(-d - 1, d + 2))
            index.append((src.pick(bounds), src.pick(bounds), src.pick((1, 2, -1, -2, 3))))
    return tuple(index)


def _reshaped(src, shape):
    size = int(np.prod(shape, dtype=int))
    options = [(size,), tuple(reversed(shape)), (1,) + tuple(shape)]
    if size > 0:
        options.append((-1,) + ((shape[0],) if shape else ()))
        options.append(tuple(shape[:-1]) + (1, -1) if shape else (1,))
    return src.pick(options)


def _layout_structure(src, name, arrays, attrs, P, rng):
    shape = _new_shape(src, 1) if P is None else P
    if name == "squeeze" and P is None:
        shape = tuple(d if src.coin() else 1 for d in shape) + (1,)
    if not shape:
        return None
    rank = len(shape)
    if name == "transpose":
        attrs = dict(attrs, axes=tuple(int(a) for a in np.random.default_rng(src.int(0, 99)).permutation(rank)))
    elif name == "reshape":
        attrs = dict(attrs, shape=_reshaped(src, shape))
    elif name == "slice":
        attrs = dict(attrs, index=_slice_index(src, shape))
    elif name == "expand_dims":
        count = src.int(1, 2)
        attrs = dict(attrs, axes=tuple(sorted(int(a) for a in rng.choice(rank + count, count, replace=False))))
    elif name == "squeeze":
        ones = tuple(a for a, d in enumerate(shape) if d == 1 and src.coin())
        if not ones:
            return None
        attrs = dict(attrs, axes=ones)
    elif name == "broadcast_to":
        attrs = dict(attrs, shape=tuple(src.pick(SIZES) for _ in range(src.int(0, 1)))
                     + tuple(src.pick(SIZES) if d == 1 else d for d in shape))
    elif name in ("iota", "dim"):
        attrs = dict(attrs, axis=src.int(0, rank - 1))
    elif name in ("argmax", "argsort"):
        attrs = dict(attrs, axis=src.int(0, rank - 1))
        if name == "argmax":
            if shape[attrs["axis"]] == 0:
                return None
            attrs["keepdims"] = src.coin()
    elif name == "cast":
        attrs = dict(attrs, dtype=src.pick(("float64", "float32")))
    if len(arrays) != 1:
        return None
    pool = np.concatenate([np.ravel(a[0]) for a, _ in _samples(name, 0)])
    return (_values(pool, shape, rng, distinct=name in ("argmax", "argsort")),), attrs, 0


def _layout_gather(src, name, arrays, attrs, P, rng):
    shape = _new_shape(src, 1) if P is None else P
    if not shape:
        return None
    axes = tuple(sorted(set(src.int(0, len(shape) - 1) for _ in range(src.int(1, 2)))))
    index_shape = _new_shape(src, 0, 2)
    if any(shape[a] == 0 for a in axes) and int(np.prod(index_shape, dtype=int)):
        return None
    indices = tuple(rng.integers(-shape[a], max(shape[a], 1), size=index_shape) for a in axes)
    return (_values(arrays[0], shape, rng),) + indices, dict(attrs, axes=axes), 0


LAYOUTS = {"elementwise": _layout_elementwise, "reduction": _layout_reduction, "matmul": _layout_matmul,
           "concatenate": _layout_concatenate, "gather": _layout_gather}
for _name in ("transpose", "reshape", "slice", "expand_dims", "squeeze", "broadcast_to", "iota", "dim", "argmax",
              "argsort", "cast"):
    LAYOUTS[_name] = _layout_structure


def _threshold(values) -> float:
    """A cut near the median, in the widest gap between the middle values (never at one: the
    backends' last bits may differ there)."""
    v = np.unique(np.asarray(values, dtype=np.float64)[np.isfinite(values)])
    if v.size < 2:
        return float(v[0]) - 1.0 if v.size else 0.0
    lo, hi = v.size // 4, max(v.size // 4 + 1, (3 * v.size) // 4)
    i = lo + int(np.argmax(np.diff(v)[lo:hi]))
    return float((v[i] + v[i + 1]) / 2)


class Invalid(Exception):
    """The drawn graph is outside an op's domain (its reference evaluation raised)."""


class Chain:
    """One random graph: a chain of registry ops over fresh inputs (see above)."""

    def __init__(self, src: Source, number: int, names=None):
        self.src, self.number = src, number
        self.symbols, self.values, self.steps, self.nodes = [], {}, [], []
        prev, prev_value = None, None
        names = names or [src.pick(FUZZED) for _ in range(src.int(2, 4))]
        for name in names:
            prev = self._step(name, prev, prev_value)
            try:
                prev_value = np.asarray(sd.evaluate(prev, self.values))
            except Exception as exc:  # noqa: BLE001
                raise Invalid(f"{self.label()}: {type(exc).__name__}: {exc}") from None
            self.nodes.append(prev)
        self.output = prev
        floats = [n for n in self.nodes if n.type.is_float]
        self.cost = None
        if floats:
            node = floats[-1]
            post = src.pick(sorted(POST_OPS))
            value = np.asarray(sd.evaluate(node, self.values))
            weights = np.random.default_rng(number).normal(size=value.shape).astype(value.dtype)
            self.cost = sd.sum(POST_OPS[post](node) * sd.constant(weights))
            self.steps.append(f"cost sum({post}(.) * W)")

    def label(self) -> str:
        return f"seed {self.src.seed} chain {self.number}: " + " -> ".join(self.steps)

    def _fresh(self, array, loose: bool):
        array = np.asarray(array)
        shape = tuple(None if loose and d != 1 and self.src.coin() else d for d in array.shape)
        symbol = sd.tensor(f"g{self.number}_{len(self.symbols)}", shape, _dtype_name(array))
        self.symbols.append(symbol)
        self.values[symbol] = array
        return symbol

    def _step(self, name, prev, prev_value):
        op, src = sd.ir.OPS[name], self.src
        seed = src.int(0, 3)
        rng = np.random.default_rng(src.int(0, 2 ** 16))
        samples = _samples(name, seed)
        arrays, attrs = samples[src.int(0, len(samples) - 1)]
        layout = LAYOUTS.get(name, LAYOUTS.get(op.kind))
        fed = None
        if layout is not None:
            drawn = layout(src, name, arrays, attrs, None if prev is None else prev_value.shape, rng) \
                if prev is not None else None
            if drawn is None:
                drawn = layout(src, name, arrays, attrs, None, rng)
                drawn = drawn and (drawn[0], drawn[1], None)
            if drawn is not None:
                arrays, attrs, fed = drawn
        direct = fed is not None
        if prev is not None and fed is None:
            feedable = [j for j, a in enumerate(arrays) if np.asarray(a).dtype.kind == "f"]
            if feedable:
                fed = src.pick(feedable)
                direct = np.shape(arrays[fed]) == prev_value.shape
        errors = []
        tries = ((True, not direct), (False, not direct), (False, True))
        for loose, coupled in tries[name in STATIC_ONLY:]:
            if fed is not None and np.asarray(arrays[fed]).dtype.kind == "b" and coupled:
                fed = None  # a bool input is fed directly or not at all
            symbols_before = len(self.symbols)
            inputs = [self._feed(name, j, prev, prev_value, arrays[j], coupled) if j == fed and prev is not None
                      else self._fresh(arrays[j], loose) for j in range(len(arrays))]
            try:
                out = make_node(op, inputs, dict(attrs))
                break
            except (sd.ShapeError, sd.DTypeError) as exc:
                errors.append(exc)
                for s in self.symbols[symbols_before:]:
                    del self.values[s]
                del self.symbols[symbols_before:]
        else:
            raise AssertionError(f"{name}{attrs} refuses its inputs {[np.shape(a) for a in arrays]}: {errors}")
        shown = {k: v for k, v in attrs.items() if k != "body"}
        self.steps.append(f"{name}{shown or ''}({', '.join(f'{x.type!r}' for x in inputs)})"
                          + ("" if fed is None or prev is None else f" fed at {fed}" + (" by sum" if coupled else "")))
        return out

    def _feed(self, name, index, prev, prev_value, anchor, coupled):
        """prev, mapped into the domain of input ``index`` (of ``anchor``'s dtype and, coupled,
        through sum(prev) to anchor's shape)."""
        anchor = np.asarray(anchor)
        if anchor.dtype.kind == "b":
            if prev.dtype == "bool":
                return prev
            z = prev if prev.type.is_float else sd.astype(prev, "float64")
            return sd.greater(z, _threshold(prev_value))
        if name == "cast" and not coupled:
            return prev
        z = prev if prev.type.is_float else sd.astype(prev, "float64")
        if coupled:
            z = sd.sum(z)
        if z.dtype != _dtype_name(anchor):
            z = sd.astype(z, _dtype_name(anchor))
        arity = len(_samples(name, 0)[0][0])
        halves = _halves(name, index) if sd.ir.OPS[name].kind == "elementwise" and arity <= 2 else ()
        if halves:
            lo, hi = self.src.pick(halves)
            return lo + (hi - lo) * sd.sigmoid(z)
        return sd.constant(anchor) * (1 + 0.01 * sd.tanh(z))

    def checked_outputs(self):
        """(outputs, labels, wrt) compiled against the reference: the output, and the cost
        with its gradient."""
        outputs = [self.output]
        wrt = []
        if self.cost is not None:
            outputs.append(self.cost)
            wrt = [s for s in sd.ir.symbols_of(self.cost) if s.type.is_float]
            if wrt:
                outputs += sd.grad(self.cost, wrt)
        return outputs, wrt

    def check_finite_differences(self) -> str:
        """The reference gradient against finite differences to order 2; what was done."""
        if self.cost is None:
            return "no float output"
        wrt = [s for s in sd.ir.symbols_of(self.cost) if s.type.is_float]
        nodes = sd.ir.toposort(self.cost)
        if any(n.op.name == "stop_gradient" for n in nodes):
            return "stop_gradient"  # its derivative is 0 by design
        if not wrt or any(n.dtype == "float32" for n in nodes):
            return "no float64 input" if not wrt else "float32"
        values = sd.evaluate([n for n in nodes if n.type.is_float], self.values)
        if not all(np.all(np.abs(np.asarray(v, dtype=np.float64)) < MODERATE) for v in values):
            return "not moderate"
        try:
            check_grads(self.cost, wrt, {s: self.values[s] for s in sd.ir.symbols_of(self.cost)}, order=2,
                        label=self.label())
        except GradCheckError as exc:
            if "not smooth" in str(exc).split("\n")[0] or "not finite" in str(exc).split("\n")[0]:
                return "not smooth"
            raise
        return "checked"


def draw_chains(src: Source, count: int, names=(), retries: int = 20) -> list:
    """``count`` chains (the k-th of the ops ``names[k]`` if given, else random ones); a chain
    whose reference evaluation raised is drawn again."""
    chains = []
    for k in range(count):
        for _ in range(retries):
            try:
                chains.append(Chain(src, k, names[k] if k < len(names) else None))
                break
            except Invalid:
                continue
        else:
            raise AssertionError(f"no valid chain in {retries} draws of {names[k:k + 1]}")
    return chains


def compare_compiled(chains: list):
    """One kernel for all the chains: values and gradients against the reference."""
    inputs, outputs, labels, values = [], [], [], {}
    for chain in chains:
        inputs += chain.symbols
        values.update(chain.values)
        outs, _ = chain.checked_outputs()
        outputs += outs
        labels += [chain.label()] * len(outs)
    compiled = sd.function(inputs, outputs)(*[values[s] for s in inputs])
    reference = sd.evaluate(outputs, values)
    for got, want, output, label in zip(compiled, reference, outputs, labels):
        got, want = np.asarray(got), np.asarray(want)
        assert got.shape == want.shape and got.dtype == want.dtype, \
            f"{label}: compiled {got.dtype}{got.shape}, reference {want.dtype}{want.shape}"
        single = any(n.dtype == "float32" for n in sd.ir.toposort(output))
        tolerance = 1e-5 if single else 1e-9
        scale = float(np.max(np.abs(want[np.isfinite(want)]), initial=1.0)) if want.dtype.kind == "f" else 1.0
        np.testing.assert_allclose(got.astype(np.float64), want.astype(np.float64), rtol=tolerance,
                                   atol=tolerance * scale, err_msg=label)


def _fuzz(chains):
    compare_compiled(chains)
    for chain in chains:
        chain.check_finite_differences()


FUZZ = settings(max_examples=FUZZ_EXAMPLES, deadline=None, derandomize=not FUZZ_RANDOM, database=None,
                suppress_health_check=list(HealthCheck), phases=[Phase.explicit, Phase.generate])


@FUZZ
@given(seed=st.integers(0, 2 ** 32 - 1))
def test_random_op_chains_compiled_and_differentiated(seed):
    _fuzz(draw_chains(Source(seed), GRAPHS_PER_KERNEL))


# Every op once per run, whatever the draws above pick: the registry in a fixed random
# order, cut into chains of 4 ops, SWEEP_CHAINS chains per kernel (each op is compiled
# once, as in a one-op-per-graph sweep, but composed with three others).
_ORDER = [FUZZED[i] for i in np.random.default_rng(15).permutation(len(FUZZED))]
SWEEP = [_ORDER[i:i + 4] for i in range(0, len(_ORDER), 4)]
SWEEP_CHAINS = 10
CHUNKS = [SWEEP[i:i + SWEEP_CHAINS] for i in range(0, len(SWEEP), SWEEP_CHAINS)]


@pytest.mark.parametrize("chunk", range(len(CHUNKS)))
@settings(max_examples=1, deadline=None, derandomize=True, database=None, suppress_health_check=list(HealthCheck),
          phases=[Phase.generate])
@given(seed=st.integers(0, 2 ** 32 - 1))
def test_every_op_in_a_random_chain(chunk, seed):
    _fuzz(draw_chains(Source(seed), len(CHUNKS[chunk]), CHUNKS[chunk]))


def test_every_op_with_samples_is_fuzzed():
    """Guard: the fuzzer draws from the whole registry, including ops added later."""
    computing = {name for name, op in builtin_ops().items() if op.kind != "leaf" and op.samples is not None}
    assert {"exp", "sum", "matmul", "slice", "concatenate", "where", "logical_and", "logical_not",
            "logical_or"} <= set(FUZZED) == computing
