"""The message-validation agent: a loop around ``inspect`` and ``routing.decide``, taking
mail.scored in batches and routing each partition's share of a batch in one transaction
(streams/validation/once.py). The mails of a batch share their clamd retries
(virus.ScanBatch). A record with a ``rescan`` header is a held mail released from hold
(control.server.queues): examined again, and routed once per release. Its metrics: mails per
queue, the check that sent each mail to a quarantine queue, and the virus scan's latency."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from dataclasses import replace
from typing import Any

import faust

from core.control_channel import FaustGate
from core.logging import get_logger
from core.metrics import MAILS, REJECTIONS
from core.poison import Poison, mail_id_of
from schemas import Codec, DecodeError, unpack_message
from streams.topics import StreamTopics
from streams.validation.inspect import SERVICE, Inspector
from streams.validation.once import OnceRouter, Output, PlainRouter, Routing
from streams.validation.findings import Findings
from streams.validation.routing import Route, archive_copy, decide
from streams.validation.virus import ScanBatch

log = get_logger("message-validation")
Decided = tuple[faust.EventT, str, list[Route]]  # an event, its mail id, its routes
RESCAN = "rescan"  # the header of a mail released from hold: which release asked (control.server.queues)
NOT_HELD = ("out", "archive")  # the queues that are no quarantine: counted without a reason


def header(event: faust.EventT, name: str) -> str | None:
    for key, value in (event.headers or {}).items() if isinstance(event.headers, dict) else event.headers or []:
        if key == name and value is not None:
            return value.decode(errors="replace") if isinstance(value, bytes) else str(value)
    return None


def read_scored(codec: Codec, raw: bytes) -> tuple[dict[str, Any], dict[str, Any]]:
    """A mail.scored record and the MailReceived in it, in one decode (``mail``); a record of an
    older spam-filter carries it encoded in ``received`` instead (a second decode, for those only)."""
    scored = codec.decode(raw, expect="MailScored").record
    mail = scored["mail"]
    if mail is None:
        mail = codec.decode(scored["received"], expect="MailReceived").record
    return scored, mail


def count(routes: list[Route]) -> None:
    """The metrics of one routed mail: once per queue it went to, and per check that held it."""
    for queue in sorted({r.queue for r in routes}):
        MAILS.labels(SERVICE, f"mail.{queue}").inc()
    for filter_ in sorted({r.filter for r in routes if r.queue not in NOT_HELD}):
        REJECTIONS.labels(SERVICE, filter_ or "unknown").inc()


def register(app: faust.App, topics: StreamTopics, codec: Codec, node: str, inspector: Inspector,
             gate: FaustGate | None = None, archive: bool = False, *, once: OnceRouter | PlainRouter,
             batch: int = 200, within_s: float = 0.1) -> None:
    gate = gate or FaustGate()
    scored_topic = topics.mail_scored.get_topic_name()
    poison = Poison(SERVICE, node)  # its records go out in the routing transaction (once.py)

    async def examine(event: faust.EventT, scans: ScanBatch) -> tuple[str, list[Route]]:
        """One event's mail id and routes; an unreadable record: its quarantine route (never a block)."""
        raw: bytes = event.value
        try:
            scored, mail = read_scored(codec, raw)
        except DecodeError as exc:  # poison policy: the record goes to quarantine whole, in this transaction
            position = f"{scored_topic}/{event.message.partition}/{event.message.offset}"
            record = poison.unreadable(raw, str(exc), event.key, event.headers, position=position)
            return mail_id_of(event.key, event.headers) or position, [
                Route("quarantine", record.mail_id.encode(), record.to_record(), "unreadable")]
        try:
            raw_mail = unpack_message(mail["message"])
        except Exception as exc:  # a corrupt compressed body: the mail cannot be read
            findings = Findings(unparseable=f"message body cannot be unpacked: {exc}")
        else:
            findings = await inspector.inspect(raw_mail, spam=scored, mail=mail, batch=scans)
        if rescan := header(event, RESCAN):
            findings = replace(findings, notes=[*findings.notes, f"released from hold ({rescan}): examined again"])
        routes = decide(mail, node, findings)
        if archive:  # settings.archive.enabled: message-archive applies the archive rules
            routes.append(archive_copy(mail, routes, node))
        return mail["mail_id"], routes

    async def examine_all(events: list[faust.EventT], scans: ScanBatch) -> list[Decided]:
        return [(event, *await examine(event, scans)) for event in events]

    async def route_partition(stream: faust.StreamT, partition: int, decided: list[Decided]) -> None:
        """One partition's share of a batch: its routes and marks in one transaction, then its events
        acknowledged (so an offset is committed only after its routing is)."""
        generation = app.consumer_generation_id
        stale = [d for d in decided if d[0].message.generation_id != generation]
        if stale:  # taken before a rebalance: Faust seeks to the committed offsets, the owner reads them again
            log.info("events of a former assignment dropped", mail_id=stale[0][1], partition=partition,
                     mails=len(stale))
            decided = [d for d in decided if d[0].message.generation_id == generation]
            if not decided:
                return
        routings = [Routing(event.message.offset, mail_id, [
            Output(topics.by_queue[r.queue].get_topic_name(), r.key, "MailRouted", r.record) for r in routes],
            header(event, RESCAN)) for event, mail_id, routes in decided]
        routed_now = await once.route(partition, routings)
        for event, mail_id, routes in decided:
            await stream.ack(event)
            if event.message.offset in routed_now:
                count(routes)
                log.info("routed", mail_id=mail_id, queues=",".join(sorted({r.queue for r in routes})),
                         copies=len(routes), reason=routes[0].record["reasons"][0])

    @app.on_partitions_revoked.connect
    async def forget_revoked(sender: faust.App, revoked: set[Any], **_: Any) -> None:
        await once.release([tp.partition for tp in revoked if tp.topic == scored_topic])

    @app.agent(topics.mail_scored, name="validate")
    async def validate(stream: faust.StreamT) -> None:
        committing: list[asyncio.Task[None]] = []
        # noack_take: up to `batch` events, or what came within `within_s`; acknowledged by hand above
        async for events in stream.noack_take(batch, within=within_s):
            await gate.wait()  # paused: this batch and the rest stay unacknowledged (lag grows)
            by_partition: dict[int, list[faust.EventT]] = defaultdict(list)
            for event in events:
                by_partition[event.message.partition].append(event)
            scans = inspector.batch()  # one clamd backoff for the whole batch, not one per mail
            decided = await asyncio.gather(*(examine_all(evs, scans) for evs in by_partition.values()))
            # The previous batch's transactions ran while this one was inspected; they end before the
            # next start (a partition's skips must see its marks), and a failure of theirs stops the agent.
            await asyncio.gather(*committing)
            committing = [asyncio.create_task(route_partition(stream, p, d)) for p, d in zip(by_partition, decided)]
