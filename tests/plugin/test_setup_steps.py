"""The first-run set-up's parts, each on its own: the state file and what it reads as, the choice of torch
build and of interpreter, and a set-up that fails or is cancelled (real venv, real pip, offline).
The whole set-up from the plugin zip is in test_first_run_setup.py."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest

from rs2sam2_qgis.setup.backend_env import INCOMPLETE, MISSING, OUTDATED, READY, Bundle, EnvLayout, inspect
from rs2sam2_qgis.setup.interpreters import InterpreterError, find_interpreter, supported_range
from rs2sam2_qgis.setup.steps import SetupCancelled, SetupError, SetupOptions, SetupRunner
from rs2sam2_qgis.setup.torch_build import choose_build

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture()
def bundle(tmp_path) -> Bundle:
    """A bundle folder as `make plugin` writes one (manifest, constraints, a pyproject)."""
    folder = tmp_path / "bundle"
    folder.mkdir()
    manifest = {
        "name": "rs2sam2",
        "version": "0.1.0",
        "requires_python": ">=3.10,<3.13",
        "build_requires": ["setuptools>=68"],
        "staged": {"torch": "torch==2.14.1", "torchvision": "torchvision==0.29.1", "sam2": "sam2==1.1.0"},
        "fingerprint": "f" * 64,
    }
    (folder / "manifest.json").write_text(json.dumps(manifest))
    (folder / "constraints.txt").write_text("torch==2.14.1\ntorchvision==0.29.1\n")
    return Bundle.load(folder)


def _ready(layout: EnvLayout, fingerprint: str) -> None:
    layout.python.parent.mkdir(parents=True)
    layout.python.write_text("")
    layout.write_state(
        state="ready", fingerprint=fingerprint, version="0.0.9", torch="2.14.1+cpu", cuda=False
    )


def test_the_state_file_decides_what_an_environment_is(tmp_path, bundle):
    layout = EnvLayout(tmp_path / "setup")
    assert inspect(layout, bundle).status == MISSING
    layout.write_state(state="installing")
    status = inspect(layout, bundle)
    assert status.status == INCOMPLETE and not status.usable
    assert status.message == "The last set-up of the local backend did not finish; repair it."
    layout.write_state(state="failed")
    assert inspect(layout, bundle).message == "The last set-up of the local backend failed; repair it."
    layout.state_file.unlink()
    layout.env.mkdir(parents=True)  # an environment without a state file: never trusted
    assert inspect(layout, bundle).status == INCOMPLETE
    _ready(layout, bundle.fingerprint)
    assert inspect(layout, bundle).status == READY and inspect(layout, bundle).usable
    layout.write_state(state="ready", fingerprint="0" * 64, version="0.0.9")
    outdated = inspect(layout, bundle)
    assert outdated.status == OUTDATED and outdated.usable
    assert outdated.message.startswith("The local backend is version 0.0.9; the plugin brings 0.1.0")
    layout.python.unlink()  # "ready" but the interpreter is gone
    assert inspect(layout, bundle).status == INCOMPLETE


@pytest.mark.parametrize(
    "preference, platform, gpu, build, index",
    [
        ("auto", "linux", "", "cpu", "https://download.pytorch.org/whl/cpu"),
        ("auto", "linux", "NVIDIA RTX A4000", "cuda", None),  # PyPI's Linux torch is the CUDA build
        ("auto", "win32", "", "cpu", None),  # PyPI's Windows torch is the CPU build
        ("auto", "win32", "NVIDIA RTX A4000", "cuda", "https://download.pytorch.org/whl/cu130"),
        ("cuda", "darwin", "", "cuda", None),  # one build on macOS
        ("cpu", "linux", "NVIDIA RTX A4000", "cpu", "https://download.pytorch.org/whl/cpu"),
    ],
)
def test_the_torch_build_follows_the_machine_unless_chosen(preference, platform, gpu, build, index):
    chosen = choose_build(preference, platform=platform, gpu=gpu)
    assert chosen.name == build
    assert chosen.pip_args == (("--extra-index-url", index) if index else ())
    custom = choose_build(preference, "https://mirror.example/torch", platform=platform, gpu=gpu)
    assert custom.pip_args == ("--extra-index-url", "https://mirror.example/torch")


def test_the_interpreter_is_found_and_an_unusable_one_explained(tmp_path):
    assert supported_range(">=3.10,<3.13") == ((3, 10), (3, 13))
    found = find_interpreter("", ">=3.10,<3.13")
    assert (3, 10) <= found.version[:2] < (3, 13)
    assert find_interpreter(sys.executable, ">=3.10,<3.13").version[:2] == sys.version_info[:2]
    with pytest.raises(InterpreterError) as missing:
        find_interpreter(str(tmp_path / "python9"), ">=3.10,<3.13")
    assert str(missing.value).startswith("No Python 3.10–3.12 that can make virtual environments was found")
    assert "python9 does not run" in str(missing.value)
    with pytest.raises(InterpreterError, match=rf"is Python {sys.version_info[0]}\.{sys.version_info[1]}"):
        find_interpreter(sys.executable, ">=3.7,<3.8")


def test_a_failed_install_says_where_in_one_sentence_and_is_never_ready(tmp_path, bundle):
    empty = tmp_path / "wheels"
    empty.mkdir()
    layout = EnvLayout(tmp_path / "setup")
    lines: list[str] = []
    runner = SetupRunner(
        SetupOptions(layout.root, python=sys.executable, wheel_folder=str(empty)), bundle, lines.append
    )
    with pytest.raises(SetupError) as failed:
        runner.run()
    message = str(failed.value)
    assert message.startswith("The set-up of the local backend failed at “Installing torch (")
    # pip's first ERROR line after its exit status, naming the requirement it could not install (its
    # wording varies with pip's version and what the folder holds: "No matching distribution found for
    # torch==2.14.1", "Cannot install torch==2.14.1 because these package versions have conflicting
    # dependencies." …).
    assert re.search(r"\(exit code 1: [^;()]*\btorch==2\.14\.1\b[^;]*\); the whole output", message), message
    assert message.endswith(f"the whole output is in {layout.log_file}.")
    assert layout.read_state()["state"] == "failed" and layout.read_state()["step"] == "torch"
    assert inspect(layout, bundle).status == INCOMPLETE
    assert "== Creating the environment" in layout.log_file.read_text()
    assert any(line.startswith("ERROR") for line in lines)  # pip's own words reach the caller (the log)


def test_cancelling_stops_pip_and_marks_the_folder(tmp_path, bundle):
    layout = EnvLayout(tmp_path / "setup")
    steps: list[str] = []
    runner = SetupRunner(
        SetupOptions(layout.root, python=sys.executable, torch_build="cpu", wheel_folder=str(tmp_path)),
        bundle,
        on_progress=lambda fraction, label: steps.append(label) if label not in steps else None,
        is_cancelled=lambda: len(steps) > 1,  # once the environment exists and pip is about to start
    )
    with pytest.raises(SetupCancelled):
        runner.run()
    assert steps == ["Creating the environment", "Installing torch (cpu build)"]
    assert layout.read_state()["state"] == "cancelled"
    assert inspect(layout, bundle).message == "The last set-up of the local backend was cancelled; repair it."
