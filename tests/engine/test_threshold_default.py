"""The threshold a person leaves unset is the model's own (its configuration's `default_threshold`,
else the contract's DEFAULT_THRESHOLD); one a person sets wins. The paper family's reaches the engine
through its predictor: tests/model/paper/test_threshold.py."""

from __future__ import annotations

import pytest

from backend.contract import DEFAULT_THRESHOLD
from backend.engine.options import EngineOptions
from backend.engine.segment import SegmentRun, segment
from tests.engine.rasters import good_scene
from tests.engine.standin import ColourModel


class OwnThresholdModel(ColourModel):
    """The colour stand-in stating a threshold of its own, as a model's configuration does."""

    default_threshold = 0.9


@pytest.mark.parametrize("context", ["view", "tiles"])
def test_an_unset_threshold_is_the_models_own_and_a_set_one_wins(tmp_path, context):
    raster = good_scene(tmp_path / "scene.tif")
    model = OwnThresholdModel(64)
    with SegmentRun(raster, ["red"], model, EngineOptions(context=context)) as run:
        assert run.threshold == 0.9
    with SegmentRun(raster, ["red"], model, EngineOptions(context=context, threshold=0.2)) as run:
        assert run.threshold == 0.2
    with SegmentRun(raster, ["red"], ColourModel(64), EngineOptions(context=context)) as run:
        assert run.threshold == DEFAULT_THRESHOLD
    # What the features are cut at: unset gives exactly what the model's own threshold set by hand gives.
    unset = segment(raster, ["red"], model, EngineOptions(context=context))
    explicit = segment(raster, ["red"], model, EngineOptions(context=context, threshold=0.9))
    assert [f.geometry for f in unset.features] == [f.geometry for f in explicit.features]
