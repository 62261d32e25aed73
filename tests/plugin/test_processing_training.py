"""The Processing algorithms "Fine-tune on labelled polygons", "Resume fine-tuning" and "Evaluate on
labelled polygons" in real QGIS against the real service on loopback (tests/live_server.py): the
training and evaluation jobs are the real `rs2sam2 train` / `rs2sam2 evaluate --region` child
processes with the bundled demo model, on a small real region (tests/service/training_regions.py: a
256² GeoTIFF with 36 painted objects and their labelled polygons), a few steps each."""

from __future__ import annotations

import shutil
import socket
import threading
from pathlib import Path

import pytest
from qgis.core import QgsApplication, QgsProcessingException, QgsProcessingFeedback, QgsVectorLayer

from rs2sam2_qgis.processing.training_run import ProgressLog
from rs2sam2_qgis.training_contract import TrainingJobStatus
from tests.plugin.test_processing import QGIS_PROCESS, _qgis_process, plugin_profile  # noqa: F401
from tests.service.training_regions import region, write_labels, write_raster

FINETUNE, RESUME, EVALUATE = "rs2sam2:finetune", "rs2sam2:resumefinetune", "rs2sam2:evaluate"
SCORE_FIELDS = ["pr_50", "pr_60", "pr_70", "pr_80", "pr_90", "oiou", "miou"]


@pytest.fixture
def own_folders(tmp_path, monkeypatch):
    """The backend's training runs and the person's models in the test's folder (the service's child
    processes inherit the environment)."""
    monkeypatch.setenv("RS2SAM2_TRAINING_DIR", str(tmp_path / "training"))
    monkeypatch.setenv("RS2SAM2_MODELS", str(tmp_path / "models"))
    return tmp_path


@pytest.fixture
def backend(serve, own_folders, plugin_settings, provider):
    """The real service (segmentation by the colour stand-in; training and evaluation in real child
    processes) with the plugin's provider registered."""
    return serve()


def models_of(server) -> dict[str, dict]:
    with server.client() as client:
        return {m["name"]: m for m in client.get("/models").json()["models"]}


def jobs_of(server) -> list[dict]:
    with server.client() as client:
        return client.get("/training").json()["jobs"]


class Log(QgsProcessingFeedback):
    """A feedback that keeps what the algorithm said."""

    def __init__(self):
        super().__init__()
        self.lines: list[str] = []

    def pushInfo(self, info):  # noqa: N802 - QGIS API name
        self.lines.append(info)
        super().pushInfo(info)


LOOP_PHASES = {"preparing", "training", "validating", "saving", "stopped", "done"}  # training/progress.py


def status(state: str, phase: str, step: int = 0, loss: float | None = None, total: int = 20, **more):
    return TrainingJobStatus("j1", "train", state, phase, "m", "j1", step, total, loss, **more)


def test_progress_log_says_each_phase_once_every_tenth_step_and_the_last_one():
    log = Log()
    progress = ProgressLog(log)
    progress(status("queued", "queued", queue_position=1, message="1 job before it"))
    progress(status("queued", "queued", queue_position=1, message="1 job before it"))
    progress(status("running", "preparing"))
    for step in range(1, 21):
        progress(status("running", "training", step, loss=1.0 / step))
        progress(status("running", "training", step, loss=1.0 / step))  # polled twice: said once
    progress(status("running", "saving", 20, loss=0.05))
    progress(status("done", "done", 20, loss=0.05))
    assert log.lines == [
        "Queued: 1 job before it",
        "Phase: preparing",
        "Phase: training",
        *(f"Step {step} of 20: loss {1.0 / step:.4f}" for step in range(2, 21, 2)),
        "Phase: saving",
    ]
    assert log.progress() == 100.0


def test_progress_log_of_a_run_that_ended_between_two_polls_still_gives_its_last_loss():
    log = Log()
    progress = ProgressLog(log)
    progress(status("queued", "queued", queue_position=0, message="next"))
    progress(status("done", "done", 3, loss=0.25, total=3))
    assert log.lines == ["Queued: next", "Step 3 of 3: loss 0.2500"]


