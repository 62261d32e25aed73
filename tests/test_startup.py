"""Start-up: building the command's parser (every command's flags, `rs2sam2 --help`) imports no model
library, so commands that load no model — the plugin's model manager runs `weights …` — start at once."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from backend import process_gc

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "open_clip", "sam2", "torchvision")


def test_building_every_commands_parser_imports_no_model_library():
    code = (
        "import sys; from backend.cli import build_parser; build_parser(); "
        f"print(','.join(m for m in {HEAVY!r} if m in sys.modules))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    assert done.stdout.strip() == "", f"imported at parser time: {done.stdout.strip()}"


def _python(code: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", code, *args],
        env={**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"},
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_a_named_command_builds_only_its_own_parser():
    # `rs2sam2 segment …` loads the segment command's module and no other command's (training, bench).
    code = (
        "import sys; from backend.cli import build_parser; "
        "parser = build_parser(only='segment'); "
        "print(','.join(m for m in ('training.cli_train', 'training.cli_evaluate', 'bench.cli', "
        "'backend.service.cli') if m in sys.modules)); "
        "args = parser.parse_args(['segment', 'x.tif', 'a pond', '-o', 'o.gpkg']); "
        "print(args.command, args.output, args._run.__module__)"
    )
    done = _python(code)
    assert done.returncode == 0, done.stderr
    imported, parsed = done.stdout.splitlines()
    assert imported == ""
    assert parsed == "segment o.gpkg backend.engine.cli"


def test_the_command_line_still_lists_every_command_and_rejects_unknown_ones():
    done = _python("import sys; from backend.cli import main; sys.exit(main())", "segmnt", "x")
    assert done.returncode == 2
    assert "invalid choice: 'segmnt'" in done.stderr
    for name in ("segment", "serve", "train", "evaluate", "bench", "weights"):
        assert name in done.stderr
    done = _python("import sys; from backend.cli import main; sys.exit(main())", "segment", "--help")
    assert done.returncode == 0 and "--context" in done.stdout


def test_the_collector_policy_ends_when_the_model_is_loaded_and_still_collects_cycles():
    # A process started from the command line collects rarely during start-up; loading the model ends
    # start-up: what lives then is frozen, the default thresholds return, and new cycles are collected.
    code = """
import gc, json
from backend import process_gc
defaults = gc.get_threshold()
process_gc.begin_start_up()
during = gc.get_threshold()
from backend.engine.model_loading import load_model
model = load_model(None, None, "cpu")
after = gc.get_threshold()
frozen = gc.get_freeze_count()
class Node: pass
a, b = Node(), Node(); a.other, b.other = b, a
del a, b
collected = gc.collect()
process_gc.end_start_up()  # a second time changes nothing
print(json.dumps([defaults, during, after, frozen, collected, gc.get_threshold()]))
"""
    done = _python(code)
    assert done.returncode == 0, done.stderr
    defaults, during, after, frozen, collected, again = json.loads(done.stdout.strip().splitlines()[-1])
    assert during[0] == process_gc.START_UP_THRESHOLD and during[1:] == defaults[1:]
    assert after == defaults and again == defaults
    assert frozen > 100_000  # torch, open_clip and the model's objects
    assert collected >= 2


def test_a_command_run_in_process_leaves_the_collector_alone():
    import gc

    from backend.cli import main

    before = gc.get_threshold(), gc.get_freeze_count()
    assert main(["weights", "list"]) == 0
    assert (gc.get_threshold(), gc.get_freeze_count()) == before
