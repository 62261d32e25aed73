"""Request and response bodies of the HTTP API (docs/service-api.md), for validation and OpenAPI.

Both come from the one contract (`rs2sam2_qgis/contract.py`, reached through `backend.contract`): the
`params` model has one field per segment option there. The answers (health, jobs, errors) are the
contract's own dataclasses, which the plugin parses too.
Option values are typed here; their bounds are checked by the engine (one place), which answers each
with its own 400 code.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, create_model

from backend.contract import AREA_FIELDS, SERVICE, Option, options_on
from backend.engine.options import AreaOfInterest, EngineOptions

_AREA_HELP = {name: f"{what}; null: {default}" for name, _kind, default, what in AREA_FIELDS}


def _field(option: Option) -> tuple[Any, Any]:
    python_type = {
        "float": float | None,
        "int": int | None,
        "choice": Literal[option.choice_values]
        if option.default is not None
        else Literal[option.choice_values] | None,
        "ints": list[int] | None,
    }[option.kind]
    return python_type, Field(option.default_for(SERVICE), description=option.describe(SERVICE))


def _or_default(value: Any, option: Option) -> Any:
    return option.default_for(SERVICE) if value is None else value


class _ParamsBase(BaseModel):
    """The `params` JSON string of /segment and /jobs."""

    model_config = ConfigDict(extra="forbid")

    phrases: list[str] = Field(..., description="what to look for; at least one, none blank")
    bbox: tuple[float, float, float, float] | None = Field(None, description=_AREA_HELP["bbox"])
    bbox_crs: str | None = Field(None, description=_AREA_HELP["bbox_crs"])

    def to_options(self) -> EngineOptions:
        # null means the default (docs/service-api.md): an option with a default of its own gets it
        # (a null threshold reached the engine as None: a 500 found by the property tests).
        values = {
            option.name: _or_default(getattr(self, option.name), option) for option in options_on(SERVICE)
        }
        if values.get("bands") is not None:
            values["bands"] = tuple(values["bands"])
        area = AreaOfInterest(self.bbox, self.bbox_crs) if self.bbox is not None else None
        return EngineOptions(**values, area=area)


SegmentParams = create_model(
    "SegmentParams",
    __base__=_ParamsBase,
    **{option.name: _field(option) for option in options_on(SERVICE)},
)


class FeatureCollection(BaseModel):
    """GeoJSON in the raster's CRS (`crs`, `crs_wkt`), with run statistics."""

    model_config = ConfigDict(extra="allow")

    type: Literal["FeatureCollection"]
    crs: dict[str, Any] | None
    crs_wkt: str | None
    features: list[dict[str, Any]]
    stats: dict[str, Any]
