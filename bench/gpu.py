"""The GPU check's report: `rs2sam2 bench gpu --report FILE [--record]` renders the JSON report that
`make device-check` (scripts/device_check.py) wrote on a GPU machine, with the goals of issue 26 judged,
and with --record writes it into docs/benchmarks.md under "GPU", with the GPU's name and the date of
the run (from the report: the machine that records it is usually not the one that ran it).

The report's layout (written by scripts/device_check.py, filled by bench/gpu_measure.py):
`status` ("ran", or "no-cuda" with `message`), `machine` (device, memory, driver, torch, CUDA,
Python, CPU cores), `started` (ISO time, UTC), `seconds`, `installed` (wheels carried and modules
available), and `steps`: `tests`, `timing`, `oom`, `training`, `ddp`, `engine`, each with a `status`
("ok", "failed", "error", "timeout" or "skipped") and its numbers. Standard library only: the check
renders its own report on the GPU machine with it.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

HEADING = "GPU (`rs2sam2 bench gpu`)"
PAPER_MS_GOAL = 100.0  # paper architecture, 1024 px, bf16: at most this per phrase-tile
BATCH_RATIO_GOAL = 4.0  # eight phrases batched: at most this many times one phrase
AGREEMENT_GOAL = 0.97  # every GPU precision's masks against GPU fp32's (backend.model.precision)
BUSY_GOAL = 0.70  # the engine keeps the GPU busy this share of wall time (8192², tiny)
PAPER_TITLE = "paper architecture, 1024 px, ≤ 100 ms per phrase-tile in bf16"
AGREEMENT_TITLE = "every GPU precision agrees with GPU fp32 (mask IoU ≥ 0.97)"
BUSY_TITLE = "the engine keeps the GPU busy ≥ 70 % of wall time (8192², tiny)"
TIMING_HEADER = (
    "| model | precision | phrases | per tile | per phrase-tile | peak GPU memory | mask IoU vs GPU fp32 |"
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--report",
        required=True,
        help="the device check's report.json (make device-check writes it to $OUT or out/device-check)",
    )


def run(args: argparse.Namespace) -> str:
    return render(load_report(Path(args.report)))


def load_report(path: Path) -> dict:
    from backend.errors import UserError

    try:
        report = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"no such report: {path} (make device-check writes report.json)") from None
    except (OSError, ValueError) as exc:
        raise UserError(f"cannot read the GPU check's report {path}: {exc}") from None
    if not isinstance(report, dict) or "status" not in report:
        raise UserError(f"{path} is not a report of make device-check (no status)")
    return report


def ran_line(args: argparse.Namespace) -> str:
    """The "Ran … on …" line of the recorded section: the GPU machine's, from the report."""
    from backend.errors import UserError

    report = load_report(Path(args.report))
    if report["status"] != "ran":
        raise UserError(
            f"the report says the check did not run ({report.get('message', report['status'])}); "
            "nothing to record"
        )
    return f"Ran {_date(report)} on {describe_machine(report.get('machine', {}))}."


def _date(report: dict) -> str:
    started = str(report.get("started", ""))
    return started[:16].replace("T", " ") + " UTC" if started else "(date unknown)"


def describe_machine(machine: dict) -> str:
    parts = [str(machine.get("device", "an unnamed GPU"))]
    if machine.get("memory_gib"):
        parts[0] += f" ({machine['memory_gib']:.1f} GiB)"
    if machine.get("driver"):
        parts.append(f"driver {machine['driver']}")
    if machine.get("cpu_count"):
        parts.append(f"{machine['cpu_count']} CPU cores")
    software = [f"{name} {machine[key]}" for key, name in (("python", "Python"), ("torch", "torch"))]
    software = [text for text in software if not text.endswith(" None")]
    if machine.get("cuda"):
        software.append(f"CUDA {machine['cuda']}")
    return ", ".join(parts) + ("; " + ", ".join(software) if software else "")


# -- the goals ---------------------------------------------------------------------------------------


def _row(timing: dict, model: str, precision: str, phrases: int) -> dict | None:
    for row in timing.get("rows", []):
        if (row.get("model"), row.get("precision"), row.get("phrases")) == (model, precision, phrases):
            return row
    return None


def goals(report: dict) -> list[dict]:
    """Issue 26's goals with the measured result and whether each is met (None: reported, no bound, or
    not measured)."""
    steps = report.get("steps", {})
    timing = steps.get("timing", {})
    return [
        *_speed_goals(timing),
        *_memory_and_agreement_goals(timing),
        _busy_goal(steps.get("engine", {})),
        *_pass_goals(steps),
    ]


