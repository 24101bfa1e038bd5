"""The Kafka client factory: every producer, consumer and admin client of mailgate
is made here, with our defaults (acks=all, idempotence, batching, compression).

No stage builds its own client; tests and tools get theirs here too.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer
from confluent_kafka.admin import AdminClient

from core.settings import GatewaySettings

Headers = Sequence[tuple[str, bytes]]


class KafkaUnavailable(Exception):
    """Kafka did not take a record (broker down, timeout, fatal producer error).

    Keeps the broker's error so that logs and replies can name it.
    """

    def __init__(self, error: KafkaError | None, what: str) -> None:
        self.error = error
        self.code = error.code() if error is not None else None
        reason = error.str() if error is not None else "no answer"
        super().__init__(f"{what}: {reason}")


def base_config(settings: GatewaySettings, client_id: str) -> dict[str, Any]:
    return {
        "bootstrap.servers": settings.bootstrap_servers,
        "client.id": f"mailgate-{client_id}@{settings.node}",
        **settings.kafka.extra,
    }


def max_record_bytes(settings: GatewaySettings) -> int:
    """Largest record a mail topic must carry: the biggest mail, uncompressible, plus envelope."""
    return int(settings.max_message_size * 1.05) + 64 * 1024


def producer_config(settings: GatewaySettings, client_id: str, **overrides: Any) -> dict[str, Any]:
    timeout_ms = int(settings.kafka.produce_timeout_s * 1000)
    return {
        **base_config(settings, client_id),
        "acks": "all",
        "enable.idempotence": True,
        "linger.ms": settings.kafka.linger_ms,
        "compression.type": settings.kafka.compression,
        "message.max.bytes": max_record_bytes(settings),
        # A record not acknowledged by then fails, so an SMTP accept can answer 451.
        "message.timeout.ms": timeout_ms,
        "request.timeout.ms": min(timeout_ms, 30000),
        "max.in.flight": settings.kafka.max_in_flight,
        **overrides,
    }


def make_producer(settings: GatewaySettings, client_id: str, **overrides: Any) -> Producer:
    return Producer(producer_config(settings, client_id, **overrides))


def make_consumer(settings: GatewaySettings, group: str, client_id: str, **overrides: Any) -> Consumer:
    return Consumer(
        {
            **base_config(settings, client_id),
            "group.id": group,
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "auto.offset.reset": "earliest",
            "isolation.level": "read_committed",
            "fetch.max.bytes": max(max_record_bytes(settings), 52428800),
            "max.partition.fetch.bytes": max_record_bytes(settings),
            **overrides,
        }
    )


def make_admin(settings: GatewaySettings, **overrides: Any) -> AdminClient:
    return AdminClient({**base_config(settings, "admin"), **overrides})


def faust_broker_url(settings: GatewaySettings) -> str:
    return ";".join(f"kafka://{hp.strip()}" for hp in settings.bootstrap_servers.split(","))


# A delivery report: the send's future, the error (None: acknowledged), the message, its topic.
_Report = tuple["asyncio.Future[Message]", "KafkaError | None", Message, str]


class AsyncProducer:
    """A confluent-kafka producer whose sends are awaitable.

    ``await send(...)`` returns only when the broker acknowledged the record
    (acks=all), or raises ``KafkaUnavailable``. Records are batched by librdkafka;
    a background thread serves delivery reports, so many sends may be in flight.
    """

    def __init__(self, settings: GatewaySettings, client_id: str, **overrides: Any) -> None:
        self._producer = make_producer(settings, client_id, error_cb=self._on_error, **overrides)
        self._timeout = settings.kafka.produce_timeout_s
        self._closing = threading.Event()
        self._fatal: KafkaError | None = None
        # Delivery reports of one poll() are handed to their loops in one call each: one wake-up
        # (a write(2) to the loop's self-pipe) per acknowledged batch, not one per record.
        self._reports: list[tuple[asyncio.AbstractEventLoop, _Report]] = []
        self._reports_lock = threading.Lock()
        self._poller = threading.Thread(target=self._poll_loop, name=f"kafka-poll-{client_id}", daemon=True)
        self._poller.start()

    def _on_error(self, err: KafkaError) -> None:
        if err.fatal():
            self._fatal = err

    def _poll_loop(self) -> None:
        while not self._closing.is_set():
            self._producer.poll(0.05)
            self._hand_over()

    def _hand_over(self) -> None:
        with self._reports_lock:
            reports, self._reports = self._reports, []
        by_loop: dict[asyncio.AbstractEventLoop, list[_Report]] = {}
        for loop, report in reports:
            by_loop.setdefault(loop, []).append(report)
        for loop, batch in by_loop.items():
            try:
                loop.call_soon_threadsafe(_settle_all, batch)
            except RuntimeError:  # that loop is closed: nobody awaits these any more
                pass

    async def send(self, topic: str, key: bytes | str, value: bytes | None, headers: Headers = (),
                   loop: asyncio.AbstractEventLoop | None = None) -> Message:
        """``loop``: the caller's running loop, when it knows it (get_running_loop() costs a getpid(2)
        a call on 3.11, a few per cent of the smtp-server's CPU)."""
        # value None: a tombstone (compacted topics forget the key)
        loop = loop or asyncio.get_running_loop()
        done: asyncio.Future[Message] = loop.create_future()

        def report(err: KafkaError | None, msg: Message) -> None:  # in poll() or flush(), another thread
            with self._reports_lock:
                self._reports.append((loop, (done, err, msg, topic)))

        if self._fatal is not None:
            raise KafkaUnavailable(self._fatal, f"producer for {topic} is broken")
        try:
            self._producer.produce(topic, value=value, key=key, headers=list(headers), on_delivery=report)
        except BufferError as exc:
            raise KafkaUnavailable(None, f"local queue for {topic} is full") from exc
        except KafkaException as exc:
            raise KafkaUnavailable(exc.args[0], f"cannot produce to {topic}") from exc
        # librdkafka fails the record itself after message.timeout.ms; this is a backstop. A timer
        # rather than asyncio.wait_for: that wraps every send in a second future and its callbacks.
        backstop = loop.call_later(self._timeout + 5, _give_up, done, topic)
        try:
            return await done
        finally:
            backstop.cancel()

    def flush(self, timeout: float = 10.0) -> int:
        left = self._producer.flush(timeout)
        self._hand_over()
        return left

    def close(self, timeout: float = 10.0) -> int:
        left = self.flush(timeout)
        self._closing.set()
        self._poller.join(timeout=1)
        self._hand_over()
        return left


def _give_up(done: asyncio.Future[Message], topic: str) -> None:
    if not done.done():
        done.set_exception(KafkaUnavailable(None, f"no delivery report for a record of {topic}"))


def _settle_all(batch: list[_Report]) -> None:
    for done, err, msg, topic in batch:
        _settle(done, err, msg, topic)


def _settle(done: asyncio.Future[Message], err: KafkaError | None, msg: Message, topic: str) -> None:
    if done.done():
        return
    if err is not None:
        done.set_exception(KafkaUnavailable(err, f"record for {topic} not acknowledged"))
    else:
        done.set_result(msg)
