"""message-validation: an asyncio client of ClamAV's clamd (PING, VERSION, INSTREAM).

    client = ClamdClient("unix:/run/clamav/clamd.ctl", scan_timeout_s=60)
    result = await client.instream(data)     # ScanResult(found=("Eicar-Test-Signature",)) or clean
    # raises ClamdUnavailable, ClamdTimeout, ClamdTooLarge, ClamdScanError: never a clean result

Written here rather than taken from PyPI: ``clamd``/``pyclamd`` are synchronous and
unreleased since 2014/2017; ``aioclamd`` (the maintained asyncio one) speaks TCP only
(Debian's clamd listens on a unix socket), sends 1 KiB chunks through a thread hop
each, and folds "could not connect" and "clamd said ERROR" into one exception. The
protocol is small (clamd(8)): a ``z``-prefixed NUL-terminated command, then for
INSTREAM chunks of ``<uint32 big-endian length><bytes>`` ended by a zero length, and
one NUL-terminated reply line. One connection per command: clamd serves each on its
own thread, and a unix-socket connect costs microseconds.

clamd answers early and hangs up when a stream passes its StreamMaxLength; the client
looks for that answer between chunks, and still reads it after a broken pipe on a unix
socket. Over TCP the hang-up can reset the connection first: then the error is
ClamdUnavailable, not ClamdTooLarge (keep ``max_stream_bytes`` <= StreamMaxLength).
"""

from __future__ import annotations

import asyncio
import socket
import struct
from dataclasses import dataclass

from streams.validation.settings import ClamdSettings

MAX_REPLY = 64 * 1024
_ZERO = struct.pack("!L", 0)


class ClamdError(Exception):
    """clamd did not give a verdict: the data must not be taken as clean."""


class ClamdUnavailable(ClamdError):
    """No connection to clamd, or it broke, or clamd answered nonsense."""


class ClamdTimeout(ClamdError):
    """clamd took longer than the scan timeout."""


class ClamdTooLarge(ClamdError):
    """The data exceed the client's size cap or clamd's StreamMaxLength."""


class ClamdScanError(ClamdError):
    """clamd answered ERROR for this stream (e.g. out of memory, a limit of its own)."""


@dataclass(frozen=True)
class ScanResult:
    found: tuple[str, ...] = ()  # signature names; empty: clamd answered OK

    @property
    def clean(self) -> bool:
        return not self.found


@dataclass(frozen=True)
class ClamdAddress:
    unix_path: str | None = None
    host: str | None = None
    port: int | None = None

    @classmethod
    def parse(cls, address: str) -> ClamdAddress:
        """``unix:/path``, ``/path``, ``tcp:host:port``, ``host:port``, ``[v6]:port``."""
        address = address.strip()
        if address.startswith("unix:"):
            return cls(unix_path=address[5:])
        if address.startswith("/"):
            return cls(unix_path=address)
        address = address.removeprefix("tcp:")
        if address.startswith("["):
            host, _, rest = address[1:].partition("]")
            port = rest.lstrip(":")
        else:
            host, _, port = address.rpartition(":")
        if not host or not port.isdigit():
            raise ValueError(f"clamd address {address!r}: expected unix:/path or tcp:host:port")
        return cls(host=host, port=int(port))

    def __str__(self) -> str:
        return f"unix:{self.unix_path}" if self.unix_path else f"tcp:{self.host}:{self.port}"


