"""schemas.fast_encoder writes the same bytes as the codec, and refuses what the codec refuses."""

from __future__ import annotations

from typing import Any

import pytest

from schemas import default_codec, new_mail_id, pack_message
from schemas.fast_encoder import FastEncoder


def received(**changes: Any) -> dict[str, Any]:
    codec = default_codec()
    record: dict[str, Any] = {"mail_id": new_mail_id(), "event_time": 1_790_000_000_000, "node": "node-ä",
                              "origin": "SMTP", "mail_from": "sénder@example.net",
                              "rcpt_to": ["a@example.com", "b@example.org"], "size": 3,
                              "message": pack_message(b"hi\r\n")}
    for field in codec.schema("MailReceived").fields:
        record.setdefault(field.name, field.default if field.has_default else None)
    record.update(changes)
    return record


@pytest.mark.parametrize("changes", [
    {},
    {"origin": "POP3", "account": "shop-inbox", "client_address": "192.0.2.7", "tls": "TLSv1.3"},
    {"rcpt_to": [], "mail_from": "", "size": 0, "event_time": -1},
    {"size": 2**40, "client_helo": "x" * 300},
])
def test_same_bytes_as_the_codec(changes: dict[str, Any]) -> None:
    codec = default_codec()
    record = received(**changes)
    fast = FastEncoder(codec.schema("MailReceived")).encode(record)
    assert fast == codec.encode("MailReceived", record)
    assert codec.decode(fast, expect="MailReceived").record == record


def test_a_record_that_does_not_fit_raises() -> None:
    encoder = FastEncoder(default_codec().schema("MailReceived"))
    with pytest.raises((TypeError, AttributeError, ValueError)):
        encoder.encode(received(size="three"))
