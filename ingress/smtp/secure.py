"""smtp-server: STARTTLS and AUTH of one connection, each an object that owns its own
state; the protocol engine (``engine.SmtpEngine``) asks them and sends their answers.

STARTTLS: the engine throws away everything the client sent in the clear behind the
command (RFC 3207 4.2; the CVE-2011-0411 / aiosmtpd CVE-2024-34083 class of command
injection) and forgets the session but the peer. AUTH PLAIN and LOGIN are offered
only over TLS and only when users are configured.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast


class HandshakeFailed(Exception):
    """The TLS handshake did not complete: ``what`` for the client, ``detail`` for the log."""

    def __init__(self, what: str, detail: str = "") -> None:
        super().__init__(what)
        self.what, self.detail = what, detail


class TlsLayer:
    """TLS of one connection: the context it offers, whether TLS is on, and the window
    between STARTTLS and the handshake, in which input in the clear is thrown away."""

    def __init__(self, context: ssl.SSLContext | None, implicit: bool) -> None:
        self.context = context
        self.active = implicit
        self.pending = False

    def refusal(self, arg: str) -> str | None:
        """The reply that refuses this STARTTLS, or None: go ahead."""
        if self.context is None:
            return "454 4.7.0 TLS not available"
        if self.active:
            return "503 5.5.1 Error: TLS already active"
        return "501 5.5.4 Syntax: STARTTLS" if arg else None

    async def handshake(self, loop: asyncio.AbstractEventLoop, transport: asyncio.Transport,
                        protocol: asyncio.Protocol, timeout: float) -> asyncio.Transport:
        """The server side of the handshake on this connection: its TLS transport."""
        assert self.context is not None
        try:
            tls = await loop.start_tls(transport, protocol, self.context, server_side=True,
                                       ssl_handshake_timeout=timeout)
        except (OSError, ssl.SSLError, ConnectionError, TimeoutError) as exc:
            raise HandshakeFailed("TLS handshake failed", str(exc)) from exc
        if tls is None:
            raise HandshakeFailed("TLS not established")
        self.active = True
        return cast(asyncio.Transport, tls)


def tls_facts(transport: asyncio.BaseTransport) -> tuple[dict[str, Any], str]:
    """What a TLS transport tells the session (aiosmtpd's ``Session.ssl``) and the client's line."""
    cipher = transport.get_extra_info("cipher")
    return ({"cipher": cipher, "ssl_object": transport.get_extra_info("ssl_object")},
            f"{cipher[1]} {cipher[0]}" if cipher else "TLS")


@dataclass(frozen=True)
class Login:
    """Credentials the client sent, to be checked."""

    user: str
    password: str


class AuthExchange:
    """AUTH PLAIN/LOGIN of one session: the users' check, and the step of the exchange
    (mechanism, login so far). Every answer is a reply line, or a ``Login`` to check."""

    def __init__(self, authenticator: Callable[[str, str], bool] | None) -> None:
        self.authenticator = authenticator
        self.step: tuple[str, str | None] | None = None

    @property
    def waiting(self) -> bool:
        """A continuation line of the client is due (not a command)."""
        return self.step is not None

    def refusal(self, tls: bool) -> str | None:
        """The reply that refuses AUTH before the session is looked at, or None."""
        if self.authenticator is None:
            return "502 5.5.1 AUTH is not offered here"
        return None if tls else "538 5.7.11 Encryption required: use STARTTLS before AUTH"

    def begin(self, arg: str, authenticated: bool, in_transaction: bool) -> str | Login:
        if authenticated:
            return "503 5.5.1 Already authenticated"
        if in_transaction:
            return "503 5.5.1 AUTH not allowed during a mail transaction"
        mechanism, _, initial = arg.partition(" ")
        mechanism = mechanism.upper()
        if mechanism not in ("PLAIN", "LOGIN"):
            return "504 5.5.4 Unrecognized authentication type"
        self.step = (mechanism, None)
        if initial and initial != "=":
            return self.feed(initial.encode())
        return "334 " + ("" if mechanism == "PLAIN" else "VXNlcm5hbWU6")

    def feed(self, line: bytes) -> str | Login:
        """The client's next line of the exchange."""
        assert self.step is not None
        mechanism, login = self.step
        self.step = None
        if line == b"*":
            return "501 5.7.0 Authentication cancelled"
        try:
            decoded = base64.b64decode(line, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return "501 5.5.2 Cannot decode the response"
        if mechanism == "LOGIN" and login is None:
            self.step = ("LOGIN", decoded)
            return "334 UGFzc3dvcmQ6"
        if mechanism == "PLAIN":
            parts = decoded.split("\0")
            return Login(parts[1], parts[2]) if len(parts) == 3 else Login("", "")
        return Login(login or "", decoded)

    async def check(self, login: Login) -> bool:
        """The password check in a thread: a pbkdf2 secret (200,000 iterations) costs ~0.1 s of CPU,
        which on the event loop would stall every session."""
        assert self.authenticator is not None
        return bool(login.user) and await asyncio.to_thread(self.authenticator, login.user, login.password)
