"""spam-filter: the pattern store, an in-memory image of the compacted ``spam.patterns`` topic.

A pattern is what a report leaves behind: the fingerprint of the reported mail
(text signature, attachment hashes, URL domains, classifier tokens), its label
(spam or ham), who said so, how often it matched, and when it was last
confirmed. Every node holds the same patterns; a match is found through the
LSH bands of the signatures, so a lookup costs the same with 10 or 100,000
patterns.

Reports: a report on a mail that matches existing patterns updates them (other
label: the label flips, so a "not spam" report retracts a spam pattern, unless
a user would overrule an administrator; same label and nearly the same mail:
one more report). A mail that no pattern of its label covers that closely
becomes a new pattern, so a campaign's variants each leave their own.

Merging (the same record may come back from Kafka, or a newer one from
another node): the content with the higher (version, updated_ms) wins; hit
counts are a per-node counter merged by maximum, so nodes never overwrite each
other's hits. A pattern expires when neither a report nor a hit renewed it
within its TTL; its removal is a tombstone on the topic.
"""

from __future__ import annotations

import base64
import json
from array import array
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from hashlib import blake2b
from typing import Any

from streams.spam.fingerprint import (
    Signature,
    attachment_distance,
    little_endian,
    signature_bytes,
    signature_from_bytes,
)
from streams.spam.lsh import new_signature_index
from streams.spam.settings import SpamSettings

SPAM, HAM = "spam", "ham"
ADMIN, USER = "admin", "user"
MAX_CANDIDATES = 32  # signatures compared per lookup, the ones sharing most bands first
_DAY_MS = 86_400_000


@dataclass(frozen=True, slots=True)
class MailPrint:
    """What the store needs of one mail."""

    signature: Signature | None
    attachments: tuple[str, ...] = ()
    domains: tuple[str, ...] = ()
    tokens: array = field(default_factory=lambda: array("Q"))  # sorted, unique classifier token hashes

    def pattern_id(self) -> str:
        """Stable id: the same mail (or the same short mail) always gives the same id."""
        digest = blake2b(digest_size=10)
        digest.update(signature_bytes(self.signature) or _tokens_bytes(self.tokens))
        digest.update("\x00".join(self.attachments).encode())
        return digest.hexdigest()


@dataclass(slots=True)
class Pattern:
    pattern_id: str
    label: str
    print: MailPrint
    role: str
    reporter: str
    mail_id: str
    created_ms: int
    updated_ms: int
    reports: int = 1
    version: int = 1
    last_hit_ms: int = 0
    hits: dict[str, int] = field(default_factory=dict)

    @property
    def hit_count(self) -> int:
        return sum(self.hits.values())

    def expires_ms(self, settings: SpamSettings) -> int:
        days = settings.spam_ttl_days if self.label == SPAM else settings.ham_ttl_days
        return max(self.updated_ms, self.last_hit_ms) + int(days * _DAY_MS)

    def to_record(self) -> dict[str, Any]:
        """Plain values only (str, int, bytes, list, map): the shape of the Avro record."""
        return {
            "pattern_id": self.pattern_id, "label": self.label,
            "signature": signature_bytes(self.print.signature),
            "attachments": list(self.print.attachments), "domains": list(self.print.domains),
            "tokens": _tokens_bytes(self.print.tokens),
            "role": self.role, "reporter": self.reporter, "mail_id": self.mail_id,
            "created_ms": self.created_ms, "updated_ms": self.updated_ms,
            "reports": self.reports, "version": self.version,
            "last_hit_ms": self.last_hit_ms, "hits": dict(self.hits),
        }

    @classmethod
    def from_record(cls, rec: dict[str, Any]) -> Pattern:
        if rec["label"] not in (SPAM, HAM) or rec["role"] not in (ADMIN, USER):
            raise ValueError(f"pattern {rec.get('pattern_id')}: label or role unknown")
        mail_print = MailPrint(
            signature_from_bytes(rec["signature"]), tuple(rec["attachments"]), tuple(rec["domains"]),
            _tokens_from_bytes(rec["tokens"]),
        )
        return cls(
            rec["pattern_id"], rec["label"], mail_print, rec["role"], rec["reporter"], rec["mail_id"],
            int(rec["created_ms"]), int(rec["updated_ms"]), int(rec["reports"]), int(rec["version"]),
            int(rec["last_hit_ms"]), {str(k): int(v) for k, v in rec["hits"].items()},
        )

    def to_bytes(self) -> bytes:
        """Compact JSON (bytes fields base64), for stores without an Avro codec."""
        rec = self.to_record()
        for key in ("signature", "tokens"):
            rec[key] = base64.b64encode(rec[key]).decode()
        return json.dumps(rec, separators=(",", ":"), sort_keys=True).encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> Pattern:
        rec = json.loads(data)
        for key in ("signature", "tokens"):
            rec[key] = base64.b64decode(rec[key])
        return cls.from_record(rec)


