"""message-archive: its Prometheus metrics, on the /metrics of its process (core.metrics.start_metrics)::

    mailgate_mails_total{service="message-archive",queue="archive.spool"}     mails a rule archives
    mailgate_mails_total{service="message-archive",queue="mail.quarantine"}   unreadable records set aside
    mailgate_message_archive_not_archived_total{reason="exception"|"excluded"|"no-rule"}

Counted once per mail, when its record was sent; the reasons are ``rules.NOT_ARCHIVED``.
"""

from __future__ import annotations

from prometheus_client import Counter

from core.metrics import MAILS, shown_at_zero
from schemas.topics import ARCHIVE_SPOOL, MAIL_QUARANTINE
from streams.archive.rules import NOT_ARCHIVED

SERVICE = "message-archive"

SPOOLED = MAILS.labels(SERVICE, ARCHIVE_SPOOL)
QUARANTINED = MAILS.labels(SERVICE, MAIL_QUARANTINE)
NOT_SPOOLED = shown_at_zero(Counter("mailgate_message_archive_not_archived_total",
                                    "Mails the archive rules keep out of the archive, by reason", ["reason"]),
                            *NOT_ARCHIVED)


def count_not_archived(reason: str) -> None:
    NOT_SPOOLED.labels(reason).inc()
