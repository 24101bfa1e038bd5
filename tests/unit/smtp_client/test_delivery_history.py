"""`mailgate delivery show`'s reading of events: where a recipient stands after its attempts."""

from __future__ import annotations

from control.cli.delivery_history import Attempt, MailHistory, _attempts


def event(**fields: object) -> dict[str, object]:
    return {"event_time": 1, "attempt": 1, "next_hop": "mx[127.0.0.1]:25", "reply_code": 451,
            "reply_text": "4.3.0 busy", "tls_version": None, "tls_cipher": None, **fields}


def test_a_final_result_outranks_later_noise_and_deferrals_say_when() -> None:
    deferred = _attempts("DeliveryFailed", event(rcpt_to=["a@x.test", "b@x.test"], permanent=False,
                                                 next_attempt_time=60_000))
    delivered = _attempts("MailDelivered", event(rcpt_to=["a@x.test"], attempt=2, reply_code=250,
                                                 reply_text="ok", tls_version="TLSv1.3", tls_cipher="AES"))
    history = MailHistory("m1")
    for found in (deferred, delivered):
        for rcpt, attempt in found.items():
            history.recipients.setdefault(rcpt, []).append(attempt)
    # A stale deferral of an attempt that ran late must not hide the delivery.
    history.recipients["a@x.test"].append(deferred["a@x.test"])
    assert history.status("a@x.test") == "delivered"
    assert history.status("b@x.test") == "deferred" and deferred["b@x.test"].next_attempt_time == 60_000
    assert history.recipients["a@x.test"][1].tls == "TLSv1.3 AES"
    assert deferred["b@x.test"].reply == "451 4.3.0 busy"
    assert history.status("c@x.test") == "no delivery event"


def test_bounced_and_null_sender_failures_are_told_apart() -> None:
    bounced = Attempt(1, "DeliveryFailed", 1, "550 5.1.1 no such user", "mx", None, permanent=True,
                      bounce_mail_id="B1")
    no_bounce = Attempt(1, "DeliveryFailed", 1, "550 5.1.1 no such user", "mx", None, permanent=True)
    lost_connection = _attempts("DeliveryFailed", event(rcpt_to=["a@x.test"], reply_code=None,
                                                        reply_text="connection lost", permanent=False))
    assert bounced.status == "bounced" and no_bounce.status == "failed, no bounce (null sender)"
    assert lost_connection["a@x.test"].reply == "connection lost"
