"""Registry-generated tests: every op in ``symdiff.ir.OPS``, on every sample its record gives.

For each op and sample (scalars, vectors, matrices, broadcasting, as the op's
``samples`` supply them):

* the static type from ``infer`` is the dtype and shape ``impl`` returns (also for
  float32 and int64 versions of the sample, and with sizes unknown until run time);
* reverse mode: ``sd.grad`` of sum(out * W) with respect to every float input
  that has a rule, at first and second order, against finite differences;
* Hessian-vector products of sum(out * W), rev-rev and fwd-rev, against finite
  differences of the gradient and each other;
* forward mode: ``sd.jvp`` at first and second order (jvp of jvp), against
  finite differences;
* inputs without a rule, and ops without a derivative, get exactly zero
  derivatives in both modes;
* with sizes unknown until run time, derivatives equal those with static sizes;
* float32: derivatives keep float32 and agree with the float64 derivatives, and
  pass ``check_grads`` at float32 tolerances.

The last section checks the checker: rules off by 0.1%, or wrong only at second
order, must be caught, and failures must say what, where and by how much.

``OP_TABLE`` lists every op; the guard tests fail when the registry and the
table disagree, when an op has no samples, or a differentiable op no jvp rule.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

import numpy as np
import pytest

import symdiff as sd
from symdiff.errors import DTypeError
from symdiff.ir import OPS, builtin_ops
from symdiff.ops.leaves import numpy_dtype
from symdiff.testing import GradCheckError, check_grads, check_hvp, check_jvp
from symdiff.types import dtype_of_array


@dataclass(frozen=True)
class Settings:
    """How an op is tested.

    derivative: "rules" (at least one input has a vjp rule), "zero" (an op
    with rules that are all None: the output is a value without derivative,
    e.g. stop_gradient) or "none" (``vjp=None``: comparisons, sign, dim...).
    leaf: symbols and constants, which have no samples.
    order: the highest derivative order checked against finite differences.
    """

    derivative: str = "rules"
    leaf: bool = False
    order: int = 2


RULES = Settings()
NONE = Settings(derivative="none")

OP_TABLE = {
    "symbol": Settings(derivative="none", leaf=True),
    "constant": Settings(derivative="none", leaf=True),
    # elementwise, unary
    "neg": RULES, "exp": RULES, "expm1": RULES, "log": RULES, "log1p": RULES, "sqrt": RULES,
    "sin": RULES, "cos": RULES, "tan": RULES, "tanh": RULES, "abs": RULES, "sign": NONE,
    "sigmoid": RULES, "softplus": RULES, "sech2": RULES,
    # elementwise, binary
    "add": RULES, "sub": RULES, "mul": RULES, "div": RULES, "pow": RULES, "maximum": RULES, "minimum": RULES,
    # comparisons and logic
    "less": NONE, "less_equal": NONE, "greater": NONE, "greater_equal": NONE, "equal": NONE, "not_equal": NONE,
    "logical_not": NONE, "logical_and": NONE, "logical_or": NONE,
    # select, cast
    "where": RULES, "cast": RULES, "stop_gradient": Settings(derivative="zero"),
    # reductions
    "sum": RULES, "max": RULES, "min": RULES, "prod": RULES,
    # structure
    "reshape": RULES, "transpose": RULES, "expand_dims": RULES, "squeeze": RULES, "slice": RULES,
    "scatter_slice": RULES, "reshape_like": RULES, "broadcast_to": RULES, "broadcast_like": RULES, "concatenate": RULES, "dim": NONE,
    "check_sizes": RULES,
    # linear algebra
    "matmul": RULES,
    # issue 10: elementwise math and special functions
    "arcsin": RULES, "arccos": RULES, "arctan": RULES, "arctan2": RULES, "sinh": RULES, "cosh": RULES,
    "arcsinh": RULES, "arccosh": RULES, "arctanh": RULES, "hypot": RULES, "log2": RULES, "log10": RULES,
    "cbrt": RULES, "logaddexp": RULES, "logaddexp2": RULES, "floor": NONE, "ceil": NONE, "trunc": NONE,
    "rint": NONE, "floor_divide": NONE, "mod": RULES, "fmod": RULES, "copysign": RULES,
    "erf": RULES, "erfc": RULES, "erfinv": RULES, "gammaln": RULES, "polygamma": RULES, "ndtr": RULES,
    "log_ndtr": RULES, "log_ndtr_prime": RULES, "log_ndtr_derivative": RULES, "ndtr_derivative": RULES,
    "erf_derivative": RULES,
    "over_squared_norm": RULES, "erfinv_slope": RULES, "over_hypot": RULES, "mul_log": RULES, "mul_log_slope": RULES, "one_plus_mul_log": RULES,
    "two_norm": RULES, "two_norm_slope": RULES, "scaled_prod": RULES, "others_sum": RULES, "pow_slope": RULES,
    "pow_curvature": RULES,
    # issue 10: indexing, gathers and scatters
    "gather": RULES, "scatter_add": RULES, "scatter_set": RULES, "scatter_mul": RULES, "scatter_max": RULES,
    "scatter_min": RULES,
    # issue 10: cumulative and ordering
    "linear_recurrence": RULES, "argmax": NONE, "argsort": NONE,
    # issue 10: structure, constructors, statistics
    "iota": NONE,
    # issue 10: convolution
    "conv": RULES,
    # issue 11: linear algebra
    "diag_part": RULES, "cholesky": RULES, "solve_triangular": RULES, "cho_solve": RULES, "cho_inverse": RULES,
    "solve": RULES,
    "slogdet": RULES, "singular_cofactors": RULES, "eigh": RULES, "svd": RULES, "qr": RULES, "pinv": RULES, "expm": RULES,
    # issue 12: loops
    "loop": RULES,
}


def _seed(name: str) -> int:
    return zlib.crc32(name.encode())  # stable across runs, unlike hash()


@dataclass
class Case:
    op_name: str
    index: int
    inputs: tuple  # arrays
    attrs: dict

    @property
    def op(self):
        return OPS[self.op_name]

    @property
    def id(self):
        return f"{self.op_name}-sample{self.index}"

    def symbols(self, dtypes=None, shapes=None):
        """One symbol per input (named x0, x1...), shaped and typed like the sample."""
        dtypes = dtypes or [_dtype(a) for a in self.inputs]
        shapes = shapes or [np.shape(a) for a in self.inputs]
        return [sd.tensor(f"x{i}", s, d) for i, (d, s) in enumerate(zip(dtypes, shapes))]

    def build(self, symbols):
        return self.op(*symbols, **self.attrs)

    def values(self, symbols, inputs=None):
        return {s: v for s, v in zip(symbols, self.inputs if inputs is None else inputs)}

    def has_rule(self, i: int) -> bool:
        return self.op.vjp_rule(i) is not None

    def float_inputs(self):
        return [i for i, a in enumerate(self.inputs) if _dtype(a) in ("float32", "float64")]


def _dtype(array) -> str:
    return dtype_of_array(np.asarray(array))


def _cases() -> list:
    cases = []
    for name, op in builtin_ops().items():
        if op.samples is None:
            continue
        for k, (inputs, attrs) in enumerate(op.samples(np.random.default_rng(_seed(name)))):
            cases.append(Case(name, k, tuple(np.asarray(a) for a in inputs), dict(attrs)))
    return cases


CASES = _cases()


def _params(cases):
    return [pytest.param(c, id=c.id) for c in cases]


DIFFERENTIABLE = [c for c in CASES if c.op.vjp is not None and any(c.has_rule(i) for i in c.float_inputs())]
WITHOUT_DERIVATIVE = [c for c in CASES if any(not c.has_rule(i) for i in c.float_inputs())]

# ----------------------------------------------------------------- guard tests


def test_every_registered_op_is_in_the_table():
    missing = sorted(set(builtin_ops()) - set(OP_TABLE))
    assert not missing, f"ops registered but missing from OP_TABLE in {__file__}: {missing}; add a row for each"


def test_every_op_in_the_table_is_registered():
    stale = sorted(set(OP_TABLE) - set(OPS))
    assert not stale, f"OP_TABLE lists ops that are not registered: {stale}"


@pytest.mark.parametrize("name", sorted(OP_TABLE))
def test_op_record_is_complete(name):
    op, settings = OPS.get(name), OP_TABLE[name]
    if op is None:
        pytest.fail(f"op {name!r} is in OP_TABLE but not registered")
    if settings.leaf:
        assert op.kind == "leaf", f"{name}: marked as a leaf in OP_TABLE but its kind is {op.kind!r}"
        return
    assert op.samples is not None, f"op {name!r} has no samples(rng): the registry-generated tests cannot reach it"
    samples = op.samples(np.random.default_rng(0))
    assert len(samples) > 0, f"op {name!r}: samples(rng) returned no samples"
    arity = {len(inputs) for inputs, _ in samples}
    rules = [op.vjp_rule(i) for i in range(max(arity))] if op.vjp is not None else []
    if settings.derivative == "none":
        assert op.vjp is None, f"op {name!r} has vjp rules but OP_TABLE says it has no derivative"
    else:
        assert op.vjp is not None, f"op {name!r} has vjp=None (no derivative) but OP_TABLE says {settings.derivative!r}"
        assert op.jvp is not None, f"op {name!r} is differentiable (has vjp) but has no jvp rule"
        has_rules = any(r is not None for r in rules)
        assert has_rules == (settings.derivative == "rules"), (
            f"op {name!r}: OP_TABLE says derivative={settings.derivative!r} but its vjp rules are {rules}")
    if op.kind == "elementwise":
        assert op.scalar_code, f"elementwise op {name!r} has no scalar_code for code generators"


# ----------------------------------------------------------------- static types


def _variants(case: Case):
    """The sample as given, and with its float inputs as float32, int64 and bool."""
    yield "as sampled", case.inputs
    floats = case.float_inputs()
    if floats:
        yield "float32", tuple(a.astype(np.float32) if i in floats else a for i, a in enumerate(case.inputs))
        yield "int64", tuple(np.round(a).astype(np.int64) if i in floats else a for i, a in enumerate(case.inputs))
        yield "bool", tuple(a > 0 if i in floats else a for i, a in enumerate(case.inputs))


@pytest.mark.parametrize("case", _params(CASES))
def test_infer_matches_impl(case):
    """The type ``infer`` promises is the type ``impl`` delivers (no silent casts in the
    evaluator); dtypes the op cannot take are refused when the graph is built."""
    checked = 0
    for variant, inputs in _variants(case):
        symbols = case.symbols(dtypes=[_dtype(a) for a in inputs])
        try:
            node = case.build(symbols)
        except DTypeError:
            if variant == "as sampled":
                raise
            continue  # the op does not take these dtypes, and says so at build time
        try:
            with np.errstate(all="ignore"):
                result = np.asarray(case.op.impl(*inputs, **case.attrs))
        except TypeError as exc:
            pytest.fail(f"{case.id} ({variant}): infer accepts {[s.type for s in symbols]} but impl raises {exc}")
        want = node.type
        assert result.dtype == numpy_dtype(want.dtype), (
            f"{case.id} ({variant}): infer says {want!r} but impl returned dtype {result.dtype}")
        assert result.shape == want.shape, (
            f"{case.id} ({variant}): infer says {want!r} but impl returned shape {result.shape}")
        checked += 1
    assert checked >= 1


@pytest.mark.parametrize("case", _params(CASES))
def test_infer_with_unknown_sizes(case):
    """With every size that is not 1 unknown (None), infer's result is compatible with impl's."""
    shapes = [tuple(None if d != 1 else 1 for d in np.shape(a)) for a in case.inputs]
    node = case.build(case.symbols(shapes=shapes))
    result = sd.evaluate(node, case.values(case.symbols(shapes=shapes)))
    static = node.type.shape
    assert len(static) == np.ndim(result), f"{case.id}: infer gives rank {len(static)}, impl {np.ndim(result)}"
    for d, actual in zip(static, np.shape(result)):
        assert d is None or d == actual, (
            f"{case.id}: infer gives {node.type!r} with unknown sizes, impl {np.shape(result)}")


# -------------------------------------------------------------- derivatives


def _label(case: Case) -> str:
    return f"{case.id} ({case.op_name}{' ' + str(case.attrs) if case.attrs else ''})"


def _rule_inputs(case: Case, symbols):
    return [symbols[i] for i in case.float_inputs() if case.has_rule(i)]


@pytest.mark.parametrize("case", _params(DIFFERENTIABLE))
def test_reverse_mode_against_finite_differences(case):
    symbols = case.symbols()
    node = case.build(symbols)
    check_grads(node, _rule_inputs(case, symbols), case.values(symbols), order=OP_TABLE[case.op_name].order,
                rng=_seed(case.id), label=_label(case))


@pytest.mark.parametrize("case", _params(DIFFERENTIABLE))
def test_forward_mode_against_finite_differences(case):
    symbols = case.symbols()
    node = case.build(symbols)
    check_jvp(node, _rule_inputs(case, symbols), case.values(symbols), order=OP_TABLE[case.op_name].order,
              rng=_seed(case.id), label=_label(case))


@pytest.mark.parametrize("case", _params(DIFFERENTIABLE))
def test_hvp_both_modes_against_finite_differences(case):
    """fwd-rev pushes tangents through the op's vjp rules, so it checks jvp rules of
    the gradient graph; rev-rev must agree with it."""
    symbols = case.symbols()
    node = case.build(symbols)
    check_hvp(node, _rule_inputs(case, symbols), case.values(symbols), rng=_seed(case.id), label=_label(case))


def _weighted_cost(node, rng):
    """sum(out * W): a scalar that sees every element of any output (bool and int cast to float)."""
    out = node if node.type.is_float else sd.astype(node, "float64")
    weights = rng.standard_normal(out.type.shape).astype(numpy_dtype(out.dtype))
    return sd.sum(out * sd.constant(weights))


@pytest.mark.parametrize("case", _params(WITHOUT_DERIVATIVE))
def test_inputs_without_a_rule_get_zero_derivatives(case):
    """Float inputs no derivative flows into (comparisons, sign, where's sides
    never, broadcast_like's reference...) get exact zeros from grad and jvp."""
    symbols = case.symbols()
    node = case.build(symbols)
    values = case.values(symbols)
    cost = _weighted_cost(node, np.random.default_rng(0))
    for i in case.float_inputs():
        if case.has_rule(i):
            continue
        x = symbols[i]
        gradient = sd.grad(cost, x)
        assert gradient.type == x.type, f"{case.id}: gradient wrt x{i} has type {gradient.type!r}, input {x.type!r}"
        value = sd.evaluate(gradient, values)
        assert np.shape(value) == x.type.shape and np.all(value == 0), f"{case.id}: gradient wrt x{i} is {value}"
        tangent = sd.jvp(node, x, sd.constant(np.ones(x.type.shape, numpy_dtype(x.dtype))))
        assert tangent.type == node.type, f"{case.id}: jvp has type {tangent.type!r}, output {node.type!r}"
        value = sd.evaluate(tangent, values)
        assert np.shape(value) == node.type.shape and np.all(value == 0), f"{case.id}: jvp along x{i} is {value}"


# ------------------------------------------------------------------ float32


def _as_float32(case: Case):
    """The sample with its float64 inputs as float32, or None if the op refuses them."""
    inputs = tuple(a.astype(np.float32) if a.dtype == np.float64 else a for a in case.inputs)
    symbols = case.symbols(dtypes=[_dtype(a) for a in inputs])
    try:
        node = case.build(symbols)
    except DTypeError:
        return None
    return inputs, symbols, node


FLOAT32 = [c for c in DIFFERENTIABLE if c.op_name != "cast" and _as_float32(c) is not None]


def _close(got, want, rtol):
    """Scale-aware closeness: rtol relative to the largest magnitude in ``want``."""
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    scale = max(float(np.max(np.abs(want), initial=0.0)), 1e-30)
    return np.all(np.abs(got - want) <= rtol * (np.abs(want) + scale))


@pytest.mark.parametrize("case", _params(FLOAT32))
def test_float32_derivatives_stay_float32_and_match_float64(case):
    inputs32, symbols32, node32 = _as_float32(case)
    assert node32.dtype == "float32", f"{case.id}: float32 inputs give a {node32.type!r} output"
    inputs64 = tuple(a.astype(np.float64) if a.dtype == np.float32 else a for a in inputs32)
    symbols64 = case.symbols(dtypes=[_dtype(a) for a in inputs64])
    node64 = case.build(symbols64)
    weights = np.random.default_rng(1).standard_normal(node32.type.shape).astype(np.float32)
    wrt32, wrt64 = _rule_inputs(case, symbols32), _rule_inputs(case, symbols64)
    directions = [np.random.default_rng(2 + i).uniform(-1, 1, w.type.shape).astype(np.float32)
                  for i, w in enumerate(wrt32)]

    def derivatives(node, wrt, dtype):
        cost = sd.sum(node * sd.constant(weights.astype(dtype)))
        grads = sd.grad(cost, wrt)
        tangents = [sd.constant(u.astype(dtype)) for u in directions]
        hvps = sd.hvp(cost, wrt, tangents)
        return grads + hvps + [sd.jvp(node, wrt, tangents)]

    exprs32 = derivatives(node32, wrt32, np.float32)
    exprs64 = derivatives(node64, wrt64, np.float64)
    for e in exprs32:
        assert e.dtype == "float32", f"{case.id}: a float32 graph has a float64 derivative {e!r}"
    got = sd.evaluate(exprs32, case.values(symbols32, inputs32))
    want = sd.evaluate(exprs64, case.values(symbols64, inputs64))
    names = [f"grad wrt {w.name}" for w in wrt32] + [f"hvp wrt {w.name}" for w in wrt32] + ["jvp"]
    for name, g, w in zip(names, got, want):
        assert np.asarray(g).dtype == np.float32, f"{case.id}: {name} evaluates to {np.asarray(g).dtype}"
        assert _close(g, w, rtol=1e-4), f"{case.id}: {name} in float32 {g} differs from float64 {w}"


@pytest.mark.parametrize("case", _params(FLOAT32))
def test_float32_gradient_against_finite_differences(case):
    """check_grads at float32 precision (its float32 step and tolerances), first order."""
    inputs32, symbols32, node32 = _as_float32(case)
    check_grads(node32, _rule_inputs(case, symbols32), case.values(symbols32, inputs32), order=1,
                rng=_seed(case.id), label=f"{case.id} in float32")


def test_cases_cover_every_sampled_op():
    sampled = {c.op_name for c in CASES}
    assert sampled == {name for name, s in OP_TABLE.items() if not s.leaf}
    assert {c.op_name for c in DIFFERENTIABLE} == {n for n, s in OP_TABLE.items() if s.derivative == "rules"}



# ------------------------------------------------- the checker catches wrong rules


def _scaled_vjp(op, factor):
    rules = op.vjp
    if callable(rules):  # variadic ops: one rule taking the input's index first
        return lambda i, *args, **attrs: rules(i, *args, **attrs) * factor
    return tuple(None if rule is None else (lambda *args, _rule=rule, **attrs: _rule(*args, **attrs) * factor)
                 for rule in rules)


@pytest.mark.parametrize("name", ["sin", "mul", "div", "prod", "matmul", "concatenate"])
def test_a_rule_off_by_a_tenth_of_a_percent_is_caught(name, monkeypatch):
    case = next(c for c in DIFFERENTIABLE if c.op_name == name)
    symbols = case.symbols()
    node = case.build(symbols)
    wrt, values = _rule_inputs(case, symbols), case.values(symbols)
    op = case.op
    original_jvp = op.jvp
    monkeypatch.setattr(op, "vjp", _scaled_vjp(op, 1.001))
    with pytest.raises(GradCheckError, match=f"order 1 of 2.*{case.id}"):
        check_grads(node, wrt, values, label=case.id)
    monkeypatch.undo()
    monkeypatch.setattr(op, "jvp", lambda *args, **attrs: original_jvp(*args, **attrs) * 1.001)
    with pytest.raises(GradCheckError, match=f"forward-mode derivative \\(order 1 of 2\\) of {case.id}"):
        check_jvp(node, wrt, values, label=case.id)


def test_a_rule_wrong_only_at_second_order_is_caught(monkeypatch):
    """tanh' = 1 - out**2 with one factor frozen: right in value, wrong in its own derivative."""
    x = sd.vector("x", 3)
    values = {x: [0.3, -1.2, 0.8]}
    frozen = (lambda g, out, x: g * (1 - sd.stop_gradient(out) * out),)
    monkeypatch.setattr(OPS["tanh"], "vjp", frozen)
    check_grads(sd.tanh(x), x, values, order=1)
    with pytest.raises(GradCheckError, match="order 2 of 2"):
        check_grads(sd.tanh(x), x, values, order=2)


def test_failure_message_names_the_expression_the_point_and_both_numbers():
    x = sd.vector("x", 3)
    wrong = sd.sum(x * sd.stop_gradient(x))  # grad is x, the derivative is 2x
    with pytest.raises(GradCheckError) as info:
        check_grads(wrong, x, {x: [1.0, 2.0, 3.0]}, order=1, label="x * stop_gradient(x)")
    message = str(info.value)
    for part in ("x * stop_gradient(x)", "x = [1., 2., 3.]", "symdiff:", "finite differences:", "stop_gradient x",
                 "wrt x: symdiff"):
        assert part in message, f"{part!r} missing from:\n{message}"


def test_kinks_are_reported_rather_than_compared():
    x = sd.vector("x", 3)
    with pytest.raises(GradCheckError, match="not smooth at the scale of the step"):
        check_grads(sd.sum(sd.abs(x)), x, {x: [1e-4, 2.0, 3.0]}, order=1)


def test_function_form_and_argument_selection():
    calls = []

    def f(w, b, n):
        calls.append((w.type, b.type, n.type))
        return sd.sum(sd.tanh(w * 2.0 + b) * sd.astype(n, "float64"))

    check_grads(f, wrt=["w", 1], values=(np.array([0.5, -1.0]), 0.25, np.array([1, 2])), order=2)
    check_jvp(f, wrt=[0], values=(np.array([0.5, -1.0]), 0.25, np.array([1, 2])), order=2)
    assert calls[0] == (sd.TensorType("float64", (2,)), sd.TensorType("float64", ()), sd.TensorType("int64", (2,)))


def test_float32_problems_use_float32_tolerances():
    x = sd.vector("x", 3, dtype="float32")
    values = {x: np.array([0.3, -1.2, 0.8], np.float32)}
    check_grads(sd.exp(x) * sd.sin(x), x, values, order=2)
    check_hvp(sd.sum(sd.exp(x) * sd.sin(x)), x, values)
    half_frozen = sd.sum(x * x) + 0.5 * sd.sum(x * sd.stop_gradient(x))  # symdiff: 2.5 x, truly 3 x
    with pytest.raises(GradCheckError):
        check_grads(half_frozen, x, values, order=1)


@pytest.mark.parametrize("case", _params(DIFFERENTIABLE))
def test_derivatives_with_unknown_sizes_match_static_ones(case):
    """Rules must not lean on static sizes: with every size that is not 1 unknown,
    grad and jvp give the same values as with the sizes known."""
    results = []
    for shapes in ([np.shape(a) for a in case.inputs],
                   [tuple(None if d != 1 else 1 for d in np.shape(a)) for a in case.inputs]):
        symbols = case.symbols(shapes=shapes)
        node = case.build(symbols)
        values = case.values(symbols)
        weights = np.random.default_rng(3).standard_normal(np.shape(sd.evaluate(node, values)))
        wrt = _rule_inputs(case, symbols)
        tangents = [sd.constant(np.random.default_rng(4 + i).standard_normal(np.shape(values[w])))
                    for i, w in enumerate(wrt)]
        try:
            cost = sd.sum(node * sd.constant(weights))
            results.append(sd.evaluate(sd.grad(cost, wrt) + [sd.jvp(node, wrt, tangents)], values))
        except sd.GradientError as exc:
            assert case.op_name in UNKNOWN_SIZE_LIMITS, f"{case.id}: {exc}"
            assert UNKNOWN_SIZE_LIMITS[case.op_name] in str(exc), f"{case.id}: {exc}"
            return
    for known, unknown in zip(*results):
        np.testing.assert_allclose(unknown, known, rtol=1e-12, atol=1e-12, err_msg=case.id)


# Ops whose derivative needs some sizes statically, and the error that says so.  (reshape
# and concatenate left this table: reshape's gradient reshapes like its input, and
# concatenate's gathers at run-time offsets.)  qr in mode "complete" needs to know m > n.
UNKNOWN_SIZE_LIMITS = {"qr": "has no derivative"}
