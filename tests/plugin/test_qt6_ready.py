"""The plugin stays loadable in QGIS 4 (Qt 6) while it runs here on QGIS 3.22 (Qt 5).

An AST check of rs2sam2_qgis/ for the Qt 5-only forms QGIS's Qt 6 migration lists (its
`pyqt5_to_pyqt6` script): unscoped enum members on Qt classes (`Qt.AlignLeft`, `QMessageBox.Yes`,
`QDialog.Accepted` — Qt 6 knows only `Qt.AlignmentFlag.AlignLeft` …), `exec_()`, `QVariant.String`-style
field types, classes Qt 6 removed (`QRegExp`, `QDesktopWidget`, `qApp`) or moved from QtWidgets to QtGui
(`QAction`, `QShortcut` …), direct `PyQt5` imports. Every scoped form the plugin uses must exist in the
PyQt5 it runs on here (PyQt5 >= 5.11 has them). QGIS's own enums (`Qgis.Info`, `QgsWkbTypes.…`) are left
alone: QGIS 4 keeps their unscoped names (its Python bindings patch them back in).
"""

from __future__ import annotations

import ast
import configparser
import enum
import importlib
import inspect
import textwrap
from pathlib import Path

import pytest

from rs2sam2_qgis import qt_compat

ROOT = Path(__file__).resolve().parents[2]
PLUGIN = ROOT / "rs2sam2_qgis"
QT_MODULES = ("qgis.PyQt", "PyQt5", "PyQt6")
REMOVED_IN_QT6 = {"QRegExp", "QRegExpValidator", "QDesktopWidget", "qApp", "QGLWidget"}
MOVED_TO_QTGUI = {"QAction", "QActionGroup", "QShortcut", "QFileSystemModel", "QUndoCommand", "QUndoStack"}
RENAMED_METHODS = {"exec_": "exec", "print_": "print"}


def _qt_classes(tree: ast.AST) -> dict[str, tuple[str, str]]:
    """Local name -> (module, name) for every name imported from a Qt module."""
    found = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith(QT_MODULES):
            for alias in node.names:
                found[alias.asname or alias.name] = (node.module, alias.name)
    return found


def _is_enum_member(value: object) -> bool:
    """A member of a Qt enum (a PyQt5 sip enum or a Python enum), not a class or function."""
    if isinstance(value, enum.Enum):
        return True
    return type(type(value)).__name__ == "enumtype" and isinstance(value, int)


def _resolve(module: str, name: str):
    """What `from module import name` gives: an attribute of the module, or a submodule."""
    for attempt in (lambda: getattr(importlib.import_module(module), name),
                    lambda: importlib.import_module(f"{module}.{name}")):  # fmt: skip
        try:
            return attempt()
        except (ImportError, AttributeError):
            continue
    return None


def _owner(expression: ast.expr, classes: dict):
    """The Qt class an expression names: an imported one (`Qt`), or one of an imported Qt module
    (`QtCore.Qt`); None for anything else."""
    if isinstance(expression, ast.Name) and expression.id in classes:
        return _resolve(*classes[expression.id])
    if isinstance(expression, ast.Attribute) and isinstance(expression.value, ast.Name):
        module = _resolve(*classes[expression.value.id]) if expression.value.id in classes else None
        return getattr(module, expression.attr, None) if inspect.ismodule(module) else None
    return None


def _qtgui_fallbacks(tree: ast.AST) -> set[int]:
    """Ids of `from ….QtWidgets import QAction` nodes that are the Qt 5 fallback of a `try:` that
    imports the same names from QtGui first (qt_compat.py's pattern)."""
    allowed = set()
    for node in ast.walk(tree):
        if not isinstance(node, ast.Try):
            continue
        from_gui = {
            alias.name
            for stmt in node.body
            if isinstance(stmt, ast.ImportFrom) and (stmt.module or "").endswith("QtGui")
            for alias in stmt.names
        }
        for handler in node.handlers:
            for stmt in handler.body:
                if isinstance(stmt, ast.ImportFrom) and {a.name for a in stmt.names} <= from_gui:
                    allowed.add(id(stmt))
    return allowed


def _import_problems(node: ast.ImportFrom, fallbacks: set[int]) -> list[str]:
    problems = []
    module = node.module or ""
    if module.startswith(("PyQt5", "PyQt6")):
        problems.append(f"`from {module} import …`: use qgis.PyQt")
    for alias in node.names:
        if alias.name in REMOVED_IN_QT6:
            problems.append(f"{alias.name} is gone in Qt 6")
        if alias.name in MOVED_TO_QTGUI and module.endswith("QtWidgets") and id(node) not in fallbacks:
            problems.append(f"{alias.name} moved to QtGui in Qt 6: import it from rs2sam2_qgis.qt_compat")
    return problems


