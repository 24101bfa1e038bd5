"""message-validation's routing decision (pure)."""

from __future__ import annotations

from core.poison import unreadable_record
from schemas import pack_message
from streams.validation.routing import decide


def received(rcpts: list[str]) -> dict:
    return {"mail_id": "01ID", "event_time": 1000, "node": "gw1", "origin": "SMTP", "client_address": "192.0.2.1",
            "client_helo": "h", "tls": None, "mail_from": "s@outside.test", "rcpt_to": rcpts, "size": 4,
            "message": pack_message(b"body")}


def test_one_route_per_destination_domain_keyed_by_domain() -> None:
    routes = decide(received(["a@Example.com", "b@example.org", "c@example.com."]), "gw2", now_ms=5)
    assert [(r.queue, r.key) for r in routes] == [("out", b"example.com"), ("out", b"example.org")]
    assert routes[0].record["rcpt_to"] == ["a@Example.com", "c@example.com."]
    assert routes[1].record["rcpt_to"] == ["b@example.org"]
    for route in routes:
        rec = route.record
        assert rec["mail_id"] == "01ID" and rec["node"] == "gw2" and rec["event_time"] == 5
        assert rec["received_time"] == 1000 and rec["destination"] == route.key.decode()
        assert rec["message"] == pack_message(b"body") and rec["reasons"]


def test_no_recipients_goes_to_quarantine() -> None:
    (route,) = decide(received([]), "gw1")
    assert route.queue == "quarantine" and route.key == b"01ID"
    assert route.record["reasons"] == ["no recipients"]


def test_unreadable_record_is_kept_whole_with_the_reason() -> None:
    rec = unreadable_record(None, b"\x00garbage", "bad magic", "gw1", "smtp-client", now_ms=7)
    assert rec.queue == "quarantine" and rec.message.data == b"\x00garbage"
    assert rec.reasons == ["smtp-client: unreadable event: bad magic"]
    assert len(rec.mail_id) == 26  # a fresh id when the record carried none
