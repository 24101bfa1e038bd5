"""control/cli — `mailgate delivery show MAIL_ID [--rcpt ADDRESS]` — what happened to a mail, per recipient.

Reads mail.delivery (smtp-client's MailDelivered / DeliveryFailed events) straight from
Kafka, so it answers on any node, with or without the control server running.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

import typer
from confluent_kafka import KafkaException

from control.cli.common import err, load_settings, unreachable
from control.cli.delivery_history import Attempt, MailHistory, mail_history
from core.settings import Settings

delivery_app = typer.Typer(help="Delivery results of smtp-client, from mail.delivery.", no_args_is_help=True)


def _when(ms: int | None) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S") if ms else ""


def _line(a: Attempt) -> str:
    parts = [_when(a.event_time), f"attempt {a.attempt}", a.status, a.reply]
    parts += [f"via {a.next_hop}"] if a.next_hop else []
    parts += [a.tls] if a.tls else []
    parts += [f"next attempt {_when(a.next_attempt_time)}"] if a.next_attempt_time and not a.permanent else []
    parts += [f"bounce {a.bounce_mail_id}"] if a.bounce_mail_id else []
    return "  " + "  ".join(parts)


def _show(history: MailHistory, rcpt: str) -> None:
    typer.echo(f"{rcpt}: {history.status(rcpt)}")
    attempts = history.recipients[rcpt]
    for a in attempts:
        typer.echo(_line(a))
    for bounce_id in dict.fromkeys(a.bounce_mail_id for a in attempts if a.bounce_mail_id):
        bounce = history.bounces.get(bounce_id) or MailHistory(bounce_id)
        fates = [f"{to}: {bounce.status(to)}" for to in bounce.recipients] or ["no delivery event yet"]
        typer.echo(f"  bounce {bounce_id} to the sender — {'; '.join(fates)}")


@delivery_app.command("show")
def delivery_show(
    mail_id: Annotated[str, typer.Argument(help="The mail id (as in the logs and the events).")],
    rcpt: Annotated[str, typer.Option("--rcpt", help="Only this recipient.")] = "",
    timeout: Annotated[float, typer.Option(help="Seconds to read mail.delivery to its end.")] = 30.0,
) -> None:
    """What happened to a mail for each recipient: attempts, replies, TLS, retries and bounces."""
    settings: Settings = load_settings()
    try:
        history = mail_history(settings, mail_id, timeout)
    except (KafkaException, TimeoutError) as exc:
        unreachable(settings, exc)
    except LookupError as exc:
        err.print(f"[bold red]error:[/] {exc}", highlight=False)
        raise typer.Exit(1) from None
    wanted = [r for r in history.recipients if not rcpt or r.lower() == rcpt.lower()]
    if not wanted:
        whom = f" for {rcpt}" if rcpt else ""
        err.print(f"no delivery event for mail {mail_id}{whom} in mail.delivery: not attempted yet (still in "
                  "an earlier stage or a quarantine), or not a mail id", highlight=False)
        raise typer.Exit(1)
    if history.unreadable:
        err.print(f"warning: {history.unreadable} event(s) of this mail could not be read", highlight=False)
    for r in wanted:
        _show(history, r)


def register(app: typer.Typer) -> None:
    app.add_typer(delivery_app, name="delivery")
