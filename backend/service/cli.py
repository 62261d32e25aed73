"""Run the model behind a local HTTP API (docs/service-api.md).

  rs2sam2 serve [--host 127.0.0.1] [--port 8765] [--model NAME | --checkpoint FILE] [--device auto]
                [--precision auto] [--threads N]

Binds to 127.0.0.1 by default. Any other address needs a bearer token (--token or the RS2SAM2_TOKEN
environment variable), or the server refuses to start. Server-side raster paths are accepted only
under the folders given with --allow-path. The interactive API docs are at /docs.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
from pathlib import Path

from backend.engine.model_loading import add_model_arguments
from backend.engine.options import bound_gdal_cache
from backend.errors import UserError
from backend.service.config import DEFAULT_MAX_UPLOAD_MB, ServiceConfig
from rs2sam2_qgis.contract import DEFAULT_HOST, DEFAULT_PORT, TOKEN_ENV, is_loopback_host

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
    parser.add_argument("--log-level", default="info", choices=("debug", "info", "warning", "error"))


def config_from_args(args: argparse.Namespace) -> ServiceConfig:
    token = args.token or os.environ.get(TOKEN_ENV) or None
    if not is_loopback_host(args.host) and not token:
        raise UserError(
            f"refusing to listen on {args.host} without a token: pass --token or set {TOKEN_ENV}, "
            "or bind to 127.0.0.1"
        )
    if not 0 < args.port < 65536:
        raise UserError(f"--port must be between 1 and 65535, not {args.port}")
    if args.max_upload_mb <= 0:
        raise UserError("--max-upload-mb must be positive")
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
    )


def run(args: argparse.Namespace) -> int:
    config = config_from_args(args)  # refuse a bad configuration before loading anything
    bound_gdal_cache()

    import uvicorn

    from backend.engine.model_loading import load_model, model_device, model_preset, runtime_line
    from backend.engine.threads import apply_threads
    from backend.service.app import create_app

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
    uvicorn.run(
        app, host=config.host, port=config.port, log_level=args.log_level, timeout_graceful_shutdown=5
    )
    return 0
