"""Bounds, bad input and confinement at the HTTP API: the real app under uvicorn on loopback with the
colour stand-in (tests/live_server.py). Every client mistake is a 4xx with its own code and one
sentence; the server reads nothing it was not given. docs/robustness.md lists each case with its test.
"""

from __future__ import annotations

import dataclasses
import hmac
import os
from pathlib import Path

import httpx
import numpy as np
import pytest
from rasterio.crs import CRS

from backend.engine.limits import SERVICE_LIMITS, RunLimits
from backend.service.security import BearerTokenMiddleware
from tests.engine.rasters import (
    background,
    broken_geotransform,
    corrupt_blocks,
    cut_short,
    declaring_huge,
    good_scene,
    unresolvable_crs,
    vrt_of,
    write_geotiff,
    zero_band_vrt,
)
from tests.engine.standin import ColourModel, HeldModel
from tests.live_server import wait_until
from tests.service.helpers import assert_error, counting_http_server, form

HOLD_S = 30


@pytest.fixture
def folders(tmp_path) -> tuple[Path, Path]:
    """(allowed root with a good scene, a folder outside it with another)."""
    root, outside = tmp_path / "allowed", tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    good_scene(root / "scene.tif")
    good_scene(outside / "secret.tif")
    return root, outside


@pytest.fixture
def client(serve, folders):
    """A client of the real app with the service's default limits, reading paths under the root."""
    live = serve(ColourModel(64), allowed_roots=(folders[0],))
    with live.client() as http:
        yield http


def post(client: httpx.Client, params: dict | str, raster: Path | None = None, path: str | None = None):
    files, data = form(params if isinstance(params, dict) else {}, raster=raster, path=path)
    if isinstance(params, str):
        data["params"] = params
    return client.post("/segment", files=files, data=data)


def test_the_three_failures_of_issue_17_answer_4xx(client, folders, tmp_path):
    root, _ = folders
    cut = cut_short(root / "scene.tif", tmp_path / "cut.tif")  # the first 5,000 bytes of a valid GeoTIFF
    refused = client.post(
        "/jobs", files=form({"phrases": ["red"]}, raster=cut)[0], data=form({"phrases": ["red"]})[1]
    )
    assert_error(refused, 400, "unreadable_raster")  # at once: no job was queued for it
    tiles = post(
        client, {"phrases": ["red"], "tile_size": 1_000_000_000, "context": "tiles"}, root / "scene.tif"
    )
    assert_error(tiles, 400, "bad_tiling")
    many = post(client, {"phrases": ["red"] * 10_000}, root / "scene.tif")
    assert "at most 32" in assert_error(many, 400, "too_many_phrases")["message"]
    assert client.get("/health").json()["busy"] is False  # nothing reached the model


RED = {"phrases": ["red"]}
# (a setting of `rs2sam2 serve`, params beyond it, params within it, the code)
BOUNDS = [
    pytest.param(
        {"max_phrases": 2}, {"phrases": ["red", "blue", "green"]}, RED, "too_many_phrases", id="phrases"
    ),
    pytest.param(
        {"max_phrase_chars": 10}, {"phrases": ["the red square"]}, RED, "phrase_too_long", id="chars"
    ),
    pytest.param(
        {"tile_factor": 2.0},
        {**RED, "tile_size": 129},
        {**RED, "tile_size": 128},
        "bad_tiling",
        id="tile-large",
    ),
    pytest.param(
        {"tile_factor": 2.0},
        {**RED, "tile_size": 31},
        {**RED, "tile_size": 32},
        "bad_tiling",
        id="tile-small",
    ),
    pytest.param({"max_pixels": 2499}, RED, {**RED, "gsd": 4.0}, "too_many_pixels", id="pixels"),
    pytest.param({"max_pixels": 2500}, {**RED, "gsd": 1.0}, RED, "too_many_pixels", id="pixels-at-gsd"),
    pytest.param(
        {"gsd_range": (0.5, 3.0)}, {**RED, "gsd": 4.0}, {**RED, "gsd": 3.0}, "bad_gsd", id="gsd-coarse"
    ),
    pytest.param(
        {"gsd_range": (0.5, 3.0)}, {**RED, "gsd": 0.25}, {**RED, "gsd": 0.5}, "bad_gsd", id="gsd-fine"
    ),
]


