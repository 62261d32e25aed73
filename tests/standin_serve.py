"""`rs2sam2 serve` — the real command: its arguments, the token from the environment, the allowed
folders, the real app on uvicorn — serving the colour stand-in model instead of a loaded one.

    python -m tests.standin_serve serve --port N [any other `rs2sam2 serve` option]

For tests of programs that start a backend themselves (the plugin's local backend): they get the real
service, and answers that do not depend on a model's weights.
"""

from __future__ import annotations

import sys

STANDIN_MODEL_ID = "colour-standin"


def main(argv: list[str]) -> int:
    import backend.engine.model_loading as model_loading
    from backend.cli import main as rs2sam2
    from tests.engine.standin import ColourModel

    def load_standin(
        preset: str | None,
        checkpoint: str | None,
        device: str,
        model: str | None = None,
        precision: str = "auto",
    ):
        return ColourModel(64, model_id=STANDIN_MODEL_ID)

    model_loading.load_model = load_standin  # what `serve` calls to load its model
    return rs2sam2(argv)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
