"""Pretrained and published weights in the cache: `rs2sam2 weights download --preset tiny` (SAM 2 + CLIP
files a preset starts from), `rs2sam2 weights download --model paper-rrsisd` (the paper's trained model),
`rs2sam2 weights import FOLDER` (a published model folder downloaded by hand), `rs2sam2 weights list` and
`rs2sam2 weights cache` (the bounded cache of OpenVINO conversions: shown, bounded with --max-mb, cleared
with --clear)."""

from __future__ import annotations

import argparse
import os

from backend.errors import UserError

HELP = "download, import and list pretrained weights and published models"
CACHE_HELP = "cache folder (default: $RS2SAM2_CACHE/weights or ~/.cache/rs2sam2/weights)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from backend.weights.registry import PAPER_WEIGHTS

    sub = parser.add_subparsers(dest="weights_command", metavar="ACTION", required=True)
    download = sub.add_parser(
        "download", help="fetch, verify and cache a preset's SAM 2 and CLIP weights, or a published model"
    )
    which = download.add_mutually_exclusive_group(required=True)
    which.add_argument("--preset", choices=["tiny", "base", "large"])
    which.add_argument("--model", choices=list(PAPER_WEIGHTS), help="a published RS2-SAM 2 model")
    download.add_argument("--cache", help=CACHE_HELP)
    download.add_argument("--mirror", help="base URL of a mirror that keeps the official paths")
    imported = sub.add_parser("import", help="verify a published model folder and add it to the cache")
    imported.add_argument("folder", help="the model folder (config.json, weights, sentencepiece model)")
    imported.add_argument(
        "--model", choices=list(PAPER_WEIGHTS), help="which model it is (default: from the folder's name)"
    )
    imported.add_argument("--force", action="store_true", help="replace the model if it is already cached")
    imported.add_argument(
        "--allow-key-differences",
        action="store_true",
        help="load a folder whose weight names differ from this code's: extra weights are ignored, missing "
        "weights the model never uses are set to zero, both listed on stderr and in the checkpoint; missing "
        "weights the model uses are still refused (default: strict)",
    )
    imported.add_argument("--cache", help=CACHE_HELP)
    sub.add_parser("list", help="show which weight files are in the cache").add_argument(
        "--cache", help=CACHE_HELP
    )
    conversions = sub.add_parser(
        "cache",
        help="show, bound or clear the cache of OpenVINO conversions (--precision openvino)",
        description="The OpenVINO conversions of the models' image encoders, most recently used first. "
        "The cache keeps at most its bound, removing the least recently used conversion first.",
    )
    conversions.add_argument(
        "--max-mb", type=float, help="set the cache's bound in MB (kept in the cache's settings.json)"
    )
    conversions.add_argument("--clear", action="store_true", help="remove every conversion")


def _download(args: argparse.Namespace, cache) -> int:
    from backend.weights.download import cached_path, download
    from backend.weights.paper import converted_path, download_paper_model
    from backend.weights.registry import PAPER_WEIGHTS, PRESET_WEIGHTS

    if args.model:
        already = converted_path(PAPER_WEIGHTS[args.model], cache).exists()
        path = download_paper_model(args.model, cache=cache, mirror=args.mirror)
        print(f"{'cached' if already else 'downloaded, verified and converted'}: {path}")
        return 0
    for weight in PRESET_WEIGHTS[args.preset]:
        already = cached_path(weight, cache).exists()
        path = download(weight, cache=cache, mirror=args.mirror)
        print(f"{'cached' if already else 'downloaded and verified'}: {path}")
    return 0


def _list(cache) -> int:
    from backend.weights.download import cached_path, sha256_of
    from backend.weights.paper import converted_path
    from backend.weights.registry import ALL_WEIGHTS, PAPER_WEIGHTS, PRESET_WEIGHTS

    print(f"cache: {cache}")
    for weight in ALL_WEIGHTS:
        path = cached_path(weight, cache)
        state = (
            f"{path.stat().st_size / 2**20:8.1f} MiB  sha256 {sha256_of(path)[:12]}"
            if path.exists()
            else "not cached"
        )
        presets = ",".join(p for p, files in PRESET_WEIGHTS.items() if weight in files) or "-"
        print(f"  {weight.name:42s} {state:40s} presets: {presets}")
    print("published models (rs2sam2 weights download --model NAME):")
    for name, weights in PAPER_WEIGHTS.items():
        path = converted_path(weights, cache)
        state = f"{path.stat().st_size / 2**20:8.1f} MiB  {path}" if path.exists() else "not cached"
        print(f"  {name:16s} {state:60s} {weights.description}")
    print(_conversions_summary())
    return 0


def _conversions_summary() -> str:
    from backend.model import openvino_cache

    folder = openvino_cache.cache_folder()
    present = openvino_cache.entries(folder)
    used_mib = sum(e.size_bytes for e in present) / 2**20
    return (
        f"OpenVINO conversions: {len(present)} in {folder}, {used_mib:.1f} MiB of at most "
        f"{openvino_cache.limit_mb(folder):g} MB (rs2sam2 weights cache)"
    )


def _cache(args: argparse.Namespace) -> int:
    import time

    from backend.model import openvino_cache

    folder = openvino_cache.cache_folder()
    if args.clear:
        removed = openvino_cache.clear(folder)
        print(f"removed {len(removed)} conversion(s), {sum(e.size_bytes for e in removed) / 2**20:.1f} MiB")
    if args.max_mb is not None:
        openvino_cache.set_limit_mb(folder, args.max_mb)
        removed = openvino_cache.evict(folder)
        print(f"bound set to {args.max_mb:g} MB; removed {len(removed)} least recently used conversion(s)")
    print(_conversions_summary())
    if os.environ.get(openvino_cache.LIMIT_ENV):
        print(f"  (the bound comes from ${openvino_cache.LIMIT_ENV}, which overrides --max-mb)")
    for entry in openvino_cache.entries(folder):
        used = time.strftime("%Y-%m-%d %H:%M", time.localtime(entry.last_used))
        print(f"  {entry.key}  {entry.size_bytes / 2**20:8.1f} MiB  last used {used}")
    return 0


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from backend.weights.download import cache_dir

    cache = Path(args.cache).expanduser() if getattr(args, "cache", None) else cache_dir()
    if args.weights_command == "download":
        return _download(args, cache)
    if args.weights_command == "import":
        from backend.weights.paper import import_paper_folder

        path = import_paper_folder(
            args.folder,
            model=args.model,
            cache=cache,
            overwrite=args.force,
            allow_key_differences=args.allow_key_differences,
        )
        if args.allow_key_differences:
            print(f"converted, key differences allowed (listed above when there were any): {path}")
        else:
            print(f"verified and converted: {path}")
        return 0
    if args.weights_command == "list":
        return _list(cache)
    if args.weights_command == "cache":
        return _cache(args)
    raise UserError(f"unknown action {args.weights_command!r}")
