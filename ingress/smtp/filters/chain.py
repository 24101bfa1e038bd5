"""smtp-server, phase 1: the ordering rule, in one place, and the chain of filters.

The rule:

1. At each stage (MAIL, RCPT) the filters run in the order of ``build_chain``.
2. A bypassable filter is skipped when the client is trusted or authenticated, or an
   earlier ACCEPT (an allow list) covers the client, the transaction or this recipient.
3. The first verdict that is not CONTINUE decides the stage: REJECT (5xx) and
   TEMPFAIL (4xx) become the reply at once; ACCEPT ends the checks of the stage
   (and, at MAIL, makes the rest of the transaction bypass the bypassable filters).
4. Every verdict that carries a reason is recorded on the transaction, so that
   the MailReceived or SmtpRejected event says why.

The order puts the checks nobody may bypass first: rate limits and deny lists at
MAIL; relay control and recipient verification at RCPT. Then the allow lists, then
the checks an allow list skips (HELO sanity, rDNS, DNSBL, SPF; greylisting).
"""

from __future__ import annotations

from collections.abc import Sequence

from ingress.smtp.filters.verdict import CONTINUE, Action, Check, Filter, Stage, Verdict
from ingress.smtp.settings import Settings


class Chain:
    def __init__(self, filters: Sequence[Filter]) -> None:
        self.filters = list(filters)
        self._by_stage = {s: [f for f in self.filters if s in f.stages] for s in Stage}

    def named(self, name: str) -> Filter | None:
        return next((f for f in self.filters if f.name == name), None)

    async def run(self, ask: Check) -> Verdict:
        client, tx = ask.client, ask.tx
        bypass = client.trusted or client.user is not None or client.allowed or tx.allowed
        for flt in self._by_stage[ask.stage]:
            if flt.bypassable and bypass:
                continue
            verdict = await flt.check(ask)
            if verdict.reason:
                tx.verdicts.append(verdict.at(ask.stage, ask.rcpt))
            if verdict.action is Action.CONTINUE:
                continue
            if verdict.action is Action.ACCEPT and ask.stage is Stage.MAIL:
                tx.allowed = True
            return verdict
        return CONTINUE


def build_chain(settings: Settings, greylist_store: object | None = None) -> Chain:
    """The filters configured for this server, in the order of the rule above."""
    from ingress.smtp.filters.dnsbl import Dnsbl
    from ingress.smtp.filters.greylist import Greylist, GreylistStore
    from ingress.smtp.filters.helo import HeloCheck
    from ingress.smtp.filters.lists import Lists
    from ingress.smtp.filters.ratelimit import RateLimit
    from ingress.smtp.filters.rdns import ReverseDns
    from ingress.smtp.filters.recipients import RecipientVerify
    from ingress.smtp.filters.relay import RelayControl
    from ingress.smtp.filters.spf import SpfCheck

    cfg, domains, hostname = settings.smtp_server, settings.domains, settings.hostname
    filters: list[Filter] = []
    if cfg.rate.per_client or cfg.rate.per_sender:
        filters.append(RateLimit(cfg.rate))
    filters.append(RelayControl(domains, cfg.relay))
    if cfg.recipients.addresses or cfg.recipients.callout:
        filters.append(RecipientVerify(domains, cfg.recipients))
    lists = cfg.lists
    if any((lists.client_allow, lists.client_deny, lists.sender_allow, lists.sender_deny,
            lists.recipient_allow, lists.recipient_deny, lists.sender_owners)):
        filters.append(Lists(lists))
    if cfg.helo.enabled:
        filters.append(HeloCheck(cfg.helo, hostname, domains))
    if cfg.checks.rdns != "off" or cfg.checks.dnsbl_zones or cfg.checks.spf != "off":
        resolver = cfg.dns.resolver()
        if cfg.checks.rdns != "off":
            filters.append(ReverseDns(cfg.checks.rdns, resolver))
        if cfg.checks.dnsbl_zones:
            filters.append(Dnsbl(cfg.checks.dnsbl_zones, resolver))
        if cfg.checks.spf != "off":
            filters.append(SpfCheck(cfg.checks.spf, cfg.dns, hostname))
    if cfg.greylist.enabled:
        assert isinstance(greylist_store, GreylistStore), "greylisting needs its store (smtp.greylist)"
        filters.append(Greylist(cfg.greylist, greylist_store))
    return Chain(filters)
