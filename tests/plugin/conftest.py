"""QGIS fixtures for plugin tests.

pytest-qgis's `qgis_iface` records nothing for docks, toolbar icons and plugin menus; `qgis_main_iface`
gives those calls what QGIS's own QgisApp does with them (a dock in the main window, an icon on the
Plugins toolbar, an entry under the Raster menu), so tests assert on the main window itself.
"""

from __future__ import annotations

import pytest
from qgis.PyQt.QtWidgets import QMenu, QToolBar


class _MainWindowIface:
    """Routes the plugin-facing iface calls to real widgets of pytest-qgis's main window."""

    def __init__(self, iface):
        self._iface = iface
        self.main_window = iface.mainWindow()
        self.plugin_toolbar = self.main_window.findChild(QToolBar, "mPluginToolBar") or QToolBar(
            "Plugins", self.main_window
        )
        self.plugin_toolbar.setObjectName("mPluginToolBar")
        self.main_window.addToolBar(self.plugin_toolbar)
        menu_bar = self.main_window.menuBar()
        self.raster_menu = self.main_window.findChild(QMenu, "mRasterMenu")
        if self.raster_menu is None:
            self.raster_menu = menu_bar.addMenu("&Raster")
            self.raster_menu.setObjectName("mRasterMenu")

    def __getattr__(self, name):
        return getattr(self._iface, name)

    def addDockWidget(self, area, dock):  # noqa: N802
        self.main_window.addDockWidget(area, dock)

    def removeDockWidget(self, dock):  # noqa: N802
        self.main_window.removeDockWidget(dock)

    def addToolBarIcon(self, action):  # noqa: N802
        self.plugin_toolbar.addAction(action)

    def removeToolBarIcon(self, action):  # noqa: N802
        self.plugin_toolbar.removeAction(action)

    def _submenu(self, name: str, create: bool) -> QMenu | None:
        for action in self.raster_menu.actions():
            if action.menu() is not None and action.text() == name:
                return action.menu()
        return self.raster_menu.addMenu(name) if create else None

    def addPluginToRasterMenu(self, name, action):  # noqa: N802
        self._submenu(name, create=True).addAction(action)

    def removePluginRasterMenu(self, name, action):  # noqa: N802
        submenu = self._submenu(name, create=False)
        if submenu is None:
            return
        submenu.removeAction(action)
        if not submenu.actions():
            self.raster_menu.removeAction(submenu.menuAction())


@pytest.fixture()
def qgis_main_iface(qgis_iface, qgis_processing):
    """An iface whose plugin calls land in a real main window; Processing initialised."""
    import qgis.utils

    iface = _MainWindowIface(qgis_iface)
    previous = qgis.utils.iface
    qgis.utils.iface = iface
    yield iface
    qgis.utils.iface = previous
