"""The local backend a Processing algorithm starts when no backend answers: blocking (the algorithm
runs in Processing's worker thread, or on qgis_process's main thread), so a plain subprocess rather
than a QProcess that needs an event loop.

It stays running for the rest of the QGIS process — the next algorithm, and the panel, use it — and is
stopped when QGIS exits or the plugin unloads. Processing runs algorithms in short-lived worker threads,
so the process is started from one long-lived thread of ours: on Linux it is told to die with that
thread (PR_SET_PDEATHSIG), i.e. with QGIS, however QGIS ends (qgis_process exits without running
Python's atexit hooks); elsewhere atexit and the plugin's unload stop it.
"""

from __future__ import annotations

import atexit
import queue
import secrets
import socket
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable

from .client import BackendClient, BackendError
from .contract import TOKEN_ENV
from .local_backend import Endpoint, command_key, current_endpoint, process_environment, register_endpoint
from .settings import PluginSettings
from .setup_steps import die_with_parent, stop_process

HEALTH_POLL_S = 0.5
LOG_LINES = 40


class LocalStartError(Exception):
    """The local backend could not be started; the message is one sentence, then its last output."""


class _Launcher(threading.Thread):
    """The thread that starts backends: it lives as long as the QGIS process."""

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


def _launcher() -> _Launcher:
    if not _LAUNCHER:
        _LAUNCHER.append(_Launcher())
    return _LAUNCHER[0]


class _Process:
    def __init__(self, command: list[str], env: dict[str, str], cwd: str | None):
        self.log: deque[str] = deque(maxlen=LOG_LINES)
        extra = {"preexec_fn": die_with_parent} if sys.platform.startswith("linux") else {}
        self.popen = _launcher().popen(
            args=command,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            cwd=cwd or None,
            start_new_session=not sys.platform.startswith("win"),  # its own group: stop stops it all
            **extra,
        )
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        for raw in iter(self.popen.stdout.readline, b""):
            self.log.append(raw.decode("utf-8", errors="replace").rstrip())

    def alive(self) -> bool:
        return self.popen.poll() is None

    def stop(self) -> None:
        stop_process(self.popen, wait_s=5)


_STARTED: list[_Process] = []


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def ensure_local_backend(
    settings: PluginSettings,
    is_cancelled: Callable[[], bool] = lambda: False,
    say: Callable[[str], None] = lambda text: None,
) -> tuple[str, str]:
    """(url, token) of this QGIS process's local backend, started here when none runs."""
    endpoint = current_endpoint()
    if endpoint is not None:
        return endpoint.url, endpoint.token
    port = settings.local_port or free_port()
    program, args = settings.backend_command(port)
    token = secrets.token_urlsafe(24)
    env = process_environment(settings)
    env[TOKEN_ENV] = token
    say(f"Starting the local backend: {program} {' '.join(args)}")
    try:
        process = _Process([program, *args], env, settings.working_dir)
    except OSError as exc:
        raise LocalStartError(
            f"The local backend could not be started: “{program}” does not run ({exc.strerror or exc})."
        ) from None
    url = f"http://127.0.0.1:{port}"
    _wait_healthy(process, BackendClient(url, token, timeout_s=2), settings.startup_timeout_s, is_cancelled)
    _STARTED.append(process)
    register_endpoint(Endpoint(url, token, command_key(settings), "processing", process.alive, process.stop))
    say(f"The local backend (process {process.popen.pid}) answers at {url}; it stays up for this session.")
    return url, token


def _wait_healthy(process: _Process, client: BackendClient, timeout_s: float, is_cancelled) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        if not process.alive():
            tail = "\n".join(process.log)
            raise LocalStartError(
                f"The local backend stopped while starting (exit code {process.popen.returncode}).\n{tail}"
            )
        if is_cancelled() or time.monotonic() > deadline:
            process.stop()
            if is_cancelled():
                raise LocalStartError("The start of the local backend was cancelled.")
            raise LocalStartError(
                f"The local backend did not answer within {timeout_s:.0f} s.\n" + "\n".join(process.log)
            )
        try:
            client.health(timeout_s=2)
            return
        except BackendError:
            time.sleep(HEALTH_POLL_S)


@atexit.register
def stop_started_backends() -> None:
    """Stop what Processing started in this QGIS process (at exit, and when the plugin unloads)."""
    while _STARTED:
        _STARTED.pop().stop()
