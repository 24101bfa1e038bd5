"""Pure pieces of smtp-server and smtp-client: relay verdicts, events, outcomes, ids."""

from __future__ import annotations

from aiosmtpd.smtp import Envelope, Session

from egress.smtp_client.delivery import NextHop, Outcome, Reply
from egress.smtp_client.events import outcome_events
from ingress.smtp.events import mail_received
from ingress.smtp.handler import relay_verdict
from schemas import default_codec, new_mail_id, unpack_message
from schemas.ids import mail_id_time_ms


def test_relay_only_for_our_domains() -> None:
    ours = {"example.com"}
    assert relay_verdict("Alice@EXAMPLE.com", ours) is None
    assert relay_verdict("alice@example.com.", ours) is None
    assert relay_verdict("bob@example.net", ours).startswith("550 5.7.1 ")
    assert relay_verdict("bob@sub.example.com", ours).startswith("550 5.7.1 ")
    assert relay_verdict("postmaster", ours).startswith("550 5.1.3 ")


def test_mail_received_event_carries_the_mail_compressed() -> None:
    session = Session(loop=None)  # type: ignore[arg-type]
    session.peer = ("192.0.2.9", 40000)
    session.host_name = "mx.outside.test"
    envelope = Envelope()
    envelope.mail_from = "s@outside.test"
    envelope.rcpt_tos = ["a@example.com"]
    envelope.original_content = b"Subject: hi\r\n\r\n" + b"body line\r\n" * 200
    event = mail_received(envelope, session, "gw1")
    assert event.client_address == "192.0.2.9" and event.client_helo == "mx.outside.test"
    assert event.size == len(envelope.original_content)
    assert event.message.compression == "ZSTD"
    assert unpack_message(event.message) == envelope.original_content
    default_codec().encode("MailReceived", event)  # it fits the schema


def test_outcome_events_per_recipient_group() -> None:
    hop = NextHop("127.0.0.1", 2526, "gw", 5)
    routed = {"mail_id": "01ID", "destination": "example.com"}
    outcome = Outcome(accepted=["a@example.com"], accepted_reply=Reply(250, "2.0.0 Ok"),
                      failed={"b@example.com": Reply(550, "5.1.1 no such user"),
                              "c@example.com": Reply(451, "4.3.0 try later"),
                              "d@example.com": Reply(451, "4.3.0 try later")})
    events = outcome_events(routed, outcome, hop, attempt=2, node="gw1", now_ms=9)
    kinds = [(e.EVENT_TYPE, e.rcpt_to, getattr(e, "permanent", None)) for e in events]
    assert kinds == [("MailDelivered", ["a@example.com"], None),
                     ("DeliveryFailed", ["b@example.com"], True),
                     ("DeliveryFailed", ["c@example.com", "d@example.com"], False)]
    for event in events:
        default_codec().encode(event.EVENT_TYPE, event)
    assert outcome.temporary == ["c@example.com", "d@example.com"] and outcome.permanent == ["b@example.com"]


def test_a_dropped_connection_is_temporary() -> None:
    assert not Reply(None, "ConnectionResetError").permanent
    assert Reply(554, "5.7.1 rejected").permanent


def test_mail_ids_sort_by_time_and_are_unique() -> None:
    a, b = new_mail_id(1_000_000), new_mail_id(2_000_000)
    assert len(a) == 26 and a < b
    assert mail_id_time_ms(a) == 1_000_000
    assert len({new_mail_id() for _ in range(10000)}) == 10000  # ~25 refills of the entropy pool


def test_mail_id_digits_are_crockford_base32_of_time_and_entropy() -> None:
    """The ids are encoded through base64.b32encode; these are the ULID digits, one 5-bit group each."""
    from schemas.ids import stable_mail_id

    alphabet = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
    for ms, entropy in [(0, b"\0" * 10), ((1 << 48) - 1, b"\xff" * 10), (1_796_170_000_123, bytes(range(7, 17)))]:
        value = ms << 80 | int.from_bytes(entropy, "big")
        expected = "".join(alphabet[(value >> (5 * i)) & 31] for i in reversed(range(26)))
        assert stable_mail_id(ms, entropy) == expected
    assert stable_mail_id(0, b"") == "0" * 26