def _tokens_bytes(tokens: array) -> bytes:
    return little_endian(tokens).tobytes()


def _tokens_from_bytes(data: bytes) -> array:
    if len(data) % 8:
        raise ValueError("token bytes are not a whole number of 8-byte hashes")
    return little_endian(array("Q", data))


@dataclass(frozen=True, slots=True)
class Match:
    pattern_id: str
    label: str
    similarity: float
    via: str  # "text" or "attachment"
    role: str


Listener = Callable[[Pattern | None, Pattern | None], None]


class PatternStore:
    """The patterns one node knows, indexed for near-duplicate lookup. Pure: no I/O."""

    def __init__(self, settings: SpamSettings | None = None, node: str = "local",
                 on_change: Listener | None = None) -> None:
        self.settings = settings or SpamSettings()
        self.node = node
        self.patterns: dict[str, Pattern] = {}
        self._signatures = new_signature_index()
        self._attachments: dict[str, tuple[str, ...]] = {}
        self._dirty: set[str] = set()
        self._on_change = on_change

    def __len__(self) -> int:
        return len(self.patterns)

    def get(self, pattern_id: str) -> Pattern | None:
        return self.patterns.get(pattern_id)

    # -- looking up

    def match(self, mail: MailPrint, now_ms: int | None = None) -> list[Match]:
        """Patterns the mail matches, best first; with ``now_ms`` each match counts a hit."""
        found: dict[str, tuple[float, str]] = {}
        if mail.signature is not None and len(self._signatures):
            for pid, sim in self._signatures.candidates(mail.signature, MAX_CANDIDATES):
                if sim >= self.settings.pattern_similarity:
                    found[pid] = (sim, "text")
        for pid, sim in self._attachment_matches(mail.attachments):
            if sim > found.get(pid, (0.0, ""))[0]:
                found[pid] = (sim, "attachment")
        if mail.signature is None and (exact := mail.pattern_id()) in self.patterns:
            found[exact] = (1.0, "text")  # short mails have no signature: only the same mail matches
        matches = [Match(pid, self.patterns[pid].label, sim, via, self.patterns[pid].role)
                   for pid, (sim, via) in found.items()]
        matches.sort(key=lambda m: m.similarity, reverse=True)
        if now_ms is not None:
            self._count_hits(matches, now_ms)
        return matches

    def _attachment_matches(self, hashes: tuple[str, ...]) -> list[tuple[str, float]]:
        out = []
        limit = self.settings.attachment_max_distance
        for digest in hashes:
            for pid, known in self._attachments.items():
                dist = min(attachment_distance(digest, k) for k in known)
                if dist <= limit:
                    out.append((pid, max(self.settings.pattern_similarity, 1.0 - dist / 100.0)))
        return out

    def _count_hits(self, matches: list[Match], now_ms: int) -> None:
        for m in matches:
            pattern = self.patterns[m.pattern_id]
            pattern.hits[self.node] = pattern.hits.get(self.node, 0) + 1
            pattern.last_hit_ms = max(pattern.last_hit_ms, now_ms)
            self._dirty.add(m.pattern_id)

    # -- learning

    def apply_report(self, mail: MailPrint, label: str, role: str, reporter: str,
                     mail_id: str, now_ms: int) -> list[Pattern]:
        """Apply a spam/ham report here; returns the patterns made or changed (to publish)."""
        if label not in (SPAM, HAM) or role not in (ADMIN, USER):
            raise ValueError(f"report on {mail_id}: label {label!r} / role {role!r} unknown")
        changed, overruled, covered = [], False, False
        for m in self.match(mail):
            current = self.patterns[m.pattern_id]
            if current.label != label and current.role == ADMIN and role != ADMIN:
                overruled = True  # a user does not overrule an administrator
            elif current.label != label or m.similarity >= self.settings.pattern_merge_similarity:
                changed.append(_reported(current, label, role, reporter, now_ms))
                covered = covered or current.label == label
        new_id = mail.pattern_id()
        if not covered and not overruled and new_id not in self.patterns:  # a new variant: a pattern of its own
            changed.append(Pattern(new_id, label, mail, role, reporter, mail_id, now_ms, now_ms))
        for pattern in changed:
            self.upsert(pattern)
        return list({p.pattern_id: self.patterns[p.pattern_id] for p in changed}.values())

    def upsert(self, incoming: Pattern) -> bool:
        """Take a pattern (from a report here or from the topic); True if anything changed."""
        current = self.patterns.get(incoming.pattern_id)
        if current is None:
            self._insert(incoming)
            return True
        newer = (incoming.version, incoming.updated_ms) > (current.version, current.updated_ms)
        content = incoming if newer else current
        hits = {n: max(current.hits.get(n, 0), incoming.hits.get(n, 0)) for n in {*current.hits, *incoming.hits}}
        merged = replace(content, hits=hits, last_hit_ms=max(current.last_hit_ms, incoming.last_hit_ms))
        if merged == current:
            return False
        self._unindex(current)
        self._insert(merged, old=current)
        return True

    def remove(self, pattern_id: str) -> Pattern | None:
        """Forget a pattern (a tombstone on the topic, or expiry)."""
        pattern = self.patterns.pop(pattern_id, None)
        if pattern is not None:
            self._unindex(pattern)
            self._dirty.discard(pattern_id)
            if self._on_change:
                self._on_change(pattern, None)
        return pattern

    def expire(self, now_ms: int) -> list[str]:
        """Remove the patterns whose time is up; returns their ids (to tombstone)."""
        gone = [pid for pid, p in self.patterns.items() if p.expires_ms(self.settings) <= now_ms]
        for pid in gone:
            self.remove(pid)
        return gone

    def take_dirty(self) -> list[Pattern]:
        """Patterns whose hit counts grew here since the last call (to publish now and then)."""
        out = [self.patterns[pid] for pid in sorted(self._dirty) if pid in self.patterns]
        self._dirty.clear()
        return out

    # -- index

    def _insert(self, pattern: Pattern, old: Pattern | None = None) -> None:
        self.patterns[pattern.pattern_id] = pattern
        if pattern.print.signature is not None:
            self._signatures.add(pattern.pattern_id, pattern.print.signature)
        if pattern.print.attachments:
            self._attachments[pattern.pattern_id] = pattern.print.attachments
        if self._on_change and (old is None or (old.label, old.reports, old.print) != (pattern.label, pattern.reports, pattern.print)):
            self._on_change(old, pattern)

    def _unindex(self, pattern: Pattern) -> None:
        self._signatures.discard(pattern.pattern_id)
        self._attachments.pop(pattern.pattern_id, None)


def _reported(current: Pattern, label: str, role: str, reporter: str, now_ms: int) -> Pattern:
    """A pattern after one more report on it: confirmed, or flipped to the other label."""
    if current.label == label:
        role = ADMIN if ADMIN in (role, current.role) else USER
        return replace(current, role=role, reports=current.reports + 1, version=current.version + 1,
                       updated_ms=max(now_ms, current.updated_ms), hits=dict(current.hits))
    return replace(current, label=label, role=role, reporter=reporter, reports=1,
                   version=current.version + 1, updated_ms=max(now_ms, current.updated_ms), hits=dict(current.hits))
