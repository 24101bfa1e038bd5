"""smtp-client bounces: a delivery status notification (RFC 3464) to the envelope
sender, for the recipients that failed for good.

The DSN is a multipart/report (report-type=delivery-status): a human-readable
text, a message/delivery-status part with one block per recipient, and the
original headers as text/rfc822-headers. It is sent with the null sender
(``<>``), so that a DSN is never answered by another DSN. It travels as a new
MailRouted on mail.out (key: the sender's domain) and is delivered by the same
path as any mail. Its mail id is derived from the failed copy, so that a copy
processed twice (after a crash) yields the same bounce, which the delivery log
then delivers once.
"""

from __future__ import annotations

import hashlib
import re
from datetime import UTC, datetime
from email.charset import QP, Charset
from email.message import Message
from email.mime.multipart import MIMEMultipart
from email.mime.nonmultipart import MIMENonMultipart
from email.mime.text import MIMEText
from email.policy import SMTP
from email.utils import format_datetime, formatdate, make_msgid
from typing import Any

from egress.smtp_client.delivery import Reply
from schemas import pack_message

_ULID = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"  # Crockford base32, as schemas.ids
_STATUS = re.compile(r"\b([245])\.(\d{1,3})\.(\d{1,3})\b")


def bounce_mail_id(routed: dict[str, Any], recipients: list[str]) -> str:
    """A ULID with the failed copy's time and a hash of what failed: the same input, the same id."""
    digest = hashlib.blake2b(f"{routed['mail_id']}/{routed.get('destination')}/{sorted(recipients)}".encode(),
                             digest_size=10).digest()
    value = (int(routed["event_time"]) << 80) | int.from_bytes(digest, "big")
    return "".join(_ULID[(value >> (5 * i)) & 31] for i in reversed(range(26)))


def status_code(reply: Reply) -> str:
    """The enhanced status code of a reply (RFC 3463), or one made from the basic code."""
    found = _STATUS.search(reply.text)
    if found and found.group(1) in "45":
        return found.group(0)
    if reply.code is None or reply.code < 500:
        return "4.4.1" if reply.code is None else "4.0.0"
    return "5.0.0"


def header_block(original: bytes) -> bytes:
    end = original.find(b"\r\n\r\n")
    if end < 0:
        end = original.find(b"\n\n")
    return original if end < 0 else original[:end + 2]


def _text(text: str, subtype: str) -> MIMEText:
    if text.isascii():
        return MIMEText(text, subtype, "us-ascii")
    charset = Charset("utf-8")
    charset.body_encoding = QP  # readable, unlike base64
    return MIMEText(text, subtype, charset)  # type: ignore[arg-type]


def _block(fields: list[tuple[str, str]]) -> Message:
    block = Message()
    for name, value in fields:
        block[name] = value
    return block


def build_dsn(routed: dict[str, Any], original: bytes, failed: dict[str, Reply], remote_mta: str,
              reporting_mta: str, now: datetime | None = None) -> bytes:
    now = now or datetime.now(UTC)
    arrival = datetime.fromtimestamp(int(routed["received_time"]) / 1000, UTC)
    lines = [f"This is the mail system at {reporting_mta}.", "",
             "Your message could not be delivered to one or more recipients.", ""]
    lines += [f"<{rcpt}>: {reply.line}" for rcpt, reply in failed.items()]
    report = MIMEMultipart("report", report_type="delivery-status")
    report["From"] = f"Mail Delivery System <MAILER-DAEMON@{reporting_mta}>"
    report["To"] = routed["mail_from"]
    report["Subject"] = "Undelivered Mail Returned to Sender"
    report["Date"] = formatdate(now.timestamp(), localtime=False)
    report["Message-ID"] = make_msgid(domain=reporting_mta)
    report["Auto-Submitted"] = "auto-replied"
    report.attach(_text("\n".join(lines) + "\n", "plain"))
    status = MIMENonMultipart("message", "delivery-status")
    blocks = [_block([("Reporting-MTA", f"dns; {reporting_mta}"), ("X-Mailgate-Mail-ID", routed["mail_id"]),
                      ("Arrival-Date", format_datetime(arrival))])]
    for rcpt, reply in failed.items():
        fields = [("Final-Recipient", f"rfc822; {rcpt}"), ("Action", "failed"), ("Status", status_code(reply))]
        if remote_mta:
            fields.append(("Remote-MTA", f"dns; {remote_mta}"))
        diagnostic = f"smtp; {reply.code} {reply.text}" if reply.code else f"X-mailgate; {reply.text}"
        fields += [("Diagnostic-Code", diagnostic.replace("\r", " ").replace("\n", " ")),
                   ("Last-Attempt-Date", format_datetime(now))]
        blocks.append(_block(fields))
    status.set_payload(blocks)  # type: ignore[arg-type]  # message/delivery-status: a list of header blocks
    report.attach(status)
    headers = header_block(original).decode("utf-8", "replace")
    report.attach(_text(headers, "rfc822-headers"))
    return report.as_bytes(policy=SMTP)


def bounce_record(routed: dict[str, Any], dsn: bytes, mail_id: str, node: str, now_ms: int) -> dict[str, Any]:
    """The MailRouted that carries a DSN to the sender, on mail.out."""
    sender = routed["mail_from"]
    return {
        "mail_id": mail_id, "event_time": now_ms, "node": node, "queue": "out",
        "reasons": [f"bounce (DSN) of {routed['mail_id']} for {routed.get('destination')}"],
        "destination": sender.rpartition("@")[2].lower(), "mail_from": "", "rcpt_to": [sender],
        "received_time": now_ms, "client_address": None, "size": len(dsn), "message": pack_message(dsn),
    }
