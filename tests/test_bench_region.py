"""The small-region benchmark's parts: its regions (a raster, labels in a `description` column chosen
by a fixed rule) and its queries through the real `rs2sam2 segment` (scored against the labels)."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pyogrio
import pytest
import rasterio
import shapely

from backend.model.checkpoint import save_checkpoint
from backend.model.factory import build_model
from bench.region import query_region, summarise
from bench.region_data import BLOCK, GSD, make_region


def test_a_region_is_a_mosaic_with_varied_labels_in_a_description_column(tmp_path):
    region = make_region(tmp_path, "A", 10_000_000, labels=4, blocks=1)
    with rasterio.open(region.raster) as dataset:
        assert (dataset.width, dataset.height) == (BLOCK, BLOCK) and dataset.res == (GSD, GSD)
        frame = shapely.box(*dataset.bounds)
    meta = pyogrio.read_info(region.labels_path)
    assert meta["features"] == 4  # at most 4 per block and list(meta["fields"]) == ["description"]
    kinds = Counter(label.kind for label in region.labels)
    assert len(kinds) >= 4 and max(kinds.values()) <= 2  # round robin over the kinds
    for label in region.labels:
        assert frame.contains(label.geometry) and shapely.box(*label.block).contains(label.geometry.centroid)
        assert not any(w in label.phrase.split() for w in ("left", "right", "top", "bottom"))


def test_queries_run_the_segment_command_and_score_against_the_labels(tmp_path):
    region = make_region(tmp_path, "B", 10_000_100, labels=3, blocks=1)
    checkpoint = save_checkpoint(tmp_path / "untrained.safetensors", build_model("test"))
    results = query_region(region, checkpoint, tmp_path, "cpu")
    assert [kind for kind, _, _ in results] == [label.kind for label in region.labels]
    for (_, intersection, union), label in zip(results, region.labels):
        assert 0 <= intersection <= union and union >= label.geometry.area / GSD**2 - 1
    summary = summarise(results)
    ious = [round(i) / round(u) if round(u) else 0.0 for _, i, u in results]
    assert summary["samples"] == 3 and summary["mIoU"] == pytest.approx(np.mean(ious))
    # the tiles protocol asks the same labels through `--context tiles`
    assert [kind for kind, _, _ in query_region(region, checkpoint, tmp_path, "cpu", "tiles")] == [
        label.kind for label in region.labels
    ]


def test_the_report_has_a_row_per_label_count_and_the_kinds_of_the_largest(tmp_path):
    import argparse

    from bench.region import Tuning, report

    before = [("car", 0.0, 10.0), ("pond", 5.0, 10.0)]
    tiles = [("car", 10.0, 10.0), ("pond", 5.0, 10.0)]
    few = Tuning(
        2, Counter({"pond": 2}), 1.0, "recipe: small-region", tmp_path / "final.safetensors",
        {"view": before, "tiles": tiles},
    )  # fmt: skip
    many = Tuning(
        4,
        Counter({"pond": 2, "car": 2}),
        3.0,
        "recipe: small-region",
        tmp_path / "final.safetensors",
        {"view": [("car", 8.0, 10.0), ("pond", 10.0, 10.0)], "tiles": tiles},
    )
    args = argparse.Namespace(queries=2, model_name="m", train_args="")
    text = report({"view": before, "tiles": tiles}, [many, few], args)
    assert "| view (the panel's): region B after 2 labels (1 min) | 25.0 |" in text  # (0 + 0.5) / 2
    assert "| view (the panel's): region B after 4 labels (3 min) | 90.0 |" in text
    assert "| full-resolution tiles: region B before fine-tuning | 75.0 |" in text
    assert text.index("after 2 labels") < text.index("after 4 labels")
    assert "| car | 2 | 1 | 0.0 | 80.0 | 100.0 | 100.0 |" in text and "by kind, 4 labels in A" in text


def test_the_report_shows_how_well_the_run_fits_its_own_labels(tmp_path):
    import argparse

    from bench.region import Tuning, report

    before = {"view": [("car", 0.0, 10.0), ("pond", 5.0, 10.0)]}
    own = {"view": [("car", 2.0, 10.0), ("pond", 9.0, 10.0), ("river", 10.0, 10.0)]}  # A has a kind B lacks
    tuned = Tuning(3, Counter({"car": 1, "pond": 1, "river": 1}), 2.0, "", tmp_path / "f", before, own)
    tuned.blends[0.5] = [("car", 5.0, 10.0), ("pond", 5.0, 10.0)]
    text = report(before, [tuned], argparse.Namespace(queries=2, model_name="m", train_args=""))
    assert "| view (the panel's): region A's own labels after 3 | 70.0 |" in text  # (0.2 + 0.9 + 1) / 3
    assert "| view: region B, last step blended with 50% of the start | 50.0 |" in text
    assert "| kind | labels in A | queries in B | view: B before | view: B after | view: A after |" in text
    assert "| car | 1 | 1 | 0.0 | 0.0 | 20.0 |" in text
    assert "| river | 1 | 0 | – | – | 100.0 |" in text
