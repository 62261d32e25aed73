"""Rewrite one section of docs/benchmarks.md with a benchmark's latest report, machine and date."""

from __future__ import annotations

import datetime as dt
import os
import platform
import re
import tempfile
from pathlib import Path

BENCHMARKS_MD = Path(__file__).resolve().parent.parent / "docs" / "benchmarks.md"


def machine_description() -> str:
    try:
        import torch

        gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
        torch_version = torch.__version__
    except ImportError:  # pragma: no cover - the backend always has torch
        gpu, torch_version = "unknown", "not installed"
    try:
        with open("/proc/meminfo", encoding="ascii") as handle:
            mem_kib = int(handle.readline().split()[1])
        memory = f"{mem_kib / 2**20:.0f} GiB RAM"
    except (OSError, ValueError, IndexError):
        memory = "unknown RAM"
    cpu = platform.processor() or platform.machine()
    return (
        f"{os.cpu_count()} CPU cores ({cpu}), {memory}, {gpu}; "
        f"Python {platform.python_version()}, torch {torch_version}"
    )


def record_section(heading: str, report: str, path: Path = BENCHMARKS_MD, ran: str | None = None) -> Path:
    """Replace the body under `## heading` (up to the next `## `) with the report; atomic write.

    `ran`: the first line ("Ran <date> on <machine>.") when the report comes from another machine;
    by default this machine, now, with its load average."""
    if ran is None:
        stamp = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
        # The load average tells a reader whether other work shared the machine (times are then upper bounds).
        load = ", ".join(f"{value:.1f}" for value in os.getloadavg())
        ran = f"Ran {stamp} on {machine_description()}; load average (1, 5, 15 min) at the end: {load}."
    body = f"{ran}\n\n{report.strip()}\n"
    text = path.read_text(encoding="utf-8") if path.exists() else "# Benchmarks\n"
    pattern = re.compile(rf"(^## {re.escape(heading)}\n)(.*?)(?=^## |\Z)", re.S | re.M)
    if pattern.search(text):
        text = pattern.sub(lambda m: f"{m.group(1)}\n{body}\n", text, count=1)
    else:
        text = f"{text.rstrip()}\n\n## {heading}\n\n{body}"
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".md.part")
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)
    os.replace(tmp, path)
    return path
