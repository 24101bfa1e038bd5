"""smtp-server filter ``greylist``: a new (client network, sender, recipient) triplet
is refused with 451 4.7.1 for ``delay_s``; a retry after that (within the retry
window) passes, and the triplet is then known until it expires.

Expiry, as postgrey's: a passed triplet not seen for ``max_age_s`` and a pending one
(never retried in time) older than ``pending_max_age_s`` count as unknown, and each
node's sweep (every ``sweep_interval_s``) writes a tombstone for them, so that the
topic is compacted instead of growing for ever.

The state is shared by every node through the compacted topic ``smtp.greylist``
(``GreylistStore`` here is its in-memory view; ``ingress.smtp.greylist_kafka`` keeps
it in step with the topic). Key: ``net|sender|recipient``; value: JSON
``{"first": ms, "passed": ms|null, "last": ms}``; a tombstone (no value) forgets it.
"""

from __future__ import annotations

import ipaddress
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from ingress.smtp.settings import GreylistSettings
from ingress.smtp.filters.verdict import Check, Stage, Verdict, note, tempfail


@dataclass(frozen=True)
class Triplet:
    first_ms: int
    passed_ms: int | None
    last_ms: int

    def to_bytes(self) -> bytes:
        return json.dumps({"first": self.first_ms, "passed": self.passed_ms, "last": self.last_ms},
                          separators=(",", ":")).encode()

    @classmethod
    def from_bytes(cls, value: bytes) -> Triplet:
        d = json.loads(value)
        return cls(int(d["first"]), None if d.get("passed") is None else int(d["passed"]), int(d["last"]))


@dataclass(frozen=True)
class Expiry:
    """When a triplet is forgotten (ms)."""

    max_age_ms: int  # passed: since it was last seen
    pending_max_age_ms: int  # never passed: since its first attempt

    @classmethod
    def of(cls, cfg: GreylistSettings) -> Expiry:
        return cls(int(cfg.max_age_s * 1000), int(cfg.pending_max_age_s * 1000))

    def expired(self, entry: Triplet, now_ms: int) -> bool:
        if entry.passed_ms is not None:
            return now_ms - entry.last_ms > self.max_age_ms
        return now_ms - entry.first_ms > self.pending_max_age_ms


def triplet_key(ip: str, sender: str, rcpt: str) -> str:
    addr = ipaddress.ip_address(ip)
    net = ipaddress.ip_network(f"{ip}/{24 if addr.version == 4 else 64}", strict=False)
    return f"{net}|{sender.lower() or '<>'}|{rcpt.lower()}"


class GreylistStore:
    """The triplets known to this node. ``put`` also hands the entry to ``publish``
    (the Kafka writer); ``apply`` takes entries read from the topic."""

    def __init__(self, publish: Callable[[str, Triplet | None], None] | None = None) -> None:
        self._entries: dict[str, Triplet] = {}
        self._lock = threading.Lock()
        self.publish = publish

    def get(self, key: str) -> Triplet | None:
        with self._lock:
            return self._entries.get(key)

    def put(self, key: str, entry: Triplet) -> None:
        with self._lock:
            self._entries[key] = entry
        if self.publish is not None:
            self.publish(key, entry)

    def apply(self, key: str, entry: Triplet | None) -> None:
        with self._lock:
            if entry is None:
                self._entries.pop(key, None)
            else:
                self._entries[key] = entry

    def sweep(self, expiry: Expiry, now_ms: int) -> list[str]:
        """Forgets the expired triplets here and publishes a tombstone for each; their keys."""
        with self._lock:
            gone = [k for k, e in self._entries.items() if expiry.expired(e, now_ms)]
            for key in gone:
                del self._entries[key]
        if self.publish is not None:
            for key in gone:
                self.publish(key, None)
        return gone

    def __len__(self) -> int:
        return len(self._entries)


class Greylist:
    name = "greylist"
    stages = frozenset({Stage.RCPT})
    bypassable = True

    def __init__(self, cfg: GreylistSettings, store: GreylistStore,
                 clock: Callable[[], float] = time.time) -> None:
        self.delay_ms = int(cfg.delay_s * 1000)
        self.window_ms = int(cfg.retry_window_s * 1000)
        self.expiry = Expiry.of(cfg)
        self.refresh_ms = min(86_400_000, self.expiry.max_age_ms // 10)
        self.store, self.clock = store, clock

    async def check(self, ask: Check) -> Verdict:
        now = int(self.clock() * 1000)
        key = triplet_key(ask.client.ip, ask.tx.mail_from, ask.rcpt or "")
        entry = self.store.get(key)
        if entry is not None and self.expiry.expired(entry, now):
            entry = None  # forgotten: greylisted again, like a new triplet (the sweep tombstones the rest)
        if entry is not None and entry.passed_ms is not None:
            if now - entry.last_ms > self.refresh_ms:  # few writes for known senders, yet never expired in use
                self.store.put(key, Triplet(entry.first_ms, entry.passed_ms, now))
            return note(self.name, "known triplet")
        if entry is None or now - entry.first_ms > self.window_ms:
            self.store.put(key, Triplet(now, None, now))
            return self._wait(self.delay_ms)
        waited = now - entry.first_ms
        if waited < self.delay_ms:
            return self._wait(self.delay_ms - waited)
        self.store.put(key, Triplet(entry.first_ms, now, now))
        return note(self.name, f"passed after {waited / 1000:.0f} s")

    def _wait(self, ms: int) -> Verdict:
        return tempfail(self.name, 451, "4.7.1",
                        f"Greylisted: this is a new sender for this recipient, try again in {max(1, ms // 1000)} s")
