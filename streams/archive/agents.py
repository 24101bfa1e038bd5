"""The message-archive agent: a loop around ``rules.choose`` from mail.archive to archive.spool.
Its metrics (streams/archive/metrics.py): mails spooled, quarantined, and not archived by reason."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import faust

from core.control_channel import FaustGate
from core.logging import get_logger
from core.poison import Poison
from schemas import Codec
from schemas.topics import ARCHIVE_SPOOL, TopicNames
from streams.archive import metrics
from streams.archive.rules import NOT_ARCHIVED, choose, spooled, why_not
from streams.archive.settings import ArchiveRule
from streams.publish import faust_publisher
from streams.topics import StreamTopics

log = get_logger("message-archive")
STAGE = metrics.SERVICE


def register(app: faust.App, topics: StreamTopics, codec: Codec, node: str, prefix: str,
             rules: Sequence[ArchiveRule], ours: Sequence[str], gate: FaustGate | None = None) -> None:
    gate = gate or FaustGate()
    spool = app.topic(TopicNames(prefix)(ARCHIVE_SPOOL), key_type=bytes, value_type=bytes, internal=False)
    publisher = faust_publisher(codec)
    poison = Poison(STAGE, node, publisher, topics.mail_quarantine)

    def read(value: bytes) -> dict[str, Any]:
        return codec.decode(value, expect="MailRouted").record

    @app.agent(topics.by_queue["archive"], name="archive")
    async def archive(stream: faust.StreamT) -> None:
        async for event in stream.events():
            await gate.wait()  # paused: this event and the rest stay unacknowledged (lag grows)
            mail = await poison.read(read, event.value, event.key, event.headers)
            if mail is None:  # quarantined with the reason: the partition moves on
                metrics.QUARANTINED.inc()
                continue
            rule, way = choose(rules, mail, ours)
            if rule is None:
                why = why_not(rules, mail, ours)
                metrics.count_not_archived(why)
                log.info("not archived", mail_id=mail["mail_id"], direction=way, reason=NOT_ARCHIVED[why])
                continue
            record = spooled(mail, rule, way, node)
            await publisher.publish(spool, record, event_type="ArchiveSpooled")
            metrics.SPOOLED.inc()
            log.info("spooled", mail_id=mail["mail_id"], rule=rule.name, direction=way, verdict=record["verdict"])
