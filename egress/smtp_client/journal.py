"""smtp-client's local delivery journal: a next hop's 250 is on this machine's disk
before its delivery log record goes to Kafka.

The delivery log (``deliverylog.py``) marks a recipient done once the broker has the
record: one broker round trip (1-30+ ms under load) after the 250 was read. A
``kill -9`` in that window made the next run deliver the mail again. The journal
closes most of it for a process crash: once the delivering task has the 250, one
``os.write`` appends the mark (mail id, destination, recipients, reply) to an
append-only file, and only then is the Kafka record produced. What ``write(2)`` returned for is in the kernel's
page cache and survives the death of the process. On start the client reads its
journal, writes every mark the Kafka log does not have yet (idempotently: the log
merges recipient sets), and only then consumes.

Covered: a crash of the process (kill -9, OOM kill, a Python crash) once the
reply is read from the socket: the write is done inside aiosmtplib's ``data_received``,
in the callback that parses the 250 (``connection.MarkingProtocol``), before the
delivering task is woken; the task then produces the Kafka record. (Done in the task
instead, as first tried, it left the loop turns between the parsed reply and the
resumed task: under load 1-12 ms, and most duplicates of bench/delivery_kill.py fell
there.) What remains is a 250 still unread in the socket buffer at the kill, or given
by the next hop after it: no client can record that one (RFC 1047); the mail is
delivered again on the next run (a duplicate, never a loss).
Not covered: a crash of the machine (power loss, kernel panic) unless ``journal_fsync``
is on (marks are then fsync'ed in batches before they go to Kafka, which costs a disk
flush per batch); and a partition taken over by another node before this instance
restarts: the journal is local, the other node knows only what reached Kafka.

Layout: ``<home>/smtp-client/<node>/<delivery log topic>/`` (the topic carries the
prefix, so two gateways on one machine never share a journal), segment files
``<seq>.journal`` of JSON lines. A new segment is started on each ``rotate()`` (the
service's housekeeping, every second); the oldest segments are deleted once every
mark in them is acknowledged by Kafka. ``forget`` lines (a copy finished and its
offset committed, its log key tombstoned) keep a replay from writing the mark again.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from core.logging import get_logger

log = get_logger("smtp-client")

SUFFIX = ".journal"


@dataclass
class Segment:
    path: Path
    fd: int | None = None  # None: a segment of an earlier run (read, never written again)
    pending: int = 0  # marks written here that Kafka has not acknowledged yet
    size: int = 0


@dataclass
class Entry:
    """One journalled mark; ``segment`` is where it was written (acknowledged through it)."""

    key: str
    mail_id: str
    destination: str
    recipients: list[str]
    reply: str = ""
    segment: Segment | None = field(default=None, repr=False, compare=False)


def _parse(line: bytes) -> dict[str, object] | None:
    try:
        found = json.loads(line)
    except ValueError:  # the last line of a machine crash without fsync may be cut
        return None
    return found if isinstance(found, dict) and isinstance(found.get("k"), str) else None


def read_entries(paths: Iterable[Path]) -> list[Entry]:
    """The marks of these segments (oldest first), merged per key, without the forgotten keys."""
    entries: dict[str, Entry] = {}
    for path in paths:
        for line in path.read_bytes().splitlines():
            found = _parse(line)
            if found is None:
                continue
            key = str(found["k"])
            if found.get("forget"):
                entries.pop(key, None)
                continue
            rcpts = [str(r) for r in found.get("r") or []]  # type: ignore[attr-defined]
            entry = entries.setdefault(key, Entry(key, str(found.get("m", "")), str(found.get("d", "")), []))
            entry.recipients = sorted(set(entry.recipients) | set(rcpts))
            entry.reply = str(found.get("reply") or entry.reply)
    return list(entries.values())


class Journal:
    """Used from the event loop's thread only (``close`` excepted, once everything stopped)."""

    def __init__(self, directory: Path, fsync: bool = False) -> None:
        self.directory = directory
        self.fsync = fsync
        self._segments: deque[Segment] = deque()
        self._written = 0  # lines written, and how many of them are fsync'ed
        self._synced = 0
        self._syncing: asyncio.Future[None] | None = None

    def open(self) -> list[Entry]:
        """Start a new segment; returns the marks the earlier runs left (kept until ``recovered()``)."""
        self.directory.mkdir(parents=True, exist_ok=True)
        old = sorted(self.directory.glob(f"*{SUFFIX}"), key=lambda p: int(p.stem) if p.stem.isdigit() else -1)
        self._segments.extend(Segment(p, pending=1) for p in old)  # held until the replay is acknowledged
        self._new_segment(int(old[-1].stem) + 1 if old and old[-1].stem.isdigit() else 0)
        return read_entries(old)

    def recovered(self) -> None:
        """The earlier runs' marks are on Kafka: their segments may go."""
        for segment in self._segments:
            if segment.fd is None:
                segment.pending = 0
        self._drop_acknowledged()

    def _new_segment(self, seq: int) -> None:
        path = self.directory / f"{seq:012d}{SUFFIX}"
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        if self.fsync:  # the new file's name must survive a power loss too
            dirfd = os.open(self.directory, os.O_RDONLY)
            try:
                os.fsync(dirfd)
            finally:
                os.close(dirfd)
        self._segments.append(Segment(path, fd))

    def _write(self, line: dict[str, object]) -> Segment:
        segment = self._segments[-1]
        assert segment.fd is not None, "journal not open"
        data = json.dumps(line, separators=(",", ":")).encode() + b"\n"
        os.write(segment.fd, data)  # one write(2) of a small line: in the page cache once it returns
        segment.size += len(data)
        self._written += 1
        return segment

    def append(self, key: str, mail_id: str, destination: str, recipients: Iterable[str], reply: str = "") -> Entry:
        rcpts = sorted(recipients)
        segment = self._write({"k": key, "m": mail_id, "d": destination, "r": rcpts, "reply": reply})
        segment.pending += 1
        return Entry(key, mail_id, destination, rcpts, reply, segment)

    def acknowledged(self, entry: Entry) -> None:
        """Kafka has this mark; called once per ``append``."""
        if entry.segment is not None:
            entry.segment.pending -= 1
            entry.segment = None

    def forgot(self, keys: Iterable[str]) -> None:
        for key in keys:
            self._write({"k": key, "forget": True})

    async def synced(self) -> None:
        """With ``fsync``: returns once every line written so far is on disk (one fsync serves many)."""
        target = self._written
        while self.fsync and self._synced < target:
            if self._syncing is None:
                self._syncing = asyncio.ensure_future(self._sync_once())
            await asyncio.shield(self._syncing)

    async def _sync_once(self) -> None:
        upto, fd = self._written, self._segments[-1].fd
        try:
            if fd is not None:
                await asyncio.to_thread(os.fsync, fd)  # segments are closed only once acknowledged
            self._synced = max(self._synced, upto)
        finally:
            self._syncing = None

    def rotate(self) -> None:
        """A new segment if the current one has lines, and the oldest acknowledged ones deleted."""
        current = self._segments[-1] if self._segments else None
        if current is not None and current.fd is not None and current.size > 0 and self._syncing is None:
            if self.fsync:  # its last lines may not be synced yet; later syncs see only the new one
                os.fsync(current.fd)
                self._synced = self._written
            self._new_segment(int(current.path.stem) + 1)
        self._drop_acknowledged()

    def _drop_acknowledged(self) -> None:
        # Oldest first, in order: a forget line is never deleted before the mark it cancels.
        while len(self._segments) > 1 and self._segments[0].pending <= 0:
            segment = self._segments.popleft()
            if segment.fd is not None:
                os.close(segment.fd)
            segment.path.unlink(missing_ok=True)

    def files(self) -> list[Path]:
        return [s.path for s in self._segments]

    def close(self) -> None:
        """Closes the files; with every mark acknowledged, nothing is left for the next run."""
        if all(s.pending <= 0 for s in self._segments):
            self._segments.append(Segment(self.directory / "closing", None))  # lets the loop drop them all
            self._drop_acknowledged()
            self._segments.clear()
        for segment in self._segments:
            if segment.fd is not None:
                os.close(segment.fd)
                segment.fd = None
