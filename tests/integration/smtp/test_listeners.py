"""Several smtp-server listener processes share one port (SO_REUSEPORT), started the
way the engine starts the service: `mailgate service smtp-server`."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import aiosmtplib

from control.broker.topics import ensure_topics
from core.settings import KafkaSettings, Settings
from tests.support.kafka import Broker
from tests.support.ports import free_port, wait_listening
from tests.support.topics import read_topic


def _children(pid: int) -> list[int]:
    """The listener processes started by ``pid`` (multiprocessing's spawn; not its resource tracker)."""
    path = Path(f"/proc/{pid}/task/{pid}/children")
    kids = [int(x) for x in path.read_text().split()] if path.exists() else []
    return [k for k in kids if b"spawn_main" in _cmdline(k)]


def _listening_pids(port: int) -> set[int]:
    out = subprocess.run(["ss", "-Hltnp", f"sport = :{port}"], capture_output=True, text=True, check=True).stdout
    return {int(m) for m in re.findall(r"pid=(\d+)", out)}


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def test_two_listener_processes_share_the_port(broker: Broker, tmp_path: Path) -> None:
    prefix, port = f"l{os.getpid()}{time.monotonic_ns() % 100000}.", free_port()
    settings = Settings(home=tmp_path, kafka=KafkaSettings(bootstrap_servers=broker.bootstrap_servers,
                                                           topic_prefix=prefix, partitions=2))
    ensure_topics(settings)
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("MAILGATE_")},
           "MAILGATE_HOME": str(tmp_path), "MAILGATE_KAFKA__BOOTSTRAP_SERVERS": broker.bootstrap_servers,
           "MAILGATE_KAFKA__TOPIC_PREFIX": prefix, "MAILGATE_SMTP_SERVER__PORT": str(port),
           "MAILGATE_SMTP_SERVER__LISTENERS": "2", "MAILGATE_LOG_LEVEL": "warning",
           "MAILGATE_CONTROL__METRICS_PORT_BASE": str(free_port())}
    proc = subprocess.Popen([sys.executable, "-m", "control.cli", "service", "smtp-server"], env=env,
                            cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_listening("127.0.0.1", port, timeout=30)
        deadline = time.monotonic() + 30
        while len(_children(proc.pid)) < 1 and time.monotonic() < deadline:
            time.sleep(0.1)
        (child,) = _children(proc.pid)
        deadline = time.monotonic() + 20
        while len(_listening_pids(port)) < 2 and time.monotonic() < deadline:
            time.sleep(0.2)  # the child binds its own socket to the same port
        assert _listening_pids(port) == {proc.pid, child}

        async def send(i: int) -> str:
            _, text = await aiosmtplib.send(b"Subject: %d\r\n\r\nhi\r\n" % i, sender="s@outside.test",
                                            recipients=[f"u{i}@example.com"], hostname="127.0.0.1", port=port,
                                            start_tls=False, local_hostname="client.test")
            return text

        async def send_all() -> list[str]:
            return await asyncio.gather(*(send(i) for i in range(40)))

        replies = asyncio.run(send_all())
        assert all(r.startswith("2.0.0 Ok: queued as") for r in replies)
        assert len(read_topic(settings, f"{prefix}mail.in")) == 40
        os.kill(child, signal.SIGKILL)  # a listener that dies is started again
        deadline = time.monotonic() + 15
        while (not _children(proc.pid) or _children(proc.pid) == [child]) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert _children(proc.pid) and _children(proc.pid) != [child]
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=30)
        err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
        if proc.stderr:
            proc.stderr.close()
    assert code == 0, err[-2000:]
