"""pop3-proxy's account status on the real broker: reported to control.status, read
back by `mailgate pop3 status`, forgotten when the account is no longer configured."""

from __future__ import annotations

import pytest
from rich.console import Console

from control.cli.pop3 import account_rows, accounts_table
from core.settings import Settings
from ingress.pop3.collector import AccountStatus
from ingress.pop3.status import StatusReporter

pytestmark = pytest.mark.integration


def test_account_status_is_reported_read_back_and_forgotten(kafka_settings: Settings) -> None:
    here = StatusReporter(kafka_settings, "pop3s-proxy")  # the node the command runs on: no account configured
    here.report(AccountStatus("old", "pop.example.net:995", state="stopped"))
    assert here.close() == 0
    reporter = StatusReporter(kafka_settings.model_copy(update={"node": "gw-b"}), "pop3-proxy")
    reporter.report(AccountStatus("sales", "pop.example.net:110", state="backoff", last_success_ms=1_000,
                                  last_error="the server refused the login: -ERR [AUTH] Authentication failed.",
                                  last_error_ms=2_000, consecutive_failures=1))
    reporter.report(AccountStatus("hr", "pop.example.net:995", last_success_ms=3_000, collected_total=3))
    assert reporter.close() == 0

    rows = {r.account: r for r in account_rows(kafka_settings)}
    assert set(rows) == {"sales", "hr", "old"}
    assert (rows["sales"].state, rows["sales"].service, rows["sales"].node) == ("backoff", "pop3-proxy", "gw-b")
    assert (rows["old"].state, rows["old"].node) == ("not configured", kafka_settings.node)
    assert rows["sales"].status["last_error_ms"] == 2_000 and rows["hr"].status["collected_total"] == 3
    console = Console(record=True, width=300)
    console.print(accounts_table(list(rows.values())))
    text = console.export_text()
    assert "Authentication failed" in text and "pop.example.net:995" in text and "1970-01-01 00:00:03" in text

    assert reporter.forget_removed(kafka_settings, {"hr"}) == 1
    assert reporter.close() == 0
    assert [r.account for r in account_rows(kafka_settings)] == ["hr", "old"]  # the other node's are its own
