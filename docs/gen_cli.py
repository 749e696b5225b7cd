"""Write docs/cli.md from real runs of the `symdiff` command.

    python docs/gen_cli.py           # rewrite the page
    python docs/gen_cli.py --check   # exit 1 (with a diff) if the page is not what the commands print

Every output on the page comes from running the command (``symdiff.cli.main``, what
the console script calls, in this process) in a scratch directory holding the
example model.py; the Python snippets run in this process too, each in a fresh
namespace.  In-process keeps the check cheap enough for the test suite
(tests/test_cli.py runs ``--check``).
"""

import contextlib
import difflib
import io
import os
import pathlib
import shlex
import sys
import tempfile

OUT = pathlib.Path(__file__).resolve().parent / "cli.md"
MODEL = """import symdiff as sd


def loss():
    W = sd.matrix("W", (2, 3))
    x = sd.vector("x", 3)
    y = sd.tanh(W @ x)
    return sd.sum(y * y) / 2
"""


@contextlib.contextmanager
def _captured(cwd: str):
    """Run in ``cwd`` with standard output and error captured (the same StringIO, in order)."""
    out, err, old = io.StringIO(), io.StringIO(), os.getcwd()
    os.chdir(cwd)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            yield out, err
    finally:
        os.chdir(old)


def run(cmd: str) -> str:
    from symdiff.cli import main

    args = shlex.split(cmd)
    assert args[0] == "symdiff"
    with _captured(CWD) as (out, err):
        try:
            status = main(args[1:])
        except SystemExit as exc:  # argparse's own errors
            status = exc.code
    status_line = f"\n(exit status {status})" if status else ""
    return f"```console\n$ {cmd}\n{(out.getvalue() + err.getvalue()).rstrip()}{status_line}\n```\n\n"


def py(code: str) -> str:
    with _captured(CWD) as (out, _):
        exec(compile(code, "<docs/cli.md>", "exec"), {"__name__": "__main__"})
    return f"```python\n{code.strip()}\n```\n\nprints\n\n```text\n{out.getvalue().rstrip()}\n```\n"


def build() -> str:
    """The page's text, from running every command on it."""
    global CWD
    with tempfile.TemporaryDirectory(prefix="symdiff-docs-") as CWD:
        pathlib.Path(CWD, "model.py").write_text(MODEL)
        return _page()


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    text = build()
    if "--check" not in argv:
        OUT.write_text(text)
        return 0
    old = OUT.read_text()
    if old == text:
        return 0
    diff = difflib.unified_diff(old.splitlines(), text.splitlines(), "docs/cli.md", "what the commands print",
                                lineterm="", n=1)
    sys.stderr.write("\n".join(diff) + "\n\ndocs/cli.md is stale: run python docs/gen_cli.py\n")
    return 1


