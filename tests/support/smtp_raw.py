"""A raw SMTP client for the attack and bad-input tests: exact bytes out, replies in.

    with RawSmtp(port) as s:
        s.expect(220)
        s.send(b"EHLO x.test\\r\\n"); s.expect(250)
        s.send(b"DATA\\r\\n..."); code, text = s.reply()
        assert s.closed()   # the server hung up
"""

from __future__ import annotations

import socket
import ssl
import time
from typing import Self


class RawSmtp:
    def __init__(self, port: int, host: str = "127.0.0.1", timeout: float = 10.0) -> None:
        self.sock: socket.socket | ssl.SSLSocket = socket.create_connection((host, port), timeout=timeout)
        self.buf = b""

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _fill(self) -> bool:
        try:
            chunk = self.sock.recv(65536)
        except ConnectionResetError:
            return False
        if not chunk:
            return False
        self.buf += chunk
        return True

    def reply(self) -> tuple[int, str]:
        """One (possibly multi-line) reply: (code, text of all lines). (0, "") when closed."""
        lines: list[bytes] = []
        while True:
            while b"\r\n" not in self.buf:
                if not self._fill():
                    return (int(lines[-1][:3]), "\n".join(x[4:].decode() for x in lines)) if lines else (0, "")
            line, self.buf = self.buf.split(b"\r\n", 1)
            lines.append(line)
            if line[3:4] != b"-":
                return int(line[:3]), "\n".join(x[4:].decode(errors="replace") for x in lines)

    def expect(self, code: int) -> str:
        got, text = self.reply()
        assert got == code, f"expected {code}, got {got} {text!r}"
        return text

    def command(self, line: str, code: int) -> str:
        self.send(line.encode() + b"\r\n")
        return self.expect(code)

    def closed(self, wait: float = 5.0) -> bool:
        """True when the server closed the connection within ``wait`` seconds (replies are dropped)."""
        deadline = time.monotonic() + wait
        self.sock.settimeout(0.2)
        try:
            while time.monotonic() < deadline:
                try:
                    if not self._fill():
                        return True
                except TimeoutError:
                    continue
                except (ConnectionResetError, BrokenPipeError, ssl.SSLError):
                    return True
            return False
        finally:
            self.sock.settimeout(10.0)

    def silent(self, wait: float = 0.5) -> bool:
        """True when nothing at all arrives within ``wait`` seconds."""
        self.sock.settimeout(wait)
        try:
            return not self.buf and not self._fill_once()
        finally:
            self.sock.settimeout(10.0)

    def _fill_once(self) -> bool:
        try:
            return self._fill()
        except TimeoutError:
            return False

    def starttls(self, ctx: ssl.SSLContext | None = None) -> None:
        if ctx is None:
            ctx = ssl.create_default_context()
            ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
        self.sock = ctx.wrap_socket(self.sock, server_hostname="mailgate.localdomain")

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
