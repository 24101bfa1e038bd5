"""Publishing an event, written once for every stage: encode it (the compiled Avro
writer), add the readable headers (``mail-id``, ``event-type``, ``schema``), key it,
send it (acks=all, from the ``core.kafka`` factory) and wait for the broker's ack.

- ``Publisher``: ``await publisher.publish(topic, event)`` returns once the broker has
  the record. On an ``AsyncProducer`` (``Publisher.on(producer)``: ingress, egress),
  or on anything with the same ``send`` (the Faust agents' ``streams.publish.faust_send``:
  there Faust flushes its producer before it commits an offset, so the ack is awaited
  per commit, not per record).
- ``produce_and_wait``: one record from a thread on a plain confluent ``Producer``
  (control, the CLI), returned as the broker acknowledged it; ``produce_many``: a
  stream of them (feeders), flushed at the end.
- ``Encoder.envelope``: only the bytes (key, value, headers), for a caller that sends
  them inside its own transaction (message-validation's routing).

An event is a typed record (``schemas.events``); a plain dict still goes with its
``event_type`` named, for the events not converted yet.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from typing import Any, NamedTuple, Protocol

from confluent_kafka import KafkaError, Message, Producer

from core.kafka import AsyncProducer, KafkaUnavailable
from core.logging import get_logger
from schemas.codec import Codec, default_codec
from schemas.fast_encoder import FastEncoder
from schemas.typed import Record

log = get_logger("publish")

Headers = Sequence[tuple[str, bytes]]
Extra = Headers
Event = Record | Mapping[str, Any]


class Envelope(NamedTuple):
    key: bytes
    value: bytes | None  # None: a tombstone
    headers: Headers


class Send(Protocol):
    """``AsyncProducer.send``'s shape: returns (awaited) once the record is acknowledged."""

    def __call__(self, topic: Any, key: bytes, value: bytes | None, headers: Headers,
                 loop: asyncio.AbstractEventLoop | None = ...) -> Awaitable[Any]: ...


class Encoder:
    """Events to envelopes with one codec; a compiled writer per event type, made on first use."""

    def __init__(self, codec: Codec | None = None) -> None:
        self.codec = codec or default_codec()
        # per event type: its compiled writer, and the headers that are the same for every record of it
        self._kinds: dict[str, tuple[Callable[[Any], bytes], Headers]] = {}

    def _kind(self, kind: str) -> tuple[Callable[[Any], bytes], Headers]:
        found = self._kinds.get(kind)
        if found is None:
            fixed = [h for h in self.codec.headers(kind, "") if h[0] != "mail-id"]
            found = self._kinds[kind] = (FastEncoder(self.codec.schema(kind)).encode, fixed)
        return found

    def encode(self, event: Event, event_type: str | None = None) -> bytes:
        return self.envelope(event, event_type=event_type).value or b""

    def envelope(self, event: Event, *, event_type: str | None = None, key: bytes | str | None = None,
                 extra: Extra = (), id_header: str = "mail-id") -> Envelope:
        """The record for ``event``: keyed by its mail id unless ``key`` says otherwise
        (``id_header``: ``event-id`` for the control events, which name no mail)."""
        if isinstance(event, Record):
            kind = event_type or event.EVENT_TYPE
            mail_id: str = getattr(event, "mail_id", None) or getattr(event, "event_id")
        else:
            if event_type is None:
                raise ValueError("a plain dict needs its event_type named")
            kind, mail_id = event_type, event.get("mail_id") or event["event_id"]
            event = event if type(event) is dict else dict(event)  # the writer reads a dict's items
        write, fixed = self._kind(kind)
        raw_key = mail_id if key is None else key
        return Envelope(raw_key.encode() if isinstance(raw_key, str) else raw_key, write(event),
                        [(id_header, mail_id.encode()), *fixed, *extra])


