"""control/cli — the control-plane commands of `mailgate`, talking to control-server over gRPC:

    mailgate services list|start|stop|restart|pause|resume
    mailgate queue list|show|release|delete|report
    mailgate config get|set|reset

The token comes from MAILGATE_CONTROL__TOKEN (or --token), the server from
MAILGATE_CONTROL__HOST/__PORT (or --server). Exit codes: see control/cli/client.py.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Annotated, Any

import typer
from rich.table import Table

from control.cli.client import ControlClient, ControlError, parse_duration
from control.cli.common import err, load_settings, out
from control.proto.rpc import pb

services_app = typer.Typer(help="The services of every node: list, start, stop, restart, pause, resume.",
                           no_args_is_help=True)
queue_app = typer.Typer(help="The quarantine queues: list, show, release, delete, report.", no_args_is_help=True)
config_app = typer.Typer(help="Configuration through the control plane (each change is an event).",
                         no_args_is_help=True)


Server = Annotated[str | None, typer.Option("--server", help="control-server host:port (default from settings).")]
Token = Annotated[str | None, typer.Option("--token", help="Bearer token (default MAILGATE_CONTROL__TOKEN).")]
Node = Annotated[str, typer.Option("--node", help="One node; default: every node.")]
Reason = Annotated[str, typer.Option("--reason", help="Why, for the record.")]
QueueOpt = Annotated[str, typer.Option("--queue", help="spam, virus, ciss or quarantine; default: all.")]
STATE_STYLE = {"running": "green", "stopped": "yellow", "failed": "red", "starting": "cyan", "unknown": "red"}


@contextmanager
def control(server: str | None, token: str | None) -> Iterator[ControlClient]:
    settings = load_settings()
    try:
        with ControlClient(settings, server, token) as client:
            yield client
    except ControlError as exc:
        err.print(f"[bold red]error:[/] {exc}", highlight=False)
        raise typer.Exit(exc.exit_code) from None


def _when(ts: Any) -> str:
    if not ts.seconds and not ts.nanos:
        return "-"
    moment = ts.ToDatetime().replace(tzinfo=None)
    ago = max(0, int(time.time() - ts.ToSeconds()))
    span = f"{ago}s" if ago < 120 else f"{ago // 60}m" if ago < 7200 else f"{ago // 3600}h"
    return f"{moment:%Y-%m-%d %H:%M:%S} ({span} ago)" if ago >= 0 else f"{moment:%Y-%m-%d %H:%M:%S}"


def _until(ts: Any) -> str:
    if not ts.seconds:
        return ""
    left = int(ts.ToSeconds() - time.time())
    return f" until {datetime.fromtimestamp(ts.ToSeconds()):%H:%M:%S} ({max(left, 0)}s left)"


# -- services -------------------------------------------------------------------

def services_table(services: list[Any]) -> Table:
    table = Table()
    for col in ("service", "node", "state", "since", "pid", "restarts", "queue", "depth", "lag", "desired"):
        table.add_column(col, justify="right" if col in ("pid", "restarts", "depth", "lag") else "left")
    for s in services:
        state = pb.ServiceState.Name(s.state).removeprefix("SERVICE_STATE_").lower()
        queue = depth = lag = ""
        if s.HasField("queue"):
            queue = s.queue.topic + (" [yellow](paused)[/]" if s.queue.paused else "")
            depth = str(s.queue.depth) if s.queue.depth >= 0 else "?"
            lag = f"{s.queue.lag_seconds:.0f}s" if s.queue.depth > 0 else "0"
        table.add_row(s.name, s.node or "-", f"[{STATE_STYLE.get(state, 'white')}]{state}[/]", _when(s.since),
                      str(s.pid or "-"), str(s.restarts), queue, depth, lag, s.desired + _until(s.expires))
    return table


@services_app.command("list")
def services_list(node: Annotated[str, typer.Option("--node", help="One node; default: every node.")] = "",
                  refresh: Annotated[bool, typer.Option(help="Ask every engine to report first.")] = False,
                  server: Server = None, token: Token = None) -> None:
    """The services of every node: state, since, pid, restarts, and the queue each consumes."""
    with control(server, token) as client:
        reply = client.call("Refresh" if refresh else "ListServices", pb.ListServicesRequest(node=node))
    out.print(services_table(list(reply.services)))


def _service_change(method: str, name: str, node: str, server: str | None, token: str | None,
                    **extra: Any) -> None:
    with control(server, token) as client:
        reply = client.call(method, pb.ServiceRequest(name=name, node=node, **extra))
    out.print(reply.message + _until(reply.expires), highlight=False)


@services_app.command("start")
def services_start(name: str, node: Node = "", reason: Reason = "",
                   duration: Annotated[str | None, typer.Option(
                       help="remote-support only, and required there: e.g. 30m, 2h.")] = None,
                   server: Server = None, token: Token = None) -> None:
    """Start a service (on every node, or --node)."""
    extra: dict[str, Any] = {"reason": reason}
    if duration is not None:
        try:
            seconds = parse_duration(duration)
        except ValueError as exc:
            err.print(f"[bold red]error:[/] {exc}")
            raise typer.Exit(2) from None
        extra["duration"] = {"seconds": int(seconds), "nanos": int((seconds % 1) * 1e9)}
    _service_change("StartService", name, node, server, token, **extra)


@services_app.command("stop")
def services_stop(name: str, node: Node = "", reason: Reason = "", server: Server = None,
                  token: Token = None) -> None:
    """Stop a service: it no longer listens or consumes; its queue grows."""
    _service_change("StopService", name, node, server, token, reason=reason)


@services_app.command("restart")
def services_restart(name: str, node: Node = "", reason: Reason = "", server: Server = None,
                     token: Token = None) -> None:
    """Restart a service's process."""
    _service_change("RestartService", name, node, server, token, reason=reason)


