"""Fine-tuning that learns what a person labels (issue: fine-tuning that learns):

- supervision: an object labelled with the referent's own phrase is never called background — not as a
  negative's centre, not inside any chip (its pixels are ignored by the loss);
- a run continues its starting checkpoint's recorded recipe (loss, peak rate, cosine with warm-up), and
  a region run needs only --data and --out (the bundled model is the start);
- never worse than the start: the starting model is scored first and kept when no step beats it;
  without validation the result blends in the starting weights;
- partial freezing and replay of the start's own data.
Through the real region reader, loss, training loop and `rs2sam2 train`.
"""

from __future__ import annotations

import csv
import json

import numpy as np
import pyogrio
import pytest
import rasterio
import shapely
import torch
from affine import Affine
from safetensors.torch import load_file

from backend.cli import main as rs2sam2
from backend.model.checkpoint import read_checkpoint_metadata, save_checkpoint
from backend.model.factory import build_model
from backend.model.losses import LossConfig, RS2SAM2Loss
from backend.model.network_output import RS2SAM2Output
from backend.model.presets import get_preset
from training.config import TrainConfig
from training.data.region import RegionConfig, RegionDataset
from training.data.replay import ReplayMix
from training.start import resolve_start, resolve_warmup, with_default_start
from training.state import load_state

CRS = "EPSG:32633"
# Each phrase's objects are painted in a colour nothing else has, so a chip's pixels of that exact
# colour are, independently of the reader, the objects that phrase names.
PAINT = {
    "the red car": (255, 0, 0),
    "the pond": (0, 0, 255),
    "the white building": (255, 255, 255),
    "the green field": (0, 255, 0),
    "the yellow car": (255, 255, 0),
}
LAYOUT = [  # (phrase, col, row, side): three red cars and two ponds share their phrases
    ("the red car", 40, 40, 10),
    ("the red car", 70, 44, 10),
    ("the red car", 150, 160, 10),
    ("the pond", 100, 100, 24),
    ("the pond", 180, 40, 24),
    ("the white building", 40, 170, 20),
    ("the green field", 150, 200, 40),
    ("the yellow car", 60, 70, 10),
]


def write_repeated_region(folder, side: int = 256):
    folder.mkdir(parents=True, exist_ok=True)
    transform = Affine(1.0, 0, 500_000.0, 0, -1.0, 5_000_000.0)
    image = np.full((3, side, side), 60, np.uint8)  # grey ground: no channel is 0 or 255
    boxes = []
    for phrase, col, row, size in LAYOUT:
        image[:, row : row + size, col : col + size] = np.array(PAINT[phrase], np.uint8)[:, None, None]
        boxes.append(shapely.box(*(transform * (col, row + size)), *(transform * (col + size, row))))
    raster = folder / "region.tif"
    profile = dict(driver="GTiff", width=side, height=side, count=3, dtype="uint8", crs=CRS)
    with rasterio.open(raster, "w", transform=transform, **profile) as dataset:
        dataset.write(image)
    vector = folder / "labels.gpkg"
    pyogrio.raw.write(
        str(vector),
        geometry=shapely.to_wkb(np.array(boxes, dtype=object)),
        field_data=[np.array([phrase for phrase, *_ in LAYOUT], dtype=object)],
        fields=["description"],
        crs=CRS,
        geometry_type="Polygon",
    )
    return raster, vector


def test_no_chip_calls_an_object_of_the_referents_own_phrase_background(tmp_path):
    raster, vector = write_repeated_region(tmp_path)
    config = RegionConfig(
        chip_size=64,
        text_column="description",
        views=("context", "native", "window"),
        window_pixels=(128, 256),
        chips_per_feature=8,
        negative_share=0.5,
    )
    dataset = RegionDataset(raster, vector, "all", config, random_chips=True)
    negatives = namesakes_seen = 0
    for epoch in range(3):
        dataset.set_epoch(epoch)
        for index in range(len(dataset)):
            sample = dataset[index]
            painted = np.all(sample.image == np.array(PAINT[sample.phrase], np.uint8), axis=2)
            ignore = np.zeros_like(sample.mask) if sample.ignore is None else sample.ignore
            # Every pixel showing an object of this phrase is the referent or ignored, never background.
            assert not (painted & ~sample.mask & ~ignore).any(), (sample.sample_id, epoch)
            assert not (ignore & sample.mask).any()
            negatives += not sample.mask.any()
            namesakes_seen += bool(ignore.any())
    assert negatives > 0.2 * 3 * len(dataset)  # the negatives asked for are there …
    assert namesakes_seen > 0  # … and the case this guards against happened


