"""The services of a node: what each is, how it runs, where it listens.

The engine runs each as `mailgate service <name>` in a child process; the CLI
and the control server list them from here. A service's code lives in its own
stage package and is imported only when it runs.

Policies the engine keeps for an entry: ``restart_after_stop`` (started again
after ``control.grace_restart_s`` even when stopped on purpose: spam-filter,
maildepot-archiver, maildepot-connector when they join the registry) and
``auto_start=False`` (remote-support: only an administrator starts it, for a
limited time).
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from core.settings import Settings


# Services that may not stay stopped: the engine starts them again after the grace period.
MUST_NOT_STAY_STOPPED = frozenset({"spam-filter", "maildepot-archiver", "maildepot-connector"})


@dataclass(frozen=True)
class Service:
    name: str
    description: str
    run: Callable[[Settings], None]
    listens: Callable[[Settings], str]
    consumes: str | None = None  # the topic whose consumer-group lag is this service's queue
    auto_start: bool = True
    restart_after_stop: bool = False

    @property
    def grace_restart(self) -> bool:
        return self.restart_after_stop or self.name in MUST_NOT_STAY_STOPPED

    def group(self, settings: Settings) -> str | None:
        """Its consumer group, when it consumes a queue."""
        from schemas.topics import TopicNames

        return TopicNames(settings.kafka.topic_prefix).group(self.name) if self.consumes else None


def _uvloop(coro: Coroutine[Any, Any, None]) -> None:
    import uvloop

    uvloop.run(coro)


def _metrics(settings: Settings, name: str) -> None:
    from core.metrics import start_metrics

    start_metrics(settings, name)


def _smtp_server(settings: Settings) -> None:
    from ingress.smtp.server import serve

    _metrics(settings, "smtp-server")
    _uvloop(serve(settings))


def _validation(settings: Settings) -> None:
    from streams.validation.service import run

    _metrics(settings, "message-validation")
    run(settings)


def _spam_filter(settings: Settings) -> None:
    from streams.spam.service import run

    _metrics(settings, "spam-filter")
    run(settings)


def _smtp_client(settings: Settings) -> None:
    from egress.smtp_client.service import serve

    _metrics(settings, "smtp-client")
    _uvloop(serve(settings))


def _control_server(settings: Settings) -> None:
    from control.server import run

    _metrics(settings, "control-server")
    run(settings)


def _remote_support(settings: Settings) -> None:
    from control.remote_support import run

    _metrics(settings, "remote-support")
    run(settings)


SERVICES: dict[str, Service] = {s.name: s for s in (
    Service("smtp-server", "receives mail; phase-1 filters before a mail is accepted", _smtp_server,
            lambda s: f"smtp://{s.smtp_server.host}:{s.smtp_server.port} → mail.in"),
    Service("spam-filter", "fuzzy, pattern-based spam scoring that learns from reports", _spam_filter,
            lambda s: "mail.in → mail.scored; spam.reports → spam.patterns", consumes="mail.in"),
    Service("message-validation", "phase-2 filters, virus scan and routing to the queues", _validation,
            lambda s: "mail.scored → mail.out | spam | virus | quarantine", consumes="mail.scored"),
    Service("smtp-client", "delivers the out-queue to the next hop", _smtp_client,
            lambda s: f"mail.out → smtp://{s.smtp_client.smarthost}", consumes="mail.out"),
    Service("control-server", "gRPC control plane for the administrator and user consoles", _control_server,
            lambda s: f"grpc{'s' if s.control.tls_cert_file else ''}://{s.control.host}:{s.control.port}"),
    Service("remote-support", "diagnostics for remote maintenance; off unless an administrator starts it "
            "for a limited time", _remote_support, lambda s: f"http://127.0.0.1:{s.control.remote_support_port}",
            auto_start=False),
)}
