"""Benchmarks: the report lands in its own section of the Markdown file, and a real (tiny) training
throughput run produces its table. Times are not asserted: speed is measured, not tested."""

from __future__ import annotations

from backend.cli import main as rs2sam2
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


def test_context_benchmark_runs_view_and_tiles_with_the_demo_model(capsys):
    """One small scene through every row (the real demo model, view mode and tiles mode)."""
    assert rs2sam2(["bench", "context", "--scenes", "1", "--size", "256"]) == 0
    report = capsys.readouterr().out
    for row in ("| tiles |", "| view, band |", "| view, upsampled |", "| one tile: the model's own mask |"):
        assert row in report
    assert "Goal: " in report and "Dense prompt:" in report