def test_a_negative_is_never_centred_on_an_object_of_the_same_phrase(tmp_path):
    raster, vector = write_repeated_region(tmp_path)
    dataset = RegionDataset(raster, vector, "all", RegionConfig(text_column="description"), random_chips=True)
    for index, feature in enumerate(dataset._features):
        for seed in range(40):
            centre = dataset._negative_centre(index, np.random.default_rng(seed))
            assert centre is not feature and not set(centre.phrases) & set(feature.phrases)
    # A car's negatives are still cars when there are cars of another phrase (the yellow car).
    red_car = next(i for i, f in enumerate(dataset._features) if f.phrases == ("the red car",))
    assert dataset._negative_centre(red_car, np.random.default_rng(0)).phrases == ("the yellow car",)


def test_the_loss_ignores_the_pixels_it_is_told_to():
    torch.manual_seed(0)
    masks = torch.zeros(1, 1, 16, 16)
    masks[..., 2:6, 2:6] = 1
    ignore = torch.zeros_like(masks)
    ignore[..., 10:14, 10:14] = 1  # another object of the same phrase
    right = torch.where(masks > 0, 8.0, -8.0)
    wrong_there = right.clone()
    wrong_there[..., 10:14, 10:14] = 8.0  # "found" the other object: neither right nor wrong
    output = lambda logits: RS2SAM2Output(  # noqa: E731
        logits=logits.requires_grad_(),
        low_res_logits=torch.zeros(1, 1, 4, 4),
        pseudo_mask_logits=torch.zeros(1, 1, 4, 4),
        boundary_weight=torch.ones(1),
        boundary_logit=torch.zeros(1),
    )
    loss = RS2SAM2Loss(LossConfig(dice_classes="foreground", tbl_weight=0.2))
    ignored = loss(output(wrong_there), masks, ignore)
    assert ignored["total"].item() == pytest.approx(
        loss(output(right.clone()), masks, ignore)["total"].item()
    )
    assert loss(output(wrong_there.clone()), masks)["total"].item() > ignored["total"].item() + 0.05
    logits = wrong_there.detach().clone().requires_grad_()
    loss(output(logits), masks, ignore)["total"].backward()
    assert logits.grad[..., 10:14, 10:14].abs().max() == 0


def recipe_checkpoint(path, **recipe):
    model = build_model(get_preset("test"), device="cpu")
    save_checkpoint(path, model, metadata={"step": 1, "recipe": recipe})
    return path


def test_fine_tuning_continues_the_checkpoints_recorded_recipe_unless_told_otherwise(tmp_path):
    recorded = {"loss_ce": 0.5, "loss_dice": 1.0, "loss_tbl": 0.2, "dice_classes": "foreground"}
    checkpoint = recipe_checkpoint(tmp_path / "start.safetensors", **recorded, lr_new=3e-4, lr_rest=2e-4)
    config = TrainConfig(data=("synthetic:2",), checkpoint=str(checkpoint), out=str(tmp_path / "run"))
    start = resolve_start(config, from_scratch=False)
    resolved = start.config
    assert (resolved.loss_ce, resolved.loss_dice, resolved.dice_classes) == (0.5, 1.0, "foreground")
    assert (resolved.lr_new, resolved.lr_rest, resolved.schedule) == (3e-4, 2e-4, "cosine")
    assert resolve_warmup(resolved, start.recipe, 1000) == 50
    assert any("recorded recipe" in note for note in start.notes)
    given = resolve_start(config.replace(lr_new=1e-5, loss_ce=0.9, schedule="constant"), False).config
    assert (given.lr_new, given.loss_ce, given.schedule, given.lr_rest) == (1e-5, 0.9, "constant", 2e-4)
    # Without a recorded recipe: the method's settings, as before.
    plain = tmp_path / "plain.safetensors"
    save_checkpoint(plain, build_model(get_preset("test"), device="cpu"), metadata={"step": 1})
    method = resolve_start(config.replace(checkpoint=str(plain)), from_scratch=False)
    assert (method.config.loss_ce, method.config.lr_new, method.config.schedule) == (0.9, 1e-4, "constant")
    assert resolve_warmup(method.config, method.recipe, 1000) == 0


