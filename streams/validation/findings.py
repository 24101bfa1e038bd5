"""message-validation: what the phase-2 checks found about one mail — the input of the
routing decision (``routing.decide``) and of each recipient's verdict (``policy``).
Its own module, so that routing and policy both read it without importing each other."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from streams.validation.auth import AuthResults
    from streams.validation.content import RuleHit
    from streams.validation.policy_settings import DecisionSettings


@dataclass(frozen=True)
class Findings:
    """What the phase-2 checks found; every field a plain value, so decide() stays pure."""

    unparseable: str | None = None
    virus_scan: str = "off"  # off | clean | infected | unscannable | failed
    virus_detail: str = ""  # signature names, or why not scannable / why it failed
    blocked_by_policy: str | None = None
    spam_verdict: str | None = None  # spam | unsure | ham; None: not scored
    spam_score: float = 0.0
    spam_reasons: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    auth: AuthResults | None = None  # DKIM/SPF/DMARC; None: not checked
    content_hits: tuple[RuleHit, ...] = ()
    sender_confirmed: bool | None = None  # in ciss.senders; None: not looked up
    delivered_message: dict[str, Any] | None = None  # the packed mail with Authentication-Results
    marked_messages: dict[str, dict[str, Any]] | None = None  # unsure mail, marked: subject tag -> packed mail
    decision: DecisionSettings | None = None  # the settings decide() applies; None: defaults
