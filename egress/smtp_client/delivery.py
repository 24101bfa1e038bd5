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

import aiosmtplib

from egress.smtp_client.connection import ConnectFailed, Connection, Reply, TlsInfo
from egress.smtp_client.pool import Pool
from egress.smtp_client.routing import Route, RouteError

__all__ = ["NextHop", "Outcome", "Reply", "deliver"]


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


def _all(recipients: list[str], reply: Reply, next_hop: str = "") -> Outcome:
    return Outcome(failed={r: reply for r in recipients}, next_hop=next_hop)


class _Dead(Exception):
    """The connection broke before the transaction began: try another one."""


async def _transaction(conn: Connection, mail_from: str, recipients: list[str], data: bytes,
                       fresh: bool) -> tuple[Outcome, bool]:
    """Send one mail on ``conn``: (outcome, connection still usable)."""
    label, tls = conn.host.label, conn.tls
    try:
        refused, text = await conn.client.sendmail(mail_from, recipients, data)
    except aiosmtplib.SMTPRecipientsRefused as exc:
        return Outcome(failed={e.recipient: Reply(e.code, e.message) for e in exc.recipients},
                       next_hop=label, tls=tls), True
    except aiosmtplib.SMTPResponseException as exc:  # MAIL or DATA refused, 421, ...
        return _all(recipients, Reply(exc.code, exc.message), label), exc.code != 421
    except aiosmtplib.SMTPServerDisconnected as exc:
        if not fresh:
            raise _Dead(str(exc)) from None
        return _all(recipients, Reply(None, f"connection lost: {exc}"), label), False
    except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
        return _all(recipients, Reply(None, f"{type(exc).__name__}: {exc}"), label), False
    outcome = Outcome(failed={r: Reply(resp.code, resp.message) for r, resp in refused.items()},
                      next_hop=label, tls=tls)
    outcome.accepted = [r for r in recipients if r not in refused]
    outcome.accepted_reply = Reply(250, text)  # sendmail raises on any DATA reply but 2xx
    return outcome, True


async def deliver(route: Route | RouteError, pool: Pool, mail_from: str, recipients: list[str],
                  data: bytes) -> Outcome:
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
                    outcome, usable = await _transaction(conn, mail_from, recipients, data, fresh=not reused)
                except _Dead:
                    await conn.close()
                    continue  # a new connection to the same host
                await pool.put(conn, route.tls, usable)
                return outcome
    assert last is not None, f"route {route.destination} has no host"
    return last
