"""The quarantine read model (control.server.quarantine_view, through control.server.queues' Python API) on
a whole gateway: mail that message-validation quarantined is listed with its recipient,
sender, subject, reason, time and size; a user sees only its own; release delivers the mail
to the next hop through smtp-client; delete takes it out of the listing; a report goes to
spam.reports."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import pytest

from control.server.auth import Principal
from control.server.errors import NotFound
from control.server.queues import Held, QueueBrowser
from tests.integration.validation.test_clamd import attach, message
from tests.support.gateway import Gateway
from tests.support.kafka import Broker
from tests.support.sink import Sink
from tests.support.smtp import send_mail
from tests.support.topics import read_topic

pytestmark = pytest.mark.integration
ADMIN, BOB, CAROL = Principal("admin", "alice"), Principal("user", "bob@example.com"), \
    Principal("user", "carol@example.org")
T = TypeVar("T")


def renamed_exe(subject: str, to: str) -> bytes:
    """A program named as a PDF: the attachment policy quarantines it (detected by content)."""
    msg = attach(message("see attached\n", subject), b"MZ\x90\x00" + b"\x00" * 200, "invoice.pdf", "application/pdf")
    msg.replace_header("To", to)
    return msg.as_bytes()


def send(gw: Gateway, raw: bytes, rcpt: str) -> str:
    text = asyncio.run(send_mail(gw.smtp_port, raw, sender="alice@example.net", recipients=[rcpt]))
    return text.rsplit(" ", 1)[1]


def wait_until(what: str, probe: Callable[[], T | None], timeout: float = 60.0) -> T:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if found := probe():
            return found
        time.sleep(0.3)
    raise AssertionError(f"{what}: not within {timeout:.0f} s")


@pytest.fixture(scope="module")
def quarantined(broker: Broker, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Gateway, Sink, dict]]:
    """A gateway, its sink, and two quarantined mails: one for bob, one for carol."""
    from tests.support.ports import free_port

    with Sink(free_port()) as sink:
        with Gateway(broker.bootstrap_servers, tmp_path_factory.mktemp("quarantine"), sink.address) as gw:
            ids = {"bob": send(gw, renamed_exe("for bob", "bob@example.com"), "bob@example.com"),
                   "carol": send(gw, renamed_exe("for carol", "carol@example.org"), "carol@example.org")}
            yield gw, sink, ids


@pytest.fixture
def queues(quarantined: tuple[Gateway, Sink, dict]) -> Iterator[QueueBrowser]:
    browser = QueueBrowser(quarantined[0].settings())
    yield browser
    browser.close()


def listed(queues: QueueBrowser, who: Principal, queue: str = "") -> dict[str, Held]:
    return {h.mail_id: h for h in queues.list_mails(who, queue)}


def test_listing_shows_the_mail_and_a_user_only_its_own(quarantined: tuple[Gateway, Sink, dict],
                                                        queues: QueueBrowser) -> None:
    _, _, ids = quarantined
    everything = wait_until("both quarantined", lambda: (m := listed(queues, ADMIN, "quarantine")).keys()
                            >= set(ids.values()) and m)
    bobs = everything[ids["bob"]]
    assert (bobs.queue, bobs.for_whom(ADMIN), bobs.record["mail_from"], bobs.subject()) == \
        ("quarantine", ["bob@example.com"], "alice@example.net", "for bob")
    assert bobs.record["reasons"][0].startswith("attachment policy: ") and bobs.record["size"] > 200
    assert bobs.record["received_time"] <= time.time() * 1000 and "message" not in bobs.record  # body stays on Kafka
    assert set(listed(queues, BOB)) == {ids["bob"]} and set(listed(queues, CAROL)) == {ids["carol"]}
    assert listed(queues, BOB, "spam") == {}
    with pytest.raises(NotFound, match="bob@example.com"):
        queues.find(BOB, ids["carol"])
    assert b"invoice.pdf" in queues.find(BOB, ids["bob"]).raw()  # show: the whole mail, read at its offset


def test_release_delivers_and_delete_removes(quarantined: tuple[Gateway, Sink, dict], queues: QueueBrowser) -> None:
    gw, sink, ids = quarantined
    wait_until("both quarantined", lambda: listed(queues, ADMIN).keys() >= set(ids.values()))
    before = len(sink.mails)
    held, recipients = queues.release(BOB, ids["bob"], reason="expected invoice")
    assert recipients == ["bob@example.com"] and held.mail_id == ids["bob"]
    assert ids["bob"] not in listed(queues, ADMIN)  # the view has its own event at once
    (delivered,) = sink.wait_for(before + 1, timeout=60)[before:]
    assert delivered.rcpt_to == ["bob@example.com"] and b"invoice.pdf" in delivered.data
    out = [r for r in read_topic(gw.settings(), f"{gw.prefix}mail.out") if r.value["mail_id"] == ids["bob"]]
    assert [(r.key, r.value["destination"]) for r in out] == [(b"example.com", "example.com")]

    with pytest.raises(NotFound):
        queues.delete(BOB, ids["carol"])  # not bob's to delete
    queues.report(CAROL, ids["carol"], "", "SPAM")
    queues.delete(CAROL, ids["carol"], reason="junk")
    assert listed(queues, CAROL) == {} and ids["carol"] not in listed(queues, ADMIN)
    reports = [r.value for r in read_topic(gw.settings(), f"{gw.prefix}spam.reports")]
    assert [(r["mail_id"], r["label"], r["reporter"]) for r in reports] == [(ids["carol"], "spam", CAROL.name)]
    fresh = QueueBrowser(gw.settings())  # a new view, built from the topics alone, agrees
    try:
        assert not {ids["bob"], ids["carol"]} & listed(fresh, ADMIN).keys()
    finally:
        fresh.close()
    assert len(sink.mails) == before + 1  # the deleted mail went nowhere
