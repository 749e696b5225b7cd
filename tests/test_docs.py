"""The docs stay true: every Python snippet in docs/*.md and the README runs as written,
in order, page by page, and prints what the page says it prints; docs/api.md matches
the docstrings.

A page shows output as a ```text block right after a ```python block (with a line
"prints" between them, or nothing); the snippet's standard output must equal it,
with ``...`` matching anything (doctest's ELLIPSIS), for the few things that depend
on where the code runs.  Snippets that cannot run (excerpts of symdiff's own source,
outlines with ``...`` placeholders) are listed in ``NOT_RUN`` with what is checked
instead.
"""

import contextlib
import doctest
import io
import pathlib
import re
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent

# Pages whose code is checked elsewhere: api.md is generated from the docstrings, whose
# examples run as doctests (pytest --doctest-modules), and is compared below.
ELSEWHERE = {"docs/api.md"}

# (page, the block's first line) -> how the block is checked instead of being run.
NOT_RUN = {
    ("docs/architecture.md", 'SIN = elementwise("sin", np.sin, (lambda d, out, x: d * F.cos(x),), "math.sin({0})", '
                             '(ANYWHERE,))'): "excerpt",
    ("docs/architecture.md", "from symdiff.testing import check_grads, check_jvp, check_hvp"): "outline",
}

# Imports a page's snippets take for granted (architecture.md quotes fragments).
PRELUDE = {"docs/architecture.md": "import numpy as np\nimport symdiff as sd\n"}

BLOCK = re.compile(r"```python\n(.*?)```(?:\s*\n(?:prints\s*\n)?\s*```text\n(.*?)```)?", flags=re.S)


def pages():
    return sorted(str(p.relative_to(ROOT)) for p in (ROOT / "docs").glob("*.md")) + ["README.md"]


def python_blocks(page: str) -> list:
    """[(code, expected output or None)] in page order."""
    return [(code, printed) for code, printed in BLOCK.findall((ROOT / page).read_text())]


def _matches(want: str, got: str) -> bool:
    checker = doctest.OutputChecker()
    return checker.check_output(want, got, doctest.ELLIPSIS)


@pytest.mark.parametrize("page", [p for p in pages() if p not in ELSEWHERE])
def test_code_blocks_run_in_order_and_print_what_the_page_shows(page):
    namespace = {"__name__": "__docs__"}
    exec(PRELUDE.get(page, ""), namespace)
    blocks = python_blocks(page)
    if page in ("docs/tutorial.md", "README.md", "docs/cli.md"):
        assert blocks, f"{page} has no python code blocks"
    for number, (code, printed) in enumerate(blocks):
        first = code.splitlines()[0] if code.strip() else ""
        how = NOT_RUN.get((page, first))
        if how == "excerpt":  # a line of symdiff's source: it must still be there, verbatim
            source = "".join(p.read_text() for p in (ROOT / "symdiff").rglob("*.py"))
            assert all(line in source for line in code.strip().splitlines()), f"{page} block {number} is stale"
            continue
        if how == "outline":  # placeholders (...): it must still compile as Python
            compile(code, f"{page} block {number}", "exec")
            continue
        output = io.StringIO()
        try:
            with contextlib.redirect_stdout(output):
                exec(compile(code, f"{page} block {number}", "exec"), namespace)
        except Exception as exc:  # pragma: no cover - the message is the point
            pytest.fail(f"{page} block {number} failed: {exc!r}\n{code}")
        if printed:
            assert _matches(printed, output.getvalue()), (
                f"{page} block {number} printed\n{output.getvalue()}\nbut the page says\n{printed}")


def test_every_not_run_entry_names_a_block():
    """Guard: an entry for a block that changed or moved must be updated, not left behind."""
    firsts = {(page, code.splitlines()[0]) for page in pages() for code, _ in python_blocks(page) if code.strip()}
    assert set(NOT_RUN) <= firsts, sorted(set(NOT_RUN) - firsts)


def test_output_blocks_are_checked():
    """The tutorial shows output after its snippets, and those blocks are the ones compared."""
    shown = [printed for _, printed in python_blocks("docs/tutorial.md") if printed]
    assert len(shown) >= 8


def test_api_reference_is_up_to_date():
    result = subprocess.run([sys.executable, str(ROOT / "docs" / "gen_api.py"), "--check"],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
