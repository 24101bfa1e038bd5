"""A service's end of the control plane: the desired state in control.desired, read
in a thread, and the consumers' state reported to control.status.

control-server writes what each service should be doing to the compacted topic
control.desired; the engine of each node obeys the ``process`` aspect (runs or
stops the service); the service itself obeys the ``consumers`` aspect (pauses or
resumes its consumer group) through a ``ControlChannel``::

    channel = ControlChannel(settings, "smtp-client", pause=client.pause, resume=client.resume,
                             loop=asyncio.get_running_loop()).start()
    ...
    channel.stop()

Faust apps call ``attach_faust(app, settings, stage)`` once, before the worker starts.

Keys of control.desired: ``aspect/node/service`` (node ``*``: every node; of the
``*`` record and the node's own, the newer wins) and ``refresh/node``. Keys of
control.status: ``node/service/aspect``.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from confluent_kafka import Producer

from core.kafka import make_producer
from core.logging import get_logger
from core.publish import Encoder
from core.settings import GatewaySettings
from core.tables import DecodedTable
from schemas import default_codec, new_mail_id
from schemas.topics import CONTROL_DESIRED, CONTROL_STATUS, TopicNames

log = get_logger("control-channel")
_ENCODER = Encoder()

PROCESS, CONSUMERS, REFRESH = "process", "consumers", "refresh"
ACCOUNT = "account"  # aspect prefix of a collector's per-account status: account/<name> (pop3-proxy)
ALL_NODES = "*"
Record = dict[str, Any]


def now_ms() -> int:
    return int(time.time() * 1000)


def desired_key(aspect: str, node: str, service: str = "") -> str:
    return f"{aspect}/{node}/{service}" if aspect != REFRESH else f"{REFRESH}/{node}"


def status_key(node: str, service: str, aspect: str) -> str:
    return f"{node}/{service}/{aspect}"


def effective(table: Mapping[str, Record], aspect: str, node: str, service: str) -> Record | None:
    """The desired record that applies to ``service`` on ``node``: the newer of the
    every-node record and the node's own (the node's own on a tie)."""
    found = [r for r in (table.get(desired_key(aspect, ALL_NODES, service)),
                         table.get(desired_key(aspect, node, service))) if r is not None]
    return max(found, key=lambda r: (r["event_time"], r["node"] != ALL_NODES), default=None)


def produce_event(producer: Producer, topic: str, key: str, event_type: str, record: Record) -> None:
    """Queues one control event; ``event_id`` and ``event_time`` are filled in when missing."""
    record.setdefault("event_time", now_ms())
    record.setdefault("event_id", new_mail_id(record["event_time"]))
    for f in default_codec().schema(event_type).fields:  # Avro's writer does not fill defaults in
        if f.name not in record and f.has_default:
            record[f.name] = f.default
    envelope = _ENCODER.envelope(record, event_type=event_type, key=key, id_header="event-id")
    producer.produce(topic, key=envelope.key, value=envelope.value, headers=[*envelope.headers])
    producer.poll(0)


class DesiredTable(DecodedTable):
    """control.desired, followed in a thread and decoded: key → ServiceDesired record."""

    def __init__(self, settings: GatewaySettings, on_change: Callable[[str, Record | None], None] | None = None,
                 name: str = "desired") -> None:
        super().__init__(settings, TopicNames(settings.kafka.topic_prefix)(CONTROL_DESIRED), "ServiceDesired",
                         on_change, name=name)

    def effective(self, aspect: str, node: str, service: str) -> Record | None:
        return effective(self.snapshot(), aspect, node, service)


class ControlChannel:
    """Pauses and resumes one service's consumers as control.desired says, and reports it.

    ``pause``/``resume`` are called from the channel's thread, or through
    ``loop.call_soon_threadsafe`` when a loop is given. The state is reported to
    control.status on every change and every ``control.status_interval_s``.
    """

    def __init__(self, settings: GatewaySettings, service: str, pause: Callable[[], None], resume: Callable[[], None],
                 loop: asyncio.AbstractEventLoop | None = None) -> None:
        self.settings = settings
        self.service = service
        self.node = settings.node
        self.paused = False
        self.since = now_ms()
        self._pause, self._resume, self._loop = pause, resume, loop
        self._status_topic = TopicNames(settings.kafka.topic_prefix)(CONTROL_STATUS)
        self._producer = make_producer(settings, f"{service}-control")
        self._table = DesiredTable(settings, self._changed, name=f"{service}-control")
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._beat = threading.Thread(target=self._heartbeat, name=f"{service}-control-status", daemon=True)

    def start(self, timeout: float = 30.0) -> ControlChannel:
        self._table.start(timeout)
        self._changed("", None)
        self._beat.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._table.stop()
        self._producer.flush(5)

    def _call(self, fn: Callable[[], None]) -> None:
        if self._loop is not None:
            self._loop.call_soon_threadsafe(fn)
        else:
            fn()

    def _changed(self, key: str, _record: Record | None) -> None:
        if key and not key.startswith((f"{CONSUMERS}/", f"{REFRESH}/")):
            return
        wanted = self._table.effective(CONSUMERS, self.node, self.service)
        pause = wanted is not None and wanted["state"] == "paused"
        with self._lock:
            changed = pause != self.paused
            if changed:
                self.paused, self.since = pause, now_ms()
                self._call(self._pause if pause else self._resume)
                log.info("consumers paused" if pause else "consumers resumed", by=wanted and wanted["actor"])
        if changed or key.startswith(f"{REFRESH}/") or not key:
            self.report()

    def report(self) -> None:
        with self._lock:
            record = {"node": self.node, "service": self.service, "aspect": CONSUMERS,
                      "state": "paused" if self.paused else "running", "since": self.since,
                      "desired": "paused" if self.paused else "running"}
        produce_event(self._producer, self._status_topic, status_key(self.node, self.service, CONSUMERS),
                      "ServiceStatus", record)

    def _heartbeat(self) -> None:
        while not self._stop.wait(self.settings.control.status_interval_s):
            try:
                self.report()
            except Exception as exc:  # BufferError, KafkaException: report again next time
                log.warning("consumer state not reported", error=str(exc))


class FaustGate:
    """The pause of a Faust stage, kept in its agents rather than in Faust's consumer:
    a paused agent stops taking events, so nothing is acknowledged, the committed
    offsets stay, and the lag grows. Pausing Faust's consumer partitions instead
    loses records: Faust drops what it fetched for a partition paused mid-batch
    and later commits past the gap (seen in the control-server test, 2 of 40).
    Faust's own buffer then fills and applies back-pressure to its fetcher."""

    def __init__(self) -> None:
        self._open = asyncio.Event()
        self._open.set()

    @property
    def paused(self) -> bool:
        return not self._open.is_set()

    def pause(self) -> None:
        self._open.clear()

    def resume(self) -> None:
        self._open.set()

    async def wait(self) -> None:
        """Returns at once when running; waits while paused."""
        if not self._open.is_set():
            await self._open.wait()


def attach_faust(app: Any, settings: GatewaySettings, service: str) -> FaustGate:
    """Obey control.desired in a Faust app; its agents call ``await gate.wait()`` before
    each event. The app must be built with ``stream_wait_empty=False`` (streams/app.py),
    or a rebalance would wait for a paused agent to empty its buffer."""
    gate = FaustGate()

    async def control_channel() -> None:
        loop = asyncio.get_running_loop()
        channel = ControlChannel(settings, service, gate.pause, gate.resume, loop)
        try:
            await asyncio.to_thread(channel.start)
        except (LookupError, TimeoutError) as exc:
            log.error("no control channel: pause/resume will not be obeyed", error=str(exc))

    app.task(control_channel)  # a call, not a decorator: faust's decorator is untyped
    return gate
