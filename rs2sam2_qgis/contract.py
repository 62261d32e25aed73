"""The one contract between the plugin and the backend: every segment option and the HTTP API's wire
constants and types, each stated once.

Standard library only. The QGIS plugin imports it inside QGIS's Python (no torch there), the backend
imports it in its own environment; the plugin zip carries it because QGIS only sees the plugin folder.
Everything that shows a segment option is derived from `OPTIONS`:

- `rs2sam2 segment`'s flags (`backend/engine/cli.py`),
- the engine's `EngineOptions` and its checks (`backend/engine/options.py`, `backend/engine/segment.py`),
- the service's `params` schema and its help (`backend/service/schemas.py`),
- the plugin's request (`rs2sam2_qgis/connection/request.py`), the Processing parameters, the panel's
  widgets,
- the options table of `docs/service-api.md` (`tests/test_contract.py` checks it is current).

A new option is one more `Option(...)` below.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import math
import urllib.parse
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

# -- the model's precision modes ----------------------------------------------------------------------
# `--precision` of the commands, `serve --precision` and the plugin's setting for its local backend; what
# each mode means and how `auto` chooses: backend/model/precision.py.
PRECISIONS: tuple[str, ...] = ("auto", "fp32", "bf16", "int8", "openvino")

# -- the HTTP API's wire constants ------------------------------------------------------------------
API_PREFIX = "/api/v1"
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8765
TOKEN_ENV = "RS2SAM2_TOKEN"  # the bearer token may come from the environment instead of the command line

JobState = Literal["queued", "running", "done", "failed", "cancelled"]
FINAL_JOB_STATES: tuple[str, ...] = ("done", "failed", "cancelled")

# Where an option shows: the command line, the service's params, the Processing algorithm, the panel.
CLI, SERVICE, PROCESSING, PANEL = "cli", "service", "processing", "panel"
EVERYWHERE = frozenset({CLI, SERVICE, PROCESSING, PANEL})

_UNSET = object()


def is_loopback_host(host: str) -> bool:
    """True for localhost, 127.0.0.0/8 and ::1 (an address or a host name)."""
    host = host.strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def is_loopback_url(url: str) -> bool:
    return is_loopback_host(urllib.parse.urlsplit(url).hostname or "")


# -- segment options --------------------------------------------------------------------------------
@dataclass(frozen=True)
class DependentDefault:
    """A default that follows another option's value: `on`'s value → this option's value."""

    on: str
    values: tuple[tuple[Any, Any], ...]

    def value_for(self, values: Mapping[str, Any]) -> Any:
        return dict(self.values)[values[self.on]]

    def text(self) -> str:
        """ "view when keep is best, tiles when keep is all" """
        return ", ".join(f"{mine} when {self.on} is {theirs}" for theirs, mine in self.values)

    def short_text(self) -> str:
        """ "by keep: best → view, all → tiles" (a form's choice)"""
        return f"by {self.on}: " + ", ".join(f"{theirs} → {mine}" for theirs, mine in self.values)


