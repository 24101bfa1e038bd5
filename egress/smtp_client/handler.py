"""smtp-client: what happens to one mail copy (one MailRouted of mail.out or a retry topic).

    skip the recipients the delivery log has as finished
    → route → one attempt → per recipient:
      2xx            → journal + delivery log (before the connection takes another mail), then MailDelivered
      5xx            → a bounce to the sender (never for a bounce), delivery log, DeliveryFailed(permanent)
      4xx / no conn. → the next retry topic, DeliveryFailed(permanent=false, next attempt time);
                       past the queue lifetime: as 5xx
Everything is written (and acknowledged) before the caller commits the record's offset.
Each attempt's time and its recipients' outcomes are counted on /metrics (``metrics.py``).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

from core.logging import get_logger
from egress.smtp_client.settings import Settings
from egress.smtp_client.bounce import bounce_mail_id, bounce_record, build_dsn
from egress.smtp_client.delivery import Outcome, Reply, deliver
from egress.smtp_client.deliverylog import DeliveryLog, Durably, log_key
from egress.smtp_client.events import delivered_event, failed_events
from egress.smtp_client.journal import Entry
from egress.smtp_client.metrics import ATTEMPT, count
from egress.smtp_client.pool import Pool
from egress.smtp_client.retry import expired, retry_delay_s, retry_record, retry_topic
from egress.smtp_client.routing import RouteError, Router
from schemas.events import DeliveryFailed, MailDelivered
from schemas.topics import TopicNames
from schemas.typed import Record

log = get_logger("smtp-client")

# publish(event type, record, topic, key): returns once the broker has it (retries inside).
Publish = Callable[[str, dict[str, Any] | Record, str, bytes], Awaitable[None]]


def is_null_sender(mail_from: str) -> bool:
    return mail_from.strip() in ("", "<>")


class Marks:
    """The 250 of one copy: journalled where it is parsed (``journal``), then on the broker (``confirm``)."""

    def __init__(self, dlog: DeliveryLog, routed: dict[str, Any], durably: Durably) -> None:
        self.dlog, self.durably = dlog, durably
        self.mail_id, self.destination = routed["mail_id"], routed.get("destination")
        self.entry: Entry | None = None

    def journal(self, accepted: list[str], reply: str) -> None:
        if self.entry is None:
            self.entry = self.dlog.record(self.mail_id, self.destination, accepted, reply)

    async def confirm(self, outcome: Outcome) -> None:
        self.journal(outcome.accepted, outcome.accepted_reply.line if outcome.accepted_reply else "")
        assert self.entry is not None
        await self.dlog.confirm(self.entry, self.durably)


class Handler:
    def __init__(self, settings: Settings, names: TopicNames, router: Router, pool: Pool, dlog: DeliveryLog,
                 publish: Publish, durably: Durably) -> None:
        self.settings = settings
        self.cfg = settings.smtp_client
        self.names = names
        self.router = router
        self.pool = pool
        self.dlog = dlog
        self.publish = publish
        self.durably = durably

    async def handle(self, routed: dict[str, Any], data: bytes) -> str | None:
        """Deliver one copy; returns its log key when the copy is finished (no recipient left to retry)."""
        key = log_key(routed["mail_id"], routed.get("destination"))
        async with self.dlog.lock(key):
            done = self.dlog.done(key)
            recipients = [r for r in routed["rcpt_to"] if r not in done]
            mlog = log.bind(mail_id=routed["mail_id"], destination=routed.get("destination"))
            if not recipients:
                mlog.info("already finished, skipped", rcpt=len(routed["rcpt_to"]))
                return key
            attempt = int(routed.get("attempt") or 0) + 1
            try:
                route = await self.router.route(routed.get("destination") or recipients[0].rpartition("@")[2])
            except RouteError as exc:
                route = exc  # type: ignore[assignment]

            started = time.monotonic()
            marks = Marks(self.dlog, routed, self.durably)
            outcome = await deliver(route, self.pool, routed["mail_from"], recipients, data, marks)
            ATTEMPT.observe(time.monotonic() - started)
            if outcome.accepted:
                await self._event(delivered_event(routed, outcome, attempt, self.settings.node))
                count("delivered", len(outcome.accepted))
                mlog.info("delivered", rcpt=len(outcome.accepted), next_hop=outcome.next_hop, attempt=attempt,
                          tls=outcome.tls.version if outcome.tls else None)
            return await self._failures(routed, outcome, data, attempt, key, mlog)

    async def _failures(self, routed: dict[str, Any], outcome: Outcome, data: bytes, attempt: int, key: str,
                        mlog: Any) -> str | None:
        now_ms = int(time.time() * 1000)
        permanent = {r: outcome.failed[r] for r in outcome.permanent}
        temporary = {r: outcome.failed[r] for r in outcome.temporary}
        if temporary and expired(routed, now_ms, self.cfg.max_queue_lifetime_s):
            age = timedelta(seconds=int(self.cfg.max_queue_lifetime_s))
            permanent |= {r: Reply(reply.code, f"4.4.7 not delivered within the queue lifetime ({age}); "
                                               f"last reply: {reply.line}") for r, reply in temporary.items()}
            temporary = {}
        if permanent:
            await self._bounce(routed, outcome, data, permanent, attempt, mlog)
        if temporary:
            await self._defer(routed, outcome, temporary, attempt, now_ms, mlog)
            return None
        return key

    async def _bounce(self, routed: dict[str, Any], outcome: Outcome, data: bytes, failed: dict[str, Reply],
                      attempt: int, mlog: Any) -> None:
        bounce_id = None
        if is_null_sender(routed["mail_from"]):
            mlog.warning("failed for good; no bounce for a bounce (null sender)", rcpt=sorted(failed))
        else:
            bounce_id = bounce_mail_id(routed, sorted(failed))
            dsn = build_dsn(routed, data, failed, outcome.next_hop, self.settings.hostname)
            record = bounce_record(routed, dsn, bounce_id, self.settings.node, int(time.time() * 1000))
            await self.publish("MailRouted", record, self.names.mail_out, record["destination"].encode())
            mlog.warning("failed for good; bounced to the sender", rcpt=sorted(failed), bounce_mail_id=bounce_id,
                         reply=next(iter(failed.values())).line)
        await self.dlog.mark(routed["mail_id"], routed.get("destination"), failed, self.durably)
        for record in failed_events(routed, outcome, failed, attempt, self.settings.node, permanent=True,
                                    bounce_mail_id=bounce_id):
            await self._event(record)
        count("bounced", len(failed))

    async def _defer(self, routed: dict[str, Any], outcome: Outcome, failed: dict[str, Reply], attempt: int,
                     now_ms: int, mlog: Any) -> None:
        delay = retry_delay_s(attempt, self.cfg.retry_delays_s)
        due_ms = now_ms + int(delay * 1000)
        reply = next(iter(failed.values()))
        first = routed.get("first_attempt_time") or now_ms
        record = retry_record(routed, sorted(failed), attempt, first, due_ms, reply.line, self.settings.node, now_ms)
        topic = self.names(retry_topic(attempt))
        await self.publish("MailRouted", record, topic, (routed.get("destination") or "").encode())
        for event in failed_events(routed, outcome, failed, attempt, self.settings.node, permanent=False,
                                   next_attempt_ms=due_ms):
            await self._event(event)
        count("deferred", len(failed))
        mlog.info("deferred", rcpt=len(failed), reply=reply.line, retry_in_s=delay, attempt=attempt, topic=topic)

    async def _event(self, event: MailDelivered | DeliveryFailed) -> None:
        await self.publish(event.EVENT_TYPE, event, self.names.mail_delivery, event.mail_id.encode())
