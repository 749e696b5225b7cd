"""Printers (text, DOT, JSON and back) and the SymPy bridge.

Golden files live in tests/golden/; after an intended change of the output,
regenerate them with ``SYMDIFF_UPDATE_GOLDEN=1 pytest tests/test_printers.py``
and review the diff.  Each test uses symbol names of its own: nodes are
hash-consed for the whole process, and a node first built by another test could
carry that test's creation note.
"""

import json
import math
import os
from pathlib import Path

import numpy as np
import pytest
import sympy

import symdiff as sd
from symdiff.printers import GraphFormatError, Listing, to_table
from symdiff.sympy_bridge import SympyConversionError

GOLDEN = Path(__file__).parent / "golden"


def check_golden(name: str, text: str):
    path = GOLDEN / name
    if os.environ.get("SYMDIFF_UPDATE_GOLDEN"):
        path.parent.mkdir(exist_ok=True)
        path.write_text(text + "\n", encoding="utf-8")
    expected = path.read_text(encoding="utf-8")
    assert text + "\n" == expected, f"{name} differs from the golden file; diff them, then regenerate if intended"


def seed_problem(prefix: str):
    a, b = sd.scalars(f"{prefix}a {prefix}b")
    e = (a + b) * (b + 1)
    da, db = sd.grad(e, [a, b])
    return a, b, {"e": e, "de/da": da, "de/db": db}


def mlp_problem():
    W = sd.matrix("pW", (3, 4), dtype="float32")
    x = sd.vector("px", 4, dtype="float32")
    h = sd.tanh(W @ x)[1:]
    # Primitives only (no composites such as softmax), so the golden file follows this area alone.
    loss = sd.sum(sd.exp(h) / sd.sum(h * h) * sd.constant(np.array([0.25, -0.5], dtype=np.float32)))
    return {"loss": loss, "dloss/dW": sd.grad(loss, W)}


# ------------------------------------------------------------------------ text


def test_text_golden_seed():
    _, _, outputs = seed_problem("t_")
    check_golden("text_seed.txt", sd.to_text(outputs, optimize=False))


def test_text_golden_attributes_and_float32():
    check_golden("text_mlp.txt", sd.to_text(mlp_problem(), optimize=False))


def test_text_numbers_by_position_not_global_id():
    _, _, first = seed_problem("n_")
    text = sd.to_text(first, optimize=False)
    for k in range(50):  # unrelated nodes built in between must not change the listing
        sd.exp(sd.scalar(f"unrelated{k}"))
    _, _, again = seed_problem("n_")
    assert sd.to_text(again, optimize=False) == text
    assert "%2 = add n_a n_b" in text and "output e = %5" in text


def test_text_marks_appended_nodes_with_output_names():
    _, _, outputs = seed_problem("m_")
    lines = sd.to_text(outputs, optimize=False).splitlines()
    forward = lines[: lines.index("output e = %5")]
    appended = lines[lines.index("output e = %5") + 1:]
    assert not any("#" in line for line in forward)
    assert any(line.endswith("# grad of e wrt m_b") for line in appended)
    assert all("#" in line for line in appended if not line.startswith("output"))


def test_text_optimizes_by_default():
    _, _, outputs = seed_problem("o_")
    optimized = dict(zip(outputs, sd.optimize(list(outputs.values()))))
    assert sd.to_text(outputs) == sd.to_text(optimized, optimize=False)
    assert len(sd.to_text(outputs).splitlines()) < len(sd.to_text(outputs, optimize=False).splitlines())


def test_text_unlisted_reference_and_unnamed_outputs():
    a = sd.scalar("u_a")
    cost = sd.sin(a) * a
    g = sd.grad(cost, a)
    text = sd.to_text(g, optimize=False)  # the cost is not printed: its notes say so (no %?)
    assert "grad of a node not shown wrt u_a" in text and "%?" not in text
    assert text.splitlines()[-1].startswith("output out = ")
    assert "output out1 = " in sd.to_text([cost, g], optimize=False)


def test_table_columns_and_blank_cells():
    a = sd.scalar("tb_a")
    listing = Listing({"y": a * 3.0}, optimize=False)
    values = dict(zip((n.id for n in listing.nodes), sd.evaluate(listing.nodes, {a: 2.0})))
    text = to_table(listing, [("value", values), ("other", {listing.outputs[0].id: 1.5})])
    assert text.splitlines()[0].split() == ["node", "definition", "type", "value", "other"]
    assert text.splitlines()[-2].split() == ["%2", "mul", "tb_a", "%1", "f64[]", "6", "1.5"]


