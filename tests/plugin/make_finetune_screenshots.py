"""Take docs/finetune-dialog.png and docs/person-models.png in a real QGIS desktop window (under Xvfb).

    .venv/bin/python -m tests.plugin.make_finetune_screenshots [--out docs] [--steps 8]
    .venv/bin/python -m tests.plugin.make_finetune_screenshots --bench-regions --steps 0   # docs/ as shown

Builds the plugin zip and installs it into a throw-away QGIS profile whose settings start the local
backend of this checkout (the real `rs2sam2 serve` with the bundled demo model), makes a small labelled
region (tests/service/training_regions.py: a 256² raster, 36 labelled roofs and pools), then runs
`qgis.bin --code <driver>` under `xvfb-run`. The driver opens the region, the panel and its Train ▸
Fine-tune… dialog, fills it (validation on the same labels, so both models are scored), presses Start,
waits for the short real run and its comparison and grabs the dialog; then it opens the settings' Models
tab, which lists the new model, chooses it and grabs that. `--bench-regions` trains on the small-region
benchmark's region A and validates on its region B instead (bench/region_data.py), as the README's
screenshots do.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

from tests.plugin.make_screenshot import DRIVER_HELPERS, install_profile, run_qgis_driver
from tests.plugin.setup_fixtures import build_plugin_zip
from tests.service.training_regions import region

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "backend" / "demo" / "assets" / "rs2sam2-demo.safetensors"

DRIVER = (
    DRIVER_HELPERS
    + r"""
from qgis.core import QgsRasterLayer, QgsVectorLayer
from qgis.PyQt.QtWidgets import QRadioButton

def setup():
    _, plugin = window_and_plugin()
    if plugin is None:
        return
    raster = iface.addRasterLayer(config["raster"], "my region")
    labels = iface.addVectorLayer(config["labels"], "my labels", "ogr")
    val_raster, val_labels = raster, labels  # validation on the same labels, unless another region is given
    if config.get("val_raster"):
        val_raster = iface.addRasterLayer(config["val_raster"], "another region")
        val_labels = iface.addVectorLayer(config["val_labels"], "its labels", "ogr")
    iface.mapCanvas().setExtent(raster.extent())
    plugin.action.setChecked(True)
    plugin.finetune_action.trigger()
    dialog = plugin.dock.backend_row.training.dialog
    dialog.resize(660, 990)
    form = dialog.form
    form.region.raster_combo.setLayer(raster)
    form.region.labels_combo.setLayer(labels)
    form.field_combo.setField(config["field"])
    form.widgets["name"].setText(config["name"])
    form.widgets["max_steps"].setValue(config["steps"])  # 0: the recipe's choice
    form.widgets["replay"].setChecked(config["replay"])
    form.validation_box.setChecked(True)
    form.validation.raster_combo.setLayer(val_raster)
    form.validation.labels_combo.setLayer(val_labels)
    state["plugin"], state["dialog"] = plugin, dialog
    later(1000, start)

def start():
    state["dialog"].start_button.click()
    later(1000, wait_for_run)

def wait_for_run():
    dialog = state["dialog"]
    state["ticks"] += 1
    if (dialog.task is not None or dialog._start_after_backend) and state["ticks"] < config["wait_ticks"]:
        return later(400, wait_for_run)
    log("status: " + dialog.status_label.text() + " | " + dialog.message_label.text())
    later(500, grab_dialog)

def grab_dialog():
    dialog = state["dialog"]
    ok = dialog.grab().save(config["finetune_png"])
    log(f"fine-tune shot: {ok}")
    if not dialog.new_model:
        return finish(4)
    open_models()

def open_models():
    from rs2sam2_qgis.panel.settings_dialog import SettingsDialog
    dock = state["plugin"].dock
    settings = SettingsDialog(dock.settings, iface.mainWindow())
    settings.resize(980, 720)
    settings.tabs.setCurrentWidget(settings.model_manager)
    settings.show()
    state["settings"] = settings
    later(1000, wait_for_list)

