"""ExportArchive over gRPC (issue 10): an export far larger than gRPC's 4 MB default receive
limit — one mail alone larger than it — comes through to a client with default channel
options, as EML (byte for byte the mails stored) and as mbox (byte for byte the local export),
streamed in chunks of at most 1 MiB; bad calls get their status before any chunk. The control
server asks a real maildepot-archiver process (another home, no store beside the server)."""

from __future__ import annotations

import base64
import mailbox
import random
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import pytest

from control.broker.topics import ensure_topics
from control.proto.rpc import pb, pb_grpc
from control.server.service import ControlServer
from core.settings import ControlSettings, KafkaSettings, Settings
from egress.maildepot.search import Query, export
from egress.maildepot.store import ArchiveStore
from tests.integration.archive.archiver import archiver
from tests.integration.archive.helpers import joined, mail, spooled
from tests.support.kafka import Broker
from tests.support.ports import free_port

ADMIN, USER = "export-admin-5c1f", "export-user-9a2e"
MIB = 1 << 20
GRPC_DEFAULT_RECEIVE = 4 * MIB


def big_mail(n: int, size: int) -> bytes:
    """A mail of about ``size`` bytes: lines of random text, and a body line that starts "From "."""
    rng = random.Random(n)
    lines = [base64.b64encode(rng.randbytes(57)).decode() for _ in range(size // 77)]
    return mail(n, body="From the start of a line\n" + "\n".join(lines) + f"\nword{n}\n")


@pytest.fixture
def settings(broker: Broker, tmp_path: Path) -> Settings:
    control = ControlSettings(port=free_port(), tokens={"admin:alice": ADMIN, "user:bob@example.com": USER},
                              metrics_port_base=0)
    s = Settings(home=tmp_path, node="node-x", control=control, kafka=KafkaSettings(
        bootstrap_servers=broker.bootstrap_servers, topic_prefix=f"t{uuid.uuid4().hex[:8]}.", partitions=1))
    ensure_topics(s)
    return s


@pytest.fixture
def depot(settings: Settings, tmp_path: Path) -> Settings:
    """The archiver's node: the same gateway (prefix), its own home with the store."""
    return Settings(home=tmp_path / "depot", node="depot", kafka=settings.kafka)


@pytest.fixture
def stub(settings: Settings) -> Iterator[pb_grpc.ControlStub]:
    server = ControlServer(settings).start()
    try:
        with grpc.insecure_channel(f"127.0.0.1:{settings.control.port}") as channel:  # default options: 4 MB in
            yield pb_grpc.ControlStub(channel)
    finally:
        server.stop()


def call(stub: pb_grpc.ControlStub, fmt: int, token: str | None = ADMIN, **query: object) -> list[pb.ArchiveChunk]:
    auth = [("authorization", f"Bearer {token}")] if token else []
    request = pb.ArchiveExportRequest(query=pb.ArchiveQuery(**query), format=fmt)
    return list(stub.ExportArchive(request, metadata=auth, timeout=60))


def test_an_export_larger_than_the_receive_limit_as_eml_and_mbox(settings: Settings, depot: Settings,
                                                                 stub: pb_grpc.ControlStub, tmp_path: Path) -> None:
    with archiver(depot, tmp_path / "logs"):
        export_through_the_archiver(settings, depot, stub)
    assert not settings.maildepot.path(settings.home).exists()  # the server never had a store


def export_through_the_archiver(settings: Settings, depot: Settings, stub: pb_grpc.ControlStub) -> None:
    records = [spooled(n, raw=big_mail(n, 600_000)) for n in range(8)] + [spooled(99, raw=big_mail(99, 5 * MIB))]
    store = ArchiveStore(depot.maildepot.path(depot.home))
    try:
        assert len(store.store_batch(records, 3650).stored) == len(records)
        local_mbox = b"".join(data for _, data in export(store, Query(limit=10_000), "mbox"))
    finally:
        store.close()
    raws = {r["mail_id"]: big_mail(n, 5 * MIB if n == 99 else 600_000) for r, n in zip(records, [*range(8), 99])}
    assert sum(map(len, raws.values())) > 2 * GRPC_DEFAULT_RECEIVE
    assert len(raws[records[-1]["mail_id"]]) > GRPC_DEFAULT_RECEIVE  # one mail alone is over the limit

    chunks = call(stub, pb.EXPORT_FORMAT_EML, limit=10_000)
    assert max(len(c.data) for c in chunks) <= MIB
    assert len(chunks) > len(raws)  # the large mail came in several pieces
    assert joined(chunks) == raws  # every mail, byte for byte as it was stored

    chunks = call(stub, pb.EXPORT_FORMAT_MBOX, limit=10_000)
    assert max(len(c.data) for c in chunks) <= MIB
    data = b"".join(c.data for c in chunks)
    assert data == local_mbox and len(data) > 2 * GRPC_DEFAULT_RECEIVE
    path = settings.home / "export.mbox"
    path.write_bytes(data)
    box = mailbox.mbox(path)
    try:
        assert sorted(m["Subject"] for m in box) == sorted(f"archive test {n}" for n in [*range(8), 99])
    finally:
        box.close()

    found = joined(call(stub, pb.EXPORT_FORMAT_EML, subject="99"))  # a query narrows the export
    assert list(found) == [records[-1]["mail_id"]]


def test_bad_export_calls_get_a_status(depot: Settings, stub: pb_grpc.ControlStub, tmp_path: Path) -> None:
    def refused(fmt: int, token: str | None = ADMIN, **query: object) -> grpc.RpcError:
        with pytest.raises(grpc.RpcError) as caught:
            call(stub, fmt, token, **query)
        return caught.value

    missing = refused(pb.EXPORT_FORMAT_EML)  # no archiver runs anywhere: nobody answers
    assert missing.code() == grpc.StatusCode.UNAVAILABLE and "no maildepot-archiver" in (missing.details() or "")
    with archiver(depot, tmp_path / "logs"):
        refused_by_the_archiver(refused)
        assert call(stub, pb.EXPORT_FORMAT_MBOX) == []  # an empty store: an empty export, no error

def refused_by_the_archiver(refused: Callable[..., grpc.RpcError]) -> None:
    assert refused(pb.EXPORT_FORMAT_UNSPECIFIED).code() == grpc.StatusCode.INVALID_ARGUMENT
    too_many = refused(pb.EXPORT_FORMAT_MBOX, limit=10_001)
    assert too_many.code() == grpc.StatusCode.INVALID_ARGUMENT and "limit" in (too_many.details() or "")
    assert refused(pb.EXPORT_FORMAT_MBOX, token=None).code() == grpc.StatusCode.UNAUTHENTICATED
    assert refused(pb.EXPORT_FORMAT_MBOX, token="wrong").code() == grpc.StatusCode.UNAUTHENTICATED
    user = refused(pb.EXPORT_FORMAT_MBOX, token=USER)
    assert user.code() == grpc.StatusCode.PERMISSION_DENIED and "administrators" in (user.details() or "")
