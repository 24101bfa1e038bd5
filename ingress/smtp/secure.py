"""smtp-server: STARTTLS and AUTH of the protocol engine (``engine.SmtpEngine``).

STARTTLS throws away everything the client sent in the clear behind the command
(RFC 3207 4.2; the CVE-2011-0411 / aiosmtpd CVE-2024-34083 class of command
injection) and forgets the session but the peer. AUTH PLAIN and LOGIN are offered
only over TLS and only when users are configured.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import ssl
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any, cast

from core.logging import get_logger
from ingress.smtp.protocol import GatewaySession

if TYPE_CHECKING:
    from ingress.smtp.engine import SmtpEngine

log = get_logger("smtp-server")



def starttls(engine: SmtpEngine, arg: str) -> Coroutine[Any, Any, None] | None:
    if engine.tls_context is None or engine.is_tls:
        engine.reply("454 4.7.0 TLS not available" if engine.tls_context is None else
                     "503 5.5.1 Error: TLS already active")
        return None
    if arg:
        engine.reply("501 5.5.4 Syntax: STARTTLS")
        return None
    engine.reply("220 2.0.0 Ready to start TLS")
    engine.buf.clear()  # RFC 3207 4.2 / CVE-2011-0411: nothing sent in the clear may run after the handshake
    engine.tls_pending = True
    return handshake(engine)


async def handshake(engine: SmtpEngine) -> None:
    assert engine.transport is not None and engine.tls_context is not None
    engine.transport.write(b"".join(engine.out))
    engine.out.clear()
    try:
        tls = await engine.loop.start_tls(engine.transport, engine, engine.tls_context, server_side=True,
                                          ssl_handshake_timeout=min(engine.limits.idle_timeout_s, 60.0))
    except (OSError, ssl.SSLError, ConnectionError, TimeoutError) as exc:
        log.info("TLS handshake failed", peer=engine.ip, error=str(exc))
        engine.abort(f"421 4.7.0 {engine.hostname} Error: TLS handshake failed; closing connection")
        return
    if tls is None:
        engine.abort(f"421 4.7.0 {engine.hostname} Error: TLS not established; closing connection")
        return
    engine.transport, engine.is_tls = cast(asyncio.Transport, tls), True
    if engine.tls_pending:  # nothing arrived through TLS yet
        engine.tls_pending = False
        engine.guard.reset()
    engine.end_transaction()
    assert engine.session is not None
    client = engine.session.client  # RFC 3207 4.2: forget everything but the peer
    engine.session = GatewaySession(engine.loop)
    engine.session.peer, engine.session.client = tls.get_extra_info("peername"), client
    client.helo, client.memo = None, {}
    tls_info(engine, tls)


def tls_info(engine: SmtpEngine, transport: asyncio.BaseTransport) -> None:
    assert engine.session is not None
    cipher = transport.get_extra_info("cipher")
    engine.session.ssl = {"cipher": cipher, "ssl_object": transport.get_extra_info("ssl_object")}
    engine.session.client.tls = f"{cipher[1]} {cipher[0]}" if cipher else "TLS"


def auth(engine: SmtpEngine, arg: str) -> None:
    if engine.authenticator is None:
        engine.reply("502 5.5.1 AUTH is not offered here")
    elif not engine.is_tls:
        engine.reply("538 5.7.11 Encryption required: use STARTTLS before AUTH")
    elif engine.need_helo():
        return
    elif engine.session is not None and engine.session.authenticated:
        engine.reply("503 5.5.1 Already authenticated")
    elif engine.envelope.mail_from is not None:
        engine.reply("503 5.5.1 AUTH not allowed during a mail transaction")
    else:
        mechanism, _, initial = arg.partition(" ")
        mechanism = mechanism.upper()
        if mechanism not in ("PLAIN", "LOGIN"):
            engine.reply("504 5.5.4 Unrecognized authentication type")
        elif initial and initial != "=":
            engine.auth_step = (mechanism, None)
            auth_continue(engine, initial.encode())
        else:
            engine.auth_step = (mechanism, None)
            engine.reply("334 " + ("" if mechanism == "PLAIN" else "VXNlcm5hbWU6"), raw=True)


def auth_continue(engine: SmtpEngine, line: bytes) -> None:
    assert engine.auth_step is not None
    mechanism, login = engine.auth_step
    if line == b"*":
        engine.auth_step = None
        engine.reply("501 5.7.0 Authentication cancelled")
        return
    try:
        decoded = base64.b64decode(line, validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        engine.auth_step = None
        engine.reply("501 5.5.2 Cannot decode the response")
        return
    if mechanism == "LOGIN" and login is None:
        engine.auth_step = ("LOGIN", decoded)
        engine.reply("334 UGFzc3dvcmQ6", raw=True)
        return
    engine.auth_step = None
    if mechanism == "PLAIN":
        parts = decoded.split("\0")
        login, password = (parts[1], parts[2]) if len(parts) == 3 else ("", "")
    else:
        password = decoded
    assert login is not None
    engine._start(verify(engine, login, password))


async def verify(engine: SmtpEngine, login: str, password: str) -> None:
    """The password check in a thread: a pbkdf2 secret (200,000 iterations) costs ~0.1 s of CPU, which
    on the event loop would stall every session. The engine reads no further command meanwhile."""
    assert engine.authenticator is not None and engine.session is not None
    ok = bool(login) and await asyncio.to_thread(engine.authenticator, login, password)
    if ok:
        engine.session.authenticated = True
        engine.session.client.user = login
        engine.reply("235 2.7.0 Authentication successful")
    else:
        engine.reply("535 5.7.8 Authentication credentials invalid")
