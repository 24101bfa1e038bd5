"""The engine supervisor with real child processes (no broker needed)."""

from __future__ import annotations

import sys
import time
from pathlib import Path

from control.engine.supervisor import Engine, ServiceSpec


def test_crashed_service_is_restarted_and_all_stop_cleanly(tmp_path: Path) -> None:
    starts = tmp_path / "starts"
    crasher = ServiceSpec("crasher", "-", [sys.executable, "-c",
                          f"open({str(starts)!r}, 'a').write('x'); raise SystemExit(3)"])
    sleeper = ServiceSpec("sleeper", "-", [sys.executable, "-c", "import time; time.sleep(600)"])
    engine = Engine([crasher, sleeper])
    began = time.monotonic()
    engine.run(until=lambda: starts.exists() and len(starts.read_text()) >= 3 or time.monotonic() - began > 20)
    assert len(starts.read_text()) >= 3  # started, crashed, started again (1 s, then 2 s backoff)
    sleeper_proc = engine.services[1].proc
    assert sleeper_proc is not None and sleeper_proc.returncode is not None  # stopped by stop_all
    assert time.monotonic() - began < 20
