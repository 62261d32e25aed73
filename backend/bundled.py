"""Files that ship inside the backend package: the demo model, its sample scene and phrases.

A leaf module (no imports from the rest of the backend), so any layer may ask where they are.
"""

from __future__ import annotations

from pathlib import Path

ASSETS = Path(__file__).resolve().parent / "demo" / "assets"
DEMO_CHECKPOINT = ASSETS / "rs2sam2-demo.safetensors"
DEMO_SCENE = ASSETS / "scene.tif"
DEMO_PHRASES = ASSETS / "phrases.txt"


def demo_phrases() -> list[str]:
    return [line.strip() for line in DEMO_PHRASES.read_text(encoding="utf-8").splitlines() if line.strip()]
