"""The paper family's own threshold (PAPER_THRESHOLD, its presets' default_threshold) reaches the engine
when the person sets none; a threshold the person sets wins."""

from __future__ import annotations

import dataclasses

from backend.engine.options import EngineOptions
from backend.engine.segment import SegmentRun
from backend.model.paper.predictor import PaperPredictor
from backend.model.presets import PAPER_THRESHOLD, PRESETS
from tests.engine.rasters import good_scene


def test_every_paper_preset_states_the_papers_threshold():
    paper = [config for config in PRESETS.values() if config.family == "paper"]
    assert paper and all(config.default_threshold == PAPER_THRESHOLD for config in paper)


def test_the_paper_presets_threshold_reaches_the_engine_unless_one_is_set(
    tmp_path, paper_test_model, monkeypatch
):
    # A threshold of the preset's own that no other default shares, so that only the preset can give it.
    own = 0.73
    monkeypatch.setattr(
        paper_test_model, "config", dataclasses.replace(paper_test_model.config, default_threshold=own)
    )
    predictor = PaperPredictor(paper_test_model, "paper-test")
    assert predictor.default_threshold == own
    raster = good_scene(tmp_path / "scene.tif")
    with SegmentRun(raster, ["the red roof"], predictor, EngineOptions()) as run:
        assert run.threshold == own
    with SegmentRun(raster, ["the red roof"], predictor, EngineOptions(threshold=0.3)) as run:
        assert run.threshold == 0.3
