"""smtp-server: turning a transaction into an event — MailReceived for an accepted
mail (with the phase-1 verdicts and the SPF result), SmtpRejected for a refused one
(without any body)."""

from __future__ import annotations

import time

from aiosmtpd.smtp import Envelope, Session

from ingress.smtp.filters import Client, Transaction
from schemas import new_mail_id, packed
from schemas.events import MailReceived, SmtpRejected


def tls_description(session: Session) -> str | None:
    ssl = session.ssl
    if not ssl:
        return None
    cipher = ssl.get("cipher") if isinstance(ssl, dict) else None
    if cipher:
        name, version, _bits = cipher
        return f"{version} {name}"
    return "TLS"


def sender(address: str | None) -> str:
    """The envelope sender as the events carry it: "" for the null sender <>."""
    return "" if not address or address == "<>" else address


def _peer(session: Session) -> str:
    return session.peer[0] if isinstance(session.peer, tuple) else str(session.peer)


def mail_received(envelope: Envelope, session: Session, node: str, mail_id: str | None = None) -> MailReceived:
    raw: bytes = envelope.original_content or b""
    client: Client | None = getattr(session, "client", None)
    tx: Transaction | None = getattr(envelope, "tx", None)
    return MailReceived(
        mail_id=mail_id or new_mail_id(),
        event_time=int(time.time() * 1000),
        node=node,
        origin="SMTP",
        client_address=_peer(session),
        client_helo=session.host_name,
        tls=tls_description(session),
        mail_from=sender(envelope.mail_from),
        rcpt_to=list(envelope.rcpt_tos),
        size=len(raw),
        message=packed(raw),
        verdicts=[v.record() for v in tx.verdicts] if tx is not None else None,
        spf=tx.spf[0] if tx is not None and tx.spf else None,
        spf_explanation=tx.spf[1] if tx is not None and tx.spf else None,
        client_name=client.name if client is not None else None,
        authenticated=client.user if client is not None else None,
    )


def smtp_rejected(client: Client, tx: Transaction, node: str, helo: str | None = None) -> SmtpRejected | None:
    """The SmtpRejected event of a transaction that was refused, or None if nothing was."""
    last = next((v for v in reversed(tx.verdicts) if v.refuses), None)
    if last is None or tx.accepted:
        return None
    return SmtpRejected(
        mail_id=new_mail_id(),
        event_time=int(time.time() * 1000),
        node=node,
        client_address=client.ip or None,
        client_name=client.name,
        client_helo=helo or client.helo,
        tls=client.tls,
        authenticated=client.user,
        mail_from=sender(tx.mail_from) if tx.started else None,
        rcpt_to=list(tx.rcpt_tos),
        stage=last.stage.value if last.stage else "CONNECT",
        code=last.code,
        status=last.status,
        reason=last.reason,
        verdicts=[v.record() for v in tx.verdicts],
    )