def _page() -> str:
    doc = []
    w = doc.append
    w("""# The `symdiff` command

`symdiff` shows what symbol-to-symbol differentiation builds: the gradient is new
nodes appended to the same graph, and the command prints that graph as a register
listing, a table of values and adjoints, Graphviz DOT, JSON or LaTeX.  Every output
below is real: `python docs/gen_cli.py` regenerates this page by running them.

It is installed with the package (`pip install symdiff` or `pip install -e .`) as the
console script `symdiff`; `python -m symdiff` does the same.

## The main example

The gradient of e = (a + b)(b + 1) at a = 2, b = 1, with each node's value and
adjoint (the derivative of e with respect to that node), the table one would
otherwise draw by hand:

""")
    w(run('symdiff grad "e = (a + b) * (b + 1)" --wrt a,b --at a=2,b=1'))
    w("""
Read it top to bottom: the forward graph (inputs, then `%2 = add a b` ...), the
line `output e = %5`, then the nodes that `sd.grad` appended, each marked with
what appended it.  The listing is optimized by default (the rewrites of
`sd.optimize`): de/da is b + 1, which the forward graph already computes, so it is
`%4` itself and only one node is appended.  `--no-optimize` shows the graph exactly
as `build_grad` made it, with each node's note (`bprop of e (mul)`: a message sent by
the `mul` node's reverse rule; `grad of e wrt b`: the sum of the messages b
received):

""")
    w(run('symdiff grad "e = (a + b) * (b + 1)" --wrt a,b --no-optimize'))
    w("""
Nodes are numbered by their place in the listing (`%7` is the eighth node listed), not
by any global counter, so the same program always prints the same text: listings
can be diffed and kept as golden files.

## Watching `build_grad` work: `symdiff explain`

`explain` steps through the reverse sweep in the order it runs: for each node, its
consumers, the message each consumer's bprop sent, the sum that became the node's
grad-table entry, and the messages the node's own bprop sends on.  It calls the
same `backprop` that `sd.grad` uses (through a trace hook), so what it shows is what
happened.  With `--at` every node gets its value.

""")
    w(run('symdiff explain "e = (a + b) * (b + 1)" --wrt a,b --at a=2,b=1'))
    w("""
`--format dot` (or `json`) draws the same graph, with every message the sweep sent.
""")
    w("""
## Expressions, shapes and values

`EXPR` is a Python-like expression, optionally named (`e = ...`; the default name
is `f`).  It is parsed with Python's `ast` and checked against a whitelist; it is
never evaluated as Python.  Allowed: numbers, input names, `+ - * / ** @`, unary
minus, one comparison (`x > 0`, for `where`), calls of symdiff's NumPy-named
functions (also written `np.exp`, `sd.exp`), the methods `.sum .mean .max .min .prod
.reshape .transpose .astype .dot` and `.T`, keyword arguments such as `axis=0`, and
indexing with integer literals, slices, `None` and `...`.  `pi` and `inf` are
constants.  The functions:
""")
    from symdiff.parse import FUNCTIONS  # noqa: E402
    w("\n" + ", ".join(f"`{n}`" for n in sorted(FUNCTIONS)) + ".\n")
    w("""
A name that is not declared is a float64 scalar input.  `--var NAME:SHAPE`
declares a dtype and shape:

| `--var` | type |
|---|---|
| `x:scalar` (or nothing) | `f64[]` |
| `x:vector` | `f64[?]` (length known when values arrive) |
| `M:matrix` | `f64[?,?]` |
| `W:3x4`, `W:[3,4]` | `f64[3,4]` |
| `x:f32[n]`, `A:nx3` | `f32[?]`, `f64[?,3]` (a named size is known at run time) |
| `b:f32:vector`, `k:i64` | `f32[?]`, `i64[]` |

`--wrt a,b` names the inputs to differentiate with respect to (default: every
float input, in order of first use).  `--at a=2,b=1` gives values (literals only:
numbers, the words `inf`, `-inf` and `nan`, and lists such as `x=[1,2,3]`; a number
fills a fixed-shape input); `--at` may be repeated.  They are Python numbers to the
library, so the casting rule of `sd.function` applies: a number of the input's kind
or a narrower one is accepted and rounded (`1.5` for a float32 input, `2` for a
float64 one), one the dtype cannot hold is refused (`1e400`, which Python reads as
inf; 2**64 for an int64 input).

""")
    w(run('symdiff grad "sum(tanh(W @ x) * b)" --var W:2x3 --var x:f32[n] --var b:vector --wrt W,b --no-optimize'))
    w("\nWith arrays, the table shows each value (long arrays are abbreviated):\n\n")
    w(run('symdiff grad "sum(exp(v) * w)" --var v:2 --var w:2 --wrt v --at v=[0,1],w=[3,4]'))
    w("""
In a table, `-0` prints as `0`, and in one array an entry smaller than the dtype's
machine epsilon times the array's largest entry prints as `0`: `[1, 1.85e-17]` shows
as `[1. 0.]`, since the small entry is below the array's own rounding level.  Nothing
else is printed as `0`: a number such as sin(pi) = 1.2e-16 prints as it is, whatever
the other rows hold, and inputs, constants and the summary line print every entry
as given.

A word after `NAME:` must be a dtype or a shape keyword; anything else is an error
with a suggestion, not a size named after the word:

""")
    w(run('symdiff grad "sum(a * 2)" --var a:scaler'))
    w("""
## A Python function: `--file FILE.py:FUNCTION`

For programs too long for one line, write a function that builds and returns the
cost, and pass `--file FILE.py:FUNCTION`: `symdiff` imports the file and calls the
function (with no arguments).  Importing runs the file as Python would (it can do
anything Python can), so a file is run only when `--file` asks for it; an EXPR is
parsed, never run, and an EXPR that looks like `FILE.py:FUNCTION` is refused.  The
function declares its own inputs, so `--var` does not apply.  Here `model.py` is:

```python
""" + MODEL + """```

""")
    w(run('symdiff grad --file model.py:loss --wrt W'))
    w("""The last three nodes are the optimizer's form of an outer product (`%13 @ %15`, a
matmul whose contracted size is 1): an elementwise `mul`, plus `0.0` because a
matmul's sum starts from +0.0, so where a product is -0.0 the matmul gives +0.0 and
the `mul` alone would not.  The `add` is folded away only where the optimizer can
prove the product is never -0.0.

""")
    w(run('symdiff grad model.py:loss'))
    w("""
## Forward mode and second derivatives

`jvp` appends the forward-mode (tangent) nodes; the tangent inputs are named
`NAME_dot`, and with `--at` the table shows each node's tangent next to its value:

""")
    w(run('symdiff jvp "y = sin(x) * x" --var x:2 --at x=[0,1],x_dot=[1,1]'))
    w("""
`hvp` builds Hessian-vector products (direction inputs `v_NAME`) by
reverse-over-reverse or, with `--mode fwd-rev`, forward-over-reverse:

""")
    w(run('symdiff hvp "sum(x ** 3)" --var x:3 --at x=[1,2,3],v_x=[1,0,0]'))
    w(run('symdiff hvp "sum(x ** 3)" --var x:3 --mode fwd-rev'))
    w("""
`jacobian` builds the whole Jacobian of a vector expression as one node, by one
forward sweep per input element or one reverse sweep per output element
(`--mode auto` picks the fewer).  Shapes must be static.

""")
    w(run('symdiff jacobian "y = sin(x) * x" --var x:2 --at x=[0,1]'))
    w("""
`hessian` builds every block d2f/dwi dwj (i <= j) as graph; with `--at` it also
prints the assembled symmetric matrix.  Shapes must be static.

""")
    w(run('symdiff hessian "a * a * b" --wrt a,b --at a=1,b=2'))
    w(run('symdiff hessian "sum(x ** 3)" --var x:2 --at x=[1,2]'))
    w("""
## Formats

`--format text` (default), `dot`, `json` or `latex`; `-o FILE` writes to a file.

**DOT** (render with `dot -Tsvg grad.dot -o grad.svg`): inputs are yellow
ellipses, forward nodes white boxes, appended nodes blue boxes labelled with their
note; with `--at` each label also shows the node's value.

""")
    w(run('symdiff grad "e = a * exp(b)" --format dot --no-optimize'))
    w("""
**LaTeX** (via SymPy; the graph must be scalar-valued).  A subexpression the
results share, when it is longer than a few symbols, is written once on a line of its
own (`t_{1} = ...`) and used by name, so the text grows with the graph and not with
the formula written out in full (which, for derivatives, can grow much faster):

""")
    w(run('symdiff grad "x * sin(x)" --format latex'))
    w("""
**JSON** (the `symdiff-graph` schema, version 1; one node per line so documents
diff well; `sd.from_json` reads it back).  With `--at`, each node has an `"at"`
field holding its value.

""")
    w(run('symdiff grad "e = a * b" --wrt a --format json --at a=3,b=4'))
    w("""
The schema: an object with `"format": "symdiff-graph"`, `"version": 1`, `"nodes"`
and `"outputs"`.  Each node has `"id"` (its place in the listing), `"op"` (a name
from `sd.OPS`), `"dtype"` (`float64`, `float32`, `int64`, `bool`), `"shape"` (a list;
`null` for a size known only at run time) and `"inputs"` (ids, each smaller than the
node's own), plus `"name"` for inputs, `"value"` for constants (nested lists;
non-finite floats as the strings `"nan"`, `"inf"`, `"-inf"`), `"attrs"` for ops
with static attributes (tuples written as lists), `"note"` for nodes a pass
appended (`%k` meaning node k) and, optionally, `"at"`.  Each output is
`{"name", "node"}`.  The reader rebuilds every node through its op's shape rule and
checks the recorded dtype and shape.

## Errors and exit status

| status | meaning |
|---|---|
| 0 | success |
| 1 | the computation failed: shapes that do not fit, a value of the wrong shape, an error raised in your function |
| 2 | usage: bad options, an expression that does not parse, an unknown function or input name, a missing value |

An expression error prints the expression with a caret under the fault.  No Python
traceback is printed unless `--debug` is given.

""")
    w(run('symdiff grad "e = (a + b) * expp(b)"'))
    w(run('symdiff grad "sum(W @ x) + 1" --var W:2x3 --var x:4'))
    w("""
Sizes known only at run time are checked when the values arrive, and a mismatch
points at the part of the expression that failed:

""")
    w(run('symdiff grad "sum(W @ x) + 1" --var W:2xn --var x:[m] --at W=[[1,2],[3,4]],x=[1,2,3]'))
    w(run('symdiff grad "a * b" --at a=1'))
    w(run('symdiff grad "x[a]" --var x:3'))
    w(run('symdiff grad "a ** (10**400)" --at a=2'))
    w("""
A dense Jacobian or Hessian is one sweep per input (or output) element, so the command
refuses one whose result has more than 250,000 entries, or whose sweeps would compute
more than 20 million values, and says what to use instead:

""")
    w(run('symdiff jacobian "sum(exp(x))" --var x:8000 --mode fwd'))
    w(run('symdiff hessian "sum(x ** 3)" --var x:vector'))
    w("""
With `--at`, the command holds every listed node's value at once.  Before evaluating
anything it adds up their bytes from the static shapes (sizes given with `--var`) and
refuses, naming the largest intermediate and the part of the expression that makes
it, when they need more than half of the machine's physical memory (the numbers
depend on the machine, so none is shown here).

Limits: an expression is at most 2000 characters, brackets nest at most 64 deep
and at most 64 signs may follow each other (Python's parser recurses on nesting;
these limits keep it safe); longer programs belong in a file (`--file FILE.py:FUNCTION`).

## The same from Python

The command is a thin layer over library functions:

""")
    w(py('''import symdiff as sd
a, b = sd.scalars("a b")
e = (a + b) * (b + 1)
da, db = sd.grad(e, [a, b])
print(sd.to_text({"e": e, "de/da": da, "de/db": db}))
print(sd.to_sympy([da, db]))
print(sd.to_latex(db))
doc = sd.to_json({"e": e, "de/db": db})
print(sd.from_json(doc)["de/db"] is sd.optimize(db))'''))
    w("""
`sd.to_text`, `sd.to_dot` and `sd.to_json` take one expression, a list, or a
`{name: expression}` dict (names label the outputs and the notes), and optimize
first unless `optimize=False`.  `sd.to_sympy` and `sd.to_latex` work on
scalar-valued graphs.  `sd.from_sympy` imports a SymPy expression into the graph,
one node per distinct subexpression, so its gradient avoids `sympy.diff`'s
expression swell:

""")
    w(py('''import sympy, symdiff as sd
x = sympy.Symbol("x")
f = x
for _ in range(8):
    f = sympy.sin(f) * f + sympy.cos(f)
g = sd.from_sympy(f)
print(sd.node_count(g), sd.node_count(sd.grad(g, sd.scalar("x"))))
print(sympy.count_ops(sympy.diff(f, x)))'''))
    return "".join(doc)


if __name__ == "__main__":
    sys.exit(main())
