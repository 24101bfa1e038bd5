"""maildepot-connector and maildepot-archiver as their own processes on the real broker: the
journal endpoint answers 250 only after Kafka has the mail (451 when Kafka is gone), a file that
is no mail source goes to failed/ with the reason, an import repeated after a crash keeps its
mail ids, and an unreadable record on archive.spool is quarantined without blocking the rest;
each process's /metrics counts what it did."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import aiosmtplib
import pytest

from control.broker.topics import ensure_topics
from core.kafka import make_producer
from core.settings import ControlSettings, KafkaSettings, Settings
from egress.maildepot.store import ArchiveStore
from ingress.connector.settings import ConnectorSettings
from schemas import default_codec
from tests.integration.archive.helpers import mail, spooled
from tests.integration.control.conftest import wait_until
from tests.integration.smtp_client.test_metrics import scrape
from tests.support.kafka import Broker
from tests.support.ports import free_port, wait_listening
from tests.support.topics import read_topic


def run_service(name: str, settings: Settings, tmp: Path) -> subprocess.Popen[bytes]:
    env = service_env(settings)
    log = open(tmp / f"{name}-{uuid.uuid4().hex[:4]}.log", "wb")
    try:
        return subprocess.Popen([sys.executable, "-m", "control.cli", "service", name], env=env, cwd=tmp,
                                stdout=log, stderr=subprocess.STDOUT)
    finally:
        log.close()


def service_env(settings: Settings) -> dict[str, str]:
    """The environment of a `mailgate` process of ``settings``' node (its home, Kafka, ports)."""
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("MAILGATE_")},
           "MAILGATE_HOME": str(settings.home), "MAILGATE_NODE": settings.node,
           "MAILGATE_KAFKA__BOOTSTRAP_SERVERS": settings.bootstrap_servers,
           "MAILGATE_KAFKA__TOPIC_PREFIX": settings.kafka.topic_prefix,
           "MAILGATE_KAFKA__PRODUCE_TIMEOUT_S": str(settings.kafka.produce_timeout_s),
           "MAILGATE_CONNECTOR__SCAN_INTERVAL_S": "0.3"}
    if settings.connector.journal_port:
        env["MAILGATE_CONNECTOR__JOURNAL_PORT"] = str(settings.connector.journal_port)
    if settings.control.metrics_port:
        env["MAILGATE_CONTROL__METRICS_PORT"] = str(settings.control.metrics_port)
    return env


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@pytest.fixture
def settings(broker: Broker, tmp_path: Path) -> Settings:
    s = Settings(node="n1", home=tmp_path / "home",
                 kafka=KafkaSettings(bootstrap_servers=broker.bootstrap_servers,
                                     topic_prefix=f"t{uuid.uuid4().hex[:8]}.", partitions=2, produce_timeout_s=3),
                 connector=ConnectorSettings(journal_port=free_port()),
                 control=ControlSettings(metrics_port=free_port()))
    ensure_topics(s)
    return s


def counted(settings: Settings, name: str, **labels: str) -> float:
    """One sample of the service's /metrics (0 when it is not on the page)."""
    page = wait_until("/metrics answering", lambda: scrape(settings.control.metrics_port or 0))
    return page.get((name, tuple(sorted(labels.items()))), 0.0)


