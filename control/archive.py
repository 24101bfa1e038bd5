"""control-server and `mailgate archive`: the archive store of this node, seen from the control plane.

The store lives on the node that runs maildepot-archiver; the control server (and the
CLI) of that node open the same directory (``maildepot.directory``) directly — read-only
for search, export and verify; hold and retention write through the store's own
transactions, which the archiver's writes wait for (SQLite's lock).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from control.errors import InvalidArgument, NotFound
from control.settings import Settings
from egress.maildepot.search import Query, export, search
from egress.maildepot.store import ArchiveStore

MAX_RESULTS = 10_000


@contextmanager
def opened(settings: Settings, readonly: bool = True) -> Iterator[ArchiveStore]:
    directory = settings.maildepot.path(settings.home)
    if not (directory / "index.sqlite").is_file():  # never made here: the archiver makes the store
        raise NotFound(f"no archive store at {directory} (run maildepot-archiver on this node)")
    try:
        store = ArchiveStore(directory, readonly=readonly, level=settings.maildepot.compression_level)
    except FileNotFoundError as exc:
        raise NotFound(str(exc)) from exc
    try:
        yield store
    finally:
        store.close()


def checked(q: Query) -> Query:
    if not 0 <= q.limit <= MAX_RESULTS:
        raise InvalidArgument(f"limit {q.limit}: give 1 to {MAX_RESULTS} (0: 100)")
    if q.offset < 0:
        raise InvalidArgument(f"offset {q.offset}: cannot be negative")
    if q.since_ms is not None and q.until_ms is not None and q.since_ms >= q.until_ms:
        raise InvalidArgument("since must be before until")
    return q if q.limit else Query(**{**q.__dict__, "limit": 100})


def find(settings: Settings, q: Query) -> list[dict[str, Any]]:
    with opened(settings) as store:
        return search(store, checked(q))


def exported(settings: Settings, q: Query, fmt: str) -> Iterator[tuple[str, bytes]]:
    """(mail id, bytes) per mail found, read one at a time (an export may be larger than memory)."""
    if fmt not in ("mbox", "eml"):
        raise InvalidArgument(f"export format {fmt!r}: use mbox or eml")
    with opened(settings) as store:
        for row, data in export(store, checked(q), fmt):
            yield row["mail_id"], data
