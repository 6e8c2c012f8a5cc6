"""The tutorial (docs/tutorial): every Python snippet runs as written (each chapter in one
fresh namespace, in order; its asserts are what the chapter says the reader should see),
every `file:line` reference still points at the code it quotes, every image exists, and
the figure script regenerates the images."""
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TUTORIAL = ROOT / "docs" / "tutorial"
CHAPTERS = sorted(TUTORIAL.glob("[0-9][0-9]-*.md"))
BLOCK = re.compile(r"```python\n(.*?)```", re.S)
REF = re.compile(r"`(hvpoison/[\w/]+\.py):(\d+)` `([^`]+)`")


def test_there_are_eight_chapters():
    assert [p.name[:2] for p in CHAPTERS] == [f"0{i}" for i in range(1, 9)]


@pytest.mark.parametrize("chapter", CHAPTERS, ids=lambda p: p.stem)
def test_every_snippet_runs(chapter, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    blocks = BLOCK.findall(chapter.read_text())
    assert blocks, f"{chapter.name} has no Python snippet"
    namespace = {"__name__": f"tutorial_{chapter.stem}"}
    for i, code in enumerate(blocks):
        try:
            exec(compile(code, f"{chapter.name}[snippet {i + 1}]", "exec"), namespace)
        except Exception as exc:  # noqa: BLE001 - report which snippet broke
            raise AssertionError(f"{chapter.name}, snippet {i + 1} failed: {exc!r}") from exc


def test_code_references_point_at_the_quoted_code():
    refs = [(ch.name, *m) for ch in CHAPTERS for m in REF.findall(ch.read_text())]
    assert len(refs) >= 20
    for chapter, path, line, code in refs:
        lines = (ROOT / path).read_text().splitlines()
        assert int(line) <= len(lines), (chapter, path, line)
        assert code.strip() in lines[int(line) - 1], (
            f"{chapter}: {path}:{line} is now {lines[int(line) - 1].strip()!r}, not {code!r} "
            "(python docs/tutorial/refs.py --fix updates the line numbers)")


def test_images_exist_and_are_small():
    for ch in [TUTORIAL / "README.md", *CHAPTERS]:
        for img in re.findall(r"!\[[^]]*\]\(([^)]+)\)", ch.read_text()):
            p = TUTORIAL / img
            assert p.is_file() and p.stat().st_size < 200_000, (ch.name, img)


def test_figure_script_regenerates_the_images(tmp_path):
    import importlib.util

    spec = importlib.util.spec_from_file_location("make_figures", TUTORIAL / "make_figures.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    names = mod.main(["--out", str(tmp_path)])
    assert names == sorted(p.name for p in (TUTORIAL / "img").glob("*.png"))


def _public_api():
    import inspect

    import hvpoison as hv

    items = [(n, getattr(hv, n)) for n in hv.__all__]
    for cls in (hv.Objective, hv.Point, hv.LR, hv.MLP):
        items += [(f"{cls.__name__}.{m}", f) for m, f in inspect.getmembers(cls, inspect.isfunction)
                  if not m.startswith("_")]
    items += [("evaluate.feature_weights", __import__("hvpoison.evaluate", fromlist=["x"]).feature_weights)]
    return [(n, inspect.getdoc(o) or "") for n, o in items]


@pytest.mark.parametrize("name, doc", _public_api(), ids=lambda x: x if isinstance(x, str) and "\n" not in x and len(x) < 40 else "")
def test_public_docstrings_name_the_paper_and_shapes(name, doc):
    assert re.search(r"Eq\. ?\d|Alg\. ?\d|Sect\. ?[IV]|Fig\. ?\d", doc), f"{name}: no Eq./Alg./Sect./Fig."
    assert re.search(r"shape|\(\s*[nmPdL]\b|\(P,\)|\(n,|scalar|a float", doc), f"{name}: no shapes"
