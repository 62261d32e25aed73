"""The training and evaluation half of the plugin↔backend contract: the options of a fine-tuning run,
each stated once, and the wire types of the service's training, evaluation and model-store answers.

Standard library only, like `contract.py` (which holds the segment options and the segmentation API):
the plugin imports it inside QGIS's Python, the backend through its door `backend/contract.py`.
Everything that shows a training option is derived from `TRAINING_OPTIONS`: the service's `params` of
`POST /api/v1/train` (unknown fields refused) and the plugin's training form. Each option maps onto
one setting of `rs2sam2 train` (`training/config.py`'s TrainConfig; `train_flag`), whose own defaults
they repeat — tests/training/test_training_contract.py holds the two in step.

Endpoints (docs/service-api.md, "Training and evaluation"):
  POST   /train                     multipart: params, raster|path, labels|labels_path,
                                    [val_raster|val_path, val_labels|val_labels_path] → 202 TrainingJobCreated
  POST   /evaluate                  multipart: params (EVALUATION_OPTIONS), raster|path, labels|labels_path
                                    → 202 TrainingJobCreated
  GET    /training                  → TrainingJobList (every training and evaluation job, newest first)
  GET    /training/{job_id}         → TrainingJobStatus
  DELETE /training/{job_id}         cancel; a training run stops at its next step, resumable
  POST   /training/{job_id}/resume  → TrainingJobStatus (queued again)
  GET    /training/{job_id}/result  → EvaluationResult (evaluate) or PersonModel (train), when done
  GET    /models                    → PersonModelList (the person's own models)
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from .contract import CLI, PANEL, PROCESSING, SERVICE, ErrorDetail

EVERYWHERE = frozenset({CLI, SERVICE, PROCESSING, PANEL})

# -- job states and phases ----------------------------------------------------------------------------
TrainingState = Literal["queued", "running", "done", "failed", "cancelled", "interrupted"]
TRAINING_STATES: tuple[str, ...] = ("queued", "running", "done", "failed", "cancelled", "interrupted")
FINAL_TRAINING_STATES: tuple[str, ...] = ("done", "failed", "cancelled", "interrupted")
# cancelled: stopped at a step boundary on request; interrupted: the service stopped while it ran (a
# restart finds it). Both keep their run folder and resume where they stopped.
RESUMABLE_STATES: tuple[str, ...] = ("cancelled", "interrupted")
# What a running job does now. A segmentation request is answered between two steps meanwhile: the run
# shares the CPU/GPU with it (a child process of the service).
TRAINING_PHASES: tuple[str, ...] = (
    "queued",
    "preparing",  # reading the raster and labels, loading the starting model
    "training",
    "validating",
    "saving",  # writing the checkpoint, registering the model in the store
    "evaluating",  # an evaluation job segments the labelled area
    "done",
)
JOB_KINDS: tuple[str, ...] = ("train", "evaluate")

# training/README.md: "Label at least ~30–45 polygons, 5 or more per kind"; fewer are refused (400
# `too_few_labels`) before a run starts.
MIN_TRAINING_LABELS = 30
# The model a run fine-tunes when none is named: the bundled demo model (its name in the model list).
DEFAULT_START_MODEL = "demo"
# One labelled feature may name its object with several phrases, separated by this.
PHRASE_SEPARATOR = "|"
# The metrics the papers report (docs/method.md, "Evaluation protocol"), fractions in [0, 1]; the
# keys of training/metrics.py's summary.
SCORE_KEYS: tuple[str, ...] = ("Pr@0.5", "Pr@0.6", "Pr@0.7", "Pr@0.8", "Pr@0.9", "oIoU", "mIoU")

# -- the names of a person's models ---------------------------------------------------------------------
MODEL_NAME_MAX_CHARS = 64
_MODEL_NAME = re.compile(r"[^\W_][\w .\-]*", re.UNICODE)
# Names the backend's own models use (backend/weights/models.py); a person's model may not take them.
RESERVED_MODEL_NAMES: frozenset[str] = frozenset(
    {"demo", "paper-rrsisd", "paper-refsegrs", "test", "tiny", "base", "large"}
)


def model_name_problem(name: Any) -> str | None:
    """Why `name` cannot name a person's model, as a sentence; None when it can. Letters, digits,
    spaces, `.`, `-` and `_`, starting with a letter or digit: no path separators, no `..`, nothing a
    file system or a command line would read as something else."""
    if not isinstance(name, str) or not name.strip():
        return "give the new model a name"
    if name != name.strip():
        return "a model name must not start or end with a space"
    if len(name) > MODEL_NAME_MAX_CHARS:
        return f"a model name has at most {MODEL_NAME_MAX_CHARS} characters"
    if unicodedata.normalize("NFC", name) != name or not _MODEL_NAME.fullmatch(name) or ".." in name:
        return (
            f"the model name {name[:40]!r} may hold only letters, digits, spaces, '.', '-' and '_', "
            "starting with a letter or digit"
        )
    if name.lower() in RESERVED_MODEL_NAMES:
        return f"{name!r} is the name of one of the backend's own models; choose another"
    return None


# -- the options of a training run ----------------------------------------------------------------------
@dataclass(frozen=True)
class TrainingOption:
    """One setting of a fine-tuning run, as the service's `params` and the plugin's form show it."""

    name: str  # the field of `params`
    kind: Literal["str", "int", "bool", "choice"]
    label: str  # a few words, for forms
    help: str  # one line
    default: Any = None
    default_text: str = ""  # what None means
    required: bool = False
    minimum: int | None = None
    choices: tuple[tuple[str, str], ...] = ()  # (value, label) for kind "choice"
    train_flag: str = ""  # the `rs2sam2 train` flag it becomes; "" when the backend handles it itself
    error_code: str = "bad_option"  # the 400 code of a bad value (an unknown field: 422 bad_params)
    surfaces: frozenset[str] = EVERYWHERE

    @property
    def choice_values(self) -> tuple[str, ...]:
        return tuple(value for value, _ in self.choices)

    def describe(self) -> str:
        default = self.default_text if self.default is None else str(self.default).lower()
        return f"{self.help} (default: {default})" if default else self.help

    def problem(self, value: Any) -> str | None:
        """Why `value` is not allowed, as a clause; None when it is (None is, unless required)."""
        if value is None:
            return f"{self.name} is required" if self.required else None
        if self.kind == "bool":
            return None if isinstance(value, bool) else f"{self.name} must be true or false"
        if self.kind == "str":
            return (
                None if isinstance(value, str) and value.strip() else f"{self.name} must be a non-blank text"
            )
        if self.kind == "choice":
            return None if value in self.choice_values else f"{self.name} must be one of {self.choice_values}"
        if isinstance(value, bool) or not isinstance(value, int):
            return f"{self.name} must be a whole number"
        if self.minimum is not None and value < self.minimum:
            return f"{self.name} must be at least {self.minimum}"
        return None


TRAINING_OPTIONS: tuple[TrainingOption, ...] = (
    TrainingOption(
        "name",
        "str",
        "New model's name",
        "the name the trained model is saved under and chosen by (--model NAME, the plugin's model list)",
        required=True,
        error_code="bad_model_name",
    ),
    TrainingOption(
        "start_model",
        "str",
        "Start from",
        "the model to fine-tune: a model name of `rs2sam2 models list` or one of your own models",
        default_text="the bundled demo model",
        train_flag="--model",
        error_code="unknown_model",
    ),
    TrainingOption(
        "phrase_field",
        "str",
        "Phrase field",
        f"the labels' text column; one feature may hold several phrases separated by {PHRASE_SEPARATOR}",
        default="phrase",
    ),
    TrainingOption(
        "max_steps",
        "int",
        "Steps",
        "optimizer steps",
        default_text="the recipe's choice: 40 per labelled phrase, within 500–6000",
        minimum=1,
        train_flag="--max-steps",
    ),
    TrainingOption(
        "freeze",
        "choice",
        "Freeze",
        "encoders: keep the image and text encoders as they start (fewer weights to move on few labels)",
        default="none",
        choices=(("none", "train everything that trains"), ("encoders", "freeze the encoders")),
        train_flag="--freeze",
    ),
    TrainingOption(
        "replay",
        "bool",
        "Replay",
        "mix the starting model's own training data in, so it keeps what it knew (slower start)",
        default=True,
        train_flag="--replay-share",  # off: --replay-share 0
    ),
    TrainingOption("seed", "int", "Seed", "random seed", default=2401, minimum=0, train_flag="--seed"),
    TrainingOption(
        "overwrite",
        "bool",
        "Replace",
        "replace a model of yours with the same name (otherwise that name is refused: 409 model_exists)",
        default=False,
        surfaces=frozenset({SERVICE, PROCESSING, PANEL}),
    ),
)

EVALUATION_OPTIONS: tuple[TrainingOption, ...] = (
    TrainingOption(
        "model",
        "str",
        "Model",
        "the model to evaluate: a model name of `rs2sam2 models list` or one of your own models",
        default_text="the model the server runs",
        error_code="unknown_model",
    ),
    TRAINING_OPTIONS[2],  # phrase_field
)

TRAINING_OPTION_BY_NAME = {option.name: option for option in TRAINING_OPTIONS}
# The form fields of POST /train (POST /evaluate: the first four). `raster`/`path` as in /segment;
# labels: a GeoPackage or GeoJSON upload, or a server-side path under the allowed roots.
TRAIN_FORM_FIELDS: tuple[str, ...] = (
    "params",
    "raster",
    "path",
    "labels",
    "labels_path",
    "val_raster",
    "val_path",
    "val_labels",
    "val_labels_path",
)
EVALUATE_FORM_FIELDS: tuple[str, ...] = TRAIN_FORM_FIELDS[:5]
LABEL_SUFFIXES: tuple[str, ...] = (".gpkg", ".geojson", ".json")


def params_problems(
    values: Mapping[str, Any], options: tuple[TrainingOption, ...] = TRAINING_OPTIONS
) -> list[tuple[str, str]]:
    """[(error code, clause)] for unknown fields and every value out of bounds."""
    known = {option.name for option in options}
    problems = [("bad_params", f"unknown field {name!r}") for name in values if name not in known]
    for option in options:
        clause = option.problem(values.get(option.name))
        if clause:
            problems.append((option.error_code, clause))
    if not problems and "name" in known:
        clause = model_name_problem(values.get("name"))
        if clause:
            problems.append(("bad_model_name", clause))
    return problems


def resolved_params(
    values: Mapping[str, Any], options: tuple[TrainingOption, ...] = TRAINING_OPTIONS
) -> dict[str, Any]:
    """`values` with every option that is not given (or null) at its default."""
    return {
        option.name: option.default if values.get(option.name) is None else values[option.name]
        for option in options
    }


def training_options_table(options: tuple[TrainingOption, ...] = TRAINING_OPTIONS) -> str:
    """The training params table of docs/service-api.md (scripts/write_api_docs.py writes it)."""
    rows = ["| field | type | default | what |", "|---|---|---|---|"]
    for option in options:
        kind = {"str": "string", "int": "integer", "bool": "boolean", "choice": "string"}[option.kind]
        if option.kind == "choice":
            kind = ", ".join(f"`{value}`" for value in option.choice_values)
        elif option.minimum is not None:
            kind += f" ≥ {option.minimum}"
        if option.required:
            default = "– (required)"
        elif option.default is None:
            default = f"null: {option.default_text}"
        else:
            default = (
                f"`{str(option.default).lower() if isinstance(option.default, bool) else option.default}`"
            )
        rows.append(f"| `{option.name}` | {kind} | {default} | {option.help.replace('|', chr(92) + '|')} |")
    return "\n".join(rows)


# -- the answers -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Scores:
    """The papers' metrics over some samples: Pr@0.5…0.9, oIoU, mIoU (fractions), and how many."""

    values: dict[str, float]  # SCORE_KEYS → value
    samples: int = 0

    def to_json(self) -> dict[str, Any]:
        return {**{key: self.values.get(key) for key in SCORE_KEYS}, "samples": self.samples}

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | None) -> Scores | None:
        if not data:
            return None
        values = {key: float(data[key]) for key in SCORE_KEYS if data.get(key) is not None}
        return cls(values, int(data.get("samples") or 0))


