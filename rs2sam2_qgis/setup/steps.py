"""The first-run set-up of the local backend, step by step (no Qt here; `setup_task` runs it in a QgsTask).

1. find a Python that can make virtual environments (`interpreters`);
2. mark the set-up folder "installing" (`backend_env`), remove any earlier environment — a half-made one
   is never reused, pip cannot tell a half-unpacked package from a whole one — and make a new one;
3. pip install, each step with the bundle's pins as constraints:
   torch + torchvision (the CPU or CUDA build, `torch_build`) and setuptools;
   sam2 (a source package: built against that torch, without its CUDA extension, `SAM2_BUILD_CUDA=0`);
   the bundled backend itself with its remaining requirements;
4. check that the environment imports and registers `rs2sam2 serve`, then mark it "ready".
Offline: with a wheel folder, pip reads only that folder (`--no-index --find-links`).

pip runs with `--no-compile` (Python compiles on first import; measured here it halves torch's step).
On Linux pip is also told to die with the set-up's thread (PR_SET_PDEATHSIG), so a QGIS that is killed
mid-install leaves no pip behind still writing into the folder.
"""

from __future__ import annotations

import json
import os
import queue
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from .backend_env import Bundle, EnvLayout
from .interpreters import Interpreter, InterpreterError, clean_environment, find_interpreter, hidden_window
from .torch_build import TorchBuild, choose_build

# Run by the new environment's Python (never imported here: the plugin itself never imports torch).
CHECK = r"""
import json, sys, torch, sam2, open_clip, rasterio, pyogrio, shapely, fastapi, uvicorn
import backend.service.app, backend.cli, training.loop, training.region_queries
from importlib.metadata import entry_points
commands = sorted(point.name for point in entry_points(group="rs2sam2.commands"))
assert {"serve", "train", "evaluate"} <= set(commands), commands
print(json.dumps({"torch": torch.__version__, "cuda": torch.cuda.is_available(),
                  "cuda_build": torch.version.cuda, "python_version": "%d.%d.%d" % sys.version_info[:3],
                  "commands": commands}))
"""
POLL_S = 0.2


class SetupError(Exception):
    """The set-up failed; the message is a sentence for a person (pip's output is in the log)."""


class SetupCancelled(Exception):
    pass


@dataclass(frozen=True)
class SetupOptions:
    root: Path  # the set-up folder (environment, state file, log)
    python: str = ""  # the interpreter to build with; empty: found automatically
    torch_build: str = "auto"  # auto | cpu | cuda
    torch_index_url: str = ""  # where torch comes from, when not the default for the build
    wheel_folder: str = ""  # offline: install only from this folder


@dataclass(frozen=True)
class Step:
    key: str
    label: str
    args: list[str]  # arguments after the program
    weight: float  # share of the progress bar
    env: dict[str, str] = field(default_factory=dict)
    program: str = ""  # empty: the environment's python


