"""maildepot-archiver: its Prometheus metrics, on the /metrics of its process
(core.metrics.start_metrics)::

    mailgate_maildepot_archiver_mails_total{outcome="stored"|"duplicate"}      per mail of a committed batch
    mailgate_maildepot_archiver_expired_total                                  removed when its retention ran out
    mailgate_mails_total{service="maildepot-archiver",queue="mail.quarantine"} unreadable records set aside
    mailgate_latency_seconds{service="maildepot-archiver",step="store-batch"}  one batch: files, index, commit

A batch read again after a restart (its offsets were not committed yet) counts its mails
again, as ``duplicate``: the store skipped them.
"""

from __future__ import annotations

from prometheus_client import Counter

from core.metrics import LATENCY, MAILS, shown_at_zero
from egress.maildepot.store import Stored
from schemas.topics import MAIL_QUARANTINE

SERVICE = "maildepot-archiver"

ARCHIVED = shown_at_zero(Counter("mailgate_maildepot_archiver_mails_total",
                                 "Mails of a batch the archive store committed: stored, or skipped as a duplicate",
                                 ["outcome"]), "stored", "duplicate")
EXPIRED = Counter("mailgate_maildepot_archiver_expired_total", "Mails removed from the archive by retention")
QUARANTINED = MAILS.labels(SERVICE, MAIL_QUARANTINE)
STORE_BATCH = LATENCY.labels(SERVICE, "store-batch")


def count_batch(done: Stored, seconds: float) -> None:
    ARCHIVED.labels("stored").inc(len(done.stored))
    ARCHIVED.labels("duplicate").inc(len(done.duplicates))
    STORE_BATCH.observe(seconds)
