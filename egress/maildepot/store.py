"""maildepot-archiver: the archive store on disk.

    <directory>/objects/ab/<sha256>.zst   each distinct mail once, zstd-compressed, named by its SHA-256
    <directory>/index.sqlite              mails (one row per mail id), the FTS5 full-text index, the audit chain
    <directory>/chain.head                the last audit hash (see chain.py)

Storing is idempotent: a mail id already stored is skipped, and identical content
is kept once whatever its ids. A batch is one SQLite transaction; the mail files
are written (and fsynced) before it commits, so the index never names a file that
is not there. The archiver commits its Kafka offsets only after that commit.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import zstandard

from egress.maildepot.chain import GENESIS, Entry, read_head, write_head
from egress.maildepot.index import index_entry
from schemas import unpack_message

DAY_MS = 86_400_000
SCHEMA = """
CREATE TABLE IF NOT EXISTS mails (
  id INTEGER PRIMARY KEY, mail_id TEXT NOT NULL UNIQUE, sha256 TEXT NOT NULL, size INTEGER NOT NULL,
  received_ms INTEGER NOT NULL, stored_ms INTEGER NOT NULL, date_ms INTEGER NOT NULL,
  mail_from TEXT NOT NULL, rcpt_to TEXT NOT NULL, subject TEXT NOT NULL, source TEXT NOT NULL,
  rule TEXT NOT NULL, direction TEXT, verdict TEXT, origin TEXT, expires_ms INTEGER, hold TEXT);
CREATE INDEX IF NOT EXISTS mails_sha ON mails(sha256);
CREATE INDEX IF NOT EXISTS mails_date ON mails(date_ms);
CREATE INDEX IF NOT EXISTS mails_expiry ON mails(expires_ms) WHERE expires_ms IS NOT NULL;
CREATE VIRTUAL TABLE IF NOT EXISTS mail_text USING fts5(
  sender, recipients, subject, body, tokenize = 'unicode61 remove_diacritics 2');
CREATE TABLE IF NOT EXISTS audit (
  seq INTEGER PRIMARY KEY, time_ms INTEGER NOT NULL, action TEXT NOT NULL, mail_id TEXT NOT NULL,
  sha256 TEXT NOT NULL, detail TEXT NOT NULL, prev TEXT NOT NULL, hash TEXT NOT NULL);