def wait_for_list():
    manager = state["settings"].model_manager
    if manager.catalogue_task is not None or not manager.person_box.models:
        return later(300, wait_for_list)
    use = manager.table.findChild(QRadioButton, "use:person:" + config["name"])
    if use is not None:
        use.setChecked(True)
    manager.person_box.select(config["name"])
    manager.table.scrollToBottom()
    later(800, grab_models)

def grab_models():
    ok = state["settings"].grab().save(config["models_png"])
    log(f"models shot: {ok}")
    state["settings"].model_manager.shutdown()
    finish(0 if ok else 4)

later(3000, setup)
"""
)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, default=ROOT / "docs")
    parser.add_argument(
        "--steps", type=int, default=60, help="training steps of the run (0: the recipe's choice)"
    )
    parser.add_argument(
        "--bench-regions",
        action="store_true",
        help="train on bench region A (45 labels) and validate on region B, as `rs2sam2 bench region` does "
        "(the recipe's steps and replay: about 20 minutes on 2 cores) instead of a short run on a small grid",
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="rs2sam2-shot-") as work_dir:
        return take(args, Path(work_dir))


def take(args: argparse.Namespace, work: Path) -> int:
    profile = install_profile(build_plugin_zip(work / "dist"), work)
    (work / "region").mkdir()
    regions = _regions(args, work / "region")
    (profile / "QGIS").mkdir(parents=True)
    (profile / "QGIS" / "QGIS3.ini").write_text(
        "[PythonPlugins]\nrs2sam2_qgis=true\n\n"
        f"[rs2sam2]\nstart_local=true\npython_path={sys.executable}\nworking_dir={ROOT}\n"
        f"checkpoint={DEMO}\nsend_mode=auto\n\n"
        "[qgis]\ncheckVersion=false\nshowTips=false\n",
        encoding="utf-8",
    )
    args.out.mkdir(parents=True, exist_ok=True)
    config = {
        **regions,
        "steps": args.steps,
        "wait_ticks": 7500 if args.bench_regions else 1500,  # of 0.4 s
        "finetune_png": str((args.out / "finetune-dialog.png").resolve()),
        "models_png": str((args.out / "person-models.png").resolve()),
        "log": str(work / "driver.log"),
    }
    (work / "config.json").write_text(json.dumps(config))
    (work / "driver.py").write_text(DRIVER)
    env = dict(
        os.environ,
        RS2SAM2_SHOT_CONFIG=str(work / "config.json"),
        RS2SAM2_MODELS=str(work / "models"),
        RS2SAM2_TRAINING_DIR=str(work / "training"),
        OMP_NUM_THREADS="2" if args.bench_regions else "1",
    )
    env.pop("QT_QPA_PLATFORM", None)
    env.pop("PYTHONPATH", None)
    log = run_qgis_driver(work, env, timeout_s=3300 if args.bench_regions else 900)
    print(log)
    return 0 if "models shot: True" in log else 1


def _regions(args: argparse.Namespace, folder: Path) -> dict:
    """The driver's region settings: the small grid (tests/service/training_regions.py), or the small-region
    benchmark's regions A (training) and B (validation)."""
    if not args.bench_regions:
        raster, labels = region(folder)
        return {
            "raster": str(raster),
            "labels": str(labels),
            "field": "phrase",
            "name": "my roofs",
            "replay": False,
        }
    from bench.region import A_SEED, B_SEED
    from bench.region_data import TEXT_COLUMN, make_region

    train, validation = make_region(folder, "A", A_SEED), make_region(folder, "B", B_SEED)
    return {
        "raster": str(train.raster),
        "labels": str(train.labels_path),
        "val_raster": str(validation.raster),
        "val_labels": str(validation.labels_path),
        "field": TEXT_COLUMN,
        "name": "my town",
        "replay": True,
    }


if __name__ == "__main__":
    sys.exit(main())
