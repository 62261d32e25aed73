"""The engine on each device: the bundled demo model segments the bundled demo scene in tiles mode at
twice its resolution (gsd 0.25 m: 9 tiles, seams, the vectoriser) on the CPU and on CUDA, and the GPU's
polygons are the CPU's.

GPU and CPU probabilities differ by float rounding (tests/model/test_gpu_precision.py bounds it), so a
few pixels on the 0.5 threshold may fall the other way: each phrase's polygons must cover the same
ground, at an IoU of at least 0.98, with the same number of objects give or take one."""

from __future__ import annotations

import pytest

from backend.bundled import DEMO_CHECKPOINT, DEMO_SCENE, demo_phrases
from backend.model.factory import load_predictor


def _run(device: str):
    from backend.engine.options import EngineOptions
    from backend.engine.segment import segment

    model = load_predictor(checkpoint=DEMO_CHECKPOINT, device=device, precision="fp32")
    return segment(DEMO_SCENE, demo_phrases(), model, EngineOptions(keep="all", context="tiles", gsd=0.25))


@pytest.fixture(scope="module")
def on_cpu():
    return _run("cpu")


def test_the_engine_gives_the_same_polygons_on_each_device(device, on_cpu):
    from shapely import union_all

    result = on_cpu if device == "cpu" else _run(device)
    assert result.tiles > 1 and result.model == on_cpu.model
    assert sum(result.counts.values()) > 0  # the demo model finds its objects: the comparison means something
    for phrase in demo_phrases():
        ours = union_all([f.geometry for f in result.features if f.phrase == phrase])
        theirs = union_all([f.geometry for f in on_cpu.features if f.phrase == phrase])
        union = ours.union(theirs).area
        assert union == 0 or ours.intersection(theirs).area / union >= 0.98, phrase
        assert abs(result.counts.get(phrase, 0) - on_cpu.counts.get(phrase, 0)) <= 1, phrase