class ClamdClient:
    def __init__(self, address: str, *, connect_timeout_s: float = 5.0, scan_timeout_s: float = 60.0,
                 max_stream_bytes: int = 25 * 1024 * 1024, chunk_bytes: int = 64 * 1024,
                 concurrency: int = 4) -> None:
        self.address = ClamdAddress.parse(address)
        self.connect_timeout_s = connect_timeout_s
        self.scan_timeout_s = scan_timeout_s
        self.max_stream_bytes = max_stream_bytes
        self.chunk_bytes = chunk_bytes
        self.concurrency = concurrency

    @classmethod
    def from_settings(cls, settings: ClamdSettings) -> ClamdClient:
        return cls(settings.address, connect_timeout_s=settings.connect_timeout_s,
                   scan_timeout_s=settings.scan_timeout_s, max_stream_bytes=settings.max_stream_bytes,
                   chunk_bytes=settings.chunk_bytes, concurrency=settings.concurrency)

    # -- commands ------------------------------------------------------------

    async def ping(self) -> None:
        """Returns when clamd answers PONG; raises ClamdError otherwise."""
        reply = await self._command(b"PING", self.connect_timeout_s)
        if reply != "PONG":
            raise ClamdUnavailable(f"clamd at {self.address} answered {reply[:200]!r} to PING")

    async def version(self) -> str:
        """``ClamAV <engine>/<database version>/<database date>`` (just ``ClamAV 1.4.6``
        with the tests' own database, which has no version)."""
        return await self._command(b"VERSION", self.connect_timeout_s)

    async def instream(self, data: bytes | bytearray | memoryview) -> ScanResult:
        """clamd's verdict on ``data``; raises a ClamdError when there is none."""
        if len(data) > self.max_stream_bytes:
            raise ClamdTooLarge(f"{len(data)} bytes, over the scan cap of {self.max_stream_bytes}")
        reply = await self._command(b"INSTREAM", self.scan_timeout_s, memoryview(data).cast("B"))
        return parse_reply(reply, str(self.address))

    # -- transport -----------------------------------------------------------
    # Plain non-blocking sockets rather than asyncio streams: when clamd hangs up in the
    # middle of a stream (past its StreamMaxLength), its answer is still in our receive
    # queue, and a stream transport would have closed the socket on the send error.

    async def _command(self, command: bytes, timeout: float, stream: memoryview | None = None) -> str:
        try:
            async with asyncio.timeout(timeout):
                sock = await self._connect()
                try:
                    return await self._exchange(sock, command, stream)
                finally:
                    sock.close()
        except TimeoutError as exc:
            raise ClamdTimeout(f"clamd at {self.address} gave no answer to {command.decode()} "
                               f"within {timeout:g}s") from exc

    async def _connect(self) -> socket.socket:
        loop = asyncio.get_running_loop()
        addr = self.address
        sock: socket.socket | None = None
        try:
            async with asyncio.timeout(self.connect_timeout_s):
                if addr.unix_path:
                    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                    sock.setblocking(False)
                    await loop.sock_connect(sock, addr.unix_path)
                    return sock
                family, kind, proto, _, sockaddr = (await loop.getaddrinfo(
                    addr.host, addr.port, type=socket.SOCK_STREAM))[0]
                sock = socket.socket(family, kind, proto)
                sock.setblocking(False)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                await loop.sock_connect(sock, sockaddr)
                return sock
        except TimeoutError as exc:
            if sock is not None:
                sock.close()
            raise ClamdUnavailable(f"cannot connect to clamd at {addr} within {self.connect_timeout_s:g}s") \
                from exc
        except OSError as exc:
            if sock is not None:
                sock.close()
            raise ClamdUnavailable(f"cannot connect to clamd at {addr}: {exc.strerror or exc}") from exc

    async def _exchange(self, sock: socket.socket, command: bytes, stream: memoryview | None) -> str:
        loop = asyncio.get_running_loop()
        early: bytes | None = None
        sent_error: OSError | None = None
        try:
            await loop.sock_sendall(sock, b"z" + command + b"\0" + (b"" if stream is None else
                                                                     self._chunk(stream, 0)))
            # Then one send per chunk, <length><bytes>, the zero length joined to the last.
            for start in range(self.chunk_bytes, len(stream) if stream is not None else 0, self.chunk_bytes):
                early = _peek(sock)
                if early is not None:  # clamd answered before the end: a limit of its own, or an error
                    break
                assert stream is not None
                await loop.sock_sendall(sock, self._chunk(stream, start))
        except OSError as exc:
            sent_error = exc
        reply = await _recv_reply(loop, sock, early or b"")
        if "size limit exceeded" in reply:
            raise ClamdTooLarge(f"clamd at {self.address}: {reply}")
        if not reply:
            why = f" while sending ({sent_error})" if sent_error else " without an answer"
            raise ClamdUnavailable(f"clamd at {self.address} closed the connection{why}")
        return reply

    def _chunk(self, stream: memoryview, start: int) -> bytes:
        chunk = stream[start:start + self.chunk_bytes]
        last = start + self.chunk_bytes >= len(stream)
        return b"".join((struct.pack("!L", len(chunk)) if chunk else b"", chunk, _ZERO if last else b""))


def _peek(sock: socket.socket) -> bytes | None:
    """What clamd has sent so far, without waiting: None when nothing, b"" when it hung up."""
    try:
        return sock.recv(MAX_REPLY)
    except (BlockingIOError, InterruptedError):
        return None
    except OSError:
        return b""


async def _recv_reply(loop: asyncio.AbstractEventLoop, sock: socket.socket, got: bytes = b"") -> str:
    """clamd's NUL-terminated reply (or what there is of it when clamd closes early)."""
    buf = bytearray(got)
    while b"\0" not in buf:
        try:
            data = await loop.sock_recv(sock, 4096)
        except OSError:  # reset: whatever had arrived is all there is
            break
        if not data:
            break
        buf += data
        if len(buf) > MAX_REPLY:
            raise ClamdUnavailable(f"clamd reply longer than {MAX_REPLY} bytes")
    return bytes(buf).split(b"\0", 1)[0].decode("utf-8", "replace").strip()


def parse_reply(reply: str, where: str = "clamd") -> ScanResult:
    """An INSTREAM reply (``stream: OK``, ``stream: NAME FOUND``, ``... ERROR``) as a
    ScanResult, or the ClamdError it means. Several lines with AllMatchScan."""
    found: list[str] = []
    ok = False
    for line in filter(None, (x.strip() for x in reply.replace("\0", "\n").splitlines())):
        if line.endswith(" ERROR") or line == "ERROR":
            if "size limit exceeded" in line:
                raise ClamdTooLarge(f"{where}: {line}")
            raise ClamdScanError(f"{where}: {line}")
        _, sep, verdict = line.partition(": ")
        if not sep:
            raise ClamdUnavailable(f"{where}: unexpected reply {line[:200]!r}")
        if verdict == "OK":
            ok = True
            continue
        if verdict.endswith(" FOUND"):
            found.append(verdict[: -len(" FOUND")])
            continue
        raise ClamdUnavailable(f"{where}: unexpected reply {line[:200]!r}")
    if not found and not ok:
        raise ClamdUnavailable(f"{where}: no verdict in reply {reply[:200]!r}")
    return ScanResult(tuple(found))
