"""Sample order, rank sharding, learning-rate schedule and data specs (no model needed)."""

from __future__ import annotations

import math

import pytest

from backend.errors import UserError
from training.batches import EpochPlan
from training.config import TrainConfig, build_config, read_config_file
from training.data.specs import DataSpec, open_dataset
from training.schedule import lr_multiplier


def test_two_ranks_share_exactly_the_samples_of_one_process():
    single = EpochPlan(dataset_size=50, batch_size=4, grad_accum=2, world_size=1, seed=3)
    double = EpochPlan(dataset_size=50, batch_size=4, grad_accum=2, world_size=2, seed=3)
    assert single.micro_batches_per_epoch == double.micro_batches_per_epoch == 12  # 50 // 8 steps × 2
    for k in range(single.micro_batches_per_epoch):
        both = double.micro_batch(1, k, 0) + double.micro_batch(1, k, 1)
        assert sorted(both) == sorted(single.micro_batch(1, k, 0)) and len(both) == 4
    assert single.order(0).tolist() != single.order(1).tolist()  # a new order each epoch
    assert single.order(1).tolist() == EpochPlan(50, 4, 2, 1, 3).order(1).tolist()  # seeded


def test_plan_refuses_uneven_ranks_and_tiny_data():
    with pytest.raises(UserError, match="divisible"):
        EpochPlan(50, 3, 1, 2, 0)
    with pytest.raises(UserError, match="fewer than one step"):
        EpochPlan(5, 4, 2, 1, 0)


def test_schedules():
    warm_cosine = lr_multiplier("cosine", total_steps=110, warmup_steps=10, steps_per_epoch=10)
    assert warm_cosine(0) == pytest.approx(0.1) and warm_cosine(9) == pytest.approx(1.0)
    assert warm_cosine(10) == pytest.approx(1.0) and warm_cosine(60) == pytest.approx(0.5)
    assert warm_cosine(110) == pytest.approx(0.0, abs=1e-12)
    drops = lr_multiplier("step", 1000, 0, steps_per_epoch=10, drop_epochs=(50,), drop_factor=0.1)
    assert drops(499) == 1.0 and drops(500) == pytest.approx(0.1)  # RefSegRS: × 0.1 after epoch 50
    assert lr_multiplier("constant", 10, 0, 1)(7) == 1.0
    assert math.isclose(lr_multiplier("constant", 10, 4, 1)(1), 0.5)


def test_data_specs():
    assert DataSpec.parse("region:a.tif,b.gpkg,descr").args == ("a.tif", "b.gpkg", "descr")
    assert DataSpec.parse("synthetic:4,field+pond").args == ("4", "field+pond")
    for bad, message in [
        ("synthetic:0", "positive"),
        ("synthetic:3,castle", "unknown object kinds"),
        ("region:a.tif", "RASTER,VECTOR"),
        ("refsegrs", "KIND:VALUE"),
        ("coco:x", "unknown data kind"),
    ]:
        with pytest.raises(UserError, match=message):
            DataSpec.parse(bad)


def test_synthetic_splits_are_different_scenes(tmp_path):
    train = open_dataset("synthetic:5,field+pond+road", "train", 64, tmp_path)
    val = open_dataset("synthetic:5,field+pond+road", "val", 64, tmp_path)
    assert len(train.parts) == 5 and len(val.parts) == 1  # ceil(5 / 5) val scenes
    assert {p.name for p in train.parts}.isdisjoint({p.name for p in val.parts})
    kinds = {train[i].phrase.split()[-1] for i in range(len(train))}
    assert not kinds & {"car", "vehicle", "tree", "house", "building", "roof"}


def test_config_file_validation(tmp_path):
    path = tmp_path / "c.json"
    path.write_text('{"data": "synthetic:2", "preset": "test", "max_steps": 3, "warmup-steps": 2}')
    settings = read_config_file(path)
    assert settings["data"] == ("synthetic:2",) and settings["warmup_steps"] == 2
    config = build_config(settings, {"out": "x", "seed": None, "batch_size": 4})
    assert config.batch_size == 4 and config.seed == 2401 and config.max_steps == 3
    path.write_text('{"learning_rate": 1}')
    with pytest.raises(UserError, match="unknown setting 'learning_rate'"):
        read_config_file(path)
    with pytest.raises(UserError, match="give --preset or --checkpoint"):
        TrainConfig(data=("synthetic:1",), out="x", max_steps=1)


def test_synthetic_split_skips_scenes_without_a_referable_object(tmp_path):
    from training.data.specs import synthetic_scene_files
    from training.data.synthetic import generate_scene

    # With ponds only, seed 2 draws ponds that no phrase can tell apart: nothing to refer to.
    assert not generate_scene(2, size=64, kinds=("pond",)).referable
    pairs = synthetic_scene_files(4, "train", 64, tmp_path, ("pond",))
    names = [raster.name for raster, _ in pairs]
    assert len(pairs) == 4 and "scene-2.tif" not in names and names[:2] == ["scene-0.tif", "scene-1.tif"]


def test_loss_defaults_follow_the_starting_weights_and_flags_override():
    from training.config import FROM_SCRATCH_LOSS, METHOD_LOSS

    config = TrainConfig(data=("synthetic:1",), preset="test", out="x", max_steps=1)
    assert config.loss_settings(from_scratch=False) == METHOD_LOSS
    assert config.loss_settings(from_scratch=True) == FROM_SCRATCH_LOSS
    tuned = config.replace(loss_dice=0.3, dice_classes="both")
    assert tuned.loss_settings(from_scratch=True) == {
        **FROM_SCRATCH_LOSS,
        "loss_dice": 0.3,
        "dice_classes": "both",
    }
    loss = tuned.loss_config(from_scratch=False)
    assert (loss.ce_weight, loss.dice_weight, loss.tbl_weight, loss.dice_classes) == (0.9, 0.3, 0.2, "both")
    with pytest.raises(UserError, match="loss weights"):
        config.replace(loss_ce=0.0, loss_dice=0.0)
    with pytest.raises(UserError, match="dice_classes"):
        config.replace(dice_classes="object")


def test_resuming_a_run_saved_before_loss_settings_keeps_the_method_loss(tmp_path):
    import json

    from training.config import METHOD_LOSS
    from training.loop import resume_config

    saved = json.loads(
        TrainConfig(data=("synthetic:1",), preset="test", out=str(tmp_path), max_steps=3).to_json()
    )
    for name in METHOD_LOSS:
        saved.pop(name)
    saved["stop_after_steps"] = None  # a test switch those versions saved too
    (tmp_path / "config.json").write_text(json.dumps(saved))
    (tmp_path / "last_state.pt").write_bytes(b"")
    config = resume_config(tmp_path, {})
    assert config.loss_settings(from_scratch=True) == METHOD_LOSS


def test_resumed_logs_drop_rows_a_kill_cut_short(tmp_path):
    from training.logs import CsvLog

    path = tmp_path / "train_log.csv"
    path.write_text("step,loss,samples_per_s\n1,0.9,10\n2,0.8,11\n3,0.7,12\n4,0.6\n\n5,")
    # The state was saved at step 5, but the process died while writing rows 4 and 5: both are partial.
    CsvLog(path, ["step", "loss", "samples_per_s"], resume_step=5)
    assert path.read_text().splitlines() == ["step,loss,samples_per_s", "1,0.9,10", "2,0.8,11", "3,0.7,12"]
    assert not list(tmp_path.glob(".*.part"))
