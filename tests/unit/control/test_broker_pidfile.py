"""The local broker's pid file: a dead, zombie or foreign pid is never taken for the broker
(real child processes stand in for the JVM: only their command line is looked at)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from control.broker.local import LocalBroker
from control.broker.process import cmdline, is_broker, proc_state


def broker(tmp_path: Path) -> LocalBroker:
    return LocalBroker(version="0", data_dir=tmp_path / "kafka", cache_dir=tmp_path / "cache")


def fake_jvm(b: LocalBroker) -> subprocess.Popen[bytes]:
    """A process whose command line names kafka.Kafka and the broker's properties file."""
    b.data_dir.mkdir(parents=True, exist_ok=True)
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", "kafka.Kafka",
                             str(b.data_dir / "server.properties")])
    deadline = time.monotonic() + 5  # a loaded machine: /proc showed an empty command line once
    while not cmdline(proc.pid) and time.monotonic() < deadline:
        time.sleep(0.01)
    return proc


def wait_state(pid: int, state: str, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while proc_state(pid) != state and time.monotonic() < deadline:
        time.sleep(0.02)
    assert proc_state(pid) == state


def test_a_live_broker_process_is_running(tmp_path: Path) -> None:
    b = broker(tmp_path)
    proc = fake_jvm(b)
    try:
        b.pid_file.write_text(str(proc.pid))
        assert b.pid() == proc.pid and b.is_running()
    finally:
        proc.kill()
        proc.wait()


def test_a_killed_unreaped_broker_is_a_zombie_not_running(tmp_path: Path) -> None:
    b = broker(tmp_path)
    proc = fake_jvm(b)
    b.pid_file.write_text(str(proc.pid))
    os.kill(proc.pid, signal.SIGKILL)
    wait_state(proc.pid, "Z")  # kill(pid, 0) still succeeds on it
    os.kill(proc.pid, 0)
    assert b.pid() is None and not b.is_running()
    assert not b.pid_file.exists()  # stale: removed, so it blocks no start
    assert proc_state(proc.pid) is None  # and reaped, since it was our child
    assert b.stop() is False  # nothing to stop, no error
    proc.wait()  # Popen learns it is gone (ECHILD: someone reaped it)


def test_a_pid_file_naming_another_process_is_stale(tmp_path: Path) -> None:
    b = broker(tmp_path)
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        b.data_dir.mkdir(parents=True)
        b.pid_file.write_text(str(other.pid))
        assert b.pid() is None and not b.pid_file.exists()
        assert other.poll() is None  # never signalled
    finally:
        other.kill()
        other.wait()


def test_a_pid_file_of_a_gone_process_or_garbage_is_stale(tmp_path: Path) -> None:
    b = broker(tmp_path)
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    b.data_dir.mkdir(parents=True)
    b.pid_file.write_text(str(gone.pid))
    assert b.pid() is None
    b.pid_file.write_text("not a pid")
    assert b.pid() is None


def test_another_brokers_jvm_is_not_ours(tmp_path: Path) -> None:
    ours, theirs = broker(tmp_path / "a"), broker(tmp_path / "b")
    proc = fake_jvm(theirs)
    try:
        assert is_broker(proc.pid, "kafka.Kafka", str(theirs.data_dir / "server.properties"))
        assert not is_broker(proc.pid, "kafka.Kafka", str(ours.data_dir / "server.properties"))
    finally:
        proc.kill()
        proc.wait()
