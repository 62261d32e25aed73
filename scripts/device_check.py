"""The GPU check, in one go on a machine with a CUDA GPU (`make device-check`; docs/gpu-check.md):

    python3 scripts/device_check.py [--wheels build/device-wheels] [--out DIR] [--budget 480]

1. Without CUDA (or without torch) it says so, writes a report saying so, and exits 0: nothing to check.
2. Installs the wheels carried with the project (`make device-wheels` fills build/device-wheels here)
   into a folder of their own (`pip install --no-index --no-deps --target`, put first on PYTHONPATH, so
   the machine's own torch is used: a virtual environment made from the machine's own virtual
   environment would not see its packages), registers the project's `rs2sam2` commands there (a
   dist-info made from pyproject.toml: the project runs from the checkout), and notes which modules
   import.
3. Runs, each in its own process and within the time budget: the `gpu` tests (`pytest -m gpu` on the
   modules whose packages import, and the two CUDA refusal tests); the timing table, the agreement of
   every GPU precision with GPU fp32, a real CUDA out-of-memory retried, the engine on an 8192² raster
   (bench/gpu_measure.py); a short training run under a one-GPU torchrun (`rs2sam2 train`, the loss
   must fall) and a DDP step (NCCL with one rank, gloo with two ranks sharing the GPU).
4. Writes report.json (the numbers), report.md (`rs2sam2 bench gpu` renders the same), tests.log,
   tests.xml, steps.log and install.log to --out (default: $OUT, else out/device-check), and prints
   the goals last. `rs2sam2 bench gpu --report report.json --record` puts it into docs/benchmarks.md.

Exit status: 0 when every step ran and the tests passed (goals may still be unmet: they are
measurements), 1 otherwise. Standard library only (torch where the machine has it).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import re
import shutil
import socket
import subprocess
import sys
import time
import tomllib
import xml.etree.ElementTree as ElementTree
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.gpu import goals, render  # noqa: E402 - the checkout, not an installed package

MODEL = ("sam2", "open_clip", "hydra", "omegaconf", "iopath", "ftfy", "safetensors")
PAPER = ("torchscale", "fairscale", "sentencepiece", "accelerate")
ENGINE = ("rasterio", "shapely", "pyproj", "affine")
MODULES = (*MODEL, *PAPER, *ENGINE, "numpy", "PIL", "tqdm", "pytest")
# The test modules with a CUDA side, and the packages each needs.
GPU_TESTS = {
    "tests/model/test_predictor.py": MODEL,
    "tests/model/test_phrase_chunks.py": MODEL,
    "tests/model/test_batch_invariance.py": MODEL,
    "tests/model/test_training_step.py": MODEL,
    "tests/model/test_gpu_precision.py": (*MODEL, "rasterio"),
    "tests/model/test_gpu_training.py": MODEL,
    "tests/model/paper/test_gpu_paper.py": (*MODEL, *PAPER),
    "tests/engine/test_gpu_oom.py": MODEL,
    "tests/engine/test_gpu_engine.py": (*MODEL, *ENGINE),
}
# Not marked `gpu` (they simulate the GPU's absence, or check the real machine both ways): run here too.
REFUSAL_TESTS = (
    "tests/model/test_predictor.py::test_cuda_without_a_gpu_is_refused",
    "tests/model/test_predictor.py::test_auto_and_cuda_take_the_gpu_exactly_when_there_is_one",
)
# (step, longest it may take in seconds); each also stops when the whole budget is spent.
STEP_LIMITS = {"tests": 240, "timing": 200, "oom": 90, "training": 150, "ddp": 120, "engine": 150}
# Each step's settings: on the GPU, and in a rehearsal on the CPU (small models, a few steps).
ON_THE_GPU = {
    "timing": [],  # bench/gpu_measure.py's defaults: tiny and paper-rrsisd shapes, 1024 px, 3 precisions
    "oom": [],
    "engine": [],  # tiny, 8192² raster
    # "cli": run `rs2sam2 train` when its packages import there (they do not travel: see TRAINING_CLI)
    "training": {
        "device": "cuda",
        "backend": "nccl",
        "steps": 200,
        "cli": True,
        "cli_steps": 300,
        "scenes": 100,
    },
    "ddp": [("nccl", 1, "cuda"), ("gloo", 2, "cuda")],
}
REHEARSAL = {
    "timing": "--device cpu --models test paper --paper-preset paper-test --size 128 --repeats 1 "
    "--precisions fp32 bf16".split(),
    "oom": ["--device", "cpu"],
    "engine": ["--device", "cpu", "--preset", "test", "--raster-side", "512"],
    # the path the GPU machine takes (this machine has the CLI's packages)
    "training": {"device": "cpu", "backend": "gloo", "steps": 40, "cli": False},
    "ddp": [("gloo", 1, "cpu"), ("gloo", 2, "cpu")],
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--wheels", default=str(REPO / "build" / "device-wheels"), help="carried wheels")
    parser.add_argument("--out", default=os.environ.get("OUT") or str(REPO / "out" / "device-check"))
    parser.add_argument("--work", default="/tmp/rs2sam2-device-check", help="scratch folder")
    parser.add_argument("--budget", type=float, default=480.0, help="seconds for everything (default 480)")
    parser.add_argument("--steps", nargs="+", default=list(STEP_LIMITS), choices=list(STEP_LIMITS))
    parser.add_argument(
        "--rehearse",
        action="store_true",
        help="run every step on the CPU with small models and settings (checks the check itself; "
        "its report is marked as a rehearsal and is never recorded)",
    )
    args = parser.parse_args(argv)
    started = time.monotonic()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    report: dict = {"schema": 1, "started": dt.datetime.now(dt.UTC).isoformat(timespec="seconds")}

    machine, problem = probe_machine()
    if args.rehearse and problem.startswith("CUDA"):
        machine.update(device="CPU (a rehearsal: small models, no GPU)", memory_gib=0.0)
        problem = ""
    report["machine"] = machine
    if problem:
        report.update(status="no-cuda", message=problem, seconds=time.monotonic() - started)
        write_report(out, report)
        print(f"device check: {problem} — nothing to check here; run it on a machine with a CUDA GPU.")
        print(f"report: {out / 'report.json'}")
        return 0
    report["status"] = "rehearsal" if args.rehearse else "ran"
    plan = REHEARSAL if args.rehearse else ON_THE_GPU
    print(f"device check on {machine['device']} ({machine['memory_gib']:.1f} GiB), torch {machine['torch']}")

    work = Path(args.work)
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    site = work / "site"
    report["installed"] = install(Path(args.wheels), site, out / "install.log")
    env = step_environment(site, work)
    report["installed"]["modules"] = importable(env)
    available = {name for name, ok in report["installed"]["modules"].items() if ok}
    report["installed"]["missing"] = sorted(set(MODULES) - available)
    print(
        f"installed {len(report['installed']['wheels'])} wheel(s); missing: {report['installed']['missing']}"
    )

    deadline = started + args.budget
    steps: dict[str, dict] = {}
    report["steps"] = steps
    log = out / "steps.log"
    log.write_text("", encoding="utf-8")
    runners = {
        "tests": lambda limit: run_tests(env, available, out, limit),
        "timing": lambda limit: measure("timing", env, work, log, limit, plan["timing"]),
        "oom": lambda limit: measure("oom", env, work, log, limit, plan["oom"]),
        "training": lambda limit: train(env, work, log, limit, plan["training"]),
        "ddp": lambda limit: ddp(env, work, log, limit, plan["ddp"]),
        "engine": lambda limit: measure(
            "engine", env, work, log, limit, [*plan["engine"], "--seconds", str(max(limit - 60, 20))]
        ),
    }
    for name in args.steps:
        left = deadline - time.monotonic()
        if left < 30:
            steps[name] = {"status": "skipped", "error": f"out of time ({args.budget:.0f} s budget)"}
            continue
        limit = min(STEP_LIMITS[name], left - 10)
        print(f"[{time.monotonic() - started:5.0f} s] {name} (at most {limit:.0f} s)", flush=True)
        step_started = time.monotonic()
        try:
            steps[name] = runners[name](limit)
        except Exception as exc:  # the next steps still run; the report says what broke
            steps[name] = {"status": "error", "error": f"{type(exc).__name__}: {exc}"}
        steps[name].setdefault("seconds", time.monotonic() - step_started)
        print(f"        {name}: {steps[name].get('status')} in {steps[name]['seconds']:.0f} s", flush=True)
    report["seconds"] = time.monotonic() - started
    write_report(out, report)
    print()
    print(render(report))
    print(f"report: {out / 'report.json'} (record it: rs2sam2 bench gpu --report report.json --record)")
    finished = ("ok", "failed", "skipped") if args.rehearse else ("ok", "failed")  # rehearsal: no OOM
    ran = all(step.get("status") in finished for step in steps.values())
    tests_ok = steps.get("tests", {}).get("status", "ok") == "ok"
    return 0 if ran and tests_ok else 1


# -- the machine -------------------------------------------------------------------------------------


def probe_machine() -> tuple[dict, str]:
    """What the machine is, and why nothing can be checked on it ("" when there is a CUDA GPU)."""
    machine: dict = {
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
        "host": socket.gethostname(),
    }
    try:
        import torch
    except ImportError as exc:
        return machine, f"torch is not importable here ({exc})"
    machine["torch"] = torch.__version__
    machine["cuda"] = torch.version.cuda
    if not torch.cuda.is_available():
        machine["device"] = "no GPU"
        return machine, "CUDA is absent (torch.cuda.is_available() is False)"
    try:
        properties = torch.cuda.get_device_properties(0)
        machine.update(
            device=properties.name,
            memory_gib=properties.total_memory / 2**30,
            multiprocessors=properties.multi_processor_count,
            bf16=torch.cuda.is_bf16_supported(),
        )
    except RuntimeError as exc:  # a GPU torch sees but cannot use
        machine["device"] = "unusable GPU"
        return machine, f"CUDA is there but unusable ({str(exc).splitlines()[0]})"
    machine["driver"] = _driver_version()
    # torch's defaults, as the product runs: cuDNN may use TF32 in convolutions, matrix products do not.
    machine["tf32"] = {
        "cudnn": torch.backends.cudnn.allow_tf32,
        "matmul": torch.backends.cuda.matmul.allow_tf32,
    }
    return machine, ""


def _driver_version() -> str | None:
    try:
        completed = subprocess.run(
            ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=20,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return completed.stdout.strip().splitlines()[0] if completed.stdout.strip() else None


# -- installing what travelled -------------------------------------------------------------------------


def install(wheels: Path, site: Path, log: Path) -> dict:
    started = time.monotonic()
    found = sorted(wheels.glob("*.whl")) if wheels.is_dir() else []
    site.mkdir(parents=True, exist_ok=True)
    result: dict = {"wheels": [path.name for path in found], "folder": str(wheels)}
    if found:
        command = [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--no-index",
            "--no-deps",
            "--no-compile",
            "--no-cache-dir",
            "--disable-pip-version-check",
            "--upgrade",
            "--target",
            str(site),
            *map(str, found),
        ]
        completed = subprocess.run(command, capture_output=True, text=True, check=False, timeout=300)
        output = completed.stdout + completed.stderr
        result["pip_status"] = completed.returncode
        if completed.returncode != 0:  # one wheel pip refuses must not keep the others out: one by one
            result["refused"] = []
            for wheel in found:
                single = subprocess.run(
                    [*command[: -len(found)], str(wheel)],
                    capture_output=True,
                    text=True,
                    check=False,
                    timeout=300,
                )
                output += single.stdout + single.stderr
                if single.returncode != 0:
                    result["refused"].append(wheel.name)
        log.write_text(output, encoding="utf-8")
    else:
        log.write_text(f"no wheels in {wheels}: only what the machine has\n", encoding="utf-8")
    register_commands(site)
    result["seconds"] = time.monotonic() - started
    return result


def register_commands(site: Path) -> None:
    """The project's `rs2sam2` sub-commands, as installing it would register them (backend/cli.py reads
    the entry points): a dist-info beside the wheels, pointing at the checkout's modules."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    info = site / f"rs2sam2-{project['version']}.dist-info"
    info.mkdir(parents=True, exist_ok=True)
    (info / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: rs2sam2\nVersion: {project['version']}\n", encoding="utf-8"
    )
    lines = []
    for group, points in project.get("entry-points", {}).items():
        lines.append(f"[{group}]")
        lines += [f"{name} = {target}" for name, target in points.items()]
    lines.append("[console_scripts]")
    lines += [f"{name} = {target}" for name, target in project.get("scripts", {}).items()]
    (info / "entry_points.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")