@pytest.mark.parametrize(("limit", "beyond", "within", "code"), BOUNDS)
def test_each_bound_is_a_setting_answered_with_its_own_code(serve, tmp_path, limit, beyond, within, code):
    raster = good_scene(tmp_path / "scene.tif", size=50)  # 50 × 50 pixels of 2 m
    with serve(ColourModel(64), limits=dataclasses.replace(SERVICE_LIMITS, **limit)).client() as client:
        for context in ("tiles", "view"):  # the whole area at once is bounded alike
            assert_error(post(client, {**beyond, "context": context, "overlap": 0}, raster), 400, code)
            assert post(client, {**within, "context": context, "overlap": 0}, raster).status_code == 200


def test_the_upload_limit_is_413(serve, tmp_path):
    big = tmp_path / "big.tif"
    big.write_bytes(os.urandom(2 * 1024 * 1024))
    with serve(ColourModel(64), max_upload_mb=1).client() as client:
        assert_error(post(client, {"phrases": ["red"]}, big), 413, "too_large")
        assert post(client, {"phrases": ["red"]}, good_scene(tmp_path / "scene.tif")).status_code == 200


def _file(path: Path, content: bytes) -> Path:
    path.write_bytes(content)
    return path


BAD_RASTERS = [
    pytest.param(
        lambda d: cut_short(good_scene(d / "g.tif"), d / "cut.tif"), "unreadable_raster", id="cut-short"
    ),
    pytest.param(lambda d: _file(d / "empty.tif", b""), "not_a_raster", id="zero-bytes"),
    pytest.param(
        lambda d: _file(d / "noise.tif", os.urandom(4096)),
        "not_a_raster",
        id="random-bytes",
    ),
    pytest.param(lambda d: declaring_huge(d / "huge.tif"), "too_many_pixels", id="declares-a-terapixel"),
    pytest.param(lambda d: write_geotiff(d / "one.tif", background(1, 1)), "area_too_small", id="one-pixel"),
    pytest.param(
        lambda d: write_geotiff(d / "c.tif", np.ones((3, 20, 20), np.complex64)),
        "bad_data_type",
        id="complex",
    ),
    pytest.param(
        lambda d: write_geotiff(d / "nan.tif", np.full((3, 20, 20), np.nan, np.float32)),
        "not_a_raster",
        id="all-nan",
    ),
    pytest.param(
        lambda d: write_geotiff(d / "plain.tif", background(20, 20), crs=None), "no_crs", id="no-crs"
    ),
    pytest.param(lambda d: zero_band_vrt(d / "zero.vrt"), "not_a_raster", id="vrt-upload"),
    pytest.param(lambda d: unresolvable_crs(d / "local.tif"), "bad_crs", id="crs-unresolvable"),
    pytest.param(lambda d: broken_geotransform(d / "zero.tif"), "bad_georeference", id="pixel-size-zero"),
]


@pytest.mark.parametrize(("make", "code"), BAD_RASTERS)
def test_a_bad_upload_is_refused_before_it_queues(client, tmp_path, make, code):
    answer = client.post(
        "/jobs", files=form({}, raster=make(tmp_path))[0], data=form({"phrases": ["red"]})[1]
    )
    error = assert_error(answer, 400, code)
    assert "tmp" not in error["message"]  # the client's file name, not the server's temporary one


