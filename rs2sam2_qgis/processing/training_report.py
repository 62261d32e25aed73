"""The report file of a fine-tuning or an evaluation: HTML for a .html/.htm path, plain text otherwise.
Written whole or not at all (a temporary file renamed into place)."""

from __future__ import annotations

import html
import os
import tempfile
from dataclasses import dataclass, field
from typing import Any

from ..connection.training_client import label_report_text
from ..training_contract import (
    SCORE_KEYS,
    EvaluationResult,
    LabelReport,
    PersonModel,
    Scores,
    TrainingJobStatus,
)


@dataclass
class Report:
    title: str
    facts: list[tuple[str, str]] = field(default_factory=list)  # label, value
    tables: list[tuple[str, list[str], list[list[str]]]] = field(
        default_factory=list
    )  # heading, columns, rows


def percent(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.1f}"


def score_row(group: str, scores: Scores | None) -> list[str]:
    if scores is None:
        return [group, "0"] + ["–"] * len(SCORE_KEYS)
    return [group, str(scores.samples)] + [percent(scores.values.get(key)) for key in SCORE_KEYS]


def score_columns(first: str) -> list[str]:
    return [first, "samples", *(f"{key} (%)" for key in SCORE_KEYS)]


def _labels_facts(labels: LabelReport | None, val_labels: LabelReport | None) -> list[tuple[str, str]]:
    facts = [("Labels", label_report_text(labels))]
    if val_labels is not None:
        facts.append(("Validation labels", label_report_text(val_labels, "validation labels")))
    return facts


def training_report(
    model: PersonModel,
    final: TrainingJobStatus,
    base_url: str,
    labels: LabelReport | None,
    val_labels: LabelReport | None = None,
) -> Report:
    report = Report(f"RS2-SAM 2 fine-tuning: {model.name}")
    report.facts += [
        ("New model", model.name),
        ("Started from", model.start_model or "the bundled demo model"),
        ("Steps", f"{final.step} of {final.total_steps}" if final.total_steps else str(final.step)),
        ("Backend", base_url),
        ("Run", final.job_id),
        ("Created", model.created),
        *_labels_facts(labels, val_labels),
        ("Labelled features trained on", str(model.labels)),
    ]
    if model.size_bytes:
        report.facts.append(("Size", f"{model.size_bytes / 1e6:.1f} MB"))
    recipe = [[str(key), _text(value)] for key, value in sorted(model.recipe.items())]
    if recipe:
        report.tables.append(("Recipe", ["setting", "value"], recipe))
    scores = model.scores or final.validation
    if scores is not None:
        report.tables.append(
            ("Validation scores", score_columns("labels"), [score_row("validation", scores)])
        )
    else:
        report.facts.append(("Validation scores", "none (no validation raster and polygons were given)"))
    return report


def evaluation_report(result: EvaluationResult, base_url: str, job_id: str) -> Report:
    report = Report(f"RS2-SAM 2 evaluation: {result.model}")
    report.facts += [
        ("Model", result.model),
        ("Backend", base_url),
        ("Run", job_id),
        *_labels_facts(result.labels, None),
    ]
    rows = [score_row("overall", result.overall)]
    rows += [score_row(kind, scores) for kind, scores in sorted(result.by_kind.items())]
    report.tables.append(("Scores overall and by kind", score_columns("kind"), rows))
    if result.by_phrase:
        phrases = [score_row(phrase, scores) for phrase, scores in sorted(result.by_phrase.items())]
        report.tables.append(("Scores by phrase", score_columns("phrase"), phrases))
    return report


def _text(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, list | tuple):
        return ", ".join(_text(item) for item in value)
    return str(value)


def render_text(report: Report) -> str:
    lines = [report.title, "=" * len(report.title), ""]
    width = max((len(label) for label, _ in report.facts), default=0)
    lines += [f"{label + ':':<{width + 2}}{value}" for label, value in report.facts]
    for heading, columns, rows in report.tables:
        sizes = [max(len(row[i]) for row in [columns, *rows]) for i in range(len(columns))]
        lines += ["", heading, "-" * len(heading)]
        for row in [columns, *rows]:
            lines.append("  ".join(cell.ljust(size) for cell, size in zip(row, sizes)).rstrip())
    return "\n".join(lines) + "\n"


def render_html(report: Report) -> str:
    e = html.escape
    parts = [
        "<!DOCTYPE html>",
        '<html><head><meta charset="utf-8">',
        f"<title>{e(report.title)}</title>",
        "<style>body{font-family:sans-serif}table{border-collapse:collapse}"
        "td,th{border:1px solid #bbb;padding:2px 8px;text-align:left}</style></head><body>",
        f"<h1>{e(report.title)}</h1>",
        "<table>",
    ]
    parts += [f"<tr><th>{e(label)}</th><td>{e(value)}</td></tr>" for label, value in report.facts]
    parts.append("</table>")
    for heading, columns, rows in report.tables:
        parts += [f"<h2>{e(heading)}</h2>", "<table>"]
        parts.append("<tr>" + "".join(f"<th>{e(c)}</th>" for c in columns) + "</tr>")
        parts += ["<tr>" + "".join(f"<td>{e(c)}</td>" for c in row) + "</tr>" for row in rows]
        parts.append("</table>")
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def write_report(path: str, report: Report) -> None:
    """Write the report to `path` whole (HTML for .html/.htm), replacing what was there."""
    text = render_html(report) if path.lower().endswith((".html", ".htm")) else render_text(report)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, partial = tempfile.mkstemp(prefix=".rs2sam2-report-", dir=folder)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(text)
        os.replace(partial, path)
    except BaseException:
        if os.path.exists(partial):
            os.unlink(partial)
        raise
