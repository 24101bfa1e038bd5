"""`kill -9` of smtp-client in the middle of a batch: nothing is lost, and the
delivery log keeps the next run from delivering again what the next hop already
took (its 250 read) but whose offset was not committed yet."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

from control.broker.topics import ensure_topics
from core.settings import Settings
from tests.integration.smtp_client.conftest import Harness, message, settings_for
from tests.integration.smtp_client.peers import Script, ScriptedSink
from tests.support.kafka import Broker

ROOT = Path(__file__).resolve().parents[3]


def service_env(settings: Settings, smarthost: str) -> dict[str, str]:
    outside = {k: v for k, v in os.environ.items() if not k.startswith("MAILGATE_")}
    return {**outside, "MAILGATE_KAFKA__BOOTSTRAP_SERVERS": settings.bootstrap_servers,
            "MAILGATE_KAFKA__TOPIC_PREFIX": settings.kafka.topic_prefix,
            "MAILGATE_KAFKA__PARTITIONS": str(settings.kafka.partitions),
            "MAILGATE_HOME": str(settings.home),
            "MAILGATE_SMTP_CLIENT__SMARTHOST": smarthost, "MAILGATE_SMTP_CLIENT__CONCURRENCY": "40",
            "MAILGATE_SMTP_CLIENT__DESTINATION_CONCURRENCY": "20", "MAILGATE_LOG_LEVEL": "warning",
            # The killed member's partitions return to the group after this (the broker's minimum).
            "MAILGATE_KAFKA__EXTRA": '{"session.timeout.ms": "6000"}'}


def start(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with open(log, "ab") as out:
        return subprocess.Popen([sys.executable, "-m", "control.cli", "service", "smtp-client"], env=env,
                                cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)


def test_kill_9_mid_batch_loses_nothing_and_delivers_nothing_twice(broker: Broker, tmp_path: Path) -> None:
    total, kill_at = 400, 150
    settings = settings_for(broker)
    ensure_topics(settings)
    h = Harness(settings)
    # k3 gets no reply until after the kill, which holds the commit point of its partition: every
    # mail after it that the sink took is uncommitted when the client dies, and comes again.
    # From the 150th mail on the sink answers nobody, so no 250 is under way at the kill.
    script = Script(hold={"k3@dest.test"}, hold_after=kill_at)
    with ScriptedSink(script) as sink:
        h.feed(*(h.routed(message(f"kill {i}"), [f"k{i}@dest.test"]) for i in range(total)))
        env = service_env(settings, sink.address)
        proc = start(env, tmp_path / "client.log")
        try:
            sink.wait_for(kill_at, timeout=60)
            time.sleep(1.0)  # every 250 read and its delivery log record written
            proc.send_signal(signal.SIGKILL)
            proc.wait(10)
            at_kill = len(sink.mails)
            # The sink sees the dead client's sessions end (EOF) before it may answer them: released
            # first, a held DATA could count as delivered in the same loop turn that brings the EOF.
            deadline = time.monotonic() + 10
            while sink.counter.active and time.monotonic() < deadline:
                time.sleep(0.05)
            script.release.set()  # the dead client's held sessions end without a 250 seen
            proc = start(env, tmp_path / "client.log")
            sink.wait_for(total, timeout=90)
            time.sleep(2)  # anything delivered twice would arrive now
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(30)
    counts = Counter(m.rcpt_to[0] for m in sink.mails)
    duplicates = sum(n - 1 for n in counts.values())
    print(f"kill -9 with {at_kill} of {total} mails taken: {len(counts)} delivered, {duplicates} duplicates")
    assert set(counts) == {f"k{i}@dest.test" for i in range(total)}, "mail lost"
    assert kill_at <= at_kill < kill_at + 20 and "k3@dest.test" not in [m.rcpt_to[0] for m in sink.mails[:at_kill]]
    # Without the delivery log the ~146 mails after k3 come again.
    assert duplicates == 0, f"{duplicates} duplicates: {[r for r, n in counts.items() if n > 1][:10]}"
