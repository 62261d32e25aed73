"""Every error the service answers is `{"error": {"code", "message"}}`: 4xx for a client's mistake,
5xx only for a fault of the server (whose traceback goes to the log)."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from backend.contract import ErrorBody
from backend.errors import UserError
from backend.service.jobs import error_for
from backend.service.parsing import validation_message
from backend.service.security import ServiceError

log = logging.getLogger("rs2sam2.service")
ERROR_RESPONSES = {
    status: {"model": ErrorBody} for status in (400, 401, 403, 404, 409, 413, 422, 429, 500, 503)
}


def error_response(
    status: int, code: str, message: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status, headers=headers)


async def _service_error(_request: Request, exc: ServiceError) -> JSONResponse:
    return error_response(exc.status, exc.code, str(exc), exc.headers)


async def _user_error(_request: Request, exc: UserError) -> JSONResponse:
    error = error_for(exc)
    return error_response(error.status, error.code, error.message)


async def _validation_error(_request: Request, exc: RequestValidationError) -> JSONResponse:
    return error_response(422, "bad_request", validation_message(exc))


async def _http_error(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
    code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
    return error_response(exc.status_code, code, str(exc.detail))


async def _server_fault(_request: Request, exc: Exception) -> JSONResponse:
    log.exception("unexpected server fault")
    return error_response(500, "internal", f"the server failed on this request ({type(exc).__name__})")


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(ServiceError, _service_error)
    app.add_exception_handler(UserError, _user_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _server_fault)
