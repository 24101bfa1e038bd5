"""maildepot-connector's import pieces without Kafka: what a source is, the envelope of an
imported message, and stable mail ids."""

from __future__ import annotations

from ingress.connector.importer import envelope
from schemas.ids import mail_id_time_ms, stable_mail_id


def test_envelope_from_headers() -> None:
    raw = (b"Return-Path: <list-bounce@lists.test>\r\nFrom: Alice <alice@example.net>\r\n"
           b"To: Bob <bob@example.com>, carol@example.com\r\nCc: dave@example.org\r\n"
           b"Date: Tue, 24 Nov 2026 10:00:00 +0000\r\nSubject: s\r\n\r\nbody\r\n")
    sender, rcpts, when = envelope(raw, 7)
    assert sender == "list-bounce@lists.test"
    assert rcpts == ["bob@example.com", "carol@example.com", "dave@example.org"]
    assert when == 1795514400000  # 2026-11-24T10:00:00Z
    delivered = b"Delivered-To: bob@example.com\r\nTo: list@lists.test\r\nDate: nonsense\r\n\r\nx"
    assert envelope(delivered, 7) == ("", ["bob@example.com"], 7)  # the mailbox it was delivered to


def test_stable_mail_ids_are_ulids_of_the_given_time() -> None:
    a = stable_mail_id(1795996800000, b"0123456789")
    assert a == stable_mail_id(1795996800000, b"0123456789") != stable_mail_id(1795996800000, b"0123456780")
    assert len(a) == 26 and mail_id_time_ms(a) == 1795996800000