@dataclass(frozen=True)
class Option:
    """One knob of a segmentation run, as every entry point shows it.

    `default` None means "the engine decides", and `default_text` says what it decides; with
    `default_from` the engine's choice follows another option (resolved by `resolve_defaults`), and
    forms offer it as a choice of its own ("by keep: …").
    """

    name: str  # the field of `params` and of the engine's and the plugin's options
    kind: Literal["float", "int", "choice", "ints"]
    label: str  # a few words, for forms
    help: str  # one line
    default: Any = None
    default_text: str = ""
    unit: str = ""
    minimum: float | None = None
    maximum: float | None = None
    min_exclusive: bool = False
    max_exclusive: bool = False
    choices: tuple[tuple[str, str], ...] = ()  # (value, label) for kind "choice"
    cli_flag: str = ""  # default: --name-with-dashes
    cli_default: Any = _UNSET  # where the command line's default differs (see KEEP)
    error_code: str = "bad_input"  # the 400 code when a value is out of bounds
    surfaces: frozenset[str] = EVERYWHERE
    default_from: DependentDefault | None = None  # a default that follows another option (see CONTEXT)

    @property
    def flag(self) -> str:
        return self.cli_flag or "--" + self.name.replace("_", "-")

    @property
    def choice_values(self) -> tuple[str, ...]:
        return tuple(value for value, _ in self.choices)

    def default_for(self, surface: str) -> Any:
        if surface == CLI and self.cli_default is not _UNSET:
            return self.cli_default
        return self.default

    def bounds_text(self) -> str:
        """ "at least 0 and below 1", "positive" …; empty when unbounded."""
        parts = []
        if self.minimum is not None:
            if self.minimum == 0 and self.min_exclusive:
                parts.append("positive")
            else:
                parts.append(f"{'above' if self.min_exclusive else 'at least'} {_number(self.minimum)}")
        if self.maximum is not None:
            parts.append(f"{'below' if self.max_exclusive else 'at most'} {_number(self.maximum)}")
        return " and ".join(parts)

    def describe_default(self, surface: str = SERVICE) -> str:
        value = self.default_for(surface)
        if value is not None:
            return str(value)
        return self.default_text or (self.default_from.text() if self.default_from else "")

    @property
    def default_choice_label(self) -> str:
        """What a form shows for "the engine's default" of a choice without a fixed default."""
        if self.default_from is not None:
            return self.default_from.short_text()
        return f"default: {self.describe_default()}"

    def describe(self, surface: str = SERVICE) -> str:
        """The one-line help with unit and default: what a form's tooltip or `--help` shows."""
        unit = f"{self.unit}; " if self.unit and self.unit != "probability" else ""
        return f"{self.help} ({unit}default: {self.describe_default(surface)})"

    def problem(self, value: Any) -> str | None:
        """Why `value` is not allowed for this option, as a clause; None when it is (None always is)."""
        if value is None:
            return None
        if self.kind == "choice":
            if value not in self.choice_values:
                return f"{self.name} must be one of {', '.join(map(repr, self.choice_values))}"
            return None
        values = list(value) if self.kind == "ints" else [value]
        for item in values:
            if isinstance(item, bool) or not isinstance(item, int | float) or not math.isfinite(item):
                return f"{self.name} must be {'whole numbers' if self.kind == 'ints' else 'a number'}"
            if self.kind in ("int", "ints") and item != int(item):
                return f"{self.name} must be {'whole numbers' if self.kind == 'ints' else 'a whole number'}"
            low_bad = self.minimum is not None and (
                item <= self.minimum if self.min_exclusive else item < self.minimum
            )
            high_bad = self.maximum is not None and (
                item >= self.maximum if self.max_exclusive else item > self.maximum
            )
            if low_bad or high_bad:
                if self.kind == "ints":
                    return f"every value of {self.name} must be {self.bounds_text()}"
                unit = f" {self.unit}" if self.unit and self.kind == "int" else ""
                return f"the {self.label.lower()} ({self.name}) must be {self.bounds_text()}{unit}"
        return None


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


# View mode (the context option; docs/method.md, "What area the model sees") shrinks the whole area
# to the model's input; beyond this factor per side objects become too small to tell apart, and the
# run is refused with a message (error code below).
MAX_CONTEXT_SHRINK = 8
AREA_TOO_LARGE = "area_too_large"
# The probability above which a pixel belongs to a phrase's object, for a model that states no threshold
# of its own. The threshold option's default is the model's own: a model's configuration may state
# another (the paper family's reproduces its reference's masks; backend/model/presets.py), and a
# threshold a person sets wins over both.
DEFAULT_THRESHOLD = 0.5

OPTIONS: tuple[Option, ...] = (
    Option(
        "threshold",
        "float",
        "Threshold",
        "probability above which a pixel belongs to the phrase's object",
        default_text=f"the model's own ({_number(DEFAULT_THRESHOLD)} unless the model states another)",
        unit="probability",
        minimum=0.0,
        maximum=1.0,
        max_exclusive=True,
        error_code="bad_threshold",
    ),
    Option(
        "keep",
        "choice",
        "Keep",
        "best: one object per phrase (in view mode the model's answer for the whole area, in all its "
        "parts; in tiles mode the region with the largest probability mass); all: every region above "
        "the threshold",
        default="best",  # an interactive request (plugin → service) names one object …
        cli_default="all",  # … a batch run from the command line wants every object
        choices=(("best", "best match per phrase"), ("all", "all matches")),
        error_code="bad_keep",
    ),
    Option(
        "context",
        "choice",
        "Context",
        "view: the model sees the whole area at once (so 'the largest', 'on the left' mean in this area), "
        "then the object found is refined at full resolution; tiles: every tile is answered on its own "
        "(batch searches for every object of a kind over large mosaics)",
        default_from=DependentDefault("keep", (("best", "view"), ("all", "tiles"))),
        choices=(("view", "view: the whole area at once"), ("tiles", "tiles: tile by tile")),
        error_code="bad_context",
    ),
    Option(
        "simplify",
        "float",
        "Simplify tolerance",
        "simplification tolerance of the polygons; 0 = off",
        default_text="one pixel",
        unit="map units",
        minimum=0.0,
        error_code="bad_simplify",
    ),
    Option(
        "min_area",
        "float",
        "Minimum area",
        "drop polygons smaller than this",
        default_text="4 pixels",
        unit="map units²",
        minimum=0.0,
        error_code="bad_min_area",
    ),
    Option(
        "tile_size",
        "int",
        "Tile size",
        "side of the square tiles the raster is cut into",
        default_text="the model's input size",
        unit="pixels",
        minimum=16,
        cli_flag="--tile",
        error_code="bad_tiling",
        surfaces=frozenset({CLI, SERVICE, PROCESSING}),
    ),
    Option(
        "overlap",
        "int",
        "Tile overlap",
        "overlap of neighbouring tiles, at most half the tile size",
        default_text="an eighth of the tile",
        unit="pixels",
        minimum=0,
        error_code="bad_tiling",
        surfaces=frozenset({CLI, SERVICE, PROCESSING}),
    ),
    Option(
        "gsd",
        "float",
        "Ground sampling distance",
        "resample to this resolution on read (also the resolution web layers are rendered at)",
        default_text="native",
        unit="m/pixel",
        minimum=0.0,
        min_exclusive=True,
        error_code="bad_gsd",
        surfaces=frozenset({CLI, SERVICE, PROCESSING}),
    ),
    Option(
        "bands",
        "ints",
        "Bands",
        "1-based band numbers to use as RGB (three) or as grey (one), e.g. 3,2,1",
        default_text="red, green, blue by colour interpretation, else the first three; one band as grey",
        minimum=1,
        error_code="bad_bands",
        surfaces=frozenset({CLI, SERVICE}),
    ),
)

