"""The garbage collector's policy in a command-line process (`rs2sam2 …` started from a shell or by the
plugin).

Importing torch, open_clip (and through it torchvision, torch._dynamo, sympy, timm) creates about
700 000 objects that live as long as the process. With the collector's default thresholds they are
scanned again and again while they are being created (about 0.55 s of the demo model's 3.4 s start-up
on this project's benchmark machine), and once more when the interpreter shuts down (about 0.9 s after
the result is written). Neither scan can find garbage: these are modules and a model kept to the end.

So, only in a process started from the command line:
- during start-up the youngest generation collects only every million new objects (cycles are still
  collected, memory stays bounded when start-up is longer than expected);
- when the model is loaded, everything alive is moved to the permanent generation (`gc.freeze`) and
  the default thresholds return: later collections scan only what the work itself creates;
- before the interpreter exits, the same, so its final collection does not scan everything again.

A frozen object in a reference cycle is never freed; only what exists at the end of start-up (modules
and the one model a command or the service keeps for its whole life) is frozen. Tests and the plugin
call the commands in-process and never enter this mode.
"""

from __future__ import annotations

import gc

START_UP_THRESHOLD = 1_000_000  # new container objects between two collections during start-up

_saved_thresholds: tuple[int, int, int] | None = None


def begin_start_up() -> None:
    """Collect rarely until `end_start_up` (called by the process's entry point only)."""
    global _saved_thresholds
    if _saved_thresholds is None:
        _saved_thresholds = gc.get_threshold()
        gc.set_threshold(START_UP_THRESHOLD, *_saved_thresholds[1:])


def end_start_up() -> None:
    """Start-up is over (the model is loaded): freeze what lives now, restore the thresholds. Does
    nothing unless `begin_start_up` was called, and nothing the second time."""
    global _saved_thresholds
    if _saved_thresholds is not None:
        gc.freeze()
        gc.set_threshold(*_saved_thresholds)
        _saved_thresholds = None


def before_exit() -> None:
    """The work is done: spare the interpreter's shutdown a scan of every object."""
    end_start_up()
    gc.freeze()
