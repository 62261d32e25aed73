"""Service: requests/s and p50/p95 latency of `POST /api/v1/segment` with a 512×512 GeoTIFF upload,
against the engine called directly on the same raster in the same run (the service's overhead as a
ratio). The server is the real `rs2sam2 serve` in a subprocess on a free loopback port.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from backend.contract import API_PREFIX
from bench.engine import make_raster


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--presets", default="test,tiny", help="model presets to measure (default test,tiny)")
    parser.add_argument("--requests", default="6,2", help="timed requests per preset, in order (default 6,2)")
    parser.add_argument(
        "--clients", type=int, default=4, help="concurrent clients for requests/s (default 4)"
    )
    parser.add_argument("--size", type=int, default=512, help="side of the uploaded raster (default 512)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch CPU threads for server and engine alike (default 1: on a shared machine "
        "two threads stall each other)",
    )


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.array(values), q))


def _seeded_checkpoint(preset: str, folder: Path) -> Path:
    """The preset's model with seeded random weights, so the server and the direct engine run the same one."""
    import torch

    from backend.model.checkpoint import save_checkpoint
    from backend.model.factory import build_model

    torch.manual_seed(0)
    return save_checkpoint(folder / f"bench-{preset}.safetensors", build_model(preset, device="cpu").eval())


def _serve(checkpoint: Path, device: str, threads: int) -> tuple[subprocess.Popen, str, object]:
    """`rs2sam2 serve` in a process of its own on a free port: the process, its API's URL, its log."""
    port = _free_port()
    log = tempfile.TemporaryFile()
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "backend.cli",
            "serve",
            "--port",
            str(port),
            "--checkpoint",
            str(checkpoint),
            "--device",
            device,
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
    )
    return server, f"http://127.0.0.1:{port}{API_PREFIX}", log


def _wait_until_up(server: subprocess.Popen, url: str, log) -> None:
    import httpx

    deadline = time.monotonic() + 600
    while True:
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        if server.poll() is not None or time.monotonic() > deadline:
            log.seek(0)
            raise RuntimeError(f"the server did not start: {log.read().decode()[-2000:]}")
        time.sleep(0.5)


def _direct(raster: Path, phrases: list[str], checkpoint: Path, device: str, threads: int, n: int):
    """The same run in this process, without the service: the tiles and each run's seconds."""
    import torch

    from backend.engine.segment import segment
    from backend.model.factory import load_predictor
    from backend.service.schemas import SegmentParams

    torch.set_num_threads(threads)
    model = load_predictor(checkpoint=checkpoint, device=device)
    # the service's own default options (the same run a request with default params asks for)
    options = SegmentParams.model_validate({"phrases": phrases}).to_options()
    segment(raster, phrases, model, options)  # warm-up
    direct = []
    for _ in range(n):
        started = time.perf_counter()
        result = segment(raster, phrases, model, options)
        direct.append(time.perf_counter() - started)
    return result.tiles, direct


def measure_preset(
    preset: str, n_requests: int, clients: int, raster: Path, device: str, threads: int
) -> dict:
    import httpx

    params = {"phrases": ["the red roofs"]}
    body = raster.read_bytes()
    checkpoint = _seeded_checkpoint(preset, raster.parent)
    server, url, log = _serve(checkpoint, device, threads)
    try:
        _wait_until_up(server, url, log)

        def request(_: int = 0) -> float:
            started = time.perf_counter()
            answer = httpx.post(
                f"{url}/segment",
                files={"raster": (raster.name, body, "image/tiff")},
                data={"params": json.dumps(params)},
                timeout=3600,
            )
            answer.raise_for_status()
            return time.perf_counter() - started

        request()  # warm-up
        latencies = [request() for _ in range(n_requests)]
        started = time.perf_counter()
        with ThreadPoolExecutor(clients) as pool:
            list(pool.map(request, range(n_requests)))
        concurrent_seconds = time.perf_counter() - started
    finally:
        server.terminate()
        server.wait(timeout=30)
    tiles, direct = _direct(raster, params["phrases"], checkpoint, device, threads, n_requests)
    return {
        "preset": preset,
        "requests": n_requests,
        "tiles": tiles,
        "p50": statistics.median(latencies),
        "p95": _percentile(latencies, 95),
        "rps": n_requests / concurrent_seconds,
        "direct": statistics.median(direct),
    }


def run(args: argparse.Namespace) -> str:
    presets = args.presets.split(",")
    counts = [int(n) for n in args.requests.split(",")]
    counts += [counts[-1]] * (len(presets) - len(counts))
    with tempfile.TemporaryDirectory() as folder:
        raster = make_raster(Path(folder) / "upload.tif", args.size)
        size_kb = raster.stat().st_size / 1024
        rows = [
            measure_preset(p, n, args.clients, raster, args.device, args.threads)
            for p, n in zip(presets, counts)
        ]
    lines = [
        f"`POST /api/v1/segment`, a {args.size}×{args.size} uint8 RGB GeoTIFF upload "
        f"({size_kb:.0f} KB), one phrase,"
        " default tiling (the preset's input size, overlap 1/8), "
        f"device {args.device}, {args.threads} torch thread(s),"
        " server and engine on the same seeded checkpoint. Latency from sequential"
        f" requests; requests/s with {args.clients} concurrent clients "
        "(the server runs one model, so they queue);"
        " engine: `segment()` on the same file in this process.",
        "",
        "| preset | tiles | requests | p50 latency | p95 latency | requests/s "
        "| engine direct (median) | service / engine |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['preset']} | {r['tiles']} | {r['requests']} | {r['p50']:.2f} s | {r['p95']:.2f} s | "
            f"{r['rps']:.3f} | {r['direct']:.2f} s | ×{r['p50'] / r['direct']:.3f} |"
        )
    return "\n".join(lines)
