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


def test_results_are_dated_by_date_and_commit_not_by_work_session():
    """Readers outside the team cannot place an internal "session 9": the docs and modules
    date results by date, version or commit (issue 29)."""
    root = pathlib.Path(__file__).resolve().parents[1]
    files = [root / "README.md", root / "CHANGELOG.md", *root.glob("bench/*.md"),
             *root.glob("reproduce/*.md"), *root.glob("kernels/**/*.py"),
             *root.glob("kernels/*.md"), *root.glob("hvpoison/**/*.py"),
             *root.glob("reproduce/*.py"), *root.glob("docs/**/*.md")]
    found = [f"{p.relative_to(root)}:{i}" for p in files
             for i, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1)
             if re.search(r"\bsessions? \d", line, re.I)]
    assert not found, found


def test_numba_is_installed_with_the_package():
    """The CPU twins are the fast path (issue 29): numba is a requirement, not an extra."""
    import configparser

    cfg = configparser.ConfigParser()
    cfg.read(pathlib.Path(__file__).resolve().parents[1] / "setup.cfg")
    required = [r.split(">")[0].strip() for r in
                cfg["options"]["install_requires"].split("\n") if r.strip()]
    assert "numba" in required
