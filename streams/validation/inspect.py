"""The phase-2 checks of one mail (MIME walk, attachment policy, virus scan),
gathered into ``routing.Findings``. Blocking work runs off the event loop."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from typing import Any

from streams.validation.attachments import check_attachments
from streams.validation.clamd import ClamdClient, ClamdError
from streams.validation.mime import walk_message
from streams.validation.routing import Findings
from streams.validation.settings import ValidationFilterSettings
from streams.validation.virus import scan_with_retry


class Inspector:
    def __init__(self, settings: ValidationFilterSettings, virus_scan: bool) -> None:
        self.settings = settings
        self.clamd = ClamdClient.from_settings(settings.clamd) if virus_scan else None

    async def inspect(self, raw: bytes, spam: dict[str, Any] | None = None) -> Findings:
        findings = await self._content(raw)
        if spam is None:
            return findings
        return replace(findings, spam_verdict=spam["verdict"], spam_score=spam["score"],
                       spam_reasons=list(spam["reasons"]))

    async def _content(self, raw: bytes) -> Findings:
        walk = await asyncio.to_thread(walk_message, raw, self.settings.limits)
        if walk.unparseable:
            return Findings(unparseable=walk.unparseable)
        policy = check_attachments(walk, self.settings.attachments)
        blocked = policy.reason if policy.blocked else None
        if self.clamd is None:
            return Findings(virus_scan="off", blocked_by_policy=blocked)
        try:
            verdict = await scan_with_retry(raw, self.clamd, self.settings.clamd, walk=walk,
                                            limits=self.settings.limits)
        except ClamdError as exc:  # clamd gave no answer after its retries: held, never clean
            return Findings(virus_scan="failed", virus_detail=f"{type(exc).__name__}: {exc}",
                            blocked_by_policy=blocked)
        detail = ", ".join(verdict.names) if verdict.kind == "infected" else verdict.reason
        return Findings(virus_scan=verdict.kind, virus_detail=detail, blocked_by_policy=blocked)
