"""The spam-filter agents: score the in-queue, learn from reports, and keep every
node's pattern table in step with the compacted spam.patterns topic.

Scoring and learning wait until the pattern table has been read to its end (at most
``spam.patterns_wait_s``): right after a restart the store is empty, and a mail scored
then would miss every pattern learnt before (issue 6)."""

from __future__ import annotations

import asyncio
import time
from functools import partial
from typing import Any

import faust

from core.control_channel import FaustGate
from core.logging import get_logger
from streams.spam.settings import Settings
from core.poison import Poison, mail_id_of
from core.tables import TableFollower
from schemas import Codec, DecodeError, unpack_message
from schemas.events import MailReceived, MailScored
from schemas.topics import SPAM_PATTERNS, TopicNames
from streams.spam.metrics import count_report, count_scored
from streams.spam.patterns import Pattern
from streams.publish import faust_publisher
from streams.spam.scoring import Report, Score, SpamFilter
from streams.topics import StreamTopics

log = get_logger("spam-filter")
STAGE = "spam-filter"


def scored_event(mail: MailReceived, score: Score, node: str) -> MailScored:
    """The score with the mail inside, carried once (``received`` stays empty: schemas/MailScored.avsc)."""
    return MailScored(mail_id=mail.mail_id, event_time=int(time.time() * 1000), node=node, score=float(score.score),
                      verdict=score.verdict, matched=list(score.matched), reasons=list(score.reasons), received=b"",
                      mail=mail)


def read_mail(codec: Codec, value: bytes) -> tuple[MailReceived, bytes]:
    """A mail.in record as its event and its raw message; raises on a record that is not one."""
    mail = MailReceived.from_record(codec.decode(value, expect="MailReceived").record)
    return mail, unpack_message(mail.message)


def report_from(record: dict[str, Any]) -> Report:
    return Report(mail_id=record["mail_id"], label=record["label"], reporter=record["reporter"],
                  time_ms=record["event_time"], raw_message=unpack_message(record["message"]),
                  role=record["role"], mail_from=record["mail_from"], rcpt_to=tuple(record["rcpt_to"]))


def pattern_record(pattern: Pattern) -> dict[str, Any]:
    return {**pattern.to_record(), "event_time": int(time.time() * 1000)}


async def table_loaded(ready: asyncio.Event, timeout: float, mail_id: str | None) -> None:
    """Waits (bounded) for the pattern table; past the bound, scoring goes on with what it has."""
    if ready.is_set():
        return
    log.info("waiting for the pattern table (spam.patterns) to be read", mail_id=mail_id, timeout_s=timeout)
    try:
        await asyncio.wait_for(ready.wait(), timeout)
    except TimeoutError:
        log.warning("pattern table not loaded in time: scoring with the patterns read so far", mail_id=mail_id,
                    timeout_s=timeout, hint="check spam.patterns on the broker, or raise spam.patterns_wait_s")
        ready.set()


def register(app: faust.App, topics: StreamTopics, codec: Codec, settings: Settings, spam: SpamFilter,
             gate: FaustGate | None = None) -> None:
    gate = gate or FaustGate()
    node = settings.node
    patterns_ready = asyncio.Event()  # set by follow_patterns once spam.patterns is read to its end
    wait_s = settings.spam.patterns_wait_s

    publisher = faust_publisher(codec)
    poison = Poison(STAGE, node, publisher, topics.mail_quarantine)
    read = partial(read_mail, codec)

    async def publish_pattern(pattern: Pattern | None, pattern_id: str) -> None:
        if pattern is None:  # a tombstone: the pattern is gone on every node
            await publisher.send_raw(topics.spam_patterns, pattern_id, None)
        else:
            await publisher.publish(topics.spam_patterns, pattern_record(pattern), event_type="SpamPattern",
                                    key=pattern_id)

    @app.agent(topics.mail_in, name="score")
    async def score(stream: faust.StreamT) -> None:
        async for event in stream.events():
            await gate.wait()  # paused: this event and the rest stay unacknowledged (lag grows)
            await table_loaded(patterns_ready, wait_s, mail_id_of(event.key, event.headers))
            found = await poison.read(read, event.value, event.key, event.headers)
            if found is None:  # quarantined with the reason: the partition moves on
                continue
            mail, raw = found
            result = spam.score(raw, mail.mail_from, mail.rcpt_to)
            scored = scored_event(mail, result, node)
            await publisher.publish(topics.mail_scored, scored)
            count_scored(result.verdict, scored.score)
            log.info("scored", mail_id=mail.mail_id, score=scored.score, verdict=result.verdict,
                     matched=len(result.matched))

    @app.agent(topics.spam_reports, name="learn")
    async def learn(stream: faust.StreamT) -> None:
        async for value in stream:
            await table_loaded(patterns_ready, wait_s, None)  # a report on an empty store would not find its patterns
            try:
                report = report_from(codec.decode(value, expect="SpamReport").record)
                patterns = spam.learn(report)
            except (DecodeError, ValueError) as exc:
                log.warning("report ignored", reason=str(exc))
                continue
            count_report(report.label)
            for pattern in patterns:
                await publish_pattern(pattern, pattern.pattern_id)
            log.info("learnt", mail_id=report.mail_id, label=report.label, reporter=report.reporter,
                     patterns=len(patterns))

    @app.timer(interval=60.0)
    async def housekeeping() -> None:
        """Expired patterns become tombstones; hit counts are published for every node."""
        for pattern_id in spam.expire():
            await publish_pattern(None, pattern_id)
        for pattern in spam.take_dirty():
            await publish_pattern(pattern, pattern.pattern_id)

    @app.task
    async def follow_patterns() -> None:
        """Every node reads all of spam.patterns (no consumer group), so a report made on
        any node changes the verdicts here within a second."""
        loop = asyncio.get_running_loop()

        def apply(key: bytes, value: bytes | None) -> None:
            record = None if value is None else codec.decode(value, expect="SpamPattern").record
            loop.call_soon_threadsafe(spam.apply_record, key.decode(), record)

        topic = TopicNames(settings.kafka.topic_prefix)(SPAM_PATTERNS)
        try:
            follower = TableFollower(settings, topic, apply, name=STAGE)  # a daemon thread, for the process's life
            await asyncio.to_thread(follower.start, wait_s)
        except Exception as exc:  # scoring goes on without the table (or with the part read): say so
            log.error("pattern table not loaded: scoring with the patterns read so far", topic=topic,
                      patterns=len(spam.store), error=str(exc))
        else:
            log.info("pattern table loaded", patterns=len(spam.store))
        patterns_ready.set()  # the records queued on the loop above were applied before this line runs
