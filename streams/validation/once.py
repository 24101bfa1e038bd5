"""message-validation: each mail id routed once, even when re-processed after a crash.

The guarantee (DESIGN.md's terms): processing is at-least-once -- an event of mail.scored
is acknowledged (so its offset committed by Faust) only after its routing committed, so a
crash makes the worker read the uncommitted tail again -- and routing is idempotent by mail id:

* The agent takes mail.scored in batches (``validation.routing_batch`` events, or what came
  within ``routing_batch_within_s``) and routes each partition's share of a batch in ONE
  Kafka transaction: the MailRouted records of every mail (mail.out per domain, or one
  quarantine queue) and a RoutingMark per mail (``validation.routed``, compacted, key
  mail_id). Readers use ``isolation.level=read_committed`` (core.kafka's consumers do), so
  either all of them exist or none: a crash can neither leave a mark without its mail (a
  skip, i.e. a loss) nor a mail without its mark (a duplicate on the next run).
* Before routing, the mail ids are looked up in the marks of their input partition; a
  marked mail -- or a copy of a mail earlier in the same batch -- is skipped (its offset is
  then committed as usual).
* One transactional producer per mail.scored partition, ``transactional.id`` = group +
  partition. Creating it (``init_transactions``) fences any earlier owner of that
  partition -- a killed run, or another node after a rebalance -- and aborts its open
  transaction; only then are the partition's marks read (to the end, read_committed), so
  the lookup sees every routing that ever committed. Events taken before a rebalance are
  dropped unacknowledged (Faust seeks to the committed offsets and delivers them again).

Why batches: a transaction costs several round trips to the transaction coordinator and
the partition leaders (AddPartitionsToTxn, EndTxn, commit markers, acks=all); one per mail
capped the stage at the rate of those round trips (bench/validation_pipeline.py: ~140
mails/s, the same as plain writes awaited per mail). Per batch the cost is shared by up to
``routing_batch`` mails, and the agent inspects the next batch while the transactions of
the last one commit (same bench: 1,050-1,450 mails/s, 0.77-0.91 of plain writes). The price
is latency: a mail may wait up to ``routing_batch_within_s`` (0.1 s) for its batch to fill,
and a crash makes the worker inspect again up to a batch per partition (then skip it by its
marks).

Why not Faust's ``processing_guarantee="exactly_once"``: faust-streaming 0.15
still has open reports of duplicates after a kill (faust-streaming/faust#517),
of sends outside the transaction (#177) and of crashes and duplicates on
rebalance (#323). Why not dedupe only at the consumers of mail.out: the
quarantine topics are read by people (the quarantine read model), and a mail
must not appear there twice either.

The marks of a partition stay in memory while this worker owns it; mail.scored
is keyed by mail id, so a duplicate from upstream (spam-filter re-processing)
lands on the same partition and is skipped too.

A mail held because clamd gave no answer is examined again when it is released
(control.server.queues puts it back on mail.scored under its mail id, with a ``rescan`` header
naming the release). What is routed once is then that rescan: its mark's key is
``<mail id>#rescan:<release>`` (``Routing.key``), so the mail's first mark does not skip it,
and a rescan read again after a crash is skipped by its own mark.
"""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Producer, TopicPartition

from core.kafka import AsyncProducer, make_consumer, producer_config
from core.logging import get_logger
from core.publish import Encoder, Publisher
from streams.validation.settings import Settings
from schemas import Codec, DecodeError
from schemas.topics import VALIDATION_ROUTED, TopicNames

log = get_logger("message-validation")
ATTEMPTS = 5  # transactions tried per batch before the agent gives up (and the batch stays unacknowledged)


@dataclass(frozen=True)
class Output:
    """One record of a mail's routing: where it goes, and what."""

    topic: str
    key: bytes
    event_type: str
    record: dict[str, Any]


