"""The Numba backend against the NumPy reference evaluator, op by op.

Compiles are slow, so every test here shares a few kernels built once per session:
one kernel holds every sample of every op (values), one every op's gradient, one
the float32 versions, one some Hessian-vector products.  Each output is compared
with ``sd.evaluate`` on the same inputs.
"""

from __future__ import annotations

import numpy as np
import pytest

import symdiff as sd
from symdiff.backends import lowering, scalar_ir
from symdiff.ir import OPS, builtin_ops, make_node
from symdiff.types import dtype_of_array

pytest.importorskip("numba")

LEAVES = {"symbol", "constant"}
# Object-mode blocks (NumPy ufuncs) make Numba warn under pytest's warning capture; expected.
pytestmark = pytest.mark.filterwarnings("ignore:Code running in object mode")


def test_every_op_has_a_lowering():
    """Guard: a new op fails here until the Numba backend can lower it."""
    assert lowering.unsupported_ops() == []
    for name, op in builtin_ops().items():
        if op.compiled_as is not None:  # sd.function compiles its composite in its place
            continue
        if op.kind == "elementwise":  # an LLVM spelling, or listed as an op that ends IR regions
            assert name in scalar_ir.IR_OPS or name in scalar_ir.PYTHON_STATEMENT_OPS, (
                f"elementwise op {name!r} has no LLVM IR spelling (scalar_ir.IR_OPS) and is not in "
                "scalar_ir.PYTHON_STATEMENT_OPS")
        else:
            assert name in lowering.LOWERINGS, f"op {name!r} is missing from lowering.LOWERINGS"


CHUNK = 24  # outputs per kernel: Numba's compile time grows faster than linearly in a kernel's size


def _samples(kinds, dtype=None, gradients=False, few=False):
    """(symbols, output, values, label) for every sample of every op of ``kinds``.

    With ``gradients``, the outputs are the gradients of sum(out * W) wrt every
    float input instead of the op's value.  ``few``: for elementwise ops only the
    first sample (scalars: straight-line code) and the last (broadcasting loops).
    """
    rng = np.random.default_rng(7)
    problems = []
    for name, op in sorted(builtin_ops().items()):
        if name in LEAVES or op.kind not in kinds or (gradients and not op.differentiable):
            continue
        samples = op.samples(rng)
        for k, (arrays, attrs) in enumerate(samples):
            if few and op.kind == "elementwise" and 0 < k < len(samples) - 1:
                continue
            syms, values = [], {}
            for j, array in enumerate(arrays):
                array = np.asarray(array)
                if dtype is not None and array.dtype.kind == "f":
                    array = array.astype(dtype)
                sym = sd.tensor(f"{name}_{k}_{j}", array.shape, dtype_of_array(array))
                syms.append(sym)
                values[sym] = array
            try:
                out = make_node(op, syms, dict(attrs))
            except sd.DTypeError:
                continue  # e.g. a cast sample that does not apply to float32
            if not gradients:
                problems.append((syms, [out], values, f"{name} sample {k}"))
                continue
            if not out.type.is_float:
                continue
            weights = sd.constant(rng.normal(size=np.shape(sd.evaluate(out, values))))
            wrt = [s for s in syms if s.type.is_float]
            problems.append((syms, sd.grad(sd.sum(out * weights), wrt), values, f"gradient of {name} sample {k}"))
    return problems


def _check_compiled(problems, rtol, atol, optimize=False):
    """Compile the problems CHUNK outputs per kernel and compare with the reference."""
    checked = 0
    while problems:
        chunk, size = [], 0
        while problems and size < CHUNK:
            chunk.append(problems.pop(0))
            size += len(chunk[-1][1])
        inputs = [s for syms, _, _, _ in chunk for s in syms]
        outputs = [o for _, outs, _, _ in chunk for o in outs]
        values = {s: v for _, _, vals, _ in chunk for s, v in vals.items()}
        labels = [f"{label}, output {j}" for _, outs, _, label in chunk for j in range(len(outs))]
        got = sd.function(inputs, outputs, optimize=optimize)(*[values[s] for s in inputs])
        want = sd.evaluate(outputs, values)
        for g, w, label in zip(got, want, labels):
            _compare(g, w, label, rtol, atol)
            checked += 1
    return checked


