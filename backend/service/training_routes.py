"""The training and evaluation endpoints of docs/service-api.md ("Training and evaluation"); the jobs
run in child processes (backend/service/training_jobs.py), so segmentation keeps answering."""

from __future__ import annotations

from fastapi import APIRouter, File, Form, Request, UploadFile
from fastapi.responses import JSONResponse

from backend.contract import (
    API_PREFIX,
    EVALUATE_FORM_FIELDS,
    TRAIN_FORM_FIELDS,
    ErrorDetail,
    PersonModelList,
    Scores,
    TrainingJobCreated,
    TrainingJobList,
    TrainingJobStatus,
    to_wire,
)
from backend.service.errors import ERROR_RESPONSES
from backend.service.security import ServiceError
from backend.service.training_jobs import LearningJob, TrainingJobs
from backend.service.training_requests import Source, check_fields, new_evaluation_job, new_training_job

training_router = APIRouter(prefix=API_PREFIX)
PARAMS_HELP = "JSON: the training options (rs2sam2_qgis/training_contract.py)"


# One FieldInfo per parameter: FastAPI records each parameter's name on it.
def _raster():
    return File(None, description="GeoTIFF bytes")


def _path():
    return Form(None, description="a server-side raster path under the allowed roots")


def _labels():
    return File(None, description="GeoPackage or GeoJSON bytes: the labelled polygons")


def _labels_path():
    return Form(None, description="a server-side labels path under the allowed roots")


SHARED = "it shares the CPU/GPU with segmentation requests"


def _jobs(request: Request) -> TrainingJobs:
    return request.app.state.training


def job_status(jobs: TrainingJobs, job: LearningJob) -> TrainingJobStatus:
    progress = job.progress() if job.state != "queued" else {}
    step, total = int(progress.get("step") or 0), int(progress.get("total_steps") or 0)
    phase = {"queued": "queued", "done": "done"}.get(job.state, progress.get("phase") or "preparing")
    position = jobs.queue_position(job) if job.state == "queued" else None
    error = ErrorDetail(job.error["code"], job.error["message"]) if job.error else None
    return TrainingJobStatus(
        job_id=job.id,
        kind=job.kind,
        state=job.state,  # type: ignore[arg-type]
        phase=phase,
        model_name=job.model_name,
        run_id=job.id,
        step=step,
        total_steps=total,
        loss=progress.get("loss"),
        validation=Scores.from_json(progress.get("validation")),
        message=_message(job, phase, step, total, position),
        resumable=job.resumable,
        queue_position=position,
        error=error,
        created=job.created,
    )


def _message(job: LearningJob, phase: str, step: int, total: int, position: int | None) -> str:
    if job.state == "queued":
        return f"waiting: {position} job(s) run or wait before it (one training or evaluation at a time)"
    if job.state == "running":
        where = f" step {step} of {total}" if total else ""
        return f"{phase}{where}; {SHARED}"
    if job.state == "done":
        return (
            f"done: the model {job.model_name!r} is ready"
            if job.kind == "train"
            else "done: the scores are ready"
        )
    if job.state == "cancelled":
        return f"cancelled at step {step}; resume to continue" if job.resumable else "cancelled"
    if job.state == "interrupted" and job.resumable:
        return f"the server stopped while it ran (at step {step}); resume to continue"
    if job.state == "interrupted":
        return "the server stopped while it ran; start it again"
    return (job.error or {}).get("message", job.state)


def _sources(prefix: str, raster, path, labels, labels_path) -> Source:
    return Source(raster, path, labels, labels_path, prefix)


@training_router.post("/train", status_code=202, responses=ERROR_RESPONSES)
async def start_training(
    request: Request,
    params: str = Form(..., description=PARAMS_HELP),
    raster: UploadFile | None = _raster(),
    path: str | None = _path(),
    labels: UploadFile | None = _labels(),
    labels_path: str | None = _labels_path(),
    val_raster: UploadFile | None = _raster(),
    val_path: str | None = _path(),
    val_labels: UploadFile | None = _labels(),
    val_labels_path: str | None = _labels_path(),
):
    """Fine-tune a model on a labelled region (labels: ≥ 30 polygons); 202 with the job's id."""
    await check_fields(request, TRAIN_FORM_FIELDS)
    jobs = _jobs(request)
    main = _sources("", raster, path, labels, labels_path)
    val = _sources("val_", val_raster, val_path, val_labels, val_labels_path)
    job = await new_training_job(jobs, request.app.state.service.config, params, main, val)
    return _created(jobs, job)