def test_a_region_run_without_a_model_starts_from_the_bundled_one(tmp_path):
    from backend.bundled import DEMO_CHECKPOINT

    raster, vector = write_repeated_region(tmp_path)
    config = TrainConfig(data=(f"region:{raster},{vector},description",), out=str(tmp_path / "run"))
    started, note = with_default_start(config)
    assert started.checkpoint == str(DEMO_CHECKPOINT) and "bundled model" in note
    assert read_checkpoint_metadata(DEMO_CHECKPOINT)["recipe"]["lr_new"] == 3e-4  # it carries its recipe
    with pytest.raises(Exception, match="only regions start from the bundled model"):
        TrainConfig(data=("synthetic:2",), out=str(tmp_path / "run"))


def train(*args: str) -> int:
    return rs2sam2(["train", *args, "--device", "cpu", "--no-progress"])


QUICK = ["--batch-size", "2", "--chips-per-feature", "1", "--num-workers", "0"]


@pytest.mark.slow
def test_rs2sam2_train_with_only_data_and_out_blends_its_result_with_the_start(tmp_path, capsys):
    raster, vector = write_repeated_region(tmp_path / "mine")
    out = tmp_path / "run"
    region = f"region:{raster},{vector},description"
    # without replay (on by default for the bundled model: see the freeze-and-replay test) the result is
    # a blend with the start
    code = train("--data", region, "--out", str(out), "--max-steps", "3", "--replay-share", "0", *QUICK)
    err = capsys.readouterr().err
    assert code == 0, err
    assert "start: the bundled model" in err and "recorded recipe" in err
    saved = json.loads((out / "config.json").read_text())
    assert (saved["lr_new"], saved["schedule"], saved["loss_dice"], saved["warmup_steps"]) == (
        3e-4,
        "cosine",
        1.0,
        1,
    )
    assert "blends 50% of the starting model's weights" in err
    # final = 0.5·start + 0.5·the last step's weights (the last state holds the latter)
    from backend.bundled import DEMO_CHECKPOINT

    start, final = load_file(str(DEMO_CHECKPOINT)), load_file(str(out / "final.safetensors"))
    last = load_state(out / "last_state.pt")["model"]
    moved = 0
    for key, value in final.items():
        if value.is_floating_point():
            expected = 0.5 * start[key].float() + 0.5 * last[key].float()
            torch.testing.assert_close(value.float(), expected, rtol=1e-5, atol=1e-6)
            moved += not torch.equal(start[key], last[key])
    assert moved > 0 and "replay:" not in err
    metadata = read_checkpoint_metadata(out / "final.safetensors")
    assert metadata["start_blend"] == 0.5 and metadata["recipe"]["lr_new"] == 3e-4


