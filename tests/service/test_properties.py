"""Property-based tests of the service (hypothesis): generated `params`, generated large jobs and
mangled GeoTIFFs against the real app under uvicorn on loopback (the colour stand-in as the model,
10 ms per call, a 1 s job limit; tests/live_server.py — the real model meets the issue's bad requests
in tests/service/test_server.py).

Whatever a client sends: never a 5xx, never an answer later than the job time limit allows, and /health
still answers. The examples are derived from the test's name (`derandomize`), so a run in CI is the same
run every time; a failure prints the smallest example hypothesis found. `pytest
--hypothesis-show-statistics` shows which answers the examples reached (the `event`s below).
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import numpy as np
import pytest
import rasterio
from affine import Affine
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from rasterio.io import MemoryFile

from backend.engine.limits import RunLimits
from backend.service.config import ServiceConfig
from tests.engine.rasters import PIXEL, UTM_ORIGIN, good_scene
from tests.engine.standin import ColourModel
from tests.live_server import live_server

# Short enough that generated jobs reach it (test_large_jobs_…: 16 to over 200 model calls of the stand-in
# below): the properties cover answers stopped at the limit, not only quick ones. The stand-in's pace and
# the limit were halved together (from 20 ms and 2 s): the same jobs finish or meet the limit, and the
# examples, mostly spent sleeping in the stand-in, take half the wall time.
JOB_TIME_LIMIT_S = 1.0
ANSWER_WITHIN_S = JOB_TIME_LIMIT_S + 30  # the limit, plus parsing and queueing on a loaded machine
MODEL_CALL_S = 0.01
PROPERTY_SETTINGS = settings(
    max_examples=100,  # 10–15 s per property on the shared 2-core machine
    deadline=None,  # one example is an HTTP round trip on a shared machine: no per-example deadline
    derandomize=True,  # the same examples on every run and machine (no example database either)
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


class PacedColourModel(ColourModel):
    """The colour stand-in taking a few milliseconds per call, like a (very fast) model."""

    def predict(self, image, phrases):
        time.sleep(MODEL_CALL_S)
        return super().predict(image, phrases)


def _geotiff(**profile) -> bytes:
    """A small valid GeoTIFF with a red square, in one of several layouts."""
    dtype = profile.pop("dtype", "uint8")
    size = 48
    data = np.random.default_rng(0).integers(90, 150, (3, size, size)).astype(dtype)
    data[0, 10:30, 10:30], data[1:, 10:30, 10:30] = 255, 0
    with MemoryFile() as memory:
        with memory.open(
            driver="GTiff",
            width=size,
            height=size,
            count=3,
            dtype=dtype,
            crs="EPSG:32633",
            transform=Affine(PIXEL, 0, UTM_ORIGIN[0], 0, -PIXEL, UTM_ORIGIN[1]),
            **profile,
        ) as dst:
            dst.write(data)
        return bytes(memory.read())


BASES = {
    "striped": _geotiff(),
    "tiled-deflate": _geotiff(tiled=True, blockxsize=16, blockysize=16, compress="deflate"),
    "uint16-band": _geotiff(dtype="uint16", interleave="band", compress="lzw"),
    "float32": _geotiff(dtype="float32", tiled=True, blockxsize=32, blockysize=32),
}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("root")
    (root / "scene.tif").write_bytes(BASES["striped"])
    good_scene(root / "large.tif", size=200)  # 40,000 pixels: the most this server allows
    config = ServiceConfig(
        allowed_roots=(root,),
        max_upload_mb=1,
        job_time_limit_s=JOB_TIME_LIMIT_S,
        limits=RunLimits(max_phrases=8, tile_factor=4, max_pixels=40_000),
    )
    with live_server(PacedColourModel(64), config, record=False) as live:
        with live.client(timeout=ANSWER_WITHIN_S) as client:
            yield client, root


def _timed(client: httpx.Client, **request) -> httpx.Response:
    """POST /segment; the answer must come within the job limit plus slack (never a hang)."""
    started = time.monotonic()
    answer = client.post("/segment", **request)
    assert time.monotonic() - started < ANSWER_WITHIN_S
    return answer


def _check_answer(client: httpx.Client, answer: httpx.Response) -> None:
    assert answer.status_code < 500, answer.text
    if answer.status_code == 200:
        assert answer.json()["type"] == "FeatureCollection"
        event("200")
    else:
        error = answer.json()["error"]
        assert error["code"] and error["message"] and "\n" not in error["message"]
        event(f"{answer.status_code} {error['code']}")  # --hypothesis-show-statistics: what was reached
    assert client.get("/health", timeout=10).status_code == 200


# -- generated params -------------------------------------------------------------------------------
# Each field is mostly absent or well-typed (so that requests get past the schema, to the checks of the
# run itself: tiling, area, CRS, gsd, pixels, the time limit), sometimes an edge or plain junk.
numbers = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(min_value=-(10**12), max_value=10**12),
    st.sampled_from([0, 1, 16, 64, 0.5, 2.0, 1e-9, 1e9, -1, 10**9]),
)
junk = st.one_of(st.none(), st.booleans(), st.text(max_size=20), numbers, st.lists(numbers, max_size=5))
# The raster: 48 × 48 pixels of 2 m from (500000, 5000000) in EPSG:32633.
x = st.floats(499_950, 500_150)
y = st.floats(4_999_850, 5_000_050)
FIELDS: dict[str, tuple[st.SearchStrategy, st.SearchStrategy]] = {  # name: (well-typed, edge or junk)
    "bbox": (
        st.tuples(x, y, x, y).map(list),
        st.one_of(
            st.lists(numbers, min_size=4, max_size=4),
            st.lists(numbers, max_size=6),
            st.just([170, -10, -170, 10]),  # across the antimeridian (with EPSG:4326)
            junk,
        ),
    ),
    "bbox_crs": (
        st.sampled_from(["EPSG:32633", "EPSG:4326", "EPSG:3857", "OGC:CRS84", "+proj=longlat"]),
        st.one_of(
            st.sampled_from(["EPSG:0", "/etc/passwd", "+init=epsg:4326", "http://127.0.0.1:9/x.wkt"]),
            st.text(max_size=30),
            junk,
        ),
    ),
    "threshold": (st.floats(0.05, 0.95), st.one_of(st.floats(), junk)),
    "keep": (st.sampled_from(["best", "all"]), junk),
    "context": (st.sampled_from(["view", "tiles"]), junk),
    "simplify": (st.floats(0, 5), numbers),
    "min_area": (st.floats(0, 50), numbers),
    "tile_size": (
        st.one_of(st.integers(16, 24), st.integers(16, 256)),
        st.one_of(st.integers(-10, 15), st.integers(257, 10**12), numbers),
    ),
    "overlap": (st.integers(0, 8), st.one_of(st.integers(-5, 300), numbers)),
    "gsd": (st.one_of(st.floats(0.5, 0.6), st.floats(0.5, 20)), st.one_of(st.floats(1e-9, 1e9), numbers)),
    "bands": (
        st.one_of(st.lists(st.integers(1, 3), min_size=1, max_size=1), st.permutations([1, 2, 3])),
        st.one_of(st.lists(st.integers(-1, 5), max_size=4), junk),
    ),
    "unknown": (st.nothing(), junk),
}
PHRASES = (
    st.lists(st.sampled_from(["red", "blue", "the red square", "green"]), min_size=1, max_size=3),
    st.one_of(
        st.sampled_from([[], [""], ["   "], ["red\u0000"], ["r" * 501], ["red"] * 9, "red"]),
        st.lists(st.text(max_size=40), max_size=10),
        junk,
    ),
)


def _field(draw, typed: st.SearchStrategy, edge: st.SearchStrategy, absent: bool = True):
    """(present, value): absent half the time, an edge or junk value one time in twenty."""
    kind = draw(st.integers(0, 19))
    if kind == 19 or typed.is_empty:
        return (True, draw(edge)) if kind == 19 else (False, None)
    if absent and kind < 10:
        return False, None
    return True, draw(typed)


@st.composite
def params_text(draw) -> str:
    params = {"phrases": _field(draw, *PHRASES, absent=False)[1]}
    for name, (typed, edge) in FIELDS.items():
        present, value = _field(draw, typed, edge)
        if present:
            params[name] = value
    text = json.dumps(params, allow_nan=True)  # NaN and Infinity as the bare words JSON parsers meet
    if draw(st.integers(0, 9)) == 0:  # a form whose params were cut short
        text = text[: draw(st.integers(1, len(text) - 1))]  # (no params at all: test_limits.py)
    return text


@PROPERTY_SETTINGS
@given(text=params_text(), by_path=st.booleans())
def test_generated_params_never_get_a_5xx(server, text, by_path):
    client, root = server
    if by_path:
        answer = _timed(client, data={"params": text, "path": str(root / "scene.tif")})
    else:
        files = {"raster": ("scene.tif", BASES["striped"], "image/tiff")}
        answer = _timed(client, files=files, data={"params": text})
    _check_answer(client, answer)


# -- jobs around the time limit --------------------------------------------------------------------
@settings(PROPERTY_SETTINGS, max_examples=12)  # each example takes up to the job limit
@given(
    phrases=st.lists(st.sampled_from(["red", "blue"]), min_size=1, max_size=3),
    context=st.sampled_from(["view", "tiles"]),
    keep=st.sampled_from(["best", "all"]),
    tile_size=st.integers(16, 64),
    overlap=st.integers(0, 8),
)
def test_large_jobs_finish_or_stop_at_the_time_limit(server, phrases, context, keep, tile_size, overlap):
    """200 × 200 pixels in tiles of 16 to 64 pixels: from 16 to over 200 model calls of 10 ms, so some
    jobs finish and some meet the 1 s limit; either way the answer comes in time and is not a 5xx."""
    client, root = server
    params = {
        "phrases": phrases,
        "context": context,
        "keep": keep,
        "tile_size": tile_size,
        "overlap": overlap,
    }
    answer = _timed(client, data={"params": json.dumps(params), "path": str(root / "large.tif")})
    _check_answer(client, answer)
    assert answer.status_code == 200 or answer.json()["error"]["code"] == "time_limit", answer.text


# -- mangled rasters --------------------------------------------------------------------------------
def _ifd_entries(raw: bytes) -> list[int]:
    """Where the 12-byte entries of a little-endian TIFF's first directory start (none if mangled)."""
    if len(raw) < 8 or raw[:4] != b"II*\x00":
        return []
    ifd = int.from_bytes(raw[4:8], "little")
    if ifd + 2 > len(raw):
        return []
    count = int.from_bytes(raw[ifd : ifd + 2], "little")
    return [start for start in range(ifd + 2, ifd + 2 + 12 * count, 12) if start + 12 <= len(raw)]


