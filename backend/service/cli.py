"""Run the model behind a local HTTP API (docs/service-api.md).

  rs2sam2 serve [--host 127.0.0.1] [--port 8765] [--model NAME | --checkpoint FILE] [--device auto]
                [--precision auto] [--threads N]

Binds to 127.0.0.1 by default. Any other address needs a bearer token (--token or the RS2SAM2_TOKEN
environment variable), or the server refuses to start. Server-side raster paths are accepted only
under the folders given with --allow-path. The interactive API docs are at /docs.

Every request is bounded (defaults in brackets; docs/service-api.md, "Limits"): phrases per request
[32], characters per phrase [500], tile size within 4× of the model's input, pixels per request
[100 megapixels], gsd [0.001–100000 m/pixel], upload size [1024 MB], jobs waiting or running [64, 8
per client address; 429 with Retry-After past them], and a wall-clock limit per job [1800 s].
SIGTERM or Ctrl-C cancel the jobs under way and stop the server with exit status 0.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import math
import os
from pathlib import Path

from backend.contract import DEFAULT_HOST, DEFAULT_PORT, TOKEN_ENV, is_loopback_host
from backend.engine.limits import SERVICE_LIMITS, RunLimits
from backend.engine.model_loading import add_model_arguments
from backend.engine.options import bound_gdal_cache
from backend.errors import UserError
from backend.service.config import (
    DEFAULT_JOB_TIME_LIMIT_S,
    DEFAULT_MAX_JOBS_PER_CLIENT,
    DEFAULT_MAX_QUEUED_JOBS,
    DEFAULT_MAX_UPLOAD_MB,
    ServiceConfig,
)

HELP = "run the model behind a local HTTP API"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument("--host", default=DEFAULT_HOST, help=f"address to bind (default {DEFAULT_HOST})")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port (default {DEFAULT_PORT})")
    add_model_arguments(parser)
    parser.add_argument("--token", help=f"bearer token every request must carry (or set {TOKEN_ENV})")
    parser.add_argument(
        "--allow-path",
        action="append",
        default=[],
        metavar="DIR",
        help="accept server-side raster paths under DIR (repeatable; default: uploads only)",
    )
    parser.add_argument(
        "--max-upload-mb",
        type=float,
        default=DEFAULT_MAX_UPLOAD_MB,
        help=f"largest request body in MB (default {DEFAULT_MAX_UPLOAD_MB:g})",
    )
    add_limit_arguments(parser)
    parser.add_argument("--log-level", default="info", choices=("debug", "info", "warning", "error"))


def add_limit_arguments(parser: argparse.ArgumentParser) -> None:
    """The bounds of one request (the engine checks them) and of the job queue (the service does)."""
    limits = SERVICE_LIMITS
    group = parser.add_argument_group("limits per request and per server")
    group.add_argument(
        "--max-phrases",
        type=int,
        default=limits.max_phrases,
        help=f"phrases per request (default {limits.max_phrases})",
    )
    group.add_argument(
        "--max-phrase-chars",
        type=int,
        default=limits.max_phrase_chars,
        help=f"characters per phrase (default {limits.max_phrase_chars})",
    )
    group.add_argument(
        "--tile-factor",
        type=float,
        default=limits.tile_factor,
        help="tile sizes allowed: within this factor of the model's input size, smaller or larger "
        f"(default {limits.tile_factor:g})",
    )
    group.add_argument(
        "--max-megapixels",
        type=float,
        default=limits.max_pixels / 1e6,
        help="pixels per request (the area at the requested gsd), in millions "
        f"(default {limits.max_pixels / 1e6:g})",
    )
    group.add_argument(
        "--gsd-range",
        type=_gsd_range,
        default=limits.gsd_range,
        metavar="MIN,MAX",
        help="ground sampling distances a request may ask for, m/pixel "
        f"(default {limits.gsd_range[0]:g},{limits.gsd_range[1]:g})",
    )
    group.add_argument(
        "--max-queued-jobs",
        type=int,
        default=DEFAULT_MAX_QUEUED_JOBS,
        help=f"jobs waiting or running at once (default {DEFAULT_MAX_QUEUED_JOBS})",
    )
    group.add_argument(
        "--max-jobs-per-client",
        type=int,
        default=DEFAULT_MAX_JOBS_PER_CLIENT,
        help=f"of those, from one client address (default {DEFAULT_MAX_JOBS_PER_CLIENT})",
    )
    group.add_argument(
        "--job-time-limit",
        type=float,
        default=DEFAULT_JOB_TIME_LIMIT_S,
        metavar="SECONDS",
        help=f"wall-clock limit of one job (default {DEFAULT_JOB_TIME_LIMIT_S:g})",
    )


def _gsd_range(text: str) -> tuple[float, float]:
    try:
        low, high = (float(value) for value in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError("give two numbers MIN,MAX, e.g. 0.05,1000") from None
    return low, high


def limits_from_args(args: argparse.Namespace) -> RunLimits:
    if not (math.isfinite(args.max_megapixels) and args.max_megapixels > 0):
        raise UserError("--max-megapixels must be a positive number")
    limits = RunLimits(
        max_phrases=args.max_phrases,
        max_phrase_chars=args.max_phrase_chars,
        tile_factor=args.tile_factor,
        max_pixels=int(args.max_megapixels * 1e6),
        gsd_range=args.gsd_range,
    )
    problems = limits.check_settings()
    if problems:
        raise UserError(f"bad limit: {problems[0]}")
    for flag, value in (
        ("--max-queued-jobs", args.max_queued_jobs),
        ("--max-jobs-per-client", args.max_jobs_per_client),
    ):
        if value < 1:
            raise UserError(f"{flag} must be at least 1")
    if not (math.isfinite(args.job_time_limit) and args.job_time_limit > 0):
        raise UserError("--job-time-limit must be a positive number of seconds")
    return limits


def config_from_args(args: argparse.Namespace) -> ServiceConfig:
    token = args.token or os.environ.get(TOKEN_ENV) or None
    if not is_loopback_host(args.host) and not token:
        raise UserError(
            f"refusing to listen on {args.host} without a token: pass --token or set {TOKEN_ENV}, "
            "or bind to 127.0.0.1"
        )
    if not 0 < args.port < 65536:
        raise UserError(f"--port must be between 1 and 65535, not {args.port}")
    if not (math.isfinite(args.max_upload_mb) and args.max_upload_mb > 0):
        raise UserError("--max-upload-mb must be positive")
    limits = limits_from_args(args)
    roots = []
    for folder in args.allow_path:
        root = Path(folder)
        if not root.is_dir():
            raise UserError(f"--allow-path {folder} is not a folder")
        roots.append(root.resolve())
    return ServiceConfig(
        host=args.host,
        port=args.port,
        token=token,
        allowed_roots=tuple(roots),
        max_upload_mb=args.max_upload_mb,
        model=args.model,
        preset=args.preset,
        checkpoint=args.checkpoint,
        device=args.device,
        precision=args.precision,
        threads=args.threads,
        limits=limits,
        max_queued_jobs=args.max_queued_jobs,
        max_jobs_per_client=args.max_jobs_per_client,
        job_time_limit_s=args.job_time_limit,
    )


def run(args: argparse.Namespace) -> int:
    config = config_from_args(args)  # refuse a bad configuration before loading anything
    bound_gdal_cache()

    import uvicorn

    from backend.engine.model_loading import load_model, model_device, model_preset, runtime_line
    from backend.engine.threads import apply_threads
    from backend.service.app import create_app
    from backend.service.server import GracefulServer

    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(name)s %(levelname)s %(message)s")
    threads = apply_threads(config.threads, bool(getattr(args, "program_start", False)))
    model = load_model(
        config.preset, config.checkpoint, config.device, model=config.model, precision=config.precision
    )
    config = dataclasses.replace(config, preset=model_preset(model, config.preset))
    app = create_app(config, model, model_device(model), threads=threads.threads)
    print(
        f"rs2sam2 serve: {runtime_line(model, threads)}; "
        f"listening on http://{config.host}:{config.port} (API docs at /docs)",
        flush=True,
    )
    server = GracefulServer(
        uvicorn.Config(
            app, host=config.host, port=config.port, log_level=args.log_level, timeout_graceful_shutdown=5
        ),
        on_exit=app.state.service.jobs.shutdown,
    )
    server.run()
    return 0
