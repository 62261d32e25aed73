"""The import graph is what a reader sees: read from the source (every import, including those inside
functions), it has no cycles, no imports by string, and the layers hold — the plugin never imports the
backend or torch, the backend never imports QGIS or the packages above it, the model never imports the
engine. Folders hold the same at every level: the sub-folders of a folder, each counted with everything
under it, import each other in one direction only. And in every package (backend/, training/, bench/,
rs2sam2_qgis/) no function grows past what a reader can hold, and no file past what a reader can find
their way around in. These guards read each file once (well under a second)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("backend", "training", "bench", "rs2sam2_qgis")
MAX_FUNCTION_LINES = 60
# Functions allowed to be longer, each with its reason (keep this short).
LONG_FUNCTION_REASONS: dict[str, str] = {}
MAX_FILE_LINES = 600
# Files allowed to be longer, each with its reason (keep this short).
LONG_FILE_REASONS: dict[str, str] = {}
# Folder cycles that exist and are known, each with its reason; the test fails once one is gone, so the
# list only shrinks.
FOLDER_CYCLE_REASONS: dict[frozenset[str], str] = {}


def _modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            parts = path.relative_to(ROOT).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            found[name] = path
    return found


MODULES = _modules()
SOURCES = {name: path.read_text(encoding="utf-8") for name, path in MODULES.items()}
TREES = {name: ast.parse(source) for name, source in SOURCES.items()}
PACKAGE_NAMES = {name for name, path in MODULES.items() if path.name == "__init__.py"}


def _imports(name: str, path: Path) -> set[str]:
    """Project modules `name` imports (resolved to the longest existing module name)."""
    tree = TREES[name]
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


def _third_party(name: str) -> set[str]:
    tree = TREES[name]
    roots = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
            roots.add(node.module.split(".")[0])
    return roots


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one node (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for child in graph.get(node, ()):
            if child not in index:
                visit(child)
                low[node] = min(low[node], low[child])
            elif child in on_stack:
                low[node] = min(low[node], index[child])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for node in list(graph):
        if node not in index:
            visit(node)
    return cycles


def test_no_import_cycles():
    cycles = _cycles(GRAPH)
    # A package importing its own submodules in __init__ is not a cycle a reader trips over.
    real = [c for c in cycles if not all(m == c[0] or m.startswith(c[0] + ".") for m in c)]
    assert real == []


def _folder_graph(folder: str, modules: dict[str, set[str]]) -> dict[str, set[str]]:
    """The import graph one level under `folder`: each module directly in it is a node, and each
    sub-folder is one node standing for everything under it. The folder's own __init__ is left out (a
    package's face importing its own children is no cycle a reader trips over)."""

    def node(module: str) -> str | None:
        if not module.startswith(folder + "."):
            return None
        return f"{folder}.{module[len(folder) + 1 :].split('.')[0]}"

    graph: dict[str, set[str]] = {}
    for module, targets in modules.items():
        source = node(module)
        if source is None:
            continue
        for target in targets:
            sink = node(target)
            if sink is not None and sink != source:
                graph.setdefault(source, set()).add(sink)
    return graph


def _folder_cycles(modules: dict[str, set[str]], packages: set[str]) -> set[frozenset[str]]:
    """The folders of each cycle that passes through a folder, at every level."""
    found = set()
    for folder in sorted(packages):
        for cycle in _cycles(_folder_graph(folder, modules)):
            folders = frozenset(node for node in cycle if node in packages)
            if folders:
                found.add(folders)
    return found


def test_no_folder_cycles():
    """At every level, the sub-folders (each with everything under it) and the modules beside them form
    no cycle that passes through a folder: `backend.model` and `backend.weights` importing each other,
    however many modules apart, is one."""
    found = _folder_cycles(GRAPH, PACKAGE_NAMES | set(PACKAGES))
    unexplained = sorted(sorted(cycle) for cycle in found - FOLDER_CYCLE_REASONS.keys())
    gone = sorted(sorted(cycle) for cycle in FOLDER_CYCLE_REASONS.keys() - found)
    assert unexplained == [], "folders that import each other"
    assert gone == [], "no longer a cycle: remove it from FOLDER_CYCLE_REASONS"


