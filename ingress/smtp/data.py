"""smtp-server: the message data of one DATA command, collected from the raw bytes.

aiosmtpd reads DATA line by line; this reads it in whole chunks, finds the end
("<CR><LF>.<CR><LF>", the only ending there is: ``lines.LineGuard`` has already
refused every bare CR and LF) with one search per chunk, undoes dot-stuffing once,
and stops keeping bytes past the size limit (it still reads to the end, then 552).
"""

from __future__ import annotations

END = b"\r\n.\r\n"


class DataCollector:
    """Fed raw chunks after the 354; ``feed`` returns the bytes that follow the end
    of the data (possibly b"") once the end is seen, else None."""

    __slots__ = ("_buf", "_scanned", "_started", "content", "limit", "overlong", "too_big")

    def __init__(self, limit: int | None) -> None:
        self.limit = limit
        self._buf = bytearray()
        self._scanned = 0
        self._started = False
        self.too_big = False
        self.overlong = False  # a line over the limit (set by the engine from lines.LineGuard)
        self.content = b""

    def feed(self, data: bytes) -> bytes | None:
        buf = self._buf
        buf += data
        if not self._started:
            if len(buf) < 3:
                return None
            self._started = True
            if buf.startswith(b".\r\n"):  # an empty message
                return bytes(buf[3:])
        pos = buf.find(END, max(0, self._scanned - 4))
        if pos < 0:
            self._scanned = len(buf)
            if self.limit is not None and len(buf) > self.limit + 2:
                self.too_big = True
                del buf[:-4]  # keep what may begin the end marker
                self._scanned = len(buf)
            return None
        rest = bytes(buf[pos + 5:])
        if self.limit is not None and pos + 2 > self.limit:
            self.too_big = True
        if not self.too_big:
            content = bytes(buf[:pos + 2]).replace(b"\r\n.", b"\r\n")
            self.content = content[1:] if content.startswith(b".") else content
        buf.clear()
        return rest
