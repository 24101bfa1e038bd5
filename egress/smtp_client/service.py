"""Entry point of smtp-client: `mailgate service smtp-client`.

Consumes mail.out and the retry topics mail.retry.1/2/3 (one consumer group,
``mailgate.smtp-client``) and hands each mail copy to ``handler.Handler``:
route, deliver, then delivery log, events, retries and bounces. Records are
handled concurrently (``concurrency``); a record's offset is committed only
when everything it caused is acknowledged by Kafka (``offsets.OffsetTracker``).

A retry-topic partition whose next record is not due yet is paused and sought
back to that record, and resumed when it is due (``retry.DueGate``): no sleeping
while holding the group. ``pause()`` (control.desired through the control channel, or
SIGUSR1) stops consuming and lets what runs finish; ``resume()`` (or SIGUSR2)
goes on where it stopped.
"""

from __future__ import annotations

import asyncio
import signal
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition

from core.control_channel import ControlChannel
from core.kafka import AsyncProducer, KafkaUnavailable, make_consumer
from core.logging import get_logger
from core.poison import Poison
from core.publish import Publisher
from egress.smtp_client.settings import Settings
from egress.smtp_client.deliverylog import DeliveryLog
from egress.smtp_client.handler import Handler
from egress.smtp_client.offsets import TP, OffsetTracker, Ticket
from egress.smtp_client.pool import Pool
from egress.smtp_client.retry import DueGate
from egress.smtp_client.routing import Router
from schemas import Codec, default_codec, unpack_message
from schemas.topics import DELIVERY_LOG, MAIL_RETRY, TopicNames
from schemas.typed import Record

log = get_logger("smtp-client")

SERVICE = "smtp-client"
POLL_S = 0.1
COMMIT_S = 0.1  # how often finished offsets are committed
STUCK_S = 5.0  # a backlog full for this long pauses the partitions (they are resumed with room)
NEVER = 1 << 62  # the due time of a record held while the service is paused


def _now_ms() -> int:
    return int(time.time() * 1000)


