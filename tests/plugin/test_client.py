"""The backend client over real HTTP on 127.0.0.1, against a server that follows the API contract."""

from __future__ import annotations

import socket
import threading

import pytest

from rs2sam2_qgis.client import (
    BackendClient,
    BackendError,
    BackendUnreachable,
    RasterPayload,
    RunCancelled,
    as_sentence,
    is_loopback_url,
)
from rs2sam2_qgis.request import AreaBox, SegmentOptions, build_params, split_phrases


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_health_is_parsed(stand_in):
    health = BackendClient(stand_in.url).health()
    assert health.model_id == "stand-in"
    assert health.device == "cpu"
    assert health.allow_paths is True
    assert health.max_upload_mb == 50


def test_token_travels_as_bearer_and_a_wrong_one_is_explained(stand_in):
    stand_in.behaviour.token = "s3cret"
    assert BackendClient(stand_in.url, token="s3cret").health().model_id == "stand-in"
    with pytest.raises(BackendError) as info:
        BackendClient(stand_in.url, token="wrong").health()
    assert info.value.status == 401
    assert info.value.message == "A valid access token is required."


def test_job_by_path_returns_features_and_reports_progress(stand_in, geotiff):
    stand_in.behaviour.tiles = 4
    seen: list[float] = []
    params = build_params(
        ["the red roof"], SegmentOptions(threshold=0.4, keep="all"), AreaBox(500100, 4999500, 500400, 4999800)
    )
    answer = BackendClient(stand_in.url).segment(RasterPayload(path=geotiff), params, on_progress=seen.append)
    assert [f["properties"]["phrase"] for f in answer["features"]] == ["the red roof"]
    received = stand_in.requests[-1]
    assert received["kind"] == "path" and received["path"] == geotiff
    assert received["params"]["threshold"] == 0.4 and received["params"]["keep"] == "all"
    assert received["params"]["bbox"] == [500100, 4999500, 500400, 4999800]
    assert received["params"]["simplify"] is None  # None travels as null: the engine's default
    assert seen and seen == sorted(seen) and all(0 <= f <= 1 for f in seen)


def test_job_by_upload_sends_the_geotiff_bytes(stand_in, geotiff):
    answer = BackendClient(stand_in.url).segment(
        RasterPayload(upload_file=geotiff), build_params(["a field"], SegmentOptions())
    )
    assert stand_in.requests[-1]["kind"] == "upload"
    assert stand_in.requests[-1]["size"] == (64, 64)
    assert answer["crs"]["properties"]["name"] == "EPSG:32633"


def test_backend_error_message_is_passed_through(stand_in, geotiff):
    stand_in.behaviour.reject_phrase = "zzz"
    with pytest.raises(BackendError) as info:
        BackendClient(stand_in.url).segment(
            RasterPayload(path=geotiff), build_params(["zzz"], SegmentOptions())
        )
    assert info.value.code == "bad_phrase"
    assert info.value.message == "The phrase “zzz” has no words the model knows."


def test_unreachable_backend_is_one_clear_sentence():
    url = f"http://127.0.0.1:{_free_port()}"
    with pytest.raises(BackendUnreachable) as info:
        BackendClient(url, timeout_s=2).health()
    assert (
        info.value.message == f"The backend at {url} is not reachable (connection refused: is it running?)."
    )


def test_a_server_that_is_not_the_backend_is_named_as_such():
    """A port answering with something else (here: plain text) gives a clear message, not a JSON error."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)

    def answer_plain_text():
        conn, _ = listener.accept()
        conn.recv(4096)
        conn.sendall(b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nhello")
        conn.close()

    thread = threading.Thread(target=answer_plain_text, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{listener.getsockname()[1]}"
    with pytest.raises(BackendError) as info:
        BackendClient(url).health()
    thread.join(5)
    listener.close()
    assert info.value.code == "bad_answer"


def test_cancel_deletes_the_job_on_the_server(stand_in, geotiff):
    stand_in.behaviour.tiles = 200
    stand_in.behaviour.seconds_per_tile = 0.05
    polls = []

    def cancelled() -> bool:
        polls.append(1)
        return len(polls) > 2

    with pytest.raises(RunCancelled):
        BackendClient(stand_in.url).segment(
            RasterPayload(path=geotiff), build_params(["x"], SegmentOptions()), is_cancelled=cancelled
        )
    (job,) = stand_in.jobs.values()
    assert job.status == "cancelled"
    assert job.done < job.total


def test_lowercase_backend_messages_become_sentences(stand_in, geotiff):
    stand_in.behaviour.allow_paths = False
    stand_in.behaviour.reject_phrase = ""
    with pytest.raises(BackendError) as info:
        BackendClient(stand_in.url).segment(
            RasterPayload(path=geotiff), build_params(["x"], SegmentOptions())
        )
    assert info.value.code == "path_not_allowed"
    assert info.value.message == "This server does not read files by path."
    assert as_sentence("  that path is outside the folders this server allows ") == (
        "That path is outside the folders this server allows."
    )
    assert as_sentence("Done!") == "Done!" and as_sentence("") == ""


def test_helpers():
    assert split_phrases(" a roof \n\n a road\na roof\n") == ["a roof", "a road"]
    assert is_loopback_url("http://127.0.0.1:8000") and is_loopback_url("http://localhost")
    assert not is_loopback_url("http://gpu-server:8765")
    with pytest.raises(ValueError):
        SegmentOptions(keep="some")
    with pytest.raises(ValueError):
        RasterPayload()
