"""Control-plane pieces without I/O: tokens and roles, desired-state resolution, config keys and
values, queue folding, durations, rejection reasons, the engine's policies on a stand-in link."""

from __future__ import annotations

import time
from typing import Any

import pytest
from pydantic import SecretStr

from control.cli.client import parse_duration
from control.engine.node_link import env_name
from control.engine.supervisor import Engine, ServiceSpec
from control.server.archive import one_answer
from control.server.auth import Principal, Tokens, allowed, bearer
from control.server.config_store import check_key, leaves, validate
from control.server.errors import InvalidArgument, Unavailable
from control.server.metrics_feed import rejection_reason
from control.server.queues import Held, apply_record
from core.control_channel import ALL_NODES, PROCESS, REFRESH, desired_key, effective, status_key
from core.settings import Settings
from schemas import default_codec, pack_message


def test_tokens_resolve_to_roles_and_bearer_is_parsed() -> None:
    tokens = Tokens({"admin:alice": SecretStr("a1"), "user:Bob@Example.com": SecretStr("b1")})
    assert tokens.resolve("a1") == Principal("admin", "alice")
    assert tokens.resolve("b1") == Principal("user", "bob@example.com")  # addresses compare lower-case
    assert tokens.resolve("a") is None and tokens.resolve("") is None
    assert bearer([("authorization", "Bearer  a1 ")]) == "a1"
    assert bearer([("authorization", "Basic a1")]) is None and bearer([]) is None


def test_users_may_call_the_queue_methods_only() -> None:
    user, admin = Principal("user", "bob@example.com"), Principal("admin", "alice")
    for method in ("ListQueue", "ShowMail", "ReleaseMail", "DeleteMail", "ReportMail", "WhoAmI"):
        assert allowed(user, f"/mailgate.control.v1.Control/{method}")
    for method in ("ListServices", "StopService", "PauseConsumers", "SetConfig", "GetConfig", "Refresh"):
        assert not allowed(user, f"/mailgate.control.v1.Control/{method}")
        assert allowed(admin, f"/mailgate.control.v1.Control/{method}")


def rec(node: str, state: str, t: int) -> dict[str, Any]:
    return {"node": node, "state": state, "event_time": t}


def test_the_newer_of_every_node_and_own_node_wins() -> None:
    k_all, k_own = desired_key(PROCESS, ALL_NODES, "smtp-server"), desired_key(PROCESS, "n1", "smtp-server")
    assert k_all == "process/*/smtp-server" and desired_key(REFRESH, "n1") == "refresh/n1"
    assert status_key("n1", "smtp-server", PROCESS) == "n1/smtp-server/process"
    assert effective({}, PROCESS, "n1", "smtp-server") is None
    table = {k_all: rec("*", "stopped", 10), k_own: rec("n1", "running", 20)}
    assert effective(table, PROCESS, "n1", "smtp-server")["state"] == "running"
    assert effective(table, PROCESS, "n2", "smtp-server")["state"] == "stopped"
    table[k_all] = rec("*", "stopped", 30)
    assert effective(table, PROCESS, "n1", "smtp-server")["state"] == "stopped"
    table[k_own] = rec("n1", "running", 30)  # a tie: the node's own
    assert effective(table, PROCESS, "n1", "smtp-server")["state"] == "running"


def test_config_keys_and_values_are_checked_as_the_environment_would_read_them() -> None:
    assert "smtp_server.greylist.delay_s" in leaves(Settings)
    assert env_name("smtp_server.greylist.delay_s") == "MAILGATE_SMTP_SERVER__GREYLIST__DELAY_S"
    validate("smtp_server.domains", check_key("smtp_server.domains"), "a.test,b.test")
    validate("smtp_client.retry_delays_s", check_key("smtp_client.retry_delays_s"), "1,2,3")
    with pytest.raises(InvalidArgument, match="3 positive delays"):
        validate("smtp_client.retry_delays_s", check_key("smtp_client.retry_delays_s"), "1,2")
    with pytest.raises(InvalidArgument, match=r"did you mean smtp_server.port, smtp_server.tls.port"):
        check_key("port")
    for fixed in ("node", "kafka.bootstrap_servers", "control.run_until_ms"):
        with pytest.raises(InvalidArgument, match="not set through the control plane"):
            check_key(fixed)


def routed(rcpts: list[str], reasons: tuple[str, ...] = ("spam",)) -> bytes:
    return default_codec().encode("MailRouted", {
        "mail_id": "M1", "event_time": 1, "node": "n", "queue": "spam", "reasons": list(reasons), "destination": None,
        "mail_from": "x@o.test", "rcpt_to": rcpts, "received_time": 1, "client_address": None, "size": 4,
        "message": pack_message(b"Subject: hi\r\n\r\nbody")})


def action(kind: str, rcpts: list[str]) -> bytes:
    return default_codec().encode("QueueAction", {
        "mail_id": "M1", "event_time": 2, "node": "n", "queue": "spam", "action": kind, "recipients": rcpts,
        "actor": "user:a@x.test", "role": "user", "reason": None})