# ------------------------------------------------------------------------- dot


def test_dot_golden_seed():
    _, _, outputs = seed_problem("d_")
    text = sd.to_dot(outputs, optimize=False)
    check_golden("dot_seed.dot", text)
    assert text.count('fillcolor="#d7e8fb"') == 3  # the three appended nodes are blue


def test_dot_values_in_labels():
    a = sd.scalar("dv_a")
    listing = Listing({"y": sd.exp(a)}, optimize=False)
    text = sd.to_dot(listing, values={listing.outputs[0].id: np.float64(1.0)})
    assert '\\n= 1"' in text


# ------------------------------------------------------------------------ json


def test_json_golden_seed():
    _, _, outputs = seed_problem("j_")
    text = sd.to_json(outputs, optimize=False)
    check_golden("json_seed.json", text)
    document = json.loads(text)
    assert document["format"] == "symdiff-graph" and document["version"] == 1
    for node in document["nodes"]:
        assert all(i < node["id"] for i in node["inputs"])


def test_json_round_trip_gives_the_same_nodes():
    _, _, outputs = seed_problem("r_")
    back = sd.from_json(sd.to_json(outputs, optimize=False))
    assert list(back) == list(outputs)
    assert all(back[k] is outputs[k] for k in outputs)  # hash-consing: the very same nodes
    mlp = mlp_problem()
    text = sd.to_json(mlp, optimize=False)
    assert all(sd.from_json(text)[k] is mlp[k] for k in mlp)


def test_json_round_trip_of_special_values_and_dtypes():
    x = sd.vector("sv_x", 3)
    k = sd.tensor("sv_k", (2,), dtype="int64")
    consts = [
        sd.constant(np.array([np.nan, np.inf, -np.inf])),
        sd.constant(np.array([-0.0, 1e-300, 0.1])),
        sd.constant(np.array([0.1, 3.5, -2.0], dtype=np.float32)),
    ]
    out = sd.sum(sd.where(sd.constant(np.array([True, False, True])), x * consts[0], x * consts[1]))
    out = out + sd.sum(sd.astype(x * consts[2], "float64")) + sd.sum(sd.astype(k * 3, "float64"))
    text = sd.to_json({"out": out}, optimize=False)
    json.loads(text, parse_constant=lambda name: pytest.fail(f"non-standard JSON constant {name}"))
    again = sd.from_json(text)["out"]
    assert again is out
    assert sd.to_json({"out": again}, optimize=False) == text


def test_json_rebuilds_a_graph_it_never_saw(tmp_path):
    _, _, outputs = seed_problem("fresh_")
    text = sd.to_json(outputs, optimize=False).replace("fresh_", "other_")  # new symbols: new nodes
    rebuilt = sd.from_json(text)
    values = sd.evaluate(list(rebuilt.values()), {"other_a": 2.0, "other_b": 1.0})
    assert [float(v) for v in values] == [6.0, 2.0, 5.0]
    assert sd.to_json(rebuilt, optimize=False) == text  # notes survive, renumbered to the new ids
    assert "# grad of e wrt other_b" in sd.to_text(rebuilt, optimize=False)


@pytest.mark.parametrize("mutate, message", [
    (lambda d: d.update(format="other"), "not a symdiff graph"),
    (lambda d: d.update(version=99), "unsupported symdiff-graph version"),
    (lambda d: d["nodes"][2].update(op="frobnicate"), "unknown op 'frobnicate'"),
    (lambda d: d["nodes"][2].update(inputs=[0, 7]), "is not an earlier node"),
    (lambda d: d["nodes"][2].update(shape=[3]), "the document says"),
    (lambda d: d["nodes"][2].update(dtype="complex128"), "unknown dtype"),
    (lambda d: d["outputs"][0].update(node=42), "refers to unknown node 42"),
    (lambda d: d["nodes"][0].pop("name"), "node 0: KeyError"),
])
def test_json_reader_rejects_bad_documents(mutate, message):
    _, _, outputs = seed_problem("bad_")
    document = json.loads(sd.to_json(outputs, optimize=False))
    mutate(document)
    with pytest.raises(GraphFormatError, match=message):
        sd.from_json(document)


def test_json_reader_rejects_text_that_is_not_json():
    with pytest.raises(GraphFormatError, match="not a JSON document"):
        sd.from_json("{nodes: ")


