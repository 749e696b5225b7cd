"""The ``symdiff`` command and its safe expression parser.

Golden-file tests run the installed console script in a subprocess, as a user
would (each costs about a third of a second, so there is one per subcommand
and format).  Error paths run ``symdiff.cli.main`` in-process.  Regenerate the
golden files after an intended change with
``SYMDIFF_UPDATE_GOLDEN=1 pytest tests/test_cli.py`` and review the diff.
"""

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import symdiff as sd
from symdiff.cli import _EXAMPLES, main
from symdiff.parse import MAX_LENGTH, ExpressionError, parse_expression, parse_values, parse_var

GOLDEN = Path(__file__).parent / "golden"

MODEL = '''import symdiff as sd


def loss():
    W = sd.matrix("W", (2, 3))
    x = sd.vector("x", 3)
    y = sd.tanh(W @ x)
    return sd.sum(y * y) / 2


def broken():
    x = sd.vector("x", 2)
    return sd.sum(x @ sd.matrix("M", (3, 3)))


def not_an_expression():
    return 3
'''


def check_golden(name: str, text: str):
    path = GOLDEN / name
    if os.environ.get("SYMDIFF_UPDATE_GOLDEN"):
        path.write_text(text, encoding="utf-8")
    assert text == path.read_text(encoding="utf-8"), f"{name} differs from the golden file"


def command() -> list:
    """The installed console script next to this Python, else ``python -m symdiff.cli``."""
    script = Path(sys.executable).parent / "symdiff"
    return [str(script)] if script.exists() else [sys.executable, "-m", "symdiff.cli"]


def run(*args, cwd=None):
    return subprocess.run(command() + list(args), capture_output=True, text=True, cwd=cwd, timeout=120)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("model")
    (folder / "model.py").write_text(MODEL)
    (folder / "bad_syntax.py").write_text("def loss(:\n    pass\n")
    return folder


# ------------------------------------------------------- golden, via the script

GOLDEN_RUNS = {
    # The README's main command: the default (optimized) graph with values and adjoints.
    "cli_grad_seed.txt": ["grad", "e = (a + b) * (b + 1)", "--wrt", "a,b", "--at", "a=2,b=1"],
    "cli_grad_shapes.txt": ["grad", "sum(tanh(W @ x) * b)", "--var", "W:2x3", "--var", "x:f32[n]", "--var",
                            "b:vector", "--wrt", "W,b", "--no-optimize"],
    "cli_explain.txt": ["explain", "e = (a + b) * (b + 1)", "--wrt", "a,b", "--at", "a=2,b=1"],
    "cli_jvp.txt": ["jvp", "y = sin(x) * x", "--var", "x:2", "--at", "x=[0,1],x_dot=[1,1]", "--no-optimize"],
    "cli_hvp.txt": ["hvp", "sum(x ** 3)", "--var", "x:3", "--at", "x=[1,2,3],v_x=[1,0,0]", "--no-optimize"],
    "cli_hessian.txt": ["hessian", "a * a * b", "--wrt", "a,b", "--at", "a=1,b=2", "--no-optimize"],
    "cli_jacobian.txt": ["jacobian", "y = sin(x) * x", "--var", "x:2", "--at", "x=[0,1]"],
    "cli_latex.txt": ["grad", "x * sin(x)", "--format", "latex"],
}


@pytest.mark.parametrize("name", GOLDEN_RUNS)
def test_golden_subcommand(name):
    result = run(*GOLDEN_RUNS[name])
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    check_golden(name, result.stdout)


def test_golden_function_in_a_file(model_dir):
    result = run("grad", "--file", "model.py:loss", "--wrt", "W", "--no-optimize", cwd=model_dir)
    assert result.returncode == 0, result.stderr
    check_golden("cli_file.txt", result.stdout)


def test_golden_dot_written_to_a_file(tmp_path):
    result = run("grad", "e = a * exp(b)", "--format", "dot", "--no-optimize", "-o", "out.dot", cwd=tmp_path)
    assert result.returncode == 0 and result.stdout == "", result.stderr
    check_golden("cli_grad.dot", (tmp_path / "out.dot").read_text())


def test_exit_statuses_and_no_traceback():
    syntax = run("grad", "(a + b) * expp(b)")
    assert syntax.returncode == 2
    check_golden("cli_error_unknown_function.txt", syntax.stderr)
    failure = run("grad", "sum(W @ x)", "--var", "W:2x3", "--var", "x:4")
    assert failure.returncode == 1
    assert "contraction" in failure.stderr and "Traceback" not in failure.stderr
    debug = run("grad", "sum(W @ x)", "--var", "W:2x3", "--var", "x:4", "--debug")
    assert debug.returncode == 1 and "Traceback (most recent call last)" in debug.stderr


