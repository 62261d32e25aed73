"""Settings: one dataclass stored in QgsSettings under one prefix, edited by a small dialog."""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path

from qgis.core import QgsSettings

from rs2sam2_qgis.panel.settings_dialog import SettingsDialog
from rs2sam2_qgis.settings import HISTORY_LENGTH, PluginSettings, default_python

ROOT = Path(__file__).resolve().parents[2]


def test_round_trip_through_qgs_settings_under_one_prefix(plugin_settings):
    saved = PluginSettings(
        server_url="http://gpu-box:9000",
        token="t0k",
        start_local=True,
        local_port=8123,
        send_mode="upload",
        output_gpkg="/data/out.gpkg",
        phrase_history=["a", "b c"],
    )
    saved.save()
    ours = {key.split("/", 1)[1] for key in QgsSettings().allKeys() if key.startswith("rs2sam2/")}
    assert ours == {f.name for f in fields(PluginSettings)} - {"token"}
    assert QgsSettings().value("rs2sam2/server_url") == "http://gpu-box:9000"
    # The token went into QGIS's auth database; the settings keep the config's id, never the token.
    assert saved.auth_config and saved.token == ""
    assert "t0k" not in [str(QgsSettings().value(key)) for key in QgsSettings().allKeys()]
    loaded = PluginSettings.load()
    assert loaded == saved
    assert loaded.remote_token() == "t0k"


def test_defaults_and_bad_values(plugin_settings):
    loaded = PluginSettings.load()
    assert loaded == PluginSettings()
    QgsSettings().setValue("rs2sam2/send_mode", "carrier pigeon")
    QgsSettings().setValue("rs2sam2/local_port", "not a number")
    loaded = PluginSettings.load()
    assert loaded.send_mode == "auto" and loaded.local_port == 0


def test_default_python_is_the_checkouts_venv(monkeypatch, tmp_path):
    # This checkout: its .venv's Python when there is one (as after `make setup`); otherwise none, which
    # means the environment the plugin's first-run set-up makes.
    venv_python = ROOT / ".venv" / "bin" / "python"
    assert default_python() == (str(venv_python) if venv_python.exists() else "")
    # Both cases on checkouts made here, so neither depends on how this one was set up.
    checkout = tmp_path / "checkout"
    monkeypatch.setattr("rs2sam2_qgis.settings.checkout_root", lambda: checkout)
    assert default_python() == ""  # a checkout without .venv
    (checkout / ".venv" / "bin").mkdir(parents=True)
    (checkout / ".venv" / "bin" / "python").write_text("")
    assert default_python() == str(checkout / ".venv" / "bin" / "python")
    monkeypatch.setattr("rs2sam2_qgis.settings.checkout_root", lambda: None)  # an installed plugin
    assert default_python() == ""


def test_phrase_history_is_most_recent_first_without_duplicates():
    settings = PluginSettings()
    for phrase in ["a", "b", " a ", ""]:
        settings.remember_phrase(phrase)
    assert settings.phrase_history == ["a", "b"]
    for i in range(HISTORY_LENGTH + 5):
        settings.remember_phrase(f"p{i}")
    assert (
        len(settings.phrase_history) == HISTORY_LENGTH
        and settings.phrase_history[0] == f"p{HISTORY_LENGTH + 4}"
    )


def test_backend_command_prefers_a_checkpoint_over_the_preset():
    program, args = PluginSettings(
        python_path="/env/bin/python", preset="base", checkpoint=""
    ).backend_command(8000)
    assert program == "/env/bin/python"
    assert args == [
        "-m",
        "backend.cli",
        "serve",
        "--host",
        "127.0.0.1",
        "--port",
        "8000",
        "--allow-path",
        "/",
        "--preset",
        "base",
    ]
    _, args = PluginSettings(local_allow_path="", preset="", checkpoint="").backend_command(8000)
    assert "--allow-path" not in args and "--preset" not in args and "--checkpoint" not in args
    _, args = PluginSettings(checkpoint="/m/ckpt.safetensors").backend_command(8001)
    assert args[-2:] == ["--checkpoint", "/m/ckpt.safetensors"] and "--preset" not in args