def _consumers(method: str, group: str, node: str, reason: str, server: str | None, token: str | None) -> None:
    with control(server, token) as client:
        reply = client.call(method, pb.ConsumerGroupRequest(group=group, node=node, reason=reason))
    out.print(reply.message, highlight=False)


@services_app.command("pause")
def services_pause(group: Annotated[str, typer.Argument(help="A service (message-validation) or its group id.")],
                   node: Node = "", reason: Reason = "", server: Server = None, token: Token = None) -> None:
    """Pause a consumer group: the service runs but consumes nothing; its lag grows."""
    _consumers("PauseConsumers", group, node, reason, server, token)


@services_app.command("resume")
def services_resume(group: Annotated[str, typer.Argument(help="A service (message-validation) or its group id.")],
                    node: Node = "", reason: Reason = "", server: Server = None, token: Token = None) -> None:
    """Resume a paused consumer group."""
    _consumers("ResumeConsumers", group, node, reason, server, token)


# -- queues ---------------------------------------------------------------------

@queue_app.command("list")
def queue_list(queue: Annotated[str, typer.Argument(help="spam, virus, ciss or quarantine; default: all.")] = "",
               limit: Annotated[int, typer.Option(help="At most this many (newest first); 0: 100.")] = 0,
               server: Server = None, token: Token = None) -> None:
    """Quarantined mail (a user sees only its own)."""
    with control(server, token) as client:
        reply = client.call("ListQueue", pb.ListQueueRequest(queue=queue, limit=limit))
    table = Table()
    for col in ("mail id", "queue", "received", "from", "to", "subject", "size", "why"):
        table.add_column(col)
    for m in reply.mails:
        table.add_row(m.mail_id, m.queue, _when(m.received), m.mail_from or "<>", ", ".join(m.rcpt_to),
                      m.subject, str(m.size), "; ".join(m.reasons))
    out.print(table)
    out.print(f"{len(reply.mails)} mail(s)")


