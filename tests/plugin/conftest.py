"""QGIS fixtures for plugin tests.

pytest-qgis's `qgis_iface` records nothing for docks, toolbar icons and plugin menus; `qgis_main_iface`
gives those calls what QGIS's own QgisApp does with them (a dock in the main window, an icon on the
Plugins toolbar, an entry under the Raster menu), so tests assert on the main window itself.
"""

from __future__ import annotations

import pytest
from qgis.PyQt.QtWidgets import QMenu, QToolBar

from tests.plugin.auth_fixtures import qgis_auth_master_password  # noqa: F401 - an autouse fixture
from tests.plugin.setup_fixtures import plugin_zip, zipped_plugin  # noqa: F401 - the zip, built once per run
from tests.standin_serve import STANDIN_MODEL_ID


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


# -- fixtures for the plugin's behaviour tests ---------------------------------------------------

RASTER_EPSG = 32633
RASTER_ORIGIN = (500000.0, 5000000.0)  # upper-left corner, metres
RASTER_PIXEL = 10.0


# What the plugin's test scene holds (pixel columns/rows, end exclusive) on a dull background: the
# colour stand-in model behind the real service finds "red …" and "blue …" exactly there.
def lost_backend_sentences(url: str) -> set[str]:
    """What the plugin says when the backend dies mid-run: the reason is how the poll after the death met
    it — refused (no connection), reset (a request in flight or a kept-alive connection), or broken off
    mid-answer — which the timing of the kill decides."""
    reasons = ("connection refused", "connection reset", "the connection broke off")
    return {
        f"The backend at {url} stopped answering during the run ({r}); no result came back." for r in reasons
    }


RED_SQUARE = (20, 20, 44, 44)  # col0, row0, col1, row1
BLUE_PATCH = (11, 40, 17, 48)


def pixel_rect(cols_rows: tuple[int, int, int, int]) -> tuple[float, float, float, float]:
    """Map coordinates (xmin, ymin, xmax, ymax) of a (col0, row0, col1, row1) block of the test scene."""
    col0, row0, col1, row1 = cols_rows
    x0, y0 = RASTER_ORIGIN
    return (
        x0 + col0 * RASTER_PIXEL,
        y0 - row1 * RASTER_PIXEL,
        x0 + col1 * RASTER_PIXEL,
        y0 - row0 * RASTER_PIXEL,
    )


def write_geotiff(path, size: int = 64, seed: int = 7, epsg: int | None = RASTER_EPSG) -> str:
    """A small seeded 3-band GeoTIFF in UTM 33N (or without CRS when epsg is None): grey-green noise
    (far from every colour the stand-in model knows) with a red square and a blue patch."""
    import numpy as np
    from osgeo import gdal, osr

    rng = np.random.default_rng(seed)
    data = rng.integers(100, 150, (3, size, size), dtype=np.uint8)
    for (col0, row0, col1, row1), colour in ((RED_SQUARE, (255, 0, 0)), (BLUE_PATCH, (0, 0, 255))):
        for band, value in enumerate(colour):
            data[band, row0:row1, col0:col1] = value
    dataset = gdal.GetDriverByName("GTiff").Create(str(path), size, size, 3, gdal.GDT_Byte)
    dataset.SetGeoTransform((RASTER_ORIGIN[0], RASTER_PIXEL, 0, RASTER_ORIGIN[1], 0, -RASTER_PIXEL))
    if epsg is not None:
        srs = osr.SpatialReference()
        srs.ImportFromEPSG(epsg)
        dataset.SetProjection(srs.ExportToWkt())
    for band in range(3):
        dataset.GetRasterBand(band + 1).WriteArray(data[band])
    dataset.FlushCache()
    dataset = None
    return str(path)


@pytest.fixture()
def geotiff(tmp_path) -> str:
    return write_geotiff(tmp_path / "scene.tif")


@pytest.fixture()
def plugin_settings(qgis_app):
    """The plugin's QgsSettings group, empty before and after the test (pytest-qgis keeps its own profile)."""
    from qgis.core import QgsSettings

    from rs2sam2_qgis.resources import SETTINGS_PREFIX
    from rs2sam2_qgis.settings import PluginSettings

    QgsSettings().remove(SETTINGS_PREFIX)
    yield PluginSettings
    QgsSettings().remove(SETTINGS_PREFIX)


