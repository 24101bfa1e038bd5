"""maildepot-archiver: `mailgate archive verify` — checks the audit chain, replays it against
the index, and re-hashes every stored mail file."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

import zstandard

from egress.maildepot.chain import Entry, check_chain, read_head
from egress.maildepot.store import ArchiveStore


@dataclass
class Report:
    mails: int = 0
    entries: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def _replay(rows: list[tuple[Entry, str, str]]) -> dict[str, dict[str, Any]]:
    """The mails the audit chain says are in the store, with their hash and hold."""
    live: dict[str, dict[str, Any]] = {}
    for entry, _, _ in rows:
        if entry.action == "stored":
            live[entry.mail_id] = {"sha256": entry.sha256, "hold": False}
        elif entry.action == "expired":
            live.pop(entry.mail_id, None)
        elif entry.action in ("hold", "release") and entry.mail_id in live:
            live[entry.mail_id]["hold"] = entry.action == "hold"
    return live


def _check_file(store: ArchiveStore, mail_id: str, sha: str) -> str | None:
    path = store.blob_path(sha)
    try:
        raw = store.raw(sha)
    except FileNotFoundError:
        return f"{mail_id}: its mail file {path.name} is missing"
    except zstandard.ZstdError as exc:
        return f"{mail_id}: its mail file {path.name} was changed (cannot be read: {exc})"
    if hashlib.sha256(raw).hexdigest() != sha:
        return f"{mail_id}: its mail file {path.name} was changed (SHA-256 differs)"
    return None


def verify(store: ArchiveStore) -> Report:
    rows = [(Entry(r["seq"], r["time_ms"], r["action"], r["mail_id"], r["sha256"], r["detail"]), r["prev"], r["hash"])
            for r in store.db.execute("SELECT * FROM audit ORDER BY seq")]
    report = Report(entries=len(rows), problems=check_chain(rows, read_head(store.head_path)))
    live = _replay(rows)
    indexed = {r["mail_id"]: r for r in store.db.execute("SELECT mail_id, sha256, hold FROM mails")}
    report.mails = len(indexed)
    for mail_id in sorted(live.keys() - indexed.keys()):
        report.problems.append(f"{mail_id}: stored (audit entry) but removed from the index without an audit entry")
    for mail_id in sorted(indexed.keys() - live.keys()):
        report.problems.append(f"{mail_id}: in the index but no audit entry stored it")
    for mail_id in sorted(live.keys() & indexed.keys()):
        row, expected = indexed[mail_id], live[mail_id]
        if row["sha256"] != expected["sha256"]:
            report.problems.append(f"{mail_id}: the index names another file than the audit chain")
        elif (row["hold"] is not None) != expected["hold"]:
            report.problems.append(f"{mail_id}: its legal hold was changed without an audit entry")
        problem = _check_file(store, mail_id, expected["sha256"])
        if problem:
            report.problems.append(problem)
    return report
