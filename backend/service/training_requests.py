"""Turning a /train or /evaluate form into a queued job: the params, the model names, the raster and
labels (backend/service/training_inputs.py), and the child's command line — every check before the
job takes a place in the queue, each failure its own 4xx code (docs/service-api.md)."""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi import Request, UploadFile
from fastapi.concurrency import run_in_threadpool

from backend.contract import (
    DEFAULT_START_MODEL,
    EVALUATION_OPTIONS,
    MIN_TRAINING_LABELS,
    TRAINING_OPTIONS,
    LabelReport,
    params_problems,
    resolved_params,
)
from backend.errors import UserError
from backend.service.config import ServiceConfig
from backend.service.security import ServiceError
from backend.service.training_inputs import (
    PHRASE_COLUMN,
    check_raster,
    chosen_source,
    label_problem,
    prepare_labels,
    save_upload,
    server_path,
)
from backend.service.training_jobs import INPUTS, LearningJob, TrainingJobs
from backend.weights.person_models import StoreError

RASTER_SUFFIXES = (".tif", ".tiff")
LABEL_UPLOAD_SUFFIXES = (".gpkg", ".geojson", ".json")


@dataclass
class Source:
    """One raster + labels pair of a form (the training or the validation pair)."""

    raster: UploadFile | None
    raster_path: str | None
    labels: UploadFile | None
    labels_path: str | None
    prefix: str = ""  # "" or "val_"

    @property
    def given(self) -> bool:
        return any(
            x is not None and x != "" for x in (self.raster, self.raster_path, self.labels, self.labels_path)
        )


async def check_fields(request: Request, allowed: tuple[str, ...]) -> None:
    """Each field at most once and no other (FastAPI would quietly pick one)."""
    form = await request.form()
    for name in {key for key, _ in form.multi_items()}:
        if name not in allowed:
            raise ServiceError(422, "bad_request", f"the form has an unknown field {name[:40]!r}")
        if len(form.getlist(name)) > 1:
            raise ServiceError(422, "bad_request", f"the form has the field {name!r} more than once")


def parse_params(text: str, options) -> dict[str, Any]:
    try:
        values = json.loads(text)
    except ValueError:
        raise ServiceError(422, "bad_params", "params must be a JSON object") from None
    if not isinstance(values, dict):
        raise ServiceError(422, "bad_params", "params must be a JSON object")
    problems = params_problems(values, options)
    if problems:
        code, clause = problems[0]
        raise ServiceError(422 if code == "bad_params" else 400, code, f"params: {clause}")
    return resolved_params(values, options)


def check_model(name: str) -> None:
    """A model name the backend can load (backend.weights.models, a person's models included)."""
    from backend.weights.models import model_status

    try:
        status = model_status(name)
    except UserError as exc:
        raise ServiceError(400, "unknown_model", str(exc)) from None
    if not status.available:
        raise ServiceError(
            400, "model_not_available", f"the model {name} is not here; get it with: {status.how_to_get}"
        )


def check_new_name(jobs: TrainingJobs, name: str, overwrite: bool) -> None:
    try:
        jobs.store.check_free(name, overwrite)
    except StoreError as exc:
        raise ServiceError(exc.status, exc.code, str(exc)) from None
    if name.casefold() in jobs.names_in_use():
        raise ServiceError(
            409, "model_exists", f"a training job already on this server makes a model named {name!r}"
        )


async def prepare_source(
    job: LearningJob, source: Source, config: ServiceConfig, phrase_field: str, minimum: int
) -> tuple[Path, Path, LabelReport]:
    """(raster path, the job's labels file, what became of the labels) of one raster + labels pair."""
    what = "validation raster" if source.prefix else "raster"
    chosen_source(source.raster, source.raster_path, what, f"{source.prefix}raster")
    chosen_source(
        source.labels, source.labels_path, what.replace("raster", "labels"), f"{source.prefix}labels"
    )
    inputs = job.folder / INPUTS
    if source.raster is not None:
        raster = await save_upload(source.raster, inputs, f"{source.prefix}raster", RASTER_SUFFIXES)
    else:
        raster = _comma_free(
            server_path(source.raster_path, config.allowed_roots), inputs, f"{source.prefix}raster"
        )
    if source.labels is not None:
        labels_in = await save_upload(
            source.labels, inputs, f"{source.prefix}labels_sent", LABEL_UPLOAD_SUFFIXES
        )
    else:
        labels_in = server_path(source.labels_path, config.allowed_roots)
    name = source.raster.filename if source.raster is not None else Path(source.raster_path).name
    facts = await run_in_threadpool(
        check_raster, raster, source.raster is not None, config.allowed_roots, name or what
    )
    labels_name = f"the {what.replace('raster', 'labels')}"
    target = inputs / f"{source.prefix}labels.gpkg"
    prepared = await run_in_threadpool(prepare_labels, labels_in, facts, phrase_field, target, labels_name)
    problem = label_problem(prepared.report, minimum, labels_name)
    if problem is not None:
        raise problem
    return raster, prepared.path, prepared.report


