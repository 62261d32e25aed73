"""`rs2sam2 train`: bad input is refused before training; a killed run resumes exactly; exports load."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from safetensors.torch import load_file

from backend.cli import main as rs2sam2
from backend.model.checkpoint import save_checkpoint
from backend.model.factory import build_model, load_checkpoint
from tests.training.dataset_fixtures import write_refsegrs
from training.state import load_state

ROOT = Path(__file__).resolve().parents[2]

# Small and quick: two synthetic scenes (about 60 phrases), batch 2, validation on 2 phrases.
QUICK = [
    "--preset",
    "test",
    "--device",
    "cpu",
    "--batch-size",
    "2",
    "--val-limit",
    "2",
    "--no-progress",
    "--lr-new",
    "1e-3",
    "--lr-rest",
    "1e-3",
]


def train(*args: str) -> int:
    return rs2sam2(["train", *args])


def assert_same_weights(a: Path, b: Path, exact: bool = True) -> None:
    first, second = load_file(str(a)), load_file(str(b))
    assert first.keys() == second.keys()
    import torch

    for key in first:
        if exact:
            assert torch.equal(first[key], second[key]), key
        else:
            torch.testing.assert_close(first[key], second[key], rtol=1e-4, atol=1e-5, msg=key)


def _kill_after_logged_step(args: list[str], out: Path, step: int, timeout: float = 240.0) -> None:
    """Run `rs2sam2 train` in its own process, held still once `step` is in its train log
    (tests/training/held_train.py), and SIGKILL it there."""
    marker = out.parent / f"{out.name}.held"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.training.held_train", str(step), str(marker), "--", *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + timeout
        while not marker.exists():
            assert (
                process.poll() is None
            ), f"the run ended before step {step}: {process.stderr.read().decode()[-2000:]}"
            assert time.monotonic() < deadline, f"the run did not reach step {step} in {timeout:.0f} s"
            time.sleep(0.05)
        process.send_signal(signal.SIGKILL)
        assert process.wait(timeout=30) == -signal.SIGKILL
    finally:
        process.kill()
        process.wait()


@pytest.mark.slow
def test_killed_run_resumes_exactly_like_an_uninterrupted_run(tmp_path, capsys):
    common = [
        "--data",
        "synthetic:2",
        *QUICK,
        "--max-steps",
        "8",
        "--eval-every",
        "2",
        "--log-every",
        "1",
        "--checkpoint-every",
        "3",
    ]
    assert train(*common, "--out", str(tmp_path / "whole")) == 0
    # A real kill: the process dies with SIGKILL right after logging step 4, so the state of step 3 is on
    # disk and step 4 (logged, not saved) is lost.
    cut = tmp_path / "cut"
    _kill_after_logged_step([*common, "--out", str(cut)], cut, step=4)
    assert load_state(cut / "last_state.pt")["progress"]["step"] == 3
    assert not (cut / "final.safetensors").exists()
    assert [row.split(",")[0] for row in (cut / "train_log.csv").read_text().splitlines()[1:]] == [
        "1",
        "2",
        "3",
        "4",
    ]
    assert train("--out", str(cut), "--resume", "--no-progress") == 0
    assert_same_weights(tmp_path / "whole" / "final.safetensors", cut / "final.safetensors")
    # The logs read as one run: steps 1–8 once each with the same losses, validations at 2, 4, 6, 8.
    train_rows = (cut / "train_log.csv").read_text().splitlines()[1:]
    assert [row.split(",")[0] for row in train_rows] == [str(i) for i in range(1, 9)]
    whole_rows = (tmp_path / "whole" / "train_log.csv").read_text().splitlines()[1:]
    assert [r.split(",")[2] for r in train_rows] == [r.split(",")[2] for r in whole_rows]
    val_rows = (cut / "val_log.csv").read_text().splitlines()[1:]
    assert [row.split(",")[0] for row in val_rows] == ["2", "4", "6", "8"]  # random start: not scored
    # Exports are inference checkpoints of the test preset.
    model, metadata = load_checkpoint(cut / "best.safetensors")
    assert model.config.name == "test" and metadata["step"] in (2, 4, 6, 8)
    assert (cut / "tensorboard").is_dir()


def test_config_file_and_flags(tmp_path):
    config = tmp_path / "settings.toml"
    config.write_text(
        'data = ["synthetic:1"]\npreset = "test"\nmax-steps = 1\nbatch-size = 2\nval-limit = 2\n'
        'device = "cpu"\nlr-new = 0.5\n'
    )
    out = tmp_path / "run"
    assert (
        train(
            "--config",
            str(config),
            "--lr-new",
            "2e-4",
            "--out",
            str(out),
            "--no-progress",
            "--loss-dice",
            "1.0",
            "--dice-classes",
            "foreground",
        )
        == 0
    )
    saved = json.loads((out / "config.json").read_text())
    assert saved["lr_new"] == 2e-4 and saved["batch_size"] == 2 and saved["data"] == ["synthetic:1"]
    # the run folder keeps every setting resolved: the unset CE weight took the from-scratch default
    assert (saved["loss_ce"], saved["loss_dice"], saved["dice_classes"]) == (0.5, 1.0, "foreground")
    assert (saved["lr_rest"], saved["schedule"], saved["warmup_steps"]) == (5e-5, "constant", 0)


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """A region without the asked-for column, a RefSegRS folder, an empty one, a `test` checkpoint."""
    from training.data.synthetic import generate_scene, write_region

    folder = tmp_path_factory.mktemp("inputs")
    write_region(generate_scene(0, size=64), folder, name="scene")
    write_refsegrs(folder / "RefSegRS")
    (folder / "empty" / "images").mkdir(parents=True)
    (folder / "empty" / "masks").mkdir()
    (folder / "empty" / "output_phrase_val.txt").write_text("")
    save_checkpoint(folder / "test.safetensors", build_model("test"))
    return folder


@pytest.mark.parametrize(
    "make_args,message",
    [
        (lambda p: ["--data", f"rrsisd:{p}"], "not an RRSIS-D folder"),
        (lambda p: ["--data", "coco:/x"], "unknown data kind"),
        (
            lambda p: ["--data", f"region:{p / 'scene.tif'},{p / 'scene.gpkg'},description"],
            "no text column 'description'",
        ),
        (
            lambda p: ["--data", f"refsegrs:{p / 'RefSegRS'}", "--val-data", f"refsegrs:{p / 'empty'}"],
            "is empty",
        ),
        (
            lambda p: [
                "--data",
                "synthetic:1",
                "--checkpoint",
                str(p / "test.safetensors"),
                "--preset",
                "tiny",
            ],
            "made for preset 'test', not 'tiny'",
        ),
        (lambda p: ["--data", f"refsegrs:{p / 'RefSegRS'}", "--batch-size", "8"], "fewer than one step"),
    ],
)
def test_bad_input_is_a_clear_error_before_training(tmp_path, capsys, inputs, make_args, message):
    out = tmp_path / "run"
    args = make_args(inputs)
    if "--checkpoint" not in args:
        args += ["--preset", "test"]
    code = train(*args, "--out", str(out), "--max-steps", "1", "--device", "cpu", "--no-progress")
    assert code == 2
    assert message in capsys.readouterr().err
    assert not (out / "last_state.pt").exists() and not (out / "train_log.csv").exists()


def test_existing_run_is_never_overwritten_and_resume_needs_a_run(tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    (out / "config.json").write_text("{}")
    assert train("--data", "synthetic:1", "--preset", "test", "--out", str(out), "--max-steps", "1") == 2
    assert "already holds a training run" in capsys.readouterr().err
    assert train("--out", str(tmp_path / "nothing"), "--resume") == 2
    assert "no training run to resume" in capsys.readouterr().err


def test_with_separate_val_data_each_region_gives_all_its_features(tmp_path):
    """Train on one region, validate on another: no spatial split of either (a one-block region has
    no val blocks to lose), and validation covers every phrase of the other region."""
    from training.data.synthetic import generate_scene, write_region

    train_scene, val_scene = generate_scene(31, size=128), generate_scene(32, size=128)
    train_raster, train_vector = write_region(train_scene, tmp_path / "mine")
    val_raster, val_vector = write_region(val_scene, tmp_path / "new")
    out = tmp_path / "run"
    assert (
        train(
            "--data",
            f"region:{train_raster},{train_vector}",
            "--val-data",
            f"region:{val_raster},{val_vector}",
            "--preset",
            "test",
            "--device",
            "cpu",
            "--batch-size",
            "2",
            "--max-steps",
            "1",
            "--val-limit",
            "1000",
            "--no-progress",
            "--out",
            str(out),
        )
        == 0
    )
    val_rows = (out / "val_log.csv").read_text().splitlines()
    samples = int(val_rows[1].split(",")[2])
    assert samples == sum(len(obj.phrases) for obj in val_scene.referable)
