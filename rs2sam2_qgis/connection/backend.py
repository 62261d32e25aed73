"""The one backend object of this QGIS process, shared by the panel, Processing and the model manager.

It holds the choice of backend (the local one this plugin starts, or the server in the settings), the
local backend's process, its health, start, stop and restart. Starts go through one lock, so two
Processing runs at once, or a run and the panel, start one backend between them and share it. It stays up
for the rest of the QGIS session (the next run reuses it) and stops when the plugin unloads or QGIS exits.

Blocking methods (`ensure_local`, `resolve`) are for worker threads: the panel calls them from a QgsTask,
Processing from its own thread.
"""

from __future__ import annotations

import atexit
import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass

from ..auth_token import AuthError
from ..contract import Health
from ..settings import PluginSettings
from .client import BackendClient, BackendError, BackendUnreachable
from .local_process import (
    LocalProcess,
    LocalStartError,
    free_port,
    new_log,
    not_set_up_message,
    start_local_process,
)

PROBE_TIMEOUT_S = 3

STOPPED, STARTING, RUNNING, FAILED = "stopped", "starting", "running", "failed"


class BackendChoiceError(Exception):
    """No backend can be used; one sentence for the person (details, when any, after a newline)."""


@dataclass(frozen=True)
class Connection:
    url: str
    token: str


def command_key(settings: PluginSettings) -> tuple[str, ...]:
    """The local backend's command without its port: what a change of model or environment changes."""
    program, args = settings.backend_command(0)
    return (program, *args)


