"""spam-filter: the near-duplicate index of text signatures, for the pattern store.

Banding (LSH): a signature's ``BANDS`` bands of ``BAND_ROWS`` bins are each a
bucket key, so a lookup touches only the patterns that share a band with the
mail, never all of them. The candidates sharing most bands are then compared
bin by bin, all at once: every indexed signature is a row of one uint32
matrix, so comparing with 32 candidates is one numpy comparison, not 32
Python loops of 128 steps.
"""

from __future__ import annotations

import heapq
from array import array
from collections import Counter
from itertools import chain, repeat
from operator import itemgetter

import numpy as np

from streams.spam.fingerprint import BANDS, BINS, Signature, band_keys

from streams.spam.native import NATIVE as _native


class SignatureIndex:
    """Signatures by id: the LSH buckets of their bands and their bins as matrix rows."""

    def __init__(self) -> None:
        self._bands: list[dict[bytes, set[str]]] = [{} for _ in range(BANDS)]
        self._rows: dict[str, int] = {}
        self._free: list[int] = []
        self._matrix = np.zeros((64, BINS), dtype=np.uint32)

    def __len__(self) -> int:
        return len(self._rows)

    def add(self, key: str, sig: Signature) -> None:
        """Index ``sig`` under ``key`` (replacing what ``key`` had)."""
        self.discard(key)
        self._rows[key] = row = self._free.pop() if self._free else len(self._rows)
        if row >= len(self._matrix):  # full: double the rows
            self._matrix = np.concatenate((self._matrix, np.zeros_like(self._matrix)))
        self._matrix[row] = np.frombuffer(sig, dtype=np.uint32)
        for band, bucket_key in zip(self._bands, band_keys(sig)):
            band.setdefault(bucket_key, set()).add(key)

    def discard(self, key: str) -> None:
        """Forget ``key``; nothing happens if it is not indexed."""
        row = self._rows.pop(key, None)
        if row is None:
            return
        self._free.append(row)
        for band, bucket_key in zip(self._bands, band_keys(array("I", self._matrix[row].tobytes()))):
            bucket = band.get(bucket_key)
            if bucket is not None:
                bucket.discard(key)
                if not bucket:
                    del band[bucket_key]

    def candidates(self, sig: Signature, limit: int) -> list[tuple[str, float]]:
        """(key, similarity) of at most ``limit`` indexed signatures, those sharing most bands."""
        # the bands' buckets counted in C (Counter's update), keys in order of first sight
        shared: dict[str, int] = Counter(chain.from_iterable(map(dict.get, self._bands, band_keys(sig), repeat(()))))
        if not shared:
            return []
        if len(shared) > limit:
            shared = dict(heapq.nlargest(limit, shared.items(), key=itemgetter(1)))
        rows = self._matrix[list(map(self._rows.__getitem__, shared))]
        equal = np.count_nonzero(rows == np.frombuffer(sig, dtype=np.uint32), axis=1)
        return list(zip(shared, (equal / BINS).tolist()))


def new_signature_index() -> SignatureIndex:
    """The native index (``_native.SignatureIndex``: the same methods and answers) when built, else this one."""
    return SignatureIndex() if _native is None else _native.SignatureIndex()  # type: ignore[return-value]
