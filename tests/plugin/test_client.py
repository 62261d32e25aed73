"""The backend client over real HTTP on 127.0.0.1, against the real service app (stand-in model)."""

from __future__ import annotations

import socket
import threading

import pytest
import shapely

from rs2sam2_qgis.connection.client import (
    BackendClient,
    BackendError,
    BackendUnreachable,
    RasterPayload,
    RunCancelled,
    as_sentence,
    is_loopback_url,
)
from rs2sam2_qgis.connection.request import AreaBox, SegmentOptions, build_params, split_phrases
from tests.engine.standin import HeldModel
from tests.live_server import wait_until
from tests.plugin.conftest import MAX_UPLOAD_MB, RED_SQUARE, STANDIN_MODEL_ID, pixel_rect


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_health_is_parsed(server):
    health = BackendClient(server.url).health()
    assert health.model_id == STANDIN_MODEL_ID
    assert health.device == "cpu" and health.input_size == 64 and health.busy is False
    assert health.allow_paths is True
    assert health.max_upload_mb == MAX_UPLOAD_MB


def test_token_travels_as_bearer_and_a_wrong_one_is_explained(serve):
    server = serve(token="s3cret")
    assert BackendClient(server.url, token="s3cret").health().model_id == STANDIN_MODEL_ID
    with pytest.raises(BackendError) as info:
        BackendClient(server.url, token="wrong").health()
    assert (info.value.status, info.value.code) == (401, "unauthorized")
    assert info.value.message == "A valid bearer token is required."
    with pytest.raises(BackendError) as info:
        BackendClient(server.url).health()
    assert info.value.message == "This server requires a bearer token."


def test_job_by_path_returns_features_and_reports_progress(server, geotiff):
    seen: list[float] = []
    area = AreaBox(500100, 4999500, 500400, 4999800)
    params = build_params(["the red roof"], SegmentOptions(threshold=0.4, keep="all", tile_size=16), area)
    answer = BackendClient(server.url).segment(RasterPayload(path=geotiff), params, on_progress=seen.append)
    (feature,) = answer["features"]
    assert feature["properties"]["phrase"] == "the red roof"
    # The red square, cut to the area.
    xmin, ymin, xmax, ymax = pixel_rect(RED_SQUARE)
    box = shapely.geometry.shape(feature["geometry"]).bounds
    assert box == pytest.approx((xmin, ymin, min(xmax, area.xmax), min(ymax, area.ymax)), abs=1e-6)
    (received,) = server.requests
    assert received.kind == "path" and received.path == geotiff and received.status == 202
    assert received.params["threshold"] == 0.4 and received.params["keep"] == "all"
    assert received.params["bbox"] == [500100, 4999500, 500400, 4999800]
    assert received.params["simplify"] is None  # None travels as null: the engine's default
    assert seen and seen == sorted(seen) and all(0 <= f <= 1 for f in seen) and seen[-1] == 1


def test_job_by_upload_sends_the_geotiff_bytes(server, geotiff):
    answer = BackendClient(server.url).segment(
        RasterPayload(upload_file=geotiff, upload_name="mine.tif"),
        build_params(["a red field"], SegmentOptions()),
    )
    (received,) = server.requests
    assert received.kind == "upload" and received.raster_filename == "mine.tif"
    assert received.raster["size"] == (64, 64)
    assert answer["crs"]["properties"]["name"] == "EPSG:32633"
    assert [f["properties"]["source"] for f in answer["features"]] == ["mine.tif"]


@pytest.mark.parametrize(
    "phrases,area,code,message",
    [
        (["x" * 501], None, "phrase_too_long", "Phrase 1 is longer than 500 characters."),
        ([" "], None, "empty_phrase", "Phrase 1 is empty."),
        ([], None, "empty_phrase", "Give at least one phrase."),
        (["a road"], AreaBox(600000, 4000000, 600100, 4000100), "bad_area", None),
    ],
)
def test_backend_error_message_is_passed_through(server, geotiff, phrases, area, code, message):
    with pytest.raises(BackendError) as info:
        BackendClient(server.url).segment(
            RasterPayload(path=geotiff), build_params(phrases, SegmentOptions(), area)
        )
    assert (info.value.status, info.value.code) == (400, code)
    if message is not None:
        assert info.value.message == message
    assert info.value.message.endswith(".") and info.value.message[0].isupper()


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