HEADER_BYTES = 400  # a GeoTIFF's header and first directory: sizes, offsets, data types, bands


@dataclass(frozen=True)
class Mangled:
    """A base GeoTIFF and what was done to it: a failure prints the recipe, not 7 KB of bytes."""

    base: str
    steps: tuple[str, ...]
    raw: bytes = field(repr=False)


@st.composite
def mangled(draw) -> Mangled:
    base = draw(st.sampled_from(sorted(BASES)))
    raw, steps = bytearray(BASES[base]), []
    for _ in range(draw(st.integers(0, 4))):
        if not raw:
            break
        kind = draw(st.sampled_from(["tag", "tag", "set", "set32", "cut", "insert", "delete"]))
        entries = _ifd_entries(raw)
        if kind == "tag" and entries:  # what the file declares: a size, a type, where its pixels are
            entry = draw(st.sampled_from(entries))
            tag = int.from_bytes(raw[entry : entry + 2], "little")
            number = draw(st.sampled_from([0, 1, 2, 3, 6, 8, 16, 0xFFFF, 0x7FFFFFFF, 0xFFFFFFFF, 10**6]))
            raw[entry + 8 : entry + 12] = number.to_bytes(4, "little")  # its value, or where its values are
            steps.append(f"tag {tag} = {number}")
            continue
        # Half the changes in the header (what the file declares), half anywhere (mostly pixels).
        end = min(len(raw), HEADER_BYTES) if draw(st.booleans()) else len(raw)
        at = draw(st.integers(0, end - 1))
        if kind == "set":
            value = draw(st.integers(0, 255))
            raw[at] = value
            steps.append(f"byte {at} = {value}")
        elif kind == "set32":  # a header field (size, offset, count) replaced by another number
            number = draw(st.sampled_from([0, 1, 2, 3, 6, 0xFFFF, 0x7FFFFFFF, 0xFFFFFFFF, 10**6]))
            raw[at : at + 4] = number.to_bytes(4, "little")
            steps.append(f"uint32 at {at} = {number}")
        elif kind == "cut":
            del raw[at:]
            steps.append(f"cut at {at}")
        elif kind == "insert":
            inserted = draw(st.binary(min_size=1, max_size=16))
            raw[at:at] = inserted
            steps.append(f"insert {inserted!r} at {at}")
        else:
            length = draw(st.integers(1, 64))
            del raw[at : at + length]
            steps.append(f"delete {length} bytes at {at}")
    return Mangled(base, tuple(steps), bytes(raw))


