"""smtp-server: the policy hooks the protocol engine calls (aiosmtpd's handler shape:
``handle_MAIL``, ``handle_RCPT``, ``handle_DATA`` return the reply as data). Hooks are
short: they ask the filter chain for a verdict and turn it into a reply. handle_DATA
builds one event and hands it to Kafka; it answers 250 only after the broker
acknowledged it. Refused transactions are recorded as SmtpRejected events (no body)."""

from __future__ import annotations

import time
from typing import Any

from aiosmtpd.smtp import Envelope, Session

from core.kafka import KafkaUnavailable
from core.logging import get_logger
from prometheus_client import Counter

from core.metrics import LATENCY, MAILS, REJECTIONS
from core.publish import Publisher
from ingress.smtp.events import mail_received, sender, smtp_rejected
from ingress.smtp.filters import Chain, Check, Client, Stage, Transaction, Verdict, reject, tempfail
from ingress.smtp.filters.relay import RelayControl, relay_verdict
from ingress.smtp.retries import RecentAccepts, retry_key

log = get_logger("smtp-server")
RETRIES = Counter("mailgate_smtp_retries_answered_total",
                  "Retries of mail already accepted, answered 250 without storing a second copy")

__all__ = ["GatewayHandler", "relay_verdict"]


def _client(session: Session) -> Client:
    client: Client = session.client  # type: ignore[attr-defined]  # a GatewaySession
    return client


def _tx(envelope: Envelope) -> Transaction:
    tx: Transaction = envelope.tx  # type: ignore[attr-defined]  # a GatewayEnvelope
    return tx


class GatewayHandler:
    def __init__(self, publisher: Publisher, chain: Chain, node: str, max_recipients: int, mail_in: str = "mail.in",
                 rejected: str | None = None, recent: RecentAccepts | None = None) -> None:
        self.publisher = publisher  # MailReceived to ``mail_in`` (awaited); SmtpRejected to ``rejected`` (not)
        self.mail_in, self.rejected = mail_in, rejected
        self.chain = chain
        self.node = node
        self.max_recipients = max_recipients
        self.recent = recent  # retries of accepted mail answered from here (None: every copy is stored)
        relay = chain.named("relay")
        self.relay = relay if isinstance(relay, RelayControl) else None
        # the labelled series of every accepted mail, looked up once (labels() hashes and locks)
        self._accept_latency = LATENCY.labels("smtp-server", "accept")
        self._accepted = MAILS.labels("smtp-server", "mail.in")

    # -- connection events (from GatewaySMTP) ------------------------------------------

    def connection_opened(self, server: Any, session: Session) -> None:
        client = _client(session)
        client.trusted = self.relay is not None and self.relay.is_trusted(client.ip)

    def connection_refused(self, ip: str, reason: str) -> None:
        tx = Transaction(verdicts=[tempfail("limits", 421, "4.7.0", reason).at(Stage.CONNECT, None)])
        self._record(Client(ip=ip), tx)

    def session_aborted(self, server: Any, session: Session, reply: str) -> None:
        code, _, rest = reply.partition(" ")
        status, _, text = rest.partition(" ")
        make = reject if code.startswith("5") else tempfail
        if hasattr(server.envelope, "tx"):
            _tx(server.envelope).verdicts.append(make("limits", int(code), status, text).at(Stage.CONNECT, None))

    def transaction_ended(self, server: Any, session: Session, envelope: Envelope) -> None:
        self._record(_client(session), _tx(envelope), session.host_name)

    def _record(self, client: Client, tx: Transaction, helo: str | None = None) -> None:
        event = smtp_rejected(client, tx, self.node, helo)
        if event is not None and self.rejected is not None:  # a refusal never waits for Kafka
            self.publisher.publish_soon(self.rejected, event, what="rejection")

    # -- SMTP hooks ------------------------------------------------------------------------

    async def handle_MAIL(self, server: Any, session: Session, envelope: Envelope, address: str,
                          mail_options: list[str]) -> str:
        tx = _tx(envelope)
        tx.mail_from, tx.started = sender(address), True
        verdict = await self.chain.run(Check(Stage.MAIL, _client(session), tx))
        if verdict.refuses:
            return self._refuse(session, verdict, address)
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 2.1.0 Ok"

    async def handle_RCPT(self, server: Any, session: Session, envelope: Envelope, address: str,
                          rcpt_options: list[str]) -> str:
        tx = _tx(envelope)
        if len(envelope.rcpt_tos) >= self.max_recipients:
            verdict = tempfail("limits", 452, "4.5.3", "Too many recipients in this message; send the rest in another")
            tx.verdicts.append(verdict.at(Stage.RCPT, address))
            return verdict.reply
        verdict = await self.chain.run(Check(Stage.RCPT, _client(session), tx, address))
        if verdict.refuses:
            return self._refuse(session, verdict, address)
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        tx.rcpt_tos.append(address)
        return "250 2.1.5 Ok"

    async def handle_DATA(self, server: Any, session: Session, envelope: Envelope) -> str:
        key = None
        if self.recent is not None:
            key = retry_key(_client(session).ip, sender(envelope.mail_from), envelope.rcpt_tos,
                            envelope.original_content or b"")
            if key is not None and (first := await self.recent.claim(key)) is not None:
                _tx(envelope).accepted = True
                RETRIES.inc()
                log.info("a retry of an accepted mail: not stored again", mail_id=first, peer=_client(session).ip)
                return f"250 2.0.0 Ok: queued as {first} (already accepted)"
        mail_id = None
        try:
            mail_id = await self._accept(envelope, session)
        finally:
            if key is not None and self.recent is not None:
                self.recent.published(key, mail_id)
        if mail_id is None:
            verdict = tempfail("queue", 451, "4.3.0", "Temporary failure: the mail queue is unavailable, try again later")
            _tx(envelope).verdicts.append(verdict.at(Stage.DATA, None))
            return verdict.reply
        return f"250 2.0.0 Ok: queued as {mail_id}"

    async def _accept(self, envelope: Envelope, session: Session) -> str | None:
        """Publish the mail; its id once the broker has it, None when Kafka did not take it."""
        event = mail_received(envelope, session, self.node)
        mail_id = event.mail_id
        started = time.monotonic()
        try:
            await self.publisher.publish(self.mail_in, event)
        except (KafkaUnavailable, TimeoutError) as exc:
            log.warning("not accepted: kafka unavailable", mail_id=mail_id, error=str(exc))
            REJECTIONS.labels("smtp-server", "queue").inc()
            return None
        _tx(envelope).accepted = True
        self._accept_latency.observe(time.monotonic() - started)  # DATA end to broker ack
        self._accepted.inc()
        log.debug("accepted", mail_id=mail_id, mail_from=event.mail_from,
                  rcpt=len(event.rcpt_to), size=event.size, peer=event.client_address)
        return mail_id

    def _refuse(self, session: Session, verdict: Verdict, address: str) -> str:
        REJECTIONS.labels("smtp-server", verdict.filter).inc()
        log.info("refused", filter=verdict.filter, reply=verdict.reply, address=address, peer=_client(session).ip)
        return verdict.reply