# The backend the plugin's tests talk to: the real service app (backend.service.app.create_app) on a real
# uvicorn server on 127.0.0.1, in this process (tests/live_server.py), with a deterministic stand-in
# model (the colour model of tests/engine/standin.py, or the held one for cancelling). Its answers and
# error codes are the real ones; what the plugin sent is in `server.requests`.
MAX_UPLOAD_MB = 50.0


@pytest.fixture()
def serve(tmp_path):
    """Start a backend: `serve(model=None, **ServiceConfig fields) -> LiveServer`. By default the colour
    model, reading paths under the test's tmp_path, uploads up to 50 MB."""
    import contextlib

    from backend.service.config import ServiceConfig
    from tests.engine.standin import ColourModel
    from tests.live_server import live_server

    with contextlib.ExitStack() as stack:

        def start(model=None, **config):
            config.setdefault("allowed_roots", (tmp_path,))
            config.setdefault("max_upload_mb", MAX_UPLOAD_MB)
            model = model or ColourModel(64, model_id=STANDIN_MODEL_ID)
            return stack.enter_context(live_server(model, ServiceConfig(**config)))

        yield start


@pytest.fixture()
def server(serve):
    """The default backend (see `serve`)."""
    return serve()


@pytest.fixture()
def clean_project(qgis_app):
    """An empty project before and after (layers created by the test are removed)."""
    from qgis.core import QgsProject

    QgsProject.instance().removeAllMapLayers()
    yield QgsProject.instance()
    QgsProject.instance().removeAllMapLayers()


def wait_until(condition, timeout_s: float = 20.0, what: str = "condition") -> None:
    """Turn the event loop until `condition()` holds; fail after `timeout_s` (never time.sleep alone)."""
    import time

    from qgis.core import QgsApplication

    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        QgsApplication.processEvents()
        time.sleep(0.01)


def xyz_layer_uri(folder) -> str:
    """A one-tile XYZ layer (zoom 0, a flat red world) served from local files: a raster without a file."""
    from pathlib import Path

    from qgis.PyQt.QtGui import QColor, QImage

    tile_dir = Path(folder) / "tiles" / "0" / "0"
    tile_dir.mkdir(parents=True)
    tile = QImage(256, 256, QImage.Format_ARGB32)
    tile.fill(QColor(200, 30, 30))
    tile.save(str(tile_dir / "0.png"))
    url = (Path(folder) / "tiles").as_uri() + "/{z}/{x}/{y}.png"
    return f"type=xyz&url={url}&zmin=0&zmax=0"


@pytest.fixture()
def killable_backend(tmp_path):
    """A real `rs2sam2 serve` process (the colour stand-in that never finishes a model call:
    tests/standin_serve.py) reading paths under tmp_path: (url, process, marker). The marker file
    appears once a job is inside the model; from then on the test may kill the process."""
    from tests.standin_serve import MARKER, TILE_S, start_serve

    marker = tmp_path / "model-entered"
    process, api = start_serve(tmp_path, tmp_path / "backend.log", {MARKER: str(marker), TILE_S: "inf"})
    try:
        yield api.removesuffix("/api/v1"), process, marker
    finally:
        if process.poll() is None:
            process.kill()
        process.wait()


@pytest.fixture()
def provider(qgis_processing):
    """The plugin's Processing provider, registered for the test and removed after it."""
    from qgis.core import QgsApplication

    from rs2sam2_qgis.processing.provider import RS2SAM2Provider

    registry = QgsApplication.processingRegistry()
    if registry.providerById("rs2sam2") is None:
        registry.addProvider(RS2SAM2Provider())
    yield registry.providerById("rs2sam2")
    registry.removeProvider("rs2sam2")


@pytest.fixture()
def make_dock(qgis_iface, qgis_canvas, plugin_settings, clean_project):
    """make_dock(**settings): a panel with these settings saved first; all are shut down after the test,
    with the local backend any of them started."""
    from rs2sam2_qgis.connection.backend import stop_local_backend
    from rs2sam2_qgis.panel.dock import SegmentDock
    from rs2sam2_qgis.settings import PluginSettings

    docks = []
    qgis_iface.messageBar().clearWidgets()
    qgis_canvas.resize(400, 300)

    def make(**settings) -> SegmentDock:
        PluginSettings(**settings).save()
        dock = SegmentDock(qgis_iface)
        docks.append(dock)
        return dock

    yield make
    for dock in docks:
        dock.shutdown()
        dock.deleteLater()
    stop_local_backend()
    qgis_iface.messageBar().clearWidgets()