def child_environment(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment for pip and the check: no QGIS Python settings, pip never asks anything."""
    return clean_environment(
        {"PYTHONUNBUFFERED": "1", "PIP_NO_INPUT": "1", "PIP_DISABLE_PIP_VERSION_CHECK": "1", **(extra or {})}
    )


def plan(options: SetupOptions, bundle: Bundle, interpreter: Interpreter, build: TorchBuild) -> list[Step]:
    layout = EnvLayout(options.root)
    pip = ["-m", "pip", "install", "--no-compile", "--progress-bar", "off", "-c", str(bundle.constraints)]
    if options.wheel_folder.strip():
        pip += ["--no-index", "--find-links", options.wheel_folder.strip()]
    torch = [bundle.staged["torch"], bundle.staged["torchvision"], *bundle.build_requires]
    return [
        Step(
            "venv",
            "Creating the environment",
            [*interpreter.command[1:], "-m", "venv", str(layout.env)],
            0.05,
            program=interpreter.command[0],
        ),
        Step("torch", f"Installing torch ({build.name} build)", [*pip, *build.pip_args, *torch], 0.6),
        Step(
            "sam2",
            "Installing SAM 2",
            [*pip, "--no-build-isolation", bundle.staged["sam2"]],
            0.07,
            env={"SAM2_BUILD_CUDA": "0"},
        ),
        Step("backend", "Installing the backend", [*pip, "--no-build-isolation", str(layout.build_dir)], 0.2),
        *(
            [Step("no-deps", "Installing BEiT-3's library", [*pip, "--no-deps", *bundle.no_deps], 0.02)]
            if bundle.no_deps
            else []
        ),
        Step("check", "Checking the environment", ["-c", CHECK], 0.08),
    ]


class SetupRunner:
    """Runs the set-up; `on_line` gets every output line, `on_progress` (fraction, step label)."""

    def __init__(
        self,
        options: SetupOptions,
        bundle: Bundle,
        on_line: Callable[[str], None] = lambda line: None,
        on_progress: Callable[[float, str], None] = lambda fraction, label: None,
        is_cancelled: Callable[[], bool] = lambda: False,
    ):
        self.options = options
        self.bundle = bundle
        self.layout = EnvLayout(options.root)
        self.on_line = on_line
        self.on_progress = on_progress
        self.is_cancelled = is_cancelled
        self.check: dict = {}
        self._log = None

    def run(self) -> dict:
        """Set the environment up from scratch; returns the "ready" state.

        Raises SetupError (with a sentence) or SetupCancelled."""
        started = time.monotonic()
        self.layout.root.mkdir(parents=True, exist_ok=True)
        with open(self.layout.log_file, "w", encoding="utf-8") as self._log:
            try:
                interpreter = find_interpreter(self.options.python, self.bundle.requires_python)
            except InterpreterError as exc:
                self._mark("failed", error=str(exc))
                raise SetupError(str(exc)) from None
            build = choose_build(self.options.torch_build, self.options.torch_index_url)
            self._say(f"Python {interpreter.version_text} ({interpreter.executable}); torch: {build.reason}")
            self._mark("installing", python=interpreter.executable, torch_build=build.name)
            self._fresh_folders()
            self._run_steps(plan(self.options, self.bundle, interpreter, build))
            shutil.rmtree(self.layout.build_dir, ignore_errors=True)
            state = self._mark(
                "ready",
                python=interpreter.executable,
                torch_build=build.name,
                seconds=round(time.monotonic() - started, 1),
                size_bytes=folder_size(self.layout.env),
                **self.check,
            )
            size_gb = state["size_bytes"] / 1e9
            self._say(f"Set-up done in {state['seconds']:.0f} s; the environment takes {size_gb:.1f} GB.")
            return state

    # -- internals -------------------------------------------------------------------------------
    def _mark(self, kind: str, **extra) -> dict:
        state = {
            "state": kind,
            "version": self.bundle.version,
            "fingerprint": self.bundle.fingerprint,
            "time": time.strftime("%Y-%m-%dT%H:%M:%S"),
            "pid": os.getpid(),
            **extra,
        }
        self.layout.write_state(**state)
        return state

    def _say(self, line: str) -> None:
        if self._log is not None:
            self._log.write(line + "\n")
            self._log.flush()
        self.on_line(line)

    def _fresh_folders(self) -> None:
        for folder in (self.layout.env, self.layout.build_dir):
            if folder.exists():
                self._say(f"Removing {folder}")
                shutil.rmtree(folder)
        shutil.copytree(self.bundle.folder, self.layout.build_dir)

    def _run_steps(self, steps: list[Step]) -> None:
        done = 0.0
        for step in steps:
            if self.is_cancelled():
                self._cancelled()
            self.on_progress(done, step.label)
            self._say(f"== {step.label}")
            program = step.program or str(self.layout.python)
            output = self._run_one(
                program,
                step,
                lambda share, start=done, step=step: self.on_progress(
                    start + share * step.weight, step.label
                ),
            )
            if step.key == "check":
                self.check = json.loads(output[-1]) if output else {}
            done += step.weight
        self.on_progress(1.0, "Done")

    def _run_one(self, program: str, step: Step, progress: Callable[[float], None]) -> list[str]:
        lines: queue.Queue[str | None] = queue.Queue()
        try:
            process = subprocess.Popen(
                [program, *step.args],
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=child_environment(step.env),
                cwd=str(self.layout.root),
                **process_group_options(),
            )
        except OSError as exc:
            self._fail(step, f"{program} could not be started ({exc.strerror or exc})")
        reader = threading.Thread(target=_pump, args=(process.stdout, lines), daemon=True)
        reader.start()
        output: list[str] = []
        while True:
            if self.is_cancelled():
                stop_process(process)
                self._cancelled()
            try:
                line = lines.get(timeout=POLL_S)
            except queue.Empty:
                continue
            if line is None:
                break
            output.append(line)
            self._say(line)
            # pip says a few things per package: creep towards the end of the step, never past it.
            progress(min(0.95, 1 - 0.9 ** len(output)))
        code = process.wait()
        if code != 0:
            errors = [line for line in output if line.startswith("ERROR")] or output[-1:] or [""]
            self._fail(step, f"exit code {code}: {errors[0].removeprefix('ERROR: ').strip()}")
        return output

    def _fail(self, step: Step, detail: str) -> None:
        message = (
            f"The set-up of the local backend failed at “{step.label}” ({detail}); the whole output is in "
            f"{self.layout.log_file}."
        )
        self._say(message)
        self._mark("failed", step=step.key, error=message)
        raise SetupError(message)

    def _cancelled(self) -> None:
        self._say("Cancelled.")
        self._mark("cancelled")
        raise SetupCancelled()


def _pump(stream, lines: queue.Queue) -> None:
    for raw in iter(stream.readline, b""):
        lines.put(raw.decode("utf-8", errors="replace").rstrip())
    lines.put(None)


def process_group_options() -> dict:
    """Own process group (so a cancel stops pip's helpers too); on Linux, die with the parent thread."""
    if sys.platform.startswith("win"):
        return hidden_window()
    options: dict = {"start_new_session": True}
    if sys.platform.startswith("linux"):
        options["preexec_fn"] = die_with_parent
    return options


def die_with_parent() -> None:  # runs in the child between fork and exec
    import ctypes

    pr_set_pdeathsig = 1
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(pr_set_pdeathsig, signal.SIGKILL)


def stop_process(process: subprocess.Popen, wait_s: float = 10) -> None:
    """Terminate `process` and its group, politely then firmly."""
    if process.poll() is not None:
        return
    try:
        if sys.platform.startswith("win"):
            process.terminate()
        else:
            os.killpg(process.pid, signal.SIGTERM)
        process.wait(wait_s)
    except (OSError, subprocess.TimeoutExpired):
        if sys.platform.startswith("win"):
            process.kill()
        else:
            try:
                os.killpg(process.pid, signal.SIGKILL)
            except OSError:
                pass
        process.wait(wait_s)


def folder_size(folder: Path) -> int:
    total = 0
    for path, _dirs, files in os.walk(folder):
        for name in files:
            try:
                total += os.lstat(os.path.join(path, name)).st_size
            except OSError:
                pass
    return total
