"""control-server: the quarantine queues (mail.spam, mail.virus, mail.ciss, mail.quarantine),
answered from the quarantine read model (``control.server.quarantine_view``, a view of the topics kept
up to date in the background), acted on with events.

A queue's content: its MailRouted records, less the recipients that a later
QueueAction (RELEASE, DELETE) on the same topic took out; a null-value record
with a mail's key removes it whole. A user sees, and acts on, only the mail
of its own address, and only for that address. Spam/ham reports are SpamReport
events on spam.reports (``control.server.reports``), which the spam filter learns from.
Every action waits until the view has applied its own event, so the next listing shows it.

A mail message-validation held because clamd gave no answer (reason ``held: ...``) was never
scanned: releasing it does not deliver it but sends it back through validation (``rescan_record``
on mail.scored, under its mail id, with a ``rescan`` header naming the release), which scans it
and routes it again: mail.out when clean, mail.virus when infected, held again while clamd is down.
"""

from __future__ import annotations

import re
from typing import Any

from confluent_kafka import Message

from control.server.auth import Principal
from control.server.errors import InvalidArgument, NotFound
from control.server.quarantine_view import QUEUES, Held, QuarantineView, apply_record
from control.server.reports import report_record
from core.control_channel import now_ms
from core.kafka import KafkaUnavailable, make_producer
from core.publish import Encoder, produce_and_wait
from control.settings import Settings
from schemas import default_codec, pack_message, packed
from schemas.events import MailReceived, MailScored
from schemas import topics as t
from schemas.topics import TopicNames
from schemas.typed import Record

__all__ = ["QUEUES", "Held", "QueueBrowser", "apply_record", "queue_names", "rescan_record", "unscanned"]
DEFAULT_LIMIT = 100
HELD = "held: "  # the first reason of a mail held unscanned (streams/validation/routing.py)
# What the first look found, kept on the held record after its reason (routing.held_facts)
SPAM_FACT = re.compile(r"spam filter: (spam|unsure|ham) \(([0-9.]+)\)")
SPF_FACT = "spf at the door: "


def unscanned(mail: Held) -> bool:
    """Held because the virus scan gave no answer: it must be scanned before it is delivered."""
    return mail.queue == "quarantine" and bool(mail.record["reasons"]) and mail.record["reasons"][0].startswith(HELD)


def rescan_record(mail: Held, raw: bytes, recipients: list[str], actor: str, node: str, now: int) -> MailScored:
    """The MailScored that puts a held mail back before message-validation, for these recipients:
    the MailReceived rebuilt from the held record (what validation reads of it), with the spam
    filter's verdict and the SPF result it had (``unsure`` when the record does not say)."""
    r = mail.record
    facts = r["reasons"][1:]
    spam = next((m for line in facts if (m := SPAM_FACT.fullmatch(line))), None)
    spf = next((line.removeprefix(SPF_FACT) for line in facts if line.startswith(SPF_FACT)), None)
    received = MailReceived(mail_id=mail.mail_id, event_time=r["received_time"], node=r["node"], origin="UNKNOWN",
                            client_address=r.get("client_address"), mail_from=r["mail_from"], rcpt_to=recipients,
                            size=len(raw), message=packed(raw), spf=spf)
    why = f"released from hold by {actor}: " + ("the spam filter's verdict kept" if spam else "not scored again")
    return MailScored(mail_id=mail.mail_id, event_time=now, node=node, score=float(spam[2]) if spam else 0.0,
                      verdict=spam[1] if spam else "unsure", matched=[], reasons=[why], received=b"", mail=received)


def queue_names(queue: str) -> list[str]:
    if not queue:
        return list(QUEUES)
    if queue not in QUEUES:
        raise InvalidArgument(f"unknown queue {queue!r}; the queues are: {', '.join(QUEUES)}")
    return [queue]


