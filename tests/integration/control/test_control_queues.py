"""Quarantine queues through gRPC, on the real broker: a user sees and releases only its own
copy; an administrator sees every recipient; release delivers, delete removes, reports go to
spam.reports; configuration changes are events with who made them; the same through the CLI."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import grpc
import pytest

from control.proto.rpc import pb
from core.kafka import make_producer
from schemas import default_codec, new_mail_id, pack_message
from tests.integration.control.conftest import USER, USER_TOKEN, Node, mailgate, row, wait_until
from tests.support.topics import read_topic


def quarantine(node: Node, queue: str, rcpts: list[str], subject: str) -> str:
    """Puts a mail on a quarantine topic the way message-validation does."""
    mail_id = new_mail_id()
    now = int(time.time() * 1000)
    raw = f"From: x@outside.test\r\nTo: {', '.join(rcpts)}\r\nSubject: {subject}\r\n\r\nbody of {subject}\r\n".encode()
    record: dict[str, Any] = {
        "mail_id": mail_id, "event_time": now, "node": "node-a", "queue": queue, "reasons": [f"{queue}: test"],
        "destination": None, "mail_from": "x@outside.test", "rcpt_to": rcpts, "received_time": now,
        "client_address": "192.0.2.1", "size": len(raw), "message": pack_message(raw)}
    codec = default_codec()
    producer = make_producer(node.gateway.settings(), "test")
    producer.produce(f"{node.gateway.prefix}mail.{queue}", key=mail_id.encode(),
                     value=codec.encode("MailRouted", record), headers=codec.headers("MailRouted", mail_id))
    assert producer.flush(10) == 0
    return mail_id


def ids(reply: Any) -> dict[str, list[str]]:
    return {m.mail_id: list(m.rcpt_to) for m in reply.mails}


def test_user_sees_and_releases_only_its_own_copy(node: Node) -> None:
    shared = quarantine(node, "spam", [USER, "carol@example.org"], "shared spam")
    carols = quarantine(node, "virus", ["carol@example.org"], "carol's virus")
    mine = ids(node.user("ListQueue", pb.ListQueueRequest()))
    assert mine == {shared: [USER]}  # not carol's mail, and not carol's address on the shared one
    everything = ids(node.admin("ListQueue", pb.ListQueueRequest()))
    assert everything[shared] == [USER, "carol@example.org"] and everything[carols] == ["carol@example.org"]
    assert ids(node.admin("ListQueue", pb.ListQueueRequest(queue="virus"))) == {carols: ["carol@example.org"]}

    shown = node.user("ShowMail", pb.MailRequest(mail_id=shared))
    assert shown.mail.subject == "shared spam" and b"body of shared spam" in shown.message
    code = pytest.raises(grpc.RpcError, node.user, "ShowMail", pb.MailRequest(mail_id=carols)).value
    assert code.code() == grpc.StatusCode.NOT_FOUND and USER in code.details()

    before = len(node.sink.mails)
    released = node.user("ReleaseMail", pb.MailRequest(mail_id=shared, reason="not spam"))
    assert list(released.recipients) == [USER]
    delivered = node.sink.wait_for(before + 1, timeout=60)[before:]
    assert [m.rcpt_to for m in delivered] == [[USER]] and b"body of shared spam" in delivered[0].data
    assert ids(node.user("ListQueue", pb.ListQueueRequest())) == {}
    assert ids(node.admin("ListQueue", pb.ListQueueRequest(queue="spam")))[shared] == ["carol@example.org"]

    out = [r for r in read_topic(node.gateway.settings(), f"{node.gateway.prefix}mail.out")
           if r.value["mail_id"] == shared]
    assert [(r.key, r.value["rcpt_to"]) for r in out] == [(b"example.com", [USER])]
    assert "released from spam by user:bob@example.com" in out[0].value["reasons"]
    actions = [r.value for r in read_topic(node.gateway.settings(), f"{node.gateway.prefix}mail.spam")
               if r.event_type == "QueueAction"]
    assert [(a["action"], a["recipients"], a["actor"]) for a in actions] == [("RELEASE", [USER], f"user:{USER}")]


def test_delete_and_report(node: Node) -> None:
    mail_id = quarantine(node, "spam", [USER], "to delete")
    reported = node.user("ReportMail", pb.ReportRequest(mail_id=mail_id, verdict=pb.ReportRequest.VERDICT_HAM))
    assert reported.action == "REPORT_HAM"
    reports = [r for r in read_topic(node.gateway.settings(), f"{node.gateway.prefix}spam.reports")
               if r.value["mail_id"] == mail_id]
    assert [(r.event_type, r.value["label"], r.value["role"], r.value["reporter"], r.value["rcpt_to"])
            for r in reports] == [("SpamReport", "ham", "user", USER, [USER])]
    node.admin("DeleteMail", pb.MailRequest(mail_id=mail_id, queue="spam"))
    assert mail_id not in ids(node.admin("ListQueue", pb.ListQueueRequest()))
    gone = pytest.raises(grpc.RpcError, node.admin, "ReleaseMail", pb.MailRequest(mail_id=mail_id)).value
    assert gone.code() == grpc.StatusCode.NOT_FOUND


def test_config_change_is_an_event_and_reaches_a_restarted_service(node: Node) -> None:
    entry = node.admin("SetConfig", pb.SetConfigRequest(key="smtp_server.max_recipients", value="2",
                                                         reason="test"))
    assert entry.overridden and entry.changed_by == "admin:alice" and entry.value == "2"
    assert entry.env == "MAILGATE_SMTP_SERVER__MAX_RECIPIENTS"
    events = [r.value for r in read_topic(node.gateway.settings(), f"{node.gateway.prefix}config")]
    assert [(e["key"], e["value"], e["actor"]) for e in events][-1:] == \
        [("smtp_server.max_recipients", "2", "admin:alice")]
    got = node.admin("GetConfig", pb.GetConfigRequest())
    assert [(e.key, e.value) for e in got.entries] == [("smtp_server.max_recipients", "2")]

    old = node.service("smtp-server").pid
    node.admin("RestartService", pb.ServiceRequest(name="smtp-server"))
    new = wait_until("smtp-server restarted", lambda: (s := node.service("smtp-server")).pid not in (0, old)
                     and s.state == pb.SERVICE_STATE_RUNNING and s)
    environ = Path(f"/proc/{new.pid}/environ").read_bytes().split(b"\0")
    assert b"MAILGATE_SMTP_SERVER__MAX_RECIPIENTS=2" in environ
    import smtplib

    def third_recipient_refused() -> bool:
        try:
            with smtplib.SMTP("127.0.0.1", node.gateway.smtp_port, timeout=10) as smtp:
                smtp.ehlo("client.test")
                smtp.mail("s@outside.test")
                assert smtp.rcpt("a@example.com")[0] == 250 and smtp.rcpt("b@example.com")[0] == 250
                return smtp.rcpt("c@example.com")[0] == 452
        except (OSError, smtplib.SMTPException):
            return False

    wait_until("the new limit applies", third_recipient_refused, timeout=20)
    node.admin("SetConfig", pb.SetConfigRequest(key="smtp_server.max_recipients", reset=True))
    assert node.admin("GetConfig", pb.GetConfigRequest()).entries == []


def test_cli_queue_show_release_delete(node: Node) -> None:
    held = quarantine(node, "spam", [USER], "cli spam")
    other = quarantine(node, "virus", ["carol@example.org"], "cli virus")
    listed = mailgate(node, "queue", "list", "spam")
    assert listed.returncode == 0, listed.stderr
    assert row(listed.stdout, held)[1] == "spam" and other not in listed.stdout

    shown = mailgate(node, "queue", "show", held)
    assert shown.returncode == 0, shown.stderr
    assert [row(shown.stdout, key)[1] for key in ("mail id", "queue", "from", "to", "subject", "why")] == \
        [held, "spam", "x@outside.test", USER, "cli spam", "spam: test"]
    assert "Subject: cli spam" in shown.stdout and "body of cli spam" not in shown.stdout  # the header only
    raw = mailgate(node, "queue", "show", held, "--raw")
    assert raw.returncode == 0 and raw.stdout.endswith("\n\nbody of cli spam\n")

    before = len(node.sink.mails)
    released = mailgate(node, "queue", "release", held, "--reason", "not spam")
    assert released.returncode == 0, released.stderr
    assert released.stdout.strip() == f"release of {held} for {USER}"
    delivered = node.sink.wait_for(before + 1, timeout=60)[before:]
    assert [m.rcpt_to for m in delivered] == [[USER]] and b"body of cli spam" in delivered[0].data
    gone = mailgate(node, "queue", "show", held)
    assert gone.returncode == 3 and f"no mail {held} in any quarantine queue" in gone.stderr

    denied = mailgate(node, "queue", "delete", other, token=USER_TOKEN)  # carol's mail, not bob's
    assert denied.returncode == 3 and f"no mail {other} in any quarantine queue for {USER}" in denied.stderr
    deleted = mailgate(node, "queue", "delete", other, "--queue", "virus")
    assert deleted.returncode == 0, deleted.stderr
    assert deleted.stdout.strip() == f"delete of {other} for carol@example.org"
    assert other not in mailgate(node, "queue", "list").stdout
    again = mailgate(node, "queue", "delete", other)
    assert again.returncode == 3 and f"no mail {other}" in again.stderr


@pytest.mark.parametrize(("args", "code", "says"), [
    (("show", "no-such-mail"), 3, "no mail no-such-mail in any quarantine queue"),
    (("release", "no-such-mail", "--queue", "spam"), 3, "no mail no-such-mail in queue spam"),
    (("delete", "no-such-mail"), 3, "no mail no-such-mail in any quarantine queue"),
    (("show", "no-such-mail", "--queue", "inbox"), 2, "unknown queue 'inbox'; the queues are: spam, virus"),
])
def test_cli_queue_errors(node: Node, args: tuple[str, ...], code: int, says: str) -> None:
    done = mailgate(node, "queue", *args)
    assert done.returncode == code, done.stderr
    assert says in " ".join(done.stderr.split())
    assert done.stdout == ""
