"""maildepot-connector: import of mbox files, Maildir folders and .eml files from a directory.

Whatever lies in the import directory is read with the standard library's
``mailbox`` module, published to archive.spool, and moved to ``done/`` once every
message of it was acknowledged by Kafka; a file that cannot be read goes to
``failed/`` with a ``.reason`` file next to it. Each message gets a mail id made
from its content and place (``stable_mail_id``), so an import repeated after a
crash is stored once. Write files elsewhere and move them in (a rename), so that
no half-written file is read.
"""

from __future__ import annotations

import asyncio
import email.parser
import email.policy
import hashlib
import mailbox
import shutil
import time
from collections.abc import Iterator
from email.utils import getaddresses, parseaddr, parsedate_to_datetime
from pathlib import Path

from core.logging import get_logger
from ingress.connector.settings import Settings
from ingress.connector import metrics
from ingress.connector.spool import Spool, spool_record
from schemas.ids import stable_mail_id

log = get_logger("maildepot-connector")
SETTLE_S = 1.0  # a file changed this recently may still be being written
CHUNK = 500  # records in flight at once
_headers = email.parser.BytesHeaderParser(policy=email.policy.compat32)


def kind_of(path: Path) -> str | None:
    if path.is_dir():
        return "maildir" if (path / "cur").is_dir() and (path / "new").is_dir() else None
    if path.suffix.lower() == ".eml":
        return "eml"
    if path.suffix.lower() in (".mbox", ".mbx"):
        return "mbox"
    with open(path, "rb") as f:
        return "mbox" if f.read(5) == b"From " else None


def messages(path: Path, kind: str) -> Iterator[tuple[str, bytes]]:
    """(key within the source, raw message) of every message in a source."""
    if kind == "eml":
        yield "", path.read_bytes()
        return
    box: mailbox.Mailbox = (mailbox.mbox(path, create=False) if kind == "mbox"
                            else mailbox.Maildir(path, factory=None, create=False))
    try:
        for key in sorted(box.keys(), key=str):
            yield str(key), box.get_bytes(key)
    finally:
        box.close()


def envelope(raw: bytes, fallback_ms: int) -> tuple[str, list[str], int]:
    """Sender, recipients and time of an imported message, from its headers."""
    h = _headers.parsebytes(raw)
    sender = parseaddr(h.get("Return-Path", "") or h.get("From", ""))[1]
    delivered = h.get_all("Delivered-To", []) + h.get_all("X-Original-To", [])
    rcpts = [a for _, a in getaddresses(delivered or h.get_all("To", []) + h.get_all("Cc", [])) if a]
    try:
        when = int(parsedate_to_datetime(h["Date"]).timestamp() * 1000) if h["Date"] else fallback_ms
    except (TypeError, ValueError):
        when = fallback_ms
    return sender, rcpts, when


async def import_source(settings: Settings, spool: Spool, path: Path, kind: str) -> int:
    mtime_ms = int(path.stat().st_mtime * 1000)
    pending: list[asyncio.Future[None]] = []
    count = 0
    for key, raw in messages(path, kind):
        sender, rcpts, when = envelope(raw, mtime_ms)
        digest = hashlib.sha256(f"{path.name}\0{key}\0".encode() + raw).digest()
        record = spool_record(settings, raw, sender, rcpts, "import", f"{kind}:{path.name}:{key}".rstrip(":"),
                              mail_id=stable_mail_id(when, digest), received_ms=when)
        pending.append(asyncio.ensure_future(spool.put(record)))
        count += 1
        if len(pending) >= CHUNK:
            await asyncio.gather(*pending)
            pending.clear()
    await asyncio.gather(*pending)
    return count


def _move(path: Path, into: Path) -> Path:
    into.mkdir(exist_ok=True)
    target = into / path.name
    if target.exists():
        target = into / f"{path.name}.{time.time_ns()}"
    shutil.move(str(path), target)
    return target


async def scan(settings: Settings, spool: Spool, directory: Path) -> int:
    """Imports every settled source in ``directory``; returns the messages published."""
    total = 0
    for path in sorted(directory.iterdir()):
        if path.name in ("done", "failed") or path.name.startswith(".") or \
                time.time() - path.stat().st_mtime < SETTLE_S:
            continue
        kind: str | None = None
        try:
            kind = kind_of(path)
            if kind is None:
                raise ValueError("neither an mbox file, a Maildir folder (cur/ new/) nor an .eml file")
            count = await import_source(settings, spool, path, kind)
        except TimeoutError:  # Kafka did not answer in time (an OSError too): left in place for the next scan
            raise
        except (OSError, ValueError, mailbox.Error) as exc:
            metrics.count_import(kind, "failed")
            target = _move(path, directory / "failed")
            target.with_name(target.name + ".reason").write_text(f"{type(exc).__name__}: {exc}\n")
            log.warning("import failed", source=path.name, reason=str(exc))
            continue
        metrics.count_import(kind, "imported")
        _move(path, directory / "done")
        log.info("imported", source=path.name, kind=kind, mails=count)
        total += count
    return total
