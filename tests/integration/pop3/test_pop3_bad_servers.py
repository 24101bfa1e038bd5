"""pop3-proxy against servers that misbehave in ways Dovecot never does: a scripted
POP3 peer on loopback that follows RFC 1939 until told to send garbage, drop the
connection in the middle of a RETR, go silent, lie about sizes, or offer no STLS.
Each case must end in a clear per-account error, never a hang or a silent loss."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from ingress.pop3.collector import AccountCollector
from ingress.pop3.settings import Pop3Account
from ingress.pop3.uidls import MemoryUidlStore
from schemas import unpack_message
from tests.integration.pop3.recording import RecordingPublisher

pytestmark = pytest.mark.integration

MAILS = [b"Return-Path: <a@outside.test>\r\nSubject: one\r\n\r\nfirst\r\n",
         b"Subject: two\r\n\r\n.starts with a dot\r\nsecond\r\n",
         b"Subject: three\r\n\r\nthird\r\n"]


class Scripted:
    """A POP3 server on loopback. ``replies`` maps a command ("UIDL", "RETR 2") to
    the bytes to send instead of the proper answer, optionally with an action
    afterwards: ("...", "drop") closes the connection, ("...", "hang") goes silent."""

    def __init__(self, mails: list[bytes], capa: list[str] | None = None,
                 replies: dict[str, bytes | tuple[bytes, str]] | None = None) -> None:
        self.mails = mails
        self.capa = capa if capa is not None else ["UIDL", "USER", "TOP"]
        self.replies = replies or {}
        self.deleted: set[int] = set()  # applied on QUIT only, as RFC 1939 says
        self.commands: list[str] = []
        self._handlers: set[asyncio.Task[Any]] = set()
        self._closing = asyncio.Event()

    async def __aenter__(self) -> Scripted:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.server.close()
        self._closing.set()
        await asyncio.gather(*self._handlers, return_exceptions=True)
        await self.server.wait_closed()

    def account(self, **overrides: Any) -> Pop3Account:
        fields: dict[str, Any] = dict(name="scripted", host="127.0.0.1", port=self.port, tls="none",
                                      user="u", password="p", recipient="u@example.com", timeout_s=5)
        fields.update(overrides)
        return Pop3Account(**fields)

    def _proper(self, cmd: str, marked: set[int]) -> bytes:
        verb, _, arg = cmd.partition(" ")
        live = [(n, m) for n, m in enumerate(self.mails, 1) if n not in self.deleted]
        if verb == "CAPA":
            return b"+OK\r\n" + b"".join(c.encode() + b"\r\n" for c in self.capa) + b".\r\n"
        if verb in ("USER", "PASS", "NOOP"):
            return b"+OK\r\n"
        if verb == "UIDL":
            return b"+OK\r\n" + b"".join(b"%d uid-%d\r\n" % (n, n) for n, _ in live) + b".\r\n"
        if verb == "LIST":
            return b"+OK\r\n" + b"".join(b"%d %d\r\n" % (n, len(m)) for n, m in live) + b".\r\n"
        if verb == "RETR":
            m = self.mails[int(arg) - 1]
            stuffed = b"\r\n".join(b"." + ln if ln.startswith(b".") else ln for ln in m.split(b"\r\n"))
            return b"+OK\r\n" + stuffed + b".\r\n"
        if verb == "DELE":
            marked.add(int(arg))
            return b"+OK\r\n"
        if verb == "QUIT":
            self.deleted |= marked
            return b"+OK bye\r\n"
        return b"-ERR unknown command\r\n"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._handlers.add(asyncio.current_task())  # type: ignore[arg-type]
        marked: set[int] = set()
        try:
            writer.write(b"+OK scripted POP3\r\n")
            while line := await reader.readline():
                cmd = line.decode().strip()
                self.commands.append(cmd)
                reply = self.replies.get(cmd, self.replies.get(cmd.split(" ")[0]))
                data, action = (reply if isinstance(reply, tuple) else (reply, "")) if reply is not None \
                    else (self._proper(cmd, marked), "")
                writer.write(data)
                await writer.drain()
                if action == "drop" or cmd == "QUIT":
                    break
                if action == "hang":
                    await self._closing.wait()
                    break
        finally:
            writer.close()


PIPELINING = pytest.mark.parametrize("capa", [["UIDL", "USER"], ["UIDL", "USER", "PIPELINING"]],
                                     ids=["one-by-one", "pipelined"])


def collector(account: Pop3Account, pub: RecordingPublisher, store: MemoryUidlStore | None = None) -> AccountCollector:
    return AccountCollector(account, pub, store or MemoryUidlStore(), "gw-test")


@PIPELINING
async def test_the_scripted_server_itself_serves_a_clean_cycle(capa: list[str]) -> None:
    async with Scripted(MAILS, capa=capa) as srv:
        pub = RecordingPublisher()
        report = await collector(srv.account(), pub).cycle()
    assert report is not None and report.collected == 3 and srv.deleted == {1, 2, 3}
    assert [unpack_message(e["message"]) for e in pub.events] == MAILS  # dot-unstuffed
    assert pub.events[0]["mail_from"] == "a@outside.test" and pub.events[1]["mail_from"] == ""
    assert pub.events[0]["tls"] is None


@pytest.mark.parametrize(("replies", "error"), [
    ({"UIDL": b"+OK\r\n1 uid-1\r\nthis is not a uidl line\r\n.\r\n"}, "malformed UIDL line"),
    ({"UIDL": b"+OK\r\n1 uid-1\r\n2 uid-1\r\n.\r\n"}, "same id"),
    ({"LIST": b"+OK\r\n1 12\r\n2 abc\r\n.\r\n"}, "malformed LIST line"),
    ({"LIST": b"+OK\r\n1 12\r\n.\r\n"}, "UIDL and LIST disagree"),
    ({"LIST": b"HELLO there\r\n"}, "malformed reply to LIST"),
    ({"UIDL": (b"+OK\r\n1 uid-1\r\n", "drop")}, "server closed the connection during UIDL"),
])
async def test_malformed_replies_give_a_clear_error_and_nothing_is_lost(
        replies: dict[str, bytes | tuple[bytes, str]], error: str) -> None:
    async with Scripted(MAILS, replies=replies) as srv:
        c = collector(srv.account(), RecordingPublisher())
        assert await c.cycle() is None
    assert c.status.last_error is not None and error in c.status.last_error, c.status.last_error
    assert srv.deleted == set()


@PIPELINING
async def test_a_refused_retr_is_reported_and_the_others_still_come(capa: list[str]) -> None:
    async with Scripted(MAILS, capa=capa, replies={"RETR 2": b"-ERR message is locked\r\n"}) as srv:
        pub = RecordingPublisher()
        c = collector(srv.account(), pub)
        report = await c.cycle()
    assert report is not None and report.collected == 2 and srv.deleted == {1, 3}
    assert report.refused == ["uid-2 (RETR 2: -ERR message is locked)"]
    assert "1 mail(s) the server refused to send" in (c.status.last_error or "")


@PIPELINING
async def test_a_drop_mid_retr_loses_nothing_and_the_next_cycle_finishes(capa: list[str]) -> None:
    partial = b"+OK\r\nSubject: two\r\n\r\nhalf a mail"
    store = MemoryUidlStore()
    async with Scripted(MAILS, capa=capa, replies={"RETR 2": (partial, "drop")}) as srv:
        first = RecordingPublisher()
        c = collector(srv.account(), first, store)
        assert await c.cycle() is None
        err = c.status.last_error or ""
        # a FIN, or a RST when our pipelined commands were still unread on the server's side
        assert ("server closed the connection during RETR 2" in err and "bytes of the reply received" in err
                or "connection lost during RETR 2: [Errno 104]" in err), err
        assert len(first.events) == 1 and srv.deleted == set()  # mail 1 out, its DELE never committed

        srv.replies = {}
        second = RecordingPublisher()
        c.publisher = second
        report = await c.cycle()
    assert report is not None and report.collected == 2 and report.deleted == 3 and srv.deleted == {1, 2, 3}
    assert sorted(unpack_message(e["message"]) for e in first.events + second.events) == sorted(MAILS)
    assert c.status.consecutive_failures == 0


@PIPELINING
async def test_a_silent_server_times_out_with_a_clear_error(capa: list[str]) -> None:
    async with Scripted(MAILS, capa=capa, replies={"RETR 1": (b"+OK\r\nSubject: one\r\n", "hang")}) as srv:
        c = collector(srv.account(timeout_s=0.5), RecordingPublisher())
        assert await asyncio.wait_for(c.cycle(), 10) is None
    assert "no answer to RETR 1 within 0.5s" in (c.status.last_error or "")
    assert srv.deleted == set()


@PIPELINING
async def test_a_server_that_sends_more_than_it_listed_is_cut_at_the_cap(capa: list[str]) -> None:
    huge = b"+OK\r\n" + b"Subject: x\r\n\r\n" + b"z" * 200 + b"\r\n" + (b"y" * 998 + b"\r\n") * 3000
    async with Scripted(MAILS, capa=capa, replies={"RETR 2": (huge, "hang")}) as srv:
        pub = RecordingPublisher()
        c = collector(srv.account(max_message_size=100_000), pub)
        assert await asyncio.wait_for(c.cycle(), 10) is None
        err = c.status.last_error or ""
        assert "RETR 2 passed" in err and "over the size limit of 100000" in err

        report = await c.cycle()  # the next cycle leaves that mail alone and takes the others
        assert report is not None and report.collected == 1 and report.deleted == 2 and srv.deleted == {1, 3}
        assert report.too_large == ["uid-2 (sent more than 100000 bytes, LIST said 44)"]
        assert len(pub.events) == 2
    assert "over max_message_size" in (c.status.last_error or "")


async def test_stls_required_but_not_offered_is_refused_before_the_password_is_sent() -> None:
    async with Scripted(MAILS, capa=["UIDL", "USER"]) as srv:
        c = collector(srv.account(tls="starttls-required"), RecordingPublisher())
        assert await c.cycle() is None
    assert "offers no STLS, and the account requires it" in (c.status.last_error or "")
    assert not any(cmd.startswith(("USER", "PASS")) for cmd in srv.commands)


async def test_stls_opportunistic_goes_on_in_clear_when_not_offered() -> None:
    async with Scripted(MAILS, capa=["UIDL", "USER"]) as srv:
        pub = RecordingPublisher()
        report = await collector(srv.account(tls="starttls-opportunistic"), pub).cycle()
    assert report is not None and report.collected == 3
    assert all(e["tls"] is None for e in pub.events)
