"""CPU threads: physical cores by default for a program started from the command line, --threads or
OMP_NUM_THREADS when given, the caller's setting untouched for a command run in-process (as the tests
do), and the choice on the CLI's first line."""

from __future__ import annotations

import gc
import sys

import pytest
import torch

from backend.bundled import DEMO_SCENE
from backend.engine.threads import choose_threads, physical_cores
from backend.errors import UserError

# Two sockets × two cores × two hyper-threads (processors 0–7), with the topology fields Linux writes.
CPUINFO = "".join(
    f"processor\t: {n}\nphysical id\t: {n // 4}\ncore id\t\t: {(n % 4) // 2}\nflags\t\t: avx2\n\n"
    for n in range(8)
)


def test_physical_cores_count_cores_not_hyperthreads(tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(CPUINFO)
    assert physical_cores(cpuinfo, allowed=set(range(8))) == 4
    assert physical_cores(cpuinfo, allowed={0, 1, 2, 3}) == 2  # only the CPUs this process may use
    no_topology = tmp_path / "plain"
    no_topology.write_text("processor\t: 0\n\nprocessor\t: 1\n\n")
    assert physical_cores(no_topology, allowed={0, 1}) == 2
    assert physical_cores(tmp_path / "missing", allowed={0, 1, 2}) == 3


def test_the_choice_follows_flag_then_environment_then_cores(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert choose_threads(5, program_start=True).describe() == "5 threads (--threads)"
    assert choose_threads(None, program_start=True).describe() == "3 threads (OMP_NUM_THREADS)"
    monkeypatch.delenv("OMP_NUM_THREADS")
    assert choose_threads(None, program_start=True).source == "physical cores"
    assert choose_threads(None, program_start=False).describe().endswith("(unchanged)")
    with pytest.raises(UserError, match="at least 1"):
        choose_threads(0, program_start=True)


def test_an_in_process_command_keeps_the_test_thread_and_says_so(tmp_path, capsys):
    from backend.cli import main

    assert torch.get_num_threads() == 1  # tests/conftest.py
    out = tmp_path / "out.gpkg"
    assert main(["segment", str(DEMO_SCENE), "the dark lake", "-o", str(out), "--device", "cpu"]) == 0
    first_line = capsys.readouterr().err.splitlines()[0]
    assert first_line.startswith("rs2sam2 segment: model rs2sam2-demo on cpu, precision fp32")
    assert first_line.endswith("1 thread (unchanged)")
    assert torch.get_num_threads() == 1


def test_a_program_start_uses_the_physical_cores(tmp_path, capsys, monkeypatch):
    """`rs2sam2 …` from a shell (argv from sys.argv): the default applies (then the test thread is back)."""
    from backend.cli import main

    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    out = tmp_path / "out.gpkg"
    monkeypatch.setattr(sys, "argv", ["rs2sam2", "segment", str(DEMO_SCENE), "a lake", "-o", str(out)])
    try:
        assert main() == 0
        cores = physical_cores()
        assert torch.get_num_threads() == cores
    finally:
        torch.set_num_threads(1)
        gc.unfreeze()  # a program start freezes what lives at its end (backend/process_gc.py)
    first_line = capsys.readouterr().err.splitlines()[0]
    assert first_line.endswith(f"{cores} thread{'s' if cores != 1 else ''} (physical cores)")
