"""Every place that shows a segment option is derived from rs2sam2_qgis.contract.OPTIONS: these tests
fail on any drift (a flag, a schema field, a Processing parameter, a panel widget or the API document
that disagrees with the contract), and check the contract's own rules."""

from __future__ import annotations

import argparse
import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest

from rs2sam2_qgis import contract
from rs2sam2_qgis.contract import CLI, OPTIONS, PANEL, PROCESSING, SERVICE, option_problems, options_on

REPO = Path(__file__).resolve().parents[1]


def test_every_option_reaches_the_engine_from_the_cli_and_the_service():
    for option in OPTIONS:
        assert {CLI, SERVICE} <= option.surfaces, option.name
        assert option.default is None or option.problem(option.default) is None, option.name


def test_the_cli_flags_are_the_contract():
    from backend.engine.cli import add_arguments

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    actions = {action.dest: action for action in parser._actions}
    for option in options_on(CLI):
        action = actions[option.name]
        assert option.flag in action.option_strings
        assert action.default == option.default_for(CLI)
        assert (tuple(action.choices) if action.choices else ()) == option.choice_values
        assert option.help in action.help


def test_the_engine_and_plugin_options_are_the_contract():
    from backend.engine.options import EngineOptions
    from rs2sam2_qgis.connection.request import SegmentOptions as PluginOptions

    engine = {f.name: f for f in dataclasses.fields(EngineOptions)}
    for option in OPTIONS:
        assert getattr(EngineOptions(), option.name) == option.default_for(CLI)
        assert option.name in engine
    plugin = {f.name for f in dataclasses.fields(PluginOptions)}
    assert plugin == {option.name for option in options_on(PROCESSING)}
    for option in options_on(PROCESSING):
        assert getattr(PluginOptions(), option.name) == option.default
    with pytest.raises(ValueError):
        PluginOptions(keep="some")


def test_the_service_schema_is_the_contract():
    from backend.engine.options import EngineOptions
    from backend.service.schemas import SegmentParams

    fields = SegmentParams.model_fields
    names = set(fields) - {"phrases", "bbox", "bbox_crs"}
    assert names == {option.name for option in options_on(SERVICE)}
    for option in options_on(SERVICE):
        assert fields[option.name].default == option.default
        assert fields[option.name].description == option.describe(SERVICE)
    params = SegmentParams.model_validate_json('{"phrases": ["x"]}')
    assert params.to_options() == EngineOptions(keep=contract.OPTION_BY_NAME["keep"].default)


def test_the_plugin_params_round_trip_through_the_service_schema():
    from backend.service.schemas import SegmentParams
    from rs2sam2_qgis.connection.request import AreaBox, SegmentOptions, build_params

    params = build_params(
        ["a"], SegmentOptions(threshold=0.3, tile_size=256), AreaBox(0, 0, 10, 10), "EPSG:4326"
    )
    parsed = SegmentParams.model_validate(params).to_options()
    assert parsed.threshold == 0.3 and parsed.tile_size == 256 and parsed.keep == "best"
    assert parsed.area.bounds == (0, 0, 10, 10) and parsed.area.crs == "EPSG:4326"


def test_the_api_document_carries_the_generated_table():
    check = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "write_api_docs.py"), "--check"],
        capture_output=True,
        text=True,
    )
    assert check.returncode == 0, check.stderr
    assert contract.options_markdown_table() in (REPO / "docs" / "service-api.md").read_text(encoding="utf-8")


@pytest.mark.parametrize(
    "values, code",
    [
        ({"threshold": 1.0}, "bad_threshold"),
        ({"threshold": -0.1}, "bad_threshold"),
        ({"keep": "most"}, "bad_keep"),
        ({"context": "scene"}, "bad_context"),
        ({"simplify": -1.0}, "bad_simplify"),
        ({"min_area": -1.0}, "bad_min_area"),
        ({"tile_size": 15}, "bad_tiling"),
        ({"tile_size": 64.5}, "bad_tiling"),
        ({"tile_size": 64, "overlap": 33}, "bad_tiling"),
        ({"overlap": -1}, "bad_tiling"),
        ({"gsd": 0.0}, "bad_gsd"),
        ({"gsd": float("nan")}, "bad_gsd"),
        ({"bands": [0, 1, 2]}, "bad_bands"),
    ],
)
def test_values_out_of_bounds_get_their_code(values, code):
    problems = option_problems(values)
    assert problems and problems[0][0] == code


