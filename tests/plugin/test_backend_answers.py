"""What the plugin makes of the backend's answers that are not a result, against the real service app
on loopback (tests/live_server.py): a busy backend's 429 and its Retry-After, a backend shutting down
(503 `shutting_down`), out of memory (503 `out_of_memory`, the CPU allocator failing for real), a job
stopped at the time limit (400 `time_limit`), and every answer meaning "the backend cannot reach that
path", after which the raster goes as an upload."""

from __future__ import annotations

import dataclasses
import threading
import time

import pytest

from rs2sam2_qgis.connection.client import BackendClient, BackendError, RasterPayload
from rs2sam2_qgis.connection.request import SegmentOptions, build_params
from tests.engine.standin import ColourModel, HeldModel

HOLD_S = 60  # the longest any test waits for the held model or a job


class GatedModel(ColourModel):
    """The colour model; while its gate is closed every call waits (at most HOLD_S) until it opens."""

    def __init__(self):
        super().__init__(64, "gated-standin")
        self.gate = threading.Event()
        self.gate.set()
        self.entered = threading.Event()

    def predict(self, image, phrases):
        self.entered.set()
        if not self.gate.wait(HOLD_S):
            raise TimeoutError("the test never opened the gate")
        return super().predict(image, phrases)


class HungryModel(ColourModel):
    """Every call asks torch's CPU allocator for 4 EiB, which it refuses on any machine."""

    def predict(self, image, phrases):
        import torch

        torch.empty(2**62, dtype=torch.uint8)
        return super().predict(image, phrases)


def _params():
    return build_params(["red"], SegmentOptions())


