"""The local backend's precision and CPU threads (plugin settings) reach `rs2sam2 serve`, its health says
what it runs with, the panel shows it, and changing them restarts the backend as a model switch does.

The backend is the real `rs2sam2 serve` of this checkout with the bundled demo model. int8 and fp32 run
on every CPU (bf16 needs native bf16 instructions, so it is left out here).
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import psutil

from rs2sam2_qgis.connection.client import BackendClient
from rs2sam2_qgis.panel.dock import SegmentDock
from rs2sam2_qgis.settings import PluginSettings
from tests.plugin.conftest import wait_until

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "backend" / "demo" / "assets" / "rs2sam2-demo.safetensors"


def _wait_running(dock: SegmentDock, previous_pid: int | None = None) -> None:
    backend = dock.backend_row.backend
    wait_until(
        lambda: dock.backend_row.start_task is None
        and ((backend.state == "running" and backend.pid() != previous_pid) or backend.state == "failed"),
        timeout_s=120,
        what="the local backend's health",
    )
    assert backend.state == "running", backend.log_text


def _gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def test_precision_and_threads_reach_the_local_backend_and_a_change_restarts_it(
    qgis_iface, qgis_canvas, plugin_settings, clean_project
):
    qgis_iface.messageBar().clearWidgets()
    dock = SegmentDock(qgis_iface)
    try:
        settings = PluginSettings(
            start_local=True,
            python_path=sys.executable,
            working_dir=str(ROOT),
            checkpoint=str(DEMO),
            local_precision="int8",
            local_threads=1,
        )
        dock.backend_row.apply_settings(settings)
        dock.backend_row.start_local()
        _wait_running(dock)
        backend = dock.backend_row.backend
        assert "--precision int8 --threads 1" in backend.log_text  # the command line it was started with
        health = BackendClient(backend.url, backend.token).health()
        assert (health.model.precision, health.model.threads) == ("int8", 1)
        assert (
            dock.backend_row.label.text() == f"Backend: connected — {health.model_id} on cpu (int8, 1 thread)"
        )
        first_pid = backend.pid()

        dock.backend_row.apply_settings(
            dataclasses.replace(settings, local_precision="fp32", local_threads=2)
        )
        _wait_running(dock, previous_pid=first_pid)
        assert _gone(first_pid)  # restarted, not a second backend beside the first
        health = BackendClient(backend.url, backend.token).health()
        assert (health.model.precision, health.model.threads) == ("fp32", 2)
        assert (
            dock.backend_row.label.text()
            == f"Backend: connected — {health.model_id} on cpu (fp32, 2 threads)"
        )
        assert PluginSettings.load().local_precision == "fp32"  # saved

        # Back to the defaults: the backend chooses (auto keeps fp32 for the 128 px demo model).
        second_pid = backend.pid()
        dock.backend_row.apply_settings(
            dataclasses.replace(settings, local_precision="auto", local_threads=0)
        )
        _wait_running(dock, previous_pid=second_pid)
        assert "--precision" not in backend.log_text and "--threads" not in backend.log_text
        health = BackendClient(backend.url, backend.token).health()
        assert health.model.precision == "fp32" and health.model.threads >= 1
    finally:
        dock.shutdown()
        dock.deleteLater()
