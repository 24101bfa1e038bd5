"""A real maildepot-archiver process for the archive tests: `mailgate service maildepot-archiver` on
a home, ready once it says it answers the archive's questions (archive.requests)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from core.settings import Settings
from tests.integration.archive.test_archive_connector import run_service, stop

READY = "answering archive questions"


@contextmanager
def archiver(settings: Settings, tmp: Path, timeout: float = 60.0) -> Iterator[Path]:
    """Runs the archiver of ``settings.home`` until the block ends; yields its log file."""
    tmp.mkdir(parents=True, exist_ok=True)
    before = set(tmp.glob("maildepot-archiver-*.log"))
    proc = run_service("maildepot-archiver", settings, tmp)
    try:
        log = next(iter(set(tmp.glob("maildepot-archiver-*.log")) - before))
        deadline = time.monotonic() + timeout
        while READY not in log.read_text(errors="replace"):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"the archiver did not get ready (exit {proc.poll()}):\n"
                                     f"{log.read_text(errors='replace')[-3000:]}")
            time.sleep(0.1)
        yield log
    finally:
        stop(proc)
