"""Benchmarks: a scratch local Kafka broker of the pinned version, in a directory of the run."""

from __future__ import annotations

from pathlib import Path

from control.broker.local import LocalBroker
from control.settings import Settings
from tests.support.ports import free_port


def start_scratch_broker(workdir: Path, heap: str | None = None) -> LocalBroker:
    """Starts a single-node broker under ``workdir``/kafka (jars from the shared cache); the caller stops it."""
    defaults = Settings().broker
    extra = {"heap": heap} if heap else {}
    broker = LocalBroker(version=defaults.version, data_dir=workdir / "kafka", cache_dir=defaults.cache_dir,
                         port=free_port(), controller_port=free_port(), **extra)
    print(f"starting Kafka {broker.version} on {broker.bootstrap_servers} ...", flush=True)
    broker.start(say=lambda _m: None)
    return broker
