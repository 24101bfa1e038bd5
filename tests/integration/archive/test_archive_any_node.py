"""Archive search from any node (issue 17): a control-server process on a node with no archive
store answers SearchArchive and ExportArchive through the maildepot-archiver process of another
node, over the real broker (archive.requests / archive.replies); so does `mailgate archive search`
on a third node. Nothing of the store is opened where it is not."""

from __future__ import annotations

import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from control.broker.topics import ensure_topics
from control.proto.rpc import pb, pb_grpc
from core.settings import ControlSettings, KafkaSettings, Settings
from egress.maildepot.store import ArchiveStore
from tests.integration.archive.archiver import archiver
from tests.integration.archive.helpers import joined, mail, spooled
from tests.integration.archive.test_archive_connector import service_env, stop
from tests.integration.control.conftest import wait_until
from tests.support.kafka import Broker
from tests.support.ports import free_port, wait_listening

ADMIN = "any-node-admin-7d3e"


def node(broker: Broker, tmp_path: Path, name: str, prefix: str, **control: object) -> Settings:
    s = Settings(node=name, home=tmp_path / name, control=ControlSettings(metrics_port_base=0, **control),
                 kafka=KafkaSettings(bootstrap_servers=broker.bootstrap_servers, topic_prefix=prefix, partitions=1))
    s.home.mkdir()
    return s


@pytest.fixture
def nodes(broker: Broker, tmp_path: Path) -> tuple[Settings, Settings, Settings]:
    """The archiver's node, the control server's node and a third one, on one gateway (prefix)."""
    prefix = f"t{uuid.uuid4().hex[:8]}."
    depot = node(broker, tmp_path, "depot", prefix)
    ensure_topics(depot)
    return (depot, node(broker, tmp_path, "front", prefix, port=free_port(), tokens={"admin:alice": ADMIN}),
            node(broker, tmp_path, "third", prefix))


@pytest.fixture
def control_server(nodes: tuple[Settings, Settings, Settings], tmp_path: Path) -> Iterator[pb_grpc.ControlStub]:
    front = nodes[1]
    proc = run_control_server(front, tmp_path)
    try:
        wait_listening("127.0.0.1", front.control.port, timeout=60)
        with grpc.insecure_channel(f"127.0.0.1:{front.control.port}") as channel:
            yield pb_grpc.ControlStub(channel)
    finally:
        stop(proc)


def run_control_server(front: Settings, tmp_path: Path) -> subprocess.Popen[bytes]:
    env = {**service_env(front), "MAILGATE_CONTROL__PORT": str(front.control.port), "MAILGATE_CONTROL__TOKENS": f"admin:alice={ADMIN}"}
    log = open(tmp_path / "control-server.log", "wb")
    try:
        return subprocess.Popen([sys.executable, "-m", "control.cli", "service", "control-server"], env=env,
                                cwd=front.home, stdout=log, stderr=subprocess.STDOUT)
    finally:
        log.close()


def test_a_node_without_the_store_answers_through_the_archiver(
        nodes: tuple[Settings, Settings, Settings], control_server: pb_grpc.ControlStub, tmp_path: Path) -> None:
    depot, front, third = nodes
    records = [spooled(n, raw=mail(n, subject=f"quarterly report {n}" if n % 2 else None)) for n in range(5)]
    auth = [("authorization", f"Bearer {ADMIN}")]
    with archiver(depot, tmp_path / "logs"):
        store = ArchiveStore(depot.maildepot.path(depot.home))
        try:
            assert len(store.store_batch(records, 3650).stored) == len(records)
        finally:
            store.close()

        found = control_server.SearchArchive(pb.ArchiveQuery(subject="quarterly"), metadata=auth, timeout=30)
        assert sorted(m.mail_id for m in found.mails) == sorted(r["mail_id"] for n, r in enumerate(records) if n % 2)
        assert {m.subject for m in found.mails} == {"quarterly report 1", "quarterly report 3"}

        export = pb.ArchiveExportRequest(query=pb.ArchiveQuery(subject="quarterly"), format=pb.EXPORT_FORMAT_EML)
        mails = joined(control_server.ExportArchive(export, metadata=auth, timeout=30))
        assert mails == {r["mail_id"]: mail(n, subject=f"quarterly report {n}") for n, r in enumerate(records) if n % 2}

        with pytest.raises(grpc.RpcError) as bad:  # the archiver's refusal comes back as the status
            control_server.SearchArchive(pb.ArchiveQuery(limit=10_001), metadata=auth, timeout=30)
        assert bad.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "limit" in (bad.value.details() or "")

        cli = subprocess.run([sys.executable, "-m", "control.cli", "archive", "search", "--text", "word4"],
                             env={**service_env(third), "COLUMNS": "250"}, cwd=third.home, capture_output=True,
                             text=True, timeout=60)
        assert cli.returncode == 0, cli.stderr
        assert records[4]["mail_id"] in cli.stdout and "1 mail(s)" in cli.stdout
    for settings in (front, third):  # neither opened (nor made) a store of its own
        assert not settings.maildepot.path(settings.home).exists()
    log = (tmp_path / "logs").glob("maildepot-archiver-*.log")
    answered = "".join(p.read_text() for p in log)
    assert "actor=admin:alice" in answered and "action=export" in answered


def test_without_an_archiver_the_control_server_says_unavailable(
        nodes: tuple[Settings, Settings, Settings], control_server: pb_grpc.ControlStub) -> None:
    auth = [("authorization", f"Bearer {ADMIN}")]
    with pytest.raises(grpc.RpcError) as none:
        control_server.SearchArchive(pb.ArchiveQuery(), metadata=auth, timeout=60)
    assert none.value.code() == grpc.StatusCode.UNAVAILABLE
    assert "no maildepot-archiver answered" in (none.value.details() or "")
    wait_until("the control server still answers", lambda: control_server.WhoAmI(
        pb.WhoAmIRequest(), metadata=auth, timeout=5).name == "alice")
