"""The product's main job on the bundled demo model: phrases in, a GeoPackage of polygons and a PNG
preview out, on a sample scene the model was not trained on. No internet, no GPU needed.

The demo model knows only the project's synthetic land cover (fields, ponds, rivers, roads); for real
imagery, download real weights and fine-tune (see the README).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from backend.bundled import DEMO_CHECKPOINT, DEMO_PHRASES, DEMO_SCENE, demo_phrases
from backend.errors import UserError

DEFAULT_OUT = Path("out") / "demo"


HELP = "the product's main job on the bundled demo model and scene"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--out", type=Path, default=DEFAULT_OUT, help=f"output folder (default: {DEFAULT_OUT})"
    )
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument(
        "phrases", nargs="*", help="phrases to look for (default: the scene's sample phrases)"
    )


def run(args: argparse.Namespace) -> int:
    from backend.demo.preview import render_preview
    from backend.engine.model_loading import load_model
    from backend.engine.options import EngineOptions
    from backend.engine.segment import segment
    from backend.engine.writers import resolve_target, write_features

    for needed in (DEMO_CHECKPOINT, DEMO_SCENE, DEMO_PHRASES):
        if not needed.is_file():
            raise UserError(f"the demo asset {needed} is missing; rebuild it with `make demo-model`")
    phrases = args.phrases or demo_phrases()
    args.out.mkdir(parents=True, exist_ok=True)
    gpkg = args.out / "rs2sam2-demo.gpkg"
    png = args.out / "rs2sam2-demo.png"

    started = time.perf_counter()
    model = load_model(None, str(DEMO_CHECKPOINT), args.device)
    # One object per phrase: each sample phrase refers to exactly one thing in the scene.
    result = segment(DEMO_SCENE, phrases, model, EngineOptions(keep="best"))
    # The demo owns its output folder: each run replaces the previous run's files (atomically).
    write_features(result, resolve_target(gpkg, "demo"), {"demo": result.features}, overwrite=True)
    render_preview(DEMO_SCENE, [(f.phrase, f.geometry) for f in result.features], png)

    print(
        f"RS2-SAM 2 demo: {len(phrases)} phrase(s) on {DEMO_SCENE.name} with the demo model "
        f"({result.tiles} tiles, {time.perf_counter() - started:.1f} s)"
    )
    for phrase in phrases:
        found = [f for f in result.features if f.phrase == phrase]
        summary = f"score {found[0].score:.2f}, {found[0].area:.0f} m²" if found else "nothing found"
        print(f"  {phrase!r}: {summary}")
    print(f"polygons: {gpkg.resolve()} (layer 'demo')")
    print(f"preview:  {png.resolve()}")
    print(
        f"open in QGIS: qgis {DEMO_SCENE} {gpkg.resolve()}  "
        "(or Layer › Add Layer › Add Vector Layer… and pick the GeoPackage)"
    )
    return 0