def _speed_goals(timing: dict) -> list[dict]:
    """The paper model's time per phrase, and eight phrases batched against one, per model."""
    out: list[dict] = []
    paper = _row(timing, "paper", "bf16", 1)
    paper32 = _row(timing, "paper", "fp32", 1)
    if paper:
        result = f"{paper['ms_per_phrase']:.1f} ms in bf16"
        if paper32:
            result += f" (fp32 {paper32['ms_per_phrase']:.1f} ms)"
        out.append(_goal(PAPER_TITLE, result, paper["ms_per_phrase"] <= PAPER_MS_GOAL))
    else:
        out.append(_goal(PAPER_TITLE, "not measured", None))

    for model in ("paper", "tiny"):
        one, eight = _row(timing, model, "bf16", 1), _row(timing, model, "bf16", 8)
        title = f"{model}: eight phrases batched ≤ 4× one phrase (bf16)"
        if one and eight:
            ratio = eight["ms"] / one["ms"]
            result = f"{eight['ms']:.1f} ms / {one['ms']:.1f} ms = {ratio:.2f}×"
            out.append(_goal(title, result, ratio <= BATCH_RATIO_GOAL))
        else:
            out.append(_goal(title, "not measured", None))
    return out


def _memory_and_agreement_goals(timing: dict) -> list[dict]:
    """The peak memory (reported) and the lowest mask agreement of a precision with fp32."""
    peaks = [
        f"{row['model']} {row['precision']} {row['phrases']} phrase(s): {_mib(row.get('peak_mib'))}"
        for row in timing.get("rows", [])
        if row.get("precision") in ("bf16", "fp32") and row.get("phrases") == 8
    ]
    out = [_goal("peak GPU memory (reported)", "; ".join(peaks) or "not measured", None)]
    agreements = [
        (value, f"{name} {precision}")
        for name, per_precision in timing.get("agreement", {}).items()
        for precision, value in per_precision.items()
        if precision != "fp32" and value is not None
    ]
    if agreements:
        worst, where = min(agreements)
        result = f"lowest {worst:.4f} ({where}) over {len(agreements)} model-precision pairs"
        out.append(_goal(AGREEMENT_TITLE, result, worst >= AGREEMENT_GOAL))
    else:
        out.append(_goal(AGREEMENT_TITLE, "not measured", None))
    return out


def _busy_goal(engine: dict) -> dict:
    busy = engine.get("busy")
    if busy is None:
        return _goal(BUSY_TITLE, "not measured", None)
    what = "the engine" if engine.get("mode") == "engine" else "the model part alone (no engine wheels)"
    return _goal(BUSY_TITLE, f"{busy:.0%} ({engine.get('busy_source', '')}; {what})", busy >= BUSY_GOAL)


def _pass_goals(steps: dict) -> list[dict]:
    """The steps that pass or fail: the `gpu` tests, the out-of-memory retry, training, DDP."""
    out: list[dict] = []
    tests = steps.get("tests", {})
    if tests:
        out.append(_goal("the `gpu` tests pass", _tests_line(tests), tests.get("status") == "ok"))
    oom = steps.get("oom", {})
    if oom:
        title = "a real CUDA out-of-memory is retried phrase by phrase"
        out.append(_goal(title, _oom_line(oom), bool(oom.get("passed"))))
    training = steps.get("training", {})
    if training:
        title = "a short training run on the GPU: the loss falls"
        out.append(_goal(title, _training_line(training), bool(training.get("passed"))))
    ddp = steps.get("ddp", {})
    if ddp:
        out.append(_goal("a one-GPU torchrun DDP step", _ddp_line(ddp), bool(ddp.get("passed"))))
    return out


def _goal(goal: str, result: str, met: bool | None) -> dict:
    return {"goal": goal, "result": result, "met": met}


def _tests_line(tests: dict) -> str:
    counts = ", ".join(f"{tests.get(k, 0)} {k}" for k in ("passed", "failed", "errors", "skipped"))
    line = f"{counts} ({tests.get('status')}, {tests.get('seconds', 0):.0f} s)"
    if tests.get("not_run"):
        line += f"; not run (missing packages): {', '.join(tests['not_run'])}"
    if tests.get("failures"):
        line += f"; failed: {', '.join(tests['failures'][:6])}"
    return line


