"""smtp-client's Prometheus metrics, on the /metrics the service's process serves
(``core.metrics.start_metrics``)::

    mailgate_smtp_client_recipients_total{outcome="delivered"|"deferred"|"bounced"}
    mailgate_latency_seconds{service="smtp-client",step="deliver"}   one attempt (histogram)

A recipient is counted once per attempt that decided it: a mail deferred twice and
then delivered counts two ``deferred`` and one ``delivered``. ``bounced`` is every
recipient that failed for good (a DSN went to the sender, or none for a null sender).
"""

from __future__ import annotations

from typing import Literal

from prometheus_client import Counter

from core.metrics import LATENCY, shown_at_zero

SERVICE = "smtp-client"
Outcome = Literal["delivered", "deferred", "bounced"]

RECIPIENTS = shown_at_zero(Counter("mailgate_smtp_client_recipients_total",
                                   "Recipients decided by a delivery attempt, by outcome", ["outcome"]),
                           "delivered", "deferred", "bounced")
ATTEMPT = LATENCY.labels(service=SERVICE, step="deliver")


def count(outcome: Outcome, recipients: int) -> None:
    if recipients:
        RECIPIENTS.labels(outcome).inc(recipients)
