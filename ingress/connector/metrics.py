"""maildepot-connector: its Prometheus metrics, on the /metrics of its process
(core.metrics.start_metrics)::

    mailgate_mails_total{service="maildepot-connector",queue="archive.spool"}  every mail Kafka took (journal, imports)
    mailgate_maildepot_connector_journal_mails_total                           journal mails accepted (250)
    mailgate_rejections_total{service="maildepot-connector",reason="queue"}    journal mails refused (451: no Kafka)
    mailgate_maildepot_connector_imports_total{kind,outcome}                   import sources, by kind and outcome

``kind`` is mbox, maildir or eml (``importer.kind_of``), or unknown for what is none of them;
``outcome`` is imported (every message of it on archive.spool) or failed (moved to failed/).
"""

from __future__ import annotations

from typing import Literal

from prometheus_client import Counter

from core.metrics import MAILS, REJECTIONS, shown_at_zero
from schemas.topics import ARCHIVE_SPOOL

SERVICE = "maildepot-connector"
KINDS = ("mbox", "maildir", "eml")
Outcome = Literal["imported", "failed"]

SPOOLED = MAILS.labels(SERVICE, ARCHIVE_SPOOL)
JOURNALED = Counter("mailgate_maildepot_connector_journal_mails_total",
                    "Mails the journal endpoint accepted (250, once Kafka had them)")
JOURNAL_REFUSED = REJECTIONS.labels(SERVICE, "queue")  # as smtp-server counts a 451 when Kafka fails
IMPORTS = shown_at_zero(Counter("mailgate_maildepot_connector_imports_total",
                                "Import sources (mbox files, Maildir folders, .eml files) handled, by kind and outcome",
                                ["kind", "outcome"]),
                        *((kind, outcome) for kind in KINDS for outcome in ("imported", "failed")), ("unknown", "failed"))


def count_import(kind: str | None, outcome: Outcome) -> None:
    IMPORTS.labels(kind or "unknown", outcome).inc()
