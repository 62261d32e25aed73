"""Inference engine: throughput on a generated 8192² GeoTIFF against the bare model calls for the same
tiles (the engine's overhead as a ratio), and peak RSS for 8192² and 16384² rasters (it must not grow
with the raster: tiles are streamed and only vectors are kept).

Throughput runs the chosen preset over the first N×N tiles of the raster (--tiles-per-side; 0 = all);
the memory runs go over every tile of each raster, each in a fresh process, with --rss-preset.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

MB = 1024 * 1024


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--size", type=int, default=8192, help="side of the throughput raster (default 8192)")
    parser.add_argument("--preset", default="tiny", help="model preset for throughput (default tiny)")
    parser.add_argument(
        "--tiles-per-side",
        type=int,
        default=2,
        help="throughput over the first N×N tiles (default 2; 0 = the whole raster)",
    )
    parser.add_argument(
        "--rss-sizes", default="8192,16384", help="raster sides for peak RSS (default 8192,16384)"
    )
    parser.add_argument(
        "--rss-preset", default="test", help="model preset for the memory runs (default test)"
    )
    parser.add_argument(
        "--rss-tile", type=int, default=2048, help="tile size of the memory runs (default 2048)"
    )
    parser.add_argument(
        "--rss-keep",
        choices=("best", "all"),
        default="best",
        help="--keep of the memory runs (default best; with all, every polygon found is held)",
    )
    parser.add_argument("--skip-rss", action="store_true", help="only the throughput part")
    parser.add_argument("--device", default="auto")
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch CPU threads (default 1: on a shared machine two threads stall each other)",
    )
    parser.add_argument("--workdir", help="where generated rasters are kept (default: a temporary folder)")


def make_raster(path: Path, side: int, seed: int = 0) -> Path:
    """A seeded RGB GeoTIFF (EPSG:32633, 0.5 m) written block by block: never whole in memory."""
    import rasterio
    from affine import Affine
    from rasterio.windows import Window

    if path.exists():
        return path
    block = 1024
    rng = np.random.default_rng(seed)
    profile = dict(
        driver="GTiff",
        width=side,
        height=side,
        count=3,
        dtype="uint8",
        crs="EPSG:32633",
        transform=Affine(0.5, 0, 500_000, 0, -0.5, 5_000_000),
        tiled=True,
        blockxsize=512,
        blockysize=512,
        BIGTIFF="IF_SAFER",
    )
    part = path.with_suffix(".part.tif")
    with rasterio.open(part, "w", **profile) as dst:
        for row in range(0, side, block):
            for col in range(0, side, block):
                h, w = min(block, side - row), min(block, side - col)
                data = rng.integers(90, 150, size=(3, h, w), dtype=np.uint8)
                for _ in range(3):  # a few red "roofs" per block, some across block edges
                    r, c = rng.integers(0, h), rng.integers(0, w)
                    data[:, r : r + 80, c : c + 120] = np.array([220, 30, 30], np.uint8)[:, None, None]
                dst.write(data, window=Window(col, row, w, h))
    part.rename(path)
    return path


def throughput(raster: Path, preset: str, tiles_per_side: int, device: str, threads: int) -> dict:
    import torch

    from backend.engine.options import AreaOfInterest, EngineOptions
    from backend.engine.segment import SegmentRun
    from backend.engine.tiling import plan_tiles
    from backend.model.factory import load_predictor

    torch.set_num_threads(threads)
    model = load_predictor(preset=preset, device=device)
    tile = model.input_size
    overlap = round(tile / 8)
    area = None
    if tiles_per_side > 0:
        import rasterio

        with rasterio.open(raster) as ds:
            side_px = min(ds.width, tile + (tiles_per_side - 1) * (tile - overlap))
            left, top = ds.transform.c, ds.transform.f
            res = ds.transform.a
        area = AreaOfInterest((left, top - side_px * res, left + side_px * res, top))
    options = EngineOptions(keep="all", area=area)
    started = time.perf_counter()
    with SegmentRun(raster, ["the red roofs"], model, options) as run:
        pieces = run.predict()
        result = run.finish(pieces, 0.0)
        total = time.perf_counter() - started
        pixels = run.view.width * run.view.height
        n_tiles = len(plan_tiles(run.view.width, run.view.height, run.tile_size, run.overlap))
        model_seconds = run.model_seconds
    return {
        "preset": preset,
        "model": model.model_id,
        "tile": tile,
        "overlap": overlap,
        "tiles": n_tiles,
        "area_px": pixels,
        "seconds": total,
        "model_seconds": model_seconds,
        "mp_per_s": pixels / 1e6 / total,
        "overhead": total / model_seconds,
        "features": len(result.features),
    }


def memory_child(raster: str, preset: str, tile: int, device: str, keep: str) -> dict:
    """Runs in a fresh process: RSS after loading the model, peak RSS over the whole run."""
    import psutil

    from backend.engine.options import bound_gdal_cache

    bound_gdal_cache()  # as the entry points do

    from backend.engine.options import EngineOptions
    from backend.engine.segment import segment
    from backend.model.factory import load_predictor

    model = load_predictor(preset=preset, device=device)
    loaded = psutil.Process().memory_info().rss / MB
    peak_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    started = time.perf_counter()
    options = EngineOptions(keep=keep, tile_size=tile, context="tiles")
    result = segment(raster, ["the red roofs"], model, options)
    return {
        "rss_after_load_mb": loaded,
        "peak_before_run_mb": peak_before,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "tiles": result.tiles,
        "seconds": time.perf_counter() - started,
        "features": len(result.features),
    }


def run(args: argparse.Namespace) -> str:
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="rs2sam2-bench-engine-"))
    workdir.mkdir(parents=True, exist_ok=True)
    raster = make_raster(workdir / f"scene_{args.size}.tif", args.size)
    t = throughput(raster, args.preset, args.tiles_per_side, args.device, args.threads)
    area_note = (
        "the whole raster"
        if args.tiles_per_side <= 0
        else (
            f"its first {args.tiles_per_side}×{args.tiles_per_side} tiles "
            f"({t['area_px'] / 1e6:.1f} MP; the whole "
            f"raster would take about {args.size**2 / 1e6 / t['mp_per_s'] / 60:.0f} min here)"
        )
    )
    lines = [
        f"### Throughput: `{t['preset']}` preset on a {args.size}×{args.size} uint8 RGB GeoTIFF",
        "",
        f"Over {area_note}; tile {t['tile']}, overlap {t['overlap']}, one phrase, `--keep all`, "
        f"{args.threads} torch thread(s), untrained (random) weights.",
        "",
        "| tiles | engine total | bare model calls | engine overhead | throughput |",
        "|---|---|---|---|---|",
        f"| {t['tiles']} | {t['seconds']:.1f} s | {t['model_seconds']:.1f} s | ×{t['overhead']:.3f} | "
        f"{t['mp_per_s']:.3f} MP/s |",
    ]
    if not args.skip_rss:
        lines += _memory_section(args, workdir)
    return "\n".join(lines)


def _memory_section(args: argparse.Namespace, workdir: Path) -> list[str]:
    """The peak memory table: one child process per raster size."""
    from backend.engine.options import GDAL_CACHE_MB

    lines = [
        "",
        f"### Peak memory: `{args.rss_preset}` preset, tile {args.rss_tile}, "
        f"`--keep {args.rss_keep}`, `--context tiles`, every tile, "
        "one process per raster",
        "",
        "| raster | tiles | RSS after model load | peak RSS of the run | time | features |",
        "|---|---|---|---|---|---|",
    ]
    for side in (int(s) for s in args.rss_sizes.split(",")):
        path = make_raster(workdir / f"scene_{side}.tif", side)
        child = subprocess.run(
            [
                sys.executable,
                "-m",
                "bench.engine",
                "--child",
                str(path),
                args.rss_preset,
                str(args.rss_tile),
                args.device,
                args.rss_keep,
            ],
            capture_output=True,
            text=True,
            check=True,
            env={**os.environ, "OMP_NUM_THREADS": str(args.threads)},
        )
        m = json.loads(child.stdout.strip().splitlines()[-1])
        lines.append(
            f"| {side}×{side} ({path.stat().st_size / MB:.0f} MB on disk) | {m['tiles']} | "
            f"{m['rss_after_load_mb']:.0f} MB | {m['peak_rss_mb']:.0f} MB | {m['seconds']:.0f} s | "
            f"{m['features']} |"
        )
    return lines + [
        "",
        "Tiles are streamed and only vectors are kept (GDAL's block cache bounded to"
        f" {GDAL_CACHE_MB} MB as in the entry points), so the peak follows the tile size and the objects"
        " found, not the raster's size; pieces on tile seams are held until merged, which grows with the"
        " seam length when the mask is noise. With `--keep all` every polygon found is held until"
        " written: an untrained model finds noise everywhere, and a first 16384² run with `--keep all` at"
        " tile 1024 held about 4 GB of polygons before it was stopped.",
    ]


if __name__ == "__main__":  # the memory runs' child process
    if len(sys.argv) == 7 and sys.argv[1] == "--child":
        print(json.dumps(memory_child(sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5], sys.argv[6])))
    else:
        sys.exit("usage: python -m bench.engine --child RASTER PRESET TILE DEVICE KEEP")
