"""control/cli — `mailgate pop3 status`: the POP3 accounts of every node — state, last success,
last error, counts, next attempt — as pop3-proxy and pop3s-proxy reported them
to control.status (aspect ``account/<name>``; see ingress/pop3/status.py).

Reads the compacted topic directly (like `mailgate topics list`), so it works
whether or not control-server runs. Accounts of this node's settings that no
service has reported yet are listed as such.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Annotated, Any

import typer
from confluent_kafka import KafkaException
from rich.console import Console
from rich.table import Table

from control.cli.common import load_settings, unreachable
from core.control_channel import ACCOUNT, Record
from core.settings import Settings
from core.tables import load_table
from schemas import default_codec
from schemas.topics import CONTROL_STATUS, TopicNames

STATE_STYLE = {"idle": "green", "collecting": "cyan", "backoff": "red", "stopped": "yellow"}


@dataclass(frozen=True)
class AccountRow:
    account: str
    node: str
    service: str
    state: str
    reported_ms: int | None
    status: dict[str, Any] = field(default_factory=dict)  # ingress/pop3/status.py's detail


def account_rows(settings: Settings, timeout: float = 10.0) -> list[AccountRow]:
    """Every account status in control.status, plus this node's accounts not reported yet."""
    codec = default_codec()
    rows: list[AccountRow] = []
    for value in load_table(settings, TopicNames(settings.kafka.topic_prefix)(CONTROL_STATUS), timeout).values():
        try:
            record: Record = codec.decode(value, expect="ServiceStatus").record
            if not record["aspect"].startswith(f"{ACCOUNT}/"):
                continue
            status = json.loads(record["detail"] or "{}")
        except ValueError:
            continue  # not an account status, or unreadable: `mailgate services list` is for those
        rows.append(AccountRow(record["aspect"].split("/", 1)[1], record["node"], record["service"],
                               record["state"], record["event_time"], status))
    configured = {a.name for a in settings.pop3.accounts}
    rows = [r if r.node != settings.node or r.account in configured
            else AccountRow(r.account, r.node, r.service, "not configured", r.reported_ms, r.status) for r in rows]
    seen = {(r.node, r.account) for r in rows}
    for account in settings.pop3.accounts:
        if (settings.node, account.name) not in seen:
            service = "pop3s-proxy" if account.tls == "implicit" else "pop3-proxy"
            state = "not reported" if account.enabled else "disabled"
            rows.append(AccountRow(account.name, settings.node, service, state, None, {"server": account.address}))
    return sorted(rows, key=lambda r: (r.account, r.node))


def _when(ms: int | None) -> str:
    if not ms:
        return "-"
    seconds = ms / 1000
    ago = int(time.time() - seconds)
    span = f"{ago}s" if abs(ago) < 120 else f"{ago // 60}m" if abs(ago) < 7200 else f"{ago // 3600}h"
    moment = datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%d %H:%M:%S")
    return f"{moment} ({span} ago)" if ago >= 0 else f"{moment} (in {span.lstrip('-')})"


def accounts_table(rows: list[AccountRow]) -> Table:
    table = Table(title="POP3 accounts (times UTC)", title_justify="left")
    for col in ("account", "node", "service", "server", "state", "last success", "last error", "error",
                "collected", "next attempt"):
        table.add_column(col, justify="right" if col == "collected" else "left", overflow="fold")
    for r in rows:
        s = r.status
        failing = s.get("last_error_ms") and (s.get("last_success_ms") or 0) < s["last_error_ms"]
        error = s.get("last_error") or ""
        table.add_row(r.account, r.node, r.service, s.get("server", "-"),
                      f"[{STATE_STYLE.get(r.state, 'white')}]{r.state}[/]", _when(s.get("last_success_ms")),
                      _when(s.get("last_error_ms")), f"[red]{error}[/]" if failing else error,
                      str(s.get("collected_total", "-")), _when(s.get("next_attempt_ms")))
    return table


def register(app: typer.Typer) -> None:
    pop3_app = typer.Typer(help="The POP3 accounts pop3-proxy and pop3s-proxy collect.", no_args_is_help=True)
    app.add_typer(pop3_app, name="pop3")

    @pop3_app.command("status")
    def status(as_json: Annotated[bool, typer.Option("--json", help="One JSON object per account.")] = False) -> None:
        """Per account: state, last success, last error, mails collected, next attempt."""
        settings = load_settings()
        try:
            rows = account_rows(settings)
        except (KafkaException, LookupError, TimeoutError) as exc:
            unreachable(settings, exc)
        if not as_json:
            Console().print(accounts_table(rows))
            return
        for r in rows:
            typer.echo(json.dumps({"account": r.account, "node": r.node, "service": r.service, "state": r.state,
                                   "reported_ms": r.reported_ms, **r.status}, ensure_ascii=False))
