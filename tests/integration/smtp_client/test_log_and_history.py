"""The delivery log read to its end before anything is sent, pausing in the middle of a
flow, and `mailgate delivery show`: what happened to mail X for recipient Y."""

from __future__ import annotations

import asyncio
import errno
import subprocess
import sys
import time
from collections import Counter, deque
from collections.abc import Callable
from typing import Any

from confluent_kafka import TopicPartition

from core.kafka import make_consumer, make_producer
from egress.smtp_client.deliverylog import log_key
from egress.smtp_client.journal import Entry
from schemas.topics import DELIVERY_LOG
from tests.integration.smtp_client.conftest import Harness, message
from tests.integration.smtp_client.peers import Script, ScriptedSink
from tests.integration.smtp_client.test_kill_9 import ROOT, service_env


def write_log(h: Harness, entries: dict[tuple[str, str], list[str]]) -> None:
    """Delivery log records as a killed instance leaves them: (mail id, destination) → recipients done."""
    producer = make_producer(h.settings, "test-log-writer")
    for (mail_id, destination), done in entries.items():
        record = {"mail_id": mail_id, "event_time": int(time.time() * 1000), "node": "dead",
                  "destination": destination, "done": done}
        producer.produce(h.names(DELIVERY_LOG), key=log_key(mail_id, destination).encode(),
                         value=h.codec.encode("DeliveryLog", record))
    assert producer.flush(10) == 0


def committed(h: Harness) -> int:
    consumer = make_consumer(h.settings, h.names.group("smtp-client"), "test-offsets")
    try:
        parts = [TopicPartition(h.names.mail_out, p) for p in range(h.settings.kafka.partitions)]
        return sum(max(tp.offset, 0) for tp in consumer.committed(parts, timeout=10))
    finally:
        consumer.close()


async def test_a_restarted_client_knows_the_whole_log_before_it_sends(harness_factory: Callable[..., Harness]) -> None:
    with ScriptedSink() as sink:
        h = harness_factory(transport={"dest.test": sink.address})
        half = h.routed(message("half done"), ["a1@dest.test", "a2@dest.test"])
        done = h.routed(message("done"), ["b@dest.test"])
        fresh = h.routed(message("fresh"), ["c@dest.test"])
        # Many records before the ones that matter: reading them takes a while.
        filler = {(f"old{i}", "elsewhere.test"): [f"x{i}@elsewhere.test"] for i in range(3000)}
        write_log(h, {**filler, (half["mail_id"], "dest.test"): ["a1@dest.test"],
                      (done["mail_id"], "dest.test"): ["b@dest.test"]})
        h.feed(half, done, fresh)
        client = await h.start()
        assert client.dlog is not None and len(client.dlog) == 3002, "ready before the log was read to its end"
        await sink.await_for(2)
        for _ in range(100):  # all three records finished and committed
            if await asyncio.to_thread(committed, h) == 3:
                break
            await asyncio.sleep(0.1)
        await h.stop()
    assert sorted(r for m in sink.mails for r in m.rcpt_to) == ["a2@dest.test", "c@dest.test"]
    assert await asyncio.to_thread(committed, h) == 3


async def test_a_connection_takes_the_next_mail_only_once_the_last_250_is_in_the_log(
        harness_factory: Callable[..., Harness]) -> None:
    """A session never runs ahead of the delivery log: a kill then leaves at most one 250 per session
    that the log does not know."""
    with ScriptedSink() as sink:
        h = harness_factory(transport={"dest.test": sink.address}, destination_concurrency=1)
        client = await h.start()
        assert client.dlog is not None
        real_publish, entered, release = client.dlog.publish, asyncio.Event(), asyncio.Event()

        async def held_publish(entry: Entry) -> None:
            entered.set()
            await release.wait()  # the log write of the first 250 is slow
            await real_publish(entry)

        client.dlog.publish = held_publish  # type: ignore[method-assign]
        h.feed(*(h.routed(message(f"one by one {i}"), [f"o{i}@dest.test"]) for i in range(2)))
        await asyncio.wait_for(entered.wait(), 30)
        await asyncio.sleep(1.0)
        assert sink.handler.mail_commands == 1, "the next mail went out before the last 250 was logged"
        release.set()
        await sink.await_for(2)
        await h.stop()
    assert sorted(m.rcpt_to[0] for m in sink.mails) == ["o0@dest.test", "o1@dest.test"]