def _compare(got, want, label, rtol=1e-12, atol=1e-12):
    want = np.asarray(want)
    got_array = np.asarray(got)
    assert got_array.shape == want.shape, f"{label}: shape {got_array.shape}, reference {want.shape}"
    assert got_array.dtype == want.dtype or np.ndim(got) == 0, f"{label}: dtype {got_array.dtype} vs {want.dtype}"
    np.testing.assert_allclose(got_array.astype(np.float64), want.astype(np.float64), rtol=rtol, atol=atol,
                               err_msg=label)


KINDS = [("elementwise",), ("reduction", "linalg"), ("shape",)]
_LISTED = {kind for group in KINDS for kind in group}
KINDS += [(kind,) for kind in sorted({op.kind for op in builtin_ops().values()} - _LISTED - {"leaf"})]  # newer families


@pytest.mark.parametrize("kinds", KINDS, ids=["+".join(k) for k in KINDS])
def test_every_op_compiled_matches_reference(kinds):
    assert _check_compiled(_samples(kinds), rtol=1e-12, atol=1e-12) >= 10


def test_every_op_float32():
    problems = _samples(("elementwise", "reduction", "linalg"), dtype=np.float32, few=True)
    assert _check_compiled(problems, rtol=2e-6, atol=1e-6) >= 10


@pytest.mark.parametrize("kinds", KINDS, ids=["+".join(k) for k in KINDS])
def test_every_op_gradient_compiled_matches_reference(kinds):
    """For every differentiable op sample, the gradient of sum(out * W), compiled (optimised)."""
    problems = _samples(kinds, gradients=True, few=True)
    assert _check_compiled(problems, rtol=1e-10, atol=1e-12, optimize=True) >= 5


def test_hvp_compiled_matches_reference():
    x = sd.vector("x")
    v = sd.vector("v")
    W = sd.matrix("W", (3, None))
    cost = sd.sum(sd.tanh(W @ x) ** 2) + sd.logsumexp(x * x) + sd.sum(sd.sigmoid(x[1:] - x[:-1]))
    outputs = [cost, *sd.grad(cost, [x, W]), sd.hvp(cost, x, v), sd.hvp(cost, x, v, mode="fwd-rev")]
    f = sd.function([x, W, v], outputs)
    rng = np.random.default_rng(0)
    for n in (4, 9):  # one kernel, two sizes
        values = {x: rng.normal(size=n), W: rng.normal(size=(3, n)), v: rng.normal(size=n)}
        got = f(values[x], values[W], values[v])
        want = sd.evaluate(outputs, values)
        for g, w, label in zip(got, want, ["cost", "dx", "dW", "hvp rev-rev", "hvp fwd-rev"]):
            _compare(g, w, f"{label} n={n}", rtol=1e-11)


def test_composites_and_structure_in_one_kernel():
    """Front-end composites exercise views, broadcasting, reductions and scatters together."""
    X = sd.matrix("X", (None, 4))
    y = sd.vector("y", 4)
    s = sd.scalar("s")
    outs = [
        sd.softmax(X, axis=1), sd.log_softmax(X, axis=0), sd.logsumexp(X), sd.mean(X, axis=0),
        sd.clip(X, -0.5, 0.5), sd.relu(X - y), X[:, ::-2] * s, X[1:, 1:3].sum(axis=0), X[-1, :],
        sd.concatenate([X, X[:, :2] * 2], axis=1), sd.stack([y, y * s]), X.T @ X, X @ y, y @ y,
        sd.reshape(X, (-1, 2)), sd.prod(X + 2.0, axis=1), sd.max(X, axis=0), sd.min(X),
        sd.where(X > 0, X, s), sd.broadcast_to(y, (3, 4)), sd.expand_dims(y, 0) + X, sd.squeeze(X[:1, :]),
        sd.astype(X > 0, "int64").sum(), sd.astype(X, "float32") * 2, sd.dim(X, 0) * s,
        X[::-1][1:, ::-2], X.T[::2][:, 1:] + 1, sd.concatenate([y, sd.constant([5.0])])[::-1][1:3],
        sd.astype(X > 0, "int64").T @ sd.astype(X > 0, "int64"),  # integer matmul: loops, not BLAS
    ]
    cost = sd.sum(sd.softmax(X, axis=1) * y) + sd.sum(X[1:] * X[:-1]) * s
    cost = cost + sd.sum(sd.concatenate([X, X * X], axis=1) ** 2)
    outs += sd.grad(cost, [X, y, s])
    f = sd.function([X, y, s], outs)
    rng = np.random.default_rng(1)
    for n in (3, 6):
        values = {X: rng.normal(size=(n, 4)), y: rng.normal(size=4), s: 0.7}
        got = f(values[X], values[y], values[s])
        want = sd.evaluate(outs, values)
        for k, (g, w) in enumerate(zip(got, want)):
            _compare(g, w, f"output {k} at n={n}", rtol=1e-11)


