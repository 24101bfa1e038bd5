"""spam-filter: fingerprints that survive small changes.

Text: word 3-shingles of the folded subject and body (digit runs folded to one
"0", URLs replaced by their skeletons), hashed to 64 bits, summarised by a
one-permutation MinHash: 128 bins by the top 7 bits of each shingle hash, the
least hash of each bin kept (32 bits of it), empty bins filled by rotation
(Shrivastava & Li's densification). The share of equal bins estimates the
Jaccard similarity of two shingle sets; bands of 4 bins index the signatures
(LSH) so that a lookup touches only likely matches. One hash per shingle
makes this a few times cheaper than a classic 128-permutation MinHash.

Attachments: TLSH (py-tlsh), a locality-sensitive hash whose distance stays
small when a file changes a little.

Every hash here is stable across processes, machines and Python versions
(BLAKE2b and fixed arithmetic; never Python's salted ``hash``): signatures are
stored in Kafka and compared on every node.
"""

from __future__ import annotations

import re
import sys
from array import array
from collections.abc import Iterable, Sequence
from hashlib import blake2b
from operator import eq

import tlsh  # type: ignore[import-not-found,unused-ignore]  # py-tlsh: a C extension without stubs

from streams.spam.normalize import Attachment, url_skeleton

BINS = 128
BAND_ROWS = 4
BANDS = BINS // BAND_ROWS
_SHIFT = 64 - 7  # the top 7 bits of a shingle hash choose its bin
_M32 = 0xFFFFFFFF
_MIX = 0x9E3779B97F4A7C15
_ROTATE = 0x9E3779B1
_EMPTY = -1
_SEPARATOR = 0x5EB5EB5EB5EB5EB5  # between subject and body
_CJK_RE = re.compile("[\u3040-\u30ff\u3400-\u9fff\uac00-\ud7af]")  # no spaces between words: a character each
_DIGITS = str.maketrans("123456789", "000000000")
_EDGES = "\"'()[]{}<>.,;:!?*|`~^+=/\\_#&@%-"
_CACHE_LIMIT = 400_000
_cache: dict[str, int] = {}

Signature = array  # of typecode "I": BINS unsigned 32-bit values, 512 bytes a pattern
if array("I").itemsize != 4 or array("Q").itemsize != 8:
    raise ImportError("spam fingerprints need 4-byte array('I') and 8-byte array('Q') items")


def token_hash(token: str) -> int:
    """A stable 64-bit hash of a token (BLAKE2b), memoised."""
    value = _cache.get(token)
    if value is None:
        if len(_cache) >= _CACHE_LIMIT:
            _cache.clear()
        value = int.from_bytes(blake2b(token.encode("utf-8", "surrogatepass"), digest_size=8).digest(), "little")
        _cache[token] = value
    return value


def clear_cache() -> None:
    _cache.clear()


def token_hashes(tokens: Iterable[str]) -> list[int]:
    get = _cache.get
    return [h if (h := get(t)) is not None else token_hash(t) for t in tokens]


def words(text: str) -> list[str]:
    """The words of folded text: split at white space, punctuation around them off
    (inside kept: "don't", "$0.00", "e-mail"), digits folded to 0 (prices and ids vary per mailing)."""
    text = text.translate(_DIGITS)
    if not text.isascii():
        text = _CJK_RE.sub(r" \g<0> ", text)
    return [w for w in (w.strip(_EDGES) for w in text.split()) if w]


def shingles(subject_hashes: list[int], body_hashes: list[int], urls: Iterable[str]) -> set[int]:
    """Hashes of the word 3-shingles of subject and body (given as word hashes), and of each URL skeleton."""
    hashes = subject_hashes + [_SEPARATOR] + body_hashes
    out = {a ^ (b >> 1) ^ (c >> 2) for a, b, c in zip(hashes, hashes[1:], hashes[2:])}
    out.update(token_hash("\x01url " + url_skeleton(u)) for u in urls)
    return out


def signature(hashes: set[int], min_shingles: int) -> Signature | None:
    """The one-permutation MinHash of a set of 64-bit hashes; None when it has too few."""
    ordered = sorted(hashes)
    if len(ordered) < min_shingles:
        return None
    sig = [_EMPTY] * BINS
    previous = -1
    for h in ordered:  # ascending: the first hash of each bin is its least
        if (b := h >> _SHIFT) != previous:
            sig[b] = h & _M32
            previous = b
    return _densify(sig)


def _densify(sig: list[int]) -> Signature:
    """Each empty bin takes the next filled bin's value (circularly), shifted by the distance."""
    if _EMPTY not in sig:
        return array("I", sig)
    out = list(sig)
    for i in range(BINS):
        if sig[i] == _EMPTY:
            dist = 1
            while sig[(i + dist) % BINS] == _EMPTY:
                dist += 1
            out[i] = (sig[(i + dist) % BINS] + dist * _ROTATE) & _M32
    return array("I", out)


def similarity(a: Sequence[int], b: Sequence[int]) -> float:
    """Estimated Jaccard similarity of the shingle sets behind two signatures."""
    return sum(map(eq, a, b)) / BINS


def band_keys(sig: Signature) -> list[int]:
    """One stable key per band of ``BAND_ROWS`` bins: the LSH buckets of a signature."""
    return [
        ((band * _MIX) ^ (sig[r] << 96) ^ (sig[r + 1] << 64) ^ (sig[r + 2] << 32) ^ sig[r + 3])
        for band, r in enumerate(range(0, BINS, BAND_ROWS))
    ]


def signature_bytes(sig: Signature | None) -> bytes:
    return b"" if sig is None else little_endian(sig).tobytes()


def signature_from_bytes(data: bytes) -> Signature | None:
    if not data:
        return None
    if len(data) != BINS * 4:
        raise ValueError(f"a signature has {BINS * 4} bytes, not {len(data)}")
    return little_endian(array("I", data))


def little_endian(values: array) -> array:
    """The array as stored (little-endian); on a big-endian machine, a swapped copy."""
    if sys.byteorder == "little":
        return values
    swapped = array(values.typecode, values)
    swapped.byteswap()
    return swapped


def attachment_hashes(attachments: Iterable[Attachment], max_bytes: int) -> list[str]:
    """TLSH of each attachment big and varied enough to have one (TLSH needs ~50 bytes)."""
    out = []
    for att in attachments:
        digest = tlsh.hash(att.data[:max_bytes]) if len(att.data) >= 64 else "TNULL"
        if digest and digest != "TNULL":
            out.append(digest)
    return list(dict.fromkeys(out))


def attachment_distance(a: str, b: str) -> int:
    return int(tlsh.diff(a, b))
