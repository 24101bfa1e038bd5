"""pop3-proxy / pop3s-proxy against a real Dovecot: collect over STLS and POP3S,
no duplicates, delete only after publish, crash windows, bad password, oversize."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from ingress.pop3.collector import AccountCollector
from ingress.pop3.scheduler import serve
from ingress.pop3.settings import Pop3Account, Pop3Settings
from ingress.pop3.uidls import MemoryUidlStore, UidlEntry
from schemas import default_codec, unpack_message
from tests.integration.pop3.recording import RecordingPublisher
from tests.support.dovecot import Dovecot, corpus_messages

pytestmark = pytest.mark.integration

MakeAccount = Callable[..., Pop3Account]


def crlf(raw: bytes) -> bytes:
    return raw.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


def collector(account: Pop3Account, publisher: Any, store: Any = None, **kw: Any) -> AccountCollector:
    return AccountCollector(account, publisher, store if store is not None else MemoryUidlStore(), "gw-test", **kw)


@pytest.mark.parametrize("tls", ["starttls-required", "implicit"])
async def test_collects_every_mail_once_over_tls_and_deletes(dovecot: Dovecot, make_account: MakeAccount,
                                                              tls: str) -> None:
    mails = list(corpus_messages(12))
    box = dovecot.mailbox(mails)
    pub = RecordingPublisher()
    c = collector(make_account(box, tls), pub)

    report = await c.cycle()

    assert report is not None and c.status.last_error is None, c.status.last_error
    assert report.collected == 12 and report.deleted == 12
    assert box.count() == 0
    raws = [unpack_message(e["message"]) for e in pub.events]
    assert sorted(raws) == sorted(crlf(m) for m in mails)  # byte for byte, as the server holds them
    codec = default_codec()
    for e in pub.events:
        assert e["origin"] == "POP3" and e["client_address"] == dovecot.host and e["account"] == box.user
        assert e["rcpt_to"] == [f"{box.user}@example.com"]
        assert e["tls"] is not None and e["tls"].startswith("TLSv1.")
        codec.encode("MailReceived", e)
    first = pub.events[0]
    assert first["mail_from"] and first["mail_from"] in unpack_message(first["message"]).decode(errors="replace")
    assert len(set(pub.mail_ids)) == 12
    assert c.status.collected_total == 12 and c.status.last_success_ms is not None


async def test_pop3s_certificate_is_verified(dovecot: Dovecot, make_account: MakeAccount) -> None:
    box = dovecot.mailbox(corpus_messages(2))
    pub = RecordingPublisher()
    c = collector(make_account(box, "implicit", ca_file=None), pub)  # system CAs: the test CA is unknown

    assert await c.cycle() is None
    assert c.status.last_error is not None and "certificate not trusted" in c.status.last_error
    assert pub.events == [] and box.count() == 2


async def test_stls_certificate_is_verified_too(dovecot: Dovecot, make_account: MakeAccount) -> None:
    box = dovecot.mailbox(corpus_messages(2))
    c = collector(make_account(box, "starttls-opportunistic", ca_file=None), RecordingPublisher())

    assert await c.cycle() is None
    assert c.status.last_error is not None and "after STLS" in c.status.last_error
    assert box.count() == 2


async def test_no_duplicates_across_cycles_and_restarts_when_keeping_mail(dovecot: Dovecot,
                                                                          make_account: MakeAccount) -> None:
    box = dovecot.mailbox(corpus_messages(3))
    store = MemoryUidlStore()
    pub = RecordingPublisher()
    account = make_account(box, delete=False)
    c = collector(account, pub, store)

    assert (await c.cycle()).collected == 3  # type: ignore[union-attr]
    dovecot.deliver(box, list(corpus_messages(5))[3:])  # 2 more
    second = await c.cycle()
    assert second is not None and second.collected == 2 and second.skipped_known == 3
    restarted = collector(account, pub, store)  # a new process, the ledger restored
    third = await restarted.cycle()
    assert third is not None and third.collected == 0 and third.skipped_known == 5
    assert len(pub.events) == 5 and len(set(pub.mail_ids)) == 5
    assert box.count() == 5  # delete = false: all still on the server


async def test_nothing_is_deleted_when_publish_fails(dovecot: Dovecot, make_account: MakeAccount) -> None:
    box = dovecot.mailbox(corpus_messages(6))
    store = MemoryUidlStore()
    failing = RecordingPublisher(fail_after=2)
    account = make_account(box)
    c = collector(account, failing, store)

    assert await c.cycle() is None
    assert c.status.last_error is not None and "in-queue is unavailable" in c.status.last_error
    assert c.status.consecutive_failures == 1
    assert len(failing.events) == 2
    assert box.count() == 4  # only the two acknowledged mails were deleted

    working = RecordingPublisher()
    c.publisher = working
    report = await c.cycle()
    assert report is not None and report.collected == 4 and box.count() == 0
    all_raw = sorted(unpack_message(e["message"]) for e in failing.events + working.events)
    assert all_raw == sorted(crlf(m) for m in corpus_messages(6))  # each exactly once
    assert c.status.consecutive_failures == 0


async def _crash(c: AccountCollector, reached: Callable[[], bool]) -> None:
    """Run a cycle and kill it (like kill -9: no QUIT, no further ledger writes)
    once ``reached()`` is true."""
    task = asyncio.create_task(c.collect_once())
    async with asyncio.timeout(20):
        while not reached():
            assert not task.done(), task
            await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_crash_after_ack_before_ledger_commit_republishes_under_the_same_mail_id(
        dovecot: Dovecot, make_account: MakeAccount) -> None:
    box = dovecot.mailbox(corpus_messages(4))
    store = MemoryUidlStore()
    account = make_account(box)
    dying = RecordingPublisher(hang_from=2)  # 4 acknowledged; the process dies before noting the last 2
    await _crash(collector(account, dying, store), lambda: len(dying.events) == 4)
    assert box.count() == 4  # no QUIT: nothing deleted
    states = sorted(e.state for e in (await store.load(account.name)).values())
    assert states == ["collected", "collected", "pending", "pending"]

    pub = RecordingPublisher()
    report = await collector(account, pub, store).cycle()
    assert report is not None and report.collected == 2 and report.deleted == 4 and box.count() == 0
    assert pub.mail_ids == dying.mail_ids[2:]  # fetched once more, under the same mail ids: recognisable


class DyingStore(MemoryUidlStore):
    """Dies (never returns) right after the n-th 'collected' entry is durable."""

    def __init__(self, n: int) -> None:
        super().__init__()
        self.n, self.committed = n, 0

    async def put(self, account: str, uidl: str, entry: UidlEntry) -> None:
        await super().put(account, uidl, entry)
        if entry.state == "collected":
            self.committed += 1
            if self.committed >= self.n:
                await asyncio.Event().wait()


async def test_crash_between_publish_and_delete_refetches_nothing(dovecot: Dovecot,
                                                                  make_account: MakeAccount) -> None:
    box = dovecot.mailbox(corpus_messages(5))
    account = make_account(box)
    store = DyingStore(5)
    first = RecordingPublisher()
    await _crash(collector(account, first, store), lambda: store.committed == 5)
    assert len(first.events) == 5 and box.count() == 5  # no QUIT: the server deleted nothing

    store.n = 10**9  # the restarted process lives
    again = RecordingPublisher()
    report = await collector(account, again, store).cycle()
    assert report is not None
    assert again.events == [] and report.deleted == 5 and report.skipped_known == 5
    assert box.count() == 0
    third = await collector(account, again, store).cycle()
    assert third is not None and third.listed == 0 and third.forgotten == 5  # ledger pruned
    assert await store.load(account.name) == {}


async def test_wrong_password_is_a_clear_account_error_retried_at_the_interval(
        dovecot: Dovecot, make_account: MakeAccount) -> None:
    box = dovecot.mailbox(corpus_messages(2))
    account = make_account(box, password="not-the-password", interval_s=0.2)
    c = collector(account, RecordingPublisher(), backoff_max_s=0.4)
    statuses: list[int] = []
    stop = asyncio.Event()

    def seen(st: Any) -> None:
        statuses.append(st.consecutive_failures)
        if st.consecutive_failures >= 3:
            stop.set()

    await asyncio.wait_for(c.run(stop, on_status=seen), 20)

    err = c.status.last_error or ""
    assert f"login as '{box.user}'" in err and "refused" in err and "-ERR" in err and "password" in err
    assert statuses[:3] == [1, 2, 3] and c.status.last_success_ms is None
    assert c.next_delay() == 0.4  # doubled from 0.2, capped by backoff_max_s
    assert c.status.state == "stopped" and box.count() == 2


async def test_oversize_mail_is_reported_and_the_others_still_come(dovecot: Dovecot,
                                                                  make_account: MakeAccount) -> None:
    small = list(corpus_messages(3))
    big = small[0] + (b"y" * 76 + b"\n") * 4000  # ~300 KB
    box = dovecot.mailbox([small[0], big, small[1], small[2]])
    pub = RecordingPublisher()
    c = collector(make_account(box, max_message_size=100_000), pub)

    report = await c.cycle()
    assert report is not None and report.collected == 3 and len(report.too_large) == 1
    assert box.count() == 1
    err = c.status.last_error or ""
    assert "over max_message_size (100000 bytes) left on the server" in err and "bytes)" in err
    assert c.status.last_success_ms is not None and c.status.consecutive_failures == 0
    again = await c.cycle()
    assert again is not None and again.collected == 0 and len(again.too_large) == 1 and box.count() == 1


async def test_serve_runs_plain_and_pop3s_accounts_with_status(dovecot: Dovecot,
                                                              make_account: MakeAccount) -> None:
    plain_box, tls_box = dovecot.mailbox(corpus_messages(3)), dovecot.mailbox(corpus_messages(4))
    settings = Pop3Settings(accounts=[make_account(plain_box, "starttls-required", interval_s=0.2),
                                      make_account(tls_box, "implicit", interval_s=0.2)])
    pub = RecordingPublisher()
    stop = asyncio.Event()
    seen: dict[str, int] = {}

    def on_status(st: Any) -> None:
        seen[st.account] = st.collected_total
        if seen.get(plain_box.user) == 3 and seen.get(tls_box.user) == 4:
            stop.set()

    await asyncio.wait_for(asyncio.gather(
        serve(settings, pub, MemoryUidlStore(), stop, node="gw-test", service="pop3-proxy", on_status=on_status),
        serve(settings, pub, MemoryUidlStore(), stop, node="gw-test", service="pop3s-proxy", on_status=on_status),
    ), 20)
    assert len(pub.events) == 7 and plain_box.count() == 0 and tls_box.count() == 0
    assert seen == {plain_box.user: 3, tls_box.user: 4}


async def test_dot_lines_and_long_lines_arrive_byte_for_byte(dovecot: Dovecot, make_account: MakeAccount) -> None:
    odd = (b"Return-Path: <>\nSubject: dots\n\n.\n..\n.leading dot\n"
           + b"a" * 5000 + b"\n"  # stdlib poplib refuses lines over 2048 bytes
           + b"last line without newline")
    box = dovecot.mailbox([odd])
    pub = RecordingPublisher()
    report = await collector(make_account(box, "implicit"), pub).cycle()
    assert report is not None and report.collected == 1
    raw = unpack_message(pub.events[0]["message"])
    assert raw.startswith(crlf(odd)) and raw[len(crlf(odd)):] in (b"", b"\r\n")
    assert pub.events[0]["mail_from"] == ""
