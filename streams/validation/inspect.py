"""The phase-2 checks of one mail (MIME walk, attachment policy, virus scan, DKIM/SPF/
DMARC, content rules, the CISS sender table), gathered into ``routing.Findings``.
Blocking work runs off the event loop."""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace
from typing import Any

from core.logging import get_logger
from core.metrics import LATENCY
from schemas import pack_message, unpack_message
from streams.validation.attachments import check_attachments
from streams.validation.auth import Authenticator, with_header
from streams.validation.clamd import ClamdClient, ClamdError
from streams.validation.content import ContentRules
from streams.validation.mime import MimeWalk, walk_message
from streams.validation.marking import marked, status_value
from streams.validation.routing import Findings, domain_of
from streams.validation.senders import ConfirmedSenders
from streams.validation.settings import ValidationFilterSettings
from streams.validation.virus import ScanBatch, scan_with_retry

log = get_logger("message-validation")
SERVICE = "message-validation"  # the service label of its metrics


class Inspector:
    def __init__(self, settings: ValidationFilterSettings, virus_scan: bool, node: str = "mailgate",
                 senders: ConfirmedSenders | None = None) -> None:
        self.settings = settings
        self.clamd = ClamdClient.from_settings(settings.clamd) if virus_scan else None
        self.auth = Authenticator(settings.auth, node) if settings.auth.enabled else None
        self.rules = ContentRules(settings.content)
        self.senders = senders

    def batch(self) -> ScanBatch:
        """The clamd retries shared by the mails of one batch (virus.ScanBatch)."""
        return ScanBatch(self.settings.clamd)

    async def inspect(self, raw: bytes, spam: dict[str, Any] | None = None,
                      mail: dict[str, Any] | None = None, batch: ScanBatch | None = None) -> Findings:
        walk = await asyncio.to_thread(walk_message, raw, self.settings.limits)
        findings = await self._content(raw, walk, batch, (mail or {}).get("mail_id"))
        if spam is not None:
            findings = replace(findings, spam_verdict=spam["verdict"], spam_score=spam["score"],
                               spam_reasons=list(spam["reasons"]))
        if findings.unparseable or mail is None:
            return findings
        findings = replace(findings, decision=self.settings.decision, content_hits=tuple(self.rules.check(raw, walk)),
                           sender_confirmed=await self._confirmed(mail["mail_from"]), **await self._auth(raw, mail))
        return replace(findings, marked_messages=self._marked(raw, spam, mail, findings))

    def _marked(self, raw: bytes, spam: dict[str, Any] | None, mail: dict[str, Any],
                f: Findings) -> dict[str, dict[str, Any]] | None:
        """The unsure mail marked once per subject tag its recipient domains use (those that mark)."""
        if spam is None or spam["verdict"] not in ("unsure", "spam"):
            return None
        decision = self.settings.decision
        tags = {p.spam_subject_tag for p in (decision.for_domain(domain_of(r)) for r in mail["rcpt_to"]) if p.mark_unsure}
        if not tags:
            return None
        base = unpack_message(f.delivered_message) if f.delivered_message is not None else raw
        status = status_value(spam["verdict"], spam["score"], list(spam["reasons"]))
        return {tag: pack_message(marked(base, status, tag)) for tag in sorted(tags)}

    async def _auth(self, raw: bytes, mail: dict[str, Any]) -> dict[str, Any]:
        if self.auth is None:
            return {}
        results = await self.auth.check(raw, mail)
        if not self.settings.auth.add_header:
            return {"auth": results}
        return {"auth": results, "delivered_message": pack_message(with_header(raw, results.header, self.auth.authserv_id))}

    async def _confirmed(self, sender: str) -> bool | None:
        if self.senders is None or not self.settings.decision.ciss_anywhere or not sender:
            return None
        await self.senders.ready.wait()  # the table is read to its end before anyone is called unknown
        return self.senders.confirmed(sender)

    async def _content(self, raw: bytes, walk: MimeWalk, batch: ScanBatch | None,
                       mail_id: str | None) -> Findings:
        if walk.unparseable:
            return Findings(unparseable=walk.unparseable)
        policy = check_attachments(walk, self.settings.attachments)
        blocked = policy.reason if policy.blocked else None
        if self.clamd is None:
            return Findings(virus_scan="off", blocked_by_policy=blocked)

        def retrying(attempt: int, exc: ClamdError, wait_s: float) -> None:
            log.warning("clamd gave no verdict: retrying", mail_id=mail_id, attempt=attempt, wait_s=wait_s,
                        error=f"{type(exc).__name__}: {exc}")

        started = time.monotonic()
        try:
            verdict = await scan_with_retry(raw, self.clamd, self.settings.clamd, walk=walk,
                                            limits=self.settings.limits, on_retry=retrying, batch=batch)
        except ClamdError as exc:  # clamd gave no answer after its retries: held, never clean
            return Findings(virus_scan="failed", virus_detail=f"{type(exc).__name__}: {exc}",
                            blocked_by_policy=blocked)
        LATENCY.labels(SERVICE, "virus-scan").observe(time.monotonic() - started)  # to clamd's verdict
        detail = ", ".join(verdict.names) if verdict.kind == "infected" else verdict.reason
        return Findings(virus_scan=verdict.kind, virus_detail=detail, blocked_by_policy=blocked)