@dataclass(frozen=True)
class LabelReport:
    """What became of the labels sent: used, and dropped with why."""

    used: int
    outside: int = 0  # not on the raster
    empty: int = 0  # no geometry, an empty or zero-area one
    no_phrase: int = 0  # the phrase field missing or blank
    reprojected_from: str | None = None  # the labels' CRS when it was not the raster's

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | None) -> LabelReport | None:
        if not data:
            return None
        return cls(
            int(data.get("used") or 0),
            int(data.get("outside") or 0),
            int(data.get("empty") or 0),
            int(data.get("no_phrase") or 0),
            data.get("reprojected_from") or None,
        )


@dataclass(frozen=True)
class TrainingJobCreated:
    job_id: str
    kind: str  # "train" or "evaluate"
    state: TrainingState
    status_url: str  # the path of GET /training/{job_id}
    queue_position: int  # 0: it runs now; n: n jobs run or wait before it
    labels: LabelReport | None = None
    val_labels: LabelReport | None = None


@dataclass(frozen=True)
class TrainingJobStatus:
    job_id: str
    kind: str
    state: TrainingState
    phase: str
    model_name: str  # the new model's (train) or the evaluated model's name (evaluate)
    run_id: str  # the run folder's name on the server
    step: int = 0
    total_steps: int = 0
    loss: float | None = None  # the last logged training loss
    validation: Scores | None = None  # the latest validation scores (None: none yet, or no validation)
    message: str = ""  # one sentence for a person: what happens now, or why it stopped
    resumable: bool = False  # POST …/resume continues it where it stopped
    queue_position: int | None = None  # while queued: jobs before it; else None
    error: ErrorDetail | None = None
    created: str = ""  # ISO 8601, UTC

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> TrainingJobStatus:
        error = data.get("error") or None
        return cls(
            job_id=str(data.get("job_id", "")),
            kind=str(data.get("kind", "train")),
            state=str(data.get("state", "")),  # type: ignore[arg-type]
            phase=str(data.get("phase", "")),
            model_name=str(data.get("model_name", "")),
            run_id=str(data.get("run_id", "")),
            step=int(data.get("step") or 0),
            total_steps=int(data.get("total_steps") or 0),
            loss=None if data.get("loss") is None else float(data["loss"]),
            validation=Scores.from_json(data.get("validation")),
            message=str(data.get("message", "")),
            resumable=bool(data.get("resumable", False)),
            queue_position=data.get("queue_position"),
            error=ErrorDetail(str(error.get("code", "")), str(error.get("message", ""))) if error else None,
            created=str(data.get("created", "")),
        )

    @property
    def fraction(self) -> float:
        return self.step / self.total_steps if self.total_steps > 0 else 0.0