def test_long_scalar_chain_uses_an_ir_region():
    x = sd.scalar("x")
    y = x
    for _ in range(40):
        y = sd.sin(y) * y + sd.cos(y) + sd.sigmoid(y) - sd.softplus(-y) + sd.tanh(y) * 0.1
    d = sd.grad(y, x)
    f = sd.function([x], [y, d])
    assert f.program.regions >= 1
    assert "make_region" in f.source
    for point in (0.3, -1.2):
        want = sd.evaluate([y, d], {x: point})
        got = f(point)
        for g, w in zip(got, want):
            np.testing.assert_allclose(g, w, rtol=1e-10)


def test_long_elementwise_chain_in_a_loop_body_uses_an_ir_region():
    x = sd.vector("x")
    y = x
    for _ in range(30):
        y = sd.sin(y) * y + sd.cos(y)
    outputs = [y, sd.grad(sd.sum(y), x)]
    f = sd.function([x], outputs)
    assert f.program.regions == 1
    points = np.linspace(-1, 1, 11)
    for g, w in zip(f(points), sd.evaluate(outputs, {x: points})):
        np.testing.assert_allclose(g, w, rtol=1e-12, atol=1e-15)


def test_generated_source_is_readable():
    x = sd.vector("x")
    r = sd.sum(100 * (x[1:] - x[:-1] ** 2) ** 2 + (1 - x[:-1]) ** 2)
    f = sd.function([x], [r, sd.grad(r, x)])
    source = f.source
    assert "def kernel(in0_x)" in source
    assert source.count("# loop") == 1  # value, sum and both slice gradients: one fused loop
    assert "scatter_slice" in source and "+=" in source  # the slice gradients are scatter-adds
    assert "np.zeros" not in source and "np.dot" not in source


def test_transcendental_arrays_use_vector_math_where_the_machine_has_it():
    from symdiff.backends import vector_math

    X = sd.matrix("X", (None, 64))
    h = sd.tanh(X * 2.0)
    outputs = [h, sd.sum(sd.exp(h), axis=1), *sd.grad(sd.sum(sd.log1p(h * h) * sd.sin(X)), [X])]
    f = sd.function([X], outputs)
    assert "objmode" not in f.source
    if vector_math.available():
        assert "_vm_tanh(" in f.source and "_vm_log1p(" in f.source and "_SD_VECTOR_MATH" in f.source
    else:
        assert "_vm_" not in f.source
    rng = np.random.default_rng(5)
    for n in (0, 1, 5):
        values = rng.normal(size=(n, 64))
        for g, w in zip(f(values), sd.evaluate(outputs, {X: values})):
            np.testing.assert_allclose(g, w, rtol=1e-12, atol=1e-15)


