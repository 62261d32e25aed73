"""Small helpers for talking to the service in tests."""

from __future__ import annotations

import json
from pathlib import Path

import shapely

API = "/api/v1"


def form(params: dict, raster: Path | None = None, path: str | None = None):
    """(files, data) for httpx: the multipart form of /segment and /jobs."""
    files = {"raster": (raster.name, raster.read_bytes(), "image/tiff")} if raster is not None else None
    data = {"params": json.dumps(params)}
    if path is not None:
        data["path"] = path
    return files, data


def comparable(collection: dict) -> list[tuple]:
    """Features as (phrase, score, area, source, model, geometry) sorted; `created` differs per run."""
    rows = []
    for feature in collection["features"]:
        props = feature["properties"]
        rows.append(
            (
                props["phrase"],
                round(props["score"], 4),
                round(props["area"], 1),
                props["source"],
                props["model"],
                shapely.geometry.shape(feature["geometry"]),
            )
        )
    return sorted(rows, key=lambda row: (row[0], row[5].centroid.x, row[5].centroid.y))


def assert_same_collections(got: dict, expected: dict) -> None:
    assert got["crs"] == expected["crs"] and got["crs_wkt"] == expected["crs_wkt"]
    a, b = comparable(got), comparable(expected)
    assert [row[:5] for row in a] == [row[:5] for row in b]
    for row_a, row_b in zip(a, b):
        assert row_a[5].symmetric_difference(row_b[5]).area <= 1e-6 * max(row_b[5].area, 1.0)
