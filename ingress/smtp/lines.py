"""smtp-server: strict line endings, checked on the raw bytes before aiosmtpd sees them.

Every line must end with CRLF; a bare LF, a bare CR or a NUL anywhere (commands or
message data) ends the session with 521. A line longer than the limit is no attack:
the guard only says so (``overlong``), and the engine answers ``500 5.5.2`` and goes
on (RFC 5321 4.5.3.1.4, 4.2.4). This is what makes SMTP smuggling (CVE-2023-51764 class: "<LF>.<CR><LF>",
"<CR>.<CR>" and friends, aiosmtpd's CVE-2024-27305) impossible here: no ending of
DATA other than "<CR><LF>.<CR><LF>" can even reach the protocol engine.
"""

from __future__ import annotations

import re


class LineGuard:
    """Fed every received chunk in order; ``feed`` returns what was wrong, or None."""

    __slots__ = ("_cr", "_line", "_long", "max_line", "overlong")

    def __init__(self, max_line: int) -> None:
        self.max_line = max_line  # octets per line including CRLF
        self._cr = False  # the previous chunk ended with CR
        self._line = 0  # octets of the unfinished line so far (without its LF)
        self._long = re.compile(rb"(?:\A|\n)[^\n]{%d}" % max_line)
        self.overlong = False  # a line longer than max_line was seen (the engine clears it)

    def reset(self) -> None:
        """A new byte stream begins (after the TLS handshake of STARTTLS)."""
        self._cr, self._line = False, 0

    def feed(self, data: bytes) -> str | None:
        if not data:
            return None
        if b"\0" in data:
            return "NUL character received"
        if self._cr:
            if data[0] != 0x0A:
                return "bare <CR> received"
            self._cr, self._line, data = False, 0, data[1:]
        crlf = data.count(b"\r\n")
        if data.count(b"\n") != crlf:
            return "bare <LF> received"
        trailing_cr = data.endswith(b"\r")
        if data.count(b"\r") != crlf + trailing_cr:
            return "bare <CR> received"
        self._cr = trailing_cr
        first = data.find(b"\n")
        if first < 0:
            self._line += len(data)
        else:
            if self._line + first + 1 > self.max_line or (
                    len(data) > self.max_line and self._long.search(data, first)):
                self.overlong = True
            self._line = len(data) - data.rfind(b"\n") - 1
        if self._line >= self.max_line:
            self.overlong = True
        return None
