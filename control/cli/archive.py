"""control/cli — `mailgate archive search|export|verify|hold|retention` — the mail archive, asked of its archiver.

The questions go over Kafka to maildepot-archiver (``control.server.archive``), so they answer on
any node, with or without the control server; the archiver checks the query and holds the store.
Exit codes: 1 a wrong argument or problem found, 2 not in the archive, 4 no archiver answered.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from rich.table import Table

from control.cli.common import fail, load_settings, out
from control.server import archive
from control.server.errors import InvalidArgument, NotFound, Unavailable

archive_app = typer.Typer(help="The mail archive: search, export, verify, legal hold, retention.",
                          no_args_is_help=True)

Sender = Annotated[str, typer.Option("--from", help="Words or an address of the sender.")]
Recipient = Annotated[str, typer.Option("--to", help="Words or an address of a recipient.")]
Subject = Annotated[str, typer.Option("--subject", help="Words in the subject.")]
Text = Annotated[str, typer.Option("--text", help="Words in the subject or the body.")]
Since = Annotated[str, typer.Option("--since", help="ISO date or time (UTC when no zone): Date on or after.")]
Until = Annotated[str, typer.Option("--until", help="ISO date or time: Date before.")]
Limit = Annotated[int, typer.Option("--limit", help="At most this many mails (max 10000).")]
UNAVAILABLE = 4


def _refused(exc: Exception) -> NoReturn:
    """The archiver's (or Kafka's) no, as the CLI's message and exit code."""
    code = 2 if isinstance(exc, NotFound) else UNAVAILABLE if isinstance(exc, Unavailable) else 1
    fail(str(exc), code)


def _ms(value: str, option: str) -> int | None:
    if not value:
        return None
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        fail(f"{option} {value!r}: give an ISO date or time, e.g. 2026-11-25 or 2026-11-25T08:00:00+01:00")
    return int((when if when.tzinfo else when.replace(tzinfo=UTC)).timestamp() * 1000)


def _query(sender: str, to: str, subject: str, text: str, since: str, until: str, limit: int) -> dict[str, Any]:
    return dict(sender=sender, recipient=to, subject=subject, text=text, since_ms=_ms(since, "--since"),
                until_ms=_ms(until, "--until"), limit=limit)


def _actor() -> str:
    return f"cli:{os.environ.get('USER', 'unknown')}"


def _finished(action: str, **fields: Any) -> archive.Done:
    try:
        return archive.finished(load_settings(), action, _actor(), **fields)
    except (InvalidArgument, NotFound, Unavailable) as exc:
        _refused(exc)


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
    query, settings = _query(sender, to, subject, text, since, until, limit), load_settings()
    try:
        rows = archive.search(settings, query, _actor())
    except (InvalidArgument, NotFound, Unavailable) as exc:
        _refused(exc)
    out.print(_table(rows))
    out.print(f"{len(rows)} mail(s)")


class _Export:
    """The export's files, made as the pieces come: one mbox, or one .eml per mail."""

    def __init__(self, target: Path, fmt: str) -> None:
        self.target, self.fmt, self.count = target, fmt, 0
        self.file: Any = None

    def piece(self, mail_id: str, data: bytes, last: bool) -> None:
        if self.file is None:
            path = self.target if self.fmt == "mbox" else self.target / f"{mail_id}.eml"
            self.file = open(path, "xb")  # noqa: SIM115 (open across pieces, closed at the mail's or export's end)
        self.file.write(data)
        if last:
            self.count += 1
            if self.fmt == "eml":
                self.file.close()
                self.file = None

    def close(self, ok: bool) -> None:
        if self.file is None and ok and self.fmt == "mbox":
            self.file = open(self.target, "xb")  # noqa: SIM115 (nothing found: an empty mbox)
        if self.file is not None:
            self.file.close()
            if not ok:  # never leave a half mail behind as if it were whole
                Path(self.file.name).unlink(missing_ok=True)


@archive_app.command("export")
def archive_export(target: Annotated[Path, typer.Argument(help="The mbox file, or the directory for .eml files.")],
                   fmt: Annotated[str, typer.Option("--format", help="mbox or eml.")] = "mbox",
                   sender: Sender = "", to: Recipient = "", subject: Subject = "", text: Text = "",
                   since: Since = "", until: Until = "", limit: Limit = 10000) -> None:
    """Writes the mails found as one mbox file or as one .eml file each."""
    if fmt not in ("mbox", "eml"):
        fail(f"--format {fmt!r}: use mbox or eml")
    if fmt == "mbox" and target.exists():
        fail(f"{target} exists: give a new file name")
    query, settings = _query(sender, to, subject, text, since, until, limit), load_settings()
    if fmt == "eml":
        target.mkdir(parents=True, exist_ok=True)
    written, ok = _Export(target, fmt), False
    try:
        for mail_id, data, last in archive.export(settings, query, fmt, _actor()):
            written.piece(mail_id, data, last)
        ok = True
    except (InvalidArgument, NotFound, Unavailable) as exc:
        _refused(exc)
    except FileExistsError as exc:
        fail(f"{exc.filename} exists: give a new file name")
    finally:
        written.close(ok)
    out.print(f"{written.count} mail(s) exported to {target} ({fmt})")


@archive_app.command("verify")
def archive_verify() -> None:
    """Checks the audit chain, the index and every stored mail file; exit 1 on any problem."""
    done = _finished("verify")
    for problem in done.problems:
        out.print(f"[red]TAMPERED[/] {problem}", highlight=False)
    out.print(f"{done.counts.get('mails', 0)} mail(s), {done.counts.get('entries', 0)} audit entries: "
              f"{f'{len(done.problems)} problem(s)' if done.problems else 'intact'}")
    if done.problems:
        raise typer.Exit(1)


@archive_app.command("hold")
def archive_hold(mail_ids: Annotated[list[str], typer.Argument(help="The mails to hold (or release).")],
                 reason: Annotated[str, typer.Option("--reason", help="Why (case number); required to hold.")] = "",
                 release: Annotated[bool, typer.Option("--release", help="End the legal hold.")] = False) -> None:
    """Puts mail on legal hold (retention never removes it) or releases it."""
    if not release and not reason.strip():
        fail("a legal hold needs --reason (e.g. a case number)")
    done = _finished("release" if release else "hold", mail_ids=mail_ids, reason=reason.strip() or None)
    out.print(f"{'released' if release else 'on hold'}: {done.counts.get('changed', 0)} mail(s)")
    if done.mail_ids:
        fail(f"not in the archive: {', '.join(done.mail_ids)}", 2)


@archive_app.command("retention")
def archive_retention() -> None:
    """Removes expired mail that is not on hold now (the archiver also does it every sweep interval)."""
    done = _finished("retention")
    for row in done.rows:
        out.print(f"expired {row['mail_id']} (rule {row['rule']}, expired {_when(row['expires_ms'])})")
    out.print(f"{len(done.rows)} mail(s) removed; {done.counts.get('held', 0)} on legal hold")


def register(app: typer.Typer) -> None:
    app.add_typer(archive_app, name="archive")
