"""The training half of the plugin↔backend contract (rs2sam2_qgis/training_contract.py): standard library
only, each option in step with the `rs2sam2 train` setting it becomes, the metric keys those of
training/metrics.py, and every wire type read back as it was written."""

from __future__ import annotations

import argparse
import ast
import dataclasses
import sys
from pathlib import Path

from rs2sam2_qgis import training_contract as tc

REPO = Path(__file__).resolve().parents[1]


def test_standard_library_and_the_plugins_contract_only():
    tree = ast.parse((REPO / "rs2sam2_qgis" / "training_contract.py").read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                assert alias.name.split(".")[0] in sys.stdlib_module_names, alias.name
        elif isinstance(node, ast.ImportFrom):
            plugin_contract = node.level == 1 and node.module == "contract"
            assert plugin_contract or node.module.split(".")[0] in sys.stdlib_module_names, node.module


def test_each_option_is_the_train_setting_it_becomes():
    from training.cli_train import add_arguments
    from training.config import FREEZE_CHOICES, TrainConfig
    from training.data.region import RegionConfig

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    flags = {flag for action in parser._actions for flag in action.option_strings}
    options = tc.TRAINING_OPTION_BY_NAME
    for option in tc.TRAINING_OPTIONS:
        assert not option.train_flag or option.train_flag in flags, option.name
        assert option.default is None or option.problem(option.default) is None, option.name
    defaults = TrainConfig(data=("region:a,b",), out="x")
    assert options["seed"].default == defaults.seed
    assert options["freeze"].default == defaults.freeze and options["freeze"].choice_values == FREEZE_CHOICES
    assert options["max_steps"].default is None and defaults.max_steps is None  # the recipe chooses
    assert options["replay"].default is (defaults.replay_share > 0)
    assert options["phrase_field"].default == RegionConfig().text_column
    assert tc.EVALUATION_OPTIONS[1] is options["phrase_field"]


def test_the_labels_minimum_is_the_readmes_advice():
    readme = (REPO / "training" / "README.md").read_text(encoding="utf-8")
    assert f"Label at least ~{tc.MIN_TRAINING_LABELS}" in readme


def test_score_keys_are_the_metrics():
    import numpy as np

    from training.metrics import SegmentationMetrics

    summary = SegmentationMetrics([1], [2]).summary()
    assert set(tc.SCORE_KEYS) == set(summary) - {"samples"}
    assert tc.Scores.from_json(summary).to_json() == {k: summary[k] for k in (*tc.SCORE_KEYS, "samples")}
    assert np.isclose(summary["mIoU"], 0.5)


def test_the_backends_own_model_names_are_reserved():
    from backend.weights.models import list_models

    own = {status.name for status in list_models() if status.source != "person"}
    assert own <= tc.RESERVED_MODEL_NAMES | {"test"}
    assert {"test"} <= tc.RESERVED_MODEL_NAMES  # the preset of the bundled model


def test_params_are_checked_and_resolved():
    assert tc.params_problems({"name": "roofs 2026", "max_steps": 10, "freeze": "encoders"}) == []
    codes = [code for code, _ in tc.params_problems({"name": "a", "epochs": 3})]
    assert codes == ["bad_params"]
    codes = [code for code, _ in tc.params_problems({"name": "a", "max_steps": 0, "replay": "yes"})]
    assert codes == ["bad_option", "bad_option"]
    assert [c for c, _ in tc.params_problems({"name": "a/b"})] == ["bad_model_name"]
    assert [c for c, _ in tc.params_problems({})] == ["bad_model_name"]
    resolved = tc.resolved_params({"name": "a", "seed": None})
    assert resolved == {option.name: option.default for option in tc.TRAINING_OPTIONS} | {"name": "a"}
    assert tc.resolved_params({}, tc.EVALUATION_OPTIONS) == {"model": None, "phrase_field": "phrase"}


def test_every_answer_reads_back_as_written():
    scores = tc.Scores({key: 0.5 for key in tc.SCORE_KEYS}, 12)
    labels = tc.LabelReport(33, outside=1, empty=2, no_phrase=3, reprojected_from="EPSG:4326")
    answers = [
        tc.TrainingJobStatus(
            "j",
            "train",
            "running",
            "training",
            "roofs",
            "j",
            3,
            30,
            0.25,
            scores,
            "training",
            True,
            None,
            tc.ErrorDetail("disk_full", "full"),
            "2026-12-07T20:00:00Z",
        ),
        tc.EvaluationResult("roofs", scores, {"building": scores}, {"the red roof": scores}, labels),
        tc.PersonModel("roofs", "2026-12-07T20:00:00Z", "demo", 36, scores, {"steps": 30}, 1000),
    ]
    for answer in answers:
        assert type(answer).from_json(tc.to_wire(answer)) == answer
    created = tc.to_wire(tc.TrainingJobCreated("j", "train", "queued", "/api/v1/training/j", 1, labels))
    assert tc.LabelReport.from_json(created["labels"]) == labels
    assert [f.name for f in dataclasses.fields(tc.TrainingJobList)] == ["jobs", "running"]
    assert set(tc.RESUMABLE_STATES) <= set(tc.FINAL_TRAINING_STATES) <= set(tc.TRAINING_STATES)


def test_the_api_document_shows_the_training_params():
    document = (REPO / "docs" / "service-api.md").read_text(encoding="utf-8")
    assert tc.training_options_table() in document  # scripts/write_api_docs.py writes it
