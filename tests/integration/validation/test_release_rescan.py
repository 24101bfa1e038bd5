"""A mail held because clamd was down is never delivered unscanned by a release (control.server.queues):
on the whole gateway (`mailgate up`, the real broker, a real clamd started late), the release sends
it back through message-validation under its mail id. Released while clamd is still down, it is
held again; released once clamd is up, the EICAR mail lands in mail.virus and the clean one is
delivered, each routed once per release."""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path

import pytest

from control.server.auth import Principal
from control.server.queues import QueueBrowser
from tests.integration.validation.test_clamd import eicar_forwarded, message
from tests.integration.validation.test_quarantine_view import listed, wait_until
from tests.support.clamd import Clamd
from tests.support.gateway import Gateway
from tests.support.kafka import Broker
from tests.support.sink import Sink
from tests.support.smtp import send_mail
from tests.support.topics import read_topic

pytestmark = pytest.mark.integration
ADMIN = Principal("admin", "alice")


def send(gw: Gateway, raw: bytes) -> str:
    text = asyncio.run(send_mail(gw.smtp_port, raw, sender="alice@example.net", recipients=["bob@example.com"]))
    return text.rsplit(" ", 1)[1]


def routed(gw: Gateway, queue: str) -> list[dict]:
    """The MailRouted records of a queue (not the QueueActions after them)."""
    return [r.value for r in read_topic(gw.settings(), f"{gw.prefix}mail.{queue}") if r.event_type == "MailRouted"]


def test_release_of_a_mail_held_unscanned_scans_it_first(broker: Broker, sink: Sink, tmp_path: Path) -> None:
    cd = Clamd()  # not started yet: clamd is down when the mails arrive
    gw = Gateway(broker.bootstrap_servers, tmp_path / "node", sink.address,
                 MAILGATE_VALIDATION__VIRUS_SCAN="true", MAILGATE_VALIDATION__CLAMD__ADDRESS=cd.unix_address,
                 MAILGATE_VALIDATION__CLAMD__ATTEMPTS="2", MAILGATE_VALIDATION__CLAMD__RETRY_INITIAL_S="0.2")
    try:
        with gw:
            queues = QueueBrowser(gw.settings())
            try:
                virus = send(gw, eicar_forwarded())
                clean = send(gw, message("nothing to see\n", "held while clamd was down").as_bytes())
                held = wait_until("both held", lambda: (m := listed(queues, ADMIN, "quarantine")).keys()
                                  >= {virus, clean} and m)
                assert all(held[m].record["reasons"][0].startswith("held: virus scan failed: ") for m in (virus, clean))

                # Released while clamd is still down: scanned again, so held again (a new routing, same mail id).
                queues.release(ADMIN, clean, reason="try again")
                wait_until("held again", lambda: sum(r["mail_id"] == clean for r in routed(gw, "quarantine")) == 2)
                again = wait_until("listed again", lambda: listed(queues, ADMIN, "quarantine").get(clean))
                assert again.record["reasons"][0].startswith("held: virus scan failed: ")

                cd.start()
                queues.release(ADMIN, virus)
                queues.release(ADMIN, clean)
                infected = wait_until("EICAR in mail.virus", lambda: next(
                    (r for r in routed(gw, "virus") if r["mail_id"] == virus), None))
                assert infected["reasons"][0].startswith("virus: ") and "Eicar" in infected["reasons"][0]
                (delivered,) = sink.wait_for(1, timeout=60)
                assert b"held while clamd was down" in delivered.data and delivered.rcpt_to == ["bob@example.com"]
                assert set(listed(queues, ADMIN, "virus")) == {virus}
                assert not {virus, clean} & listed(queues, ADMIN, "quarantine").keys()
            finally:
                queues.close()
            out = [r for r in routed(gw, "out") if r["mail_id"] in (virus, clean)]
            assert [r["mail_id"] for r in out] == [clean], "a mail held unscanned was released straight to mail.out"
            assert out[0]["reasons"][0] == "virus scan: clean"
            assert any(line.startswith("released from hold (") for line in out[0]["reasons"])
            # Once per release: held at arrival and on the first release; routed nowhere twice.
            assert Counter(r["mail_id"] for r in routed(gw, "quarantine")) == Counter({virus: 1, clean: 2})
            assert [r["mail_id"] for r in routed(gw, "virus")] == [virus]
            assert len(sink.mails) == 1
    finally:
        cd.stop()
