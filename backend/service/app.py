"""The HTTP API of docs/service-api.md on FastAPI: a thin layer over the engine and the job worker."""

from __future__ import annotations

import shutil
import tempfile
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI

from backend import __version__
from backend.model.api import PhraseSegmenter
from backend.service.config import ServiceConfig
from backend.service.errors import install_error_handlers
from backend.service.jobs import JobManager
from backend.service.parsing import RequestParser
from backend.service.routes import router
from backend.service.security import BearerTokenMiddleware, BodySizeLimitMiddleware
from backend.service.state import ServiceState, current_threads
from backend.service.training_jobs import TrainingJobs
from backend.service.training_routes import training_router


def create_app(
    config: ServiceConfig, model: PhraseSegmenter, device: str, threads: int | None = None
) -> FastAPI:
    """The service for one model, kept in memory for every request: its job worker starts and stops with
    the app's lifespan. `threads`: torch's CPU threads, for /health (default: as torch has them now)."""
    upload_dir = Path(tempfile.mkdtemp(prefix="rs2sam2-uploads-"))
    jobs = JobManager(
        model,
        max_queued=config.max_queued_jobs,
        max_per_client=config.max_jobs_per_client,
        time_limit_s=config.job_time_limit_s,
    )
    parser = RequestParser(config, model, upload_dir)
    threads = current_threads() if threads is None else threads
    state = ServiceState(config, model, device, jobs, parser, upload_dir, threads)
    # training and evaluation jobs, in child processes (one at a time) with the server's CPU threads
    training = TrainingJobs(threads=threads)

    @asynccontextmanager
    async def lifespan(_app: FastAPI):
        jobs.start()
        training.start()
        try:
            yield
        finally:
            jobs.stop()
            training.stop()  # a running training run saves its state: interrupted, resumable
            shutil.rmtree(upload_dir, ignore_errors=True)

    app = FastAPI(
        title="RS2-SAM 2 backend",
        version=__version__,
        description="Referring segmentation of georeferenced rasters: phrases in, GeoJSON polygons out.",
        lifespan=lifespan,
    )
    app.state.service = state
    app.state.training = training
    install_error_handlers(app)
    app.include_router(router)
    app.include_router(training_router)
    # Middleware: the last added runs first, so the token is checked before any body is read.
    app.add_middleware(BodySizeLimitMiddleware, max_bytes=config.max_body_bytes)
    if config.token:
        app.add_middleware(BearerTokenMiddleware, token=config.token)
    return app