def test_the_folder_check_finds_a_cycle_through_modules():
    """The check itself: p.a.x -> p.b.y -> p.a.z is a cycle between folders p.a and p.b, though no module
    is in a cycle; a sub-folder importing its parent's __init__ (p.b.y -> p) is none."""
    modules = {"p.a.x": {"p.b.y"}, "p.b.y": {"p.a.z", "p"}, "p.a.z": set(), "p.c": {"p.a.x"}, "p": set()}
    assert _cycles(modules) == []
    assert _folder_cycles(modules, {"p", "p.a", "p.b"}) == {frozenset({"p.a", "p.b"})}
    assert _folder_cycles({**modules, "p.b.y": {"p"}}, {"p", "p.a", "p.b"}) == set()


def test_no_imports_by_string():
    offenders = [
        str(MODULES[name].relative_to(ROOT))
        for name, source in SOURCES.items()
        if "import_module(" in source or "__import__(" in source
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
        # The plugin's rooms: the panel and Processing stand on the others, never the other way round.
        ("rs2sam2_qgis.connection", {"rs2sam2_qgis.panel", "rs2sam2_qgis.processing"}),
        ("rs2sam2_qgis.setup", {"rs2sam2_qgis.panel", "rs2sam2_qgis.processing", "rs2sam2_qgis.connection"}),
        ("rs2sam2_qgis.layers", {"rs2sam2_qgis.panel", "rs2sam2_qgis.processing", "rs2sam2_qgis.connection"}),
        ("rs2sam2_qgis.panel", {"rs2sam2_qgis.processing"}),
    ],
)
def test_layers(layer, forbidden):
    offenders = []
    for name in MODULES:
        if name != layer and not name.startswith(layer + "."):
            continue
        # contract.py and training_contract.py are the plugin modules the backend imports (stdlib only).
        used = {target.split(".")[0] for target in GRAPH[name]} | _third_party(name) | GRAPH[name]
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
            shared = {"rs2sam2_qgis", "rs2sam2_qgis.contract", "rs2sam2_qgis.training_contract"}
            assert plugin_modules <= shared, name


def test_the_backend_reaches_the_plugin_through_one_door():
    """backend/contract.py is the one module of backend/, training/ and bench/ that imports the plugin's
    package; everything else takes the shared contract from it."""
    door = "backend.contract"
    offenders = [
        name
        for name in MODULES
        if name.split(".")[0] in {"backend", "training", "bench"}
        and name != door
        and "rs2sam2_qgis" in _third_party(name) | {t.split(".")[0] for t in GRAPH[name]}
    ]
    assert offenders == []
    assert "rs2sam2_qgis.contract" in GRAPH[door]


def test_functions_fit_on_a_screen():
    long = []
    for name, tree in TREES.items():
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                length = node.end_lineno - node.lineno + 1
                key = f"{name}.{node.name}"
                if length > MAX_FUNCTION_LINES and key not in LONG_FUNCTION_REASONS:
                    long.append((key, length))
    assert long == []


def test_files_stay_readable():
    long = []
    for name, source in SOURCES.items():
        where, lines = str(MODULES[name].relative_to(ROOT)), source.count("\n")
        if lines > MAX_FILE_LINES and where not in LONG_FILE_REASONS:
            long.append((where, lines))
    assert long == []


MAX_DOCK_LINES = 300


def test_the_dock_keeps_only_the_panel():
    """The backend's choice, start and set-up live in panel/backend_row.py and connection/backend.py."""
    lines = SOURCES["rs2sam2_qgis.panel.dock"].count("\n")
    assert lines < MAX_DOCK_LINES


def test_every_package_is_guarded():
    """The guards above read every Python file of every package; nothing of the product lies outside."""
    products = {p.name for p in ROOT.iterdir() if (p / "__init__.py").is_file()} - {"tests", "scripts"}
    assert products <= set(PACKAGES)
    assert {name.split(".")[0] for name in MODULES} == set(PACKAGES)


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
