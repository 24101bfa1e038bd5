"""smtp-client: one SMTP connection to one host, with the domain's TLS policy.

``may``: STARTTLS when offered, certificates not checked, plain text when the
handshake fails (like Postfix's ``may``). ``required``: STARTTLS must be
offered and the certificate must verify for the host name (CA bundle from
settings, else the system's); otherwise nothing is sent. ``none``: plain text.
"""

from __future__ import annotations

import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import aiosmtplib
import aiosmtplib.smtp
from aiosmtplib.protocol import SMTPProtocol
from aiosmtplib.response import SMTPResponse
from aiosmtplib.typing import SMTPStatus

from egress.smtp_client.settings import TlsPolicy
from egress.smtp_client.routing import Host


@dataclass(frozen=True)
class Reply:
    code: int | None  # None: no SMTP reply (refused, timeout, dropped connection)
    text: str

    @property
    def permanent(self) -> bool:
        return self.code is not None and 500 <= self.code < 600

    @property
    def line(self) -> str:
        """As the server said it ("451 4.3.0 busy"), or what went wrong."""
        return f"{self.code} {self.text}" if self.code else self.text


class ConnectFailed(Exception):
    """No usable session with this host; the next host may be tried."""

    def __init__(self, reply: Reply) -> None:
        super().__init__(reply.text)
        self.reply = reply


class MarkingProtocol(SMTPProtocol):
    """aiosmtplib's protocol with one hook: ``on_completed`` runs inside ``data_received``, in the very
    callback that parses the 250 to a mail's body, before the delivering task is even woken.

    Between the next hop's 250 and our record of it, a kill -9 makes a duplicate (RFC 1047). Waking the
    task costs a loop iteration; under load that was up to 12 ms (bench/delivery_kill.py), this is none.
    """

    on_completed: Callable[[SMTPResponse], None] | None = None  # set just before DATA, fired once

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        hook, waiter = self.on_completed, self._response_waiter
        if hook is None or waiter is None or not waiter.done() or waiter.cancelled() or waiter.exception():
            return
        response = waiter.result()
        if response.code == SMTPStatus.start_input:  # 354: the body is still to be sent
            return
        self.on_completed = None
        if response.code == SMTPStatus.completed:
            hook(response)


# aiosmtplib builds its protocol from this module global (SMTP._create_connection); the subclass only
# adds the hook. Pinned aiosmtplib (pyproject.toml), and tests/unit/smtp_client checks that it is used.
aiosmtplib.smtp.SMTPProtocol = MarkingProtocol  # type: ignore[misc]


@dataclass(frozen=True)
class TlsInfo:
    version: str
    cipher: str


@dataclass
class Connection:
    client: aiosmtplib.SMTP
    host: Host
    tls: TlsInfo | None
    uses: int = 0
    last_used: float = field(default_factory=time.monotonic)

    @property
    def alive(self) -> bool:
        transport = getattr(self.client, "transport", None)
        return self.client.is_connected and transport is not None and not transport.is_closing()

    async def close(self) -> None:
        if not self.client.is_connected:
            return
        try:
            await self.client.quit(timeout=2)
        except (aiosmtplib.SMTPException, OSError, TimeoutError):
            self.client.close()


@lru_cache(maxsize=8)
def verifying_context(ca_file: Path | None) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(ca_file) if ca_file else None)


@lru_cache(maxsize=1)
def opportunistic_context() -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def _tls_info(client: aiosmtplib.SMTP) -> TlsInfo | None:
    sslobj = client.get_transport_info("ssl_object")
    if sslobj is None:
        return None
    cipher = sslobj.cipher()
    return TlsInfo(sslobj.version() or "", cipher[0] if cipher else "")


async def open_connection(host: Host, policy: TlsPolicy, helo: str, timeout: float,
                          ca_file: Path | None = None) -> Connection:
    """Connect, greet and negotiate TLS; raises ConnectFailed with the reply to record."""
    client = aiosmtplib.SMTP(hostname=host.address, port=host.port, local_hostname=helo, timeout=timeout,
                             start_tls=False, validate_certs=policy == "required")
    try:
        await client.connect()
        await client._ehlo_or_helo_if_needed()
        if policy != "none" and client.supports_extension("starttls"):
            ctx = verifying_context(ca_file) if policy == "required" else opportunistic_context()
            try:
                await client.starttls(server_hostname=host.name, tls_context=ctx)
            except (aiosmtplib.SMTPException, ssl.SSLError, OSError) as exc:
                client.close()
                if policy == "required":
                    raise ConnectFailed(Reply(None, f"4.7.5 TLS with {host.label} failed: {exc}")) from None
                return await open_connection(host, "none", helo, timeout)  # "may": plain text instead
            await client.ehlo()
        elif policy == "required":
            client.close()
            raise ConnectFailed(Reply(None, f"4.7.4 TLS is required for this domain, but {host.label} "
                                            "does not offer STARTTLS; not sent in clear"))
    except aiosmtplib.SMTPResponseException as exc:  # 421/554 greeting, EHLO refused
        client.close()
        raise ConnectFailed(Reply(exc.code, f"{host.label} said: {exc.message}")) from None
    except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
        client.close()
        raise ConnectFailed(Reply(None, f"{host.label}: {type(exc).__name__}: {exc}")) from None
    return Connection(client, host, _tls_info(client))