@training_router.post("/evaluate", status_code=202, responses=ERROR_RESPONSES)
async def start_evaluation(
    request: Request,
    params: str = Form(..., description="JSON: model, phrase_field"),
    raster: UploadFile | None = _raster(),
    path: str | None = _path(),
    labels: UploadFile | None = _labels(),
    labels_path: str | None = _labels_path(),
):
    """Score a model on labelled polygons (Pr@0.5–0.9, oIoU, mIoU overall, by kind and by phrase)."""
    await check_fields(request, EVALUATE_FORM_FIELDS)
    jobs = _jobs(request)
    main = _sources("", raster, path, labels, labels_path)
    job = await new_evaluation_job(jobs, request.app.state.service.config, params, main)
    return _created(jobs, job)


def _created(jobs: TrainingJobs, job: LearningJob) -> JSONResponse:
    from backend.contract import LabelReport

    created = TrainingJobCreated(
        job_id=job.id,
        kind=job.kind,
        state=job.state,  # type: ignore[arg-type]
        status_url=f"{API_PREFIX}/training/{job.id}",
        queue_position=jobs.queue_position(job) or 0,
        labels=LabelReport.from_json(job.labels),
        val_labels=LabelReport.from_json(job.val_labels),
    )
    return JSONResponse(to_wire(created), status_code=202)


@training_router.get("/training", responses=ERROR_RESPONSES)
async def list_training(request: Request):
    """Every training and evaluation job this server knows, newest first, and which one runs."""
    jobs = _jobs(request)
    running = jobs.running
    answer = TrainingJobList([job_status(jobs, job) for job in jobs.jobs()], running.id if running else None)
    return JSONResponse(to_wire(answer))


@training_router.get("/training/{job_id}", responses=ERROR_RESPONSES)
async def get_training(request: Request, job_id: str):
    jobs = _jobs(request)
    return JSONResponse(to_wire(job_status(jobs, jobs.get(job_id))))


@training_router.delete("/training/{job_id}", responses=ERROR_RESPONSES)
async def cancel_training(request: Request, job_id: str):
    """Cancel: a waiting job at once; a training run after its current step, resumable."""
    jobs = _jobs(request)
    job = jobs.get(job_id)
    jobs.cancel(job)
    return JSONResponse(to_wire(job_status(jobs, job)))


@training_router.post("/training/{job_id}/resume", responses=ERROR_RESPONSES)
async def resume_training(request: Request, job_id: str):
    """Queue a cancelled or interrupted training run again; it continues from its last saved step."""
    jobs = _jobs(request)
    job = jobs.get(job_id)
    jobs.resume(job)
    return JSONResponse(to_wire(job_status(jobs, job)))


@training_router.get("/training/{job_id}/result", responses=ERROR_RESPONSES)
async def training_result(request: Request, job_id: str):
    """Evaluate: the EvaluationResult; train: the PersonModel registered. 409 not_done before."""
    job = _jobs(request).get(job_id)
    if job.state != "done" or job.result is None:
        if job.error:
            raise ServiceError(409, job.error["code"], job.error["message"])
        raise ServiceError(409, "not_done", f"the job is {job.state}; ask again when it is done")
    result = dict(job.result)
    if job.kind == "evaluate":
        result["labels"] = job.labels
    return JSONResponse(result)


@training_router.get("/models", responses=ERROR_RESPONSES)
async def person_models(request: Request):
    """The person's own models on this server (rs2sam2 models list)."""
    store = _jobs(request).store
    return JSONResponse(to_wire(PersonModelList(store.list(), str(store.folder))))
