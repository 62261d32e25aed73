"""The small-region benchmark's parts: its regions (a raster, labels in a `description` column chosen
by a fixed rule) and its queries through the real `rs2sam2 segment` (scored against the labels)."""

from __future__ import annotations

from collections import Counter

import pyogrio
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
    assert summary["samples"] == 3 and 0 <= summary["mIoU"] <= 1


def test_the_report_has_a_row_per_label_count_and_the_kinds_of_the_largest(tmp_path):
    import argparse

    from bench.region import Tuning, report

    before = [("car", 0.0, 10.0), ("pond", 5.0, 10.0)]
    few = Tuning(2, Counter({"pond": 2}), 1.0, "recipe: small-region", tmp_path / "final.safetensors", before)
    many = Tuning(
        4,
        Counter({"pond": 2, "car": 2}),
        3.0,
        "recipe: small-region",
        tmp_path / "final.safetensors",
        [("car", 8.0, 10.0), ("pond", 10.0, 10.0)],
    )
    args = argparse.Namespace(queries=2, model_name="m", train_args="")
    text = report(before, [many, few], args)
    assert "| after 2 labels (1 min), all kinds | 25.0 |" in text  # (0 + 0.5) / 2
    assert "| after 4 labels (3 min), all kinds | 90.0 |" in text
    assert text.index("after 2 labels") < text.index("after 4 labels")
    assert "| car | 2 | 1 | 0.0 | 80.0 |" in text and "By kind, 4 labels in A" in text


def test_the_report_shows_how_well_the_run_fits_its_own_labels(tmp_path):
    import argparse

    from bench.region import Tuning, report

    before = [("car", 0.0, 10.0), ("pond", 5.0, 10.0)]
    own = [("car", 2.0, 10.0), ("pond", 9.0, 10.0), ("river", 10.0, 10.0)]  # A has a kind B lacks
    tuned = Tuning(3, Counter({"car": 1, "pond": 1, "river": 1}), 2.0, "", tmp_path / "f", before, own)
    text = report(before, [tuned], argparse.Namespace(queries=2, model_name="m", train_args=""))
    assert "| after 3 labels, queried on region A's own labels | 70.0 |" in text  # (0.2 + 0.9 + 1) / 3
    head = "| kind | labels in A | queries in B | mIoU before | mIoU after | mIoU after, on A's own labels |"
    assert head in text
    assert "| car | 1 | 1 | 0.0 | 0.0 | 20.0 |" in text
    assert "| river | 1 | 0 | – | – | 100.0 |" in text
