"""The package's layers, read from the source with ast: no cycle between packages, no import of a
higher layer, and no deepnotes import inside a function body outside cli/ (a local import hides a
cycle or an upward dependency; the CLI imports lazily to start fast)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = SRC / "deepnotes"

# bottom to top; a module may import its own layer or lower ones
LAYERS = [
    {"errors", "atomic", "lock", "device", "graphs", "metrics"},
    {"data"},
    {"nn"},
    {"models"},
    {"optim"},
    {"train"},
    {"transfer", "feature_cache", "multitask", "strategy", "embeddings"},
    {"runs"},
    {"cli", "__main__"},
]
RANK = {unit: i for i, layer in enumerate(LAYERS) for unit in layer}


def module_name(path: Path) -> str:
    parts = path.relative_to(SRC).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def unit_of(module: str) -> str | None:
    """The layer unit of ``deepnotes.X...``: X (a subpackage or a top-level module); None for the
    package root, which holds only ``__version__``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else None


def imports(path: Path):
    """(line, imported module, inside a function) of each deepnotes import in ``path``."""
    tree = ast.parse(path.read_text(), str(path))
    local = {id(node) for fn in ast.walk(tree)
             if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef))
             for node in ast.walk(fn) if isinstance(node, (ast.Import, ast.ImportFrom))}
    package = module_name(path) if path.name == "__init__.py" else \
        module_name(path).rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package.split(".")[:len(package.split(".")) - node.level + 1]
                base = ".".join(up + ([node.module] if node.module else []))
            # `from deepnotes import atomic` imports the module deepnotes.atomic
            names = [f"{base}.{a.name}" for a in node.names] if base == "deepnotes" else [base]
        else:
            continue
        for name in names:
            if name == "deepnotes" or name.startswith("deepnotes."):
                yield node.lineno, name, id(node) in local


def all_modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def edges() -> dict[tuple[str, str], str]:
    """(importer unit, imported unit) -> one place it happens."""
    out = {}
    for path in all_modules():
        me = unit_of(module_name(path))
        for line, name, _ in imports(path):
            them = unit_of(name)
            if me and them and me != them:
                out.setdefault((me, them), f"{path.relative_to(SRC)}:{line}")
    return out


def test_every_unit_has_a_layer():
    units = {unit_of(module_name(p)) for p in all_modules()} - {None}
    assert units <= set(RANK), f"modules without a layer: {sorted(units - set(RANK))}"


def test_no_import_of_a_higher_layer():
    upward = [f"{where}: {me} imports {them}" for (me, them), where in edges().items()
              if RANK[them] > RANK[me]]
    assert not upward, "\n".join(upward)


def test_no_cycle_between_packages():
    graph: dict[str, set[str]] = {}
    for me, them in edges():
        graph.setdefault(me, set()).add(them)
    state: dict[str, int] = {}  # 1 on the path, 2 done

    def visit(unit: str, path: list[str]) -> list[str] | None:
        state[unit] = 1
        for nxt in sorted(graph.get(unit, ())):
            if state.get(nxt) == 1:
                return path + [unit, nxt]
            if nxt not in state:
                found = visit(nxt, path + [unit])
                if found:
                    return found
        state[unit] = 2
        return None

    for unit in sorted(graph):
        if unit not in state:
            cycle = visit(unit, [])
            assert cycle is None, " -> ".join(cycle)


def test_no_deepnotes_import_inside_a_function_outside_the_cli():
    local = [f"{path.relative_to(SRC)}:{line} imports {name}"
             for path in all_modules() if unit_of(module_name(path)) != "cli"
             for line, name, inside in imports(path) if inside]
    assert not local, "\n".join(local)


@pytest.mark.parametrize("source, finding", [
    ("def f():\n    from deepnotes.train import Trainer\n", "local"),
    ("from deepnotes.runs import session\n", "upward"),
])
def test_the_checks_see_what_they_look_for(tmp_path, monkeypatch, source, finding):
    """A planted local import or upward import in a low layer is found."""
    fake = tmp_path / "src" / "deepnotes"
    (fake / "nn").mkdir(parents=True)
    (fake / "runs").mkdir()
    (fake / "nn" / "bad.py").write_text(source)
    (fake / "runs" / "__init__.py").write_text("")
    monkeypatch.setattr(__import__(__name__), "SRC", tmp_path / "src")
    monkeypatch.setattr(__import__(__name__), "PACKAGE", fake)
    check = {"local": test_no_deepnotes_import_inside_a_function_outside_the_cli,
             "upward": test_no_import_of_a_higher_layer}[finding]
    with pytest.raises(AssertionError, match="nn/bad.py"):
        check()