@queue_app.command("show")
def queue_show(mail_id: str, queue: QueueOpt = "",
               raw: Annotated[bool, typer.Option(help="Print the whole message as received.")] = False,
               server: Server = None, token: Token = None) -> None:
    """One quarantined mail: envelope, why it is held, and its header (or the whole message with --raw)."""
    with control(server, token) as client:
        reply = client.call("ShowMail", pb.MailRequest(mail_id=mail_id, queue=queue))
    if raw:
        sys.stdout.buffer.write(reply.message)
        return
    m = reply.mail
    table = Table(show_header=False)
    for key, value in (("mail id", m.mail_id), ("queue", m.queue), ("received", _when(m.received)),
                       ("from", m.mail_from or "<>"), ("to", ", ".join(m.rcpt_to)), ("subject", m.subject),
                       ("size", str(m.size)), ("why", "\n".join(m.reasons))):
        table.add_row(key, value)
    out.print(table)
    out.print(reply.message.split(b"\r\n\r\n", 1)[0].decode(errors="replace"), highlight=False, markup=False)


def _queue_action(method: str, request: Any, server: str | None, token: str | None) -> None:
    with control(server, token) as client:
        reply = client.call(method, request)
    out.print(reply.message, highlight=False)


@queue_app.command("release")
def queue_release(mail_id: str, queue: QueueOpt = "", reason: Reason = "", server: Server = None,
                  token: Token = None) -> None:
    """Release a quarantined mail: delivered, or scanned again first if it was held unscanned (a user: its own address only)."""
    _queue_action("ReleaseMail", pb.MailRequest(mail_id=mail_id, queue=queue, reason=reason), server, token)


@queue_app.command("delete")
def queue_delete(mail_id: str, queue: QueueOpt = "", reason: Reason = "", server: Server = None,
                 token: Token = None) -> None:
    """Remove a quarantined mail (a user: its own copy only)."""
    _queue_action("DeleteMail", pb.MailRequest(mail_id=mail_id, queue=queue, reason=reason), server, token)


@queue_app.command("report")
def queue_report(mail_id: str, queue: QueueOpt = "",
                 ham: Annotated[bool, typer.Option("--ham/--spam", help="Report it as ham or as spam.")] = False,
                 server: Server = None, token: Token = None) -> None:
    """Report a mail as spam or ham, for the spam filter to learn from."""
    verdict = pb.ReportRequest.VERDICT_HAM if ham else pb.ReportRequest.VERDICT_SPAM
    _queue_action("ReportMail", pb.ReportRequest(mail_id=mail_id, queue=queue, verdict=verdict), server, token)


# -- configuration ----------------------------------------------------------------

def _entries(entries: list[Any]) -> None:
    table = Table()
    for col in ("key", "value", "set through the control plane", "changed", "environment variable"):
        table.add_column(col)
    for e in entries:
        who = f"by {e.changed_by}" if e.changed_by else ""
        table.add_row(e.key, e.value, "yes " + who if e.overridden else "no", _when(e.changed_at), e.env)
    out.print(table)


@config_app.command("get")
def config_get(key: Annotated[str, typer.Argument(help="Dotted key; default: every changed one.")] = "",
               server: Server = None, token: Token = None) -> None:
    """A setting's value (and who changed it), or every setting changed through the control plane."""
    with control(server, token) as client:
        _entries(list(client.call("GetConfig", pb.GetConfigRequest(key=key)).entries))


def _set(request: Any, server: str | None, token: str | None) -> None:
    with control(server, token) as client:
        _entries([client.call("SetConfig", request)])
    out.print("applies to each service when it (re)starts", style="dim")


@config_app.command("set")
def config_set(key: str, value: str, reason: Reason = "", server: Server = None, token: Token = None) -> None:
    """Change a setting for every node (as its environment variable would: a.test,b.test)."""
    _set(pb.SetConfigRequest(key=key, value=value, reason=reason), server, token)


@config_app.command("reset")
def config_reset(key: str, reason: Reason = "", server: Server = None, token: Token = None) -> None:
    """Back to each node's own setting."""
    _set(pb.SetConfigRequest(key=key, reset=True, reason=reason), server, token)


def register(app: typer.Typer) -> None:
    app.add_typer(services_app, name="services")
    app.add_typer(queue_app, name="queue")
    app.add_typer(config_app, name="config")