def _in_thread(call):
    """Run `call` in a thread; returns a function that joins it and gives its result or exception."""
    outcome: dict = {}

    def run():
        try:
            outcome["value"] = call()
        except BaseException as exc:  # noqa: BLE001 - handed back to the test
            outcome["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()

    def join():
        thread.join(HOLD_S)
        assert not thread.is_alive(), "the client call did not return"
        return outcome

    return join


def test_a_busy_backend_is_asked_again_after_its_retry_after(serve, geotiff):
    model = GatedModel()
    server = serve(model, max_jobs_per_client=1)
    client = BackendClient(server.url)
    payload = RasterPayload(path=geotiff)
    assert client.segment(payload, _params())["features"]  # one run done: Retry-After is its run time
    model.gate.clear()
    held = client.submit_job(payload, _params())  # the only job this client may have
    assert model.entered.wait(HOLD_S)
    submissions: list[tuple[float, float | None]] = []  # (when, the Retry-After it was answered with)
    real_submit = client.submit_job

    def spied_submit(*args):
        try:
            job = real_submit(*args)
        except BackendError as exc:
            submissions.append((time.monotonic(), exc.retry_after_s))
            raise
        submissions.append((time.monotonic(), None))
        return job

    client.submit_job = spied_submit
    waits: list[str] = []

    def on_wait(message: str) -> None:
        waits.append(message)
        threading.Timer(0.1, model.gate.set).start()  # the held job finishes while the client waits

    answer = client.segment(payload, _params(), on_wait=on_wait)
    assert answer["features"]
    statuses = [r.status for r in server.requests if r.endpoint == "/jobs"]
    assert statuses == [202, 202, 429, 202]
    (refused_at, retry_after), (accepted_at, _) = submissions
    assert retry_after is not None and retry_after >= 1
    assert accepted_at - refused_at >= retry_after  # it did not ask again before the time it was given
    (message,) = waits
    assert message.startswith("The backend is busy (You already have 1 jobs waiting or running")
    assert message.endswith(f"asking again in {retry_after:.0f} s.")
    assert server.job(held)["status"] == "done"


def test_a_backend_busy_for_longer_than_the_client_waits_is_one_sentence(serve, geotiff):
    model = HeldModel()
    server = serve(model, max_jobs_per_client=1)
    client = BackendClient(server.url, max_busy_wait_s=0)
    client.submit_job(RasterPayload(path=geotiff), _params())
    assert model.entered.wait(HOLD_S)
    with pytest.raises(BackendError) as info:
        client.segment(RasterPayload(path=geotiff), _params())
    model.release()
    assert (info.value.status, info.value.code) == (429, "too_many_jobs")
    assert info.value.retry_after_s is not None and info.value.retry_after_s >= 1
    assert info.value.message == (
        f"The backend at {server.url} is still busy with other runs after 0 s of waiting (You already have "
        f"1 jobs waiting or running on this server, its limit; try again in "
        f"{info.value.retry_after_s:.0f} s); try again later."
    )
    assert [r.status for r in server.requests] == [202, 429]  # asked once, as told


def test_a_backend_shutting_down_during_the_run_is_said_in_words(serve, geotiff):
    model = HeldModel()
    server = serve(model)
    client = BackendClient(server.url)
    join = _in_thread(lambda: client.segment(RasterPayload(path=geotiff), _params()))
    assert model.entered.wait(HOLD_S)
    server.app.state.service.jobs.shutdown()  # what the server does on SIGTERM, while it still answers
    model.release()
    error = join()["error"]
    expected = (
        f"The backend at {server.url} is shutting down, so the run was not done and no result came back; "
        "start the backend again (or wait until it is back) and run again."
    )
    assert isinstance(error, BackendError) and (error.status, error.code) == (503, "shutting_down")
    assert error.message == expected
    with pytest.raises(BackendError) as info:  # and a run asked for now is refused at once, the same way
        client.segment(RasterPayload(path=geotiff), _params())
    assert (info.value.status, info.value.code, info.value.message) == (503, "shutting_down", expected)


def test_a_backend_out_of_memory_is_said_in_words(serve, geotiff):
    server = serve(HungryModel())
    with pytest.raises(BackendError) as info:
        BackendClient(server.url).segment(RasterPayload(path=geotiff), _params())
    assert (info.value.status, info.value.code) == (503, "out_of_memory")
    assert info.value.message == (
        "The backend ran out of memory: the model ran out of memory on a 64×64 tile even one phrase at a "
        "time; use a smaller tile size."
    )


def test_a_run_stopped_at_the_time_limit_is_said_in_words(serve, geotiff):
    model = HeldModel()
    server = serve(model, job_time_limit_s=60)
    jobs = server.app.state.service.jobs
    now = [1000.0]
    jobs.clock = lambda: now[0]  # the test moves the server's time on; nothing waits for the wall clock
    client = BackendClient(server.url)
    params = build_params(["red"], SegmentOptions(tile_size=16, overlap=0, context="tiles"))  # 16 tiles
    join = _in_thread(lambda: client.segment(RasterPayload(path=geotiff), params))
    assert model.entered.wait(HOLD_S)
    now[0] += 61
    model.release()
    error = join()["error"]
    assert isinstance(error, BackendError) and (error.status, error.code) == (400, "time_limit")
    assert error.message.startswith(
        "The run was stopped at the backend's time limit: the run took longer than this server's limit of "
        "60 s per job and was stopped after 1 of 16 steps; choose a smaller area"
    )


@pytest.mark.parametrize(
    "where,status,code",
    [
        ("missing", 404, "not_found"),  # the backend's disk has no such file (a container, another mount)
        ("outside", 403, "path_not_allowed"),  # a folder the backend may not read
        ("relative", 400, "bad_path"),
    ],
)
def test_every_answer_that_the_backend_cannot_reach_the_path_falls_back_to_an_upload(
    serve, geotiff, tmp_path, qgis_app, where, status, code
):
    from qgis.core import QgsProject, QgsRasterLayer

    from rs2sam2_qgis.connection.runner import SegmentJob, run_segmentation
    from rs2sam2_qgis.layers.raster_source import plan_raster

    server = serve(allowed_roots=(tmp_path / "shared",))
    (tmp_path / "shared").mkdir()
    layer = QgsRasterLayer(geotiff, "scene")
    assert layer.isValid()
    plan = plan_raster(layer, None, QgsProject.instance().transformContext())
    path = {
        "missing": str(tmp_path / "shared" / "scene.tif"),  # allowed, but not on the backend's disk
        "outside": geotiff,
        "relative": "scene.tif",
    }[where]
    job = SegmentJob(["a red roof"], SegmentOptions(), dataclasses.replace(plan, file_path=path))
    logged: list[str] = []
    outcome = run_segmentation(BackendClient(server.url), job, lambda: False, lambda f: None, logged.append)
    assert [(r.kind, r.status) for r in server.requests] == [("path", status), ("upload", 202)]
    assert server.requests[0].answer_json["error"]["code"] == code
    assert outcome.sent_as == "upload" and len(outcome.collection["features"]) == 1
    assert any("uploading the area instead" in line for line in logged)
    # Asked to send paths only, the same answer is the user's to see.
    with pytest.raises(BackendError) as info:
        run_segmentation(
            BackendClient(server.url),
            dataclasses.replace(job, send_mode="path"),
            lambda: False,
            lambda f: None,
            logged.append,
        )
    assert (info.value.status, info.value.code) == (status, code)