def test_following_a_job_asks_after_growing_pauses_up_to_the_poll(monkeypatch):
    """`follow`'s loop alone (the status answers stubbed; the real service follows jobs in the tests
    below): pauses from FOLLOW_POLL_FIRST_S doubling up to the poll, and every status is heard."""
    import types

    from rs2sam2_qgis.connection import training_client as module
    from rs2sam2_qgis.connection.client import BackendClient

    answers = [status("running", "training", step) for step in range(1, 8)] + [status("done", "done", 8)]
    pauses: list[float] = []
    monkeypatch.setattr(module, "time", types.SimpleNamespace(sleep=pauses.append, monotonic=lambda: 0.0))
    client = module.TrainingClient(BackendClient("http://127.0.0.1:9"))
    monkeypatch.setattr(client, "status", lambda job_id: answers.pop(0))
    heard: list[TrainingJobStatus] = []
    final = client.follow("j1", heard.append, poll_s=0.5)
    assert final.state == "done" and [s.step for s in heard] == list(range(1, 9))
    first = module.FOLLOW_POLL_FIRST_S
    assert pauses == [first, 2 * first, 4 * first, 0.5, 0.5, 0.5, 0.5]


def test_the_provider_lists_the_training_algorithms(provider):
    registry = QgsApplication.processingRegistry()
    finetune = registry.algorithmById(FINETUNE)
    assert finetune.displayName() == "Fine-tune on labelled polygons"
    names = [p.name() for p in finetune.parameterDefinitions()]
    assert names[:3] == ["INPUT", "LABELS", "NAME"]
    for name in ("START_MODEL", "PHRASE_FIELD", "MAX_STEPS", "FREEZE", "REPLAY", "SEED", "OVERWRITE"):
        assert name in names
    assert finetune.parameterDefinition("PHRASE_FIELD").defaultValue() == "phrase"
    assert finetune.parameterDefinition("REPLAY").defaultValue() is True
    assert (
        finetune.parameterDefinition("MAX_STEPS").flags()
        & finetune.parameterDefinition("MAX_STEPS").FlagOptional
    )
    assert "40 per labelled phrase" in finetune.parameterDefinition("MAX_STEPS").description()
    evaluate = registry.algorithmById(EVALUATE)
    assert evaluate.displayName() == "Evaluate on labelled polygons"
    assert [o.name() for o in evaluate.outputDefinitions()] == ["OUTPUT", "REPORT"]
    assert registry.algorithmById(RESUME) is not None


def test_finetune_registers_the_model_with_its_scores_and_writes_the_report(backend, own_folders):
    import processing

    tmp = own_folders
    raster, labels = region(tmp, crs="EPSG:4326")  # the backend reprojects the labels
    val_raster, objects = write_raster(tmp / "validation.tif", seed=1)
    val_labels = write_labels(tmp / "validation.gpkg", objects[:4])
    log = Log()
    result = processing.run(
        FINETUNE,
        {
            "INPUT": str(raster),
            "LABELS": str(labels),
            "PHRASE_FIELD": "phrase",
            "NAME": "my roofs",
            "MAX_STEPS": 3,
            "REPLAY": False,
            "VALIDATION_INPUT": str(val_raster),
            "VALIDATION_LABELS": str(val_labels),
            "BACKEND_URL": backend.url,
            "REPORT": str(tmp / "report.html"),
        },
        feedback=log,
    )
    assert result["MODEL"] == "my roofs"
    model = models_of(backend)["my roofs"]
    assert model["labels"] == 36 and model["start_model"] == "demo" and model["recipe"]["steps"] == 3
    assert model["scores"]["samples"] == 4 and model["scores"]["mIoU"] is not None
    report = Path(result["REPORT"]).read_text(encoding="utf-8")
    assert report.startswith("<!DOCTYPE html>") and "my roofs" in report
    assert "36 labels used; reprojected by the backend from EPSG:4326" in report
    assert "Validation scores" in report and "mIoU (%)" in report
    # On this machine, with a backend that reads paths: the files went as paths, nothing was uploaded.
    (job,) = jobs_of(backend)
    assert not list((tmp / "training" / job["job_id"] / "inputs").glob("*_sent.*"))
    text = "\n".join(log.lines)
    # The final status carries the last step's loss, so it is said however fast the run went; which
    # phases a 1 s poll catches depends on the machine's speed (test_progress_log_* pins that logic).
    assert "Step 3 of 3: loss" in text
    phases = [line.removeprefix("Phase: ") for line in log.lines if line.startswith("Phase: ")]
    assert phases and set(phases) <= LOOP_PHASES, phases
    assert all(this != after for this, after in zip(phases, phases[1:])), phases
    assert "4 validation labels used" in text

    # The same name again is refused before anything runs; the sentence says what to do.
    with pytest.raises(QgsProcessingException) as taken:
        processing.run(
            FINETUNE,
            {
                "INPUT": str(raster),
                "LABELS": str(labels),
                "NAME": "My Roofs",
                "MAX_STEPS": 3,
                "BACKEND_URL": backend.url,
                "REPORT": str(tmp / "never.txt"),
            },
        )
    assert str(taken.value) == (
        "You already have a model named 'my roofs': pick another name for the new model, or tick “Replace” "
        "to overwrite yours."
    )
    assert not (tmp / "never.txt").exists() and len(jobs_of(backend)) == 1


