"""The plugin loads into real QGIS, adds its GUI, and removes every piece of it on unload."""

from __future__ import annotations

from qgis.core import QgsApplication
from qgis.PyQt.QtWidgets import QAction, QDockWidget

import rs2sam2_qgis


def _our_docks(main_window) -> list[QDockWidget]:
    return [d for d in main_window.findChildren(QDockWidget) if d.objectName() == "RS2SAM2SegmentDock"]


def _toolbar_actions(iface) -> list[QAction]:
    return [a for a in iface.plugin_toolbar.actions() if a.objectName() == "RS2SAM2ShowDock"]


def _menu_entries(iface) -> list[str]:
    return [a.text() for a in iface.raster_menu.actions() if a.menu() is not None]


def test_init_gui_adds_dock_menu_toolbar_and_provider(qgis_main_iface):
    plugin = rs2sam2_qgis.classFactory(qgis_main_iface)
    plugin.initGui()
    try:
        main_window = qgis_main_iface.main_window
        docks = _our_docks(main_window)
        assert len(docks) == 1
        assert main_window.dockWidgetArea(docks[0]) != 0  # really docked in the main window
        assert len(_toolbar_actions(qgis_main_iface)) == 1
        assert "&RS2-SAM 2" in _menu_entries(qgis_main_iface)
        assert QgsApplication.processingRegistry().providerById("rs2sam2") is not None

        # The toolbar action shows and hides the dock.
        action = _toolbar_actions(qgis_main_iface)[0]
        action.trigger()
        assert docks[0].isVisibleTo(main_window)
        action.trigger()
        assert not docks[0].isVisibleTo(main_window)
    finally:
        plugin.unload()


def test_unload_removes_everything(qgis_main_iface):
    plugin = rs2sam2_qgis.classFactory(qgis_main_iface)
    plugin.initGui()
    plugin.unload()
    QgsApplication.processEvents()  # let deleteLater() run
    QgsApplication.sendPostedEvents(None, 0)

    main_window = qgis_main_iface.main_window
    assert [d for d in _our_docks(main_window) if main_window.dockWidgetArea(d) != 0] == []
    assert _toolbar_actions(qgis_main_iface) == []
    assert "&RS2-SAM 2" not in _menu_entries(qgis_main_iface)
    assert QgsApplication.processingRegistry().providerById("rs2sam2") is None