def _comma_free(path: Path, inputs: Path, stem: str) -> Path:
    """`rs2sam2 train --data region:RASTER,LABELS,…` splits at commas: a path holding one is linked."""
    if "," not in str(path):
        return path
    link = inputs / f"{stem}{path.suffix}"
    link.symlink_to(path)
    return link


def train_command(
    job: LearningJob, raster: Path, labels: Path, val: tuple[Path, Path] | None, device: str
) -> list[str]:
    """`rs2sam2 train`'s arguments for the job's params (rs2sam2_qgis/training_contract.py)."""
    params = job.params
    command = ["train", "--data", f"region:{raster},{labels},{PHRASE_COLUMN}", "--out", str(job.work)]
    command += [
        "--device",
        device,
        "--no-progress",
        "--seed",
        str(params["seed"]),
        "--freeze",
        params["freeze"],
    ]
    if params.get("start_model"):
        command += ["--model", params["start_model"]]
    if params.get("max_steps") is not None:
        command += ["--max-steps", str(params["max_steps"])]
    if not params["replay"]:
        command += ["--replay-share", "0"]
    if val is not None:
        command += ["--val-data", f"region:{val[0]},{val[1]},{PHRASE_COLUMN}"]
    return command


def evaluate_command(
    job: LearningJob, raster: Path, labels: Path, model_flags: list[str], device: str
) -> list[str]:
    return [
        "evaluate",
        "--region",
        f"{raster},{labels},{PHRASE_COLUMN}",
        *model_flags,
        "--device",
        device,
        "--out",
        str(job.work / "result.json"),
    ]


def served_model_flags(config: ServiceConfig) -> tuple[list[str], str]:
    """The model the server runs, as flags for a child (and its name): what /evaluate scores by default."""
    if config.model:
        return ["--model", config.model], config.model
    if config.checkpoint:
        return ["--checkpoint", config.checkpoint], Path(config.checkpoint).stem
    if config.preset:
        return ["--preset", config.preset], config.preset
    return ["--model", DEFAULT_START_MODEL], DEFAULT_START_MODEL


async def new_training_job(
    jobs: TrainingJobs, config: ServiceConfig, params: str, main: Source, val: Source
) -> LearningJob:
    values = parse_params(params, TRAINING_OPTIONS)
    jobs.check_capacity()
    check_new_name(jobs, values["name"], values["overwrite"])
    if values["start_model"]:
        check_model(values["start_model"])
    job = LearningJob.new("train", jobs.root, model_name=values["name"], command=[], params=values)
    try:
        raster, labels, report = await prepare_source(
            job, main, config, values["phrase_field"], MIN_TRAINING_LABELS
        )
        job.labels = _report(report)
        validation = None
        if val.given:
            val_raster, val_labels, val_report = await prepare_source(
                job, val, config, values["phrase_field"], 1
            )
            job.val_labels, validation = _report(val_report), (val_raster, val_labels)
        job.command = train_command(job, raster, labels, validation, config.device)
        jobs.submit(job)
    except BaseException:
        shutil.rmtree(job.folder, ignore_errors=True)
        raise
    return job


async def new_evaluation_job(
    jobs: TrainingJobs, config: ServiceConfig, params: str, main: Source
) -> LearningJob:
    values = parse_params(params, EVALUATION_OPTIONS)
    jobs.check_capacity()
    if values["model"]:
        check_model(values["model"])
        flags, name = ["--model", values["model"]], values["model"]
    else:
        flags, name = served_model_flags(config)
    job = LearningJob.new("evaluate", jobs.root, model_name=name, command=[], params=values)
    try:
        raster, labels, report = await prepare_source(job, main, config, values["phrase_field"], 1)
        job.labels = _report(report)
        job.command = evaluate_command(job, raster, labels, flags, config.device)
        jobs.submit(job)
    except BaseException:
        shutil.rmtree(job.folder, ignore_errors=True)
        raise
    return job


def _report(report: LabelReport) -> dict[str, Any]:
    from backend.contract import to_wire

    return to_wire(report)
