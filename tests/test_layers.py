"""The house's shape, checked: imports only point down (docs/architecture.md), and no function
is longer than 60 lines of code.

Every import is read from the source (``ast``), lazy ones inside functions included, and
resolved to an absolute ``hvpoison.*`` name (the top-level ``kernels/`` folder is
``hvpoison.kernels``)."""
import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

#: the engine: derivatives, solvers, victims; it knows no task, experiment or figure
ENGINE = ("hvpoison.backend", "hvpoison._checks", "hvpoison.logistic", "hvpoison.ops",
          "hvpoison.penalties", "hvpoison.objective", "hvpoison.stepsize", "hvpoison.models",
          "hvpoison.hypergrad", "hvpoison.victims", "hvpoison.kernels")
#: what sits above the engine (Alg. 2's outer parts and everything that uses them)
ABOVE_ENGINE = ("hvpoison.data", "hvpoison.experiments", "hvpoison.figures", "hvpoison.plots",
                "hvpoison.cli", "hvpoison.attack", "hvpoison.methods", "hvpoison.evaluate",
                "hvpoison.benchmarks")
#: rules within the engine and beside it: (importer, what it may not import)
RULES = [
    ("hvpoison.ops", ("hvpoison.models", "hvpoison.objective", "hvpoison.penalties",
                      "hvpoison.hypergrad", "hvpoison.victims")),
    ("hvpoison.models", ("hvpoison.objective", "hvpoison.penalties", "hvpoison.hypergrad",
                         "hvpoison.victims", "hvpoison.stepsize")),
    ("hvpoison.hypergrad", ("hvpoison.victims",)),
    ("hvpoison.data", ENGINE[2:] + ABOVE_ENGINE[1:]),   # data knows nothing of models
    ("hvpoison.victims", ABOVE_ENGINE),
]


def _module_name(path):
    rel = path.relative_to(ROOT).with_suffix("")
    parts = list(rel.parts)
    if parts[0] == "kernels":
        parts = ["hvpoison", *parts]
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts), path.name == "__init__.py"


def _imports(path):
    """``[(line, absolute module name)]`` of every import in ``path``, lazy ones too."""
    name, is_package = _module_name(path)
    package = name if is_package else name.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module
            # ``from . import ops`` imports the module hvpoison.ops
            found += [(node.lineno, f"{mod}.{a.name}") for a in node.names]
            found.append((node.lineno, mod))
    return found


def _sources():
    return sorted((ROOT / "hvpoison").rglob("*.py")) + sorted((ROOT / "kernels").rglob("*.py"))


def _within(mod, prefixes):
    return any(mod == p or mod.startswith(p + ".") for p in prefixes)


def _violations(importers, forbidden):
    bad = []
    for path in _sources():
        name, _ = _module_name(path)
        if not _within(name, importers):
            continue
        bad += [f"{path.relative_to(ROOT)}:{line} imports {mod}"
                for line, mod in _imports(path) if _within(mod, forbidden)]
    return bad


def test_the_engine_imports_nothing_above_it():
    assert _violations(ENGINE, ABOVE_ENGINE) == []


@pytest.mark.parametrize("importer,forbidden", RULES, ids=[r[0] for r in RULES])
def test_imports_point_down(importer, forbidden):
    assert _violations((importer,), forbidden) == []


def test_the_rule_sees_a_lazy_upward_import(tmp_path, monkeypatch):
    """The check can fail: a function-level ``from .experiments import protocol`` in an
    engine module is found."""
    fake = ROOT / "hvpoison" / "stepsize.py"
    src = fake.read_text() + "\n\ndef _late():\n    from .experiments import protocol\n"
    path = tmp_path / "hvpoison" / "stepsize.py"
    path.parent.mkdir()
    path.write_text(src)
    monkeypatch.setitem(globals(), "ROOT", tmp_path)
    assert [m for _, m in _imports(path) if _within(m, ABOVE_ENGINE)] == \
        ["hvpoison.experiments.protocol", "hvpoison.experiments"]
# -- function length ---------------------------------------------------------------------
MAX_LINES = 60


def code_lines(src_lines, node):
    """Lines of code of a function: its docstring, comments and blank lines not counted
    (a nested function's lines count toward its parent too)."""
    body = node.body
    doc = None
    if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
            and isinstance(body[0].value.value, str):
        doc = (body[0].lineno, body[0].end_lineno)
    return sum(1 for i in range(node.lineno, node.end_lineno + 1)
               if not (doc and doc[0] <= i <= doc[1])
               and src_lines[i - 1].strip() and not src_lines[i - 1].strip().startswith("#"))


def test_no_function_is_longer_than_60_lines_of_code():
    long = []
    for path in _sources():
        src = path.read_text()
        lines = src.splitlines()
        for node in ast.walk(ast.parse(src)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = code_lines(lines, node)
                if n > MAX_LINES:
                    long.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name}: {n}")
    assert long == []


def test_the_length_count_skips_docstrings_and_comments():
    src = 'def f():\n    """doc\n    more"""\n    # note\n\n    return 1\n'
    node = ast.parse(src).body[0]
    assert code_lines(src.splitlines(), node) == 2


def test_setup_cfg_ships_every_package():
    """A non-editable ``pip install .`` ships only the packages setup.cfg lists (the
    hvpoison.victims package was once missing there, and only CI's clean install saw it)."""
    import configparser

    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    listed = set(cfg["options"]["packages"].split())
    found = {".".join(p.parent.relative_to(ROOT).parts)
             for p in (ROOT / "hvpoison").rglob("__init__.py")} | {"hvpoison.kernels"}
    assert found - listed == set()
