"""Topic names and their shapes: the queues of the gateway.

Services get their topic names from ``TopicNames(prefix)`` so that a test (or a
second gateway sharing one cluster) can isolate itself with a prefix.
"""

from __future__ import annotations

from dataclasses import dataclass

MAIL_IN = "mail.in"
MAIL_SCORED = "mail.scored"
MAIL_OUT = "mail.out"
MAIL_SPAM = "mail.spam"
MAIL_VIRUS = "mail.virus"
MAIL_CISS = "mail.ciss"
MAIL_ARCHIVE = "mail.archive"
MAIL_QUARANTINE = "mail.quarantine"
MAIL_DELIVERY = "mail.delivery"
ARCHIVE_SPOOL = "archive.spool"
ARCHIVE_REQUESTS = "archive.requests"
ARCHIVE_REPLIES = "archive.replies"
SPAM_REPORTS = "spam.reports"
SPAM_PATTERNS = "spam.patterns"
CISS_SENDERS = "ciss.senders"
POP3_UIDLS = "pop3.uidls"
CONTROL_DESIRED = "control.desired"
CONTROL_STATUS = "control.status"
CONFIG = "config"
SCHEMAS = "schemas"
MAIL_RETRY_1 = "mail.retry.1"
MAIL_RETRY_2 = "mail.retry.2"
MAIL_RETRY_3 = "mail.retry.3"
MAIL_RETRY = (MAIL_RETRY_1, MAIL_RETRY_2, MAIL_RETRY_3)  # smtp_client.retry_delays_s gives their delays
DELIVERY_LOG = "mail.delivery.log"
SMTP_REJECTED = "smtp.rejected"
SMTP_GREYLIST = "smtp.greylist"
VALIDATION_ROUTED = "validation.routed"


@dataclass(frozen=True)
class TopicSpec:
    name: str
    doc: str
    compacted: bool = False
    carries_mail: bool = True  # sized for whole mails; else small state records
    partitions: int | None = None  # None: the configured mail partition count
    retention_ms: int | None = None  # None: the broker's default


TOPICS: tuple[TopicSpec, ...] = (
    TopicSpec(MAIL_IN, "accepted mail (MailReceived), the in-queue"),
    TopicSpec(MAIL_SCORED, "mail with its spam score"),
    TopicSpec(MAIL_OUT, "mail to deliver (MailRouted), keyed by recipient domain"),
    TopicSpec(MAIL_SPAM, "spam quarantine"),
    TopicSpec(MAIL_VIRUS, "virus quarantine"),
    TopicSpec(MAIL_CISS, "mail held for challenge-response"),
    TopicSpec(MAIL_ARCHIVE, "mail to be archived"),
    TopicSpec(MAIL_QUARANTINE, "mail that could not be parsed or scanned, with the reason"),
    TopicSpec(MAIL_DELIVERY, "delivery results (MailDelivered, DeliveryFailed)", carries_mail=False),
    TopicSpec(ARCHIVE_SPOOL, "mail for the archive store"),
    # Questions to the archive and their answers; an hour, so exported mail does not linger in Kafka.
    TopicSpec(ARCHIVE_REQUESTS, "questions to every maildepot-archiver (ArchiveRequest)", carries_mail=False,
              partitions=1, retention_ms=3_600_000),
    TopicSpec(ARCHIVE_REPLIES, "the archivers' answers (ArchiveReply): rows, export chunks, done", partitions=1,
              retention_ms=3_600_000),
    TopicSpec(SPAM_REPORTS, "spam/ham reports", carries_mail=True),
    TopicSpec(SPAM_PATTERNS, "known spam patterns", compacted=True, carries_mail=False),
    TopicSpec(CISS_SENDERS, "confirmed senders", compacted=True, carries_mail=False),
    TopicSpec(POP3_UIDLS, "UIDLs collected per POP3 account", compacted=True, carries_mail=False),
    TopicSpec(CONTROL_DESIRED, "what each service should be doing", compacted=True, carries_mail=False, partitions=1),
    TopicSpec(CONTROL_STATUS, "what each service instance reports", compacted=True, carries_mail=False, partitions=1),
    TopicSpec(CONFIG, "configuration changes, with who made them", compacted=True, carries_mail=False, partitions=1),
    TopicSpec(SCHEMAS, "Avro writer schemas by fingerprint", compacted=True, carries_mail=False, partitions=1),
    TopicSpec(MAIL_RETRY_1, "deferred mail (MailRouted, remaining recipients), 1st wait (default 1 min)"),
    TopicSpec(MAIL_RETRY_2, "deferred mail, 2nd wait (default 10 min)"),
    TopicSpec(MAIL_RETRY_3, "deferred mail, 3rd and later waits (default 1 h)"),
    TopicSpec(DELIVERY_LOG, "recipients finished per mail_id/destination (DeliveryLog)", compacted=True,
              carries_mail=False),
    TopicSpec(SMTP_REJECTED, "SMTP transactions refused in phase 1 (SmtpRejected), without the body",
              carries_mail=False),
    TopicSpec(SMTP_GREYLIST, "greylisting triplets shared by every node", compacted=True, carries_mail=False),
    TopicSpec(VALIDATION_ROUTED, "mail ids message-validation has routed (RoutingMark), per mail.scored partition",
              compacted=True, carries_mail=False),
)


class TopicNames:
    """The topic and consumer-group names of one gateway (one prefix)."""

    def __init__(self, prefix: str = "") -> None:
        self.prefix = prefix

    def __call__(self, name: str) -> str:
        return f"{self.prefix}{name}"

    def group(self, service: str) -> str:
        return f"{self.prefix}mailgate.{service}"

    @property
    def mail_in(self) -> str:
        return self(MAIL_IN)

    @property
    def mail_out(self) -> str:
        return self(MAIL_OUT)

    @property
    def mail_delivery(self) -> str:
        return self(MAIL_DELIVERY)

    @property
    def mail_quarantine(self) -> str:
        return self(MAIL_QUARANTINE)

    @property
    def schemas(self) -> str:
        return self(SCHEMAS)