class Publisher:
    """Publishes events through one ``send`` and waits for each ack."""

    def __init__(self, send: Send, codec: Codec | None = None, loop: asyncio.AbstractEventLoop | None = None) -> None:
        self._send = send
        self.encoder = Encoder(codec)
        self.loop = loop  # the caller's loop, handed to each send (None: looked up per send)
        self._pending: set[asyncio.Task[Any]] = set()

    @classmethod
    def on(cls, producer: AsyncProducer, codec: Codec | None = None,
           loop: asyncio.AbstractEventLoop | None = None) -> Publisher:
        return cls(producer.send, codec, loop)

    async def publish(self, topic: Any, event: Event, *, event_type: str | None = None,
                      key: bytes | str | None = None, extra: Extra = (),
                      loop: asyncio.AbstractEventLoop | None = None) -> Any:
        """Returns once the broker acknowledged the record; raises ``KafkaUnavailable`` when it did not."""
        key_, value, headers = self.encoder.envelope(event, event_type=event_type, key=key, extra=extra)
        return await self._send(topic, key_, value, headers, loop=loop or self.loop)

    async def send_raw(self, topic: Any, key: bytes | str, value: bytes | None, headers: Extra = (),
                       loop: asyncio.AbstractEventLoop | None = None) -> Any:
        """A record that is no event (a ledger entry, a tombstone), sent and acknowledged the same way."""
        return await self._send(topic, key.encode() if isinstance(key, str) else key, value, list(headers),
                                loop=loop or self.loop)

    def publish_soon(self, topic: Any, event: Event | None, *, key: bytes | str | None = None,
                     value: bytes | None = None, what: str = "event") -> None:
        """Sent without waiting (a refusal, a greylisting entry: nobody waits for Kafka on them);
        a failure is logged. ``event`` None: the raw ``value`` (None: a tombstone) under ``key``."""
        loop = self.loop or asyncio.get_running_loop()  # looked up once, handed to the send
        if event is not None:
            sending = self.publish(topic, event, key=key, loop=loop)
        else:
            assert key is not None
            sending = self.send_raw(topic, key, value, loop=loop)
        task = loop.create_task(sending)
        self._pending.add(task)
        task.add_done_callback(lambda t: self._sent(t, topic, what))

    def _sent(self, task: asyncio.Task[Any], topic: Any, what: str) -> None:
        self._pending.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.warning(f"{what} not written", topic=str(topic), error=str(task.exception()))


def produce_and_wait(producer: Producer, topic: str, envelope: Envelope, timeout: float) -> Message:
    """One record from a thread: produced, flushed, and returned as the broker acknowledged it."""
    acked: list[tuple[KafkaError | None, Message]] = []
    producer.produce(topic, key=envelope.key, value=envelope.value, headers=[*envelope.headers],
                     on_delivery=lambda err, msg: acked.append((err, msg)))
    if producer.flush(timeout) or not acked or acked[0][0] is not None:
        raise KafkaUnavailable(acked[0][0] if acked else None, f"{topic}: record not acknowledged")
    return acked[0][1]


def produce_many(producer: Producer, topic: str, envelopes: Iterable[Envelope], timeout: float = 60.0) -> None:
    """Many records from a thread (feeders, tombstones): queued as fast as librdkafka takes them, then
    flushed; raises ``KafkaUnavailable`` when any was refused or not acknowledged within ``timeout``."""
    errors: list[KafkaError] = []

    def report(err: KafkaError | None, _msg: Message) -> None:
        if err is not None:
            errors.append(err)

    for key, value, headers in envelopes:
        while True:
            try:
                producer.produce(topic, key=key, value=value, headers=[*headers], on_delivery=report)
                break
            except BufferError:  # the local queue is full: let librdkafka send some first
                producer.poll(0.1)
        producer.poll(0)
    if producer.flush(timeout) or errors:
        raise KafkaUnavailable(errors[0] if errors else None,
                               f"{topic}: {len(errors) or 'some'} records not acknowledged within {timeout:.0f}s")
