"""The archive store on disk (no broker): stored once, found by search, exported, verified,
tampering found, retention and legal hold."""

from __future__ import annotations

import mailbox
import sqlite3
import time
from pathlib import Path

import pytest
import zstandard

from egress.maildepot.search import Query, export, search
from egress.maildepot.store import ArchiveStore
from egress.maildepot.verify import verify
from tests.integration.archive.helpers import DAY_MS, mail, spooled


@pytest.fixture
def store(tmp_path: Path) -> ArchiveStore:
    return ArchiveStore(tmp_path / "archive", level=3)


def test_each_mail_is_stored_once_and_identical_content_once_on_disk(store: ArchiveStore) -> None:
    records = [spooled(n) for n in range(20)]
    first = store.store_batch(records, 30)
    again = store.store_batch(records[5:], 30)  # a redelivered tail, as after a crash
    assert len(first.stored) == 20 and again.stored == [] and len(again.duplicates) == 15
    twin = spooled(0, raw=mail(0))  # the same content under another mail id
    store.store_batch([twin], 30)
    assert store.count() == 21
    assert len(list(store.objects.rglob("*.zst"))) == 20
    assert verify(store).ok


def test_search_by_sender_recipient_subject_body_and_date(store: ArchiveStore) -> None:
    store.store_batch([spooled(1, raw=mail(1, sender="carol@example.org", subject="Quarterly report",
                                            body="the élan of the numbers", when_ms=1_790_000_000_000)),
                       spooled(2, raw=mail(2, to="dave@example.com", body="lunch on friday",
                                            when_ms=1_790_000_000_000 + 5 * DAY_MS)),
                       spooled(3)], 30)
    assert [r["subject"] for r in search(store, Query(sender="carol@example.org"))] == ["Quarterly report"]
    assert len(search(store, Query(recipient="dave@example.com"))) == 1
    assert len(search(store, Query(subject="quarterly"))) == 1
    assert len(search(store, Query(text="elan numbers"))) == 1  # diacritics folded, words ANDed
    assert search(store, Query(text='friday" OR "x')) == []  # user text is never query syntax
    assert len(search(store, Query(text="friday"))) == 1
    assert len(search(store, Query(since_ms=1_790_000_000_000 + DAY_MS))) == 1


def test_export_as_mbox_reads_back_with_the_standard_library(store: ArchiveStore, tmp_path: Path) -> None:
    store.store_batch([spooled(n) for n in range(3)], 30)
    path = tmp_path / "out.mbox"
    path.write_bytes(b"".join(data for _, data in export(store, Query(), "mbox")))
    box = mailbox.mbox(path)
    try:
        subjects = sorted(m["Subject"] for m in box)
        assert subjects == ["archive test 0", "archive test 1", "archive test 2"]
        assert len(box) == 3  # body lines starting "From " were escaped (">From "), not read as new mails
        assert all("\n>From the start of a line" in m.get_payload() for m in box)
    finally:
        box.close()
    emls = [data for _, data in export(store, Query(), "eml")]
    assert emls[0] == mail(0) or mail(0) in emls


def test_verify_finds_a_changed_a_removed_file_and_an_edited_index(store: ArchiveStore) -> None:
    records = [spooled(n) for n in range(5)]
    store.store_batch(records, 30)
    rows = {r["mail_id"]: r for r in search(store, Query())}
    changed, removed, edited = (rows[records[i]["mail_id"]] for i in range(3))
    path = store.blob_path(changed["sha256"])
    path.write_bytes(zstandard.ZstdCompressor().compress(mail(0).replace(b"mail number", b"mail NUMBER")))
    store.blob_path(removed["sha256"]).unlink()
    with sqlite3.connect(store.directory / "index.sqlite") as db:  # the hold column, edited behind the chain
        db.execute("UPDATE mails SET hold='x' WHERE mail_id=?", (edited["mail_id"],))
    report = verify(ArchiveStore(store.directory, readonly=True))
    text = "\n".join(report.problems)
    assert not report.ok and len(report.problems) == 3, text
    assert f"{changed['mail_id']}: its mail file" in text and "was changed" in text
    assert f"{removed['mail_id']}: its mail file" in text and "is missing" in text
    assert f"{edited['mail_id']}: its legal hold was changed" in text


def test_verify_finds_an_edited_or_cut_audit_chain(store: ArchiveStore) -> None:
    store.store_batch([spooled(n) for n in range(4)], 30)
    with sqlite3.connect(store.directory / "index.sqlite") as db:
        db.execute("UPDATE audit SET detail='rule=other source=import' WHERE seq=2")
    assert any("audit entry 2" in p and "changed" in p for p in verify(store).problems)
    with sqlite3.connect(store.directory / "index.sqlite") as db:
        db.execute("DELETE FROM audit WHERE seq=4")
        db.execute("DELETE FROM mails WHERE id=4")
    problems = verify(store).problems
    assert any("audit entries 4..4 were removed" in p for p in problems), problems


def test_retention_removes_only_expired_mail_not_on_hold(store: ArchiveStore) -> None:
    now = int(time.time() * 1000)
    old, held, fresh, forever = (spooled(1, received_ms=now - 40 * DAY_MS), spooled(2, received_ms=now - 40 * DAY_MS),
                                 spooled(3, received_ms=now - 5 * DAY_MS),
                                 spooled(4, received_ms=now - 4000 * DAY_MS, retention_days=0))
    store.store_batch([old, held, fresh, forever], 30)
    assert store.set_hold([held["mail_id"]], "case 2026-17", "alice") == [held["mail_id"]]
    removed = store.sweep()
    assert [r["mail_id"] for r in removed] == [old["mail_id"]]
    assert store.row(old["mail_id"]) is None and not store.blob_path(removed[0]["sha256"]).exists()
    assert {r["mail_id"] for r in search(store, Query())} == {held["mail_id"], fresh["mail_id"], forever["mail_id"]}
    audit = [(r["action"], r["mail_id"]) for r in store.db.execute("SELECT action, mail_id FROM audit ORDER BY seq")]
    assert ("expired", old["mail_id"]) in audit and ("hold", held["mail_id"]) in audit
    store.set_hold([held["mail_id"]], None, "alice")
    assert [r["mail_id"] for r in store.sweep()] == [held["mail_id"]]  # released: retention applies again
    assert verify(store).ok, verify(store).problems
