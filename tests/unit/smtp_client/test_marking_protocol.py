"""The 250 to a mail's body is journalled inside the socket read that parses it (connection.MarkingProtocol),
against a real aiosmtpd next hop on loopback, on asyncio's loop and on uvloop (what the service runs on)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import aiosmtplib
import pytest
import uvloop
from aiosmtpd.smtp import SMTP, Envelope, Session

from egress.smtp_client.connection import MarkingProtocol
from egress.smtp_client.delivery import Outcome, deliver
from egress.smtp_client.pool import Pool
from egress.smtp_client.routing import Host, Route
from tests.support.ports import free_port
from tests.support.sink import Sink

MAIL = b"From: a@example.org\r\nTo: b@example.net\r\nSubject: hook\r\n\r\nbody\r\n"


class Recording:
    """A Recorder that notes where each call ran: a protocol callback runs outside any task."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, list[str], str, bool]] = []

    def journal(self, accepted: list[str], reply: str) -> None:
        self.calls.append(("journal", accepted, reply, asyncio.current_task() is None))

    async def confirm(self, outcome: Outcome) -> None:
        self.calls.append(("confirm", outcome.accepted, "", asyncio.current_task() is None))


class Picky:
    """Refuses RCPT for nobody@, and DATA with 451 while ``busy``."""

    busy = False

    async def handle_RCPT(self, server: SMTP, session: Session, envelope: Envelope, address: str,
                          options: list[str]) -> str:
        if address.startswith("nobody@"):
            return "550 5.1.1 no such user"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        return "451 4.3.0 try later" if self.busy else "250 2.0.0 queued as X1"


def run(loop_factory: Callable[[], asyncio.AbstractEventLoop], coro_fn: Callable[[], object]) -> object:
    loop = loop_factory()
    try:
        return loop.run_until_complete(coro_fn())  # type: ignore[arg-type]
    finally:
        loop.close()


LOOPS = [pytest.param(asyncio.new_event_loop, id="asyncio"), pytest.param(uvloop.new_event_loop, id="uvloop")]


@pytest.fixture
def picky_sink():
    sink = Sink(free_port())
    handler = Picky()
    sink.controller.handler = handler
    with sink:
        yield sink, handler


def route_to(sink: Sink) -> Route:
    host, port = sink.address.rsplit(":", 1)
    return Route("example.net", (Host(host, host, int(port)),), "none", "example.net")


@pytest.mark.parametrize("loop_factory", LOOPS)
def test_aiosmtplib_builds_the_marking_protocol(loop_factory, picky_sink) -> None:
    sink, _ = picky_sink
    host, port = sink.address.rsplit(":", 1)

    async def connect() -> type:
        client = aiosmtplib.SMTP(hostname=host, port=int(port), start_tls=False)
        await client.connect()
        kind = type(client.protocol)
        await client.quit()
        return kind

    assert run(loop_factory, connect) is MarkingProtocol


@pytest.mark.parametrize("loop_factory", LOOPS)
def test_250_journalled_in_the_read_callback_before_the_task_runs(loop_factory, picky_sink) -> None:
    sink, _ = picky_sink
    rec = Recording()

    async def send() -> Outcome:
        pool = Pool("client.test", 10.0, 2, 10, 30.0)
        try:
            return await deliver(route_to(sink), pool, "a@example.org", ["b@example.net", "nobody@example.net"],
                                 MAIL, rec)
        finally:
            await pool.close()

    outcome = run(loop_factory, send)
    assert outcome.accepted == ["b@example.net"] and list(outcome.failed) == ["nobody@example.net"]
    # the journal first, from the protocol callback (no task), with the refused recipient left out;
    # then the task's confirm
    assert rec.calls == [("journal", ["b@example.net"], "250 2.0.0 queued as X1", True),
                         ("confirm", ["b@example.net"], "", False)]


@pytest.mark.parametrize("loop_factory", LOOPS)
def test_no_journal_for_a_refused_body_nor_a_stale_hook_on_the_next_mail(loop_factory, picky_sink) -> None:
    sink, picky = picky_sink
    refused, accepted = Recording(), Recording()

    async def two_mails() -> tuple[Outcome, Outcome]:
        pool = Pool("client.test", 10.0, 1, 10, 30.0)  # one connection, reused for the second mail
        try:
            picky.busy = True
            first = await deliver(route_to(sink), pool, "a@example.org", ["b@example.net"], MAIL, refused)
            picky.busy = False
            second = await deliver(route_to(sink), pool, "a@example.org", ["b@example.net"], MAIL, accepted)
            return first, second
        finally:
            await pool.close()

    first, second = run(loop_factory, two_mails)
    assert first.temporary == ["b@example.net"] and not first.accepted
    assert refused.calls == []  # a 451 to the body is no delivery: nothing journalled, nothing confirmed
    assert second.accepted == ["b@example.net"]
    assert [c[0] for c in accepted.calls] == ["journal", "confirm"] and accepted.calls[0][3]
