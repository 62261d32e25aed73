"""A small synchronous client for the backend's HTTP API (docs/service-api.md).

It blocks, so it only ever runs inside a QgsTask or a Processing algorithm's worker thread, never on
the UI thread. Plain `urllib` keeps the plugin free of extra dependencies; every failure becomes a
`BackendError` whose message is one sentence a person can act on.
"""

from __future__ import annotations

import http.client
import json
import re
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..contract import API_PREFIX, Health, JobStatus, is_loopback_url

JOB_POLL_INTERVAL_S = 0.25
# A job's status is first asked after JOB_POLL_FIRST_S, each pause twice the last up to the interval: a
# small area's answer (tenths of a second) is not held back by a quarter-second pause it did not need.
JOB_POLL_FIRST_S = 0.02
# A busy backend (429, too many jobs) says how long to wait in Retry-After; the client waits that long and
# submits again, for at most this long in all before it gives up with a sentence.
MAX_BUSY_WAIT_S = 600.0
BUSY_CODES = ("too_many_jobs", "queue_full")
# The answers that mean "the backend cannot read that server-side path" (it runs elsewhere, in another
# container, or may not read that folder): the plugin then sends the pixels instead (runner.py).
PATH_NOT_REACHABLE_CODES = ("path_not_allowed", "bad_path", "not_found")


class BackendError(Exception):
    """The backend could not do what was asked; `message` is meant for a person."""

    def __init__(
        self,
        message: str,
        code: str = "backend_error",
        status: int | None = None,
        retry_after_s: float | None = None,
    ):
        super().__init__(message)
        self.message = message
        self.code = code
        self.status = status
        self.retry_after_s = retry_after_s  # the server's Retry-After, when it sent one


class BackendUnreachable(BackendError):
    def __init__(self, message: str, reason: str = ""):
        super().__init__(message, code="unreachable")
        self.reason = reason  # e.g. "connection refused: is it running?"


class BackendLost(BackendError):
    """The backend accepted the run, then stopped answering (killed, crashed, its machine gone)."""

    def __init__(self, base_url: str, reason: str):
        reason = reason.partition(":")[0]  # "connection refused", without the hint for a backend never seen
        super().__init__(
            f"The backend at {base_url} stopped answering during the run ({reason}); no result came back.",
            code="backend_lost",
        )


class RunCancelled(BackendError):
    def __init__(self, message: str = "The run was cancelled."):
        super().__init__(message, code="cancelled")


@dataclass(frozen=True)
class RasterPayload:
    """What travels to the backend: a server-side path, or a local GeoTIFF file uploaded as bytes."""

    path: str | None = None
    upload_file: str | None = None
    upload_name: str = "raster.tif"  # the file name the backend records as the features' `source`

    def __post_init__(self):
        if (self.path is None) == (self.upload_file is None):
            raise ValueError("exactly one of path and upload_file")


