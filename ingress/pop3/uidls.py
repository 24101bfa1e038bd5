"""The UIDL ledger of pop3-proxy / pop3s-proxy: which mails of an account were
already collected, so that no restart fetches a mail twice, and a crash at worst
repeats one under the same mail id.

Kept in the compacted topic ``pop3.uidls``; one record per (account, UIDL):

- key   ``b"<account>/<uidl>"`` (account names have no '/'; a UIDL is printable ASCII);
- value JSON ``{"state": "pending"|"collected", "mail_id": "...", "at": <ms>}``,
  or a tombstone (null value) once the mail is gone from the server.

A mail's life: ``pending`` (with the mail id it will carry) is written before
the event is published (for all new mails of a cycle at its start, in one
burst), ``collected`` after Kafka acknowledged the event, and only then is DELE
sent. A crash after the publish but before ``collected`` makes the next cycle
fetch the mail once more and publish it under the *same* mail id, so the
duplicate is recognisable downstream; a crash after ``collected`` only repeats
the DELE. The ledger logic here is pure; the store behind it is injected.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Collection, Iterable, Iterator
from dataclasses import dataclass
from typing import Literal, Protocol

from schemas import new_mail_id

State = Literal["pending", "collected"]
_WRITES_AT_ONCE = 256


@dataclass(frozen=True)
class UidlEntry:
    state: State
    mail_id: str
    at_ms: int

    def to_bytes(self) -> bytes:
        return json.dumps({"state": self.state, "mail_id": self.mail_id, "at": self.at_ms},
                          separators=(",", ":")).encode()

    @classmethod
    def from_bytes(cls, value: bytes) -> UidlEntry:
        try:
            d = json.loads(value)
            state = d["state"]
            if state not in ("pending", "collected"):
                raise ValueError(f"unknown state {state!r}")
            return cls(state, str(d["mail_id"]), int(d["at"]))
        except (ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"not a pop3.uidls value: {value[:100]!r} ({exc})") from exc


def record_key(account: str, uidl: str) -> bytes:
    return f"{account}/{uidl}".encode("ascii")


def split_key(key: bytes) -> tuple[str, str]:
    account, sep, uidl = key.decode("ascii").partition("/")
    if not sep or not account or not uidl:
        raise ValueError(f"not a pop3.uidls key: {key[:100]!r}")
    return account, uidl


class UidlStore(Protocol):
    """Where the ledger lives. Each write returns only once it is durable (for the
    Kafka store: acknowledged, acks=all), and raises otherwise."""

    async def load(self, account: str) -> dict[str, UidlEntry]:
        """Every live entry of one account, by UIDL."""
        ...

    async def put(self, account: str, uidl: str, entry: UidlEntry) -> None:
        """Write one entry (key ``record_key(account, uidl)``, value ``entry.to_bytes()``)."""
        ...

    async def forget(self, account: str, uidls: Collection[str]) -> None:
        """Tombstone these entries (null values)."""
        ...


class MemoryUidlStore:
    """A UidlStore in a dict: for tests, benchmarks, and as the table a Kafka-backed
    store restores from ``pop3.uidls`` (``apply`` each record, then serve from it)."""

    def __init__(self) -> None:
        self._table: dict[tuple[str, str], UidlEntry] = {}

    def apply(self, key: bytes, value: bytes | None) -> None:
        """Replay one record of the compacted topic (None: a tombstone)."""
        account, uidl = split_key(key)
        if value is None:
            self._table.pop((account, uidl), None)
        else:
            self._table[(account, uidl)] = UidlEntry.from_bytes(value)

    def records(self) -> Iterator[tuple[bytes, bytes]]:
        for (account, uidl), entry in self._table.items():
            yield record_key(account, uidl), entry.to_bytes()

    async def load(self, account: str) -> dict[str, UidlEntry]:
        return {u: e for (a, u), e in self._table.items() if a == account}

    async def put(self, account: str, uidl: str, entry: UidlEntry) -> None:
        self._table[(account, uidl)] = entry

    async def forget(self, account: str, uidls: Collection[str]) -> None:
        for uidl in uidls:
            self._table.pop((account, uidl), None)


class UidlLedger:
    """One account's view of the ledger during a collect cycle."""

    def __init__(self, store: UidlStore, account: str) -> None:
        self.store = store
        self.account = account
        self.entries: dict[str, UidlEntry] = {}

    async def load(self) -> None:
        self.entries = dict(await self.store.load(self.account))

    def collected(self, uidl: str) -> bool:
        entry = self.entries.get(uidl)
        return entry is not None and entry.state == "collected"

    async def reserve(self, uidls: Iterable[str]) -> dict[str, str]:
        """Note that these mails are about to be published (``pending``, with the mail
        id each will carry); returns the mail ids, reusing those an earlier attempt
        noted. The writes go out together, a few hundred at a time."""
        ids: dict[str, str] = {}
        todo: list[tuple[str, UidlEntry]] = []
        for uidl in uidls:
            entry = self.entries.get(uidl)
            if entry is None:
                entry = UidlEntry("pending", new_mail_id(), _now_ms())
                todo.append((uidl, entry))
            ids[uidl] = entry.mail_id
        for i in range(0, len(todo), _WRITES_AT_ONCE):
            await asyncio.gather(*(self._put(u, e) for u, e in todo[i:i + _WRITES_AT_ONCE]))
        return ids

    async def commit(self, uidl: str, mail_id: str) -> None:
        """The event is durable: never publish this mail again."""
        await self._put(uidl, UidlEntry("collected", mail_id, _now_ms()))

    async def prune(self, present: Collection[str]) -> int:
        """Forget entries of mails no longer on the server (from a complete listing)."""
        gone = [u for u in self.entries if u not in present]
        if gone:
            await self.store.forget(self.account, gone)
            for u in gone:
                del self.entries[u]
        return len(gone)

    async def _put(self, uidl: str, entry: UidlEntry) -> None:
        await self.store.put(self.account, uidl, entry)
        self.entries[uidl] = entry


def _now_ms() -> int:
    return int(time.time() * 1000)
