"""Every Python block of the README runs as written."""
import pathlib
import re

import pytest

README = pathlib.Path(__file__).resolve().parents[1] / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(), re.S) if README.exists() else []


@pytest.mark.skipif(not README.exists(), reason="README.md not beside tests/ (installed copy)")
@pytest.mark.parametrize("i", range(len(BLOCKS)))
def test_readme_block_runs(i):
    exec(compile(BLOCKS[i], f"README.md block {i}", "exec"), {})


def test_the_api_table_is_one_table():
    """issue 27: no blank line splits a table (Markdown renders the rest as text)."""
    lines = README.read_text().splitlines()
    for i in range(1, len(lines) - 1):
        if not lines[i].strip():
            assert not (lines[i - 1].startswith("|") and lines[i + 1].startswith("| `")), \
                f"README.md:{i + 1}: a blank line inside a table"


def test_a_license_file_matches_setup_cfg():
    root = README.parent
    cfg = (root / "setup.cfg").read_text()
    assert "license = MIT" in cfg
    assert (root / "LICENSE").read_text().startswith("MIT License")
