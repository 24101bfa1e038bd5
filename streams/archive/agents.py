"""The message-archive agent: a loop around ``rules.choose`` from mail.archive to archive.spool.
Its metrics (streams/archive/metrics.py): mails spooled, quarantined, and not archived by reason."""

from __future__ import annotations

from collections.abc import Sequence

import faust

from core.control_channel import FaustGate
from core.logging import get_logger
from schemas import Codec, DecodeError
from schemas.quarantine import unreadable_record
from schemas.topics import ARCHIVE_SPOOL, TopicNames
from streams.archive import metrics
from streams.archive.rules import NOT_ARCHIVED, choose, spooled, why_not
from streams.archive.settings import ArchiveRule
from streams.topics import StreamTopics

log = get_logger("message-archive")
STAGE = metrics.SERVICE


def register(app: faust.App, topics: StreamTopics, codec: Codec, node: str, prefix: str,
             rules: Sequence[ArchiveRule], ours: Sequence[str], gate: FaustGate | None = None) -> None:
    gate = gate or FaustGate()
    spool = app.topic(TopicNames(prefix)(ARCHIVE_SPOOL), key_type=bytes, value_type=bytes, internal=False)

    @app.agent(topics.by_queue["archive"], name="archive")
    async def archive(stream: faust.StreamT) -> None:
        async for event in stream.events():
            await gate.wait()  # paused: this event and the rest stay unacknowledged (lag grows)
            try:
                mail = codec.decode(event.value, expect="MailRouted").record
            except DecodeError as exc:  # poison policy: kept whole on mail.quarantine, the stage moves on
                record = unreadable_record((event.key or b"").decode(errors="replace") or None,
                                           event.value or b"", str(exc), node, STAGE)
                log.warning("quarantined unreadable record", mail_id=record["mail_id"], reason=str(exc))
                await topics.mail_quarantine.send(key=record["mail_id"].encode(),
                                                  value=codec.encode("MailRouted", record),
                                                  headers=codec.headers("MailRouted", record["mail_id"]))
                metrics.QUARANTINED.inc()
                continue
            rule, way = choose(rules, mail, ours)
            if rule is None:
                why = why_not(rules, mail, ours)
                metrics.count_not_archived(why)
                log.info("not archived", mail_id=mail["mail_id"], direction=way, reason=NOT_ARCHIVED[why])
                continue
            record = spooled(mail, rule, way, node)
            await spool.send(key=mail["mail_id"].encode(), value=codec.encode("ArchiveSpooled", record),
                             headers=codec.headers("ArchiveSpooled", mail["mail_id"]))
            metrics.SPOOLED.inc()
            log.info("spooled", mail_id=mail["mail_id"], rule=rule.name, direction=way, verdict=record["verdict"])
