"""The local backend: `<python> -m backend.cli serve …` started by the plugin through QProcess.

It waits for `/health` to answer (polling in QgsTasks, so the UI keeps turning), keeps the process's
output to show when it fails, and is stopped when the plugin unloads.

One local backend per QGIS process: the panel's (this module) or the one a Processing algorithm started
(`shared_backend`). Both register here, so each uses the other's instead of starting a second.
"""

from __future__ import annotations

import os
import secrets
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from qgis.core import QgsApplication
from qgis.PyQt.QtCore import QObject, QProcess, QProcessEnvironment, QTimer, pyqtSignal
from qgis.PyQt.QtNetwork import QHostAddress, QTcpServer

from .backend_env import Bundle, inspect
from .client import BackendClient
from .contract import TOKEN_ENV, Health
from .interpreters import clean_environment
from .settings import PluginSettings
from .tasks import HealthTask

HEALTH_POLL_MS = 500
LOG_LINES = 200
STOP_WAIT_MS = 5000


@dataclass
class Endpoint:
    """The local backend this QGIS process runs and that answered its health."""

    url: str
    token: str
    command: tuple[str, ...]  # program and arguments without the port (what a model switch changes)
    owner: str  # "panel" or "processing"
    alive: Callable[[], bool]
    stop: Callable[[], None]


_RUNNING: list[Endpoint] = []  # at most one


def current_endpoint() -> Endpoint | None:
    if _RUNNING and not _RUNNING[0].alive():
        _RUNNING.clear()
    return _RUNNING[0] if _RUNNING else None


def register_endpoint(endpoint: Endpoint) -> None:
    _RUNNING[:] = [endpoint]


def unregister_endpoint(url: str) -> None:
    if _RUNNING and _RUNNING[0].url == url:
        _RUNNING.clear()


def running_local_endpoint() -> tuple[str, str] | None:
    """(url, token) of the local backend running in this QGIS process, or None."""
    endpoint = current_endpoint()
    return (endpoint.url, endpoint.token) if endpoint else None


def command_key(settings: PluginSettings) -> tuple[str, ...]:
    program, args = settings.backend_command(0)
    return (program, *args)


def not_set_up_message(settings: PluginSettings) -> str | None:
    """Why the local backend cannot start from the set-up's environment, or None when it can."""
    if not settings.uses_setup_env:
        return None
    status = inspect(settings.setup_layout(), Bundle.load())
    if status.usable:
        return None
    if status.status == "missing":
        return "The local backend is not set up yet; click “Set up the local backend” in the RS2-SAM 2 panel."
    return status.message.replace("; repair it.", "; repair it in the RS2-SAM 2 panel or settings.")


def process_environment(settings: PluginSettings) -> dict[str, str]:
    """The local backend's environment variables: the set-up's environment gets none of QGIS's Python
    settings (PYTHONPATH/PYTHONHOME belong to QGIS's interpreter)."""
    env = clean_environment() if settings.uses_setup_env else dict(os.environ)
    env.update(settings.backend_environment())
    env["PYTHONUNBUFFERED"] = "1"
    return env


def free_loopback_port() -> int:
    server = QTcpServer()
    if not server.listen(QHostAddress.SpecialAddress.LocalHost, 0):
        raise OSError("no free port on 127.0.0.1")
    port = server.serverPort()
    server.close()
    return port


