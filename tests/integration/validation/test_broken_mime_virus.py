"""No virus through broken MIME (issue 18, section 4), against the real clamd with the
test signature database: each kind of malformed mail of tests/support/broken_mime.py
with EICAR zipped inside is infected, its clean twin clean; through the running gateway,
the first go to mail.virus and the twins are delivered."""

from __future__ import annotations

import pytest

from streams.validation.clamd import ClamdClient
from streams.validation.virus import scan_message
from tests.integration.validation.test_validation_pipeline import send, wait_routed
from tests.support.broken_mime import KINDS, payload_zip
from tests.support.clamd import EICAR_NAME
from tests.support.gateway import Gateway
from tests.support.sink import Sink

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("kind", sorted(KINDS))
async def test_each_kind_is_infected_and_its_twin_clean(kind: str, client: ClamdClient) -> None:
    infected = await scan_message(KINDS[kind](payload_zip(infected=True)), client)
    assert infected.kind == "infected" and infected.names == (EICAR_NAME,), infected
    clean = await scan_message(KINDS[kind](payload_zip(infected=False)), client)
    assert clean.kind == "clean", clean


def test_the_gateway_routes_each_kind_to_virus_and_delivers_the_twins(scanning_gateway: Gateway,
                                                                       sink: Sink) -> None:
    gw = scanning_gateway
    viruses = {kind: send(gw, build(payload_zip(infected=True))) for kind, build in KINDS.items()}
    twins = {kind: send(gw, build(payload_zip(infected=False))) for kind, build in KINDS.items()}
    for kind, mail_id in viruses.items():
        routed = wait_routed(gw, "virus", mail_id)
        assert "Eicar" in routed["reasons"][0], (kind, routed["reasons"])
    for mail_id in twins.values():
        assert wait_routed(gw, "out", mail_id)["reasons"][0] == "virus scan: clean"
    delivered = sink.wait_for(len(twins), timeout=60)
    subjects = sorted(m.data.split(b"Subject: ", 1)[1].split(b"\r\n", 1)[0] for m in delivered)
    assert subjects == sorted(build(payload_zip(False)).split(b"Subject: ", 1)[1].split(b"\r\n", 1)[0] for build in KINDS.values())
    assert len(sink.mails) == len(twins)  # not one of the infected left the gateway