# ----------------------------------------------------------------------- sympy

X, Y = sympy.symbols("sx sy", real=True)
SYMPY_CASES = [
    sympy.sin(X) ** 2 + sympy.sin(X) * Y,
    X / Y - 3 * X * Y + 1 / (X * X + 1),
    sympy.exp(-X ** 2 / 2) / sympy.sqrt(2 * sympy.pi) + sympy.log(Y),
    sympy.tanh(X * Y) + sympy.cos(X) ** 3 - sympy.tan(Y / 4),
    X ** sympy.Rational(3, 2) + sympy.sqrt(Y) - Y ** -2 + X ** Y,
    sympy.Abs(X - Y) + sympy.Max(X, 2 * Y) + sympy.Min(X, Y, 0.5),
    sympy.log(X, 2) + sympy.sinh(Y) * sympy.cosh(X),
    sympy.Piecewise((X * Y, X > Y), (X ** 2, True)),
]
POINTS = [{X: 0.7, Y: 1.3}, {X: 1.9, Y: 0.4}, {X: 0.35, Y: 2.2}]


@pytest.mark.parametrize("f", SYMPY_CASES, ids=range(len(SYMPY_CASES)))
def test_sympy_round_trip_against_sympy_diff(f):
    graph = sd.from_sympy(f)
    x, y = sd.scalar("sx"), sd.scalar("sy")
    grads = sd.grad(graph, [x, y])
    formulas = sd.to_sympy(grads)  # gradient graph -> SymPy, compared with sympy.diff
    for point in POINTS:
        values = {"sx": point[X], "sy": point[Y]}
        ours = sd.evaluate([graph] + grads, values)
        assert float(ours[0]) == pytest.approx(float(f.subs(point)), rel=1e-12)
        for formula, wrt, value in zip(formulas, (X, Y), ours[1:]):
            expected = float(sympy.diff(f, wrt).subs(point))
            assert float(value) == pytest.approx(expected, rel=1e-10, abs=1e-12)
            assert float(formula.subs(point)) == pytest.approx(expected, rel=1e-10, abs=1e-12)


def test_to_sympy_of_a_gradient_is_exact():
    a, b = sd.scalars("ts_a ts_b")
    e = (a + b) * (b + 1)
    sa, sb = sympy.symbols("ts_a ts_b", real=True)
    da, db = sd.to_sympy(sd.grad(e, [a, b]))
    assert sympy.simplify(da - sympy.diff((sa + sb) * (sb + 1), sa)) == 0
    assert sympy.simplify(db - sympy.diff((sa + sb) * (sb + 1), sb)) == 0
    assert sd.to_sympy(sd.sigmoid(a)) == 1 / (1 + sympy.exp(-sa))
    assert sd.to_latex(sd.exp(a) / 2) == r"\frac{e^{ts_{a}}}{2}"


def test_tanh_derivatives_round_trip_through_sympy():
    """tanh' is the primitive sech2, which SymPy spells sech(x)**2: back in, the same values."""
    x = sd.scalar("rt_x")
    for order in (1, 2, 3):
        derivative = sd.derivative(sd.tanh(x), x, order)
        back = sd.from_sympy(sd.to_sympy(derivative))
        for point in (0.7, -3.0, 40.0):
            assert float(sd.evaluate(back, {x: point})) == pytest.approx(
                float(sd.evaluate(derivative, {x: point})), rel=1e-12, abs=1e-300)


def test_from_sympy_shares_repeated_subexpressions():
    # x <- sin(x) * x + cos(x), 25 times: as a tree it doubles per layer; as a graph it is linear.
    x = sympy.Symbol("sh_x")
    f = x
    for _ in range(25):
        f = sympy.sin(f) * f + sympy.cos(f)
    graph = sd.from_sympy(f)
    assert sd.node_count(graph) <= 5 * 25
    value = sd.evaluate(graph, {"sh_x": 0.3})
    expected = 0.3
    for _ in range(25):
        expected = math.sin(expected) * expected + math.cos(expected)
    assert float(value) == pytest.approx(expected, rel=1e-12)


def test_from_sympy_maps_symbols_to_given_expressions():
    t = sympy.Symbol("ms_t")
    v = sd.vector("ms_v", 3)
    out = sd.from_sympy(sympy.exp(t) * 2, {t: v})
    assert out.type == sd.TensorType("float64", (3,))
    np.testing.assert_allclose(sd.evaluate(out, {v: [0.0, 1.0, 2.0]}), 2 * np.exp([0.0, 1.0, 2.0]))


