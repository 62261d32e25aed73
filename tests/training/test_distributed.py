"""Two-process DDP on the CPU (gloo, through torchrun) matches single-process training."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from backend.cli import main as rs2sam2

REPO = Path(__file__).resolve().parents[2]
ARGS = [
    "--data",
    "synthetic:2",
    "--preset",
    "test",
    "--device",
    "cpu",
    "--batch-size",
    "4",
    "--max-steps",
    "2",
    "--val-limit",
    "4",
    "--no-progress",
    "--lr-new",
    "1e-3",
    "--lr-rest",
    "1e-3",
    "--log-every",
    "1",
]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.slow
def test_two_process_gloo_run_matches_single_process(tmp_path):
    single, ddp = tmp_path / "single", tmp_path / "ddp"
    assert rs2sam2(["train", *ARGS, "--out", str(single)]) == 0
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nnodes",
        "1",
        "--nproc-per-node",
        "2",
        "--master-addr",
        "127.0.0.1",
        "--master-port",
        str(free_port()),
        "-m",
        "backend.cli",
        "train",
        *ARGS,
        "--out",
        str(ddp),
    ]
    completed = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert completed.returncode == 0, completed.stderr[-3000:]
    # Same samples per step (each rank takes half of every global batch), gradients averaged by DDP.
    first, second = load_file(str(single / "final.safetensors")), load_file(str(ddp / "final.safetensors"))
    for key in first:
        # Attention key biases get a true gradient of 0 (softmax ignores a shift shared by all keys); Adam
        # normalises the float noise left in its place into steps of up to lr·1e-2, so they get a looser
        # bound.
        atol = 1e-4 if key.endswith("k_proj.bias") else 2e-5
        torch.testing.assert_close(second[key], first[key], rtol=1e-4, atol=atol, msg=key)
    # Validation was gathered over both ranks: all 4 samples, once.
    val_rows = (ddp / "val_log.csv").read_text().splitlines()
    assert val_rows[1].split(",")[2] == "4"
    assert (single / "val_log.csv").read_text().splitlines()[1].split(",")[3] == val_rows[1].split(",")[3]
    # Only rank 0 wrote, one row per step, with the loss of the whole global batch.
    ddp_rows = [row.split(",") for row in (ddp / "train_log.csv").read_text().splitlines()[1:]]
    single_rows = [row.split(",") for row in (single / "train_log.csv").read_text().splitlines()[1:]]
    assert [row[0] for row in ddp_rows] == ["1", "2"]
    for ddp_row, single_row in zip(ddp_rows, single_rows):
        assert float(ddp_row[2]) == pytest.approx(float(single_row[2]), rel=1e-5)