@dataclass(frozen=True)
class Routing:
    """One mail of a batch: its place on mail.scored and its records."""

    offset: int
    mail_id: str
    outputs: Sequence[Output]
    rescan: str | None = None  # the release from hold that asked for this examination (its rescan header)

    @property
    def key(self) -> str:
        """What is routed once, the key of its mark: the mail id, or one rescan of it."""
        return self.mail_id if self.rescan is None else f"{self.mail_id}#rescan:{self.rescan}"


REOPEN_S = 2.0  # between two producers of a partition while Kafka does not take its transactions


class Fenced(RuntimeError):
    """Another worker took this partition over (its producer fenced ours): stop routing it."""


class PartitionRouter:
    """The transactional producer and the routing marks of one mail.scored partition."""

    def __init__(self, settings: Settings, codec: Codec, partition: int, marks: dict[str, dict[str, Any]],
                 producer: Producer, topic: str) -> None:
        self.settings, self.codec, self.partition = settings, codec, partition
        self.encoder = Encoder(codec)
        self.marks, self.producer, self.topic = marks, producer, topic
        self.busy = asyncio.Lock()  # a revocation closes the producer only between two transactions

    def unrouted(self, batch: Sequence[Routing]) -> list[Routing]:
        """The mails of a batch that no mark names (nor an earlier mail of the same batch)."""
        fresh: dict[str, Routing] = {}
        for r in batch:
            if r.key not in self.marks and r.key not in fresh:
                fresh[r.key] = r
        return list(fresh.values())

    def commit(self, batch: Sequence[Routing]) -> None:
        """Writes the outputs and the marks of a batch in one transaction (blocking; run it in a thread)."""
        now = int(time.time() * 1000)
        marks = {r.key: self._mark(r, now) for r in batch}
        timeout = self.settings.kafka.produce_timeout_s
        for attempt in range(1, ATTEMPTS + 1):
            try:
                self.producer.begin_transaction()
                for r in batch:
                    for o in r.outputs:
                        self._produce(o.topic, o.key, o.event_type, o.record, None)
                    self._produce(self.topic, r.key.encode(), "RoutingMark", marks[r.key], self.partition)
                self._commit(timeout)
            except KafkaException as exc:
                self._recover(exc.args[0], batch, attempt, timeout)
                continue
            self.marks.update(marks)
            return
        raise TimeoutError(f"partition {self.partition}: routing of {len(batch)} mails (offsets "
                           f"{batch[0].offset}-{batch[-1].offset}) not committed after {ATTEMPTS} attempts")

    def _mark(self, r: Routing, now: int) -> dict[str, Any]:
        return {"mail_id": r.mail_id, "event_time": now, "node": self.settings.node,
                "input_partition": self.partition, "input_offset": r.offset,
                "queues": [":".join(filter(None, (o.record["queue"], o.record.get("destination"))))
                           for o in r.outputs]}

    def _produce(self, topic: str, key: bytes, event_type: str, record: dict[str, Any],
                 partition: int | None) -> None:
        _key, value, headers = self.encoder.envelope(record, event_type=event_type, key=key)
        extra = {} if partition is None else {"partition": partition}
        while True:
            try:
                self.producer.produce(topic, key=key, value=value, headers=headers, **extra)
                return
            except BufferError:  # a big batch filled the local queue: let librdkafka send some first
                self.producer.poll(0.1)

    def _commit(self, timeout: float) -> None:
        """commit_transaction, called again while librdkafka says it may still succeed (its flush timed
        out while a partition leader moved): an abort then would only conflict with the commit under way."""
        for attempt in range(1, ATTEMPTS + 1):
            try:
                self.producer.commit_transaction(timeout)
                return
            except KafkaException as exc:
                err = exc.args[0]
                if not err.retriable() or err.txn_requires_abort() or attempt == ATTEMPTS:
                    raise
                log.warning("routing commit not finished yet, finishing it", partition=self.partition,
                            attempt=attempt, error=err.str())

    def _recover(self, err: KafkaError, batch: Sequence[Routing], attempt: int, timeout: float) -> None:
        """After a failed transaction: abort it, so that nothing of this attempt becomes visible."""
        log.warning("routing transaction failed", mail_id=batch[0].mail_id, mails=len(batch),
                    partition=self.partition, attempt=attempt, error=err.str(), fatal=err.fatal())
        if err.fatal():  # fenced: another producer with our transactional.id exists
            raise Fenced(f"partition {self.partition}: {err.str()}")
        for _ in range(ATTEMPTS):  # an abort that timed out is called again, or the next begin conflicts
            try:
                self.producer.abort_transaction(timeout)
                break
            except KafkaException as exc:
                if exc.args[0].fatal():
                    raise Fenced(f"partition {self.partition}: {exc.args[0].str()}") from exc
                if not exc.args[0].retriable():
                    break
        time.sleep(min(0.2 * attempt, 2.0))

    def close(self) -> None:
        try:
            self.producer.abort_transaction(1.0)  # an open transaction (if any) is not committed by a close
        except KafkaException:
            pass
        self.producer.flush(1.0)