def test_sympy_bridge_errors_name_the_culprit():
    with pytest.raises(SympyConversionError, match="scalar-valued graphs"):
        sd.to_sympy(sd.sum(sd.vector("se_x", 3)))
    with pytest.raises(SympyConversionError, match="gamma"):
        sd.from_sympy(sympy.gamma(sympy.Symbol("se_y")))
    with pytest.raises(SympyConversionError, match="not a real number"):
        sd.from_sympy(sympy.I * sympy.Symbol("se_y"))


def test_from_json_refuses_malformed_nodes():
    document = json.loads(sd.to_json({"s": sd.sum(sd.vector("jx", 3))}, optimize=False))
    bad_shape = json.loads(json.dumps(document))
    bad_shape["nodes"][0]["shape"] = [-1]
    leaf_with_inputs = json.loads(json.dumps(document))
    leaf_with_inputs["nodes"][1]["op"] = "constant"
    string_id = json.loads(json.dumps(document))
    string_id["nodes"][0]["id"] = "0"
    for broken in (bad_shape, leaf_with_inputs, string_id, dict(document, nodes=5)):
        with pytest.raises(GraphFormatError):
            sd.from_json(broken)


def test_to_latex_of_a_deep_tower_is_not_a_recursion_error():
    """SymPy's converter and printer recurse once per level: a 500-level power tower raised
    a bare RecursionError at the default limit."""
    x = sd.scalar("x")
    tower = x
    for _ in range(500):
        tower = x ** tower
    assert sd.to_latex(tower).count("x") == 501


def test_to_latex_too_deep_is_a_clear_error_and_the_limit_comes_back():
    """At a recursion limit of 100,000 a 20,000-level exp chain overflowed the C stack (a
    segfault); now the limit is 20,000, the error names the alternative, and the limit is
    restored."""
    import sys

    x = sd.scalar("x")
    chain = x
    for _ in range(20_000):
        chain = sd.exp(chain)
    before = sys.getrecursionlimit()
    with pytest.raises(sd.SymdiffError, match="nested too deeply"):
        sd.to_latex(chain)
    assert sys.getrecursionlimit() == before


def test_latex_definitions_of_a_tower_hvp_have_bounded_lines():
    """Single-use subexpressions were written out in full: the HVP of a 640-level power tower
    ended in one line of 148,000 characters, which SymPy builds and prints in time quadratic
    in its length (35 s), and a 140-level jvp raised RecursionError.  Now no line outgrows
    a bounded subexpression, whatever the depth."""
    from symdiff.sympy_bridge import latex_definitions

    x, v = sd.scalars("x v")
    longest, lengths = [], []
    for depth in (30, 60, 120):
        tower = x
        for _ in range(depth):
            tower = x ** tower
        text = latex_definitions({"Hv": sd.hvp(tower, [x], [v])[0], "J": sd.jvp(tower, [x], [v])})
        longest.append(max(len(line) for line in text.splitlines()))
        lengths.append(len(text))
    assert max(longest) < 1000 and longest[2] <= 1.2 * longest[0], longest
    assert lengths[2] < 2.2 * lengths[1] and lengths[1] < 2.2 * lengths[0], lengths


def test_latex_definition_names_never_collide_with_the_users_names():
    """A symbol t1 prints t_{1}, as the first definition did (t_{1} = e^{x} ... t_{1} x), and
    symbols t_1, u_1, w_1, q_1 took every prefix: a bare StopIteration."""
    from symdiff.sympy_bridge import latex_definitions

    x, t1 = sd.scalars("x t1")
    shared = sd.exp(sd.sin(x) + sd.cos(t1))
    lines = latex_definitions({"y": shared * shared + t1}, optimize=False).splitlines()
    assert lines[0].startswith("u_{1} = ") and lines[-1] == "y = t_{1} + u_{1}^{2}", lines
    taken = sd.scalars("t_1 u_1 w_1 q_1")
    shared = sd.exp(sd.sin(x) + sd.cos(taken[0] + taken[1] + taken[2] + taken[3]))
    lines = latex_definitions({"y": shared * shared}, optimize=False).splitlines()
    assert lines[0].startswith(r"\tau_{1} = ") and lines[-1] == r"y = \tau_{1}^{2}", lines
