"""smtp-client's /metrics: `mailgate service smtp-client` as the engine runs it (its own
process, its own metrics port), scraped before and after one mail whose recipients are
delivered, deferred and bounced by a real sink."""

from __future__ import annotations

import time
import urllib.request
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from control.broker.topics import ensure_topics
from tests.integration.smtp_client.conftest import Harness, message, settings_for
from tests.integration.smtp_client.peers import Script, ScriptedSink
from tests.integration.smtp_client.test_kill_9 import service_env, start
from tests.support.kafka import Broker
from tests.support.ports import free_port


def scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float] | None:
    try:
        page = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    except OSError:  # not listening yet
        return None
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(page) for s in family.samples}


def recipients(page: dict[tuple[str, tuple[tuple[str, str], ...]], float], outcome: str) -> float:
    return page[("mailgate_smtp_client_recipients_total", (("outcome", outcome),))]


ATTEMPTS = ("mailgate_latency_seconds_count", (("service", "smtp-client"), ("step", "deliver")))


def test_metrics_count_recipients_by_outcome_and_time_each_attempt(broker: Broker, tmp_path: Path) -> None:
    settings = settings_for(broker)
    ensure_topics(settings)
    h = Harness(settings)
    port = free_port()
    script = Script(refuse={"gone@dest.test": "550 5.1.1 no such user", "later@dest.test": "451 4.2.0 not now"})
    with ScriptedSink(script) as sink:
        env = {**service_env(settings, sink.address), "MAILGATE_CONTROL__METRICS_PORT": str(port),
               "MAILGATE_SMTP_CLIENT__RETRY_DELAYS_S": "600,600,600"}  # the deferred recipient is not tried again here
        proc = start(env, tmp_path / "client.log")
        try:
            deadline = time.monotonic() + 60
            while (before := scrape(port)) is None:
                assert proc.poll() is None and time.monotonic() < deadline, (tmp_path / "client.log").read_text()
                time.sleep(0.2)
            h.send(message("counted"), ["ok@dest.test", "gone@dest.test", "later@dest.test"])
            sink.wait_for(2, timeout=60)  # the mail for ok@, then the DSN for gone@ to the sender
            while True:
                after = scrape(port) or before
                if recipients(after, "delivered") >= 2 or time.monotonic() > deadline + 30:
                    break
                time.sleep(0.2)
        finally:
            proc.terminate()
            proc.wait(60)
    assert sorted(r for m in sink.mails for r in m.rcpt_to) == ["ok@dest.test", "sender@origin.test"]
    assert [recipients(before, o) for o in ("delivered", "deferred", "bounced")] == [0, 0, 0]
    assert [recipients(after, o) for o in ("delivered", "deferred", "bounced")] == [2, 1, 1]
    assert before.get(ATTEMPTS, 0) == 0 and after[ATTEMPTS] == 2  # the mail and its bounce
    assert after[("mailgate_service_up", (("node", settings.node), ("service", "smtp-client")))] == 1