def test_the_context_follows_keep_unless_given():
    assert contract.resolve_defaults({"keep": "best", "context": None})["context"] == "view"
    assert contract.resolve_defaults({"keep": "all"})["context"] == "tiles"
    assert contract.resolve_defaults({"keep": "all", "context": "view"})["context"] == "view"
    context = contract.OPTION_BY_NAME["context"]
    assert context.describe_default() == "view when keep is best, tiles when keep is all"
    assert (
        context.default_for(CLI) is None
        and context.default_choice_label == "by keep: best → view, all → tiles"
    )


def test_values_within_bounds_pass():
    assert (
        option_problems({"threshold": 0.0, "tile_size": 64, "overlap": 32, "gsd": 0.3, "bands": [3, 2, 1]})
        == []
    )


def test_the_contract_needs_only_the_standard_library():
    code = (
        "import sys; import rs2sam2_qgis.contract; "
        "bad = [m for m in ('qgis', 'torch', 'numpy', 'pydantic', 'backend') if m in sys.modules]; "
        "print(bad); sys.exit(1 if bad else 0)"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


def test_processing_parameters_are_the_contract(qgis_app):
    from qgis.core import QgsProcessingParameterEnum

    from rs2sam2_qgis.panel.option_forms import parameter_name
    from rs2sam2_qgis.processing.segment_algorithm import SegmentByTextAlgorithm

    algorithm = SegmentByTextAlgorithm()
    algorithm.initAlgorithm()
    for option in options_on(PROCESSING):
        parameter = algorithm.parameterDefinition(parameter_name(option))
        assert parameter is not None, option.name
        if option.kind == "choice":
            assert isinstance(parameter, QgsProcessingParameterEnum)
            entries = ([option.default_choice_label] if option.default is None else []) + [
                label for _, label in option.choices
            ]
            assert parameter.options() == entries
            assert entries[parameter.defaultValue()] == (
                option.default_choice_label
                if option.default is None
                else dict(option.choices)[option.default]
            )
            continue
        assert parameter.defaultValue() == option.default
        assert bool(parameter.flags() & parameter.FlagOptional) == (option.default is None)
        if option.minimum is not None:
            assert parameter.minimum() == option.minimum
        if option.maximum is not None:
            assert parameter.maximum() == option.maximum


def test_panel_widgets_are_the_contract(qgis_iface):
    from rs2sam2_qgis.connection.request import SegmentOptions
    from rs2sam2_qgis.panel.dock import SegmentDock

    dock = SegmentDock(qgis_iface)
    try:
        assert set(dock.option_inputs.widgets) == {option.name for option in options_on(PANEL)}
        assert dock.options() == SegmentOptions()
    finally:
        dock.shutdown()
        dock.deleteLater()


def test_health_reads_precision_and_threads_and_stays_lenient_with_older_servers():
    new = contract.Health.from_json(
        {
            "version": "0.2",
            "model": {
                "id": "m",
                "preset": "tiny",
                "input_size": 1024,
                "device": "cpu",
                "precision": "bf16",
                "threads": 4,
            },
            "busy": False,
            "allow_paths": True,
            "max_upload_mb": 1024,
        }
    )
    assert (new.model.precision, new.model.threads) == ("bf16", 4)
    old = contract.Health.from_json(
        {"version": "0.1", "model": {"id": "m", "preset": None, "input_size": 128, "device": "cpu"}}
    )
    assert (old.model.precision, old.model.threads, old.model_id) == ("", 0, "m")
