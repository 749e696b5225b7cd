"""The tutorial's code blocks run as written (so the docs stay true)."""

import pathlib
import re

import pytest

DOCS = pathlib.Path(__file__).resolve().parent.parent / "docs"


def python_blocks(path):
    return re.findall(r"```python\n(.*?)```", path.read_text(), flags=re.S)


@pytest.mark.parametrize("page", ["tutorial.md"])
def test_code_blocks_run_in_order(page, capsys):
    namespace = {}
    blocks = python_blocks(DOCS / page)
    assert blocks, f"{page} has no python code blocks"
    for number, block in enumerate(blocks):
        try:
            exec(compile(block, f"{page} block {number}", "exec"), namespace)
        except Exception as exc:  # pragma: no cover - the message is the point
            pytest.fail(f"{page} block {number} failed: {exc!r}\n{block}")
