"""Mail ids: ULIDs (26 chars, Crockford base32), sortable by the time they were made."""

from __future__ import annotations

import os
import time

_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def new_mail_id(now_ms: int | None = None) -> str:
    ms = int(time.time() * 1000) if now_ms is None else now_ms
    value = (ms << 80) | int.from_bytes(os.urandom(10), "big")
    chars = []
    for _ in range(26):
        chars.append(_ALPHABET[value & 31])
        value >>= 5
    return "".join(reversed(chars))


def mail_id_time_ms(mail_id: str) -> int:
    """The millisecond timestamp a mail id was made at."""
    value = 0
    for ch in mail_id.upper():
        value = value * 32 + _ALPHABET.index(ch)
    return value >> 80


def stable_mail_id(ms: int, entropy: bytes) -> str:
    """A mail id made from a time and given bytes instead of random ones, so that the same
    input always gets the same id (an import repeated after a crash is stored only once)."""
    value = (max(ms, 0) & ((1 << 48) - 1)) << 80 | int.from_bytes(entropy[:10].rjust(10, b"\0"), "big")
    return "".join(_ALPHABET[(value >> (5 * i)) & 31] for i in reversed(range(26)))
