"""message-validation: unsure mail is delivered marked (X-Spam-Flag, X-Spam-Status, a subject tag)."""

from __future__ import annotations

import email

from schemas import pack_message, unpack_message
from streams.validation.marking import marked, status_value
from streams.validation.policy_settings import DecisionSettings
from streams.validation.routing import Findings, decide

RAW = (b"From: a@outside.test\r\nTo: bob@example.com\r\nSubject: New catalogue\r\nX-Spam-Flag: NO\r\n"
       b"X-Spam-Status: No, score=-5\r\n\tforged=yes\r\n\r\nbody line\r\n")


def test_marking_puts_our_headers_on_top_and_drops_the_senders_own() -> None:
    out = marked(RAW, status_value("unsure", 0.5321, ["rules: html_only +0.89", 'a "quoted" reason']))
    msg = email.message_from_bytes(out)
    assert msg.get_all("X-Spam-Flag") == ["YES"]
    (status,) = msg.get_all("X-Spam-Status")
    assert status.startswith("Unsure, score=0.532 reasons=") and "forged" not in status and '"quoted"' not in status
    assert msg["Subject"] == "New catalogue" and out.endswith(b"\r\n\r\nbody line\r\n")
    assert all(len(line) <= 998 for line in out.split(b"\r\n")) and b"\n" not in out.replace(b"\r\n", b"")


def test_a_subject_tag_is_put_once_and_a_mail_without_subject_gets_one() -> None:
    once = marked(RAW, "Unsure, score=0.5", "[SPAM?]")
    assert email.message_from_bytes(once)["Subject"] == "[SPAM?] New catalogue"
    assert email.message_from_bytes(marked(once, "Unsure, score=0.5", "[SPAM?]"))["Subject"] == "[SPAM?] New catalogue"
    bare = marked(b"From: a@b.test\n\nhi\n", "Unsure, score=0.5", "[SPAM?]")
    assert email.message_from_bytes(bare)["Subject"] == "[SPAM?]" and bare.endswith(b"\n\nhi\n")


def mail() -> dict:
    return {"mail_id": "m1", "mail_from": "a@outside.test", "rcpt_to": ["bob@example.com", "carol@example.org"],
            "message": pack_message(RAW), "event_time": 0, "size": len(RAW)}


def test_routing_delivers_the_marked_copy_per_domain_and_the_plain_one_where_marking_is_off() -> None:
    decision = DecisionSettings(domains={"example.org": {"mark_unsure": False}})
    tagged = pack_message(marked(RAW, "Unsure, score=0.5"))
    f = Findings(spam_verdict="unsure", spam_score=0.5, decision=decision, marked_messages={"": tagged})
    routes = {r.record["rcpt_to"][0]: r for r in decide(mail(), "n1", f, now_ms=1)}
    assert routes["bob@example.com"].queue == routes["carol@example.org"].queue == "out"
    assert b"X-Spam-Flag: YES" in unpack_message(routes["bob@example.com"].record["message"])
    assert b"X-Spam-Flag: NO" in unpack_message(routes["carol@example.org"].record["message"])