class Backend:
    def __init__(self) -> None:
        self._start_lock = threading.Lock()  # one start at a time
        self._state_lock = threading.Lock()  # the fields below
        self._process: LocalProcess | None = None
        self._generation = 0  # bumped by stop(): a start in progress gives up
        self._command: tuple[str, ...] = ()
        self._log = new_log()
        self.url = ""
        self.token = ""
        self.health: Health | None = None
        self.last_error = ""
        self._state = STOPPED

    # -- what runs --------------------------------------------------------------------------------
    @property
    def state(self) -> str:
        """stopped, starting, running or failed (a running process that has died counts as failed)."""
        if self._state == RUNNING and not self.is_running():
            return FAILED
        return self._state

    @property
    def log_text(self) -> str:
        return "\n".join(self._log)

    def is_running(self) -> bool:
        process = self._process
        return process is not None and process.alive()

    def pid(self) -> int | None:
        process = self._process
        return process.pid if process is not None and process.alive() else None

    def local_connection(self) -> Connection | None:
        """The local backend that runs and answered its health, or None."""
        if self._state == RUNNING and self.is_running():
            return Connection(self.url, self.token)
        return None

    def runs_command_of(self, settings: PluginSettings) -> bool:
        return self.local_connection() is not None and self._command == command_key(settings)

    # -- start and stop ---------------------------------------------------------------------------
    def ensure_local(
        self,
        settings: PluginSettings,
        is_cancelled: Callable[[], bool] = lambda: False,
        say: Callable[[str], None] = lambda text: None,
    ) -> Connection:
        """The local backend, started now when none runs (blocking; LocalStartError when it cannot)."""
        with self._start_lock:
            running = self.local_connection()
            if running is not None:
                return running
            with self._state_lock:
                self._stop_process()
                generation = self._generation
                self._log.clear()
                self._state, self.health, self.last_error = STARTING, None, ""
                self.token = secrets.token_urlsafe(24)  # fresh per start: others on this machine can't use it
                port = settings.local_port or free_port()
                self.url = f"http://127.0.0.1:{port}"
                self._command = command_key(settings)
            try:
                process = start_local_process(settings, self.token, port, self._log)
                self._process = process
                say(f"Starting the local backend: {self._log[0][2:]}")
                client = BackendClient(self.url, self.token, timeout_s=2)
                stopped = lambda: is_cancelled() or generation != self._generation  # noqa: E731
                health = process.wait_healthy(client, settings.startup_timeout_s, stopped)
            except LocalStartError as exc:
                self._fail(str(exc), generation)
                raise
            except Exception as exc:  # anything else leaves no process and no "starting" behind either
                self._fail(f"The local backend could not be started: {exc}", generation)
                raise LocalStartError(self.last_error) from exc
            with self._state_lock:
                if generation != self._generation:
                    raise LocalStartError("The local backend was stopped while it started.")
                self._state, self.health = RUNNING, health
            say(
                f"The local backend (process {process.pid}) answers at {self.url}; "
                "it stays up for this session."
            )
            return Connection(self.url, self.token)

    def _fail(self, message: str, generation: int) -> None:
        with self._state_lock:
            if generation == self._generation:
                self._stop_process()
                self._state, self.last_error = FAILED, message

    def stop(self) -> None:
        """Stop the local backend (a start in progress gives up) and wait for it to be gone."""
        with self._state_lock:
            self._generation += 1
            self._stop_process()
            self._state, self.health = STOPPED, None

    def _stop_process(self) -> None:
        process, self._process = self._process, None
        if process is not None:
            process.stop()

    def apply_settings(self, old: PluginSettings, new: PluginSettings) -> bool:
        """Settings changed: a local backend running another command (another model or environment), or
        no longer wanted, is stopped. True when the caller should start it again."""
        if not self.is_running():
            return False
        if command_key(old) != command_key(new) or not new.start_local:
            self.stop()
            return new.start_local
        return False

    # -- the choice of backend --------------------------------------------------------------------
    def client(self, settings: PluginSettings, timeout_s: float | None = None) -> BackendClient:
        """A client for the backend the settings choose (the local one as it runs now); AuthError when
        the server's token cannot be read."""
        timeout = settings.request_timeout_s if timeout_s is None else timeout_s
        if settings.start_local:
            return BackendClient(self.url, self.token, timeout_s=timeout)
        return BackendClient(settings.server_url, settings.remote_token(), timeout_s=timeout)

    def resolve(
        self,
        settings: PluginSettings,
        is_cancelled: Callable[[], bool] = lambda: False,
        say: Callable[[str], None] = lambda text: None,
    ) -> Connection:
        """For a run with no backend given: the local backend running in this QGIS process, else the
        configured server, else a local backend started now (when allowed). BackendChoiceError when none."""
        running = self.local_connection()
        if running is not None:
            return running
        if settings.start_local:
            return self._start_for_run(settings, is_cancelled, say)
        token = remote_token(settings)
        try:
            BackendClient(settings.server_url, token, timeout_s=PROBE_TIMEOUT_S).health()
        except BackendUnreachable:
            if not settings.allow_local:
                raise BackendChoiceError(
                    f"No backend answers at {settings.server_url} and starting a local one is turned off in "
                    "the RS2-SAM 2 settings."
                ) from None
            say(f"No backend answers at {settings.server_url}.")
            return self._start_for_run(settings, is_cancelled, say)
        except BackendError:
            pass  # it answers (e.g. refuses the token): the run reports what it says
        return Connection(settings.server_url, token)

    def _start_for_run(self, settings: PluginSettings, is_cancelled, say) -> Connection:
        blocker = not_set_up_message(settings)
        if blocker is not None:
            raise BackendChoiceError(blocker)
        try:
            return self.ensure_local(settings, is_cancelled, say)
        except LocalStartError as exc:
            raise BackendChoiceError(str(exc)) from None


def remote_token(settings: PluginSettings) -> str:
    try:
        return settings.remote_token()
    except AuthError as exc:
        raise BackendChoiceError(str(exc)) from None


_SHARED: list[Backend] = []
_SHARED_LOCK = threading.Lock()


def shared_backend() -> Backend:
    """This QGIS process's one Backend."""
    with _SHARED_LOCK:
        if not _SHARED:
            _SHARED.append(Backend())
        return _SHARED[0]


@atexit.register
def stop_local_backend() -> None:
    """Stop the local backend this QGIS process started (at exit, and when the plugin unloads)."""
    if _SHARED:
        _SHARED[0].stop()