@pytest.fixture
def connector(settings: Settings, tmp_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    proc = run_service("maildepot-connector", settings, tmp_path)
    try:
        wait_listening("127.0.0.1", settings.connector.journal_port or 0, timeout=60)
        yield proc
    finally:
        stop(proc)


def spool(settings: Settings) -> list[dict]:
    return [r.value for r in read_topic(settings, f"{settings.kafka.topic_prefix}archive.spool")]


def test_journal_and_imports_reach_the_spool(settings: Settings, connector: subprocess.Popen[bytes]) -> None:
    async def journal() -> str:
        async with aiosmtplib.SMTP(hostname="127.0.0.1", port=settings.connector.journal_port, timeout=30) as smtp:
            _, text = await smtp.sendmail("mx@example.com", ["archive@example.com"], mail(1))
        return text

    text = asyncio.run(journal())
    assert text.startswith("2.0.0 Ok: archived as ")
    journaled = text.rsplit(" ", 1)[1]
    incoming = settings.connector.import_path(settings.home)
    (incoming / "junk.txt").write_bytes(b"this is no mail source\n")
    (incoming / "a.eml").write_bytes(mail(2))
    wait_until("junk moved to failed/", lambda: (incoming / "failed" / "junk.txt.reason").exists())
    assert "neither an mbox file" in (incoming / "failed" / "junk.txt.reason").read_text()
    wait_until("a.eml imported", lambda: (incoming / "done" / "a.eml").exists())
    os.rename(incoming / "done" / "a.eml", incoming / "a.eml")  # the same file again, as after a crash
    wait_until("a.eml imported again", lambda: (incoming / "done" / "a.eml").exists())
    records = spool(settings)
    by_source = {s: [r for r in records if r["source"] == s] for s in ("journal", "import")}
    assert [r["mail_id"] for r in by_source["journal"]] == [journaled]
    assert by_source["journal"][0]["rcpt_to"] == ["archive@example.com"]
    imported = by_source["import"]
    assert len(imported) == 2 and imported[0]["mail_id"] == imported[1]["mail_id"]  # stored once by the archiver
    assert imported[0]["rcpt_to"] == ["bob@example.com"] and imported[0]["origin"] == "eml:a.eml"
    service = "maildepot-connector"
    assert counted(settings, "mailgate_maildepot_connector_journal_mails_total") == 1
    assert counted(settings, "mailgate_mails_total", service=service, queue="archive.spool") == 3
    assert counted(settings, "mailgate_maildepot_connector_imports_total", kind="eml", outcome="imported") == 2
    assert counted(settings, "mailgate_maildepot_connector_imports_total", kind="unknown", outcome="failed") == 1
    assert counted(settings, "mailgate_maildepot_connector_imports_total", kind="mbox", outcome="imported") == 0


def test_journal_answers_451_when_kafka_is_gone(broker: Broker, settings: Settings, tmp_path: Path) -> None:
    dead = settings.model_copy(update={"kafka": settings.kafka.model_copy(
        update={"bootstrap_servers": f"127.0.0.1:{free_port()}", "produce_timeout_s": 1.0})})
    proc = run_service("maildepot-connector", dead, tmp_path)
    try:
        wait_listening("127.0.0.1", settings.connector.journal_port or 0, timeout=60)

        async def journal() -> None:
            await aiosmtplib.send(mail(3), sender="mx@example.com", recipients=["archive@example.com"],
                                  hostname="127.0.0.1", port=settings.connector.journal_port, timeout=30)

        with pytest.raises(aiosmtplib.SMTPDataError) as refused:
            asyncio.run(journal())
        assert refused.value.code == 451 and "try again" in refused.value.message
        assert counted(dead, "mailgate_rejections_total", service="maildepot-connector", reason="queue") == 1
        assert counted(dead, "mailgate_maildepot_connector_journal_mails_total") == 0
    finally:
        stop(proc)


def test_archiver_quarantines_an_unreadable_record_and_stores_the_rest(settings: Settings, tmp_path: Path) -> None:
    codec = default_codec()
    producer = make_producer(settings, "test")
    topic = f"{settings.kafka.topic_prefix}archive.spool"
    good = [spooled(n) for n in range(5)]
    producer.produce(topic, key=good[0]["mail_id"].encode(), value=b"\xc3\x01garbage")
    for record in good:
        producer.produce(topic, key=record["mail_id"].encode(), value=codec.encode("ArchiveSpooled", record))
    assert producer.flush(10) == 0
    proc = run_service("maildepot-archiver", settings, tmp_path)
    try:
        def stored() -> int:
            if not (settings.home / "archive" / "index.sqlite").exists():
                return 0
            store = ArchiveStore(settings.home / "archive", readonly=True)
            try:
                return store.count()
            finally:
                store.close()

        wait_until("the good records stored", lambda: stored() == 5, timeout=60)
        held = wait_until("the bad one quarantined", lambda: read_topic(
            settings, f"{settings.kafka.topic_prefix}mail.quarantine"))
        assert len(held) == 1 and "maildepot-archiver: unreadable event" in held[0].value["reasons"][0]
        archived = "mailgate_maildepot_archiver_mails_total"
        wait_until("the stored mails counted", lambda: counted(settings, archived, outcome="stored") == 5)
        assert counted(settings, archived, outcome="duplicate") == 0
        assert counted(settings, "mailgate_mails_total", service="maildepot-archiver", queue="mail.quarantine") == 1
        assert counted(settings, "mailgate_latency_seconds_count", service="maildepot-archiver", step="store-batch") >= 1
    finally:
        stop(proc)
