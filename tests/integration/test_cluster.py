"""A replicated local cluster (three KRaft nodes on loopback, replication 3,
min.insync.replicas 2) under a whole gateway: kill -9 of a partition leader during a
stream costs a few seconds of 451 at most and no accepted mail; two brokers down give
451 and lose nothing; the cluster back, the backlog drains. Each accepted mail once."""

from __future__ import annotations

import asyncio
import os
import signal
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import aiosmtplib
import pytest
from confluent_kafka.admin import ConfigResource

from control.broker.cluster import LocalCluster
from control.broker.local import new_cluster_id
from core.kafka import make_admin
from tests.integration.test_broker_outage import send
from tests.support.gateway import Gateway
from tests.support.kafka import local_broker
from tests.support.ports import free_port
from tests.support.sink import Sink

# Three broker JVMs beside the gateway on this 2-core machine: in the full suite (load from nothing else) the
# nodes once took over 240 s to come back after two were killed, and the run overran pytest-timeout. Until the
# test is made lighter it runs when asked: MAILGATE_TEST_CLUSTER=1 .venv/bin/python -m pytest tests/integration/test_cluster.py
pytestmark = pytest.mark.skipif(os.environ.get("MAILGATE_TEST_CLUSTER") != "1",
                                reason="the 3-broker cluster test runs when asked (MAILGATE_TEST_CLUSTER=1): "
                                       "three JVMs overran the suite's time on 2 cores")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    base = local_broker(tmp_path_factory.mktemp("cluster"))
    base.heap = "384m"
    c = LocalCluster.of(base, [(free_port(), free_port()) for _ in range(3)], new_cluster_id())
    c.start(timeout=240, say=lambda _m: None)
    try:
        yield c
    finally:
        c.stop()


class Stream:
    """Sends mails one after another in a thread; records what got 250 and when."""

    def __init__(self, port: int, tag: str) -> None:
        self.port, self.tag = port, tag
        self.accepted: list[tuple[str, float]] = []  # subject, time of the 250
        self.refused: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        n = 0
        while not self._stop.is_set():
            subject = f"{self.tag} {n}"
            n += 1
            try:
                asyncio.run(send(self.port, subject))
                self.accepted.append((subject, time.monotonic()))
            except (aiosmtplib.SMTPException, OSError):
                self.refused.append(subject)

    def __enter__(self) -> Stream:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(60)

    def wait_accepted(self, count: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while len(self.accepted) < count and time.monotonic() < deadline:
            time.sleep(0.1)
        assert len(self.accepted) >= count, f"{len(self.accepted)} of {count} accepted; refused {len(self.refused)}"


def subjects(sink: Sink) -> Counter[str]:
    return Counter(m.data.split(b"Subject: ", 1)[1].split(b"\n", 1)[0].strip().decode() for m in sink.mails)


def leader_of(gw: Gateway, topic: str) -> int:
    meta = make_admin(gw.settings()).list_topics(gw.prefix + topic, timeout=10)
    return meta.topics[gw.prefix + topic].partitions[0].leader


def test_leader_kill_and_two_down_lose_nothing(cluster: LocalCluster, sink: Sink, tmp_path: Path) -> None:
    gw = Gateway(cluster.bootstrap_servers, tmp_path / "node", sink.address, MAILGATE_KAFKA__REPLICATION_FACTOR="3",
                 MAILGATE_KAFKA__PRODUCE_TIMEOUT_S="3")
    with gw:
        admin = make_admin(gw.settings())
        config = admin.describe_configs([ConfigResource(ConfigResource.Type.TOPIC, gw.prefix + "mail.in")])
        described = next(iter(config.values())).result()
        assert described["min.insync.replicas"].value == "2"
        assert len(admin.list_topics(gw.prefix + "mail.in", timeout=10).topics[gw.prefix + "mail.in"]
                   .partitions[0].replicas) == 3

        with Stream(gw.smtp_port, "leader") as stream:
            stream.wait_accepted(40, timeout=120)
            leader = leader_of(gw, "mail.in")
            killed_at = time.monotonic()
            os.kill(cluster.nodes[leader - 1].pid() or 0, signal.SIGKILL)
            stream.wait_accepted(len(stream.accepted) + 40, timeout=120)
        after = [t for _, t in stream.accepted if t > killed_at]
        gap = after[0] - killed_at
        print(f"leader {leader} killed: next 250 after {gap:.1f} s; {len(stream.refused)} refused meanwhile")
        assert gap < 20, f"SMTP gave no 250 for {gap:.1f} s after the leader died"
        accepted = {s for s, _ in stream.accepted}
        sink.wait_for(len(accepted), timeout=180)

        # Two of three down: min.insync.replicas 2 cannot be met, so no 250 — 451 instead.
        with Stream(gw.smtp_port, "backlog") as burst:
            burst.wait_accepted(20, timeout=60)
        second = next(n for n in cluster.nodes if n.node_id != leader)
        os.kill(second.pid() or 0, signal.SIGKILL)
        with pytest.raises(aiosmtplib.SMTPResponseException) as refused:
            for _ in range(3):  # a record the dead broker's leadership held may still pass once
                asyncio.run(send(gw.smtp_port, "two down"))
        assert refused.value.code == 451
        accepted |= {s for s, _ in burst.accepted}

        cluster.start(timeout=240, say=lambda _m: None)  # the two back: the backlog drains
        deadline = time.monotonic() + 240
        while not accepted <= set(subjects(sink)) and time.monotonic() < deadline:
            time.sleep(0.5)
        time.sleep(2)  # a late duplicate would come now
        counts = subjects(sink)
    assert accepted <= set(counts), f"lost: {sorted(accepted - set(counts))[:10]}"
    dupes = {s: c for s, c in counts.items() if c > 1}
    assert not dupes, f"delivered twice: {dupes}"
    print(f"accepted {len(accepted)}, delivered {sum(counts.values())} (451 answered, delivered: "
          f"{len(set(counts) - accepted)})")
