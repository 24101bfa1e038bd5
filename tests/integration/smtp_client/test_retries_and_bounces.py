"""Temporary failures go round the retry topics until delivered; permanent ones bounce."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from email import message_from_bytes, policy

from tests.integration.smtp_client.conftest import Harness, message
from tests.integration.smtp_client.peers import Script, ScriptedSink


async def test_451_twice_then_250_is_delivered_after_two_retries(harness_factory: Callable[..., Harness]) -> None:
    script = Script(data_replies=deque(["451 4.3.0 busy, try later", "451 4.3.0 still busy"]))
    with ScriptedSink(script) as sink:
        h = harness_factory(transport={"dest.test": sink.address})
        await h.start()
        started = time.monotonic()
        mail_id = h.send(message("retry me"), ["rcpt@dest.test"])
        got = await sink.await_for(1, timeout=30)
        took = time.monotonic() - started
        assert [m.rcpt_to for m in got] == [["rcpt@dest.test"]]
        assert took >= 1.0, f"two retries with 0.5 s waits each took only {took:.2f}s"
        events = await h.wait_events(lambda ev: any(e.event_type == "MailDelivered" for e in ev))
    mine = [(e.event_type, e.value["attempt"], e.value.get("permanent")) for e in events
            if e.value["mail_id"] == mail_id]
    assert mine == [("DeliveryFailed", 1, False), ("DeliveryFailed", 2, False), ("MailDelivered", 3, None)]
    failed = [e.value for e in events if e.event_type == "DeliveryFailed"]
    assert all(f["reply_code"] == 451 and f["next_attempt_time"] > f["event_time"] for f in failed)
    retry1, retry2 = h.topic("mail.retry.1"), h.topic("mail.retry.2")
    assert [(r.value["attempt"], r.value["rcpt_to"]) for r in retry1] == [(1, ["rcpt@dest.test"])]
    assert [(r.value["attempt"], r.key) for r in retry2] == [(2, b"dest.test")]
    assert retry2[0].value["first_attempt_time"] == retry1[0].value["first_attempt_time"]
    assert "451 4.3.0 still busy" in (retry2[0].value["last_reply"] or "")
    await h.stop()
    assert sink.mails == got  # nothing more arrived after the 250


async def test_550_bounces_to_the_sender_with_the_original_headers(harness_factory: Callable[..., Harness]) -> None:
    refuse = {"gone@dest.test": "550 5.1.1 <gone@dest.test>: no such user"}
    with ScriptedSink(Script(refuse=refuse)) as dest, ScriptedSink() as origin:
        h = harness_factory(transport={"dest.test": dest.address, "origin.test": origin.address})
        await h.start()
        original = message("a mail that cannot arrive")
        mail_id = h.send(original, ["gone@dest.test", "here@dest.test"])
        assert [m.rcpt_to for m in await dest.await_for(1)] == [["here@dest.test"]]
        (bounce,) = await origin.await_for(1)
        assert bounce.mail_from == "<>" and bounce.rcpt_to == ["sender@origin.test"]  # MAIL FROM:<>
        dsn = message_from_bytes(bounce.data, policy=policy.default)
        assert dsn.get_content_type() == "multipart/report" and dsn.get_param("report-type") == "delivery-status"
        text, status, headers = dsn.iter_parts()
        assert "gone@dest.test" in text.get_content()
        assert status.get_content_type() == "message/delivery-status"
        blocks = status.get_payload()
        assert blocks[1]["Final-Recipient"] == "rfc822; gone@dest.test"
        assert blocks[1]["Action"] == "failed" and blocks[1]["Status"] == "5.1.1"
        assert "550 5.1.1" in blocks[1]["Diagnostic-Code"]
        assert headers.get_content_type() == "text/rfc822-headers"
        head = original.split(b"\r\n\r\n")[0].decode()
        assert head.replace("\r\n", "\n") in headers.get_content().replace("\r\n", "\n")
        assert b"Body of a mail" not in bounce.data  # headers only

        # The bounce itself, refused: no bounce of a bounce.
        bounce_of_bounce = h.send(message("a bounce"), ["gone@dest.test"], mail_from="")
        events = await h.wait_events(lambda ev: any(e.value["mail_id"] == bounce_of_bounce for e in ev))
        await h.stop()
    mine = [e.value for e in events if e.value["mail_id"] == mail_id]
    delivered = [e for e in mine if "permanent" not in e]
    failed = [e for e in mine if e.get("permanent")]
    assert [d["rcpt_to"] for d in delivered] == [["here@dest.test"]]
    assert [(f["rcpt_to"], f["reply_code"]) for f in failed] == [(["gone@dest.test"], 550)]
    bounce_id = failed[0]["bounce_mail_id"]
    assert bounce_id and any(e.value["mail_id"] == bounce_id and e.event_type == "MailDelivered" for e in events)
    (null,) = [e.value for e in events if e.value["mail_id"] == bounce_of_bounce]
    assert null["permanent"] and null["bounce_mail_id"] is None
    outs = h.topic("mail.out")
    assert sorted(r.value["mail_id"] for r in outs) == sorted([mail_id, bounce_id, bounce_of_bounce])
    (dsn_record,) = [r for r in outs if r.value["mail_id"] == bounce_id]
    assert dsn_record.key == b"origin.test" and dsn_record.value["mail_from"] == ""
    assert len(origin.mails) == 1


async def test_queue_lifetime_exceeded_bounces_with_4_4_7(harness_factory: Callable[..., Harness]) -> None:
    with ScriptedSink(Script(default="451 4.3.0 never today")) as dest, ScriptedSink() as origin:
        h = harness_factory(transport={"dest.test": dest.address, "origin.test": origin.address},
                            max_queue_lifetime_s=1.2)
        await h.start()
        mail_id = h.send(message("too late"), ["late@dest.test"])
        (bounce,) = await origin.await_for(1, timeout=20)
        events = await h.wait_events(lambda ev: any(e.value.get("permanent") for e in ev))
        await h.stop()
    assert b"Status: 4.4.7" in bounce.data and b"451 4.3.0 never today" in bounce.data
    mine = [(e.value["attempt"], e.value["permanent"]) for e in events if e.value["mail_id"] == mail_id]
    assert mine[-1][1] is True and all(not p for _, p in mine[:-1]) and len(mine) >= 2
    assert dest.mails == []
