"""What one running server holds: its settings, its model, its jobs and its request parser."""

from __future__ import annotations

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
