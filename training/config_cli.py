"""`rs2sam2 train`'s flags, made from TrainConfig's fields (their types, defaults and help).

Every flag defaults to None, so a flag that is not given never overrides a `--config` file or the
settings of a run being resumed; the help shows TrainConfig's own default.
"""

from __future__ import annotations

import argparse
import dataclasses
import types
import typing
from pathlib import Path
from typing import Any

from training.config import TrainConfig

NOT_FLAGS = {"extra"}


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _base_type(annotation: Any) -> tuple[Any, bool]:
    """(the type without None, whether it is a tuple of that type)."""
    args = [arg for arg in typing.get_args(annotation) if arg is not type(None)]
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        annotation = args[0]
    if typing.get_origin(annotation) is tuple:
        return typing.get_args(annotation)[0], True
    return annotation, False


def _help(field: dataclasses.Field) -> str:
    meta = field.metadata
    default = meta.get("default_text") or field.default
    if field.default in (None, (), "") and not meta.get("default_text"):
        return meta["help"]
    if isinstance(default, bool):
        default = "on" if default else "off"
    elif isinstance(default, tuple):
        default = " ".join(str(item) for item in default)
    return f"{meta['help']} (default: {default})"


def add_config_arguments(parser: argparse.ArgumentParser) -> None:
    """One flag per TrainConfig field, grouped as the fields say."""
    hints = typing.get_type_hints(TrainConfig)
    groups: dict[str, Any] = {}
    exclusive: dict[str, Any] = {}
    for field in dataclasses.fields(TrainConfig):
        if field.name in NOT_FLAGS:
            continue
        meta = field.metadata
        if meta["group"] not in groups:
            groups[meta["group"]] = parser.add_argument_group(meta["group"])
        group = groups[meta["group"]]
        if "exclusive" in meta:
            if meta["exclusive"] not in exclusive:
                exclusive[meta["exclusive"]] = group.add_mutually_exclusive_group()
            group = exclusive[meta["exclusive"]]
        kind, many = _base_type(hints[field.name])
        kwargs: dict[str, Any] = {"dest": field.name, "default": None, "help": _help(field)}
        if kind is bool:
            kwargs["action"] = argparse.BooleanOptionalAction
        elif many and kind is str and "choices" not in meta:
            kwargs.update(action="append", metavar="SPEC")
        elif many:
            kwargs.update(type=kind, nargs="+")
        else:
            kwargs["type"] = Path if field.name == "out" else kind
        if "choices" in meta:
            kwargs["choices"] = meta["choices"]
        if meta.get("required"):
            kwargs["required"] = True
        group.add_argument(_flag(field.name), **kwargs)


def overrides_from(args: argparse.Namespace) -> dict[str, Any]:
    """The TrainConfig fields given on the command line (None: not given)."""
    values: dict[str, Any] = {}
    for field in dataclasses.fields(TrainConfig):
        if field.name in NOT_FLAGS:
            continue
        value = getattr(args, field.name)
        if isinstance(value, list):
            value = tuple(value)
        elif isinstance(value, Path):
            value = str(value)
        values[field.name] = value
    return values
