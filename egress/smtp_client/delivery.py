"""smtp-client: one delivery attempt of one mail copy along its route, turned into
an outcome per recipient: accepted, temporarily failed (try again later) or
permanently failed (bounce).

Hosts of the route are tried in order while they cannot be reached (refused,
timeout, bad greeting, TLS required but not offered); the first host that
takes part in a transaction decides. A reused connection that turns out to be
dead is replaced by a new one to the same host, once.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import aiosmtplib
from aiosmtplib.protocol import normalize_message_line_endings
from aiosmtplib.response import SMTPResponse

from egress.smtp_client.connection import ConnectFailed, Connection, MarkingProtocol, Reply, TlsInfo
from egress.smtp_client.pool import Pool
from egress.smtp_client.routing import Route, RouteError

__all__ = ["NextHop", "Outcome", "Recorder", "Reply", "deliver"]


@dataclass(frozen=True)
class NextHop:
    """A fixed next hop by name (release 0.1's interface; routes are ``routing.Route`` now)."""

    host: str
    port: int
    helo: str = ""
    timeout_s: float = 30.0

    @property
    def name(self) -> str:
        return f"{self.host}:{self.port}"


@dataclass
class Outcome:
    accepted: list[str] = field(default_factory=list)
    accepted_reply: Reply | None = None
    failed: dict[str, Reply] = field(default_factory=dict)
    next_hop: str = ""
    tls: TlsInfo | None = None

    @property
    def temporary(self) -> list[str]:
        return [r for r, reply in self.failed.items() if not reply.permanent]

    @property
    def permanent(self) -> list[str]:
        return [r for r, reply in self.failed.items() if reply.permanent]


class Recorder(Protocol):
    """Records a 250 (handler.py): the journal, then the delivery log."""

    def journal(self, accepted: list[str], reply: str) -> None:
        """Synchronous, at most one write(2); runs inside the socket read that parsed the 250."""

    async def confirm(self, outcome: Outcome) -> None:
        """Runs once the task has the outcome, while the mail still holds its connection: journals if
        the protocol could not (no-op otherwise), then returns once the broker has the mark."""


def _all(recipients: list[str], reply: Reply, next_hop: str = "") -> Outcome:
    return Outcome(failed={r: reply for r in recipients}, next_hop=next_hop)


class _Dead(Exception):
    """The connection broke before the transaction began: try another one."""


class _Refused(Exception):
    """MAIL, DATA or the final reply refused; ``refused`` keeps the recipients RCPT had refused already."""

    def __init__(self, error: aiosmtplib.SMTPResponseException, refused: dict[str, Reply]) -> None:
        super().__init__(error.message)
        self.error = error
        self.refused = refused


async def _sendmail(client: aiosmtplib.SMTP, mail_from: str, recipients: list[str],
                    data: bytes, recorder: Recorder | None) -> tuple[dict[str, Reply], str]:
    """MAIL, RCPT per recipient, DATA: (refused recipients, the DATA reply's text). Like aiosmtplib's
    sendmail, except that a 4xx/5xx to DATA keeps the RCPT replies: a recipient refused with 550 is
    bounced at once, not retried with the others."""
    refused: dict[str, Reply] = {}
    options = [f"size={len(normalize_message_line_endings(data))}"] if client.supports_extension("size") else []
    try:
        await client.mail(mail_from, options=options)
        for rcpt in recipients:
            try:
                await client.rcpt(rcpt)
            except aiosmtplib.SMTPRecipientRefused as exc:
                refused[rcpt] = Reply(exc.code, exc.message)
        if len(refused) == len(recipients):
            await client.rset()
            return refused, ""
        protocol = client.protocol if recorder is not None and isinstance(client.protocol, MarkingProtocol) else None
        if protocol is not None:
            accepted = [r for r in recipients if r not in refused]

            def journal(response: SMTPResponse) -> None:
                recorder.journal(accepted, f"{response.code} {response.message}")

            protocol.on_completed = journal
        try:
            return refused, (await client.data(data)).message
        finally:
            if protocol is not None:
                protocol.on_completed = None  # never left for the next mail on this connection
    except aiosmtplib.SMTPResponseException as exc:
        try:
            await client.rset()  # a clean envelope for the next mail on this connection
        except (aiosmtplib.SMTPException, OSError):
            pass
        raise _Refused(exc, refused) from None


async def _transaction(conn: Connection, mail_from: str, recipients: list[str], data: bytes,
                       fresh: bool, recorder: Recorder | None) -> tuple[Outcome, bool]:
    """Send one mail on ``conn``: (outcome, connection still usable)."""
    label, tls = conn.host.label, conn.tls
    try:
        refused, text = await _sendmail(conn.client, mail_from, recipients, data, recorder)
    except _Refused as exc:  # MAIL or DATA refused, 421, ...
        failed = {**_all(recipients, Reply(exc.error.code, exc.error.message)).failed, **exc.refused}
        return Outcome(failed=failed, next_hop=label, tls=tls), exc.error.code != 421
    except aiosmtplib.SMTPServerDisconnected as exc:
        if not fresh:
            raise _Dead(str(exc)) from None
        return _all(recipients, Reply(None, f"connection lost: {exc}"), label), False
    except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
        return _all(recipients, Reply(None, f"{type(exc).__name__}: {exc}"), label), False
    outcome = Outcome(failed=refused, next_hop=label, tls=tls)
    outcome.accepted = [r for r in recipients if r not in refused]
    if outcome.accepted:
        outcome.accepted_reply = Reply(250, text)  # data() raises on any reply but 2xx
    return outcome, True


async def deliver(route: Route | RouteError, pool: Pool, mail_from: str, recipients: list[str],
                  data: bytes, recorder: Recorder | None = None) -> Outcome:
    """One attempt. ``recorder`` journals the 250 in the socket read that parses it, and writes the delivery
    log right after, while this mail still holds its connection and destination slot: the next mail on a
    connection starts only once the previous one's 250 is on the broker."""
    if isinstance(route, RouteError):
        return _all(recipients, Reply(route.code, route.text))
    last: Outcome | None = None
    async with pool.slot(route.limit_key):
        for host in route.hosts:
            for _ in range(2):
                try:
                    conn, reused = await pool.get(host, route.tls)
                except ConnectFailed as exc:
                    last = _all(recipients, exc.reply, host.label)
                    break  # next host
                try:
                    outcome, usable = await _transaction(conn, mail_from, recipients, data, not reused, recorder)
                except _Dead:
                    await conn.close()
                    continue  # a new connection to the same host
                try:
                    if outcome.accepted and recorder is not None:
                        await recorder.confirm(outcome)
                finally:
                    await pool.put(conn, route.tls, usable)
                return outcome
    assert last is not None, f"route {route.destination} has no host"
    return last
