"""Mail ids: ULIDs (26 chars, Crockford base32), sortable by the time they were made."""

from __future__ import annotations

import base64
import os
import threading
import time

_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
# base64's RFC 4648 base32 digits, read as Crockford's: the same 5-bit groups, encoded in C
_TO_CROCKFORD = bytes.maketrans(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", _ALPHABET.encode())
_ENTROPY_CHUNK = 4096  # random octets fetched at once: one getrandom(2) per ~400 ids, not one per id


class _Entropy(threading.local):
    def __init__(self) -> None:
        self.pool, self.at = b"", 0


_entropy = _Entropy()
os.register_at_fork(after_in_child=lambda: _Entropy.__init__(_entropy))  # a forked child never repeats its parent's


def _random10() -> bytes:
    e = _entropy
    if e.at + 10 > len(e.pool):
        e.pool, e.at = os.urandom(_ENTROPY_CHUNK), 0
    e.at += 10
    return e.pool[e.at - 10 : e.at]


def new_mail_id(now_ms: int | None = None) -> str:
    ms = int(time.time() * 1000) if now_ms is None else now_ms
    return _encode((ms & ((1 << 48) - 1)) << 80 | int.from_bytes(_random10(), "big"))


def _encode(value: int) -> str:
    """26 Crockford base32 digits of a 128-bit value (two zero bits in front, as in ULIDs)."""
    return base64.b32encode((value << 6).to_bytes(17, "big"))[:26].translate(_TO_CROCKFORD).decode("ascii")


def mail_id_time_ms(mail_id: str) -> int:
    """The millisecond timestamp a mail id was made at."""
    value = 0
    for ch in mail_id.upper():
        value = value * 32 + _ALPHABET.index(ch)
    return value >> 80


def stable_mail_id(ms: int, entropy: bytes) -> str:
    """A mail id made from a time and given bytes instead of random ones, so that the same
    input always gets the same id (an import repeated after a crash is stored only once)."""
    return _encode((max(ms, 0) & ((1 << 48) - 1)) << 80 | int.from_bytes(entropy[:10].rjust(10, b"\0"), "big"))
