"""The SMTP policy hooks (aiosmtpd handler). Hooks are short: they ask plain
functions for a verdict and turn it into a reply. handle_DATA builds one event
and hands it to Kafka; it answers 250 only after the broker acknowledged it."""

from __future__ import annotations

from typing import Any, Protocol

from aiosmtpd.smtp import SMTP, Envelope, Session

from core.kafka import KafkaUnavailable
from core.logging import get_logger
from ingress.smtp.events import mail_received

log = get_logger("smtp-server")


class Publisher(Protocol):
    async def publish(self, event: dict[str, Any]) -> None: ...


def recipient_domain(address: str) -> str:
    return address.rpartition("@")[2].strip().rstrip(".").lower()


def relay_verdict(address: str, domains: set[str]) -> str | None:
    """None when we accept mail for this recipient, else the 5xx reply."""
    if "@" not in address:
        return "550 5.1.3 Recipient address needs a domain"
    if recipient_domain(address) not in domains:
        return "550 5.7.1 Relay access denied: this server accepts mail only for its own domains"
    return None


class GatewayHandler:
    def __init__(self, publisher: Publisher, domains: list[str], node: str, max_recipients: int) -> None:
        self.publisher = publisher
        self.domains = set(domains)
        self.node = node
        self.max_recipients = max_recipients

    async def handle_RCPT(self, server: SMTP, session: Session, envelope: Envelope,
                          address: str, rcpt_options: list[str]) -> str:
        if len(envelope.rcpt_tos) >= self.max_recipients:
            return "452 4.5.3 Too many recipients in this message; send the rest in another"
        reply = relay_verdict(address, self.domains)
        if reply is not None:
            log.info("rcpt rejected", rcpt=address, peer=session.peer, reply=reply)
            return reply
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return "250 2.1.5 Ok"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        event = mail_received(envelope, session, self.node)
        mail_id = event["mail_id"]
        try:
            await self.publisher.publish(event)
        except (KafkaUnavailable, TimeoutError) as exc:
            log.warning("not accepted: kafka unavailable", mail_id=mail_id, error=str(exc))
            return "451 4.3.0 Temporary failure: the mail queue is unavailable, try again later"
        log.info("accepted", mail_id=mail_id, mail_from=event["mail_from"],
                 rcpt=len(event["rcpt_to"]), size=event["size"], peer=event["client_address"])
        return f"250 2.0.0 Ok: queued as {mail_id}"