def test_python_dash_m_and_version():
    result = subprocess.run([sys.executable, "-m", "symdiff", "--version"], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0
    assert result.stdout.strip() == f"symdiff {sd.__version__}"


# ----------------------------------------------------------- in-process checks


def call(capsys, *argv):
    status = main(list(argv))
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    return status, out, err


@pytest.mark.parametrize("subcommand", ["grad", "jvp", "hvp", "jacobian", "hessian", "explain"])
def test_help_has_examples_for_every_subcommand(capsys, subcommand):
    with pytest.raises(SystemExit) as exit_info:
        main([subcommand, "--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    assert "examples:" in text and f"symdiff {subcommand} " in text.split("examples:")[1]


def test_main_help_lists_every_subcommand_example(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    text = capsys.readouterr().out
    for subcommand in ["grad", "jvp", "hvp", "jacobian", "hessian", "explain"]:
        assert f"  symdiff {subcommand} " in text


def test_json_output_reads_back_with_values(capsys):
    status, out, _ = call(capsys, "grad", "e = (ja + jb) * (jb + 1)", "--format", "json", "--at", "ja=2,jb=1")
    assert status == 0
    document = json.loads(out)
    outputs = sd.from_json(document)
    assert list(outputs) == ["e", "de/dja", "de/djb"]
    values = sd.evaluate(list(outputs.values()), {"ja": 2.0, "jb": 1.0})
    assert [float(v) for v in values] == [6.0, 2.0, 5.0]
    at = {node["id"]: node["at"] for node in document["nodes"]}
    assert [at[o["node"]] for o in document["outputs"]] == [6.0, 2.0, 5.0]


def test_table_matches_the_reference_evaluator(capsys):
    status, out, _ = call(capsys, "grad", "sum(exp(v) * w)", "--var", "v:2", "--var", "w:2", "--wrt", "v",
                          "--at", "v=[0,1],w=[3,4]")
    assert status == 0
    assert out.splitlines()[-1] == "f = 13.8731, df/dv = [ 3.     10.8731]"


def test_jacobian_modes_agree_with_the_reference(capsys):
    tables = []
    for mode in ("fwd", "rev"):
        status, out, _ = call(capsys, "jacobian", "W @ jx", "--var", "W:2x3", "--var", "jx:3", "--wrt", "jx",
                              "--mode", mode, "--at", "W=[[1,2,3],[4,5,6]],jx=[1,1,1]")
        assert status == 0
        tables.append(out.splitlines()[-1])
    assert tables[0] == tables[1] and tables[0].endswith("df/djx = [[1. 2. 3.] [4. 5. 6.]]")


def test_hessian_of_a_vector_input(capsys):
    status, out, _ = call(capsys, "hessian", "sum(hx ** 3)", "--var", "hx:2", "--at", "hx=[1,2]")
    assert status == 0
    assert out.rstrip().endswith("[[ 6.  0.]\n [ 0. 12.]]")


def test_hvp_modes_agree(capsys):
    outs = []
    for mode in ("rev-rev", "fwd-rev"):
        status, out, _ = call(capsys, "hvp", "sum(sin(hv) * hv)", "--var", "hv:2", "--mode", mode,
                              "--at", "hv=[0.5,1],v_hv=[1,2]")
        assert status == 0
        outs.append(out.splitlines()[-1])
    assert outs[0] == outs[1]


@pytest.mark.parametrize("argv, status, message", [
    (["grad", "a +"], 2, "syntax error"),
    (["grad", "exp"], 2, "exp is a function"),
    (["grad", "a.__class__"], 2, "attribute .__class__ is not supported"),
    (["grad", "__import__('os').system('true')"], 2, "unknown method .system()"),
    (["grad", "__import__('os')"], 2, "unknown function '__import__'"),
    (["grad", "(lambda: a)()"], 2, "only symdiff functions can be called"),
    (["grad", "a if a > 0 else 0"], 2, "use where(condition, x, y)"),
    (["grad", "a // 2"], 2, "floor division"),
    (["grad", "x[a]", "--var", "x:3"], 2, "indices must be integer literals"),
    (["grad", "exp(a, a)"], 2, "exp(): too many positional arguments"),
    (["grad", "a * b", "--wrt", "c"], 2, "no input named 'c'"),
    (["grad", "a * b", "--at", "c=1"], 2, "no input named 'c'"),
    (["grad", "a * b", "--at", "a=1"], 2, "--at gives no value for b"),
    (["grad", "a", "--at", "a=__import__('os')"], 2, "is not a number"),
    (["grad", "a", "--at", "a=[1,[2]]"], 2, "rectangular"),
    (["grad", "a", "--at", "oops"], 2, "use NAME=VALUE"),
    (["grad", "x", "--var", "x:f32[n"], 2, "bad --var"),
    (["grad", "x", "--var", "x:3y4"], 2, "bad --var"),
    (["grad", "x", "--var", "x:vector"], 1, "needs a float scalar"),
    (["grad", "sum(W @ x)", "--var", "W:2x3", "--var", "x:4"], 1, "contraction dimensions differ"),
    (["grad", "sum(x)", "--var", "x:3", "--at", "x=[1,2]"], 1, "has type f64[3] but the value has shape (2,)"),
    (["grad", "a = a * 2"], 2, "also an input's name"),
    (["grad", "k * 2.0", "--var", "k:i64", "--wrt", "k"], 1, "cannot differentiate with respect to k of type i64[]"),
    (["jvp", "a * b", "--at", "a=1,b=2"], 2, "a_dot"),
    (["hvp", "v_a * a", "--wrt", "a"], 2, "already an input"),
    (["grad", "a", "--wrt", ","], 2, "--wrt names no inputs"),
    (["explain", "a * a", "--format", "latex"], 2, "explain prints text, dot or json"),
    (["grad", "a" * (MAX_LENGTH + 1)], 2, "characters long"),
    (["grad", "(" * 100 + "a" + ")" * 100], 2, "nested more than"),
    (["grad", "a+" + "-" * 500 + "a"], 2, "signs in a row"),
    (["grad", "+".join(["a"] * 900)], 0, ""),  # long but legal: a flat sum of 900 terms
    (["grad", "+".join(f"sin(x{i})" for i in range(100))], 0, ""),  # 100 bracket pairs, never nested
])
def test_error_paths(capsys, argv, status, message):
    got, out, err = call(capsys, *argv)
    assert got == status, err
    assert message in err


def test_caret_points_at_the_fault(capsys):
    status, _, err = call(capsys, "grad", "e = (a + b) * expp(b)")
    assert status == 2
    lines = err.splitlines()
    assert lines[1] == "    e = (a + b) * expp(b)"
    assert lines[2] == "                  ^^^^"
    status, _, err = call(capsys, "grad", "sum(W @ x) + 1", "--var", "W:2x3", "--var", "x:4")
    assert status == 1
    assert err.splitlines()[1:] == ["    sum(W @ x) + 1", "        ^^^^^"]
    assert "(at " not in err  # no origin pointing into the command itself


def test_caret_in_a_long_expression_shows_a_window(capsys):
    terms = [f"sin(x{i})" for i in range(60)]
    text = "+".join(terms[:40] + ["expp(x1)"] + terms[40:])
    status, _, err = call(capsys, "grad", text)
    assert status == 2
    source, caret = err.splitlines()[1:3]
    assert source.startswith("    ...") and source.endswith("...") and len(source) == 4 + 3 + 100 + 3
    assert source[caret.index("^"):].startswith("expp(x1)") and caret.strip() == "^^^^"


def test_user_file_errors(capsys, model_dir):
    model = str(model_dir / "model.py")
    cases = [
        (["grad", "--file", model + ":broken"], 1, "model.py:13: error in broken(): ShapeError"),
        (["grad", "--file", model + ":not_an_expression"], 1, "must return one symdiff expression"),
        (["grad", "--file", model + ":nope"], 2, "has no function 'nope' (functions: broken, loss, not_an_expression)"),
        (["grad", "--file", model + ":loss", "--var", "x:3"], 2, "--var has no effect"),
        (["grad", "--file", str(model_dir / "missing.py") + ":loss"], 2, "no such file"),
        (["grad", "--file", str(model_dir / "bad_syntax.py") + ":loss"], 2, "bad_syntax.py:1: syntax error"),
    ]
    for argv, status, message in cases:
        got, _, err = call(capsys, *argv)
        assert (got, message in err) == (status, True), err


def test_output_file_is_written(capsys, tmp_path):
    target = tmp_path / "grad.txt"
    status, out, _ = call(capsys, "grad", "ofa * ofa", "-o", str(target))
    assert status == 0 and out == ""
    assert target.read_text().splitlines()[-1] == "output df/dofa = %2"


# ------------------------------------------------------------------ the parser


@pytest.mark.parametrize("spec, expected", [
    ("x:vector", ("x", "float64", (None,))),
    ("W:3x4", ("W", "float64", (3, 4))),
    ("x:f32[n]", ("x", "float32", (None,))),
    ("b:f32:vector", ("b", "float32", (None,))),
    ("M:matrix", ("M", "float64", (None, None))),
    ("s:scalar", ("s", "float64", ())),
    ("k:i64", ("k", "int64", ())),
    ("T:[2,?,n]", ("T", "float64", (2, None, None))),
    ("A:nx3", ("A", "float64", (None, 3))),
    ("z:float32[]", ("z", "float32", ())),
])
def test_parse_var(spec, expected):
    assert parse_var(spec) == expected


def test_parse_values_reads_literals_only(tmp_path):
    assert parse_values("a=2, x=[[1, 2], [3, 4]], t=True") == {"a": 2, "x": [[1, 2], [3, 4]], "t": True}
    marker = tmp_path / "ran"
    with pytest.raises(ExpressionError):
        parse_values(f"a=__import__('os').system('touch {marker}')")
    assert not marker.exists()


def test_parser_builds_the_same_nodes_as_python():
    W, x = sd.matrix("pW2", (2, 3)), sd.vector("px2", 3)
    symbols = {"W": W, "x": x}
    built = parse_expression("np.sum(sd.tanh(W @ x)[::-1] ** 2, axis=0) - x.T.sum() / 3 + pi", symbols)
    assert built is sd.sum(sd.tanh(W @ x)[::-1] ** 2, axis=0) - x.T.sum() / 3 + np.pi
    assert parse_expression("where(x > 0, x, -x)[-1]", symbols) is sd.where(x > 0, x, -x)[-1]


def test_parser_never_runs_code(tmp_path):
    marker = tmp_path / "ran"
    for text in [f"__import__('os').system('touch {marker}')", f"[x for x in open('{marker}', 'w')]",
                 "(lambda: 1)()", "x.__class__.__mro__"]:
        with pytest.raises(ExpressionError):
            parse_expression(text, {"x": sd.vector("pnx")})
    assert not marker.exists()


def test_every_help_example_runs(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "model.py").write_text(MODEL.replace('"W"', '"w"'))  # the example says --wrt w
    lines = [line.strip() for text in _EXAMPLES.values() for line in text.splitlines()[1:]]
    assert len(lines) >= 10
    for line in lines:
        argv = shlex.split(line)
        assert argv[0] == "symdiff"
        status, _, err = call(capsys, *argv[1:])
        assert status == 0, f"{line}: {err}"
    assert (tmp_path / "grad.dot").read_text().startswith("digraph symdiff {")


def test_dense_derivatives_of_huge_inputs_are_refused_clearly(capsys):
    status, _, err = call(capsys, "hessian", "sum(hx * hx)", "--var", "hx:20000")
    assert status == 2 and "sparse_hessian" in err
    status, _, err = call(capsys, "jacobian", "sin(jx)", "--var", "jx:1000")
    assert status == 2 and "sparse_jacobian" in err


# --------------------------------------------------- issue 15: rough edges found


def test_dense_derivatives_need_static_sizes_and_say_how(capsys):
    for command in ("hessian", "jacobian"):
        status, _, err = call(capsys, command, "sum(sx ** 3)" if command == "hessian" else "sin(sx)",
                              "--var", "sx:vector")
        assert status == 2, err
        assert "needs static sizes" in err and "--var sx:3" in err and "NoneType" not in err


def test_forward_jacobian_is_guarded_on_the_work_of_its_sweeps(capsys):
    status, _, err = call(capsys, "jacobian", "sum(exp(gx))", "--var", "gx:8000", "--mode", "fwd")
    assert status == 2 and "8,000 fwd sweeps" in err and "--mode rev needs 1 sweep" in err
    status, _, err = call(capsys, "jacobian", "exp(gx) * gx[0]", "--var", "gx:4000")  # square: no cheap mode
    assert status == 2 and "sd.sparse_jacobian" in err and "MemoryError" not in err
    status, out, _ = call(capsys, "jacobian", "sum(exp(gx))", "--var", "gx:8000", "--mode", "rev")
    assert status == 0 and out


def test_run_time_shape_errors_point_into_the_expression(capsys):
    status, _, err = call(capsys, "grad", "sum(rw @ rx) + 1", "--var", "rw:2xn", "--var", "rx:[m]",
                          "--at", "rw=[[1,2],[3,4]],rx=[1,2,3]")
    assert status == 1
    lines = err.splitlines()
    assert "contracted sizes differ: 2" in lines[0] and "gufunc" not in err and "bin/symdiff" not in err
    assert lines[1:] == ["    sum(rw @ rx) + 1", "        ^^^^^^^"]
    status, _, err = call(capsys, "grad", "max(ex)", "--var", "ex:vector", "--at", "ex=[]")
    assert status == 1 and "empty axis" in err and err.splitlines()[2] == "    ^^^^^^^"


@pytest.mark.parametrize("spec, suggestion", [("a:scaler", "a:scalar"), ("a:f23", "a:f32"), ("v:vectr", "v:vector"),
                                              ("n:size", "n:[size]")])
def test_unknown_type_words_are_errors_with_a_suggestion(capsys, spec, suggestion):
    status, _, err = call(capsys, "grad", "sum(a * 2)", "--var", spec)
    assert status == 2 and "unknown type" in err and suggestion in err


@pytest.mark.parametrize("argv, status, message", [
    (["grad", "na ** (10**400)", "--at", "na=2"], 1, "10 ** 400 is too large for float64"),
    (["grad", "na * 1e400"], 2, "too large for float64 (Python reads it as inf"),
    (["grad", "na * (10**308 * 10.0)"], 1, "too large for float64 (it would be inf)"),
    (["grad", "\uff58 * 2", "--var", "x:3"], 2, "Python reads as 'x'"),
    (["grad", "sum(x * 2)", "--var", "\uff58:3"], 2, "--var '\uff58'"),
    (["grad", "na * 2", "--at", "\uff4ea=2"], 2, "--at '\uff4ea'"),
    (["grad", "na *\x00 2"], 2, "NUL byte"),
])
def test_numbers_names_and_bytes_that_were_silently_changed(capsys, argv, status, message):
    got, _, err = call(capsys, *argv)
    assert (got, message in err) == (status, True), err


def test_a_nul_byte_in_a_file_names_its_line(capsys, tmp_path):
    path = tmp_path / "nul.py"
    path.write_bytes(b"import symdiff\n\n\x00\n")
    status, _, err = call(capsys, "grad", "--file", f"{path}:loss")
    assert status == 2 and f"{path}:3: the file contains a NUL byte" in err and "None" not in err


def test_memory_for_huge_sizes_is_the_users_size_with_the_bytes(capsys):
    status, _, err = call(capsys, "grad", "sum(mx)", "--var", "mx:100000x100000", "--at", "mx=1")
    assert status == 1 and "internal error" not in err and "80.0 GB" in err and "--var" in err


def test_files_run_only_when_asked(capsys, model_dir, monkeypatch):
    monkeypatch.chdir(model_dir)
    status, _, err = call(capsys, "grad", "model.py:loss")
    assert status == 2 and "--file model.py:loss" in err and "runs the file" in err
    status, out, _ = call(capsys, "grad", "--file", "model.py:loss", "--wrt", "W")
    assert status == 0 and "output dloss/dW" in out
    status, _, err = call(capsys, "grad", "a", "--file", "model.py:loss")
    assert status == 2 and "not both" in err


def test_latex_of_a_power_tower_is_linear_in_its_depth(tmp_path):
    """The gradient of x**x**...**x written out in full is quadratic in the depth (55 s
    at 200 levels); with shared subexpressions named, the text grows linearly."""
    lengths = []
    for depth in (50, 100, 200):
        target = tmp_path / f"tower{depth}.tex"
        assert main(["grad", "x" + "**x" * depth, "--format", "latex", "-o", str(target)]) == 0
        lengths.append(len(target.read_text()))
    # doubling the depth doubles the text (quadratic would be 4x); pow's slopes as plain nodes
    # made it 18x shorter (5,331 characters at depth 50, was 93,821), so the growing names
    # (t_{9} -> t_{100}) weigh more: 2.05x per doubling
    assert lengths[2] < 2.2 * lengths[1] and lengths[1] < 2.2 * lengths[0]


def test_explain_draws_dot_and_json(capsys):
    status, out, _ = call(capsys, "explain", "e = (xa + xb) * (xb + 1)", "--format", "dot", "--at", "xa=2,xb=1")
    assert status == 0 and out.startswith("digraph symdiff {") and "bprop of e (mul)" in out and "= 6" in out
    status, out, _ = call(capsys, "explain", "e = (xa + xb) * (xb + 1)", "--format", "json")
    assert status == 0 and sd.from_json(out)["de/dxb"] is not None


def test_value_tables_hide_signed_zeros_and_rounding_noise(capsys):
    status, out, _ = call(capsys, "grad", "sum(sin(ta) * tb)", "--var", "ta:2", "--var", "tb:2",
                          "--at", "ta=[3.141592653589793,1.5707963267948966],tb=[-0.0,1]")
    assert status == 0
    table = out.splitlines()[1:-1]  # between the title and the summary
    assert not any(" -0 " in line + " " or "e-16" in line or "-0." in line for line in table), table
    assert "[0. 1.]" in table[2]  # sin at [pi, pi/2]: 1.2e-16 is below the array's own rounding level
    status, out, _ = call(capsys, "hvp", "sum(hx3 ** 3)", "--var", "hx3:3", "--at", "hx3=[1,2,3],v_hx3=[1,0,0]")
    assert status == 0 and "%?" not in out and "a node not shown" in out


def test_tables_for_vector_inputs_stay_narrow(capsys):
    status, out, _ = call(capsys, "grad", "sum(sin(wx) * wx ** 3)", "--var", "wx:100", "--at", "wx=1.5")
    assert status == 0
    assert max(len(line) for line in out.splitlines()) <= 120


def test_value_table_of_a_power_with_a_variable_exponent_shows_the_values(capsys):
    """pow's derivative rule held the constant sqrt(max) = 1.3e154, which set the value
    column's scale: every value printed as 0."""
    from symdiff.cli import main

    main(["grad", "a ** b", "--at", "a=2", "--at", "b=3"])
    rows = {line.split()[0]: line.split() for line in capsys.readouterr().out.splitlines() if line.strip()}
    assert rows["a"][3] == "2" and rows["b"][3] == "3" and rows["%2"][5] == "8"


# ------------------------------------------- issue 15 review: CLI defects at main


def _rows(out: str) -> dict:
    """The table's rows by node label: {label: cells}."""
    return {line.split()[0]: line.split() for line in out.splitlines()[1:] if line.strip()}


def test_at_values_follow_the_librarys_casting_policy(capsys):
    """--at parsed to NumPy arrays first, so a float32 input refused 1.5 and [1, 2]
    (float64, int64 arrays), which sd.function accepts as Python numbers."""
    status, out, err = call(capsys, "grad", "y = ca * ca", "--var", "ca:f32", "--wrt", "ca", "--at", "ca=1.5")
    assert status == 0, err
    assert out.splitlines()[-1] == "y = 2.25, dy/dca = 3"
    assert _rows(out)["ca"][2] == "f32[]"
    status, out, err = call(capsys, "grad", "y = sum(cx * cx)", "--var", "cx:f32[2]", "--wrt", "cx", "--at", "cx=[1,2]")
    assert status == 0, err
    assert out.splitlines()[-1] == "y = 5, dy/dcx = [2. 4.]"
    x32 = sd.vector("cx", 2, "float32")
    assert sd.evaluate(sd.sum(x32 * x32), {x32: [1, 2]}) == 5  # the library's policy, which the CLI now shares
    for at in ("ck=18446744073709551615", "ck=[1,18446744073709551615]"):
        status, _, err = call(capsys, "grad", "sum(ck) * 1.0 + cb", "--var",
                              "ck:i64" if "[" not in at else "ck:i64[2]", "--wrt", "cb", "--at", at + ",cb=1")
        assert status == 1 and "18446744073709551615 does not fit int64" in err, err
        assert "uint64" not in err and "float64" not in err and "astype" not in err, err


@pytest.mark.parametrize("at", ["bx=1e400", "bx=[-1e400,1]", "bx=[1, -1E+400]"])
def test_at_numbers_that_python_reads_as_inf_are_refused(capsys, at):
    status, _, err = call(capsys, "grad", "sum(bx * bx)", "--var", "bx:2", "--at", at)
    assert status == 2 and "too large for float64 (Python reads it as inf; write inf" in err, err


def test_at_accepts_inf_and_nan_by_name(capsys):
    status, out, err = call(capsys, "grad", "sum(bx * 2)", "--var", "bx:3", "--at", "bx=[nan,inf,-inf]")
    assert status == 0, err
    assert out.splitlines()[-1] == "f = nan, df/dbx = [2. 2. 2.]" and "[ nan  inf -inf]" in out
    assert parse_values("a=-inf, b=[nan, +inf]") == {"a": -np.inf, "b": [pytest.approx(np.nan, nan_ok=True), np.inf]}


def test_memory_of_intermediates_is_checked_before_evaluating(capsys):
    """sum(x @ x.T) with x:30000x3 was OOM-killed at 19.9 GB: only the inputs' sizes
    were checked.  8 TB here, so the test never allocates it."""
    status, _, err = call(capsys, "grad", "sum(mx[:, None] * mx[None, :])", "--var", "mx:1000000", "--at", "mx=1")
    lines = err.splitlines()
    assert status == 1 and lines[0].startswith("symdiff: error: the intermediate mul (in a derivative of it), of "
                                               "shape (1000000, 1000000) and dtype float64, needs 8.0 TB"), err
    assert "--var" in lines[0] and lines[1:] == ["    sum(mx[:, None] * mx[None, :])", "        ^^^^^^^^^^^"], err
    status, _, err = call(capsys, "jvp", "mx @ mx.T", "--var", "mx:1000000x2", "--at", "mx=1,mx_dot=0")
    assert status == 1 and "the intermediate matmul, of shape (1000000, 1000000)" in err and "8.0 TB" in err, err
    assert err.splitlines()[1:] == ["    mx @ mx.T", "    ^^^^^^^^^"], err


def test_memory_of_all_values_held_at_once_is_checked(capsys, monkeypatch):
    """Each node fits but the listing's values together do not: the limit is lowered
    so the graph stays small."""
    from symdiff import cli

    monkeypatch.setattr(cli, "_memory_limit", lambda: 3_000_000)
    status, _, err = call(capsys, "grad", "sum(exp(wx) * wx)", "--var", "wx:200000", "--at", "wx=1")
    assert status == 1 and "values the evaluation holds at once need" in err and "together" in err, err
    assert "the largest, the" in err and "1.6 MB" in err, err


def test_memory_of_run_time_sizes_is_checked_once_the_values_are_bound(capsys, monkeypatch):
    """Sizes known only from --at were not counted: x:vector with 20,000 values started a
    3.2 GB outer product (the limit is lowered so the graph stays small)."""
    from symdiff import cli

    monkeypatch.setattr(cli, "_memory_limit", lambda: 100_000)
    ones = ",".join(["1"] * 200)
    status, _, err = call(capsys, "grad", "sum(x[:,None]*x[None,:])", "--var", "x:vector", "--at", f"x=[{ones}]")
    assert status == 1 and "of shape (200, 200)" in err and "320.0 kB" in err and "with --at" in err, err
    status, out, _ = call(capsys, "grad", "sum(x*x)", "--var", "x:vector", "--at", "x=[1,2]")
    assert status == 0 and "df/dx = [2. 4.]" in out


def test_inputs_and_summaries_print_every_entry(capsys):
    """format_value's noise rule zeroed what the user typed: x = [1e20, 1] printed as
    [1e20, 0] in the title and the input's row."""
    status, out, _ = call(capsys, "grad", "sum(x*w)", "--var", "x:2", "--var", "w:2", "--wrt", "x",
                          "--at", "x=[1e20,1],w=[1,1]")
    assert status == 0 and "at x = [1.e+20 1.e+00]" in out
    assert [line for line in out.splitlines() if line.startswith("x ")][0].count("1.e+00") == 1


def test_out_of_memory_says_the_bytes(capsys, monkeypatch):
    from symdiff import cli

    try:
        np.empty((10**6, 10**6, 10**6))  # NumPy refuses at once: 8e18 bytes
    except MemoryError as exc:
        error = exc
    monkeypatch.setattr(cli, "_memory_limit", lambda: None)

    def fail(nodes, values):
        raise error

    monkeypatch.setattr(cli, "_evaluate_nodes", fail)
    status, _, err = call(capsys, "grad", "sum(ox)", "--var", "ox:3", "--at", "ox=1")
    assert status == 1 and "out of memory (an array of shape" in err and "needs 8000000.0 TB" in err, err


def test_tables_never_print_a_value_as_zero_because_of_other_rows(capsys):
    status, out, _ = call(capsys, "grad", "za * 1e20 + zb", "--wrt", "za,zb", "--at", "za=1,zb=3")
    rows = _rows(out)
    assert status == 0 and rows["za"][-2:] == ["1", "1e+20"] and rows["zb"][-2:] == ["3", "1"], out
    assert rows["%4"][-2:] == ["1e+20", "1"] and rows["%5"][-1] == "1", out  # the output's adjoint; the constant 1.0
    status, out, _ = call(capsys, "grad", "y = zx * 1e20", "--at", "zx=1e-20")
    assert status == 0 and _rows(out)["%2"][-2:] == ["1", "1"] and out.splitlines()[-1].startswith("y = 1,"), out
    status, out, _ = call(capsys, "grad", "sum(zv * zv)", "--var", "zv:3", "--at", "zv=[1e-20,0,1.85e-17]")
    assert status == 0 and "[2.0e-20 0.0e+00 3.7e-17]" in out.splitlines()[2], out


def test_format_value_zeroes_only_below_its_own_arrays_rounding_level():
    from symdiff.printers import format_value

    assert format_value(-0.0) == "0" and format_value(1.85e-17) == "1.85e-17" and format_value(1e-300) == "1e-300"
    assert format_value(np.array([1.0, 1.85e-17, -0.0])) == "[1. 0. 0.]"
    assert format_value(np.array([1.0, 3e-16])) == "[1.e+00 3.e-16]"  # above float64's epsilon: kept
    assert format_value(np.array([1.0, 1e-9], np.float32)) == "[1. 0.]"  # float32's epsilon is 1.2e-7
    assert format_value(np.array([1e-20, 1e-30])) == "[1.e-20 1.e-30]"
    assert format_value(np.array([np.inf, 1.0])) == "[inf  1.]"  # the scale is the finite entries'


def test_cli_page_is_what_the_commands_print(capsys, monkeypatch, tmp_path):
    """docs/cli.md was stale (a matmul the optimizer now writes as mul + 0.0):
    gen_cli.py --check fails on a stale page.  The real page is checked in a fresh
    process, as CI or a person would run it (about 3 s)."""
    import importlib.util

    path = Path(__file__).resolve().parent.parent / "docs" / "gen_cli.py"
    result = subprocess.run([sys.executable, str(path), "--check"], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    spec = importlib.util.spec_from_file_location("gen_cli", path)
    gen_cli = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gen_cli)
    text = gen_cli.OUT.read_text()
    stale = tmp_path / "cli.md"
    stale.write_text(text.replace("%18 = add %16 %17", "%16 = matmul %13 %15"))
    monkeypatch.setattr(gen_cli, "OUT", stale)
    monkeypatch.setattr(gen_cli, "build", lambda: text)
    assert gen_cli.main(["--check"]) == 1 and "docs/cli.md is stale" in capsys.readouterr().err
    assert gen_cli.main([]) == 0 and gen_cli.main(["--check"]) == 0 and stale.read_text() == text


@pytest.mark.parametrize("argv, message", [
    (["grad", "fa * 2", "--var", "fa:"], "bad --var 'fa:': no type after the colon"),
    (["grad", "sum(fa * 2)", "--var", "fa:99999999999999999999"], "fa would have 99,999,999,999,999,999,999 elements"),
    (["grad", "sum(fa * 2)", "--var", "fa:100000000000x100000000000"], "fa would have"),
    (["grad", "x * 2", "--wrt", "\uff58"], "--wrt '\uff58': the name has characters Python reads as 'x'"),
])
def test_var_and_wrt_mistakes_are_refused_at_parse_time(capsys, argv, message):
    status, _, err = call(capsys, *argv)
    assert status == 2 and message in err and "Maximum allowed" not in err, err


def test_a_misspelt_type_word_suggests_only_the_word(capsys):
    status, _, err = call(capsys, "grad", "sum(a * 2)", "--var", "a:scaler")
    assert status == 2 and "did you mean a:scalar?" in err and "[scaler]" not in err, err
    status, _, err = call(capsys, "grad", "sum(a * 2)", "--var", "a:3y")
    assert status == 2 and "[3y]" not in err, err


def test_jacobian_sweeps_count_only_what_depends_on_the_variable(capsys):
    """W (160,000 values) was counted as recomputed in each of the 400 sweeps."""
    status, out, err = call(capsys, "jacobian", "exp(jW @ jx)", "--var", "jW:400x400", "--var", "jx:400",
                            "--wrt", "jx")
    assert status == 0 and "output df/djx" in out, err
    for n in ("8000", "250000"):
        status, _, err = call(capsys, "jacobian", "sum(exp(gx))", "--var", f"gx:{n}", "--mode", "fwd")
        assert status == 2 and "--mode rev needs 1 sweep" in err and "depend on gx" in err, err