def test_a_corrupt_upload_that_looks_whole_fails_its_job_with_a_4xx(client, tmp_path):
    """The header is right and every block is in the file; the pixels do not decode. Found while
    reading, the job fails with 400 `unreadable_raster` and the worker goes on."""
    raster = corrupt_blocks(tmp_path / "corrupt.tif")
    created = client.post(
        "/jobs", files=form({}, raster=raster)[0], data=form({"phrases": ["red"], "context": "tiles"})[1]
    )
    assert created.status_code == 202, created.text
    job_id = created.json()["job_id"]
    wait_until(lambda: client.get(f"/jobs/{job_id}").json()["status"] == "failed", HOLD_S, "the job to fail")
    assert_error(client.get(f"/jobs/{job_id}/result"), 400, "unreadable_raster")
    assert post(client, {"phrases": ["red"]}, good_scene(tmp_path / "fine.tif")).status_code == 200


BAD_AREAS = [
    pytest.param('{"phrases": ["red"], "bbox": [NaN, 0, 1, 1]}', "bad_area", id="bbox-nan"),
    pytest.param('{"phrases": ["red"], "bbox": [0, 0, Infinity, 1]}', "bad_area", id="bbox-inf"),
    pytest.param(
        {"phrases": ["red"], "bbox": [170, -10, -170, 10], "bbox_crs": "EPSG:4326"},
        "bad_area",
        id="antimeridian",
    ),
    pytest.param(
        {"phrases": ["red"], "bbox": [-400, -10, 400, 10], "bbox_crs": "EPSG:4326"}, "bad_area", id="lon-400"
    ),
    pytest.param(
        {"phrases": ["red"], "bbox": [0, 0, 1, 1], "bbox_crs": "EPSG:nonsense"}, "bad_area", id="crs-garbage"
    ),
    pytest.param(
        {"phrases": ["red"], "bbox": [0, 0, 1, 1], "bbox_crs": "+init=epsg:4326"}, "bad_area", id="crs-init"
    ),
    pytest.param(
        {"phrases": ["red"], "bbox": [0, 0, 1, 1], "bbox_crs": "x" * 30_000}, "bad_area", id="crs-huge"
    ),
    pytest.param('{"phrases": ["red"], "threshold": NaN}', "bad_threshold", id="threshold-nan"),
    pytest.param({"phrases": ["red\u0000"]}, "bad_phrase", id="phrase-nul"),
    pytest.param({"phrases": [""]}, "empty_phrase", id="phrase-empty"),
    pytest.param({"phrases": "red"}, "bad_params", id="phrases-not-a-list"),
    pytest.param({"phrases": ["red"], "bbox": [1, 2, 3]}, "bad_params", id="bbox-three-numbers"),
    pytest.param('{"phrases": ["red"]', "bad_params", id="params-cut-short"),
]


@pytest.mark.parametrize(("params", "code"), BAD_AREAS)
def test_bad_params_and_areas_are_4xx(client, folders, params, code):
    status = 422 if code == "bad_params" else 400
    assert_error(post(client, params, folders[0] / "scene.tif"), status, code)


def test_a_crs_naming_a_file_or_url_is_not_read(client, folders, tmp_path):
    (tmp_path / "mercator.prj").write_text(CRS.from_epsg(3857).to_wkt())
    with counting_http_server(CRS.from_epsg(4326).to_wkt().encode()) as (url, hits):
        for crs in (str(tmp_path / "mercator.prj"), f"{url}/crs.wkt"):
            params = {"phrases": ["red"], "bbox": [0, 0, 1, 1], "bbox_crs": crs}
            assert_error(post(client, params, folders[0] / "scene.tif"), 400, "bad_area")
        assert hits == []


NOT_PLAIN_PATHS = [
    "/vsicurl/http://127.0.0.1:9/scene.tif",
    "/vsizip/{root}/archive.zip/scene.tif",
    "/vsistdin/",
    "/vsimem/scene.tif",
    "PG:dbname=postgres",
    "MEM:::DATAPOINTER=0,PIXELS=10,LINES=10",
    'NETCDF:"{root}/scene.tif":band',
    "http://127.0.0.1:9/scene.tif",
    "{root}/scene.tif\u0000.png",
]


