"""The bundled demo model's OpenVINO conversion, made once per test run and copied into the caches of the
tests that need a cache already holding it.

Converting the demo model's encoder (torch.export + openvino.convert_model) takes 10–25 s on the shared
2-core machine; the cache tests had done it eight times only to have a conversion in the cache before
the behaviour they test (a damaged entry, the bound, the `weights cache` command, staging folders).
Tests whose subject is converting — the first conversion of a model, a changed model's own conversion,
a conversion that fails — still convert: this only replaces set-up.

The conversion is real: the same `compile_image_encoder` the backend runs, written by the product's
own `_save`, with the key the product computes. A copied entry is byte-for-byte that folder.
"""

from __future__ import annotations

import fcntl
import os
import shutil
from pathlib import Path

import pytest


def _shared_root(tmp_path_factory) -> Path:
    """The run's temporary root, shared by pytest-xdist workers (each has its own basetemp below it)."""
    base = tmp_path_factory.getbasetemp()
    return base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base


def convert_demo_once(tmp_path_factory) -> Path:
    """The folder of the demo model's f32 conversion (`<cache>/openvino/<key>`), converted at most once
    per test run, also across xdist workers (a file lock; the second worker reads the first's)."""
    pytest.importorskip("openvino", reason="a dependency of the project (pyproject.toml)")
    from backend.bundled import DEMO_CHECKPOINT
    from backend.model.factory import load_checkpoint
    from backend.model.openvino_encoder import IR_NAME, compile_image_encoder

    root = _shared_root(tmp_path_factory) / "openvino-demo-conversion"
    root.mkdir(exist_ok=True)
    with open(root / "lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        done = root / "folder.txt"
        if done.is_file():
            folder = Path(done.read_text())
            if (folder / IR_NAME).is_file():
                return folder
        model, _ = load_checkpoint(DEMO_CHECKPOINT)
        runtime = compile_image_encoder(model.eval(), "f32", root / "cache" / "openvino", threads=1)
        assert runtime.converted_now and (runtime.cache_folder / IR_NAME).is_file()
        done.write_text(str(runtime.cache_folder))
        return runtime.cache_folder


def seed(cache: Path, conversion: Path) -> Path:
    """Copy `conversion` into the OpenVINO cache folder `cache` (as if an earlier run had converted it);
    returns the copy's folder."""
    cache.mkdir(parents=True, exist_ok=True)
    return Path(shutil.copytree(conversion, cache / conversion.name))
