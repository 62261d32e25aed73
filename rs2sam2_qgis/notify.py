"""Messages for people: the message bar (with an optional action button) and the log panel."""

from __future__ import annotations

from collections.abc import Callable

from qgis.core import Qgis, QgsMessageLog
from qgis.PyQt.QtWidgets import QPushButton

from .resources import LOG_TAG

MESSAGE_SECONDS = {Qgis.Info: 5, Qgis.Success: 5, Qgis.Warning: 10, Qgis.Critical: 0}


def log(message: str, level=Qgis.Info) -> None:
    QgsMessageLog.logMessage(message, LOG_TAG, level)


def notify(iface, message: str, level=Qgis.Info, buttons: list[tuple[str, Callable[[], None]]] | None = None,
           details: str = "") -> None:
    """Show `message` in the message bar (and log it, with `details` such as a process's output)."""
    log(f"{message}\n{details}" if details else message, level)
    if iface is None:
        return
    bar = iface.messageBar()
    item = bar.createMessage("RS2-SAM 2", message)
    for text, callback in buttons or []:
        button = QPushButton(text, item)
        button.clicked.connect(callback)
        item.layout().addWidget(button)
    bar.pushWidget(item, level, MESSAGE_SECONDS.get(level, 0))