def _oom_line(oom: dict) -> str:
    if oom.get("status") not in (None, "ok", "failed"):
        return f"{oom.get('status')}: {oom.get('error', '')}"
    first = oom.get("first_call", {})
    return (
        f"{oom.get('model', '')}: {first.get('phrases', '?')} phrases in one forward with "
        f"{oom.get('left_free_bytes', 0) / 2**20:,.0f} MiB free → {first.get('error', 'no error')[:70]}; "
        f"retried {oom.get('retried_calls', 0)}× one phrase, differences from an unconstrained run "
        f"{oom.get('mean_difference', float('nan')):.1e} on average, "
        f"{oom.get('max_difference', float('nan')):.1e} at most; with "
        f"{oom.get('too_small_left_free_bytes', 0) / 2**20:,.0f} MiB free: "
        f"\"{oom.get('too_small_error', '')[:60]}…\""
    )


def _training_line(training: dict) -> str:
    if training.get("status") not in (None, "ok", "failed"):
        return f"{training.get('status')}: {training.get('error', '')}"
    return (
        f"{training.get('command', 'rs2sam2 train')}: {training.get('steps', '?')} steps in "
        f"{training.get('seconds', 0):.0f} s, loss {training.get('first_loss', float('nan')):.3f} → "
        f"{training.get('last_loss', float('nan')):.3f}"
    )


def _ddp_line(ddp: dict) -> str:
    if ddp.get("status") not in (None, "ok", "failed"):
        return f"{ddp.get('status')}: {ddp.get('error', '')}"
    parts = []
    for run in ddp.get("runs", []):
        parts.append(
            f"{run.get('backend')} × {run.get('world_size')} rank(s) on {run.get('device', '?')}: DDP "
            "gradient vs the "
            f"full batch's: {run.get('gradient_difference', float('nan')):.1e} of its norm"
            + ("" if run.get("passed") else " (failed)")
        )
    return "; ".join(parts) or "no run"


# -- rendering ---------------------------------------------------------------------------------------


def _mib(value: float | None) -> str:
    return "—" if value is None else f"{value:,.0f} MiB"


def _met(value: bool | None) -> str:
    return {True: "yes", False: "**no**", None: "—"}[value]


def render(report: dict) -> str:
    """The report as Markdown (what --record writes under the GPU heading)."""
    if report.get("status") not in ("ran", "rehearsal"):
        return f"The GPU check did not run: {report.get('message', report.get('status'))}\n"
    lines = [
        f"`make device-check` (scripts/device_check.py) on {describe_machine(report.get('machine', {}))}; "
        f"started {_date(report)}, {report.get('seconds', 0):.0f} s in all.",
        "",
    ]
    if report["status"] == "rehearsal":
        lines[0:0] = ["**A rehearsal on the CPU (small models): it checks the check, not the GPU.**", ""]
    installed = report.get("installed", {})
    if installed:
        missing = installed.get("missing", [])
        lines.append(
            f"Installed from the carried wheels: {len(installed.get('wheels', []))} wheel(s) in "
            f"{installed.get('seconds', 0):.0f} s"
            + (f"; refused by pip: {', '.join(installed['refused'])}" if installed.get("refused") else "")
            + (f"; not importable there: {', '.join(missing)}" if missing else "; every module imports")
            + "."
        )
        lines.append("")
    lines += ["| goal | result | met |", "|---|---|---|"]
    lines += [f"| {g['goal']} | {g['result']} | {_met(g['met'])} |" for g in goals(report)]
    timing = report.get("steps", {}).get("timing", {})
    if timing.get("rows"):
        lines += [
            "",
            f"### One {timing.get('size', 1024)} px tile",
            "",
            timing.get("conditions", ""),
            "",
            TIMING_HEADER,
            "|---|---|---|---|---|---|---|",
        ]
        for row in timing["rows"]:
            iou = row.get("iou_vs_fp32")
            lines.append(
                f"| {row['model']} | {row['precision']} | {row['phrases']} | {row['ms']:.1f} ms | "
                f"{row['ms_per_phrase']:.1f} ms | {_mib(row.get('peak_mib'))} | "
                f"{'—' if iou is None else f'{iou:.4f}'} |"
            )
        for note in timing.get("notes", []):
            lines.append(f"- {note}")
    for name in ("tests", "oom", "training", "ddp", "engine"):
        step = report.get("steps", {}).get(name)
        if step and step.get("notes"):
            lines += ["", f"{name}:"] + [f"- {note}" for note in step["notes"]]
    problems = [
        f"{name}: {step.get('status')} — {step.get('error', '')}".rstrip(" —")
        for name, step in report.get("steps", {}).items()
        if step.get("status") not in ("ok", "failed")
    ]
    if problems:
        lines += ["", "Steps that did not finish:"] + [f"- {p}" for p in problems]
    return "\n".join(lines) + "\n"
