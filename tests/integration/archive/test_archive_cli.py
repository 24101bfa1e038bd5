"""`mailgate archive search|export|verify|hold|retention` as an administrator runs them: asked over
Kafka of a real maildepot-archiver process (real broker), on a store on disk — what they write,
what they say, and their exit codes; and what they say when no archiver answers."""

from __future__ import annotations

import mailbox
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from control.broker.topics import ensure_topics
from core.settings import KafkaSettings, Settings
from egress.maildepot.search import Query, export
from egress.maildepot.store import ArchiveStore
from tests.integration.archive.archiver import archiver
from tests.integration.archive.helpers import DAY_MS, mail, spooled
from tests.integration.archive.test_archive_connector import service_env
from tests.integration.control.conftest import wait_until
from tests.support.kafka import Broker


def cli(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**service_env(settings), "COLUMNS": "250", "USER": "carol"}
    return subprocess.run([sys.executable, "-m", "control.cli", "archive", *args], env=env, cwd=settings.home,
                          capture_output=True, text=True, timeout=60)


@pytest.fixture
def settings(broker: Broker, tmp_path: Path) -> Settings:
    s = Settings(node="n1", home=tmp_path / "node", kafka=KafkaSettings(
        bootstrap_servers=broker.bootstrap_servers, topic_prefix=f"t{uuid.uuid4().hex[:8]}.", partitions=1))
    ensure_topics(s)
    s.home.mkdir()
    return s


@pytest.fixture
def home(settings: Settings, tmp_path: Path) -> Iterator[Path]:
    """The node's home, its archiver running (it made the store) and answering."""
    with archiver(settings, tmp_path / "logs"):
        yield settings.home


def stored(home: Path, records: list[dict], days: int = 3650) -> None:
    """Into the store beside the running archiver (SQLite: two writers chain in turn)."""
    store = ArchiveStore(home / "archive")
    try:
        assert len(store.store_batch(records, days).stored) == len(records)
    finally:
        store.close()


def test_export_writes_eml_files_and_an_mbox(settings: Settings, home: Path) -> None:
    records = [spooled(n, raw=mail(n, sender="dave@example.org" if n % 2 else "alice@example.net")) for n in range(6)]
    stored(home, records)
    eml = home / "eml"
    done = cli(settings, "export", str(eml), "--format", "eml", "--from", "dave@example.org")
    assert done.returncode == 0, done.stderr
    assert "3 mail(s) exported" in done.stdout
    odd = {r["mail_id"]: r for n, r in enumerate(records) if n % 2}
    assert {p.name for p in eml.iterdir()} == {f"{m}.eml" for m in odd}
    for n, record in enumerate(records):
        if n % 2:
            assert (eml / f"{record['mail_id']}.eml").read_bytes() == mail(n, sender="dave@example.org")

    target = home / "all.mbox"
    done = cli(settings, "export", str(target))
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

    again = cli(settings, "export", str(target))  # an existing file is never overwritten
    assert again.returncode == 1 and "exists" in again.stderr
    bad = cli(settings, "export", str(home / "x"), "--format", "pdf")
    assert bad.returncode == 1 and "use mbox or eml" in bad.stderr
    late = cli(settings, "export", str(home / "y.mbox"), "--since", "yesterday")
    assert late.returncode == 1 and "ISO date" in late.stderr


def test_without_an_archiver_the_cli_says_so(settings: Settings) -> None:
    started = time.monotonic()
    done = cli(settings, "export", str(settings.home / "out.mbox"))
    assert done.returncode == 4, done.stdout + done.stderr
    assert "no maildepot-archiver answered" in done.stderr and "is it running?" in done.stderr
    assert not (settings.home / "out.mbox").exists()
    assert time.monotonic() - started < 40  # it gives up, it does not hang


def test_hold_keeps_mail_from_retention_until_released(settings: Settings, tmp_path: Path) -> None:
    now, home = int(time.time() * 1000), settings.home
    sentinel = spooled(0, received_ms=now - 40 * DAY_MS)
    stored(home, [sentinel], days=30)
    with archiver(settings, tmp_path / "logs"):
        # The archiver sweeps once as it starts (then hourly): the sentinel gone, that sweep is over.
        wait_until("the archiver's first sweep", lambda: not row_of(home, sentinel["mail_id"]))
        hold_and_retention(settings, home, now)


def row_of(home: Path, mail_id: str) -> dict | None:
    store = ArchiveStore(home / "archive", readonly=True)
    try:
        row = store.row(mail_id)
        return dict(row) if row else None
    finally:
        store.close()


def hold_and_retention(settings: Settings, home: Path, now: int) -> None:
    old, held, fresh = (spooled(1, received_ms=now - 40 * DAY_MS), spooled(2, received_ms=now - 40 * DAY_MS),
                        spooled(3, received_ms=now - 5 * DAY_MS))
    stored(home, [old, held, fresh], days=30)

    no_reason = cli(settings, "hold", held["mail_id"])
    assert no_reason.returncode == 1 and "--reason" in no_reason.stderr
    done = cli(settings, "hold", held["mail_id"], "--reason", "case 2026-17")
    assert done.returncode == 0 and "on hold: 1 mail(s)" in done.stdout, done.stderr
    unknown = cli(settings, "hold", "01NOSUCHMAIL", "--reason", "case 2026-17")
    assert unknown.returncode == 2 and "not in the archive: 01NOSUCHMAIL" in unknown.stderr

    swept = cli(settings, "retention")
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
    assert "0 mail(s) removed; 1 on legal hold" in cli(settings, "retention").stdout  # nothing more to do

    released = cli(settings, "hold", held["mail_id"], "--release")
    assert released.returncode == 0 and "released: 1 mail(s)" in released.stdout
    swept = cli(settings, "retention")
    assert f"expired {held['mail_id']}" in swept.stdout and "1 mail(s) removed; 0 on legal hold" in swept.stdout
    assert fresh["mail_id"] not in swept.stdout
    verified = cli(settings, "verify")
    assert verified.returncode == 0 and "1 mail(s)" in verified.stdout and "intact" in verified.stdout