def test_evaluate_writes_a_table_of_scores_by_kind(
    serve, own_folders, plugin_settings, provider, clean_project
):
    import processing
    from qgis.core import QgsProcessingFeatureSourceDefinition

    tmp = own_folders
    (tmp / "elsewhere").mkdir()
    backend = serve(allowed_roots=(tmp / "elsewhere",))  # it may not read the raster's folder
    raster, labels = region(tmp)
    layer = QgsVectorLayer(str(labels), "labels", "ogr")
    clean_project.addMapLayer(layer)
    layer.selectByIds([f.id() for f in layer.getFeatures()][:6])  # only the selected 6 of 36 travel
    log = Log()
    result = processing.run(
        EVALUATE,
        {
            "INPUT": str(raster),
            "LABELS": QgsProcessingFeatureSourceDefinition(layer.id(), selectedFeaturesOnly=True),
            "MODEL": "demo",
            "BACKEND_URL": backend.url,
            "OUTPUT": str(tmp / "scores.gpkg"),
            "REPORT": str(tmp / "scores.txt"),
        },
        feedback=log,
    )
    assert any(line.startswith("The backend cannot read the files (") for line in log.lines)  # then uploaded
    table = QgsVectorLayer(result["OUTPUT"], "scores", "ogr")
    assert table.isValid() and not table.isSpatial()
    assert [n for n in table.fields().names() if n != "fid"] == ["kind", "model", "samples", *SCORE_FIELDS]
    rows = {f["kind"]: f for f in table.getFeatures()}
    assert list(rows)[0] == "overall" and len(rows) == 3  # overall, then the two kinds (roofs, pools)
    assert rows["overall"]["samples"] == 6 and rows["overall"]["model"] == "demo"
    assert sorted(row["samples"] for kind, row in rows.items() if kind != "overall") == [3, 3]
    for row in rows.values():
        assert all(0.0 <= row[name] <= 1.0 for name in SCORE_FIELDS)
    report = Path(result["REPORT"]).read_text(encoding="utf-8")
    assert "Scores by phrase" in report and "the red roof" in report and "6 labels used" in report


def test_cancel_stops_the_run_on_the_backend_and_it_resumes_to_the_end(backend, own_folders, plugin_settings):
    import dataclasses

    import processing

    tmp = own_folders
    # Sent as uploads (the plugin's setting): a GeoTIFF of the raster, a GeoPackage of the labels.
    dataclasses.replace(plugin_settings.load(), send_mode="upload").save()
    raster, labels = region(tmp)
    feedback = QgsProcessingFeedback()
    # Cancel as the Processing dialog's Cancel button does, once the first steps are done.
    cancelled = threading.Event()

    def cancel_after_a_step(progress):
        if progress > 0 and not cancelled.is_set():
            cancelled.set()
            feedback.cancel()

    feedback.progressChanged.connect(cancel_after_a_step)
    parameters = {
        "INPUT": str(raster),
        "LABELS": str(labels),
        "NAME": "stopped roofs",
        "MAX_STEPS": 16,
        "REPLAY": False,
        "BACKEND_URL": backend.url,
        "REPORT": str(tmp / "report.txt"),
    }
    with pytest.raises(QgsProcessingException) as stopped:
        processing.run(FINETUNE, parameters, feedback=feedback)
    (job,) = jobs_of(backend)
    assert job["state"] == "cancelled" and job["resumable"] and 1 <= job["step"] < 16
    assert str(stopped.value) == (
        f"The fine-tuning was cancelled at step {job['step']} of 16; no model was saved, and the run is "
        "kept on the backend: resume it with the Processing algorithm “Resume fine-tuning” "
        f"(rs2sam2:resumefinetune) and the run id {job['job_id']}."
    )
    assert not (tmp / "report.txt").exists() and "stopped roofs" not in models_of(backend)
    inputs = tmp / "training" / job["job_id"] / "inputs"
    assert (inputs / "labels_sent.gpkg").is_file() and (inputs / "raster.tif").is_file()

    result = processing.run(
        RESUME, {"RUN_ID": job["job_id"], "BACKEND_URL": backend.url, "REPORT": str(tmp / "resumed.txt")}
    )
    assert result["MODEL"] == "stopped roofs" and models_of(backend)["stopped roofs"]["recipe"]["steps"] == 16
    assert "Steps:" in Path(result["REPORT"]).read_text(encoding="utf-8")


