"""`kill -9` of smtp-client between the next hop's 250 and the delivery log record on
the broker (the window the Kafka log alone cannot close): the local journal has the
mark, the next run writes it to the log before consuming, and nothing is sent twice."""

from __future__ import annotations

import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

from control.broker.topics import ensure_topics
from egress.smtp_client.deliverylog import DeliveryLog, log_key
from egress.smtp_client.journal import read_entries
from schemas.topics import DELIVERY_LOG
from tests.integration.smtp_client.conftest import Harness, message, settings_for
from tests.integration.smtp_client.peers import ScriptedSink
from tests.integration.smtp_client.test_kill_9 import ROOT, service_env, start
from tests.support.kafka import Broker


def logged_done(h: Harness, key: str, home: Path) -> frozenset[str]:
    """What the delivery log topic has as done for this copy (read by the client's own reader)."""
    dlog = DeliveryLog(h.settings.model_copy(update={"home": home}), h.codec, h.names(DELIVERY_LOG))
    dlog.start()
    try:
        return dlog.done(key)
    finally:
        dlog.close()


def test_kill_9_after_the_journal_write_before_the_log_record_delivers_nothing_twice(
        broker: Broker, tmp_path: Path) -> None:
    total, victim = 30, "k5@dest.test"
    settings = settings_for(broker)
    ensure_topics(settings)
    h = Harness(settings)
    journal_dir = settings.home / "smtp-client" / settings.node / h.names(DELIVERY_LOG)
    with ScriptedSink() as sink:
        routed = [h.routed(message(f"journal {i}"), [f"k{i}@dest.test"]) for i in range(total)]
        h.feed(*routed)
        env = service_env(settings, sink.address)
        with open(tmp_path / "client.log", "ab") as out:
            crashing = subprocess.Popen([sys.executable, "-m", "tests.integration.smtp_client.crash_after_journal"],
                                        # One mail at a time: no other 250 is under way at the kill.
                                        env={**env, "CRASH_AFTER_JOURNAL_OF": victim,
                                             "MAILGATE_SMTP_CLIENT__CONCURRENCY": "1"}, cwd=ROOT, stdout=out,
                                        stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        assert crashing.wait(90) == -9, "the client should have killed itself at the victim's mark"
        assert victim in [m.rcpt_to[0] for m in sink.mails], "the next hop took the victim's mail"
        key = log_key(next(r["mail_id"] for r in routed if r["rcpt_to"] == [victim]), "dest.test")
        assert victim not in logged_done(h, key, tmp_path), "the victim's mark must not have reached the broker"
        journalled = [e for e in read_entries(sorted(journal_dir.iterdir())) if victim in e.recipients]
        assert [e.reply[:4] for e in journalled] == ["250 "], "the mark with the next hop's reply is journalled"
        proc = start(env, tmp_path / "client.log")
        try:
            deadline = time.monotonic() + 90
            while {m.rcpt_to[0] for m in sink.mails} != {f"k{i}@dest.test" for i in range(total)}:
                assert time.monotonic() < deadline, f"only {len(sink.mails)} of {total} delivered"
                time.sleep(0.1)
        finally:
            proc.terminate()  # a clean stop: deliveries under way finish first
            proc.wait(60)
    counts = Counter(m.rcpt_to[0] for m in sink.mails)
    assert counts[victim] == 1, f"the victim was delivered {counts[victim]} times"
    assert sum(counts.values()) == total, f"duplicates: {[r for r, n in counts.items() if n > 1]}"
    assert "recovered from the journal" in (tmp_path / "client.log").read_text()
    assert not any(read_entries(sorted(journal_dir.iterdir()))), "the clean stop left nothing to replay"
