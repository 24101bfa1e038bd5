"""Next hops the smtp-client tests control: an aiosmtpd sink with scripted replies
(and STARTTLS when given a certificate), and a raw server that drops the
connection in the middle of DATA."""

from __future__ import annotations

import asyncio
import ssl
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

from tests.support.ports import free_port


@dataclass
class Got:
    mail_from: str
    rcpt_to: list[str]
    data: bytes
    tls: str | None  # TLS version of the session, None in clear
    session: int
    at: float = field(default_factory=time.time)  # when the 250 was written (wall clock, for benchmarks)


@dataclass
class Script:
    """DATA replies to give, in order; then ``default``. ``refuse`` maps a recipient to its RCPT reply."""

    data_replies: deque[str] = field(default_factory=deque)
    default: str = "250 2.0.0 Ok: in the scripted sink"
    refuse: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0
    # Hold the DATA reply (no 250 yet) for these recipients, and for every mail once ``hold_after``
    # mails are kept, until ``release`` is set.
    hold: set[str] = field(default_factory=set)
    hold_after: int | None = None
    release: threading.Event = field(default_factory=threading.Event)


class _Handler:
    def __init__(self, script: Script) -> None:
        self.script = script
        self.mails: list[Got] = []
        self.orphans: list[Got] = []  # taken while the client was already gone: it never saw the 250
        self.mail_commands = 0
        self.held = 0
        self.lock = threading.Lock()

    async def handle_MAIL(self, server: SMTP, session: Session, envelope: Envelope, address: str,
                          options: list[str]) -> str:
        with self.lock:
            self.mail_commands += 1
        envelope.mail_from = address
        return "250 2.1.0 Ok"

    async def handle_RCPT(self, server: SMTP, session: Session, envelope: Envelope, address: str,
                          options: list[str]) -> str:
        if address in self.script.refuse:
            return self.script.refuse[address]
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 Ok"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        if self.script.delay_s:
            await asyncio.sleep(self.script.delay_s)
        after = self.script.hold_after
        if set(envelope.rcpt_tos) & self.script.hold or (after is not None and len(self.mails) >= after):
            self.held += 1
            while not self.script.release.is_set():
                await asyncio.sleep(0.02)
        reader = getattr(server, "_reader", None)
        gone = server.transport is None or server.transport.is_closing() or (reader is not None and reader.at_eof())
        with self.lock:
            reply = self.script.data_replies.popleft() if self.script.data_replies else self.script.default
            if reply.startswith("2"):
                obj = server.transport.get_extra_info("ssl_object") if server.transport else None
                tls = obj.version() if obj is not None else None
                got = Got(envelope.mail_from or "", list(envelope.rcpt_tos), envelope.original_content or b"",
                          tls, id(session))
                (self.orphans if gone else self.mails).append(got)
                session.pending_got = got  # type: ignore[attr-defined]  # ``at`` is set as the reply is written
        return reply


class _CountingSMTP(SMTP):
    sessions = 0
    active = 0
    most_active = 0
    guard = threading.Lock()

    def connection_made(self, transport: Any) -> None:
        cls = type(self)
        with cls.guard:
            cls.sessions += 1
            cls.active += 1
            cls.most_active = max(cls.most_active, cls.active)
        super().connection_made(transport)

    async def push(self, status: Any) -> None:
        got = getattr(self.session, "pending_got", None)
        if got is not None:  # the reply to that DATA: aiosmtpd writes it before its first await
            self.session.pending_got = None  # type: ignore[union-attr]
            got.at = time.time()
        await super().push(status)

    def connection_lost(self, exc: Exception | None) -> None:
        cls = type(self)
        with cls.guard:
            cls.active -= 1
        super().connection_lost(exc)


class ScriptedSink:
    def __init__(self, script: Script | None = None, tls: ssl.SSLContext | None = None,
                 host: str = "127.0.0.1", port: int | None = None) -> None:
        self.script = script or Script()
        self.handler = _Handler(self.script)
        self.port = port or free_port()
        self.host = host
        counting = type("CountingSMTP", (_CountingSMTP,), {"sessions": 0, "active": 0, "most_active": 0,
                                                           "guard": threading.Lock()})
        self.counter = counting
        tls_context = tls

        class _Controller(Controller):
            def factory(self) -> SMTP:
                return counting(self.handler, hostname="sink.test", decode_data=False, data_size_limit=None,
                                tls_context=tls_context, require_starttls=False, enable_SMTPUTF8=True)

        self.controller = _Controller(self.handler, hostname=host, port=self.port)

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def mails(self) -> list[Got]:
        with self.handler.lock:
            return list(self.handler.mails)

    def wait_for(self, count: int, timeout: float = 30.0) -> list[Got]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if len(self.mails) >= count:
                return self.mails
            time.sleep(0.05)
        raise AssertionError(f"sink {self.address} got {len(self.mails)} of {count} mails within {timeout:.0f}s")

    async def await_for(self, count: int, timeout: float = 30.0) -> list[Got]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if len(self.mails) >= count:
                return self.mails
            await asyncio.sleep(0.05)
        raise AssertionError(f"sink {self.address} got {len(self.mails)} of {count} mails within {timeout:.0f}s")

    def __enter__(self) -> ScriptedSink:
        self.controller.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.controller.stop()


class DroppingServer:
    """Speaks just enough SMTP to reach DATA, reads a few lines of the message, then
    closes the connection without a reply — the first ``drops`` times; after that
    it accepts (250) and keeps what it got."""

    def __init__(self, drops: int = 1) -> None:
        self.drops = drops
        self.dropped = 0
        self.mails: list[bytes] = []
        self.port = free_port()
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.server: asyncio.Server | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    async def _session(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"220 drop.test ESMTP\r\n")
        try:
            while line := await reader.readline():
                verb = line[:4].upper()
                if verb in (b"EHLO", b"HELO"):
                    writer.write(b"250-drop.test\r\n250 8BITMIME\r\n")
                elif verb == b"DATA":
                    writer.write(b"354 go on\r\n")
                    await writer.drain()
                    body = b""
                    if self.dropped < self.drops:
                        await reader.readline()  # a line or so of the message, then gone
                        self.dropped += 1
                        writer.transport.abort()
                        return
                    while (part := await reader.readline()) not in (b".\r\n", b""):
                        body += part
                    self.mails.append(body)
                    writer.write(b"250 2.0.0 Ok: kept\r\n")
                elif verb == b"QUIT":
                    writer.write(b"221 bye\r\n")
                    await writer.drain()
                    writer.close()
                    return
                else:
                    writer.write(b"250 Ok\r\n")
                await writer.drain()
        except ConnectionError:
            pass

    def __enter__(self) -> DroppingServer:
        self.thread.start()
        fut = asyncio.run_coroutine_threadsafe(asyncio.start_server(self._session, "127.0.0.1", self.port),
                                               self.loop)
        self.server = fut.result(5)
        return self

    def __exit__(self, *exc: object) -> None:
        async def close() -> None:
            assert self.server is not None
            self.server.close()

        asyncio.run_coroutine_threadsafe(close(), self.loop).result(5)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=5)
        self.loop.close()
