"""message-validation in the running gateway (`mailgate up`), with the real clamd and
the real broker: each mail lands in exactly one queue, with its reason."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tests.integration.validation.test_clamd import attach, eicar_forwarded, message
from tests.support.gateway import Gateway
from tests.support.kafka import Broker
from tests.support.sink import Sink
from tests.support.smtp import send_mail

pytestmark = pytest.mark.integration


def send(gw: Gateway, raw: bytes) -> str:
    text = asyncio.run(send_mail(gw.smtp_port, raw, sender="alice@example.net", recipients=["bob@example.com"]))
    return text.rsplit(" ", 1)[1]


def wait_routed(gw: Gateway, queue: str, mail_id: str, timeout: float = 60.0) -> dict:
    return gw.wait_for_mail(f"mail.{queue}", mail_id, timeout)


def test_each_mail_lands_in_its_queue(scanning_gateway: Gateway, sink: Sink) -> None:
    gw = scanning_gateway
    virus = send(gw, eicar_forwarded())
    renamed_exe = send(gw, attach(message("see attached\n", "invoice"), b"MZ\x90\x00" + b"\x00" * 200,
                                  "invoice.pdf", "application/pdf").as_bytes())
    broken = send(gw, b"Content-Type: multipart/mixed; boundary=\"nowhere\"\r\nSubject: broken\r\n\r\n"
                      b"--elsewhere\r\n\xff\xfegarbage without an end")  # smtp-server refuses NUL bytes
    clean = send(gw, message("nothing to see\n", "clean after the broken one").as_bytes())

    infected = wait_routed(gw, "virus", virus)
    assert infected["reasons"][0].startswith("virus: ") and "Eicar" in infected["reasons"][0]
    exe = wait_routed(gw, "quarantine", renamed_exe)
    assert exe["reasons"][0].startswith("attachment policy: ") and "invoice.pdf" in exe["reasons"][0]
    held = wait_routed(gw, "quarantine", broken)
    assert held["reasons"][0].startswith(("unparseable: ", "not fully scannable: ")), held["reasons"]

    (delivered,) = sink.wait_for(1, timeout=60)
    assert b"clean after the broken one" in delivered.data
    out = wait_routed(gw, "out", clean)
    assert out["reasons"][0] == "virus scan: clean"
    assert len(sink.mails) == 1  # nothing but the clean mail left the gateway


def test_clamd_down_holds_the_mail_never_passes_it(broker: Broker, sink: Sink, tmp_path: Path) -> None:
    gw = Gateway(broker.bootstrap_servers, tmp_path / "node", sink.address,
                 MAILGATE_VALIDATION__VIRUS_SCAN="true",
                 MAILGATE_VALIDATION__CLAMD__ADDRESS=f"unix:{tmp_path}/no-clamd.ctl",
                 MAILGATE_VALIDATION__CLAMD__ATTEMPTS="2", MAILGATE_VALIDATION__CLAMD__RETRY_INITIAL_S="0.2")
    with gw:
        mail_id = send(gw, message("scan me\n", "while clamd is down").as_bytes())
        held = wait_routed(gw, "quarantine", mail_id)
        assert held["reasons"][0].startswith("held: virus scan failed: ClamdUnavailable")
        assert sink.mails == []
