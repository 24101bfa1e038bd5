"""control-server: the quarantine queues (mail.spam, mail.virus, mail.ciss, mail.quarantine),
read straight from their topics until the quarantine read model exists.

A queue's content: its MailRouted records, less the recipients that a later
QueueAction (RELEASE, DELETE) on the same topic took out; a null-value record
with a mail's key removes it whole. A user sees, and acts on, only the mail
of its own address, and only for that address. Spam/ham reports are SpamReport
events on spam.reports (``control.reports``), which the spam filter learns from.
"""

from __future__ import annotations

import email.parser
import email.policy
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import TopicPartition

from control.auth import Principal
from control.errors import InvalidArgument, NotFound
from control.reports import report_record
from core.control_channel import now_ms
from core.kafka import make_consumer, make_producer
from core.settings import Settings
from schemas import DecodeError, default_codec, unpack_message
from schemas import topics as t
from schemas.topics import TopicNames

QUEUES = {"spam": t.MAIL_SPAM, "virus": t.MAIL_VIRUS, "ciss": t.MAIL_CISS, "quarantine": t.MAIL_QUARANTINE}
DEFAULT_LIMIT = 100


@dataclass
class Held:
    """One quarantined mail and the recipients it is still held for."""

    queue: str
    record: dict[str, Any]
    remaining: list[str] = field(default_factory=list)

    @property
    def mail_id(self) -> str:
        return str(self.record["mail_id"])

    def for_whom(self, principal: Principal) -> list[str]:
        """The recipients this caller may see and act for (empty: none)."""
        if principal.is_admin:
            return list(self.remaining)
        return [r for r in self.remaining if r.lower() == principal.name]

    def visible_to(self, principal: Principal) -> bool:
        return principal.is_admin or bool(self.for_whom(principal))

    def subject(self) -> str:
        head = self.raw()[:65536].split(b"\r\n\r\n", 1)[0].split(b"\n\n", 1)[0]
        msg = email.parser.BytesHeaderParser(policy=email.policy.default).parsebytes(head)
        try:
            return str(msg.get("subject", ""))
        except (ValueError, TypeError):  # a malformed encoded word: show it raw
            return str(msg.get_all("subject", [""])[0])

    def raw(self) -> bytes:
        return unpack_message(self.record["message"])


def queue_topics(names: TopicNames, queue: str) -> dict[str, str]:
    if not queue:
        return {q: names(topic) for q, topic in QUEUES.items()}
    if queue not in QUEUES:
        raise InvalidArgument(f"unknown queue {queue!r}; the queues are: {', '.join(QUEUES)}")
    return {queue: names(QUEUES[queue])}


def apply_record(queue: str, held: dict[str, Held], key: bytes | None, value: bytes | None) -> None:
    """Folds one record of a quarantine topic into ``held`` (mail_id → Held)."""
    if value is None:
        if key is not None:
            held.pop(key.decode(errors="replace"), None)
        return
    try:
        event = default_codec().decode(value)
    except DecodeError:
        return  # not ours to show; message-validation quarantines what it cannot read
    record = event.record
    if event.type == "MailRouted":
        held[record["mail_id"]] = Held(queue, record, list(record["rcpt_to"]))
    elif event.type == "QueueAction" and record["action"] in ("RELEASE", "DELETE"):
        mail = held.get(record["mail_id"])
        if mail is None:
            return
        if not record["recipients"] or not mail.record["rcpt_to"]:
            held.pop(record["mail_id"])
        else:
            gone = {r.lower() for r in record["recipients"]}
            mail.remaining = [r for r in mail.remaining if r.lower() not in gone]


