"""Download pretrained weights into the cache (`rs2sam2 weights download --preset tiny`) and list them."""

from __future__ import annotations

import argparse

from backend.errors import UserError

HELP = "download and list pretrained weights"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="weights_command", metavar="ACTION", required=True)
    download = sub.add_parser("download", help="fetch, verify and cache a preset's SAM 2 and CLIP weights")
    download.add_argument("--preset", required=True, choices=["tiny", "base", "large"])
    download.add_argument(
        "--cache", help="cache folder (default: $RS2SAM2_CACHE/weights or ~/.cache/rs2sam2/weights)"
    )
    download.add_argument("--mirror", help="base URL of a mirror that keeps the official paths")
    sub.add_parser("list", help="show which weight files are in the cache").add_argument("--cache")


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from backend.weights.download import cache_dir, cached_path, download, sha256_of
    from backend.weights.registry import ALL_WEIGHTS, PRESET_WEIGHTS

    cache = Path(args.cache).expanduser() if args.cache else cache_dir()
    if args.weights_command == "download":
        for weight in PRESET_WEIGHTS[args.preset]:
            already = cached_path(weight, cache).exists()
            path = download(weight, cache=cache, mirror=args.mirror)
            print(f"{'cached' if already else 'downloaded and verified'}: {path}")
        return 0
    if args.weights_command == "list":
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
        return 0
    raise UserError(f"unknown action {args.weights_command!r}")
