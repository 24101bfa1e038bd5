"""smtp-server AUTH: the password check (pbkdf2, 200,000 iterations) runs in a thread, so the
event loop every session shares goes on meanwhile, and the session reads nothing more until
it has answered. The engine is driven through a transport that only collects what it writes."""

from __future__ import annotations

import asyncio
import base64
import threading
import time
from typing import Any

from pydantic import SecretStr

from ingress.smtp.settings import SmtpLimitSettings
from ingress.smtp.auth import Authenticator, hash_password
from ingress.smtp.engine import SmtpEngine
from ingress.smtp.protocol import ConnectionTracker


class Collected(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.written = bytearray()
        self.closed = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.written += data

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        info = {"peername": ("192.0.2.7", 40000), "cipher": ("TLS_AES_128_GCM_SHA256", "TLSv1.3", 128)}
        return info.get(name, default)

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


class Quiet:
    """A handler that is told about the session and asks nothing."""

    def __getattr__(self, name: str) -> Any:
        return lambda *args, **kwargs: None


def engine(authenticator: Any) -> tuple[SmtpEngine, Collected]:
    loop = asyncio.get_running_loop()
    smtp = SmtpEngine(Quiet(), limits=SmtpLimitSettings(), tracker=ConnectionTracker(10, 10), loop=loop,
                      hostname="mx.example.com", ident="ESMTP", data_size_limit=None, authenticator=authenticator,
                      implicit_tls=True)
    transport = Collected()
    smtp.connection_made(transport)
    return smtp, transport


def plain(login: str, password: str) -> bytes:
    return base64.b64encode(f"\0{login}\0{password}".encode())


async def until(transport: Collected, text: bytes, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while text not in transport.written:
        assert time.monotonic() < deadline, bytes(transport.written)
        await asyncio.sleep(0.01)


async def test_the_loop_runs_on_while_a_password_is_checked() -> None:
    loop_thread, checked_in, release = threading.get_ident(), [], threading.Event()
    real = Authenticator({"alice": SecretStr(hash_password("s3cret", 1000))})

    def slow(login: str, password: str) -> bool:
        checked_in.append(threading.get_ident())
        release.wait(10)  # as long as the test says: the check of a costly hash
        return real(login, password)

    smtp, transport = engine(slow)
    smtp.data_received(b"EHLO c.test\r\nAUTH PLAIN " + plain("alice", "s3cret") + b"\r\nNOOP\r\n")
    await until(transport, b"AUTH PLAIN LOGIN\r\n")
    ticks = 0
    for _ in range(5):  # the loop is free: other sessions would be served now
        await asyncio.sleep(0.01)
        ticks += 1
    assert ticks == 5 and checked_in and checked_in[0] != loop_thread
    assert b"235" not in transport.written and b"250 2.0.0" not in transport.written  # NOOP waits its turn
    release.set()
    await until(transport, b"250 2.0.0")
    replies = bytes(transport.written).split(b"\r\n")
    assert replies.index(b"235 2.7.0 Authentication successful") < replies.index(b"250 2.0.0 OK")
    assert smtp.session is not None and smtp.session.client.user == "alice"


async def test_a_wrong_password_is_refused_after_the_check() -> None:
    smtp, transport = engine(Authenticator({"alice": SecretStr(hash_password("s3cret", 1000))}))
    smtp.data_received(b"EHLO c.test\r\nAUTH PLAIN " + plain("alice", "wrong") + b"\r\n")
    await until(transport, b"535 5.7.8 Authentication credentials invalid")
    assert smtp.session is not None and not smtp.session.authenticated and smtp.session.client.user is None