class OnceRouter:
    """Routes each mail id once; one ``PartitionRouter`` per owned mail.scored partition."""

    def __init__(self, settings: Settings, codec: Codec) -> None:
        self.settings, self.codec = settings, codec
        self.names = TopicNames(settings.kafka.topic_prefix)
        self.topic = self.names(VALIDATION_ROUTED)
        self._partitions: dict[int, PartitionRouter] = {}
        self._opening: defaultdict[int, asyncio.Lock] = defaultdict(asyncio.Lock)  # partitions open side by side
        self._revocations: defaultdict[int, int] = defaultdict(int)  # per partition: how often it was revoked

    async def route(self, partition: int, batch: Sequence[Routing]) -> set[int]:
        """Routes a batch of one partition in one transaction, less the mails routed before (or
        earlier in the batch); returns the offsets of the mails routed now (the others: skipped).
        While Kafka cannot take the transaction (brokers down), it tries again with a new producer,
        which fences the old one's transaction, and with the marks read again: never twice, never lost."""
        epoch = self._revocations[partition]
        while True:
            if self._revocations[partition] != epoch:  # reopening now would fence the partition's new owner
                raise Fenced(f"partition {partition}: revoked while its routing was retried")
            try:
                routed = await self._route(await self._router(partition), partition, batch)
            except (TimeoutError, KafkaException) as exc:
                log.warning("routing not committed: retrying with a new producer", mail_id=batch[0].mail_id,
                            partition=partition, mails=len(batch), error=str(exc), retry_in_s=REOPEN_S)
                router = self._partitions.pop(partition, None)
                if router is not None:
                    await asyncio.to_thread(router.close)
                await asyncio.sleep(REOPEN_S)
                continue
            return routed

    async def _route(self, router: PartitionRouter, partition: int, batch: Sequence[Routing]) -> set[int]:
        async with router.busy:
            fresh = router.unrouted(batch)
            routed_now = {r.offset for r in fresh}
            for r in batch:
                if r.offset not in routed_now:
                    log.info("already routed: skipped", mail_id=r.mail_id, partition=partition, offset=r.offset,
                             routed_at=router.marks.get(r.key, {}).get("input_offset", "in this batch"))
            if fresh:
                try:
                    await asyncio.to_thread(router.commit, fresh)
                except Fenced:
                    self._partitions.pop(partition, None)
                    await asyncio.to_thread(router.close)
                    raise
        return routed_now

    async def _router(self, partition: int) -> PartitionRouter:
        router = self._partitions.get(partition)
        if router is None:
            async with self._opening[partition]:
                router = self._partitions.get(partition)
                if router is None:
                    router = await asyncio.to_thread(self._open, partition)
                    self._partitions[partition] = router
        return router

    def _open(self, partition: int) -> PartitionRouter:
        """Fences the partition's earlier owner, then reads its marks to the end."""
        tid = f"{self.names.group('message-validation')}.p{partition}"
        timeout = max(self.settings.kafka.produce_timeout_s, 30.0)
        producer = Producer(producer_config(self.settings, "message-validation", **{
            "transactional.id": tid, "transaction.timeout.ms": 60000}))
        producer.init_transactions(timeout)
        marks = read_marks(self.settings, self.codec, self.topic, partition, timeout)
        log.info("routing partition opened", partition=partition, transactional_id=tid, marks=len(marks))
        return PartitionRouter(self.settings, self.codec, partition, marks, producer, self.topic)

    async def release(self, partitions: Sequence[int]) -> None:
        """Partitions revoked: forget them (a later assignment fences and reads again)."""
        for p in partitions:
            self._revocations[p] += 1
            router = self._partitions.pop(p, None)
            if router is not None:
                async with router.busy:
                    await asyncio.to_thread(router.close)

    async def close(self) -> None:
        await self.release(list(self._partitions))