def _attribute_problems(node: ast.Attribute, parent: ast.AST, classes: dict) -> list[str]:
    owner, attr = ast.unparse(node.value), node.attr
    if owner.split(".")[-1] == "QVariant" and attr[:1].isupper():
        return [f"{owner}.{attr}: QVariant.Type is gone in Qt 6; use qt_compat.new_field / QMetaType.Type"]
    if owner.split(".")[-1] == "QtWidgets" and attr in MOVED_TO_QTGUI:
        return [f"{owner}.{attr} moved to QtGui in Qt 6"]
    inner = isinstance(parent, ast.Attribute) and parent.value is node  # `Qt.AlignmentFlag` of a chain
    if not attr[:1].isupper() or inner:
        return []
    value = getattr(_owner(node.value, classes), attr, None)
    if _is_enum_member(value):
        return [f"{owner}.{attr}: unscoped enum, write {owner}.{type(value).__name__}.{attr}"]
    return []


def qt5_only_uses(source: str) -> list[str]:
    """`line: problem` for every Qt 5-only form in one module's source."""
    tree = ast.parse(source)
    classes = _qt_classes(tree)
    fallbacks = _qtgui_fallbacks(tree)
    problems: list[tuple[int, str]] = []
    for parent in ast.walk(tree):
        for node in ast.iter_child_nodes(parent):
            found: list[str] = []
            if isinstance(node, ast.ImportFrom):
                found = _import_problems(node, fallbacks)
            elif isinstance(node, ast.Import):
                found = [
                    f"import {a.name}: use qgis.PyQt"
                    for a in node.names
                    if a.name.startswith(("PyQt5", "PyQt6"))
                ]
            elif isinstance(node, ast.Attribute):
                found = _attribute_problems(node, parent, classes)
                if node.attr in RENAMED_METHODS:
                    found.append(f".{node.attr}(): Qt 6 has only .{RENAMED_METHODS[node.attr]}()")
            elif isinstance(node, ast.FunctionDef) and node.name in RENAMED_METHODS:
                found = [f"def {node.name}: Qt 6 calls {RENAMED_METHODS[node.name]}"]
            elif isinstance(node, ast.Name) and node.id in REMOVED_IN_QT6 and isinstance(node.ctx, ast.Load):
                found = [f"{node.id} is gone in Qt 6"]
            problems += [(getattr(node, "lineno", 0), p) for p in found]
    return [f"{line}: {problem}" for line, problem in sorted(set(problems))]


def _scoped_enum_uses(source: str) -> set[str]:
    """`Class.Enum.Member` chains on Qt classes the module imports."""
    tree = ast.parse(source)
    classes = _qt_classes(tree)
    chains = set()
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Attribute)
            and isinstance(node.value.value, ast.Name)
            and node.value.value.id in classes
            and node.value.attr[:1].isupper()
            and node.attr[:1].isupper()
        ):
            module, name = classes[node.value.value.id]
            chains.add(f"{module}:{name}.{node.value.attr}.{node.attr}")
    return chains


def test_the_plugin_uses_no_qt5_only_api():
    offenders = {}
    for path in sorted(PLUGIN.rglob("*.py")):
        found = qt5_only_uses(path.read_text(encoding="utf-8"))
        if found:
            offenders[str(path.relative_to(ROOT))] = found
    assert offenders == {}


def test_every_scoped_enum_the_plugin_uses_exists_here():
    chains = set()
    for path in PLUGIN.rglob("*.py"):
        chains |= _scoped_enum_uses(path.read_text(encoding="utf-8"))
    assert any(c.endswith("Qt.DockWidgetArea.RightDockWidgetArea") for c in chains)
    missing = []
    for chain in sorted(chains):
        module, dotted = chain.split(":")
        owner, enum_name, member = dotted.split(".")
        value = getattr(getattr(_resolve(module, owner), enum_name, None), member, None)
        if not _is_enum_member(value):
            missing.append(chain)
    assert missing == []


BAD = """
from PyQt5.QtCore import QRegExp
from qgis.PyQt.QtCore import Qt, QVariant
from qgis.PyQt.QtWidgets import QAction, QDialog, QMessageBox, QDesktopWidget
from qgis.PyQt import QtWidgets
from qgis.core import QgsField

def ask(parent):
    box = QMessageBox(parent)
    box.setStandardButtons(QMessageBox.Yes | QMessageBox.No)
    if box.exec_() == QMessageBox.Yes and QDialog.Accepted:
        parent.setAlignment(Qt.AlignLeft)
    shortcut = QtWidgets.QShortcut(parent)
    box.setIcon(QtWidgets.QMessageBox.Warning)
    return QgsField("name", QVariant.String), shortcut
"""

