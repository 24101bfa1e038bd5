"""spam-filter: the base model a fresh installation starts from.

A gateway with no reports would score every mail 0.5 ("unsure") and catch
nothing. The base model is what it knows on day one: the token classifier's
counts and the weights of the structural rules (``combine``), built from public
corpora by ``python -m streams.spam.base_build`` and shipped with the package
(``base_model.bin``, see ``BUILTIN``). Every node loads it under the counts the
reports add (``spam.patterns``), so reports adapt it on each installation, and
tombstoning every pattern returns a node to the base exactly (counts are sums).

The file is zstd-compressed: one JSON line (what it was built from, the counts
of mails, the rule weights, the lengths) and three little-endian arrays: the
token hashes (u64, sorted), their spam counts and their ham counts (u32).
Deterministic: the same corpus gives the same bytes.
"""

from __future__ import annotations

import json
import sys
from array import array
from dataclasses import dataclass, field
from itertools import groupby
from pathlib import Path
from typing import Any, Protocol

import zstandard

from streams.spam.combine import RuleWeights

BUILTIN = Path(__file__).with_name("base_model.bin")
FORMAT = "mailgate-spam-base/1"


class Learner(Protocol):
    def learn(self, tokens: Any, is_spam: bool, weight: int = 1) -> None: ...


@dataclass(frozen=True, slots=True)
class BaseModel:
    hashes: array  # "Q", sorted, unique
    spam: array  # "I", the spam count of each hash
    ham: array  # "I", the ham count of each hash
    nspam: int
    nham: int
    weights: RuleWeights
    meta: dict[str, Any] = field(default_factory=dict)  # what it was built from, thresholds measured

    def apply_to(self, classifier: Learner) -> None:
        """Add the base counts to a classifier (its ``learn`` adds a weight per token and to the
        class total; grouped by count, then the totals set right with an empty learn)."""
        for is_spam, counts, total in ((True, self.spam, self.nspam), (False, self.ham, self.nham)):
            pairs = sorted((c, h) for h, c in zip(self.hashes, counts) if c)
            added = 0
            for count, group in groupby(pairs, key=lambda pair: pair[0]):
                classifier.learn(array("Q", (h for _, h in group)), is_spam, count)
                added += count
            classifier.learn(array("Q"), is_spam, total - added)

    def to_bytes(self) -> bytes:
        head = {"format": FORMAT, "nspam": self.nspam, "nham": self.nham, "tokens": len(self.hashes),
                "weights": self.weights.to_record(), "meta": self.meta}
        body = json.dumps(head, sort_keys=True).encode() + b"\n" + _le(self.hashes) + _le(self.spam) + _le(self.ham)
        return zstandard.ZstdCompressor(level=19).compress(body)

    @classmethod
    def from_bytes(cls, data: bytes, where: str = "base model") -> BaseModel:
        try:
            body = zstandard.ZstdDecompressor().decompress(data, max_output_size=256 << 20)
            line, _, rest = body.partition(b"\n")
            head = json.loads(line)
        except (zstandard.ZstdError, ValueError) as exc:
            raise ValueError(f"{where}: not a spam base model ({exc}); rebuild it with "
                             "python -m streams.spam.base_build") from exc
        if head.get("format") != FORMAT:
            raise ValueError(f"{where}: format {head.get('format')!r}, expected {FORMAT!r}; rebuild it with "
                             "python -m streams.spam.base_build")
        n = int(head["tokens"])
        if len(rest) != n * 16:
            raise ValueError(f"{where}: {len(rest)} bytes of counts for {n} tokens (truncated?)")
        hashes, spam, ham = _from_le("Q", rest[: 8 * n]), _from_le("I", rest[8 * n : 12 * n]), _from_le("I", rest[12 * n :])
        return cls(hashes, spam, ham, int(head["nspam"]), int(head["nham"]),
                   RuleWeights.from_record(head["weights"]), head.get("meta", {}))


def load(setting: str) -> BaseModel | None:
    """The base model a ``base_model`` setting names: "builtin", "none", or a file's path."""
    if setting == "none":
        return None
    path = BUILTIN if setting == "builtin" else Path(setting)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ValueError(f"spam_filter.base_model: cannot read {path} ({exc.strerror}); use \"builtin\", "
                         "\"none\" or the path of a file built by python -m streams.spam.base_build") from exc
    return BaseModel.from_bytes(data, str(path))


def _le(values: array) -> bytes:
    if sys.byteorder == "little":
        return values.tobytes()
    swapped = array(values.typecode, values)
    swapped.byteswap()
    return swapped.tobytes()


def _from_le(typecode: str, data: bytes) -> array:
    values = array(typecode)
    values.frombytes(data)
    if sys.byteorder != "little":
        values.byteswap()
    return values
