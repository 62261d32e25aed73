"""Commands of the local backend's environment run in QgsTasks: `rs2sam2 models --json` (what the model
manager lists) and `rs2sam2 weights download …` (with its progress read from the download's bar)."""

from __future__ import annotations

import json
import re
import subprocess
import threading
from dataclasses import dataclass, field

from qgis.core import Qgis, QgsMessageLog, QgsTask

from ..resources import LOG_TAG
from ..settings import PluginSettings
from ..setup.steps import process_group_options, stop_process
from ..training_contract import PersonModel
from .local_process import process_environment

PERCENT = re.compile(r"(\d{1,3})%\|")  # tqdm's bar: "name:  45%|████▌     | 70.0M/156M [...]"


@dataclass(frozen=True)
class ModelEntry:
    """One model of the manager (from `rs2sam2 models --json`, or one of the user's own files)."""

    id: str
    label: str
    kind: str  # bundled | published | pretrained | own
    present: bool
    size_bytes: int
    servable: bool
    checkpoint: str | None = None
    download: tuple[str, ...] = ()
    files: tuple[str, ...] = field(default=())

    @classmethod
    def from_json(cls, data: dict) -> ModelEntry:
        return cls(
            id=str(data["id"]),
            label=str(data["label"]),
            kind=str(data["kind"]),
            present=bool(data["present"]),
            size_bytes=int(data.get("size_bytes") or 0),
            servable=bool(data["servable"]),
            checkpoint=data.get("checkpoint"),
            download=tuple(data.get("download") or ()),
            files=tuple(data.get("files") or ()),
        )


def backend_command(settings: PluginSettings, *args: str) -> list[str]:
    return [settings.local_python(), "-m", "backend.cli", *args]


class BackendCommandTask(QgsTask):
    """Runs one backend command; `output` (its lines), `code` and `error` afterwards."""

    def __init__(
        self, description: str, settings: PluginSettings, args: list[str], on_done, log_output=False
    ):
        super().__init__(description, QgsTask.CanCancel)
        self.command = backend_command(settings, *args)
        self.env = process_environment(settings)
        self.cwd = settings.working_dir or None
        self.on_done = on_done
        self.log_output = log_output
        self.output: list[str] = []
        self.code: int | None = None
        self.error = ""

    def run(self) -> bool:
        try:
            process = subprocess.Popen(
                self.command,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=self.env,
                cwd=self.cwd,
                **process_group_options(),
            )
        except OSError as exc:
            self.error = f"“{self.command[0]}” could not be started ({exc.strerror or exc})."
            return False
        watcher = threading.Thread(target=self._watch_cancel, args=(process,), daemon=True)
        watcher.start()
        buffer = b""
        for chunk in iter(lambda: process.stdout.read1(4096), b""):
            buffer += chunk
            *lines, buffer = re.split(rb"[\r\n]", buffer)
            for raw in lines:
                if raw.strip():
                    self._line(raw.decode("utf-8", errors="replace").rstrip())
        if buffer.strip():
            self._line(buffer.decode("utf-8", errors="replace").rstrip())
        self.code = process.wait()
        if self.isCanceled():
            return False
        if self.code != 0:
            problem = [line for line in self.output if ": error: " in line] or self.output[-1:] or [""]
            self.error = problem[-1].split(": error: ", 1)[-1].strip() or f"exit code {self.code}"
            return False
        return True

    def _watch_cancel(self, process: subprocess.Popen) -> None:
        while process.poll() is None:
            if self.isCanceled():
                stop_process(process)
                return
            threading.Event().wait(0.2)

    def _line(self, line: str) -> None:
        self.output.append(line)
        if self.log_output and not PERCENT.search(line):
            QgsMessageLog.logMessage(line, LOG_TAG, Qgis.Info)
        self.parse(line)

    def parse(self, line: str) -> None:
        """Subclasses read progress from the output here."""

    def finished(self, result: bool) -> None:  # noqa: ARG002
        self.on_done(self)


class CatalogueTask(BackendCommandTask):
    def __init__(self, settings: PluginSettings, on_done):
        super().__init__("RS2-SAM 2: listing models", settings, ["models", "--json"], on_done)
        self.entries: list[ModelEntry] = []
        self.cache = ""
        self.person_models: list[PersonModel] = []  # the person's own models (their meta.json)
        self.person_folder = ""

    def run(self) -> bool:
        if not super().run():
            return False
        try:
            data = json.loads(next(line for line in reversed(self.output) if line.startswith("{")))
            self.entries = [ModelEntry.from_json(item) for item in data["models"]]
            self.cache = str(data.get("cache", ""))
            self.person_models = [PersonModel.from_json(item) for item in data.get("person_models") or ()]
            self.person_folder = str(data.get("person_models_folder", ""))
        except (StopIteration, ValueError, KeyError, TypeError) as exc:
            self.error = f"the backend's model list could not be read ({exc.__class__.__name__})"
            return False
        return True


class ModelActionTask(BackendCommandTask):
    """`rs2sam2 models rename|delete|export|import … --json` on the person's own models; `answer` (the
    command's JSON: a PersonModel, {"deleted": NAME} or {"name", "file"}) or `error` (one sentence)."""

    def __init__(self, settings: PluginSettings, action: str, args: list[str], on_done):
        super().__init__(
            f"RS2-SAM 2: models {action}", settings, ["models", action, *args, "--json"], on_done
        )
        self.action, self.args = action, list(args)
        self.answer: dict = {}

    def run(self) -> bool:
        if not super().run():
            return False
        try:
            self.answer = json.loads(next(line for line in reversed(self.output) if line.startswith("{")))
        except (StopIteration, ValueError):
            self.error = f"the backend's answer to `models {self.action}` could not be read"
            return False
        return True


class DownloadTask(BackendCommandTask):
    """`rs2sam2 weights download <entry.download>`: resumable and verified by the backend; progress over
    all of the entry's files (one bar per file in the command's output)."""

    def __init__(self, settings: PluginSettings, entry: ModelEntry, on_done):
        args = ["weights", "download", *entry.download]
        if settings.download_mirror.strip():
            args += ["--mirror", settings.download_mirror.strip()]
        super().__init__(f"RS2-SAM 2: downloading {entry.id}", settings, args, on_done, log_output=True)
        self.entry = entry
        self.files = max(1, len(entry.files))
        self.done_files = 0

    def parse(self, line: str) -> None:
        if line.startswith(("downloaded", "cached:")):
            self.done_files = min(self.files, self.done_files + 1)
            self.setProgress(100.0 * self.done_files / self.files)
            return
        match = PERCENT.search(line)
        if match:
            fraction = (self.done_files + min(100, int(match.group(1))) / 100) / self.files
            self.setProgress(min(99.0, 100.0 * fraction))
