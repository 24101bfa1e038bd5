"""Entry point of smtp-client: `mailgate service smtp-client`.

Consumes mail.out (consumer group ``mailgate.smtp-client``), delivers each mail to
the configured next hop, publishes the outcome to mail.delivery, and commits a
record's offset only after the next hop answered for every recipient (2xx, or a
permanent 5xx). Temporary failures are tried again in place with backoff.
"""

from __future__ import annotations

import asyncio
import signal
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition

from core.kafka import AsyncProducer, KafkaUnavailable, make_consumer
from core.logging import get_logger
from core.settings import Settings
from egress.smtp_client import delivery
from egress.smtp_client.events import outcome_events
from egress.smtp_client.offsets import TP, OffsetTracker, Ticket
from schemas import Codec, DecodeError, default_codec, unpack_message
from schemas.quarantine import unreadable_record
from schemas.topics import TopicNames

log = get_logger("smtp-client")

SERVICE = "smtp-client"
POLL_S = 0.2


class SmtpClient:
    def __init__(self, settings: Settings, codec: Codec | None = None, stop: asyncio.Event | None = None) -> None:
        self.settings = settings
        self.codec = codec or default_codec()
        self.names = TopicNames(settings.kafka.topic_prefix)
        self.stop = stop or asyncio.Event()
        cfg = settings.smtp_client
        host, port = cfg.smarthost_addr
        self.hop = delivery.NextHop(host, port, settings.smtp_server.hostname, cfg.timeout_s)
        self.tracker = OffsetTracker()
        self.tasks: set[asyncio.Task[None]] = set()
        self._kafka = ThreadPoolExecutor(1, thread_name_prefix="smtp-client-consumer")
        self.consumer: Consumer | None = None
        self.producer: AsyncProducer | None = None

    # -- the consumer runs in one thread of its own ---------------------------

    async def _call(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._kafka, lambda: fn(*args, **kwargs))

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        tps = {(p.topic, p.partition) for p in partitions}
        self._commit_sync(consumer, self.tracker.committable(only=tps))
        self.tracker.revoke(tps)
        log.info("partitions revoked", partitions=sorted(p for _, p in tps))

    def _on_lost(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self.tracker.revoke({(p.topic, p.partition) for p in partitions})

    def _commit_sync(self, consumer: Consumer, points: dict[TP, int]) -> None:
        if not points:
            return
        try:
            consumer.commit(offsets=[TopicPartition(t, p, o) for (t, p), o in points.items()], asynchronous=False)
            self.tracker.committed(points)
        except KafkaException as exc:
            # Not fatal: the records stay uncommitted and may be delivered again (at-least-once).
            log.warning("offset commit failed", error=str(exc.args[0]))

    # -- main loop ------------------------------------------------------------

    async def run(self, ready: asyncio.Event | None = None) -> None:
        cfg = self.settings.smtp_client
        self.producer = AsyncProducer(self.settings, SERVICE)
        self.consumer = make_consumer(self.settings, self.names.group(SERVICE), SERVICE)
        await self._call(self.consumer.subscribe, [self.names.mail_out],
                         on_revoke=self._on_revoke, on_lost=self._on_lost)
        log.info("consuming", topic=self.names.mail_out, next_hop=self.hop.name, kafka=self.settings.bootstrap_servers)
        if ready is not None:
            ready.set()
        paused = False
        try:
            while not self.stop.is_set():
                room = cfg.concurrency - self.tracker.in_flight()
                if (room <= 0) != paused:
                    paused = room <= 0
                    assignment = await self._call(self.consumer.assignment)
                    await self._call(self.consumer.pause if paused else self.consumer.resume, assignment)
                messages = await self._call(self.consumer.consume, max(room, 1), POLL_S)
                for msg in messages:
                    self._dispatch(msg)
                await self._call(self._commit_sync, self.consumer, self.tracker.committable())
        finally:
            await self._shutdown()

    def _dispatch(self, msg: Message) -> None:
        err = msg.error()
        if err is not None:
            if err.code() != KafkaError._PARTITION_EOF:
                log.warning("consumer error", error=err.str())
            return
        ticket = self.tracker.started((msg.topic(), msg.partition()), msg.offset())
        task = asyncio.create_task(self._handle(msg, ticket))
        self.tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self.tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            # The record stays uncommitted (its partition's commit point waits): loud, not lost.
            log.error("delivery task crashed", exc_info=task.exception())

    async def _shutdown(self) -> None:
        if self.tasks:
            _, pending = await asyncio.wait(self.tasks, timeout=self.settings.smtp_client.timeout_s)
            for task in pending:  # still retrying: left uncommitted, tried again after restart
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        if self.consumer is not None:
            await self._call(self._commit_sync, self.consumer, self.tracker.committable())
            await self._call(self.consumer.close)
        if self.producer is not None:
            await asyncio.to_thread(self.producer.close, 10.0)
        self._kafka.shutdown(wait=False)
        log.info("stopped")

    # -- one record -----------------------------------------------------------

    async def _handle(self, msg: Message, ticket: Ticket) -> None:
        raw = msg.value() or b""
        try:
            routed = self.codec.decode(raw, expect="MailRouted").record
            data = unpack_message(routed["message"])
        except Exception as exc:  # DecodeError, zstd errors: the poison policy applies
            await self._quarantine(msg, raw, exc)
        else:
            await self._deliver(routed, data)
        self.tracker.finished(ticket)

    async def _deliver(self, routed: dict[str, Any], data: bytes) -> None:
        cfg = self.settings.smtp_client
        mlog = log.bind(mail_id=routed["mail_id"], destination=routed.get("destination"))
        recipients = list(routed["rcpt_to"])
        delay, attempt = cfg.retry_initial_s, 0
        while recipients:
            attempt += 1
            outcome = await delivery.attempt(self.hop, routed["mail_from"], recipients, data)
            for event_type, record in outcome_events(routed, outcome, self.hop, attempt, self.settings.node):
                await self._publish(event_type, record)
            if outcome.accepted:
                mlog.info("delivered", rcpt=len(outcome.accepted), next_hop=self.hop.name, attempt=attempt)
            for rcpt in outcome.permanent:
                mlog.warning("delivery failed permanently", rcpt=rcpt, reply=outcome.failed[rcpt].text)
            recipients = outcome.temporary
            if recipients:
                reply = outcome.failed[recipients[0]]
                mlog.info("deferred", rcpt=len(recipients), reply=reply.text, retry_in_s=delay, attempt=attempt)
                await self._sleep(delay)
                delay = min(delay * 2, cfg.retry_max_s)

    async def _sleep(self, seconds: float) -> None:
        """Back off, but give up (leaving the record uncommitted) when the service stops."""
        try:
            await asyncio.wait_for(self.stop.wait(), seconds)
        except TimeoutError:
            return
        raise asyncio.CancelledError

    async def _publish(self, event_type: str, record: dict[str, Any], topic: str | None = None,
                       key: bytes | None = None) -> None:
        assert self.producer is not None
        value = self.codec.encode(event_type, record)
        headers = self.codec.headers(event_type, record["mail_id"])
        delay = 0.5
        while True:  # the mail has left already: its event must not be dropped
            try:
                await self.producer.send(topic or self.names.mail_delivery, key or record["mail_id"].encode(),
                                         value, headers)
                return
            except (KafkaUnavailable, TimeoutError) as exc:
                log.warning("cannot record event, retrying", mail_id=record["mail_id"], event=event_type,
                            error=str(exc))
                await self._sleep(delay)
                delay = min(delay * 2, 30.0)

    async def _quarantine(self, msg: Message, raw: bytes, exc: Exception) -> None:
        headers = dict(msg.headers() or [])
        mail_id = (headers.get("mail-id") or b"").decode(errors="replace") or None
        record = unreadable_record(mail_id, raw, f"{type(exc).__name__}: {exc}", self.settings.node, SERVICE)
        log.warning("quarantined unreadable record", mail_id=record["mail_id"], reason=record["reasons"][0],
                    partition=msg.partition(), offset=msg.offset())
        await self._publish("MailRouted", record, topic=self.names.mail_quarantine,
                            key=record["mail_id"].encode())


async def serve(settings: Settings, ready: asyncio.Event | None = None, stop: asyncio.Event | None = None) -> None:
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        try:
            loop.add_signal_handler(sig, stop.set)
        except (NotImplementedError, RuntimeError):
            pass
    await SmtpClient(settings, stop=stop).run(ready)