class BackendClient:
    def __init__(
        self,
        base_url: str,
        token: str = "",
        timeout_s: float = 60.0,
        max_busy_wait_s: float = MAX_BUSY_WAIT_S,
    ):
        self.base_url = base_url.rstrip("/")
        self.token = token.strip()
        self.timeout_s = timeout_s
        self.max_busy_wait_s = max_busy_wait_s
        # Loopback traffic must never go through an HTTP proxy from the environment.
        handlers = [urllib.request.ProxyHandler({})] if is_loopback_url(self.base_url) else []
        self._opener = urllib.request.build_opener(*handlers)

    # -- endpoints -------------------------------------------------------------------------------
    def health(self, timeout_s: float | None = None) -> Health:
        return Health.from_json(self._request("GET", "/health", timeout_s=timeout_s))

    def submit_job(self, payload: RasterPayload, params: dict) -> str:
        body, content_type = encode_multipart(payload, params)
        answer = self._request("POST", "/jobs", body=body, content_type=content_type)
        return str(answer["job_id"])

    def job_status(self, job_id: str) -> JobStatus:
        return JobStatus.from_json(self._request("GET", f"/jobs/{urllib.parse.quote(job_id)}"), job_id)

    def job_result(self, job_id: str) -> dict:
        return self._request("GET", f"/jobs/{urllib.parse.quote(job_id)}/result")

    def cancel_job(self, job_id: str) -> None:
        self._request("DELETE", f"/jobs/{urllib.parse.quote(job_id)}", timeout_s=10)

    def segment(
        self,
        payload: RasterPayload,
        params: dict,
        is_cancelled: Callable[[], bool] = lambda: False,
        on_progress: Callable[[float], None] = lambda fraction: None,
        on_wait: Callable[[str], None] = lambda message: None,
    ) -> dict:
        """Run one segmentation as a job: submit, poll progress, fetch the FeatureCollection.

        A busy backend (429 with Retry-After) is asked again after the time it names, for at most
        `max_busy_wait_s` in all (`on_wait` hears why the run waits). Cancelling (is_cancelled() turning
        true) deletes the job on the server and raises RunCancelled.
        """
        job_id = self._submit_when_free(payload, params, is_cancelled, on_wait)
        try:
            return self._wait_for(job_id, is_cancelled, on_progress)
        except BackendUnreachable as exc:  # it took the job, then went away: say so, not "not reachable"
            raise BackendLost(self.base_url, exc.reason) from None
        except BackendError as exc:
            raise self._explained(exc) from None

    def _submit_when_free(
        self, payload: RasterPayload, params: dict, is_cancelled: Callable[[], bool], on_wait
    ) -> str:
        waited = 0.0
        while True:
            try:
                return self.submit_job(payload, params)
            except BackendError as exc:
                if exc.code not in BUSY_CODES or exc.status != 429:
                    raise self._explained(exc) from None
                pause = max(1.0, exc.retry_after_s or 0.0)
                if waited + pause > self.max_busy_wait_s:
                    raise BackendError(
                        f"The backend at {self.base_url} is still busy with other runs after "
                        f"{waited:.0f} s of waiting ({exc.message.rstrip('.')}); try again later.",
                        code=exc.code,
                        status=429,
                        retry_after_s=exc.retry_after_s,
                    ) from None
                on_wait(f"The backend is busy ({exc.message.rstrip('.')}); asking again in {pause:.0f} s.")
                _sleep_unless_cancelled(pause, is_cancelled)
                waited += pause

    def _explained(self, exc: BackendError) -> BackendError:
        """The backend's answers that need the plugin's words: what happened and what to do."""
        if isinstance(exc, BackendUnreachable | RunCancelled):
            return exc
        if exc.code == SHUTTING_DOWN:
            message = (
                f"The backend at {self.base_url} is shutting down, so the run was not done and no result "
                "came back; start the backend again (or wait until it is back) and run again."
            )
        elif exc.code == OUT_OF_MEMORY:
            message = f"The backend ran out of memory: {_lower_first(exc.message)}"
        elif exc.code == TIME_LIMIT:
            message = f"The run was stopped at the backend's time limit: {_lower_first(exc.message)}"
        elif exc.status == 503:  # a 503 without the backend's own code (a proxy in between …)
            message = f"The backend at {self.base_url} is unavailable for now (HTTP 503); try again later."
        else:
            return exc
        return BackendError(message, code=exc.code, status=exc.status, retry_after_s=exc.retry_after_s)

    def _wait_for(
        self, job_id: str, is_cancelled: Callable[[], bool], on_progress: Callable[[float], None]
    ) -> dict:
        pause = JOB_POLL_FIRST_S
        while True:
            if is_cancelled():
                try:
                    self.cancel_job(job_id)
                except BackendError:
                    pass  # the job may have just finished; either way nothing is kept
                raise RunCancelled()
            status = self.job_status(job_id)
            on_progress(status.progress.fraction)
            if status.status == "done":
                return self.job_result(job_id)
            if status.status == "failed":
                raise BackendError(
                    as_sentence(status.error.message if status.error else "")
                    or "The backend failed without saying why.",
                    code=status.error.code if status.error else "failed",
                    status=_STATUS_OF_JOB_ERROR.get(status.error.code) if status.error else None,
                )
            if status.status == "cancelled":
                if status.error is not None and status.error.message:  # e.g. the server shutting down
                    raise BackendError(
                        as_sentence(status.error.message),
                        code=status.error.code,
                        status=_STATUS_OF_JOB_ERROR.get(status.error.code),
                    )
                raise RunCancelled("The backend cancelled the run.")
            time.sleep(pause)
            pause = min(2 * pause, JOB_POLL_INTERVAL_S)

    # -- plumbing --------------------------------------------------------------------------------
    def call(
        self, method: str, path: str, form: list[FormPart] | None = None, timeout_s: float | None = None
    ) -> dict:
        """One request to the API (`path` below /api/v1; a multipart form when given), its JSON answer;
        every failure a BackendError (the training client's way in: connection/training_client.py)."""
        body, content_type = encode_form(form) if form is not None else (None, None)
        return self._request(method, path, body=body, content_type=content_type, timeout_s=timeout_s)

    def _request(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        content_type: str | None = None,
        timeout_s: float | None = None,
    ) -> dict:
        url = f"{self.base_url}{API_PREFIX}{path}"
        request = urllib.request.Request(url, data=body, method=method)
        request.add_header("Accept", "application/json")
        if content_type:
            request.add_header("Content-Type", content_type)
        if self.token:
            request.add_header("Authorization", f"Bearer {self.token}")
        try:
            with self._opener.open(request, timeout=timeout_s or self.timeout_s) as response:
                raw = response.read()
        except urllib.error.HTTPError as exc:
            raise _error_from_response(exc) from None
        except urllib.error.URLError as exc:
            raise self._unreachable(_reason(exc.reason)) from None
        except (TimeoutError, ConnectionError, OSError) as exc:
            raise self._unreachable(_reason(exc)) from None
        except http.client.HTTPException:  # the connection broke mid-answer (a server killed while sending)
            raise self._unreachable("the connection broke off") from None
        try:
            return json.loads(raw.decode("utf-8")) if raw else {}
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise BackendError(
                f"The server at {self.base_url} did not answer like an RS2-SAM 2 backend.", code="bad_answer"
            ) from None

    def _unreachable(self, reason: str) -> BackendUnreachable:
        return BackendUnreachable(f"The backend at {self.base_url} is not reachable ({reason}).", reason)


