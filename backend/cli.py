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

from backend import __version__, process_gc
from backend.errors import CancelledError, UserError

COMMAND_GROUP = "rs2sam2.commands"


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """Every command's parser; with `only` (a command's name), that command's alone: the other commands
    are listed by name but their modules are not imported (what `rs2sam2 segment …` needs)."""
    parser = argparse.ArgumentParser(
        prog="rs2sam2", description="RS2-SAM 2: referring segmentation of rasters."
    )
    parser.add_argument("--version", action="version", version=f"rs2sam2 {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands = sorted(entry_points(group=COMMAND_GROUP), key=lambda point: point.name)
    if not commands:
        parser.epilog = "No commands are registered: install the project (pip install -e .)."
    for point in commands:
        if only is not None and point.name != only:
            subparsers.add_parser(point.name)
            continue
        module = point.load()
        sub = subparsers.add_parser(point.name, help=module.HELP, description=module.__doc__)
        module.add_arguments(sub)
        sub.set_defaults(_run=module.run)
    return parser


def _named_command(argv: Sequence[str]) -> str | None:
    """The command the arguments name, when they start with one (not `--help`, `--version` …)."""
    if argv and not argv[0].startswith("-"):
        names = {point.name for point in entry_points(group=COMMAND_GROUP)}
        if argv[0] in names:
            return argv[0]
    return None


def main(argv: Sequence[str] | None = None) -> int:
    # Started from the command line (not called in-process with arguments, as the tests do): entry points
    # may then set process-wide defaults such as torch's thread count (backend/engine/threads.py), and
    # the garbage collector keeps out of start-up and shutdown (backend/process_gc.py).
    program_start = argv is None
    if program_start:
        process_gc.begin_start_up()
        try:
            return _main(sys.argv[1:], program_start)
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            process_gc.before_exit()
    return _main(argv, program_start)


def _main(argv: Sequence[str], program_start: bool) -> int:
    parser = build_parser(only=_named_command(argv))
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