def test_vector_math_off_gives_scalar_loops_and_the_same_numbers():
    import subprocess
    import sys

    script = (
        "import numpy as np, symdiff as sd\n"
        "x = sd.vector('x', dtype='float32'); y = sd.sum(sd.tanh(x) * sd.expm1(x))\n"
        "f = sd.function([x], [y, sd.grad(y, x)])\n"
        "print('_vm_' in f.source)\n"
        "v = np.linspace(-30, 30, 1001, dtype=np.float32)\n"
        "print(repr([a.tolist() if hasattr(a, 'tolist') else a for a in f(v)]))\n"
    )
    runs = {}
    for setting in ("off", "on"):
        env = dict(__import__("os").environ, SYMDIFF_VECTOR_MATH=setting)
        result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=300)
        assert result.returncode == 0, result.stderr
        runs[setting] = result.stdout.splitlines()
    assert runs["off"][0] == "False"
    off, on = eval(runs["off"][1]), eval(runs["on"][1])
    np.testing.assert_allclose(on[0], off[0], rtol=1e-5)
    np.testing.assert_allclose(on[1], off[1], rtol=1e-5, atol=1e-6)  # 1 - tanh^2 cancels in float32 either way


def test_long_region_split_into_parts_matches_one_block(monkeypatch):
    """A region above ``scalar_ir.SPLIT_ABOVE`` is emitted as noinline functions passing values
    through stack slots: float64, float32, int64 and bool values cross part boundaries, sin
    and cos of one value fall in different parts, and an early value is read after the region.
    The results equal the one-block kernel's bit for bit."""
    from symdiff.backends import scalar_ir

    x, k = sd.scalar("x"), sd.scalar("k", "int64")
    y, counts = x, k
    for i in range(12):
        s = sd.sin(y)
        y = s * y + sd.where(y > 0.5, 0.25, -0.25) + sd.cos(y) * sd.astype(counts, "float64") * 1e-2
        counts = counts * 3 + i
    single = sd.astype(y, "float32") * 1.5
    outputs = [y, sd.grad(y, x), single, counts, s]
    one_block = sd.function([x, k], outputs)
    monkeypatch.setattr(scalar_ir, "SPLIT_ABOVE", 20)
    monkeypatch.setattr(scalar_ir, "PART_SIZE", 7)
    in_parts = sd.function([x, k], outputs)
    assert "part_size=7" in in_parts.source and "part_size" not in one_block.source
    assert " parts: _region" in in_parts.source
    for point in (0.3, -1.2, 2.0):
        got, want = in_parts(point, 2), one_block(point, 2)
        for g, w, r in zip(got, want, sd.evaluate(outputs, {x: point, k: 2})):
            assert np.asarray(g).dtype == np.asarray(w).dtype
            np.testing.assert_array_equal(g, w)
            np.testing.assert_allclose(g, r, rtol=1e-6 if np.asarray(r).dtype == np.float32 else 1e-12)


def test_regions_negate_nan_and_cast_nan_to_int_as_numpy_in_one_block_and_in_parts(monkeypatch):
    """Negation flips a NaN's sign (fneg, not 0 - x, which optnone parts kept as a subtraction),
    and NaN cast to int64 is NumPy's INT64_MIN, not LLVM's poison."""
    from symdiff.backends import scalar_ir

    a = sd.scalar("a")
    nan = (a - a) / (a - a)
    as_int = sd.astype(sd.sqrt(a), "int64")
    pad = a
    for _ in range(30):
        pad = pad * 0.5 + sd.sin(pad)
    outputs = [sd.copysign(1.0, -nan), sd.copysign(1.0, sd.sigmoid(nan)), as_int,
               sd.sigmoid(sd.copysign(sd.astype(as_int, "float64"), sd.abs(pad))), pad]
    with np.errstate(invalid="ignore"):
        want = [np.asarray(w) for w in sd.evaluate(outputs, {a: -1.0})]
    for split_above, part_size in ((8192, 1024), (4, 3)):
        monkeypatch.setattr(scalar_ir, "SPLIT_ABOVE", split_above)
        monkeypatch.setattr(scalar_ir, "PART_SIZE", part_size)
        f = sd.function([a], outputs)
        assert f.program.regions >= 1
        for k, (g, w) in enumerate(zip(f(-1.0), want)):
            np.testing.assert_array_equal(np.asarray(g), w, err_msg=f"output {k}, split above {split_above}")
            assert np.signbit(g) == np.signbit(w), (k, split_above)


