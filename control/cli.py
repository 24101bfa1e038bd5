"""The `mailgate` command: run the gateway, its local broker, its topics, one service.

    mailgate up                      # broker (unless external) + topics + every service of this node
    mailgate kafka start|stop|status # the local single-node KRaft broker
    mailgate topics create|list      # the queues
    mailgate service smtp-server     # run one service in the foreground
    mailgate services list|start|stop|restart|pause|resume   # through control-server (gRPC)
    mailgate queue list|show|release|delete|report            # the quarantine queues
    mailgate config get|set|reset                             # configuration changes, as events
    mailgate pop3 status             # the POP3 accounts: last success, last error
    mailgate archive search|export|verify|hold|retention      # the mail archive of this node
    mailgate delivery show MAIL_ID   # what happened to a mail, per recipient (mail.delivery)
    mailgate sink                    # an SMTP sink to deliver to while trying things out
"""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, NoReturn

import typer
from confluent_kafka import KafkaException
from pydantic import ValidationError
from rich.console import Console
from rich.table import Table

from control.broker.cluster import LocalCluster
from control.broker.local import BrokerError
from control.broker.supervise import BrokerWard, EngineLock
from control.cli_archive import register as register_archive_commands
from control.cli_control import register as register_control_commands
from control.cli_delivery import register as register_delivery_commands
from control.pop3_status import register as register_pop3_commands
from control.services import SERVICES
from core.logging import setup_logging
from core.settings import Settings

if TYPE_CHECKING:
    from control.engine import ServiceSpec
    from streams.validation.scan_switch import ScanState

app = typer.Typer(help="mailgate: an email security gateway on Apache Kafka.", no_args_is_help=True,
                  pretty_exceptions_enable=False)
kafka_app = typer.Typer(help="The local single-node Kafka broker (KRaft).", no_args_is_help=True)
topics_app = typer.Typer(help="The topics (queues) of the gateway.", no_args_is_help=True)
app.add_typer(kafka_app, name="kafka")
app.add_typer(topics_app, name="topics")
register_control_commands(app)
register_delivery_commands(app)
register_archive_commands(app)
register_pop3_commands(app)

UP_WAIT_S = 120.0  # a previous `mailgate up` stops its services (15 s) and its broker (up to 30 s)

out = Console()
err = Console(stderr=True)


def fail(message: str, code: int = 1) -> NoReturn:
    err.print(f"[bold red]error:[/] {message}", highlight=False)
    raise typer.Exit(code)


def load_settings() -> Settings:
    try:
        return Settings()
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])} (MAILGATE_{'__'.join(str(p) for p in e['loc']).upper()}): "
            f"{e['msg']}" for e in exc.errors())
        fail(f"invalid settings: {problems}")
    except (FileNotFoundError, ValueError) as exc:
        fail(str(exc))


def unreachable(settings: Settings, exc: Exception) -> NoReturn:
    hint = ("start it with `mailgate kafka start`" if settings.uses_local_broker
            else "check MAILGATE_KAFKA__BOOTSTRAP_SERVERS")
    fail(f"cannot reach Kafka at {settings.bootstrap_servers} ({exc}): {hint}")


# -- services -----------------------------------------------------------------

@app.command()
def service(name: Annotated[str, typer.Argument(help=f"one of: {', '.join(SERVICES)}")]) -> None:
    """Run one service in the foreground (the engine runs each like this)."""
    if name not in SERVICES:
        fail(f"unknown service {name!r}; the services are: {', '.join(SERVICES)}")
    settings = load_settings()
    setup_logging(settings.log_level, settings.log_format, service=name)
    try:
        SERVICES[name].run(settings)
    except KafkaException as exc:
        unreachable(settings, exc)
    except OSError as exc:
        fail(f"{name} cannot start: {exc}")


# -- the whole node -----------------------------------------------------------