def test_backend_command_carries_precision_and_threads_only_when_chosen():
    # The defaults (auto, the backend's own thread count) stay off the command: an older backend starts.
    _, args = PluginSettings(checkpoint="/m/c.safetensors").backend_command(8003)
    assert "--precision" not in args and "--threads" not in args
    _, args = PluginSettings(
        checkpoint="/m/c.safetensors", local_precision="int8", local_threads=3
    ).backend_command(8003)
    assert args[-6:] == ["--checkpoint", "/m/c.safetensors", "--precision", "int8", "--threads", "3"]


def test_bad_stored_precision_and_threads_fall_back_to_the_defaults(plugin_settings):
    QgsSettings().setValue("rs2sam2/local_precision", "fp8")
    QgsSettings().setValue("rs2sam2/local_threads", "-4")
    loaded = PluginSettings.load()
    assert (loaded.local_precision, loaded.local_threads) == ("auto", 0)
    QgsSettings().setValue("rs2sam2/local_precision", "bf16")
    QgsSettings().setValue("rs2sam2/local_threads", "2")
    loaded = PluginSettings.load()
    assert (loaded.local_precision, loaded.local_threads) == ("bf16", 2)


def test_dialog_edits_precision_and_threads(qgis_app, plugin_settings):
    dialog = SettingsDialog(PluginSettings(local_precision="fp32", local_threads=2))
    assert (dialog.precision_combo.currentData(), dialog.threads_spin.value()) == ("fp32", 2)
    assert [dialog.precision_combo.itemData(i) for i in range(dialog.precision_combo.count())] == [
        "auto",
        "fp32",
        "bf16",
        "int8",
        "openvino",
    ]
    dialog.precision_combo.setCurrentIndex(dialog.precision_combo.findData("int8"))
    dialog.threads_spin.setValue(0)
    assert dialog.threads_spin.text() == "automatic (one per physical core)"
    edited = dialog.result_settings()
    assert (edited.local_precision, edited.local_threads) == ("int8", 0)
    dialog.model_manager.shutdown()


def test_dialog_edits_a_copy(qgis_app, plugin_settings):
    original = PluginSettings(server_url="http://a:1", phrase_history=["x"])
    dialog = SettingsDialog(original)
    dialog.url_edit.setText(" http://b:2 ")
    dialog.token_edit.setText("abc")
    dialog.local_group.setChecked(True)
    dialog.gpkg_edit.setFilePath("/tmp/results")
    dialog.send_combo.setCurrentIndex(dialog.send_combo.findData("path"))
    edited = dialog.result_settings()
    assert (edited.server_url, edited.token, edited.start_local, edited.output_gpkg, edited.send_mode) == (
        "http://b:2",
        "abc",
        True,
        "/tmp/results.gpkg",
        "path",
    )
    assert edited.phrase_history == ["x"]
    assert original.server_url == "http://a:1"  # untouched until the caller saves
    dialog.model_manager.shutdown()


def test_the_demo_model_of_a_checkout_is_the_default_checkpoint(monkeypatch, tmp_path):
    import rs2sam2_qgis.settings as settings_module

    monkeypatch.setattr(settings_module, "checkout_root", lambda: tmp_path)
    assert settings_module.default_checkpoint() == ""
    demo = tmp_path / settings_module.DEMO_CHECKPOINT
    demo.parent.mkdir(parents=True)
    demo.write_bytes(b"weights")
    assert settings_module.default_checkpoint() == str(demo)
    assert PluginSettings().backend_command(9000)[1][-2:] == ["--checkpoint", str(demo)]


def test_the_local_backend_uses_the_bundled_demo_model_without_configuration():
    bundled = ROOT / "backend" / "demo" / "assets" / "rs2sam2-demo.safetensors"
    assert bundled.is_file()
    _, args = PluginSettings().backend_command(8002)
    assert args[-2:] == ["--checkpoint", str(bundled)]


def test_repair_in_the_dialog_hands_the_set_up_to_the_panel(qgis_app, plugin_settings):
    from qgis.PyQt.QtWidgets import QDialog

    dialog = SettingsDialog(PluginSettings())
    assert not dialog.repair_requested
    dialog.repair_button.click()  # the panel runs the set-up with the dialog's values once it closes
    assert dialog.repair_requested and dialog.result() == QDialog.Accepted
    dialog.model_manager.shutdown()
