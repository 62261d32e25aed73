"""The endpoints of docs/service-api.md. Each reads the server's state from `request.app.state.service`."""

from __future__ import annotations

import asyncio
import logging

from fastapi import APIRouter, File, Form, Request, UploadFile
from fastapi.responses import JSONResponse

from backend import __version__
from backend.contract import (
    API_PREFIX,
    ErrorDetail,
    Health,
    JobCreated,
    JobStatus,
    ModelInfo,
    Progress,
    params_help,
)
from backend.engine.model_loading import model_precision
from backend.service.errors import ERROR_RESPONSES, error_response
from backend.service.jobs import Job
from backend.service.parsing import check_form_fields
from backend.service.schemas import FeatureCollection
from backend.service.security import ServiceError
from backend.service.state import ServiceState

log = logging.getLogger("rs2sam2.service")
DISCONNECT_POLL_S = 0.05  # how often a waiting /segment checks its job and its client
PARAMS_FIELD = Form(..., description=params_help())
RASTER_FIELD = File(None, description="GeoTIFF bytes")
PATH_FIELD = Form(None, description="a server-side path under the allowed roots")

router = APIRouter(prefix=API_PREFIX)


def _state(request: Request) -> ServiceState:
    return request.app.state.service


def _job_status(job: Job) -> JobStatus:
    error = ErrorDetail(job.error.code, job.error.message) if job.error else None
    return JobStatus(job_id=job.id, status=job.status, progress=Progress(job.done, job.total), error=error)


def _find_job(state: ServiceState, job_id: str) -> Job:
    job = state.jobs.get(job_id)
    if job is None:
        raise ServiceError(404, "unknown_job", f"there is no job {job_id!r} on this server")
    return job


def _finished_answer(job: Job) -> JSONResponse:
    if job.status == "done" and job.result is not None:
        return JSONResponse(job.result)
    if job.status == "failed" and job.error is not None:
        return error_response(job.error.status, job.error.code, job.error.message)
    if job.status == "cancelled" and job.error is not None:  # cancelled by the server (shutting down)
        return error_response(job.error.status, job.error.code, job.error.message)
    if job.status == "cancelled":
        return error_response(409, "cancelled", "the job was cancelled")
    return error_response(409, "not_done", f"the job is {job.status}; ask again when it is done")


def training_now(job) -> str:
    """The health's words for the training or evaluation job that runs now ("" when none)."""
    if job is None:
        return ""
    what = "fine-tuning" if job.kind == "train" else "evaluating"
    return f"{what} “{job.model_name}”"


@router.get("/health", response_model=Health, responses=ERROR_RESPONSES)
async def health(request: Request) -> Health:
    """Status, version and model; answers at once, even while a segmentation runs."""
    state = _state(request)
    return Health(
        version=__version__,
        model=ModelInfo(
            id=state.model.model_id,
            preset=state.config.preset,
            input_size=state.model.input_size,
            device=state.device,
            precision=model_precision(state.model),
            threads=state.threads,
        ),
        busy=state.jobs.busy,
        allow_paths=bool(state.config.allowed_roots),
        max_upload_mb=state.config.max_upload_mb,
        training=training_now(request.app.state.training.running),
    )


@router.post("/segment", responses={200: {"model": FeatureCollection}, **ERROR_RESPONSES})
async def segment_now(
    request: Request,
    params: str = PARAMS_FIELD,
    raster: UploadFile | None = RASTER_FIELD,
    path: str | None = PATH_FIELD,
):
    """Segment and wait: the FeatureCollection in the raster's CRS."""
    job = await _submit(request, raster, path, params)
    while not job.finished.is_set():
        if await request.is_disconnected():
            _state(request).jobs.cancel(job)  # nobody is waiting: free the worker for the next client
            log.info("client left; job %s cancelled", job.id)
            break
        await asyncio.sleep(DISCONNECT_POLL_S)
    return _finished_answer(job)


@router.post("/jobs", status_code=202, response_model=JobCreated, responses=ERROR_RESPONSES)
async def start_job(
    request: Request,
    params: str = PARAMS_FIELD,
    raster: UploadFile | None = RASTER_FIELD,
    path: str | None = PATH_FIELD,
) -> JobCreated:
    """Start a segmentation job; poll it, fetch its result, or cancel it."""
    job = await _submit(request, raster, path, params)
    return JobCreated(job_id=job.id, status="queued")


async def _submit(request: Request, raster: UploadFile | None, path: str | None, params: str) -> Job:
    """Check the form, the queue (before the work of parsing) and the request; queue it."""
    state = _state(request)
    await check_form_fields(request)
    client = request.client.host if request.client else ""
    state.jobs.check_capacity(client)
    parsed = await state.parser.parse(raster, path, params, client)
    try:
        return state.jobs.submit(parsed)
    except BaseException:  # the queue filled up meanwhile: the upload is not kept
        parsed.cleanup()
        raise


@router.get("/jobs/{job_id}", response_model=JobStatus, responses=ERROR_RESPONSES)
async def get_job(request: Request, job_id: str) -> JobStatus:
    """Status and progress (tiles done / total)."""
    return _job_status(_find_job(_state(request), job_id))


@router.get("/jobs/{job_id}/result", responses={200: {"model": FeatureCollection}, **ERROR_RESPONSES})
async def get_result(request: Request, job_id: str):
    """The FeatureCollection when done; 409 while not; the job's error when it failed."""
    return _finished_answer(_find_job(_state(request), job_id))


@router.delete("/jobs/{job_id}", response_model=JobCreated, responses=ERROR_RESPONSES)
async def cancel_job(request: Request, job_id: str):
    """Cancel a job; a running job stops before its next tile."""
    state = _state(request)
    job = _find_job(state, job_id)
    if job.status in ("done", "failed"):
        return error_response(409, "already_finished", f"the job has already finished ({job.status})")
    state.jobs.cancel(job)
    return JobCreated(job_id=job.id, status="cancelled")