def step_environment(site: Path, work: Path) -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(site), str(REPO), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env.update(
        PYTHONDONTWRITEBYTECODE="1",
        PYTHONUNBUFFERED="1",
        RS2SAM2_CACHE=str(work / "cache"),
        MPLBACKEND="Agg",
    )
    return env


def importable(env: dict, modules: tuple[str, ...] = MODULES) -> dict[str, bool]:
    code = (
        "import importlib, json, sys\n"
        "ok = {}\n"
        "for name in sys.argv[1:]:\n"
        "    try:\n"
        "        importlib.import_module(name); ok[name] = True\n"
        "    except Exception as exc:\n"
        "        ok[name] = False; print(name, type(exc).__name__, exc, file=sys.stderr)\n"
        "print(json.dumps(ok))\n"
    )
    completed = subprocess.run(
        [sys.executable, "-c", code, *modules],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    try:
        return json.loads(completed.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        return dict.fromkeys(modules, False)


# -- the steps ---------------------------------------------------------------------------------------


def _run(command: list[str], env: dict, limit: float, log: Path | None) -> tuple[int | None, str]:
    """Run a command in the checkout; (exit status or None when it ran out of time, its output)."""
    try:
        completed = subprocess.run(
            command, env=env, cwd=REPO, capture_output=True, text=True, timeout=limit, check=False
        )
        status, output = completed.returncode, completed.stdout + completed.stderr
    except subprocess.TimeoutExpired as exc:
        status = None
        output = "".join(
            part.decode(errors="replace") if isinstance(part, bytes) else (part or "")
            for part in (exc.stdout, exc.stderr)
        )
    if log is not None:
        with open(log, "a", encoding="utf-8") as handle:
            handle.write(f"\n===== {' '.join(command)} (exit {status})\n{output}")
    return status, output


def run_tests(env: dict, available: set[str], out: Path, limit: float) -> dict:
    runnable = [path for path, needs in GPU_TESTS.items() if set(needs) <= available]
    not_run = [path for path in GPU_TESTS if path not in runnable]
    if "pytest" not in available or not runnable:
        return {
            "status": "skipped",
            "error": "pytest or the model's packages are missing",
            "not_run": not_run,
        }
    xml = out / "tests.xml"
    # A module that fails to import must not stop the others from running.
    base = [
        sys.executable,
        "-m",
        "pytest",
        "-q",
        "-rs",
        "-p",
        "no:cacheprovider",
        "--continue-on-collection-errors",
    ]
    status, output = _run([*base, "-m", "gpu", f"--junitxml={xml}", *runnable], env, limit * 0.9, None)
    refusal_status, refusal_output = _run([*base, *REFUSAL_TESTS], env, max(limit * 0.1, 30), None)
    (out / "tests.log").write_text(output + "\n===== refusal tests\n" + refusal_output, encoding="utf-8")
    empty = {"passed": 0, "failed": 0, "errors": 0, "skipped": 0, "failures": []}
    result = junit_counts(xml) if xml.exists() else empty
    refusal = _pytest_summary(refusal_output)
    for key in ("passed", "failed", "errors", "skipped"):
        result[key] += refusal.get(key, 0)
    if refusal_status not in (0, None) and not refusal.get("failed"):
        result["errors"] += 1
    result["not_run"] = not_run
    if status is None or refusal_status is None:
        result["status"] = "timeout"
        result["error"] = f"pytest did not finish within {limit:.0f} s"
    else:
        result["status"] = (
            "ok" if status == 0 and refusal_status == 0 and not result["failures"] else "failed"
        )
    result["notes"] = [line for line in output.splitlines() if line.startswith(("FAILED", "ERROR"))][:20]
    return result


def junit_counts(xml: Path) -> dict:
    root = ElementTree.parse(xml).getroot()
    counts = {"passed": 0, "failed": 0, "errors": 0, "skipped": 0, "failures": []}
    for case in root.iter("testcase"):
        name = f"{case.get('classname', '')}::{case.get('name', '')}"
        if case.find("failure") is not None:
            counts["failed"] += 1
            counts["failures"].append(name)
        elif case.find("error") is not None:
            counts["errors"] += 1
            counts["failures"].append(name)
        elif case.find("skipped") is not None:
            counts["skipped"] += 1
        else:
            counts["passed"] += 1
    return counts


def _pytest_summary(output: str) -> dict:
    counts = {}
    for number, word in re.findall(r"(\d+) (passed|failed|errors?|skipped)", output):
        counts["errors" if word.startswith("error") else word] = int(number)
    return counts


def measure(step: str, env: dict, work: Path, log: Path, limit: float, extra: list[str] = ()) -> dict:
    target = work / f"{step}.json"
    command = [sys.executable, "-m", "bench.gpu_measure", step, "--out", str(target), *extra]
    status, output = _run(command, env, limit, log)
    if target.exists():
        return json.loads(target.read_text(encoding="utf-8"))
    reason = "ran out of time" if status is None else f"exited with {status}"
    return {"status": "timeout" if status is None else "error", "error": f"{reason}: {_last_line(output)}"}


def _last_line(output: str) -> str:
    lines = [line for line in output.strip().splitlines() if line.strip()]
    return lines[-1][:300] if lines else "no output"


def _torchrun(processes: int) -> list[str]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nnodes",
        "1",
        "--nproc-per-node",
        str(processes),
        "--master-addr",
        "127.0.0.1",
        "--master-port",
        str(port),
    ]


# What `rs2sam2 train` imports beyond the engine's packages (its data readers): their wheels (pyogrio
# 23 MiB) do not fit in the 64 MiB that travel beside the engine's, so on the GPU machine the training
# run is bench/gpu_measure.py's `train-ddp` (the same model, loss, optimiser groups and autocast, under
# DDP) unless they import there.
TRAINING_CLI = ("pyogrio", "pycocotools", "tensorboard")


def train(env: dict, work: Path, log: Path, limit: float, plan: dict) -> dict:
    if not (plan["cli"] and all(importable(env, TRAINING_CLI).values())):
        target = work / "train-ddp.json"
        command = [
            *_torchrun(1),
            "-m",
            "bench.gpu_measure",
            "train-ddp",
            "--out",
            str(target),
            "--backend",
            plan["backend"],
            "--device",
            plan["device"],
            "--train-steps",
            str(plan["steps"]),
        ]
        status, output = _run(command, env, limit, log)
        if target.exists():
            result = json.loads(target.read_text(encoding="utf-8"))
            result.setdefault("notes", []).append(
                "`rs2sam2 train` itself was not run: its data readers need pyogrio and pycocotools, whose "
                "wheels do not fit in the 64 MiB carried beside the engine's"
            )
            return result
        why = "ran out of time" if status is None else f"exited with {status}"
        return {"status": "timeout" if status is None else "error", "error": f"{why}: {_last_line(output)}"}
    return train_cli(env, work, log, limit, plan)


def train_cli(env: dict, work: Path, log: Path, limit: float, plan: dict) -> dict:
    """`rs2sam2 train` on the GPU under a one-GPU torchrun: the `test` preset from scratch on synthetic
    scenes; the loss must fall (the mean of the last ten steps under 0.8× that of the first five)."""
    run = work / "train-run"
    steps = plan["cli_steps"]
    arguments = [
        "train",
        "--data",
        f"synthetic:{plan['scenes']}",
        "--preset",
        "test",
        "--device",
        plan["device"],
        "--out",
        str(run),
        "--max-steps",
        str(steps),
        "--batch-size",
        "8",
        "--lr-new",
        "1e-3",
        "--lr-rest",
        "1e-3",
        "--warmup-steps",
        "20",
        "--log-every",
        "1",
        "--eval-every",
        "100000",
        "--val-limit",
        "8",
        "--no-progress",
    ]
    started = time.monotonic()
    status, output = _run([*_torchrun(1), "-m", "backend.cli", *arguments], env, limit, log)
    seconds = time.monotonic() - started
    losses = read_losses(run / "train_log.csv")
    result = {
        "command": f"torchrun --nproc-per-node=1 -m backend.cli train (test preset, {steps} steps, "
        f"{plan['device']})",
        "steps": len(losses),
        "seconds": seconds,
    }
    if status != 0 or len(losses) < 15:
        why = "ran out of time" if status is None else f"exited with {status}"
        return {
            **result,
            "status": "timeout" if status is None else "error",
            "error": f"{why}: {_last_line(output)}",
        }
    first, last = sum(losses[:5]) / 5, sum(losses[-10:]) / 10
    passed = last < 0.8 * first and all(loss == loss for loss in losses)  # NaN != NaN
    result.update(first_loss=first, last_loss=last, passed=passed, status="ok" if passed else "failed")
    return result


def read_losses(path: Path) -> list[float]:
    import csv

    if not path.exists():
        return []
    with open(path, newline="", encoding="utf-8") as handle:
        return [float(row["loss"]) for row in csv.DictReader(handle) if row.get("loss")]


def ddp(env: dict, work: Path, log: Path, limit: float, plan: list) -> dict:
    runs = []
    for backend, processes, device in plan:
        target = work / f"ddp-{backend}-{processes}.json"
        command = [
            *_torchrun(processes),
            "-m",
            "bench.gpu_measure",
            "ddp-rank",
            "--out",
            str(target),
            "--backend",
            backend,
            "--device",
            device,
        ]
        status, output = _run(command, env, limit / len(plan), log)
        if target.exists():
            runs.append(json.loads(target.read_text(encoding="utf-8")))
        else:
            why = "ran out of time" if status is None else f"exited with {status}"
            runs.append(
                {
                    "backend": backend,
                    "world_size": processes,
                    "status": "error",
                    "error": f"{why}: {_last_line(output)}",
                }
            )
    passed = all(run.get("passed") for run in runs)
    broken = [run for run in runs if run.get("status") not in ("ok", "failed")]
    status = "error" if broken else ("ok" if passed else "failed")
    return {
        "status": status,
        "passed": passed,
        "runs": runs,
        "error": "; ".join(f"{r['backend']}: {r.get('error')}" for r in broken),
    }


# -- the report --------------------------------------------------------------------------------------


def write_report(out: Path, report: dict) -> None:
    if report.get("status") in ("ran", "rehearsal"):
        report["goals"] = goals(report)
    (out / "report.json").write_text(json.dumps(report, indent=1), encoding="utf-8")
    (out / "report.md").write_text(render(report), encoding="utf-8")


if __name__ == "__main__":
    sys.exit(main())
