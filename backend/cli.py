"""The `rs2sam2` command.

Each package registers its own sub-commands as entry points in the group `rs2sam2.commands`
(pyproject.toml): `segment`, `serve`, `weights`, `demo` from `backend`; `train`, `evaluate` from
`training`; `bench` from `bench`. A command module exposes `HELP`, `add_arguments(parser)` and
`run(args) -> int`, and imports torch lazily inside `run`, so `rs2sam2 --help` stays instant. This
module therefore depends on nothing above `backend`: a backend installed without `training` simply
has fewer commands.

A `UserError` becomes one line on stderr and exit code 2, never a traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from importlib.metadata import entry_points

from backend import __version__
from backend.errors import CancelledError, UserError

COMMAND_GROUP = "rs2sam2.commands"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rs2sam2", description="RS2-SAM 2: referring segmentation of rasters."
    )
    parser.add_argument("--version", action="version", version=f"rs2sam2 {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands = sorted(entry_points(group=COMMAND_GROUP), key=lambda point: point.name)
    if not commands:
        parser.epilog = "No commands are registered: install the project (pip install -e .)."
    for point in commands:
        module = point.load()
        sub = subparsers.add_parser(point.name, help=module.HELP, description=module.__doc__)
        module.add_arguments(sub)
        sub.set_defaults(_run=module.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    # Started from the command line (not called in-process with arguments, as the tests do): entry points
    # may then set process-wide defaults such as torch's thread count (backend/engine/threads.py).
    program_start = argv is None
    args = parser.parse_args(argv)
    args.program_start = program_start
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
