"""An SMTP sink the test controls (aiosmtpd), standing in for the next hop."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session


@dataclass
class Received:
    mail_from: str
    rcpt_to: list[str]
    data: bytes


@dataclass
class SinkHandler:
    mails: list[Received] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        with self.lock:
            self.mails.append(Received(envelope.mail_from, list(envelope.rcpt_tos), envelope.original_content or b""))
        return "250 2.0.0 Ok: in the test sink"


class Sink:
    def __init__(self, port: int, host: str = "127.0.0.1") -> None:
        self.handler = SinkHandler()
        self.controller = Controller(self.handler, hostname=host, port=port, decode_data=False,
                                     enable_SMTPUTF8=True, data_size_limit=None)
        self.address = f"{host}:{port}"

    @property
    def mails(self) -> list[Received]:
        with self.handler.lock:
            return list(self.handler.mails)

    def wait_for(self, count: int, timeout: float = 60.0) -> list[Received]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if len(self.mails) >= count:
                return self.mails
            time.sleep(0.1)
        raise AssertionError(f"sink got {len(self.mails)} of {count} mails within {timeout:.0f}s")

    def __enter__(self) -> Sink:
        self.controller.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.controller.stop()
