"""Small helpers for talking to the service in tests."""

from __future__ import annotations

import contextlib
import http.server
import json
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import shapely

API = "/api/v1"
SCORE_TOLERANCE = 1e-4  # a score is a mean of probabilities: float noise moves it by ~1e-7


def form(params: dict, raster: Path | None = None, path: str | None = None):
    """(files, data) for httpx: the multipart form of /segment and /jobs."""
    files = {"raster": (raster.name, raster.read_bytes(), "image/tiff")} if raster is not None else None
    data = {"params": json.dumps(params)}
    if path is not None:
        data["path"] = path
    return files, data


def _features(collection: dict) -> dict[str, list[dict]]:
    by_phrase: dict[str, list[dict]] = {}
    for feature in collection["features"]:
        by_phrase.setdefault(feature["properties"]["phrase"], []).append(feature)
    return by_phrase


def assert_same_collections(got: dict, expected: dict, pixel: float) -> None:
    """The same features (phrase, source, model; score, area and outline within float noise and a
    pixel): the service and the engine ran the same model on the same pixels, maybe in two processes.

    A pixel whose probability lies within float noise of the threshold may be in one and not the other;
    tests use a model whose probabilities keep clear of it, so that stays a pixel or two, not a feature.
    """
    assert got["crs"] == expected["crs"] and got["crs_wkt"] == expected["crs_wkt"]
    got_features, expected_features = _features(got), _features(expected)
    assert sorted(got_features) == sorted(expected_features)
    for phrase, wanted in expected_features.items():
        found = got_features[phrase]
        assert len(found) == len(wanted), phrase
        for feature in wanted:
            shape = shapely.geometry.shape(feature["geometry"])
            # The one whose outline is nearest (features of one phrase do not overlap).
            match = min(found, key=lambda f: shapely.geometry.shape(f["geometry"]).hausdorff_distance(shape))
            other = shapely.geometry.shape(match["geometry"])
            props, theirs = feature["properties"], match["properties"]
            assert (theirs["source"], theirs["model"]) == (props["source"], props["model"])
            assert theirs["score"] == pytest.approx(props["score"], abs=SCORE_TOLERANCE)
            assert theirs["area"] == pytest.approx(props["area"], rel=1e-6, abs=2 * pixel**2)
            assert other.hausdorff_distance(shape) <= 1.5 * pixel
            assert other.symmetric_difference(shape).area <= 2 * pixel**2 + 1e-6 * shape.area


@contextlib.contextmanager
def counting_http_server(body: bytes = b"") -> Iterator[tuple[str, list[str]]]:
    """A plain HTTP server on loopback answering every GET with `body`: (its URL, the paths asked
    for). A test that must not make the service fetch anything checks the list stays empty."""
    hits: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - http.server's name
            hits.append(self.path)
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_HEAD(self):  # noqa: N802
            hits.append(self.path)
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", hits
    finally:
        server.shutdown()
        server.server_close()


def assert_error(answer, status: int, code: str) -> dict:
    """The answer is the API's error `code` with `status` and a one-sentence message; its body."""
    assert answer.status_code == status, (code, answer.status_code, answer.text)
    error = answer.json()["error"]
    assert error["code"] == code, answer.text
    message = error["message"]
    assert len(message) > 10 and "\n" not in message and "Traceback" not in message
    return error
