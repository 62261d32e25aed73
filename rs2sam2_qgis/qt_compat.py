"""The few names whose spelling differs between the QGIS versions the plugin supports: 3.22 (Qt 5)
through the 3.40/3.44 long-term releases to QGIS 4 (Qt 6).

Everything else in the plugin is written in forms every one of them accepts (scoped enums such as
`Qt.DockWidgetArea.RightDockWidgetArea`, `exec()`); tests/plugin/test_qt6_ready.py keeps it so.
"""

from __future__ import annotations

from functools import cache

from qgis.core import QgsField
from qgis.PyQt.QtCore import QMetaType, QVariant

try:  # Qt 6 moved QAction from QtWidgets to QtGui.
    from qgis.PyQt.QtGui import QAction
except ImportError:  # Qt 5
    from qgis.PyQt.QtWidgets import QAction

__all__ = ["FIELD_KINDS", "QAction", "new_field"]

# A field kind -> its QMetaType.Type member, and the QVariant.Type member QGIS < 3.38 wants instead.
FIELD_KINDS: dict[str, tuple[str, str]] = {
    "string": ("QString", "String"),
    "double": ("Double", "Double"),
    "int": ("Int", "Int"),
    "int64": ("LongLong", "LongLong"),
    "bool": ("Bool", "Bool"),
    "datetime": ("QDateTime", "DateTime"),
}


@cache
def field_types_are_metatypes() -> bool:
    """Whether this QGIS's QgsField takes a QMetaType.Type (QGIS >= 3.38, where QVariant.Type is
    deprecated, and QGIS 4, where it is gone) rather than a QVariant.Type (QGIS 3.22-3.36)."""
    try:
        QgsField("probe", QMetaType.Type.QString)
    except TypeError:
        return False
    return True


def new_field(name: str, kind: str) -> QgsField:
    """A QgsField of one of FIELD_KINDS, in the type system this QGIS expects."""
    metatype, variant = FIELD_KINDS[kind]
    if field_types_are_metatypes():
        return QgsField(name, getattr(QMetaType.Type, metatype))
    # The only QVariant.Type use in the plugin: QGIS 3.22-3.36 accept nothing else.
    return QgsField(name, getattr(QVariant, variant))