@PROPERTY_SETTINGS
@given(raster=mangled(), context=st.sampled_from(["view", "tiles"]))
def test_mangled_rasters_never_get_a_5xx(server, raster, context):
    client, _ = server
    files = {"raster": ("mangled.tif", raster.raw, "image/tiff")}
    params = {"phrases": ["red"], "context": context, "keep": "all"}
    answer = _timed(client, files=files, data={"params": json.dumps(params)})
    _check_answer(client, answer)


def test_the_bases_are_valid_and_found(server):
    """The unmangled rasters are answered with the red square: the properties start from real input."""
    client, _ = server
    for name, raw in BASES.items():
        with MemoryFile(raw) as memory, memory.open() as dataset:
            assert dataset.count == 3 and math.isclose(dataset.res[0], PIXEL), name
        answer = client.post(
            "/segment",
            files={"raster": (f"{name}.tif", raw, "image/tiff")},
            data={"params": json.dumps({"phrases": ["red"], "keep": "all"})},
        )
        assert answer.status_code == 200 and len(answer.json()["features"]) == 1, (name, answer.text)


def test_a_mangled_upload_is_never_read_outside_the_upload_folder(server, tmp_path):
    """A GeoTIFF cannot name other files; a VRT upload (which can) is refused outright."""
    client, root = server
    vrt = Path(tmp_path / "x.vrt")
    vrt.write_text(
        f'<VRTDataset rasterXSize="48" rasterYSize="48"><VRTRasterBand dataType="Byte" band="1">'
        f"<SimpleSource><SourceFilename>{root / 'scene.tif'}</SourceFilename></SimpleSource>"
        "</VRTRasterBand></VRTDataset>"
    )
    answer = client.post(
        "/segment",
        files={"raster": ("x.vrt", vrt.read_bytes(), "text/xml")},
        data={"params": json.dumps({"phrases": ["red"]})},
    )
    assert answer.status_code == 400 and answer.json()["error"]["code"] == "not_a_raster"
    assert rasterio.open(root / "scene.tif").count == 3  # still there, still a raster