def test_queue_folding_takes_out_released_and_deleted_recipients() -> None:
    held: dict[str, Held] = {}
    apply_record("spam", held, b"M1", routed(["a@x.test", "B@y.test"]))
    bob, admin = Principal("user", "b@y.test"), Principal("admin", "root")
    assert held["M1"].for_whom(bob) == ["B@y.test"] and held["M1"].subject() == "hi"
    assert held["M1"].for_whom(Principal("user", "c@z.test")) == []
    apply_record("spam", held, b"M1", action("RELEASE", ["a@x.test"]))
    assert held["M1"].for_whom(admin) == ["B@y.test"]
    apply_record("spam", held, b"M1", b"not an event")  # ignored
    apply_record("spam", held, b"M1", action("DELETE", []))
    assert held == {}
    apply_record("spam", held, b"M1", routed(["a@x.test"]))
    apply_record("spam", held, b"M1", None)  # a tombstone
    assert held == {}


def test_a_second_routing_record_of_a_mail_adds_its_recipients() -> None:
    held: dict[str, Held] = {}
    admin = Principal("admin", "root")
    apply_record("spam", held, b"M1", routed(["a@x.test", "b@x.test"]))
    apply_record("spam", held, b"M1", routed(["c@y.test"], ("spam", "content rule")))  # another recipient group
    assert held["M1"].for_whom(admin) == ["a@x.test", "b@x.test", "c@y.test"]
    assert held["M1"].record["rcpt_to"] == ["a@x.test", "b@x.test", "c@y.test"]
    assert held["M1"].record["reasons"] == ["spam", "content rule"]
    apply_record("spam", held, b"M1", action("RELEASE", ["a@x.test"]))
    apply_record("spam", held, b"M1", routed(["a@x.test"]))  # the released copy, held again
    assert held["M1"].for_whom(admin) == ["b@x.test", "c@y.test", "a@x.test"]
    assert held["M1"].for_whom(Principal("user", "a@x.test")) == ["a@x.test"]


def test_durations_and_rejection_reasons() -> None:
    assert parse_duration("90") == 90 and parse_duration("1h30m") == 5400 and parse_duration("2.5m") == 150
    with pytest.raises(ValueError, match="not a duration"):
        parse_duration("soon")
    assert rejection_reason({"verdicts": [{"filter": "helo", "action": "CONTINUE"},
                                          {"filter": "relay", "action": "REJECT"}]}) == "relay"
    assert rejection_reason({"verdicts": [], "status": "5.5.1"}) == "status 5.5.1"


class FakeLink:
    def __init__(self, record: dict[str, Any] | None) -> None:
        self.record, self.started_ms, self.written = record, int(time.time() * 1000), []

    def effective(self, service: str) -> dict[str, Any] | None:
        return self.record

    def write_desired(self, service: str, state: str, reason: str) -> None:
        self.written.append((service, state, reason))


def remote_support(record: dict[str, Any] | None) -> tuple[Engine, FakeLink]:
    engine = Engine([ServiceSpec("remote-support", "-", ["true"], auto_start=False)], settings=Settings())
    link = FakeLink(record)
    engine.link = link  # type: ignore[assignment]
    return engine, link


def test_remote_support_is_never_started_by_an_old_or_expired_start() -> None:
    now = int(time.time() * 1000)
    for record, why in ((None, None),
                        ({"event_id": "E1", "state": "running", "event_time": now - 60_000, "expires_time": now + 60_000,
                          "restart_generation": 0, "actor": "admin:a"}, "never started automatically"),
                        ({"event_id": "E2", "state": "running", "event_time": now + 10_000, "expires_time": now - 1,
                          "restart_generation": 0, "actor": "admin:a"}, "ran out")):
        engine, link = remote_support(record)
        svc = engine.services[0]
        engine._obey(svc)
        assert svc.desired == "stopped" and svc.proc is None
        assert len(link.written) == (0 if why is None else 1)
        if why is not None:
            assert why in link.written[0][2] and link.written[0][1] == "stopped"
            engine._obey(svc)
            assert len(link.written) == 1  # answered once


def reply(node: str, seq: int, kind: str, **fields: object) -> dict[str, object]:
    return {"node": node, "seq": seq, "kind": kind, "code": "", "message": "", **fields}


def test_an_archive_answer_is_one_nodes_replies_in_order() -> None:
    replies = [reply("a", 0, "started"), reply("b", 0, "started"), reply("a", 1, "row", row={"mail_id": "m1"}),
               reply("b", 1, "row", row={"mail_id": "m2"}), reply("a", 2, "done"), reply("a", 3, "row")]
    assert [(r["node"], r["kind"]) for r in one_answer(replies)] == [("a", "started"), ("a", "row"), ("a", "done")]

    gap = [reply("a", 0, "started"), reply("a", 2, "done")]  # reply 1 lost: never taken as whole
    with pytest.raises(Unavailable, match="incomplete"):
        list(one_answer(gap))
    refused = [reply("a", 0, "started"), reply("a", 1, "error", code="INVALID_ARGUMENT", message="limit 0")]
    with pytest.raises(InvalidArgument, match="limit 0"):
        list(one_answer(refused))
    failed = [reply("a", 0, "error", code="INTERNAL", message="disk full")]
    with pytest.raises(Unavailable, match="disk full"):
        list(one_answer(failed))
