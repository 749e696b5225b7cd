"""The docs stay true: the tutorial's and README's code blocks run as written, and
docs/api.md matches the docstrings."""

import pathlib
import re
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent


def python_blocks(path):
    return re.findall(r"```python\n(.*?)```", path.read_text(), flags=re.S)


@pytest.mark.parametrize("page", ["docs/tutorial.md", "README.md"])
def test_code_blocks_run_in_order(page):
    namespace = {}
    blocks = python_blocks(ROOT / page)
    assert blocks, f"{page} has no python code blocks"
    for number, block in enumerate(blocks):
        try:
            exec(compile(block, f"{page} block {number}", "exec"), namespace)
        except Exception as exc:  # pragma: no cover - the message is the point
            pytest.fail(f"{page} block {number} failed: {exc!r}\n{block}")


def test_api_reference_is_up_to_date():
    result = subprocess.run([sys.executable, str(ROOT / "docs" / "gen_api.py"), "--check"],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
