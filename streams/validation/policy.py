"""message-validation: the decision for one recipient, once the mail-wide checks (MIME,
virus, attachments) have let the mail through. Pure: ``routing.decide`` calls it for
each recipient with the settings of that recipient's domain and user.

The order, written here and only here:

1. the sender is on a deny list (the user's lists before the domain's) → deny_action
2. DMARC fails under p=reject / p=quarantine                      → the configured action
3. the sender is on an allow list                                  → mail.out (no spam decision)
4. the spam filter says spam, or the combined points reach the threshold → mail.spam
5. the recipient's domain uses CISS and the sender is not confirmed → mail.ciss
6. otherwise                                                       → mail.out
"""

from __future__ import annotations

from dataclasses import dataclass

from streams.validation.findings import Findings
from streams.validation.policy_settings import DecisionPolicy, DecisionSettings, SenderLists
from streams.validation.senders import listed


@dataclass(frozen=True)
class Verdict:
    queue: str  # out | spam | quarantine | ciss
    reasons: tuple[str, ...]
    filter: str = "passed"  # which check decided (a bounded name: the label of the metrics)


def _listed(sender: str, user: SenderLists | None, policy: DecisionPolicy) -> tuple[str, str] | None:
    """("deny" | "allow", which list) from the most specific list naming the sender: the
    recipient's own lists before the domain's; on one level deny wins."""
    if not sender:
        return None
    for owner, lists in (("the recipient's", user), ("the domain's", policy)):
        if lists is None:
            continue
        for kind, entries in (("deny", lists.sender_deny), ("allow", lists.sender_allow)):
            if entry := listed(sender, entries):
                return kind, f"{owner} sender {kind} list ({entry})"
    return None


def points(f: Findings, policy: DecisionPolicy) -> tuple[float, list[str]]:
    """The combined spam points of the mail, and what each part added."""
    parts: list[tuple[str, float]] = []
    if f.spam_verdict is not None:
        parts.append((f"spam filter {f.spam_verdict} ({f.spam_score:.2f})", policy.spam_weight * f.spam_score))
    parts += [(f"rule {hit.rule}", hit.score) for hit in f.content_hits]
    auth = f.auth
    if auth is not None:
        if auth.dkim and auth.dkim_summary not in ("pass", "temperror"):
            parts.append((f"dkim={auth.dkim_summary}", policy.dkim_fail_points))
        if auth.spf in ("fail", "softfail"):
            parts.append((f"spf={auth.spf}", policy.spf_fail_points if auth.spf == "fail" else policy.spf_softfail_points))
        if auth.dmarc is not None and auth.dmarc.result == "fail":
            parts.append((f"dmarc=fail (p={auth.dmarc.policy})", policy.dmarc_fail_points))
    total = sum(p for _, p in parts)
    return total, [f"{name} {p:+.1f}" for name, p in parts if p]


def _dmarc_action(f: Findings, policy: DecisionPolicy) -> Verdict | None:
    dmarc = f.auth.dmarc if f.auth is not None else None
    if dmarc is None or dmarc.result != "fail" or dmarc.policy not in ("reject", "quarantine"):
        return None
    action = policy.dmarc_reject_action if dmarc.policy == "reject" else policy.dmarc_quarantine_action
    if action == "deliver":
        return None
    return Verdict(action, (f"DMARC: {dmarc.from_domain} fails under p={dmarc.policy}: {dmarc.reason}",), "dmarc")


def recipient_verdict(rcpt: str, domain: str, mail_from: str, f: Findings,
                      decision: DecisionSettings) -> Verdict:
    policy = decision.for_domain(domain)
    kind, which = _listed(mail_from, decision.user_lists(rcpt), policy) or ("", "")
    if kind == "deny":
        return Verdict(policy.deny_action, (f"sender {mail_from} is on {which}",), "sender-deny")
    if held := _dmarc_action(f, policy):
        return held
    if kind == "allow":
        return Verdict("out", (f"sender {mail_from} is on {which}: no spam decision",), "sender-allow")
    total, parts = points(f, policy)
    score = f"spam points {total:.1f} of {policy.spam_threshold:g}" + (f": {', '.join(parts)}" if parts else "")
    if policy.trust_spam_verdict and f.spam_verdict == "spam":
        return Verdict("spam", (f"spam filter: spam ({f.spam_score:.2f})", score, *f.spam_reasons[:3]), "spam-filter")
    if total >= policy.spam_threshold:
        return Verdict("spam", (f"spam: {score}", *[hit.reason for hit in f.content_hits]), "spam-points")
    if policy.ciss and not mail_from:
        return Verdict("out", (score, "CISS: the null sender (a bounce) is not challenged"))
    if policy.ciss and not f.sender_confirmed:
        return Verdict("ciss", (f"CISS: sender {mail_from} is not confirmed", score), "ciss")
    return Verdict("out", (score,))
