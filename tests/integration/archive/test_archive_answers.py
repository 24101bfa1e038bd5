"""The archiver's answers (egress.maildepot.answers) on a store on disk, without Kafka: the replies
each question gets, in order — rows, export chunks of at most 1 MiB, problems, done — and the
refusals, raised before any reply."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from egress.maildepot.answers import CHUNK, Refused, answer
from egress.maildepot.store import ArchiveStore
from tests.integration.archive.helpers import DAY_MS, mail, spooled


def request(action: str, **fields: Any) -> dict[str, Any]:
    return {"mail_id": "01REQUEST", "actor": "admin:alice", "action": action, "sender": "", "recipient": "",
            "subject": "", "text": "", "since_ms": None, "until_ms": None, "mail_ids": [], "limit": 0, "offset": 0,
            "format": "", "reason": None, **fields}


def replies(store: ArchiveStore, action: str, **fields: Any) -> list[tuple[str, dict[str, Any]]]:
    got: list[tuple[str, dict[str, Any]]] = []
    answer(store, request(action, **fields), lambda kind, **f: got.append((kind, f)))
    return got


@pytest.fixture
def store(tmp_path: Path) -> Iterator[ArchiveStore]:
    s = ArchiveStore(tmp_path / "archive")
    yield s
    s.close()


def test_search_and_export_in_pieces(store: ArchiveStore) -> None:
    big = mail(1, body="x" * (2 * CHUNK + 5000))
    records = [spooled(0), spooled(1, raw=big)]
    store.store_batch(records, 3650)
    found = replies(store, "search", text="word0")
    assert [k for k, _ in found] == ["row", "done"]
    row = found[0][1]["row"]
    assert row["mail_id"] == records[0]["mail_id"] and row["rcpt_to"] == ["bob@example.com"] and row["hold"] is None

    pieces = replies(store, "export", format="eml", mail_ids=[records[1]["mail_id"]])
    chunks = [f for k, f in pieces if k == "chunk"]
    assert [k for k, _ in pieces][-1] == "done" and len(chunks) == 3
    assert all(len(c["data"]) <= CHUNK for c in chunks) and [c["last"] for c in chunks] == [False, False, True]
    assert b"".join(c["data"] for c in chunks) == big and {c["chunk_of"] for c in chunks} == {records[1]["mail_id"]}


@pytest.mark.parametrize(("action", "fields", "words"), [
    ("search", {"limit": 10_001}, "limit 10001"),
    ("search", {"offset": -1}, "cannot be negative"),
    ("search", {"since_ms": 2, "until_ms": 1}, "since must be before until"),
    ("export", {"format": "pdf"}, "use mbox or eml"),
    ("hold", {"mail_ids": ["01X"], "reason": "  "}, "needs a reason"),
    ("shred", {}, "unknown archive action 'shred'"),
])
def test_bad_questions_are_refused_before_any_reply(store: ArchiveStore, action: str, fields: dict[str, Any],
                                                     words: str) -> None:
    got: list[str] = []
    with pytest.raises(Refused) as refused:
        answer(store, request(action, **fields), lambda kind, **f: got.append(kind))
    assert refused.value.code == "INVALID_ARGUMENT" and words in str(refused.value) and got == []


def test_hold_retention_and_verify(store: ArchiveStore) -> None:
    now = int(time.time() * 1000)
    old, held = spooled(1, received_ms=now - 40 * DAY_MS), spooled(2, received_ms=now - 40 * DAY_MS)
    store.store_batch([old, held], 30)
    done = replies(store, "hold", mail_ids=[held["mail_id"], "01NOSUCH"], reason="case 9")
    assert done == [("done", {"counts": {"changed": 1}, "mail_ids": ["01NOSUCH"]})]
    swept = replies(store, "retention")
    assert [f["row"]["mail_id"] for k, f in swept if k == "row"] == [old["mail_id"]]
    assert swept[-1] == ("done", {"counts": {"held": 1}})
    assert swept[0][1]["row"]["mail_from"] == "" and swept[0][1]["row"]["rule"] == "test"  # a swept row's defaults
    checked = replies(store, "verify")
    assert checked == [("done", {"counts": {"mails": 1, "entries": 4}})]
