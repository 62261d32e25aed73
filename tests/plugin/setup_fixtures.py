"""Fixtures for the first-run set-up tests: the zip `make plugin` builds, unpacked into a fresh QGIS
profile and imported from there, and a wheel folder for the offline install (tests/plugin/wheelhouse.py).

Installing the backend is the expensive part (here: about a minute and 5–6 GB for torch's CUDA build
from local files), so it happens once per test module, and the folder is removed afterwards.
"""

from __future__ import annotations

import importlib
import os
import shutil
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PLUGIN = "rs2sam2_qgis"


@dataclass
class ZippedPlugin:
    """The plugin installed from its zip into a fresh profile, and its modules imported from there."""

    zip_path: Path
    config: Path  # QGIS_CUSTOM_CONFIG_PATH of the fresh profile
    plugins: Path  # <config>/profiles/default/python/plugins
    setup_folder: Path  # where the set-up builds the backend's environment
    wheels: Path  # the offline wheel folder

    @property
    def folder(self) -> Path:
        return self.plugins / PLUGIN

    @property
    def bundle(self) -> Path:
        return self.folder / "backend_bundle"

    def module(self, name: str):
        """`rs2sam2_qgis.<name>` of the unpacked copy."""
        return importlib.import_module(f"{PLUGIN}.{name}" if name else PLUGIN)

    def write_profile_settings(self, **values) -> None:
        """The plugin's settings in the fresh profile's QGIS3.ini (what qgis_process and a restarted
        QGIS read), plus the plugin enabled."""
        ini = self.config / "profiles" / "default" / "QGIS" / "QGIS3.ini"
        ini.parent.mkdir(parents=True, exist_ok=True)
        lines = ["[PythonPlugins]", f"{PLUGIN}=true", "", "[rs2sam2]"]
        lines += [f"{key}={value}" for key, value in values.items()]
        ini.write_text("\n".join(lines) + "\n", encoding="utf-8")


def build_plugin_zip(out: Path) -> Path:
    built = subprocess.run(
        ["make", "-s", "plugin", f"PLUGIN_OUT={out}"], cwd=ROOT, capture_output=True, text=True, check=True
    )
    return Path(built.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="session")
def plugin_zip(tmp_path_factory) -> Path:
    """`make plugin`'s zip, built once per test run (the tests that unpack it never write into it)."""
    return build_plugin_zip(tmp_path_factory.mktemp("dist"))


def _our_modules() -> dict:
    return {name: mod for name, mod in sys.modules.items() if name == PLUGIN or name.startswith(PLUGIN + ".")}


@pytest.fixture(scope="module")
def zipped_plugin(tmp_path_factory, qgis_app, plugin_zip):
    """`make plugin`'s zip unpacked into a fresh profile; `rs2sam2_qgis` imported from it for the module's
    tests (the checkout's modules are put back afterwards). The set-up folder is deleted at the end."""
    from tests.plugin.wheelhouse import build_wheelhouse, bundle_requirements

    work = tmp_path_factory.mktemp("first-run")
    zip_path = plugin_zip
    config = work / "qgis-config"
    plugins = config / "profiles" / "default" / "python" / "plugins"
    plugins.mkdir(parents=True)
    with zipfile.ZipFile(zip_path) as archive:
        archive.extractall(plugins)
    bundle = plugins / PLUGIN / "backend_bundle"
    requirements, alone = bundle_requirements(bundle)
    wheels = build_wheelhouse(requirements, work / "wheels", alone)
    installed = ZippedPlugin(zip_path, config, plugins, work / "backend-setup", wheels)

    saved = _our_modules()
    for name in saved:
        del sys.modules[name]
    sys.path.insert(0, str(plugins))
    try:
        module = importlib.import_module(PLUGIN)
        assert Path(module.__file__).resolve().parent == (plugins / PLUGIN).resolve()
        yield installed
    finally:
        for name, mod in _our_modules().items():
            stop = getattr(mod, "stop_local_backend", None)
            if callable(stop):
                stop()
            del sys.modules[name]
        sys.modules.update(saved)
        sys.path.remove(str(plugins))
        # Gigabytes (the environment) and hundreds of megabytes (the wheel folder): never left behind.
        remove_in_background(installed.setup_folder, installed.wheels)


