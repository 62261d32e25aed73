"""`rs2sam2 train`: bad input is refused before training; a killed run resumes exactly; exports load."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from safetensors.torch import load_file

from backend.cli import main as rs2sam2
from backend.model.checkpoint import load_checkpoint, save_checkpoint
from backend.model.factory import build_model
from tests.training.dataset_fixtures import write_refsegrs

# Small and quick: two synthetic scenes (about 60 phrases), batch 2, validation on 2 phrases.
QUICK = ["--preset", "test", "--device", "cpu", "--batch-size", "2", "--val-limit", "2", "--no-progress",
         "--lr-new", "1e-3", "--lr-rest", "1e-3"]


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


@pytest.mark.slow
def test_killed_run_resumes_exactly_like_an_uninterrupted_run(tmp_path, capsys):
    common = ["--data", "synthetic:2", *QUICK, "--max-steps", "4", "--eval-every", "2", "--log-every", "1"]
    assert train(*common, "--out", str(tmp_path / "whole")) == 0
    # The interrupted run keeps a state every 2 steps and stops (as if killed) after step 3: step 3 is lost.
    assert train(*common, "--out", str(tmp_path / "cut"), "--checkpoint-every", "2", "--stop-after-steps", "3") == 0
    assert "resume with" in capsys.readouterr().out
    assert not (tmp_path / "cut" / "final.safetensors").exists()
    assert train("--out", str(tmp_path / "cut"), "--resume", "--no-progress") == 0
    assert_same_weights(tmp_path / "whole" / "final.safetensors", tmp_path / "cut" / "final.safetensors")
    # The logs read as one run: steps 1–4 once each, validations at 2 and 4.
    train_rows = (tmp_path / "cut" / "train_log.csv").read_text().splitlines()[1:]
    assert [row.split(",")[0] for row in train_rows] == ["1", "2", "3", "4"]
    whole_rows = (tmp_path / "whole" / "train_log.csv").read_text().splitlines()[1:]
    assert [r.split(",")[2] for r in train_rows] == [r.split(",")[2] for r in whole_rows]  # same losses
    val_rows = (tmp_path / "cut" / "val_log.csv").read_text().splitlines()[1:]
    assert [row.split(",")[0] for row in val_rows] == ["2", "4"]
    # Exports are inference checkpoints of the test preset.
    model, metadata = load_checkpoint(tmp_path / "cut" / "best.safetensors")
    assert model.config.name == "test" and metadata["step"] in (2, 4)
    assert (tmp_path / "cut" / "tensorboard").is_dir()


def test_config_file_and_flags(tmp_path):
    config = tmp_path / "settings.toml"
    config.write_text('data = ["synthetic:1"]\npreset = "test"\nmax-steps = 1\nbatch-size = 2\nval-limit = 2\n'
                      'device = "cpu"\nlr-new = 0.5\n')
    out = tmp_path / "run"
    assert train("--config", str(config), "--lr-new", "2e-4", "--out", str(out), "--no-progress") == 0
    saved = json.loads((out / "config.json").read_text())
    assert saved["lr_new"] == 2e-4 and saved["batch_size"] == 2 and saved["data"] == ["synthetic:1"]


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


@pytest.mark.parametrize("make_args,message", [
    (lambda p: ["--data", f"rrsisd:{p}"], "not an RRSIS-D folder"),
    (lambda p: ["--data", "coco:/x"], "unknown data kind"),
    (lambda p: ["--data", f"region:{p / 'scene.tif'},{p / 'scene.gpkg'},description"], "no text column 'description'"),
    (lambda p: ["--data", f"refsegrs:{p / 'RefSegRS'}", "--val-data", f"refsegrs:{p / 'empty'}"], "is empty"),
    (lambda p: ["--data", "synthetic:1", "--checkpoint", str(p / "test.safetensors"), "--preset", "tiny"],
     "made for preset 'test', not 'tiny'"),
    (lambda p: ["--data", f"refsegrs:{p / 'RefSegRS'}", "--batch-size", "8"], "fewer than one step"),
])
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