def test_in_a_model_the_new_model_is_evaluated_by_name(backend, own_folders):
    """What the Modeler builds: Fine-tune, whose MODEL output names the model Evaluate scores."""
    import processing
    from qgis.core import (
        QgsProcessingModelAlgorithm,
        QgsProcessingModelChildAlgorithm,
        QgsProcessingModelChildParameterSource,
        QgsProcessingModelOutput,
        QgsProcessingModelParameter,
        QgsProcessingParameterFeatureSource,
        QgsProcessingParameterRasterLayer,
    )

    tmp = own_folders
    raster, labels = region(tmp)
    model = QgsProcessingModelAlgorithm("fine-tune and score", "tests")
    model.addModelParameter(
        QgsProcessingParameterRasterLayer("scene", "Scene"), QgsProcessingModelParameter("scene")
    )
    model.addModelParameter(
        QgsProcessingParameterFeatureSource("labels", "Labels"), QgsProcessingModelParameter("labels")
    )
    static = QgsProcessingModelChildParameterSource.fromStaticValue
    given = QgsProcessingModelChildParameterSource.fromModelParameter
    train = QgsProcessingModelChildAlgorithm(FINETUNE)
    train.setChildId("train")
    for name, source in {
        "INPUT": given("scene"),
        "LABELS": given("labels"),
        "NAME": static("modelled roofs"),
        "MAX_STEPS": static(2),
        "REPLAY": static(False),
        "BACKEND_URL": static(backend.url),
        "REPORT": static(str(tmp / "train.txt")),
    }.items():
        train.addParameterSources(name, [source])
    model.addChildAlgorithm(train)
    score = QgsProcessingModelChildAlgorithm(EVALUATE)
    score.setChildId("score")
    for name, source in {
        "INPUT": given("scene"),
        "LABELS": given("labels"),
        "MODEL": QgsProcessingModelChildParameterSource.fromChildOutput("train", "MODEL"),
        "BACKEND_URL": static(backend.url),
        "REPORT": static(str(tmp / "score.txt")),
    }.items():
        score.addParameterSources(name, [source])
    output = QgsProcessingModelOutput("scores")
    output.setChildOutputName("OUTPUT")
    score.setModelOutputs({"scores": output})
    model.addChildAlgorithm(score)
    model.updateDestinationParameters()

    result = processing.run(
        model, {"scene": str(raster), "labels": str(labels), "score:scores": str(tmp / "scores.gpkg")}
    )
    rows = list(QgsVectorLayer(result["score:scores"], "scores", "ogr").getFeatures())
    assert rows[0]["kind"] == "overall" and rows[0]["samples"] == 36
    assert {row["model"] for row in rows} == {"modelled roofs"}


BAD_INPUTS = {
    "blank-phrases": "No usable labelled feature is left in the labels (dropped: 36 without a phrase).",
    "too-few-labels": (
        "Only 10 usable labelled features are left in the labels; the fine-tuning recipe needs at least 30"
    ),
    "none-selected": "The layer “labels” has no features to learn from (or none is selected).",
    "bad-name": "The model name 'a/b' may hold only letters, digits, spaces, '.', '-' and '_'",
    "half-a-validation-pair": "Give both a validation raster and validation polygons, or neither.",
    "no-backend": "The backend at {url} is not reachable (connection refused: is it running?). Start it with",
}