class QueueBrowser:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.names = TopicNames(settings.kafka.topic_prefix)
        self.codec = default_codec()
        self.encoder = Encoder(self.codec)
        self._producer = make_producer(settings, "control-queues")
        self.view = QuarantineView(settings).start()  # catches up in the background

    def close(self) -> None:
        self._producer.flush(10)
        self.view.close()

    # -- reading ------------------------------------------------------------------

    def list_mails(self, principal: Principal, queue: str = "", limit: int = 0) -> list[Held]:
        if limit < 0:
            raise InvalidArgument(f"limit must be 0 (the default, {DEFAULT_LIMIT}) or more, not {limit}")
        queues = queue_names(queue)
        self.view.sync()
        held = self.view.mails(queues, None if principal.is_admin else principal.name)
        return self.view.newest([h for h in held if h.visible_to(principal)], limit or DEFAULT_LIMIT)

    def find(self, principal: Principal, mail_id: str, queue: str = "") -> Held:
        if not mail_id:
            raise InvalidArgument("name the mail: its mail_id (mailgate queue list shows them)")
        queues = queue_names(queue)
        self.view.sync()
        for q in queues:
            h = self.view.get(q, mail_id)
            if h is not None and h.visible_to(principal):
                return h
        where = f"queue {queue}" if queue else "any quarantine queue"
        raise NotFound(f"no mail {mail_id} in {where}" + ("" if principal.is_admin else f" for {principal.name}"))

    # -- acting -------------------------------------------------------------------

    def release(self, principal: Principal, mail_id: str, queue: str = "", reason: str = "") -> tuple[Held, list[str]]:
        """Puts a copy per recipient domain on mail.out, then records the release on the queue;
        a mail held unscanned goes back to message-validation instead (``rescan``)."""
        mail = self.find(principal, mail_id, queue)
        recipients = mail.for_whom(principal)
        if not recipients:
            raise InvalidArgument(f"mail {mail_id} could not be read when it arrived and has no recipients to "
                                  "release it to: show it, or delete it")
        if unscanned(mail):
            return self.rescan(principal, mail, recipients, reason)
        now, message = now_ms(), pack_message(mail.raw())
        by_domain: dict[str, list[str]] = {}
        for rcpt in recipients:
            by_domain.setdefault(rcpt.rpartition("@")[2].lower(), []).append(rcpt)
        for domain, rcpts in by_domain.items():
            copy = {**mail.record, "message": message, "event_time": now, "node": self.settings.node, "queue": "out",
                    "destination": domain, "rcpt_to": rcpts,
                    "reasons": [*mail.record["reasons"], f"released from {mail.queue} by {principal.actor}"]}
            self._send(self.names.mail_out, domain, "MailRouted", copy)
        self._action(principal, mail, "RELEASE", recipients, reason)
        return mail, recipients

    def rescan(self, principal: Principal, mail: Held, recipients: list[str], reason: str) -> tuple[Held, list[str]]:
        """Releases a mail held unscanned to message-validation, never straight to mail.out. The release
        is recorded first, so that the mail's new routing (held again, if clamd is still down) comes after
        it on the queue; were the rescan not acknowledged, the mail is put back on hold."""
        raw, held_for = mail.raw(), list(mail.remaining)
        release = self._action(principal, mail, "RELEASE", recipients, reason)
        token = f"{release.topic()}[{release.partition()}]@{release.offset()}"
        record = rescan_record(mail, raw, recipients, principal.actor, self.settings.node, now_ms())
        try:
            self._send(self.names(t.MAIL_SCORED), mail.mail_id, "MailScored", record, rescan=token)
        except Exception:
            self._send(release.topic(), mail.mail_id, "MailRouted",
                       {**mail.record, "message": pack_message(raw), "event_time": now_ms(), "rcpt_to": held_for})
            raise
        return mail, recipients

    def delete(self, principal: Principal, mail_id: str, queue: str = "", reason: str = "") -> tuple[Held, list[str]]:
        mail = self.find(principal, mail_id, queue)
        recipients = mail.for_whom(principal)
        self._action(principal, mail, "DELETE", recipients, reason)
        return mail, recipients

    def expire(self, principal: Principal, mail: Held, reason: str) -> None:
        """Records that retention takes the mail out of its queue (control/expiry.py)."""
        self._action(principal, mail, "EXPIRE", list(mail.remaining), reason)

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

    def _action(self, principal: Principal, mail: Held, action: str, recipients: list[str],
                reason: str | None) -> Message:
        record = {"mail_id": mail.mail_id, "event_time": now_ms(), "node": self.settings.node, "queue": mail.queue,
                  "action": action, "recipients": recipients if mail.record["rcpt_to"] else [],
                  "actor": principal.actor, "role": principal.role, "reason": reason or None}
        written = self._send(self.names(QUEUES[mail.queue]), mail.mail_id, "QueueAction", record)
        self.view.wait_for({(written.topic(), written.partition()): written.offset() + 1})  # read your writes
        return written

    def _send(self, topic: str, key: str, event_type: str, record: dict[str, Any] | Record,
              rescan: str | None = None) -> Message:
        """Produces one record; returns it as the broker acknowledged it (with its offset)."""
        # rescan: validation examines the mail again, once per release (streams/validation/once.py)
        extra = [("rescan", rescan.encode())] if rescan is not None else []
        envelope = self.encoder.envelope(record, event_type=event_type, key=key, extra=extra)
        try:
            return produce_and_wait(self._producer, topic, envelope, self.settings.kafka.produce_timeout_s)
        except KafkaUnavailable as exc:
            raise TimeoutError(f"{topic}: the {event_type} record was not acknowledged by Kafka ({exc})") from exc
