"""`mailgate archive search|export|verify|hold|retention` — the archive store of this node.

Run on the node of maildepot-archiver: the commands open its store directory
(``maildepot.directory``) themselves, read-only for search, export and verify.
Remote consoles use the control server's SearchArchive / ExportArchive RPCs.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.table import Table

from control.archive import checked, opened
from control.errors import InvalidArgument, NotFound
from control.settings import Settings
from egress.maildepot.search import Query, export, search
from egress.maildepot.verify import verify

archive_app = typer.Typer(help="The mail archive of this node: search, export, verify, legal hold, retention.",
                          no_args_is_help=True)
out = Console()
err = Console(stderr=True)

Sender = Annotated[str, typer.Option("--from", help="Words or an address of the sender.")]
Recipient = Annotated[str, typer.Option("--to", help="Words or an address of a recipient.")]
Subject = Annotated[str, typer.Option("--subject", help="Words in the subject.")]
Text = Annotated[str, typer.Option("--text", help="Words in the subject or the body.")]
Since = Annotated[str, typer.Option("--since", help="ISO date or time (UTC when no zone): Date on or after.")]
Until = Annotated[str, typer.Option("--until", help="ISO date or time: Date before.")]
Limit = Annotated[int, typer.Option("--limit", help="At most this many mails (max 10000).")]


def _fail(message: str, code: int = 1) -> NoReturn:
    err.print(f"[bold red]error:[/] {message}", highlight=False)
    raise typer.Exit(code)


def _settings() -> Settings:
    from control.cli import load_settings

    return load_settings()


def _ms(value: str, option: str) -> int | None:
    if not value:
        return None
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        _fail(f"{option} {value!r}: give an ISO date or time, e.g. 2026-11-25 or 2026-11-25T08:00:00+01:00")
    return int((when if when.tzinfo else when.replace(tzinfo=UTC)).timestamp() * 1000)


def _query(sender: str, to: str, subject: str, text: str, since: str, until: str, limit: int) -> Query:
    try:
        return checked(Query(sender=sender, recipient=to, subject=subject, text=text, since_ms=_ms(since, "--since"),
                             until_ms=_ms(until, "--until"), limit=limit))
    except InvalidArgument as exc:
        _fail(str(exc))


def _when(ms: int | None) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M") if ms else "never"


def _table(rows: list[dict[str, Any]]) -> Table:
    table = Table()
    table.add_column("mail id", no_wrap=True)
    for name in ("date (UTC)", "from", "to", "subject", "rule", "expires", "hold"):
        table.add_column(name)
    for r in rows:
        table.add_row(r["mail_id"], _when(r["date_ms"]), r["mail_from"], ", ".join(r["rcpt_to"][:3]),
                      r["subject"][:60], r["rule"], _when(r["expires_ms"]), r["hold"] or "")
    return table


@archive_app.command("search")
def archive_search(sender: Sender = "", to: Recipient = "", subject: Subject = "", text: Text = "",
                   since: Since = "", until: Until = "", limit: Limit = 100) -> None:
    """Mails of the archive that match every filter given."""
    try:
        with opened(_settings()) as store:
            rows = search(store, _query(sender, to, subject, text, since, until, limit))
    except NotFound as exc:
        _fail(str(exc), 2)
    out.print(_table(rows))
    out.print(f"{len(rows)} mail(s)")


@archive_app.command("export")
def archive_export(target: Annotated[Path, typer.Argument(help="The mbox file, or the directory for .eml files.")],
                   fmt: Annotated[str, typer.Option("--format", help="mbox or eml.")] = "mbox",
                   sender: Sender = "", to: Recipient = "", subject: Subject = "", text: Text = "",
                   since: Since = "", until: Until = "", limit: Limit = 10000) -> None:
    """Writes the mails found as one mbox file or as one .eml file each."""
    if fmt not in ("mbox", "eml"):
        _fail(f"--format {fmt!r}: use mbox or eml")
    q = _query(sender, to, subject, text, since, until, limit)
    count = 0
    try:
        with opened(_settings()) as store:
            if fmt == "eml":
                target.mkdir(parents=True, exist_ok=True)
            with open(target, "xb") if fmt == "mbox" else open(os.devnull, "wb") as mbox:
                for row, data in export(store, q, fmt):
                    if fmt == "eml":
                        (target / f"{row['mail_id']}.eml").write_bytes(data)
                    else:
                        mbox.write(data)
                    count += 1
    except NotFound as exc:
        _fail(str(exc), 2)
    except FileExistsError:
        _fail(f"{target} exists: give a new file name")
    out.print(f"{count} mail(s) exported to {target} ({fmt})")


@archive_app.command("verify")
def archive_verify() -> None:
    """Checks the audit chain, the index and every stored mail file; exit 1 on any problem."""
    try:
        with opened(_settings()) as store:
            report = verify(store)
    except NotFound as exc:
        _fail(str(exc), 2)
    for problem in report.problems:
        out.print(f"[red]TAMPERED[/] {problem}", highlight=False)
    out.print(f"{report.mails} mail(s), {report.entries} audit entries: "
              f"{'intact' if report.ok else f'{len(report.problems)} problem(s)'}")
    if not report.ok:
        raise typer.Exit(1)


@archive_app.command("hold")
def archive_hold(mail_ids: Annotated[list[str], typer.Argument(help="The mails to hold (or release).")],
                 reason: Annotated[str, typer.Option("--reason", help="Why (case number); required to hold.")] = "",
                 release: Annotated[bool, typer.Option("--release", help="End the legal hold.")] = False) -> None:
    """Puts mail on legal hold (retention never removes it) or releases it."""
    if not release and not reason.strip():
        _fail("a legal hold needs --reason (e.g. a case number)")
    actor = f"cli:{os.environ.get('USER', 'unknown')}"
    try:
        with opened(_settings(), readonly=False) as store:
            changed = store.set_hold(mail_ids, None if release else reason.strip(), actor)
            unknown = [m for m in mail_ids if store.row(m) is None]
    except NotFound as exc:
        _fail(str(exc), 2)
    out.print(f"{'released' if release else 'on hold'}: {len(changed)} mail(s)")
    if unknown:
        _fail(f"not in the archive: {', '.join(unknown)}", 2)


@archive_app.command("retention")
def archive_retention() -> None:
    """Removes expired mail that is not on hold now (the archiver also does it every sweep interval)."""
    try:
        with opened(_settings(), readonly=False) as store:
            removed = store.sweep()
            held = store.db.execute("SELECT count(*) FROM mails WHERE hold IS NOT NULL").fetchone()[0]
    except NotFound as exc:
        _fail(str(exc), 2)
    for row in removed:
        out.print(f"expired {row['mail_id']} (rule {row['rule']}, expired {_when(row['expires_ms'])})")
    out.print(f"{len(removed)} mail(s) removed; {held} on legal hold")


def register(app: typer.Typer) -> None:
    app.add_typer(archive_app, name="archive")
