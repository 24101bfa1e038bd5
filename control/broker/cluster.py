"""Provisioning of the local broker, replicated: N KRaft nodes on loopback, no Docker.

`mailgate kafka start --brokers 3` (or ``MAILGATE_BROKER__BROKERS=3``) runs three
combined controller+broker JVMs from the same jars, one quorum (static voters),
formatted with one cluster id; node i listens on ``broker.port + 2(i-1)`` and its
controller on ``broker.controller_port + 2(i-1)``, its data in ``<data>/node-i``.
Topics are made with replication 3 and ``min.insync.replicas=2``, and every producer
asks acks=all: a ``250`` then means two brokers hold the mail, and one broker may die
without a mail lost or SMTP stopping. With one broker (the default) it is the single
node of local.py: a ``250`` means that broker's page cache.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from control.broker.local import BrokerError, LocalBroker, new_cluster_id

if TYPE_CHECKING:  # control.settings reads control.broker.retention: no import circle at run time
    from control.settings import Settings

Say = Callable[[str], None]


@dataclass
class LocalCluster:
    nodes: list[LocalBroker]

    @classmethod
    def from_settings(cls, settings: Settings) -> LocalCluster:
        count = settings.broker.brokers
        if count == 1:
            return cls([LocalBroker.from_settings(settings)])
        base = LocalBroker.from_settings(settings)
        root = base.data_dir
        id_file = root / "cluster.id"  # kept, so that a wiped node joins its cluster again
        if not id_file.exists():
            root.mkdir(parents=True, exist_ok=True)
            id_file.write_text(new_cluster_id())
        cluster_id = id_file.read_text().strip()
        ports = [(base.port + 2 * i, base.controller_port + 2 * i) for i in range(count)]
        return cls.of(base, ports, cluster_id)

    @classmethod
    def of(cls, base: LocalBroker, ports: list[tuple[int, int]], cluster_id: str) -> LocalCluster:
        """Nodes like ``base`` on these (client, controller) ports, data in ``<base data>/node-i``."""
        voters = ",".join(f"{i + 1}@{base.host}:{c}" for i, (_, c) in enumerate(ports))
        return cls([LocalBroker(version=base.version, data_dir=base.data_dir / f"node-{i + 1}",
                                cache_dir=base.cache_dir, host=base.host, port=p, controller_port=c, heap=base.heap,
                                max_message_bytes=base.max_message_bytes, node_id=i + 1, voters=voters,
                                cluster_id=cluster_id, replication=min(3, len(ports)))
                    for i, (p, c) in enumerate(ports)])

    @property
    def bootstrap_servers(self) -> str:
        return ",".join(n.bootstrap_servers for n in self.nodes)

    def start(self, timeout: float = 120.0, say: Say = print) -> dict[int, subprocess.Popen[bytes]]:
        """Starts every node that does not run and waits until all serve (a node says it started
        only once a majority of the quorum is up, so all are launched first); returns the
        processes it started, by node id."""
        if len(self.nodes) == 1:
            proc = self.nodes[0].start(timeout, say)
            return {self.nodes[0].node_id: proc} if proc else {}
        started: dict[int, subprocess.Popen[bytes]] = {}
        for node in self.nodes:
            if node.is_running():
                say(f"Kafka node {node.node_id} already running (pid {node.pid()}) on {node.bootstrap_servers}")
            else:
                started[node.node_id] = node.launch(say)
        deadline = time.monotonic() + timeout
        while not all(n.ready() for n in self.nodes if n.node_id in started):
            dead = [i for i, p in started.items() if p.poll() is not None]
            if dead or time.monotonic() > deadline:
                self.stop()
                why = f"node {dead[0]} exited" if dead else f"not all nodes started within {timeout:.0f}s"
                log = self.nodes[(dead or [1])[0] - 1].log_file
                raise BrokerError(f"Kafka cluster: {why}; see {log}")
            time.sleep(0.2)
        say(f"Kafka {self.nodes[0].version} cluster of {len(self.nodes)} running on {self.bootstrap_servers} "
            f"(replication {self.nodes[0].replication}, min.insync.replicas 2)")
        return started

    def stop(self, timeout: float = 30.0) -> bool:
        """Stops every node; True when one ran. All are told at once: one by one, the last ones
        would wait for a quorum that has already gone."""
        for node in self.nodes:
            pid = node.pid()
            if pid is not None:
                os.kill(pid, signal.SIGTERM)
        return any([node.stop(timeout) for node in self.nodes])