def test_a_region_with_more_inputs_than_a_part_stays_one_block(monkeypatch):
    """Storing thousands of inputs into slots made LLVM's scheduler slower than one block."""
    from symdiff.backends import scalar_ir

    monkeypatch.setattr(scalar_ir, "SPLIT_ABOVE", 20)
    monkeypatch.setattr(scalar_ir, "PART_SIZE", 4)
    xs = [sd.scalar(f"x{k}") for k in range(6)]
    y = sum(sd.sin(x) * x for x in xs)
    for _ in range(10):
        y = sd.cos(y) * y + 0.5
    f = sd.function(xs, y)
    assert "part_size" not in f.source and f.program.regions >= 1
    np.testing.assert_allclose(f(*[0.1 * k for k in range(6)]), sd.evaluate(y, {x: 0.1 * k for k, x in enumerate(xs)}),
                               rtol=1e-12)


def test_parts_rendered_to_text_when_emitted_give_the_same_module():
    """A part keeps its body as text, not instruction objects (memory of big compiles): the
    module's LLVM IR is the one the objects would have printed."""
    from llvmlite import ir

    listing = "\n".join(["s = sin x -> float64", "c = cos x -> float64", "p = mul s c -> float64",
                         "q = add p 1.5:float64 -> float64", "k = cast q -> int64 as int64",
                         "m = mul k k -> int64", "f = cast m -> float64 as float64", "y = add f s -> float64"])
    instructions = scalar_ir.parse_instructions(listing)

    def module_text(render):
        module = ir.Module()
        function = ir.Function(module, ir.FunctionType(ir.DoubleType(), [ir.DoubleType()]), "f")
        builder = ir.IRBuilder(function.append_basic_block("entry"))
        values, dtypes = {"x": function.args[0]}, {"x": "float64"}
        scalar_ir._emit_in_parts(builder, "r", instructions, values, dtypes, scalar_ir._sin_cos_pairs(instructions),
                                 ["y", "c"], 3, render)
        builder.ret(builder.fadd(values["y"], values["c"]))
        return str(module)

    rendered = module_text(True)
    assert rendered == module_text(False) and rendered.count("define internal void @\"r_part") == 3


def test_sums_reassociated_and_static_inner_loops_hidden_match_numpy():
    """A float sum (into a scalar or an array element) adds with ``_sum_add`` (vectorised partial sums) and static
    inner loops of 8 or more run to ``_opaque`` bounds: sizes around the vector widths, both
    float dtypes, static and run-time sizes, infinities and NaN propagate as in NumPy."""
    shapes = [(0, 9), (1, 7), (3, 8), (5, 37), (2, 1001)]
    cases = []
    for dtype in ("float64", "float32"):
        for rows, cols in shapes:
            for static in (True, False):
                X = sd.matrix(f"X{len(cases)}", (rows, cols) if static else (None, None), dtype=dtype)
                outputs = [sd.sum(X * 2.0), sd.sum(sd.exp(X), axis=1), sd.sum(X, axis=0)]
                cases.append((dtype, rows, cols, static, X, outputs))
    f = sd.function([c[4] for c in cases], [out for c in cases for out in c[5]])
    assert "_sum_add(" in f.source and "_opaque(37)" in f.source and "range(_opaque(7))" not in f.source
    rng = np.random.default_rng(11)
    arguments = []
    for dtype, rows, cols, _, _, _ in cases:
        values = rng.normal(size=(rows, cols)).astype(dtype)
        if values.size > 6:
            values.flat[3] = np.inf if cols % 2 else np.nan
        arguments.append(values)
    got = f(*arguments)
    want = sd.evaluate([out for c in cases for out in c[5]], {c[4]: a for c, a in zip(cases, arguments)})
    for (dtype, rows, cols, static, _, _), k in zip(cases, range(0, len(got), 3)):
        for g, w in zip(got[k:k + 3], want[k:k + 3]):
            tolerance = 1e-5 if dtype == "float32" else 1e-12
            np.testing.assert_allclose(g, w, rtol=tolerance, atol=tolerance,
                                       err_msg=f"{dtype} {rows}x{cols} static={static}")