@pytest.mark.parametrize("raw", NOT_PLAIN_PATHS)
def test_virtual_file_systems_and_connection_strings_are_refused(client, folders, raw):
    root = folders[0]
    import zipfile

    with zipfile.ZipFile(root / "archive.zip", "w") as archive:
        archive.write(root / "scene.tif", "scene.tif")
    assert_error(post(client, {"phrases": ["red"]}, path=raw.format(root=root)), 403, "path_not_allowed")


def test_server_side_files_that_lead_outside_are_refused(client, folders):
    root, outside = folders
    (root / "escape.tif").symlink_to(outside / "secret.tif")
    vrt_of(root / "out.vrt", str(outside / "secret.tif"))
    vrt_of(root / "relative.vrt", "../outside/secret.tif", relative=True)
    vrt_of(root / "nested.vrt", str(root / "out.vrt"))
    good_scene(root / "sidecar.tif")
    (root / "sidecar.tif.aux.xml").symlink_to(outside / "secret.tif")  # a sidecar GDAL reads, linked out
    for name in ("escape.tif", "out.vrt", "relative.vrt", "nested.vrt", "sidecar.tif"):
        assert_error(post(client, {"phrases": ["red"]}, path=str(root / name)), 403, "path_not_allowed")
    vrt_of(root / "inside.vrt", str(root / "scene.tif"))  # a VRT of files inside the root is fine
    answer = post(client, {"phrases": ["red"], "keep": "all"}, path=str(root / "inside.vrt"))
    assert answer.status_code == 200 and len(answer.json()["features"]) == 1


def test_a_vrt_cannot_make_the_server_fetch_anything(client, folders):
    root, _ = folders
    with counting_http_server(b"") as (url, hits):
        vrt_of(root / "remote.vrt", f"/vsicurl/{url}/scene.tif")
        assert_error(
            post(client, {"phrases": ["red"]}, path=str(root / "remote.vrt")), 403, "path_not_allowed"
        )
        # A WMS description in the root is a file there, but GDAL would fetch its tiles: not a raster file.
        (root / "tiles.xml").write_text(
            f'<GDAL_WMS><Service name="TMS"><ServerUrl>{url}/${{z}}/${{x}}/${{y}}.png</ServerUrl></Service>'
            "<DataWindow><UpperLeftX>-20037508.34</UpperLeftX><UpperLeftY>20037508.34</UpperLeftY>"
            "<LowerRightX>20037508.34</LowerRightX><LowerRightY>-20037508.34</LowerRightY><TileLevel>1</TileLevel>"
            "<TileCountX>1</TileCountX><TileCountY>1</TileCountY></DataWindow><Projection>EPSG:3857</Projection>"
            "<BlockSizeX>256</BlockSizeX><BlockSizeY>256</BlockSizeY><BandsCount>3</BandsCount></GDAL_WMS>"
        )
        vrt_of(root / "wms.vrt", str(root / "tiles.xml"))
        for name in ("tiles.xml", "wms.vrt"):
            answer = post(client, {"phrases": ["red"]}, path=str(root / name))
            assert 400 <= answer.status_code < 500, answer.text
        assert hits == []


FORMS = [
    pytest.param(None, {}, "bad_request", 422, id="no-params"),
    pytest.param(
        [("params", (None, '{"phrases": ["red"]}')), ("params", (None, '{"phrases": ["blue"]}'))],
        None,
        "bad_request",
        422,
        id="params-twice",
    ),
    pytest.param(
        [("raster", ("a.tif", b"x", "image/tiff")), ("raster", ("b.tif", b"y", "image/tiff"))],
        {"params": '{"phrases": ["red"]}'},
        "bad_request",
        422,
        id="raster-twice",
    ),
    pytest.param(
        [("path", (None, "/a")), ("path", (None, "/b"))],
        {"params": '{"phrases": ["red"]}'},
        "bad_request",
        422,
        id="path-twice",
    ),
    pytest.param(
        None, {"params": '{"phrases": ["red"]}', "rasta": "x"}, "bad_request", 422, id="unknown-field"
    ),
    pytest.param(
        None,
        {"params": '{"phrases": ["red"]}', "raster": "not a file"},
        "bad_request",
        422,
        id="raster-as-text",
    ),
    pytest.param(None, {"params": '{"phrases": ["red"]}'}, "bad_request", 400, id="neither-raster-nor-path"),
]


