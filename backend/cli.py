"""The `rs2sam2` command.

Each sub-command lives in its own module exposing `add_arguments(parser)` and `run(args) -> int`;
those modules import torch lazily inside `run`, so `rs2sam2 --help` stays instant.
A `UserError` becomes one line on stderr and exit code 2, never a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from backend import __version__
from backend.errors import CancelledError, UserError

# name → (module, one-line help). Modules that are not there yet are left out of the command.
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "segment": ("backend.engine.cli", "segment a raster by phrases into georeferenced polygons"),
    "serve": ("backend.service.cli", "run the model behind a local HTTP API"),
    "train": ("training.cli_train", "fine-tune RS2-SAM 2 on benchmarks, regions or synthetic data"),
    "evaluate": ("training.cli_evaluate", "evaluate a model (Pr@X, mIoU, oIoU)"),
    "bench": ("bench.cli", "run a benchmark"),
    "weights": ("backend.weights.cli", "download and list pretrained weights"),
    "demo": ("backend.demo", "the product's main job on the bundled demo model and scene"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rs2sam2", description="RS2-SAM 2: referring segmentation of rasters."
    )
    parser.add_argument("--version", action="version", version=f"rs2sam2 {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module_name, help_text) in SUBCOMMANDS.items():
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name and module_name.startswith(exc.name):
                continue  # sub-command not built yet
            raise
        sub = subparsers.add_parser(name, help=help_text, description=module.__doc__)
        module.add_arguments(sub)
        sub.set_defaults(_run=module.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "_run"):
        parser.print_help()
        return 2
    try:
        return int(args._run(args) or 0)
    except UserError as exc:
        print(f"rs2sam2 {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except CancelledError:
        print(f"rs2sam2 {args.command}: cancelled", file=sys.stderr)
        return 130
    except KeyboardInterrupt:
        print(f"rs2sam2 {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