GOOD = """
from qgis.PyQt import QtWidgets
from qgis.PyQt.QtCore import Qt, QMetaType, pyqtSignal
from qgis.PyQt.QtWidgets import QDialog, QMessageBox
from qgis.core import Qgis, QgsField

try:
    from qgis.PyQt.QtGui import QAction
except ImportError:
    from qgis.PyQt.QtWidgets import QAction

def ask(parent):
    box = QMessageBox(parent)
    box.setStandardButtons(QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No)
    if box.exec() == QMessageBox.StandardButton.Yes and QDialog.DialogCode.Accepted:
        parent.setAlignment(Qt.AlignmentFlag.AlignLeft)
    level = Qgis.Info
    box.setIcon(QtWidgets.QMessageBox.Icon.Warning)
    return QgsField("name", QMetaType.Type.QString), QAction, pyqtSignal, QMessageBox.StandardButton, level
"""


def test_the_check_finds_each_qt5_only_form():
    found = "\n".join(qt5_only_uses(textwrap.dedent(BAD)))
    for expected in (
        "from PyQt5.QtCore",
        "QRegExp is gone",
        "QDesktopWidget is gone",
        "QAction moved to QtGui",
        "QMessageBox.Yes: unscoped enum, write QMessageBox.StandardButton.Yes",
        "QMessageBox.No: unscoped enum",
        "QDialog.Accepted: unscoped enum, write QDialog.DialogCode.Accepted",
        "Qt.AlignLeft: unscoped enum, write Qt.AlignmentFlag.AlignLeft",
        ".exec_(): Qt 6 has only .exec()",
        "QtWidgets.QShortcut moved to QtGui",
        "QtWidgets.QMessageBox.Warning: unscoped enum, write QtWidgets.QMessageBox.Icon.Warning",
        "QVariant.String: QVariant.Type is gone",
    ):
        assert expected in found, expected
    assert qt5_only_uses(textwrap.dedent(GOOD)) == []


def test_metadata_says_qt6_and_qgis4():
    metadata = configparser.ConfigParser()
    metadata.read(ROOT / "metadata.txt", encoding="utf-8")
    general = metadata["general"]
    assert general["supportsQt6"].strip().lower() in ("true", "yes")
    assert general["qgisMinimumVersion"] == "3.22"
    # QGIS's default maximum is the minimum's major + .99 (3.99): QGIS 4 and its LTRs must be named.
    assert tuple(int(p) for p in general["qgisMaximumVersion"].split(".")) >= (4, 99)


def test_result_fields_have_their_types_on_this_qgis():
    from qgis.core import QgsField
    from qgis.PyQt.QtCore import QMetaType

    from rs2sam2_qgis.layers.result_layer import result_fields

    fields = result_fields()
    assert [fields.at(i).name() for i in range(fields.count())] == [
        "phrase",
        "score",
        "area",
        "source",
        "model",
        "created",
    ]
    assert int(fields.field("phrase").type()) == int(QMetaType.Type.QString)
    assert int(fields.field("score").type()) == int(QMetaType.Type.Double)
    # QGIS 3.22 refuses QMetaType in QgsField; from 3.38 on it takes it (and QVariant.Type is deprecated).
    try:
        QgsField("probe", QMetaType.Type.QString)
        takes_metatype = True
    except TypeError:
        takes_metatype = False
    assert qt_compat.field_types_are_metatypes() is takes_metatype


@pytest.mark.parametrize("kind", sorted(qt_compat.FIELD_KINDS))
def test_new_field_every_kind(kind):
    from qgis.PyQt.QtCore import QMetaType

    field = qt_compat.new_field("f", kind)
    assert int(field.type()) == int(getattr(QMetaType.Type, qt_compat.FIELD_KINDS[kind][0]))


def test_new_field_uses_qmetatype_where_qgsfield_takes_it(monkeypatch):
    """What QGIS >= 3.38 and QGIS 4 get: a QMetaType.Type, never the deprecated QVariant.Type."""
    from qgis.PyQt.QtCore import QMetaType

    class MetaTypeOnlyField:
        def __init__(self, name, field_type):
            if not isinstance(field_type, QMetaType.Type):
                raise TypeError("QgsField(): argument 2 has unexpected type")
            self.name, self.field_type = name, field_type

    monkeypatch.setattr(qt_compat, "QgsField", MetaTypeOnlyField)
    qt_compat.field_types_are_metatypes.cache_clear()
    try:
        field = qt_compat.new_field("phrase", "string")
        assert field.field_type == QMetaType.Type.QString
        assert qt_compat.field_types_are_metatypes() is True
    finally:
        qt_compat.field_types_are_metatypes.cache_clear()


def test_qaction_comes_from_where_this_qt_keeps_it():
    from qgis.PyQt import QtGui, QtWidgets

    assert qt_compat.QAction is getattr(QtGui, "QAction", None) or qt_compat.QAction is QtWidgets.QAction
