"""Serving the app under uvicorn so that SIGTERM and Ctrl-C stop it cleanly.

On the signal every job is cancelled at once (a running one stops before its next tile, a waiting
`/segment` answers 503 `shutting_down`), uvicorn closes its connections and the app's lifespan, and
`rs2sam2 serve` exits with status 0. (uvicorn's own `run` would re-raise the signal once shut down,
so the process would die of it instead of exiting.)
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Callable, Generator
from types import FrameType

import uvicorn
from uvicorn.server import HANDLED_SIGNALS


class GracefulServer(uvicorn.Server):
    """uvicorn's server, calling `on_exit` (in a thread of its own) when asked to stop."""

    def __init__(self, config: uvicorn.Config, on_exit: Callable[[], None]):
        super().__init__(config)
        self._on_exit = on_exit

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        # A signal handler runs between two bytecodes of the main thread, which may hold the job
        # manager's lock: cancelling from another thread cannot deadlock with it.
        threading.Thread(target=self._on_exit, name="rs2sam2-shutdown", daemon=True).start()
        super().handle_exit(sig, frame)

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        """uvicorn's handlers for SIGINT/SIGTERM, restored afterwards — without re-raising the signal."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        original = {sig: signal.signal(sig, self.handle_exit) for sig in HANDLED_SIGNALS}
        try:
            yield
        finally:
            for sig, handler in original.items():
                signal.signal(sig, handler)
