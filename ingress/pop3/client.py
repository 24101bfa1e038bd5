"""The POP3 session of pop3-proxy / pop3s-proxy (RFC 1939, STLS from RFC 2595,
CAPA from RFC 2449): connect, TLS, USER/PASS, UIDL+LIST, RETR, DELE, QUIT.

An asyncio client of our own on stdlib streams and ssl. Why not stdlib poplib
in a thread: poplib refuses any line over 2,048 bytes (real mail has longer
ones), has no byte cap while reading a message, reports a dropped connection
and a ``-ERR`` alike (``error_proto``), and a blocked thread cannot be
cancelled on shutdown. No maintained async POP3 client exists on PyPI.

The protocol code knows no policy: it raises one of the ``Pop3Error`` classes
below with a message an administrator can act on; the collector decides.
"""

from __future__ import annotations

import asyncio
import re
import ssl
from collections import deque
from collections.abc import AsyncGenerator, Callable, Iterable
from dataclasses import dataclass

from ingress.pop3.settings import Pop3Account

PIPELINE_DEPTH = 16  # commands out at once when the server announces PIPELINING
PIPELINE_BYTES = 4 * 1024 * 1024  # RETR replies out at once by LIST size (beyond the first)
_STATUS_LINE_MAX = 4096  # RFC 1939 says 512; be lenient, but not unbounded
_READ_CHUNK = 256 * 1024
_TERMINATOR = b"\r\n.\r\n"
_UIDL_RE = re.compile(rb"^(\d{1,9}) ([\x21-\x7e]{1,70})$")
_LIST_RE = re.compile(rb"^(\d{1,9}) (\d{1,15})(?: .*)?$")


class Pop3Error(Exception):
    """A POP3 session failed; the message says what and where."""


class Pop3ConnectError(Pop3Error):
    """No TCP connection to the server."""


class Pop3TlsError(Pop3Error):
    """TLS could not be set up as the account requires (no STLS, untrusted certificate)."""


class Pop3AuthError(Pop3Error):
    """The server refused the login."""


class Pop3CommandError(Pop3Error):
    """The server answered -ERR to a command; the session is still usable."""


class Pop3ProtocolError(Pop3Error):
    """The server's reply is not POP3 as RFC 1939 defines it."""


class Pop3Dropped(Pop3Error):
    """The connection closed or went silent in the middle of a reply."""


class Pop3TooLarge(Pop3Error):
    """A message grew past the size cap while being read; the session had to be closed."""

    listed: Listed | None = None


@dataclass(frozen=True)
class Listed:
    """One message of the maildrop, as UIDL and LIST describe it."""

    number: int
    uidl: str
    size: int


def tls_context(account: Pop3Account) -> ssl.SSLContext:
    """Verifying client context: the account's CA file, else the system's CAs."""
    cafile = str(account.ca_file) if account.ca_file else None
    try:
        ctx = ssl.create_default_context(cafile=cafile)
    except (OSError, ssl.SSLError) as exc:
        raise Pop3TlsError(f"ca_file {account.ca_file} cannot be loaded: {exc}") from exc
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    return ctx


def unstuff(data: bytes) -> bytes:
    """Undo RFC 1939 byte-stuffing: a line starting with '.' loses that dot."""
    if data.startswith(b"."):
        data = data[1:]
    return data.replace(b"\r\n.", b"\r\n")


