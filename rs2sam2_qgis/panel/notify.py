"""Messages for people: the message bar (with an optional action button) and the log panel."""

from __future__ import annotations

import functools
import inspect
import traceback
from collections.abc import Callable

from qgis.core import Qgis, QgsMessageLog
from qgis.PyQt.QtCore import QCoreApplication
from qgis.PyQt.QtWidgets import QPushButton

from ..resources import LOG_TAG

MESSAGE_SECONDS = {Qgis.Info: 5, Qgis.Success: 5, Qgis.Warning: 10, Qgis.Critical: 0}


def log(message: str, level=Qgis.Info) -> None:
    QgsMessageLog.logMessage(message, LOG_TAG, level)


def notify(
    iface,
    message: str,
    level=Qgis.Info,
    buttons: list[tuple[str, Callable[[], None]]] | None = None,
    details: str = "",
) -> None:
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


def guarded(method):
    """For slots the user triggers: an unexpected error becomes a message and a log entry with the
    traceback, never QGIS's Python error dialog."""

    # Qt passes a signal's arguments (e.g. clicked's `checked`) to slots that accept them; like PyQt,
    # drop the ones the method does not take, since the wrapper itself accepts anything.
    parameters = list(inspect.signature(method).parameters.values())[1:]
    if any(p.kind == inspect.Parameter.VAR_POSITIONAL for p in parameters):
        positional = None
    else:
        positional = sum(
            p.kind in (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
            for p in parameters
        )

    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        try:
            return method(self, *(args if positional is None else args[:positional]), **kwargs)
        except Exception as exc:  # noqa: BLE001 - the last line of defence for UI slots
            log(traceback.format_exc(), Qgis.Critical)
            notify(
                getattr(self, "iface", None),
                QCoreApplication.translate(
                    "Notify", "Something went wrong in RS2-SAM 2 ({}); the details are in " "the log panel."
                ).format(exc),
                Qgis.Critical,
            )
            return None

    return wrapper