class QueueBrowser:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.names = TopicNames(settings.kafka.topic_prefix)
        self.codec = default_codec()
        self._producer = make_producer(settings, "control-queues")

    def close(self) -> None:
        self._producer.flush(10)

    # -- reading ------------------------------------------------------------------

    def list_mails(self, principal: Principal, queue: str = "", limit: int = 0) -> list[Held]:
        if limit < 0:
            raise InvalidArgument(f"limit must be 0 (the default, {DEFAULT_LIMIT}) or more, not {limit}")
        held = [h for q, topic in queue_topics(self.names, queue).items() for h in self._read(q, topic)]
        visible = [h for h in held if h.visible_to(principal)]
        visible.sort(key=lambda h: h.record["received_time"], reverse=True)
        return visible[: limit or DEFAULT_LIMIT]

    def find(self, principal: Principal, mail_id: str, queue: str = "") -> Held:
        if not mail_id:
            raise InvalidArgument("name the mail: its mail_id (mailgate queue list shows them)")
        for q, topic in queue_topics(self.names, queue).items():
            for h in self._read(q, topic):
                if h.mail_id == mail_id and h.visible_to(principal):
                    return h
        where = f"queue {queue}" if queue else "any quarantine queue"
        raise NotFound(f"no mail {mail_id} in {where}" + ("" if principal.is_admin else f" for {principal.name}"))

    def _read(self, queue: str, topic: str) -> list[Held]:
        consumer = make_consumer(self.settings, self.names.group("control-queues"), "control-queues")
        held: dict[str, Held] = {}
        try:
            meta = consumer.list_topics(topic, timeout=10).topics.get(topic)
            if meta is None or meta.error is not None:
                return []
            ends = {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
                    for p in meta.partitions}
            pending = {p for p, (low, high) in ends.items() if high > low}
            consumer.assign([TopicPartition(topic, p, low) for p, (low, _) in ends.items()])
            while pending:
                msg = consumer.poll(10)
                if msg is None:
                    raise TimeoutError(f"{topic}: not read to its end within 10 s")
                if msg.error() is not None:
                    continue
                apply_record(queue, held, msg.key(), msg.value())
                if (msg.offset() or 0) + 1 >= ends[msg.partition() or 0][1]:
                    pending.discard(msg.partition())
        finally:
            consumer.close()
        return [h for h in held.values() if h.remaining or not h.record["rcpt_to"]]

    # -- acting -------------------------------------------------------------------

    def release(self, principal: Principal, mail_id: str, queue: str = "", reason: str = "") -> tuple[Held, list[str]]:
        """Puts a copy per recipient domain on mail.out, then records the release on the queue."""
        mail = self.find(principal, mail_id, queue)
        recipients = mail.for_whom(principal)
        if not recipients:
            raise InvalidArgument(f"mail {mail_id} could not be read when it arrived and has no recipients to "
                                  "release it to: show it, or delete it")
        now = now_ms()
        by_domain: dict[str, list[str]] = {}
        for rcpt in recipients:
            by_domain.setdefault(rcpt.rpartition("@")[2].lower(), []).append(rcpt)
        for domain, rcpts in by_domain.items():
            copy = {**mail.record, "event_time": now, "node": self.settings.node, "queue": "out",
                    "destination": domain, "rcpt_to": rcpts,
                    "reasons": [*mail.record["reasons"], f"released from {mail.queue} by {principal.actor}"]}
            self._send(self.names.mail_out, domain, "MailRouted", copy)
        self._action(principal, mail, "RELEASE", recipients, reason)
        return mail, recipients

    def delete(self, principal: Principal, mail_id: str, queue: str = "", reason: str = "") -> tuple[Held, list[str]]:
        mail = self.find(principal, mail_id, queue)
        recipients = mail.for_whom(principal)
        self._action(principal, mail, "DELETE", recipients, reason)
        return mail, recipients

    def report(self, principal: Principal, mail_id: str, queue: str, verdict: str) -> tuple[Held, list[str]]:
        """A spam or ham report (SpamReport on spam.reports), for the spam filter to learn from."""
        if verdict not in ("SPAM", "HAM"):
            raise InvalidArgument("say whether the mail is spam or ham (verdict SPAM or HAM)")
        mail = self.find(principal, mail_id, queue)
        recipients = mail.for_whom(principal)
        record = report_record(mail.raw(), verdict.lower(), principal.name, principal.role, mail.mail_id)
        record |= {"mail_from": mail.record["mail_from"], "rcpt_to": recipients}
        self._send(self.names(t.SPAM_REPORTS), mail.mail_id, "SpamReport", record)
        return mail, recipients

    def _action(self, principal: Principal, mail: Held, action: str, recipients: list[str], reason: str | None) -> None:
        record = {"mail_id": mail.mail_id, "event_time": now_ms(), "node": self.settings.node, "queue": mail.queue,
                  "action": action, "recipients": recipients if mail.record["rcpt_to"] else [],
                  "actor": principal.actor, "role": principal.role, "reason": reason or None}
        self._send(self.names(QUEUES[mail.queue]), mail.mail_id, "QueueAction", record)

    def _send(self, topic: str, key: str, event_type: str, record: dict[str, Any]) -> None:
        headers: list[tuple[str, str | bytes | None]] = list(self.codec.headers(event_type, record["mail_id"]))
        self._producer.produce(topic, key=key.encode(), value=self.codec.encode(event_type, record), headers=headers)
        if self._producer.flush(self.settings.kafka.produce_timeout_s):
            raise TimeoutError(f"{topic}: the {event_type} record was not acknowledged by Kafka")
