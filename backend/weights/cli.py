"""Pretrained and published weights in the cache: `rs2sam2 weights download --preset tiny` (SAM 2 + CLIP
files a preset starts from), `rs2sam2 weights download --model paper-rrsisd` (the paper's trained model),
`rs2sam2 weights import FOLDER` (a published model folder downloaded by hand) and `rs2sam2 weights list`."""

from __future__ import annotations

import argparse

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
    imported.add_argument("--cache", help=CACHE_HELP)
    sub.add_parser("list", help="show which weight files are in the cache").add_argument(
        "--cache", help=CACHE_HELP
    )


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
    return 0


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from backend.weights.download import cache_dir

    cache = Path(args.cache).expanduser() if args.cache else cache_dir()
    if args.weights_command == "download":
        return _download(args, cache)
    if args.weights_command == "import":
        from backend.weights.paper import import_paper_folder

        path = import_paper_folder(args.folder, model=args.model, cache=cache, overwrite=args.force)
        print(f"verified and converted: {path}")
        return 0
    if args.weights_command == "list":
        return _list(cache)
    raise UserError(f"unknown action {args.weights_command!r}")
