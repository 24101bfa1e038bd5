"""Prometheus metrics of every service: the shared metric families and the /metrics endpoint.

The engine gives each service a port (``control.metrics_port_base`` + its place
in the registry); ``start_metrics`` serves /metrics there, with the process's own
metrics (CPU, memory, file descriptors) and whatever the service records::

    from core.metrics import MAILS, REJECTIONS, LATENCY
    MAILS.labels(service="message-validation", queue="out").inc()
    REJECTIONS.labels(service="smtp-server", reason="relay").inc()
    with LATENCY.labels(service="smtp-client", step="deliver").time(): ...

control-server also serves, from Kafka, the queue sizes and every group's lag,
rejections by reason (smtp.rejected) and end-to-end delivery latency (mail.delivery).
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram, start_http_server

from core.logging import get_logger
from core.settings import GatewaySettings

log = get_logger("metrics")

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 3600.0)

MAILS = Counter("mailgate_mails_total", "Mails put on a queue", ["service", "queue"])
REJECTIONS = Counter("mailgate_rejections_total", "Mails or SMTP transactions refused, by reason",
                     ["service", "reason"])
LATENCY = Histogram("mailgate_latency_seconds", "Time a step took", ["service", "step"], buckets=LATENCY_BUCKETS)
LAG = Gauge("mailgate_consumer_lag_records", "Records a consumer group has not consumed yet", ["group", "topic"])
QUEUE_RECORDS = Gauge("mailgate_queue_records", "Records held in a topic (end minus start offsets)", ["queue"])
UP = Gauge("mailgate_service_up", "1 while the service runs", ["service", "node"])


def shown_at_zero(counter: Counter, *label_sets: str | tuple[str, ...]) -> Counter:
    """Puts each label set on the page at 0 from the start (a rate needs the first sample)."""
    for labels in label_sets:
        counter.labels(*(labels if isinstance(labels, tuple) else (labels,)))
    return counter


def start_metrics(settings: GatewaySettings, service: str) -> int | None:
    """Serves /metrics on the port the engine gave this process; returns it (None: none given,
    or it is taken — the service runs on without metrics, and the log says so)."""
    port = settings.control.metrics_port
    if not port:
        return None
    try:
        start_http_server(port, addr=settings.control.metrics_host)
    except OSError as exc:
        log.warning("no /metrics: the port is taken", port=port, error=str(exc),
                    hint="set MAILGATE_CONTROL__METRICS_PORT_BASE")
        return None
    UP.labels(service=service, node=settings.node).set(1)
    return port
