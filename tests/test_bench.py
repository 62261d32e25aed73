"""Benchmarks: the report lands in its own section of the Markdown file, and a real (tiny) training
throughput run produces its table. Times are not asserted: speed is measured, not tested."""

from __future__ import annotations

import pytest

from backend.cli import main as rs2sam2
from backend.model.precision import cpu_has_native_bf16
from bench.record import record_section


def test_record_section_rewrites_only_its_own_section(tmp_path):
    path = tmp_path / "benchmarks.md"
    path.write_text("# Benchmarks\n\n## Model\n\nold model table\n\n## Training\n\nold training table\n")
    record_section("Model", "| new | table |", path)
    text = path.read_text()
    assert "old model table" not in text and "| new | table |" in text
    assert "old training table" in text and text.index("| new | table |") < text.index("## Training")
    assert "load average (1, 5, 15 min)" in text and "CPU cores" in text
    record_section("Service", "service report", path)  # a new section is appended
    assert path.read_text().rstrip().endswith("service report")


def test_training_throughput_benchmark_runs_the_real_step(capsys):
    assert (
        rs2sam2(
            ["bench", "training", "--presets", "test", "--steps", "1", "--batch-size", "2", "--skip-curve"]
        )
        == 0
    )
    report = capsys.readouterr().out
    assert "| test | 128 | 2 |" in report and "MiB" in report


def test_precision_benchmark_measures_every_mode_and_profiles_the_parts(
    tmp_path, monkeypatch, demo_openvino_conversion
):
    """The measurement itself, in this process (the command runs it in a fresh one per model)."""
    from bench.precision import agreement, measure_model
    from tests.openvino_seed import seed

    monkeypatch.setenv("RS2SAM2_CACHE", str(tmp_path))  # the openvino conversion's cache
    seed(tmp_path / "openvino", demo_openvino_conversion)  # converted once per run, as by an earlier start
    result = measure_model("demo", ["fp32", "int8", "openvino"], repeats=1, threads=1)
    assert result["auto"] in ("fp32", "bf16", "int8") and set(result["rows"]) == {"fp32", "int8", "openvino"}
    agreed = agreement(result["maps"], result["threshold"])
    assert agreed["fp32"][0] == 1.0 and 0.9 < agreed["int8"][0] <= 1.0 and agreed["fp32"][1] > 0
    assert agreed["openvino"][0] >= 0.97
    fp32 = result["rows"]["fp32"]
    encoder = "image encoder (Hiera + adapters + neck)"
    assert fp32["stages"][encoder] > fp32["stages"]["… of which the adapters"] > 0
    # OpenVINO runs the encoder outside torch: its time is still counted, the adapters' is inside it.
    openvino = result["rows"]["openvino"]["stages"]
    assert openvino[encoder] > 0 and openvino["… of which the adapters"] == 0


def test_phrases_benchmark_gives_the_per_phrase_curve():
    from bench.phrases import measure

    result = measure("test", [1, 3], {"chunks": [2], "one_batch": [3]}, "fp32", repeats=1, threads=1)
    runs = {(count, batch) for count, batch, _cpu, _wall in result["rows"]}
    assert runs == {(1, 1), (3, 1), (3, 2), (3, 3)} and result["chunk"] == 1  # one phrase per forward


@pytest.mark.slow  # half a minute on the shared 2-core machine
def test_context_benchmark_runs_view_and_tiles_with_the_demo_model(capsys):
    """One small scene through every row (the real demo model, view mode and tiles mode)."""
    assert rs2sam2(["bench", "context", "--scenes", "1", "--size", "256"]) == 0
    report = capsys.readouterr().out
    for row in ("| tiles |", "| view, band |", "| view, upsampled |", "| one tile: the model's own mask |"):
        assert row in report
    assert "Goal: " in report and "Dense prompt:" in report


@pytest.mark.skipif(not cpu_has_native_bf16(), reason="the runtimes are compared with the bf16 mode")
def test_runtimes_benchmark_compares_the_encoder_across_runtimes():
    """In this process, on the small `test` preset; runtimes that are not installed are said to be."""
    from bench.runtimes import BF16, TILE, measure

    result = measure("test", repeats=1, threads=1, with_compile=False)
    rows = result["rows"]
    assert {"torch eager fp32", BF16, TILE} <= set(rows)
    assert rows["torch eager fp32"][2] < 1e-6 < rows[BF16][2] < 0.1  # bf16 differs, a little
    assert all(seconds > 0 for _, seconds, _ in rows.values())
    assert set(rows) - {"torch eager fp32", BF16, TILE} or "OpenVINO" in result["skipped"]