def live_children(marker: str, parent=None) -> list:
    """Live (not zombie) descendants of `parent` (default: this process) whose command line holds `marker`."""
    import psutil

    found = []
    for child in (parent or psutil.Process()).children(recursive=True):
        try:
            if child.status() != psutil.STATUS_ZOMBIE and marker in " ".join(child.cmdline()):
                found.append(child)
        except psutil.Error:  # gone, or a zombie, since the listing
            continue
    return found


def remove_in_background(*folders: Path) -> None:
    """Deleting the 6 GB environment took 1–2 minutes on this busy disk: the folders are renamed at once
    (nothing can use them any more) and a detached `rm -rf` deletes them while the suite goes on; it
    finishes even when the test process ends first."""
    doomed = []
    for folder in folders:
        if folder.exists():
            target = folder.with_name(folder.name + ".deleting")
            folder.rename(target)
            doomed.append(str(target))
    if not doomed:
        return
    if shutil.which("rm"):
        subprocess.Popen(["rm", "-rf", *doomed], start_new_session=True)
    else:
        for folder in doomed:
            shutil.rmtree(folder, ignore_errors=True)


# Run by a separate QGIS process (the test kills it mid-install): the plugin's set-up task, started as
# the panel's button starts it, with the settings of the fresh profile.
SETUP_DRIVER = r"""
import os, sys
from qgis.PyQt.QtCore import QCoreApplication, QSettings
from qgis.core import QgsApplication
# The profile's QGIS3.ini as QGIS itself opens it.
profile = os.path.join(os.environ["QGIS_CUSTOM_CONFIG_PATH"], "profiles", "default")
QCoreApplication.setOrganizationName(QgsApplication.QGIS_ORGANIZATION_NAME)
QCoreApplication.setOrganizationDomain(QgsApplication.QGIS_ORGANIZATION_DOMAIN)
QCoreApplication.setApplicationName(QgsApplication.QGIS_APPLICATION_NAME)
QSettings.setDefaultFormat(QSettings.IniFormat)
QSettings.setPath(QSettings.IniFormat, QSettings.UserScope, profile)
app = QgsApplication([], False, profile)
app.initQgis()
sys.path.insert(0, sys.argv[1])
from rs2sam2_qgis.setup.backend_env import Bundle
from rs2sam2_qgis.settings import PluginSettings
from rs2sam2_qgis.panel.setup_controller import setup_options
from rs2sam2_qgis.setup.task import SetupTask
task = SetupTask(setup_options(PluginSettings.load()), Bundle.load(), lambda t: app.exit(0 if t.state else 1))
QgsApplication.taskManager().addTask(task)
sys.exit(app.exec_())
"""


def start_setup_in_another_qgis(installed: ZippedPlugin) -> subprocess.Popen:
    script = installed.config / "setup_driver.py"
    script.write_text(SETUP_DRIVER, encoding="utf-8")
    env = dict(os.environ, QGIS_CUSTOM_CONFIG_PATH=str(installed.config), QT_QPA_PLATFORM="offscreen")
    env.pop("PYTHONPATH", None)  # the plugin comes from the profile, not from this checkout
    return subprocess.Popen(
        [sys.executable, str(script), str(installed.plugins)],
        env=env,
        cwd=installed.config,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def write_official_weight_files(mirror: Path, clip: bool = True) -> dict[str, int]:
    """Randomly initialised SAM 2.1 Hiera-T (and CLIP ViT-B-16) in the official file layouts, at the
    official paths: what the backend's verification loads (the real architectures), not what they know."""
    import open_clip
    import torch
    from safetensors.torch import save_file
    from sam2.build_sam import build_sam2

    sam2_path = mirror / "segment_anything_2" / "092824" / "sam2.1_hiera_tiny.pt"
    clip_path = (
        mirror
        / "timm"
        / "vit_base_patch16_clip_224.openai"
        / "resolve"
        / "main"
        / "open_clip_model.safetensors"
    )
    for path in (sam2_path, clip_path):
        path.parent.mkdir(parents=True, exist_ok=True)
    sam = build_sam2(
        "configs/sam2.1/sam2.1_hiera_t.yaml", ckpt_path=None, device="cpu", apply_postprocessing=False
    )
    torch.save({"model": sam.state_dict()}, sam2_path)
    sizes = {"sam2.1_hiera_tiny.pt": sam2_path.stat().st_size}
    if clip:
        model = open_clip.create_model("ViT-B-16", pretrained=None)
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, clip_path)
        sizes["open_clip_ViT-B-16_openai.safetensors"] = clip_path.stat().st_size
    return sizes
