"""Two-process DDP on the CPU (gloo, through torchrun) trains what one process trains.

Two kinds of evidence, each compared only as far as float arithmetic allows:
- the first step's gradients, computed by the training package's own `Trainer` (data sharding, seeded
  model, DDP wrapping, per-sample loss) under torchrun and in one process: the averaged gradient of the
  two half batches must be the full batch's gradient — a sum instead of a mean, or no averaging at all,
  is off by half of it or more;
- a real two-rank `rs2sam2 train` run next to a one-process run: one writer, validation gathered once
  over both ranks, the same loss and gradient norm at the first step, and parameters apart by no more
  than AdamW can move them (its steps are ±lr whatever a gradient's size, so float noise in a gradient
  element can flip a step; exact equality is not a property of correct DDP).
"""

from __future__ import annotations

import csv
import json
import math
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from backend.cli import main as rs2sam2

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]
DEMO_CHECKPOINT = REPO / "backend" / "demo" / "assets" / "rs2sam2-demo.safetensors"
LR = 1e-5
STEPS = 2
WEIGHT_DECAY = 0.01  # TrainConfig's default
FLOAT32_EPS = float(torch.finfo(torch.float32).eps)
# Starting from the bundled demo model (a trained test-preset model): its predictions are far from the
# 0.5 threshold, so validation metrics do not hinge on float noise, and they are not all zero.
ARGS = [
    "--data",
    "synthetic:2",
    "--checkpoint",
    str(DEMO_CHECKPOINT),
    "--device",
    "cpu",
    "--batch-size",
    "4",
    "--max-steps",
    str(STEPS),
    "--val-limit",
    "4",
    "--no-progress",
    "--lr-new",
    str(LR),
    "--lr-rest",
    str(LR),
    "--log-every",
    "1",
]
# Zero gradient by construction (tests/model/test_training_step.py): compared as "both near zero".
ZERO_BY_CONSTRUCTION = re.compile(r"sam\.sam_mask_decoder\.transformer\..*k_proj\.bias")
# How far two correct gradients of the same batch may be apart, as shares of the gradient's norm. Float
# sums in another order, and now and then a ReLU input within float noise of 0 taking the other side,
# move them by 0.05–0.15 % overall and by up to 3 % in single tensors whose gradient is 1e-6 of the
# whole (measured); a sum instead of a mean moves every tensor by 100 %, unaveraged gradients by tens of %.
GLOBAL_SHARE = 1e-2
TENSOR_SHARE = 5e-2
TENSOR_FLOOR = 1e-5  # … plus this share of the global norm, for tensors whose gradient is tiny
ZERO_SHARE = 1e-7


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def torchrun(module: str, args: list[str]) -> None:
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
        module,
        *args,
    ]
    completed = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert completed.returncode == 0, completed.stderr[-3000:]


def norm(tensors) -> float:
    return math.sqrt(sum(float(t.double().norm()) ** 2 for t in tensors))