def test_cancel_deletes_the_job_on_the_server(serve, geotiff):
    model = HeldModel()
    server = serve(model)

    def cancelled() -> bool:
        return model.entered.is_set()  # as soon as the job is running (held in its first tile)

    with pytest.raises(RunCancelled):
        BackendClient(server.url).segment(
            RasterPayload(path=geotiff),
            build_params(["red"], SegmentOptions(tile_size=16, context="tiles")),  # 16 tiles, not one view
            is_cancelled=cancelled,
        )
    (job_id,) = server.job_ids
    assert server.job(job_id)["status"] == "cancelled"  # the DELETE reached the server
    model.release()
    with server.client() as client:
        wait_until(lambda: not client.get("/health").json()["busy"], what="the worker to stop")
    assert (
        model.started == 1
        and server.job(job_id)["progress"]["done"] < server.job(job_id)["progress"]["total"]
    )


def test_the_job_is_asked_after_growing_pauses_so_a_quick_answer_is_not_held_back(
    serve, geotiff, monkeypatch
):
    """The pauses between status polls double from JOB_POLL_FIRST_S up to JOB_POLL_INTERVAL_S (the
    module's clock replaced by one that records them; the model held until the sixth pause)."""
    import time as real_time
    import types

    from rs2sam2_qgis.connection import client as client_module

    model = HeldModel()
    server = serve(model)
    pauses: list[float] = []

    def sleep(seconds: float) -> None:
        pauses.append(seconds)
        if len(pauses) == 6:
            model.release()
        real_time.sleep(seconds)

    monkeypatch.setattr(
        client_module, "time", types.SimpleNamespace(sleep=sleep, monotonic=real_time.monotonic)
    )
    answer = BackendClient(server.url).segment(
        RasterPayload(path=geotiff), build_params(["red"], SegmentOptions())
    )
    assert answer["features"]
    first, most = client_module.JOB_POLL_FIRST_S, client_module.JOB_POLL_INTERVAL_S
    assert pauses[:6] == [first, 2 * first, 4 * first, 8 * first, most, most]
    assert all(pause == most for pause in pauses[6:])


def test_how_a_dead_backend_was_met_is_said_plainly():
    from rs2sam2_qgis.connection.client import BackendLost, _reason

    assert _reason(ConnectionRefusedError(111, "Connection refused")) == "connection refused: is it running?"
    assert _reason(ConnectionResetError(104, "Connection reset by peer")) == "connection reset"
    reset = BackendLost("http://127.0.0.1:1", _reason(ConnectionResetError(104, "Connection reset by peer")))
    assert str(reset) == (
        "The backend at http://127.0.0.1:1 stopped answering during the run (connection reset); "
        "no result came back."
    )


def test_a_cancel_after_the_job_finished_is_still_a_cancel(server, geotiff):
    """The backend says 409 `already_finished`; the client keeps nothing and reports the cancel."""
    client = BackendClient(server.url)

    def finished_then_cancelled() -> bool:
        (job_id,) = server.job_ids
        wait_until(lambda: server.job(job_id)["status"] == "done", what="the job to end")
        return True

    with pytest.raises(RunCancelled):
        client.segment(
            RasterPayload(path=geotiff),
            build_params(["red"], SegmentOptions()),
            is_cancelled=finished_then_cancelled,
        )
    (job_id,) = server.job_ids
    with pytest.raises(BackendError) as info:
        client.cancel_job(job_id)
    assert (info.value.status, info.value.code) == (409, "already_finished")


def test_an_unknown_job_is_named_as_such(server):
    with pytest.raises(BackendError) as info:
        BackendClient(server.url).job_status("nope")
    assert (info.value.status, info.value.code) == (404, "unknown_job")
    assert info.value.message == "There is no job 'nope' on this server."


def test_lowercase_backend_messages_become_sentences(serve, geotiff, tmp_path):
    without_paths = serve(allowed_roots=())
    with pytest.raises(BackendError) as info:
        BackendClient(without_paths.url).segment(
            RasterPayload(path=geotiff), build_params(["x"], SegmentOptions())
        )
    assert (info.value.status, info.value.code) == (403, "paths_not_allowed")
    assert info.value.message == "This server does not accept server-side paths; upload the raster."
    elsewhere = serve(allowed_roots=(tmp_path / "elsewhere",))
    with pytest.raises(BackendError) as info:
        BackendClient(elsewhere.url).segment(
            RasterPayload(path=geotiff), build_params(["x"], SegmentOptions())
        )
    assert (info.value.status, info.value.code) == (403, "path_not_allowed")
    assert info.value.message == "That path is outside the folders this server allows."
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