def _port_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def _listening(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


@app.command()
def up(
    stop_broker: Annotated[bool, typer.Option(help="Stop the local broker when the gateway stops.")] = True,
) -> None:
    """Start the local broker (unless an external cluster is set), create the topics, and run
    every service of this node until Ctrl-C."""
    from control.engine import Engine

    settings = load_settings()
    setup_logging(settings.log_level, settings.log_format, service="engine")
    lock = _engine_lock(settings)
    broker = LocalCluster.from_settings(settings) if settings.uses_local_broker else None
    wards: list[BrokerWard] = []
    try:
        lock.acquire(UP_WAIT_S, say=lambda m: out.print(m, highlight=False))
        if broker is not None:
            started = _start_broker(broker)
            wards = [BrokerWard(node, started.get(node.node_id)) for node in broker.nodes]
        else:
            out.print(f"using the external Kafka cluster at {settings.bootstrap_servers}")
    except BrokerError as exc:
        lock.release()
        fail(str(exc))
    try:
        _create_topics(settings, quiet=True)
        smtp = settings.smtp_server
        if not _port_free(smtp.host, smtp.port):
            fail(f"{smtp.host}:{smtp.port} is taken: stop what listens there, or set MAILGATE_SMTP_SERVER__PORT")
        table = Table(title=f"mailgate on {settings.node}", title_justify="left")
        table.add_column("service")
        table.add_column("listens / consumes")
        table.add_row("kafka", settings.bootstrap_servers + (" (local, restarted by the engine when it exits)"
                                                             if broker else " (external)"))
        specs = [_spec(settings, i, name) for i, name in enumerate(SERVICES)]
        for spec in specs:
            table.add_row(spec.name, spec.listens + ("" if spec.auto_start else " (off until an administrator "
                                                                                 "starts it)"))
        scanning = _virus_scanning(settings)
        table.add_row("virus scanning", ("[green]ON[/]: " if scanning.on else "[bold yellow]OFF[/]: ") + scanning.why)
        out.print(table)
        if not scanning.on:
            out.print(f"[bold yellow]warning:[/] {scanning.headline}", highlight=False)
        host, port = settings.smtp_client.smarthost_addr
        if not _listening(host, port):
            out.print(f"[yellow]note:[/] nothing answers on the smarthost {host}:{port} yet; mail waits in "
                      f"mail.out until it does (try `mailgate sink` in another terminal).")
        out.print("Ctrl-C stops the gateway.")
        Engine(specs, settings=settings, wards=list(wards)).run()
    finally:
        if broker is not None and any(w.started_here for w in wards) and stop_broker and broker.stop():
            out.print("local Kafka stopped")
        lock.release()


def _virus_scanning(settings: Settings) -> ScanState:
    """What message-validation will find at its start (it decides again, and says so itself)."""
    from streams.validation.scan_switch import probe  # the stage's own rule, asked in one place

    return probe(settings.validation)


def _engine_lock(settings: Settings) -> EngineLock:
    return EngineLock(settings.home / "engine.lock")


def _spec(settings: Settings, index: int, name: str) -> ServiceSpec:
    from control.engine import ServiceSpec

    svc = SERVICES[name]
    env = {}
    listens = svc.listens(settings)
    if settings.control.metrics_port_base:
        port = settings.control.metrics_port_base + index
        env["MAILGATE_CONTROL__METRICS_PORT"] = str(port)
        listens += f", /metrics :{port}"
    return ServiceSpec(name, listens, auto_start=svc.auto_start, restart_after_stop=svc.grace_restart, env=env)


def _start_broker(broker: LocalCluster) -> dict[int, subprocess.Popen[bytes]]:
    """Starts the broker's nodes that do not run; the processes this one started, by node id."""
    return broker.start(say=lambda m: out.print(m, highlight=False))


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
        _start_broker(_local_broker(load_settings(), brokers))
    except BrokerError as exc:
        fail(str(exc))


@kafka_app.command("stop")
def kafka_stop(brokers: Annotated[int | None, BROKERS] = None) -> None:
    """Stop the local broker (every node); its data stays."""
    settings = load_settings()
    broker = _local_broker(settings, brokers)
    out.print("Kafka stopped" if broker.stop() else "Kafka was not running")
    engine = _engine_lock(settings).held_by()
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

def _create_topics(settings: Settings, quiet: bool = False) -> None:
    from control.topics import ensure_topics

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
    _create_topics(load_settings())


@topics_app.command("list")
def topics_list() -> None:
    """Every topic of the gateway with its record count (end minus start offsets)."""
    from control.topics import topic_sizes

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


# -- sink ---------------------------------------------------------------------

@app.command()
def sink(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port (the default smarthost port).")] = 2526,
    maildir: Annotated[Path | None, typer.Option(help="Keep each mail in this Maildir.")] = None,
) -> None:
    """An SMTP sink that accepts and prints every mail: a next hop for trying the gateway out."""
    from control.sink import run_sink

    try:
        asyncio.run(run_sink(host, port, lambda m: out.print(m, highlight=False, soft_wrap=True), maildir))
    except OSError as exc:
        fail(f"cannot listen on {host}:{port}: {exc}")


@app.command()
def report(
    label: Annotated[str, typer.Argument(help="spam or ham")],
    files: Annotated[list[Path], typer.Argument(help="mails (RFC 5322 files, e.g. .eml) to report")],
    reporter: Annotated[str, typer.Option(help="who says so")] = "admin",
    role: Annotated[str, typer.Option(help="admin or user (a user does not overrule an administrator)")] = "admin",
) -> None:
    """Report mails as spam or ham: the spam filter learns from them on every node within seconds."""
    from control.reports import LABELS, publish_report

    if label not in LABELS:
        fail(f"label {label!r}: say `mailgate report spam FILE...` or `mailgate report ham FILE...`")
    if role not in ("admin", "user"):
        fail(f"--role {role!r}: admin or user")
    settings = load_settings()
    for path in files:
        try:
            raw = path.read_bytes()
        except OSError as exc:
            fail(f"cannot read {path}: {exc.strerror}")
        try:
            mail_id = publish_report(settings, raw, label, reporter, role)
        except ConnectionError as exc:
            unreachable(settings, exc)
        out.print(f"reported {path} as {label} (report {mail_id})", highlight=False)


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
