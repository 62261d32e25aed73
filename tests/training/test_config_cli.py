"""`rs2sam2 train`'s flags are TrainConfig's fields: one flag each, with the field's help and default,
and a flag that is not given overrides nothing."""

from __future__ import annotations

import argparse
import dataclasses

from training.cli_train import add_arguments
from training.config import TrainConfig
from training.config_cli import NOT_FLAGS, overrides_from


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return parser


def test_every_setting_has_its_flag_with_the_fields_help():
    actions = {action.dest: action for action in _parser()._actions}
    for field in dataclasses.fields(TrainConfig):
        if field.name in NOT_FLAGS:
            continue
        action = actions[field.name]
        assert "--" + field.name.replace("_", "-") in action.option_strings
        assert field.metadata["help"] in action.help
        assert action.default is None
        if field.default not in (None, (), "") and "default_text" not in field.metadata:
            shown = ("on" if field.default else "off") if isinstance(field.default, bool) else field.default
            if isinstance(shown, tuple):
                shown = " ".join(str(item) for item in shown)  # as typed: --chip-views native window
            assert f"(default: {shown})" in action.help


def test_flags_give_typed_overrides_and_unset_flags_none():
    args = _parser().parse_args(
        ["--out", "run", "--data", "synthetic:2", "--data", "synthetic:3", "--lr-drop-epochs", "5", "7"]
        + ["--max-steps", "3", "--no-rotations", "--schedule", "step", "--lr-new", "2e-4"]
    )
    values = overrides_from(args)
    assert values["data"] == ("synthetic:2", "synthetic:3") and values["lr_drop_epochs"] == (5, 7)
    assert values["max_steps"] == 3 and values["rotations"] is False and values["lr_new"] == 2e-4
    assert values["out"] == "run" and values["epochs"] is None and values["seed"] is None
    config = TrainConfig(**{k: v for k, v in values.items() if v is not None}, preset="test")
    assert config.seed == 2401 and config.schedule == "step"
