"""The services of a node: what each is, how it runs, where it listens.

The engine runs each as `mailgate service <name>` in a child process; the CLI
and the control server list them from here. A service's code lives in its own
stage package and is imported only when it runs.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from core.settings import Settings


@dataclass(frozen=True)
class Service:
    name: str
    description: str
    run: Callable[[Settings], None]
    listens: Callable[[Settings], str]
    consumes: str | None = None  # the topic whose consumer-group lag is this service's queue


def _uvloop(coro: Coroutine[Any, Any, None]) -> None:
    import uvloop

    uvloop.run(coro)


def _smtp_server(settings: Settings) -> None:
    from ingress.smtp.server import serve

    _uvloop(serve(settings))


def _validation(settings: Settings) -> None:
    from streams.validation.service import run

    run(settings)


def _smtp_client(settings: Settings) -> None:
    from egress.smtp_client.service import serve

    _uvloop(serve(settings))


SERVICES: dict[str, Service] = {s.name: s for s in (
    Service("smtp-server", "receives mail; phase-1 filters before a mail is accepted", _smtp_server,
            lambda s: f"smtp://{s.smtp_server.host}:{s.smtp_server.port} → mail.in"),
    Service("message-validation", "phase-2 filters and routing to the queues", _validation,
            lambda s: "mail.in → mail.out | mail.quarantine", consumes="mail.in"),
    Service("smtp-client", "delivers the out-queue to the next hop", _smtp_client,
            lambda s: f"mail.out → smtp://{s.smtp_client.smarthost}", consumes="mail.out"),
)}