@pytest.mark.slow
def test_the_starting_model_is_scored_first_and_kept_when_no_step_beats_it(tmp_path, capsys):
    raster, vector = write_repeated_region(tmp_path / "mine")
    start = recipe_checkpoint(tmp_path / "start.safetensors", lr_new=1e-4, lr_rest=1e-4)
    region = f"region:{raster},{vector},description"
    out = tmp_path / "run"
    # A rate that wrecks the model: no step can beat the start.
    code = train(
        *("--data", region, "--val-data", region, "--checkpoint", str(start), "--out", str(out)),
        *("--max-steps", "4", "--eval-every", "2", "--lr-new", "5", "--lr-rest", "5", *QUICK),
    )
    err = capsys.readouterr().err
    assert code == 0, err
    with open(out / "val_log.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert [row["step"] for row in rows] == ["0", "2", "4"]
    scores = [float(row["mIoU"]) + float(row["oIoU"]) for row in rows]
    best = read_checkpoint_metadata(out / "best.safetensors")
    assert best["step"] == int(rows[int(np.argmax(scores))]["step"])  # the first of the best
    if best["step"] == 0:
        assert "no step beat the starting model" in err
        torch.testing.assert_close(load_file(str(out / "best.safetensors")), load_file(str(start)))


def test_freezing_the_encoders_keeps_them_as_they_start(tmp_path):
    model = build_model(get_preset("test"), device="cpu")
    model.apply_freezing()
    model.freeze_encoders()
    trainable = {name for name, p in model.named_parameters() if p.requires_grad}
    assert not any(name.startswith(("sam.image_encoder.", "union.clip.")) for name in trainable)
    assert any(name.startswith("adapters.") for name in trainable)
    assert any(name.startswith("sam.sam_mask_decoder.") for name in trainable)


@pytest.mark.slow
def test_rs2sam2_train_freezes_and_replays_as_asked(tmp_path, capsys):
    raster, vector = write_repeated_region(tmp_path / "mine")
    start = recipe_checkpoint(tmp_path / "start.safetensors", lr_new=1e-3, lr_rest=1e-3)
    out = tmp_path / "run"
    code = train(
        *("--data", f"region:{raster},{vector},description", "--checkpoint", str(start), "--out", str(out)),
        *(
            "--max-steps",
            "2",
            "--freeze",
            "encoders",
            "--replay-data",
            "synthetic:2",
            "--replay-share",
            "0.5",
        ),
        *QUICK,
    )
    err = capsys.readouterr().err
    assert code == 0, err
    assert "replay: 50% of each epoch's samples from synthetic:2" in err
    assert "blends" not in err  # replay keeps what the start knew: the result is the last step itself
    last = load_state(out / "last_state.pt")["model"]
    before, after = load_file(str(start)), load_file(str(out / "final.safetensors"))
    assert all(torch.equal(after[k], last[k]) for k in after)
    frozen = [k for k in before if k.startswith(("sam.image_encoder.", "union.clip."))]
    trained = [k for k in before if k.startswith("adapters.")]
    # the blend with the start cannot move a frozen weight either
    assert frozen and all(torch.equal(before[k], after[k]) for k in frozen)
    assert any(not torch.equal(before[k], after[k]) for k in trained)


def test_replay_makes_up_its_share_of_every_epoch_drawn_anew():
    main, replay = list(range(30)), [f"r{k}" for k in range(100)]

    class Named(list):
        name, split = "part", "train"

    mix = ReplayMix(Named(main), Named(replay), share=0.25, seed=1)
    assert len(mix) == 40
    first = [mix[i] for i in range(30, 40)]
    assert all(isinstance(item, str) for item in first) and [mix[i] for i in range(30)] == main
    mix.set_epoch(1)
    assert [mix[i] for i in range(30, 40)] != first


@pytest.mark.slow
def test_a_log_row_is_the_mean_loss_of_its_window(tmp_path):
    common = ["--data", "synthetic:2", "--preset", "test", "--max-steps", "4", "--batch-size", "2"]
    assert train(*common, "--log-every", "1", "--out", str(tmp_path / "every")) == 0
    assert train(*common, "--log-every", "2", "--out", str(tmp_path / "pairs")) == 0

    def losses(run):
        with open(tmp_path / run / "train_log.csv") as handle:
            return {int(row["step"]): float(row["loss"]) for row in csv.DictReader(handle)}

    every, pairs = losses("every"), losses("pairs")
    assert sorted(pairs) == [2, 4]
    assert pairs[2] == pytest.approx((every[1] + every[2]) / 2, rel=1e-6)
    assert pairs[4] == pytest.approx((every[3] + every[4]) / 2, rel=1e-6)


def test_a_region_run_replays_its_starts_own_synthetic_mix_unless_told_not_to(tmp_path):
    raster, vector = write_repeated_region(tmp_path)
    region = (f"region:{raster},{vector},description",)
    recorded = {"data": ["synthetic:900,world", "synthetic:300", "refsegrs:/data/RefSegRS"], "lr_new": 1e-4}
    start = recipe_checkpoint(tmp_path / "start.safetensors", **recorded)
    config = TrainConfig(data=region, checkpoint=str(start), out=str(tmp_path / "run"))
    resolved = resolve_start(config, from_scratch=False)
    # the synthetic part only (a benchmark's folder may not be here), scaled to about 300 scenes
    assert resolved.config.replay_data == ("synthetic:225,world", "synthetic:75")
    assert any("replay" in note for note in resolved.notes)
    assert resolve_start(config.replace(replay_share=0.0), False).config.replay_data == ()
    given = resolve_start(config.replace(replay_data=("synthetic:5",)), False).config.replay_data
    assert given == ("synthetic:5",)
    not_regions = TrainConfig(data=("synthetic:2",), checkpoint=str(start), out=str(tmp_path / "r2"))
    assert resolve_start(not_regions, False).config.replay_data == ()
