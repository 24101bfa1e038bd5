"""control/engine — the services of a node: what each is, how it runs, where it listens.

The engine runs each as `mailgate service <name>` in a child process; the CLI
and the control server list them from here. A service's code lives in its own
stage package and is imported only when it runs. This is where the settings tree
meets the services: each stage's service is given only its view of the tree (the
gateway's identity and its own section, ``core.settings.view``); the control
plane's services get the whole tree (they show and change it).

Policies the engine keeps for an entry: ``restart_after_stop`` (started again
after ``control.grace_restart_s`` even when stopped on purpose: spam-filter,
maildepot-archiver, maildepot-connector when they join the registry) and
``auto_start=False`` (remote-support: only an administrator starts it, for a
limited time).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from control.settings import Settings
from core.settings import GatewaySettings, view
import egress.maildepot.settings as maildepot
import egress.smtp_client.settings as smtp_client
import ingress.connector.settings as connector
import ingress.pop3.settings as pop3
import ingress.smtp.settings as smtp_server
import streams.archive.settings as archive
import streams.spam.settings as spam
import streams.validation.settings as validation


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
    # "module:function(settings) -> (label, ok, text)": a fact `mailgate up` shows at start, a warning when
    # not ok (named as a string like the entry points: control imports no stage)
    startup_note: str | None = None

    @property
    def grace_restart(self) -> bool:
        return self.restart_after_stop or self.name in MUST_NOT_STAY_STOPPED

    def note(self, settings: Settings) -> tuple[str, bool, str] | None:
        """The service's startup note (see ``startup_note``), None when it has none."""
        if self.startup_note is None:
            return None
        module, _, function = self.startup_note.partition(":")
        return getattr(importlib.import_module(module), function)(settings)  # type: ignore[no-any-return]

    def group(self, settings: Settings) -> str | None:
        """Its consumer group, when it consumes a queue."""
        from schemas.topics import TopicNames

        return TopicNames(settings.kafka.topic_prefix).group(self.name) if self.consumes else None


def _uvloop(coro: Coroutine[Any, Any, None]) -> None:
    import uvloop

    uvloop.run(coro)


def _metrics(settings: GatewaySettings, name: str) -> None:
    from core.metrics import start_metrics

    start_metrics(settings, name)


def _entry(name: str, target: str, gets: type[GatewaySettings] | None, is_async: bool = False,
           *args: Any) -> Callable[[Settings], None]:
    """A service's process entry: its /metrics, then ``module:function(settings, *args)``
    (imported only in that process, so the engine does not load every stage) with the
    settings it ``gets`` (None: the whole tree); async ones run on uvloop."""
    def run(tree: Settings) -> None:
        module, _, function = target.partition(":")
        main = getattr(importlib.import_module(module), function)
        settings = tree if gets is None else view(tree, gets)
        _metrics(settings, name)
        if is_async:
            _uvloop(main(settings, *args))
        else:
            main(settings, *args)
    return run


def _pop3_listens(name: str) -> Callable[[Settings], str]:
    def listens(settings: Settings) -> str:
        accounts = settings.pop3.accounts_for(name)
        if not accounts:
            return "no POP3 account configured (idle)"
        shown = ", ".join(f"pop3://{a.address} ({a.name})" for a in accounts[:3])
        return f"{shown}{f' and {len(accounts) - 3} more' if len(accounts) > 3 else ''} → mail.in"
    return listens


def _connector_listens(s: Settings) -> str:
    journal = f"smtp://{s.connector.journal_host}:{s.connector.journal_port}, " if s.connector.journal_port else ""
    return f"{journal}{s.connector.import_path(s.home)} → archive.spool"


SERVICES: dict[str, Service] = {s.name: s for s in (
    Service("smtp-server", "receives mail; phase-1 filters before a mail is accepted",
            _entry("smtp-server", "ingress.smtp.service:serve", smtp_server.Settings, True),
            lambda s: f"smtp://{s.smtp_server.host}:{s.smtp_server.port} → mail.in"),
    Service("pop3-proxy", "collects mail from POP3 accounts (plain, STLS) at intervals",
            _entry("pop3-proxy", "ingress.pop3.service:run_service", pop3.Settings, True, "pop3-proxy"),
            _pop3_listens("pop3-proxy")),
    Service("pop3s-proxy", "collects mail from POP3S accounts (implicit TLS) at intervals",
            _entry("pop3s-proxy", "ingress.pop3.service:run_service", pop3.Settings, True, "pop3s-proxy"),
            _pop3_listens("pop3s-proxy")),
    Service("spam-filter", "fuzzy, pattern-based spam scoring that learns from reports",
            _entry("spam-filter", "streams.spam.service:run", spam.Settings),
            lambda s: "mail.in → mail.scored; spam.reports → spam.patterns", consumes="mail.in"),
    Service("message-validation", "phase-2 filters, virus scan and routing to the queues",
            _entry("message-validation", "streams.validation.service:run", validation.Settings),
            lambda s: "mail.scored → mail.out | spam | virus | ciss | quarantine", consumes="mail.scored",
            startup_note="streams.validation.scan_switch:startup_note"),
    Service("smtp-client", "delivers the out-queue to the next hop",
            _entry("smtp-client", "egress.smtp_client.service:serve", smtp_client.Settings, True),
            lambda s: f"mail.out → smtp://{s.smtp_client.smarthost}", consumes="mail.out"),
    Service("message-archive", "applies the archive rules to the mail validation copies",
            _entry("message-archive", "streams.archive.service:run", archive.Settings),
            lambda s: f"mail.archive → archive.spool{'' if s.archive.enabled else ' (archiving off)'}",
            consumes="mail.archive"),
    Service("maildepot-archiver", "stores spooled mail in the tamper-evident, searchable archive",
            _entry("maildepot-archiver", "egress.maildepot.service:run", maildepot.Settings),
            lambda s: f"archive.spool → {s.maildepot.path(s.home)}", consumes="archive.spool",
            restart_after_stop=True),
    Service("maildepot-connector", "journal SMTP endpoint and mbox/Maildir/EML import for the archive",
            _entry("maildepot-connector", "ingress.connector.service:serve", connector.Settings, True),
            _connector_listens,
            restart_after_stop=True),
    Service("control-server", "gRPC control plane for the administrator and user consoles",
            _entry("control-server", "control.server.service:run", None),
            lambda s: f"grpc{'s' if s.control.tls_cert_file else ''}://{s.control.host}:{s.control.port}"),
    Service("web-console", "the administrator and user consoles in the browser",
            _entry("web-console", "control.web.service:run", None),
            lambda s: f"{'https' if s.web.tls_cert_file else 'http'}://{s.web.host}:{s.web.port} "
                      f"(links in mail: {s.web.public_url})"),
    Service("remote-support", "diagnostics for remote maintenance; off unless an administrator starts it "
            "for a limited time", _entry("remote-support", "control.server.remote_support:run", None),
            lambda s: f"http://127.0.0.1:{s.control.remote_support_port}", auto_start=False),
)}
