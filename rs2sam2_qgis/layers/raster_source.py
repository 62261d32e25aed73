"""Which raster travels to the backend, and how: a file path, or a GeoTIFF of the requested area.

Preparation (`plan_raster`) touches the layer and so runs on the main thread; it clones what the
export needs, so `RasterPlan.write_geotiff` can then run in a worker thread without touching the
layer. The plugin never tiles: it sends one raster (or one area of it) and the backend tiles.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

from qgis.core import (
    QgsCoordinateReferenceSystem,
    QgsCoordinateTransform,
    QgsCoordinateTransformContext,
    QgsFeedback,
    QgsProviderRegistry,
    QgsRasterBlockFeedback,
    QgsRasterDataProvider,
    QgsRasterFileWriter,
    QgsRasterLayer,
    QgsRasterPipe,
    QgsRectangle,
)
from qgis.PyQt.QtCore import QCoreApplication

MAX_EXPORT_SIDE_PX = 20000  # beyond this an upload is hundreds of MB: ask for a smaller area instead


class RasterSourceError(Exception):
    """The raster or the area cannot be used; the message is for a person."""


def tr(message: str) -> str:
    return QCoreApplication.translate("RasterSource", message)


def layer_file_path(layer: QgsRasterLayer) -> str | None:
    """The file on disk behind a GDAL layer, or None (WMS, XYZ, virtual, /vsi… sources)."""
    if layer.providerType() != "gdal":
        return None
    parts = QgsProviderRegistry.instance().decodeUri("gdal", layer.source())
    path = parts.get("path") or ""
    if parts.get("layerName") or not path or not os.path.isfile(path):
        return None  # a sub-dataset (e.g. one layer of a GeoPackage raster) cannot travel as a path
    return os.path.abspath(path)


def area_in_raster_crs(
    layer: QgsRasterLayer,
    rect: QgsRectangle,
    rect_crs: QgsCoordinateReferenceSystem,
    context: QgsCoordinateTransformContext,
) -> QgsRectangle:
    """`rect` (in `rect_crs`) moved to the raster's CRS and cut to the raster; an error when they miss."""
    if rect_crs.isValid() and rect_crs != layer.crs():
        transform = QgsCoordinateTransform(rect_crs, layer.crs(), context)
        rect = transform.transformBoundingBox(rect)
    area = rect.intersect(layer.extent())
    if area.isEmpty() or area.width() <= 0 or area.height() <= 0:
        raise RasterSourceError(tr("The chosen area is outside the raster “{}”.").format(layer.name()))
    return area


@dataclass
class RasterPlan:
    """Everything needed to send one raster, captured on the main thread."""

    name: str
    crs_authid: str
    crs_wkt: str
    file_path: str | None  # set when the layer is a plain file the backend may read itself
    extent: QgsRectangle  # the requested area in the raster's CRS (the whole layer when no area)
    is_whole_layer: bool
    width_px: int
    height_px: int
    pipe: QgsRasterPipe  # a cloned provider (and renderer for non-file layers) for the GeoTIFF export
    transform_context: QgsCoordinateTransformContext

    def write_geotiff(self, out_path: str, feedback: QgsFeedback | None = None) -> None:
        """Write the requested area as a GeoTIFF (raw bands for files, rendered RGBA otherwise)."""
        writer = QgsRasterFileWriter(out_path)
        writer.setOutputFormat("GTiff")
        writer.setCreateOptions(["COMPRESS=DEFLATE", "TILED=YES", "BIGTIFF=IF_SAFER"])
        crs = QgsCoordinateReferenceSystem.fromWkt(self.crs_wkt)
        # The writer takes a QgsRasterBlockFeedback: relay a plain (e.g. Processing) feedback's cancel.
        block_feedback = QgsRasterBlockFeedback()
        if feedback is not None:
            if feedback.isCanceled():
                return
            feedback.canceled.connect(block_feedback.cancel)
        error = writer.writeRaster(
            self.pipe, self.width_px, self.height_px, self.extent, crs, self.transform_context, block_feedback
        )
        if feedback is not None:
            feedback.canceled.disconnect(block_feedback.cancel)
        if feedback is not None and feedback.isCanceled():
            return
        if error != QgsRasterFileWriter.NoError or not os.path.isfile(out_path):
            raise RasterSourceError(
                tr("Could not write the area of “{}” as a GeoTIFF (error {}).").format(self.name, int(error))
            )


def plan_raster(
    layer: QgsRasterLayer,
    area: QgsRectangle | None,
    context: QgsCoordinateTransformContext,
    units_per_pixel: float | None = None,
) -> RasterPlan:
    """Check the layer and capture how to send it. `area` is already in the raster's CRS."""
    if layer is None or not layer.isValid():
        raise RasterSourceError(tr("The raster layer is not available."))
    if not layer.crs().isValid():
        raise RasterSourceError(
            tr(
                "The raster “{}” has no coordinate reference system; set one in its "
                "layer properties first."
            ).format(layer.name())
        )
    provider: QgsRasterDataProvider = layer.dataProvider()
    extent = QgsRectangle(area) if area is not None else QgsRectangle(layer.extent())
    file_path = layer_file_path(layer)
    has_size = bool(provider.capabilities() & QgsRasterDataProvider.Size) and provider.xSize() > 0
    if has_size and (layer.providerType() == "gdal" or not units_per_pixel):
        # Files go at their native resolution: the backend resamples when asked (GSD), never the plugin.
        res_x = layer.extent().width() / provider.xSize()
        res_y = layer.extent().height() / provider.ySize()
    elif units_per_pixel:
        # Web and other non-file layers are rendered at the resolution the caller asks for (the map's).
        res_x = res_y = units_per_pixel
    else:
        raise RasterSourceError(
            tr(
                "The layer “{}” has no pixels of its own; give the resolution to render it " "at (GSD)."
            ).format(layer.name())
        )
    width = max(1, math.ceil(extent.width() / res_x - 1e-6))
    height = max(1, math.ceil(extent.height() / res_y - 1e-6))
    if file_path is None and max(width, height) > MAX_EXPORT_SIDE_PX:
        raise RasterSourceError(
            tr("The area is {} × {} pixels, too large to send; choose a smaller area or " "zoom out.").format(
                width, height
            )
        )
    pipe = QgsRasterPipe()
    pipe.set(provider.clone())
    if file_path is None and layer.providerType() != "gdal" and layer.renderer() is not None:
        # Web and other non-file layers are sent as they look on the map (rendered RGBA).
        pipe.set(layer.renderer().clone())
    return RasterPlan(
        name=layer.name(),
        crs_authid=layer.crs().authid(),
        crs_wkt=layer.crs().toWkt(),
        file_path=file_path,
        extent=extent,
        is_whole_layer=area is None,
        width_px=width,
        height_px=height,
        pipe=pipe,
        transform_context=context,
    )
