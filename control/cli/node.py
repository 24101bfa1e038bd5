"""control/cli — `mailgate service NAME` (one service in the foreground, as the engine runs each) and
`mailgate up` (the local broker unless external, the topics, then every service of this node)."""

from __future__ import annotations

import socket
from typing import TYPE_CHECKING, Annotated

import typer
from confluent_kafka import KafkaException
from rich.table import Table

from control.broker.local import LocalBroker
from control.cli.broker import create_topics, start_broker
from control.cli.common import fail, load_settings, out, unreachable
from control.engine.services import SERVICES
from core.logging import setup_logging
from core.settings import Settings

if TYPE_CHECKING:
    from control.engine.supervisor import ServiceSpec


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


def up(
    stop_broker: Annotated[bool, typer.Option(help="Stop the local broker when the gateway stops.")] = True,
) -> None:
    """Start the local broker (unless an external cluster is set), create the topics, and run
    every service of this node until Ctrl-C."""
    from control.engine.supervisor import Engine

    settings = load_settings()
    setup_logging(settings.log_level, settings.log_format, service="engine")
    broker = LocalBroker.from_settings(settings) if settings.uses_local_broker else None
    started_broker = False
    if broker is not None:
        started_broker = not broker.is_running()
        start_broker(broker)
    else:
        out.print(f"using the external Kafka cluster at {settings.bootstrap_servers}")
    try:
        create_topics(settings, quiet=True)
        smtp = settings.smtp_server
        if not _port_free(smtp.host, smtp.port):
            fail(f"{smtp.host}:{smtp.port} is taken: stop what listens there, or set MAILGATE_SMTP_SERVER__PORT")
        table = Table(title=f"mailgate on {settings.node}", title_justify="left")
        table.add_column("service")
        table.add_column("listens / consumes")
        table.add_row("kafka", settings.bootstrap_servers + (" (local)" if broker else " (external)"))
        specs = [_spec(settings, i, name) for i, name in enumerate(SERVICES)]
        for spec in specs:
            table.add_row(spec.name, spec.listens + ("" if spec.auto_start else " (off until an administrator "
                                                                                 "starts it)"))
        out.print(table)
        host, port = settings.smtp_client.smarthost_addr
        if not _listening(host, port):
            out.print(f"[yellow]note:[/] nothing answers on the smarthost {host}:{port} yet; mail waits in "
                      f"mail.out until it does (try `mailgate sink` in another terminal).")
        out.print("Ctrl-C stops the gateway.")
        Engine(specs, settings=settings).run()
    finally:
        if broker is not None and started_broker and stop_broker:
            broker.stop()
            out.print("local Kafka stopped")


def _spec(settings: Settings, index: int, name: str) -> ServiceSpec:
    from control.engine.supervisor import ServiceSpec

    svc = SERVICES[name]
    env = {}
    listens = svc.listens(settings)
    if settings.control.metrics_port_base:
        port = settings.control.metrics_port_base + index
        env["MAILGATE_CONTROL__METRICS_PORT"] = str(port)
        listens += f", /metrics :{port}"
    return ServiceSpec(name, listens, auto_start=svc.auto_start, restart_after_stop=svc.grace_restart, env=env)



def register(app: typer.Typer) -> None:
    app.command()(service)
    app.command()(up)
