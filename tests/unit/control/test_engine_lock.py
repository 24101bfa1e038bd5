"""`mailgate up` while a previous one still shuts down: the later one waits for the earlier
one's lock (a real second process holds it), or says who holds it when it waits too long."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from control.broker.local import BrokerError
from control.broker.supervise import EngineLock

HOLD = """
import sys, time
from pathlib import Path
from control.broker.supervise import EngineLock
lock = EngineLock(Path(sys.argv[1]))
lock.acquire(5)
print("held", flush=True)
time.sleep(float(sys.argv[2]))
"""


def holder(path: Path, seconds: float) -> subprocess.Popen[str]:
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(path), str(seconds)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
    return proc


def test_a_later_up_waits_for_the_earlier_one_to_finish(tmp_path: Path) -> None:
    path = tmp_path / "engine.lock"
    earlier = holder(path, 1.5)
    said: list[str] = []
    assert EngineLock(path).held_by() == str(earlier.pid)
    began = time.monotonic()
    later = EngineLock(path)
    later.acquire(10, say=said.append)
    assert time.monotonic() - began >= 1.0 and earlier.communicate(timeout=5)[1] is None
    assert earlier.returncode == 0
    assert said and f"pid {earlier.pid}" in said[0] and "shutting down" in said[0]
    later.release()
    assert EngineLock(path).held_by() is None


def test_waiting_too_long_names_the_holder(tmp_path: Path) -> None:
    path = tmp_path / "engine.lock"
    earlier = holder(path, 30)
    try:
        with pytest.raises(BrokerError, match=f"pid {earlier.pid}"):
            EngineLock(path).acquire(0.5, say=lambda _m: None)
    finally:
        earlier.kill()
        earlier.communicate()
    lock = EngineLock(path)  # killed: the flock went with it
    lock.acquire(1)
    lock.release()
