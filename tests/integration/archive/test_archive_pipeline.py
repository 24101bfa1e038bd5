"""The archive in a running gateway (`mailgate up`, real broker): 1,000 mails through the pipeline
(smtp-server → spam-filter → message-validation → message-archive) and the connectors (journal
SMTP endpoint; mbox, Maildir and .eml imports), the archiver killed with SIGKILL mid-stream —
every mail stored exactly once, found by search (store, CLI, gRPC), exported, and a changed
mail file reported by `mailgate archive verify`."""

from __future__ import annotations

import asyncio
import json
import mailbox
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import aiosmtplib
import grpc
import pytest

from control.proto.rpc import pb, pb_grpc
from egress.maildepot.search import Query, search
from egress.maildepot.store import ArchiveStore
from tests.integration.archive.helpers import joined, mail
from tests.integration.control.conftest import wait_until
from tests.support.gateway import Gateway
from tests.support.kafka import Broker
from tests.support.ports import free_port
from tests.support.sink import Sink
from tests.support.smtp import send_mail

TOKEN = "archive-admin-7d1e"
RULES = [{"name": "not-org", "domains": ["example.org"], "archive": False}, {"name": "all", "retention_days": 3650}]
SMTP_ARCHIVED, SMTP_NOT, JOURNAL, MBOX, MAILDIR, EML = 40, 10, 260, 400, 200, 100
TOTAL = SMTP_ARCHIVED + JOURNAL + MBOX + MAILDIR + EML  # 1,000


@pytest.fixture
def gateway(broker: Broker, sink: Sink, tmp_path: Path) -> Iterator[Gateway]:
    env = {"MAILGATE_ARCHIVE__ENABLED": "true", "MAILGATE_ARCHIVE__RULES": json.dumps(RULES),
           "MAILGATE_CONNECTOR__JOURNAL_PORT": str(free_port()), "MAILGATE_CONNECTOR__SCAN_INTERVAL_S": "0.5",
           "MAILGATE_MAILDEPOT__BATCH": "50", "MAILGATE_CONTROL__PORT": str(free_port()),
           "MAILGATE_CONTROL__TOKENS": f"admin:alice={TOKEN}", "MAILGATE_CONTROL__METRICS_PORT_BASE": "0"}
    with Gateway(broker.bootstrap_servers, tmp_path / "node", sink.address, **env) as gw:
        yield gw


def store_of(gw: Gateway) -> ArchiveStore | None:
    try:
        return ArchiveStore(gw.home / "archive", readonly=True)
    except FileNotFoundError:
        return None


def archived(gw: Gateway) -> int:
    store = store_of(gw)
    if store is None:
        return 0
    try:
        return store.count()
    finally:
        store.close()


def child_pid(gw: Gateway, service: str) -> int | None:
    """The pid of the gateway's child running ``service`` (other gateways may run one too)."""
    assert gw.proc is not None
    for entry in Path("/proc").iterdir():
        try:
            if not entry.name.isdigit():
                continue
            if int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) != gw.proc.pid:  # its parent
                continue
            if f"service\0{service}\0" in (entry / "cmdline").read_text():
                return int(entry.name)
        except (OSError, IndexError, ValueError):
            continue
    return None


def drop_imports(gw: Gateway, tmp: Path) -> None:
    """An mbox, a Maildir and .eml files, written aside and moved into the import directory."""
    staging = tmp / "staging"
    staging.mkdir()
    box = mailbox.mbox(staging / "old.mbox")
    for n in range(MBOX):
        box.add(mail(1000 + n))
    box.close()
    maildir = mailbox.Maildir(staging / "bob", create=True)
    for n in range(MAILDIR):
        maildir.add(mail(2000 + n))
    for n in range(EML):
        (staging / f"m{n}.eml").write_bytes(mail(3000 + n))
    target = gw.home / "archive-import"
    target.mkdir(exist_ok=True)
    for path in staging.iterdir():
        os.rename(path, target / path.name)


async def journal(port: int) -> list[str]:
    ids = []
    async with aiosmtplib.SMTP(hostname="127.0.0.1", port=port, timeout=30) as smtp:
        for n in range(JOURNAL):
            _, text = await smtp.sendmail("journal@example.com", ["archive@example.com"], mail(4000 + n))
            ids.append(text.rsplit(" ", 1)[1])
    return ids


async def through_smtp(gw: Gateway) -> list[str]:
    ids = []
    for n in range(SMTP_ARCHIVED + SMTP_NOT):
        to = "bob@example.com" if n < SMTP_ARCHIVED else "carol@example.org"
        text = await send_mail(gw.smtp_port, mail(n, to=to), sender="alice@example.net", recipients=[to])
        ids.append(text.rsplit(" ", 1)[1])
    return ids


