"""How many CPU threads torch uses for one model call (intra-op threads), chosen once per process.

Torch's own default is the number of logical CPUs; on machines with SMT, or shared with other work,
that is slower than one thread per physical core (measured in backend/model/README.md: 42 s against
7 s for one forward while other jobs held the cores). So a program started from the command line uses
the physical cores — unless `--threads N` or an explicit OMP_NUM_THREADS says otherwise. A command run
in-process (`backend.cli.main([...])`, as the tests do) keeps the thread count its caller set, unless
`--threads` is given.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from backend.errors import UserError

CPUINFO = Path("/proc/cpuinfo")


@dataclass(frozen=True)
class ThreadChoice:
    threads: int
    source: str  # "--threads", "OMP_NUM_THREADS", "physical cores" or "unchanged"

    def describe(self) -> str:
        return f"{self.threads} thread{'s' if self.threads != 1 else ''} ({self.source})"


def physical_cores(cpuinfo: Path = CPUINFO, allowed: set[int] | None = None) -> int:
    """Physical cores among the CPUs this process may run on (`allowed`, default its affinity; logical
    CPUs when the topology cannot be read)."""
    if allowed is None and hasattr(os, "sched_getaffinity"):
        allowed = os.sched_getaffinity(0)
    logical = len(allowed) if allowed else (os.cpu_count() or 1)
    try:
        text = cpuinfo.read_text(encoding="ascii", errors="replace")
    except OSError:
        return logical
    cores = set()
    for block in text.split("\n\n"):
        pairs = (line.partition(":") for line in block.splitlines())
        fields = {key.strip(): value.strip() for key, _, value in pairs}
        if "processor" not in fields:
            continue
        if allowed is not None and int(fields["processor"]) not in allowed:
            continue
        # Without topology fields (some VMs, other architectures) every logical CPU counts as a core.
        cores.add((fields.get("physical id", "0"), fields.get("core id", fields["processor"])))
    return max(1, min(len(cores), logical)) if cores else logical


def _omp_threads() -> int | None:
    value = os.environ.get("OMP_NUM_THREADS", "").strip()
    return int(value) if value.isdigit() and int(value) > 0 else None


def choose_threads(requested: int | None, program_start: bool) -> ThreadChoice:
    """--threads N first; then (for a program started from the command line) OMP_NUM_THREADS, then the
    physical cores; a call in-process without --threads leaves the process's setting as it is."""
    import torch

    if requested is not None:
        if requested < 1:
            raise UserError(f"--threads must be at least 1, not {requested}")
        return ThreadChoice(requested, "--threads")
    if not program_start:
        return ThreadChoice(torch.get_num_threads(), "unchanged")
    omp = _omp_threads()
    if omp is not None:
        return ThreadChoice(omp, "OMP_NUM_THREADS")
    return ThreadChoice(physical_cores(), "physical cores")


def apply_threads(requested: int | None, program_start: bool) -> ThreadChoice:
    """Choose and set torch's intra-op threads; returns the choice (for the status line and /health)."""
    import torch

    choice = choose_threads(requested, program_start)
    if torch.get_num_threads() != choice.threads:
        torch.set_num_threads(choice.threads)
    return choice
