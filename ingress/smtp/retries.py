"""smtp-server: a sender's retry of a mail already accepted is answered 250 without storing it twice.

When a client loses the connection between the broker's ack and our ``250`` (its
timeout, a dropped link), it sends the mail again and the gateway would deliver two
copies. A retry is recognised by the same client address, envelope, Message-ID and
body within ``window_s``: it gets ``250`` with the first copy's mail id and is not
published. A transaction that arrives while the first copy still waits for the
broker waits for its outcome: stored → 250 with its id; failed → published itself.

What it can't see: a retry to another node or another listener process (the memory
is per process), and mail without a Message-ID (two such mails may be meant as two).
A real second sending has its own Message-ID, so it is never taken for a retry.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Sequence
from hashlib import blake2b


def retry_key(client: str, mail_from: str, rcpt_to: Sequence[str], raw: bytes) -> bytes | None:
    """What makes two transactions the same mail; None when the mail has no Message-ID."""
    message_id = _message_id(raw)
    if message_id is None:
        return None
    h = blake2b(digest_size=20)
    for part in (client, mail_from.lower(), "\0".join(sorted(r.lower() for r in rcpt_to)), message_id):
        h.update(part.encode("utf-8", "surrogateescape") + b"\x00")
    h.update(raw)
    return h.digest()


def _message_id(raw: bytes) -> str | None:
    head = raw.split(b"\r\n\r\n", 1)[0].split(b"\n\n", 1)[0]
    for line in head.splitlines():
        if line[:11].lower() == b"message-id:":
            value = line[11:].strip()
            return value.decode("latin-1") if value else None
    return None


class RecentAccepts:
    """Keys of mails accepted in the last ``window_s`` (at most ``limit``), and those being published."""

    def __init__(self, window_s: float, limit: int = 100_000) -> None:
        self.window_s, self.limit = window_s, limit
        self._accepted: OrderedDict[bytes, tuple[str, float]] = OrderedDict()
        self._pending: dict[bytes, asyncio.Future[str | None]] = {}

    def _drop_old(self, now: float) -> None:
        while self._accepted:
            key, (_, at) = next(iter(self._accepted.items()))
            if now - at <= self.window_s and len(self._accepted) <= self.limit:
                break
            self._accepted.popitem(last=False)

    async def claim(self, key: bytes) -> str | None:
        """The mail id this key was stored under (waiting for a copy being published), or None:
        then the caller publishes and must report the outcome with ``published``."""
        while True:
            self._drop_old(time.monotonic())
            hit = self._accepted.get(key)
            if hit is not None:
                return hit[0]
            pending = self._pending.get(key)
            if pending is None:
                self._pending[key] = asyncio.get_running_loop().create_future()
                return None
            if (mail_id := await asyncio.shield(pending)) is not None:
                return mail_id
            # that copy was not stored: look again (another waiter may be publishing it now)

    def published(self, key: bytes, mail_id: str | None) -> None:
        """The outcome of a ``claim`` that returned None: the stored mail's id, or None when it was not stored."""
        future = self._pending.pop(key, None)
        if future is not None and not future.done():
            future.set_result(mail_id)
        if mail_id is not None:
            self._accepted[key] = (mail_id, time.monotonic())