class SmtpClient:
    def __init__(self, settings: Settings, codec: Codec | None = None, stop: asyncio.Event | None = None) -> None:
        self.settings = settings
        cfg = settings.smtp_client
        self.codec = codec or default_codec()
        self.names = TopicNames(settings.kafka.topic_prefix)
        self.topics = [self.names.mail_out, *(self.names(t) for t in MAIL_RETRY)]
        self.stop = stop or asyncio.Event()
        self.tracker = OffsetTracker()
        self.gate = DueGate()
        self.pool = Pool(settings.hostname, cfg.timeout_s, cfg.destination_concurrency,
                         cfg.connection_reuse, cfg.connection_idle_s, cfg.tls_ca_file)
        self.router = Router(cfg)
        self.tasks: set[asyncio.Task[None]] = set()
        self.paused = False
        self._seeks: list[tuple[TP, int]] = []
        self._backlog: deque[Message] = deque()  # consumed, waiting for room (pausing on every full would
        # make the fetcher start over each time)
        self._full_since: float | None = None
        self._room = asyncio.Event()
        self._paused_tps: set[TP] = set()
        self._assignment: set[TP] = set()
        self._finished: dict[TP, list[tuple[int, str]]] = {}  # copies done, tombstoned once committed
        self._forget: list[str] = []
        self._lock = threading.Lock()
        self._kafka = ThreadPoolExecutor(1, thread_name_prefix="smtp-client-consumer")
        self.consumer: Consumer | None = None
        self.producer: AsyncProducer | None = None
        self.publisher: Publisher | None = None
        self.poison = Poison(SERVICE, settings.node)
        self.dlog: DeliveryLog | None = None
        self.handler: Handler | None = None

    def pause(self) -> None:
        if not self.paused:
            log.info("paused: nothing more is consumed; deliveries under way finish")
        self.paused = True

    def resume(self) -> None:
        if self.paused:
            log.info("resumed")
        self.paused = False

    # -- the consumer runs in one thread of its own ---------------------------

    async def _call(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._kafka, lambda: fn(*args, **kwargs))

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self._assignment |= {(p.topic, p.partition) for p in partitions}
        # Whatever the previous owner finished must be known before its records come again.
        if self.dlog is not None and not self.dlog.wait_caught_up(60.0):
            log.warning("delivery log not read to its end; a redelivered record may be delivered twice")

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        tps = {(p.topic, p.partition) for p in partitions}
        deadline = time.monotonic() + self.settings.smtp_client.timeout_s
        while self.tracker.in_flight_on(tps) and not self.stop.is_set() and time.monotonic() < deadline:
            time.sleep(0.05)  # let deliveries finish, so the next owner finds them in the log
        self._commit_sync(consumer, self.tracker.committable(only=tps))
        self._drop(tps)
        log.info("partitions revoked", partitions=sorted(f"{t}[{p}]" for t, p in tps))

    def _on_lost(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self._drop({(p.topic, p.partition) for p in partitions})

    def _drop(self, tps: set[TP]) -> None:
        self.tracker.revoke(tps)
        self.gate.forget(tps)
        self._paused_tps -= tps
        self._assignment -= tps
        self._backlog = deque(m for m in self._backlog if (m.topic(), m.partition()) not in tps)
        with self._lock:
            for tp in tps:
                self._finished.pop(tp, None)

    def _commit_sync(self, consumer: Consumer, points: dict[TP, int]) -> None:
        if not points:
            return
        try:
            consumer.commit(offsets=[TopicPartition(t, p, o) for (t, p), o in points.items()], asynchronous=False)
        except KafkaException as exc:
            # Not fatal: the records stay uncommitted and may come again (the delivery log skips them).
            log.warning("offset commit failed", error=str(exc.args[0]))
            return
        self.tracker.committed(points)
        with self._lock:
            for tp, point in points.items():
                done = self._finished.get(tp)
                if done:
                    self._forget += [key for offset, key in done if offset < point]
                    self._finished[tp] = [(o, k) for o, k in done if o >= point]

    def _steer(self, consumer: Consumer) -> None:
        """Pause what must wait (not due, paused service, no room), seek held records back, resume the rest."""
        if not self.paused:
            self.gate.forget({tp for tp, (_, due) in self.gate.waiting.items() if due >= NEVER})
            self.gate.release_due(_now_ms())
        # Long full (a slow destination): pause, so the group sees us polling without fetching more.
        full = self._full_since is not None and time.monotonic() - self._full_since > STUCK_S
        want = set(self.gate.waiting) | (self._assignment if self.paused or full else set())
        want &= self._assignment
        if want - self._paused_tps:
            consumer.pause([TopicPartition(t, p) for t, p in want - self._paused_tps])
            self._paused_tps |= want
        for (t, p), offset in self._seeks:
            if (t, p) in self._assignment:
                consumer.seek(TopicPartition(t, p, offset))
        self._seeks.clear()
        if self._paused_tps - want:
            consumer.resume([TopicPartition(t, p) for t, p in self._paused_tps - want])
            self._paused_tps &= want

    # -- main loop ------------------------------------------------------------

    async def run(self, ready: asyncio.Event | None = None) -> None:
        self.producer = AsyncProducer(self.settings, SERVICE)
        self.publisher = Publisher.on(self.producer, self.codec)
        self.dlog = DeliveryLog(self.settings, self.codec, self.names(DELIVERY_LOG))
        await asyncio.to_thread(self.dlog.start)
        # What a killed run had journalled but maybe not written to the log: before any record comes again.
        await self.dlog.replay(self._durably)
        self.handler = Handler(self.settings, self.names, self.router, self.pool, self.dlog, self._publish,
                               self._durably)
        self.consumer = make_consumer(self.settings, self.names.group(SERVICE), SERVICE)
        await self._call(self.consumer.subscribe, self.topics, on_assign=self._on_assign,
                         on_revoke=self._on_revoke, on_lost=self._on_lost)
        log.info("consuming", topics=self.topics, kafka=self.settings.bootstrap_servers,
                 smarthost=self.settings.smtp_client.smarthost or None, log_entries=len(self.dlog))
        if ready is not None:
            ready.set()
        housekeeping = committed = time.monotonic()
        try:
            while not self.stop.is_set():
                await self._call(self._steer, self.consumer)
                want = 2 * self.settings.smtp_client.concurrency - len(self._backlog)
                if want > 0 or self._full_since is not None and time.monotonic() - self._full_since > STUCK_S:
                    wait = POLL_S if not self._backlog else 0.005
                    self._backlog.extend(await self._call(self.consumer.consume, max(want, 1), wait))
                else:  # the backlog is full: wait for room rather than fetch more
                    self._room.clear()
                    try:
                        await asyncio.wait_for(self._room.wait(), POLL_S)
                    except TimeoutError:
                        pass
                self._drain_backlog()
                if time.monotonic() - committed > COMMIT_S:
                    committed = time.monotonic()
                    await self._call(self._commit_sync, self.consumer, self.tracker.committable())
                full = len(self._backlog) >= 2 * self.settings.smtp_client.concurrency
                self._full_since = (self._full_since or time.monotonic()) if full else None
                if time.monotonic() - housekeeping > 1.0:
                    housekeeping = time.monotonic()
                    self._spawn(self._housekeeping())
        finally:
            await self._shutdown()

    async def _housekeeping(self) -> None:
        with self._lock:
            forget, self._forget = self._forget, []
        if self.dlog is not None:
            self.dlog.rotate()
        if forget and self.dlog is not None:
            await self.dlog.forget(forget)
        await self.pool.expire()

    def _drain_backlog(self) -> None:
        if self.paused:
            while self._backlog:
                self._dispatch(self._backlog.popleft())  # held at their offsets, sought back
            return
        room = self.settings.smtp_client.concurrency - self.tracker.in_flight()
        while self._backlog and room > 0:
            if self._dispatch(self._backlog.popleft()):
                room -= 1

    def _dispatch(self, msg: Message) -> bool:
        """Start work on a record; False when there was none to start (held, or not a record)."""
        err = msg.error()
        if err is not None:
            if err.code() != KafkaError._PARTITION_EOF:
                log.warning("consumer error", error=err.str())
            return False
        tp, offset = (msg.topic() or "", msg.partition() or 0), msg.offset() or 0
        if self.gate.holds(tp):
            return False  # fetched before the pause took hold: read again after the seek
        if self.paused:
            self._hold(tp, offset, NEVER)
            return False
        raw = msg.value() or b""
        problem: Exception | None = None
        try:
            routed: dict[str, Any] | None = self.codec.decode(raw, expect="MailRouted").record
        except Exception as exc:  # DecodeError and friends: the poison policy applies
            routed, problem = None, exc
        else:
            due = routed.get("due_time") if routed else None
            if due and due > _now_ms():
                self._hold(tp, offset, due)
                return False
        ticket = self.tracker.started(tp, offset)
        self._spawn(self._handle(msg, raw, routed, problem, ticket))
        return True

    def _hold(self, tp: TP, offset: int, due_ms: int) -> None:
        self.gate.hold(tp, offset, due_ms)
        self._seeks.append((tp, offset))

    def _spawn(self, coro: Awaitable[None]) -> None:
        task = asyncio.ensure_future(coro)
        self.tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Future[None]) -> None:
        self.tasks.discard(task)  # type: ignore[arg-type]
        if not task.cancelled() and task.exception() is not None:
            # The record stays uncommitted (its partition's commit point waits): loud, not lost.
            log.error("delivery task crashed", exc_info=task.exception())

    async def _handle(self, msg: Message, raw: bytes, routed: dict[str, Any] | None, problem: Exception | None,
                      ticket: Ticket) -> None:
        assert self.handler is not None
        if routed is not None:
            try:
                data = unpack_message(routed["message"])
            except Exception as exc:  # zstd errors: the poison policy applies
                routed, problem = None, exc
        if routed is None:
            await self._quarantine(msg, raw, problem or ValueError("unreadable"))
        else:
            key = await self.handler.handle(routed, data)
            if key is not None:
                with self._lock:
                    self._finished.setdefault(ticket.tp, []).append((ticket.offset, key))
        self.tracker.finished(ticket)
        self._room.set()

    async def _shutdown(self) -> None:
        work = [t for t in self.tasks if not t.done()]
        if work:
            _, pending = await asyncio.wait(work, timeout=self.settings.smtp_client.timeout_s)
            for task in pending:  # left uncommitted: tried again after restart, the log skips what is done
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        if self.consumer is not None:
            await self._call(self._commit_sync, self.consumer, self.tracker.committable())
            await self._call(self.consumer.close)
        await self.pool.close()
        if self.dlog is not None:
            await asyncio.to_thread(self.dlog.close)
        if self.producer is not None:
            await asyncio.to_thread(self.producer.close, 10.0)
        self._kafka.shutdown(wait=False)
        log.info("stopped")

    # -- writing to Kafka -------------------------------------------------------

    async def _sleep(self, seconds: float) -> None:
        """Back off, but give up (leaving the record uncommitted) when the service stops."""
        try:
            await asyncio.wait_for(self.stop.wait(), seconds)
        except TimeoutError:
            return
        raise asyncio.CancelledError

    async def _durably(self, what: str, send: Callable[[], Awaitable[None]]) -> None:
        delay = 0.5
        while True:  # the mail has left already (or must wait): its record must not be dropped
            try:
                await send()
                return
            except (KafkaUnavailable, TimeoutError) as exc:
                log.warning("cannot write to Kafka, retrying", what=what, error=str(exc))
                await self._sleep(delay)
                delay = min(delay * 2, 30.0)

    async def _publish(self, event_type: str, record: dict[str, Any] | Record, topic: str, key: bytes) -> None:
        assert self.publisher is not None
        publisher = self.publisher

        async def send() -> None:
            await publisher.publish(topic, record, event_type=event_type, key=key)

        await self._durably(f"{event_type} to {topic}", send)

    async def _quarantine(self, msg: Message, raw: bytes, exc: Exception) -> None:
        record = self.poison.unreadable(raw, exc, msg.key(), msg.headers(), partition=msg.partition(),
                                        offset=msg.offset())
        await self._publish("MailRouted", record, self.names.mail_quarantine, record.mail_id.encode())


async def serve(settings: Settings, ready: asyncio.Event | None = None, stop: asyncio.Event | None = None) -> None:
    stop = stop or asyncio.Event()
    client = SmtpClient(settings, stop=stop)
    loop = asyncio.get_running_loop()
    for sig, action in ((signal.SIGTERM, stop.set), (signal.SIGINT, stop.set),
                        (signal.SIGUSR1, client.pause), (signal.SIGUSR2, client.resume)):
        try:
            loop.add_signal_handler(sig, action)
        except (NotImplementedError, RuntimeError):
            pass
    # control.desired: `mailgate` pause/resume of the consumer group reaches the client here.
    channel = await asyncio.to_thread(
        ControlChannel(settings, SERVICE, pause=client.pause, resume=client.resume, loop=loop).start)
    try:
        await client.run(ready)
    finally:
        await asyncio.to_thread(channel.stop)
