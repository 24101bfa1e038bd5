"""message-validation: settings of the authentication checks, the content rules and the
one decision that combines them (thresholds, DMARC actions, allow/deny lists, CISS),
with per-recipient-domain and per-user overrides. In the TOML file::

    [validation.auth]
    enabled = true
    authserv_id = "mx.example.com"            # the name in Authentication-Results
    dns.nameservers = ["127.0.0.1"]

    [[validation.content.rules]]
    name = "pills"
    kind = "regex"                            # or "keyword" (case-insensitive substring)
    pattern = "che+ap pills?"
    where = "any"                             # subject | body | any
    score = 4.0

    [validation.decision]                     # every recipient domain
    spam_threshold = 5.0
    dmarc_reject_action = "quarantine"

    [validation.decision.domains."example.com"]   # overrides for one recipient domain
    ciss = true
    sender_allow = ["partner.example"]            # lists add to the ones above

    [validation.decision.users."bob@example.com"]
    sender_deny = ["pest@spam.example"]
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, PrivateAttr, field_validator, model_validator
from pydantic_settings import NoDecode

from core.dns_settings import DnsSettings
from core.dns_settings import split_list as _split


class AuthSettings(BaseModel):
    """DKIM verification, DMARC evaluation, the Authentication-Results header."""

    enabled: bool = Field(
        default=False,
        description="DKIM/DMARC checks and the Authentication-Results header. Off by default like the other "
                    "checks that ask the DNS for every mail (smtp_server.checks.spf); set dns.nameservers too.")
    authserv_id: str | None = Field(
        default=None, description="Name of this ADMD in Authentication-Results; unset: the node name.")
    dns: DnsSettings = Field(default_factory=DnsSettings)
    max_signatures: int = Field(default=5, ge=1, description="DKIM signatures verified per mail (the first ones).")
    min_key_bits: int = Field(default=1024, ge=512, description="Shorter RSA keys: dkim=permerror (RFC 8301).")
    add_header: bool = Field(default=True, description="Write Authentication-Results on delivered mail.")


class ContentRule(BaseModel):
    name: str = Field(min_length=1)
    kind: Literal["keyword", "regex"] = "keyword"
    pattern: str = Field(min_length=1)
    where: Literal["subject", "body", "any"] = "any"
    score: float = Field(description="Points added when the rule matches (negative: ham points).")

    @model_validator(mode="after")
    def _compiles(self) -> ContentRule:
        if self.kind == "regex":
            try:
                re.compile(self.pattern)
            except re.error as exc:
                raise ValueError(f"content rule {self.name!r}: bad regex {self.pattern!r}: {exc}") from exc
        return self


class ContentSettings(BaseModel):
    """Keyword and regex rules on the subject and the decoded text of the body."""

    rules: list[ContentRule] = Field(default_factory=list)
    max_text_chars: int = Field(
        default=256 * 1024, ge=1024, description="Body text the rules look at (the first characters).")


class SenderLists(BaseModel):
    """Entries: "user@domain" (one sender) or "domain" (every sender of it and its subdomains)."""

    sender_allow: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="No spam decision (score, content rules, CISS) for these senders.")
    sender_deny: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="Always deny_action for these senders.")

    @field_validator("sender_allow", "sender_deny", mode="before")
    @classmethod
    def _entries(cls, v: Any) -> Any:
        return [str(x).strip().lower().lstrip("@") for x in _split(v)]


Action = Literal["quarantine", "spam", "deliver"]


class DecisionPolicy(SenderLists):
    """How the findings make one decision for the recipients of one domain."""

    spam_threshold: float = Field(default=5.0, description="Combined points at or above: mail.spam.")
    spam_weight: float = Field(
        default=7.7, ge=0,
        description="Points per unit of the spam filter's score (0..1); 7.7 x its 0.65 spam threshold = 5.0.")
    trust_spam_verdict: bool = Field(default=True, description="The spam filter's verdict spam alone: mail.spam.")
    dkim_fail_points: float = Field(default=1.0, description="Added when a DKIM signature fails and none passes.")
    spf_fail_points: float = Field(default=2.0, description="Added for SPF fail from phase 1.")
    spf_softfail_points: float = Field(default=0.5, description="Added for SPF softfail.")
    dmarc_fail_points: float = Field(default=2.0, description="Added for a DMARC fail that is not acted on.")
    dmarc_reject_action: Action = Field(default="quarantine", description="DMARC fail under p=reject.")
    dmarc_quarantine_action: Action = Field(default="spam", description="DMARC fail under p=quarantine.")
    deny_action: Literal["quarantine", "spam"] = "spam"
    ciss: bool = Field(default=False, description="Mail from senders not in ciss.senders goes to mail.ciss.")
    mark_unsure: bool = Field(
        default=True, description="Mail the spam filter is unsure of is delivered with X-Spam-Flag: YES and "
                                  "X-Spam-Status (score, thresholds, reasons), so a mail client rule can file it.")
    spam_subject_tag: str = Field(
        default="", max_length=40, description='Put before the Subject of marked mail (e.g. "[SPAM?]"); empty: none.')


class DecisionSettings(DecisionPolicy):
    """The decision for every recipient domain, with overrides per domain and per user."""

    domains: dict[str, dict[str, Any]] = Field(
        default_factory=dict, description="Recipient domain -> DecisionPolicy fields that differ there.")
    users: dict[str, SenderLists] = Field(default_factory=dict, description="Recipient address -> its own lists.")
    _by_domain: dict[str, DecisionPolicy] = PrivateAttr(default_factory=dict)

    @model_validator(mode="after")
    def _resolve(self) -> DecisionSettings:
        base = DecisionPolicy.model_validate(self.model_dump(exclude={"domains", "users"}))
        for domain, override in self.domains.items():
            try:
                policy = DecisionPolicy.model_validate({**base.model_dump(), **override})
            except ValueError as exc:
                raise ValueError(f"validation.decision.domains.{domain}: {exc}") from exc
            extra = SenderLists.model_validate({k: override.get(k, []) for k in SenderLists.model_fields})
            policy.sender_allow = base.sender_allow + extra.sender_allow  # lists add up, scalars override
            policy.sender_deny = base.sender_deny + extra.sender_deny
            self._by_domain[domain.lower().rstrip(".")] = policy
        self._by_domain[""] = base
        self.users = {k.lower(): v for k, v in self.users.items()}
        return self

    def for_domain(self, domain: str) -> DecisionPolicy:
        return self._by_domain.get(domain, self._by_domain[""])

    def user_lists(self, address: str) -> SenderLists | None:
        return self.users.get(address.strip().lower())

    @property
    def ciss_anywhere(self) -> bool:
        return any(p.ciss for p in self._by_domain.values())