class PlainRouter:
    """``validation.routing_once = false``: at-least-once only -- plain writes (no transaction, no
    idempotence, no mark, no skip); a crash duplicates what was routed after the last offset commit.
    Kept to measure what the guarantee costs (bench/validation_pipeline.py)."""

    def __init__(self, settings: Settings, codec: Codec) -> None:
        self.codec = codec
        self.producer = AsyncProducer(settings, "message-validation", **{"enable.idempotence": False})
        self.publisher = Publisher.on(self.producer, codec)

    async def route(self, partition: int, batch: Sequence[Routing]) -> set[int]:
        """Writes every record of the batch and waits until the broker acknowledged them all."""
        await asyncio.gather(*(self.publisher.publish(o.topic, o.record, event_type=o.event_type, key=o.key)
                               for r in batch for o in r.outputs))
        return {r.offset for r in batch}

    async def release(self, partitions: Sequence[int]) -> None:
        pass  # nothing is held per partition

    async def close(self) -> None:
        await asyncio.to_thread(self.producer.close)


def make_router(settings: Settings, codec: Codec) -> OnceRouter | PlainRouter:
    return OnceRouter(settings, codec) if settings.validation.routing_once else PlainRouter(settings, codec)


def read_marks(settings: Settings, codec: Codec, topic: str, partition: int,
               timeout: float) -> dict[str, dict[str, Any]]:
    """The committed marks of one partition of validation.routed (read_committed, to its end)."""
    consumer = make_consumer(settings, f"{topic}.reader", "validation-marks", **{"enable.partition.eof": True})
    marks: dict[str, dict[str, Any]] = {}
    try:
        meta = consumer.list_topics(topic, timeout=timeout).topics.get(topic)
        if meta is None or meta.error is not None or partition not in meta.partitions:
            raise LookupError(f"{topic} has no partition {partition}: it needs as many partitions as "
                              "mail.scored (run `mailgate topics create`)")
        low, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=timeout)
        if high <= low:
            return marks
        consumer.assign([TopicPartition(topic, partition, low)])
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            msg = consumer.poll(1.0)
            if msg is None:
                continue
            if msg.error() is not None:
                if msg.error().code() == KafkaError._PARTITION_EOF:
                    return marks
                continue
            _apply_mark(codec, marks, msg.key(), msg.value())
        raise TimeoutError(f"{topic}[{partition}]: marks not read to the end within {timeout:.0f}s")
    finally:
        consumer.close()


def _apply_mark(codec: Codec, marks: dict[str, dict[str, Any]], key: bytes | None, value: bytes | None) -> None:
    """Marks are kept by their key (``Routing.key``: the mail id, or a rescan of it)."""
    if key is None:
        return
    if value is None:
        marks.pop(key.decode(errors="replace"), None)
        return
    try:
        mark = codec.decode(value, expect="RoutingMark").record
    except DecodeError as exc:
        log.warning("unreadable routing mark", mail_id=key.decode(errors="replace"), error=str(exc))
        return
    marks[key.decode(errors="replace")] = mark