OPTION_BY_NAME: dict[str, Option] = {option.name: option for option in OPTIONS}


def options_on(surface: str) -> tuple[Option, ...]:
    return tuple(option for option in OPTIONS if surface in option.surfaces)


def resolve_defaults(values: Mapping[str, Any]) -> dict[str, Any]:
    """`values` with every unset option whose default follows another (`default_from`) filled in:
    the one place those defaults are decided (e.g. context: view for keep best, tiles for keep all)."""
    resolved = dict(values)
    for option in OPTIONS:
        if option.default_from is not None and resolved.get(option.name) is None:
            resolved[option.name] = option.default_from.value_for(resolved)
    return resolved


def option_problems(values: Mapping[str, Any]) -> list[tuple[str, str]]:
    """[(error code, clause)] for every option value out of bounds, including the cross-field rules."""
    problems = []
    for option in OPTIONS:
        if option.name in values:
            clause = option.problem(values[option.name])
            if clause:
                problems.append((option.error_code, clause))
    tile, overlap = values.get("tile_size"), values.get("overlap")
    if not problems and tile is not None and overlap is not None and overlap > tile // 2:
        problems.append(("bad_tiling", "the overlap must be between 0 and half the tile size"))
    return problems


def options_class(
    class_name: str,
    surface: str,
    extra_fields: Sequence[tuple[str, Any, Any]] = (),
    check_choices: bool = False,
    module: str | None = None,
) -> type:
    """A frozen dataclass with one field per option shown on `surface` (defaults from the contract),
    then `extra_fields` as (name, type, dataclasses.field or default).

    `check_choices`: refuse a value outside a choice option's values when the object is made
    (the plugin's forms); the engine checks every option itself and answers with an error code.
    """
    fields: list[tuple[str, Any, Any]] = []
    for option in options_on(surface):
        fields.append((option.name, _python_type(option), field(default=option.default_for(surface))))
    fields.extend(extra_fields)
    namespace: dict[str, Any] = {}
    if check_choices:

        def __post_init__(self) -> None:  # noqa: N807 - the dataclass hook
            for option in options_on(surface):
                value = getattr(self, option.name)
                if option.kind == "choice" and option.problem(value) is not None:
                    raise ValueError(f"{option.name} must be one of {option.choice_values}")

        namespace["__post_init__"] = __post_init__
    cls = dataclasses.make_dataclass(class_name, fields, frozen=True, namespace=namespace)
    if module:
        cls.__module__ = module
    cls.__doc__ = f"The segment options of the {surface} (generated from rs2sam2_qgis.contract.OPTIONS)."
    return cls


def _python_type(option: Option) -> Any:
    return {
        "float": float | None,
        "int": int | None,
        "choice": str if option.default is not None else str | None,
        "ints": tuple[int, ...] | None,
    }[option.kind]


def option_values(options: Any, surface: str = SERVICE) -> dict[str, Any]:
    """The option fields of an options object as the JSON `params` carry them (tuples as lists)."""
    values = {}
    for option in options_on(surface):
        if hasattr(options, option.name):
            value = getattr(options, option.name)
            values[option.name] = list(value) if isinstance(value, tuple) else value
    return values


# -- the `params` of /segment and /jobs -------------------------------------------------------------
# (name, type, what null means, what it is)
AREA_FIELDS = (
    ("bbox", "4 numbers", "the whole raster", "minx, miny, maxx, maxy in the raster's CRS or `bbox_crs`"),
    ("bbox_crs", "string", "the raster's CRS", "CRS of `bbox`, e.g. `EPSG:4326`"),
)