def parse_listing(uidl_body: bytes, list_body: bytes) -> list[Listed]:
    """Join UIDL and LIST replies into one listing; anything malformed raises."""
    uidls: dict[int, str] = {}
    for line in _lines(uidl_body):
        m = _UIDL_RE.match(line)
        if m is None:
            raise Pop3ProtocolError(f"malformed UIDL line {line[:100]!r} (expected 'number uidl')")
        number, uidl = int(m[1]), m[2].decode("ascii")
        if number in uidls:
            raise Pop3ProtocolError(f"UIDL lists message {number} twice")
        uidls[number] = uidl
    if len(set(uidls.values())) != len(uidls):
        raise Pop3ProtocolError("UIDL gives two messages the same id: cannot collect without duplicates")
    sizes: dict[int, int] = {}
    for line in _lines(list_body):
        m = _LIST_RE.match(line)
        if m is None:
            raise Pop3ProtocolError(f"malformed LIST line {line[:100]!r} (expected 'number size')")
        sizes[int(m[1])] = int(m[2])
    if set(sizes) != set(uidls):
        raise Pop3ProtocolError(f"UIDL and LIST disagree: {len(uidls)} vs {len(sizes)} messages")
    return [Listed(n, uidls[n], sizes[n]) for n in sorted(uidls)]


def _lines(body: bytes) -> list[bytes]:
    return body.split(b"\r\n")[:-1] if body else []


def _tls_description(writer: asyncio.StreamWriter) -> str | None:
    obj = writer.get_extra_info("ssl_object")
    if obj is None:
        return None
    cipher = obj.cipher()
    return f"{obj.version()} {cipher[0]}" if cipher else "TLS"


@dataclass
class _Pending:
    """A command sent whose reply has not been read yet."""

    what: str
    multiline: bool
    cap: int | None
    future: asyncio.Future[tuple[str, bytes | None]]


def _retrieved(fut: asyncio.Future[tuple[str, bytes | None]]) -> None:
    if not fut.cancelled():
        fut.exception()  # a reply nobody waits for any more is not an error to log


