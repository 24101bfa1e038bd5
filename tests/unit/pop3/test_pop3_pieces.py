"""Pure pieces of pop3-proxy: dot-unstuffing, listings, the cycle plan, Return-Path,
the MailReceived event, backoff."""

from __future__ import annotations

import asyncio

import pytest

from ingress.pop3.client import Listed, Pop3ProtocolError, parse_listing, unstuff
from ingress.pop3.collector import AccountCollector, _Budget, plan_cycle
from ingress.pop3.events import mail_received, return_path
from ingress.pop3.settings import Pop3Account
from ingress.pop3.uidls import MemoryUidlStore, UidlEntry
from schemas import default_codec, new_mail_id, unpack_message


def test_unstuff_removes_exactly_one_leading_dot_per_line() -> None:
    assert unstuff(b"..\r\n...x\r\n.y\r\nplain\r\n") == b".\r\n..x\r\ny\r\nplain\r\n"
    assert unstuff(b"a\r\n..\r\n..b\r\n") == b"a\r\n.\r\n.b\r\n"
    assert unstuff(b"") == b""


def test_parse_listing_joins_uidl_and_list() -> None:
    got = parse_listing(b"1 aaa\r\n2 b/b+\r\n", b"1 100\r\n2 2000\r\n")
    assert got == [Listed(1, "aaa", 100), Listed(2, "b/b+", 2000)]
    assert parse_listing(b"", b"") == []


@pytest.mark.parametrize(("uidl", "lst", "message"), [
    (b"1 a b\r\n", b"1 1\r\n", "malformed UIDL line"),
    (b"1 " + b"x" * 71 + b"\r\n", b"1 1\r\n", "malformed UIDL line"),  # RFC 1939: at most 70 characters
    (b"x a\r\n", b"1 1\r\n", "malformed UIDL line"),
    (b"1 a\r\n1 b\r\n", b"1 1\r\n", "lists message 1 twice"),
    (b"1 a\r\n2 a\r\n", b"1 1\r\n2 1\r\n", "same id"),
    (b"1 a\r\n", b"1 -5\r\n", "malformed LIST line"),
    (b"1 a\r\n", b"2 5\r\n", "disagree"),
])
def test_parse_listing_refuses_malformed_replies(uidl: bytes, lst: bytes, message: str) -> None:
    with pytest.raises(Pop3ProtocolError, match=message):
        parse_listing(uidl, lst)


def test_plan_skips_collected_deletes_them_and_keeps_big_mails() -> None:
    listing = [Listed(1, "done", 10), Listed(2, "new", 10), Listed(3, "big", 10_000), Listed(4, "half", 10),
               Listed(5, "liar", 10)]
    entries = {"done": UidlEntry("collected", "id1", 1), "half": UidlEntry("pending", "id4", 1)}
    plan = plan_cycle(listing, entries, delete=True, max_size=1000, too_large={"liar"})
    assert [m.uidl for m in plan.fetch] == ["new", "half"]
    assert [m.uidl for m in plan.delete_known] == ["done"]
    assert [m.uidl for m in plan.too_large] == ["big", "liar"]
    assert plan_cycle(listing, entries, delete=False, max_size=1000).delete_known == []


@pytest.mark.parametrize(("raw", "sender"), [
    (b"Return-Path: <a@b.example>\r\nSubject: x\r\n\r\nbody", "a@b.example"),
    (b"return-path:<>\r\n\r\n", ""),
    (b"Return-Path:\r\n <folded@b.example>\r\n\r\n", "folded@b.example"),
    (b"Subject: x\r\n\r\nReturn-Path: <in-body@b.example>\r\n", ""),
    (b"X: y\nReturn-Path: bare@b.example\n\nbody", "bare@b.example"),
    (b"Return-Path: <first@b.example>\r\nReturn-Path: <second@b.example>\r\n\r\n", "first@b.example"),
    (b"Subject: none\r\n\r\n", ""),
])
def test_return_path_is_the_envelope_sender(raw: bytes, sender: str) -> None:
    assert return_path(raw) == sender


def account(**kw: object) -> Pop3Account:
    fields: dict[str, object] = dict(name="sales", host="pop.example.net", user="u", password="p",
                                     recipient="sales@example.com", interval_s=60)
    fields.update(kw)
    return Pop3Account(**fields)  # type: ignore[arg-type]


def test_mail_received_fits_the_schema() -> None:
    raw = b"Return-Path: <s@outside.test>\r\nSubject: hi\r\n\r\n" + b"body line\r\n" * 100
    mail_id = new_mail_id()
    event = mail_received(raw, account(), "gw1", mail_id, "TLSv1.3 TLS_AES_256_GCM_SHA384")
    assert event["mail_id"] == mail_id and event["origin"] == "POP3" and event["client_address"] == "pop.example.net"
    assert event["mail_from"] == "s@outside.test" and event["rcpt_to"] == ["sales@example.com"]
    assert event["client_helo"] is None and event["size"] == len(raw)
    assert unpack_message(event["message"]) == raw
    codec = default_codec()
    assert codec.decode(codec.encode("MailReceived", event)).record["account"] == "sales"


class NeverPublisher:
    async def publish(self, topic: object, event: dict[str, object], *, event_type: str | None = None) -> None:
        raise AssertionError("not called")


def test_backoff_waits_the_interval_then_doubles_up_to_the_cap() -> None:
    c = AccountCollector(account(interval_s=60), NeverPublisher(), MemoryUidlStore(), "gw1", backoff_max_s=300)
    delays = []
    for failures in range(6):
        c.status.consecutive_failures = failures
        delays.append(c.next_delay())
    assert delays == [60, 60, 120, 240, 300, 300]
    slow = AccountCollector(account(interval_s=7200), NeverPublisher(), MemoryUidlStore(), "gw1", backoff_max_s=300)
    slow.status.consecutive_failures = 3
    assert slow.next_delay() == 7200  # backoff never makes an account come sooner than its interval


async def test_the_in_flight_budget_bounds_count_and_bytes_but_always_admits_one() -> None:
    budget = _Budget(count=2, size=100)
    await budget.admit(500)  # alone: admitted although larger than the budget
    blocked = asyncio.create_task(budget.admit(10))
    await asyncio.sleep(0.01)
    assert not blocked.done()
    await budget.release(500)
    await asyncio.wait_for(blocked, 1)
    await budget.admit(90)
    third = asyncio.create_task(budget.admit(1))  # count 2 reached
    await asyncio.sleep(0.01)
    assert not third.done() and (budget.n, budget.bytes) == (2, 100)
    await budget.release(10)
    await asyncio.wait_for(third, 1)