def read_csv(path: Path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


# -- the first step's gradients ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def gradients(tmp_path_factory) -> dict:
    from tests.training.first_step_gradients import main as first_step_gradients

    folder = tmp_path_factory.mktemp("gradients")
    torchrun(
        "tests.training.first_step_gradients",
        [str(folder / "ddp"), "--", *ARGS, "--out", str(folder / "ddp-run")],
    )
    assert first_step_gradients([str(folder / "one"), "--", *ARGS, "--out", str(folder / "one-run")]) == 0

    def read(run: str, rank: int):
        return (
            load_file(str(folder / run / f"grads-rank{rank}.safetensors")),
            json.loads((folder / run / f"rank{rank}.json").read_text()),
        )

    return {"one": read("one", 0), "rank0": read("ddp", 0), "rank1": read("ddp", 1)}


def test_each_rank_takes_every_other_sample_of_the_global_batch(gradients):
    (_, one), (_, rank0), (_, rank1) = gradients["one"], gradients["rank0"], gradients["rank1"]
    assert one["world_size"] == 1 and rank0["world_size"] == rank1["world_size"] == 2
    assert len(one["samples"]) == 4
    assert rank0["samples"] == one["samples"][0::2] and rank1["samples"] == one["samples"][1::2]
    assert rank0["phrases"] == one["phrases"][0::2] and rank1["phrases"] == one["phrases"][1::2]
    # The loss is a mean of per-sample losses, so the two half-batch means average to the full one.
    assert (rank0["loss"] + rank1["loss"]) / 2 == pytest.approx(one["loss"], rel=1e-5)


def test_first_step_gradients_are_the_full_batch_gradients_averaged_over_ranks(gradients):
    (full, one), (rank0, _), (rank1, _) = gradients["one"], gradients["rank0"], gradients["rank1"]
    assert set(full) == set(rank0) == set(rank1) == set(one["trainable"])
    scale = norm(full.values())
    assert scale > 0
    # After DDP's all-reduce both ranks hold the same gradient.
    for name in full:
        torch.testing.assert_close(rank1[name], rank0[name], rtol=1e-6, atol=1e-9 * scale, msg=name)
    zero = {name for name in full if ZERO_BY_CONSTRUCTION.fullmatch(name)}
    assert len(zero) == 7
    for name in zero:
        assert (
            float(full[name].norm()) <= ZERO_SHARE * scale and float(rank0[name].norm()) <= ZERO_SHARE * scale
        )
    rest = sorted(set(full) - zero)
    difference = norm(rank0[name] - full[name] for name in rest)
    assert difference <= GLOBAL_SHARE * scale, f"{difference / scale:.2%} of the gradient differs"
    off = {
        name: f"{float((rank0[name] - full[name]).norm() / full[name].norm()):.1%}"
        for name in rest
        if float((rank0[name] - full[name]).norm())
        > TENSOR_SHARE * float(full[name].norm()) + TENSOR_FLOOR * scale
    }
    assert off == {}


# -- a real two-rank training run ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("runs")
    single, ddp = folder / "single", folder / "ddp"
    assert rs2sam2(["train", *ARGS, "--out", str(single)]) == 0
    torchrun("backend.cli", ["train", *ARGS, "--out", str(ddp)])
    return {"single": single, "ddp": ddp}


def test_two_rank_run_has_one_writer_and_gathers_validation_once(runs):
    ddp = runs["ddp"]
    # Only rank 0 wrote: one row per step, validation rows for the starting model and the last step.
    assert [row["step"] for row in read_csv(ddp / "train_log.csv")] == [str(s) for s in range(1, STEPS + 1)]
    start_val, val = read_csv(ddp / "val_log.csv")
    assert start_val["step"] == "0" and start_val["samples"] == "4"
    # Each rank evaluated every other sample; gathered, that is all 4, each once.
    assert val["step"] == str(STEPS) and val["samples"] == "4"
    assert (ddp / "final.safetensors").is_file() and (ddp / "best.safetensors").is_file()
    # The gathered metrics are those of the final model evaluated on the same 4 samples in one process.
    from backend.model.factory import load_predictor
    from training.config import build_config
    from training.evaluate import EvaluationConfig, evaluate
    from training.loop import model_config_for, open_train_and_val

    config = build_config({}, json.loads((ddp / "config.json").read_text()))
    chip = config.chip_size or model_config_for(config).image_size
    _, val_data = open_train_and_val(config, chip, ddp / "data")
    predictor = load_predictor(checkpoint=ddp / "final.safetensors", device="cpu")
    summary = evaluate(predictor, val_data, EvaluationConfig(protocol=config.eval_protocol), indices=range(4))
    summary = summary.summary()
    assert summary["samples"] == 4 and summary["mIoU"] > 0.05  # the demo model finds things
    for key in ("mIoU", "oIoU", "Pr@0.5"):
        assert float(val[key]) == pytest.approx(summary[key], abs=1e-3), key


def test_two_rank_run_matches_one_process_as_far_as_adamw_allows(runs):
    single, ddp = runs["single"], runs["ddp"]
    one_rows, ddp_rows = read_csv(single / "train_log.csv"), read_csv(ddp / "train_log.csv")
    # Step 1 starts from the same weights on the same 4 samples: the same loss over the global batch, and
    # the same norm of the averaged gradient (a sum over ranks would double it).
    assert float(ddp_rows[0]["loss"]) == pytest.approx(float(one_rows[0]["loss"]), rel=1e-5)
    assert float(ddp_rows[0]["grad_norm"]) == pytest.approx(float(one_rows[0]["grad_norm"]), rel=GLOBAL_SHARE)
    # Later steps start from weights up to a few lr apart: close, not equal.
    for one_row, ddp_row in zip(one_rows[1:], ddp_rows[1:]):
        assert float(ddp_row["loss"]) == pytest.approx(float(one_row["loss"]), rel=1e-3)
    # AdamW moves an element by at most lr·(1.0015 + wd·|p|) per step (|m̂|/√v̂ ≤ 1.0015 in its first two
    # steps with betas 0.9/0.999), so two runs from the same start are at most twice that per step apart,
    # plus the rounding of each update to float32.
    start = load_file(str(DEMO_CHECKPOINT))
    first, second = load_file(str(single / "final.safetensors")), load_file(str(ddp / "final.safetensors"))
    assert first.keys() == second.keys() == start.keys()
    moved = 0
    for key in first:
        largest = float(start[key].abs().max())
        bound = 2 * STEPS * (LR * (1.0015 + WEIGHT_DECAY * largest) + FLOAT32_EPS * (largest + 1))
        assert float((first[key] - second[key]).abs().max()) <= bound, key
        moved += int(not torch.equal(first[key], start[key]))
    assert moved > len(first) // 2  # both runs trained (frozen parts are many, but fewer than half)
    # The validation of both runs: the same 4 samples, models this close give the same metrics.
    (_, one_val), (_, ddp_val) = read_csv(single / "val_log.csv"), read_csv(ddp / "val_log.csv")
    assert one_val["samples"] == ddp_val["samples"] == "4"
    for key in ("mIoU", "oIoU"):
        assert float(ddp_val[key]) == pytest.approx(float(one_val[key]), abs=5e-3), key
