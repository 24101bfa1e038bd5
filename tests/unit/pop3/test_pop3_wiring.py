"""pop3-proxy / pop3s-proxy as services, without a broker: idle with no account,
what the registry says they do, and the account status as reported."""

from __future__ import annotations

import asyncio
import json

from control.engine.services import SERVICES
from core.settings import KafkaSettings, Settings
from ingress.pop3.collector import AccountStatus, CycleReport
from ingress.pop3.main import run_service
from ingress.pop3.settings import Pop3Account, Pop3Settings
from ingress.pop3.status import status_detail


def settings(*accounts: Pop3Account) -> Settings:
    # A broker nobody listens on: the idle service must not need one.
    return Settings(kafka=KafkaSettings(bootstrap_servers="127.0.0.1:9"), pop3=Pop3Settings(accounts=list(accounts)))


def account(name: str, tls: str) -> Pop3Account:
    return Pop3Account(name=name, host="pop.example.net", tls=tls, user="u", password="p",  # type: ignore[arg-type]
                       recipient=f"{name}@example.com")


async def test_without_accounts_the_service_stays_up_and_idle_until_stopped() -> None:
    stop = asyncio.Event()
    task = asyncio.create_task(run_service(settings(), "pop3-proxy", stop))
    await asyncio.sleep(0.2)
    assert not task.done()  # a service that exited would be restarted by the engine, again and again
    stop.set()
    await asyncio.wait_for(task, 5)


def test_the_registry_says_which_accounts_each_service_collects() -> None:
    s = settings(account("sales", "starttls-required"), account("hr", "implicit"), account("ops", "none"))
    assert SERVICES["pop3-proxy"].listens(s) == ("pop3://pop.example.net:110 (sales), "
                                                 "pop3://pop.example.net:110 (ops) → mail.in")
    assert SERVICES["pop3s-proxy"].listens(s) == "pop3://pop.example.net:995 (hr) → mail.in"
    assert SERVICES["pop3s-proxy"].listens(settings()) == "no POP3 account configured (idle)"
    assert SERVICES["pop3-proxy"].auto_start and SERVICES["pop3-proxy"].consumes is None


def test_status_detail_is_json_with_the_times_and_a_short_cycle_report() -> None:
    st = AccountStatus("sales", "pop.example.net:110", state="backoff", last_success_ms=1000, last_error="-ERR x",
                       last_error_ms=2000, collected_total=7,
                       last_cycle=CycleReport(listed=9, refused=[f"u{i} (-ERR)" for i in range(9)], seconds=0.12345))
    d = json.loads(status_detail(st))
    assert d["server"] == "pop.example.net:110" and "account" not in d and "state" not in d
    assert (d["last_success_ms"], d["last_error"], d["last_error_ms"], d["collected_total"]) == (1000, "-ERR x",
                                                                                                2000, 7)
    assert len(d["last_cycle"]["refused"]) == 5 and d["last_cycle"]["seconds"] == 0.123
    assert st.last_cycle is not None and len(st.last_cycle.refused) == 9  # the collector's own copy untouched
