"""The server's access token lives in QGIS's authentication database (an auth config the settings dialog
creates or picks); QgsSettings only ever holds the config's id. The local backend's token is made per
start and stays in memory."""

from __future__ import annotations

from pathlib import Path

import pytest
from qgis.core import QgsApplication, QgsProcessingException, QgsSettings

from rs2sam2_qgis.auth_token import read_token, store_token
from rs2sam2_qgis.panel.settings_dialog import SettingsDialog
from rs2sam2_qgis.settings import PluginSettings

TOKEN = "s3cret-4e2b9"
ROOT = Path(__file__).resolve().parents[2]
ASSETS = ROOT / "backend" / "demo" / "assets"


def _everything_in_qgs_settings() -> str:
    store = QgsSettings()
    store.sync()
    values = " ".join(str(store.value(key)) for key in store.allKeys())
    return values + Path(store.fileName()).read_text(encoding="utf-8", errors="replace")


def test_the_dialog_puts_the_token_into_the_auth_database(plugin_settings):
    dialog = SettingsDialog(PluginSettings(server_url="http://gpu-box:8765"))
    dialog.token_edit.setText(TOKEN)
    settings = dialog.result_settings()
    dialog.model_manager.shutdown()
    settings.save()
    assert settings.auth_config and settings.token == ""
    assert settings.auth_config in QgsApplication.authManager().configIds()
    assert read_token(settings.auth_config) == TOKEN
    assert TOKEN not in _everything_in_qgs_settings()
    loaded = PluginSettings.load()
    assert loaded.auth_config == settings.auth_config and loaded.remote_token() == TOKEN

    # The dialog shows the config, not the secret; a new token replaces the one in that same config.
    again = SettingsDialog(loaded)
    assert again.auth_select.configId() == settings.auth_config and again.token_edit.text() == ""
    again.token_edit.setText("rotated-7")
    rotated = again.result_settings()
    again.model_manager.shutdown()
    rotated.save()
    assert rotated.auth_config == settings.auth_config and read_token(settings.auth_config) == "rotated-7"


def test_a_plain_token_of_an_older_version_moves_to_the_auth_database(plugin_settings):
    QgsSettings().setValue("rs2sam2/token", "old-plain-token")
    dialog = SettingsDialog(PluginSettings.load())
    assert dialog.token_edit.text() == "old-plain-token"
    settings = dialog.result_settings()
    dialog.model_manager.shutdown()
    settings.save()
    assert not QgsSettings().contains("rs2sam2/token")
    assert read_token(settings.auth_config) == "old-plain-token"


@pytest.fixture()
def backend_with_token(tmp_path):
    """The real `rs2sam2 serve` (demo model) that refuses requests without TOKEN."""
    import os
    import socket
    import subprocess
    import sys
    import time

    from rs2sam2_qgis.connection.client import BackendClient, BackendError

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = dict(os.environ, RS2SAM2_TOKEN=TOKEN, OMP_NUM_THREADS="1")
    command = [sys.executable, "-m", "backend.cli", "serve", "--port", str(port), "--allow-path", str(ASSETS)]
    log = tmp_path / "serve.log"
    with log.open("w") as out:
        process = subprocess.Popen(
            [*command, "--checkpoint", str(ASSETS / "rs2sam2-demo.safetensors")],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    while True:
        try:
            BackendClient(url, TOKEN).health(timeout_s=2)
            break
        except BackendError:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                pytest.fail(f"rs2sam2 serve did not start:\n{log.read_text()}")
            time.sleep(0.3)
    yield url
    process.terminate()
    process.wait(15)


def test_processing_sends_the_token_from_the_auth_database(
    provider, backend_with_token, tmp_path, plugin_settings
):
    import processing

    scene = str(ASSETS / "scene.tif")
    PluginSettings(server_url=backend_with_token, auth_config=store_token(TOKEN)).save()
    result = processing.run(
        "rs2sam2:segmentbytext",
        {"INPUT": scene, "PHRASES": "the dark lake", "OUTPUT": str(tmp_path / "ok.gpkg")},
    )
    assert Path(result["OUTPUT"]).is_file()
    PluginSettings(server_url=backend_with_token, auth_config=store_token("wrong")).save()
    with pytest.raises(QgsProcessingException, match="A valid bearer token is required."):
        processing.run(
            "rs2sam2:segmentbytext",
            {"INPUT": scene, "PHRASES": "the dark lake", "OUTPUT": str(tmp_path / "no.gpkg")},
        )
    assert not (tmp_path / "no.gpkg").exists()


def test_an_unknown_auth_config_is_one_sentence(plugin_settings):
    from rs2sam2_qgis.auth_token import AuthError

    with pytest.raises(AuthError) as info:
        read_token("nosuch1")
    assert str(info.value).startswith("The access token (auth config nosuch1) could not be read")
