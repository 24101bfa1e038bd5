"""maildepot-archiver: what the archive answers — search, export, verify, hold/release, retention —
for one ArchiveRequest, as the ArchiveReply records that carry it.

The questions come over Kafka (``egress.maildepot.asked``), so a control server or `mailgate archive`
on any node reaches the store of the node that keeps it. An answer is numbered replies (``seq``):
``started``, then rows, chunks or problems, ending with ``done`` — or ``error`` (a bad query is
refused before anything else).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from egress.maildepot.search import Query, export, search
from egress.maildepot.store import ArchiveStore
from egress.maildepot.verify import verify

MAX_RESULTS = 10_000
CHUNK = 1 << 20  # bytes of a mail per reply: far below the topic's record limit and gRPC's 4 MB
READ_ONLY = frozenset({"search", "export", "verify"})
ROW_FIELDS = ("mail_id", "mail_from", "rcpt_to", "subject", "date_ms", "received_ms", "size", "sha256", "rule",
              "source", "hold", "expires_ms")
ROW_DEFAULTS: dict[str, Any] = {"mail_from": "", "rcpt_to": [], "subject": "", "size": 0, "source": ""}


class Refused(Exception):
    """The request cannot be answered; ``code`` is the status the asker gets."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def checked(q: Query) -> Query:
    if not 0 <= q.limit <= MAX_RESULTS:
        raise Refused("INVALID_ARGUMENT", f"limit {q.limit}: give 1 to {MAX_RESULTS} (0: 100)")
    if q.offset < 0:
        raise Refused("INVALID_ARGUMENT", f"offset {q.offset}: cannot be negative")
    if q.since_ms is not None and q.until_ms is not None and q.since_ms >= q.until_ms:
        raise Refused("INVALID_ARGUMENT", "since must be before until")
    return q if q.limit else Query(**{**q.__dict__, "limit": 100})


def query_of(request: dict[str, Any]) -> Query:
    return checked(Query(sender=request["sender"], recipient=request["recipient"], subject=request["subject"],
                         text=request["text"], since_ms=request["since_ms"], until_ms=request["until_ms"],
                         mail_ids=tuple(request["mail_ids"]), limit=request["limit"], offset=request["offset"]))


def row_record(row: dict[str, Any]) -> dict[str, Any]:
    """A store row as the ArchivedMail record (a swept row lacks some columns: their defaults)."""
    return {name: row.get(name, ROW_DEFAULTS.get(name)) for name in ROW_FIELDS}


def open_store(directory: Path, level: int, readonly: bool) -> ArchiveStore:
    if not (directory / "index.sqlite").is_file():  # never made here: the archiver makes the store
        raise Refused("NOT_FOUND", f"no archive store at {directory} (maildepot-archiver makes it)")
    try:
        return ArchiveStore(directory, readonly=readonly, level=level)
    except FileNotFoundError as exc:
        raise Refused("NOT_FOUND", str(exc)) from exc


Reply = Callable[..., None]  # reply(kind, **fields of ArchiveReply)


def answer(store: ArchiveStore, request: dict[str, Any], reply: Reply) -> None:
    """Answers one request from ``store``; raises Refused before the first reply when it is wrong."""
    action = request["action"]
    if action == "search":
        for row in search(store, query_of(request)):
            reply("row", row=row_record(row))
    elif action == "export":
        _export(store, request, reply)
    elif action == "verify":
        report = verify(store)
        for problem in report.problems:
            reply("problem", message=problem)
        reply("done", counts={"mails": report.mails, "entries": report.entries})
        return
    elif action in ("hold", "release"):
        _hold(store, request, reply)
        return
    elif action == "retention":
        for row in store.sweep():
            reply("row", row=row_record(row))
        held = store.db.execute("SELECT count(*) FROM mails WHERE hold IS NOT NULL").fetchone()[0]
        reply("done", counts={"held": held})
        return
    else:
        raise Refused("INVALID_ARGUMENT", f"unknown archive action {action!r}")
    reply("done")


def _export(store: ArchiveStore, request: dict[str, Any], reply: Reply) -> None:
    fmt = request["format"]
    if fmt not in ("mbox", "eml"):
        raise Refused("INVALID_ARGUMENT", f"export format {fmt!r}: use mbox or eml")
    for row, data in export(store, query_of(request), fmt):
        for start in range(0, max(len(data), 1), CHUNK):
            reply("chunk", chunk_of=row["mail_id"], data=data[start:start + CHUNK], last=start + CHUNK >= len(data))


def _hold(store: ArchiveStore, request: dict[str, Any], reply: Reply) -> None:
    reason = (request["reason"] or "").strip()
    if request["action"] == "hold" and not reason:
        raise Refused("INVALID_ARGUMENT", "a legal hold needs a reason (e.g. a case number)")
    ids = list(request["mail_ids"])
    changed = store.set_hold(ids, reason if request["action"] == "hold" else None, request["actor"])
    unknown = [m for m in ids if store.row(m) is None]
    reply("done", counts={"changed": len(changed)}, mail_ids=unknown)
