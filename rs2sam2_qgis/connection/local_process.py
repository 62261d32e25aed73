"""The one way the plugin starts its local backend: `<python> -m backend.cli serve …` as a subprocess.

Blocking by design: the panel starts it from a QgsTask and Processing from its worker thread (or from
qgis_process's main thread), so no event loop is needed. The process is created by one long-lived thread
of ours; on Linux it is told to die with that thread (PR_SET_PDEATHSIG), i.e. with QGIS however QGIS
ends (qgis_process exits without running Python's atexit hooks); elsewhere the plugin's unload and
atexit stop it.
"""

from __future__ import annotations

import os
import queue
import socket
import subprocess
import threading
import time
from collections import deque
from collections.abc import Callable

from ..contract import TOKEN_ENV
from ..settings import PluginSettings
from ..setup.backend_env import Bundle, inspect
from ..setup.interpreters import clean_environment
from ..setup.steps import process_group_options, stop_process
from .client import BackendClient, BackendError

HEALTH_POLL_S = 0.5
LOG_LINES = 200
STOP_WAIT_S = 5


class LocalStartError(Exception):
    """The local backend could not be started; the message is one sentence, then its last output."""


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


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class _Launcher(threading.Thread):
    """The thread that creates backend processes: it lives as long as the QGIS process."""

    def __init__(self):
        super().__init__(name="rs2sam2-backend-launcher", daemon=True)
        self.requests: queue.Queue = queue.Queue()
        self.start()

    def run(self) -> None:
        while True:
            kwargs, reply = self.requests.get()
            try:
                reply.put(subprocess.Popen(**kwargs))
            except Exception as exc:  # noqa: BLE001 - handed to the caller, who raises it
                reply.put(exc)

    def popen(self, **kwargs) -> subprocess.Popen:
        reply: queue.Queue = queue.Queue(maxsize=1)
        self.requests.put((kwargs, reply))
        result = reply.get()
        if isinstance(result, Exception):
            raise result
        return result


_LAUNCHER: list[_Launcher] = []
_LAUNCHER_LOCK = threading.Lock()


def _launcher() -> _Launcher:
    with _LAUNCHER_LOCK:
        if not _LAUNCHER:
            _LAUNCHER.append(_Launcher())
        return _LAUNCHER[0]


class LocalProcess:
    """One running `serve`: its command line and last output lines, alive or not, stop."""

    def __init__(self, program: str, args: list[str], env: dict[str, str], cwd: str | None, log: deque[str]):
        self.log = log
        self.log.append(f"$ {program} {' '.join(args)}")
        try:
            self.popen = _launcher().popen(
                args=[program, *args],
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
                cwd=cwd or None,
                **process_group_options(),  # its own group, so stopping it stops it all
            )
        except OSError:
            raise LocalStartError(
                f"The local backend could not be started: “{program}” was not found or is not executable; "
                "set the Python environment in the RS2-SAM 2 settings."
            ) from None
        threading.Thread(target=self._pump, name="rs2sam2-backend-output", daemon=True).start()

    def _pump(self) -> None:
        for raw in iter(self.popen.stdout.readline, b""):
            self.log.append(raw.decode("utf-8", errors="replace").rstrip())

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def stop(self) -> None:
        stop_process(self.popen, wait_s=STOP_WAIT_S)

    def wait_healthy(self, client: BackendClient, timeout_s: float, should_stop: Callable[[], bool]):
        """The backend's Health once it answers; LocalStartError when it dies, is stopped or is late."""
        deadline = time.monotonic() + timeout_s
        while True:
            if not self.alive():
                self.popen.wait()
                time.sleep(0.1)  # the output pump's last lines
                raise LocalStartError(
                    self._with_tail(f"The local backend stopped (exit code {self.popen.returncode}).")
                )
            if should_stop():
                self.stop()
                raise LocalStartError("The start of the local backend was cancelled.")
            if time.monotonic() > deadline:
                self.stop()
                raise LocalStartError(
                    self._with_tail(f"The local backend did not answer within {timeout_s:.0f} s.")
                )
            try:
                return client.health(timeout_s=2)
            except BackendError:
                time.sleep(HEALTH_POLL_S)

    def _with_tail(self, sentence: str) -> str:
        tail = "\n".join(list(self.log)[-15:])
        return f"{sentence}\n{tail}" if tail else sentence


def start_local_process(settings: PluginSettings, token: str, port: int, log: deque[str]) -> LocalProcess:
    """Start `serve` on 127.0.0.1:`port` with `token` (it refuses requests without it)."""
    blocker = not_set_up_message(settings)
    if blocker is not None:
        raise LocalStartError(blocker)
    program, args = settings.backend_command(port)
    env = process_environment(settings)
    env[TOKEN_ENV] = token
    return LocalProcess(program, args, env, settings.working_dir, log)


def new_log() -> deque[str]:
    return deque(maxlen=LOG_LINES)
