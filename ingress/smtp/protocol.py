"""smtp-server: the pieces of the protocol engine (``engine.SmtpEngine``) that are
plain data: per-connection and per-transaction state (aiosmtpd's Session and
Envelope, carrying our filter state), connection limits, enhanced status codes."""

from __future__ import annotations

import asyncio
import re
from typing import Any

from aiosmtpd.smtp import Envelope, Session

from ingress.smtp.filters import Client, Transaction

HAS_STATUS = re.compile(r"^\d{3}[ -][245]\.\d{1,3}\.\d{1,3}( |$)")
STATUS_FOR = {"221": "2.0.0", "250": "2.0.0", "252": "2.1.5", "421": "4.7.0", "451": "4.3.0", "452": "4.5.3",
              "454": "4.7.0", "500": "5.5.2", "501": "5.5.4", "502": "5.5.1", "503": "5.5.1", "504": "5.5.4",
              "530": "5.7.0", "535": "5.7.8", "550": "5.0.0", "552": "5.3.4", "553": "5.1.3", "554": "5.0.0",
              "555": "5.5.4"}
NO_STATUS = ("220", "334", "354")  # greeting, AUTH challenges, DATA go-ahead


def with_status(reply: str) -> str:
    """The reply with an enhanced status code (RFC 2034) when it lacks one."""
    if reply[5:6] == "." and reply[4:5].isdigit():
        return reply  # the usual case: ours carry one
    code = reply[:3]
    if code in NO_STATUS or HAS_STATUS.match(reply) or not code.isdigit():
        return reply
    status = STATUS_FOR.get(code, f"{code[0]}.0.0")
    return f"{reply[:4]}{status} {reply[4:]}" if len(reply) > 4 else f"{code} {status}"


class GatewaySession(Session):
    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(loop)
        self.client = Client(ip="")


class GatewayEnvelope(Envelope):
    def __init__(self) -> None:
        super().__init__()
        self.tx = Transaction()


class ConnectionTracker:
    """Concurrent connections of this listener, in total and per client IP."""

    def __init__(self, total: int, per_ip: int) -> None:
        self.total, self.per_ip = total, per_ip
        self.count = 0
        self.by_ip: dict[str, int] = {}
        self.open: set[Any] = set()  # the engines of the open sessions

    def shutdown(self, hostname: str) -> None:
        """Close every open session (the server stops)."""
        for proto in list(self.open):
            proto.abort(f"421 4.3.2 {hostname} Service shutting down; closing connection")

    def acquire(self, ip: str) -> str | None:
        if self.count >= self.total:
            return f"Too many connections ({self.total}); try again later"
        if self.by_ip.get(ip, 0) >= self.per_ip:
            return f"Too many connections from [{ip}] ({self.per_ip}); try again later"
        self.count += 1
        self.by_ip[ip] = self.by_ip.get(ip, 0) + 1
        return None

    def release(self, ip: str) -> None:
        self.count -= 1
        left = self.by_ip.get(ip, 1) - 1
        if left > 0:
            self.by_ip[ip] = left
        else:
            self.by_ip.pop(ip, None)
