"""What one running server holds: its settings, its model, its jobs and its request parser."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

from backend.model.api import PhraseSegmenter
from backend.service.config import ServiceConfig
from backend.service.jobs import JobManager
from backend.service.parsing import RequestParser


@dataclass
class ServiceState:
    config: ServiceConfig
    model: PhraseSegmenter
    device: str
    jobs: JobManager
    parser: RequestParser
    upload_dir: Path
    threads: int = 1  # torch's intra-op CPU threads the model runs with


def current_threads() -> int:
    """torch's intra-op thread count when torch is loaded (a stand-in model without torch: 1)."""
    torch = sys.modules.get("torch")
    return int(torch.get_num_threads()) if torch is not None else 1