@dataclass(frozen=True)
class TrainingJobList:
    jobs: list[TrainingJobStatus]
    running: str | None = None  # the job id that trains or evaluates now (it shares the CPU/GPU)


@dataclass(frozen=True)
class EvaluationResult:
    """A model's scores on a labelled area, segmented with the product's engine (one query per label,
    the panel's protocol): overall, by kind (the phrase's head noun) and by phrase."""

    model: str
    overall: Scores
    by_kind: dict[str, Scores] = field(default_factory=dict)
    by_phrase: dict[str, Scores] = field(default_factory=dict)
    labels: LabelReport | None = None

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> EvaluationResult:
        def table(name: str) -> dict[str, Scores]:
            return {key: Scores.from_json(value) for key, value in (data.get(name) or {}).items()}

        return cls(
            model=str(data.get("model", "")),
            overall=Scores.from_json(data.get("overall")) or Scores({}),
            by_kind=table("by_kind"),
            by_phrase=table("by_phrase"),
            labels=LabelReport.from_json(data.get("labels")),
        )


@dataclass(frozen=True)
class PersonModel:
    """A model a person trained (or imported): what `rs2sam2 models list --json` and GET /models show."""

    name: str
    created: str  # ISO 8601, UTC
    start_model: str  # the model it was fine-tuned from
    labels: int  # labelled features it was trained on
    scores: Scores | None = None  # validation scores of the kept checkpoint (None: no validation)
    recipe: dict[str, Any] = field(default_factory=dict)  # steps, recipe, freeze, replay, seed …
    size_bytes: int = 0

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> PersonModel:
        return cls(
            name=str(data.get("name", "")),
            created=str(data.get("created", "")),
            start_model=str(data.get("start_model", "")),
            labels=int(data.get("labels") or 0),
            scores=Scores.from_json(data.get("scores")),
            recipe=dict(data.get("recipe") or {}),
            size_bytes=int(data.get("size_bytes") or 0),
        )


@dataclass(frozen=True)
class PersonModelList:
    models: list[PersonModel]
    folder: str = ""  # where the backend keeps them


def to_wire(value: Any) -> Any:
    """The JSON form of the answers above (a `Scores` flat: {"Pr@0.5": …, "mIoU": …, "samples": n})."""
    if isinstance(value, Scores):
        return value.to_json()
    if hasattr(value, "__dataclass_fields__"):
        return {name: to_wire(getattr(value, name)) for name in value.__dataclass_fields__}
    if isinstance(value, dict):
        return {key: to_wire(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [to_wire(item) for item in value]
    return value
