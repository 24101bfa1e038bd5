"""spam-filter: fingerprints that survive small changes.

Text: word 3-shingles of the folded subject and body (digit runs folded to one
"0", URLs replaced by their skeletons), hashed to 64 bits, summarised by a
one-permutation MinHash: 128 bins by the top 7 bits of each shingle hash, the
least hash of each bin kept (32 bits of it), empty bins filled by rotation
(Shrivastava & Li's densification). The share of equal bins estimates the
Jaccard similarity of two shingle sets; bands of 4 bins index the signatures
(LSH, see ``lsh``) so that a lookup touches only likely matches. One hash per
shingle makes this a few times cheaper than a classic 128-permutation MinHash,
and numpy does the per-shingle work (xor-shift of word hashes, the least hash
per bin by ``minimum.at``, densification) in a few array operations.

Word hashes are xxHash's XXH3 (64 bits) of the UTF-8 bytes, one C call per
word with no Python code between (``map``): about 80 ns a word where BLAKE2b
took 800 ns, so no memo is needed (cold, as after a start, most words of a
mail were BLAKE2b misses). Changing the hash changed every fingerprint: the
patterns stored before it (BLAKE2b) no longer match.

Attachments: TLSH (py-tlsh), a locality-sensitive hash whose distance stays
small when a file changes a little.

Every hash here is stable across processes, machines and Python versions
(XXH3, a fixed and specified function, and fixed arithmetic; never Python's salted ``hash``): signatures are
stored in Kafka and compared on every node.
"""

from __future__ import annotations

import re
import sys
from array import array
from collections.abc import Collection, Iterable, Sequence
from operator import eq

import numpy as np
import xxhash
import tlsh  # type: ignore[import-not-found,unused-ignore]  # py-tlsh: a C extension without stubs

from streams.spam.normalize import Attachment
from streams.spam.urls import url_skeleton

BINS = 128
BAND_ROWS = 4
BANDS = BINS // BAND_ROWS
_SHIFT = 64 - 7  # the top 7 bits of a shingle hash choose its bin
_M32 = 0xFFFFFFFF
_BAND_BYTES = BAND_ROWS * 4
_BAND_OFFSETS = range(0, BINS * 4, _BAND_BYTES)
_ROTATE = 0x9E3779B1
_NO_HASH = np.uint64(2**64 - 1)
_BIN_NUMBERS = np.arange(BINS)
_SEPARATOR = 0x5EB5EB5EB5EB5EB5  # between subject and body
_CJK_RE = re.compile("[\u3040-\u30ff\u3400-\u9fff\uac00-\ud7af]")  # no spaces between words: a character each
_DIGITS_RE = re.compile("[1-9]")
_EDGES = "\"'()[]{}<>.,;:!?*|`~^+=/\\_#&@%-"
# a run of neither white space nor edge characters, and more such runs joined by edge characters
_WORD_RE = re.compile(r"[^\s{0}]+(?:[{0}]+[^\s{0}]+)*".format(re.escape(_EDGES)))
_xxh3 = xxhash.xxh3_64_intdigest

Signature = array  # of typecode "I": BINS unsigned 32-bit values, 512 bytes a pattern
if array("I").itemsize != 4 or array("Q").itemsize != 8:
    raise ImportError("spam fingerprints need 4-byte array('I') and 8-byte array('Q') items")


def token_hash(token: str) -> int:
    """A stable 64-bit hash of a token: XXH3 of its UTF-8 (a lone surrogate passed through)."""
    return _xxh3(token.encode("utf-8", "surrogatepass"))


def token_hashes(tokens: Iterable[str]) -> list[int]:
    """``token_hash`` of each token, in C: no Python code runs per token."""
    try:
        return list(map(_xxh3, map(str.encode, tokens)))
    except UnicodeEncodeError:  # a lone surrogate somewhere (rare): the slow way
        return list(map(token_hash, tokens))


def words(text: str) -> list[str]:
    """The words of folded text: split at white space, punctuation around them off
    (inside kept: "don't", "$0.00", "e-mail"), digits folded to 0 (prices and ids vary per mailing).
    One ``findall`` gives what ``[w.strip(_EDGES) for w in text.split()]`` less the empty ones gives
    (``\\s`` is what ``str.split`` splits at), without Python code per word."""
    text = _DIGITS_RE.sub("0", text)  # re.sub beats str.translate here (which looks up every character)
    if not text.isascii():
        text = _CJK_RE.sub(r" \g<0> ", text)
    return _WORD_RE.findall(text)


def shingles(subject_hashes: list[int], body_hashes: list[int], urls: Iterable[str]) -> np.ndarray:
    """Hashes of the word 3-shingles of subject and body (given as word hashes), and of each URL
    skeleton: a uint64 array in no order, with repeats (``signature`` takes each once)."""
    hashes = np.array(subject_hashes + [_SEPARATOR] + body_hashes, dtype=np.uint64)
    text = hashes[:-2] ^ (hashes[1:-1] >> 1) ^ (hashes[2:] >> 2)  # a ^ (b >> 1) ^ (c >> 2): three words in a row
    skeletons = ["\x01url " + url_skeleton(u) for u in urls]
    if not skeletons:
        return text
    return np.concatenate((text, np.array(token_hashes(skeletons), dtype=np.uint64)))


def signature(hashes: Collection[int] | np.ndarray, min_shingles: int) -> Signature | None:
    """The one-permutation MinHash of a set of 64-bit hashes; None when it has too few."""
    values = hashes if isinstance(hashes, np.ndarray) else np.fromiter(hashes, np.uint64, len(hashes))
    if len(values) < min_shingles:
        return None
    bins = (values >> _SHIFT).astype(np.intp)
    least = np.full(BINS, _NO_HASH, dtype=np.uint64)
    np.minimum.at(least, bins, values)  # linear, where sorting was most of the cost on long mails
    least &= _M32
    filled = np.flatnonzero(np.bincount(bins, minlength=BINS))
    if len(filled) < BINS:
        if len(filled) < min_shingles and len(np.unique(values)) < min_shingles:
            return None
        least = _densify(least, filled)
    return array("I", least.astype(np.uint32).tobytes())


def _densify(least: np.ndarray, filled: np.ndarray) -> np.ndarray:
    """Each empty bin takes the next filled bin's value (circularly), plus the distance times a constant."""
    after = np.searchsorted(filled, _BIN_NUMBERS)  # the first filled bin at or after each bin, by index
    nearest = np.where(after < len(filled), filled[after % len(filled)], filled[0] + BINS)
    distance = (nearest - _BIN_NUMBERS).astype(np.uint64)  # 0 for a filled bin: it keeps its value
    return (least[nearest % BINS] + distance * _ROTATE) & _M32


def similarity(a: Sequence[int], b: Sequence[int]) -> float:
    """Estimated Jaccard similarity of the shingle sets behind two signatures."""
    return sum(map(eq, a, b)) / BINS


def band_keys(sig: Signature) -> list[bytes]:
    """One key per band of ``BAND_ROWS`` bins, its bytes: the LSH bucket of the signature in each band's table."""
    data = sig.tobytes()
    return [data[i : i + _BAND_BYTES] for i in _BAND_OFFSETS]


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
