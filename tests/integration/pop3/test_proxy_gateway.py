"""pop3-proxy and pop3s-proxy in a whole gateway (`mailgate up`, the real broker, a
real Dovecot): mail collected from a plain+STLS and a POP3S account passes the same
pipeline as SMTP mail to the next hop; a restart of pop3-proxy fetches nothing
twice (an account that keeps its mails on the server: only pop3.uidls knows);
the account status reaches control.status and `mailgate pop3 status`."""

from __future__ import annotations

import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import grpc
import pytest

from control.cli.pop3 import AccountRow, account_rows
from control.engine.services import SERVICES
from control.proto.rpc import pb
from core.settings import Settings
from tests.integration.control.conftest import NODE, Node, env_for, free_port_run, wait_until
from tests.support.dovecot import Dovecot, Mailbox, generated_mail
from tests.support.gateway import Gateway
from tests.support.kafka import Broker
from tests.support.ports import free_port
from tests.support.sink import Sink
from tests.support.topics import read_topic

pytestmark = pytest.mark.integration


def account_toml(name: str, port: int, tls: str, dovecot: Dovecot, box: Mailbox, password: str, *extra: str) -> str:
    lines = [f'name = "{name}"', f'host = "{dovecot.host}"', f"port = {port}", f'tls = "{tls}"',
             f'ca_file = "{dovecot.ca_file}"', f'user = "{box.user}"', password, f'recipient = "{name}@example.com"',
             "interval_s = 1", *extra]
    return "[[pop3.accounts]]\n" + "\n".join(lines) + "\n"


def config(dovecot: Dovecot, keep: Mailbox, drain: Mailbox, secret: Path) -> str:
    """keep: plain+STLS, leaves its mails on the server (password from the environment);
    drain: POP3S, deletes them (password from a secrets file)."""
    return (account_toml("keep", dovecot.plain_port, "starttls-required", dovecot, keep,
                         'password_env = "TEST_POP3_KEEP_PASSWORD"', "delete = false")
            + account_toml("drain", dovecot.pop3s_port, "implicit", dovecot, drain, f'password_file = "{secret}"'))


def crlf(raw: bytes) -> bytes:
    return raw.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


def subject(data: bytes) -> str:
    return next(line.split(b":", 1)[1].strip().decode() for line in data.split(b"\r\n")
                if line.lower().startswith(b"subject:"))


def succeeded_since(settings: Settings, account: str, since_ms: int) -> AccountRow | None:
    rows = [r for r in account_rows(settings) if r.account == account and r.reported_ms is not None]
    return next((r for r in rows if (r.status.get("last_success_ms") or 0) > since_ms), None)


def pop3_proxy_pid(node: Node) -> int | None:
    try:
        return node.service("pop3-proxy").pid or None
    except grpc.RpcError:  # control-server not listening yet
        return None


def test_gateway_collects_pop3_accounts_and_a_restart_fetches_nothing_twice(
        broker: Broker, dovecot: Dovecot, sink: Sink, tmp_path: Path) -> None:
    keep = dovecot.mailbox(generated_mail(i) for i in range(3))
    drain = dovecot.mailbox(generated_mail(i) for i in range(3, 5))
    home = tmp_path / "node"
    home.mkdir()
    secret = home / "drain.secret"
    secret.write_text(drain.password + "\n")
    (home / "mailgate.toml").write_text(config(dovecot, keep, drain, secret))
    control_port, remote_port, metrics_base = free_port(), free_port(), free_port_run(len(SERVICES))
    gateway = Gateway(broker.bootstrap_servers, home, sink.address, MAILGATE_CONFIG=str(home / "mailgate.toml"),
                      TEST_POP3_KEEP_PASSWORD=keep.password, **env_for(control_port, metrics_base, remote_port))
    with gateway:
        node = Node(gateway, sink, control_port, metrics_base, remote_port)
        try:
            delivered = sink.wait_for(5, timeout=60)
            assert sorted(subject(m.data) for m in delivered) == [f"generated mail {i}" for i in range(5)]
            by_subject = {subject(m.data): m for m in delivered}
            # byte for byte, after the header phase 2 puts on top (Authentication-Results)
            assert by_subject["generated mail 0"].data.endswith(crlf(generated_mail(0)))
            assert by_subject["generated mail 0"].rcpt_to == ["keep@example.com"]
            assert by_subject["generated mail 3"].rcpt_to == ["drain@example.com"]
            assert by_subject["generated mail 3"].mail_from == "sender3@example.net"  # from Return-Path
            wait_until("the POP3S account emptied", lambda: drain.count() == 0)
            metrics = f"http://127.0.0.1:{metrics_base + list(SERVICES).index('pop3s-proxy')}/metrics"
            page = urllib.request.urlopen(metrics, timeout=10).read().decode()
            assert 'mailgate_mails_total{queue="mail.in",service="pop3s-proxy"} 2.0' in page
            assert keep.count() == 3  # delete = false: still on the server

            old = wait_until("pop3-proxy listed running", lambda: pop3_proxy_pid(node), timeout=30)
            node.admin("RestartService", pb.ServiceRequest(name="pop3-proxy", node=NODE, reason="test"))
            wait_until("pop3-proxy running again with a new pid",
                       lambda: pop3_proxy_pid(node) not in (None, old), timeout=45)
            restarted = int(time.time() * 1000)  # the old process is gone: what succeeds after is the new one's
            row = wait_until("a cycle of the restarted pop3-proxy", lambda: succeeded_since(
                gateway.settings(), "keep", restarted), timeout=45)
            assert row.service == "pop3-proxy" and row.state in ("idle", "collecting")
            dovecot.deliver(keep, [generated_mail(5)])
            sink.wait_for(6, timeout=30)
            seen = int(time.time() * 1000)
            wait_until("one more cycle after it", lambda: succeeded_since(gateway.settings(), "keep", seen))
            assert sorted(subject(m.data) for m in sink.mails) == [f"generated mail {i}" for i in range(6)]
        except (AssertionError, grpc.RpcError):
            print(gateway.log())
            raise

        in_queue = [r.value for r in read_topic(gateway.settings(), f"{gateway.prefix}mail.in")]
        assert len({e["mail_id"] for e in in_queue}) == len(in_queue) == 6
        assert sorted(e["account"] for e in in_queue) == ["drain"] * 2 + ["keep"] * 4
        assert {e["origin"] for e in in_queue} == {"POP3"}
        cli = subprocess.run([sys.executable, "-m", "control.cli", "pop3", "status", "--json"], env=gateway.env,
                             cwd=home, capture_output=True, text=True, timeout=60)
        assert cli.returncode == 0, cli.stderr
        assert '"account": "keep"' in cli.stdout and '"account": "drain"' in cli.stdout
        assert '"last_error": null' in cli.stdout and '"collected_total": 1' in cli.stdout