def test_a_thousand_mails_archived_once_through_a_kill_and_found(gateway: Gateway, sink: Sink,
                                                                 tmp_path: Path) -> None:
    gw = gateway
    smtp_ids = asyncio.run(through_smtp(gw))
    drop_imports(gw, tmp_path)
    wait_until("the archiver stored some", lambda: archived(gw) >= 100, timeout=120)
    victim = wait_until("the archiver's pid", lambda: child_pid(gw, "maildepot-archiver"))
    os.kill(victim, signal.SIGKILL)  # mid-stream: the imports are still being stored
    at_kill = archived(gw)
    journal_port = int(gw.env["MAILGATE_CONNECTOR__JOURNAL_PORT"])
    journal_ids = asyncio.run(journal(journal_port))  # while the archiver is down and restarting
    assert len(set(journal_ids)) == JOURNAL
    wait_until("every mail archived", lambda: archived(gw) >= TOTAL, timeout=180)
    time.sleep(2)  # anything more (a double store) would land now
    assert at_kill < TOTAL, "the kill came after the end of the stream: nothing was tested"
    assert wait_until("archiver restarted", lambda: child_pid(gw, "maildepot-archiver")) != victim

    store = store_of(gw)
    assert store is not None
    try:
        rows = search(store, Query(limit=5000))
        stored_events = store.db.execute("SELECT count(*) FROM audit WHERE action='stored'").fetchone()[0]
        assert len(rows) == TOTAL == stored_events == len({r["mail_id"] for r in rows})
        subjects = {r["subject"] for r in rows}
        expected = {f"archive test {n}" for n in [*range(SMTP_ARCHIVED), *range(1000, 1000 + MBOX),
                    *range(2000, 2000 + MAILDIR), *range(3000, 3000 + EML), *range(4000, 4000 + JOURNAL)]}
        assert subjects == expected  # none missing, none from example.org (rule "not-org")
        ids = {r["mail_id"] for r in rows}
        assert set(smtp_ids[:SMTP_ARCHIVED]) <= ids and not set(smtp_ids[SMTP_ARCHIVED:]) & ids
        assert set(journal_ids) <= ids
        assert {r["rule"] for r in rows if r["source"] == "pipeline"} == {"all"}
        assert [r["subject"] for r in search(store, Query(text="word2077"))] == ["archive test 2077"]
        assert len(search(store, Query(recipient="carol@example.org"))) == 0
        changed = search(store, Query(text="word4010"))[0]
    finally:
        store.close()
    found_by_grpc(gw)
    sink.wait_for(SMTP_ARCHIVED + SMTP_NOT, timeout=60)  # archiving took a copy; delivery went on
    tampered_found_by_cli(gw, changed)


def found_by_grpc(gw: Gateway) -> None:
    with grpc.insecure_channel(f"127.0.0.1:{gw.env['MAILGATE_CONTROL__PORT']}") as channel:
        stub = pb_grpc.ControlStub(channel)
        auth = [("authorization", f"Bearer {TOKEN}")]
        call = lambda m, r: wait_until(f"{m} answers", lambda: _try(getattr(stub, m), r, auth), timeout=60)  # noqa: E731
        reply = call("SearchArchive", pb.ArchiveQuery(sender="alice@example.net", subject="test 7"))
        assert [m.subject for m in reply.mails] == ["archive test 7"] and reply.mails[0].source == "pipeline"
        request = pb.ArchiveExportRequest(query=pb.ArchiveQuery(text="word1003"), format=pb.EXPORT_FORMAT_EML)
        export = joined(stub.ExportArchive(request, metadata=auth, timeout=20))
        assert len(export) == 1 and b"Subject: archive test 1003" in next(iter(export.values()))
        with pytest.raises(grpc.RpcError) as bad:
            stub.SearchArchive(pb.ArchiveQuery(limit=-1), metadata=auth, timeout=20)
        assert bad.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "limit" in (bad.value.details() or "")
        with pytest.raises(grpc.RpcError) as anonymous:
            stub.SearchArchive(pb.ArchiveQuery(), timeout=20)
        assert anonymous.value.code() == grpc.StatusCode.UNAUTHENTICATED


def _try(method, request, metadata):  # type: ignore[no-untyped-def]
    try:
        return method(request, metadata=metadata, timeout=20)
    except grpc.RpcError as exc:
        if exc.code() != grpc.StatusCode.UNAVAILABLE:
            raise
        return None


def tampered_found_by_cli(gw: Gateway, row: dict) -> None:
    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "control.cli", "archive", *args], env={**gw.env, "COLUMNS": "200"},
                              cwd=gw.home, capture_output=True, text=True, timeout=120)

    ok = cli("verify")
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert f"{TOTAL} mail(s)" in ok.stdout and "intact" in ok.stdout
    found = cli("search", "--text", "word4010")
    assert found.returncode == 0 and row["mail_id"] in found.stdout
    path = gw.home / "archive" / "objects" / row["sha256"][:2] / f"{row['sha256']}.zst"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    bad = cli("verify")
    assert bad.returncode == 1, bad.stdout + bad.stderr
    assert f"TAMPERED {row['mail_id']}: its mail file" in bad.stdout and "1 problem(s)" in bad.stdout