"""


@dataclass
class Stored:
    stored: list[str] = field(default_factory=list)
    duplicates: list[str] = field(default_factory=list)


def now_ms() -> int:
    return int(time.time() * 1000)


class ArchiveStore:
    def __init__(self, directory: Path, readonly: bool = False, level: int = 10) -> None:
        self.directory, self.readonly = directory, readonly
        self.objects = directory / "objects"
        self.head_path = directory / "chain.head"
        db = directory / "index.sqlite"
        if readonly:
            if not db.is_file():
                raise FileNotFoundError(f"no archive store at {directory} (run maildepot-archiver on this node)")
            self.db = sqlite3.connect(f"file:{db}?mode=ro", uri=True, isolation_level=None,
                                      check_same_thread=False)
        else:
            self.objects.mkdir(parents=True, exist_ok=True)
            self.db = sqlite3.connect(db, isolation_level=None, check_same_thread=False)
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.executescript(SCHEMA)
        self.db.execute("PRAGMA busy_timeout=30000")
        self.db.row_factory = sqlite3.Row
        self._level, self._local = level, threading.local()  # a ZstdCompressor is not thread-safe: one each
        self._zd = zstandard.ZstdDecompressor()
        self._pool = ThreadPoolExecutor(max_workers=8, thread_name_prefix="maildepot-fsync")
        if not readonly:
            self._anchor()

    def close(self) -> None:
        self._pool.shutdown()
        self.db.close()

    # -- writing -----------------------------------------------------------------------

    @contextmanager
    def _write(self) -> Iterator[list[tuple[int, str]]]:
        """One write transaction (taken at once, so two writers chain in turn); yields a list
        that holds the (seq, hash) of the newest audit entry, for the head file."""
        if self.readonly:
            raise PermissionError(f"the archive store at {self.directory} is open read-only")
        self.db.execute("BEGIN IMMEDIATE")
        last = self.db.execute("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1").fetchone()
        tip = [(last[0], last[1]) if last else (0, GENESIS)]
        try:
            yield tip
            self.db.execute("COMMIT")
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        write_head(self.head_path, *tip[-1])

    def _audit(self, tip: list[tuple[int, str]], action: str, mail_id: str, sha: str, detail: str,
               when: int) -> None:
        seq, prev = tip[-1]
        entry = Entry(seq + 1, when, action, mail_id, sha, detail)
        digest = entry.digest(prev)
        self.db.execute("INSERT INTO audit VALUES (?,?,?,?,?,?,?,?)",
                        (entry.seq, when, action, mail_id, sha, detail, prev, digest))
        tip.append((entry.seq, digest))

    def _anchor(self) -> None:
        """After a crash between a commit and its head write, the head catches up here."""
        last = self.db.execute("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1").fetchone()
        head = read_head(self.head_path)
        if last and (head is None or head[0] < last[0]):
            write_head(self.head_path, last[0], last[1])

    def blob_path(self, sha: str) -> Path:
        return self.objects / sha[:2] / f"{sha}.zst"

    def _compressor(self) -> zstandard.ZstdCompressor:
        if not hasattr(self._local, "zc"):
            self._local.zc = zstandard.ZstdCompressor(level=self._level)
        return self._local.zc  # type: ignore[no-any-return]

    def _put_blob(self, raw: bytes) -> str:
        sha = hashlib.sha256(raw).hexdigest()
        path = self.blob_path(sha)
        if not path.exists():
            path.parent.mkdir(exist_ok=True)
            tmp = path.with_suffix(f".{os.getpid()}.{threading.get_ident()}.tmp")
            with open(tmp, "wb") as f:
                f.write(self._compressor().compress(raw))
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        return sha

    def store_batch(self, records: Iterable[dict[str, Any]], default_retention_days: int) -> Stored:
        """Stores ArchiveSpooled records; ids already in the store are skipped (redelivery)."""
        result = Stored()
        raws = [(record, unpack_message(record["message"])) for record in records]
        # The files first, fsynced in parallel (the disk merges concurrent flushes): durable before the commit.
        shas = list(self._pool.map(self._put_blob, [raw for _, raw in raws]))
        with self._write() as tip:
            for (record, raw), sha in zip(raws, shas):
                if self.db.execute("SELECT 1 FROM mails WHERE mail_id=?", (record["mail_id"],)).fetchone():
                    result.duplicates.append(record["mail_id"])
                    continue
                self._insert(tip, record, raw, sha, default_retention_days)
                result.stored.append(record["mail_id"])
        return result

    def _insert(self, tip: list[tuple[int, str]], record: dict[str, Any], raw: bytes, sha: str,
                default_days: int) -> None:
        found = index_entry(raw, record["mail_from"], list(record["rcpt_to"]))
        days = record.get("retention_days")
        days = default_days if days is None else days
        expires = record["received_time"] + days * DAY_MS if days else None
        stored = now_ms()
        cur = self.db.execute(
            "INSERT INTO mails (mail_id, sha256, size, received_ms, stored_ms, date_ms, mail_from, rcpt_to, "
            "subject, source, rule, direction, verdict, origin, expires_ms) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            (record["mail_id"], sha, len(raw), record["received_time"], stored,
             found.date_ms or record["received_time"], record["mail_from"], json.dumps(list(record["rcpt_to"])),
             found.subject, record["source"], record["rule"], record.get("direction"), record.get("verdict"),
             record.get("origin"), expires))
        self.db.execute("INSERT INTO mail_text (rowid, sender, recipients, subject, body) VALUES (?,?,?,?,?)",
                        (cur.lastrowid, found.senders, found.recipients, found.subject, found.body))
        self._audit(tip, "stored", record["mail_id"], sha, f"rule={record['rule']} source={record['source']}",
                    stored)

    def sweep(self, when: int | None = None) -> list[dict[str, Any]]:
        """Removes every mail whose retention ran out and that is not on hold; returns what went."""
        when = now_ms() if when is None else when
        with self._write() as tip:
            rows = [dict(r) for r in self.db.execute(
                "SELECT id, mail_id, sha256, rule, expires_ms FROM mails "
                "WHERE expires_ms IS NOT NULL AND expires_ms <= ? AND hold IS NULL", (when,))]
            for row in rows:
                self.db.execute("DELETE FROM mails WHERE id=?", (row["id"],))
                self.db.execute("DELETE FROM mail_text WHERE rowid=?", (row["id"],))
                self._audit(tip, "expired", row["mail_id"], row["sha256"],
                            f"rule={row['rule']} expired_at={row['expires_ms']}", when)
        for sha in {r["sha256"] for r in rows}:  # after the commit: a crash leaves a file, never a dangling row
            if not self.db.execute("SELECT 1 FROM mails WHERE sha256=?", (sha,)).fetchone():
                self.blob_path(sha).unlink(missing_ok=True)
        return rows

    def set_hold(self, mail_ids: Iterable[str], reason: str | None, actor: str) -> list[str]:
        """Puts mail on legal hold (reason given) or releases it (None); returns the ids changed."""
        changed: list[str] = []
        with self._write() as tip:
            for mail_id in mail_ids:
                row = self.db.execute("SELECT sha256, hold FROM mails WHERE mail_id=?", (mail_id,)).fetchone()
                if row is None or row["hold"] == reason:
                    continue
                self.db.execute("UPDATE mails SET hold=? WHERE mail_id=?", (reason, mail_id))
                self._audit(tip, "hold" if reason else "release", mail_id, row["sha256"],
                            f"by={actor} reason={reason or ''}", now_ms())
                changed.append(mail_id)
        return changed

    # -- reading -----------------------------------------------------------------------

    def raw(self, sha: str) -> bytes:
        return self._zd.decompress(self.blob_path(sha).read_bytes())

    def count(self) -> int:
        return int(self.db.execute("SELECT count(*) FROM mails").fetchone()[0])

    def row(self, mail_id: str) -> sqlite3.Row | None:
        return self.db.execute("SELECT * FROM mails WHERE mail_id=?", (mail_id,)).fetchone()
