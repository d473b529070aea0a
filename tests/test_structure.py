"""The package's structure stays true: no import cycles, and the method imports nothing from what uses it."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SOURCES = {"vinn_policy": ROOT / "vinn_policy", "vinn_policy.envs": ROOT / "envs", "vinn_policy.demos": ROOT / "demos"}
METHOD = ("actions", "artefact", "byol", "chunks", "database", "distributed", "encoder", "keys", "lwr", "policy", "search")
"""The modules `from vinn_policy import VINNPolicy, train_byol` needs."""


def module_files() -> dict[str, Path]:
    """Every module of the installed package by its dotted name (envs/ and demos/ install under vinn_policy.)."""
    found = {}
    for package, folder in SOURCES.items():
        for file in folder.rglob("*.py"):
            parts = file.relative_to(folder).with_suffix("").parts
            if package == "vinn_policy" and parts[0] in ("envs", "demos"):
                continue
            name = ".".join((package, *parts)).removesuffix(".__init__")
            found[name] = file
    return found


def imports(file: Path, name: str, modules: set[str]) -> set[str]:
    """The package modules `file` imports, at any depth (lazy imports count), except under `if TYPE_CHECKING:`."""
    tree = ast.parse(file.read_text())
    skip = {id(n) for node in ast.walk(tree) if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
            for child in node.body for n in ast.walk(child)}
    package = name if file.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base for alias in node.names]
        else:
            continue
        for target in targets:
            while target and target not in modules:  # a.b.c -> the nearest enclosing module of the package
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    files = module_files()
    return {name: imports(file, name, set(files)) for name, file in files.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle per strongly connected component of more than one module (Tarjan)."""
    index, low, stack, on, out = {}, {}, [], set(), []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in graph:
        if v not in index:
            visit(v)
    return out


def reachable(graph: dict[str, set[str]], start: str) -> set[str]:
    seen, todo = set(), [start]
    while todo:
        for w in graph[todo.pop()] - seen:
            seen.add(w)
            todo.append(w)
    return seen


def test_the_package_has_no_import_cycle(graph):
    assert cycles(graph) == []


def test_the_cycle_finder_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_the_method_imports_nothing_from_baselines_harness_or_diagnostics(graph):
    for module in METHOD:
        used = reachable(graph, f"vinn_policy.{module}")
        bad = sorted(m for m in used if m.startswith(("vinn_policy.baselines", "vinn_policy.harness", "vinn_policy.diagnostics")))
        assert not bad, f"vinn_policy.{module} reaches {bad}"


def test_the_import_walker_sees_lazy_and_relative_imports(tmp_path):
    file = tmp_path / "mod.py"
    file.write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from p.c import X\n"
                    "def f():\n    from .b import y\n    import p.a\n")
    assert imports(file, "p.m", {"p.a", "p.b", "p.c", "p.m"}) == {"p.a", "p.b"}


def test_old_module_paths_fail_naming_the_new_place():
    import vinn_policy  # noqa: F401

    with pytest.raises(ModuleNotFoundError, match="vinn_policy.bc moved to vinn_policy.baselines.bc"):
        import vinn_policy.bc  # noqa: F401
    with pytest.raises(ModuleNotFoundError, match="moved to vinn_policy.harness.benchmark"):
        from vinn_policy import benchmark  # noqa: F401
    from vinn_policy.demos.dataset import load_demos

    from vinn_policy.baselines import load_policy  # the README's imports keep working

    assert callable(load_policy) and callable(load_demos)
