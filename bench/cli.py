"""Benchmarks: `rs2sam2 bench NAME [options]`. Each prints its report and, with --record, rewrites
its own section of docs/benchmarks.md with the output, the machine and the date.

A benchmark is a module of this package exposing `add_arguments(parser)` and `run(args) -> str`
(the report, Markdown), listed in BENCHMARKS.
"""

from __future__ import annotations

import argparse
from types import ModuleType

from bench import (
    context,
    engine,
    gpu,
    model,
    paper,
    phrases,
    precision,
    region,
    runtimes,
    service,
    startup,
    training,
)
from bench.record import record_section

HELP = "run a benchmark"
BENCHMARKS: dict[str, tuple[ModuleType, str]] = {
    # name → (module, section heading in docs/benchmarks.md)
    "model": (model, "Model (`rs2sam2 bench model`)"),
    "engine": (engine, "Inference engine (`rs2sam2 bench engine`)"),
    "training": (training, "Training (`rs2sam2 bench training`)"),
    "service": (service, "Service (`rs2sam2 bench service`)"),
    "region": (region, "Small-region fine-tuning (`rs2sam2 bench region`)"),
    "paper": (paper, "The paper's model (`rs2sam2 bench paper`)"),
    "precision": (precision, "Precision modes (`rs2sam2 bench precision`)"),
    "phrases": (phrases, "Many phrases (`rs2sam2 bench phrases`)"),
    "startup": (startup, "Command-line start-up (`rs2sam2 bench startup`)"),
    "runtimes": (runtimes, "CPU inference runtimes (`rs2sam2 bench runtimes`)"),
    "context": (context, "What area the model sees (`rs2sam2 bench context`)"),
    # Renders (and records) the report `make device-check` wrote on a GPU machine; measures nothing here.
    "gpu": (gpu, gpu.HEADING),
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    subparsers = parser.add_subparsers(dest="benchmark", metavar="NAME", required=True)
    for name, (module, heading) in BENCHMARKS.items():
        sub = subparsers.add_parser(name, help=heading, description=module.__doc__)
        sub.add_argument("--record", action="store_true", help="write the report into docs/benchmarks.md")
        module.add_arguments(sub)
        sub.set_defaults(_bench=module.run, _heading=heading, _ran=getattr(module, "ran_line", None))


def run(args: argparse.Namespace) -> int:
    report = args._bench(args)
    print(report)
    if args.record:
        # A benchmark that reports another machine's run (gpu) says itself where and when it ran.
        ran = args._ran(args) if args._ran is not None else None
        path = record_section(args._heading, report, ran=ran)
        print(f"recorded in {path}")
    return 0
