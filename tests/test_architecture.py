"""The import graph is what a reader sees: read from the source (every import, including those inside
functions), it has no cycles, no imports by string, and the layers hold — the plugin never imports the
backend or torch, the backend never imports QGIS or the packages above it, the model never imports the
engine. And no function in backend/ or training/ grows past what a reader can hold."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("backend", "training", "bench", "rs2sam2_qgis")
MAX_FUNCTION_LINES = 60
# Functions allowed to be longer, each with its reason (keep this short).
LONG_FUNCTION_REASONS: dict[str, str] = {}


def _modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            parts = path.relative_to(ROOT).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            found[name] = path
    return found


MODULES = _modules()


def _imports(name: str, path: Path) -> set[str]:
    """Project modules `name` imports (resolved to the longest existing module name)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    targets = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            targets.add(base)
            targets.update(f"{base}.{alias.name}" for alias in node.names)
    resolved = set()
    for target in targets:
        while target and target not in MODULES:
            target = target.rpartition(".")[0]
        if target and target != name:
            resolved.add(target)
    return resolved


GRAPH = {name: _imports(name, path) for name, path in MODULES.items()}


def _third_party(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    roots = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
            roots.add(node.module.split(".")[0])
    return roots


def test_no_import_cycles():
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles = []

    def visit(node: str) -> None:  # Tarjan's strongly connected components
        index[node] = low[node] = len(index)
        stack.append(node)
        for child in GRAPH[node]:
            if child not in index:
                visit(child)
                low[node] = min(low[node], low[child])
            elif child in stack:
                low[node] = min(low[node], index[child])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for module in GRAPH:
        if module not in index:
            visit(module)
    # A package importing its own submodules in __init__ is not a cycle a reader trips over.
    real = [c for c in cycles if not all(m == c[0] or m.startswith(c[0] + ".") for m in c)]
    assert real == []


def test_no_imports_by_string():
    offenders = [
        str(path.relative_to(ROOT))
        for path in MODULES.values()
        if "import_module(" in path.read_text(encoding="utf-8")
        or "__import__(" in path.read_text(encoding="utf-8")
    ]
    assert offenders == []


@pytest.mark.parametrize(
    "layer, forbidden",
    [
        ("rs2sam2_qgis", {"backend", "training", "bench", "torch", "numpy", "rasterio", "sam2", "open_clip"}),
        ("backend", {"training", "bench", "qgis", "PyQt5"}),
        ("training", {"bench", "qgis", "PyQt5", "rs2sam2_qgis"}),
        ("backend.model", {"backend.engine", "backend.service"}),
        ("backend.engine", {"backend.service"}),
    ],
)
def test_layers(layer, forbidden):
    offenders = []
    for name, path in MODULES.items():
        if name != layer and not name.startswith(layer + "."):
            continue
        # contract.py is the one module of the plugin package the backend imports (stdlib only).
        used = {target.split(".")[0] for target in GRAPH[name]} | _third_party(path) | GRAPH[name]
        bad = {f for f in forbidden if any(u == f or u.startswith(f + ".") for u in used)}
        if layer == "backend":
            bad -= {"rs2sam2_qgis"}
        if bad:
            offenders.append((name, sorted(bad)))
    assert offenders == []


def test_the_backend_uses_only_the_plugins_contract():
    for name in MODULES:
        if name.startswith(("backend", "training")):
            plugin_modules = {t for t in GRAPH[name] if t.startswith("rs2sam2_qgis")}
            assert plugin_modules <= {"rs2sam2_qgis", "rs2sam2_qgis.contract"}, name


def test_functions_fit_on_a_screen():
    long = []
    for name, path in MODULES.items():
        if not name.startswith(("backend", "training")):
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                length = node.end_lineno - node.lineno + 1
                key = f"{name}.{node.name}"
                if length > MAX_FUNCTION_LINES and key not in LONG_FUNCTION_REASONS:
                    long.append((key, length))
    assert long == []


def test_design_note_references_resolve():
    """Every `docs/….md` or `…/README.md` a comment or document names exists in the repository, and no
    note is cited without its place (a bare `method.md` pointed outside the repository once)."""
    import re

    texts = [*MODULES.values(), *ROOT.glob("*.md"), *ROOT.glob("docs/*.md"), *ROOT.glob("*/README.md")]
    texts += [*ROOT.glob("*/*/README.md"), *ROOT.glob("scripts/*.py"), *ROOT.glob("tests/**/*.py")]
    missing, bare = [], []
    for path in texts:
        if path.resolve() == Path(__file__).resolve():
            continue
        text = path.read_text(encoding="utf-8")
        for ref in re.findall(r"(?<![\w/.-])((?:[\w-]+/)+[\w-]+\.md)\b", text):
            if not (ROOT / ref).is_file() and not (path.parent / ref).is_file():
                missing.append((str(path.relative_to(ROOT)), ref))
        if re.search(r"(?<![\w/])method\.md", text):
            bare.append(str(path.relative_to(ROOT)))
    assert missing == [] and bare == []