async def test_a_journal_that_cannot_be_written_still_logs_the_250_on_kafka(
        harness_factory: Callable[..., Harness]) -> None:
    """A full disk costs the kill -9 cover of the journal, never the delivery log record."""
    with ScriptedSink() as sink:
        h = harness_factory(transport={"dest.test": sink.address})
        client = await h.start()
        assert client.dlog is not None

        def disk_full(*args: Any, **kwargs: Any) -> Entry:
            raise OSError(errno.ENOSPC, "No space left on device")

        client.dlog.journal.append = disk_full  # type: ignore[method-assign]
        mail_id = h.send(message("disk full"), ["full@dest.test"])
        # MailDelivered is written only once the delivery log record is acknowledged.
        events = await h.wait_events(lambda ev: any(e.event_type == "MailDelivered" for e in ev))
        for _ in range(100):
            if await asyncio.to_thread(committed, h) == 1:
                break
            await asyncio.sleep(0.1)
        await h.stop()
    assert [m.rcpt_to for m in sink.mails] == [["full@dest.test"]]
    assert [(e.event_type, e.value["rcpt_to"]) for e in events if e.value["mail_id"] == mail_id] == \
        [("MailDelivered", ["full@dest.test"])]
    assert await asyncio.to_thread(committed, h) == 1, "the record's offset was not committed"


async def test_pausing_mid_flow_holds_what_was_fetched_and_delivers_each_mail_once(
        harness_factory: Callable[..., Harness]) -> None:
    with ScriptedSink(Script(delay_s=0.03)) as sink:
        h = harness_factory(transport={"dest.test": sink.address}, destination_concurrency=2)
        client = await h.start()
        h.feed(*(h.routed(message(f"flow {i}"), [f"f{i}@dest.test"]) for i in range(40)))
        await sink.await_for(4)
        client.pause()
        for _ in range(200):
            if client.tracker.in_flight() == 0:
                break
            await asyncio.sleep(0.05)
        at_pause = len(sink.mails)
        await asyncio.sleep(1.5)
        assert len(sink.mails) == at_pause < 40, "delivered while paused"
        client.resume()
        await sink.await_for(40)
        await asyncio.sleep(0.5)
        await h.stop()
    counts = Counter(m.rcpt_to[0] for m in sink.mails)
    assert set(counts) == {f"f{i}@dest.test" for i in range(40)} and set(counts.values()) == {1}


def show(h: Harness, *args: str) -> subprocess.CompletedProcess[str]:
    env = service_env(h.settings, "")
    return subprocess.run([sys.executable, "-m", "control.cli", "delivery", "show", *args], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=60, check=False)


async def test_delivery_show_tells_what_happened_to_each_recipient(harness_factory: Callable[..., Harness]) -> None:
    script = Script(data_replies=deque(["451 4.3.0 busy, try later"]),
                    refuse={"gone@dest.test": "550 5.1.1 <gone@dest.test>: no such user"})
    with ScriptedSink(script) as dest, ScriptedSink() as origin:
        h = harness_factory(transport={"dest.test": dest.address, "origin.test": origin.address})
        await h.start()
        mail_id = h.send(message("show me"), ["gone@dest.test", "here@dest.test"])
        await dest.await_for(1)
        await origin.await_for(1)
        await h.wait_events(lambda ev: sum(e.event_type == "MailDelivered" for e in ev) >= 2)
        await h.stop()
    both = await asyncio.to_thread(show, h, mail_id)
    print(both.stdout)
    assert both.returncode == 0, both.stderr
    text = " ".join(both.stdout.split())
    assert "here@dest.test: delivered" in text and "gone@dest.test: bounced" in text
    assert "attempt 1 deferred 451 4.3.0 busy, try later" in text and "attempt 2 delivered 250" in text
    # Refused at RCPT while DATA got 451: bounced at once, not retried with the other recipient.
    assert "attempt 1 bounced 550 5.1.1" in text and "attempt 2 bounced" not in text
    assert "to the sender — sender@origin.test: delivered" in text
    one = await asyncio.to_thread(show, h, mail_id, "--rcpt", "HERE@dest.test")
    assert "here@dest.test: delivered" in one.stdout and "gone@dest.test" not in one.stdout
    unknown = await asyncio.to_thread(show, h, "01NOSUCHMAIL0000000000000")
    assert unknown.returncode == 1 and "no delivery event for mail 01NOSUCHMAIL" in unknown.stderr
