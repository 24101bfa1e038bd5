"""The engine looks after its own broker: under `mailgate up` (real processes, a local
broker of the gateway's own), `kill -9` of the broker is reaped and answered with a restart;
SMTP answers 250 again within seconds, and mail from before and after reaches the sink."""

from __future__ import annotations

import asyncio
import gc
import os
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import aiosmtplib

from control.broker.process import proc_state
from tests.integration.test_broker_outage import send
from tests.support.gateway import Gateway
from tests.support.ports import free_port
from tests.support.sink import Sink


def local_gateway(tmp_path: Path, sink: Sink) -> Gateway:
    gw = Gateway("local", tmp_path / "node", sink.address, MAILGATE_BROKER__PORT=str(free_port()),
                 MAILGATE_BROKER__CONTROLLER_PORT=str(free_port()), MAILGATE_BROKER__HEAP="384m",
                 MAILGATE_KAFKA__PRODUCE_TIMEOUT_S="3")
    del gw.env["MAILGATE_KAFKA__BOOTSTRAP_SERVERS"]  # no external cluster: `mailgate up` starts its broker
    return gw


def cli(gw: Gateway, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "control.cli", *args], env=gw.env, capture_output=True,
                          text=True, timeout=60)


def send_until_accepted(port: int, subject: str, timeout: float) -> tuple[str, float]:
    """Sends until a 250 (451 while the broker is away); the mail id and the seconds it took."""
    began = time.monotonic()
    while True:
        try:
            return asyncio.run(send(port, subject)), time.monotonic() - began
        except (aiosmtplib.SMTPException, OSError) as exc:
            with warnings.catch_warnings():  # the refused attempt's socket, dropped by the client library
                warnings.simplefilter("ignore", ResourceWarning)
                gc.collect()
            if time.monotonic() - began > timeout:
                raise AssertionError(f"no 250 within {timeout:.0f} s of the kill: {exc}") from None
            time.sleep(0.5)


def test_kill_9_of_the_broker_is_reaped_and_restarted(sink: Sink, tmp_path: Path) -> None:
    gw = local_gateway(tmp_path, sink)
    pid_file = gw.home / "kafka" / "broker.pid"
    with gw:
        before = asyncio.run(send(gw.smtp_port, "before the kill"))
        sink.wait_for(1, timeout=90)
        old = int(pid_file.read_text())

        os.kill(old, signal.SIGKILL)
        after, took = send_until_accepted(gw.smtp_port, "after the kill", timeout=60)
        assert took < 30, f"250 again only after {took:.1f} s"
        mails = sink.wait_for(2, timeout=90)

        assert proc_state(old) is None, "the killed broker was left a zombie"
        new = int(pid_file.read_text())
        assert new != old
        status = cli(gw, "kafka", "status")
        assert status.returncode == 0 and str(new) in status.stdout, status.stdout + status.stderr
        assert "kafka exited, restarting" in gw.log_path.read_text(errors="replace")
        print(f"250 again {took:.1f} s after the kill")
    subjects = sorted(m.data.split(b"Subject: ", 1)[1].split(b"\n", 1)[0].strip() for m in mails)
    assert subjects == [b"after the kill", b"before the kill"]
    assert before != after
    assert cli(gw, "kafka", "status").returncode == 3  # `up` stopped the broker it started
    assert proc_state(new) is None
