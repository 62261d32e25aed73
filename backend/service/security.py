"""Bearer-token check, request-body limit (pure ASGI middleware) and server-side path confinement."""

from __future__ import annotations

import hmac
import json
from pathlib import Path

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from backend.engine.confine import inside, plain_path_problem
from backend.errors import UserError


class ServiceError(UserError):
    """A client mistake at the HTTP layer, with its status and code."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status = status
        self.code = code
        self.headers = headers or {}  # e.g. Retry-After with a 429


def error_json(code: str, message: str) -> bytes:
    return json.dumps({"error": {"code": code, "message": message}}).encode("utf-8")


async def send_error(send: Send, status: int, code: str, message: str, headers: list | None = None) -> None:
    body = error_json(code, message)
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
            + (headers or []),
        }
    )
    await send({"type": "http.response.body", "body": body})


class BearerTokenMiddleware:
    """Refuse every request (docs and schema included) that lacks `Authorization: Bearer <token>`."""

    def __init__(self, app: ASGIApp, token: str):
        self.app = app
        self.expected = f"Bearer {token}".encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            given = dict(scope["headers"]).get(b"authorization", b"")
            if not hmac.compare_digest(given, self.expected):
                message = (
                    "a valid bearer token is required" if given else "this server requires a bearer token"
                )
                await send_error(send, 401, "unauthorized", message, [(b"www-authenticate", b"Bearer")])
                return
        await self.app(scope, receive, send)


class _BodyTooLarge(Exception):
    pass


class BodySizeLimitMiddleware:
    """413 for bodies above the limit: by Content-Length up front, or by counting streamed bytes."""

    def __init__(self, app: ASGIApp, max_bytes: int):
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        message = f"the request is larger than this server's limit of {self.max_bytes // 2**20} MB"
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.max_bytes:
            await send_error(send, 413, "too_large", message)
            return
        received = 0
        started = False

        async def counting_receive() -> Message:
            nonlocal received
            incoming = await receive()
            if incoming["type"] == "http.request":
                received += len(incoming.get("body", b""))
                if received > self.max_bytes:
                    raise _BodyTooLarge
            return incoming

        async def tracking_send(outgoing: Message) -> None:
            nonlocal started
            started = started or outgoing["type"] == "http.response.start"
            await send(outgoing)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except _BodyTooLarge:
            if not started:
                await send_error(send, 413, "too_large", message)


MAX_PATH_CHARS = 4096  # PATH_MAX on Linux: a longer "path" is not one


def resolve_allowed_path(raw: str, roots: tuple[Path, ...]) -> Path:
    """`raw` as a real path inside one of `roots`; `..` parts, symlinks out of the roots, GDAL's virtual
    file systems and connection strings are refused."""
    if not roots:
        raise ServiceError(
            403, "paths_not_allowed", "this server does not accept server-side paths; upload the raster"
        )
    problem = plain_path_problem(raw)
    if problem is not None:
        raise ServiceError(403, "path_not_allowed", problem)
    if len(raw) > MAX_PATH_CHARS:
        raise ServiceError(400, "bad_path", f"a server-side path must be at most {MAX_PATH_CHARS} characters")
    candidate = Path(raw)
    if not candidate.is_absolute():
        raise ServiceError(400, "bad_path", "a server-side path must be absolute")
    if ".." in candidate.parts:
        raise ServiceError(403, "path_not_allowed", "a server-side path must not contain '..'")
    try:
        real = candidate.resolve()  # follows every symlink: the real location is what is checked
        is_file = real.is_file()
    except (OSError, RuntimeError):  # a symlink loop, a name too long for the file system …
        raise ServiceError(400, "bad_path", f"the server cannot resolve the path {raw}") from None
    if inside(real, tuple(root.resolve() for root in roots)):
        if not is_file:
            raise ServiceError(404, "not_found", f"no such file on the server: {raw}")
        return real
    raise ServiceError(403, "path_not_allowed", "that path is outside the folders this server allows")
