"""control/cli — `mailgate sink` (an SMTP next hop to try the gateway with) and `mailgate report spam|ham`
(mails the spam filter learns from)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated

import typer

from control.cli.common import fail, load_settings, out, unreachable


def sink(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port (the default smarthost port).")] = 2526,
    maildir: Annotated[Path | None, typer.Option(help="Keep each mail in this Maildir.")] = None,
) -> None:
    """An SMTP sink that accepts and prints every mail: a next hop for trying the gateway out."""
    from control.cli.sink import run_sink

    try:
        asyncio.run(run_sink(host, port, lambda m: out.print(m, highlight=False, soft_wrap=True), maildir))
    except OSError as exc:
        fail(f"cannot listen on {host}:{port}: {exc}")


def report(
    label: Annotated[str, typer.Argument(help="spam or ham")],
    files: Annotated[list[Path], typer.Argument(help="mails (RFC 5322 files, e.g. .eml) to report")],
    reporter: Annotated[str, typer.Option(help="who says so")] = "admin",
    role: Annotated[str, typer.Option(help="admin or user (a user does not overrule an administrator)")] = "admin",
) -> None:
    """Report mails as spam or ham: the spam filter learns from them on every node within seconds."""
    from control.server.reports import LABELS, publish_report

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


def spam_reset(
    yes: Annotated[bool, typer.Option("--yes", help="really forget every report")] = False,
) -> None:
    """Forget what reports taught the spam filter: every node goes back to the base model alone."""
    from control.server.reports import reset_spam_filter

    if not yes:
        fail("this forgets every spam and ham report on every node: run `mailgate spam-reset --yes`")
    settings = load_settings()
    try:
        removed = reset_spam_filter(settings)
    except (ConnectionError, TimeoutError, LookupError) as exc:
        unreachable(settings, exc)
    out.print(f"spam filter reset to its base model: {removed} learned patterns removed on every node",
              highlight=False)


def register(app: typer.Typer) -> None:
    app.command()(sink)
    app.command()(report)
    app.command("spam-reset")(spam_reset)
