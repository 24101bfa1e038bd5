"""control/cli — `mailgate kafka start|stop|status` (the local broker) and `mailgate topics create|list`."""

from __future__ import annotations

import subprocess
from typing import Annotated

import typer
from confluent_kafka import KafkaException
from rich.table import Table

from control.broker.cluster import LocalCluster
from control.broker.local import BrokerError
from control.broker.supervise import EngineLock
from control.cli.common import fail, load_settings, out, unreachable
from control.settings import Settings

kafka_app = typer.Typer(help="The local Kafka broker (KRaft): one node, or a cluster with --brokers 3.",
                        no_args_is_help=True)
topics_app = typer.Typer(help="The topics (queues) of the gateway.", no_args_is_help=True)


def start_broker(broker: LocalCluster) -> dict[int, subprocess.Popen[bytes]]:
    """Starts the broker's nodes that do not run; the processes this one started, by node id."""
    return broker.start(say=lambda m: out.print(m, highlight=False))


def engine_lock(settings: Settings) -> EngineLock:
    return EngineLock(settings.home / "engine.lock")


# -- kafka --------------------------------------------------------------------

def _local_broker(settings: Settings, brokers: int | None = None) -> LocalCluster:
    if not settings.uses_local_broker:
        fail(f"an external cluster is configured ({settings.bootstrap_servers}); mailgate starts no broker "
             "then. Unset MAILGATE_KAFKA__BOOTSTRAP_SERVERS to use the local one.")
    if brokers is None and settings.broker.brokers == 1:  # a cluster started with --brokers: found by its nodes
        brokers = len(list(settings.broker_data_dir.glob("node-*/server.properties"))) or None
    if brokers is not None:
        settings.broker.brokers = brokers
    return LocalCluster.from_settings(settings)


BROKERS = typer.Option(min=1, max=9, help="Nodes of the local cluster (3: replication 3, min.insync.replicas 2); "
                                          "default: MAILGATE_BROKER__BROKERS, or the nodes found in the data.")


@kafka_app.command("start")
def kafka_start(brokers: Annotated[int | None, BROKERS] = None) -> None:
    """Download (once), format (once) and start the local broker (or cluster)."""
    try:
        start_broker(_local_broker(load_settings(), brokers))
    except BrokerError as exc:
        fail(str(exc))


@kafka_app.command("stop")
def kafka_stop(brokers: Annotated[int | None, BROKERS] = None) -> None:
    """Stop the local broker (every node); its data stays."""
    settings = load_settings()
    broker = _local_broker(settings, brokers)
    out.print("Kafka stopped" if broker.stop() else "Kafka was not running")
    engine = engine_lock(settings).held_by()
    if engine:
        out.print(f"note: `mailgate up` (pid {engine}) supervises this broker and starts it again; "
                  "stop the gateway (Ctrl-C) to stop it for good", highlight=False)


@kafka_app.command("status")
def kafka_status(brokers: Annotated[int | None, BROKERS] = None) -> None:
    """Say whether the local broker (each node) runs, where, and where its data is. Exit 3 when one does not."""
    cluster = _local_broker(load_settings(), brokers)
    table = Table(show_header=len(cluster.nodes) > 1)
    for col in ("node", "state", "pid", "bootstrap", "data", "log"):
        table.add_column(col)
    down = 0
    for broker in cluster.nodes:
        pid = broker.pid()
        taken = not pid and broker.port_open()
        down += not pid
        table.add_row(str(broker.node_id), ("[green]running[/]" if pid else "[red]stopped[/]")
                      + (" (port taken by another process)" if taken else ""), str(pid or "-"),
                      broker.bootstrap_servers, str(broker.data_dir), str(broker.log_file))
    out.print(f"Kafka {cluster.nodes[0].version}, {len(cluster.nodes)} node(s)", highlight=False)
    out.print(table)
    if down:
        raise typer.Exit(3)


# -- topics -------------------------------------------------------------------

def create_topics(settings: Settings, quiet: bool = False) -> None:
    from control.broker.topics import ensure_topics

    try:
        results = ensure_topics(settings)
    except KafkaException as exc:
        unreachable(settings, exc)
    created = [r for r in results if r.status == "created"]
    if quiet:
        out.print(f"topics: {len(created)} created, {len(results) - len(created)} already there")
        return
    table = Table()
    for col in ("topic", "partitions", "compacted", "retention", "status"):
        table.add_column(col)
    for r in results:
        kept = "latest per key" if r.retention_days is None else f"{r.retention_days:g} days"
        table.add_row(r.name, str(r.partitions), "yes" if r.compacted else "", kept, r.status)
    out.print(table)


@topics_app.command("create")
def topics_create() -> None:
    """Create every topic of the gateway (idempotent) and publish the Avro schemas."""
    create_topics(load_settings())


@topics_app.command("list")
def topics_list() -> None:
    """Every topic of the gateway with its record count (end minus start offsets)."""
    from control.broker.topics import topic_sizes

    settings = load_settings()
    try:
        sizes = topic_sizes(settings)
    except KafkaException as exc:
        unreachable(settings, exc)
    table = Table()
    for col in ("topic", "partitions", "records"):
        table.add_column(col)
    for name, (partitions, records) in sizes.items():
        table.add_row(name, str(partitions) if partitions else "[red]missing[/]", str(records))
    out.print(table)



def register(app: typer.Typer) -> None:
    app.add_typer(kafka_app, name="kafka")
    app.add_typer(topics_app, name="topics")
