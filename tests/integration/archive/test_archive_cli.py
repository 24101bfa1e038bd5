"""`mailgate archive export|hold|retention` as an administrator runs them, on a store on disk
(no broker): what they write, what they say, and their exit codes."""

from __future__ import annotations

import mailbox
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from egress.maildepot.search import Query, export
from egress.maildepot.store import ArchiveStore
from tests.integration.archive.helpers import DAY_MS, mail, spooled


def cli(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAILGATE_")}
    env.update(MAILGATE_HOME=str(home), COLUMNS="250", USER="carol")
    return subprocess.run([sys.executable, "-m", "control.cli", "archive", *args], env=env, cwd=home,
                          capture_output=True, text=True, timeout=60)


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path / "node"


def stored(home: Path, records: list[dict]) -> None:
    store = ArchiveStore(home / "archive")
    try:
        assert len(store.store_batch(records, 30).stored) == len(records)
    finally:
        store.close()


def test_export_writes_eml_files_and_an_mbox(home: Path) -> None:
    records = [spooled(n, raw=mail(n, sender="dave@example.org" if n % 2 else "alice@example.net")) for n in range(6)]
    stored(home, records)
    eml = home / "eml"
    done = cli(home, "export", str(eml), "--format", "eml", "--from", "dave@example.org")
    assert done.returncode == 0, done.stderr
    assert "3 mail(s) exported" in done.stdout
    odd = {r["mail_id"]: r for n, r in enumerate(records) if n % 2}
    assert {p.name for p in eml.iterdir()} == {f"{m}.eml" for m in odd}
    for n, record in enumerate(records):
        if n % 2:
            assert (eml / f"{record['mail_id']}.eml").read_bytes() == mail(n, sender="dave@example.org")

    target = home / "all.mbox"
    done = cli(home, "export", str(target))
    assert done.returncode == 0, done.stderr
    assert f"6 mail(s) exported to {target} (mbox)" in done.stdout
    store = ArchiveStore(home / "archive", readonly=True)
    try:
        assert target.read_bytes() == b"".join(data for _, data in export(store, Query(limit=10_000), "mbox"))
    finally:
        store.close()
    box = mailbox.mbox(target)
    try:
        assert sorted(m["Subject"] for m in box) == [f"archive test {n}" for n in range(6)]
    finally:
        box.close()

    again = cli(home, "export", str(target))  # an existing file is never overwritten
    assert again.returncode == 1 and "exists" in again.stderr
    bad = cli(home, "export", str(home / "x"), "--format", "pdf")
    assert bad.returncode == 1 and "use mbox or eml" in bad.stderr
    late = cli(home, "export", str(home / "y.mbox"), "--since", "yesterday")
    assert late.returncode == 1 and "ISO date" in late.stderr


def test_export_without_a_store_says_where_it_looked(home: Path) -> None:
    home.mkdir()
    done = cli(home, "export", str(home / "out.mbox"))
    assert done.returncode == 2 and "no archive store" in done.stderr and not (home / "out.mbox").exists()


def test_hold_keeps_mail_from_retention_until_released(home: Path) -> None:
    now = int(time.time() * 1000)
    old, held, fresh = (spooled(1, received_ms=now - 40 * DAY_MS), spooled(2, received_ms=now - 40 * DAY_MS),
                        spooled(3, received_ms=now - 5 * DAY_MS))
    stored(home, [old, held, fresh])

    no_reason = cli(home, "hold", held["mail_id"])
    assert no_reason.returncode == 1 and "--reason" in no_reason.stderr
    done = cli(home, "hold", held["mail_id"], "--reason", "case 2026-17")
    assert done.returncode == 0 and "on hold: 1 mail(s)" in done.stdout, done.stderr
    unknown = cli(home, "hold", "01NOSUCHMAIL", "--reason", "case 2026-17")
    assert unknown.returncode == 2 and "not in the archive: 01NOSUCHMAIL" in unknown.stderr

    swept = cli(home, "retention")
    assert swept.returncode == 0, swept.stderr
    assert f"expired {old['mail_id']}" in swept.stdout and held["mail_id"] not in swept.stdout
    assert "1 mail(s) removed; 1 on legal hold" in swept.stdout
    store = ArchiveStore(home / "archive", readonly=True)
    try:
        assert store.row(old["mail_id"]) is None
        assert store.row(held["mail_id"])["hold"] == "case 2026-17"
        audit = list(store.db.execute("SELECT action, detail FROM audit WHERE mail_id=?", (held["mail_id"],)))
        assert ("hold", "by=cli:carol reason=case 2026-17") in [(a, d) for a, d in audit]
    finally:
        store.close()
    assert "0 mail(s) removed; 1 on legal hold" in cli(home, "retention").stdout  # nothing more to do

    released = cli(home, "hold", held["mail_id"], "--release")
    assert released.returncode == 0 and "released: 1 mail(s)" in released.stdout
    swept = cli(home, "retention")
    assert f"expired {held['mail_id']}" in swept.stdout and "1 mail(s) removed; 0 on legal hold" in swept.stdout
    assert fresh["mail_id"] not in swept.stdout
    verified = cli(home, "verify")
    assert verified.returncode == 0 and "1 mail(s)" in verified.stdout and "intact" in verified.stdout
