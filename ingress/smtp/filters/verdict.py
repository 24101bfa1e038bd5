"""smtp-server, phase 1: the one verdict vocabulary every filter answers with.

A filter looks at a ``Check`` (what is asked at which stage of the dialogue) and
answers a ``Verdict``: ACCEPT (stop checking: allowed), REJECT (5xx), TEMPFAIL
(4xx) or CONTINUE (no objection; it may still carry a reason worth recording).
How verdicts are combined is written in one place: ``chain.Chain.run``.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from schemas import events


class Action(enum.Enum):
    ACCEPT = "ACCEPT"
    REJECT = "REJECT"
    TEMPFAIL = "TEMPFAIL"
    CONTINUE = "CONTINUE"


class Stage(enum.Enum):
    CONNECT = "CONNECT"
    MAIL = "MAIL"
    RCPT = "RCPT"
    DATA = "DATA"


@dataclass(frozen=True)
class Verdict:
    """One filter's answer. ``reply`` is the SMTP line a sender can act on."""

    action: Action
    filter: str = ""
    code: int = 0
    status: str = ""
    reason: str = ""
    stage: Stage | None = None
    rcpt: str | None = None

    @property
    def reply(self) -> str:
        return f"{self.code} {self.status} {self.reason}"

    @property
    def refuses(self) -> bool:
        return self.action in (Action.REJECT, Action.TEMPFAIL)

    def at(self, stage: Stage, rcpt: str | None) -> Verdict:
        return replace(self, stage=stage, rcpt=rcpt)

    def record(self) -> events.Verdict:
        """The Avro ``Verdict`` record (MailReceived.verdicts, SmtpRejected.verdicts)."""
        return events.Verdict(filter=self.filter, stage=self.stage.value if self.stage else "",
                              action=self.action.value, code=self.code or None, status=self.status or None,
                              reason=self.reason, rcpt=self.rcpt)


CONTINUE = Verdict(Action.CONTINUE)


def accept(filter: str, reason: str) -> Verdict:
    return Verdict(Action.ACCEPT, filter, 0, "", reason)


def note(filter: str, reason: str) -> Verdict:
    """No objection, with a reason to record (e.g. "spf=pass")."""
    return Verdict(Action.CONTINUE, filter, 0, "", reason)


def reject(filter: str, code: int, status: str, reason: str) -> Verdict:
    assert 500 <= code < 600 and status.startswith("5."), (code, status)
    return Verdict(Action.REJECT, filter, code, status, reason)


def tempfail(filter: str, code: int, status: str, reason: str) -> Verdict:
    assert 400 <= code < 500 and status.startswith("4."), (code, status)
    return Verdict(Action.TEMPFAIL, filter, code, status, reason)


@dataclass
class Client:
    """Per-connection state the filters look at (aiosmtpd's Session holds one)."""

    ip: str
    port: int = 0
    helo: str | None = None
    name: str | None = None  # reverse DNS name, when verified
    tls: str | None = None
    user: str | None = None  # authenticated login
    trusted: bool = False  # in the trusted networks
    allowed: bool = False  # on the client allow list
    memo: dict[str, Any] = field(default_factory=dict)  # per-filter results kept for the session


@dataclass
class Transaction:
    """Per-transaction state (MAIL .. end of DATA or RSET)."""

    mail_from: str = ""
    rcpt_tos: list[str] = field(default_factory=list)
    allowed: bool = False  # an ACCEPT at MAIL: bypassable checks are skipped for the whole transaction
    spf: tuple[str, str] | None = None  # (result, explanation), carried to phase 2
    verdicts: list[Verdict] = field(default_factory=list)
    accepted: bool = False  # got 250 at end of DATA
    started: bool = False  # MAIL was sent


@dataclass(frozen=True)
class Check:
    stage: Stage
    client: Client
    tx: Transaction
    rcpt: str | None = None


class Filter(Protocol):
    """A phase-1 check. ``bypassable`` filters are skipped for trusted, authenticated
    and allow-listed clients, senders and recipients."""

    name: str
    stages: frozenset[Stage]
    bypassable: bool

    async def check(self, ask: Check) -> Verdict: ...