@pytest.mark.parametrize(("files", "data", "code", "status"), FORMS)
def test_multipart_forms_with_missing_or_repeated_fields_are_4xx(client, files, data, code, status):
    assert_error(client.post("/segment", files=files, data=data), status, code)


def test_a_body_that_is_not_a_form_is_4xx(client):
    assert_error(client.post("/segment", json={"phrases": ["red"]}), 422, "bad_request")
    broken = client.post(
        "/segment", content=b"--x\r\nnonsense", headers={"Content-Type": "multipart/form-data; boundary=x"}
    )
    assert 400 <= broken.status_code < 500 and broken.json()["error"]["code"]


def test_the_token_is_compared_in_constant_time_on_every_route(serve, monkeypatch):
    compared, real = [], hmac.compare_digest

    def spy(a, b):
        compared.append((a, b))
        return real(a, b)

    monkeypatch.setattr("backend.service.security.hmac.compare_digest", spy)
    live = serve(ColourModel(64), token="s3cret")
    routes = [
        ("GET", "/health"),
        ("POST", "/segment"),
        ("POST", "/jobs"),
        ("GET", "/jobs/x"),
        ("GET", "/jobs/x/result"),
        ("DELETE", "/jobs/x"),
    ]
    with live.client() as anonymous, live.client("s3cret") as trusted:
        for method, path in routes:
            assert_error(anonymous.request(method, path), 401, "unauthorized")
        assert httpx.get(live.url + "/openapi.json").status_code == 401
        assert httpx.get(live.url + "/docs").status_code == 401
        assert trusted.get("/health").status_code == 200
    assert len(compared) == len(routes) + 3 and all(b == b"Bearer s3cret" for _, b in compared)
    assert BearerTokenMiddleware.__call__.__code__.co_names.count("compare_digest") == 1


def test_jobs_per_client_and_per_server_are_bounded_with_retry_after(serve, folders):
    root, _ = folders
    model = HeldModel()
    live = serve(model, allowed_roots=(root,), max_queued_jobs=2, max_jobs_per_client=1)
    data = form({"phrases": ["red"], "context": "tiles"}, path=str(root / "scene.tif"))[1]

    def client_from(address: str) -> httpx.Client:
        return httpx.Client(
            base_url=live.api, transport=httpx.HTTPTransport(local_address=address), timeout=60
        )

    with (
        client_from("127.0.0.1") as first,
        client_from("127.0.0.2") as second,
        client_from("127.0.0.3") as third,
    ):
        job = first.post("/jobs", data=data)
        assert job.status_code == 202
        assert model.entered.wait(HOLD_S)
        mine = first.post("/jobs", data=data)
        assert "you already have 1 jobs" in assert_error(mine, 429, "too_many_jobs")["message"]
        assert int(mine.headers["Retry-After"]) >= 1
        assert second.post("/jobs", data=data).status_code == 202  # another client still has room
        full = third.post("/jobs", data=data)
        assert_error(full, 429, "queue_full")
        assert int(full.headers["Retry-After"]) >= 1
        assert third.get("/health").status_code == 200
        model.release()
        wait_until(lambda: not first.get("/health").json()["busy"], HOLD_S, "the queue to empty")
        assert first.post("/jobs", data=data).status_code == 202  # room again


