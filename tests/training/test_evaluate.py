"""Evaluation with stand-in segmenters (exact numbers) and end to end through the real `test` model."""

from __future__ import annotations

import json

import numpy as np
import pytest

from backend.cli import main as rs2sam2
from backend.model.api import PhrasePrediction
from tests.training.dataset_fixtures import write_refsegrs
from training.data.region import RegionConfig, RegionDataset
from training.data.synthetic import generate_scene, write_region
from training.evaluate import EvaluationConfig, evaluate


class LookupSegmenter:
    """Answers each phrase with a fixed mask (the ground truth of its scene, or anything given)."""

    model_id, input_size = "lookup", 64

    def __init__(self, masks: dict[str, np.ndarray]):
        self.masks = masks
        self.calls: list[int] = []

    def predict(self, image, phrases):
        self.calls.append(len(phrases))
        return [PhrasePrediction(self.masks[p].astype(np.float32), 1.0) for p in phrases]


class LeftHalfSegmenter:
    model_id, input_size = "left-half", 64

    def predict(self, image, phrases):
        probability = np.zeros(image.shape[:2], np.float32)
        probability[:, : image.shape[1] // 2] = 0.9
        return [PhrasePrediction(probability, 0.9) for _ in phrases]


@pytest.fixture(scope="module")
def scene_dataset(tmp_path_factory):
    scene = generate_scene(11, size=64)
    raster, vector = write_region(scene, tmp_path_factory.mktemp("scene"))
    return scene, RegionDataset(raster, vector, "all", RegionConfig(chip_size=64, whole_raster=True))


def test_perfect_predictions_score_one_and_phrases_of_an_image_share_a_call(scene_dataset):
    scene, dataset = scene_dataset
    segmenter = LookupSegmenter({p: scene.mask(o) for o in scene.objects for p in o.phrases})
    result = evaluate(segmenter, dataset, EvaluationConfig(protocol="native"))
    summary = result.summary()
    assert summary["samples"] == len(dataset)
    assert summary["mIoU"] == summary["oIoU"] == summary["Pr@0.9"] == 1.0
    assert sum(segmenter.calls) == len(dataset) and len(segmenter.calls) < len(dataset)


def test_reference_protocol_compares_at_1024_with_nearest_ground_truth(tmp_path):
    expected = write_refsegrs(tmp_path)  # 24×24 masks
    from training.data.refsegrs import RefSegRSDataset

    dataset = RefSegRSDataset(tmp_path, "test")
    result = evaluate(LeftHalfSegmenter(), dataset, EvaluationConfig(protocol="reference"))
    for sample_result, (_, mask) in zip(result.samples, expected["test"]):
        # Nearest resizing 24 → 1024: source pixel of output i is floor((i + 0.5) * 24 / 1024).
        rows = np.floor((np.arange(1024) + 0.5) * 24 / 1024).astype(int)
        target = mask[rows][:, rows]
        left = np.zeros((1024, 1024), bool)
        left[:, :512] = True
        assert sample_result.intersection == int((target & left).sum())
        assert sample_result.union == int((target | left).sum())


def test_limit_and_unknown_protocol(scene_dataset):
    _, dataset = scene_dataset
    assert (
        evaluate(LeftHalfSegmenter(), dataset, EvaluationConfig(protocol="native", limit=2)).summary()[
            "samples"
        ]
        == 2
    )
    from backend.errors import UserError

    with pytest.raises(UserError, match="protocol"):
        EvaluationConfig(protocol="median")


def test_cli_evaluates_the_real_test_model_and_never_overwrites(tmp_path, capsys):
    data = tmp_path / "RefSegRS"
    write_refsegrs(data)
    out = tmp_path / "val.json"
    code = rs2sam2(
        [
            "evaluate",
            "--data",
            f"refsegrs:{data}",
            "--split",
            "val",
            "--preset",
            "test",
            "--protocol",
            "native",
            "--device",
            "cpu",
            "--out",
            str(out),
        ]
    )
    assert code == 0
    printed = capsys.readouterr().out
    assert "| refsegrs val |" in printed and "mIoU" in printed
    saved = json.loads(out.read_text())
    assert saved["metrics"]["samples"] == 1 and saved["samples"][0]["phrase"] == "vehicles in the parking lot"
    assert 0.0 <= saved["metrics"]["mIoU"] <= 1.0
    code = rs2sam2(["evaluate", "--data", f"refsegrs:{data}", "--preset", "test", "--out", str(out)])
    assert code == 2 and "already exists" in capsys.readouterr().err
    code = rs2sam2(["evaluate", "--data", f"rrsisd:{tmp_path}", "--preset", "test", "--device", "cpu"])
    assert code == 2 and "not an RRSIS-D folder" in capsys.readouterr().err


def test_cli_evaluates_every_feature_of_a_new_region_with_split_all(tmp_path, capsys):
    scene = generate_scene(21, size=128)
    raster, vector = write_region(scene, tmp_path / "new-region")
    phrases = sum(len(obj.phrases) for obj in scene.referable)
    out = tmp_path / "new-region.json"
    code = rs2sam2(
        [
            "evaluate",
            "--data",
            f"region:{raster},{vector}",
            "--split",
            "all",
            "--preset",
            "test",
            "--protocol",
            "native",
            "--device",
            "cpu",
            "--out",
            str(out),
        ]
    )
    assert code == 0, capsys.readouterr().err
    saved = json.loads(out.read_text())
    assert saved["split"] == "all" and saved["metrics"]["samples"] == phrases
    assert {s["phrase"] for s in saved["samples"]} == {p for obj in scene.referable for p in obj.phrases}
    code = rs2sam2(
        ["evaluate", "--data", "synthetic:2", "--split", "all", "--preset", "test", "--device", "cpu"]
    )
    assert code == 2 and "--split all is for regions" in capsys.readouterr().err