def params_help() -> str:
    """The one-line description of the `params` form field (OpenAPI)."""
    names = ["phrases", *(row[0] for row in AREA_FIELDS), *(o.name for o in options_on(SERVICE))]
    return "JSON: " + ", ".join(names)


def segment_params_json(
    phrases: Iterable[str],
    options: Any,
    bbox: Sequence[float] | None = None,
    bbox_crs: str | None = None,
) -> dict[str, Any]:
    """The `params` JSON of /segment and /jobs from phrases, an options object and an optional area."""
    params: dict[str, Any] = {"phrases": list(phrases), **option_values(options)}
    if bbox is not None:
        params["bbox"] = [float(value) for value in bbox]
        if bbox_crs:
            params["bbox_crs"] = bbox_crs
    return params


def options_markdown_table() -> str:
    """The options table of docs/service-api.md."""
    rows = [
        "| field | type | default | allowed | what |",
        "|---|---|---|---|---|",
        "| `phrases` | list of strings | – (required) | at least one, none blank | what to look for |",
    ]
    rows += [
        f"| `{name}` | {kind} | null: {default} | | {what} |" for name, kind, default, what in AREA_FIELDS
    ]
    for option in options_on(SERVICE):
        kind = {"float": "number", "int": "integer", "choice": "string", "ints": "list of integers"}
        allowed = option.bounds_text() or ""
        if option.kind == "choice":
            allowed = ", ".join(f"`{value}`" for value in option.choice_values)
        unit = f" ({option.unit})" if option.unit and option.unit != "probability" else ""
        default = (
            f"`{option.default}`" if option.default is not None else f"null: {option.describe_default()}"
        )
        if option.default_for(CLI) != option.default:
            default += f" (command line: `{option.default_for(CLI)}`)"
        rows.append(
            f"| `{option.name}` | {kind[option.kind]}{unit} | {default} | {allowed} | {option.help} |"
        )
    return "\n".join(rows)


# -- the API's answers (the service's response models; the plugin parses them) --------------------
@dataclass(frozen=True)
class ModelInfo:
    id: str
    preset: str | None
    input_size: int
    device: str
    precision: str = ""  # fp32, bf16, int8 or openvino as it runs ("" from servers before these fields)
    threads: int = 0  # the backend's CPU threads for the model (0: not reported)


@dataclass(frozen=True)
class Health:
    version: str
    model: ModelInfo
    busy: bool
    allow_paths: bool
    max_upload_mb: float
    status: Literal["ok"] = "ok"
    # What trains or evaluates beside segmentation now, in words ("" when nothing): segmentation still
    # answers, sharing the CPU/GPU with it.
    training: str = ""

    @property
    def model_id(self) -> str:
        return self.model.id

    @property
    def device(self) -> str:
        return self.model.device

    @property
    def input_size(self) -> int:
        return self.model.input_size

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Health:
        """Lenient: a field the answer lacks takes an empty value (an older or foreign server)."""
        model = data.get("model") or {}
        return cls(
            version=str(data.get("version", "")),
            model=ModelInfo(
                id=str(model.get("id", "")),
                preset=model.get("preset") or None,
                input_size=int(model.get("input_size") or 0),
                device=str(model.get("device", "")),
                precision=str(model.get("precision") or ""),
                threads=int(model.get("threads") or 0),
            ),
            busy=bool(data.get("busy", False)),
            allow_paths=bool(data.get("allow_paths", False)),
            max_upload_mb=float(data.get("max_upload_mb") or 0),
            training=str(data.get("training") or ""),
        )


@dataclass(frozen=True)
class ErrorDetail:
    code: str
    message: str


@dataclass(frozen=True)
class ErrorBody:
    error: ErrorDetail


@dataclass(frozen=True)
class Progress:
    done: int
    total: int

    @property
    def fraction(self) -> float:
        return self.done / self.total if self.total > 0 else 0.0


@dataclass(frozen=True)
class JobCreated:
    job_id: str
    status: JobState


@dataclass(frozen=True)
class JobStatus:
    job_id: str
    status: JobState
    progress: Progress
    error: ErrorDetail | None = None

    @classmethod
    def from_json(cls, data: Mapping[str, Any], job_id: str = "") -> JobStatus:
        progress = data.get("progress") or {}
        error = data.get("error") or None
        return cls(
            job_id=str(data.get("job_id") or job_id),
            status=str(data.get("status", "")),  # type: ignore[arg-type]
            progress=Progress(int(progress.get("done") or 0), int(progress.get("total") or 0)),
            error=ErrorDetail(str(error.get("code", "")), str(error.get("message", ""))) if error else None,
        )