def test_a_job_past_the_time_limit_stops_at_its_next_tile_with_a_4xx(serve, folders):
    root, _ = folders
    model = HeldModel()
    live = serve(model, allowed_roots=(root,), job_time_limit_s=60)
    jobs = live.app.state.service.jobs
    now = [1000.0]
    jobs.clock = lambda: now[0]  # the test moves time on; nothing waits for the wall clock
    with live.client() as client:
        params = {"phrases": ["red"], "tile_size": 32, "overlap": 0, "context": "tiles"}  # 16 tiles
        job_id = client.post("/jobs", data=form(params, path=str(root / "scene.tif"))[1]).json()["job_id"]
        assert model.entered.wait(HOLD_S)  # inside its first tile
        now[0] += 61
        model.release()
        wait_until(
            lambda: client.get(f"/jobs/{job_id}").json()["status"] == "failed", HOLD_S, "the job to stop"
        )
        status = client.get(f"/jobs/{job_id}").json()
        assert status["progress"] == {"done": 1, "total": 16} and status["error"]["code"] == "time_limit"
        error = assert_error(client.get(f"/jobs/{job_id}/result"), 400, "time_limit")
        assert "60 s per job" in error["message"] and model.started == 1
        assert post(client, {"phrases": ["red"]}, path=str(root / "scene.tif")).status_code == 200


def test_a_bug_in_the_result_does_not_kill_the_worker(serve, folders, monkeypatch):
    root, _ = folders
    live = serve(ColourModel(64), allowed_roots=(root,))
    calls = []

    def broken(self):
        calls.append(1)
        if len(calls) == 1:
            raise ValueError("a bug turning the result into GeoJSON")
        return original(self)

    from backend.engine.segment import SegmentResult

    original = SegmentResult.to_geojson
    monkeypatch.setattr(SegmentResult, "to_geojson", broken)
    with live.client() as client:
        failed = post(client, {"phrases": ["red"]}, path=str(root / "scene.tif"))
        assert_error(failed, 500, "internal")
        assert post(client, {"phrases": ["red"]}, path=str(root / "scene.tif")).status_code == 200


def test_serve_settings_become_the_limits(tmp_path):
    import argparse

    from backend.errors import UserError
    from backend.service.cli import add_arguments, config_from_args

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    defaults = config_from_args(parser.parse_args([]))
    assert defaults.limits == SERVICE_LIMITS and defaults.max_queued_jobs == 64
    assert defaults.max_jobs_per_client == 8 and defaults.job_time_limit_s == 1800
    args = parser.parse_args(
        [
            "--max-phrases",
            "4",
            "--max-phrase-chars",
            "80",
            "--tile-factor",
            "2",
            "--max-megapixels",
            "2.5",
            "--gsd-range",
            "0.1,50",
            "--max-queued-jobs",
            "3",
            "--max-jobs-per-client",
            "1",
            "--job-time-limit",
            "90",
        ]
    )
    config = config_from_args(args)
    assert config.limits == RunLimits(4, 80, 2.0, 2_500_000, (0.1, 50.0))
    assert (config.max_queued_jobs, config.max_jobs_per_client, config.job_time_limit_s) == (3, 1, 90.0)
    for bad in (
        ["--max-phrases", "0"],
        ["--gsd-range", "5,1"],
        ["--tile-factor", "0.5"],
        ["--job-time-limit", "0"],
        ["--max-megapixels", "nan"],
        ["--max-jobs-per-client", "0"],
    ):
        with pytest.raises(UserError):
            config_from_args(parser.parse_args(bad))


def test_the_api_schema_declares_the_new_answers(serve):
    live = serve(ColourModel(64))
    paths = httpx.get(live.url + "/openapi.json").json()["paths"]
    for path in ("/api/v1/segment", "/api/v1/jobs"):
        assert {"400", "403", "413", "422", "429", "503"} <= set(paths[path]["post"]["responses"])


@pytest.mark.parametrize("context", ["view", "tiles"])
def test_a_null_option_means_its_default(client, folders, context):
    """`"threshold": null` reached the engine as None (a 500 the property tests found)."""
    path = str(folders[0] / "scene.tif")
    nulls = {"threshold": None, "simplify": None, "min_area": None, "tile_size": None, "gsd": None}
    with_nulls = post(client, {"phrases": ["red"], "context": context, **nulls}, path=path)
    plain = post(client, {"phrases": ["red"], "context": context}, path=path)
    assert with_nulls.status_code == 200 == plain.status_code, with_nulls.text
    assert [f["geometry"] for f in with_nulls.json()["features"]] == [
        f["geometry"] for f in plain.json()["features"]
    ]
