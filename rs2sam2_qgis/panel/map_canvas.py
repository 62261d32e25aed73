"""What the panel does on the map: drawing the rectangle a run searches, and putting a run's polygons
into layers and into view."""

from __future__ import annotations

from collections.abc import Callable

from qgis.core import Qgis, QgsCoordinateReferenceSystem, QgsCoordinateTransform, QgsProject, QgsRectangle
from qgis.gui import QgsMapToolExtent
from qgis.PyQt.QtCore import QCoreApplication

from ..layers.result_layer import store_collection
from .notify import guarded, notify


class RectangleDrawing:
    """The map tool that draws the area rectangle; the tool that was active before comes back after."""

    def __init__(self, canvas, on_drawn: Callable[[QgsRectangle, QgsCoordinateReferenceSystem], None]):
        self.canvas = canvas
        self.on_drawn = on_drawn
        self.tool: QgsMapToolExtent | None = None
        self._previous_tool = None

    def start(self) -> None:
        if self.tool is None:
            self.tool = QgsMapToolExtent(self.canvas)
            self.tool.extentChanged.connect(self._on_drawn)
        self._previous_tool = self.canvas.mapTool()
        self.canvas.setMapTool(self.tool)

    @guarded
    def _on_drawn(self, rect: QgsRectangle) -> None:
        if rect.isEmpty():
            return
        self.on_drawn(rect, self.canvas.mapSettings().destinationCrs())
        if self._previous_tool is not None and self._previous_tool is not self.tool:
            self.canvas.setMapTool(self._previous_tool)
        else:
            self.canvas.unsetMapTool(self.tool)

    def close(self) -> None:
        if self.tool is not None:
            if self.canvas is not None:
                self.canvas.unsetMapTool(self.tool)
            self.tool.deleteLater()
            self.tool = None


def zoom_if_outside(canvas, crs: QgsCoordinateReferenceSystem, features) -> None:
    """Bring `features` (in `crs`) into view when the canvas does not show them all."""
    extent = QgsRectangle()
    for feature in features:
        extent.combineExtentWith(feature.geometry().boundingBox())
    canvas_crs = canvas.mapSettings().destinationCrs()
    if canvas_crs.isValid() and canvas_crs != crs:
        extent = QgsCoordinateTransform(crs, canvas_crs, QgsProject.instance()).transformBoundingBox(extent)
    if not canvas.extent().contains(extent):
        extent.scale(1.2)
        canvas.setExtent(extent)
    canvas.refresh()


def show_result(iface, task, output_gpkg: str) -> tuple[list, str]:
    """Put a finished run's polygons into their layers, bring them into view and say so. Returns the
    layers with how many polygons each gained, and the panel's status line; ResultLayerError when the
    layers cannot be written."""
    phrase = task.job.phrases[0]
    stored, features = store_collection(
        QgsProject.instance(),
        task.outcome.collection,
        QgsCoordinateReferenceSystem.fromWkt(task.job.plan.crs_wkt),
        output_gpkg,
        clip=task.job.clip,
    )
    layers = [(result.layer, result.added) for result in stored]
    if not features:
        notify(iface, tr("Nothing matching “{}” was found in the area.").format(phrase), Qgis.Info)
        return layers, tr("Nothing found for “{}”.").format(phrase)
    zoom_if_outside(iface.mapCanvas(), stored[0].layer.crs(), features)
    notify(iface, tr("“{}”: {} polygon(s) added.").format(phrase, len(features)), Qgis.Success)
    added = sum(count for _, count in layers)
    return layers, tr("Added {} polygon(s) to “{}”.").format(added, layers[0][0].name())


def tr(message: str) -> str:
    return QCoreApplication.translate("SegmentDock", message)