SHUTTING_DOWN, OUT_OF_MEMORY, TIME_LIMIT = "shutting_down", "out_of_memory", "time_limit"
# A job's status carries its error's code only; these are the statuses its result would answer with.
_STATUS_OF_JOB_ERROR = {SHUTTING_DOWN: 503, OUT_OF_MEMORY: 503, TIME_LIMIT: 400, "not_found": 404}


def _sleep_unless_cancelled(seconds: float, is_cancelled: Callable[[], bool]) -> None:
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        if is_cancelled():
            raise RunCancelled()
        time.sleep(min(JOB_POLL_INTERVAL_S, left))


def _lower_first(text: str) -> str:
    """A sentence continued after a colon: "The model ran …" → "the model ran …"."""
    return text[:1].lower() + text[1:] if text[:2] != text[:2].upper() else text


def _retry_after(exc: urllib.error.HTTPError) -> float | None:
    """Retry-After in seconds (the delta form; the HTTP-date form is not sent by the backend)."""
    value = exc.headers.get("Retry-After") if exc.headers is not None else None
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        return None
    return seconds if seconds >= 0 and seconds == seconds else None


def as_sentence(text: str) -> str:
    """The backend's messages as a sentence for the message bar: capital first letter, final stop."""
    text = " ".join(text.split())
    if not text:
        return ""
    text = text[0].upper() + text[1:]
    return text if text[-1] in ".!?…" else text + "."


def _reason(reason) -> str:
    if isinstance(reason, TimeoutError) or "timed out" in str(reason):
        return "no answer in time"
    if isinstance(reason, ConnectionRefusedError) or "Connection refused" in str(reason):
        return "connection refused: is it running?"
    # A request in flight when the backend died (or a kept-alive connection it closed): said as plainly.
    if isinstance(reason, ConnectionResetError) or "Connection reset" in str(reason):
        return "connection reset"
    return str(getattr(reason, "strerror", None) or reason)


def _error_from_response(exc: urllib.error.HTTPError) -> BackendError:
    """Turn the backend's JSON error (or anything else the server sent) into a BackendError."""
    retry_after = _retry_after(exc)
    try:
        data = json.loads(exc.read().decode("utf-8"))
    except Exception:  # noqa: BLE001 - any unreadable body gets the generic message below
        data = None
    if isinstance(data, dict) and isinstance(data.get("error"), dict):
        error = data["error"]
        message = as_sentence(str(error.get("message") or ""))
        code = str(error.get("code") or "http_error")
        if message:
            return BackendError(message, code=code, status=exc.code, retry_after_s=retry_after)
    if isinstance(data, dict) and data.get("detail"):
        detail = data["detail"]
        if isinstance(detail, list) and detail and isinstance(detail[0], dict):
            detail = detail[0].get("msg", detail)
        return BackendError(
            f"The backend rejected the request: {detail}.", code="http_error", status=exc.code
        )
    if exc.code == 401:
        return BackendError(
            "The backend refused the access token; check it in the RS2-SAM 2 settings.",
            code="unauthorized",
            status=401,
        )
    return BackendError(
        f"The backend answered with HTTP error {exc.code} ({exc.reason}).",
        code="http_error",
        status=exc.code,
        retry_after_s=retry_after,
    )


# One part of a multipart form: (field name, bytes, file name or None, content type or None).
FormPart = tuple[str, bytes, "str | None", "str | None"]


def upload_part(name: str, file_path: str, upload_name: str, content_type: str) -> FormPart:
    """A file field: the file's bytes under a safe file name (the backend records it)."""
    safe = re.sub(r"[^\w.\- ]+", "_", upload_name).strip() or f"{name}{Path(file_path).suffix}"
    return (name, Path(file_path).read_bytes(), safe, content_type)


def encode_form(parts: list[FormPart]) -> tuple[bytes, str]:
    """The multipart/form-data body of `parts`, and its content type."""
    boundary = f"rs2sam2-{uuid.uuid4().hex}"
    chunks: list[bytes] = []
    for name, value, filename, content_type in parts:
        disposition = f'form-data; name="{name}"'
        if filename:
            disposition += f'; filename="{filename}"'
        head = f"--{boundary}\r\nContent-Disposition: {disposition}\r\n"
        if content_type:
            head += f"Content-Type: {content_type}\r\n"
        chunks.append(head.encode("utf-8") + b"\r\n" + value + b"\r\n")
    body = b"".join(chunks) + f"--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"


def encode_multipart(payload: RasterPayload, params: dict) -> tuple[bytes, str]:
    """The multipart form the API takes: `params` (JSON) and `path` or `raster` (GeoTIFF bytes)."""
    parts: list[FormPart] = [("params", json.dumps(params).encode("utf-8"), None, None)]
    if payload.path is not None:
        parts.append(("path", payload.path.encode("utf-8"), None, None))
    else:
        parts.append(
            upload_part("raster", payload.upload_file, payload.upload_name or "raster.tif", "image/tiff")
        )
    return encode_form(parts)
