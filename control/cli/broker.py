"""control/cli — `mailgate kafka start|stop|status` (the local broker) and `mailgate topics create|list`."""

from __future__ import annotations

import typer
from confluent_kafka import KafkaException
from rich.table import Table

from control.broker.local import BrokerError, LocalBroker
from control.cli.common import fail, load_settings, out, unreachable
from core.settings import Settings

kafka_app = typer.Typer(help="The local single-node Kafka broker (KRaft).", no_args_is_help=True)
topics_app = typer.Typer(help="The topics (queues) of the gateway.", no_args_is_help=True)


def start_broker(broker: LocalBroker) -> None:
    try:
        broker.start(say=lambda m: out.print(m, highlight=False))
    except BrokerError as exc:
        fail(str(exc))


# -- kafka --------------------------------------------------------------------

def _local_broker(settings: Settings) -> LocalBroker:
    if not settings.uses_local_broker:
        fail(f"an external cluster is configured ({settings.bootstrap_servers}); mailgate starts no broker "
             "then. Unset MAILGATE_KAFKA__BOOTSTRAP_SERVERS to use the local one.")
    return LocalBroker.from_settings(settings)


@kafka_app.command("start")
def kafka_start() -> None:
    """Download (once), format (once) and start the local broker."""
    start_broker(_local_broker(load_settings()))


@kafka_app.command("stop")
def kafka_stop() -> None:
    """Stop the local broker; its data stays."""
    broker = _local_broker(load_settings())
    out.print("Kafka stopped" if broker.stop() else "Kafka was not running")


@kafka_app.command("status")
def kafka_status() -> None:
    """Say whether the local broker runs, where, and where its data is. Exit 3 when it does not run."""
    broker = _local_broker(load_settings())
    pid = broker.pid()
    table = Table(show_header=False)
    table.add_row("state", "[green]running[/]" if pid else "[red]stopped[/]")
    table.add_row("pid", str(pid or "-"))
    table.add_row("bootstrap", broker.bootstrap_servers)
    table.add_row("version", broker.version)
    table.add_row("data", str(broker.data_dir))
    table.add_row("log", str(broker.log_file))
    out.print(table)
    if not pid:
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
    for col in ("topic", "partitions", "compacted", "status"):
        table.add_column(col)
    for r in results:
        table.add_row(r.name, str(r.partitions), "yes" if r.compacted else "", r.status)
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
