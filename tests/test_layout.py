"""The code's layout holds: no import circle anywhere in the package, the runtime's
subpackages import only downward, in the order docs/architecture.md walks them, and
pyproject.toml's hand-kept `packages` list names every package folder (a forgotten one would be
left out of the wheel)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FOLDERS = {"portable": "realesr_portable", "archs": "realesr_portable.archs", "convert": "realesr_portable.convert",
           "torch_backend": "realesr_portable.torch_backend",
           "trainer": "realesr_portable.trainer"}
#: Bottom to top; a unit imports only from units before it (and inside itself).
ORDER = ("errors", "atomic", "suffixes", "graph", "model", "device", "image", "plan", "run", "batch", "video", "api",
         "distributed", "cli", "__main__", "archs", "convert", "torch_backend", "trainer")


def _modules() -> dict[str, Path]:
    found = {}
    for folder, package in FOLDERS.items():
        for path in sorted((ROOT / folder).rglob("*.py")):
            parts = list(path.relative_to(ROOT / folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join([package, *parts])] = path
    return found


def _is_type_checking(node: ast.If) -> bool:
    return isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING"


def _imports(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """Project modules `name` imports anywhere in its body (lazy ones too), TYPE_CHECKING blocks aside."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    tree = ast.parse(path.read_text(encoding="utf-8"))
    skip = {id(n) for node in ast.walk(tree) if isinstance(node, ast.If) and _is_type_checking(node)
            for child in node.body for n in ast.walk(child)}
    found = set()
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            targets = [f"{source}.{a.name}" if f"{source}.{a.name}" in modules else source for a in node.names]
        else:
            continue
        found.update(t for t in targets if t in modules and t != name)
    return found


def _unit(name: str) -> str:
    parts = name.split(".")
    if parts[1:2] and parts[1] in ("archs", "convert", "torch_backend", "trainer"):
        return parts[1]
    return parts[1] if len(parts) > 1 else "__init__"


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: _imports(name, path, modules) for name, path in modules.items()}


def test_no_import_circles() -> None:
    graph = _graph()
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    circles = []

    def visit(node: str) -> None:  # Tarjan's strongly connected components
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in graph[node]:
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            members = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                members.append(top)
                if top == node:
                    break
            if len(members) > 1:
                circles.append(sorted(members))

    for node in graph:
        if node not in index:
            visit(node)
    assert not circles, circles


def test_runtime_imports_only_downward() -> None:
    rank = {unit: i for i, unit in enumerate(ORDER)}
    wrong = []
    for name, targets in _graph().items():
        unit = _unit(name)
        if unit == "__init__":
            continue
        assert unit in rank, f"{name}: add its unit to ORDER"
        for target in targets:
            other = _unit(target)
            if other != unit and other != "__init__" and rank[other] > rank[unit]:
                wrong.append(f"{name} -> {target}")
    assert not wrong, wrong


def _setuptools() -> dict:
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10: tomllib is 3.11+
        tomllib = pytest.importorskip("tomli")
    with open(ROOT / "pyproject.toml", "rb") as fh:
        return tomllib.load(fh)["tool"]["setuptools"]


def _folder_of(package: str, package_dir: dict[str, str]) -> Path:
    """Where setuptools looks for `package`: its longest mapped prefix's folder, plus the rest."""
    prefix = max((p for p in package_dir if package == p or package.startswith(p + ".")), key=len, default=None)
    assert prefix is not None, f"{package}: no package-dir entry covers it"
    rest = package[len(prefix):].lstrip(".").split(".") if package != prefix else []
    return ROOT.joinpath(package_dir[prefix], *rest)


def test_pyproject_lists_every_package() -> None:
    """Every folder with an `__init__.py` under the five code folders is in `packages` under the
    name `package-dir` maps it to, and every listed package is such a folder."""
    tool = _setuptools()
    package_dir: dict[str, str] = tool["package-dir"]
    listed: list[str] = tool["packages"]
    assert {folder: name for name, folder in package_dir.items()} == FOLDERS  # the five folders, mapped as this file reads them
    assert len(listed) == len(set(listed)), "a package is listed twice"
    on_disk = {}
    for folder, package in FOLDERS.items():
        for init in sorted((ROOT / folder).rglob("__init__.py")):
            parts = init.parent.relative_to(ROOT / folder).parts
            on_disk[".".join([package, *parts])] = init.parent
    for package in listed:
        assert _folder_of(package, package_dir) == on_disk.get(package), f"{package}: listed in pyproject.toml but no such package folder"
    missing = sorted(set(on_disk) - set(listed))
    assert not missing, f"add to pyproject.toml [tool.setuptools] packages: {missing}"
