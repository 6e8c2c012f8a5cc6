"""Check (or, with --fix, update) the tutorial's `file:line` `code` references.

Each chapter cites code as `hvpoison/x.py:LINE` `code on that line`; when the code moves,
`python docs/tutorial/refs.py --fix` rewrites LINE to where the quoted code is now (it must
occur exactly once in the file) and reports what it changed.
"""
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
REF = re.compile(r"`(hvpoison/[\w/]+\.py):(\d+)` `([^`]+)`")


def main(fix=False):
    bad = 0
    for ch in sorted((ROOT / "docs" / "tutorial").glob("[0-9][0-9]-*.md")):
        text = ch.read_text()

        def visit(m):
            nonlocal bad
            path, line, code = m.groups()
            lines = (ROOT / path).read_text().splitlines()
            hits = [i + 1 for i, ln in enumerate(lines) if code.strip() in ln]
            if len(hits) != 1:
                print(f"{ch.name}: {path}: {code!r} found {len(hits)} times")
                bad += 1
                return m.group(0)
            if hits[0] != int(line):
                print(f"{ch.name}: {path}:{line} -> {hits[0]}")
                bad += not fix
            return f"`{path}:{hits[0]}` `{code}`"

        new = REF.sub(visit, text)
        if fix and new != text:
            ch.write_text(new)
    return bad


if __name__ == "__main__":
    sys.exit(1 if main("--fix" in sys.argv) else 0)