class LocalBackend(QObject):
    """One backend process at a time. States: stopped → starting → running (or failed)."""

    ready = pyqtSignal(object)  # Health
    failed = pyqtSignal(str)  # a person's sentence, with the process's last output
    stopped = pyqtSignal()

    def __init__(self, parent: QObject | None = None):
        super().__init__(parent)
        self.process: QProcess | None = None
        self.url = ""
        self.token = ""
        self.state = "stopped"
        self.health: Health | None = None
        self._log: deque[str] = deque(maxlen=LOG_LINES)
        self._deadline = 0.0
        self._probe: HealthTask | None = None
        self._timer = QTimer(self)
        self._timer.setInterval(HEALTH_POLL_MS)
        self._timer.timeout.connect(self._poll_health)
        self._adopted: Endpoint | None = None  # a backend a Processing algorithm started
        self._command: tuple[str, ...] = ()

    @property
    def log_text(self) -> str:
        return "\n".join(self._log)

    def is_running(self) -> bool:
        if self._adopted is not None:
            return self._adopted.alive()
        return self.process is not None and self.process.state() != QProcess.ProcessState.NotRunning

    def start(self, settings: PluginSettings) -> None:
        if self.is_running():
            return
        self._log.clear()
        self._command = command_key(settings)
        existing = current_endpoint()
        if existing is not None and existing.owner == "processing" and existing.command == self._command:
            self._adopt(existing, settings)
            return
        blocker = not_set_up_message(settings)
        if blocker is not None:
            self.state = "starting"
            QTimer.singleShot(0, lambda: self._fail(blocker))
            return
        port = settings.local_port or free_loopback_port()
        program, args = settings.backend_command(port)
        self.url = f"http://127.0.0.1:{port}"
        # A fresh token per start: other users and programs on this machine cannot use our backend.
        self.token = secrets.token_urlsafe(24)
        self._log.append(f"$ {program} {' '.join(args)}")
        self.process = QProcess(self)
        self.process.setProcessChannelMode(QProcess.ProcessChannelMode.MergedChannels)
        if settings.working_dir:
            self.process.setWorkingDirectory(settings.working_dir)
        env = QProcessEnvironment()
        for name, value in process_environment(settings).items():
            env.insert(name, value)
        env.insert(TOKEN_ENV, self.token)
        self.process.setProcessEnvironment(env)
        self.process.readyReadStandardOutput.connect(self._read_output)
        self.process.finished.connect(self._on_finished)
        self.process.errorOccurred.connect(self._on_error)
        self.state = "starting"
        self._deadline = time.monotonic() + settings.startup_timeout_s
        self.process.start(program, args)
        self._timer.start()

    def _adopt(self, endpoint: Endpoint, settings: PluginSettings) -> None:
        """Use the backend a Processing algorithm of this QGIS process started (same command)."""
        self._adopted = endpoint
        self.url, self.token = endpoint.url, endpoint.token
        self._log.append(f"(using the local backend Processing started at {endpoint.url})")
        self.state = "starting"
        self._deadline = time.monotonic() + settings.startup_timeout_s
        self._timer.start()

    def stop(self) -> None:
        """Stop the process (politely, then firmly) and wait for it to be gone."""
        self._timer.stop()
        unregister_endpoint(self.url)
        adopted, self._adopted = self._adopted, None
        if adopted is not None:
            adopted.stop()
        process, self.process = self.process, None
        if process is not None:
            process.finished.disconnect(self._on_finished)
            process.errorOccurred.disconnect(self._on_error)
            if process.state() != QProcess.ProcessState.NotRunning:
                process.terminate()
                if not process.waitForFinished(STOP_WAIT_MS):
                    process.kill()
                    process.waitForFinished(STOP_WAIT_MS)
            process.deleteLater()
        if self.state != "stopped":
            self.state = "stopped"
            self.stopped.emit()

    def pid(self) -> int | None:
        if self.process is None or not self.is_running():
            return None
        return int(self.process.processId())

    # -- internals -------------------------------------------------------------------------------
    def _read_output(self) -> None:
        if self.process is None:
            return
        text = bytes(self.process.readAllStandardOutput()).decode("utf-8", errors="replace")
        for line in text.splitlines():
            self._log.append(line)

    def _poll_health(self) -> None:
        if self.state != "starting" or self._probe is not None:
            return
        if time.monotonic() > self._deadline:
            self._fail(self.tr("The local backend did not answer within the start-up time."))
            return
        self._probe = HealthTask(BackendClient(self.url, self.token, timeout_s=2), self._on_probe_done)
        QgsApplication.taskManager().addTask(self._probe)

    def _on_probe_done(self, task: HealthTask) -> None:
        self._probe = None
        if self.state != "starting" or task.health is None:
            return
        self._timer.stop()
        self.state = "running"
        self.health = task.health
        if self._adopted is None:
            register_endpoint(
                Endpoint(self.url, self.token, self._command, "panel", self.is_running, self.stop)
            )
        self.ready.emit(task.health)

    def _on_finished(self, exit_code: int, _status) -> None:
        self._read_output()
        if self.state in ("starting", "running"):
            self._fail(self.tr("The local backend stopped (exit code {}).").format(exit_code))

    def _on_error(self, error) -> None:
        if error == QProcess.ProcessError.FailedToStart:
            program = self.process.program() if self.process is not None else "?"
            self._fail(
                self.tr(
                    "The local backend could not be started: “{}” was not found or is not executable; "
                    "set the Python environment in the RS2-SAM 2 settings."
                ).format(program)
            )

    def _fail(self, message: str) -> None:
        self.stop()
        self.state = "failed"
        tail = "\n".join(list(self._log)[-15:])
        self.failed.emit(f"{message}\n{tail}" if tail else message)