@pytest.mark.parametrize(
    ("case", "sentence"),
    list(BAD_INPUTS.items()),
    ids=[
        "blank-phrases",
        "too-few-labels",
        "none-selected",
        "bad-name",
        "half-a-validation-pair",
        "no-backend",
    ],
)
def test_bad_inputs_stop_with_one_sentence(backend, own_folders, case, sentence):
    import processing
    from qgis.core import QgsProcessingFeatureSourceDefinition, QgsProject

    tmp = own_folders
    raster, objects = write_raster(tmp / "region.tif")
    labels: object = str(write_labels(tmp / "labels.gpkg", objects))
    name, url = "my roofs", backend.url
    extra = {}
    if case == "blank-phrases":
        labels = str(write_labels(tmp / "blank.gpkg", [(g, "  ") for g, _ in objects]))
    elif case == "too-few-labels":
        labels = str(write_labels(tmp / "few.gpkg", objects[:10]))
    elif case == "none-selected":
        layer = QgsVectorLayer(labels, "labels", "ogr")  # in the project, nothing selected
        QgsProject.instance().addMapLayer(layer)
        labels = QgsProcessingFeatureSourceDefinition(layer.id(), selectedFeaturesOnly=True)
    elif case == "bad-name":
        name = "a/b"
    elif case == "half-a-validation-pair":
        extra = {"VALIDATION_INPUT": str(raster)}
    else:
        with socket.socket() as free:
            free.bind(("127.0.0.1", 0))
            url = f"http://127.0.0.1:{free.getsockname()[1]}"
    try:
        with pytest.raises(QgsProcessingException) as refused:
            processing.run(
                FINETUNE,
                {
                    "INPUT": str(raster),
                    "LABELS": labels,
                    "NAME": name,
                    "MAX_STEPS": 2,
                    "BACKEND_URL": url,
                    "REPORT": str(tmp / "never.txt"),
                    **extra,
                },
            )
    finally:
        QgsProject.instance().removeAllMapLayers()
    assert str(refused.value).startswith(sentence.format(url=url))
    assert not (tmp / "never.txt").exists() and jobs_of(backend) == []


def test_a_backend_gone_mid_run_leaves_it_interrupted_and_it_resumes_on_the_next_backend(
    serve, own_folders, plugin_settings, provider
):
    import processing

    tmp = own_folders
    raster, labels = region(tmp)
    first = serve()

    def stop_the_backend_once_it_trains() -> None:
        if wait_for(lambda: any(job["step"] >= 1 for job in jobs_of(first)), 120):
            first.stop()  # the service stops: the run saves its state at its next step

    stopper = threading.Thread(target=stop_the_backend_once_it_trains, daemon=True)
    stopper.start()
    with pytest.raises(QgsProcessingException) as lost:
        processing.run(
            FINETUNE,
            {
                "INPUT": str(raster),
                "LABELS": str(labels),
                "NAME": "roofs after a restart",
                "MAX_STEPS": 16,
                "REPLAY": False,
                "BACKEND_URL": first.url,
                "REPORT": str(tmp / "never.txt"),
            },
        )
    stopper.join(60)
    (job_id,) = [folder.name for folder in (tmp / "training").iterdir()]
    assert str(lost.value) == (
        f"The backend at {first.url} stopped answering during the run (connection refused); the run {job_id} "
        "is interrupted, and can be resumed once the backend is back: resume it with the Processing "
        f"algorithm “Resume fine-tuning” (rs2sam2:resumefinetune) and the run id {job_id}."
    )
    assert not (tmp / "never.txt").exists()

    second = serve()  # the backend is back (another port), with the same training folder
    (job,) = jobs_of(second)
    assert job["state"] == "interrupted" and job["resumable"]
    result = processing.run(
        RESUME, {"RUN_ID": job_id, "BACKEND_URL": second.url, "REPORT": str(tmp / "resumed.html")}
    )
    assert result["MODEL"] == "roofs after a restart" and "roofs after a restart" in models_of(second)


def wait_for(condition, timeout_s: float) -> bool:
    """Poll `condition` from a helper thread (the main thread is inside processing.run)."""
    import time

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if condition():
                return True
        except Exception:  # noqa: BLE001 - the server may not answer yet
            pass
        time.sleep(0.2)
    return False


@pytest.mark.slow
@pytest.mark.skipif(shutil.which(QGIS_PROCESS) is None, reason="QGIS's qgis_process is not installed")
def test_qgis_process_fine_tunes_with_the_installed_plugin(plugin_profile, backend, own_folders):  # noqa: F811
    tmp = own_folders
    raster, labels = region(tmp)
    enabled = _qgis_process(plugin_profile, "plugins", "enable", "rs2sam2_qgis")
    assert enabled.returncode == 0, enabled.stdout + enabled.stderr
    run = _qgis_process(
        plugin_profile,
        "run",
        FINETUNE,
        "--",
        f"INPUT={raster}",
        f"LABELS={labels}",
        "PHRASE_FIELD=phrase",
        "NAME=cli roofs",
        "MAX_STEPS=2",
        "REPLAY=false",
        f"BACKEND_URL={backend.url}",
        f"REPORT={tmp / 'cli-report.txt'}",
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert "cli roofs" in run.stdout
    assert models_of(backend)["cli roofs"]["recipe"]["steps"] == 2
    assert "36 labels used" in (tmp / "cli-report.txt").read_text(encoding="utf-8")
