"""`make plugin` builds a zip that QGIS's plugin rules accept and that loads into real QGIS."""

from __future__ import annotations

import configparser
import re
import sys
import zipfile
from pathlib import Path

from qgis.core import QgsApplication

ROOT = Path(__file__).resolve().parents[2]
REQUIRED_METADATA = (
    "name",
    "qgisMinimumVersion",
    "description",
    "about",
    "version",
    "author",
    "email",
    "repository",
)


def test_zip_follows_qgis_plugin_rules(plugin_zip):
    with zipfile.ZipFile(plugin_zip) as archive:
        names = archive.namelist()
        # One top folder, the package QGIS imports: its name must be a Python identifier.
        (top,) = {name.split("/", 1)[0] for name in names}
        assert re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", top), top
        assert top == "rs2sam2_qgis" == plugin_zip.name.split("-", 1)[0]
        for required in ("__init__.py", "metadata.txt", "LICENSE"):
            assert f"rs2sam2_qgis/{required}" in names
        assert not any("__pycache__" in n or n.endswith(".pyc") for n in names)
        metadata = configparser.ConfigParser()
        metadata.read_string(archive.read("rs2sam2_qgis/metadata.txt").decode("utf-8"))
        general = metadata["general"]
        for field in REQUIRED_METADATA:
            assert general.get(field, "").strip(), f"metadata.txt lacks {field}"
        assert f"rs2sam2_qgis/{general['icon']}" in names
        assert general["hasProcessingProvider"] == "yes"
        assert b"def classFactory" in archive.read("rs2sam2_qgis/__init__.py")
        # The zip carries the root metadata.txt unchanged (one source of truth).
        assert archive.read("rs2sam2_qgis/metadata.txt") == (ROOT / "metadata.txt").read_bytes()
        # The plugin's own code never imports torch (the backend it sets up is in backend_bundle/).
        for name in names:
            if name.endswith(".py") and not name.startswith("rs2sam2_qgis/backend_bundle/"):
                text = archive.read(name).decode("utf-8")
                assert not re.search(r"^\s*(import torch|from torch)", text, re.M), name
        # Small enough for the official plugin repository (25 MB), and nothing it refuses.
        assert plugin_zip.stat().st_size < 25_000_000
        assert not any(part in ("__MACOSX", ".git") for n in names for part in n.split("/"))


def test_the_zip_carries_the_backend_it_sets_up(plugin_zip):
    """The backend travels as source: what `rs2sam2 serve` needs, the training package its fine-tuning jobs
    run, the demo model, the pinned requirements — not the tests or benchmarks."""
    import json
    import tomllib

    with zipfile.ZipFile(plugin_zip) as archive:
        names = set(archive.namelist())
        bundle = "rs2sam2_qgis/backend_bundle/"
        inside = {n[len(bundle) :] for n in names if n.startswith(bundle)}
        project = tomllib.loads(archive.read(bundle + "pyproject.toml").decode())
        manifest = json.loads(archive.read(bundle + "manifest.json"))
        contract = archive.read(bundle + "rs2sam2_qgis/contract.py")
        training_contract = archive.read(bundle + "rs2sam2_qgis/training_contract.py")
        constraints = archive.read(bundle + "constraints.txt").decode().splitlines()  # one requirement a line
    root = tomllib.loads((ROOT / "pyproject.toml").read_text())
    for package in ("backend", "training"):
        for path in ROOT.joinpath(package).rglob("*"):
            if path.name.endswith(".aux.xml"):  # GDAL's sidecar, written by whoever opened a raster
                assert f"{package}/{path.relative_to(ROOT / package).as_posix()}" not in inside, path
            elif path.is_file() and "__pycache__" not in path.parts:
                assert f"{package}/{path.relative_to(ROOT / package).as_posix()}" in inside, path
    assert "backend/demo/assets/rs2sam2-demo.safetensors" in inside
    assert not any(n.startswith(("bench/", "tests/")) for n in inside)
    assert contract == (ROOT / "rs2sam2_qgis" / "contract.py").read_bytes()
    assert training_contract == (ROOT / "rs2sam2_qgis" / "training_contract.py").read_bytes()
    # The same pins as the repository (not the training extras); the backend's and training's commands.
    assert project["project"]["dependencies"] == root["project"]["dependencies"] == constraints
    assert set(project["project"]["entry-points"]["rs2sam2.commands"]) == {
        "segment",
        "serve",
        "weights",
        "demo",
        "models",
        "train",
        "evaluate",
    }
    assert "training*" in project["tool"]["setuptools"]["packages"]["find"]["include"]
    pins = {re.split(r"[=<>~!; ]", pin, maxsplit=1)[0]: pin for pin in root["project"]["dependencies"]}
    assert manifest["staged"] == {name: pins[name] for name in ("torch", "torchvision", "sam2")}
    assert len(manifest["fingerprint"]) == 64


def test_unpacked_zip_loads_and_unloads_in_qgis(plugin_zip, tmp_path, qgis_main_iface, monkeypatch):
    import qgis.utils

    with zipfile.ZipFile(plugin_zip) as archive:
        archive.extractall(tmp_path)
    # Load the unpacked copy, not the source tree.
    for name in [m for m in sys.modules if m == "rs2sam2_qgis" or m.startswith("rs2sam2_qgis.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.syspath_prepend(str(tmp_path))
    errors: list[str] = []
    monkeypatch.setattr(
        qgis.utils,
        "showException",
        lambda etype, value, tb, msg, *a, **k: errors.append(f"{msg}: {etype.__name__}: {value}"),
    )

    # Install it the way QGIS finds plugins: a plugin folder on plugin_paths, scanned with its metadata.
    monkeypatch.setattr(qgis.utils, "plugin_paths", [str(tmp_path)])
    monkeypatch.setattr(qgis.utils, "available_plugins", [])
    qgis.utils.updateAvailablePlugins()
    assert "rs2sam2_qgis" in qgis.utils.available_plugins
    assert qgis.utils.pluginMetadata("rs2sam2_qgis", "name") == "RS2-SAM 2 Text Segmentation"

    assert qgis.utils.loadPlugin("rs2sam2_qgis")
    try:
        assert qgis.utils.startPlugin("rs2sam2_qgis"), errors
        module = sys.modules["rs2sam2_qgis"]
        assert Path(module.__file__).resolve().parent == (tmp_path / "rs2sam2_qgis").resolve()
        assert QgsApplication.processingRegistry().providerById("rs2sam2") is not None
        actions = [a for a in qgis_main_iface.plugin_toolbar.actions() if a.objectName() == "RS2SAM2ShowDock"]
        assert len(actions) == 1 and not actions[0].icon().isNull()
    finally:
        assert qgis.utils.unloadPlugin("rs2sam2_qgis"), errors
    assert QgsApplication.processingRegistry().providerById("rs2sam2") is None
    assert [a for a in qgis_main_iface.plugin_toolbar.actions() if a.objectName() == "RS2SAM2ShowDock"] == []
    for name in [m for m in sys.modules if m == "rs2sam2_qgis" or m.startswith("rs2sam2_qgis.")]:
        del sys.modules[name]