class Pop3Session:
    """One logged-in POP3 session.

    A reader task reads the replies in the order the commands went out and
    settles one future per command. Where the server announces PIPELINING
    (RFC 2449) several commands may be out at once (``send_retr``), so that the
    server prepares the next mail while we handle the last one; else one at a time.
    Any task may send (the collector sends DELEs from its publish tasks).
    """

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, account: Pop3Account) -> None:
        self._reader = reader
        self._writer = writer
        self._buf = bytearray()
        self._timeout = account.timeout_s
        self._broken: str | None = None
        self._failure: Pop3Error | None = None
        self._pending: deque[_Pending] = deque()
        self._outbox: list[bytes] = []  # commands of this event-loop turn, not written yet
        self._slots = asyncio.Semaphore(1)  # commands out at once; more with PIPELINING
        self._wake = asyncio.Event()
        self._read_task: asyncio.Task[None] | None = None
        self.account = account
        self.capabilities: set[str] = set()

    # -- opening -------------------------------------------------------------

    @classmethod
    async def open(cls, account: Pop3Account) -> Pop3Session:
        """Connect, set up TLS as the account says, log in. Raises Pop3Error."""
        ctx = tls_context(account) if account.tls != "none" else None
        host, port = account.host, account.effective_port
        try:
            async with asyncio.timeout(account.timeout_s):
                reader, writer = await asyncio.open_connection(
                    host, port, ssl=ctx if account.tls == "implicit" else None,
                    server_hostname=host if account.tls == "implicit" else None)
        except TimeoutError as exc:
            raise Pop3ConnectError(f"{account.address}: no connection within {account.timeout_s:g}s") from exc
        except ssl.SSLCertVerificationError as exc:
            raise Pop3TlsError(f"{account.address}: certificate not trusted: {exc.verify_message}"
                               " (check the server name, or set ca_file)") from exc
        except ssl.SSLError as exc:
            raise Pop3TlsError(f"{account.address}: TLS handshake failed: {exc.reason or exc}") from exc
        except OSError as exc:
            raise Pop3ConnectError(f"{account.address}: cannot connect: {exc.strerror or exc}") from exc
        session = cls(reader, writer, account)
        try:
            await session._start(ctx)
        except BaseException:
            await session.close()
            raise
        return session

    async def _start(self, ctx: ssl.SSLContext | None) -> None:
        await self._command(None, "greeting")
        if self.account.tls.startswith("starttls"):
            self.capabilities = await self.capa()
            if "STLS" in self.capabilities:
                await self._starttls(ctx)
            elif self.account.tls == "starttls-required":
                raise Pop3TlsError(f"{self.account.address} offers no STLS, and the account requires it"
                                   " (tls = starttls-required)")
        await self._login()
        self.capabilities = await self.capa()  # they may change after TLS and login (RFC 2449)
        if "PIPELINING" in self.capabilities:
            self._slots = asyncio.Semaphore(PIPELINE_DEPTH)  # nothing is out now: safe to swap

    async def capa(self) -> set[str]:
        try:
            _, body = await self._command("CAPA", "CAPA", multiline=True)
        except Pop3CommandError:
            return set()  # a server without CAPA (RFC 1939 only) has no STLS either
        return {line.split(b" ", 1)[0].decode("ascii", "replace").upper() for line in _lines(body or b"")}

    async def _starttls(self, ctx: ssl.SSLContext | None) -> None:
        assert ctx is not None
        await self._command("STLS", "STLS")
        if self._buf:  # bytes the server sent after +OK would be read as if they came over TLS
            raise Pop3TlsError(f"{self.account.address} sent data after its STLS reply: refusing (injection)")
        try:
            async with asyncio.timeout(self._timeout):
                await self._writer.start_tls(ctx, server_hostname=self.account.host)
        except ssl.SSLCertVerificationError as exc:
            self._broken = "TLS failed"
            raise Pop3TlsError(f"{self.account.address}: certificate not trusted after STLS: {exc.verify_message}"
                               " (check the server name, or set ca_file)") from exc
        except (ssl.SSLError, OSError, TimeoutError) as exc:
            self._broken = "TLS failed"
            raise Pop3TlsError(f"{self.account.address}: TLS handshake after STLS failed: {exc}") from exc

    async def _login(self) -> None:
        password = self.account.password.get_secret_value() if self.account.password else ""
        try:
            await self._command(f"USER {self.account.user}", "USER")
            await self._command(f"PASS {password}", "PASS")
        except Pop3CommandError as exc:
            raise Pop3AuthError(f"login as {self.account.user!r} at {self.account.address} refused: {exc.args[0]}"
                                " (check user and password)") from exc

    # -- transaction ---------------------------------------------------------

    @property
    def tls(self) -> str | None:
        return _tls_description(self._writer)

    @property
    def pipelining(self) -> bool:
        return "PIPELINING" in self.capabilities

    async def listing(self) -> list[Listed]:
        if self.capabilities and "UIDL" not in self.capabilities:
            raise Pop3ProtocolError(f"{self.account.address} does not support UIDL: cannot collect without duplicates")
        _, uidl_body = await self._command("UIDL", "UIDL", multiline=True)
        _, list_body = await self._command("LIST", "LIST", multiline=True)
        return parse_listing(uidl_body or b"", list_body or b"")

    async def send_retr(self, number: int, cap: int) -> asyncio.Future[tuple[str, bytes | None]]:
        """Send RETR now; the future settles when its reply is read (``message()``
        turns the result into the mail). Reading stops, and the session closes,
        when the reply passes ``cap`` bytes."""
        return await self._send(f"RETR {number}", f"RETR {number}", multiline=True, cap=cap)

    @staticmethod
    def message(result: tuple[str, bytes | None]) -> bytes:
        """The mail of a RETR result: CRLF lines, unstuffed."""
        return unstuff(result[1] or b"")

    async def retr(self, number: int, cap: int) -> bytes:
        return self.message(await (await self.send_retr(number, cap)))

    async def retrieve(self, todo: Iterable[Listed], cap: int, go_on: Callable[[], bool] = lambda: True,
                       ) -> AsyncGenerator[tuple[Listed, bytes | Pop3CommandError], None]:
        """RETR each message in turn, yielding (message, mail) while ``go_on()``, or
        (message, error) where the server answered -ERR (the session goes on).
        With PIPELINING a few RETRs are out at once (bounded in count and in LIST
        bytes), so that the server prepares the next mails while we handle this one.
        What ends the session is raised; a Pop3TooLarge names its message in ``.listed``."""
        depth = PIPELINE_DEPTH if self.pipelining else 1
        ahead: deque[tuple[Listed, asyncio.Future[tuple[str, bytes | None]]]] = deque()
        queue = iter(todo)
        while True:
            if len(ahead) <= depth // 2:  # top up when half the window is used: the RETRs share a write
                while len(ahead) < depth and go_on() and (not ahead or sum(a[0].size for a in ahead) < PIPELINE_BYTES):
                    nxt = next(queue, None)
                    if nxt is None:
                        break
                    try:
                        ahead.append((nxt, await self.send_retr(nxt.number, cap)))
                    except Pop3Error:
                        if not ahead:
                            raise
                        break  # the reply before holds the reason, raised below
            if not ahead:
                return
            m, reply = ahead.popleft()
            try:
                result = await reply
            except Pop3CommandError as exc:
                yield m, exc
                continue
            except Pop3TooLarge as exc:
                exc.listed = m
                raise
            yield m, self.message(result)

    async def dele(self, number: int) -> None:
        await self._command(f"DELE {number}", f"DELE {number}")

    async def quit(self) -> None:
        """QUIT: the server now removes the messages marked with DELE."""
        try:
            await self._command("QUIT", "QUIT")
        except Pop3CommandError as exc:
            raise Pop3Error(f"{self.account.address} did not complete QUIT, deletions may not have happened:"
                            f" {exc.args[0]}") from exc
        finally:
            await self.close()

    async def close(self) -> None:
        """Drop the connection (without QUIT nothing is deleted on the server)."""
        self._fail(Pop3Dropped(f"{self.account.address}: the session was closed"), "closed")
        task, self._read_task = self._read_task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        writer = self._writer
        if writer.is_closing():
            return
        writer.close()
        try:
            async with asyncio.timeout(2.0):
                await writer.wait_closed()
        except (OSError, TimeoutError, ssl.SSLError):
            writer.transport.abort()

    async def __aenter__(self) -> Pop3Session:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- wire ----------------------------------------------------------------

    async def _command(self, line: str | None, what: str, *, multiline: bool = False,
                       cap: int | None = None) -> tuple[str, bytes | None]:
        return await (await self._send(line, what, multiline=multiline, cap=cap))

    async def _send(self, line: str | None, what: str, *, multiline: bool = False,
                    cap: int | None = None) -> asyncio.Future[tuple[str, bytes | None]]:
        """Send ``line`` (None: expect the greeting); returns the future of
        (status text, body) that the reader task settles, or a Pop3Error."""
        slots = self._slots
        await slots.acquire()
        if self._broken:
            slots.release()
            raise Pop3Dropped(f"{self.account.address}: {what} not sent, the session is {self._broken}"
                              + (f": {self._failure}" if self._failure else ""))
        future: asyncio.Future[tuple[str, bytes | None]] = asyncio.get_running_loop().create_future()
        future.add_done_callback(_retrieved)
        self._pending.append(_Pending(what, multiline, cap, future))
        if self._read_task is None:
            self._read_task = asyncio.create_task(self._read_loop(), name=f"pop3-read:{self.account.name}")
        self._wake.set()
        if line is not None:
            self._outbox.append(line.encode("utf-8") + b"\r\n")
            if len(self._outbox) == 1:
                asyncio.get_running_loop().call_soon(self._flush)
        return future

    def _flush(self) -> None:
        """Write the commands queued in this turn of the event loop in one go: with
        PIPELINING, RETRs and the DELEs of many publish tasks share a TLS record and
        a system call. (A write that fails surfaces in the reader as a lost connection;
        a server that stops reading shows as no answer within the timeout.)"""
        data = b"".join(self._outbox)
        self._outbox.clear()
        if data and not self._writer.is_closing():
            self._writer.write(data)

    async def _read_loop(self) -> None:
        """Read the replies in order, settling each command's future."""
        p: _Pending | None = None
        try:
            while True:
                while not self._pending:
                    self._wake.clear()
                    await self._wake.wait()
                p = self._pending[0]
                try:
                    status = await self._status(p.what)
                    body = await self._multiline(p.what, p.cap) if p.multiline else None
                except Pop3CommandError as exc:  # a whole -ERR line: the session goes on
                    self._settle(exc)
                else:
                    self._settle((status, body))
        except Pop3Error as exc:
            self._fail(exc, "unusable after an error")
        except TimeoutError:
            what = p.what if p else "?"
            self._fail(Pop3Dropped(f"{self.account.address}: no answer to {what} within {self._timeout:g}s"),
                       "timed out")
        except (OSError, ssl.SSLError) as exc:
            what = p.what if p else "?"
            self._fail(Pop3Dropped(f"{self.account.address}: connection lost during {what}: {exc}"), "dropped")

    def _settle(self, result: tuple[str, bytes | None] | Pop3Error) -> None:
        p = self._pending.popleft()
        self._slots.release()
        if p.future.done():
            return
        if isinstance(result, Pop3Error):
            p.future.set_exception(result)
        else:
            p.future.set_result(result)

    def _fail(self, exc: Pop3Error, why: str) -> None:
        """The session is unusable: every command still out gets ``exc``."""
        if self._broken is None:
            self._broken, self._failure = why, exc
        while self._pending:
            p = self._pending.popleft()
            self._slots.release()  # wakes a sender waiting for a slot; it sees _broken
            if not p.future.done():
                p.future.set_exception(exc)

    async def _fill(self, what: str) -> None:
        async with asyncio.timeout(self._timeout):
            chunk = await self._reader.read(_READ_CHUNK)
        if not chunk:
            raise Pop3Dropped(f"{self.account.address}: server closed the connection during {what}"
                              f" ({len(self._buf)} bytes of the reply received)")
        self._buf += chunk

    async def _status(self, what: str) -> str:
        buf = self._buf
        while (end := buf.find(b"\n")) < 0:
            if len(buf) > _STATUS_LINE_MAX:
                raise Pop3ProtocolError(f"{self.account.address}: reply to {what} has no line end"
                                        f" after {len(buf)} bytes")
            await self._fill(what)
        line = bytes(buf[:end]).rstrip(b"\r")
        del buf[:end + 1]
        if line.startswith(b"+OK"):
            return line[3:].strip().decode("utf-8", "replace")
        if line.startswith(b"-ERR"):
            raise Pop3CommandError(f"{what}: {line.decode('utf-8', 'replace')}")
        raise Pop3ProtocolError(f"{self.account.address}: malformed reply to {what}: {line[:100]!r}"
                                " (expected +OK or -ERR)")

    async def _multiline(self, what: str, cap: int | None) -> bytes:
        """Read up to the terminating '.' line; returns the lines, still stuffed."""
        buf = self._buf
        # The wire form is a little longer than the message: stuffed dots, the terminator.
        limit = None if cap is None else cap + cap // 50 + 1024
        scanned = 0
        while True:
            if buf[:3] == b".\r\n":
                del buf[:3]
                return b""
            if len(buf) >= 3 or not b".\r\n".startswith(bytes(buf)):
                idx = buf.find(_TERMINATOR, scanned)
                if idx >= 0:
                    body = bytes(buf[:idx + 2])
                    del buf[:idx + 5]
                    return body
                scanned = max(0, len(buf) - len(_TERMINATOR) + 1)
            if limit is not None and len(buf) > limit:
                raise Pop3TooLarge(f"{self.account.address}: {what} passed {limit} bytes (over the size"
                                   f" limit of {cap}); the session was closed")
            await self._fill(what)
